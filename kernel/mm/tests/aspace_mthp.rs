//! Host tests of anonymous memory in large folios on both PTE formats: the
//! mTHP fault policy (largest allowed order that fits, fallback when the
//! range is populated or the allocation fails, the counters), the shared
//! zero page, copy-on-write of large folios one page at a time, partial
//! munmap / mprotect / MADV_DONTNEED of a folio, and random histories of
//! all of it checked against a per-page model after every step.

use std::collections::{BTreeMap, HashMap};

use folium_mm::aspace::{Access, AddressSpace, FaultError};
use folium_mm::folio::Folio;
use folium_mm::pgtable::{Aarch64, Attrs, FoldPolicy, Level, Pte, PteFormat, PteKind, X86_64};
use folium_mm::tlb::Asid;
use folium_mm::vma::{Prot, Vma, VmaError, VmaKind};
use folium_mm::{Order, PAGE_SIZE, Pfn};
use proptest::prelude::*;

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, folio_at, new_space, read_u64, set_sizes, va, write_u64};

/// 32 MiB of RAM: room for several 2 MiB folios and their copies.
const FRAMES: u64 = 8192;

fn exclusive(env: &HostEnv, a: &AddressSpace<impl PteFormat>, page: u64) -> bool {
    let (pfn, _) = a.translate(va(page)).unwrap();
    env.memmap.page_folio(pfn).unwrap().page_anon_exclusive(pfn)
}

fn fault_takes_the_largest_order_that_fits<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(2, "always"), (4, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    // 0..40: a 64 KiB range fits at 0..16 and 16..32, only 16 KiB ones in
    // 32..40.
    anon(&mut a, 0, 40);
    write_u64(&mut env, &mut a, va(5), 5);
    let (head, order, r, m) = folio_at(&env, &a, 5);
    assert_eq!((order, r, m), (4, 16, 16), "one 64K folio, one ref per PTE");
    for p in 0..16 {
        let (pfn, attrs) = a.translate(va(p)).unwrap();
        assert_eq!(pfn, head + p, "page {p} maps its frame of the folio");
        assert!(attrs.writable && attrs.dirty && attrs.user);
        assert!(exclusive(&env, &a, p));
        assert_eq!(
            read_u64(&mut env, &mut a, va(p)),
            if p == 5 { 5 } else { 0 }
        );
    }
    assert!(a.translate(va(16)).is_none(), "nothing past the folio");
    assert_eq!(env.thp.counters(4), Some((1, 0)));
    // Past 32 only 16 KiB fits.
    write_u64(&mut env, &mut a, va(37), 37);
    assert_eq!(folio_at(&env, &a, 37).1, 2);
    assert!(a.translate(va(36)).is_some() && a.translate(va(40)).is_none());
    assert_eq!(env.thp.counters(2), Some((1, 0)));
    // A read maps the zero page; a 16 KiB range around it is no longer
    // empty, so the next write there takes order 0 (and that is not a
    // fallback: Linux counts only failed allocations).
    assert_eq!(read_u64(&mut env, &mut a, va(18)), 0);
    assert_eq!(a.translate(va(18)).unwrap().0, env.zero);
    assert!(!a.translate(va(18)).unwrap().1.writable);
    assert_eq!(a.rss(), 20, "the zero page is not resident");
    write_u64(&mut env, &mut a, va(17), 17);
    assert_eq!(folio_at(&env, &a, 17).1, 0);
    // The first write to the zero page replaces it with a private page.
    write_u64(&mut env, &mut a, va(18), 18);
    let (_, order, r, m) = folio_at(&env, &a, 18);
    assert_eq!((order, r, m), (0, 1, 1));
    assert!(exclusive(&env, &a, 18));
    assert_eq!(env.thp.counters(2), Some((1, 0)));
    assert_eq!(env.thp.counters(4), Some((1, 0)));
    assert_eq!(a.rss(), a.resident_pages());
    env.walk_all(&a);
    a.teardown(&mut env);
}

on_both_formats!(fault_takes_the_largest_order_that_fits: fault_takes_the_largest_order_that_fits_x86_64, fault_takes_the_largest_order_that_fits_aarch64);

#[test]
fn policy_follows_the_knobs_and_madvise() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<Aarch64>(&mut env, 1);
    anon(&mut a, 0, 1024);
    // Linux's defaults: 2 MiB inherits the top level's `madvise`.
    set_sizes(&env, "madvise", &[(9, "inherit")]);
    write_u64(&mut env, &mut a, va(3), 1);
    assert_eq!(folio_at(&env, &a, 3).1, 0, "not advised: small");
    a.advise_hugepage(va(512), va(1024), true).unwrap();
    write_u64(&mut env, &mut a, va(600), 1);
    assert_eq!(folio_at(&env, &a, 600).1, 9, "advised: 2 MiB");
    assert_eq!(env.thp.counters(9), Some((1, 0)));
    // MADV_NOHUGEPAGE wins over `always`.
    a.unmap(&mut env, va(512), va(1024)).unwrap();
    anon(&mut a, 512, 512);
    a.advise_hugepage(va(512), va(1024), false).unwrap();
    set_sizes(&env, "always", &[(9, "inherit"), (4, "always")]);
    write_u64(&mut env, &mut a, va(700), 1);
    assert_eq!(folio_at(&env, &a, 700).1, 0);
    a.teardown(&mut env);
}

