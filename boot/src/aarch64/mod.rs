//! aarch64 boot: the entry stub (`entry.S`), the early linear map, and the
//! parsing of the DTB or ATAG list the loader passed in x0.

mod early_map;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::TTBR0_EL1;
use folium_mm::{PhysAddr, VirtAddr};

pub use early_map::{EarlyMapError, MemKind, early_map, retire_early_map};

use crate::{Arch, BootInfo, BootRanges, Firmware, PhysRange, RangeList, enter_kernel, fdt};

core::arch::global_asm!(
    include_str!("entry.S"),
    rust_entry = sym boot_entry,
    stack_size = const crate::KERNEL_STACK_SIZE,
    stack_align = const crate::KERNEL_STACK_ALIGN,
    stack_guard = const crate::KERNEL_STACK_GUARD,
    max_cpus = const crate::cpus::MAX_CPUS,
);

/// Base of the linear map of physical memory in the TTBR1 half.
pub const LINEAR_OFFSET: u64 = 0xffff_0000_0000_0000;

const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_MEM: u32 = 0x5441_0002;
const ATAG_CMDLINE: u32 = 0x5441_0009;
const ATAG_INITRD2: u32 = 0x5442_0005;

/// First Rust code, on the boot stack with the MMU on and only the image
/// mapped. Arguments come from `entry.S`.
extern "C" fn boot_entry(boot_pa: u64, entry_el: u64, kimage_voffset: u64) -> ! {
    early_map::init(kimage_voffset);
    let mut info = BootInfo::empty();
    info.entry_level = entry_el as u8;
    info.linear_offset = LINEAR_OFFSET;
    let layout = crate::image_layout();
    info.kernel_virt = layout.start;
    info.kernel_phys = PhysRange {
        start: PhysAddr::new(layout.start.as_u64() - kimage_voffset),
        end: PhysAddr::new(layout.end.as_u64() - kimage_voffset),
    };
    info.firmware = probe_firmware(boot_pa);
    match info.firmware {
        Firmware::Dtb { pa, size } => parse_dtb(&mut info, pa, size),
        Firmware::Atags { pa } => parse_atags(&mut info, pa),
        _ => {}
    }
    enter_kernel(info)
}

fn read_le32(va: VirtAddr) -> u32 {
    // SAFETY: callers pass addresses inside ranges just mapped by `early_map`.
    u32::from_le(unsafe { core::ptr::read_volatile(va.as_u64() as *const u32) })
}

/// Largest DTB accepted (QEMU's is 1 MiB, the Pi firmware's ~50 KiB).
const DTB_MAX: u64 = 2 << 20;

fn probe_firmware(pa: u64) -> Firmware {
    let raw = Firmware::Unknown { raw: pa };
    if !pa.is_multiple_of(8) {
        return raw;
    }
    let Ok(va) = early_map(PhysAddr::new(pa), 64, MemKind::Normal) else {
        return raw;
    };
    // SAFETY: the 64 bytes at `va` were just mapped.
    let header = unsafe { core::slice::from_raw_parts(va.as_u64() as *const u8, 64) };
    if let Some(size) = fdt::total_size(header) {
        let size = u64::from(size);
        if (40..=DTB_MAX).contains(&size)
            && early_map(PhysAddr::new(pa), size, MemKind::Normal).is_ok()
        {
            return Firmware::Dtb {
                pa: PhysAddr::new(pa),
                size,
            };
        }
    } else if read_le32(va + 4) == ATAG_CORE {
        return Firmware::Atags {
            pa: PhysAddr::new(pa),
        };
    }
    raw
}

/// The blob `probe_firmware` mapped.
fn dtb_blob(pa: PhysAddr, size: u64) -> &'static [u8] {
    // SAFETY: `probe_firmware` mapped the whole blob (`size` from its
    // header, at most DTB_MAX) in the linear map, where it stays (it is
    // RAM, reserved); nothing writes it.
    unsafe {
        core::slice::from_raw_parts((pa.as_u64() + LINEAR_OFFSET) as *const u8, size as usize)
    }
}

