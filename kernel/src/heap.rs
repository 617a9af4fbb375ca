//! The kernel heap behind `#[global_allocator]`: a buddy-system heap
//! (`buddy_system_allocator`) over a static arena in `.bss`.

use buddy_system_allocator::LockedHeap;

const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the arena to the heap. Called once, before any allocation.
pub fn init() {
    // SAFETY: called once at boot; the arena is used by nothing else and
    // lives for the whole run.
    unsafe {
        let start = (&raw mut ARENA) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// Bytes currently allocated from the heap.
pub fn used() -> usize {
    HEAP.lock().stats_alloc_actual()
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
