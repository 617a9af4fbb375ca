//! Self-tests of PCIDs: CR4.PCIDE follows CPUID, each user address space
//! runs under its own PCID in CR3, and a translation changed while its
//! space is not installed is never used stale once the space runs again,
//! checked through the MMU with `copy_from_user`. Without PCIDs the same
//! tests check that CR3 carries no PCID and that nothing changed. Because
//! QEMU's TCG has no PCIDs, the bookkeeping also runs on a model CPU whose
//! TLB keeps entries per PCID, driven by the real mm layer.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use folium_mm::asid::AsidAllocator;
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::memmap::Memmap;
use folium_mm::pgtable::TableAlloc;
use folium_mm::phys::LinearMap;
use folium_mm::tlb::{Asid, TlbOps};
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{Order, Pfn, PhysAddr, VirtAddr};

use super::mm::{
    CR3_NOFLUSH, CR3_PCID, INVPCID_ADDRESS, INVPCID_ALL_NON_GLOBAL, INVPCID_CONTEXT, PcidTlb, TlbHw,
};
use super::{
    asid_bits, copy_from_user, cpu, current_cr3, invpcid_enabled, last_cr3_written, pcid_enabled,
    tlb, user_root,
};
use crate::ktest::TestResult;
use crate::memory::uspace::{self, KernelEnv, UserSpace};

/// The test area: two pages of private anonymous memory.
const DATA: u64 = 0x40_0000;
const DATA2: u64 = DATA + 0x1000;
const DATA_END: u64 = DATA + 0x2000;

const CR3_ROOT: u64 = 0x000f_ffff_ffff_f000;

/// Address spaces torn down (with the empty user half installed first)
/// when the test ends, also on a failed check.
struct Spaces(Vec<UserSpace>);

impl Spaces {
    /// Adds an empty space with the test area.
    fn add(&mut self) -> Result<usize, String> {
        let mut s = uspace::new_space().map_err(|e| format!("{e:?}"))?;
        s.add_vma(Vma::new(
            VirtAddr::new(DATA),
            VirtAddr::new(DATA_END),
            Prot::RW,
            VmaKind::Anon,
        ))
        .map_err(|e| format!("{e:?}"))?;
        self.0.push(s);
        Ok(self.0.len() - 1)
    }
}

impl Drop for Spaces {
    fn drop(&mut self) {
        uspace::deactivate();
        for s in self.0.drain(..) {
            s.teardown(&mut KernelEnv);
        }
    }
}

/// Eight bytes at user address `va` through the MMU of the installed space.
fn load(va: u64) -> Result<u64, usize> {
    let mut b = [0u8; 8];
    match copy_from_user(&mut b, va) {
        0 => Ok(u64::from_le_bytes(b)),
        left => Err(left),
    }
}

kernel_test!(
    fn pcide_follows_cpuid() {
        // CPUID read here, not through `cpu`, as a second path.
        let pcid = core::arch::x86_64::__cpuid(1).ecx & (1 << 17) != 0;
        let invpcid = core::arch::x86_64::__cpuid(0).eax >= 7
            && core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 10) != 0;
        check_eq!(pcid_enabled(), pcid);
        check_eq!(cpu::cr4() >> 17 & 1 == 1, pcid, "CR4.PCIDE");
        check_eq!(invpcid_enabled(), pcid && invpcid);
        check_eq!(asid_bits(), if pcid { 12 } else { 8 });
        println!(
            "    PCID {}, INVPCID {}",
            if pcid {
                "on"
            } else {
                "absent (QEMU's TCG has none)"
            },
            if invpcid { "present" } else { "absent" }
        );
        Ok(())
    }
);