fn parse_dtb(info: &mut BootInfo, pa: PhysAddr, size: u64) {
    let Ok(tree) = fdt::Fdt::new(dtb_blob(pa, size)) else {
        return;
    };
    let facts = tree.facts();
    info.dtb_machine = Some(facts.machine);
    info.console_uart = facts.console_uart;
    info.irq_controller = facts.irq_controller;
    info.rtc = facts.rtc;
    info.cpus = facts.cpus;
    info.initrd = facts.initrd;
    if let Some(args) = facts.bootargs {
        info.set_cmdline(args);
    }
    if let Some(c) = facts.compatible {
        info.set_model(c);
    }
}

/// Calls `f(kind, va, words)` for each tag of the ATAG list at `pa`
/// (each mapped whole), until the end tag or a malformed one.
fn for_each_atag(pa: PhysAddr, mut f: impl FnMut(u32, VirtAddr, u32)) {
    let mut tag = pa;
    for _ in 0..4096 {
        let Ok(va) = early_map(tag, 8, MemKind::Normal) else {
            return;
        };
        let words = read_le32(va);
        let kind = read_le32(va + 4);
        if words < 2 || kind == 0 {
            return;
        }
        let Ok(va) = early_map(tag, u64::from(words) * 4, MemKind::Normal) else {
            return;
        };
        f(kind, va, words);
        tag = tag + u64::from(words) * 4;
    }
}

fn parse_atags(info: &mut BootInfo, pa: PhysAddr) {
    for_each_atag(pa, |kind, va, words| match kind {
        ATAG_INITRD2 if words >= 4 => {
            let start = read_le32(va + 8);
            let size = read_le32(va + 12);
            if size > 0 {
                let r = PhysRange::new(PhysAddr::new(u64::from(start)), u64::from(size));
                info.initrd = Some(r);
            }
        }
        ATAG_CMDLINE => {
            let len = (words as usize - 2) * 4;
            // SAFETY: the tag's `words` were mapped by `for_each_atag`.
            let bytes = unsafe { core::slice::from_raw_parts((va + 8).as_u64() as *const u8, len) };
            info.set_cmdline(bytes);
        }
        _ => {}
    });
}

/// Reads the firmware's ranges (for [`BootInfo::ranges`], once the heap
/// exists; the early map still covers the firmware's tables then).
pub(crate) fn read_ranges(info: &BootInfo) -> BootRanges {
    let (mut ram, mut reserved, mut mmio) = (RangeList::new(), RangeList::new(), RangeList::new());
    match info.firmware {
        Firmware::Dtb { pa, size } => {
            if let Ok(tree) = fdt::Fdt::new(dtb_blob(pa, size)) {
                let r = tree.ranges();
                (ram, reserved, mmio) = (r.ram, r.reserved, r.mmio);
            }
        }
        Firmware::Atags { pa } => for_each_atag(pa, |kind, va, words| {
            if kind == ATAG_MEM && words >= 4 {
                let size = read_le32(va + 8);
                let start = read_le32(va + 12);
                ram.push(PhysRange::new(
                    PhysAddr::new(u64::from(start)),
                    u64::from(size),
                ));
            }
        }),
        _ => {}
    }
    let entry = crate::entry_reservations(Arch::Aarch64, info.firmware, info.initrd);
    BootRanges::new(ram, reserved, mmio, &entry)
}

unsafe extern "C" {
    fn replace_ttbr1(new_root: u64, empty_root: u64);
    fn secondary_entry();
    static mut secondary_mailbox: [u8; 64 * crate::cpus::MAX_CPUS];
}

