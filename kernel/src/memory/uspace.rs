//! User address spaces on the running kernel: [`MmEnv`] over the global
//! frame allocator and this CPU's TLB, ASIDs with generation rollover, and
//! installing a space as the user half (TTBR0 / CR3).

use alloc::vec::Vec;

use folium_mm::Order;
use folium_mm::PhysAddr;
use folium_mm::asid::{AsidAllocator, AsidTag};
use folium_mm::aspace::{AddressSpace, FaultError};
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::memmap::Memmap;
use folium_mm::pgtable::{KernelHalf, PageTable, TableAlloc};
use folium_mm::phys::LinearMap;
use folium_mm::split::{SplitScan, deferred_split_scan_some};
use folium_mm::thp::ThpPolicy;
use folium_mm::tlb::{Asid, TlbOps};
use folium_mm::views::MemView;
use folium_mm::{PAGE_SIZE, Pfn, VirtAddr};

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::frames;
use crate::arch::{self, KernelPteFormat};
use crate::proc::mm::Mm;
use crate::sync::IrqMutex;

/// A user address space in this machine's page-table format.
pub type UserSpace = AddressSpace<KernelPteFormat>;

/// One past the highest user address: Linux's `TASK_SIZE` with 4 KiB
/// pages and 4 levels, a 47-bit user half on x86-64 (the lower canonical
/// half) and a 48-bit one on arm64 (all of TTBR0's range with T0SZ = 16).
pub const USER_END: VirtAddr = VirtAddr::new(crate::arch::USER_TOP);

/// The kernel's [`MmEnv`]: frames from the global allocator.
pub struct KernelEnv;

// SAFETY: alloc_table_frame hands out unused RAM frames of the linear map;
// ownership passes to the page table that asked.
unsafe impl TableAlloc for KernelEnv {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        frames::alloc_table_frame()
    }
    unsafe fn zero_table(&mut self, _table: PhysAddr, ptr: *mut u8) {
        // SAFETY: the caller's contract: a fresh, page-aligned table frame
        // at `ptr` that nothing else sees yet.
        unsafe { arch::zero_pages(ptr, PAGE_SIZE as usize) };
    }
    /// A CPU spinning for a page-table lock runs the cross-CPU calls
    /// posted to it: the holder may be waiting for this CPU's TLB flush.
    fn relax(&self) {
        crate::smp::run_posted_calls();
        core::hint::spin_loop();
    }
}

