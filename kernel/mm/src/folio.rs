//! Folios: allocated blocks handed out as reference-counted units of
//! anonymous memory, the head lookup `page_folio`, and the checks that keep
//! a counting bug elsewhere from turning into a use-after-free.
//!
//! Three types keep ownership visible:
//! - [`Folio`] *is* one reference. It is neither `Clone` nor `Copy`: a
//!   second reference comes from [`Memmap::folio_get`], and a reference
//!   ends in a put, which consumes the handle. A page table that keeps the
//!   reference inside a PTE converts with [`Folio::into_raw`] /
//!   [`Folio::from_raw`].
//! - [`FolioRef`] is a borrowed view (`Copy`) for reading and updating the
//!   metadata: order, refcount, mapcount, flags, per-page anon-exclusive.
//!   [`Memmap::folio`] borrows the handle as well as the memmap, so a view
//!   taken through a handle cannot outlive it (and putting the handle ends
//!   the borrow). A view from [`Memmap::page_folio`] is tied only to the
//!   memmap: its user must hold a reference another way (a PTE's).
//! - [`FrozenFolio`] is a folio whose last reference is gone: nobody holds
//!   it, and it must be handed to [`BuddyAllocator::free_frozen`].
//!
//! Metadata lives in the shared [`Memmap`] and needs no allocator lock, so
//! fork and zap can count references and mappings for every page they
//! touch. A put is split the same way: [`Memmap::folio_put_testzero`] drops
//! the reference with one atomic update and, only if it was the last,
//! returns a [`FrozenFolio`]; freeing that is the only step that needs
//! `&mut BuddyAllocator` (the kernel's allocator lock).
//! [`BuddyAllocator::folio_put`] does both. View methods drop Linux's
//! `folio_` prefix (`folio_order(f)` is `f.order()`); each names its Linux
//! counterpart.
//!
//! # Checks that stay on in every build
//!
//! Reference and mapping counts are not trusted blindly. Each check is
//! O(1), compiled in release kernels too, and each event it catches is
//! counted in the memmap's [`SafetyStats`] (the kernel reports them):
//! - a refcount never wraps: it saturates at [`REF_SATURATED`] and then
//!   sticks, so puts stop decrementing and the folio is never freed (a
//!   leak, which is safe). Taking a reference on a count of 0 (a folio
//!   nobody holds) saturates it as well;
//! - a put on a count of 0 is refused and changes nothing;
//! - the last put on a folio that is still mapped does not free it: the
//!   count is saturated instead (pinned), and the put reports it;
//! - a mapcount saturates at [`MAP_SATURATED`] and never goes below 0 (a
//!   decrement past 0 is refused), so it cannot wrap to "unmapped";
//! - freeing clears every per-page flag of the block (see the memmap doc
//!   for why that stays O(1) for folios that never set one on a tail).
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

use core::ptr;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{AcqRel, Relaxed};

use crate::addr::{Order, Pfn};
use crate::buddy::BuddyAllocator;
use crate::memmap::{Memmap, Page, PageFlags};

/// A refcount at or above this value is saturated: it never changes again
/// and the folio is never freed. Far below `u32::MAX`, so no sequence of
/// additions can carry a count past it and around to a small value.
pub const REF_SATURATED: u32 = 0xc000_0000;
/// A mapcount at or above this value is saturated: it never changes
/// again, so the folio counts as mapped for good and is never freed.
pub const MAP_SATURATED: u32 = 0xc000_0000;

/// One reference to an allocated folio (Linux `struct folio *` plus the
/// reference it holds). Not `Clone`: take another reference with
/// [`Memmap::folio_get`]. Dropping it leaks the reference; end it with a
/// put ([`BuddyAllocator::folio_put`] or [`Memmap::folio_put_testzero`]).
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
    /// claims. Otherwise a later put frees frames that are still in use
    /// (the refcount checks catch a put on a count of 0, not a put of
    /// someone else's reference).
    #[inline]
    pub unsafe fn from_raw(head: Pfn) -> Folio {
        Folio { head }
    }
}

/// A folio whose reference count reached 0 in
/// [`Memmap::folio_put_testzero`]: still allocated, held by nobody. The
/// one who got it frees it with [`BuddyAllocator::free_frozen`] (Linux
/// calls a page with a zero count that is still owned "frozen").
#[must_use = "a FrozenFolio is a leak unless freed with BuddyAllocator::free_frozen"]
#[derive(Debug)]
pub struct FrozenFolio<'m> {
    memmap: &'m Memmap,
    head: Pfn,
}

