//! Typed addresses, frame numbers and allocation orders.
//!
//! Nothing crosses an mm API as a bare `usize`: a physical address, a virtual
//! address, a page frame number and a buddy order are different things and
//! the compiler keeps them apart.

use core::fmt;
use core::ops::{Add, Sub};

/// log2 of the base page size (4 KiB on both architectures).
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

/// A virtual address (user or kernel).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

/// A page frame number: a physical address divided by [`PAGE_SIZE`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(u64);

/// A buddy order: a block of `2^order` base pages, naturally aligned.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Order(u8);

macro_rules! addr_common {
    ($t:ident) => {
        impl $t {
            /// Wraps a raw value.
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw value.
            #[inline]
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// True if the value is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_up(self, align: u64) -> Self {
                Self((self.0 + align - 1) & !(align - 1))
            }
        }
        impl Add<u64> for $t {
            type Output = Self;
            #[inline]
            fn add(self, rhs: u64) -> Self {
                Self(self.0 + rhs)
            }
        }
        impl Sub<u64> for $t {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: u64) -> Self {
                Self(self.0 - rhs)
            }
        }
        impl Sub<$t> for $t {
            type Output = u64;
            #[inline]
            fn sub(self, rhs: $t) -> u64 {
                self.0 - rhs.0
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({:#x})"), self.0)
            }
        }
        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

addr_common!(PhysAddr);
addr_common!(VirtAddr);
addr_common!(Pfn);

impl PhysAddr {
    /// The frame containing this address.
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Offset within the base page.
    #[inline]
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl VirtAddr {
    /// Offset within the base page.
    #[inline]
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl Pfn {
    /// The physical address of the frame's first byte.
    #[inline]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// True if this frame can start a block of `order`.
    #[inline]
    pub const fn is_order_aligned(self, order: Order) -> bool {
        self.0 & (order.pages() - 1) == 0
    }
}

impl Order {
    /// The largest order the buddy allocator hands out (4 MiB blocks).
    pub const MAX: Order = Order(10);
    /// Number of distinct orders, `0..=MAX`.
    pub const COUNT: usize = Self::MAX.0 as usize + 1;

    /// An order, or `None` if it exceeds [`Order::MAX`].
    #[inline]
    pub const fn new(order: u8) -> Option<Order> {
        if order <= Self::MAX.0 {
            Some(Order(order))
        } else {
            None
        }
    }
    /// An order known at compile time; fails to compile when out of range.
    #[inline]
    pub const fn of(order: u8) -> Order {
        assert!(order <= Self::MAX.0);
        Order(order)
    }
    /// The raw order.
    #[inline]
    pub const fn get(self) -> u8 {
        self.0
    }
    /// As an index into per-order arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// Number of base pages in a block of this order.
    #[inline]
    pub const fn pages(self) -> u64 {
        1 << self.0
    }
    /// Size in bytes of a block of this order.
    #[inline]
    pub const fn bytes(self) -> u64 {
        PAGE_SIZE << self.0
    }
    /// All orders from 0 to MAX.
    pub fn all() -> impl DoubleEndedIterator<Item = Order> {
        (0..=Self::MAX.0).map(Order)
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Order({})", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_page_offsets() {
        assert_eq!(VirtAddr::new(0x7000).page_offset(), 0);
        assert_eq!(VirtAddr::new(0x7fff).page_offset(), 0xfff);
        assert_eq!(VirtAddr::new(0xffff_0000_0000_0123).page_offset(), 0x123);
    }

    #[test]
    fn pfn_round_trip_and_alignment() {
        let pa = PhysAddr::new(0x4020_1234);
        assert_eq!(pa.pfn(), Pfn::new(0x40201));
        assert_eq!(pa.pfn().phys(), PhysAddr::new(0x4020_1000));
        assert_eq!(pa.page_offset(), 0x234);
        assert!(Pfn::new(0x400).is_order_aligned(Order::MAX));
        assert!(!Pfn::new(0x401).is_order_aligned(Order::of(1)));
        assert_eq!(Order::new(11), None);
        assert_eq!(Order::of(9).bytes(), 2 << 20);
        assert_eq!(PhysAddr::new(0x1001).align_up(PAGE_SIZE).as_u64(), 0x2000);
    }
}
