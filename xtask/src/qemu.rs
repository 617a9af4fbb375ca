//! QEMU: the boards, their command lines in one place, and making sure a
//! QEMU 10 is installed.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::build::{self, Arch};
use crate::console::{BenchView, InitExit, Out};
use crate::{Result, RunArgs};

/// A machine Folium boots on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Board {
    /// QEMU aarch64 `virt`
    #[default]
    Virt,
    /// QEMU `raspi4b` (Raspberry Pi 4 B, 2 GiB)
    #[value(aliases = ["rpi4", "pi4"])]
    Raspi4b,
    /// QEMU `raspi3b` (Raspberry Pi 3 B, 1 GiB)
    #[value(aliases = ["rpi3", "pi3"])]
    Raspi3b,
    /// QEMU x86_64 `q35`
    #[value(aliases = ["x86", "x86_64"])]
    Q35,
}

impl Board {
    pub const ALL: [Board; 4] = [Board::Virt, Board::Raspi4b, Board::Raspi3b, Board::Q35];

    pub fn name(self) -> &'static str {
        match self {
            Board::Virt => "virt",
            Board::Raspi4b => "raspi4b",
            Board::Raspi3b => "raspi3b",
            Board::Q35 => "q35",
        }
    }

    pub fn arch(self) -> Arch {
        match self {
            Board::Q35 => Arch::X86_64,
            _ => Arch::Aarch64,
        }
    }

    /// The least guest RAM, in MiB, Folium boots with on this board and
    /// runs a program (`init=hello`), found by booting with less and less;
    /// `None` where the board fixes its RAM.
    pub fn min_mem_mib(self) -> Option<u64> {
        match self {
            Board::Virt => Some(MIN_MEM_VIRT),
            Board::Q35 => Some(MIN_MEM_Q35),
            Board::Raspi4b | Board::Raspi3b => None,
        }
    }

    /// Checks a `--mem` value for this board before anything is built:
    /// QEMU's syntax, and at least [`Board::min_mem_mib`].
    pub fn check_mem(self, mem: &str) -> Result<()> {
        let Some(min) = self.min_mem_mib() else {
            return Err(format!(
                "--mem: {}'s RAM is fixed by the board",
                self.name()
            ));
        };
        let mib = mem_mib(mem).ok_or_else(|| {
            format!("--mem {mem}: a size such as 512M or 2G (MiB if no unit is given)")
        })?;
        if mib < min as f64 {
            return Err(format!(
                "--mem {mem}: {} needs at least {min}M to boot Folium",
                self.name()
            ));
        }
        Ok(())
    }

    /// True where `-smp` chooses the number of CPUs (virt, q35).
    pub fn smp_choosable(self) -> bool {
        matches!(self, Board::Virt | Board::Q35)
    }

    /// Checks a `--smp` value: 1 to 8 on virt and q35; the Pis have four
    /// cores and take only that.
    pub fn check_smp(self, n: u32) -> Result<()> {
        if self.smp_choosable() {
            if (1..=MAX_SMP).contains(&n) {
                return Ok(());
            }
            return Err(format!("--smp {n}: Folium runs 1 to {MAX_SMP} CPUs"));
        }
        if n == PI_CORES {
            return Ok(());
        }
        Err(format!(
            "--smp {n}: {} has {PI_CORES} cores, always",
            self.name()
        ))
    }

    /// Guest exit status for success and failure as the host sees them.
    pub fn exit_codes(self) -> (i32, i32) {
        match self.arch() {
            Arch::Aarch64 => (0, 1),  // semihosting SYS_EXIT_EXTENDED
            Arch::X86_64 => (33, 35), // isa-debug-exit: (value << 1) | 1
        }
    }
}

/// Most CPUs Folium brings up (the kernel's `MAX_CPUS`).
pub const MAX_SMP: u32 = 8;
/// The Raspberry Pi boards' cores.
pub const PI_CORES: u32 = 4;

/// [`Board::min_mem_mib`] of virt: with 8 MiB QEMU finds no room for the
/// device tree after the kernel (QEMU 10.0, the kernel of this tree).
const MIN_MEM_VIRT: u64 = 9;
/// [`Board::min_mem_mib`] of q35: with 10 MiB the kernel runs out of
/// frames for its own page tables.
const MIN_MEM_Q35: u64 = 11;