#[test]
fn allocation_failure_falls_back_order_by_order_and_counts() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<X86_64>(&mut env, 1);
    anon(&mut a, 0, 512);
    set_sizes(
        &env,
        "never",
        &[(2, "always"), (4, "always"), (9, "always")],
    );
    // Take every block of order 4 and above: what is left (one block of
    // each smaller order) holds the tables and a 16 KiB folio, but no
    // 64 KiB or 2 MiB one.
    let mut held = Vec::new();
    for o in (4..=10).rev() {
        while let Some(f) = env.buddy.alloc_folio(Order::of(o)) {
            held.push(f);
        }
    }
    write_u64(&mut env, &mut a, va(100), 1);
    assert_eq!(folio_at(&env, &a, 100).1, 2, "fell back to 16 KiB");
    assert_eq!(env.thp.counters(9), Some((0, 1)));
    assert_eq!(env.thp.counters(4), Some((0, 1)));
    assert_eq!(env.thp.counters(2), Some((1, 0)));
    // With nothing left at all the fault reports out of memory and maps
    // nothing.
    let mut small = Vec::new();
    while let Some(f) = env.buddy.alloc_folio(Order::of(0)) {
        small.push(f);
    }
    assert_eq!(
        a.handle_fault(&mut env, va(300), Access::Write),
        Err(FaultError::OutOfMemory)
    );
    assert!(a.translate(va(300)).is_none());
    for f in small.into_iter().chain(held) {
        put(&mut env, f);
    }
    a.teardown(&mut env);
}

fn put(env: &mut HostEnv, f: Folio) {
    assert!(env.buddy.folio_put(f).freed());
}

fn cow_of_a_large_folio<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut parent = new_space::<F>(&mut env, 1);
    anon(&mut parent, 0, 16);
    for p in 0..16 {
        write_u64(&mut env, &mut parent, va(p), 100 + p);
    }
    let (head, order, ..) = folio_at(&env, &parent, 0);
    assert_eq!(order, 4);
    env.walk_all(&parent);
    let mut child = parent.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    env.walk_all(&child);
    assert_eq!(folio_at(&env, &parent, 0), (head, 4, 32, 32));
    assert!((0..16).all(|p| !exclusive(&env, &parent, p)));
    // The child writes one page: that page alone is copied.
    write_u64(&mut env, &mut child, va(3), 7);
    let (cpfn, _) = child.translate(va(3)).unwrap();
    assert_ne!(cpfn, head + 3);
    assert_eq!(folio_at(&env, &child, 3).1, 0, "the copy is small");
    assert!(exclusive(&env, &child, 3));
    for p in (0..16).filter(|&p| p != 3) {
        assert_eq!(child.translate(va(p)).unwrap().0, head + p, "still shared");
    }
    assert_eq!(folio_at(&env, &parent, 0), (head, 4, 31, 31));
    assert_eq!(read_u64(&mut env, &mut parent, va(3)), 103);
    assert_eq!(read_u64(&mut env, &mut child, va(3)), 7);
    // The parent writes the same page: the folio is still mapped by the
    // child, so it copies too.
    write_u64(&mut env, &mut parent, va(3), 8);
    assert_ne!(parent.translate(va(3)).unwrap().0, head + 3);
    assert_eq!(folio_at(&env, &parent, 0), (head, 4, 30, 30));
    env.walk_all(&parent);
    env.walk_all(&child);
    child.teardown(&mut env);
    // Now every mapping of the folio is the parent's (15 pages): a write
    // reuses the page in place and makes it exclusive again.
    assert_eq!(folio_at(&env, &parent, 0), (head, 4, 15, 15));
    write_u64(&mut env, &mut parent, va(9), 9);
    assert_eq!(parent.translate(va(9)).unwrap().0, head + 9, "reused");
    assert!(exclusive(&env, &parent, 9));
    assert!(!exclusive(&env, &parent, 10), "only the written page");
    for p in 0..16 {
        let want = match p {
            3 => 8,
            9 => 9,
            _ => 100 + p,
        };
        assert_eq!(read_u64(&mut env, &mut parent, va(p)), want);
    }
    env.walk_all(&parent);
    parent.teardown(&mut env);
}

on_both_formats!(cow_of_a_large_folio: cow_of_a_large_folio_x86_64, cow_of_a_large_folio_aarch64);

fn partial_operations_on_a_large_folio<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(5, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 32);
    for p in 0..32 {
        write_u64(&mut env, &mut a, va(p), 1000 + p);
    }
    let (head, order, ..) = folio_at(&env, &a, 0);
    assert_eq!(order, 5);
    env.walk_all(&a);
    // munmap of pages 4..8: the rest stays mapped and intact.
    a.unmap(&mut env, va(4), va(8)).unwrap();
    assert_eq!(folio_at(&env, &a, 0), (head, 5, 28, 28));
    assert!((4..8).all(|p| a.translate(va(p)).is_none()));
    assert_eq!(
        a.handle_fault(&mut env, va(5), Access::Read),
        Err(FaultError::Unmapped)
    );
    // mprotect of pages 10..12 to read-only: only those lose write.
    a.protect(&mut env, va(10), va(12), Prot::READ).unwrap();
    for p in (0..32).filter(|p| !(4..8).contains(p)) {
        let w = a.translate(va(p)).unwrap().1.writable;
        assert_eq!(w, !(10..12).contains(&p), "page {p}");
    }
    assert_eq!(
        a.handle_fault(&mut env, va(10), Access::Write),
        Err(FaultError::Protection)
    );
    a.protect(&mut env, va(10), va(12), Prot::RW).unwrap();
    write_u64(&mut env, &mut a, va(10), 10);
    assert_eq!(
        a.translate(va(10)).unwrap().0,
        head + 10,
        "exclusive: reused"
    );
    // MADV_DONTNEED of 20..24 reads back zeroes (fresh small pages).
    env.walk_all(&a);
    a.dontneed(&mut env, va(20), va(24)).unwrap();
    assert_eq!(folio_at(&env, &a, 0), (head, 5, 24, 24));
    for p in 20..24 {
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 0);
    }
    write_u64(&mut env, &mut a, va(21), 5);
    assert_eq!(folio_at(&env, &a, 21).1, 0, "the range is no longer empty");
    for p in [0, 3, 8, 11, 19, 24, 31] {
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 1000 + p);
    }
    assert_eq!(a.rss(), a.resident_pages());
    // Unmapping the folio's pages one run at a time frees it with the last.
    env.walk_all(&a);
    let before = env.free_pages();
    a.unmap(&mut env, va(0), va(4)).unwrap();
    a.unmap(&mut env, va(8), va(20)).unwrap();
    assert_eq!(env.free_pages(), before, "still 8 pages mapped");
    a.unmap(&mut env, va(24), va(32)).unwrap();
    assert!(
        env.memmap
            .page_folio(head)
            .is_none_or(|f| f.ref_count() == 0)
    );
    a.teardown(&mut env);
}

