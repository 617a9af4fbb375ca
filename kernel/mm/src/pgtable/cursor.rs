//! A cursor over part of one last-level (L3) table, with Linux's batch
//! operations on raw entries: what batched fork, zap and large-folio
//! faults loop over.
//!
//! | call                             | Linux counterpart                       |
//! |----------------------------------|-----------------------------------------|
//! | [`PageTable::pte_cursor`]        | `pte_offset_map_lock` on an existing table |
//! | [`PageTable::pte_cursor_alloc`]  | `pte_alloc_map_lock`                    |
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
//! sees the old entry or the new one, never a mix. Clearing and
//! write-protection are a load and a store, not an atomic
//! read-modify-write (Linux's `xchg` / `cmpxchg` loops), because no
//! hardware update can come between the two on Folium: the walker sets
//! accessed/dirty bits only for accesses through this table, and none can
//! happen while a cursor lives. Folium runs on one CPU, the cursor's
//! caller is the kernel acting for the address space (a syscall, a
//! fault, exit), so the space's user code is not running; kernel code
//! runs with interrupts masked, so no handler touches user memory
//! meanwhile; and nothing in these paths accesses user memory through the
//! table between the load and the store. At most a speculative walk might
//! set an accessed bit in between, and losing that is harmless (it only
//! feeds aging); dirt is recorded only for stores that complete, and none
//! can. (On arm64, `get_and_clear_ptes`
//! and `wrprotect_ptes` would otherwise race with hardware dirty-bit
//! updates; with a second CPU running the space, they must become
//! `swap` / `fetch_update` again, as Linux's SMP versions are.) No
//! operation does TLB maintenance; the caller flushes (mmu_gather, or one
//! flush at the end of fork) as the change requires.
//!
//! The arm64 contiguous hint is not handled here: entries are stored as
//! given. Folding and unfolding belong to the aarch64 side of these
//! operations and will live there.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use super::PteFormat;
use super::kind::PteKind;
use super::level::{ENTRIES, Level};
use super::mapper::{MapError, PageTable, TableAlloc};
use super::walk::PteSlot;
use crate::addr::{PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

/// A window of consecutive entries of one L3 table, borrowed from its
/// [`PageTable`] for as long as the cursor lives.
pub struct PteCursor<'a, F: PteFormat> {
    /// The entries for `[start, start + len * PAGE_SIZE)`.
    entries: &'a [AtomicU64],
    table: PhysAddr,
    first_index: usize,
    start: VirtAddr,
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

    fn cursor_at(&mut self, slot: PteSlot, start: VirtAddr, len: usize) -> PteCursor<'_, F> {
        // `range_pages` kept the range inside the table.
        assert!(slot.index + len <= ENTRIES && slot.table.is_aligned(PAGE_SIZE));
        let first = self
            .linear_map()
            .ptr::<AtomicU64>(slot.table)
            .wrapping_add(slot.index);
        // SAFETY: by the PageTable invariant `slot.table` (found by the
        // walk) is a page-aligned table frame of this tree, mapped readable
        // and writable by the linear map at a page-aligned offset, so
        // entries `index..index + len` (checked above to end inside it) are
        // valid, 8-aligned u64s. They are only accessed atomically, here and
        // by the hardware walker. The `&mut self` borrow the cursor holds
        // keeps every other user of this handle, and so any freeing of the
        // table, away for the slice's lifetime.
        let entries = unsafe { core::slice::from_raw_parts(first, len) };
        PteCursor {
            entries,
            table: slot.table,
            first_index: slot.index,
            start,
            _table: PhantomData,
        }
    }
}

