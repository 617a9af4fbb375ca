//! Emulation of the EL0 reads of identification registers Linux answers
//! for user code (its "MRS emulation"): `MIDR_EL1` gives the CPU's own
//! value, `MPIDR_EL1` the fixed value Linux gives (bit 31 only: no
//! topology is revealed), `REVIDR_EL1` zero. Other ID registers still
//! raise SIGILL (docs/errno.md).

/// `mrs xN, <reg>` with the register field of `insn` masked out of
/// `Rt`: op0 = 3, op1 = 0, CRn = 0, CRm = 0 and the given op2.
const fn mrs(op2: u32) -> u32 {
    0xd538_0000 | op2 << 5
}
const MRS_MIDR: u32 = mrs(0);
const MRS_MPIDR: u32 = mrs(5);
const MRS_REVIDR: u32 = mrs(6);

/// What Linux gives user space for `MPIDR_EL1`.
const MPIDR_USER: u64 = 1 << 31;

/// The value user code reads with the MRS instruction `insn`, if it is
/// one this emulates.
pub fn id_register_read(insn: u32) -> Option<u64> {
    match insn & !0x1f {
        MRS_MIDR => {
            let v: u64;
            // SAFETY: reading MIDR_EL1 at EL1 has no side effects.
            unsafe {
                core::arch::asm!("mrs {v}, midr_el1", v = out(reg) v, options(nomem, nostack))
            };
            Some(v)
        }
        MRS_MPIDR => Some(MPIDR_USER),
        MRS_REVIDR => Some(0),
        _ => None,
    }
}
