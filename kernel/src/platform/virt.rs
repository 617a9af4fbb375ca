//! QEMU's aarch64 `virt` board: everything from the DTB (RAM, the console
//! PL011, the GIC and its version, the PL031 real-time clock); the UART
//! address QEMU has always used is the fallback.

use folium_boot::aarch64::{MemKind, early_map};
use folium_boot::{BootInfo, IrqController};
use folium_mm::PhysAddr;

use super::gic::{GicV2, GicV3};
use super::irqchip::{self, Chip};
use super::{Board, pl011::Pl011, pl031};

const UART_PA: u64 = 0x0900_0000;

pub fn init(info: &BootInfo) -> Board {
    let uart_pa = info.console_uart.map_or(UART_PA, |pa| pa.as_u64());
    if let Ok(va) = early_map(PhysAddr::new(uart_pa), 0x1000, MemKind::Device) {
        // SAFETY: `va` maps the PL011 as device memory, now and (same
        // address) in the kernel's own tables.
        let uart = unsafe { Pl011::new(va.as_u64() as *mut u32) };
        crate::console::set_uart(alloc::boxed::Box::new(uart));
    }
    // The DTB's root-level interrupt controllers are in `info.mmio`, which
    // the kernel maps as device memory at `linear_offset + pa` before any
    // interrupt is enabled.
    let va = |r: folium_boot::PhysRange| info.linear_offset + r.start.as_u64();
    match info.irq_controller {
        Some(IrqController::GicV2 { dist, cpu }) => {
            // SAFETY: both frames are mapped there (see above).
            let gic = unsafe { GicV2::new(va(dist), va(cpu)) };
            irqchip::set(Chip::GicV2(gic));
        }
        Some(IrqController::GicV3 { dist, redist }) => {
            // SAFETY: the distributor and the whole redistributor range are
            // mapped there (see above).
            let gic = unsafe { GicV3::new(va(dist), va(redist), redist.size()) };
            irqchip::set(Chip::GicV3(gic));
        }
        None => {}
    }
    let mut devices = info.ranges().mmio.clone();
    if info.console_uart.is_none() {
        devices.push(super::device_page(UART_PA));
    }
    if let Some(rtc) = info.rtc {
        // Read through the early map now and, as one of the board's
        // devices, through the kernel's tables at the same address later.
        devices.push(rtc);
        if let Ok(va) = early_map(rtc.start, rtc.size(), MemKind::Device) {
            // SAFETY: `va` maps the whole `reg` range as device memory, now
            // and (listed above) in the kernel's own tables.
            unsafe { pl031::init(va.as_u64(), rtc.size()) };
        }
    }
    Board {
        name: "virt",
        ram: info.ranges().ram.clone(),
        ram_source: "DTB /memory",
        devices,
    }
}
