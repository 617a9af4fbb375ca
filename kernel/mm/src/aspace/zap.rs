//! Unmapping: munmap, `MADV_DONTNEED` and teardown clear PTEs a batch at a
//! time (Linux `zap_pte_range`, `zap_present_ptes`), account each batch
//! with one mapcount update, hand its references to the [`Gather`], and
//! queue partly mapped large folios for deferred split.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use crate::env::MmEnv;
use crate::folio::FolioRef;
// Emptied tables an exit frees per batch (`MmEnv::free_tables`): as many
// as a gather holds.
use crate::mmu_gather::{Gather, TABLE_BATCH};
use crate::pgtable::{Level, Pte, PteCursor, PteFormat};
use crate::stats::{LocalHistogram, STATS};
use crate::vma::VmaError;

use super::{AddressSpace, entry_folio, hooks};

/// Folio state for `nr` just-cleared PTEs mapping its pages, whose
/// entries showed `dirty`: the dirt folded into the folio, the mapcount
/// dropped. Their references go to the gather next ([`Gather::add_pte_refs`]).
/// True if the folio is now partly mapped and not queued for deferred
/// split yet: it has mappings left, but fewer than pages, so some page is
/// mapped nowhere (see `split.rs`).
#[inline]
fn unmap_folio_ptes(f: &FolioRef<'_>, nr: usize, dirty: bool) -> bool {
    // Read first: most folios are dirty already (Linux's
    // `folio_mark_dirty` tests before it sets, too).
    if dirty && !f.test_dirty() {
        f.set_dirty();
    }
    let left = f.sub_mapcount(nr as u32);
    left != 0 && u64::from(left) < f.nr_pages() && !f.test_deferred()
}

/// Queues the folio at `head` for deferred split (`unmap_folio_ptes` found
/// it partly mapped); its page `pfn` was mapped at `va`, which places the
/// whole folio. Counted as `split_deferred` of its size.
fn queue_deferred_split(
    env: &mut (impl MmEnv + ?Sized),
    head: Pfn,
    pages: u64,
    pfn: Pfn,
    va: VirtAddr,
) {
    let base = va - (pfn - head) * PAGE_SIZE;
    if env.deferred_split_folio(head, base) {
        env.thp().count_split_deferred(pages.trailing_zeros() as u8);
    }
}

/// How many entries from `i` fork or zap handle as one batch, `f` being
/// the folio entry `i` maps: a run mapping consecutive pages of one large
/// folio (Linux `folio_pte_batch`, bounded by the folio's end before it
/// scans); small folios, or batching off, go one entry at a time.
#[inline]
fn batch_len<F: PteFormat>(
    cur: &PteCursor<'_, F>,
    i: usize,
    f: &FolioRef<'_>,
    batching: bool,
) -> usize {
    let pages = f.nr_pages();
    if batching && pages > 1 {
        cur.pte_batch(i, cur.len() - i, f.pfn() + pages)
    } else {
        1
    }
}

impl<F: PteFormat> AddressSpace<F> {
    /// Accounts for a PTE (already cleared) that mapped a page: one
    /// mapcount now, one reference into the gather for after the flush
    /// (zap's accounting for a batch of one). The zero page holds neither.
    pub(super) fn release_pte(
        &self,
        raw: Pte,
        va: VirtAddr,
        g: &mut Gather,
        env: &mut (impl MmEnv + ?Sized),
    ) {
        let pfn = F::pte_pfn(raw);
        if !F::pte_present(raw) {
            return;
        }
        let Some(f) = entry_folio(env.memmap(), self.zero, pfn) else {
            return;
        };
        let (head, pages) = (f.pfn(), f.nr_pages());
        if unmap_folio_ptes(&f, 1, F::pte_dirty(raw)) {
            queue_deferred_split(env, head, pages, pfn, va);
        }
        self.rss.fetch_sub(1, Relaxed);
        g.add_pte_refs(head, 1, env);
    }

    /// Removes every mapping in `[start, end)`: PTEs cleared, areas
    /// removed or split, emptied tables freed, all after one flush
    /// (Linux `munmap`). Unmapping nothing succeeds.
    pub fn unmap(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), VmaError> {
        self.vmas.remove_range(start, end)?;
        let mut g = Gather::new(self.asid);
        // PTEs exist only inside the areas just removed.
        self.zap(env, start, end, &mut g);
        // Every entry of the range was just cleared. The emptied tables go
        // to the gather as they are unlinked, which frees them a bounded
        // batch at a time, each after a flush of the whole range
        // (intermediate walks may be cached too): however many tables the
        // range held, nothing here grows with it.
        g.note_tables(start, end);
        self.pt
            .free_cleared_tables(start, end, &mut |t| g.add_table(t, env));
        g.finish(env);
        Ok(())
    }

