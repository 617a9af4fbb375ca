//! A user address space: one page-table tree, its [`VmaMap`], the program
//! break, and the operations a process needs on them: demand faults,
//! copy-on-write, fork, unmapping, protection changes and teardown.
//!
//! Every mapped page holds one reference to its folio and one mapcount
//! (Linux's accounting for PTE-mapped anonymous folios, large ones
//! included: a 64 KiB folio mapped by 16 PTEs has refcount 16 and mapcount
//! 16). Per-page *anon-exclusive* says the page is mapped by this address
//! space only, so a write fault may reuse it instead of copying:
//!
//! | event                        | PTEs                                 | folio / page state                                   |
//! |------------------------------|--------------------------------------|------------------------------------------------------|
//! | read fault, nothing mapped   | the shared zero page, read-only      | none (the zero page is never counted)                |
//! | write fault, nothing mapped  | all pages of a new folio of the largest allowed order, one `set_ptes` | ref = map = nr pages, anon, every page exclusive |
//! | fork                         | both copies write-protected          | ref +1, map +1 per PTE; page no longer exclusive     |
//! | write fault, exclusive page  | made writable                        | unchanged                                            |
//! | write fault, all maps ours   | made writable (reuse)                | this page exclusive again                            |
//! | write fault, shared          | this page only: a fresh order-0 copy | copy exclusive; old: map -1, ref -1 (after flush)    |
//! | write fault on the zero page | a fresh zeroed order-0 page          | new folio exclusive                                  |
//! | unmap / DONTNEED / teardown  | cleared (a part of a folio is fine)  | map -1; ref -1 after the TLB flush                   |
//!
//! **Unhook, flush, free.** Every path that removes or downgrades PTEs
//! collects what it will release in a [`Gather`], which flushes the TLB
//! before it drops a single folio reference or frees a table: no frame is
//! reused while a stale translation to it may survive.
//!
//! Faults map whole folios through a [`PteCursor`].
//! Fork and zap work one last-level table at a time through the cursor and
//! handle a run of entries mapping consecutive pages of one large folio as
//! one batch: one refcount and mapcount update; fork finds, write-protects
//! and copies the run in one pass (`PteCursor::copy_batch_wrprotect`), zap
//! clears it in one call and hands one (folio, nr) gather entry on
//! ([`MmEnv::batching`] turns
//! this off, PTE by PTE as Linux before 6.9). mprotect still goes PTE by
//! PTE.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Order, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::asid::AsidTag;
use crate::folio::{Folio, FolioRef};
use crate::memmap::Memmap;
use crate::pgtable::{
    Attrs, Level, MapError, PageTable, PteCursor, PteFormat, PteKind, PteSlot, TableAlloc,
};
use crate::phys::LinearMap;
use crate::stats::{LocalHistogram, STATS};
use crate::thp::{self, ThpPolicy};
use crate::tlb::{Asid, TlbOps};
use crate::vma::{Prot, VmFlags, Vma, VmaError, VmaKind, VmaMap};

/// What an address space needs from the machine around it: frames, the
/// memmap, the linear map and the TLB. The kernel implements it over its
/// global allocator; host tests over a buddy allocator on an arena.
pub trait MmEnv {
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
    /// PTEs (tests count them exactly; the global [`STATS`] are shared).
    fn note_batch(&self, fork: bool, nr: usize) {
        let _ = (fork, nr);
    }
    /// A frame for a page table (contents undefined), or `None`.
    fn alloc_table(&mut self) -> Option<PhysAddr>;
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
    /// Folio references a [`Gather`] may hold before it must flush and
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
    /// Zeroes `nr` pages from `pfn` (one folio the caller just allocated).
    fn zero_pages(&mut self, pfn: Pfn, nr: u64) {
        // SAFETY: the caller owns the (just allocated) pages, which are RAM
        // mapped writable by the linear map.
        unsafe {
            core::ptr::write_bytes(
                self.linear().ptr::<u8>(pfn.phys()),
                0,
                (nr * PAGE_SIZE) as usize,
            )
        };
    }
    /// Copies page `src` into page `dst`.
    fn copy_page(&mut self, dst: Pfn, src: Pfn) {
        let l = self.linear();
        // SAFETY: `dst` is a fresh page the caller owns and `src` a mapped
        // page it holds a reference to; both are RAM in the linear map and
        // distinct frames.
        unsafe {
            core::ptr::copy_nonoverlapping(
                l.ptr::<u8>(src.phys()),
                l.ptr::<u8>(dst.phys()),
                PAGE_SIZE as usize,
            )
        };
    }
}

/// Table frames from an [`MmEnv`].
struct EnvTables<'e, E: MmEnv + ?Sized>(&'e mut E);

// SAFETY: MmEnv::alloc_table hands out unused RAM frames of the linear map
// the address space's tables use; ownership passes to the page table.
unsafe impl<E: MmEnv + ?Sized> TableAlloc for EnvTables<'_, E> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.0.alloc_table()
    }
    unsafe fn zero_table(&mut self, table: PhysAddr, _ptr: *mut u8) {
        // The environment's page zeroing (the kernel's is its fastest).
        self.0.zero_pages(table.pfn(), 1);
    }
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

