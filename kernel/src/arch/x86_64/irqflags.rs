//! Masking interrupts on this CPU (Linux `arch_local_irq_save`):
//! RFLAGS.IF. A leaf: what `IrqMutex` is built on imports nothing else of
//! the kernel.

use core::arch::asm;

/// The interrupt flag as it was before [`irq_save`] (RFLAGS.IF).
#[derive(Clone, Copy, Debug)]
#[must_use = "restore the interrupt state with irq_restore"]
pub struct IrqFlags(u64);

/// Disables interrupts and returns the previous RFLAGS.
#[inline]
pub fn irq_save() -> IrqFlags {
    let rflags: u64;
    // SAFETY: reading RFLAGS and clearing IF only delays interrupts; memory
    // accesses are not moved across this (no `nomem`).
    unsafe { asm!("pushfq", "pop {}", "cli", out(reg) rflags, options(preserves_flags)) };
    IrqFlags(rflags)
}

/// Re-enables interrupts if [`irq_save`] found them enabled.
#[inline]
pub fn irq_restore(flags: IrqFlags) {
    if flags.0 & (1 << 9) != 0 {
        // SAFETY: interrupts were enabled before the matching irq_save.
        unsafe { asm!("sti", options(nostack)) };
    }
}
