//! Physical memory access through the linear map.
//!
//! The kernel maps all RAM at a fixed virtual offset, so a physical address
//! becomes a pointer by one addition. Host tests allocate one arena and pick
//! the offset that makes a chosen fake physical range land in it: the same
//! mm code then runs unchanged in `cargo test`.

use crate::addr::PhysAddr;

/// Turns physical addresses into pointers by adding a fixed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearMap {
    offset: u64,
}

impl LinearMap {
    /// A linear map where physical address `pa` is at virtual `pa + offset`
    /// (wrapping arithmetic, so a host arena below the fake physical base works).
    ///
    /// # Safety
    ///
    /// Every physical address later passed to [`LinearMap::ptr`] for RAM the
    /// mm code manages must be mapped, readable and writable at that offset
    /// for as long as the map is used.
    pub const unsafe fn new(offset: u64) -> Self {
        Self { offset }
    }

    /// The offset added to a physical address.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// The virtual address at which `pa` is mapped, as a raw pointer.
    /// Making the pointer is safe; dereferencing it is the caller's business.
    #[inline]
    pub fn ptr<T>(&self, pa: PhysAddr) -> *mut T {
        pa.as_u64().wrapping_add(self.offset) as *mut T
    }

    /// The physical address of a pointer into the linear map.
    #[inline]
    pub fn phys_of<T>(&self, p: *const T) -> PhysAddr {
        PhysAddr::new((p as u64).wrapping_sub(self.offset))
    }
}
