//! A 4-level page-table builder and walker, generic over the entry format.
//!
//! The kernel uses it at boot to build its own tables (linear map of RAM,
//! kernel image with per-section W^X, device MMIO); host tests use it on an
//! arena. Table memory is reached only through the [`LinearMap`].
//!
//! It only ever fills *empty* entries, never rewrites a valid one, so the
//! arm64 break-before-make rule never arises here, and it does no TLB
//! maintenance: making new entries visible to the walker (DSB/ISB on arm64)
//! and flushing are the caller's job.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use super::PteFormat;
use super::kind::{Attrs, PteKind};
use super::level::{ENTRIES, Level};
use crate::addr::{PAGE_SIZE, PhysAddr, VirtAddr};
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
}

/// How [`PageTable::map_range`] may shape the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapOptions {
    /// The largest leaf the mapper may write where VA, PA and the remaining
    /// size allow: `L3` for 4 KiB pages only, `L2` for 2 MiB blocks too,
    /// `L1` (or `L0`, which no format can hold as a leaf) for 1 GiB blocks
    /// too. x86 CPUs without `pdpe1gb` need `L2` at most.
    pub largest_leaf: Level,
    /// Set the contiguous hint (arm64) on aligned runs of
    /// [`PteFormat::CONT_ENTRIES`] pages or 2 MiB blocks written by the same
    /// call. Ignored by formats without the hint.
    pub allow_cont: bool,
}

