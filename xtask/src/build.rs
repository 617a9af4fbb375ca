//! Building the kernel for a target and turning it into a bootable file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Instruction set of a kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// `aarch64-unknown-none`: one raw Image for virt and the Pis
    #[value(alias = "arm64")]
    Aarch64,
    /// `x86_64-unknown-none`: a PVH ELF for q35
    #[value(name = "x86_64", aliases = ["x86", "amd64"])]
    X86_64,
}

impl Arch {
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

/// `word` as a shell reads it back: as it is if it is made of safe
/// characters only, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command as one would type it in a shell: the program and its
/// arguments, each quoted where needed.
pub fn show_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command, failing with its description if it does not succeed.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show_command(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", show_command(cmd)))
    }
}

/// How a QEMU run ended, in words: `exit status 1`, `killed by a signal`.
pub fn exit_words(exit: Option<i32>) -> String {
    match exit {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

/// The cargo that runs us (so the pinned toolchain is used throughout).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Which cargo profile a kernel is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `release`: the kernel that runs everywhere.
    Release,
    /// `checked`: release plus debug assertions and overflow checks, so the
    /// costly memory-safety checks run in the guest too.
    Checked,
}

impl Profile {
    /// The cargo profile name (also the output directory's name).
    pub fn name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Checked => "checked",
        }
    }
}

/// The user programs every kernel image embeds (bins of
/// `userspace/programs`, `userspace/bench` and `userspace/fuzz`), by the name `execve` finds
/// them under.
pub const PROGRAMS: [&str; 7] = [
    "init", "hello", "utest", "mmtests", "bench", "mmdemo", "fuzz",
];

/// Builds the user programs for `arch` (profile `user`: release code, no
/// debug info) and returns `(name, path)` for each.
pub fn user_programs(arch: Arch) -> Result<Vec<(String, PathBuf)>> {
    crate::toolchain::ensure()?;
    run_cmd(cargo().args([
        "build",
        "--profile",
        "user",
        "-p",
        "folium-programs",
        "-p",
        "folium-bench",
        "-p",
        "folium-fuzz",
        "--bins",
        "--target",
        arch.target(),
    ]))?;
    let dir = target_dir().join(arch.target()).join("user");
    Ok(PROGRAMS
        .iter()
        .map(|p| (p.to_string(), dir.join(p)))
        .collect())
}

/// Builds the release kernel; see [`kernel_with`].
pub fn kernel(arch: Arch) -> Result<PathBuf> {
    kernel_with(arch, Profile::Release)
}

/// Builds the kernel and returns the file QEMU boots: the raw arm64 Image
/// on aarch64 (written next to the ELF), the ELF itself on x86_64.
pub fn kernel_with(arch: Arch, profile: Profile) -> Result<PathBuf> {
    crate::toolchain::ensure()?;
    let mut programs = user_programs(arch)?;
    let (cprogs, _) = crate::cprogs::build(arch)?;
    programs.extend(cprogs);
    // The kernel's build script embeds these files (kernel/build.rs).
    let list: Vec<String> = programs
        .iter()
        .map(|(n, p)| format!("{n}={}", p.display()))
        .collect();
    run_cmd(cargo().env("FOLIUM_PROGRAMS", list.join(";")).args([
        "build",
        "--profile",
        profile.name(),
        "-p",
        "folium-kernel",
        "--target",
        arch.target(),
    ]))?;
    let elf = target_dir()
        .join(arch.target())
        .join(profile.name())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_show_as_typed() {
        let mut c = Command::new("qemu-system-aarch64");
        c.args(["-M", "virt", "-append", "init=bench --quick", "it's"]);
        assert_eq!(
            show_command(&c),
            r"qemu-system-aarch64 -M virt -append 'init=bench --quick' 'it'\''s'"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(exit_words(Some(3)), "exit status 3");
    }
}
