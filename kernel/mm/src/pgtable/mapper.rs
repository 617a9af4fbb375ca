//! A 4-level page-table builder and walker, generic over the entry format.
//!
//! The kernel uses it at boot to build its own tables (linear map of RAM,
//! kernel image with per-section W^X, device MMIO); host tests use it on an
//! arena. Table memory is reached only through the [`LinearMap`].
//!
//! [`PageTable::map_range`] is not a writer of its own: it finds (or
//! creates) tables with the same walker user space uses, writes pages
//! through a [`PteCursor`](super::PteCursor)'s `set_ptes` and blocks
//! through the format's `table_set_blocks`, so the format alone decides
//! the arm64 contiguous hint for kernel and user mappings alike. It only
//! ever fills *empty* entries, never rewrites a valid one, so the arm64
//! break-before-make rule never arises here, and it does no TLB
//! maintenance: making new entries visible to the walker (DSB/ISB on
//! arm64) and flushing are the caller's job.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::kind::{Attrs, PteKind};
use super::level::{ENTRIES, Level};
use super::{FoldEvent, FoldPolicy, Pte, PteEnv, PteFormat};
use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::phys::LinearMap;

/// A source of frames for new page tables.
///
/// # Safety
///
/// Every frame returned by [`TableAlloc::alloc_table`] must be RAM that the
/// [`LinearMap`] of the page table it is used with maps readable and
/// writable, must be used for nothing else from then on (ownership passes
/// to the page table), and should be 4 KiB aligned (a misaligned frame is
/// refused with [`MapError::BadTableFrame`], never written). Its contents
/// do not matter: the mapper zeroes a table (through
/// [`TableAlloc::zero_table`]) before linking it.
pub unsafe trait TableAlloc {
    /// One 4 KiB frame for a page table, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// Zeroes `table`, a frame this allocator just handed out, whose 4 KiB
    /// the linear map shows at `ptr`. The default writes zero bytes; an
    /// allocator with a faster way (the kernel's wide vector stores: fork
    /// zeroes one child table per 2 MiB it copies) overrides it.
    ///
    /// # Safety
    ///
    /// `table` came from [`TableAlloc::alloc_table`] and nothing else uses
    /// or sees it yet; `ptr` is its page-aligned, writable linear-map
    /// address.
    unsafe fn zero_table(&mut self, table: PhysAddr, ptr: *mut u8) {
        let _ = table;
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(ptr, 0, PAGE_SIZE as usize) };
    }

    /// Called while spinning for a lock of a tree this allocator serves
    /// ([`PageTable::lock_pte`]). The kernel runs the cross-CPU calls
    /// posted to this CPU there, since the holder may be waiting for this
    /// CPU to flush its TLB.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// How [`PageTable::map_range`] may shape the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapOptions {
    /// The largest leaf the mapper may write where VA, PA and the remaining
    /// size allow: `L3` for 4 KiB pages only, `L2` for 2 MiB blocks too,
    /// `L1` (or `L0`, which no format can hold as a leaf) for 1 GiB blocks
    /// too. x86 CPUs without `pdpe1gb` need `L2` at most.
    pub largest_leaf: Level,
    /// Let a format that folds runs of entries into one TLB entry (arm64's
    /// contiguous hint) fold this mapping's aligned runs of pages or 2 MiB
    /// blocks. Only for mappings changed as a whole, never a page at a
    /// time. Ignored by formats that cannot fold.
    pub fold: bool,
}

impl MapOptions {
    /// 4 KiB pages only, never folded: for mappings whose pieces may later
    /// be changed one page at a time (kernel image sections).
    pub const PAGES: MapOptions = MapOptions {
        largest_leaf: Level::L3,
        fold: false,
    };
    /// The fewest TLB entries: 1 GiB and 2 MiB blocks and folded runs
    /// wherever they fit (the linear map of RAM).
    pub const LARGEST: MapOptions = MapOptions {
        largest_leaf: Level::L1,
        fold: true,
    };
    /// [`LARGEST`](Self::LARGEST) without 1 GiB blocks: the linear map on a
    /// CPU whose page walker has none (x86 without `pdpe1gb`).
    pub const LARGEST_NO_GIB: MapOptions = MapOptions {
        largest_leaf: Level::L2,
        fold: true,
    };