kernel_test!(
    fn each_space_runs_under_its_own_pcid() {
        let mut g = Spaces(Vec::new());
        let (s, t) = (g.add()?, g.add()?);
        let pcid = pcid_enabled();
        uspace::activate(&mut g.0[s]);
        let (cr3_s, written_s) = (current_cr3(), last_cr3_written());
        let asid_s = g.0[s].asid;
        uspace::activate(&mut g.0[t]);
        let cr3_t = current_cr3();
        let asid_t = g.0[t].asid;
        check_eq!(user_root(), (g.0[t].root(), asid_t));
        check_eq!(cr3_s & CR3_ROOT, g.0[s].root().as_u64());
        check_eq!(cr3_t & CR3_ROOT, g.0[t].root().as_u64());
        check!(asid_s != asid_t, "both spaces got {asid_s:?}");
        if pcid {
            check!(
                asid_s != Asid(0) && asid_t != Asid(0),
                "PCID 0 is the kernel's"
            );
            check_eq!(
                cr3_s & CR3_PCID,
                u64::from(asid_s.0),
                "CR3 carries S's PCID"
            );
            check_eq!(
                cr3_t & CR3_PCID,
                u64::from(asid_t.0),
                "CR3 carries T's PCID"
            );
            check_eq!(
                written_s & CR3_NOFLUSH,
                0,
                "a new PCID is flushed on install"
            );
        } else {
            check_eq!(cr3_s & CR3_PCID, 0, "no PCID bits without CR4.PCIDE");
            check_eq!(cr3_t & CR3_PCID, 0);
            check_eq!(written_s & CR3_NOFLUSH, 0);
        }
        // Back to S, nothing changed: same number, and with PCIDs its
        // cached entries are kept (the point of having them).
        uspace::activate(&mut g.0[s]);
        check_eq!(g.0[s].asid, asid_s, "the number is kept");
        check_eq!(
            current_cr3() & CR3_PCID,
            if pcid { u64::from(asid_s.0) } else { 0 }
        );
        check_eq!(
            last_cr3_written() & CR3_NOFLUSH != 0,
            pcid,
            "no-flush reinstall (CR3 written {:#x})",
            last_cr3_written()
        );
        uspace::deactivate();
        check_eq!(
            current_cr3() & CR3_PCID,
            0,
            "the kernel's root runs as PCID 0"
        );
        check_eq!(user_root().1, Asid(0));
        Ok(())
    }
);

