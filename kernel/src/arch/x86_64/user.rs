//! Ring 3: the user register state ([`UserContext`]), entering user mode
//! ([`run_user`], `sysretq` or `iretq`), the SYSCALL entry and the per-CPU
//! area it reaches through GS, and the lazily switched FP/SSE state.
//!
//! `run_user` is a function call: `user.S` pushes the callee-saved
//! registers, records the kernel RSP in the per-CPU area and in TSS.RSP0,
//! and leaves for ring 3. Every way back (SYSCALL, an interrupt, an
//! exception) stores the user registers into the context and unwinds to
//! that saved RSP, so `run_user` returns with an exit code.
//!
//! **FP state.** The kernel is built without SSE and never touches the
//! x87/SSE registers, so a context's FP state may stay live in the CPU
//! while the kernel runs. The FXSAVE area sits in a heap box of its own,
//! whose address is stable however the `UserContext` moves; each CPU's
//! `FP_OWNER` names the box whose state is in its registers (a box is in
//! at most one CPU's). Entering another context saves the owner's
//! registers into its box and loads the new one's; entering the owner
//! again costs nothing. A context whose state another CPU still holds
//! has that CPU save it first (a cross-call), as does copying a context;
//! dropping one makes every CPU forget it.

use alloc::boxed::Box;
use core::arch::asm;
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use folium_boot::cpus::MAX_CPUS;
use folium_mm::aspace::Access;
use x86_64::registers::control::Cr2;

use super::super::{UserExit, UserFault, UserFaultKind};
use super::frame::TrapFrame;
use super::{gdt, msr};

/// The general registers of a user thread, as `user.S` stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A 512-byte FXSAVE area. Written through a shared reference when the
/// CPU's registers are saved into it (see the module comment).
#[repr(C, align(16))]
struct FxArea(UnsafeCell<[u8; 512]>);

