//! Faults: demand-zero anonymous pages in large folios (mTHP order
//! choice), the shared zero page, spurious faults, and copy-on-write of
//! large folios page by page (Linux `handle_mm_fault`, `do_anonymous_page`,
//! `do_wp_page`).

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Order, PAGE_SIZE, Pfn, VirtAddr};
use crate::env::MmEnv;
use crate::mmu_gather::Gather;
use crate::pgtable::{Level, MapError, PteCursor, PteFormat};
use crate::stats::STATS;
use crate::thp;
use crate::tlb::Asid;
use crate::vma::{Prot, VmFlags, Vma, VmaKind};

use super::{Access, AddressSpace, FaultError, FaultResult, hooks, sync_exec, user_pte};

/// Invalidates one page's translation (a spurious or permission fault's
/// stale entry), counted in [`STATS`].
fn flush_page(env: &(impl MmEnv + ?Sized), asid: Asid, va: VirtAddr) {
    STATS.flush_page.fetch_add(1, Relaxed);
    env.tlb().flush_page(asid, va);
}

impl<F: PteFormat> AddressSpace<F> {
    /// Resolves a fault at `va` for `access` (Linux `handle_mm_fault` for
    /// anonymous private memory): a missing page is allocated zeroed (a
    /// large folio where the mTHP policy allows; the shared zero page for a
    /// read); a write to a write-protected page of a writable area is
    /// copy-on-write. The exclusive side's way in: the same fault as
    /// [`AddressSpace::handle_fault_shared`], with the space's own ASID.
    pub fn handle_fault(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        va: VirtAddr,
        access: Access,
    ) -> FaultResult {
        let asid = self.asid;
        self.handle_fault_shared(env, va, access, asid)
    }

    /// [`AddressSpace::handle_fault`] through a shared borrow: any number
    /// may run at once on one space (threads faulting under the read side
    /// of their address-space lock, as Linux's take `mmap_lock` for read),
    /// each with an environment of its own. The areas do not change
    /// meanwhile (only `&mut` changes them); the tables do, each under
    /// its own lock ([`PageTable::lock_pte`](crate::pgtable::PageTable::lock_pte)):
    /// a fault looks at its entries and changes them under it, but allocates,
    /// zeroes or copies its new folio without it, then looks again before
    /// mapping it. If another fault mapped the range in between, the new
    /// folio goes back and the fault looks again, finding the other's
    /// page ([`STATS`]`.fault_retries` counts these): when it returns
    /// `Ok`, the access it was made for succeeds.
    ///
    /// `asid` is the number the space runs with on the caller's CPU
    /// (the exclusive side's `self.asid` is not the shared side's to set).
    pub fn handle_fault_shared(
        &self,
        env: &mut (impl MmEnv + ?Sized),
        va: VirtAddr,
        access: Access,
        asid: Asid,
    ) -> FaultResult {
        let vma = *self.vmas.find(va).ok_or(FaultError::Unmapped)?;
        if !access.allowed_by(vma.prot) {
            return Err(FaultError::Protection);
        }
        self.fault_page(
            env,
            asid,
            &vma,
            va.align_down(PAGE_SIZE),
            access == Access::Write,
            false,
        )
    }

