//! Host tests of Linux's views of memory (`folium_mm::views`) on both PTE
//! formats: pagemap frames and the exclusive bit through faults, fork,
//! copy-on-write and the child's exit; kpageflags of folio heads and
//! tails, free blocks, the zero page and frames outside the memmap; the
//! smaps_rollup sums, `AnonHugePages` for whole 2 MiB folios only. The
//! expected values come from the operations that made the state (which
//! folio a fault allocated, who wrote what), not from the views' code.

use folium_mm::aspace::AddressSpace;
use folium_mm::pgtable::{PageTable, PteFormat};
use folium_mm::views::{
    MapcountCache, MemView, PM_FILE, PM_MMAP_EXCLUSIVE, PM_PFN_MASK, PM_PRESENT, SmapsRollup,
    kpageflags,
};
use folium_mm::{PAGE_SIZE, Pfn, VirtAddr};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, folio_at, new_space, read_u64, set_sizes, va, write_u64};

const FRAMES: u64 = 8192;

const BUDDY: u64 = 1 << 10;
const MMAP: u64 = 1 << 11;
const ANON: u64 = 1 << 12;
const HEAD: u64 = 1 << 15;
const TAIL: u64 = 1 << 16;
const NOPAGE: u64 = 1 << 20;
const THP: u64 = 1 << 22;
const ZERO: u64 = 1 << 24;
const RESERVED: u64 = 1 << 32;

/// The view of `a`, with `all` as every space there is.
fn view<'a, F: PteFormat>(
    env: &'a HostEnv,
    a: &'a AddressSpace<F>,
    all: &'a [&'a PageTable<F>],
) -> MemView<'a, F> {
    MemView {
        memmap: env.memmap,
        zero_pfn: env.zero,
        table: a.page_table(),
        all,
    }
}

/// The pagemap entries of pages `first..first + n` of the test window.
fn pagemap<F: PteFormat>(v: &MemView<'_, F>, first: u64, n: usize) -> Vec<u64> {
    let mut out = vec![u64::MAX; n];
    v.pagemap(
        va(first).as_u64() / PAGE_SIZE,
        &mut out,
        &mut MapcountCache::default(),
    );
    out
}

fn pfn_of(e: u64) -> Pfn {
    Pfn::new(e & PM_PFN_MASK)
}

fn exclusive(entries: &[u64]) -> Vec<bool> {
    entries.iter().map(|e| e & PM_MMAP_EXCLUSIVE != 0).collect()
}

/// A 64 KiB folio faulted by a write: 16 present, exclusive, anonymous
/// entries with consecutive frames from the folio's head, then 0 for the
/// untouched page after the area; kpageflags marks the head and 15 tails
/// as a THP; a whole table's worth past the area reads 0 too.
fn pagemap_and_flags_of_a_large_folio<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 16);
    write_u64(&mut env, &mut a, va(5), 1);
    let (head, order, ..) = folio_at(&env, &a, 0);
    assert_eq!(order, 4);
    let all = [a.page_table()];
    let v = view(&env, &a, &all);
    let e = pagemap(&v, 0, 17);
    for (k, &e) in e[..16].iter().enumerate() {
        assert_eq!(
            e,
            PM_PRESENT | PM_MMAP_EXCLUSIVE | (head.as_u64() + k as u64)
        );
        assert_eq!(e & PM_FILE, 0);
    }
    assert_eq!(e[16], 0);
    assert!(pagemap(&v, 600, 1000).iter().all(|&e| e == 0));
    let flags = |p: Pfn| kpageflags(env.memmap, env.zero, p);
    assert_eq!(
        flags(head) & (HEAD | TAIL | THP | ANON | MMAP),
        HEAD | THP | ANON | MMAP
    );
    for k in 1..16 {
        assert_eq!(
            flags(head + k) & (HEAD | TAIL | THP | ANON | MMAP),
            TAIL | THP | ANON | MMAP
        );
    }
    assert_eq!(flags(head + 16) & (HEAD | TAIL), 0, "the next block");
    a.teardown(&mut env);
}

on_both_formats!(pagemap_and_flags_of_a_large_folio: large_folio_x86_64, large_folio_aarch64);

