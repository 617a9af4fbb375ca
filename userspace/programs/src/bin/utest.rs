//! `utest`: the syscall and process test suite. Runs on Folium (under
//! init, on every board) and, unchanged, natively on Linux: every check
//! is Linux's documented behaviour, so a difference is a Folium bug.
//! Prints `test NAME ... ok|FAILED: why` per test and `utest: N passed, N
//! failed`; exits 0 only if all passed. `utest NAME...` runs a subset.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use folium_abi::{Errno, Sysno};
use folium_programs::cpus::{getaffinity, getcpu, setaffinity};
use folium_programs::{
    Test, TestResult, ensure, ensure_eq, errno_of, exited, in_child, mem_free_kb, on_folium,
    read_file, read_into, run_suite, select_tests, signalled, spawn, thp, write_file,
};
use ulib::println;
use ulib::sys::{self, call, call_int, raw6};

ulib::entry!(main);

/// An address in the kernel half on both architectures.
const KERNEL_ADDR: u64 = 0xffff_ffff_8000_0000;

fn t_write_and_read_errors() -> TestResult {
    ensure_eq!(sys::write(1, b""), Ok(0));
    ensure_eq!(errno_of(sys::write(99, b"x")), Some("EBADF"));
    ensure_eq!(errno_of(sys::write(-1, b"x")), Some("EBADF"));
    // SAFETY: the kernel must refuse these pointers without touching them.
    unsafe {
        ensure_eq!(
            errno_of(call(Sysno::Write, [1, 0, 5, 0, 0, 0])),
            Some("EFAULT")
        );
        ensure_eq!(
            errno_of(call(Sysno::Write, [1, KERNEL_ADDR, 5, 0, 0, 0])),
            Some("EFAULT")
        );
        ensure_eq!(
            errno_of(call(Sysno::Read, [99, 0, 5, 0, 0, 0])),
            Some("EBADF")
        );
        // writev: too many vectors, then a bad vector array.
        ensure_eq!(
            errno_of(call(Sysno::Writev, [1, 0, 5000, 0, 0, 0])),
            Some("EINVAL")
        );
        ensure_eq!(
            errno_of(call(Sysno::Writev, [1, 8, 1, 0, 0, 0])),
            Some("EFAULT")
        );
    }
    let parts: [&[u8]; 2] = [b"", b""];
    let iov: Vec<[u64; 2]> = parts
        .iter()
        .map(|p| [p.as_ptr() as u64, p.len() as u64])
        .collect();
    // SAFETY: a valid iovec array of two empty buffers.
    let r = unsafe { call(Sysno::Writev, [1, iov.as_ptr() as u64, 2, 0, 0, 0]) };
    ensure_eq!(r, Ok(0));
    Ok(())
}

fn t_ids() -> TestResult {
    let pid = sys::getpid();
    ensure!(pid > 0);
    ensure_eq!(sys::gettid(), pid);
    ensure!(sys::getppid() >= 0);
    ensure_eq!(call_int(Sysno::Getuid, [0; 6]).is_ok(), true);
    let mut tid = 0u32;
    // SAFETY: the kernel keeps the address to clear it at exit; this
    // process outlives the variable only by exiting.
    let r = unsafe { call(Sysno::SetTidAddress, [&raw mut tid as u64, 0, 0, 0, 0, 0]) };
    ensure_eq!(r, Ok(pid as u64));
    ensure_eq!(errno_of(call_int(Sysno::Getpid, [0; 6]).map(|_| 0)), None);
    Ok(())
}

/// A `struct robust_list_head` (`list.next`, `futex_offset`,
/// `list_op_pending`) for `robust_list`: static, so the address the
/// kernel keeps stays valid however the test ends.
static ROBUST_HEAD: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// `get_robust_list(pid)`: the recorded head and the length written back.
fn get_robust_list(pid: i32) -> Result<(u64, u64), Errno> {
    let (mut head, mut len) = (1u64, 0u64);
    // SAFETY: two valid 8-byte destinations.
    unsafe {
        call(
            Sysno::GetRobustList,
            [
                pid as u64,
                &raw mut head as u64,
                &raw mut len as u64,
                0,
                0,
                0,
            ],
        )
    }?;
    Ok((head, len))
}

/// `set_robust_list(head, len)`.
fn set_robust_list(head: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: the kernel only records the pointer; Linux reads the list
    // when the process exits, and every head set here is either the
    // static ROBUST_HEAD or one it must refuse to follow.
    unsafe { call(Sysno::SetRobustList, [head, len, 0, 0, 0, 0]) }
}

/// The robust-futex list head as Linux keeps it: `set_robust_list` takes
/// exactly `sizeof(struct robust_list_head)` (24) and any pointer;
/// `get_robust_list` gives it back for the caller (pid 0 or its own) and
/// for another process, writing the length before the head; fork and exec
/// start without a list. Also `rseq`, which Folium does not implement:
/// ENOSYS there (glibc's probe at start-up), EINVAL on Linux for a NULL
/// area.
fn t_robust_list() -> TestResult {
    let at = ROBUST_HEAD.as_ptr() as u64;
    // An empty list points at itself.
    ROBUST_HEAD[0].store(at, Ordering::Relaxed);
    let before = get_robust_list(0);
    ensure_eq!(before.map(|(_, len)| len), Ok(24));
    ensure_eq!(set_robust_list(at, 24), Ok(0));
    ensure_eq!(get_robust_list(0), Ok((at, 24)));
    ensure_eq!(get_robust_list(sys::getpid()), Ok((at, 24)));
    ensure_eq!(errno_of(set_robust_list(at, 23)), Some("EINVAL"));
    ensure_eq!(errno_of(set_robust_list(at, 25)), Some("EINVAL"));
    ensure_eq!(errno_of(set_robust_list(at, 0)), Some("EINVAL"));
    ensure_eq!(get_robust_list(0), Ok((at, 24)), "a refused set changed it");
    // The pointer is not checked.
    ensure_eq!(set_robust_list(KERNEL_ADDR, 24), Ok(0));
    ensure_eq!(get_robust_list(0), Ok((KERNEL_ADDR, 24)));
    ensure_eq!(set_robust_list(at, 24), Ok(0));
    let (mut head, mut len) = (1u64, 0u64);
    // SAFETY: the kernel must refuse the bad pointers without touching
    // them; the good ones are valid 8-byte destinations.
    unsafe {
        let get = |h: u64, l: u64| call(Sysno::GetRobustList, [0, h, l, 0, 0, 0]);
        ensure_eq!(errno_of(get(&raw mut head as u64, 8)), Some("EFAULT"));
        ensure_eq!(head, 1, "the head was written after a bad length pointer");
        ensure_eq!(
            errno_of(get(&raw mut head as u64, KERNEL_ADDR)),
            Some("EFAULT")
        );
        ensure_eq!(
            errno_of(get(KERNEL_ADDR, &raw mut len as u64)),
            Some("EFAULT")
        );
        ensure_eq!(len, 24, "the length is written first");
    }
    ensure_eq!(errno_of(get_robust_list(1 << 30).map(|_| 0)), Some("ESRCH"));
    ensure_eq!(errno_of(get_robust_list(-1).map(|_| 0)), Some("ESRCH"));
    // A forked child has no list of its own, and reads its parent's.
    let st = in_child(|| {
        if get_robust_list(0) != Ok((0, 24)) {
            return 1;
        }
        if get_robust_list(sys::getppid()) != Ok((at, 24)) {
            return 2;
        }
        0
    })?;
    ensure_eq!(exited(st), Some(0), "status {st:#x}");
    // A new image starts without one.
    let st = in_child(|| {
        if set_robust_list(at, 24).is_err() {
            return 3;
        }
        exec_self(c"--robust-list-after-exec");
        4
    })?;
    ensure_eq!(exited(st), Some(0), "status {st:#x}");
    if let Ok((h, _)) = before {
        ensure_eq!(set_robust_list(h, 24), Ok(0));
    }
    // SAFETY: a NULL area, refused before anything is read.
    let r = unsafe { call(Sysno::Rseq, [0, 0, 0, 0x53053053, 0, 0]) };
    let want = if on_folium() { "ENOSYS" } else { "EINVAL" };
    ensure_eq!(errno_of(r), Some(want));
    Ok(())
}

fn t_unknown_syscall_is_enosys() -> TestResult {
    // SAFETY: no such syscall; nothing is dereferenced.
    let r = unsafe { raw6(999, [0; 6]) };
    ensure_eq!(Errno::from_ret(r).map(Errno::name), Some("ENOSYS"));
    Ok(())
}

fn t_clocks() -> TestResult {
    let a = sys::clock_gettime(sys::CLOCK_MONOTONIC).map_err(|e| String::from(e.name()))?;
    let b = sys::clock_gettime(sys::CLOCK_MONOTONIC).map_err(|e| String::from(e.name()))?;
    ensure!(b.to_nanos() >= a.to_nanos());
    ensure!(a.nsec >= 0 && a.nsec < 1_000_000_000);
    ensure!(sys::clock_gettime(sys::CLOCK_REALTIME).is_ok());
    ensure_eq!(errno_of(sys::clock_gettime(100).map(|_| 0)), Some("EINVAL"));
    // SAFETY: a NULL result pointer must be refused.
    let r = unsafe { call(Sysno::ClockGettime, [1, 0, 0, 0, 0, 0]) };
    ensure_eq!(errno_of(r), Some("EFAULT"));
    // Nanosecond resolution: two readings apart in a tight loop differ.
    let t0 = sys::now_ns();
    let mut t1 = t0;
    for _ in 0..100_000 {
        t1 = sys::now_ns();
        if t1 != t0 {
            break;
        }
    }
    ensure!(t1 > t0, "the clock did not advance");
    Ok(())
}

