//! Self-tests of aarch64 user mode on the real CPU: hand-assembled EL0 code
//! in a real user address space makes system calls, faults in every way
//! the decoder tells apart, keeps its FP/SIMD and TLS state across kernel
//! work and other threads, and is preempted by the timer; the user-copy
//! routines, PAN, the boot code's TCR features and kernel thread switching
//! are checked alongside.

use alloc::string::String;
use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{DAIF, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, Readable, SCTLR_EL1};
use folium_mm::VirtAddr;
use folium_mm::aspace::Access;
use folium_mm::vma::{Prot, Vma, VmaKind};

use super::context::{Context, switch_to};
use super::user::{UserContext, copy_from_user, copy_to_user, run_user};
use crate::arch::{UserExit, UserFault, UserFaultKind};
use crate::memory::uspace::{self, KernelEnv, UserSpace};

const CODE: u64 = 0x40_0000;
const DATA: u64 = 0x60_0000;
const DATA_PAGES: u64 = 3;
const STACK: u64 = 0x80_0000;
const STACK_TOP: u64 = STACK + 0x2000;
/// Covered by no area.
const UNMAPPED: u64 = 0x1234_5000;
const PAGE: u64 = 4096;

// Instruction encodings (A64).
const SVC0: u32 = 0xd400_0001;
const UDF0: u32 = 0x0000_0000;
const SPIN: u32 = 0x1400_0000; // b .
const LDR_X0_X1: u32 = 0xf940_0020; // ldr x0, [x1]
const STR_X0_X1: u32 = 0xf900_0020; // str x0, [x1]
const LDR_X0_SP: u32 = 0xf940_03e0; // ldr x0, [sp]
const BR_X1: u32 = 0xd61f_0020;