kernel_test!(
    fn a_translation_changed_while_uninstalled_is_not_used_stale() {
        const OLD: u64 = 0x01d0_01d0_01d0_01d0;
        const NEW: u64 = 0x0e10_0e10_0e10_0e10;
        const KEEP: u64 = 0x4ee9_4ee9_4ee9_4ee9;
        let env = &mut KernelEnv;
        let mut g = Spaces(Vec::new());
        let (s, t) = (g.add()?, g.add()?);
        let va = VirtAddr::new;
        g.0[s]
            .write_bytes(env, va(DATA), &OLD.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        g.0[s]
            .write_bytes(env, va(DATA2), &KEEP.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        // A child shares page A copy-on-write, so A stays allocated and
        // unchanged: a stale translation would read OLD, not freed memory.
        let child = g.0[s]
            .fork(env, uspace::kernel_half().as_ref())
            .map_err(|e| format!("{e:?}"))?;
        g.0.push(child);
        let c = g.0.len() - 1;
        // Run S and read both pages through the MMU: the TLB may now hold
        // their translations under S's PCID.
        uspace::activate(&mut g.0[s]);
        check_eq!(load(DATA), Ok(OLD));
        check_eq!(load(DATA2), Ok(KEEP));
        let (page_a, _) = check_some!(g.0[s].translate(va(DATA)));
        // Install T; in S, replace A by a copy B (the COW write path, with
        // its flush) and unmap the second page.
        uspace::activate(&mut g.0[t]);
        let asid_s = g.0[s].asid;
        g.0[s]
            .write_bytes(env, va(DATA), &NEW.to_le_bytes())
            .map_err(|e| format!("{e:?}"))?;
        let (page_b, _) = check_some!(g.0[s].translate(va(DATA)));
        check!(page_b != page_a, "the write did not move S to a new page");
        g.0[s]
            .unmap(env, va(DATA2), va(DATA_END))
            .map_err(|e| format!("{e:?}"))?;
        let stale_mark = tlb::is_stale(asid_s);
        // Run S again: the MMU must see B, and no page at DATA2.
        uspace::activate(&mut g.0[s]);
        let written = last_cr3_written();
        check_eq!(g.0[s].asid, asid_s);
        check_eq!(load(DATA), Ok(NEW), "a stale translation to A survived");
        check_eq!(
            load(DATA2),
            Err(8),
            "a stale translation of an unmapped page survived"
        );
        // How the flush reached S's PCID while T ran: INVPCID at once, or
        // a stale mark that made S's install flush (CR3 bit 63 clear).
        if pcid_enabled() && !invpcid_enabled() {
            check!(stale_mark, "S's PCID was not marked for a flush");
            check_eq!(written & CR3_NOFLUSH, 0, "S installed without a flush");
        } else {
            check!(!stale_mark);
        }
        check!(!tlb::is_stale(asid_s), "the mark outlived the install");
        // The child still has A with the old contents.
        let mut b = [0u8; 8];
        check!(g.0[c].read_bytes(&KernelEnv, va(DATA), &mut b));
        check_eq!(u64::from_le_bytes(b), OLD);
        Ok(())
    }
);

// QEMU's TCG has no PCIDs (and flushes its whole TLB on every CR3 load),
// so the test above cannot see a stale entry there. The same bookkeeping
// (`PcidTlb`) therefore also runs on a model CPU whose TLB keeps entries
// per PCID exactly as the SDM allows, driven by the real mm layer.

/// A CPU whose TLB caches translations per PCID and drops them only as
/// the architecture says: a CR3 load without bit 63 drops the new PCID's
/// (everything without PCIDs), `invlpg` the installed PCID's page,
/// INVPCID what its type names, a CR4.PGE toggle everything.
struct ModelCpu {
    pcid: bool,
    cr3: Cell<u64>,
    /// (PCID, page) -> frame.
    tlb: RefCell<BTreeMap<(u16, u64), Pfn>>,
    /// Run at the next CR3 write, before it takes effect: what another
    /// CPU does while this one is in the middle of an install.
    on_cr3: RefCell<Option<alloc::boxed::Box<dyn FnOnce()>>>,
}

impl ModelCpu {
    fn new(pcid: bool) -> Self {
        ModelCpu {
            pcid,
            cr3: Cell::new(0),
            tlb: RefCell::new(BTreeMap::new()),
            on_cr3: RefCell::new(None),
        }
    }

    fn pcid_now(&self) -> u16 {
        if self.pcid {
            (self.cr3.get() & CR3_PCID) as u16
        } else {
            0
        }
    }

    fn drop_pcid(&self, p: u16) {
        self.tlb.borrow_mut().retain(|(q, _), _| *q != p);
    }

    /// A load at `va` with `space` installed: the cached translation if
    /// there is one, else a walk of the tables, whose result is cached.
    fn load(&self, space: &UserSpace, va: u64) -> Result<Option<Pfn>, String> {
        if self.cr3.get() & CR3_ROOT != space.root().as_u64() {
            return Err(format!(
                "model: space not installed (CR3 {:#x})",
                self.cr3.get()
            ));
        }
        let key = (self.pcid_now(), va & !0xfff);
        if let Some(&p) = self.tlb.borrow().get(&key) {
            return Ok(Some(p));
        }
        let pfn = space.translate(VirtAddr::new(va)).map(|(p, _)| p);
        if let Some(p) = pfn {
            self.tlb.borrow_mut().insert(key, p);
        }
        Ok(pfn)
    }

    fn cached(&self, pcid: u16, va: u64) -> Option<Pfn> {
        self.tlb.borrow().get(&(pcid, va & !0xfff)).copied()
    }
}

impl TlbHw for ModelCpu {
    fn invlpg(&self, va: u64) {
        let key = (self.pcid_now(), va & !0xfff);
        self.tlb.borrow_mut().remove(&key);
    }

    fn reload_cr3(&self) {
        self.drop_pcid(self.pcid_now());
    }

    fn flush_everything(&self) {
        self.tlb.borrow_mut().clear();
    }

    unsafe fn invpcid(&self, kind: u64, pcid: u16, va: u64) {
        match kind {
            INVPCID_ADDRESS => {
                self.tlb.borrow_mut().remove(&(pcid, va & !0xfff));
            }
            INVPCID_CONTEXT => self.drop_pcid(pcid),
            INVPCID_ALL_NON_GLOBAL => self.flush_everything(),
            // Types 2 and others are not used: a #GP-like failure the
            // test sees as an untouched TLB would hide; make it loud.
            _ => panic!("model: INVPCID type {kind}"),
        }
    }

    unsafe fn write_cr3(&self, v: u64) {
        let hook = self.on_cr3.borrow_mut().take();
        if let Some(hook) = hook {
            hook();
        }
        assert!(
            self.pcid || v & (CR3_PCID | CR3_NOFLUSH) == 0,
            "model: PCID bits in CR3 {v:#x} without CR4.PCIDE"
        );
        self.cr3.set(v & !CR3_NOFLUSH);
        if !self.pcid {
            self.flush_everything();
        } else if v & CR3_NOFLUSH == 0 {
            self.drop_pcid(self.pcid_now());
        }
    }
}

/// `TlbOps` for the mm layer: the bookkeeping on the model CPU.
struct ModelOps<'a> {
    st: &'a PcidTlb,
    cpu: &'a ModelCpu,
}

impl TlbOps for ModelOps<'_> {
    fn flush_page(&self, asid: Asid, va: VirtAddr) {
        self.st.flush_page(self.cpu, asid, va);
    }
    fn flush_range(&self, asid: Asid, start: VirtAddr, end: VirtAddr) {
        self.st.flush_range(self.cpu, asid, start, end);
    }
    fn flush_asid(&self, asid: Asid) {
        self.st.flush_asid(self.cpu, asid);
    }
}

