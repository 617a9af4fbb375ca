//! Deferred split: a large folio that an unmap leaves partly mapped waits
//! on a queue, and a scan later splits it into order-0 folios and frees the
//! pages nobody maps any more, so one page left of a 2 MiB folio does not
//! pin 2 MiB (Linux `deferred_split_folio` and `deferred_split_scan`).
//!
//! # When a folio is queued
//!
//! Folium keeps one mapcount per folio, not one per page (as Linux can
//! since 6.15, built without `CONFIG_PAGE_MAPCOUNT`). An unmap that leaves
//! the folio with fewer mappings than pages, but some, proves that at
//! least one page is mapped nowhere: were every page mapped at least once,
//! the count would be `nr_pages` or more. That is the test the unmap paths apply (see
//! `aspace.rs`). It never fires for an unmap that takes the whole folio
//! in one batch (the count goes straight to 0), so batched zap never
//! queues a folio it frees; the per-PTE mode does, one PTE at a time,
//! exactly as Linux did before 6.9, and the free takes the folio off the
//! queue again. It can miss a folio whose pages are mapped unevenly by
//! several processes; Linux accepts the same.
//!
//! # The queue
//!
//! In `deferred_split.rs`. Intrusive and owned by the [`BuddyAllocator`] (in the kernel, under its
//! lock): the head carries [`PageFlags::DEFERRED`] and, in its `private`
//! word, the virtual page number of where the folio's first page is
//! mapped; the links live in the second page's free-list fields, unused
//! while the block is allocated. Queueing, unqueueing and freeing a queued
//! folio are O(1), and a free unqueues, so nothing on the queue is ever
//! free.
//!
//! # Splitting
//!
//! Splitting needs to know how many PTEs map each page. Folium has no
//! reverse map, but needs none: a folio's pages are only ever mapped at
//! their natural place (a fault maps the whole folio aligned, fork copies
//! at the same address, nothing moves pages), so page `k` can only be
//! mapped at `base + k` pages in any address space. The scan reads those
//! entries in every space's page table
//! ([`PageTable::count_folio_mappings`], driven by [`deferred_split_scan`]), checks that the
//! counts add up to the folio's mapcount and that no reference is held
//! beyond the mappings (a gather in flight, a kernel user), and only then
//! rewrites the descriptors: every page becomes an order-0 folio whose
//! refcount and mapcount are its own mapping count, keeping its
//! anon-exclusive bit and the folio's flags, and the unmapped pages go
//! back to the allocator. No page-table entry changes: a PTE names a
//! frame, and `page_folio` of that frame now finds its order-0 folio. On
//! arm64 a folded block (contpte) of the old folio stays folded: its
//! frames are still consecutive with identical attributes, so what the
//! TLB may cache is unchanged; the first change to part of it unfolds it
//! as any other (`pgtable/aarch64/contpte.rs`), and it is never refolded,
//! its frames being several folios now.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Order, PAGE_SIZE, Pfn, VirtAddr};
use crate::buddy::BuddyAllocator;
use crate::folio::{MAP_SATURATED, REF_SATURATED};
use crate::memmap::{NONE, PageFlags};
use crate::pgtable::{PageTable, PteFormat};
use crate::thp::{self, ThpPolicy};

/// Why [`BuddyAllocator::split_folio`] did not split. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// Not the head of an allocated block of order 1 or more, or the
    /// counts do not cover its pages.
    NotLarge,
    /// References or mappings beyond what the counts account for (a
    /// gather in flight, a kernel user, a mapping the scan could not
    /// see), or a saturated count: splitting could free a page in use.
    Busy,
}

/// What one [`deferred_split_scan`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitScan {
    /// Folios looked at.
    pub scanned: u64,
    /// Folios split (Linux `split`).
    pub split: u64,
    /// Folios that could not be split now and stay queued (Linux
    /// `split_failed`).
    pub failed: u64,
    /// Folios taken off the queue unsplit: every page is mapped again
    /// (a fork mapped the rest since), so there is nothing to free.
    pub dequeued: u64,
    /// Frames given back to the allocator.
    pub freed_pages: u64,
}

