//! Host tests of both PTE encodings: exact bit patterns checked against the
//! architecture manuals, and property tests of the round trip.

mod common;

use folium_mm::PhysAddr;
use folium_mm::pgtable::{
    Aarch64, Attrs, IA32_PAT_VALUE, Level, MAIR_EL1_VALUE, MemType, Pte, PteError, PteFormat,
    PteKind, X86_64,
};
use proptest::prelude::*;

use common::attrs;

fn leaf(pa: u64, attrs: Attrs) -> PteKind {
    PteKind::Leaf {
        pa: PhysAddr::new(pa),
        attrs,
    }
}

fn young_dirty(a: Attrs) -> Attrs {
    Attrs {
        young: true,
        dirty: true,
        ..a
    }
}

// ---------------------------------------------------------------- arm64 --

/// Encodes, checks the exact value, and checks it decodes back.
fn arm(kind: PteKind, level: Level, expect: u64) {
    let raw = Aarch64::encode(kind, level);
    assert_eq!(raw.bits(), expect, "{kind:?} at {level:?}: got {raw:#018x}");
    assert_eq!(Aarch64::decode(raw, level), kind);
}

#[test]
fn arm64_mair() {
    // Attr0 Device-nGnRnE, Attr1 Normal WB RW-allocate, Attr2 Normal NC.
    assert_eq!(MAIR_EL1_VALUE, 0x0000_0000_0044_ff00);
}

#[test]
fn arm64_kernel_spot_values() {
    // Page (0b11) | AttrIndx 1 (0x4) | SH inner (0x300) | AF (0x400)
    // | DBM (51) | PXN (53) | UXN (54); AP = 0b00 (EL1 RW), global.
    arm(
        leaf(0x4000_0000, Attrs::KERNEL_DATA),
        Level::L3,
        0x0068_0000_4000_0707,
    );
    // Text: AP[2] read-only (0x80), no DBM, PXN clear (kernel-executable),
    // UXN still set.
    arm(
        leaf(0x4008_0000, Attrs::KERNEL_TEXT),
        Level::L3,
        0x0040_0000_4008_0787,
    );
    arm(
        leaf(0x4010_0000, Attrs::KERNEL_RODATA),
        Level::L3,
        0x0060_0000_4010_0787,
    );
    // 2 MiB block (0b01), AttrIndx 0 (Device-nGnRnE).
    arm(
        leaf(0x0800_0000, Attrs::KERNEL_DEVICE),
        Level::L2,
        0x0068_0000_0800_0701,
    );
    // 1 GiB block of RAM.
    arm(
        leaf(0x4000_0000, Attrs::KERNEL_DATA),
        Level::L1,
        0x0068_0000_4000_0705,
    );
    // Normal non-cacheable: AttrIndx 2 (0x8).
    let nc = Attrs {
        mem: MemType::NormalNonCacheable,
        ..Attrs::KERNEL_DATA
    };
    arm(leaf(0x5000_0000, nc), Level::L3, 0x0068_0000_5000_070b);
    // Table descriptors: 0b11 and the next table's address, nothing else.
    for level in [Level::L0, Level::L1, Level::L2] {
        arm(
            PteKind::Table(PhysAddr::new(0x4000_1000)),
            level,
            0x4000_1003,
        );
    }
    arm(PteKind::Absent, Level::L3, 0);
}