    /// True if these options let a leaf be written at `level` (the format
    /// may still refuse it, as every format does at `L0`).
    #[inline]
    pub const fn allows_leaf_at(self, level: Level) -> bool {
        level.get() >= self.largest_leaf.get()
    }
}

impl Default for MapOptions {
    /// [`MapOptions::PAGES`]: the most conservative shape.
    fn default() -> Self {
        Self::PAGES
    }
}

/// Why [`PageTable::map_range`] (or [`PageTable::create`]) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The [`TableAlloc`] ran out of frames.
    OutOfMemory,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// VA, PA or size is not a multiple of 4 KiB (or the linear-map offset
    /// is not page aligned).
    Misaligned,
    /// The VA range is not canonical (or wraps, or crosses the hole between
    /// the halves), or the PA range exceeds the format's address width.
    OutOfRange,
    /// The [`TableAlloc`] returned a frame that is not 4 KiB aligned.
    BadTableFrame,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapError::OutOfMemory => "out of page-table frames",
            MapError::AlreadyMapped => "range already mapped",
            MapError::Misaligned => "address or size not page aligned",
            MapError::OutOfRange => "address range not representable",
            MapError::BadTableFrame => "table allocator returned a misaligned frame",
        })
    }
}

impl core::error::Error for MapError {}

/// Where a virtual address leads: the result of [`PageTable::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the byte at the translated VA.
    pub pa: PhysAddr,
    /// The leaf's attributes.
    pub attrs: Attrs,
    /// The level of the leaf: `L3` page, `L2` 2 MiB block, `L1` 1 GiB block.
    pub level: Level,
}

/// The raw leaf entry that maps an address, as [`PageTable::raw_leaf`]
/// finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLeaf {
    /// The entry exactly as stored (a format's hint bits included).
    pub pte: Pte,
    /// The level it sits at: L3 for a page, L1 or L2 for a block.
    pub level: Level,
}

/// Locks of a tree's last-level tables ([`PageTable::lock_pte`]).
pub(super) const PTE_LOCKS: usize = 64;
const _: () = assert!(PTE_LOCKS.is_power_of_two() && PTE_LOCKS > 1);

/// A 4-level page table of format `F`, rooted at one 4 KiB frame.
///
/// A handle, not an owner: dropping it frees nothing.
///
/// Invariant: the root and every table reachable from it are 4 KiB frames
/// of RAM mapped readable and writable by `map`, touched only by this
/// handle (and the hardware walker).
pub struct PageTable<F: PteFormat> {
    root: PhysAddr,
    map: LinearMap,
    /// Tables below the root this handle linked and has not freed (Linux
    /// `mm_pgtables_bytes` in pages; the OOM killer charges them).
    /// Atomic only so [`PageTable::new_table`] can count through `&self`
    /// while a caller holds an entry of the tree.
    tables: AtomicU64,
    /// Held while a table is linked through a shared borrow (Linux's
    /// `page_table_lock`, which guards the upper levels).
    pub(super) ptl: AtomicBool,
    /// The last-level tables' locks, by a hash of the 2 MiB span a
    /// table maps ([`PageTable::lock_pte`]; Linux's split PTE locks).
    pub(super) pte_locks: [AtomicBool; PTE_LOCKS],
    _format: PhantomData<fn() -> F>,
}

impl<F: PteFormat> fmt::Debug for PageTable<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageTable")
            .field("format", &F::NAME)
            .field("root", &self.root)
            .finish()
    }
}

