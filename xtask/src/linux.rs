//! Booting a real Linux kernel in the same QEMU machine Folium boots on,
//! with one of Folium's static user programs (the benchmark) as its init,
//! so the two kernels can be compared running the same binary.
//!
//! ```text
//! cargo xtask qemu-linux [--board virt|q35] [--mem 1G] [--cpu C] [--accel tcg|kvm]
//!                        [--timeout SECS] --linux-kernel PATH|debian
//!                        [--linux-cmdline ARGS] [-- bench args]
//! ```
//!
//! Linux boots with [`DEFAULT_PARAMS`] after the console and panic
//! settings xtask needs, unless `--linux-cmdline` replaces them (see
//! [`params`]).
//!
//! Kernel images are never stored in the repository: `debian` fetches
//! Debian's unsigned kernel package into the user's cache directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::build::{self, Arch, run_cmd};
use crate::cpio;
use crate::qemu::{self, Accel, Board, Spec};
use crate::test::{GuestRun, run_console};
use crate::{QemuLinuxArgs, Result};

/// The oldest Linux worth comparing with: mTHP (per-size anonymous folio
/// knobs under sysfs) arrived in 6.8 and settled in 6.9.
const MIN_VERSION: (u64, u64) = (6, 9);

/// Debian's name for an architecture.
fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "arm64",
        Arch::X86_64 => "amd64",
    }
}

/// Where fetched kernels live: `$XDG_CACHE_HOME/folium/linux`, else
/// `~/.cache/folium/linux`; never inside the repository.
fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .ok_or("neither XDG_CACHE_HOME nor HOME is set: no cache for Linux kernels")?;
    let dir = base.join("folium").join("linux");
    if !dir.is_absolute() || dir.starts_with(build::root()) {
        return Err(format!(
            "kernel cache {} would be inside the repository; set XDG_CACHE_HOME",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The version of a `linux-image-<ver>-<arch>-unsigned` package of the
/// plain flavour (not `cloud`, `rt`, ...), as numbers: `6.12.95+deb12`
/// gives `[6, 12, 95]`, `6.1.0-47` gives `[6, 1, 0, 47]`.
fn package_version(name: &str, deb_arch: &str) -> Option<Vec<u64>> {
    let ver = name
        .strip_prefix("linux-image-")?
        .strip_suffix(&format!("-{deb_arch}-unsigned"))?;
    let mut nums = Vec::new();
    for tok in ver.split(['.', '+', '-']) {
        if let Ok(n) = tok.parse() {
            nums.push(n);
        } else if !tok
            .strip_prefix("deb")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            // A flavour word: some other kernel configuration.
            return None;
        }
    }
    (nums.len() >= 2).then_some(nums)
}

fn new_enough(v: &[u64]) -> bool {
    (v[0], v[1]) >= MIN_VERSION
}

/// The newest kernel of `deb_arch` already unpacked in the cache, as
/// `(package, vmlinuz)`.
fn cached_kernel(cache: &Path, deb_arch: &str) -> Option<(String, PathBuf)> {
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(cache).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(v) = package_version(&name, deb_arch).filter(|v| new_enough(v)) else {
            continue;
        };
        if let Some(img) = vmlinuz_in(&e.path()) {
            found.push((v, name, img));
        }
    }
    found.sort();
    found.pop().map(|(_, n, p)| (n, p))
}

/// The `boot/vmlinuz-*` of an unpacked kernel package.
fn vmlinuz_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| o.stdout.trim_ascii() == b"0")
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", build::show_command(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}\n{}",
            build::show_command(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes apt know `deb_arch`'s packages: a foreign architecture must be
/// added to dpkg and its package lists fetched (as root).
fn ensure_apt_arch(deb_arch: &str) -> Result<()> {
    let native = output(Command::new("dpkg").arg("--print-architecture"))?;
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if native.trim() == deb_arch || foreign.split_whitespace().any(|a| a == deb_arch) {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "apt does not know {deb_arch} packages. As root, run:\n\n\
             dpkg --add-architecture {deb_arch}\napt-get update\n\n\
             then run this command again (it downloads the kernel as any user)."
        ));
    }
    eprintln!("xtask: adding the {deb_arch} architecture to dpkg for its kernel package");
    run_cmd(Command::new("dpkg").args(["--add-architecture", deb_arch]))?;
    run_cmd(Command::new("apt-get").args(["update", "-q"]))
}

