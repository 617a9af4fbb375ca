//! The buddy allocator: naturally aligned blocks of 2^order frames, orders
//! 0..=[`Order::MAX`], with free lists threaded through the memmap.
//!
//! The allocator borrows its [`Memmap`] (`BuddyAllocator<'m>` holds a
//! `&'m Memmap`) instead of owning it: folio metadata is updated through
//! the shared memmap without the allocator, and only allocating and freeing
//! need `&mut BuddyAllocator` (in the kernel, its lock). One allocator per
//! memmap: [`BuddyAllocator::new`] panics if the memmap already has one.
//!
//! Allocating and freeing write head descriptors only: allocating splits a
//! larger block by marking the head of each upper half free, freeing merges
//! by unlinking the buddy's head. The one exception is freeing a block
//! whose head is marked [`PageFlags::PER_PAGE_SET`] (a per-page flag such
//! as anon-exclusive was set on a tail): then its tails are walked to clear
//! those flags, so no stale per-page state survives into the next owner.
//! A block whose tails never carried one frees in O(1), and an order-9
//! allocation costs a handful of descriptor writes, like an order-0 one. No
//! operation allocates memory.
//!
//! [`BuddyAllocator::free`] refuses (returns [`FreeError`], changing
//! nothing) a frame that is not an allocated head of that order, a block
//! with other references and a block that is still mapped; these checks
//! are O(1) and compiled into every build. Walking the tails to check that
//! none is corrupt is a `debug_assert!`-only check.
//!
//! Invariants kept at every return (and relied on by
//! [`Memmap::page_folio`]):
//! - `BUDDY` is set on exactly the heads of free blocks on these lists,
//!   each of which is on the free list of its stored order (free blocks
//!   held on a CPU's list, `pcp.rs`, carry `PCP` instead);
//! - `HEAD` is set on exactly the heads of allocated blocks;
//! - a free block's buddy is never a free block of the same order (merging
//!   is maximal);
//! - `RESERVED` frames are never part of a block;
//! - a free block's tails carry no flag at all;
//! - the deferred-split queue (`deferred_split.rs`) holds allocated folios only:
//!   freeing a queued folio takes it off first.

use core::ptr;

use crate::addr::{Order, Pfn, VirtAddr};
use crate::deferred_split::DeferredQueue;
use crate::folio::{Folio, FrozenFolio, PutOutcome, PutTestZero, REF_SATURATED};
use crate::memmap::{Memmap, NONE, Page, PageFlags, bump};
use core::sync::atomic::Ordering::{Acquire, Relaxed};

/// Why [`BuddyAllocator::free`] refused a block. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame has no descriptor in this memmap.
    OutOfSpan,
    /// The frame is not aligned to the order given.
    Misaligned,
    /// The frame is not the head of an allocated block: a double free, a
    /// tail, a reserved frame or a frame never handed out.
    NotAllocated,
    /// The block was allocated with a different order.
    WrongOrder {
        /// The order it was allocated with.
        allocated: Order,
    },
    /// The block is a folio someone else still holds a reference to; give
    /// references back with `folio_put`.
    Referenced {
        /// Its reference count (the caller's own reference is one of them).
        refcount: u32,
    },
    /// Page-table entries still map the block.
    Mapped {
        /// Its mapcount.
        mapcount: u32,
    },
}

/// Physical frame allocator over one shared [`Memmap`].
pub struct BuddyAllocator<'m> {
    memmap: &'m Memmap,
    /// Head (memmap index) of each order's free list, or `NONE`.
    free_lists: [u32; Order::COUNT],
    nr_free_blocks: [u64; Order::COUNT],
    nr_free_pages: u64,
    nr_managed_pages: u64,
    /// Large folios waiting to be split (see `split.rs`).
    pub(crate) deferred: DeferredQueue,
}

impl<'m> BuddyAllocator<'m> {
    /// An allocator with no free memory yet; every frame of `memmap` stays
    /// reserved until [`BuddyAllocator::add_free_range`] hands it over.
    ///
    /// Panics if another allocator already manages `memmap` (two would
    /// hand out the same frames).
    pub fn new(memmap: &'m Memmap) -> Self {
        assert!(memmap.claim(), "this memmap already has an allocator");
        Self {
            memmap,
            free_lists: [NONE; Order::COUNT],
            nr_free_blocks: [0; Order::COUNT],
            nr_free_pages: 0,
            nr_managed_pages: 0,
            deferred: DeferredQueue::new(),
        }
    }

