//! Host tests of the deferred split on both PTE formats: which unmaps
//! queue a large folio (partial ones; a whole folio in one batch never,
//! per-PTE zap on the way down), that freeing takes a folio off the queue,
//! and that the scan splits a partly mapped folio into order-0 folios
//! that keep their data, rights and exclusivity and gives every unmapped
//! frame back, refusing while a reference or a mapping is unaccounted.

use folium_mm::Pfn;
use folium_mm::aspace::AddressSpace;
use folium_mm::pgtable::PteFormat;
use folium_mm::split::{SplitError, SplitScan};
use folium_mm::vma::{Prot, Vma, VmaKind};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, folio_at, new_space, read_u64, set_sizes, va, write_u64};

/// 16 MiB of RAM.
const FRAMES: u64 = 4096;

/// A space with an anonymous area of `pages` pages at page 0, every page
/// written with `100 + p`, faulted with only `order` allowed.
fn filled<F: PteFormat>(env: &mut HostEnv, asid: u16, order: u8, pages: u64) -> AddressSpace<F> {
    set_sizes(env, "never", &[(order, "always")]);
    let mut a = new_space::<F>(env, asid);
    anon(&mut a, 0, pages);
    for p in 0..pages {
        write_u64(env, &mut a, va(p), 100 + p);
    }
    a
}

fn queue(env: &HostEnv) -> Vec<Pfn> {
    env.buddy.deferred_folios().map(|(h, _)| h).collect()
}

/// (`split`, `split_failed`, `split_deferred`) of `order`.
fn counters(env: &HostEnv, order: u8) -> (u64, u64, u64) {
    env.thp.split_counters(order).unwrap()
}

fn partial_unmap_queues_and_whole_unmap_does_not<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = filled::<F>(&mut env, 1, 4, 48);
    let heads: Vec<Pfn> = (0..3).map(|k| folio_at(&env, &a, k * 16).0).collect();
    // A whole folio in one unmap: one batch, the count goes 16 -> 0.
    a.unmap(&mut env, va(0), va(16)).unwrap();
    assert!(queue(&env).is_empty());
    assert_eq!(counters(&env, 4), (0, 0, 0));
    // Half of one: queued once, with where it is mapped.
    a.unmap(&mut env, va(16), va(24)).unwrap();
    assert_eq!(queue(&env), [heads[1]]);
    let (_, base) = env.buddy.deferred_folios().next().unwrap();
    assert_eq!(base, va(16));
    a.unmap(&mut env, va(24), va(26)).unwrap();
    assert_eq!(counters(&env, 4), (0, 0, 1), "queued once");
    // A partial unmap of a third: both queued, oldest first.
    a.unmap(&mut env, va(47), va(48)).unwrap();
    assert_eq!(queue(&env), [heads[1], heads[2]]);
    // The rest of the second folio: it is freed, and leaves the queue.
    let before = env.free_pages();
    a.unmap(&mut env, va(26), va(32)).unwrap();
    assert_eq!(env.free_pages(), before + 16);
    assert_eq!(queue(&env), [heads[2]]);
    a.teardown(&mut env);
    assert!(queue(&env).is_empty());
}

on_both_formats!(partial_unmap_queues_and_whole_unmap_does_not: partial_unmap_queues_x86_64, partial_unmap_queues_aarch64);

/// Per PTE (Linux before 6.9), a whole-folio unmap passes through "partly
/// mapped" on its way to 0 and queues the folio; the free unqueues it.
#[test]
fn per_pte_zap_queues_on_the_way_down() {
    let mut env = HostEnv::new(FRAMES);
    env.batching = false;
    let mut a = filled::<folium_mm::pgtable::X86_64>(&mut env, 1, 4, 32);
    a.unmap(&mut env, va(0), va(32)).unwrap();
    assert_eq!(counters(&env, 4), (0, 0, 2), "each folio queued once");
    assert!(queue(&env).is_empty(), "and unqueued when freed");
    a.teardown(&mut env);
}