on_both_formats!(partial_operations_on_a_large_folio: partial_operations_on_a_large_folio_x86_64, partial_operations_on_a_large_folio_aarch64);

#[test]
fn the_zero_page_is_shared_and_never_counted() {
    let mut env = HostEnv::new(FRAMES);
    let free0 = env.free_pages();
    let mut a = new_space::<X86_64>(&mut env, 1);
    anon(&mut a, 0, 8);
    for p in 0..8 {
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 0);
        assert_eq!(a.translate(va(p)).unwrap().0, env.zero);
    }
    assert_eq!(env.free_pages(), free0 - env.tables, "tables, no pages");
    assert_eq!((a.rss(), a.resident_pages()), (0, 0));
    let mut c = a.fork(&mut env, None).unwrap();
    c.asid = Asid(2);
    assert_eq!(c.translate(va(2)).unwrap().0, env.zero);
    write_u64(&mut env, &mut c, va(2), 5);
    assert_eq!(read_u64(&mut env, &mut a, va(2)), 0);
    assert_eq!(read_u64(&mut env, &mut c, va(2)), 5);
    // The zero page itself is untouched and holds no references.
    let mut z = [0u8; 8];
    assert!(a.read_bytes(&env, va(2), &mut z));
    assert_eq!(z, [0; 8]);
    assert_eq!(env.memmap.page_folio(env.zero).unwrap().ref_count(), 1);
    assert_eq!(env.memmap.page_folio(env.zero).unwrap().mapcount(), 0);
    env.walk_all(&a);
    env.walk_all(&c);
    c.teardown(&mut env);
    a.teardown(&mut env);
}

/// The raw L3 entry mapping page `page` of `a` (0 if no table).
fn raw_pte<F: PteFormat>(a: &AddressSpace<F>, page: u64) -> Pte {
    let pt = a.page_table();
    pt.pte_slot(va(page)).map_or(Pte::NONE, |s| pt.pte(s))
}

/// `PROT_NONE` over a 64 KiB folio: the entries keep their folio (same
/// frames, refcount and mapcount, contents) but are invalid to the MMU
/// (bit 0 of the raw entry, both formats; arm64 unfolds the block and
/// never folds protnone entries), no translation may stay cached, fork
/// shares them copy-on-write, restoring the rights brings the data back
/// (and refolds on arm64), and unmapping frees everything.
fn prot_none_keeps_the_folio<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let free0 = env.free_pages();
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 32);
    for p in 0..16 {
        write_u64(&mut env, &mut a, va(p), 1000 + p);
    }
    let (head, order, r, m) = folio_at(&env, &a, 0);
    assert_eq!((order, r, m), (4, 16, 16));
    let folded = |a: &AddressSpace<F>| (0..16).filter(|&p| F::pte_cont(raw_pte(a, p))).count();
    let arm = F::CONT_ENTRIES > 1;
    assert_eq!(folded(&a), if arm { 16 } else { 0 });
    env.walk_all(&a);
    a.protect(&mut env, va(0), va(32), Prot::NONE).unwrap();
    assert!(env.tlb.cached(Asid(1)).is_empty(), "PROT_NONE flushed");
    env.walk_all(&a);
    assert!(
        env.tlb.cached(Asid(1)).is_empty(),
        "nothing the MMU can cache"
    );
    for p in 0..16 {
        let raw = raw_pte(&a, p);
        assert_eq!(raw.bits() & 1, 0, "page {p}: {raw:#x} is valid to the MMU");
        assert!(F::pte_present(raw) && F::pte_protnone(raw), "{raw:#x}");
        assert!(!F::is_present(raw, Level::L3));
        assert_eq!(F::pte_pfn(raw), head + p);
        let (_, at) = a.translate(va(p)).unwrap();
        assert!(at.protnone && !at.user && !at.writable && !at.exec);
        assert_eq!(
            a.handle_fault(&mut env, va(p), Access::Read),
            Err(FaultError::Protection)
        );
    }
    assert_eq!(folded(&a), 0, "protnone entries are never folded");
    assert_eq!(folio_at(&env, &a, 3), (head, 4, 16, 16), "folio kept");
    assert_eq!((a.rss(), a.resident_pages()), (16, 16));
    // fork shares the protnone pages.
    let mut c = a.fork(&mut env, None).unwrap();
    c.asid = Asid(2);
    assert_eq!(folio_at(&env, &a, 3), (head, 4, 32, 32), "fork shares");
    assert!(F::pte_protnone(raw_pte(&c, 7)));
    assert_eq!(c.rss(), 16);
    // Back to read-write: same frames, same bytes, copy-on-write.
    a.protect(&mut env, va(0), va(32), Prot::RW).unwrap();
    for p in 0..16 {
        let (pfn, at) = a.translate(va(p)).unwrap();
        assert_eq!(pfn, head + p);
        assert!(at.user && !at.protnone && !at.writable, "still shared");
        assert_eq!(raw_pte(&a, p).bits() & 1, 1);
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 1000 + p);
    }
    assert_eq!(folded(&a), if arm { 16 } else { 0 }, "refolded");
    write_u64(&mut env, &mut a, va(2), 7);
    assert_ne!(a.translate(va(2)).unwrap().0, head + 2, "copied on write");
    c.protect(&mut env, va(0), va(32), Prot::READ).unwrap();
    assert_eq!(read_u64(&mut env, &mut c, va(2)), 1002, "the child's copy");
    c.teardown(&mut env);
    // munmap of protnone entries frees the folio.
    a.protect(&mut env, va(0), va(32), Prot::NONE).unwrap();
    a.unmap(&mut env, va(0), va(32)).unwrap();
    assert_eq!((a.rss(), a.resident_pages()), (0, 0));
    a.teardown(&mut env);
    assert_eq!(env.free_pages(), free0, "every frame back");
}

on_both_formats!(prot_none_keeps_the_folio: prot_none_keeps_the_folio_x86_64, prot_none_keeps_the_folio_aarch64);

