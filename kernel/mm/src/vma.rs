//! Virtual memory areas: the ordered, non-overlapping ranges of a user
//! address space and what each may do (Linux `struct vm_area_struct` and
//! the maple tree that holds them, here a `BTreeMap` keyed by start).
//!
//! | operation                   | Linux counterpart            | effect on the map                    |
//! |-----------------------------|------------------------------|--------------------------------------|
//! | [`VmaMap::insert`]          | `vma_link` + `vma_merge`     | adds a range, merges with neighbours |
//! | [`VmaMap::remove_range`]    | `do_vmi_munmap`              | splits at the edges, removes inside  |
//! | [`VmaMap::protect`]         | `mprotect_fixup`             | splits, changes `prot`, re-merges    |
//! | [`VmaMap::find_free`]       | `get_unmapped_area`          | top-down search for a hole           |
//!
//! Invariants after every public call: areas are page aligned, non-empty,
//! sorted, non-overlapping, and no two *adjacent* areas are
//! [`Vma::can_merge`] (merging is eager, as in Linux). Page-table state is
//! not this module's business: callers unmap or change PTEs for the ranges
//! these calls report.

use alloc::collections::BTreeMap;

use crate::addr::{PAGE_SIZE, VirtAddr};

/// Access rights of an area (`PROT_*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot(u8);

impl Prot {
    /// No access (`PROT_NONE`).
    pub const NONE: Prot = Prot(0);
    /// `PROT_READ`.
    pub const READ: Prot = Prot(1);
    /// `PROT_WRITE`.
    pub const WRITE: Prot = Prot(2);
    /// `PROT_EXEC`.
    pub const EXEC: Prot = Prot(4);
    /// Read and write.
    pub const RW: Prot = Prot(3);
    /// Read and execute.
    pub const RX: Prot = Prot(5);

    /// From the `prot` argument of `mmap`/`mprotect`; `None` if it has
    /// bits Folium does not know (Linux: EINVAL).
    pub const fn from_bits(bits: u64) -> Option<Prot> {
        if bits & !7 != 0 {
            None
        } else {
            Some(Prot(bits as u8))
        }
    }
    /// The `PROT_*` bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Loads allowed (write and exec imply read on both architectures).
    pub const fn read(self) -> bool {
        self.0 != 0
    }
    /// Stores allowed.
    pub const fn write(self) -> bool {
        self.0 & 2 != 0
    }
    /// Instruction fetch allowed.
    pub const fn exec(self) -> bool {
        self.0 & 4 != 0
    }
    /// Union of rights.
    pub const fn union(self, o: Prot) -> Prot {
        Prot(self.0 | o.0)
    }
}

/// What an area holds, for `/proc`-style reports and merge decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmaKind {
    /// A loaded program segment (private copy of the file's bytes).
    Image,
    /// The program break area (`brk`).
    Heap,
    /// The main thread's stack.
    Stack,
    /// Private anonymous memory from `mmap`.
    Anon,
}

/// Per-area flags beyond protection (Linux `VM_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmFlags(u8);

impl VmFlags {
    /// No flag.
    pub const EMPTY: VmFlags = VmFlags(0);
    /// `MADV_HUGEPAGE` (Linux `VM_HUGEPAGE`).
    pub const HUGEPAGE: VmFlags = VmFlags(1);
    /// `MADV_NOHUGEPAGE` (Linux `VM_NOHUGEPAGE`).
    pub const NOHUGEPAGE: VmFlags = VmFlags(2);
    /// `MADV_DONTFORK` (Linux `VM_DONTCOPY`): a forked child has no area
    /// here.
    pub const DONTCOPY: VmFlags = VmFlags(4);
    /// `MADV_WIPEONFORK` (Linux `VM_WIPEONFORK`): a forked child gets the
    /// area empty (it reads zeros).
    pub const WIPEONFORK: VmFlags = VmFlags(8);

    /// True if all of `o` is set.
    pub const fn contains(self, o: VmFlags) -> bool {
        self.0 & o.0 == o.0
    }
    /// `self` with `o` set.
    pub const fn with(self, o: VmFlags) -> VmFlags {
        VmFlags(self.0 | o.0)
    }
    /// `self` with `o` cleared.
    pub const fn without(self, o: VmFlags) -> VmFlags {
        VmFlags(self.0 & !o.0)
    }
}

