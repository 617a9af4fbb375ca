//! The memmap half of the audit, on a bare allocator: each census check
//! can fail. (The table and folio checks run over real address spaces in
//! `tests/audit.rs`.)

use super::*;
use crate::addr::Order;
use crate::memmap::test_memmap;
use crate::pgtable::X86_64;

const NO_TREES: Trees<'static, X86_64> = Trees {
    user: &[],
    user_end: VirtAddr::new(1 << 47),
    kernel: &[],
    zero_pfn: Pfn::new(0),
};

fn run(buddy: &BuddyAllocator<'_>) -> Report {
    let mut scratch = alloc::vec![0u32; buddy.memmap().nr_pages() as usize];
    audit(buddy, 0, &NO_TREES, &mut scratch).expect("scratch is long enough")
}

fn allocator() -> BuddyAllocator<'static> {
    let mm = test_memmap(Pfn::new(0x1000), Pfn::new(0x1400));
    let mut b = BuddyAllocator::new(mm);
    b.add_free_range(Pfn::new(0x1000), Pfn::new(0x1400));
    b
}

#[test]
fn a_clean_allocator_balances() {
    let mut b = allocator();
    let kept = b.alloc(Order::of(3)).unwrap();
    let r = run(&b);
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.totals.managed, 0x400);
    assert_eq!(r.totals.kernel_pages, 8);
    assert_eq!(r.totals.free, 0x400 - 8);
    b.free(kept, Order::of(3)).unwrap();
    assert_eq!(run(&b).totals.free, 0x400);
}

/// Blocks on a CPU's page list are free pages: the audit counts their
/// `PCP` heads and checks them against the lists' total it is given.
#[test]
fn blocks_on_cpu_lists_count_as_free() {
    use crate::pcp::{PcpConfig, PcpLists};
    let mut b = allocator();
    let mut p = PcpLists::new();
    let cfg = PcpConfig {
        batch: 16,
        high: 64,
    };
    p.refill(&mut b, Order::of(0), cfg);
    p.refill(&mut b, Order::of(2), cfg);
    let taken = p.alloc(b.memmap(), Order::of(0)).unwrap();
    assert_eq!(p.pages(), 15 + 16);
    let mut scratch = alloc::vec![0u32; b.memmap().nr_pages() as usize];
    let r = audit(&b, p.pages(), &NO_TREES, &mut scratch).unwrap();
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.totals.free, 0x400 - 1);
    assert_eq!(r.totals.kernel_pages, 1);
    // Told the lists hold nothing, it finds the pages it cannot place.
    let r = audit(&b, 0, &NO_TREES, &mut scratch).unwrap();
    assert!(
        r.findings.contains(&Finding::FreeCount {
            allocator: 0x400 - 1 - 31,
            memmap: 0x400 - 1,
        }),
        "{r:?}"
    );
    b.free(taken, Order::of(0)).unwrap();
    p.drain_to(&mut b, 0);
    assert!(run(&b).ok());
    assert_eq!(b.free_per_order()[Order::MAX.index()], 1);
}

#[test]
fn a_frame_in_no_block_is_found() {
    let mut b = allocator();
    let pfn = b.alloc(Order::of(0)).unwrap();
    // The head loses its marker: the frame belongs to nothing.
    b.memmap().page(pfn).store_flags(PageFlags::EMPTY);
    let r = run(&b);
    assert!(r.findings.contains(&Finding::Uncovered { pfn }), "{r:?}");
    assert!(
        r.findings
            .iter()
            .any(|f| matches!(f, Finding::Managed { .. })),
        "{r:?}"
    );
}

#[test]
fn a_marker_inside_a_block_is_found() {
    let mut b = allocator();
    let head = b.alloc(Order::of(2)).unwrap();
    b.memmap().page(head + 2).store_flags(PageFlags::HEAD);
    let r = run(&b);
    assert_eq!(
        r.findings,
        [Finding::Overlap {
            head,
            inner: head + 2
        }]
    );
    b.memmap().page(head + 2).store_flags(PageFlags::EMPTY);
    assert!(run(&b).ok());
}

#[test]
fn free_pages_the_allocator_does_not_count_are_found() {
    let mut b = allocator();
    let pfn = b.alloc(Order::of(0)).unwrap();
    b.memmap().page(pfn).store_flags(PageFlags::BUDDY);
    let r = run(&b);
    let free = b.nr_free_pages();
    assert!(
        r.findings.contains(&Finding::FreeCount {
            allocator: free,
            memmap: free + 1
        }),
        "{r:?}"
    );
}

#[test]
fn a_kernel_block_with_a_mapcount_or_no_reference_is_found() {
    let mut b = allocator();
    let head = b.alloc(Order::of(1)).unwrap();
    b.memmap()
        .page(head)
        .mapcount()
        .store(1, core::sync::atomic::Ordering::Relaxed);
    let r = run(&b);
    assert_eq!(
        r.findings,
        [Finding::KernelBlock {
            head,
            refcount: 1,
            mapcount: 1
        }]
    );
}

#[test]
fn a_deferred_flag_off_the_queue_is_found() {
    let mut b = allocator();
    let head = b.alloc(Order::of(2)).unwrap();
    b.memmap().page(head).set_flags(PageFlags::DEFERRED);
    let r = run(&b);
    assert_eq!(
        r.findings,
        [Finding::Deferred {
            queued: 0,
            flagged: 1
        }]
    );
    let mut text = alloc::string::String::new();
    r.write(&mut text).unwrap();
    assert!(text.starts_with("audit: FAILED: 1 findings\n"), "{text}");
    assert!(
        text.contains("finding: deferred split: 0 queued, 1 flagged"),
        "{text}"
    );
}

#[test]
fn short_scratch_is_refused() {
    let b = allocator();
    let mut scratch = [0u32; 4];
    assert!(audit(&b, 0, &NO_TREES, &mut scratch).is_none());
}

#[test]
fn the_zero_page_and_table_frames_hold_exact_counts() {
    let mut b = allocator();
    let zero = b.alloc(Order::of(0)).unwrap();
    let trees = Trees::<X86_64> {
        zero_pfn: zero,
        ..NO_TREES
    };
    let mut scratch = alloc::vec![0u32; b.memmap().nr_pages() as usize];
    let r = audit(&b, 0, &trees, &mut scratch).unwrap();
    assert!(r.ok(), "{r:?}");
    b.memmap()
        .page(zero)
        .refcount()
        .store(2, core::sync::atomic::Ordering::Relaxed);
    let r = audit(&b, 0, &trees, &mut scratch).unwrap();
    assert_eq!(
        r.findings,
        [Finding::ZeroPage {
            refcount: 2,
            mapcount: 0
        }]
    );
    let t = b.alloc_table().unwrap();
    b.memmap()
        .page(t)
        .mapcount()
        .store(1, core::sync::atomic::Ordering::Relaxed);
    let r = run(&b);
    assert!(
        r.findings.contains(&Finding::TableCounts {
            table: t.phys(),
            refcount: 1,
            mapcount: 1
        }),
        "{r:?}"
    );
    assert!(
        r.findings
            .contains(&Finding::TableLeaked { table: t.phys() })
    );
}
