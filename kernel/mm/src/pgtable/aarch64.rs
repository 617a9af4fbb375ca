//! arm64 (VMSAv8-64, stage 1, 4 KiB granule, 48-bit OA) descriptor encoding
//! and the MAIR_EL1 convention it relies on.
//!
//! Descriptor layout used here (Arm ARM D8.3):
//!
//! ```text
//!  bits   field        meaning in Folium
//!  1:0    type         0b11 table (L0-L2) or page (L3); 0b01 block (L1-L2);
//!                      anything else (or 0b01 at L0/L3) is invalid
//!  4:2    AttrIndx     index into MAIR_EL1 (see MAIR_IDX_*)
//!  6      AP[1]        EL0 access (user)
//!  7      AP[2]        read-only
//!  9:8    SH           0b11 inner shareable
//!  10     AF           access flag (young)
//!  11     nG           not global: TLB entry tagged with the ASID
//!  47:12  OA           output address (blocks: 47:21 or 47:30)
//!  51     DBM          dirty bit modifier; Folium's "writable" bit
//!  52     Contiguous   contiguous hint
//!  53     PXN          privileged execute-never
//!  54     UXN          unprivileged execute-never
//!  55     (software)   Folium's software dirty bit
//!  58     (software)   protnone: with bit 0 clear, a `PROT_NONE` page
//! ```
//!
//! **Dirty and writable.** Folium follows the model Linux uses on arm64.
//! DBM (bit 51) *is* the writable bit. AP[2] says whether the hardware may
//! write right now. A writable, clean page has DBM=1, AP[2]=1: with
//! hardware dirty management (FEAT_HAFDBS) the first store clears AP[2]
//! atomically; without it, the store takes a permission fault and the
//! kernel clears AP[2] itself. So for a writable entry "dirty" is simply
//! "AP[2] clear". A read-only entry keeps dirt that must outlive
//! write-protection in the software bit 55. Decoding treats any entry with
//! AP[2] clear as writable and dirty, because the hardware can store
//! through it whatever DBM says.
//!
//! **Execute.** Kernel entries always carry UXN and carry PXN unless
//! executable; user entries always carry PXN and carry UXN unless
//! executable. The CPU also treats EL0-writable pages as PXN.
//!
//! **Tables** carry no APTable/XNTable restrictions: the leaves decide.
//!
//! **Protnone** ([`Attrs::protnone`], L3 only): a page entry spelled in
//! full, then with the valid bit (0) cleared and software bit 58 set. The
//! MMU ignores every bit of an invalid descriptor, so any access faults
//! (a translation fault) and no TLB holds it; the mm reads the rest as
//! usual. Bit 1 (page) stays set, so "bit 1 and (bit 0 or bit 58)" is the
//! mm's present test; an empty entry or stray bits without bit 58 stay
//! absent.
//!
//! **The contiguous hint** (bit 52) is not part of what an entry means
//! ([`PteKind`]): `encode` never sets it and `decode` ignores it. Whether
//! a run of entries carries it is decided by the batch operations'
//! overrides in `aarch64/contpte.rs` (user pages) and by
//! [`PteFormat::table_set_blocks`] here (kernel block runs).

mod contpte;

use core::sync::atomic::AtomicU64;

use super::cursor::{Cleared, Copied, PteTable, plain};
use super::kind::{Attrs, MemType, PteKind};
use super::level::{Level, VA_BITS};
use super::{Pte, PteEnv, PteFormat};
use crate::addr::{PAGE_SHIFT, Pfn, PhysAddr, VirtAddr};

/// The arm64 descriptor format (a type-level tag; no data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aarch64;

/// MAIR attribute for Device-nGnRnE (strongest device ordering).
pub const MAIR_ATTR_DEVICE_NGNRNE: u8 = 0x00;
/// MAIR attribute for Normal memory, inner and outer write-back,
/// read- and write-allocate, non-transient.
pub const MAIR_ATTR_NORMAL_WB: u8 = 0xff;
/// MAIR attribute for Normal memory, inner and outer non-cacheable.
pub const MAIR_ATTR_NORMAL_NC: u8 = 0x44;

