//! `bench`: Folium's anonymous-memory microbenchmark, a static Linux-ABI
//! program that runs unchanged on Folium and on Linux 6.9 or newer, so the
//! two kernels can be compared in the same QEMU.
//!
//! ```text
//! bench [fault] [--size MIB] [--iters N] [--sizes KB,KB,...] [--set-knobs]
//! ```
//!
//! - `fault` (the default): the time to populate `--size` MiB (default
//!   64) by touching each page, per folio size (default all of 4 kB to
//!   2048 kB), `--iters` repetitions (default 3); see [`fault`].
//!
//! The mTHP policy is set through Linux's knobs for each size and put back
//! afterwards. It is set only where that is safe: on Folium, or when this
//! program is PID 1 or its child (a benchmark guest); elsewhere (a shared
//! host) only with `--set-knobs`, and otherwise measured as it stands,
//! which the check column then says.
//!
//! Output: a table per benchmark, then one JSON object per result line.
#![no_std]
#![no_main]

extern crate alloc;

mod fault;
mod knobs;
mod stats;

use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::on_folium;
use ulib::{println, sys};

ulib::entry!(main);

/// The kernel's release string (uname).
fn release() -> String {
    let mut buf = [0u8; 390];
    let _ = sys::uname(&mut buf);
    let f = &buf[130..195];
    let n = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from(core::str::from_utf8(&f[..n]).unwrap_or("?"))
}

struct Opts {
    size_mib: u64,
    iters: u32,
    sizes: Vec<u64>,
    set_knobs: bool,
}

fn parse(args: &ulib::Args) -> Result<Opts, String> {
    let mut o = Opts {
        size_mib: 64,
        iters: 3,
        sizes: fault::ALL_KB.to_vec(),
        set_knobs: false,
    };
    let mut i = 1;
    let value = |i: usize, what: &str| -> Result<&str, String> {
        args.arg(i + 1)
            .ok_or_else(|| alloc::format!("{what} needs a value"))
    };
    while let Some(a) = args.arg(i) {
        match a {
            "fault" => {}
            "--size" => {
                o.size_mib = value(i, a)?
                    .parse()
                    .ok()
                    .filter(|&m: &u64| (2..=1 << 20).contains(&m) && m % 2 == 0)
                    .ok_or("--size: an even number of MiB, at least 2")?;
                i += 1;
            }
            "--iters" => {
                o.iters = value(i, a)?
                    .parse()
                    .ok()
                    .filter(|&n: &u32| (1..=1000).contains(&n))
                    .ok_or("--iters: 1 to 1000")?;
                i += 1;
            }
            "--sizes" => {
                let mut v = Vec::new();
                for w in value(i, a)?.split(',') {
                    let kb: u64 = w.trim_end_matches(['k', 'K']).parse().unwrap_or(0);
                    if !fault::ALL_KB.contains(&kb) {
                        return Err(alloc::format!(
                            "--sizes: {w} is not one of 4,16,32,64,128,256,512,1024,2048"
                        ));
                    }
                    v.push(kb);
                }
                o.sizes = v;
                i += 1;
            }
            "--set-knobs" => o.set_knobs = true,
            other => return Err(alloc::format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    Ok(o)
}

fn main(args: &ulib::Args) -> i32 {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            println!("bench: {e}");
            println!(
                "usage: bench [fault] [--size MIB] [--iters N] [--sizes KB,...] [--set-knobs]"
            );
            return 2;
        }
    };
    let kernel = release();
    let may_set = o.set_knobs || on_folium() || sys::getpid() == 1 || sys::getppid() == 1;
    let saved = knobs::save();
    if saved.is_none() {
        println!("bench: no mTHP knobs under /sys/kernel/mm/transparent_hugepage (Linux < 6.8?)");
    } else if !may_set {
        println!("bench: not changing the knobs of a shared host (pass --set-knobs to allow)");
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for &kb in &o.sizes {
        let policy = saved.is_some() && may_set && knobs::use_only(kb).is_ok();
        match fault::measure(kb, o.size_mib, o.iters, policy) {
            Ok(r) => {
                failed |= r.check == "MISMATCH";
                rows.push(r);
            }
            Err(e) => {
                println!("bench: fault {kb}K: {e}");
                failed = true;
            }
        }
    }
    if let (Some(s), true) = (&saved, may_set)
        && let Err(e) = knobs::restore(s)
    {
        println!("bench: could not restore the knobs: {e}");
        failed = true;
    }
    fault::report(&rows, o.size_mib, o.iters, &kernel);
    if failed { 1 } else { 0 }
}
