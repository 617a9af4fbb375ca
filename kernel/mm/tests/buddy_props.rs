//! Property tests of the buddy allocator and folios against simple models.
//!
//! The test "machine" has RAM with odd, unaligned edges, a one-page hole, a
//! larger hole and a reserved range in the middle (like a kernel image), so
//! carving, merging and the reserved checks all get exercised. Only
//! descriptors are touched, so no RAM arena is needed. The memmap is leaked
//! (`&'static`), as the kernel keeps its own in a static.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::mem::MaybeUninit;

use folium_mm::buddy::BuddyAllocator;
use folium_mm::folio::{Folio, PutOutcome, REF_SATURATED};
use folium_mm::memmap::SafetyCounts;
use folium_mm::memmap::{Memmap, Page, PageFlags};
use folium_mm::{Order, Pfn};
use proptest::prelude::*;

/// Memmap request: deliberately unaligned at both ends.
const SPAN: (u64, u64) = (0x40123, 0x42345);
/// RAM handed to the allocator. Gaps: [0x40800, 0x40801) hole,
/// [0x41a37, 0x41c00) hole, [0x41d00, 0x41d13) reserved.
const RAM: [(u64, u64); 5] = [
    (0x40123, 0x40800),
    (0x40801, 0x41000),
    (0x41000, 0x41a37),
    (0x41c00, 0x41d00),
    (0x41d13, 0x42345),
];

struct Machine {
    buddy: BuddyAllocator<'static>,
    /// Per memmap index: was the frame handed to the allocator?
    ram: Vec<bool>,
    total: u64,
    initial: [u64; Order::COUNT],
}

/// Every memmap a machine made. They are leaked on purpose (the allocator borrows it for `'static`) and kept
/// reachable here, so that Miri's leak check, on for everything else,
/// does not report them.
static MEMMAPS: std::sync::Mutex<Vec<&'static Memmap>> = std::sync::Mutex::new(Vec::new());

impl Machine {
    fn new() -> Machine {
        let (start, end) = (Pfn::new(SPAN.0), Pfn::new(SPAN.1));
        let nr = Memmap::nr_pages_for(start, end) as usize;
        let storage: &'static mut [MaybeUninit<Page>] = Box::leak(Box::new_uninit_slice(nr));
        // SAFETY: the leaked storage is aligned, large enough, lives forever
        // and is reachable only through this memmap.
        let memmap: &'static Memmap = Box::leak(Box::new(unsafe {
            Memmap::init(storage.as_mut_ptr().cast(), start, end)
        }));
        MEMMAPS.lock().unwrap().push(memmap);
        let base = memmap.start_pfn();
        let mut buddy = BuddyAllocator::new(memmap);
        let mut ram = vec![false; nr];
        let mut total = 0;
        for (s, e) in RAM {
            total += buddy.add_free_range(Pfn::new(s), Pfn::new(e));
            for p in s..e {
                ram[(p - base.as_u64()) as usize] = true;
            }
        }
        assert_eq!(total, ram.iter().filter(|&&r| r).count() as u64);
        assert_eq!(buddy.nr_free_pages(), total);
        let initial = buddy.free_per_order();
        assert_eq!(
            initial,
            maximal_layout(&ram),
            "add_free_range is not maximal"
        );
        Machine {
            buddy,
            ram,
            total,
            initial,
        }
    }

    fn idx(&self, pfn: Pfn) -> usize {
        (pfn - self.buddy.memmap().start_pfn()) as usize
    }
}

/// The free-block layout of maximal buddy merging over `free`: a naturally
/// aligned block is one free block iff all its frames are free.
fn maximal_layout(free: &[bool]) -> [u64; Order::COUNT] {
    fn walk(free: &[bool], start: usize, k: usize, out: &mut [u64; Order::COUNT]) {
        let n = 1 << k;
        if free[start..start + n].iter().all(|&f| f) {
            out[k] += 1;
        } else if k > 0 {
            walk(free, start, k - 1, out);
            walk(free, start + n / 2, k - 1, out);
        }
    }
    let mut out = [0; Order::COUNT];
    let max = Order::MAX.pages() as usize;
    for start in (0..free.len()).step_by(max) {
        walk(free, start, Order::MAX.index(), &mut out);
    }
    out
}

