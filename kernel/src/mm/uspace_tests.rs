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
            .fork(env, uspace::kernel_slots())
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
