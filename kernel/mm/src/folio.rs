//! Folios: allocated blocks handed out as reference-counted units of
//! anonymous memory, and the head lookup `page_folio`.
//!
//! Two handle types keep ownership visible in the types:
//! - [`Folio`] *is* one reference. It is neither `Clone` nor `Copy`: a
//!   second reference comes from [`Memmap::folio_get`], and a reference
//!   ends in [`BuddyAllocator::folio_put`], which frees the block when the
//!   count reaches zero. A page table that keeps the reference inside a PTE
//!   converts with [`Folio::into_raw`] / [`Folio::from_raw`].
//! - [`FolioRef`] is a borrowed view (`Copy`) for reading and updating the
//!   metadata: order, refcount, mapcount, flags, per-page anon-exclusive.
//!   It borrows the [`Memmap`], and freeing needs `&mut BuddyAllocator`
//!   (which owns the memmap), so no view can outlive the block it looks at.
//!
//! Operations that create or end references (`alloc_folio`, `folio_put`)
//! live on [`BuddyAllocator`]; those that need only descriptors
//! (`folio`, `folio_get`, `page_folio`) live on [`Memmap`]. View methods
//! drop Linux's `folio_` prefix (`folio_order(f)` is `f.order()`); each
//! names its Linux counterpart.
//!
//! # How `page_folio` finds the head
//!
//! Tails do not record their head (that would make large folios cost a
//! write per page). Instead, for k = 0, 1, ..., MAX, take the candidate
//! `pfn` rounded down to 2^k: a block of order >= k covering `pfn` must
//! start there if it starts at an alignment of 2^k or more. The first
//! candidate that carries any head/free/reserved marker decides: an
//! allocated head of order >= k is the answer; anything else means no
//! allocated block covers `pfn` (a covering block would contain that
//! candidate as an unmarked tail). At most 11 descriptor reads.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Order, Pfn};
use crate::buddy::BuddyAllocator;
use crate::memmap::{Memmap, Page, PageFlags};

/// One reference to an allocated folio (Linux `struct folio *` plus the
/// reference it holds). Not `Clone`: take another reference with
/// [`Memmap::folio_get`]. Dropping it leaks the reference; end it with
/// [`BuddyAllocator::folio_put`].
#[must_use = "a Folio is a reference: end it with folio_put or keep it with into_raw"]
#[derive(Debug, PartialEq, Eq)]
pub struct Folio {
    head: Pfn,
}

impl Folio {
    /// The head frame (Linux `folio_pfn`).
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.head
    }

    /// Gives up the handle but not the reference: the caller now owns one
    /// reference, recorded as a raw head frame (e.g. in a page table).
    #[inline]
    pub fn into_raw(self) -> Pfn {
        self.head
    }

    /// Takes back ownership of one reference previously released with
    /// [`Folio::into_raw`] (or counted by [`FolioRef::ref_add`]).
    ///
    /// # Safety
    ///
    /// `head` must be the head of an allocated folio, and the caller must
    /// own one of its references that no other `Folio` or raw record still
    /// claims. Otherwise a later `folio_put` frees frames that are still in
    /// use.
    #[inline]
    pub unsafe fn from_raw(head: Pfn) -> Folio {
        Folio { head }
    }
}

/// A borrowed view of an allocated folio's metadata (the head descriptor
/// and, for per-page state, its tails). Holding a view is not a reference.
#[derive(Clone, Copy)]
pub struct FolioRef<'a> {
    memmap: &'a Memmap,
    head: &'a Page,
    pfn: Pfn,
}

