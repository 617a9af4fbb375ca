//! x86_64 memory-management hooks: the PTE format, reachability under the
//! early map, the switch to the kernel's tables, page zeroing, and user
//! address spaces tagged with PCIDs where the CPU has them.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};

use folium_boot::cpus::MAX_CPUS;
use folium_boot::x86_64::{EARLY_LINEAR_LIMIT, KERNEL_VMA};
use folium_boot::{BootInfo, PhysRange};
use folium_mm::tlb::Asid;
use folium_mm::{PhysAddr, VirtAddr};

/// The page-table format of this architecture.
pub type KernelPteFormat = folium_mm::pgtable::X86_64;

/// The part of `r` below the 4 GiB the early tables map.
pub fn early_reachable(r: PhysRange) -> Option<PhysRange> {
    let end = r.end.min(PhysAddr::new(EARLY_LINEAR_LIMIT));
    (r.start < end).then_some(PhysRange {
        start: r.start,
        end,
    })
}

/// Virtual minus physical address of the higher-half kernel image.
pub fn kimage_voffset(_info: &BootInfo) -> u64 {
    KERNEL_VMA
}

/// Makes sure the higher-half GDT is loaded (the boot GDT sits in low
/// memory that the kernel's tables do not map; `init_exceptions` normally
/// loaded it already), then installs `root` in CR3 and turns on global
/// pages. One root serves both halves here, so no table is taken from
/// `_zeroed_table`.
///
/// # Safety
///
/// `root` must map the running kernel at the same virtual addresses as the
/// early tables.
pub unsafe fn switch_kernel_tables(root: PhysAddr, _zeroed_table: fn() -> PhysAddr) {
    super::gdt::init();
    // SAFETY: the caller guarantees `root` maps the kernel; CR4.PGE is set
    // only after the switch, and toggling it flushes global entries too.
    unsafe {
        asm!("mov cr3, {}", in(reg) root.as_u64(), options(nostack, preserves_flags));
        asm!(
            "mov {0}, cr4",
            "or {0}, {1}",
            "mov cr4, {0}",
            out(reg) _,
            const 1u64 << 7,
            options(nostack, preserves_flags)
        );
    }
}