/// The [`PteEnv`] of one [`PageTable::map_range`] call: runs may be
/// folded if the options allow, within the request's own frames only,
/// and nothing is ever unfolded (every entry written was empty).
struct MapRun {
    fold: bool,
    pa: core::ops::Range<u64>,
}

impl PteEnv for MapRun {
    fn flush_now(&self, start: VirtAddr, end: VirtAddr) {
        panic!("map_range: no flush can be needed ({start:?}..{end:?})");
    }
    fn one_folio(&self, first: Pfn, nr: u64) -> bool {
        let (a, b) = (first.phys().as_u64(), (first + nr).phys().as_u64());
        self.pa.start <= a && b <= self.pa.end
    }
    fn fold_policy(&self) -> FoldPolicy {
        FoldPolicy {
            fold: self.fold,
            fork_per_pte: false,
        }
    }
    fn note(&self, _: FoldEvent, _: u64) {}
}

/// The entries of the kernel's root table that every user root shares
/// (x86-64: slots 256..512, the upper half, whose tables are allocated at
/// boot and never freed; arm64 needs none, its kernel lives in TTBR1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelHalf {
    root: PhysAddr,
    slots: core::ops::Range<usize>,
}

impl KernelHalf {
    /// The slots `slots` of the root table at `root`.
    ///
    /// # Safety
    ///
    /// `root` must be a live root table in the linear map of every
    /// [`PageTable`] this is shared into, `slots` inside `0..ENTRIES`, and
    /// the tables its entries point to must never be freed (they are
    /// copied as they are into user roots, which outlive any borrow).
    pub unsafe fn new(root: PhysAddr, slots: core::ops::Range<usize>) -> KernelHalf {
        assert!(
            slots.end <= ENTRIES,
            "kernel slots {slots:?} past the table"
        );
        KernelHalf { root, slots }
    }

    /// The first virtual address the shared slots translate.
    pub fn first_va(&self) -> u64 {
        (self.slots.start as u64) << Level::L0.shift()
    }
}

impl<F: PteFormat> PageTable<F> {
    /// Copies the shared kernel entries `k` into this tree's root (a new
    /// user root starts with the kernel's upper half).
    pub fn share_kernel_half(&mut self, k: &KernelHalf) {
        for i in k.slots.clone() {
            // SAFETY: both roots are table frames in the linear map
            // (KernelHalf::new's contract and this tree's invariant); `i`
            // is inside the table. The entries are copied as they are: the
            // tables they point to are shared and never freed.
            unsafe {
                let src = self.map.ptr::<u64>(k.root).add(i).read_volatile();
                self.map.ptr::<u64>(self.root).add(i).write_volatile(src);
            }
        }
    }

    /// A handle on an existing tree rooted at `root`.
    ///
    /// # Safety
    ///
    /// `root` must be a 4 KiB aligned frame holding a valid table of format
    /// `F`, every table reachable from it must be RAM that `map` maps
    /// readable and writable at a page-aligned offset, and no other code may modify the tree while
    /// this handle is used.
    pub unsafe fn new(root: PhysAddr, map: LinearMap) -> Self {
        Self {
            root,
            map,
            tables: AtomicU64::new(0),
            ptl: AtomicBool::new(false),
            pte_locks: [const { AtomicBool::new(false) }; PTE_LOCKS],
            _format: PhantomData,
        }
    }

    /// A new, empty tree whose root comes from `alloc`.
    pub fn create(
        alloc: &mut (impl TableAlloc + ?Sized),
        map: LinearMap,
    ) -> Result<Self, MapError> {
        // A page-aligned offset keeps every entry pointer 8-byte aligned.
        if !map.offset().is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let mut pt = Self {
            root: PhysAddr::new(0),
            map,
            tables: AtomicU64::new(0),
            ptl: AtomicBool::new(false),
            pte_locks: [const { AtomicBool::new(false) }; PTE_LOCKS],
            _format: PhantomData,
        };
        pt.root = pt.new_table(alloc)?;
        // The root is not counted (Linux leaves the pgd out too).
        pt.tables = AtomicU64::new(0);
        Ok(pt)
    }

