//! Interrupts on a PC: the legacy 8259 pair remapped to vectors 0x20..0x2f
//! and masked (so a spurious IRQ cannot pose as an exception), the local
//! APIC (xAPIC registers in its MMIO page, or x2APIC MSRs when firmware
//! left it in that mode) and its timer, calibrated against the HPET and
//! run periodically at `sched::TICK_HZ`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use super::msr;

/// Where the 8259 pair delivers (IRQ 0..15), all masked.
const PIC_BASE: u8 = 0x20;
/// The LAPIC timer's vector.
pub const TIMER_VECTOR: u64 = 0x30;
/// The vector one CPU's IPI arrives on at another.
pub const IPI_VECTOR: u64 = 0xf0;
/// The LAPIC spurious-interrupt vector (low 4 bits all 1, as older
/// APICs require).
pub const SPURIOUS_VECTOR: u64 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2: u64 = 1 << 10;

const REG_TPR: u32 = 0x80;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
/// x2APIC: the whole ICR is one MSR.
const X2APIC_ICR: u32 = 0x830;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_PENDING: u32 = 1 << 12;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const SVR_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b0011: by 16.
const DIV_16: u32 = 0b0011;

/// The xAPIC register page's virtual address (0: x2APIC mode, or not set
/// up yet).
static MMIO: AtomicU64 = AtomicU64::new(0);
static X2APIC: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicBool = AtomicBool::new(false);
/// Set once the boot CPU's LAPIC is enabled (by [`timer_init`] or the
/// first [`start_ap`]).
static BOOT_LAPIC: AtomicBool = AtomicBool::new(false);
/// LAPIC timer counts per second (after the divider), as calibrated.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Interrupts that reached a vector nobody handles (reports, tests).
static STRAY: AtomicU64 = AtomicU64::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        return msr::read(0x800 + reg / 16) as u32;
    }
    let base = MMIO.load(Ordering::Relaxed);
    // SAFETY: `init_lapic` set MMIO to the LAPIC page, mapped as device
    // memory in the linear map by the board (q35 lists it).
    unsafe { ((base + u64::from(reg)) as *const u32).read_volatile() }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: an x2APIC register write; the callers pass valid values.
        unsafe { msr::write(0x800 + reg / 16, u64::from(v)) };
        return;
    }
    let base = MMIO.load(Ordering::Relaxed);
    // SAFETY: as in `read`.
    unsafe { ((base + u64::from(reg)) as *mut u32).write_volatile(v) };
}

/// Remaps the 8259 pair to `PIC_BASE` and masks every line. Runs at boot
/// (`cpu::init`): firmware leaves the PIT's IRQ 0 unmasked at vector 8,
/// which the first user code to run with IF set would take for a #DF.
pub(super) fn mask_pic() {
    // SAFETY: the standard 8259 initialisation sequence on its fixed PC
    // ports; the PICs end with every IRQ masked.
    unsafe {
        let (mut cmd1, mut data1) = (Port::<u8>::new(0x20), Port::<u8>::new(0x21));
        let (mut cmd2, mut data2) = (Port::<u8>::new(0xa0), Port::<u8>::new(0xa1));
        cmd1.write(0x11); // ICW1: edge, cascade, ICW4 follows
        cmd2.write(0x11);
        data1.write(PIC_BASE); // ICW2: vector base
        data2.write(PIC_BASE + 8);
        data1.write(4); // ICW3: slave on IRQ 2
        data2.write(2);
        data1.write(1); // ICW4: 8086 mode
        data2.write(1);
        data1.write(0xff); // OCW1: mask all
        data2.write(0xff);
    }
}

