//! The kernel side of the mm audit ([`folium_mm::audit`]): gathers every
//! live page-table root (each process's, the kernel's own trees) and runs
//! the audit over the global allocator's memmap. Served as
//! `/sys/kernel/mm/folium/audit` (reading it runs the audit and shows the
//! report: `audit: ok` or `audit: FAILED: N findings`, the totals, one
//! line per finding), and run after every kernel self-test.
//!
//! Exactness: the audit runs inside one syscall (or between self-tests)
//! with the other CPUs stopped (`smp::stop_others`) and interrupts masked
//! by the allocator's lock, every CPU's page list locked as well
//! (`frames::with_all_lists`: a self-test's audit does not stop the
//! others, whose lists change block heads without the allocator's lock). A process stopped at a preemption point
//! inside an address-space operation may hold references its tables do
//! not show (a gather's, a fork's copy in progress), so [`text`] first
//! lets every such operation on this CPU reach its end
//! ([`uspace::mm_quiesce`]) and runs only when none is stopped inside
//! one anywhere (retrying for up to 2 s): then no gather or half-done
//! fault is in flight, and every reference to an anonymous folio is one
//! of its mappings (see the mm crate's doc).

use alloc::string::String;
use alloc::vec::Vec;

use folium_mm::PhysAddr;
use folium_mm::audit::{Report, Trees, audit};
use folium_mm::pgtable::PageTable;

use super::uspace::{self, USER_END};
use super::{frames, kmap};
use crate::arch::KernelPteFormat;

/// Why the audit did not run.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRun {
    /// No room on the kernel heap for its counters (4 bytes per frame).
    NoMemory,
}

/// Runs the audit with `user_roots` as every live user address space.
///
/// The roots must be live trees nothing modifies during the call (see the
/// module doc): every process's published root, or a space a self-test
/// holds.
pub fn run(user_roots: &[PhysAddr]) -> Result<Report, NotRun> {
    let nr = frames::memmap().nr_pages() as usize;
    let bytes = nr * size_of::<u32>();
    let mut scratch: Vec<u32> = Vec::new();
    if !crate::heap::can_allocate(bytes) || scratch.try_reserve_exact(nr).is_err() {
        return Err(NotRun::NoMemory);
    }
    scratch.resize(nr, 0);
    let linear = frames::linear();
    // SAFETY: each user root is a live tree (the caller's contract), each
    // kernel root one of the kernel's own, which live for the whole run;
    // every table is RAM in the linear map, and the handles only read
    // while nothing changes any tree (module doc).
    let tree = |r: PhysAddr| unsafe { PageTable::<KernelPteFormat>::new(r, linear) };
    let user: Vec<PageTable<KernelPteFormat>> = user_roots.iter().map(|&r| tree(r)).collect();
    let kernel: Vec<PageTable<KernelPteFormat>> = kmap::table_roots().map(tree).collect();
    let user_refs: Vec<&PageTable<KernelPteFormat>> = user.iter().collect();
    let kernel_refs: Vec<&PageTable<KernelPteFormat>> = kernel.iter().collect();
    let trees = Trees {
        user: &user_refs,
        user_end: USER_END,
        kernel: &kernel_refs,
        zero_pfn: uspace::zero_pfn(),
    };
    // Every CPU's page list locked too: their allocations and frees
    // change block heads without the allocator's lock.
    let report = frames::with_all_lists(|b, pcp_pages| audit(b, pcp_pages, &trees, &mut scratch));
    report.ok_or(NotRun::NoMemory)
}

/// The text of `/sys/kernel/mm/folium/audit`: the audit of every
/// process's address space.
pub fn text() -> String {
    let mut out = String::new();
    // Processes on other CPUs stop where their tables are whole; the
    // audit runs once none of them stopped inside an mm operation (where
    // a gather may hold references its tables no longer show).
    let deadline = crate::time::monotonic_ns() + 2_000_000_000;
    let report = loop {
        // Lets processes switched out on this CPU inside an operation
        // finish it; those on other CPUs are waited for by the retries.
        let _ = uspace::mm_quiesce();
        let report = crate::smp::stop_others(|| {
            if uspace::mm_busy() {
                return None;
            }
            let (roots, _) = crate::proc::page_table_roots(0);
            Some(run(&roots))
        });
        if let Some(r) = report {
            break r;
        }
        if crate::time::monotonic_ns() > deadline {
            out.push_str("audit: not run: a process is inside an mm operation\n");
            return out;
        }
        crate::smp::park_if_asked();
        crate::smp::run_posted_calls();
        core::hint::spin_loop();
    };
    match report {
        Ok(r) => {
            let _ = r.write(&mut out);
        }
        Err(NotRun::NoMemory) => out.push_str("audit: not run: no memory for its counters\n"),
    }
    out
}

kernel_test!(
    fn audit_balances_and_sees_a_corrupted_count() {
        use folium_mm::VirtAddr;
        use folium_mm::audit::Finding;
        use folium_mm::env::MmEnv;
        use folium_mm::folio::Folio;
        use folium_mm::vma::{Prot, Vma, VmaKind};
        let env = &mut uspace::KernelEnv;
        let before = run(&[]).map_err(|e| alloc::format!("{e:?}"))?;
        check!(before.ok(), "{:?}", before.findings);
        let mut space = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
        let base = VirtAddr::new(0x40_0000);
        check!(
            space
                .add_vma(Vma::new(base, base + 0x10_0000, Prot::RW, VmaKind::Anon))
                .is_ok()
        );
        for k in 0..8u64 {
            check!(space.write_bytes(env, base + k * 0x8000, &[1]).is_ok());
        }
        let r = run(&[space.root()]);
        // Leaving the space out: its tables look leaked, its folios too.
        let without = run(&[]);
        // One reference too many is named.
        let head = space
            .translate(base)
            .and_then(|(pfn, _)| frames::memmap().page_folio(pfn))
            .map(|f| f.pfn());
        let bad = head.map(|head| {
            if let Some(f) = frames::memmap().page_folio(head) {
                f.ref_add(1);
            }
            let bad = run(&[space.root()]);
            // SAFETY: the reference taken just above, ended here.
            env.folio_put(unsafe { Folio::from_raw(head) });
            bad
        });
        // Everything is measured: give the space back before checking.
        space.teardown(env);
        let after = run(&[]).map_err(|e| alloc::format!("{e:?}"))?;
        let r = r.map_err(|e| alloc::format!("{e:?}"))?;
        check!(r.ok(), "{:?}", r.findings);
        check_eq!(r.totals.spaces, 1);
        check!(r.totals.entries >= 8);
        check_eq!(
            r.totals.free,
            before.totals.free - r.totals.folio_pages - r.totals.user_tables
        );
        // The tables the walk found are the ones teardown freed.
        check_eq!(
            r.totals.table_pages - after.totals.table_pages,
            r.totals.user_tables
        );
        let without = without.map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            without
                .findings
                .iter()
                .any(|f| matches!(f, Finding::TableLeaked { .. }))
        );
        let head = check_some!(head);
        let bad = check_some!(bad).map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            bad.findings
                .iter()
                .any(|f| matches!(f, Finding::Refcount { head: h, .. } if *h == head)),
            "{:?}",
            bad.findings
        );
        check!(after.ok(), "{:?}", after.findings);
        check_eq!(after.totals.free, before.totals.free);
        Ok(())
    }
);
