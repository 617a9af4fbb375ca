//! Console output: `print!`, `println!`, `eprintln!` on fds 1 and 2.
//! Each call formats into a stack buffer and writes it with as few
//! `write` calls as fit, so lines from different processes rarely mix.

use core::fmt::{self, Write};

/// Formats into a fixed buffer, flushing to `fd` when full.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 256],
    len: usize,
}

impl FdWriter {
    /// A writer on `fd`.
    pub const fn new(fd: i32) -> Self {
        Self {
            fd,
            buf: [0; 256],
            len: 0,
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        let mut off = 0;
        while off < self.len {
            match crate::sys::write(self.fd, &self.buf[off..self.len]) {
                Ok(n) if n > 0 => off += n as usize,
                _ => break,
            }
        }
        self.len = 0;
    }
}

impl Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(fd: i32, args: fmt::Arguments) {
    let mut w = FdWriter::new(fd);
    let _ = w.write_fmt(args);
    w.flush();
}

/// Prints to standard output.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!($($arg)*)) };
}

/// Prints a line to standard output.
#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(1, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints a line to standard error.
#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::io::_print(2, format_args!("{}\n", format_args!($($arg)*))) };
}