#[test]
fn arm64_user_spot_values() {
    // User RW, young, dirty: AP[1] EL0 (0x40), nG (0x800), DBM, PXN, UXN.
    arm(
        leaf(0x4123_4000, young_dirty(Attrs::user(true, false))),
        Level::L3,
        0x0068_0000_4123_4f47,
    );
    // Clean and old: AP[2] set (hardware may not write yet), AF clear.
    arm(
        leaf(0x4123_4000, Attrs::user(true, false)),
        Level::L3,
        0x0068_0000_4123_4bc7,
    );
    // User RX: UXN clear, PXN set (never kernel-executable).
    let rx = Attrs {
        young: true,
        ..Attrs::user(false, true)
    };
    arm(leaf(0x4123_4000, rx), Level::L3, 0x0020_0000_4123_4fc7);
    // Dirty but write-protected (fork COW): software dirty bit 55.
    arm(
        leaf(0x4123_4000, young_dirty(Attrs::user(false, false))),
        Level::L3,
        0x00e0_0000_4123_4fc7,
    );
    // The contiguous hint (bit 52) is not part of the meaning: an entry
    // with it decodes as the same leaf, and `encode` never sets it.
    let k = leaf(0x4123_0000, young_dirty(Attrs::user(true, false)));
    assert_eq!(Aarch64::encode(k, Level::L3).bits() & (1 << 52), 0);
    assert_eq!(
        Aarch64::decode(Pte::from_bits(0x0078_0000_4123_0f47), Level::L3),
        k
    );
    assert!(Aarch64::pte_cont(Pte::from_bits(0x0078_0000_4123_0f47)));
    assert!(!Aarch64::pte_cont(Pte::from_bits(0x0068_0000_4123_0f47)));
    assert!(
        !Aarch64::pte_cont(Pte::from_bits(0x0078_0000_4123_0f46)),
        "invalid"
    );
    assert!(!X86_64::pte_cont(Pte::from_bits(0x0078_0000_4123_0f47)));
}

#[test]
fn arm64_decode_edge_cases() {
    // A block type where blocks do not exist is invalid.
    assert_eq!(
        Aarch64::decode(Pte::from_bits(0x4000_0701), Level::L0),
        PteKind::Absent
    );
    assert_eq!(
        Aarch64::decode(Pte::from_bits(0x4000_0701), Level::L3),
        PteKind::Absent
    );
    // Invalid entries may carry software bits; still absent.
    assert_eq!(
        Aarch64::decode(Pte::from_bits(0xdead_beef_0000_0ffe), Level::L2),
        PteKind::Absent
    );
    // A classic RW entry without DBM is writable by hardware, hence dirty.
    let PteKind::Leaf { attrs, .. } =
        Aarch64::decode(Pte::from_bits(0x0060_0000_4000_0707), Level::L3)
    else {
        panic!("not a leaf")
    };
    assert!(attrs.writable && attrs.dirty);
    // Low bits of a block address are masked off.
    assert_eq!(
        Aarch64::decode(Pte::from_bits(0x0068_0000_4020_1705), Level::L1),
        leaf(0x4000_0000, Attrs::KERNEL_DATA)
    );
}

// --------------------------------------------------------------- x86_64 --

fn x86(kind: PteKind, level: Level, expect: u64) {
    let raw = X86_64::encode(kind, level);
    assert_eq!(raw.bits(), expect, "{kind:?} at {level:?}: got {raw:#018x}");
    assert_eq!(X86_64::decode(raw, level), kind);
}

#[test]
fn x86_pat() {
    assert_eq!(IA32_PAT_VALUE, 0x0007_0406_0007_0406);
}

#[test]
fn x86_spot_values() {
    // P | RW | A (0x20) | D (0x40) | G (0x100) | NX (63).
    x86(
        leaf(0x4000_0000, Attrs::KERNEL_DATA),
        Level::L3,
        0x8000_0000_4000_0163,
    );
    // Large pages add PS (0x80).
    x86(
        leaf(0x4020_0000, Attrs::KERNEL_DATA),
        Level::L2,
        0x8000_0000_4020_01e3,
    );
    x86(
        leaf(0x4000_0000, Attrs::KERNEL_DATA),
        Level::L1,
        0x8000_0000_4000_01e3,
    );
    // Text: P | A | G, executable, read-only, clean.
    x86(
        leaf(0x4008_0000, Attrs::KERNEL_TEXT),
        Level::L3,
        0x0000_0000_4008_0121,
    );
    // Device: PCD | PWT = PAT index 3 = UC.
    x86(
        leaf(0xfee0_0000, Attrs::KERNEL_DEVICE),
        Level::L3,
        0x8000_0000_fee0_017b,
    );
    // Normal non-cacheable: PCD = PAT index 2 = UC-.
    let nc = Attrs {
        mem: MemType::NormalNonCacheable,
        ..Attrs::KERNEL_DATA
    };
    x86(leaf(0x5000_0000, nc), Level::L3, 0x8000_0000_5000_0173);
    // User RW young dirty: P | RW | US | A | D | NX, not global.
    x86(
        leaf(0x4123_4000, young_dirty(Attrs::user(true, false))),
        Level::L3,
        0x8000_0000_4123_4067,
    );
    // Tables: P | RW | US | A; the leaf decides.
    for level in [Level::L0, Level::L1, Level::L2] {
        x86(
            PteKind::Table(PhysAddr::new(0x4000_1000)),
            level,
            0x4000_1027,
        );
    }
    // 52-bit physical addresses fit.
    x86(
        leaf(0x000f_ffff_ffff_f000, Attrs::KERNEL_DATA),
        Level::L3,
        0x800f_ffff_ffff_f163,
    );
}

