//! Time syscalls: clocks and sleeping.

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_abi::structs::Timespec;

use crate::proc::{self, State, Task};
use crate::{time, uaccess};

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;
const TIMER_ABSTIME: u64 = 1;

/// Nanoseconds on `clock`, or EINVAL for a clock Folium lacks.
fn now(clock: u64) -> Result<u64, Errno> {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Ok(time::realtime_ns()),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => {
            Ok(time::monotonic_ns())
        }
        // CPU time is not accounted yet: approximated by time since boot,
        // which only errs high.
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Ok(time::monotonic_ns()),
        _ => Err(Errno::EINVAL),
    }
}

pub fn clock_gettime(task: &mut Task, clock: u64, tp: u64) -> SysResult {
    let ns = now(clock)?;
    uaccess::copy_out(task, tp, &Timespec::from_nanos(ns).to_bytes())?;
    Ok(0)
}

pub fn clock_getres(task: &mut Task, clock: u64, tp: u64) -> SysResult {
    now(clock)?;
    if tp != 0 {
        uaccess::copy_out(task, tp, &Timespec::from_nanos(1).to_bytes())?;
    }
    Ok(0)
}

pub fn gettimeofday(task: &mut Task, tv: u64) -> SysResult {
    if tv != 0 {
        let ns = time::realtime_ns();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        uaccess::copy_out(task, tv, &b)?;
    }
    Ok(0)
}

/// A valid timespec (`sec` >= 0, `nsec` below a second) in nanoseconds,
/// EINVAL otherwise; a time beyond u64 nanoseconds (~584 years) saturates,
/// as Linux clamps to KTIME_MAX and sleeps.
pub(super) fn read_timespec(task: &mut Task, at: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 16];
    uaccess::copy_in(task, &mut b, at)?;
    let t = Timespec::from_bytes(b);
    if t.sec < 0 || !(0..1_000_000_000).contains(&t.nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(t.to_nanos().unwrap_or(u64::MAX))
}

/// Sleeps until monotonic `deadline`; on a fatal signal, EINTR (and the
/// remaining time in `rem` when given).
fn sleep_until(task: &mut Task, deadline: u64, rem: u64) -> SysResult {
    while time::monotonic_ns() < deadline {
        if !proc::block(task, State::Sleep { until_ns: deadline }) {
            if rem != 0 {
                let left = deadline.saturating_sub(time::monotonic_ns());
                let _ = uaccess::copy_out(task, rem, &Timespec::from_nanos(left).to_bytes());
            }
            return Err(Errno::EINTR);
        }
    }
    Ok(0)
}

pub fn nanosleep(task: &mut Task, req: u64, rem: u64) -> SysResult {
    let ns = read_timespec(task, req)?;
    sleep_until(task, time::monotonic_ns().saturating_add(ns), rem)
}

pub fn clock_nanosleep(task: &mut Task, clock: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    // Linux ignores flag bits other than TIMER_ABSTIME.
    if clock == CLOCK_THREAD_CPUTIME_ID {
        return Err(Errno::ENOTSUP);
    }
    let base = now(clock)?;
    let ns = read_timespec(task, req)?;
    let mono = time::monotonic_ns();
    let deadline = if flags & TIMER_ABSTIME != 0 {
        // An absolute time on `clock`, converted to the monotonic scale.
        mono.saturating_add(ns.saturating_sub(base))
    } else {
        mono.saturating_add(ns)
    };
    let rem = if flags & TIMER_ABSTIME != 0 { 0 } else { rem };
    // clock_nanosleep returns the error number instead of setting errno.
    sleep_until(task, deadline, rem)
}
