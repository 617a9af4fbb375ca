//! Reading page-table snapshots out of a guest's console: the markers a
//! program prints around Folium's `ptdump` and `mmview` files (see
//! `userspace/programs/src/mmview.rs`), the mmview records, and the
//! ptdump lines.

use crate::Result;

/// One run of pages of one folio, as the kernel's `mmview` file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The first page's frame.
    pub pfn: u64,
    /// The folio's head frame, order and mapcount (`None`: no folio).
    pub folio: Option<Folio>,
    /// How many live address spaces map these pages here (> 1: shared
    /// copy-on-write).
    pub maps: u32,
    pub readable: bool,
    pub writable: bool,
    pub exec: bool,
    pub young: bool,
    pub dirty: bool,
    /// In a folded (arm64 contiguous) block.
    pub cont: bool,
    /// The shared zero page.
    pub zero: bool,
    /// `PTE`, `PMD` or `PUD`.
    pub level: String,
}

/// What the memmap says about a run's folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folio {
    pub head: u64,
    pub order: u8,
    pub mapcount: u32,
}

impl Run {
    pub fn pages(&self) -> u64 {
        (self.end - self.start) / 4096
    }

    /// True if another address space maps these very pages.
    pub fn shared(&self) -> bool {
        self.maps > 1
    }

    /// The frame mapped at `va`, if this run covers it.
    pub fn pfn_at(&self, va: u64) -> Option<u64> {
        (self.start..self.end)
            .contains(&va)
            .then(|| self.pfn + (va - self.start) / 4096)
    }

    /// The first address the run's folio would sit at if mapped whole
    /// (where the head frame would be).
    pub fn folio_va(&self) -> Option<u64> {
        let f = self.folio?;
        (self.start / 4096)
            .checked_sub(self.pfn.checked_sub(f.head)?)
            .map(|p| p * 4096)
    }
}

/// One ptdump line: a range with its level and columns, or a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtLine {
    pub start: u64,
    pub end: u64,
    /// `None` for a range nothing maps.
    pub level: Option<String>,
    /// The words after the level (`USR`, `ro`, `CON` ...).
    pub attrs: Vec<String>,
}

impl PtLine {
    pub fn has(&self, word: &str) -> bool {
        self.attrs.iter().any(|a| a == word)
    }
}

/// One snapshot a program printed.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub name: String,
    pub pid: u32,
    /// The ptdump file, as printed.
    pub ptdump: Vec<String>,
    pub runs: Vec<Run>,
    /// The page-table format (`aarch64`, `x86_64`).
    pub format: String,
    /// The kernel cut the dump at its line cap.
    pub truncated: bool,
}

impl Snapshot {
    /// The run covering `va`.
    pub fn run_at(&self, va: u64) -> Option<&Run> {
        self.runs.iter().find(|r| (r.start..r.end).contains(&va))
    }

    /// The runs overlapping `[start, end)`.
    pub fn runs_in(&self, start: u64, end: u64) -> impl Iterator<Item = &Run> {
        self.runs
            .iter()
            .filter(move |r| r.start < end && r.end > start)
    }

