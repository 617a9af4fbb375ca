//! The 16550 UART at COM1 (I/O port 0x3f8), transmit only.

use x86_64::instructions::port::Port;

/// COM1.
pub struct Com1;

const BASE: u16 = 0x3f8;

impl Com1 {
    /// Programs 115200 8N1 with FIFOs (QEMU needs none of it; hardware does).
    pub fn init() -> Self {
        // SAFETY: COM1's registers are standard on PC-compatible boards.
        unsafe {
            Port::<u8>::new(BASE + 1).write(0x00); // no interrupts
            Port::<u8>::new(BASE + 3).write(0x80); // DLAB
            Port::<u8>::new(BASE).write(0x01); // divisor 1: 115200
            Port::<u8>::new(BASE + 1).write(0x00);
            Port::<u8>::new(BASE + 3).write(0x03); // 8N1
            Port::<u8>::new(BASE + 2).write(0xc7); // FIFOs on, cleared
        }
        Com1
    }
}

impl crate::console::Uart for Com1 {
    fn put(&mut self, b: u8) {
        // SAFETY: as in `init`.
        unsafe {
            while Port::<u8>::new(BASE + 5).read() & 0x20 == 0 {}
            Port::<u8>::new(BASE).write(b);
        }
    }
}
