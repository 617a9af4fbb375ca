//! `bench-sys`: what a system call, a context switch and a process cost,
//! in nanoseconds per operation on CLOCK_MONOTONIC. Runs on Folium and,
//! unchanged, on Linux in the same QEMU, so the two can be compared.
//! Prints a table and one JSON object per result. `bench-sys QUICK` runs
//! a tenth of the iterations.
#![no_std]
#![no_main]

use folium_abi::Sysno;
use ulib::{println, sys};

ulib::entry!(main);

/// The kernel's release string (uname), for the JSON records.
fn release(buf: &mut [u8; 390]) -> &str {
    let _ = sys::uname(buf);
    let f = &buf[130..195];
    let n = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    core::str::from_utf8(&f[..n]).unwrap_or("?")
}

fn report(kernel: &str, op: &str, iters: u64, total_ns: u64, per: u64) {
    let ns = total_ns as f64 / (iters * per) as f64;
    println!("  {op:<24} {iters:>8} x {ns:>12.1} ns");
    println!(
        "{{\"bench\":\"sys\",\"op\":\"{op}\",\"iterations\":{iters},\"ns_per_op\":{ns:.1},\"kernel\":\"{kernel}\"}}"
    );
}

fn main(args: &ulib::Args) -> i32 {
    let scale = if args.arg(1) == Some("QUICK") { 10 } else { 1 };
    let mut u = [0u8; 390];
    let kernel = release(&mut u);
    println!("bench-sys on {kernel}: ns per operation (CLOCK_MONOTONIC)");

    // 1. The null syscall: getpid's round trip.
    let n = 20_000 / scale;
    let t0 = sys::now_ns();
    for _ in 0..n {
        core::hint::black_box(sys::call_int(Sysno::Getpid, [0; 6]).ok());
    }
    report(kernel, "null_syscall", n, sys::now_ns() - t0, 1);

    // 2. sched_yield ping-pong: with one CPU, each yield hands the CPU to
    // the other process; every round is two switches.
    let rounds = 2_000 / scale;
    let child = match sys::fork() {
        Ok(0) => {
            for _ in 0..rounds + 10 {
                sys::sched_yield();
            }
            sys::exit_group(0)
        }
        Ok(p) => p as i32,
        Err(e) => {
            println!("bench-sys: fork failed: {}", e.name());
            return 1;
        }
    };
    sys::sched_yield();
    let t0 = sys::now_ns();
    for _ in 0..rounds {
        sys::sched_yield();
    }
    let dt = sys::now_ns() - t0;
    let _ = sys::wait4(child, 0);
    report(kernel, "yield_switch", rounds, dt, 2);

    // 3. fork + _exit + wait4 of a small process.
    let n = 300 / scale;
    let t0 = sys::now_ns();
    for _ in 0..n {
        match sys::fork() {
            Ok(0) => sys::exit_group(0),
            Ok(p) => {
                let _ = sys::wait4(p as i32, 0);
            }
            Err(e) => {
                println!("bench-sys: fork failed: {}", e.name());
                return 1;
            }
        }
    }
    report(kernel, "fork_exit_wait", n, sys::now_ns() - t0, 1);
    0
}