/// The newest plain `linux-image-<ver>-<arch>-unsigned` package apt can
/// download (from any configured suite, backports and security included)
/// that is at least [`MIN_VERSION`].
fn newest_package(deb_arch: &str) -> Result<Option<String>> {
    let pattern = format!("^linux-image-[0-9].*-{deb_arch}-unsigned$");
    let list = output(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    let mut names: Vec<(Vec<u64>, String)> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| Some((package_version(n, deb_arch)?, n.to_string())))
        .filter(|(v, _)| new_enough(v))
        .collect();
    names.sort();
    names.dedup();
    // A name can be listed without anything to download (only mentioned by
    // another package); the first with a candidate version wins.
    for (_, name) in names.iter().rev() {
        let policy =
            output(Command::new("apt-cache").args(["policy", &format!("{name}:{deb_arch}")]))?;
        let candidate = policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(str::trim);
        if candidate.is_some_and(|c| c != "(none)") {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Fetches and unpacks Debian's newest suitable kernel for `arch` into the
/// cache; returns its `boot/vmlinuz-*`.
fn debian_kernel(arch: Arch) -> Result<PathBuf> {
    let da = deb_arch(arch);
    let cache = cache_dir()?;
    if let Some((name, img)) = cached_kernel(&cache, da) {
        eprintln!("xtask: Linux {name} from the cache ({})", img.display());
        return Ok(img);
    }
    for tool in ["apt-get", "apt-cache", "dpkg"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "--linux-kernel debian needs Debian's {tool}; pass a kernel image path instead"
            ));
        }
    }
    ensure_apt_arch(da)?;
    let name = newest_package(da)?.ok_or_else(|| {
        format!(
            "no linux-image-6.X-{da}-unsigned package of Linux {}.{} or newer is known to apt. \
             Add bookworm-backports (`cargo xtask qemu-run` does, as root) and run `apt-get update`.",
            MIN_VERSION.0, MIN_VERSION.1
        )
    })?;
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let staging = cache.join(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    eprintln!("xtask: downloading {name} ({da}) into {}", cache.display());
    run_cmd(
        Command::new("apt-get")
            .args(["download", "-q", &format!("{name}:{da}")])
            .current_dir(&staging),
    )?;
    let deb = std::fs::read_dir(&staging)
        .map_err(|e| format!("{}: {e}", staging.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download left no .deb in {}", staging.display()))?;
    let root = staging.join("root");
    run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    // Only boot/ is kept (the image, its config and System.map): the
    // modules are most of the package and the initramfs loads none.
    let entry = cache.join(&name);
    std::fs::create_dir_all(&entry).map_err(|e| format!("{}: {e}", entry.display()))?;
    std::fs::rename(root.join("boot"), entry.join("boot"))
        .map_err(|e| format!("{name}: no boot/ directory in the package: {e}"))?;
    let _ = std::fs::remove_dir_all(&staging);
    let img =
        vmlinuz_in(&entry).ok_or_else(|| format!("{name}: no boot/vmlinuz-* in the package"))?;
    eprintln!("xtask: Linux {name} unpacked: {}", img.display());
    Ok(img)
}

/// Checks that `path` holds a kernel QEMU's `-kernel` boots for `arch`:
/// an arm64 `Image` (or its gzip-compressed form, which QEMU inflates
/// itself) or an x86 `bzImage`.
fn check_image(path: &Path, arch: Arch) -> Result<()> {
    use std::io::Read;
    let mut head = vec![0u8; 0x210];
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let n = f
        .read(&mut head)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    head.truncate(n);
    let ok = match arch {
        // The arm64 boot protocol puts "ARM\x64" at offset 56.
        Arch::Aarch64 => head.starts_with(&[0x1f, 0x8b]) || head.get(56..60) == Some(b"ARM\x64"),
        // The x86 boot protocol puts "HdrS" at offset 0x202.
        Arch::X86_64 => head.get(0x202..0x206) == Some(b"HdrS"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: not {}",
            path.display(),
            match arch {
                Arch::Aarch64 => "an arm64 Image (raw or gzip-compressed)",
                Arch::X86_64 => "an x86 bzImage",
            }
        ))
    }
}

/// The Linux kernel image to boot for `arch`: `spec` is a path to an arm64
/// `Image` (raw or gzip-compressed, as Debian's `vmlinuz` is) or an x86
/// `bzImage`, or the word `debian`, which fetches Debian's newest
/// `linux-image-<ver>-{arm64,amd64}-unsigned` (6.9 or newer) with
/// `apt-get download`, unpacks it into `~/.cache/folium/linux/<package>/`
/// (or under `$XDG_CACHE_HOME`) and reuses that copy afterwards. Adding the
/// arm64 architecture to apt on an amd64 host needs root; without it the
/// commands to run are printed.
pub fn resolve_kernel(spec: &str, arch: Arch) -> Result<PathBuf> {
    let path = if spec == "debian" {
        debian_kernel(arch)?
    } else {
        PathBuf::from(spec)
    };
    check_image(&path, arch)?;
    Ok(path)
}

/// Writes an initramfs (an uncompressed `newc` cpio) to `out`: `/init` is
/// `bench` (mode 0755), with empty `/proc` and `/sys` for init to mount
/// and `/dev` holding `/dev/console`, the node the kernel opens as init's
/// standard input, output and error before it starts init.
pub fn initramfs(bench: &Path, out: &Path) -> Result<()> {
    let data = std::fs::read(bench).map_err(|e| format!("{}: {e}", bench.display()))?;
    if !data.starts_with(b"\x7fELF") {
        return Err(format!("{}: not an ELF file", bench.display()));
    }
    let mut w = cpio::Writer::new();
    w.dir("dev", 0o755);
    // 5:1 is the console device on every Linux.
    w.char_dev("dev/console", 0o600, 5, 1);
    w.dir("proc", 0o755);
    w.dir("sys", 0o755);
    w.file("init", 0o755, &data);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(out, w.finish()).map_err(|e| format!("{}: {e}", out.display()))
}

/// The serial console Linux writes to on `board`.
fn console(board: Board) -> Result<&'static str> {
    match board {
        Board::Virt => Ok("ttyAMA0"),
        Board::Q35 => Ok("ttyS0"),
        b => Err(format!(
            "{}: Linux boots only on virt and q35 here",
            b.name()
        )),
    }
}

/// What one Linux boot printed and how it ended.
pub struct LinuxRun {
    /// The console, escape sequences removed, plus QEMU's own messages
    /// prefixed `qemu: `.
    pub lines: Vec<String>,
    /// Linux said it was powering down (init called reboot(2) with
    /// `RB_POWER_OFF`) and QEMU exited.
    pub powered_off: bool,
    /// The first `Kernel panic` line, if Linux panicked.
    pub panic: Option<String>,
    pub timed_out: bool,
    /// QEMU's exit status.
    pub exit: Option<i32>,
    /// Wall time from QEMU's start to the first line init printed.
    pub init_after: Option<Duration>,
    /// Wall time from QEMU's start to its exit (or the timeout).
    pub elapsed: Duration,
    /// The kernel command line Linux was booted with.
    pub cmdline: String,
}

impl LinuxRun {
    /// Init ran to its end and powered the machine off in time.
    pub fn finished(&self) -> bool {
        self.powered_off && self.panic.is_none() && !self.timed_out
    }

    /// The JSON objects the benchmark printed (its lines starting with `{`).
    pub fn json_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with('{'))
            .collect()
    }

    fn from_guest(run: GuestRun, cmdline: String) -> LinuxRun {
        // Linux's message when it is about to power off (loud enough to
        // pass `quiet`); a restart or a panic prints something else.
        let powered_off = run.exit == Some(0)
            && !run.timed_out
            && run.lines.iter().any(|l| l.ends_with("reboot: Power down"));
        let panic = run
            .lines
            .iter()
            .find(|l| l.contains("Kernel panic"))
            .cloned();
        LinuxRun {
            lines: run.lines,
            powered_off,
            panic,
            timed_out: run.timed_out,
            exit: run.exit,
            init_after: run.banner_after,
            elapsed: run.elapsed,
            cmdline,
        }
    }
}

