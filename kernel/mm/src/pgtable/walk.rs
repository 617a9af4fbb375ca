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

use super::kind::PteKind;
use super::level::{ENTRIES, Level};
use super::mapper::{MapError, PageTable, TableAlloc};
use super::{Pte, PteFormat};
use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

/// One last-level entry: the L3 table holding it and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteSlot {
    /// The L3 table (a 4 KiB frame).
    pub table: PhysAddr,
    /// Index of the entry, 0..512.
    pub index: usize,
}

/// One last-level (L3) table of a tree and where it sits: what
/// [`PageTable::next_pte_table`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L3Table {
    /// The first virtual address the table maps (2 MiB aligned); entry
    /// `i` translates `va + i * PAGE_SIZE`.
    pub va: VirtAddr,
    /// The table (a 4 KiB frame).
    pub table: PhysAddr,
}

impl L3Table {
    /// The first virtual address past the table's span, or `None` at the
    /// top of the address space.
    #[inline]
    pub fn end(&self) -> Option<VirtAddr> {
        self.va
            .as_u64()
            .checked_add(Level::L2.size())
            .map(VirtAddr::new)
    }
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
    pub fn pte(&self, slot: PteSlot) -> Pte {
        Pte::from_bits(
            self.slot_entry(slot.table, slot.index)
                .load(Ordering::Relaxed),
        )
    }

    /// Writes the L3 entry at `slot` (one atomic store). The caller does
    /// the TLB maintenance the change needs.
    #[inline]
    pub fn set_pte(&mut self, slot: PteSlot, raw: Pte) {
        self.slot_entry(slot.table, slot.index)
            .store(raw.bits(), Ordering::Release);
    }

