//! Fails the build, with one line saying what to run instead, when a
//! bare-metal crate (the kernel, the user programs) is built for a host
//! target, as `cargo clippy --workspace` or `cargo build --workspace` do.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "none" {
        let target = std::env::var("TARGET").unwrap_or_default();
        println!(
            "cargo::error=the kernel and the user programs build for aarch64-unknown-none and \
             x86_64-unknown-none only, not {target}: run `cargo xtask lint` (clippy and rustdoc \
             on every crate) or `cargo xtask build`"
        );
    }
}
