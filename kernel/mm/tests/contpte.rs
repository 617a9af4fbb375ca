//! Host tests of arm64 contiguous PTEs (contpte) in the aarch64 batch
//! operations, on an arena: random histories of every cursor operation
//! (runs of folios of several sizes, single-entry changes of each kind,
//! range clears and write-protects, fork's copy into a second table,
//! policy switches) against a per-entry model that ignores the hint, with
//! the fold rules checked after every step:
//!
//! | check                                 | what would catch a bug                   |
//! |---------------------------------------|------------------------------------------|
//! | no half-folded block                  | a partial change that forgot to unfold   |
//! | a folded block is 16 aligned consecutive frames of one folio, identical apart from A/D | a fold over mixed frames, folios or rights |
//! | frames and rights equal the model's   | fold/unfold losing or changing a mapping |
//! | `get` gathers accessed/dirty as the OR of the block, and never loses the model's | a read of one entry of a folded block |
//! | each flush finds its whole block invalid; every fold/unfold of live entries made one | break-before-make out of order, or skipped |
//! | a single change that leaves a uniform block leaves it folded | a missed refold |

// Entries are named by index throughout, as the table numbers them.
#![allow(clippy::needless_range_loop)]

mod common;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

use folium_mm::pgtable::{
    Aarch64, Attrs, FoldEvent, FoldPolicy, Level, PageTable, Pte, PteEnv, PteFormat, PteKind,
};
use folium_mm::{PAGE_SIZE, Pfn, VirtAddr};
use proptest::prelude::*;

use common::Arena;

const BASE: u64 = 0x4000_0000;
/// Entries the histories use: eight blocks.
const N: usize = 128;
const BLOCK: usize = 16;
/// Frame of entry `i` when it maps its "own" frame: `PFN0 + i`.
const PFN0: u64 = 0x9_0000;
/// Frames copy-on-write gives entry `i`: `PFN_COW + i`, a folio each.
const PFN_COW: u64 = 0xa_0000;

type F = Aarch64;

fn va(i: usize) -> VirtAddr {
    VirtAddr::new(BASE + i as u64 * PAGE_SIZE)
}

fn page(pfn: u64, attrs: Attrs) -> Pte {
    F::encode(
        PteKind::Leaf {
            pa: Pfn::new(pfn).phys(),
            attrs,
        },
        Level::L3,
    )
}

/// Frame and attributes of a present entry (the hint is not part of
/// them).
fn leaf(raw: Pte) -> Option<(u64, Attrs)> {
    match F::decode(raw, Level::L3) {
        PteKind::Leaf { pa, attrs } => Some((pa.pfn().as_u64(), attrs)),
        _ => None,
    }
}

fn no_ad(a: Attrs) -> Attrs {
    Attrs {
        young: false,
        dirty: false,
        ..a
    }
}

/// The environment the operations see: folio identities of frames, the
/// policy, and a flush that checks break-before-make.
struct Checker {
    /// Folio id of frame `PFN0 + k` (frames past `N` and COW frames are
    /// folios of their own).
    folio_of: RefCell<Vec<u32>>,
    next_id: Cell<u32>,
    policy: Cell<FoldPolicy>,
    /// The parent's table, read by `flush_now`.
    table: Cell<*const AtomicU64>,
    /// Blocks (first entry) flushed during the current step.
    flushed: RefCell<Vec<usize>>,
    events: RefCell<[u64; 4]>,
}

impl Checker {
    fn entry(&self, i: usize) -> Pte {
        // SAFETY: `table` points at the parent's L3 table in the arena,
        // which outlives the checker's use; entries are atomics, which the
        // cursor also only accesses atomically.
        Pte::from_bits(unsafe { &*self.table.get().add(i) }.load(Ordering::Relaxed))
    }

    /// What the hardware walker does: one entry rewritten in place.
    fn store(&self, i: usize, raw: Pte) {
        // SAFETY: as in `entry`.
        unsafe { &*self.table.get().add(i) }.store(raw.bits(), Ordering::Relaxed);
    }

