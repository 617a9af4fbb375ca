//! Host tests of `PteCursor` on both formats, with an arena standing in for
//! physical memory: every batch operation against a per-entry model whose
//! expectations come from the `PteKind` encoding (the oracle), and the
//! cases batching is known to get wrong.
//!
//! | test                                  | what would catch a bug            |
//! |---------------------------------------|-----------------------------------|
//! | `*_ops_match_model` (proptest)        | all 512 entries of both tables (parent, fork's child) compared after every op; the walker's `translate` at the end |
//! | `*_adjacent_folios`                   | the folio-end off-by-one          |
//! | `*_batch_stops`                       | bit difference, frame gap, hole, `max_nr`, A/D/W ignored |
//! | `*_zap_loop`                          | a `zap_pte_range`-style loop sees exactly the folios mapped |
//! | `*_clear_and_wrprotect_keep_ad`       | young/dirty set on some entries only, non-present entries with A/D-like bits |
//! | `*_window_only`                       | poisoned neighbours of a sub-range cursor stay untouched |
//! | `cursor_*`                            | lookup, `None` cases, range and index contracts |

mod common;

use folium_mm::pgtable::{
    Aarch64, Attrs, Cleared, Copied, Level, MapOptions, NoFold, PageTable, Pte, PteCursor,
    PteFormat, PteKind, X86_64,
};
use folium_mm::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use proptest::prelude::*;

use common::{Arena, Frames};

/// First VA of the table the tests use (2 MiB aligned, user half).
const BASE: u64 = 0x4000_0000;
const TABLE_SPAN: u64 = 2 << 20;
/// Entries per last-level table.
const N: usize = 512;
/// Frames the entries map; never touched, so they need not exist.
const PFN0: u64 = 0x9_0000;

fn setup<F: PteFormat>() -> (Arena, Frames, PageTable<F>) {
    let arena = Arena::new(64 * PAGE_SIZE as usize);
    let mut frames = arena.frames(usize::MAX);
    let pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    (arena, frames, pt)
}

fn va(i: usize) -> VirtAddr {
    VirtAddr::new(BASE + i as u64 * PAGE_SIZE)
}

/// The whole table at `BASE`, created if missing.
fn whole<'a, F: PteFormat>(pt: &'a mut PageTable<F>, frames: &mut Frames) -> PteCursor<'a, F> {
    pt.pte_cursor_alloc(va(0), va(N), frames).unwrap()
}

/// The canonical raw page entry for frame `pfn` (the oracle's spelling).
fn page<F: PteFormat>(pfn: u64, attrs: Attrs) -> Pte {
    F::encode(
        PteKind::Leaf {
            pa: Pfn::new(pfn).phys(),
            attrs,
        },
        Level::L3,
    )
}

/// `get_and_clear_ptes`'s answer as a tuple, for comparisons.
fn tuple(c: Cleared) -> (Pte, bool, bool) {
    (c.first, c.young, c.dirty)
}

/// `copy_batch_wrprotect`'s answer as a pair, for comparisons.
fn pair(c: Copied) -> (usize, usize) {
    (c.nr, c.writable)
}

fn with(a: Attrs, young: bool, dirty: bool) -> Attrs {
    Attrs { young, dirty, ..a }
}

/// Non-present entries whose other bits look like A, D, R/W, AF or a
/// frame: they must count for nothing and, where an operation does not
/// clear them, stay as they are. Bit 0 is clear in each, so both formats
/// read them as invalid, and neither carries a protnone bit (x86 bit 9,
/// arm64 bit 58), which would make it a `PROT_NONE` page.
const NOT_PRESENT: [Pte; 3] = [
    Pte::from_bits(0x0000_0000_0000_0460),
    Pte::from_bits(0x0080_0009_0000_0de2),
    Pte::from_bits(0x5a5a_5a5a_5a5a_585a),
];

