//! Self-tests of ring 3: small user programs (assembled into `.rodata`
//! here, copied into a user address space, never run by the kernel) make
//! system calls, fault in every way the decoder tells apart, keep SSE and
//! FS state across kernel round trips and context switches, spin until
//! the timer takes them out; plus the user-copy routines, SMEP/SMAP and
//! the kernel context switch.

use alloc::format;
use alloc::string::String;

use folium_mm::VirtAddr;
use folium_mm::aspace::Access;
use folium_mm::vma::{Prot, Vma, VmaKind};

use super::super::{UserExit, UserFault, UserFaultKind};
use super::user::MXCSR_RESET;
use super::{Context, UserContext, copy_from_user, copy_to_user, cpu, run_user, switch_to};
use crate::memory::uspace::{self, KernelEnv, UserSpace};

core::arch::global_asm!(
    r#"
    .pushsection .rodata.user_test_code, "a"
    .balign 16
    .globl utest_begin
utest_begin:

    // System call arguments, results and preserved registers; then the
    // iretq path with live RCX/R11 after a trap.
    .globl utest_syscall
utest_syscall:
    mov     rbx, 0x0b0b0b0b0b0b0b01
    mov     rbp, 0x0b0b0b0b0b0b0b02
    mov     r12, 0x0b0b0b0b0b0b0b03
    mov     r13, 0x0b0b0b0b0b0b0b04
    mov     r14, 0x0b0b0b0b0b0b0b05
    mov     r15, 0x0b0b0b0b0b0b0b06
    mov     rdi, 0x1111111111111111
    mov     rsi, 0x2222222222222222
    mov     rdx, 0x3333333333333333
    mov     r10, 0x4444444444444444
    mov     r8, 0x5555555555555555
    mov     r9, 0x6666666666666666
    mov     eax, 0x123
    syscall
    add     rax, 0x77
    syscall
    mov     rcx, 0x0c0c0c0c0c0c0c0c
    mov     r11, 0x0d0d0d0d0d0d0d0d
    int3
    mov     rdi, rcx
    mov     rsi, r11
    mov     eax, 0x200
    syscall
9:  jmp     9b

    // Runs with whatever RSP the kernel gave it (never used as a stack).
    .globl utest_badstack
utest_badstack:
    mov     eax, 7
    syscall
    mov     rdi, rsp
    mov     eax, 8
    syscall
9:  jmp     9b

    .globl utest_load
utest_load:
    mov     rax, qword ptr [rdi]
9:  jmp     9b
    .globl utest_store
utest_store:
    mov     qword ptr [rdi], rax
9:  jmp     9b
    .globl utest_ud2
utest_ud2:
    ud2
    .globl utest_int3
utest_int3:
    int3
9:  jmp     9b
    .globl utest_div
utest_div:
    xor     edx, edx
    xor     eax, eax
    xor     ecx, ecx
    div     rcx
9:  jmp     9b
    .globl utest_hlt
utest_hlt:
    hlt
    .globl utest_cli
utest_cli:
    cli
9:  jmp     9b

    // rdi = seed, rsi = MXCSR, rdx = buffer: xmm_i = (seed + i) in both
    // halves, MXCSR set; a syscall; then the dump below.
    .globl utest_fp
utest_fp:
    mov     rax, rdi
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movq    xmm\n, rax
    punpcklqdq xmm\n, xmm\n
    inc     rax
    .endr
    push    rsi
    ldmxcsr dword ptr [rsp]
    pop     rsi
    mov     eax, 1
    syscall
    // rdx = buffer: xmm0..15, MXCSR, FCW; then syscall 2.
    .globl utest_fpdump
utest_fpdump:
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqu  xmmword ptr [rdx + 16 * \n], xmm\n
    .endr
    stmxcsr dword ptr [rdx + 256]
    fnstcw  word ptr [rdx + 260]
    mov     eax, 2
    syscall
9:  jmp     9b

    // Reports fs:[0] in rdi, again and again.
    .globl utest_fs
utest_fs:
    mov     rdi, qword ptr fs:[0]
    mov     eax, 3
    syscall
    jmp     utest_fs

    .globl utest_spin
utest_spin:
9:  jmp     9b

    // rbx = count: null system calls, then syscall 0x3ff.
    .globl utest_null
utest_null:
    mov     eax, 39
    syscall
    dec     rbx
    jnz     utest_null
    mov     eax, 0x3ff
    syscall
9:  jmp     9b

    // A kernel `extern "C" fn() -> u64` returning 0 (the SMEP probe).
    .globl utest_ret0
utest_ret0:
    xor     eax, eax
    ret

    .globl utest_end
utest_end:
    .popsection
"#
);

