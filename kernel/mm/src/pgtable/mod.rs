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
//! - [`Pte`]: one entry's bits at any level (Linux `pte_t`).
//! - [`PteFormat`]: how an entry is spelled in bits; [`Aarch64`] and
//!   [`X86_64`] implement it.
//! - [`PageTable`]: builds and walks a 4-level tree through the
//!   [`LinearMap`](crate::phys::LinearMap).
//! - [`PteCursor`]: Linux-style batch operations (`set_ptes`,
//!   `get_and_clear_ptes`, `wrprotect_ptes`, `pte_batch`, and fork's
//!   fused `copy_batch_wrprotect`) over one
//!   last-level table, on raw entries ([`Pte`]) through the `pte_*`
//!   helpers of [`PteFormat`].

mod aarch64;
#[allow(unsafe_code)]
mod cursor;
mod kind;
mod level;
#[allow(unsafe_code)]
mod mapper;
mod pte;
#[allow(unsafe_code)]
mod walk;
mod x86_64;

pub use aarch64::{
    Aarch64, MAIR_ATTR_DEVICE_NGNRNE, MAIR_ATTR_NORMAL_NC, MAIR_ATTR_NORMAL_WB, MAIR_EL1_VALUE,
    MAIR_IDX_DEVICE, MAIR_IDX_NORMAL, MAIR_IDX_NORMAL_NC,
};
pub use cursor::{Cleared, Copied, PteCursor, PteLock, PteTable};
pub use kind::{Attrs, MemType, PteError, PteKind};
pub use level::{ENTRIES, Level, VA_BITS, is_canonical};
pub use mapper::{KernelHalf, MapError, MapOptions, PageTable, RawLeaf, TableAlloc, Translation};
pub use pte::Pte;
pub use walk::{L3Table, PteSlot};
pub use x86_64::{IA32_PAT_VALUE, X86_64};

use core::sync::atomic::AtomicU64;

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use cursor::plain;

/// How one architecture spells a page-table entry in bits.
///
/// Pure functions only: no memory access, no privileged instructions. The
/// contract that the host tests check for every implementation:
///
/// - for every `kind` with `Self::check(kind, level) == Ok(())`,
///   `decode(encode(kind, level), level) == kind` (exact round trip);
/// - `decode` accepts any [`Pte`] at any level without panicking, and what it
///   returns always passes `check` (so decode-encode-decode is stable).
pub trait PteFormat {
    /// A short name for messages and test output.
    const NAME: &'static str;
    /// Width of an output (physical) address the format can hold.
    const PA_BITS: u32;
    /// The bits in which two read-only page entries can differ by their
    /// accessed and dirty state alone (arm64: AF and the software dirty
    /// bit; x86: A and D). If `b` is a present read-only entry and
    /// `(a.bits() ^ b.bits()) & !READONLY_AD == 0`, then `a` is present and
    /// read-only too and `pte_same_ignoring_ad(a, b)` holds: one mask test
    /// per entry where the general comparison needs the writable state
    /// apart (the host tests check the implication). A mask over entry
    /// bits, not an entry, so a plain `u64`: fork's batch copy applies it
    /// to [`Pte::bits`].
    const READONLY_AD: u64;
    /// Entries a fold groups into one TLB entry (arm64's contiguous hint:
    /// 16); 1 if the format cannot fold.
    const CONT_ENTRIES: usize = 1;

    /// The raw entry for `kind` at `level`.
    ///
    /// `kind` must pass [`PteFormat::check`]; otherwise the result is
    /// unspecified (debug builds assert). Callers that take untrusted input
    /// check first, as [`PageTable::map_range`] does.
    fn encode(kind: PteKind, level: Level) -> Pte;

    /// What the raw entry `raw`, found at `level`, means to the hardware.
    fn decode(raw: Pte, level: Level) -> PteKind;