impl FrozenFolio<'_> {
    /// The head frame.
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.head
    }
}

/// What a put did.
#[must_use = "a put can be refused; check or report what it did"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Other references remain.
    Held,
    /// That was the last reference: the folio is free.
    Freed,
    /// The count is saturated: the put was absorbed, and the folio stays
    /// allocated for good.
    Saturated,
    /// Refused: the last reference went while `mapcount` page-table
    /// entries still map the folio. It was pinned (count saturated), not
    /// freed.
    Mapped {
        /// The mapcount found.
        mapcount: u32,
    },
    /// Refused: the count was already 0 (a reference put twice, or a
    /// handle to a block that is no longer allocated). Nothing changed.
    Underflow,
}

impl PutOutcome {
    /// True if the folio was freed.
    #[inline]
    pub fn freed(self) -> bool {
        self == PutOutcome::Freed
    }
    /// True if the put was refused because of a bug elsewhere (mapped on
    /// last put, or underflow).
    #[inline]
    pub fn refused(self) -> bool {
        matches!(self, PutOutcome::Mapped { .. } | PutOutcome::Underflow)
    }
}

/// What [`Memmap::folio_put_testzero`] did.
#[must_use = "a FrozenFolio must be freed with BuddyAllocator::free_frozen"]
#[derive(Debug)]
pub enum PutTestZero<'m> {
    /// That was the last reference: free the folio.
    Zero(FrozenFolio<'m>),
    /// The folio stays allocated; why (never [`PutOutcome::Freed`]).
    Kept(PutOutcome),
}

/// Counters of contained folio bugs, one set per [`Memmap`]: every event
/// is a counting bug elsewhere that was refused or saturated rather than
/// turned into a wrapped count or a freed-while-in-use folio.
#[derive(Debug)]
pub struct SafetyStats {
    pub(crate) ref_saturated: AtomicU64,
    pub(crate) ref_on_zero: AtomicU64,
    pub(crate) put_saturated: AtomicU64,
    pub(crate) put_underflow: AtomicU64,
    pub(crate) freed_mapped: AtomicU64,
    pub(crate) map_saturated: AtomicU64,
    pub(crate) map_underflow: AtomicU64,
}

/// A snapshot of [`SafetyStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SafetyCounts {
    /// Refcounts that reached [`REF_SATURATED`] by taking references.
    pub ref_saturated: u64,
    /// References taken on a count of 0 (the folio was pinned).
    pub ref_on_zero: u64,
    /// Puts absorbed by a saturated count.
    pub put_saturated: u64,
    /// Puts refused on a count of 0 or a frame no longer allocated.
    pub put_underflow: u64,
    /// Frees refused because the folio was still mapped (pinned instead).
    pub freed_mapped: u64,
    /// Mapcounts that reached [`MAP_SATURATED`].
    pub map_saturated: u64,
    /// Mapcount decrements refused because they would go below 0.
    pub map_underflow: u64,
}