/// Enables the local APIC; false if its registers cannot be reached.
fn init_lapic() -> bool {
    let base = msr::read(IA32_APIC_BASE);
    if base & APIC_BASE_X2 != 0 {
        X2APIC.store(true, Ordering::Relaxed);
    } else {
        let pa = base & 0x000f_ffff_ffff_f000;
        let mapped = crate::platform::device_regions()
            .iter()
            .any(|r| r.start.as_u64() <= pa && pa + 0x1000 <= r.end.as_u64());
        let Some(info) = folium_boot::info() else {
            return false;
        };
        if !mapped {
            return false;
        }
        MMIO.store(pa + info.linear_offset, Ordering::Relaxed);
        if base & APIC_BASE_ENABLE == 0 {
            // SAFETY: setting the global enable bit at the same base.
            unsafe { msr::write(IA32_APIC_BASE, base | APIC_BASE_ENABLE) };
        }
    }
    write(REG_TPR, 0);
    write(REG_LVT_ERROR, LVT_MASKED | 0xfe);
    write(REG_SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    true
}

/// Counts the LAPIC timer makes per second (divided by 16), measured over
/// 10 ms of the HPET.
fn calibrate() -> u64 {
    let hz = super::clock::ticks_per_sec();
    write(REG_TIMER_DIV, DIV_16);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    let wait = hz / 100;
    let t0 = super::clock::ticks();
    write(REG_TIMER_INIT, u32::MAX);
    let mut t1 = t0;
    while t1.wrapping_sub(t0) < wait {
        t1 = super::clock::ticks();
    }
    let left = read(REG_TIMER_CUR);
    write(REG_TIMER_INIT, 0);
    let counted = u64::from(u32::MAX - left);
    (u128::from(counted) * u128::from(hz) / u128::from(t1 - t0).max(1)) as u64
}

/// Starts the periodic timer at `crate::sched::TICK_HZ` (once; later
/// calls return at once). Interrupts stay masked in the kernel: ticks
/// arrive while user code runs, or in [`wait_for_interrupt`].
///
/// On a secondary CPU: enables its LAPIC and starts its timer at the rate
/// the boot CPU calibrated (every LAPIC timer of the machine runs from the
/// same clock).
pub fn timer_init() {
    if crate::smp::id() != 0 {
        let per_sec = TIMER_HZ.load(Ordering::Relaxed);
        if per_sec != 0 && init_lapic() {
            start_periodic(per_sec);
        }
        return;
    }
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    if super::clock::ticks_per_sec() == 0 {
        println!("apic: no HPET to calibrate the LAPIC timer against; no timer");
        return;
    }
    if !boot_lapic() {
        println!("apic: local APIC registers not mapped; no timer");
        return;
    }
    start_periodic(timer_rate());
}

/// The LAPIC timer's rate, calibrated on the boot CPU the first time
/// (before the secondary CPUs start, which take it as it is).
fn timer_rate() -> u64 {
    match TIMER_HZ.load(Ordering::Relaxed) {
        0 => {
            let per_sec = calibrate();
            TIMER_HZ.store(per_sec, Ordering::Relaxed);
            per_sec
        }
        hz => hz,
    }
}

/// The boot CPU's LAPIC, enabled once.
fn boot_lapic() -> bool {
    BOOT_LAPIC.load(Ordering::Relaxed) || {
        let ok = init_lapic();
        BOOT_LAPIC.store(ok, Ordering::Relaxed);
        ok
    }
}

/// Runs this CPU's LAPIC timer periodically at `crate::sched::TICK_HZ`.
fn start_periodic(per_sec: u64) {
    let count = (per_sec / crate::sched::TICK_HZ).clamp(1, u64::from(u32::MAX)) as u32;
    write(REG_TIMER_DIV, DIV_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR as u32);
    write(REG_TIMER_INIT, count);
}

/// Spins for `us` microseconds of the HPET.
fn delay_us(us: u64) {
    let hz = super::clock::ticks_per_sec().max(1);
    let t0 = super::clock::ticks();
    let wait = (u128::from(hz) * u128::from(us) / 1_000_000) as u64;
    while super::clock::ticks().wrapping_sub(t0) < wait {
        core::hint::spin_loop();
    }
}

/// Sends an inter-processor interrupt (ICR low word `low`) to the CPU
/// whose APIC id is `dest`, and waits until the APIC has sent it.
fn send_ipi(dest: u32, low: u32) -> Result<(), &'static str> {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: an ICR write sends the IPI described; x2APIC needs no
        // wait for delivery.
        unsafe { msr::write(X2APIC_ICR, u64::from(dest) << 32 | u64::from(low)) };
        return Ok(());
    }
    if dest > 0xff {
        return Err("an APIC id above 255 needs x2APIC mode");
    }
    write(REG_ICR_HIGH, dest << 24);
    write(REG_ICR_LOW, low);
    for _ in 0..100_000 {
        if read(REG_ICR_LOW) & ICR_PENDING == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err("the local APIC does not send the IPI")
}