/// A 2 MiB folio with one page left mapped gives back the other 511
/// frames when split; the page left keeps its data, frame, rights and
/// exclusivity (a write reuses it), as an order-0 folio of its own.
fn a_split_frees_all_but_the_mapped_page<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = filled::<F>(&mut env, 1, 9, 512);
    let (head, order, ..) = folio_at(&env, &a, 0);
    assert_eq!(order, 9);
    env.walk_all(&a);
    a.unmap(&mut env, va(0), va(37)).unwrap();
    a.unmap(&mut env, va(38), va(512)).unwrap();
    assert_eq!(queue(&env), [head]);
    let pinned = env.free_pages();
    let scan = env.split_scan(&[&a]);
    assert_eq!(
        scan,
        SplitScan {
            scanned: 1,
            split: 1,
            freed_pages: 511,
            ..SplitScan::default()
        }
    );
    assert_eq!(env.free_pages(), pinned + 511);
    assert_eq!(counters(&env, 9), (1, 0, 1));
    assert!(queue(&env).is_empty());
    assert_eq!(folio_at(&env, &a, 37), (head + 37, 0, 1, 1));
    let pfn = head + 37;
    assert!(env.memmap.page_folio(pfn).unwrap().page_anon_exclusive(pfn));
    assert!(env.memmap.page_folio(pfn).unwrap().test_anon());
    assert_eq!(read_u64(&mut env, &mut a, va(37)), 137);
    write_u64(&mut env, &mut a, va(37), 7);
    assert_eq!(a.translate(va(37)).unwrap().0, pfn, "reused, not copied");
    // The freed frames are really free: the allocator hands them out.
    assert!(env.memmap.page_folio(head).is_none());
    assert!(env.memmap.page_folio(head + 511).is_none());
    a.teardown(&mut env);
}

on_both_formats!(a_split_frees_all_but_the_mapped_page: split_frees_x86_64, split_frees_aarch64);

/// A folio shared by a parent and its child: split only with both spaces
/// in view, each page's counts then being its own mappings; the pages
/// neither maps are freed, the rest stay shared copy-on-write.
fn a_shared_folio_splits_with_every_mapping_counted<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = filled::<F>(&mut env, 1, 4, 16);
    let (head, ..) = folio_at(&env, &a, 0);
    a.unmap(&mut env, va(0), va(4)).unwrap();
    assert_eq!(queue(&env), [head]);
    let mut b = a.fork(&mut env, None).unwrap();
    b.asid = folium_mm::tlb::Asid(2);
    // The child drops pages 4..6 and copies page 8 on a write.
    b.unmap(&mut env, va(4), va(6)).unwrap();
    write_u64(&mut env, &mut b, va(8), 8);
    assert_eq!(folio_at(&env, &a, 6), (head, 4, 21, 21));
    // One space is not the whole picture: the counts fall short.
    let scan = env.split_scan(&[&a]);
    assert_eq!((scan.split, scan.failed), (0, 1));
    assert_eq!(counters(&env, 4), (0, 1, 1));
    assert_eq!(queue(&env), [head], "stays queued");
    let before = env.free_pages();
    let scan = env.split_scan(&[&a, &b]);
    assert_eq!((scan.split, scan.freed_pages), (1, 4));
    assert_eq!(env.free_pages(), before + 4);
    for p in 4..16 {
        let users = 1 + u32::from(p >= 6 && p != 8);
        assert_eq!(
            folio_at(&env, &a, p),
            (head + p, 0, users, users),
            "page {p}"
        );
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 100 + p);
    }
    assert_eq!(read_u64(&mut env, &mut b, va(8)), 8);
    // Still copy-on-write: a write in the parent copies a shared page.
    write_u64(&mut env, &mut a, va(10), 1);
    assert_ne!(a.translate(va(10)).unwrap().0, head + 10);
    assert_eq!(read_u64(&mut env, &mut b, va(10)), 110);
    // Page 8 is the parent's alone now: reused.
    write_u64(&mut env, &mut a, va(8), 2);
    assert_eq!(a.translate(va(8)).unwrap().0, head + 8);
    b.teardown(&mut env);
    a.teardown(&mut env);
}

on_both_formats!(a_shared_folio_splits_with_every_mapping_counted: shared_split_x86_64, shared_split_aarch64);

/// An extra reference (a kernel user, a gather in flight) blocks the
/// split; once it is gone the split goes through.
#[test]
fn a_referenced_folio_is_not_split() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = filled::<folium_mm::pgtable::Aarch64>(&mut env, 1, 5, 32);
    let (head, ..) = folio_at(&env, &a, 0);
    a.unmap(&mut env, va(0), va(31)).unwrap();
    let extra = env.memmap.page_folio(head).unwrap().get();
    assert_eq!(env.split_scan(&[&a]).failed, 1);
    assert_eq!(
        env.buddy.split_folio(head, &[0; 32]),
        Err(SplitError::Busy),
        "counts that miss a mapping"
    );
    let mut counts = [0; 32];
    counts[31] = 1;
    assert_eq!(env.buddy.split_folio(head, &counts), Err(SplitError::Busy));
    assert_eq!(
        env.buddy.split_folio(head, &counts[..16]),
        Err(SplitError::NotLarge)
    );
    assert_eq!(folio_at(&env, &a, 31), (head, 5, 2, 1), "unchanged");
    assert!(!env.buddy.folio_put(extra).freed());
    assert_eq!(env.split_scan(&[&a]).freed_pages, 31);
    assert_eq!(folio_at(&env, &a, 31), (head + 31, 0, 1, 1));
    a.teardown(&mut env);
}

