//! `cargo xtask`: build, run, test, benchmark and package Folium.
//!
//! ```text
//! cargo xtask qemu-run [--board virt|raspi4b|raspi3b|q35] [--cpu C] [--accel tcg|kvm] [--mem M] [--init PATH] [-- cmdline...]
//! cargo xtask test     [--board B]... [--timeout SECS]
//! cargo xtask lint
//! cargo xtask bench    [--board B]... [--accel A] [--size MIB] [--iters N] [--out DIR] [--linux-kernel PATH|debian [--linux-cmdline ARGS]]
//! cargo xtask build    [--arch aarch64|x86_64]
//! cargo xtask image    --board rpi4|rpi3 [--out DIR]
//! cargo xtask qemu-linux [--board virt|q35] [--mem M] [--cpu C] [--accel tcg|kvm] --linux-kernel PATH|debian [--linux-cmdline ARGS] [-- ARGS...]
//! ```

#![forbid(unsafe_code)]

mod bench;
mod build;
mod cpio;
mod cprogs;
mod elf;
mod image;
mod json;
mod lint;
mod linux;
mod plot;
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
  test       the lint gate, host unit tests, then every board's in-guest self-tests
             --board B (repeatable; default all)  --timeout SECS (default 300)
  lint       rustfmt, clippy (warnings denied) on every crate for each target it is
             built for, rustdoc (warnings denied); `test` runs it first
  bench      the in-guest benchmarks on virt and q35 (bench-alloc, then bench: sys, fork,
             fault, munmap); prints the tables as they come and Folium beside Linux,
             writes results.json and SVG plots
             --board B (repeatable)  --accel tcg|kvm  --cpu C  --mem SIZE (default 2x size + 512M)
             --size MIB (default 1024)  --iters N (default 5)  --out DIR (default out/bench)
             --linux-kernel PATH|debian  boot that Linux too, same QEMU, same bench binary
             --linux-cmdline ARGS  (one string) Linux's kernel parameters after xtask's
                             console settings, instead of the default
                             `init_on_alloc=0 mitigations=off nokaslr` (\"\" for none)
  build      build the kernel (--arch aarch64|x86_64; default both)
  image      write an SD-card boot folder: --board rpi4|rpi3 [--out DIR]
  qemu-linux boot Linux (--linux-kernel PATH|debian) on virt|q35 with bench as init; -- ARGS to bench
             --linux-cmdline ARGS  as for bench"
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
    /// `bench`: MiB per repetition, repetitions, and the Linux kernel to
    /// compare with (`qemu-linux` too).
    size: Option<u64>,
    iters: Option<u32>,
    linux_kernel: Option<String>,
    /// Replaces Linux's default kernel parameters (`bench`, `qemu-linux`).
    linux_cmdline: Option<String>,
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
            "--linux-kernel" => o.linux_kernel = Some(val("--linux-kernel")?),
            "--linux-cmdline" => o.linux_cmdline = Some(val("--linux-cmdline")?),
            "--size" => {
                let v = val("--size")?;
                o.size = Some(
                    v.parse()
                        .ok()
                        .filter(|&m: &u64| m >= 2 && m % 2 == 0)
                        .ok_or(format!("--size {v}: an even number of MiB, at least 2"))?,
                );
            }
            "--iters" => {
                let v = val("--iters")?;
                o.iters = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &u32| (1..=1000).contains(&n))
                        .ok_or(format!("--iters {v}: 1 to 1000"))?,
                );
            }
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

/// The Linux options shape a Linux boot: only `bench` and `qemu-linux`
/// boot one, and `--linux-cmdline` means nothing without `--linux-kernel`.
fn check_linux_opts(cmd: &str, o: &Opts) -> Result<()> {
    let given = [
        ("--linux-kernel", o.linux_kernel.is_some()),
        ("--linux-cmdline", o.linux_cmdline.is_some()),
    ];
    if !matches!(cmd, "bench" | "qemu-linux")
        && let Some((name, _)) = given.iter().find(|(_, g)| *g)
    {
        return Err(format!(
            "{name}: only `bench` and `qemu-linux` boot Linux, not `{cmd}`"
        ));
    }
    if let Some(c) = &o.linux_cmdline {
        if o.linux_kernel.is_none() {
            return Err(format!(
                "--linux-cmdline {c:?} needs --linux-kernel PATH|debian: it sets the kernel \
                 parameters of the Linux boot (default `{}`)",
                linux::DEFAULT_PARAMS
            ));
        }
        linux::params(Some(c))?;
    }
    Ok(())
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        println!("{}", usage());
        return Ok(false);
    };
    let o = parse(rest)?;
    check_linux_opts(cmd, &o)?;
    match cmd.as_str() {
        "qemu-run" | "run" => qemu::run(&o),
        "test" => test::run(&o),
        "lint" => lint::run(),
        "bench" => bench::run(&o),
        "qemu-linux" => linux::run(&o),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cmd: &str, args: &[&str]) -> Result<Opts> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let o = parse(&args)?;
        check_linux_opts(cmd, &o)?;
        Ok(o)
    }

    #[test]
    fn linux_cmdline_is_one_string_and_needs_a_linux_kernel() {
        let o = opts(
            "bench",
            &[
                "--linux-kernel",
                "debian",
                "--linux-cmdline",
                "kpti=0 nokaslr",
            ],
        )
        .unwrap();
        assert_eq!(o.linux_cmdline.as_deref(), Some("kpti=0 nokaslr"));
        let o = opts("qemu-linux", &["--linux-kernel", "debian", "--", "fork"]).unwrap();
        assert_eq!(o.linux_cmdline, None);
        let e = opts("bench", &["--linux-cmdline", "nokaslr"])
            .err()
            .unwrap();
        assert!(e.contains("needs --linux-kernel"), "{e}");
        assert!(opts("qemu-linux", &["--linux-cmdline", "x"]).is_err());
        assert!(opts("bench", &["--linux-kernel", "debian", "--linux-cmdline"]).is_err());
        // Refused words are refused before anything boots.
        let bad = ["--linux-kernel", "debian", "--linux-cmdline", "init=/sh"];
        assert!(opts("bench", &bad).is_err());
        // Commands that boot no Linux refuse both options.
        assert!(opts("qemu-run", &["--linux-kernel", "debian"]).is_err());
        assert!(opts("test", &["--linux-cmdline", ""]).is_err());
    }
}
