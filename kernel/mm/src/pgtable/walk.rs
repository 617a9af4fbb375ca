//! Walking a tree down to its last-level (L3) entries, creating tables on
//! the way, and freeing tables that no longer map anything: what user
//! address spaces need beyond the boot-time builder of `mapper.rs`.
//!
//! | call                          | Linux counterpart                  |
//! |-------------------------------|------------------------------------|
//! | [`PageTable::pte_slot_alloc`] | `pte_alloc_map` (+ `p?d_alloc`)    |
//! | [`PageTable::pte_slot`]       | `pte_offset_map` on an existing walk |
//! | [`PageTable::free_tables`]    | `free_pgd_range`                   |
//!
//! Entries are read and written as single 64-bit atomics: a concurrent
//! hardware walk sees the old or the new value, never a mix. Ordering a
//! table's zeroing before its link is done with a release store.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::PteFormat;
use super::kind::PteKind;
use super::level::{ENTRIES, Level};
use super::mapper::{MapError, PageTable, TableAlloc};
use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

/// One last-level entry: the L3 table holding it and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteSlot {
    /// The L3 table (a 4 KiB frame).
    pub table: PhysAddr,
    /// Index of the entry, 0..512.
    pub index: usize,
}

impl<F: PteFormat> PageTable<F> {
    fn slot_entry(&self, table: PhysAddr, idx: usize) -> &AtomicU64 {
        debug_assert!(idx < ENTRIES && table.is_aligned(PAGE_SIZE));
        let p = self
            .linear_map()
            .ptr::<AtomicU64>(table)
            .wrapping_add(idx % ENTRIES);
        // SAFETY: by the PageTable invariant every table of the tree is a
        // page-aligned frame mapped readable and writable by the linear
        // map at a page-aligned offset; `idx % ENTRIES` stays inside it and
        // 8-aligned. Entries are only accessed atomically.
        unsafe { &*p }
    }

    /// Reads the L3 entry at `slot`.
    #[inline]
    pub fn pte(&self, slot: PteSlot) -> u64 {
        self.slot_entry(slot.table, slot.index)
            .load(Ordering::Relaxed)
    }

    /// Writes the L3 entry at `slot` (one atomic store). The caller does
    /// the TLB maintenance the change needs.
    #[inline]
    pub fn set_pte(&mut self, slot: PteSlot, raw: u64) {
        self.slot_entry(slot.table, slot.index)
            .store(raw, Ordering::Release);
    }

    /// Clears the L3 entry at `slot` and returns what it held, in one
    /// atomic exchange so accessed/dirty bits the hardware sets meanwhile
    /// are not lost.
    #[inline]
    pub fn take_pte(&mut self, slot: PteSlot) -> u64 {
        self.slot_entry(slot.table, slot.index)
            .swap(0, Ordering::AcqRel)
    }

    /// The L3 slot for `va`, if every table above it exists. `None` also
    /// when a block (L1/L2 leaf) maps `va`.
    pub fn pte_slot(&self, va: VirtAddr) -> Option<PteSlot> {
        if !F::va_in_range(va) {
            return None;
        }
        let mut table = self.root();
        for level in [Level::L0, Level::L1, Level::L2] {
            let raw = self
                .slot_entry(table, level.index_of(va))
                .load(Ordering::Acquire);
            match F::decode(raw, level) {
                PteKind::Table(next) => table = next,
                PteKind::Absent | PteKind::Leaf { .. } => return None,
            }
        }
        Some(PteSlot {
            table,
            index: Level::L3.index_of(va),
        })
    }

    /// Adds to `counts[k]` one if the entry for `base + k` pages maps frame
    /// `head + k` (the deferred split's census of a folio's mappings, see
    /// `split.rs`). `base` is aligned to the span of `counts`, which is at
    /// most one table's worth, so one L3 table holds every entry; anything
    /// else counts nothing.
    pub fn count_folio_mappings(&self, head: Pfn, base: VirtAddr, counts: &mut [u32]) {
        let span = counts.len() as u64 * PAGE_SIZE;
        if counts.len() > ENTRIES || !base.is_aligned(span) {
            return;
        }
        let Some(first) = self.pte_slot(base) else {
            return;
        };
        for (k, c) in counts.iter_mut().enumerate() {
            let raw = self.pte(PteSlot {
                table: first.table,
                index: first.index + k,
            });
            if F::pte_present(raw) && F::pte_pfn(raw) == head + k as u64 {
                *c += 1;
            }
        }
    }