// ---------------------------------------------------------------------
// Random histories against a per-page model.
// ---------------------------------------------------------------------

/// Pages in the window the histories use: two 2 MiB spans.
const WINDOW: u64 = 1024;

#[derive(Debug, Clone)]
enum Op {
    /// Top-level knob and one per-size knob.
    Policy {
        top: u8,
        order: u8,
        setting: u8,
    },
    /// `mmap(MAP_FIXED)`: replaces whatever was there.
    Mmap {
        space: usize,
        page: u64,
        n: u64,
        huge: bool,
    },
    /// Stores `value + i` into pages `page..page + n`.
    Touch {
        space: usize,
        page: u64,
        n: u64,
        value: u64,
    },
    Read {
        space: usize,
        page: u64,
    },
    Unmap {
        space: usize,
        page: u64,
        n: u64,
    },
    /// `mprotect` to `PROT_NONE` (0), `PROT_READ` (1) or read-write (2).
    Protect {
        space: usize,
        page: u64,
        n: u64,
        prot: u8,
    },
    DontNeed {
        space: usize,
        page: u64,
        n: u64,
    },
    Fork {
        space: usize,
    },
    Exit {
        space: usize,
    },
    /// The deferred-split scan over every space alive.
    Split,
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        // Small, anywhere.
        (0..WINDOW, 1u64..20),
        // Aligned to a folio size, so large folios fit.
        (0..WINDOW / 16, 1u64..5).prop_map(|(p, k)| (p * 16, k * 16)),
        // Big.
        (0..WINDOW / 2, 64u64..600),
        // A whole 2 MiB span, where a PMD-sized folio fits.
        (0..2u64, Just(512u64)).prop_map(|(k, n)| (k * 512, n)),
    ]
    .prop_map(|(p, n)| (p, n.min(WINDOW - p).max(1)))
}

fn op() -> impl Strategy<Value = Op> {
    let space = 0usize..4;
    prop_oneof![
        1 => (0u8..3, 2u8..10, 0u8..4).prop_map(|(top, order, setting)| Op::Policy { top, order, setting }),
        2 => (space.clone(), range(), any::<bool>()).prop_map(|(space, (page, n), huge)| Op::Mmap { space, page, n, huge }),
        6 => (space.clone(), range(), any::<u64>()).prop_map(|(space, (page, n), value)| Op::Touch { space, page, n: n.min(80), value }),
        3 => (space.clone(), 0..WINDOW).prop_map(|(space, page)| Op::Read { space, page }),
        2 => (space.clone(), range()).prop_map(|(space, (page, n))| Op::Unmap { space, page, n }),
        3 => (space.clone(), range(), 0u8..3).prop_map(|(space, (page, n), prot)| Op::Protect { space, page, n, prot }),
        2 => (space.clone(), range()).prop_map(|(space, (page, n))| Op::DontNeed { space, page, n }),
        1 => space.clone().prop_map(|space| Op::Fork { space }),
        1 => space.prop_map(|space| Op::Exit { space }),
        1 => Just(Op::Split),
    ]
}

/// What a page of a space should be: mapped (with write permission or
/// not, or `PROT_NONE`) and its first word.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PageModel {
    writable: bool,
    none: bool,
    value: u64,
}

struct Modelled<F: PteFormat> {
    space: AddressSpace<F>,
    pages: BTreeMap<u64, PageModel>,
}

const WORDS: [&str; 4] = ["always", "inherit", "madvise", "never"];

fn apply<F: PteFormat>(env: &mut HostEnv, spaces: &mut Vec<Option<Modelled<F>>>, op: Op) {
    let n = spaces.len();
    let pick = |spaces: &mut Vec<Option<Modelled<F>>>, s: usize| -> Option<usize> {
        spaces.get(s % n).and_then(|x| x.as_ref()).map(|_| s % n)
    };
    match op {
        Op::Policy {
            top,
            order,
            setting,
        } => {
            let top = ["always", "madvise", "never"][top as usize];
            env.thp.write_top(top.as_bytes()).unwrap();
            env.thp
                .write_size(order, WORDS[setting as usize].as_bytes())
                .unwrap();
        }
        Op::Mmap {
            space,
            page,
            n,
            huge,
        } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            m.space.unmap(env, va(page), va(page + n)).unwrap();
            m.space
                .add_vma(Vma::new(va(page), va(page + n), Prot::RW, VmaKind::Anon))
                .unwrap();
            if huge {
                m.space
                    .advise_hugepage(va(page), va(page + n), true)
                    .unwrap();
            }
            for p in page..page + n {
                m.pages.insert(
                    p,
                    PageModel {
                        writable: true,
                        none: false,
                        value: 0,
                    },
                );
            }
        }
        Op::Touch {
            space,
            page,
            n,
            value,
        } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            for p in page..(page + n).min(WINDOW) {
                match m.pages.get_mut(&p) {
                    Some(pm) if pm.writable => {
                        let v = value.wrapping_add(p);
                        write_u64(env, &mut m.space, va(p), v);
                        pm.value = v;
                    }
                    Some(_) => assert_eq!(
                        m.space.handle_fault(env, va(p), Access::Write),
                        Err(FaultError::Protection)
                    ),
                    None => assert_eq!(
                        m.space.handle_fault(env, va(p), Access::Write),
                        Err(FaultError::Unmapped)
                    ),
                }
            }
        }
        Op::Read { space, page } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            match m.pages.get(&page) {
                Some(pm) if pm.none => assert_eq!(
                    m.space.handle_fault(env, va(page), Access::Read),
                    Err(FaultError::Protection)
                ),
                Some(pm) => assert_eq!(read_u64(env, &mut m.space, va(page)), pm.value),
                None => assert_eq!(
                    m.space.handle_fault(env, va(page), Access::Read),
                    Err(FaultError::Unmapped)
                ),
            }
        }
        Op::Unmap { space, page, n } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            m.space.unmap(env, va(page), va(page + n)).unwrap();
            for p in page..page + n {
                m.pages.remove(&p);
            }
        }
        Op::Protect {
            space,
            page,
            n,
            prot,
        } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            let (write, none) = (prot == 2, prot == 0);
            let prot = [Prot::NONE, Prot::READ, Prot::RW][prot as usize];
            let hole = (page..page + n).any(|p| !m.pages.contains_key(&p));
            let r = m.space.protect(env, va(page), va(page + n), prot);
            if hole {
                assert_eq!(r, Err(VmaError::Hole));
            } else {
                r.unwrap();
                for p in page..page + n {
                    let pm = m.pages.get_mut(&p).unwrap();
                    pm.writable = write;
                    pm.none = none;
                }
            }
        }
        Op::DontNeed { space, page, n } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].as_mut().unwrap();
            let hole = (page..page + n).any(|p| !m.pages.contains_key(&p));
            let r = m.space.dontneed(env, va(page), va(page + n));
            assert_eq!(r.is_err(), hole, "{r:?}");
            for p in page..page + n {
                if let Some(pm) = m.pages.get_mut(&p) {
                    pm.value = 0;
                }
            }
        }
        Op::Fork { space } => {
            if spaces.len() >= 6 {
                return;
            }
            let Some(i) = pick(spaces, space) else { return };
            let asid = Asid(spaces.len() as u16 + 1);
            let m = spaces[i].as_mut().unwrap();
            let mut c = m.space.fork(env, None).unwrap();
            c.asid = asid;
            let pages = m.pages.clone();
            spaces.push(Some(Modelled { space: c, pages }));
        }
        Op::Exit { space } => {
            let Some(i) = pick(spaces, space) else { return };
            let m = spaces[i].take().unwrap();
            m.space.teardown(env);
        }
        Op::Split => {
            let all: Vec<&AddressSpace<F>> = spaces.iter().flatten().map(|m| &m.space).collect();
            let scan = env.split_scan(&all);
            // With every space in view and no reference in flight, every
            // queued folio is split.
            assert_eq!((scan.failed, scan.dequeued), (0, 0), "{scan:?}");
            assert_eq!(scan.split, scan.scanned);
            assert_eq!(env.buddy.deferred_len(), 0);
        }
    }
}

