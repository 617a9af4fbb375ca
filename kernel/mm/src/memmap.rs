//! The memmap: one [`Page`] descriptor per 4 KiB frame, and the [`Memmap`]
//! array that holds them.
//!
//! A descriptor is 32 bytes, made only of atomics, so any number of `&Page`
//! may coexist with the buddy allocator updating free-list links and with
//! other contexts updating folio metadata. The memmap is shared: the
//! [`crate::buddy::BuddyAllocator`] borrows it (`&Memmap`) rather than
//! owning it, so refcounts, mapcounts and flags are read and updated
//! through `&Memmap` without the allocator's lock; only allocation and
//! freeing (free lists, `HEAD`/`BUDDY` markers) need the allocator. At most
//! one allocator ever manages a memmap: creating a second one panics.
//!
//! Atomics make each access indivisible with respect to an interrupt.
//! Most accesses are `Relaxed` (the kernel is single-core for now); the
//! decrement in `folio_put` is release/acquire, so that when more cores
//! come, every write made through a reference happens before the free.
//!
//! Which fields mean something depends on the page's role:
//!
//! | role                              | flags                                         | order | refcount, mapcount | next, prev |
//! |-----------------------------------|-----------------------------------------------|-------|--------------------|------------|
//! | reserved (hole, firmware, kernel) | `RESERVED`                                    | -     | 0                  | -          |
//! | head of a free block              | `BUDDY`                                       | yes   | 0                  | free list  |
//! | head of a free block on a CPU's list | `PCP`                                      | yes   | 0                  | pcp list   |
//! | head of an allocated block/folio  | `HEAD` + folio flags + `PER_PAGE_SET` + own   | yes   | yes                | -          |
//! | second page of a queued folio     | own per-page flags only                       | -     | 0                  | split queue|
//! | tail of an allocated block        | own per-page flags only                       | -     | 0                  | -          |
//! | tail of a free block              | none                                          | -     | 0                  | -          |
//!
//! A folio on the deferred-split queue (`DEFERRED` on its head) is linked
//! through its second page's `next`/`prev`, which no allocated tail uses
//! otherwise (Linux keeps `_deferred_list` in a tail the same way), and
//! its head's `private` word holds where it is mapped.
//!
//! Tails never record their head: making a block an order-9 folio or
//! freeing it writes only the head descriptor (and a merging buddy's head),
//! so large blocks cost the same as small ones. [`Memmap::page_folio`]
//! computes the head from alignment instead (see `folio.rs`). That works
//! only while `HEAD`, `BUDDY` and `PCP` sit on exactly the heads of live blocks,
//! which the allocator maintains on every alloc, split, free and merge.
//!
//! Per-page flags ([`PageFlags::PER_PAGE_MASK`]) are the one kind of tail
//! state. They are set only through [`crate::folio::FolioRef`], which also
//! marks the head [`PageFlags::PER_PAGE_SET`] when the page is a tail;
//! freeing walks the tails to clear them only when that mark is present.
//! So a folio whose tails never carried a per-page flag still frees by
//! writing heads only, and a free block's tails carry no flag at all: a
//! stale anon-exclusive bit can never reach the next owner of the frame.
//!
//! Every frame's refcount is 0 unless it heads an allocated block (free
//! and alloc write it on heads only, and a tail's was 0 when its block was
//! made), which is what lets a stale `folio_put` be refused as an underflow.

use core::mem::{align_of, size_of};
use core::ops::BitOr;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::addr::{Order, Pfn};

pub(crate) use safety::bump;
pub use safety::{SafetyCounts, SafetyStats};

/// Sentinel for "no descriptor" in the intrusive free-list links.
pub(crate) const NONE: u32 = u32::MAX;

/// A set of page flags, as stored in [`Page`]'s flags word.
///
/// Folio-wide flags (`ANON`, `DIRTY`, `YOUNG`), the allocator's markers
/// (`HEAD`, `BUDDY`, `RESERVED`) and `PER_PAGE_SET` are meaningful on a
/// head descriptor only; per-page flags (`ANON_EXCLUSIVE`) are kept by
/// every page of a folio, head included.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PageFlags(u32);

