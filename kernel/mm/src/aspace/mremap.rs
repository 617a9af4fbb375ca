//! mremap's move: the entries of one range moved to another place in the
//! same address space (Linux `move_page_tables`), entry by entry. A folio
//! is never split or copied: its pages keep their references, mapcounts
//! and anon-exclusive state, only the addresses that map them change, so
//! a large folio stays one folio (mapped at an unaligned address if the
//! move was not by a multiple of its size, as on Linux). The caller moves
//! the areas.

use crate::addr::{PAGE_SIZE, VirtAddr};
use crate::env::MmEnv;
use crate::mmu_gather::Gather;
use crate::pgtable::{Level, Pte, PteFormat};

use super::{AddressSpace, FaultError, hooks};

/// Entries moved per step: the cleared entries wait in a buffer of this
/// many on the stack between the source and the destination table.
const CHUNK: usize = 64;

impl<F: PteFormat> AddressSpace<F> {
    /// Moves every present entry of `[from, from + len)` to the same
    /// offset in `[to, to + len)` (page aligned, not overlapping, nothing
    /// mapped at `to`). The destination's tables are allocated first, so
    /// running out of memory fails before anything moved (the tables made
    /// so far stay, empty, until the range is unmapped). One TLB flush of
    /// the whole space at the end, when something moved.
    pub fn move_ptes(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        from: VirtAddr,
        to: VirtAddr,
        len: u64,
    ) -> Result<(), FaultError> {
        let span = Level::L2.size();
        let end = to + len;
        let mut at = to;
        while at < end {
            let e = (at.align_down(span) + span).min(end);
            self.pt
                .pte_cursor_alloc(at, e, env)
                .map_err(|_| FaultError::OutOfMemory)?;
            at = e;
        }
        let asid = self.asid;
        let mut moved = false;
        let mut off = 0;
        while off < len {
            let (s, d) = (from + off, to + off);
            // Up to CHUNK pages, inside one source and one destination
            // table.
            let room = |va: VirtAddr| (va.align_down(span) + span - va) / PAGE_SIZE;
            let n = (CHUNK as u64)
                .min((len - off) / PAGE_SIZE)
                .min(room(s))
                .min(room(d)) as usize;
            let mut buf = [Pte::NONE; CHUNK];
            let mut any = false;
            if let Some(mut src) = self.pt.pte_cursor(s, s + n as u64 * PAGE_SIZE) {
                let h = hooks(env, asid);
                for (i, slot) in buf.iter_mut().enumerate().take(src.len()) {
                    if F::pte_present(src.peek(i)) {
                        *slot = src.get_and_clear_ptes(i, 1, &h).first;
                        any = true;
                    }
                }
            }
            if any {
                // The tables exist (allocated above): this allocates
                // nothing.
                let mut dst = self
                    .pt
                    .pte_cursor_alloc(d, d + n as u64 * PAGE_SIZE, env)
                    .map_err(|_| FaultError::OutOfMemory)?;
                let h = hooks(env, asid);
                for (i, raw) in buf.iter().enumerate().take(n) {
                    if F::pte_present(*raw) {
                        dst.set_ptes(i, *raw, 1, &h);
                    }
                }
                moved = true;
            }
            off += n as u64 * PAGE_SIZE;
        }
        if moved {
            Gather::new_full(asid).finish(env);
        }
        Ok(())
    }
}
