//! The global frame allocator: a [`BuddyAllocator`] over a memmap carved
//! out of RAM at boot, behind one lock, fronted by per-CPU page lists
//! ([`PcpLists`], Linux's pcp lists) for blocks of orders 0 to 4, plus the
//! stats API tests and benchmarks read.
//!
//! Each CPU's lists sit behind their own lock, which only that CPU takes
//! except when another drains them; it is taken before the buddy lock,
//! never after. Allocating a kept order pops this CPU's list (refilling a
//! batch from the buddy lists when it is empty), freeing pushes on it
//! (draining the oldest batch back when it holds more than its high
//! mark): the buddy lock is taken once per batch. An allocation of a kept
//! order that the buddy lists cannot satisfy drains every CPU's lists and
//! tries again before it fails, so memory parked on one CPU never makes
//! another run out. Pages on the lists are free: [`stats`] counts them,
//! exactly.
//!
//! The memmap itself is a shared static ([`memmap`]): folio metadata
//! (refcounts, mapcounts, flags) is read and updated through it without
//! the allocator's lock, which only allocation and freeing take. So
//! [`folio_put`] costs one atomic update unless it drops the last
//! reference.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use folium_boot::{BootInfo, PhysRange, RangeList, memplan};
use folium_mm::buddy::{BuddyAllocator, FreeBlock, FreeError, check_free, check_frozen};
use folium_mm::folio::{Folio, PutOutcome, PutTestZero};
use folium_mm::memmap::SafetyCounts;
use folium_mm::memmap::{Memmap, Page};
use folium_mm::pcp::{PcpConfig, PcpLists};
use folium_mm::phys::LinearMap;
use folium_mm::{Order, Pfn, PhysAddr};

use crate::platform::Board;
use crate::smp::MAX_CPUS;
use crate::sync::IrqMutex;

/// The descriptor of every frame; set once by [`init`].
static MEMMAP: spin::Once<Memmap> = spin::Once::new();
static BUDDY: IrqMutex<Option<BuddyAllocator<'static>>> = IrqMutex::new(None);
static LINEAR: spin::Once<LinearMap> = spin::Once::new();
/// Each CPU's page lists (taken before `BUDDY`, never after).
static PCP: [IrqMutex<PcpLists>; MAX_CPUS] = [const { IrqMutex::new(PcpLists::new()) }; MAX_CPUS];
/// The lists' sizes (set once all RAM is handed over; until then frees
/// and allocations go to the buddy lists directly).
static PCP_CFG: spin::Once<PcpConfig> = spin::Once::new();
/// Pages on all CPUs' lists. Changed with a list's lock held, and when
/// pages move between a list and the buddy lists with `BUDDY` held too,
/// so that [`stats`], reading it under `BUDDY`, never sees a move half
/// done.
static PCP_PAGES: AtomicU64 = AtomicU64::new(0);
/// Batches moved from the buddy lists to a CPU's (refills), batches given
/// back (drains over the high mark), and drains of every CPU's lists
/// before an allocation fails.
static PCP_REFILLS: AtomicU64 = AtomicU64::new(0);
static PCP_DRAINS: AtomicU64 = AtomicU64::new(0);
static PCP_DRAIN_ALLS: AtomicU64 = AtomicU64::new(0);

/// Free pages per order and in total, as one consistent snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeStats {
    /// Free blocks of each order on the buddy lists.
    pub blocks: [u64; Order::COUNT],
    /// Free base pages in all: the buddy lists' and the CPUs' lists'.
    pub free_pages: u64,
    /// Of which on the CPUs' lists (not in `blocks`).
    pub pcp_pages: u64,
    /// Pages the allocator manages (free or allocated).
    pub managed_pages: u64,
}

/// What boot-time discovery decided, kept for the report.
pub struct Plan {
    /// RAM with reservations removed, page aligned.
    free: Vec<PhysRange>,
    /// Free ranges not reachable before the kernel's own tables exist.
    deferred: Vec<PhysRange>,
    /// Where the memmap lives and how big it is.
    memmap: PhysRange,
    /// Descriptors in the memmap (its span, holes included).
    memmap_pages: u64,
    /// Bytes of RAM the board has.
    ram_bytes: u64,
}

/// The linear map (physical address -> kernel pointer).
pub fn linear() -> LinearMap {
    *LINEAR.get().expect("frames::init has not run")
}

