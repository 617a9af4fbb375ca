//! x86_64 (4-level paging, 4 KiB pages, 2 MiB and 1 GiB large pages) entry
//! encoding and the PAT convention it relies on.
//!
//! Entry layout used here (Intel SDM vol. 3, 4.5):
//!
//! ```text
//!  bit    field   meaning in Folium
//!  0      P       present
//!  1      R/W     writable
//!  2      U/S     user
//!  3      PWT     } with PAT, select one of the eight IA32_PAT entries:
//!  4      PCD     } index = PAT<<2 | PCD<<1 | PWT
//!  5      A       accessed (young)
//!  6      D       dirty (leaves only)
//!  7      PS/PAT  L1/L2: page size (large page); L3: the PAT bit
//!  8      G       global (leaves only)
//!  12     PAT     large pages only: the PAT bit (so the address starts at
//!                 bit 21 or 30)
//!  51:12  address
//!  9      (software) protnone: with P clear, a `PROT_NONE` page
//!  63     XD/NX   execute-disable (needs EFER.NXE)
//! ```
//!
//! **Memory type.** Folium keeps the power-on IA32_PAT ([`IA32_PAT_VALUE`])
//! and never sets the PAT bit: Normal = index 0 (WB), NormalNonCacheable =
//! PCD, index 2 (UC-), Device = PCD|PWT, index 3 (UC). UC- rather than WC
//! keeps the PAT untouched; an MTRR may still upgrade UC- to WC. Decoding
//! reads PCD/PWT only (PAT entries 4-7 repeat 0-3 in the default PAT) and
//! reads PWT alone (write-through, never produced) as Normal.
//!
//! **Dirty without write** (D=1, R/W=0) is an ordinary read-only page here:
//! Folium does not enable CET, which would read it as a shadow-stack page.
//!
//! **Execute.** NX alone; "kernel-only" versus "user-only" execution comes
//! from U/S together with SMEP (the kernel never runs user pages).
//!
//! **Protnone** ([`Attrs::protnone`], L3 only): the page entry spelled in
//! full, then P cleared and bit 9 set. With P clear the CPU ignores every
//! other bit, so any access takes a not-present #PF and no TLB holds the
//! entry; the mm reads the rest as usual, and `P | bit 9` is its present
//! test. (Linux reuses G, bit 8, as `_PAGE_PROTNONE`, because its swap
//! entries need the software bits; Folium has no swap and takes bit 9,
//! which the CPU ignores in present entries too, so a protnone entry can
//! keep any attribute.)
//!
//! **Tables** are P|R/W|U/S|A: upper levels grant everything and the leaf
//! decides (effective rights are the AND over the walk). A is pre-set so
//! the walker need not write it.

use super::kind::{Attrs, MemType, PteKind};
use super::level::Level;
use super::{Pte, PteFormat};
use crate::addr::{PAGE_SHIFT, Pfn, PhysAddr};

/// The x86_64 entry format (a type-level tag; no data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86_64;

/// The IA32_PAT value the encoding assumes: the architectural power-on
/// default (PA0 WB, PA1 WT, PA2 UC-, PA3 UC, PA4-7 repeating PA0-3).
pub const IA32_PAT_VALUE: u64 = 0x0007_0406_0007_0406;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
/// Software bit: a non-present L3 entry that is a `PROT_NONE` page.
const PROT_NONE: u64 = 1 << 9;
const NX: u64 = 1 << 63;
/// Address bits 51:12.
const ADDR_MASK: u64 = ((1 << 52) - 1) & !0xfff;

const TABLE_BITS: u64 = P | RW | US | A;

impl X86_64 {
    fn encode_leaf(pa: PhysAddr, a: Attrs, level: Level) -> u64 {
        let mut e = (pa.as_u64() & ADDR_MASK) | P;
        if level != Level::L3 {
            e |= PS;
        }
        e |= match a.mem {
            MemType::Normal => 0,
            MemType::NormalNonCacheable => PCD,
            MemType::Device => PCD | PWT,
        };
        for (on, bit) in [
            (a.writable, RW),
            (a.user, US),
            (a.young, A),
            (a.dirty, D),
            (a.global, G),
            (!a.exec, NX),
        ] {
            if on {
                e |= bit;
            }
        }
        if a.protnone {
            e = (e & !P) | PROT_NONE;
        }
        e
    }

