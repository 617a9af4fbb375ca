//! Snapshots of a process's own page tables for `cargo xtask mmview`:
//! [`snapshot`] reads Folium's `/sys/kernel/mm/folium/ptdump` and
//! `.../mmview` (generated at open, for the calling process) and prints
//! both to stdout between markers, in one `write`, so the output of
//! processes printing at once never interleaves inside a snapshot:
//!
//! ```text
//! ==== mmview snapshot NAME pid=N ====
//! -- ptdump --
//! (the ptdump file)
//! -- mmview --
//! (the mmview file)
//! ==== mmview end NAME ====
//! ```
//!
//! NAME is one word chosen by the program (`parent-after-fork`); xtask
//! draws one band per snapshot, in the order they were printed. Any
//! program can print the same markers itself.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use folium_abi::{Errno, Sysno};
use ulib::sys::{self, call, call_int};

/// The arm64-ptdump-style dump of the caller's user page tables.
pub const PTDUMP: &CStr = folium_path(concat!(folium_abi::folium_mm_path!("ptdump"), "\0"));
/// One record per run of pages of one folio (order, mapcount, sharing).
pub const MMVIEW: &CStr = folium_path(concat!(folium_abi::folium_mm_path!("mmview"), "\0"));

const fn folium_path(p: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(p.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("a bad path"),
    }
}

/// The whole contents of a control file, or the errno's name.
pub fn read_all(path: &CStr) -> Result<Vec<u8>, &'static str> {
    // SAFETY: a NUL-terminated path; flags O_RDONLY.
    let fd = unsafe {
        call(
            Sysno::Openat,
            [(-100i64) as u64, path.as_ptr() as u64, 0, 0, 0, 0],
        )
    }
    .map_err(Errno::name)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let r = loop {
        match sys::read(fd as i32, &mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n as usize]),
            Err(e) => break Err(e.name()),
        }
    };
    let _ = call_int(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    r
}

/// Writes all of `bytes` to stdout.
fn write_all(mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match sys::write(1, bytes) {
            Ok(0) => return Err(String::from("write to stdout wrote nothing")),
            Ok(n) => bytes = &bytes[n as usize..],
            Err(e) => return Err(format!("write to stdout: {}", e.name())),
        }
    }
    Ok(())
}

/// Prints the snapshot `name` (one word) of this process's page tables.
pub fn snapshot(name: &str) -> Result<(), String> {
    // Both files are generated at their open: ptdump first, so the two
    // describe the same tables (nothing here touches new memory between
    // the opens but the heap, which is already mapped).
    let ptdump = read_all(PTDUMP).map_err(|e| format!("{PTDUMP:?}: {e}"))?;
    let mmview = read_all(MMVIEW).map_err(|e| format!("{MMVIEW:?}: {e}"))?;
    let mut text = Vec::with_capacity(ptdump.len() + mmview.len() + 128);
    text.extend_from_slice(
        format!(
            "==== mmview snapshot {name} pid={} ====\n-- ptdump --\n",
            sys::getpid()
        )
        .as_bytes(),
    );
    text.extend_from_slice(&ptdump);
    text.extend_from_slice(b"-- mmview --\n");
    text.extend_from_slice(&mmview);
    text.extend_from_slice(format!("==== mmview end {name} ====\n").as_bytes());
    write_all(&text)
}