    /// Makes every page of `[start, end)` present as a fault for `access`
    /// would (Linux `populate_vma_page_range` for `MAP_POPULATE`), skipping
    /// pages already present with the rights `access` needs, so a large
    /// folio is faulted once, not once per page. Stops at the first error.
    pub fn populate(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
        access: Access,
    ) -> FaultResult {
        let mut va = start.align_down(PAGE_SIZE);
        while va < end {
            let done = self.translate(va).is_some_and(|(pfn, a)| {
                access != Access::Write || (a.writable && pfn != env.zero_pfn())
            });
            if !done {
                self.handle_fault(env, va, access)?;
            }
            va = va + PAGE_SIZE;
            if va.is_aligned(Level::L2.size()) {
                // Between tables (every fault so far complete). A task
                // being killed stops: the pages not populated would
                // fault in later, and it will never touch them.
                self.cond_resched(env, None);
                if env.fatal_signal_pending() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Makes the page at `va` present under `vma`'s rights. `write`: a
    /// store (the area allows it), so the page must end up private and
    /// writable. `force`: the kernel writes the page's contents on the
    /// program's behalf (loading), so it must end up private, mapped with
    /// the area's own rights.
    pub(super) fn fault_page(
        &self,
        env: &mut (impl MmEnv + ?Sized),
        asid: Asid,
        vma: &Vma,
        va: VirtAddr,
        write: bool,
        force: bool,
    ) -> FaultResult {
        // Each lost race means another fault changed the entry: looking
        // again finds it further on (mapped, or the zero page a write
        // then replaces), so the loop ends unless faults keep racing.
        while !self.fault_once(env, asid, vma, va, write, force)? {}
        Ok(())
    }

    /// One attempt of [`AddressSpace::fault_page`]: `Ok(false)` if it
    /// lost a race with another fault of the space (counted in
    /// [`STATS`]`.fault_retries`) and must look again.
    fn fault_once(
        &self,
        env: &mut (impl MmEnv + ?Sized),
        asid: Asid,
        vma: &Vma,
        va: VirtAddr,
        write: bool,
        force: bool,
    ) -> Result<bool, FaultError> {
        let mut ptl = self.pt.lock_pte(va, env).map_err(|e| match e {
            MapError::OutOfMemory => FaultError::OutOfMemory,
            _ => FaultError::Unmapped,
        })?;
        let mut cur = ptl.cursor(va, va + PAGE_SIZE);
        let raw = cur.get(0);
        if !F::pte_present(raw) {
            if write || force {
                drop(ptl);
                return self.do_anonymous(env, asid, vma, va, write);
            }
            // A read of untouched anonymous memory: the shared zero page,
            // read only, holding no reference (Linux's special zero-page
            // PTE). The first write replaces it with a private page.
            if vma.prot.exec() {
                sync_exec(env, env.zero_pfn());
            }
            let zero = user_pte::<F>(env.zero_pfn(), vma.prot, false);
            cur.set_ptes(0, zero, 1, &hooks(env, asid));
            return Ok(true);
        }
        let pfn = F::pte_pfn(raw);
        if !write && !force {
            // Present, and the area allows the access: either the entry is
            // old and the CPU does not manage the access flag (arm64
            // without FEAT_HAFDBS raises an access-flag fault), or a stale
            // TLB entry faulted (Linux's spurious fault). An old entry is
            // made young (Linux `ptep_set_access_flags`; through the
            // format's `set_ptes`, so a folded block takes it on all its
            // entries), or the access would fault again forever. The
            // entry's own flag decides, not `raw`'s, which a folded block
            // gathers over its 16 entries. x86 sets A itself, so there
            // this only flushes.
            if !F::pte_young(cur.peek(0)) {
                STATS.young_fixups.fetch_add(1, Relaxed);
                cur.set_ptes(0, F::pte_mkyoung(raw), 1, &hooks(env, asid));
            }
            flush_page(env, asid, va);
            return Ok(true);
        }
        if pfn == env.zero_pfn() {
            drop(ptl);
            return self.replace_page(env, asid, va, None, vma.prot, write);
        }
        if F::pte_writable(raw) {
            if write {
                // Writable, so the store may have faulted only to record
                // dirt (arm64 without hardware dirty tracking) or on a
                // stale entry: mark it young and dirty (Linux
                // `ptep_set_access_flags`; a folded block takes the state
                // on all its entries, so `raw`, gathered over the block,
                // is not the test).
                let h = hooks(env, asid);
                cur.set_ptes(0, F::pte_mkdirty(F::pte_mkyoung(raw)), 1, &h);
            }
            flush_page(env, asid, va);
            return Ok(true);
        }
        // A store (or a forced kernel write) to a write-protected page:
        // reuse it if nobody else can see it, else copy (Linux
        // `do_wp_page`).
        //
        // Reuse follows Linux: an anon-exclusive page is reused at once;
        // any other page when its folio's every mapping is one of this
        // space's PTEs and no reference is held beyond them (Linux 6.13's
        // rule for large folios, the `refcount == 1` test for small
        // ones). The page becomes exclusive; the folio's other pages keep
        // their state.
        let mm = env.memmap();
        let f = mm.page_folio(pfn).ok_or(FaultError::Unmapped)?;
        let reuse = if f.page_anon_exclusive(pfn) {
            true
        } else if self.maps_all_of(&f, va, pfn) {
            f.set_page_anon_exclusive(pfn);
            true
        } else {
            false
        };
        if !reuse {
            // The copy is made without the lock: a reference keeps the
            // page from being freed meanwhile (by another fault's copy
            // of it), as Linux's `folio_get` before `wp_page_copy`.
            let held = f.get();
            drop(ptl);
            let r = self.replace_page(env, asid, va, Some(pfn), vma.prot, write);
            env.folio_put(held);
            return r;
        }
        if write {
            // Only permission is added: no flush (Linux neither). A stale
            // read-only entry faults once more and the spurious-fault
            // path flushes it.
            cur.set_ptes(0, user_pte::<F>(pfn, vma.prot, true), 1, &hooks(env, asid));
        }
        Ok(true)
    }

    /// A missing page that must be private (Linux `do_anonymous_page` with
    /// `alloc_anon_folio`): the largest order the policy allows whose
    /// naturally aligned range lies inside the area and has no populated
    /// entry, falling back order by order to 0, also when an allocation
    /// fails; zeroed; every page mapped by one `set_ptes`. The orders are
    /// chosen under the lock, the folio allocated and zeroed without it,
    /// and mapped under it again only if its range is still empty.
    fn do_anonymous(
        &self,
        env: &mut (impl MmEnv + ?Sized),
        asid: Asid,
        vma: &Vma,
        va: VirtAddr,
        write: bool,
    ) -> Result<bool, FaultError> {
        let span = Level::L2.size();
        let base = va.align_down(span);
        let index = |a: VirtAddr| ((a - base) / PAGE_SIZE) as usize;
        // Linux `pte_range_none`: any populated entry (the zero page
        // included) rules an order out; it is not a fallback.
        let range_none = |cur: &PteCursor<'_, F>, order: u8| {
            let first = index(va.align_down(PAGE_SIZE << order));
            (first..first + (1usize << order)).all(|i| cur.peek(i).is_none())
        };
        let table_lock = |env: &mut _| {
            self.pt
                .lock_pte(base, env)
                .map_err(|_| FaultError::OutOfMemory)
        };
        let candidates = {
            // The table exists (`fault_page` locked it, and a shared
            // borrow frees none): a cursor over all of it sees every
            // candidate range.
            let mut ptl = table_lock(env)?;
            let cur = ptl.cursor(base, base + span);
            let mut orders = self.fault_orders(env, vma, va);
            for order in 0..=thp::MAX_ORDER {
                if orders & (1 << order) != 0 && !range_none(&cur, order) {
                    orders &= !(1 << order);
                }
            }
            orders
        };
        if candidates & 1 == 0 {
            // Another fault mapped the page since `fault_page` looked.
            STATS.fault_retries.fetch_add(1, Relaxed);
            return Ok(false);
        }
        let mut got = None;
        for order in (0..=thp::MAX_ORDER).rev() {
            if candidates & (1 << order) == 0 {
                continue;
            }
            match env.alloc_folio(Order::of(order)) {
                Some(f) => {
                    got = Some((f, order));
                    break;
                }
                None if order > 0 => env.thp().count_fallback(order),
                None => {}
            }
        }
        let (folio, order) = got.ok_or(FaultError::OutOfMemory)?;
        if order > 0 {
            env.thp().count_alloc(order);
        }
        let head = folio.pfn();
        let nr = 1usize << order;
        // Anonymous from the start: only then may its contents be written.
        env.memmap().folio(&folio).set_anon();
        env.zero_folio(&folio);
        if vma.prot.exec() {
            sync_exec(env, head);
        }
        let mut ptl = match table_lock(env) {
            Ok(l) => l,
            Err(e) => {
                env.folio_put(folio);
                return Err(e);
            }
        };
        let mut cur = ptl.cursor(base, base + span);
        if !range_none(&cur, order) {
            drop(ptl);
            STATS.fault_retries.fetch_add(1, Relaxed);
            env.folio_put(folio);
            return Ok(false);
        }
        {
            let f = env.memmap().folio(&folio);
            // One reference and one mapcount per PTE; every page private.
            f.ref_add(nr as u32 - 1);
            f.add_mapcount(nr as u32);
            for k in 0..nr as u64 {
                f.set_page_anon_exclusive(head + k);
            }
        }
        // The allocation's reference is the first PTE's.
        let _ = folio.into_raw();
        let raw = user_pte::<F>(head, vma.prot, write);
        cur.set_ptes(
            index(va.align_down(PAGE_SIZE << order)),
            raw,
            nr,
            &hooks(env, asid),
        );
        self.rss.fetch_add(nr as u64, Relaxed);
        Ok(true)
    }

    /// Orders a fault at `va` in `vma` may use: the policy's (Linux
    /// `thp_vma_allowable_orders`) whose naturally aligned range lies
    /// inside the area (`thp_vma_suitable_orders`); bit 0 always.
    ///
    /// Folium differs from Linux in one place: program images are
    /// anonymous copies here, never large (Linux maps them from the page
    /// cache, outside the anonymous policy).
    fn fault_orders(&self, env: &(impl MmEnv + ?Sized), vma: &Vma, va: VirtAddr) -> u16 {
        if vma.kind == VmaKind::Image {
            return 1;
        }
        let mut orders = env.thp().allowed_orders(
            vma.flags.contains(VmFlags::HUGEPAGE),
            vma.flags.contains(VmFlags::NOHUGEPAGE),
        );
        for order in 1..=thp::MAX_ORDER {
            let size = PAGE_SIZE << order;
            let start = va.align_down(size);
            if start < vma.start || start + size > vma.end {
                orders &= !(1 << order);
            }
        }
        orders | 1
    }

    /// True if every mapping of folio `f` is a PTE of this space and the
    /// PTEs hold every reference: `va` maps page `pfn` of it. Pages of a
    /// folio are only ever mapped at their natural place (faults map whole
    /// folios aligned; fork copies at the same address; nothing moves
    /// them), so the folio's own range of this space's table is where all
    /// of this space's mappings of it are. Called with the tables locked.
    fn maps_all_of(&self, f: &crate::folio::FolioRef<'_>, va: VirtAddr, pfn: Pfn) -> bool {
        let nr = f.nr_pages();
        let map = u64::from(f.mapcount());
        if u64::from(f.ref_count()) != map || map > nr {
            return false;
        }
        if nr == 1 {
            return map == 1;
        }
        let base = va - (pfn - f.pfn()) * PAGE_SIZE;
        if !base.is_aligned(nr * PAGE_SIZE) {
            return false;
        }
        let mut ours = 0;
        self.pt
            .folio_mappings(f.pfn(), base, nr as usize, |_| ours += 1);
        ours == map
    }

    /// Replaces the page at `va` by a private order-0 copy of `old` (the
    /// zero page's contents for `None`), mapped writable if `write`
    /// (Linux `wp_page_copy`, which also copies into small folios only).
    /// The caller holds a reference to `old`'s folio and not the lock:
    /// the copy is made without it, then mapped only if the entry still
    /// maps `old` (or the zero page) read-only.
    fn replace_page(
        &self,
        env: &mut (impl MmEnv + ?Sized),
        asid: Asid,
        va: VirtAddr,
        old: Option<Pfn>,
        prot: Prot,
        write: bool,
    ) -> Result<bool, FaultError> {
        let new = env
            .alloc_folio(Order::of(0))
            .ok_or(FaultError::OutOfMemory)?;
        let new_pfn = new.pfn();
        env.memmap().folio(&new).set_anon();
        match old {
            Some(src) => {
                let mm = env.memmap();
                // The caller's reference keeps the page's folio.
                let Some(from) = mm.page_folio(src) else {
                    env.folio_put(new);
                    return Err(FaultError::Unmapped);
                };
                mm.folio(&new)
                    .copy_page_from(env.linear(), new_pfn, &from, src);
            }
            None => env.zero_folio(&new),
        }
        if prot.exec() {
            sync_exec(env, new_pfn);
        }
        let expect = old.unwrap_or(env.zero_pfn());
        let mut g = Gather::new(asid);
        {
            // The table exists: `fault_page` found the entry in it.
            let mut ptl = match self.pt.lock_pte(va, env) {
                Ok(l) => l,
                Err(_) => {
                    env.folio_put(new);
                    return Err(FaultError::OutOfMemory);
                }
            };
            let mut cur = ptl.cursor(va, va + PAGE_SIZE);
            let raw = cur.get(0);
            if !(F::pte_present(raw) && F::pte_pfn(raw) == expect && !F::pte_writable(raw)) {
                // Another fault replaced it meanwhile.
                drop(ptl);
                STATS.fault_retries.fetch_add(1, Relaxed);
                env.folio_put(new);
                return Ok(false);
            }
            {
                let f = env.memmap().folio(&new);
                f.add_mapcount(1);
                f.set_page_anon_exclusive(new_pfn);
            }
            let _ = new.into_raw();
            // Break before make (arm64 requires it when the output address
            // changes): clear the entry, flush it, only then install the
            // copy; the old page's reference is dropped after the flush
            // too.
            let raw = cur.get_and_clear_ptes(0, 1, &hooks(env, asid)).first;
            g.note(va);
            self.release_pte(raw, va, &mut g, env);
            g.flush(env);
            cur.set_ptes(0, user_pte::<F>(new_pfn, prot, write), 1, &hooks(env, asid));
            self.rss.fetch_add(1, Relaxed);
        }
        g.finish(env);
        Ok(true)
    }
}