    fn folio_id(&self, pfn: u64) -> Option<u32> {
        let k = pfn.checked_sub(PFN0)? as usize;
        self.folio_of.borrow().get(k).copied()
    }
}

impl PteEnv for Checker {
    fn flush_now(&self, start: VirtAddr, end: VirtAddr) {
        let first = ((start.as_u64() - BASE) / PAGE_SIZE) as usize;
        assert_eq!(first % BLOCK, 0, "flush of {start:?} is not a block start");
        assert_eq!(
            end - start,
            BLOCK as u64 * PAGE_SIZE,
            "flush is not one block"
        );
        // Either the middle of a break-before-make (every entry invalid),
        // or a folded block, uniform, flushed after its accessed/dirty
        // state grew: never a block with some entries changed.
        let broken = (first..first + BLOCK).all(|k| self.entry(k) == Pte::NONE);
        let e0 = self.entry(first);
        let folded = (0..BLOCK).all(|k| {
            let e = self.entry(first + k);
            F::pte_cont(e)
                && F::pte_pfn(e) == F::pte_pfn(e0) + k as u64
                && F::pte_same_ignoring_ad(e, F::pte_advance(e0, k as u64))
                && F::pte_writable(e) == F::pte_writable(e0)
        });
        assert!(
            broken || folded,
            "block {first} flushed while neither invalid nor a uniform fold: {:x?}",
            (first..first + BLOCK)
                .map(|k| self.entry(k))
                .collect::<Vec<_>>()
        );
        self.flushed.borrow_mut().push(first);
    }

    fn one_folio(&self, first: Pfn, nr: u64) -> bool {
        let id = self.folio_id(first.as_u64());
        id.is_some() && (0..nr).all(|k| self.folio_id(first.as_u64() + k) == id)
    }

    fn fold_policy(&self) -> FoldPolicy {
        self.policy.get()
    }

    fn note(&self, event: FoldEvent, n: u64) {
        let i = event as usize;
        self.events.borrow_mut()[i] += n;
    }
}

const PALETTE: [Attrs; 4] = [
    Attrs {
        young: true,
        dirty: true,
        ..Attrs::user(true, false)
    },
    Attrs {
        young: true,
        ..Attrs::user(false, false)
    },
    Attrs::user(true, true),
    // A PROT_NONE page: present to the mm, invalid to the MMU, never
    // folded.
    Attrs {
        young: true,
        user: false,
        protnone: true,
        ..Attrs::user(false, false)
    },
];

#[derive(Clone, Debug)]
enum Op {
    /// A folio of `1 << order` pages mapped at its aligned place.
    Map {
        i: usize,
        order: u8,
        attrs: usize,
    },
    /// One entry changed: 0 accessed+dirty, 1 write-protect, 2 make
    /// writable, 3 flip exec, 4 copy-on-write to a fresh frame, 5 back to
    /// its own frame with its block neighbour's attributes, 6 cleared, 7
    /// marked young and dirty from what `get` read (the fault path's
    /// round trip).
    Single {
        i: usize,
        kind: u8,
    },
    Clear {
        i: usize,
        nr: usize,
    },
    Wrprotect {
        i: usize,
        nr: usize,
    },
    Fork {
        i: usize,
        max: usize,
    },
    Policy {
        fold: bool,
        per_pte: bool,
    },
    /// Sixteen order-0 folios mapped one entry at a time over an empty
    /// block, at consecutive aligned frames with identical attributes:
    /// everything a fold needs but one folio.
    SmallRun {
        b: usize,
        attrs: usize,
    },
    /// The hardware walker sets accessed (and, through a writable entry,
    /// dirty) on the one entry it used, folded or not.
    Hw {
        i: usize,
        dirty: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..N, prop_oneof![Just(0u8), Just(1), Just(4), Just(5), Just(6)], 0..PALETTE.len())
            .prop_map(|(i, order, attrs)| Op::Map { i, order, attrs }),
        6 => (0..N, 0u8..9).prop_map(|(i, kind)| Op::Single { i, kind }),
        1 => (0..N, 1usize..40).prop_map(|(i, nr)| Op::Clear { i, nr }),
        1 => (0..N, 1usize..40).prop_map(|(i, nr)| Op::Wrprotect { i, nr }),
        2 => (0..N, 1usize..70).prop_map(|(i, max)| Op::Fork { i, max }),
        1 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(fold, per_pte)| Op::Policy { fold, per_pte }),
        3 => (0..N, any::<bool>()).prop_map(|(i, dirty)| Op::Hw { i, dirty }),
        1 => (0..N / BLOCK, 0..PALETTE.len()).prop_map(|(b, attrs)| Op::SmallRun { b: b * BLOCK, attrs }),
    ]
}

