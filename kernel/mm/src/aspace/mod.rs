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
//! collects what it will release in a [`Gather`],
//! which flushes the TLB before it drops a single folio reference or frees
//! a table: no frame is reused while a stale translation to it may survive.
//!
//! One file per mechanism, each an `impl` block of [`AddressSpace`]:
//!
//! | file         | what                                                         | Linux                                   |
//! |--------------|--------------------------------------------------------------|-----------------------------------------|
//! | `fault.rs`   | demand faults, mTHP order choice, zero page, COW             | `handle_mm_fault`, `do_anonymous_page`, `do_wp_page` |
//! | `fork.rs`    | batched copy of one PTE table at a time                      | `dup_mmap`, `copy_pte_range`            |
//! | `zap.rs`     | munmap, `MADV_DONTNEED`, teardown: batched zap into the gather | `zap_pte_range`, `exit_mmap`          |
//! | `protect.rs` | mprotect, `MADV_(NO)HUGEPAGE`                                | `change_protection`, `hugepage_madvise` |
//! | `mremap.rs`  | mremap's move of entries to another address, folios whole    | `move_page_tables`                      |
//!
//! Faults map whole folios through a [`PteCursor`](crate::pgtable::PteCursor).
//! Fork and zap work one last-level table at a time through the cursor and
//! handle a run of entries mapping consecutive pages of one large folio as
//! one batch: one refcount and mapcount update; fork finds, write-protects
//! and copies the run in one pass (`PteCursor::copy_batch_wrprotect`), zap
//! clears it in one call and hands one (folio, nr) gather entry on
//! ([`MmEnv::batching`] turns this off, PTE by PTE as Linux before 6.9).
//! mprotect still goes PTE by PTE.

mod fault;
mod fork;
mod mremap;
mod protect;
mod zap;

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::asid::AsidTag;
use crate::env::MmEnv;
use crate::folio::FolioRef;
use crate::memmap::Memmap;
use crate::mmu_gather::Gather;
use crate::pgtable::{
    Attrs, FoldEvent, FoldPolicy, KernelHalf, Level, PageTable, Pte, PteEnv, PteFormat, PteKind,
};
use crate::stats::STATS;
use crate::tlb::Asid;
use crate::vma::{Prot, Vma, VmaError, VmaKind, VmaMap};

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

/// Makes the folio of page `pfn` visible to instruction fetches before an
/// executable entry for it is written (Linux `__sync_icache_dcache`, which
/// `set_ptes` calls for user-executable entries): once per folio, the
/// first time it is mapped executable since it was allocated or last
/// written by the kernel ([`PageFlags::DCACHE_CLEAN`](crate::memmap::PageFlags::DCACHE_CLEAN)).
/// A fresh zeroed folio, a copy-on-write copy and a page `mprotect` makes
/// executable all come through here; fork, which writes no data, does not.
/// Two CPUs racing here may both sync, which is harmless.
fn sync_exec<E: MmEnv + ?Sized>(env: &E, pfn: Pfn) {
    let Some(f) = env.memmap().page_folio(pfn) else {
        return;
    };
    if f.test_dcache_clean() {
        return;
    }
    env.sync_icache(f.pfn(), f.nr_pages());
    f.set_dcache_clean();
    STATS.icache_syncs.fetch_add(1, Relaxed);
}

/// What the page-table format's batch operations may ask of one address
/// space's environment ([`PteEnv`]): an immediate flush in the space's
/// ASID, the folio of a frame, the folding policy and counters. Made per
/// call (`hooks(env, asid)`), so it borrows the environment only for it.
struct Hooks<'a, E: MmEnv + ?Sized> {
    env: &'a E,
    asid: Asid,
    /// Read once: fork asks for it per batch.
    policy: FoldPolicy,
}

#[inline]
fn hooks<E: MmEnv + ?Sized>(env: &E, asid: Asid) -> Hooks<'_, E> {
    Hooks {
        env,
        asid,
        policy: env.fold_policy(),
    }
}

impl<E: MmEnv + ?Sized> PteEnv for Hooks<'_, E> {
    fn flush_now(&self, start: VirtAddr, end: VirtAddr) {
        self.env.tlb().flush_range(self.asid, start, end);
    }

    fn one_folio(&self, first: Pfn, nr: u64) -> bool {
        self.env
            .memmap()
            .page_folio(first)
            .is_some_and(|f| first + nr <= f.pfn() + f.nr_pages())
    }

    fn fold_policy(&self) -> FoldPolicy {
        self.policy
    }

    fn note(&self, event: FoldEvent, n: u64) {
        self.env.note_fold(event, n);
    }
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
    /// unmaps, so reading it costs nothing; atomic for the faults that
    /// run at once through `&self`).
    rss: AtomicU64,
    /// The shared zero page (its mappings are not counted in `rss`).
    zero: Pfn,
}

