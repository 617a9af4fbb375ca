//! Host tests of the raw last-level entry helpers of `PteFormat`
//! (`pte_pfn`, `pte_wrprotect`, `pte_same_ignoring_ad`, ...) on both
//! formats, against the `PteKind` round trip as the oracle.
//!
//! | property                        | entries checked                          |
//! |---------------------------------|------------------------------------------|
//! | exact: `h(encode(k)) == encode(k')` and `decode` of it `== k'` | every encodable L3 leaf |
//! | meaning: `decode(h(raw)) == k'(decode(raw))` | any present raw L3 entry    |
//! | predicates equal the decoded attribute | both of the above               |
//! | `pte_same_ignoring_ad` is exact | pairs of encodable leaves                |
//! | `pte_same_ignoring_ad` is sound | pairs of arbitrary present raw entries   |
//! | `READONLY_AD` implies read-only and "same" | arbitrary entries near a present read-only one |

mod common;

use folium_mm::pgtable::{Aarch64, Attrs, Level, MemType, Pte, PteFormat, PteKind, X86_64};
use folium_mm::{PAGE_SIZE, PhysAddr};
use proptest::prelude::*;

use common::attrs;

const L3: Level = Level::L3;

/// `p` with the bits of `mask` flipped.
fn flip(p: Pte, mask: u64) -> Pte {
    Pte::from_bits(p.bits() ^ mask)
}

fn leaf(pa: PhysAddr, attrs: Attrs) -> PteKind {
    PteKind::Leaf { pa, attrs }
}

/// Any 4 KiB page entry `F` can encode.
fn page<F: PteFormat>() -> impl Strategy<Value = PteKind> {
    (any::<u64>(), attrs()).prop_map(|(addr, a)| {
        leaf(
            PhysAddr::new(addr & ((1 << F::PA_BITS) - 1) & !(PAGE_SIZE - 1)),
            a,
        )
    })
}

/// The attributes of a leaf, which every generator here produces.
fn attrs_of(k: PteKind) -> (PhysAddr, Attrs) {
    match k {
        PteKind::Leaf { pa, attrs } => (pa, attrs),
        other => panic!("not a leaf: {other:?}"),
    }
}