/// The model: per entry, frame and attributes (accessed/dirty as last
/// set; folding may add to them, never take away).
type Model = Vec<Option<(u64, Attrs)>>;

/// The end (exclusive) of the folio frame `pfn` belongs to.
fn folio_end(h: &Checker, pfn: u64) -> u64 {
    let id = h.folio_id(pfn);
    let mut end = pfn + 1;
    while id.is_some() && h.folio_id(end) == id {
        end += 1;
    }
    end
}

fn check_table(h: &Checker, raws: &[Pte], model: &Model, what: &str) {
    for b in (0..N).step_by(BLOCK) {
        let folded = (b..b + BLOCK).filter(|&k| F::pte_cont(raws[k])).count();
        assert!(
            folded == 0 || folded == BLOCK,
            "{what}: block {b} half folded ({folded})"
        );
        if folded == BLOCK {
            let (p0, a0) = leaf(raws[b]).unwrap();
            assert_eq!(
                p0 % BLOCK as u64,
                0,
                "{what}: block {b} frame {p0:#x} unaligned"
            );
            assert!(
                h.one_folio(Pfn::new(p0), BLOCK as u64),
                "{what}: block {b} spans folios"
            );
            for k in 0..BLOCK {
                let (p, a) = leaf(raws[b + k]).unwrap();
                assert_eq!(
                    (p, no_ad(a)),
                    (p0 + k as u64, no_ad(a0)),
                    "{what}: block {b}+{k}"
                );
            }
        }
    }
    for (i, (&raw, m)) in raws.iter().zip(model).enumerate() {
        // A protnone entry never carries the hint (bit 52), which
        // `pte_cont` would not show on an invalid entry.
        assert!(
            !F::pte_protnone(raw) || raw.bits() & (1 << 52) == 0,
            "{what}: entry {i} protnone with the hint: {raw:#x}"
        );
        let got = leaf(raw).map(|(p, a)| (p, no_ad(a)));
        assert_eq!(got, m.map(|(p, a)| (p, no_ad(a))), "{what}: entry {i}");
    }
}

/// Accessed/dirty as `get` must report them for entry `i`.
fn gathered(raws: &[Pte], i: usize) -> (bool, bool) {
    let range = if F::pte_cont(raws[i]) {
        let b = i / BLOCK * BLOCK;
        b..b + BLOCK
    } else {
        i..i + 1
    };
    raws[range].iter().fold((false, false), |(y, d), &r| {
        (y || F::pte_young(r), d || F::pte_dirty(r))
    })
}

