//! `cargo xtask test`: host unit tests, then every board's in-guest
//! self-tests, each boot with a timeout; one closing `N passed, N failed`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build::{self, Arch, Profile};
use crate::qemu::{self, Accel, Board, Spec};
use crate::{Result, TestArgs};

/// What one guest boot printed and how it ended.
pub struct GuestRun {
    pub lines: Vec<String>,
    pub exit: Option<i32>,
    pub timed_out: bool,
    /// Wall time from QEMU's start to the kernel's banner line.
    pub banner_after: Option<Duration>,
    pub elapsed: Duration,
}

/// Removes ANSI escape sequences and carriage returns (SeaBIOS emits both).
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Boots one guest and collects its console until it exits or times out.
/// With `echo`, lines are printed as they arrive.
pub fn boot(spec: &Spec, kernel: &Path, timeout: Duration, echo: bool) -> Result<GuestRun> {
    let cmd = spec.command(kernel, false)?;
    run_console(cmd, timeout, echo, |l| {
        l.starts_with("Folium ") && l.contains(" on ")
    })
}

/// Runs a QEMU command whose serial console is its stdout and collects the
/// console like [`boot`]; `banner_after` is when the first line `banner`
/// accepts arrived.
pub fn run_console(
    mut cmd: std::process::Command,
    timeout: Duration,
    echo: bool,
    banner: impl Fn(&str) -> bool,
) -> Result<GuestRun> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    qemu::print_command(&cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let _ = tx.send((Instant::now(), String::from_utf8_lossy(&l).into_owned()));
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let _ = tx.send((Instant::now(), format!("qemu: {l}")));
            }
        }));
    }
    drop(tx);
    let mut run = GuestRun {
        lines: Vec::new(),
        exit: None,
        timed_out: false,
        banner_after: None,
        elapsed: Duration::ZERO,
    };
    let deadline = start + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            run.timed_out = true;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok((t, raw)) => {
                let line = clean(&raw);
                if run.banner_after.is_none() && banner(&line) {
                    run.banner_after = Some(t - start);
                }
                if echo {
                    println!("{line}");
                }
                run.lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    for r in readers {
        let _ = r.join();
    }
    run.exit = status.code();
    run.elapsed = start.elapsed();
    Ok(run)
}

/// One checked guest run: how many of its tests passed and failed.
struct Outcome {
    label: String,
    passed: usize,
    failed: usize,
    report: Vec<String>,
}

/// The suites whose results a boot prints: kernel self-tests (`ktest`,
/// test names without a suite prefix) and the user suites init runs
/// (`utest`, names `utest::...`; `mmtests`, names `mmtests::...`; the
/// fuzzer's seeded run, `fuzz::seeded_run`).
const SUITES: [&str; 4] = ["ktest", "utest", "mmtests", "fuzz"];

/// The user suites (programs of the same name that print their results).
const USER_SUITES: [&str; 3] = ["utest", "mmtests", "fuzz"];

/// The suites a command line runs.
fn suites_of(cmdline: &str) -> Vec<&'static str> {
    let words: Vec<&str> = cmdline.split_ascii_whitespace().collect();
    let mut v = Vec::new();
    if words.iter().any(|w| *w == "test" || w.starts_with("test=")) {
        v.push("ktest");
    }
    // init=A,B,... runs each program in turn.
    let programs = words
        .iter()
        .filter_map(|w| w.strip_prefix("init="))
        .flat_map(|list| list.split(','));
    for p in programs {
        if let Some(s) = USER_SUITES.iter().find(|s| **s == p) {
            v.push(*s);
        }
    }
    v
}

/// Test lines counted per suite, the summaries printed, and problems.
#[derive(Default)]
struct SuiteCounts {
    passed: usize,
    failed: usize,
    lines: Vec<String>,
    problems: Vec<String>,
}

impl SuiteCounts {
    /// The outcome these counts make for `label`, each test line prefixed
    /// with it (problems are the caller's to add).
    fn outcome(&self, label: &str) -> Outcome {
        Outcome {
            label: label.to_string(),
            passed: self.passed,
            failed: self.failed,
            report: self
                .lines
                .iter()
                .map(|l| format!("[{label}] {l}"))
                .collect(),
        }
    }
}

/// Counts `test NAME ... ok|FAILED` lines and checks each expected suite's
/// `<suite>: N passed, N failed` summary against its own lines.
fn count_suites<'a>(lines: impl Iterator<Item = &'a String>, expected: &[&str]) -> SuiteCounts {
    let mut c = SuiteCounts::default();
    let mut per: Vec<(usize, usize)> = vec![(0, 0); SUITES.len()];
    let mut summaries: Vec<Option<String>> = vec![None; SUITES.len()];
    for l in lines {
        if let Some(rest) = l.strip_prefix("test ") {
            let suite = SUITES
                .iter()
                .position(|s| rest.starts_with(&format!("{s}::")))
                .unwrap_or(0);
            if rest.ends_with("... ok") {
                per[suite].0 += 1;
                c.passed += 1;
                c.lines.push(l.clone());
            } else if rest.contains("... FAILED") {
                per[suite].1 += 1;
                c.failed += 1;
                c.lines.push(l.clone());
            }
            continue;
        }
        for (i, s) in SUITES.iter().enumerate() {
            if let Some(sum) = l
                .strip_prefix(s)
                .and_then(|r| r.strip_prefix(": "))
                .filter(|r| r.contains(" passed, "))
            {
                summaries[i] = Some(sum.to_string());
            }
        }
    }
    for s in expected {
        let i = SUITES.iter().position(|x| x == s).unwrap_or(0);
        let want = format!("{} passed, {} failed", per[i].0, per[i].1);
        match &summaries[i] {
            None => c
                .problems
                .push(format!("no `{s}: N passed, N failed` summary")),
            Some(got) if *got != want => c.problems.push(format!(
                "{s} summary `{got}` does not match its test lines ({want})"
            )),
            Some(_) if per[i].0 + per[i].1 == 0 => c.problems.push(format!("no {s} test ran")),
            _ => {}
        }
    }
    c
}

/// Parses a `test` boot: every `test X ... ok|FAILED` line is one test; the
/// boot itself fails on a panic, an unexpected exception, a timeout, a
/// missing or inconsistent summary, or a failure exit status.
/// The kernel's bring-up line, `smp: N of M CPUs online: ...`, must say
/// that all `cpus` CPUs the guest has came up.
fn cpu_problems(lines: &[String], cpus: u32) -> Vec<String> {
    let want = format!("smp: {cpus} of {cpus} CPUs online");
    match lines
        .iter()
        .find(|l| l.starts_with("smp: ") && l.contains(" CPUs online"))
    {
        Some(l) if l.starts_with(&want) => Vec::new(),
        Some(l) => vec![format!("expected \"{want}\", the kernel said \"{l}\"")],
        None => vec![format!(
            "no \"smp: ... CPUs online\" line (expected {cpus} CPUs)"
        )],
    }
}

