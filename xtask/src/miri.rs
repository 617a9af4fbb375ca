//! `cargo xtask miri`: the mm crate's host tests under Miri, which checks
//! every raw-pointer access of the simulated physical memory (the arena,
//! the linear map, the memmap) against Rust's aliasing and provenance
//! rules.
//!
//! Miri exists only on nightly. The project builds with the stable
//! toolchain `rust-toolchain.toml` pins; nightly is used here as a checker
//! only, named explicitly (`rustup run nightly`), and installed with the
//! miri component when it is missing (or, without rustup, the command to
//! do so is printed).
//!
//! The checks: Stacked Borrows (Miri's default aliasing model; `--tree-borrows`
//! for Tree Borrows) and strict provenance (no pointer may come from a bare
//! integer: the host tests' linear map derives every pointer from the
//! arena's). The tests themselves run fewer proptest cases and smaller
//! arenas under `cfg(miri)`.

use std::process::Command;
use std::time::Instant;

use crate::build::{self, run_cmd, show_command};
use crate::{MiriArgs, Result};

/// The toolchain Miri runs on.
const TOOLCHAIN: &str = "nightly";

/// What installs it (rustup's own words).
const INSTALL: &[&str] = &[
    "rustup",
    "toolchain",
    "install",
    TOOLCHAIN,
    "--profile",
    "minimal",
    "--component",
    "miri",
];

/// Miri's flags: strict provenance, the aliasing model, then the user's
/// own `MIRIFLAGS`.
fn miri_flags(tree_borrows: bool, user: Option<&str>) -> String {
    let mut flags = vec!["-Zmiri-strict-provenance"];
    if tree_borrows {
        flags.push("-Zmiri-tree-borrows");
    }
    flags.extend(user.map(str::trim).filter(|u| !u.is_empty()));
    flags.join(" ")
}

/// A command run by the nightly toolchain through rustup, with nothing of
/// the stable cargo that started xtask in its environment (cargo-miri
/// would otherwise drive `$CARGO`, the pinned stable one).
fn nightly(args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", TOOLCHAIN])
        .args(args)
        .current_dir(build::root());
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "RUSTC_WRAPPER",
    ] {
        c.env_remove(var);
    }
    c
}

/// `cargo miri test -p folium-mm` with the user's extra arguments.
fn test_command(o: &MiriArgs, user_flags: Option<&str>) -> Command {
    let mut c = nightly(&["cargo", "miri", "test", "-p", "folium-mm", "--no-fail-fast"]);
    c.args(&o.args)
        .env("MIRIFLAGS", miri_flags(o.tree_borrows, user_flags));
    c
}

/// True if the nightly toolchain runs `cargo miri`.
fn have_miri() -> bool {
    nightly(&["cargo", "miri", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure nightly with Miri is there: installs it with rustup, or
/// says how to when rustup itself is missing.
fn ensure_miri() -> Result<()> {
    if have_miri() {
        return Ok(());
    }
    let have_rustup = Command::new("rustup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_rustup {
        return Err(format!(
            "Miri needs the nightly toolchain with its miri component, installed by \
             rustup (https://rustup.rs), which is not installed; then:\n\n{}\n",
            INSTALL.join(" ")
        ));
    }
    eprintln!(
        "xtask: installing {TOOLCHAIN} with Miri: {}",
        INSTALL.join(" ")
    );
    run_cmd(Command::new(INSTALL[0]).args(&INSTALL[1..]))?;
    if have_miri() {
        Ok(())
    } else {
        Err(format!(
            "rustup ran, but `rustup run {TOOLCHAIN} cargo miri --version` still fails"
        ))
    }
}

/// `cargo xtask miri`.
pub fn run(o: &MiriArgs) -> Result<bool> {
    ensure_miri()?;
    let user = std::env::var("MIRIFLAGS").ok();
    let mut cmd = test_command(o, user.as_deref());
    let flags = miri_flags(o.tree_borrows, user.as_deref());
    println!("== MIRIFLAGS='{flags}' {}", show_command(&cmd));
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show_command(&cmd)))?;
    let secs = t.elapsed().as_secs();
    let model = if o.tree_borrows {
        "Tree Borrows"
    } else {
        "Stacked Borrows"
    };
    if status.success() {
        println!("miri ({model}, strict provenance): passed in {secs} s");
    } else {
        println!("miri ({model}, strict provenance): FAILED ({status}) after {secs} s");
    }
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    fn env(c: &Command, key: &str) -> Option<Option<String>> {
        c.get_envs()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn runs_nightly_miri_on_the_mm_crate_with_the_users_arguments() {
        let o = MiriArgs {
            tree_borrows: false,
            args: vec!["--test".into(), "aspace".into()],
        };
        let c = test_command(&o, None);
        assert_eq!(
            words(&c),
            [
                "rustup",
                "run",
                "nightly",
                "cargo",
                "miri",
                "test",
                "-p",
                "folium-mm",
                "--no-fail-fast",
                "--test",
                "aspace"
            ]
        );
        // The stable cargo that runs xtask must not leak into nightly's.
        assert_eq!(env(&c, "CARGO"), Some(None));
        assert_eq!(env(&c, "RUSTUP_TOOLCHAIN"), Some(None));
        assert_eq!(
            env(&c, "MIRIFLAGS"),
            Some(Some("-Zmiri-strict-provenance".into()))
        );
    }

    #[test]
    fn flags_pick_the_model_and_keep_the_users_own() {
        assert_eq!(miri_flags(false, None), "-Zmiri-strict-provenance");
        assert_eq!(
            miri_flags(true, Some(" -Zmiri-seed=3 ")),
            "-Zmiri-strict-provenance -Zmiri-tree-borrows -Zmiri-seed=3"
        );
        assert_eq!(miri_flags(false, Some("  ")), "-Zmiri-strict-provenance");
    }

    #[test]
    fn the_install_command_is_rustups_minimal_nightly_with_miri() {
        assert_eq!(
            INSTALL.join(" "),
            "rustup toolchain install nightly --profile minimal --component miri"
        );
    }
}