/// A QEMU `-m` size in MiB: a number with an optional unit `K`, `M`, `G`
/// or `T` (then `B` or `iB` may follow); MiB without one, as QEMU reads it.
pub fn mem_mib(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    let unit = s[end..].to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let scale = match unit {
        "" | "m" => 1.0,
        "k" => 1.0 / 1024.0,
        "g" => 1024.0,
        "t" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale).filter(|m| m.is_finite() && *m > 0.0)
}

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (works everywhere)
    Tcg,
    /// Hardware virtualization (same-architecture guests only)
    Kvm,
}

impl Accel {
    /// `TCG` or `KVM`, as a person writes them.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "TCG",
            Accel::Kvm => "KVM",
        }
    }
}

/// True if the host CPU advertises hardware virtualization and /dev/kvm
/// exists. A bare /dev/kvm is not enough: it can be a software nested
/// implementation that cannot run ordinary kernels.
pub fn host_has_hw_virt() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace());
    let hw = flags.clone().any(|f| f == "vmx" || f == "svm");
    hw && Path::new("/dev/kvm").exists()
}

/// Everything that defines one guest run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub board: Board,
    pub cpu: Option<String>,
    pub accel: Accel,
    pub mem: Option<String>,
    pub extra_machine: Option<String>,
    /// QEMU's `-smp` (virt and q35; the Pis have four cores whatever).
    pub smp: Option<u32>,
    pub cmdline: String,
    /// A file QEMU loads as the initrd (`-initrd`).
    pub initrd: Option<std::path::PathBuf>,
    /// Words appended to QEMU's command line (`--qemu-arg`).
    pub qemu_args: Vec<String>,
}

impl Spec {
    pub fn new(board: Board, cmdline: &str) -> Spec {
        Spec {
            board,
            cpu: None,
            accel: Accel::Tcg,
            mem: None,
            extra_machine: None,
            smp: None,
            cmdline: cmdline.into(),
            initrd: None,
            qemu_args: Vec::new(),
        }
    }

    /// A short label (`virt/cortex-a72`, `q35/kvm` ...).
    pub fn label(&self) -> String {
        let mut s = self.board.name().to_string();
        if let Some(c) = &self.cpu {
            s.push('/');
            s.push_str(c);
        }
        if let Some(m) = &self.extra_machine {
            s.push('/');
            s.push_str(m);
        }
        if let Some(n) = self.smp.filter(|&n| n != 1 && self.board.smp_choosable()) {
            s.push_str(&format!("/smp{n}"));
        }
        if self.accel == Accel::Kvm {
            s.push_str("/kvm");
        }
        s
    }

    /// How many CPUs the guest has: `smp` (1 unless set) on virt and q35,
    /// four on the Pis.
    pub fn cpus(&self) -> u32 {
        if self.board.smp_choosable() {
            self.smp.unwrap_or(1)
        } else {
            PI_CORES
        }
    }

    /// The CPU model the guest runs on: the one asked for, else the
    /// board's default (virt `cortex-a72`; q35 `qemu64` under TCG, `host`
    /// under KVM; the Pi boards' own cores).
    pub fn cpu_name(&self) -> String {
        if let Some(c) = &self.cpu {
            return c.clone();
        }
        match self.board {
            Board::Virt | Board::Raspi4b => "cortex-a72",
            Board::Raspi3b => "cortex-a53",
            Board::Q35 if self.accel == Accel::Kvm => "host",
            Board::Q35 => "qemu64",
        }
        .to_string()
    }