impl MapOptions {
    /// 4 KiB pages only, no contiguous hint: for mappings whose pieces may
    /// later be changed one page at a time (kernel image sections).
    pub const PAGES: MapOptions = MapOptions {
        largest_leaf: Level::L3,
        allow_cont: false,
    };
    /// The fewest TLB entries: 1 GiB and 2 MiB blocks and contiguous runs
    /// wherever they fit (the linear map of RAM).
    pub const LARGEST: MapOptions = MapOptions {
        largest_leaf: Level::L1,
        allow_cont: true,
    };
    /// [`LARGEST`](Self::LARGEST) without 1 GiB blocks: the linear map on a
    /// CPU whose page walker has none (x86 without `pdpe1gb`).
    pub const LARGEST_NO_GIB: MapOptions = MapOptions {
        largest_leaf: Level::L2,
        allow_cont: true,
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
    /// The attributes cannot be requested here: `cont` is decided by
    /// [`MapOptions::allow_cont`], not by the caller.
    InvalidAttrs,
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
            MapError::InvalidAttrs => "attributes not allowed here",
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

/// What one `map_range` call asks for, passed down the recursion.
struct Request {
    attrs: Attrs,
    opts: MapOptions,
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
            _format: PhantomData,
        };
        pt.root = pt.new_table(alloc)?;
        Ok(pt)
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
        let probe = PteKind::Leaf {
            pa: PhysAddr::new(0),
            attrs,
        };
        if attrs.cont || F::check(probe, Level::L3).is_err() {
            return Err(MapError::InvalidAttrs);
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

        let req = Request { attrs, opts };
        let (va, pa) = (va.as_u64(), pa.as_u64());
        // Pass 1 creates tables and finds overlaps but writes no leaf, so a
        // failure leaves at most empty tables, which translate nothing.
        self.fill(self.root, Level::L0, va, pa, size, &req, alloc, false)?;
        // Pass 2 makes the same decisions over the same entries: every
        // table it needs exists and no entry it writes is valid.
        self.fill(self.root, Level::L0, va, pa, size, &req, alloc, true)
    }

    /// Where `va` leads, or `None` if it is unmapped or not canonical.
    pub fn translate(&self, va: VirtAddr) -> Option<Translation> {
        let (raw, level) = self.raw_leaf(va)?;
        match F::decode(raw, level) {
            PteKind::Leaf { pa, attrs } => Some(Translation {
                pa: pa + (va.as_u64() & (level.size() - 1)),
                attrs,
                level,
            }),
            PteKind::Absent | PteKind::Table(_) => None,
        }
    }

    /// The raw leaf entry that maps `va`, and its level.
    pub fn raw_leaf(&self, va: VirtAddr) -> Option<(u64, Level)> {
        if !F::va_in_range(va) {
            return None;
        }
        let mut table = self.root;
        for level in Level::ALL {
            let raw = self.read(table, level.index_of(va));
            match F::decode(raw, level) {
                PteKind::Absent => return None,
                PteKind::Table(next) => table = next,
                PteKind::Leaf { .. } => return Some((raw, level)),
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
        self.visit_leaves(self.root, Level::L0, 0, &mut f);
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

    fn visit_leaves(
        &self,
        table: PhysAddr,
        level: Level,
        base: u64,
        f: &mut dyn FnMut(VirtAddr, Translation),
    ) {
        for idx in 0..ENTRIES {
            let va = base | (idx as u64) << level.shift();
            match (F::decode(self.read(table, idx), level), level.next()) {
                (PteKind::Leaf { pa, attrs }, _) => {
                    // Bit 47 selects the half: sign-extend it.
                    let va = VirtAddr::new((((va << 16) as i64) >> 16) as u64);
                    f(va, Translation { pa, attrs, level });
                }
                (PteKind::Table(t), Some(next)) => self.visit_leaves(t, next, va, f),
                _ => {}
            }
        }
    }

    /// Maps `[va, va + size)`, all of it inside the table at `level`.
    /// With `commit == false` only tables are created and overlaps found.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        table: PhysAddr,
        level: Level,
        mut va: u64,
        mut pa: u64,
        size: u64,
        req: &Request,
        alloc: &mut (impl TableAlloc + ?Sized),
        commit: bool,
    ) -> Result<(), MapError> {
        let span = level.size();
        let mut left = size;
        while left > 0 {
            let idx = level.index_of(VirtAddr::new(va));
            // `chunk == span` also means VA is span-aligned.
            let chunk = (span - (va & (span - 1))).min(left);
            let leaf_here = level.can_be_leaf()
                && req.opts.allows_leaf_at(level)
                && chunk == span
                && pa & (span - 1) == 0;
            let mut step = chunk;
            match F::decode(self.read(table, idx), level) {
                PteKind::Leaf { .. } => return Err(MapError::AlreadyMapped),
                PteKind::Absent if leaf_here => {
                    if commit {
                        let n = self.cont_run(table, level, idx, va, pa, left, req);
                        let attrs = Attrs {
                            cont: n > 1,
                            ..req.attrs
                        };
                        for i in 0..n {
                            let leaf = PteKind::Leaf {
                                pa: PhysAddr::new(pa + i as u64 * span),
                                attrs,
                            };
                            self.write(table, idx + i, F::encode(leaf, level), Ordering::Relaxed);
                        }
                        step = n as u64 * span;
                    }
                }
                PteKind::Absent => {
                    // Not a leaf here, so not L3 (4 KiB pieces always fit).
                    let next = level.next().ok_or(MapError::Misaligned)?;
                    let t = self.new_table(alloc)?;
                    // Release: the zeroes must be visible before the link.
                    self.write(
                        table,
                        idx,
                        F::encode(PteKind::Table(t), level),
                        Ordering::Release,
                    );
                    self.fill(t, next, va, pa, chunk, req, alloc, commit)?;
                }
                PteKind::Table(t) => {
                    // Formats decode tables only at L0-L2.
                    let next = level.next().ok_or(MapError::AlreadyMapped)?;
                    self.fill(t, next, va, pa, chunk, req, alloc, commit)?;
                }
            }
            va = va.wrapping_add(step);
            pa += step;
            left -= step;
        }
        Ok(())
    }

    /// How many leaves to write at once from `idx`: a whole contiguous run
    /// if the hint is allowed and the run is aligned in VA and PA, lies in
    /// the range and is entirely empty; 1 otherwise.
    #[allow(clippy::too_many_arguments)]
    fn cont_run(
        &self,
        table: PhysAddr,
        level: Level,
        idx: usize,
        va: u64,
        pa: u64,
        left: u64,
        req: &Request,
    ) -> usize {
        let n = F::CONT_ENTRIES;
        // L1 runs (16 GiB) buy nothing and are left out.
        if n <= 1 || !req.opts.allow_cont || !matches!(level, Level::L2 | Level::L3) {
            return 1;
        }
        let run = level.size() * n as u64;
        if va & (run - 1) != 0 || pa & (run - 1) != 0 || left < run {
            return 1;
        }
        // VA alignment puts the run inside this table; an existing (empty)
        // table under one entry would break the run.
        let all_empty = (idx..idx + n)
            .all(|i| matches!(F::decode(self.read(table, i), level), PteKind::Absent));
        if all_empty { n } else { 1 }
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
        Ok(t)
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

    fn read(&self, table: PhysAddr, idx: usize) -> u64 {
        self.entry(table, idx).load(Ordering::Relaxed)
    }

    fn write(&mut self, table: PhysAddr, idx: usize, raw: u64, order: Ordering) {
        // A single 64-bit store: a concurrent walker sees old or new, never
        // a torn entry.
        self.entry(table, idx).store(raw, order);
    }
}
