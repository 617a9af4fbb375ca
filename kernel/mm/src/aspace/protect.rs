//! Protection changes: `mprotect` (PTE by PTE, through the gather) and the
//! `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE` advice the fault policy reads.

use crate::addr::VirtAddr;
use crate::env::MmEnv;
use crate::mmu_gather::Gather;
use crate::pgtable::{Level, PageTable, PteFormat, PteKind};
use crate::vma::{Prot, VmFlags, VmaError};

use super::{AddressSpace, leaf, user_attrs};

impl<F: PteFormat> AddressSpace<F> {
    /// Changes the rights of `[start, end)` (Linux `mprotect`): PTEs lose
    /// write (and gain or lose exec) now; write is never granted here, the
    /// next write faults and takes the copy-on-write path, which reuses
    /// exclusive pages.
    pub fn protect(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
        prot: Prot,
    ) -> Result<(), VmaError> {
        self.vmas.protect(start, end, prot)?;
        let mut g = Gather::new(self.asid);
        let slots = self
            .pt
            .pte_tables(start, end)
            .into_iter()
            .flat_map(|(tva, t)| PageTable::<F>::table_slots(tva, t, start, end));
        for (va, slot) in slots {
            let Some((pfn, attrs)) = leaf::<F>(self.pt.pte(slot)) else {
                continue;
            };
            let writable = attrs.writable && prot.write();
            let mut a = user_attrs(prot, writable);
            a.young = attrs.young;
            a.dirty = attrs.dirty;
            self.pt.set_pte(
                slot,
                F::encode(
                    PteKind::Leaf {
                        pa: pfn.phys(),
                        attrs: a,
                    },
                    Level::L3,
                ),
            );
            g.note(va);
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
        self.vmas
            .modify(start, end, |v| v.flags = v.flags.without(clear).with(set))
    }
}
