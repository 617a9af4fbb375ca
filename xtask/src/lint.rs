//! `cargo xtask lint`: the gate every change passes (and `cargo xtask
//! test` runs first). Formatting, clippy with warnings as errors on every
//! crate for the targets it is built for, and rustdoc with warnings as
//! errors.
//!
//! The crates split by where they run: the host crates (`folium-mm`,
//! `folium-abi`, `folium-boot`, `xtask`) are linted with all their targets
//! (tests included); the kernel and the user programs exist only for the
//! bare-metal targets, so they are linted once per architecture. A plain
//! `cargo clippy --workspace` would build those for the host and stop
//! at `bare-metal-guard`, whose one error points here.

use std::process::Command;
use std::time::Instant;

use crate::Result;
use crate::build::{self, Arch};

/// The crates that run on the host (the workspace's default members).
const HOST: &[&str] = &["folium-mm", "folium-abi", "folium-boot", "xtask"];
/// The kernel, the boot layer it links and the guard it depends on,
/// built per architecture.
const KERNEL: &[&str] = &["folium-kernel", "folium-boot", "bare-metal-guard"];
/// The user programs embedded in the kernel image.
const USER: &[&str] = &["ulib", "folium-programs", "folium-bench", "folium-fuzz"];

/// One step of the gate: what it checks and the cargo command.
struct Step {
    what: String,
    cmd: Command,
}

fn cargo_with(args: &[&str], packages: &[&str], tail: &[&str]) -> Command {
    let mut c = build::cargo();
    c.args(args);
    if args[0] != "fmt" {
        // Only what is wrong: no "Checking"/"Documenting" progress lines.
        c.arg("--quiet");
    }
    for p in packages {
        c.args(["-p", p]);
    }
    c.args(tail);
    c
}

/// Every step, in the order they run (cheapest first).
fn steps() -> Vec<Step> {
    let deny = ["--", "-D", "warnings"];
    let mut s = vec![Step {
        what: "rustfmt".into(),
        cmd: cargo_with(&["fmt", "--all", "--check"], &[], &[]),
    }];
    let mut host = vec!["--all-targets"];
    host.extend(deny);
    s.push(Step {
        what: "clippy, host crates, all targets".into(),
        cmd: cargo_with(&["clippy"], HOST, &host),
    });
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let t = arch.target();
        let mut kernel = vec!["--target", t];
        kernel.extend(deny);
        s.push(Step {
            what: format!("clippy, kernel and boot, {t}"),
            cmd: cargo_with(&["clippy"], KERNEL, &kernel),
        });
        let mut user = vec!["--lib", "--bins", "--target", t];
        user.extend(deny);
        s.push(Step {
            what: format!("clippy, user programs, {t}"),
            cmd: cargo_with(&["clippy"], USER, &user),
        });
    }
    let mut doc = cargo_with(&["doc", "--no-deps"], HOST, &[]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    s.push(Step {
        what: "rustdoc, host crates".into(),
        cmd: doc,
    });
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let t = arch.target();
        let mut doc = cargo_with(&["doc", "--no-deps"], USER, &["--target", t]);
        doc.env("RUSTDOCFLAGS", "-D warnings");
        s.push(Step {
            what: format!("rustdoc, user programs, {t}"),
            cmd: doc,
        });
        let mut doc = cargo_with(&["doc", "--no-deps"], &["folium-kernel"], &["--target", t]);
        doc.env("RUSTDOCFLAGS", "-D warnings");
        s.push(Step {
            what: format!("rustdoc, kernel, {t}"),
            cmd: doc,
        });
    }
    s
}

/// Runs every step, each to the end (so one run shows every problem), and
/// returns how many passed and failed.
pub fn lint() -> Result<(usize, usize)> {
    crate::toolchain::ensure()?;
    let (mut passed, mut failed) = (0, 0);
    for mut step in steps() {
        let start = Instant::now();
        let status = step
            .cmd
            .status()
            .map_err(|e| format!("cannot run cargo for {}: {e}", step.what))?;
        let secs = start.elapsed().as_secs_f64();
        if status.success() {
            passed += 1;
            println!("lint {} ... ok ({secs:.1} s)", step.what);
        } else {
            failed += 1;
            println!("lint {} ... FAILED ({secs:.1} s)", step.what);
        }
    }
    println!("lint: {passed} passed, {failed} failed");
    Ok((passed, failed))
}

/// `cargo xtask lint`.
pub fn run() -> Result<bool> {
    let (_, failed) = lint()?;
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_crate_is_linted_with_warnings_denied() {
        let steps = steps();
        let clippy: Vec<Vec<String>> = steps
            .iter()
            .map(|s| words(&s.cmd))
            .filter(|w| w[0] == "clippy")
            .collect();
        for w in &clippy {
            assert!(w.ends_with(&["-D".into(), "warnings".into()]), "{w:?}");
        }
        // Each bare-metal crate on both architectures, each host crate once
        // with its tests.
        for p in KERNEL.iter().chain(USER) {
            for arch in [Arch::Aarch64, Arch::X86_64] {
                assert!(
                    clippy
                        .iter()
                        .any(|w| w.contains(&p.to_string())
                            && w.contains(&arch.target().to_string())),
                    "{p} on {}",
                    arch.target()
                );
            }
        }
        for p in HOST {
            assert!(
                clippy
                    .iter()
                    .any(|w| w.contains(&p.to_string()) && w.contains(&"--all-targets".into()))
            );
        }
        assert_eq!(words(&steps[0].cmd), ["fmt", "--all", "--check"]);
    }

    /// The package names of the workspace's members, read from the
    /// manifests (not from the lists above, so a new crate missing from
    /// them fails here).
    fn workspace_packages() -> Vec<String> {
        let root = crate::build::root();
        let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members = text.split("members = [").nth(1).unwrap();
        let members = &members[..members.find(']').unwrap()];
        members
            .split(',')
            .map(|m| m.trim().trim_matches('"'))
            .filter(|m| !m.is_empty())
            .map(|m| {
                let manifest = std::fs::read_to_string(root.join(m).join("Cargo.toml")).unwrap();
                let name = manifest
                    .lines()
                    .find_map(|l| l.strip_prefix("name = "))
                    .unwrap();
                name.trim_matches('"').to_string()
            })
            .collect()
    }

    #[test]
    fn every_workspace_member_is_linted() {
        let packages = workspace_packages();
        assert!(packages.len() >= 9, "{packages:?}");
        for p in &packages {
            assert!(
                HOST.iter().chain(KERNEL).chain(USER).any(|q| q == p),
                "{p} is in the workspace but no lint step checks it"
            );
        }
    }
}
