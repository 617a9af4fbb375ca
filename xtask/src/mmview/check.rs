//! What `cargo xtask test` checks in a boot that ran `mmdemo`: that its
//! snapshots show what the program did (64 KiB and 2 MiB folios where it
//! asked for them, its mprotect, fork's write protection and sharing, the
//! child's private copies), and on arm64, where contpte is on by
//! default, which 64 KiB blocks are folded after each step.

use super::parse::{self, Snapshot};

/// The addresses `mmdemo` reports in its `mmdemo: layout ...` line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    pub a64k: u64,
    pub a64k_len: u64,
    pub b2m: u64,
    pub b2m_len: u64,
    pub c4k: u64,
    pub c4k_len: u64,
    pub ro_page: u64,
    pub cow_page: u64,
    pub cow_page_2m: u64,
}

impl Layout {
    /// Reads the layout line (the first one if several).
    pub fn find(lines: &[String]) -> Option<Layout> {
        let l = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("mmdemo: layout "))?;
        let mut o = Layout::default();
        for w in l.split_ascii_whitespace() {
            let (k, v) = w.split_once('=')?;
            let v = u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()?;
            let slot = match k {
                "a64k" => &mut o.a64k,
                "a64k_len" => &mut o.a64k_len,
                "b2m" => &mut o.b2m,
                "b2m_len" => &mut o.b2m_len,
                "c4k" => &mut o.c4k,
                "c4k_len" => &mut o.c4k_len,
                "ro_page" => &mut o.ro_page,
                "cow_page" => &mut o.cow_page,
                "cow_page_2m" => &mut o.cow_page_2m,
                _ => continue,
            };
            *slot = v;
        }
        (o.a64k_len > 0 && o.b2m_len > 0 && o.c4k_len > 0).then_some(o)
    }

    /// The areas the program populated: (start, end).
    fn areas(&self) -> [(u64, u64); 3] {
        [
            (self.a64k, self.a64k + self.a64k_len),
            (self.b2m, self.b2m + self.b2m_len),
            (self.c4k, self.c4k + self.c4k_len),
        ]
    }
}

/// One named check's result.
pub type Verdict = (&'static str, Result<(), String>);

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

fn snap<'a>(s: &'a [Snapshot], name: &str) -> Result<&'a Snapshot, String> {
    s.iter()
        .find(|x| x.name == name)
        .ok_or_else(|| format!("no snapshot {name}"))
}

/// Every page of `[start, end)` is covered by runs of `s`.
fn covered(s: &Snapshot, start: u64, end: u64) -> Result<(), String> {
    let pages: u64 = s
        .runs_in(start, end)
        .map(|r| (r.end.min(end) - r.start.max(start)) / 4096)
        .sum();
    ensure(pages == (end - start) / 4096, || {
        format!(
            "{}: {pages} of {} pages of {start:#x}..{end:#x} mapped",
            s.name,
            (end - start) / 4096
        )
    })
}

/// The checks, each by name, over a boot's console lines.
/// `user_end` is where the user half ends on the board's architecture
/// ([`user_end`]): the page-table dump must tile it exactly.
pub fn check_mmdemo(lines: &[String], user_end: u64) -> Vec<Verdict> {
    let parsed = parse::parse(lines).and_then(|s| {
        let layout = Layout::find(lines).ok_or("no `mmdemo: layout` line")?;
        Ok((s, layout))
    });
    let (snaps, l) = match parsed {
        Ok(x) => x,
        Err(e) => return vec![("mmdemo_snapshots_parse", Err(e))],
    };
    let ran = lines.iter().any(|l| l.trim() == "mmdemo: ok");
    vec![
        ("mmdemo_snapshots_parse", parses(&snaps, ran, user_end)),
        (
            "mmdemo_folios_have_the_sizes_asked_for",
            folio_sizes(&snaps, &l),
        ),
        (
            "mmdemo_mprotect_makes_one_page_read_only",
            mprotect(&snaps, &l),
        ),
        (
            "mmdemo_fork_write_protects_and_shares",
            fork_shares(&snaps, &l),
        ),
        ("mmdemo_cow_gives_the_child_its_own_page", cow(&snaps, &l)),
        ("mmdemo_arm64_folds_whole_blocks", folds(&snaps, &l)),
    ]
}

