//! Emulation of the EL0 reads of identification registers Linux answers
//! for user code (its "MRS emulation", `Documentation/arch/arm64/
//! cpu-feature-registers.rst`). User code may probe the CPU with
//! `mrs xN, <ID register>`; the read traps to EL1 and the kernel gives
//! the user-visible view:
//!
//! - `MIDR_EL1` is the CPU's own value, `MPIDR_EL1` the fixed value Linux
//!   gives (bit 31 only: no topology is revealed), `REVIDR_EL1` zero; any
//!   other register with CRm = 0 is not emulated (SIGILL).
//! - Every other register of the ID space (op0 = 3, op1 = 0, CRn = 0,
//!   CRm = 2 to 7: the AArch32 and AArch64 feature registers) reads as
//!   the CPU's value of the fields Linux makes visible, with each hidden
//!   field at Linux's "safe" value. A register nobody describes reads as
//!   zero, as in Linux.
//!
//! A field is visible here only if Linux shows it *and* Folium supports
//! what it advertises. Features whose state or controls Folium does not
//! manage stay hidden at zero: SVE and SME (no vector state is saved),
//! pointer authentication (no keys), BTI (no guarded pages), MTE (no tag
//! storage), MOPS (SCTLR_EL1.MSCEn stays clear). On the CPUs QEMU models
//! for Folium's boards (Cortex-A53/A72) none of those exists, so the
//! values equal Linux's (checked by `userspace/c/errno.c`).

/// The op0 = 3, op1 = 0, CRn = 0 part of an `mrs` instruction (L = 1),
/// with CRm, op2 and Rt clear.
const MRS_ID_SPACE: u32 = 0xd538_0000;
/// The bits of an `mrs` that choose CRm, op2 and Rt.
const CRM_OP2_RT: u32 = 0xfff;

/// What Linux gives user space for `MPIDR_EL1`.
const MPIDR_USER: u64 = 1 << 31;

/// A 4-bit field at `shift`, all ones: one visible field of a mask.
const fn field(shift: u32) -> u64 {
    0xf << shift
}

/// `value` in the 4-bit field at `shift`: one hidden field's safe value.
const fn at(shift: u32, value: u64) -> u64 {
    value << shift
}

/// Reads the system register named in `asm!` syntax; each must be in the
/// ID space, which EL1 may read without side effects (reserved encodings
/// of the space read as zero).
macro_rules! id_reg {
    ($name:literal) => {{
        fn read() -> u64 {
            let v: u64;
            // SAFETY: an ID-space register read at EL1 only returns a
            // value; it touches no memory and changes no state.
            unsafe {
                core::arch::asm!(concat!("mrs {v}, ", $name), v = out(reg) v,
                    options(nomem, nostack, preserves_flags))
            };
            v
        }
        read
    }};
}

/// One described register: the CPU's value masked to the visible fields,
/// or-ed with the hidden fields' safe values.
struct IdReg {
    crm: u32,
    op2: u32,
    read: fn() -> u64,
    visible: u64,
    hidden: u64,
}