impl FxArea {
    /// The reset state: x87 FCW 0x37f (all exceptions masked, extended
    /// precision), every register empty, MXCSR 0x1f80.
    fn reset() -> Self {
        let mut b = [0u8; 512];
        b[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        b[24..28].copy_from_slice(&MXCSR_RESET.to_le_bytes());
        FxArea(UnsafeCell::new(b))
    }

    fn ptr(&self) -> *mut u8 {
        self.0.get().cast()
    }
}

/// MXCSR after reset: every SIMD exception masked, round to nearest.
pub const MXCSR_RESET: u32 = 0x1f80;

/// The whole register state of a user thread: general registers, RIP,
/// RSP, RFLAGS, the FXSAVE area and the FS base (TLS).
#[repr(C)]
pub struct UserContext {
    regs: Regs,
    fs_base: u64,
    /// What the last exit from user mode was: vector, error code, address.
    trap: [u64; 3],
    fp: Box<FxArea>,
}

/// Offsets `user.S` uses.
pub(super) const CTX_RAX: usize = offset_of!(UserContext, regs) + offset_of!(Regs, rax);

/// RFLAGS bits user code may hold: CF PF AF ZF SF TF DF OF AC ID.
const USER_FLAGS: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x20_0000;
const FLAG_TF: u64 = 1 << 8;
const FLAG_IF: u64 = 1 << 9;
const FLAG_RF: u64 = 1 << 16;
/// Bit 1 of RFLAGS always reads as 1.
const FLAG_FIXED: u64 = 1 << 1;

impl UserContext {
    /// A fresh thread at `pc` with stack `sp`: all other registers 0, FP
    /// state at reset, FS base 0, interrupts enabled in user mode.
    pub fn new(pc: u64, sp: u64) -> Self {
        UserContext {
            regs: Regs {
                rip: pc,
                rsp: sp,
                rflags: FLAG_IF | FLAG_FIXED,
                ..Regs::default()
            },
            fs_base: 0,
            trap: [0; 3],
            fp: Box::new(FxArea::reset()),
        }
    }
    /// The program counter (RIP).
    pub fn pc(&self) -> u64 {
        self.regs.rip
    }
    /// Sets RIP.
    pub fn set_pc(&mut self, v: u64) {
        self.regs.rip = v;
    }
    /// The stack pointer (RSP).
    pub fn sp(&self) -> u64 {
        self.regs.rsp
    }
    /// Sets RSP.
    pub fn set_sp(&mut self, v: u64) {
        self.regs.rsp = v;
    }
    /// The syscall number (RAX).
    pub fn syscall_nr(&self) -> u64 {
        self.regs.rax
    }
    /// The six syscall arguments: RDI RSI RDX R10 R8 R9.
    pub fn syscall_args(&self) -> [u64; 6] {
        let r = &self.regs;
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
    }
    /// Sets the syscall return value (RAX).
    pub fn set_syscall_ret(&mut self, v: u64) {
        self.regs.rax = v;
    }
    /// The FS base (TLS pointer).
    pub fn tls(&self) -> u64 {
        self.fs_base
    }
    /// Sets the FS base (`arch_prctl(ARCH_SET_FS)`); loaded on the next entry.
    pub fn set_tls(&mut self, v: u64) {
        self.fs_base = v;
    }
    /// The general registers (reports, tests, signal frames).
    pub fn regs(&self) -> &Regs {
        &self.regs
    }
    /// The general registers, writable.
    pub fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }
    /// A copy of the FXSAVE image (saving the live registers first if this
    /// context's state is in the CPU).
    pub fn fx_state(&self) -> [u8; 512] {
        self.sync_fp();
        // SAFETY: the box is ours; nobody writes it while we copy: after
        // `sync_fp` no CPU holds it (only a CPU that loads it, which is
        // this thread's own when it next enters user mode, would save into
        // it again), and interrupts are masked in the kernel.
        unsafe { *self.fp.0.get() }
    }
    /// Register dump for fault reports (two lines).
    pub fn dump(&self) -> impl fmt::Display + '_ {
        Dump(self)
    }

    /// Where the FXSAVE box lives (tests: heap slot reuse).
    pub(super) fn fp_addr(&self) -> u64 {
        self.fp_ptr() as u64
    }

    fn fp_ptr(&self) -> *mut FxArea {
        (&raw const *self.fp).cast_mut()
    }

    /// If a CPU holds this context's FP state, writes it into the box.
    fn sync_fp(&self) {
        let me = self.fp_ptr();
        let flags = super::irq_save();
        if fp_owner().load(Ordering::Relaxed) == me {
            // SAFETY: the box is live (we own it) and 16-byte aligned;
            // fxsave writes exactly its 512 bytes, through the UnsafeCell.
            unsafe { fxsave(self.fp.ptr()) };
        } else {
            let elsewhere = held_elsewhere(me);
            if elsewhere != 0 {
                crate::smp::call_on(elsewhere, give_up_fp, me as u64);
            }
        }
        super::irq_restore(flags);
    }
}

impl Clone for UserContext {
    fn clone(&self) -> Self {
        self.sync_fp();
        // SAFETY: as in `fx_state`.
        let bytes = unsafe { *self.fp.0.get() };
        UserContext {
            regs: self.regs,
            fs_base: self.fs_base,
            trap: self.trap,
            fp: Box::new(FxArea(UnsafeCell::new(bytes))),
        }
    }
}

impl Drop for UserContext {
    fn drop(&mut self) {
        // A later box at the same address must not be taken for ours: no
        // CPU may keep naming it (and none may save into it once freed).
        let me = self.fp_ptr();
        let flags = super::irq_save();
        forget_fp(me as u64);
        let elsewhere = held_elsewhere(me);
        if elsewhere != 0 {
            crate::smp::call_on(elsewhere, forget_fp, me as u64);
        }
        super::irq_restore(flags);
    }
}

