//! Counters of the batching machinery, global and lock-free, for tests and
//! benchmarks (the kernel serves them as the text file
//! `/sys/kernel/mm/folium/stats`):
//!
//! - TLB flushes the gathers issued, by kind (one page, a range, a whole
//!   address space);
//! - PTEs per batch of fork and zap, as a histogram of powers of two
//!   (bucket `k` counts batches of `2^k ..= 2^(k+1) - 1` PTEs);
//! - gathers finished and the (folio, nr) entries they released;
//! - faults that only marked an old entry young (no hardware access
//!   flag), and instruction-cache syncs of folios about to be mapped
//!   executable;
//! - faults that lost a race with another fault of their space.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::pgtable::FoldEvent;

/// Histogram buckets: batches of 1 up to 512 PTEs (one table).
pub const BUCKETS: usize = 10;

/// The counters.
pub struct MmStats {
    /// Flushes of one page (fault paths).
    pub flush_page: AtomicU64,
    /// Gather flushes of a range.
    pub flush_range: AtomicU64,
    /// Gather flushes of a whole address space.
    pub flush_asid: AtomicU64,
    /// Batches of fork's copy, by size.
    pub fork_batches: [AtomicU64; BUCKETS],
    /// Batches of zap (munmap, MADV_DONTNEED, exit), by size.
    pub zap_batches: [AtomicU64; BUCKETS],
    /// Gathers finished.
    pub gathers: AtomicU64,
    /// (folio, nr) entries handed to gathers.
    pub gather_entries: AtomicU64,
    /// Folding events (arm64 contpte), by [`FoldEvent`] in declaration
    /// order: folds, unfolds, refolds, block flushes.
    pub folds: [AtomicU64; 4],
    /// Faults on a present, old entry that set its access flag (arm64
    /// without hardware access-flag management).
    pub young_fixups: AtomicU64,
    /// Folios whose data cache was cleaned and instruction cache
    /// invalidated before an executable mapping ([`MmEnv::sync_icache`](crate::env::MmEnv::sync_icache)).
    pub icache_syncs: AtomicU64,
    /// Faults that found, once they had their folio, that another fault
    /// of the same space had mapped the range meanwhile: they give the
    /// folio back and the access runs again (Linux's `pte_same` and
    /// `pte_range_none` rechecks).
    pub fault_retries: AtomicU64,
}

/// The global counters.
pub static STATS: MmStats = MmStats {
    flush_page: AtomicU64::new(0),
    flush_range: AtomicU64::new(0),
    flush_asid: AtomicU64::new(0),
    fork_batches: [const { AtomicU64::new(0) }; BUCKETS],
    zap_batches: [const { AtomicU64::new(0) }; BUCKETS],
    gathers: AtomicU64::new(0),
    gather_entries: AtomicU64::new(0),
    folds: [const { AtomicU64::new(0) }; 4],
    young_fixups: AtomicU64::new(0),
    icache_syncs: AtomicU64::new(0),
    fault_retries: AtomicU64::new(0),
};

/// The names the folding counters are served under.
const FOLD_NAMES: [&str; 4] = [
    "contpte_fold",
    "contpte_unfold",
    "contpte_refold",
    "contpte_tlbi",
];

fn fold_index(event: FoldEvent) -> usize {
    event as usize
}

/// The histogram bucket of a batch of `nr` PTEs.
pub fn bucket(nr: usize) -> usize {
    (usize::BITS - 1 - nr.max(1).leading_zeros()).min(BUCKETS as u32 - 1) as usize
}

/// Batch sizes counted locally (no atomics in a fork's or a zap's inner
/// loop) and added to a global histogram once per page-table page.
#[derive(Default)]
pub struct LocalHistogram([u64; BUCKETS]);

impl LocalHistogram {
    /// Counts a batch of `nr` PTEs.
    #[inline]
    pub fn count(&mut self, nr: usize) {
        self.0[bucket(nr)] += 1;
    }

    /// Counts `times` batches of one PTE (kept in a plain counter by the
    /// loops, which see mostly those).
    #[inline]
    pub fn count_singles(&mut self, times: u64) {
        self.0[bucket(1)] += times;
    }

    /// Adds the counts to `hist`.
    pub fn add_to(&self, hist: &[AtomicU64; BUCKETS]) {
        for (h, &n) in hist.iter().zip(self.0.iter()) {
            if n != 0 {
                h.fetch_add(n, Relaxed);
            }
        }
    }
}

impl MmStats {
    /// Counts `n` folding events.
    pub fn note_fold(&self, event: FoldEvent, n: u64) {
        self.folds[fold_index(event)].fetch_add(n, Relaxed);
    }

    /// The count of one kind of folding event.
    pub fn folds(&self, event: FoldEvent) -> u64 {
        self.folds[fold_index(event)].load(Relaxed)
    }

    /// The counters as `name value` lines (histograms as `name_<lo> n`).
    pub fn write(&self, out: &mut impl Write) {
        let _ = writeln!(out, "tlb_flush_page {}", self.flush_page.load(Relaxed));
        let _ = writeln!(out, "tlb_flush_range {}", self.flush_range.load(Relaxed));
        let _ = writeln!(out, "tlb_flush_asid {}", self.flush_asid.load(Relaxed));
        for (name, h) in [
            ("fork_batch", &self.fork_batches),
            ("zap_batch", &self.zap_batches),
        ] {
            for (k, c) in h.iter().enumerate() {
                let _ = writeln!(out, "{name}_{} {}", 1u32 << k, c.load(Relaxed));
            }
        }
        let _ = writeln!(out, "gathers {}", self.gathers.load(Relaxed));
        let _ = writeln!(out, "gather_entries {}", self.gather_entries.load(Relaxed));
        for (name, c) in FOLD_NAMES.iter().zip(&self.folds) {
            let _ = writeln!(out, "{name} {}", c.load(Relaxed));
        }
        let _ = writeln!(out, "fault_mkyoung {}", self.young_fixups.load(Relaxed));
        let _ = writeln!(out, "icache_sync {}", self.icache_syncs.load(Relaxed));
        let _ = writeln!(out, "fault_retry {}", self.fault_retries.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 1);
        assert_eq!(bucket(16), 4);
        assert_eq!(bucket(511), 8);
        assert_eq!(bucket(512), 9);
        assert_eq!(bucket(4096), 9);
    }

    #[test]
    fn a_local_histogram_adds_its_counts() {
        let mut h = LocalHistogram::default();
        h.count(1);
        h.count(16);
        h.count(17);
        h.count_singles(5);
        let total: [AtomicU64; BUCKETS] = Default::default();
        total[4].store(10, Relaxed);
        h.add_to(&total);
        h.add_to(&total);
        let got: Vec<u64> = total.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(got, [12, 0, 0, 0, 14, 0, 0, 0, 0, 0]);
    }
}
