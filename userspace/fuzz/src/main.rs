//! `fuzz`: a seeded random syscall sequencer for Folium's mm and process
//! calls (a static Linux-ABI program).
//!
//! ```text
//! fuzz [--seed S] [--iters N] [--from R] [--trace] [--test] [--linux]
//! ```
//!
//! It refuses to run on another kernel unless given `--linux` (its
//! random syscalls are for a disposable guest, never a host).
//!
//! A run is `--iters` rounds (default 200) from round `--from` (default
//! 0). Each round forks a child that issues a planned number of random
//! syscalls ([`child`]) and ends as planned ([`mod@plan`]): living, exiting,
//! or dying of a fault, a trap or a signal to itself. The parent checks
//! that the wait status is the one the plan allows (a child killed by a
//! kernel problem, or living when it should have died, fails the run),
//! continues a child that stopped itself, kills one still running after
//! 20 s (a sleep its random calls asked for), runs the kernel's mm audit every 100 rounds, and at the
//! end restores the knobs, runs the audit again and checks that MemFree
//! is what it was before the run.
//!
//! Every random choice comes from `--seed` and the round number alone, so
//! `--seed S --from R --iters 1` replays round R by itself (knob values
//! the earlier rounds left aside). A failure prints
//! `fuzz: FAILED seed S round R: ...`; `--trace` prints each round's
//! number before it runs, so a kernel panic names its round too (and with
//! `--iters 1`, every call the child makes and its result). Progress
//! lines `fuzz: seed S round R ...` come every 100 rounds. With `--test`
//! the result is also one test line and a `fuzz: N passed, N failed`
//! summary, as `cargo xtask test` reads them.
#![no_std]
#![no_main]

extern crate alloc;

mod child;
mod knobs;
mod plan;
mod rng;

use alloc::string::String;
use core::fmt::Write;

use folium_programs::{mem_free_kb, mm_audit};
use ulib::{println, sys};

use plan::{End, Plan, SIGKILL, check, plan};

ulib::entry!(main);

/// Seconds a child may run before the parent kills it.
const CHILD_DEADLINE_NS: u64 = 20_000_000_000;
/// Rounds between audits and progress lines.
const EVERY: u64 = 100;