impl<'a> FolioRef<'a> {
    /// The head frame (Linux `folio_pfn`).
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }
    /// Linux `folio_order`.
    #[inline]
    pub fn order(&self) -> Order {
        self.head.order()
    }
    /// Linux `folio_nr_pages`.
    #[inline]
    pub fn nr_pages(&self) -> u64 {
        self.order().pages()
    }
    /// True if `pfn` is one of this folio's frames.
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.pfn <= pfn && pfn - self.pfn < self.nr_pages()
    }
    /// The head descriptor (Linux `&folio->page`).
    #[inline]
    pub fn head_page(&self) -> &'a Page {
        self.head
    }
    /// The descriptor of the folio's `n`-th page (Linux `folio_page`), for
    /// per-page state. Panics if `n >= nr_pages()`.
    #[inline]
    pub fn page(&self, n: u64) -> &'a Page {
        assert!(
            n < self.nr_pages(),
            "page {n} outside a folio of order {}",
            self.order()
        );
        self.memmap.page(self.pfn + n)
    }

    /// Linux `folio_ref_count`.
    #[inline]
    pub fn ref_count(&self) -> u32 {
        self.head.refcount().load(Relaxed)
    }
    /// Takes one more reference (Linux `folio_get`).
    #[inline]
    pub fn get(&self) -> Folio {
        self.ref_add(1);
        Folio { head: self.pfn }
    }
    /// Adds `nr` references at once without making handles (Linux
    /// `folio_ref_add`), e.g. for the `nr` PTEs fork copies; they come back
    /// through [`Folio::from_raw`] one by one.
    #[inline]
    pub fn ref_add(&self, nr: u32) {
        let old = self.head.refcount().fetch_add(nr, Relaxed);
        debug_assert!(old > 0, "taking a reference to a folio nobody holds");
        debug_assert!(old.checked_add(nr).is_some(), "folio refcount overflow");
    }

    /// Total number of PTEs mapping pages of this folio (Linux
    /// `folio_mapcount`).
    #[inline]
    pub fn mapcount(&self) -> u32 {
        self.head.mapcount().load(Relaxed)
    }
    /// True if any page of the folio is mapped (Linux `folio_mapped`).
    #[inline]
    pub fn mapped(&self) -> bool {
        self.mapcount() != 0
    }
    /// Counts `nr` new PTE mappings (Linux `folio_add_anon_rmap_ptes` /
    /// `folio_dup_file_rmap_ptes` accounting). Returns the new mapcount.
    #[inline]
    pub fn add_mapcount(&self, nr: u32) -> u32 {
        let old = self.head.mapcount().fetch_add(nr, Relaxed);
        debug_assert!(old.checked_add(nr).is_some(), "folio mapcount overflow");
        old.wrapping_add(nr)
    }
    /// Counts `nr` PTE mappings gone (Linux `folio_remove_rmap_ptes`
    /// accounting). Returns the new mapcount.
    #[inline]
    pub fn sub_mapcount(&self, nr: u32) -> u32 {
        let old = self.head.mapcount().fetch_sub(nr, Relaxed);
        debug_assert!(old >= nr, "folio mapcount underflow: {old} - {nr}");
        old.wrapping_sub(nr)
    }

    fn test(&self, f: PageFlags) -> bool {
        self.head.flags().contains(f)
    }

    /// Linux `folio_test_anon`.
    #[inline]
    pub fn test_anon(&self) -> bool {
        self.test(PageFlags::ANON)
    }
    /// Marks the folio anonymous (Linux: set by `folio_add_new_anon_rmap`).
    #[inline]
    pub fn set_anon(&self) {
        self.head.set_flags(PageFlags::ANON);
    }
    /// Clears the anonymous mark.
    #[inline]
    pub fn clear_anon(&self) {
        self.head.clear_flags(PageFlags::ANON);
    }
    /// Linux `folio_test_dirty`.
    #[inline]
    pub fn test_dirty(&self) -> bool {
        self.test(PageFlags::DIRTY)
    }
    /// Linux `folio_mark_dirty`.
    #[inline]
    pub fn set_dirty(&self) {
        self.head.set_flags(PageFlags::DIRTY);
    }
    /// Linux `folio_clear_dirty`.
    #[inline]
    pub fn clear_dirty(&self) {
        self.head.clear_flags(PageFlags::DIRTY);
    }
    /// Linux `folio_test_young`.
    #[inline]
    pub fn test_young(&self) -> bool {
        self.test(PageFlags::YOUNG)
    }
    /// Linux `folio_set_young`.
    #[inline]
    pub fn set_young(&self) {
        self.head.set_flags(PageFlags::YOUNG);
    }
    /// Linux `folio_clear_young`.
    #[inline]
    pub fn clear_young(&self) {
        self.head.clear_flags(PageFlags::YOUNG);
    }
    /// Linux `folio_test_clear_young`: clears the flag, returns whether it
    /// was set, in one indivisible step.
    #[inline]
    pub fn test_clear_young(&self) -> bool {
        self.head
            .clear_flags(PageFlags::YOUNG)
            .contains(PageFlags::YOUNG)
    }

    /// Linux `PageAnonExclusive` of the page at `pfn` (in this folio).
    #[inline]
    pub fn page_anon_exclusive(&self, pfn: Pfn) -> bool {
        self.page(pfn - self.pfn).test_anon_exclusive()
    }
    /// Linux `SetPageAnonExclusive` of the page at `pfn` (in this folio).
    #[inline]
    pub fn set_page_anon_exclusive(&self, pfn: Pfn) {
        self.page(pfn - self.pfn).set_anon_exclusive();
    }
    /// Linux `ClearPageAnonExclusive` of the page at `pfn` (in this folio).
    #[inline]
    pub fn clear_page_anon_exclusive(&self, pfn: Pfn) {
        self.page(pfn - self.pfn).clear_anon_exclusive();
    }
}

