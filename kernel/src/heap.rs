//! The kernel heap behind `#[global_allocator]`: a buddy-system heap
//! (`buddy_system_allocator`'s unlocked `Heap`) over a static arena in
//! `.bss`, grown once at boot with frames from the page allocator in
//! proportion to RAM, behind the kernel's [`IrqMutex`] (one lock, taken
//! with interrupts masked) so an interrupt handler may allocate too.
//!
//! When that runs out, the heap grows on demand: a *chunk* (one 4 MiB
//! block of the page allocator, its own small buddy heap) is added, up to
//! a limit set at boot ([`set_limit`]), and handed back to the page
//! allocator as soon as nothing in it is allocated, so memory a burst of
//! kernel objects took returns when they go (MemFree comes back).
//!
//! A failed heap allocation in infallible code (a `BTreeMap` insert, a
//! `Box::new`) stops the kernel, so code that lets user space create heap
//! objects (processes, mappings, open files) first checks [`can_grow`]
//! (or [`can_allocate`]) and answers ENOMEM/EAGAIN when the heap is short
//! even after growing; what such a request allocates later is either
//! bounded by the reserve that check keeps, or fallible (`try_reserve`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use buddy_system_allocator::Heap;
use folium_mm::Order;

use crate::sync::IrqMutex;

const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

/// The page allocator's block a chunk takes (its largest).
const CHUNK_ORDER: Order = Order::MAX;
/// Bytes in one chunk.
const CHUNK: usize = 1 << (CHUNK_ORDER.get() as usize + 12);
/// Most chunks at once (the limit set at boot is at most this).
const MAX_CHUNKS: usize = 64;

/// One on-demand block of the heap: where it lies and its own heap.
struct Chunk {
    start: usize,
    heap: Heap<32>,
}

/// The boot heap and the chunks grown since.
struct Heaps {
    main: Heap<32>,
    chunks: [Option<Chunk>; MAX_CHUNKS],
    /// Chunks allowed at once ([`set_limit`]); 0 until set.
    limit: usize,
    /// Chunks taken from and given back to the page allocator, in all.
    grown: u64,
    shrunk: u64,
    /// Chunks the page allocator refused to take back.
    refused: u64,
}

impl Heaps {
    const fn new() -> Heaps {
        Heaps {
            main: Heap::empty(),
            chunks: [const { None }; MAX_CHUNKS],
            limit: 0,
            grown: 0,
            shrunk: 0,
            refused: 0,
        }
    }

    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if let Ok(p) = self.main.alloc(layout) {
            return Some(p);
        }
        for c in self.chunks.iter_mut().flatten() {
            if let Ok(p) = c.heap.alloc(layout) {
                return Some(p);
            }
        }
        None
    }

    /// True if a chunk may be added for `layout`: a chunk's own heap
    /// cannot hand out all of it in one block, and the limit holds.
    fn may_grow(&self, layout: Layout) -> bool {
        layout.size().max(layout.align()) <= CHUNK / 2 && self.free_slot().is_some()
    }

    fn free_slot(&self) -> Option<usize> {
        self.chunks[..self.limit.min(MAX_CHUNKS)]
            .iter()
            .position(Option::is_none)
    }

    /// Installs the page-allocator block at `start` as a chunk; false (the
    /// caller gives it back) if the limit was reached meanwhile.
    fn install(&mut self, start: usize) -> bool {
        let Some(slot) = self.free_slot() else {
            return false;
        };
        let mut heap = Heap::empty();
        // SAFETY: a fresh block of the page allocator, RAM in the linear
        // map, used by nothing else: this chunk's heap owns it until
        // `detach` takes it out, which happens only once nothing in it is
        // allocated.
        unsafe { heap.init(start, CHUNK) };
        self.chunks[slot] = Some(Chunk { start, heap });
        self.grown += 1;
        true
    }

    /// Takes chunk `slot` out if nothing in it is allocated: its block,
    /// for the caller to give back to the page allocator (after letting
    /// go of the heap's lock), unless this CPU is inside the page
    /// allocator (a free from there), when the chunk stays.
    fn detach(&mut self, slot: usize) -> Option<usize> {
        let c = self.chunks[slot].as_ref()?;
        if c.heap.stats_alloc_actual() != 0 || crate::memory::frames::held_here() {
            return None;
        }
        let start = c.start;
        self.chunks[slot] = None;
        self.shrunk += 1;
        Some(start)
    }

    /// Returns `ptr` to the heap whose range holds it, and gives its
    /// chunk back if that emptied it.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Heaps::alloc`] with this `layout` and is not used
    /// after this call.
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) -> Option<usize> {
        let at = ptr.as_ptr() as usize;
        let slot = self.chunks.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| (c.start..c.start + CHUNK).contains(&at))
        });
        match slot {
            Some(i) => {
                if let Some(c) = self.chunks[i].as_mut() {
                    // SAFETY: the caller's contract; the block lies in this
                    // chunk, so this chunk's heap handed it out.
                    unsafe { c.heap.dealloc(ptr, layout) };
                }
                self.detach(i)
            }
            None => {
                // SAFETY: the caller's contract; no chunk holds it, so the
                // main heap handed it out.
                unsafe { self.main.dealloc(ptr, layout) };
                None
            }
        }
    }

    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().flatten()
    }

    fn used(&self) -> usize {
        self.main.stats_alloc_actual()
            + self
                .chunks()
                .map(|c| c.heap.stats_alloc_actual())
                .sum::<usize>()
    }

    fn total(&self) -> usize {
        self.main.stats_total_bytes()
            + self
                .chunks()
                .map(|c| c.heap.stats_total_bytes())
                .sum::<usize>()
    }
}

