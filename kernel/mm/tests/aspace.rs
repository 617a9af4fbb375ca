//! Host tests of user address spaces on both PTE formats: demand faults,
//! copy-on-write across fork, unmap, mprotect, brk and teardown, checked
//! against a per-page model of contents and sharing, with a recording TLB
//! that fails the test if a frame is freed while a translation to it may
//! still be cached.

use std::collections::HashMap;

use folium_mm::aspace::{Access, AddressSpace, Brk, FaultError};
use folium_mm::pgtable::{Aarch64, PteFormat, X86_64};
use folium_mm::tlb::Asid;
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{PAGE_SIZE, Pfn};
use proptest::prelude::*;

#[macro_use]
mod common;
use common::hostenv::{HostEnv, new_space, read_u64, va, write_u64};

const FRAMES: u64 = 2048;

fn cow_round_trip<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut parent = new_space::<F>(&mut env, 1);
    parent
        .add_vma(Vma::new(va(0), va(8), Prot::RW, VmaKind::Anon))
        .unwrap();
    for p in 0..4 {
        write_u64(&mut env, &mut parent, va(p), 100 + p);
    }
    env.walk_all(&parent);
    let mut child = parent.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    env.walk_all(&child);
    let (pfn0, _) = parent.translate(va(0)).unwrap();
    assert_eq!(child.translate(va(0)).unwrap().0, pfn0, "shared after fork");
    {
        let f = env.memmap.page_folio(pfn0).unwrap();
        assert_eq!((f.ref_count(), f.mapcount()), (2, 2));
        assert!(!f.page_anon_exclusive(pfn0));
    }
    // The child writes: it gets a copy; the parent keeps the original.
    write_u64(&mut env, &mut child, va(0), 7);
    assert_eq!(read_u64(&mut env, &mut parent, va(0)), 100);
    assert_eq!(read_u64(&mut env, &mut child, va(0)), 7);
    assert_ne!(child.translate(va(0)).unwrap().0, pfn0);
    {
        let f = env.memmap.page_folio(pfn0).unwrap();
        assert_eq!((f.ref_count(), f.mapcount()), (1, 1));
    }
    // The parent writes the same page: now alone with it, it reuses it.
    write_u64(&mut env, &mut parent, va(0), 8);
    assert_eq!(
        parent.translate(va(0)).unwrap().0,
        pfn0,
        "reused, not copied"
    );
    assert!(
        env.memmap
            .page_folio(pfn0)
            .unwrap()
            .page_anon_exclusive(pfn0)
    );
    // Untouched shared pages still read the same on both sides.
    assert_eq!(read_u64(&mut env, &mut child, va(3)), 103);
    env.walk_all(&parent);
    env.walk_all(&child);
    child.teardown(&mut env);
    assert_eq!(read_u64(&mut env, &mut parent, va(2)), 102);
    env.walk_all(&parent);
    parent.teardown(&mut env);
}

on_both_formats!(cow_round_trip: cow_round_trip_x86_64, cow_round_trip_aarch64);

#[test]
fn faults_respect_areas() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<X86_64>(&mut env, 1);
    a.add_vma(Vma::new(va(0), va(2), Prot::READ, VmaKind::Image))
        .unwrap();
    assert_eq!(
        a.handle_fault(&mut env, va(5), Access::Read),
        Err(FaultError::Unmapped)
    );
    assert_eq!(
        a.handle_fault(&mut env, va(0), Access::Write),
        Err(FaultError::Protection)
    );
    assert_eq!(
        a.handle_fault(&mut env, va(0), Access::Exec),
        Err(FaultError::Protection)
    );
    a.handle_fault(&mut env, va(1), Access::Read).unwrap();
    let (_, attrs) = a.translate(va(1)).unwrap();
    assert!(!attrs.writable && !attrs.exec && attrs.user);
    // The kernel may still write a read-only area's contents (loading).
    a.write_bytes(&mut env, va(0) + 10, b"hello").unwrap();
    let mut b = [0u8; 5];
    assert!(a.read_bytes(&env, va(0) + 10, &mut b));
    assert_eq!(&b, b"hello");
    assert!(!a.translate(va(0)).unwrap().1.writable, "still read-only");
    a.teardown(&mut env);
}