    /// The descriptor array (shared: it outlives the borrow of `self`).
    #[inline]
    pub fn memmap(&self) -> &'m Memmap {
        self.memmap
    }

    /// Hands the RAM frames `[start, end)` to the allocator, as maximal
    /// naturally aligned blocks merged with any free neighbours. Input is
    /// clipped to the memmap, and frames that are not reserved (already
    /// handed over) are skipped, so overlapping calls are harmless.
    /// Returns the number of frames added.
    ///
    /// This touches every descriptor in the range once; it is boot work.
    pub fn add_free_range(&mut self, start: Pfn, end: Pfn) -> u64 {
        let start = start.max(self.memmap.start_pfn());
        let end = end.min(self.memmap.end_pfn());
        if start >= end {
            return 0;
        }
        let (mut idx, end) = (self.memmap.index(start), self.memmap.index(end - 1) + 1);
        let mut added = 0u64;
        while idx < end {
            if !self.memmap.at(idx).is_reserved() {
                idx += 1;
                continue;
            }
            let run = idx;
            while idx < end && self.memmap.at(idx).is_reserved() {
                self.memmap.at(idx).store_flags(PageFlags::EMPTY);
                idx += 1;
            }
            self.free_run(run, idx);
            added += u64::from(idx - run);
        }
        self.nr_managed_pages += added;
        added
    }

    /// Frees the unreserved indices `[start, end)` as maximal aligned blocks.
    fn free_run(&mut self, mut idx: u32, end: u32) {
        while idx < end {
            let fits = 31 - (end - idx).leading_zeros();
            let k = idx
                .trailing_zeros()
                .min(fits)
                .min(u32::from(Order::MAX.get()));
            self.free_block(idx, Order::of(k as u8));
            idx += 1 << k;
        }
    }

    /// Allocates a naturally aligned block of `2^order` frames, or `None`
    /// if no free block of `order` or larger exists. The head is marked
    /// allocated with refcount 1 and mapcount 0; the frames' contents are
    /// whatever they were.
    pub fn alloc(&mut self, order: Order) -> Option<Pfn> {
        let idx = self.take(order)?;
        init_head(self.memmap.at(idx), order);
        Some(self.memmap.pfn_at(idx))
    }

    /// Unlinks a block of `order` from the free lists (splitting a larger
    /// one if needed) and returns its index; its head is left with no
    /// flags, owned by the caller, who marks it allocated or puts it on a
    /// CPU's list.
    pub(crate) fn take(&mut self, order: Order) -> Option<u32> {
        let mut k = order.index();
        while self.free_lists[k] == NONE {
            k += 1;
            if k == Order::COUNT {
                return None;
            }
        }
        let idx = self.free_lists[k];
        self.list_del(idx, k);
        // Split: keep the lower half, give each upper half back, smallest last.
        while k > order.index() {
            k -= 1;
            self.list_add(idx + (1 << k), k);
        }
        Some(idx)
    }

    /// Allocates one frame for a page table: an order-0 block like
    /// [`BuddyAllocator::alloc`]'s, marked [`PageFlags::PGTABLE`] so the mm
    /// audit can tell table frames from other kernel frames (freeing with
    /// [`BuddyAllocator::free`] clears the mark).
    pub fn alloc_table(&mut self) -> Option<Pfn> {
        let pfn = self.alloc(Order::of(0))?;
        mark_table(self.memmap, pfn);
        Some(pfn)
    }

    /// Frees a block returned by [`BuddyAllocator::alloc`] with the same
    /// order, merging it with free buddies as far as possible and clearing
    /// any per-page flag of its pages. The block is checked to be an
    /// allocated head of that order holding a single reference and mapped
    /// by no page-table entry; otherwise nothing changes and the reason is
    /// returned (a mapped block is also counted in the memmap's
    /// [`crate::memmap::SafetyStats`]).
    pub fn free(&mut self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        let block = check_free(self.memmap, pfn, order)?;
        self.free_checked(block);
        Ok(())
    }

    /// Frees a block that passed [`check_free`] or [`check_frozen`].
    ///
    /// Panics if `block` belongs to another memmap.
    pub fn free_checked(&mut self, block: FreeBlock<'_>) {
        assert!(
            ptr::eq(block.memmap, self.memmap),
            "freeing a block of another memmap"
        );
        self.free_block(self.memmap.index(block.pfn), block.order);
    }

    /// Returns the block at `idx` to the free lists and merges it upward.
    /// The caller has checked that it is an allocated (or freshly
    /// unreserved, or drained from a CPU's list) block of `order`,
    /// unreferenced and unmapped.
    pub(crate) fn free_block(&mut self, mut idx: u32, order: Order) {
        let head = self.memmap.at(idx);
        if head.flags().contains(PageFlags::DEFERRED) {
            // A folio freed while queued for splitting (the per-PTE unmap
            // of a whole folio queues it on the way down).
            self.deferred.del(self.memmap, idx);
        }
        scrub(self.memmap, idx, order);

        let mut k = order.index();
        while k < Order::MAX.index() {
            // The memmap spans whole MAX blocks, so the buddy of a block
            // below MAX always has a descriptor.
            let buddy = idx ^ (1 << k);
            let bp = self.memmap.at(buddy);
            if !(bp.is_buddy() && bp.order().index() == k) {
                break;
            }
            // The buddy stops being a head: list_del clears its marker, so
            // page_folio never mistakes it for one.
            self.list_del(buddy, k);
            idx = idx.min(buddy);
            k += 1;
        }
        self.list_add(idx, k);
    }

    /// Pushes the block at `idx` on free list `k` and marks its head free.
    fn list_add(&mut self, idx: u32, k: usize) {
        let page = self.memmap.at(idx);
        let old = self.free_lists[k];
        page.set_order(Order::of(k as u8));
        page.store_flags(PageFlags::BUDDY);
        page.set_prev(NONE);
        page.set_next(old);
        if old != NONE {
            self.memmap.at(old).set_prev(idx);
        }
        self.free_lists[k] = idx;
        self.nr_free_blocks[k] += 1;
        self.nr_free_pages += 1 << k;
    }

    /// Unlinks the free block at `idx` from list `k`; its head is left
    /// with no flags, owned by the caller.
    fn list_del(&mut self, idx: u32, k: usize) {
        let page: &Page = self.memmap.at(idx);
        debug_assert!(page.is_buddy() && page.order().index() == k);
        let (prev, next) = (page.prev(), page.next());
        if prev == NONE {
            self.free_lists[k] = next;
        } else {
            self.memmap.at(prev).set_next(next);
        }
        if next != NONE {
            self.memmap.at(next).set_prev(prev);
        }
        page.set_next(NONE);
        page.set_prev(NONE);
        page.store_flags(PageFlags::EMPTY);
        self.nr_free_blocks[k] -= 1;
        self.nr_free_pages -= 1 << k;
    }

    /// Free frames, all orders together.
    #[inline]
    pub fn nr_free_pages(&self) -> u64 {
        self.nr_free_pages
    }

    /// Frames handed over by [`BuddyAllocator::add_free_range`] so far
    /// (free plus allocated).
    #[inline]
    pub fn nr_managed_pages(&self) -> u64 {
        self.nr_managed_pages
    }

    /// Number of free blocks of each order.
    #[inline]
    pub fn free_per_order(&self) -> [u64; Order::COUNT] {
        self.nr_free_blocks
    }

    /// Number of free frames in blocks of each order.
    pub fn free_pages_per_order(&self) -> [u64; Order::COUNT] {
        let mut pages = self.nr_free_blocks;
        for (k, p) in pages.iter_mut().enumerate() {
            *p <<= k;
        }
        pages
    }

    /// The largest order with a free block, if any memory is free.
    pub fn largest_free_order(&self) -> Option<Order> {
        Order::all()
            .rev()
            .find(|o| self.free_lists[o.index()] != NONE)
    }
}

