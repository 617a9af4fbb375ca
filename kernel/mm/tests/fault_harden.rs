//! Host tests of two fault-path duties on both PTE formats: a fault on a
//! present but old entry sets its access flag (arm64 without hardware
//! access-flag management would otherwise fault forever), and a folio is
//! made visible to instruction fetches exactly when it is first mapped
//! executable after the kernel filled it (zero-fill, copy-on-write copy,
//! `mprotect` adding exec, a kernel write), as Linux's
//! `__sync_icache_dcache` with `PG_dcache_clean` does.

use folium_mm::Pfn;
use folium_mm::aspace::{Access, AddressSpace};
use folium_mm::pgtable::{PageTable, Pte, PteFormat};
use folium_mm::vma::{Prot, Vma, VmaKind};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, new_space, read_u64, set_sizes, va, write_u64};

const FRAMES: u64 = 4096;

/// A second handle on `a`'s tree, standing for the hardware and for a
/// reclaim scan that ages entries behind the mm's back.
fn raw_handle<F: PteFormat>(env: &HostEnv, a: &AddressSpace<F>) -> PageTable<F> {
    use folium_mm::env::MmEnv;
    // SAFETY: `a`'s live tree in the arena; the tests change entries
    // through it only while `a` does nothing.
    unsafe { PageTable::<F>::new(a.root(), env.linear()) }
}

fn raw<F: PteFormat>(pt: &PageTable<F>, page: u64) -> Pte {
    pt.pte(pt.pte_slot(va(page)).expect("a table"))
}

/// Clears the accessed flag of the entry of `page` (keeping the contiguous
/// hint and everything else).
fn make_old<F: PteFormat>(pt: &mut PageTable<F>, page: u64) {
    let slot = pt.pte_slot(va(page)).unwrap();
    let e = pt.pte(slot);
    pt.set_pte(slot, F::pte_mkold(e));
}

fn old_entries_become_young<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 16);
    anon(&mut a, 40, 2);
    a.add_vma(Vma::new(va(60), va(61), Prot::RX, VmaKind::Anon))
        .unwrap();
    for p in 0..16 {
        write_u64(&mut env, &mut a, va(p), p);
    }
    write_u64(&mut env, &mut a, va(40), 40);
    a.write_bytes(&mut env, va(60), &[1, 2, 3, 4]).unwrap();
    let mut pt = raw_handle(&env, &a);
    let arm = F::CONT_ENTRIES > 1;
    // An order-0 page, a code page: the fault sets the flag (a read, an
    // instruction fetch), and the entry is otherwise unchanged.
    for (page, access) in [(40, Access::Read), (60, Access::Exec)] {
        let before = raw(&pt, page);
        make_old(&mut pt, page);
        assert!(!F::pte_young(raw(&pt, page)));
        a.handle_fault(&mut env, va(page), access).unwrap();
        assert_eq!(
            raw(&pt, page),
            before,
            "page {page}: young again, nothing else"
        );
    }
    // One entry of a folded block (arm64) old, the other 15 young: the
    // block's gathered state says young, the entry's own does not, and
    // the entry's decides.
    make_old(&mut pt, 5);
    assert!(!F::pte_young(raw(&pt, 5)));
    a.handle_fault(&mut env, va(5), Access::Read).unwrap();
    assert!(F::pte_young(raw(&pt, 5)), "{:#x}", raw(&pt, 5));
    // The whole block old: the flag comes back on every entry, folded.
    for p in 0..16 {
        make_old(&mut pt, p);
    }
    a.handle_fault(&mut env, va(9), Access::Read).unwrap();
    for p in 0..16 {
        let e = raw(&pt, p);
        assert_eq!(F::pte_young(e), arm || p == 9, "page {p}: {e:#x}");
        assert_eq!(F::pte_cont(e), arm, "page {p}: {e:#x}");
    }
    // Old and write-protected (shared after fork): a read only makes it
    // young; a write still copies.
    let c = a.fork(&mut env, None).unwrap();
    make_old(&mut pt, 40);
    a.handle_fault(&mut env, va(40), Access::Read).unwrap();
    let e = raw(&pt, 40);
    assert!(F::pte_young(e) && !F::pte_writable(e), "{e:#x}");
    assert_eq!(read_u64(&mut env, &mut a, va(40)), 40);
    c.teardown(&mut env);
    a.teardown(&mut env);
}

