//! x86_64 memory-management hooks: the PTE format, reachability under the
//! early map, the switch to the kernel's tables, and page zeroing.

use core::arch::asm;

use folium_boot::x86_64::{EARLY_LINEAR_LIMIT, KERNEL_VMA};
use folium_boot::{BootInfo, PhysRange};
use folium_mm::PhysAddr;

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
/// pages.
///
/// # Safety
///
/// `root` must map the running kernel at the same virtual addresses as the
/// early tables.
pub unsafe fn switch_kernel_tables(root: PhysAddr) {
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

/// The root of the live tables (CR3's base address).
pub fn current_kernel_root() -> PhysAddr {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    PhysAddr::new(v & 0x000f_ffff_ffff_f000)
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

/// TLB maintenance for user address spaces. Without PCIDs, loading CR3
/// drops every non-global entry, so a space that is not installed has
/// nothing cached and its flushes are no-ops; the installed one uses
/// `invlpg` or a CR3 reload.
pub mod tlb {
    use core::arch::asm;

    use folium_mm::VirtAddr;
    use folium_mm::tlb::Asid;

    /// Pages beyond which a range flush reloads CR3 instead.
    const RANGE_PAGES_MAX: u64 = 64;

    fn is_current(asid: Asid) -> bool {
        super::user_root().1 == asid
    }

    /// Invalidates `va` if `asid` is installed.
    pub fn flush_page(asid: Asid, va: VirtAddr) {
        if is_current(asid) {
            // SAFETY: invalidating a TLB entry never breaks memory safety.
            unsafe { asm!("invlpg [{}]", in(reg) va.as_u64(), options(nostack, preserves_flags)) };
        }
    }

    /// Invalidates `[start, end)` if `asid` is installed.
    pub fn flush_range(asid: Asid, start: VirtAddr, end: VirtAddr) {
        if !is_current(asid) {
            return;
        }
        let pages = (end - start).div_ceil(4096);
        if pages > RANGE_PAGES_MAX {
            return flush_asid(asid);
        }
        for i in 0..pages {
            flush_page(asid, start + i * 4096);
        }
    }

    /// Drops every non-global entry if `asid` is installed.
    pub fn flush_asid(asid: Asid) {
        if is_current(asid) {
            flush_all();
        }
    }

    /// Drops every non-global entry (reloads CR3).
    pub fn flush_all() {
        // SAFETY: rewriting CR3 with its own value only flushes the TLB.
        unsafe {
            asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags))
        };
    }
}

/// The installed root's ASID stand-in: without PCIDs, the only user root
/// with cached entries is the installed one; Folium records which.
static USER_ASID: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

/// Installs `root` (a full PML4 whose kernel slots copy the kernel's) as
/// the current address space.
///
/// # Safety
///
/// `root` must be a valid x86_64 PML4 mapping the kernel exactly as the
/// kernel's own root does, and stay alive while installed.
pub unsafe fn set_user_root(root: PhysAddr, asid: folium_mm::tlb::Asid) {
    USER_ASID.store(asid.0, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: forwarded from the caller.
    unsafe { asm!("mov cr3, {}", in(reg) root.as_u64(), options(nostack, preserves_flags)) };
}

/// The installed root and its ASID stand-in.
pub fn user_root() -> (PhysAddr, folium_mm::tlb::Asid) {
    (
        current_kernel_root(),
        folium_mm::tlb::Asid(USER_ASID.load(core::sync::atomic::Ordering::Relaxed)),
    )
}

/// Table slots of a user root that copy the kernel's: the upper half.
pub const KERNEL_ROOT_SLOTS: Option<core::ops::Range<usize>> = Some(256..512);