fn t_sleep() -> TestResult {
    let t0 = sys::now_ns();
    ensure_eq!(sys::nanosleep(20_000_000), Ok(0));
    let slept = sys::now_ns() - t0;
    ensure!(slept >= 20_000_000, "slept only {slept} ns");
    let bad = [0u64, 1_000_000_000];
    // SAFETY: a valid pointer to an invalid timespec; then NULL.
    unsafe {
        ensure_eq!(
            errno_of(call(Sysno::Nanosleep, [bad.as_ptr() as u64, 0, 0, 0, 0, 0])),
            Some("EINVAL")
        );
        ensure_eq!(
            errno_of(call(Sysno::Nanosleep, [0, 0, 0, 0, 0, 0])),
            Some("EFAULT")
        );
        let req = [0u64, 1_000_000];
        // A thread's CPU-time clock cannot be slept on; an unknown clock is invalid.
        ensure_eq!(
            errno_of(call(
                Sysno::ClockNanosleep,
                [3, 0, req.as_ptr() as u64, 0, 0, 0]
            )),
            Some("ENOTSUP")
        );
        ensure_eq!(
            errno_of(call(
                Sysno::ClockNanosleep,
                [100, 0, req.as_ptr() as u64, 0, 0, 0]
            )),
            Some("EINVAL")
        );
        ensure_eq!(
            call(Sysno::ClockNanosleep, [1, 0, req.as_ptr() as u64, 0, 0, 0]),
            Ok(0)
        );
        // TIMER_ABSTIME in the past returns at once.
        ensure_eq!(
            call(Sysno::ClockNanosleep, [1, 1, req.as_ptr() as u64, 0, 0, 0]),
            Ok(0)
        );
    }
    sys::sched_yield();
    Ok(())
}

fn t_uname_and_random() -> TestResult {
    let mut u = [0u8; 390];
    ensure_eq!(sys::uname(&mut u), Ok(0));
    ensure!(u.starts_with(b"Linux\0"));
    let machine = if cfg!(target_arch = "aarch64") {
        &b"aarch64\0"[..]
    } else {
        &b"x86_64\0"[..]
    };
    ensure!(u[260..].starts_with(machine));
    // SAFETY: NULL must be refused.
    let r = unsafe { call(Sysno::Uname, [0, 0, 0, 0, 0, 0]) };
    ensure_eq!(errno_of(r), Some("EFAULT"));
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    ensure_eq!(sys::getrandom(&mut a, 0), Ok(64));
    ensure_eq!(sys::getrandom(&mut b, 0), Ok(64));
    ensure!(a != b && a != [0; 64]);
    ensure_eq!(errno_of(sys::getrandom(&mut a, 0x100)), Some("EINVAL"));
    // SAFETY: a kernel address must be refused.
    let r = unsafe { call(Sysno::Getrandom, [KERNEL_ADDR, 8, 0, 0, 0, 0]) };
    ensure_eq!(errno_of(r), Some("EFAULT"));
    Ok(())
}

fn t_brk() -> TestResult {
    let cur = sys::brk(0);
    ensure!(cur != 0);
    let want = cur + 0x3_0000;
    ensure_eq!(sys::brk(want), want);
    // The new memory is zeroed and writable.
    // SAFETY: [cur, want) was just granted by brk.
    unsafe {
        let p = (cur + 0x2_0000) as *mut u64;
        ensure_eq!(p.read_volatile(), 0);
        p.write_volatile(42);
        ensure_eq!(p.read_volatile(), 42);
    }
    ensure_eq!(sys::brk(cur), cur);
    ensure_eq!(sys::brk(0), cur);
    // A break below the program is refused: the old one comes back.
    ensure_eq!(sys::brk(0x1000), cur);
    Ok(())
}

/// Freed heap memory is reused: a thousand 1 MiB blocks, each freed
/// before the next is allocated, move the break by a few MiB at most (a
/// heap that never frees would need 1000 MiB).
fn t_heap_reuses_freed_memory() -> TestResult {
    const MIB: usize = 1 << 20;
    let before = sys::brk(0);
    for i in 0..1000u32 {
        let mut v: Vec<u8> = Vec::with_capacity(MIB);
        v.push(i as u8);
        if let Some(last) = v.spare_capacity_mut().last_mut() {
            last.write(1);
        }
        // Keep the allocation: the compiler may drop an unused pair.
        core::hint::black_box(&mut v);
        ensure!(v.capacity() >= MIB);
    }
    let grown = sys::brk(0) - before;
    ensure!(grown < 4 << 20, "the break grew by {grown:#x} bytes");
    Ok(())
}

fn t_mprotect_errors() -> TestResult {
    let base = sys::brk(0);
    let page = (base + 0xfff) & !0xfff;
    ensure_eq!(sys::brk(page + 0x2000), page + 0x2000);
    let mp = |a: u64, l: u64, p: u64| call_int(Sysno::Mprotect, [a, l, p, 0, 0, 0]);
    ensure_eq!(errno_of(mp(page + 1, 4096, 1)), Some("EINVAL"));
    ensure_eq!(errno_of(mp(page, 4096, 0x100)), Some("EINVAL"));
    ensure_eq!(mp(page, 0, 1), Ok(0));
    // A range reaching past the heap into unmapped space.
    ensure_eq!(errno_of(mp(page, 0x10_0000, 1)), Some("ENOMEM"));
    ensure_eq!(mp(page, 4096, 1), Ok(0));
    ensure_eq!(mp(page, 4096, 3), Ok(0));
    ensure_eq!(sys::brk(base), base);
    Ok(())
}

fn t_files() -> TestResult {
    let mut st = [0u8; 144];
    // SAFETY: a buffer large enough for either architecture's struct stat.
    unsafe {
        ensure_eq!(
            call(Sysno::Fstat, [1, st.as_mut_ptr() as u64, 0, 0, 0, 0]),
            Ok(0)
        );
        ensure_eq!(
            errno_of(call(Sysno::Fstat, [77, st.as_mut_ptr() as u64, 0, 0, 0, 0])),
            Some("EBADF")
        );
        ensure_eq!(
            errno_of(call(Sysno::Fstat, [1, 0, 0, 0, 0, 0])),
            Some("EFAULT")
        );
        ensure_eq!(
            call(
                Sysno::Newfstatat,
                [2, c"".as_ptr() as u64, st.as_mut_ptr() as u64, 0x1000, 0, 0]
            ),
            Ok(0)
        );
        ensure_eq!(
            errno_of(call(
                Sysno::Ioctl,
                [1, 0x5413, st.as_mut_ptr() as u64, 0, 0, 0]
            )),
            Some("ENOTTY")
        );
        ensure_eq!(
            errno_of(call(
                Sysno::Openat,
                [
                    (-100i64) as u64,
                    c"/no/such/file".as_ptr() as u64,
                    0,
                    0,
                    0,
                    0
                ]
            )),
            Some("ENOENT")
        );
        ensure_eq!(
            errno_of(call(Sysno::Close, [555, 0, 0, 0, 0, 0])),
            Some("EBADF")
        );
    }
    ensure!(
        mem_free_kb().is_some_and(|k| k > 0),
        "no MemFree in /proc/meminfo"
    );
    Ok(())
}

fn t_limits_and_signals() -> TestResult {
    let mut old = [0u64; 2];
    // SAFETY: valid pointers to 16-byte rlimit buffers.
    unsafe {
        ensure_eq!(
            call(Sysno::Prlimit64, [0, 3, 0, old.as_mut_ptr() as u64, 0, 0]),
            Ok(0)
        );
        ensure!(old[0] > 0, "RLIMIT_STACK soft limit is 0");
        ensure_eq!(
            errno_of(call(
                Sysno::Prlimit64,
                [0, 99, 0, old.as_mut_ptr() as u64, 0, 0]
            )),
            Some("EINVAL")
        );
        let act = [0u64; 4];
        let mut got = [7u64; 4];
        ensure_eq!(
            errno_of(call(
                Sysno::RtSigaction,
                [10, act.as_ptr() as u64, 0, 7, 0, 0]
            )),
            Some("EINVAL")
        );
        ensure_eq!(
            errno_of(call(
                Sysno::RtSigaction,
                [9, act.as_ptr() as u64, 0, 8, 0, 0]
            )),
            Some("EINVAL")
        );
        ensure_eq!(
            errno_of(call(
                Sysno::RtSigaction,
                [0, 0, got.as_mut_ptr() as u64, 8, 0, 0]
            )),
            Some("EINVAL")
        );
        ensure_eq!(
            call(
                Sysno::RtSigaction,
                [10, 0, got.as_mut_ptr() as u64, 8, 0, 0]
            ),
            Ok(0)
        );
        ensure_eq!(got[0], 0, "SIGUSR1 starts at SIG_DFL");
        let mask = 1u64 << 9;
        let mut prev = 0u64;
        ensure_eq!(
            errno_of(call(
                Sysno::RtSigprocmask,
                [3, (&raw const mask) as u64, 0, 8, 0, 0]
            )),
            Some("EINVAL")
        );
        ensure_eq!(
            call(
                Sysno::RtSigprocmask,
                [0, (&raw const mask) as u64, 0, 8, 0, 0]
            ),
            Ok(0)
        );
        ensure_eq!(
            call(
                Sysno::RtSigprocmask,
                [1, (&raw const mask) as u64, (&raw mut prev) as u64, 8, 0, 0]
            ),
            Ok(0)
        );
        ensure!(prev & mask == mask, "SIGUSR1 was not blocked");
    }
    ensure_eq!(errno_of(sys::kill(sys::getpid(), 65)), Some("EINVAL"));
    ensure_eq!(sys::kill(sys::getpid(), 0), Ok(0));
    ensure_eq!(errno_of(sys::kill(0x3fff_fff0, 0)), Some("ESRCH"));
    Ok(())
}