impl PageFlags {
    /// No flag set.
    pub const EMPTY: PageFlags = PageFlags(0);
    /// Head of an allocated block (a folio when handed out as one).
    pub const HEAD: PageFlags = PageFlags(1 << 0);
    /// Head of a free block sitting on a buddy free list (Linux `PageBuddy`).
    pub const BUDDY: PageFlags = PageFlags(1 << 1);
    /// Not managed by the allocator: a hole, firmware, the kernel image,
    /// the memmap itself (Linux `PageReserved`).
    pub const RESERVED: PageFlags = PageFlags(1 << 2);
    /// Folio holds anonymous memory (Linux `folio_test_anon`).
    pub const ANON: PageFlags = PageFlags(1 << 3);
    /// Folio content differs from its backing (Linux `PG_dirty`).
    pub const DIRTY: PageFlags = PageFlags(1 << 4);
    /// Folio was accessed since the flag was last cleared (Linux `PG_young`).
    pub const YOUNG: PageFlags = PageFlags(1 << 5);
    /// Head only: the folio is on the allocator's deferred-split queue
    /// (Linux `folio_test_partially_mapped` with the folio on the
    /// `_deferred_list`). Set and cleared under the allocator only; see
    /// `split.rs`.
    pub const DEFERRED: PageFlags = PageFlags(1 << 6);
    /// Head only: the block is a page-table frame (Linux's `PG_table`
    /// page type), from
    /// [`BuddyAllocator::alloc_table`](crate::buddy::BuddyAllocator::alloc_table);
    /// freeing clears it. The mm audit (`audit.rs`) counts these against
    /// the tables it can reach.
    pub const PGTABLE: PageFlags = PageFlags(1 << 7);
    /// Per page: this page is mapped by exactly one process, which may
    /// reuse it on a write fault instead of copying (Linux
    /// `PageAnonExclusive`).
    pub const ANON_EXCLUSIVE: PageFlags = PageFlags(1 << 8);
    /// Head only: some tail of this block may carry a per-page flag, so
    /// freeing must clear the tails. Set by every setter of a per-page
    /// flag on a tail; without it, freeing writes the head only.
    pub const PER_PAGE_SET: PageFlags = PageFlags(1 << 9);
    /// Head only: the folio's data is visible to instruction fetches
    /// (arm64: data cache cleaned to the point of unification,
    /// instruction cache invalidated) and the kernel has not written it
    /// since (Linux `PG_dcache_clean`). Clear on a new folio; set when the
    /// folio is first mapped executable; cleared by kernel writes.
    pub const DCACHE_CLEAN: PageFlags = PageFlags(1 << 10);
    /// Head of a free block held on a CPU's page list (`pcp.rs`, Linux's
    /// per-CPU pages): free, but not on a buddy free list, so the buddy
    /// allocator never merges it. Cleared when the block is allocated or
    /// drained back to the buddy lists.
    pub const PCP: PageFlags = PageFlags(1 << 11);