/// The kernel's frames with the model's TLB.
struct ModelEnv<'a>(ModelOps<'a>);

// SAFETY: forwards to the kernel's table frames (KernelEnv's impl).
unsafe impl TableAlloc for ModelEnv<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        KernelEnv.alloc_table()
    }
    unsafe fn zero_table(&mut self, table: PhysAddr, ptr: *mut u8) {
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { KernelEnv.zero_table(table, ptr) };
    }
}

impl MmEnv for ModelEnv<'_> {
    fn memmap(&self) -> &Memmap {
        KernelEnv.memmap()
    }
    fn linear(&self) -> LinearMap {
        KernelEnv.linear()
    }
    fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        KernelEnv.alloc_folio(order)
    }
    fn folio_put_refs(&mut self, folio: Folio, nr: u32) {
        KernelEnv.folio_put_refs(folio, nr);
    }
    fn free_table(&mut self, table: PhysAddr) {
        KernelEnv.free_table(table);
    }
    fn tlb(&self) -> &dyn TlbOps {
        &self.0
    }
    fn thp(&self) -> &folium_mm::thp::ThpPolicy {
        KernelEnv.thp()
    }
    fn zero_pfn(&self) -> folium_mm::Pfn {
        KernelEnv.zero_pfn()
    }
    fn deferred_split_folio(&mut self, head: folium_mm::Pfn, base: VirtAddr) -> bool {
        KernelEnv.deferred_split_folio(head, base)
    }
}

