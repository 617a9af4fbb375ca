//! Host tests of the 4-level table builder, for both formats, with an arena
//! standing in for physical memory.

mod common;

use folium_mm::pgtable::{
    Aarch64, Attrs, Level, MapError, MapOptions, PageTable, PteFormat, TableAlloc, X86_64,
};
use folium_mm::{PAGE_SIZE, PhysAddr, VirtAddr};
use proptest::prelude::*;

use common::{Arena, FAKE_BASE, Frames};

/// Where the kernel's linear map starts in the tests (upper half).
const LINEAR: u64 = 0xffff_8000_0000_0000;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn setup<F: PteFormat>(budget: usize) -> (Arena, Frames, PageTable<F>) {
    let arena = Arena::new(4 << 20);
    let mut frames = arena.frames(budget);
    let pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    (arena, frames, pt)
}

fn va(x: u64) -> VirtAddr {
    VirtAddr::new(x)
}

fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x)
}

/// Leaves per level, L0..L3.
fn leaf_counts<F: PteFormat>(pt: &PageTable<F>) -> [usize; 4] {
    let mut n = [0; 4];
    pt.for_each_leaf(|_, t| n[t.level.get() as usize] += 1);
    n
}

fn expect_at<F: PteFormat>(pt: &PageTable<F>, v: u64, p: u64, level: Level) {
    let t = pt
        .translate(va(v))
        .unwrap_or_else(|| panic!("{}: {v:#x} unmapped", F::NAME));
    assert_eq!((t.pa, t.level), (pa(p), level), "{}: at {v:#x}", F::NAME);
}

const BLOCKS_NO_CONT: MapOptions = MapOptions {
    largest_leaf: Level::L1,
    fold: false,
};

/// 2 MiB blocks but no 1 GiB ones, no contiguous hint.
const NO_GIB_NO_CONT: MapOptions = MapOptions {
    largest_leaf: Level::L2,
    fold: false,
};

// ----------------------------------------------------------- scenarios --

fn empty_tree<F: PteFormat>() {
    let (_arena, _frames, pt) = setup::<F>(64);
    assert_eq!(pt.count_tables(), 1);
    assert_eq!(pt.root(), pa(FAKE_BASE));
    for v in [
        0,
        0x1000,
        LINEAR,
        0xffff_ffff_ffff_f000,
        0x0000_7fff_ffff_f000,
    ] {
        assert_eq!(pt.translate(va(v)), None);
    }
}

fn blocks_when_aligned<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let (v, p) = (LINEAR + GIB, GIB);
    let size = GIB + 2 * MIB + 8 * 1024;
    pt.map_range(
        va(v),
        pa(p),
        size,
        Attrs::KERNEL_DATA,
        &mut frames,
        BLOCKS_NO_CONT,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 1, 1, 2]);
    // Root, one L1 table, one L2 table, one L3 table.
    assert_eq!(pt.count_tables(), 4);
    expect_at(&pt, v, p, Level::L1);
    expect_at(&pt, v + 0x1234_5678, p + 0x1234_5678, Level::L1);
    expect_at(&pt, v + GIB - 1, p + GIB - 1, Level::L1);
    expect_at(&pt, v + GIB, p + GIB, Level::L2);
    expect_at(&pt, v + GIB + 0x1f_ffff, p + GIB + 0x1f_ffff, Level::L2);
    expect_at(&pt, v + GIB + 2 * MIB, p + GIB + 2 * MIB, Level::L3);
    expect_at(&pt, v + size - 1, p + size - 1, Level::L3);
    assert_eq!(pt.translate(va(v + size)), None);
    assert_eq!(pt.translate(va(v - 1)), None);
    let t = pt.translate(va(v + 5)).unwrap();
    assert_eq!(t.attrs, Attrs::KERNEL_DATA);
}

fn leading_and_trailing_pages<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let (v, p) = (0x4000_0000 - 0x1000, 0x9000_0000 - 0x1000);
    let size = 0x1000 + 2 * MIB + 0x1000;
    pt.map_range(
        va(v),
        pa(p),
        size,
        Attrs::KERNEL_DATA,
        &mut frames,
        BLOCKS_NO_CONT,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 0, 1, 2]);
    expect_at(&pt, v + 0xfff, p + 0xfff, Level::L3);
    expect_at(&pt, v + 0x1000, p + 0x1000, Level::L2);
    expect_at(&pt, v + size - 0x1000, p + size - 0x1000, Level::L3);
}

