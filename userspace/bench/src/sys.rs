//! What a system call, a context switch and a small process cost, on
//! CLOCK_MONOTONIC: each repetition times a batch of operations, and the
//! statistics are of the batch times (ns per operation = median / batch).
//!
//! - `null_syscall`: `getpid`'s round trip;
//! - `yield_switch`: two processes `sched_yield` in turn on one CPU (both
//!   pinned to the one this process runs on), so each yield is one
//!   context switch (a round is two);
//! - `fork_exit_wait`: `fork` + `_exit` + `wait4` of this small process.
//!
//! `sched-cpus` ([`cpus`], only when named): `fork_exit_wait` loops in 1,
//! 2, 4 ... processes at once (unpinned), against one: how the run queue
//! and the locks every CPU shares scale.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_abi::Sysno;
use ulib::sys;

use crate::Progress;
use crate::report::Record;
use crate::stats::Summary;

fn record(case: &str, iters: u32, per: u64, samples: &[u64]) -> Record {
    Record {
        bench: "sys",
        case: String::from(case),
        folio_kb: 0,
        size_mib: 0,
        iterations: iters,
        summary: Summary::of(samples),
        per: per as f64,
        per_unit: "op",
        check: String::from("ok"),
        extra: Vec::new(),
    }
}

/// Runs the three measurements, `iters` repetitions each; `scale`
/// divides the batch sizes (a quick run).
pub fn run(iters: u32, scale: u64, progress: &mut Progress) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();

    progress.step("sys: null syscall");
    let n = 20_000 / scale;
    let mut samples = Vec::new();
    for _ in 0..iters {
        let t0 = sys::now_ns();
        for _ in 0..n {
            core::hint::black_box(sys::call_int(Sysno::Getpid, [0; 6]).ok());
        }
        samples.push(sys::now_ns() - t0);
    }
    out.push(record("null_syscall", iters, n, &samples));
    progress.done(1);

    progress.step("sys: yield switch");
    let rounds = 2_000 / scale;
    let mut samples = Vec::new();
    // On one CPU: elsewhere a yield would find nothing else to run.
    let mask = folium_programs::cpus::getaffinity(0).ok();
    if let (Some(_), Ok(here)) = (mask, folium_programs::cpus::getcpu()) {
        let _ = folium_programs::cpus::setaffinity(0, 1 << here);
    }
    for _ in 0..iters {
        let child = match sys::fork() {
            Ok(0) => {
                for _ in 0..rounds + 10 {
                    sys::sched_yield();
                }
                sys::exit_group(0)
            }
            Ok(p) => p as i32,
            Err(e) => {
                if let Some(m) = mask {
                    let _ = folium_programs::cpus::setaffinity(0, m);
                }
                return Err(format!("fork: {}", e.name()));
            }
        };
        sys::sched_yield();
        let t0 = sys::now_ns();
        for _ in 0..rounds {
            sys::sched_yield();
        }
        samples.push(sys::now_ns() - t0);
        let _ = sys::wait4(child, 0);
    }
    if let Some(m) = mask {
        let _ = folium_programs::cpus::setaffinity(0, m);
    }
    out.push(record("yield_switch", iters, 2 * rounds, &samples));
    progress.done(1);

    progress.step("sys: fork+exit+wait");
    let n = 200 / scale;
    let mut samples = Vec::new();
    for _ in 0..iters {
        let t0 = sys::now_ns();
        for _ in 0..n {
            match sys::fork() {
                Ok(0) => sys::exit_group(0),
                Ok(p) => {
                    let _ = sys::wait4(p as i32, 0);
                }
                Err(e) => return Err(format!("fork: {}", e.name())),
            }
        }
        samples.push(sys::now_ns() - t0);
    }
    out.push(record("fork_exit_wait", iters, n, &samples));
    progress.done(1);
    Ok(out)
}

/// `sched-cpus`: `n` processes at once, each running `loops` of
/// `fork` + `_exit` + `wait4`, for n = 1, 2, 4 ... up to the CPUs the
/// caller may use; each repetition's time is from the first fork to the
/// last worker's exit. Every row's per-op cost is over all `n * loops`
/// operations, so perfect scaling halves it with each doubling; on
/// Folium each row also says how often the run queue's, the frame
/// allocator's and the heap's locks had to be waited for, and how long.
pub fn cpus(iters: u32, scale: u64, progress: &mut Progress) -> Result<Vec<Record>, String> {
    let cpus = folium_programs::cpus::getaffinity(0)
        .map_err(|e| format!("sched_getaffinity: {}", e.name()))?
        .count_ones() as usize;
    let mut counts: Vec<usize> = (0..8).map(|k| 1 << k).filter(|&n| n < cpus).collect();
    counts.push(cpus);
    let loops = 200 / scale;
    let mut out = Vec::new();
    for n in counts {
        progress.step(&format!(
            "sched-cpus: fork+exit+wait in {n} processes at once"
        ));
        let mut samples = Vec::new();
        let before = lock_stats();
        for _ in 0..iters {
            let t0 = sys::now_ns();
            let mut workers = Vec::new();
            for _ in 0..n {
                match sys::fork() {
                    Ok(0) => {
                        for _ in 0..loops {
                            match sys::fork() {
                                Ok(0) => sys::exit_group(0),
                                Ok(p) => {
                                    let _ = sys::wait4(p as i32, 0);
                                }
                                Err(_) => sys::exit_group(1),
                            }
                        }
                        sys::exit_group(0)
                    }
                    Ok(p) => workers.push(p as i32),
                    Err(e) => {
                        folium_programs::kill_and_reap(&workers);
                        return Err(format!("fork: {}", e.name()));
                    }
                }
            }
            let mut failed = false;
            for p in workers {
                failed |= !matches!(sys::wait4(p, 0), Ok((_, 0)));
            }
            if failed {
                return Err(String::from("a worker's fork failed"));
            }
            samples.push(sys::now_ns() - t0);
        }
        let after = lock_stats();
        let mut r = record(
            &format!("fork_exit_wait/{n}proc"),
            iters,
            n as u64 * loops,
            &samples,
        );
        r.bench = "sched-cpus";
        r.extra.push(("processes", format!("{n}")));
        if let (Some(b), Some(a)) = (before, after) {
            for (i, name) in LOCK_KEYS.iter().enumerate() {
                r.extra
                    .push((name, format!("{}", a[i].saturating_sub(b[i]))));
            }
        }
        out.push(r);
        progress.done(1);
    }
    Ok(out)
}

/// Folium's scheduler and lock counters, as its stats file names them
/// (and as the JSON records do): switches, then contended acquisitions
/// and wait ns of the process table's, the frame allocator's, the heap's
/// and the per-CPU run queues' (all together) locks.
const LOCK_KEYS: [&str; 9] = [
    "sched_switches",
    "sched_lock_contended",
    "sched_lock_wait_ns",
    "frames_lock_contended",
    "frames_lock_wait_ns",
    "heap_lock_contended",
    "heap_lock_wait_ns",
    "runq_lock_contended",
    "runq_lock_wait_ns",
];

/// The [`LOCK_KEYS`] counters now (`None` elsewhere than on Folium).
pub(crate) fn lock_stats() -> Option<[u64; 9]> {
    let mut buf = [0u8; 8192];
    let n = folium_programs::read_into(c"/sys/kernel/mm/folium/stats", &mut buf)?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    let mut out = [0u64; 9];
    for (i, k) in LOCK_KEYS.iter().enumerate() {
        out[i] = text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())?;
    }
    Some(out)
}
