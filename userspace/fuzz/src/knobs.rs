//! The knobs the children feed garbage: their values before the run,
//! written back after it (and before a failure is reported), so the rest
//! of a test boot finds them as they were.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use folium_programs::{read_file, write_file};

/// Every knob a child may write.
const KNOBS: [&CStr; 12] = [
    c"/sys/kernel/mm/transparent_hugepage/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-16kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-32kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-128kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-256kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-512kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-1024kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled",
    c"/sys/kernel/mm/folium/pte_batching",
    c"/sys/kernel/mm/folium/contpte",
    c"/sys/kernel/mm/folium/contpte_fork_per_pte",
];

/// The saved values: (knob, the word to write back).
pub struct Saved(Vec<(&'static CStr, String)>);

/// The current word of a knob's text: the bracketed choice
/// (`always [madvise] never`), or the whole trimmed text.
fn word(text: &str) -> &str {
    match (text.find('['), text.find(']')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text.trim(),
    }
}

impl Saved {
    /// Reads every knob that exists.
    pub fn save() -> Saved {
        Saved(
            KNOBS
                .iter()
                .filter_map(|&k| read_file(k).map(|t| (k, String::from(word(&t)))))
                .collect(),
        )
    }

    /// Writes every saved value back; the knobs that refused.
    pub fn restore(&self) -> Vec<&'static CStr> {
        self.0
            .iter()
            .filter(|(k, w)| write_file(k, 1, w.as_bytes()).is_err())
            .map(|(k, _)| *k)
            .collect()
    }

    /// True if every knob reads back as saved.
    pub fn unchanged(&self) -> bool {
        self.0
            .iter()
            .all(|(k, w)| read_file(k).is_some_and(|t| word(&t) == w))
    }
}