fn pages_when_pa_incongruent<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let (v, p) = (LINEAR + 4 * MIB, 0x4000_0000 + 0x1000);
    pt.map_range(
        va(v),
        pa(p),
        4 * MIB,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 0, 0, 1024]);
    // Root, L1, L2 and two L3 tables.
    assert_eq!(pt.count_tables(), 5);
    for off in (0..4 * MIB).step_by(0x3000) {
        expect_at(&pt, v + off + 0x10, p + off + 0x10, Level::L3);
    }
}

/// True if the leaf mapping `v` is part of a folded run (arm64's
/// contiguous hint).
fn is_folded<F: PteFormat>(pt: &PageTable<F>, v: u64) -> bool {
    pt.raw_leaf(va(v)).is_some_and(|l| F::pte_cont(l.pte))
}

/// Leaves that are part of a folded run.
fn folded<F: PteFormat>(pt: &PageTable<F>) -> usize {
    let mut n = 0;
    pt.for_each_leaf(|v, _| n += usize::from(is_folded(pt, v.as_u64())));
    n
}

fn pages_when_blocks_disallowed<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    pt.map_range(
        va(LINEAR),
        pa(0),
        4 * MIB,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 0, 0, 1024]);
    assert_eq!(folded(&pt), 0);
}

/// With 1 GiB blocks forbidden, GiB-aligned ranges come out as 2 MiB
/// blocks (x86 without `pdpe1gb`), and the contiguous hint still applies.
fn gib_blocks_forbidden<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let (v, p) = (LINEAR + GIB, GIB);
    let size = 2 * GIB + 2 * MIB + 0x3000;
    pt.map_range(
        va(v),
        pa(p),
        size,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::LARGEST_NO_GIB,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 0, 1025, 3]);
    // Root, one L1 table, three L2 tables (one per GiB touched), one L3.
    assert_eq!(pt.count_tables(), 6);
    expect_at(&pt, v, p, Level::L2);
    expect_at(&pt, v + GIB - 1, p + GIB - 1, Level::L2);
    expect_at(&pt, v + GIB + 0x12_3456, p + GIB + 0x12_3456, Level::L2);
    expect_at(&pt, v + 2 * GIB, p + 2 * GIB, Level::L2);
    expect_at(&pt, v + 2 * GIB + 2 * MIB, p + 2 * GIB + 2 * MIB, Level::L3);
    expect_at(&pt, v + size - 1, p + size - 1, Level::L3);
    assert_eq!(pt.translate(va(v + size)), None);
    let mut l1 = 0;
    pt.for_each_leaf(|_, t| l1 += (t.level == Level::L1) as usize);
    assert_eq!(l1, 0, "a 1 GiB block despite largest_leaf = L2");
    // 1024 blocks form 64 runs of 16 on arm64; x86 has no hint.
    let runs = if F::CONT_ENTRIES > 1 { 1024 } else { 0 };
    assert_eq!(folded(&pt), runs);

    // Without the hint, the same shape.
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    pt.map_range(
        va(v),
        pa(p),
        GIB,
        Attrs::KERNEL_DATA,
        &mut frames,
        NO_GIB_NO_CONT,
    )
    .unwrap();
    assert_eq!(leaf_counts(&pt), [0, 0, 512, 0]);
    assert_eq!(folded(&pt), 0);
}

/// `largest_leaf` is a ceiling: each setting allows exactly the levels at
/// and below it, and `L0` (no leaf in any format) behaves as `L1`.
fn largest_leaf_is_a_ceiling<F: PteFormat>() {
    let cases = [
        (Level::L0, [0, 1, 0, 0]),
        (Level::L1, [0, 1, 0, 0]),
        (Level::L2, [0, 0, 512, 0]),
        (Level::L3, [0, 0, 0, 512 * 512]),
    ];
    for (largest, want) in cases {
        // A GiB of pages needs 512 L3 tables plus the path to them.
        let (_arena, mut frames, mut pt) = {
            let arena = Arena::new(3 << 20);
            let mut frames = arena.frames(600);
            let pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
            (arena, frames, pt)
        };
        let opts = MapOptions {
            largest_leaf: largest,
            fold: false,
        };
        pt.map_range(
            va(LINEAR + 3 * GIB),
            pa(3 * GIB),
            GIB,
            Attrs::KERNEL_DATA,
            &mut frames,
            opts,
        )
        .unwrap();
        assert_eq!(
            leaf_counts(&pt),
            want,
            "{}: largest_leaf {largest:?}",
            F::NAME
        );
        expect_at(
            &pt,
            LINEAR + 3 * GIB + 0x2345_6789,
            3 * GIB + 0x2345_6789,
            Level::ALL[want.iter().position(|&n| n > 0).unwrap()],
        );
        for level in Level::ALL {
            assert_eq!(opts.allows_leaf_at(level), level >= largest);
        }
    }
    assert_eq!(MapOptions::default(), MapOptions::PAGES);
}

