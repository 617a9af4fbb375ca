//! The mTHP policy through Linux's sysfs knobs, the same files on Folium
//! and on Linux: set one folio size for a measurement, read the per-size
//! fault counters that prove which size was used, and put everything back.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::{read_file, write_file};

/// Folio sizes (kB) with a knob: 16 kB (order 2) to 2048 kB (order 9).
pub const LARGE_KB: [u64; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];

const DIR: &str = "/sys/kernel/mm/transparent_hugepage";
const O_WRONLY: u64 = 1;

/// `path` as a NUL-terminated C string.
fn cpath(path: &str) -> Vec<u8> {
    let mut v = Vec::from(path.as_bytes());
    v.push(0);
    v
}

fn read(path: &str) -> Option<String> {
    let p = cpath(path);
    read_file(core::ffi::CStr::from_bytes_with_nul(&p).ok()?)
}

fn write(path: &str, word: &str) -> Result<(), String> {
    let p = cpath(path);
    let c = core::ffi::CStr::from_bytes_with_nul(&p).map_err(|_| String::from("bad path"))?;
    write_file(c, O_WRONLY, word.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("{path}: {e}"))
}

/// The word in brackets of a knob's contents (`always [madvise] never`).
fn current(text: &str) -> Option<&str> {
    let s = text.find('[')?;
    let e = text[s..].find(']')? + s;
    Some(&text[s + 1..e])
}

fn size_knob(kb: u64) -> String {
    format!("{DIR}/hugepages-{kb}kB/enabled")
}

/// Every knob's setting, to restore after the run.
pub struct Saved {
    top: String,
    sizes: Vec<(u64, String)>,
}

/// Reads every knob; `None` if the files are missing (no mTHP support:
/// a kernel older than Linux 6.8, or sysfs not mounted).
pub fn save() -> Option<Saved> {
    let top = current(&read(&format!("{DIR}/enabled"))?)?.into();
    let mut sizes = Vec::new();
    for kb in LARGE_KB {
        sizes.push((kb, current(&read(&size_knob(kb))?)?.into()));
    }
    Some(Saved { top, sizes })
}

/// Puts every knob back as [`save`] found it.
pub fn restore(s: &Saved) -> Result<(), String> {
    write(&format!("{DIR}/enabled"), &s.top)?;
    for (kb, w) in &s.sizes {
        write(&size_knob(*kb), w)?;
    }
    Ok(())
}

/// The policy for measuring folios of `kb` kB: the top level `never`,
/// that size `always`, every other size `never` (4 kB: every size
/// `never`, so faults take order 0).
pub fn use_only(kb: u64) -> Result<(), String> {
    write(&format!("{DIR}/enabled"), "never")?;
    for k in LARGE_KB {
        write(&size_knob(k), if k == kb { "always" } else { "never" })?;
    }
    Ok(())
}

/// Folium's batching switch (`pte_batching`: 1 batches fork and zap over
/// large folios, 0 goes PTE by PTE), `None` where there is none (Linux).
pub fn batching() -> Option<bool> {
    let t = read(&format!("{DIR}/pte_batching"))?;
    Some(t.trim() == "1")
}

/// Sets Folium's batching switch.
pub fn set_batching(on: bool) -> Result<(), String> {
    write(&format!("{DIR}/pte_batching"), if on { "1" } else { "0" })
}

/// `anon_fault_alloc` of every large size, in [`LARGE_KB`] order (0 where
/// unreadable).
pub fn fault_allocs() -> [u64; 8] {
    let mut out = [0; 8];
    for (i, kb) in LARGE_KB.iter().enumerate() {
        let path = format!("{DIR}/hugepages-{kb}kB/stats/anon_fault_alloc");
        out[i] = read(&path).and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    }
    out
}
