//! x86_64 boot: the PVH entry stub (`entry.S`) and the parsing of
//! `hvm_start_info` (e820 memory map, command line).

use folium_mm::{PhysAddr, VirtAddr};

use crate::{Arch, BootInfo, BootRanges, Firmware, PhysRange, RangeList, enter_kernel};

core::arch::global_asm!(
    include_str!("entry.S"),
    rust_entry = sym boot_entry,
    max_cpus = const crate::cpus::MAX_CPUS,
    options(att_syntax),
);

/// Base of the linear map of physical memory (PML4 slot 256).
pub const LINEAR_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Link address of the higher-half image window: VA = PA + KERNEL_VMA.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
/// The early tables map this much physical memory in the linear map.
pub const EARLY_LINEAR_LIMIT: u64 = crate::memplan::X86_64_EARLY_LIMIT;

const PVH_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// `struct hvm_start_info` (version 1).
#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

fn linear<T>(pa: u64) -> Option<*const T> {
    let end = pa.checked_add(size_of::<T>() as u64)?;
    (end <= EARLY_LINEAR_LIMIT && pa.is_multiple_of(align_of::<T>() as u64))
        .then_some((pa + LINEAR_OFFSET) as *const T)
}

/// First Rust code: long mode, boot stack, the early tables of `entry.S`.
extern "C" fn boot_entry(start_info_pa: u64) -> ! {
    let mut info = BootInfo::empty();
    info.entry_level = 0;
    info.linear_offset = LINEAR_OFFSET;
    let layout = crate::image_layout();
    info.kernel_virt = layout.start;
    // The image starts with the 32-bit stub and early tables at 1 MiB.
    info.kernel_phys = PhysRange {
        start: PhysAddr::new(0x10_0000),
        end: PhysAddr::new(layout.end.as_u64() - KERNEL_VMA),
    };
    info.firmware = Firmware::Unknown { raw: start_info_pa };
    if let Some(p) = linear::<StartInfo>(start_info_pa) {
        // SAFETY: the first 4 GiB are mapped by the early tables and QEMU
        // placed a StartInfo here (checked by its magic below).
        let si = unsafe { p.read_volatile() };
        if si.magic == PVH_MAGIC {
            info.firmware = Firmware::Pvh {
                pa: PhysAddr::new(start_info_pa),
            };
            parse_start_info(&mut info, &si);
        }
    }
    enter_kernel(info)
}

/// `struct hvm_modlist_entry`: one module (QEMU passes `-initrd` as the first).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// The RSDP: where `hvm_start_info` says (version 1), else found by
/// the BIOS's rule, on a 16-byte boundary of 0xe0000..0x100000.
fn find_rsdp(si: &StartInfo) -> Option<u64> {
    if si.version >= 1 && si.rsdp_paddr != 0 {
        return Some(si.rsdp_paddr);
    }
    (0xe_0000..0x10_0000u64).step_by(16).find(|&pa| {
        early_bytes(pa, 20)
            .is_some_and(|b| &b[..8] == b"RSD PTR " && crate::cpus::acpi_checksum_ok(b))
    })
}

/// `len` bytes of physical memory at `pa`, if the early linear map covers
/// them.
fn early_bytes(pa: u64, len: usize) -> Option<&'static [u8]> {
    let end = pa.checked_add(len as u64)?;
    // SAFETY: inside the early linear map (the first 4 GiB, mapped by the
    // boot tables until the kernel switches to its own), read-only: ACPI
    // tables and the BIOS area, which nothing writes during boot.
    (end <= EARLY_LINEAR_LIMIT)
        .then(|| unsafe { core::slice::from_raw_parts((pa + LINEAR_OFFSET) as *const u8, len) })
}

fn parse_start_info(info: &mut BootInfo, si: &StartInfo) {
    if let Some(madt) = find_rsdp(si).and_then(|r| crate::cpus::find_madt(r, early_bytes)) {
        info.cpus = crate::cpus::madt_cpus(madt);
    }
    if si.nr_modules > 0
        && let Some(p) = linear::<ModlistEntry>(si.modlist_paddr)
    {
        // SAFETY: inside the early linear map; QEMU wrote the list there.
        let m = unsafe { p.read_volatile() };
        if m.size > 0 && m.paddr.checked_add(m.size).is_some() {
            let r = PhysRange::new(PhysAddr::new(m.paddr), m.size);
            info.initrd = Some(r);
        }
    }
    if si.cmdline_paddr != 0
        && let Some(p) = linear::<[u8; crate::CMDLINE_MAX]>(si.cmdline_paddr)
    {
        // SAFETY: inside the early linear map; the copy stops at the NUL.
        let bytes = unsafe { &*p };
        info.set_cmdline(bytes);
    }
}

