//! Arm Generic Interrupt Controllers, only as far as a per-CPU interrupt
//! (the timer's PPI) needs: GICv2 (virt's default, the Pi 4's GIC-400) with
//! a memory-mapped CPU interface, and GICv3 (`virt,gic-version=3`) with
//! affinity routing, a redistributor per CPU and the CPU interface in
//! system registers. Each CPU enables its own PPIs (banked on v2, in its
//! redistributor on v3) and the IPI, an SGI; interrupts land in Group 1 on
//! GICv3 (Group 0 would signal FIQ where the GIC has a single security
//! state).

use core::arch::asm;

use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::registers::{MPIDR_EL1, Readable};
use folium_boot::cpus::MAX_CPUS;

use super::irq::Irq;

/// The EL1 virtual timer's interrupt: PPI 11, INTID 27.
pub const TIMER_PPI: u32 = 27;
/// The software-generated interrupt one CPU sends another (Linux's
/// reschedule IPI is SGI 0; Folium has one kind so far).
pub const IPI_SGI: u32 = 1;
/// The INTID part of an acknowledge value.
pub const INTID_MASK: u32 = 0xff_ffff;
/// Priority given to the interrupts enabled here (lower is more urgent).
const PRIORITY: u32 = 0xa0;
/// Priority mask: everything more urgent than 0xf0 is signalled.
const PMR_ALL: u32 = 0xf0;
/// INTIDs 1020..=1023 are special (spurious, no interrupt pending).
const INTID_SPECIAL: u32 = 1020;
/// Register polls before a GIC is declared stuck.
const SPINS: u32 = 1_000_000;

fn rd32(addr: u64) -> u32 {
    // SAFETY: every address passed is inside a GIC register frame that the
    // constructors' callers guaranteed to be mapped as device memory.
    unsafe { (addr as *const u32).read_volatile() }
}

fn wr32(addr: u64, v: u32) {
    // SAFETY: as for `rd32`.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

/// Sets the 8-bit priority field of `intid` in the IPRIORITYR array at
/// `base` (word accesses work on every GIC; byte ones are optional on v3).
fn set_priority(base: u64, intid: u32) {
    let word = base + u64::from(intid & !3);
    let shift = (intid & 3) * 8;
    wr32(word, (rd32(word) & !(0xff << shift)) | (PRIORITY << shift));
}

/// A GICv2: distributor and CPU interface frames, and the CPU-interface
/// bit of each CPU (by kernel CPU index), which SGIs are addressed by.
pub struct GicV2 {
    dist: u64,
    cpu: u64,
    targets: [AtomicU8; MAX_CPUS],
}

const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;

impl GicV2 {
    /// # Safety
    ///
    /// `dist` and `cpu` must be the virtual addresses at which the GIC's
    /// distributor (4 KiB) and CPU interface (8 KiB) are mapped as device
    /// memory whenever the driver is used.
    pub const unsafe fn new(dist: u64, cpu: u64) -> Self {
        GicV2 {
            dist,
            cpu,
            targets: [const { AtomicU8::new(0) }; MAX_CPUS],
        }
    }

    /// Records this CPU's interface bit (the banked GICD_ITARGETSR0 reads
    /// it back for the SGIs) for CPU `index`, and enables the IPI.
    pub fn enable_ipi(&self, index: usize) -> Result<(), &'static str> {
        let me = rd32(self.dist + GICD_ITARGETSR) as u8;
        if me == 0 {
            return Err("GICD_ITARGETSR0 names no CPU interface");
        }
        self.targets[index % MAX_CPUS].store(me, Ordering::Relaxed);
        self.enable_ppi(IPI_SGI)
    }

    /// Sends the IPI to CPU `index` (which enabled it).
    pub fn send_ipi(&self, index: usize) -> Result<(), &'static str> {
        let target = self.targets[index % MAX_CPUS].load(Ordering::Relaxed);
        if target == 0 {
            return Err("that CPU has not enabled its IPI");
        }
        // Make this CPU's earlier stores visible before the interrupt.
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
        // TargetListFilter 0: the CPUs in the target list.
        wr32(self.dist + GICD_SGIR, u32::from(target) << 16 | IPI_SGI);
        Ok(())
    }

    /// Enables distributor and CPU interface and the private interrupt
    /// `intid` of this CPU.
    pub fn enable_ppi(&self, intid: u32) -> Result<(), &'static str> {
        set_priority(self.dist + GICD_IPRIORITYR, intid);
        wr32(self.dist + GICD_ISENABLER, 1 << intid);
        if rd32(self.dist + GICD_ISENABLER) & (1 << intid) == 0 {
            return Err("GICD_ISENABLER0 does not hold the interrupt's bit");
        }
        wr32(self.dist + GICD_CTLR, rd32(self.dist + GICD_CTLR) | 1);
        wr32(self.cpu + GICC_PMR, PMR_ALL);
        wr32(self.cpu + GICC_CTLR, rd32(self.cpu + GICC_CTLR) | 1);
        Ok(())
    }

    /// Acknowledges the pending interrupt, if any.
    pub fn ack(&self) -> Option<Irq> {
        let iar = rd32(self.cpu + GICC_IAR);
        ((iar & 0x3ff) < INTID_SPECIAL).then_some(Irq(iar))
    }

    /// Signals the end of `irq` (the acknowledge value, source CPU included).
    pub fn eoi(&self, irq: Irq) {
        wr32(self.cpu + GICC_EOIR, irq.0);
    }
}

