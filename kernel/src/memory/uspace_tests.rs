//! Self-tests of user address spaces on the real MMU: pages the mm layer
//! maps are read and written through the hardware's own walk (with the
//! user-copy routines, which obey the user's permissions and work under
//! PAN/SMAP), copy-on-write is checked by a real store faulting, and
//! teardown returns every frame.

use folium_mm::VirtAddr;
use folium_mm::aspace::{Access, FaultError};
use folium_mm::vma::{Prot, Vma, VmaKind};

use super::uspace::{self, KernelEnv};
use crate::arch;

const BASE: u64 = 0x40_0000;

fn va(page: u64) -> VirtAddr {
    VirtAddr::new(BASE + page * 4096)
}

/// Loads a u64 from user address `addr` through the MMU; `Err(n)`: `n`
/// bytes were not loaded.
fn user_read(addr: u64) -> Result<u64, usize> {
    let mut b = [0u8; 8];
    match arch::copy_from_user(&mut b, addr) {
        0 => Ok(u64::from_le_bytes(b)),
        left => Err(left),
    }
}

/// Stores a u64 at user address `addr` through the MMU; `Err(n)`: `n`
/// bytes were not stored.
fn user_write(addr: u64, v: u64) -> Result<(), usize> {
    match arch::copy_to_user(addr, &v.to_le_bytes()) {
        0 => Ok(()),
        left => Err(left),
    }
}

kernel_test!(
    fn user_pages_are_walked_by_the_mmu() {
        let env = &mut KernelEnv;
        let mut parent = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            parent
                .add_vma(Vma::new(va(0), va(4), Prot::RW, VmaKind::Anon))
                .is_ok()
        );
        check!(
            parent
                .write_bytes(env, va(0) + 8, &0x1234_5678u64.to_le_bytes())
                .is_ok()
        );
        uspace::activate(&mut parent);
        // The MMU finds what the mm layer wrote, and nothing where it wrote nothing.
        check_eq!(user_read(va(0).as_u64() + 8), Ok(0x1234_5678));
        check_eq!(
            user_read(va(1).as_u64()),
            Err(8),
            "page 1 was never touched"
        );
        check_eq!(
            parent.handle_fault(env, va(9), Access::Read),
            Err(FaultError::Unmapped)
        );
        // Fork: the parent's page is now read-only to the hardware as well.
        let mut child = parent
            .fork(env, uspace::kernel_half().as_ref())
            .map_err(|e| alloc::format!("{e:?}"))?;
        let w = user_write(va(0).as_u64() + 8, 1);
        check_eq!(w, Err(8), "a store to a COW-shared page must fault");
        check_eq!(user_read(va(0).as_u64() + 8), Ok(0x1234_5678));
        // The write fault copies; the store then succeeds.
        check!(parent.handle_fault(env, va(0), Access::Write).is_ok());
        check_eq!(user_write(va(0).as_u64() + 8, 99), Ok(()));
        check_eq!(user_read(va(0).as_u64() + 8), Ok(99));
        // The child still sees the old value, through its own tables.
        uspace::activate(&mut child);
        check_eq!(user_read(va(0).as_u64() + 8), Ok(0x1234_5678));
        check_eq!(user_write(va(0).as_u64() + 8, 5), Err(8));
        uspace::deactivate();
        check_eq!(
            user_read(va(0).as_u64() + 8),
            Err(8),
            "no user half installed"
        );
        child.teardown(env);
        parent.teardown(env);
        Ok(())
    }
);