/// CR3 as it reads (bit 63 always reads 0).
pub fn current_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The root of the live tables (CR3's base address).
pub fn current_kernel_root() -> PhysAddr {
    PhysAddr::new(current_cr3() & 0x000f_ffff_ffff_f000)
}

/// Zeroes `len` bytes at `ptr`, 64 bytes per iteration with eight 8-byte
/// stores (measured faster than `rep stosq` under QEMU TCG; the kernel is
/// built without SSE, so wider stores are not available).
///
/// # Safety
///
/// `[ptr, ptr + len)` must be writable memory owned by the caller; `len`
/// a non-zero multiple of 64.
pub unsafe fn zero_pages(ptr: *mut u8, len: usize) {
    // SAFETY: the caller owns the range; the loop writes exactly `len`
    // bytes (a multiple of 64) from `ptr`.
    unsafe {
        asm!(
            "2:",
            "mov qword ptr [{p}], {z}",
            "mov qword ptr [{p} + 8], {z}",
            "mov qword ptr [{p} + 16], {z}",
            "mov qword ptr [{p} + 24], {z}",
            "mov qword ptr [{p} + 32], {z}",
            "mov qword ptr [{p} + 40], {z}",
            "mov qword ptr [{p} + 48], {z}",
            "mov qword ptr [{p} + 56], {z}",
            "add {p}, 64",
            "sub {n}, 64",
            "jnz 2b",
            p = inout(reg) ptr => _,
            n = inout(reg) len => _,
            z = in(reg) 0u64,
            options(nostack)
        );
    }
}

/// CR3 bit 63 with CR4.PCIDE: keep the new PCID's cached translations.
pub(super) const CR3_NOFLUSH: u64 = 1 << 63;
/// CR3 bits 11:0 with CR4.PCIDE: the PCID.
pub(super) const CR3_PCID: u64 = 0xfff;

/// INVPCID types (Intel SDM vol. 2, INVPCID).
pub(super) const INVPCID_ADDRESS: u64 = 0;
pub(super) const INVPCID_CONTEXT: u64 = 1;
pub(super) const INVPCID_ALL_NON_GLOBAL: u64 = 3;

/// Pages beyond which a range flush drops the whole address space: one
/// INVLPG per page up to 33 pages, as Linux's default
/// `tlb_single_page_flush_ceiling`.
const RANGE_PAGES_MAX: u64 = 33;

/// What the TLB bookkeeping needs of the CPU. [`Cpu`] is the real one;
/// the self-tests drive the same bookkeeping on a model with PCIDs,
/// which QEMU's TCG lacks.
pub(super) trait TlbHw {
    /// Drops the installed PCID's entry for `va` (and a global one).
    fn invlpg(&self, va: u64);
    /// Writes CR3 back as it reads (bit 63 reads as 0): drops the
    /// installed PCID's non-global entries (all of them without PCIDs).
    fn reload_cr3(&self);
    /// Drops every entry of every PCID, global ones included.
    fn flush_everything(&self);
    /// Executes INVPCID of type `kind` for `pcid` (and `va` for type 0).
    ///
    /// # Safety
    ///
    /// The CPU must implement INVPCID; `kind` is one of the types above
    /// and `va` canonical.
    unsafe fn invpcid(&self, kind: u64, pcid: u16, va: u64);
    /// Loads CR3.
    ///
    /// # Safety
    ///
    /// As for [`set_user_root`]; the PCID field and bit 63 may be set
    /// only with CR4.PCIDE on.
    unsafe fn write_cr3(&self, v: u64);
}

/// The CPU this runs on.
pub(super) struct Cpu;

impl TlbHw for Cpu {
    fn invlpg(&self, va: u64) {
        // SAFETY: invalidating a TLB entry never breaks memory safety.
        unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
    }

    fn reload_cr3(&self) {
        // SAFETY: rewriting CR3 with its own value only flushes the TLB.
        unsafe {
            asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags))
        };
    }

    fn flush_everything(&self) {
        // SAFETY: toggling CR4.PGE off and on again drops every TLB entry
        // of every PCID, global ones included, and changes nothing else;
        // the kernel keeps running on the same tables.
        unsafe {
            asm!(
                "mov {0}, cr4",
                "xor {0}, {1}",
                "mov cr4, {0}",
                "xor {0}, {1}",
                "mov cr4, {0}",
                out(reg) _,
                const 1u64 << 7,
                options(nostack, preserves_flags)
            )
        };
    }

    unsafe fn invpcid(&self, kind: u64, pcid: u16, va: u64) {
        let desc: [u64; 2] = [u64::from(pcid), va];
        // SAFETY: forwarded from the caller; the descriptor is a live
        // 16-byte local, only read.
        unsafe {
            asm!(
                "invpcid {k}, xmmword ptr [{d}]",
                k = in(reg) kind,
                d = in(reg) &raw const desc,
                options(nostack, preserves_flags, readonly)
            )
        };
    }

    unsafe fn write_cr3(&self, v: u64) {
        // SAFETY: forwarded from the caller.
        unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) };
    }
}

/// Which address space is installed and which PCIDs owe a flush.
///
/// Without PCIDs, loading CR3 drops every non-global entry, so a space
/// that is not installed has nothing cached and its flushes are no-ops;
/// the installed one uses `invlpg` or a CR3 reload.
///
/// With PCIDs, a space keeps its entries (tagged with its PCID) while
/// others run, so a flush must reach it when it is not installed too:
/// INVPCID where the CPU has it; otherwise the PCID is marked stale and
/// its next install clears CR3 bit 63, which drops all its entries then.
/// `invlpg` and a CR3 reload act only on the installed PCID (and global
/// entries), so the installed space keeps using them. PCID 0 is the
/// kernel's own root, which maps no user pages: flushes for it matter
/// only while it is installed.
///
/// Callers keep interrupts masked across a call, so no flush slips
/// between the bookkeeping and the CPU operation it decides.
pub(super) struct PcidTlb {
    pcid: AtomicBool,
    invpcid: AtomicBool,
    /// The installed space's ASID (its PCID with PCIDs); 0: the kernel's
    /// root. Set once CR3 holds it.
    current: AtomicU16,
    /// The ASID being installed: set before the install reads its marks
    /// (and before CR3 changes), so from then on until the next install
    /// both it and `current` count as running here ([`Self::defer_flush`]).
    next: AtomicU16,
    /// The last value written to CR3 (bit 63 is write-only).
    last_cr3: AtomicU64,
    /// One bit per PCID: drop its entries on its next install.
    stale: [AtomicU64; 64],
}

