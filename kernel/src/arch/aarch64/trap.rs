//! EL1 exception handling: the vector table (`vectors.S`), the trap frame,
//! expected traps (breakpoints, faults on fixup-listed instructions), the
//! fatal report for everything else, and the kernel-stack overflow report.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::Ordering;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{VBAR_EL1, Writeable};

use super::super::{
    EXEC_FAULTED, EXPECT_BREAKPOINT, Exit, STOPPING, TrapRecord, fixup_for, record_trap,
    take_exec_probe,
};

core::arch::global_asm!(
    include_str!("vectors.S"),
    handler = sym handle_exception,
    overflow_handler = sym handle_stack_overflow,
    stack_shift = const folium_boot::KERNEL_STACK_SHIFT,
);

unsafe extern "C" {
    static exception_vectors: u8;
    fn probe_read_u64(addr: u64) -> ProbeRet;
    fn probe_write_u64(addr: u64, value: u64) -> ProbeRet;
}

/// (x0, x1) as returned by the probe routines.
#[repr(C)]
struct ProbeRet {
    value: u64,
    faulted: u64,
}

/// Register state saved by `vectors.S`, in its layout.
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// Return address (ELR_EL1).
    pub elr: u64,
    /// Saved PSTATE (SPSR_EL1).
    pub spsr: u64,
    /// Exception syndrome (ESR_EL1).
    pub esr: u64,
    /// Fault address (FAR_EL1).
    pub far: u64,
    /// The user stack pointer (SP_EL0).
    pub sp_el0: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 288);

const EC_BRK: u64 = 0x3c;
const EC_DABT_CUR: u64 = 0x25;
const EC_IABT_CUR: u64 = 0x21;

/// Installs the vector table.
pub fn init_exceptions() {
    // `exception_vectors` is the 2 KiB-aligned table in vectors.S, mapped
    // executable in the kernel image.
    VBAR_EL1.set(&raw const exception_vectors as u64);
    barrier::isb(barrier::SY);
}

/// Raises `brk #0xf01` (the test's immediate shows up in ESR_EL1.ISS).
pub fn raw_breakpoint() {
    // SAFETY: the handler resumes after the brk while EXPECT_BREAKPOINT is set.
    // The trap frame saves only general registers: declare every
    // caller-saved register (FP/SIMD included) clobbered across the trap.
    unsafe { asm!("brk #0xf01", clobber_abi("C"), options(nomem, nostack)) };
}

/// Loads from `addr` with fault recovery; returns (value, faulted).
pub fn raw_probe_read(addr: u64) -> (u64, bool) {
    // SAFETY: the load instruction is listed in the exception table, so a
    // fault resumes with `faulted` set instead of being fatal.
    let r = unsafe { probe_read_u64(addr) };
    (r.value, r.faulted != 0)
}

/// Stores to `addr` with fault recovery; returns whether it faulted.
pub fn raw_probe_write(addr: u64, value: u64) -> bool {
    // SAFETY: as for `raw_probe_read`; callers choose addresses whose
    // modification is harmless (or that must fault).
    unsafe { probe_write_u64(addr, value).faulted != 0 }
}

/// Vector of an IRQ taken at EL1 on SP_EL1 (only in `wait_for_interrupt`).
const VEC_EL1_IRQ: u64 = 5;

extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    if kind == VEC_EL1_IRQ {
        super::irq::handle_irq();
        return;
    }
    let ec = frame.esr >> 26;
    if kind == 4 {
        if ec == EC_BRK && EXPECT_BREAKPOINT.load(Ordering::SeqCst) {
            record_trap(TrapRecord {
                class: ec,
                syndrome: frame.esr,
                addr: 0,
                pc: frame.elr,
            });
            frame.elr += 4;
            return;
        }
        if ec == EC_IABT_CUR && take_exec_probe(frame.elr) {
            record_trap(TrapRecord {
                class: ec,
                syndrome: frame.esr,
                addr: frame.far,
                pc: frame.elr,
            });
            // Return to the probe's caller as if the probed function had.
            frame.x[0] = EXEC_FAULTED;
            frame.elr = frame.x[30];
            return;
        }
        if ec == EC_DABT_CUR
            && let Some(resume) = fixup_for(frame.elr)
        {
            record_trap(TrapRecord {
                class: ec,
                syndrome: frame.esr,
                addr: frame.far,
                pc: frame.elr,
            });
            frame.x[1] = 1;
            frame.elr = resume;
            return;
        }
    }
    if STOPPING.load(Ordering::SeqCst) {
        super::park();
    }
    super::super::begin_fatal_report();
    println!(
        "\nUNEXPECTED EXCEPTION: {} (vector {kind})",
        Syndrome(frame.esr, kind)
    );
    println!("{frame:?}");
    super::exit_qemu(Exit::Failure)
}

