//! A cursor over part of one last-level (L3) table, with Linux's batch
//! operations on raw entries: what batched fork, zap and large-folio
//! faults loop over.
//!
//! | call                             | Linux counterpart                       |
//! |----------------------------------|-----------------------------------------|
//! | [`PageTable::pte_cursor`]        | `pte_offset_map_lock` on an existing table |
//! | [`PageTable::pte_cursor_alloc`]  | `pte_alloc_map_lock`                    |
//! | [`PageTable::lock_pte`], [`PteLock::cursor`] | `pte_alloc_map_lock` with split PTE locks, for faults that run at once |
//! | [`PteCursor::get`]               | `ptep_get`                              |
//! | [`PteCursor::set_ptes`]          | `set_ptes`                              |
//! | [`PteCursor::get_and_clear_ptes`]| `get_and_clear_full_ptes`               |
//! | [`PteCursor::wrprotect_ptes`]    | `wrprotect_ptes`                        |
//! | [`PteCursor::pte_batch`]         | `folio_pte_batch` (dirty ignored)       |
//! | [`PteCursor::copy_batch_wrprotect`], [`PteCursor::copy_one_wrprotect`] | fork's `folio_pte_batch` + `wrprotect_ptes` + `set_ptes`, in one pass |
//!
//! A cursor covers `[start, end)` inside one 2 MiB-aligned span, so all of
//! its entries sit in one table; index `i` is the entry for
//! `start + i * PAGE_SIZE`. Every batch operation takes a count and returns
//! how many entries it handled, so callers loop as `zap_pte_range` does:
//!
//! ```text
//! let mut i = 0;
//! while i < cur.len() {
//!     let nr = /* handle entries i.. (a batch, or one entry) */;
//!     i += nr; // and va += nr * PAGE_SIZE
//! }
//! ```
//!
//! Entries are 64-bit atomics, each read and written whole, so a walk
//! sees the old entry or the new one, never a mix.
//!
//! Who may change entries at once: a cursor made through `&mut` of the
//! tree (munmap, mprotect, fork, exit: the exclusive side of the
//! address-space lock) is the only one; cursors made through a shared
//! borrow (faults under the shared side) come from a [`PteLock`], which
//! holds the table's lock. Either way no other software
//! changes the entries meanwhile.
//!
//! The hardware may: other threads of the space keep running user code
//! on other CPUs, and a walk for one of their accesses may set an entry's
//! accessed or dirty bit. Clearing and write-protection are a load and a
//! store, not an atomic read-modify-write (Linux's `xchg` / `cmpxchg`
//! loops), so such an update landing between the two is lost. Nothing in
//! Folium needs it: there is no swap or writeback that would read the
//! dirty bit of anonymous memory being unmapped or write-protected, and
//! the accessed bit only feeds aging. (The store itself is not lost: it
//! reached the frame before the entry changed, and the gather's flush
//! ends any use of the old entry before the frame is freed or shared.)
//! No operation does TLB maintenance; the caller flushes (mmu_gather, or
//! one flush at the end of fork) as the change requires.
//!
//! Each operation goes through the format's `table_*` method of the same
//! name ([`PteFormat::table_set_ptes`] and so on), whose default is the
//! plain loop in [`plain`]. The arm64 format overrides them to keep its
//! contiguous hint right (`aarch64/contpte.rs`): generic code passes
//! entries without the hint and a [`PteEnv`] the override may call, and
//! never sees a folded block as anything but 16 ordinary entries.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::level::{ENTRIES, Level};
use super::mapper::{MapError, PTE_LOCKS, PageTable, TableAlloc};
use super::walk::PteSlot;
use super::{Pte, PteEnv, PteFormat};
use crate::addr::{PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

/// One whole last-level table as the format's batch operations see it:
/// its 512 entries and the virtual address its entry 0 translates, so an
/// operation on some entries can reach their neighbours (a folded block
/// may straddle a cursor's edge).
#[derive(Clone, Copy)]
pub struct PteTable<'a> {
    entries: &'a [AtomicU64],
    va: VirtAddr,
}

