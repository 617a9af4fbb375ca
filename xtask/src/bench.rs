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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build::{self, Arch};
use crate::json::{self, Object};
use crate::qemu::{self, Accel, Board, Spec};
use crate::test::boot;
use crate::{Opts, Result};

/// Memory per repetition when `--size` is not given (the size the
/// published Linux results use).
pub const DEFAULT_SIZE_MIB: u64 = 1024;
/// Repetitions per row when `--iters` is not given.
pub const DEFAULT_ITERS: u32 = 5;

/// One kernel's run of the benchmark on one board.
struct Run {
    board: Board,
    /// `folium` or `linux`.
    kernel: &'static str,
    /// The kernel's release string, as the guest's uname reported it.
    release: String,
    cpu: String,
    /// The kernel command line the run booted with.
    cmdline: String,
    records: Vec<Object>,
}

/// Guest RAM for a run of `size_mib` MiB: the region, a forked child's
/// page tables and the kernel, with room to spare.
fn guest_mem(size_mib: u64) -> String {
    format!("{}M", (size_mib * 2 + 512).max(1024))
}

/// The JSON objects among a guest's console lines (others are refused
/// with the reason).
fn records(lines: &[String]) -> Result<Vec<Object>> {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with('{'))
        .map(|l| json::parse_object(l).map_err(|e| format!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn run(o: &Opts) -> Result<bool> {
    let boards = if o.boards.is_empty() {
        vec![Board::Virt, Board::Q35]
    } else {
        o.boards.clone()
    };
    let size = o.size.unwrap_or(DEFAULT_SIZE_MIB);
    let iters = o.iters.unwrap_or(DEFAULT_ITERS);
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
    let out_dir = o
        .out
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| build::root().join("out").join("bench"));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    qemu::ensure_installed()?;
    let timeout = Duration::from_secs(o.timeout.unwrap_or(1800));
    let linux_params = crate::linux::params(o.linux_cmdline.as_deref())?;
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
    let mut alloc: Vec<(Board, Vec<Object>)> = Vec::new();
    for &board in &boards {
        let arch = board.arch();
        let kernel = build::kernel(arch)?;
        let mut spec = Spec::new(board, "bench-alloc");
        spec.cpu = o.cpu.clone();
        if let Some(a) = o.accel {
            spec.accel = a;
        }
        let fixed_mem = matches!(board, Board::Raspi3b | Board::Raspi4b);
        if !fixed_mem {
            spec.mem = Some(o.mem.clone().unwrap_or_else(|| guest_mem(size)));
        }

        announce(&format!("bench-alloc on {}", spec.label()));
        let r = boot(&spec, &kernel, timeout, true)?;
        match (
            r.exit == Some(board.exit_codes().0) && !r.timed_out,
            records(&r.lines),
        ) {
            (true, Ok(recs)) if !recs.is_empty() => alloc.push((board, recs)),
            (_, Err(e)) => {
                println!("bench-alloc on {}: {e}", spec.label());
                ok = false;
            }
            _ => {
                println!("bench-alloc on {} failed (exit {:?})", spec.label(), r.exit);
                ok = false;
            }
        }

        let args = format!("--size {size} --iters {iters}");
        spec.cmdline = format!("init=bench {args}");
        announce(&format!("Folium on {}: bench {args}", spec.label()));
        let r = boot(&spec, &kernel, timeout, true)?;
        match records(&r.lines) {
            Ok(recs) if !recs.is_empty() && r.exit == Some(board.exit_codes().0) => {
                runs.push(Run {
                    board,
                    kernel: "folium",
                    release: recs[0].str("kernel").to_string(),
                    cpu: spec.cpu_name(),
                    cmdline: spec.cmdline.clone(),
                    records: recs,
                })
            }
            Ok(_) => {
                println!(
                    "bench on Folium/{} failed (exit {:?}, timed out {})",
                    spec.label(),
                    r.exit,
                    r.timed_out
                );
                ok = false;
            }
            Err(e) => {
                println!("bench on Folium/{}: {e}", spec.label());
                ok = false;
            }
        }

        if let Some(lk) = &o.linux_kernel {
            announce(&format!("Linux on {}: bench {args}", spec.label()));
            match linux_run(board, arch, lk, &spec, &linux_params, &args, timeout) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    println!("bench on Linux/{}: {e}", spec.label());
                    ok = false;
                }
            }
        }
    }
    for &board in &boards {
        let on: Vec<&Run> = runs.iter().filter(|r| r.board == board).collect();
        if !on.is_empty() {
            side_by_side(board, &on);
            plots(&out_dir, board, &on)?;
        }
    }
    let path = out_dir.join("results.json");
    std::fs::write(&path, results_json(o, size, iters, &runs, &alloc))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} and the plots in {} ({} total)",
        path.display(),
        out_dir.display(),
        minutes(started.elapsed())
    );
    Ok(ok)
}

