//! Time slices: the periodic timer interrupt counts ticks here and asks
//! for a reschedule when the running task's slice is used up.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;
/// Ticks a task runs before another runnable task gets the CPU.
pub const SLICE_TICKS: u64 = 2;

static TICKS: AtomicU64 = AtomicU64::new(0);
static SLICE_LEFT: AtomicU64 = AtomicU64::new(SLICE_TICKS);
static NEED_RESCHED: AtomicBool = AtomicBool::new(false);

/// Called by the platform's timer interrupt handler, once per tick, with
/// interrupts masked.
pub fn timer_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    if SLICE_LEFT.fetch_sub(1, Ordering::Relaxed) <= 1 {
        SLICE_LEFT.store(SLICE_TICKS, Ordering::Relaxed);
        NEED_RESCHED.store(true, Ordering::Relaxed);
    }
}

/// Timer interrupts since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Takes the "slice used up" flag.
pub fn take_need_resched() -> bool {
    NEED_RESCHED.swap(false, Ordering::Relaxed)
}
