//! A grow-only heap on `brk` behind `#[global_allocator]`: allocation
//! bumps a pointer and extends the break when needed; `dealloc` does
//! nothing. Enough for short test and benchmark programs, and it exercises
//! the kernel's `brk`.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

struct BrkHeap {
    /// Next free byte (0 before the first allocation).
    next: AtomicU64,
    /// The current program break.
    end: AtomicU64,
}

// SAFETY: returns fresh, suitably aligned ranges below the break that the
// kernel has just granted; ranges never overlap because `next` only grows.
// The programs are single-threaded (fork copies the whole heap), so the
// load/store pairs do not race.
unsafe impl GlobalAlloc for BrkHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut next = self.next.load(Ordering::Relaxed);
        let mut end = self.end.load(Ordering::Relaxed);
        if next == 0 {
            next = crate::sys::brk(0);
            end = next;
        }
        let start = (next + layout.align() as u64 - 1) & !(layout.align() as u64 - 1);
        let Some(new_next) = start.checked_add(layout.size() as u64) else {
            return core::ptr::null_mut();
        };
        if new_next > end {
            let want = (new_next + 0xffff) & !0xffff;
            if crate::sys::brk(want) < want {
                return core::ptr::null_mut();
            }
            end = want;
        }
        self.next.store(new_next, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: BrkHeap = BrkHeap {
    next: AtomicU64::new(0),
    end: AtomicU64::new(0),
};
