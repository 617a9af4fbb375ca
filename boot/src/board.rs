//! Which aarch64 machine this is, from the DTB's root `compatible` or,
//! without a DTB, from the CPU's part number; and what a board's fixed
//! memory map removes from the RAM its firmware reports.
//!
//! One rule decides everything that follows from the board (its name, its
//! peripheral base, its interrupt controller), so those can never
//! disagree: a DTB, when there is one, wins over the CPU id (a Pi 3 DTB
//! booted on Cortex-A72 cores is still handled as a Pi 3, with the Pi 3's
//! peripherals), and a DTB naming no supported Raspberry Pi is driven
//! entirely by the DTB (`virt` and any other generic machine).

use folium_mm::PhysAddr;

use crate::{PhysRange, RangeList};

/// The aarch64 machines Folium knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Machine {
    /// Any machine described entirely by its DTB (QEMU `virt` among them).
    #[default]
    Virt,
    /// Raspberry Pi 3 class: BCM2837 (Pi 3 B/B+/A+, Zero 2 W, CM3),
    /// peripherals at 0x3f00_0000.
    Pi3,
    /// Raspberry Pi 4 class: BCM2711 (Pi 4 B, Pi 400, CM4), peripherals at
    /// 0xfc00_0000 in low-peripheral mode.
    Pi4,
}

/// MIDR_EL1 part number of the Cortex-A72 (the Pi 4's core).
pub const MIDR_PART_CORTEX_A72: u64 = 0xd08;

/// What a DTB's root `compatible` list (NUL-separated strings) names:
/// the SoC strings decide; a Raspberry Pi model string without one of
/// them (a hand-written tree) decides by its model number.
pub fn machine_from_compatible(list: &[u8]) -> Machine {
    let strings = || list.split(|&c| c == 0).filter(|s| !s.is_empty());
    for s in strings() {
        match s {
            b"brcm,bcm2711" => return Machine::Pi4,
            b"brcm,bcm2837" | b"brcm,bcm2710" => return Machine::Pi3,
            _ => {}
        }
    }
    for s in strings() {
        if s.starts_with(b"raspberrypi,4") || s == b"raspberrypi,400" {
            return Machine::Pi4;
        }
        if s.starts_with(b"raspberrypi,3") || s == b"raspberrypi,model-zero-2-w" {
            return Machine::Pi3;
        }
    }
    Machine::Virt
}

/// The machine: what the DTB names if there is a DTB, else the Pi whose
/// core this CPU is (no DTB happens only on QEMU's Pi boards, which pass
/// ATAGs): Cortex-A72 is a Pi 4, anything else a Pi 3.
pub fn choose_machine(dtb: Option<Machine>, midr_part: u64) -> Machine {
    match dtb {
        Some(m) => m,
        None if midr_part == MIDR_PART_CORTEX_A72 => Machine::Pi4,
        None => Machine::Pi3,
    }
}

impl Machine {
    /// Physical ranges that are never RAM on this machine whatever the
    /// firmware says: on the Pi 3 everything from the peripheral window at
    /// 0x3f00_0000 up (its firmware DTB's memory node can cover the window,
    /// and the ARM-local block follows it at 0x4000_0000); on the Pi 4 the
    /// low-peripheral window 0xfc00_0000..4 GiB.
    pub fn not_ram(self) -> &'static [PhysRange] {
        const PI3: [PhysRange; 1] = [PhysRange {
            start: PhysAddr::new(0x3f00_0000),
            end: PhysAddr::new(u64::MAX),
        }];
        const PI4: [PhysRange; 1] = [PhysRange {
            start: PhysAddr::new(0xfc00_0000),
            end: PhysAddr::new(1 << 32),
        }];
        match self {
            Machine::Virt => &[],
            Machine::Pi3 => &PI3,
            Machine::Pi4 => &PI4,
        }
    }

    /// `ram` with [`Self::not_ram`] removed.
    pub fn clip_ram(self, ram: &RangeList) -> RangeList {
        let mut out = ram.clone();
        out.subtract(self.not_ram());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dtb_wins_over_the_cpu_id() {
        let a53 = 0xd03;
        let pi3 = machine_from_compatible(b"raspberrypi,3-model-b\0brcm,bcm2837\0");
        let pi4 = machine_from_compatible(b"raspberrypi,4-model-b\0brcm,bcm2711\0");
        assert_eq!((pi3, pi4), (Machine::Pi3, Machine::Pi4));
        // Disagreeing CPU ids change nothing while there is a DTB.
        assert_eq!(
            choose_machine(Some(pi3), MIDR_PART_CORTEX_A72),
            Machine::Pi3
        );
        assert_eq!(choose_machine(Some(pi4), a53), Machine::Pi4);
        assert_eq!(
            choose_machine(Some(Machine::Virt), MIDR_PART_CORTEX_A72),
            Machine::Virt
        );
        // Without one, the core decides.
        assert_eq!(choose_machine(None, MIDR_PART_CORTEX_A72), Machine::Pi4);
        assert_eq!(choose_machine(None, a53), Machine::Pi3);
    }

    #[test]
    fn soc_strings_decide_and_unknown_pis_are_generic() {
        for (list, want) in [
            (&b"linux,dummy-virt\0"[..], Machine::Virt),
            (b"raspberrypi,3-model-b-plus\0brcm,bcm2837\0", Machine::Pi3),
            (b"raspberrypi,model-zero-2-w\0brcm,bcm2837\0", Machine::Pi3),
            (b"raspberrypi,400\0brcm,bcm2711\0", Machine::Pi4),
            (
                b"raspberrypi,4-compute-module\0brcm,bcm2711\0",
                Machine::Pi4,
            ),
            // A Pi 2 v1.2 carries the BCM2837 too.
            (b"raspberrypi,2-model-b-rev2\0brcm,bcm2837\0", Machine::Pi3),
            // The Pi 5 (BCM2712) is neither: it is driven by its DTB alone.
            (b"raspberrypi,5-model-b\0brcm,bcm2712\0", Machine::Virt),
            // A model string alone still names the board.
            (b"raspberrypi,4-model-b\0", Machine::Pi4),
            (b"", Machine::Virt),
        ] {
            assert_eq!(machine_from_compatible(list), want, "{list:?}");
        }
    }

    #[test]
    fn pi3_ram_stops_below_its_peripherals() {
        let r = |s: u64, e: u64| PhysRange {
            start: PhysAddr::new(s),
            end: PhysAddr::new(e),
        };
        // A firmware memory node over the whole first GiB and beyond.
        let ram: RangeList = [r(0, 0x4000_0000), r(0x4000_0000, 0x8000_0000)]
            .into_iter()
            .collect();
        assert_eq!(Machine::Pi3.clip_ram(&ram).as_slice(), &[r(0, 0x3f00_0000)]);
        let pi4: RangeList = [r(0, 0x3c00_0000), r(0x4000_0000, 0x1_0000_0000)]
            .into_iter()
            .collect();
        assert_eq!(
            Machine::Pi4.clip_ram(&pi4).as_slice(),
            &[r(0, 0x3c00_0000), r(0x4000_0000, 0xfc00_0000)]
        );
        assert_eq!(Machine::Virt.clip_ram(&ram), ram);
    }
}