/// One area: `[start, end)` with uniform rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First byte (page aligned).
    pub start: VirtAddr,
    /// One past the last byte (page aligned, > start).
    pub end: VirtAddr,
    /// Access rights.
    pub prot: Prot,
    /// What it holds.
    pub kind: VmaKind,
    /// Advice flags.
    pub flags: VmFlags,
}

impl Vma {
    /// A new area.
    pub const fn new(start: VirtAddr, end: VirtAddr, prot: Prot, kind: VmaKind) -> Vma {
        Vma {
            start,
            end,
            prot,
            kind,
            flags: VmFlags::EMPTY,
        }
    }
    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// Never true for an area in a map (kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// True if `va` lies inside.
    pub fn contains(&self, va: VirtAddr) -> bool {
        self.start <= va && va < self.end
    }
    /// True if `self` ends where `next` starts and the two may be one area
    /// (same rights, kind and flags: Linux's `is_mergeable_vma`).
    pub fn can_merge(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.kind == next.kind
            && self.flags == next.flags
    }
}

/// Why an area could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaError {
    /// Not page aligned, empty, or reversed.
    Invalid,
    /// Overlaps an existing area.
    Overlap,
    /// Part of the range is not mapped (Linux: `mprotect` returns ENOMEM).
    Hole,
}

/// The areas of one address space.
#[derive(Clone, Debug, Default)]
pub struct VmaMap {
    areas: BTreeMap<u64, Vma>,
}

fn checked_range(start: VirtAddr, end: VirtAddr) -> Result<(), VmaError> {
    if start >= end || !start.is_aligned(PAGE_SIZE) || !end.is_aligned(PAGE_SIZE) {
        return Err(VmaError::Invalid);
    }
    Ok(())
}

impl VmaMap {
    /// An empty map.
    pub const fn new() -> VmaMap {
        VmaMap {
            areas: BTreeMap::new(),
        }
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    /// True if there are no areas.
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Every area, in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.areas.values()
    }