    /// Clears the PTEs of `[start, end)` into `g` (Linux `zap_pte_range`).
    fn zap(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
        g: &mut Gather,
    ) {
        let span = Level::L2.size();
        let mut at = start;
        // One table at a time, found by a short descent that skips missing
        // subtrees: nothing is allocated, however large the range.
        while let Some(table) = self.pt.next_pte_table(at, end) {
            let (s, e) = (table.va.max(at), (table.va + span).min(end));
            self.zap_pte_range(env, s, e, g);
            at = e;
            // Between tables: the cleared entries' references wait in the
            // gather, whose flush follows the space's ASID.
            self.cond_resched(env, Some(g));
        }
    }

    /// Clears the present entries of `[s, e)`, inside one last-level table
    /// (Linux `zap_present_ptes`): a run of entries mapping consecutive
    /// pages of one large folio is one batch (one clear, one dirty fold,
    /// one mapcount update, one gather entry) unless batching is off, when
    /// every entry is its own batch as before Linux 6.9. Pages keep their
    /// anon-exclusive flag, as on Linux: nothing maps them again, and
    /// freeing clears it.
    fn zap_pte_range(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        s: VirtAddr,
        e: VirtAddr,
        g: &mut Gather,
    ) {
        let batching = env.batching();
        let asid = self.asid;
        let Some(mut cur) = self.pt.pte_cursor(s, e) else {
            return;
        };
        let mut hist = LocalHistogram::default();
        let mut freed = 0;
        let mut i = 0;
        while i < cur.len() {
            let raw = cur.peek(i);
            if !F::pte_present(raw) {
                i += 1;
                continue;
            }
            let pfn = F::pte_pfn(raw);
            let Some(f) = entry_folio(env.memmap(), self.zero, pfn) else {
                // The zero page (or a frame without a folio): no reference.
                cur.get_and_clear_ptes(i, 1, &hooks(env, asid));
                g.note(cur.va(i));
                i += 1;
                continue;
            };
            let (head, pages) = (f.pfn(), f.nr_pages());
            let nr = batch_len(&cur, i, &f, batching);
            let dirty = cur.get_and_clear_ptes(i, nr, &hooks(env, asid)).dirty;
            if unmap_folio_ptes(&f, nr, dirty) {
                queue_deferred_split(env, head, pages, pfn, cur.va(i));
            }
            g.note_range(cur.va(i), nr);
            hist.count(nr);
            env.note_batch(false, nr);
            g.add_pte_refs(head, nr as u32, env);
            freed += nr as u64;
            i += nr;
        }
        *self.rss.get_mut() -= freed;
        hist.add_to(&STATS.zap_batches);
    }

    /// Drops the pages of `[start, end)` but keeps the areas (Linux
    /// `MADV_DONTNEED`): the next access faults in zeroed memory. Pages in
    /// every area the range meets are dropped; a hole in the range is
    /// reported afterwards as [`VmaError::Hole`] (Linux: ENOMEM).
    pub fn dontneed(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), VmaError> {
        if start >= end || !start.is_aligned(PAGE_SIZE) || !end.is_aligned(PAGE_SIZE) {
            return Err(VmaError::Invalid);
        }
        let mut g = Gather::new(self.asid);
        let mut at = start;
        let mut hole = false;
        // One area at a time, looked up afresh: no list of areas is built.
        while at < end {
            let next = self
                .vmas
                .overlapping(at, end)
                .next()
                .map(|v| (v.start.max(at), v.end.min(end)));
            let Some((s, e)) = next else { break };
            hole |= s > at;
            self.zap(env, s, e, &mut g);
            at = e;
        }
        g.finish(env);
        if hole || at < end {
            Err(VmaError::Hole)
        } else {
            Ok(())
        }
    }

    /// Frees everything: every page reference and every table, the root
    /// included, after one flush of the whole address space (exit, exec).
    pub fn teardown(mut self, env: &mut (impl MmEnv + ?Sized)) {
        let mut g = Gather::new_full(self.asid);
        let end = self.user_end;
        self.zap(env, VirtAddr::new(0), end, &mut g);
        // Every PTE is gone and the whole address space flushed: no walk
        // can reach the tables any more (this space is not installed), so
        // they are freed as they are unlinked, in batches (one allocator
        // lock each), or one by one if the kernel heap is short.
        g.flush_and_free_folios(env);
        let mut tables = Vec::new();
        self.pt
            .free_cleared_tables(VirtAddr::new(0), end, &mut |t| {
                if tables.len() == TABLE_BATCH {
                    env.free_tables(&mut tables);
                }
                if tables.try_reserve(1).is_ok() {
                    tables.push(t);
                } else {
                    env.free_table(t);
                }
            });
        env.free_tables(&mut tables);
        env.free_table(self.pt.root());
        g.finish(env);
    }
}