    /// Flags that describe the whole folio, set by its users.
    pub const FOLIO_MASK: PageFlags =
        PageFlags(Self::ANON.0 | Self::DIRTY.0 | Self::YOUNG.0 | Self::DCACHE_CLEAN.0);
    /// Flags each page keeps for itself. Only anon-exclusive:
    /// `FolioRef::clear_pages_anon_exclusive` drops the head's
    /// [`PageFlags::PER_PAGE_SET`] after clearing it from every page,
    /// which a second per-page flag would make wrong (the assertion below
    /// stops that change from compiling unnoticed).
    pub const PER_PAGE_MASK: PageFlags = Self::ANON_EXCLUSIVE;
    /// The allocator's markers: a page carrying none of them is the tail
    /// of a free or allocated block.
    pub const MARKER_MASK: PageFlags =
        PageFlags(Self::HEAD.0 | Self::BUDDY.0 | Self::RESERVED.0 | Self::PCP.0);
    /// The markers of a free block's head: on a buddy list or a CPU's list.
    pub const FREE_MASK: PageFlags = PageFlags(Self::BUDDY.0 | Self::PCP.0);

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// True if every flag of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if any flag of `other` is set in `self`.
    #[inline]
    pub const fn intersects(self, other: PageFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// The flags set in both.
    #[inline]
    pub const fn and(self, other: PageFlags) -> PageFlags {
        PageFlags(self.0 & other.0)
    }
    /// True if no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// `self` with every flag of `other` cleared.
    #[inline]
    pub const fn without(self, other: PageFlags) -> PageFlags {
        PageFlags(self.0 & !other.0)
    }
}

impl BitOr for PageFlags {
    type Output = PageFlags;
    #[inline]
    fn bitor(self, rhs: PageFlags) -> PageFlags {
        PageFlags(self.0 | rhs.0)
    }
}

impl core::fmt::Debug for PageFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(PageFlags, &str); 12] = [
            (PageFlags::HEAD, "HEAD"),
            (PageFlags::BUDDY, "BUDDY"),
            (PageFlags::RESERVED, "RESERVED"),
            (PageFlags::ANON, "ANON"),
            (PageFlags::DIRTY, "DIRTY"),
            (PageFlags::YOUNG, "YOUNG"),
            (PageFlags::DEFERRED, "DEFERRED"),
            (PageFlags::PGTABLE, "PGTABLE"),
            (PageFlags::ANON_EXCLUSIVE, "ANON_EXCLUSIVE"),
            (PageFlags::PER_PAGE_SET, "PER_PAGE_SET"),
            (PageFlags::DCACHE_CLEAN, "DCACHE_CLEAN"),
            (PageFlags::PCP, "PCP"),
        ];
        let mut set = f.debug_set();
        for (flag, name) in NAMES {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// The descriptor of one 4 KiB frame (Linux `struct page`).
///
/// Layout (`repr(C)`, 32 bytes, 32-aligned so that finding a descriptor
/// is a shift): flags `u32` @0, order `u8` @4, 3 bytes padding, refcount
/// `u32` @8, mapcount `u32` @12, free-list next `u32` @16, prev `u32` @20,
/// private `u64` @24.
#[repr(C, align(32))]
pub struct Page {
    /// [`PageFlags`] bits.
    flags: AtomicU32,
    /// Block order; valid on the head of a free or allocated block.
    order: AtomicU8,
    _pad: [u8; 3],
    /// References to the block (Linux `_refcount`); head only. Saturates
    /// at [`crate::folio::REF_SATURATED`].
    refcount: AtomicU32,
    /// Total number of page-table entries mapping any page of the folio
    /// (Linux `_mapcount`, counted from 0 here); head only. Saturates at
    /// [`crate::folio::MAP_SATURATED`].
    mapcount: AtomicU32,
    /// Next block on the same free list, as a memmap index, or [`NONE`].
    next: AtomicU32,
    /// Previous block on the same free list, as a memmap index, or [`NONE`].
    prev: AtomicU32,
    /// Owner-defined word (Linux `page->private`): on the head of a folio
    /// queued for deferred split, the virtual page number its first page
    /// is mapped at (see `split.rs`); otherwise meaningless.
    private: AtomicU64,
}

const _: () = {
    assert!(PageFlags::PER_PAGE_MASK.0 == PageFlags::ANON_EXCLUSIVE.0);
    assert!(size_of::<Page>() <= 64);
    assert!(size_of::<Page>() == 32);
    assert!(align_of::<Page>() == 32);
};

impl Page {
    /// A reserved descriptor: not free, not allocated, links cleared.
    const fn reserved() -> Page {
        Page {
            flags: AtomicU32::new(PageFlags::RESERVED.0),
            order: AtomicU8::new(0),
            _pad: [0; 3],
            refcount: AtomicU32::new(0),
            mapcount: AtomicU32::new(0),
            next: AtomicU32::new(NONE),
            prev: AtomicU32::new(NONE),
            private: AtomicU64::new(0),
        }
    }

    /// All flags of this descriptor.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        PageFlags(self.flags.load(Relaxed))
    }
    /// True if this is the head of an allocated block.
    #[inline]
    pub fn is_head(&self) -> bool {
        self.flags().contains(PageFlags::HEAD)
    }
    /// True if this is the head of a free block (Linux `PageBuddy`).
    #[inline]
    pub fn is_buddy(&self) -> bool {
        self.flags().contains(PageFlags::BUDDY)
    }
    /// True if this heads a free block held on a CPU's page list.
    #[inline]
    pub fn is_pcp(&self) -> bool {
        self.flags().contains(PageFlags::PCP)
    }
    /// True if this heads a free block, on a buddy list or a CPU's list.
    #[inline]
    pub fn is_free_head(&self) -> bool {
        self.flags().intersects(PageFlags::FREE_MASK)
    }
    /// True if the frame is not managed by the allocator.
    #[inline]
    pub fn is_reserved(&self) -> bool {
        self.flags().contains(PageFlags::RESERVED)
    }
    /// The order of the block this page heads, if it heads a free or
    /// allocated block.
    #[inline]
    pub fn head_order(&self) -> Option<Order> {
        if self
            .flags()
            .intersects(PageFlags::HEAD | PageFlags::BUDDY | PageFlags::PCP)
        {
            Some(self.order())
        } else {
            None
        }
    }

    /// Linux `PageAnonExclusive`.
    #[inline]
    pub fn test_anon_exclusive(&self) -> bool {
        self.flags().contains(PageFlags::ANON_EXCLUSIVE)
    }
    /// Linux `ClearPageAnonExclusive`. (There is no setter on a bare
    /// `Page`: setting goes through
    /// [`crate::folio::FolioRef::set_page_anon_exclusive`], which marks the
    /// head so that freeing clears the bit.)
    #[inline]
    pub fn clear_anon_exclusive(&self) {
        self.clear_flags(PageFlags::ANON_EXCLUSIVE);
    }

    /// Sets `f`; returns the flags as they were.
    #[inline]
    pub(crate) fn set_flags(&self, f: PageFlags) -> PageFlags {
        PageFlags(self.flags.fetch_or(f.0, Relaxed))
    }
    /// Clears `f`; returns the flags as they were.
    #[inline]
    pub(crate) fn clear_flags(&self, f: PageFlags) -> PageFlags {
        PageFlags(self.flags.fetch_and(!f.0, Relaxed))
    }
    /// Replaces the whole flags word.
    #[inline]
    pub(crate) fn store_flags(&self, f: PageFlags) {
        self.flags.store(f.0, Relaxed);
    }

    /// The stored order (meaningful on heads only).
    #[inline]
    pub(crate) fn order(&self) -> Order {
        Order::of(self.order.load(Relaxed))
    }
    #[inline]
    pub(crate) fn set_order(&self, order: Order) {
        self.order.store(order.get(), Relaxed);
    }

    #[inline]
    pub(crate) fn refcount(&self) -> &AtomicU32 {
        &self.refcount
    }
    #[inline]
    pub(crate) fn mapcount(&self) -> &AtomicU32 {
        &self.mapcount
    }

    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next.load(Relaxed)
    }
    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.prev.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_next(&self, idx: u32) {
        self.next.store(idx, Relaxed);
    }
    #[inline]
    pub(crate) fn set_prev(&self, idx: u32) {
        self.prev.store(idx, Relaxed);
    }
    #[inline]
    pub(crate) fn private(&self) -> u64 {
        self.private.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_private(&self, v: u64) {
        self.private.store(v, Relaxed);
    }
}

