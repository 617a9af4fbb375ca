//! The mTHP policy for the benchmark, through the knobs and counters of
//! [`folium_programs::thp`] (the same files on Folium and on Linux): one
//! folio size per measurement, the counters that prove which size was
//! used, and Folium's own batching switch.

use alloc::string::String;

use folium_programs::thp::{self, CONTPTE, CONTPTE_FORK_PER_PTE, PTE_BATCHING};
use folium_programs::{read_file, write_file};

pub use folium_programs::thp::{Policy, SIZES as LARGE_KB};

/// Every knob's setting; `None` if the files are missing (no mTHP
/// support: a kernel older than Linux 6.8, or sysfs not mounted).
pub fn save() -> Option<Policy> {
    thp::save_policy().ok()
}

/// Puts every knob back as [`save`] found it.
pub fn restore((top, sizes): &Policy) -> Result<(), String> {
    let sizes: alloc::vec::Vec<&str> = sizes.iter().map(String::as_str).collect();
    thp::apply_policy(top, &sizes)
}

/// The policy for measuring folios of `kb` kB: the top level `never`,
/// that size `always`, every other size `never` (4 kB: every size
/// `never`, so faults take order 0).
pub fn use_only(kb: u64) -> Result<(), String> {
    thp::apply_policy("never", &thp::only(kb))
}

/// `anon_fault_alloc` of every large size, in [`LARGE_KB`] order, read
/// without touching the heap (a heap page faulted between two readings
/// could itself be a counted folio); all 0 where unreadable.
pub fn fault_allocs() -> [u64; 8] {
    thp::allocs().unwrap_or([0; 8])
}

/// Folium's batching switch (`/sys/kernel/mm/folium/pte_batching`: 1
/// batches fork and zap over large folios, 0 goes PTE by PTE), `None`
/// where there is none (Linux).
pub fn batching() -> Option<bool> {
    Some(read_file(PTE_BATCHING)?.trim() == "1")
}

/// Sets Folium's batching switch.
pub fn set_batching(on: bool) -> Result<(), String> {
    write_file(PTE_BATCHING, 1, if on { b"1" } else { b"0" })
        .map(|_| ())
        .map_err(|e| alloc::format!("pte_batching: {e}"))
}

/// A `0`/`1` switch of Folium's: its setting, `None` where it is missing.
fn switch(path: &core::ffi::CStr) -> Option<bool> {
    Some(read_file(path)?.trim() == "1")
}

/// Sets a `0`/`1` switch of Folium's.
fn set_switch(path: &core::ffi::CStr, on: bool) -> Result<(), String> {
    write_file(path, 1, if on { b"1" } else { b"0" })
        .map(|_| ())
        .map_err(|e| alloc::format!("{path:?}: {e}"))
}

/// Folium's contiguous-PTE switch (`1`: fold 64 KiB blocks), `None`
/// where there is none (x86, Linux).
pub fn contpte() -> Option<bool> {
    switch(CONTPTE)
}

/// Sets Folium's contiguous-PTE switch.
pub fn set_contpte(on: bool) -> Result<(), String> {
    set_switch(CONTPTE, on)
}

/// Whether Folium's fork write-protects folded blocks PTE by PTE (`1`,
/// unfolding each) rather than as a whole (`0`); `None` where missing.
pub fn contpte_fork_per_pte() -> Option<bool> {
    switch(CONTPTE_FORK_PER_PTE)
}

/// Sets how Folium's fork write-protects folded blocks.
pub fn set_contpte_fork_per_pte(per_pte: bool) -> Result<(), String> {
    set_switch(CONTPTE_FORK_PER_PTE, per_pte)
}
