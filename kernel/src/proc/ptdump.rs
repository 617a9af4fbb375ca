//! The contents of `/sys/kernel/mm/folium/ptdump` and `.../mmview`: the
//! calling process's user page tables, as of the open, in the layout of
//! Linux's arm64 page-table dump and as per-folio records
//! ([`folium_mm::ptdump`] has both formats). Any program reads them to
//! show its own address space; `cargo xtask mmview` draws the records.
//!
//! The walk reads the caller's tree and, for the `maps` census, every other
//! live process's, through the roots published in the process table (as
//! the deferred split does), and the memmap; it changes nothing. Output
//! stops after [`folium_mm::ptdump::MAX_LINES`] lines with a line saying
//! where.

use alloc::string::String;
use alloc::vec::Vec;

use folium_mm::PhysAddr;
use folium_mm::env::MmEnv;
use folium_mm::pgtable::PageTable;
use folium_mm::ptdump::Dump;

use super::PROCS;
use crate::arch::KernelPteFormat;
use crate::memory::frames;
use crate::memory::uspace::{KernelEnv, USER_END};

/// Which of the two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `ptdump`: arm64-ptdump lines.
    Ptdump,
    /// `mmview`: one record per run of pages of one folio.
    Mmview,
}

/// The file's text for the running process (a comment saying there is
/// none if called outside one).
pub fn generate(view: View) -> String {
    // It reads other processes' tables: the other CPUs wait.
    crate::smp::stop_others(|| generate_stopped(view))
}

fn generate_stopped(view: View) -> String {
    let (me, name, mine, others) = {
        let g = PROCS.lock();
        let Some(me) = g.current() else {
            return String::from("# no process\n");
        };
        let info = g.procs.get(&me);
        let mine = info.and_then(|p| p.pt_root);
        // Each other space once (a vfork child shares its parent's).
        let others: Vec<PhysAddr> = g
            .live_roots()
            .into_iter()
            .filter(|r| Some(*r) != mine)
            .collect();
        (
            me,
            info.map(|p| p.name.clone()).unwrap_or_default(),
            info.and_then(|p| p.pt_root),
            others,
        )
    };
    let Some(mine) = mine else {
        return String::from("# no address space\n");
    };
    let linear = frames::linear();
    // SAFETY: each root is a live process's page table, published while
    // its space exists and withdrawn before teardown frees it; every table
    // is RAM in the linear map. The handles only read, and nothing changes
    // any tree meanwhile: the dump has no preemption point, the other CPUs
    // are stopped, it runs inside the caller's own syscall, outside any
    // address-space operation of its own, and another process's
    // operation is at worst stopped at a preemption point, between two
    // whole tables.
    let table = unsafe { PageTable::<KernelPteFormat>::new(mine, linear) };
    let tables: Vec<PageTable<KernelPteFormat>> = others
        .iter()
        // SAFETY: as above.
        .map(|&r| unsafe { PageTable::new(r, linear) })
        .collect();
    let refs: Vec<&PageTable<KernelPteFormat>> = tables.iter().collect();
    let mut dump = Dump::new(&table, USER_END);
    dump.memmap = Some(frames::memmap());
    dump.others = &refs;
    dump.zero_pfn = Some(KernelEnv.zero_pfn());
    let mut text = String::new();
    let _ = match view {
        View::Ptdump => dump.ptdump(&alloc::format!("User space: pid {me} ({name})"), &mut text),
        View::Mmview => dump.mmview(&alloc::format!("mmview pid={me} comm={name}"), &mut text),
    };
    text
}
