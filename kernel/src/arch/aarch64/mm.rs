//! aarch64 memory-management hooks: the PTE format, reachability under the
//! early map, the switch to the kernel's tables, and fast page zeroing.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, TTBR0_EL1, TTBR1_EL1};
use folium_boot::aarch64::{MemKind, early_map, switch_tables};
use folium_boot::{BootInfo, PhysRange};
use folium_mm::PhysAddr;

/// The page-table format of this architecture.
pub type KernelPteFormat = folium_mm::pgtable::Aarch64;

/// The part of `r` the early tables can reach (mapping it if needed): at
/// most the first 512 GiB, so a bank crossing that line keeps its lower
/// part reachable (the rest is handed over once the kernel's tables map
/// it).
pub fn early_reachable(r: PhysRange) -> Option<PhysRange> {
    let r = folium_boot::memplan::below(r, folium_boot::memplan::AARCH64_EARLY_LIMIT)?;
    early_map(r.start, r.size(), MemKind::Normal)
        .ok()
        .map(|_| r)
}

/// Virtual minus physical address of the kernel image.
pub fn kimage_voffset(info: &BootInfo) -> u64 {
    info.kernel_virt.as_u64() - info.kernel_phys.start.as_u64()
}

/// Installs the kernel's tables in TTBR1 and an empty table, taken from
/// `zeroed_table`, in TTBR0 (where no user space runs yet).
///
/// # Safety
///
/// `root` must map the running kernel at the same virtual addresses as the
/// early tables (see `folium_boot::aarch64::switch_tables`), and
/// `zeroed_table` must return a zeroed table frame nothing else uses.
pub unsafe fn switch_kernel_tables(root: PhysAddr, zeroed_table: fn() -> PhysAddr) {
    let info = folium_boot::info().expect("boot info");
    let user_root = zeroed_table();
    // SAFETY: forwarded from the caller; interrupts are masked at boot; the
    // user root is a zeroed table (caller); this runs once.
    unsafe { switch_tables(root, user_root, kimage_voffset(info)) };
}

/// The root of the live kernel-half tables (TTBR1_EL1's base address).
pub fn current_kernel_root() -> PhysAddr {
    PhysAddr::new(TTBR1_EL1.get_baddr())
}

/// Zeroes `len` bytes at `ptr` (both multiples of 4 KiB), 128 bytes per
/// iteration with paired 128-bit stores of a zero vector register. (`dc
/// zva` measured slower under QEMU TCG, where each one is a helper call.)
///
/// # Safety
///
/// `[ptr, ptr + len)` must be writable normal memory owned by the caller;
/// `len` a non-zero multiple of 128.
pub unsafe fn zero_pages(ptr: *mut u8, len: usize) {
    // SAFETY: the caller owns the range; the loop writes exactly `len`
    // bytes (a multiple of 128) from `ptr`.
    unsafe {
        asm!(
            "movi v0.2d, #0",
            "2:",
            "stp q0, q0, [{p}]",
            "stp q0, q0, [{p}, #32]",
            "stp q0, q0, [{p}, #64]",
            "stp q0, q0, [{p}, #96]",
            "add {p}, {p}, #128",
            "subs {n}, {n}, #128",
            "b.ne 2b",
            p = inout(reg) ptr => _,
            n = inout(reg) len => _,
            out("v0") _,
            options(nostack)
        );
    }
}

/// TLB maintenance for user address spaces (TTBR0, tagged by ASID),
/// broadcast to every CPU of the inner-shareable domain (`TLBI ...IS`,
/// completed by `DSB ISH`), as Linux's arm64 does: a space's entries may
/// be cached on any CPU it ran on. The `dsb ishst` first makes the
/// page-table store that prompted the flush visible to every walker. Only
/// the rollover flush ([`tlb::flush_all`]) is local: each CPU does its own
/// (`folium_mm::asid`).
pub mod tlb {
    use core::arch::asm;

    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{ID_AA64ISAR0_EL1, Readable};

