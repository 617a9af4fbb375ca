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
        Chip::Local(l) => l.pending_timer(),
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
