//! Folium's boot layer: entry stubs, early page tables and boot-information
//! parsing, ending in a call to the kernel's `entry_point!` function.
//!
//! aarch64 (`virt`, `raspi3b`, `raspi4b`): a Linux arm64 Image entered at EL1,
//! EL2 or EL3 with the MMU off; x0 points to a DTB (or to an ATAG list on the
//! Pi under QEMU). x86_64 (`q35`): a PVH ELF entered in 32-bit protected mode
//! with EBX pointing to `hvm_start_info`. Either way the boot code ends with
//! the MMU on, the image running at its higher-half link address, all of
//! this module's early mappings in place, and a [`BootInfo`] describing the
//! machine as the firmware reported it.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod aarch64;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod x86_64;

pub mod board;
pub mod cpus;
pub mod fdt;
pub mod memplan;
mod ranges;

use core::fmt;

pub use board::Machine;
use folium_mm::{PhysAddr, VirtAddr};
pub use ranges::{PhysRange, RangeList};

/// Where the firmware's description of the machine came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// A flattened device tree at this physical address.
    Dtb {
        /// Physical address of the blob.
        pa: PhysAddr,
        /// Its total size in bytes.
        size: u64,
    },
    /// A Linux ATAG list (QEMU's Raspberry Pi boards without `-dtb`).
    Atags {
        /// Physical address of the first tag.
        pa: PhysAddr,
    },
    /// The PVH `hvm_start_info` structure (x86_64).
    Pvh {
        /// Physical address of the structure.
        pa: PhysAddr,
    },
    /// Nothing recognisable was passed.
    Unknown {
        /// The value found in the boot register.
        raw: u64,
    },
}

/// log2 of the size of every EL1 kernel stack on aarch64 (the boot stack
/// now, per-task kernel stacks later).
///
/// The layout rule the aarch64 vectors rely on: a kernel stack is
/// [`KERNEL_STACK_SIZE`] bytes and starts at a [`KERNEL_STACK_ALIGN`]-aligned
/// address, i.e. it is the lower half of an aligned slot twice its size.
/// Every stack pointer inside it then has bit `KERNEL_STACK_SHIFT` clear,
/// and one that has run up to `KERNEL_STACK_SIZE` bytes below the base has
/// it set, so the vector entry detects an overflow with one bit test.
pub const KERNEL_STACK_SHIFT: u32 = 16;
/// Size of a kernel stack (64 KiB).
pub const KERNEL_STACK_SIZE: usize = 1 << KERNEL_STACK_SHIFT;
/// Alignment of a kernel stack's base (128 KiB).
pub const KERNEL_STACK_ALIGN: usize = 2 * KERNEL_STACK_SIZE;
/// The unmapped page directly below a kernel stack.
pub const KERNEL_STACK_GUARD: usize = 4096;

const _: () = {
    assert!(KERNEL_STACK_ALIGN == 1 << (KERNEL_STACK_SHIFT + 1));
    // The guard lies in the upper (bit-set) half of the slot below.
    assert!(KERNEL_STACK_GUARD <= KERNEL_STACK_SIZE && KERNEL_STACK_GUARD.is_power_of_two());
    // `tbnz` tests bits 0..=63; the vectors' frame must fit well inside.
    assert!(KERNEL_STACK_SHIFT >= 12 && KERNEL_STACK_SHIFT < 63);
};

/// The interrupt controller the firmware described (DTB only: the first
/// root-level node whose `compatible` names a GIC the kernel drives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqController {
    /// GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`, ...): memory-mapped
    /// distributor and CPU interface.
    GicV2 {
        /// Distributor registers (`reg` entry 0).
        dist: PhysRange,
        /// CPU interface registers (`reg` entry 1).
        cpu: PhysRange,
    },
    /// GICv3 (`arm,gic-v3`): distributor and redistributors in memory, the
    /// CPU interface in system registers.
    GicV3 {
        /// Distributor registers (`reg` entry 0).
        dist: PhysRange,
        /// The first redistributor region (`reg` entry 1).
        redist: PhysRange,
    },
}

/// The physical ranges the firmware described.
#[derive(Clone, Debug, Default)]
pub struct BootRanges {
    /// RAM, sorted, each byte once (overlapping or repeated banks merged).
    /// May be empty where the firmware reports none (the Pi under QEMU
    /// without a DTB: the platform then asks the board).
    pub ram: RangeList,
    /// Ranges that must never be handed out (firmware reservations, the
    /// boot information itself, the spin table, the initrd, ...), sorted
    /// and merged.
    pub reserved: RangeList,
    /// MMIO the firmware described that the kernel uses: interrupt
    /// controllers and the console UART (DTB only).
    pub mmio: RangeList,
}