/// Marks `pfn`, an order-0 block just allocated (by
/// [`BuddyAllocator::alloc`] or a CPU's list), a page-table frame:
/// [`PageFlags::PGTABLE`], which freeing clears.
///
/// Panics if `pfn` is not a fresh order-0 head (one reference, no flag
/// but `HEAD`): only a new frame may become a table.
pub fn mark_table(memmap: &Memmap, pfn: Pfn) {
    let page = memmap.page(pfn);
    assert!(
        page.flags() == PageFlags::HEAD
            && page.order() == Order::of(0)
            && page.refcount().load(Relaxed) == 1,
        "marking {pfn:?} in state {page:?} a page table"
    );
    page.set_flags(PageFlags::PGTABLE);
}

/// Marks the block at `page` a fresh allocated head of `order`:
/// refcount 1, mapcount 0, no flag but `HEAD`.
pub(crate) fn init_head(page: &Page, order: Order) {
    page.set_order(order);
    page.refcount().store(1, Relaxed);
    page.mapcount().store(0, Relaxed);
    page.store_flags(PageFlags::HEAD);
}

/// Leaves the block at `idx`, being freed, with no state of its last
/// owner: per-page flags of its tails cleared, its head's flags, refcount
/// and mapcount zero. (Not the deferred-split queue: that is the
/// allocator's, which takes a queued folio off first.)
pub(crate) fn scrub(memmap: &Memmap, idx: u32, order: Order) {
    let head = memmap.at(idx);
    if head.flags().contains(PageFlags::PER_PAGE_SET) {
        clear_tail_flags(memmap, idx, order);
    }
    #[cfg(debug_assertions)]
    debug_check_freeable(memmap, idx, order);
    // Also drops the head's own per-page flags and PER_PAGE_SET.
    head.store_flags(PageFlags::EMPTY);
    head.refcount().store(0, Relaxed);
    head.mapcount().store(0, Relaxed);
}

