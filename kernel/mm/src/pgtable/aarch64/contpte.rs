//! arm64 contiguous PTEs ("contpte"): the 16-entry folding that the
//! aarch64 overrides of the batch operations keep right, so generic mm
//! code never sees the contiguous hint (Linux `arch/arm64/mm/contpte.c`).
//!
//! With a 4 KiB granule, 16 entries aligned to 64 KiB that map 16
//! consecutive frames, aligned to 64 KiB, of one folio, with identical
//! attributes (accessed and dirty may differ) may all carry the
//! contiguous hint: a **folded block**, which the TLB may cache as one
//! entry. The rules this file keeps:
//!
//! | operation                                  | on a folded block                                           |
//! |--------------------------------------------|-------------------------------------------------------------|
//! | `set_ptes` of whole aligned blocks (fault) | written folded at once (the entries were empty: no flush)   |
//! | read of one entry (`ptep_get`)             | accessed and dirty gathered over the 16 (OR)                |
//! | single-entry change of accessed/dirty only | applied to all 16, stays folded (`ptep_set_access_flags`)   |
//! | any other single-entry change              | unfold first, then the change, then try to refold           |
//! | clear / write-protect whole blocks         | all 16 changed together, stays folded                       |
//! | clear / write-protect part of a block      | that block unfolded first                                   |
//! | fork's copy of whole blocks                | parent write-protected folded, child written folded (not counted as folds) |
//!
//! **Break-before-make.** Setting or removing the hint on live entries is
//! done by [`convert`]: all 16 entries cleared (their accessed and dirty
//! state gathered), the TLB invalidated for the whole 64 KiB at page
//! stride (a TLB may hold one block entry or per-page entries from before
//! the fold), and only then the 16 entries written back with or without
//! the hint and the gathered state. At no moment do two different live
//! translations of one page exist, which is what the architecture forbids
//! (a TLB conflict abort or an amalgamated translation otherwise). A user
//! access in the window faults and, finding the entry empty or changed,
//! retries; the kernel never folds its own mappings here.
//!
//! **Refold.** After a single-entry change the block is checked again
//! ([`try_fold`]): if its 16 entries are once more a uniform run of one
//! folio, they are folded (a refold, counted apart from folds at fault).
//! Read-only and writable are part of "uniform"; accessed and dirty are
//! not.

use core::sync::atomic::Ordering;

use super::super::cursor::{Cleared, Copied, PteTable, plain};
use super::super::{FoldEvent, Pte, PteEnv, PteFormat};
use super::{AF, AP_RDONLY, Aarch64, CONT, SW_DIRTY, TYPE_MASK};

/// Entries in a block (64 KiB of 4 KiB pages).
pub(super) const CONT_PTES: usize = 16;

/// The bits in which two entries of one folded block may differ, beyond
/// the frame: accessed and dirty (AP\[2\] of a writable entry, the
/// software bit of a read-only one). Write permission (DBM) is compared.
const FOLD_IGNORE: u64 = AF | AP_RDONLY | SW_DIRTY;

/// The first entry of the block holding entry `i`.
#[inline]
fn block(i: usize) -> usize {
    i & !(CONT_PTES - 1)
}

/// True if `raw` is a present page entry with the hint: an entry of a
/// folded block. (Stray bits of an invalid entry mean nothing.)
#[inline]
fn is_cont(raw: Pte) -> bool {
    raw.bits() & (CONT | TYPE_MASK) == CONT | TYPE_MASK
}

/// True if `raw` is a page entry the MMU uses: a protnone entry is
/// present to the mm but never folded (the hint means nothing on an
/// invalid entry, and no TLB could hold the block anyway).
#[inline]
fn is_valid_page(raw: Pte) -> bool {
    raw.bits() & TYPE_MASK == TYPE_MASK
}

/// `raw` with the contiguous hint set (`on`) or clear.
#[inline]
fn with_cont(raw: Pte, on: bool) -> Pte {
    Pte::from_bits(if on {
        raw.bits() | CONT
    } else {
        raw.bits() & !CONT
    })
}

