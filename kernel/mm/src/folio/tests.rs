//! Unit tests of `folio.rs`.

use super::*;
use crate::buddy::BuddyAllocator;
use crate::memmap::{SafetyCounts, test_memmap};

fn setup() -> BuddyAllocator<'static> {
    let mut b = BuddyAllocator::new(test_memmap(Pfn::new(0x800), Pfn::new(0x1000)));
    b.add_free_range(Pfn::new(0x801), Pfn::new(0xfff));
    b
}

fn stats(b: &BuddyAllocator<'_>) -> SafetyCounts {
    b.memmap().safety().snapshot()
}

#[test]
fn fresh_folio_state() {
    let mut b = setup();
    let f = b.alloc_folio(Order::of(4)).unwrap();
    let v = b.memmap().folio(&f);
    assert_eq!(v.order(), Order::of(4));
    assert_eq!(v.nr_pages(), 16);
    assert_eq!(v.pfn(), f.pfn());
    assert!(f.pfn().is_order_aligned(Order::of(4)));
    assert_eq!((v.ref_count(), v.mapcount()), (1, 0));
    assert!(!v.test_anon() && !v.test_dirty() && !v.test_young());
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
    assert_eq!(stats(&b), SafetyCounts::default());
}

#[test]
fn refcount_frees_exactly_at_zero() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(3)).unwrap();
    let g = mm.folio_get(&f);
    let h = mm.folio(&f).get();
    assert_eq!(mm.folio(&f).ref_count(), 3);
    assert_eq!(b.folio_put(g), PutOutcome::Held);
    assert_eq!(b.folio_put(f), PutOutcome::Held);
    assert_eq!(b.nr_free_pages(), total - 8);
    assert_eq!(mm.folio(&h).ref_count(), 1);
    assert_eq!(b.folio_put(h), PutOutcome::Freed);
    assert_eq!(b.nr_free_pages(), total);
}

#[test]
fn put_testzero_needs_no_allocator_until_the_last_reference() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(2)).unwrap();
    let g = mm.folio_get(&f);
    // Only the memmap: the allocator is not borrowed here.
    assert!(matches!(
        mm.folio_put_testzero(g),
        PutTestZero::Kept(PutOutcome::Held)
    ));
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("last put did not freeze the folio");
    };
    // Frozen: count 0, still allocated until the allocator frees it.
    let v = mm.page_folio(frozen.pfn()).unwrap();
    assert_eq!(v.ref_count(), 0);
    assert_eq!(b.nr_free_pages(), total - 4);
    assert_eq!(b.free_frozen(frozen), PutOutcome::Freed);
    assert_eq!(b.nr_free_pages(), total);
    assert_eq!(stats(&b), SafetyCounts::default());
}

#[test]
fn raw_references_round_trip() {
    let mut b = setup();
    let f = b.alloc_folio(Order::of(2)).unwrap();
    b.memmap().folio(&f).ref_add(4);
    let head = f.into_raw();
    for _ in 0..4 {
        // SAFETY: ref_add(4) above created four references we own.
        let put = b.folio_put(unsafe { Folio::from_raw(head) });
        assert_eq!(put, PutOutcome::Held);
    }
    // SAFETY: the reference into_raw released.
    let put = b.folio_put(unsafe { Folio::from_raw(head) });
    assert_eq!(put, PutOutcome::Freed);
    assert!(b.memmap().page_folio(head).is_none());
}

#[test]
fn raw_free_refuses_a_shared_or_mapped_folio() {
    let mut b = setup();
    let mm = b.memmap();
    let f = b.alloc_folio(Order::of(0)).unwrap();
    let g = mm.folio_get(&f);
    assert_eq!(
        b.free(f.pfn(), Order::of(0)),
        Err(crate::buddy::FreeError::Referenced { refcount: 2 })
    );
    assert_eq!(b.folio_put(g), PutOutcome::Held);
    mm.folio(&f).add_mapcount(1);
    assert_eq!(
        b.free(f.pfn(), Order::of(0)),
        Err(crate::buddy::FreeError::Mapped { mapcount: 1 })
    );
    assert_eq!(stats(&b).freed_mapped, 1);
    assert_eq!(
        mm.folio(&f).ref_count(),
        1,
        "a refused free changes nothing"
    );
    mm.folio(&f).sub_mapcount(1);
    assert_eq!(b.free(f.into_raw(), Order::of(0)), Ok(()));
}