/// One CPU's slot of `entry.S`'s `secondary_mailbox`, found by
/// `secondary_entry` through the CPU's MPIDR affinity.
#[repr(C, align(64))]
struct SecondarySlot {
    /// MPIDR affinity | [`SLOT_VALID`].
    hw_id: u64,
    ttbr1: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

const SLOT_VALID: u64 = 1 << 63;
/// MPIDR_EL1's affinity fields: Aff3 (39:32), Aff2..Aff0 (23:0).
pub const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

/// Cleans the data cache lines holding `[p, p + len)` to the point of
/// coherency and waits for that to complete, line by line at the size
/// `CTR_EL0.DminLine` gives.
///
/// # Safety
///
/// `[p, p + len)` must be mapped memory.
unsafe fn clean_to_poc(p: *const u8, len: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut a = p as usize & !(line - 1);
    while a < p as usize + len {
        // SAFETY: a line of the caller's mapped range; cleaning writes
        // nothing back that the memory does not already hold.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Prepares the release of the secondary CPU whose MPIDR affinity is
/// `hw_id` into mailbox slot `slot`, and returns the physical address it
/// must start at (for PSCI `CPU_ON` or a spin table). The CPU turns its
/// MMU on with this CPU's kernel tables (TTBR1) and the early identity
/// map (TTBR0), then calls `entry(arg)` at EL1 on `stack_top`, with
/// interrupts masked and VBAR_EL1 set to the kernel's vectors.
///
/// # Safety
///
/// `slot` (below [`crate::cpus::MAX_CPUS`]) and `hw_id` are used once per
/// boot: a slot is never rewritten while its CPU may still read it.
/// `stack_top` must be the top of a kernel stack (the layout rule of
/// [`crate::KERNEL_STACK_SHIFT`]) that nothing else uses; the kernel's
/// tables in TTBR1 must map the image and that stack; the early identity
/// map must still be intact (it is never freed).
pub unsafe fn prepare_secondary(
    slot: usize,
    hw_id: u64,
    stack_top: VirtAddr,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    kimage_voffset: u64,
) -> PhysAddr {
    assert!(slot < crate::cpus::MAX_CPUS, "mailbox slot {slot}");
    let base = (&raw mut secondary_mailbox).cast::<SecondarySlot>();
    // SAFETY: the mailbox is MAX_CPUS slots (entry.S), so `slot` is inside;
    // its CPU has not been released (caller). The line is cleaned to the
    // point of coherency, since its reader runs with its caches off; `dsb
    // sy` completes the clean before the caller releases the CPU.
    // The payload first, cleaned to memory; then the id that makes the
    // slot valid, cleaned in turn: a CPU scanning the mailbox (with its
    // caches off) never finds its id before the rest.
    unsafe {
        let p = base.add(slot);
        p.write_volatile(SecondarySlot {
            hw_id: 0,
            ttbr1: aarch64_cpu::registers::TTBR1_EL1.get_baddr(),
            stack_top: stack_top.as_u64(),
            entry: entry as usize as u64,
            arg,
        });
        clean_to_poc(p.cast(), size_of::<SecondarySlot>());
        (&raw mut (*p).hw_id).write_volatile((hw_id & MPIDR_AFF_MASK) | SLOT_VALID);
        clean_to_poc(p.cast(), size_of::<SecondarySlot>());
    }
    PhysAddr::new(secondary_entry as *const () as u64 - kimage_voffset)
}

/// Installs `new_root` as TTBR1_EL1 with break-before-make for the whole
/// kernel half, then `user_root` as TTBR0_EL1 (dropping the identity map).
///
/// # Safety
///
/// `new_root` must map the running kernel (image, stack, everything it
/// touches next) at the same virtual addresses as the tables it replaces,
/// with compatible attributes; `user_root` must be a valid table with no
/// valid entry (it serves as the empty table during the switch). Interrupts
/// must be masked. Must be called before the early identity map is dropped,
/// i.e. at most once.
pub unsafe fn switch_tables(new_root: PhysAddr, user_root: PhysAddr, kimage_voffset: u64) {
    let f = replace_ttbr1 as *const () as u64 - kimage_voffset;
    // SAFETY: `replace_ttbr1` lives in .text.boot, inside the 2 MiB block
    // that `entry.S` identity-maps in TTBR0, so it can run at its physical
    // address while TTBR1 is briefly empty; it touches no memory. The
    // caller guarantees the new root maps the return path.
    unsafe {
        let at_phys: unsafe extern "C" fn(u64, u64) = core::mem::transmute(f as usize);
        at_phys(new_root.as_u64(), user_root.as_u64());
    }
    // The empty user table replaces the identity map (its address has bit
    // 0 and bits 63:48 clear: the BADDR field holds it whole).
    debug_assert_eq!(user_root.as_u64() & !0x0000_ffff_ffff_fffe, 0);
    TTBR0_EL1.set_baddr(user_root.as_u64());
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation only: the walker refetches from the tables
    // now installed, which map everything the kernel touches next.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack)) };
    barrier::dsb(barrier::NSH);
    barrier::isb(barrier::SY);
    retire_early_map();
}
