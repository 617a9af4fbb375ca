//! The fault benchmark: the time to populate N MiB of private anonymous
//! memory by writing one byte to each 4 KiB page, once per folio size,
//! with the policy set so every fault takes that size.
//!
//! Each repetition maps a fresh 2 MiB-aligned region (so every folio size
//! fits exactly), touches it from the first page to the last, reads the
//! clock around the touches only, and unmaps it. The per-size fault
//! counters are read around the touches too: they say whether the kernel
//! really used the folio size asked for, and the table says so.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ulib::sys::{self, mm};

use crate::knobs::{self, LARGE_KB};
use crate::stats::Summary;

/// Every folio size measured, in kB: order 0, then each knob's size.
pub const ALL_KB: [u64; 9] = [4, 16, 32, 64, 128, 256, 512, 1024, 2048];

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// One folio size's result.
pub struct Row {
    pub kb: u64,
    pub summary: Summary,
    /// Large folios expected per repetition (0 for 4 kB).
    pub expected: u64,
    /// Large folios of that size the counters saw, per repetition
    /// (the smallest count over the repetitions).
    pub got: u64,
    /// Large folios of any *other* size the counters saw (should be 0).
    pub others: u64,
    /// What the counters say about the run.
    pub check: &'static str,
}

/// A 2 MiB-aligned private mapping of `len` bytes (the surplus of an
/// over-sized mapping is unmapped again).
fn map_aligned(len: u64) -> Result<u64, String> {
    let align = 2 * MIB;
    let prot = mm::PROT_READ | mm::PROT_WRITE;
    let raw = sys::mmap_anon(0, len + align, prot, mm::MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    let start = raw.next_multiple_of(align);
    if start > raw {
        let _ = sys::munmap(raw, start - raw);
    }
    let end = start + len;
    if raw + len + align > end {
        let _ = sys::munmap(end, raw + len + align - end);
    }
    Ok(start)
}

/// Writes one byte to every page of `[start, start + len)`.
fn touch(start: u64, len: u64) {
    let mut va = start;
    while va < start + len {
        // SAFETY: a private read-write mapping this program just made;
        // volatile so the stores are not merged or dropped.
        unsafe { (va as *mut u8).write_volatile(1) };
        va += PAGE;
    }
}

/// Measures one folio size: `iters` populations of `size_mib` MiB.
/// `policy` says whether the knobs were set for this size.
pub fn measure(kb: u64, size_mib: u64, iters: u32, policy: bool) -> Result<Row, String> {
    let len = size_mib * MIB;
    let mut samples = Vec::new();
    let slot = LARGE_KB.iter().position(|&k| k == kb);
    let expected = if slot.is_some() { len / (kb * 1024) } else { 0 };
    let (mut got, mut others) = (u64::MAX, 0);
    for _ in 0..iters {
        let base = map_aligned(len)?;
        let before = knobs::fault_allocs();
        let t0 = sys::now_ns();
        touch(base, len);
        let dt = sys::now_ns() - t0;
        let after = knobs::fault_allocs();
        sys::munmap(base, len).map_err(|e| format!("munmap: {}", e.name()))?;
        samples.push(dt);
        let mut this = 0;
        for i in 0..LARGE_KB.len() {
            let d = after[i].saturating_sub(before[i]);
            if Some(i) == slot {
                this = d;
            } else {
                others += d;
            }
        }
        got = got.min(this);
    }
    let check = if !policy {
        "policy not set"
    } else if got == expected && others == 0 {
        "ok"
    } else {
        "MISMATCH"
    };
    Ok(Row {
        kb,
        summary: Summary::of(&samples),
        expected,
        got: if slot.is_some() { got } else { 0 },
        others,
        check,
    })
}

/// Prints the table of `rows` (for `size_mib` MiB, `iters` repetitions)
/// and one JSON object per row.
pub fn report(rows: &[Row], size_mib: u64, iters: u32, kernel: &str) {
    let pages = (size_mib * MIB / PAGE) as f64;
    let base = rows.iter().find(|r| r.kb == 4).map(|r| r.summary.median);
    ulib::println!(
        "fault: populate {size_mib} MiB by writing each 4 KiB page, {iters} repetitions, on {kernel}"
    );
    ulib::println!(
        "  {:>6} {:>9} {:>7} {:>6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>13}  check",
        "folio",
        "ns/4KiB",
        "s/GiB",
        "vs 4K",
        "median ms",
        "mean ms",
        "sd ms",
        "min ms",
        "max ms",
        "folios"
    );
    for r in rows {
        let s = &r.summary;
        let per4k = s.median / pages;
        let s_per_gib = s.median / 1e9 * (1024.0 / size_mib as f64);
        let ratio = base.map_or(0.0, |b| s.median / b);
        let folios = if r.expected > 0 {
            format!("{}/{}", r.got, r.expected)
        } else {
            String::from("-")
        };
        let ms = |ns: f64| ns / 1e6;
        ulib::println!(
            "  {:>5}K {:>9.0} {:>7.2} {:>6.2} {:>9.2} {:>9.2} {:>8.2} {:>9.2} {:>9.2} {:>13}  {}",
            r.kb,
            per4k,
            s_per_gib,
            ratio,
            ms(s.median),
            ms(s.mean),
            ms(s.stddev),
            ms(s.min),
            ms(s.max),
            folios,
            r.check
        );
    }
    for r in rows {
        let s = &r.summary;
        ulib::println!(
            "{{\"bench\":\"fault\",\"folio_kb\":{},\"size_mib\":{size_mib},\"iterations\":{iters},\
             \"median_ns\":{:.0},\"mean_ns\":{:.0},\"stddev_ns\":{:.0},\"min_ns\":{:.0},\"max_ns\":{:.0},\
             \"ns_per_4k\":{:.1},\"ratio_vs_4k\":{:.3},\"folios_expected\":{},\"folios_got\":{},\
             \"folios_other_sizes\":{},\"check\":\"{}\",\"kernel\":\"{kernel}\"}}",
            r.kb,
            s.median,
            s.mean,
            s.stddev,
            s.min,
            s.max,
            s.median / pages,
            base.map_or(0.0, |b| s.median / b),
            r.expected,
            r.got,
            r.others,
            r.check
        );
    }
}