impl PcidTlb {
    pub(super) const fn new() -> Self {
        PcidTlb {
            pcid: AtomicBool::new(false),
            invpcid: AtomicBool::new(false),
            current: AtomicU16::new(0),
            next: AtomicU16::new(0),
            last_cr3: AtomicU64::new(0),
            stale: [const { AtomicU64::new(0) }; 64],
        }
    }

    /// Sets what the hardware offers.
    ///
    /// # Safety
    ///
    /// `pcid` only if CR4.PCIDE is on in the hardware later passed to
    /// this state's methods, `invpcid` only if it executes INVPCID.
    pub(super) unsafe fn configure(&self, pcid: bool, invpcid: bool) {
        self.pcid.store(pcid, Ordering::Relaxed);
        self.invpcid.store(pcid && invpcid, Ordering::Relaxed);
    }

    pub(super) fn pcid_on(&self) -> bool {
        self.pcid.load(Ordering::Relaxed)
    }

    pub(super) fn invpcid_on(&self) -> bool {
        self.invpcid.load(Ordering::Relaxed)
    }

    pub(super) fn current(&self) -> Asid {
        Asid(self.current.load(Ordering::Relaxed))
    }

    pub(super) fn last_cr3(&self) -> u64 {
        self.last_cr3.load(Ordering::Relaxed)
    }

    fn is_current(&self, asid: Asid) -> bool {
        self.current() == asid
    }

    /// `asid` as a PCID: 0 without PCIDs (CR3's low bits are PWT/PCD then).
    fn pcid_of(&self, asid: Asid) -> u16 {
        if self.pcid_on() {
            (u64::from(asid.0) & CR3_PCID) as u16
        } else {
            0
        }
    }

    /// True if `asid` may hold user entries while another space runs.
    fn tagged_elsewhere(&self, asid: Asid) -> bool {
        self.pcid_of(asid) != 0 && !self.is_current(asid)
    }

    fn stale_word(&self, asid: Asid) -> (&AtomicU64, u64) {
        let p = (u64::from(asid.0) & CR3_PCID) as usize;
        (&self.stale[p / 64], 1 << (p % 64))
    }

    fn mark_stale(&self, asid: Asid) {
        let (w, bit) = self.stale_word(asid);
        w.fetch_or(bit, Ordering::Relaxed);
    }

    /// Another CPU's flush of `asid` (its page tables already changed):
    /// this CPU owes it a flush at its next install of `asid`, and true
    /// if it runs `asid` now, so the flush must reach it at once (an
    /// IPI). A CPU that left the space (idle, or running another one)
    /// cannot use entries tagged `asid` until it installs it again:
    /// without PCIDs that install drops them; with PCIDs it finds this
    /// mark and drops them then (Linux's deferred flush of a CPU that
    /// switched away, by `tlb_gen`). The mark comes before the reads of
    /// `next` and `current`, and [`install`](Self::install) sets `next`
    /// before it reads the mark (all sequentially consistent), so an
    /// install racing with this call sees the mark or is seen running.
    /// A CPU switching away from `asid` still reads as running it until
    /// its CR3 no longer holds it (`current` changes after the CR3
    /// write), so it takes the IPI: until then it may still walk the
    /// space's tables, which the caller may be about to free.
    pub(super) fn defer_flush(&self, asid: Asid) -> bool {
        let (w, bit) = self.stale_word(asid);
        w.fetch_or(bit, Ordering::SeqCst);
        self.next.load(Ordering::SeqCst) == asid.0 || self.current.load(Ordering::SeqCst) == asid.0
    }