impl SafetyCounts {
    /// All events together.
    pub fn total(&self) -> u64 {
        self.ref_saturated
            + self.ref_on_zero
            + self.put_saturated
            + self.put_underflow
            + self.freed_mapped
            + self.map_saturated
            + self.map_underflow
    }
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl SafetyStats {
    pub(crate) const fn new() -> SafetyStats {
        SafetyStats {
            ref_saturated: AtomicU64::new(0),
            ref_on_zero: AtomicU64::new(0),
            put_saturated: AtomicU64::new(0),
            put_underflow: AtomicU64::new(0),
            freed_mapped: AtomicU64::new(0),
            map_saturated: AtomicU64::new(0),
            map_underflow: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> SafetyCounts {
        SafetyCounts {
            ref_saturated: self.ref_saturated.load(Relaxed),
            ref_on_zero: self.ref_on_zero.load(Relaxed),
            put_saturated: self.put_saturated.load(Relaxed),
            put_underflow: self.put_underflow.load(Relaxed),
            freed_mapped: self.freed_mapped.load(Relaxed),
            map_saturated: self.map_saturated.load(Relaxed),
            map_underflow: self.map_underflow.load(Relaxed),
        }
    }
}

/// `old + nr`, saturated at `sat`.
#[inline]
fn saturating_add(old: u32, nr: u32, sat: u32) -> u32 {
    old.checked_add(nr).map_or(sat, |n| n.min(sat))
}

/// A borrowed view of an allocated folio's metadata (the head descriptor
/// and, for per-page state, its tails). Holding a view is not a reference.
#[derive(Clone, Copy)]
pub struct FolioRef<'a> {
    memmap: &'a Memmap,
    head: &'a Page,
    pfn: Pfn,
    /// The head's order, read once when the view was made (a folio's
    /// order does not change while someone holds a reference).
    order: Order,
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
        self.order
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
    /// The descriptor of the page at `pfn`. Panics if `pfn` is not in
    /// this folio.
    #[inline]
    fn page_at(&self, pfn: Pfn) -> &'a Page {
        assert!(self.contains(pfn), "{pfn:?} outside folio {:?}", self.pfn);
        self.memmap.page(pfn)
    }

    /// Linux `folio_ref_count`.
    #[inline]
    pub fn ref_count(&self) -> u32 {
        self.head.refcount().load(Relaxed)
    }
    /// True if the refcount is saturated: the folio is pinned for good.
    #[inline]
    pub fn ref_saturated(&self) -> bool {
        self.ref_count() >= REF_SATURATED
    }
    /// Takes one more reference (Linux `folio_get`). The count saturates
    /// rather than wraps (see the module doc).
    #[inline]
    pub fn get(&self) -> Folio {
        self.ref_add(1);
        Folio { head: self.pfn }
    }
    /// Adds `nr` references at once without making handles (Linux
    /// `folio_ref_add`), e.g. for the `nr` PTEs fork copies; they come back
    /// through [`Folio::from_raw`] one by one.
    ///
    /// The count saturates at [`REF_SATURATED`] and then never changes.
    /// A count of 0 means nobody holds the folio (it is about to be
    /// freed, or the caller's reference was already put): rather than
    /// revive it, the count is saturated too, so the folio is never freed
    /// under the new references. Both are counted in [`SafetyStats`].
    #[inline]
    pub fn ref_add(&self, nr: u32) {
        if nr == 0 {
            return;
        }
        let rc = self.head.refcount();
        let mut old = rc.load(Relaxed);
        loop {
            if old >= REF_SATURATED {
                return;
            }
            let new = if old == 0 {
                REF_SATURATED
            } else {
                saturating_add(old, nr, REF_SATURATED)
            };
            match rc.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                Ok(_) => {
                    let stats = self.memmap.safety();
                    if old == 0 {
                        bump(&stats.ref_on_zero);
                    } else if new == REF_SATURATED {
                        bump(&stats.ref_saturated);
                    }
                    return;
                }
                Err(now) => old = now,
            }
        }
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
    /// Saturates at [`MAP_SATURATED`], after which the count never
    /// changes (the folio then stays mapped, so it is never freed).
    #[inline]
    pub fn add_mapcount(&self, nr: u32) -> u32 {
        let mc = self.head.mapcount();
        let mut old = mc.load(Relaxed);
        loop {
            if old >= MAP_SATURATED {
                return old;
            }
            let new = saturating_add(old, nr, MAP_SATURATED);
            match mc.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                Ok(_) => {
                    if new == MAP_SATURATED {
                        bump(&self.memmap.safety().map_saturated);
                    }
                    return new;
                }
                Err(now) => old = now,
            }
        }
    }
    /// Counts `nr` PTE mappings gone (Linux `folio_remove_rmap_ptes`
    /// accounting). Returns the new mapcount. A decrement below 0 is
    /// refused (the count stays as it was, so the folio is not taken for
    /// unmapped by mistake) and counted; a saturated count never changes.
    #[inline]
    pub fn sub_mapcount(&self, nr: u32) -> u32 {
        let mc = self.head.mapcount();
        let mut old = mc.load(Relaxed);
        loop {
            if old >= MAP_SATURATED {
                return old;
            }
            if old < nr {
                bump(&self.memmap.safety().map_underflow);
                return old;
            }
            match mc.compare_exchange_weak(old, old - nr, Relaxed, Relaxed) {
                Ok(_) => return old - nr,
                Err(now) => old = now,
            }
        }
    }

    /// **For tests only**: overwrites the refcount and mapcount, e.g. to
    /// undo a pin (saturation) that a test provoked on purpose, so the
    /// folio can be freed again.
    ///
    /// # Safety
    ///
    /// Afterwards the caller must own exactly `refcount` references to the
    /// folio (handles it will put) and exactly `mapcount` page-table
    /// entries may map it: every reference and mapping the old counts
    /// stood for must be gone or re-counted. Otherwise a put frees frames
    /// still in use.
    pub unsafe fn reset_counts_for_tests(&self, refcount: u32, mapcount: u32) {
        self.head.refcount().store(refcount, Relaxed);
        self.head.mapcount().store(mapcount, Relaxed);
    }

