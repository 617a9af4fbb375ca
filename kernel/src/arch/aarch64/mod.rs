//! aarch64 (ARMv8-A, EL1): exception vectors, user mode, thread switching,
//! interrupts and the tick, semihosting exit, CPU facts.

pub mod clock;
mod context;
pub mod emulate;
mod irq;
pub(super) mod irqflags;
mod mm;
pub mod smp;
mod trap;
mod user;
mod user_tests;

use core::arch::asm;
use core::sync::atomic::Ordering;

use aarch64_cpu::registers::{CurrentEL, MIDR_EL1, Readable};

pub use context::{Context, switch_to};
pub use irq::{irq_window, timer_init, wait_for_interrupt};
pub use irqflags::{IrqFlags, irq_restore, irq_save};
pub use mm::{
    KERNEL_ROOT_SLOTS, KernelPteFormat, current_kernel_root, early_reachable, kimage_voffset,
    set_user_root, switch_kernel_tables, sync_icache, tlb, user_root, zero_pages,
};
pub use smp::cpu_index;
pub use trap::{describe, init_exceptions, raw_breakpoint, raw_probe_read, raw_probe_write};
pub use user::{
    USER_TOP, UserContext, asid_bits, copy_from_user, copy_to_user, has_pan, hw_access_dirty,
    pan_enabled, run_user,
};

use super::{Exit, STOPPING};

/// Stops QEMU with a status the host sees (semihosting SYS_EXIT_EXTENDED:
/// 0 for success, 1 for failure). Without a semihosting host, parks the CPU.
pub fn exit_qemu(exit: Exit) -> ! {
    STOPPING.store(true, Ordering::SeqCst);
    let code: u64 = match exit {
        Exit::Success => 0,
        Exit::Failure => 1,
    };
    let block: [u64; 2] = [0x20026, code]; // ADP_Stopped_ApplicationExit, status
    // SAFETY: the semihosting call reads the two-word block and stops the
    // machine; on hardware without a debugger it traps, and the trap
    // handler parks the CPU because STOPPING is set.
    unsafe {
        asm!("hlt #0xf000", in("w0") 0x20u32, in("x1") &block, options(nostack));
    }
    park()
}

/// Waits forever with interrupts masked.
pub fn park() -> ! {
    loop {
        // SAFETY: masking interrupts and waiting for an event are harmless.
        unsafe { asm!("msr daifset, #0xf", "wfe", options(nomem, nostack)) };
    }
}

/// The CPU model, from MIDR_EL1.
pub fn cpu_description() -> alloc::string::String {
    let midr = MIDR_EL1.extract();
    let implementer = midr.read(MIDR_EL1::Implementer);
    let part = midr.read(MIDR_EL1::PartNum);
    let name = match (implementer, part) {
        (0x41, 0xd03) => "Arm Cortex-A53",
        (0x41, 0xd07) => "Arm Cortex-A57",
        (0x41, 0xd08) => "Arm Cortex-A72",
        (0x41, 0xd0c) => "Arm Neoverse-N1",
        (0x41, 0xd40) => "Arm Neoverse-V1",
        (0x41, 0xd49) => "Arm Neoverse-N2",
        (0x00, _) => "QEMU 'max' (software-defined)",
        _ => "unknown ARMv8 core",
    };
    alloc::format!("{name} (MIDR_EL1 {:#010x})", midr.get())
}

/// Describes the exception level now and at entry.
pub fn entry_description(entry_el: u8) -> alloc::string::String {
    let now = CurrentEL.read(CurrentEL::EL);
    match entry_el {
        1 => alloc::format!("EL{now} (entered at EL1)"),
        n => alloc::format!("EL{now} (entered at EL{n}, lowered to EL1)"),
    }
}

/// The CPU's MIDR_EL1 part number (e.g. 0xd08 for Cortex-A72).
pub fn midr_part() -> u64 {
    MIDR_EL1.read(MIDR_EL1::PartNum)
}

/// True: with the 4 KiB granule Folium uses, every ARMv8-A translation
/// regime takes level-1 (1 GiB) block descriptors.
pub fn has_gib_pages() -> bool {
    true
}
