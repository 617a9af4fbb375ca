//! Bounded memory under hostile ranges: munmap and mprotect over thousands
//! of page tables take a few KiB of kernel heap whatever the range holds
//! (measured by a counting allocator), emptied tables are freed in
//! bounded batches each after a flush, and an environment that runs out
//! of frames partway through fork or populate leaves the address space
//! consistent and leaks nothing. The page-table count the OOM killer
//! reads is checked against a walk of the tree.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use folium_mm::aspace::{Access, AddressSpace, FaultError};
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::memmap::Memmap;
use folium_mm::mmu_gather::TABLE_BATCH;
use folium_mm::pgtable::{FoldEvent, FoldPolicy, PteFormat, TableAlloc};
use folium_mm::phys::LinearMap;
use folium_mm::thp::ThpPolicy;
use folium_mm::tlb::{Asid, TlbOps};
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{Order, Pfn, PhysAddr, VirtAddr};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, USER_END, read_u64, va, write_u64};

// ---------------------------------------------------------------------
// A global allocator that keeps, per thread, the bytes live and the peak.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// thread-local counters never allocate (const-initialised, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        account(new as isize - layout.size() as isize);
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most heap bytes this thread held at once while `f` ran, above what
/// it held before.
fn peak_heap_during<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

// ---------------------------------------------------------------------
// An environment around HostEnv that logs flushes and table frees and can
// run out of frames.

struct Probe {
    env: HostEnv,
    /// Frames (tables and folios) still allowed; `None`: no limit.
    budget: Option<u64>,
    flushes: Cell<u64>,
    /// `flushes` when tables were last freed.
    flushes_at_free: u64,
    /// Sizes of the table batches freed.
    table_batches: Vec<usize>,
    /// Tables are freed from a live space (munmap): each batch needs a
    /// flush after the previous one. (Teardown flushes once, first: the
    /// space is installed nowhere, so nothing walks it afterwards.)
    live: bool,
}

impl Probe {
    fn new(frames: u64) -> Probe {
        Probe {
            env: HostEnv::new(frames),
            budget: None,
            flushes: Cell::new(0),
            flushes_at_free: 0,
            table_batches: Vec::new(),
            live: false,
        }
    }

    fn take_frame(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    /// Tables may be freed only after a flush that followed the last free.
    fn check_flushed_before_free(&mut self, n: usize) {
        assert!(
            self.flushes.get() > self.flushes_at_free || !self.live,
            "{n} tables freed without a flush since the last tables were"
        );
        self.flushes_at_free = self.flushes.get();
        self.table_batches.push(n);
    }

    fn space<F: PteFormat>(&mut self) -> AddressSpace<F> {
        let mut a = AddressSpace::<F>::new(self, VirtAddr::new(USER_END), None).unwrap();
        a.asid = Asid(1);
        a
    }
}

// SAFETY: the frames come from HostEnv's allocator, which makes the same
// promise.
unsafe impl TableAlloc for Probe {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if !self.take_frame() {
            return None;
        }
        self.env.alloc_table()
    }
}

impl TlbOps for Probe {
    fn flush_page(&self, asid: Asid, va: VirtAddr) {
        self.flushes.set(self.flushes.get() + 1);
        self.env.tlb.flush_page(asid, va);
    }
    fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr) {
        self.flushes.set(self.flushes.get() + 1);
        self.env.tlb.flush_range(asid, start, end);
    }
    fn flush_asid(&self, asid: Asid) {
        self.flushes.set(self.flushes.get() + 1);
        self.env.tlb.flush_asid(asid);
    }
}

impl MmEnv for Probe {
    fn memmap(&self) -> &Memmap {
        self.env.memmap()
    }
    fn linear(&self) -> LinearMap {
        self.env.linear()
    }
    fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        if !self.take_frame() {
            return None;
        }
        self.env.alloc_folio(order)
    }
    fn folio_put_refs(&mut self, folio: Folio, nr: u32) {
        self.env.folio_put_refs(folio, nr);
    }
    fn fold_policy(&self) -> FoldPolicy {
        self.env.fold_policy()
    }
    fn note_fold(&self, event: FoldEvent, n: u64) {
        self.env.note_fold(event, n);
    }
    fn free_table(&mut self, table: PhysAddr) {
        self.check_flushed_before_free(1);
        self.env.free_table(table);
    }
    fn free_tables(&mut self, tables: &mut Vec<PhysAddr>) {
        if tables.is_empty() {
            return;
        }
        self.check_flushed_before_free(tables.len());
        for t in tables.drain(..) {
            self.env.free_table(t);
        }
    }
    fn tlb(&self) -> &dyn TlbOps {
        self
    }
    fn thp(&self) -> &ThpPolicy {
        self.env.thp()
    }
    fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool {
        self.env.deferred_split_folio(head, base)
    }
    fn zero_pfn(&self) -> Pfn {
        self.env.zero_pfn()
    }
}