fn minutes(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

/// Boots Linux `spec_word` (a path or `debian`) on `spec`'s machine with
/// the kernel parameters `params` and `bench` as init, and collects its
/// records.
fn linux_run(
    board: Board,
    arch: Arch,
    spec_word: &str,
    spec: &Spec,
    params: &str,
    args: &str,
    timeout: Duration,
) -> Result<Run> {
    let image = crate::linux::resolve_kernel(spec_word, arch)?;
    let programs = build::user_programs(arch)?;
    let bench = programs
        .iter()
        .find(|(n, _)| n == "bench")
        .map(|(_, p)| p.clone())
        .ok_or("bench was not built")?;
    let initrd = build::target_dir()
        .join("linux")
        .join(board.name())
        .join("initramfs.cpio");
    crate::linux::initramfs(&bench, &initrd)?;
    let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
    let mut machine = spec.clone();
    machine.mem.get_or_insert_with(|| "2G".into());
    let r = crate::linux::boot(&machine, &image, &initrd, params, &argv, timeout)?;
    let recs = records(&r.lines)?;
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
        board,
        kernel: "linux",
        release: recs[0].str("kernel").to_string(),
        cpu: spec.cpu_name(),
        cmdline: r.cmdline,
        records: recs,
    })
}

/// A time in ns as `12.34 ms` or `567.8 us`.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} us", ns / 1e3)
    }
}

/// The key of a row: benchmark and case.
fn key(r: &Object) -> (String, String) {
    (r.str("bench").to_string(), r.str("case").to_string())
}

/// The row's figure of merit: median time per unit (per 4 KiB, per op,
/// per fork).
fn per_unit(r: &Object) -> Option<f64> {
    Some(r.num("median_ns")? / r.num("per").unwrap_or(1.0).max(1.0))
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
        "  {:<8} {:<16} {:>14} {:>14} {:>14} {:>8}  check",
        "bench", "case", "unit", "Folium", "Linux", "F/L"
    );
    for r in &f.records {
        let (b, c) = key(r);
        let unit = format!("median/{}", r.str("per_unit"));
        let fv = per_unit(r);
        let lv = linux
            .and_then(|l| l.records.iter().find(|x| key(x) == (b.clone(), c.clone())))
            .and_then(per_unit);
        let ratio = match (fv, lv) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "  {b:<8} {c:<16} {unit:>14} {:>14} {:>14} {ratio:>8}  {}",
            fv.map_or("-".into(), time),
            lv.map_or("-".into(), time),
            r.str("check")
        );
    }
}