/// Enables this CPU's local APIC for IPIs (the boot CPU's once; a
/// secondary's in its own start-up).
pub fn enable_ipi() -> Result<(), &'static str> {
    let ok = if crate::smp::id() == 0 {
        boot_lapic()
    } else {
        init_lapic()
    };
    ok.then_some(()).ok_or("local APIC registers not mapped")
}

/// Sends the IPI (a fixed interrupt on [`IPI_VECTOR`]) to the CPU whose
/// APIC id is `apic_id`.
pub fn send_fixed_ipi(apic_id: u32) -> Result<(), &'static str> {
    send_ipi(apic_id, IPI_VECTOR as u32)
}

/// Starts the application processor `apic_id` at the real-mode page
/// `vector` (its physical address >> 12): INIT, 10 ms, then two
/// STARTUP IPIs 200 µs apart (the second is ignored by a CPU already
/// running), the universal start-up sequence. An error means no STARTUP
/// went out: the CPU cannot be running.
pub fn start_ap(apic_id: u32, vector: u8) -> Result<(), &'static str> {
    if !boot_lapic() {
        return Err("local APIC registers not mapped");
    }
    if super::clock::ticks_per_sec() == 0 {
        return Err("no clock to time the start-up sequence");
    }
    // The rate the new CPU's timer will run at.
    timer_rate();
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL)?;
    delay_us(10_000);
    send_ipi(apic_id, ICR_STARTUP | u32::from(vector))?;
    // From here the CPU may be running, on the stack it was given: so Ok
    // whatever becomes of the second STARTUP (the caller must then treat
    // the CPU as released).
    delay_us(200);
    let _ = send_ipi(apic_id, ICR_STARTUP | u32::from(vector));
    Ok(())
}

/// The calibrated LAPIC timer rate (counts per second after the divider),
/// 0 before [`timer_init`].
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Interrupts that arrived on vectors nobody handles.
pub fn stray_interrupts() -> u64 {
    STRAY.load(Ordering::Relaxed)
}

fn eoi() {
    write(REG_EOI, 0);
}

/// Runs the handler of interrupt `vector` (>= 32), with interrupts masked.
pub(super) fn handle_irq(vector: u64) {
    match vector {
        TIMER_VECTOR => {
            crate::sched::timer_tick();
            eoi();
        }
        IPI_VECTOR => {
            crate::smp::ipi_received();
            eoi();
        }
        // Needs no EOI (the APIC never set an in-service bit for it).
        SPURIOUS_VECTOR => {}
        // A spurious IRQ 7 of the master PIC: no EOI.
        v if v == u64::from(PIC_BASE) + 7 => {}
        v if (u64::from(PIC_BASE)..u64::from(PIC_BASE) + 16).contains(&v) => {
            STRAY.fetch_add(1, Ordering::Relaxed);
            // SAFETY: non-specific EOI commands to the 8259s; for a
            // spurious IRQ 15 only the master has one in service.
            unsafe {
                if v != u64::from(PIC_BASE) + 15 {
                    Port::<u8>::new(0xa0).write(0x20);
                }
                Port::<u8>::new(0x20).write(0x20);
            }
        }
        _ => {
            STRAY.fetch_add(1, Ordering::Relaxed);
            if X2APIC.load(Ordering::Relaxed) || MMIO.load(Ordering::Relaxed) != 0 {
                eoi();
            }
        }
    }
}

/// Waits for an interrupt with interrupts enabled (`sti; hlt`), runs its
/// handler, and returns with interrupts masked again.
pub fn wait_for_interrupt() {
    // SAFETY: `sti` takes effect after `hlt` starts (the interrupt shadow),
    // so a pending interrupt wakes the hlt instead of being lost; the
    // handler returns to `cli`. Kernel code is interrupt-safe at this point
    // (callers hold no lock).
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
}

/// Lets a pending interrupt be taken now: a short window with interrupts
/// enabled at a preemption point (`crate::proc::cond_resched`), so a tick
/// that came during long kernel work is counted. Returns with interrupts
/// disabled again.
pub fn irq_window() {
    // SAFETY: `sti` enables interrupts after the next instruction (the
    // interrupt shadow), so the `nop` is there to give a pending one its
    // chance before `cli`. The stub saves every general register and the
    // handler touches only the tick state; callers hold no lock.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nostack)) };
}