/// Entered from `vectors.S`, on the overflow stack, when an exception taken
/// at EL1 found no room for its frame on the kernel stack: `sp` is where the
/// frame would have started (the interrupted SP minus the frame's size),
/// below the stack's base. Reports and stops the machine.
extern "C" fn handle_stack_overflow(kind: u64, frame: &TrapFrame, sp: u64) -> ! {
    if STOPPING.load(Ordering::SeqCst) {
        super::park();
    }
    super::super::begin_fatal_report();
    println!(
        "\nKERNEL STACK OVERFLOW: {} (vector {kind}), FAR {:#x}, SP {:#x} ran below the {}",
        Syndrome(frame.esr, kind),
        frame.far,
        sp.wrapping_add(size_of::<TrapFrame>() as u64),
        OverflowedStack(sp)
    );
    println!("{frame:?}");
    super::exit_qemu(Exit::Failure)
}

/// The stack an overflowing SP belongs to. By the kernel-stack layout rule
/// (`folium_boot::KERNEL_STACK_*`) an SP up to one stack size below a
/// stack's base lies in the upper half of the slot below it, so rounding up
/// to the slot alignment gives that base.
struct OverflowedStack(u64);

impl fmt::Display for OverflowedStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let align = folium_boot::KERNEL_STACK_ALIGN as u64;
        let base = (self.0 | (align - 1)).wrapping_add(1);
        let top = base.wrapping_add(folium_boot::KERNEL_STACK_SIZE as u64);
        let (boot_bottom, _) = folium_boot::image_layout().boot_stack;
        let name = if base == boot_bottom.as_u64() {
            "boot stack"
        } else {
            "kernel stack"
        };
        write!(f, "{name} [{base:#x}..{top:#x})")
    }
}

/// ESR decoding for reports.
struct Syndrome(u64, u64);

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (esr, kind) = (self.0, self.1);
        let what = match kind % 4 {
            1 => return write!(f, "IRQ"),
            2 => return write!(f, "FIQ"),
            3 => return write!(f, "SError, ESR_EL1 {esr:#x}"),
            _ => "synchronous",
        };
        let ec = esr >> 26;
        let class = match ec {
            0x00 => "unknown reason",
            0x01 => "WFI/WFE",
            0x07 => "FP/SIMD access",
            0x0e => "illegal execution state",
            0x15 => "SVC from AArch64",
            0x18 => "MSR/MRS trap",
            0x20 => "instruction abort from EL0",
            EC_IABT_CUR => "instruction abort at EL1",
            0x22 => "PC alignment fault",
            0x24 => "data abort from EL0",
            EC_DABT_CUR => "data abort at EL1",
            0x26 => "SP alignment fault",
            0x3c => "BRK",
            _ => "other",
        };
        write!(
            f,
            "{what} {class}, ESR_EL1 {esr:#x} (EC {ec:#x}, ISS {:#x})",
            esr & 0x1ff_ffff
        )?;
        if ec == 0x20 || ec == 0x21 || ec == 0x24 || ec == 0x25 {
            let fsc = esr & 0x3f;
            let kind = match fsc >> 2 {
                0 => "address size fault",
                1 => "translation fault",
                2 => "access flag fault",
                3 => "permission fault",
                _ => "other fault",
            };
            let wnr = if ec >= 0x24 && esr & (1 << 6) != 0 {
                "write"
            } else {
                "read"
            };
            write!(f, ", {kind} level {} on {wnr}", fsc & 3)?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  ELR {:#018x}  SPSR {:#010x}  ESR {:#010x}  FAR {:#018x}",
            self.elr, self.spsr, self.esr, self.far
        )?;
        for (i, pair) in self.x.chunks(4).enumerate() {
            write!(f, " ")?;
            for (j, v) in pair.iter().enumerate() {
                write!(f, " x{:<2} {:#018x}", i * 4 + j, v)?;
            }
            writeln!(f)?;
        }
        write!(f, "  SP_EL0 {:#018x}", self.sp_el0)
    }
}

/// Short classification of a recorded data abort for tests.
pub fn describe(r: &TrapRecord) -> alloc::string::String {
    alloc::format!("{}", Syndrome(r.syndrome, 4))
}
