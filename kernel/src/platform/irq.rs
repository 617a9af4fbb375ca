//! The interrupt number every aarch64 controller driver hands back, in a
//! room of its own so the drivers (`gic.rs`, `bcm2836_local.rs`) and the
//! dispatcher over them (`irqchip.rs`) need not import one another.

/// An acknowledged interrupt, as the controller names it (the raw GIC
/// acknowledge value, or the local controller's source bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq(pub u32);