/// movz xd, #imm16
const fn movz(d: u32, imm: u32) -> u32 {
    0xd280_0000 | (imm << 5) | d
}
/// add xd, xn, #imm12
const fn add_imm(d: u32, n: u32, imm: u32) -> u32 {
    0x9100_0000 | (imm << 10) | (n << 5) | d
}
/// brk #imm16
const fn brk(imm: u32) -> u32 {
    0xd420_0000 | (imm << 5)
}
/// add vN.2d, vN.2d, vN.2d (doubles both 64-bit lanes)
const fn vdouble(n: u32) -> u32 {
    0x4ee0_8400 | (n << 16) | (n << 5) | n
}
/// b by `words` instructions (may be negative)
const fn b(words: i32) -> u32 {
    0x1400_0000 | (words as u32 & 0x03ff_ffff)
}
/// System register operand (op0, op1, CRn, CRm, op2) for mrs/msr.
const fn sysreg(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> u32 {
    (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5)
}
const FPCR: u32 = sysreg(3, 3, 4, 4, 0);
const FPSR: u32 = sysreg(3, 3, 4, 4, 1);
const TPIDR_EL0: u32 = sysreg(3, 3, 13, 0, 2);
const fn mrs(d: u32, reg: u32) -> u32 {
    0xd520_0000 | reg | d
}
const fn msr(reg: u32, t: u32) -> u32 {
    0xd500_0000 | reg | t
}

/// A user address space with `code` at CODE (RX), DATA_PAGES of RW data
/// (only the first two present) and a two-page RW stack, installed as the
/// user half; deactivated and torn down on drop, so a failing check leaks
/// nothing.
struct TestSpace {
    space: Option<UserSpace>,
}

impl TestSpace {
    fn new(code: &[u32]) -> Result<TestSpace, String> {
        let env = &mut KernelEnv;
        let err = |e: &dyn core::fmt::Debug| alloc::format!("{e:?}");
        let mut t = TestSpace {
            space: Some(uspace::new_space().map_err(|e| err(&e))?),
        };
        let s = t.space();
        let vma = |start: u64, pages: u64, prot| {
            Vma::new(
                VirtAddr::new(start),
                VirtAddr::new(start + pages * PAGE),
                prot,
                VmaKind::Anon,
            )
        };
        s.add_vma(vma(CODE, 1, Prot::RX)).map_err(|e| err(&e))?;
        s.add_vma(vma(DATA, DATA_PAGES, Prot::RW))
            .map_err(|e| err(&e))?;
        s.add_vma(vma(STACK, 2, Prot::RW)).map_err(|e| err(&e))?;
        let bytes: alloc::vec::Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        s.write_bytes(env, VirtAddr::new(CODE), &bytes)
            .map_err(|e| err(&e))?;
        let pattern: alloc::vec::Vec<u8> = (0..2 * PAGE).map(|i| (i % 251) as u8).collect();
        s.write_bytes(env, VirtAddr::new(DATA), &pattern)
            .map_err(|e| err(&e))?;
        s.write_bytes(env, VirtAddr::new(STACK), &[0; 2 * PAGE as usize])
            .map_err(|e| err(&e))?;
        let (pfn, _) = s
            .translate(VirtAddr::new(CODE))
            .ok_or("code page not mapped")?;
        let kva = crate::memory::frames::linear().ptr::<u8>(pfn.phys()) as u64;
        super::sync_icache(kva, bytes.len());
        uspace::activate(s);
        Ok(t)
    }

    fn space(&mut self) -> &mut UserSpace {
        self.space.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for TestSpace {
    fn drop(&mut self) {
        uspace::deactivate();
        if let Some(s) = self.space.take() {
            s.teardown(&mut KernelEnv);
        }
    }
}

/// The byte the test spaces hold at DATA + `off` (for `off` < 2 pages).
fn data_byte(off: u64) -> u8 {
    (off % 251) as u8
}

/// Runs until an exit that is not an interrupt (the timer may run).
fn run(ctx: &mut UserContext) -> UserExit {
    for _ in 0..10_000 {
        match run_user(ctx) {
            UserExit::Interrupt => {}
            e => return e,
        }
    }
    UserExit::Interrupt
}

kernel_test!(
    fn syscalls_pass_number_arguments_and_return_value() {
        let _t = TestSpace::new(&[
            movz(8, 64),
            movz(0, 0x11),
            movz(1, 0x22),
            movz(2, 0x33),
            movz(3, 0x44),
            movz(4, 0x55),
            movz(5, 0x66),
            SVC0,
            add_imm(0, 0, 1), // uses the return value
            movz(8, 93),
            SVC0,
            SPIN,
        ])?;
        let mut ctx = UserContext::new(CODE, STACK_TOP);
        check_eq!(run(&mut ctx), UserExit::Syscall);
        check_eq!(ctx.syscall_nr(), 64);
        check_eq!(ctx.syscall_args(), [0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        check_eq!(ctx.pc(), CODE + 8 * 4, "PC past the svc");
        check_eq!(ctx.sp(), STACK_TOP);
        ctx.set_syscall_ret(0x1234_5678_9abc_def0);
        check_eq!(run(&mut ctx), UserExit::Syscall);
        check_eq!(ctx.syscall_nr(), 93);
        check_eq!(
            ctx.syscall_args()[0],
            0x1234_5678_9abc_def1,
            "user code saw the return value"
        );
        check_eq!(ctx.pc(), CODE + 11 * 4);
        Ok(())
    }
);

kernel_test!(
    fn user_faults_decode_by_kind() {
        let _t = TestSpace::new(&[LDR_X0_X1, STR_X0_X1, UDF0, brk(0x7), BR_X1, LDR_X0_SP, SVC0])?;
        let page = |access, protection| UserFaultKind::Page { access, protection };
        // Mapped in the kernel half (the image), never for EL0.
        static KERNEL_WORD: u64 = 0;
        let kernel = &raw const KERNEL_WORD as u64;
        // (what, entry, x1, kind, fault address, ESR_EL1.EC, PC at the fault)
        #[rustfmt::skip]
        let cases = [
            ("load from unmapped", 0, UNMAPPED + 8, page(Access::Read, false), UNMAPPED + 8, 0x24, CODE),
            ("load from the kernel half", 0, kernel, page(Access::Read, true), kernel, 0x24, CODE),
            ("store to read-only code", 4, CODE + 16, page(Access::Write, true), CODE + 16, 0x24, CODE + 4),
            ("store to unmapped", 4, UNMAPPED, page(Access::Write, false), UNMAPPED, 0x24, CODE + 4),
            ("undefined instruction", 8, 0, UserFaultKind::IllegalInstruction, CODE + 8, 0x00, CODE + 8),
            ("brk", 12, 0, UserFaultKind::Breakpoint, CODE + 12, 0x3c, CODE + 12),
            ("misaligned PC", 16, CODE + 2, UserFaultKind::PcAlignment, CODE + 2, 0x22, CODE + 2),
            ("fetch from unmapped", 16, UNMAPPED, page(Access::Exec, false), UNMAPPED, 0x20, UNMAPPED),
            ("fetch from the data area", 16, DATA, page(Access::Exec, true), DATA, 0x20, DATA),
        ];
        for (what, entry, x1, kind, addr, ec, pc) in cases {
            let mut ctx = UserContext::new(CODE + entry, STACK_TOP);
            ctx.set_x(1, x1);
            let UserExit::Fault(UserFault {
                kind: k,
                addr: a,
                code,
            }) = run(&mut ctx)
            else {
                return Err(alloc::format!("{what}: no fault, PC {:#x}", ctx.pc()));
            };
            check_eq!(k, kind, "{what}: ESR {code:#x} PC {:#x}", ctx.pc());
            check_eq!(a, addr, "{what}: fault address");
            check_eq!(code >> 26, ec, "{what}: ESR {code:#x}");
            check_eq!(ctx.pc(), pc, "{what}: PC at the faulting instruction");
            if kind == UserFaultKind::Breakpoint {
                check_eq!(code & 0xffff, 0x7, "brk immediate in ESR.ISS");
            }
        }
        // A load through an SP that is not 16-byte aligned (SCTLR_EL1.SA0).
        let mut ctx = UserContext::new(0, 0);
        ctx.set_pc(CODE + 20);
        ctx.set_sp(STACK_TOP - 8);
        check_eq!((ctx.pc(), ctx.sp()), (CODE + 20, STACK_TOP - 8));
        match run(&mut ctx) {
            UserExit::Fault(f) => {
                check_eq!(f.kind, UserFaultKind::SpAlignment, "ESR {:#x}", f.code);
                check_eq!(f.code >> 26, 0x26);
                check_eq!((f.addr, ctx.pc()), (CODE + 20, CODE + 20));
            }
            UserExit::Syscall if ctx.pc() == CODE + 28 => {
                // QEMU's TCG does not model SP alignment checking: the load
                // went through. Check that the check is on, and the decoder
                // with the syndrome a CPU would report.
                check!(SCTLR_EL1.is_set(SCTLR_EL1::SA0), "SCTLR_EL1.SA0 is clear");
                println!("    SP alignment not checked by this CPU model; decoder checked alone");
                let f = super::user::decode_sync(&ctx, (0x26 << 26) | (1 << 25), 0);
                let want = UserFault {
                    kind: UserFaultKind::SpAlignment,
                    addr: ctx.pc(),
                    code: (0x26 << 26) | (1 << 25),
                };
                check_eq!(f, UserExit::Fault(want));
            }
            e => return Err(alloc::format!("misaligned SP: {e:?} at PC {:#x}", ctx.pc())),
        }
        // The faults changed nothing: the data page still holds its bytes.
        let mut b = [0u8; 8];
        check_eq!(copy_from_user(&mut b, DATA), 0);
        check_eq!(b, core::array::from_fn(|i| data_byte(i as u64)));
        Ok(())
    }
);

/// Distinct 128-bit values per register and thread.
fn pattern(i: usize, seed: u64) -> u128 {
    let lo = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1) ^ (seed << 56);
    let hi = lo.rotate_left(13) ^ seed;
    (u128::from(hi) << 64) | u128::from(lo)
}

/// `pattern` after `add vN.2d, vN.2d, vN.2d`.
fn doubled(v: u128) -> u128 {
    let lo = (v as u64).wrapping_mul(2);
    let hi = ((v >> 64) as u64).wrapping_mul(2);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// Overwrites every FP/SIMD register, as kernel code may.
fn clobber_fp_simd() {
    // SAFETY: only declared-clobbered vector registers are written.
    unsafe {
        asm!(
            "movi v0.2d, #0xffffffffffffffff",
            "mov v1.16b, v0.16b", "mov v2.16b, v0.16b", "mov v3.16b, v0.16b",
            "mov v4.16b, v0.16b", "mov v5.16b, v0.16b", "mov v6.16b, v0.16b",
            "mov v7.16b, v0.16b", "mov v8.16b, v0.16b", "mov v9.16b, v0.16b",
            "mov v10.16b, v0.16b", "mov v11.16b, v0.16b", "mov v12.16b, v0.16b",
            "mov v13.16b, v0.16b", "mov v14.16b, v0.16b", "mov v15.16b, v0.16b",
            "mov v16.16b, v0.16b", "mov v17.16b, v0.16b", "mov v18.16b, v0.16b",
            "mov v19.16b, v0.16b", "mov v20.16b, v0.16b", "mov v21.16b, v0.16b",
            "mov v22.16b, v0.16b", "mov v23.16b, v0.16b", "mov v24.16b, v0.16b",
            "mov v25.16b, v0.16b", "mov v26.16b, v0.16b", "mov v27.16b, v0.16b",
            "mov v28.16b, v0.16b", "mov v29.16b, v0.16b", "mov v30.16b, v0.16b",
            "mov v31.16b, v0.16b",
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _,
            out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _,
            out("v22") _, out("v23") _, out("v24") _, out("v25") _, out("v26") _,
            out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nomem, nostack)
        )
    };
}

fn kernel_fpcr() -> u64 {
    let v: u64;
    // SAFETY: reading FPCR has no side effects.
    unsafe { asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack)) };
    v
}

kernel_test!(
    fn user_fp_simd_fpcr_and_tls_survive_the_kernel() {
        // svc; double every vector register; read FPCR, FPSR, TPIDR_EL0
        // into x0..x2; TPIDR_EL0 += 1; back to the svc.
        let mut code = alloc::vec![SVC0];
        code.extend((0..32).map(vdouble));
        code.extend([
            mrs(0, FPCR),
            mrs(1, FPSR),
            mrs(2, TPIDR_EL0),
            add_imm(3, 2, 1),
            msr(TPIDR_EL0, 3),
        ]);
        code.push(b(-(code.len() as i32)));
        let _t = TestSpace::new(&code)?;
        // Two threads with different FP modes (rounding, flush-to-zero,
        // default NaN), sticky flags, vector values and TLS; one on the heap.
        let setup = |seed: u64, fpcr: u64, fpsr: u64, tls: u64| {
            let mut c = UserContext::new(CODE, STACK_TOP);
            (0..32).for_each(|i| c.set_q(i, pattern(i, seed)));
            c.set_fp_control(fpcr, fpsr);
            c.set_tls(tls);
            c
        };
        let (fpcr_a, fpsr_a, tls_a) = (0x0340_0000, 0x0800_0011, 0x7000_0000_1000);
        let (fpcr_b, fpsr_b, tls_b) = (0x0080_0000, 0x0000_0002, 0x5555_0000);
        let mut a = alloc::boxed::Box::new(setup(1, fpcr_a, fpsr_a, tls_a));
        let mut b = setup(2, fpcr_b, fpsr_b, tls_b);
        check_eq!(run(&mut a), UserExit::Syscall);
        check_eq!(kernel_fpcr(), 0, "the kernel runs with the default FPCR");
        // The kernel's own use of the registers, then another thread.
        clobber_fp_simd();
        let mut page = alloc::vec![1u8; 4096];
        // SAFETY: a heap buffer of 4096 bytes owned here.
        unsafe { super::zero_pages(page.as_mut_ptr(), page.len()) };
        check!(page.iter().all(|&x| x == 0));
        drop(page);
        check_eq!(run(&mut b), UserExit::Syscall);
        for (ctx, seed, fpcr, fpsr, tls) in [
            (&mut *a, 1, fpcr_a, fpsr_a, tls_a),
            (&mut b, 2, fpcr_b, fpsr_b, tls_b),
        ] {
            clobber_fp_simd();
            check_eq!(run(ctx), UserExit::Syscall);
            for i in 0..32 {
                check_eq!(ctx.q(i), doubled(pattern(i, seed)), "q{i} of thread {seed}");
            }
            check_eq!(ctx.x(0), fpcr, "FPCR as user code read it, thread {seed}");
            check_eq!(ctx.x(1), fpsr, "FPSR as user code read it, thread {seed}");
            check_eq!(ctx.fp_control(), (fpcr, fpsr));
            check_eq!(
                ctx.x(2),
                tls,
                "TPIDR_EL0 as user code read it, thread {seed}"
            );
            check_eq!(ctx.tls(), tls + 1, "TPIDR_EL0 as user code left it");
            check_eq!(kernel_fpcr(), 0);
        }
        // A copy (fork) resumes exactly where the original is.
        let mut c = b.clone();
        check_eq!(run(&mut c), UserExit::Syscall);
        check_eq!(c.q(5), doubled(doubled(pattern(5, 2))));
        check_eq!(c.tls(), tls_b + 2);
        Ok(())
    }
);

fn irqs_masked() -> bool {
    DAIF.is_set(DAIF::I)
}

kernel_test!(
    fn timer_preempts_a_spinning_user_thread() {
        use super::clock;
        let _t = TestSpace::new(&[SPIN])?;
        super::timer_init();
        let freq = clock::ticks_per_sec();
        // Counter time, not wall time: generous bounds against a stuck timer.
        let deadline = clock::ticks() + 5 * freq;
        let mut ctx = UserContext::new(CODE, STACK_TOP);
        // Align to a tick, then count ticks against the counter.
        let k0 = crate::sched::ticks();
        while crate::sched::ticks() == k0 {
            check_eq!(run_user(&mut ctx), UserExit::Interrupt);
            check!(
                clock::ticks() < deadline,
                "no timer interrupt in 5 s of counter time"
            );
        }
        const N: u64 = 10;
        let (k1, t1) = (crate::sched::ticks(), clock::ticks());
        let mut exits = 0u64;
        while crate::sched::ticks() < k1 + N {
            check_eq!(run_user(&mut ctx), UserExit::Interrupt);
            check_eq!(ctx.pc(), CODE, "the thread spins in place");
            check!(irqs_masked(), "run_user returns with IRQs masked");
            exits += 1;
            check!(
                clock::ticks() < deadline,
                "ticks stopped after {} of {N}",
                crate::sched::ticks() - k1
            );
        }
        let dt = clock::ticks() - t1;
        let expect = N * freq / crate::sched::TICK_HZ;
        check!(
            // Loose: a wrong interval is off by factors, while a busy host
            // can stall the guest (late ticks are dropped, not bunched).
            dt >= expect / 2 && dt <= expect * 4,
            "{N} ticks took {dt} counter ticks, expected about {expect}"
        );
        // One exit per tick, except when the host stalls the guest long
        // enough that the next deadline has passed by the time the handler
        // looks again: then two ticks are taken in one exit.
        check!(exits >= N / 2, "{exits} interrupt exits for {N} ticks");
        println!(
            "    {N} ticks via {} in {dt} counter ticks (expected {expect})",
            crate::platform::irqchip::name()
        );
        // The idle wait takes the tick in the kernel and returns masked.
        let k2 = crate::sched::ticks();
        for _ in 0..30 {
            if crate::sched::ticks() >= k2 + 3 {
                break;
            }
            super::wait_for_interrupt();
            check!(irqs_masked(), "wait_for_interrupt returns with IRQs masked");
        }
        check!(crate::sched::ticks() >= k2 + 3, "idle waits saw no ticks");
        Ok(())
    }
);

kernel_test!(
    fn user_copies_stop_at_faults_and_refuse_kernel_addresses() {
        let mut t = TestSpace::new(&[SPIN])?;
        // Across a page boundary, both ways; checked through the tables.
        let mut buf = [0u8; 100];
        check_eq!(copy_from_user(&mut buf, DATA + PAGE - 50), 0);
        check_eq!(
            buf,
            core::array::from_fn(|i| data_byte(PAGE - 50 + i as u64))
        );
        check_eq!(copy_to_user(DATA + PAGE - 7, &[0xa5; 20]), 0);
        let mut back = [0u8; 22];
        check!(
            t.space()
                .read_bytes(&KernelEnv, VirtAddr::new(DATA + PAGE - 8), &mut back)
        );
        check_eq!(back[0], data_byte(PAGE - 8));
        check!(back[1..21].iter().all(|&x| x == 0xa5));
        check_eq!(back[21], data_byte(PAGE + 13));
        // Up to a page that is not present: exactly the bytes before it.
        let mut part = [0xeeu8; 20];
        check_eq!(copy_from_user(&mut part, DATA + 2 * PAGE - 5), 15);
        check_eq!(
            part[..5],
            core::array::from_fn::<u8, 5, _>(|i| data_byte(2 * PAGE - 5 + i as u64))
        );
        check!(
            part[5..].iter().all(|&x| x == 0xee),
            "nothing past the fault"
        );
        check_eq!(copy_to_user(DATA + 2 * PAGE - 3, &[1; 16]), 13);
        let mut tail = [0u8; 3];
        check!(
            t.space()
                .read_bytes(&KernelEnv, VirtAddr::new(DATA + 2 * PAGE - 3), &mut tail)
        );
        check_eq!(tail, [1, 1, 1]);
        // Read-only to the user is read-only to the copies.
        check_eq!(copy_to_user(CODE, &[0; 8]), 8);
        let mut insn = [0u8; 4];
        check_eq!(copy_from_user(&mut insn, CODE), 0);
        check_eq!(u32::from_le_bytes(insn), SPIN);
        // Kernel addresses and ranges leaving the user half are refused
        // without an access (no fault is even recorded).
        static KERNEL_WORD: [u8; 8] = *b"kernel!!";
        let kaddr = &raw const KERNEL_WORD as u64;
        let _ = crate::arch::take_trap();
        let mut b8 = [0u8; 8];
        check_eq!(copy_from_user(&mut b8, kaddr), 8);
        check_eq!(b8, [0; 8]);
        check_eq!(copy_to_user(kaddr, b"overwrit"), 8);
        check_eq!(copy_from_user(&mut b8, (1 << 48) - 4), 8);
        check_eq!(copy_to_user((1 << 48) - 4, &b8), 8);
        check_eq!(copy_from_user(&mut b8, u64::MAX - 2), 8);
        check!(
            crate::arch::take_trap().is_none(),
            "a refused copy touched memory"
        );
        check_eq!(&KERNEL_WORD, b"kernel!!");
        check_eq!(
            copy_from_user(&mut [], kaddr),
            0,
            "empty copies always succeed"
        );
        Ok(())
    }
);

kernel_test!(
    fn pan_and_boot_mmu_features_match_the_cpu() {
        let _t = TestSpace::new(&[SPIN])?;
        let asid_bits = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::ASIDBits);
        let want_bits = if asid_bits == 2 { 16 } else { 8 };
        check_eq!(super::asid_bits(), want_bits, "TCR_EL1.AS");
        let hafdbs = ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::HAFDBS);
        check_eq!(
            super::hw_access_dirty(),
            (hafdbs >= 1, hafdbs >= 2),
            "TCR_EL1.HA/HD"
        );
        let expect = u64::from_le_bytes(core::array::from_fn(|i| data_byte(i as u64)));
        if super::has_pan() {
            check!(super::pan_enabled(), "PSTATE.PAN is clear");
            let r = crate::arch::probe_read(DATA);
            let rec = check_some!(r.err(), "a plain kernel load from a user page worked");
            check_eq!(rec.class, 0x25, "data abort at EL1");
            check_eq!((rec.syndrome & 0x3f) >> 2, 3, "a permission fault");
            check_eq!(rec.addr, DATA);
            check!(crate::arch::probe_write(DATA, 0).is_err());
        } else {
            println!("    PAN not implemented by this CPU: plain kernel loads reach user pages");
            check_eq!(crate::arch::probe_read(DATA), Ok(expect));
        }
        println!(
            "    ASIDs {} bits, hardware access flag {}, dirty state {}, PAN {}",
            super::asid_bits(),
            hafdbs >= 1,
            hafdbs >= 2,
            super::pan_enabled()
        );
        let mut b = [0u8; 8];
        check_eq!(copy_from_user(&mut b, DATA), 0);
        check_eq!(u64::from_le_bytes(b), expect, "the page is unchanged");
        Ok(())
    }
);

