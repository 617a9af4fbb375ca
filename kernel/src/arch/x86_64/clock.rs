//! Time from the HPET main counter (q35 has it at 0xfed0_0000).

use core::sync::atomic::{AtomicU64, Ordering};

/// The HPET's physical base on PC-compatible boards.
pub const HPET_PA: u64 = 0xfed0_0000;
const GCAP_ID: usize = 0x00;
const GEN_CONF: usize = 0x10;
const MAIN_COUNTER: usize = 0xf0;

static BASE: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU64 = AtomicU64::new(0);

fn reg(off: usize) -> *mut u64 {
    (BASE.load(Ordering::Relaxed) as usize + off) as *mut u64
}

/// Enables the HPET counter. Needs its page mapped as device memory in the
/// linear map (the platform lists it among its device regions).
pub fn init() {
    let Some(info) = folium_boot::info() else {
        return;
    };
    BASE.store(HPET_PA + info.linear_offset, Ordering::Relaxed);
    // SAFETY: the HPET registers are mapped (device memory) at BASE by the
    // kernel's tables; the capability register is read-only and setting
    // ENABLE_CNF only starts the main counter.
    unsafe {
        let period_fs = reg(GCAP_ID).read_volatile() >> 32;
        if period_fs == 0 || period_fs > 100_000_000 {
            BASE.store(0, Ordering::Relaxed);
            return;
        }
        HZ.store(1_000_000_000_000_000 / period_fs, Ordering::Relaxed);
        let conf = reg(GEN_CONF).read_volatile();
        reg(GEN_CONF).write_volatile(conf | 1);
    }
}

/// Counter ticks (0 if the HPET is absent).
#[inline]
pub fn ticks() -> u64 {
    if BASE.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    // SAFETY: mapped by `init`'s contract; reading the counter is harmless.
    unsafe { reg(MAIN_COUNTER).read_volatile() }
}

/// Counter frequency in Hz (0 if the HPET is absent).
pub fn ticks_per_sec() -> u64 {
    HZ.load(Ordering::Relaxed)
}

/// A short description for reports.
pub fn describe() -> alloc::string::String {
    alloc::format!("HPET at {:.3} MHz", ticks_per_sec() as f64 / 1e6)
}

/// Reads one CMOS RTC register.
fn cmos(reg: u8) -> u8 {
    use x86_64::instructions::port::Port;
    // SAFETY: ports 0x70/0x71 are the PC's CMOS index/data pair; bit 7 of
    // the index keeps NMIs enabled as they were (0); reading a register has
    // no side effects.
    unsafe {
        Port::<u8>::new(0x70).write(reg);
        Port::<u8>::new(0x71).read()
    }
}

/// The wall-clock time from the CMOS RTC, in seconds since the epoch
/// (`None` if it reads as nonsense).
pub fn rtc_epoch_secs() -> Option<u64> {
    // Wait out an update in progress, then read until two reads agree.
    let read = || {
        for _ in 0..100_000 {
            if cmos(0x0a) & 0x80 == 0 {
                break;
            }
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(cmos)
    };
    let mut r = read();
    for _ in 0..5 {
        let again = read();
        if again == r {
            break;
        }
        r = again;
    }
    let status_b = cmos(0x0b);
    let bin = |v: u8| {
        if status_b & 4 != 0 {
            v
        } else {
            (v >> 4) * 10 + (v & 0xf)
        }
    };
    let [sec, min, hour_raw, day, month, year, century] = r;
    let mut hour = bin(hour_raw & 0x7f);
    if status_b & 2 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    let century = match bin(century) {
        19..=21 => u64::from(bin(century)),
        _ => 20,
    };
    let (sec, min, day, month) = (bin(sec), bin(min), bin(day), bin(month));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let year = century * 100 + u64::from(bin(year));
    let days = crate::time::days_from_civil(year as i64, u32::from(month), u32::from(day));
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(secs).ok()
}
