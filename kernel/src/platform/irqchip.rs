//! The aarch64 board's interrupt controller, chosen by the board code at
//! boot (virt: the DTB's GIC; Pi 4: its GIC-400; Pi 3: the BCM2836 ARM-local
//! block), behind the three operations the kernel needs: route the timer,
//! acknowledge, end.

use super::bcm2836_local::LocalIntc;
use super::gic::{GicV2, GicV3};
pub use super::irq::Irq;

/// A controller driver.
pub enum Chip {
    /// GICv2 / GIC-400.
    GicV2(GicV2),
    /// GICv3.
    GicV3(GicV3),
    /// BCM2836 ARM-local interrupt controller.
    Local(LocalIntc),
}

static CHIP: spin::Once<Chip> = spin::Once::new();

/// Records the board's controller (once; later calls are ignored).
pub fn set(chip: Chip) {
    CHIP.call_once(|| chip);
}

/// A short name for reports.
pub fn name() -> &'static str {
    match CHIP.get() {
        Some(Chip::GicV2(_)) => "GICv2",
        Some(Chip::GicV3(_)) => "GICv3",
        Some(Chip::Local(_)) => "BCM2836 local",
        None => "none",
    }
}

/// Enables the controller and routes the EL1 virtual timer's interrupt to
/// this CPU's IRQ line.
pub fn enable_timer() -> Result<(), &'static str> {
    match CHIP.get() {
        Some(Chip::GicV2(g)) => g.enable_ppi(super::gic::TIMER_PPI),
        Some(Chip::GicV3(g)) => g.enable_ppi(super::gic::TIMER_PPI),
        Some(Chip::Local(l)) => l.enable_timer(),
        None => Err("the board has no known interrupt controller"),
    }
}

/// The highest-priority pending interrupt, acknowledged, if any.
pub fn ack() -> Option<Irq> {
    match CHIP.get()? {
        Chip::GicV2(g) => g.ack(),
        Chip::GicV3(g) => g.ack(),
        Chip::Local(l) => l.pending(),
    }
}

/// Ends the handling of `irq`.
pub fn eoi(irq: Irq) {
    match CHIP.get() {
        Some(Chip::GicV2(g)) => g.eoi(irq),
        Some(Chip::GicV3(g)) => g.eoi(irq),
        // Level-triggered sources, cleared at the device.
        Some(Chip::Local(_)) | None => {}
    }
}

/// Whether `irq` is the timer's.
pub fn is_timer(irq: Irq) -> bool {
    match CHIP.get() {
        Some(Chip::GicV2(_)) | Some(Chip::GicV3(_)) => {
            irq.0 & super::gic::INTID_MASK == super::gic::TIMER_PPI
        }
        Some(Chip::Local(_)) => irq.0 == super::bcm2836_local::CNTV_SOURCE,
        None => false,
    }
}

/// Enables the IPI on this CPU (kernel index `index`).
pub fn enable_ipi(index: usize) -> Result<(), &'static str> {
    match CHIP.get() {
        Some(Chip::GicV2(g)) => g.enable_ipi(index),
        Some(Chip::GicV3(g)) => g.enable_ppi(super::gic::IPI_SGI),
        Some(Chip::Local(l)) => l.enable_ipi(),
        None => Err("the board has no known interrupt controller"),
    }
}

/// Sends the IPI to CPU `index`, whose MPIDR affinity is `mpidr`.
pub fn send_ipi(index: usize, mpidr: u64) -> Result<(), &'static str> {
    match CHIP.get() {
        Some(Chip::GicV2(g)) => g.send_ipi(index),
        Some(Chip::GicV3(g)) => g.send_ipi(mpidr),
        Some(Chip::Local(l)) => {
            l.send_ipi(mpidr);
            Ok(())
        }
        None => Err("the board has no known interrupt controller"),
    }
}

/// Whether `irq` is the IPI.
pub fn is_ipi(irq: Irq) -> bool {
    match CHIP.get() {
        // GICv2's acknowledge value carries the sender in bits 12:10.
        Some(Chip::GicV2(_)) => irq.0 & 0x3ff == super::gic::IPI_SGI,
        Some(Chip::GicV3(_)) => irq.0 & super::gic::INTID_MASK == super::gic::IPI_SGI,
        Some(Chip::Local(_)) => irq.0 == super::bcm2836_local::MAILBOX0_SOURCE,
        None => false,
    }
}