fn t_reboot_needs_the_magic() -> TestResult {
    let r = call_int(Sysno::Reboot, [1, 2, 0x4321_fedc, 0, 0, 0]);
    if on_folium() {
        ensure_eq!(errno_of(r), Some("EINVAL"));
    } else {
        // Linux checks the capability before the magic.
        ensure!(matches!(errno_of(r), Some("EINVAL") | Some("EPERM")));
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn t_arch_prctl() -> TestResult {
    let mut fs = 0u64;
    let page = [0x1234u64; 4];
    let p = |c: u64, a: u64| call_int(Sysno::ArchPrctl, [c, a, 0, 0, 0, 0]);
    ensure_eq!(p(0x1002, page.as_ptr() as u64), Ok(0));
    // SAFETY: ARCH_GET_FS writes one u64.
    let r = unsafe { call(Sysno::ArchPrctl, [0x1003, (&raw mut fs) as u64, 0, 0, 0, 0]) };
    ensure_eq!(r, Ok(0));
    ensure_eq!(fs, page.as_ptr() as u64);
    let v: u64;
    // SAFETY: FS points at `page`, which holds four u64s.
    unsafe { core::arch::asm!("mov {}, fs:[8]", out(reg) v) };
    ensure_eq!(v, 0x1234);
    ensure_eq!(errno_of(p(0x9999, 0)), Some("EINVAL"));
    ensure_eq!(p(0x1002, 0), Ok(0));
    Ok(())
}

#[cfg(target_arch = "aarch64")]
fn t_arch_prctl() -> TestResult {
    // arm64 has no arch_prctl; TPIDR_EL0 is written directly.
    let v: u64;
    // SAFETY: TPIDR_EL0 is the user's own register.
    unsafe {
        core::arch::asm!("msr tpidr_el0, {}", in(reg) 0x5678u64);
        sys::sched_yield();
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) v);
    }
    ensure_eq!(v, 0x5678);
    Ok(())
}

fn t_clone_flags() -> TestResult {
    // Thread flags without their prerequisites are EINVAL on Linux too.
    ensure_eq!(
        errno_of(call_int(Sysno::Clone, [0x1_0000 | 17, 0, 0, 0, 0, 0])),
        Some("EINVAL")
    );
    ensure_eq!(
        errno_of(call_int(Sysno::Clone, [0x800 | 17, 0, 0, 0, 0, 0])),
        Some("EINVAL")
    );
    ensure_eq!(
        errno_of(sys::wait4(-1, 0x0100_0000).map(|_| 0)),
        Some("EINVAL")
    );
    Ok(())
}

fn t_wait_without_children() -> TestResult {
    ensure_eq!(errno_of(sys::wait4(-1, 0).map(|_| 0)), Some("ECHILD"));
    ensure_eq!(
        errno_of(sys::wait4(-1, sys::WNOHANG).map(|_| 0)),
        Some("ECHILD")
    );
    ensure_eq!(errno_of(sys::wait4(12345, 0).map(|_| 0)), Some("ECHILD"));
    Ok(())
}

/// What [`vm_child_body`] stores: this process's memory, which a child
/// made with `CLONE_VM` shares.
static VM_SEEN: AtomicU64 = AtomicU64::new(0);

/// A `CLONE_VM` child: stores `v`, works a while (long enough that a
/// parent that did not wait would look first), stores `v + 1`.
extern "C" fn vm_child_body(v: u64) {
    VM_SEEN.store(v, Ordering::SeqCst);
    for _ in 0..200_000 {
        core::hint::spin_loop();
    }
    VM_SEEN.store(v + 1, Ordering::SeqCst);
}

/// `clone(CLONE_VM | CLONE_VFORK)` (what `posix_spawn` and `vfork` ask
/// for): the child runs in this address space and this process waits
/// until it is gone; `CLONE_VM` alone: both run, in one address space.
fn t_clone_vm_and_vfork() -> TestResult {
    let name = |e: Errno| String::from(e.name());
    VM_SEEN.store(0, Ordering::SeqCst);
    let pid = ulib::thread::vm_child(vm_child_body, 10, true).map_err(name)?;
    ensure_eq!(
        VM_SEEN.load(Ordering::SeqCst),
        11,
        "the child's stores, seen once it is gone"
    );
    let (got, st) = sys::wait4(pid, 0).map_err(name)?;
    ensure_eq!(got, pid);
    ensure_eq!(exited(st), Some(0));
    VM_SEEN.store(0, Ordering::SeqCst);
    let pid = ulib::thread::vm_child(vm_child_body, 20, false).map_err(name)?;
    let (got, st) = sys::wait4(pid, 0).map_err(name)?;
    ensure_eq!(got, pid);
    ensure_eq!(exited(st), Some(0));
    ensure_eq!(
        VM_SEEN.load(Ordering::SeqCst),
        21,
        "the CLONE_VM child's stores, in this process's memory"
    );
    Ok(())
}

/// A `CLONE_VM` child that outlives its parent: sleeps `ms`, then
/// returns (ends).
extern "C" fn vm_child_sleeper(ms: u64) {
    let _ = sys::nanosleep(ms * 1_000_000);
}

/// A vfork parent killed while it waits: it dies at once, the child goes
/// on in the address space they shared and tears it down when it ends,
/// while the parent is still an unreaped zombie. The mm audit, run while
/// both exist and after the child is gone, must find every count right
/// (a root left published by the zombie would be a freed table walked).
fn t_vfork_parent_killed_while_waiting() -> TestResult {
    let audit_ok = || -> TestResult {
        if let Some(r) = folium_programs::mm_audit() {
            ensure!(r.starts_with("audit: ok"), "mm audit: {r}");
        }
        Ok(())
    };
    let parent = spawn(|| {
        let _ = ulib::thread::vm_child(vm_child_sleeper, 300, true);
        // Never reached: killed while it waits.
        sys::exit_group(3)
    })?;
    // On Folium pids are handed out in turn, so the vfork child is the
    // next one: wait until it exists, so the kill finds the parent
    // waiting for it (Linux's pids need not be consecutive).
    let child = parent + 1;
    let r = (|| {
        if on_folium() {
            let mut tries = 0;
            while sys::kill(child, 0).is_err() {
                ensure!(tries < 200, "the vfork child never appeared");
                tries += 1;
                let _ = sys::nanosleep(5_000_000);
            }
        } else {
            let _ = sys::nanosleep(50_000_000);
        }
        audit_ok()?;
        ensure_eq!(sys::kill(parent, 9), Ok(0));
        let _ = sys::nanosleep(20_000_000);
        if on_folium() {
            ensure_eq!(sys::kill(child, 0), Ok(0), "the child outlives its parent");
        }
        // The child ends 300 ms after it started; the parent stays a
        // zombie until the wait4 below.
        let _ = sys::nanosleep(500_000_000);
        if on_folium() {
            ensure!(sys::kill(child, 0).is_err(), "the child is gone");
        }
        audit_ok()
    })();
    let (got, st) = sys::wait4(parent, 0).map_err(|e| String::from(e.name()))?;
    r?;
    ensure_eq!(got, parent);
    ensure_eq!(signalled(st), Some(9), "status {st:#x}");
    audit_ok()
}

fn t_fork_and_exit_status() -> TestResult {
    let st = in_child(|| 42)?;
    ensure_eq!(exited(st), Some(42));
    // WNOHANG on a running child: 0, then the real status.
    let pid = spawn(|| {
        let _ = sys::nanosleep(30_000_000);
        sys::exit_group(7)
    })?;
    ensure_eq!(sys::wait4(pid, sys::WNOHANG).map(|r| r.0), Ok(0));
    let (got, st) = sys::wait4(pid, 0).map_err(|e| String::from(e.name()))?;
    ensure_eq!(got, pid);
    ensure_eq!(exited(st), Some(7));
    Ok(())
}

fn t_fork_hundred_children() -> TestResult {
    let mut pids = Vec::new();
    for i in 0..100u32 {
        match sys::fork() {
            Ok(0) => sys::exit_group((i * 3 % 256) as i32),
            Ok(p) => pids.push((p as i32, i)),
            Err(e) => return Err(format!("fork {i}: {}", e.name())),
        }
    }
    let mut seen = 0;
    while seen < pids.len() {
        let (pid, st) =
            sys::wait4(-1, 0).map_err(|e| format!("wait4 after {seen}: {}", e.name()))?;
        let &(_, i) = pids
            .iter()
            .find(|p| p.0 == pid)
            .ok_or(format!("unknown pid {pid}"))?;
        ensure_eq!(exited(st), Some(i * 3 % 256));
        seen += 1;
    }
    ensure_eq!(errno_of(sys::wait4(-1, 0).map(|_| 0)), Some("ECHILD"));
    Ok(())
}

fn t_three_generations() -> TestResult {
    let st = in_child(|| {
        let me = sys::getpid();
        match in_child(|| {
            if sys::getppid() != me {
                return 90;
            }
            match in_child(|| 5) {
                Ok(st) if exited(st) == Some(5) => 6,
                _ => 91,
            }
        }) {
            Ok(st) if exited(st) == Some(6) => 7,
            _ => 92,
        }
    })?;
    ensure_eq!(exited(st), Some(7));
    Ok(())
}

/// An orphan is reparented (to init on Folium; to init or a subreaper on
/// Linux): the grandchild sees its parent change once its parent exits.
/// If it never does, it kills the test process, which fails the suite.
fn t_orphans_are_reparented() -> TestResult {
    let tester = sys::getpid();
    let folium = on_folium();
    let middle_status = {
        let middle = match sys::fork() {
            Ok(0) => {
                let me = sys::getpid();
                match sys::fork() {
                    Ok(0) => {
                        for _ in 0..400 {
                            let pp = sys::getppid();
                            if pp != me && (!folium || pp == 1) {
                                sys::exit_group(0);
                            }
                            let _ = sys::nanosleep(5_000_000);
                        }
                        let _ = sys::kill(tester, 9);
                        sys::exit_group(1)
                    }
                    Ok(_) => sys::exit_group(0),
                    Err(_) => sys::exit_group(1),
                }
            }
            Ok(p) => p as i32,
            Err(e) => return Err(format!("fork: {}", e.name())),
        };
        let (_, st) = sys::wait4(middle, 0).map_err(|e| String::from(e.name()))?;
        st
    };
    ensure_eq!(
        exited(middle_status),
        Some(0),
        "the middle child could not fork"
    );
    // The grandchild is not ours to wait for.
    ensure_eq!(
        errno_of(sys::wait4(-1, sys::WNOHANG).map(|_| 0)),
        Some("ECHILD")
    );
    // Give it time to notice (and to kill us if it does not).
    let _ = sys::nanosleep(50_000_000);
    Ok(())
}

