//! fork: a copy-on-write duplicate of an address space, one last-level
//! table at a time, a run of PTEs mapping one large folio copied as one
//! batch (Linux `dup_mmap`, `copy_pte_range`, `folio_pte_batch`).

use crate::addr::{Pfn, VirtAddr};
use crate::env::MmEnv;
use crate::folio::FolioRef;
use crate::mmu_gather::Gather;
use crate::pgtable::{KernelHalf, Level, PteFormat};
use crate::stats::{LocalHistogram, STATS};
use crate::vma::VmFlags;

use super::{AddressSpace, FaultError, FaultResult, entry_folio, hooks};

/// The longest batch that can start at an entry mapping `pfn` of folio
/// `f` with `room` entries allowed: up to the folio's end, computed before
/// any entry is read (so an adjacent folio is never joined); 1 for a small
/// folio. Fork's bound for [`PteCursor::copy_batch_wrprotect`], which
/// scans as it copies.
#[inline]
fn batch_limit(f: &FolioRef<'_>, pfn: Pfn, room: usize) -> usize {
    let left = f.pfn().as_u64() + f.nr_pages() - pfn.as_u64();
    (left as usize).min(room)
}

impl<F: PteFormat> AddressSpace<F> {
    /// A copy-on-write duplicate of this space (Linux `dup_mmap` +
    /// `copy_page_range`): same areas; every present page shared,
    /// write-protected in both, no longer exclusive. The parent's TLB is
    /// flushed once at the end (its PTEs were downgraded).
    pub fn fork(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        kernel_half: Option<&KernelHalf>,
    ) -> Result<Self, FaultError> {
        let mut child = AddressSpace::new(env, self.user_end, kernel_half)?;
        child.vmas = self.vmas.clone();
        child.brk = self.brk;
        // MADV_DONTFORK areas are not inherited (Linux skips VM_DONTCOPY
        // in dup_mmap): one at a time, no list built.
        let mut at = VirtAddr::new(0);
        loop {
            let next = child
                .vmas
                .overlapping(at, self.user_end)
                .find(|v| v.flags.contains(VmFlags::DONTCOPY))
                .map(|v| (v.start, v.end));
            let Some((s, e)) = next else { break };
            let _ = child.vmas.remove_range(s, e);
            at = e;
        }
        let mut downgraded = false;
        let mut result = Ok(());
        let span = Level::L2.size();
        let mut at = VirtAddr::new(0);
        // One area at a time, looked up afresh: no list of areas is built.
        'areas: loop {
            let Some((start, end, flags)) = self
                .vmas
                .overlapping(at, self.user_end)
                .next()
                .map(|v| (v.start, v.end, v.flags))
            else {
                break;
            };
            at = end;
            // Not inherited, or inherited empty (the child faults in
            // zeros): no page is copied (Linux's vma_needs_copy is false
            // for VM_WIPEONFORK).
            if flags.contains(VmFlags::DONTCOPY) || flags.contains(VmFlags::WIPEONFORK) {
                continue;
            }
            let mut from = start;
            while let Some(table) = self.pt.next_pte_table(from, end) {
                let (s, e) = (table.va.max(from), (table.va + span).min(end));
                if let Err(err) = self.copy_pte_range(&mut child, env, s, e, &mut downgraded) {
                    result = Err(err);
                    break 'areas;
                }
                from = e;
                // Between tables: both spaces hold whole tables' worth of
                // copies, the child is not published yet. A task being
                // killed gives up (its parent never sees the child).
                self.cond_resched(env, None);
                if env.fatal_signal_pending() {
                    result = Err(FaultError::OutOfMemory);
                    break 'areas;
                }
            }
        }
        if downgraded {
            // The parent's PTEs lost write: one flush of the whole space
            // (nothing is released, so the gather only flushes).
            let g = Gather::new_full(self.asid);
            g.finish(env);
        }
        if let Err(e) = result {
            child.teardown(env);
            return Err(e);
        }
        Ok(child)
    }

    /// Copies the present entries of `[s, e)` (inside one last-level
    /// table) into `child` (Linux `copy_pte_range`), a batch at a time:
    /// the folio gains a reference and a mapcount per entry and the pages
    /// stop being exclusive; writable entries are write-protected in both
    /// spaces (`downgraded` notes that the parent needs a flush). The zero
    /// page is shared without either. The child's table is allocated only
    /// if there is something to copy.
    fn copy_pte_range(
        &mut self,
        child: &mut Self,
        env: &mut (impl MmEnv + ?Sized),
        s: VirtAddr,
        e: VirtAddr,
        downgraded: &mut bool,
    ) -> FaultResult {
        let asid = self.asid;
        let Some(mut src) = self.pt.pte_cursor(s, e) else {
            return Ok(());
        };
        let Some(first) = (0..src.len()).find(|&i| F::pte_present(src.peek(i))) else {
            return Ok(());
        };
        let mut dst = child
            .pt
            .pte_cursor_alloc(s, e, env)
            .map_err(|_| FaultError::OutOfMemory)?;
        // Once per table: the per-entry copies rely on it.
        assert!(
            src.same_range(&dst),
            "fork: child cursor over another range"
        );
        // The switch caps a batch's length rather than choosing a path:
        // both modes then run the very same instructions per entry, and a
        // small folio (or the per-PTE mode) is a batch of one.
        let cap = if env.batching() { src.len() } else { 1 };
        let mm = env.memmap();
        // Made once per table: the batches only read the environment.
        let h = hooks(env, asid);
        let mut hist = LocalHistogram::default();
        let mut singles = 0;
        let mut copied = 0;
        let mut i = first;
        while i < src.len() {
            let raw = src.peek(i);
            if !F::pte_present(raw) {
                i += 1;
                continue;
            }
            let pfn = F::pte_pfn(raw);
            let folio = entry_folio(mm, self.zero, pfn);
            let max = folio
                .as_ref()
                .map_or(1, |f| batch_limit(f, pfn, (src.len() - i).min(cap)));
            // One pass finds the batch, write-protects it in the parent and
            // writes the child's entries (the first one, write-protected,
            // advanced page by page); the references follow at once.
            let (nr, writable) = if max == 1 {
                (1, usize::from(src.copy_one_wrprotect(&mut dst, i, raw, &h)))
            } else {
                let c = src.copy_batch_wrprotect(&mut dst, i, max, &h);
                (c.nr, c.writable)
            };
            if let Some(f) = folio {
                f.ref_add(nr as u32);
                f.add_mapcount(nr as u32);
                f.clear_pages_anon_exclusive(pfn, nr as u64);
                copied += nr as u64;
            }
            if nr == 1 {
                singles += 1;
            } else {
                hist.count(nr);
            }
            env.note_batch(true, nr);
            if writable > 0 {
                *downgraded = true;
            }
            i += nr;
        }
        *child.rss.get_mut() += copied;
        hist.count_singles(singles);
        hist.add_to(&STATS.fork_batches);
        Ok(())
    }
}
