//! `cargo xtask bench`: boots each benchmark board with Folium's in-guest
//! benchmarks (the kernel's page-allocator benchmark, then the user-space
//! `bench`), and with `--linux-kernel` boots a real Linux in the same QEMU
//! configuration with the same `bench` binary as its init. Shows the
//! guests' progress and tables as they print, then prints Folium and
//! Linux side by side with the ratio per row, and writes `results.json`
//! and SVG plots into the output directory.
//!
//! ```text
//! cargo xtask bench [--board virt|q35]... [--accel tcg|kvm] [--cpu C] [--mem M]
//!                   [--size MIB] [--iters N] [--out DIR]
//!                   [--linux-kernel PATH|debian [--linux-cmdline ARGS]]
//! ```
//!
//! Linux boots with `init_on_alloc=0 mitigations=off nokaslr` unless
//! `--linux-cmdline` replaces those words ([`crate::linux::params`]); each
//! run's command line heads its side-by-side table and is stored with its
//! records in `results.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::build::{self, Arch};
use crate::plot::{self, Bar, Labels, Point, Series};
use crate::qemu::{self, Accel, Board, Spec};
use crate::records::{self, Object, Record};
use crate::test::boot;
use crate::{BenchArgs, Result};

/// Memory per repetition when `--size` is not given (the size the
/// published Linux results use).
pub const DEFAULT_SIZE_MIB: u64 = 1024;
/// Repetitions per row when `--iters` is not given.
pub const DEFAULT_ITERS: u32 = 5;

/// One kernel's run of the benchmark on one board (in `results.json`:
/// these fields, then its records as `results`).
#[derive(Serialize)]
struct Run {
    #[serde(serialize_with = "board_name")]
    board: Board,
    /// `folium` or `linux`.
    kernel: &'static str,
    /// The kernel's release string, as the guest's uname reported it.
    release: String,
    cpu: String,
    #[serde(skip)]
    accel: Accel,
    /// The kernel command line the run booted with.
    cmdline: String,
    #[serde(rename = "results")]
    records: Vec<Record>,
}

/// `bench-alloc`'s records on one board.
#[derive(Serialize)]
struct AllocRun {
    #[serde(serialize_with = "board_name")]
    board: Board,
    results: Vec<Object>,
}

/// Everything measured: `results.json`.
#[derive(Serialize)]
struct Results<'a> {
    /// `tcg` or `kvm`.
    accel: String,
    size_mib: u64,
    iterations: u32,
    date: String,
    qemu: String,
    /// True if QEMU ran with `-icount shift=0` (`--icount`): every time
    /// is then guest instructions at 1 ns each.
    icount: bool,
    runs: &'a [Run],
    alloc: &'a [AllocRun],
}

/// The QEMU words `--icount` adds: the virtual clock advances exactly one
/// nanosecond per guest instruction and never with the host's time, so a
/// benchmark's "time" is the instructions it ran, the same in every run.
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0,sleep=off"];

fn board_name<S: serde::Serializer>(b: &Board, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(b.name())
}

/// Guest RAM for a run of `size_mib` MiB: the region, a forked child's
/// page tables and the kernel, with room to spare.
fn guest_mem(size_mib: u64) -> String {
    format!("{}M", (size_mib * 2 + 512).max(1024))
}

