//! The `mmu_gather`: **unhook, flush, free**.
//!
//! Every path that removes or downgrades user PTEs (munmap, `MADV_DONTNEED`,
//! exit, copy-on-write's break-before-make, fork's write-protect) first
//! clears or changes the entries (unhook), notes their addresses here, and
//! hands over the folio references and table frames they held. The gather
//! flushes the TLB once for everything noted (a range, or the whole address
//! space) and only then drops the references and frees the tables: no frame
//! is reused while a stale translation to it may survive in a TLB.
//!
//! Its fields are private and a [`Gather`] is `#[must_use]`, so this module
//! is the only place a mapped page's last reference ends
//! (`Gather::add_pte_refs` takes it over; nothing hands it back before the
//! flush). Linux: `mm/mmu_gather.c`, `tlb_gather_mmu` / `tlb_finish_mmu`.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::env::MmEnv;
use crate::folio::Folio;
use crate::stats::STATS;
use crate::tlb::Asid;

/// Pages and tables to release once the TLB is flushed (a minimal
/// `mmu_gather`). `#[must_use]`: dropping it without [`Gather::finish`]
/// leaks what it holds rather than freeing anything early.
#[must_use = "a Gather must be finished: it flushes the TLB, then frees"]
pub struct Gather {
    asid: Asid,
    start: u64,
    end: u64,
    /// Folio references to drop after the flush: (folio, how many).
    folios: Vec<(Folio, u32)>,
    /// Unlinked table frames to free after the next flush: at most
    /// [`TABLE_BATCH`], so a gather's memory does not grow with the range.
    tables: Vec<PhysAddr>,
    /// The first and last page whose walks went through the tables handed
    /// over ([`Gather::note_tables`]): the flush that frees them covers it.
    table_span: Option<(VirtAddr, VirtAddr)>,
    /// Flush the whole address space rather than the range.
    full: bool,
    /// Something was noted since the last flush (a flush with nothing
    /// new to invalidate is skipped: break-before-make flushes early,
    /// and `finish` then has nothing left to do).
    unflushed: bool,
    /// Entries taken over so far (for [`STATS`], added once at the end).
    entries: u64,
}

impl Gather {
    pub(crate) fn new(asid: Asid) -> Gather {
        Gather {
            asid,
            start: u64::MAX,
            end: 0,
            folios: Vec::new(),
            tables: Vec::new(),
            table_span: None,
            full: false,
            unflushed: false,
            entries: 0,
        }
    }

    /// A gather that flushes the whole address space (exit; fork's
    /// write-protect of every writable PTE), at least once.
    pub(crate) fn new_full(asid: Asid) -> Gather {
        Gather {
            full: true,
            unflushed: true,
            ..Gather::new(asid)
        }
    }

    /// Flushes with `asid` from now on: the space was renumbered at a
    /// preemption point ([`MmEnv::cond_resched`]), after a rollover that
    /// flushed everything noted so far under the old number.
    pub(crate) fn set_asid(&mut self, asid: Asid) {
        self.asid = asid;
    }

    /// Notes that the translation of `va` changed or went away.
    pub(crate) fn note(&mut self, va: VirtAddr) {
        self.note_range(va, 1);
    }

    /// Notes that the translations of `nr` pages from `va` changed.
    #[inline]
    pub(crate) fn note_range(&mut self, va: VirtAddr, nr: usize) {
        self.start = self.start.min(va.as_u64());
        self.end = self.end.max(va.as_u64() + nr as u64 * PAGE_SIZE);
        self.unflushed = true;
    }

    /// Takes over the folio references `nr` just-cleared PTEs held (the
    /// folio's head is `head`), as one entry; they are dropped only after
    /// the flush. This is the only way a mapped page's reference ends.
    ///
    /// Context: the PTEs' addresses were [noted](Gather::note) first, so
    /// any early flush this forces covers them.
    #[inline]
    pub(crate) fn add_pte_refs(&mut self, head: Pfn, nr: u32, env: &mut (impl MmEnv + ?Sized)) {
        // SAFETY: the caller cleared `nr` PTEs of this folio and accounted
        // their mapcount; the references they held move into the gather,
        // which puts them after the TLB flush.
        let folio = unsafe { Folio::from_raw(head) };
        self.entries += 1;
        // The common case, inlined into zap's loop: room in the list.
        if self.folios.len() < self.folios.capacity().min(env.gather_batch()) {
            self.folios.push((folio, nr));
        } else {
            self.add_pte_refs_slow(folio, nr, env);
        }
    }

