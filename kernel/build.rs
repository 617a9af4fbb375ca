//! Links the kernel with the boot layer's linker script for its target,
//! and embeds the user programs `cargo xtask` built: `FOLIUM_PROGRAMS`
//! is `name=path;name=path...`, turned into `$OUT_DIR/programs.rs`
//! (`PROGRAMS: &[(&str, &[u8])]`). Without it (e.g. `cargo clippy`), the
//! list is empty and the kernel runs no user program.

use std::fmt::Write;

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    embed_programs();
    if os != "none" {
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let script = dir.join("../boot/linker").join(format!("{arch}.ld"));
    let script = script.canonicalize().unwrap_or(script);
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
}

fn embed_programs() {
    println!("cargo:rerun-if-env-changed=FOLIUM_PROGRAMS");
    let list = std::env::var("FOLIUM_PROGRAMS").unwrap_or_default();
    let mut out = String::from("/// User programs embedded at build time: (name, ELF file).\n");
    out.push_str("pub static PROGRAMS: &[(&str, &[u8])] = &[\n");
    for entry in list.split(';').filter(|e| !e.is_empty()) {
        let Some((name, path)) = entry.split_once('=') else {
            panic!("FOLIUM_PROGRAMS entry without '=': {entry}");
        };
        println!("cargo:rerun-if-changed={path}");
        let _ = writeln!(out, "    ({name:?}, include_bytes!({path:?})),");
    }
    out.push_str("];\n");
    let dest =
        std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("programs.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