#[test]
fn brk_grows_and_shrinks() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<Aarch64>(&mut env, 1);
    a.brk = Some(Brk {
        start: va(16),
        cur: va(16),
    });
    assert_eq!(
        a.set_brk(&mut env, va(16) + 3 * PAGE_SIZE + 5),
        va(16) + 3 * PAGE_SIZE + 5
    );
    write_u64(&mut env, &mut a, va(19), 1);
    assert_eq!(a.resident_pages(), 1);
    assert_eq!(
        a.set_brk(&mut env, va(10)),
        va(16) + 3 * PAGE_SIZE + 5,
        "below start"
    );
    assert_eq!(a.set_brk(&mut env, va(17)), va(17));
    assert_eq!(a.resident_pages(), 0, "shrinking unmapped the page");
    assert_eq!(
        a.handle_fault(&mut env, va(18), Access::Read),
        Err(FaultError::Unmapped)
    );
    a.teardown(&mut env);
}

#[test]
fn mprotect_downgrades_and_cow_restores() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<X86_64>(&mut env, 1);
    a.add_vma(Vma::new(va(0), va(4), Prot::RW, VmaKind::Anon))
        .unwrap();
    write_u64(&mut env, &mut a, va(1), 42);
    env.walk_all(&a);
    a.protect(&mut env, va(0), va(4), Prot::READ).unwrap();
    assert!(env.tlb.cached(Asid(1)).is_empty(), "downgrade flushed");
    assert!(!a.translate(va(1)).unwrap().1.writable);
    assert_eq!(
        a.handle_fault(&mut env, va(1), Access::Write),
        Err(FaultError::Protection)
    );
    a.protect(&mut env, va(0), va(4), Prot::RW).unwrap();
    let (pfn, _) = a.translate(va(1)).unwrap();
    write_u64(&mut env, &mut a, va(1), 43);
    assert_eq!(a.translate(va(1)).unwrap().0, pfn, "exclusive page reused");
    a.teardown(&mut env);
}

/// Populates `n` pages, lets the hardware cache them all, unmaps them
/// in one call and returns how many TLB flushes that issued. Every free
/// checks (in `HostEnv::folio_put_refs`) that no cached translation to the
/// frame survives, so batches must flush before they free; afterwards
/// nothing is resident and every frame is back.
fn flushes_of_one_unmap(env: &mut HostEnv, n: u64) -> u64 {
    let free0 = env.free_pages();
    let mut a = new_space::<Aarch64>(env, 1);
    a.add_vma(Vma::new(va(0), va(n), Prot::RW, VmaKind::Anon))
        .unwrap();
    for p in 0..n {
        write_u64(env, &mut a, va(p), p);
    }
    env.walk_all(&a);
    let before = env.tlb.calls();
    a.unmap(env, va(0), va(n)).unwrap();
    let after = env.tlb.calls();
    assert_eq!(a.resident_pages(), 0);
    a.teardown(env);
    assert_eq!(env.free_pages(), free0);
    (0..3).map(|i| after[i] - before[i]).sum()
}

#[test]
fn unmaps_flush_once_then_free() {
    let mut env = HostEnv::new(FRAMES);
    let flushes = flushes_of_one_unmap(&mut env, 1000);
    assert_eq!(flushes, 1, "one flush for the whole operation");
}

#[test]
fn full_gathers_flush_before_freeing() {
    let mut env = HostEnv::new(FRAMES);
    env.gather_batch = 64;
    let flushes = flushes_of_one_unmap(&mut env, 3 * 64 + 7);
    assert_eq!(flushes, 4, "a flush per full batch and one at the end");
}

