//! Self-tests of the trap machinery, and the deliberate fatal fault that
//! `cargo xtask test` uses to check that an unexpected exception is
//! reported and stops the machine with a failure status.

use crate::arch;

/// A kernel-half address that no early or final mapping covers.
#[cfg(target_arch = "aarch64")]
pub const UNMAPPED: u64 = 0xffff_7f00_dead_b000;
/// A kernel-half address that no early or final mapping covers.
#[cfg(target_arch = "x86_64")]
pub const UNMAPPED: u64 = 0xffff_c000_dead_b000;

kernel_test!(
    fn breakpoint_is_caught_and_resumed() {
        let rec = check_some!(arch::breakpoint(), "no breakpoint trap was recorded");
        #[cfg(target_arch = "aarch64")]
        {
            check_eq!(rec.class, 0x3c, "ESR_EL1.EC should be BRK");
            check_eq!(
                rec.syndrome & 0xffff,
                0xf01,
                "ESR_EL1.ISS should carry the brk immediate"
            );
        }
        #[cfg(target_arch = "x86_64")]
        {
            check_eq!(rec.class, 3, "vector should be #BP");
        }
        check!(rec.pc != 0);
        Ok(())
    }
);

kernel_test!(
    fn page_fault_is_caught_with_precise_report() {
        let r = arch::probe_read(UNMAPPED);
        let rec = check_some!(r.err(), "read of an unmapped address did not fault");
        check_eq!(rec.addr, UNMAPPED, "fault address (FAR_EL1 / CR2)");
        #[cfg(target_arch = "aarch64")]
        {
            check_eq!(rec.class, 0x25, "data abort at EL1");
            check_eq!(
                (rec.syndrome & 0x3f) >> 2,
                1,
                "DFSC should be a translation fault"
            );
            check_eq!(rec.syndrome & (1 << 6), 0, "WnR should say read");
        }
        #[cfg(target_arch = "x86_64")]
        {
            check_eq!(rec.class, 14, "#PF");
            check_eq!(
                rec.syndrome & 0x7,
                0,
                "error code: not-present, read, supervisor"
            );
        }
        println!("    fault report: {}", arch::describe(&rec));
        // A write faults the same way, and the kernel carries on.
        let w = arch::probe_write(UNMAPPED, 1);
        let wrec = check_some!(w.err());
        #[cfg(target_arch = "aarch64")]
        check!(wrec.syndrome & (1 << 6) != 0, "WnR should say write");
        #[cfg(target_arch = "x86_64")]
        check_eq!(
            wrec.syndrome & 0x7,
            0x2,
            "error code: not-present, write, supervisor"
        );
        Ok(())
    }
);

kernel_test!(
    fn probe_reads_mapped_memory() {
        static WORD: u64 = 0x0123_4567_89ab_cdef;
        let v = arch::probe_read(&raw const WORD as u64);
        check_eq!(v, Ok(0x0123_4567_89ab_cdef));
        Ok(())
    }
);

/// Touches an unmapped address with no fixup: must end in the fatal report.
pub fn trigger_unexpected_fault() -> bool {
    println!("selftest: reading {UNMAPPED:#x} with no fixup, expecting a fatal report");
    // SAFETY: deliberately unsound in effect: the load faults, and the trap
    // handler stops the machine before this function could observe anything.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    println!("selftest: the read returned {v:#x} instead of faulting");
    false
}

/// Recurses without bound on the kernel stack: must end in the stack
/// overflow report (x86: #DF on its IST stack; aarch64: the vectors'
/// overflow check), never in silence or a reset.
pub fn overflow_kernel_stack() -> bool {
    println!("selftest: recursing until the kernel stack overflows, expecting a report");
    let depth = recurse(0);
    println!("selftest: the recursion returned at depth {depth} instead of overflowing");
    false
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // A frame the optimiser cannot drop: the buffer is read back after the
    // call, so every level keeps 256 bytes live on the stack.
    let mut frame = [depth; 32];
    core::hint::black_box(&mut frame);
    let below = recurse(depth + 1);
    core::hint::black_box(&frame)[(depth % 32) as usize] + below
}