fn overlap_is_refused<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let a = 0x10_0000_0000;
    let attrs = Attrs::user(true, false);
    pt.map_range(
        va(a),
        pa(0x4000_0000),
        0x4000,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    // Overlapping tail: refused, and nothing of the new range appears.
    let r = pt.map_range(
        va(a + 0x3000),
        pa(0x5000_0000),
        0x5000,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::AlreadyMapped));
    assert_eq!(pt.translate(va(a + 0x4000)), None);
    expect_at(&pt, a + 0x3000, 0x4000_3000, Level::L3);
    // Adjacent is fine.
    pt.map_range(
        va(a + 0x4000),
        pa(0x5000_0000),
        0x4000,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    // A block over a region holding pages: refused.
    let r = pt.map_range(
        va(a),
        pa(0x4000_0000),
        2 * MIB,
        attrs,
        &mut frames,
        MapOptions::LARGEST,
    );
    assert_eq!(r, Err(MapError::AlreadyMapped));
    // A page inside an existing block: refused.
    let b = a + GIB;
    pt.map_range(
        va(b),
        pa(0x4000_0000),
        2 * MIB,
        attrs,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    expect_at(&pt, b + 0x1000, 0x4000_1000, Level::L2);
    let r = pt.map_range(
        va(b + 0x1000),
        pa(0x1000),
        0x1000,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::AlreadyMapped));
    // The same range again: refused.
    let r = pt.map_range(
        va(b),
        pa(0x4000_0000),
        2 * MIB,
        attrs,
        &mut frames,
        MapOptions::LARGEST,
    );
    assert_eq!(r, Err(MapError::AlreadyMapped));
    assert_eq!(leaf_counts(&pt), [0, 0, 1, 8]);
}

/// An empty table left by a failed call sits where a block could go: the
/// mapper maps through it with pages rather than leaking it.
fn empty_table_under_block_is_reused<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let r0 = 0x20_0000_0000;
    let r1 = r0 + 2 * MIB;
    let attrs = Attrs::KERNEL_DATA;
    pt.map_range(
        va(r1 + 0x1000),
        pa(0x1000),
        0x1000,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    // Pass 1 creates the L3 table for r0's part, then hits the page in r1.
    let r = pt.map_range(
        va(r0 + 0x2000),
        pa(0x2000),
        2 * MIB,
        attrs,
        &mut frames,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::AlreadyMapped));
    let tables = pt.count_tables();
    assert_eq!(pt.translate(va(r0 + 0x2000)), None);
    pt.map_range(
        va(r0),
        pa(0x4000_0000),
        2 * MIB,
        attrs,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    assert_eq!(pt.count_tables(), tables, "no new table, none leaked");
    expect_at(&pt, r0 + 0x5123, 0x4000_5123, Level::L3);
    assert_eq!(leaf_counts(&pt), [0, 0, 0, 513]);
}

fn out_of_memory<F: PteFormat>() {
    // The root plus two tables: one short of what a first page needs.
    let (_arena, mut frames, mut pt) = setup::<F>(3);
    let v = 0x0000_1234_5678_9000;
    let r = pt.map_range(
        va(v),
        pa(0x4000_0000),
        0x1000,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::OutOfMemory));
    assert_eq!(pt.translate(va(v)), None);
    assert_eq!(leaf_counts(&pt), [0; 4]);
    // Partial tables are kept and reused once frames are available.
    frames.budget = 1;
    pt.map_range(
        va(v),
        pa(0x4000_0000),
        0x1000,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    assert_eq!(pt.count_tables(), 4);
    expect_at(&pt, v + 0x10, 0x4000_0010, Level::L3);
    // A block needs no more tables; a page in a new 2 MiB region does.
    let block = v & !(GIB - 1);
    pt.map_range(
        va(block),
        pa(0x4000_0000),
        2 * MIB,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    expect_at(&pt, block + 0x1234, 0x4000_1234, Level::L2);
    let r = pt.map_range(
        va(v + 2 * MIB),
        pa(0x1000),
        0x1000,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::OutOfMemory));
    // Running out of memory at root creation is an error too.
    let arena = Arena::new(1 << 20);
    let mut none = arena.frames(0);
    assert_eq!(
        PageTable::<F>::create(&mut none, arena.linear_map()).err(),
        Some(MapError::OutOfMemory)
    );
}

