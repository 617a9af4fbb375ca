//! Unit tests of `buddy.rs`.

use super::*;
use crate::memmap::test_memmap;

fn buddy(start: u64, end: u64) -> BuddyAllocator<'static> {
    BuddyAllocator::new(test_memmap(Pfn::new(start), Pfn::new(end)))
}

fn o(k: u8) -> Order {
    Order::of(k)
}

/// Walks every free list and checks it against the counters and the
/// invariants in the module doc.
fn check_lists(b: &BuddyAllocator) {
    let mut pages = 0;
    for k in 0..Order::COUNT {
        let (mut idx, mut prev, mut n) = (b.free_lists[k], NONE, 0);
        while idx != NONE {
            let p = b.memmap.at(idx);
            assert!(p.is_buddy() && p.order().index() == k);
            assert_eq!(p.prev(), prev);
            assert_eq!(idx % (1 << k), 0, "misaligned free block");
            if k < Order::MAX.index() {
                let bud = b.memmap.at(idx ^ (1 << k));
                assert!(
                    !(bud.is_buddy() && bud.order().index() == k),
                    "unmerged buddies"
                );
            }
            (prev, idx) = (idx, p.next());
            n += 1;
        }
        assert_eq!(n, b.nr_free_blocks[k]);
        pages += n << k;
    }
    assert_eq!(pages, b.nr_free_pages);
    let buddies = b.memmap.pages().iter().filter(|p| p.is_buddy()).count() as u64;
    assert_eq!(buddies, b.nr_free_blocks.iter().sum::<u64>());
}

#[test]
fn add_carves_maximal_aligned_blocks() {
    let mut b = buddy(0x1000, 0x1800);
    // 0x1003..0x1408: 1+4 (0x1003, 0x1004..8) ... up to 0x1400, then 8.
    assert_eq!(b.add_free_range(Pfn::new(0x1003), Pfn::new(0x1408)), 0x405);
    let f = b.free_per_order();
    // 0x1003 (o0), 0x1004 (o2), 0x1008 (o3), 0x1010 (o4) ... 0x1200 (o9),
    // 0x1400 (o3).
    assert_eq!(f, [1, 0, 1, 2, 1, 1, 1, 1, 1, 1, 0]);
    assert_eq!(b.nr_free_pages(), 0x405);
    assert_eq!(b.nr_managed_pages(), 0x405);
    check_lists(&b);
    // Overlap, out of span and reversed input are ignored or clipped.
    assert_eq!(b.add_free_range(Pfn::new(0x1000), Pfn::new(0x1004)), 3);
    assert_eq!(b.add_free_range(Pfn::new(0x0), Pfn::new(0x800)), 0);
    assert_eq!(b.add_free_range(Pfn::new(0x1500), Pfn::new(0x1400)), 0);
    assert_eq!(b.add_free_range(Pfn::new(0x1700), Pfn::new(0x9000)), 0x100);
    assert_eq!(b.free_per_order(), [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1]);
    check_lists(&b);
}