unsafe extern "C" {
    static utest_begin: u8;
    static utest_end: u8;
    static utest_syscall: u8;
    static utest_badstack: u8;
    static utest_load: u8;
    static utest_store: u8;
    static utest_ud2: u8;
    static utest_int3: u8;
    static utest_div: u8;
    static utest_hlt: u8;
    static utest_cli: u8;
    static utest_fp: u8;
    static utest_fpdump: u8;
    static utest_fs: u8;
    static utest_spin: u8;
    static utest_null: u8;
    static utest_ret0: u8;
}

const CODE: u64 = 0x40_0000;
const STACK: u64 = 0x50_0000;
const STACK_TOP: u64 = STACK + 0x4000;
const DATA: u64 = 0x60_0000;
const DATA_END: u64 = DATA + 0x2000;
const RO: u64 = 0x70_0000;
const NX: u64 = 0x71_0000;
/// No area covers it.
const HOLE: u64 = 0x80_0000;

/// The user address of a label in the test code.
fn at(label: &u8) -> u64 {
    CODE + (label as *const u8 as u64 - (&raw const utest_begin) as u64)
}

fn code_bytes() -> &'static [u8] {
    let start = &raw const utest_begin;
    let end = &raw const utest_end;
    // SAFETY: the bytes between two labels of the .rodata block above.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// A user address space with the test areas, installed; torn down (and
/// the empty user half installed again) on drop, also on a failed check.
struct Space(Option<UserSpace>);

impl Space {
    fn new() -> Result<Space, String> {
        let env = &mut KernelEnv;
        let mut s = uspace::new_space().map_err(|e| format!("{e:?}"))?;
        let va = VirtAddr::new;
        let areas = [
            (CODE, CODE + 0x2000, Prot::RX, VmaKind::Image),
            (STACK, STACK_TOP, Prot::RW, VmaKind::Stack),
            (DATA, DATA_END, Prot::RW, VmaKind::Anon),
            (RO, RO + 0x1000, Prot::READ, VmaKind::Anon),
            (NX, NX + 0x1000, Prot::RW, VmaKind::Anon),
        ];
        for (start, end, prot, kind) in areas {
            s.add_vma(Vma::new(va(start), va(end), prot, kind))
                .map_err(|e| format!("{e:?}"))?;
        }
        let mut space = Space(Some(s));
        let s = space.0.as_mut().unwrap_or_else(|| unreachable!());
        let zero = [0u8; 0x1000];
        // Every page present, so no test meets a demand fault it does not expect.
        for (start, end) in [
            (STACK, STACK_TOP),
            (DATA, DATA_END),
            (RO, RO + 0x1000),
            (NX, NX + 0x1000),
        ] {
            let mut p = start;
            while p < end {
                s.write_bytes(env, va(p), &zero)
                    .map_err(|e| format!("{e:?}"))?;
                p += 0x1000;
            }
        }
        s.write_bytes(env, va(CODE), code_bytes())
            .map_err(|e| format!("{e:?}"))?;
        s.write_bytes(env, va(RO), &0x005e_ed0f_5eedu64.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        uspace::activate(s);
        Ok(space)
    }

    fn get(&mut self) -> &mut UserSpace {
        self.0.as_mut().unwrap_or_else(|| unreachable!())
    }

    fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
        self.get().read_bytes(&KernelEnv, VirtAddr::new(va), buf)
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        uspace::deactivate();
        if let Some(s) = self.0.take() {
            s.teardown(&mut KernelEnv);
        }
    }
}

/// Runs until something other than a timer interrupt happens.
fn run(ctx: &mut UserContext) -> UserExit {
    loop {
        match run_user(ctx) {
            UserExit::Interrupt => {}
            e => return e,
        }
    }
}

/// Expects a system call with number `nr`.
fn expect_syscall(ctx: &mut UserContext, nr: u64) -> Result<(), String> {
    match run(ctx) {
        UserExit::Syscall if ctx.syscall_nr() == nr => Ok(()),
        e => Err(format!(
            "expected syscall {nr:#x}, got {e:?} nr {:#x}\n{}",
            ctx.syscall_nr(),
            ctx.dump()
        )),
    }
}

fn fault(ctx: &mut UserContext) -> Result<UserFault, String> {
    match run(ctx) {
        UserExit::Fault(f) => Ok(f),
        e => Err(format!("expected a fault, got {e:?}\n{}", ctx.dump())),
    }
}