fn bad_input<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let k = Attrs::KERNEL_DATA;
    let o = MapOptions::LARGEST;
    let mut map =
        |v: u64, p: u64, size: u64, a: Attrs| pt.map_range(va(v), pa(p), size, a, &mut frames, o);
    assert_eq!(map(0x1001, 0, 0x1000, k), Err(MapError::Misaligned));
    assert_eq!(map(0x1000, 0x10, 0x1000, k), Err(MapError::Misaligned));
    assert_eq!(map(0x1000, 0, 0x1001, k), Err(MapError::Misaligned));
    // Outside both halves (for either format), running off the end of
    // the lower half, wrapping past the top.
    assert_eq!(
        map(0x0001_0000_0000_0000, 0, 0x1000, k),
        Err(MapError::OutOfRange)
    );
    let lower_end = if F::va_in_range(va(0x0000_8000_0000_0000)) {
        0x0001_0000_0000_0000u64
    } else {
        0x0000_8000_0000_0000
    };
    assert_eq!(
        map(lower_end - 0x1000, 0, 0x2000, k),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        map(0xffff_ffff_ffff_f000, 0, 0x2000, k),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        map(0x1000, 0xffff_ffff_ffff_f000, 0x2000, k),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        map(0x1000, 1 << F::PA_BITS, 0x1000, k),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        map(0x1000, (1 << F::PA_BITS) - 0x1000, 0x2000, k),
        Err(MapError::OutOfRange)
    );
    // Empty ranges are fine and map nothing.
    assert_eq!(map(0x1000, 0, 0, k), Ok(()));
    // The very last page of the address space and the very first.
    assert_eq!(map(0xffff_ffff_ffff_f000, 0x7000, 0x1000, k), Ok(()));
    assert_eq!(map(0, 0x8000, 0x1000, k), Ok(()));
    assert_eq!(
        map(0x0000_7fff_ffff_f000, (1 << F::PA_BITS) - 0x1000, 0x1000, k),
        Ok(())
    );
    expect_at(&pt, u64::MAX, 0x7fff, Level::L3);
    expect_at(&pt, 0, 0x8000, Level::L3);
    assert_eq!(pt.translate(va(0x0000_8000_0000_0000)), None);
    let mut tops = Vec::new();
    pt.for_each_leaf(|v, _| tops.push(v.as_u64()));
    assert_eq!(tops, [0, 0x0000_7fff_ffff_f000, 0xffff_ffff_ffff_f000]);
    // A user tree's view: raw 48-bit VAs, stopping at the given end. The
    // top page is the arm64 user half's last (TTBR0 reaches 2^48).
    let mut user = Vec::new();
    pt.for_each_leaf_below(va(1 << 48), |v, _| user.push(v.as_u64()));
    assert_eq!(user, [0, 0x0000_7fff_ffff_f000, 0x0000_ffff_ffff_f000]);
    user.clear();
    pt.for_each_leaf_below(va(1 << 47), |v, _| user.push(v.as_u64()));
    assert_eq!(user, [0, 0x0000_7fff_ffff_f000]);
}

/// Root slots preallocated (the x86 kernel half every process shares):
/// each absent one in range gets an empty table, a present one is kept,
/// indices past the root are ignored.
fn prealloc_root<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let k = Attrs::KERNEL_DATA;
    pt.map_range(
        va(LINEAR),
        pa(0x4000_0000),
        0x1000,
        k,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();
    let before = pt.count_tables();
    let slot = |va: u64| ((va >> 39) & 511) as usize;
    let linear_slot = slot(LINEAR);
    let added = pt
        .prealloc_root_slots(linear_slot - 1..linear_slot + 2, &mut frames)
        .unwrap();
    assert_eq!(added, 2, "the linear map's slot was already there");
    assert_eq!(pt.count_tables(), before + 2);
    assert_eq!(pt.prealloc_root_slots(510..600, &mut frames).unwrap(), 2);
    assert_eq!(pt.prealloc_root_slots(510..600, &mut frames).unwrap(), 0);
    let t = pt.translate(va(LINEAR)).unwrap();
    assert_eq!(t.pa, pa(0x4000_0000), "the existing mapping survives");
}

