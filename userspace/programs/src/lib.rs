//! Shared pieces of Folium's user programs (the binaries are in `src/bin`):
//! wait-status decoding, the control files at Linux's paths, and the test
//! harness `utest` and `mmtests` share (the `ensure!` macros, children,
//! the run-in-a-child driver with its MemFree leak check), and page-table
//! snapshots for `cargo xtask mmview` ([`mmview`]).
#![no_std]

extern crate alloc;

pub mod cpus;
pub mod mmview;
pub mod pressure;
pub mod thp;
pub mod views;

use alloc::format;
use alloc::string::String;
use core::ffi::CStr;

use folium_abi::{Errno, Sysno};
use ulib::sys::{self, call, call_int};
use ulib::{print, println};

/// Decodes a `wait4` status word the way a shell reports it.
pub fn describe_status(status: u32) -> (&'static str, u32) {
    if status & 0x7f == 0 {
        ("exited with status", (status >> 8) & 0xff)
    } else {
        ("killed by signal", status & 0x7f)
    }
}

/// The exit code a shell would give a child with this status
/// (`128 + signal` for a signal).
pub fn exit_code(status: u32) -> i32 {
    if status & 0x7f == 0 {
        ((status >> 8) & 0xff) as i32
    } else {
        128 + (status & 0x7f) as i32
    }
}

/// The exit code of a child that exited (`WEXITSTATUS`), `None` if a
/// signal ended it.
pub fn exited(status: u32) -> Option<u32> {
    (status & 0x7f == 0).then_some((status >> 8) & 0xff)
}

/// The signal that ended a child (`WTERMSIG`), `None` if it exited (or
/// is only stopped).
pub fn signalled(status: u32) -> Option<u32> {
    let s = status & 0x7f;
    (s != 0 && s != 0x7f).then_some(s)
}

/// A test's outcome: `Err` says where and why it failed.
pub type TestResult = Result<(), String>;

/// A named test.
pub type Test = (&'static str, fn() -> TestResult);

#[doc(hidden)]
pub use alloc::format as __format;

/// Fails the enclosing test (returns `Err` with the line and the
/// condition, and an optional message) unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($c:expr) => {
        if !$c {
            return Err($crate::__format!("line {}: {}", line!(), stringify!($c)));
        }
    };
    ($c:expr, $($m:tt)+) => {
        if !$c {
            return Err($crate::__format!(
                "line {}: {}: {}", line!(), stringify!($c), format_args!($($m)+)
            ));
        }
    };
}

/// Fails the enclosing test unless the two values are equal, showing
/// what was got and what was expected.
#[macro_export]
macro_rules! ensure_eq {
    ($a:expr, $b:expr) => {
        $crate::ensure_eq!($a, $b, "")
    };
    ($a:expr, $b:expr, $($m:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::__format!(
                "line {}: {} = {:?}, expected {:?} {}",
                line!(), stringify!($a), a, b, format_args!($($m)+)
            ));
        }
    }};
}

/// True when running on Folium (uname's release says so).
pub fn on_folium() -> bool {
    let mut u = [0u8; 390];
    sys::uname(&mut u).is_ok() && u[130..195].windows(6).any(|w| w == b"folium")
}

/// Kills and reaps each child of `pids` (a benchmark or test giving up).
pub fn kill_and_reap(pids: &[i32]) {
    for &p in pids {
        let _ = sys::kill(p, 9);
        let _ = sys::wait4(p, 0);
    }
}

/// Forks a child that runs `f` and exits with its result; returns the
/// child's wait status.
pub fn in_child(f: impl FnOnce() -> i32) -> Result<u32, String> {
    match sys::fork() {
        Ok(0) => sys::exit_group(f()),
        Ok(pid) => {
            let (got, status) =
                sys::wait4(pid as i32, 0).map_err(|e| format!("wait4: {}", e.name()))?;
            if got != pid as i32 {
                return Err(format!("wait4 returned {got}, expected {pid}"));
            }
            Ok(status)
        }
        Err(e) => Err(format!("fork: {}", e.name())),
    }
}

/// Forks a child that runs `f` (which normally exits or loops forever; if
/// it returns, the child exits 0); returns the child's pid without waiting.
pub fn spawn(f: impl FnOnce()) -> Result<i32, String> {
    match sys::fork() {
        Ok(0) => {
            f();
            sys::exit_group(0)
        }
        Ok(pid) => Ok(pid as i32),
        Err(e) => Err(format!("fork: {}", e.name())),
    }
}

/// The errno name of a failed syscall, `None` if it succeeded.
pub fn errno_of(r: Result<u64, Errno>) -> Option<&'static str> {
    r.err().map(Errno::name)
}

