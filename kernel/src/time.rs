//! Clocks as user space sees them: `CLOCK_MONOTONIC` from the architected
//! counter (CNTVCT_EL0 / HPET) since boot, and `CLOCK_REALTIME` as that
//! plus the wall-clock time read from the board's RTC at boot (zero, i.e.
//! 1970, on boards without one, as on a Raspberry Pi without network).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch;

/// Nanoseconds since the Unix epoch at monotonic time 0.
static REALTIME_BASE_NS: AtomicU64 = AtomicU64::new(0);
/// Whether an RTC set the wall clock at boot.
static REALTIME_SET: AtomicBool = AtomicBool::new(false);

/// Nanoseconds since boot (the counter's start).
pub fn monotonic_ns() -> u64 {
    let hz = arch::clock::ticks_per_sec().max(1);
    (u128::from(arch::clock::ticks()) * 1_000_000_000 / u128::from(hz)) as u64
}

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    REALTIME_BASE_NS.load(Ordering::Relaxed) + monotonic_ns()
}

/// Records the wall-clock time now (seconds since the epoch), from an RTC.
pub fn set_realtime(epoch_secs: u64) {
    let base = epoch_secs
        .saturating_mul(1_000_000_000)
        .saturating_sub(monotonic_ns());
    REALTIME_BASE_NS.store(base, Ordering::Relaxed);
    REALTIME_SET.store(true, Ordering::Relaxed);
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

kernel_test!(
    fn clocks_advance_and_civil_dates_convert() {
        check_eq!(days_from_civil(1970, 1, 1), 0);
        check_eq!(days_from_civil(2000, 3, 1), 11_017);
        check_eq!(days_from_civil(2026, 11, 22), 20_779);
        let a = monotonic_ns();
        let b = monotonic_ns();
        check!(b >= a, "monotonic went back: {a} -> {b}");
        let m = monotonic_ns();
        check!(
            realtime_ns() >= m,
            "the wall clock is behind the monotonic one"
        );
        // On a board with an RTC, the wall clock was set at boot: after
        // 2020 (the RTC drivers' own tests check they set it).
        if REALTIME_SET.load(Ordering::Relaxed) {
            check!(
                realtime_ns() / 1_000_000_000 > 1_577_836_800,
                "realtime {}",
                realtime_ns()
            );
        }
        Ok(())
    }
);
