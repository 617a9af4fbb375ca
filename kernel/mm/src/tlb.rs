//! TLB maintenance as an interface: what generic mm code may ask of the
//! hardware after it changed page tables, and a recording model that host
//! tests use to prove that no frame is freed while a translation to it may
//! still be cached.
//!
//! Address spaces are named by an [`Asid`] (arm64 ASID, x86 PCID). The
//! kernel implements [`TlbOps`] per architecture (`tlbi` / `invlpg`,
//! `invpcid` or a CR3 reload); [`RecordingTlb`] keeps, per address space,
//! the set of pages a walker might have cached since the last flush that
//! covered them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};

/// The tag of an address space's TLB entries (arm64 ASID, x86 PCID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asid(pub u16);

/// TLB invalidation, as generic mm code needs it. Every call is complete
/// when it returns: no stale translation of what it names survives on any
/// CPU (Folium runs one).
pub trait TlbOps {
    /// Invalidates the translation of the page at `va` in `asid`.
    fn flush_page(&self, asid: Asid, va: VirtAddr);
    /// Invalidates every translation of `[start, end)` in `asid`. An
    /// implementation may flush more (the whole ASID) when the range is
    /// long; that is always correct.
    fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr);
    /// Invalidates every translation tagged `asid`.
    fn flush_asid(&self, asid: Asid);
}

/// One arm64 invalidation by virtual page number (4 KiB granule): a single
/// page (`TLBI VAE1`), or a range (`TLBI RVAE1`, FEAT_TLBIRANGE) of
/// `(num + 1) << (5 * scale + 1)` pages from `vpn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbiOp {
    /// One page.
    Page {
        /// Its virtual page number.
        vpn: u64,
    },
    /// A run of pages.
    Range {
        /// The first page's virtual page number.
        vpn: u64,
        /// The range's SCALE field, 0..=3.
        scale: u8,
        /// The range's NUM field, 0..=31.
        num: u8,
    },
}

impl TlbiOp {
    /// Pages this operation invalidates.
    pub fn pages(self) -> u64 {
        match self {
            TlbiOp::Page { .. } => 1,
            TlbiOp::Range { scale, num, .. } => (u64::from(num) + 1) << (5 * scale + 1),
        }
    }
}

/// Most pages one range operation covers (NUM 31 at SCALE 3): above this
/// a range flush is cheaper as a whole-ASID flush (Linux's
/// `MAX_TLBI_RANGE_PAGES`).
pub const ARM64_RANGE_PAGES_MAX: u64 = 32 << 16;

/// The range operations that invalidate exactly `pages` pages from `vpn`
/// (at most [`ARM64_RANGE_PAGES_MAX`]): the largest scale first, each
/// scale used at most once with as many blocks as fit, and a lone page
/// (a range covers an even number) as a single-page operation. At most
/// five operations, whatever the length.
pub fn arm64_range_ops(mut vpn: u64, mut pages: u64) -> impl Iterator<Item = TlbiOp> {
    debug_assert!(pages <= ARM64_RANGE_PAGES_MAX);
    let mut scale = 3u8;
    core::iter::from_fn(move || {
        while pages > 0 {
            let block = 1u64 << (5 * scale + 1);
            let op = if pages >= block {
                let n = (pages / block).min(32);
                TlbiOp::Range {
                    vpn,
                    scale,
                    num: (n - 1) as u8,
                }
            } else if scale == 0 {
                TlbiOp::Page { vpn }
            } else {
                scale -= 1;
                continue;
            };
            vpn += op.pages();
            pages -= op.pages();
            return Some(op);
        }
        None
    })
}

/// Page-granular model of what a TLB may hold, for host tests: a PTE that
/// was ever present may be cached, with the write permission it had, until
/// a flush covers it.
#[derive(Debug, Default)]
pub struct RecordingTlb {
    /// (asid, page VA) -> the frame the cached translation points to and
    /// whether it allowed writes.
    cached: RefCell<BTreeMap<(Asid, u64), (Pfn, bool)>>,
    /// Number of flush calls of each kind: page, range, asid.
    calls: RefCell<[u64; 3]>,
}

impl RecordingTlb {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the walker may have cached `va -> pfn` in `asid`,
    /// writable or not (called by tests for every present PTE). A
    /// writable entry stays recorded as writable until flushed: a later
    /// read-only walk does not make the cached write permission go away.
    pub fn touch(&self, asid: Asid, va: VirtAddr, pfn: Pfn, writable: bool) {
        let mut c = self.cached.borrow_mut();
        let e = c
            .entry((asid, va.align_down(PAGE_SIZE).as_u64()))
            .or_insert((pfn, writable));
        if e.0 != pfn {
            // A different frame: the hardware may hold either; keep the
            // one that is writable (the dangerous one), else the new one.
            if !e.1 {
                *e = (pfn, writable);
            }
        } else {
            e.1 |= writable;
        }
    }

