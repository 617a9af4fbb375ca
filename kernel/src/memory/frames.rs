//! The global frame allocator: a [`BuddyAllocator`] over a memmap carved
//! out of RAM at boot, behind one lock, plus the stats API tests and
//! benchmarks read.
//!
//! The memmap itself is a shared static ([`memmap`]): folio metadata
//! (refcounts, mapcounts, flags) is read and updated through it without
//! the allocator's lock, which only allocation and freeing take. So
//! [`folio_put`] costs one atomic update unless it drops the last
//! reference.

use alloc::vec::Vec;

use folium_boot::{BootInfo, PhysRange, RangeList, memplan};
use folium_mm::buddy::BuddyAllocator;
use folium_mm::folio::{Folio, PutOutcome, PutTestZero};
use folium_mm::memmap::SafetyCounts;
use folium_mm::memmap::{Memmap, Page};
use folium_mm::phys::LinearMap;
use folium_mm::{Order, Pfn, PhysAddr};

use crate::platform::Board;
use crate::sync::IrqMutex;

/// The descriptor of every frame; set once by [`init`].
static MEMMAP: spin::Once<Memmap> = spin::Once::new();
static BUDDY: IrqMutex<Option<BuddyAllocator<'static>>> = IrqMutex::new(None);
static LINEAR: spin::Once<LinearMap> = spin::Once::new();

/// Free pages per order and in total, as one consistent snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeStats {
    /// Free blocks of each order.
    pub blocks: [u64; Order::COUNT],
    /// Free base pages in all.
    pub free_pages: u64,
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

/// True while this CPU holds the allocator's lock (the kernel heap, asked
/// for memory from inside the allocator, must not wait for it).
pub fn held_here() -> bool {
    BUDDY.is_held_here()
}

/// A snapshot of the free lists (the stats API; later exposed to user space).
pub fn stats() -> FreeStats {
    let g = BUDDY.lock();
    match g.as_ref() {
        Some(b) => FreeStats {
            blocks: b.free_per_order(),
            free_pages: b.nr_free_pages(),
            managed_pages: b.nr_managed_pages(),
        },
        None => FreeStats {
            blocks: [0; Order::COUNT],
            free_pages: 0,
            managed_pages: 0,
        },
    }
}

/// Allocates a folio of `order` (contents undefined). `None` when out of memory.
pub fn alloc_folio(order: Order) -> Option<Folio> {
    with(|b| b.alloc_folio(order))
}

/// Drops one reference to `folio` (Linux `folio_put`). Lock-free unless
/// it was the last reference: only then is the allocator locked, to free
/// the folio. Refusals (a put on a count of 0, a last put on a mapped
/// folio) come back in the outcome and are counted in [`safety`].
pub fn folio_put(folio: Folio) -> PutOutcome {
    folio_put_refs(folio, 1)
}

/// Drops `nr` references to `folio` at once (Linux `folio_put_refs`), as
/// [`folio_put`] does one.
pub fn folio_put_refs(folio: Folio, nr: u32) -> PutOutcome {
    match memmap().folio_put_refs_testzero(folio, nr) {
        PutTestZero::Zero(frozen) => with(|b| b.free_frozen(frozen)),
        PutTestZero::Kept(outcome) => outcome,
    }
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
    with(|b| {
        for r in &plan.deferred {
            b.add_free_range(r.start.pfn(), r.end.pfn());
        }
    });
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
/// audit counts table frames).
pub fn alloc_table_frame() -> Option<PhysAddr> {
    with(|b| b.alloc_table()).map(Pfn::phys)
}