#[derive(Debug, Clone)]
enum Op {
    Write { space: usize, page: u64, value: u64 },
    Read { space: usize, page: u64 },
    Fork { space: usize },
    Unmap { space: usize, page: u64, n: u64 },
    Exit { space: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 0u64..16, any::<u64>()).prop_map(|(space, page, value)| Op::Write { space, page, value }),
        2 => (0usize..4, 0u64..16).prop_map(|(space, page)| Op::Read { space, page }),
        1 => (0usize..4).prop_map(|space| Op::Fork { space }),
        1 => (0usize..4, 0u64..16, 1u64..4).prop_map(|(space, page, n)| Op::Unmap { space, page, n }),
        1 => (0usize..4).prop_map(|space| Op::Exit { space }),
    ]
}

/// One live space in a history: the space, its expected page contents
/// and which of its 16 pages are still mapped.
type Modelled<F> = (AddressSpace<F>, HashMap<u64, u64>, [bool; 16]);

/// Random histories of several address spaces against a model in which
/// every space has its own private copy of every page.
fn history<F: PteFormat>(ops: Vec<Op>) {
    let mut env = HostEnv::new(FRAMES);
    let mut spaces: Vec<Option<Modelled<F>>> = Vec::new();
    let mut next_asid = 1;
    let mut a = new_space::<F>(&mut env, next_asid);
    a.add_vma(Vma::new(va(0), va(16), Prot::RW, VmaKind::Anon))
        .unwrap();
    spaces.push(Some((a, HashMap::new(), [true; 16])));
    for op in ops {
        let n = spaces.len();
        match op {
            Op::Write { space, page, value } => {
                if let Some(Some((a, model, mapped))) = spaces.get_mut(space % n)
                    && mapped[page as usize]
                {
                    write_u64(&mut env, a, va(page), value);
                    model.insert(page, value);
                }
            }
            Op::Read { space, page } => {
                if let Some(Some((a, model, mapped))) = spaces.get_mut(space % n)
                    && mapped[page as usize]
                {
                    let got = read_u64(&mut env, a, va(page));
                    assert_eq!(got, model.get(&page).copied().unwrap_or(0), "page {page}");
                }
            }
            Op::Fork { space } => {
                if spaces.len() < 6
                    && let Some(Some((a, model, mapped))) = spaces.get_mut(space % n)
                {
                    env.walk_all(a);
                    let mut c = a.fork(&mut env, None).unwrap();
                    next_asid += 1;
                    c.asid = Asid(next_asid);
                    let (model, mapped) = (model.clone(), *mapped);
                    spaces.push(Some((c, model, mapped)));
                }
            }
            Op::Unmap {
                space,
                page,
                n: len,
            } => {
                if let Some(Some((a, model, mapped))) = spaces.get_mut(space % n) {
                    env.walk_all(a);
                    let end = (page + len).min(16);
                    a.unmap(&mut env, va(page), va(end)).unwrap();
                    for p in page..end {
                        mapped[p as usize] = false;
                        model.remove(&p);
                    }
                }
            }
            Op::Exit { space } => {
                if let Some(slot) = spaces.get_mut(space % n)
                    && let Some((a, _, _)) = slot.take()
                {
                    env.walk_all(&a);
                    a.teardown(&mut env);
                }
            }
        }
        // The running page count matches a walk of the tables.
        for (a, _, _) in spaces.iter().flatten() {
            env.assert_no_stale_write(a);
            assert_eq!(a.rss(), a.resident_pages(), "rss counter");
        }
        // Refcounts equal mapcounts equal the number of spaces mapping a frame.
        let mut users: HashMap<Pfn, u32> = HashMap::new();
        for (a, _, _) in spaces.iter().flatten() {
            for p in 0..16 {
                if let Some((pfn, _)) = a.translate(va(p))
                    && pfn != env.zero
                {
                    *users.entry(pfn).or_default() += 1;
                }
            }
        }
        for (pfn, n) in users {
            let f = env.memmap.page_folio(pfn).unwrap();
            assert_eq!((f.ref_count(), f.mapcount()), (n, n), "{pfn:?}");
            if f.page_anon_exclusive(pfn) {
                assert_eq!(n, 1, "an exclusive page is mapped once");
            }
        }
    }
    for (a, _, _) in spaces.into_iter().flatten() {
        env.walk_all(&a);
        a.teardown(&mut env);
    }
}