/// 2 MiB: the span of one last-level table.
const TABLE_SPAN: u64 = 2 << 20;
/// Where the sparse mapping starts (1 GiB aligned).
const BASE: u64 = 1 << 40;

/// A read-only anonymous area of `tables` × 2 MiB, one byte read per
/// 2 MiB: each read maps the zero page and costs one last-level table
/// (the page-table hog of issue 17, scaled down).
fn sparse_tables<F: PteFormat>(p: &mut Probe, a: &mut AddressSpace<F>, tables: u64) -> VirtAddr {
    let (start, end) = (
        VirtAddr::new(BASE),
        VirtAddr::new(BASE + tables * TABLE_SPAN),
    );
    a.add_vma(Vma::new(start, end, Prot::READ, VmaKind::Anon))
        .unwrap();
    for t in 0..tables {
        a.handle_fault(p, start + t * TABLE_SPAN, Access::Read)
            .unwrap();
    }
    assert_eq!(a.rss(), 0, "zero-page mappings are not resident");
    end
}

/// The table count the OOM killer reads, against a walk of the tree
/// (which counts the root too).
fn assert_table_count<F: PteFormat>(a: &AddressSpace<F>) {
    assert_eq!(a.table_pages() + 1, a.page_table().count_tables() as u64);
}

/// Thousands of tables; fewer under Miri (where [`TABLE_BATCH`] is 64),
/// still over two batches, and enough that a list of them all (8 bytes
/// each) would break the heap bound of one batch plus 1 KiB.
const MANY: u64 = if cfg!(miri) { 300 } else { 3000 };
const _: () =
    assert!(MANY as usize > 2 * TABLE_BATCH && MANY as usize * 8 > TABLE_BATCH * 8 + 1024);

fn unmap_of_thousands_of_tables_is_bounded<F: PteFormat>() {
    let mut p = Probe::new(MANY + 64);
    let mut a = p.space::<F>();
    let end = sparse_tables(&mut p, &mut a, MANY);
    // MANY last-level tables, one level-2 table per GiB, one level-1.
    let gib = (MANY * TABLE_SPAN).div_ceil(1 << 30);
    assert_eq!(a.table_pages(), MANY + gib + 1);
    assert_table_count(&a);
    let before = a.table_pages();
    p.live = true;
    let (r, peak) = peak_heap_during(|| a.unmap(&mut p, VirtAddr::new(BASE), end));
    p.live = false;
    r.unwrap();
    // A list of every emptied table would be MANY × 8 bytes (24 KiB);
    // one batch is TABLE_BATCH × 8 (4 KiB).
    assert!(
        peak <= (TABLE_BATCH * 8 + 1024) as isize,
        "munmap of {MANY} tables held {peak} bytes of heap at once"
    );
    assert_table_count(&a);
    // Every last-level table went; the level-1 table and the level-2 one
    // the range covers only in part stay.
    assert_eq!(a.table_pages(), 2);
    let freed: usize = p.table_batches.iter().sum();
    assert_eq!(freed as u64, before - 2, "every emptied table freed");
    assert!(p.table_batches.iter().all(|&n| n <= TABLE_BATCH));
    assert!(p.table_batches.len() >= (MANY as usize).div_ceil(TABLE_BATCH));
    assert_eq!(
        p.env.tables, 3,
        "the root and the two partly covered tables"
    );
    a.teardown(&mut p);
}
on_both_formats!(unmap_of_thousands_of_tables_is_bounded: unmap_bounded_x86, unmap_bounded_arm);

fn protect_of_thousands_of_tables_allocates_nothing<F: PteFormat>() {
    let mut p = Probe::new(MANY + 64);
    let mut a = p.space::<F>();
    let end = sparse_tables(&mut p, &mut a, MANY);
    let start = VirtAddr::new(BASE);
    let (r, peak) = peak_heap_during(|| a.protect(&mut p, start, end, Prot::NONE));
    r.unwrap();
    assert!(peak <= 1024, "mprotect of {MANY} tables held {peak} bytes");
    // The entries really changed: a read is now refused, and still maps
    // the zero page underneath.
    assert_eq!(
        a.handle_fault(&mut p, start + 5 * TABLE_SPAN, Access::Read),
        Err(FaultError::Protection)
    );
    assert_eq!(
        a.translate(start + 5 * TABLE_SPAN).map(|(pfn, _)| pfn),
        Some(p.zero_pfn())
    );
    a.teardown(&mut p);
}
on_both_formats!(protect_of_thousands_of_tables_allocates_nothing: protect_bounded_x86, protect_bounded_arm);

fn teardown_of_thousands_of_tables_is_bounded<F: PteFormat>() {
    let mut p = Probe::new(MANY + 64);
    let mut a = p.space::<F>();
    sparse_tables(&mut p, &mut a, MANY);
    let ((), peak) = peak_heap_during(|| a.teardown(&mut p));
    assert!(
        peak <= (TABLE_BATCH * 8 + 1024) as isize,
        "teardown held {peak} bytes"
    );
    assert!(p.table_batches.iter().all(|&n| n <= TABLE_BATCH));
    assert_eq!(p.env.tables, 0);
}
on_both_formats!(teardown_of_thousands_of_tables_is_bounded: teardown_bounded_x86, teardown_bounded_arm);

