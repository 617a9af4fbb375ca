//! Per-CPU page lists (Linux's per-CPU pages, "pcp"): each CPU keeps a
//! few free blocks of each small order, so most allocations and frees
//! touch only its own list and take the buddy allocator's lock once per
//! batch instead of once per block.
//!
//! A list holds free blocks of one order, `0..PCP_ORDERS` (Linux keeps
//! orders up to `PAGE_ALLOC_COSTLY_ORDER` = 3 and the PMD order; Folium
//! keeps 0 to 4, which covers the 64 KiB folios arm64's contiguous bit
//! folds, and leaves the PMD order to the buddy lists). The lists are
//! threaded through the memmap (`next`/`prev` of each head, as the buddy
//! lists are), so they cost no memory; a block on one has its head marked
//! [`PageFlags::PCP`]: free, but invisible to buddy merging.
//!
//! - An allocation pops the most recently freed block (its lines may still
//!   be in this CPU's cache). An empty list is refilled with
//!   [`PcpConfig::batch`] pages of blocks from the buddy allocator, under
//!   its lock once.
//! - A free pushes the block (after the same checks a buddy free makes:
//!   [`crate::buddy::check_free`], [`crate::buddy::check_frozen`]). When
//!   the CPU's lists hold more than [`PcpConfig::high`] pages, the oldest
//!   blocks go back to the buddy lists, under its lock once, down to
//!   `high - batch`.
//! - A folio on the deferred-split queue, and any block of a higher order,
//!   is freed to the buddy lists directly.
//!
//! Blocks on these lists are free memory: the kernel counts them in its
//! free pages, and the mm audit counts `PCP` heads as free and checks them
//! against the lists' totals. They can keep a larger block from merging,
//! so an allocation the buddy lists cannot satisfy drains every CPU's
//! lists ([`PcpLists::drain_to`] with 0) and tries again before it fails.
//!
//! Locking is the caller's: the kernel keeps one [`PcpLists`] per CPU
//! behind its own lock, taken before the buddy allocator's when both are
//! needed (refill, drain), never after.

use crate::addr::{Order, Pfn};
use crate::buddy::{BuddyAllocator, FreeBlock, init_head, scrub};
use crate::memmap::{Memmap, NONE, PageFlags};

/// Orders kept on per-CPU lists: `0..PCP_ORDERS`.
pub const PCP_ORDERS: usize = 5;

/// How many pages a CPU's lists move and hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpConfig {
    /// Pages a refill takes from the buddy lists, and a drain gives back
    /// beyond `high` (at least one block of any kept order is moved).
    pub batch: u32,
    /// Pages a CPU's lists may hold, all orders together, before a free
    /// drains them.
    pub high: u32,
}

impl PcpConfig {
    /// The sizes for `managed` pages shared by `cpus` CPUs, in the spirit
    /// of Linux's `zone_batchsize`/`zone_highsize`: a batch of about a
    /// thousandth of memory, at most 64 pages (256 KiB), and a high mark
    /// of an eighth of memory split among the CPUs, between 2 and 16
    /// batches. So with 8 CPUs and 128 MiB, a free drains a CPU's lists
    /// once they hold more than 2 MiB, and all of them together stay near
    /// an eighth of memory (a refill may take a list a batch past `high`:
    /// only frees drain).
    pub fn for_memory(managed: u64, cpus: usize) -> Self {
        let batch = (managed / 1024).clamp(1, 64) as u32;
        let share = managed / 8 / cpus.max(1) as u64;
        let high = share.clamp(u64::from(2 * batch), u64::from(16 * batch)) as u32;
        Self { batch, high }
    }

    /// Blocks of `order` a refill takes.
    pub fn refill_blocks(&self, order: Order) -> u32 {
        (self.batch >> order.get()).max(1)
    }
}

/// One CPU's lists: a doubly linked list per order, newest at the head.
#[derive(Debug)]
pub struct PcpLists {
    head: [u32; PCP_ORDERS],
    tail: [u32; PCP_ORDERS],
    count: [u32; PCP_ORDERS],
    pages: u64,
}

impl Default for PcpLists {
    fn default() -> Self {
        Self::new()
    }
}

