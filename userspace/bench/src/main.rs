//! `bench`: Folium's anonymous-memory microbenchmark, a static Linux-ABI
//! program that runs unchanged on Folium and on Linux 6.9 or newer, so the
//! two kernels can be compared in the same QEMU.
//!
//! ```text
//! bench [sys] [fork] [munmap] [fault] [contpte] [contpte-cpus] [sched-cpus]
//!       [threads] [--size MIB] [--iters N] [--sizes KB,KB,...] [--quick] [--set-knobs]
//! ```
//!
//! With no benchmark named, all of them but the `-cpus` ones run, in
//! that order:
//!
//! - `sys`: null syscall, context switch, small fork ([`sys`]);
//! - `fork`: `fork()` of a process with `--size` MiB (default 1024)
//!   populated with order-0 folios, then with order-9 folios mapped by
//!   PTEs, each with a child that sleeps 5 ms before it exits (`order-N`:
//!   its exit stays out of the parent's time) and with one that exits at
//!   once (`order-N/exit-now`: the ordinary pattern), and a `memcpy` of as
//!   many bytes as that memory's page tables, the physical limit fork is
//!   measured against ([`anon`]);
//! - `munmap` and `fault` (measured together): populating `--size` MiB by
//!   touching each page, and unmapping it, per folio size (default every
//!   size from 4 kB to 2048 kB);
//! - `contpte`: arm64 contiguous PTEs off and on ([`contpte`]): the fork
//!   regression Linux 6.9 cured, fault, fork and munmap at every large
//!   folio size of `--sizes`, and random touches of every page; not
//!   applicable (and said so) without contpte: on x86, or on a Folium
//!   without its `contpte` switch.
//! - `contpte-cpus` (only when named): the regression row with 1, 2, 4
//!   ... processes forking `--size` MiB each at once, one pinned to each
//!   CPU (see [`contpte::on_cpus`]): what several CPUs cost a fork's
//!   write-protection.
//! - `sched-cpus` (only when named): `fork_exit_wait` in 1, 2, 4 ...
//!   processes at once, with Folium's lock contention ([`sys::cpus`]).
//! - `threads` (only when named): 1, 2, 4 ... threads of one process
//!   faulting disjoint slices of `--size` MiB together, and a `munmap` of
//!   it beside threads running on the other CPUs, with the TLB
//!   shootdowns it took ([`threads`]).
//!
//! `--iters` repetitions (default 5) give each row its median, mean,
//! standard deviation, min and max. `--quick` is a run of seconds that
//! fits a screen: 64 MiB, 3 repetitions, smaller syscall batches, and the
//! folio sizes 4, 64 and 2048 kB unless `--sizes` names others.
//!
//! The mTHP policy is set through Linux's knobs for each case (top level
//! `never`, the size under test `always`, every other size `never`) and
//! put back afterwards. It is set only where that is safe: on Folium, or
//! when this program is PID 1 or its child (a benchmark guest); elsewhere
//! (a shared host) only with `--set-knobs`, and otherwise measured as it
//! stands, which the check column then says. As PID 1 on Linux it mounts
//! /proc and /sys first, prints the kernel command line, takes its
//! arguments from the words after its `--` and powers the machine off at
//! the end.
//!
//! Output: progress lines (`bench: [k/n] ...`), a table per benchmark,
//! one JSON object per result line (see [`report`]), and the fork /
//! memcpy ratios.
#![no_std]
#![no_main]

extern crate alloc;

mod anon;
mod contpte;
mod knobs;
mod report;
mod stats;
mod sys;
mod threads;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::on_folium;
use report::Record;
use ulib::println;

ulib::entry!(main);

/// The kernel's release string (uname).
fn release() -> String {
    let mut buf = [0u8; 390];
    let _ = ulib::sys::uname(&mut buf);
    let f = &buf[130..195];
    let n = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from(core::str::from_utf8(&f[..n]).unwrap_or("?"))
}

