//! Ordinary static C programs (glibc and musl) built from `userspace/c`
//! with Debian's compilers, so the test suite runs binaries Folium did not
//! make. The compilers are installed like QEMU is: with apt when root,
//! else the exact command is printed and the programs are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::Result;
use crate::build::{self, Arch, run_cmd};

/// One C toolchain: the program name it produces, the compiler, its flags.
struct Toolchain {
    name: &'static str,
    cc: &'static str,
    flags: &'static [&'static str],
    package: &'static str,
}

fn toolchains(arch: Arch) -> &'static [Toolchain] {
    match arch {
        Arch::X86_64 => &[
            Toolchain {
                name: "c-glibc",
                cc: "gcc",
                flags: &["-static"],
                package: "gcc",
            },
            Toolchain {
                name: "c-glibc-pie",
                cc: "gcc",
                flags: &["-static-pie"],
                package: "gcc",
            },
            Toolchain {
                name: "c-musl",
                cc: "musl-gcc",
                flags: &["-static"],
                package: "musl-tools",
            },
        ],
        Arch::Aarch64 => &[
            Toolchain {
                name: "c-glibc",
                cc: "aarch64-linux-gnu-gcc",
                flags: &["-static"],
                package: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
            },
            Toolchain {
                name: "c-glibc-pie",
                cc: "aarch64-linux-gnu-gcc",
                flags: &["-static-pie"],
                package: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
            },
        ],
    }
}

fn have(cc: &str) -> bool {
    Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the cross compilers and musl once per run (as root with apt);
/// returns notices for what stays missing.
fn ensure_compilers() -> &'static Vec<String> {
    static NOTICES: OnceLock<Vec<String>> = OnceLock::new();
    NOTICES.get_or_init(|| {
        let wanted = ["aarch64-linux-gnu-gcc", "musl-gcc", "gcc"];
        if wanted.iter().all(|c| have(c)) {
            return Vec::new();
        }
        let packages = "gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross musl-tools";
        let root = Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .is_some_and(|o| o.stdout.trim_ascii() == b"0");
        if root && Path::new("/usr/bin/apt-get").exists() {
            eprintln!("xtask: installing C compilers ({packages})");
            let _ = run_cmd(Command::new("apt-get").args(["update", "-q"]));
            let _ = run_cmd(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-q"])
                    .args(packages.split(' ')),
            );
        }
        wanted
            .iter()
            .filter(|c| !have(c))
            .map(|c| {
                format!("C programs needing {c} skipped: it is not installed (as root: apt-get install -y {packages})")
            })
            .collect()
    })
}

/// `out` exists and is no older than `src`.
fn fresh(out: &Path, src: &Path) -> bool {
    std::fs::metadata(out)
        .and_then(|m| m.modified())
        .ok()
        .zip(std::fs::metadata(src).and_then(|m| m.modified()).ok())
        .is_some_and(|(o, s)| o >= s)
}

/// The suffix of the threads program's names (`c-glibc-threads`).
pub const THREADS_SUFFIX: &str = "-threads";

/// What [`build()`] produced: `(name, path)` of each program, and notices
/// for what could not be built.
pub type Built = (Vec<(String, PathBuf)>, Vec<String>);

/// Compiles `src` into `out` with toolchain `t`, unless `out` is fresh.
fn compile(t: &Toolchain, src: &Path, out: &Path) -> Result<()> {
    if fresh(out, src) {
        return Ok(());
    }
    run_cmd(
        Command::new(t.cc)
            .args(t.flags)
            .args(["-O2", "-pthread", "-o"])
            .arg(out)
            .arg(src),
    )
    .map_err(|e| format!("{e} (package {})", t.package))
}

/// Builds the C programs for `arch`: `(name, path)` for each that could be
/// built, and a notice for each that could not.
pub fn build(arch: Arch) -> Result<Built> {
    let mut notices = ensure_compilers().clone();
    let src = build::root().join("userspace/c/cprog.c");
    let out_dir = build::target_dir().join(arch.target()).join("cprogs");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut built = Vec::new();
    for t in toolchains(arch) {
        if !have(t.cc) {
            continue;
        }
        let out = out_dir.join(t.name);
        compile(t, &src, &out)?;
        // A truncated copy (ELF header and program headers intact, the
        // segments cut off) for the refusal test.
        let bytes = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let cut = out.with_file_name(format!("{}.truncated", t.name));
        std::fs::write(&cut, &bytes[..bytes.len().min(4096)])
            .map_err(|e| format!("{}: {e}", cut.display()))?;
        built.push((t.name.to_string(), out));
    }
    // The threads program (`userspace/c/threads.c`), with each libc.
    let threads_src = build::root().join("userspace/c/threads.c");
    for t in toolchains(arch)
        .iter()
        .filter(|t| !t.name.ends_with("-pie") && have(t.cc))
    {
        let name = format!("{}{THREADS_SUFFIX}", t.name);
        let out = out_dir.join(&name);
        compile(t, &threads_src, &out)?;
        built.push((name, out));
    }
    // The errno suite (static glibc on both architectures), run on Folium
    // and on Linux and compared case by case (crate::errno).
    if let Some(t) = toolchains(arch)
        .iter()
        .find(|t| t.name == "c-glibc" && have(t.cc))
    {
        let src = build::root().join("userspace/c/errno.c");
        let out = out_dir.join(crate::errno::PROGRAM);
        compile(t, &src, &out)?;
        built.push((crate::errno::PROGRAM.to_string(), out));
    }
    if arch == Arch::Aarch64 {
        notices.push(
            "aarch64 musl: Debian ships no aarch64 musl cross compiler; only glibc is tested there"
                .into(),
        );
    }
    Ok((built, notices))
}
