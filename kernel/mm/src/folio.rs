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
//!   it, and it must be handed to [`BuddyAllocator::free_frozen`](crate::buddy::BuddyAllocator::free_frozen).
//!
//! Metadata lives in the shared [`Memmap`] and needs no allocator lock, so
//! fork and zap can count references and mappings for every page they
//! touch. A put is split the same way: [`Memmap::folio_put_testzero`] drops
//! the reference with one atomic update and, only if it was the last,
//! returns a [`FrozenFolio`]; freeing that is the only step that needs
//! `&mut BuddyAllocator` (the kernel's allocator lock).
//! [`BuddyAllocator::folio_put`](crate::buddy::BuddyAllocator::folio_put) does both. View methods drop Linux's
//! `folio_` prefix (`folio_order(f)` is `f.order()`); each names its Linux
//! counterpart.
//!
//! # Checks that stay on in every build
//!
//! Reference and mapping counts are not trusted blindly. Each check is
//! O(1), compiled in release kernels too, and each event it catches is
//! counted in the memmap's [`SafetyStats`](crate::memmap::SafetyStats) (the kernel reports them):
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

use core::sync::atomic::Ordering::{AcqRel, Relaxed};

use crate::addr::{Order, Pfn};
use crate::memmap::{Memmap, Page, PageFlags, bump};

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
/// put ([`BuddyAllocator::folio_put`](crate::buddy::BuddyAllocator::folio_put) or [`Memmap::folio_put_testzero`]).
#[must_use = "a Folio is a reference: end it with folio_put or keep it with into_raw"]
#[derive(Debug, PartialEq, Eq)]
pub struct Folio {
    head: Pfn,
}

impl Folio {
    /// The reference a fresh allocation of the block at `head` holds (the
    /// allocator has just made it a folio head with refcount 1).
    #[inline]
    pub(crate) fn from_fresh_alloc(head: Pfn) -> Folio {
        Folio { head }
    }

    /// The folio of a block just allocated at `head` (by
    /// [`BuddyAllocator::alloc`](crate::buddy::BuddyAllocator::alloc) or a
    /// CPU's page list): the caller hands over the one reference the
    /// allocation gave it.
    ///
    /// Panics if `head` is not a fresh head (refcount 1, mapcount 0, no
    /// flag but `HEAD`): a block already in use must not become a folio.
    pub fn from_new_block(memmap: &Memmap, head: Pfn) -> Folio {
        let page = memmap.page(head);
        assert!(
            page.flags() == PageFlags::HEAD
                && page.refcount().load(Relaxed) == 1
                && page.mapcount().load(Relaxed) == 0,
            "{head:?} in state {page:?} is not a new block"
        );
        Folio { head }
    }

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
/// one who got it frees it with [`BuddyAllocator::free_frozen`](crate::buddy::BuddyAllocator::free_frozen) (Linux
/// calls a page with a zero count that is still owned "frozen").
#[must_use = "a FrozenFolio is a leak unless freed with BuddyAllocator::free_frozen"]
#[derive(Debug)]
pub struct FrozenFolio<'m> {
    memmap: &'m Memmap,
    head: Pfn,
}

impl<'m> FrozenFolio<'m> {
    /// The head frame.
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.head
    }

    /// The memmap the folio belongs to.
    #[inline]
    pub(crate) fn memmap(&self) -> &'m Memmap {
        self.memmap
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
    /// under the new references. Both are counted in [`SafetyStats`](crate::memmap::SafetyStats).
    #[inline]
    pub fn ref_add(&self, nr: u32) {
        if nr == 0 {
            return;
        }
        // One atomic add, checked after (Linux's `refcount_t` scheme): the
        // saturation value leaves 1 GiB of counts above it, so no add in
        // flight can carry a saturated count round to zero before the
        // fix-up below pins it again.
        let old = self.head.refcount().fetch_add(nr, Relaxed);
        if old == 0 || old >= REF_SATURATED - nr.min(REF_SATURATED) {
            self.ref_pin_saturated(old);
        }
    }

    /// [`FolioRef::ref_add`]'s rare case: the count was 0 or has reached
    /// the saturation range; it is pinned at [`REF_SATURATED`] and the
    /// event counted.
    #[cold]
    #[inline(never)]
    fn ref_pin_saturated(&self, old: u32) {
        self.head.refcount().store(REF_SATURATED, Relaxed);
        let stats = self.memmap.safety();
        if old == 0 {
            bump(&stats.ref_on_zero);
        } else if old < REF_SATURATED {
            bump(&stats.ref_saturated);
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
        // As `ref_add`: one atomic add, the saturation range checked after.
        let old = self.head.mapcount().fetch_add(nr, Relaxed);
        if old < MAP_SATURATED - nr.min(MAP_SATURATED) {
            return old + nr;
        }
        self.map_pin_saturated(old)
    }

    /// [`FolioRef::add_mapcount`]'s rare case: pins the count at
    /// [`MAP_SATURATED`], counting the event the first time.
    #[cold]
    #[inline(never)]
    fn map_pin_saturated(&self, old: u32) -> u32 {
        self.head.mapcount().store(MAP_SATURATED, Relaxed);
        if old < MAP_SATURATED {
            bump(&self.memmap.safety().map_saturated);
        }
        MAP_SATURATED
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
    /// [`BuddyAllocator::free_frozen`](crate::buddy::BuddyAllocator::free_frozen); otherwise it stays allocated and
    /// the outcome says why.
    ///
    /// Refused (and counted in [`SafetyStats`](crate::memmap::SafetyStats)) instead of wrapping: a put
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

mod data;
mod flags;
#[cfg(test)]
mod tests;