on_both_formats!(old_entries_become_young: old_entries_become_young_x86_64, old_entries_become_young_aarch64);

/// The syncs recorded since the last call: (frame, pages, first word).
fn syncs(env: &HostEnv) -> Vec<(Pfn, u64, u64)> {
    env.icache_syncs.borrow_mut().drain(..).collect()
}

fn exec_mappings_sync_once<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let rwx = Prot::from_bits(7).unwrap();
    let mut a = new_space::<F>(&mut env, 1);
    // Data pages: faults, copies and mprotect without exec never sync.
    anon(&mut a, 0, 16);
    write_u64(&mut env, &mut a, va(0), 0xc0de);
    write_u64(&mut env, &mut a, va(3), 0x33);
    let head = a.translate(va(0)).unwrap().0;
    a.protect(&mut env, va(0), va(16), Prot::READ).unwrap();
    assert_eq!(syncs(&env), []);
    // mprotect adding exec: the folio, once, with the data it holds.
    a.protect(&mut env, va(0), va(16), Prot::RX).unwrap();
    assert_eq!(syncs(&env), [(head, 16, 0xc0de)]);
    // Exec again (or still): already synced.
    a.protect(&mut env, va(0), va(16), Prot::READ).unwrap();
    a.protect(&mut env, va(0), va(16), Prot::RX).unwrap();
    assert_eq!(syncs(&env), []);
    // Copy-on-write of an executable page: the copy is synced after it
    // was written (its first word is the copied one, not the arena's
    // garbage) and before it is mapped.
    let mut c = a.fork(&mut env, None).unwrap();
    assert_eq!(syncs(&env), [], "fork writes no data");
    c.protect(&mut env, va(0), va(16), rwx).unwrap();
    assert_eq!(syncs(&env), [], "synced already");
    c.handle_fault(&mut env, va(3), Access::Write).unwrap();
    let copy = c.translate(va(3)).unwrap().0;
    assert_ne!(copy, head + 3);
    assert_eq!(syncs(&env), [(copy, 1, 0x33)]);
    c.teardown(&mut env);
    // A fresh executable folio: synced once, after zeroing.
    a.add_vma(Vma::new(va(32), va(48), rwx, VmaKind::Anon))
        .unwrap();
    a.handle_fault(&mut env, va(33), Access::Write).unwrap();
    let fresh = a.translate(va(32)).unwrap().0;
    assert_eq!(syncs(&env), [(fresh, 16, 0)]);
    a.handle_fault(&mut env, va(40), Access::Write).unwrap();
    assert_eq!(syncs(&env), [], "same folio");
    // The kernel writes code into the mapped folio (program loading):
    // synced again, with the new bytes.
    a.write_bytes(&mut env, va(32), &0x1234u64.to_le_bytes())
        .unwrap();
    assert_eq!(syncs(&env), [(fresh, 16, 0x1234)]);
    // Taking exec away, and data faults (copies of the shared folio):
    // nothing.
    a.protect(&mut env, va(0), va(16), Prot::RW).unwrap();
    write_u64(&mut env, &mut a, va(5), 1);
    write_u64(&mut env, &mut a, va(6), 1);
    assert_eq!(syncs(&env), []);
    // The zero page mapped executable: synced once, ever.
    a.add_vma(Vma::new(va(64), va(66), Prot::RX, VmaKind::Anon))
        .unwrap();
    a.handle_fault(&mut env, va(64), Access::Exec).unwrap();
    a.handle_fault(&mut env, va(65), Access::Read).unwrap();
    assert_eq!(a.translate(va(65)).unwrap().0, env.zero);
    assert_eq!(syncs(&env), [(env.zero, 1, 0)]);
    a.teardown(&mut env);
}

on_both_formats!(exec_mappings_sync_once: exec_mappings_sync_once_x86_64, exec_mappings_sync_once_aarch64);
