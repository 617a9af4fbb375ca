//! EL0: the user register state ([`UserContext`]), running it until the
//! next exception ([`run_user`], with `user.S`), decoding ESR_EL1 into a
//! [`UserFault`], and copies to and from user memory through the
//! exception-fixup table.

use core::arch::asm;
use core::fmt;
use core::mem::offset_of;

use aarch64_cpu::registers::{ID_AA64MMFR1_EL1, Readable, TCR_EL1};
use folium_mm::aspace::Access;

use super::super::{Exit, UserExit, UserFault, UserFaultKind};

core::arch::global_asm!(
    include_str!("user.S"),
    uc_sp = const offset_of!(UserContext, sp),
    uc_pstate = const offset_of!(UserContext, pstate),
    uc_fpcr = const offset_of!(UserContext, fpcr),
    uc_q = const offset_of!(UserContext, q),
);

unsafe extern "C" {
    fn enter_user(ctx: *mut UserContext, exit: *mut ExitRecord);
    fn copy_from_user_asm(dst: *mut u8, src: u64, n: usize) -> usize;
    fn copy_to_user_asm(dst: u64, src: *const u8, n: usize) -> usize;
}

/// The whole register state of a user thread. `user.S` addresses the
/// fields by offset: x0..x30 first (offset 0), then sp/pc and pstate/tls
/// and fpcr/fpsr as pairs, then q0..q31 16-byte aligned.
#[derive(Clone)]
#[repr(C, align(16))]
pub struct UserContext {
    x: [u64; 31],
    sp: u64,
    pc: u64,
    pstate: u64,
    tls: u64,
    fpcr: u64,
    fpsr: u64,
    _pad: u64,
    q: [u128; 32],
}

const _: () = {
    assert!(offset_of!(UserContext, sp) == 248);
    assert!(offset_of!(UserContext, pc) == offset_of!(UserContext, sp) + 8);
    assert!(offset_of!(UserContext, tls) == offset_of!(UserContext, pstate) + 8);
    assert!(offset_of!(UserContext, fpsr) == offset_of!(UserContext, fpcr) + 8);
    assert!(offset_of!(UserContext, q) % 16 == 0);
};

/// PSTATE bits a user thread may carry into `eret`: the condition flags and
/// the EL0-writable controls (BTYPE, SSBS, DIT, TCO). Everything else, the
/// mode and the interrupt masks above all, is forced to EL0t with DAIF
/// clear, so no UserContext content can return to EL1.
const PSTATE_USER: u64 = 0xf000_0000 | (3 << 10) | (1 << 12) | (1 << 24) | (1 << 25);

impl UserContext {
    /// A fresh thread at `pc` with stack `sp`: everything else zero (EL0t,
    /// DAIF clear, FPCR 0, TPIDR_EL0 0).
    pub fn new(pc: u64, sp: u64) -> Self {
        UserContext {
            x: [0; 31],
            sp,
            pc,
            pstate: 0,
            tls: 0,
            fpcr: 0,
            fpsr: 0,
            _pad: 0,
            q: [0; 32],
        }
    }
    /// The program counter (ELR_EL1 at the last exit).
    pub fn pc(&self) -> u64 {
        self.pc
    }
    /// Sets the program counter.
    pub fn set_pc(&mut self, v: u64) {
        self.pc = v;
    }
    /// The user stack pointer (SP_EL0).
    pub fn sp(&self) -> u64 {
        self.sp
    }
    /// Sets the user stack pointer.
    pub fn set_sp(&mut self, v: u64) {
        self.sp = v;
    }
    /// The syscall number (x8).
    pub fn syscall_nr(&self) -> u64 {
        self.x[8]
    }
    /// The six syscall arguments (x0..x5).
    pub fn syscall_args(&self) -> [u64; 6] {
        [
            self.x[0], self.x[1], self.x[2], self.x[3], self.x[4], self.x[5],
        ]
    }
    /// Sets the syscall return value (x0).
    pub fn set_syscall_ret(&mut self, v: u64) {
        self.x[0] = v;
    }
    /// TPIDR_EL0.
    pub fn tls(&self) -> u64 {
        self.tls
    }
    /// Sets TPIDR_EL0.
    pub fn set_tls(&mut self, v: u64) {
        self.tls = v;
    }
    /// General register `xN` (0..=30).
    pub fn x(&self, n: usize) -> u64 {
        self.x[n]
    }
    /// Sets general register `xN` (0..=30).
    pub fn set_x(&mut self, n: usize, v: u64) {
        self.x[n] = v;
    }
    /// FP/SIMD register `qN`.
    pub fn q(&self, n: usize) -> u128 {
        self.q[n]
    }
    /// Sets FP/SIMD register `qN`.
    pub fn set_q(&mut self, n: usize, v: u128) {
        self.q[n] = v;
    }
    /// FPCR and FPSR.
    pub fn fp_control(&self) -> (u64, u64) {
        (self.fpcr, self.fpsr)
    }
    /// Sets FPCR and FPSR.
    pub fn set_fp_control(&mut self, fpcr: u64, fpsr: u64) {
        self.fpcr = fpcr;
        self.fpsr = fpsr;
    }
    /// Register dump for fault reports.
    pub fn dump(&self) -> impl fmt::Display + '_ {
        Dump(self)
    }
}

