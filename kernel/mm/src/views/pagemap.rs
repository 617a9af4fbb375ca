//! `/proc/<pid>/pagemap`: one 64-bit entry per virtual page, with the bits
//! Linux documents in `Documentation/admin-guide/mm/pagemap.rst`.
//!
//! | bits  | meaning                 | on Folium |
//! |-------|-------------------------|-----------|
//! | 0-54  | frame number if present | the PTE's frame |
//! | 55    | soft-dirty              | 0: Folium has no soft-dirty tracking (as Linux built without `CONFIG_MEM_SOFT_DIRTY`) |
//! | 56    | exclusively mapped      | the page's precise mapcount is 1 (Linux 6.12 with per-page mapcounts; see the parent module) |
//! | 57    | userfaultfd write-protected | 0: no userfaultfd |
//! | 61    | file page or shared anon | set for a present page whose folio is not anonymous; never for the zero page, which Linux shows as a bare present frame |
//! | 62    | swapped                 | 0: no swap |
//! | 63    | present                 | the PTE is valid (`PROT_NONE` pages included, as on Linux) |
//!
//! An unmapped page reads 0, as a hole or an untouched page does on
//! Linux without soft-dirty.

use super::{MapcountCache, MemView};
use crate::addr::{PAGE_SIZE, VirtAddr};
use crate::pgtable::{ENTRIES, Pte, PteFormat, PteSlot};

/// Bits 0-54: the page frame number of a present page.
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;
/// Bit 55: soft-dirty (never set on Folium).
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bit 56: the page is mapped by exactly one page-table entry.
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// Bit 57: userfaultfd write-protected (never set on Folium).
pub const PM_UFFD_WP: u64 = 1 << 57;
/// Bit 61: a file page or shared anonymous page.
pub const PM_FILE: u64 = 1 << 61;
/// Bit 62: swapped out (never set on Folium).
pub const PM_SWAP: u64 = 1 << 62;
/// Bit 63: present.
pub const PM_PRESENT: u64 = 1 << 63;

impl<F: PteFormat> MemView<'_, F> {
    /// Fills `out[i]` with the pagemap entry of virtual page number
    /// `first_vpn + i`. Reads each last-level table once per run of
    /// entries it holds; a missing table reads as 0 entries.
    pub fn pagemap(&self, first_vpn: u64, out: &mut [u64], cache: &mut MapcountCache) {
        let mut i = 0;
        while i < out.len() {
            let vpn = first_vpn + i as u64;
            let run = (ENTRIES - (vpn % ENTRIES as u64) as usize).min(out.len() - i);
            let va = VirtAddr::new(vpn.wrapping_mul(PAGE_SIZE));
            let slot = (vpn < (1 << 52)).then(|| self.table.pte_slot(va)).flatten();
            match slot {
                None => out[i..i + run].fill(0),
                Some(first) => {
                    for (j, e) in out[i..i + run].iter_mut().enumerate() {
                        let raw = self.table.pte(PteSlot {
                            table: first.table,
                            index: first.index + j,
                        });
                        *e = self.pagemap_entry(va + j as u64 * PAGE_SIZE, raw, cache);
                    }
                }
            }
            i += run;
        }
    }

    /// The pagemap entry of the page at `va`, whose last-level entry is
    /// `raw` (Linux `pte_to_pagemap_entry`).
    pub fn pagemap_entry(&self, va: VirtAddr, raw: Pte, cache: &mut MapcountCache) -> u64 {
        if !F::pte_present(raw) {
            return 0;
        }
        let pfn = F::pte_pfn(raw);
        let mut e = PM_PRESENT | (pfn.as_u64() & PM_PFN_MASK);
        if pfn == self.zero_pfn {
            return e;
        }
        let Some(f) = self.memmap.page_folio(pfn) else {
            return e;
        };
        if !f.test_anon() {
            e |= PM_FILE;
        }
        if self.page_mapcount(f, pfn, va, cache) == 1 {
            e |= PM_MMAP_EXCLUSIVE;
        }
        e
    }
}
