//! Per-CPU setup for user mode: SSE for user code (CR0.MP, !EM, !TS;
//! CR4.OSFXSR, OSXMMEXCPT), SMEP, SMAP and PCIDs where CPUID reports
//! them, the legacy PICs masked, and SYSCALL (`user::init`).

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set once CR4.SMAP is on: the user-copy routine then brackets its
/// accesses with `stac`/`clac` (which fault as #UD on CPUs without SMAP).
/// Read by `idt.S`, so a plain byte.
pub(super) static SMAP_ON: AtomicBool = AtomicBool::new(false);
static SMEP_ON: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
/// Native x87 error reporting: an unmasked x87 exception raises #MF (as
/// Linux sets it), not the legacy FERR# line.
const CR0_NE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_PGE: u64 = 1 << 7;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

/// CPUID.(EAX=7, ECX=0):EBX, 0 if leaf 7 is absent.
fn leaf7_ebx() -> u32 {
    if super::cpuid(0)[0] < 7 {
        return 0;
    }
    core::arch::x86_64::__cpuid_count(7, 0).ebx
}

/// CPUID.1:ECX bit 17: process-context identifiers.
pub fn has_pcid() -> bool {
    super::cpuid(1)[2] & (1 << 17) != 0
}

/// CPUID.(EAX=7, ECX=0):EBX bit 10: the INVPCID instruction.
pub fn has_invpcid() -> bool {
    leaf7_ebx() & (1 << 10) != 0
}

/// True if SMEP is on (the kernel cannot execute user pages).
pub fn smep_enabled() -> bool {
    SMEP_ON.load(Ordering::Relaxed)
}

/// True if SMAP is on (the kernel cannot touch user pages outside
/// `copy_from_user` / `copy_to_user`).
pub fn smap_enabled() -> bool {
    SMAP_ON.load(Ordering::Relaxed)
}

/// Turns the features on; runs once, at boot, from `init_exceptions`.
pub(super) fn init() {
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let (smep, smap, pcid) = enable_features();
    SMEP_ON.store(smep, Ordering::Relaxed);
    SMAP_ON.store(smap, Ordering::Relaxed);
    // SAFETY: CR4.PCIDE was set exactly when `pcid`; INVPCID as CPUID
    // reports it.
    unsafe { super::mm::set_pcid(pcid, has_invpcid()) };
    super::apic::mask_pic();
    super::user::init(super::gdt::rsp0_ptr());
}

/// The same features on a secondary CPU (the boot CPU's choices, which
/// CPUID gives alike on every CPU of the machine), and SYSCALL with this
/// CPU's TSS.RSP0 at `rsp0`.
pub(super) fn init_secondary(rsp0: *mut u64) {
    let (smep, smap, pcid) = enable_features();
    // Global kernel pages, as the boot CPU set them when it switched to
    // the kernel's tables (this CPU started on them).
    // SAFETY: CR4.PGE only makes the kernel's global entries survive CR3
    // writes; the kernel half is identical in every root.
    unsafe {
        asm!(
            "mov {0}, cr4",
            "or {0}, {1}",
            "mov cr4, {0}",
            out(reg) _,
            const CR4_PGE,
            options(nostack, preserves_flags)
        );
    }
    assert!(
        (smep, smap, pcid) == (smep_enabled(), smap_enabled(), super::mm::pcid_enabled()),
        "a secondary CPU's features differ from the boot CPU's"
    );
    super::user::init(rsp0);
}

/// Sets this CPU's CR0 and CR4 bits; returns (SMEP, SMAP, PCIDs) as set.
fn enable_features() -> (bool, bool, bool) {
    let ebx = leaf7_ebx();
    let smep = ebx & (1 << 7) != 0;
    let smap = ebx & (1 << 20) != 0;
    let mut cr4_set = CR4_OSFXSR | CR4_OSXMMEXCPT;
    if smep {
        cr4_set |= CR4_SMEP;
    }
    if smap {
        cr4_set |= CR4_SMAP;
    }
    // CR4.PCIDE may only be set while CR3's PCID field is 0 (#GP
    // otherwise); the boot tables (and a secondary's first CR3) are
    // installed with it clear.
    let pcid = has_pcid() && super::mm::current_cr3() & 0xfff == 0;
    if pcid {
        cr4_set |= CR4_PCIDE;
    }
    // SAFETY: FXSR/SSE are part of x86-64, so OSFXSR/OSXMMEXCPT and the
    // CR0 bits are valid; SMEP/SMAP only where CPUID reports them. The
    // kernel's own pages are supervisor pages (never U/S), and nothing
    // touches user memory outside the stac/clac copy routine, so neither
    // feature faults kernel code. PCIDE only where CPUID reports PCIDs, in
    // long mode, with CR3's PCID field 0 (checked above): the running
    // tables become PCID 0's.
    unsafe {
        asm!(
            "mov {t}, cr0",
            "and {t}, {clear0}",
            "or {t}, {set0}",
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, {set4}",
            "mov cr4, {t}",
            t = out(reg) _,
            clear0 = in(reg) !(CR0_EM | CR0_TS),
            set0 = in(reg) CR0_MP | CR0_NE,
            set4 = in(reg) cr4_set,
            options(nostack, preserves_flags)
        );
    }
    (smep, smap, pcid)
}

/// Reads CR4 (tests).
pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