/// AttrIndx selecting [`MAIR_ATTR_DEVICE_NGNRNE`].
pub const MAIR_IDX_DEVICE: u64 = 0;
/// AttrIndx selecting [`MAIR_ATTR_NORMAL_WB`].
pub const MAIR_IDX_NORMAL: u64 = 1;
/// AttrIndx selecting [`MAIR_ATTR_NORMAL_NC`].
pub const MAIR_IDX_NORMAL_NC: u64 = 2;

/// The value the kernel writes to MAIR_EL1 before enabling the MMU; the
/// encoding below assumes it. Attr3..Attr7 are unused (Device-nGnRnE).
pub const MAIR_EL1_VALUE: u64 = (MAIR_ATTR_DEVICE_NGNRNE as u64) << (8 * MAIR_IDX_DEVICE)
    | (MAIR_ATTR_NORMAL_WB as u64) << (8 * MAIR_IDX_NORMAL)
    | (MAIR_ATTR_NORMAL_NC as u64) << (8 * MAIR_IDX_NORMAL_NC);

const VALID: u64 = 1 << 0;
/// Bit 1: "table" at L0-L2, "page" at L3; clear means block at L1-L2.
const TABLE_OR_PAGE: u64 = 1 << 1;
const TYPE_MASK: u64 = VALID | TABLE_OR_PAGE;
const ATTR_INDX_SHIFT: u32 = 2;
const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
const AP_EL0: u64 = 1 << 6;
const AP_RDONLY: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
/// Output address bits 47:12.
const OA_MASK: u64 = ((1 << 48) - 1) & !0xfff;
const DBM: u64 = 1 << 51;
const CONT: u64 = 1 << 52;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const SW_DIRTY: u64 = 1 << 55;
/// Software bit: an invalid L3 entry that is a `PROT_NONE` page.
const PROT_NONE: u64 = 1 << 58;

impl Aarch64 {
    fn encode_leaf(pa: PhysAddr, a: Attrs, level: Level) -> u64 {
        let mut d = (pa.as_u64() & OA_MASK) | VALID | SH_INNER;
        if level == Level::L3 {
            d |= TABLE_OR_PAGE;
        }
        let idx = match a.mem {
            MemType::Device => MAIR_IDX_DEVICE,
            MemType::Normal => MAIR_IDX_NORMAL,
            MemType::NormalNonCacheable => MAIR_IDX_NORMAL_NC,
        };
        d |= idx << ATTR_INDX_SHIFT;
        if a.user {
            d |= AP_EL0 | PXN;
            if !a.exec {
                d |= UXN;
            }
        } else {
            d |= UXN;
            if !a.exec {
                d |= PXN;
            }
        }
        match (a.writable, a.dirty) {
            (true, true) => d |= DBM,
            (true, false) => d |= DBM | AP_RDONLY,
            (false, true) => d |= AP_RDONLY | SW_DIRTY,
            (false, false) => d |= AP_RDONLY,
        }
        if a.young {
            d |= AF;
        }
        if !a.global {
            d |= NG;
        }
        if a.protnone {
            d = (d & !VALID) | PROT_NONE;
        }
        d
    }

    fn decode_leaf(raw: u64, level: Level) -> PteKind {
        let user = raw & AP_EL0 != 0;
        let hw_writable = raw & AP_RDONLY == 0;
        let mem = match (raw & ATTR_INDX_MASK) >> ATTR_INDX_SHIFT {
            MAIR_IDX_NORMAL => MemType::Normal,
            MAIR_IDX_NORMAL_NC => MemType::NormalNonCacheable,
            // Index 0, and the unused indices that MAIR_EL1_VALUE leaves at
            // Device-nGnRnE.
            _ => MemType::Device,
        };
        let attrs = Attrs {
            writable: raw & DBM != 0 || hw_writable,
            user,
            exec: if user { raw & UXN == 0 } else { raw & PXN == 0 },
            global: raw & NG == 0,
            young: raw & AF != 0,
            dirty: raw & SW_DIRTY != 0 || hw_writable,
            mem,
            protnone: raw & VALID == 0,
        };
        // Block descriptors keep bits below the block size RES0; mask them
        // so a decoded block address is always block-aligned.
        let pa = PhysAddr::new(raw & OA_MASK & !(level.size() - 1));
        PteKind::Leaf { pa, attrs }
    }
}