impl Access {
    /// True if rights `prot` allow this access.
    fn allowed_by(self, prot: Prot) -> bool {
        match self {
            Access::Read => prot.read(),
            Access::Write => prot.write(),
            Access::Exec => prot.exec(),
        }
    }
}

/// Folio state for `nr` just-cleared PTEs mapping its pages, whose
/// entries showed `dirty`: the dirt folded into the folio, the mapcount
/// dropped. Their references go to the gather next ([`Gather::add_pte_refs`]).
/// True if the folio is now partly mapped and not queued for deferred
/// split yet: it has mappings left, but fewer than pages, so some page is
/// mapped nowhere (see `split.rs`).
#[inline]
fn unmap_folio_ptes(f: &FolioRef<'_>, nr: usize, dirty: bool) -> bool {
    // Read first: most folios are dirty already (Linux's
    // `folio_mark_dirty` tests before it sets, too).
    if dirty && !f.test_dirty() {
        f.set_dirty();
    }
    let left = f.sub_mapcount(nr as u32);
    left != 0 && u64::from(left) < f.nr_pages() && !f.test_deferred()
}

/// Queues the folio at `head` for deferred split (`unmap_folio_ptes` found
/// it partly mapped); its page `pfn` was mapped at `va`, which places the
/// whole folio. Counted as `split_deferred` of its size.
fn queue_deferred_split(
    env: &mut (impl MmEnv + ?Sized),
    head: Pfn,
    pages: u64,
    pfn: Pfn,
    va: VirtAddr,
) {
    let base = va - (pfn - head) * PAGE_SIZE;
    if env.deferred_split_folio(head, base) {
        env.thp().count_split_deferred(pages.trailing_zeros() as u8);
    }
}

/// The folio a present entry mapping `pfn` holds a reference to: `None`
/// for the zero page `zero`, which holds none (or a frame without a
/// folio).
#[inline]
fn entry_folio(mm: &Memmap, zero: Pfn, pfn: Pfn) -> Option<FolioRef<'_>> {
    if pfn == zero {
        None
    } else {
        mm.page_folio(pfn)
    }
}

/// How many entries from `i` fork or zap handle as one batch, `f` being
/// the folio entry `i` maps: a run mapping consecutive pages of one large
/// folio (Linux `folio_pte_batch`, bounded by the folio's end before it
/// scans); small folios, or batching off, go one entry at a time.
#[inline]
fn batch_len<F: PteFormat>(
    cur: &PteCursor<'_, F>,
    i: usize,
    f: &FolioRef<'_>,
    batching: bool,
) -> usize {
    let pages = f.nr_pages();
    if batching && pages > 1 {
        cur.pte_batch(i, cur.len() - i, f.pfn() + pages)
    } else {
        1
    }
}

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

/// Why a fault cannot be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No area covers the address (Linux `SEGV_MAPERR`).
    Unmapped,
    /// The area forbids this access (Linux `SEGV_ACCERR`).
    Protection,
    /// No memory for a page or a table (the process is killed).
    OutOfMemory,
}

/// A fault's answer for the caller.
pub type FaultResult = Result<(), FaultError>;

/// Pages and tables to release once the TLB is flushed (a minimal
/// `mmu_gather`). `#[must_use]`: dropping it without [`Gather::finish`]
/// leaks what it holds rather than freeing anything early.
#[must_use = "a Gather must be finished: it flushes the TLB, then frees"]
pub struct Gather {
    asid: Asid,
    start: u64,
    end: u64,
    /// Folio references to drop after the flush: (folio, how many).
    folios: Vec<(Folio, u32)>,
    tables: Vec<PhysAddr>,
    /// Flush the whole address space rather than the range.
    full: bool,
    /// Something was noted since the last flush (a flush with nothing
    /// new to invalidate is skipped: break-before-make flushes early,
    /// and `finish` then has nothing left to do).
    unflushed: bool,
    /// Entries taken over so far (for [`STATS`], added once at the end).
    entries: u64,
}

impl Gather {
    fn new(asid: Asid) -> Gather {
        Gather {
            asid,
            start: u64::MAX,
            end: 0,
            folios: Vec::new(),
            tables: Vec::new(),
            full: false,
            unflushed: false,
            entries: 0,
        }
    }

    /// A gather that flushes the whole address space (exit; fork's
    /// write-protect of every writable PTE), at least once.
    fn new_full(asid: Asid) -> Gather {
        Gather {
            full: true,
            unflushed: true,
            ..Gather::new(asid)
        }
    }

    /// Notes that the translation of `va` changed or went away.
    fn note(&mut self, va: VirtAddr) {
        self.note_range(va, 1);
    }