/// The memmap: folio metadata, reachable without the allocator's lock.
pub fn memmap() -> &'static Memmap {
    MEMMAP.get().expect("frames::init has not run")
}

/// Folio bugs contained so far (refused or saturated counts).
pub fn safety() -> SafetyCounts {
    MEMMAP
        .get()
        .map_or_else(SafetyCounts::default, |m| m.safety().snapshot())
}

/// Runs `f` with the allocator locked.
pub fn with<R>(f: impl FnOnce(&mut BuddyAllocator<'static>) -> R) -> R {
    let mut g = BUDDY.lock();
    f(g.as_mut().expect("frames::init has not run"))
}

/// The allocator lock's contention (see `IrqMutex::contention`).
pub fn contention() -> (u64, u64) {
    BUDDY.contention()
}

/// True while this CPU holds the allocator's lock or a CPU's page list
/// (the kernel heap, asked for memory from inside the allocator, must not
/// wait for them).
pub fn held_here() -> bool {
    BUDDY.is_held_here() || PCP.iter().any(IrqMutex::is_held_here)
}

/// A snapshot of the free lists (the stats API; later exposed to user space).
pub fn stats() -> FreeStats {
    let g = BUDDY.lock();
    // Under BUDDY: a refill or drain is either wholly seen or not at all.
    let pcp_pages = PCP_PAGES.load(Relaxed);
    match g.as_ref() {
        Some(b) => FreeStats {
            blocks: b.free_per_order(),
            free_pages: b.nr_free_pages() + pcp_pages,
            pcp_pages,
            managed_pages: b.nr_managed_pages(),
        },
        None => FreeStats {
            blocks: [0; Order::COUNT],
            free_pages: 0,
            pcp_pages: 0,
            managed_pages: 0,
        },
    }
}

/// Pages on CPU `cpu`'s lists now (0 for a CPU that is not there).
pub fn pcp_pages_on(cpu: usize) -> u64 {
    PCP.get(cpu).map_or(0, |l| l.lock().pages())
}

/// Pages on the CPUs' lists now (the mm audit's count of `PCP` heads).
pub fn pcp_pages() -> u64 {
    PCP_PAGES.load(Relaxed)
}

/// The page lists' sizes and traffic: (batch, high, refills, drains,
/// drains of all lists).
pub fn pcp_stats() -> (u32, u32, u64, u64, u64) {
    let cfg = PCP_CFG
        .get()
        .copied()
        .unwrap_or(PcpConfig { batch: 0, high: 0 });
    (
        cfg.batch,
        cfg.high,
        PCP_REFILLS.load(Relaxed),
        PCP_DRAINS.load(Relaxed),
        PCP_DRAIN_ALLS.load(Relaxed),
    )
}

/// The lists' sizes, if they are in use and `order` is kept on them.
fn pcp_for(order: Order) -> Option<PcpConfig> {
    if PcpLists::covers(order) {
        PCP_CFG.get().copied()
    } else {
        None
    }
}

/// This CPU's lists. (A thread moved to another CPU between reading the
/// index and locking would take that CPU's lock: still correct, since
/// every list is behind its own lock; kernel code is not preempted
/// between the two anyway.)
fn this_pcp() -> &'static IrqMutex<PcpLists> {
    &PCP[crate::smp::id()]
}

/// Gives every CPU's listed pages back to the buddy lists (Linux
/// `drain_all_pages`), so that they can merge and satisfy an allocation
/// that failed. Returns the pages given back. Must not be called with a
/// list's lock held.
pub fn drain_all() -> u64 {
    if PCP_CFG.get().is_none() || PCP_PAGES.load(Relaxed) == 0 {
        return 0;
    }
    PCP_DRAIN_ALLS.fetch_add(1, Relaxed);
    let mut given = 0;
    for list in &PCP {
        let mut p = list.lock();
        if p.pages() != 0 {
            with(|b| {
                let n = p.drain_to(b, 0);
                PCP_PAGES.fetch_sub(n, Relaxed);
                given += n;
            });
        }
    }
    given
}