static SHARED: AtomicU64 = AtomicU64::new(0x1111);

fn t_cow_isolation() -> TestResult {
    SHARED.store(0x2222, Ordering::SeqCst);
    let mut stack_val = [0xabu8; 256];
    core::hint::black_box(&mut stack_val);
    let heap: Vec<AtomicU64> = (0..2048).map(AtomicU64::new).collect();
    let st = in_child(|| {
        let seen = heap[2000].load(Ordering::SeqCst);
        if SHARED.load(Ordering::SeqCst) != 0x2222 || seen != 2000 || stack_val[100] != 0xab {
            return 10;
        }
        // Writing the copies the child shares with its parent must not
        // reach the parent.
        SHARED.store(0x3333, Ordering::SeqCst);
        heap[7].store(77, Ordering::SeqCst);
        if SHARED.load(Ordering::SeqCst) != 0x3333 || heap[7].load(Ordering::SeqCst) != 77 {
            return 11;
        }
        0
    })?;
    ensure_eq!(exited(st), Some(0));
    ensure_eq!(SHARED.load(Ordering::SeqCst), 0x2222);
    ensure_eq!(heap[7].load(Ordering::SeqCst), 7);
    ensure_eq!(stack_val[100], 0xab);
    // After the child is gone the parent writes its (now exclusive) pages.
    SHARED.store(0x4444, Ordering::SeqCst);
    ensure_eq!(SHARED.load(Ordering::SeqCst), 0x4444);
    Ok(())
}

/// Fills the SIMD registers with `seed`-derived values, yields `rounds`
/// times, and returns whether they all survived.
#[cfg(target_arch = "aarch64")]
fn simd_survives(seed: u64, rounds: u32) -> bool {
    let mut out = [0u64; 4];
    for _ in 0..rounds {
        // SAFETY: uses v8-v11 (declared clobbered) and FPCR's rounding
        // mode (restored before returning).
        unsafe {
            core::arch::asm!(
                "dup v8.2d, {s}",
                "add {t}, {s}, #1", "dup v9.2d, {t}",
                "add {t}, {s}, #2", "dup v10.2d, {t}",
                "add {t}, {s}, #3", "dup v11.2d, {t}",
                "mov x8, #124", "svc #0",
                "mov {a}, v8.d[1]", "mov {b}, v9.d[0]", "mov {c}, v10.d[1]", "mov {d}, v11.d[0]",
                s = in(reg) seed, t = out(reg) _,
                a = out(reg) out[0], b = out(reg) out[1], c = out(reg) out[2], d = out(reg) out[3],
                out("x0") _, out("x8") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            );
        }
        if out != [seed, seed + 1, seed + 2, seed + 3] {
            return false;
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
fn simd_survives(seed: u64, rounds: u32) -> bool {
    let mut out = [0u64; 4];
    for _ in 0..rounds {
        // SAFETY: this program is built without SSE, so the compiler keeps
        // nothing in xmm registers; `syscall` clobbers rcx/r11 and rax.
        unsafe {
            core::arch::asm!(
                "movq xmm2, {s}",
                "lea {t}, [{s} + 1]", "movq xmm3, {t}",
                "lea {t}, [{s} + 2]", "movq xmm4, {t}",
                "lea {t}, [{s} + 3]", "movq xmm5, {t}",
                "mov eax, 24", "syscall",
                "movq {a}, xmm2", "movq {b}, xmm3", "movq {c}, xmm4", "movq {d}, xmm5",
                s = in(reg) seed, t = out(reg) _,
                a = out(reg) out[0], b = out(reg) out[1], c = out(reg) out[2], d = out(reg) out[3],
                out("rax") _, out("rcx") _, out("r11") _,
            );
        }
        if out != [seed, seed + 1, seed + 2, seed + 3] {
            return false;
        }
    }
    true
}

fn t_fp_simd_isolation() -> TestResult {
    let pid = spawn(|| {
        sys::exit_group(if simd_survives(0x5a5a_0000, 300) {
            0
        } else {
            1
        })
    })?;
    let mine = simd_survives(0x0101_0000, 300);
    let (_, st) = sys::wait4(pid, 0).map_err(|e| String::from(e.name()))?;
    ensure!(mine, "the parent's SIMD registers changed");
    ensure_eq!(exited(st), Some(0), "the child's SIMD registers changed");
    Ok(())
}

fn t_preemption() -> TestResult {
    let spinner = spawn(|| {
        loop {
            core::hint::spin_loop();
        }
    })?;
    // A sleeper still gets its turns while the spinner never yields.
    let st = in_child(|| {
        for _ in 0..5 {
            if sys::nanosleep(5_000_000).is_err() {
                return 1;
            }
        }
        0
    })?;
    ensure_eq!(exited(st), Some(0));
    // The parent itself ran too (it is here); now stop the spinner.
    ensure_eq!(sys::kill(spinner, 9), Ok(0));
    let (got, st) = sys::wait4(spinner, 0).map_err(|e| String::from(e.name()))?;
    ensure_eq!(got, spinner);
    ensure_eq!(signalled(st), Some(9));
    // SIGTERM, default action: terminate.
    let sleeper = spawn(|| {
        loop {
            let _ = sys::nanosleep(1_000_000_000);
        }
    })?;
    let _ = sys::nanosleep(5_000_000);
    ensure_eq!(sys::kill(sleeper, 15), Ok(0));
    let (_, st) = sys::wait4(sleeper, 0).map_err(|e| String::from(e.name()))?;
    ensure_eq!(signalled(st), Some(15));
    Ok(())
}

fn expect_signal(name: &str, want: u32, f: fn()) -> TestResult {
    let st = in_child(|| {
        f();
        100
    })?;
    ensure!(
        signalled(st) == Some(want),
        "{name}: status {st:#x}, expected signal {want}"
    );
    Ok(())
}

fn null_load() {
    // SAFETY: deliberately faults (address 0 is never mapped).
    unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) };
}

fn kernel_load() {
    // SAFETY: deliberately faults: user mode cannot read the kernel half.
    unsafe { core::ptr::read_volatile(KERNEL_ADDR as *const u64) };
}

fn text_store() {
    // SAFETY: deliberately faults: program text is read-only.
    unsafe { (t_ids as *const u8 as *mut u8).write_volatile(0) };
}

fn exec_stack() {
    let code = [0u8; 16];
    // SAFETY: deliberately faults: the stack is not executable.
    let f: fn() = unsafe { core::mem::transmute(code.as_ptr()) };
    f();
}

#[cfg(target_arch = "aarch64")]
fn illegal() {
    // SAFETY: deliberately traps: a permanently undefined encoding.
    unsafe { core::arch::asm!("udf #0") };
}
#[cfg(target_arch = "x86_64")]
fn illegal() {
    // SAFETY: deliberately traps.
    unsafe { core::arch::asm!("ud2") };
}

#[cfg(target_arch = "aarch64")]
fn breakpoint() {
    // SAFETY: deliberately traps.
    unsafe { core::arch::asm!("brk #1") };
}
#[cfg(target_arch = "x86_64")]
fn breakpoint() {
    // SAFETY: deliberately traps.
    unsafe { core::arch::asm!("int3") };
}

fn t_contained_faults() -> TestResult {
    expect_signal("null load", 11, null_load)?;
    expect_signal("kernel load", 11, kernel_load)?;
    expect_signal("store to text", 11, text_store)?;
    expect_signal("exec from the stack", 11, exec_stack)?;
    expect_signal("illegal instruction", 4, illegal)?;
    expect_signal("breakpoint", 5, breakpoint)?;
    #[cfg(target_arch = "x86_64")]
    expect_signal("divide error", 8, || {
        // SAFETY: deliberately divides by zero in hardware.
        unsafe {
            core::arch::asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
        };
    })?;
    #[cfg(target_arch = "x86_64")]
    expect_signal("privileged instruction", 11, || {
        // SAFETY: deliberately faults: hlt is ring 0 only.
        unsafe { core::arch::asm!("hlt") };
    })?;
    #[cfg(target_arch = "aarch64")]
    expect_signal("misaligned pc", 7, || {
        // SAFETY: deliberately faults: a branch to a misaligned address.
        unsafe {
            core::arch::asm!("adr x9, 2f", "add x9, x9, #2", "br x9", "2:", "nop", out("x9") _)
        };
    })?;
    // (A misaligned SP is not tested: QEMU's TCG does not raise SP
    // alignment faults, on Linux or Folium; the kernel's decoding of one is
    // covered by its self-tests.)
    // The kernel serves on: this process still runs.
    ensure!(sys::getpid() > 0);
    Ok(())
}

/// A fork bomb: forks until the kernel refuses (EAGAIN), which must
/// happen without harm; then every child is killed and reaped. Folium
/// only: on a real Linux host this would fill the process table.
fn t_fork_until_refused() -> TestResult {
    let mut pids = Vec::new();
    let refusal = loop {
        match sys::fork() {
            Ok(0) => loop {
                let _ = sys::nanosleep(1_000_000_000);
            },
            Ok(p) => pids.push(p as i32),
            Err(e) => break e,
        }
        if pids.len() > 5000 {
            return Err(format!("{} forks and no refusal", pids.len()));
        }
    };
    let n = pids.len();
    for &p in &pids {
        ensure_eq!(sys::kill(p, 9), Ok(0));
    }
    for _ in 0..n {
        let (pid, st) = sys::wait4(-1, 0).map_err(|e| format!("wait4: {}", e.name()))?;
        ensure!(pids.contains(&pid));
        ensure_eq!(signalled(st), Some(9));
    }
    ensure!(
        matches!(refusal.name(), "EAGAIN" | "ENOMEM"),
        "fork failed with {}",
        refusal.name()
    );
    ensure!(n >= 100, "only {n} forks before {}", refusal.name());
    // After the bomb, forking works again.
    ensure_eq!(exited(in_child(|| 3)?), Some(3));
    Ok(())
}

/// Touches ever more memory until the kernel runs out: the process is
/// killed with SIGKILL, the kernel and this process carry on, and the
/// no_leak check sees every frame back. Folium only (on Linux the OOM
/// killer might pick another process of the host).
fn t_memory_exhaustion_kills_only_the_hog() -> TestResult {
    let st = in_child(|| {
        let base = sys::brk(0);
        let want = base + (64u64 << 30);
        // Linux's heuristic overcommit refuses one request for more than
        // RAM, not many smaller ones: the break grows 256 MiB at a time.
        let mut top = base;
        while top < want {
            let next = top + (256 << 20);
            if sys::brk(next) != next {
                return 50;
            }
            top = next;
        }
        let mut p = base;
        while p < want {
            // SAFETY: inside the break just granted; the kernel kills this
            // process when no frame is left for the next page.
            unsafe { (p as *mut u8).write_volatile(1) };
            p += 4096;
        }
        51
    })?;
    ensure_eq!(signalled(st), Some(9), "status {st:#x}");
    ensure!(sys::getpid() > 0);
    // A hog that grabbed memory up front (MAP_POPULATE) and sits still is
    // the one killed when a small process later needs a page. The small
    // one is forked first: once the hog holds everything, even fork fails.
    let small = spawn(|| {
        // Until the hog holds (nearly) everything: its populate may be
        // preempted, and this one must not get its 16 MiB before.
        for _ in 0..1000 {
            if mem_free_kb().is_some_and(|kb| kb < 8 << 10) {
                break;
            }
            let _ = sys::nanosleep(20_000_000);
        }
        let Ok(p) = sys::mmap_anon(0, 16 << 20, 3, sys::mm::MAP_PRIVATE) else {
            sys::exit_group(60);
        };
        for off in (0..16u64 << 20).step_by(4096) {
            // SAFETY: inside the mapping just made.
            unsafe { ((p + off) as *mut u8).write_volatile(1) };
        }
        sys::exit_group(0)
    })?;
    let hog = spawn(|| {
        let _ = sys::mmap_anon(0, 64 << 30, 3, sys::mm::MAP_PRIVATE | 0x8000 | 0x4000);
        loop {
            let _ = sys::nanosleep(1_000_000_000);
        }
    })?;
    let (_, st) = sys::wait4(small, 0).map_err(|e| String::from(e.name()))?;
    ensure_eq!(exited(st), Some(0), "the small process: status {st:#x}");
    let (got, st) = sys::wait4(hog, 0).map_err(|e| String::from(e.name()))?;
    ensure_eq!(got, hog);
    ensure_eq!(signalled(st), Some(9), "the hog: status {st:#x}");
    Ok(())
}

/// PROT_NONE hides a page from user code and from the kernel's copies,
/// and keeps its contents for a later mprotect back.
fn t_prot_none_hides_pages() -> TestResult {
    use sys::mm::*;
    let p = sys::mmap_anon(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    // SAFETY: the page was just mapped read-write.
    unsafe { (p as *mut u64).write_volatile(42) };
    ensure_eq!(sys::mprotect(p, 4096, PROT_NONE), Ok(0));
    let st = in_child(|| {
        // SAFETY: deliberately faults: the page is PROT_NONE.
        unsafe { core::ptr::read_volatile(p as *const u64) as i32 }
    })?;
    ensure_eq!(signalled(st), Some(11), "a read of a PROT_NONE page");
    // SAFETY: the kernel must refuse to read the PROT_NONE page.
    let r = unsafe { call(Sysno::Write, [1, p, 1, 0, 0, 0]) };
    ensure_eq!(errno_of(r), Some("EFAULT"));
    // fork copies the hidden page: the child gets it back with its bytes
    // and a private copy once it writes.
    let st = in_child(|| {
        if sys::mprotect(p, 4096, PROT_READ | PROT_WRITE) != Ok(0) {
            return 1;
        }
        // SAFETY: readable and writable again in this process.
        unsafe {
            if (p as *const u64).read_volatile() != 42 {
                return 2;
            }
            (p as *mut u64).write_volatile(7);
        }
        0
    })?;
    ensure_eq!(exited(st), Some(0), "the child: status {st:#x}");
    ensure_eq!(sys::mprotect(p, 4096, PROT_READ), Ok(0));
    // SAFETY: readable again, with its contents.
    ensure_eq!(unsafe { (p as *const u64).read_volatile() }, 42);
    ensure_eq!(sys::munmap(p, 8192), Ok(0));
    Ok(())
}

/// Writes a function returning `v` at `at` (`mov w0, #v; ret` /
/// `mov eax, v; ret`).
fn emit_ret(at: u64, v: u16) {
    #[cfg(target_arch = "aarch64")]
    let code: [u32; 2] = [0x5280_0000 | (u32::from(v) << 5), 0xd65f_03c0];
    #[cfg(target_arch = "x86_64")]
    let code: [u8; 6] = {
        let b = u32::from(v).to_le_bytes();
        [0xb8, b[0], b[1], b[2], b[3], 0xc3]
    };
    // SAFETY: the caller's own writable mapping, room for the code.
    unsafe {
        core::ptr::copy_nonoverlapping(
            code.as_ptr().cast::<u8>(),
            at as *mut u8,
            core::mem::size_of_val(&code),
        )
    };
}

/// Calls the function at `at`.
fn call_code(at: u64) -> u32 {
    // SAFETY: `at` holds a function `emit_ret` wrote, mapped executable.
    let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(at as usize) };
    f()
}

/// What a program that writes code itself must do before running it:
/// arm64 cleans the line to the point of unification and invalidates it
/// from the instruction cache (allowed at EL0, as on Linux); x86 needs
/// nothing.
fn sync_own_code(at: u64) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: cache maintenance on the caller's own mapping.
    unsafe {
        core::arch::asm!("dc cvau, {a}", "dsb ish", "ic ivau, {a}", "dsb ish", "isb", a = in(reg) at)
    };
    #[cfg(target_arch = "x86_64")]
    let _ = at;
}

