//! Masking interrupts on this CPU (Linux `arch_local_irq_save`): DAIF's
//! I and F bits. A leaf: what `IrqMutex` is built on imports nothing
//! else of the kernel.

use aarch64_cpu::registers::{DAIF, Readable};
use core::arch::asm;

/// The interrupt mask as it was before [`irq_save`] (DAIF).
#[derive(Clone, Copy, Debug)]
#[must_use = "restore the interrupt state with irq_restore"]
pub struct IrqFlags(u64);

/// Masks IRQ and FIQ and returns the previous mask.
#[inline]
pub fn irq_save() -> IrqFlags {
    let daif = DAIF.get();
    // SAFETY: masking interrupts only delays them; memory accesses are not
    // moved across this (no `nomem`), so a critical section stays inside
    // it.
    unsafe { asm!("msr daifset, #3", options(nostack)) };
    IrqFlags(daif)
}

/// Restores the interrupt mask [`irq_save`] returned.
#[inline]
pub fn irq_restore(flags: IrqFlags) {
    // A raw `msr` rather than aarch64-cpu's `DAIF.set`: the crate's write
    // is `nomem` to the compiler, which may then move it above the
    // critical section's loads and stores (a compiler fence orders memory
    // accesses, not a `nomem` asm). Without `nomem` it stays after them.
    // SAFETY: writes back the DAIF value irq_save read on this CPU.
    unsafe { asm!("msr daif, {}", in(reg) flags.0, options(nostack)) };
}
