//! What an instruction-set folder (`aarch64/`, `x86_64/`) must provide:
//! the whole contract between it and the rest of the kernel, written down
//! in one place.
//!
//! `arch/mod.rs` re-exports the chosen folder (`pub use aarch64::*`), so
//! the generic kernel calls `arch::irq_save()` and never names an
//! architecture. Each item below is a compile-time check of one thing
//! the generic kernel uses, with the exact type it must have: a folder
//! that lacks an item, or has it with another signature, fails to build
//! here, with the item named, rather than at some distant call site. A
//! new architecture starts from this list.
//!
//! | group | items |
//! |---|---|
//! | machine | `exit_qemu`, `park`, `cpu_description`, `entry_description`, `has_gib_pages` |
//! | interrupts | `IrqFlags`, `irq_save`, `irq_restore` (in `irqflags.rs`, a leaf the locks import), `timer_init`, `wait_for_interrupt`, `irq_window` |
//! | time | `clock::init`, `clock::ticks`, `clock::ticks_per_sec`, `clock::describe` |
//! | traps | `init_exceptions`, `describe`, `raw_breakpoint`, `raw_probe_read`, `raw_probe_write` |
//! | kernel tables | `KernelPteFormat`, `KERNEL_ROOT_SLOTS`, `early_reachable`, `kimage_voffset`, `switch_kernel_tables`, `current_kernel_root`, `zero_pages` |
//! | user tables and TLB | `set_user_root`, `user_root`, `asid_bits`, `tlb::Hw` (the arch's [`TlbOps`]), `tlb::flush_page`, `tlb::flush_range`, `tlb::flush_asid`, `tlb::flush_all` |
//! | user mode | `USER_TOP`, `UserContext` (`new`, `pc`, `sp`, `syscall_nr`, `syscall_args`, `set_syscall_ret`, `tls`, `set_tls`), `run_user`, `copy_from_user`, `copy_to_user` |
//! | kernel threads | `Context`, `switch_to` |
//! | CPUs | `cpu_index`, `smp::this_hw_id`, `smp::start_cpu`, `smp::init_this_cpu` |
//!
//! The generic parts of `arch/mod.rs` (expected-trap records, probes,
//! the fatal-report latch) are built on these.

use alloc::string::String;
use core::ops::Range;

use folium_boot::{BootInfo, PhysRange};
use folium_mm::PhysAddr;
use folium_mm::pgtable::PteFormat;
use folium_mm::tlb::{Asid, TlbOps};

use super::imp;
use super::{Exit, TrapRecord, UserExit};

/// Machine control.
const _: () = {
    let _: fn(Exit) -> ! = imp::exit_qemu;
    let _: fn() -> ! = imp::park;
    let _: fn() -> String = imp::cpu_description;
    let _: fn(u8) -> String = imp::entry_description;
    let _: fn() -> bool = imp::has_gib_pages;
};

/// Interrupt masking (what `IrqMutex` is built on) and the tick.
const _: () = {
    let _: fn() -> imp::IrqFlags = imp::irq_save;
    let _: fn(imp::IrqFlags) = imp::irq_restore;
    let _: fn() = imp::timer_init;
    let _: fn() = imp::wait_for_interrupt;
    let _: fn() = imp::irq_window;
};

/// The monotonic counter behind `CLOCK_MONOTONIC`.
const _: () = {
    let _: fn() = imp::clock::init;
    let _: fn() -> u64 = imp::clock::ticks;
    let _: fn() -> u64 = imp::clock::ticks_per_sec;
    let _: fn() -> String = imp::clock::describe;
};

/// Exception vectors and the probes the self-tests raise on purpose.
const _: () = {
    let _: fn() = imp::init_exceptions;
    let _: fn(&TrapRecord) -> String = imp::describe;
    let _: fn() = imp::raw_breakpoint;
    let _: fn(u64) -> (u64, bool) = imp::raw_probe_read;
    let _: fn(u64, u64) -> bool = imp::raw_probe_write;
};

/// The kernel's own page tables.
const _: () = {
    fn is_pte_format<F: PteFormat>() {}
    let _: fn() = is_pte_format::<imp::KernelPteFormat>;
    let _: Option<Range<usize>> = imp::KERNEL_ROOT_SLOTS;
    let _: fn(PhysRange) -> Option<PhysRange> = imp::early_reachable;
    let _: fn(&BootInfo) -> u64 = imp::kimage_voffset;
    let _: unsafe fn(PhysAddr, fn() -> PhysAddr) = imp::switch_kernel_tables;
    let _: fn() -> PhysAddr = imp::current_kernel_root;
    let _: unsafe fn(*mut u8, usize) = imp::zero_pages;
};

/// User address spaces: the installed root, ASIDs/PCIDs and the TLB,
/// which each architecture drives through its own [`TlbOps`].
const _: () = {
    let _: unsafe fn(PhysAddr, Asid) = imp::set_user_root;
    let _: fn() -> (PhysAddr, Asid) = imp::user_root;
    let _: fn() -> u32 = imp::asid_bits;
    let _: &dyn TlbOps = &imp::tlb::Hw;
    let _: fn(Asid, folium_mm::VirtAddr) = imp::tlb::flush_page;
    let _: fn(Asid, folium_mm::VirtAddr, folium_mm::VirtAddr) = imp::tlb::flush_range;
    let _: fn(Asid) = imp::tlb::flush_asid;
    let _: fn() = imp::tlb::flush_all;
};

/// User mode: the saved context, entering it, and copies that survive a
/// fault on the user's side.
const _: () = {
    let _: u64 = imp::USER_TOP;
    let _: fn(u64, u64) -> imp::UserContext = imp::UserContext::new;
    let _: fn(&imp::UserContext) -> u64 = imp::UserContext::pc;
    let _: fn(&imp::UserContext) -> u64 = imp::UserContext::sp;
    let _: fn(&imp::UserContext) -> u64 = imp::UserContext::syscall_nr;
    let _: fn(&imp::UserContext) -> [u64; 6] = imp::UserContext::syscall_args;
    let _: fn(&mut imp::UserContext, u64) = imp::UserContext::set_syscall_ret;
    let _: fn(&imp::UserContext) -> u64 = imp::UserContext::tls;
    let _: fn(&mut imp::UserContext, u64) = imp::UserContext::set_tls;
    let _: fn(&mut imp::UserContext) -> UserExit = imp::run_user;
    let _: fn(&mut [u8], u64) -> usize = imp::copy_from_user;
    let _: fn(u64, &[u8]) -> usize = imp::copy_to_user;
};

/// Kernel threads: the callee-saved context and the switch between two
/// (x86-64's is a naked function with the C calling convention).
const _: () = {
    #[cfg(target_arch = "aarch64")]
    let _: unsafe fn(*mut imp::Context, *const imp::Context) = imp::switch_to;
    #[cfg(target_arch = "x86_64")]
    let _: unsafe extern "C" fn(*mut imp::Context, *const imp::Context) = imp::switch_to;
};

/// Several CPUs: which one this is, and starting the others.
const _: () = {
    let _: fn() -> usize = imp::cpu_index;
    let _: fn() -> u64 = imp::smp::this_hw_id;
    let _: fn(
        usize,
        &folium_boot::cpus::CpuDesc,
        u64,
        extern "C" fn(u64) -> !,
        PhysAddr,
    ) -> Result<(), &'static str> = imp::smp::start_cpu;
    let _: fn(usize, PhysAddr) = imp::smp::init_this_cpu;
};