/// The heaps behind the kernel's interrupt-masking lock.
struct IrqSafeHeap(IrqMutex<Heaps>);

// SAFETY: every block comes from one of the buddy heaps' `alloc`, which
// hand out disjoint, suitably sized and aligned blocks of memory they were
// given (the arena and boot frames for good, a chunk until it is empty);
// `dealloc` returns a block to the heap whose range holds it, only under
// GlobalAlloc's contract. The IrqMutex serialises all use of the heaps,
// interrupt handlers included.
unsafe impl GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        loop {
            let mut h = self.0.lock();
            if let Some(p) = h.alloc(layout) {
                return p.as_ptr();
            }
            if !h.may_grow(layout) {
                return core::ptr::null_mut();
            }
            drop(h);
            // Another CPU may take the new chunk's room first: then grow
            // again, until the limit stops it.
            if !grow() {
                return core::ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: GlobalAlloc's contract: `ptr` was returned by `alloc`
        // above with this layout, i.e. by one of these heaps, and is not
        // used after this call.
        let emptied = unsafe { self.0.lock().dealloc(ptr, layout) };
        if let Some(start) = emptied {
            give_back(start);
        }
    }
}

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(IrqMutex::new(Heaps::new()));

/// Hands the arena to the heap. Called once, before any allocation.
pub fn init() {
    // SAFETY: called once at boot; the arena is used by nothing else and
    // lives for the whole run.
    unsafe {
        let start = (&raw mut ARENA) as usize;
        with_heap(|h| h.main.init(start, HEAP_SIZE));
    }
}

/// Lets the heap grow on demand by up to `bytes` (whole 4 MiB chunks, at
/// most 256 MiB) beyond what it has.
pub fn set_limit(bytes: u64) {
    let n = (bytes / CHUNK as u64).min(MAX_CHUNKS as u64) as usize;
    with_heap(|h| h.limit = n);
}

/// How far the heap may grow on demand, in bytes ([`set_limit`]).
pub fn limit() -> u64 {
    with_heap(|h| h.limit as u64 * CHUNK as u64)
}

/// Bytes currently allocated from the heap.
pub fn used() -> usize {
    with_heap(|h| h.used())
}

/// Bytes the heap manages in all (chunks grown on demand included).
pub fn total() -> usize {
    with_heap(|h| h.total())
}

/// Bytes still free in the heap as it is now (it may grow further).
pub fn headroom() -> usize {
    with_heap(|h| h.total() - h.used())
}

/// Chunks grown on demand and given back so far.
pub fn chunk_counts() -> (u64, u64) {
    with_heap(|h| (h.grown, h.shrunk))
}

/// The heap lock's contention (see `IrqMutex::contention`).
pub fn contention() -> (u64, u64) {
    HEAP.0.contention()
}

/// Chunks the page allocator refused to take back (0 unless a bug).
pub fn chunks_refused() -> u64 {
    with_heap(|h| h.refused)
}

/// Below this much free heap, requests that create kernel objects for user
/// space are refused. Each such request allocates at most a few KiB
/// (larger ones, like fork's copy of the area map, ask
/// [`can_allocate`] for their size), so the reserve keeps the kernel's own
/// allocations (exit, reaping, interrupts) safe.
pub const RESERVE: usize = 1 << 20;

/// True if a user request that allocates kernel heap may proceed.
pub fn can_grow() -> bool {
    can_allocate(0)
}

/// True if a user request that will allocate about `bytes` of kernel heap
/// (a fork's copy of the area map, say) may proceed: the heap has that
/// much above [`RESERVE`] free, growing by chunks to get it if it must.
/// (A chunk grown here and never used goes back at the next [`trim`].)
pub fn can_allocate(bytes: usize) -> bool {
    let want = RESERVE.saturating_add(bytes);
    while with_heap(|h| h.total() - h.used() <= want) {
        if !grow() {
            return false;
        }
    }
    true
}