    /// The L3 slot for `va`, creating (zeroed) tables from `alloc` where
    /// missing. Fails with [`MapError::AlreadyMapped`] if a block maps
    /// `va`, [`MapError::OutOfRange`] if `va` is not translatable and
    /// [`MapError::OutOfMemory`] if `alloc` runs dry (tables created so far
    /// stay linked, empty).
    pub fn pte_slot_alloc(
        &mut self,
        va: VirtAddr,
        alloc: &mut impl TableAlloc,
    ) -> Result<PteSlot, MapError> {
        if !F::va_in_range(va) {
            return Err(MapError::OutOfRange);
        }
        let mut table = self.root();
        for level in [Level::L0, Level::L1, Level::L2] {
            let e = self.slot_entry(table, level.index_of(va));
            table = match F::decode(e.load(Ordering::Acquire), level) {
                PteKind::Table(next) => next,
                PteKind::Leaf { .. } => return Err(MapError::AlreadyMapped),
                PteKind::Absent => {
                    let t = alloc.alloc_table().ok_or(MapError::OutOfMemory)?;
                    if !t.is_aligned(PAGE_SIZE) {
                        return Err(MapError::BadTableFrame);
                    }
                    // SAFETY: TableAlloc hands over an unused page-aligned
                    // frame mapped writable by the linear map; nobody can
                    // see it before the link below.
                    unsafe {
                        core::ptr::write_bytes(
                            self.linear_map().ptr::<u8>(t),
                            0,
                            PAGE_SIZE as usize,
                        )
                    };
                    // Release: the zeroes are visible before the link.
                    e.store(F::encode(PteKind::Table(t), level), Ordering::Release);
                    t
                }
            };
        }
        Ok(PteSlot {
            table,
            index: Level::L3.index_of(va),
        })
    }

    /// Links an empty, zeroed next-level table under every absent root
    /// entry in `slots`, so that later mappings below those entries change
    /// only lower tables (x86: the kernel half, whose root entries every
    /// process's root copies once). Returns how many were added.
    pub fn prealloc_root_slots(
        &mut self,
        slots: core::ops::Range<usize>,
        alloc: &mut impl TableAlloc,
    ) -> Result<usize, MapError> {
        let mut added = 0;
        for idx in slots.filter(|&i| i < ENTRIES) {
            let e = self.slot_entry(self.root(), idx);
            if !matches!(
                F::decode(e.load(Ordering::Acquire), Level::L0),
                PteKind::Absent
            ) {
                continue;
            }
            let t = alloc.alloc_table().ok_or(MapError::OutOfMemory)?;
            if !t.is_aligned(PAGE_SIZE) {
                return Err(MapError::BadTableFrame);
            }
            // SAFETY: as in `pte_slot_alloc`: a fresh frame nobody sees yet.
            unsafe {
                core::ptr::write_bytes(self.linear_map().ptr::<u8>(t), 0, PAGE_SIZE as usize)
            };
            e.store(F::encode(PteKind::Table(t), Level::L0), Ordering::Release);
            added += 1;
        }
        Ok(added)
    }

    /// The last-level tables under `[start, end)`, in address order, as
    /// (first VA the table maps, the table): one entry per 2 MiB that has a
    /// table, missing subtrees skipped. Callers that change entries walk
    /// this short list and then each table's slots, instead of holding a
    /// slot per page.
    pub fn pte_tables(&self, start: VirtAddr, end: VirtAddr) -> Vec<(VirtAddr, PhysAddr)> {
        self.pte_tables_limited(start, end, usize::MAX).0
    }

    /// Like [`PageTable::pte_tables`], but at most `max` tables; the second
    /// value is where to continue (None when the range is done). Callers
    /// loop over chunks to keep their memory bounded.
    pub fn pte_tables_limited(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        max: usize,
    ) -> (Vec<(VirtAddr, PhysAddr)>, Option<VirtAddr>) {
        let mut out: Vec<(VirtAddr, PhysAddr)> = Vec::new();
        let mut resume = None;
        self.for_each_slot_inner(start, end, &mut |va, slot, first_of_table| {
            if first_of_table {
                if out.len() == max {
                    resume = Some(va.align_down(Level::L2.size()).max(start));
                    return false;
                }
                out.push((va.align_down(Level::L2.size()), slot.table));
            }
            true
        });
        (out, resume)
    }