/// What `uspace::activate` does, on the model: `between` runs where the
/// CPU may still cache entries for the outgoing space, just before CR3
/// is loaded.
fn model_activate(
    st: &PcidTlb,
    cpu: &ModelCpu,
    ids: &mut AsidAllocator,
    space: &mut UserSpace,
    between: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let act = ids.activate(0, &mut space.asid_tag);
    if act.flush_all {
        st.flush_all(cpu);
    }
    if act.fresh {
        st.flush_on_install(act.asid);
    }
    space.asid = act.asid;
    between()?;
    // SAFETY: the model's CR3 is a number in a Cell; nothing is installed
    // on the real CPU.
    unsafe { st.install(cpu, space.root(), act.asid) };
    Ok(())
}

fn err(e: impl core::fmt::Debug) -> String {
    format!("{e:?}")
}

/// Runs `body` with spaces it creates on the model (`pcid`, `invpcid`),
/// then tears them all down, whatever `body` returned.
fn on_model(
    pcid: bool,
    invpcid: bool,
    body: impl FnOnce(&PcidTlb, &ModelCpu, &mut ModelEnv, &mut Vec<UserSpace>) -> TestResult,
) -> TestResult {
    let st = PcidTlb::new();
    // SAFETY: this state is only ever used with the model CPU, which
    // implements PCIDs and INVPCID in every configuration.
    unsafe { st.configure(pcid, invpcid) };
    let cpu = ModelCpu::new(pcid);
    let mut env = ModelEnv(ModelOps { st: &st, cpu: &cpu });
    let mut spaces = Vec::new();
    let r = body(&st, &cpu, &mut env, &mut spaces);
    for s in spaces.drain(..) {
        s.teardown(&mut env);
    }
    r.map_err(|e| format!("(model: PCID {pcid}, INVPCID {invpcid}) {e}"))
}

/// A new space with the test area and `value` at DATA, on the model.
fn model_space(env: &mut ModelEnv, value: u64) -> Result<UserSpace, String> {
    let mut s = uspace::new_space().map_err(err)?;
    s.add_vma(Vma::new(
        VirtAddr::new(DATA),
        VirtAddr::new(DATA_END),
        Prot::RW,
        VmaKind::Anon,
    ))
    .map_err(err)?;
    let r = s.write_bytes(env, VirtAddr::new(DATA), &value.to_le_bytes());
    if let Err(e) = r {
        s.teardown(env);
        return Err(err(e));
    }
    Ok(s)
}

const CONFIGS: [(bool, bool); 3] = [(true, true), (true, false), (false, false)];

/// Two spaces on the model, S holding 1 at DATA and 7s at DATA2, T
/// holding 2 at DATA: their indexes in `v`, (S, T).
fn two_spaces(env: &mut ModelEnv, v: &mut Vec<UserSpace>) -> Result<(usize, usize), String> {
    v.push(model_space(env, 1)?);
    v.push(model_space(env, 2)?);
    let (s, t) = (v.len() - 2, v.len() - 1);
    v[s].write_bytes(env, VirtAddr::new(DATA2), &[7; 8])
        .map_err(err)?;
    Ok((s, t))
}