/// True if some free block of `order` or larger exists.
fn can_alloc(b: &BuddyAllocator, order: Order) -> bool {
    b.free_per_order()[order.index()..].iter().any(|&n| n > 0)
}

/// Checks `page_folio` for every frame against the model of live blocks.
fn check_page_folio(m: &Machine, live: &BTreeMap<Pfn, Order>) {
    let mm = m.buddy.memmap();
    let mut covered = 0u64;
    for i in 0..mm.nr_pages() {
        let pfn = mm.start_pfn() + i;
        let want = live
            .range(..=pfn)
            .next_back()
            .filter(|(h, o)| pfn - **h < o.pages());
        let got = mm.page_folio(pfn).map(|f| (f.pfn(), f.order()));
        assert_eq!(got, want.map(|(h, o)| (*h, *o)), "page_folio({pfn:?})");
        covered += u64::from(got.is_some());
    }
    assert_eq!(covered, live.values().map(|o| o.pages()).sum::<u64>());
}

/// Checks an allocation of `order` at `pfn` against RAM and the live model,
/// then records it.
fn record_alloc(m: &Machine, live: &mut BTreeMap<Pfn, Order>, pfn: Pfn, order: Order) {
    let n = order.pages();
    assert!(
        pfn.is_order_aligned(order),
        "{pfn:?} not aligned to {order:?}"
    );
    for p in 0..n {
        let i = m.idx(pfn + p);
        assert!(i < m.ram.len() && m.ram[i], "{:?} is not RAM", pfn + p);
    }
    if let Some((h, o)) = live.range(..=pfn).next_back() {
        assert!(*h + o.pages() <= pfn, "overlaps {h:?}/{o:?}");
    }
    if let Some((h, _)) = live.range(pfn..).next() {
        assert!(pfn + n <= *h, "overlaps {h:?}");
    }
    live.insert(pfn, order);
}

fn allocated(live: &BTreeMap<Pfn, Order>) -> u64 {
    live.values().map(|o| o.pages()).sum()
}

/// Small xorshift for shuffles driven by a proptest seed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u8),
    Free(usize),
}

fn order_strategy() -> impl Strategy<Value = u8> {
    // Mostly small orders, but every order appears.
    prop_oneof![3 => 0u8..=3, 2 => 0u8..=10]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => order_strategy().prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

#[derive(Clone, Debug)]
enum FolioOp {
    Alloc(u8),
    Get(usize),
    Put(usize),
}

fn folio_op_strategy() -> impl Strategy<Value = FolioOp> {
    prop_oneof![
        2 => order_strategy().prop_map(FolioOp::Alloc),
        2 => any::<usize>().prop_map(FolioOp::Get),
        3 => any::<usize>().prop_map(FolioOp::Put),
    ]
}

/// Per-folio model state for `folio_checks_match_model`.
struct FolioModel {
    refs: u32,
    maps: u32,
    /// The last put found it mapped: refcount saturated for good.
    pinned: bool,
}

#[derive(Clone, Debug)]
enum CheckedOp {
    Alloc(u8),
    Get(usize),
    Put(usize),
    Map(usize, u8),
    Unmap(usize, u8),
    SetExclusive(usize, u64),
}

fn checked_op_strategy() -> impl Strategy<Value = CheckedOp> {
    prop_oneof![
        2 => order_strategy().prop_map(CheckedOp::Alloc),
        1 => any::<usize>().prop_map(CheckedOp::Get),
        3 => any::<usize>().prop_map(CheckedOp::Put),
        1 => (any::<usize>(), 0u8..4).prop_map(|(s, n)| CheckedOp::Map(s, n)),
        1 => (any::<usize>(), 0u8..4).prop_map(|(s, n)| CheckedOp::Unmap(s, n)),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(s, p)| CheckedOp::SetExclusive(s, p)),
    ]
}

