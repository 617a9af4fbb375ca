//! Starting application processors on x86: the real-mode trampoline
//! (`folium_boot`'s `ap_trampoline`) copied to a page below 1 MiB, then
//! INIT-SIPI-SIPI through the local APIC. The CPU index lives in the
//! GS-based per-CPU area (`user::PerCpu`).

use folium_boot::cpus::{CpuDesc, StartMethod};
use folium_boot::x86_64::{ap_trampoline_code, prepare_ap};
use folium_mm::{PhysAddr, VirtAddr};

pub use super::user::cpu_index;

/// The page the trampoline is copied to: below 1 MiB (the SIPI vector is
/// its page number), in the first MiB the kernel never allocates from.
const TRAMPOLINE_PA: u64 = 0x8000;

/// This CPU's initial APIC id (CPUID.1:EBX bits 31:24), as the trampoline
/// reads it to find its mailbox slot.
pub fn this_hw_id() -> u64 {
    u64::from(core::arch::x86_64::__cpuid(1).ebx >> 24)
}

/// Starts CPU `index` (its APIC id in `desc`) to run `entry(index)` on the
/// stack whose top is `stack_top`, with `root` (the kernel's own tables)
/// as its first CR3.
pub fn start_cpu(
    index: usize,
    desc: &CpuDesc,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
    root: PhysAddr,
) -> Result<(), &'static str> {
    if desc.method != StartMethod::Sipi {
        return Err("no start method Folium drives");
    }
    let apic_id = u32::try_from(desc.hw_id).map_err(|_| "APIC id out of range")?;
    if apic_id > 0xff {
        return Err("x2APIC ids above 255 are not started (the trampoline reads 8-bit ids)");
    }
    let code = ap_trampoline_code();
    let pa = PhysAddr::new(TRAMPOLINE_PA);
    if code.len() > 4096
        || !crate::memory::frames::is_linear_mapped(pa)
        || !crate::memory::frames::is_linear_mapped(pa + (4096 - 8))
    {
        return Err("the trampoline page is not mapped RAM");
    }
    // SAFETY: the page lies in the first MiB, reserved from the allocator
    // (nothing else lives there once the boot information was read), in the
    // linear map (checked); the copy fits in it.
    unsafe {
        core::ptr::copy_nonoverlapping(
            code.as_ptr(),
            crate::memory::frames::linear().ptr::<u8>(pa),
            code.len(),
        );
        // Slot `index` is handed out once (crate::smp); the stack is this
        // CPU's alone; `root` maps the kernel image and that stack.
        prepare_ap(
            index,
            apic_id,
            root,
            VirtAddr::new(stack_top),
            entry,
            index as u64,
        );
    }
    super::apic::start_ap(apic_id, (TRAMPOLINE_PA >> 12) as u8)
}

/// Per-CPU state of a secondary CPU, first thing: its per-CPU area,
/// descriptor tables and features. (Its CR3 is already the kernel's own
/// root, the x86 idle root.)
pub fn init_this_cpu(index: usize, _idle_root: PhysAddr) {
    super::trap::init_secondary_exceptions(index);
}

/// Enables this CPU's IPI.
pub fn enable_ipi(_index: usize) -> Result<(), &'static str> {
    super::apic::enable_ipi()
}

/// Sends an IPI to CPU `_index`, whose APIC id is `hw_id`.
pub fn send_ipi(_index: usize, hw_id: u64) -> Result<(), &'static str> {
    let id = u32::try_from(hw_id).map_err(|_| "APIC id out of range")?;
    super::apic::send_fixed_ipi(id)
}

/// Points GS at this CPU's per-CPU area again, found by its APIC id
/// (CPU 0's if none matches): for the fatal path, which may have been
/// entered with the user's GS base.
pub fn repair_percpu() {
    let me = this_hw_id();
    let index = crate::smp::index_of(me).unwrap_or(0);
    super::user::set_percpu(index);
}
