//! The early linear map: physical ranges mapped at `LINEAR_OFFSET + pa` with
//! 2 MiB / 1 GiB blocks, in the live TTBR1 tables `entry.S` built.
//!
//! It exists so the boot code can read the DTB and the kernel can reach RAM
//! and its UART before the buddy allocator exists; the kernel later replaces
//! all of it with tables it builds itself. Entries only ever go from invalid
//! to valid here, which needs no break-before-make and no TLB invalidation.

use folium_mm::{PhysAddr, VirtAddr};
use spin::Mutex;

use super::LINEAR_OFFSET;

/// Memory type of an early mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal write-back RAM, never executable.
    Normal,
    /// Device-nGnRnE MMIO, never executable.
    Device,
}

/// Why an early mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyMapError {
    /// The static pool of early tables is used up.
    OutOfTables,
    /// Part of the range is already mapped with another type.
    Conflict,
    /// The range lies beyond the 512 GiB the early map covers.
    OutOfRange,
    /// The kernel's own tables replaced the early ones.
    Retired,
}

const BLOCK_2M: u64 = 2 << 20;
const BLOCK_1G: u64 = 1 << 30;
const VALID_TABLE: u64 = 0b11;
const BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
const ATTR_NORMAL: u64 = 1 << 2;
const ATTR_DEVICE: u64 = 0;
const PXN_UXN: u64 = 3 << 53;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
const POOL_TABLES: usize = 16;

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct State {
    kimage_voffset: u64,
    next_free: usize,
    retired: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    kimage_voffset: 0,
    next_free: 0,
    retired: false,
});

/// Stops the early map: its tables are no longer live once the kernel's
/// own tables are installed, so later calls fail with `Retired`.
pub fn retire_early_map() {
    STATE.lock().retired = true;
}

/// L1 table covering the first 512 GiB of the linear map.
static mut LINEAR_L1: Table = Table([0; 512]);
/// L2 tables handed out one per GiB that is not fully block-mapped.
static mut POOL: [Table; POOL_TABLES] = [const { Table([0; 512]) }; POOL_TABLES];

unsafe extern "C" {
    static mut early_ttbr1_l0: Table;
}

pub(super) fn init(kimage_voffset: u64) {
    let mut st = STATE.lock();
    st.kimage_voffset = kimage_voffset;
    // SAFETY: boot is single-threaded and the state lock is held; the
    // L0 table is live but its slot 0 is unused until now.
    unsafe {
        let l1 = &raw mut LINEAR_L1;
        let l0 = &raw mut early_ttbr1_l0;
        (*l0).0[0] = (l1 as u64 - kimage_voffset) | VALID_TABLE;
    }
    barrier();
}

fn barrier() {
    use aarch64_cpu::asm::barrier;
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
}

/// Maps `[pa, pa + size)` (rounded out to 2 MiB) at `LINEAR_OFFSET + pa` and
/// returns the virtual address of `pa`. Re-mapping a range already mapped
/// with the same type is a no-op.
pub fn early_map(pa: PhysAddr, size: u64, kind: MemKind) -> Result<VirtAddr, EarlyMapError> {
    let start = pa.as_u64() & !(BLOCK_2M - 1);
    let end = pa
        .as_u64()
        .checked_add(size.max(1))
        .filter(|&e| e <= 512 * BLOCK_1G)
        .ok_or(EarlyMapError::OutOfRange)?
        .next_multiple_of(BLOCK_2M);
    let attrs = match kind {
        MemKind::Normal => BLOCK | AF | SH_INNER | ATTR_NORMAL | PXN_UXN,
        MemKind::Device => BLOCK | AF | ATTR_DEVICE | PXN_UXN,
    };
    let mut st = STATE.lock();
    if st.retired {
        return Err(EarlyMapError::Retired);
    }
    let mut cur = start;
    while cur < end {
        let l1i = (cur / BLOCK_1G) as usize;
        // SAFETY: the state lock serialises all access to the early tables,
        // which are only ever extended (invalid -> valid).
        let l1_ptr = &raw mut LINEAR_L1;
        // SAFETY: see above.
        let l1 = unsafe { &mut (*l1_ptr).0 };
        if cur.is_multiple_of(BLOCK_1G) && end - cur >= BLOCK_1G && l1[l1i] == 0 {
            l1[l1i] = cur | attrs;
            cur += BLOCK_1G;
            continue;
        }
        if l1[l1i] & 0b11 == BLOCK {
            if l1[l1i] & !ADDR_MASK != attrs {
                return Err(EarlyMapError::Conflict);
            }
            cur = (cur / BLOCK_1G + 1) * BLOCK_1G;
            continue;
        }
        if l1[l1i] == 0 {
            if st.next_free == POOL_TABLES {
                return Err(EarlyMapError::OutOfTables);
            }
            let pool = &raw mut POOL;
            // SAFETY: as above; each pool table is handed out once.
            let table = unsafe { &raw mut (*pool)[st.next_free] };
            st.next_free += 1;
            l1[l1i] = (table as u64 - st.kimage_voffset) | VALID_TABLE;
        }
        let l2_pa = l1[l1i] & ADDR_MASK;
        let l2 = (l2_pa + st.kimage_voffset) as *mut u64;
        let l2i = ((cur % BLOCK_1G) / BLOCK_2M) as usize;
        // SAFETY: `l2` is one of the pool tables (mapped in the image), index < 512.
        unsafe {
            let e = l2.add(l2i);
            if *e == 0 {
                *e = cur | attrs;
            } else if *e & !ADDR_MASK != attrs {
                return Err(EarlyMapError::Conflict);
            }
        }
        cur += BLOCK_2M;
    }
    drop(st);
    barrier();
    Ok(VirtAddr::new(pa.as_u64() + LINEAR_OFFSET))
}
