//! Host tests of the page-table dumps (`folium_mm::ptdump`): the
//! arm64-ptdump lines of hand-built tables (merging, holes, sizes, `CON`
//! exactly where the contiguous hint is set, the line cap), and the mmview
//! records of address spaces after mTHP faults, fork and copy-on-write.

use folium_mm::aspace::AddressSpace;
use folium_mm::pgtable::{
    Aarch64, Attrs, Level, MapOptions, PageTable, PteFormat, PteKind, X86_64,
};
use folium_mm::ptdump::Dump;
use folium_mm::tlb::Asid;
use folium_mm::{PAGE_SIZE, PhysAddr, VirtAddr};

#[macro_use]
mod common;
use common::Arena;
use common::hostenv::{HostEnv, anon, folio_at, new_space, set_sizes, va, write_u64};

const END: u64 = 1 << 47;

/// Writes page entries for `pages` pages from `va` to frames from `pa`.
fn map_pages<F: PteFormat>(
    pt: &mut PageTable<F>,
    frames: &mut common::Frames,
    va: u64,
    pa: u64,
    pages: u64,
    attrs: Attrs,
) {
    for i in 0..pages {
        let slot = pt
            .pte_slot_alloc(VirtAddr::new(va + i * PAGE_SIZE), frames)
            .unwrap();
        let leaf = PteKind::Leaf {
            pa: PhysAddr::new(pa + i * PAGE_SIZE),
            attrs,
        };
        F::check(leaf, Level::L3).unwrap();
        pt.set_pte(slot, F::encode(leaf, Level::L3));
    }
}

fn dump_text<F: PteFormat>(pt: &PageTable<F>, max_lines: usize) -> String {
    let mut d = Dump::new(pt, VirtAddr::new(END));
    d.max_lines = max_lines;
    let mut s = String::new();
    d.ptdump("User space", &mut s).unwrap();
    s
}

/// A table with: 16 read-write pages at 0x400000, 4 more with the same
/// attributes but other frames, a 2-page hole, 1 read-only page, and (if
/// `cont`) 16 folded pages at 0x600000.
fn sample<F: PteFormat>(arena: &Arena, cont: bool) -> PageTable<F> {
    let mut frames = arena.frames(64);
    let mut pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    let rw = Attrs {
        young: true,
        dirty: true,
        ..Attrs::user(true, false)
    };
    map_pages(&mut pt, &mut frames, 0x40_0000, 0x9000_0000, 16, rw);
    map_pages(&mut pt, &mut frames, 0x41_0000, 0x9100_0000, 4, rw);
    map_pages(
        &mut pt,
        &mut frames,
        0x41_6000,
        0x9200_0000,
        1,
        Attrs::user(false, false),
    );
    if cont {
        // Written as one run the format may fold: arm64 folds it.
        let opts = MapOptions {
            largest_leaf: Level::L3,
            fold: true,
        };
        pt.map_range(
            VirtAddr::new(0x60_0000),
            PhysAddr::new(0x9300_0000),
            16 * PAGE_SIZE,
            rw,
            &mut frames,
            opts,
        )
        .unwrap();
    }
    pt
}

fn ptdump_merges_runs_and_shows_holes<F: PteFormat>() {
    let arena = Arena::new(1 << 20);
    let pt = sample::<F>(&arena, false);
    let text = dump_text(&pt, 100);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"---[ User space ]---"), "{text}");
    assert_eq!(lines.last(), Some(&"---[ User space end ]---"), "{text}");
    // hole, 20 pages RW (frames need not be consecutive), hole, 1 page ro, hole.
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(
        lines[1],
        "0x0000000000000000-0x0000000000400000           4M"
    );
    assert!(
        lines[2].starts_with("0x0000000000400000-0x0000000000414000          80K PTE   USR RW"),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains(" AF NG ") && lines[2].ends_with("MEM/NORMAL"));
    assert!(lines[2].contains("UXN") == (F::NAME == "aarch64"));
    assert!(!lines[2].contains("CON"));
    assert_eq!(
        lines[3],
        "0x0000000000414000-0x0000000000416000           8K"
    );
    assert!(
        lines[4].starts_with("0x0000000000416000-0x0000000000417000           4K PTE   USR ro"),
        "{}",
        lines[4]
    );
    // Not young: no AF.
    assert!(!lines[4].contains("AF"));
    assert!(lines[5].starts_with("0x0000000000417000-0x0000800000000000 "));
}