#[test]
fn x86_decode_edge_cases() {
    // The large-page PAT bit (12) is not part of the address.
    assert_eq!(
        X86_64::decode(Pte::from_bits(0x8000_0000_4020_11e3), Level::L2),
        leaf(0x4020_0000, Attrs::KERNEL_DATA)
    );
    // Bit 7 at level 3 is PAT, not PS: still a 4 KiB page.
    assert!(matches!(
        X86_64::decode(Pte::from_bits(0x8000_0000_4000_01e3), Level::L3),
        PteKind::Leaf { .. }
    ));
    // PS in a PML4 entry is reserved: the walk faults.
    assert_eq!(
        X86_64::decode(Pte::from_bits(0x4000_00e3), Level::L0),
        PteKind::Absent
    );
    // Not present, whatever else is set.
    assert_eq!(
        X86_64::decode(Pte::from_bits(0x8000_0000_4000_01e2), Level::L1),
        PteKind::Absent
    );
}

#[test]
fn check_rejects_what_cannot_be_encoded() {
    let l = leaf(0x4000_0000, Attrs::KERNEL_DATA);
    let t = PteKind::Table(PhysAddr::new(0x4000_0000));
    for check in [Aarch64::check, X86_64::check] {
        assert_eq!(check(l, Level::L0), Err(PteError::BadLevel));
        assert_eq!(check(t, Level::L3), Err(PteError::BadLevel));
        assert_eq!(
            check(leaf(0x4010_0000, Attrs::KERNEL_DATA), Level::L1),
            Err(PteError::Misaligned)
        );
        assert_eq!(
            check(PteKind::Table(PhysAddr::new(0x800)), Level::L1),
            Err(PteError::Misaligned)
        );
        assert_eq!(check(l, Level::L1), Ok(()));
        assert_eq!(check(PteKind::Absent, Level::L0), Ok(()));
    }
    assert_eq!(
        Aarch64::check(leaf(1 << 48, Attrs::KERNEL_DATA), Level::L3),
        Err(PteError::AddressTooWide)
    );
    assert_eq!(
        X86_64::check(leaf(1 << 48, Attrs::KERNEL_DATA), Level::L3),
        Ok(())
    );
    assert_eq!(
        X86_64::check(leaf(1 << 52, Attrs::KERNEL_DATA), Level::L3),
        Err(PteError::AddressTooWide)
    );
}

// ------------------------------------------------------------ properties --

fn level() -> impl Strategy<Value = Level> {
    (0u8..4).prop_map(|n| Level::new(n).unwrap())
}

/// Any kind that `F` can encode at the chosen level.
fn valid_kind<F: PteFormat + 'static>() -> impl Strategy<Value = (PteKind, Level)> {
    (level(), any::<u64>(), attrs(), 0u8..3).prop_map(|(level, addr, mut attrs, pick)| {
        let addr = addr & ((1 << F::PA_BITS) - 1);
        // Protnone exists at L3 only.
        attrs.protnone &= level == Level::L3;
        let kind = match pick {
            1 if level.can_be_table() => PteKind::Table(PhysAddr::new(addr & !0xfff)),
            2 if level.can_be_leaf() => leaf(addr & !(level.size() - 1), attrs),
            _ => PteKind::Absent,
        };
        (kind, level)
    })
}

