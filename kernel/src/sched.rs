//! Time slices: each CPU's periodic timer interrupt counts ticks here and
//! asks that CPU to reschedule when its running task's slice is used up,
//! or when a sleeping process's deadline has passed (so a sleeper waits
//! at most a tick for its wake-up, not for the running task's slice).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::smp::MAX_CPUS;

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;
/// Ticks a task runs before another runnable task gets the CPU.
pub const SLICE_TICKS: u64 = 2;

/// CPU 0's ticks: the clock of the slices' bookkeeping.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// Per CPU: ticks left in its running task's slice.
static SLICE_LEFT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(SLICE_TICKS) }; MAX_CPUS];
/// Per CPU: reschedule at the next chance.
static NEED_RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The earliest deadline (`CLOCK_MONOTONIC` ns) of a sleeping process,
/// `u64::MAX` for none: kept by the scheduler (`crate::proc`), read by
/// the tick.
static NEXT_WAKE_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Called by the platform's timer interrupt handler, once per tick on
/// each CPU, with interrupts masked.
pub fn timer_tick() {
    let cpu = crate::smp::id();
    if crate::smp::tick() {
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
    if SLICE_LEFT[cpu].fetch_sub(1, Ordering::Relaxed) <= 1 {
        SLICE_LEFT[cpu].store(SLICE_TICKS, Ordering::Relaxed);
        NEED_RESCHED[cpu].store(true, Ordering::Relaxed);
    }
    if crate::time::monotonic_ns() >= NEXT_WAKE_NS.load(Ordering::Relaxed) {
        NEED_RESCHED[cpu].store(true, Ordering::Relaxed);
    }
}

/// Timer interrupts since the timer started (CPU 0's).
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Takes this CPU's "reschedule" flag (slice used up, or a sleeper is
/// due).
pub fn take_need_resched() -> bool {
    NEED_RESCHED[crate::smp::id()].swap(false, Ordering::Relaxed)
}

/// Makes CPU `cpu` reschedule at once: its flag, and an IPI that brings a
/// process it runs in user mode back to the kernel, where it looks.
pub fn resched_cpu(cpu: usize) {
    if let Some(flag) = NEED_RESCHED.get(cpu) {
        flag.store(true, Ordering::Relaxed);
        let _ = crate::smp::send_ipi(cpu);
    }
}

/// True if a sleeping process's deadline has passed (read without the
/// table's lock: an idle CPU's hint to go and wake it).
pub fn sleeper_due() -> bool {
    crate::time::monotonic_ns() >= NEXT_WAKE_NS.load(Ordering::Relaxed)
}

/// Records that a process sleeps until `until_ns`.
pub fn note_sleeper(until_ns: u64) {
    NEXT_WAKE_NS.fetch_min(until_ns, Ordering::Relaxed);
}

/// Sets the earliest sleep deadline (`u64::MAX`: nobody sleeps), after
/// the scheduler woke the sleepers that were due.
pub fn set_next_wake(until_ns: u64) {
    NEXT_WAKE_NS.store(until_ns, Ordering::Relaxed);
}
