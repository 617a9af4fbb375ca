//! User faults: a page fault the address space can resolve is resolved;
//! anything else ends the process with the signal Linux delivers, after
//! one console line in Linux's style.

use folium_abi::signal::{ExitStatus, Signal};
use folium_mm::aspace::FaultError;

use super::Task;
use crate::arch::{UserFault, UserFaultKind};

/// An undefined instruction that is an MRS of an identification register
/// Linux emulates for EL0: the register gets the value and the program
/// goes on after it. False if it is anything else.
#[cfg(target_arch = "aarch64")]
fn emulate_mrs(task: &mut Task) -> bool {
    let pc = task.uctx.pc();
    let mut b = [0u8; 4];
    if crate::uaccess::copy_in(task, &mut b, pc).is_err() {
        return false;
    }
    let insn = u32::from_le_bytes(b);
    let Some(v) = crate::arch::emulate::id_register_read(insn) else {
        return false;
    };
    let rt = (insn & 0x1f) as usize;
    // Register 31 is xzr here: the value is discarded.
    if rt != 31 {
        task.uctx.set_x(rt, v);
    }
    task.uctx.set_pc(pc + 4);
    true
}

/// Handles `f`, raised by the running `task`.
pub fn handle(task: &mut Task, f: UserFault) {
    let sig = match f.kind {
        UserFaultKind::Page { access, .. } => {
            // The lock is let go before the OOM killer or the exit.
            let r = task.fault(f.addr, access);
            match r {
                Ok(()) => return,
                Err(FaultError::OutOfMemory) => match super::oom::out_of_memory(task) {
                    // Memory came back (a split, or another process
                    // died): the faulting instruction runs again.
                    super::oom::Oom::Retry => return,
                    super::oom::Oom::Chosen => Signal::SIGKILL,
                },
                Err(_) => {
                    println!(
                        "{}[{}]: segfault at {:x} ip {:016x} sp {:016x} error {:x}",
                        super::name_of(task.pid),
                        task.pid,
                        f.addr,
                        task.uctx.pc(),
                        task.uctx.sp(),
                        f.code
                    );
                    Signal::SIGSEGV
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        UserFaultKind::IllegalInstruction if emulate_mrs(task) => return,
        kind => {
            let (what, sig) = match kind {
                UserFaultKind::IllegalInstruction => ("invalid opcode", Signal::SIGILL),
                UserFaultKind::Breakpoint => ("int3", Signal::SIGTRAP),
                UserFaultKind::PcAlignment => ("misaligned pc", Signal::SIGBUS),
                UserFaultKind::SpAlignment => ("misaligned sp", Signal::SIGBUS),
                UserFaultKind::DivideError => ("divide error", Signal::SIGFPE),
                UserFaultKind::FloatingPoint => ("floating-point exception", Signal::SIGFPE),
                UserFaultKind::Alignment => ("alignment fault", Signal::SIGBUS),
                UserFaultKind::GeneralProtection => ("general protection", Signal::SIGSEGV),
                _ => ("unhandled exception", Signal::SIGSEGV),
            };
            println!(
                "traps: {}[{}] trap {what} ip:{:x} sp:{:x} error:{:x}",
                super::name_of(task.pid),
                task.pid,
                task.uctx.pc(),
                task.uctx.sp(),
                f.code
            );
            sig
        }
    };
    super::end_process(
        task,
        ExitStatus::Signaled {
            signal: sig,
            core: false,
        },
    );
}
