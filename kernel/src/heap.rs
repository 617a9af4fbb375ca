//! The kernel heap behind `#[global_allocator]`: a buddy-system heap
//! (`buddy_system_allocator`'s unlocked `Heap`) over a static arena in
//! `.bss`, grown once at boot with frames from the page allocator in
//! proportion to RAM, behind the kernel's [`IrqMutex`] (one lock, taken
//! with interrupts masked) so an interrupt handler may allocate too.
//!
//! A failed heap allocation stops the kernel, so code that lets user space
//! create heap objects (processes, mappings) first checks [`headroom`]
//! and answers ENOMEM/EAGAIN when it runs low.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use buddy_system_allocator::Heap;

use crate::sync::IrqMutex;

const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

/// The buddy heap (blocks up to 2^31 bytes) behind the kernel's
/// interrupt-masking lock.
struct IrqSafeHeap(IrqMutex<Heap<32>>);

// SAFETY: every block comes from the one buddy heap's `alloc`, which hands
// out disjoint, suitably sized and aligned blocks of memory it was given
// for good (the arena, frames never freed); `dealloc` returns a block only
// under GlobalAlloc's contract. The IrqMutex serialises all use of the
// heap, interrupt handlers included.
unsafe impl GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: GlobalAlloc's contract: `ptr` was returned by `alloc`
        // above with this layout, i.e. by this heap, and is not used after
        // this call.
        unsafe { self.0.lock().dealloc(ptr, layout) };
    }
}

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(IrqMutex::new(Heap::empty()));

/// Hands the arena to the heap. Called once, before any allocation.
pub fn init() {
    // SAFETY: called once at boot; the arena is used by nothing else and
    // lives for the whole run.
    unsafe {
        let start = (&raw mut ARENA) as usize;
        with_heap(|h| h.init(start, HEAP_SIZE));
    }
}

/// Bytes currently allocated from the heap.
pub fn used() -> usize {
    with_heap(|h| h.stats_alloc_actual())
}

/// Bytes the heap manages in all.
pub fn total() -> usize {
    with_heap(|h| h.stats_total_bytes())
}

/// Bytes still free in the heap.
pub fn headroom() -> usize {
    with_heap(|h| h.stats_total_bytes() - h.stats_alloc_actual())
}

/// Below this much free heap, requests that create kernel objects for user
/// space are refused. Each such request allocates at most a few KiB
/// (larger ones, like fork's copy of the area map, ask
/// [`can_allocate`] for their size), so the reserve keeps the kernel's own
/// allocations (exit, reaping, interrupts) safe.
pub const RESERVE: usize = 1 << 20;

/// True if a user request that allocates kernel heap may proceed.
pub fn can_grow() -> bool {
    headroom() > RESERVE
}

/// True if a user request that will allocate about `bytes` of kernel heap
/// (a fork's copy of the area map, say) may proceed.
pub fn can_allocate(bytes: usize) -> bool {
    headroom() > RESERVE.saturating_add(bytes)
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
        with_heap(|h| unsafe { h.add_to_heap(start, start + block.bytes() as usize) });
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

/// Runs `f` on the heap, locked (with interrupts masked).
fn with_heap<R>(f: impl FnOnce(&mut Heap<32>) -> R) -> R {
    f(&mut HEAP.0.lock())
}
