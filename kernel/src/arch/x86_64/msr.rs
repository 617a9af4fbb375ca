//! Model-specific registers through the `x86_64` crate's `Msr`: a read
//! without side effects is offered as safe, a write stays `unsafe`.

use x86_64::registers::model_specific::Msr;

/// Reads MSR `msr`.
pub(super) fn read(msr: u32) -> u64 {
    // SAFETY: the callers read architectural MSRs the CPU implements
    // (EFER, the APIC base, x2APIC registers once enabled); a read has no
    // memory effects.
    unsafe { Msr::new(msr).read() }
}

/// Writes `v` to MSR `msr`.
///
/// # Safety
///
/// Writing an MSR changes how the CPU behaves: the caller must know the
/// value is right for `msr`.
pub(super) unsafe fn write(msr: u32, v: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { Msr::new(msr).write(v) };
}
