//! aarch64 memory-management hooks: the PTE format, reachability under the
//! early map, the switch to the kernel's tables, and fast page zeroing.

use core::arch::asm;

use folium_boot::aarch64::{MemKind, early_map, switch_tables};
use folium_boot::{BootInfo, PhysRange};
use folium_mm::PhysAddr;

/// The page-table format of this architecture.
pub type KernelPteFormat = folium_mm::pgtable::Aarch64;

/// The part of `r` the early tables can reach (mapping it if needed).
pub fn early_reachable(r: PhysRange) -> Option<PhysRange> {
    early_map(r.start, r.size(), MemKind::Normal).ok().map(|_| r)
}

/// Virtual minus physical address of the kernel image.
pub fn kimage_voffset(info: &BootInfo) -> u64 {
    info.kernel_virt.as_u64() - info.kernel_phys.start.as_u64()
}

/// Installs the kernel's tables in TTBR1 and an empty table in TTBR0.
///
/// # Safety
///
/// `root` must map the running kernel at the same virtual addresses as the
/// early tables (see `folium_boot::aarch64::switch_tables`).
pub unsafe fn switch_kernel_tables(root: PhysAddr) {
    let info = folium_boot::info().expect("boot info");
    let user_root = crate::mm::frames::alloc_table_frame().expect("no frame for the empty user root");
    let p = crate::mm::frames::linear().ptr::<u8>(user_root);
    // SAFETY: a fresh frame of RAM, mapped by the (early) linear map.
    unsafe { core::ptr::write_bytes(p, 0, 4096) };
    // SAFETY: forwarded from the caller; interrupts are masked at boot; the
    // user root was just zeroed; this runs once.
    unsafe { switch_tables(root, user_root, kimage_voffset(info)) };
}

/// Zeroes `len` bytes at `ptr` (both multiples of 4 KiB) with `dc zva`,
/// which clears a whole cache-line-sized block per instruction.
///
/// # Safety
///
/// `[ptr, ptr + len)` must be writable normal memory owned by the caller.
pub unsafe fn zero_pages(ptr: *mut u8, len: usize) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    if dczid & (1 << 4) != 0 {
        // SAFETY: forwarded from the caller.
        unsafe { core::ptr::write_bytes(ptr, 0, len) };
        return;
    }
    let block = 4usize << (dczid & 0xf);
    let mut p = ptr as usize;
    let end = p + len;
    while p < end {
        // SAFETY: `p` is inside the caller's writable range; the range is
        // page aligned, so whole DC ZVA blocks never spill past its end.
        unsafe { asm!("dc zva, {}", in(reg) p, options(nostack, preserves_flags)) };
        p += block;
    }
}