pub fn run(o: &BenchArgs) -> Result<bool> {
    let boards = if o.boards.is_empty() {
        vec![Board::Virt, Board::Q35]
    } else {
        o.boards.clone()
    };
    let (size, iters) = (o.size, o.iters);
    if o.icount && o.machine.accel == Some(Accel::Kvm) {
        return Err(
            "bench: --icount counts instructions under TCG; it cannot go with --accel kvm".into(),
        );
    }
    // The Pi boards' RAM is fixed: the region and a forked child's tables
    // must fit beside the kernel.
    for b in &boards {
        let ram = match b {
            Board::Raspi3b => Some(1024),
            Board::Raspi4b => Some(2048),
            _ => None,
        };
        if let Some(ram) = ram.filter(|&r| size * 2 + 256 > r) {
            return Err(format!(
                "{} has {ram} MiB of RAM: use --size {} or less",
                b.name(),
                (ram - 256) / 2 / 2 * 2
            ));
        }
        if o.linux_kernel.is_some() && !matches!(b, Board::Virt | Board::Q35) {
            return Err(format!(
                "--linux-kernel runs on virt and q35, not {}",
                b.name()
            ));
        }
    }
    if let Some(m) = &o.machine.mem {
        for b in &boards {
            b.check_mem(m)?;
        }
    }
    // Each Linux image is found (fetched, for `debian`) and checked to be
    // one the board's QEMU boots before the first boot of the run.
    let mut linux_images: Vec<(Arch, PathBuf)> = Vec::new();
    if let Some(lk) = &o.linux_kernel {
        for b in &boards {
            if !linux_images.iter().any(|(a, _)| *a == b.arch()) {
                let image = crate::linux::resolve_kernel(lk, b.arch())
                    .map_err(|e| format!("--linux-kernel: {e}"))?;
                linux_images.push((b.arch(), image));
            }
        }
    }
    let out_dir = o
        .out
        .clone()
        .unwrap_or_else(|| build::root().join("out").join("bench"));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    qemu::ensure_installed()?;
    let timeout = Duration::from_secs(o.timeout);
    let linux_params = crate::linux::params(o.linux_cmdline.as_deref())?;
    if o.icount {
        println!(
            "bench: --icount: every time below is guest instructions at 1 ns each (QEMU -icount \
             shift=0): the same in every run, and blind to what instructions cost (memory, TLB)"
        );
    }
    let started = Instant::now();
    let per_board = 2 + usize::from(o.linux_kernel.is_some());
    let total = boards.len() * per_board;
    let mut step = 0;
    let mut announce = |what: &str| {
        step += 1;
        println!(
            "== [{step}/{total}] {what} ({} elapsed)",
            minutes(started.elapsed())
        );
    };
    let mut ok = true;
    let mut runs: Vec<Run> = Vec::new();
    let mut alloc: Vec<AllocRun> = Vec::new();
    for &board in &boards {
        let arch = board.arch();
        let kernel = build::kernel(arch)?;
        let mut spec = Spec::new(board, "bench-alloc");
        spec.qemu_args = o.qemu.qemu_arg.clone();
        if o.icount {
            spec.qemu_args.extend(ICOUNT_ARGS.map(String::from));
        }
        spec.cpu = o.machine.cpu.clone();
        spec.smp = o.machine.smp;
        if let Some(a) = o.machine.accel {
            spec.accel = a;
        }
        let fixed_mem = matches!(board, Board::Raspi3b | Board::Raspi4b);
        if !fixed_mem {
            spec.mem = Some(o.machine.mem.clone().unwrap_or_else(|| guest_mem(size)));
        }

        announce(&format!("bench-alloc on {}", spec.label()));
        let r = boot(&spec, &kernel, timeout, true)?;
        match (
            r.exit == Some(board.exit_codes().0) && !r.timed_out,
            records::parse_lines::<Object>(&r.lines),
        ) {
            (true, Ok(results)) if !results.is_empty() => alloc.push(AllocRun { board, results }),
            (_, Err(e)) => {
                println!("bench-alloc on {}: {e}", spec.label());
                ok = false;
            }
            _ => {
                println!("bench-alloc on {} failed ({})", spec.label(), ended(&r));
                ok = false;
            }
        }

        let args = format!("--size {size} --iters {iters}");
        spec.cmdline = format!("init=bench {args}");
        announce(&format!("Folium on {}: bench {args}", spec.label()));
        let r = boot(&spec, &kernel, timeout, true)?;
        match records::parse_lines::<Record>(&r.lines) {
            Ok(recs) if !recs.is_empty() && r.exit == Some(board.exit_codes().0) => {
                runs.push(Run {
                    board,
                    kernel: "folium",
                    release: recs[0].kernel.clone(),
                    cpu: spec.cpu_name(),
                    accel: spec.accel,
                    cmdline: spec.cmdline.clone(),
                    records: recs,
                })
            }
            Ok(_) => {
                println!("bench on Folium/{} failed ({})", spec.label(), ended(&r));
                ok = false;
            }
            Err(e) => {
                println!("bench on Folium/{}: {e}", spec.label());
                ok = false;
            }
        }

        if let Some((_, image)) = linux_images.iter().find(|(a, _)| *a == arch) {
            announce(&format!("Linux on {}: bench {args}", spec.label()));
            let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
            let linux = crate::linux::BenchBoot {
                kernel: image,
                params: &linux_params,
                args: &argv,
                timeout,
            };
            match linux_run(&spec, &linux) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    println!("bench on Linux/{}: {e}", spec.label());
                    ok = false;
                }
            }
        }
    }
    let date = today();
    let qemu_version = qemu::version(Arch::Aarch64);
    for &board in &boards {
        let on: Vec<&Run> = runs.iter().filter(|r| r.board == board).collect();
        if !on.is_empty() {
            side_by_side(board, &on);
            plots(&out_dir, &on, &conditions(&on, &qemu_version, &date))?;
        }
    }
    let results = Results {
        accel: o.machine.accel.unwrap_or(Accel::Tcg).name().to_lowercase(),
        size_mib: size,
        iterations: iters,
        date,
        qemu: qemu_version,
        icount: o.icount,
        runs: &runs,
        alloc: &alloc,
    };
    let path = out_dir.join("results.json");
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} and the plots in {} ({} total)",
        path.display(),
        out_dir.display(),
        minutes(started.elapsed())
    );
    Ok(ok)
}