impl MmEnv for KernelEnv {
    fn memmap(&self) -> &Memmap {
        frames::memmap()
    }
    fn linear(&self) -> LinearMap {
        frames::linear()
    }
    fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        frames::alloc_folio(order)
    }
    fn folio_put_refs(&mut self, folio: Folio, nr: u32) {
        let pfn = folio.pfn();
        let outcome = frames::folio_put_refs(folio, nr);
        if outcome.refused() {
            println!("mm: warning: folio {pfn:?} put refused ({outcome:?}); it stays pinned");
        }
    }
    /// One lock of this CPU's page list for the whole batch (Linux frees
    /// a gather's folios in batches too), and of the buddy allocator's
    /// once per batch the list gives back or a folio it does not keep.
    ///
    /// A big batch (munmap or exit of a large range: up to
    /// `GATHER_BATCH` entries) goes in steps of [`PUT_STEP`], with a
    /// preemption point between them: the TLB is flushed, and the entries
    /// not put yet hold their references, as the gather did.
    fn folios_put_refs(&mut self, batch: &mut Vec<(Folio, u32)>) {
        let mut refused = None;
        while !batch.is_empty() {
            let from = batch.len().saturating_sub(PUT_STEP);
            let r = frames::folios_put_refs(batch.drain(from..));
            refused = refused.or(r);
            if !batch.is_empty() {
                cond_resched_anywhere();
            }
        }
        // Reported outside the lock; the first refusal stands for all.
        if let Some((pfn, outcome)) = refused {
            println!("mm: warning: folio {pfn:?} put refused ({outcome:?}); it stays pinned");
        }
    }
    fn free_table(&mut self, table: PhysAddr) {
        if let Err(e) = frames::free_block(table.pfn(), Order::of(0)) {
            println!("mm: warning: page-table frame {table:?} not freed: {e:?}");
        }
    }
    /// In steps of [`PUT_STEP`] under one lock of this CPU's page list
    /// each, with a preemption point after every step of 256 tables or
    /// more (teardown hands them over 512 at a time): its callers, a
    /// gather's end and teardown, free tables nothing links or caches any
    /// more.
    fn free_tables(&mut self, tables: &mut Vec<PhysAddr>) {
        let mut failed = None;
        while !tables.is_empty() {
            let from = tables.len().saturating_sub(PUT_STEP);
            let step = tables.len() - from;
            failed = failed.or(frames::free_tables(tables.drain(from..)));
            if step >= 256 {
                cond_resched_anywhere();
            }
        }
        if let Some((t, e)) = failed {
            println!("mm: warning: page-table frame {t:?} not freed: {e:?}");
        }
    }
    fn tlb(&self) -> &dyn TlbOps {
        &KernelTlb
    }
    fn sync_icache(&self, pfn: Pfn, nr: u64) {
        // x86 keeps instruction fetches coherent with stores.
        #[cfg(target_arch = "aarch64")]
        arch::sync_icache(
            frames::linear().ptr::<u8>(pfn.phys()) as u64,
            (nr * PAGE_SIZE) as usize,
        );
        #[cfg(not(target_arch = "aarch64"))]
        let _ = (pfn, nr);
    }
    fn zero_folio(&mut self, folio: &Folio) {
        let f = frames::memmap().folio(folio);
        // As the default's: only a folio of user data may be zeroed here.
        assert!(
            f.test_anon(),
            "zeroing folio {:?}, not anonymous",
            folio.pfn()
        );
        let p = frames::linear().ptr::<u8>(folio.pfn().phys());
        // SAFETY: an anonymous folio holds user data only (no kernel
        // object lives in one), RAM in the linear map; the caller holds a
        // reference to it.
        unsafe { arch::zero_pages(p, (f.nr_pages() * PAGE_SIZE) as usize) };
    }
    fn thp(&self) -> &ThpPolicy {
        &super::THP
    }
    fn fold_policy(&self) -> folium_mm::pgtable::FoldPolicy {
        super::fold_policy()
    }

    fn batching(&self) -> bool {
        super::batching()
    }
    fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool {
        frames::with(|b| b.deferred_split_folio(head, base))
    }
    fn zero_pfn(&self) -> Pfn {
        *ZERO_PFN
            .get()
            .expect("the zero page is allocated at boot (uspace::init)")
    }
    /// The space's own tag is used only for a space no thread shares
    /// (exec's new image, teardown): an operation on a thread's space
    /// goes through its [`crate::proc::mm::Mm`]'s tag (see there).
    fn cond_resched(&mut self, root: PhysAddr, tag: &mut AsidTag, rss: u64) -> Option<Asid> {
        cond_resched_space(root, tag, rss)
    }
    fn fatal_signal_pending(&self) -> bool {
        crate::proc::fatal_signal_pending()
    }
}

/// Folio references (or table frames) one lock of a CPU's page list
/// releases at most.
const PUT_STEP: usize = 2048;

/// Per CPU: the shared space ([`Mm`]) whose lock the running thread holds
/// (null: none). Set when the lock is taken, cleared when it is let go
/// and whenever the CPU switches threads: a preemption point inside an
/// operation reads it before switching and sets it again on the CPU it
/// resumes on, so a non-null pointer is always the running thread's, and
/// alive (that thread's guard holds a reference).
static WORKING: [AtomicPtr<Mm>; crate::smp::MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; crate::smp::MAX_CPUS];