    /// True if a translation to `pfn` may still be cached anywhere.
    pub fn maps_frame(&self, pfn: Pfn) -> bool {
        self.cached.borrow().values().any(|&(p, _)| p == pfn)
    }

    /// Cached translations of `asid`, as (page VA, frame, writable).
    pub fn cached(&self, asid: Asid) -> Vec<(VirtAddr, Pfn, bool)> {
        self.cached
            .borrow()
            .iter()
            .filter(|((a, _), _)| *a == asid)
            .map(|((_, va), (p, w))| (VirtAddr::new(*va), *p, *w))
            .collect()
    }

    /// How many page, range and whole-ASID flushes were issued.
    pub fn calls(&self) -> [u64; 3] {
        *self.calls.borrow()
    }
}

impl TlbOps for RecordingTlb {
    fn flush_page(&self, asid: Asid, va: VirtAddr) {
        self.calls.borrow_mut()[0] += 1;
        self.cached
            .borrow_mut()
            .remove(&(asid, va.align_down(PAGE_SIZE).as_u64()));
    }

    fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr) {
        self.calls.borrow_mut()[1] += 1;
        self.cached
            .borrow_mut()
            .retain(|(a, va), _| !(*a == asid && start.as_u64() <= *va && *va < end.as_u64()));
    }

    fn flush_asid(&self, asid: Asid) {
        self.calls.borrow_mut()[2] += 1;
        self.cached.borrow_mut().retain(|(a, _), _| *a != asid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Fewer cases under Miri, which runs this thousands of times slower,
        // and no regression file (its isolation has no working directory).
        #![proptest_config(if cfg!(miri) {
            ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig::default()
        })]

        /// The operations tile the range exactly, in order, with legal
        /// fields, and there are never more than five.
        #[test]
        fn range_ops_cover_exactly(vpn in 0u64..1 << 36, pages in 1u64..=ARM64_RANGE_PAGES_MAX) {
            let ops: Vec<TlbiOp> = arm64_range_ops(vpn, pages).collect();
            prop_assert!(ops.len() <= 5, "{ops:?}");
            let mut next = vpn;
            for op in &ops {
                match *op {
                    TlbiOp::Page { vpn } => prop_assert_eq!(vpn, next),
                    TlbiOp::Range { vpn, scale, num } => {
                        prop_assert_eq!(vpn, next);
                        prop_assert!(scale <= 3 && num <= 31);
                    }
                }
                next += op.pages();
            }
            prop_assert_eq!(next, vpn + pages);
        }
    }

    #[test]
    fn range_ops_examples() {
        let ops = |p| arm64_range_ops(0x100, p).collect::<Vec<_>>();
        assert_eq!(ops(1), [TlbiOp::Page { vpn: 0x100 }]);
        assert_eq!(
            ops(2),
            [TlbiOp::Range {
                vpn: 0x100,
                scale: 0,
                num: 0
            }]
        );
        // 1 GiB: four blocks of 2^16 pages.
        assert_eq!(
            ops(1 << 18),
            [TlbiOp::Range {
                vpn: 0x100,
                scale: 3,
                num: 3
            }]
        );
        // 511 = 7 * 64 + 31 * 2 + 1.
        assert_eq!(
            ops(511),
            [
                TlbiOp::Range {
                    vpn: 0x100,
                    scale: 1,
                    num: 6
                },
                TlbiOp::Range {
                    vpn: 0x100 + 448,
                    scale: 0,
                    num: 30
                },
                TlbiOp::Page { vpn: 0x100 + 510 },
            ]
        );
    }

    #[test]
    fn model_forgets_exactly_what_is_flushed() {
        let t = RecordingTlb::new();
        let (a, b) = (Asid(1), Asid(2));
        for i in 0..4 {
            t.touch(a, VirtAddr::new(i * PAGE_SIZE), Pfn::new(100 + i), i == 3);
        }
        t.touch(b, VirtAddr::new(0), Pfn::new(200), false);
        t.touch(b, VirtAddr::new(0), Pfn::new(200), true);
        t.touch(b, VirtAddr::new(0), Pfn::new(200), false);
        assert_eq!(
            t.cached(b),
            [(VirtAddr::new(0), Pfn::new(200), true)],
            "write permission stays cached until a flush"
        );
        t.flush_page(a, VirtAddr::new(0x123));
        assert!(!t.maps_frame(Pfn::new(100)));
        t.flush_range(a, VirtAddr::new(PAGE_SIZE), VirtAddr::new(3 * PAGE_SIZE));
        assert_eq!(
            t.cached(a),
            [(VirtAddr::new(3 * PAGE_SIZE), Pfn::new(103), true)]
        );
        t.flush_asid(a);
        assert!(t.cached(a).is_empty());
        assert!(
            t.maps_frame(Pfn::new(200)),
            "other address spaces keep theirs"
        );
        assert_eq!(t.calls(), [1, 1, 1]);
    }
}