/// Whether a console line is the kernel's: with `quiet` Linux prints only
/// warnings and worse, each stamped `[ seconds]`; QEMU's own messages
/// come prefixed `qemu: `. The first other line is init's.
fn from_init(line: &str) -> bool {
    let l = line.trim();
    !l.is_empty() && !l.starts_with('[') && !l.starts_with("qemu:")
}

/// The kernel parameters every Linux boot gets unless `--linux-cmdline`
/// replaces them. Debian's kernels zero every page they allocate
/// (`INIT_ON_ALLOC_DEFAULT_ON`), randomize the kernel's place (KASLR) and
/// unmap the kernel while user code runs (page-table isolation: x86
/// `PAGE_TABLE_ISOLATION`; arm64 `UNMAP_KERNEL_AT_EL0`, which KASLR turns
/// on even on CPUs Meltdown spares). Folium does none of this, so by
/// default Linux is booted without it: a comparison of the memory
/// management, not of these hardening costs.
pub const DEFAULT_PARAMS: &str = "init_on_alloc=0 mitigations=off nokaslr";

/// Parameters xtask sets itself and `--linux-cmdline` may not: the console
/// it reads, and init, which must be the benchmark of the initramfs.
const PLUMBING: [&str; 3] = ["console=", "init=", "rdinit="];