impl core::fmt::Debug for FolioRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FolioRef")
            .field("pfn", &self.pfn)
            .field("head", self.head)
            .finish()
    }
}

impl Memmap {
    /// The metadata view of a folio held by reference.
    #[inline]
    pub fn folio(&self, folio: &Folio) -> FolioRef<'_> {
        let head = self.page(folio.head);
        debug_assert!(head.is_head(), "{:?} is not an allocated head", folio.head);
        FolioRef {
            memmap: self,
            head,
            pfn: folio.head,
        }
    }

    /// Takes one more reference to `folio` (Linux `folio_get`).
    #[inline]
    pub fn folio_get(&self, folio: &Folio) -> Folio {
        self.folio(folio).get()
    }

    /// The allocated folio (or block) containing `pfn`, or `None` if
    /// `pfn` is free, reserved or outside the memmap (Linux `page_folio`,
    /// computed rather than stored; see the module doc).
    pub fn page_folio(&self, pfn: Pfn) -> Option<FolioRef<'_>> {
        if !self.contains(pfn) {
            return None;
        }
        for order in Order::all() {
            let cand = pfn.align_down(order.pages());
            let page = self.page(cand);
            let flags = page.flags();
            if !flags.intersects(PageFlags::MARKER_MASK) {
                continue;
            }
            return if flags.contains(PageFlags::HEAD) && page.order() >= order {
                Some(FolioRef {
                    memmap: self,
                    head: page,
                    pfn: cand,
                })
            } else {
                None
            };
        }
        None
    }
}