/// Everything the model and the accounting say must hold now.
fn check<F: PteFormat>(env: &HostEnv, spaces: &[Option<Modelled<F>>], free0: u64) {
    // PTEs per frame, over all spaces; and page contents and rights.
    let mut users: HashMap<Pfn, u32> = HashMap::new();
    for m in spaces.iter().flatten() {
        let a = &m.space;
        assert_eq!(a.rss(), a.resident_pages(), "rss counter");
        for p in 0..WINDOW {
            let t = a.translate(va(p));
            let Some(pm) = m.pages.get(&p) else {
                assert!(t.is_none(), "page {p} is not in an area but mapped");
                continue;
            };
            let Some((pfn, attrs)) = t else { continue };
            // A PROT_NONE page keeps its frame in a protnone entry, which
            // the MMU reads as invalid (bit 0, the valid / present bit of
            // both formats, read from the raw entry); any other page is a
            // valid user entry.
            let slot = a.page_table().pte_slot(va(p)).expect("a table");
            let raw = a.page_table().pte(slot);
            assert_eq!(attrs.protnone, pm.none, "page {p}: {raw:#x}");
            assert_eq!(raw.bits() & 1 == 0, pm.none, "page {p}: {raw:#x}");
            assert_eq!(attrs.user, !pm.none, "page {p}");
            assert!(!attrs.exec);
            assert!(
                !attrs.writable || pm.writable,
                "page {p} writable under PROT_READ"
            );
            let mut b = [0u8; 8];
            assert!(a.read_bytes(env, va(p), &mut b));
            assert_eq!(u64::from_le_bytes(b), pm.value, "contents of page {p}");
            // Only word 0 is ever written: the rest of the page is zero
            // (a page not zeroed, or a copy of the wrong page, shows here).
            assert!(a.read_bytes(env, va(p) + (PAGE_SIZE - 8), &mut b));
            assert_eq!(u64::from_le_bytes(b), 0, "last word of page {p}");
            if pfn == env.zero {
                assert!(!attrs.writable, "the zero page mapped writable");
                continue;
            }
            let f = env.memmap.page_folio(pfn).expect("a folio");
            // A writable page is this space's alone.
            assert!(!attrs.writable || f.page_anon_exclusive(pfn), "page {p}");
            // A folio's pages sit at their natural place: the folio is
            // mapped aligned to its size.
            let base = va(p).as_u64() - (pfn - f.pfn()) * PAGE_SIZE;
            assert!(base.is_multiple_of(f.nr_pages() * PAGE_SIZE), "misplaced");
            *users.entry(pfn).or_default() += 1;
        }
    }
    // Per folio: refcount = mapcount = PTEs mapping any of its pages; an
    // exclusive page is mapped once.
    let mut folios: HashMap<Pfn, (u32, u64)> = HashMap::new();
    for (&pfn, &n) in &users {
        let f = env.memmap.page_folio(pfn).unwrap();
        if f.page_anon_exclusive(pfn) {
            assert_eq!(n, 1, "exclusive page {pfn:?} mapped {n} times");
        }
        let e = folios.entry(f.pfn()).or_insert((0, f.nr_pages()));
        e.0 += n;
    }
    let mut in_folios = 0;
    for (&head, &(n, pages)) in &folios {
        let f = env.memmap.page_folio(head).unwrap();
        assert_eq!((f.ref_count(), f.mapcount()), (n, n), "folio {head:?}");
        in_folios += pages;
        // Fewer mappings than pages: some page is mapped nowhere, and the
        // unmap that made it so queued the folio.
        if u64::from(n) < pages {
            assert!(f.test_deferred(), "partly mapped {head:?} not queued");
        }
    }
    // Everything queued is a live folio with a page nobody maps.
    let queued: Vec<_> = env.buddy.deferred_folios().collect();
    assert_eq!(queued.len() as u64, env.buddy.deferred_len());
    for (head, base) in queued {
        let &(_, pages) = folios.get(&head).expect("a queued folio is mapped");
        assert!(base.is_aligned(pages * PAGE_SIZE));
        assert!(
            (0..pages).any(|k| !users.contains_key(&(head + k))),
            "{head:?} queued with every page mapped"
        );
    }
    // Every frame is free, a table, or in a mapped folio: nothing leaks.
    assert_eq!(env.free_pages() + env.tables + in_folios, free0, "frames");
}