/// Clears the per-page flags of the block's tails: only blocks marked
/// [`PageFlags::PER_PAGE_SET`] come here, so the walk is paid only by
/// folios that set such a flag on a tail.
fn clear_tail_flags(memmap: &Memmap, idx: u32, order: Order) {
    let end = idx + (1u32 << order.get());
    for tail in memmap.slice(idx as usize + 1..end as usize) {
        // Reading first leaves the tails that were never set unwritten.
        // A plain store, not a read-modify-write: the block is being
        // freed, so nobody holds a reference through which its tails'
        // flags could change meanwhile (as Linux clears a freed page's
        // flags with plain stores).
        let flags = tail.flags();
        if flags.intersects(PageFlags::PER_PAGE_MASK) {
            tail.store_flags(flags.without(PageFlags::PER_PAGE_MASK));
        }
    }
    #[cfg(test)]
    memmap
        .tail_visits
        .fetch_add(u64::from(end - idx - 1), Relaxed);
}

/// After per-page flags are cleared, a block must find its tails with
/// no flag at all (a stale head marker on a tail would mislead
/// `page_folio`). Walking the tails is too slow for release builds.
#[cfg(debug_assertions)]
fn debug_check_freeable(memmap: &Memmap, idx: u32, order: Order) {
    let head = memmap.at(idx);
    debug_assert!(
        !head
            .flags()
            .intersects(PageFlags::BUDDY | PageFlags::RESERVED | PageFlags::PCP),
        "freeing head {:?} in state {head:?}",
        memmap.pfn_at(idx)
    );
    debug_assert_eq!(head.mapcount().load(Relaxed), 0, "freeing a mapped block");
    for t in idx + 1..idx + (1u32 << order.get()) {
        let tail = memmap.at(t);
        debug_assert!(
            tail.flags().is_empty(),
            "freeing block {:?}/{order:?}: tail {:?} is {tail:?}",
            memmap.pfn_at(idx),
            memmap.pfn_at(t)
        );
    }
}

/// A block whose last reference is gone and that passed every check a
/// free makes: an allocated head of its order, mapped by no entry, its
/// count frozen at 0 so no new reference can be taken through
/// `page_folio`. Made only by [`check_free`] and [`check_frozen`]; what
/// [`BuddyAllocator::free_checked`] and the per-CPU lists
/// ([`crate::pcp::PcpLists::free`]) take.
#[must_use = "a checked block is a leak unless it is freed"]
#[derive(Debug)]
pub struct FreeBlock<'m> {
    memmap: &'m Memmap,
    pfn: Pfn,
    order: Order,
}

impl<'m> FreeBlock<'m> {
    /// The block's first frame.
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }
    /// The block's order.
    #[inline]
    pub fn order(&self) -> Order {
        self.order
    }
    /// The memmap the block belongs to.
    #[inline]
    pub(crate) fn memmap(&self) -> &'m Memmap {
        self.memmap
    }
}