/// On arm64 (contpte on, the default): every page of the 64 KiB and
/// 2 MiB areas is folded except in the blocks a change cut: the
/// mprotected page's block in the parent (and so in the child), the
/// copied pages' blocks in the child. Nothing to check on x86.
fn folds(snaps: &[Snapshot], l: &Layout) -> Result<(), String> {
    let block = |va: u64| va & !0xffff;
    for s in snaps {
        if s.format != "aarch64" {
            continue;
        }
        let mut cut = vec![block(l.ro_page)];
        if s.name == "child-after-cow" {
            cut.extend([block(l.cow_page), block(l.cow_page_2m)]);
        }
        for (start, end) in [(l.a64k, l.a64k + l.a64k_len), (l.b2m, l.b2m + l.b2m_len)] {
            for va in (start..end).step_by(4096) {
                let r = s
                    .run_at(va)
                    .ok_or_else(|| format!("{}: {va:#x} not mapped", s.name))?;
                let want = !cut.contains(&block(va));
                ensure(r.cont == want, || {
                    format!("{}: {va:#x} folded {}, expected {want}", s.name, r.cont)
                })?;
            }
        }
    }
    Ok(())
}

/// One past the highest user address on `arch`: Linux's `TASK_SIZE`, as
/// Folium's `USER_TOP` (47 bits on x86-64, 48 on arm64).
pub fn user_end(arch: crate::build::Arch) -> u64 {
    match arch {
        crate::build::Arch::Aarch64 => 1 << 48,
        crate::build::Arch::X86_64 => 1 << 47,
    }
}

fn parses(snaps: &[Snapshot], ran: bool, user_end: u64) -> Result<(), String> {
    ensure(ran, || "mmdemo did not print `mmdemo: ok`".into())?;
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "parent-before-fork",
        "child-after-cow",
        "parent-after-fork",
        "parent-after-child-exit",
    ] {
        ensure(names.contains(&want), || format!("no {want} in {names:?}"))?;
    }
    for s in snaps {
        ensure(!s.truncated, || format!("{} was truncated", s.name))?;
        let pt = s.pt_lines()?;
        // The ptdump lines tile the user half in order.
        let mut at = 0;
        for p in &pt {
            ensure(p.start == at, || {
                format!("{}: ptdump line at {:#x} after {at:#x}", s.name, p.start)
            })?;
            at = p.end;
        }
        ensure(at == user_end, || {
            format!("{}: ptdump ends at {at:#x}", s.name)
        })?;
        // Every mapped run of mmview lies in a mapped ptdump line.
        for r in &s.runs {
            let inside = pt
                .iter()
                .any(|p| p.level.is_some() && p.start <= r.start && r.end <= p.end);
            ensure(inside, || {
                format!("{}: run {:#x} not in a mapped ptdump line", s.name, r.start)
            })?;
        }
    }
    Ok(())
}

fn folio_sizes(snaps: &[Snapshot], l: &Layout) -> Result<(), String> {
    let s = snap(snaps, "parent-before-fork")?;
    for (start, end) in l.areas() {
        covered(s, start, end)?;
    }
    for r in s.runs_in(l.a64k, l.a64k + l.a64k_len) {
        let f = r
            .folio
            .ok_or_else(|| format!("run {:#x} has no folio", r.start))?;
        let va = r.folio_va().unwrap_or(1);
        ensure(
            f.order == 4 && va % (64 << 10) == 0 && f.head % 16 == 0,
            || {
                format!(
                    "run {:#x}: order {} folio placed at {va:#x}, head {:#x} (64 KiB, aligned, expected)",
                    r.start, f.order, f.head
                )
            },
        )?;
        ensure(r.maps == 1 && f.mapcount == 16, || {
            format!(
                "run {:#x}: mapcount {} maps {}",
                r.start, f.mapcount, r.maps
            )
        })?;
    }
    let b: Vec<_> = s.runs_in(l.b2m, l.b2m + l.b2m_len).collect();
    ensure(
        b.len() == 1 && b[0].folio.map(|f| (f.order, f.mapcount)) == Some((9, 512)),
        || format!("the 2 MiB area is not one mapped order-9 folio: {b:?}"),
    )?;
    let c = s.runs_in(l.c4k, l.c4k + l.c4k_len);
    let orders: Vec<Option<u8>> = c.map(|r| r.folio.map(|f| f.order)).collect();
    ensure(orders.iter().all(|o| *o == Some(0)), || {
        format!("the 4 KiB area has folio orders {orders:?}")
    })?;
    let zero = s.run_at(l.c4k + l.c4k_len - 4096);
    ensure(zero.is_some_and(|r| r.zero && !r.writable), || {
        format!("the page only read is not the zero page: {zero:?}")
    })
}