impl core::fmt::Debug for Page {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Page")
            .field("flags", &self.flags())
            .field("order", &self.order.load(Relaxed))
            .field("refcount", &self.refcount.load(Relaxed))
            .field("mapcount", &self.mapcount.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// The descriptor array for the frames `[start_pfn, end_pfn)`.
///
/// The span is widened to whole [`Order::MAX`] blocks, so the buddy of any
/// block inside it has a descriptor too and merging never needs a bounds
/// check. Frames in the widened edges simply stay reserved.
///
/// Shared (`&Memmap`, e.g. from a `static`): folio metadata is updated
/// through it by anyone holding a reference, while one
/// [`crate::buddy::BuddyAllocator`] borrows it to allocate and free.
pub struct Memmap {
    base: *mut Page,
    start: Pfn,
    end: Pfn,
    /// Refused or saturated folio operations (see [`SafetyStats`]).
    safety: SafetyStats,
    /// Set once an allocator manages this memmap; never cleared, so two
    /// allocators can never hand out the same frames.
    claimed: AtomicBool,
    /// Tail descriptors the free path has visited to clear per-page
    /// flags (host tests check that freeing a folio without per-page state
    /// on its tails visits none).
    #[cfg(test)]
    pub(crate) tail_visits: AtomicU64,
}

// SAFETY: a Memmap is the only handle to its descriptor storage (init's
// contract), and descriptors are all atomics, so moving it to another
// context moves nothing that another context still uses unsynchronized.
unsafe impl Send for Memmap {}
// SAFETY: `&Memmap` hands out only `&Page`, and `Page` is made of atomics
// (plus immutable padding), so shared access from several contexts is sound.
unsafe impl Sync for Memmap {}

impl Memmap {
    /// The span a memmap for `[start, end)` covers: `start` rounded down
    /// and `end` rounded up to [`Order::MAX`] blocks.
    pub const fn span_for(start: Pfn, end: Pfn) -> (Pfn, Pfn) {
        (
            start.align_down(Order::MAX.pages()),
            end.align_up(Order::MAX.pages()),
        )
    }

    /// Number of descriptors a memmap for `[start, end)` holds.
    pub const fn nr_pages_for(start: Pfn, end: Pfn) -> u64 {
        let (s, e) = Self::span_for(start, end);
        if e.as_u64() > s.as_u64() {
            e.as_u64() - s.as_u64()
        } else {
            0
        }
    }

    /// Bytes of storage needed for `nr_pages` descriptors.
    pub const fn bytes_for(nr_pages: u64) -> u64 {
        nr_pages * size_of::<Page>() as u64
    }

    /// Builds the memmap for `[start, end)` (widened, see
    /// [`Memmap::span_for`]) in the storage at `base`, marking every frame
    /// reserved: the allocator gets RAM only through
    /// [`crate::buddy::BuddyAllocator::add_free_range`].
    ///
    /// Panics if `start > end` or the span has `u32::MAX` frames or more
    /// (free-list links are 32-bit indices).
    ///
    /// # Safety
    ///
    /// `base` must be aligned for [`Page`] and valid for reads and writes
    /// of [`Memmap::nr_pages_for`]`(start, end)` descriptors; the storage
    /// need not be initialized. It must stay valid, and be accessed only
    /// through the returned `Memmap`, for as long as the `Memmap` (or
    /// anything borrowed from it) is in use.
    pub unsafe fn init(base: *mut Page, start: Pfn, end: Pfn) -> Memmap {
        assert!(start <= end, "memmap span is reversed");
        let (start, end) = Self::span_for(start, end);
        let nr = end - start;
        assert!(nr < NONE as u64, "memmap span too large for 32-bit links");
        for i in 0..nr as usize {
            // SAFETY: i < nr, and the caller guarantees `base` is aligned
            // and writable for `nr` descriptors; `write` does not read or
            // drop the (possibly uninitialized) old value.
            unsafe { ptr::write(base.add(i), Page::reserved()) };
        }
        Memmap {
            base,
            start,
            end,
            safety: SafetyStats::new(),
            claimed: AtomicBool::new(false),
            #[cfg(test)]
            tail_visits: AtomicU64::new(0),
        }
    }

    /// Counters of refused and saturated folio operations: each one is a
    /// bug somewhere that was contained rather than turned into a
    /// use-after-free. The kernel reports them.
    #[inline]
    pub fn safety(&self) -> &SafetyStats {
        &self.safety
    }

    /// Marks the memmap as managed by an allocator; false if one already
    /// claimed it.
    pub(crate) fn claim(&self) -> bool {
        !self.claimed.swap(true, Relaxed)
    }

    /// First frame covered (a multiple of `Order::MAX.pages()`).
    #[inline]
    pub fn start_pfn(&self) -> Pfn {
        self.start
    }
    /// One past the last frame covered (a multiple of `Order::MAX.pages()`).
    #[inline]
    pub fn end_pfn(&self) -> Pfn {
        self.end
    }
    /// Number of descriptors.
    #[inline]
    pub fn nr_pages(&self) -> u64 {
        self.end - self.start
    }
    /// True if `pfn` has a descriptor here.
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.start <= pfn && pfn < self.end
    }

    /// All descriptors, indexed from [`Memmap::start_pfn`].
    #[inline]
    pub fn pages(&self) -> &[Page] {
        if self.start == self.end {
            return &[];
        }
        // SAFETY: init wrote `nr_pages` descriptors at `base`, which stays
        // valid and reachable only through `self` (init's contract); the
        // descriptors are atomics, so shared references to them are sound.
        unsafe { core::slice::from_raw_parts(self.base, self.nr_pages() as usize) }
    }

    /// The descriptors at indices `range` (panics outside the array):
    /// a slice of those only, since a reference to the whole array costs
    /// Miri a retag of every descriptor (see [`Memmap::at`]).
    #[inline]
    pub(crate) fn slice(&self, range: core::ops::Range<usize>) -> &[Page] {
        assert!(
            range.start <= range.end && range.end as u64 <= self.nr_pages(),
            "descriptors {range:?} outside the memmap"
        );
        if range.start == range.end {
            return &[];
        }
        // SAFETY: the range lies inside the `nr_pages` descriptors init
        // wrote at `base` (checked above), which stay valid and reachable
        // only through `self`; descriptors are atomics, so shared
        // references to them are sound.
        unsafe { core::slice::from_raw_parts(self.base.add(range.start), range.len()) }
    }

    /// The descriptor of `pfn`. Panics if `pfn` is outside the memmap.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &Page {
        assert!(self.contains(pfn), "{pfn:?} outside the memmap");
        self.at((pfn - self.start) as u32)
    }