kernel_test!(
    fn syscall_arguments_results_and_preserved_registers() {
        let space = Space::new()?;
        let mut ctx = UserContext::new(at(unsafe_ref(&raw const utest_syscall)), STACK_TOP);
        expect_syscall(&mut ctx, 0x123)?;
        check_eq!(
            ctx.syscall_args(),
            [
                0x1111111111111111,
                0x2222222222222222,
                0x3333333333333333,
                0x4444444444444444,
                0x5555555555555555,
                0x6666666666666666
            ]
        );
        let first = *ctx.regs();
        // SYSCALL put the return address in RCX and RFLAGS in R11.
        check_eq!(first.rcx, first.rip, "RCX after syscall");
        check_eq!(first.r11, first.rflags, "R11 after syscall");
        check!(
            first.rflags & (1 << 9) != 0,
            "user IF clear: {:#x}",
            first.rflags
        );
        check_eq!((first.rsp, ctx.sp()), (STACK_TOP, STACK_TOP));
        ctx.set_syscall_ret(0xabcd_ef00);
        // A register the kernel changes reaches the user: the entry loads
        // from the context, not from whatever the registers held.
        ctx.regs_mut().r12 = 0x5151;
        expect_syscall(&mut ctx, 0xabcd_ef77)?;
        let second = *ctx.regs();
        let mut want = first;
        want.rax = 0xabcd_ef77;
        want.r12 = 0x5151;
        want.rip = second.rip;
        want.rcx = second.rip;
        want.rflags = second.rflags;
        want.r11 = second.rflags;
        check_eq!(second, want, "registers across a system call");
        check_eq!(second.rip, first.rip + 6, "add rax, 0x77 (4) + syscall (2)");

        // int3 with live RCX/R11; they come back through iretq.
        let f = fault(&mut ctx)?;
        check_eq!(f.kind, UserFaultKind::Breakpoint);
        check_eq!(f.addr, ctx.pc() - 1, "int3 address");
        check_eq!(
            (ctx.regs().rcx, ctx.regs().r11),
            (0x0c0c0c0c0c0c0c0c, 0x0d0d0d0d0d0d0d0d)
        );
        expect_syscall(&mut ctx, 0x200)?;
        check_eq!(
            [ctx.syscall_args()[0], ctx.syscall_args()[1]],
            [0x0c0c0c0c0c0c0c0c, 0x0d0d0d0d0d0d0d0d],
            "RCX, R11 as user code saw them after the trap"
        );
        // SYSCALL never trusts the user RSP: a kernel or non-canonical one
        // is kept as data and handed back.
        for bad in [(&raw const utest_begin) as u64, 0x8000_0000_0000, 0] {
            let mut c = UserContext::new(at(unsafe_ref(&raw const utest_badstack)), bad);
            expect_syscall(&mut c, 7)?;
            check_eq!(c.sp(), bad);
            expect_syscall(&mut c, 8)?;
            check_eq!(c.syscall_args()[0], bad, "RSP as user code saw it");
        }
        drop(space);
        Ok(())
    }
);

/// `&*p` for a linker label (only its address is used).
fn unsafe_ref(p: *const u8) -> &'static u8 {
    // SAFETY: `p` is a label in the kernel's .rodata, mapped and readable.
    unsafe { &*p }
}