impl<'a> PteTable<'a> {
    /// The virtual address entry `i` translates.
    #[inline]
    pub fn va(self, i: usize) -> VirtAddr {
        self.va + i as u64 * PAGE_SIZE
    }

    /// Entry `i`, read whole.
    #[inline]
    pub fn load(self, i: usize) -> Pte {
        Pte::from_bits(self.entries[i].load(Ordering::Relaxed))
    }

    /// Entry `i`, for stores and exchanges ([`Pte::bits`] in, bits out).
    #[inline]
    pub fn entry(self, i: usize) -> &'a AtomicU64 {
        &self.entries[i]
    }

    /// Entries `i..i + nr`.
    #[inline]
    pub fn run(self, i: usize, nr: usize) -> &'a [AtomicU64] {
        &self.entries[i..i + nr]
    }
}

/// What [`PteCursor::get_and_clear_ptes`] found in the entries it cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleared {
    /// The first entry as it was ([`Pte::NONE`] if it was empty).
    pub first: Pte,
    /// Some present entry was young.
    pub young: bool,
    /// Some present entry was dirty.
    pub dirty: bool,
}

/// What [`PteCursor::copy_batch_wrprotect`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Entries in the batch.
    pub nr: usize,
    /// How many of them were writable in the parent.
    pub writable: usize,
}

/// A window of consecutive entries of one L3 table, borrowed from its
/// [`PageTable`] for as long as the cursor lives.
pub struct PteCursor<'a, F: PteFormat> {
    /// The whole table.
    table: PteTable<'a>,
    table_pa: PhysAddr,
    /// Entry 0 of the cursor is entry `first_index` of the table.
    first_index: usize,
    len: usize,
    /// Ties the cursor to an exclusive borrow of the page table, so
    /// nothing else changes the tree (or frees this table) meanwhile.
    _table: PhantomData<&'a mut PageTable<F>>,
}

/// Checks that `[start, end)` is a non-empty page-aligned range inside one
/// 2 MiB-aligned span; returns the number of pages.
fn range_pages(start: VirtAddr, end: VirtAddr) -> usize {
    let span = Level::L2.size();
    assert!(
        start.is_aligned(PAGE_SIZE) && end.is_aligned(PAGE_SIZE) && start < end,
        "PteCursor: bad range {start:?}..{end:?}"
    );
    assert!(
        (end - start) <= span - (start.as_u64() & (span - 1)),
        "PteCursor: {start:?}..{end:?} crosses a last-level table"
    );
    ((end - start) / PAGE_SIZE) as usize
}