    fn test(&self, f: PageFlags) -> bool {
        self.head.flags().contains(f)
    }

    /// Linux `folio_test_anon`.
    #[inline]
    pub fn test_anon(&self) -> bool {
        self.test(PageFlags::ANON)
    }
    /// True while the folio waits on the deferred-split queue (Linux
    /// `folio_test_partially_mapped`); see `split.rs`.
    #[inline]
    pub fn test_deferred(&self) -> bool {
        self.test(PageFlags::DEFERRED)
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
    #[inline]
    pub fn clear_pages_anon_exclusive(&self, pfn: Pfn, nr: u64) {
        if pfn == self.pfn && nr == 1 {
            // An order-0 folio (or one page at the head): no tail.
            if self.head.test_anon_exclusive() {
                self.head.clear_anon_exclusive();
            }
            return;
        }
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
        for page in &self.memmap.pages()[first..first + left] {
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

impl core::fmt::Debug for FolioRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FolioRef")
            .field("pfn", &self.pfn)
            .field("head", self.head)
            .finish()
    }
}

impl Memmap {
    /// The metadata view of a folio held by reference. The view borrows
    /// the handle, so it cannot outlive the reference (a put consumes the
    /// handle). Panics if the handle's frame is not an allocated head,
    /// which only a forged handle ([`Folio::from_raw`]) can cause.
    #[inline]
    pub fn folio<'a>(&'a self, folio: &'a Folio) -> FolioRef<'a> {
        let head = self.page(folio.head);
        assert!(head.is_head(), "{:?} is not an allocated head", folio.head);
        FolioRef {
            memmap: self,
            head,
            pfn: folio.head,
            order: head.order(),
        }
    }

    /// Takes one more reference to `folio` (Linux `folio_get`); saturates
    /// rather than wraps.
    #[inline]
    pub fn folio_get(&self, folio: &Folio) -> Folio {
        self.folio(folio).get()
    }

    /// Ends one reference without the allocator (Linux
    /// `folio_put_testzero`): one atomic update of the refcount. If it was
    /// the last reference, the folio comes back frozen, to be freed with
    /// [`BuddyAllocator::free_frozen`]; otherwise it stays allocated and
    /// the outcome says why.
    ///
    /// Refused (and counted in [`SafetyStats`]) instead of wrapping: a put
    /// on a count of 0 or on a frame that no longer heads an allocated
    /// block ([`PutOutcome::Underflow`], nothing changes), and the last
    /// put on a mapped folio ([`PutOutcome::Mapped`]: the count is
    /// saturated, so the folio stays allocated for good). A put on a
    /// saturated count is absorbed ([`PutOutcome::Saturated`]).
    pub fn folio_put_testzero(&self, folio: Folio) -> PutTestZero<'_> {
        self.folio_put_refs_testzero(folio, 1)
    }

    /// Ends `nr` references at once, `folio` standing for all of them
    /// (Linux `folio_put_refs`): one atomic update, with the refusals of
    /// [`Memmap::folio_put_testzero`]; fewer than `nr` references left
    /// is an underflow and changes nothing. `nr == 0` is refused too.
    pub fn folio_put_refs_testzero(&self, folio: Folio, nr: u32) -> PutTestZero<'_> {
        let head = self.page(folio.head);
        let rc = head.refcount();
        let stats = self.safety();
        let mut old = rc.load(Relaxed);
        loop {
            if old >= REF_SATURATED && head.is_head() {
                bump(&stats.put_saturated);
                return PutTestZero::Kept(PutOutcome::Saturated);
            }
            if old < nr || nr == 0 || !head.is_head() {
                bump(&stats.put_underflow);
                return PutTestZero::Kept(PutOutcome::Underflow);
            }
            // Whoever maps the folio holds a reference, so with ours the
            // last ones, the mapcount cannot change under us.
            let mapcount = if old == nr {
                head.mapcount().load(Relaxed)
            } else {
                0
            };
            let new = if mapcount != 0 {
                REF_SATURATED
            } else {
                old - nr
            };
            // Release: our writes to the folio happen before whoever
            // frees it; acquire: theirs happen before our free.
            match rc.compare_exchange_weak(old, new, AcqRel, Relaxed) {
                Ok(_) if mapcount != 0 => {
                    bump(&stats.freed_mapped);
                    return PutTestZero::Kept(PutOutcome::Mapped { mapcount });
                }
                Ok(_) if new == 0 => {
                    return PutTestZero::Zero(FrozenFolio {
                        memmap: self,
                        head: folio.head,
                    });
                }
                Ok(_) => return PutTestZero::Kept(PutOutcome::Held),
                Err(now) => old = now,
            }
        }
    }