impl PcpLists {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            head: [NONE; PCP_ORDERS],
            tail: [NONE; PCP_ORDERS],
            count: [0; PCP_ORDERS],
            pages: 0,
        }
    }

    /// True if blocks of `order` are kept on per-CPU lists.
    #[inline]
    pub fn covers(order: Order) -> bool {
        order.index() < PCP_ORDERS
    }

    /// Pages on these lists, all orders.
    #[inline]
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Blocks on the list of `order` (0 for an order not kept).
    pub fn count(&self, order: Order) -> u32 {
        self.count.get(order.index()).copied().unwrap_or(0)
    }

    /// Takes the newest block of `order` and marks it a fresh allocated
    /// head (refcount 1, mapcount 0), as [`BuddyAllocator::alloc`] does.
    /// `None` if the list is empty (or `order` is not kept).
    pub fn alloc(&mut self, memmap: &Memmap, order: Order) -> Option<Pfn> {
        let k = order.index();
        if k >= PCP_ORDERS || self.head[k] == NONE {
            return None;
        }
        let idx = self.head[k];
        self.unlink(memmap, idx, k);
        init_head(memmap.at(idx), order);
        Some(memmap.pfn_at(idx))
    }

    /// Moves up to a batch of blocks of `order` from `buddy` onto the
    /// list (fewer if it runs short). Returns the pages moved.
    pub fn refill(&mut self, buddy: &mut BuddyAllocator<'_>, order: Order, cfg: PcpConfig) -> u64 {
        let k = order.index();
        if k >= PCP_ORDERS {
            return 0;
        }
        let mut moved = 0;
        for _ in 0..cfg.refill_blocks(order) {
            let Some(idx) = buddy.take(order) else { break };
            // Pushed at the tail: the older end, so a refill does not
            // bury blocks freed on this CPU moments ago.
            self.link_tail(buddy.memmap(), idx, k);
            moved += order.pages();
        }
        moved
    }

    /// Puts a checked block on its list. Hands it back if the list does
    /// not keep it: an order above the kept ones, or a folio on the
    /// deferred-split queue (whose queue only the buddy allocator's lock
    /// guards).
    ///
    /// Panics if the block belongs to another memmap than `memmap`.
    pub fn free<'m>(&mut self, memmap: &Memmap, block: FreeBlock<'m>) -> Result<(), FreeBlock<'m>> {
        assert!(
            core::ptr::eq(block.memmap(), memmap),
            "freeing a block of another memmap"
        );
        let (order, k) = (block.order(), block.order().index());
        let idx = memmap.index(block.pfn());
        // DEFERRED is read without the queue's lock (the buddy
        // allocator's). That holds because nothing queues a folio whose
        // last reference is gone: the zap that queues one still holds a
        // reference through its gather, and the split scan works with the
        // other CPUs stopped, never between a last put and this free.
        if k >= PCP_ORDERS || memmap.at(idx).flags().contains(PageFlags::DEFERRED) {
            return Err(block);
        }
        scrub(memmap, idx, order);
        self.link_head(memmap, idx, k);
        Ok(())
    }

    /// Gives the oldest blocks back to `buddy` until at most `target`
    /// pages remain (0: all of them), taking from the fullest list first.
    /// Returns the pages given back.
    pub fn drain_to(&mut self, buddy: &mut BuddyAllocator<'_>, target: u64) -> u64 {
        let memmap = buddy.memmap();
        let mut given = 0;
        while self.pages > target {
            // The list holding the most pages.
            let k = (0..PCP_ORDERS)
                .max_by_key(|&k| u64::from(self.count[k]) << k)
                .unwrap_or(0);
            let idx = self.tail[k];
            if idx == NONE {
                break;
            }
            self.unlink(memmap, idx, k);
            buddy.free_block(idx, Order::of(k as u8));
            given += 1u64 << k;
        }
        given
    }

    /// Every block on the lists, order by order, newest first (for checks).
    pub fn blocks<'a>(&'a self, memmap: &'a Memmap) -> impl Iterator<Item = (Pfn, Order)> + 'a {
        (0..PCP_ORDERS).flat_map(move |k| {
            let mut idx = self.head[k];
            core::iter::from_fn(move || {
                if idx == NONE {
                    return None;
                }
                let at = idx;
                idx = memmap.at(at).next();
                Some((memmap.pfn_at(at), Order::of(k as u8)))
            })
        })
    }

    fn mark(memmap: &Memmap, idx: u32, k: usize) {
        let page = memmap.at(idx);
        page.set_order(Order::of(k as u8));
        page.store_flags(PageFlags::PCP);
    }

    fn link_head(&mut self, memmap: &Memmap, idx: u32, k: usize) {
        Self::mark(memmap, idx, k);
        let page = memmap.at(idx);
        let old = self.head[k];
        page.set_prev(NONE);
        page.set_next(old);
        if old == NONE {
            self.tail[k] = idx;
        } else {
            memmap.at(old).set_prev(idx);
        }
        self.head[k] = idx;
        self.count[k] += 1;
        self.pages += 1 << k;
    }

    fn link_tail(&mut self, memmap: &Memmap, idx: u32, k: usize) {
        Self::mark(memmap, idx, k);
        let page = memmap.at(idx);
        let old = self.tail[k];
        page.set_next(NONE);
        page.set_prev(old);
        if old == NONE {
            self.head[k] = idx;
        } else {
            memmap.at(old).set_next(idx);
        }
        self.tail[k] = idx;
        self.count[k] += 1;
        self.pages += 1 << k;
    }

    /// Unlinks the block at `idx` from list `k`; its head is left with no
    /// flags, owned by the caller.
    fn unlink(&mut self, memmap: &Memmap, idx: u32, k: usize) {
        let page = memmap.at(idx);
        // A list corrupted by a stray write would hand out a frame that is
        // in use: checked in every build (one flags read).
        assert!(
            page.is_pcp() && page.order().index() == k,
            "per-CPU list {k} holds {:?} in state {page:?}",
            memmap.pfn_at(idx)
        );
        let (prev, next) = (page.prev(), page.next());
        if prev == NONE {
            self.head[k] = next;
        } else {
            memmap.at(prev).set_next(next);
        }
        if next == NONE {
            self.tail[k] = prev;
        } else {
            memmap.at(next).set_prev(prev);
        }
        page.set_next(NONE);
        page.set_prev(NONE);
        page.store_flags(PageFlags::EMPTY);
        self.count[k] -= 1;
        self.pages -= 1 << k;
    }
}

#[cfg(test)]
mod tests;