/// The kernel's count of folios it synced for instruction fetch (`None`
/// off Folium).
fn icache_syncs() -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = read_into(thp::FOLIUM_STATS, &mut buf)?;
    thp::stat(core::str::from_utf8(&buf[..n]).ok()?, "icache_sync")
}

/// Code written as data runs once mprotect makes it executable: the
/// kernel makes a folio visible to instruction fetches when it is first
/// mapped executable (on mprotect, on a fresh page, on a copy-on-write
/// copy), exactly once (Folium's counter; Linux runs the same code).
/// TCG keeps instruction fetches coherent anyway, so the counter is what
/// shows the mechanism there.
fn t_code_pages_sync() -> TestResult {
    use sys::mm::*;
    let folium = on_folium();
    let syncs = || icache_syncs().unwrap_or(0);
    let p = sys::mmap_anon(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    emit_ret(p, 1);
    emit_ret(p + 64, 10);
    let s0 = syncs();
    ensure_eq!(sys::mprotect(p, 8192, PROT_READ | PROT_EXEC), Ok(0));
    ensure_eq!(call_code(p), 1);
    ensure_eq!(call_code(p + 64), 10);
    let s1 = syncs();
    if folium {
        ensure_eq!(s1 - s0, 1, "mprotect adding exec syncs the page once");
    }
    // Again: synced already.
    ensure_eq!(sys::mprotect(p, 8192, PROT_READ), Ok(0));
    ensure_eq!(sys::mprotect(p, 8192, PROT_READ | PROT_EXEC), Ok(0));
    ensure_eq!(call_code(p), 1);
    ensure_eq!(syncs(), s1);
    // A fresh page (maybe the same frame): new code, synced again.
    ensure_eq!(sys::munmap(p, 8192), Ok(0));
    let q = sys::mmap_anon(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    emit_ret(q, 2);
    emit_ret(q + 64, 20);
    ensure_eq!(sys::mprotect(q, 8192, PROT_READ | PROT_EXEC), Ok(0));
    ensure_eq!(call_code(q), 2);
    let s2 = syncs();
    if folium {
        ensure_eq!(s2 - s1, 1, "a fresh page is synced");
    }
    // Copy-on-write of the code page: the child's store copies the page
    // (the kernel syncs the copy, whose second function the child never
    // writes) and then changes the first function, syncing that itself.
    let st = in_child(|| {
        if sys::mprotect(q, 8192, PROT_READ | PROT_WRITE | PROT_EXEC) != Ok(0) {
            return 1;
        }
        let before = syncs();
        emit_ret(q, 3);
        let after = syncs();
        sync_own_code(q);
        if folium && after - before != 1 {
            return 2;
        }
        match (call_code(q), call_code(q + 64)) {
            (3, 20) => 0,
            _ => 3,
        }
    })?;
    ensure_eq!(exited(st), Some(0), "the child: status {st:#x}");
    ensure_eq!(call_code(q), 2, "the parent's page is its own");
    ensure_eq!(sys::munmap(q, 8192), Ok(0));
    Ok(())
}

/// Signal state as Linux keeps it: a blocked signal waits until unblocked;
/// ignored stays ignored across execve; a parent ignoring SIGCHLD gets its
/// children reaped for it; no process group but the caller's exists.
fn t_signal_state() -> TestResult {
    // Blocked SIGTERM: pending, then fatal once unblocked.
    let st = in_child(|| {
        let term = 1u64 << 14;
        if sys::sigprocmask(0, term).is_err() || sys::kill(sys::getpid(), 15).is_err() {
            return 1;
        }
        let _ = sys::nanosleep(5_000_000);
        let _ = sys::sigprocmask(1, term);
        2
    })?;
    ensure_eq!(signalled(st), Some(15), "status {st:#x}");
    // SIG_IGN survives execve: the new image raises SIGTERM and lives on.
    let st = in_child(|| {
        if sys::sigaction_simple(15, 1, 0).is_err() {
            return 1;
        }
        exec_self(c"--raise-term");
        3
    })?;
    ensure_eq!(exited(st), Some(0), "status {st:#x}");
    // SIGCHLD ignored: the child is reaped for us; wait4 finds none.
    let st = in_child(|| {
        if sys::sigaction_simple(17, 1, 0).is_err() {
            return 1;
        }
        match sys::fork() {
            Ok(0) => sys::exit_group(0),
            Ok(_) => {}
            Err(_) => return 2,
        }
        match sys::wait4(-1, 0) {
            Err(Errno::ECHILD) => 0,
            _ => 3,
        }
    })?;
    ensure_eq!(exited(st), Some(0), "status {st:#x}");
    ensure_eq!(errno_of(sys::kill(-12345, 0)), Some("ESRCH"));
    ensure_eq!(errno_of(sys::kill(i32::MIN, 0)), Some("ESRCH"));
    if on_folium() {
        // init ignores every signal it has no handler for (Linux's
        // SIGNAL_UNKILLABLE). Not tried on a real host.
        ensure_eq!(sys::kill(1, 9), Ok(0));
        ensure_eq!(sys::kill(1, 0), Ok(0), "init survived SIGKILL");
    }
    Ok(())
}

/// MADV_DONTNEED reads back zeroes and keeps the mapping; madvise's
/// errno cases are Linux's.
fn t_madvise() -> TestResult {
    use sys::mm::*;
    let madv = |a: u64, l: u64, adv: u64| call_int(Sysno::Madvise, [a, l, adv, 0, 0, 0]);
    let p = sys::mmap_anon(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    for i in 0..4u64 {
        // SAFETY: inside the mapping just made.
        unsafe { ((p + i * 4096) as *mut u64).write_volatile(0x1000 + i) };
    }
    ensure_eq!(madv(p + 4096, 2 * 4096, 4), Ok(0));
    // SAFETY: still mapped, now zero-filled where dropped.
    let got: Vec<u64> = (0..4u64)
        .map(|i| unsafe { ((p + i * 4096) as *const u64).read_volatile() })
        .collect();
    ensure_eq!(got, [0x1000, 0, 0, 0x1003]);
    ensure_eq!(errno_of(madv(p + 1, 4096, 4)), Some("EINVAL"), "unaligned");
    ensure_eq!(
        errno_of(madv(p, 4096, 999)),
        Some("EINVAL"),
        "unknown advice"
    );
    ensure_eq!(madv(p, 0, 4), Ok(0), "empty range");
    ensure_eq!(
        errno_of(madv(p, u64::MAX - 100, 4)),
        Some("EINVAL"),
        "overflow"
    );
    ensure_eq!(madv(p, 4 * 4096, 14), Ok(0), "MADV_HUGEPAGE");
    ensure_eq!(madv(p, 4 * 4096, 15), Ok(0), "MADV_NOHUGEPAGE");
    ensure_eq!(sys::munmap(p + 2 * 4096, 4096), Ok(0));
    ensure_eq!(errno_of(madv(p, 4 * 4096, 4)), Some("ENOMEM"), "a hole");
    ensure_eq!(
        errno_of(madv(p, 4 * 4096, 0)),
        Some("ENOMEM"),
        "a hole, MADV_NORMAL"
    );
    ensure_eq!(sys::munmap(p, 4 * 4096), Ok(0));
    Ok(())
}

/// The transparent-hugepage knobs at Linux's paths: read in Linux's format
/// everywhere; set, refused and read back on Folium only (a test must not
/// change the host's settings).
fn t_thp_knobs() -> TestResult {
    const TOP: &core::ffi::CStr = c"/sys/kernel/mm/transparent_hugepage/enabled";
    const K64: &core::ffi::CStr = c"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled";
    const A64: &core::ffi::CStr =
        c"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/stats/anon_fault_alloc";
    let top = read_file(TOP).ok_or("cannot read the top-level knob")?;
    ensure!(
        top.contains('[') && top.ends_with('\n'),
        "top-level knob reads {top:?}"
    );
    let k64 = read_file(K64).ok_or("cannot read the 64 kB knob")?;
    let words: Vec<&str> = k64
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']']))
        .collect();
    ensure_eq!(words, ["always", "inherit", "madvise", "never"], "{k64:?}");
    ensure_eq!(
        k64.matches('[').count(),
        1,
        "one setting is marked: {k64:?}"
    );
    let alloc = read_file(A64).ok_or("cannot read anon_fault_alloc")?;
    ensure!(
        alloc.trim_end().parse::<u64>().is_ok(),
        "anon_fault_alloc reads {alloc:?}"
    );
    ensure_eq!(
        read_file(c"/sys/kernel/mm/transparent_hugepage/hugepages-8kB/enabled"),
        None,
        "there is no order-1 knob"
    );
    // Linux's PMD size in bytes: 2 MiB with 4 KiB pages; read-only, even
    // for root.
    let pmd = read_file(thp::HPAGE_PMD_SIZE);
    ensure_eq!(pmd.as_deref(), Some("2097152\n"));
    ensure_eq!(write_file(thp::HPAGE_PMD_SIZE, 1, b"4096"), Err("EACCES"));
    if !on_folium() {
        println!("utest: thp_knobs writes skipped on Linux (they would change the host)");
        return Ok(());
    }
    ensure_eq!(write_file(K64, 1, b"always\n"), Ok(7));
    let now = read_file(K64);
    ensure_eq!(now.as_deref(), Some("[always] inherit madvise never\n"));
    ensure_eq!(write_file(K64, 1, b"bogus"), Err("EINVAL"));
    ensure_eq!(write_file(K64, 1, b"never"), Ok(5));
    let now = read_file(K64);
    ensure_eq!(now.as_deref(), Some("always inherit madvise [never]\n"));
    ensure_eq!(
        write_file(TOP, 1, b"inherit"),
        Err("EINVAL"),
        "inherit is per-size only"
    );
    ensure_eq!(
        write_file(TOP, 0, b"always"),
        Err("EBADF"),
        "opened read-only"
    );
    ensure_eq!(
        write_file(A64, 1, b"0"),
        Err("EACCES"),
        "counters are read-only"
    );
    let r = write_file(c"/sys/kernel/mm/transparent_hugepage/nope", 1, b"x");
    ensure_eq!(r, Err("ENOENT"));
    Ok(())
}

