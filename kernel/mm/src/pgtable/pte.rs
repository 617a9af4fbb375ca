//! [`Pte`]: one page-table entry's bits, as a type of its own.

use core::fmt;

/// One page-table entry exactly as the hardware reads it: the 64 bits of
/// an entry at any level (a table pointer, a block, a page, or nothing),
/// in the spelling of some [`PteFormat`](super::PteFormat). Linux's
/// `pte_t` (and `pmd_t`, `pud_t`, ...: Folium uses one type for all
/// levels, since every level's entry is one `u64`).
///
/// A `Pte` says nothing by itself: what its bits mean depends on the
/// format and the level it was found at. Ask the format
/// ([`PteFormat::decode`](super::PteFormat::decode), or the raw `pte_*`
/// helpers on the hot paths) rather than the bits. The type exists so that
/// an entry cannot be confused with an address, a frame number or a mask,
/// and so that signatures say "an entry" where they mean one; it costs
/// nothing (`#[repr(transparent)]` over `u64`). There is deliberately no
/// arithmetic on it: code that must do arithmetic on raw entries (fork's
/// batch copy, a format's own helpers) does it on [`Pte::bits`] locally
/// and says why that is sound there.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Pte(u64);

impl Pte {
    /// The empty entry (all bits 0): invalid in every format and at every
    /// level, what a fresh table holds and what clearing stores.
    pub const NONE: Pte = Pte(0);

    /// The entry with exactly these bits.
    #[inline]
    pub const fn from_bits(bits: u64) -> Pte {
        Pte(bits)
    }

    /// The entry's bits, as stored in the table.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True if every bit is 0 ([`Pte::NONE`], Linux `pte_none`). An entry
    /// that is not none may still be invalid (stray bits with the valid
    /// bit clear); [`PteFormat::is_present`](super::PteFormat::is_present)
    /// says whether the hardware uses it.
    #[inline]
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// `Pte(0x...)`: the bits in hex, as entries are read in manuals.
impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte({:#x})", self.0)
    }
}

/// The bits in hex (`{:x}`, `{:#x}`, `{:#018x}`), for messages and dumps.
impl fmt::LowerHex for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
