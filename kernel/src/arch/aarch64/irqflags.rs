//! Masking interrupts on this CPU (Linux `arch_local_irq_save`): DAIF's
//! I and F bits. A leaf: what `IrqMutex` is built on imports nothing
//! else of the kernel.

use core::arch::asm;
use core::sync::atomic::{Ordering, compiler_fence};

use aarch64_cpu::registers::{DAIF, Readable, Writeable};

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
    // The register write is `nomem` to the compiler: the fence keeps the
    // critical section's memory accesses before the unmasking.
    compiler_fence(Ordering::SeqCst);
    // Writes back the DAIF value read by irq_save on this CPU.
    DAIF.set(flags.0);
}
