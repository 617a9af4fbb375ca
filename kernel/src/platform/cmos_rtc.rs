//! The PC's CMOS real-time clock (q35): the wall-clock time at boot.

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
pub fn epoch_secs() -> Option<u64> {
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

kernel_test!(
    fn cmos_rtc_gives_the_wall_clock() {
        // Every PC-compatible board has one; q35's runs on the host's clock.
        let secs = epoch_secs();
        let s = check_some!(secs);
        // 2020-01-01 .. 2100-01-01: the host's clock, not a counter from 0.
        check!((1_577_836_800..4_102_444_800).contains(&s), "CMOS RTC {s}");
        // CLOCK_REALTIME was set from it at boot.
        let realtime = crate::time::realtime_ns() / 1_000_000_000;
        check!(realtime.abs_diff(s) <= 2, "realtime {realtime} vs RTC {s}");
        Ok(())
    }
);
