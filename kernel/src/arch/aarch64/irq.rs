//! Interrupts on aarch64: the periodic tick from the EL1 virtual timer
//! (CNTV), the board's controller (`crate::platform::irqchip`) to route
//! and acknowledge it, and the idle wait.
//!
//! Why the virtual timer: it counts CNTVCT, the counter `clock` already
//! reads, and it is wired on all three boards (GIC PPI 27 on virt and the
//! Pi 4's GIC-400, the CNTV bit of the Pi 3's BCM2836 local controller).
//! EL1 owns it however the kernel was entered (EL2 sets CNTVOFF to 0 and
//! traps none of it), and under a hypervisor it is the timer a guest is
//! given, where the physical one may trap.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, Readable, Writeable};

use crate::platform::irqchip;

/// Counter ticks per timer interrupt.
static INTERVAL: AtomicU64 = AtomicU64::new(0);

/// QEMU's generic-timer frequency, used should CNTFRQ_EL0 read 0 (firmware
/// that never set it).
const FALLBACK_HZ: u64 = 62_500_000;

/// Sets the compare value (CNTV_CVAL_EL0, the kernel's: changing it only
/// moves the next timer interrupt).
fn write_cval(v: u64) {
    CNTV_CVAL_EL0.set(v);
    barrier::isb(barrier::SY);
}

fn read_cval() -> u64 {
    CNTV_CVAL_EL0.get()
}

/// Starts the periodic timer at `crate::sched::TICK_HZ` and unmasks it at
/// the interrupt controller. CPU interrupts stay masked in the kernel.
/// Calling it again restarts the period.
pub fn timer_init() {
    let freq = match super::clock::ticks_per_sec() {
        0 => FALLBACK_HZ,
        f => f,
    };
    let interval = (freq / crate::sched::TICK_HZ).max(1);
    INTERVAL.store(interval, Ordering::Relaxed);
    write_cval(super::clock::ticks() + interval);
    // Enables the EL1 virtual timer, unmasked: it only raises its PPI.
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    // User code may read the virtual counter and its frequency
    // (CNTKCTL_EL1.EL0VCTEN), as Linux allows for its vDSO and programs'
    // own timing; the physical counter and the timers stay EL1's.
    // SAFETY: CNTKCTL_EL1 only gates EL0 access to the generic timer; the
    // kernel's own use of the timer is unchanged.
    unsafe {
        core::arch::asm!(
            "mrs {t}, cntkctl_el1",
            "orr {t}, {t}, #2",
            "msr cntkctl_el1, {t}",
            t = out(reg) _,
            options(nostack, preserves_flags)
        );
    }
    barrier::isb(barrier::SY);
    if let Err(e) = irqchip::enable_timer() {
        println!("irq: timer interrupt not enabled: {e}");
    }
}

/// The timer's interrupt: next deadline one period after the last one (so
/// the tick rate does not drift with handling latency), or one period from
/// now if that already passed (after a long masked stretch: ticks are
/// dropped rather than delivered in a burst). Moving the deadline into
/// the future deasserts the timer's level-triggered line.
fn timer_interrupt() {
    // A level-triggered line can stay latched as pending in the controller
    // after the handler moved the deadline (seen on the Pi 4's GIC-400
    // model): only a timer whose condition really holds is a tick.
    if !CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS) {
        return;
    }
    let interval = INTERVAL.load(Ordering::Relaxed).max(1);
    let now = super::clock::ticks();
    let mut next = read_cval().wrapping_add(interval);
    if next <= now {
        next = now + interval;
    }
    write_cval(next);
    crate::sched::timer_tick();
}

/// Handles every pending interrupt (with interrupts masked): called after
/// an IRQ from EL0, and from the EL1 vector (only reachable through
/// [`wait_for_interrupt`]).
pub fn handle_irq() {
    // Bounded: a source that never deasserts must not wedge the kernel.
    for _ in 0..16 {
        let Some(irq) = irqchip::ack() else {
            return;
        };
        if irqchip::is_timer(irq) {
            timer_interrupt();
        } else if irqchip::is_ipi(irq) {
            crate::smp::ipi_received();
        }
        irqchip::eoi(irq);
    }
}

/// Waits for an interrupt, runs its handler and returns with interrupts
/// masked again. `wfi` with IRQs masked still wakes on a pending one, which
/// is then taken in the short unmasked window: none can slip in between a
/// check and the wait.
pub fn wait_for_interrupt() {
    // SAFETY: the IRQ taken in the window runs the EL1 vector, which saves
    // all general registers and calls an AAPCS64 Rust handler: only the
    // caller-saved registers (declared clobbered) may change.
    unsafe {
        asm!(
            "wfi",
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            clobber_abi("C"),
        )
    };
}

/// Lets a pending interrupt be taken now: a short unmasked window at a
/// preemption point (`crate::proc::cond_resched`), so a tick that came
/// during long kernel work is counted (Linux's kernel runs with interrupts
/// on; Folium's opens them only here and in [`wait_for_interrupt`]).
/// Returns with interrupts masked again.
pub fn irq_window() {
    // SAFETY: as in `wait_for_interrupt`: the IRQ taken in the window runs
    // the EL1 vector, which saves all general registers and calls an
    // AAPCS64 Rust handler, so only the caller-saved registers (declared
    // clobbered) may change. The ISB makes the unmasking take effect (and
    // a pending IRQ be taken) before the mask is set again.
    unsafe {
        asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            clobber_abi("C"),
        )
    };
}