proptest! {
    #![proptest_config(common::cases(64))]
    #[test]
    fn histories_match_the_model_x86_64(ops in proptest::collection::vec(op(), 1..80)) {
        history::<X86_64>(ops);
    }
    #[test]
    fn histories_match_the_model_aarch64(ops in proptest::collection::vec(op(), 1..80)) {
        history::<Aarch64>(ops);
    }
}

#[test]
fn teardown_of_many_tables_frees_everything() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<X86_64>(&mut env, 1);
    // One page in each of 150 separate 2 MiB regions: 150 last-level
    // tables, more than one chunk of the table walk.
    let region = 512u64;
    a.add_vma(Vma::new(va(0), va(150 * region), Prot::RW, VmaKind::Anon))
        .unwrap();
    for r in 0..150 {
        write_u64(&mut env, &mut a, va(r * region), r);
    }
    assert_eq!(a.resident_pages(), 150);
    env.walk_all(&a);
    a.teardown(&mut env);
}

#[test]
fn dontneed_drops_pages_keeps_areas_and_reports_holes() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<Aarch64>(&mut env, 1);
    a.add_vma(Vma::new(va(0), va(4), Prot::RW, VmaKind::Anon))
        .unwrap();
    a.add_vma(Vma::new(va(6), va(8), Prot::RW, VmaKind::Anon))
        .unwrap();
    for p in [0, 1, 2, 3, 6, 7] {
        write_u64(&mut env, &mut a, va(p), 100 + p);
    }
    env.walk_all(&a);
    // Pages 1..7 span a hole at 4..6: dropped where mapped, then ENOMEM.
    assert_eq!(
        a.dontneed(&mut env, va(1), va(7)),
        Err(folium_mm::vma::VmaError::Hole)
    );
    assert_eq!(read_u64(&mut env, &mut a, va(0)), 100, "outside the range");
    assert_eq!(read_u64(&mut env, &mut a, va(2)), 0, "reads back zero");
    assert_eq!(read_u64(&mut env, &mut a, va(6)), 0);
    assert_eq!(read_u64(&mut env, &mut a, va(7)), 107);
    assert_eq!(a.vmas().len(), 2, "areas stay");
    a.advise_hugepage(va(0), va(2), true).unwrap();
    assert_eq!(a.vmas().len(), 3, "split for the flag");
    assert!(a.advise_hugepage(va(3), va(7), true).is_err(), "a hole");
    a.advise_hugepage(va(0), va(2), false).unwrap();
    a.teardown(&mut env);
}

