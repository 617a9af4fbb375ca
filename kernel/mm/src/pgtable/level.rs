//! Table levels, table geometry and canonical virtual addresses.

use crate::addr::{PAGE_SHIFT, VirtAddr};

/// Entries per table (9 index bits per level with a 4 KiB granule).
pub const ENTRIES: usize = 512;
/// Width of a virtual address; bits above it are copies of bit `VA_BITS - 1`.
pub const VA_BITS: u32 = 48;

/// Bits of VA consumed by one level's index.
const INDEX_BITS: u32 = 9;

/// A level in the 4-level tree: `L0` is the root, `L3` holds 4 KiB pages.
///
/// | level | one entry maps | may be a leaf (block/page) | may be a table |
/// |-------|----------------|----------------------------|----------------|
/// | L0    | 512 GiB        | no                         | yes            |
/// | L1    | 1 GiB          | yes (block)                | yes            |
/// | L2    | 2 MiB          | yes (block)                | yes            |
/// | L3    | 4 KiB          | yes (page)                 | no             |
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The root table (arm64 level 0, x86 PML4).
    L0 = 0,
    /// 1 GiB per entry (arm64 level 1, x86 PDPT).
    L1 = 1,
    /// 2 MiB per entry (arm64 level 2, x86 PD).
    L2 = 2,
    /// 4 KiB per entry (arm64 level 3, x86 PT).
    L3 = 3,
}

impl Level {
    /// All levels, root first.
    pub const ALL: [Level; 4] = [Level::L0, Level::L1, Level::L2, Level::L3];

    /// The level with number `n`, or `None` above 3.
    pub const fn new(n: u8) -> Option<Level> {
        match n {
            0 => Some(Level::L0),
            1 => Some(Level::L1),
            2 => Some(Level::L2),
            3 => Some(Level::L3),
            _ => None,
        }
    }

    /// The level number, 0 (root) to 3.
    #[inline]
    pub const fn get(self) -> u8 {
        self as u8
    }

    /// log2 of the bytes one entry at this level maps (39, 30, 21, 12).
    #[inline]
    pub const fn shift(self) -> u32 {
        PAGE_SHIFT + INDEX_BITS * (3 - self as u32)
    }

    /// Bytes one entry at this level maps.
    #[inline]
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// The level below (towards the 4 KiB pages), `None` at `L3`.
    #[inline]
    pub const fn next(self) -> Option<Level> {
        Level::new(self as u8 + 1)
    }

    /// True if an entry at this level may map memory directly.
    #[inline]
    pub const fn can_be_leaf(self) -> bool {
        !matches!(self, Level::L0)
    }

    /// True if an entry at this level may point to a next-level table.
    #[inline]
    pub const fn can_be_table(self) -> bool {
        !matches!(self, Level::L3)
    }

    /// Index of the entry translating `va` in its table at this level.
    #[inline]
    pub const fn index_of(self, va: VirtAddr) -> usize {
        ((va.as_u64() >> self.shift()) as usize) & (ENTRIES - 1)
    }
}

/// True if bits 63..47 of `va` are all equal: the address lies in the lower
/// (user) or upper (kernel) half rather than in the hole between them.
#[inline]
pub const fn is_canonical(va: VirtAddr) -> bool {
    let shift = 64 - VA_BITS;
    (((va.as_u64() << shift) as i64) >> shift) as u64 == va.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(Level::L0.size(), 512 << 30);
        assert_eq!(Level::L1.size(), 1 << 30);
        assert_eq!(Level::L2.size(), 2 << 20);
        assert_eq!(Level::L3.size(), 4 << 10);
        assert_eq!(Level::L3.next(), None);
        assert_eq!(Level::L0.next(), Some(Level::L1));
        let va = VirtAddr::new(0xffff_8123_4567_8000);
        assert_eq!(Level::L0.index_of(va), 0x102);
        assert_eq!(Level::L1.index_of(va), 0x08d);
        assert_eq!(Level::L2.index_of(va), 0x02b);
        assert_eq!(Level::L3.index_of(va), 0x078);
    }

    #[test]
    fn canonical() {
        assert!(is_canonical(VirtAddr::new(0)));
        assert!(is_canonical(VirtAddr::new(0x0000_7fff_ffff_f000)));
        assert!(!is_canonical(VirtAddr::new(0x0000_8000_0000_0000)));
        assert!(!is_canonical(VirtAddr::new(0xffff_7fff_ffff_ffff)));
        assert!(is_canonical(VirtAddr::new(0xffff_8000_0000_0000)));
        assert!(is_canonical(VirtAddr::new(u64::MAX)));
    }
}