    /// The slots of L3 table `table` (mapping from `table_va`) that lie in
    /// `[start, end)`.
    pub fn table_slots(
        table_va: VirtAddr,
        table: PhysAddr,
        start: VirtAddr,
        end: VirtAddr,
    ) -> impl Iterator<Item = (VirtAddr, PteSlot)> {
        (0..ENTRIES).filter_map(move |index| {
            let va = table_va + index as u64 * PAGE_SIZE;
            (start <= va && va < end).then_some((va, PteSlot { table, index }))
        })
    }

    /// Calls `f(va, slot)` for every L3 slot of `[start, end)` whose table
    /// exists (absent entries included), in address order. Skips whole
    /// missing subtrees without visiting them.
    pub fn for_each_slot(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(VirtAddr, PteSlot),
    ) {
        self.for_each_slot_inner(start, end, &mut |va, slot, _| {
            f(va, slot);
            true
        });
    }

    fn for_each_slot_inner(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        f: &mut dyn FnMut(VirtAddr, PteSlot, bool) -> bool,
    ) {
        let mut va = start.align_down(PAGE_SIZE).as_u64();
        let end = end.as_u64();
        while va < end {
            // Descend; on a missing table, jump to the next entry's span.
            let mut table = self.root();
            let mut skip = None;
            for level in [Level::L0, Level::L1, Level::L2] {
                let raw = self
                    .slot_entry(table, level.index_of(VirtAddr::new(va)))
                    .load(Ordering::Acquire);
                match F::decode(raw, level) {
                    PteKind::Table(next) => table = next,
                    _ => {
                        skip = Some(level.size());
                        break;
                    }
                }
            }
            if let Some(span) = skip {
                va = match (va & !(span - 1)).checked_add(span) {
                    Some(v) => v,
                    None => return,
                };
                continue;
            }
            let first = Level::L3.index_of(VirtAddr::new(va));
            let table_end = (va & !(Level::L2.size() - 1)).saturating_add(Level::L2.size());
            for index in first..ENTRIES {
                let here = (va & !(Level::L2.size() - 1)) + (index as u64) * PAGE_SIZE;
                if here >= end {
                    return;
                }
                if !f(
                    VirtAddr::new(here),
                    PteSlot { table, index },
                    index == first,
                ) {
                    return;
                }
            }
            va = table_end;
        }
    }

    /// Unlinks and hands to `free` every table whose whole span lies in
    /// `[start, end)` and that maps nothing (Linux `free_pgd_range`). The
    /// root is never freed. Call only after the TLB no longer caches any
    /// walk through these tables (arm64 and x86 cache intermediate
    /// entries too): unhook, flush, then free.
    pub fn free_tables(&mut self, start: VirtAddr, end: VirtAddr, free: &mut impl FnMut(PhysAddr)) {
        let root = self.root();
        self.free_below(root, Level::L0, 0, start.as_u64(), end.as_u64(), free);
    }

    /// Frees empty tables under `table` within `[start, end)`; returns true
    /// if `table` itself maps nothing afterwards.
    fn free_below(
        &mut self,
        table: PhysAddr,
        level: Level,
        base: u64,
        start: u64,
        end: u64,
        free: &mut impl FnMut(PhysAddr),
    ) -> bool {
        let mut empty = true;
        for idx in 0..ENTRIES {
            let lo = base + ((idx as u64) << level.shift());
            let hi = lo.saturating_add(level.size());
            let raw = self.slot_entry(table, idx).load(Ordering::Acquire);
            let kind = F::decode(raw, level);
            if matches!(kind, PteKind::Absent) {
                continue;
            }
            let next = match (kind, level.next()) {
                (PteKind::Table(t), Some(next)) if hi > start && lo < end => Some((t, next)),
                _ => None,
            };
            let Some((t, next)) = next else {
                empty = false;
                continue;
            };
            let child_empty = self.free_below(t, next, lo, start, end, free);
            if child_empty && start <= lo && hi <= end {
                self.slot_entry(table, idx).store(0, Ordering::Release);
                free(t);
            } else {
                empty = false;
            }
        }
        empty
    }
}
