//! Building the kernel for a target and turning it into a bootable file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Instruction set of a kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `aarch64-unknown-none`: one raw Image for virt and the Pis.
    Aarch64,
    /// `x86_64-unknown-none`: a PVH ELF for q35.
    X86_64,
}

impl Arch {
    pub fn parse(s: &str) -> Result<Arch> {
        match s {
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "x86_64" | "x86" | "amd64" => Ok(Arch::X86_64),
            _ => Err(format!("unknown arch {s} (aarch64 or x86_64)")),
        }
    }

    pub fn target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none",
            Arch::X86_64 => "x86_64-unknown-none",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The shared target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a command, failing with its description if it does not succeed.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// The cargo that runs us (so the pinned toolchain is used throughout).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Builds the kernel and returns the file QEMU boots: the raw arm64 Image
/// on aarch64 (written next to the ELF), the ELF itself on x86_64.
pub fn kernel(arch: Arch) -> Result<PathBuf> {
    crate::toolchain::ensure()?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "folium-kernel",
        "--target",
        arch.target(),
    ]))?;
    let elf = target_dir()
        .join(arch.target())
        .join("release")
        .join("folium");
    match arch {
        Arch::X86_64 => Ok(elf),
        Arch::Aarch64 => {
            let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
            let raw = crate::elf::to_raw_binary(&bytes)?;
            let img = elf.with_file_name("Image");
            std::fs::write(&img, raw).map_err(|e| format!("{}: {e}", img.display()))?;
            Ok(img)
        }
    }
}