impl PteFormat for Aarch64 {
    /// TTBR0 covers `0x0000_xxxx_xxxx_xxxx`, TTBR1 `0xffff_xxxx_xxxx_xxxx`
    /// (T0SZ = T1SZ = 16): unlike x86, bit 47 does not have to match.
    #[inline]
    fn va_in_range(va: VirtAddr) -> bool {
        let top = va.as_u64() >> VA_BITS;
        top == 0 || top == 0xffff
    }

    const NAME: &'static str = "aarch64";
    const PA_BITS: u32 = 48;
    const READONLY_AD: u64 = AF | SW_DIRTY;
    const CONT_ENTRIES: usize = contpte::CONT_PTES;

    fn encode(kind: PteKind, level: Level) -> Pte {
        debug_assert_eq!(Self::check(kind, level), Ok(()), "{kind:?} at {level:?}");
        Pte::from_bits(match kind {
            PteKind::Absent => 0,
            PteKind::Table(pa) => (pa.as_u64() & OA_MASK) | VALID | TABLE_OR_PAGE,
            PteKind::Leaf { pa, attrs } => Self::encode_leaf(pa, attrs, level),
        })
    }

    #[inline]
    fn pte_pfn(raw: Pte) -> Pfn {
        PhysAddr::new(raw.bits() & OA_MASK).pfn()
    }

    #[inline]
    fn pte_present(raw: Pte) -> bool {
        let raw = raw.bits();
        raw & TABLE_OR_PAGE != 0 && raw & (VALID | PROT_NONE) != 0
    }

    #[inline]
    fn pte_protnone(raw: Pte) -> bool {
        raw.bits() & (TYPE_MASK | PROT_NONE) == TABLE_OR_PAGE | PROT_NONE
    }

    #[inline]
    fn pte_advance(raw: Pte, n: u64) -> Pte {
        let raw = raw.bits();
        let oa = (raw & OA_MASK).wrapping_add(n << PAGE_SHIFT);
        debug_assert!(
            n < 1 << (48 - PAGE_SHIFT) && oa & !OA_MASK == 0,
            "advancing {raw:#x} by {n} pages leaves the output-address field"
        );
        Pte::from_bits((raw & !OA_MASK) | (oa & OA_MASK))
    }

    /// Dirt the hardware recorded (AP\[2\] clear) moves to the software bit
    /// before AP\[2\] is set, so write-protection never cleans a page.
    #[inline]
    fn pte_wrprotect(raw: Pte) -> Pte {
        let raw = raw.bits();
        let dirt = if raw & AP_RDONLY == 0 { SW_DIRTY } else { 0 };
        Pte::from_bits((raw | dirt | AP_RDONLY) & !DBM)
    }

    /// A dirty entry becomes hardware-writable at once (DBM, AP\[2\] clear,
    /// the software bit dropped as `encode` spells it); a clean one gets
    /// DBM and keeps AP\[2\], so the first store marks it dirty.
    #[inline]
    fn pte_mkwrite(raw: Pte) -> Pte {
        let raw = raw.bits();
        Pte::from_bits(if raw & (SW_DIRTY | AP_RDONLY) != AP_RDONLY {
            (raw | DBM) & !(SW_DIRTY | AP_RDONLY)
        } else {
            raw | DBM
        })
    }

