//! Starting secondary CPUs on arm64: PSCI `CPU_ON` through the conduit the
//! DTB names (`hvc` or `smc`), or a spin table (the Pis: the CPU waits in
//! firmware for an entry address at its release address, then an event).
//! The CPU index lives in `TPIDR_EL1`, which only EL1 can read or write.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{MPIDR_EL1, Readable};
use folium_boot::aarch64::{MPIDR_AFF_MASK, prepare_secondary};
use folium_boot::cpus::{CpuDesc, PsciConduit, StartMethod};
use folium_mm::{PhysAddr, VirtAddr};

/// PSCI 0.2+ `CPU_ON`, SMC64 calling convention.
const PSCI_CPU_ON: u64 = 0xc400_0003;

/// This CPU's index (`crate::smp`), from `TPIDR_EL1`: `entry.S` clears it
/// on the boot CPU, [`init_this_cpu`] sets it on the others.
#[inline]
pub fn cpu_index() -> usize {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as usize
}

/// This CPU's MPIDR affinity (as the DTB's `reg` gives it).
pub fn this_hw_id() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFF_MASK
}

/// Calls PSCI function `f` with three arguments through `conduit`.
fn psci_call(conduit: PsciConduit, f: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: the DTB's `/psci` node says this conduit reaches a PSCI
    // implementation; x0..x3 carry the call and its result, and every
    // register an SMCCC 1.0 firmware may change (x4..x17) is declared
    // clobbered.
    unsafe {
        match conduit {
            PsciConduit::Hvc => asm!(
                "hvc #0",
                inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                clobber_abi("C"), options(nostack)
            ),
            PsciConduit::Smc => asm!(
                "smc #0",
                inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                clobber_abi("C"), options(nostack)
            ),
        }
    }
    r as i64
}

fn psci_error(code: i64) -> &'static str {
    match code {
        -1 => "PSCI CPU_ON: NOT_SUPPORTED",
        -2 => "PSCI CPU_ON: INVALID_PARAMETERS",
        -4 => "PSCI CPU_ON: ALREADY_ON",
        -5 => "PSCI CPU_ON: ON_PENDING",
        -6 => "PSCI CPU_ON: INTERNAL_FAILURE",
        -9 => "PSCI CPU_ON: INVALID_ADDRESS",
        _ => "PSCI CPU_ON failed",
    }
}

/// Releases CPU `index`, described by `desc`, to run `entry(index)` on the
/// stack whose top is `stack_top`, with this CPU's kernel tables (TTBR1;
/// `_root`, the user half's idle root, is installed by [`init_this_cpu`]).
pub fn start_cpu(
    index: usize,
    desc: &CpuDesc,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
    _root: PhysAddr,
) -> Result<(), &'static str> {
    let info = folium_boot::info().ok_or("no boot information")?;
    let conduit = info.cpus.psci;
    if desc.method == StartMethod::Psci && conduit.is_none() {
        return Err("enable-method psci, but no /psci node");
    }
    let release = match desc.method {
        StartMethod::SpinTable(pa) => Some(release_ptr(pa)?),
        StartMethod::Psci => None,
        _ => return Err("no start method Folium drives"),
    };
    // SAFETY: `index` is a fresh slot (crate::smp hands each out once),
    // `stack_top` a kernel stack nothing else uses, the kernel's tables are
    // installed in TTBR1 and the early identity map is never freed.
    let pa = unsafe {
        prepare_secondary(
            index,
            desc.hw_id,
            VirtAddr::new(stack_top),
            entry,
            index as u64,
            super::kimage_voffset(info),
        )
    };
    match (release, conduit) {
        (Some(p), _) => {
            // SAFETY: the release address is reserved RAM in the linear map
            // (checked by `release_ptr`) that only the waiting CPU reads.
            // Cleaned to memory (that CPU's caches are off), then `sev`
            // wakes it from its `wfe`.
            unsafe {
                p.write_volatile(pa.as_u64());
                asm!("dc civac, {}", "dsb sy", "sev", in(reg) p, options(nostack, preserves_flags));
            }
            Ok(())
        }
        (None, Some(c)) => match psci_call(c, PSCI_CPU_ON, desc.hw_id, pa.as_u64(), 0) {
            0 => Ok(()),
            e => Err(psci_error(e)),
        },
        (None, None) => unreachable!("checked above"),
    }
}

/// The spin-table slot at `pa`, through the linear map.
fn release_ptr(pa: PhysAddr) -> Result<*mut u64, &'static str> {
    if !pa.as_u64().is_multiple_of(8) {
        return Err("cpu-release-addr is not 8-byte aligned");
    }
    if !crate::memory::frames::is_linear_mapped(pa) {
        return Err("cpu-release-addr is not in mapped RAM");
    }
    Ok(crate::memory::frames::linear().ptr::<u64>(pa))
}

/// Per-CPU state of a secondary CPU, first thing: its index, and the empty
/// user half in place of the identity map it came up with.
pub fn init_this_cpu(index: usize, idle_root: PhysAddr) {
    // SAFETY: TPIDR_EL1 is the kernel's own per-CPU register (user code
    // has TPIDR_EL0). The empty user table replaces the early identity
    // map, whose (global) entries are then dropped from this CPU's TLB.
    unsafe {
        asm!("msr tpidr_el1, {}", in(reg) index as u64, options(nomem, nostack, preserves_flags));
        super::set_user_root(idle_root, folium_mm::tlb::Asid(0));
        asm!("tlbi vmalle1", options(nostack, preserves_flags));
    }
    barrier::dsb(barrier::NSH);
    barrier::isb(barrier::SY);
}

/// Enables this CPU's IPI (kernel index `index`) at its interrupt
/// controller.
pub fn enable_ipi(index: usize) -> Result<(), &'static str> {
    crate::platform::irqchip::enable_ipi(index)
}

/// Sends an IPI to CPU `index`, whose MPIDR affinity is `hw_id`.
pub fn send_ipi(index: usize, hw_id: u64) -> Result<(), &'static str> {
    crate::platform::irqchip::send_ipi(index, hw_id)
}