    /// The ptdump lines, parsed (holes included).
    pub fn pt_lines(&self) -> Result<Vec<PtLine>> {
        self.ptdump
            .iter()
            .filter(|l| !l.starts_with("---["))
            .map(|l| parse_pt_line(l))
            .collect()
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn range(word: &str) -> Option<(u64, u64)> {
    let (s, e) = word.split_once('-')?;
    let (s, e) = (hex(s)?, hex(e)?);
    (s < e).then_some((s, e))
}

/// Parses one ptdump line (not a `---[` marker).
pub fn parse_pt_line(l: &str) -> Result<PtLine> {
    let bad = || format!("bad ptdump line `{l}`");
    let mut words = l.split_ascii_whitespace();
    let (start, end) = words.next().and_then(range).ok_or_else(bad)?;
    let size = words.next().ok_or_else(bad)?;
    let (num, unit) = size.split_at(size.len() - 1);
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    if n.checked_shl(shift) != Some(end - start) || n >> (64 - shift) != 0 {
        return Err(format!("{} (the size does not match the range)", bad()));
    }
    let level = words.next().map(str::to_string);
    if let Some(lv) = &level
        && !["PTE", "PMD", "PUD", "PGD"].contains(&lv.as_str())
    {
        return Err(bad());
    }
    Ok(PtLine {
        start,
        end,
        level,
        attrs: words.map(str::to_string).collect(),
    })
}

/// Parses one mmview record.
pub fn parse_run(l: &str) -> Result<Run> {
    let bad = |why: &str| format!("bad mmview record `{l}`: {why}");
    let mut words = l.split_ascii_whitespace();
    let (start, end) = words.next().and_then(range).ok_or_else(|| bad("range"))?;
    let mut kv = std::collections::BTreeMap::new();
    let mut level = None;
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => {
                kv.insert(k, v);
            }
            None => level = Some(w.to_string()),
        }
    }
    let get = |k: &str| kv.get(k).copied().ok_or_else(|| bad(k));
    let pfn = hex(get("pfn")?).ok_or_else(|| bad("pfn"))?;
    let folio = match (get("head")?, get("order")?, get("mapcount")?) {
        ("-", "-", "-") => None,
        (h, o, m) => Some(Folio {
            head: hex(h).ok_or_else(|| bad("head"))?,
            order: o
                .parse()
                .ok()
                .filter(|&o| o <= 20)
                .ok_or_else(|| bad("order"))?,
            mapcount: m.parse().map_err(|_| bad("mapcount"))?,
        }),
    };
    let maps = get("maps")?.parse().map_err(|_| bad("maps"))?;
    let perm = get("perm")?.as_bytes();
    let flags = get("flags")?.as_bytes();
    if perm.len() != 3 || flags.len() != 4 {
        return Err(bad("perm or flags"));
    }
    let on = |b: u8, c: u8| -> Result<bool> {
        match b {
            b'-' => Ok(false),
            x if x == c => Ok(true),
            _ => Err(bad("perm or flags")),
        }
    };
    Ok(Run {
        start,
        end,
        pfn,
        folio,
        maps,
        readable: on(perm[0], b'r')?,
        writable: on(perm[1], b'w')?,
        exec: on(perm[2], b'x')?,
        young: on(flags[0], b'y')?,
        dirty: on(flags[1], b'd')?,
        cont: on(flags[2], b'c')?,
        zero: on(flags[3], b'z')?,
        level: level.ok_or_else(|| bad("level"))?,
    })
}

/// Where a snapshot's parser is.
enum Section {
    Outside,
    Ptdump,
    Mmview,
}