/// The kernel parameters for a Linux boot: `replace` (`--linux-cmdline`,
/// one string of words, possibly empty) or else [`DEFAULT_PARAMS`], as
/// words joined by single spaces. Refused: `--`, which would end the
/// kernel's parameters and hand the rest to init, and the parameters
/// xtask's own plumbing sets ([`PLUMBING`]).
pub fn params(replace: Option<&str>) -> Result<String> {
    let Some(words) = replace else {
        return Ok(DEFAULT_PARAMS.to_string());
    };
    let words: Vec<&str> = words.split_whitespace().collect();
    for w in &words {
        if *w == "--" {
            return Err(
                "--linux-cmdline: `--` would end the kernel's parameters; init's \
                 arguments go after xtask's own `--`"
                    .into(),
            );
        }
        if let Some(p) = PLUMBING.iter().find(|p| w.starts_with(**p)) {
            return Err(format!(
                "--linux-cmdline: {w}: xtask sets {p} itself (the console it reads, \
                 the benchmark as init)"
            ));
        }
    }
    Ok(words.join(" "))
}

/// The kernel command line for init arguments `args`: xtask's console and
/// panic settings, then `params` (see [`params`]), then `--`; everything
/// after `--` becomes init's argv, so words like `fault` reach the program
/// rather than being taken for kernel parameters.
fn cmdline(board: Board, params: &str, args: &[String]) -> Result<String> {
    let mut c = format!("console={} panic=-1 quiet", console(board)?);
    if !params.is_empty() {
        c.push(' ');
        c.push_str(params);
    }
    c.push_str(" --");
    for a in args {
        if a.is_empty() || a.contains(char::is_whitespace) {
            return Err(format!(
                "init argument `{a}`: the kernel command line cannot carry an empty \
                 word or one with spaces"
            ));
        }
        c.push(' ');
        c.push_str(a);
    }
    Ok(c)
}

/// Boots `b.kernel` with `initrd` (see [`initramfs`]) on the machine
/// `machine` describes (board, CPU, accelerator, RAM, extra machine
/// options: the one Folium's boot of the same board gets), printing the
/// console as it arrives and collecting it until QEMU exits or
/// `b.timeout` passes. The command line is xtask's console settings and
/// `b.params` (see [`params`]), then `b.args` as init's arguments; `machine`'s own command line and initrd are replaced. There
/// is no disk and no network; `-no-reboot` makes a panic (`panic=-1`) end
/// QEMU too. Only `virt` and `q35` are supported.
fn boot(machine: &Spec, initrd: &Path, b: &BenchBoot<'_>) -> Result<LinuxRun> {
    let mut spec = machine.clone();
    spec.cmdline = cmdline(spec.board, b.params, b.args)?;
    spec.initrd = Some(initrd.to_path_buf());
    // Folium's own command line: its semihosting and isa-debug-exit
    // hooks stay unused by Linux and change nothing else.
    let mut cmd = spec.command(b.kernel, false)?;
    if spec.board == Board::Virt {
        // virt would otherwise get QEMU's default network card (q35's
        // command already has `-nic none`).
        cmd.args(["-nic", "none"]);
    }
    let run = run_console(cmd, b.timeout, true, from_init)?;
    Ok(LinuxRun::from_guest(run, spec.cmdline))
}

