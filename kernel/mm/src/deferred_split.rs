//! The deferred-split queue: large folios an unmap left partly mapped,
//! waiting for [`deferred_split_scan`](crate::split::deferred_split_scan)
//! (Linux's `deferred_split_queue`; when a folio is queued and how it is
//! split: `split.rs`).
//!
//! Intrusive and owned by the
//! [`BuddyAllocator`](crate::buddy::BuddyAllocator) (in the kernel, under
//! its lock): the head carries [`PageFlags::DEFERRED`] and, in its
//! `private` word, the virtual page number of where the folio's first page
//! is mapped; the links live in the second page's free-list fields, unused
//! while the block is allocated. Queueing, unqueueing and freeing a queued
//! folio are O(1), and the allocator's free unqueues, so nothing on the
//! queue is ever free. The queue needs the memmap only, not the allocator.

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use crate::memmap::{Memmap, NONE, PageFlags};

/// The deferred-split queue's ends and length (the links are in the
/// memmap).
#[derive(Debug)]
pub(crate) struct DeferredQueue {
    /// Memmap index of the oldest queued folio's head, or [`NONE`].
    first: u32,
    /// Memmap index of the newest, or [`NONE`].
    last: u32,
    len: u64,
}

impl DeferredQueue {
    pub(crate) const fn new() -> DeferredQueue {
        DeferredQueue {
            first: NONE,
            last: NONE,
            len: 0,
        }
    }

    /// Queues the allocated folio at `head` of `mm`, whose first page is
    /// mapped at `base` (Linux `deferred_split_folio`). False if it is
    /// already queued or is not a large allocated folio.
    pub(crate) fn push(&mut self, mm: &Memmap, head: Pfn, base: VirtAddr) -> bool {
        let Some(page) = mm.get(head) else {
            return false;
        };
        let flags = page.flags();
        if !flags.contains(PageFlags::HEAD)
            || flags.contains(PageFlags::DEFERRED)
            || page.order().get() == 0
        {
            return false;
        }
        let idx = mm.index(head);
        page.set_private(base.as_u64() / PAGE_SIZE);
        page.set_flags(PageFlags::DEFERRED);
        let link = mm.at(idx + 1);
        link.set_prev(self.last);
        link.set_next(NONE);
        if self.last == NONE {
            self.first = idx;
        } else {
            mm.at(self.last + 1).set_next(idx);
        }
        self.last = idx;
        self.len += 1;
        true
    }

    /// Takes the queued folio whose head is at memmap index `idx` off the
    /// queue (Linux `folio_unqueue_deferred_split`).
    pub(crate) fn del(&mut self, mm: &Memmap, idx: u32) {
        let head = mm.at(idx);
        debug_assert!(head.flags().contains(PageFlags::DEFERRED));
        let link = mm.at(idx + 1);
        let (prev, next) = (link.prev(), link.next());
        if prev == NONE {
            self.first = next;
        } else {
            mm.at(prev + 1).set_next(next);
        }
        if next == NONE {
            self.last = prev;
        } else {
            mm.at(next + 1).set_prev(prev);
        }
        link.set_next(NONE);
        link.set_prev(NONE);
        head.clear_flags(PageFlags::DEFERRED);
        self.len -= 1;
    }

    /// Folios queued.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Memmap index of the oldest queued head, or [`NONE`]; the next one
    /// is in the link of the page after it.
    pub(crate) fn first(&self) -> u32 {
        self.first
    }

    /// The queued folios, oldest first: (head, where its first page is
    /// mapped).
    pub(crate) fn iter<'m>(&self, mm: &'m Memmap) -> impl Iterator<Item = (Pfn, VirtAddr)> + 'm {
        let mut idx = self.first;
        core::iter::from_fn(move || {
            if idx == NONE {
                return None;
            }
            let at = idx;
            idx = mm.at(at + 1).next();
            Some((
                mm.pfn_at(at),
                VirtAddr::new(mm.at(at).private() * PAGE_SIZE),
            ))
        })
    }
}