impl<F: PteFormat> PteCursor<'_, F> {
    /// Number of entries the cursor covers.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a cursor covers at least one entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The virtual address entry `i` translates.
    #[inline]
    pub fn va(&self, i: usize) -> VirtAddr {
        self.start + i as u64 * PAGE_SIZE
    }

    /// The L3 table the entries live in.
    #[inline]
    pub fn table(&self) -> PhysAddr {
        self.table
    }

    /// Entry `i` as a [`PteSlot`], for code that works slot by slot.
    #[inline]
    pub fn slot(&self, i: usize) -> PteSlot {
        assert!(i < self.len());
        PteSlot {
            table: self.table,
            index: self.first_index + i,
        }
    }

    /// The entries `i..i + nr`, or a panic naming the operation.
    #[inline]
    fn run(&self, op: &str, i: usize, nr: usize) -> &[AtomicU64] {
        match i.checked_add(nr) {
            Some(end) if end <= self.len() => &self.entries[i..end],
            _ => panic!("PteCursor::{op}: {i}+{nr} exceeds {}", self.len()),
        }
    }

    /// Reads entry `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.entries[i].load(Ordering::Relaxed)
    }

    /// Maps `nr` consecutive frames: entry `i + k` becomes `first_raw`
    /// advanced by `k` pages, for `k` in `0..nr`. Returns `nr`.
    ///
    /// Context: the entries are all in this cursor's table, and when
    /// `nr > 1` none of them is present and `first_raw` is a present page
    /// entry whose frames `+0..nr` all belong to one folio (the caller
    /// takes its references first). A single entry (`nr == 1`) may replace
    /// a present one; the caller then does the TLB maintenance the change
    /// needs. `first_raw` carries no contiguous hint.
    ///
    /// # Panics
    ///
    /// If `i + nr` exceeds the cursor, or `nr > 1` and `first_raw` is not
    /// present. Debug builds also panic if `nr > 1` and an entry is present.
    #[inline]
    pub fn set_ptes(&mut self, i: usize, first_raw: u64, nr: usize) -> usize {
        let run = self.run("set_ptes", i, nr);
        assert!(
            nr <= 1 || F::pte_present(first_raw),
            "PteCursor::set_ptes: {nr} copies of a non-present entry"
        );
        debug_assert!(
            !matches!(
                F::decode(first_raw, Level::L3),
                PteKind::Leaf { attrs, .. } if attrs.cont
            ),
            "PteCursor::set_ptes: the contiguous hint is the arm64 layer's"
        );
        let mut raw = first_raw;
        for (k, e) in run.iter().enumerate() {
            debug_assert!(
                nr == 1 || !F::pte_present(e.load(Ordering::Relaxed)),
                "PteCursor::set_ptes: entry {} is present",
                i + k
            );
            // Release: what the caller wrote to the frames (zeroes, copies)
            // is visible before the mapping is.
            e.store(raw, Ordering::Release);
            if k + 1 < nr {
                raw = F::pte_advance(raw, 1);
            }
        }
        nr
    }

    /// Clears entries `i..i + nr` and returns what entry `i` held, and
    /// whether any of the `nr` entries (the first included) was young and
    /// whether any was dirty. Each entry is read and then cleared (a load
    /// and a store, see the module doc for why no hardware update can come
    /// between them on Folium's one CPU). Entries that were not present are
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
    pub fn get_and_clear_ptes(&mut self, i: usize, nr: usize) -> (u64, bool, bool) {
        let run = self.run("get_and_clear_ptes", i, nr);
        let (mut first, mut young, mut dirty) = (0, false, false);
        for (k, e) in run.iter().enumerate() {
            // Not a swap: no walk can set A/D in between (module doc).
            let old = e.load(Ordering::Relaxed);
            e.store(0, Ordering::Relaxed);
            if k == 0 {
                first = old;
            }
            if F::pte_present(old) {
                young |= F::pte_young(old);
                dirty |= F::pte_dirty(old);
            }
        }
        (first, young, dirty)
    }

    /// Removes write permission from the present entries among
    /// `i..i + nr`, keeping their accessed and dirty state, and returns
    /// how many of them were writable (fork flushes the parent only if
    /// some were). Each writable entry is read and rewritten (a load and a
    /// store, see the module doc for why no hardware update can come
    /// between them on Folium's one CPU); on arm64, hardware dirt moves
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
    pub fn wrprotect_ptes(&mut self, i: usize, nr: usize) -> usize {
        let run = self.run("wrprotect_ptes", i, nr);
        let mut changed = 0;
        for e in run {
            // Not a compare-and-swap: no walk can set A/D in between
            // (module doc). Entries that are not present or not writable
            // keep their exact bits.
            let old = e.load(Ordering::Relaxed);
            if F::pte_present(old) && F::pte_writable(old) {
                e.store(F::pte_wrprotect(old), Ordering::Relaxed);
                changed += 1;
            }
        }
        changed
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
    #[inline(never)]
    pub fn copy_batch_wrprotect(
        &mut self,
        dst: &mut PteCursor<'_, F>,
        i: usize,
        max_nr: usize,
    ) -> (usize, usize) {
        assert!(max_nr >= 1, "PteCursor::copy_batch_wrprotect: max_nr is 0");
        assert!(
            dst.start == self.start && dst.len() == self.len(),
            "PteCursor::copy_batch_wrprotect: the cursors cover different ranges"
        );
        let src = self.run("copy_batch_wrprotect", i, max_nr);
        let out = &dst.entries[i..i + max_nr];
        let first = src[0].load(Ordering::Relaxed);
        assert!(
            F::pte_present(first),
            "PteCursor::copy_batch_wrprotect: entry {i} ({first:#x}) is not present"
        );
        // Checked once per batch, so that advancing an entry by `k` pages
        // can be an addition: with every frame up to `first + max_nr`
        // inside the format's address width (a folio's frames are), adding
        // `k` pages to the raw entry never carries out of the address
        // field, and equals `pte_advance(first, k)`.
        assert!(
            F::pte_pfn(first).as_u64() + max_nr as u64 <= 1 << (F::PA_BITS - PAGE_SHIFT),
            "PteCursor::copy_batch_wrprotect: {max_nr} frames from {first:#x} leave the address field"
        );
        let child = F::pte_wrprotect(first);
        let mut writable = 0;
        if F::pte_writable(first) {
            src[0].store(child, Ordering::Relaxed);
            writable += 1;
        }
        debug_assert!(
            !F::pte_present(out[0].load(Ordering::Relaxed)),
            "PteCursor::copy_batch_wrprotect: child entry {i} is present"
        );
        out[0].store(child, Ordering::Relaxed);
        let mut n = 1;
        if writable == 0 {
            // A read-only batch (what every fork after the first one sees):
            // four entries per step with one test, since each member is
            // read-only too and so needs no write-protection, and the
            // child's entry is the parent's expected one (`child == first`
            // here). Where the test fails, the loop below sorts it out.
            let p = PAGE_SIZE;
            let mut e = first + p;
            for (s4, o4) in src[1..].chunks_exact(4).zip(out[1..].chunks_exact(4)) {
                let x = (s4[0].load(Ordering::Relaxed) ^ e)
                    | (s4[1].load(Ordering::Relaxed) ^ (e + p))
                    | (s4[2].load(Ordering::Relaxed) ^ (e + 2 * p))
                    | (s4[3].load(Ordering::Relaxed) ^ (e + 3 * p));
                if x & !F::READONLY_AD != 0 {
                    break;
                }
                debug_assert!(
                    o4.iter()
                        .all(|o| !F::pte_present(o.load(Ordering::Relaxed))),
                    "PteCursor::copy_batch_wrprotect: a child entry at {} is present",
                    i + n
                );
                o4[0].store(e, Ordering::Relaxed);
                o4[1].store(e + p, Ordering::Relaxed);
                o4[2].store(e + 2 * p, Ordering::Relaxed);
                o4[3].store(e + 3 * p, Ordering::Relaxed);
                e += 4 * p;
                n += 4;
            }
        }
        while n < max_nr {
            let delta = n as u64 * PAGE_SIZE;
            let cur = src[n].load(Ordering::Relaxed);
            // A non-present entry never matches a present expected one.
            if !F::pte_same_ignoring_ad(cur, first + delta) {
                break;
            }
            // Not a compare-and-swap: no walk can set A/D in between
            // (module doc).
            if F::pte_writable(cur) {
                src[n].store(F::pte_wrprotect(cur), Ordering::Relaxed);
                writable += 1;
            }
            debug_assert!(
                !F::pte_present(out[n].load(Ordering::Relaxed)),
                "PteCursor::copy_batch_wrprotect: child entry {} is present",
                i + n
            );
            out[n].store(child + delta, Ordering::Relaxed);
            n += 1;
        }
        (n, writable)
    }

    /// [`PteCursor::copy_batch_wrprotect`] for a batch of one, the
    /// entry `raw` the caller read at `i` (every order-0 folio, and every
    /// entry with batching off): kept apart so that the common small case
    /// is a few inlined instructions rather than a call into the batch
    /// loop. Returns whether the entry was writable.
    ///
    /// # Panics
    ///
    /// If `i` is outside the cursor, `dst` covers a different range, or
    /// `raw` is not present. Debug builds also panic if `raw` is not entry
    /// `i` or `dst`'s entry `i` is present.
    #[inline]
    pub fn copy_one_wrprotect(&mut self, dst: &mut PteCursor<'_, F>, i: usize, raw: u64) -> bool {
        assert!(
            dst.start == self.start && dst.len() == self.len() && F::pte_present(raw),
            "PteCursor::copy_one_wrprotect: bad call for entry {i} ({raw:#x})"
        );
        let src = &self.entries[i];
        debug_assert_eq!(src.load(Ordering::Relaxed), raw);
        let out = &dst.entries[i];
        debug_assert!(!F::pte_present(out.load(Ordering::Relaxed)));
        let child = F::pte_wrprotect(raw);
        let writable = F::pte_writable(raw);
        if writable {
            // A load and a store, not a compare-and-swap (module doc).
            src.store(child, Ordering::Relaxed);
        }
        out.store(child, Ordering::Relaxed);
        writable
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
        let run = self.run("pte_batch", i, max_nr);
        let first = run[0].load(Ordering::Relaxed);
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
            if !F::pte_same_ignoring_ad(run[n].load(Ordering::Relaxed), expected) {
                break;
            }
            n += 1;
        }
        n
    }
}
