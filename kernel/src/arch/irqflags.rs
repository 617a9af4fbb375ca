//! Interrupt masking, the one part of the arch contract the kernel's
//! locks (`crate::sync`) build on: a leaf room, so the locks, and the
//! console behind them, need not import the whole arch facade.

#[cfg(target_arch = "aarch64")]
pub use super::aarch64::irqflags::{IrqFlags, irq_restore, irq_save};
#[cfg(target_arch = "x86_64")]
pub use super::x86_64::irqflags::{IrqFlags, irq_restore, irq_save};
