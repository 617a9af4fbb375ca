//! The BCM2836 ARM-local peripherals block (Pi 3, at 0x4000_0000): each
//! core's generic-timer interrupts pass through its "core timers interrupt
//! control" register to that core's IRQ or FIQ line, and its "IRQ source"
//! register says which source is asserting.

use aarch64_cpu::registers::{MPIDR_EL1, Readable};

use super::irq::Irq;

/// The source bit (in both registers) of the EL1 virtual timer, CNTVIRQ.
pub const CNTV_SOURCE: u32 = 3;
/// Core n's timers interrupt control register: bits 0..3 route a timer to
/// IRQ, bits 4..7 to FIQ (which wins).
const TIMER_CONTROL: u64 = 0x40;
/// Core n's IRQ source register.
const IRQ_SOURCE: u64 = 0x60;

/// The controller at a mapped address.
pub struct LocalIntc {
    base: u64,
}

fn core() -> u64 {
    MPIDR_EL1.read(MPIDR_EL1::Aff0) & 3
}

impl LocalIntc {
    /// # Safety
    ///
    /// `base` must be where the block's first 4 KiB are mapped as device
    /// memory whenever the driver is used.
    pub const unsafe fn new(base: u64) -> Self {
        LocalIntc { base }
    }

    fn reg(&self, off: u64) -> *mut u32 {
        (self.base + off + 4 * core()) as *mut u32
    }

    /// Routes this core's CNTV interrupt to its IRQ line.
    pub fn enable_timer(&self) -> Result<(), &'static str> {
        let r = self.reg(TIMER_CONTROL);
        // SAFETY: this core's own control register, mapped (constructor
        // contract); it only routes the core's timer interrupts.
        let v = unsafe {
            let v = (r.read_volatile() & !(1 << (CNTV_SOURCE + 4))) | (1 << CNTV_SOURCE);
            r.write_volatile(v);
            r.read_volatile()
        };
        if v & (1 << CNTV_SOURCE) == 0 {
            return Err("the core timer control register did not take CNTVIRQ");
        }
        Ok(())
    }

    /// The timer's interrupt if it is asserting (it stays asserted until
    /// the timer's deadline moves: no acknowledge or end is needed).
    pub fn pending_timer(&self) -> Option<Irq> {
        // SAFETY: reading this core's IRQ source register has no effects.
        let src = unsafe { self.reg(IRQ_SOURCE).read_volatile() };
        (src & (1 << CNTV_SOURCE) != 0).then_some(Irq(CNTV_SOURCE))
    }
}