    /// A flush of `asid` another CPU asked for ran here while `asid` was
    /// installed: the mark it left is paid (a later flusher that marks
    /// again sees this CPU running `asid` and interrupts it), so the next
    /// install need not flush again.
    pub(super) fn flushed_while_running(&self, asid: Asid) {
        if self.is_current(asid) {
            let (w, bit) = self.stale_word(asid);
            w.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// True if `asid` owes a flush at its next install.
    pub(super) fn is_stale(&self, asid: Asid) -> bool {
        let (w, bit) = self.stale_word(asid);
        w.load(Ordering::Relaxed) & bit != 0
    }

    /// Invalidates the translation of `va` in `asid`.
    pub(super) fn flush_page(&self, hw: &impl TlbHw, asid: Asid, va: VirtAddr) {
        if self.is_current(asid) {
            hw.invlpg(va.as_u64());
        } else if self.tagged_elsewhere(asid) {
            if self.invpcid_on() {
                // SAFETY: `configure` vouched for INVPCID; user addresses
                // are canonical.
                unsafe { hw.invpcid(INVPCID_ADDRESS, self.pcid_of(asid), va.as_u64()) };
            } else {
                self.mark_stale(asid);
            }
        }
    }

    /// Invalidates every translation of `[start, end)` in `asid`.
    pub(super) fn flush_range(&self, hw: &impl TlbHw, asid: Asid, start: VirtAddr, end: VirtAddr) {
        let pages = (end - start).div_ceil(4096);
        if pages > RANGE_PAGES_MAX || (self.tagged_elsewhere(asid) && !self.invpcid_on()) {
            return self.flush_asid(hw, asid);
        }
        for i in 0..pages {
            self.flush_page(hw, asid, start + i * 4096);
        }
    }

    /// Invalidates every translation tagged `asid`.
    pub(super) fn flush_asid(&self, hw: &impl TlbHw, asid: Asid) {
        if self.is_current(asid) {
            hw.reload_cr3();
        } else if self.tagged_elsewhere(asid) {
            if self.invpcid_on() {
                // SAFETY: `configure` vouched for INVPCID; the address is
                // ignored for this type.
                unsafe { hw.invpcid(INVPCID_CONTEXT, self.pcid_of(asid), 0) };
            } else {
                self.mark_stale(asid);
            }
        }
    }

    /// Drops every non-global entry of every address space (an ASID
    /// generation rollover). With PCIDs a CR3 reload is not enough: it
    /// reaches the installed PCID only.
    pub(super) fn flush_all(&self, hw: &impl TlbHw) {
        if !self.pcid_on() {
            hw.reload_cr3();
            return;
        }
        if self.invpcid_on() {
            // SAFETY: `configure` vouched for INVPCID; the descriptor is
            // ignored for this type.
            unsafe { hw.invpcid(INVPCID_ALL_NON_GLOBAL, 0, 0) };
        } else {
            hw.flush_everything();
        }
        for w in &self.stale {
            w.swap(0, Ordering::SeqCst);
        }
    }

    /// The allocator just gave `asid` to a space: whatever is cached under
    /// the number (an earlier owner's entries, or what the CPU cached
    /// after a rollover's flush while that owner was still installed) must
    /// not survive its install.
    pub(super) fn flush_on_install(&self, asid: Asid) {
        if self.pcid_of(asid) != 0 {
            self.mark_stale(asid);
        }
    }

    /// Installs `root` tagged `asid`: with PCIDs, CR3 carries the PCID
    /// and, unless the PCID owes a flush, the no-flush bit.
    ///
    /// # Safety
    ///
    /// As for [`set_user_root`], on `hw`.
    pub(super) unsafe fn install(&self, hw: &impl TlbHw, root: PhysAddr, asid: Asid) {
        let pcid = self.pcid_of(asid);
        let mut cr3 = root.as_u64() | u64::from(pcid);
        // Running `asid` from here on, as other CPUs' flushes see it,
        // before the marks they left are read (see `defer_flush`); the
        // outgoing space stays `current` until CR3 has left it.
        self.next.store(asid.0, Ordering::SeqCst);
        let (w, bit) = self.stale_word(asid);
        let owed = w.fetch_and(!bit, Ordering::SeqCst) & bit != 0;
        if self.pcid_on() && !owed {
            cr3 |= CR3_NOFLUSH;
        }
        self.last_cr3.store(cr3, Ordering::Relaxed);
        // SAFETY: forwarded from the caller; PCID bits and bit 63 only
        // with PCIDs on, which `configure` vouched for.
        unsafe { hw.write_cr3(cr3) };
        // CR3 (a serializing write) no longer holds the outgoing space.
        self.current.store(asid.0, Ordering::SeqCst);
    }
}

/// Each CPU's TLB bookkeeping.
static CPU_TLB: [PcidTlb; MAX_CPUS] = [const { PcidTlb::new() }; MAX_CPUS];

/// This CPU's.
fn this_tlb() -> &'static PcidTlb {
    &CPU_TLB[crate::smp::id()]
}

/// Per ASID number: the CPUs (a bit each) that installed it, and so may
/// cache translations tagged with it (Linux's `mm_cpumask`). Bits are
/// only added. A flush of the number interrupts those of them that run
/// it now, and leaves the others a mark to flush it at their next
/// install ([`PcidTlb::defer_flush`]).
static ASID_CPUS: [AtomicU8; 1 << 12] = [const { AtomicU8::new(0) }; 1 << 12];
const _: () = assert!(MAX_CPUS <= 8, "ASID_CPUS holds a byte per number");

fn asid_cpus(asid: Asid) -> &'static AtomicU8 {
    &ASID_CPUS[usize::from(asid.0) & 0xfff]
}

