//! The plain batch operations on runs of entries, shared by every format:
//! the defaults of [`PteFormat`]'s `table_*` methods, and what arm64's
//! overrides call once the blocks around a run are in order.

use super::*;

/// Stores `first_raw` advanced by `k` pages into `run[k]`.
#[inline]
pub fn set_ptes<F: PteFormat + ?Sized>(run: &[AtomicU64], first_raw: Pte) {
    let nr = run.len();
    let mut raw = first_raw;
    for (k, e) in run.iter().enumerate() {
        debug_assert!(
            nr == 1 || !F::pte_present(Pte::from_bits(e.load(Ordering::Relaxed))),
            "set_ptes: entry {k} of {nr} is present"
        );
        // Release: what the caller wrote to the frames (zeroes, copies)
        // is visible before the mapping is.
        e.store(raw.bits(), Ordering::Release);
        if k + 1 < nr {
            raw = F::pte_advance(raw, 1);
        }
    }
}

/// Stores `first_raw`, a block leaf at `level`, into `run[0]` and the
/// blocks after it into the rest (the entries are empty; a table not
/// yet in use or a kernel range nobody walks yet: no ordering needed
/// beyond the caller's barrier).
#[inline]
pub fn set_blocks<F: PteFormat + ?Sized>(run: &[AtomicU64], first_raw: Pte, level: Level) {
    let step = level.size() >> PAGE_SHIFT;
    let mut raw = first_raw;
    for (k, e) in run.iter().enumerate() {
        e.store(raw.bits(), Ordering::Release);
        if k + 1 < run.len() {
            raw = F::pte_advance(raw, step);
        }
    }
}

/// Clears `run`, gathering what it held.
#[inline]
pub fn get_and_clear<F: PteFormat + ?Sized>(run: &[AtomicU64]) -> Cleared {
    let mut c = Cleared::default();
    for (k, e) in run.iter().enumerate() {
        // Not a swap: an A/D update in between is lost, harmlessly
        // (the cursor's module doc).
        let old = Pte::from_bits(e.load(Ordering::Relaxed));
        e.store(Pte::NONE.bits(), Ordering::Relaxed);
        if k == 0 {
            c.first = old;
        }
        if F::pte_present(old) {
            c.young |= F::pte_young(old);
            c.dirty |= F::pte_dirty(old);
        }
    }
    c
}

/// Write-protects the writable present entries of `run`; returns how
/// many there were.
#[inline]
pub fn wrprotect<F: PteFormat + ?Sized>(run: &[AtomicU64]) -> usize {
    let mut changed = 0;
    for e in run {
        // Not a compare-and-swap: an A/D update in between is lost,
        // harmlessly (the cursor's module doc). Entries that are not present or not writable
        // keep their exact bits.
        let old = Pte::from_bits(e.load(Ordering::Relaxed));
        if F::pte_present(old) && F::pte_writable(old) {
            e.store(F::pte_wrprotect(old).bits(), Ordering::Relaxed);
            changed += 1;
        }
    }
    changed
}