    /// The area containing `va` (Linux `vma_lookup`).
    pub fn find(&self, va: VirtAddr) -> Option<&Vma> {
        self.areas
            .range(..=va.as_u64())
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(va))
    }

    /// Areas that intersect `[start, end)`, in order.
    pub fn overlapping(&self, start: VirtAddr, end: VirtAddr) -> impl Iterator<Item = &Vma> {
        // The area before `start` may reach into the range.
        let first = self
            .areas
            .range(..start.as_u64())
            .next_back()
            .filter(|(_, v)| v.end > start)
            .map(|(k, _)| *k)
            .unwrap_or(start.as_u64());
        self.areas
            .range(first..end.as_u64())
            .map(|(_, v)| v)
            .filter(move |v| v.end > start)
    }

    /// True if any byte of `[start, end)` is in an area.
    pub fn intersects(&self, start: VirtAddr, end: VirtAddr) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    /// Adds `vma`, which must not overlap any area, and merges it with
    /// compatible neighbours.
    pub fn insert(&mut self, vma: Vma) -> Result<(), VmaError> {
        checked_range(vma.start, vma.end)?;
        if self.intersects(vma.start, vma.end) {
            return Err(VmaError::Overlap);
        }
        self.areas.insert(vma.start.as_u64(), vma);
        self.merge_around(vma.start, vma.end);
        Ok(())
    }

    /// Removes every byte of `[start, end)` from the map, splitting areas
    /// that straddle its edges. Returns how many areas (or pieces) went
    /// (0 if nothing was mapped: `munmap` of nothing succeeds). Allocates
    /// nothing beyond the splits, however many areas the range holds.
    pub fn remove_range(&mut self, start: VirtAddr, end: VirtAddr) -> Result<usize, VmaError> {
        checked_range(start, end)?;
        self.split_at(start);
        self.split_at(end);
        let mut removed = 0;
        while let Some(k) = self
            .areas
            .range(start.as_u64()..end.as_u64())
            .next()
            .map(|(k, _)| *k)
        {
            self.areas.remove(&k);
            removed += 1;
        }
        Ok(removed)
    }

    /// Applies `f` to every area piece within `[start, end)`, which must be
    /// fully mapped (else [`VmaError::Hole`] and nothing changes). Pieces
    /// are split off at the edges and re-merged afterwards.
    pub fn modify(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(&mut Vma),
    ) -> Result<(), VmaError> {
        checked_range(start, end)?;
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return Err(VmaError::Hole);
            }
            at = v.end;
        }
        if at < end {
            return Err(VmaError::Hole);
        }
        self.split_at(start);
        self.split_at(end);
        for (_, v) in self.areas.range_mut(start.as_u64()..end.as_u64()) {
            f(v);
        }
        self.merge_around(start, end);
        Ok(())
    }

    /// How many areas [`VmaMap::modify`] or [`VmaMap::remove_range`] on
    /// `[start, end)` would add by splitting (0, 1 or 2): callers check it
    /// against their limit on areas first.
    pub fn splits_needed(&self, start: VirtAddr, end: VirtAddr) -> usize {
        [start, end]
            .iter()
            .filter(|&&at| self.find(at).is_some_and(|v| v.start != at))
            .count()
    }

    /// Changes the rights of `[start, end)` (Linux `mprotect`).
    pub fn protect(&mut self, start: VirtAddr, end: VirtAddr, prot: Prot) -> Result<(), VmaError> {
        self.modify(start, end, |v| v.prot = prot)
    }

    /// The highest page-aligned start of a free range of `len` bytes that
    /// lies within `[lo, hi)` (Linux's top-down `get_unmapped_area`).
    pub fn find_free(&self, len: u64, lo: VirtAddr, hi: VirtAddr) -> Option<VirtAddr> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || hi < lo {
            return None;
        }
        let mut top = hi;
        for v in self.areas.range(..hi.as_u64()).rev().map(|(_, v)| v) {
            if v.end <= top && top - v.end >= len {
                return Some(top - len).filter(|s| *s >= lo);
            }
            top = top.min(v.start);
            if top < lo {
                return None;
            }
        }
        (top >= lo && top - lo >= len).then(|| top - len)
    }

    /// Splits the area containing `at` (if `at` is strictly inside) in two.
    fn split_at(&mut self, at: VirtAddr) {
        let Some(v) = self.find(at).copied() else {
            return;
        };
        if v.start == at {
            return;
        }
        if let Some(left) = self.areas.get_mut(&v.start.as_u64()) {
            left.end = at;
        }
        self.areas.insert(at.as_u64(), Vma { start: at, ..v });
    }

    /// Merges compatible neighbours among the areas touching `[start, end]`,
    /// one lookup at a time (no list of keys is built).
    fn merge_around(&mut self, start: VirtAddr, end: VirtAddr) {
        let mut cur = self
            .areas
            .range(..start.as_u64())
            .next_back()
            .map_or(start.as_u64(), |(k, _)| *k);
        loop {
            let Some((k, v)) = self.areas.range(cur..).next().map(|(k, v)| (*k, *v)) else {
                return;
            };
            if k > end.as_u64() {
                return;
            }
            let Some((nk, nv)) = self.areas.range(k + 1..).next().map(|(k, v)| (*k, *v)) else {
                return;
            };
            if nk > end.as_u64() {
                return;
            }
            if v.can_merge(&nv) {
                self.areas.remove(&nk);
                if let Some(m) = self.areas.get_mut(&k) {
                    m.end = nv.end;
                }
                cur = k;
            } else {
                cur = nk;
            }
        }
    }

    /// Checks the module's invariants (for tests and debug builds).
    pub fn check(&self) -> Result<(), &'static str> {
        let mut last: Option<&Vma> = None;
        for (k, v) in &self.areas {
            if *k != v.start.as_u64() {
                return Err("key differs from start");
            }
            if checked_range(v.start, v.end).is_err() {
                return Err("empty or unaligned area");
            }
            if let Some(l) = last {
                if l.end > v.start {
                    return Err("overlap");
                }
                if l.can_merge(v) {
                    return Err("unmerged neighbours");
                }
            }
            last = Some(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
