//! Instruction-set specific code. `aarch64` and `x86_64` export the same
//! set of items, listed and type-checked in `interface.rs`; boards live
//! in `crate::platform`.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
use self::aarch64 as imp;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use self::x86_64 as imp;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

mod interface;
pub mod irqflags;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How the guest run ended, as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded.
    Success,
    /// A test failed, or the kernel stopped on an error.
    Failure,
}

/// A trap that a self-test caused on purpose and the handler recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapRecord {
    /// aarch64: the ESR_EL1 exception class; x86_64: the vector.
    pub class: u64,
    /// aarch64: the full ESR_EL1; x86_64: the error code (0 if none).
    pub syndrome: u64,
    /// The faulting address (FAR_EL1 / CR2), 0 for a breakpoint.
    pub addr: u64,
    /// The program counter of the trapping instruction.
    pub pc: u64,
}

/// The last recorded expected trap; written by the trap handler only.
struct TrapSlot {
    valid: AtomicBool,
    class: AtomicU64,
    syndrome: AtomicU64,
    addr: AtomicU64,
    pc: AtomicU64,
}

static LAST_TRAP: TrapSlot = TrapSlot {
    valid: AtomicBool::new(false),
    class: AtomicU64::new(0),
    syndrome: AtomicU64::new(0),
    addr: AtomicU64::new(0),
    pc: AtomicU64::new(0),
};

fn record_trap(r: TrapRecord) {
    LAST_TRAP.class.store(r.class, Ordering::Relaxed);
    LAST_TRAP.syndrome.store(r.syndrome, Ordering::Relaxed);
    LAST_TRAP.addr.store(r.addr, Ordering::Relaxed);
    LAST_TRAP.pc.store(r.pc, Ordering::Relaxed);
    LAST_TRAP.valid.store(true, Ordering::Release);
}

/// Takes the last recorded trap, if one happened since the previous call.
pub fn take_trap() -> Option<TrapRecord> {
    LAST_TRAP
        .valid
        .swap(false, Ordering::Acquire)
        .then(|| TrapRecord {
            class: LAST_TRAP.class.load(Ordering::Relaxed),
            syndrome: LAST_TRAP.syndrome.load(Ordering::Relaxed),
            addr: LAST_TRAP.addr.load(Ordering::Relaxed),
            pc: LAST_TRAP.pc.load(Ordering::Relaxed),
        })
}

/// Set while a breakpoint is raised on purpose, so the handler resumes.
static EXPECT_BREAKPOINT: AtomicBool = AtomicBool::new(false);

/// Set once the machine is being stopped; a trap then parks the CPU
/// instead of reporting (the exit path itself may trap on real hardware).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Set once a fatal report (unexpected exception, panic) has begun.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Called first by every fatal path before it prints. The first caller
/// gets the console (its lock broken: the interrupted holder never
/// resumes); a fault *inside* a report, e.g. in the UART path, lands here
/// a second time and stops the machine with the failure status at once
/// instead of faulting in the report again and again.
pub fn begin_fatal_report() {
    // x86: a fault in the few instructions around `swapgs` arrives with
    // the user's GS base, and the report's locks read this CPU's index
    // through GS: point GS at this CPU's area again first.
    #[cfg(target_arch = "x86_64")]
    imp::smp::repair_percpu();
    if REPORTING.swap(true, Ordering::SeqCst) {
        exit_qemu(Exit::Failure);
    }
    crate::console::force_unlock();
}

unsafe extern "C" {
    static exception_fixups: u8;
    static exception_fixups_end: u8;
}

/// The exception table: (faulting instruction, resume address) pairs that
/// each architecture's assembly lists between two labels.
fn fixups() -> &'static [[u64; 2]] {
    let start = &raw const exception_fixups as usize;
    let end = &raw const exception_fixups_end as usize;
    // SAFETY: the assembly emits 8-aligned u64 pairs in .rodata between the
    // two labels and nothing else; they are never written.
    unsafe { core::slice::from_raw_parts(start as *const [u64; 2], (end - start) / 16) }
}

/// The resume address for a fault at `pc`, if `pc` is a fault-tolerant
/// access listed in the exception table.
fn fixup_for(pc: u64) -> Option<u64> {
    fixups().iter().find(|e| e[0] == pc).map(|e| e[1])
}

/// Reads a u64 at `addr`; a fault is caught and returned as its record.
pub fn probe_read(addr: u64) -> Result<u64, TrapRecord> {
    let _ = take_trap();
    let (value, faulted) = raw_probe_read(addr);
    if faulted {
        Err(take_trap().expect("fixup without a trap record"))
    } else {
        Ok(value)
    }
}

/// Writes a u64 at `addr`; a fault is caught and returned as its record.
pub fn probe_write(addr: u64, value: u64) -> Result<(), TrapRecord> {
    let _ = take_trap();
    if raw_probe_write(addr, value) {
        Err(take_trap().expect("fixup without a trap record"))
    } else {
        Ok(())
    }
}

/// What an exec probe returns when the fetch faulted (set by the handler).
const EXEC_FAULTED: u64 = 0xdead_fa17;

/// The address an exec probe expects an instruction fetch fault at (0: none).
static EXPECT_EXEC_AT: AtomicU64 = AtomicU64::new(0);

