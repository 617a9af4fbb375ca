//! `cargo xtask`: build, run, test, benchmark and package Folium.
//!
//! ```text
//! cargo xtask qemu-run [--board virt|raspi4b|raspi3b|q35] [--cpu C] [--accel tcg|kvm] [--mem M] [--init PATH] [-- cmdline...]
//! cargo xtask test     [--board B]... [--timeout SECS]
//! cargo xtask bench    [--board B]...
//! cargo xtask build    [--arch aarch64|x86_64]
//! cargo xtask image    --board rpi4|rpi3 [--out DIR]
//! ```

mod bench;
mod build;
mod cprogs;
mod elf;
mod image;
mod qemu;
mod test;
mod toolchain;

use std::process::ExitCode;

use qemu::{Accel, Board};

/// A command-line error or a failed step, reported to the user.
type Result<T> = std::result::Result<T, String>;

fn usage() -> &'static str {
    "usage: cargo xtask <command> [options]

commands:
  qemu-run   build, then boot one board with the serial console on this terminal
             --board virt|raspi4b|raspi3b|q35 (default virt)
             --cpu NAME      QEMU -cpu (virt: cortex-a72 by default; try max)
             --accel tcg|kvm (default tcg; q35 defaults to kvm on hosts with vmx/svm)
             --mem SIZE      guest RAM, e.g. 512M, 2G (fixed on the Pi boards)
             --init PATH     run your own static Linux ELF under init (handed over as an
                             initrd); the words after `--` become its arguments
             -- ARGS...      kernel command line (e.g. `-- test`, `-- init=utest`, `-- bench-alloc`)
  test       host unit tests, then every board's in-guest self-tests
             --board B (repeatable; default all)  --timeout SECS (default 300)
  bench      in-guest benchmarks on virt and q35; prints tables, writes out/bench/*.json
             --board B (repeatable)  --mem SIZE
  build      build the kernel (--arch aarch64|x86_64; default both)
  image      write an SD-card boot folder: --board rpi4|rpi3 [--out DIR]"
}

/// Parsed options shared by the commands.
#[derive(Default)]
struct Opts {
    boards: Vec<Board>,
    cpu: Option<String>,
    accel: Option<Accel>,
    mem: Option<String>,
    arch: Option<String>,
    out: Option<String>,
    timeout: Option<u64>,
    init: Option<String>,
    cmdline: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--board" => {
                let v = val("--board")?;
                o.boards.push(Board::parse(&v)?);
            }
            "--cpu" => o.cpu = Some(val("--cpu")?),
            "--accel" => o.accel = Some(Accel::parse(&val("--accel")?)?),
            "--mem" | "-m" => o.mem = Some(val("--mem")?),
            "--arch" => o.arch = Some(val("--arch")?),
            "--out" => o.out = Some(val("--out")?),
            "--init" => o.init = Some(val("--init")?),
            "--timeout" => {
                let v = val("--timeout")?;
                o.timeout = Some(v.parse().map_err(|_| format!("bad --timeout {v}"))?);
            }
            "--" => {
                o.cmdline = it.by_ref().cloned().collect();
            }
            other => return Err(format!("unknown option {other}\n\n{}", usage())),
        }
    }
    Ok(o)
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        println!("{}", usage());
        return Ok(false);
    };
    let o = parse(rest)?;
    match cmd.as_str() {
        "qemu-run" | "run" => qemu::run(&o),
        "test" => test::run(&o),
        "bench" => bench::run(&o),
        "build" => {
            let arches: Vec<&str> = match o.arch.as_deref() {
                Some(a) => vec![a],
                None => vec!["aarch64", "x86_64"],
            };
            for a in arches {
                let img = build::kernel(build::Arch::parse(a)?)?;
                println!("built {}", img.display());
            }
            Ok(true)
        }
        "image" => image::run(&o),
        "help" | "--help" | "-h" => {
            println!("{}", usage());
            Ok(true)
        }
        other => Err(format!("unknown command {other}\n\n{}", usage())),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