fn history(ops: &[Op], fold: bool) {
    let arena = Arena::new(64 * PAGE_SIZE as usize);
    let mut frames = arena.frames(usize::MAX);
    let mut pt = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    let mut child = PageTable::<F>::create(&mut frames, arena.linear_map()).unwrap();
    let h = Checker {
        folio_of: RefCell::new((0..N as u32 + 64).map(|k| 1_000_000 + k).collect()),
        next_id: Cell::new(1),
        policy: Cell::new(FoldPolicy {
            fold,
            fork_per_pte: false,
        }),
        table: Cell::new(std::ptr::null()),
        flushed: RefCell::new(Vec::new()),
        events: RefCell::new([0; 4]),
    };
    let mut c = pt.pte_cursor_alloc(va(0), va(N), &mut frames).unwrap();
    let mut d = child.pte_cursor_alloc(va(0), va(N), &mut frames).unwrap();
    h.table.set(arena.linear_map().ptr::<AtomicU64>(c.table()));
    let mut m: Model = vec![None; N];
    let mut md: Model = vec![None; N];
    let raw_of = |c: &folium_mm::pgtable::PteCursor<'_, F>| -> Vec<Pte> {
        (0..N).map(|i| h.entry_of(c, i)).collect()
    };
    for op in ops {
        let before = raw_of(&c);
        let events_before = *h.events.borrow();
        h.flushed.borrow_mut().clear();
        let mut touched = None;
        match *op {
            Op::Map { i, order, attrs } => {
                let nr = 1usize << order;
                let i = i / nr * nr;
                // The frames must be free: unmapped in both tables.
                if m[i..i + nr]
                    .iter()
                    .chain(&md[i..i + nr])
                    .any(Option::is_some)
                {
                    continue;
                }
                let id = h.next_id.get();
                h.next_id.set(id + 1);
                h.folio_of.borrow_mut()[i..i + nr].fill(id);
                let a = PALETTE[attrs];
                c.set_ptes(i, page(PFN0 + i as u64, a), nr, &h);
                for k in 0..nr {
                    m[i + k] = Some((PFN0 + (i + k) as u64, a));
                }
                if fold && h.policy.get().fold && nr >= BLOCK && !a.protnone {
                    for k in i..i + nr {
                        assert!(
                            F::pte_cont(h.entry_of(&c, k)),
                            "entry {k} not folded at map"
                        );
                    }
                }
            }
            Op::Single { i, kind } => {
                let Some((pfn, a)) = m[i] else { continue };
                let new = match kind {
                    0 => Some((
                        pfn,
                        Attrs {
                            young: true,
                            dirty: true,
                            ..a
                        },
                    )),
                    1 => Some((
                        pfn,
                        Attrs {
                            writable: false,
                            ..a
                        },
                    )),
                    2 => Some((
                        pfn,
                        Attrs {
                            writable: true,
                            ..a
                        },
                    )),
                    3 => Some((pfn, Attrs { exec: !a.exec, ..a })),
                    // mprotect to or from PROT_NONE.
                    8 => Some((
                        pfn,
                        Attrs {
                            protnone: !a.protnone,
                            user: a.protnone,
                            ..a
                        },
                    )),
                    4 => Some((PFN_COW + i as u64, a)),
                    5 => {
                        let b = i / BLOCK * BLOCK;
                        let Some(na) = (b..b + BLOCK).filter(|&k| k != i).find_map(|k| m[k]) else {
                            continue;
                        };
                        Some((PFN0 + i as u64, na.1))
                    }
                    7 => Some((
                        pfn,
                        Attrs {
                            young: true,
                            dirty: true,
                            ..a
                        },
                    )),
                    _ => None,
                };
                match new {
                    // The fault path's round trip: what `get` read, marked.
                    Some(_) if kind == 7 => {
                        let got = c.get(i);
                        c.set_ptes(i, F::pte_mkdirty(F::pte_mkyoung(got)), 1, &h);
                    }
                    Some((p, a)) => {
                        c.set_ptes(i, page(p, a), 1, &h);
                    }
                    None => {
                        let got = c.get_and_clear_ptes(i, 1, &h);
                        assert_eq!(leaf(got.first).map(|x| x.0), Some(pfn), "cleared {i}");
                    }
                }
                m[i] = new;
                touched = Some(i / BLOCK * BLOCK);
            }
            Op::Clear { i, nr } => {
                let nr = nr.min(N - i);
                let dirty = m[i..i + nr].iter().flatten().any(|(_, a)| a.dirty);
                let got = c.get_and_clear_ptes(i, nr, &h);
                assert!(got.dirty || !dirty, "clear {i}+{nr} lost dirt");
                m[i..i + nr].fill(None);
            }
            Op::Wrprotect { i, nr } => {
                let nr = nr.min(N - i);
                c.wrprotect_ptes(i, nr, &h);
                for e in m[i..i + nr].iter_mut().flatten() {
                    e.1.writable = false;
                }
            }
            Op::Fork { i, max } => {
                let Some((pfn, a0)) = m[i] else { continue };
                let max = max.min(N - i).min((folio_end(&h, pfn) - pfn) as usize);
                d.get_and_clear_ptes(i, max, &NoCheck);
                md[i..i + max].fill(None);
                let raw = c.get(i);
                let unfolds = h.events.borrow()[FoldEvent::Unfold as usize];
                let nr = if max == 1 {
                    c.copy_one_wrprotect(&mut d, i, raw, &h);
                    1
                } else {
                    c.copy_batch_wrprotect(&mut d, i, max, &h).nr
                };
                assert!((1..=max).contains(&nr));
                // A batch of whole blocks keeps the parent's folds (only a
                // block the batch cuts, or the per-entry mode, unfolds).
                if max > 1
                    && i.is_multiple_of(BLOCK)
                    && (i + max).is_multiple_of(BLOCK)
                    && !h.policy.get().fork_per_pte
                {
                    assert_eq!(
                        h.events.borrow()[FoldEvent::Unfold as usize],
                        unfolds,
                        "fork of whole blocks {i}+{max} unfolded"
                    );
                }
                for k in 0..nr {
                    let (p, a) = m[i + k].expect("a batch covers present entries");
                    assert_eq!(
                        (
                            p,
                            no_ad(Attrs {
                                writable: false,
                                ..a
                            })
                        ),
                        (
                            pfn + k as u64,
                            no_ad(Attrs {
                                writable: false,
                                ..a0
                            })
                        ),
                        "fork batch {i}+{k} is not one run"
                    );
                    m[i + k] = Some((
                        p,
                        Attrs {
                            writable: false,
                            ..a
                        },
                    ));
                    md[i + k] = Some((
                        p,
                        Attrs {
                            writable: false,
                            ..a0
                        },
                    ));
                }
            }
            Op::SmallRun { b, attrs } => {
                if m[b..b + BLOCK]
                    .iter()
                    .chain(&md[b..b + BLOCK])
                    .any(Option::is_some)
                {
                    continue;
                }
                let a = PALETTE[attrs];
                for i in b..b + BLOCK {
                    let id = h.next_id.get();
                    h.next_id.set(id + 1);
                    h.folio_of.borrow_mut()[i] = id;
                    c.set_ptes(i, page(PFN0 + i as u64, a), 1, &h);
                    m[i] = Some((PFN0 + i as u64, a));
                }
                assert!(
                    !F::pte_cont(h.entry_of(&c, b)),
                    "block {b} of small folios folded"
                );
            }
            Op::Hw { i, dirty } => {
                let Some((_, a)) = m[i].as_mut() else {
                    continue;
                };
                let mut raw = F::pte_mkyoung(h.entry_of(&c, i));
                a.young = true;
                if dirty && F::pte_writable(raw) {
                    raw = F::pte_mkdirty(raw);
                    a.dirty = true;
                }
                h.store(i, raw);
            }
            Op::Policy { fold: f, per_pte } => {
                h.policy.set(FoldPolicy {
                    fold: f && fold,
                    fork_per_pte: per_pte,
                });
            }
        }
        let after = raw_of(&c);
        check_table(&h, &after, &m, &format!("parent after {op:?}"));
        check_table(&h, &raw_of(&d), &md, &format!("child after {op:?}"));
        if !fold {
            assert!(
                after.iter().all(|&r| !F::pte_cont(r)),
                "folded with folding off"
            );
        }
        // Accessed/dirty: gathered over a folded block, never lost.
        for i in 0..N {
            if let Some((_, a)) = m[i] {
                let got = c.get(i);
                assert!(!F::pte_cont(got), "get({i}) shows the hint");
                let peeked = c.peek(i);
                assert!(!F::pte_cont(peeked), "peek({i}) shows the hint");
                assert_eq!(F::pte_pfn(peeked), F::pte_pfn(after[i]), "peek({i})");
                assert!(F::pte_present(peeked));
                let (y, dy) = gathered(&after, i);
                assert_eq!((F::pte_young(got), F::pte_dirty(got)), (y, dy), "get({i})");
                assert!((y || !a.young) && (dy || !a.dirty), "entry {i} lost A/D");
            }
        }
        // Dirt newly spread over a block that stays folded invalidates it
        // whole (stale clean per-page entries would fault again).
        if let Op::Single { i, kind: 0 | 7 } = *op {
            let b = i / BLOCK * BLOCK;
            let clean_before = (b..b + BLOCK).any(|k| !F::pte_dirty(before[k]));
            if F::pte_cont(before[i]) && F::pte_cont(after[i]) && clean_before {
                assert!(
                    h.flushed.borrow().contains(&b),
                    "block {b} newly dirty, not flushed"
                );
            }
            // Accessed and dirty only grow here: a folded block takes
            // them in place, never through an unfold and refold.
            if F::pte_cont(before[i]) {
                let ev = *h.events.borrow();
                for e in [FoldEvent::Unfold, FoldEvent::Refold] {
                    assert_eq!(
                        ev[e as usize], events_before[e as usize],
                        "{e:?} while block {b} only grew accessed/dirty"
                    );
                }
            }
        }
        // Every change of the hint on entries live before and after was
        // a break-before-make of its block.
        for b in (0..N).step_by(BLOCK) {
            let live = |r: &[Pte]| (b..b + BLOCK).any(|k| F::pte_present(r[k]));
            let cont = |r: &[Pte]| F::pte_cont(r[b]);
            if live(&before) && live(&after) && cont(&before) != cont(&after) {
                assert!(
                    h.flushed.borrow().contains(&b),
                    "block {b} changed fold unflushed"
                );
            }
        }
        // A single change that left its block uniform leaves it folded.
        if let Some(b) = touched
            && h.policy.get().fold
        {
            let uniform = (0..BLOCK).all(|k| {
                m[b + k].is_some_and(|(p, a)| {
                    let (p0, a0) = m[b].unwrap();
                    p == p0 + k as u64 && no_ad(a) == no_ad(a0) && !a.protnone
                })
            }) && m[b].unwrap().0.is_multiple_of(BLOCK as u64)
                && h.one_folio(Pfn::new(m[b].unwrap().0), BLOCK as u64);
            if uniform {
                assert!(F::pte_cont(after[b]), "block {b} uniform but not refolded");
            }
        }
    }
    // Every unfold and refold was a break-before-make with its flush (a
    // dirty-marking of a folded block may flush without either).
    let ev = *h.events.borrow();
    assert!(
        ev[FoldEvent::Flush as usize]
            >= ev[FoldEvent::Unfold as usize] + ev[FoldEvent::Refold as usize]
    );
}