/// The boot-time picture: linear map of RAM in blocks, image sections in
/// pages with W^X, one device page.
fn kernel_boot_layout<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let ram = (0x4000_0000, 2 * GIB);
    pt.map_range(
        va(LINEAR + ram.0),
        pa(ram.0),
        ram.1,
        Attrs::KERNEL_DATA,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    let image = 0xffff_ffff_8000_0000;
    let sections = [
        (0x0000, 0x3000, Attrs::KERNEL_TEXT),
        (0x3000, 0x2000, Attrs::KERNEL_RODATA),
        (0x5000, 0x5000, Attrs::KERNEL_DATA),
    ];
    for (off, size, attrs) in sections {
        pt.map_range(
            va(image + off),
            pa(0x4008_0000 + off),
            size,
            attrs,
            &mut frames,
            MapOptions::PAGES,
        )
        .unwrap();
    }
    let uart = 0xffff_fe00_0000_0000;
    pt.map_range(
        va(uart),
        pa(0x0900_0000),
        0x1000,
        Attrs::KERNEL_DEVICE,
        &mut frames,
        MapOptions::PAGES,
    )
    .unwrap();

    assert_eq!(leaf_counts(&pt), [0, 2, 0, 11]);
    expect_at(&pt, LINEAR + 0x4008_1234, 0x4008_1234, Level::L1);
    expect_at(&pt, LINEAR + 0xbfff_ffff, 0xbfff_ffff, Level::L1);
    assert_eq!(pt.translate(va(LINEAR + 0xc000_0000)), None);
    for (off, size, attrs) in sections {
        for o in (off..off + size).step_by(0x800) {
            let t = pt.translate(va(image + o)).unwrap();
            assert_eq!((t.pa, t.attrs), (pa(0x4008_0000 + o), attrs));
        }
    }
    let t = pt.translate(va(uart + 0x18)).unwrap();
    assert_eq!((t.pa, t.attrs), (pa(0x0900_0018), Attrs::KERNEL_DEVICE));
    pt.for_each_leaf(|v, t| {
        assert!(!(t.attrs.writable && t.attrs.exec), "W+X at {v:?}");
        assert!(!t.attrs.user, "user page at {v:?}");
    });
}