    /// The QEMU command for this run. `interactive` keeps QEMU's monitor on
    /// the terminal (Ctrl-A X quits); otherwise serial goes to stdout only.
    pub fn command(&self, kernel: &Path, interactive: bool) -> Result<Command> {
        let b = self.board;
        let mut c = Command::new(match b.arch() {
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::X86_64 => "qemu-system-x86_64",
        });
        let machine = match (&self.extra_machine, b) {
            (Some(extra), _) => format!("{},{extra}", b.name()),
            _ => b.name().to_string(),
        };
        c.args(["-M", &machine]);
        if let Some(m) = &self.mem {
            b.check_mem(m)?;
        }
        if let Some(n) = self.smp {
            b.check_smp(n)?;
            if b.smp_choosable() {
                c.args(["-smp", &n.to_string()]);
            }
        }
        match b {
            Board::Virt => {
                c.args(["-cpu", &self.cpu_name()]);
                c.args(["-m", self.mem.as_deref().unwrap_or("512M")]);
            }
            Board::Raspi4b | Board::Raspi3b => {
                if self.cpu.is_some() {
                    return Err(format!("--cpu: {}'s CPU is fixed by the board", b.name()));
                }
            }
            Board::Q35 => {
                c.args(["-cpu", &self.cpu_name()]);
                c.args(["-m", self.mem.as_deref().unwrap_or("512M")]);
                c.args([
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                    "-nic",
                    "none",
                ]);
            }
        }
        if b.arch() == Arch::Aarch64 {
            c.args(["-semihosting-config", "enable=on,target=native"]);
        }
        match self.accel {
            Accel::Tcg => c.args(["-accel", "tcg"]),
            Accel::Kvm => {
                if b.arch() != host_arch() {
                    return Err(format!(
                        "--accel kvm needs a {} host to run {}",
                        b.arch().name(),
                        b.name()
                    ));
                }
                c.args(["-accel", "kvm"])
            }
        };
        if interactive {
            c.arg("-nographic");
        } else {
            c.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
        }
        c.arg("-no-reboot");
        c.arg("-kernel").arg(kernel);
        if let Some(i) = &self.initrd {
            c.arg("-initrd").arg(i);
        }
        c.args(["-append", &self.cmdline]);
        c.args(&self.qemu_args);
        Ok(c)
    }
}

fn host_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

/// `QEMU 10.0.2`: the version of the QEMU that runs `arch`'s guests, as
/// its `--version` says it ("QEMU ?" if it cannot be run).
pub fn version(arch: Arch) -> String {
    let bin = match arch {
        Arch::Aarch64 => "qemu-system-aarch64",
        Arch::X86_64 => "qemu-system-x86_64",
    };
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = text.split("version ").nth(1)?.split_whitespace().next()?;
            Some(format!("QEMU {v}"))
        })
        .unwrap_or_else(|| "QEMU ?".into())
}

/// The major version of an installed QEMU binary, if any.
fn qemu_major(bin: &str) -> Option<u32> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ver = text.split("version ").nth(1)?;
    ver.split('.').next()?.trim().parse().ok()
}

/// Makes sure qemu-system-aarch64 and qemu-system-x86_64 (10 or newer) are
/// installed; installs them from Debian backports when running as root.
pub fn ensure_installed() -> Result<()> {
    let ok = |b: &str| qemu_major(b).is_some_and(|v| v >= 10);
    if ok("qemu-system-aarch64") && ok("qemu-system-x86_64") {
        return Ok(());
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "bookworm".into());
    let suite = format!("{codename}-backports");
    let list = "/etc/apt/sources.list.d/folium-backports.sources";
    let (uri, keyring) = debian_mirror();
    let stanza = format!(
        "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\nSigned-By: {keyring}\n"
    );
    let install = format!("apt-get install -y -t {suite} qemu-system-arm qemu-system-x86");
    // `id -u` rather than geteuid(): keeps this crate free of libc.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = Path::new("/usr/bin/apt-get").exists();
    if !root || !apt {
        return Err(format!(
            "QEMU 10 (qemu-system-aarch64, qemu-system-x86_64) is not installed. As root, run:\n\n\
             cat > {list} <<'EOF'\n{stanza}EOF\napt-get update\n{install}\n"
        ));
    }
    // Already configured, in a deb822 file or a one-line sources list?
    let mentions_suite = |path: &Path| {
        std::fs::read_to_string(path).is_ok_and(|t| {
            t.lines().any(|l| {
                let l = l.trim_start();
                !l.starts_with('#')
                    && (l.starts_with("Suites:") || l.starts_with("deb "))
                    && l.split_whitespace().any(|w| w == suite)
            })
        })
    };
    let already = mentions_suite(Path::new("/etc/apt/sources.list"))
        || std::fs::read_dir("/etc/apt/sources.list.d")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| mentions_suite(&e.path()));
    if !already {
        eprintln!("xtask: adding {suite} to apt sources ({list})");
        std::fs::write(list, &stanza).map_err(|e| format!("{list}: {e}"))?;
    }
    eprintln!("xtask: installing QEMU 10 from {suite}");
    build::run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    build::run_cmd(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "-q",
                "-t",
                &suite,
                "qemu-system-arm",
                "qemu-system-x86",
            ]),
    )?;
    if ok("qemu-system-aarch64") && ok("qemu-system-x86_64") {
        Ok(())
    } else {
        Err("QEMU was installed but is not version 10 or newer".into())
    }
}

