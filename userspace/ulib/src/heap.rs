//! The heap behind `#[global_allocator]`: `linked_list_allocator`'s
//! first-fit free list over memory taken from `brk`. Freed blocks go back
//! on the list (merged with free neighbours) and are reused; when no free
//! block fits, the break grows by at least the request, in steps of 64
//! KiB, and the heap is extended over the new range. The break
//! never shrinks.
//!
//! The heap owns the program break: a program that moves it itself (the
//! `brk` tests do) must put it back before the next allocation.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use spin::Mutex;

/// The break grows by multiples of this (and stays aligned to it).
const GROW_STEP: u64 = 64 << 10;

/// Bytes a new free range needs beyond a block's size and alignment to be
/// sure to hold it: the allocator rounds small blocks up to its 16-byte
/// hole header and turns alignment padding into a hole of its own.
const HOLE_SLACK: u64 = 32;

struct BrkHeap(Mutex<Inner>);

struct Inner {
    heap: Heap,
    /// The program break, which is the heap's top (0 before the first
    /// allocation, when the heap is still empty).
    end: u64,
}

impl Inner {
    /// Moves the break up by at least `need` bytes (to a multiple of
    /// [`GROW_STEP`]) and hands the new range to the heap. False if the
    /// kernel refuses.
    fn grow(&mut self, need: u64) -> bool {
        let start = if self.end == 0 {
            crate::sys::brk(0)
        } else {
            self.end
        };
        let Some(want) = start
            .checked_add(need.max(GROW_STEP))
            .and_then(|e| e.checked_next_multiple_of(GROW_STEP))
        else {
            return false;
        };
        if start == 0 || crate::sys::brk(want) != want {
            return false;
        }
        let by = (want - start) as usize;
        if self.end == 0 {
            // SAFETY: called once (`end` is 0 only before the first
            // growth); `[start, want)` was just granted by brk, is used by
            // nothing else, and stays mapped for the rest of the program
            // because only this heap moves the break (see the module doc).
            unsafe { self.heap.init(start as *mut u8, by) };
        } else {
            // SAFETY: the heap is initialised and its top is the old break
            // `start`; `[start, want)` was just granted by brk, directly
            // after it, and stays mapped as the rest of the heap does.
            unsafe { self.heap.extend(by) };
        }
        self.end = want;
        true
    }

    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if self.end != 0
            && let Ok(p) = self.heap.allocate_first_fit(layout)
        {
            return Some(p);
        }
        // A fresh range this large holds the block at any alignment; it
        // joins a free block ending at the old top, if there is one.
        let need = (layout.size() as u64)
            .checked_add(layout.align() as u64)?
            .checked_add(HOLE_SLACK)?;
        if !self.grow(need) {
            return None;
        }
        self.heap.allocate_first_fit(layout).ok()
    }
}

// SAFETY: every block comes from `allocate_first_fit` of the one heap,
// whose free list only holds memory granted by brk and not handed out, so
// blocks are live, suitably sized and aligned, and never overlap; `dealloc`
// returns a block to the list only under GlobalAlloc's contract (allocated
// here with the same layout). The mutex serialises all use of the heap.
unsafe impl GlobalAlloc for BrkHeap {
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
        // above with this layout, i.e. by this heap's
        // `allocate_first_fit`, and is not used after this call.
        unsafe { self.0.lock().heap.deallocate(ptr, layout) };
    }
}

#[global_allocator]
static HEAP: BrkHeap = BrkHeap(Mutex::new(Inner {
    heap: Heap::empty(),
    end: 0,
}));
