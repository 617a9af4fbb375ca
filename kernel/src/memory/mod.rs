//! The kernel side of memory management: finding free RAM at boot, the
//! global frame allocator, and the kernel's own page tables. The mechanisms
//! themselves (memmap, buddy, folios, page-table formats) live in
//! `folium-mm`; this module wires them to the machine.

pub mod bench;
pub mod frames;
mod kmap;
pub mod kstack;
mod tests;
pub mod uspace;
mod uspace_tests;

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use folium_boot::BootInfo;

use folium_mm::thp::ThpPolicy;

use crate::platform::Board;

/// The transparent-hugepage knobs and counters (Linux's sysfs files).
pub static THP: ThpPolicy = ThpPolicy::new();

/// Whether fork and zap batch runs of PTEs over large folios (the
/// `/sys/kernel/mm/folium/pte_batching` control file; on by default).
static BATCHING: AtomicBool = AtomicBool::new(true);

/// The batching switch.
pub fn batching() -> bool {
    BATCHING.load(Relaxed)
}

/// Turns batching on or off (takes effect at the next fork or unmap).
pub fn set_batching(on: bool) {
    BATCHING.store(on, Relaxed);
}

/// Brings up physical memory management and switches to the kernel's own
/// page tables. Prints the memmap size and the free lists.
pub fn init(info: &BootInfo, board: &Board) {
    let plan = frames::init(info, board);
    kmap::init(info, board);
    kstack::init();
    uspace::init();
    frames::add_deferred(&plan);
    frames::print_report(&plan);
}