on_both_formats!(ptdump_merges_runs_and_shows_holes: ptdump_merges_runs_x86, ptdump_merges_runs_arm64);

/// A `PROT_NONE` page (protnone entry) is dumped with Linux's `F` column
/// (invalid to the MMU), in its own line, kernel-only and read-only.
fn ptdump_marks_protnone_entries<F: PteFormat>() {
    let arena = Arena::new(1 << 20);
    let mut frames = arena.frames(16);
    let mut pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    let rw = Attrs {
        young: true,
        dirty: true,
        ..Attrs::user(true, false)
    };
    let none = Attrs {
        young: true,
        user: false,
        protnone: true,
        ..Attrs::user(false, false)
    };
    map_pages(&mut pt, &mut frames, 0x40_0000, 0x9000_0000, 2, rw);
    map_pages(&mut pt, &mut frames, 0x40_2000, 0x9000_2000, 3, none);
    let text = dump_text(&pt, 100);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[2].starts_with("0x0000000000400000-0x0000000000402000           8K PTE   USR RW"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("0x0000000000402000-0x0000000000405000          12K PTE F     ro NX"),
        "{text}"
    );
}

on_both_formats!(ptdump_marks_protnone_entries: ptdump_protnone_x86, ptdump_protnone_arm64);

#[test]
fn ptdump_sizes_use_the_largest_unit_that_divides() {
    let arena = Arena::new(1 << 20);
    let pt = sample::<X86_64>(&arena, false);
    let text = dump_text(&pt, 100);
    // 0x417000..2^47: not a whole number of MiB, so in KiB.
    let last = text.lines().nth(5).unwrap();
    let kib = ((1u64 << 47) - 0x41_7000) >> 10;
    assert!(last.ends_with(&format!("{kib}K")), "{last}");
}

#[test]
fn ptdump_prints_con_exactly_on_folded_entries() {
    let arena = Arena::new(1 << 20);
    let pt = sample::<Aarch64>(&arena, true);
    let text = dump_text(&pt, 100);
    let con: Vec<&str> = text.lines().filter(|l| l.contains(" CON ")).collect();
    assert_eq!(con.len(), 1, "{text}");
    assert!(
        con[0].starts_with("0x0000000000600000-0x0000000000610000          64K PTE"),
        "{}",
        con[0]
    );
    // The folded block does not merge with the unfolded pages of the same
    // attributes.
    assert!(
        text.contains("0x0000000000400000-0x0000000000414000"),
        "{text}"
    );
    // And the mmview records say `c` for those pages only.
    let mut s = String::new();
    Dump::new(&pt, VirtAddr::new(END))
        .mmview("t", &mut s)
        .unwrap();
    let folded: Vec<&str> = s.lines().filter(|l| l.contains("flags=ydc-")).collect();
    assert_eq!(folded.len(), 1, "{s}");
    assert!(folded[0].starts_with("0x0000000000600000-0x0000000000610000 pfn=0x93000"));
}

#[test]
fn ptdump_and_mmview_stop_at_the_line_cap() {
    let arena = Arena::new(1 << 20);
    let pt = sample::<Aarch64>(&arena, true);
    for cap in [2, 3, 4, 5] {
        let text = dump_text(&pt, cap);
        assert!(text.lines().count() <= cap, "{cap}: {text}");
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("---[ truncated at 0x"), "{cap}: {text}");
        assert!(last.ends_with(&format!("more than {cap} lines ]---")));
        let mut d = Dump::new(&pt, VirtAddr::new(END));
        d.max_lines = cap;
        let mut s = String::new();
        d.mmview("t", &mut s).unwrap();
        assert!(s.lines().count() <= cap.max(3), "{cap}: {s}");
        assert!(
            s.lines().last().unwrap().starts_with("# truncated at 0x"),
            "{s}"
        );
    }
    assert!(dump_text(&pt, 100).ends_with("---[ User space end ]---\n"));
}

#[test]
fn ptdump_of_an_empty_tree_is_one_hole() {
    let arena = Arena::new(1 << 20);
    let mut frames = arena.frames(4);
    let pt = PageTable::<Aarch64>::create(&mut frames, arena.linear_map()).unwrap();
    assert_eq!(
        dump_text(&pt, 100),
        "---[ User space ]---\n0x0000000000000000-0x0000800000000000         128T\n---[ User space end ]---\n"
    );
}