// A range flush must drop every translation of its range: entries are
// cleared behind the mm layer's back, the hardware shown to still use them,
// then flushed. (QEMU flushes a whole TLB for any range longer than its
// small initial TLB, so it is the short ranges here, and the mmtests on
// `virt -cpu max`, that catch a mis-encoded range operation.)
kernel_test!(
    fn range_flushes_leave_no_stale_translation() {
        use folium_mm::pgtable::{PageTable, Pte};

        const PAGES: u64 = 600;
        let env = &mut KernelEnv;
        let mut space = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            space
                .add_vma(Vma::new(va(0), va(PAGES), Prot::RW, VmaKind::Anon))
                .is_ok()
        );
        for p in 0..PAGES {
            check!(space.write_bytes(env, va(p), &p.to_le_bytes()).is_ok());
        }
        uspace::activate(&mut space);
        // SAFETY: a second handle on this test's own tree, used only while
        // `space` does nothing, to change entries without the flush the mm
        // layer would do (every entry it clears is put back before teardown).
        let mut raw = unsafe {
            PageTable::<arch::KernelPteFormat>::new(space.root(), super::frames::linear())
        };
        // Below and above the x86 ceiling (33) and the arm64 one without
        // range instructions (511), and range lengths of every kind.
        for (first, n) in [
            (5, 1),
            (5, 2),
            (7, 33),
            (7, 34),
            (3, 511),
            (3, 517),
            (0, 600),
        ] {
            // The slots are looked up (and their list allocated) first:
            // between reading the range's ends and clearing the entries
            // the kernel then touches only the last-level tables, so the
            // ends stay in the TLB (QEMU's is direct-mapped: any other page
            // the kernel touches may evict one, heap pages included).
            let last = first + n - 1;
            let mut saved = alloc::vec::Vec::with_capacity(n as usize);
            for p in first..first + n {
                saved.push((raw.pte_slot(va(p)).ok_or("no table")?, Pte::NONE));
            }
            for p in (0..PAGES).filter(|p| !(first..first + n).contains(p)) {
                check_eq!(user_read(va(p).as_u64()), Ok(p), "page {p} before");
            }
            for p in (first..first + n).chain([first]) {
                check_eq!(user_read(va(p).as_u64()), Ok(p), "page {p} before");
            }
            for (slot, pte) in saved.iter_mut() {
                *pte = raw.take_pte(*slot);
            }
            // Still cached: without a flush the hardware may go on using
            // the old entries (QEMU does), so the flush is what is tested.
            for p in [first, last] {
                check_eq!(
                    user_read(va(p).as_u64()),
                    Ok(p),
                    "page {p} stale, unflushed"
                );
            }
            arch::tlb::flush_range(space.asid, va(first), va(first + n));
            for p in first..first + n {
                check_eq!(
                    user_read(va(p).as_u64()),
                    Err(8),
                    "page {p} of {first}+{n} after the flush"
                );
            }
            for (slot, pte) in saved {
                raw.set_pte(slot, pte);
            }
        }
        uspace::deactivate();
        space.teardown(env);
        Ok(())
    }
);

/// True if `rec` is the fault of an access through an entry the MMU holds
/// invalid (arm64: a translation fault at level 3; x86: a #PF whose error
/// code has P clear), not a permission fault on a valid one.
fn not_present_fault(rec: &arch::TrapRecord) -> bool {
    if cfg!(target_arch = "aarch64") {
        // DFSC 0b000111: translation fault, level 3.
        rec.syndrome & 0x3f == 0b00_0111
    } else {
        rec.class == 14 && rec.syndrome & 1 == 0
    }
}

// PROT_NONE pages are protnone entries: present to the mm (the folio and
// its bytes stay) but invalid to the MMU. Before, they were valid
// kernel-only entries, which a privileged load through the user pointer
// could read whatever PAN/SMAP said; now the hardware itself refuses it.
kernel_test!(
    fn prot_none_is_invalid_to_the_mmu() {
        let env = &mut KernelEnv;
        let mut space = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            space
                .add_vma(Vma::new(va(0), va(2), Prot::RW, VmaKind::Anon))
                .is_ok()
        );
        check!(
            space
                .write_bytes(env, va(1), &0xfeed_f00du64.to_le_bytes())
                .is_ok()
        );
        uspace::activate(&mut space);
        let at = va(1).as_u64();
        check_eq!(user_read(at), Ok(0xfeed_f00d));
        let (pfn, _) = check_some!(space.translate(va(1)));
        check!(space.protect(env, va(0), va(2), Prot::NONE).is_ok());
        // The MMU: a privileged load through the user pointer faults as on
        // an empty entry, and so does the user-copy routine.
        match arch::probe_read(at) {
            Ok(v) => return Err(alloc::format!("kernel read {v:#x} of a PROT_NONE page")),
            Err(rec) => {
                check_eq!(rec.addr, at);
                check!(not_present_fault(&rec), "{rec:x?}");
            }
        }
        check_eq!(user_read(at), Err(8));
        // The raw entry: valid / present bit (bit 0 on both) clear, frame kept.
        let pt = space.page_table();
        let raw = pt.pte(check_some!(pt.pte_slot(va(1))));
        check_eq!(raw.bits() & 1, 0, "entry {raw:#x}");
        check_eq!(space.translate(va(1)).map(|(p, _)| p), Some(pfn));
        check_eq!(
            space.handle_fault(env, va(1), Access::Read),
            Err(FaultError::Protection)
        );
        // Back: the same frame, read through the MMU, with its bytes.
        check!(space.protect(env, va(0), va(2), Prot::READ).is_ok());
        check_eq!(space.translate(va(1)).map(|(p, _)| p), Some(pfn));
        check_eq!(user_read(at), Ok(0xfeed_f00d));
        check!(space.protect(env, va(0), va(2), Prot::NONE).is_ok());
        uspace::deactivate();
        // Teardown frees the protnone page (the harness checks the frames).
        space.teardown(env);
        Ok(())
    }
);

