//! `ulib`: just enough of a C library for Folium's own user programs,
//! written against the Linux syscall ABI only, so the same static binary
//! runs on Folium and on Linux.
//!
//! - [`sys`]: raw syscalls and typed wrappers (`-errno` becomes `Err`).
//! - `_start` reads the initial stack ([`Args`]) and calls the program's
//!   `main` (declared with [`entry!`]), then `exit_group`s with its result.
//! - `print!`/`println!`/`eprintln!` write to fds 1 and 2.
//! - A heap on `brk` for `alloc` ([`heap`]: a first-fit free list that
//!   reuses freed blocks).
#![no_std]

extern crate alloc;

pub mod args;
pub mod heap;
pub mod io;
pub mod sys;
pub mod thread;

pub use args::Args;
pub use folium_abi::{Errno, Machine};

/// The machine this program runs on.
pub const MACHINE: Machine = if cfg!(target_arch = "aarch64") {
    Machine::Aarch64
} else {
    Machine::X86_64
};

/// Declares the program's main function:
/// `ulib::entry!(main);` with `fn main(args: &ulib::Args) -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "__ulib_main")]
        fn __ulib_main(args: &$crate::Args) -> i32 {
            let main: fn(&$crate::Args) -> i32 = $main;
            main(args)
        }
    };
}

unsafe extern "Rust" {
    fn __ulib_main(args: &Args) -> i32;
}

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {start}",
    "brk #0",
    start = sym rust_start,
);

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym rust_start,
);

/// The first Rust code: `sp` is the initial stack pointer (argc).
extern "C" fn rust_start(sp: *const u64) -> ! {
    // SAFETY: the kernel (Folium or Linux) starts a program with the
    // initial stack at `sp`: argc, argv[], NULL, envp[], NULL, auxv.
    let args = unsafe { Args::from_initial_stack(sp) };
    // SAFETY: `__ulib_main` is defined by the program through `entry!`,
    // which checks its signature.
    let code = unsafe { __ulib_main(&args) };
    sys::exit_group(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    eprintln!("panic: {info}");
    sys::exit_group(101)
}
