//! The mTHP policy at Linux's sysfs paths, shared by the programs that
//! set it or read its counters (`mmtests`, `bench`): the per-size knob
//! and counter paths, reading and writing a knob, Linux's bracketed
//! format, saving and restoring the whole policy, and the fault counters
//! read without touching the heap. Also the paths of Folium's own files,
//! which live in a directory Linux does not have
//! ([`folium_abi::sysfs`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use crate::{read_file, read_into, write_file};

/// Folio sizes with a knob, in kB: order 2 (16 kB) to 9 (2 MiB).
pub const SIZES: [u64; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Where the knobs live.
pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// Linux's PMD size in bytes (read-only; `2097152` with 4 KiB pages).
pub const HPAGE_PMD_SIZE: &CStr = c"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size";

/// A file of Folium's own directory, as a C string.
macro_rules! folium_file {
    ($file:literal) => {
        match CStr::from_bytes_with_nul(
            concat!(folium_abi::folium_mm_path!($file), "\0").as_bytes(),
        ) {
            Ok(c) => c,
            Err(_) => panic!("a bad path"),
        }
    };
}

/// Folium's batching switch: `1` batches fork and zap over runs of PTEs
/// mapping one large folio, `0` goes PTE by PTE. Absent on Linux.
pub const PTE_BATCHING: &CStr = folium_file!("pte_batching");

/// Folium's batching and TLB-flush counters (read-only). Absent on Linux.
pub const FOLIUM_STATS: &CStr = folium_file!("stats");

/// Folium's arm64 contiguous-PTE switch: `1` folds each 64 KiB block of
/// 16 PTEs mapping one folio (the default on arm64), `0` never folds
/// (blocks folded before stay so until changed). Absent on x86 and Linux.
pub const CONTPTE: &CStr = folium_file!("contpte");

/// How Folium's fork write-protects a folded block: `0` as a whole,
/// keeping it folded (Linux 6.9's batched `wrprotect_ptes`), `1` unfolds
/// it and goes PTE by PTE (Linux before 6.9; for measurement only).
/// Absent where [`CONTPTE`] is.
pub const CONTPTE_FORK_PER_PTE: &CStr = folium_file!("contpte_fork_per_pte");

/// The contiguous-PTE counters of [`FOLIUM_STATS`], in this order:
/// blocks folded, unfolded, folded again after an unfold, and the TLB
/// invalidations the folding cost.
pub const CONTPTE_STATS: [&str; 4] = [
    "contpte_fold",
    "contpte_unfold",
    "contpte_refold",
    "contpte_tlbi",
];

/// The value of counter `name` in the `name value` lines of a stats
/// file's `text`.
pub fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        if n == name {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The [`CONTPTE_STATS`] counters, read without touching the heap; `None`
/// where the stats file or one of them is missing (x86, Linux).
pub fn contpte_stats() -> Option<[u64; 4]> {
    let mut buf = [0u8; 4096];
    let n = read_into(FOLIUM_STATS, &mut buf)?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    let mut out = [0; 4];
    for (o, name) in out.iter_mut().zip(CONTPTE_STATS) {
        *o = stat(text, name)?;
    }
    Some(out)
}

macro_rules! stat_path {
    ($kb:literal, $file:literal) => {
        match CStr::from_bytes_with_nul(
            concat!(
                "/sys/kernel/mm/transparent_hugepage/hugepages-",
                $kb,
                "kB/stats/",
                $file,
                "\0"
            )
            .as_bytes(),
        ) {
            Ok(c) => c,
            Err(_) => panic!("a bad path"),
        }
    };
}

macro_rules! stat_paths {
    ($file:literal) => {
        [
            stat_path!(16, $file),
            stat_path!(32, $file),
            stat_path!(64, $file),
            stat_path!(128, $file),
            stat_path!(256, $file),
            stat_path!(512, $file),
            stat_path!(1024, $file),
            stat_path!(2048, $file),
        ]
    };
}

/// `anon_fault_alloc` of each size in [`SIZES`].
pub const ALLOC: [&CStr; 8] = stat_paths!("anon_fault_alloc");
/// `anon_fault_fallback` of each size in [`SIZES`].
pub const FALLBACK: [&CStr; 8] = stat_paths!("anon_fault_fallback");
/// `split` (folios split) of each size in [`SIZES`].
pub const SPLIT: [&CStr; 8] = stat_paths!("split");
/// `split_deferred` (folios queued for deferred split) of each size.
pub const SPLIT_DEFERRED: [&CStr; 8] = stat_paths!("split_deferred");

/// The counters at `paths`, read without touching the heap (a heap page
/// faulted in between two readings could itself be a counted folio).
pub fn counters(paths: &[&CStr; 8]) -> Result<[u64; 8], String> {
    let mut out = [0; 8];
    for (o, path) in out.iter_mut().zip(paths) {
        let mut buf = [0u8; 32];
        let n = read_into(path, &mut buf).ok_or_else(|| format!("cannot read {path:?}"))?;
        *o = core::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.trim_end().parse().ok())
            .ok_or_else(|| format!("{path:?} reads {:?}", &buf[..n]))?;
    }
    Ok(out)
}

/// `anon_fault_alloc` of each size in [`SIZES`], read without the heap.
pub fn allocs() -> Result<[u64; 8], String> {
    counters(&ALLOC)
}

/// The knob of `kb` (`None`: the top-level one), NUL-terminated.
pub fn knob_path(kb: Option<u64>) -> Vec<u8> {
    let mut p = match kb {
        Some(kb) => format!("{THP_DIR}/hugepages-{kb}kB/enabled").into_bytes(),
        None => format!("{THP_DIR}/enabled").into_bytes(),
    };
    p.push(0);
    p
}

/// The text of the knob of `kb` (`None`: the top-level one).
pub fn read_knob(kb: Option<u64>) -> Result<String, String> {
    let p = knob_path(kb);
    let c = CStr::from_bytes_with_nul(&p).map_err(|_| String::from("bad path"))?;
    read_file(c).ok_or_else(|| format!("cannot read {c:?}"))
}

/// Writes `word` to the knob of `kb` (`None`: the top-level one): the
/// write's result, or the errno's name.
pub fn write_knob(kb: Option<u64>, word: &[u8]) -> Result<u64, &'static str> {
    let p = knob_path(kb);
    let c = CStr::from_bytes_with_nul(&p).map_err(|_| "bad path")?;
    write_file(c, 1, word)
}