    /// Notes that the translations of `nr` pages from `va` changed.
    #[inline]
    fn note_range(&mut self, va: VirtAddr, nr: usize) {
        self.start = self.start.min(va.as_u64());
        self.end = self.end.max(va.as_u64() + nr as u64 * PAGE_SIZE);
        self.unflushed = true;
    }

    /// Takes over the folio references `nr` just-cleared PTEs held (the
    /// folio's head is `head`), as one entry; they are dropped only after
    /// the flush. This is the only way a mapped page's reference ends.
    ///
    /// Context: the PTEs' addresses were [noted](Gather::note) first, so
    /// any early flush this forces covers them.
    #[inline]
    fn add_pte_refs(&mut self, head: Pfn, nr: u32, env: &mut (impl MmEnv + ?Sized)) {
        // SAFETY: the caller cleared `nr` PTEs of this folio and accounted
        // their mapcount; the references they held move into the gather,
        // which puts them after the TLB flush.
        let folio = unsafe { Folio::from_raw(head) };
        self.entries += 1;
        // The common case, inlined into zap's loop: room in the list.
        if self.folios.len() < self.folios.capacity().min(env.gather_batch()) {
            self.folios.push((folio, nr));
        } else {
            self.add_pte_refs_slow(folio, nr, env);
        }
    }

    /// [`Gather::add_pte_refs`] when the list is full or must grow.
    #[inline(never)]
    fn add_pte_refs_slow(&mut self, folio: Folio, nr: u32, env: &mut (impl MmEnv + ?Sized)) {
        if self.folios.len() >= env.gather_batch() || self.folios.try_reserve(1).is_err() {
            // Bound the gather's memory (and survive a full kernel heap):
            // flush what is unhooked so far, free it, and go on.
            self.flush_and_free_folios(env);
        }
        if self.folios.len() < self.folios.capacity() {
            self.folios.push((folio, nr));
        } else {
            // Not even one slot: flush (these PTEs are covered), then free.
            self.flush(env);
            env.folio_put_refs(folio, nr);
        }
    }

    /// Flushes the TLB for everything noted so far and drops the folio
    /// references gathered (tables wait for [`Gather::finish`]).
    fn flush_and_free_folios(&mut self, env: &mut (impl MmEnv + ?Sized)) {
        self.flush(env);
        env.folios_put_refs(&mut self.folios);
    }

    fn flush(&mut self, env: &mut (impl MmEnv + ?Sized)) {
        if !self.unflushed {
            return;
        }
        self.unflushed = false;
        if self.full {
            STATS.flush_asid.fetch_add(1, Relaxed);
            env.tlb().flush_asid(self.asid);
        } else if self.start < self.end {
            STATS.flush_range.fetch_add(1, Relaxed);
            env.tlb().flush_range(
                self.asid,
                VirtAddr::new(self.start),
                VirtAddr::new(self.end),
            );
        }
        (self.start, self.end) = (u64::MAX, 0);
    }

    /// Flushes the TLB once for everything noted, then drops the folio
    /// references and frees the tables.
    pub fn finish(mut self, env: &mut (impl MmEnv + ?Sized)) {
        STATS.gathers.fetch_add(1, Relaxed);
        STATS.gather_entries.fetch_add(self.entries, Relaxed);
        self.flush_and_free_folios(env);
        env.free_tables(&mut self.tables);
    }
}

/// Folio references a [`Gather`] holds before it flushes and frees them
/// early. Linux chains batch pages up to about ten thousand of them
/// before a forced flush; Folium bounds the list at 64 Ki references
/// (512 KiB of kernel heap), so unmapping 1 GiB of small folios flushes
/// four times and anything up to 256 MiB once.
pub const GATHER_BATCH: usize = 1 << 16;

/// Emptied tables an exit frees per batch ([`MmEnv::free_tables`]).
const TABLE_BATCH: usize = 512;

/// The program break: `[start, cur)` is the heap area (Linux `brk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Brk {
    /// Where the heap starts (page aligned, just above the program).
    pub start: VirtAddr,
    /// The current break (byte granular, as `brk` returns it).
    pub cur: VirtAddr,
}

/// One user address space of page-table format `F`.
pub struct AddressSpace<F: PteFormat> {
    pt: PageTable<F>,
    vmas: VmaMap,
    /// The program break, once a program is loaded.
    pub brk: Option<Brk>,
    /// ASID bookkeeping (the kernel's allocator updates it on switch).
    pub asid_tag: AsidTag,
    /// The ASID this space last ran with (flushes use it).
    pub asid: Asid,
    /// First address past user space.
    user_end: VirtAddr,
    /// Present user pages (kept up to date by every path that maps or
    /// unmaps, so reading it costs nothing).
    rss: u64,
    /// The shared zero page (its mappings are not counted in `rss`).
    zero: Pfn,
}

/// Invalidates one page's translation (a spurious or permission fault's
/// stale entry), counted in [`STATS`].
fn flush_page(env: &(impl MmEnv + ?Sized), asid: Asid, va: VirtAddr) {
    STATS.flush_page.fetch_add(1, Relaxed);
    env.tlb().flush_page(asid, va);
}