/// Per CPU: the running thread is inside an operation whose space may
/// have been given a new ASID while it was switched out (a rollover at a
/// preemption point with no way to hand the new number to the
/// operation): until the operation ends, every flush it makes flushes
/// every ASID on every CPU. Follows the thread as [`WORKING`] does.
static STALE_ASID: [AtomicBool; crate::smp::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::smp::MAX_CPUS];

/// Records that the running thread holds `mm`'s lock.
pub fn note_working(mm: &Mm) {
    WORKING[crate::smp::id()].store(core::ptr::from_ref(mm).cast_mut(), Ordering::Relaxed);
}

/// Records that the running thread let go of `mm`'s lock.
pub fn forget_working(mm: &Mm) {
    let cpu = crate::smp::id();
    let _ = WORKING[cpu].compare_exchange(
        core::ptr::from_ref(mm).cast_mut(),
        core::ptr::null_mut(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    STALE_ASID[cpu].store(false, Ordering::Relaxed);
}

/// This CPU switches threads: what the running one works on is its own,
/// saved by it before the switch (see [`WORKING`]).
pub fn switching_threads() {
    let cpu = crate::smp::id();
    WORKING[cpu].store(core::ptr::null_mut(), Ordering::Relaxed);
    STALE_ASID[cpu].store(false, Ordering::Relaxed);
}

/// What a preemption point inside an operation saves (the space it works
/// on, if any, and whether its number may be stale) and restores on the
/// CPU it resumes on.
struct OpState {
    working: *mut Mm,
    stale: bool,
}

impl OpState {
    fn save() -> OpState {
        let cpu = crate::smp::id();
        OpState {
            working: WORKING[cpu].load(Ordering::Relaxed),
            stale: STALE_ASID[cpu].load(Ordering::Relaxed),
        }
    }
    fn restore(&self, stale: bool) {
        let cpu = crate::smp::id();
        WORKING[cpu].store(self.working, Ordering::Relaxed);
        STALE_ASID[cpu].store(self.stale || stale, Ordering::Relaxed);
    }
    /// The space worked on if its root is `root`.
    fn mm(&self, root: PhysAddr) -> Option<&Mm> {
        // SAFETY: a WORKING pointer is the running thread's, alive while
        // its guard is (see WORKING); this thread holds that guard.
        unsafe { self.working.as_ref() }.filter(|m| m.root() == root)
    }
}

/// The TLB maintenance the mm code asks for, on the hardware: as asked,
/// or, for an operation whose number may be stale ([`STALE_ASID`]),
/// every ASID.
struct KernelTlb;

impl KernelTlb {
    /// The operation's number may be stale: then every ASID goes, on
    /// every CPU (true after the flush).
    fn stale() -> bool {
        let me = crate::smp::id();
        if !STALE_ASID[me].load(Ordering::Relaxed) {
            return false;
        }
        crate::smp::call_on(
            crate::smp::others() | 1 << me,
            |_| arch::tlb::flush_all(),
            0,
        );
        true
    }
}

impl TlbOps for KernelTlb {
    fn flush_page(&self, asid: Asid, va: VirtAddr) {
        if !Self::stale() {
            arch::tlb::Hw.flush_page(asid, va);
        }
    }
    fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr) {
        if !Self::stale() {
            arch::tlb::Hw.flush_range(asid, start, end);
        }
    }
    fn flush_asid(&self, asid: Asid) {
        if !Self::stale() {
            arch::tlb::Hw.flush_asid(asid);
        }
    }
}

/// Processes switched out at a preemption point inside an address-space
/// operation: while one is, a gather or a copy may hold references its
/// tables do not show yet, so the mm audit waits for them ([`mm_quiesce`]).
static MM_PREEMPTED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// True while a process is stopped inside an address-space operation (see
/// [`MM_PREEMPTED`]).
pub fn mm_busy() -> bool {
    MM_PREEMPTED.load(core::sync::atomic::Ordering::Relaxed) > 0
}

/// `crate::proc::preempt`, counted in [`MM_PREEMPTED`] while switched out
/// (or parked for another CPU).
fn preempt_mid_op() -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    MM_PREEMPTED.fetch_add(1, Relaxed);
    let switched = crate::proc::preempt();
    MM_PREEMPTED.fetch_sub(1, Relaxed);
    switched
}

