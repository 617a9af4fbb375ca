//! Physical memory access through the linear map.
//!
//! The kernel maps all RAM at a fixed virtual offset, so a physical address
//! becomes a pointer by one addition. Host tests allocate one arena and pick
//! the offset that makes a chosen fake physical range land in it: the same
//! mm code then runs unchanged in `cargo test`.

use crate::addr::PhysAddr;

/// Turns physical addresses into pointers by adding a fixed offset.
///
/// The offset is kept as a pointer (the address physical 0 would have)
/// so that every pointer made from it carries its provenance: in host
/// tests the arena's allocation, so Miri checks each table and page access
/// against the arena rather than guessing from a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearMap {
    base: *mut u8,
}

// SAFETY: a `LinearMap` only computes pointers; it grants no access by
// itself (dereferencing is the caller's business, under the contract of
// `LinearMap::new`), so sharing or sending it between CPUs is harmless.
unsafe impl Send for LinearMap {}
// SAFETY: as for `Send`: no method reads or writes through `base`.
unsafe impl Sync for LinearMap {}

impl LinearMap {
    /// A linear map where physical address `pa` is at virtual `pa + offset`
    /// (wrapping arithmetic, so a host arena below the fake physical base works).
    ///
    /// # Safety
    ///
    /// Every physical address later passed to [`LinearMap::ptr`] for RAM the
    /// mm code manages must be mapped, readable and writable at that offset
    /// for as long as the map is used.
    ///
    /// The kernel's linear map is set up by the boot code, outside any
    /// Rust allocation: its pointers take the exposed provenance of that
    /// memory.
    pub unsafe fn new(offset: u64) -> Self {
        Self {
            base: core::ptr::with_exposed_provenance_mut(offset as usize),
        }
    }

    /// A linear map where physical address `pa` is at `base + pa`
    /// (wrapping), every pointer it makes derived from `base`: for host
    /// tests, `base` is the arena's pointer moved down by its fake physical
    /// address, so each access stays within the arena's provenance.
    ///
    /// # Safety
    ///
    /// As for [`LinearMap::new`]: every physical address later passed to
    /// [`LinearMap::ptr`] for RAM the mm code manages must land in memory
    /// `base`'s provenance allows reading and writing, for as long as the
    /// map is used.
    pub const unsafe fn from_base(base: *mut u8) -> Self {
        Self { base }
    }

    /// The offset added to a physical address.
    pub fn offset(&self) -> u64 {
        self.base.addr() as u64
    }

    /// The virtual address at which `pa` is mapped, as a raw pointer.
    /// Making the pointer is safe; dereferencing it is the caller's business.
    #[inline]
    pub fn ptr<T>(&self, pa: PhysAddr) -> *mut T {
        self.base.wrapping_add(pa.as_u64() as usize).cast()
    }

    /// The physical address of a pointer into the linear map.
    #[inline]
    pub fn phys_of<T>(&self, p: *const T) -> PhysAddr {
        PhysAddr::new((p.addr() as u64).wrapping_sub(self.offset()))
    }
}