impl<F: PteFormat> PageTable<F> {
    /// A cursor over the entries of `[start, end)` if their L3 table
    /// exists; `None` if it does not, or a block maps the range.
    ///
    /// # Panics
    ///
    /// If the range is empty, not page aligned, or not inside one 2 MiB
    /// aligned span (one L3 table).
    pub fn pte_cursor(&mut self, start: VirtAddr, end: VirtAddr) -> Option<PteCursor<'_, F>> {
        let len = range_pages(start, end);
        let slot = self.pte_slot(start)?;
        Some(self.cursor_at(slot, start, len))
    }

    /// A cursor over the entries of `[start, end)`, creating the tables
    /// above them from `alloc` where missing (errors as
    /// [`PageTable::pte_slot_alloc`]).
    ///
    /// # Panics
    ///
    /// As [`PageTable::pte_cursor`].
    pub fn pte_cursor_alloc(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PteCursor<'_, F>, MapError> {
        let len = range_pages(start, end);
        let slot = self.pte_slot_alloc(start, alloc)?;
        Ok(self.cursor_at(slot, start, len))
    }

    /// A cursor over `pages` entries from `start` (page aligned, inside
    /// one table), creating tables as [`PageTable::pte_cursor_alloc`]: for
    /// a range that ends at the very top of the address space, whose end
    /// does not fit a `VirtAddr`.
    pub(super) fn pte_cursor_pages(
        &mut self,
        start: VirtAddr,
        pages: usize,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PteCursor<'_, F>, MapError> {
        let slot = self.pte_slot_alloc(start, alloc)?;
        assert!(pages >= 1 && start.is_aligned(PAGE_SIZE) && slot.index + pages <= ENTRIES);
        Ok(self.cursor_at(slot, start, pages))
    }

    /// Locks the last-level table of `va` for changes to its entries
    /// through a shared borrow ([`PteLock`]), creating the tables above
    /// it from `alloc` where missing (errors as
    /// [`PageTable::pte_slot_alloc`]). While another holder has a lock
    /// this needs, it spins with [`TableAlloc::relax`].
    ///
    /// Linux's split PTE locks: faults in different tables take
    /// different locks. Linux keeps one in each table's `struct page`;
    /// Folium hashes the 2 MiB span the table maps to one of 64 locks in
    /// the tree, so two tables rarely share one (and
    /// then only wait for each other). Linking a missing table takes the
    /// tree's one upper-level lock (Linux's `page_table_lock`), briefly,
    /// before the table's own is taken; no holder takes another.
    pub fn lock_pte(
        &self,
        va: VirtAddr,
        alloc: &mut (impl TableAlloc + ?Sized),
    ) -> Result<PteLock<'_, F>, MapError> {
        let table = match self.pte_slot(va) {
            Some(slot) => slot.table,
            None => {
                spin_lock(&self.ptl, || alloc.relax());
                let slot = self.slot_alloc(va, Level::L3, alloc);
                self.ptl.store(false, Ordering::Release);
                slot?.table
            }
        };
        let span = va.align_down(Level::L2.size());
        let hash = (span.as_u64() >> Level::L2.shift()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The hash's top bits pick the lock (a power of two of them).
        let lock = &self.pte_locks[(hash >> (64 - PTE_LOCKS.trailing_zeros())) as usize];
        spin_lock(lock, || alloc.relax());
        Ok(PteLock {
            pt: self,
            lock,
            table,
            span,
        })
    }

    fn cursor_at(&self, slot: PteSlot, start: VirtAddr, len: usize) -> PteCursor<'_, F> {
        // `range_pages` kept the range inside the table.
        assert!(slot.index + len <= ENTRIES && slot.table.is_aligned(PAGE_SIZE));
        let first = self.linear_map().ptr::<AtomicU64>(slot.table);
        // SAFETY: by the PageTable invariant `slot.table` (found by the
        // walk) is a page-aligned table frame of this tree, mapped readable
        // and writable by the linear map at a page-aligned offset, so its
        // 512 entries are valid, 8-aligned u64s. They are only accessed
        // atomically, here and by the hardware walker. The borrow of
        // `self` the cursor holds keeps any freeing of the table away for
        // the slice's lifetime: tables are freed only through `&mut self`.
        let entries = unsafe { core::slice::from_raw_parts(first, ENTRIES) };
        PteCursor {
            table: PteTable {
                entries,
                va: start - slot.index as u64 * PAGE_SIZE,
            },
            table_pa: slot.table,
            first_index: slot.index,
            len,
            _table: PhantomData,
        }
    }
}

/// Takes `lock`, running `relax` while someone else holds it.
fn spin_lock(lock: &AtomicBool, relax: impl Fn()) {
    while lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        while lock.load(Ordering::Relaxed) {
            relax();
        }
    }
}

/// One last-level table of a tree whose entries are changed through a
/// shared borrow, with its lock held ([`PageTable::lock_pte`]): faults
/// that run at once on one address space each hold `&` of the tree, and
/// the lock keeps each one's look at a table's entries and its change to
/// them whole. A shared borrow frees nothing (tables leave a tree only
/// through `&mut`), so the table stays one of the tree while the borrow
/// lasts.
pub struct PteLock<'a, F: PteFormat> {
    pt: &'a PageTable<F>,
    lock: &'a AtomicBool,
    /// The table, and the 2 MiB span it maps.
    table: PhysAddr,
    span: VirtAddr,
}

impl<F: PteFormat> Drop for PteLock<'_, F> {
    fn drop(&mut self) {
        self.lock.store(false, Ordering::Release);
    }
}