/// The contiguous hint on aligned runs (arm64 only).
fn cont_runs<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>(64);
    let has_cont = F::CONT_ENTRIES > 1;
    let k = Attrs::KERNEL_DATA;
    // 64 KiB-aligned VA and PA: two runs of 16 pages and one odd page.
    let v = LINEAR + 0x4010_0000;
    pt.map_range(
        va(v),
        pa(0x4010_0000),
        0x21000,
        k,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    for i in 0..33u64 {
        let t = pt.translate(va(v + i * 0x1000)).unwrap();
        assert_eq!(
            is_folded(&pt, v + i * 0x1000),
            has_cont && i < 32,
            "page {i}"
        );
        assert_eq!(t.attrs, k);
    }
    if has_cont {
        let raw = pt.raw_leaf(va(v)).unwrap().pte;
        assert_ne!(raw.bits() & (1 << 52), 0);
    }
    // A range starting three pages before a block boundary: those three
    // pages plain, then three whole blocks folded.
    let v = LINEAR + 0x4020_d000;
    pt.map_range(
        va(v),
        pa(0x4020_d000),
        0x33000,
        k,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    for i in 0..51u64 {
        assert_eq!(
            is_folded(&pt, v + i * 0x1000),
            has_cont && i >= 3,
            "page {i}"
        );
        assert_eq!(
            pt.translate(va(v + i * 0x1000)).unwrap().pa,
            pa(0x4020_d000 + i * 0x1000)
        );
    }
    // PA not 64 KiB-aligned: no run.
    let v = LINEAR + 0x5000_0000;
    pt.map_range(
        va(v),
        pa(0x5000_1000),
        0x20000,
        k,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    assert!(!is_folded(&pt, v));
    // Blocks: 16 x 2 MiB = 32 MiB runs.
    let v = LINEAR + 0x6000_0000;
    pt.map_range(
        va(v),
        pa(0x6000_0000),
        34 * MIB,
        k,
        &mut frames,
        MapOptions::LARGEST,
    )
    .unwrap();
    for i in 0..17u64 {
        let t = pt.translate(va(v + i * 2 * MIB)).unwrap();
        assert_eq!(
            (t.level, is_folded(&pt, v + i * 2 * MIB)),
            (Level::L2, has_cont && i < 16),
            "block {i}"
        );
    }
    // Not allowed: no hint.
    let v = LINEAR + 0x7000_0000;
    pt.map_range(
        va(v),
        pa(0x7000_0000),
        0x10000,
        k,
        &mut frames,
        BLOCKS_NO_CONT,
    )
    .unwrap();
    assert!(!is_folded(&pt, v));
}

fn misaligned_table_frame_is_refused<F: PteFormat>() {
    struct Odd;
    // SAFETY: never hands out a frame the mapper may write: the only one
    // is misaligned and must be refused before use.
    unsafe impl TableAlloc for Odd {
        fn alloc_table(&mut self) -> Option<PhysAddr> {
            Some(PhysAddr::new(FAKE_BASE + 8))
        }
    }
    let (_arena, _frames, mut pt) = setup::<F>(64);
    let r = pt.map_range(
        va(0),
        pa(0),
        0x1000,
        Attrs::KERNEL_DATA,
        &mut Odd,
        MapOptions::PAGES,
    );
    assert_eq!(r, Err(MapError::BadTableFrame));
    let arena = Arena::new(1 << 20);
    assert_eq!(
        PageTable::<F>::create(&mut Odd, arena.linear_map()).err(),
        Some(MapError::BadTableFrame)
    );
}

macro_rules! for_both_formats {
    ($($name:ident),* $(,)?) => {
        mod aarch64 {
            $( #[test] fn $name() { super::$name::<super::Aarch64>() } )*
        }
        mod x86_64 {
            $( #[test] fn $name() { super::$name::<super::X86_64>() } )*
        }
    };
}

for_both_formats!(
    empty_tree,
    blocks_when_aligned,
    leading_and_trailing_pages,
    pages_when_pa_incongruent,
    pages_when_blocks_disallowed,
    gib_blocks_forbidden,
    largest_leaf_is_a_ceiling,
    overlap_is_refused,
    empty_table_under_block_is_reused,
    out_of_memory,
    bad_input,
    kernel_boot_layout,
    cont_runs,
    misaligned_table_frame_is_refused,
    prealloc_root,
);

// ------------------------------------------------------------ properties --

/// One request: VA and PA in pages, size in pages.
#[derive(Clone, Debug)]
struct Req {
    va: u64,
    pa: u64,
    size: u64,
    attrs: Attrs,
    opts: MapOptions,
}

/// Addresses in an 8 GiB window, aligned to 4 KiB, 2 MiB or 1 GiB, with PAs
/// congruent (so blocks can occur) or not; sizes from one page to over
/// 1 GiB.
fn req() -> impl Strategy<Value = Req> {
    let align = prop_oneof![Just(PAGE_SIZE), Just(64 * 1024), Just(2 * MIB), Just(GIB)];
    let size = prop_oneof![
        1u64..40,
        (1u64..4, 0u64..20).prop_map(|(b, p)| b * 512 + p),
        (0u64..3).prop_map(|p| GIB / PAGE_SIZE + p),
    ];
    let attrs = prop_oneof![
        Just(Attrs::KERNEL_DATA),
        Just(Attrs::KERNEL_TEXT),
        Just(Attrs::KERNEL_DEVICE),
        Just(Attrs::user(true, false)),
    ];
    let opts = prop_oneof![
        Just(MapOptions::PAGES),
        Just(BLOCKS_NO_CONT),
        Just(MapOptions::LARGEST),
        Just(NO_GIB_NO_CONT),
        Just(MapOptions::LARGEST_NO_GIB),
    ];
    (
        align,
        0u64..(8 * GIB / PAGE_SIZE),
        any::<bool>(),
        0u64..(1 << 17),
        size,
        attrs,
        opts,
    )
        .prop_map(
            |(align, va_page, congruent, pa_page, size, attrs, mut opts)| {
                let size = size * PAGE_SIZE;
                // A GiB of 4 KiB pages would need 513 tables: keep huge ranges
                // block-mappable so the arena and the run time stay small.
                let congruent = congruent || size >= GIB;
                if size >= GIB {
                    opts.largest_leaf = opts.largest_leaf.min(Level::L2);
                }
                let va = (va_page * PAGE_SIZE) & !(align - 1);
                let pa = if congruent {
                    (pa_page << 30) | (va & (GIB - 1))
                } else {
                    pa_page * PAGE_SIZE
                };
                Req {
                    va,
                    pa,
                    size,
                    attrs,
                    opts,
                }
            },
        )
}

/// The leaves a greedy "largest fitting entry first" mapping of `r` needs,
/// per level, in an empty tree.
fn greedy_leaves(r: &Req) -> [usize; 4] {
    let mut n = [0; 4];
    let (mut v, mut p, mut left) = (r.va, r.pa, r.size);
    while left > 0 {
        let level = [Level::L1, Level::L2, Level::L3]
            .into_iter()
            .find(|l| {
                let s = l.size();
                *l >= r.opts.largest_leaf && v % s == 0 && p % s == 0 && left >= s
            })
            .unwrap();
        n[level.get() as usize] += 1;
        v += level.size();
        p += level.size();
        left -= level.size();
    }
    n
}

fn check_against_model<F: PteFormat>(reqs: &[Req], probes: &[u64]) -> Result<(), TestCaseError> {
    let (_arena, mut frames, mut pt) = setup::<F>(1024);
    let mut done: Vec<Req> = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let overlaps = done
            .iter()
            .any(|d| r.va < d.va + d.size && d.va < r.va + r.size);
        let res = pt.map_range(va(r.va), pa(r.pa), r.size, r.attrs, &mut frames, r.opts);
        if overlaps {
            prop_assert_eq!(res, Err(MapError::AlreadyMapped), "request {}", i);
        } else {
            prop_assert_eq!(res, Ok(()), "request {}", i);
            if done.is_empty() {
                prop_assert_eq!(leaf_counts(&pt), greedy_leaves(r));
            }
            done.push(r.clone());
        }
    }
    // Probe each range's ends and interior, plus arbitrary addresses.
    let mut addrs: Vec<u64> = probes.to_vec();
    for d in &done {
        addrs.extend([
            d.va,
            d.va + d.size - 1,
            d.va + d.size,
            d.va.wrapping_sub(1),
            d.va + d.size / 2,
        ]);
    }
    for a in addrs {
        let want = done.iter().find(|d| a >= d.va && a < d.va + d.size);
        match (pt.translate(va(a)), want) {
            (None, None) => {}
            (Some(t), Some(d)) => {
                prop_assert_eq!(t.pa, pa(d.pa + (a - d.va)), "at {:#x}", a);
                prop_assert_eq!(t.attrs, d.attrs, "at {:#x}", a);
                if is_folded(&pt, a) {
                    prop_assert!(d.opts.fold && F::CONT_ENTRIES > 1);
                }
            }
            (got, want) => prop_assert!(false, "at {:#x}: got {:?}, want {:?}", a, got, want),
        }
    }
    // Leaves cover exactly the mapped bytes, none larger than its request
    // allowed.
    let mut bytes = 0;
    let mut too_large = Vec::new();
    pt.for_each_leaf(|v, t| {
        bytes += t.level.size();
        let d = done
            .iter()
            .find(|d| v.as_u64() >= d.va && v.as_u64() < d.va + d.size);
        if d.is_none_or(|d| !d.opts.allows_leaf_at(t.level)) {
            too_large.push((v.as_u64(), t.level));
        }
    });
    prop_assert!(
        too_large.is_empty(),
        "leaves outside or above their request's largest_leaf: {:x?}",
        too_large
    );
    prop_assert_eq!(bytes, done.iter().map(|d| d.size).sum::<u64>());
    Ok(())
}

proptest! {
    #![proptest_config(common::cases(96))]

    #[test]
    fn arm64_matches_model(reqs in prop::collection::vec(req(), 1..6),
                           probes in prop::collection::vec(0u64..8 * GIB, 32)) {
        check_against_model::<Aarch64>(&reqs, &probes)?;
    }

    #[test]
    fn x86_matches_model(reqs in prop::collection::vec(req(), 1..6),
                         probes in prop::collection::vec(0u64..8 * GIB, 32)) {
        check_against_model::<X86_64>(&reqs, &probes)?;
    }
}