/// Runs `f` with every CPU's list locked (in CPU order: the one place
/// that holds more than one) and then the allocator, passing the pages
/// on the lists: a moment when no block is between a list and its owner,
/// which the mm audit needs to count `PCP` heads exactly.
pub fn with_all_lists<R>(f: impl FnOnce(&mut BuddyAllocator<'static>, u64) -> R) -> R {
    let guards: Vec<_> = PCP.iter().map(IrqMutex::lock).collect();
    let r = with(|b| f(b, PCP_PAGES.load(Relaxed)));
    drop(guards);
    r
}

/// Allocates a naturally aligned block of `order`, marked allocated with
/// one reference (as [`BuddyAllocator::alloc`]): from this CPU's list for
/// a kept order, else from the buddy lists. `None` when out of memory.
///
/// A kept order the buddy lists cannot supply either drains every CPU's
/// lists and tries again, as long as draining gave pages back (another
/// CPU may refill its list from them meanwhile), before it fails: the
/// order-0 fallback of a fault, and so the OOM killer, never fails while
/// pages wait on some CPU's list. A larger order drains once, and only
/// when the buddy lists hold at least twice its size in free pages: then
/// the listed pieces are likely what keeps it from merging (a fault
/// trying a 2 MiB folio with most of memory free must get it), while on
/// memory that is simply short the fault falls back to smaller folios
/// without emptying every CPU's lists on each try.
pub fn alloc_block(order: Order) -> Option<Pfn> {
    let Some(cfg) = pcp_for(order) else {
        let (pfn, plenty) = with(|b| {
            let pfn = b.alloc(order);
            (pfn, b.nr_free_pages() >= 2 * order.pages())
        });
        if pfn.is_some() || !plenty || PCP_PAGES.load(Relaxed) == 0 {
            return pfn;
        }
        // Free memory enough for two such blocks, yet none: pieces on the
        // CPUs' lists may be keeping them from merging (they sit
        // scattered over memory). Give them back once and try again.
        drain_all();
        return with(|b| b.alloc(order));
    };
    {
        let mut p = this_pcp().lock();
        if let Some(pfn) = p.alloc(memmap(), order) {
            PCP_PAGES.fetch_sub(order.pages(), Relaxed);
            return Some(pfn);
        }
        let moved = with(|b| {
            let n = p.refill(b, order, cfg);
            PCP_PAGES.fetch_add(n, Relaxed);
            n
        });
        if moved != 0 {
            PCP_REFILLS.fetch_add(1, Relaxed);
            let pfn = p.alloc(memmap(), order);
            if pfn.is_some() {
                PCP_PAGES.fetch_sub(order.pages(), Relaxed);
            }
            return pfn;
        }
    }
    // Out of blocks that size: the CPUs' lists may hold the pieces.
    while drain_all() != 0 {
        if let Some(pfn) = with(|b| b.alloc(order)) {
            return Some(pfn);
        }
    }
    with(|b| b.alloc(order))
}

/// Frees a checked block to this CPU's list (draining the oldest batch
/// back over the high mark), or to the buddy lists if the list does not
/// keep it.
fn free_checked(block: FreeBlock<'static>) {
    if pcp_for(block.order()).is_some() {
        free_to(Some(&mut this_pcp().lock()), block);
    } else {
        free_to(None, block);
    }
}

/// Frees a checked block to `p` (this CPU's list, already locked by a
/// caller freeing a batch) if there is one and it keeps the block's
/// order, else to the buddy lists.
fn free_to(p: Option<&mut PcpLists>, block: FreeBlock<'static>) {
    match (p, pcp_for(block.order())) {
        (Some(p), Some(cfg)) => free_on(p, block, cfg),
        _ => with(|b| b.free_checked(block)),
    }
}

/// [`free_checked`] with this CPU's list already locked (`p`).
fn free_on(p: &mut PcpLists, block: FreeBlock<'static>, cfg: PcpConfig) {
    let pages = block.order().pages();
    match p.free(memmap(), block) {
        Ok(()) => {
            PCP_PAGES.fetch_add(pages, Relaxed);
            if p.pages() > u64::from(cfg.high) {
                with(|b| {
                    let n = p.drain_to(b, u64::from(cfg.high - cfg.batch));
                    PCP_PAGES.fetch_sub(n, Relaxed);
                });
                PCP_DRAINS.fetch_add(1, Relaxed);
            }
        }
        Err(block) => with(|b| b.free_checked(block)),
    }
}

/// Frees a block from [`alloc_block`] (or the buddy allocator) of
/// `order`, after the checks [`BuddyAllocator::free`] makes; refused
/// frees change nothing.
pub fn free_block(pfn: Pfn, order: Order) -> Result<(), FreeError> {
    free_checked(check_free(memmap(), pfn, order)?);
    Ok(())
}

/// Allocates a folio of `order` (contents undefined). `None` when out of memory.
pub fn alloc_folio(order: Order) -> Option<Folio> {
    alloc_block(order).map(|pfn| Folio::from_new_block(memmap(), pfn))
}

/// Drops one reference to `folio` (Linux `folio_put`). Lock-free unless
/// it was the last reference: only then is the folio freed, to this
/// CPU's list or the buddy lists. Refusals (a put on a count of 0, a
/// last put on a mapped folio) come back in the outcome and are counted
/// in [`safety`].
pub fn folio_put(folio: Folio) -> PutOutcome {
    folio_put_refs(folio, 1)
}

/// Drops `nr` references to `folio` at once (Linux `folio_put_refs`), as
/// [`folio_put`] does one.
pub fn folio_put_refs(folio: Folio, nr: u32) -> PutOutcome {
    put_refs(folio, nr, free_checked)
}

/// Ends `nr` references to `folio`; if they were the last, hands the
/// checked block to `free`. What the put did.
fn put_refs(folio: Folio, nr: u32, free: impl FnOnce(FreeBlock<'static>)) -> PutOutcome {
    match memmap().folio_put_refs_testzero(folio, nr) {
        PutTestZero::Zero(frozen) => match check_frozen(frozen) {
            Ok(block) => {
                free(block);
                PutOutcome::Freed
            }
            Err(refused) => refused,
        },
        PutTestZero::Kept(outcome) => outcome,
    }
}

/// Drops the references of each `(folio, nr)` of `batch` (emptying it)
/// with this CPU's list locked once, as a gather frees its folios.
/// Returns the first refusal, if any.
pub fn folios_put_refs(batch: impl Iterator<Item = (Folio, u32)>) -> Option<(Pfn, PutOutcome)> {
    let mut refused = None;
    let mut p = PCP_CFG.get().map(|_| this_pcp().lock());
    for (folio, nr) in batch {
        let pfn = folio.pfn();
        let outcome = put_refs(folio, nr, |block| free_to(p.as_deref_mut(), block));
        if outcome.refused() && refused.is_none() {
            refused = Some((pfn, outcome));
        }
    }
    refused
}

/// Frees page-table frames (order 0, from [`alloc_table_frame`]) with
/// this CPU's list locked once. Returns the first refusal, if any.
pub fn free_tables(tables: impl Iterator<Item = PhysAddr>) -> Option<(PhysAddr, FreeError)> {
    let mut failed = None;
    let mut p = PCP_CFG.get().map(|_| this_pcp().lock());
    for t in tables {
        match check_free(memmap(), t.pfn(), Order::of(0)) {
            Ok(block) => free_to(p.as_deref_mut(), block),
            Err(e) => {
                failed.get_or_insert((t, e));
            }
        }
    }
    failed
}

/// The board's RAM that a 48-bit physical address space holds, merged,
/// page aligned inward and sorted.
pub fn usable_ram(board: &Board) -> Vec<PhysRange> {
    memplan::usable_ram(board.ram.as_slice())
        .as_slice()
        .to_vec()
}

/// True if the 8 bytes at `pa` are RAM the kernel's linear map covers
/// (all of the board's usable RAM, reserved parts included).
pub fn is_linear_mapped(pa: PhysAddr) -> bool {
    let Some(board) = crate::platform::board() else {
        return false;
    };
    let end = pa.as_u64().saturating_add(8);
    usable_ram(board)
        .iter()
        .any(|r| r.start <= pa && end <= r.end.as_u64())
}

/// `ram` minus every range in `holes`, sorted, empty pieces dropped.
pub fn subtract(ram: &[PhysRange], holes: &[PhysRange]) -> Vec<PhysRange> {
    let mut out: RangeList = ram.iter().copied().collect();
    out.subtract(holes);
    let mut out = out.as_slice().to_vec();
    out.sort_by_key(|r| r.start);
    out
}

/// Finds free RAM, carves the memmap out of it, and hands the rest to the
/// buddy allocator (except what the early tables cannot reach yet).
pub fn init(info: &BootInfo, board: &Board) -> Plan {
    // SAFETY: the boot layer maps RAM at this offset (early map now, the
    // kernel's own tables later), for the whole run.
    let lin = *LINEAR.call_once(|| unsafe { LinearMap::new(info.linear_offset) });
    let mut holes: Vec<PhysRange> = info.ranges().reserved.as_slice().to_vec();
    holes.push(info.kernel_phys);
    let plan = match memplan::plan(board.ram.as_slice(), &holes, crate::arch::early_reachable) {
        Ok(p) => p,
        Err(e) => panic!("no usable memory plan: {e:?} (RAM {:?})", board.ram),
    };
    for r in plan.unused.as_slice() {
        println!("mm: warning: RAM {r:?} left unused: a memmap spanning it does not fit");
    }
    let (lo, hi) = plan.span;
    let base = lin.ptr::<Page>(plan.memmap.start);
    let mm = MEMMAP.call_once(|| {
        // SAFETY: the plan's memmap range is RAM reserved from everything
        // else (no free range overlaps it, host-tested), mapped by the early
        // linear map (it lies in a reachable range) and later by the
        // kernel's own, page aligned and large enough for the span's
        // descriptors; the static Memmap is the only user of it for the
        // rest of the run.
        unsafe { Memmap::init(base, lo, hi) }
    });
    let mut buddy = BuddyAllocator::new(mm);
    for r in plan.now.as_slice() {
        buddy.add_free_range(r.start.pfn(), r.end.pfn());
    }
    *BUDDY.lock() = Some(buddy);
    Plan {
        free: plan.free.as_slice().to_vec(),
        deferred: plan.deferred.as_slice().to_vec(),
        memmap: plan.memmap,
        memmap_pages: plan.memmap_pages,
        ram_bytes: plan.ram.total(),
    }
}

/// Hands over the RAM the early tables could not reach (called once the
/// kernel's own tables map all of it).
pub fn add_deferred(plan: &Plan) {
    let managed = with(|b| {
        for r in &plan.deferred {
            b.add_free_range(r.start.pfn(), r.end.pfn());
        }
        b.nr_managed_pages()
    });
    // All RAM is in: size the CPUs' lists for it (for every CPU the
    // kernel can run, so that the lists together stay near an eighth).
    PCP_CFG.call_once(|| PcpConfig::for_memory(managed, MAX_CPUS));
}

/// Prints the memmap's cost and the free lists.
pub fn print_report(plan: &Plan) {
    let s = stats();
    let bytes = plan.memmap.size();
    let per_frame = core::mem::size_of::<Page>();
    let gib = plan.ram_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "mm: memmap {} KiB at {:?} for {} frames ({} B/frame, {:.0} KiB per GiB of RAM = {:.2}% of RAM)",
        bytes >> 10,
        plan.memmap,
        plan.memmap_pages,
        per_frame,
        bytes as f64 / 1024.0 / gib,
        bytes as f64 * 100.0 / plan.ram_bytes as f64
    );
    let free_bytes: u64 = plan.free.iter().map(PhysRange::size).sum();
    println!(
        "mm: {} free ranges, {} MiB; allocator manages {} pages, {} free",
        plan.free.len(),
        free_bytes >> 20,
        s.managed_pages,
        s.free_pages
    );
    print!("mm: free blocks per order:");
    for (o, n) in s.blocks.iter().enumerate() {
        print!(" {o}:{n}");
    }
    println!();
    print_safety();
}

/// Prints the folio bugs contained so far, if there were any.
pub fn print_safety() {
    let c = safety();
    if c.total() != 0 {
        println!(
            "mm: folio safety checks: refcount saturated {}, taken on zero {}, puts absorbed {}, puts on zero refused {}, mapped frees refused {}, mapcount saturated {}, unmaps below zero refused {}",
            c.ref_saturated,
            c.ref_on_zero,
            c.put_saturated,
            c.put_underflow,
            c.freed_mapped,
            c.map_saturated,
            c.map_underflow
        );
    }
}

/// Zeroes a folio's memory through the linear map.
pub fn zero_folio(folio: &Folio, order: Order) {
    let ptr = linear().ptr::<u8>(folio.pfn().phys());
    // SAFETY: the caller owns the folio (a reference it holds), whose
    // frames are RAM mapped by the linear map; nobody else writes them.
    unsafe { crate::arch::zero_pages(ptr, order.bytes() as usize) };
}

/// The physical address of a kernel pointer into the linear map.
pub fn phys_of<T>(p: *const T) -> PhysAddr {
    linear().phys_of(p)
}

/// Order-0 frame for a page table, marked as one in the memmap (the mm
/// audit counts table frames), as [`BuddyAllocator::alloc_table`] marks
/// it.
pub fn alloc_table_frame() -> Option<PhysAddr> {
    let pfn = alloc_block(Order::of(0))?;
    folium_mm::buddy::mark_table(memmap(), pfn);
    Some(pfn.phys())
}