fn check_test_boot(label: &str, spec: &Spec, run: &GuestRun) -> Outcome {
    let (board, cmdline) = (spec.board, spec.cmdline.as_str());
    let label = label.to_string();
    let counts = count_suites(run.lines.iter(), &suites_of(cmdline));
    let mut o = counts.outcome(&label);
    let fatal = run
        .lines
        .iter()
        .find(|l| l.contains("KERNEL PANIC") || l.contains("UNEXPECTED EXCEPTION"));
    let (pass, fail) = board.exit_codes();
    let mut problems = Vec::new();
    if run.timed_out {
        problems.push(format!(
            "timed out after {:.0} s",
            run.elapsed.as_secs_f64()
        ));
    }
    if let Some(f) = fatal {
        problems.push(f.clone());
    }
    problems.extend(counts.problems);
    problems.extend(audit_problems(&run.lines, &suites_of(cmdline)));
    problems.extend(cpu_problems(&run.lines, spec.cpus()));
    let beyond = run
        .lines
        .iter()
        .filter(|l| {
            l.strip_prefix("folium: syscall ")
                .and_then(|r| r.split_ascii_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 512)
        })
        .count();
    if beyond > 1 {
        problems.push(format!(
            "{beyond} console lines report syscall numbers past 511 (one is the most)"
        ));
    }
    if o.passed + o.failed == 0 {
        problems.push("no test ran".into());
    }
    let expected_exit = if o.failed == 0 {
        Some(pass)
    } else {
        Some(fail)
    };
    if run.exit != expected_exit && !run.timed_out {
        problems.push(format!(
            "QEMU {}, expected {}",
            build::exit_words(run.exit),
            build::exit_words(expected_exit)
        ));
    }
    if !problems.is_empty() {
        o.failed += 1;
        o.report
            .push(format!("[{label}] boot FAILED: {}", problems.join("; ")));
        o.report.push(format!("[{label}] last console lines:"));
        let tail = run.lines.len().saturating_sub(30);
        o.report
            .extend(run.lines[tail..].iter().map(|l| format!("[{label}]   {l}")));
    }
    let banner = run.banner_after.map_or("no banner".into(), |d| {
        format!("banner after {:.2} s", d.as_secs_f64())
    });
    o.report.push(format!(
        "[{label}] {} passed, {} failed; {banner}, boot total {:.2} s",
        o.passed,
        o.failed,
        run.elapsed.as_secs_f64()
    ));
    o
}

/// The mm audit init runs after each program: a failed one anywhere, or
/// a user suite of `suites` after which no passing audit was printed.
fn audit_problems(lines: &[String], suites: &[&str]) -> Vec<String> {
    let mut p: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("init: mm audit after ") && l.contains("FAILED"))
        .cloned()
        .collect();
    for s in suites.iter().filter(|s| USER_SUITES.contains(s)) {
        let want = format!("init: mm audit after {s}: ok");
        if !lines.iter().any(|l| l.starts_with(&want)) {
            p.push(format!("no passing mm audit after {s}"));
        }
    }
    p
}

/// What a deliberately fatal boot must print: the report's first line
/// (by prefix, plus one of the words if any are given) before its registers.
struct FatalExpect {
    name: &'static str,
    prefix: &'static str,
    any_of: &'static [&'static str],
}

/// `fatal-test`: an unexpected exception (a data abort / #PF).
const UNEXPECTED_EXCEPTION: FatalExpect = FatalExpect {
    name: "unexpected_exception_stops_with_failure",
    prefix: "UNEXPECTED EXCEPTION",
    any_of: &["data abort", "#PF"],
};

/// `stack-overflow-test`: unbounded recursion on the kernel stack.
const STACK_OVERFLOW: FatalExpect = FatalExpect {
    name: "kernel_stack_overflow_is_reported",
    prefix: "KERNEL STACK OVERFLOW",
    any_of: &[],
};

/// The outcome of a boot that is one test: its `test NAME ... ok|FAILED`
/// line, and on failure `why` and the whole console.
fn one_test_outcome(label: &str, name: &str, ok: bool, why: String, run: &GuestRun) -> Outcome {
    let mut o = one_check(label, name, ok, why);
    if !ok {
        o.report
            .extend(run.lines.iter().map(|l| format!("[{label}]   {l}")));
    }
    o
}

/// One test of a boot: its `test NAME ... ok|FAILED` line, and on
/// failure `why` (no console: for a check whose `why` says it all).
fn one_check(label: &str, name: &str, ok: bool, why: String) -> Outcome {
    let mut report = vec![format!(
        "[{label}] test {name} ... {}",
        if ok { "ok" } else { "FAILED" }
    )];
    if !ok {
        report.push(format!("[{label}] {why}"));
    }
    Outcome {
        label: label.to_string(),
        passed: ok as usize,
        failed: (!ok) as usize,
        report,
    }
}

impl Outcome {
    /// Adds `other`'s tests (of the same boot) to these.
    fn and(mut self, other: Outcome) -> Outcome {
        self.passed += other.passed;
        self.failed += other.failed;
        self.report.extend(other.report);
        self
    }
}

/// Parses a boot in which init ran a C program: the program prints
/// `cprog NAME (libc): ok, ...`, init reports its exit status 0, and the
/// machine powers off with the success status (one test); and the kernel
/// reported no syscall as not implemented on the way (a second test: an
/// ordinary program's start-up must not leave console noise).
fn check_cprogram_boot(label: &str, spec: &Spec, run: &GuestRun) -> Outcome {
    let board = spec.board;
    // Run from the initrd: the kernel must say it registered it.
    let from_initrd = spec.initrd.is_none()
        || run
            .lines
            .iter()
            .any(|l| l.trim_start().starts_with("initrd") && l.contains("runs as userprog"));
    let reported = from_initrd
        && run
            .lines
            .iter()
            .any(|l| l.starts_with("cprog ") && l.contains("): ok,"));
    let forked = run.lines.iter().any(|l| l.contains("says hello"));
    // What libc counts (nproc) is every CPU the guest has.
    let cpus_line = format!("cprog: {} cpus", spec.cpus());
    let cpus = run.lines.iter().any(|l| l.trim() == cpus_line);
    let ok = reported && forked && cpus && run.exit == Some(board.exit_codes().0) && !run.timed_out;
    let why = format!(
        "reported ok={reported} child={forked} \"{cpus_line}\"={cpus} QEMU {} timed_out={}",
        build::exit_words(run.exit),
        run.timed_out
    );
    let runs = one_test_outcome(label, "ordinary_c_program_runs_unchanged", ok, why, run);
    runs.and(no_syscall_unimplemented(label, run))
}