kernel_test!(
    fn user_faults_are_decoded() {
        let mut space = Space::new()?;
        let page = |access, protection| UserFaultKind::Page { access, protection };
        let label = |l: *const u8| at(unsafe_ref(l));
        let (load, store) = (label(&raw const utest_load), label(&raw const utest_store));
        let (int3, div) = (label(&raw const utest_int3), label(&raw const utest_div));
        let kernel_va = (&raw const utest_begin) as u64;
        // (pc, rdi, kind, fault address, RIP after)
        let cases: [(u64, u64, UserFaultKind, u64, u64); 12] = [
            (load, HOLE + 8, page(Access::Read, false), HOLE + 8, load),
            (store, RO + 16, page(Access::Write, true), RO + 16, store),
            (store, HOLE, page(Access::Write, false), HOLE, store),
            (NX + 0x40, 0, page(Access::Exec, true), NX + 0x40, NX + 0x40),
            (
                HOLE + 0x100,
                0,
                page(Access::Exec, false),
                HOLE + 0x100,
                HOLE + 0x100,
            ),
            // Kernel pages are present but supervisor-only.
            (load, kernel_va, page(Access::Read, true), kernel_va, load),
            (
                load,
                0x8000_0000_0000,
                UserFaultKind::GeneralProtection,
                load,
                load,
            ),
            (
                label(&raw const utest_ud2),
                0,
                UserFaultKind::IllegalInstruction,
                label(&raw const utest_ud2),
                label(&raw const utest_ud2),
            ),
            // int3 is a trap: RIP past it, the address its own.
            (int3, 0, UserFaultKind::Breakpoint, int3, int3 + 1),
            // Three 2-byte xors, then the div.
            (div, 0, UserFaultKind::DivideError, div + 6, div + 6),
            (
                label(&raw const utest_hlt),
                0,
                UserFaultKind::GeneralProtection,
                label(&raw const utest_hlt),
                label(&raw const utest_hlt),
            ),
            (
                label(&raw const utest_cli),
                0,
                UserFaultKind::GeneralProtection,
                label(&raw const utest_cli),
                label(&raw const utest_cli),
            ),
        ];
        for (pc, rdi, kind, addr, rip) in cases {
            let mut ctx = UserContext::new(pc, STACK_TOP);
            ctx.regs_mut().rdi = rdi;
            let f = fault(&mut ctx)?;
            check_eq!(
                (f.kind, f.addr),
                (kind, addr),
                "pc {pc:#x} rdi {rdi:#x}: {f:?}"
            );
            check_eq!(ctx.pc(), rip, "RIP after {kind:?}");
            check_eq!(ctx.regs().rdi, rdi, "RDI saved at the fault");
        }
        // Not entered at all: a non-canonical RIP (iretq would #GP in ring 0).
        let mut ctx = UserContext::new(0x8000_0000_0000, STACK_TOP);
        let f = fault(&mut ctx)?;
        check_eq!(
            (f.kind, f.addr),
            (UserFaultKind::GeneralProtection, 0x8000_0000_0000)
        );
        // The read-only page still holds what it held: the store did not land.
        let mut b = [0u8; 8];
        check!(space.read(RO, &mut b));
        check_eq!(u64::from_le_bytes(b), 0x005e_ed0f_5eed);
        Ok(())
    }
);

/// Runs `utest_fp` in `ctx` up to its first syscall (registers set).
fn fp_set(ctx: &mut UserContext) -> Result<(), String> {
    expect_syscall(ctx, 1)
}

/// xmm0..15 as (low, high) halves, MXCSR, x87 FCW.
type FpDump = ([(u64, u64); 16], u32, u16);

/// Lets `ctx` dump its registers to `buf_va` (syscall 2); returns
/// (xmm0..15 as (lo, hi), MXCSR, FCW) read through the page tables.
fn fp_dump(space: &mut Space, ctx: &mut UserContext, buf_va: u64) -> Result<FpDump, String> {
    expect_syscall(ctx, 2)?;
    let mut b = [0u8; 262];
    if !space.read(buf_va, &mut b) {
        return Err("dump buffer unreadable".into());
    }
    let q = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let mut x = [(0, 0); 16];
    for (i, r) in x.iter_mut().enumerate() {
        *r = (q(16 * i), q(16 * i + 8));
    }
    let mxcsr = u32::from_le_bytes(b[256..260].try_into().unwrap_or([0; 4]));
    let fcw = u16::from_le_bytes([b[260], b[261]]);
    Ok((x, mxcsr, fcw))
}

fn fp_ctx(seed: u64, mxcsr: u32, buf: u64) -> UserContext {
    let mut c = UserContext::new(
        at(unsafe_ref(&raw const utest_fp)),
        STACK_TOP - 0x100 * (seed & 0xf),
    );
    let r = c.regs_mut();
    r.rdi = seed;
    r.rsi = u64::from(mxcsr);
    r.rdx = buf;
    c
}

fn fp_expect(seed: u64) -> [(u64, u64); 16] {
    core::array::from_fn(|i| (seed + i as u64, seed + i as u64))
}