/// munmap time and fault time per 4 KiB against folio size, and fork bars,
/// for every kernel that ran on `board`.
fn plots(dir: &Path, board: Board, runs: &[&Run]) -> Result<()> {
    use crate::plot::{Bar, Series, bar_chart, line_chart};
    let name = |r: &Run| {
        if r.kernel == "folium" {
            "Folium".to_string()
        } else {
            format!("Linux {}", r.release.split('-').next().unwrap_or(""))
        }
    };
    // Folium's per-PTE rows (the `pte_batching` switch off) are a series
    // of their own.
    let modes = |r: &Run| -> Vec<&'static str> {
        if r.records.iter().any(|x| x.str("mode") == "per-pte") {
            vec!["batched", "per-pte"]
        } else {
            vec![""]
        }
    };
    let label = |r: &Run, mode: &str| match mode {
        "per-pte" => format!("{} per-PTE", name(r)),
        "batched" => format!("{} batched", name(r)),
        _ => name(r),
    };
    let in_mode = |x: &Object, mode: &str| mode.is_empty() || x.str("mode") == mode;
    let series = |bench: &str, ms: bool| -> Vec<Series> {
        runs.iter()
            .flat_map(|r| modes(r).into_iter().map(move |m| (r, m)))
            .map(|(r, mode)| Series {
                name: label(r, mode),
                points: r
                    .records
                    .iter()
                    .filter(|x| x.str("bench") == bench && in_mode(x, mode))
                    .filter_map(|x| {
                        let kb = x.num("folio_kb")?;
                        let y = if ms {
                            x.num("median_ns")? / 1e6
                        } else {
                            per_unit(x)?
                        };
                        Some((kb, y))
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let b = board.name();
    let write = |file: String, svg: String| {
        let p = dir.join(file);
        std::fs::write(&p, svg).map_err(|e| format!("{}: {e}", p.display()))
    };
    let size = runs
        .iter()
        .flat_map(|r| r.records.iter())
        .find_map(|x| x.num("size_mib").filter(|&s| s > 0.0))
        .unwrap_or(0.0);
    write(
        format!("munmap-{b}.svg"),
        line_chart(
            &format!("munmap() of {size} MiB on {b}, by folio size"),
            "folio size",
            "median time (ms)",
            true,
            false,
            &series("munmap", true),
        ),
    )?;
    write(
        format!("fault-{b}.svg"),
        line_chart(
            &format!("Populating {size} MiB on {b}: time per 4 KiB, by folio size"),
            "folio size",
            "median ns per 4 KiB",
            true,
            false,
            &series("fault", false),
        ),
    )?;
    let bars: Vec<Bar> = runs
        .iter()
        .flat_map(|r| {
            r.records
                .iter()
                .filter(|x| x.str("bench") == "fork")
                .filter_map(move |x| {
                    let case = x.str("case");
                    let base = case.strip_suffix("/per-pte").unwrap_or(case);
                    let mode = match x.str("mode") {
                        "per-pte" | "batched" => x.str("mode"),
                        _ => "",
                    };
                    Some(Bar {
                        group: format!("fork {base}"),
                        series: label(r, mode),
                        value: x.num("median_ns")? / 1e6,
                        err: x.num("stddev_ns").map(|s| s / 1e6),
                    })
                })
        })
        .collect();
    write(
        format!("fork-{b}.svg"),
        bar_chart(
            &format!("fork() with {size} MiB populated on {b}"),
            "median time (ms)",
            &bars,
        ),
    )
}

/// Everything measured, as one JSON document.
fn results_json(
    o: &Opts,
    size: u64,
    iters: u32,
    runs: &[Run],
    alloc: &[(Board, Vec<Object>)],
) -> String {
    let mut s = String::from("{\n");
    let accel = o.accel.map_or("tcg", |a| match a {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    });
    let _ = writeln!(s, "  \"accel\": {},", json::quote(accel));
    let _ = writeln!(s, "  \"size_mib\": {size},\n  \"iterations\": {iters},");
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(s, "  \"date\": {},", json::quote(&date));
    // One object per run: its fields, then its records as they came.
    let block = |fields: String, recs: &[Object]| {
        let lines: Vec<String> = recs.iter().map(|x| format!("      {}", x.raw)).collect();
        format!(
            "    {{{fields}, \"results\": [\n{}\n    ]}}",
            lines.join(",\n")
        )
    };
    let runs: Vec<String> = runs
        .iter()
        .map(|r| {
            let fields = format!(
                "\"board\": {}, \"kernel\": {}, \"release\": {}, \"cpu\": {}, \"cmdline\": {}",
                json::quote(r.board.name()),
                json::quote(r.kernel),
                json::quote(&r.release),
                json::quote(&r.cpu),
                json::quote(&r.cmdline)
            );
            block(fields, &r.records)
        })
        .collect();
    let alloc: Vec<String> = alloc
        .iter()
        .map(|(b, recs)| block(format!("\"board\": {}", json::quote(b.name())), recs))
        .collect();
    let _ = write!(
        s,
        "  \"runs\": [\n{}\n  ],\n  \"alloc\": [\n{}\n  ]\n}}\n",
        runs.join(",\n"),
        alloc.join(",\n")
    );
    s
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_json_is_well_formed_for_the_parser_pieces() {
        let rec = json::parse_object(
            r#"{"bench":"fork","case":"order-0","folio_kb":4,"median_ns":1000,"per":1,"per_unit":"fork","check":"ok","kernel":"6.12.0-folium"}"#,
        )
        .unwrap();
        let runs = vec![Run {
            board: Board::Virt,
            kernel: "folium",
            release: "6.12.0-folium".into(),
            cpu: "cortex-a72".into(),
            cmdline: "console=ttyAMA0 nokaslr -- --size 64".into(),
            records: vec![rec.clone(), rec],
        }];
        let s = results_json(&Opts::default(), 64, 3, &runs, &[]);
        // Balanced brackets and every record present once per copy.
        let opens = s.matches(['{', '[']).count();
        let closes = s.matches(['}', ']']).count();
        assert_eq!(opens, closes, "{s}");
        assert_eq!(s.matches("\"order-0\"").count(), 2);
        assert!(s.contains("\"size_mib\": 64"));
        assert!(s.contains("\"cmdline\": \"console=ttyAMA0 nokaslr -- --size 64\""));
    }

    #[test]
    fn fork_plot_has_a_group_per_child_and_per_pte_bars_beside_batched() {
        let rec = |case: &str, mode: &str, ms: u32| {
            json::parse_object(&format!(
                r#"{{"bench":"fork","case":"{case}","folio_kb":4,"size_mib":16,"median_ns":{},"stddev_ns":1000,"per":1,"per_unit":"fork","check":"ok","kernel":"k","mode":"{mode}"}}"#,
                ms * 1_000_000
            ))
            .unwrap()
        };
        let run = |kernel, release: &str, records| Run {
            board: Board::Virt,
            kernel,
            release: release.into(),
            cpu: "cortex-a72".into(),
            cmdline: String::new(),
            records,
        };
        let folium = run(
            "folium",
            "6.12.0-folium",
            vec![
                rec("order-0", "batched", 3),
                rec("order-0/per-pte", "per-pte", 3),
                rec("order-0/exit-now", "batched", 4),
                rec("order-9", "batched", 1),
                rec("order-9/per-pte", "per-pte", 9),
                rec("order-9/exit-now", "batched", 2),
            ],
        );
        let linux = run(
            "linux",
            "6.12.118+deb12-arm64",
            vec![
                rec("order-0", "native", 5),
                rec("order-0/exit-now", "native", 6),
                rec("order-9", "native", 7),
                rec("order-9/exit-now", "native", 8),
            ],
        );
        let dir = std::env::temp_dir().join(format!("xtask-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        plots(&dir, Board::Virt, &[&folium, &linux]).unwrap();
        let svg = std::fs::read_to_string(dir.join("fork-virt.svg")).unwrap();
        let bars = |group: &str| {
            svg.matches(&format!("class=\"bar\" data-group=\"fork {group}\""))
                .count()
        };
        // Folium batched, Folium per-PTE and Linux in the sleeping rows;
        // Folium batched and Linux in the exit-now rows.
        assert_eq!(bars("order-0"), 3, "{svg}");
        assert_eq!(bars("order-9"), 3);
        assert_eq!(bars("order-0/exit-now"), 2);
        assert_eq!(bars("order-9/exit-now"), 2);
        assert_eq!(svg.matches("class=\"bar\"").count(), 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn guest_memory_leaves_room_for_the_region() {
        assert_eq!(guest_mem(1024), "2560M");
        assert_eq!(guest_mem(4), "1024M");
    }
}