/// Free blocks read BUDDY on every frame (as many as are free), frames outside the memmap
/// NOPAGE, an order-0 anonymous folio neither head nor tail nor THP.
#[test]
fn kpageflags_of_free_small_and_missing_frames() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[]);
    let mut a = new_space::<folium_mm::pgtable::X86_64>(&mut env, 1);
    anon(&mut a, 0, 1);
    write_u64(&mut env, &mut a, va(0), 1);
    let (pfn, order, ..) = folio_at(&env, &a, 0);
    assert_eq!(order, 0);
    let (memmap, zero) = (env.memmap, env.zero);
    let flags = |p: Pfn| kpageflags(memmap, zero, p);
    assert_eq!(flags(pfn) & (HEAD | TAIL | THP | ANON | MMAP), ANON | MMAP);
    // Every free frame, tails included, reads BUDDY and nothing else:
    // as many as the allocator counts free.
    let (start, end) = (env.memmap.start_pfn(), env.memmap.end_pfn());
    let all: Vec<u64> = (0..end - start).map(|i| flags(start + i)).collect();
    let buddy = all.iter().filter(|&&f| f & BUDDY != 0).count() as u64;
    assert_eq!(buddy, env.free_pages());
    assert!(all.iter().filter(|&&f| f & BUDDY != 0).all(|&f| f == BUDDY));
    assert_eq!(flags(env.memmap.end_pfn()), NOPAGE);
    assert_eq!(flags(env.memmap.start_pfn() - 1), NOPAGE);
    assert_eq!(flags(env.zero), ZERO | RESERVED);
    a.teardown(&mut env);
    assert_eq!(flags(pfn) & (ANON | MMAP), 0, "freed");
}

/// After fork no page of the 64 KiB folio is exclusive, in either
/// process; the child's write copies page 3 into an exclusive order-0
/// page, and the parent's page 3, mapped once again, reads exclusive
/// while the other 15 stay shared; once the child is gone, every page is
/// exclusive again.
fn exclusive_bit_through_fork_and_cow<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut p = new_space::<F>(&mut env, 1);
    anon(&mut p, 0, 16);
    for k in 0..16 {
        write_u64(&mut env, &mut p, va(k), k);
    }
    let (head, ..) = folio_at(&env, &p, 0);
    let mut c = p.fork(&mut env, None).unwrap();
    {
        let all = [p.page_table(), c.page_table()];
        for s in [&p, &c] {
            let e = pagemap(&view(&env, s, &all), 0, 16);
            assert_eq!(exclusive(&e), [false; 16]);
            assert!(
                e.iter()
                    .enumerate()
                    .all(|(k, &e)| pfn_of(e) == head + k as u64)
            );
        }
    }
    write_u64(&mut env, &mut c, va(3), 33);
    {
        let all = [p.page_table(), c.page_table()];
        let pe = pagemap(&view(&env, &p, &all), 0, 16);
        let ce = pagemap(&view(&env, &c, &all), 0, 16);
        let want: Vec<bool> = (0..16).map(|k| k == 3).collect();
        assert_eq!(exclusive(&pe), want, "parent");
        assert_eq!(exclusive(&ce), want, "child");
        assert_eq!(pfn_of(pe[3]), head + 3);
        let copy = pfn_of(ce[3]);
        assert_ne!(copy, head + 3);
        let f = kpageflags(env.memmap, env.zero, copy);
        assert_eq!(f & (HEAD | TAIL | THP | ANON | MMAP), ANON | MMAP);
    }
    c.teardown(&mut env);
    let all = [p.page_table()];
    assert_eq!(
        exclusive(&pagemap(&view(&env, &p, &all), 0, 16)),
        [true; 16]
    );
    p.teardown(&mut env);
}

on_both_formats!(exclusive_bit_through_fork_and_cow: fork_cow_x86_64, fork_cow_aarch64);

/// A read of untouched memory maps the zero page: present, its frame,
/// neither exclusive nor a file page; it is not in Rss.
#[test]
fn zero_page_after_a_read_fault() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[]);
    let mut a = new_space::<folium_mm::pgtable::Aarch64>(&mut env, 1);
    anon(&mut a, 0, 4);
    assert_eq!(read_u64(&mut env, &mut a, va(1)), 0);
    let all = [a.page_table()];
    let v = view(&env, &a, &all);
    assert_eq!(pagemap(&v, 0, 3), [0, PM_PRESENT | env.zero.as_u64(), 0]);
    assert_eq!(v.smaps_rollup([(va(0), va(4))].into_iter()).rss, 0);
    a.teardown(&mut env);
}

/// The pagemap bits are Linux's (`Documentation/admin-guide/mm/pagemap.rst`).
#[test]
fn pagemap_bits_are_linuxs() {
    use folium_mm::views::{PM_SOFT_DIRTY, PM_SWAP, PM_UFFD_WP};
    assert_eq!(PM_PFN_MASK, (1 << 55) - 1);
    assert_eq!(
        [
            PM_SOFT_DIRTY,
            PM_MMAP_EXCLUSIVE,
            PM_UFFD_WP,
            PM_FILE,
            PM_SWAP,
            PM_PRESENT
        ],
        [1 << 55, 1 << 56, 1 << 57, 1 << 61, 1 << 62, 1 << 63]
    );
}

