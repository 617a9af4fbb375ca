//! The kernel side of memory management: finding free RAM at boot, the
//! global frame allocator, and the kernel's own page tables. The mechanisms
//! themselves (memmap, buddy, folios, page-table formats) live in
//! `folium-mm`; this module wires them to the machine.

pub mod audit;
pub mod bench;
#[cfg(target_arch = "aarch64")]
mod contpte_tests;
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

/// Whether arm64 folds whole 64 KiB blocks of one folio (contpte; the
/// `/sys/kernel/mm/folium/contpte` control file and the `contpte=`
/// command-line word; on by default). Meaningless on x86.
static CONTPTE: AtomicBool = AtomicBool::new(true);

/// For measurement only: fork unfolds folded blocks and write-protects
/// them entry by entry (`/sys/kernel/mm/folium/contpte_fork_per_pte`).
static CONTPTE_FORK_PER_PTE: AtomicBool = AtomicBool::new(false);

/// The folding policy the knobs select.
pub fn fold_policy() -> folium_mm::pgtable::FoldPolicy {
    folium_mm::pgtable::FoldPolicy {
        fold: CONTPTE.load(Relaxed),
        fork_per_pte: CONTPTE_FORK_PER_PTE.load(Relaxed),
    }
}

/// Turns folding of new blocks on or off; blocks folded already stay
/// folded until something changes part of them.
pub fn set_contpte(on: bool) {
    CONTPTE.store(on, Relaxed);
}

/// Selects fork's per-entry write-protection of folded blocks.
pub fn set_contpte_fork_per_pte(on: bool) {
    CONTPTE_FORK_PER_PTE.store(on, Relaxed);
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