/// If `pc` is the armed exec-probe address, disarms it and returns true:
/// the handler then returns to the probe's caller with `EXEC_FAULTED`.
fn take_exec_probe(pc: u64) -> bool {
    pc != 0
        && EXPECT_EXEC_AT
            .compare_exchange(pc, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}

/// Calls `addr` as a function that returns 0 (the caller placed such code
/// there); an instruction-fetch fault at `addr` is caught and returned.
///
/// # Safety
///
/// If `addr` turns out to be executable, the code there runs: it must be a
/// function of type `extern "C" fn() -> u64` that returns 0.
pub unsafe fn probe_exec(addr: u64) -> Result<(), TrapRecord> {
    let _ = take_trap();
    EXPECT_EXEC_AT.store(addr, Ordering::SeqCst);
    // SAFETY: forwarded from the caller; a fetch fault at `addr` makes the
    // handler return here with EXEC_FAULTED instead.
    let r = unsafe {
        let f: extern "C" fn() -> u64 = core::mem::transmute(addr as usize);
        f()
    };
    EXPECT_EXEC_AT.store(0, Ordering::SeqCst);
    if r == EXEC_FAULTED {
        Err(take_trap().expect("exec fixup without a trap record"))
    } else {
        Ok(())
    }
}

/// Raises a breakpoint on purpose and returns what the handler recorded.
pub fn breakpoint() -> Option<TrapRecord> {
    let _ = take_trap();
    EXPECT_BREAKPOINT.store(true, Ordering::SeqCst);
    raw_breakpoint();
    EXPECT_BREAKPOINT.store(false, Ordering::SeqCst);
    take_trap()
}

/// Why [`run_user`] returned: what the user thread did, or what happened
/// to it, that needs the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// A system call (`svc #0` / `syscall`): number and arguments are in
    /// the [`UserContext`]; the PC already points past the instruction.
    Syscall,
    /// An interrupt arrived while the thread ran in user mode; its handler
    /// has run (the timer's calls `crate::sched::timer_tick`).
    Interrupt,
    /// A synchronous exception in user mode; the PC points at the
    /// faulting instruction.
    Fault(UserFault),
}

/// A user-mode exception, decoded from the syndrome (ESR / vector + error
/// code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFault {
    /// What went wrong.
    pub kind: UserFaultKind,
    /// The faulting data or instruction address (FAR / CR2); for other
    /// kinds the PC.
    pub addr: u64,
    /// The raw syndrome for reports: ESR_EL1, or the x86 error code.
    pub code: u64,
}

/// The kinds of user exception the kernel tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserFaultKind {
    /// A translation, permission or access-flag fault on a load, store or
    /// instruction fetch: the mm layer may resolve it.
    Page {
        /// Load, store or fetch.
        access: folium_mm::aspace::Access,
        /// A mapping existed but forbade the access (permission fault),
        /// rather than being absent (translation fault).
        protection: bool,
    },
    /// An undefined or privileged instruction (SIGILL).
    IllegalInstruction,
    /// `brk` / `int3` (SIGTRAP).
    Breakpoint,
    /// A misaligned PC (SIGBUS; arm64 only).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    PcAlignment,
    /// A misaligned SP at a stack access (SIGBUS; arm64 only).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    SpAlignment,
    /// x86 `#DE` (SIGFPE).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    DivideError,
    /// An unmasked floating-point exception: x86 `#MF` (x87) and `#XM`
    /// (SSE) (SIGFPE).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    FloatingPoint,
    /// A misaligned data access the hardware refuses: arm64 alignment
    /// faults (an unaligned exclusive or atomic), x86 `#AC` (SIGBUS).
    Alignment,
    /// x86 `#GP` and other protection faults without a page (SIGSEGV).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    GeneralProtection,
    /// Anything else (reported, SIGSEGV).
    Other,
}

/// Invalidates the kernel-half translations of the `pages` pages from
/// `va` (global entries: every ASID) on every CPU, after the caller
/// changed or cleared their PTEs; returns once no CPU can use them. arm64
/// broadcasts (`tlbi vaae1is`, `dsb ish`); x86 flushes here and shoots
/// the range down on the other CPUs with a cross-call.
pub fn flush_kernel_range(va: u64, pages: u64) {
    #[cfg(target_arch = "aarch64")]
    {
        for p in 0..pages {
            // SAFETY: TLB invalidation only; `vaae1is` drops the entry for
            // all ASIDs on all CPUs of the inner-shareable domain.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi vaae1is, {}",
                    in(reg) ((va + p * folium_mm::PAGE_SIZE) >> 12) & ((1 << 44) - 1),
                    options(nostack, preserves_flags)
                );
            }
        }
        // SAFETY: barriers only: the invalidations complete everywhere.
        unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            pages <= KERNEL_FLUSH_PAGES_MAX,
            "kernel flush of {pages} pages"
        );
        flush_kernel_local(va | pages);
        let others = crate::smp::others();
        if others != 0 {
            crate::smp::call_on(others, flush_kernel_local, va | pages);
        }
    }
}

/// The most pages one x86 kernel flush names (the count rides in the low
/// bits of the page-aligned address); callers flush at most a stack.
#[cfg(target_arch = "x86_64")]
const KERNEL_FLUSH_PAGES_MAX: u64 = folium_mm::PAGE_SIZE - 1;

/// `invlpg` of the pages `arg` names (address | count), on this CPU.
#[cfg(target_arch = "x86_64")]
fn flush_kernel_local(arg: u64) {
    let (va, pages) = (
        arg & !(folium_mm::PAGE_SIZE - 1),
        arg & (folium_mm::PAGE_SIZE - 1),
    );
    for p in 0..pages {
        // SAFETY: invalidating a TLB entry (global ones included) is harmless.
        unsafe {
            core::arch::asm!(
                "invlpg [{}]",
                in(reg) va + p * folium_mm::PAGE_SIZE,
                options(nostack, preserves_flags)
            );
        }
    }
}
