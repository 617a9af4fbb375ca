//! Time from the generic timer's virtual counter (CNTVCT_EL0).

use core::arch::asm;

/// Counter ticks since boot, ordered after earlier instructions.
#[inline]
pub fn ticks() -> u64 {
    let v: u64;
    // SAFETY: the virtual counter is readable at EL1; `isb` keeps the read
    // from being hoisted above the code being timed.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Counter frequency in Hz.
pub fn ticks_per_sec() -> u64 {
    let f: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL1.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags)) };
    f
}

/// Prepares the clock (nothing to do on aarch64).
pub fn init() {}

/// A short description for reports.
pub fn describe() -> alloc::string::String {
    alloc::format!("CNTVCT_EL0 at {} MHz", ticks_per_sec() / 1_000_000)
}