/// `raw` with the accessed and dirty state of `young` and `dirty` added.
#[inline]
fn add_ad(raw: Pte, young: bool, dirty: bool) -> Pte {
    let raw = if young {
        Aarch64::pte_mkyoung(raw)
    } else {
        raw
    };
    if dirty {
        Aarch64::pte_mkdirty(raw)
    } else {
        raw
    }
}

/// True if `e`, the entry `k` places after `first` in a block, continues
/// `first`'s run: the frame `k` further on, every other bit equal apart
/// from accessed and dirty (write permission included). `first`'s frame
/// is block aligned, so adding `k` pages never carries out of the
/// address field.
#[inline]
fn continues(first: Pte, k: usize, e: Pte) -> bool {
    let expected = first.bits() + ((k as u64) << crate::addr::PAGE_SHIFT);
    (e.bits() ^ expected) & !FOLD_IGNORE == 0
}

/// Rewrites the 16 entries of the block at `b` with the hint set (`fold`)
/// or clear, by break-before-make (module doc); every entry gets the
/// accessed and dirty state gathered over all 16.
fn convert(t: PteTable<'_>, b: usize, fold: bool, h: &(impl PteEnv + ?Sized)) {
    debug_assert_eq!(b % CONT_PTES, 0);
    let mut old = [Pte::NONE; CONT_PTES];
    let (mut young, mut dirty) = (false, false);
    for (k, o) in old.iter_mut().enumerate() {
        // A swap: whatever the walker set up to the clear is kept.
        *o = Pte::from_bits(t.entry(b + k).swap(0, Ordering::AcqRel));
        young |= Aarch64::pte_young(*o);
        dirty |= Aarch64::pte_dirty(*o);
    }
    // A folded block must still be uniform when it is unfolded: anything
    // that changed part of it first broke the rule this file keeps.
    debug_assert!(
        fold || (1..CONT_PTES).all(|k| continues(old[0], k, old[k])),
        "unfolding a block at {:?} that is not uniform: {old:x?}",
        t.va(b)
    );
    h.flush_now(t.va(b), t.va(b + CONT_PTES));
    h.note(FoldEvent::Flush, 1);
    for (k, o) in old.iter().enumerate() {
        let raw = add_ad(with_cont(*o, fold), young, dirty);
        t.entry(b + k).store(raw.bits(), Ordering::Release);
    }
}

/// Unfolds the block holding entry `i` if it is folded.
#[inline]
fn unfold(t: PteTable<'_>, i: usize, h: &(impl PteEnv + ?Sized)) {
    if is_cont(t.load(i)) {
        convert(t, block(i), false, h);
        h.note(FoldEvent::Unfold, 1);
    }
}

/// Unfolds the blocks that `i..i + nr` covers only in part.
#[inline]
fn unfold_edges(t: PteTable<'_>, i: usize, nr: usize, h: &(impl PteEnv + ?Sized)) {
    assert!(nr >= 1, "contpte: an empty run");
    if !i.is_multiple_of(CONT_PTES) {
        unfold(t, i, h);
    }
    let end = i + nr;
    if !end.is_multiple_of(CONT_PTES) {
        unfold(t, end - 1, h);
    }
}

/// True if the block at `b` (not folded) may be folded: 16 valid
/// entries (not protnone) mapping 16 consecutive frames aligned to the block, identical
/// apart from accessed and dirty, of one folio, with folding allowed.
fn foldable(t: PteTable<'_>, b: usize, h: &(impl PteEnv + ?Sized)) -> bool {
    let first = t.load(b);
    if !is_valid_page(first)
        || is_cont(first)
        || Aarch64::pte_pfn(first).as_u64() % CONT_PTES as u64 != 0
    {
        return false;
    }
    let uniform = (1..CONT_PTES).all(|k| continues(first, k, t.load(b + k)));
    uniform && h.fold_policy().fold && h.one_folio(Aarch64::pte_pfn(first), CONT_PTES as u64)
}

/// Folds the block holding entry `i` again if it has become uniform
/// (module doc, "Refold").
fn try_fold(t: PteTable<'_>, i: usize, h: &(impl PteEnv + ?Sized)) {
    let b = block(i);
    if foldable(t, b, h) {
        convert(t, b, true, h);
        h.note(FoldEvent::Refold, 1);
    }
}