/// MADV_DONTFORK: the child has no area there; MADV_WIPEONFORK: the child
/// has the area and reads zeros; the parent keeps its pages either way and
/// every folio's counts stay those of the parent's mappings alone.
fn fork_advice<F: PteFormat>() {
    use folium_mm::vma::VmFlags;
    let mut env = HostEnv::new(FRAMES);
    let mut parent = new_space::<F>(&mut env, 1);
    parent
        .add_vma(Vma::new(va(0), va(6), Prot::RW, VmaKind::Anon))
        .unwrap();
    for p in 0..6 {
        write_u64(&mut env, &mut parent, va(p), 100 + p);
    }
    parent
        .advise_flags(va(0), va(2), VmFlags::WIPEONFORK, VmFlags::EMPTY)
        .unwrap();
    parent
        .advise_flags(va(2), va(4), VmFlags::DONTCOPY, VmFlags::EMPTY)
        .unwrap();
    assert_eq!(parent.vmas().len(), 3, "split by the advice");
    let mut child = parent.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    env.walk_all(&parent);
    env.walk_all(&child);
    assert_eq!(child.vmas().len(), 2, "the DONTFORK area is not inherited");
    assert!(child.vmas().find(va(2)).is_none());
    assert!(child.translate(va(0)).is_none(), "wiped: nothing mapped");
    assert_eq!(read_u64(&mut env, &mut child, va(0)), 0, "reads zero");
    assert_eq!(read_u64(&mut env, &mut child, va(1)), 0);
    assert_eq!(
        child.handle_fault(&mut env, va(3), Access::Read),
        Err(FaultError::Unmapped)
    );
    // Kept pages are shared as usual.
    let (pfn5, _) = parent.translate(va(5)).unwrap();
    assert_eq!(child.translate(va(5)).unwrap().0, pfn5);
    for p in [0, 1, 2, 3] {
        let (pfn, _) = parent.translate(va(p)).unwrap();
        let f = env.memmap.page_folio(pfn).unwrap();
        assert_eq!((f.ref_count(), f.mapcount()), (1, 1), "page {p} not shared");
        assert_eq!(read_u64(&mut env, &mut parent, va(p)), 100 + p);
    }
    // DOFORK/KEEPONFORK undo it: the next child gets the pages.
    parent
        .advise_flags(
            va(0),
            va(4),
            VmFlags::EMPTY,
            VmFlags::DONTCOPY.with(VmFlags::WIPEONFORK),
        )
        .unwrap();
    let mut second = parent.fork(&mut env, None).unwrap();
    second.asid = Asid(3);
    assert_eq!(read_u64(&mut env, &mut second, va(0)), 100);
    assert_eq!(read_u64(&mut env, &mut second, va(3)), 103);
    env.walk_all(&second);
    second.teardown(&mut env);
    child.teardown(&mut env);
    env.walk_all(&parent);
    parent.teardown(&mut env);
}

on_both_formats!(fork_advice: fork_advice_x86_64, fork_advice_aarch64);

/// mremap's move: every page keeps its frame, folio counts and contents
/// at the new address, the old one maps nothing, and copy-on-write across
/// a fork still works on the moved pages. The model: the values written.
fn move_ptes_keeps_pages<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<F>(&mut env, 1);
    // 600 pages: the move crosses table boundaries on both sides, and the
    // distance (700 pages) is not a multiple of any folio size.
    a.add_vma(Vma::new(va(0), va(600), Prot::RW, VmaKind::Anon))
        .unwrap();
    let model: HashMap<u64, u64> = (0..600)
        .filter(|p| p % 3 != 0)
        .map(|p| (p, 1000 + p))
        .collect();
    for (&p, &v) in &model {
        write_u64(&mut env, &mut a, va(p), v);
    }
    let before: HashMap<u64, Pfn> = model
        .keys()
        .map(|&p| (p, a.translate(va(p)).unwrap().0))
        .collect();
    a.add_vma(Vma::new(va(700), va(1300), Prot::RW, VmaKind::Anon))
        .unwrap();
    a.move_ptes(&mut env, va(0), va(700), 600 * PAGE_SIZE)
        .unwrap();
    a.unmap(&mut env, va(0), va(600)).unwrap();
    env.walk_all(&a);
    for p in 0..600 {
        match model.get(&p) {
            Some(&v) => {
                let (pfn, _) = a.translate(va(700 + p)).unwrap();
                assert_eq!(pfn, before[&p], "page {p} kept its frame");
                let f = env.memmap.page_folio(pfn).unwrap();
                assert_eq!((f.ref_count(), f.mapcount()), (1, 1), "page {p}");
                assert_eq!(read_u64(&mut env, &mut a, va(700 + p)), v);
            }
            None => assert_eq!(read_u64(&mut env, &mut a, va(700 + p)), 0),
        }
    }
    assert!(a.translate(va(1)).is_none());
    let mut child = a.fork(&mut env, None).unwrap();
    child.asid = Asid(2);
    write_u64(&mut env, &mut child, va(701), 5);
    assert_eq!(read_u64(&mut env, &mut a, va(701)), 1001);
    assert_eq!(read_u64(&mut env, &mut child, va(701)), 5);
    env.walk_all(&a);
    env.walk_all(&child);
    child.teardown(&mut env);
    a.teardown(&mut env);
}