/// A whole random policy: the top-level knob and one setting per size,
/// leaning towards sizes being enabled.
fn policy() -> impl Strategy<Value = (u8, [u8; 8])> {
    let setting = prop_oneof![3 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 2 => Just(3u8)];
    (0u8..3, proptest::array::uniform8(setting))
}

fn history<F: PteFormat>((top, sizes): (u8, [u8; 8]), ops: Vec<Op>) {
    let mut env = HostEnv::new(FRAMES);
    let free0 = env.free_pages();
    for (k, &setting) in sizes.iter().enumerate() {
        let op = Op::Policy {
            top,
            order: k as u8 + 2,
            setting,
        };
        apply::<F>(&mut env, &mut Vec::new(), op);
    }
    let mut spaces: Vec<Option<Modelled<F>>> = vec![Some(Modelled {
        space: new_space::<F>(&mut env, 1),
        pages: BTreeMap::new(),
    })];
    for op in ops {
        // The hardware may have cached every present translation.
        for m in spaces.iter().flatten() {
            env.walk_all(&m.space);
        }
        apply(&mut env, &mut spaces, op);
        for m in spaces.iter().flatten() {
            env.assert_no_stale_write(&m.space);
        }
        check(&env, &spaces, free0);
    }
    for m in spaces.into_iter().flatten() {
        env.walk_all(&m.space);
        m.space.teardown(&mut env);
    }
}

proptest! {
    #![proptest_config(common::cases(48))]
    #[test]
    fn mthp_histories_match_the_model_x86_64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(60))) {
        history::<X86_64>(p, ops);
    }
    #[test]
    fn mthp_histories_match_the_model_aarch64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(60))) {
        history::<Aarch64>(p, ops);
    }
}

/// A folio mapped by two spaces with fewer mappings than it has pages
/// (each unmapped part of it) is still shared: a write copies.
#[test]
fn a_partly_mapped_shared_folio_is_copied_not_reused() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut parent = new_space::<Aarch64>(&mut env, 1);
    anon(&mut parent, 0, 16);
    for p in 0..16 {
        write_u64(&mut env, &mut parent, va(p), p);
    }
    let mut child = parent.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    let head = folio_at(&env, &parent, 0).0;
    env.walk_all(&parent);
    env.walk_all(&child);
    child.unmap(&mut env, va(4), va(16)).unwrap();
    parent.unmap(&mut env, va(8), va(16)).unwrap();
    assert_eq!(folio_at(&env, &parent, 0), (head, 4, 12, 12));
    write_u64(&mut env, &mut parent, va(1), 99);
    assert_ne!(parent.translate(va(1)).unwrap().0, head + 1, "copied");
    assert_eq!(read_u64(&mut env, &mut child, va(1)), 1, "child unchanged");
    // Page 5 is the parent's alone, but the folio is not: Linux copies too.
    write_u64(&mut env, &mut parent, va(5), 55);
    assert_ne!(parent.translate(va(5)).unwrap().0, head + 5);
    env.walk_all(&parent);
    env.walk_all(&child);
    child.teardown(&mut env);
    parent.teardown(&mut env);
}

/// The kernel writing a program's contents (`write_bytes`, Linux's
/// `FOLL_FORCE`) into pages that are not private yet: the zero page, a page
/// shared with a child, a read-only area. Each gets a private copy; the
/// zero page and the child's view stay as they were.
#[test]
fn kernel_writes_make_pages_private_first() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<X86_64>(&mut env, 1);
    a.add_vma(Vma::new(va(0), va(16), Prot::READ, VmaKind::Anon))
        .unwrap();
    anon(&mut a, 16, 16);
    // A read maps the zero page; the kernel's write must not land there.
    assert_eq!(read_u64(&mut env, &mut a, va(2)), 0);
    a.write_bytes(&mut env, va(2) + 8, b"text").unwrap();
    let (pfn, attrs) = a.translate(va(2)).unwrap();
    assert_ne!(pfn, env.zero);
    assert!(!attrs.writable, "still read-only");
    let mut b = [0u8; 4];
    assert!(a.read_bytes(&env, va(2) + 8, &mut b));
    assert_eq!(&b, b"text");
    assert_eq!(read_u64(&mut env, &mut a, va(3)), 0);
    let mut z = [0xffu8; 16];
    assert!(a.read_bytes(&env, va(3), &mut z));
    assert_eq!(a.translate(va(3)).unwrap().0, env.zero);
    assert_eq!(z, [0; 16], "the zero page is untouched");
    // A large folio shared with a child: the parent's forced write copies
    // the page; the child still reads the original.
    for p in 16..32 {
        write_u64(&mut env, &mut a, va(p), p);
    }
    assert_eq!(folio_at(&env, &a, 16).1, 4);
    let mut c = a.fork(&mut env, None).unwrap();
    c.asid = Asid(2);
    env.walk_all(&a);
    env.walk_all(&c);
    a.write_bytes(&mut env, va(20), &99u64.to_le_bytes())
        .unwrap();
    env.assert_no_stale_write(&a);
    assert_eq!(read_u64(&mut env, &mut a, va(20)), 99);
    assert_eq!(read_u64(&mut env, &mut c, va(20)), 20);
    assert_eq!(folio_at(&env, &c, 16).2, 31, "one page of the folio copied");
    env.walk_all(&a);
    env.walk_all(&c);
    c.teardown(&mut env);
    a.teardown(&mut env);
}