/// `ptep_get`: entry `i` without the hint (generic code never sees it,
/// and may hand the entry back to `set_ptes`), with accessed and dirty
/// gathered over its block if it is folded.
#[inline]
pub(super) fn get(t: PteTable<'_>, i: usize) -> Pte {
    let raw = t.load(i);
    if !is_cont(raw) {
        return raw;
    }
    let b = block(i);
    let (mut young, mut dirty) = (false, false);
    for k in 0..CONT_PTES {
        let e = t.load(b + k);
        young |= Aarch64::pte_young(e);
        dirty |= Aarch64::pte_dirty(e);
    }
    add_ad(with_cont(raw, false), young, dirty)
}

/// Entry `i` without the hint, its own accessed and dirty state only
/// (for scans that need presence and frame: no gathering).
#[inline]
pub(super) fn peek(t: PteTable<'_>, i: usize) -> Pte {
    with_cont(t.load(i), false)
}

/// `set_ptes`: a run over empty entries is written with whole aligned
/// blocks folded (when the policy allows); a single entry over a folded
/// block keeps the fold if only accessed and dirty grow, and otherwise
/// unfolds it first; a single present entry may make its block foldable.
pub(super) fn set_ptes(
    t: PteTable<'_>,
    i: usize,
    first: Pte,
    nr: usize,
    h: &(impl PteEnv + ?Sized),
) {
    if nr == 1 {
        let old = t.load(i);
        if is_cont(old) {
            let (young, dirty) = (Aarch64::pte_young(first), Aarch64::pte_dirty(first));
            let grows = (young || !Aarch64::pte_young(old)) && (dirty || !Aarch64::pte_dirty(old));
            if (old.bits() ^ first.bits()) & !(FOLD_IGNORE | CONT) == 0 && grows {
                // Accessed/dirty only grow (Linux's contpte
                // `ptep_set_access_flags` with write unchanged): all 16
                // entries take them, so the block stays uniform. A TLB
                // may hold read-only (clean) per-page entries of the
                // block: newly dirty, the whole block is invalidated, or
                // each of its pages would fault once more. Any other
                // change, making an entry older or cleaner included,
                // unfolds below.
                let b = block(i);
                let mut newly_dirty = false;
                for k in 0..CONT_PTES {
                    let was = t.load(b + k);
                    newly_dirty |= dirty && !Aarch64::pte_dirty(was);
                    let e = add_ad(was, young, dirty);
                    t.entry(b + k).store(e.bits(), Ordering::Release);
                }
                if newly_dirty {
                    h.flush_now(t.va(b), t.va(b + CONT_PTES));
                    h.note(FoldEvent::Flush, 1);
                }
                return;
            }
            unfold(t, i, h);
        }
        plain::set_ptes::<Aarch64>(t.run(i, 1), first);
        if is_valid_page(first) {
            try_fold(t, i, h);
        }
        return;
    }
    // A run shorter than a block (a 16 or 32 KiB folio) cannot fold: the
    // plain loop, with no per-entry test. Nor can a protnone run.
    if nr < CONT_PTES || !h.fold_policy().fold || !is_valid_page(first) {
        plain::set_ptes::<Aarch64>(t.run(i, nr), first);
        return;
    }
    let end = i + nr;
    // The entries were empty: nothing cached to break first. A piece
    // before the first block boundary, whole blocks (folded where the
    // frame is block aligned too), a piece after the last.
    let lead = (i.next_multiple_of(CONT_PTES) - i).min(nr);
    let mut k = i;
    let mut raw = first;
    let mut folds = 0;
    let piece = |k: &mut usize, raw: &mut Pte, n: usize, fold: bool| {
        plain::set_ptes::<Aarch64>(t.run(*k, n), with_cont(*raw, fold));
        *k += n;
        if *k < end {
            *raw = Aarch64::pte_advance(*raw, n as u64);
        }
    };
    if lead > 0 {
        piece(&mut k, &mut raw, lead, false);
    }
    while k + CONT_PTES <= end {
        let fold = Aarch64::pte_pfn(raw)
            .as_u64()
            .is_multiple_of(CONT_PTES as u64);
        folds += u64::from(fold);
        piece(&mut k, &mut raw, CONT_PTES, fold);
    }
    if k < end {
        let rest = end - k;
        piece(&mut k, &mut raw, rest, false);
    }
    if folds > 0 {
        h.note(FoldEvent::Fold, folds);
    }
}

