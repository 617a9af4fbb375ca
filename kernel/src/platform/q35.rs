//! QEMU's x86_64 `q35` board: COM1, RAM from the PVH e820 map.

use folium_boot::BootInfo;

use super::{Board, uart16550::Com1};

/// The I/O APIC's default base on PCs.
const IOAPIC_PA: u64 = 0xfec0_0000;
/// The local APIC's default base (IA32_APIC_BASE at reset).
const LAPIC_PA: u64 = 0xfee0_0000;

pub fn init(info: &BootInfo) -> Board {
    crate::console::set_uart(alloc::boxed::Box::new(Com1::init()));
    let mut devices = folium_boot::RangeList::new();
    devices.push(super::device_page(crate::arch::clock::HPET_PA));
    devices.push(super::device_page(IOAPIC_PA));
    devices.push(super::device_page(LAPIC_PA));
    Board {
        name: board_name(),
        ram: info.ranges().ram.clone(),
        ram_source: "PVH e820",
        devices,
    }
}

/// Tells q35 from the older i440FX by the PCI host bridge's device ID.
fn board_name() -> &'static str {
    use x86_64::instructions::port::Port;
    // SAFETY: 0xcf8/0xcfc is the PCI configuration mechanism #1 on PCs;
    // reading bus 0 device 0's ID register has no side effects.
    let id = unsafe {
        Port::<u32>::new(0xcf8).write(0x8000_0000);
        Port::<u32>::new(0xcfc).read()
    };
    match id {
        0x29c0_8086 => "q35",
        0x1237_8086 => "pc (i440FX)",
        _ => "x86_64 PC",
    }
}
