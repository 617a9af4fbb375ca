//! Self-tests of arm64 contiguous PTEs (contpte) on the real MMU: the
//! live page tables of a user address space are read after each step
//! (which blocks carry the contiguous hint), the data is read back through
//! the hardware's walk, and the fold counters must move by exactly what
//! the step implies. Run on every arm64 board (virt, raspi3b, raspi4b).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_mm::VirtAddr;
use folium_mm::aspace::Access;
use folium_mm::pgtable::{Aarch64, FoldEvent, PteFormat};
use folium_mm::stats::STATS;
use folium_mm::vma::{Prot, Vma, VmaKind};

use super::uspace::{self, KernelEnv, UserSpace};
use crate::arch;

/// 64 KiB aligned.
const BASE: u64 = 0x40_0000;
/// Blocks of 16 pages in the test area.
const BLOCKS: u64 = 8;
const PAGES: u64 = BLOCKS * 16;

fn va(page: u64) -> VirtAddr {
    VirtAddr::new(BASE + page * 4096)
}

/// The folded state of every block: `Some(true)` all 16 entries carry the
/// hint, `Some(false)` none does, `None` a half-folded block (a bug).
fn folds(space: &UserSpace) -> Vec<Option<bool>> {
    let pt = space.page_table();
    (0..BLOCKS)
        .map(|b| {
            let n = (0..16)
                .filter(|k| {
                    pt.raw_leaf(va(b * 16 + k))
                        .is_some_and(|l| Aarch64::pte_cont(l.pte))
                })
                .count();
            match n {
                0 => Some(false),
                16 => Some(true),
                _ => None,
            }
        })
        .collect()
}

/// `folds` as a string, `F` folded, `.` not, `!` half-folded.
fn show(space: &UserSpace) -> String {
    folds(space)
        .iter()
        .map(|f| match f {
            Some(true) => 'F',
            Some(false) => '.',
            None => '!',
        })
        .collect()
}

/// The fold counters now: folds, unfolds, refolds, flushes.
fn counters() -> [u64; 4] {
    [
        FoldEvent::Fold,
        FoldEvent::Unfold,
        FoldEvent::Refold,
        FoldEvent::Flush,
    ]
    .map(|e| STATS.folds(e))
}

fn delta(before: [u64; 4]) -> [u64; 4] {
    let now = counters();
    core::array::from_fn(|i| now[i] - before[i])
}

fn user_read(page: u64) -> Result<u64, usize> {
    let mut b = [0u8; 8];
    match arch::copy_from_user(&mut b, va(page).as_u64()) {
        0 => Ok(u64::from_le_bytes(b)),
        left => Err(left),
    }
}

fn user_write(page: u64, v: u64) -> Result<(), usize> {
    match arch::copy_to_user(va(page).as_u64(), &v.to_le_bytes()) {
        0 => Ok(()),
        left => Err(left),
    }
}

/// Puts the 64 KiB mTHP knob and the folding policy back as they were,
/// whatever the test's outcome.
struct Restore(folium_mm::thp::Setting, folium_mm::pgtable::FoldPolicy);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = super::THP.write_size(4, self.0.word().as_bytes());
        super::set_contpte(self.1.fold);
        super::set_contpte_fork_per_pte(self.1.fork_per_pte);
    }
}

/// A new space with the test area, 64 KiB folios always, folding on and
/// fork keeping blocks folded; the guard puts the switches back.
fn setup() -> Result<(Restore, UserSpace), String> {
    let restore = Restore(
        super::THP.size(4).ok_or("no 64K knob")?,
        super::fold_policy(),
    );
    super::THP
        .write_size(4, b"always")
        .map_err(|e| format!("{e:?}"))?;
    super::set_contpte(true);
    super::set_contpte_fork_per_pte(false);
    let mut space = uspace::new_space().map_err(|e| format!("{e:?}"))?;
    let area = Vma::new(va(0), va(PAGES), Prot::RW, VmaKind::Anon);
    if let Err(e) = space.add_vma(area) {
        space.teardown(&mut KernelEnv);
        return Err(format!("{e:?}"));
    }
    Ok((restore, space))
}