struct Dump<'a>(&'a UserContext);

impl fmt::Display for Dump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        writeln!(
            f,
            "pc {:#x} sp {:#x} pstate {:#x} lr {:#x} fp {:#x} tls {:#x}",
            c.pc, c.sp, c.pstate, c.x[30], c.x[29], c.tls
        )?;
        write!(
            f,
            "x0 {:#x} x1 {:#x} x2 {:#x} x3 {:#x} x8 {:#x}",
            c.x[0], c.x[1], c.x[2], c.x[3], c.x[8]
        )
    }
}

/// What `user_exit` records besides the registers.
#[repr(C)]
#[derive(Default)]
struct ExitRecord {
    /// The vector number (8 sync, 9 IRQ, 10 FIQ, 11 SError).
    vector: u64,
    esr: u64,
    far: u64,
}

const VEC_SYNC: u64 = 8;
const VEC_IRQ: u64 = 9;
const VEC_FIQ: u64 = 10;

/// Runs `ctx` at EL0 on the installed user address space until the next
/// exception from EL0, and says why it came back. Interrupts stay masked in
/// the kernel; they are taken from EL0 only, and their handler has run when
/// this returns [`UserExit::Interrupt`].
pub fn run_user(ctx: &mut UserContext) -> UserExit {
    ctx.pstate &= PSTATE_USER;
    let mut rec = ExitRecord::default();
    // SAFETY: `ctx` and `rec` are exclusively borrowed for the call and
    // outlive it. enter_user runs the user thread at EL0 (PSTATE forced to
    // EL0t above, so it cannot return to EL1 on its own) and returns like
    // an ordinary AAPCS64 function: callee-saved registers (x19-x30, SP,
    // d8-d15) are restored from its frame on this stack; everything else,
    // FP/SIMD included, is clobbered, which the call ABI already allows.
    unsafe { enter_user(ctx, &mut rec) };
    match rec.vector {
        VEC_SYNC => decode_sync(ctx, rec.esr, rec.far),
        VEC_IRQ | VEC_FIQ => {
            super::irq::handle_irq();
            UserExit::Interrupt
        }
        _ => {
            super::super::begin_fatal_report();
            println!(
                "\nUNEXPECTED SERROR from EL0: ESR_EL1 {:#x}\n{}",
                rec.esr,
                ctx.dump()
            );
            super::exit_qemu(Exit::Failure)
        }
    }
}

const EC_UNKNOWN: u64 = 0x00;
const EC_WFX: u64 = 0x01;
const EC_FP: u64 = 0x07;
const EC_BTI: u64 = 0x0d;
const EC_ILLEGAL_STATE: u64 = 0x0e;
const EC_SVC64: u64 = 0x15;
const EC_SYSREG: u64 = 0x18;
const EC_SVE: u64 = 0x19;
const EC_SME: u64 = 0x1d;
const EC_IABT_LOW: u64 = 0x20;
const EC_PC_ALIGN: u64 = 0x22;
const EC_DABT_LOW: u64 = 0x24;
const EC_SP_ALIGN: u64 = 0x26;
const EC_BREAKPOINT_LOW: u64 = 0x30;
const EC_STEP_LOW: u64 = 0x32;
const EC_WATCHPOINT_LOW: u64 = 0x34;
const EC_BRK: u64 = 0x3c;

