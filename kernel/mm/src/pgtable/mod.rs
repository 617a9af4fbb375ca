//! Page tables: arch-neutral entry description, both hardware encodings, and
//! a 4-level table builder.
//!
//! Folium uses the same geometry on both architectures: 4 KiB granule,
//! 48-bit virtual addresses, four levels of 512-entry tables. Level 0 is the
//! root (arm64 "level 0", x86 PML4); level 3 holds 4 KiB pages (arm64 level
//! 3, x86 PT). Levels 1 and 2 may hold 1 GiB and 2 MiB blocks instead of
//! tables; the formats encode both, and [`MapOptions::largest_leaf`] keeps
//! 1 GiB blocks away from CPUs that lack them (x86 without `pdpe1gb`).
//!
//! The layering follows the design's "one rule": pure encoding lives here
//! behind [`PteFormat`] and is host-tested for *both* architectures on any
//! host; privileged operations (TLB invalidation, switching the root) belong
//! to the kernel's per-arch code and never appear in this module.
//!
//! - [`PteKind`] / [`Attrs`] / [`MemType`]: what an entry means.
//! - [`PteFormat`]: how an entry is spelled in bits; [`Aarch64`] and
//!   [`X86_64`] implement it.
//! - [`PageTable`]: builds and walks a 4-level tree through the
//!   [`LinearMap`](crate::phys::LinearMap).

mod aarch64;
mod kind;
mod level;
mod mapper;
mod walk;
mod x86_64;

pub use aarch64::{
    Aarch64, MAIR_ATTR_DEVICE_NGNRNE, MAIR_ATTR_NORMAL_NC, MAIR_ATTR_NORMAL_WB, MAIR_EL1_VALUE,
    MAIR_IDX_DEVICE, MAIR_IDX_NORMAL, MAIR_IDX_NORMAL_NC,
};
pub use kind::{Attrs, MemType, PteError, PteKind};
pub use level::{ENTRIES, Level, VA_BITS, is_canonical};
pub use mapper::{MapError, MapOptions, PageTable, TableAlloc, Translation};
pub use walk::PteSlot;
pub use x86_64::{IA32_PAT_VALUE, X86_64};

use crate::addr::{PAGE_SIZE, VirtAddr};

/// How one architecture spells a page-table entry in bits.
///
/// Pure functions only: no memory access, no privileged instructions. The
/// contract that the host tests check for every implementation:
///
/// - for every `kind` with `Self::check(kind, level) == Ok(())`,
///   `decode(encode(kind, level), level) == kind` (exact round trip);
/// - `decode` accepts any `u64` at any level without panicking, and what it
///   returns always passes `check` (so decode-encode-decode is stable).
pub trait PteFormat {
    /// A short name for messages and test output.
    const NAME: &'static str;
    /// Width of an output (physical) address the format can hold.
    const PA_BITS: u32;
    /// Entries grouped by the contiguous hint (arm64: 16); 1 if the format
    /// has no such hint, in which case [`Attrs::cont`] is not encodable.
    const CONT_ENTRIES: usize;

    /// The raw entry for `kind` at `level`.
    ///
    /// `kind` must pass [`PteFormat::check`]; otherwise the result is
    /// unspecified (debug builds assert). Callers that take untrusted input
    /// check first, as [`PageTable::map_range`] does.
    fn encode(kind: PteKind, level: Level) -> u64;

    /// What the raw entry `raw`, found at `level`, means to the hardware.
    fn decode(raw: u64, level: Level) -> PteKind;

    /// Whether `kind` can be encoded at `level` by this format.
    fn check(kind: PteKind, level: Level) -> Result<(), PteError> {
        kind::check_common(kind, level, Self::PA_BITS)?;
        if let PteKind::Leaf { attrs, .. } = kind
            && attrs.cont
            && Self::CONT_ENTRIES <= 1
        {
            return Err(PteError::Unsupported);
        }
        Ok(())
    }

    /// True if `va` lies in one of the two translated halves. The default
    /// is x86's canonical form (bits 63..47 all equal); arm64 translates
    /// any address whose top 16 bits are all 0 (TTBR0) or all 1 (TTBR1).
    #[inline]
    fn va_in_range(va: VirtAddr) -> bool {
        is_canonical(va)
    }

    /// Index of the entry translating `va` in its table at `level`.
    #[inline]
    fn index(va: VirtAddr, level: Level) -> usize {
        level.index_of(va)
    }

    /// True if `raw` is a valid entry (table or leaf) at `level`.
    #[inline]
    fn is_present(raw: u64, level: Level) -> bool {
        !matches!(Self::decode(raw, level), PteKind::Absent)
    }
}

const _: () = assert!(
    ENTRIES as u64 * 8 == PAGE_SIZE,
    "a table fills exactly one frame"
);