/// The PTE for a user page.
fn user_pte<F: PteFormat>(pfn: Pfn, prot: Prot, writable: bool) -> u64 {
    let mut attrs = user_attrs(prot, writable);
    attrs.young = true;
    attrs.dirty = writable;
    F::encode(
        PteKind::Leaf {
            pa: pfn.phys(),
            attrs,
        },
        Level::L3,
    )
}

/// Attributes of a user page under `prot`. A `PROT_NONE` page keeps its
/// frame mapped (its contents survive a later `mprotect` back) but as a
/// kernel-only, non-executable, read-only entry, which user mode cannot
/// touch (arm64 AP[1] clear; x86 U/S clear); the kernel's own user copies
/// check the areas first, so they refuse it too.
fn user_attrs(prot: Prot, writable: bool) -> Attrs {
    let mut a = Attrs::user(writable && prot.write(), prot.exec());
    a.user = prot.read();
    a
}

fn leaf<F: PteFormat>(raw: u64) -> Option<(Pfn, Attrs)> {
    match F::decode(raw, Level::L3) {
        PteKind::Leaf { pa, attrs } => Some((pa.pfn(), attrs)),
        _ => None,
    }
}

impl<F: PteFormat> AddressSpace<F> {
    /// An empty address space whose root copies `kernel_root`'s entries
    /// `kernel_slots` (x86: the shared kernel half; none on arm64, where
    /// the kernel lives in TTBR1). `user_end` bounds user mappings.
    pub fn new(
        env: &mut (impl MmEnv + ?Sized),
        user_end: VirtAddr,
        kernel_root: Option<(PhysAddr, core::ops::Range<usize>)>,
    ) -> Result<Self, FaultError> {
        let lin = env.linear();
        let pt = PageTable::<F>::create(&mut EnvTables(env), lin)
            .map_err(|_| FaultError::OutOfMemory)?;
        if let Some((kroot, slots)) = kernel_root {
            for i in slots {
                // SAFETY: both roots are table frames in the linear map;
                // the kernel's upper-half entries are copied as they are
                // (the tables they point to are shared, never freed).
                unsafe {
                    let src = lin.ptr::<u64>(kroot).add(i).read_volatile();
                    lin.ptr::<u64>(pt.root()).add(i).write_volatile(src);
                }
            }
        }
        Ok(AddressSpace {
            pt,
            vmas: VmaMap::new(),
            brk: None,
            asid_tag: AsidTag::default(),
            asid: Asid(0),
            user_end,
            rss: 0,
            zero: env.zero_pfn(),
        })
    }

    /// The root table (for TTBR0 / CR3).
    pub fn root(&self) -> PhysAddr {
        self.pt.root()
    }

    /// The page table (read-only: the deferred split counts mappings in
    /// it, see `split.rs`).
    pub fn page_table(&self) -> &PageTable<F> {
        &self.pt
    }

    /// First address past user space.
    pub fn user_end(&self) -> VirtAddr {
        self.user_end
    }

    /// The areas.
    pub fn vmas(&self) -> &VmaMap {
        &self.vmas
    }

    /// Adds an area (no pages are mapped until touched).
    pub fn add_vma(&mut self, vma: Vma) -> Result<(), VmaError> {
        if vma.end > self.user_end || vma.start.as_u64() < PAGE_SIZE {
            return Err(VmaError::Invalid);
        }
        self.vmas.insert(vma)
    }

    /// True if the areas cover all of `[start, start + len)` with rights
    /// that allow `access` (the check the kernel's user copies make before
    /// touching memory, so they honour `PROT_NONE` like user mode does).
    pub fn allows(&self, start: VirtAddr, len: u64, access: Access) -> bool {
        let Some(end) = start.as_u64().checked_add(len) else {
            return false;
        };
        if len == 0 {
            return true;
        }
        let mut at = start;
        for v in self.vmas.overlapping(start, VirtAddr::new(end)) {
            if v.start > at || !access.allowed_by(v.prot) {
                return false;
            }
            at = v.end;
            if at.as_u64() >= end {
                return true;
            }
        }
        false
    }

    /// What `va` maps to now: frame and attributes.
    pub fn translate(&self, va: VirtAddr) -> Option<(Pfn, Attrs)> {
        let slot = self.pt.pte_slot(va)?;
        leaf::<F>(self.pt.pte(slot))
    }

    /// Resolves a fault at `va` for `access` (Linux `handle_mm_fault` for
    /// anonymous private memory): a missing page is allocated zeroed (a
    /// large folio where the mTHP policy allows; the shared zero page for a
    /// read); a write to a write-protected page of a writable area is
    /// copy-on-write.
    pub fn handle_fault(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        va: VirtAddr,
        access: Access,
    ) -> FaultResult {
        let vma = *self.vmas.find(va).ok_or(FaultError::Unmapped)?;
        if !access.allowed_by(vma.prot) {
            return Err(FaultError::Protection);
        }
        self.fault_page(
            env,
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
        }
        Ok(())
    }

