//! Protection changes: `mprotect` (PTE by PTE, through the gather) and the
//! `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE` advice the fault policy reads.

use crate::addr::VirtAddr;
use crate::env::MmEnv;
use crate::mmu_gather::Gather;
use crate::pgtable::{Level, Pte, PteFormat, PteKind};
use crate::vma::{Prot, VmFlags, VmaError};

use super::{AddressSpace, hooks, leaf, sync_exec, user_attrs};

impl<F: PteFormat> AddressSpace<F> {
    /// Changes the rights of `[start, end)` (Linux `mprotect`): PTEs lose
    /// write (and gain or lose exec) now. Write is granted here only to
    /// anon-exclusive pages, as Linux's `can_change_pte_writable` does for
    /// private memory; the others stay read-only until a write faults and
    /// takes the copy-on-write path. Each entry goes through the format's
    /// single-entry `set_ptes`, so arm64 unfolds a folded block the change
    /// cuts and refolds one it makes uniform again.
    pub fn protect(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
        prot: Prot,
    ) -> Result<(), VmaError> {
        self.vmas.protect(start, end, prot)?;
        let mut g = Gather::new(self.asid);
        let span = Level::L2.size();
        let mut at = start;
        while let Some(table) = self.pt.next_pte_table(at, end) {
            if at > start {
                // Between tables (each entry done or untouched).
                self.cond_resched(env, Some(&mut g));
            }
            let asid = self.asid;
            let (s, e) = (table.va.max(at), (table.va + span).min(end));
            at = e;
            let Some(mut cur) = self.pt.pte_cursor(s, e) else {
                continue;
            };
            for i in 0..cur.len() {
                // An empty entry has nothing to change: skip it with one
                // load (a sparse table is almost all empty entries).
                if cur.peek(i) == Pte::NONE {
                    continue;
                }
                let Some((pfn, attrs)) = leaf::<F>(cur.get(i)) else {
                    continue;
                };
                // The zero page is never made writable.
                let exclusive = || {
                    pfn != self.zero
                        && env
                            .memmap()
                            .page_folio(pfn)
                            .is_some_and(|f| f.page_anon_exclusive(pfn))
                };
                let writable = prot.write() && (attrs.writable || exclusive());
                let mut a = user_attrs(prot, writable);
                a.young = attrs.young;
                a.dirty = attrs.dirty;
                let raw = F::encode(
                    PteKind::Leaf {
                        pa: pfn.phys(),
                        attrs: a,
                    },
                    Level::L3,
                );
                if prot.exec() {
                    // Adding exec: what was written as data is run next.
                    sync_exec(env, pfn);
                }
                cur.set_ptes(i, raw, 1, &hooks(env, asid));
                g.note(cur.va(i));
            }
        }
        g.finish(env);
        Ok(())
    }

    /// Marks `[start, end)` for (or against) large folios: Linux
    /// `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE`, which the fault policy reads.
    /// The range must be mapped ([`VmaError::Hole`] otherwise).
    pub fn advise_hugepage(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        huge: bool,
    ) -> Result<(), VmaError> {
        let (set, clear) = if huge {
            (VmFlags::HUGEPAGE, VmFlags::NOHUGEPAGE)
        } else {
            (VmFlags::NOHUGEPAGE, VmFlags::HUGEPAGE)
        };
        self.advise_flags(start, end, set, clear)
    }

    /// Sets `set` and clears `clear` on the areas of `[start, end)`
    /// (splitting at the ends): `MADV_DONTFORK`/`DOFORK`,
    /// `MADV_WIPEONFORK`/`KEEPONFORK`, which [`AddressSpace::fork`]
    /// reads. The range must be mapped ([`VmaError::Hole`] otherwise).
    pub fn advise_flags(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        set: VmFlags,
        clear: VmFlags,
    ) -> Result<(), VmaError> {
        self.vmas
            .modify(start, end, |v| v.flags = v.flags.without(clear).with(set))
    }
}