/// Folium's own knobs sit in a directory of their own, not in Linux's:
/// the batching switch and the counters answer under
/// `/sys/kernel/mm/folium/`, and their old names under
/// `transparent_hugepage/` are gone.
fn t_folium_knobs() -> TestResult {
    const OLD_SWITCH: &core::ffi::CStr = c"/sys/kernel/mm/transparent_hugepage/pte_batching";
    const OLD_STATS: &core::ffi::CStr = c"/sys/kernel/mm/transparent_hugepage/folium_stats";
    ensure_eq!(read_file(OLD_SWITCH), None);
    ensure_eq!(write_file(OLD_SWITCH, 1, b"1"), Err("ENOENT"));
    ensure_eq!(read_file(OLD_STATS), None);
    let was = read_file(thp::PTE_BATCHING).ok_or("cannot read pte_batching")?;
    ensure!(was == "1\n" || was == "0\n", "pte_batching reads {was:?}");
    ensure_eq!(write_file(thp::PTE_BATCHING, 1, b"0"), Ok(1));
    let now = read_file(thp::PTE_BATCHING);
    ensure_eq!(now.as_deref(), Some("0\n"));
    ensure_eq!(write_file(thp::PTE_BATCHING, 1, b"2"), Err("EINVAL"));
    ensure_eq!(write_file(thp::PTE_BATCHING, 1, was.as_bytes()), Ok(2));
    ensure_eq!(read_file(thp::PTE_BATCHING), Some(was));
    let mut buf = [0u8; 4096];
    let n = read_into(thp::FOLIUM_STATS, &mut buf).ok_or("cannot read stats")?;
    let stats = core::str::from_utf8(&buf[..n]).map_err(|_| "stats is not text")?;
    ensure!(
        stats.starts_with("tlb_flush_page ") && stats.ends_with('\n'),
        "stats reads {stats:?}"
    );
    ensure!(stats.contains("\ndeferred_split_queue "), "{stats:?}");
    ensure_eq!(write_file(thp::FOLIUM_STATS, 1, b"0"), Err("EACCES"));
    ensure_eq!(read_file(c"/sys/kernel/mm/folium/nope"), None);
    Ok(())
}

/// This program's `argv[0]`, for re-executing itself.
static EXE: AtomicU64 = AtomicU64::new(0);

/// Replaces this process with a fresh copy of this program run as
/// `utest FLAG` (see `main`); returns only if execve failed.
fn exec_self(flag: &core::ffi::CStr) {
    let argv: [*const u8; 3] = [
        c"utest".as_ptr().cast(),
        flag.as_ptr().cast(),
        core::ptr::null(),
    ];
    let envp: [*const u8; 1] = [core::ptr::null()];
    let path = EXE.load(Ordering::Relaxed) as *const u8;
    // SAFETY: `path` is this program's NUL-terminated argv[0]; the
    // arrays are NULL-terminated.
    let len = unsafe { core::ffi::CStr::from_ptr(path.cast()) }
        .to_bytes_with_nul()
        .len();
    // SAFETY: as above.
    let path = unsafe { core::slice::from_raw_parts(path, len) };
    // SAFETY: as above.
    let _ = unsafe { sys::execve(path, argv.as_ptr(), envp.as_ptr()) };
}

/// Tests that only run on Folium.
// The last two are not run (nor counted) on a real host: the fork bomb
// would fill its process table, the hog wake its OOM killer.
/// Work a worker does on the mapping at (address, length); its exit code.
type Op = fn(u64, u64) -> i32;