/// How a guest run ended, in words.
fn ended(r: &crate::test::GuestRun) -> String {
    match (r.timed_out, r.exit) {
        (true, _) => "timed out".into(),
        (false, Some(c)) => format!("QEMU exit status {c}"),
        (false, None) => "QEMU killed by a signal".into(),
    }
}

/// Now, as `2025-01-31T14:05:09Z`.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The conditions of a board's runs, for the plots' subtitles: board,
/// CPU, accelerator, QEMU version and date (to the minute).
fn conditions(runs: &[&Run], qemu: &str, date: &str) -> String {
    let Some(r) = runs.first() else {
        return String::new();
    };
    let date = match date.get(..16) {
        Some(minute) => format!("{} UTC", minute.replace('T', " ")),
        None => date.to_string(),
    };
    format!(
        "{}, CPU {}, {}, {qemu}, {date}",
        r.board.name(),
        r.cpu,
        r.accel.name()
    )
}

fn minutes(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

/// Boots Linux with `bench` as init on `spec`'s machine (2 GiB of RAM
/// unless it says otherwise) and collects its records.
fn linux_run(spec: &Spec, b: &crate::linux::BenchBoot<'_>) -> Result<Run> {
    let mut machine = spec.clone();
    machine.mem.get_or_insert_with(|| "2G".into());
    let r = crate::linux::boot_bench(&machine, b)?;
    let recs = records::parse_lines::<Record>(&r.lines)?;
    if recs.is_empty() {
        return Err(format!(
            "no results (timed out {}); last lines:\n{}",
            r.timed_out,
            r.lines
                .iter()
                .rev()
                .take(15)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(Run {
        board: spec.board,
        kernel: "linux",
        release: recs[0].kernel.clone(),
        cpu: spec.cpu_name(),
        accel: spec.accel,
        cmdline: r.cmdline,
        records: recs,
    })
}

/// A time in ns as `12.34 ms`, `567.8 us` or `43 ns` (munmap's per-4 KiB
/// medians of large folios are tens of ns: in us they all read 0.0).
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Prints one table per board: every Folium row, and where Linux ran the
/// same row its median and the ratio Folium/Linux.
fn side_by_side(board: Board, runs: &[&Run]) {
    let folium = runs.iter().find(|r| r.kernel == "folium");
    let linux = runs.iter().find(|r| r.kernel == "linux");
    let Some(f) = folium else { return };
    println!(
        "== {} (cpu {}): Folium {}{}",
        board.name(),
        f.cpu,
        f.release,
        linux.map_or(String::new(), |l| format!(" vs Linux {}", l.release))
    );
    println!("  Folium command line: {}", f.cmdline);
    if let Some(l) = linux {
        println!("  Linux command line:  {}", l.cmdline);
    }
    println!(
        "  {:<15} {:<16} {:>14} {:>14} {:>14} {:>8}  check",
        "bench", "case", "unit", "Folium", "Linux", "F/L"
    );
    for r in &f.records {
        let (b, c) = (&r.bench, &r.case);
        let unit = format!("median/{}", r.per_unit);
        let fv = Some(r.per_unit_ns());
        let lv = linux
            .and_then(|l| l.records.iter().find(|x| x.bench == *b && x.case == *c))
            .map(Record::per_unit_ns);
        let ratio = match (fv, lv) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "  {b:<15} {c:<16} {unit:>14} {:>14} {:>14} {ratio:>8}  {}",
            fv.map_or("-".into(), time),
            lv.map_or("-".into(), time),
            r.check
        );
    }
    println!(
        "== {}: arm64 contiguous PTEs against their goals",
        board.name()
    );
    for line in crate::contpte::summary(&f.records, linux.map(|l| &l.records[..])) {
        println!("{line}");
    }
}

/// The series name of a run's rows in `mode`: `Folium batched`, `Folium
/// per-PTE`, or the kernel alone (`Linux 6.12.38`) where it has one mode.
fn series_name(r: &Run, mode: &str) -> String {
    let kernel = if r.kernel == "folium" {
        "Folium".to_string()
    } else {
        format!("Linux {}", r.release.split('-').next().unwrap_or(""))
    };
    let two_modes = r.records.iter().any(|x| x.mode() == "per-pte");
    match mode {
        "per-pte" => format!("{kernel} per-PTE"),
        _ if two_modes => format!("{kernel} batched"),
        _ => kernel,
    }
}

/// The mode a row was measured in, as a series sees it: `per-pte`, or
/// "" for the kernel's ordinary way (batched on Folium, Linux's own).
fn series_mode(x: &Record) -> &'static str {
    if x.mode() == "per-pte" { "per-pte" } else { "" }
}

/// Writes `munmap-<board>.svg` and `fault-<board>.svg` (median time per
/// 4 KiB against folio size), `fork-<board>.svg` (bars) and, where the
/// contpte fork regression ran, `contpte-<board>.svg` (bars) for every
/// kernel that ran on the board; `conditions` is their subtitle.
fn plots(dir: &Path, runs: &[&Run], conditions: &str) -> Result<()> {
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let b = first.board.name();
    let size = runs
        .iter()
        .flat_map(|r| r.records.iter())
        .map(|x| x.size_mib)
        .find(|&s| s > 0)
        .unwrap_or(0);
    // One series per kernel and mode, in the order the rows came.
    let series = |bench: &str| -> Vec<Series> {
        let mut out: Vec<Series> = Vec::new();
        for r in runs {
            for x in r
                .records
                .iter()
                .filter(|x| x.bench == bench && x.folio_kb > 0)
            {
                let name = series_name(r, series_mode(x));
                let p = Point {
                    x: x.folio_kb as f64,
                    y: x.per_unit_ns(),
                    err: x.stddev_per_unit_ns(),
                };
                match out.iter_mut().find(|s| s.name == name) {
                    Some(s) => s.points.push(p),
                    None => out.push(Series {
                        name,
                        points: vec![p],
                    }),
                }
            }
        }
        out
    };
    let write = |file: String, svg: String| {
        let p = dir.join(file);
        std::fs::write(&p, svg).map_err(|e| format!("{}: {e}", p.display()))
    };
    let per_4k = "median ns per 4 KiB (error bars: standard deviation)";
    let title = format!("munmap() of {size} MiB on {b}: time per 4 KiB, by folio size");
    let labels = Labels {
        title: &title,
        subtitle: conditions,
        x: "folio size",
        y: per_4k,
    };
    write(
        format!("munmap-{b}.svg"),
        plot::line_chart(&labels, &series("munmap"))?,
    )?;
    let title = format!("Populating {size} MiB on {b}: time per 4 KiB, by folio size");
    let labels = Labels {
        title: &title,
        ..labels
    };
    write(
        format!("fault-{b}.svg"),
        plot::line_chart(&labels, &series("fault"))?,
    )?;
    let bars: Vec<Bar> = runs
        .iter()
        .flat_map(|r| {
            r.records
                .iter()
                .filter(|x| x.bench == "fork")
                .map(move |x| Bar {
                    group: x
                        .case
                        .strip_suffix("/per-pte")
                        .unwrap_or(&x.case)
                        .to_string(),
                    series: series_name(r, series_mode(x)),
                    value: x.median_ns / 1e6,
                    err: x.stddev_ns / 1e6,
                })
        })
        .collect();
    let title = format!("fork() with {size} MiB populated on {b}");
    let labels = Labels {
        title: &title,
        subtitle: conditions,
        x: "",
        y: "median time of one fork, ms (error bars: standard deviation)",
    };
    write(format!("fork-{b}.svg"), plot::bar_chart(&labels, &bars)?)?;
    // The contpte fork regression, where the board ran it: one group per
    // mode (contpte off, on with per-PTE write-protect, on), Linux in on.
    let bars: Vec<Bar> = runs
        .iter()
        .flat_map(|r| {
            r.records
                .iter()
                .filter(|x| x.bench == "contpte-regress")
                .map(move |x| Bar {
                    group: format!("contpte {}", x.case),
                    series: series_name(r, ""),
                    value: x.median_ns / 1e6,
                    err: x.stddev_ns / 1e6,
                })
        })
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    let title = format!("fork() of {size} MiB of 64 KiB folios on {b}, contpte off and on");
    let labels = Labels {
        title: &title,
        ..labels
    };
    write(format!("contpte-{b}.svg"), plot::bar_chart(&labels, &bars)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_keep_their_digits_at_every_scale() {
        assert_eq!(super::time(27_880_000.0), "27.88 ms");
        assert_eq!(super::time(5_200.0), "5.2 us");
        assert_eq!(super::time(43.4), "43 ns");
    }

    use super::*;
    use crate::plot::check::{filled, lines, texts};

    fn rec(bench: &str, case: &str, kb: u64, mode: &str, ms: u32) -> Record {
        serde_json::from_str(&format!(
            r#"{{"bench":"{bench}","case":"{case}","folio_kb":{kb},"size_mib":16,"iterations":3,"median_ns":{},"mean_ns":1,"stddev_ns":1000,"min_ns":1,"max_ns":1,"per":1,"per_unit":"fork","check":"ok","kernel":"k","mode":"{mode}"}}"#,
            ms * 1_000_000
        ))
        .unwrap()
    }

    fn run(kernel: &'static str, release: &str, records: Vec<Record>) -> Run {
        Run {
            board: Board::Virt,
            kernel,
            release: release.into(),
            cpu: "cortex-a72".into(),
            accel: Accel::Tcg,
            cmdline: "console=ttyAMA0 nokaslr -- --size 64".into(),
            records,
        }
    }

    #[test]
    fn results_json_holds_every_record() {
        let r = rec("fork", "order-0", 4, "batched", 1);
        let runs = vec![run("folium", "6.12.0-folium", vec![r.clone(), r])];
        let results = Results {
            accel: "tcg".into(),
            size_mib: 64,
            iterations: 3,
            date: "2025-01-01T00:00:59Z".into(),
            qemu: "QEMU 10.0.2".into(),
            icount: false,
            runs: &runs,
            alloc: &[],
        };
        let s = serde_json::to_string_pretty(&results).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["size_mib"], 64);
        assert_eq!(v["runs"][0]["board"], "virt");
        assert_eq!(
            v["runs"][0]["cmdline"],
            "console=ttyAMA0 nokaslr -- --size 64"
        );
        assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 2);
        assert_eq!(v["runs"][0]["results"][1]["case"], "order-0");
        assert_eq!(v["runs"][0]["results"][1]["mode"], "batched");
    }

    #[test]
    fn plots_show_every_series_in_its_colour() {
        let folium = run(
            "folium",
            "6.12.0-folium",
            vec![
                rec("fork", "order-0", 4, "batched", 3),
                rec("fork", "order-0/per-pte", 4, "per-pte", 3),
                rec("fork", "order-0/exit-now", 4, "batched", 4),
                rec("fork", "order-9", 2048, "batched", 1),
                rec("fork", "order-9/per-pte", 2048, "per-pte", 9),
                rec("fork", "order-9/exit-now", 2048, "batched", 2),
                rec("fault", "4K", 4, "batched", 9),
                rec("fault", "64K", 64, "batched", 3),
                rec("fault", "2048K", 2048, "batched", 2),
                rec("munmap", "4K", 4, "batched", 9),
                rec("munmap", "64K", 64, "batched", 2),
                rec("munmap", "2048K", 2048, "batched", 1),
                rec("munmap", "4K/per-pte", 4, "per-pte", 9),
                rec("munmap", "2048K/per-pte", 2048, "per-pte", 8),
                rec("contpte-regress", "off", 64, "batched", 5),
                rec("contpte-regress", "on-per-pte-wp", 64, "batched", 6),
                rec("contpte-regress", "on", 64, "batched", 5),
            ],
        );
        let linux = run(
            "linux",
            "6.12.118+deb12-arm64",
            vec![
                rec("fork", "order-0", 4, "native", 5),
                rec("fork", "order-0/exit-now", 4, "native", 6),
                rec("fork", "order-9", 2048, "native", 7),
                rec("fork", "order-9/exit-now", 2048, "native", 8),
                rec("fault", "4K", 4, "native", 9),
                rec("fault", "2048K", 2048, "native", 3),
                rec("munmap", "4K", 4, "native", 9),
                rec("munmap", "64K", 64, "native", 5),
                rec("munmap", "2048K", 2048, "native", 3),
                rec("contpte-regress", "on", 64, "native", 7),
            ],
        );
        let dir = std::env::temp_dir().join(format!("xtask-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cond = conditions(&[&folium], "QEMU 10.0.2", "2025-01-01T00:00:59Z");
        assert_eq!(
            cond,
            "virt, CPU cortex-a72, TCG, QEMU 10.0.2, 2025-01-01 00:00 UTC"
        );
        plots(&dir, &[&folium, &linux], &cond).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let (batched, per_pte, lx) = ("Folium batched", "Folium per-PTE", "Linux 6.12.118+deb12");

        let fork = read("fork-virt.svg");
        assert!(texts(&fork).contains(&cond));
        // Folium batched, Folium per-PTE and Linux in the sleeping rows;
        // Folium batched and Linux in the exit-now rows; a legend key each.
        assert_eq!(filled(&fork, "rect", batched), 4 + 1);
        assert_eq!(filled(&fork, "rect", per_pte), 2 + 1);
        assert_eq!(filled(&fork, "rect", lx), 4 + 1);
        for g in ["order-0", "order-0/exit-now", "order-9", "order-9/exit-now"] {
            assert!(texts(&fork).iter().any(|t| t == g), "no group {g}");
        }

        // munmap per 4 KiB: a line and a dot per point, per series.
        let munmap = read("munmap-virt.svg");
        for (name, n) in [(batched, 3), (per_pte, 2), (lx, 3)] {
            assert!(texts(&munmap).iter().any(|t| t == name), "no {name}");
            assert_eq!(filled(&munmap, "circle", name), n, "{name}");
            assert!(lines(&munmap, name).contains(&n), "{name}");
        }
        // fault has no per-PTE rows, so no such series.
        let fault = read("fault-virt.svg");
        assert_eq!(filled(&fault, "circle", batched), 3);
        assert_eq!(filled(&fault, "circle", lx), 2);
        assert!(!texts(&fault).iter().any(|t| t == per_pte));
        // contpte: Folium in each mode, Linux in on; a legend key each.
        let contpte = read("contpte-virt.svg");
        assert_eq!(filled(&contpte, "rect", batched), 3 + 1);
        assert_eq!(filled(&contpte, "rect", lx), 1 + 1);
        for g in ["contpte off", "contpte on-per-pte-wp", "contpte on"] {
            assert!(texts(&contpte).iter().any(|t| t == g), "no group {g}");
        }
        // A board without contpte rows gets no such chart.
        let q = dir.join("q35");
        std::fs::create_dir_all(&q).unwrap();
        let mut plain = run(
            "folium",
            "6.12.0-folium",
            vec![rec("fork", "order-0", 4, "batched", 3)],
        );
        plain.board = Board::Q35;
        plots(&q, &[&plain], &cond).unwrap();
        assert!(q.join("fork-q35.svg").exists());
        assert!(!q.join("contpte-q35.svg").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn guest_memory_leaves_room_for_the_region() {
        assert_eq!(guest_mem(1024), "2560M");
        assert_eq!(guest_mem(4), "1024M");
    }
}