    /// Clears the L3 entry at `slot` and returns what it held, in one
    /// atomic exchange so accessed/dirty bits the hardware sets meanwhile
    /// are not lost.
    #[inline]
    pub fn take_pte(&mut self, slot: PteSlot) -> Pte {
        Pte::from_bits(
            self.slot_entry(slot.table, slot.index)
                .swap(Pte::NONE.bits(), Ordering::AcqRel),
        )
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
            match F::decode(Pte::from_bits(raw), level) {
                PteKind::Table(next) => table = next,
                PteKind::Absent | PteKind::Leaf { .. } => return None,
            }
        }
        Some(PteSlot {
            table,
            index: Level::L3.index_of(va),
        })
    }

    /// Calls `found(k)` for each `k < nr` whose entry for `base + k` pages
    /// maps frame `head + k`: the mappings this tree holds of a folio of
    /// `nr` pages placed at `base`. `base` is aligned to the folio's span,
    /// at most one table's worth, so one L3 table holds every entry;
    /// anything else finds nothing.
    pub fn folio_mappings(
        &self,
        head: Pfn,
        base: VirtAddr,
        nr: usize,
        mut found: impl FnMut(usize),
    ) {
        if nr > ENTRIES || !base.is_aligned(nr as u64 * PAGE_SIZE) {
            return;
        }
        let Some(first) = self.pte_slot(base) else {
            return;
        };
        for k in 0..nr {
            let raw = self.pte(PteSlot {
                table: first.table,
                index: first.index + k,
            });
            if F::pte_present(raw) && F::pte_pfn(raw) == head + k as u64 {
                found(k);
            }
        }
    }

    /// Adds to `counts[k]` one if the entry for `base + k` pages maps frame
    /// `head + k` ([`PageTable::folio_mappings`]; the deferred split's census
    /// of a folio's mappings, see `split.rs`).
    pub fn count_folio_mappings(&self, head: Pfn, base: VirtAddr, counts: &mut [u32]) {
        self.folio_mappings(head, base, counts.len(), |k| counts[k] += 1);
    }

    /// The L3 slot for `va`, creating (zeroed) tables from `alloc` where
    /// missing. Fails with [`MapError::AlreadyMapped`] if a block maps
    /// `va`, [`MapError::OutOfRange`] if `va` is not translatable and
    /// [`MapError::OutOfMemory`] if `alloc` runs dry (tables created so far
    /// stay linked, empty).
    pub fn pte_slot_alloc(
        &mut self,
        va: VirtAddr,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PteSlot, MapError> {
        self.slot_alloc(va, Level::L3, alloc)
    }

    /// The entry for `va` in its table at `level` (the L3 slot of
    /// [`PageTable::pte_slot_alloc`], or an L1/L2 entry where a block may
    /// go), creating (zeroed) tables above it from `alloc` where missing;
    /// errors as [`PageTable::pte_slot_alloc`].
    pub(super) fn slot_alloc(
        &self,
        va: VirtAddr,
        target: Level,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PteSlot, MapError> {
        if !F::va_in_range(va) {
            return Err(MapError::OutOfRange);
        }
        let mut table = self.root();
        for level in Level::ALL.into_iter().take_while(|&l| l != target) {
            let e = self.slot_entry(table, level.index_of(va));
            table = match F::decode(Pte::from_bits(e.load(Ordering::Acquire)), level) {
                PteKind::Table(next) => next,
                PteKind::Leaf { .. } => return Err(MapError::AlreadyMapped),
                PteKind::Absent => {
                    let t = self.new_table(alloc)?;
                    // Release: the zeroes are visible before the link.
                    e.store(
                        F::encode(PteKind::Table(t), level).bits(),
                        Ordering::Release,
                    );
                    t
                }
            };
        }
        Ok(PteSlot {
            table,
            index: target.index_of(va),
        })
    }

    /// Links an empty, zeroed next-level table under every absent root
    /// entry in `slots`, so that later mappings below those entries change
    /// only lower tables (x86: the kernel half, whose root entries every
    /// process's root copies once). Returns how many were added.
    pub fn prealloc_root_slots(
        &mut self,
        slots: core::ops::Range<usize>,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<usize, MapError> {
        let mut added = 0;
        for idx in slots.filter(|&i| i < ENTRIES) {
            let e = self.slot_entry(self.root(), idx);
            if !matches!(
                F::decode(Pte::from_bits(e.load(Ordering::Acquire)), Level::L0),
                PteKind::Absent
            ) {
                continue;
            }
            let t = self.new_table(alloc)?;
            e.store(
                F::encode(PteKind::Table(t), Level::L0).bits(),
                Ordering::Release,
            );
            added += 1;
        }
        Ok(added)
    }

    /// The last-level tables under `[start, end)`, in address order: one
    /// per 2 MiB that has a table, missing subtrees skipped. Callers that
    /// change entries walk this short list and then each table's slots,
    /// instead of holding a slot per page. (Hot paths that must not
    /// allocate step through the tables with [`PageTable::next_pte_table`]
    /// instead.)
    pub fn pte_tables(&self, start: VirtAddr, end: VirtAddr) -> Vec<L3Table> {
        let mut out = Vec::new();
        let mut at = start;
        while let Some(t) = self.next_pte_table(at, end) {
            out.push(t);
            match t.end() {
                Some(next) => at = next,
                None => break,
            }
        }
        out
    }

    /// The first last-level table that maps part of `[from, end)` (its
    /// [`L3Table::va`] is 2 MiB aligned, possibly below `from`), or `None`
    /// if there is none (or the range is empty). A missing or block entry
    /// on the way down skips its whole span at once, as Linux's
    /// `p?d_addr_end` steps do, so a sparse range costs one short descent
    /// per table, and nothing is allocated or called per entry. Fork and
    /// zap loop `at = t.end()` (the table's VA + 2 MiB) until this returns
    /// `None`.
    pub fn next_pte_table(&self, from: VirtAddr, end: VirtAddr) -> Option<L3Table> {
        if from >= end {
            return None;
        }
        let mut va = from.align_down(Level::L2.size()).as_u64();
        let end = end.as_u64();
        'spans: while va < end {
            let mut table = self.root();
            for level in [Level::L0, Level::L1, Level::L2] {
                let raw = self
                    .slot_entry(table, level.index_of(VirtAddr::new(va)))
                    .load(Ordering::Acquire);
                match F::decode(Pte::from_bits(raw), level) {
                    PteKind::Table(next) => table = next,
                    PteKind::Absent | PteKind::Leaf { .. } => {
                        let span = level.size();
                        va = (va & !(span - 1)).checked_add(span)?;
                        continue 'spans;
                    }
                }
            }
            return Some(L3Table {
                va: VirtAddr::new(va),
                table,
            });
        }
        None
    }

    /// The slots of the L3 table `t` that lie in `[start, end)`, each with
    /// the virtual address it translates.
    pub fn table_slots(
        t: L3Table,
        start: VirtAddr,
        end: VirtAddr,
    ) -> impl Iterator<Item = (VirtAddr, PteSlot)> {
        let table = t.table;
        (0..ENTRIES).filter_map(move |index| {
            let va = t.va + index as u64 * PAGE_SIZE;
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
        let start = start.align_down(PAGE_SIZE);
        let mut at = start;
        while let Some(t) = self.next_pte_table(at, end) {
            for index in 0..ENTRIES {
                let va = t.va + index as u64 * PAGE_SIZE;
                if va >= end {
                    return;
                }
                if va >= start {
                    let table = t.table;
                    f(va, PteSlot { table, index });
                }
            }
            match t.end() {
                Some(next) => at = next,
                None => return,
            }
        }
    }

    /// Calls `table(frame, level)` for every table of the tree that
    /// translates addresses below `end` (the root first, then depth first)
    /// and `leaf(va, raw, level)` for every present leaf there: last-level
    /// entries that [`PteFormat::pte_present`] accepts and L1/L2 blocks.
    /// Root entries at or above `end` are not followed, so a user tree that
    /// shares the kernel's upper half (x86) is walked without it. Reads
    /// only; the mm audit (`audit.rs`) is its user.
    pub fn walk_below(
        &self,
        end: VirtAddr,
        table: &mut impl FnMut(PhysAddr, Level),
        leaf: &mut impl FnMut(VirtAddr, Pte, Level),
    ) {
        self.walk_from(self.root(), Level::L0, 0, end.as_u64(), table, leaf);
    }

    fn walk_from(
        &self,
        t: PhysAddr,
        level: Level,
        base: u64,
        end: u64,
        table: &mut impl FnMut(PhysAddr, Level),
        leaf: &mut impl FnMut(VirtAddr, Pte, Level),
    ) {
        table(t, level);
        for idx in 0..ENTRIES {
            let lo = base + ((idx as u64) << level.shift());
            if lo >= end {
                return;
            }
            let raw = Pte::from_bits(self.slot_entry(t, idx).load(Ordering::Acquire));
            match level.next() {
                None => {
                    if F::pte_present(raw) {
                        leaf(VirtAddr::new(lo), raw, level);
                    }
                }
                Some(next) => match F::decode(raw, level) {
                    PteKind::Table(child) => self.walk_from(child, next, lo, end, table, leaf),
                    PteKind::Leaf { .. } => leaf(VirtAddr::new(lo), raw, level),
                    PteKind::Absent => {}
                },
            }
        }
    }

    /// Unlinks and hands to `free` every table whose whole span lies in
    /// `[start, end)` and that maps nothing (Linux `free_pgd_range`). The
    /// root is never freed. Call only after the TLB no longer caches any
    /// walk through these tables (arm64 and x86 cache intermediate
    /// entries too): unhook, flush, then free.
    pub fn free_tables(&mut self, start: VirtAddr, end: VirtAddr, free: &mut impl FnMut(PhysAddr)) {
        let root = self.root();
        let range = (start.as_u64(), end.as_u64());
        self.free_below(root, Level::L0, 0, range, false, free);
    }

    /// [`PageTable::free_tables`] for a range whose last-level entries the
    /// caller has just cleared (munmap and exit zap first, as Linux's
    /// `free_pgtables` runs after `unmap_vmas`): a last-level table whose
    /// whole span lies in `[start, end)` is known to be empty and is freed
    /// without reading its 512 entries; tables the range covers only in
    /// part are still read, since entries outside the range may remain.
    ///
    /// Context: every L3 entry for `[start, end)` is 0. Debug builds check
    /// each table they free unread; release builds trust the caller (a
    /// wrong caller frees a table that still maps pages, and the frames it
    /// maps keep their references: leaked, never freed while in use).
    pub fn free_cleared_tables(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        free: &mut impl FnMut(PhysAddr),
    ) {
        let root = self.root();
        let range = (start.as_u64(), end.as_u64());
        self.free_below(root, Level::L0, 0, range, true, free);
    }

    /// Frees empty tables under `table` within `range` (`[start, end)`);
    /// returns true if `table` itself maps nothing afterwards. `cleared`:
    /// the L3 entries of the range are known to be 0 (see
    /// [`PageTable::free_cleared_tables`]).
    fn free_below(
        &mut self,
        table: PhysAddr,
        level: Level,
        base: u64,
        range: (u64, u64),
        cleared: bool,
        free: &mut impl FnMut(PhysAddr),
    ) -> bool {
        let (start, end) = range;
        let mut empty = true;
        for idx in 0..ENTRIES {
            let lo = base + ((idx as u64) << level.shift());
            let hi = lo.saturating_add(level.size());
            let raw = Pte::from_bits(self.slot_entry(table, idx).load(Ordering::Acquire));
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
            let inside = start <= lo && hi <= end;
            let child_empty = if cleared && inside && next == Level::L3 {
                debug_assert!(
                    (0..ENTRIES)
                        .all(|i| self.slot_entry(t, i).load(Ordering::Relaxed) == Pte::NONE.bits()),
                    "free_cleared_tables: the table for {lo:#x} still has entries"
                );
                true
            } else {
                self.free_below(t, next, lo, range, cleared, free)
            };
            if child_empty && inside {
                self.slot_entry(table, idx)
                    .store(Pte::NONE.bits(), Ordering::Release);
                self.note_table_freed();
                free(t);
            } else {
                empty = false;
            }
        }
        empty
    }
}