fn round_trip<F: PteFormat>(kind: PteKind, level: Level) -> Result<(), TestCaseError> {
    prop_assert_eq!(F::check(kind, level), Ok(()));
    let raw = F::encode(kind, level);
    prop_assert_eq!(F::decode(raw, level), kind, "raw {:#018x}", raw);
    // The MMU uses every entry but an empty one and a protnone page; the
    // mm counts the protnone page as present too.
    let protnone = matches!(kind, PteKind::Leaf { attrs, .. } if attrs.protnone);
    prop_assert_eq!(
        F::is_present(raw, level),
        kind != PteKind::Absent && !protnone
    );
    if level == Level::L3 {
        prop_assert_eq!(F::pte_present(raw), kind != PteKind::Absent);
        prop_assert_eq!(F::pte_protnone(raw), protnone);
        // Bit 0 is the valid / present bit of both formats: the hardware's
        // own test, not the decoder's.
        prop_assert_eq!(raw.bits() & 1 == 1, F::is_present(raw, level));
    }
    Ok(())
}

/// Decoding never panics, yields something encodable, and is a fixed point
/// after one decode-encode cycle.
fn decode_is_stable<F: PteFormat>(raw: Pte, level: Level) -> Result<(), TestCaseError> {
    let kind = F::decode(raw, level);
    prop_assert_eq!(F::check(kind, level), Ok(()), "raw {:#018x}", raw);
    prop_assert_eq!(F::decode(F::encode(kind, level), level), kind);
    Ok(())
}

proptest! {
    #![proptest_config(common::cases(ProptestConfig::default().cases))]

    #[test]
    fn arm64_round_trip((kind, level) in valid_kind::<Aarch64>()) {
        round_trip::<Aarch64>(kind, level)?;
    }

    #[test]
    fn x86_round_trip((kind, level) in valid_kind::<X86_64>()) {
        round_trip::<X86_64>(kind, level)?;
    }

    #[test]
    fn arm64_decode_any(raw in any::<u64>(), level in level()) {
        decode_is_stable::<Aarch64>(Pte::from_bits(raw), level)?;
    }

    #[test]
    fn x86_decode_any(raw in any::<u64>(), level in level()) {
        decode_is_stable::<X86_64>(Pte::from_bits(raw), level)?;
    }

    /// No arm64 entry is executable at both privileges: kernel entries
    /// always carry UXN, user entries always PXN.
    #[test]
    fn arm64_exec_never_crosses_privilege(mut a in attrs(), level in 1u8..4) {
        let level = Level::new(level).unwrap();
        a.protnone &= level == Level::L3;
        let raw = Aarch64::encode(leaf(0, a), level).bits();
        let (pxn, uxn) = (raw >> 53 & 1 == 1, raw >> 54 & 1 == 1);
        if a.user { prop_assert!(pxn) } else { prop_assert!(uxn) }
    }
}

#[test]
fn arm64_and_x86_split_the_address_space_differently() {
    use folium_mm::VirtAddr;
    // arm64 (T0SZ = T1SZ = 16): any address with the top 16 bits all 0 or all 1.
    assert!(Aarch64::va_in_range(VirtAddr::new(0xffff_0000_4000_0000)));
    assert!(Aarch64::va_in_range(VirtAddr::new(0x0000_8000_0000_0000)));
    assert!(!Aarch64::va_in_range(VirtAddr::new(0xfffe_ffff_ffff_ffff)));
    assert!(!Aarch64::va_in_range(VirtAddr::new(0x0001_0000_0000_0000)));
    // x86: canonical form, bit 47 sign-extended.
    assert!(!X86_64::va_in_range(VirtAddr::new(0xffff_0000_4000_0000)));
    assert!(X86_64::va_in_range(VirtAddr::new(0xffff_8000_0000_0000)));
}