    use folium_mm::VirtAddr;
    use folium_mm::tlb::{ARM64_RANGE_PAGES_MAX, Asid, TlbiOp, arm64_range_ops};

    /// Pages beyond which a range flush drops the whole ASID instead, on a
    /// CPU without the range instructions: one TLBI VAE1 per page below a
    /// table's worth (512), as Linux does there (`MAX_DVM_OPS`). With
    /// FEAT_TLBIRANGE, a handful of range operations cover up to
    /// [`ARM64_RANGE_PAGES_MAX`] pages, and only longer ranges drop the
    /// ASID.
    const RANGE_PAGES_MAX: u64 = 511;

    /// Whether the CPU has FEAT_TLBIRANGE (ID_AA64ISAR0_EL1.TLB at least
    /// 0b0010, as Linux reads the field: later values keep the range
    /// instructions), read once: 0 not yet known, 1 no, 2 yes.
    static TLBI_RANGE: AtomicU8 = AtomicU8::new(0);

    /// True if the CPU implements the range TLBI instructions.
    pub fn has_range() -> bool {
        match TLBI_RANGE.load(Relaxed) {
            0 => {
                // The crate names no TLB field (bits 59:56) in this register.
                let yes = (ID_AA64ISAR0_EL1.get() >> 56) & 0xf >= 0b0010;
                TLBI_RANGE.store(if yes { 2 } else { 1 }, Relaxed);
                yes
            }
            v => v == 2,
        }
    }

    fn tlbi(asid: Asid, op: TlbiOp) {
        let asid = u64::from(asid.0) << 48;
        match op {
            TlbiOp::Page { vpn } => {
                let arg = asid | (vpn & ((1 << 44) - 1));
                // SAFETY: invalidating TLB entries never breaks memory
                // safety; at worst the walker refetches an entry.
                unsafe { asm!("tlbi vae1is, {}", in(reg) arg, options(nostack, preserves_flags)) };
            }
            TlbiOp::Range { vpn, scale, num } => {
                // ASID, TG = 4 KiB granule, SCALE, NUM, no level hint, and
                // the base's page number.
                let arg = asid
                    | (0b01 << 46)
                    | (u64::from(scale) << 44)
                    | (u64::from(num) << 39)
                    | (vpn & ((1 << 37) - 1));
                // SAFETY: as above. `TLBI RVAE1IS, Xt` is written as the
                // system instruction it is (op1 0, C8, C2, op2 1), which
                // needs no assembler feature; callers check `has_range`.
                unsafe {
                    asm!("sys #0, c8, c2, #1, {}", in(reg) arg, options(nostack, preserves_flags))
                };
            }
        }
    }

    fn tlbi_page(asid: Asid, va: VirtAddr) {
        tlbi(
            asid,
            TlbiOp::Page {
                vpn: va.as_u64() >> 12,
            },
        );
    }

