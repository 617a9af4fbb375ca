//! Time from the generic timer's virtual counter (CNTVCT_EL0).

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, Readable};

/// Counter ticks since boot, ordered after earlier instructions.
#[inline]
pub fn ticks() -> u64 {
    // `isb` keeps the counter read from being hoisted above the code being
    // timed.
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// Counter frequency in Hz.
pub fn ticks_per_sec() -> u64 {
    CNTFRQ_EL0.get()
}

/// Prepares the clock (nothing to do on aarch64).
pub fn init() {}

/// A short description for reports.
pub fn describe() -> alloc::string::String {
    alloc::format!("CNTVCT_EL0 at {} MHz", ticks_per_sec() / 1_000_000)
}
