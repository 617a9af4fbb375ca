//! aarch64 boot: the entry stub (`entry.S`), the early linear map, and the
//! parsing of the DTB or ATAG list the loader passed in x0.

mod early_map;

use folium_mm::{PhysAddr, VirtAddr};

pub use early_map::{EarlyMapError, MemKind, early_map, retire_early_map};

use crate::{BootInfo, Firmware, PhysRange, enter_kernel};

core::arch::global_asm!(
    include_str!("entry.S"),
    rust_entry = sym boot_entry,
);

/// Base of the linear map of physical memory in the TTBR1 half.
pub const LINEAR_OFFSET: u64 = 0xffff_0000_0000_0000;

const FDT_MAGIC: u32 = 0xd00d_feed;
const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_MEM: u32 = 0x5441_0002;
const ATAG_CMDLINE: u32 = 0x5441_0009;

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

/// Reads a big-endian u32 from the linear map.
fn read_be32(va: VirtAddr) -> u32 {
    // SAFETY: callers pass addresses inside ranges just mapped by `early_map`.
    u32::from_be(unsafe { core::ptr::read_volatile(va.as_u64() as *const u32) })
}

fn read_le32(va: VirtAddr) -> u32 {
    // SAFETY: callers pass addresses inside ranges just mapped by `early_map`.
    u32::from_le(unsafe { core::ptr::read_volatile(va.as_u64() as *const u32) })
}

fn probe_firmware(pa: u64) -> Firmware {
    let raw = Firmware::Unknown { raw: pa };
    if !pa.is_multiple_of(4) {
        return raw;
    }
    let Ok(va) = early_map(PhysAddr::new(pa), 64, MemKind::Normal) else {
        return raw;
    };
    if read_be32(va) == FDT_MAGIC {
        let size = u64::from(read_be32(va + 4));
        if early_map(PhysAddr::new(pa), size, MemKind::Normal).is_ok() {
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

fn parse_dtb(info: &mut BootInfo, pa: PhysAddr, size: u64) {
    info.reserved.push(PhysRange::new(pa, size));
    let ptr = (pa.as_u64() + LINEAR_OFFSET) as *const u8;
    // SAFETY: `probe_firmware` mapped the whole blob (`size` from its header).
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(ptr) }) else {
        return;
    };
    for region in fdt.memory().regions() {
        if let Some(sz) = region.size {
            info.ram.push(PhysRange::new(
                PhysAddr::new(region.starting_address as u64),
                sz as u64,
            ));
        }
    }
    for r in fdt.memory_reservations() {
        info.reserved.push(PhysRange::new(
            PhysAddr::new(r.address() as u64),
            r.size() as u64,
        ));
    }
    if let Some(node) = fdt.find_node("/reserved-memory") {
        for child in node.children() {
            for region in child.reg().into_iter().flatten() {
                if let Some(sz) = region.size {
                    info.reserved.push(PhysRange::new(
                        PhysAddr::new(region.starting_address as u64),
                        sz as u64,
                    ));
                }
            }
        }
    }
    for node in fdt.all_nodes() {
        if node.property("interrupt-controller").is_some() {
            push_regs(&node, &mut info.mmio);
        }
    }
    if let Some(uart) = fdt.chosen().stdout() {
        info.console_uart = push_regs(&uart, &mut info.mmio);
    }
    if let Some(args) = fdt.chosen().bootargs() {
        info.set_cmdline(args.as_bytes());
    }
    let root = fdt.root();
    let compatible = root.compatible().first();
    info.set_model(compatible.as_bytes());
}

/// Appends a node's `reg` ranges to `list`; returns the first one's start.
fn push_regs(node: &fdt::node::FdtNode, list: &mut crate::RangeList) -> Option<PhysAddr> {
    let mut first = None;
    for r in node.reg().into_iter().flatten() {
        let start = PhysAddr::new(r.starting_address as u64);
        first.get_or_insert(start);
        list.push(PhysRange::new(start, r.size.unwrap_or(0x1000) as u64));
    }
    first
}

fn parse_atags(info: &mut BootInfo, pa: PhysAddr) {
    // The tags and the spin table share the first page on the Pi boards.
    info.reserved.push(PhysRange::new(PhysAddr::new(0), 0x1000));
    let mut tag = pa;
    for _ in 0..64 {
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
        match kind {
            ATAG_MEM if words >= 4 => {
                let size = read_le32(va + 8);
                let start = read_le32(va + 12);
                info.ram.push(PhysRange::new(
                    PhysAddr::new(u64::from(start)),
                    u64::from(size),
                ));
            }
            ATAG_CMDLINE => {
                let len = (words as usize - 2) * 4;
                // SAFETY: the tag's `words` were mapped just above.
                let bytes =
                    unsafe { core::slice::from_raw_parts((va + 8).as_u64() as *const u8, len) };
                info.set_cmdline(bytes);
            }
            _ => {}
        }
        tag = tag + u64::from(words) * 4;
    }
}

unsafe extern "C" {
    fn replace_ttbr1(new_root: u64, empty_root: u64);
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
        core::arch::asm!(
            "msr ttbr0_el1, {0}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            in(reg) user_root.as_u64(),
            options(nostack)
        );
    }
    retire_early_map();
}
