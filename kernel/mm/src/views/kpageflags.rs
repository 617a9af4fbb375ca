//! `/proc/kpageflags`: one 64-bit word of `KPF_*` bits per frame, as Linux
//! 6.12's `stable_page_flags` computes them, for what Folium has.
//!
//! | bit | name | set on Folium for |
//! |-----|------|-------------------|
//! | 20 | `NOPAGE` | a frame with no descriptor (outside the memmap) |
//! | 10 | `BUDDY` | every frame of a free block, head and tails (Linux marks the head `PageBuddy` and finds tails with `is_free_buddy_page`, so all of them read `BUDDY`); blocks on a CPU's page list too, where Linux's per-CPU pages read nothing, so that the frames reading `BUDDY` are exactly the free pages |
//! | 11 | `MMAP` | every frame of a folio that some PTE maps (Linux's `page_mapped` asks the folio) |
//! | 12 | `ANON` | every frame of an anonymous folio |
//! | 15, 16 | `COMPOUND_HEAD`, `COMPOUND_TAIL` | the first and the other frames of an allocated block of order 1 or more (every Folium block is a folio, like a `__GFP_COMP` allocation); an order-0 frame has neither |
//! | 22 | `THP` | every frame of a large anonymous folio, whatever its order (Linux: any large rmappable folio, "not just PMD-sized ones") |
//! | 24 | `ZERO_PAGE` | the shared zero page |
//! | 3, 14 | `UPTODATE`, `SWAPBACKED` | every frame of an anonymous folio: Linux sets both on each anonymous folio it faults in (contents valid; backed by RAM/swap rather than a file), swap or not |
//! | 4 | `DIRTY` | the folio's dirty flag (set when a dirty PTE is zapped) |
//! | 32 | `RESERVED` | reserved frames (holes, firmware, the kernel image, the memmap) and the zero page: Linux's zero page lives in the kernel image, Folium's is taken once at boot and never freed, reserved in all but name |
//! | 34 | `MAPPEDTODISK` | every frame of an anonymous folio whose first page is anon-exclusive: Linux stores `PageAnonExclusive` in the bit it calls `PG_mappedtodisk` and copies the head's flags to every frame |
//!
//! Not set, because Folium has nothing they describe: `LRU`, `ACTIVE`,
//! `REFERENCED`, `IDLE` (Folium keeps no LRU lists and no idle tracking;
//! Linux shows `LRU` on mapped anonymous folios once its per-CPU batches
//! are drained), `SLAB` and `PGTABLE` (Folium does not record which
//! kernel user holds an allocated block: the heap, a kernel stack or a
//! page table reads as an allocated block with no type), `SWAPCACHE`,
//! `WRITEBACK`, `RECLAIM`, `LOCKED`, `KSM`, `HUGE` (no hugetlb),
//! `HWPOISON`, `OFFLINE`, `UNEVICTABLE`, `MLOCKED` and the soft-dirty bit.

use crate::addr::{Order, Pfn};
use crate::folio::FolioRef;
use crate::memmap::{Memmap, PageFlags};

/// `KPF_UPTODATE`.
pub const KPF_UPTODATE: u32 = 3;
/// `KPF_DIRTY`.
pub const KPF_DIRTY: u32 = 4;
/// `KPF_BUDDY`.
pub const KPF_BUDDY: u32 = 10;
/// `KPF_MMAP`.
pub const KPF_MMAP: u32 = 11;
/// `KPF_ANON`.
pub const KPF_ANON: u32 = 12;
/// `KPF_SWAPBACKED`.
pub const KPF_SWAPBACKED: u32 = 14;
/// `KPF_COMPOUND_HEAD`.
pub const KPF_COMPOUND_HEAD: u32 = 15;
/// `KPF_COMPOUND_TAIL`.
pub const KPF_COMPOUND_TAIL: u32 = 16;
/// `KPF_NOPAGE`.
pub const KPF_NOPAGE: u32 = 20;
/// `KPF_THP`.
pub const KPF_THP: u32 = 22;
/// `KPF_ZERO_PAGE`.
pub const KPF_ZERO_PAGE: u32 = 24;
/// `KPF_RESERVED` (one of the "kernel hacking" bits above 31).
pub const KPF_RESERVED: u32 = 32;
/// `KPF_MAPPEDTODISK` (Linux's alias of anon-exclusive on anonymous folios).
pub const KPF_MAPPEDTODISK: u32 = 34;

/// What a frame is, as far as the memmap says.
#[derive(Clone, Copy, Debug)]
pub enum PageState<'a> {
    /// No descriptor: outside the memmap.
    NoPage,
    /// Not managed by the allocator.
    Reserved,
    /// Part of the free block of `order` at `head`.
    Free {
        /// The block's first frame.
        head: Pfn,
        /// Its order.
        order: Order,
    },
    /// Part of an allocated block (a folio).
    Allocated(FolioRef<'a>),
    /// Covered by no marked block: only a corrupt memmap gives this.
    Unknown,
}

/// What `pfn` is: the block that covers it is found from alignment, as
/// [`Memmap::page_folio`] finds a folio's head (at most 11 descriptor
/// reads), free blocks included.
pub fn page_state(memmap: &Memmap, pfn: Pfn) -> PageState<'_> {
    if !memmap.contains(pfn) {
        return PageState::NoPage;
    }
    if let Some(f) = memmap.page_folio(pfn) {
        return PageState::Allocated(f);
    }
    for order in Order::all() {
        let cand = pfn.align_down(order.pages());
        let flags = memmap.page(cand).flags();
        if !flags.intersects(PageFlags::MARKER_MASK) {
            continue;
        }
        return match memmap.page(cand).head_order() {
            _ if cand == pfn && flags.contains(PageFlags::RESERVED) => PageState::Reserved,
            Some(o) if flags.intersects(PageFlags::FREE_MASK) && o >= order => PageState::Free {
                head: cand,
                order: o,
            },
            _ => PageState::Unknown,
        };
    }
    PageState::Unknown
}

/// The `/proc/kpageflags` word of `pfn` (see the module doc for each bit);
/// `zero_pfn` is the shared zero page.
pub fn kpageflags(memmap: &Memmap, zero_pfn: Pfn, pfn: Pfn) -> u64 {
    let bit = |b: u32| 1u64 << b;
    match page_state(memmap, pfn) {
        PageState::NoPage => bit(KPF_NOPAGE),
        PageState::Reserved => bit(KPF_RESERVED),
        PageState::Free { .. } => bit(KPF_BUDDY),
        PageState::Unknown => 0,
        PageState::Allocated(_) if pfn == zero_pfn => bit(KPF_ZERO_PAGE) | bit(KPF_RESERVED),
        PageState::Allocated(f) => {
            let mut u = 0;
            if f.mapped() {
                u |= bit(KPF_MMAP);
            }
            let large = f.order().get() > 0;
            if large {
                u |= bit(if pfn == f.pfn() {
                    KPF_COMPOUND_HEAD
                } else {
                    KPF_COMPOUND_TAIL
                });
            }
            if f.test_anon() {
                u |= bit(KPF_ANON) | bit(KPF_UPTODATE) | bit(KPF_SWAPBACKED);
                if large {
                    u |= bit(KPF_THP);
                }
                if f.head_page().test_anon_exclusive() {
                    u |= bit(KPF_MAPPEDTODISK);
                }
            }
            if f.test_dirty() {
                u |= bit(KPF_DIRTY);
            }
            u
        }
    }
}
