//! Host tests of fault-path duties on both PTE formats: a fault on a
//! present but old entry sets its access flag (arm64 without hardware
//! access-flag management would otherwise fault forever).

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
