//! Boards: which machine this is, its console and where its RAM is.
//! The instruction set is `crate::arch`; this is the other axis.

#[cfg(target_arch = "aarch64")]
mod bcm2836_local;
#[cfg(target_arch = "x86_64")]
mod cmos_rtc;
#[cfg(target_arch = "aarch64")]
mod gic;
#[cfg(target_arch = "aarch64")]
mod irq;
#[cfg(target_arch = "aarch64")]
pub mod irqchip;
#[cfg(target_arch = "aarch64")]
mod pl011;
#[cfg(target_arch = "aarch64")]
pub mod pl031;
#[cfg(target_arch = "aarch64")]
mod raspi;
#[cfg(target_arch = "aarch64")]
mod virt;

#[cfg(target_arch = "x86_64")]
mod q35;
#[cfg(target_arch = "x86_64")]
mod uart16550;

use folium_boot::{BootInfo, RangeList};

/// The board the kernel runs on, as discovered at boot.
#[derive(Debug)]
pub struct Board {
    /// Short name (`virt`, `raspi4b`, `raspi3b`, `q35`).
    pub name: &'static str,
    /// The RAM ranges the kernel may manage (before reservations).
    pub ram: RangeList,
    /// Where `ram` came from (DTB, mailbox, e820 ...).
    pub ram_source: &'static str,
    /// MMIO ranges the kernel uses, mapped as device memory at
    /// `linear_offset + pa` (the same addresses the early map used).
    pub devices: RangeList,
}

static BOARD: spin::Once<Board> = spin::Once::new();

/// Detects the board, brings up its console and discovers its RAM.
pub fn init(info: &BootInfo) -> &'static Board {
    BOARD.call_once(|| detect(info))
}

#[cfg(target_arch = "aarch64")]
fn detect(info: &BootInfo) -> Board {
    use folium_boot::{Machine, board::choose_machine};
    // The DTB decides when there is one (so a DTB and a CPU id that
    // disagree cannot give a mixed board); the CPU part only without.
    match choose_machine(info.dtb_machine, crate::arch::midr_part()) {
        Machine::Virt => virt::init(info),
        Machine::Pi3 => raspi::init(info, raspi::Model::Pi3),
        Machine::Pi4 => raspi::init(info, raspi::Model::Pi4),
    }
}

#[cfg(target_arch = "x86_64")]
fn detect(info: &BootInfo) -> Board {
    q35::init(info)
}

/// The wall-clock time from the board's RTC, in seconds since the epoch:
/// the CMOS RTC on q35, the PL031 on `virt`; none on the Pis, which have
/// no RTC (`CLOCK_REALTIME` starts at 1970 there).
pub fn rtc_epoch_secs() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    return cmos_rtc::epoch_secs();
    #[cfg(target_arch = "aarch64")]
    pl031::epoch_secs()
}

/// The CPUs to start: the firmware's list, or, where it lists none, what
/// the board is known to have (the Pis without a DTB: four cores, each
/// waiting for its entry address at 0xd8 + 8 × core, the spin table the
/// Pi firmware and QEMU's Pi boot code share). Empty: one CPU.
pub fn cpus(info: &BootInfo) -> folium_boot::cpus::CpuList {
    if !info.cpus.is_empty() {
        return info.cpus;
    }
    #[cfg(target_arch = "aarch64")]
    if board().is_some_and(|b| b.name.starts_with("raspi")) {
        return raspi::spin_table_cpus();
    }
    folium_boot::cpus::CpuList::new()
}

/// The board, once `init` ran.
pub fn board() -> Option<&'static Board> {
    BOARD.get()
}

/// The board's MMIO ranges (empty before `init`).
pub fn device_regions() -> &'static [folium_boot::PhysRange] {
    BOARD.get().map_or(&[], |b| b.devices.as_slice())
}

/// A one-page device range at `pa`.
#[allow(dead_code)]
fn device_page(pa: u64) -> folium_boot::PhysRange {
    folium_boot::PhysRange::new(folium_mm::PhysAddr::new(pa & !0xfff), 0x1000)
}
