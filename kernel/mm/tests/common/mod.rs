//! Fixtures the host test binaries share: an arena standing in for
//! physical memory (filled with garbage, so a table nobody zeroed shows
//! up), a bump allocator of table frames over it, and a strategy for
//! arbitrary leaf attributes. Each test binary uses part of it.
#![allow(dead_code)]

pub mod hostenv;

/// `#[test]`s named `$x86` and `$arm` running the generic test function
/// `$generic::<F>()` on the x86-64 and the arm64 PTE format.
#[allow(unused_macros)]
macro_rules! on_both_formats {
    ($generic:ident: $x86:ident, $arm:ident) => {
        #[test]
        fn $x86() {
            $generic::<folium_mm::pgtable::X86_64>();
        }

        #[test]
        fn $arm() {
            $generic::<folium_mm::pgtable::Aarch64>();
        }
    };
}

use std::alloc::{Layout, alloc, dealloc};

use folium_mm::PAGE_SIZE;
use folium_mm::PhysAddr;
use folium_mm::pgtable::{Attrs, MemType, TableAlloc};
use folium_mm::phys::LinearMap;
use proptest::prelude::*;

/// Fake physical address of the arena's first byte.
pub const FAKE_BASE: u64 = 0x8000_0000;

/// "Physical memory" for page tables: page-aligned host memory filled with
/// garbage.
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    pub fn new(bytes: usize) -> Arena {
        let layout = Layout::from_size_align(bytes, PAGE_SIZE as usize).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` is valid for `bytes` writes.
        unsafe { ptr.write_bytes(0xa5, bytes) };
        Arena { ptr, layout }
    }

    /// Bytes in the arena.
    pub fn size(&self) -> usize {
        self.layout.size()
    }

    pub fn linear_map(&self) -> LinearMap {
        // SAFETY: every table frame handed out by `frames` lies inside the
        // arena, which each test keeps alive longer than its page table; the
        // base is derived from the arena's pointer.
        unsafe { LinearMap::from_base(self.ptr.wrapping_sub(FAKE_BASE as usize)) }
    }

    /// A bump allocator over the arena, limited to `budget` frames.
    pub fn frames(&self, budget: usize) -> Frames {
        Frames {
            next: FAKE_BASE,
            end: FAKE_BASE + self.layout.size() as u64,
            budget,
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// Table frames from an [`Arena`], each handed out once.
pub struct Frames {
    next: u64,
    end: u64,
    pub budget: usize,
}

// SAFETY: frames come from the arena (mapped by `Arena::linear_map`), each
// handed out once, page aligned.
unsafe impl TableAlloc for Frames {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if self.budget == 0 || self.next >= self.end {
            return None;
        }
        self.budget -= 1;
        let pa = self.next;
        self.next += PAGE_SIZE;
        Some(PhysAddr::new(pa))
    }
}

/// A proptest configuration of `n` cases natively, and a 64th of that
/// (at least one) under Miri, which runs these tests thousands of times
/// slower: every property still runs there, on fewer random inputs. Miri
/// (isolated from the host: no working directory) neither reads nor
/// writes the saved regressions; native runs replay them.
pub fn cases(n: u32) -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: (n / 64).max(1),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::with_cases(n)
    }
}

/// Arbitrary leaf attributes a format `F` can encode at L3 (protnone
/// included; above L3 clear it).
pub fn attrs() -> impl Strategy<Value = Attrs> {
    let mem = prop_oneof![
        Just(MemType::Normal),
        Just(MemType::Device),
        Just(MemType::NormalNonCacheable)
    ];
    (any::<[bool; 6]>(), mem, 0u8..4).prop_map(|(b, mem, pn)| Attrs {
        writable: b[0],
        user: b[1],
        exec: b[2],
        global: b[3],
        young: b[4],
        dirty: b[5],
        mem,
        protnone: pn == 0,
    })
}

/// The length range of a random history of at most `n` operations: the
/// whole range natively, and at most 12 under Miri, where one history of
/// 50 operations over two 32 MiB machines takes over half an hour. Miri
/// looks for undefined behaviour on each path the operations take, and
/// short histories take the same paths.
pub fn history_len(n: usize) -> core::ops::Range<usize> {
    if cfg!(miri) { 1..n.min(12) } else { 1..n }
}