kernel_test!(
    fn model_flushes_reach_a_space_that_is_not_installed() {
        for (pcid, invpcid) in CONFIGS {
            on_model(pcid, invpcid, |st, cpu, env, v| {
                let mut ids = AsidAllocator::new(if pcid { 12 } else { 8 }, 1);
                let none = || Ok(());
                let (s, t) = two_spaces(env, v)?;
                let child = v[s]
                    .fork(env, uspace::kernel_half().as_ref())
                    .map_err(err)?;
                v.push(child);
                model_activate(st, cpu, &mut ids, &mut v[s], none)?;
                let a = check_some!(cpu.load(&v[s], DATA)?);
                check!(cpu.load(&v[s], DATA2)?.is_some());
                let pcid_s = cpu.pcid_now();
                model_activate(st, cpu, &mut ids, &mut v[t], none)?;
                check!(cpu.load(&v[t], DATA)?.is_some());
                // In S, not installed: COW-replace A, unmap the second page.
                v[s].write_bytes(env, VirtAddr::new(DATA), &[9; 8])
                    .map_err(err)?;
                let (b, _) = check_some!(v[s].translate(VirtAddr::new(DATA)));
                check!(b != a, "the write did not move S to a new page");
                v[s].unmap(env, VirtAddr::new(DATA2), VirtAddr::new(DATA_END))
                    .map_err(err)?;
                if invpcid {
                    check_eq!(cpu.cached(pcid_s, DATA), None, "INVPCID left S's entry");
                }
                model_activate(st, cpu, &mut ids, &mut v[s], none)?;
                check_eq!(
                    cpu.load(&v[s], DATA)?,
                    Some(b),
                    "a stale translation to A survived"
                );
                check_eq!(
                    cpu.load(&v[s], DATA2)?,
                    None,
                    "a stale translation of DATA2 survived"
                );
                // Switching away and back without changes keeps S's entries
                // with PCIDs (the point of them), drops them without.
                model_activate(st, cpu, &mut ids, &mut v[t], none)?;
                model_activate(st, cpu, &mut ids, &mut v[s], none)?;
                check_eq!(
                    cpu.cached(pcid_s, DATA).is_some(),
                    pcid,
                    "S's entries after T ran"
                );
                check_eq!(st.last_cr3() & CR3_NOFLUSH != 0, pcid);
                Ok(())
            })?;
        }
        Ok(())
    }
);

kernel_test!(
    fn model_a_rollover_keeps_the_installed_number_and_recycles_the_rest() {
        for (pcid, invpcid) in CONFIGS {
            on_model(pcid, invpcid, |st, cpu, env, v| {
                // ASIDs 1..=3: the fourth space rolls the generation over.
                let mut ids = AsidAllocator::new(2, 1);
                for i in 0..4 {
                    v.push(model_space(env, 0x100 + i)?);
                }
                for i in [0, 1, 2, 0] {
                    model_activate(st, cpu, &mut ids, &mut v[i], || Ok(()))?;
                    check!(cpu.load(&v[i], DATA)?.is_some());
                }
                let old = v[0].asid;
                check_eq!(old, Asid(1));
                // Space 3 rolls the generation over while space 0 is
                // installed, which may cache its entries again after the
                // rollover's flush: its number stays its own (reserved), and
                // space 3 gets one of the others.
                let (installed, rest) = v.split_at_mut(3);
                model_activate(st, cpu, &mut ids, &mut rest[0], || {
                    cpu.load(&installed[0], DATA).map(|_| ())
                })?;
                check!(v[3].asid != old, "the installed space's number is reserved");
                let (own, _) = check_some!(v[3].translate(VirtAddr::new(DATA)));
                check_eq!(
                    cpu.load(&v[3], DATA)?,
                    Some(own),
                    "space 3 under a recycled PCID"
                );
                // Space 0 comes back with the same number and its own page.
                model_activate(st, cpu, &mut ids, &mut v[0], || Ok(()))?;
                check_eq!(v[0].asid, old);
                let (own0, _) = check_some!(v[0].translate(VirtAddr::new(DATA)));
                check_eq!(cpu.load(&v[0], DATA)?, Some(own0));
                // A space whose old number was recycled gets another one,
                // and its own page, not space 3's.
                let recycled = (1..3).find(|&i| v[i].asid == v[3].asid);
                let i = check_some!(recycled, "space 3 took space 1's or 2's number");
                model_activate(st, cpu, &mut ids, &mut v[i], || Ok(()))?;
                check!(v[i].asid != v[3].asid && v[i].asid != old);
                let (own_i, _) = check_some!(v[i].translate(VirtAddr::new(DATA)));
                check_eq!(cpu.load(&v[i], DATA)?, Some(own_i));
                Ok(())
            })?;
        }
        Ok(())
    }
);

