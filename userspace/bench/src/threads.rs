//! Threads of one process on several CPUs (`threads`, only when named):
//!
//! - `fault/Nthr`: N threads, each pinned to its own CPU, write one byte
//!   of every 4 KiB page of their own slice of one mapping (order-0
//!   pages: `MADV_NOHUGEPAGE`), released together while the main thread
//!   sleeps in `pthread_join`; ns per page over the whole mapping, from
//!   the release to the last worker's end, so perfect scaling halves it
//!   as the threads double; on Folium, with the waits per repetition for
//!   the frame allocator's lock and the process table's.
//! - `munmap/Nthr`: one thread unmaps a populated mapping while N - 1
//!   others, one per other CPU, run user code in the same address space
//!   (so every flush must reach their CPUs); ns per page of the `munmap`,
//!   with, on Folium, the mmu_gather batches and the TLB shootdowns it
//!   took (x86: IPI rounds; arm64: broadcast invalidations), and on x86
//!   the other CPUs' flushes left for their next install of the space
//!   (CPUs that had run it but did not then).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ulib::sys::{self, mm};
use ulib::thread;

use crate::Progress;
use crate::report::Record;
use crate::stats::Summary;

const PAGE: u64 = 4096;

fn record(case: String, iters: u32, per: u64, samples: &[u64], size_mib: u64) -> Record {
    Record {
        bench: "threads",
        case,
        folio_kb: 4,
        size_mib,
        iterations: iters,
        summary: Summary::of(samples),
        per: per as f64,
        per_unit: "page",
        check: String::from("ok"),
        extra: Vec::new(),
    }
}

/// The thread counts measured: 1, 2, 4 ... up to the CPUs this process
/// may use.
fn counts() -> Result<Vec<usize>, String> {
    let cpus = folium_programs::cpus::getaffinity(0)
        .map_err(|e| format!("sched_getaffinity: {}", e.name()))?
        .count_ones() as usize;
    let mut v: Vec<usize> = (0..8).map(|k| 1 << k).filter(|&n| n < cpus).collect();
    v.push(cpus);
    Ok(v)
}

/// How many runs [`run`] makes (for the progress line).
pub fn units() -> u64 {
    counts().map_or(0, |c| 2 * c.len() as u64)
}

/// The CPU ids this process may use, in order.
fn cpu_ids() -> Result<Vec<u32>, String> {
    let mask = folium_programs::cpus::getaffinity(0)
        .map_err(|e| format!("sched_getaffinity: {}", e.name()))?;
    Ok(folium_programs::cpus::list(mask))
}

/// What a worker thread is handed (a pointer to it is its argument).
/// Every worker also reads [`GO`] and counts itself in [`DONE`].
struct Job {
    cpu: u32,
    base: u64,
    len: u64,
}

/// Starts `f` on a thread per job; if one cannot start, sets [`GO`] to
/// `release` (which lets the started ones end), joins them and fails.
fn spawn_all(
    f: extern "C" fn(u64),
    jobs: &[Job],
    release: u32,
) -> Result<Vec<thread::Thread>, String> {
    let mut threads = Vec::new();
    for j in jobs {
        match thread::spawn(f, core::ptr::from_ref(j) as u64) {
            Ok(t) => threads.push(t),
            Err(e) => {
                GO.store(release, Ordering::Release);
                threads.into_iter().for_each(thread::Thread::join);
                return Err(format!("clone: {}", e.name()));
            }
        }
    }
    Ok(threads)
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: u32) {
    let _ = folium_programs::cpus::setaffinity(0, 1 << cpu);
}

extern "C" fn fault_worker(arg: u64) {
    // SAFETY: `arg` points to a Job that outlives the thread (joined
    // before it is dropped).
    let job = unsafe { &*(arg as *const Job) };
    pin(job.cpu);
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    let mut at = job.base;
    while at < job.base + job.len {
        // SAFETY: a page of this thread's slice of a live mapping.
        unsafe { core::ptr::write_volatile(at as *mut u8, 1) };
        at += PAGE;
    }
    END_NS.fetch_max(sys::now_ns(), Ordering::AcqRel);
}

extern "C" fn spin_worker(arg: u64) {
    // SAFETY: as in `fault_worker`.
    let job = unsafe { &*(arg as *const Job) };
    pin(job.cpu);
    DONE.fetch_add(1, Ordering::Release);
    let mut n = 0u8;
    while GO.load(Ordering::Acquire) != 2 {
        // Runs user code in the shared address space, touching its own
        // page: its CPU holds the space's translations.
        // SAFETY: this thread's own page.
        unsafe { core::ptr::write_volatile(job.base as *mut u8, n) };
        n = n.wrapping_add(1);
    }
}

/// Static cells for the workers' flags (threads get `'static` refs).
static GO: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
/// When the last fault worker finished (`now_ns`).
static END_NS: AtomicU64 = AtomicU64::new(0);

fn map(len: u64) -> Result<u64, String> {
    let p = sys::mmap_anon(0, len, mm::PROT_READ | mm::PROT_WRITE, mm::MAP_PRIVATE)
        .map_err(|e| format!("mmap: {}", e.name()))?;
    // Order-0 pages on Folium and Linux alike.
    let _ = sys::madvise(p, len, mm::MADV_NOHUGEPAGE);
    Ok(p)
}

