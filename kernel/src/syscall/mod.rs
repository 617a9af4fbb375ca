//! System calls: Linux's numbers (per architecture, from `folium_abi`),
//! arguments and errno. Every pointer argument goes through
//! `crate::uaccess`. A syscall Folium does not implement returns ENOSYS
//! and is reported once per number on the console, by Linux's name when
//! Folium knows it (`folium: syscall 292 (dup3) not implemented: ENOSYS`;
//! just the number otherwise; numbers past 511 once for all of them); `rseq`, which glibc probes at every start,
//! fails silently instead, as on a Linux built without it.

mod futex;
mod io;
mod mem;
mod misc;
mod process;
mod time;

use core::sync::atomic::{AtomicU64, Ordering};

use folium_abi::errno::{SysResult, encode};
use folium_abi::{Errno, Sysno};

use crate::proc::Task;
use crate::proc::exec::MACHINE;

/// Numbers already reported as unimplemented (one bit each, 0..512), and
/// one more bit for every number beyond: a program calling numbers no
/// table has must not flood the console with a line per call.
static REPORTED: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

fn report_enosys(nr: u64) {
    let (w, b) = match nr {
        0..512 => ((nr / 64) as usize, nr % 64),
        _ => (8, 0),
    };
    let first = REPORTED[w].fetch_or(1 << b, Ordering::Relaxed) & (1 << b) == 0;
    if first {
        match Sysno::from_number(nr, MACHINE) {
            Some(s) => println!("folium: syscall {nr} ({s}) not implemented: ENOSYS"),
            None if w == 8 => println!(
                "folium: syscall {nr} not implemented: ENOSYS (numbers past 511 are reported once)"
            ),
            None => println!("folium: syscall {nr} not implemented: ENOSYS"),
        }
    }
}

/// Runs the syscall the running `task` asked for and sets its return value.
pub fn dispatch(task: &mut Task) {
    // Linux takes the number as a C int on both architectures (x86-64's
    // do_syscall_64 and arm64's el0_svc_common): the register's upper
    // half is ignored, and a negative int names no syscall.
    let nr = u64::from(task.uctx.syscall_nr() as u32);
    let a = task.uctx.syscall_args();
    let r: SysResult = match Sysno::from_number(nr, MACHINE) {
        Some(s) => call(task, s, a),
        None => {
            report_enosys(nr);
            Err(Errno::ENOSYS)
        }
    };
    task.uctx.set_syscall_ret(encode(r));
}

fn call(task: &mut Task, s: Sysno, a: [u64; 6]) -> SysResult {
    use Sysno::*;
    match s {
        Read => io::read(task, a[0], a[1], a[2]),
        Pread64 => io::pread64(task, a[0], a[1], a[2], a[3]),
        Lseek => io::lseek(task, a[0], a[1], a[2]),
        Write => io::write(task, a[0], a[1], a[2]),
        Writev => io::writev(task, a[0], a[1], a[2]),
        Openat => io::openat(task, a[0], a[1], a[2]),
        // x86-64's `open` (musl's `open` uses it), `openat` from the
        // working directory.
        Open => io::openat(task, io::AT_FDCWD, a[0], a[1]),
        Close => io::close(task, a[0]),
        Fstat => io::fstat(task, a[0], a[1]),
        Newfstatat => io::newfstatat(task, a[0], a[1], a[2], a[3]),
        Ioctl => io::ioctl(task, a[0], a[1], a[2]),
        Readlinkat => io::readlinkat(task, a[0], a[1], a[3]),
        Readlink => io::readlinkat(task, io::AT_FDCWD, a[0], a[2]),
        Faccessat => io::faccessat(task, a[0], a[1], a[2], 0),
        Faccessat2 => io::faccessat(task, a[0], a[1], a[2], a[3]),
        Access => io::faccessat(task, io::AT_FDCWD, a[0], a[1], 0),
        Exit => crate::proc::exit_current(task, folium_abi::signal::ExitStatus::Exited(a[0] as u8)),
        ExitGroup => crate::proc::exit_group(task, a[0] as u8),
        Getpid => Ok(u64::from(task.tgid)),
        Gettid => Ok(u64::from(task.pid)),
        Futex => futex::futex(task, a),
        // Only the `clone` system call creates threads: glibc and musl
        // fall back to it when `clone3` is ENOSYS (not reported: expected).
        Clone3 => Err(Errno::ENOSYS),
        Getppid => Ok(u64::from(crate::proc::parent_of(task.pid))),
        Getuid | Geteuid | Getgid | Getegid => Ok(0),
        SetTidAddress => {
            task.clear_child_tid = a[0];
            Ok(u64::from(task.pid))
        }
        SetRobustList => process::set_robust_list(task, a[0], a[1]),
        GetRobustList => process::get_robust_list(task, a[0], a[1], a[2]),
        // Restartable sequences are not implemented. glibc registers an
        // area at every start and, on ENOSYS, carries on without it (as on
        // a Linux built without CONFIG_RSEQ), so failing is expected and
        // not reported.
        Rseq => Err(Errno::ENOSYS),
        Clone => process::clone(task, a),
        Fork => process::fork(task),
        Vfork => process::vfork(task),
        Execve => process::execve(task, a[0], a[1], a[2]),
        Wait4 => process::wait4(task, a[0], a[1], a[2], a[3]),
        Kill => process::kill(task, a[0], a[1]),
        Tkill | Tgkill => process::tkill(task, s, a),
        ClockGettime => time::clock_gettime(task, a[0], a[1]),
        ClockGetres => time::clock_getres(task, a[0], a[1]),
        Gettimeofday => time::gettimeofday(task, a[0]),
        Nanosleep => time::nanosleep(task, a[0], a[1]),
        ClockNanosleep => time::clock_nanosleep(task, a[0], a[1], a[2], a[3]),
        SchedYield => {
            crate::proc::yield_now(task);
            Ok(0)
        }
        SchedGetaffinity => process::sched_getaffinity(task, a[0], a[1], a[2]),
        SchedSetaffinity => process::sched_setaffinity(task, a[0], a[1], a[2]),
        Getcpu => process::getcpu(task, a[0], a[1]),
        Uname => misc::uname(task, a[0]),
        Getrandom => misc::getrandom(task, a[0], a[1], a[2]),
        Brk => mem::brk(task, a[0]),
        Mprotect => mem::mprotect(task, a[0], a[1], a[2]),
        Mmap => mem::mmap(task, a[0], a[1], a[2], a[3], a[4], a[5]),
        Munmap => mem::munmap(task, a[0], a[1]),
        Madvise => mem::madvise(task, a[0], a[1], a[2]),
        Mremap => mem::mremap(task, a[0], a[1], a[2], a[3], a[4]),
        Prlimit64 => misc::prlimit64(task, a[0], a[1], a[2], a[3]),
        Getrlimit => misc::prlimit64(task, 0, a[0], 0, a[1]),
        ArchPrctl => misc::arch_prctl(task, a[0], a[1]),
        RtSigaction => misc::rt_sigaction(task, a[0], a[1], a[2], a[3]),
        RtSigprocmask => misc::rt_sigprocmask(task, a[0], a[1], a[2], a[3]),
        Reboot => misc::reboot(a[0], a[1], a[2]),
        other => {
            report_enosys(other.number(MACHINE).unwrap_or(u64::MAX));
            Err(Errno::ENOSYS)
        }
    }
}
