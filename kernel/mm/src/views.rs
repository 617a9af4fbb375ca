//! Linux's views of memory, computed from Folium's page tables and memmap:
//! the entries of `/proc/<pid>/pagemap` ([`MemView::pagemap`]), of
//! `/proc/kpageflags` ([`kpageflags`]) and the sums of
//! `/proc/<pid>/smaps_rollup` ([`MemView::smaps_rollup`]), so that a program
//! that checks folio layout on Linux gets the same answer on Folium.
//!
//! Everything here only reads: page-table entries (single atomic loads)
//! and descriptors. The kernel turns the numbers into file contents
//! (`kernel/src/proc/views.rs`); the host tests check them against the
//! address-space operations that made the state.
//!
//! # The precise per-page mapcount
//!
//! Linux 6.12 sets pagemap's "exclusively mapped" bit, and splits smaps'
//! `Pss`/`Shared_*`/`Private_*`, by the number of page-table entries that
//! map one *page* (`folio_precise_page_mapcount`). Folium keeps one
//! mapcount per folio ([`FolioRef::mapcount`]), which for an order-0 folio
//! is that number. For a page of a large folio the answer comes from, in
//! order:
//! - the page's anon-exclusive bit: an exclusive page is mapped by one
//!   process, and a process maps a page at one place only, so once;
//! - otherwise a census: a folio's pages are only ever mapped at their
//!   natural place (a fault maps the folio aligned, fork copies at the same
//!   address, nothing moves pages; `split.rs` relies on the same fact), so
//!   page `k` is mapped by as many entries as there are tables whose entry
//!   for `base + k` maps it. [`MemView::all`] must hold every address
//!   space's table for this to be complete. The counts are computed once
//!   per folio and reused for its other pages ([`MapcountCache`]).
//!
//! After a fork both processes map every page twice over; after the child
//! writes one page (copy-on-write), the parent's original of that page is
//! mapped once again and reads as exclusive, exactly as on Linux.

mod kpageflags;
mod pagemap;
mod smaps;

pub use kpageflags::{PageState, kpageflags, page_state};
pub use pagemap::{
    PM_FILE, PM_MMAP_EXCLUSIVE, PM_PFN_MASK, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP, PM_UFFD_WP,
};
pub use smaps::{PSS_SHIFT, SmapsRollup};

use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use crate::folio::FolioRef;
use crate::memmap::Memmap;
use crate::pgtable::{PageTable, PteFormat};

/// What a view reads: one process's page table, every address space's
/// table (the census of shared large folios), the memmap, and which frame
/// is the shared zero page.
pub struct MemView<'a, F: PteFormat> {
    /// The descriptors.
    pub memmap: &'a Memmap,
    /// The shared zero page (Linux's `vm_normal_page` is `NULL` for it:
    /// present, but no folio of anybody's).
    pub zero_pfn: Pfn,
    /// The table of the process whose view this is.
    pub table: &'a PageTable<F>,
    /// Every live address space's table, `table` included.
    pub all: &'a [&'a PageTable<F>],
}

/// The per-page mapcounts of the last large folio looked at, so that the
/// census runs once per folio, not once per page.
#[derive(Default)]
pub struct MapcountCache {
    /// (head frame, base address) of the folio the counts are for.
    key: Option<(Pfn, VirtAddr)>,
    counts: Vec<u32>,
}

impl<F: PteFormat> MemView<'_, F> {
    /// How many page-table entries map the page at `pfn` of folio `f`,
    /// which the view's table maps at `va` (Linux
    /// `folio_precise_page_mapcount`; see the module doc).
    pub fn page_mapcount(
        &self,
        f: FolioRef<'_>,
        pfn: Pfn,
        va: VirtAddr,
        cache: &mut MapcountCache,
    ) -> u32 {
        if f.order().get() == 0 {
            return f.mapcount();
        }
        if f.page_anon_exclusive(pfn) {
            return 1;
        }
        let k = (pfn - f.pfn()) as usize;
        let base = va - k as u64 * PAGE_SIZE;
        let key = (f.pfn(), base);
        if cache.key != Some(key) {
            let nr = f.nr_pages() as usize;
            cache.counts.clear();
            cache.counts.resize(nr, 0);
            for t in self.all {
                t.count_folio_mappings(f.pfn(), base, &mut cache.counts);
            }
            cache.key = Some(key);
        }
        // Our own entry maps it, so at least 1 even if `all` fell short.
        cache.counts.get(k).copied().unwrap_or(1).max(1)
    }
}