// --------------------------------------------------------------- model --

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    /// `set_ptes(i, page(pfn, palette[attrs]), nr)`, done only where the
    /// model says the contract holds (nr == 1, or all nr entries absent).
    Set {
        i: usize,
        nr: usize,
        pfn: u64,
        attrs: usize,
    },
    /// One entry becomes a not-present value with stray bits.
    Junk {
        i: usize,
        which: usize,
    },
    /// Entry `i` (if present) rewritten with young/dirty/writable/exec
    /// flipped as `flip` says: what hardware and faults do between batches.
    Flip {
        i: usize,
        flip: u8,
    },
    GetAndClear {
        i: usize,
        nr: usize,
    },
    Wrprotect {
        i: usize,
        nr: usize,
    },
    /// `pte_batch(i, max_nr, first frame + left)`, when entry `i` is present.
    Batch {
        i: usize,
        max_nr: usize,
        left: u64,
    },
    /// Fork's copy of the batch at `i` (bounded by `max_nr` and a folio
    /// ending `left` frames on) into the second table, emptied there
    /// first: `copy_batch_wrprotect`, or `copy_one_wrprotect` for one.
    Fork {
        i: usize,
        max_nr: usize,
        left: u64,
    },
}

const PALETTE: [Attrs; 4] = [
    Attrs::user(true, false),
    Attrs::user(false, false),
    Attrs::user(true, true),
    Attrs {
        young: true,
        dirty: true,
        ..Attrs::user(true, false)
    },
];

fn op() -> impl Strategy<Value = Op> {
    let i = 0..N;
    prop_oneof![
        3 => (i.clone(), 1usize..40, 0u64..64, 0..PALETTE.len())
            .prop_map(|(i, nr, pfn, attrs)| Op::Set { i, nr, pfn: PFN0 + pfn * 8, attrs }),
        1 => (i.clone(), 0..NOT_PRESENT.len()).prop_map(|(i, which)| Op::Junk { i, which }),
        2 => (i.clone(), any::<u8>()).prop_map(|(i, flip)| Op::Flip { i, flip }),
        1 => (i.clone(), 1usize..40).prop_map(|(i, nr)| Op::GetAndClear { i, nr }),
        1 => (i.clone(), 1usize..40).prop_map(|(i, nr)| Op::Wrprotect { i, nr }),
        3 => (i.clone(), 1usize..64, 1u64..64).prop_map(|(i, max_nr, left)| Op::Batch { i, max_nr, left }),
        3 => (i, 1usize..64, 1u64..64).prop_map(|(i, max_nr, left)| Op::Fork { i, max_nr, left }),
    ]
}

fn leaf_of<F: PteFormat>(raw: Pte) -> Option<(Pfn, Attrs)> {
    match F::decode(raw, Level::L3) {
        PteKind::Leaf { pa, attrs } => Some((pa.pfn(), attrs)),
        _ => None,
    }
}

/// What batching compares: everything but young, dirty and writable.
fn batch_view(a: Attrs) -> Attrs {
    Attrs {
        young: false,
        dirty: false,
        writable: false,
        ..a
    }
}

/// The batch length, computed from decoded entries only.
fn model_batch<F: PteFormat>(m: &[Pte], i: usize, max_nr: usize, end: Pfn) -> usize {
    let (pfn0, a0) = leaf_of::<F>(m[i]).unwrap();
    let mut n = 1;
    while n < max_nr && pfn0.as_u64() + (n as u64) < end.as_u64() {
        match leaf_of::<F>(m[i + n]) {
            Some((pfn, a)) if pfn == pfn0 + n as u64 && batch_view(a) == batch_view(a0) => n += 1,
            _ => break,
        }
    }
    n
}

/// `raw` without write permission, spelled as the oracle spells it.
fn readonly<F: PteFormat>(pfn: Pfn, a: Attrs) -> Pte {
    page::<F>(
        pfn.as_u64(),
        Attrs {
            writable: false,
            ..a
        },
    )
}