#[test]
fn refcount_saturates_and_sticks() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(1)).unwrap();
    let pfn = f.pfn();
    // 2^32 references taken one batch at a time would wrap to 0; they
    // stop at the saturation value instead.
    mm.folio(&f).ref_add(u32::MAX);
    assert_eq!(mm.folio(&f).ref_count(), REF_SATURATED);
    assert!(mm.folio(&f).ref_saturated());
    mm.folio(&f).ref_add(u32::MAX);
    let g = mm.folio_get(&f);
    assert_eq!(mm.folio(&f).ref_count(), REF_SATURATED, "sticks");
    assert_eq!(stats(&b).ref_saturated, 1, "counted once, when reached");
    // Puts no longer decrement, and the folio is never freed.
    assert_eq!(b.folio_put(g), PutOutcome::Saturated);
    assert_eq!(b.folio_put(f), PutOutcome::Saturated);
    let v = mm.page_folio(pfn).unwrap();
    assert_eq!((v.pfn(), v.ref_count()), (pfn, REF_SATURATED));
    assert_eq!(b.nr_free_pages(), total - 2);
    assert_eq!(stats(&b).put_saturated, 2);
    assert_eq!(
        b.free(pfn, Order::of(1)),
        Err(crate::buddy::FreeError::Referenced {
            refcount: REF_SATURATED
        })
    );
    // Undo the pin to leave the allocator whole.
    // SAFETY: both handles are gone; the one reference we take back
    // below is the only one, and nothing maps the folio.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests left us.
    let last = unsafe { Folio::from_raw(pfn) };
    assert_eq!(b.folio_put(last), PutOutcome::Freed);
    assert_eq!(b.nr_free_pages(), total);
}

#[test]
fn saturation_holds_from_every_starting_count() {
    let mut b = setup();
    let mm = b.memmap();
    let f = b.alloc_folio(Order::of(0)).unwrap();
    let v = mm.folio(&f);
    v.ref_add(REF_SATURATED - 3);
    assert_eq!(v.ref_count(), REF_SATURATED - 2);
    assert_eq!(stats(&b).ref_saturated, 0);
    v.ref_add(1);
    v.ref_add(1);
    assert_eq!(v.ref_count(), REF_SATURATED);
    assert_eq!(stats(&b).ref_saturated, 1);
    // SAFETY: only `f` remains, and nothing maps the folio.
    unsafe { v.reset_counts_for_tests(1, 0) };
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
}

#[test]
fn put_on_zero_is_refused() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(2)).unwrap();
    let pfn = f.pfn();
    // SAFETY: deliberately a second claim on `f`'s one reference, to
    // model a reference put twice. This host memmap has no memory
    // behind its frames, and what is checked is that the second put
    // is refused rather than freeing anything twice.
    let twin = unsafe { Folio::from_raw(pfn) };
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("the only reference did not freeze the folio");
    };
    assert!(matches!(
        mm.folio_put_testzero(twin),
        PutTestZero::Kept(PutOutcome::Underflow)
    ));
    assert_eq!(
        mm.page(pfn).refcount().load(Relaxed),
        0,
        "no wrap to u32::MAX"
    );
    assert_eq!(b.free_frozen(frozen), PutOutcome::Freed);
    // A stale handle to a block that is free now.
    // SAFETY: as above, a deliberate double claim; the put must refuse.
    let stale = unsafe { Folio::from_raw(pfn) };
    assert_eq!(b.folio_put(stale), PutOutcome::Underflow);
    assert_eq!(stats(&b).put_underflow, 2);
    assert_eq!(b.nr_free_pages(), total, "freed exactly once");
    // The frames come back as one block, not twice.
    let g = b.alloc_folio(Order::of(2)).unwrap();
    assert_eq!(g.pfn(), pfn);
    assert_eq!(b.nr_free_pages(), total - 4);
    assert_eq!(b.folio_put(g), PutOutcome::Freed);
}

#[test]
fn last_put_on_a_mapped_folio_pins_it() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(3)).unwrap();
    let pfn = f.pfn();
    assert_eq!(mm.folio(&f).add_mapcount(3), 3);
    assert_eq!(b.folio_put(f), PutOutcome::Mapped { mapcount: 3 });
    assert!(PutOutcome::Mapped { mapcount: 3 }.refused());
    let v = mm
        .page_folio(pfn)
        .expect("a mapped folio must stay allocated");
    assert_eq!((v.ref_count(), v.mapcount()), (REF_SATURATED, 3));
    assert_eq!(b.nr_free_pages(), total - 8);
    assert_eq!(stats(&b).freed_mapped, 1);
    // SAFETY: the handle is gone and the "mappings" were never real;
    // we take back the single reference below.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests left us.
    let last = unsafe { Folio::from_raw(pfn) };
    assert_eq!(b.folio_put(last), PutOutcome::Freed);
    assert_eq!(b.nr_free_pages(), total);
}