/// How long the watcher sleeps at a time.
const WATCH_SLEEP_NS: u64 = 2_000_000;
/// The worst lateness of a wake-up the watcher accepts (issue 17's bound).
const WATCH_LATE_MAX_MS: u32 = 50;

/// Maps `len` bytes of private anonymous memory in small folios and
/// writes every page (its own, exclusive pages).
fn populated_small_pages(len: u64) -> Result<u64, String> {
    use ulib::sys::mm::*;
    let at = sys::mmap_anon(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    // Small folios: the per-entry work of fork and zap is what is timed.
    let _ = sys::madvise(at, len, MADV_NOHUGEPAGE);
    for off in (0..len).step_by(4096) {
        // SAFETY: inside the mapping just made, readable and writable.
        unsafe { core::ptr::write_volatile((at + off) as *mut u8, 1) };
    }
    Ok(at)
}

/// Runs `op` in a worker child while its parent, the watcher, sleeps
/// 2 ms at a time until the worker is gone, and returns the watcher's
/// worst wake-up lateness in ms (it prints it in us, with `what`).
fn lateness_during(what: &str, op: Op, at: u64, len: u64) -> Result<u32, String> {
    let st = in_child(|| {
        let worker = match sys::fork() {
            Ok(0) => sys::exit_group(op(at, len)),
            Ok(pid) => pid as i32,
            Err(_) => return 252,
        };
        let (mut worst, mut n) = (0u64, 0u32);
        let status = loop {
            let t0 = sys::now_ns();
            if sys::nanosleep(WATCH_SLEEP_NS).is_err() {
                return 251;
            }
            worst = worst.max(sys::now_ns().saturating_sub(t0 + WATCH_SLEEP_NS));
            n += 1;
            match sys::wait4(worker, sys::WNOHANG) {
                Ok((0, _)) => {}
                Ok((_, st)) => break st,
                Err(_) => return 250,
            }
        };
        println!(
            "utest: watcher: {what}: worst wake-up lateness {} us over {n} wake-ups",
            worst / 1000
        );
        if exited(status) != Some(0) {
            return 249;
        }
        (worst / 1_000_000).min(200) as i32
    })?;
    match exited(st) {
        Some(ms) if ms <= 200 => Ok(ms),
        _ => Err(format!("{what}: watcher status {st:#x}")),
    }
}

fn op_fork(_: u64, _: u64) -> i32 {
    match in_child(|| 0) {
        Ok(st) if exited(st) == Some(0) => 0,
        _ => 1,
    }
}

fn op_munmap(at: u64, len: u64) -> i32 {
    let zero = ZERO_MAP.load(Ordering::Relaxed);
    i32::from(sys::munmap(at, len).is_err() || sys::munmap(zero, ZERO_MAP_LEN).is_err())
}

/// Where the watcher test's read-only mapping of zero pages lies.
static ZERO_MAP: AtomicU64 = AtomicU64::new(0);
/// Its length: 2 GiB, half a million entries mapping the zero page (and
/// 4 MiB of tables), whose copy and zap cost time but no memory.
const ZERO_MAP_LEN: u64 = 2 << 30;

fn op_exit(_: u64, _: u64) -> i32 {
    // Its exit tears the inherited mapping down.
    0
}

fn op_writev(_: u64, _: u64) -> i32 {
    // 64 KiB of NULs (invisible on a terminal) in four vectors.
    let buf = alloc::vec![0u8; 16 << 10];
    let iov = [[buf.as_ptr() as u64, buf.len() as u64]; 4];
    // SAFETY: four valid vectors over `buf`.
    let r = unsafe { call(Sysno::Writev, [1, iov.as_ptr() as u64, 4, 0, 0, 0]) };
    i32::from(r != Ok(64 << 10))
}

fn op_getrandom(at: u64, _: u64) -> i32 {
    // 8 MiB into the inherited (populated) mapping.
    // SAFETY: the first 8 MiB of the mapping, writable, nothing else
    // refers to it in this process.
    let buf = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, 8 << 20) };
    i32::from(sys::getrandom(buf, 0) != Ok(8 << 20))
}

/// Long kernel work in one process does not stall another (issue 17):
/// a watcher's 2 ms sleeps wake within 50 ms of their deadline while a
/// worker forks (the child exiting at once, so its exit tears the copy
/// down), munmaps, exits with, or fills from getrandom a mapping of up to
/// 128 MiB of small pages (a quarter of free memory; 1 GiB in the issue)
/// beside 2 GiB of zero-page mappings, or writes 64 KiB to the console in
/// one writev. Each of these held the CPU for 50 ms or more when kernel
/// code was never preempted.
fn t_wakeups_during_long_kernel_work() -> TestResult {
    let free = mem_free_kb().unwrap_or(256 << 10) << 10;
    let len = (free / 4).min(128 << 20) & !((2 << 20) - 1);
    ensure!(len >= 16 << 20, "only {free} bytes free");
    let at = populated_small_pages(len)?;
    let zero = {
        use ulib::sys::mm::*;
        let flags = MAP_PRIVATE | MAP_NORESERVE | MAP_POPULATE;
        sys::mmap_anon(0, ZERO_MAP_LEN, PROT_READ, flags)
            .map_err(|e| format!("mmap: {}", e.name()))?
    };
    ZERO_MAP.store(zero, Ordering::Relaxed);
    let ops: [(&str, Op); 5] = [
        ("fork", op_fork),
        ("munmap", op_munmap),
        ("exit", op_exit),
        ("writev", op_writev),
        ("getrandom", op_getrandom),
    ];
    for (what, op) in ops {
        // Guest time is the host's: a busy host that stops the emulator
        // for a while makes a wake-up late too (on a 2-core host running
        // TCG at a load of 15, stalls past 50 ms come about once a
        // second, and the Pi boards' four emulated cores slow the tick).
        // A kernel that holds the CPU for the whole operation is late in
        // every attempt (156-640 ms for fork here), so the best of eight
        // short attempts tells the two apart.
        let mut best = u32::MAX;
        for _ in 0..8 {
            best = best.min(lateness_during(what, op, at, len)?);
            if best <= WATCH_LATE_MAX_MS {
                break;
            }
        }
        ensure!(
            best <= WATCH_LATE_MAX_MS,
            "{what} (mapping of {} MiB): a wake-up came {best} ms late in each of 8 runs",
            len >> 20
        );
    }
    ensure_eq!(sys::munmap(at, len), Ok(0));
    ensure_eq!(sys::munmap(zero, ZERO_MAP_LEN), Ok(0));
    Ok(())
}

/// `fork()` returns to the parent first (issue 17), even when the copy
/// takes several time slices: right after each fork of a process with
/// 2 GiB of zero-page mappings (half a million entries to copy, 4 MiB of
/// tables), the child, which exits at once, has not run yet (wait4 with
/// WNOHANG finds it alive); then it runs and exits 7.
fn t_fork_returns_to_the_parent_first() -> TestResult {
    // On several CPUs an idle one may start the child at once: the
    // placement is about the parent's own CPU, so parent and child (which
    // inherits the mask) stay on it.
    let all = getaffinity(0).map_err(|e| format!("sched_getaffinity: {}", e.name()))?;
    let here = getcpu().map_err(|e| format!("getcpu: {}", e.name()))?;
    setaffinity(0, 1 << here).map_err(|e| format!("sched_setaffinity: {}", e.name()))?;
    let r = fork_returns_pinned();
    setaffinity(0, all).map_err(|e| format!("sched_setaffinity back: {}", e.name()))?;
    r
}

fn fork_returns_pinned() -> TestResult {
    use ulib::sys::mm::*;
    let len = 2u64 << 30;
    let at = sys::mmap_anon(
        0,
        len,
        PROT_READ,
        MAP_PRIVATE | MAP_NORESERVE | MAP_POPULATE,
    )
    .map_err(|e| format!("mmap: {}", e.name()))?;
    let mut slowest = 0;
    for round in 0..5 {
        let t0 = sys::now_ns();
        let child = match sys::fork() {
            Ok(0) => sys::exit_group(7),
            Ok(pid) => pid as i32,
            Err(e) => return Err(format!("fork: {}", e.name())),
        };
        let first = sys::wait4(child, sys::WNOHANG);
        slowest = slowest.max(sys::now_ns() - t0);
        ensure!(
            matches!(first, Ok((0, _))),
            "round {round}: the child ran before fork returned to the parent ({first:?})"
        );
        let (got, st) = sys::wait4(child, 0).map_err(|e| String::from(e.name()))?;
        ensure_eq!(got, child);
        ensure_eq!(exited(st), Some(7));
    }
    println!(
        "utest: fork of 2 GiB of zero-page mappings: slowest {} ms",
        slowest / 1_000_000
    );
    ensure_eq!(sys::munmap(at, len), Ok(0));
    Ok(())
}

/// Balancing: a crowd of busy children, all started on the caller's CPU
/// (they inherit its pin, then let go of it), must spread over the other
/// CPUs: each spins for 200 ms of wall time noting every CPU it runs on
/// and exits with that set; together they must have used more than one
/// CPU, and every one must finish.
fn t_crowd_spreads_over_cpus() -> TestResult {
    let mask = getaffinity(0).map_err(|e| format!("sched_getaffinity: {}", e.name()))?;
    let cpus = mask.count_ones();
    if cpus < 2 || mask >> 8 != 0 {
        return Ok(());
    }
    let here = getcpu().map_err(|e| format!("getcpu: {}", e.name()))?;
    setaffinity(0, 1 << here).map_err(|e| format!("pin: {}", e.name()))?;
    let mut kids = Vec::new();
    let spawned = (|| {
        for _ in 0..2 * cpus {
            kids.push(spawn(move || {
                if setaffinity(0, mask).is_err() {
                    sys::exit_group(0);
                }
                let mut seen = 0u64;
                let t0 = sys::now_ns();
                while sys::now_ns() - t0 < 200_000_000 {
                    if let Ok(c) = getcpu() {
                        seen |= 1 << c;
                    }
                    for i in 0..1000u64 {
                        core::hint::black_box(i);
                    }
                }
                sys::exit_group(seen as i32)
            })?);
        }
        Ok::<(), String>(())
    })();
    setaffinity(0, mask).map_err(|e| format!("unpin: {}", e.name()))?;
    spawned?;
    let mut used = 0u64;
    for &pid in &kids {
        let (_, st) = sys::wait4(pid, 0).map_err(|e| format!("wait4: {}", e.name()))?;
        let seen = exited(st).ok_or(format!("child {pid} ended with {st:#x}"))?;
        ensure!(seen != 0, "child {pid} could not let go of its pin");
        used |= seen as u64;
    }
    ensure!(
        used.count_ones() >= 2,
        "{} children started on CPU {here} all ran there only ({used:#b})",
        kids.len()
    );
    Ok(())
}