kernel_test!(
    fn sse_state_survives_kernel_entries_and_context_switches() {
        let mut space = Space::new()?;
        // Rounding toward zero, all exceptions masked; and round down.
        let (mx_a, mx_b) = (0x7f80, 0x3f80);
        let (seed_a, seed_b) = (0xa000_0000_0000_0100, 0xb000_0000_0000_0200);
        let mut a = fp_ctx(seed_a, mx_a, DATA);
        let mut b = fp_ctx(seed_b, mx_b, DATA + 0x400);
        fp_set(&mut a)?;
        fp_set(&mut b)?; // b overwrites every XMM register and MXCSR
        // A clone taken while a's state is saved (b owns the registers) ...
        let a2 = a.clone();
        let (x, mx, fcw) = fp_dump(&mut space, &mut a, DATA)?;
        check_eq!(x, fp_expect(seed_a), "a's XMM after b ran");
        check_eq!((mx, fcw), (mx_a, 0x37f), "a's MXCSR, FCW");
        // ... and one taken while a's state is live in the registers.
        let mut a3 = a.clone();
        let (x, mx, _) = fp_dump(&mut space, &mut b, DATA + 0x400)?;
        check_eq!(x, fp_expect(seed_b), "b's XMM after a ran");
        check_eq!(mx, mx_b, "b's MXCSR");
        drop(a2);
        // a3 is past the dump (a's syscall 2); restart it at the dump.
        a3.set_pc(at(unsafe_ref(&raw const utest_fpdump)));
        a3.set_sp(STACK_TOP - 0x800);
        a3.regs_mut().rdx = DATA + 0x800;
        let (x, mx, _) = fp_dump(&mut space, &mut a3, DATA + 0x800)?;
        check_eq!(x, fp_expect(seed_a), "clone of a live state");
        check_eq!(mx, mx_a);
        // The saved image agrees with what user code stored.
        let img = a3.fx_state();
        check_eq!(
            u32::from_le_bytes([img[24], img[25], img[26], img[27]]),
            mx_a,
            "MXCSR in the FXSAVE image"
        );
        check_eq!(
            u64::from_le_bytes(img[160 + 16 * 5..168 + 16 * 5].try_into().unwrap_or([0; 8])),
            seed_a + 5,
            "xmm5 in the FXSAVE image"
        );
        // a3 owns the registers; once dropped, a new context (likely in the
        // same heap slot) must start from the reset state, not inherit it.
        let old_box = a3.fp_addr();
        drop(a3);
        // Find a new context whose FP box reuses a3's heap slot: the case a
        // stale owner pointer would get wrong.
        let mut others = alloc::vec::Vec::new();
        let mut fresh = loop {
            let c = UserContext::new(at(unsafe_ref(&raw const utest_fpdump)), STACK_TOP);
            if c.fp_addr() == old_box {
                break c;
            }
            check!(others.len() < 64, "the heap never reused the FP box's slot");
            others.push(c);
        };
        drop(others);
        fresh.regs_mut().rdx = DATA + 0xc00;
        let (x, mx, fcw) = fp_dump(&mut space, &mut fresh, DATA + 0xc00)?;
        check_eq!(x, [(0, 0); 16], "a new context's XMM");
        check_eq!(
            (mx, fcw),
            (MXCSR_RESET, 0x37f),
            "a new context's MXCSR, FCW"
        );
        Ok(())
    }
);