/// Applies `op` to the parent cursor `c` (model `m`) and, for a fork, the
/// child cursor `d` (model `md`).
fn apply<F: PteFormat>(
    c: &mut PteCursor<'_, F>,
    m: &mut [Pte],
    d: &mut PteCursor<'_, F>,
    md: &mut [Pte],
    op: &Op,
) {
    match *op {
        Op::Set { i, nr, pfn, attrs } => {
            let nr = nr.min(N - i);
            if nr > 1 && m[i..i + nr].iter().any(|&r| F::pte_present(r)) {
                return;
            }
            let a = PALETTE[attrs];
            assert_eq!(c.set_ptes(i, page::<F>(pfn, a), nr, &NoFold), nr);
            for k in 0..nr {
                m[i + k] = page::<F>(pfn + k as u64, a);
            }
        }
        Op::Junk { i, which } => {
            c.set_ptes(i, NOT_PRESENT[which], 1, &NoFold);
            m[i] = NOT_PRESENT[which];
        }
        Op::Flip { i, flip } => {
            let Some((pfn, mut a)) = leaf_of::<F>(m[i]) else {
                return;
            };
            a.young ^= flip & 1 != 0;
            a.dirty ^= flip & 2 != 0;
            a.writable ^= flip & 4 != 0;
            a.exec ^= flip & 0xf8 == 0x08;
            m[i] = page::<F>(pfn.as_u64(), a);
            c.set_ptes(i, m[i], 1, &NoFold);
        }
        Op::GetAndClear { i, nr } => {
            let nr = nr.min(N - i);
            let run = &mut m[i..i + nr];
            let leaves = || run.iter().filter_map(|&r| leaf_of::<F>(r));
            let want = (
                run[0],
                leaves().any(|(_, a)| a.young),
                leaves().any(|(_, a)| a.dirty),
            );
            assert_eq!(
                tuple(c.get_and_clear_ptes(i, nr, &NoFold)),
                want,
                "get_and_clear {i}+{nr}"
            );
            run.fill(Pte::NONE);
        }
        Op::Wrprotect { i, nr } => {
            let nr = nr.min(N - i);
            let writable = m[i..i + nr]
                .iter()
                .filter(|&&r| leaf_of::<F>(r).is_some_and(|(_, a)| a.writable))
                .count();
            assert_eq!(c.wrprotect_ptes(i, nr, &NoFold), writable);
            for r in &mut m[i..i + nr] {
                if let Some((pfn, a)) = leaf_of::<F>(*r) {
                    *r = page::<F>(
                        pfn.as_u64(),
                        Attrs {
                            writable: false,
                            ..a
                        },
                    );
                }
            }
        }
        Op::Batch { i, max_nr, left } => {
            let Some((pfn, _)) = leaf_of::<F>(m[i]) else {
                return;
            };
            let max_nr = max_nr.min(N - i);
            let end = pfn + left;
            assert_eq!(
                c.pte_batch(i, max_nr, end),
                model_batch::<F>(m, i, max_nr, end),
                "pte_batch({i}, {max_nr}, {end:?})"
            );
        }
        Op::Fork { i, max_nr, left } => {
            let Some((pfn, a0)) = leaf_of::<F>(m[i]) else {
                return;
            };
            // The caller's bound: the folio's end and the table's.
            let max = max_nr.min(N - i).min(left as usize);
            tuple(d.get_and_clear_ptes(i, max, &NoFold));
            md[i..i + max].fill(Pte::NONE);
            let nr = model_batch::<F>(m, i, max, pfn + left);
            let writable = m[i..i + nr]
                .iter()
                .filter(|&&r| leaf_of::<F>(r).is_some_and(|(_, a)| a.writable))
                .count();
            let got = if max == 1 {
                (1, usize::from(c.copy_one_wrprotect(d, i, m[i], &NoFold)))
            } else {
                pair(c.copy_batch_wrprotect(d, i, max, &NoFold))
            };
            assert_eq!(got, (nr, writable), "copy {i} (max {max})");
            for k in 0..nr {
                let (p, a) = leaf_of::<F>(m[i + k]).unwrap();
                m[i + k] = readonly::<F>(p, a);
                // The child's entries all take the first one's state.
                md[i + k] = readonly::<F>(pfn + k as u64, a0);
            }
        }
    }
}