/// The PTE for a user page.
fn user_pte<F: PteFormat>(pfn: Pfn, prot: Prot, writable: bool) -> Pte {
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
/// frame and folio (its contents survive a later `mprotect` back; fork
/// shares it, unmap frees it) in a protnone entry ([`Attrs::protnone`]),
/// which the MMU sees as invalid: user mode faults on it, and so does the
/// kernel through a user pointer, whatever PAN/SMAP would allow. It is
/// also spelled kernel-only, read-only and non-executable, so that even
/// read as a valid entry it would grant user mode nothing.
fn user_attrs(prot: Prot, writable: bool) -> Attrs {
    let mut a = Attrs::user(writable && prot.write(), prot.exec());
    a.user = prot.read();
    a.protnone = !prot.read();
    a
}

fn leaf<F: PteFormat>(raw: Pte) -> Option<(Pfn, Attrs)> {
    match F::decode(raw, Level::L3) {
        PteKind::Leaf { pa, attrs } => Some((pa.pfn(), attrs)),
        _ => None,
    }
}

impl<F: PteFormat> AddressSpace<F> {
    /// An empty address space whose root shares `kernel_half` (x86: the
    /// kernel's upper half; none on arm64, where the kernel lives in
    /// TTBR1). `user_end` bounds user mappings.
    pub fn new(
        env: &mut (impl MmEnv + ?Sized),
        user_end: VirtAddr,
        kernel_half: Option<&KernelHalf>,
    ) -> Result<Self, FaultError> {
        if let Some(k) = kernel_half {
            // User mappings must stay below the shared slots: a user PTE
            // there would land in the kernel's tables, which every process
            // shares and teardown would free.
            assert!(
                user_end.as_u64() <= k.first_va(),
                "user space up to {user_end:?} reaches the shared kernel half"
            );
        }
        let lin = env.linear();
        let mut pt = PageTable::<F>::create(env, lin).map_err(|_| FaultError::OutOfMemory)?;
        if let Some(k) = kernel_half {
            pt.share_kernel_half(k);
        }
        Ok(AddressSpace {
            pt,
            vmas: VmaMap::new(),
            brk: None,
            asid_tag: AsidTag::default(),
            asid: Asid(0),
            user_end,
            rss: AtomicU64::new(0),
            zero: env.zero_pfn(),
        })
    }

    /// A preemption point between two page tables of a long operation
    /// ([`MmEnv::cond_resched`]): if the space was renumbered meanwhile,
    /// its ASID and that of the pending gather `g` follow.
    fn cond_resched(&mut self, env: &mut (impl MmEnv + ?Sized), g: Option<&mut Gather>) {
        if let Some(asid) =
            env.cond_resched(self.pt.root(), &mut self.asid_tag, *self.rss.get_mut())
        {
            self.asid = asid;
            if let Some(g) = g {
                g.set_asid(asid);
            }
        }
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

    /// What `va` maps to now: frame and attributes (a `PROT_NONE` page
    /// too, with [`Attrs::protnone`] set: the mm's view, not the MMU's).
    pub fn translate(&self, va: VirtAddr) -> Option<(Pfn, Attrs)> {
        let slot = self.pt.pte_slot(va)?;
        leaf::<F>(self.pt.pte(slot))
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
            self.fault_page(env, self.asid, &vma, page, vma.prot.write(), true)?;
            let (pfn, _) = self.translate(page).ok_or(FaultError::Unmapped)?;
            let off = (va - page) as usize;
            let n = bytes.len().min(PAGE_SIZE as usize - off);
            // A private page of this space, just faulted in: an anonymous
            // folio's.
            let f = env.memmap().page_folio(pfn).ok_or(FaultError::Unmapped)?;
            f.write_page(env.linear(), pfn, off, &bytes[..n]);
            if vma.prot.exec() {
                // Code written under an executable entry: fetches must see it.
                sync_exec(env, pfn);
            }
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
        // User pages only: on x86 the root also shares the kernel half.
        if va.as_u64().saturating_add(buf.len() as u64) > self.user_end.as_u64() {
            return false;
        }
        let mut done = 0;
        while done < buf.len() {
            let page = va.align_down(PAGE_SIZE);
            let Some((pfn, _)) = self.translate(page) else {
                return false;
            };
            let off = (va - page) as usize;
            let n = (buf.len() - done).min(PAGE_SIZE as usize - off);
            let out = &mut buf[done..done + n];
            if pfn == self.zero {
                out.fill(0);
            } else {
                // Every other user page is an anonymous folio's.
                let Some(f) = env.memmap().page_folio(pfn) else {
                    return false;
                };
                f.read_page(env.linear(), pfn, off, out);
            }
            done += n;
            va = va + n as u64;
        }
        true
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

    /// Present user pages, from the running count (Linux's RSS: mappings
    /// of the zero page are not counted).
    pub fn rss(&self) -> u64 {
        self.rss.load(Relaxed)
    }

    /// Page-table pages below the root (Linux's `VmPTE` in pages, which
    /// its OOM killer adds to the resident pages), from the running count.
    pub fn table_pages(&self) -> u64 {
        self.pt.table_pages()
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