// A fault on a present entry whose accessed flag is clear must set the
// flag, or the access faults again forever: arm64 without hardware
// access-flag management (the boards' Cortex-A72/A53) raises an
// access-flag fault on it. x86 sets A in hardware, which the raw entry
// shows after the access.
kernel_test!(
    fn old_entries_are_made_young() {
        use core::sync::atomic::Ordering::Relaxed;

        use folium_mm::pgtable::{PageTable, PteFormat};
        use folium_mm::stats::STATS;

        type F = arch::KernelPteFormat;
        let env = &mut KernelEnv;
        let mut space = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
        check!(
            space
                .add_vma(Vma::new(va(0), va(1), Prot::RW, VmaKind::Anon))
                .is_ok()
        );
        check!(space.write_bytes(env, va(0), &77u64.to_le_bytes()).is_ok());
        uspace::activate(&mut space);
        let at = va(0).as_u64();
        check_eq!(user_read(at), Ok(77));
        // SAFETY: a second handle on this test's own tree, used only while
        // `space` does nothing, to age the entry as a reclaim scan would.
        let mut raw = unsafe { PageTable::<F>::new(space.root(), super::frames::linear()) };
        let slot = check_some!(raw.pte_slot(va(0)));
        raw.set_pte(slot, F::pte_mkold(raw.pte(slot)));
        arch::tlb::flush_page(space.asid, va(0));
        check!(!F::pte_young(raw.pte(slot)));
        #[cfg(target_arch = "aarch64")]
        let hw_af = arch::hw_access_dirty().0;
        #[cfg(not(target_arch = "aarch64"))]
        let hw_af = true;
        if hw_af {
            check_eq!(user_read(at), Ok(77));
            check!(F::pte_young(raw.pte(slot)), "the CPU set the flag");
        } else {
            check_eq!(user_read(at), Err(8), "an access-flag fault");
            let fixups = STATS.young_fixups.load(Relaxed);
            check!(space.handle_fault(env, va(0), Access::Read).is_ok());
            check_eq!(STATS.young_fixups.load(Relaxed), fixups + 1);
            check!(F::pte_young(raw.pte(slot)), "the fault set the flag");
            check_eq!(user_read(at), Ok(77));
        }
        uspace::deactivate();
        space.teardown(env);
        Ok(())
    }
);

/// What [`read_user_there`] reads: the space (root, ASID) to install and
/// the address; then its result.
static THERE: [core::sync::atomic::AtomicU64; 4] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 4];

/// Run on another CPU, as a thread of the space in `THERE` would: with
/// `arg` 1 installs the space and reads its address, leaving the space
/// installed (as a thread keeps running); with 2 reads it again and
/// installs the idle user half; with 3 only tells (x86) whether this CPU
/// owes the space a flush at its next install. (QEMU drops its whole TLB whenever the
/// arm64 ASID changes, and on an x86 CR3 write without PCIDs, so only a
/// space that stays installed can show a stale entry.)
fn read_user_there(arg: u64) {
    use core::sync::atomic::Ordering::Relaxed;
    if arg == 1 {
        let root = folium_mm::PhysAddr::new(THERE[0].load(Relaxed));
        let asid = folium_mm::tlb::Asid(THERE[1].load(Relaxed) as u16);
        // SAFETY: a live space's root (the test keeps it until the last
        // call returned) with the ASID it runs with.
        unsafe { arch::set_user_root(root, asid) };
    }
    if arg == 3 {
        // Whether this CPU owes the space a flush at its next install.
        #[cfg(target_arch = "x86_64")]
        let owed = arch::tlb::is_stale(folium_mm::tlb::Asid(THERE[1].load(Relaxed) as u16));
        #[cfg(not(target_arch = "x86_64"))]
        let owed = false;
        THERE[3].store(u64::from(owed), Relaxed);
        return;
    }
    let v = user_read(THERE[2].load(Relaxed)).unwrap_or(u64::MAX);
    THERE[3].store(v, Relaxed);
    if arg == 2 {
        // SAFETY: the empty user table, ASID 0.
        unsafe { arch::set_user_root(uspace::idle_root(), folium_mm::tlb::Asid(0)) };
    }
}