/// A Linux boot with the benchmark as init: the image, its kernel
/// parameters (see [`params`]), init's arguments, and how long it may
/// take.
pub struct BenchBoot<'a> {
    /// The Linux image (see [`resolve_kernel`]).
    pub kernel: &'a Path,
    /// Kernel parameters after xtask's console settings.
    pub params: &'a str,
    /// The benchmark's arguments.
    pub args: &'a [String],
    /// How long QEMU may run.
    pub timeout: Duration,
}

/// Builds `bench` for `machine`'s architecture, packs it as the init of
/// an initramfs (see [`initramfs`]) and boots `b` on `machine` (see
/// `boot` above).
pub fn boot_bench(machine: &Spec, b: &BenchBoot<'_>) -> Result<LinuxRun> {
    let board = machine.board;
    let bench = build::user_programs(board.arch())?
        .into_iter()
        .find(|(n, _)| n == "bench")
        .map(|(_, p)| p)
        .ok_or("the user programs include no bench")?;
    let initrd = build::target_dir()
        .join("linux")
        .join(board.name())
        .join("initramfs.cpio");
    initramfs(&bench, &initrd)?;
    boot(machine, &initrd, b)
}

/// Boots `b` on `machine` (see `boot` above) with the static program
/// `init` as the initramfs's init (`tag` names the initramfs file).
pub fn boot_init(machine: &Spec, init: &Path, tag: &str, b: &BenchBoot<'_>) -> Result<LinuxRun> {
    let initrd = build::target_dir()
        .join("linux")
        .join(machine.board.name())
        .join(format!("{tag}.cpio"));
    initramfs(init, &initrd)?;
    boot(machine, &initrd, b)
}

/// Debian's kernel for `arch` if one is already in the cache (never
/// downloads; see [`resolve_kernel`] for that).
pub fn cached(arch: Arch) -> Option<PathBuf> {
    let (_, img) = cached_kernel(&cache_dir().ok()?, deb_arch(arch))?;
    check_image(&img, arch).ok()?;
    Some(img)
}

