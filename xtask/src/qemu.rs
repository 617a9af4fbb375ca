//! QEMU: the boards, their command lines in one place, and making sure a
//! QEMU 10 is installed.

use std::path::Path;
use std::process::Command;

use crate::build::{self, Arch};
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

    /// Guest exit status for success and failure as the host sees them.
    pub fn exit_codes(self) -> (i32, i32) {
        match self.arch() {
            Arch::Aarch64 => (0, 1),  // semihosting SYS_EXIT_EXTENDED
            Arch::X86_64 => (33, 35), // isa-debug-exit: (value << 1) | 1
        }
    }
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
    pub cmdline: String,
    /// A file QEMU loads as the initrd (`-initrd`).
    pub initrd: Option<std::path::PathBuf>,
}

impl Spec {
    pub fn new(board: Board, cmdline: &str) -> Spec {
        Spec {
            board,
            cpu: None,
            accel: Accel::Tcg,
            mem: None,
            extra_machine: None,
            cmdline: cmdline.into(),
            initrd: None,
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
        if self.accel == Accel::Kvm {
            s.push_str("/kvm");
        }
        s
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
        match b {
            Board::Virt => {
                c.args(["-cpu", &self.cpu_name()]);
                c.args(["-m", self.mem.as_deref().unwrap_or("512M")]);
            }
            Board::Raspi4b | Board::Raspi3b => {
                if self.mem.is_some() || self.cpu.is_some() {
                    return Err(format!(
                        "{}: RAM size and CPU are fixed by the board",
                        b.name()
                    ));
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

/// What `qemu-run` boots with when given no command line.
pub const DEFAULT_CMDLINE: &str = "init=bench --quick";

/// `cargo xtask qemu-run`: build, boot one board, stream its console.
pub fn run(o: &RunArgs) -> Result<bool> {
    let board = o.board;
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
    let (cmdline, initrd) = match &o.init {
        // With nothing asked for, show something worth seeing: the
        // benchmark's short tables.
        None if o.args.is_empty() => (DEFAULT_CMDLINE.to_string(), None),
        None => (o.args.join(" "), None),
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("--init {}: {e}", p.display()))?;
            if !bytes.starts_with(b"\x7fELF") {
                return Err(format!("--init {}: not an ELF file", p.display()));
            }
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
        cmdline,
        initrd,
    };
    let mut cmd = spec.command(&kernel, true)?;
    eprintln!(
        "xtask: booting {} ({}); Ctrl-A X quits",
        spec.label(),
        accel.name()
    );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let (pass, _) = board.exit_codes();
    Ok(status.code() == Some(pass))
}