/// `MAP_POPULATE`'s path: every page present after one call, large folios
/// where the policy allows (one fault per folio, counted once), zero pages
/// for a read-only population.
#[test]
fn populate_faults_each_folio_once() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<Aarch64>(&mut env, 1);
    anon(&mut a, 0, 64);
    a.populate(&mut env, va(0), va(64), Access::Write).unwrap();
    assert_eq!(env.thp.counters(4), Some((4, 0)), "four 64 KiB folios");
    for p in 0..64 {
        let (pfn, attrs) = a.translate(va(p)).unwrap();
        assert!(attrs.writable && pfn != env.zero, "page {p}");
    }
    assert_eq!(a.rss(), 64);
    a.add_vma(Vma::new(va(100), va(104), Prot::READ, VmaKind::Anon))
        .unwrap();
    a.populate(&mut env, va(100), va(104), Access::Read)
        .unwrap();
    assert!((100..104).all(|p| a.translate(va(p)).unwrap().0 == env.zero));
    assert_eq!(
        a.populate(&mut env, va(104), va(106), Access::Read),
        Err(FaultError::Unmapped)
    );
    env.walk_all(&a);
    a.teardown(&mut env);
}

// ---------------------------------------------------------------------
// Batched and per-PTE fork and zap leave the same state.
// ---------------------------------------------------------------------

/// Runs `ops` twice, in a default environment and in one `second`
/// changes (batching off, folding off), step by step, and requires the
/// same page tables (frame, write and user permission of every page),
/// refcounts, mapcounts, free frames and tables after every step; each
/// run also passes the per-page model's checks, and every folded block
/// (arm64 contpte) is valid ([`check_folds`]).
fn modes_agree<F: PteFormat>((top, sizes): (u8, [u8; 8]), ops: Vec<Op>, second: fn(&mut HostEnv)) {
    let mut envs = [HostEnv::new(FRAMES), HostEnv::new(FRAMES)];
    second(&mut envs[1]);
    let free0 = envs[0].free_pages();
    assert_eq!(free0, envs[1].free_pages());
    let mut runs: Vec<Vec<Option<Modelled<F>>>> = Vec::new();
    for env in envs.iter_mut() {
        for (k, &setting) in sizes.iter().enumerate() {
            let op = Op::Policy {
                top,
                order: k as u8 + 2,
                setting,
            };
            apply::<F>(env, &mut Vec::new(), op);
        }
        runs.push(vec![Some(Modelled {
            space: new_space::<F>(env, 1),
            pages: BTreeMap::new(),
        })]);
    }
    for op in ops {
        for (env, spaces) in envs.iter_mut().zip(runs.iter_mut()) {
            for m in spaces.iter().flatten() {
                env.walk_all(&m.space);
            }
            apply(env, spaces, op.clone());
            for m in spaces.iter().flatten() {
                env.assert_no_stale_write(&m.space);
                check_folds(env, &m.space);
            }
            check(env, spaces, free0);
        }
        let (a, b) = (&runs[0], &runs[1]);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b.iter()) {
            let (Some(x), Some(y)) = (x, y) else {
                assert!(x.is_none() && y.is_none());
                continue;
            };
            for p in 0..WINDOW {
                let tx = x.space.translate(va(p));
                let ty = y.space.translate(va(p));
                let key = |t: Option<(Pfn, folium_mm::pgtable::Attrs)>| {
                    t.map(|(pfn, a)| (pfn, a.writable, a.user, a.exec))
                };
                assert_eq!(key(tx), key(ty), "page {p} after {op:?}");
                if let Some((pfn, _)) = tx
                    && pfn != envs[0].zero
                {
                    let fa = envs[0].memmap.page_folio(pfn).unwrap();
                    let fb = envs[1].memmap.page_folio(pfn).unwrap();
                    assert_eq!(
                        (fa.ref_count(), fa.mapcount(), fa.order()),
                        (fb.ref_count(), fb.mapcount(), fb.order()),
                        "folio of page {p}"
                    );
                }
            }
            assert_eq!(x.space.rss(), y.space.rss());
        }
        assert_eq!(envs[0].free_pages(), envs[1].free_pages(), "after {op:?}");
        // The same folios wait for a split: per PTE, only folios freed by
        // the same operation were queued in passing.
        let queued = |e: &HostEnv| e.buddy.deferred_folios().collect::<Vec<_>>();
        assert_eq!(queued(&envs[0]), queued(&envs[1]), "after {op:?}");
        assert_eq!(envs[0].tables, envs[1].tables);
    }
    for (env, spaces) in envs.iter_mut().zip(runs) {
        for m in spaces.into_iter().flatten() {
            env.walk_all(&m.space);
            m.space.teardown(env);
        }
        assert_eq!(env.free_pages(), free0);
    }
}

/// Every 64 KiB block of `a`'s user window is folded whole or not at all
/// (no half-folded block), and a folded block maps 16 consecutive frames,
/// aligned to 16, with attributes identical apart from accessed and
/// dirty; nothing is folded with folding off. Formats without the hint
/// pass trivially. (The frames were one folio's when the block was
/// folded, which the cursor model test checks; a deferred split may
/// since have made them order-0 folios, see `split.rs`.)
fn check_folds<F: PteFormat>(env: &HostEnv, a: &AddressSpace<F>) {
    let pt = a.page_table();
    for b in 0..WINDOW / 16 {
        let raws: Vec<Option<Pte>> = (0..16)
            .map(|k| pt.raw_leaf(va(b * 16 + k)).map(|l| l.pte))
            .collect();
        let folded = raws
            .iter()
            .filter(|r| r.is_some_and(|r| F::pte_cont(r)))
            .count();
        assert!(
            folded == 0 || folded == 16,
            "block {b}: {folded} of 16 folded"
        );
        if folded == 0 {
            continue;
        }
        assert!(env.fold.fold, "block {b} folded with folding off");
        let first = F::pte_pfn(raws[0].unwrap());
        assert_eq!(
            first.as_u64() % 16,
            0,
            "block {b}: frame {first:?} not aligned"
        );
        assert!(
            env.memmap.page_folio(first).is_some(),
            "block {b}: no folio"
        );
        let view = |raw: Pte| match F::decode(raw, Level::L3) {
            PteKind::Leaf { pa, attrs } => (
                pa,
                Attrs {
                    young: false,
                    dirty: false,
                    ..attrs
                },
            ),
            other => panic!("block {b}: {other:?}"),
        };
        let (pa0, a0) = view(raws[0].unwrap());
        for (k, raw) in raws.iter().enumerate() {
            let (pa, attrs) = view(raw.unwrap());
            assert_eq!(pa, pa0 + k as u64 * PAGE_SIZE, "block {b} entry {k}");
            assert_eq!(attrs, a0, "block {b} entry {k}");
        }
    }
}

