//! The memmap's counters of contained folio bugs: each event is a
//! counting bug elsewhere that a check refused or saturated (see
//! `folio.rs`, "Checks that stay on in every build").

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

/// Counters of contained folio bugs, one set per [`Memmap`](super::Memmap): every event
/// is a counting bug elsewhere that was refused or saturated rather than
/// turned into a wrapped count or a freed-while-in-use folio.
#[derive(Debug)]
pub struct SafetyStats {
    pub(crate) ref_saturated: AtomicU64,
    pub(crate) ref_on_zero: AtomicU64,
    pub(crate) put_saturated: AtomicU64,
    pub(crate) put_underflow: AtomicU64,
    pub(crate) freed_mapped: AtomicU64,
    pub(crate) map_saturated: AtomicU64,
    pub(crate) map_underflow: AtomicU64,
}

/// A snapshot of [`SafetyStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SafetyCounts {
    /// Refcounts that reached [`REF_SATURATED`](crate::folio::REF_SATURATED) by taking references.
    pub ref_saturated: u64,
    /// References taken on a count of 0 (the folio was pinned).
    pub ref_on_zero: u64,
    /// Puts absorbed by a saturated count.
    pub put_saturated: u64,
    /// Puts refused on a count of 0 or a frame no longer allocated.
    pub put_underflow: u64,
    /// Frees refused because the folio was still mapped (pinned instead).
    pub freed_mapped: u64,
    /// Mapcounts that reached [`MAP_SATURATED`](crate::folio::MAP_SATURATED).
    pub map_saturated: u64,
    /// Mapcount decrements refused because they would go below 0.
    pub map_underflow: u64,
}

impl SafetyCounts {
    /// All events together.
    pub fn total(&self) -> u64 {
        self.ref_saturated
            + self.ref_on_zero
            + self.put_saturated
            + self.put_underflow
            + self.freed_mapped
            + self.map_saturated
            + self.map_underflow
    }
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl SafetyStats {
    pub(crate) const fn new() -> SafetyStats {
        SafetyStats {
            ref_saturated: AtomicU64::new(0),
            ref_on_zero: AtomicU64::new(0),
            put_saturated: AtomicU64::new(0),
            put_underflow: AtomicU64::new(0),
            freed_mapped: AtomicU64::new(0),
            map_saturated: AtomicU64::new(0),
            map_underflow: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> SafetyCounts {
        SafetyCounts {
            ref_saturated: self.ref_saturated.load(Relaxed),
            ref_on_zero: self.ref_on_zero.load(Relaxed),
            put_saturated: self.put_saturated.load(Relaxed),
            put_underflow: self.put_underflow.load(Relaxed),
            freed_mapped: self.freed_mapped.load(Relaxed),
            map_saturated: self.map_saturated.load(Relaxed),
            map_underflow: self.map_underflow.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_adds_every_kind() {
        let c = SafetyCounts {
            ref_saturated: 1,
            ref_on_zero: 2,
            put_saturated: 4,
            put_underflow: 8,
            freed_mapped: 16,
            map_saturated: 32,
            map_underflow: 64,
        };
        assert_eq!(c.total(), 127);
        assert_eq!(SafetyCounts::default().total(), 0);
    }
}
