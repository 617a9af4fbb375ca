//! The BCM2836 ARM-local peripherals block (Pi 3, at 0x4000_0000): each
//! core's generic-timer interrupts pass through its "core timers interrupt
//! control" register to that core's IRQ or FIQ line, and its "IRQ source"
//! register says which source is asserting.

use aarch64_cpu::registers::{MPIDR_EL1, Readable};

use super::irq::Irq;

/// The source bit (in both registers) of the EL1 virtual timer, CNTVIRQ.
pub const CNTV_SOURCE: u32 = 3;
/// The IRQ-source bit of a core's mailbox 0, which carries the IPI.
pub const MAILBOX0_SOURCE: u32 = 4;
/// Core n's mailbox interrupt control: bit 0 routes mailbox 0 to IRQ.
const MAILBOX_CONTROL: u64 = 0x50;
/// Core n's mailbox 0 write-set register (16 bytes a core).
const MAILBOX0_SET: u64 = 0x80;
/// Core n's mailbox 0 read/write-clear register (16 bytes a core).
const MAILBOX0_CLEAR: u64 = 0xc0;
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

    /// Routes this core's mailbox 0 to its IRQ line (the IPI).
    pub fn enable_ipi(&self) -> Result<(), &'static str> {
        let r = self.reg(MAILBOX_CONTROL);
        // SAFETY: this core's own mailbox control register (constructor
        // contract); it only routes the core's mailbox interrupts.
        let v = unsafe {
            r.write_volatile(r.read_volatile() | 1);
            r.read_volatile()
        };
        if v & 1 == 0 {
            return Err("the mailbox control register did not take mailbox 0");
        }
        Ok(())
    }

    /// Sends the IPI to core `core` (its MPIDR Aff0): sets a bit of its
    /// mailbox 0.
    pub fn send_ipi(&self, core: u64) {
        let r = (self.base + MAILBOX0_SET + 16 * (core & 3)) as *mut u32;
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
        // SAFETY: a write-set register of the mapped block: it only raises
        // that core's mailbox interrupt.
        unsafe { r.write_volatile(1) };
    }

    /// The interrupt asserting now, if any: the timer's (asserted until
    /// its deadline moves), else the IPI, whose mailbox is cleared here,
    /// before it is handled, so an IPI sent meanwhile raises it again.
    pub fn pending(&self) -> Option<Irq> {
        // SAFETY: reading this core's IRQ source register has no effects.
        let src = unsafe { self.reg(IRQ_SOURCE).read_volatile() };
        if src & (1 << CNTV_SOURCE) != 0 {
            return Some(Irq(CNTV_SOURCE));
        }
        if src & (1 << MAILBOX0_SOURCE) != 0 {
            let clear = (self.base + MAILBOX0_CLEAR + 16 * core()) as *mut u32;
            // SAFETY: this core's own mailbox 0: writing ones clears it.
            unsafe { clear.write_volatile(u32::MAX) };
            // The clear lands before the handler reads what was posted:
            // a post after that read raises the mailbox again.
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
            return Some(Irq(MAILBOX0_SOURCE));
        }
        None
    }
}