/// The CPUs of a Linux CPU list (`0-3`, `0,2-3`): how many, or None.
fn count_cpu_list(text: &str) -> Option<u32> {
    let mut n = 0;
    for part in text.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = part.parse::<u32>().ok()?;
                (a, a)
            }
        };
        n += b.checked_sub(a)? + 1;
    }
    Some(n)
}

/// The CPU calls: affinity (what `nproc` reads), `getcpu`, pinning, and
/// processes running at once on every CPU the caller may use.
fn t_cpus() -> TestResult {
    let mask = getaffinity(0).map_err(|e| format!("sched_getaffinity: {}", e.name()))?;
    let cpus = mask.count_ones();
    ensure!(cpus >= 1, "an empty affinity mask");
    // glibc's get_nprocs reads this list; it holds every CPU allowed.
    let online = read_file(c"/sys/devices/system/cpu/online")
        .and_then(|t| count_cpu_list(&t))
        .ok_or("no /sys/devices/system/cpu/online")?;
    ensure!(online >= cpus, "{online} online, {cpus} allowed");
    // Linux's errors: a length not in whole longs, an empty mask, no
    // such process.
    let mut word = 0u64;
    ensure_eq!(
        errno_of(call_int(
            Sysno::SchedGetaffinity,
            [0, 4, &raw mut word as u64, 0, 0, 0]
        )),
        Some("EINVAL")
    );
    ensure_eq!(errno_of(setaffinity(0, 0)), Some("EINVAL"));
    ensure_eq!(errno_of(getaffinity(0x3fff_ffff)), Some("ESRCH"));
    ensure_eq!(
        errno_of(call_int(
            Sysno::SchedGetaffinity,
            [0, 128, KERNEL_ADDR, 0, 0, 0]
        )),
        Some("EFAULT")
    );
    let here = getcpu().map_err(|e| format!("getcpu: {}", e.name()))?;
    ensure!(
        mask & 1 << here != 0,
        "getcpu {here} outside the mask {mask:#x}"
    );
    // Pinned to each CPU in turn, the caller runs there as the call
    // returns, and a child inherits the mask.
    let list: Vec<u32> = (0..64).filter(|c| mask & 1 << c != 0).collect();
    for &c in &list {
        setaffinity(0, 1 << c).map_err(|e| format!("pin to {c}: {}", e.name()))?;
        ensure_eq!(getcpu(), Ok(c));
        ensure_eq!(getaffinity(0), Ok(1 << c));
        let st = in_child(|| match (getaffinity(0), getcpu()) {
            (Ok(m), Ok(at)) if m == 1 << c && at == c => 0,
            _ => 1,
        })?;
        ensure_eq!(exited(st), Some(0), "child of a process pinned to {c}");
    }
    // Every CPU at once: the parent stays on the first CPU, polling and
    // never sleeping, while a child pinned to each other CPU spins through
    // a fixed amount of work and exits with the CPU it ran on. None of
    // them can run where the parent runs, so each finishes only if its
    // own CPU runs it alongside the parent.
    setaffinity(0, 1 << list[0]).map_err(|e| format!("pin: {}", e.name()))?;
    let mut kids = Vec::new();
    for &c in &list[1..] {
        let pid = spawn(|| {
            if setaffinity(0, 1 << c).is_err() {
                sys::exit_group(200);
            }
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = core::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            sys::exit_group(getcpu().map_or(201, |at| at as i32))
        })?;
        kids.push((pid, c));
    }
    let deadline = sys::now_ns() + 60_000_000_000;
    let mut left = kids.len();
    while left > 0 {
        ensure!(
            sys::now_ns() < deadline,
            "{left} pinned children still running after 60 s"
        );
        match sys::wait4(-1, sys::WNOHANG) {
            Ok((0, _)) => core::hint::spin_loop(),
            Ok((pid, st)) => {
                let &(_, c) = kids
                    .iter()
                    .find(|k| k.0 == pid)
                    .ok_or(format!("unknown child {pid}"))?;
                ensure_eq!(exited(st), Some(c), "the child pinned to CPU {c}");
                left -= 1;
            }
            Err(e) => return Err(format!("wait4: {}", e.name())),
        }
    }
    ensure_eq!(getcpu(), Ok(list[0]), "the parent moved");
    // A child moved by its parent to another CPU before it ever ran, while
    // the parent never blocks: the other CPU must pick it up.
    if let Some(&other) = list.get(1) {
        let child = match sys::fork() {
            Ok(0) => {
                // Should it run here first, it waits to be moved.
                let t0 = sys::now_ns();
                while getcpu() != Ok(other) && sys::now_ns() - t0 < 20_000_000_000 {
                    core::hint::spin_loop();
                }
                sys::exit_group(getcpu().map_or(201, |c| c as i32))
            }
            Ok(p) => p as i32,
            Err(e) => return Err(format!("fork: {}", e.name())),
        };
        let moved = setaffinity(child, 1 << other);
        let deadline = sys::now_ns() + 20_000_000_000;
        let st = loop {
            match sys::wait4(child, sys::WNOHANG) {
                Ok((0, _)) if sys::now_ns() < deadline => core::hint::spin_loop(),
                Ok((0, _)) => {
                    let _ = sys::kill(child, 9);
                    let _ = sys::wait4(child, 0);
                    return Err(format!("the child moved to CPU {other} never ran"));
                }
                Ok((_, st)) => break st,
                Err(e) => return Err(format!("wait4: {}", e.name())),
            }
        };
        ensure_eq!(moved, Ok(0));
        ensure_eq!(exited(st), Some(other), "the child moved to CPU {other}");
    }
    setaffinity(0, mask).map_err(|e| format!("unpin: {}", e.name()))?;
    Ok(())
}

const FOLIUM_ONLY: [(&str, &str); 5] = [
    ("folium_knobs", "Folium's own files"),
    ("wakeups_during_long_kernel_work", "timing on a shared host"),
    (
        "fork_returns_to_the_parent_first",
        "a placement Folium promises and Linux does not",
    ),
    ("fork_until_refused", "unsafe on a shared host"),
    (
        "memory_exhaustion_kills_only_the_hog",
        "unsafe on a shared host",
    ),
];

const TESTS: &[Test] = &[
    ("write_and_read_errors", t_write_and_read_errors),
    ("ids", t_ids),
    ("unknown_syscall_is_enosys", t_unknown_syscall_is_enosys),
    ("robust_list", t_robust_list),
    ("clocks", t_clocks),
    ("sleep", t_sleep),
    ("uname_and_random", t_uname_and_random),
    ("brk", t_brk),
    ("heap_reuses_freed_memory", t_heap_reuses_freed_memory),
    ("mprotect_errors", t_mprotect_errors),
    ("files", t_files),
    ("limits_and_signals", t_limits_and_signals),
    ("reboot_needs_the_magic", t_reboot_needs_the_magic),
    ("tls", t_arch_prctl),
    ("clone_flags", t_clone_flags),
    ("clone_vm_and_vfork", t_clone_vm_and_vfork),
    (
        "vfork_parent_killed_while_waiting",
        t_vfork_parent_killed_while_waiting,
    ),
    ("wait_without_children", t_wait_without_children),
    ("fork_and_exit_status", t_fork_and_exit_status),
    ("fork_hundred_children", t_fork_hundred_children),
    ("crowd_spreads_over_cpus", t_crowd_spreads_over_cpus),
    ("three_generations", t_three_generations),
    ("orphans_are_reparented", t_orphans_are_reparented),
    ("cow_isolation", t_cow_isolation),
    ("fp_simd_isolation", t_fp_simd_isolation),
    ("preemption", t_preemption),
    ("cpus", t_cpus),
    ("contained_faults", t_contained_faults),
    ("prot_none_hides_pages", t_prot_none_hides_pages),
    ("code_pages_sync", t_code_pages_sync),
    ("signal_state", t_signal_state),
    ("thp_knobs", t_thp_knobs),
    ("folium_knobs", t_folium_knobs),
    ("madvise", t_madvise),
    ("fork_until_refused", t_fork_until_refused),
    (
        "memory_exhaustion_kills_only_the_hog",
        t_memory_exhaustion_kills_only_the_hog,
    ),
    (
        "wakeups_during_long_kernel_work",
        t_wakeups_during_long_kernel_work,
    ),
    (
        "fork_returns_to_the_parent_first",
        t_fork_returns_to_the_parent_first,
    ),
];

fn main(args: &ulib::Args) -> i32 {
    if args.arg(1) == Some("--raise-term") {
        // Re-executed by signal_state with SIGTERM ignored: survive it.
        let _ = sys::kill(sys::getpid(), 15);
        return 0;
    }
    if args.arg(1) == Some("--robust-list-after-exec") {
        // Re-executed by robust_list after registering a list: the new
        // image starts without one.
        return match get_robust_list(0) {
            Ok((0, 24)) => 0,
            _ => 1,
        };
    }
    // SAFETY: argv[0] is a NUL-terminated string on the initial stack,
    // which lives as long as the program.
    EXE.store(unsafe { *args.argv_ptr() } as u64, Ordering::Relaxed);
    run_suite("utest", &select_tests("utest", TESTS, args, &FOLIUM_ONLY))
}