/// The child table's clears need no checks (nothing is folded there that
/// a partial clear could cut without the parent's checker seeing).
struct NoCheck;

impl PteEnv for NoCheck {
    fn flush_now(&self, _: VirtAddr, _: VirtAddr) {}
    fn one_folio(&self, _: Pfn, _: u64) -> bool {
        false
    }
    fn fold_policy(&self) -> FoldPolicy {
        FoldPolicy::OFF
    }
    fn note(&self, _: FoldEvent, _: u64) {}
}

impl Checker {
    fn entry_of(&self, c: &folium_mm::pgtable::PteCursor<'_, F>, i: usize) -> Pte {
        let _ = self;
        c.raw(i)
    }
}

proptest! {
    #![proptest_config(common::cases(256))]
    #[test]
    fn contpte_histories_keep_the_fold_rules(ops in proptest::collection::vec(op(), 1..80)) {
        history(&ops, true);
    }

    #[test]
    fn histories_with_folding_off_never_fold(ops in proptest::collection::vec(op(), 1..40)) {
        history(&ops, false);
    }
}

/// The rules on a fixed history, so a reader sees them spelled out.
#[test]
fn fold_unfold_refold_by_example() {
    use Op::*;
    history(
        &[
            Map {
                i: 0,
                order: 5,
                attrs: 0,
            },
            Single { i: 3, kind: 1 },
            Single { i: 3, kind: 5 },
            Fork { i: 0, max: 32 },
            Single { i: 20, kind: 4 },
            Clear { i: 24, nr: 3 },
        ],
        true,
    );
}