/// Progress through the run: `step` announces what starts, with the time
/// spent and an estimate of what is left; `done` counts finished units.
pub struct Progress {
    start: u64,
    total: u64,
    done: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            start: ulib::sys::now_ns(),
            total: total.max(1),
            done: 0,
        }
    }

    /// Announces the next piece of work.
    pub fn step(&self, what: &str) {
        let elapsed = (ulib::sys::now_ns() - self.start) as f64 / 1e9;
        let left = if self.done == 0 {
            String::from("?")
        } else {
            let per = elapsed / self.done as f64;
            format!(
                "~{:.0}",
                per * (self.total.saturating_sub(self.done)) as f64
            )
        };
        println!(
            "bench: [{}/{}] {what} ({elapsed:.0} s elapsed, {left} s left)",
            self.done + 1,
            self.total
        );
    }

    /// Counts `n` finished units.
    pub fn done(&mut self, n: u64) {
        self.done += n;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bench {
    Sys,
    Fork,
    Anon,
    Contpte,
    ContpteCpus,
    SchedCpus,
    Threads,
}

struct Opts {
    benches: Vec<Bench>,
    size_mib: u64,
    iters: u32,
    sizes: Vec<u64>,
    quick: bool,
    set_knobs: bool,
}

const USAGE: &str = "usage: bench [sys] [fork] [munmap] [fault] [contpte] [contpte-cpus] [sched-cpus] [threads] [--size MIB] [--iters N] \
                     [--sizes KB,...] [--quick] [--set-knobs]";

/// Parses `args` from index `first` (1, or later when the first words
/// are not the program's: see [`linux_init_args`]).
/// The folio sizes `--quick` measures: the smallest, the arm64 contpte
/// block, the largest.
const QUICK_KB: [u64; 3] = [4, 64, 2048];

fn parse(args: &ulib::Args, first: usize) -> Result<Opts, String> {
    let mut o = Opts {
        benches: Vec::new(),
        size_mib: 0,
        iters: 0,
        sizes: anon::ALL_KB.to_vec(),
        quick: false,
        set_knobs: false,
    };
    let mut sizes_given = false;
    let mut i = first;
    let value = |i: usize, what: &str| -> Result<&str, String> {
        args.arg(i + 1)
            .ok_or_else(|| format!("{what} needs a value"))
    };
    while let Some(a) = args.arg(i) {
        let b = match a {
            "sys" => Some(Bench::Sys),
            "fork" => Some(Bench::Fork),
            "munmap" | "fault" => Some(Bench::Anon),
            "contpte" => Some(Bench::Contpte),
            "contpte-cpus" => Some(Bench::ContpteCpus),
            "sched-cpus" => Some(Bench::SchedCpus),
            "threads" => Some(Bench::Threads),
            "--size" => {
                o.size_mib = value(i, a)?
                    .parse()
                    .ok()
                    .filter(|&m: &u64| (2..=1 << 20).contains(&m) && m % 2 == 0)
                    .ok_or("--size: an even number of MiB, at least 2")?;
                i += 1;
                None
            }
            "--iters" => {
                o.iters = value(i, a)?
                    .parse()
                    .ok()
                    .filter(|&n: &u32| (1..=1000).contains(&n))
                    .ok_or("--iters: 1 to 1000")?;
                i += 1;
                None
            }
            "--sizes" => {
                let mut v = Vec::new();
                for w in value(i, a)?.split(',') {
                    let kb: u64 = w.trim_end_matches(['k', 'K']).parse().unwrap_or(0);
                    if !anon::ALL_KB.contains(&kb) {
                        return Err(format!(
                            "--sizes: {w} is not one of 4,16,32,64,128,256,512,1024,2048"
                        ));
                    }
                    v.push(kb);
                }
                o.sizes = v;
                sizes_given = true;
                i += 1;
                None
            }
            "--quick" => {
                o.quick = true;
                None
            }
            "--set-knobs" => {
                o.set_knobs = true;
                None
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
        if let Some(b) = b
            && !o.benches.contains(&b)
        {
            o.benches.push(b);
        }
        i += 1;
    }
    if o.benches.is_empty() {
        o.benches = alloc::vec![Bench::Sys, Bench::Fork, Bench::Anon, Bench::Contpte];
    }
    if o.size_mib == 0 {
        o.size_mib = if o.quick { 64 } else { 1024 };
    }
    if o.iters == 0 {
        o.iters = if o.quick { 3 } else { 5 };
    }
    if o.quick && !sizes_given {
        o.sizes = QUICK_KB.to_vec();
    }
    Ok(o)
}

/// Row `r`'s extra value `key`, or `-` where it has none (Linux).
fn extra(r: &Record, key: &str) -> String {
    r.extra
        .iter()
        .find(|(n, _)| *n == key)
        .map_or(String::from("-"), |(_, v)| v.clone())
}

/// How many groups of 1, 2, 4 ... processes the `-cpus` benchmarks run:
/// one per power of two below the CPUs allowed, and all of them.
fn cpu_groups() -> u64 {
    let cpus = folium_programs::cpus::getaffinity(0).map_or(1, |m| u64::from(m.count_ones()));
    (0..8).filter(|&k| 1 << k < cpus).count() as u64 + 1
}

/// PID 1 on Linux (a benchmark guest booted with this program as init):
/// the knobs and counters need sysfs, the PTE-mapping check procfs.
fn mount_pseudo_filesystems() {
    for (dir, fs) in [(c"/proc", c"proc"), (c"/sys", c"sysfs")] {
        let _ = ulib::sys::mkdir(dir, 0o755);
        if let Err(e) = ulib::sys::mount(fs, dir, fs) {
            println!("bench: mount {fs:?} on {dir:?}: {}", e.name());
        }
    }
}

/// PID 1 on Linux: prints the kernel command line and returns the index
/// of the first of init's arguments. The kernel hands init the words
/// after `--`, but first every bare word of its own parameters it did not
/// recognize (x86 `nokaslr`, which only its decompressor reads, is one):
/// those are skipped. Without a `--`, every argument is the program's.
fn linux_init_args(args: &ulib::Args) -> usize {
    let mut buf = alloc::vec![0u8; 4096];
    let Some(n) = folium_programs::read_into(c"/proc/cmdline", &mut buf) else {
        println!("bench: cannot read /proc/cmdline");
        return 1;
    };
    let line = core::str::from_utf8(&buf[..n]).unwrap_or("").trim();
    println!("bench: kernel command line: {line}");
    let mut words = line.split_ascii_whitespace();
    if !words.any(|w| w == "--") {
        return 1;
    }
    let ours = words.count();
    let first = args.len().saturating_sub(ours).max(1);
    if first > 1 {
        let skipped: Vec<&str> = (1..first).filter_map(|i| args.arg(i)).collect();
        println!(
            "bench: skipping what the kernel passed on from its own parameters: {}",
            skipped.join(" ")
        );
    }
    first
}

/// `r` measured in `mode`: the mode in its JSON, and a `/per-pte` suffix
/// on its case so each row keeps a unique name (batched and native rows
/// keep the plain one, which is what compares with Linux).
fn with_mode(mut r: Record, mode: &str) -> Record {
    if mode == "per-pte" {
        r.case.push_str("/per-pte");
    }
    r.extra.push(report::mode_json(mode));
    r
}

/// Prints batched over per-PTE for every row measured both ways, and adds
/// it to the batched row's JSON (`batched_over_per_pte`).
fn mode_ratios(all: &mut [Record]) {
    let mut lines = Vec::new();
    let pairs: Vec<(usize, f64)> = all
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let per = all.iter().find(|p| {
                p.bench == r.bench && p.case.strip_suffix("/per-pte") == Some(r.case.as_str())
            })?;
            let ratio = r.summary.median / per.summary.median.max(1.0);
            lines.push(format!(
                "  {:<8} {:<10} {:>12.2} ms {:>12.2} ms {:>8.2}",
                r.bench,
                r.case,
                r.summary.median / 1e6,
                per.summary.median / 1e6,
                ratio
            ));
            Some((i, ratio))
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    println!("batched / per-PTE (same boot; below 1: batching is faster)");
    println!(
        "  {:<8} {:<10} {:>15} {:>15} {:>8}",
        "bench", "case", "batched", "per-PTE", "ratio"
    );
    for l in lines {
        println!("{l}");
    }
    report::how_to_read("the medians above, batching on and off alternating in each repetition");
    for (i, ratio) in pairs {
        all[i]
            .extra
            .push(("batched_over_per_pte", format!("{ratio:.3}")));
    }
}

fn main(args: &ulib::Args) -> i32 {
    let linux_init = ulib::sys::getpid() == 1 && !on_folium();
    let mut first = 1;
    if linux_init {
        mount_pseudo_filesystems();
        first = linux_init_args(args);
    }
    let code = run(args, first);
    if linux_init {
        // Returning would panic Linux ("attempted to kill init").
        println!("bench: exit status {code}; powering off");
        let _ = ulib::sys::power_off();
    }
    code
}

fn run(args: &ulib::Args, first: usize) -> i32 {
    let o = match parse(args, first) {
        Ok(o) => o,
        Err(e) => {
            println!("bench: {e}");
            println!("{USAGE}");
            return 2;
        }
    };
    let kernel = release();
    let pid = ulib::sys::getpid();
    let may_set = o.set_knobs || on_folium() || pid == 1 || ulib::sys::getppid() == 1;
    let saved = knobs::save();
    if saved.is_none() {
        println!("bench: no mTHP knobs under /sys/kernel/mm/transparent_hugepage (Linux < 6.8?)");
    } else if !may_set {
        println!("bench: not changing the knobs of a shared host (pass --set-knobs to allow)");
    }
    let policy = |kb: u64| saved.is_some() && may_set && knobs::use_only(kb).is_ok();
    println!(
        "bench on {kernel}: {} MiB, {} repetitions{}",
        o.size_mib,
        o.iters,
        if o.quick { " (quick)" } else { "" }
    );
    // Folium measures fork and munmap twice, batched and PTE by PTE (its
    // `pte_batching` switch), in the same boot; elsewhere once, natively.
    let saved_batching = knobs::batching();
    let modes: Vec<&str> = match saved_batching {
        Some(_) if may_set => alloc::vec!["batched", "per-pte"],
        Some(true) => alloc::vec!["batched"],
        Some(false) => alloc::vec!["per-pte"],
        None => alloc::vec!["native"],
    };
    let switching = modes.len() > 1;
    let set_mode = move |mode: &str| match mode {
        "batched" | "per-pte" if switching => knobs::set_batching(mode == "batched"),
        _ => Ok(()),
    };
    let run = anon::Run {
        size_mib: o.size_mib,
        iters: o.iters,
        modes: &modes,
        set_mode: &set_mode,
    };
    let has = |b| o.benches.contains(&b);
    let contpte_support = contpte::support(may_set);
    let contpte_saved = contpte::save();
    let n = u64::from(o.iters);
    let m = modes.len() as u64;
    let total = if has(Bench::Sys) { 3 } else { 0 }
        + if has(Bench::Fork) {
            // Per order: populating, then each mode and the exit-now child
            // per repetition; the memcpy.
            2 * (1 + n * (m + 1)) + 1
        } else {
            0
        }
        + if has(Bench::Anon) {
            o.sizes.len() as u64 * n * m
        } else {
            0
        }
        + match (&contpte_support, has(Bench::Contpte)) {
            (Ok(s), true) => {
                contpte::units(*s, o.iters, o.sizes.iter().filter(|&&kb| kb > 4).count())
            }
            _ => 0,
        }
        + if has(Bench::ContpteCpus) {
            cpu_groups()
        } else {
            0
        }
        + if has(Bench::SchedCpus) {
            cpu_groups()
        } else {
            0
        }
        + if has(Bench::Threads) {
            threads::units()
        } else {
            0
        };
    let mut progress = Progress::new(total);
    let failed = core::cell::Cell::new(false);
    let fail = |what: &str, e: String| {
        println!("bench: {what}: {e}");
        failed.set(true);
    };
    let mut all: Vec<Record> = Vec::new();

    if has(Bench::Sys) {
        match sys::run(o.iters, if o.quick { 10 } else { 1 }, &mut progress) {
            Ok(r) => {
                report::table("sys: ns per operation", &r, &|_| Vec::new());
                report::how_to_read(
                    "one batch of calls per repetition; ns/op: the median over the calls \
                     in a batch",
                );
                all.extend(r);
            }
            Err(e) => fail("sys", e),
        }
    }

    if has(Bench::SchedCpus) {
        match sys::cpus(o.iters, if o.quick { 10 } else { 1 }, &mut progress) {
            Ok(r) => {
                report::table(
                    "sched-cpus: fork+exit+wait in N processes at once, ns per operation",
                    &r,
                    &|r| {
                        let f = |col: &'static str, k: &str| (col, extra(r, k));
                        alloc::vec![
                            f("switches", "sched_switches"),
                            f("table waits", "sched_lock_contended"),
                            f("table wait ns", "sched_lock_wait_ns"),
                            f("runq waits", "runq_lock_contended"),
                            f("frame waits", "frames_lock_contended"),
                            f("heap waits", "heap_lock_contended"),
                        ]
                    },
                );
                report::how_to_read(
                    "ns/op: over every process's operations (perfect scaling halves it as \
                     the processes double); then, over the row (Folium only): context \
                     switches, waits for the process table's lock and ns waited, waits \
                     for the per-CPU run queues', the frame allocator's and the heap's \
                     locks",
                );
                all.extend(r);
            }
            Err(e) => fail("sched-cpus", e),
        }
    }

    if has(Bench::Threads) {
        match threads::run(o.size_mib, o.iters, &mut progress) {
            Ok(r) => {
                report::table(
                    "threads: N threads of one process, ns per 4 KiB page",
                    &r,
                    &|r| {
                        let f = |col: &'static str, k: &str| (col, extra(r, k));
                        alloc::vec![
                            f("gathers", "gathers"),
                            f("shootdowns", "tlb_shootdowns"),
                            f("deferred", "tlb_flushes_deferred"),
                            f("alloc waits", "frames_lock_contended"),
                            f("sched waits", "sched_lock_contended"),
                        ]
                    },
                );
                report::how_to_read(
                    "fault/N: N threads, one per CPU, fault disjoint slices of one \
                     mapping together (perfect scaling halves ns/page as N doubles); \
                     munmap/N: one thread unmaps the populated mapping while N-1 others \
                     run user code in the same space on the other CPUs; per munmap \
                     (Folium only): mmu_gather batches and TLB shootdowns (x86: IPI \
                     rounds to the CPUs running the space, arm64: broadcast \
                     invalidations), and x86 CPUs left to flush at their next install \
                     (deferred: they did not run the space); per fault run (Folium \
                     only): acquisitions of the frame allocator's and the process \
                     table's locks that had to wait",
                );
                all.extend(r);
            }
            Err(e) => fail("threads", e),
        }
    }

    if has(Bench::Fork) {
        let mut rows = Vec::new();
        for kb in [4, 2048] {
            let p = policy(kb);
            match anon::fork(kb, p, &run, &mut progress) {
                Ok((r, exit_now)) => {
                    rows.extend(r.into_iter().zip(&modes).map(|(r, m)| with_mode(r, m)));
                    rows.push(with_mode(exit_now, modes[0]));
                }
                Err(e) => fail("fork", e),
            }
        }
        let copy = anon::memcpy(o.size_mib, o.iters, &mut progress);
        if let Ok(c) = &copy {
            for r in &mut rows {
                let ratio = r.summary.median / c.summary.median.max(1.0);
                r.extra.push(("fork_over_memcpy", format!("{ratio:.2}")));
            }
        }
        let title = format!(
            "fork: fork() of a process with {} MiB populated, parent's time",
            o.size_mib
        );
        report::table(&title, &rows, &|r| {
            let f = r.extra.iter().find(|(k, _)| *k == "fork_over_memcpy");
            alloc::vec![
                (
                    "pte-mapped",
                    String::from(
                        if r.extra
                            .iter()
                            .any(|(k, v)| *k == "pte_mapped" && v == "true")
                        {
                            "yes"
                        } else {
                            "no"
                        }
                    )
                ),
                ("x memcpy", f.map_or(String::from("-"), |(_, v)| v.clone())),
            ]
        });
        match copy {
            Ok(c) => {
                println!(
                    "  physical limit: memcpy of {} KiB (the page tables of {} MiB) takes {:.1} us",
                    o.size_mib * 2,
                    o.size_mib,
                    c.summary.median / 1e3
                );
                rows.push(c);
            }
            Err(e) => fail("memcpy", e),
        }
        println!("  order-N: the child sleeps 5 ms before it exits, so its exit is never timed");
        println!(
            "  order-N/exit-now: the child exits at once, the ordinary pattern \
             (its exit is timed if it runs first)"
        );
        report::how_to_read(
            "the parent's time for one fork(); x memcpy: over a memcpy of its page \
             tables; /per-pte: batching off",
        );
        all.extend(rows);
    }

    if has(Bench::Anon) {
        let (mut faults, mut unmaps) = (Vec::new(), Vec::new());
        let mut per_mode: Vec<Vec<Record>> = modes.iter().map(|_| Vec::new()).collect();
        for &kb in &o.sizes {
            let p = policy(kb);
            match anon::fault_and_munmap(kb, p, &run, &mut progress) {
                Ok((f, u)) => {
                    faults.push(with_mode(f, modes[0]));
                    for (k, (r, m)) in u.into_iter().zip(&modes).enumerate() {
                        per_mode[k].push(with_mode(r, m));
                    }
                }
                Err(e) => fail("fault/munmap", e),
            }
        }
        // The munmap table lists one mode after the other.
        for rows in per_mode {
            unmaps.extend(rows);
        }
        for rows in [&mut faults, &mut unmaps] {
            let base = rows
                .iter()
                .find(|r| r.folio_kb == 4 && r.case == "4K")
                .map(|r| r.summary.median);
            for r in rows.iter_mut() {
                let ratio = base.map_or(0.0, |b| r.summary.median / b.max(1.0));
                r.extra.push(("ratio_vs_4k", format!("{ratio:.3}")));
            }
        }
        let cols = |r: &Record| {
            let get = |k: &str| {
                r.extra
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.clone())
            };
            let folios = match (get("folios_got"), get("folios_expected")) {
                (Some(g), Some(e)) if r.folio_kb > 4 => format!("{g}/{e}"),
                _ => String::from("-"),
            };
            alloc::vec![
                ("vs 4K", get("ratio_vs_4k").unwrap_or_default()),
                ("folios", folios),
            ]
        };
        report::table(
            &format!(
                "fault: populate {} MiB by writing each 4 KiB page",
                o.size_mib
            ),
            &faults,
            &cols,
        );
        report::how_to_read(
            "ns/4KiB: the median per 4 KiB page; vs 4K: over the 4K row's median; \
             folios: got/expected",
        );
        report::table(
            &format!(
                "munmap: munmap() of {} MiB populated with one folio size",
                o.size_mib
            ),
            &unmaps,
            &cols,
        );
        report::how_to_read(
            "ns/4KiB: the median per 4 KiB page; vs 4K: over the 4K row's median; \
             /per-pte: batching off",
        );
        all.extend(faults);
        all.extend(unmaps);
    }

    if has(Bench::Contpte) || has(Bench::ContpteCpus) {
        match contpte_support {
            Ok(s) => {
                // Fork and zap as they ordinarily run: batched.
                if switching && let Err(e) = knobs::set_batching(true) {
                    fail("contpte", e);
                }
                let ctx = contpte::Ctx {
                    size_mib: o.size_mib,
                    iters: o.iters,
                    policy: &policy,
                    batching: match saved_batching {
                        Some(_) if switching => "batched",
                        Some(true) => "batched",
                        Some(false) => "per-pte",
                        None => "native",
                    },
                };
                if has(Bench::Contpte) {
                    match contpte::run(&ctx, s, &o.sizes, &mut progress) {
                        Ok(r) => all.extend(r),
                        Err(e) => fail("contpte", e),
                    }
                }
                if has(Bench::ContpteCpus)
                    && let Err(e) = contpte::on_cpus(&ctx, s, &kernel, &mut progress)
                {
                    fail("contpte-cpus", e);
                }
                if let contpte::Support::Switches { .. } = s
                    && let Err(e) = contpte::restore(&contpte_saved)
                {
                    fail("could not restore the contpte switches", e);
                }
            }
            Err(why) => contpte::not_applicable(&why),
        }
    }

    mode_ratios(&mut all);
    if let (Some(on), true) = (saved_batching, modes.len() > 1)
        && let Err(e) = knobs::set_batching(on)
    {
        fail("could not restore pte_batching", e);
    }
    if let (Some(s), true) = (&saved, may_set)
        && let Err(e) = knobs::restore(s)
    {
        fail("could not restore the knobs", e);
    }
    for r in &all {
        // A row that did not get what it asked for fails the run (`check`
        // says why).
        if r.check.starts_with("MISMATCH") {
            failed.set(true);
        }
        r.json(&kernel);
    }
    println!(
        "bench: done in {:.1} s",
        (ulib::sys::now_ns() - progress.start) as f64 / 1e9
    );
    if failed.get() { 1 } else { 0 }
}