#[test]
fn a_frozen_folio_that_gets_mapped_or_referenced_is_not_freed() {
    let mut b = setup();
    let mm = b.memmap();
    let total = b.nr_free_pages();
    let f = b.alloc_folio(Order::of(0)).unwrap();
    let pfn = f.pfn();
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("not frozen");
    };
    // A buggy mapper maps it after its last reference went.
    mm.page_folio(pfn).unwrap().add_mapcount(1);
    assert_eq!(b.free_frozen(frozen), PutOutcome::Mapped { mapcount: 1 });
    assert_eq!(mm.page(pfn).refcount().load(Relaxed), REF_SATURATED);
    let v = mm.page_folio(pfn).unwrap();
    // SAFETY: no handle or real mapping exists; one reference back.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests left us.
    let f = unsafe { Folio::from_raw(pfn) };
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("not frozen");
    };
    // A reference taken on the zero count pins instead of reviving.
    let late = mm.page_folio(pfn).unwrap().get();
    assert_eq!(mm.page(pfn).refcount().load(Relaxed), REF_SATURATED);
    assert_eq!(b.free_frozen(frozen), PutOutcome::Saturated);
    assert_eq!(b.folio_put(late), PutOutcome::Saturated);
    assert!(mm.page_folio(pfn).is_some());
    assert_eq!(b.nr_free_pages(), total - 1);
    let s = stats(&b);
    assert_eq!((s.freed_mapped, s.ref_on_zero), (1, 1));
    let v = mm.page_folio(pfn).unwrap();
    // SAFETY: `late` is gone; one reference back, nothing mapped.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests left us.
    let f = unsafe { Folio::from_raw(pfn) };
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
    assert_eq!(b.nr_free_pages(), total);
}

#[test]
fn mapcount_saturates_and_refuses_underflow() {
    let mut b = setup();
    let mm = b.memmap();
    let f = b.alloc_folio(Order::of(0)).unwrap();
    let v = mm.folio(&f);
    assert_eq!(v.sub_mapcount(1), 0, "below 0 is refused");
    assert_eq!(v.mapcount(), 0);
    assert_eq!(v.add_mapcount(2), 2);
    assert_eq!(v.sub_mapcount(3), 2, "refused, unchanged");
    assert_eq!(stats(&b).map_underflow, 2);
    assert_eq!(v.add_mapcount(u32::MAX), MAP_SATURATED);
    assert_eq!(v.add_mapcount(5), MAP_SATURATED);
    assert_eq!(v.sub_mapcount(MAP_SATURATED), MAP_SATURATED, "sticks");
    assert_eq!(stats(&b).map_saturated, 1);
    let pfn = f.pfn();
    // A saturated mapcount keeps the folio mapped, so never freed.
    assert_eq!(
        b.folio_put(f),
        PutOutcome::Mapped {
            mapcount: MAP_SATURATED
        }
    );
    // The handle's view ended with the handle; look the folio up.
    let v = mm.page_folio(pfn).unwrap();
    assert_eq!(v.ref_count(), REF_SATURATED);
    // SAFETY: the handle is gone, nothing really maps it; one
    // reference back.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests left us.
    let f = unsafe { Folio::from_raw(pfn) };
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
}

#[test]
fn flags_and_mapcount() {
    let mut b = setup();
    let mm = b.memmap();
    let f = b.alloc_folio(Order::of(1)).unwrap();
    let v = mm.folio(&f);
    v.set_anon();
    v.set_dirty();
    v.set_young();
    assert!(v.test_anon() && v.test_dirty() && v.test_young());
    assert!(v.test_clear_young());
    assert!(!v.test_clear_young());
    v.clear_dirty();
    v.clear_anon();
    assert!(!v.test_anon() && !v.test_dirty());
    assert_eq!(v.add_mapcount(2), 2);
    assert!(v.mapped());
    assert_eq!(v.sub_mapcount(2), 0);
    let tail = f.pfn() + 1;
    v.set_page_anon_exclusive(tail);
    assert!(v.page_anon_exclusive(tail));
    assert!(!v.page_anon_exclusive(f.pfn()), "per page, not per folio");
    v.clear_page_anon_exclusive(tail);
    assert!(!mm.page(tail).test_anon_exclusive());
    v.set_anon();
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
    // A later folio on the same frames starts with clear flags.
    let f = b.alloc_folio(Order::of(1)).unwrap();
    assert!(!mm.folio(&f).test_anon());
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
    assert_eq!(stats(&b), SafetyCounts::default());
}