    /// Tables below the root that this handle linked and has not freed:
    /// every table of a tree it created (a handle made by
    /// [`PageTable::new`] starts at 0). O(1): counted as tables come and
    /// go, which is what Linux's `VmPTE` and the OOM killer read.
    pub fn table_pages(&self) -> u64 {
        self.tables.load(Ordering::Relaxed)
    }

    /// Notes that a table below the root was unlinked for freeing.
    pub(super) fn note_table_freed(&mut self) {
        let n = self.tables.get_mut();
        *n = n.saturating_sub(1);
    }

    /// Physical address of the root table (for TTBRn_EL1 or CR3).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The linear map through which the tables are accessed.
    pub fn linear_map(&self) -> LinearMap {
        self.map
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with `attrs`.
    ///
    /// Uses a 1 GiB or 2 MiB block wherever VA and PA are both aligned to
    /// it, the rest of the range covers it and `opts.largest_leaf` permits
    /// it, 4 KiB pages elsewhere; where an empty table already sits under a
    /// would-be block, maps through it with smaller entries instead.
    ///
    /// All or nothing for leaves: the range is first checked and every
    /// missing table allocated, and only then are leaves written. On error
    /// no leaf has changed; tables allocated before an
    /// [`OutOfMemory`](MapError::OutOfMemory) or
    /// [`AlreadyMapped`](MapError::AlreadyMapped) stay linked, empty.
    pub fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Attrs,
        alloc: &mut (impl TableAlloc + ?Sized),
        opts: MapOptions,
    ) -> Result<(), MapError> {
        if !va.is_aligned(PAGE_SIZE) || !pa.is_aligned(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Misaligned);
        }
        if size == 0 {
            return Ok(());
        }
        let last_va = va
            .as_u64()
            .checked_add(size - 1)
            .ok_or(MapError::OutOfRange)?;
        let last_pa = pa
            .as_u64()
            .checked_add(size - 1)
            .ok_or(MapError::OutOfRange)?;
        if !F::va_in_range(va)
            || !F::va_in_range(VirtAddr::new(last_va))
            || (va.as_u64() ^ last_va) >> 63 != 0
            || last_pa >> F::PA_BITS != 0
        {
            return Err(MapError::OutOfRange);
        }
        // Pass 1 creates tables and finds overlaps but writes no leaf, so a
        // failure leaves at most empty tables, which translate nothing.
        self.map_pass(va, pa, size, attrs, opts, alloc, false)?;
        // Pass 2 makes the same decisions over the same entries: every
        // table it needs exists and no entry it writes is valid.
        self.map_pass(va, pa, size, attrs, opts, alloc, true)
    }

    /// One pass of [`PageTable::map_range`] over the range, a piece at a
    /// time: the largest block the options allow where VA and PA are
    /// aligned to it, the rest covers it and its entry is empty (a run of
    /// such blocks in one table at once); otherwise the pages up to the
    /// next 2 MiB boundary, through a cursor and the format's `set_ptes`,
    /// as user pages are written. `commit == false` only creates tables
    /// and finds overlaps.
    #[allow(clippy::too_many_arguments)]
    fn map_pass(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Attrs,
        opts: MapOptions,
        alloc: &mut (impl TableAlloc + ?Sized),
        commit: bool,
    ) -> Result<(), MapError> {
        let run = MapRun {
            fold: opts.fold,
            pa: pa.as_u64()..pa.as_u64() + size,
        };
        let mut done = 0;
        'pieces: while done < size {
            let v = va.as_u64().wrapping_add(done);
            let p = pa.as_u64() + done;
            let left = size - done;
            for level in [Level::L1, Level::L2] {
                let span = level.size();
                if !level.can_be_leaf()
                    || !opts.allows_leaf_at(level)
                    || v & (span - 1) != 0
                    || p & (span - 1) != 0
                    || left < span
                {
                    continue;
                }
                let slot = self.slot_alloc(VirtAddr::new(v), level, alloc)?;
                let table = self.table_entries(slot.table);
                match F::decode(
                    Pte::from_bits(table[slot.index].load(Ordering::Relaxed)),
                    level,
                ) {
                    PteKind::Leaf { .. } => return Err(MapError::AlreadyMapped),
                    // An (empty) table already here: map through it.
                    PteKind::Table(_) => continue,
                    PteKind::Absent => {}
                }
                // As many empty entries of this table as the range covers.
                let most = ((left / span) as usize).min(ENTRIES - slot.index);
                let nr = (slot.index..slot.index + most)
                    .take_while(|&i| {
                        matches!(
                            F::decode(Pte::from_bits(table[i].load(Ordering::Relaxed)), level),
                            PteKind::Absent
                        )
                    })
                    .count();
                if commit {
                    let leaf = PteKind::Leaf {
                        pa: PhysAddr::new(p),
                        attrs,
                    };
                    let first = F::encode(leaf, level);
                    F::table_set_blocks(table, slot.index, first, nr, level, opts.fold);
                }
                done += nr as u64 * span;
                continue 'pieces;
            }
            let span = Level::L2.size();
            let n = (span - (v & (span - 1))).min(left);
            let pages = (n / PAGE_SIZE) as usize;
            let mut cur = self.pte_cursor_pages(VirtAddr::new(v), pages, alloc)?;
            if (0..cur.len()).any(|i| F::pte_present(cur.raw(i))) {
                return Err(MapError::AlreadyMapped);
            }
            if commit {
                let leaf = PteKind::Leaf {
                    pa: PhysAddr::new(p),
                    attrs,
                };
                let len = cur.len();
                cur.set_ptes(0, F::encode(leaf, Level::L3), len, &run);
            }
            done += n;
        }
        Ok(())
    }

    /// Where `va` leads, or `None` if it is unmapped or not canonical.
    pub fn translate(&self, va: VirtAddr) -> Option<Translation> {
        let RawLeaf { pte, level } = self.raw_leaf(va)?;
        match F::decode(pte, level) {
            PteKind::Leaf { pa, attrs } => Some(Translation {
                pa: pa + (va.as_u64() & (level.size() - 1)),
                attrs,
                level,
            }),
            PteKind::Absent | PteKind::Table(_) => None,
        }
    }

    /// The raw leaf entry that maps `va`, and its level.
    pub fn raw_leaf(&self, va: VirtAddr) -> Option<RawLeaf> {
        if !F::va_in_range(va) {
            return None;
        }
        let mut table = self.root;
        for level in Level::ALL {
            let raw = self.read(table, level.index_of(va));
            match F::decode(raw, level) {
                PteKind::Absent => return None,
                PteKind::Table(next) => table = next,
                PteKind::Leaf { .. } => return Some(RawLeaf { pte: raw, level }),
            }
        }
        None
    }

    /// Calls `f` for every table in the tree (root first, depth first).
    pub fn for_each_table(&self, mut f: impl FnMut(PhysAddr, Level)) {
        self.visit_tables(self.root, Level::L0, &mut f);
    }

    /// Number of tables in the tree, the root included.
    pub fn count_tables(&self) -> usize {
        let mut n = 0;
        self.for_each_table(|_, _| n += 1);
        n
    }

    /// Calls `f` for every leaf in ascending table order (lower half before
    /// upper half) with the first VA it maps.
    pub fn for_each_leaf(&self, mut f: impl FnMut(VirtAddr, Translation)) {
        self.visit_leaves(self.root, Level::L0, 0, None, &mut f);
    }

    /// Calls `f` for every leaf below `end` in ascending order, with the VA
    /// the table indices spell (bits 47..0, never sign-extended): the view
    /// of a user tree, whose half reaches 2^48 on arm64 (TTBR0) and 2^47
    /// on x86-64.
    pub fn for_each_leaf_below(&self, end: VirtAddr, mut f: impl FnMut(VirtAddr, Translation)) {
        self.visit_leaves(self.root, Level::L0, 0, Some(end.as_u64()), &mut f);
    }

    fn visit_tables(&self, table: PhysAddr, level: Level, f: &mut dyn FnMut(PhysAddr, Level)) {
        f(table, level);
        let Some(next) = level.next() else { return };
        for idx in 0..ENTRIES {
            if let PteKind::Table(t) = F::decode(self.read(table, idx), level) {
                self.visit_tables(t, next, f);
            }
        }
    }

    /// `below`: only VAs under it, spelled raw; `None`: all, with bit 47
    /// sign-extended (both halves of one tree).
    fn visit_leaves(
        &self,
        table: PhysAddr,
        level: Level,
        base: u64,
        below: Option<u64>,
        f: &mut dyn FnMut(VirtAddr, Translation),
    ) {
        for idx in 0..ENTRIES {
            let va = base | (idx as u64) << level.shift();
            if below.is_some_and(|end| va >= end) {
                return;
            }
            match (F::decode(self.read(table, idx), level), level.next()) {
                (PteKind::Leaf { pa, attrs }, _) => {
                    let va = match below {
                        Some(_) => va,
                        // Bit 47 selects the half: sign-extend it.
                        None => (((va << 16) as i64) >> 16) as u64,
                    };
                    f(VirtAddr::new(va), Translation { pa, attrs, level });
                }
                (PteKind::Table(t), Some(next)) => self.visit_leaves(t, next, va, below, f),
                _ => {}
            }
        }
    }

    /// A zeroed table frame from `alloc`, not yet linked: every new table
    /// of the tree comes from here.
    pub(super) fn new_table(
        &self,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PhysAddr, MapError> {
        let t = alloc.alloc_table().ok_or(MapError::OutOfMemory)?;
        if !t.is_aligned(PAGE_SIZE) {
            return Err(MapError::BadTableFrame);
        }
        // SAFETY: `TableAlloc` hands over an unused, page-aligned (checked
        // above) frame of RAM mapped writable by the linear map; nobody
        // else can see it before the caller links it.
        unsafe { alloc.zero_table(t, self.map.ptr::<u8>(t)) };
        self.tables.fetch_add(1, Ordering::Relaxed);
        Ok(t)
    }

    /// The 512 entries of `table`, a table of this tree.
    pub(super) fn table_entries(&self, table: PhysAddr) -> &[AtomicU64] {
        assert!(table.is_aligned(PAGE_SIZE));
        let p = self.map.ptr::<AtomicU64>(table);
        // SAFETY: by the type invariant `table` is a page-aligned table
        // frame of this tree (checked aligned above), mapped readable and
        // writable by `map` at a page-aligned offset: 512 valid, 8-aligned
        // u64s, only ever accessed atomically (here and by the walker).
        unsafe { core::slice::from_raw_parts(p, ENTRIES) }
    }

    fn entry(&self, table: PhysAddr, idx: usize) -> &AtomicU64 {
        debug_assert!(idx < ENTRIES && table.is_aligned(PAGE_SIZE));
        let p = self.map.ptr::<AtomicU64>(table).wrapping_add(idx % ENTRIES);
        // SAFETY: by the type invariant `table` is a page-aligned table frame
        // of this tree, mapped readable and writable by `map` at a
        // page-aligned offset, and `idx % ENTRIES` keeps the pointer inside
        // it and 8-byte aligned. Entries are only accessed atomically (here
        // and by the hardware walker), so a shared reference is sound.
        unsafe { &*p }
    }

    fn read(&self, table: PhysAddr, idx: usize) -> Pte {
        Pte::from_bits(self.entry(table, idx).load(Ordering::Relaxed))
    }
}