    /// [`Gather::add_pte_refs`] when the list is full or must grow.
    #[inline(never)]
    fn add_pte_refs_slow(&mut self, folio: Folio, nr: u32, env: &mut (impl MmEnv + ?Sized)) {
        if self.folios.len() >= env.gather_batch() || self.folios.try_reserve(1).is_err() {
            // Bound the gather's memory (and survive a full kernel heap):
            // flush what is unhooked so far, free it, and go on.
            self.flush_and_free_folios(env);
        }
        if self.folios.len() < self.folios.capacity() {
            self.folios.push((folio, nr));
        } else {
            // Not even one slot: flush (these PTEs are covered), then free.
            self.flush(env);
            env.folio_put_refs(folio, nr);
        }
    }

    /// Flushes the TLB for everything noted so far and drops the folio
    /// references gathered (tables wait for [`Gather::finish`]).
    pub(crate) fn flush_and_free_folios(&mut self, env: &mut (impl MmEnv + ?Sized)) {
        self.flush(env);
        env.folios_put_refs(&mut self.folios);
    }

    pub(crate) fn flush(&mut self, env: &mut (impl MmEnv + ?Sized)) {
        if !self.unflushed {
            return;
        }
        self.unflushed = false;
        if self.full {
            STATS.flush_asid.fetch_add(1, Relaxed);
            env.tlb().flush_asid(self.asid);
        } else if self.start < self.end {
            STATS.flush_range.fetch_add(1, Relaxed);
            env.tlb().flush_range(
                self.asid,
                VirtAddr::new(self.start),
                VirtAddr::new(self.end),
            );
        }
        (self.start, self.end) = (u64::MAX, 0);
    }

    /// Notes that the tables about to be handed over ([`Gather::add_table`])
    /// were reached by walks of `[start, end)`: the flush that frees them
    /// covers the whole span, so cached intermediate entries through them
    /// (arm64 and x86 keep those too) are dropped first.
    pub(crate) fn note_tables(&mut self, start: VirtAddr, end: VirtAddr) {
        if start < end {
            self.table_span = Some((start, end - PAGE_SIZE));
        }
    }

    /// Takes over a page-table frame that nothing links any more (munmap's
    /// emptied tables); it is freed after a flush. At most [`TABLE_BATCH`]
    /// wait at once: a full batch (or a kernel heap that cannot hold one
    /// more entry) is flushed and freed before this one joins, so
    /// unmapping any number of tables needs a few KiB of heap.
    ///
    /// Context: the table was unlinked after [`Gather::note_tables`] noted
    /// a span covering the walks through it.
    pub(crate) fn add_table(&mut self, table: PhysAddr, env: &mut (impl MmEnv + ?Sized)) {
        // Whatever flushed before, this table was unlinked after it: the
        // next flush must cover its span.
        if let Some((first, last)) = self.table_span {
            self.note(first);
            self.note(last);
        }
        if self.tables.len() >= TABLE_BATCH || self.tables.try_reserve(1).is_err() {
            // The waiting tables were unlinked before this flush.
            self.flush_and_free_folios(env);
            env.free_tables(&mut self.tables);
        }
        if self.tables.len() < self.tables.capacity() {
            self.tables.push(table);
        } else {
            // Not even one slot: flush (this table is unlinked), then free.
            self.flush(env);
            env.free_table(table);
        }
    }

    /// Flushes the TLB once for everything noted, then drops the folio
    /// references and frees the tables.
    pub fn finish(mut self, env: &mut (impl MmEnv + ?Sized)) {
        STATS.gathers.fetch_add(1, Relaxed);
        STATS.gather_entries.fetch_add(self.entries, Relaxed);
        self.flush_and_free_folios(env);
        env.free_tables(&mut self.tables);
    }
}

/// Unlinked page tables a [`Gather`] holds before it flushes and frees
/// them early (4 KiB of kernel heap): munmap of 1 TiB of sparse tables
/// flushes once per 512 of them instead of listing them all. (64 under
/// Miri, whose host tests then need far fewer tables to fill batches.)
pub const TABLE_BATCH: usize = if cfg!(miri) { 64 } else { 512 };