/// Gives the CPU to the others until no process is stopped inside an
/// address-space operation (each finishes or reaches its next boundary,
/// since a switched-out one is runnable), so that every reference to an
/// anonymous folio is one of its mappings: what the mm audit needs to be
/// exact. Returns false if it could not get there (no process to switch
/// to). The user half installed before is installed again, as in
/// [`cond_resched_anywhere`]; the caller must not touch user memory if a
/// rollover left it empty (the task loop installs it before user code).
pub fn mm_quiesce() -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    let (root, asid) = arch::user_root();
    let generation = asids().lock().generation();
    let op = OpState::save();
    let mut switched = false;
    while MM_PREEMPTED.load(Relaxed) > 0 {
        if !crate::proc::yield_away() {
            op.restore(false);
            return false;
        }
        switched = true;
    }
    let mut stale = false;
    if switched && IDLE_ROOT.get() != Some(&root) {
        // SAFETY: as in `cond_resched_anywhere`: the root this thread had
        // installed, still alive, with the ASID it had in this generation.
        stale = !unsafe { reinstall(root, asid, generation) };
    }
    op.restore(stale);
    true
}

/// Installs `root` with `asid` again if no rollover happened since
/// `generation`, and tells the allocator this CPU runs that number (a
/// rollover then keeps it for the space).
///
/// # Safety
///
/// `root` is a live space's, and `asid` the number it had in
/// `generation`. False if a rollover came first (nothing installed).
unsafe fn reinstall(root: PhysAddr, asid: Asid, generation: u64) -> bool {
    let mut ids = asids().lock();
    if ids.generation() == generation {
        if ids.reinstalled(crate::smp::id(), asid) {
            arch::tlb::flush_all();
        }
        // SAFETY: forwarded from the caller: the number is still the
        // space's (no rollover since), which nothing else was given, and
        // this CPU's TLB holds no older owner's entries under it.
        unsafe { arch::set_user_root(root, asid) };
        return true;
    }
    false
}

/// A preemption point for mm code that does not know the address space
/// it works on (`crate::proc::preempt`): afterwards the user half that
/// was installed is installed again, with its ASID, unless a generation
/// rollover renumbered every space meanwhile, in which case it stays
/// empty until the process's thread installs its space again (before user
/// code runs, in `crate::proc::task_main`); nothing can cache a
/// translation of a space that is not installed, and the rollover flushed
/// everything cached under the old number.
///
/// A rollover renumbers a space the thread shares with others (they may
/// install it under its new number meanwhile) without the operation
/// learning the number: from then until the operation ends its flushes
/// flush every ASID ([`STALE_ASID`]).
pub fn cond_resched_anywhere() {
    let (root, asid) = arch::user_root();
    let generation = asids().lock().generation();
    let op = OpState::save();
    if !preempt_mid_op() {
        return;
    }
    if IDLE_ROOT.get() == Some(&root) {
        op.restore(false);
        return;
    }
    // SAFETY: the root this thread had installed, of a space it is
    // working on (so still alive), with the ASID it had in `generation`.
    let kept = unsafe { reinstall(root, asid, generation) };
    op.restore(!kept);
}