/// A GICv3: distributor and the redistributor region.
pub struct GicV3 {
    dist: u64,
    redist: u64,
    redist_size: u64,
}

const GICD_CTLR_RWP: u32 = 1 << 31;
/// ARE (affinity routing; ARE_NS in the Non-secure view).
const GICD_CTLR_ARE: u32 = 1 << 4;
/// EnableGrp0 and EnableGrp1 with a single security state; EnableGrp1 and
/// EnableGrp1A in the Non-secure view of a secure GIC: either way Group 1
/// is then forwarded.
const GICD_CTLR_ENABLE: u32 = 0b11;
const GICR_TYPER: u64 = 0x008;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// The SGI/PPI frame follows the RD frame.
const GICR_SGI: u64 = 0x1_0000;
const GICR_IGROUPR0: u64 = 0x080;
const GICR_ISENABLER0: u64 = 0x100;
const GICR_IPRIORITYR: u64 = 0x400;

fn wait_clear(addr: u64, mask: u32) -> bool {
    (0..SPINS).any(|_| rd32(addr) & mask == 0)
}

impl GicV3 {
    /// # Safety
    ///
    /// `dist` must be where the distributor (64 KiB) and `redist` where the
    /// `redist_size` bytes of redistributor frames are mapped as device
    /// memory whenever the driver is used.
    pub const unsafe fn new(dist: u64, redist: u64, redist_size: u64) -> Self {
        GicV3 {
            dist,
            redist,
            redist_size,
        }
    }

    /// This CPU's redistributor: the one whose GICR_TYPER affinity is
    /// MPIDR_EL1's.
    fn my_redist(&self) -> Option<u64> {
        // GICR_TYPER.Affinity_Value is Aff3.Aff2.Aff1.Aff0.
        let mpidr = MPIDR_EL1.extract();
        let me = mpidr.read(MPIDR_EL1::Aff0)
            | mpidr.read(MPIDR_EL1::Aff1) << 8
            | mpidr.read(MPIDR_EL1::Aff2) << 16
            | mpidr.read(MPIDR_EL1::Aff3) << 24;
        let mut off = 0;
        while off + 2 * GICR_SGI <= self.redist_size {
            let rd = self.redist + off;
            // SAFETY: a frame inside the mapped region (checked above).
            let typer = unsafe { ((rd + GICR_TYPER) as *const u64).read_volatile() };
            if typer >> 32 == me {
                return Some(rd);
            }
            if typer & GICR_TYPER_LAST != 0 {
                return None;
            }
            // GICv4 redistributors add two frames for virtual LPIs.
            off += if typer & GICR_TYPER_VLPIS != 0 {
                4 * GICR_SGI
            } else {
                2 * GICR_SGI
            };
        }
        None
    }