proptest! {
    #![proptest_config(if cfg!(miri) {
        // Fewer cases under Miri, and no regression file (its isolation
        // has no working directory), as `common::cases` does for the
        // other tests.
        ProptestConfig { cases: 1, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig::with_cases(64)
    })]

    /// Random alloc/free at mixed orders against a model of live blocks.
    #[test]
    fn alloc_free_matches_model(ops in prop::collection::vec(op_strategy(), 1..300)) {
        let mut m = Machine::new();
        let mut live: BTreeMap<Pfn, Order> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc(k) => {
                    let order = Order::of(k);
                    let possible = can_alloc(&m.buddy, order);
                    match m.buddy.alloc(order) {
                        None => prop_assert!(!possible, "None with a free block >= {order:?}"),
                        Some(pfn) => {
                            prop_assert!(possible);
                            record_alloc(&m, &mut live, pfn, order);
                            let last = pfn + (order.pages() - 1);
                            let f = m.buddy.memmap().page_folio(last).unwrap();
                            prop_assert_eq!((f.pfn(), f.order()), (pfn, order));
                        }
                    }
                }
                Op::Free(sel) => {
                    if live.is_empty() {
                        continue;
                    }
                    let (&pfn, &order) = live.iter().nth(sel % live.len()).unwrap();
                    live.remove(&pfn);
                    prop_assert_eq!(m.buddy.free(pfn, order), Ok(()));
                    prop_assert!(m.buddy.memmap().page_folio(pfn).is_none());
                }
            }
            prop_assert_eq!(m.buddy.nr_free_pages() + allocated(&live), m.total);
        }
        check_page_folio(&m, &live);
        for (pfn, order) in std::mem::take(&mut live) {
            prop_assert_eq!(m.buddy.free(pfn, order), Ok(()));
        }
        prop_assert_eq!(m.buddy.nr_free_pages(), m.total);
        prop_assert_eq!(m.buddy.free_per_order(), m.initial);
    }

    /// Folio references: get/put against a refcount model; a folio is freed
    /// exactly when its last reference goes.
    #[test]
    fn folio_refcounts_match_model(ops in prop::collection::vec(folio_op_strategy(), 1..300)) {
        let mut m = Machine::new();
        let mut handles: Vec<Folio> = Vec::new();
        let mut refs: HashMap<Pfn, u32> = HashMap::new();
        let mut live: BTreeMap<Pfn, Order> = BTreeMap::new();
        for op in ops {
            match op {
                FolioOp::Alloc(k) => {
                    let order = Order::of(k);
                    let possible = can_alloc(&m.buddy, order);
                    match m.buddy.alloc_folio(order) {
                        None => prop_assert!(!possible),
                        Some(f) => {
                            let v = m.buddy.memmap().folio(&f);
                            prop_assert_eq!((v.order(), v.ref_count(), v.mapcount()), (order, 1, 0));
                            prop_assert!(!v.test_anon() && !v.test_dirty() && !v.test_young());
                            record_alloc(&m, &mut live, f.pfn(), order);
                            refs.insert(f.pfn(), 1);
                            handles.push(f);
                        }
                    }
                }
                FolioOp::Get(sel) if !handles.is_empty() => {
                    let f = &handles[sel % handles.len()];
                    let g = m.buddy.memmap().folio_get(f);
                    let r = refs.get_mut(&g.pfn()).unwrap();
                    *r += 1;
                    prop_assert_eq!(m.buddy.memmap().folio(&g).ref_count(), *r);
                    handles.push(g);
                }
                FolioOp::Put(sel) if !handles.is_empty() => {
                    let f = handles.swap_remove(sel % handles.len());
                    let pfn = f.pfn();
                    let r = refs.get_mut(&pfn).unwrap();
                    *r -= 1;
                    let last = *r == 0;
                    let want = if last { PutOutcome::Freed } else { PutOutcome::Held };
                    prop_assert_eq!(m.buddy.folio_put(f), want);
                    if last {
                        refs.remove(&pfn);
                        live.remove(&pfn);
                        prop_assert!(m.buddy.memmap().page_folio(pfn).is_none());
                    } else {
                        let v = m.buddy.memmap().page_folio(pfn).unwrap();
                        prop_assert_eq!(v.ref_count(), refs[&pfn]);
                    }
                }
                FolioOp::Get(_) | FolioOp::Put(_) => {}
            }
            prop_assert_eq!(m.buddy.nr_free_pages() + allocated(&live), m.total);
        }
        check_page_folio(&m, &live);
        for f in handles {
            prop_assert!(!m.buddy.folio_put(f).refused());
        }
        prop_assert_eq!(m.buddy.nr_free_pages(), m.total);
        prop_assert_eq!(m.buddy.free_per_order(), m.initial);
        prop_assert_eq!(m.buddy.memmap().safety().snapshot(), SafetyCounts::default());
    }

    /// Folios with mappings and per-page flags against a model, including
    /// the bugs the checks contain: a last put on a mapped folio pins it
    /// (never freed), an unmap past 0 is refused, and no per-page flag
    /// survives a free on any page of the block.
    #[test]
    fn folio_checks_match_model(ops in prop::collection::vec(checked_op_strategy(), 1..200)) {
        let mut m = Machine::new();
        let mm = m.buddy.memmap();
        let mut handles: Vec<Folio> = Vec::new();
        let mut model: HashMap<Pfn, FolioModel> = HashMap::new();
        let mut live: BTreeMap<Pfn, Order> = BTreeMap::new();
        let mut exclusive: HashSet<Pfn> = HashSet::new();
        let mut want = SafetyCounts::default();
        for op in ops {
            match op {
                CheckedOp::Alloc(k) => {
                    if let Some(f) = m.buddy.alloc_folio(Order::of(k)) {
                        record_alloc(&m, &mut live, f.pfn(), Order::of(k));
                        model.insert(f.pfn(), FolioModel { refs: 1, maps: 0, pinned: false });
                        handles.push(f);
                    }
                }
                CheckedOp::Get(sel) if !handles.is_empty() => {
                    let g = mm.folio_get(&handles[sel % handles.len()]);
                    let f = model.get_mut(&g.pfn()).unwrap();
                    if !f.pinned {
                        f.refs += 1;
                    }
                    handles.push(g);
                }
                CheckedOp::Map(sel, nr) if !handles.is_empty() => {
                    let h = &handles[sel % handles.len()];
                    let got = mm.folio(h).add_mapcount(u32::from(nr));
                    let f = model.get_mut(&h.pfn()).unwrap();
                    f.maps += u32::from(nr);
                    prop_assert_eq!(got, f.maps);
                }
                CheckedOp::Unmap(sel, nr) if !handles.is_empty() => {
                    let h = &handles[sel % handles.len()];
                    let got = mm.folio(h).sub_mapcount(u32::from(nr));
                    let f = model.get_mut(&h.pfn()).unwrap();
                    if u32::from(nr) > f.maps {
                        want.map_underflow += 1;
                    } else {
                        f.maps -= u32::from(nr);
                    }
                    prop_assert_eq!(got, f.maps);
                }
                CheckedOp::SetExclusive(sel, page) if !handles.is_empty() => {
                    let h = &handles[sel % handles.len()];
                    let v = mm.folio(h);
                    let pfn = h.pfn() + page % v.nr_pages();
                    v.set_page_anon_exclusive(pfn);
                    exclusive.insert(pfn);
                }
                CheckedOp::Put(sel) if !handles.is_empty() => {
                    let h = handles.swap_remove(sel % handles.len());
                    let (pfn, order) = (h.pfn(), mm.folio(&h).order());
                    let f = model.get_mut(&pfn).unwrap();
                    let expect = if f.pinned {
                        want.put_saturated += 1;
                        PutOutcome::Saturated
                    } else if f.refs > 1 {
                        f.refs -= 1;
                        PutOutcome::Held
                    } else if f.maps != 0 {
                        want.freed_mapped += 1;
                        f.pinned = true;
                        PutOutcome::Mapped { mapcount: f.maps }
                    } else {
                        PutOutcome::Freed
                    };
                    prop_assert_eq!(m.buddy.folio_put(h), expect);
                    if expect.freed() {
                        model.remove(&pfn);
                        live.remove(&pfn);
                        for i in 0..order.pages() {
                            exclusive.remove(&(pfn + i));
                            let flags = mm.page(pfn + i).flags();
                            prop_assert!(!flags.intersects(PageFlags::PER_PAGE_MASK));
                        }
                    } else {
                        let v = mm.page_folio(pfn).unwrap();
                        let rc = if model[&pfn].pinned { REF_SATURATED } else { model[&pfn].refs };
                        prop_assert_eq!(v.ref_count(), rc);
                    }
                }
                _ => {}
            }
            prop_assert_eq!(m.buddy.nr_free_pages() + allocated(&live), m.total);
            prop_assert_eq!(mm.safety().snapshot(), want);
        }
        check_page_folio(&m, &live);
        for i in 0..mm.nr_pages() {
            let pfn = mm.start_pfn() + i;
            prop_assert_eq!(mm.page(pfn).test_anon_exclusive(), exclusive.contains(&pfn));
        }
        // Tear down: unmap, unpin, put; everything merges back.
        for h in handles.drain(..) {
            let f = model.get_mut(&h.pfn()).unwrap();
            if !f.pinned {
                let v = mm.folio(&h);
                prop_assert_eq!(v.sub_mapcount(f.maps), 0);
                f.maps = 0;
            }
            // A pinned folio's handles are absorbed; unpin it below.
            let _ = m.buddy.folio_put(h);
        }
        for (&pfn, f) in &model {
            if f.pinned {
                let v = mm.page_folio(pfn).unwrap();
                prop_assert_eq!(v.ref_count(), REF_SATURATED);
                // SAFETY: every handle is gone and the mappings were only
                // counts; we take back the single reference below.
                unsafe { v.reset_counts_for_tests(1, 0) };
                // SAFETY: the reference reset_counts_for_tests left us.
                let last = unsafe { Folio::from_raw(pfn) };
                prop_assert_eq!(m.buddy.folio_put(last), PutOutcome::Freed);
            }
        }
        prop_assert_eq!(m.buddy.nr_free_pages(), m.total);
        prop_assert_eq!(m.buddy.free_per_order(), m.initial);
        prop_assert!(mm.pages().iter().all(|p| !p.test_anon_exclusive()));
    }

    /// Exhausts memory at mixed orders, then frees everything in random
    /// order: the maximal initial layout must come back.
    #[test]
    fn exhaust_then_free_in_random_order(
        orders in prop::collection::vec(order_strategy(), 1..32),
        seed in any::<u64>(),
    ) {
        let mut m = Machine::new();
        let mut live: BTreeMap<Pfn, Order> = BTreeMap::new();
        let mut i = 0;
        while m.buddy.nr_free_pages() > 0 {
            let want = Order::of(orders[i % orders.len()]);
            i += 1;
            let order = match m.buddy.alloc(want) {
                Some(pfn) => {
                    record_alloc(&m, &mut live, pfn, want);
                    continue;
                }
                None => {
                    prop_assert!(!can_alloc(&m.buddy, want));
                    // Fall back to what is left, so the loop always ends.
                    m.buddy.largest_free_order().unwrap()
                }
            };
            let pfn = m.buddy.alloc(order).unwrap();
            record_alloc(&m, &mut live, pfn, order);
        }
        prop_assert_eq!(allocated(&live), m.total);
        for k in Order::all() {
            prop_assert_eq!(m.buddy.alloc(k), None);
        }
        prop_assert!(m.buddy.alloc_folio(Order::of(0)).is_none());
        check_page_folio(&m, &live);
        let mut blocks: Vec<(Pfn, Order)> = live.into_iter().collect();
        shuffle(&mut blocks, seed);
        for (pfn, order) in blocks {
            prop_assert_eq!(m.buddy.free(pfn, order), Ok(()));
        }
        prop_assert_eq!(m.buddy.nr_free_pages(), m.total);
        prop_assert_eq!(m.buddy.free_per_order(), m.initial);
    }
}