/// smaps_rollup counts the pages of the areas it is given and nothing
/// else of the tables they share: two areas in one last-level table, the
/// sum over one is its own pages only.
#[test]
fn rollup_counts_only_the_given_areas() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[]);
    let mut a = new_space::<folium_mm::pgtable::X86_64>(&mut env, 1);
    anon(&mut a, 0, 8);
    anon(&mut a, 10, 6);
    for p in (0..8).chain(10..16) {
        write_u64(&mut env, &mut a, va(p), p);
    }
    let all = [a.page_table()];
    let v = view(&env, &a, &all);
    let rss = |areas: &[(u64, u64)]| {
        v.smaps_rollup(areas.iter().map(|&(s, e)| (va(s), va(e))))
            .rss
            / PAGE_SIZE
    };
    assert_eq!(rss(&[(0, 8)]), 8);
    assert_eq!(rss(&[(10, 16)]), 6);
    assert_eq!(rss(&[(2, 5)]), 3);
    assert_eq!(rss(&[(0, 8), (10, 16)]), 14);
    a.teardown(&mut env);
}

/// One whole 2 MiB folio counts in AnonHugePages, in both processes after
/// fork, where Pss halves; the child's copy-on-write of one page takes it
/// out of the child's (the folio is no longer whole there) but not the
/// parent's; a 64 KiB folio never counts.
fn smaps_rollup_sums<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(9, "always")]);
    let mut p = new_space::<F>(&mut env, 1);
    anon(&mut p, 0, 512);
    write_u64(&mut env, &mut p, va(0), 1);
    assert_eq!(folio_at(&env, &p, 0).1, 9);
    let area = || [(va(0), va(512))].into_iter();
    const MB2: u64 = 2 << 20;
    {
        let all = [p.page_table()];
        let s = view(&env, &p, &all).smaps_rollup(area());
        assert_eq!((s.rss, s.anonymous, s.anon_huge), (MB2, MB2, MB2));
        assert_eq!(s.pss >> 12, MB2);
        assert_eq!(s.private_clean + s.private_dirty, MB2);
    }
    let mut c = p.fork(&mut env, None).unwrap();
    {
        let all = [p.page_table(), c.page_table()];
        for s in [&p, &c] {
            let r = view(&env, s, &all).smaps_rollup(area());
            assert_eq!((r.rss, r.anon_huge), (MB2, MB2));
            assert_eq!(r.pss >> 12, MB2 / 2);
            assert_eq!(r.shared_clean + r.shared_dirty, MB2);
        }
    }
    write_u64(&mut env, &mut c, va(100), 2);
    {
        let all = [p.page_table(), c.page_table()];
        let rp = view(&env, &p, &all).smaps_rollup(area());
        let rc = view(&env, &c, &all).smaps_rollup(area());
        assert_eq!(rp.anon_huge, MB2);
        assert_eq!(rc.anon_huge, 0);
        assert_eq!(rc.rss, MB2);
        assert_eq!(rc.private_clean + rc.private_dirty, PAGE_SIZE);
        assert_eq!(rp.private_clean + rp.private_dirty, PAGE_SIZE);
        let mut text = String::new();
        rp.write(va(0), va(512), &mut text).unwrap();
        assert!(text.contains("\nAnonHugePages:      2048 kB\n"), "{text}");
        assert!(text.contains("\nRss:                2048 kB\n"), "{text}");
        assert_eq!(text.lines().count(), 23);
        assert_eq!(text.lines().next().unwrap().find("[rollup]"), Some(73));
    }
    c.teardown(&mut env);
    p.teardown(&mut env);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<F>(&mut env, 2);
    anon(&mut a, 0, 512);
    for k in 0..32 {
        write_u64(&mut env, &mut a, va(k * 16), 1);
    }
    let all = [a.page_table()];
    let s = view(&env, &a, &all).smaps_rollup(area());
    assert_eq!((s.rss, s.anon_huge), (MB2, 0));
    a.teardown(&mut env);
}

on_both_formats!(smaps_rollup_sums: smaps_x86_64, smaps_aarch64);

#[test]
fn rollup_text_is_linux_s_format() {
    let mut t = String::new();
    SmapsRollup::default()
        .write(
            VirtAddr::new(0x40_0000),
            VirtAddr::new(0x7fff_f000_0000),
            &mut t,
        )
        .unwrap();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{:<72} [rollup]",
            "00400000-7ffff0000000 ---p 00000000 00:00 0 "
        )
    );
    assert_eq!(lines[1], "Rss:                   0 kB");
    assert_eq!(lines[19], "Private_Hugetlb:       0 kB");
    assert_eq!(lines[22], "Locked:                0 kB");
}
