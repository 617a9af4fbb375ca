//! Folium's architecture-independent memory management.
//!
//! Everything here runs both in the kernel and on the host (`cargo test`):
//! no assembly, no `target_arch` gates. Hardware is reached only through the
//! [`phys::LinearMap`] (physical address -> pointer) and small traits that the
//! kernel implements per architecture and the tests implement with models.
//!
//! `unsafe` is denied here except in the modules that touch memory, each
//! marked where it is declared: the linear map (`phys`), the descriptor
//! array (`memmap`), folio handles and contents (`folio`), the page-table
//! walker, cursor and mapper (`pgtable`), and the gather, which turns
//! cleared entries back into folio references (`mmu_gather`). Everything
//! else, the address space's faults, fork and zap included, is safe code.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod addr;
pub mod asid;
pub mod aspace;
pub mod audit;
pub mod buddy;
mod deferred_split;
pub mod env;
#[allow(unsafe_code)]
pub mod folio;
#[allow(unsafe_code)]
pub mod memmap;
#[allow(unsafe_code)]
pub mod mmu_gather;
pub mod pcp;
pub mod pgtable;
#[allow(unsafe_code)]
pub mod phys;
pub mod ptdump;
pub mod split;
pub mod stats;
pub mod thp;
pub mod tlb;
pub mod views;
pub mod vma;

pub use addr::{Order, PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