/// The check that an ordinary program's boot left no console line about
/// a syscall Folium lacks.
fn no_syscall_unimplemented(label: &str, run: &GuestRun) -> Outcome {
    let noise: Vec<&str> = run
        .lines
        .iter()
        .filter(|l| l.contains("not implemented"))
        .map(String::as_str)
        .collect();
    one_check(
        label,
        "no_syscall_reported_not_implemented",
        noise.is_empty(),
        format!("the console says: {}", noise.join(" | ")),
    )
}

/// Parses a boot in which init ran the threads program: it prints
/// `cthreads NAME (libc): ok, N cpus, 0 failures` with N the guest's
/// CPUs, init exits 0 and the machine powers off with the success status;
/// and no syscall was reported as not implemented on the way.
fn check_cthreads_boot(label: &str, spec: &Spec, run: &GuestRun) -> Outcome {
    let want = format!(": ok, {} cpus, 0 failures", spec.cpus());
    let reported = run
        .lines
        .iter()
        .any(|l| l.starts_with("cthreads ") && l.ends_with(&want));
    let ok = reported && run.exit == Some(spec.board.exit_codes().0) && !run.timed_out;
    let why = format!(
        "reported \"{want}\"={reported} QEMU {} timed_out={}",
        build::exit_words(run.exit),
        run.timed_out
    );
    let runs = one_test_outcome(label, "pthreads_program_runs_unchanged", ok, why, run);
    runs.and(no_syscall_unimplemented(label, run))
}

/// Boots Linux `image` on `spec`'s machine with `init` as its init.
fn linux_errno_boot(spec: &Spec, image: &Path, init: &Path, timeout: Duration) -> Result<GuestRun> {
    let params = crate::linux::params(None)?;
    let r = crate::linux::boot_init(
        spec,
        init,
        crate::errno::PROGRAM,
        &crate::linux::BenchBoot {
            kernel: image,
            params: &params,
            args: &[],
            timeout,
        },
    )?;
    Ok(GuestRun {
        exit: if r.finished() { Some(0) } else { r.exit },
        lines: r.lines,
        timed_out: r.timed_out,
        banner_after: r.init_after,
        elapsed: r.elapsed,
    })
}

/// The errno suite on Folium: it must finish and power off, and every
/// answer must be Linux's recorded one or the recorded difference.
fn check_errno_boot(label: &str, board: Board, run: &GuestRun) -> Outcome {
    let arch = crate::errno::arch_word(board.arch());
    let problems = match (
        crate::errno::parse_run(&run.lines),
        crate::errno::reference_text(),
        crate::errno::differences_text(),
    ) {
        (Ok(cases), Ok(reference), Ok(doc)) => crate::errno::folium_problems(
            arch,
            &cases,
            &crate::errno::parse_reference(&reference, arch),
            &crate::errno::parse_differences(&doc),
        ),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => vec![e],
    };
    let clean_exit = run.exit == Some(board.exit_codes().0) && !run.timed_out;
    let ok = problems.is_empty() && clean_exit;
    let why = format!(
        "QEMU {} timed_out={}; {}",
        build::exit_words(run.exit),
        run.timed_out,
        problems.join("; ")
    );
    one_test_outcome(label, "errno_answers_are_linux_or_recorded", ok, why, run)
}

/// The errno suite on Linux: it must power off having printed exactly the
/// recorded answers (else its answers are saved under `out/errno/`).
fn check_errno_linux_boot(label: &str, board: Board, run: &GuestRun) -> Outcome {
    let arch = crate::errno::arch_word(board.arch());
    let mut problems = match (
        crate::errno::parse_run(&run.lines),
        crate::errno::reference_text(),
    ) {
        (Ok(cases), Ok(reference)) => {
            let p = crate::errno::linux_problems(
                &cases,
                &crate::errno::parse_reference(&reference, arch),
            );
            if !p.is_empty() {
                match crate::errno::save_linux_run(arch, &cases) {
                    Ok(path) => println!("[{label}] Linux's answers written to {}", path.display()),
                    Err(e) => println!("[{label}] {e}"),
                }
            }
            p
        }
        (Err(e), _) | (_, Err(e)) => vec![e],
    };
    if run.exit != Some(0) || run.timed_out {
        problems.push(format!(
            "Linux did not power off: QEMU {} timed_out={}",
            build::exit_words(run.exit),
            run.timed_out
        ));
    }
    let why = problems.join("; ");
    one_test_outcome(
        label,
        "linux_answers_as_recorded",
        problems.is_empty(),
        why,
        run,
    )
}

/// The command line of the benchmark's test boot: every benchmark, 4 MiB
/// (two 2 MiB folios), one repetition.
pub const BENCH_TEST_CMDLINE: &str = "init=bench --size 4 --iters 1";

/// Every (bench, case) the benchmark's test boot must report.
const BENCH_ROWS: [(&str, &str); 30] = [
    ("sys", "null_syscall"),
    ("sys", "yield_switch"),
    ("sys", "fork_exit_wait"),
    ("fork", "order-0"),
    ("fork", "order-9"),
    // The same forks with a child that exits at once.
    ("fork", "order-0/exit-now"),
    ("fork", "order-9/exit-now"),
    ("memcpy", "page-tables"),
    ("fault", "4K"),
    ("fault", "16K"),
    ("fault", "32K"),
    ("fault", "64K"),
    ("fault", "128K"),
    ("fault", "256K"),
    ("fault", "512K"),
    ("fault", "1024K"),
    ("fault", "2048K"),
    ("munmap", "4K"),
    ("munmap", "16K"),
    ("munmap", "32K"),
    ("munmap", "64K"),
    ("munmap", "128K"),
    ("munmap", "256K"),
    ("munmap", "512K"),
    ("munmap", "1024K"),
    ("munmap", "2048K"),
    // Folium measures fork and munmap with batching off too.
    ("fork", "order-0/per-pte"),
    ("fork", "order-9/per-pte"),
    ("munmap", "4K/per-pte"),
    ("munmap", "2048K/per-pte"),
];

/// The contpte rows the benchmark's test boot reports where the kernel
/// has Folium's contpte switches (every large folio size).
fn contpte_rows() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = ["off", "on-per-pte-wp", "on"]
        .iter()
        .map(|c| ("contpte-regress".to_string(), c.to_string()))
        .collect();
    for bench in ["contpte-fault", "contpte-fork", "contpte-munmap"] {
        for kb in [16, 32, 64, 128, 256, 512, 1024, 2048] {
            for m in ["off", "on"] {
                rows.push((bench.to_string(), format!("{kb}K/{m}")));
            }
        }
    }
    rows.extend(["off", "on"].map(|c| ("contpte-touch".to_string(), c.to_string())));
    rows
}