fn ops_match_model<F: PteFormat>(ops: &[Op]) -> Result<(), TestCaseError> {
    let (arena, mut frames, mut pt) = setup::<F>();
    let mut child = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    let mut m = vec![Pte::NONE; N];
    let mut md = vec![Pte::NONE; N];
    {
        let mut c = whole(&mut pt, &mut frames);
        let mut d = whole(&mut child, &mut frames);
        for op in ops {
            apply(&mut c, &mut m, &mut d, &mut md, op);
            for (j, &want) in m.iter().enumerate() {
                prop_assert_eq!(c.get(j), want, "entry {} after {:?}", j, op);
            }
            for (j, &want) in md.iter().enumerate() {
                prop_assert_eq!(d.get(j), want, "child entry {} after {:?}", j, op);
            }
        }
    }
    // Second path: the tree's own walker sees the same mappings.
    for (j, &raw) in m.iter().enumerate() {
        let t = pt.translate(va(j)).map(|t| (t.pa.pfn(), t.attrs));
        prop_assert_eq!(t, leaf_of::<F>(raw), "translate entry {}", j);
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::cases(ProptestConfig::default().cases))]

    #[test]
    fn arm64_ops_match_model(ops in proptest::collection::vec(op(), 1..60)) {
        ops_match_model::<Aarch64>(&ops)?;
    }

    #[test]
    fn x86_ops_match_model(ops in proptest::collection::vec(op(), 1..60)) {
        ops_match_model::<X86_64>(&ops)?;
    }
}

// ----------------------------------------------------------- scenarios --

/// Two order-4 folios from one buddy block, physically adjacent, mapped
/// back to back with identical bits: the entry after the first folio has
/// exactly the "next" frame, so only the folio's end stops the batch.
fn adjacent_folios<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    let mut c = whole(&mut pt, &mut frames);
    let a = with(Attrs::user(true, false), true, true);
    let (f0, f1, f2) = (Pfn::new(PFN0), Pfn::new(PFN0 + 16), Pfn::new(PFN0 + 32));
    // Index 8 onwards, so neither folio is table-aligned.
    c.set_ptes(8, page::<F>(f0.as_u64(), a), 16, &NoFold);
    c.set_ptes(24, page::<F>(f1.as_u64(), a), 16, &NoFold);
    // The two runs are indistinguishable entry by entry...
    assert!(F::pte_same_ignoring_ad(
        c.get(24),
        F::pte_advance(c.get(23), 1)
    ));
    // ...yet each batch is exactly one folio, from its head or from inside.
    assert_eq!(c.pte_batch(8, 100, f1), 16);
    assert_eq!(c.pte_batch(8, 16, f1), 16);
    assert_eq!(c.pte_batch(8, 15, f1), 15);
    assert_eq!(c.pte_batch(13, 100, f1), 11);
    assert_eq!(c.pte_batch(23, 100, f1), 1, "last page of the first folio");
    assert_eq!(c.pte_batch(24, 100, f2), 16);
    assert_eq!(c.pte_batch(39, 100, f2), 1);
    // Told the folio is larger, the same entries do form one run of 32.
    assert_eq!(c.pte_batch(8, 100, f2), 32);
}

/// Differences in young, dirty and write permission do not stop a batch;
/// any other bit, a frame gap, a hole or `max_nr` does.
fn batch_stops<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    let mut c = whole(&mut pt, &mut frames);
    let a = Attrs::user(true, false);
    let end = Pfn::new(PFN0 + 512);
    c.set_ptes(0, page::<F>(PFN0, a), 64, &NoFold);
    // Vary the ignored bits on every entry.
    for i in 1..64 {
        let pfn = PFN0 + i as u64;
        let b = Attrs {
            young: i % 2 == 0,
            dirty: i % 3 == 0,
            writable: i % 5 != 0,
            ..a
        };
        c.set_ptes(i, page::<F>(pfn, b), 1, &NoFold);
    }
    assert_eq!(c.pte_batch(0, 64, end), 64);
    assert_eq!(c.pte_batch(0, 7, end), 7, "max_nr");
    assert_eq!(c.pte_batch(63, 1, end), 1);
    // Executable from entry 40 on: a real difference.
    c.set_ptes(
        40,
        page::<F>(PFN0 + 40, Attrs::user(true, true)),
        1,
        &NoFold,
    );
    assert_eq!(c.pte_batch(0, 64, end), 40);
    assert_eq!(c.pte_batch(41, 23, end), 23);
    // A frame gap at 30 (same bits, wrong frame).
    c.set_ptes(30, page::<F>(PFN0 + 31, a), 1, &NoFold);
    assert_eq!(c.pte_batch(0, 64, end), 30);
    assert_eq!(c.pte_batch(30, 10, end), 1);
    // A hole at 20, with stray bits that look like A/D.
    c.set_ptes(20, NOT_PRESENT[0], 1, &NoFold);
    assert_eq!(c.pte_batch(0, 64, end), 20);
    // Global (kernel-style) versus not: compared.
    let g = Attrs { global: true, ..a };
    c.set_ptes(10, page::<F>(PFN0 + 10, g), 1, &NoFold);
    assert_eq!(c.pte_batch(0, 64, end), 10);
    assert_eq!(c.pte_batch(10, 5, end), 1);
}

