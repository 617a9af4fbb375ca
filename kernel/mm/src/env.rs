//! The environment an address space runs in: what the generic mm code
//! needs from the machine around it (frames, the memmap, the linear map,
//! the TLB, the mTHP policy). The kernel implements [`MmEnv`] over its
//! global allocator; host tests over a buddy allocator on an arena.

use alloc::vec::Vec;

use crate::addr::{Order, Pfn, PhysAddr, VirtAddr};
use crate::asid::AsidTag;
use crate::folio::Folio;
use crate::memmap::Memmap;
use crate::pgtable::{FoldEvent, FoldPolicy, TableAlloc};
use crate::phys::LinearMap;
use crate::thp::ThpPolicy;
use crate::tlb::{Asid, TlbOps};

/// What an address space needs from the machine around it: frames for
/// its page tables (the [`TableAlloc`] supertrait, an `unsafe` promise
/// that they are unused RAM, with the environment's fastest zeroing),
/// folios, the memmap, the linear map and the TLB. The kernel implements
/// it over its global allocator; host tests over a buddy allocator on an
/// arena.
pub trait MmEnv: TableAlloc {
    /// The descriptor array (folio metadata is updated without locks).
    fn memmap(&self) -> &Memmap;
    /// The linear map through which tables and pages are reached.
    fn linear(&self) -> LinearMap;
    /// A folio of `order`, refcount 1, contents undefined.
    fn alloc_folio(&mut self, order: Order) -> Option<Folio>;
    /// Ends `nr` references to a folio at once (`folio` stands for all of
    /// them), freeing the folio at zero.
    fn folio_put_refs(&mut self, folio: Folio, nr: u32);
    /// Ends one folio reference, freeing the folio at zero.
    fn folio_put(&mut self, folio: Folio) {
        self.folio_put_refs(folio, 1);
    }
    /// Ends the references of every `(folio, nr)` entry of `batch` and
    /// leaves it empty (Linux `folios_put_refs`, which a gather calls once
    /// per batch). The default puts them one by one; an environment may
    /// free those that reach zero under one lock of its allocator.
    fn folios_put_refs(&mut self, batch: &mut Vec<(Folio, u32)>) {
        for (f, nr) in batch.drain(..) {
            self.folio_put_refs(f, nr);
        }
    }
    /// Whether fork and zap handle runs of PTEs mapping one large folio as
    /// one batch (the default) or PTE by PTE (Linux before 6.9), for
    /// measuring one against the other in the same boot.
    fn batching(&self) -> bool {
        true
    }
    /// Sees every batch fork (`fork`) or zap (`!fork`) handles, of `nr`
    /// PTEs (tests count them exactly; the global [`STATS`](crate::stats::STATS) are shared).
    fn note_batch(&self, fork: bool, nr: usize) {
        let _ = (fork, nr);
    }
    /// How page-table formats that can fold runs of entries (arm64
    /// contpte) may use it: on by default.
    fn fold_policy(&self) -> FoldPolicy {
        FoldPolicy::ON
    }
    /// Counts `n` folding events (the global [`STATS`](crate::stats::STATS)
    /// by default).
    fn note_fold(&self, event: FoldEvent, n: u64) {
        crate::stats::STATS.note_fold(event, n);
    }
    /// Returns a table frame that nothing links any more.
    fn free_table(&mut self, table: PhysAddr);
    /// Returns every table frame of `tables` (nothing links them any
    /// more) and leaves it empty. The default frees them one by one; an
    /// environment may take its allocator's lock once for all of them.
    fn free_tables(&mut self, tables: &mut Vec<PhysAddr>) {
        for t in tables.drain(..) {
            self.free_table(t);
        }
    }
    /// TLB maintenance.
    fn tlb(&self) -> &dyn TlbOps;
    /// Folio references a [`Gather`](crate::mmu_gather::Gather) may hold before it must flush and
    /// free early ([`GATHER_BATCH`]; tests make it small).
    fn gather_batch(&self) -> usize {
        GATHER_BATCH
    }
    /// The mTHP policy anonymous faults follow.
    fn thp(&self) -> &ThpPolicy;
    /// Queues the large folio at `head`, whose first page is mapped at
    /// `base`, for deferred split
    /// ([`BuddyAllocator::deferred_split_folio`](crate::buddy::BuddyAllocator::deferred_split_folio)
    /// on the machine's allocator). True if it was not queued yet.
    fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool;
    /// The shared zero page: a frame of zeroes, never written and never
    /// freed, that read faults on untouched memory map read-only. Its
    /// mappings hold no reference and no mapcount (Linux's special PTE).
    fn zero_pfn(&self) -> Pfn;
    /// Makes the `nr` pages from `pfn`, which the kernel filled or the
    /// program wrote, visible to instruction fetches before they are
    /// mapped executable (Linux `__sync_icache_dcache`). arm64 cleans the
    /// data cache to the point of unification and invalidates the
    /// instruction cache; x86 keeps them coherent in hardware, so the
    /// default does nothing. The mm calls it once per folio, when the
    /// folio is first mapped executable after it was last written by the
    /// kernel ([`PageFlags::DCACHE_CLEAN`](crate::memmap::PageFlags::DCACHE_CLEAN)).
    fn sync_icache(&self, pfn: Pfn, nr: u64) {
        let _ = (pfn, nr);
    }
    /// Zeroes the anonymous folio `folio`, just allocated (the kernel
    /// overrides it with its fastest stores). Panics if `folio` is not
    /// marked anonymous: only user data may be zeroed through here.
    fn zero_folio(&mut self, folio: &Folio) {
        self.memmap().folio(folio).zero(self.linear());
    }
    /// A preemption point (Linux `cond_resched`), offered by long
    /// operations on the address space whose root is `root` between two
    /// page tables: the environment may let other tasks run. At that
    /// point no lock is held, the tables and folio counts are consistent
    /// (every entry either done or untouched, the references of cleared
    /// entries in a [`Gather`](crate::mmu_gather::Gather) not yet
    /// flushed) and nothing is freed that a table still links.
    ///
    /// `rss` is the space's resident pages now, for an environment that
    /// publishes them (the OOM killer's measure, which must not wait for
    /// the end of a long populate).
    ///
    /// If it switched away and back and the space was the one installed,
    /// it installs it again (`tag` is the space's ASID bookkeeping) and
    /// returns the ASID it now runs with: a generation rollover while it
    /// was away may have renumbered it, and later flushes must use the
    /// new number (entries cached under the old one died in the
    /// rollover's full flush). `None`: still the same ASID. The default
    /// never switches.
    fn cond_resched(&mut self, root: PhysAddr, tag: &mut AsidTag, rss: u64) -> Option<Asid> {
        let _ = (root, tag, rss);
        None
    }
    /// True if the task this work is done for is being killed (Linux
    /// `fatal_signal_pending`): work whose result it would never see
    /// (populating, copying for fork) may stop early. The default: never.
    fn fatal_signal_pending(&self) -> bool {
        false
    }
}

/// Folio references a [`Gather`](crate::mmu_gather::Gather) holds before it flushes and frees them
/// early. Linux chains batch pages up to about ten thousand of them
/// before a forced flush; Folium bounds the list at 64 Ki references
/// (512 KiB of kernel heap), so unmapping 1 GiB of small folios flushes
/// four times and anything up to 256 MiB once.
pub const GATHER_BATCH: usize = 1 << 16;