impl BuddyAllocator<'_> {
    /// Splits the allocated folio at `head` into order-0 folios, page `k`
    /// being mapped by `counts[k]` PTEs (Linux `split_folio` to order 0):
    /// each page keeps its anon-exclusive bit and gets the folio's flags
    /// and a refcount and mapcount of `counts[k]`; the pages with a count
    /// of 0 are freed. The folio leaves the deferred-split queue. Returns
    /// how many frames were freed.
    ///
    /// Refused, changing nothing, unless the folio's refcount and mapcount
    /// both equal the sum of `counts`: then the counts account for every
    /// holder, and a page with none is truly unused.
    pub fn split_folio(&mut self, head: Pfn, counts: &[u32]) -> Result<u64, SplitError> {
        let mm = self.memmap();
        let page = mm.get(head).ok_or(SplitError::NotLarge)?;
        let order = page.order();
        if !page.is_head() || order.get() == 0 || counts.len() as u64 != order.pages() {
            return Err(SplitError::NotLarge);
        }
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let (refs, maps) = (page.refcount().load(Relaxed), page.mapcount().load(Relaxed));
        if refs >= REF_SATURATED
            || maps >= MAP_SATURATED
            || u64::from(refs) != total
            || u64::from(maps) != total
        {
            return Err(SplitError::Busy);
        }
        let idx = mm.index(head);
        if page.flags().contains(PageFlags::DEFERRED) {
            self.deferred.del(mm, idx);
        }
        let folio_flags = page.flags().and(PageFlags::FOLIO_MASK);
        // Every page becomes an allocated order-0 head before any is freed,
        // so a free's merge never meets a half-made neighbour.
        for (k, &n) in counts.iter().enumerate() {
            let p = mm.at(idx + k as u32);
            let own = p.flags().and(PageFlags::PER_PAGE_MASK);
            p.set_order(Order::of(0));
            p.refcount().store(n, Relaxed);
            p.mapcount().store(n, Relaxed);
            p.store_flags(PageFlags::HEAD | folio_flags | own);
        }
        let mut freed = 0;
        for (k, _) in counts.iter().enumerate().filter(|(_, n)| **n == 0) {
            self.free_block(idx + k as u32, Order::of(0));
            freed += 1;
        }
        Ok(freed)
    }
}

/// Splits every queued folio that can be split now (Linux
/// `deferred_split_scan`, run by the kernel when a fault finds no memory
/// and on request): `tables` must be the page tables of every address
/// space that exists, so that the mapping counts are complete (a mapping
/// in a space left out makes the counts fall short of the mapcount, and
/// the folio is left alone). Folios whose every page is mapped again leave the queue
/// unsplit; folios that cannot be split now stay. `thp` counts `split`
/// and `split_failed` per size.
///
/// Its cost is queued folios x `tables` walks, all under the allocator's
/// lock: the kernel goes round the queue in bounded steps instead
/// ([`deferred_split_scan_some`]).
pub fn deferred_split_scan<F: PteFormat>(
    buddy: &mut BuddyAllocator<'_>,
    tables: &[&PageTable<F>],
    thp: &ThpPolicy,
) -> SplitScan {
    let mm = buddy.memmap();
    let mut scan = SplitScan::default();
    let mut idx = buddy.deferred.first();
    while idx != NONE {
        // The next one first: this one may leave the queue.
        let next = mm.at(idx + 1).next();
        scan_folio(buddy, tables, thp, idx, &mut scan);
        idx = next;
    }
    scan
}

/// [`deferred_split_scan`] of at most `max` folios from the head of the
/// queue: each one looked at is split, leaves the queue, or (if it
/// cannot be split now) goes to the back, so calls one after another go
/// round the queue, each bounded (`max` x `tables` walks), and the
/// caller may let other work run (and the tables change) between them.
/// As many calls' `scanned` as the queue was long have looked at each
/// folio that was queued at the start once (unless others took it off
/// meanwhile). The tables must again be every address space's, as they
/// are at the time of the call.
pub fn deferred_split_scan_some<F: PteFormat>(
    buddy: &mut BuddyAllocator<'_>,
    tables: &[&PageTable<F>],
    thp: &ThpPolicy,
    max: u64,
) -> SplitScan {
    let mut scan = SplitScan::default();
    while scan.scanned < max {
        let idx = buddy.deferred.first();
        if idx == NONE {
            break;
        }
        if scan_folio(buddy, tables, thp, idx, &mut scan) {
            let mm = buddy.memmap();
            let (head, base) = (mm.pfn_at(idx), mm.at(idx).private() * PAGE_SIZE);
            buddy.deferred.del(mm, idx);
            buddy.deferred.push(mm, head, VirtAddr::new(base));
        }
    }
    scan
}

/// Looks at the queued folio whose head is at memmap index `idx`:
/// dequeues it if every page is mapped again, else splits it if the
/// counts allow, counting what happened in `scan`. True if it is still
/// queued (not split now).
fn scan_folio<F: PteFormat>(
    buddy: &mut BuddyAllocator<'_>,
    tables: &[&PageTable<F>],
    thp: &ThpPolicy,
    idx: u32,
    scan: &mut SplitScan,
) -> bool {
    let mm = buddy.memmap();
    let mut counts = [0u32; 1 << thp::MAX_ORDER];
    let head = mm.pfn_at(idx);
    let page = mm.at(idx);
    let order = page.order();
    let base = VirtAddr::new(page.private() * PAGE_SIZE);
    scan.scanned += 1;
    let nr = order.pages() as usize;
    let outcome = if nr > counts.len() {
        Err(SplitError::NotLarge)
    } else {
        let counts = &mut counts[..nr];
        for t in tables {
            t.count_folio_mappings(head, base, counts);
        }
        if counts.iter().all(|&c| c != 0) {
            buddy.deferred.del(mm, idx);
            scan.dequeued += 1;
            return false;
        }
        buddy.split_folio(head, counts)
    };
    match outcome {
        Ok(freed) => {
            scan.split += 1;
            scan.freed_pages += freed;
            thp.count_split(order.get(), true);
            false
        }
        Err(_) => {
            scan.failed += 1;
            thp.count_split(order.get(), false);
            true
        }
    }
}
