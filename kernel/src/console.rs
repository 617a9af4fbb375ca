//! The kernel console: `print!`/`println!` onto the board's UART.

use alloc::boxed::Box;
use core::fmt::{self, Write};

use crate::sync::IrqMutex;

/// A character sink the platform installs (PL011, 16550 ...).
pub trait Uart: Send {
    /// Writes one byte, waiting while the transmitter is full.
    fn put(&mut self, b: u8);
}

struct Console {
    uart: Option<Box<dyn Uart>>,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(u) = self.uart.as_mut() {
            for b in s.bytes() {
                if b == b'\n' {
                    u.put(b'\r');
                }
                u.put(b);
            }
        }
        Ok(())
    }
}

static CONSOLE: IrqMutex<Console> = IrqMutex::new(Console { uart: None });

/// Installs the UART all later output goes to.
pub fn set_uart(uart: Box<dyn Uart>) {
    CONSOLE.lock().uart = Some(uart);
}

/// Breaks the console lock so a panic or fatal trap can always print.
pub fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: called only on the way to stopping the machine (panic,
        // fatal exception), where the interrupted holder never resumes.
        unsafe { CONSOLE.force_unlock() };
    }
}

/// Writes raw bytes (a user program's output), turning `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    let mut c = CONSOLE.lock();
    if let Some(u) = c.uart.as_mut() {
        for &b in bytes {
            if b == b'\n' {
                u.put(b'\r');
            }
            u.put(b);
        }
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints to the console.
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