impl BuddyAllocator {
    /// Allocates a folio of `order`: refcount 1, mapcount 0, no flags
    /// (Linux `folio_alloc`, without zeroing). `None` when out of memory.
    pub fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        // alloc() already leaves the head as a fresh folio head.
        self.alloc(order).map(|head| Folio { head })
    }

    /// Ends one reference (Linux `folio_put`); frees the folio when it was
    /// the last. Returns true if the folio was freed. The last reference
    /// must find the folio unmapped, with its per-page state cleared.
    pub fn folio_put(&mut self, folio: Folio) -> bool {
        let view = self.memmap().folio(&folio);
        let old = view.head.refcount().fetch_sub(1, Relaxed);
        debug_assert!(old > 0, "folio_put on a folio with refcount 0");
        if old != 1 {
            return false;
        }
        debug_assert_eq!(view.mapcount(), 0, "freeing a mapped folio");
        let (idx, order) = (self.memmap().index(folio.head), view.order());
        self.free_block(idx, order);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::test_memmap;

    fn setup() -> BuddyAllocator {
        let mut b = BuddyAllocator::new(test_memmap(Pfn::new(0x800), Pfn::new(0x1000)));
        b.add_free_range(Pfn::new(0x801), Pfn::new(0xfff));
        b
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
        assert!(b.folio_put(f));
    }

    #[test]
    fn refcount_frees_exactly_at_zero() {
        let mut b = setup();
        let total = b.nr_free_pages();
        let f = b.alloc_folio(Order::of(3)).unwrap();
        let g = b.memmap().folio_get(&f);
        let h = b.memmap().folio(&f).get();
        assert_eq!(b.memmap().folio(&f).ref_count(), 3);
        assert!(!b.folio_put(g));
        assert!(!b.folio_put(f));
        assert_eq!(b.nr_free_pages(), total - 8);
        assert_eq!(b.memmap().folio(&h).ref_count(), 1);
        assert!(b.folio_put(h));
        assert_eq!(b.nr_free_pages(), total);
    }

    #[test]
    fn raw_references_round_trip() {
        let mut b = setup();
        let f = b.alloc_folio(Order::of(2)).unwrap();
        b.memmap().folio(&f).ref_add(4);
        let head = f.into_raw();
        for _ in 0..4 {
            // SAFETY: ref_add(4) above created four references we own.
            assert!(!b.folio_put(unsafe { Folio::from_raw(head) }));
        }
        // SAFETY: the reference into_raw released.
        assert!(b.folio_put(unsafe { Folio::from_raw(head) }));
        assert!(b.memmap().page_folio(head).is_none());
    }

    #[test]
    fn raw_free_refuses_a_shared_folio() {
        let mut b = setup();
        let f = b.alloc_folio(Order::of(0)).unwrap();
        let g = b.memmap().folio_get(&f);
        assert_eq!(
            b.free(f.pfn(), Order::of(0)),
            Err(crate::buddy::FreeError::Referenced { refcount: 2 })
        );
        assert!(!b.folio_put(g));
        assert_eq!(b.free(f.into_raw(), Order::of(0)), Ok(()));
    }

    #[test]
    fn flags_and_mapcount() {
        let mut b = setup();
        let f = b.alloc_folio(Order::of(1)).unwrap();
        let v = b.memmap().folio(&f);
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
        assert!(b.folio_put(f));
        // A later folio on the same frames starts with clear flags.
        let f = b.alloc_folio(Order::of(1)).unwrap();
        assert!(!b.memmap().folio(&f).test_anon());
        assert!(b.folio_put(f));
    }

    #[test]
    fn page_folio_finds_heads_and_rejects_the_rest() {
        let mut b = setup();
        let folios: Vec<Folio> = (0..=10u8)
            .rev()
            .filter_map(|k| b.alloc_folio(Order::of(k)))
            .collect();
        assert_eq!(folios.len(), 10, "order 10 does not fit, the rest do");
        for f in &folios {
            let order = b.memmap().folio(f).order();
            for n in 0..order.pages() {
                let v = b.memmap().page_folio(f.pfn() + n).unwrap();
                assert_eq!((v.pfn(), v.order()), (f.pfn(), order));
            }
        }
        let mm = b.memmap();
        assert!(mm.page_folio(Pfn::new(0x800)).is_none(), "reserved");
        assert!(mm.page_folio(Pfn::new(0x7ff)).is_none(), "outside");
        let free = (0x800..0x1000).map(Pfn::new).filter(|&p| {
            !mm.page(p).is_reserved() && !folios.iter().any(|f| mm.folio(f).contains(p))
        });
        let mut nr_free = 0;
        for p in free {
            assert!(mm.page_folio(p).is_none(), "{p:?} is free");
            nr_free += 1;
        }
        assert_eq!(nr_free, b.nr_free_pages());
        for f in folios {
            assert!(b.folio_put(f));
        }
    }
}