/// What is wrong with the contpte rows of a test boot that reported
/// `rows` and printed `lines`: either all of them are there, or none and
/// the benchmark said why not (`contpte: n/a ...`: x86, or a kernel
/// without the switch).
fn contpte_problems(lines: &[String], rows: &[(String, String)]) -> Vec<String> {
    let any = rows.iter().any(|(b, _)| b.starts_with("contpte-"));
    if !any {
        return if lines
            .iter()
            .any(|l| l.trim_start().starts_with("contpte: n/a"))
        {
            Vec::new()
        } else {
            vec!["no contpte rows, and no `contpte: n/a` line saying why".to_string()]
        };
    }
    contpte_rows()
        .into_iter()
        .filter(|(b, c)| !rows.iter().any(|(x, y)| x == b && y == c))
        .map(|(b, c)| format!("no {b} {c} record"))
        .collect()
}

/// Parses the benchmark's test boot: each JSON line must parse and carry
/// the common fields with sane values, every expected row must be there
/// and checked `ok`, and the guest must exit successfully.
fn check_bench_boot(label: &str, board: Board, run: &GuestRun) -> Outcome {
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for l in run
        .lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with('{'))
    {
        match serde_json::from_str::<crate::records::Record>(l) {
            Ok(o) => {
                if !(o.min_ns >= 0.0 && o.min_ns <= o.median_ns && o.median_ns <= o.max_ns)
                    || o.iterations < 1
                    || o.kernel.is_empty()
                {
                    problems.push(format!("implausible record {l}"));
                }
                if o.check != "ok" {
                    problems.push(format!("{} {}: {}", o.bench, o.case, o.check));
                }
                rows.push((o.bench, o.case));
            }
            Err(e) => problems.push(format!("bad JSON `{l}`: {e}")),
        }
    }
    for (b, c) in BENCH_ROWS {
        if !rows.iter().any(|(x, y)| x == b && y == c) {
            problems.push(format!("no {b} {c} record"));
        }
    }
    problems.extend(contpte_problems(&run.lines, &rows));
    if run.exit != Some(board.exit_codes().0) || run.timed_out {
        problems.push(format!(
            "QEMU {}, timed out {}",
            build::exit_words(run.exit),
            run.timed_out
        ));
    }
    let ok = problems.is_empty();
    one_test_outcome(
        label,
        "bench_runs_and_reports",
        ok,
        problems.join("; "),
        run,
    )
}

/// The command line of the page-table dump's test boot.
pub const MMVIEW_TEST_CMDLINE: &str = "init=mmdemo";

/// Parses the boot that ran `mmdemo`: one test per check of
/// [`crate::mmview::check`] (its snapshots show the folio sizes it asked
/// for, its mprotect, fork's write protection and sharing, the child's
/// own copies); the first also needs the machine to stop with success.
/// The console is shown once, under the first failure.
fn check_mmview_boot(label: &str, board: Board, run: &GuestRun) -> Outcome {
    let mut verdicts = crate::mmview::check::check_mmdemo(
        &run.lines,
        crate::mmview::check::user_end(board.arch()),
    );
    if run.timed_out || run.exit != Some(board.exit_codes().0) {
        let why = format!(
            "QEMU {}, timed out {}",
            build::exit_words(run.exit),
            run.timed_out
        );
        if let Some((_, r)) = verdicts.first_mut() {
            *r = Err(match r {
                Err(e) => format!("{e}; {why}"),
                Ok(()) => why,
            });
        }
    }
    let mut all = Outcome {
        label: label.to_string(),
        passed: 0,
        failed: 0,
        report: Vec::new(),
    };
    let mut shown = false;
    for (name, r) in verdicts {
        let o = match r {
            Ok(()) => one_check(label, name, true, String::new()),
            Err(why) if !shown => {
                shown = true;
                one_test_outcome(label, name, false, why, run)
            }
            Err(why) => one_check(label, name, false, why),
        };
        all = all.and(o);
    }
    all
}

/// Parses a boot in which init was handed a malformed program.
fn check_refused_boot(label: &str, board: Board, run: &GuestRun) -> Outcome {
    let reason = run.lines.iter().find(|l| l.starts_with("exec: broken: "));
    let status = run
        .lines
        .iter()
        .any(|l| l.contains("init exited with status 127"));
    let fatal = run
        .lines
        .iter()
        .any(|l| l.contains("KERNEL PANIC") || l.contains("UNEXPECTED EXCEPTION"));
    let ok = reason.is_some()
        && status
        && !fatal
        && run.exit == Some(board.exit_codes().1)
        && !run.timed_out;
    let why = format!(
        "reason given={} status127={status} fatal={fatal} QEMU {} timed_out={}",
        reason.is_some(),
        build::exit_words(run.exit),
        run.timed_out
    );
    one_test_outcome(
        label,
        "malformed_program_is_refused_with_a_reason",
        ok,
        why,
        run,
    )
}

/// Parses a deliberately fatal boot: the kernel must print the expected
/// report with its registers and stop with the failure status.
fn check_fatal_boot(label: &str, board: Board, run: &GuestRun, expect: &FatalExpect) -> Outcome {
    let (_, fail) = board.exit_codes();
    let reported = run.lines.iter().any(|l| {
        l.starts_with(expect.prefix)
            && (expect.any_of.is_empty() || expect.any_of.iter().any(|w| l.contains(w)))
    });
    let regs = run
        .lines
        .iter()
        .any(|l| l.contains("ELR ") || l.contains("RIP "));
    let ok = reported && regs && run.exit == Some(fail) && !run.timed_out;
    let why = format!(
        "reported={reported} registers={regs} QEMU {} (expected {fail}) timed_out={}",
        build::exit_words(run.exit),
        run.timed_out
    );
    one_test_outcome(label, expect.name, ok, why, run)
}

/// Counts `test result: ok. N passed; M failed` lines of `cargo test`.
fn host_tests() -> Result<(usize, usize)> {
    println!("== host unit tests (cargo test -p folium-mm -p folium-abi -p folium-boot -p xtask)");
    let out = build::cargo()
        .args([
            "test",
            "-p",
            "folium-mm",
            "-p",
            "folium-abi",
            "-p",
            "folium-boot",
            "-p",
            "xtask",
            "--color",
            "never",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut passed, mut failed) = (0, 0);
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("test result: ") {
            let num = |key: &str| -> usize {
                rest.split(';')
                    .find_map(|p| p.trim().strip_suffix(key))
                    .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
                    .unwrap_or(0)
            };
            passed += num(" passed");
            failed += num(" failed");
        } else if l.ends_with("FAILED") || l.starts_with("failures:") || l.starts_with("---- ") {
            println!("{l}");
        }
    }
    if !out.status.success() && failed == 0 {
        failed = 1;
        println!("cargo test failed: {}", out.status);
    }
    println!("host: {passed} passed, {failed} failed");
    Ok((passed, failed))
}

/// What a test boot runs: the kernel self-tests, then init running the
/// user suites one after the other.
const TEST_CMDLINE: &str = "test init=utest,mmtests";