/// Eight tables' worth of written pages, a known value in each.
fn written<F: PteFormat>(p: &mut Probe, a: &mut AddressSpace<F>) -> Vec<VirtAddr> {
    a.add_vma(Vma::new(va(0), va(8 * 512), Prot::RW, VmaKind::Anon))
        .unwrap();
    let pages: Vec<VirtAddr> = (0..8)
        .flat_map(|t| [va(t * 512), va(t * 512 + 7)])
        .collect();
    for (k, &at) in pages.iter().enumerate() {
        write_u64(&mut p.env, a, at, 1000 + k as u64);
    }
    pages
}

fn fork_out_of_frames_partway_is_enomem<F: PteFormat>() {
    let mut p = Probe::new(512);
    p.env.thp.write_top(b"never").unwrap();
    let mut a = p.space::<F>();
    let pages = written(&mut p, &mut a);
    let (rss, tables) = (a.rss(), a.table_pages());
    let free = p.env.free_pages();
    // The child needs a root, a level-1, a level-2 and eight last-level
    // tables: fail at each of them in turn.
    for allowed in 0..11 {
        p.budget = Some(allowed);
        let r = a.fork(&mut p, None);
        assert!(
            matches!(r, Err(FaultError::OutOfMemory)),
            "fork with {allowed} frames"
        );
        p.budget = None;
        assert_eq!(
            p.env.free_pages(),
            free,
            "fork failing after {allowed} frames leaked"
        );
        assert_eq!((a.rss(), a.table_pages()), (rss, tables));
        for (k, &at) in pages.iter().enumerate() {
            let (pfn, _) = a.translate(at).unwrap();
            let f = p.env.memmap.page_folio(pfn).unwrap();
            assert_eq!(
                (f.ref_count(), f.mapcount()),
                (1, 1),
                "page {k} after a failed fork"
            );
            assert_eq!(read_u64(&mut p.env, &mut a, at), 1000 + k as u64);
        }
    }
    p.budget = Some(11);
    let child = a.fork(&mut p, None).expect("enough frames for the child");
    assert_eq!(child.table_pages(), tables);
    child.teardown(&mut p);
    a.teardown(&mut p);
}
on_both_formats!(fork_out_of_frames_partway_is_enomem: fork_enomem_x86, fork_enomem_arm);

fn populate_out_of_frames_partway_is_consistent<F: PteFormat>() {
    let mut p = Probe::new(4096);
    p.env.thp.write_top(b"never").unwrap();
    let mut a = p.space::<F>();
    let (start, end) = (va(0), va(8 * 512));
    a.add_vma(Vma::new(start, end, Prot::RW, VmaKind::Anon))
        .unwrap();
    // A level-1, a level-2 and three last-level tables, and most pages.
    p.budget = Some(3 + 3 * 512 + 100);
    assert_eq!(
        a.populate(&mut p, start, end, Access::Write),
        Err(FaultError::OutOfMemory)
    );
    p.budget = None;
    assert_eq!(a.rss(), a.resident_pages());
    assert!(a.rss() > 0 && a.rss() < 8 * 512);
    assert_table_count(&a);
    // Unmapping gives back every frame populate took.
    p.live = true;
    a.unmap(&mut p, start, end).unwrap();
    p.live = false;
    assert_eq!(a.rss(), 0);
    // The level-1 and level-2 tables span more than the range.
    assert_eq!(a.table_pages(), 2);
    assert_table_count(&a);
    assert_eq!(p.env.tables, 3);
    a.teardown(&mut p);
}
on_both_formats!(populate_out_of_frames_partway_is_consistent: populate_enomem_x86, populate_enomem_arm);

fn table_count_follows_fault_fork_and_unmap<F: PteFormat>() {
    let mut p = Probe::new(1024);
    let mut a = p.space::<F>();
    assert_eq!(a.table_pages(), 0, "the root is not counted");
    let end = sparse_tables(&mut p, &mut a, 40);
    assert_table_count(&a);
    let child = a.fork(&mut p, None).unwrap();
    assert_table_count(&child);
    assert_eq!(child.table_pages(), a.table_pages());
    // Half the range: its tables go, the rest stay counted.
    let mid = VirtAddr::new(BASE + 20 * TABLE_SPAN);
    p.live = true;
    a.unmap(&mut p, mid, end).unwrap();
    p.live = false;
    assert_table_count(&a);
    assert_eq!(a.table_pages(), 20 + 2);
    child.teardown(&mut p);
    a.teardown(&mut p);
}
on_both_formats!(table_count_follows_fault_fork_and_unmap: table_count_x86, table_count_arm);