fn mprotect(snaps: &[Snapshot], l: &Layout) -> Result<(), String> {
    let s = snap(snaps, "parent-before-fork")?;
    let ro = s
        .run_at(l.ro_page)
        .ok_or("the mprotected page is not mapped")?;
    ensure(
        !ro.writable && ro.readable && ro.start == l.ro_page && ro.end == l.ro_page + 4096,
        || format!("the mprotected page: {ro:?}"),
    )?;
    for va in [l.ro_page - 4096, l.ro_page + 4096] {
        let n = s.run_at(va).ok_or("a neighbour is not mapped")?;
        ensure(n.writable, || format!("neighbour {va:#x} is not writable"))?;
    }
    let pt = s.pt_lines()?;
    let line = pt
        .iter()
        .find(|p| p.start <= l.ro_page && l.ro_page < p.end)
        .ok_or("no ptdump line covers it")?;
    ensure(line.has("ro") && line.end - line.start == 4096, || {
        format!("its ptdump line: {line:?}")
    })
}

fn fork_shares(snaps: &[Snapshot], l: &Layout) -> Result<(), String> {
    let s = snap(snaps, "parent-after-fork")?;
    let copied = [l.cow_page, l.cow_page_2m];
    for (start, end) in l.areas() {
        covered(s, start, end)?;
        for r in s.runs_in(start, end) {
            ensure(!r.writable, || {
                format!("run {:#x} is writable after fork", r.start)
            })?;
            let own = copied.iter().any(|&c| (r.start..r.end).contains(&c));
            ensure(r.maps == if own { 1 } else { 2 }, || {
                format!(
                    "run {:#x}..{:#x} maps={} after fork",
                    r.start, r.end, r.maps
                )
            })?;
        }
    }
    for p in s.pt_lines()? {
        if p.level.is_some() && p.start < l.a64k + l.a64k_len && p.end > l.a64k {
            ensure(p.has("ro"), || {
                format!("ptdump line {:#x} is not ro", p.start)
            })?;
        }
    }
    let after = snap(snaps, "parent-after-child-exit")?;
    for (start, end) in l.areas() {
        for r in after.runs_in(start, end) {
            ensure(r.maps == 1, || {
                format!("run {:#x} still shared after the child exited", r.start)
            })?;
        }
    }
    Ok(())
}