struct Opts {
    seed: u64,
    iters: u64,
    from: u64,
    trace: bool,
    test: bool,
    linux: bool,
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn options(args: &ulib::Args) -> Result<Opts, String> {
    let mut o = Opts {
        seed: 1,
        iters: 200,
        from: 0,
        trace: false,
        test: false,
        linux: false,
    };
    let mut i = 1;
    while let Some(a) = args.arg(i) {
        let mut value = || {
            i += 1;
            args.arg(i)
                .and_then(parse_u64)
                .ok_or_else(|| alloc::format!("{a} needs a number"))
        };
        match a {
            "--seed" => o.seed = value()?,
            "--iters" => o.iters = value()?,
            "--from" => o.from = value()?,
            "--trace" => o.trace = true,
            "--test" => o.test = true,
            "--linux" => o.linux = true,
            _ => return Err(alloc::format!("unknown argument {a}")),
        }
        i += 1;
    }
    Ok(o)
}

/// What the run saw.
#[derive(Default)]
struct Tally {
    syscalls: u64,
    lived: u64,
    exited: u64,
    signaled: u64,
    killed: u64,
    timed_out: u64,
    audits: u64,
}

/// How `status` (a wait status word) ended the child, `None` if it is
/// neither an exit nor a death by a signal.
fn end_of(status: u32) -> Option<End> {
    match status & 0x7f {
        0 => Some(End::Exited((status >> 8) & 0xff)),
        0x7f => None,
        sig => Some(End::Signaled(sig)),
    }
}

/// Waits for `pid`, killing it past its deadline; its wait status and
/// whether it was killed for time.
fn wait_deadline(pid: i32) -> Result<(u32, bool), String> {
    let start = sys::now_ns();
    let mut polls = 0u32;
    let mut killed = false;
    loop {
        // WUNTRACED: a child that stopped itself (SIGSTOP and kin) is
        // continued at once rather than left to its deadline.
        match sys::wait4(pid, sys::WNOHANG | 2) {
            Ok((got, status)) if got == pid && status & 0xff == 0x7f => {
                let _ = sys::kill(pid, 18);
            }
            Ok((got, status)) if got == pid => return Ok((status, killed)),
            Ok(_) => {}
            Err(e) => return Err(alloc::format!("wait4 of child {pid}: {}", e.name())),
        }
        polls += 1;
        if polls < 64 {
            sys::sched_yield();
        } else {
            let _ = sys::nanosleep(1_000_000);
        }
        if !killed && sys::now_ns() - start > CHILD_DEADLINE_NS {
            killed = true;
            let _ = sys::kill(pid, SIGKILL as u8);
        }
    }
}

/// The kernel's audit, `Err(report)` if it found anything (`Ok` where
/// there is none).
fn audit() -> Result<(), String> {
    match mm_audit() {
        Some(r) if !r.starts_with("audit: ok") => Err(r),
        _ => Ok(()),
    }
}

fn run(o: &Opts, saved: &knobs::Saved, t: &mut Tally) -> Result<(), String> {
    for round in o.from..o.from.saturating_add(o.iters) {
        if o.trace {
            println!("fuzz: round {round}");
        }
        let p: Plan = plan(o.seed, round);
        let pid = match sys::fork() {
            Ok(0) => {
                let mut c = child::Child::new(o.seed, round, &p);
                c.verbose = o.trace && o.iters == 1;
                let code = c.run(&p);
                sys::exit_group(code);
            }
            Ok(pid) => pid as i32,
            Err(e) => return Err(alloc::format!("round {round}: fork: {}", e.name())),
        };
        let (status, late) =
            wait_deadline(pid).map_err(|e| alloc::format!("round {round}: {e}"))?;
        let end = end_of(status)
            .ok_or_else(|| alloc::format!("round {round}: impossible wait status {status:#x}"))?;
        if let Some(why) = check(&p, end) {
            return Err(alloc::format!(
                "round {round}: {why} (plan {:?}, {} syscalls; ended {end:?})",
                p.terminal,
                p.syscalls
            ));
        }
        t.syscalls += u64::from(p.syscalls);
        match end {
            End::Signaled(SIGKILL) if late => t.timed_out += 1,
            End::Signaled(SIGKILL) => t.killed += 1,
            End::Signaled(_) => t.signaled += 1,
            End::Exited(c) if c == p.syscalls => t.lived += 1,
            End::Exited(_) => t.exited += 1,
        }
        let done = round + 1 - o.from;
        if done.is_multiple_of(EVERY) || done == o.iters {
            t.audits += 1;
            audit().map_err(|r| alloc::format!("round {round}: mm audit failed:\n{r}"))?;
            println!(
                "fuzz: seed {} round {round} syscalls {} audit ok",
                o.seed, t.syscalls
            );
        }
    }
    let refused = saved.restore();
    if !refused.is_empty() || !saved.unchanged() {
        return Err(alloc::format!("knobs not restored: {refused:?}"));
    }
    Ok(())
}

/// MemFree once every process but this one is gone: orphaned
/// grandchildren a round left behind (sleeping, or stopped by a signal the
/// round sent them, as they would stay on Linux) are killed first
/// (`kill(-1, SIGKILL)`: every process but init and this one), then
/// MemFree is retried for up to a second while init reaps them.
fn settled_free(before: u64) -> Option<u64> {
    let _ = sys::kill(-1, 9);
    let mut now = mem_free_kb();
    for _ in 0..100 {
        if now == Some(before) {
            break;
        }
        let _ = sys::nanosleep(10_000_000);
        now = mem_free_kb();
    }
    now
}

fn main(args: &ulib::Args) -> i32 {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            println!("fuzz: {e}");
            return 2;
        }
    };
    if !o.linux && !folium_programs::on_folium() {
        println!(
            "fuzz: not on Folium: refusing to make random syscalls here (--linux runs anyway, for a disposable guest)"
        );
        return 2;
    }
    // Warm up what the parent itself uses, so its own pages do not move
    // MemFree: the audit's and meminfo's buffers, the heap.
    let _ = audit();
    let _ = mem_free_kb();
    let saved = knobs::Saved::save();
    let mut t = Tally::default();
    let before = mem_free_kb().unwrap_or(0);
    let started = sys::now_ns();
    let mut result = run(&o, &saved, &mut t);
    if result.is_err() {
        let _ = saved.restore();
        // Leave no grandchild behind: one stopped by a round's signal
        // would stay stopped under init forever (Folium has no process
        // groups, so no orphaned-group SIGHUP/SIGCONT), and init would
        // wait for it forever.
        let _ = sys::kill(-1, 9);
    }
    if result.is_ok() {
        let after = settled_free(before).unwrap_or(0);
        result = audit()
            .map_err(|r| alloc::format!("mm audit after the run failed:\n{r}"))
            .and_then(|()| {
                if after == before {
                    Ok(())
                } else {
                    Err(alloc::format!(
                        "MemFree {before} kB before the run, {after} kB after"
                    ))
                }
            });
    }
    let secs = (sys::now_ns() - started) as f64 / 1e9;
    let mut line = String::new();
    let _ = write!(
        line,
        "seed {} rounds {}..{} syscalls {} in {secs:.1} s: lived {} exited {} signaled {} oom-killed {} timed-out {} audits {}",
        o.seed,
        o.from,
        o.from.saturating_add(o.iters),
        t.syscalls,
        t.lived,
        t.exited,
        t.signaled,
        t.killed,
        t.timed_out,
        t.audits + 1
    );
    let ok = result.is_ok();
    match result {
        Ok(()) => println!("fuzz: ok {line}; MemFree {before} kB before and after"),
        Err(e) => {
            println!("fuzz: FAILED seed {} {e}", o.seed);
            println!("fuzz: {line}");
        }
    }
    if o.test {
        println!(
            "test fuzz::seeded_run ... {}",
            if ok { "ok" } else { "FAILED" }
        );
        println!("fuzz: {} passed, {} failed", u8::from(ok), u8::from(!ok));
    }
    i32::from(!ok)
}