/// A `zap_pte_range`-style loop over folios of several orders, physically
/// adjacent and mapped with identical bits, with holes between some: the
/// batches are exactly the folios, and the A/D answers are per batch.
fn zap_loop<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    // (first index, first pfn, pages) of each folio; the folio starting
    // at PFN0 + 4 follows the one at PFN0 physically and virtually.
    let folios = [
        (3, PFN0, 4),
        (7, PFN0 + 4, 4),
        (11, PFN0 + 8, 1),
        (12, PFN0 + 16, 16),
        (40, PFN0 + 32, 16),
        (56, PFN0 + 48, 2),
        (496, PFN0 + 64, 16),
    ];
    let a = Attrs::user(true, false);
    {
        let mut c = whole(&mut pt, &mut frames);
        for &(i, pfn, n) in &folios {
            assert_eq!(c.set_ptes(i, page::<F>(pfn, a), n, &NoFold), n);
        }
        // The hardware dirties one page of the order-4 folio at 40.
        c.set_ptes(45, page::<F>(PFN0 + 37, with(a, true, true)), 1, &NoFold);
    }
    let folio_end = |pfn: Pfn| {
        let &(_, first, n) = folios
            .iter()
            .find(|&&(_, first, n)| (first..first + n as u64).contains(&pfn.as_u64()))
            .expect("a mapped frame belongs to a folio");
        Pfn::new(first + n as u64)
    };
    let mut c = pt.pte_cursor(va(0), va(N)).unwrap();
    let mut seen = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let raw = c.get(i);
        if !F::pte_present(raw) {
            i += 1;
            continue;
        }
        let nr = c.pte_batch(i, c.len() - i, folio_end(F::pte_pfn(raw)));
        let (first, young, dirty) = tuple(c.get_and_clear_ptes(i, nr, &NoFold));
        assert_eq!(first, raw);
        seen.push((i, F::pte_pfn(first).as_u64(), nr, young || dirty));
        i += nr;
    }
    let want: Vec<_> = folios
        .iter()
        .map(|&(i, pfn, n)| (i, pfn, n, i == 40))
        .collect();
    assert_eq!(seen, want);
    assert!((0..N).all(|j| c.get(j).is_none()));
}

/// get_and_clear reports A/D from any entry of the run, not only the
/// first, and ignores non-present entries; wrprotect keeps A/D.
fn clear_and_wrprotect_keep_ad<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    let mut c = whole(&mut pt, &mut frames);
    let a = Attrs::user(true, false);
    c.set_ptes(100, page::<F>(PFN0, a), 32, &NoFold);
    c.set_ptes(105, page::<F>(PFN0 + 5, with(a, true, false)), 1, &NoFold);
    c.set_ptes(120, page::<F>(PFN0 + 20, with(a, false, true)), 1, &NoFold);
    // Write-protect 104..124: dirt on 120 must survive.
    assert_eq!(c.wrprotect_ptes(104, 20, &NoFold), 20);
    for j in 100..132 {
        let (pfn, b) = leaf_of::<F>(c.get(j)).unwrap();
        assert_eq!(pfn.as_u64(), PFN0 + j as u64 - 100);
        assert_eq!(b.writable, !(104..124).contains(&j), "entry {j}");
        assert_eq!((b.young, b.dirty), (j == 105, j == 120), "entry {j}");
    }
    assert!(!F::pte_writable(c.get(120)) && F::pte_dirty(c.get(120)));
    // Clear in three runs: nothing, young only, dirty only.
    assert_eq!(
        tuple(c.get_and_clear_ptes(100, 5, &NoFold)),
        (page::<F>(PFN0, a), false, false)
    );
    let ro = Attrs {
        writable: false,
        ..a
    };
    assert_eq!(
        tuple(c.get_and_clear_ptes(106, 20, &NoFold)),
        (page::<F>(PFN0 + 6, ro), false, true)
    );
    assert_eq!(
        tuple(c.get_and_clear_ptes(105, 1, &NoFold)),
        (page::<F>(PFN0 + 5, with(ro, true, false)), true, false)
    );
    // Non-present entries with A/D-like bits count for nothing.
    for (k, &junk) in NOT_PRESENT.iter().enumerate() {
        c.set_ptes(200 + k, junk, 1, &NoFold);
    }
    assert_eq!(
        c.wrprotect_ptes(200, 3, &NoFold),
        0,
        "none of them is a writable page"
    );
    for (k, &junk) in NOT_PRESENT.iter().enumerate() {
        assert_eq!(
            c.get(200 + k),
            junk,
            "wrprotect changed a non-present entry"
        );
    }
    assert_eq!(
        tuple(c.get_and_clear_ptes(200, 3, &NoFold)),
        (NOT_PRESENT[0], false, false)
    );
    assert!((0..N).all(|j| c.get(j).is_none() || (126..132).contains(&j)));
}

