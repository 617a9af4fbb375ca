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

use folium_boot::{BootInfo, PhysRange};
use folium_mm::buddy::BuddyAllocator;
use folium_mm::folio::{Folio, PutOutcome, PutTestZero};
use folium_mm::memmap::SafetyCounts;
use folium_mm::memmap::{Memmap, Page};
use folium_mm::phys::LinearMap;
use folium_mm::{Order, PAGE_SIZE, Pfn, PhysAddr};

use crate::platform::Board;
use crate::sync::IrqMutex;

/// The descriptor of every frame; set once by [`init`].
static MEMMAP: spin::Once<Memmap> = spin::Once::new();
static BUDDY: IrqMutex<Option<BuddyAllocator<'static>>> = IrqMutex::new(None);
/// Physical addresses at or above this are ignored (48-bit PA, both arches).
const MAX_PHYS: u64 = 1 << 48;
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

/// The board's RAM that a 48-bit physical address space holds, page
/// aligned inward and sorted.
pub fn usable_ram(board: &Board) -> Vec<PhysRange> {
    let mut ram: Vec<PhysRange> = board
        .ram
        .as_slice()
        .iter()
        .map(|r| r.pages_inside())
        .filter(|r| !r.is_empty() && r.end.as_u64() <= MAX_PHYS)
        .collect();
    ram.sort_by_key(|r| r.start);
    ram
}

/// `ram` minus every range in `holes`, sorted, empty pieces dropped.
pub fn subtract(ram: &[PhysRange], holes: &[PhysRange]) -> Vec<PhysRange> {
    let mut out: Vec<PhysRange> = ram.iter().copied().filter(|r| !r.is_empty()).collect();
    for h in holes {
        let mut next = Vec::with_capacity(out.len() + 1);
        for r in out {
            if !r.overlaps(h) {
                next.push(r);
                continue;
            }
            if r.start < h.start {
                next.push(PhysRange {
                    start: r.start,
                    end: h.start,
                });
            }
            if h.end < r.end {
                next.push(PhysRange {
                    start: h.end,
                    end: r.end,
                });
            }
        }
        out = next;
    }
    out.sort_by_key(|r| r.start);
    out
}

/// Finds free RAM, carves the memmap out of it, and hands the rest to the
/// buddy allocator (except what the early tables cannot reach yet).
pub fn init(info: &BootInfo, board: &Board) -> Plan {
    // SAFETY: the boot layer maps RAM at this offset (early map now, the
    // kernel's own tables later), for the whole run.
    let lin = *LINEAR.call_once(|| unsafe { LinearMap::new(info.linear_offset) });
    let mut ram = usable_ram(board);
    let mut holes: Vec<PhysRange> = info
        .reserved
        .as_slice()
        .iter()
        .map(|r| r.pages_covering())
        .collect();
    holes.push(info.kernel_phys.pages_covering());
    let mut free = subtract(&ram, &holes);
    let mut reachable: Vec<PhysRange> = free
        .iter()
        .filter_map(|&r| crate::arch::early_reachable(r))
        .collect();

    // The memmap spans all RAM, holes included. If firmware reports a bank
    // so far away that the span cannot be stored, give up the highest banks
    // (with a warning) rather than the boot.
    let (lo, hi, memmap_pages, memmap_bytes, host) = loop {
        let lo = ram.iter().map(|r| r.start.pfn()).min().unwrap_or_default();
        let hi = ram.iter().map(|r| r.end.pfn()).max().unwrap_or_default();
        let pages = Memmap::nr_pages_for(lo, hi);
        let bytes = Memmap::bytes_for(pages).next_multiple_of(PAGE_SIZE);
        // Top-down from the largest reachable range, as Linux's memblock does.
        let host = reachable
            .iter()
            .filter(|r| r.size() >= bytes)
            .max_by_key(|r| r.size())
            .copied();
        match host {
            Some(h) if pages < u64::from(u32::MAX) => break (lo, hi, pages, bytes, h),
            _ if ram.len() > 1 => {
                let dropped = ram.pop().unwrap_or(PhysRange::EMPTY);
                println!(
                    "mm: warning: RAM {dropped:?} left unused: a memmap spanning it does not fit"
                );
                free = subtract(&free, &[dropped]);
                reachable = subtract(&reachable, &[dropped]);
            }
            _ => panic!("no RAM range can hold the memmap ({bytes} bytes)"),
        }
    };
    let deferred = subtract(&free, &reachable);
    let memmap = PhysRange {
        start: host.end - memmap_bytes,
        end: host.end,
    };
    free = subtract(&free, &[memmap]);
    let reachable_free = subtract(&reachable, &[memmap]);

    let base = lin.ptr::<Page>(memmap.start);
    let mm = MEMMAP.call_once(|| {
        // SAFETY: `memmap` is RAM reserved from everything else above,
        // mapped by the early linear map (it lies in a reachable range) and
        // later by the kernel's own, page aligned and large enough for
        // `memmap_pages` descriptors; the static Memmap is the only user of
        // it for the rest of the run.
        unsafe { Memmap::init(base, lo, hi) }
    });
    let mut buddy = BuddyAllocator::new(mm);
    for r in &reachable_free {
        buddy.add_free_range(r.start.pfn(), r.end.pfn());
    }
    *BUDDY.lock() = Some(buddy);
    Plan {
        free,
        deferred,
        memmap,
        memmap_pages,
        ram_bytes: board.ram.total(),
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
