//! Fixed-capacity lists of physical ranges (no heap exists at boot).

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

/// Most ranges a [`RangeList`] keeps; further ones are dropped and counted.
pub const MAX_RANGES: usize = 32;

/// A small fixed-capacity list of physical ranges.
#[derive(Clone, Copy)]
pub struct RangeList {
    items: [PhysRange; MAX_RANGES],
    len: usize,
    dropped: usize,
}

impl RangeList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            items: [PhysRange::EMPTY; MAX_RANGES],
            len: 0,
            dropped: 0,
        }
    }

    /// Appends a range (ignored if empty; counted in [`RangeList::dropped`] if full).
    pub fn push(&mut self, r: PhysRange) {
        if r.is_empty() {
            return;
        }
        if self.len == MAX_RANGES {
            self.dropped += 1;
            return;
        }
        self.items[self.len] = r;
        self.len += 1;
    }

    /// Appends a range that must not be lost (a reservation): when the list
    /// is full, the nearest held range grows to cover it too. That reserves
    /// more than asked, which is safe; forgetting a reservation is not.
    pub fn push_coalescing(&mut self, r: PhysRange) {
        if r.is_empty() {
            return;
        }
        if self.len < MAX_RANGES {
            self.push(r);
            return;
        }
        let gap = |h: &PhysRange| {
            if h.overlaps(&r) {
                0
            } else if h.end <= r.start {
                r.start - h.end
            } else {
                h.start - r.end
            }
        };
        if let Some(h) = self.items[..self.len].iter_mut().min_by_key(|h| gap(h)) {
            h.start = h.start.min(r.start);
            h.end = h.end.max(r.end);
            self.dropped += 1;
        }
    }

    /// The ranges, in insertion order.
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.items[..self.len]
    }

    /// Number of ranges that did not fit (dropped by `push`, merged into a
    /// neighbour by `push_coalescing`).
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Total bytes over all ranges.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(PhysRange::size).sum()
    }

    /// True if no range is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for RangeList {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}