/// `get_and_clear_full_ptes`: blocks covered in part are unfolded first;
/// whole blocks are cleared as they are (the caller's gather flushes the
/// range).
pub(super) fn get_and_clear(
    t: PteTable<'_>,
    i: usize,
    nr: usize,
    h: &(impl PteEnv + ?Sized),
) -> Cleared {
    unfold_edges(t, i, nr, h);
    let mut c = plain::get_and_clear::<Aarch64>(t.run(i, nr));
    if is_cont(c.first) {
        c.first = with_cont(c.first, false);
    }
    c
}

/// `wrprotect_ptes`: blocks covered in part are unfolded first; whole
/// blocks are write-protected folded, unless the policy asks for the
/// per-entry behaviour, which unfolds every block.
pub(super) fn wrprotect(t: PteTable<'_>, i: usize, nr: usize, h: &(impl PteEnv + ?Sized)) -> usize {
    if h.fold_policy().fork_per_pte {
        for b in (block(i)..i + nr).step_by(CONT_PTES) {
            unfold(t, b, h);
        }
    } else {
        unfold_edges(t, i, nr, h);
    }
    plain::wrprotect::<Aarch64>(t.run(i, nr))
}

/// Fork's fused copy of a batch from entry `i`. Whole folded blocks stay
/// folded in the parent (write-protected) and are written folded in the
/// child; a block the batch starts or ends inside is unfolded in the
/// parent and written without the hint in the child.
pub(super) fn copy_batch(
    src: PteTable<'_>,
    dst: PteTable<'_>,
    i: usize,
    max_nr: usize,
    h: &(impl PteEnv + ?Sized),
) -> Copied {
    // The common case (whole folded blocks, or none) costs a load and a
    // few tests beyond the plain copy: nothing is counted per batch, the
    // child's folds being the parent's.
    if !is_cont(src.load(i)) {
        // Unfolded here: the batch ends where a folded block starts (the
        // hint is part of what a batch compares).
        return plain::copy_batch::<Aarch64>(src.run(i, max_nr), dst.run(i, max_nr));
    }
    let policy = h.fold_policy();
    if !i.is_multiple_of(CONT_PTES) || policy.fork_per_pte {
        // A block the batch starts inside; in the per-entry mode every
        // block, the batch then ending where the next (folded) one starts.
        unfold(src, i, h);
    }
    let end = i + max_nr;
    if !end.is_multiple_of(CONT_PTES) && is_cont(src.load(end - 1)) {
        // The bound (the area's end) cuts a folded block: unfolded before
        // any of its entries is write-protected, so it is never folded
        // and mixed.
        unfold(src, end - 1, h);
    }
    let c = plain::copy_batch::<Aarch64>(src.run(i, max_nr), dst.run(i, max_nr));
    if !policy.fold {
        // Folding off: the child gets no new folds.
        for k in i..i + c.nr {
            let e = with_cont(dst.load(k), false);
            dst.entry(k).store(e.bits(), Ordering::Relaxed);
        }
    }
    c
}

/// Fork's copy of one entry (`raw`, as `peek` read it): a folded block is
/// unfolded first (a batch of one write-protects part of it), and the
/// entry read again, exactly.
#[inline]
pub(super) fn copy_one(
    src: PteTable<'_>,
    dst: PteTable<'_>,
    i: usize,
    raw: Pte,
    h: &(impl PteEnv + ?Sized),
) -> bool {
    let exact = src.load(i);
    if !is_cont(exact) {
        debug_assert_eq!(exact, raw);
        return plain::copy_one::<Aarch64>(src.entry(i), dst.entry(i), exact);
    }
    unfold(src, i, h);
    plain::copy_one::<Aarch64>(src.entry(i), dst.entry(i), src.load(i))
}