struct Dump<'a>(&'a UserContext);

impl fmt::Display for Dump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0.regs;
        writeln!(
            f,
            "rip {:#x} rsp {:#x} rflags {:#x} fs {:#x} rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x}",
            r.rip, r.rsp, r.rflags, self.0.fs_base, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi
        )?;
        write!(
            f,
            "rbp {:#x} r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}",
            r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15
        )
    }
}

/// What `user.S` reaches through GS while in the kernel, one per CPU
/// (GS base points at this CPU's). Only assembly, [`init`] and
/// [`cpu_index`] touch it.
#[repr(C)]
pub(super) struct PerCpu {
    /// RSP of the `run_user` frame to unwind to.
    kernel_rsp: u64,
    /// The user RSP while the SYSCALL entry saves registers.
    user_rsp: u64,
    /// The `UserContext` being run.
    ctx: u64,
    /// Address of TSS.RSP0.
    rsp0: u64,
    /// This CPU's index (`crate::smp`).
    index: u64,
}

pub(super) const PCPU_KERNEL_RSP: usize = offset_of!(PerCpu, kernel_rsp);
pub(super) const PCPU_USER_RSP: usize = offset_of!(PerCpu, user_rsp);
pub(super) const PCPU_CTX: usize = offset_of!(PerCpu, ctx);
pub(super) const PCPU_RSP0: usize = offset_of!(PerCpu, rsp0);
const PCPU_INDEX: usize = offset_of!(PerCpu, index);

static mut PERCPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        kernel_rsp: 0,
        user_rsp: 0,
        ctx: 0,
        rsp0: 0,
        index: 0,
    }
}; MAX_CPUS];

/// This CPU's index (`crate::smp`), from its per-CPU area.
#[inline]
pub fn cpu_index() -> usize {
    let i: u64;
    // SAFETY: GS base points at this CPU's PerCpu from the first kernel
    // instruction that needs it (`init`, the first step of
    // `init_exceptions`) on; the load reads its `index` field.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) i, off = const PCPU_INDEX,
             options(nostack, readonly, preserves_flags))
    };
    i as usize
}

/// Points GS at CPU `index`'s per-CPU area (its first step: everything
/// that asks which CPU it runs on reads it there).
pub(super) fn set_percpu(index: usize) {
    assert!(index < MAX_CPUS, "cpu index {index}");
    // SAFETY: this CPU's own slot, written before anything reads it
    // through GS; the MSR write makes GS-relative loads reach it.
    unsafe {
        let pcpu = (&raw mut PERCPU).cast::<PerCpu>().add(index);
        (*pcpu).index = index as u64;
        msr::write(IA32_GS_BASE, pcpu as u64);
        msr::write(IA32_KERNEL_GS_BASE, 0);
    }
}

/// Per CPU: the FP box whose state is in its registers (null: none).
/// Changed only by that CPU, with interrupts masked (others ask it by a
/// cross-call), so a box is never freed or read while a CPU saves into it.
static FP_OWNER: [AtomicPtr<FxArea>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Per CPU: the value in its IA32_FS_BASE.
static FS_LOADED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn fp_owner() -> &'static AtomicPtr<FxArea> {
    &FP_OWNER[cpu_index() % MAX_CPUS]
}

/// The other CPUs whose registers hold box `fp` (at most one).
fn held_elsewhere(fp: *mut FxArea) -> usize {
    let me = cpu_index();
    (0..MAX_CPUS)
        .filter(|&c| c != me && FP_OWNER[c].load(Ordering::Relaxed) == fp)
        .fold(0, |m, c| m | 1 << c)
}