on_both_formats!(move_ptes_keeps_pages: move_ptes_keeps_pages_x86_64, move_ptes_keeps_pages_aarch64);

/// A move whose destination tables cannot be allocated fails before any
/// entry leaves the source: every page still reads its value where it
/// was, and nothing leaks once memory is back.
fn move_without_memory_moves_nothing<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<F>(&mut env, 1);
    a.add_vma(Vma::new(va(0), va(64), Prot::RW, VmaKind::Anon))
        .unwrap();
    for p in 0..64 {
        write_u64(&mut env, &mut a, va(p), 7000 + p);
    }
    // Another last-level table's range: the move needs a new table.
    a.add_vma(Vma::new(va(1024), va(1088), Prot::RW, VmaKind::Anon))
        .unwrap();
    let mut held = Vec::new();
    while let Some(pfn) = env.buddy.alloc(folium_mm::Order::of(0)) {
        held.push(pfn);
    }
    assert_eq!(
        a.move_ptes(&mut env, va(0), va(1024), 64 * PAGE_SIZE),
        Err(FaultError::OutOfMemory)
    );
    for pfn in held {
        env.buddy.free(pfn, folium_mm::Order::of(0)).unwrap();
    }
    for p in 0..64 {
        assert!(a.translate(va(1024 + p)).is_none(), "page {p} moved");
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 7000 + p, "page {p}");
    }
    env.walk_all(&a);
    a.teardown(&mut env);
}

on_both_formats!(
    move_without_memory_moves_nothing: move_without_memory_moves_nothing_x86_64,
    move_without_memory_moves_nothing_aarch64
);

/// `allows`, the check user copies make: every byte of the range inside
/// areas whose rights allow the access, across area boundaries.
fn allows_needs_every_byte_covered<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<F>(&mut env, 1);
    a.add_vma(Vma::new(va(1), va(10), Prot::RW, VmaKind::Anon))
        .unwrap();
    a.add_vma(Vma::new(va(10), va(20), Prot::READ, VmaKind::Anon))
        .unwrap();
    a.add_vma(Vma::new(va(30), va(40), Prot::NONE, VmaKind::Anon))
        .unwrap();
    let p = PAGE_SIZE;
    assert!(a.allows(va(1), 19 * p, Access::Read), "two areas, readable");
    assert!(
        !a.allows(va(1), 19 * p, Access::Write),
        "the second is read-only"
    );
    assert!(a.allows(va(1), 9 * p, Access::Write), "the first alone");
    assert!(!a.allows(va(10) - 1, 2, Access::Write), "two bytes across");
    assert!(a.allows(va(10) - 1, 1, Access::Write), "the last byte");
    assert!(!a.allows(va(15), 10 * p, Access::Read), "into the gap");
    assert!(
        !a.allows(va(0), p + 1, Access::Read),
        "from below the first"
    );
    assert!(!a.allows(va(30), 8, Access::Read), "PROT_NONE");
    assert!(!a.allows(va(21), 8, Access::Read), "nothing there");
    assert!(a.allows(va(25), 0, Access::Write), "an empty range");
    assert!(!a.allows(va(2), u64::MAX, Access::Read), "wraps around");
    a.teardown(&mut env);
}

on_both_formats!(
    allows_needs_every_byte_covered: allows_needs_every_byte_covered_x86_64,
    allows_needs_every_byte_covered_aarch64
);
