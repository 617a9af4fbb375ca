//! The ARM PrimeCell PL031 real-time clock (QEMU `virt`): its data
//! register RTCDR counts seconds, which QEMU starts at the host's time
//! since the Unix epoch. Only read: the wall clock is taken once at boot.

use core::sync::atomic::{AtomicU64, Ordering};

/// RTCDR: the current count.
const DR: usize = 0x000;
/// RTCCR: bit 0 set while the counter runs.
const CR: usize = 0x00c;
/// PeriphID0..3 and PCellID0..3, one byte in each of eight words.
const ID: usize = 0xfe0;
/// The register window the ID words end.
const WINDOW: u64 = 0x1000;

/// Virtual address of the registers; 0 until [`init`] accepted a device.
static BASE: AtomicU64 = AtomicU64::new(0);

/// # Safety
///
/// `base` maps a PL031's 4 KiB register window as device memory.
unsafe fn read(base: u64, off: usize) -> u32 {
    // SAFETY: forwarded from the caller; `off` is a register offset inside
    // the window, word aligned.
    unsafe { ((base as usize + off) as *const u32).read_volatile() }
}

/// Takes the PL031 whose `size`-byte register window is mapped as device
/// memory at `va`, now and in the kernel's own tables, if its
/// identification registers say it is one (part 0x031, PrimeCell ID
/// 0xb105f00d).
///
/// # Safety
///
/// `[va, va + size)` must map the device's registers as device memory for
/// the rest of the run.
pub unsafe fn init(va: u64, size: u64) -> bool {
    if size < WINDOW {
        return false;
    }
    // SAFETY: the whole 4 KiB window is mapped (caller, and checked above);
    // reading the ID registers has no side effects.
    let id: [u32; 8] = core::array::from_fn(|i| unsafe { read(va, ID + 4 * i) } & 0xff);
    let part = id[0] | (id[1] & 0xf) << 8;
    let cell = id[4] | id[5] << 8 | id[6] << 16 | id[7] << 24;
    if part != 0x031 || cell != 0xb105_f00d {
        return false;
    }
    BASE.store(va, Ordering::Relaxed);
    true
}

/// Seconds since the epoch, if a PL031 was found and its counter runs.
pub fn epoch_secs() -> Option<u64> {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    // SAFETY: `init` accepted the device mapped at `base` for the whole run;
    // reading RTCCR and RTCDR has no side effects.
    unsafe { (read(base, CR) & 1 != 0).then(|| u64::from(read(base, DR))) }
}

kernel_test!(
    fn pl031_gives_the_wall_clock_where_the_dtb_has_one() {
        let described = folium_boot::info().and_then(|i| i.rtc);
        let secs = epoch_secs();
        // Found exactly where the firmware described one (virt), never on
        // the Pis.
        check_eq!(secs.is_some(), described.is_some(), "DTB rtc {described:?}");
        if let Some(s) = secs {
            // 2020-01-01 .. 2100-01-01: the host's clock, not a counter
            // from 0.
            check!((1_577_836_800..4_102_444_800).contains(&s), "RTCDR {s}");
            // CLOCK_REALTIME was set from it at boot.
            let realtime = crate::time::realtime_ns() / 1_000_000_000;
            check!(realtime.abs_diff(s) <= 2, "realtime {realtime} vs RTC {s}");
            println!("    PL031 at {:?}: {s} s since the epoch", described);
        }
        Ok(())
    }
);