kernel_test!(
    fn contpte_folds_unfolds_and_refolds_on_the_live_tables() {
        let (_restore, mut parent) = setup()?;
        let env = &mut KernelEnv;
        // Faults map 64 KiB folios, each written folded at once.
        let c = counters();
        for p in 0..PAGES {
            check!(parent.write_bytes(env, va(p), &p.to_le_bytes()).is_ok());
        }
        check_eq!(show(&parent), "FFFFFFFF");
        check_eq!(delta(c), [BLOCKS, 0, 0, 0], "fold, unfold, refold, flush");
        uspace::activate(&mut parent);
        for p in 0..PAGES {
            check_eq!(user_read(p), Ok(p), "page {p} through the MMU");
        }

        // mprotect of one page unfolds exactly its block; back to RW, the
        // page (still exclusive) is writable again and the block refolds.
        let c = counters();
        check!(parent.protect(env, va(20), va(21), Prot::READ).is_ok());
        check_eq!(show(&parent), "F.FFFFFF");
        check_eq!(delta(c), [0, 1, 0, 1]);
        check_eq!(user_write(20, 1), Err(8), "the page is read-only now");
        check_eq!(user_write(21, 21), Ok(()), "its neighbour is not");
        let c = counters();
        check!(parent.protect(env, va(20), va(21), Prot::RW).is_ok());
        check_eq!(show(&parent), "FFFFFFFF");
        check_eq!(delta(c), [0, 0, 1, 1]);
        check_eq!(user_write(20, 20), Ok(()));

        // fork: whole blocks are write-protected folded in the parent and
        // written folded into the child, with no unfold (the child's folds
        // are the parent's, not counted again).
        let c = counters();
        let mut child = parent
            .fork(env, uspace::kernel_half().as_ref())
            .map_err(|e| format!("{e:?}"))?;
        check_eq!(show(&parent), "FFFFFFFF");
        check_eq!(show(&child), "FFFFFFFF");
        check_eq!(delta(c), [0, 0, 0, 0], "no unfold, no flush");
        check_eq!(user_write(3, 0), Err(8), "the parent is write-protected");

        // COW of one page in the child unfolds only its block.
        uspace::activate(&mut child);
        let c = counters();
        check!(child.handle_fault(env, va(37), Access::Write).is_ok());
        check_eq!(user_write(37, 370), Ok(()));
        check_eq!(show(&child), "FF.FFFFF");
        check_eq!(show(&parent), "FFFFFFFF");
        check_eq!(delta(c), [0, 1, 0, 1]);
        for p in (0..PAGES).filter(|&p| p != 37) {
            check_eq!(user_read(p), Ok(p), "child page {p}");
        }
        check_eq!(user_read(37), Ok(370));

        // Partial munmap and MADV_DONTNEED unfold only the blocks they cut.
        let c = counters();
        check!(child.unmap(env, va(70), va(72)).is_ok());
        check!(child.dontneed(env, va(96), va(97)).is_ok());
        check_eq!(show(&child), "FF.F.F.F");
        check_eq!(delta(c), [0, 2, 0, 2]);
        check_eq!(user_read(70), Err(8), "unmapped");
        check_eq!(user_read(96), Err(8), "dropped: not present");
        check!(child.handle_fault(env, va(96), Access::Read).is_ok());
        check_eq!(user_read(96), Ok(0), "dropped: zeroes after a fault");
        check_eq!(user_read(97), Ok(97));
        // Whole blocks go without an unfold.
        let c = counters();
        check!(child.unmap(env, va(112), va(128)).is_ok());
        check_eq!(delta(c), [0, 0, 0, 0]);
        uspace::activate(&mut parent);
        child.teardown(env);

        // The child gone, the parent's write faults reuse its pages: the
        // first unfolds the read-only block, the last makes it uniform
        // (writable) again and it refolds.
        let c = counters();
        for p in 48..64 {
            check!(parent.handle_fault(env, va(p), Access::Write).is_ok());
        }
        check_eq!(show(&parent), "FFFFFFFF");
        check_eq!(delta(c), [0, 1, 1, 2]);
        for p in 48..64 {
            check_eq!(user_write(p, p + 1000), Ok(()), "page {p}");
            check_eq!(user_read(p), Ok(p + 1000));
        }
        uspace::deactivate();
        parent.teardown(env);
        Ok(())
    }
);

kernel_test!(
    fn contpte_off_folds_nothing_and_per_pte_fork_unfolds_every_block() {
        let (_restore, mut space) = setup()?;
        let env = &mut KernelEnv;
        super::set_contpte(false);
        let c = counters();
        for p in 0..PAGES / 2 {
            check!(space.write_bytes(env, va(p), &p.to_le_bytes()).is_ok());
        }
        super::set_contpte(true);
        for p in PAGES / 2..PAGES {
            check!(space.write_bytes(env, va(p), &p.to_le_bytes()).is_ok());
        }
        check_eq!(show(&space), "....FFFF");
        check_eq!(delta(c), [BLOCKS / 2, 0, 0, 0]);
        // An area boundary inside a folded block (the advice splits the
        // area at page 72): fork copies the two areas apart, so the block
        // they share is unfolded first, in the parent, never left half
        // write-protected; the other blocks stay folded in both.
        check!(space.advise_hugepage(va(72), va(PAGES), true).is_ok());
        let c = counters();
        let child = space
            .fork(env, uspace::kernel_half().as_ref())
            .map_err(|e| format!("{e:?}"))?;
        check_eq!(show(&space), ".....FFF");
        check_eq!(show(&child), ".....FFF");
        check_eq!(delta(c), [0, 1, 0, 1]);
        child.teardown(env);
        // The measurement mode: fork unfolds each folded block of the
        // parent and copies it unfolded.
        super::set_contpte_fork_per_pte(true);
        let c = counters();
        let child = space
            .fork(env, uspace::kernel_half().as_ref())
            .map_err(|e| format!("{e:?}"))?;
        check_eq!(show(&space), "........");
        check_eq!(show(&child), "........");
        check_eq!(delta(c), [0, BLOCKS / 2 - 1, 0, BLOCKS / 2 - 1]);
        uspace::activate(&mut space);
        for p in 0..PAGES {
            check_eq!(user_read(p), Ok(p), "page {p}");
            check_eq!(user_write(p, 0), Err(8), "page {p} is shared");
        }
        uspace::deactivate();
        child.teardown(env);
        space.teardown(env);
        Ok(())
    }
);