/// One mmview record, parsed back: start, end, and its key=value fields.
type Record = (u64, u64, Vec<(String, String)>);

fn records(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split(' ');
            let (s, e) = words.next().unwrap().split_once('-').unwrap();
            let hex = |h: &str| u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap();
            let kv = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (hex(s), hex(e), kv)
        })
        .collect()
}

fn field<'a>(r: &'a Record, key: &str) -> &'a str {
    &r.2.iter().find(|(k, _)| k == key).unwrap().1
}

fn mmview_of<F: PteFormat>(
    env: &HostEnv,
    a: &AddressSpace<F>,
    others: &[&AddressSpace<F>],
) -> String {
    let tables: Vec<&PageTable<F>> = others.iter().map(|o| o.page_table()).collect();
    let mut d = Dump::new(a.page_table(), VirtAddr::new(END));
    d.memmap = Some(env.memmap);
    d.others = &tables;
    d.zero_pfn = Some(env.zero);
    let mut s = String::new();
    d.mmview("test", &mut s).unwrap();
    s
}

fn mmview_shows_folios_fork_and_cow<F: PteFormat>() {
    let mut env = HostEnv::new(4096);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut parent = new_space::<F>(&mut env, 1);
    // 32 pages: two 64 KiB folios; and page 40 read only (the zero page).
    anon(&mut parent, 0, 48);
    for p in 0..32 {
        write_u64(&mut env, &mut parent, va(p), p);
    }
    let (head0, ..) = folio_at(&env, &parent, 0);
    let (head1, ..) = folio_at(&env, &parent, 16);
    set_sizes(&env, "never", &[]);
    let _ = common::hostenv::read_u64(&mut env, &mut parent, va(40));

    let before = records(&mmview_of(&env, &parent, &[]));
    assert_eq!(before.len(), 3, "{before:?}");
    for (r, head) in before.iter().zip([head0, head1]) {
        assert_eq!(r.1 - r.0, 64 << 10);
        assert_eq!(r.0 % (64 << 10), 0, "64 KiB folios are 64 KiB aligned");
        assert_eq!(field(r, "head"), format!("{:#x}", head.as_u64()));
        assert_eq!(field(r, "order"), "4");
        assert_eq!(field(r, "mapcount"), "16");
        assert_eq!(field(r, "maps"), "1");
        assert_eq!(field(r, "perm"), "rw-");
    }
    assert_eq!(before[2].0, va(40).as_u64());
    assert!(field(&before[2], "flags").ends_with('z'), "{before:?}");

    let mut child = parent.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    write_u64(&mut env, &mut child, va(3), 7);
    let p = records(&mmview_of(&env, &parent, &[&child]));
    let c = records(&mmview_of(&env, &child, &[&parent]));
    // Parent: read-only after fork; page 3 is its own now, so the first
    // folio splits into 0..3, 3, 4..16.
    assert!(p.iter().all(|r| field(r, "perm") == "r--"), "{p:?}");
    let p3 = p.iter().find(|r| r.0 == va(3).as_u64()).unwrap();
    assert_eq!(p3.1, va(4).as_u64());
    assert_eq!(field(p3, "maps"), "1");
    assert_eq!(field(p3, "mapcount"), "31");
    let shared: Vec<_> = p.iter().filter(|r| field(r, "maps") == "2").collect();
    assert_eq!(
        shared.iter().map(|r| r.1 - r.0).sum::<u64>(),
        31 * PAGE_SIZE + PAGE_SIZE,
        "31 pages of the folios and the zero page are shared: {p:?}"
    );
    // Child: its copy of page 3 is a new order-0 folio, writable, mapped
    // once.
    let c3 = c.iter().find(|r| r.0 == va(3).as_u64()).unwrap();
    assert_ne!(field(c3, "pfn"), field(p3, "pfn"));
    assert_eq!(field(c3, "pfn"), field(c3, "head"));
    assert_eq!(
        (field(c3, "order"), field(c3, "mapcount"), field(c3, "maps")),
        ("0", "1", "1")
    );
    assert_eq!(field(c3, "perm"), "rw-");
    assert!(field(c3, "flags").starts_with("yd"));
    child.teardown(&mut env);
    parent.teardown(&mut env);
}

on_both_formats!(mmview_shows_folios_fork_and_cow: mmview_after_fork_x86, mmview_after_fork_arm64);