#[test]
fn setting_a_tail_flag_marks_the_head() {
    let mut b = setup();
    let mm = b.memmap();
    let f = b.alloc_folio(Order::of(2)).unwrap();
    let v = mm.folio(&f);
    v.set_page_anon_exclusive(f.pfn());
    assert!(
        !v.head_page().flags().contains(PageFlags::PER_PAGE_SET),
        "the head's own flag needs no tail walk"
    );
    v.set_page_anon_exclusive(f.pfn() + 3);
    assert!(v.head_page().flags().contains(PageFlags::PER_PAGE_SET));
    assert_eq!(b.folio_put(f), PutOutcome::Freed);
}

/// The data-leak scenario: an anon-exclusive bit left on a tail must
/// not reach the next folio made of the same frames.
#[test]
fn reallocated_folio_has_no_stale_anon_exclusive() {
    let mut b = setup();
    let mm = b.memmap();
    for k in [1u8, 4, 9] {
        let order = Order::of(k);
        let f = b.alloc_folio(order).unwrap();
        let (pfn, n) = (f.pfn(), order.pages());
        let v = mm.folio(&f);
        v.set_anon();
        for i in [0, 1, n / 2, n - 1] {
            v.set_page_anon_exclusive(pfn + i);
        }
        assert!(mm.page(pfn + (n - 1)).test_anon_exclusive());
        let visits = mm.tail_visits.load(Relaxed);
        assert_eq!(b.folio_put(f), PutOutcome::Freed);
        assert_eq!(mm.tail_visits.load(Relaxed) - visits, n - 1);
        for i in 0..n {
            let flags = mm.page(pfn + i).flags();
            assert!(
                !flags.intersects(PageFlags::PER_PAGE_MASK),
                "order {k}: page {i} of a free block is {flags:?}"
            );
        }
        // The buddy allocator hands the same frames straight back.
        let g = b.alloc_folio(order).unwrap();
        assert_eq!(g.pfn(), pfn, "order {k}: not the same frames");
        let w = mm.folio(&g);
        for i in 0..n {
            assert!(!w.page_anon_exclusive(pfn + i), "order {k}: page {i} stale");
        }
        assert!(!w.test_anon());
        assert_eq!(b.folio_put(g), PutOutcome::Freed);
    }
    // Smaller folios carved out of those frames are clean too.
    let parts: Vec<Folio> = (0..8)
        .map(|_| b.alloc_folio(Order::of(0)).unwrap())
        .collect();
    for p in parts {
        assert!(!mm.page(p.pfn()).test_anon_exclusive());
        assert_eq!(b.folio_put(p), PutOutcome::Freed);
    }
}

#[test]
fn page_folio_finds_heads_and_rejects_the_rest() {
    let mut b = setup();
    let folios: Vec<Folio> = (0..=10u8)
        .rev()
        .filter_map(|k| b.alloc_folio(Order::of(k)))
        .collect();
    assert_eq!(folios.len(), 10, "order 10 does not fit, the rest do");
    let mm = b.memmap();
    for f in &folios {
        let order = mm.folio(f).order();
        for n in 0..order.pages() {
            let v = mm.page_folio(f.pfn() + n).unwrap();
            assert_eq!((v.pfn(), v.order()), (f.pfn(), order));
        }
    }
    assert!(mm.page_folio(Pfn::new(0x800)).is_none(), "reserved");
    assert!(mm.page_folio(Pfn::new(0x7ff)).is_none(), "outside");
    let free = (0x800..0x1000)
        .map(Pfn::new)
        .filter(|&p| !mm.page(p).is_reserved() && !folios.iter().any(|f| mm.folio(f).contains(p)));
    let mut nr_free = 0;
    for p in free {
        assert!(mm.page_folio(p).is_none(), "{p:?} is free");
        nr_free += 1;
    }
    assert_eq!(nr_free, b.nr_free_pages());
    for f in folios {
        assert_eq!(b.folio_put(f), PutOutcome::Freed);
    }
}