fn stats() -> Option<[u64; 3]> {
    let mut buf = [0u8; 8192];
    let n = folium_programs::read_into(c"/sys/kernel/mm/folium/stats", &mut buf)?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
    };
    Some([
        get("gathers ")?,
        get("tlb_shootdowns ")?,
        get("tlb_flushes_deferred ")?,
    ])
}

/// Runs both measurements over a mapping of `size_mib`, `iters` times
/// each per thread count.
pub fn run(size_mib: u64, iters: u32, progress: &mut Progress) -> Result<Vec<Record>, String> {
    let cpus = cpu_ids()?;
    let len = size_mib << 20;
    let pages = len / PAGE;
    let mut out = Vec::new();
    for n in counts()? {
        progress.step(&format!("threads: fault, {n} threads"));
        let mut samples = Vec::new();
        let locks_before = crate::sys::lock_stats();
        for _ in 0..iters {
            let base = map(len)?;
            let slice = (pages / n as u64) * PAGE;
            GO.store(0, Ordering::Release);
            END_NS.store(0, Ordering::Release);
            let jobs: Vec<Job> = (0..n)
                .map(|i| Job {
                    cpu: cpus[i],
                    base: base + i as u64 * slice,
                    len: if i == n - 1 {
                        len - i as u64 * slice
                    } else {
                        slice
                    },
                })
                .collect();
            let threads = spawn_all(fault_worker, &jobs, 1)?;
            // Every worker is pinned and spinning (or about to) first.
            sys::nanosleep(2_000_000).ok();
            let t0 = sys::now_ns();
            GO.store(1, Ordering::Release);
            // Sleeping in join, not spinning: a spinning main thread
            // would take CPU time from the workers it times.
            threads.into_iter().for_each(thread::Thread::join);
            samples.push(END_NS.load(Ordering::Acquire) - t0);
            let _ = sys::munmap(base, len);
        }
        let mut r = record(format!("fault/{n}thr"), iters, pages, &samples, size_mib);
        r.extra.push(("threads", format!("{n}")));
        if let (Some(b), Some(a)) = (locks_before, crate::sys::lock_stats()) {
            // Per repetition: waits for the frame allocator's lock and the
            // process table's (what still serialises parallel faults).
            let per = |k: usize| format!("{}", (a[k] - b[k]) / u64::from(iters));
            r.extra.push(("frames_lock_contended", per(3)));
            r.extra.push(("sched_lock_contended", per(1)));
        }
        out.push(r);
        progress.done(1);

        progress.step(&format!("threads: munmap beside {} running threads", n - 1));
        let mut samples = Vec::new();
        let (mut gathers, mut shootdowns, mut deferred) = (0u64, 0u64, 0u64);
        let mut counted = true;
        for _ in 0..iters {
            let base = map(len)?;
            let own = map(PAGE * n as u64)?;
            let mut at = base;
            while at < base + len {
                // SAFETY: a page of the mapping just made.
                unsafe { core::ptr::write_volatile(at as *mut u8, 1) };
                at += PAGE;
            }
            pin(cpus[0]);
            GO.store(0, Ordering::Release);
            DONE.store(0, Ordering::Release);
            let jobs: Vec<Job> = (1..n)
                .map(|i| Job {
                    cpu: cpus[i],
                    base: own + i as u64 * PAGE,
                    len: PAGE,
                })
                .collect();
            let threads = spawn_all(spin_worker, &jobs, 2)?;
            while DONE.load(Ordering::Acquire) < (n - 1) as u64 {
                core::hint::spin_loop();
            }
            let before = stats();
            let t0 = sys::now_ns();
            let r = sys::munmap(base, len);
            let t = sys::now_ns() - t0;
            let after = stats();
            GO.store(2, Ordering::Release);
            threads.into_iter().for_each(thread::Thread::join);
            let _ = sys::munmap(own, PAGE * n as u64);
            r.map_err(|e| format!("munmap: {}", e.name()))?;
            samples.push(t);
            match (before, after) {
                (Some(b), Some(a)) => {
                    gathers += a[0] - b[0];
                    shootdowns += a[1] - b[1];
                    deferred += a[2] - b[2];
                }
                _ => counted = false,
            }
        }
        let all = (0..cpus.len() as u32).fold(0u64, |m, c| m | 1 << cpus[c as usize]);
        let _ = folium_programs::cpus::setaffinity(0, all);
        let mut r = record(format!("munmap/{n}thr"), iters, pages, &samples, size_mib);
        r.extra.push(("threads", format!("{n}")));
        if counted {
            r.extra
                .push(("gathers", format!("{}", gathers / u64::from(iters))));
            r.extra.push((
                "tlb_shootdowns",
                format!("{}", shootdowns / u64::from(iters)),
            ));
            r.extra.push((
                "tlb_flushes_deferred",
                format!("{}", deferred / u64::from(iters)),
            ));
        }
        out.push(r);
        progress.done(1);
    }
    Ok(out)
}