/// Fork's fused batch copy from `src[0]` (present) into `out`, at
/// most `src.len()` entries (see [`PteCursor::copy_batch_wrprotect`]).
#[inline(never)]
pub fn copy_batch<F: PteFormat + ?Sized>(src: &[AtomicU64], out: &[AtomicU64]) -> Copied {
    let max_nr = src.len();
    let first = Pte::from_bits(src[0].load(Ordering::Relaxed));
    assert!(
        F::pte_present(first),
        "copy_batch_wrprotect: the first entry ({first:#x}) is not present"
    );
    // Checked once per batch, so that advancing an entry by `k` pages
    // can be an addition: with every frame up to `first + max_nr`
    // inside the format's address width (a folio's frames are), adding
    // `k` pages to the raw entry never carries out of the address
    // field, and equals `pte_advance(first, k)`. That addition, and
    // the XOR against `READONLY_AD` below, are done on the entries'
    // bits here (`first_bits`, `child_bits`, `e`), which is why `Pte`
    // itself needs no arithmetic.
    assert!(
        F::pte_pfn(first).as_u64() + max_nr as u64 <= 1 << (F::PA_BITS - PAGE_SHIFT),
        "copy_batch_wrprotect: {max_nr} frames from {first:#x} leave the address field"
    );
    let child = F::pte_wrprotect(first);
    let (first_bits, child_bits) = (first.bits(), child.bits());
    let mut writable = 0;
    if F::pte_writable(first) {
        src[0].store(child_bits, Ordering::Relaxed);
        writable += 1;
    }
    debug_assert!(
        !F::pte_present(Pte::from_bits(out[0].load(Ordering::Relaxed))),
        "copy_batch_wrprotect: the first child entry is present"
    );
    out[0].store(child_bits, Ordering::Relaxed);
    let mut n = 1;
    if writable == 0 {
        // A read-only batch (what every fork after the first one sees):
        // four entries per step with one test, since each member is
        // read-only too and so needs no write-protection, and the
        // child's entry is the parent's expected one (`child == first`
        // here). Where the test fails, the loop below sorts it out.
        let p = PAGE_SIZE;
        let mut e = first_bits + p;
        for (s4, o4) in src[1..].chunks_exact(4).zip(out[1..].chunks_exact(4)) {
            let x = (s4[0].load(Ordering::Relaxed) ^ e)
                | (s4[1].load(Ordering::Relaxed) ^ (e + p))
                | (s4[2].load(Ordering::Relaxed) ^ (e + 2 * p))
                | (s4[3].load(Ordering::Relaxed) ^ (e + 3 * p));
            if x & !F::READONLY_AD != 0 {
                break;
            }
            debug_assert!(
                o4.iter()
                    .all(|o| !F::pte_present(Pte::from_bits(o.load(Ordering::Relaxed)))),
                "copy_batch_wrprotect: a child entry at +{n} is present"
            );
            o4[0].store(e, Ordering::Relaxed);
            o4[1].store(e + p, Ordering::Relaxed);
            o4[2].store(e + 2 * p, Ordering::Relaxed);
            o4[3].store(e + 3 * p, Ordering::Relaxed);
            e += 4 * p;
            n += 4;
        }
    }
    while n < max_nr {
        let delta = n as u64 * PAGE_SIZE;
        let cur = Pte::from_bits(src[n].load(Ordering::Relaxed));
        let expected = Pte::from_bits(first_bits + delta);
        // A non-present entry never matches a present expected one.
        if !F::pte_same_ignoring_ad(cur, expected) {
            break;
        }
        // Not a compare-and-swap: an A/D update in between is lost,
        // harmlessly (the cursor's module doc).
        if F::pte_writable(cur) {
            src[n].store(F::pte_wrprotect(cur).bits(), Ordering::Relaxed);
            writable += 1;
        }
        debug_assert!(
            !F::pte_present(Pte::from_bits(out[n].load(Ordering::Relaxed))),
            "copy_batch_wrprotect: child entry +{n} is present"
        );
        out[n].store(child_bits + delta, Ordering::Relaxed);
        n += 1;
    }
    Copied { nr: n, writable }
}

/// Fork's copy of one entry `raw` (read from `src`) into `out`;
/// returns whether it was writable.
#[inline]
pub fn copy_one<F: PteFormat + ?Sized>(src: &AtomicU64, out: &AtomicU64, raw: Pte) -> bool {
    debug_assert_eq!(Pte::from_bits(src.load(Ordering::Relaxed)), raw);
    debug_assert!(!F::pte_present(Pte::from_bits(out.load(Ordering::Relaxed))));
    let child = F::pte_wrprotect(raw);
    let writable = F::pte_writable(raw);
    if writable {
        // A load and a store, not a compare-and-swap (the cursor's
        // module doc).
        src.store(child.bits(), Ordering::Relaxed);
    }
    out.store(child.bits(), Ordering::Relaxed);
    writable
}
