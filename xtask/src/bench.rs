//! `cargo xtask bench`: boots the benchmark boards with each in-guest
//! benchmark, shows the guest's tables as they print, and saves the JSON
//! objects the guest printed to `out/bench/<bench>-<board>.json`.

use std::time::Duration;

use crate::build::{self, Arch};
use crate::qemu::{self, Board, Spec};
use crate::test::boot;
use crate::{Opts, Result};

/// The in-guest benchmarks (kernel command lines) and their file stems:
/// the kernel's page-allocator benchmark, the user-space syscall
/// benchmark, and the anonymous-memory fault benchmark (256 MiB per
/// repetition, every folio size), the last two run by init.
const BENCHES: [(&str, &str); 3] = [
    ("bench-alloc", "alloc"),
    ("init=bench-sys", "sys"),
    ("init=bench fault --size 256 --iters 3", "fault"),
];

pub fn run(o: &Opts) -> Result<bool> {
    let boards = if o.boards.is_empty() {
        vec![Board::Virt, Board::Q35]
    } else {
        o.boards.clone()
    };
    qemu::ensure_installed()?;
    let out_dir = build::root().join("out").join("bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut ok = true;
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let on_arch: Vec<Board> = boards
            .iter()
            .copied()
            .filter(|b| b.arch() == arch)
            .collect();
        if on_arch.is_empty() {
            continue;
        }
        let kernel = build::kernel(arch)?;
        for board in on_arch {
            for (word, stem) in BENCHES {
                let mut spec = Spec::new(board, word);
                if matches!(board, Board::Virt | Board::Q35) {
                    spec.mem = Some(o.mem.clone().unwrap_or_else(|| "1G".into()));
                }
                spec.cpu = o.cpu.clone();
                println!("== {word} on {}", spec.label());
                let run = boot(
                    &spec,
                    &kernel,
                    Duration::from_secs(o.timeout.unwrap_or(1200)),
                    true,
                )?;
                let objects: Vec<&str> = run
                    .lines
                    .iter()
                    .map(String::as_str)
                    .filter(|l| l.starts_with('{'))
                    .collect();
                let passed =
                    run.exit == Some(board.exit_codes().0) && !run.timed_out && !objects.is_empty();
                if !passed {
                    println!(
                        "{word} on {} failed (exit {:?}, timed out {})",
                        spec.label(),
                        run.exit,
                        run.timed_out
                    );
                    ok = false;
                    continue;
                }
                let path = out_dir.join(format!("{stem}-{}.json", board.name()));
                let body = format!("[\n  {}\n]\n", objects.join(",\n  "));
                std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {} ({} measurements)", path.display(), objects.len());
            }
        }
    }
    Ok(ok)
}