/// A space of two pages holding `value` at `va(0)`, installed here and
/// named in [`THERE`] for [`read_on`]; and the other CPUs online.
fn space_for_cpus(
    env: &mut KernelEnv,
    value: u64,
) -> Result<(uspace::UserSpace, alloc::vec::Vec<usize>), alloc::string::String> {
    use core::sync::atomic::Ordering::Relaxed;
    let cpus = crate::smp::online().filter(|&i| i != 0).collect();
    let mut s = uspace::new_space().map_err(|e| alloc::format!("{e:?}"))?;
    let made = s
        .add_vma(Vma::new(va(0), va(2), Prot::RW, VmaKind::Anon))
        .map_err(|e| alloc::format!("{e:?}"))
        .and_then(|()| {
            s.write_bytes(env, va(0), &value.to_le_bytes())
                .map_err(|e| alloc::format!("{e:?}"))
        });
    if let Err(e) = made {
        s.teardown(env);
        return Err(e);
    }
    uspace::activate(&mut s);
    THERE[0].store(s.root().as_u64(), Relaxed);
    THERE[1].store(u64::from(s.asid.0), Relaxed);
    THERE[2].store(va(0).as_u64(), Relaxed);
    Ok((s, cpus))
}

/// Runs [`read_user_there`] `step` on `cpu`; its result.
fn read_on(cpu: usize, step: u64) -> u64 {
    crate::smp::call_on(1 << cpu, read_user_there, step);
    THERE[3].load(core::sync::atomic::Ordering::Relaxed)
}

kernel_test!(
    fn a_zapped_user_page_leaves_no_translation_on_any_cpu() {
        let env = &mut KernelEnv;
        let (mut s, cpus) = space_for_cpus(env, 0x01d0_01d0)?;
        // Every CPU runs the space, as its threads would: each caches the
        // page and keeps the space installed.
        let before: alloc::vec::Vec<u64> = cpus.iter().map(|&c| read_on(c, 1)).collect();
        // Zapped here: the flush must reach every CPU that cached it,
        // where a read must now fault rather than reach the old frame.
        let zapped = s.dontneed(env, va(0), va(1));
        let here = user_read(va(0).as_u64());
        let after: alloc::vec::Vec<u64> = cpus.iter().map(|&c| read_on(c, 2)).collect();
        let ok = (|| {
            for (k, &c) in cpus.iter().enumerate() {
                check_eq!(before[k], 0x01d0_01d0, "CPU {c} reads the page");
            }
            check!(zapped.is_ok());
            check_eq!(here, Err(8), "CPU 0 after the zap");
            for (k, &c) in cpus.iter().enumerate() {
                check_eq!(after[k], u64::MAX, "CPU {c} after the zap");
            }
            Ok(())
        })();
        uspace::deactivate();
        s.teardown(env);
        ok
    }
);

kernel_test!(
    fn a_cpu_that_left_the_space_is_not_interrupted_and_flushes_at_install() {
        let env = &mut KernelEnv;
        let (mut s, cpus) = space_for_cpus(env, 0x1eaf)?;
        // Every other CPU runs the space, caches the page, and leaves it
        // (to idle, as a thread that blocked would).
        let before: alloc::vec::Vec<(u64, u64)> = cpus
            .iter()
            .map(|&c| (read_on(c, 1), read_on(c, 2)))
            .collect();
        let (shot, deferred) = (arch::tlb::shootdowns(), arch::tlb::deferred());
        let zapped = s.dontneed(env, va(0), va(1));
        let (shot, deferred) = (
            arch::tlb::shootdowns() - shot,
            arch::tlb::deferred() - deferred,
        );
        let owed: alloc::vec::Vec<u64> = cpus.iter().map(|&c| read_on(c, 3)).collect();
        // Back on the space: the page must fault, not read the old frame.
        let after: alloc::vec::Vec<u64> = cpus
            .iter()
            .map(|&c| {
                let v = read_on(c, 1);
                read_on(c, 2);
                v
            })
            .collect();
        let ok = (|| {
            check!(zapped.is_ok());
            for (k, &c) in cpus.iter().enumerate() {
                check_eq!(before[k], (0x1eaf, 0x1eaf), "CPU {c} reads the page");
                check_eq!(after[k], u64::MAX, "CPU {c} after the zap");
            }
            if cfg!(target_arch = "x86_64") {
                check_eq!(shot, 0, "no IPI: no other CPU runs the space");
                check_eq!(deferred, cpus.len() as u64, "one deferred flush per CPU");
                for (k, &c) in cpus.iter().enumerate() {
                    check_eq!(owed[k], 1, "CPU {c} owes the space a flush");
                }
            }
            Ok(())
        })();
        uspace::deactivate();
        s.teardown(env);
        ok
    }
);