/// A cursor over part of a table changes only its window: entries on both
/// sides, poisoned with stray not-present values and live pages, survive
/// every operation at the window's edges.
fn window_only<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    let a = Attrs::user(true, false);
    let mut before = vec![Pte::NONE; N];
    {
        let mut c = whole(&mut pt, &mut frames);
        for (j, e) in before.iter_mut().enumerate() {
            *e = if j % 2 == 0 {
                NOT_PRESENT[j % 3]
            } else {
                page::<F>(PFN0 + 1000 + j as u64, with(a, true, true))
            };
            c.set_ptes(j, *e, 1, &NoFold);
        }
    }
    let (lo, hi) = (64, 80);
    {
        let mut c = pt.pte_cursor(va(lo), va(hi)).unwrap();
        assert_eq!(c.len(), hi - lo);
        assert_eq!(c.va(3), va(lo + 3));
        assert_eq!(c.get(0), before[lo]);
        tuple(c.get_and_clear_ptes(0, c.len(), &NoFold));
        assert_eq!(c.set_ptes(0, page::<F>(PFN0, a), 16, &NoFold), 16);
        c.wrprotect_ptes(0, 16, &NoFold);
        assert_eq!(c.pte_batch(0, 16, Pfn::new(PFN0 + 64)), 16);
        tuple(c.get_and_clear_ptes(15, 1, &NoFold));
        assert_eq!(c.pte_batch(0, 15, Pfn::new(PFN0 + 64)), 15);
    }
    let c = whole(&mut pt, &mut frames);
    for (j, &e) in before.iter().enumerate() {
        if !(lo..hi).contains(&j) {
            assert_eq!(c.get(j), e, "entry {j} outside the window changed");
        }
    }
}

