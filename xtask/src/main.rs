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
//! cargo xtask mmview   [--board B] [--program NAME | --init PATH] [--out FILE.svg] [-- ARGS...]
//! cargo xtask fuzz     [--board B] [--seed S] [--from R] [--iters N] [--checked] [--stall SECS] [--timeout SECS]
//! cargo xtask miri     [--tree-borrows] [-- CARGO-TEST-ARGS...]
//! ```
//!
//! `cargo xtask help COMMAND` (or `COMMAND --help`) prints a command's
//! options. A usage error exits with status 2, a failed step with 1.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod console;
mod contpte;
mod cpio;
mod cprogs;
mod elf;
mod errno;
mod fuzz;
mod image;
mod lint;
mod linux;
mod miri;
mod mmview;
mod plot;
mod qemu;
mod records;
mod test;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use build::Arch;
use qemu::{Accel, Board};

/// A failed step, reported to the user.
type Result<T> = std::result::Result<T, String>;

/// Folium's build, run, test, bench and image tool.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true,
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, then boot one board with the serial console on this terminal
    /// (with no arguments: virt, running `bench --quick`)
    #[command(visible_alias = "run")]
    QemuRun(RunArgs),
    /// The lint gate, host unit tests, then every board's in-guest self-tests
    Test(TestArgs),
    /// rustfmt, clippy (warnings denied) on every crate for each target it
    /// is built for, rustdoc (warnings denied); `test` runs it first
    Lint,
    /// The in-guest benchmarks (bench-alloc, then bench: sys, fork, fault,
    /// munmap); prints the tables and Folium beside Linux, writes
    /// results.json and SVG plots
    Bench(BenchArgs),
    /// Build the kernel
    Build(BuildArgs),
    /// Write an SD-card boot folder for a Raspberry Pi
    Image(ImageArgs),
    /// Boot Linux on virt or q35 with the benchmark as init
    QemuLinux(QemuLinuxArgs),
    /// Boot a program that prints snapshots of its page tables (default
    /// mmdemo: folios, fork, copy-on-write); print their ptdump and draw
    /// the address space as an SVG
    Mmview(MmviewArgs),
    /// A long seeded run of the syscall fuzzer on one board; prints the
    /// seed and round of any failure (panic, hang, audit, leaked pages)
    Fuzz(FuzzArgs),
    /// The mm crate's host tests under Miri (nightly, installed if
    /// missing; not part of `test`)
    Miri(MiriArgs),
}