/// Reads the e820 map (for [`BootInfo::ranges`], once the heap exists):
/// every RAM entry, however many there are (the table must lie in the
/// early linear map, which bounds the walk).
pub(crate) fn read_ranges(info: &BootInfo) -> BootRanges {
    let mut ram = RangeList::new();
    if let Firmware::Pvh { pa } = info.firmware
        && let Some(p) = linear::<StartInfo>(pa.as_u64())
    {
        // SAFETY: checked at entry: QEMU placed a StartInfo here, inside
        // the early linear map, and nothing has written it since.
        let si = unsafe { p.read_volatile() };
        if si.version >= 1 {
            for i in 0..u64::from(si.memmap_entries) {
                let Some(p) = i
                    .checked_mul(size_of::<MemmapEntry>() as u64)
                    .and_then(|off| si.memmap_paddr.checked_add(off))
                    .and_then(linear::<MemmapEntry>)
                else {
                    break;
                };
                // SAFETY: inside the early linear map; QEMU wrote the table there.
                let e = unsafe { p.read_volatile() };
                if e.kind == E820_RAM {
                    ram.push(PhysRange::new(PhysAddr::new(e.addr), e.size));
                }
            }
        }
    }
    let entry = crate::entry_reservations(Arch::X86_64, info.firmware, info.initrd);
    BootRanges::new(ram, RangeList::new(), RangeList::new(), &entry)
}

/// Virtual address of a physical address in the early linear map, if covered.
pub fn early_linear(pa: PhysAddr) -> Option<VirtAddr> {
    (pa.as_u64() < EARLY_LINEAR_LIMIT).then(|| VirtAddr::new(pa.as_u64() + LINEAR_OFFSET))
}

unsafe extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
    static mut ap_mailbox: [u8; 64 * crate::cpus::MAX_CPUS];
}

/// The real-mode start code an application processor runs from its SIPI
/// page: the kernel copies these bytes to a page-aligned address below
/// 1 MiB and sends that page's number as the SIPI vector.
pub fn ap_trampoline_code() -> &'static [u8] {
    let (s, e) = (
        &raw const ap_trampoline as u64,
        &raw const ap_trampoline_end as u64,
    );
    // SAFETY: both symbols delimit the trampoline in .text.boot32, linked
    // at its physical address below 4 GiB (VA = PA) and never written;
    // it is read through the linear map, which covers the image (the
    // kernel's tables map no low addresses).
    unsafe { core::slice::from_raw_parts((s + LINEAR_OFFSET) as *const u8, (e - s) as usize) }
}

/// One CPU's slot of `entry.S`'s `ap_mailbox`.
#[repr(C, align(64))]
struct ApSlot {
    apic_id: u64,
    cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

/// Fills mailbox slot `slot` for the application processor whose initial
/// APIC id is `apic_id`: once started, it installs `cr3` (the kernel's
/// root, PCID 0) and `stack_top` and calls `entry(arg)` with interrupts
/// disabled, in long mode, on the boot GDT (the kernel loads its own).
///
/// # Safety
///
/// `slot` (below [`crate::cpus::MAX_CPUS`]) is used once per boot; `cr3`
/// must map the kernel image at its link address and `stack_top`, the top
/// of a stack nothing else uses.
pub unsafe fn prepare_ap(
    slot: usize,
    apic_id: u32,
    cr3: PhysAddr,
    stack_top: VirtAddr,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
) {
    assert!(slot < crate::cpus::MAX_CPUS, "mailbox slot {slot}");
    let base = (&raw mut ap_mailbox).cast::<ApSlot>();
    // SAFETY: `slot` is inside the mailbox, and its CPU has not been
    // started (caller); x86 caches are coherent with the AP's reads.
    unsafe {
        base.add(slot).write_volatile(ApSlot {
            apic_id: u64::from(apic_id) | 1 << 63,
            cr3: cr3.as_u64(),
            stack_top: stack_top.as_u64(),
            entry: entry as usize as u64,
            arg,
        });
    }
}