impl<F: PteFormat> PteLock<'_, F> {
    /// A cursor over `[start, end)`, which must lie in the locked table.
    ///
    /// # Panics
    ///
    /// As [`PageTable::pte_cursor`], and if the range is outside the
    /// locked table.
    pub fn cursor(&mut self, start: VirtAddr, end: VirtAddr) -> PteCursor<'_, F> {
        let len = range_pages(start, end);
        assert!(
            start.align_down(Level::L2.size()) == self.span,
            "PteLock: {start:?} is outside the locked table at {:?}",
            self.span
        );
        let slot = PteSlot {
            table: self.table,
            index: Level::L3.index_of(start),
        };
        self.pt.cursor_at(slot, start, len)
    }
}

impl<F: PteFormat> PteCursor<'_, F> {
    /// Number of entries the cursor covers.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a cursor covers at least one entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The virtual address entry `i` translates.
    #[inline]
    pub fn va(&self, i: usize) -> VirtAddr {
        self.table.va(self.first_index + i)
    }

    /// The L3 table the entries live in.
    #[inline]
    pub fn table(&self) -> PhysAddr {
        self.table_pa
    }

    /// Entry `i` as a [`PteSlot`], for code that works slot by slot.
    #[inline]
    pub fn slot(&self, i: usize) -> PteSlot {
        assert!(i < self.len());
        PteSlot {
            table: self.table_pa,
            index: self.first_index + i,
        }
    }

    /// The table index of cursor entries `i..i + nr`, or a panic naming
    /// the operation.
    #[inline]
    fn at(&self, op: &str, i: usize, nr: usize) -> usize {
        match i.checked_add(nr) {
            Some(end) if end <= self.len => self.first_index + i,
            _ => panic!("PteCursor::{op}: {i}+{nr} exceeds {}", self.len),
        }
    }

    /// Reads entry `i` (Linux `ptep_get`): on arm64, accessed and dirty
    /// are gathered over the entry's folded block, if it is in one.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> Pte {
        F::table_get(self.table, self.at("get", i, 1))
    }

    /// Entry `i` for a scan that needs only whether it is present and the
    /// frame it maps (fork's and zap's loops, once per batch): like
    /// [`PteCursor::get`] but with the entry's own accessed and dirty
    /// state, not gathered over a folded block, which would cost arm64 16
    /// loads per batch. Hands back nothing a caller could write back.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    #[inline]
    pub fn peek(&self, i: usize) -> Pte {
        F::table_peek(self.table, self.at("peek", i, 1))
    }

    /// Entry `i` exactly as stored, a format's hint bits included: for
    /// views of the tables and tests, not for mm decisions (which use
    /// [`PteCursor::get`]).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    #[inline]
    pub fn raw(&self, i: usize) -> Pte {
        self.table.load(self.at("raw", i, 1))
    }

    /// Maps `nr` consecutive frames: entry `i + k` becomes `first_raw`
    /// advanced by `k` pages, for `k` in `0..nr`. Returns `nr`.
    ///
    /// Context: the entries are all in this cursor's table, and when
    /// `nr > 1` none of them is present and `first_raw` is a present page
    /// entry whose frames `+0..nr` all belong to one folio (the caller
    /// takes its references first). A single entry (`nr == 1`) may replace
    /// a present one; the caller then does the TLB maintenance the change
    /// itself needs (arm64 unfolds a folded block around it first, and
    /// keeps it folded if only accessed and dirty grow). `first_raw`
    /// carries no contiguous hint.
    ///
    /// # Panics
    ///
    /// If `i + nr` exceeds the cursor, or `nr > 1` and `first_raw` is not
    /// present. Debug builds also panic if `nr > 1` and an entry is present.
    #[inline]
    pub fn set_ptes(
        &mut self,
        i: usize,
        first_raw: Pte,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> usize {
        let at = self.at("set_ptes", i, nr);
        assert!(
            nr <= 1 || F::pte_present(first_raw),
            "PteCursor::set_ptes: {nr} copies of a non-present entry"
        );
        debug_assert!(
            !(F::pte_present(first_raw) && F::pte_cont(first_raw)),
            "PteCursor::set_ptes: the contiguous hint is the format's own"
        );
        F::table_set_ptes(self.table, at, first_raw, nr, h);
        nr
    }

    /// Clears entries `i..i + nr` and returns what entry `i` held, and
    /// whether any of the `nr` entries (the first included) was young and
    /// whether any was dirty. Each entry is read and then cleared (a load
    /// and a store, see the module doc for why no hardware update can come
    /// between them while one thread uses a space). Entries that were not present are
    /// cleared too and add nothing to the answer.
    ///
    /// Context: the caller owns the references the entries held (usually
    /// a batch from [`PteCursor::pte_batch`]) and flushes the TLB before
    /// releasing them.
    ///
    /// # Panics
    ///
    /// If `i + nr` exceeds the cursor.
    #[inline]
    pub fn get_and_clear_ptes(
        &mut self,
        i: usize,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Cleared {
        let at = self.at("get_and_clear_ptes", i, nr);
        F::table_get_and_clear(self.table, at, nr, h)
    }

    /// Removes write permission from the present entries among
    /// `i..i + nr`, keeping their accessed and dirty state, and returns
    /// how many of them were writable (fork flushes the parent only if
    /// some were). Each writable entry is read and rewritten (a load and a
    /// store, see the module doc for why no hardware update can come
    /// between them while one thread uses a space); on arm64, hardware dirt moves
    /// into the software dirty bit. Entries that are not present, or
    /// present but already read-only, are left alone.
    ///
    /// Context: the caller flushes the TLB before relying on the
    /// protection (fork: once for the whole address space, at the end).
    ///
    /// # Panics
    ///
    /// If `i + nr` exceeds the cursor.
    #[inline]
    pub fn wrprotect_ptes(&mut self, i: usize, nr: usize, h: &(impl PteEnv + ?Sized)) -> usize {
        let at = self.at("wrprotect_ptes", i, nr);
        F::table_wrprotect(self.table, at, nr, h)
    }

    /// Fork's copy of one batch into `dst`, in a single pass over the
    /// entries (what `pte_batch`, `wrprotect_ptes` and `set_ptes` do in
    /// turn, fused): entry `i` is present and starts the batch; entry
    /// `i + n` joins it while `n < max_nr` and it equals entry `i` advanced
    /// by `n` pages apart from accessed, dirty and write permission
    /// ([`PteFormat::pte_same_ignoring_ad`]). Each entry of the batch loses
    /// write permission here (if it had it), and `dst`'s entry at the same
    /// index becomes entry `i` write-protected and advanced by `n` pages:
    /// within a batch the first entry's accessed and dirty state stands
    /// for all, as in `set_ptes`. Returns the batch length and how many of
    /// its entries were writable (the parent needs a TLB flush if any).
    ///
    /// `max_nr` must already be bounded by the folio entry `i` maps (its
    /// end frame minus entry `i`'s frame, as [`PteCursor::pte_batch`]
    /// bounds the scan before it reads past `i`): the pass never reads
    /// beyond `i + max_nr`, so a physically adjacent folio is never joined.
    /// One pass instead of three matters under emulation, where every
    /// load, test and loop step is paid per entry; the result is exactly
    /// that of the three calls (the host tests compare them).
    ///
    /// Context: `dst` covers the same virtual range (the child's table at
    /// the same address), its entries `i..i + max_nr` are not present, and
    /// no walker can use `dst`'s table yet (fork's child has never run),
    /// so the stores need no ordering; the caller takes the folio's
    /// references and mapcount for the returned length right after, before
    /// anything can observe the child. TLB maintenance for the parent is
    /// the caller's, as for `wrprotect_ptes`.
    ///
    /// # Panics
    ///
    /// If `max_nr == 0`, `i + max_nr` exceeds the cursor, `dst` covers a
    /// different range, or entry `i` is not present. Debug builds also
    /// panic if a `dst` entry of the batch is present.
    #[inline]
    pub fn copy_batch_wrprotect(
        &mut self,
        dst: &mut PteCursor<'_, F>,
        i: usize,
        max_nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Copied {
        assert!(max_nr >= 1, "PteCursor::copy_batch_wrprotect: max_nr is 0");
        assert!(
            self.same_range(dst),
            "PteCursor::copy_batch_wrprotect: the cursors cover different ranges"
        );
        let at = self.at("copy_batch_wrprotect", i, max_nr);
        F::table_copy_batch(self.table, dst.table, at, max_nr, h)
    }

    /// True if `other` covers the same entries (fork's parent and child
    /// cursors over one range).
    #[inline]
    pub fn same_range(&self, other: &PteCursor<'_, F>) -> bool {
        other.va(0) == self.va(0) && other.len() == self.len()
    }

    /// [`PteCursor::copy_batch_wrprotect`] for a batch of one, the
    /// entry `raw` the caller read at `i` (every order-0 folio, and every
    /// entry with batching off): kept apart so that the common small case
    /// is a few inlined instructions rather than a call into the batch
    /// loop. Returns whether the entry was writable.
    ///
    /// # Panics
    ///
    /// If `i` is outside the cursor. Debug builds also panic if `dst`
    /// covers a different range, `raw` is not present or not entry `i`, or
    /// `dst`'s entry `i` is present. None of these can reach outside the
    /// two tables (`i` is checked against this cursor, and both index
    /// whole 512-entry tables);
    /// fork, the caller per entry, checks the pair of cursors once per
    /// table with [`PteCursor::same_range`].
    #[inline]
    pub fn copy_one_wrprotect(
        &mut self,
        dst: &mut PteCursor<'_, F>,
        i: usize,
        raw: Pte,
        h: &(impl PteEnv + ?Sized),
    ) -> bool {
        debug_assert!(
            self.same_range(dst) && F::pte_present(raw),
            "PteCursor::copy_one_wrprotect: bad call for entry {i} ({raw:#x})"
        );
        let at = self.at("copy_one_wrprotect", i, 1);
        F::table_copy_one(self.table, dst.table, at, raw, h)
    }

    /// How many entries from `i` on (at least 1, at most `max_nr`) map
    /// consecutive frames of one folio with entries equal apart from
    /// accessed, dirty and write permission
    /// ([`PteFormat::pte_same_ignoring_ad`]), given the folio's exclusive
    /// end frame `folio_end`. The folio bound is taken by frame arithmetic
    /// before any entry past `i` is read, so the scan never forms an
    /// expected entry beyond the folio: a physically adjacent folio mapped
    /// right after this one with identical bits is not counted.
    ///
    /// Context: entry `i` is present and maps a frame of the folio (any
    /// frame, not only the head) that ends at `folio_end`; a scan confined
    /// to the cursor also never leaves the table.
    ///
    /// # Panics
    ///
    /// If `max_nr == 0` or `i + max_nr` exceeds the cursor. Debug builds
    /// also panic if entry `i` is not present or maps a frame at or past
    /// `folio_end`; release builds then return 1.
    #[inline]
    pub fn pte_batch(&self, i: usize, max_nr: usize, folio_end: Pfn) -> usize {
        assert!(max_nr >= 1, "PteCursor::pte_batch: max_nr is 0");
        let at = self.at("pte_batch", i, max_nr);
        let run = self.table.run(at, max_nr);
        let first = Pte::from_bits(run[0].load(Ordering::Relaxed));
        let first_pfn = F::pte_pfn(first);
        let left_in_folio = folio_end.as_u64().saturating_sub(first_pfn.as_u64());
        let valid = F::pte_present(first) && left_in_folio > 0;
        debug_assert!(
            valid,
            "PteCursor::pte_batch: entry {i} ({first:#x}) does not map a frame below {folio_end:?}"
        );
        if !valid {
            // Scanning from a non-present entry could count a run of
            // empty entries as a batch: hand back just this one.
            return 1;
        }
        let max = (max_nr as u64).min(left_in_folio) as usize;
        let mut expected = first;
        let mut n = 1;
        while n < max {
            // `n < left_in_folio`: the expected frame is still inside the
            // folio. A non-present candidate never matches a present
            // `expected`: the helpers leave the validity bits alone.
            expected = F::pte_advance(expected, 1);
            let cur = Pte::from_bits(run[n].load(Ordering::Relaxed));
            if !F::pte_same_ignoring_ad(cur, expected) {
                break;
            }
            n += 1;
        }
        n
    }
}

pub mod plain;