/// Cross-call: if this CPU holds box `arg`, saves the registers into it
/// and forgets it, so the box is current and another CPU may load it.
fn give_up_fp(arg: u64) {
    let fp = arg as *mut FxArea;
    if fp_owner().load(Ordering::Relaxed) == fp {
        // SAFETY: the box is live (its context is being copied or loaded
        // elsewhere, which keeps it), 16-aligned; fxsave writes its 512
        // bytes through the UnsafeCell.
        unsafe { fxsave((*fp).ptr()) };
        fp_owner().store(core::ptr::null_mut(), Ordering::Relaxed);
    }
}

/// Cross-call: forgets box `arg` without saving (it is being freed).
fn forget_fp(arg: u64) {
    let _ = fp_owner().compare_exchange(
        arg as *mut FxArea,
        core::ptr::null_mut(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

const IA32_EFER: u32 = 0xc000_0080;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// # Safety
///
/// `p` must be 16-byte aligned and 512 bytes writable.
unsafe fn fxsave(p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { asm!("fxsave64 [{}]", in(reg) p, options(nostack, preserves_flags)) };
}

/// # Safety
///
/// `p` must be 16-byte aligned, 512 bytes readable, a valid FXSAVE image
/// (MXCSR reserved bits clear).
unsafe fn fxrstor(p: *const u8) {
    // SAFETY: forwarded from the caller.
    unsafe { asm!("fxrstor64 [{}]", in(reg) p, options(nostack, preserves_flags, readonly)) };
}

/// Turns on SYSCALL on this CPU: EFER.SCE, STAR (the GDT's SYSRET
/// layout), LSTAR (the entry), SFMASK (IF, TF, DF, AC and NT cleared on
/// entry); records where its TSS.RSP0 is. Runs on every CPU after its GDT
/// and TSS and [`set_percpu`].
pub(super) fn init(rsp0: *mut u64) {
    let pcpu = (&raw mut PERCPU).cast::<PerCpu>().wrapping_add(cpu_index());
    // SAFETY: this CPU's PerCpu, only read by the entry code, which cannot
    // run on this CPU before LSTAR is written below. The MSR values are
    // what the SYSCALL/SWAPGS discipline of user.S assumes.
    unsafe {
        (*pcpu).rsp0 = rsp0 as u64;
        msr::write(IA32_FS_BASE, 0);
        msr::write(IA32_STAR, gdt::STAR);
        msr::write(IA32_LSTAR, folium_syscall_entry as *const () as u64);
        msr::write(IA32_FMASK, FLAG_TF | FLAG_IF | 1 << 10 | 1 << 14 | 1 << 18);
        msr::write(IA32_EFER, msr::read(IA32_EFER) | 1);
    }
    FS_LOADED[cpu_index() % MAX_CPUS].store(0, Ordering::Relaxed);
}

unsafe extern "C" {
    /// `user.S`: enters ring 3 with `ctx`'s registers (`sysret` != 0: by
    /// `sysretq`, RCX = RIP and R11 = RFLAGS), returns the exit code.
    fn folium_enter_user(ctx: *mut core::ffi::c_void, sysret: u64) -> u64;
    fn folium_syscall_entry();
}

const EXIT_SYSCALL: u64 = 0;
const EXIT_INTERRUPT: u64 = 1;
const EXIT_FAULT: u64 = 2;

core::arch::global_asm!(
    include_str!("user.S"),
    rax = const CTX_RAX,
    rbx = const offset_of!(UserContext, regs) + offset_of!(Regs, rbx),
    rcx = const offset_of!(UserContext, regs) + offset_of!(Regs, rcx),
    rdx = const offset_of!(UserContext, regs) + offset_of!(Regs, rdx),
    rsi = const offset_of!(UserContext, regs) + offset_of!(Regs, rsi),
    rdi = const offset_of!(UserContext, regs) + offset_of!(Regs, rdi),
    rbp = const offset_of!(UserContext, regs) + offset_of!(Regs, rbp),
    r8 = const offset_of!(UserContext, regs) + offset_of!(Regs, r8),
    r9 = const offset_of!(UserContext, regs) + offset_of!(Regs, r9),
    r10 = const offset_of!(UserContext, regs) + offset_of!(Regs, r10),
    r11 = const offset_of!(UserContext, regs) + offset_of!(Regs, r11),
    r12 = const offset_of!(UserContext, regs) + offset_of!(Regs, r12),
    r13 = const offset_of!(UserContext, regs) + offset_of!(Regs, r13),
    r14 = const offset_of!(UserContext, regs) + offset_of!(Regs, r14),
    r15 = const offset_of!(UserContext, regs) + offset_of!(Regs, r15),
    rsp = const offset_of!(UserContext, regs) + offset_of!(Regs, rsp),
    rip = const offset_of!(UserContext, regs) + offset_of!(Regs, rip),
    rflags = const offset_of!(UserContext, regs) + offset_of!(Regs, rflags),
    pc_krsp = const PCPU_KERNEL_RSP,
    pc_ursp = const PCPU_USER_RSP,
    pc_ctx = const PCPU_CTX,
    pc_rsp0 = const PCPU_RSP0,
    user_cs = const gdt::USER_CS as u64,
    user_ds = const gdt::USER_DS as u64,
    exit_syscall = const EXIT_SYSCALL,
);

/// True if `va` is canonical with 48-bit virtual addresses.
fn canonical(va: u64) -> bool {
    ((va << 16) as i64 >> 16) as u64 == va
}

/// One past the highest user address: the lower canonical half (Linux's
/// `TASK_SIZE` with 4 levels).
pub const USER_TOP: u64 = 1 << 47;

/// Puts `ctx`'s FP state and FS base into the CPU, if not there already.
#[inline]
fn load_user_state(ctx: &UserContext) {
    let me = ctx.fp_ptr();
    let fs_loaded = &FS_LOADED[cpu_index() % MAX_CPUS];
    if fp_owner().load(Ordering::Relaxed) != me {
        // The thread ran on another CPU last: that one saves its state.
        let elsewhere = held_elsewhere(me);
        if elsewhere != 0 {
            crate::smp::call_on(elsewhere, give_up_fp, me as u64);
        }
        // Read only now: while it waited for that call, this CPU ran the
        // calls posted to it, and one may have taken its owner away (saved
        // it for another CPU, or forgotten a box that is being freed).
        // From here to the store below nothing runs them.
        let owner = fp_owner().load(Ordering::Relaxed);
        // SAFETY: a non-null owner is the live box of a UserContext (Drop
        // clears FP_OWNER before the box goes), 16-aligned, written through
        // its UnsafeCell; ours is a valid FXSAVE image (reset values, or
        // what fxsave stored). The MSR writes give the thread its own FS
        // base and a zero GS base instead of the previous thread's.
        unsafe {
            if !owner.is_null() {
                fxsave((*owner).ptr());
            }
            fxrstor(ctx.fp.ptr());
            msr::write(IA32_FS_BASE, ctx.fs_base);
            msr::write(IA32_KERNEL_GS_BASE, 0);
        }
        fp_owner().store(me, Ordering::Relaxed);
        fs_loaded.store(ctx.fs_base, Ordering::Relaxed);
    } else if fs_loaded.load(Ordering::Relaxed) != ctx.fs_base {
        // SAFETY: any value is a valid FS base (a bad one faults in ring 3).
        unsafe { msr::write(IA32_FS_BASE, ctx.fs_base) };
        fs_loaded.store(ctx.fs_base, Ordering::Relaxed);
    }
}

/// Runs the thread in ring 3 on the installed address space until it
/// makes a system call, takes an interrupt or faults; the user state is
/// then in `ctx`. Called with interrupts masked, on the task's kernel
/// stack; returns with them masked.
pub fn run_user(ctx: &mut UserContext) -> UserExit {
    let r = &mut ctx.regs;
    r.rflags = (r.rflags & USER_FLAGS) | FLAG_IF | FLAG_FIXED;
    if !canonical(r.rip) {
        // iretq would raise #GP in ring 0 with the user's GS loaded.
        ctx.trap = [13, 0, r.rip];
        return UserExit::Fault(decode(ctx));
    }
    // SYSRET restores RCX and R11 from RIP and RFLAGS: exact only when
    // they already agree (after a system call); never to a non-user RIP
    // (the #GP-in-ring-0 hole) or with TF/RF to honour.
    let sysret = r.rcx == r.rip
        && r.r11 == r.rflags
        && r.rip < USER_TOP
        && r.rflags & (FLAG_TF | FLAG_RF) == 0;
    load_user_state(ctx);
    // SAFETY: `ctx` is exclusively ours until the call returns; the entry
    // code stores into it only through the pointer handed over here. The
    // address space installed is the caller's business (user pages only).
    let code = unsafe { folium_enter_user((&raw mut *ctx).cast(), u64::from(sysret)) };
    match code {
        EXIT_SYSCALL => UserExit::Syscall,
        EXIT_INTERRUPT => UserExit::Interrupt,
        _ => UserExit::Fault(decode(ctx)),
    }
}

const VEC_DE: u64 = 0;
const VEC_DB: u64 = 1;
const VEC_BP: u64 = 3;
const VEC_UD: u64 = 6;
const VEC_TS: u64 = 10;
const VEC_NP: u64 = 11;
const VEC_SS: u64 = 12;
const VEC_GP: u64 = 13;
const VEC_PF: u64 = 14;
const VEC_MF: u64 = 16;
const VEC_AC: u64 = 17;
const VEC_XM: u64 = 19;

fn decode(ctx: &UserContext) -> UserFault {
    let [vector, code, addr] = ctx.trap;
    let kind = match vector {
        VEC_PF => UserFaultKind::Page {
            access: if code & 0x10 != 0 {
                Access::Exec
            } else if code & 2 != 0 {
                Access::Write
            } else {
                Access::Read
            },
            protection: code & 1 != 0,
        },
        VEC_UD => UserFaultKind::IllegalInstruction,
        VEC_BP | VEC_DB => UserFaultKind::Breakpoint,
        VEC_DE => UserFaultKind::DivideError,
        VEC_MF | VEC_XM => UserFaultKind::FloatingPoint,
        VEC_AC => UserFaultKind::Alignment,
        VEC_GP | VEC_SS | VEC_NP | VEC_TS => UserFaultKind::GeneralProtection,
        _ => UserFaultKind::Other,
    };
    UserFault { kind, addr, code }
}

/// Called by the IDT path (`idt.S`) for a trap taken in ring 3, after
/// `swapgs`: stores the user registers into the running context and
/// returns the exit code for `run_user`. Interrupt handlers run here.
pub(super) fn trap_from_user(frame: &TrapFrame) -> u64 {
    let pcpu = (&raw const PERCPU)
        .cast::<PerCpu>()
        .wrapping_add(cpu_index());
    // SAFETY: `folium_enter_user` stored the context `run_user` holds
    // exclusively and is waiting on; nothing else refers to it meanwhile.
    let ctx = unsafe { &mut *((*pcpu).ctx as *mut UserContext) };
    ctx.regs = Regs {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        rbp: frame.rbp,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
        rsp: frame.rsp,
        rip: frame.rip,
        rflags: frame.rflags,
    };
    if frame.vector >= 32 {
        super::apic::handle_irq(frame.vector);
        return EXIT_INTERRUPT;
    }
    let addr = match frame.vector {
        VEC_PF => Cr2::read_raw(),
        // int3 is a trap: RIP is past it; report the instruction.
        VEC_BP => frame.rip.wrapping_sub(1),
        _ => frame.rip,
    };
    ctx.trap = [frame.vector, frame.error_code, addr];
    EXIT_FAULT
}
