//! `/proc/<pid>/smaps_rollup`: the sums Linux's `smaps_account` makes over
//! every mapped page of a process, and its text format.
//!
//! Each present page that maps a folio (the zero page does not count, as
//! Linux's `vm_normal_page` skips it) adds 4 KiB to `Rss`, to `Anonymous`
//! if its folio is anonymous, and to `Referenced` if its PTE or folio is
//! young; then, by its precise mapcount `n` (see the parent module), `4
//! KiB / n` to `Pss` (and `Pss_Anon` or `Pss_File`, and `Pss_Dirty` if the
//! PTE or folio is dirty), and 4 KiB to `Private_*` if `n` is 1 or to
//! `Shared_*` otherwise, `*_Dirty` or `*_Clean` as it is. `Pss` is kept in
//! fixed point with 12 fractional bits and shown in whole kB, rounding
//! down, as Linux does.
//!
//! # `AnonHugePages`
//!
//! Linux counts there only anonymous THPs mapped by a PMD. Folium maps
//! every folio with PTEs, a 2 MiB one with 512 of them. What a program
//! asks `AnonHugePages` is whether its memory got PMD-sized THPs, so
//! Folium counts 2 MiB for each order-9 anonymous folio that this process
//! maps whole: all 512 pages, each at its natural place in the aligned
//! 2 MiB it was faulted for. That is exactly when Linux would have it
//! PMD-mapped: Linux maps a fresh PMD-sized THP with a PMD and fork
//! copies the PMD (both processes count it, on both kernels); an
//! `munmap`, `mprotect` or `MADV_DONTNEED` of part of it, or a
//! copy-on-write of one page in this process, splits Linux's PMD into
//! PTEs and leaves Folium's folio no longer whole in this process (neither
//! counts it; the other process of a fork still maps it whole, and both
//! kernels still count it there).

use core::fmt::{self, Write};

use super::{MapcountCache, MemView};
use crate::addr::{PAGE_SIZE, VirtAddr};
use crate::pgtable::{ENTRIES, PageTable, Pte, PteFormat};
use crate::thp;

/// Fractional bits of the fixed-point `Pss` sums (Linux `PSS_SHIFT`).
pub const PSS_SHIFT: u32 = 12;

/// The sums of `smaps_rollup`, in bytes (`pss*` in fixed point, see
/// [`PSS_SHIFT`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmapsRollup {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`, fixed point.
    pub pss: u64,
    /// `Pss_Dirty`, fixed point.
    pub pss_dirty: u64,
    /// `Pss_Anon`, fixed point.
    pub pss_anon: u64,
    /// `Pss_File`, fixed point.
    pub pss_file: u64,
    /// `Shared_Clean`.
    pub shared_clean: u64,
    /// `Shared_Dirty`.
    pub shared_dirty: u64,
    /// `Private_Clean`.
    pub private_clean: u64,
    /// `Private_Dirty`.
    pub private_dirty: u64,
    /// `Referenced`.
    pub referenced: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `AnonHugePages`: whole order-9 anonymous folios (module doc).
    pub anon_huge: u64,
}

impl<F: PteFormat> MemView<'_, F> {
    /// The sums over every page mapped in `areas` (the process's areas,
    /// as `[start, end)` pairs).
    pub fn smaps_rollup(&self, areas: impl Iterator<Item = (VirtAddr, VirtAddr)>) -> SmapsRollup {
        let mut s = SmapsRollup::default();
        let mut cache = MapcountCache::default();
        for (start, end) in areas {
            let mut at = start;
            while let Some(t) = self.table.next_pte_table(at, end) {
                for (va, slot) in PageTable::<F>::table_slots(t, start, end) {
                    self.account(&mut s, va, self.table.pte(slot), &mut cache);
                }
                at = t.va + ENTRIES as u64 * PAGE_SIZE;
            }
        }
        s
    }

    fn account(&self, s: &mut SmapsRollup, va: VirtAddr, raw: Pte, cache: &mut MapcountCache) {
        if !F::pte_present(raw) {
            return;
        }
        let pfn = F::pte_pfn(raw);
        if pfn == self.zero_pfn {
            return;
        }
        let Some(f) = self.memmap.page_folio(pfn) else {
            return;
        };
        let anon = f.test_anon();
        s.rss += PAGE_SIZE;
        if anon {
            s.anonymous += PAGE_SIZE;
        }
        if F::pte_young(raw) || f.test_young() {
            s.referenced += PAGE_SIZE;
        }
        let n = self.page_mapcount(f, pfn, va, cache);
        let full = PAGE_SIZE << PSS_SHIFT;
        let pss = if n >= 2 { full / u64::from(n) } else { full };
        s.pss += pss;
        if anon {
            s.pss_anon += pss;
        } else {
            s.pss_file += pss;
        }
        let private = n < 2;
        if F::pte_dirty(raw) || f.test_dirty() {
            s.pss_dirty += pss;
            *if private {
                &mut s.private_dirty
            } else {
                &mut s.shared_dirty
            } += PAGE_SIZE;
        } else {
            *if private {
                &mut s.private_clean
            } else {
                &mut s.shared_clean
            } += PAGE_SIZE;
        }
        let pmd_order = thp::MAX_ORDER;
        if anon && pfn == f.pfn() && f.order().get() == pmd_order {
            let nr = f.nr_pages() as usize;
            let mut whole = 0;
            self.table.folio_mappings(pfn, va, nr, |_| whole += 1);
            if whole == nr {
                s.anon_huge += f.nr_pages() * PAGE_SIZE;
            }
        }
    }
}

impl SmapsRollup {
    /// Linux's text: the header line for `[first, end)` (the first area's
    /// start, the last one's end), then one `Name:  value kB` line per
    /// field, values right-aligned in 8 columns.
    pub fn write(&self, first: VirtAddr, end: VirtAddr, out: &mut impl Write) -> fmt::Result {
        let head = alloc::format!(
            "{:08x}-{:08x} ---p 00000000 00:00 0 ",
            first.as_u64(),
            end.as_u64()
        );
        // The header is padded to 72 columns, then one space and the name.
        writeln!(out, "{head:<72} [rollup]")?;
        let kb = |b: u64| b >> 10;
        let pss = |p: u64| p >> (PSS_SHIFT + 10);
        let lines: [(&str, u64); 22] = [
            ("Rss", kb(self.rss)),
            ("Pss", pss(self.pss)),
            ("Pss_Dirty", pss(self.pss_dirty)),
            ("Pss_Anon", pss(self.pss_anon)),
            ("Pss_File", pss(self.pss_file)),
            ("Pss_Shmem", 0),
            ("Shared_Clean", kb(self.shared_clean)),
            ("Shared_Dirty", kb(self.shared_dirty)),
            ("Private_Clean", kb(self.private_clean)),
            ("Private_Dirty", kb(self.private_dirty)),
            ("Referenced", kb(self.referenced)),
            ("Anonymous", kb(self.anonymous)),
            ("KSM", 0),
            ("LazyFree", 0),
            ("AnonHugePages", kb(self.anon_huge)),
            ("ShmemPmdMapped", 0),
            ("FilePmdMapped", 0),
            ("Shared_Hugetlb", 0),
            ("Private_Hugetlb", 0),
            ("Swap", 0),
            ("SwapPss", 0),
            ("Locked", 0),
        ];
        for (name, v) in lines {
            // Name and number fill 24 columns (`Private_Hugetlb:` leaves
            // one space, as Linux's narrower number does there).
            writeln!(out, "{:<16}{v:>8} kB", alloc::format!("{name}:"))?;
        }
        Ok(())
    }
}