/// The kernel's preemption point inside an operation on the space at
/// `root` ([`MmEnv::cond_resched`]): a switch (`crate::proc::preempt`) if
/// the space is the one installed (the process's own: fork's parent,
/// munmap, mprotect, populate) or none is (exit's teardown, after it
/// uninstalled the space); then the space is installed again if it was,
/// with the ASID it now has. Not while another space is installed (exec
/// building the new image or freeing the old one, a failed fork freeing
/// the child): that one's owner would have to install it again. The
/// installed space's resident pages `rss` are published first, so the
/// OOM killer sees a long populate's pages while it runs.
pub fn cond_resched_space(root: PhysAddr, tag: &mut AsidTag, rss: u64) -> Option<Asid> {
    let installed = arch::user_root().0;
    let ours = installed == root;
    if ours {
        crate::proc::publish_rss(rss);
    } else if IDLE_ROOT.get() != Some(&installed) {
        return None;
    }
    let op = OpState::save();
    if !preempt_mid_op() || !ours {
        if ours {
            op.restore(false);
        }
        return None;
    }
    // Installed again under the number it has now, which the operation
    // takes: nothing is stale any more.
    let asid = match op.mm(root) {
        Some(mm) => mm.reactivate(),
        None => activate_root(root, tag),
    };
    op.restore(false);
    let cpu = crate::smp::id();
    STALE_ASID[cpu].store(false, Ordering::Relaxed);
    Some(asid)
}

/// Runs the deferred-split scan over at most `max` queued folios
/// (`folium_mm::split::deferred_split_scan_some`), with the user page
/// tables rooted at `roots`, which must be every user address space alive
/// now (see `folium_mm::split`): the folios it can split give their
/// unmapped pages back.
pub fn split_deferred_folios(roots: &[PhysAddr], max: u64) -> SplitScan {
    let tables: Vec<PageTable<KernelPteFormat>> = roots
        .iter()
        // SAFETY: each root is a live process's page table, published
        // while its space exists and withdrawn before teardown frees it;
        // every table is RAM in the linear map. The handles only read, and
        // nothing modifies any tree meanwhile: the caller stopped the
        // other CPUs (`smp::stop_others`), the scan has no preemption
        // point, and every other process's operation is at worst stopped
        // at a preemption point, between two tables, where every table it
        // links is whole (see `MmEnv::cond_resched`); the roots were
        // collected just now.
        .map(|&r| unsafe { PageTable::new(r, frames::linear()) })
        .collect();
    let refs: Vec<&PageTable<KernelPteFormat>> = tables.iter().collect();
    frames::with(|b| deferred_split_scan_some(b, &refs, &super::THP, max))
}

/// Runs `f` on the view (`folium_mm::views`) of the user page table at
/// `root`, with `roots` as every user address space alive (`root` is
/// added if missing), so shared large folios are counted in all of them.
pub fn with_view<R>(
    root: PhysAddr,
    roots: &[PhysAddr],
    f: impl FnOnce(&MemView<'_, KernelPteFormat>) -> R,
) -> R {
    let linear = frames::linear();
    // SAFETY: as in `split_deferred_folios`: each root is a live
    // process's page table (published while its space exists, withdrawn
    // before teardown frees it), RAM in the linear map, and the handles
    // only read while nothing changes any tree (the caller stopped the
    // other CPUs, `f` has no preemption point, and another process's
    // operation is at worst stopped at one, between two whole tables).
    // Callers collect `roots` inside that stop.
    let table = |r: PhysAddr| unsafe { PageTable::<KernelPteFormat>::new(r, linear) };
    let mut tables: Vec<PageTable<KernelPteFormat>> = roots.iter().map(|&r| table(r)).collect();
    if !roots.contains(&root) {
        tables.push(table(root));
    }
    let all: Vec<&PageTable<KernelPteFormat>> = tables.iter().collect();
    let own = table(root);
    f(&MemView {
        memmap: frames::memmap(),
        zero_pfn: zero_pfn(),
        table: &own,
        all: &all,
    })
}

/// The shared zero page's frame.
pub fn zero_pfn() -> Pfn {
    *ZERO_PFN
        .get()
        .expect("the zero page is allocated at boot (uspace::init)")
}

/// The shared zero page.
static ZERO_PFN: spin::Once<Pfn> = spin::Once::new();

/// Allocates the shared zero page (boot, after the linear map is up).
pub fn init() {
    ZERO_PFN.call_once(|| {
        let f = frames::alloc_folio(Order::of(0)).expect("no frame for the zero page");
        // SAFETY: a frame just allocated, which nothing else sees yet, RAM
        // in the linear map.
        unsafe {
            arch::zero_pages(
                frames::linear().ptr::<u8>(f.pfn().phys()),
                PAGE_SIZE as usize,
            )
        };
        // Kept for ever: the reference is never put.
        f.into_raw()
    });
    // The ASID allocator's tables (a bit per number, state per CPU), once,
    // at boot rather than inside the first test or process.
    asids();
}

/// ASIDs: as wide as the CPU's (`arch::asid_bits`: 8 or 16 on arm64; 12
/// with x86 PCIDs, where without them they only tell the installed space
/// apart).
static ASIDS: spin::Once<IrqMutex<AsidAllocator>> = spin::Once::new();

fn asids() -> &'static IrqMutex<AsidAllocator> {
    ASIDS.call_once(|| IrqMutex::new(AsidAllocator::new(arch::asid_bits(), crate::smp::MAX_CPUS)))
}