    #[inline]
    fn pte_mkold(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() & !AF)
    }

    #[inline]
    fn pte_mkyoung(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() | AF)
    }

    /// A writable entry (DBM, or AP\[2\] clear without DBM, which `decode`
    /// also reads as writable) becomes DBM with AP\[2\] set: still writable,
    /// clean until the next store.
    #[inline]
    fn pte_mkclean(raw: Pte) -> Pte {
        let writable = Self::pte_writable(raw);
        let raw = raw.bits() & !SW_DIRTY;
        Pte::from_bits(if writable { raw | DBM | AP_RDONLY } else { raw })
    }

    /// A writable entry is dirtied the way the hardware would (AP\[2\]
    /// cleared), a read-only one through the software bit.
    #[inline]
    fn pte_mkdirty(raw: Pte) -> Pte {
        let writable = Self::pte_writable(raw);
        let raw = raw.bits();
        Pte::from_bits(if writable {
            raw & !(AP_RDONLY | SW_DIRTY)
        } else {
            raw | SW_DIRTY
        })
    }

    #[inline]
    fn pte_young(raw: Pte) -> bool {
        raw.bits() & AF != 0
    }

    #[inline]
    fn pte_dirty(raw: Pte) -> bool {
        let raw = raw.bits();
        raw & SW_DIRTY != 0 || raw & AP_RDONLY == 0
    }

    #[inline]
    fn pte_writable(raw: Pte) -> bool {
        let raw = raw.bits();
        raw & DBM != 0 || raw & AP_RDONLY == 0
    }

    /// AF, and the three bits that together spell write and dirt (DBM,
    /// AP\[2\], the software dirty bit), are left out of the comparison.
    #[inline]
    fn pte_same_ignoring_ad(a: Pte, b: Pte) -> bool {
        (a.bits() ^ b.bits()) & !(AF | DBM | AP_RDONLY | SW_DIRTY) == 0
    }

    #[inline]
    fn pte_cont(raw: Pte) -> bool {
        raw.bits() & (CONT | VALID) == CONT | VALID
    }

    /// Folds aligned runs of 16 2 MiB blocks (32 MiB) when `fold` allows;
    /// 1 GiB blocks are left alone (a 16 GiB run buys nothing).
    fn table_set_blocks(
        table: &[AtomicU64],
        i: usize,
        first_raw: Pte,
        nr: usize,
        level: Level,
        fold: bool,
    ) {
        let n = contpte::CONT_PTES;
        let step = level.size() >> PAGE_SHIFT;
        let run_pages = step * n as u64;
        let mut k = 0;
        let mut raw = first_raw;
        while k < nr {
            let pfn = Self::pte_pfn(raw).as_u64();
            let whole = fold
                && level == Level::L2
                && (i + k).is_multiple_of(n)
                && k + n <= nr
                && pfn.is_multiple_of(run_pages);
            let m = if whole { n } else { 1 };
            let hint = if whole { CONT } else { 0 };
            let e = Pte::from_bits(raw.bits() | hint);
            plain::set_blocks::<Self>(&table[i + k..i + k + m], e, level);
            k += m;
            if k < nr {
                raw = Self::pte_advance(raw, step * m as u64);
            }
        }
    }

    #[inline]
    fn table_get(t: PteTable<'_>, i: usize) -> Pte {
        contpte::get(t, i)
    }

    #[inline]
    fn table_peek(t: PteTable<'_>, i: usize) -> Pte {
        contpte::peek(t, i)
    }

    #[inline]
    fn table_set_ptes(
        t: PteTable<'_>,
        i: usize,
        first_raw: Pte,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) {
        contpte::set_ptes(t, i, first_raw, nr, h);
    }

    #[inline]
    fn table_get_and_clear(
        t: PteTable<'_>,
        i: usize,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Cleared {
        contpte::get_and_clear(t, i, nr, h)
    }

    #[inline]
    fn table_wrprotect(t: PteTable<'_>, i: usize, nr: usize, h: &(impl PteEnv + ?Sized)) -> usize {
        contpte::wrprotect(t, i, nr, h)
    }

    #[inline]
    fn table_copy_batch(
        src: PteTable<'_>,
        dst: PteTable<'_>,
        i: usize,
        max_nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Copied {
        contpte::copy_batch(src, dst, i, max_nr, h)
    }

    #[inline]
    fn table_copy_one(
        src: PteTable<'_>,
        dst: PteTable<'_>,
        i: usize,
        raw: Pte,
        h: &(impl PteEnv + ?Sized),
    ) -> bool {
        contpte::copy_one(src, dst, i, raw, h)
    }

    fn decode(raw: Pte, level: Level) -> PteKind {
        let raw = raw.bits();
        match (raw & TYPE_MASK, level) {
            (0b11, Level::L0 | Level::L1 | Level::L2) => {
                PteKind::Table(PhysAddr::new(raw & OA_MASK))
            }
            (0b11, Level::L3) | (0b01, Level::L1 | Level::L2) => Self::decode_leaf(raw, level),
            // Invalid to the MMU, a page to the mm (module doc).
            (0b10, Level::L3) if raw & PROT_NONE != 0 => Self::decode_leaf(raw, level),
            // Invalid, or a block type where blocks are not allowed (L0
            // with this granule, or the reserved 0b01 at L3): the walk faults.
            _ => PteKind::Absent,
        }
    }
}