impl BootRanges {
    /// Assembles the lists: the firmware's own plus the reservations that
    /// follow from how the kernel was entered, all normalised.
    pub fn new(
        mut ram: RangeList,
        mut reserved: RangeList,
        mmio: RangeList,
        entry: &[PhysRange],
    ) -> Self {
        entry
            .iter()
            .for_each(|&r| reserved.push(r.pages_covering()));
        ram.normalize();
        reserved.normalize();
        BootRanges {
            ram,
            reserved,
            mmio,
        }
    }
}

/// The instruction set, for decisions shared by both boot paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// arm64.
    Aarch64,
    /// x86-64.
    X86_64,
}

/// Reservations that follow from how the kernel was entered, whatever the
/// firmware lists: on arm64 page 0, where the Pi firmware's and QEMU's
/// spin table for the secondary cores (and QEMU's ATAG list) live, needed
/// above all when no DTB's `/memreserve/` says so (it is not RAM on
/// `virt`, where reserving it costs nothing), and the DTB blob itself; on
/// x86 the first MiB (real-mode IVT, BIOS data, EBDA, option ROMs, the
/// PVH structures, as on Linux). And the initrd.
pub fn entry_reservations(
    arch: Arch,
    firmware: Firmware,
    initrd: Option<PhysRange>,
) -> alloc::vec::Vec<PhysRange> {
    let mut v = alloc::vec::Vec::new();
    match arch {
        Arch::Aarch64 => {
            v.push(PhysRange::new(PhysAddr::new(0), folium_mm::PAGE_SIZE));
            if let Firmware::Dtb { pa, size } = firmware {
                v.push(PhysRange::new(pa, size));
            }
        }
        Arch::X86_64 => v.push(PhysRange::new(PhysAddr::new(0), 0x10_0000)),
    }
    v.extend(initrd.map(|r| r.pages_covering()));
    v
}

/// Longest kernel command line kept.
pub const CMDLINE_MAX: usize = 1024;
/// Longest model / compatible string kept.
pub const MODEL_MAX: usize = 128;

/// Everything the boot layer learnt, handed to the kernel once.
pub struct BootInfo {
    /// Source of the machine description.
    pub firmware: Firmware,
    /// aarch64: the exception level the kernel was entered at (1, 2 or 3;
    /// it now runs at EL1). x86_64: 0 (entered in ring 0 via PVH).
    pub entry_level: u8,
    /// What the DTB's root `compatible` names (`None` without a DTB).
    pub dtb_machine: Option<Machine>,
    /// The firmware's ranges, read on first use ([`BootInfo::ranges`]).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    ranges: spin::Once<BootRanges>,
    /// The console UART's registers (DTB `/chosen/stdout-path`), if given.
    pub console_uart: Option<PhysAddr>,
    /// The interrupt controller, if the DTB described one Folium drives.
    pub irq_controller: Option<IrqController>,
    /// The initial ramdisk the loader placed in RAM (QEMU `-initrd`): a
    /// user program for `init` to run. Also listed in `reserved`.
    pub initrd: Option<PhysRange>,
    /// The registers of a PL031 real-time clock (DTB `arm,pl031`), if the
    /// firmware described one at the root of the tree.
    pub rtc: Option<PhysRange>,
    /// Physical range of the loaded kernel image, `.bss` included.
    pub kernel_phys: PhysRange,
    /// Virtual address of the kernel image's first byte.
    pub kernel_virt: VirtAddr,
    /// Physical address `pa` of RAM is reachable at `pa + linear_offset`.
    pub linear_offset: u64,
    /// The CPUs the firmware described (DTB `/cpus`, ACPI MADT); empty
    /// when it described none (the Pi under QEMU without a DTB: the board
    /// code knows its four cores).
    pub cpus: cpus::CpuList,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    model: [u8; MODEL_MAX],
    model_len: usize,
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
impl BootInfo {
    const fn empty() -> Self {
        Self {
            firmware: Firmware::Unknown { raw: 0 },
            entry_level: 0,
            dtb_machine: None,
            ranges: spin::Once::new(),
            console_uart: None,
            irq_controller: None,
            initrd: None,
            rtc: None,
            kernel_phys: PhysRange::EMPTY,
            kernel_virt: VirtAddr::new(0),
            linear_offset: 0,
            cpus: cpus::CpuList::new(),
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            model: [0; MODEL_MAX],
            model_len: 0,
        }
    }