/// Adds a chunk from the page allocator; false at the limit, if the page
/// allocator has no block, or if this CPU holds one of its locks (an
/// allocation from inside it: waiting would deadlock). The heap's lock is not held
/// meanwhile, so the only order between the two locks is allocator, then
/// heap (an allocation from inside the allocator).
fn grow() -> bool {
    if crate::memory::frames::held_here() || with_heap(|h| h.free_slot().is_none()) {
        return false;
    }
    // Blocks on the CPUs' page lists may keep a chunk from forming: give
    // them back and try once more (growing is rare; a failure is not).
    let alloc = || crate::memory::frames::alloc_block(CHUNK_ORDER);
    let Some(pfn) = alloc().or_else(|| {
        crate::memory::frames::drain_all();
        alloc()
    }) else {
        return false;
    };
    let start = crate::memory::frames::linear().ptr::<u8>(pfn.phys()) as usize;
    if !with_heap(|h| h.install(start)) {
        give_back(start);
        return false;
    }
    true
}

/// Gives the chunk block at `start` back to the page allocator (called
/// without the heap's lock). A refusal (never expected: the block came
/// from there) leaves the block out of use; it is counted, not printed
/// (printing may allocate).
fn give_back(start: usize) {
    let pa = crate::memory::frames::linear().phys_of(start as *const u8);
    let freed = crate::memory::frames::free_block(pa.pfn(), CHUNK_ORDER);
    if freed.is_err() {
        with_heap(|h| h.refused += 1);
    }
}

/// Gives every chunk with nothing allocated in it back to the page
/// allocator (after a process is reaped: a chunk [`can_allocate`] grew
/// for a request that did not use it).
pub fn trim() {
    let mut emptied = [None; MAX_CHUNKS];
    with_heap(|h| {
        for (i, e) in emptied.iter_mut().enumerate() {
            *e = h.detach(i);
        }
    });
    emptied.into_iter().flatten().for_each(give_back);
}

/// Adds `bytes` (rounded to 4 MiB blocks) of page-allocator memory to the
/// heap, for good: called once at boot, before anything measures free
/// pages. Returns the bytes added.
pub fn grow_from_frames(bytes: u64) -> u64 {
    let block = folium_mm::Order::MAX;
    let mut added = 0;
    while added < bytes {
        let Some(pfn) = crate::memory::frames::with(|b| b.alloc(block)) else {
            break;
        };
        let start = crate::memory::frames::linear().ptr::<u8>(pfn.phys()) as usize;
        // SAFETY: a fresh block from the page allocator, never freed, RAM
        // in the linear map: the heap owns it from now on.
        with_heap(|h| unsafe { h.main.add_to_heap(start, start + block.bytes() as usize) });
        added += block.bytes();
    }
    added
}

kernel_test!(
    fn heap_collections() {
        use alloc::collections::BTreeMap;
        use alloc::string::String;
        use alloc::vec::Vec;
        let before = used();
        {
            let v: Vec<u64> = (0..10_000).collect();
            check_eq!(v.iter().sum::<u64>(), 49_995_000);
            let mut m = BTreeMap::new();
            for i in 0..1000u32 {
                m.insert(i.wrapping_mul(2_654_435_761), i);
            }
            check_eq!(m.len(), 1000);
            let mut s = String::new();
            for i in 0..100 {
                s.push_str(&alloc::format!("{i},"));
            }
            check!(s.starts_with("0,1,2,"));
            check!(used() > before);
        }
        check_eq!(used(), before, "heap bytes leaked by the test");
        Ok(())
    }
);

/// Runs `f` on the heaps, locked (with interrupts masked).
fn with_heap<R>(f: impl FnOnce(&mut Heaps) -> R) -> R {
    f(&mut HEAP.0.lock())
}

kernel_test!(
    fn heap_grows_on_demand_and_gives_back() {
        use alloc::vec::Vec;
        let free = || crate::memory::frames::stats().free_pages;
        let (grown0, shrunk0) = chunk_counts();
        let (pages0, total0) = (free(), total());
        // More than the heap has free now, in blocks of 256 KiB: the last
        // ones can only come from chunks grown on demand.
        const BLOCK: usize = 256 << 10;
        let n = (headroom() + (6 << 20)) / BLOCK;
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        check!(blocks.try_reserve_exact(n).is_ok());
        for i in 0..n {
            let mut b = Vec::new();
            check!(
                b.try_reserve_exact(BLOCK).is_ok(),
                "block {i} of {n} refused"
            );
            b.push(i as u8);
            blocks.push(b);
        }
        let (grown, _) = chunk_counts();
        check!(grown > grown0, "no chunk grown for {n} blocks");
        check!(total() > total0);
        check!(free() <= pages0 - (grown - grown0) * (CHUNK as u64 / 4096));
        check!(blocks.iter().enumerate().all(|(i, b)| b[0] == i as u8));
        drop(blocks);
        // Every chunk emptied went back to the page allocator.
        let (grown, shrunk) = chunk_counts();
        check_eq!(grown - grown0, shrunk - shrunk0);
        check_eq!(free(), pages0);
        check_eq!(total(), total0);
        check_eq!(chunks_refused(), 0);
        Ok(())
    }
);