    fn decode_leaf(raw: u64, level: Level) -> PteKind {
        let mem = match (raw & PCD != 0, raw & PWT != 0) {
            (true, true) => MemType::Device,
            (true, false) => MemType::NormalNonCacheable,
            (false, _) => MemType::Normal,
        };
        let attrs = Attrs {
            writable: raw & RW != 0,
            user: raw & US != 0,
            exec: raw & NX == 0,
            global: raw & G != 0,
            young: raw & A != 0,
            dirty: raw & D != 0,
            mem,
            protnone: raw & P == 0,
        };
        // Masking to the level's size drops the large-page PAT bit (12) and
        // the reserved bits below the large-page address.
        let pa = PhysAddr::new(raw & ADDR_MASK & !(level.size() - 1));
        PteKind::Leaf { pa, attrs }
    }
}

impl PteFormat for X86_64 {
    const NAME: &'static str = "x86_64";
    const PA_BITS: u32 = 52;
    const READONLY_AD: u64 = A | D;

    fn encode(kind: PteKind, level: Level) -> Pte {
        debug_assert_eq!(Self::check(kind, level), Ok(()), "{kind:?} at {level:?}");
        Pte::from_bits(match kind {
            PteKind::Absent => 0,
            PteKind::Table(pa) => (pa.as_u64() & ADDR_MASK) | TABLE_BITS,
            PteKind::Leaf { pa, attrs } => Self::encode_leaf(pa, attrs, level),
        })
    }

    #[inline]
    fn pte_pfn(raw: Pte) -> Pfn {
        PhysAddr::new(raw.bits() & ADDR_MASK).pfn()
    }

    #[inline]
    fn pte_present(raw: Pte) -> bool {
        raw.bits() & (P | PROT_NONE) != 0
    }

    #[inline]
    fn pte_protnone(raw: Pte) -> bool {
        raw.bits() & (P | PROT_NONE) == PROT_NONE
    }

    #[inline]
    fn pte_advance(raw: Pte, n: u64) -> Pte {
        let raw = raw.bits();
        let addr = (raw & ADDR_MASK).wrapping_add(n << PAGE_SHIFT);
        debug_assert!(
            n < 1 << (52 - PAGE_SHIFT) && addr & !ADDR_MASK == 0,
            "advancing {raw:#x} by {n} pages leaves the address field"
        );
        Pte::from_bits((raw & !ADDR_MASK) | (addr & ADDR_MASK))
    }

    #[inline]
    fn pte_wrprotect(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() & !RW)
    }

    #[inline]
    fn pte_mkwrite(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() | RW)
    }

    #[inline]
    fn pte_mkold(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() & !A)
    }

    #[inline]
    fn pte_mkyoung(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() | A)
    }

    #[inline]
    fn pte_mkclean(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() & !D)
    }

    #[inline]
    fn pte_mkdirty(raw: Pte) -> Pte {
        Pte::from_bits(raw.bits() | D)
    }

    #[inline]
    fn pte_young(raw: Pte) -> bool {
        raw.bits() & A != 0
    }

    #[inline]
    fn pte_dirty(raw: Pte) -> bool {
        raw.bits() & D != 0
    }

    #[inline]
    fn pte_writable(raw: Pte) -> bool {
        raw.bits() & RW != 0
    }

    #[inline]
    fn pte_same_ignoring_ad(a: Pte, b: Pte) -> bool {
        (a.bits() ^ b.bits()) & !(A | D | RW) == 0
    }

    fn decode(raw: Pte, level: Level) -> PteKind {
        let raw = raw.bits();
        if raw & P == 0 {
            // Invalid to the MMU; at L3, with the software bit, a page to
            // the mm (module doc).
            return if level == Level::L3 && raw & PROT_NONE != 0 {
                Self::decode_leaf(raw, level)
            } else {
                PteKind::Absent
            };
        }
        match level {
            // PS is reserved in a PML4 entry: the walk takes a reserved-bit
            // fault, so to the hardware the entry maps nothing.
            Level::L0 if raw & PS != 0 => PteKind::Absent,
            Level::L0 => PteKind::Table(PhysAddr::new(raw & ADDR_MASK)),
            Level::L1 | Level::L2 if raw & PS == 0 => {
                PteKind::Table(PhysAddr::new(raw & ADDR_MASK))
            }
            Level::L1 | Level::L2 | Level::L3 => Self::decode_leaf(raw, level),
        }
    }
}
