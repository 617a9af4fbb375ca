//! x86_64 (long mode, ring 0 and ring 3): GDT and TSS, IDT, user mode and
//! SYSCALL, kernel context switch, user copies, the LAPIC timer,
//! isa-debug-exit, CPU facts.

mod apic;
pub mod clock;
mod context;
pub mod cpu;
mod frame;
pub mod gdt;
pub(super) mod irqflags;
mod mm;
mod msr;
pub mod overflow;
mod pcid_tests;
pub mod smp;
mod trap;
mod uaccess;
mod user;
mod user_tests;

use core::arch::asm;
use core::sync::atomic::Ordering;

use x86_64::instructions::port::Port;

pub use apic::{irq_window, timer_init, wait_for_interrupt};
pub use context::{Context, switch_to};
pub use irqflags::{IrqFlags, irq_restore, irq_save};
pub use mm::{
    KERNEL_ROOT_SLOTS, KernelPteFormat, asid_bits, current_cr3, current_kernel_root,
    early_reachable, invpcid_enabled, kimage_voffset, last_cr3_written, pcid_enabled,
    set_user_root, switch_kernel_tables, tlb, user_root, zero_pages,
};
pub use smp::cpu_index;
pub use trap::{describe, init_exceptions, raw_breakpoint, raw_probe_read, raw_probe_write};
pub use uaccess::{copy_from_user, copy_to_user};
pub use user::{USER_TOP, UserContext, run_user};

use super::{Exit, STOPPING};

/// Stops QEMU through the `isa-debug-exit` device (iobase 0xf4): the host
/// sees `(value << 1) | 1`, so 0x10 -> 33 (success), 0x11 -> 35 (failure).
pub fn exit_qemu(exit: Exit) -> ! {
    STOPPING.store(true, Ordering::SeqCst);
    let value: u32 = match exit {
        Exit::Success => 0x10,
        Exit::Failure => 0x11,
    };
    // SAFETY: port 0xf4 is the debug-exit device on the boards we start;
    // on other machines the write is ignored and we halt below.
    unsafe { Port::<u32>::new(0xf4).write(value) };
    park()
}

/// Halts forever with interrupts disabled.
pub fn park() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting are harmless here.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid(leaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// True if the CPU's page walker takes 1 GiB pages (PS in a PDPT entry):
/// CPUID.80000001H:EDX.Page1GB, bit 26. QEMU's `qemu64` lacks it, and
/// hardware and KVM fault on such entries with a reserved-bit #PF.
pub fn has_gib_pages() -> bool {
    cpuid(0x8000_0000)[0] >= 0x8000_0001 && cpuid(0x8000_0001)[3] & (1 << 26) != 0
}

/// The CPU vendor and brand string, from CPUID.
pub fn cpu_description() -> alloc::string::String {
    let v = cpuid(0);
    let mut vendor = [0u8; 12];
    for (i, w) in [v[1], v[3], v[2]].iter().enumerate() {
        vendor[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let mut brand = [0u8; 48];
    if cpuid(0x8000_0000)[0] >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002..=0x8000_0004).enumerate() {
            for (j, w) in cpuid(leaf).iter().enumerate() {
                brand[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }
    let vendor = core::str::from_utf8(&vendor).unwrap_or("?");
    let brand = core::str::from_utf8(&brand)
        .unwrap_or("?")
        .trim_matches(|c: char| c == '\0' || c == ' ');
    alloc::format!("{brand} ({vendor}, family {:#x})", (cpuid(1)[0] >> 8) & 0xf)
}

/// Describes the privilege level now and at entry.
pub fn entry_description(_entry_level: u8) -> alloc::string::String {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    alloc::format!(
        "ring {} long mode (entered via PVH in 32-bit protected mode)",
        cs & 3
    )
}