kernel_test!(
    fn model_a_flush_left_for_a_cpu_that_switched_away_is_taken_at_install() {
        for (pcid, invpcid) in CONFIGS {
            on_model(pcid, invpcid, |st, cpu, env, v| {
                let mut ids = AsidAllocator::new(if pcid { 12 } else { 8 }, 1);
                let none = || Ok(());
                let (s, t) = two_spaces(env, v)?;
                // The model CPU runs S, caches both pages, and leaves S for T.
                model_activate(st, cpu, &mut ids, &mut v[s], none)?;
                check!(cpu.load(&v[s], DATA)?.is_some());
                check!(cpu.load(&v[s], DATA2)?.is_some());
                let (asid, pcid_s) = (v[s].asid, cpu.pcid_now());
                model_activate(st, cpu, &mut ids, &mut v[t], none)?;
                // Another CPU unmaps S's second page: the tables change
                // without the model CPU's flushes (KernelEnv flushes the
                // real CPUs), and what that CPU's `tlb::flush` does for
                // the model CPU, one of the mask, is `defer_flush`: no
                // IPI, since it no longer runs S, only the mark.
                v[s].unmap(
                    &mut KernelEnv,
                    VirtAddr::new(DATA2),
                    VirtAddr::new(DATA_END),
                )
                .map_err(err)?;
                check!(!st.defer_flush(asid), "S not installed: no IPI");
                if pcid {
                    check!(
                        cpu.cached(pcid_s, DATA2).is_some(),
                        "the stale entry is still cached under S's PCID"
                    );
                }
                model_activate(st, cpu, &mut ids, &mut v[s], none)?;
                check_eq!(
                    cpu.load(&v[s], DATA2)?,
                    None,
                    "a stale translation of DATA2 survived the install"
                );
                check_eq!(st.last_cr3() & CR3_NOFLUSH, 0, "the install flushed S");
                check!(st.defer_flush(asid), "S installed: the flush needs an IPI");
                Ok(())
            })?;
        }
        Ok(())
    }
);

kernel_test!(
    fn model_a_flush_during_an_install_interrupts_the_cpu() {
        on_model(true, false, |st, cpu, env, v| {
            let mut ids = AsidAllocator::new(12, 1);
            v.push(model_space(env, 1)?);
            v.push(model_space(env, 2)?);
            let (t, s) = (0, 1);
            model_activate(st, cpu, &mut ids, &mut v[t], || Ok(()))?;
            let outgoing = v[t].asid;
            // Flushes of both spaces arrive while this CPU switches from
            // T to S, after it read its marks and before CR3 changed:
            // it may still walk T's tables and is about to use S's
            // entries, so both must interrupt it (true: an IPI).
            let seen: alloc::rc::Rc<Cell<(bool, bool)>> = alloc::rc::Rc::default();
            let (seen2, st2) = (seen.clone(), st as *const PcidTlb);
            let incoming = ids.activate(0, &mut v[s].asid_tag).asid;
            *cpu.on_cr3.borrow_mut() = Some(alloc::boxed::Box::new(move || {
                // SAFETY: `st` outlives this hook, which runs inside the
                // install below, while `on_model` still holds `st`.
                let st = unsafe { &*st2 };
                seen2.set((st.defer_flush(outgoing), st.defer_flush(incoming)));
            }));
            v[s].asid = incoming;
            // SAFETY: the model's CR3 is a number in a Cell.
            unsafe { st.install(cpu, v[s].root(), incoming) };
            check_eq!(
                seen.get(),
                (true, true),
                "(outgoing T, incoming S) seen running"
            );
            // Afterwards only S counts as running here.
            check!(!st.defer_flush(outgoing), "T no longer installed");
            check!(st.defer_flush(incoming), "S installed");
            Ok(())
        })
    }
);
