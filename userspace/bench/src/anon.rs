//! The anonymous-memory benchmarks, on private anonymous mappings of
//! `size` MiB populated with folios of one size at a time:
//!
//! - **fault**: the time to populate the region by writing one byte to
//!   each 4 KiB page (every fault maps a whole folio);
//! - **munmap**: the time of the `munmap()` of the populated region;
//! - **fork**: the time of the `fork()` call in a parent with the region
//!   populated with order-0 folios, or with order-9 (2 MiB) folios mapped
//!   by PTEs, two ways. In the `order-N` rows the child sleeps 5 ms and
//!   `_exit`s, the parent reads the clock and then `wait4`s, so the
//!   child's exit is never timed. In the `order-N/exit-now` rows the child
//!   `_exit`s at once, the ordinary pattern of a fork benchmark: when the
//!   scheduler runs the child first, its exit (the teardown of its copy)
//!   falls inside the parent's timed window.
//!
//! Regions are 2 MiB aligned, so every folio size fits exactly. The
//! per-size fault counters (`anon_fault_alloc`) are read around the
//! population: they say whether the kernel used the folio size asked for,
//! and the check column says so.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::{on_folium, read_file};
use ulib::sys::{self, mm};

use crate::Progress;
use crate::knobs::{self, LARGE_KB};
use crate::report::Record;
use crate::stats::Summary;

/// Every folio size measured, in kB: order 0, then each knob's size.
pub const ALL_KB: [u64; 9] = [4, 16, 32, 64, 128, 256, 512, 1024, 2048];

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
const HUGE: u64 = 2 * MIB;

/// A 2 MiB-aligned private read-write mapping of `len` bytes (the surplus
/// of an over-sized mapping is unmapped again).
pub(crate) fn map_aligned(len: u64) -> Result<u64, String> {
    let prot = mm::PROT_READ | mm::PROT_WRITE;
    let raw = sys::mmap_anon(0, len + HUGE, prot, mm::MAP_PRIVATE)
        .map_err(|e| format!("mmap of {} MiB: {}", len / MIB, e.name()))?;
    let start = raw.next_multiple_of(HUGE);
    if start > raw {
        let _ = sys::munmap(raw, start - raw);
    }
    let end = start + len;
    if raw + len + HUGE > end {
        let _ = sys::munmap(end, raw + len + HUGE - end);
    }
    Ok(start)
}

/// Writes one byte to every page of `[start, start + len)`.
fn touch(start: u64, len: u64) {
    let mut va = start;
    while va < start + len {
        // SAFETY: a private read-write mapping this program made; volatile
        // so the stores are neither merged nor dropped.
        unsafe { (va as *mut u8).write_volatile(1) };
        va += PAGE;
    }
}

/// Large folios of each size the counters saw between two readings:
/// (of size `kb`, of every other size).
fn folios_seen(kb: u64, before: &[u64; 8], after: &[u64; 8]) -> (u64, u64) {
    let (mut this, mut others) = (0, 0);
    for (i, k) in LARGE_KB.iter().enumerate() {
        let d = after[i].saturating_sub(before[i]);
        if *k == kb {
            this += d;
        } else {
            others += d;
        }
    }
    (this, others)
}

/// Folios of `kb` KiB in `len` bytes (0 for order 0, which has no
/// counter).
fn expected_folios(kb: u64, len: u64) -> u64 {
    if kb > 4 { len / (kb * 1024) } else { 0 }
}

/// Populates `[base, base + len)` by touching each page: the time the
/// touches took, and the large folios of size `kb` and of other sizes
/// the counters saw meanwhile (read outside the timed part).
pub(crate) fn populate(kb: u64, base: u64, len: u64) -> (u64, u64, u64) {
    let before = knobs::fault_allocs();
    let t0 = sys::now_ns();
    touch(base, len);
    let dt = sys::now_ns() - t0;
    let after = knobs::fault_allocs();
    let (this, others) = folios_seen(kb, &before, &after);
    (dt, this, others)
}

/// The check column for a population that should have used `expected`
/// folios of `kb` and saw `got` of it and `others` of other sizes.
pub(crate) fn folio_check(policy: bool, expected: u64, got: u64, others: u64) -> String {
    if !policy {
        String::from("policy not set")
    } else if got == expected && others == 0 {
        String::from("ok")
    } else {
        format!("MISMATCH: {got} of {expected} folios, {others} of other sizes")
    }
}

/// What every measurement of a run shares: the region's size, the
/// repetitions, and the kernel modes to alternate (Folium's `batched`
/// and `per-pte`, or one `native` elsewhere) with the switch between them.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// MiB mapped and populated per repetition.
    pub size_mib: u64,
    /// Repetitions.
    pub iters: u32,
    /// The modes, measured once each per repetition, in this order.
    pub modes: &'a [&'a str],
    /// Switches the kernel to a mode.
    pub set_mode: &'a dyn Fn(&str) -> Result<(), String>,
}

fn size_name(kb: u64) -> String {
    format!("{kb}K")
}