/// The root installed when no user space runs.
static IDLE_ROOT: spin::Once<PhysAddr> = spin::Once::new();

/// The root installed when no user space runs: the empty user table on
/// arm64, the kernel's own root on x86 (recorded on the first call, which
/// must come on the boot CPU before any space was installed).
pub fn idle_root() -> PhysAddr {
    *IDLE_ROOT.call_once(|| arch::user_root().0)
}

/// A new, empty user address space.
pub fn new_space() -> Result<UserSpace, FaultError> {
    UserSpace::new(&mut KernelEnv, USER_END, kernel_half().as_ref())
}

/// What a new user root shares with the kernel's (x86: the upper half);
/// `None` on arm64, or before the kernel's tables are built.
pub fn kernel_half() -> Option<KernelHalf> {
    let slots = arch::KERNEL_ROOT_SLOTS?;
    let root = super::kmap::root()?;
    // SAFETY: the kernel's root is live for the whole run and its
    // upper-half tables are allocated at boot and never freed.
    Some(unsafe { KernelHalf::new(root, slots) })
}

/// Installs `space`, which no thread shares yet (tests, a new image), as
/// the user half, choosing its ASID.
pub fn activate(space: &mut UserSpace) {
    let root = space.root();
    space.asid = activate_root(root, &mut space.asid_tag);
}

/// Installs the space whose root is `root` and whose ASID bookkeeping is
/// `tag` as the user half; returns its ASID.
pub fn activate_root(root: PhysAddr, tag: &mut AsidTag) -> Asid {
    IDLE_ROOT.call_once(|| arch::user_root().0);
    let act = asids().lock().activate(crate::smp::id(), tag);
    if act.flush_all {
        // Leave the outgoing space first: while it stays installed the
        // walker may refill entries under its old number after the flush,
        // and the new generation may hand that number out again.
        deactivate();
        arch::tlb::flush_all();
    }
    // x86 PCIDs: a number new to this space is installed with a flush of
    // it (CR3 bit 63 clear), so nothing cached under it survives: not an
    // earlier owner's entries, nor what the CPU cached between a
    // rollover's flush_all and this install while that owner (numbered
    // alike in the old generation) was still installed.
    #[cfg(target_arch = "x86_64")]
    if act.fresh {
        arch::tlb::flush_on_install(act.asid);
    }
    // SAFETY: `root` is a live space's tree of this format whose root
    // copies the kernel slots (the callers': `activate`'s own space, or
    // the one an operation at a preemption point works on); a rollover
    // flushed every stale ASID above, and every change to the space went
    // through `arch::tlb::Hw` with its ASID.
    unsafe { arch::set_user_root(root, act.asid) };
    act.asid
}

/// Installs the empty user half again (no process running).
pub fn deactivate() {
    if let Some(&root) = IDLE_ROOT.get() {
        // SAFETY: the root that was installed before any space: the empty
        // user table on arm64, the kernel's own root on x86.
        unsafe { arch::set_user_root(root, Asid(0)) };
    }
}