/// The bracketed word of a knob's text (`always [madvise] never`).
pub fn current(text: &str) -> Option<&str> {
    let s = text.find('[')?;
    let e = text[s..].find(']')? + s;
    Some(&text[s + 1..e])
}

/// Sets the knob of `kb` to `word`; an error says which and why.
pub fn set_knob(kb: Option<u64>, word: &str) -> Result<(), String> {
    match write_knob(kb, word.as_bytes()) {
        Ok(n) if n == word.len() as u64 => Ok(()),
        r => Err(format!("writing {word:?} to the {kb:?} kB knob: {r:?}")),
    }
}

/// Every knob's word: (top, per size).
pub type Policy = (String, Vec<String>);

/// Every knob's current word.
pub fn save_policy() -> Result<Policy, String> {
    let word = |kb| {
        let t = read_knob(kb)?;
        current(&t)
            .map(String::from)
            .ok_or_else(|| format!("knob {kb:?} reads {t:?}"))
    };
    let top = word(None)?;
    let sizes = SIZES
        .iter()
        .map(|&kb| word(Some(kb)))
        .collect::<Result<_, _>>()?;
    Ok((top, sizes))
}

/// Sets the top-level knob to `top` and each size's to `sizes` (per
/// [`SIZES`]).
pub fn apply_policy(top: &str, sizes: &[&str]) -> Result<(), String> {
    set_knob(None, top)?;
    for (kb, w) in SIZES.iter().zip(sizes) {
        set_knob(Some(*kb), w)?;
    }
    Ok(())
}

/// The policy with folios of `kb` kB only (`always` for that size, every
/// other size and the top level `never`; 4 kB: all `never`).
pub fn only(kb: u64) -> [&'static str; 8] {
    SIZES.map(|k| if k == kb { "always" } else { "never" })
}
