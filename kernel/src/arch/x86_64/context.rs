//! Kernel thread switching: callee-saved registers, RSP and the resume
//! address live in a [`Context`]; user FP state and FS base belong to the
//! `UserContext` and are not touched here.

/// A suspended kernel thread.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Context {
    rsp: u64,
    rip: u64,
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

impl Context {
    /// A context that, when switched to, calls `entry(arg)` on the stack
    /// whose top (exclusive, 16-byte aligned) is `stack_top`, with
    /// interrupts masked. `entry` must never return.
    pub fn new(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> Self {
        debug_assert!(stack_top.is_multiple_of(16), "stack top {stack_top:#x}");
        Context {
            rsp: stack_top,
            rip: context_start as *const () as u64,
            r12: entry as *const () as u64,
            r13: arg,
            ..Context::empty()
        }
    }

    /// The RSP saved by the last switch away (tests, reports).
    pub fn saved_rsp(&self) -> u64 {
        self.rsp
    }

    /// An empty context to switch *from* (the boot thread's).
    pub const fn empty() -> Self {
        Context {
            rsp: 0,
            rip: 0,
            rbx: 0,
            rbp: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
        }
    }
}

/// First code of a new context: `entry(arg)` from R12/R13, on a 16-byte
/// aligned stack (the call makes RSP = 8 mod 16 at entry, as the ABI
/// wants).
#[unsafe(naked)]
extern "C" fn context_start() -> ! {
    core::arch::naked_asm!("cli", "mov rdi, r13", "call r12", "ud2")
}

/// Saves the running kernel context in `*prev` and resumes `*next`;
/// returns when something switches back to `*prev`.
///
/// # Safety
///
/// Both pointers valid; `next` was made by [`Context::new`] (its stack
/// mapped and unused) or saved by `switch_to` (and not resumed since).
#[unsafe(naked)]
pub unsafe extern "C" fn switch_to(prev: *mut Context, next: *const Context) {
    core::arch::naked_asm!(
        "lea rax, [rip + 2f]",
        "mov [rdi + 8], rax",
        "mov [rdi], rsp",
        "mov [rdi + 16], rbx",
        "mov [rdi + 24], rbp",
        "mov [rdi + 32], r12",
        "mov [rdi + 40], r13",
        "mov [rdi + 48], r14",
        "mov [rdi + 56], r15",
        "mov rsp, [rsi]",
        "mov rbx, [rsi + 16]",
        "mov rbp, [rsi + 24]",
        "mov r12, [rsi + 32]",
        "mov r13, [rsi + 40]",
        "mov r14, [rsi + 48]",
        "mov r15, [rsi + 56]",
        "jmp qword ptr [rsi + 8]",
        "2:",
        "ret",
    )
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Context, rsp) == 0 && offset_of!(Context, rip) == 8);
    assert!(offset_of!(Context, rbx) == 16 && offset_of!(Context, rbp) == 24);
    assert!(offset_of!(Context, r12) == 32 && offset_of!(Context, r15) == 56);
};
