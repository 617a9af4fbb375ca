//! The boot-time memory plan: which RAM the kernel manages, where the
//! memmap goes, which free ranges the allocator gets at once and which
//! must wait for the kernel's own tables. Pure arithmetic on ranges, so
//! the host tests run it on real and synthetic firmware tables.
//!
//! The memmap spans all RAM, holes included, and must itself lie in RAM
//! that the early tables reach (the first 512 GiB on arm64, the first
//! 4 GiB on x86): it is carved top-down from the largest such free range,
//! as Linux's memblock allocates. RAM beyond the early tables' reach is
//! handed over later ([`MemPlan::deferred`]), never lost.

use folium_mm::memmap::Memmap;
use folium_mm::{PAGE_SIZE, Pfn, PhysAddr};

use crate::{PhysRange, RangeList};

/// Physical addresses at or above this are ignored (48-bit PA, both arches).
pub const MAX_PHYS: u64 = 1 << 48;
/// What arm64's early linear map covers (one L1 table: 512 GiB).
pub const AARCH64_EARLY_LIMIT: u64 = 512 << 30;
/// What x86's early tables map in the linear map (4 GiB).
pub const X86_64_EARLY_LIMIT: u64 = 4 << 30;

/// The part of `r` below `limit`.
pub fn below(r: PhysRange, limit: u64) -> Option<PhysRange> {
    let end = r.end.min(PhysAddr::new(limit));
    (r.start < end).then_some(PhysRange {
        start: r.start,
        end,
    })
}

/// The RAM the kernel can manage: overlapping or repeated banks merged
/// first (so a page split between two listed banks is kept), then each
/// bank cut to whole pages and to [`MAX_PHYS`]; sorted.
pub fn usable_ram(ram: &[PhysRange]) -> RangeList {
    let mut merged: RangeList = ram.iter().copied().collect();
    merged.normalize();
    merged
        .as_slice()
        .iter()
        .filter_map(|r| below(r.pages_inside(), MAX_PHYS))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The plan.
#[derive(Debug)]
pub struct MemPlan {
    /// The RAM managed (see [`usable_ram`]), minus banks given up.
    pub ram: RangeList,
    /// Banks given up because no memmap spanning them would fit.
    pub unused: RangeList,
    /// Where the memmap lives.
    pub memmap: PhysRange,
    /// The frames it describes: `[lo, hi)` widened by [`Memmap::span_for`].
    pub span: (Pfn, Pfn),
    /// Descriptors in the memmap.
    pub memmap_pages: u64,
    /// RAM minus reservations and the memmap.
    pub free: RangeList,
    /// The part of `free` the early tables reach: the allocator's at once.
    pub now: RangeList,
    /// The rest of `free`: the allocator's once the kernel's tables map it.
    pub deferred: RangeList,
}

/// Why no plan exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// No RAM at all.
    NoRam,
    /// Not even the lowest bank alone leaves room for its memmap in
    /// reachable free RAM (the size it needed, in bytes).
    NoRoomForMemmap(u64),
}

/// Plans memory from the firmware's RAM, the ranges that must not be
/// handed out (`holes`: reservations, the kernel image), and `reach`,
/// which returns the part of a free range the early tables map (mapping it
/// if needed) and is called once per free range.
pub fn plan(
    ram: &[PhysRange],
    holes: &[PhysRange],
    mut reach: impl FnMut(PhysRange) -> Option<PhysRange>,
) -> Result<MemPlan, PlanError> {
    let mut ram = usable_ram(ram);
    if ram.is_empty() {
        return Err(PlanError::NoRam);
    }
    let holes: RangeList = holes.iter().map(|h| h.pages_covering()).collect();
    let mut free = ram.clone();
    free.subtract(holes.as_slice());
    let mut reachable: RangeList = free.as_slice().iter().filter_map(|&r| reach(r)).collect();
    let mut unused = RangeList::new();
    // Give up the highest banks (never the boot) if a memmap spanning them
    // cannot be stored.
    let (span, pages, bytes, host) = loop {
        let lo = ram
            .as_slice()
            .first()
            .map(|r| r.start.pfn())
            .unwrap_or_default();
        let hi = ram
            .as_slice()
            .last()
            .map(|r| r.end.pfn())
            .unwrap_or_default();
        let pages = Memmap::nr_pages_for(lo, hi);
        let bytes = Memmap::bytes_for(pages).next_multiple_of(PAGE_SIZE);
        let host = reachable
            .as_slice()
            .iter()
            .filter(|r| r.size() >= bytes)
            .max_by_key(|r| r.size())
            .copied();
        match host {
            Some(h) if pages < u64::from(u32::MAX) => break ((lo, hi), pages, bytes, h),
            _ if ram.as_slice().len() > 1 => {
                let top = *ram.as_slice().last().unwrap_or(&PhysRange::EMPTY);
                unused.push(top);
                ram.subtract(&[top]);
                free.subtract(&[top]);
                reachable.subtract(&[top]);
            }
            _ => return Err(PlanError::NoRoomForMemmap(bytes)),
        }
    };
    let memmap = PhysRange {
        start: host.end - bytes,
        end: host.end,
    };
    let mut deferred = free.clone();
    deferred.subtract(reachable.as_slice());
    free.subtract(&[memmap]);
    let mut now = reachable;
    now.subtract(&[memmap]);
    Ok(MemPlan {
        ram,
        unused,
        memmap,
        span,
        memmap_pages: pages,
        free,
        now,
        deferred,
    })
}

#[cfg(test)]
mod tests;
