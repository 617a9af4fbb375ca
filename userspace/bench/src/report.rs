//! Results: one [`Record`] per measured case, printed as a row of its
//! benchmark's table and as one JSON object per line (what `cargo xtask
//! bench` collects). Every record carries the same fields, so a reader
//! needs one schema:
//!
//! `{"bench", "case", "folio_kb", "size_mib", "iterations", "median_ns",
//! "mean_ns", "stddev_ns", "min_ns", "max_ns", "per", "per_unit",
//! "check", "kernel", ...extra}`
//!
//! The statistics are of one repetition's time in ns; `per` is what one
//! repetition covers (pages of 4 KiB, or operations) and `per_unit` names
//! it, so `median_ns / per` is the cost per unit.

use alloc::string::String;
use alloc::vec::Vec;

use ulib::println;

use crate::stats::Summary;

/// One measured case.
pub struct Record {
    /// `fault`, `munmap`, `fork`, `sys` or `memcpy`.
    pub bench: &'static str,
    /// The row's name: a folio size (`64K`), `order-0`, `null_syscall` ...
    pub case: String,
    /// Folio size in KiB, 0 where none applies.
    pub folio_kb: u64,
    /// Memory per repetition in MiB (0 where none applies).
    pub size_mib: u64,
    pub iterations: u32,
    pub summary: Summary,
    /// Units one repetition covers, and their name (`4KiB`, `op`).
    pub per: f64,
    pub per_unit: &'static str,
    /// What the program checked about the run (`ok`, or why not).
    pub check: String,
    /// More fields, as (name, JSON value).
    pub extra: Vec<(&'static str, String)>,
}

/// How fork and zap walked the page tables in a run: Folium `batched` or
/// `per-pte` (its `pte_batching` switch), or `native` (a kernel without
/// the switch, such as Linux).
pub fn mode_json(mode: &str) -> (&'static str, String) {
    ("mode", alloc::format!("\"{mode}\""))
}

impl Record {
    /// Median cost of one unit (`ns per 4 KiB`, `ns per op`).
    pub fn per_unit_ns(&self) -> f64 {
        self.summary.median / self.per.max(1.0)
    }

    /// Prints the JSON object for this record (one line).
    pub fn json(&self, kernel: &str) {
        let s = &self.summary;
        let mut extra = String::new();
        for (k, v) in &self.extra {
            extra.push_str(&alloc::format!(",\"{k}\":{v}"));
        }
        println!(
            "{{\"bench\":\"{}\",\"case\":\"{}\",\"folio_kb\":{},\"size_mib\":{},\"iterations\":{},\
             \"median_ns\":{:.0},\"mean_ns\":{:.0},\"stddev_ns\":{:.0},\"min_ns\":{:.0},\"max_ns\":{:.0},\
             \"per\":{:.0},\"per_unit\":\"{}\",\"check\":\"{}\",\"kernel\":\"{}\"{extra}}}",
            self.bench,
            self.case,
            self.folio_kb,
            self.size_mib,
            self.iterations,
            s.median,
            s.mean,
            s.stddev,
            s.min,
            s.max,
            self.per,
            self.per_unit,
            self.check,
            kernel
        );
    }
}

/// Prints the line that closes a table: how to read it.
pub fn how_to_read(text: &str) {
    println!("  how to read: {text}");
}

/// Milliseconds, or microseconds below 1 ms, with the unit.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        alloc::format!("{:.2} ms", ns / 1e6)
    } else {
        alloc::format!("{:.2} us", ns / 1e3)
    }
}

/// Prints `records` as a table under `title`: the case, the median and
/// its cost per unit, mean, standard deviation, min, max, then each
/// record's `columns` (name, value) and the check.
pub fn table(
    title: &str,
    records: &[Record],
    columns: &dyn Fn(&Record) -> Vec<(&'static str, String)>,
) {
    println!("{title}");
    let Some(first) = records.first() else {
        println!("  (nothing measured)");
        return;
    };
    let extra_names: Vec<&str> = columns(first).iter().map(|(n, _)| *n).collect();
    let mut head = alloc::format!(
        "  {:<16} {:>11} {:>12} {:>11} {:>11} {:>11} {:>11}",
        "case",
        "median",
        alloc::format!("ns/{}", first.per_unit),
        "mean",
        "stddev",
        "min",
        "max"
    );
    for n in &extra_names {
        head.push_str(&alloc::format!(" {n:>12}"));
    }
    println!("{head}  check");
    for r in records {
        let s = &r.summary;
        let mut row = alloc::format!(
            "  {:<16} {:>11} {:>12.1} {:>11} {:>11} {:>11} {:>11}",
            r.case,
            time(s.median),
            r.per_unit_ns(),
            time(s.mean),
            time(s.stddev),
            time(s.min),
            time(s.max)
        );
        for (_, v) in columns(r) {
            row.push_str(&alloc::format!(" {v:>12}"));
        }
        println!("{row}  {}", r.check);
    }
}
