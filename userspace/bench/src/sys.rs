//! What a system call, a context switch and a small process cost, on
//! CLOCK_MONOTONIC: each repetition times a batch of operations, and the
//! statistics are of the batch times (ns per operation = median / batch).
//!
//! - `null_syscall`: `getpid`'s round trip;
//! - `yield_switch`: two processes `sched_yield` in turn on one CPU, so
//!   each yield is one context switch (a round is two);
//! - `fork_exit_wait`: `fork` + `_exit` + `wait4` of this small process.

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
    for _ in 0..iters {
        let child = match sys::fork() {
            Ok(0) => {
                for _ in 0..rounds + 10 {
                    sys::sched_yield();
                }
                sys::exit_group(0)
            }
            Ok(p) => p as i32,
            Err(e) => return Err(format!("fork: {}", e.name())),
        };
        sys::sched_yield();
        let t0 = sys::now_ns();
        for _ in 0..rounds {
            sys::sched_yield();
        }
        samples.push(sys::now_ns() - t0);
        let _ = sys::wait4(child, 0);
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