/// A folio queued by hand while fully mapped leaves the queue unsplit.
#[test]
fn a_fully_mapped_folio_leaves_the_queue_unsplit() {
    let mut env = HostEnv::new(FRAMES);
    let a = filled::<folium_mm::pgtable::X86_64>(&mut env, 1, 4, 16);
    let (head, ..) = folio_at(&env, &a, 0);
    assert!(env.buddy.deferred_split_folio(head, va(0)));
    assert!(!env.buddy.deferred_split_folio(head, va(0)), "once");
    let scan = env.split_scan(&[&a]);
    assert_eq!((scan.dequeued, scan.split, scan.failed), (1, 0, 0));
    assert_eq!(folio_at(&env, &a, 3), (head, 4, 16, 16));
    assert!(queue(&env).is_empty());
    // Small folios and free frames are never queued.
    let small = env.buddy.alloc_folio(folium_mm::Order::of(0)).unwrap();
    assert!(!env.buddy.deferred_split_folio(small.pfn(), va(0)));
    assert!(env.buddy.folio_put(small).freed());
    assert!(!env.buddy.deferred_split_folio(head + 4, va(0)), "a tail");
    a.teardown(&mut env);
}

/// The bounded scan the kernel runs in steps looks at exactly `max`
/// queued folios per call (fewer when the queue runs out), oldest first.
#[test]
fn a_bounded_scan_looks_at_max_folios_per_call() {
    let mut env = HostEnv::new(FRAMES);
    let a = filled::<folium_mm::pgtable::X86_64>(&mut env, 1, 4, 48);
    let heads: Vec<Pfn> = (0..3).map(|k| folio_at(&env, &a, 16 * k).0).collect();
    for (k, &h) in heads.iter().enumerate() {
        assert!(env.buddy.deferred_split_folio(h, va(16 * k as u64)));
    }
    let tables = [a.page_table()];
    let step = |env: &mut HostEnv, max| {
        folium_mm::split::deferred_split_scan_some(&mut env.buddy, &tables, &env.thp, max)
    };
    let scan = step(&mut env, 2);
    assert_eq!((scan.scanned, scan.dequeued), (2, 2));
    assert_eq!(queue(&env), [heads[2]], "the oldest two went first");
    let scan = step(&mut env, 0);
    assert_eq!(scan.scanned, 0, "max 0 looks at nothing");
    assert_eq!(queue(&env).len(), 1);
    let scan = step(&mut env, 5);
    assert_eq!((scan.scanned, scan.dequeued), (1, 1));
    assert!(queue(&env).is_empty());
    a.teardown(&mut env);
}

/// Memory full of partly mapped folios: a fault fails, the scan frees
/// the unmapped parts, and the fault then succeeds (the kernel runs the
/// scan before its OOM killer).
#[test]
fn a_scan_makes_room_for_a_fault_that_failed() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = filled::<folium_mm::pgtable::X86_64>(&mut env, 1, 9, 512);
    a.unmap(&mut env, va(1), va(512)).unwrap();
    // Use up every other frame.
    let mut hog = Vec::new();
    while let Some(f) = env.buddy.alloc_folio(folium_mm::Order::of(0)) {
        hog.push(f);
    }
    a.add_vma(Vma::new(va(512), va(513), Prot::RW, VmaKind::Anon))
        .unwrap();
    assert_eq!(
        a.handle_fault(&mut env, va(512), folium_mm::aspace::Access::Write),
        Err(folium_mm::aspace::FaultError::OutOfMemory)
    );
    assert_eq!(env.split_scan(&[&a]).freed_pages, 511);
    write_u64(&mut env, &mut a, va(512), 5);
    assert_eq!(read_u64(&mut env, &mut a, va(0)), 100);
    for f in hog {
        assert!(env.buddy.folio_put(f).freed());
    }
    a.teardown(&mut env);
}