    /// The physical ranges the firmware described, read from it on the
    /// first call, which must come after the kernel heap exists (the lists
    /// have no fixed capacity, so nothing the firmware lists is dropped).
    #[cfg(target_os = "none")]
    pub fn ranges(&self) -> &BootRanges {
        self.ranges.call_once(|| {
            #[cfg(target_arch = "aarch64")]
            let r = aarch64::read_ranges(self);
            #[cfg(target_arch = "x86_64")]
            let r = x86_64::read_ranges(self);
            r
        })
    }

    /// The kernel command line (`-append` in QEMU, `/chosen/bootargs`).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The firmware's model string (DTB `model` or `compatible`), if any.
    pub fn model(&self) -> &str {
        core::str::from_utf8(&self.model[..self.model_len]).unwrap_or("")
    }

    fn set_cmdline(&mut self, bytes: &[u8]) {
        self.cmdline_len = copy_str(&mut self.cmdline, bytes);
    }

    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    fn set_model(&mut self, bytes: &[u8]) {
        self.model_len = copy_str(&mut self.model, bytes);
    }
}

/// Copies printable bytes up to the first NUL (or the buffer's end) and
/// returns how many were kept, so the result is always valid UTF-8.
fn copy_str(dst: &mut [u8], src: &[u8]) -> usize {
    let mut n = 0;
    for &b in src.iter().take_while(|&&b| b != 0) {
        if n == dst.len() {
            break;
        }
        dst[n] = if (0x20..0x7f).contains(&b) { b } else { b' ' };
        n += 1;
    }
    while n > 0 && dst[n - 1] == b' ' {
        n -= 1;
    }
    n
}

impl fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("firmware", &self.firmware)
            .field("entry_level", &self.entry_level)
            .field("ranges", &self.ranges.get())
            .field("kernel_phys", &self.kernel_phys)
            .field("cmdline", &self.cmdline())
            .finish()
    }
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// The boot information, once the kernel has been entered.
pub fn info() -> Option<&'static BootInfo> {
    BOOT_INFO.get()
}

#[cfg(target_os = "none")]
unsafe extern "Rust" {
    /// The kernel's main function, defined by [`entry_point!`].
    fn folium_kernel_main(info: &'static BootInfo) -> !;
}

/// Publishes the boot information and enters the kernel. Called once by the
/// architecture's Rust entry.
#[cfg(target_os = "none")]
fn enter_kernel(info: BootInfo) -> ! {
    let info = BOOT_INFO.call_once(|| info);
    // SAFETY: `folium_kernel_main` is defined by the kernel binary through
    // `entry_point!`, which checks its signature; it is called exactly once.
    unsafe { folium_kernel_main(info) }
}

/// Declares the kernel's main function: `entry_point!(kmain)` where
/// `fn kmain(info: &'static BootInfo) -> !`.
#[macro_export]
macro_rules! entry_point {
    ($path:path) => {
        #[unsafe(export_name = "folium_kernel_main")]
        fn __folium_kernel_main(info: &'static $crate::BootInfo) -> ! {
            let main: fn(&'static $crate::BootInfo) -> ! = $path;
            main(info)
        }
    };
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __data_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
}

/// The kernel image's sections, as virtual address ranges, for W^X mapping.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// First byte of the image (start of `.text`).
    pub start: VirtAddr,
    /// End of `.text` (page aligned): executable, read-only.
    pub text_end: VirtAddr,
    /// End of `.rodata` (page aligned): read-only.
    pub rodata_end: VirtAddr,
    /// End of `.data`, `.bss` follows (read-write).
    pub data_end: VirtAddr,
    /// End of the image (page aligned).
    pub end: VirtAddr,
    /// The boot stack (inside `.bss`).
    pub boot_stack: (VirtAddr, VirtAddr),
    /// The page below the boot stack, which stays unmapped so an overflow
    /// faults instead of overwriting `.bss`.
    pub stack_guard: VirtAddr,
}

/// The linker-defined section boundaries of the running image.
#[cfg(target_os = "none")]
pub fn image_layout() -> ImageLayout {
    let a = |p: &u8| VirtAddr::new(p as *const u8 as u64);
    // SAFETY: only the addresses of these linker symbols are taken; they are
    // never read through.
    unsafe {
        ImageLayout {
            start: a(&__image_start),
            text_end: a(&__text_end),
            rodata_end: a(&__rodata_end),
            data_end: a(&__data_end),
            end: a(&__image_end),
            boot_stack: (a(&boot_stack_bottom), a(&boot_stack_top)),
            stack_guard: a(&boot_stack_guard),
        }
    }
}

#[cfg(test)]
mod tests;