/// `fuzz`'s options.
#[derive(Args, Clone)]
pub struct FuzzArgs {
    /// The board to boot
    #[arg(long, value_enum, default_value = "virt")]
    pub board: Board,
    /// The run's seed
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first round (a failure's round replays alone with --iters 1)
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Rounds (one child each, about 120 syscalls on average)
    #[arg(long, default_value_t = 1000)]
    pub iters: u64,
    /// Seconds without a console line that count as a hang
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub stall: u64,
    /// Seconds the whole run may take
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    pub timeout: u64,
    /// Guest RAM, e.g. 1G
    #[arg(long, short = 'm', value_name = "SIZE")]
    pub mem: Option<String>,
    /// CPUs, 1 to 8 (virt and q35; default 1): QEMU's -smp. The Pi boards
    /// always have their four
    #[arg(long, value_name = "N")]
    pub smp: Option<u32>,
    /// Print the whole console, not only progress
    #[arg(long)]
    pub echo: bool,
    /// Boot the kernel built with debug assertions (profile `checked`)
    #[arg(long)]
    pub checked: bool,
}

/// How QEMU runs the guest: CPU model, accelerator, RAM.
#[derive(Args, Clone, Default)]
pub struct Machine {
    /// QEMU's -cpu (virt: cortex-a72 by default; try max)
    #[arg(long, value_name = "NAME")]
    pub cpu: Option<String>,
    /// The accelerator (default tcg; qemu-run on q35 defaults to kvm on
    /// hosts whose CPU has vmx/svm)
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// Guest RAM, e.g. 512M, 2G (fixed on the Pi boards)
    #[arg(long, short = 'm', value_name = "SIZE")]
    pub mem: Option<String>,
    /// CPUs, 1 to 8 (virt and q35; default 1): QEMU's -smp. The Pi boards
    /// always have four
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub smp: Option<u32>,
}

/// What to add to QEMU's command line, and whether to show it.
#[derive(Args, Clone, Default)]
pub struct QemuExtra {
    /// A word appended to QEMU's command line (repeatable), e.g.
    /// `--qemu-arg=-d --qemu-arg=int`
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_arg: Vec<String>,
    /// Print each QEMU command line, shell-quoted, before running it
    #[arg(long)]
    pub print_qemu: bool,
}

/// `qemu-run`'s options.
#[derive(Args, Clone, Default)]
pub struct RunArgs {
    /// The board to boot
    #[arg(long, value_enum, default_value = "virt")]
    pub board: Board,
    /// QEMU's -cpu, the accelerator, and guest RAM
    #[command(flatten)]
    pub machine: Machine,
    /// Run your own static Linux ELF under init (handed over as an
    /// initrd); the words after `--` become its arguments
    #[arg(long, value_name = "PATH")]
    pub init: Option<PathBuf>,
    /// Print the benchmark's JSON records here rather than into
    /// out/qemu-run/BOARD-bench.jsonl
    #[arg(long)]
    pub json: bool,
    /// Start QEMU's gdb server on :1234 and wait for the debugger (prints
    /// the gdb command to use)
    #[arg(long)]
    pub gdb: bool,
    /// --qemu-arg and --print-qemu
    #[command(flatten)]
    pub qemu: QemuExtra,
    /// The kernel command line (e.g. `-- test`, `-- init=utest`,
    /// `-- bench-alloc`), or with --init the program's arguments
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `test`'s options.
#[derive(Args, Clone, Default)]
pub struct TestArgs {
    /// A board to test (repeatable; default all)
    #[arg(long = "board", value_enum, value_name = "BOARD")]
    pub boards: Vec<Board>,
    /// Seconds each guest boot may take
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// CPUs (1 to 8) for every virt and q35 boot that does not choose its
    /// own count (default: 1, and 4 for the boots that check bring-up)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub smp: Option<u32>,
    /// --qemu-arg and --print-qemu
    #[command(flatten)]
    pub qemu: QemuExtra,
}

/// `bench`'s options.
#[derive(Args, Clone, Default)]
pub struct BenchArgs {
    /// A board to measure (repeatable; default virt and q35)
    #[arg(long = "board", value_enum, value_name = "BOARD")]
    pub boards: Vec<Board>,
    /// QEMU's -cpu, the accelerator, and guest RAM (default twice --size
    /// plus 512 MiB)
    #[command(flatten)]
    pub machine: Machine,
    /// MiB per repetition (an even number, at least 2); guest RAM is
    /// twice this plus 512 MiB unless --mem says otherwise
    #[arg(long, value_name = "MIB", default_value_t = bench::DEFAULT_SIZE_MIB, value_parser = parse_size)]
    pub size: u64,
    /// Repetitions per row (1 to 1000)
    #[arg(long, value_name = "N", default_value_t = bench::DEFAULT_ITERS,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub iters: u32,
    /// Where results.json and the plots go (default out/bench)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seconds each guest boot may take
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
    /// Count guest instructions instead of time: QEMU's virtual clock
    /// advances 1 ns per instruction (`-icount shift=0,sleep=off`), so
    /// every figure is the same in every run (TCG only)
    #[arg(long)]
    pub icount: bool,
    /// --qemu-arg and --print-qemu
    #[command(flatten)]
    pub qemu: QemuExtra,
    /// Boot this Linux too, same QEMU, same bench binary: an arm64 Image
    /// (raw or gzip-compressed), an x86 bzImage, or `debian`
    #[arg(long, value_name = "PATH|debian")]
    pub linux_kernel: Option<String>,
    /// (one string) Linux's kernel parameters after xtask's console
    /// settings, instead of `init_on_alloc=0 mitigations=off nokaslr`
    /// ("" for none)
    #[arg(long, value_name = "ARGS", requires = "linux_kernel", value_parser = parse_linux_params)]
    pub linux_cmdline: Option<String>,
}

/// `build`'s options.
#[derive(Args, Clone, Default)]
pub struct BuildArgs {
    /// The architecture to build (default both)
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
}

/// `image`'s options.
#[derive(Args, Clone)]
pub struct ImageArgs {
    /// The Pi to write the folder for: rpi4 or rpi3
    #[arg(long, value_enum)]
    pub board: Board,
    /// The folder (default out/rpi4 or out/rpi3)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `qemu-linux`'s options.
#[derive(Args, Clone, Default)]
pub struct QemuLinuxArgs {
    /// The board: virt or q35
    #[arg(long, value_enum, default_value = "virt")]
    pub board: Board,
    /// QEMU's -cpu, the accelerator, and guest RAM (default 1G)
    #[command(flatten)]
    pub machine: Machine,
    /// Seconds the boot may take
    #[arg(long, value_name = "SECS", default_value_t = 1200)]
    pub timeout: u64,
    /// --qemu-arg and --print-qemu
    #[command(flatten)]
    pub qemu: QemuExtra,
    /// The Linux to boot: an arm64 Image (raw or gzip-compressed), an x86
    /// bzImage, or `debian`
    #[arg(long, value_name = "PATH|debian")]
    pub linux_kernel: String,
    /// As for bench
    #[arg(long, value_name = "ARGS", value_parser = parse_linux_params)]
    pub linux_cmdline: Option<String>,
    /// The benchmark's arguments
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `mmview`'s options.
#[derive(Args, Clone, Default)]
pub struct MmviewArgs {
    /// The board to boot
    #[arg(long, value_enum, default_value = "virt")]
    pub board: Board,
    /// QEMU's -cpu, the accelerator (default tcg), and guest RAM
    #[command(flatten)]
    pub machine: Machine,
    /// A program built into the image that prints snapshots (default
    /// mmdemo)
    #[arg(long, value_name = "NAME", conflicts_with = "init")]
    pub program: Option<String>,
    /// Your own static Linux ELF instead (handed over as an initrd), which
    /// prints the snapshot markers itself
    #[arg(long, value_name = "PATH")]
    pub init: Option<PathBuf>,
    /// Boot nothing: read the snapshots from this saved console output
    /// (of any board, hardware too)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["init", "program"])]
    pub console: Option<PathBuf>,
    /// The SVG to write (default out/mmview/PROGRAM-BOARD.svg)
    #[arg(long, value_name = "FILE.svg")]
    pub out: Option<PathBuf>,
    /// Seconds the boot may take
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// --qemu-arg and --print-qemu
    #[command(flatten)]
    pub qemu: QemuExtra,
    /// The program's arguments
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `miri`'s options.
#[derive(Args, Clone, Default)]
pub struct MiriArgs {
    /// Check with Tree Borrows instead of Stacked Borrows
    #[arg(long)]
    pub tree_borrows: bool,
    /// Passed on to `cargo miri test -p folium-mm`, e.g. `-- --test aspace`
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

fn parse_size(v: &str) -> std::result::Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&m: &u64| m >= 2 && m % 2 == 0)
        .ok_or_else(|| "an even number of MiB, at least 2".to_string())
}

/// `--linux-cmdline` is checked as it is parsed: words that would break
/// xtask's plumbing are refused before anything builds or boots.
fn parse_linux_params(v: &str) -> std::result::Result<String, String> {
    linux::params(Some(v)).map(|_| v.to_string())
}

/// Runs the command; its exit status.
fn run(cli: Cli) -> Result<u8> {
    let status = |ok: bool| u8::from(!ok);
    let print = match &cli.command {
        Command::QemuRun(a) => a.qemu.print_qemu,
        Command::Test(a) => a.qemu.print_qemu,
        Command::Bench(a) => a.qemu.print_qemu,
        Command::QemuLinux(a) => a.qemu.print_qemu,
        Command::Mmview(a) => a.qemu.print_qemu,
        _ => false,
    };
    qemu::PRINT_COMMANDS.store(print, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Command::QemuRun(a) => qemu::run(&a),
        Command::Test(a) => test::run(&a).map(status),
        Command::Lint => lint::run().map(status),
        Command::Bench(a) => bench::run(&a).map(status),
        Command::QemuLinux(a) => linux::run(&a).map(status),
        Command::Build(a) => {
            let arches = match a.arch {
                Some(a) => vec![a],
                None => vec![Arch::Aarch64, Arch::X86_64],
            };
            for a in arches {
                let img = build::kernel(a)?;
                println!("built {}", img.display());
            }
            Ok(0)
        }
        Command::Image(a) => image::run(&a).map(status),
        Command::Mmview(a) => mmview::run(&a),
        Command::Fuzz(a) => fuzz::run(&a).map(status),
        Command::Miri(a) => miri::run(&a).map(status),
    }
}

/// Refuses to run a binary built from another checkout. Two checkouts
/// sharing one `CARGO_TARGET_DIR` share `release/xtask`, and cargo, finding
/// this checkout's own build up to date, runs whichever was linked last:
/// that one's code would build and test the other tree.
fn check_checkout() -> std::result::Result<(), String> {
    let built = env!("CARGO_MANIFEST_DIR");
    match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(now) if now != built => Err(format!(
            "this xtask was built from {built}, not {now} (another checkout shares the \
             target directory); rebuild it here with `touch xtask/src/main.rs`, or give \
             each checkout its own CARGO_TARGET_DIR"
        )),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    if let Err(e) = check_checkout() {
        eprintln!("xtask: {e}");
        return ExitCode::FAILURE;
    }
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> std::result::Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).map(|c| c.command)
    }