/// Every snapshot in `lines` (a console), in order. Lines outside the
/// markers are ignored; inside, every line must parse.
pub fn parse(lines: &[String]) -> Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    let mut cur = Snapshot::default();
    let mut section = Section::Outside;
    for l in lines {
        let l = l.trim_end();
        if let Some(rest) = l
            .strip_prefix("==== mmview snapshot ")
            .and_then(|r| r.strip_suffix(" ===="))
        {
            if !matches!(section, Section::Outside) {
                return Err(format!("snapshot {} has no end marker", cur.name));
            }
            let (name, pid) = rest
                .split_once(" pid=")
                .ok_or_else(|| format!("bad snapshot marker `{l}`"))?;
            cur = Snapshot {
                name: name.to_string(),
                pid: pid
                    .parse()
                    .map_err(|_| format!("bad snapshot marker `{l}`"))?,
                ..Snapshot::default()
            };
            section = Section::Ptdump;
            // Its first line is `-- ptdump --`.
            continue;
        }
        match section {
            Section::Outside => {}
            _ if l == "-- ptdump --" => section = Section::Ptdump,
            _ if l == "-- mmview --" => section = Section::Mmview,
            _ if l.starts_with("==== mmview end ") => {
                if l != format!("==== mmview end {} ====", cur.name) {
                    return Err(format!("`{l}` ends snapshot {}", cur.name));
                }
                out.push(std::mem::take(&mut cur));
                section = Section::Outside;
            }
            Section::Ptdump => {
                if !l.starts_with("---[") {
                    parse_pt_line(l)?;
                } else if l.starts_with("---[ truncated") {
                    cur.truncated = true;
                }
                cur.ptdump.push(l.to_string());
            }
            Section::Mmview => {
                if let Some(c) = l.strip_prefix('#') {
                    if let Some(f) = c.trim().strip_prefix("format=") {
                        cur.format = f.split_whitespace().next().unwrap_or("").to_string();
                    }
                    if c.trim().starts_with("truncated") {
                        cur.truncated = true;
                    }
                } else if !l.is_empty() {
                    cur.runs.push(parse_run(l)?);
                }
            }
        }
    }
    if !matches!(section, Section::Outside) {
        return Err(format!("snapshot {} has no end marker", cur.name));
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// mmdemo's output as recorded on a board (`virt` or `q35`), from its
    /// layout line to `mmdemo: ok`. To record it again: `cargo xtask
    /// qemu-run [--board q35] -- init=mmdemo | sed -n '/^mmdemo: layout/,/^mmdemo: ok/p'`.
    pub fn fixture(name: &str) -> Vec<String> {
        let text = match name {
            "virt" => include_str!("testdata/mmdemo-virt.txt"),
            _ => include_str!("testdata/mmdemo-q35.txt"),
        };
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn records_parse_field_by_field() {
        let r = parse_run(
            "0x00007fffff6b2000-0x00007fffff6b3000 pfn=0x407f2 head=0x407f0 order=4 mapcount=31 maps=1 perm=r-- flags=ydc- PTE",
        )
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.pfn),
            (0x7fffff6b2000, 0x7fffff6b3000, 0x407f2)
        );
        assert_eq!(
            r.folio,
            Some(Folio {
                head: 0x407f0,
                order: 4,
                mapcount: 31
            })
        );
        assert_eq!(r.folio_va(), Some(0x7fffff6b0000));
        assert!(r.readable && !r.writable && !r.exec && r.young && r.dirty && r.cont && !r.zero);
        assert_eq!((r.maps, r.level.as_str(), r.pages()), (1, "PTE", 1));
        let none = parse_run(
            "0x1000-0x3000 pfn=0x10 head=- order=- mapcount=- maps=2 perm=r-x flags=---z PTE",
        )
        .unwrap();
        assert_eq!(none.folio, None);
        assert!(none.zero && none.exec && none.shared());
        for bad in [
            "0x2000-0x1000 pfn=0x10 head=- order=- mapcount=- maps=1 perm=r-- flags=---- PTE",
            "0x1000-0x2000 head=- order=- mapcount=- maps=1 perm=r-- flags=---- PTE",
            "0x1000-0x2000 pfn=0x10 head=- order=- mapcount=- maps=1 perm=rq- flags=---- PTE",
            "0x1000-0x2000 pfn=0x10 head=- order=- mapcount=- maps=1 perm=r-- flags=---- ",
        ] {
            assert!(parse_run(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ptdump_lines_parse_and_sizes_must_match() {
        let l = parse_pt_line(
            "0x00007fffff6b0000-0x00007fffff6c0000          64K PTE   USR ro NX SHD AF NG CON      UXN    MEM/NORMAL",
        )
        .unwrap();
        assert_eq!(l.level.as_deref(), Some("PTE"));
        assert!(l.has("CON") && l.has("ro") && !l.has("RW"));
        let hole = parse_pt_line("0x0000000000000000-0x0000000000200000           2M").unwrap();
        assert_eq!((hole.level, hole.end), (None, 0x200000));
        let big = parse_pt_line("0x0000000000231000-0x00007fffff2aa000   137438937572K").unwrap();
        assert_eq!(big.end, 0x7fffff2aa000);
        assert!(parse_pt_line("0x0-0x200000 4M").is_err(), "wrong size");
        assert!(parse_pt_line("0x0-0x1000 4K XYZ").is_err(), "no such level");
    }

    #[test]
    fn a_console_gives_every_snapshot_in_order() {
        for board in ["virt", "q35"] {
            let mut lines = vec!["Folium 0.1.0 on virt".to_string()];
            lines.extend(fixture(board));
            lines.push("init: pid 2 exited with status 0".into());
            let s = parse(&lines).unwrap();
            let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "parent-before-fork",
                    "child-after-cow",
                    "parent-after-fork",
                    "parent-after-child-exit"
                ]
            );
            assert_eq!(s[1].pid, s[0].pid + 1);
            for snap in &s {
                assert!(!snap.runs.is_empty() && !snap.truncated);
                assert!(snap.pt_lines().unwrap().len() > 5);
                assert_eq!(
                    snap.format,
                    if board == "virt" { "aarch64" } else { "x86_64" }
                );
            }
        }
    }

    #[test]
    fn broken_snapshots_are_refused() {
        let mut lines = fixture("virt");
        let end = lines
            .iter()
            .position(|l| l.starts_with("==== mmview end"))
            .unwrap();
        let mut unterminated = lines.clone();
        unterminated.truncate(end);
        assert!(parse(&unterminated).is_err());
        lines[end - 2] = "0x1000-0x2000 garbage".into();
        assert!(parse(&lines).is_err());
    }
}