/// Measures fault and munmap for folios of `kb` KiB: `run.iters` times,
/// map `run.size_mib` MiB, populate it (timed: fault), unmap it (timed:
/// munmap), once in each of `run.modes` per repetition (`run.set_mode` switches; the modes
/// alternate so both see the same conditions). One fault record (the
/// first mode's: faults do not depend on it) and one munmap record per
/// mode, in `modes` order.
pub fn fault_and_munmap(
    kb: u64,
    policy: bool,
    run: &Run<'_>,
    progress: &mut Progress,
) -> Result<(Record, Vec<Record>), String> {
    let Run {
        size_mib,
        iters,
        modes,
        set_mode,
    } = *run;
    let len = size_mib * MIB;
    let expected = expected_folios(kb, len);
    let mut fault = Vec::new();
    let mut unmap: Vec<Vec<u64>> = modes.iter().map(|_| Vec::new()).collect();
    let (mut got, mut others) = (u64::MAX, 0);
    for i in 0..iters {
        for (m, mode) in modes.iter().enumerate() {
            progress.step(&format!(
                "fault+munmap {kb}K {mode}, repetition {}/{iters}",
                i + 1
            ));
            set_mode(mode)?;
            let base = map_aligned(len)?;
            let (dt, this, other) = populate(kb, base, len);
            let t2 = sys::now_ns();
            sys::munmap(base, len).map_err(|e| format!("munmap: {}", e.name()))?;
            let t3 = sys::now_ns();
            if m == 0 {
                fault.push(dt);
            }
            unmap[m].push(t3 - t2);
            got = got.min(this);
            others += other;
            progress.done(1);
        }
    }
    let check = folio_check(policy, expected, got, others);
    let record = |bench, samples: &[u64]| Record {
        bench,
        case: size_name(kb),
        folio_kb: kb,
        size_mib,
        iterations: iters,
        summary: Summary::of(samples),
        per: (len / PAGE) as f64,
        per_unit: "4KiB",
        check: check.clone(),
        extra: alloc::vec![
            ("folios_expected", format!("{expected}")),
            ("folios_got", format!("{}", if kb > 4 { got } else { 0 })),
            ("folios_other_sizes", format!("{others}")),
        ],
    };
    let unmaps = unmap.iter().map(|u| record("munmap", u)).collect();
    Ok((record("fault", &fault), unmaps))
}

/// Whether no part of this process's memory is mapped by PMDs: Linux's
/// `AnonHugePages` of `/proc/self/smaps_rollup` is 0. Folium maps every
/// folio by PTEs (and has no smaps).
fn pte_mapped() -> Result<bool, String> {
    if on_folium() {
        return Ok(true);
    }
    let text = read_file(c"/proc/self/smaps_rollup").ok_or("cannot read smaps_rollup")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("AnonHugePages:"))
        .ok_or("no AnonHugePages in smaps_rollup")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or("bad AnonHugePages line")?;
    Ok(kb == 0)
}

/// Remaps every 2 MiB folio of `[base, base + len)` by PTEs without
/// splitting it (what Linux's own benchmarks do): changing the protection
/// of one page and back splits a PMD mapping; with PTEs it changes
/// nothing.
pub(crate) fn map_by_ptes(base: u64, len: u64) -> Result<(), String> {
    let rw = mm::PROT_READ | mm::PROT_WRITE;
    let mut at = base;
    while at < base + len {
        sys::mprotect(at + PAGE, PAGE, mm::PROT_READ)
            .and_then(|_| sys::mprotect(at + PAGE, PAGE, rw))
            .map_err(|e| format!("mprotect: {}", e.name()))?;
        at += HUGE;
    }
    Ok(())
}

/// What the forked child does before it `_exit`s.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Child {
    /// Sleeps 5 ms: should the scheduler run it first (the fork used up
    /// the parent's time slice), its exit, the teardown of its copy, does
    /// not land inside the parent's timed window.
    Sleeps,
    /// Exits at once, as in an ordinary fork benchmark.
    ExitsNow,
}

impl Child {
    /// Its value in the JSON records (`child`).
    fn json(self) -> String {
        String::from(match self {
            Child::Sleeps => "\"sleep-5ms\"",
            Child::ExitsNow => "\"exit-now\"",
        })
    }
}

/// One `fork()` timed from the parent: the clock is read before the call
/// and when it returns in the parent, then the child is reaped.
fn timed_fork(child: Child) -> Result<u64, String> {
    let t0 = sys::now_ns();
    let pid = match sys::fork() {
        Ok(0) => {
            if child == Child::Sleeps {
                let _ = sys::nanosleep(5_000_000);
            }
            sys::exit_group(0)
        }
        Ok(pid) => pid as i32,
        Err(e) => return Err(format!("fork: {}", e.name())),
    };
    let dt = sys::now_ns() - t0;
    let _ = sys::wait4(pid, 0);
    Ok(dt)
}