pub(super) fn decode_sync(ctx: &UserContext, esr: u64, far: u64) -> UserExit {
    let ec = esr >> 26;
    if ec == EC_SVC64 {
        return UserExit::Syscall;
    }
    let (kind, addr) = match ec {
        EC_IABT_LOW | EC_DABT_LOW => (abort_kind(ec, esr), far),
        EC_UNKNOWN | EC_WFX | EC_FP | EC_BTI | EC_ILLEGAL_STATE | EC_SYSREG | EC_SVE | EC_SME => {
            (UserFaultKind::IllegalInstruction, ctx.pc)
        }
        EC_PC_ALIGN => (UserFaultKind::PcAlignment, far),
        EC_SP_ALIGN => (UserFaultKind::SpAlignment, ctx.pc),
        EC_BRK | EC_BREAKPOINT_LOW | EC_STEP_LOW | EC_WATCHPOINT_LOW => {
            (UserFaultKind::Breakpoint, ctx.pc)
        }
        _ => (UserFaultKind::Other, ctx.pc),
    };
    UserExit::Fault(UserFault {
        kind,
        addr,
        code: esr,
    })
}

/// An instruction or data abort from EL0, by its fault status code.
fn abort_kind(ec: u64, esr: u64) -> UserFaultKind {
    let access = if ec == EC_IABT_LOW {
        Access::Exec
    } else if esr & (1 << 6) != 0 && esr & (1 << 8) == 0 {
        // WnR, unless the access was a cache maintenance instruction
        // (CM), which reports WnR = 1 but only needs read permission.
        Access::Write
    } else {
        Access::Read
    };
    // DFSC 0b100001: an alignment fault.
    if esr & 0x3f == 0x21 {
        return UserFaultKind::Alignment;
    }
    match (esr & 0x3f) >> 2 {
        // Translation and access-flag faults: nothing (usable) is mapped
        // there yet, the mm layer may map it.
        1 | 2 => UserFaultKind::Page {
            access,
            protection: false,
        },
        3 => UserFaultKind::Page {
            access,
            protection: true,
        },
        // Address-size faults, alignment, external aborts, TLB conflicts.
        _ => UserFaultKind::Other,
    }
}

/// One past the highest user address: the copies accept nothing above
/// it (the 48-bit user half TTBR0 translates with T0SZ = 16, as arm64
/// Linux's `TASK_SIZE`).
pub const USER_TOP: u64 = 1 << 48;

fn user_range_ok(addr: u64, len: usize) -> bool {
    addr.checked_add(len as u64)
        .is_some_and(|end| end <= USER_TOP)
}

/// Copies `dst.len()` bytes from user address `src`; returns how many were
/// NOT copied (0: all). A range reaching outside the user half is refused
/// whole.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> usize {
    if !user_range_ok(src, dst.len()) {
        return dst.len();
    }
    // SAFETY: `dst` is writable for its length; the source is read with
    // unprivileged loads listed in the exception table, so an unmapped or
    // kernel-only user address resumes at the fixup with the count left.
    unsafe { copy_from_user_asm(dst.as_mut_ptr(), src, dst.len()) }
}

/// Copies `src` to user address `dst`; returns how many bytes were NOT
/// copied (0: all). A range reaching outside the user half is refused whole.
pub fn copy_to_user(dst: u64, src: &[u8]) -> usize {
    if !user_range_ok(dst, src.len()) {
        return src.len();
    }
    // SAFETY: `src` is readable for its length; the destination is written
    // with unprivileged stores listed in the exception table, which obey
    // the EL0 permissions of the user mapping and fault instead otherwise.
    unsafe { copy_to_user_asm(dst, src.as_ptr(), src.len()) }
}

/// ASID width in bits: 16 when the boot code set TCR_EL1.AS (the CPU
/// reports 16-bit ASIDs), else 8.
pub fn asid_bits() -> u32 {
    if TCR_EL1.is_set(TCR_EL1::AS) { 16 } else { 8 }
}

/// Whether the CPU implements PAN (ID_AA64MMFR1_EL1.PAN); the boot code
/// then turned it on.
pub fn has_pan() -> bool {
    ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::PAN) != 0
}

/// Whether PSTATE.PAN is set now (false where PAN does not exist).
pub fn pan_enabled() -> bool {
    if !has_pan() {
        return false;
    }
    let v: u64;
    // SAFETY: reading PSTATE.PAN (S3_0_C4_C2_3) has no side effects; the
    // register exists because the CPU implements PAN.
    unsafe { asm!("mrs {}, S3_0_C4_C2_3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & (1 << 22) != 0
}

/// The hardware page-table features the boot code enabled, for reports:
/// (TCR_EL1.HA, TCR_EL1.HD).
pub fn hw_access_dirty() -> (bool, bool) {
    let tcr = TCR_EL1.extract();
    (tcr.is_set(TCR_EL1::HA), tcr.is_set(TCR_EL1::HD))
}