/// Contexts of the switch test: 0 the test itself, 1 ping, 2 pong.
struct Contexts(UnsafeCell<[Context; 3]>);
// SAFETY: one CPU; only the switch test's three threads touch it, one at a
// time (each switch hands over the CPU).
unsafe impl Sync for Contexts {}

static CONTEXTS: Contexts = Contexts(UnsafeCell::new([
    Context::empty(),
    Context::empty(),
    Context::empty(),
]));
static TRACE: AtomicU64 = AtomicU64::new(0);
static FP_LOST: AtomicBool = AtomicBool::new(false);

fn ctx(i: usize) -> *mut Context {
    // SAFETY: an in-bounds element of the static array.
    unsafe { (CONTEXTS.0.get() as *mut Context).add(i) }
}

/// Sets d8..d15 to `seed`, `seed + 1`, ..., switches from `prev` to
/// `next`, and returns d8..d15 as found after switching back.
///
/// # Safety
///
/// As for [`switch_to`].
unsafe fn switch_keeping_d8_d15(prev: *mut Context, next: *const Context, seed: u64) -> [u64; 8] {
    let r: [u64; 8];
    // SAFETY: forwarded from the caller; the block is an ordinary call as
    // far as the registers go (clobber_abi), and d8..d15 are declared.
    unsafe {
        let (r0, r1, r2, r3, r4, r5, r6, r7): (u64, u64, u64, u64, u64, u64, u64, u64);
        asm!(
            "fmov d8, x11", "add x11, x11, #1", "fmov d9, x11", "add x11, x11, #1",
            "fmov d10, x11", "add x11, x11, #1", "fmov d11, x11", "add x11, x11, #1",
            "fmov d12, x11", "add x11, x11, #1", "fmov d13, x11", "add x11, x11, #1",
            "fmov d14, x11", "add x11, x11, #1", "fmov d15, x11",
            "bl {f}",
            "fmov x2, d8", "fmov x3, d9", "fmov x4, d10", "fmov x5, d11",
            "fmov x6, d12", "fmov x7, d13", "fmov x9, d14", "fmov x10, d15",
            inout("x11") seed => _,
            f = sym super::context::folium_switch_to,
            in("x0") prev,
            in("x1") next,
            lateout("x2") r0, lateout("x3") r1, lateout("x4") r2, lateout("x5") r3,
            lateout("x6") r4, lateout("x7") r5, lateout("x9") r6, lateout("x10") r7,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            clobber_abi("C"),
        );
        r = [r0, r1, r2, r3, r4, r5, r6, r7];
    }
    r
}