/// Measures `fork()` of a process with `run.size_mib` MiB populated with
/// folios of `kb` KiB (4: order 0; 2048: order 9, mapped by PTEs), on the
/// same memory, alternating within each repetition: with a child that
/// sleeps before it exits once in each of `run.modes`, then with a child that
/// exits at once in the first mode. One record per mode, in `modes`
/// order (case `order-N`), and the exit-now record (`order-N/exit-now`).
pub fn fork(
    kb: u64,
    policy: bool,
    run: &Run<'_>,
    progress: &mut Progress,
) -> Result<(Vec<Record>, Record), String> {
    let Run {
        size_mib,
        iters,
        modes,
        set_mode,
    } = *run;
    let len = size_mib * MIB;
    let order = if kb == 4 { 0 } else { 9 };
    progress.step(&format!("fork order-{order}: populating {size_mib} MiB"));
    let base = map_aligned(len)?;
    let (_, got, others) = populate(kb, base, len);
    let expected = expected_folios(kb, len);
    let mut check = folio_check(policy, expected, got, others);
    if kb > 4 {
        map_by_ptes(base, len)?;
    }
    let ptes = pte_mapped()?;
    if !ptes && check == "ok" {
        check = String::from("MISMATCH: mapped by PMDs");
    }
    progress.done(1);
    // Each repetition: the sleeping child once per mode, then the child
    // that exits at once in the first mode (batched on Folium).
    let runs: Vec<(&str, Child)> = modes
        .iter()
        .map(|m| (*m, Child::Sleeps))
        .chain([(modes[0], Child::ExitsNow)])
        .collect();
    let mut samples: Vec<Vec<u64>> = runs.iter().map(|_| Vec::new()).collect();
    // One round first, untimed: it warms caches and, on Linux, settles
    // anything the first fork of a process does once.
    for i in 0..=iters {
        for (k, &(mode, child)) in runs.iter().enumerate() {
            if i > 0 {
                let what = match child {
                    Child::Sleeps => String::from(mode),
                    Child::ExitsNow => format!("{mode}, child exits at once"),
                };
                progress.step(&format!(
                    "fork order-{order} {what}, repetition {i}/{iters}"
                ));
            }
            let dt = match set_mode(mode).and_then(|_| timed_fork(child)) {
                Ok(dt) => dt,
                Err(e) => {
                    let _ = sys::munmap(base, len);
                    return Err(e);
                }
            };
            if i > 0 {
                samples[k].push(dt);
                progress.done(1);
            }
        }
    }
    sys::munmap(base, len).map_err(|e| format!("munmap: {}", e.name()))?;
    let mut records: Vec<Record> = samples
        .iter()
        .zip(&runs)
        .map(|(s, &(_, child))| Record {
            bench: "fork",
            case: match child {
                Child::Sleeps => format!("order-{order}"),
                Child::ExitsNow => format!("order-{order}/exit-now"),
            },
            folio_kb: kb,
            size_mib,
            iterations: iters,
            summary: Summary::of(s),
            per: 1.0,
            per_unit: "fork",
            check: check.clone(),
            extra: alloc::vec![
                ("folios_expected", format!("{expected}")),
                ("folios_got", format!("{got}")),
                ("pte_mapped", format!("{ptes}")),
                ("child", child.json()),
            ],
        })
        .collect();
    let exit_now = records.pop().ok_or("no fork measured")?;
    Ok((records, exit_now))
}

/// The physical limit beside fork: a `memcpy` of as many bytes as the
/// page tables of a `size_mib` MiB region (8 bytes per 4 KiB page: 2 MiB
/// per GiB), `iters` repetitions of 16 copies each.
pub fn memcpy(size_mib: u64, iters: u32, progress: &mut Progress) -> Result<Record, String> {
    let bytes = size_mib * MIB / PAGE * 8;
    let len = bytes.next_multiple_of(PAGE);
    progress.step(&format!("memcpy of {} KiB", bytes / 1024));
    let src = map_aligned(len)?;
    // The destination sits an odd number of pages from the source: with
    // both 2 MiB aligned, page i of each would share a slot of QEMU's
    // direct-mapped software TLB (any size up to 512 entries) and the copy
    // would thrash it, ten times slower on some runs; real TLBs are
    // set-associative and do not care.
    let dst_map = map_aligned(len + PAGE)?;
    let dst = dst_map + PAGE;
    assert!(((dst - src) / PAGE) % 2 == 1);
    touch(src, len);
    touch(dst, len);
    const COPIES: u64 = 16;
    let mut samples = Vec::new();
    for _ in 0..iters {
        let t0 = sys::now_ns();
        for _ in 0..COPIES {
            // SAFETY: two distinct private mappings of `len >= bytes` bytes
            // this program made and populated.
            unsafe {
                core::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes as usize)
            };
            core::hint::black_box(dst);
        }
        samples.push((sys::now_ns() - t0) / COPIES);
    }
    let _ = sys::munmap(src, len);
    let _ = sys::munmap(dst_map, len + PAGE);
    progress.done(1);
    Ok(Record {
        bench: "memcpy",
        case: String::from("page-tables"),
        folio_kb: 0,
        size_mib,
        iterations: iters,
        summary: Summary::of(&samples),
        per: 1.0,
        per_unit: "copy",
        check: String::from("ok"),
        extra: alloc::vec![("bytes", format!("{bytes}"))],
    })
}
