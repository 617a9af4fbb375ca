//! Making sure the pinned toolchain has the bare-metal targets and the
//! components `rust-toolchain.toml` names, before anything is built.
//!
//! rustup installs a missing toolchain from `rust-toolchain.toml` on first
//! use, but a toolchain of the same name that already exists is used as it
//! is, without the targets: the kernel build then fails with "can't find
//! crate for `core`". So xtask checks the toolchain's sysroot itself and
//! asks rustup for whatever is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::Result;
use crate::build::{self, run_cmd};

/// What `rust-toolchain.toml` pins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pinned {
    /// `channel`, e.g. `1.95.0`.
    pub channel: String,
    /// `targets`.
    pub targets: Vec<String>,
    /// `components`.
    pub components: Vec<String>,
}

/// Reads the string or string-array value of `key` from the simple TOML
/// of `rust-toolchain.toml` (one `key = value` per line).
fn values(text: &str, key: &str) -> Vec<String> {
    let Some(rhs) = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    }) else {
        return Vec::new();
    };
    rhs.trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses `rust-toolchain.toml`.
pub fn parse(text: &str) -> Pinned {
    Pinned {
        channel: values(text, "channel")
            .into_iter()
            .next()
            .unwrap_or_default(),
        targets: values(text, "targets"),
        components: values(text, "components"),
    }
}

/// The sysroot of the toolchain running us: `$CARGO` is
/// `<sysroot>/bin/cargo` when rustup's proxy started it.
fn sysroot() -> Option<PathBuf> {
    let cargo = PathBuf::from(std::env::var_os("CARGO")?);
    Some(cargo.parent()?.parent()?.to_path_buf())
}

/// What the sysroot lacks of `pinned`: targets, then components (a
/// component counts as present when its binary is there).
pub fn missing(sysroot: &Path, pinned: &Pinned) -> (Vec<String>, Vec<String>) {
    let targets = pinned
        .targets
        .iter()
        .filter(|t| !sysroot.join("lib/rustlib").join(t).join("lib").is_dir())
        .cloned()
        .collect();
    let components = pinned
        .components
        .iter()
        .filter(|c| {
            let bin = match c.as_str() {
                "clippy" => "cargo-clippy",
                "rustfmt" => "rustfmt",
                other => other,
            };
            !sysroot.join("bin").join(bin).exists()
        })
        .cloned()
        .collect();
    (targets, components)
}

/// Installs what the pinned toolchain lacks (once per xtask run).
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(ensure_now).clone()
}

fn ensure_now() -> Result<()> {
    let file = build::root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let pinned = parse(&text);
    let Some(sysroot) = sysroot() else {
        return Ok(()); // not started by cargo: nothing to check against
    };
    let (targets, components) = missing(&sysroot, &pinned);
    if targets.is_empty() && components.is_empty() {
        return Ok(());
    }
    let have_rustup = Command::new("rustup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| pinned.channel.clone());
    if !have_rustup {
        return Err(format!(
            "the toolchain at {} lacks {} and rustup is not installed; add them, e.g.\n\n\
             rustup target add --toolchain {toolchain} {}\n",
            sysroot.display(),
            [targets.as_slice(), components.as_slice()]
                .concat()
                .join(" "),
            targets.join(" ")
        ));
    }
    if !targets.is_empty() {
        eprintln!("xtask: adding targets {} to {toolchain}", targets.join(" "));
        run_cmd(
            Command::new("rustup")
                .args(["target", "add", "--toolchain", &toolchain])
                .args(&targets),
        )?;
    }
    if !components.is_empty() {
        eprintln!(
            "xtask: adding components {} to {toolchain}",
            components.join(" ")
        );
        run_cmd(
            Command::new("rustup")
                .args(["component", "add", "--toolchain", &toolchain])
                .args(&components),
        )?;
    }
    let (targets, components) = missing(&sysroot, &pinned);
    if targets.is_empty() && components.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "rustup ran, but {toolchain} still lacks {}",
            [targets.as_slice(), components.as_slice()]
                .concat()
                .join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pinned_file() {
        let p = parse(
            "[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"rustfmt\", \"clippy\"]\n\
             targets = [\"aarch64-unknown-none\", \"x86_64-unknown-none\"]\nprofile = \"minimal\"\n",
        );
        assert_eq!(p.channel, "1.95.0");
        assert_eq!(p.components, ["rustfmt", "clippy"]);
        assert_eq!(p.targets, ["aarch64-unknown-none", "x86_64-unknown-none"]);
    }

    #[test]
    fn finds_what_a_sysroot_lacks() {
        let dir = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib/rustlib/x86_64-unknown-none/lib")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/rustfmt"), "").unwrap();
        let p = parse(
            "channel = \"1.95.0\"\ncomponents = [\"rustfmt\", \"clippy\"]\n\
             targets = [\"aarch64-unknown-none\", \"x86_64-unknown-none\"]\n",
        );
        let (t, c) = missing(&dir, &p);
        assert_eq!(t, ["aarch64-unknown-none"]);
        assert_eq!(c, ["clippy"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