macro_rules! both {
    ($($f:ident),*) => {
        mod arm64 {
            $(#[test] fn $f() { super::$f::<super::Aarch64>() })*
        }
        mod x86 {
            $(#[test] fn $f() { super::$f::<super::X86_64>() })*
        }
    };
}

both!(
    adjacent_folios,
    batch_stops,
    zap_loop,
    clear_and_wrprotect_keep_ad,
    window_only,
    cursor_lookup
);

/// Where cursors exist and how they line up with the slot API.
fn cursor_lookup<F: PteFormat>() {
    let (_arena, mut frames, mut pt) = setup::<F>();
    assert!(pt.pte_cursor(va(0), va(1)).is_none(), "no table yet");
    let tables = pt.count_tables();
    {
        let c = pt.pte_cursor_alloc(va(10), va(12), &mut frames).unwrap();
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
        assert!(
            (0..2).all(|i| c.get(i).is_none()),
            "a new table starts empty"
        );
    }
    assert_eq!(pt.count_tables(), tables + 3);
    let (slot, table) = {
        let c = pt.pte_cursor(va(510), va(512)).unwrap();
        (c.slot(1), c.table())
    };
    assert_eq!(pt.pte_slot(va(511)), Some(slot));
    assert_eq!(slot.table, table);
    // A 2 MiB block maps the next span: no last-level table there.
    pt.map_range(
        VirtAddr::new(BASE + TABLE_SPAN),
        PhysAddr::new(0x4000_0000),
        TABLE_SPAN,
        Attrs::user(true, false),
        &mut frames,
        MapOptions {
            largest_leaf: Level::L2,
            fold: false,
        },
    )
    .unwrap();
    assert!(pt.pte_cursor(va(N), va(N + 1)).is_none());
    assert!(pt.pte_cursor_alloc(va(N), va(N + 1), &mut frames).is_err());
}

fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> bool {
    std::panic::catch_unwind(f).is_err()
}

#[test]
fn cursor_contracts_panic() {
    // Ranges: crossing a table, empty, misaligned.
    assert!(panics(|| {
        let (_arena, mut frames, mut pt) = setup::<X86_64>();
        let _ = pt.pte_cursor_alloc(va(500), va(513), &mut frames);
    }));
    assert!(panics(|| {
        let (_arena, _frames, mut pt) = setup::<Aarch64>();
        let _ = pt.pte_cursor(va(5), va(5));
    }));
    assert!(panics(|| {
        let (_arena, _frames, mut pt) = setup::<Aarch64>();
        let _ = pt.pte_cursor(va(5) + 8, va(6));
    }));
    // The largest window is fine.
    let (_arena, mut frames, mut pt) = setup::<Aarch64>();
    assert_eq!(
        pt.pte_cursor_alloc(va(0), va(N), &mut frames)
            .unwrap()
            .len(),
        N
    );
    // Runs past the window, in every operation; a batch of 0; many copies
    // of a non-present entry.
    type Case = fn(&mut PteCursor<'_, Aarch64>);
    let cases: [Case; 7] = [
        |c| {
            c.get(4);
        },
        |c| {
            c.set_ptes(
                3,
                page::<Aarch64>(PFN0, Attrs::user(true, false)),
                2,
                &NoFold,
            );
        },
        |c| {
            tuple(c.get_and_clear_ptes(0, 5, &NoFold));
        },
        |c| {
            c.wrprotect_ptes(4, 1, &NoFold);
        },
        |c| {
            c.pte_batch(2, 3, Pfn::new(u64::MAX));
        },
        |c| {
            c.pte_batch(0, 0, Pfn::new(u64::MAX));
        },
        |c| {
            c.set_ptes(0, Pte::NONE, 2, &NoFold);
        },
    ];
    for (k, case) in cases.into_iter().enumerate() {
        assert!(
            panics(|| {
                let (_arena, mut frames, mut pt) = setup::<Aarch64>();
                let mut c = pt.pte_cursor_alloc(va(0), va(4), &mut frames).unwrap();
                c.set_ptes(
                    0,
                    page::<Aarch64>(PFN0, Attrs::user(true, false)),
                    4,
                    &NoFold,
                );
                case(&mut c);
            }),
            "case {k} did not panic"
        );
    }
}

/// pte_batch's contract on its first entry: one mapping a frame at or
/// past the folio's end is refused (a debug build panics, a release build
/// hands back a batch of one).
#[test]
fn pte_batch_refuses_a_first_entry_outside_the_folio() {
    for end in [PFN0, PFN0 - 1] {
        let run = std::panic::catch_unwind(|| {
            let (_arena, mut frames, mut pt) = setup::<Aarch64>();
            let mut c = pt.pte_cursor_alloc(va(0), va(4), &mut frames).unwrap();
            c.set_ptes(
                0,
                page::<Aarch64>(PFN0, Attrs::user(true, false)),
                4,
                &NoFold,
            );
            c.pte_batch(0, 4, Pfn::new(end))
        });
        if cfg!(debug_assertions) {
            assert!(run.is_err(), "folio end {end:#x}: no panic");
        } else {
            assert_eq!(run.ok(), Some(1), "folio end {end:#x}");
        }
    }
    assert_eq!(
        {
            let (_arena, mut frames, mut pt) = setup::<Aarch64>();
            let mut c = pt.pte_cursor_alloc(va(0), va(4), &mut frames).unwrap();
            c.set_ptes(
                0,
                page::<Aarch64>(PFN0, Attrs::user(true, false)),
                4,
                &NoFold,
            );
            c.pte_batch(0, 4, Pfn::new(PFN0 + 1))
        },
        1,
        "a folio of one frame"
    );
}