proptest! {
    #![proptest_config(common::cases(32))]
    #[test]
    fn batched_and_per_pte_agree_x86_64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(50))) {
        modes_agree::<X86_64>(p, ops, |e| e.batching = false);
    }
    #[test]
    fn batched_and_per_pte_agree_aarch64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(50))) {
        modes_agree::<Aarch64>(p, ops, |e| e.batching = false);
    }
    #[test]
    fn contpte_on_and_off_agree_aarch64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(50))) {
        modes_agree::<Aarch64>(p, ops, |e| e.fold = FoldPolicy::OFF);
    }
    #[test]
    fn contpte_fork_per_pte_agrees_aarch64(p in policy(), ops in proptest::collection::vec(op(), common::history_len(50))) {
        modes_agree::<Aarch64>(p, ops, |e| e.fold.fork_per_pte = true);
    }
}

/// A fork and a teardown of 4 MiB of order-9 memory: with batching on,
/// one batch per folio each (two of 512 PTEs); off, 1024 batches of one.
#[test]
fn batches_cover_whole_folios() {
    for batching in [true, false] {
        let mut env = HostEnv::new(FRAMES);
        env.batching = batching;
        set_sizes(&env, "never", &[(9, "always")]);
        let mut a = new_space::<X86_64>(&mut env, 1);
        anon(&mut a, 0, 1024);
        a.populate(&mut env, va(0), va(1024), Access::Write)
            .unwrap();
        assert_eq!(folio_at(&env, &a, 0).1, 9);
        env.batches.borrow_mut().clear();
        let mut c = a.fork(&mut env, None).unwrap();
        c.asid = Asid(2);
        assert_eq!(folio_at(&env, &a, 0).2, 1024);
        env.walk_all(&a);
        env.walk_all(&c);
        c.teardown(&mut env);
        assert_eq!(folio_at(&env, &a, 0).2, 512);
        let b = env.batches.borrow().clone();
        let want: Vec<(bool, usize)> = if batching {
            vec![(true, 512), (true, 512), (false, 512), (false, 512)]
        } else {
            (0..1024)
                .map(|_| (true, 1))
                .chain((0..1024).map(|_| (false, 1)))
                .collect()
        };
        assert_eq!(b, want, "batching {batching}");
        env.walk_all(&a);
        a.teardown(&mut env);
    }
}

/// A batch whose first entry is read-only but a later one writable (the
/// parent reused one page of a folio in place after an earlier child
/// exited): fork must write-protect the whole run, or the parent would
/// keep writing to a page the new child still maps.
fn fork_write_protects_a_mixed_batch<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut parent = new_space::<F>(&mut env, 1);
    anon(&mut parent, 0, 16);
    for p in 0..16 {
        write_u64(&mut env, &mut parent, va(p), 100 + p);
    }
    let mut c1 = parent.fork(&mut env, None).unwrap();
    c1.asid = Asid(2);
    env.walk_all(&parent);
    env.walk_all(&c1);
    c1.teardown(&mut env);
    write_u64(&mut env, &mut parent, va(9), 9);
    assert!(!parent.translate(va(0)).unwrap().1.writable);
    assert!(
        parent.translate(va(9)).unwrap().1.writable,
        "reused in place"
    );
    env.walk_all(&parent);
    let mut c2 = parent.fork(&mut env, None).unwrap();
    c2.asid = Asid(3);
    env.assert_no_stale_write(&parent);
    assert!(!parent.translate(va(9)).unwrap().1.writable);
    write_u64(&mut env, &mut parent, va(9), 4242);
    assert_eq!(
        read_u64(&mut env, &mut c2, va(9)),
        9,
        "the child keeps its view"
    );
    env.walk_all(&parent);
    env.walk_all(&c2);
    c2.teardown(&mut env);
    parent.teardown(&mut env);
}

on_both_formats!(fork_write_protects_a_mixed_batch: fork_write_protects_a_mixed_batch_x86_64, fork_write_protects_a_mixed_batch_aarch64);

/// mremap's move of 64 KiB folios: by a multiple of the folio size and by
/// an odd number of pages. Either way each folio stays whole (same head
/// frame, order, one reference and mapcount per PTE), its pages keep
/// their contents and exclusivity, and a write to a moved page reuses it.
fn move_keeps_large_folios_whole<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 64);
    for p in 0..64 {
        write_u64(&mut env, &mut a, va(p), 500 + p);
    }
    let heads: Vec<_> = (0..4).map(|k| folio_at(&env, &a, 16 * k).0).collect();
    for (to, what) in [(256, "aligned"), (512 + 3, "unaligned")] {
        let from = if to == 256 { 0 } else { 256 };
        anon(&mut a, to, 64);
        a.move_ptes(&mut env, va(from), va(to), 64 * PAGE_SIZE)
            .unwrap();
        a.unmap(&mut env, va(from), va(from + 64)).unwrap();
        env.walk_all(&a);
        for p in 0..64 {
            let (head, order, r, m) = folio_at(&env, &a, to + p);
            assert_eq!(head, heads[(p / 16) as usize], "{what}: page {p}");
            assert_eq!((order, r, m), (4, 16, 16), "{what}: page {p}");
            assert!(exclusive(&env, &a, to + p), "{what}: page {p}");
            assert_eq!(read_u64(&mut env, &mut a, va(to + p)), 500 + p);
        }
    }
    let (pfn, _) = a.translate(va(515)).unwrap();
    write_u64(&mut env, &mut a, va(515), 1);
    assert_eq!(a.translate(va(515)).unwrap().0, pfn, "reused, not copied");
    env.walk_all(&a);
    a.teardown(&mut env);
}

on_both_formats!(
    move_keeps_large_folios_whole: move_keeps_large_folios_whole_x86_64,
    move_keeps_large_folios_whole_aarch64
);
