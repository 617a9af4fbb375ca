//! Folio flags (on the head: anon, dirty, young, deferred) and the
//! per-page *anon-exclusive* flag, whose tail bits are guarded by the
//! head's [`PageFlags::PER_PAGE_SET`] mark so freeing stays O(1).

use crate::addr::Pfn;
use crate::memmap::PageFlags;

use super::FolioRef;

impl FolioRef<'_> {
    fn test(&self, f: PageFlags) -> bool {
        self.head.flags().contains(f)
    }

    /// Linux `folio_test_anon`.
    #[inline]
    pub fn test_anon(&self) -> bool {
        self.test(PageFlags::ANON)
    }
    /// True while the folio waits on the deferred-split queue (Linux
    /// `folio_test_partially_mapped`); see `deferred_split.rs`.
    #[inline]
    pub fn test_deferred(&self) -> bool {
        self.test(PageFlags::DEFERRED)
    }
    /// Marks the folio anonymous (Linux: set by `folio_add_new_anon_rmap`).
    /// In this crate only a fault marks a folio anon, one that holds user
    /// data: the contents accessors (`folio/data.rs`) check the mark.
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
    /// Linux `test_bit(PG_dcache_clean)`: the folio's data is visible to
    /// instruction fetches (see [`PageFlags::DCACHE_CLEAN`]).
    #[inline]
    pub fn test_dcache_clean(&self) -> bool {
        self.test(PageFlags::DCACHE_CLEAN)
    }
    /// Records that the folio's data was made visible to instruction
    /// fetches.
    #[inline]
    pub fn set_dcache_clean(&self) {
        self.head.set_flags(PageFlags::DCACHE_CLEAN);
    }
    /// Linux `flush_dcache_folio` for an executable mapping's sake: the
    /// kernel wrote the folio, so the next executable mapping syncs again.
    #[inline]
    pub fn clear_dcache_clean(&self) {
        self.head.clear_flags(PageFlags::DCACHE_CLEAN);
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
        self.page_at(pfn).test_anon_exclusive()
    }
    /// Linux `SetPageAnonExclusive` of the page at `pfn` (in this folio).
    /// On a tail, the head is marked [`PageFlags::PER_PAGE_SET`] first, so
    /// that freeing the folio clears the bit.
    #[inline]
    pub fn set_page_anon_exclusive(&self, pfn: Pfn) {
        self.set_per_page(pfn, PageFlags::ANON_EXCLUSIVE);
    }
    /// Linux `ClearPageAnonExclusive` of the page at `pfn` (in this folio).
    #[inline]
    pub fn clear_page_anon_exclusive(&self, pfn: Pfn) {
        self.page_at(pfn).clear_flags(PageFlags::ANON_EXCLUSIVE);
    }
    /// Clears `PageAnonExclusive` of the `nr` pages from `pfn`, all in this
    /// folio (the per-page part of Linux `folio_try_dup_anon_rmap_ptes`,
    /// which fork runs for every page it shares). Each page is read first
    /// and written only if its flag is set, as Linux does. The range is
    /// checked once, not per page. Panics if it leaves the folio.
    ///
    /// Tails are visited only while the head says one of them may carry a
    /// per-page flag ([`PageFlags::PER_PAGE_SET`]), and a call covering
    /// the whole folio clears that mark once it has cleared every page:
    /// anon-exclusive is the only per-page flag, so no tail carries any
    /// flag then, which is what the mark promises the allocator. Linux
    /// reads all 512 descriptors of a PTE-mapped 2 MiB folio on every
    /// fork; here only the first fork after the pages became exclusive
    /// does, and later forks of the same (shared) pages read the head
    /// alone. Nothing can set a flag on a tail meanwhile: fork holds the
    /// address space, and another space sharing the folio never finds it
    /// exclusive to reuse.
    #[inline(always)]
    pub fn clear_pages_anon_exclusive(&self, pfn: Pfn, nr: u64) {
        if pfn == self.pfn && nr == 1 {
            // An order-0 folio (or one page at the head): no tail. Inlined
            // into fork's loop, which sees mostly these.
            if self.head.test_anon_exclusive() {
                self.head.clear_anon_exclusive();
            }
            return;
        }
        self.clear_run_anon_exclusive(pfn, nr);
    }

    /// [`FolioRef::clear_pages_anon_exclusive`] for a run that is not the
    /// head page alone.
    #[inline(never)]
    fn clear_run_anon_exclusive(&self, pfn: Pfn, nr: u64) {
        let pages = self.nr_pages();
        assert!(
            self.contains(pfn) && nr <= pages - (pfn - self.pfn),
            "{nr} pages from {pfn:?} leave folio {:?}",
            self.pfn
        );
        let mut first = (pfn - self.memmap.start_pfn()) as usize;
        let mut left = nr as usize;
        if pfn == self.pfn && left > 0 {
            // The head's own flag: the descriptor is at hand.
            if self.head.test_anon_exclusive() {
                self.head.clear_anon_exclusive();
            }
            first += 1;
            left -= 1;
        }
        if left == 0 || !self.test(PageFlags::PER_PAGE_SET) {
            return;
        }
        for page in self.memmap.slice(first..first + left) {
            if page.test_anon_exclusive() {
                page.clear_anon_exclusive();
            }
        }
        if nr == pages {
            self.head.clear_flags(PageFlags::PER_PAGE_SET);
        }
    }

    /// The only way a per-page flag gets set: the head's mark comes first,
    /// so nobody can observe a tail's flag without it. The head's own
    /// per-page flags need no mark (freeing rewrites the head anyway).
    #[inline]
    fn set_per_page(&self, pfn: Pfn, f: PageFlags) {
        debug_assert!(PageFlags::PER_PAGE_MASK.contains(f));
        let page = self.page_at(pfn);
        if pfn != self.pfn && !self.test(PageFlags::PER_PAGE_SET) {
            self.head.set_flags(PageFlags::PER_PAGE_SET);
        }
        page.set_flags(f);
    }
}
