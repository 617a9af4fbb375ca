//! Empty: this crate's build script refuses host targets, so the
//! bare-metal crates that depend on it (`folium-kernel`, `ulib`) stop a
//! host build with one line pointing at `cargo xtask lint`.
#![no_std]
