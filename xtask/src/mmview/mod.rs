//! `cargo xtask mmview`: boot a program that prints snapshots of its own
//! page tables (Folium's `/sys/kernel/mm/folium/ptdump` and `mmview`
//! files, between the markers of `userspace/programs/src/mmview.rs`),
//! print each snapshot's ptdump, and draw the address space as an SVG,
//! one band per snapshot ([`svg`]).
//!
//! The default program is `mmdemo` (64 KiB and 2 MiB folios, an mprotect,
//! fork and copy-on-write); `--program NAME` boots another built-in
//! program and `--init PATH` a static Linux ELF of your own, which
//! prints the same markers. The guest runs under TCG unless `--accel`
//! says otherwise. `--console FILE` boots nothing and reads the
//! snapshots from a saved console (a real board's serial log, say). The
//! picture goes to `out/mmview/PROGRAM-BOARD.svg` (`out/mmview/FILE.svg`
//! for `--console`) unless `--out` names a file.
//!
//! The exit status is the program's (128 + N if signal N ended it), or 1
//! if it printed no snapshot or the guest failed (0 for a saved console
//! that does not say how the program ended).

pub mod check;
pub mod parse;
pub mod svg;

use std::path::PathBuf;
use std::time::Duration;

use crate::console::InitExit;
use crate::qemu::{self, Accel, Spec};
use crate::{MmviewArgs, Result, build};

/// The program `mmview` boots by default.
pub const DEFAULT_PROGRAM: &str = "mmdemo";

/// A one-line account of a snapshot: runs, pages, and folios by size.
fn describe(s: &parse::Snapshot) -> String {
    let mut by_order = std::collections::BTreeMap::new();
    for r in &s.runs {
        if let Some(f) = r.folio.filter(|_| !r.zero) {
            by_order
                .entry(f.order)
                .or_insert_with(Vec::new)
                .push(f.head);
        }
    }
    let folios: Vec<String> = by_order
        .into_iter()
        .map(|(o, mut heads)| {
            heads.sort_unstable();
            heads.dedup();
            format!("{}x{}", heads.len(), svg::size_name(4096 << o))
        })
        .collect();
    let pages = |f: &dyn Fn(&parse::Run) -> bool| -> u64 {
        s.runs.iter().filter(|r| f(r)).map(parse::Run::pages).sum()
    };
    format!(
        "{} runs, {} pages ({} shared copy-on-write, {} read-only, {} folded); folios {}{}",
        s.runs.len(),
        pages(&|_| true),
        pages(&|r| r.shared()),
        pages(&|r| !r.writable),
        pages(&|r| r.cont),
        if folios.is_empty() {
            "none".to_string()
        } else {
            folios.join(" ")
        },
        if s.truncated {
            " (TRUNCATED by the kernel's line cap)"
        } else {
            ""
        }
    )
}

/// What was run and where its console came from.
struct Source {
    /// The program's name (the file's stem for `--console`).
    program: String,
    /// For the picture's titles: the board, and what it ran on.
    board: String,
    conditions: String,
    lines: Vec<String>,
    /// The guest's outcome (`None` for `--console`).
    guest: Option<(crate::test::GuestRun, crate::qemu::Board)>,
}