/// The Debian mirror and keyring the machine already uses.
fn debian_mirror() -> (String, String) {
    let text =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    (
        field("URIs:").unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        field("Signed-By:")
            .unwrap_or_else(|| "/usr/share/keyrings/debian-archive-keyring.gpg".into()),
    )
}

/// Set by `--print-qemu`: every QEMU command is printed before it runs.
pub static PRINT_COMMANDS: AtomicBool = AtomicBool::new(false);

/// Prints `cmd` as a shell would take it, if `--print-qemu` asked for it.
pub fn print_command(cmd: &Command) {
    if PRINT_COMMANDS.load(Ordering::Relaxed) {
        eprintln!("{}", build::show_command(cmd));
    }
}

/// What `qemu-run` boots with when given no command line.
pub const DEFAULT_CMDLINE: &str = "init=bench --quick";

/// `cargo xtask qemu-run`: build, boot one board, stream its console;
/// the exit status is that of init's program (128 + N for a program
/// killed by signal N), or 0/1 for a boot without one.
pub fn run(o: &RunArgs) -> Result<u8> {
    let board = o.board;
    // What can be checked before anything is built.
    if let Some(m) = &o.machine.mem {
        board.check_mem(m)?;
    }
    let init = match &o.init {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("--init {}: {e}", p.display()))?;
            crate::elf::check_static_program(&bytes, board.arch()).map_err(|e| {
                format!(
                    "--init {}: {e} ({} runs static {} Linux programs)",
                    p.display(),
                    board.name(),
                    board.arch().name()
                )
            })?;
            Some(p)
        }
        None => None,
    };
    ensure_installed()?;
    let accel = o
        .machine
        .accel
        .unwrap_or(if board.arch() == host_arch() && host_has_hw_virt() {
            Accel::Kvm
        } else {
            Accel::Tcg
        });
    let kernel = build::kernel(board.arch())?;
    let (cmdline, initrd) = match init {
        // With nothing asked for, show something worth seeing: the
        // benchmark's short tables.
        None if o.args.is_empty() => (DEFAULT_CMDLINE.to_string(), None),
        None => (o.args.join(" "), None),
        Some(p) => {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                .unwrap_or("initrd")
                .to_string();
            let args = o.args.join(" ");
            (format!("initrd={name} init={name} {args}"), Some(p.clone()))
        }
    };
    let spec = Spec {
        board,
        cpu: o.machine.cpu.clone(),
        accel,
        mem: o.machine.mem.clone(),
        extra_machine: None,
        smp: o.machine.smp,
        cmdline,
        initrd,
        qemu_args: o.qemu.qemu_arg.clone(),
    };
    let mut cmd = spec.command(&kernel, true)?;
    if o.gdb {
        // -s: a gdb server on TCP port 1234; -S: the CPU waits for it.
        cmd.args(["-s", "-S"]);
    }
    print_command(&cmd);
    eprintln!(
        "xtask: booting {} ({}); Ctrl-A X quits",
        spec.label(),
        accel.name()
    );
    if o.gdb {
        // The ELF beside the Image holds the symbols (the same file on x86).
        let elf = kernel.with_file_name("folium");
        eprintln!(
            "xtask: QEMU waits for a debugger; in another terminal run:\n  \
             gdb-multiarch {} -ex 'target remote :1234'",
            build::shell_quote(&elf.to_string_lossy())
        );
    }
    // The console comes through xtask, which reshapes the benchmark's and
    // reads init's exit status; the keyboard still goes to QEMU.
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let bench = spec.cmdline.split_whitespace().any(|w| w == "init=bench");
    // The program init runs, to name it at the end.
    let program = spec
        .cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("init="))
        .map_or("init's program".to_string(), |p| p.replace(',', " then "));
    let mut screen = Screen::new(std::io::stdout().is_terminal());
    let mut view = bench.then(BenchView::default);
    let mut exit = InitExit::default();
    let mut json = Vec::new();
    let mut show = |out: Out, screen: &mut Screen| match out {
        Out::Line(l) => screen.line(&l),
        Out::Progress(p) => screen.progress(&p),
        Out::Json(j) if o.json => screen.line(&j),
        Out::Json(j) => json.push(j),
    };
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if view.is_none() {
                // As it comes, partial lines too.
                screen.raw(&buf[..n]);
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(at) = pending.iter().position(|&b| b == b'\n') {
                let bytes: Vec<u8> = pending.drain(..=at).collect();
                let line = String::from_utf8_lossy(&bytes);
                let line = line.trim_end_matches(['\n', '\r']);
                exit.feed(line);
                if let Some(v) = view.as_mut() {
                    for out in v.feed(line) {
                        show(out, &mut screen);
                    }
                }
            }
        }
        if let Some(v) = view.as_mut() {
            let rest = String::from_utf8_lossy(&pending).into_owned();
            let tail = if rest.trim().is_empty() {
                vec![]
            } else {
                v.feed(&rest)
            };
            for out in tail.into_iter().chain(v.finish()) {
                show(out, &mut screen);
            }
        }
    }
    screen.end();
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    if !json.is_empty() {
        let dir = build::root().join("out").join("qemu-run");
        let path = dir.join(format!("{}-bench.jsonl", board.name()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&path, json.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "xtask: {} JSON records in {} (--json prints them here)",
            json.len(),
            path.display()
        );
    }
    let (pass, _) = board.exit_codes();
    let passed = status.code() == Some(pass);
    // init's program decides the status, as a shell's would.
    if let (Some(code), Some(said)) = (exit.code, exit.describe(&program)) {
        println!("xtask: {said}");
        if code != 0 || passed {
            return Ok(u8::try_from(code).unwrap_or(u8::MAX));
        }
    }
    if passed {
        return Ok(0);
    }
    println!(
        "xtask: the guest stopped with a failure ({})",
        match status.code() {
            Some(c) => format!("QEMU exit status {c}"),
            None => "QEMU was killed by a signal".into(),
        }
    );
    Ok(1)
}