#[test]
fn split_and_merge_round_trip() {
    let mut b = buddy(0, 0x400);
    b.add_free_range(Pfn::new(0), Pfn::new(0x400));
    let before = b.free_per_order();
    let a = b.alloc(o(0)).unwrap();
    assert_eq!(a, Pfn::new(0));
    // One block of each order 0..MAX-1 remains.
    assert_eq!(b.free_per_order(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    check_lists(&b);
    let c = b.alloc(o(9)).unwrap();
    assert_eq!(c, Pfn::new(0x200));
    assert_eq!(b.free(a, o(0)), Ok(()));
    assert_eq!(b.free_per_order(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(b.free(c, o(9)), Ok(()));
    assert_eq!(b.free_per_order(), before);
    check_lists(&b);
}

#[test]
fn bad_frees_are_refused_without_damage() {
    let mut b = buddy(0, 0x400);
    b.add_free_range(Pfn::new(1), Pfn::new(0x3ff));
    let p = b.alloc(o(2)).unwrap();
    let snapshot = b.free_per_order();
    assert_eq!(b.free(Pfn::new(0x400), o(0)), Err(FreeError::OutOfSpan));
    assert_eq!(b.free(p + 1, o(2)), Err(FreeError::Misaligned));
    assert_eq!(b.free(p + 1, o(0)), Err(FreeError::NotAllocated));
    assert_eq!(
        b.free(p, o(1)),
        Err(FreeError::WrongOrder { allocated: o(2) })
    );
    assert_eq!(
        b.free(Pfn::new(0), o(0)),
        Err(FreeError::NotAllocated),
        "reserved"
    );
    assert_eq!(
        b.free(Pfn::new(0x100), o(8)),
        Err(FreeError::NotAllocated),
        "free"
    );
    assert_eq!(b.free_per_order(), snapshot);
    assert_eq!(b.free(p, o(2)), Ok(()));
    assert_eq!(b.free(p, o(2)), Err(FreeError::NotAllocated), "double free");
    check_lists(&b);
}

#[test]
fn out_of_memory_is_none() {
    let mut b = buddy(0, 0x400);
    assert_eq!(b.alloc(o(0)), None);
    b.add_free_range(Pfn::new(0x10), Pfn::new(0x18));
    assert_eq!(b.alloc(o(4)), None);
    let x = b.alloc(o(3)).unwrap();
    assert_eq!(b.alloc(o(0)), None);
    assert_eq!(b.largest_free_order(), None);
    b.free(x, o(3)).unwrap();
    assert_eq!(b.largest_free_order(), Some(o(3)));
}

#[test]
fn reserved_holes_never_merge() {
    let mut b = buddy(0, 0x400);
    b.add_free_range(Pfn::new(0), Pfn::new(0x100));
    b.add_free_range(Pfn::new(0x101), Pfn::new(0x400));
    assert_eq!(b.free_per_order()[Order::MAX.index()], 0);
    let mut got = 0;
    while let Some(p) = b.alloc(o(0)) {
        assert_ne!(p, Pfn::new(0x100));
        got += 1;
    }
    assert_eq!(got, 0x3ff);
    // Giving the hole back later completes the MAX block on free.
    b.add_free_range(Pfn::new(0x100), Pfn::new(0x101));
    for i in (0..0x400).filter(|&i| i != 0x100) {
        b.free(Pfn::new(i), o(0)).unwrap();
    }
    assert_eq!(b.free_per_order(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    check_lists(&b);
}

#[test]
fn alloc_and_free_write_heads_only() {
    let mut b = buddy(0, 0x800);
    b.add_free_range(Pfn::new(0), Pfn::new(0x800));
    // Poison a tail's refcount, which no path should ever write.
    let tail = Pfn::new(0x2a7);
    b.memmap().page(tail).refcount().store(0xdead, Relaxed);
    for _ in 0..3 {
        let p = b.alloc(o(9)).unwrap();
        let q = b.alloc(o(0)).unwrap();
        b.free(q, o(0)).unwrap();
        b.free(p, o(9)).unwrap();
    }
    assert_eq!(b.memmap().page(tail).refcount().load(Relaxed), 0xdead);
    // Folios whose tails never had a per-page flag set free without a
    // tail walk, even with folio and head-only flags set.
    let mm = b.memmap();
    for _ in 0..3 {
        let f = b.alloc_folio(o(9)).unwrap();
        let v = mm.folio(&f);
        v.set_anon();
        v.set_dirty();
        v.set_page_anon_exclusive(f.pfn());
        assert!(b.folio_put(f).freed());
    }
    assert_eq!(mm.tail_visits.load(Relaxed), 0, "a free walked the tails");
    // A tail's per-page flag costs exactly one walk of that folio.
    let f = b.alloc_folio(o(9)).unwrap();
    let pfn = f.pfn();
    mm.folio(&f).set_page_anon_exclusive(pfn + 0x1a7);
    assert!(b.folio_put(f).freed());
    assert_eq!(mm.tail_visits.load(Relaxed), 511);
    assert!(!mm.page(pfn + 0x1a7).test_anon_exclusive());
    assert_eq!(b.memmap().page(tail).refcount().load(Relaxed), 0xdead);
    check_lists(&b);
}

/// Fork's clearing of anon-exclusive keeps the head's per-page mark
/// exactly as long as a tail may still carry the flag: a partial clear
/// keeps it (and the free walks the tails, finding the rest), a whole
/// clear drops it with every flag gone (and the free walks nothing),
/// and a later set marks the head again.
#[test]
fn fork_clears_the_per_page_mark_only_with_every_flag() {
    let mut b = buddy(0, 0x400);
    b.add_free_range(Pfn::new(0), Pfn::new(0x400));
    let mm = b.memmap();
    let exclusive = |pfn: Pfn, n: u64| {
        (0..n)
            .filter(|&k| mm.page(pfn + k).test_anon_exclusive())
            .count()
    };
    let f = b.alloc_folio(o(4)).unwrap();
    let pfn = f.pfn();
    let v = mm.folio(&f);
    for k in 0..16 {
        v.set_page_anon_exclusive(pfn + k);
    }
    assert!(mm.page(pfn).flags().contains(PageFlags::PER_PAGE_SET));
    // A batch of the middle ten pages, then one of the head alone.
    v.clear_pages_anon_exclusive(pfn + 3, 10);
    v.clear_pages_anon_exclusive(pfn, 1);
    assert_eq!(exclusive(pfn, 16), 5);
    assert!(mm.page(pfn).flags().contains(PageFlags::PER_PAGE_SET));
    // The whole folio: every flag and the mark go.
    v.clear_pages_anon_exclusive(pfn, 16);
    assert_eq!(exclusive(pfn, 16), 0);
    assert!(!mm.page(pfn).flags().contains(PageFlags::PER_PAGE_SET));
    // With the mark gone a later clear reads the head only, and a
    // later set on a tail marks the head again.
    v.set_page_anon_exclusive(pfn + 9);
    assert!(mm.page(pfn).flags().contains(PageFlags::PER_PAGE_SET));
    v.clear_pages_anon_exclusive(pfn + 8, 4);
    assert_eq!(exclusive(pfn, 16), 0);
    v.set_page_anon_exclusive(pfn + 15);
    let before = mm.tail_visits.load(Relaxed);
    assert!(b.folio_put(f).freed());
    assert_eq!(
        mm.tail_visits.load(Relaxed) - before,
        15,
        "the mark was kept"
    );
    assert_eq!(exclusive(pfn, 16), 0);
    // Cleared whole before the free: no tail walk.
    let f = b.alloc_folio(o(4)).unwrap();
    let v = mm.folio(&f);
    v.set_page_anon_exclusive(f.pfn() + 4);
    v.clear_pages_anon_exclusive(f.pfn(), 16);
    let before = mm.tail_visits.load(Relaxed);
    assert!(b.folio_put(f).freed());
    assert_eq!(mm.tail_visits.load(Relaxed), before);
    check_lists(&b);
}

#[test]
fn one_allocator_per_memmap() {
    let mm = test_memmap(Pfn::new(0), Pfn::new(0x400));
    let _first = BuddyAllocator::new(mm);
    let second = std::panic::catch_unwind(|| BuddyAllocator::new(mm));
    assert!(second.is_err(), "a second allocator over the same memmap");
}