/// Boots the program and collects its console.
fn boot(o: &MmviewArgs) -> Result<Source> {
    let board = o.board;
    if let Some(m) = &o.machine.mem {
        board.check_mem(m)?;
    }
    if let Some(p) = &o.init {
        let bytes = std::fs::read(p).map_err(|e| format!("--init {}: {e}", p.display()))?;
        crate::elf::check_static_program(&bytes, board.arch())
            .map_err(|e| format!("--init {}: {e}", p.display()))?;
    }
    let args = o.args.join(" ");
    let (program, cmdline, initrd) = match &o.init {
        Some(p) => {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                .unwrap_or("initrd")
                .to_string();
            let cmd = format!("initrd={name} init={name} {args}");
            (name, cmd, Some(p.clone()))
        }
        None => {
            let name = o.program.as_deref().unwrap_or(DEFAULT_PROGRAM);
            if name.is_empty() || name.contains([',', ' ', '=']) {
                return Err(format!("--program {name:?}: one program name"));
            }
            (name.to_string(), format!("init={name} {args}"), None)
        }
    };
    qemu::ensure_installed()?;
    let kernel = build::kernel(board.arch())?;
    let spec = Spec {
        board,
        cpu: o.machine.cpu.clone(),
        accel: o.machine.accel.unwrap_or(Accel::Tcg),
        mem: o.machine.mem.clone(),
        extra_machine: None,
        smp: o.machine.smp,
        cmdline: cmdline.trim_end().to_string(),
        initrd,
        qemu_args: o.qemu.qemu_arg.clone(),
    };
    eprintln!(
        "xtask: booting {} ({}) with init={program}",
        spec.label(),
        spec.accel.name()
    );
    let run = crate::test::boot(&spec, &kernel, Duration::from_secs(o.timeout), false)?;
    Ok(Source {
        program,
        board: board.name().to_string(),
        conditions: format!("{}, {}", spec.cpu_name(), spec.accel.name()),
        lines: run.lines.clone(),
        guest: Some((run, board)),
    })
}

/// Reads a saved console.
fn saved(path: &std::path::Path) -> Result<Source> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--console {}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("console")
        .to_string();
    Ok(Source {
        program: stem,
        board: "a saved console".into(),
        conditions: format!("from {}", path.display()),
        lines: text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect(),
        guest: None,
    })
}

/// `cargo xtask mmview`.
pub fn run(o: &MmviewArgs) -> Result<u8> {
    let src = match &o.console {
        Some(p) => saved(p)?,
        None => boot(o)?,
    };
    let program = &src.program;
    let mut exit = InitExit::default();
    for l in &src.lines {
        exit.feed(l);
    }
    let snaps = match parse::parse(&src.lines) {
        Ok(s) if !s.is_empty() => s,
        other => {
            let why = match other {
                Err(e) => e,
                Ok(_) => format!("{program} printed no `==== mmview snapshot` marker"),
            };
            println!("xtask: the console's last lines:");
            let tail = src.lines.len().saturating_sub(25);
            for l in &src.lines[tail..] {
                println!("  {l}");
            }
            return Err(why);
        }
    };
    // The program's own lines (not the snapshots), then each snapshot.
    let mut inside = false;
    for l in &src.lines {
        if l.starts_with("==== mmview snapshot ") {
            inside = true;
        } else if l.starts_with("==== mmview end ") {
            inside = false;
        } else if !inside && l.starts_with(&format!("{program}:")) {
            println!("{l}");
        }
    }
    for s in &snaps {
        println!("== {} (pid {}): {}", s.name, s.pid, describe(s));
        for l in &s.ptdump {
            println!("{l}");
        }
    }
    let model = svg::layout(&snaps);
    let title = format!("mmview: {program} on {}", src.board);
    let subtitle = format!(
        "{} snapshots of the user page tables ({}, {}); one band per snapshot, the address axis cut at the holes",
        snaps.len(),
        snaps[0].format,
        src.conditions,
    );
    let svg_text = svg::render(&model, &title, &subtitle)?;
    let out = o.out.clone().unwrap_or_else(|| {
        let name = match o.console {
            Some(_) => format!("{program}.svg"),
            None => format!("{program}-{}.svg", o.board.name()),
        };
        build::root().join("out").join("mmview").join(name)
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&out, svg_text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "xtask: {} snapshots drawn in {}",
        snaps.len(),
        display(&out)
    );
    if let (Some(code), Some(said)) = (exit.code, exit.describe(program)) {
        println!("xtask: {said}");
        return Ok(u8::try_from(code).unwrap_or(u8::MAX));
    }
    match &src.guest {
        None => Ok(0),
        Some((run, _)) if run.timed_out => {
            println!("xtask: the guest timed out after {} s", o.timeout);
            Ok(1)
        }
        Some((run, board)) => Ok(u8::from(run.exit != Some(board.exit_codes().0))),
    }
}

/// `path` relative to the current directory when it is inside it.
fn display(path: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .map(PathBuf::from)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
