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

/// The pid whose `write`/`writev` owns the console (0: none). A write
/// has preemption points between chunks; like Linux's tty
/// `atomic_write_lock`, this keeps another process's write from landing
/// in the middle of it (kernel messages still may).
static WRITER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Claims the console for `pid`'s write: `Some(true)` if claimed now
/// (release it with [`release_writer`]), `Some(false)` if `pid` holds it
/// already (an outer `writev`), `None` if another write holds it.
pub fn claim_writer(pid: u32) -> Option<bool> {
    use core::sync::atomic::Ordering::Relaxed;
    match WRITER.compare_exchange(0, pid, Relaxed, Relaxed) {
        Ok(_) => Some(true),
        Err(p) if p == pid => Some(false),
        Err(_) => None,
    }
}

/// Ends `pid`'s claim of the console.
pub fn release_writer(pid: u32) {
    use core::sync::atomic::Ordering::Relaxed;
    let _ = WRITER.compare_exchange(pid, 0, Relaxed, Relaxed);
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