    /// Makes the page at `va` present under `vma`'s rights. `write`: a
    /// store (the area allows it), so the page must end up private and
    /// writable. `force`: the kernel writes the page's contents on the
    /// program's behalf (loading), so it must end up private, mapped with
    /// the area's own rights.
    fn fault_page(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        vma: &Vma,
        va: VirtAddr,
        write: bool,
        force: bool,
    ) -> FaultResult {
        let slot = self
            .pt
            .pte_slot_alloc(va, &mut EnvTables(env))
            .map_err(|e| match e {
                MapError::OutOfMemory => FaultError::OutOfMemory,
                _ => FaultError::Unmapped,
            })?;
        let raw = self.pt.pte(slot);
        if !F::pte_present(raw) {
            if write || force {
                return self.do_anonymous(env, vma, va, write);
            }
            return self.map_zero_page(env, slot, vma.prot);
        }
        let pfn = F::pte_pfn(raw);
        if !write && !force {
            // Present: a stale TLB entry faulted (Linux's spurious fault).
            flush_page(env, self.asid, va);
            return Ok(());
        }
        if pfn == env.zero_pfn() {
            return self.replace_page(env, slot, va, None, vma.prot, write);
        }
        if F::pte_writable(raw) {
            if write && !F::pte_dirty(raw) {
                // Writable but clean (arm64 without hardware dirty
                // tracking): record the write.
                self.pt.set_pte(slot, F::pte_mkdirty(F::pte_mkyoung(raw)));
            }
            flush_page(env, self.asid, va);
            return Ok(());
        }
        self.write_protect_fault(env, slot, va, pfn, vma.prot, write)
    }

    /// A read of untouched anonymous memory: the shared zero page, read
    /// only, holding no reference (Linux's special zero-page PTE). The
    /// first write replaces it with a private page.
    fn map_zero_page(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        slot: PteSlot,
        prot: Prot,
    ) -> FaultResult {
        let raw = user_pte::<F>(env.zero_pfn(), prot, false);
        self.pt.set_pte(slot, raw);
        Ok(())
    }

