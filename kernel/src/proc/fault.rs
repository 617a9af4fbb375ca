//! User faults: a page fault the address space can resolve is resolved;
//! anything else ends the process with the signal Linux delivers, after
//! one console line in Linux's style.

use folium_abi::signal::{ExitStatus, Signal};
use folium_mm::VirtAddr;
use folium_mm::aspace::FaultError;

use super::Task;
use crate::arch::{UserFault, UserFaultKind};
use crate::memory::uspace::KernelEnv;

/// Handles `f`, raised by the running `task`.
pub fn handle(task: &mut Task, f: UserFault) {
    let sig = match f.kind {
        UserFaultKind::Page { access, .. } => {
            let r = match task.space.as_mut() {
                Some(s) => s.handle_fault(&mut KernelEnv, VirtAddr::new(f.addr), access),
                None => Err(FaultError::Unmapped),
            };
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
        kind => {
            let (what, sig) = match kind {
                UserFaultKind::IllegalInstruction => ("invalid opcode", Signal::SIGILL),
                UserFaultKind::Breakpoint => ("int3", Signal::SIGTRAP),
                UserFaultKind::PcAlignment => ("misaligned pc", Signal::SIGBUS),
                UserFaultKind::SpAlignment => ("misaligned sp", Signal::SIGBUS),
                UserFaultKind::DivideError => ("divide error", Signal::SIGFPE),
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
    super::exit_current(
        task,
        ExitStatus::Signaled {
            signal: sig,
            core: false,
        },
    );
}