    /// Whether `kind` can be encoded at `level` by this format.
    fn check(kind: PteKind, level: Level) -> Result<(), PteError> {
        kind::check_common(kind, level, Self::PA_BITS)
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

    /// True if the hardware uses `raw` at `level`: a table, or a leaf that
    /// is not protnone. (Software paths ask [`PteFormat::pte_present`],
    /// which counts protnone leaves as mappings.)
    #[inline]
    fn is_present(raw: Pte, level: Level) -> bool {
        match Self::decode(raw, level) {
            PteKind::Absent => false,
            PteKind::Table(_) => true,
            PteKind::Leaf { attrs, .. } => !attrs.protnone,
        }
    }

    // ------------------------------------------------------------------
    // Raw last-level (L3, 4 KiB page) entry helpers: the hot paths' view
    // of an entry, without a full decode/encode. Each is checked by the
    // host tests against the `PteKind` round trip, as `decode(h(encode(k)))
    // == k'` *and* `h(encode(k)) == encode(k')` (the canonical spelling),
    // so raw entries stay comparable bit for bit. Except for
    // `pte_present` and `pte_protnone`, they are meaningful only on
    // present page entries (protnone ones included: the helpers leave the
    // validity and protnone bits alone); none of them reads or changes the
    // arm64 contiguous hint.
    // ------------------------------------------------------------------

    /// The frame a present page entry maps (Linux `pte_pfn`).
    fn pte_pfn(raw: Pte) -> Pfn;

    /// True if `raw` maps a page at L3 for the mm (Linux `pte_present`): a
    /// valid page entry, or a protnone one ([`Attrs::protnone`]), which
    /// the hardware does not use but which keeps its folio. The same as
    /// `decode(raw, Level::L3) != PteKind::Absent`, without the decode.
    /// Every software path (fork, zap, the views, the accounting) asks
    /// this; only what the MMU may cache asks [`PteFormat::is_present`].
    fn pte_present(raw: Pte) -> bool;

    /// True if `raw` is a protnone page entry (Linux `pte_protnone`):
    /// present for the mm, invalid for the MMU.
    fn pte_protnone(raw: Pte) -> bool;

    /// The same entry mapping the frame `n` pages further on, every other
    /// bit unchanged (Linux `pte_advance_pfn`). The frame must stay within
    /// the format's address width (debug builds assert).
    fn pte_advance(raw: Pte, n: u64) -> Pte;

    /// The entry without write permission; a dirty entry stays dirty.
    fn pte_wrprotect(raw: Pte) -> Pte;

    /// The entry with write permission; a clean entry stays clean, so the
    /// first store still marks it dirty (arm64 DBM, x86 D).
    fn pte_mkwrite(raw: Pte) -> Pte;

    /// The entry with the accessed flag clear.
    fn pte_mkold(raw: Pte) -> Pte;

    /// The entry with the accessed flag set.
    fn pte_mkyoung(raw: Pte) -> Pte;

    /// The entry marked clean; write permission is unchanged.
    fn pte_mkclean(raw: Pte) -> Pte;

    /// The entry marked dirty; write permission is unchanged.
    fn pte_mkdirty(raw: Pte) -> Pte;

    /// True if the accessed flag is set.
    fn pte_young(raw: Pte) -> bool;

    /// True if the entry is dirty in the sense of [`Attrs`]' dirty model.
    fn pte_dirty(raw: Pte) -> bool;

    /// True if the entry grants write permission (it may be clean).
    fn pte_writable(raw: Pte) -> bool;

    /// True if `a` and `b` are the same entry apart from the accessed flag,
    /// dirtiness **and write permission**: the comparison batching uses.
    ///
    /// Write permission is ignored as Linux's `folio_pte_batch` ignores it
    /// (its normalisation always clears write as well as accessed): a
    /// caller that needs it uniform, or needs to know whether any entry
    /// was writable, asks [`PteFormat::pte_writable`] per entry. On arm64
    /// it could not be otherwise anyway: AP\[2\] means both "not yet
    /// dirty" and "not writable by hardware", so "ignore dirt but compare
    /// write" is not a mask over the raw bits. Everything else is compared
    /// (frame, type, user, exec, global, memory type, software bits, and the
    /// arm64 contiguous hint, so a batch also ends where a folded block
    /// meets an unfolded one). Two present entries that are the same here
    /// decode to the same [`PteKind`] once young, dirty and writable are
    /// cleared; for entries `encode` produced the converse holds too.
    fn pte_same_ignoring_ad(a: Pte, b: Pte) -> bool;

    // ------------------------------------------------------------------
    // The batch operations on one live last-level table, as the cursor
    // calls them. The defaults are the plain operations every format
    // shares; a format whose hardware can fold runs of entries (arm64's
    // contiguous hint) overrides them to fold and unfold around the plain
    // work, so generic code never sees the hint and a format without one
    // compiles them to the plain loops. `h` is what the override may need
    // from the mm around the table (a TLB invalidation in the middle of a
    // break-before-make, the folio of a frame, the policy and counters).
    // Each has the contract of the `PteCursor` method of the same name.
    // ------------------------------------------------------------------

    /// Writes `nr` block leaves at `level` (L1 or L2) into entries
    /// `i..i + nr` of `table` (all empty), each mapping the block after the
    /// previous one: [`PageTable::map_range`]'s runs of blocks. A format
    /// that folds may fold aligned runs of them when `fold` allows.
    #[inline]
    fn table_set_blocks(
        table: &[AtomicU64],
        i: usize,
        first_raw: Pte,
        nr: usize,
        level: Level,
        fold: bool,
    ) {
        let _ = fold;
        plain::set_blocks::<Self>(&table[i..i + nr], first_raw, level);
    }

    /// [`PteCursor::get`]: entry `i`, with accessed and dirty gathered
    /// over a folded block.
    #[inline]
    fn table_get(t: PteTable<'_>, i: usize) -> Pte {
        t.load(i)
    }

    /// [`PteCursor::peek`]: entry `i`, without the format's hint bits and
    /// with only its own accessed and dirty state.
    #[inline]
    fn table_peek(t: PteTable<'_>, i: usize) -> Pte {
        t.load(i)
    }

    /// [`PteCursor::set_ptes`] on entries `i..i + nr` of `t`.
    #[inline]
    fn table_set_ptes(
        t: PteTable<'_>,
        i: usize,
        first_raw: Pte,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) {
        let _ = h;
        plain::set_ptes::<Self>(t.run(i, nr), first_raw);
    }

    /// [`PteCursor::get_and_clear_ptes`] on entries `i..i + nr` of `t`.
    #[inline]
    fn table_get_and_clear(
        t: PteTable<'_>,
        i: usize,
        nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Cleared {
        let _ = h;
        plain::get_and_clear::<Self>(t.run(i, nr))
    }

    /// [`PteCursor::wrprotect_ptes`] on entries `i..i + nr` of `t`.
    #[inline]
    fn table_wrprotect(t: PteTable<'_>, i: usize, nr: usize, h: &(impl PteEnv + ?Sized)) -> usize {
        let _ = h;
        plain::wrprotect::<Self>(t.run(i, nr))
    }

    /// [`PteCursor::copy_batch_wrprotect`]: from entry `i` of `src` into
    /// the same entries of `dst`, the same table position of the child.
    #[inline]
    fn table_copy_batch(
        src: PteTable<'_>,
        dst: PteTable<'_>,
        i: usize,
        max_nr: usize,
        h: &(impl PteEnv + ?Sized),
    ) -> Copied {
        let _ = h;
        plain::copy_batch::<Self>(src.run(i, max_nr), dst.run(i, max_nr))
    }

    /// [`PteCursor::copy_one_wrprotect`]: entry `i` of `src`, which reads
    /// `raw`, into `dst`.
    #[inline]
    fn table_copy_one(
        src: PteTable<'_>,
        dst: PteTable<'_>,
        i: usize,
        raw: Pte,
        h: &(impl PteEnv + ?Sized),
    ) -> bool {
        let _ = h;
        plain::copy_one::<Self>(src.entry(i), dst.entry(i), raw)
    }

    /// True if `raw`, a valid leaf (page or block), is part of a folded
    /// run (the arm64 contiguous hint); always false for formats that
    /// cannot fold. For views of the tables (dumps, tests), not for mm
    /// decisions.
    #[inline]
    fn pte_cont(raw: Pte) -> bool {
        let _ = raw;
        false
    }
}

/// What a format's batch operations may ask of the mm around a live user
/// table (see the `table_*` methods of [`PteFormat`]). Only a format that
/// folds runs of entries (arm64 contpte) calls it; others ignore it.
pub trait PteEnv {
    /// Invalidates every cached translation of `[start, end)` in the
    /// table's address space before returning: the middle step of a
    /// break-before-make.
    fn flush_now(&self, start: VirtAddr, end: VirtAddr);
    /// True if the `nr` frames from `first` all belong to one folio.
    fn one_folio(&self, first: Pfn, nr: u64) -> bool;
    /// How the format may fold.
    fn fold_policy(&self) -> FoldPolicy;
    /// Counts `n` folding events of one kind.
    fn note(&self, event: FoldEvent, n: u64);
}

/// How a format that can fold runs of entries into one TLB entry (arm64's
/// contiguous hint over 16 pages) should use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldPolicy {
    /// Fold whole aligned runs of one folio with identical attributes.
    pub fold: bool,
    /// For measurement only: fork write-protects a folded block entry by
    /// entry, unfolding it first (Linux before 6.9's batched
    /// `wrprotect_ptes`), instead of as a whole.
    pub fork_per_pte: bool,
}

impl FoldPolicy {
    /// Folding on, fork keeps folded blocks folded.
    pub const ON: FoldPolicy = FoldPolicy {
        fold: true,
        fork_per_pte: false,
    };
    /// Folding off: no new folds (existing ones are still handled).
    pub const OFF: FoldPolicy = FoldPolicy {
        fold: false,
        fork_per_pte: false,
    };
}

/// A folding event, counted in the mm statistics (`as usize` numbers
/// them 0 to 3 in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldEvent {
    /// A block was folded as it was written by a `set_ptes` over empty
    /// entries (a fault; fork's child inherits the parent's folds
    /// uncounted).
    Fold,
    /// A folded run was unfolded (break-before-make) before a change to
    /// part of it.
    Unfold,
    /// A run made uniform again by single-entry changes was folded
    /// (break-before-make).
    Refold,
    /// A TLB invalidation of a whole run, part of an unfold or refold.
    Flush,
}

/// A [`PteEnv`] for tables that are never folded or unfolded: no folding,
/// nothing counted, and a flush request is a bug (nothing folded can meet
/// a change).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFold;

impl PteEnv for NoFold {
    fn flush_now(&self, start: VirtAddr, end: VirtAddr) {
        panic!("NoFold: a folded run at {start:?}..{end:?} needs a flush");
    }
    fn one_folio(&self, _: Pfn, _: u64) -> bool {
        false
    }
    fn fold_policy(&self) -> FoldPolicy {
        FoldPolicy::OFF
    }
    fn note(&self, _: FoldEvent, _: u64) {}
}

const _: () = assert!(
    ENTRIES as u64 * 8 == PAGE_SIZE,
    "a table fills exactly one frame"
);
