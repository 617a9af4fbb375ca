//! Physical ranges and lists of them. The lists grow on the kernel heap
//! (firmware may list any number of banks and reservations), so they are
//! filled only once the kernel's heap exists.

use alloc::vec::Vec;
use core::fmt;

use folium_mm::{PAGE_SIZE, PhysAddr};

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl PhysRange {
    /// The empty range at 0.
    pub const EMPTY: PhysRange = PhysRange {
        start: PhysAddr::new(0),
        end: PhysAddr::new(0),
    };

    /// `[start, start + size)`.
    pub const fn new(start: PhysAddr, size: u64) -> Self {
        Self {
            start,
            end: PhysAddr::new(start.as_u64().saturating_add(size)),
        }
    }

    /// The whole pages inside the range (start rounded up, end down): for
    /// RAM, where a partial page cannot be handed out.
    pub const fn pages_inside(&self) -> PhysRange {
        PhysRange {
            start: self.start.align_up(PAGE_SIZE),
            end: self.end.align_down(PAGE_SIZE),
        }
    }

    /// The pages the range touches (start rounded down, end up): for
    /// reservations and MMIO, where a partial page must be covered.
    pub const fn pages_covering(&self) -> PhysRange {
        PhysRange {
            start: self.start.align_down(PAGE_SIZE),
            end: self.end.align_up(PAGE_SIZE),
        }
    }

    /// Size in bytes.
    pub const fn size(&self) -> u64 {
        self.end.as_u64() - self.start.as_u64()
    }

    /// True if the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end.as_u64() <= self.start.as_u64()
    }

    /// True if the two ranges share a byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start.as_u64() < other.end.as_u64() && other.start.as_u64() < self.end.as_u64()
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#012x}..{:#012x})",
            self.start.as_u64(),
            self.end.as_u64()
        )
    }
}

/// A list of physical ranges, without a fixed capacity.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RangeList {
    items: Vec<PhysRange>,
}

impl RangeList {
    /// An empty list.
    pub const fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// Appends a range (ignored if empty).
    pub fn push(&mut self, r: PhysRange) {
        if !r.is_empty() {
            self.items.push(r);
        }
    }

    /// The ranges, in insertion order (or sorted, after [`Self::normalize`]).
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.items
    }

    /// Sorts the ranges and merges those that overlap or touch, so every
    /// byte is listed once: firmware may repeat a bank or list overlapping
    /// ones, and handing a frame to the allocator twice corrupts it.
    pub fn normalize(&mut self) {
        self.items.sort_by_key(|r| r.start);
        let mut out: Vec<PhysRange> = Vec::with_capacity(self.items.len());
        for &r in &self.items {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        self.items = out;
    }

    /// Removes every byte of `holes` from the list (which stays sorted if
    /// it was).
    pub fn subtract(&mut self, holes: &[PhysRange]) {
        for h in holes.iter().filter(|h| !h.is_empty()) {
            let mut next = Vec::with_capacity(self.items.len() + 1);
            for &r in &self.items {
                if !r.overlaps(h) {
                    next.push(r);
                    continue;
                }
                if r.start < h.start {
                    next.push(PhysRange {
                        start: r.start,
                        end: h.start,
                    });
                }
                if h.end < r.end {
                    next.push(PhysRange {
                        start: h.end,
                        end: r.end,
                    });
                }
            }
            self.items = next;
        }
    }

    /// Total bytes over all ranges (overlaps counted twice unless
    /// normalised).
    pub fn total(&self) -> u64 {
        self.items.iter().map(PhysRange::size).sum()
    }

    /// True if no range is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl FromIterator<PhysRange> for RangeList {
    fn from_iter<I: IntoIterator<Item = PhysRange>>(iter: I) -> Self {
        let mut l = RangeList::new();
        iter.into_iter().for_each(|r| l.push(r));
        l
    }
}

impl fmt::Debug for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}
