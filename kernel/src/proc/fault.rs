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
                Err(FaultError::OutOfMemory) if super::split_deferred_folios().freed_pages > 0 => {
                    // Reclaim first, as Linux's shrinkers do: splitting
                    // partly mapped folios gave frames back, so the
                    // faulting instruction runs again.
                    return;
                }
                Err(FaultError::OutOfMemory) => {
                    // Linux's OOM killer: the process using the most
                    // memory goes (never init), not whoever faulted next.
                    let (victim, pages) = super::oom_victim(task);
                    println!(
                        "Out of memory: Killed process {victim} ({}) total-rss:{}kB",
                        super::name_of(victim),
                        pages * 4
                    );
                    if victim != task.pid {
                        let _ = super::send_signal(victim, Some(Signal::SIGKILL));
                        // Let it die and free its memory; the faulting
                        // instruction runs again afterwards.
                        super::yield_now(task);
                        return;
                    }
                    Signal::SIGKILL
                }
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