/// Records what `cpu::init` turned on.
///
/// # Safety
///
/// `pcid` only once CR4.PCIDE is set, `invpcid` only if CPUID reports
/// INVPCID.
pub(super) unsafe fn set_pcid(pcid: bool, invpcid: bool) {
    for t in &CPU_TLB {
        // SAFETY: forwarded from the caller; each CPU's `PcidTlb` is used
        // with `Cpu` on that CPU only, and every CPU has the boot CPU's
        // features (checked when a secondary starts).
        unsafe { t.configure(pcid, invpcid) };
    }
}

/// True if user address spaces are tagged with PCIDs (CR4.PCIDE).
pub fn pcid_enabled() -> bool {
    this_tlb().pcid_on()
}

/// True if a PCID that is not installed is flushed with INVPCID
/// (otherwise on its next install).
pub fn invpcid_enabled() -> bool {
    this_tlb().invpcid_on()
}

/// Width of the address-space numbers: 12 (CR3's PCID field) with PCIDs;
/// without them the number only tells the installed space apart.
pub fn asid_bits() -> u32 {
    if pcid_enabled() { 12 } else { 8 }
}

/// The CR3 value last written by [`set_user_root`], bit 63 included.
pub fn last_cr3_written() -> u64 {
    this_tlb().last_cr3()
}