    /// Enables affinity routing and Group 1 in the distributor, wakes this
    /// CPU's redistributor, makes `intid` a Group 1 interrupt enabled
    /// there, and turns on the system-register CPU interface.
    pub fn enable_ppi(&self, intid: u32) -> Result<(), &'static str> {
        let ctlr = self.dist + GICD_CTLR;
        // ARE first: changing it with a group enabled is UNPREDICTABLE.
        wr32(ctlr, rd32(ctlr) | GICD_CTLR_ARE);
        if !wait_clear(ctlr, GICD_CTLR_RWP) {
            return Err("GICD_CTLR.RWP stuck");
        }
        wr32(ctlr, rd32(ctlr) | GICD_CTLR_ARE | GICD_CTLR_ENABLE);
        if !wait_clear(ctlr, GICD_CTLR_RWP) {
            return Err("GICD_CTLR.RWP stuck");
        }
        let rd = self.my_redist().ok_or("no redistributor for this CPU")?;
        let waker = rd + GICR_WAKER;
        wr32(waker, rd32(waker) & !GICR_WAKER_PROCESSOR_SLEEP);
        if !wait_clear(waker, GICR_WAKER_CHILDREN_ASLEEP) {
            return Err("the redistributor does not wake");
        }
        let sgi = rd + GICR_SGI;
        wr32(
            sgi + GICR_IGROUPR0,
            rd32(sgi + GICR_IGROUPR0) | (1 << intid),
        );
        set_priority(sgi + GICR_IPRIORITYR, intid);
        wr32(sgi + GICR_ISENABLER0, 1 << intid);
        if rd32(sgi + GICR_ISENABLER0) & (1 << intid) == 0 {
            return Err("GICR_ISENABLER0 does not hold the interrupt's bit");
        }
        let sre: u64;
        // SAFETY: ICC_SRE_EL1.SRE selects the system-register interface
        // (EL2/EL3, if any, allowed it at boot); PMR, BPR1 and IGRPEN1 only
        // decide which interrupts reach this CPU.
        unsafe {
            asm!(
                "mrs {t}, S3_0_C12_C12_5",
                "orr {t}, {t}, #1",
                "msr S3_0_C12_C12_5, {t}",
                "isb",
                "mrs {t}, S3_0_C12_C12_5",
                t = out(reg) sre,
                options(nomem, nostack)
            );
        }
        if sre & 1 == 0 {
            return Err("ICC_SRE_EL1.SRE stays 0: no system-register CPU interface");
        }
        // SAFETY: see above.
        unsafe {
            asm!(
                "msr S3_0_C4_C6_0, {pmr}",    // ICC_PMR_EL1
                "msr S3_0_C12_C12_3, xzr",    // ICC_BPR1_EL1
                "msr S3_0_C12_C12_7, {one}",  // ICC_IGRPEN1_EL1
                "isb",
                pmr = in(reg) u64::from(PMR_ALL),
                one = in(reg) 1u64,
                options(nomem, nostack)
            );
        }
        Ok(())
    }

    /// Sends the IPI to the CPU whose MPIDR affinity is `mpidr` (it
    /// enabled the SGI with [`GicV3::enable_ppi`]).
    pub fn send_ipi(&self, mpidr: u64) -> Result<(), &'static str> {
        let aff = |n: u32| (mpidr >> (8 * n)) & 0xff;
        let aff0 = aff(0);
        // ICC_SGI1R_EL1: Aff3 (55:48), range selector (47:44, Aff0 / 16),
        // Aff2 (39:32), INTID (27:24), Aff1 (23:16), target list (15:0).
        let sgi1r = (mpidr >> 32 & 0xff) << 48
            | (aff0 >> 4) << 44
            | aff(2) << 32
            | u64::from(IPI_SGI) << 24
            | aff(1) << 16
            | 1 << (aff0 & 15);
        // SAFETY: writing ICC_SGI1R_EL1 only raises the SGI at the target;
        // the `dsb` first makes this CPU's earlier stores visible to it.
        unsafe {
            asm!("dsb ishst", "msr S3_0_C12_C11_5, {}", "isb", in(reg) sgi1r, options(nostack))
        };
        Ok(())
    }

    /// Acknowledges the pending Group 1 interrupt, if any.
    pub fn ack(&self) -> Option<Irq> {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the interrupt, which
        // the caller ends with `eoi`.
        unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nomem, nostack)) };
        let intid = iar as u32 & INTID_MASK;
        (!(INTID_SPECIAL..INTID_SPECIAL + 4).contains(&intid)).then_some(Irq(intid))
    }

    /// Signals the end of `irq`.
    pub fn eoi(&self, irq: Irq) {
        // SAFETY: ends (priority drop and deactivation, EOImode 0) the
        // interrupt that `ack` returned.
        unsafe {
            asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) u64::from(irq.0), options(nomem, nostack))
        };
    }
}