/// The free layout after setup is exactly the maximal one, and reserved
/// frames and holes are never handed out even when memory is exhausted.
#[test]
fn holes_and_reserved_frames_are_never_allocated() {
    let mut m = Machine::new();
    let mut live = BTreeMap::new();
    while let Some(pfn) = m.buddy.alloc(Order::of(0)) {
        record_alloc(&m, &mut live, pfn, Order::of(0));
    }
    assert_eq!(live.len() as u64, m.total);
    for (pfn, order) in live {
        m.buddy.free(pfn, order).unwrap();
    }
    assert_eq!(m.buddy.free_per_order(), m.initial);
}

/// Every page of a live folio of every order finds its head, including a
/// folio of order MAX.
#[test]
fn page_folio_covers_every_order() {
    let mut m = Machine::new();
    let mut live = BTreeMap::new();
    let mut folios = Vec::new();
    for k in Order::all().rev() {
        let f = m.buddy.alloc_folio(k).unwrap();
        record_alloc(&m, &mut live, f.pfn(), k);
        folios.push(f);
    }
    check_page_folio(&m, &live);
    for f in folios {
        assert_eq!(m.buddy.folio_put(f), PutOutcome::Freed);
    }
    assert_eq!(m.buddy.free_per_order(), m.initial);
}