/// A helper and what it must do to the decoded attributes.
type Case = (&'static str, fn(Pte) -> Pte, fn(&mut Attrs));

fn cases<F: PteFormat>() -> [Case; 6] {
    [
        ("wrprotect", F::pte_wrprotect, |a| a.writable = false),
        ("mkwrite", F::pte_mkwrite, |a| a.writable = true),
        ("mkold", F::pte_mkold, |a| a.young = false),
        ("mkyoung", F::pte_mkyoung, |a| a.young = true),
        ("mkclean", F::pte_mkclean, |a| a.dirty = false),
        ("mkdirty", F::pte_mkdirty, |a| a.dirty = true),
    ]
}

fn predicates_match<F: PteFormat>(raw: Pte, k: PteKind) -> Result<(), TestCaseError> {
    let (pa, a) = attrs_of(k);
    prop_assert!(F::pte_present(raw));
    prop_assert_eq!(F::pte_pfn(raw), pa.pfn(), "raw {:#x}", raw);
    prop_assert_eq!(F::pte_young(raw), a.young, "raw {:#x}", raw);
    prop_assert_eq!(F::pte_dirty(raw), a.dirty, "raw {:#x}", raw);
    prop_assert_eq!(F::pte_writable(raw), a.writable, "raw {:#x}", raw);
    Ok(())
}

/// Every helper spells its result exactly as `encode` would.
fn helpers_exact<F: PteFormat>(k: PteKind) -> Result<(), TestCaseError> {
    let raw = F::encode(k, L3);
    predicates_match::<F>(raw, k)?;
    for (name, h, change) in cases::<F>() {
        let (pa, mut a) = attrs_of(k);
        change(&mut a);
        let want = leaf(pa, a);
        let got = h(raw);
        prop_assert_eq!(F::decode(got, L3), want, "{} of {:#x}", name, raw);
        prop_assert_eq!(got, F::encode(want, L3), "{} of {:#x}", name, raw);
        predicates_match::<F>(got, want)?;
    }
    Ok(())
}

/// On any present entry, every helper changes exactly its attribute.
fn helpers_mean<F: PteFormat>(raw: Pte) -> Result<(), TestCaseError> {
    let k = F::decode(raw, L3);
    prop_assert_eq!(F::pte_present(raw), k != PteKind::Absent, "raw {:#x}", raw);
    if k == PteKind::Absent {
        return Ok(());
    }
    predicates_match::<F>(raw, k)?;
    for (name, h, change) in cases::<F>() {
        let (pa, mut a) = attrs_of(k);
        change(&mut a);
        let got = h(raw);
        prop_assert_eq!(F::decode(got, L3), leaf(pa, a), "{} of {:#x}", name, raw);
    }
    Ok(())
}

/// `pte_advance` moves the frame and nothing else; `n` is kept small
/// enough that the frame stays inside the address field.
fn advance<F: PteFormat>(raw: Pte, n: u64) -> Result<(), TestCaseError> {
    let limit = 1u64 << (F::PA_BITS - 12);
    let k = F::decode(raw, L3);
    if k == PteKind::Absent || F::pte_pfn(raw).as_u64() + n >= limit {
        return Ok(());
    }
    let (pa, a) = attrs_of(k);
    let got = F::pte_advance(raw, n);
    prop_assert_eq!(F::decode(got, L3), leaf(pa + n * PAGE_SIZE, a));
    prop_assert_eq!(F::pte_pfn(got), pa.pfn() + n);
    // Only the address field changed.
    prop_assert_eq!(
        (got.bits() ^ raw.bits()) & !((limit - 1) << 12),
        0,
        "{:#x} -> {:#x}",
        raw,
        got
    );
    prop_assert_eq!(F::pte_advance(got, 0), got);
    Ok(())
}

/// The attributes batching compares: all but young, dirty, writable.
fn batch_view(k: PteKind) -> PteKind {
    let (pa, a) = attrs_of(k);
    leaf(
        pa,
        Attrs {
            young: false,
            dirty: false,
            writable: false,
            ..a
        },
    )
}

/// A second leaf derived from `k`: young/dirty/writable flipped as asked,
/// and at most one other difference (`other` picks which).
fn variant(k: PteKind, flips: [bool; 3], other: u8) -> PteKind {
    let (mut pa, mut a) = attrs_of(k);
    a.young ^= flips[0];
    a.dirty ^= flips[1];
    a.writable ^= flips[2];
    match other {
        1 => pa = PhysAddr::new(pa.as_u64() ^ PAGE_SIZE),
        2 => a.user = !a.user,
        3 => a.exec = !a.exec,
        4 => a.global = !a.global,
        5 => {
            a.mem = match a.mem {
                MemType::Normal => MemType::Device,
                MemType::Device => MemType::NormalNonCacheable,
                MemType::NormalNonCacheable => MemType::Normal,
            }
        }
        _ => {}
    }
    leaf(pa, a)
}

fn same_exact<F: PteFormat>(k: PteKind, flips: [bool; 3], other: u8) -> Result<(), TestCaseError> {
    let k2 = variant(k, flips, other);
    let (a, b) = (F::encode(k, L3), F::encode(k2, L3));
    let want = batch_view(k) == batch_view(k2);
    prop_assert_eq!(F::pte_same_ignoring_ad(a, b), want, "{:#x} vs {:#x}", a, b);
    prop_assert_eq!(F::pte_same_ignoring_ad(b, a), want);
    prop_assert!(F::pte_same_ignoring_ad(a, a));
    // Normalising either side the way batching does changes nothing.
    let norm = |r| F::pte_mkold(F::pte_mkclean(F::pte_wrprotect(r)));
    prop_assert_eq!(F::pte_same_ignoring_ad(norm(a), b), want);
    Ok(())
}

/// For arbitrary present entries "same" may be stricter than the decoded
/// view (bits `decode` ignores still count) but never looser.
fn same_sound<F: PteFormat>(a: Pte, b: Pte) -> Result<(), TestCaseError> {
    let (ka, kb) = (F::decode(a, L3), F::decode(b, L3));
    if ka == PteKind::Absent || kb == PteKind::Absent || !F::pte_same_ignoring_ad(a, b) {
        return Ok(());
    }
    prop_assert_eq!(batch_view(ka), batch_view(kb), "{:#x} vs {:#x}", a, b);
    Ok(())
}

/// Fork's four-at-a-time test: an entry equal to a present read-only
/// `b` outside `READONLY_AD` is present, read-only, and "same" as `b`; and
/// flipping only accessed or dirty on an encodable read-only leaf passes
/// the test (so the fast path is taken where it should be).
fn readonly_ad<F: PteFormat>(b: Pte, a: Pte) -> Result<(), TestCaseError> {
    let b = F::pte_wrprotect(b);
    prop_assert!(F::pte_present(b) && !F::pte_writable(b));
    if (a.bits() ^ b.bits()) & !F::READONLY_AD == 0 {
        prop_assert!(F::pte_present(a), "{:#x} vs {:#x}", a, b);
        prop_assert!(!F::pte_writable(a), "{:#x} vs {:#x}", a, b);
        prop_assert!(F::pte_same_ignoring_ad(a, b), "{:#x} vs {:#x}", a, b);
    }
    Ok(())
}

fn readonly_ad_covers_ad<F: PteFormat>(k: PteKind) -> Result<(), TestCaseError> {
    let (pa, a) = attrs_of(k);
    let ro = Attrs {
        writable: false,
        ..a
    };
    let b = F::encode(leaf(pa, ro), L3);
    for (young, dirty) in [(false, false), (false, true), (true, false), (true, true)] {
        let other = F::encode(leaf(pa, Attrs { young, dirty, ..ro }), L3);
        prop_assert_eq!(
            (other.bits() ^ b.bits()) & !F::READONLY_AD,
            0,
            "{:#x} vs {:#x}",
            other,
            b
        );
    }
    Ok(())
}

/// A present L3 entry with arbitrary other bits.
fn present_raw<F: PteFormat>() -> impl Strategy<Value = Pte> {
    any::<u64>().prop_map(|r| {
        // x86 needs P (bit 0); arm64 needs bit 1 too (page, not reserved).
        if F::pte_present(Pte::from_bits(r | 1)) {
            Pte::from_bits(r | 1)
        } else {
            Pte::from_bits(r | 0b11)
        }
    })
}

proptest! {
    #![proptest_config(common::cases(ProptestConfig::default().cases))]

    #[test]
    fn arm64_helpers_exact(k in page::<Aarch64>()) {
        helpers_exact::<Aarch64>(k)?;
    }

    #[test]
    fn x86_helpers_exact(k in page::<X86_64>()) {
        helpers_exact::<X86_64>(k)?;
    }

    #[test]
    fn arm64_helpers_on_any_entry(raw in any::<u64>(), p in present_raw::<Aarch64>()) {
        helpers_mean::<Aarch64>(Pte::from_bits(raw))?;
        helpers_mean::<Aarch64>(p)?;
    }

    #[test]
    fn x86_helpers_on_any_entry(raw in any::<u64>(), p in present_raw::<X86_64>()) {
        helpers_mean::<X86_64>(Pte::from_bits(raw))?;
        helpers_mean::<X86_64>(p)?;
    }

    #[test]
    fn arm64_advance(k in page::<Aarch64>(), p in present_raw::<Aarch64>(), n in 0u64..4096) {
        advance::<Aarch64>(Aarch64::encode(k, L3), n)?;
        advance::<Aarch64>(p, n)?;
    }

    #[test]
    fn x86_advance(k in page::<X86_64>(), p in present_raw::<X86_64>(), n in 0u64..4096) {
        advance::<X86_64>(X86_64::encode(k, L3), n)?;
        advance::<X86_64>(p, n)?;
    }

    #[test]
    fn arm64_same_exact(k in page::<Aarch64>(), flips in any::<[bool; 3]>(), other in 0u8..8) {
        same_exact::<Aarch64>(k, flips, other)?;
    }

    #[test]
    fn x86_same_exact(k in page::<X86_64>(), flips in any::<[bool; 3]>(), other in 0u8..8) {
        same_exact::<X86_64>(k, flips, other)?;
    }

    /// `b` differs from `a` in a few random bits, so "same" is often true.
    #[test]
    fn arm64_same_sound(a in present_raw::<Aarch64>(), m in any::<[u64; 3]>()) {
        same_sound::<Aarch64>(a, flip(a, m[0] & m[1] & m[2]))?;
    }

    #[test]
    fn x86_same_sound(a in present_raw::<X86_64>(), m in any::<[u64; 3]>()) {
        same_sound::<X86_64>(a, flip(a, m[0] & m[1] & m[2]))?;
    }

    #[test]
    fn arm64_readonly_ad(b in present_raw::<Aarch64>(), m in any::<[u64; 3]>(), k in page::<Aarch64>()) {
        let b = Aarch64::pte_wrprotect(b);
        readonly_ad::<Aarch64>(b, flip(b, m[0] & m[1] & m[2]))?;
        readonly_ad::<Aarch64>(b, flip(b, m[0] & (Aarch64::READONLY_AD | 0b11 | (1 << 7) | (1 << 51))))?;
        readonly_ad_covers_ad::<Aarch64>(k)?;
    }

    #[test]
    fn x86_readonly_ad(b in present_raw::<X86_64>(), m in any::<[u64; 3]>(), k in page::<X86_64>()) {
        let b = X86_64::pte_wrprotect(b);
        readonly_ad::<X86_64>(b, flip(b, m[0] & m[1] & m[2]))?;
        readonly_ad::<X86_64>(b, flip(b, m[0] & (X86_64::READONLY_AD | 0b11)))?;
        readonly_ad_covers_ad::<X86_64>(k)?;
    }
}

/// The arm64 dirty model, spelled out on one entry: write-protecting a
/// hardware-dirtied page (AP[2] clear) keeps the dirt in bit 55, and
/// making it writable again hands it straight back to the hardware.
#[test]
fn arm64_dirt_survives_write_protection() {
    let clean = Aarch64::encode(
        leaf(PhysAddr::new(0x4123_4000), Attrs::user(true, false)),
        L3,
    );
    assert!(Aarch64::pte_writable(clean) && !Aarch64::pte_dirty(clean));
    // What FEAT_HAFDBS does on the first store: clear AP[2] (bit 7).
    let stored = Pte::from_bits(clean.bits() & !(1 << 7));
    assert!(Aarch64::pte_dirty(stored));
    let ro = Aarch64::pte_wrprotect(stored);
    assert_eq!(ro.bits() & (1 << 51 | 1 << 55 | 1 << 7), 1 << 55 | 1 << 7);
    assert!(!Aarch64::pte_writable(ro) && Aarch64::pte_dirty(ro));
    assert_eq!(Aarch64::pte_mkwrite(ro), stored);
    // A clean page write-protected and unprotected is clean again.
    assert_eq!(Aarch64::pte_mkwrite(Aarch64::pte_wrprotect(clean)), clean);
}

/// Batching ignores write permission too: a writable and a write-protected
/// copy of the same mapping are the same, a different exec bit is not.
#[test]
fn same_ignores_write_but_not_exec() {
    fn check<F: PteFormat>() {
        let base = leaf(PhysAddr::new(0x8000_0000), Attrs::user(true, false));
        let a = F::encode(base, L3);
        let b = F::pte_mkyoung(F::pte_mkdirty(F::pte_wrprotect(a)));
        assert!(F::pte_same_ignoring_ad(a, b), "{}", F::NAME);
        let x = F::encode(
            leaf(PhysAddr::new(0x8000_0000), Attrs::user(true, true)),
            L3,
        );
        assert!(!F::pte_same_ignoring_ad(a, x), "{}", F::NAME);
        assert!(
            !F::pte_same_ignoring_ad(a, F::pte_advance(a, 1)),
            "{}",
            F::NAME
        );
    }
    check::<Aarch64>();
    check::<X86_64>();
}