    /// The descriptor of `pfn`, or `None` if it is outside the memmap.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Option<&Page> {
        if self.contains(pfn) {
            Some(self.at((pfn - self.start) as u32))
        } else {
            None
        }
    }

    /// Index of `pfn` in the array; the allocator's link currency.
    /// Because `start` is `Order::MAX`-aligned, an index has the same
    /// alignment as its pfn, so buddy arithmetic works on indices.
    #[inline]
    pub(crate) fn index(&self, pfn: Pfn) -> u32 {
        debug_assert!(self.contains(pfn));
        (pfn - self.start) as u32
    }
    /// The frame at array index `idx`.
    #[inline]
    pub(crate) fn pfn_at(&self, idx: u32) -> Pfn {
        self.start + idx as u64
    }
    /// The descriptor at array index `idx`.
    #[inline]
    pub(crate) fn at(&self, idx: u32) -> &Page {
        // One descriptor, not `&self.pages()[idx]`: a reference to the whole
        // array on every lookup costs Miri a retag of every descriptor,
        // which made the host tests crawl under it.
        assert!(
            u64::from(idx) < self.nr_pages(),
            "index {idx} outside the memmap"
        );
        // SAFETY: idx < nr_pages (checked above), and init wrote `nr_pages`
        // descriptors at `base`, which stays valid and reachable only
        // through `self` (init's contract); descriptors are atomics, so a
        // shared reference to one is sound.
        unsafe { &*self.base.add(idx as usize) }
    }
}

impl core::fmt::Debug for Memmap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Memmap")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// Every memmap [`test_memmap`] made. They are leaked on purpose (tests hold `&'static` borrows) and kept
/// reachable here, so that Miri's leak check, on for everything else,
/// does not report them.
#[cfg(test)]
static TEST_MEMMAPS: std::sync::Mutex<Vec<&'static Memmap>> = std::sync::Mutex::new(Vec::new());

/// A leaked, host-allocated memmap for tests (it lives forever).
#[cfg(test)]
pub(crate) fn test_memmap(start: Pfn, end: Pfn) -> &'static Memmap {
    let nr = Memmap::nr_pages_for(start, end) as usize;
    let storage: &'static mut [core::mem::MaybeUninit<Page>] = Box::leak(Box::new_uninit_slice(nr));
    // SAFETY: the leaked slice is aligned for Page, holds `nr` slots, lives
    // forever and is reachable only through the returned Memmap.
    let mm: &'static Memmap = Box::leak(Box::new(unsafe {
        Memmap::init(storage.as_mut_ptr().cast(), start, end)
    }));
    TEST_MEMMAPS.lock().unwrap().push(mm);
    mm
}

mod safety;
#[cfg(test)]
mod tests;