fn cow(snaps: &[Snapshot], l: &Layout) -> Result<(), String> {
    let child = snap(snaps, "child-after-cow")?;
    let parent = snap(snaps, "parent-after-fork")?;
    for va in [l.cow_page, l.cow_page_2m] {
        let c = child.run_at(va).ok_or("the copied page is not mapped")?;
        let p = parent.run_at(va).ok_or("the parent's page is not mapped")?;
        let (cp, pp) = (c.pfn_at(va), p.pfn_at(va));
        ensure(cp != pp, || {
            format!("{va:#x}: the child maps the parent's frame")
        })?;
        ensure(
            c.writable
                && c.maps == 1
                && c.start == va
                && c.end == va + 4096
                && c.folio.map(|f| (f.order, f.mapcount)) == Some((0, 1)),
            || format!("{va:#x}: the child's copy {c:?}"),
        )?;
        // Its neighbours are still the parent's frames.
        let n = child.run_at(va + 4096).ok_or("neighbour not mapped")?;
        ensure(
            n.maps == 2
                && n.pfn_at(va + 4096)
                    == parent.run_at(va + 4096).and_then(|r| r.pfn_at(va + 4096)),
            || format!("{va:#x}: the next page is not shared: {n:?}"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(board: &str) -> Vec<String> {
        super::super::parse::tests::fixture(board)
    }

    fn board_end(board: &str) -> u64 {
        user_end(if board == "virt" {
            crate::build::Arch::Aarch64
        } else {
            crate::build::Arch::X86_64
        })
    }

    #[test]
    fn the_recorded_boots_pass_every_check() {
        for board in ["virt", "q35"] {
            let v = check_mmdemo(&fixture(board), board_end(board));
            assert_eq!(v.len(), 6);
            for (name, r) in v {
                assert!(r.is_ok(), "{board} {name}: {r:?}");
            }
        }
    }

    /// Replaces the first record line containing `needle` with `f(line)`.
    fn edit(lines: &mut [String], snapshot: &str, needle: &str, f: impl Fn(&str) -> String) {
        let start = lines
            .iter()
            .position(|l| l.contains(&format!("snapshot {snapshot} ")))
            .unwrap();
        let i = lines[start..]
            .iter()
            .position(|l| l.contains(needle) && l.contains("pfn="))
            .unwrap()
            + start;
        lines[i] = f(&lines[i]);
    }

    fn failing(lines: &[String]) -> Vec<&'static str> {
        check_mmdemo(lines, board_end("virt"))
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn a_fold_where_none_belongs_or_a_missing_one_is_caught() {
        let lines = fixture("virt");
        let l = Layout::find(&lines).unwrap();
        // The mprotected page's block shown folded.
        let mut f = lines.clone();
        let ro = format!("{:#018x}-", l.ro_page);
        edit(&mut f, "parent-before-fork", &ro, |s| {
            s.replace("flags=yd--", "flags=ydc-")
        });
        assert_eq!(failing(&f), ["mmdemo_arm64_folds_whole_blocks"]);
        // A whole block of the 2 MiB area shown unfolded in the child.
        let mut u = lines.clone();
        let b = format!("{:#018x}-", l.b2m);
        edit(&mut u, "parent-after-fork", &b, |s| s.replace("c-", "--"));
        assert_eq!(failing(&u), ["mmdemo_arm64_folds_whole_blocks"]);
    }

    #[test]
    fn each_check_catches_what_it_is_for() {
        let lines = fixture("virt");
        let l = Layout::find(&lines).unwrap();
        // A writable page in the parent after fork.
        let mut w = lines.clone();
        let a = format!("{:#018x}-", l.a64k + 0x30000);
        edit(&mut w, "parent-after-fork", &a, |s| {
            s.replace("perm=r--", "perm=rw-")
        });
        assert_eq!(failing(&w), ["mmdemo_fork_write_protects_and_shares"]);
        // The child's copy still the parent's frame.
        let mut c = lines.clone();
        let cow = format!("{:#018x}-", l.cow_page);
        let parent = parse::parse(&lines).unwrap();
        let ppfn = parent[2]
            .run_at(l.cow_page)
            .unwrap()
            .pfn_at(l.cow_page)
            .unwrap();
        edit(&mut c, "child-after-cow", &cow, |s| {
            let pfn = s.split(" pfn=").nth(1).unwrap().split(' ').next().unwrap();
            s.replace(&format!("pfn={pfn}"), &format!("pfn={ppfn:#x}"))
        });
        assert_eq!(failing(&c), ["mmdemo_cow_gives_the_child_its_own_page"]);
        // A 64 KiB folio that is really order 3.
        let mut o = lines.clone();
        let a0 = format!("{:#018x}-", l.a64k);
        edit(&mut o, "parent-before-fork", &a0, |s| {
            s.replace("order=4", "order=3")
        });
        assert_eq!(failing(&o), ["mmdemo_folios_have_the_sizes_asked_for"]);
        // No `mmdemo: ok`.
        let short: Vec<String> = lines
            .iter()
            .filter(|l| *l != "mmdemo: ok")
            .cloned()
            .collect();
        assert_eq!(failing(&short), ["mmdemo_snapshots_parse"]);
        // No snapshots at all: everything fails.
        assert_eq!(failing(&lines[..1]).len(), 5);
        // A console that does not parse: one failure, not five.
        let mut broken = lines.clone();
        broken.retain(|l| !l.starts_with("==== mmview end child"));
        assert_eq!(failing(&broken), ["mmdemo_snapshots_parse"]);
    }
}
