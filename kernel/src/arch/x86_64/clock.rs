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