/// The fuzzer's short seeded run of a test boot (a few seconds): 150
/// rounds, about 18,000 syscalls, with a seed of each board's own.
fn fuzz_test_cmdline(b: Board) -> String {
    let seed = 1000 + Board::ALL.iter().position(|x| *x == b).unwrap_or(0);
    format!("init=fuzz --seed {seed} --iters 150 --test")
}

/// Runs the x86_64 builds of the user suites natively on the host's Linux:
/// the same binaries that run under Folium, proving the suites check
/// Linux behaviour. Skipped with a notice on other hosts.
fn host_native_suite(notices: &mut Vec<String>) -> Result<Outcome> {
    let label = "host-linux/x86_64".to_string();
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        notices.push("the user suite runs natively only on x86_64 Linux hosts".into());
        return Ok(Outcome {
            label,
            passed: 0,
            failed: 0,
            report: Vec::new(),
        });
    }
    let programs = build::user_programs(Arch::X86_64)?;
    let mut all = Outcome {
        label: label.clone(),
        passed: 0,
        failed: 0,
        report: Vec::new(),
    };
    // Not the fuzzer: its random syscalls are for a disposable guest,
    // never the host (it refuses to run outside Folium anyway).
    for suite in USER_SUITES.iter().filter(|s| **s != "fuzz") {
        let path = programs
            .iter()
            .find(|(n, _)| n == suite)
            .map(|(_, p)| p.clone())
            .ok_or(format!("{suite} was not built"))?;
        let o = native_run(&label, suite, &path)?;
        all.passed += o.passed;
        all.failed += o.failed;
        all.report.extend(o.report);
    }
    Ok(all)
}