    /// Broadcast invalidations waited for so far (each reaches every
    /// CPU): what `shootdowns` reports.
    static BROADCASTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// TLB maintenance that reached the other CPUs so far: on arm64 every
    /// broadcast invalidation waited for (`DSB ISH` after `TLBI ...IS`).
    pub fn shootdowns() -> u64 {
        BROADCASTS.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes of other CPUs deferred to their next install of a space:
    /// none here, a broadcast reaches every CPU at once.
    pub fn deferred() -> u64 {
        0
    }

    /// Waits for the broadcast invalidations to complete on every CPU.
    fn sync() {
        BROADCASTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        barrier::dsb(barrier::ISH);
        barrier::isb(barrier::SY);
    }

    fn before() {
        barrier::dsb(barrier::ISHST);
    }

    /// Invalidates `va` in `asid`.
    pub fn flush_page(asid: Asid, va: VirtAddr) {
        before();
        tlbi_page(asid, va);
        sync();
    }

    /// Invalidates `[start, end)` in `asid`: by range operations where the
    /// CPU has them, else page by page; the whole ASID when long.
    pub fn flush_range(asid: Asid, start: VirtAddr, end: VirtAddr) {
        let first = start.as_u64() >> 12;
        let pages = end.as_u64().div_ceil(4096).saturating_sub(first);
        let range = has_range();
        if pages
            > if range {
                ARM64_RANGE_PAGES_MAX
            } else {
                RANGE_PAGES_MAX
            }
        {
            return flush_asid(asid);
        }
        before();
        if range {
            for op in arm64_range_ops(first, pages) {
                tlbi(asid, op);
            }
        } else {
            for vpn in first..first + pages {
                tlbi(asid, TlbiOp::Page { vpn });
            }
        }
        sync();
    }

    /// Invalidates every entry of `asid`.
    pub fn flush_asid(asid: Asid) {
        before();
        let arg = u64::from(asid.0) << 48;
        // SAFETY: as for `tlbi_page`.
        unsafe { asm!("tlbi aside1is, {}", in(reg) arg, options(nostack, preserves_flags)) };
        sync();
    }

    /// Invalidates every EL1&0 entry of this CPU's TLB (its flush after an
    /// ASID rollover; the other CPUs do theirs at their next switch).
    pub fn flush_all() {
        before();
        // SAFETY: as for `tlbi_page`.
        unsafe { asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
        barrier::dsb(barrier::NSH);
        barrier::isb(barrier::SY);
    }

    /// This CPU's TLB as the generic mm code drives it: the arch's own
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
}

/// Installs `root` with `asid` as the user half (TTBR0_EL1).
///
/// # Safety
///
/// `root` must be a valid user-half table tree of the aarch64 format that
/// stays alive (and is only changed with TLB maintenance) while installed,
/// and no stale entries of a previous owner of `asid` may remain.
pub unsafe fn set_user_root(root: PhysAddr, asid: folium_mm::tlb::Asid) {
    // A table's address has bit 0 and bits 63:48 clear: the fields below
    // write the same bits as `root | asid << 48`.
    debug_assert_eq!(root.as_u64() & !0x0000_ffff_ffff_fffe, 0);
    let value =
        (TTBR0_EL1::BADDR.val(root.as_u64() >> 1) + TTBR0_EL1::ASID.val(u64::from(asid.0))).value;
    // A raw `msr` with the crate's field encoding, rather than
    // `TTBR0_EL1.write`: the crate's write is `nomem` to the compiler,
    // which may move it above the stores that just built the tables; this
    // one stays after them.
    // SAFETY: the caller vouches for the tables; the kernel runs from
    // TTBR1, so switching the user half does not pull the code away.
    unsafe { asm!("msr ttbr0_el1, {}", in(reg) value, options(nostack)) };
    barrier::isb(barrier::SY);
}

/// The user half installed now: (root, ASID).
pub fn user_root() -> (PhysAddr, folium_mm::tlb::Asid) {
    let v = TTBR0_EL1.extract();
    (
        PhysAddr::new(v.read(TTBR0_EL1::BADDR) << 1),
        folium_mm::tlb::Asid(v.read(TTBR0_EL1::ASID) as u16),
    )
}

/// Table slots of a user root that must copy the kernel's (none: the
/// kernel lives in TTBR1).
pub const KERNEL_ROOT_SLOTS: Option<core::ops::Range<usize>> = None;

/// Makes instructions just written through the kernel mapping
/// `[kva, kva + len)` (e.g. the linear alias of a user page) visible to
/// instruction fetches through any alias, on every CPU: clean the data
/// cache to the point of unification, then invalidate the whole
/// instruction cache of every CPU in the inner shareable domain (`ic
/// ialluis`: the code may run on another CPU; an instruction cache,
/// possibly VIPT, may hold the user alias's lines).
pub fn sync_icache(kva: u64, len: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = kva & !(line - 1);
    while a < kva + len as u64 {
        // SAFETY: cleaning a mapped line to the PoU only writes back data.
        unsafe { asm!("dc cvau, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: barriers and an instruction-cache invalidation only.
    unsafe {
        asm!(
            "dsb ish",
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
