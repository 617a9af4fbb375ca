//! Raw Linux syscalls and typed wrappers. A wrapper returns `Err(errno)`
//! for a `-errno` result, exactly as the kernel returned it (no libc
//! retries or emulation), so tests see the kernel's own answers.

use core::arch::asm;

use folium_abi::errno::SysResult;
use folium_abi::structs::Timespec;
use folium_abi::{Errno, Sysno};

use crate::MACHINE;

/// The number of `s` on this machine; a syscall this machine lacks gets a
/// number no kernel knows, so the call fails with ENOSYS.
#[inline]
pub fn nr(s: Sysno) -> u64 {
    s.number(MACHINE).unwrap_or(100_000)
}

/// Issues syscall `n` with six arguments and returns the raw result.
///
/// # Safety
///
/// The arguments must be valid for that syscall: pointers it dereferences
/// must point to memory of the right size and mutability.
#[inline]
pub unsafe fn raw6(n: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: forwarded from the caller; `svc #0` preserves every register
    // but x0.
    unsafe {
        asm!("svc #0", in("x8") n,
             inlateout("x0") a[0] => ret, in("x1") a[1], in("x2") a[2],
             in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `syscall` clobbers rcx and r11.
    unsafe {
        asm!("syscall", inlateout("rax") n => ret,
             in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
             in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// [`raw6`] with the result decoded.
///
/// # Safety
///
/// As for [`raw6`].
#[inline]
pub unsafe fn call(s: Sysno, a: [u64; 6]) -> SysResult {
    // SAFETY: forwarded from the caller.
    let r = unsafe { raw6(nr(s), a) };
    match Errno::from_ret(r) {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// A syscall whose arguments are plain integers (no pointers the kernel
/// follows), so any values are memory-safe to pass.
#[inline]
pub fn call_int(s: Sysno, a: [u64; 6]) -> SysResult {
    // SAFETY: the callers below pass only integer arguments, or pointers
    // the kernel never dereferences (checked per call site).
    unsafe { call(s, a) }
}

/// `write(fd, buf)`.
pub fn write(fd: i32, buf: &[u8]) -> SysResult {
    // SAFETY: the kernel reads `buf.len()` bytes from `buf`.
    unsafe {
        call(
            Sysno::Write,
            [fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    }
}

/// `read(fd, buf)`.
pub fn read(fd: i32, buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    unsafe {
        call(
            Sysno::Read,
            [
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// `exit_group(code)`: ends the process.
pub fn exit_group(code: i32) -> ! {
    let _ = call_int(Sysno::ExitGroup, [code as u64, 0, 0, 0, 0, 0]);
    // Unreachable on a working kernel; do not return into nothing.
    loop {
        let _ = call_int(Sysno::Exit, [code as u64, 0, 0, 0, 0, 0]);
    }
}

/// `getpid()`.
pub fn getpid() -> i32 {
    call_int(Sysno::Getpid, [0; 6]).unwrap_or(0) as i32
}

/// `getppid()`.
pub fn getppid() -> i32 {
    call_int(Sysno::Getppid, [0; 6]).unwrap_or(0) as i32
}

/// `gettid()`.
pub fn gettid() -> i32 {
    call_int(Sysno::Gettid, [0; 6]).unwrap_or(0) as i32
}

/// `sched_yield()`.
pub fn sched_yield() {
    let _ = call_int(Sysno::SchedYield, [0; 6]);
}

/// `SIGCHLD`, the exit signal of a fork-like clone.
pub const SIGCHLD: u64 = 17;

/// `fork()`: `fork` on x86-64, `clone(SIGCHLD, 0)` on arm64 (which has no
/// fork syscall). Returns 0 in the child, the child's pid in the parent.
pub fn fork() -> SysResult {
    if cfg!(target_arch = "x86_64") {
        call_int(Sysno::Fork, [0; 6])
    } else {
        // No new stack, no TLS, no tid pointers: fork semantics.
        call_int(Sysno::Clone, [SIGCHLD, 0, 0, 0, 0, 0])
    }
}

/// `wait4(pid, &status, options, NULL)`: returns (pid, status word).
pub fn wait4(pid: i32, options: u32) -> Result<(i32, u32), Errno> {
    let mut status: u32 = 0;
    // SAFETY: the kernel writes one int to `status`; rusage is NULL.
    let r = unsafe {
        call(
            Sysno::Wait4,
            [
                pid as i64 as u64,
                &raw mut status as u64,
                u64::from(options),
                0,
                0,
                0,
            ],
        )
    }?;
    Ok((r as i32, status))
}

/// `WNOHANG`.
pub const WNOHANG: u32 = 1;

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: u8) -> SysResult {
    call_int(Sysno::Kill, [pid as i64 as u64, u64::from(sig), 0, 0, 0, 0])
}

/// `CLOCK_REALTIME`.
pub const CLOCK_REALTIME: u32 = 0;
/// `CLOCK_MONOTONIC`.
pub const CLOCK_MONOTONIC: u32 = 1;

/// `clock_gettime(clock)`.
pub fn clock_gettime(clock: u32) -> Result<Timespec, Errno> {
    let mut ts = [0u8; 16];
    // SAFETY: the kernel writes one 16-byte timespec.
    unsafe {
        call(
            Sysno::ClockGettime,
            [u64::from(clock), ts.as_mut_ptr() as u64, 0, 0, 0, 0],
        )
    }?;
    Ok(Timespec::from_bytes(ts))
}

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    clock_gettime(CLOCK_MONOTONIC)
        .ok()
        .and_then(|t| t.to_nanos())
        .unwrap_or(0)
}

/// `nanosleep(req, NULL)`.
pub fn nanosleep(ns: u64) -> SysResult {
    let ts = Timespec::from_nanos(ns).to_bytes();
    // SAFETY: the kernel reads one timespec; rem is NULL.
    unsafe { call(Sysno::Nanosleep, [ts.as_ptr() as u64, 0, 0, 0, 0, 0]) }
}

/// `uname(buf)`: the six fields of `struct utsname`.
pub fn uname(buf: &mut [u8; 390]) -> SysResult {
    // SAFETY: the kernel writes one 390-byte utsname.
    unsafe { call(Sysno::Uname, [buf.as_mut_ptr() as u64, 0, 0, 0, 0, 0]) }
}

/// `getrandom(buf, flags)`.
pub fn getrandom(buf: &mut [u8], flags: u32) -> SysResult {
    // SAFETY: the kernel writes at most `buf.len()` bytes.
    unsafe {
        call(
            Sysno::Getrandom,
            [
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                u64::from(flags),
                0,
                0,
                0,
            ],
        )
    }
}

/// `brk(addr)`: the new (or, for 0, current) program break.
pub fn brk(addr: u64) -> u64 {
    call_int(Sysno::Brk, [addr, 0, 0, 0, 0, 0]).unwrap_or(0)
}

/// `execve(path, argv, envp)` with NUL-terminated `path` and NULL-terminated arrays.
///
/// # Safety
///
/// `path` must be NUL-terminated; `argv` and `envp` NULL-terminated arrays
/// of NUL-terminated strings.
pub unsafe fn execve(path: &[u8], argv: *const *const u8, envp: *const *const u8) -> SysResult {
    // SAFETY: forwarded from the caller.
    unsafe {
        call(
            Sysno::Execve,
            [path.as_ptr() as u64, argv as u64, envp as u64, 0, 0, 0],
        )
    }
}

/// `mkdirat(AT_FDCWD, path, mode)`; `path` is NUL-terminated.
pub fn mkdir(path: &core::ffi::CStr, mode: u32) -> SysResult {
    // SAFETY: the kernel reads a NUL-terminated string.
    unsafe {
        call(
            Sysno::Mkdirat,
            [
                (-100i64) as u64,
                path.as_ptr() as u64,
                u64::from(mode),
                0,
                0,
                0,
            ],
        )
    }
}

/// `mount(source, target, fstype, 0, NULL)`.
pub fn mount(
    source: &core::ffi::CStr,
    target: &core::ffi::CStr,
    fstype: &core::ffi::CStr,
) -> SysResult {
    // SAFETY: the kernel reads three NUL-terminated strings; no data.
    unsafe {
        call(
            Sysno::Mount,
            [
                source.as_ptr() as u64,
                target.as_ptr() as u64,
                fstype.as_ptr() as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// `reboot(LINUX_REBOOT_CMD_POWER_OFF)` with Linux's magic numbers.
pub fn power_off() -> SysResult {
    call_int(
        Sysno::Reboot,
        [0xfee1_dead, 0x2812_1969, 0x4321_fedc, 0, 0, 0],
    )
}

/// `PROT_*` and `MAP_*` values the programs use.
#[allow(missing_docs)]
pub mod mm {
    pub const PROT_NONE: u64 = 0;
    pub const PROT_READ: u64 = 1;
    pub const PROT_WRITE: u64 = 2;
    pub const MAP_PRIVATE: u64 = 0x02;
    pub const MAP_ANONYMOUS: u64 = 0x20;
    // The same values on x86-64 and arm64 (the generic ones).
    pub const PROT_EXEC: u64 = 4;
    pub const MAP_SHARED: u64 = 0x01;
    pub const MAP_FIXED: u64 = 0x10;
    pub const MAP_NORESERVE: u64 = 0x4000;
    pub const MAP_POPULATE: u64 = 0x8000;
    pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    pub const MADV_NORMAL: u64 = 0;
    pub const MADV_RANDOM: u64 = 1;
    pub const MADV_SEQUENTIAL: u64 = 2;
    pub const MADV_WILLNEED: u64 = 3;
    pub const MADV_DONTNEED: u64 = 4;
    pub const MADV_FREE: u64 = 8;
    pub const MADV_HUGEPAGE: u64 = 14;
    pub const MADV_NOHUGEPAGE: u64 = 15;
}

/// `mmap(addr, len, prot, flags, fd, off)` with every argument as given
/// (no `MAP_ANONYMOUS` added), so tests see the kernel's checks.
pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> SysResult {
    call_int(Sysno::Mmap, [addr, len, prot, flags, fd, off])
}

/// `madvise(addr, len, advice)`.
pub fn madvise(addr: u64, len: u64, advice: u64) -> SysResult {
    call_int(Sysno::Madvise, [addr, len, advice, 0, 0, 0])
}

/// `mmap(addr, len, prot, flags, -1, 0)` of anonymous memory.
pub fn mmap_anon(addr: u64, len: u64, prot: u64, flags: u64) -> SysResult {
    call_int(
        Sysno::Mmap,
        [addr, len, prot, flags | mm::MAP_ANONYMOUS, u64::MAX, 0],
    )
}

/// `munmap(addr, len)`.
pub fn munmap(addr: u64, len: u64) -> SysResult {
    call_int(Sysno::Munmap, [addr, len, 0, 0, 0, 0])
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect(addr: u64, len: u64, prot: u64) -> SysResult {
    call_int(Sysno::Mprotect, [addr, len, prot, 0, 0, 0])
}

/// `rt_sigaction(sig, {handler, flags, 0, 0}, NULL)`.
pub fn sigaction_simple(sig: u8, handler: u64, flags: u64) -> SysResult {
    let act = [handler, flags, 0u64, 0u64];
    // SAFETY: the kernel reads one 32-byte sigaction; no old action.
    unsafe {
        call(
            Sysno::RtSigaction,
            [u64::from(sig), act.as_ptr() as u64, 0, 8, 0, 0],
        )
    }
}

/// `rt_sigprocmask(how, &set, NULL)`.
pub fn sigprocmask(how: u64, set: u64) -> SysResult {
    // SAFETY: the kernel reads one 8-byte mask; no old mask.
    unsafe {
        call(
            Sysno::RtSigprocmask,
            [how, (&raw const set) as u64, 0, 8, 0, 0],
        )
    }
}