fn expect_d(seed: u64) -> [u64; 8] {
    core::array::from_fn(|i| seed + i as u64)
}

fn trace(step: u64) {
    TRACE.store(
        (TRACE.load(Ordering::Relaxed) << 4) | step,
        Ordering::Relaxed,
    );
}

extern "C" fn ping(seed: u64) -> ! {
    loop {
        trace(0xa);
        // SAFETY: contexts 1 and 2 are this test's threads; 2 is suspended
        // in a switch or freshly made.
        if unsafe { switch_keeping_d8_d15(ctx(1), ctx(2), seed) } != expect_d(seed) {
            FP_LOST.store(true, Ordering::Relaxed);
        }
    }
}

extern "C" fn pong(seed: u64) -> ! {
    let mut round = 0;
    loop {
        trace(0xb);
        round += 1;
        let next = if round == 3 { 0 } else { 1 };
        // SAFETY: as in `ping`; context 0 is the test, suspended in its switch.
        if unsafe { switch_keeping_d8_d15(ctx(2), ctx(next), seed) } != expect_d(seed) {
            FP_LOST.store(true, Ordering::Relaxed);
        }
    }
}

kernel_test!(
    fn switch_to_ping_pongs_between_kernel_threads() {
        use crate::memory::kstack::KernelStack;
        let a = check_some!(KernelStack::new());
        let b = check_some!(KernelStack::new());
        TRACE.store(0, Ordering::Relaxed);
        FP_LOST.store(false, Ordering::Relaxed);
        let keep = core::hint::black_box(0x5eed_u64);
        // SAFETY: nothing else runs; the contexts are (re)made before use.
        unsafe {
            *ctx(1) = Context::new(a.top(), ping, 0x100);
            *ctx(2) = Context::new(b.top(), pong, 0x200);
        }
        // SAFETY: context 1 was just made on a mapped, unused stack; the
        // threads end by switching back to context 0, saved here.
        let d = unsafe { switch_keeping_d8_d15(ctx(0), ctx(1), 0x300) };
        check_eq!(
            TRACE.load(Ordering::Relaxed),
            0xababab,
            "the order threads ran in"
        );
        check_eq!(d, expect_d(0x300), "d8..d15 of the test thread");
        check!(
            !FP_LOST.load(Ordering::Relaxed),
            "a thread lost its d8..d15"
        );
        check_eq!(keep, 0x5eed);
        check!(irqs_masked());
        // The threads stay suspended forever; their stacks go now.
        drop(a);
        drop(b);
        // And a plain switch_to both ways (the threads' d-register checks
        // above ran through the same routine).
        let c = check_some!(KernelStack::new());
        // SAFETY: a fresh thread on a fresh stack, which switches back.
        unsafe {
            *ctx(1) = Context::new(c.top(), back_to_test, 0);
            switch_to(ctx(0), ctx(1));
        }
        check_eq!(TRACE.load(Ordering::Relaxed), 0xc);
        drop(c);
        Ok(())
    }
);

extern "C" fn back_to_test(_: u64) -> ! {
    TRACE.store(0xc, Ordering::Relaxed);
    // SAFETY: context 0 is the test, suspended in its switch_to.
    unsafe { switch_to(ctx(1), ctx(0)) };
    unreachable!("switched back to a finished thread")
}

kernel_test!(
    fn user_mode_works_on_every_cpu() {
        // Each other CPU enters EL0 on its own stack and vectors, takes
        // system calls (and its own timer's interrupts) and runs user FP
        // state and TLS, in a space it activates itself.
        for cpu in crate::smp::online().filter(|&c| c != 0) {
            for t in [
                syscalls_pass_number_arguments_and_return_value as fn() -> crate::ktest::TestResult,
                user_fp_simd_fpcr_and_tls_survive_the_kernel,
            ] {
                crate::smp::run_test_on(cpu, t).map_err(|e| alloc::format!("on CPU {cpu}: {e}"))?;
            }
        }
        Ok(())
    }
);