/// `cargo xtask qemu-linux`: boots Linux on virt or q35 with the benchmark
/// as init, prints the console as it comes; fails on a timeout, a boot
/// that did not power off, or no JSON result line.
pub fn run(o: &QemuLinuxArgs) -> Result<bool> {
    let kernel_spec = o.linux_kernel.clone();
    let params = params(o.linux_cmdline.as_deref())?;
    let board = match o.board {
        b @ (Board::Virt | Board::Q35) => b,
        b => {
            return Err(format!(
                "qemu-linux: {} is not supported (virt, q35)",
                b.name()
            ));
        }
    };
    qemu::ensure_installed()?;
    let kernel = resolve_kernel(&kernel_spec, board.arch())?;
    let mut spec = Spec::new(board, "");
    spec.qemu_args = o.qemu.qemu_arg.clone();
    spec.cpu = o.machine.cpu.clone();
    spec.smp = o.machine.smp;
    spec.accel = o.machine.accel.unwrap_or(Accel::Tcg);
    // The RAM Folium's benchmarks run with.
    spec.mem = Some(o.machine.mem.clone().unwrap_or_else(|| "1G".into()));
    let timeout = Duration::from_secs(o.timeout);
    eprintln!(
        "xtask: booting Linux {} on {} ({}), bench as init; command line: {}",
        kernel.display(),
        spec.label(),
        spec.accel.name(),
        cmdline(board, &params, &o.args)?
    );
    let run = boot_bench(
        &spec,
        &BenchBoot {
            kernel: &kernel,
            params: &params,
            args: &o.args,
            timeout,
        },
    )?;
    let init_after = run.init_after.map_or("no output from init".into(), |d| {
        format!("init's first line after {:.2} s", d.as_secs_f64())
    });
    let json = run.json_lines().len();
    eprintln!(
        "xtask: Linux on {}: {init_after}, {json} JSON lines, {} after {:.2} s (QEMU {})",
        spec.label(),
        if run.finished() {
            "powered off"
        } else if run.timed_out {
            "timed out"
        } else if let Some(p) = &run.panic {
            p.as_str()
        } else {
            "did not power off"
        },
        run.elapsed.as_secs_f64(),
        build::exit_words(run.exit)
    );
    Ok(run.finished() && json > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions_parse_and_skip_other_flavours() {
        let v = |n| package_version(n, "amd64");
        assert_eq!(
            v("linux-image-6.12.95+deb12-amd64-unsigned"),
            Some(vec![6, 12, 95])
        );
        assert_eq!(
            v("linux-image-6.1.0-47-amd64-unsigned"),
            Some(vec![6, 1, 0, 47])
        );
        assert_eq!(v("linux-image-6.12.95+deb12-cloud-amd64-unsigned"), None);
        assert_eq!(v("linux-image-6.12.95+deb12-rt-amd64-unsigned"), None);
        assert_eq!(v("linux-image-6.12.95+deb12-arm64-unsigned"), None);
        assert_eq!(
            package_version("linux-image-6.12.95+deb12-arm64-unsigned", "arm64"),
            Some(vec![6, 12, 95])
        );
        assert!(new_enough(&[6, 12, 95]));
        assert!(new_enough(&[6, 9, 0]));
        assert!(!new_enough(&[6, 8, 12]));
        assert!(!new_enough(&[6, 1, 0, 47]));
    }

    #[test]
    fn cache_picks_the_newest_unpacked_kernel() {
        let dir = std::env::temp_dir().join(format!("xtask-linux-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, with_image) in [
            ("linux-image-6.12.9+deb12-amd64-unsigned", true),
            ("linux-image-6.12.10+deb12-amd64-unsigned", true),
            // Newer, but its unpacking never finished.
            ("linux-image-6.12.11+deb12-amd64-unsigned", false),
            ("linux-image-6.13.1+deb12-arm64-unsigned", true),
        ] {
            let boot = dir.join(name).join("boot");
            std::fs::create_dir_all(&boot).unwrap();
            if with_image {
                std::fs::write(boot.join("vmlinuz-x"), b"").unwrap();
            }
        }
        let (name, img) = cached_kernel(&dir, "amd64").unwrap();
        assert_eq!(name, "linux-image-6.12.10+deb12-amd64-unsigned");
        assert_eq!(img, dir.join(&name).join("boot/vmlinuz-x"));
        assert_eq!(
            cached_kernel(&dir, "arm64").unwrap().0,
            "linux-image-6.13.1+deb12-arm64-unsigned"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn initramfs_holds_init_and_the_mount_points() {
        let dir = std::env::temp_dir().join(format!("xtask-linux-initrd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bench = dir.join("bench");
        let elf = b"\x7fELF and the rest".to_vec();
        std::fs::write(&bench, &elf).unwrap();
        let out = dir.join("sub/initramfs.cpio");
        initramfs(&bench, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        // Walk the archive with the sizes its headers give.
        let hex = |b: &[u8]| usize::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
        let mut off = 0;
        let mut entries = Vec::new();
        loop {
            let h = &bytes[off..off + 110];
            let (mode, size, ns) = (hex(&h[14..22]), hex(&h[54..62]), hex(&h[94..102]));
            let name = std::str::from_utf8(&bytes[off + 110..off + 110 + ns - 1]).unwrap();
            let data = (off + 110 + ns).next_multiple_of(4);
            if name == "TRAILER!!!" {
                break;
            }
            entries.push((name.to_string(), mode, bytes[data..data + size].to_vec()));
            off = (data + size).next_multiple_of(4);
        }
        let find = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(find("init").1, 0o100755);
        assert_eq!(find("init").2, elf);
        for d in ["proc", "sys", "dev"] {
            assert_eq!(find(d).1, 0o040755);
        }
        assert_eq!(find("dev/console").1, 0o020600);
        assert_eq!(entries.len(), 5);
        // Not an ELF: refused.
        std::fs::write(&bench, b"#!/bin/sh").unwrap();
        assert!(initramfs(&bench, &out).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_arguments_follow_the_double_dash() {
        let args: Vec<String> = ["fault", "--size", "16"].map(String::from).to_vec();
        assert_eq!(
            cmdline(Board::Virt, "", &args).unwrap(),
            "console=ttyAMA0 panic=-1 quiet -- fault --size 16"
        );
        assert_eq!(
            cmdline(Board::Q35, "", &[]).unwrap(),
            "console=ttyS0 panic=-1 quiet --"
        );
        assert!(cmdline(Board::Raspi4b, "", &[]).is_err());
        assert!(cmdline(Board::Q35, "", &["a b".into()]).is_err());
    }

    #[test]
    fn default_parameters_come_after_the_plumbing_unless_replaced() {
        let args: Vec<String> = ["fork", "--size", "16"].map(String::from).to_vec();
        let line = |replace: Option<&str>| cmdline(Board::Virt, &params(replace)?, &args);
        // By default: no zeroing at allocation, no mitigations, no KASLR.
        assert_eq!(
            line(None).unwrap(),
            "console=ttyAMA0 panic=-1 quiet init_on_alloc=0 mitigations=off nokaslr \
             -- fork --size 16"
        );
        assert_eq!(params(None).unwrap(), DEFAULT_PARAMS);
        // --linux-cmdline replaces the three words and keeps the plumbing.
        assert_eq!(
            line(Some("  kpti=0\tinit_on_alloc=1 ")).unwrap(),
            "console=ttyAMA0 panic=-1 quiet kpti=0 init_on_alloc=1 -- fork --size 16"
        );
        assert_eq!(
            cmdline(Board::Q35, &params(Some("loglevel=7")).unwrap(), &[]).unwrap(),
            "console=ttyS0 panic=-1 quiet loglevel=7 --"
        );
        // An empty string: Debian's own defaults.
        assert_eq!(
            line(Some("")).unwrap(),
            "console=ttyAMA0 panic=-1 quiet -- fork --size 16"
        );
        // What would break the plumbing is refused.
        for bad in ["a -- b", "console=tty0", "init=/bin/sh", "x rdinit=/sh"] {
            assert!(params(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_power_off_counts_as_finished() {
        let run = |lines: &[&str], exit, timed_out| {
            LinuxRun::from_guest(
                GuestRun {
                    lines: lines.iter().map(|l| l.to_string()).collect(),
                    exit,
                    timed_out,
                    banner_after: None,
                    elapsed: Duration::ZERO,
                },
                String::new(),
            )
        };
        let off = ["bench", "{\"x\":1}", "[    3.1] reboot: Power down"];
        assert!(run(&off, Some(0), false).finished());
        assert_eq!(run(&off, Some(0), false).json_lines(), ["{\"x\":1}"]);
        assert!(!run(&off, None, true).finished());
        let panic = [
            "[    1.0] Kernel panic - not syncing: no init",
            "[    1.1] reboot: Power down",
        ];
        let p = run(&panic, Some(0), false);
        assert!(!p.finished());
        assert!(p.panic.is_some());
        // A reboot after init exits ends QEMU the same way (-no-reboot).
        assert!(!run(&["[ 2.0] reboot: Restarting system"], Some(0), false).finished());
    }

    #[test]
    fn images_are_checked_for_their_boot_magic() {
        let dir = std::env::temp_dir().join(format!("xtask-linux-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut arm = vec![0u8; 64];
        arm[56..60].copy_from_slice(b"ARM\x64");
        let mut x86 = vec![0u8; 0x300];
        x86[0x202..0x206].copy_from_slice(b"HdrS");
        let files = [("arm", arm), ("gz", vec![0x1f, 0x8b, 8, 0]), ("x86", x86)];
        for (n, b) in &files {
            std::fs::write(dir.join(n), b).unwrap();
        }
        let ok = |n: &str, a| resolve_kernel(dir.join(n).to_str().unwrap(), a).is_ok();
        assert!(ok("arm", Arch::Aarch64));
        assert!(ok("gz", Arch::Aarch64));
        assert!(ok("x86", Arch::X86_64));
        assert!(!ok("x86", Arch::Aarch64));
        assert!(!ok("arm", Arch::X86_64));
        assert!(!ok("missing", Arch::X86_64));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
