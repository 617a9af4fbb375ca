//! Time slices: the periodic timer interrupt counts ticks here and asks
//! for a reschedule when the running task's slice is used up, or when a
//! sleeping process's deadline has passed (so a sleeper waits at most a
//! tick for its wake-up, not for the running task's slice).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;
/// Ticks a task runs before another runnable task gets the CPU.
pub const SLICE_TICKS: u64 = 2;

static TICKS: AtomicU64 = AtomicU64::new(0);
static SLICE_LEFT: AtomicU64 = AtomicU64::new(SLICE_TICKS);
static NEED_RESCHED: AtomicBool = AtomicBool::new(false);
/// The earliest deadline (`CLOCK_MONOTONIC` ns) of a sleeping process,
/// `u64::MAX` for none: kept by the scheduler (`crate::proc`), read by
/// the tick.
static NEXT_WAKE_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Called by the platform's timer interrupt handler, once per tick, with
/// interrupts masked.
pub fn timer_tick() {
    // Every CPU counts its own ticks; processes run on CPU 0, whose tick
    // alone drives the time slices and the sleepers' wake-ups.
    if !crate::smp::tick() {
        return;
    }
    TICKS.fetch_add(1, Ordering::Relaxed);
    if SLICE_LEFT.fetch_sub(1, Ordering::Relaxed) <= 1 {
        SLICE_LEFT.store(SLICE_TICKS, Ordering::Relaxed);
        NEED_RESCHED.store(true, Ordering::Relaxed);
    }
    if crate::time::monotonic_ns() >= NEXT_WAKE_NS.load(Ordering::Relaxed) {
        NEED_RESCHED.store(true, Ordering::Relaxed);
    }
}

/// Timer interrupts since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Takes the "reschedule" flag (slice used up, or a sleeper is due).
pub fn take_need_resched() -> bool {
    NEED_RESCHED.swap(false, Ordering::Relaxed)
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
