//! The Arm PL011 UART (virt, Raspberry Pi UART0), transmit only.

use crate::console::Uart;

/// A PL011 at a mapped MMIO address.
pub struct Pl011 {
    base: *mut u32,
}

// SAFETY: the device is only reached through the console lock.
unsafe impl Send for Pl011 {}

const DR: usize = 0;
const FR: usize = 0x18 / 4;
const FR_TXFF: u32 = 1 << 5;

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the device-memory mapping of a PL011's registers.
    pub const unsafe fn new(base: *mut u32) -> Self {
        Self { base }
    }
}

impl Uart for Pl011 {
    fn put(&mut self, b: u8) {
        // SAFETY: `base` maps the PL011 registers (constructor contract).
        unsafe {
            while self.base.add(FR).read_volatile() & FR_TXFF != 0 {}
            self.base.add(DR).write_volatile(u32::from(b));
        }
    }
}