    /// The allocated folio (or block) containing `pfn`, or `None` if
    /// `pfn` is free, reserved or outside the memmap (Linux `page_folio`,
    /// computed rather than stored; see the module doc). The view is not
    /// a reference: the caller must hold one some other way.
    #[inline]
    pub fn page_folio(&self, pfn: Pfn) -> Option<FolioRef<'_>> {
        // Fast path, inlined into fork's and zap's loops: `pfn` heads its
        // folio (every order-0 page, and the first page of each batch that
        // starts a large folio). One descriptor read.
        let page = self.get(pfn)?;
        let flags = page.flags();
        if flags.contains(PageFlags::HEAD) {
            return Some(FolioRef {
                memmap: self,
                head: page,
                pfn,
                order: page.order(),
            });
        }
        if flags.intersects(PageFlags::MARKER_MASK) {
            // Free or reserved: no allocated block covers it (order 0 of
            // the search below).
            return None;
        }
        self.tail_folio(pfn)
    }

    /// [`Memmap::page_folio`] for a frame that is not a head: the search
    /// through its aligned ancestors.
    #[inline(never)]
    fn tail_folio(&self, pfn: Pfn) -> Option<FolioRef<'_>> {
        for order in Order::all() {
            let cand = pfn.align_down(order.pages());
            let page = self.page(cand);
            let flags = page.flags();
            if !flags.intersects(PageFlags::MARKER_MASK) {
                continue;
            }
            let head_order = page.order();
            return if flags.contains(PageFlags::HEAD) && head_order >= order {
                Some(FolioRef {
                    memmap: self,
                    head: page,
                    pfn: cand,
                    order: head_order,
                })
            } else {
                None
            };
        }
        None
    }
}

impl BuddyAllocator<'_> {
    /// Allocates a folio of `order`: refcount 1, mapcount 0, no flags
    /// (Linux `folio_alloc`, without zeroing). `None` when out of memory.
    pub fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        // alloc() already leaves the head as a fresh folio head.
        self.alloc(order).map(|head| Folio { head })
    }

    /// Ends one reference (Linux `folio_put`):
    /// [`Memmap::folio_put_testzero`], then [`BuddyAllocator::free_frozen`]
    /// if that was the last reference.
    pub fn folio_put(&mut self, folio: Folio) -> PutOutcome {
        self.folio_put_refs(folio, 1)
    }

    /// Ends `nr` references at once (Linux `folio_put_refs`), freeing the
    /// folio if they were the last; refusals as
    /// [`Memmap::folio_put_refs_testzero`].
    pub fn folio_put_refs(&mut self, folio: Folio, nr: u32) -> PutOutcome {
        match self.memmap().folio_put_refs_testzero(folio, nr) {
            PutTestZero::Zero(frozen) => self.free_frozen(frozen),
            PutTestZero::Kept(outcome) => outcome,
        }
    }

    /// Frees a folio whose last reference is gone, clearing any per-page
    /// flag of its pages. Still refuses if, since it froze, a bug took a
    /// reference (the count is then saturated: [`PutOutcome::Saturated`])
    /// or mapped it ([`PutOutcome::Mapped`]: pinned instead of freed).
    ///
    /// Panics if `folio` belongs to another memmap.
    pub fn free_frozen(&mut self, folio: FrozenFolio<'_>) -> PutOutcome {
        let mm = self.memmap();
        assert!(
            ptr::eq(folio.memmap, mm),
            "freeing a folio of another memmap"
        );
        let head = mm.page(folio.head);
        // Only folio_put_testzero makes a FrozenFolio, from an allocated
        // head, and nothing but this call frees it.
        assert!(
            head.is_head(),
            "frozen folio {:?} is not allocated",
            folio.head
        );
        if head.refcount().load(Relaxed) != 0 {
            // Counted as ref_on_zero when it was taken.
            return PutOutcome::Saturated;
        }
        let mapcount = head.mapcount().load(Relaxed);
        if mapcount != 0 {
            head.refcount().store(REF_SATURATED, Relaxed);
            bump(&mm.safety().freed_mapped);
            return PutOutcome::Mapped { mapcount };
        }
        self.free_block(mm.index(folio.head), head.order());
        PutOutcome::Freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::test_memmap;

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
            assert_eq!(b.folio_put(f), PutOutcome::Freed);
        }
    }
}
