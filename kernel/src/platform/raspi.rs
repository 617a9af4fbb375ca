//! Raspberry Pi 3 B and 4 B: PL011 UART0, and RAM from the VideoCore
//! firmware's mailbox (the "ARM memory" split below 1 GiB, plus the RAM
//! above 1 GiB that the board revision's memory size implies) unless a DTB
//! described it.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use folium_boot::aarch64::{MemKind, early_map};
use folium_boot::{BootInfo, PhysRange, RangeList};
use folium_mm::PhysAddr;

use super::bcm2836_local::LocalIntc;
use super::gic::GicV2;
use super::irqchip::{self, Chip};
use super::{Board, pl011::Pl011};

/// Which Pi.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// BCM2837, Cortex-A53, peripherals at 0x3f00_0000.
    Pi3,
    /// BCM2711, Cortex-A72, peripherals at 0xfe00_0000 (low-peripheral mode).
    Pi4,
}

impl Model {
    /// The interrupt controller: the Pi 4's GIC-400 (distributor and CPU
    /// interface), the Pi 3's ARM-local block (per-core timers and IRQs).
    fn irq_controller(self) -> PhysRange {
        match self {
            Model::Pi3 => PhysRange::new(PhysAddr::new(0x4000_0000), 0x1000),
            Model::Pi4 => PhysRange::new(PhysAddr::new(0xff84_1000), 0x3000),
        }
    }

    /// The driver for [`Self::irq_controller`], at its linear-map address.
    fn irq_chip(self, linear_offset: u64) -> Chip {
        // `irq_controller()` is in the board's device list, mapped as device
        // memory at `linear_offset + pa` once the kernel's tables are up,
        // before any interrupt is enabled.
        let base = linear_offset + self.irq_controller().start.as_u64();
        match self {
            // SAFETY: the local block's registers are its first 4 KiB.
            Model::Pi3 => Chip::Local(unsafe { LocalIntc::new(base) }),
            // SAFETY: the GIC-400's distributor is the first 4 KiB, its CPU
            // interface the next 8 KiB.
            Model::Pi4 => Chip::GicV2(unsafe { GicV2::new(base, base + 0x1000) }),
        }
    }

    /// The same board in the boot layer's terms.
    fn machine(self) -> folium_boot::Machine {
        match self {
            Model::Pi3 => folium_boot::Machine::Pi3,
            Model::Pi4 => folium_boot::Machine::Pi4,
        }
    }

    fn peripherals(self) -> u64 {
        match self {
            Model::Pi3 => 0x3f00_0000,
            Model::Pi4 => 0xfe00_0000,
        }
    }
}

const UART0: u64 = 0x20_1000;
const MBOX: u64 = 0xb880;
const MBOX_READ: usize = 0;
const MBOX_STATUS: usize = 0x18 / 4;
const MBOX_WRITE: usize = 0x20 / 4;
const MBOX_FULL: u32 = 1 << 31;
const MBOX_EMPTY: u32 = 1 << 30;
const CHANNEL_PROPERTY: u32 = 8;
/// Status polls before the mailbox is declared absent.
const MBOX_SPINS: u32 = 10_000_000;
const TAG_BOARD_REVISION: u32 = 0x0001_0002;
const TAG_ARM_MEMORY: u32 = 0x0001_0005;

pub fn init(info: &BootInfo, model: Model) -> Board {
    let periph = model.peripherals();
    let name = match model {
        Model::Pi3 => "raspi3b",
        Model::Pi4 => "raspi4b",
    };
    if let Ok(va) = early_map(PhysAddr::new(periph + UART0), 0x1000, MemKind::Device) {
        // SAFETY: `va` maps UART0 as device memory, now and (same address)
        // in the kernel's own tables.
        let uart = unsafe { Pl011::new(va.as_u64() as *mut u32) };
        crate::console::set_uart(alloc::boxed::Box::new(uart));
    }
    let mut devices = RangeList::new();
    devices.push(super::device_page(periph + UART0));
    devices.push(super::device_page(periph + MBOX));
    devices.push(model.irq_controller());
    irqchip::set(model.irq_chip(info.linear_offset));
    // Whatever reports RAM, the board's peripheral window is not RAM (the
    // Pi 3 firmware's DTB memory node can cover it).
    let clip = |ram: &RangeList| model.machine().clip_ram(ram);
    let fw_ram = &info.ranges().ram;
    if !fw_ram.is_empty() && matches!(info.firmware, folium_boot::Firmware::Dtb { .. }) {
        return Board {
            name,
            ram: clip(fw_ram),
            ram_source: "DTB /memory",
            devices,
        };
    }
    let kimage_voffset = info.kernel_virt.as_u64() - info.kernel_phys.start.as_u64();
    match mailbox_ram(periph, kimage_voffset) {
        Some(ram) => Board {
            name,
            ram: clip(&ram),
            ram_source: "VideoCore mailbox",
            devices,
        },
        None => Board {
            name,
            ram: clip(fw_ram),
            ram_source: "ATAG_MEM (mailbox failed)",
            devices,
        },
    }
}