/// The checks of [`BuddyAllocator::free`], without the allocator: `pfn`
/// must head an allocated block of `order`, unmapped, whose one
/// reference is the caller's. On success the count is frozen at 0 and
/// the block is the caller's to free; on failure nothing changed.
pub fn check_free(memmap: &Memmap, pfn: Pfn, order: Order) -> Result<FreeBlock<'_>, FreeError> {
    let head = memmap.get(pfn).ok_or(FreeError::OutOfSpan)?;
    if !pfn.is_order_aligned(order) {
        return Err(FreeError::Misaligned);
    }
    if !head.is_head() {
        return Err(FreeError::NotAllocated);
    }
    if head.order() != order {
        return Err(FreeError::WrongOrder {
            allocated: head.order(),
        });
    }
    // Whoever maps the block holds a reference, so once the freeze
    // below confirms the caller's is the only one, nobody can map it
    // between this check and the free.
    let mapcount = head.mapcount().load(Relaxed);
    if mapcount != 0 {
        bump(&memmap.safety().freed_mapped);
        return Err(FreeError::Mapped { mapcount });
    }
    // Freeze the count (1 -> 0) in one step, so a reference taken
    // through `page_folio` meanwhile makes this fail instead of
    // being freed under its taker.
    if let Err(refcount) = head.refcount().compare_exchange(1, 0, Acquire, Relaxed) {
        return Err(FreeError::Referenced { refcount });
    }
    Ok(FreeBlock { memmap, pfn, order })
}

/// The checks of [`BuddyAllocator::free_frozen`], without the allocator.
/// Refuses if, since it froze, a bug took a reference (the count is then
/// saturated: [`PutOutcome::Saturated`]) or mapped it
/// ([`PutOutcome::Mapped`]: pinned instead of freed).
pub fn check_frozen(folio: FrozenFolio<'_>) -> Result<FreeBlock<'_>, PutOutcome> {
    let mm = folio.memmap();
    let head = mm.page(folio.pfn());
    // Only folio_put_testzero makes a FrozenFolio, from an allocated
    // head, and nothing but this call frees it.
    assert!(
        head.is_head(),
        "frozen folio {:?} is not allocated",
        folio.pfn()
    );
    if head.refcount().load(Relaxed) != 0 {
        // Counted as ref_on_zero when it was taken.
        return Err(PutOutcome::Saturated);
    }
    let mapcount = head.mapcount().load(Relaxed);
    if mapcount != 0 {
        head.refcount().store(REF_SATURATED, Relaxed);
        bump(&mm.safety().freed_mapped);
        return Err(PutOutcome::Mapped { mapcount });
    }
    Ok(FreeBlock {
        memmap: mm,
        pfn: folio.pfn(),
        order: head.order(),
    })
}

impl core::fmt::Debug for BuddyAllocator<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BuddyAllocator")
            .field("memmap", self.memmap)
            .field("nr_free_pages", &self.nr_free_pages)
            .field("free_per_order", &self.nr_free_blocks)
            .finish_non_exhaustive()
    }
}

impl BuddyAllocator<'_> {
    /// Queues the allocated folio at `head`, whose first page is mapped at
    /// `base`, for splitting (Linux `deferred_split_folio`). Returns false
    /// if it is already queued or is not a large allocated folio.
    pub fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool {
        self.deferred.push(self.memmap, head, base)
    }

    /// Folios on the deferred-split queue.
    pub fn deferred_len(&self) -> u64 {
        self.deferred.len()
    }

    /// The queued folios, oldest first: (head, where its first page is
    /// mapped).
    pub fn deferred_folios(&self) -> impl Iterator<Item = (Pfn, VirtAddr)> + '_ {
        self.deferred.iter(self.memmap)
    }

    /// Allocates a folio of `order`: refcount 1, mapcount 0, no flags
    /// (Linux `folio_alloc`, without zeroing). `None` when out of memory.
    pub fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        // alloc() already leaves the head as a fresh folio head.
        self.alloc(order).map(Folio::from_fresh_alloc)
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
    /// flag of its pages; refuses as [`check_frozen`] does.
    ///
    /// Panics if `folio` belongs to another memmap.
    pub fn free_frozen(&mut self, folio: FrozenFolio<'_>) -> PutOutcome {
        assert!(
            ptr::eq(folio.memmap(), self.memmap),
            "freeing a folio of another memmap"
        );
        match check_frozen(folio) {
            Ok(block) => {
                self.free_checked(block);
                PutOutcome::Freed
            }
            Err(refused) => refused,
        }
    }
}

#[cfg(test)]
mod tests;