/// TLB maintenance for user address spaces: on this CPU (see [`PcidTlb`]),
/// then by a cross-call on every other CPU that installed the ASID (a
/// shootdown, once per operation: the mmu_gather calls here once per
/// batch).
pub mod tlb {
    use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};

    use folium_boot::cpus::MAX_CPUS;
    use folium_mm::VirtAddr;
    use folium_mm::tlb::Asid;

    use super::{CPU_TLB, Cpu, asid_cpus, this_tlb};
    use crate::arch::{irq_restore, irq_save};

    /// A flush another CPU runs for the sender: one slot per sender (it
    /// waits for the cross-call, so the slot stays put meanwhile).
    struct Request {
        kind: AtomicU8,
        asid: AtomicU16,
        start: AtomicU64,
        end: AtomicU64,
    }

    const PAGE: u8 = 0;
    const RANGE: u8 = 1;
    const ASID: u8 = 2;

    static REQUESTS: [Request; MAX_CPUS] = [const {
        Request {
            kind: AtomicU8::new(0),
            asid: AtomicU16::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }; MAX_CPUS];

    /// Runs the sender's request on this CPU (a cross-call: a leaf).
    fn run_request(sender: u64) {
        let r = &REQUESTS[sender as usize % MAX_CPUS];
        let asid = Asid(r.asid.load(Ordering::Relaxed));
        let (start, end) = (
            r.start.load(Ordering::Relaxed),
            r.end.load(Ordering::Relaxed),
        );
        flush_here(
            r.kind.load(Ordering::Relaxed),
            asid,
            VirtAddr::new(start),
            VirtAddr::new(end),
        );
        // The sender marked this CPU too: no flush owed at its next install.
        this_tlb().flushed_while_running(asid);
    }

    /// Does `kind` of flush on this CPU.
    fn flush_here(kind: u8, asid: Asid, start: VirtAddr, end: VirtAddr) {
        match kind {
            PAGE => this_tlb().flush_page(&Cpu, asid, start),
            RANGE => this_tlb().flush_range(&Cpu, asid, start, end),
            _ => this_tlb().flush_asid(&Cpu, asid),
        }
    }

    /// Shootdowns sent so far (one cross-call to every other CPU that
    /// installed the ASID): what `shootdowns` reports.
    static SHOOTDOWNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// TLB maintenance that reached the other CPUs so far: on x86 each
    /// shootdown (one IPI round to the CPUs in the ASID's mask that run
    /// it).
    pub fn shootdowns() -> u64 {
        SHOOTDOWNS.load(Ordering::Relaxed)
    }

    /// CPUs left out of a flush because they did not run the space then:
    /// each flushes it at its next install instead of taking an IPI.
    static DEFERRED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// How many flushes of other CPUs were deferred to their next install
    /// of the space (x86; arm64's broadcast has no such case).
    pub fn deferred() -> u64 {
        DEFERRED.load(Ordering::Relaxed)
    }

    /// Does `kind` here, then on the other CPUs that installed `asid`.
    fn flush(kind: u8, asid: Asid, start: VirtAddr, end: VirtAddr) {
        let flags = irq_save();
        let me = crate::smp::id();
        flush_here(kind, asid, start, end);
        // The page-table store that prompted this flush must be visible
        // before the mask is read: a CPU installing the number at this
        // moment sets its bit (a locked op) and then walks the tables, so
        // either it sees the new entry or this flush sees its bit.
        core::sync::atomic::fence(Ordering::SeqCst);
        let mask = usize::from(asid_cpus(asid).load(Ordering::Relaxed)) & !(1 << me);
        // ASID 0 is the idle tag: a space that never ran has nothing
        // cached anywhere.
        if asid.0 == 0 {
            irq_restore(flags);
            return;
        }
        // Only the CPUs running the space now are interrupted; the others
        // flush it when they next install it.
        let mut others = 0;
        for cpu in (0..MAX_CPUS).filter(|c| mask & (1 << c) != 0) {
            if CPU_TLB[cpu].defer_flush(asid) {
                others |= 1 << cpu;
            } else {
                DEFERRED.fetch_add(1, Ordering::Relaxed);
            }
        }
        if others != 0 {
            SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
            let r = &REQUESTS[me];
            r.kind.store(kind, Ordering::Relaxed);
            r.asid.store(asid.0, Ordering::Relaxed);
            r.start.store(start.as_u64(), Ordering::Relaxed);
            r.end.store(end.as_u64(), Ordering::Relaxed);
            crate::smp::call_on(others, run_request, me as u64);
        }
        irq_restore(flags);
    }

    /// Invalidates the translation of `va` in `asid`.
    pub fn flush_page(asid: Asid, va: VirtAddr) {
        flush(PAGE, asid, va, va);
    }

    /// Invalidates every translation of `[start, end)` in `asid`.
    pub fn flush_range(asid: Asid, start: VirtAddr, end: VirtAddr) {
        flush(RANGE, asid, start, end);
    }

    /// Invalidates every translation tagged `asid`.
    pub fn flush_asid(asid: Asid) {
        flush(ASID, asid, VirtAddr::new(0), VirtAddr::new(0));
    }

    /// Drops every non-global entry of every address space on this CPU
    /// (its flush after an ASID rollover; each CPU does its own).
    pub fn flush_all() {
        let flags = irq_save();
        this_tlb().flush_all(&Cpu);
        irq_restore(flags);
    }

    /// The TLBs as the generic mm code drives them: the arch's own
    /// implementation of [`TlbOps`](folium_mm::tlb::TlbOps).
    pub struct Hw;

    impl folium_mm::tlb::TlbOps for Hw {
        fn flush_page(&self, asid: Asid, va: VirtAddr) {
            flush_page(asid, va);
        }
        fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr) {
            flush_range(asid, start, end);
        }
        fn flush_asid(&self, asid: Asid) {
            flush_asid(asid);
        }
    }

    /// `asid` was just handed out: flush it when it is next installed on
    /// this CPU.
    pub fn flush_on_install(asid: Asid) {
        this_tlb().flush_on_install(asid);
    }

    /// True if `asid` owes a flush at its next install here (tests).
    pub fn is_stale(asid: Asid) -> bool {
        this_tlb().is_stale(asid)
    }
}

/// Installs `root` (a full PML4 whose kernel slots copy the kernel's) as
/// the current address space, tagged `asid` (see [`PcidTlb::install`]).
///
/// # Safety
///
/// `root` must be a valid x86_64 PML4 mapping the kernel exactly as the
/// kernel's own root does, and stay alive while installed; with PCIDs,
/// every change to its user mappings since `asid` last ran must have gone
/// through [`tlb`] with `asid`, and `asid` must not be another live
/// space's in this generation.
pub unsafe fn set_user_root(root: PhysAddr, asid: Asid) {
    let flags = super::irq_save();
    // This CPU may now cache translations tagged `asid`.
    asid_cpus(asid).fetch_or(1 << crate::smp::id(), Ordering::Release);
    // SAFETY: forwarded from the caller; `Cpu` is this CPU.
    unsafe { this_tlb().install(&Cpu, root, asid) };
    super::irq_restore(flags);
}

/// The installed root and its ASID.
pub fn user_root() -> (PhysAddr, Asid) {
    (current_kernel_root(), this_tlb().current())
}

/// Table slots of a user root that copy the kernel's: the upper half.
pub const KERNEL_ROOT_SLOTS: Option<core::ops::Range<usize>> = Some(256..512);