/// Runs one user suite natively and judges its output like a guest's.
fn native_run(label: &str, suite: &str, path: &std::path::Path) -> Result<Outcome> {
    let mut child = std::process::Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(out) = out {
            lines.extend(BufReader::new(out).lines().map_while(|l| l.ok()));
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().unwrap_or_default();
    let counts = count_suites(lines.iter(), &[suite]);
    let mut o = counts.outcome(label);
    let mut problems = counts.problems;
    match status {
        None => problems.push("timed out".into()),
        Some(st) if st.success() != (o.failed == 0) => {
            problems.push(format!("exit status {st} does not match the results"))
        }
        _ => {}
    }
    if !problems.is_empty() {
        o.failed += 1;
        o.report
            .push(format!("[{label}] run FAILED: {}", problems.join("; ")));
        o.report
            .extend(lines.iter().map(|l| format!("[{label}]   {l}")));
    }
    Ok(o)
}

/// How a guest boot is judged.
#[derive(Clone, Copy)]
enum Check {
    /// `test`: every self-test line and the summary.
    Tests,
    /// A deliberately fatal boot and the report it must print.
    Fatal(&'static FatalExpect),
    /// init runs an ordinary C program, which must report `ok` and exit 0.
    CProgram,
    /// init runs the pthreads program (`userspace/c/threads.c`), which
    /// must report `ok` on every CPU of the guest and exit 0.
    CThreads,
    /// init is handed a malformed program: the kernel must refuse it with
    /// a printed reason, init must report exit status 127, and the machine
    /// must stop with the failure status (never a panic).
    Refused,
    /// init runs the benchmark at a tiny size: it must finish, print a
    /// well-formed record for every benchmark, and check every one `ok`
    /// (folio sizes as asked); no time is judged.
    Bench,
    /// init runs `mmdemo`: its page-table snapshots must show what it did.
    Mmview,
    /// init runs the errno suite: Folium's answers must be Linux's
    /// recorded ones or the recorded differences (crate::errno).
    Errno,
    /// Linux (`GuestBoot::linux`) runs the errno suite: its answers must be
    /// the recorded ones.
    ErrnoLinux,
}

/// One guest boot of `cargo xtask test`.
#[derive(Clone)]
struct GuestBoot {
    spec: Spec,
    profile: Profile,
    check: Check,
    /// For [`Check::ErrnoLinux`]: the Linux image and the program its
    /// initramfs runs as init.
    linux: Option<(PathBuf, PathBuf)>,
}

impl GuestBoot {
    fn new(spec: Spec, check: Check) -> GuestBoot {
        GuestBoot {
            spec,
            profile: Profile::Release,
            check,
            linux: None,
        }
    }

    fn label(&self) -> String {
        let mut l = self.spec.label();
        if self.profile == Profile::Checked {
            l.push_str("/checked");
        }
        if self.linux.is_some() {
            l.push_str("/linux");
        }
        if let Check::Fatal(_)
        | Check::CProgram
        | Check::CThreads
        | Check::Refused
        | Check::Bench
        | Check::Mmview
        | Check::Errno
        | Check::ErrnoLinux = self.check
        {
            l.push(':');
            let mut words = self.spec.cmdline.split_whitespace();
            let word = words
                .clone()
                .find(|w| w.starts_with("init="))
                .or_else(|| words.next())
                .unwrap_or("");
            l.push_str(word.trim_start_matches("init="));
            if self.spec.initrd.is_some() {
                l.push_str("(initrd)");
            }
        }
        l
    }
}

/// The guest boots `cargo xtask test` makes for the chosen boards: each
/// board's self-tests, the fatal paths, and (virt, q35) the self-tests on
/// a kernel built with debug assertions.
fn guest_boots(
    boards: &[Board],
    cprogs: &[(Arch, String, PathBuf)],
) -> (Vec<GuestBoot>, Vec<String>) {
    let mut boots = Vec::new();
    let mut notices = Vec::new();
    for &b in boards {
        for (_, name, path) in cprogs.iter().filter(|(a, ..)| *a == b.arch()) {
            if name == crate::errno::PROGRAM {
                boots.push(GuestBoot::new(
                    Spec::new(b, crate::errno::CMDLINE),
                    Check::Errno,
                ));
                // Linux in the same QEMU, where its kernel is cached.
                if matches!(b, Board::Virt | Board::Q35) {
                    match crate::linux::cached(b.arch()) {
                        Some(image) => boots.push(GuestBoot {
                            linux: Some((image, path.clone())),
                            ..GuestBoot::new(
                                Spec::new(b, crate::errno::CMDLINE),
                                Check::ErrnoLinux,
                            )
                        }),
                        None => notices.push(format!(
                            "errno suite on Linux ({}) skipped: no Linux kernel cached \
                             (`cargo xtask qemu-linux --board {} --linux-kernel debian` fetches it)",
                            b.name(),
                            b.name()
                        )),
                    }
                }
                continue;
            }
            if name.ends_with(crate::cprogs::THREADS_SUFFIX) {
                // Threads on several CPUs (the Pis have four anyway).
                let mut spec = Spec::new(b, &format!("init={name}"));
                if b.smp_choosable() {
                    spec.smp = Some(4);
                }
                boots.push(GuestBoot::new(spec, Check::CThreads));
                continue;
            }
            boots.push(GuestBoot::new(
                Spec::new(b, &format!("init={name} one two")),
                Check::CProgram,
            ));
            // The same program handed over as an initrd, as `qemu-run
            // --init PATH` does, under a name no embedded program has; and
            // a truncated copy of it, which must be refused.
            if name == "c-glibc" {
                let mut spec = Spec::new(b, "initrd=userprog init=userprog one two");
                spec.initrd = Some(path.clone());
                boots.push(GuestBoot::new(spec, Check::CProgram));
                let mut bad = Spec::new(b, "initrd=broken init=broken");
                bad.initrd = Some(path.with_file_name(format!("{name}.truncated")));
                boots.push(GuestBoot::new(bad, Check::Refused));
            }
        }
    }
    let fatal = |b: Board, cpu: Option<&str>, word: &str, expect: &'static FatalExpect| {
        let mut spec = Spec::new(b, word);
        spec.cpu = cpu.map(Into::into);
        GuestBoot::new(spec, Check::Fatal(expect))
    };
    let checked = |b: Board| GuestBoot {
        profile: Profile::Checked,
        linux: None,
        ..GuestBoot::new(Spec::new(b, TEST_CMDLINE), Check::Tests)
    };
    for &b in boards {
        // The fuzzer runs its children on four CPUs everywhere (the Pis
        // have four anyway): a short multi-CPU stress run, audited.
        let mut fuzz = Spec::new(b, &fuzz_test_cmdline(b));
        if b.smp_choosable() {
            fuzz.smp = Some(4);
        }
        boots.push(GuestBoot::new(fuzz, Check::Tests));
        boots.push(GuestBoot::new(
            Spec::new(b, BENCH_TEST_CMDLINE),
            Check::Bench,
        ));
        if matches!(b, Board::Virt | Board::Q35) {
            boots.push(GuestBoot::new(
                Spec::new(b, MMVIEW_TEST_CMDLINE),
                Check::Mmview,
            ));
        }
        match b {
            Board::Virt => {
                let mut a72 = Spec::new(b, TEST_CMDLINE);
                a72.cpu = Some("cortex-a72".into());
                boots.push(GuestBoot::new(a72.clone(), Check::Tests));
                // `max` has the range TLBIs: broadcast to a second CPU.
                let mut max = Spec::new(b, TEST_CMDLINE);
                max.cpu = Some("max".into());
                max.smp = Some(2);
                boots.push(GuestBoot::new(max, Check::Tests));
                // Entry at EL2 exercises the EL2 -> EL1 drop on virt too,
                // on the secondary CPUs as well (PSCI through `smc` then).
                let mut el2 = a72;
                el2.extra_machine = Some("virtualization=on".into());
                el2.smp = Some(2);
                boots.push(GuestBoot::new(el2, Check::Tests));
                // GICv3 (distributor + redistributors, system-register CPU
                // interface) instead of the default GICv2, a redistributor
                // per CPU.
                let mut gic3 = Spec::new(b, TEST_CMDLINE);
                gic3.extra_machine = Some("gic-version=3".into());
                gic3.smp = Some(4);
                boots.push(GuestBoot::new(gic3, Check::Tests));
                boots.push(checked(b));
                let a72 = Some("cortex-a72");
                boots.push(fatal(b, a72, "fatal-test", &UNEXPECTED_EXCEPTION));
                boots.push(fatal(b, a72, "stack-overflow-test", &STACK_OVERFLOW));
            }
            Board::Raspi4b | Board::Raspi3b => {
                boots.push(GuestBoot::new(Spec::new(b, TEST_CMDLINE), Check::Tests))
            }
            Board::Q35 => {
                // (QEMU's TCG has no PCIDs on any x86 CPU model: the
                // per-CPU PCID paths run on the model in `pcid_tests`.)
                let mut smp4 = Spec::new(b, TEST_CMDLINE);
                smp4.smp = Some(4);
                boots.push(GuestBoot::new(smp4, Check::Tests));
                boots.push(checked(b));
                boots.push(fatal(b, None, "fatal-test", &UNEXPECTED_EXCEPTION));
                boots.push(fatal(b, None, "stack-overflow-test", &STACK_OVERFLOW));
                if qemu::host_has_hw_virt() {
                    let mut kvm = Spec::new(b, TEST_CMDLINE);
                    kvm.accel = Accel::Kvm;
                    boots.push(GuestBoot::new(kvm, Check::Tests));
                } else {
                    notices.push(
                        "q35/kvm skipped: the host CPU has no vmx/svm flag (a bare /dev/kvm may be a software nested implementation)"
                            .into(),
                    );
                }
            }
        }
    }
    (boots, notices)
}

/// `cargo xtask test`.
pub fn run(o: &TestArgs) -> Result<bool> {
    let boards = if o.boards.is_empty() {
        Board::ALL.to_vec()
    } else {
        o.boards.clone()
    };
    let timeout = Duration::from_secs(o.timeout);
    let (lint_passed, lint_failed) = crate::lint::lint()?;
    let (mut passed, mut failed) = host_tests()?;
    passed += lint_passed;
    failed += lint_failed;
    qemu::ensure_installed()?;
    let mut cprogs = Vec::new();
    let mut cnotices = Vec::new();
    for arch in [Arch::Aarch64, Arch::X86_64] {
        if boards.iter().any(|b| b.arch() == arch) {
            let (built, n) = crate::cprogs::build(arch)?;
            cprogs.extend(built.into_iter().map(|(name, path)| (arch, name, path)));
            cnotices.extend(n);
        }
    }
    let (mut boots, mut notices) = guest_boots(&boards, &cprogs);
    for b in &mut boots {
        b.spec.qemu_args = o.qemu.qemu_arg.clone();
        if b.spec.smp.is_none() && b.spec.board.smp_choosable() {
            b.spec.smp = o.smp;
        }
    }
    cnotices.dedup();
    notices.extend(cnotices);
    let native = host_native_suite(&mut notices)?;
    for l in &native.report {
        println!("{l}");
    }
    let mut kernels: Vec<((Arch, Profile), PathBuf)> = Vec::new();
    for b in &boots {
        let key = (b.spec.board.arch(), b.profile);
        if !kernels.iter().any(|k| k.0 == key) {
            kernels.push((key, build::kernel_with(key.0, key.1)?));
        }
    }
    for n in &notices {
        println!("notice: {n}");
    }
    println!(
        "== guest self-tests: {} boots, timeout {} s each",
        boots.len(),
        timeout.as_secs()
    );
    // Two boots at a time: TCG runs each single-vCPU guest on one host core.
    let queue = std::sync::Mutex::new(boots.into_iter().enumerate().rev().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some((i, gb)) = queue.lock().map(|mut q| q.pop()).ok().flatten() {
                    let key = (gb.spec.board.arch(), gb.profile);
                    let kernel = &kernels
                        .iter()
                        .find(|k| k.0 == key)
                        .map(|k| k.1.clone())
                        .unwrap_or_default();
                    let label = gb.label();
                    let run = match &gb.linux {
                        Some((image, init)) => linux_errno_boot(&gb.spec, image, init, timeout),
                        None => boot(&gb.spec, kernel, timeout, false),
                    };
                    let outcome = match (run, gb.check) {
                        (Ok(run), Check::Fatal(expect)) => {
                            check_fatal_boot(&label, gb.spec.board, &run, expect)
                        }
                        (Ok(run), Check::CProgram) => check_cprogram_boot(&label, &gb.spec, &run),
                        (Ok(run), Check::CThreads) => check_cthreads_boot(&label, &gb.spec, &run),
                        (Ok(run), Check::Refused) => {
                            check_refused_boot(&label, gb.spec.board, &run)
                        }
                        (Ok(run), Check::Bench) => check_bench_boot(&label, gb.spec.board, &run),
                        (Ok(run), Check::Mmview) => check_mmview_boot(&label, gb.spec.board, &run),
                        (Ok(run), Check::Errno) => check_errno_boot(&label, gb.spec.board, &run),
                        (Ok(run), Check::ErrnoLinux) => {
                            check_errno_linux_boot(&label, gb.spec.board, &run)
                        }
                        (Ok(run), Check::Tests) => check_test_boot(&label, &gb.spec, &run),
                        (Err(e), _) => Outcome {
                            label: label.clone(),
                            passed: 0,
                            failed: 1,
                            report: vec![format!("[{label}] {e}")],
                        },
                    };
                    for l in &outcome.report {
                        println!("{l}");
                    }
                    if let Ok(mut r) = results.lock() {
                        r.push((i, outcome));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|r| r.0);
    results.insert(0, (usize::MAX, native));
    println!("== summary");
    for (_, r) in &results {
        println!("{:<32} {} passed, {} failed", r.label, r.passed, r.failed);
        passed += r.passed;
        failed += r.failed;
    }
    for n in &notices {
        println!("notice: {n}");
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contpte_rows_are_all_there_or_said_not_to_apply() {
        let all = contpte_rows();
        assert_eq!(all.len(), 3 + 3 * 8 * 2 + 2);
        let plain = vec![("fork".to_string(), "order-0".to_string())];
        // Neither rows nor a reason.
        assert_eq!(contpte_problems(&[], &plain).len(), 1);
        // The reason, no rows (x86, or no switch yet).
        let na = [
            "contpte: n/a (no contpte knob at /sys/kernel/mm/folium/contpte): its rows are skipped"
                .to_string(),
        ];
        assert!(contpte_problems(&na, &plain).is_empty());
        // Every row.
        assert!(contpte_problems(&[], &all).is_empty());
        // One missing is named.
        let some: Vec<_> = all
            .iter()
            .filter(|(b, c)| !(b == "contpte-munmap" && c == "64K/on"))
            .cloned()
            .collect();
        assert_eq!(
            contpte_problems(&na, &some),
            vec!["no contpte-munmap 64K/on record".to_string()]
        );
    }

    /// `check_test_boot` of a one-CPU boot (its bring-up line added).
    fn check_boot(board: Board, cmdline: &str, r: &GuestRun) -> Outcome {
        let mut r = GuestRun {
            lines: r.lines.clone(),
            ..*r
        };
        r.lines.insert(0, "smp: 1 of 1 CPUs online: 0 (0x0)".into());
        check_test_boot(board.name(), &Spec::new(board, cmdline), &r)
    }

    #[test]
    fn every_cpu_the_guest_has_must_come_up() {
        let lines = |l: &str| vec![l.to_string()];
        assert!(cpu_problems(&lines("smp: 4 of 4 CPUs online: 0 1 2 3"), 4).is_empty());
        assert_eq!(
            cpu_problems(&lines("smp: 3 of 4 CPUs online: 0 1 2"), 4).len(),
            1
        );
        assert_eq!(
            cpu_problems(&lines("smp: 1 of 1 CPUs online: 0"), 2).len(),
            1
        );
        assert_eq!(cpu_problems(&lines("ktest: 1 passed"), 1).len(), 1);
        let mut spec = Spec::new(Board::Q35, "test");
        spec.smp = Some(4);
        assert_eq!(spec.cpus(), 4);
        assert_eq!(Spec::new(Board::Raspi3b, "test").cpus(), 4);
        assert_eq!(Spec::new(Board::Virt, "test").cpus(), 1);
        assert!(Board::Raspi4b.check_smp(2).is_err() && Board::Raspi4b.check_smp(4).is_ok());
        assert!(Board::Virt.check_smp(9).is_err() && Board::Virt.check_smp(8).is_ok());
    }

    fn run_of(lines: &[&str], exit: i32) -> GuestRun {
        GuestRun {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            exit: Some(exit),
            timed_out: false,
            banner_after: None,
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn init_lists_name_every_suite_they_run() {
        assert_eq!(suites_of("test init=utest"), ["ktest", "utest"]);
        assert_eq!(
            suites_of("test init=utest,mmtests"),
            ["ktest", "utest", "mmtests"]
        );
        assert_eq!(suites_of("init=mmtests,hello"), ["mmtests"]);
        assert!(suites_of("init=bench --quick").is_empty());
        // A suite whose summary is missing fails the boot.
        let r = run_of(
            &[
                "test utest::a ... ok",
                "utest: 1 passed, 0 failed",
                "test mmtests::b ... ok",
            ],
            0,
        );
        let o = check_boot(Board::Virt, "init=utest,mmtests", &r);
        assert!(o.failed > 0, "{:?}", o.report);
    }

    #[test]
    fn c_program_boot_must_not_report_missing_syscalls() {
        let spec = Spec::new(Board::Virt, "init=c-glibc one two");
        let mut lines = vec![
            "folium: started init (pid 1) to run c-glibc",
            "cprog: child 3 of 2 says hello",
            "cprog /c-glibc (glibc): ok, argc 3, 0 failures",
            "cprog: 1 cpus",
            "init: pid 2 exited with status 0",
        ];
        let o = check_cprogram_boot("virt", &spec, &run_of(&lines, 0));
        assert_eq!((o.passed, o.failed), (2, 0), "{:?}", o.report);
        // libc must count the guest's CPUs.
        let mut wrong = lines.clone();
        wrong[3] = "cprog: 2 cpus";
        let o = check_cprogram_boot("virt", &spec, &run_of(&wrong, 0));
        assert_eq!((o.passed, o.failed), (1, 1), "{:?}", o.report);
        lines.insert(1, "folium: syscall 293 (rseq) not implemented: ENOSYS");
        let o = check_cprogram_boot("virt", &spec, &run_of(&lines, 0));
        assert_eq!((o.passed, o.failed), (1, 1), "{:?}", o.report);
        assert!(
            o.report.iter().any(|l| l.contains("(rseq)")),
            "{:?}",
            o.report
        );
    }

    #[test]
    fn mmview_boot_counts_each_check_and_needs_a_clean_exit() {
        let lines: Vec<String> = include_str!("mmview/testdata/mmdemo-q35.txt")
            .lines()
            .map(str::to_string)
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let good = run_of(&refs, Board::Q35.exit_codes().0);
        let o = check_mmview_boot("q35:mmdemo", Board::Q35, &good);
        assert_eq!((o.passed, o.failed), (6, 0), "{:?}", o.report);
        let bad = run_of(&refs, Board::Q35.exit_codes().1);
        let o = check_mmview_boot("q35:mmdemo", Board::Q35, &bad);
        assert_eq!((o.passed, o.failed), (5, 1), "{:?}", o.report);
        // Nothing printed: one failure with the console, not six.
        let o = check_mmview_boot("q35:mmdemo", Board::Q35, &run_of(&["boom"], 0));
        assert_eq!((o.passed, o.failed), (0, 1), "{:?}", o.report);
        assert!(o.report.iter().any(|l| l.ends_with("boom")));
    }

    #[test]
    fn user_suites_need_a_passing_audit_after_them() {
        let cmd = "init=utest";
        let mut lines = vec![
            "test utest::a ... ok",
            "utest: 1 passed, 0 failed",
            "init: mm audit after utest: ok; pages: managed 9 = free 9",
        ];
        let o = check_boot(Board::Virt, cmd, &run_of(&lines, 0));
        assert_eq!((o.passed, o.failed), (1, 0), "{:?}", o.report);
        lines[2] = "init: mm audit after utest FAILED:";
        let o = check_boot(Board::Virt, cmd, &run_of(&lines, 0));
        assert_eq!(o.failed, 1, "{:?}", o.report);
        lines.pop();
        let o = check_boot(Board::Virt, cmd, &run_of(&lines, 0));
        assert_eq!(o.failed, 1, "{:?}", o.report);
        assert!(
            o.report
                .iter()
                .any(|l| l.contains("no passing mm audit after utest"))
        );
    }

    #[test]
    fn the_fuzz_boot_is_a_suite_with_its_audit() {
        let cmd = fuzz_test_cmdline(Board::Q35);
        assert_eq!(suites_of(&cmd), ["fuzz"]);
        let mut lines = vec![
            "folium: syscall 4294967295 not implemented: ENOSYS (numbers past 511 are reported once)",
            "fuzz: ok seed 1003 rounds 0..150 syscalls 18000",
            "test fuzz::seeded_run ... ok",
            "fuzz: 1 passed, 0 failed",
            "init: mm audit after fuzz: ok; pages: ...",
        ];
        let o = check_boot(Board::Q35, &cmd, &run_of(&lines, 33));
        assert_eq!((o.passed, o.failed), (1, 0), "{:?}", o.report);
        // Numbers past the table reported more than once: the console
        // flood is back.
        lines.insert(0, "folium: syscall 700 not implemented: ENOSYS");
        let o = check_boot(Board::Q35, &cmd, &run_of(&lines, 33));
        assert_eq!(o.failed, 1, "{:?}", o.report);
    }

    #[test]
    fn strips_escapes() {
        assert_eq!(clean("\x1b[2J\x1b[0mSeaBIOS\r"), "SeaBIOS");
    }

    #[test]
    fn passing_boot_counts_each_test() {
        let r = run_of(
            &[
                "Folium 0.1 on virt",
                "test a ... ok",
                "test b ... ok",
                "ktest: 2 passed, 0 failed",
            ],
            0,
        );
        let o = check_boot(Board::Virt, "test", &r);
        assert_eq!((o.passed, o.failed), (2, 0));
    }

    #[test]
    fn failures_panics_and_bad_summaries_fail() {
        let q35 = |r: &GuestRun| check_boot(Board::Q35, "test", r);
        let r = run_of(
            &[
                "test a ... ok",
                "test b ... FAILED: x",
                "ktest: 1 passed, 1 failed",
            ],
            35,
        );
        assert_eq!(q35(&r).failed, 1);
        let r = run_of(&["test a ... ok", "KERNEL PANIC: boom"], 35);
        assert_eq!(q35(&r).failed, 1);
        let r = run_of(&["test a ... ok", "ktest: 2 passed, 0 failed"], 33);
        assert_eq!(q35(&r).failed, 1);
        let r = run_of(&["test a ... ok", "ktest: 1 passed, 0 failed"], 35);
        assert_eq!(q35(&r).failed, 1, "a failure exit status fails the boot");
    }

    #[test]
    fn user_suite_needs_its_own_summary() {
        let cmd = "test init=utest";
        let lines = [
            "test a ... ok",
            "ktest: 1 passed, 0 failed",
            "test utest::b ... ok",
            "test utest::c ... ok",
            "utest: 2 passed, 0 failed",
            "init: mm audit after utest: ok; pages: ...",
        ];
        let o = check_boot(Board::Virt, cmd, &run_of(&lines, 0));
        assert_eq!((o.passed, o.failed), (3, 0));
        let missing = run_of(&lines[..3], 0);
        assert_eq!(check_boot(Board::Virt, cmd, &missing).failed, 1);
        let wrong = run_of(
            &[
                "test a ... ok",
                "ktest: 1 passed, 0 failed",
                "test utest::b ... ok",
                "utest: 2 passed, 0 failed",
            ],
            0,
        );
        assert_eq!(check_boot(Board::Virt, cmd, &wrong).failed, 1);
    }

    #[test]
    fn fatal_boot_must_report_and_fail() {
        let good = run_of(
            &[
                "UNEXPECTED EXCEPTION: synchronous data abort at EL1",
                "  ELR 0x1",
            ],
            1,
        );
        let check = |r: &GuestRun, e| check_fatal_boot("virt", Board::Virt, r, e);
        assert_eq!(check(&good, &UNEXPECTED_EXCEPTION).passed, 1);
        assert_eq!(
            check(&good, &STACK_OVERFLOW).failed,
            1,
            "a fault report is not an overflow report"
        );
        let silent = run_of(&["nothing"], 1);
        assert_eq!(check(&silent, &UNEXPECTED_EXCEPTION).failed, 1);
        let overflow = run_of(
            &["KERNEL STACK OVERFLOW: data abort, SP 0x1", "  ELR 0x1"],
            1,
        );
        assert_eq!(check(&overflow, &STACK_OVERFLOW).passed, 1);
        let reset = run_of(&["KERNEL STACK OVERFLOW: x", "  ELR 0x1"], 0);
        assert_eq!(
            check(&reset, &STACK_OVERFLOW).failed,
            1,
            "exit status 0 is a failure"
        );
    }
}