    /// A missing page that must be private (Linux `do_anonymous_page` with
    /// `alloc_anon_folio`): the largest order the policy allows whose
    /// naturally aligned range lies inside the area and has no populated
    /// entry, falling back order by order to 0, also when an allocation
    /// fails; zeroed; every page mapped by one `set_ptes`.
    fn do_anonymous(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        vma: &Vma,
        va: VirtAddr,
        write: bool,
    ) -> FaultResult {
        let span = Level::L2.size();
        let base = va.align_down(span);
        let orders = self.fault_orders(env, vma, va);
        // The tables exist (`fault_page` walked to the slot): a cursor over
        // the whole last-level table sees every candidate range.
        let mut cur = self
            .pt
            .pte_cursor(base, base + span)
            .ok_or(FaultError::OutOfMemory)?;
        let index = |a: VirtAddr| ((a - base) / PAGE_SIZE) as usize;
        let mut got = None;
        for order in (0..=thp::MAX_ORDER).rev() {
            if orders & (1 << order) == 0 {
                continue;
            }
            let size = PAGE_SIZE << order;
            let first = index(va.align_down(size));
            let nr = 1usize << order;
            // Linux `pte_range_none`: any populated entry (the zero page
            // included) rules the order out; it is not a fallback.
            if order > 0 && (first..first + nr).any(|i| cur.get(i) != 0) {
                continue;
            }
            match env.alloc_folio(Order::of(order)) {
                Some(f) => {
                    got = Some((f, order, first, nr));
                    break;
                }
                None if order > 0 => env.thp().count_fallback(order),
                None => {}
            }
        }
        let (folio, order, first, nr) = got.ok_or(FaultError::OutOfMemory)?;
        if order > 0 {
            env.thp().count_alloc(order);
        }
        let head = folio.pfn();
        env.zero_pages(head, nr as u64);
        {
            let f = env.memmap().folio(&folio);
            f.set_anon();
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
        cur.set_ptes(first, raw, nr);
        self.rss += nr as u64;
        Ok(())
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
        orders
    }

    /// A store (or a forced kernel write) to a write-protected page: reuse
    /// it if nobody else can see it, else copy (Linux `do_wp_page`).
    ///
    /// Reuse follows Linux: an anon-exclusive page is reused at once; any
    /// other page when its folio's every mapping is one of this space's
    /// PTEs and no reference is held beyond them (Linux 6.13's rule for
    /// large folios, the `refcount == 1` test for small ones). The page
    /// becomes exclusive; the folio's other pages keep their state.
    fn write_protect_fault(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        slot: PteSlot,
        va: VirtAddr,
        pfn: Pfn,
        prot: Prot,
        write: bool,
    ) -> FaultResult {
        let reuse = {
            let mm = env.memmap();
            let f = mm.page_folio(pfn).ok_or(FaultError::Unmapped)?;
            if f.page_anon_exclusive(pfn) {
                true
            } else if self.maps_all_of(&f, va, pfn) {
                f.set_page_anon_exclusive(pfn);
                true
            } else {
                false
            }
        };
        if !reuse {
            return self.replace_page(env, slot, va, Some(pfn), prot, write);
        }
        if write {
            // Only permission is added: no flush (Linux neither). A stale
            // read-only entry faults once more and the spurious-fault
            // path flushes it.
            self.pt.set_pte(slot, user_pte::<F>(pfn, prot, true));
        }
        Ok(())
    }

    /// True if every mapping of folio `f` is a PTE of this space and the
    /// PTEs hold every reference: `va` maps page `pfn` of it. Pages of a
    /// folio are only ever mapped at their natural place (faults map whole
    /// folios aligned; fork copies at the same address; nothing moves
    /// them), so the folio's own range of this space's table is where all
    /// of this space's mappings of it are.
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
    fn replace_page(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        slot: PteSlot,
        va: VirtAddr,
        old: Option<Pfn>,
        prot: Prot,
        write: bool,
    ) -> FaultResult {
        let new = env
            .alloc_folio(Order::of(0))
            .ok_or(FaultError::OutOfMemory)?;
        let new_pfn = new.pfn();
        match old {
            Some(src) => env.copy_page(new_pfn, src),
            None => env.zero_pages(new_pfn, 1),
        }
        {
            let f = env.memmap().folio(&new);
            f.set_anon();
            f.add_mapcount(1);
            f.set_page_anon_exclusive(new_pfn);
        }
        let _ = new.into_raw();
        // Break before make (arm64 requires it when the output address
        // changes): clear the entry, flush it, only then install the copy;
        // the old page's reference is dropped after the flush too.
        let mut g = Gather::new(self.asid);
        let raw = self.pt.take_pte(slot);
        g.note(va);
        self.release_pte(raw, va, &mut g, env);
        g.flush(env);
        self.pt.set_pte(slot, user_pte::<F>(new_pfn, prot, write));
        self.rss += 1;
        g.finish(env);
        Ok(())
    }

    /// Accounts for a PTE (already cleared) that mapped a page: one
    /// mapcount now, one reference into the gather for after the flush
    /// (zap's accounting for a batch of one). The zero page holds neither.
    fn release_pte(
        &mut self,
        raw: u64,
        va: VirtAddr,
        g: &mut Gather,
        env: &mut (impl MmEnv + ?Sized),
    ) {
        let pfn = F::pte_pfn(raw);
        if !F::pte_present(raw) {
            return;
        }
        let Some(f) = entry_folio(env.memmap(), self.zero, pfn) else {
            return;
        };
        let (head, pages) = (f.pfn(), f.nr_pages());
        if unmap_folio_ptes(&f, 1, F::pte_dirty(raw)) {
            queue_deferred_split(env, head, pages, pfn, va);
        }
        self.rss -= 1;
        g.add_pte_refs(head, 1, env);
    }

    /// Writes `bytes` at `va` in this space on the kernel's behalf (program
    /// loading), faulting pages in as needed, whatever the areas' rights
    /// (Linux `FOLL_FORCE`). The range must lie inside areas.
    pub fn write_bytes(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        mut va: VirtAddr,
        mut bytes: &[u8],
    ) -> FaultResult {
        while !bytes.is_empty() {
            let vma = *self.vmas.find(va).ok_or(FaultError::Unmapped)?;
            let page = va.align_down(PAGE_SIZE);
            // Force a private, present page even in a read-only area.
            self.fault_page(env, &vma, page, vma.prot.write(), true)?;
            let (pfn, _) = self.translate(page).ok_or(FaultError::Unmapped)?;
            let off = (va - page) as usize;
            let n = bytes.len().min(PAGE_SIZE as usize - off);
            // SAFETY: `pfn` is a private page of this space (just faulted
            // in; exclusive since nothing has forked it yet during
            // loading), RAM in the linear map; we write inside it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    env.linear().ptr::<u8>(pfn.phys()).add(off),
                    n,
                )
            };
            bytes = &bytes[n..];
            va = va + n as u64;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `va` through the page tables (tests and
    /// debugging; user copies go through the hardware with fault fixups).
    pub fn read_bytes(
        &self,
        env: &(impl MmEnv + ?Sized),
        mut va: VirtAddr,
        buf: &mut [u8],
    ) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let page = va.align_down(PAGE_SIZE);
            let Some((pfn, _)) = self.translate(page) else {
                return false;
            };
            let off = (va - page) as usize;
            let n = (buf.len() - done).min(PAGE_SIZE as usize - off);
            // SAFETY: a mapped page of this space, RAM in the linear map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    env.linear().ptr::<u8>(pfn.phys()).add(off),
                    buf[done..].as_mut_ptr(),
                    n,
                )
            };
            done += n;
            va = va + n as u64;
        }
        true
    }

    /// A copy-on-write duplicate of this space (Linux `dup_mmap` +
    /// `copy_page_range`): same areas; every present page shared,
    /// write-protected in both, no longer exclusive. The parent's TLB is
    /// flushed once at the end (its PTEs were downgraded).
    pub fn fork(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        kernel_root: Option<(PhysAddr, core::ops::Range<usize>)>,
    ) -> Result<Self, FaultError> {
        let mut child = AddressSpace::new(env, self.user_end, kernel_root)?;
        child.vmas = self.vmas.clone();
        child.brk = self.brk;
        let mut downgraded = false;
        let mut result = Ok(());
        let span = Level::L2.size();
        let mut at = VirtAddr::new(0);
        // One area at a time, looked up afresh: no list of areas is built.
        'areas: loop {
            let Some((start, end)) = self
                .vmas
                .overlapping(at, self.user_end)
                .next()
                .map(|v| (v.start, v.end))
            else {
                break;
            };
            at = end;
            let mut from = start;
            while let Some((tva, _)) = self.pt.next_pte_table(from, end) {
                let (s, e) = (tva.max(from), (tva + span).min(end));
                if let Err(err) = self.copy_pte_range(&mut child, env, s, e, &mut downgraded) {
                    result = Err(err);
                    break 'areas;
                }
                from = e;
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
        let Some(mut src) = self.pt.pte_cursor(s, e) else {
            return Ok(());
        };
        let Some(first) = (0..src.len()).find(|&i| F::pte_present(src.get(i))) else {
            return Ok(());
        };
        let mut dst = child
            .pt
            .pte_cursor_alloc(s, e, &mut EnvTables(env))
            .map_err(|_| FaultError::OutOfMemory)?;
        // The switch caps a batch's length rather than choosing a path:
        // both modes then run the very same instructions per entry, and a
        // small folio (or the per-PTE mode) is a batch of one.
        let cap = if env.batching() { src.len() } else { 1 };
        let mm = env.memmap();
        let mut hist = LocalHistogram::default();
        let mut copied = 0;
        let mut i = first;
        while i < src.len() {
            let raw = src.get(i);
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
                (1, usize::from(src.copy_one_wrprotect(&mut dst, i, raw)))
            } else {
                src.copy_batch_wrprotect(&mut dst, i, max)
            };
            if let Some(f) = folio {
                f.ref_add(nr as u32);
                f.add_mapcount(nr as u32);
                f.clear_pages_anon_exclusive(pfn, nr as u64);
                copied += nr as u64;
            }
            hist.count(nr);
            env.note_batch(true, nr);
            if writable > 0 {
                *downgraded = true;
            }
            i += nr;
        }
        child.rss += copied;
        hist.add_to(&STATS.fork_batches);
        Ok(())
    }

    /// Removes every mapping in `[start, end)`: PTEs cleared, areas
    /// removed or split, emptied tables freed, all after one flush
    /// (Linux `munmap`). Unmapping nothing succeeds.
    pub fn unmap(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), VmaError> {
        self.vmas.remove_range(start, end)?;
        let mut g = Gather::new(self.asid);
        // PTEs exist only inside the areas just removed.
        self.zap(env, start, end, &mut g);
        let mut tables = Vec::new();
        // Every entry of the range was just cleared.
        self.pt
            .free_cleared_tables(start, end, &mut |t| tables.push(t));
        if !tables.is_empty() {
            // Intermediate walks may be cached too: flush the whole range.
            g.note(start);
            g.note(end - PAGE_SIZE);
        }
        g.tables = tables;
        g.finish(env);
        Ok(())
    }

    /// Clears the PTEs of `[start, end)` into `g` (Linux `zap_pte_range`).
    fn zap(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
        g: &mut Gather,
    ) {
        let span = Level::L2.size();
        let mut at = start;
        // One table at a time, found by a short descent that skips missing
        // subtrees: nothing is allocated, however large the range.
        while let Some((tva, _)) = self.pt.next_pte_table(at, end) {
            let (s, e) = (tva.max(at), (tva + span).min(end));
            self.zap_pte_range(env, s, e, g);
            at = e;
        }
    }

    /// Clears the present entries of `[s, e)`, inside one last-level table
    /// (Linux `zap_present_ptes`): a run of entries mapping consecutive
    /// pages of one large folio is one batch (one clear, one dirty fold,
    /// one mapcount update, one gather entry) unless batching is off, when
    /// every entry is its own batch as before Linux 6.9. Pages keep their
    /// anon-exclusive flag, as on Linux: nothing maps them again, and
    /// freeing clears it.
    fn zap_pte_range(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        s: VirtAddr,
        e: VirtAddr,
        g: &mut Gather,
    ) {
        let batching = env.batching();
        let Some(mut cur) = self.pt.pte_cursor(s, e) else {
            return;
        };
        let mut hist = LocalHistogram::default();
        let mut freed = 0;
        let mut i = 0;
        while i < cur.len() {
            let raw = cur.get(i);
            if !F::pte_present(raw) {
                i += 1;
                continue;
            }
            let pfn = F::pte_pfn(raw);
            let Some(f) = entry_folio(env.memmap(), self.zero, pfn) else {
                // The zero page (or a frame without a folio): no reference.
                cur.get_and_clear_ptes(i, 1);
                g.note(cur.va(i));
                i += 1;
                continue;
            };
            let (head, pages) = (f.pfn(), f.nr_pages());
            let nr = batch_len(&cur, i, &f, batching);
            let (_, _, dirty) = cur.get_and_clear_ptes(i, nr);
            if unmap_folio_ptes(&f, nr, dirty) {
                queue_deferred_split(env, head, pages, pfn, cur.va(i));
            }
            g.note_range(cur.va(i), nr);
            hist.count(nr);
            env.note_batch(false, nr);
            g.add_pte_refs(head, nr as u32, env);
            freed += nr as u64;
            i += nr;
        }
        self.rss -= freed;
        hist.add_to(&STATS.zap_batches);
    }

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

    /// Drops the pages of `[start, end)` but keeps the areas (Linux
    /// `MADV_DONTNEED`): the next access faults in zeroed memory. Pages in
    /// every area the range meets are dropped; a hole in the range is
    /// reported afterwards as [`VmaError::Hole`] (Linux: ENOMEM).
    pub fn dontneed(
        &mut self,
        env: &mut (impl MmEnv + ?Sized),
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), VmaError> {
        if start >= end || !start.is_aligned(PAGE_SIZE) || !end.is_aligned(PAGE_SIZE) {
            return Err(VmaError::Invalid);
        }
        let mut g = Gather::new(self.asid);
        let mut at = start;
        let mut hole = false;
        // One area at a time, looked up afresh: no list of areas is built.
        while at < end {
            let next = self
                .vmas
                .overlapping(at, end)
                .next()
                .map(|v| (v.start.max(at), v.end.min(end)));
            let Some((s, e)) = next else { break };
            hole |= s > at;
            self.zap(env, s, e, &mut g);
            at = e;
        }
        g.finish(env);
        if hole || at < end {
            Err(VmaError::Hole)
        } else {
            Ok(())
        }
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

    /// Sets the program break (Linux `brk`): returns the new break, or the
    /// old one if the request is refused (below the heap's start, into
    /// another area, or past user space). Shrinking unmaps the pages.
    pub fn set_brk(&mut self, env: &mut (impl MmEnv + ?Sized), want: VirtAddr) -> VirtAddr {
        let Some(b) = self.brk else {
            return VirtAddr::new(0);
        };
        if want < b.start || want > self.user_end {
            return b.cur;
        }
        let old_end = b.cur.align_up(PAGE_SIZE);
        let new_end = want.align_up(PAGE_SIZE);
        if new_end > old_end {
            if self.vmas.intersects(old_end, new_end) {
                return b.cur;
            }
            let heap = Vma::new(old_end, new_end, Prot::RW, VmaKind::Heap);
            if self.vmas.insert(heap).is_err() {
                return b.cur;
            }
        } else if new_end < old_end && self.unmap(env, new_end, old_end).is_err() {
            return b.cur;
        }
        self.brk = Some(Brk {
            start: b.start,
            cur: want,
        });
        want
    }

    /// Frees everything: every page reference and every table, the root
    /// included, after one flush of the whole address space (exit, exec).
    pub fn teardown(mut self, env: &mut (impl MmEnv + ?Sized)) {
        let mut g = Gather::new_full(self.asid);
        let end = self.user_end;
        self.zap(env, VirtAddr::new(0), end, &mut g);
        // Every PTE is gone and the whole address space flushed: no walk
        // can reach the tables any more (this space is not installed), so
        // they are freed as they are unlinked, in batches (one allocator
        // lock each), or one by one if the kernel heap is short.
        g.flush_and_free_folios(env);
        let mut tables = Vec::new();
        self.pt
            .free_cleared_tables(VirtAddr::new(0), end, &mut |t| {
                if tables.len() == TABLE_BATCH {
                    env.free_tables(&mut tables);
                }
                if tables.try_reserve(1).is_ok() {
                    tables.push(t);
                } else {
                    env.free_table(t);
                }
            });
        env.free_tables(&mut tables);
        env.free_table(self.pt.root());
        g.finish(env);
    }

    /// Present user pages, from the running count (Linux's RSS: mappings
    /// of the zero page are not counted).
    pub fn rss(&self) -> u64 {
        self.rss
    }

    /// Present user pages, counted by walking the tables (tests check
    /// [`AddressSpace::rss`] against it).
    pub fn resident_pages(&self) -> u64 {
        let mut n = 0;
        for v in self.vmas.iter() {
            self.pt.for_each_slot(v.start, v.end, |_, s| {
                let raw = self.pt.pte(s);
                if F::pte_present(raw) && F::pte_pfn(raw) != self.zero {
                    n += 1;
                }
            });
        }
        n
    }
}
