//! Folium's architecture-independent memory management.
//!
//! Everything here runs both in the kernel and on the host (`cargo test`):
//! no assembly, no `target_arch` gates. Hardware is reached only through the
//! [`phys::LinearMap`] (physical address -> pointer) and small traits that the
//! kernel implements per architecture and the tests implement with models.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod addr;
pub mod asid;
pub mod aspace;
pub mod buddy;
mod deferred_split;
pub mod env;
pub mod folio;
pub mod memmap;
pub mod mmu_gather;
pub mod pgtable;
pub mod phys;
pub mod split;
pub mod stats;
pub mod thp;
pub mod tlb;
pub mod vma;

pub use addr::{Order, PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