/// The described registers of CRm 2 to 7 (Linux 6.12's table, less the
/// features Folium does not support; see the module comment). Any other
/// register of those CRm values reads as zero.
const ID_REGS: &[IdReg] = &[
    // AArch32 ID_ISAR5_EL1: CRC32, SHA2, SHA1, AES.
    IdReg {
        crm: 2,
        op2: 5,
        read: id_reg!("s3_0_c0_c2_5"),
        visible: field(16) | field(12) | field(8) | field(4),
        hidden: 0,
    },
    // AArch32 ID_ISAR6_EL1: I8MM, BF16, SB, FHM, DP.
    IdReg {
        crm: 2,
        op2: 7,
        read: id_reg!("s3_0_c0_c2_7"),
        visible: field(24) | field(20) | field(12) | field(8) | field(4),
        hidden: 0,
    },
    // MVFR0_EL1: FPDP.
    IdReg {
        crm: 3,
        op2: 0,
        read: id_reg!("s3_0_c0_c3_0"),
        visible: field(8),
        hidden: 0,
    },
    // MVFR1_EL1: SIMDFMAC, FPHP, SIMDHP, SIMDSP, SIMDInt, SIMDLS.
    IdReg {
        crm: 3,
        op2: 1,
        read: id_reg!("s3_0_c0_c3_1"),
        visible: field(28) | field(24) | field(20) | field(16) | field(12) | field(8),
        hidden: 0,
    },
    // AArch32 ID_PFR2_EL1: SSBS.
    IdReg {
        crm: 3,
        op2: 4,
        read: id_reg!("s3_0_c0_c3_4"),
        visible: field(4),
        hidden: 0,
    },
    // ID_AA64PFR0_EL1: DIT, AdvSIMD, FP; EL1 and EL0 shown as
    // "AArch64 only". SVE hidden.
    IdReg {
        crm: 4,
        op2: 0,
        read: id_reg!("s3_0_c0_c4_0"),
        visible: field(48) | field(20) | field(16),
        hidden: at(4, 1) | at(0, 1),
    },
    // ID_AA64PFR1_EL1: SSBS. SME, MTE and BT hidden.
    IdReg {
        crm: 4,
        op2: 1,
        read: id_reg!("s3_0_c0_c4_1"),
        visible: field(4),
        hidden: 0,
    },
    // ID_AA64DFR0_EL1: nothing visible; DebugVer shown as Armv8.0's.
    IdReg {
        crm: 5,
        op2: 0,
        read: id_reg!("s3_0_c0_c5_0"),
        visible: 0,
        hidden: at(0, 6),
    },
    // ID_AA64ISAR0_EL1: RNDR, TS, FHM, DP, SM4, SM3, SHA3, RDM, atomics,
    // CRC32, SHA2, SHA1, AES (TLB range hidden).
    IdReg {
        crm: 6,
        op2: 0,
        read: id_reg!("s3_0_c0_c6_0"),
        visible: field(60)
            | field(52)
            | field(48)
            | field(44)
            | field(40)
            | field(36)
            | field(32)
            | field(28)
            | field(20)
            | field(16)
            | field(12)
            | field(8)
            | field(4),
        hidden: 0,
    },
    // ID_AA64ISAR1_EL1: I8MM, DGH, BF16, SB, FRINTTS, LRCPC, FCMA, JSCVT,
    // DPB. Pointer authentication (GPI, GPA, API, APA) hidden.
    IdReg {
        crm: 6,
        op2: 1,
        read: id_reg!("s3_0_c0_c6_1"),
        visible: field(52)
            | field(48)
            | field(44)
            | field(36)
            | field(32)
            | field(20)
            | field(16)
            | field(12)
            | field(0),
        hidden: 0,
    },
    // ID_AA64ISAR2_EL1: CSSC, RPRFM, RPRES, WFxT. MOPS and pointer
    // authentication hidden.
    IdReg {
        crm: 6,
        op2: 2,
        read: id_reg!("s3_0_c0_c6_2"),
        visible: field(52) | field(48) | field(4) | field(0),
        hidden: 0,
    },
    // ID_AA64MMFR0_EL1: ECV; the granule fields shown as Linux's safe
    // values (4K and 64K "not implemented" at stage 1, "as stage 1" at
    // stage 2), everything else zero.
    IdReg {
        crm: 7,
        op2: 0,
        read: id_reg!("s3_0_c0_c7_0"),
        visible: field(60),
        hidden: at(40, 1) | at(36, 1) | at(32, 1) | at(28, 0xf) | at(24, 0xf),
    },
    // ID_AA64MMFR1_EL1: AFP.
    IdReg {
        crm: 7,
        op2: 1,
        read: id_reg!("s3_0_c0_c7_1"),
        visible: field(44),
        hidden: 0,
    },
    // ID_AA64MMFR2_EL1: AT (unaligned single-copy atomicity).
    IdReg {
        crm: 7,
        op2: 2,
        read: id_reg!("s3_0_c0_c7_2"),
        visible: field(32),
        hidden: 0,
    },
];

/// The user's view of the ID-space register (CRm, op2), given a way to
/// read the CPU's value of a described one; `None` for a register Linux
/// does not emulate (the read stays SIGILL).
fn user_view(crm: u32, op2: u32, midr: impl FnOnce() -> u64) -> Option<u64> {
    match (crm, op2) {
        (0, 0) => Some(midr()),
        (0, 5) => Some(MPIDR_USER),
        (0, 6) => Some(0),
        (2..=7, _) => Some(
            ID_REGS
                .iter()
                .find(|r| r.crm == crm && r.op2 == op2)
                .map_or(0, |r| ((r.read)() & r.visible) | r.hidden),
        ),
        _ => None,
    }
}

/// The value user code reads with the MRS instruction `insn`, if it is
/// one this emulates.
pub fn id_register_read(insn: u32) -> Option<u64> {
    if insn & !CRM_OP2_RT != MRS_ID_SPACE {
        return None;
    }
    let crm = (insn >> 8) & 0xf;
    let op2 = (insn >> 5) & 0x7;
    user_view(crm, op2, id_reg!("midr_el1"))
}