    fn bench(args: &[&str]) -> std::result::Result<BenchArgs, clap::Error> {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        match parse(&all)? {
            Command::Bench(b) => Ok(b),
            _ => unreachable!(),
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn icount_is_a_bench_switch() {
        assert!(bench(&["--icount"]).unwrap().icount);
        assert!(!bench(&[]).unwrap().icount);
        assert!(bench(&["--icount=yes"]).is_err());
    }

    #[test]
    fn linux_cmdline_is_one_string_and_needs_a_linux_kernel() {
        let o = bench(&[
            "--linux-kernel",
            "debian",
            "--linux-cmdline",
            "kpti=0 nokaslr",
        ])
        .unwrap();
        assert_eq!(o.linux_cmdline.as_deref(), Some("kpti=0 nokaslr"));
        let Ok(Command::QemuLinux(o)) =
            parse(&["qemu-linux", "--linux-kernel", "debian", "--", "fork"])
        else {
            panic!("qemu-linux with a kernel and arguments is refused");
        };
        assert_eq!(o.linux_cmdline, None);
        assert_eq!(o.args, ["fork"]);
        let e = bench(&["--linux-cmdline", "nokaslr"]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--linux-kernel"), "{e}");
        assert!(parse(&["qemu-linux", "--linux-cmdline", "x"]).is_err());
        assert!(bench(&["--linux-kernel", "debian", "--linux-cmdline"]).is_err());
        // An empty string: Debian's own defaults.
        assert_eq!(
            bench(&["--linux-kernel", "x", "--linux-cmdline", ""])
                .unwrap()
                .linux_cmdline
                .as_deref(),
            Some("")
        );
        // Refused words are refused before anything boots.
        let bad = ["--linux-kernel", "debian", "--linux-cmdline", "init=/sh"];
        assert_eq!(
            bench(&bad).err().unwrap().kind(),
            ErrorKind::ValueValidation
        );
        // Commands that boot no Linux refuse both options.
        for (cmd, opt) in [("qemu-run", "--linux-kernel"), ("test", "--linux-cmdline")] {
            let e = parse(&[cmd, opt, "debian"]).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{cmd} {opt}");
        }
    }

    #[test]
    fn options_are_per_command_and_usage_errors_exit_2() {
        // An option a command does not take is an error naming the command.
        let e = parse(&["lint", "--board", "virt"]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert_eq!(e.exit_code(), 2);
        assert!(e.render().to_string().contains("cargo xtask lint"), "{e}");
        assert!(parse(&["test", "--size", "64"]).is_err());
        assert!(parse(&["build", "--iters", "3"]).is_err());
        // qemu-run boots one board.
        assert!(parse(&["qemu-run", "--board", "virt", "--board", "q35"]).is_err());
        // Every command has --help.
        for cmd in [
            "qemu-run",
            "run",
            "test",
            "lint",
            "bench",
            "build",
            "image",
            "qemu-linux",
            "mmview",
            "fuzz",
            "miri",
        ] {
            let e = parse(&[cmd, "--help"]).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{cmd}");
            assert_eq!(e.exit_code(), 0);
        }
    }

    #[test]
    fn every_option_keeps_its_meaning() {
        let Ok(Command::QemuRun(r)) = parse(&[
            "qemu-run", "--board", "q35", "--cpu", "max", "--accel", "kvm", "-m", "1G", "--init",
            "./prog", "--", "a", "--b",
        ]) else {
            panic!("qemu-run refused its options");
        };
        assert_eq!(r.board, Board::Q35);
        assert_eq!(r.machine.cpu.as_deref(), Some("max"));
        assert_eq!(r.machine.accel, Some(Accel::Kvm));
        assert_eq!(r.machine.mem.as_deref(), Some("1G"));
        assert_eq!(r.init, Some(PathBuf::from("./prog")));
        assert_eq!(r.args, ["a", "--b"]);
        let Ok(Command::QemuRun(r)) = parse(&[
            "qemu-run",
            "--gdb",
            "--print-qemu",
            "--qemu-arg",
            "-d",
            "--qemu-arg=int,cpu_reset",
        ]) else {
            panic!("qemu-run refused the debugging options");
        };
        assert!(r.gdb && r.qemu.print_qemu);
        assert_eq!(r.qemu.qemu_arg, ["-d", "int,cpu_reset"]);
        assert!(parse(&["test", "--qemu-arg", "-d", "--print-qemu"]).is_ok());
        assert!(parse(&["bench", "--qemu-arg=-d", "--print-qemu"]).is_ok());
        assert!(
            parse(&["test", "--gdb"]).is_err(),
            "test boots many guests at once"
        );
        let Ok(Command::QemuRun(r)) = parse(&["run"]) else {
            panic!("run is qemu-run");
        };
        assert_eq!(r.board, Board::Virt);
        assert!(r.args.is_empty());
        // Boards by their other names.
        let b = bench(&[
            "--board", "virt", "--board", "x86", "--size", "16", "--iters", "2",
        ]);
        let b = b.unwrap();
        assert_eq!(b.boards, [Board::Virt, Board::Q35]);
        assert_eq!((b.size, b.iters), (16, 2));
        let b = bench(&[]).unwrap();
        assert_eq!(
            (b.size, b.iters),
            (bench::DEFAULT_SIZE_MIB, bench::DEFAULT_ITERS)
        );
        for bad in [
            &["--size", "3"][..],
            &["--size", "0"],
            &["--iters", "0"],
            &["--iters", "1001"],
            &["--board", "vax"],
        ] {
            assert!(bench(bad).is_err(), "{bad:?}");
        }
        let Ok(Command::Image(i)) = parse(&["image", "--board", "rpi4", "--out", "/tmp/x"]) else {
            panic!("image refused its options");
        };
        assert_eq!(i.board, Board::Raspi4b);
        assert!(parse(&["image"]).is_err(), "image needs --board");
        let Ok(Command::Build(b)) = parse(&["build", "--arch", "arm64"]) else {
            panic!("build refused --arch");
        };
        assert_eq!(b.arch, Some(Arch::Aarch64));
        let Ok(Command::Test(t)) = parse(&["test", "--board", "pi3", "--timeout", "9"]) else {
            panic!("test refused its options");
        };
        assert_eq!((t.boards.as_slice(), t.timeout), (&[Board::Raspi3b][..], 9));
    }

    #[test]
    fn mmview_takes_a_program_or_an_init_and_an_out_file() {
        let Ok(Command::Mmview(m)) = parse(&["mmview"]) else {
            panic!("mmview with no options is refused");
        };
        assert_eq!(
            (m.board, m.program.as_deref(), m.out.as_ref()),
            (Board::Virt, None, None)
        );
        let Ok(Command::Mmview(m)) = parse(&[
            "mmview",
            "--board",
            "q35",
            "--program",
            "mmdemo",
            "--out",
            "/tmp/x.svg",
            "--",
            "a",
        ]) else {
            panic!("mmview refused its options");
        };
        assert_eq!(m.board, Board::Q35);
        assert_eq!(m.program.as_deref(), Some("mmdemo"));
        assert_eq!(m.out, Some(PathBuf::from("/tmp/x.svg")));
        assert_eq!(m.args, ["a"]);
        // One program: a built-in one or your own, not both.
        let e = parse(&["mmview", "--program", "a", "--init", "./b"])
            .err()
            .unwrap();
        assert_eq!((e.kind(), e.exit_code()), (ErrorKind::ArgumentConflict, 2));
        let Ok(Command::Mmview(m)) = parse(&["mmview", "--console", "log.txt"]) else {
            panic!("mmview refused --console");
        };
        assert_eq!(m.console, Some(PathBuf::from("log.txt")));
        assert!(parse(&["mmview", "--console", "a", "--program", "b"]).is_err());
        let e = parse(&["mmview", "--size", "4"]).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["mmview", "--board", "vax"]).is_err());
    }
}