kernel_test!(
    fn fs_base_is_per_context() {
        let mut space = Space::new()?;
        let env = &mut KernelEnv;
        let (v1, v2) = (0x1234_5678_9abc_def0u64, 0x0fed_cba9_8765_4321u64);
        space
            .get()
            .write_bytes(env, VirtAddr::new(DATA + 0x100), &v1.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        space
            .get()
            .write_bytes(env, VirtAddr::new(DATA + 0x900), &v2.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        let fs = at(unsafe_ref(&raw const utest_fs));
        let mut c1 = UserContext::new(fs, STACK_TOP);
        let mut c2 = UserContext::new(fs, STACK_TOP - 0x1000);
        c1.set_tls(DATA + 0x100);
        c2.set_tls(DATA + 0x900);
        for (second, want, what) in [
            (false, v1, "c1"),
            (true, v2, "c2"),
            (false, v1, "c1 again"),
            (false, v1, "c1 twice"),
        ] {
            let c = if second { &mut c2 } else { &mut c1 };
            expect_syscall(c, 3)?;
            check_eq!(c.syscall_args()[0], want, "fs:[0] in {what}");
        }
        // A change on the same context (arch_prctl) takes effect.
        c1.set_tls(DATA + 0x900);
        expect_syscall(&mut c1, 3)?;
        check_eq!(c1.syscall_args()[0], v2, "after set_tls");
        check_eq!(c1.tls(), DATA + 0x900);
        Ok(())
    }
);

kernel_test!(
    fn the_timer_interrupts_user_code_at_tick_hz() {
        super::timer_init();
        let _space = Space::new()?;
        let spin = at(unsafe_ref(&raw const utest_spin));
        let mut ctx = UserContext::new(spin, STACK_TOP);
        {
            let r = ctx.regs_mut();
            (r.rax, r.rbx, r.rcx, r.rdx, r.r11, r.r15) = (1, 2, 3, 4, 5, 6);
        }
        let before = *ctx.regs();
        let hz = super::clock::ticks_per_sec();
        check!(hz > 0, "no HPET");
        let (t0, k0) = (super::clock::ticks(), crate::sched::ticks());
        let mut exits = 0u64;
        while super::clock::ticks() - t0 < hz / 4 {
            match run_user(&mut ctx) {
                UserExit::Interrupt => exits += 1,
                e => return Err(format!("spinning code: {e:?}\n{}", ctx.dump())),
            }
            let mut want = before;
            want.rflags = ctx.regs().rflags;
            check_eq!(*ctx.regs(), want, "registers across an interrupt");
        }
        let (t1, k1) = (super::clock::ticks(), crate::sched::ticks());
        let rate = (k1 - k0) as f64 * hz as f64 / (t1 - t0) as f64;
        let want = crate::sched::TICK_HZ as f64;
        check!(
            // Loose: a calibration error is off by factors, while a busy
            // host can stall the guest for tens of milliseconds.
            rate > want * 0.5 && rate < want * 1.5,
            "{} ticks in {} HPET ticks: {rate:.1} Hz (LAPIC timer {} Hz)",
            k1 - k0,
            t1 - t0,
            super::apic::timer_hz()
        );
        check!(exits >= k1 - k0, "{exits} exits for {} ticks", k1 - k0);
        // The idle wait takes the next tick in ring 0.
        let k = crate::sched::ticks();
        for _ in 0..2 {
            super::wait_for_interrupt();
        }
        check!(crate::sched::ticks() > k, "wait_for_interrupt saw no tick");
        check_eq!(super::apic::stray_interrupts(), 0);
        Ok(())
    }
);

kernel_test!(
    fn null_syscall_round_trip() {
        let _space = Space::new()?;
        const N: u64 = 20_000;
        let mut ctx = UserContext::new(at(unsafe_ref(&raw const utest_null)), STACK_TOP);
        ctx.regs_mut().rbx = N;
        let t0 = super::clock::ticks();
        let mut calls = 0;
        loop {
            match run(&mut ctx) {
                UserExit::Syscall if ctx.syscall_nr() == 39 => {
                    calls += 1;
                    ctx.set_syscall_ret(0);
                }
                UserExit::Syscall if ctx.syscall_nr() == 0x3ff => break,
                e => return Err(format!("{e:?} nr {}", ctx.syscall_nr())),
            }
        }
        let dt = super::clock::ticks() - t0;
        check_eq!(calls, N);
        let ns = dt as f64 * 1e9 / super::clock::ticks_per_sec().max(1) as f64 / N as f64;
        println!("    null syscall round trip: {ns:.0} ns ({N} calls)");
        Ok(())
    }
);

kernel_test!(
    fn copies_to_and_from_user_memory() {
        let mut space = Space::new()?;
        let msg: [u8; 40] = core::array::from_fn(|i| i as u8 ^ 0x5a);
        // Mapped: all copied, seen through the page tables.
        check_eq!(copy_to_user(DATA + 3, &msg), 0);
        let mut seen = [0u8; 40];
        check!(space.read(DATA + 3, &mut seen));
        check_eq!(seen, msg);
        let mut back = [0u8; 40];
        check_eq!(copy_from_user(&mut back, DATA + 3), 0);
        check_eq!(back, msg);
        // Across a page boundary inside the area.
        check_eq!(copy_to_user(DATA + 0xffd, &msg), 0);
        check_eq!(copy_from_user(&mut back, DATA + 0xffd), 0);
        check_eq!(back, msg);
        // Running into a hole: the exact count left, the rest done.
        let end = DATA_END;
        check_eq!(copy_to_user(end - 13, &msg), 27);
        check!(space.read(end - 13, &mut seen[..13]));
        check_eq!(seen[..13], msg[..13]);
        back = [0; 40];
        check_eq!(copy_from_user(&mut back, end - 5), 35);
        check_eq!(back[..5], msg[8..13]);
        check_eq!(back[5..], [0u8; 35]);
        // A user page that is read-only refuses stores, allows loads.
        check_eq!(copy_to_user(RO, &msg[..8]), 8);
        check_eq!(copy_from_user(&mut back[..8], RO), 0);
        check_eq!(
            u64::from_le_bytes(back[..8].try_into().unwrap_or([0; 8])),
            0x005e_ed0f_5eed
        );
        // Never kernel or non-canonical addresses, never a wrap.
        let kernel = (&raw const utest_begin) as u64;
        check_eq!(copy_from_user(&mut back, kernel), 40, "kernel address");
        check_eq!(copy_to_user(kernel, &msg), 40);
        check_eq!(
            copy_from_user(&mut back, 0x8000_0000_0000),
            40,
            "non-canonical"
        );
        check_eq!(
            copy_from_user(&mut back, 0x7fff_ffff_fff0),
            40,
            "ends past the user half"
        );
        check_eq!(copy_from_user(&mut back, u64::MAX - 3), 40, "wraps");
        check_eq!(
            copy_from_user(&mut [], 0x8000_0000_0000),
            0,
            "nothing to copy"
        );
        check_eq!(copy_from_user(&mut back, HOLE), 40, "unmapped");
        check_eq!(copy_from_user(&mut back, 0), 40, "NULL");
        Ok(())
    }
);

kernel_test!(
    fn smep_and_smap_guard_user_pages() {
        let mut space = Space::new()?;
        let ebx = if super::cpuid(0)[0] >= 7 {
            core::arch::x86_64::__cpuid_count(7, 0).ebx
        } else {
            0
        };
        let (has_smep, has_smap) = (ebx & 1 << 7 != 0, ebx & 1 << 20 != 0);
        check_eq!(
            (cpu::smep_enabled(), cpu::smap_enabled()),
            (has_smep, has_smap)
        );
        check_eq!(
            cpu::cr4() >> 20 & 3,
            u64::from(has_smep) | u64::from(has_smap) << 1,
            "CR4.SMEP/SMAP"
        );
        // The user page holds a value, known through the page tables.
        let mut b = [0u8; 8];
        check!(space.read(RO, &mut b));
        let v = u64::from_le_bytes(b);
        let plain = crate::arch::probe_read(RO);
        if has_smap {
            let t = match plain {
                Ok(x) => return Err(format!("a plain kernel load of a user page read {x:#x}")),
                Err(t) => t,
            };
            // A protection fault in supervisor mode.
            check_eq!((t.class, t.syndrome & 7, t.addr), (14, 1, RO));
        } else {
            println!("    SMAP absent on this CPU (try --cpu max); plain loads reach user pages");
            check_eq!(plain.ok(), Some(v));
        }
        check_eq!(copy_from_user(&mut b, RO), 0);
        check_eq!(u64::from_le_bytes(b), v, "copy_from_user under SMAP");
        if has_smep {
            let f = at(unsafe_ref(&raw const utest_ret0));
            // SAFETY: `f` holds `xor eax, eax; ret`, a function returning 0,
            // should SMEP fail to stop the fetch.
            let r = unsafe { crate::arch::probe_exec(f) };
            let t = match r {
                Ok(()) => return Err("the kernel executed a user page".into()),
                Err(t) => t,
            };
            check_eq!(
                (t.class, t.syndrome & 0x17, t.addr),
                (14, 0x11, f),
                "supervisor fetch, protection"
            );
        } else {
            println!("    SMEP absent on this CPU");
        }
        Ok(())
    }
);

/// Two kernel threads and the test's own, switching in a ring.
struct PingPong {
    main: Context,
    a: Context,
    b: Context,
    trace: [u8; 16],
    len: usize,
    a_sum: u64,
}

const ROUNDS: u64 = 5;

extern "C" fn ping(arg: u64) -> ! {
    let p = arg as *mut PingPong;
    let mut sum = 0u64;
    for i in 0..ROUNDS {
        sum += i * 3 + 1;
        // SAFETY: `p` outlives both threads' use (the test waits for the
        // switch back to main); only one thread runs at a time.
        unsafe {
            (*p).trace[(*p).len] = b'a';
            (*p).len += 1;
            switch_to(&raw mut (*p).a, &raw const (*p).b);
        }
    }
    // SAFETY: as above; main was saved by the test's switch_to.
    unsafe {
        (*p).a_sum = sum;
        switch_to(&raw mut (*p).a, &raw const (*p).main);
    }
    unreachable!("ping resumed after the test ended")
}

extern "C" fn pong(arg: u64) -> ! {
    let p = arg as *mut PingPong;
    loop {
        // SAFETY: as in `ping`.
        unsafe {
            (*p).trace[(*p).len] = b'b';
            (*p).len += 1;
            switch_to(&raw mut (*p).b, &raw const (*p).a);
        }
    }
}

kernel_test!(
    fn switch_to_ping_pongs_between_kernel_threads() {
        use crate::memory::kstack::KernelStack;
        let sa = check_some!(KernelStack::new());
        let sb = check_some!(KernelStack::new());
        let mut pp = PingPong {
            main: Context::empty(),
            a: Context::empty(),
            b: Context::empty(),
            trace: [0; 16],
            len: 0,
            a_sum: 0,
        };
        let p = &raw mut pp;
        let rsp_before: u64;
        // SAFETY: reads RSP only.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp_before, options(nomem, nostack)) };
        // SAFETY: both contexts get fresh, mapped stacks and entries that
        // never return; `pp` lives on this stack until the switch back.
        unsafe {
            (*p).a = Context::new(sa.top(), ping, p as u64);
            (*p).b = Context::new(sb.top(), pong, p as u64);
            switch_to(&raw mut (*p).main, &raw const (*p).a);
        }
        let rsp_after: u64;
        // SAFETY: reads RSP only.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp_after, options(nomem, nostack)) };
        check_eq!(rsp_after, rsp_before, "RSP back on the test's stack");
        check_eq!(&pp.trace[..pp.len], b"ababababab", "switch order");
        check_eq!(
            pp.a_sum,
            (0..ROUNDS).map(|i| i * 3 + 1).sum::<u64>(),
            "a local across switches"
        );
        // Each thread ran on its own stack.
        check!(
            (sa.bottom()..sa.top()).contains(&pp.a.saved_rsp()),
            "a's saved RSP"
        );
        check!(
            (sb.bottom()..sb.top()).contains(&pp.b.saved_rsp()),
            "b's saved RSP"
        );
        drop(sa);
        drop(sb);
        Ok(())
    }
);

kernel_test!(
    fn interrupt_stubs_are_16_bytes_apart() {
        unsafe extern "C" {
            static isr_irq_stubs: u8;
        }
        let base = (&raw const isr_irq_stubs) as u64;
        for v in 32u64..256 {
            let p = (base + (v - 32) * 16) as *const u8;
            // SAFETY: inside the kernel text of idt.S (224 stubs of 16
            // bytes); text is readable.
            let b = unsafe { core::slice::from_raw_parts(p, 7) };
            // push $0 (6a 00), then push $v (6a imm8 or 68 imm32).
            let ok = b[0..2] == [0x6a, 0]
                && if v < 128 {
                    b[2..4] == [0x6a, v as u8]
                } else {
                    b[2] == 0x68 && b[3..7] == (v as u32).to_le_bytes()
                };
            check!(ok, "stub {v} at {p:?}: {b:02x?}");
        }
        Ok(())
    }
);

kernel_test!(
    fn user_mode_works_on_every_cpu() {
        // Each other CPU enters ring 3 through its own TSS, GS area and
        // SYSCALL MSRs, and keeps user FP state and FS bases in its own
        // registers, in a space it activates itself.
        for cpu in crate::smp::online().filter(|&c| c != 0) {
            for t in [
                syscall_arguments_results_and_preserved_registers
                    as fn() -> crate::ktest::TestResult,
                sse_state_survives_kernel_entries_and_context_switches,
                fs_base_is_per_context,
            ] {
                crate::smp::run_test_on(cpu, t).map_err(|e| format!("on CPU {cpu}: {e}"))?;
            }
        }
        Ok(())
    }
);

/// What [`fp_dump_there`] works on: the test's own space and context,
/// borrowed while the test waits for it.
struct Migrate<'a> {
    space: &'a mut Space,
    ctx: &'a mut UserContext,
    buf: u64,
    out: Option<Result<FpDump, String>>,
}

/// Job on another CPU: runs the context there up to its FP dump.
fn fp_dump_there(arg: u64) {
    // SAFETY: `arg` is the test's `Migrate`, which it does not touch until
    // this job is done (it waits for it).
    let m = unsafe { &mut *(arg as *mut Migrate<'_>) };
    uspace::activate(m.space.get());
    m.out = Some(fp_dump(m.space, m.ctx, m.buf));
    uspace::deactivate();
}

kernel_test!(
    fn sse_state_follows_a_context_to_another_cpu_and_back() {
        let Some(other) = crate::smp::online().find(|&c| c != 0) else {
            return Ok(()); // one CPU
        };
        let mut space = Space::new()?;
        let (seed, mx) = (0xc000_0000_0000_0300, 0x7f80);
        let mut a = fp_ctx(seed, mx, DATA);
        // a's state is now live in this CPU's registers only.
        fp_set(&mut a)?;
        let mut m = Migrate {
            space: &mut space,
            ctx: &mut a,
            buf: DATA,
            out: None,
        };
        let done = crate::smp::jobs_done(other);
        check!(crate::smp::post_job(
            other,
            fp_dump_there,
            (&raw mut m) as u64
        ));
        check!(crate::smp::wait_jobs(other, done + 1), "CPU {other} ran a");
        let (x, mxcsr, _) = check_some!(m.out.take())?;
        check_eq!(x, fp_expect(seed), "a's XMM on CPU {other}");
        check_eq!(mxcsr, mx, "a's MXCSR on CPU {other}");
        // Back here: CPU `other` holds a's state now, and gives it back.
        uspace::activate(space.get());
        a.set_pc(at(unsafe_ref(&raw const utest_fpdump)));
        a.set_sp(STACK_TOP - 0x800);
        a.regs_mut().rdx = DATA + 0x800;
        let (x, mxcsr, _) = fp_dump(&mut space, &mut a, DATA + 0x800)?;
        check_eq!(x, fp_expect(seed), "a's XMM back on CPU 0");
        check_eq!(mxcsr, mx);
        Ok(())
    }
);
