//! Threads on the Linux ABI, as small as a benchmark needs: [`spawn`]
//! runs `f(arg)` on a new thread of this process (`clone` with the flags
//! `pthread_create` passes, on a stack of its own), [`Thread::join`] waits
//! for it through the `CLONE_CHILD_CLEARTID` word and a futex, as
//! `pthread_join` does. A thread must not allocate (the heap is not
//! thread-safe) and ends by returning from `f`.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use folium_abi::{Errno, Sysno};

use crate::sys::{self, mm};

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;

/// Each thread's stack.
const STACK: u64 = 64 << 10;

/// A running (or finished, not yet joined) thread.
pub struct Thread {
    stack: u64,
    /// Its tid while it runs; the kernel zeroes it (and wakes a futex
    /// waiter) when the thread is gone. Lives at the stack's base.
    tid: &'static AtomicU32,
}

/// Starts `f(arg)` on a new thread.
pub fn spawn(f: extern "C" fn(u64), arg: u64) -> Result<Thread, Errno> {
    let stack = sys::mmap_anon(0, STACK, mm::PROT_READ | mm::PROT_WRITE, mm::MAP_PRIVATE)?;
    // SAFETY: the first word of a fresh mapping of ours, aligned, that
    // lives until `join` unmaps it (after the kernel stopped writing it).
    let tid: &'static AtomicU32 = unsafe { &*(stack as *const AtomicU32) };
    tid.store(u32::MAX, Ordering::Relaxed);
    let top = stack + STACK;
    let flags = CLONE_VM
        | CLONE_FS
        | CLONE_FILES
        | CLONE_SIGHAND
        | CLONE_THREAD
        | CLONE_SYSVSEM
        | CLONE_PARENT_SETTID
        | CLONE_CHILD_CLEARTID;
    let ret = clone_on(flags, top, stack, f, arg);
    match Errno::from_ret(ret) {
        Some(e) => {
            let _ = sys::munmap(stack, STACK);
            Err(e)
        }
        None => Ok(Thread { stack, tid }),
    }
}

/// Runs `f(arg)` in a new process that shares this one's memory, on a
/// stack of its own, while this one waits (`clone(CLONE_VM | CLONE_VFORK
/// | SIGCHLD)`, as `posix_spawn` does): returns its pid once it has
/// exited (`f` returned). With `wait` false, `CLONE_VFORK` is left out:
/// both run at once, and the caller must `wait4` for the child before
/// the stack may go (it is leaked here).
pub fn vm_child(f: extern "C" fn(u64), arg: u64, wait: bool) -> Result<i32, Errno> {
    const CLONE_VFORK: u64 = 0x4000;
    const SIGCHLD: u64 = 17;
    let stack = sys::mmap_anon(0, STACK, mm::PROT_READ | mm::PROT_WRITE, mm::MAP_PRIVATE)?;
    let flags = CLONE_VM | SIGCHLD | if wait { CLONE_VFORK } else { 0 };
    let ret = clone_on(flags, stack + STACK, 0, f, arg);
    if wait || Errno::from_ret(ret).is_some() {
        let _ = sys::munmap(stack, STACK);
    }
    match Errno::from_ret(ret) {
        Some(e) => Err(e),
        None => Ok(ret as i32),
    }
}

/// `clone(flags)` with the child on `top`, `word` as both tid pointers:
/// the child calls `f(arg)` and then `exit(0)`. Returns `clone`'s raw
/// result in the caller.
fn clone_on(flags: u64, top: u64, word: u64, f: extern "C" fn(u64), arg: u64) -> u64 {
    let ret: u64;
    // The child starts on `top` with the parent's registers: it finds
    // `f` and `arg` in registers the kernel preserves, calls `f`, and
    // ends the thread (`exit`, never returning here).
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `clone` with a fresh stack for the child; the parent's
    // registers are preserved but x0; the child never returns into this
    // function's frame.
    unsafe {
        asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x0, x10",
            "blr x9",
            "mov x0, #0",
            "mov x8, #{exit}",
            "svc #0",
            "2:",
            exit = const 93,
            in("x8") sys::nr(Sysno::Clone),
            inlateout("x0") flags => ret,
            in("x1") top,
            in("x2") word,
            in("x3") 0u64,
            in("x4") word,
            in("x9") f as usize,
            in("x10") arg,
            options(nostack)
        );
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; `syscall` clobbers rcx and r11; the child's stack
    // is 16-byte aligned at the `call`.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "xor edi, edi",
            "mov eax, {exit}",
            "syscall",
            "2:",
            exit = const 60,
            inlateout("rax") sys::nr(Sysno::Clone) => ret,
            in("rdi") flags,
            in("rsi") top,
            in("rdx") word,
            in("r10") word,
            in("r8") 0u64,
            in("r12") f as usize,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

impl Thread {
    /// Waits until the thread is gone, then frees its stack.
    pub fn join(self) {
        loop {
            let t = self.tid.load(Ordering::Acquire);
            if t == 0 {
                break;
            }
            // SAFETY: a futex wait on our own word.
            let _ = unsafe {
                sys::call(
                    Sysno::Futex,
                    [self.tid.as_ptr() as u64, FUTEX_WAIT, u64::from(t), 0, 0, 0],
                )
            };
        }
        let _ = sys::munmap(self.stack, STACK);
    }
}

/// Blocks while `*word == val` (a futex wait; returns at once otherwise).
pub fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: a futex wait on a word the caller owns.
    let _ = unsafe {
        sys::call(
            Sysno::Futex,
            [word.as_ptr() as u64, FUTEX_WAIT, u64::from(val), 0, 0, 0],
        )
    };
}

/// Wakes every thread blocked on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: a futex wake on a word the caller owns.
    let _ = unsafe {
        sys::call(
            Sysno::Futex,
            [
                word.as_ptr() as u64,
                FUTEX_WAKE,
                u64::from(i32::MAX as u32),
                0,
                0,
                0,
            ],
        )
    };
}
