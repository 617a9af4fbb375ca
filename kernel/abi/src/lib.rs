//! The Linux user ABI, as data and pure functions: syscall numbers for
//! both architectures, errno values, signals and wait statuses, the
//! structures syscalls copy in and out, ELF program loading plans, the
//! initial process stack, and where Folium's own control files live.
//!
//! Nothing here touches hardware or memory outside its arguments, so all of
//! it runs in `cargo test` on the host; the kernel does the copying.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod elf;
pub mod errno;
pub mod signal;
pub mod stack;
pub mod structs;
pub mod sysfs;
pub mod sysno;

pub use errno::Errno;
pub use sysno::Sysno;

/// The machine a program is built for (ELF `e_machine`, syscall table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// arm64 (`EM_AARCH64`).
    Aarch64,
    /// x86-64 (`EM_X86_64`).
    X86_64,
}

/// The 4 KiB page size the ABI promises (`AT_PAGESZ`).
pub const PAGE_SIZE: u64 = 4096;