/// Opens `path` read-only; the fd.
fn open_read(path: &CStr) -> Option<u64> {
    // SAFETY: a NUL-terminated path; flags O_RDONLY.
    unsafe {
        call(
            Sysno::Openat,
            [(-100i64) as u64, path.as_ptr() as u64, 0, 0, 0, 0],
        )
    }
    .ok()
}

/// MemFree from /proc/meminfo, in kB.
pub fn mem_free_kb() -> Option<u64> {
    let fd = open_read(c"/proc/meminfo")?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while let Ok(n) = sys::read(fd as i32, &mut buf[len..]) {
        if n == 0 || len + n as usize >= buf.len() {
            break;
        }
        len += n as usize;
    }
    let _ = call_int(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    let text = core::str::from_utf8(&buf[..len]).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemFree:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Reads up to `buf.len()` bytes of a control file with one `read` and no
/// heap allocation (so no page of the heap is touched); the length read,
/// `None` if it cannot be opened.
pub fn read_into(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    let fd = open_read(path)?;
    let n = sys::read(fd as i32, buf).unwrap_or(0) as usize;
    let _ = call_int(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    Some(n)
}

/// Reads a whole control file (None if it cannot be opened).
pub fn read_file(path: &CStr) -> Option<String> {
    let mut buf = [0u8; 512];
    let n = read_into(path, &mut buf)?;
    Some(String::from(core::str::from_utf8(&buf[..n]).ok()?))
}

/// The kernel's mm audit (`/sys/kernel/mm/folium/audit`, reading it runs
/// the audit): `None` where the file does not exist (Linux), else the
/// report, whose first line is `audit: ok` when the books balance.
pub fn mm_audit() -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = read_into(c"/sys/kernel/mm/folium/audit", &mut buf)?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Opens `path` with `flags` and writes `word`; the write's result.
pub fn write_file(path: &CStr, flags: u64, word: &[u8]) -> Result<u64, &'static str> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        call(
            Sysno::Openat,
            [(-100i64) as u64, path.as_ptr() as u64, flags, 0, 0, 0],
        )
    }
    .map_err(Errno::name)?;
    let r = sys::write(fd as i32, word).map_err(Errno::name);
    let _ = call_int(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    r
}

/// The tests of `tests` this run takes: those whose name contains one of
/// the program's arguments (all of them without arguments), less, on
/// Linux, those listed in `folium_only` as (name, why), each skip printed
/// with its reason as `SUITE: NAME skipped on Linux (WHY)`.
pub fn select_tests(
    suite: &str,
    tests: &[Test],
    args: &ulib::Args,
    folium_only: &[(&str, &str)],
) -> alloc::vec::Vec<Test> {
    let filters: alloc::vec::Vec<&str> = (1..args.len()).filter_map(|i| args.arg(i)).collect();
    let folium = on_folium();
    tests
        .iter()
        .copied()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|w| name.contains(w)))
        .filter(|(name, _)| {
            let skip = folium_only.iter().find(|(n, _)| n == name);
            if let (Some((_, why)), false) = (skip, folium) {
                println!("{suite}: {name} skipped on Linux ({why})");
            }
            folium || skip.is_none()
        })
        .collect()
}

/// Runs `tests` of `suite` in a child and prints `test SUITE::NAME ...
/// ok|FAILED: why` for each, then, on Folium, the `no_leak` test (MemFree
/// the same before and after the child; on Linux both numbers are only
/// printed), then `SUITE: N passed, N failed`. Returns the program's exit
/// status: 0 only if everything passed.
pub fn run_suite(suite: &str, tests: &[Test]) -> i32 {
    // The tests run in a child, so that this process's own memory (heap,
    // stack, page tables) is the same when MemFree is read before and
    // after: the difference is then exactly what the tests leaked.
    let _ = mem_free_kb();
    let free_before = mem_free_kb();
    let status = in_child(|| {
        let mut failed = 0;
        for (name, f) in tests {
            match f() {
                Ok(()) => println!("test {suite}::{name} ... ok"),
                Err(why) => {
                    failed += 1;
                    println!("test {suite}::{name} ... FAILED: {why}");
                }
            }
        }
        failed
    });
    let free_after = mem_free_kb();
    let failed = match status.map(exited) {
        Ok(Some(n)) => n as usize,
        other => {
            println!("{suite}: the test process ended abnormally: {other:?}");
            tests.len()
        }
    };
    let mut passed = tests.len() - failed.min(tests.len());
    let mut failed = failed;
    match (free_before, free_after) {
        (Some(b), Some(a)) if on_folium() => {
            if a == b {
                passed += 1;
                println!("test {suite}::no_leak ... ok");
            } else {
                failed += 1;
                println!("test {suite}::no_leak ... FAILED: MemFree {b} kB before, {a} kB after");
            }
        }
        (b, a) => {
            print!("{suite}: MemFree before {b:?} kB, after {a:?} kB (not checked on Linux)\n")
        }
    }
    println!("{suite}: {passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
