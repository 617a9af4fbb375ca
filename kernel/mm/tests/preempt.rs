//! Host tests of the preemption points (`MmEnv::cond_resched`) that long
//! operations offer between page tables: where they are offered, and
//! that a space renumbered at one (an ASID rollover while other tasks
//! ran) has its later flushes, the pending gather's included, in the new
//! number, so no frame is freed while a translation to it may be cached.

use folium_mm::pgtable::{Aarch64, PteFormat, X86_64};
use folium_mm::tlb::{Asid, TlbOps};
use folium_mm::vma::{Prot, Vma, VmaKind};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, new_space, va, write_u64};

/// Pages per last-level table.
const TABLE: u64 = 512;

/// A space (ASID 1) with one written page in each of `tables` tables.
fn spread<F: PteFormat>(env: &mut HostEnv, tables: u64) -> folium_mm::aspace::AddressSpace<F> {
    let mut a = new_space::<F>(env, 1);
    a.add_vma(Vma::new(va(0), va(tables * TABLE), Prot::RW, VmaKind::Anon))
        .unwrap();
    for t in 0..tables {
        write_u64(env, &mut a, va(t * TABLE + 3), t);
    }
    a
}

fn offered_between_tables<F: PteFormat>() {
    let mut env = HostEnv::new(4096);
    let mut a = spread::<F>(&mut env, 4);
    // fork: after each of the 4 tables it copies.
    let child = a.fork(&mut env, None).unwrap();
    assert_eq!(env.resched_calls, 4);
    // mprotect: between tables (3 points for 4 tables).
    env.resched_calls = 0;
    a.protect(&mut env, va(0), va(4 * TABLE), Prot::READ)
        .unwrap();
    assert_eq!(env.resched_calls, 3);
    // munmap and teardown: after each table zapped.
    env.resched_calls = 0;
    a.unmap(&mut env, va(0), va(2 * TABLE)).unwrap();
    assert_eq!(env.resched_calls, 2);
    env.resched_calls = 0;
    child.teardown(&mut env);
    assert_eq!(env.resched_calls, 4);
    a.teardown(&mut env);
}

#[test]
fn offered_between_tables_x86() {
    offered_between_tables::<X86_64>();
}

#[test]
fn offered_between_tables_arm64() {
    offered_between_tables::<Aarch64>();
}

/// munmap of 3 tables; at the first preemption point a rollover flushes
/// everything and the space comes back as ASID 9, whose walks then cache
/// the pages of the tables not zapped yet. The gather must flush those
/// under 9 before it frees them (the environment's free checks the
/// recording TLB).
fn renumbered_mid_unmap<F: PteFormat>() {
    let mut env = HostEnv::new(4096);
    let mut a = spread::<F>(&mut env, 3);
    let pages: Vec<_> = (0..3)
        .map(|t| {
            let v = va(t * TABLE + 3);
            (v, a.translate(v).unwrap().0)
        })
        .collect();
    for &(v, pfn) in &pages {
        env.tlb.touch(Asid(1), v, pfn, true);
    }
    let mut first = true;
    env.resched = Some(Box::new(move |tlb| {
        if !first {
            return None;
        }
        first = false;
        // The rollover flushes everything (only ASID 1 is in use here).
        tlb.flush_asid(Asid(1));
        for &(v, pfn) in &pages[1..] {
            tlb.touch(Asid(9), v, pfn, true);
        }
        Some(Asid(9))
    }));
    a.unmap(&mut env, va(0), va(3 * TABLE)).unwrap();
    assert_eq!(a.asid, Asid(9), "the space runs with its new number");
    assert!(env.tlb.cached(Asid(9)).is_empty());
    assert!(env.tlb.cached(Asid(1)).is_empty());
    // And it is used afterwards: a new page, written and unmapped.
    a.add_vma(Vma::new(va(0), va(TABLE), Prot::RW, VmaKind::Anon))
        .unwrap();
    write_u64(&mut env, &mut a, va(7), 7);
    let pfn = a.translate(va(7)).unwrap().0;
    env.tlb.touch(Asid(9), va(7), pfn, true);
    env.resched = None;
    a.unmap(&mut env, va(0), va(3 * TABLE)).unwrap();
    assert!(env.tlb.cached(Asid(9)).is_empty());
    a.teardown(&mut env);
}

#[test]
fn renumbered_mid_unmap_x86() {
    renumbered_mid_unmap::<X86_64>();
}

#[test]
fn renumbered_mid_unmap_arm64() {
    renumbered_mid_unmap::<Aarch64>();
}
