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
    (r.start < end).then_some(PhysRange { start: r.start, end })
}

/// Virtual minus physical address of the higher-half kernel image.
pub fn kimage_voffset(_info: &BootInfo) -> u64 {
    KERNEL_VMA
}

/// Loads a higher-half GDT (the boot GDT sits in low memory that the
/// kernel's tables do not map), then installs `root` in CR3 and turns on
/// global pages.
///
/// # Safety
///
/// `root` must map the running kernel at the same virtual addresses as the
/// early tables.
pub unsafe fn switch_kernel_tables(root: PhysAddr) {
    super::gdt::load();
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

/// Zeroes `len` bytes at `ptr` with `rep stosq`.
///
/// # Safety
///
/// `[ptr, ptr + len)` must be writable memory owned by the caller; `len`
/// a multiple of 8.
pub unsafe fn zero_pages(ptr: *mut u8, len: usize) {
    // SAFETY: forwarded from the caller; the direction flag is clear in
    // Rust code (ABI).
    unsafe {
        asm!("rep stosq", inout("rdi") ptr => _, inout("rcx") len / 8 => _, in("rax") 0u64, options(nostack, preserves_flags));
    }
}