#[repr(C, align(16))]
struct MboxBuffer([u32; 16]);

/// Asks the firmware for the ARM memory split and the board revision.
fn mailbox_ram(periph: u64, kimage_voffset: u64) -> Option<RangeList> {
    let regs = early_map(PhysAddr::new(periph + MBOX), 0x40, MemKind::Device)
        .ok()?
        .as_u64() as *mut u32;
    static mut BUF: MboxBuffer = MboxBuffer([0; 16]);
    let buf = &raw mut BUF;
    let request = [
        16 * 4,
        0, // request
        TAG_ARM_MEMORY,
        8,
        0,
        0,
        0,
        TAG_BOARD_REVISION,
        4,
        0,
        0,
        0, // end tag
        0,
        0,
        0,
        0,
    ];
    // SAFETY: single-threaded boot; BUF is only used here. The mailbox
    // registers are mapped as device memory. The buffer is cleaned to and
    // invalidated from the point of coherency around the transfer because
    // the VideoCore reads and writes it without snooping the ARM caches.
    let (base, size, rev) = unsafe {
        (*buf).0 = request;
        let pa = buf as u64 - kimage_voffset;
        if pa >= 1 << 32 {
            return None;
        }
        dcache_op(buf as u64, size_of::<MboxBuffer>());
        // Bounded waits: a board without this mailbox must not hang the boot.
        let wait =
            |mask: u32| (0..MBOX_SPINS).any(|_| regs.add(MBOX_STATUS).read_volatile() & mask == 0);
        if !wait(MBOX_FULL) {
            return None;
        }
        regs.add(MBOX_WRITE)
            .write_volatile(pa as u32 | CHANNEL_PROPERTY);
        loop {
            if !wait(MBOX_EMPTY) {
                return None;
            }
            if regs.add(MBOX_READ).read_volatile() & 0xf == CHANNEL_PROPERTY {
                break;
            }
        }
        dcache_op(buf as u64, size_of::<MboxBuffer>());
        let b = core::ptr::read_volatile(buf).0;
        if b[1] != 0x8000_0000 {
            return None;
        }
        (u64::from(b[5]), u64::from(b[6]), b[10])
    };
    let mut ram = RangeList::new();
    ram.push(PhysRange::new(PhysAddr::new(base), size));
    // New-style revision codes (bit 23) encode the memory size in bits 20..22.
    if rev & (1 << 23) != 0 {
        let total = (256u64 << 20) << ((rev >> 20) & 7);
        const GIB: u64 = 1 << 30;
        const PERIPH_HOLE: u64 = 0xfc00_0000;
        if total > GIB {
            ram.push(PhysRange {
                start: PhysAddr::new(GIB),
                end: PhysAddr::new(total.min(PERIPH_HOLE)),
            });
        }
        if total > 4 * GIB {
            ram.push(PhysRange {
                start: PhysAddr::new(4 * GIB),
                end: PhysAddr::new(total),
            });
        }
    }
    Some(ram)
}

/// Cleans and invalidates the data cache lines covering `[va, va + len)`.
///
/// # Safety
///
/// The range must be mapped.
unsafe fn dcache_op(va: u64, len: usize) {
    let mut line = va & !63;
    while line < va + len as u64 {
        // SAFETY: the caller guarantees the line is mapped.
        unsafe { asm!("dc civac, {}", in(reg) line, options(nostack)) };
        line += 64;
    }
    barrier::dsb(barrier::SY);
}

/// The Pi's four cores (MPIDR affinity 0..3) and their spin-table slots.
pub fn spin_table_cpus() -> folium_boot::cpus::CpuList {
    use folium_boot::cpus::{CpuDesc, CpuList, StartMethod};
    let mut l = CpuList::new();
    for core in 0..4u64 {
        l.push(CpuDesc {
            hw_id: core,
            method: StartMethod::SpinTable(PhysAddr::new(0xd8 + 8 * core)),
        });
    }
    l
}