/// The terminal xtask prints the guest's console on: plain lines, and a
/// progress line that a terminal shows rewritten in place (`\r`), while
/// plain output gets one progress line per benchmark phase.
struct Screen {
    tty: bool,
    /// A progress line is on the terminal's last line.
    progress_shown: bool,
    phase: String,
}

impl Screen {
    fn new(tty: bool) -> Screen {
        Screen {
            tty,
            progress_shown: false,
            phase: String::new(),
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            print!("\r\x1b[K");
            self.progress_shown = false;
        }
    }

    fn line(&mut self, l: &str) {
        self.clear_progress();
        println!("{l}");
    }

    fn progress(&mut self, p: &str) {
        let p = p.strip_prefix("bench: ").unwrap_or(p);
        if self.tty {
            // Kept within 80 columns so the line never wraps.
            let short: String = p.chars().take(79).collect();
            print!("\r\x1b[K{short}");
            let _ = std::io::stdout().flush();
            self.progress_shown = true;
        } else if crate::console::phase(p) != self.phase {
            self.phase = crate::console::phase(p).to_string();
            println!("{p}");
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    fn end(&mut self) {
        self.clear_progress();
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_qemu_reads_them() {
        assert_eq!(mem_mib("512M"), Some(512.0));
        assert_eq!(mem_mib("512"), Some(512.0));
        assert_eq!(mem_mib("2G"), Some(2048.0));
        assert_eq!(mem_mib("1.5g"), Some(1536.0));
        assert_eq!(mem_mib("2GiB"), Some(2048.0));
        assert_eq!(mem_mib("65536k"), Some(64.0));
        for bad in ["", "G", "12X", "-5M", "0"] {
            assert_eq!(mem_mib(bad), None, "{bad}");
        }
    }

    #[test]
    fn too_little_memory_is_refused_with_the_minimum() {
        assert!(Board::Virt.check_mem("512M").is_ok());
        assert!(Board::Virt.check_mem(&format!("{MIN_MEM_VIRT}M")).is_ok());
        let e = Board::Virt.check_mem("8M").unwrap_err();
        assert!(e.contains(&format!("at least {MIN_MEM_VIRT}M")), "{e}");
        assert!(Board::Q35.check_mem("4M").is_err());
        assert!(Board::Q35.check_mem("lots").is_err());
        assert!(
            Board::Raspi4b.check_mem("2G").is_err(),
            "fixed by the board"
        );
    }
}
