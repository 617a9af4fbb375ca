//! Unit tests of `pcp.rs`.

use super::*;
use crate::buddy::{check_free, check_frozen};
use crate::folio::PutTestZero;
use crate::memmap::test_memmap;
use core::sync::atomic::Ordering::Relaxed;

fn o(k: u8) -> Order {
    Order::of(k)
}

/// An allocator over `pages` frames from 0, all free.
fn buddy(pages: u64) -> BuddyAllocator<'static> {
    let mut b = BuddyAllocator::new(test_memmap(Pfn::new(0), Pfn::new(pages)));
    b.add_free_range(Pfn::new(0), Pfn::new(pages));
    b
}

const CFG: PcpConfig = PcpConfig {
    batch: 16,
    high: 64,
};

/// Frees an allocated block through `p`, or through `b` if `p` does not
/// keep it; then drains `p` past its high mark as the kernel does.
fn free(p: &mut PcpLists, b: &mut BuddyAllocator<'_>, pfn: Pfn, order: Order) {
    let block = check_free(b.memmap(), pfn, order).unwrap();
    if let Err(block) = p.free(b.memmap(), block) {
        b.free_checked(block);
    }
    if p.pages() > u64::from(CFG.high) {
        p.drain_to(b, u64::from(CFG.high - CFG.batch));
    }
}

/// Allocates through `p`, refilling from `b` when its list is empty.
fn alloc(p: &mut PcpLists, b: &mut BuddyAllocator<'_>, order: Order) -> Option<Pfn> {
    if !PcpLists::covers(order) {
        return b.alloc(order);
    }
    if let Some(pfn) = p.alloc(b.memmap(), order) {
        return Some(pfn);
    }
    p.refill(b, order, CFG);
    p.alloc(b.memmap(), order)
}

/// The memmap's markers agree with the lists: every `PCP` head is on
/// one of `lists` exactly once with its order, tails carry nothing, and
/// buddy heads match the allocator's counts.
fn check(b: &BuddyAllocator<'_>, lists: &[&PcpLists]) {
    let mm = b.memmap();
    let mut on_lists = std::collections::HashMap::new();
    for p in lists {
        let mut pages = 0;
        for (pfn, order) in p.blocks(mm) {
            assert!(
                on_lists.insert(pfn, order).is_none(),
                "{pfn:?} listed twice"
            );
            pages += order.pages();
            for t in 1..order.pages() {
                assert!(
                    mm.page(pfn + t).flags().is_empty(),
                    "tail of {pfn:?} flagged"
                );
            }
        }
        assert_eq!(pages, p.pages());
        for k in 0..PCP_ORDERS {
            let n = p.blocks(mm).filter(|&(_, ord)| ord == o(k as u8)).count();
            assert_eq!(n as u32, p.count(o(k as u8)));
        }
    }
    let mut buddies = 0;
    for (i, page) in mm.pages().iter().enumerate() {
        let pfn = mm.start_pfn() + i as u64;
        if page.is_pcp() {
            assert_eq!(
                on_lists.get(&pfn),
                Some(&page.order()),
                "{pfn:?} marked PCP, not listed"
            );
            assert!(!page.is_buddy() && !page.is_head());
            assert_eq!(page.refcount().load(Relaxed), 0);
            assert!(
                mm.page_folio(pfn).is_none(),
                "a free block reads as a folio"
            );
        }
        if page.is_buddy() {
            buddies += 1;
        }
    }
    assert_eq!(buddies, b.free_per_order().iter().sum::<u64>());
}

#[test]
fn config_scales_with_memory_and_cpus() {
    let c = PcpConfig::for_memory(65536, 4);
    assert_eq!(
        c,
        PcpConfig {
            batch: 64,
            high: 1024
        }
    );
    let c = PcpConfig::for_memory(32768, 8);
    assert_eq!(
        c,
        PcpConfig {
            batch: 32,
            high: 512
        }
    );
    // Tiny memory: a batch of one page, a high mark of two.
    assert_eq!(
        PcpConfig::for_memory(100, 8),
        PcpConfig { batch: 1, high: 2 }
    );
    assert_eq!(c.refill_blocks(o(0)), 32);
    assert_eq!(c.refill_blocks(o(4)), 2);
    assert_eq!(PcpConfig { batch: 1, high: 2 }.refill_blocks(o(4)), 1);
}

#[test]
fn refill_alloc_free_drain_round_trip() {
    let mut b = buddy(0x800);
    let initial = b.free_per_order();
    let mut p = PcpLists::new();
    let pfn = alloc(&mut p, &mut b, o(0)).unwrap();
    // One block went out, the rest of the batch waits on the list.
    assert_eq!(p.count(o(0)), CFG.batch - 1);
    assert_eq!(b.nr_free_pages() + p.pages(), 0x800 - 1);
    let head = b.memmap().page(pfn);
    assert!(head.is_head() && head.refcount().load(Relaxed) == 1);
    check(&b, &[&p]);
    free(&mut p, &mut b, pfn, o(0));
    assert_eq!(p.count(o(0)), CFG.batch);
    // The block freed last is the one handed out next.
    assert_eq!(alloc(&mut p, &mut b, o(0)), Some(pfn));
    free(&mut p, &mut b, pfn, o(0));
    check(&b, &[&p]);
    assert_eq!(p.drain_to(&mut b, 0), u64::from(CFG.batch));
    assert_eq!(p.pages(), 0);
    assert_eq!(
        b.free_per_order(),
        initial,
        "drained blocks did not merge back"
    );
    check(&b, &[&p]);
}

#[test]
fn high_mark_drains_oldest_first() {
    let mut b = buddy(0x800);
    let mut p = PcpLists::new();
    let blocks: Vec<Pfn> = (0..CFG.high + 1).map(|_| b.alloc(o(0)).unwrap()).collect();
    for &pfn in &blocks {
        free(&mut p, &mut b, pfn, o(0));
    }
    // The 65th free went over 64 and drained down to 48, oldest first.
    assert_eq!(p.pages(), u64::from(CFG.high - CFG.batch));
    let kept: Vec<Pfn> = p.blocks(b.memmap()).map(|(pfn, _)| pfn).collect();
    let newest: Vec<Pfn> = blocks.iter().rev().take(kept.len()).copied().collect();
    assert_eq!(kept, newest);
    check(&b, &[&p]);
}

#[test]
fn free_pcp_blocks_never_merge_into_buddy_blocks() {
    let mut b = buddy(0x200);
    let mut p = PcpLists::new();
    let a = b.alloc(o(0)).unwrap();
    free(&mut p, &mut b, a, o(0));
    // Its buddy is free on the buddy lists but must stay unmerged: the
    // order-9 block is gone while `a` sits on the CPU's list.
    assert_eq!(b.alloc(o(9)), None);
    assert_eq!(b.nr_free_pages(), 0x1ff);
    check(&b, &[&p]);
    p.drain_to(&mut b, 0);
    assert!(b.alloc(o(9)).is_some());
}

#[test]
fn kept_orders_only_and_queued_folios_go_to_the_buddy_lists() {
    let mut b = buddy(0x400);
    let mm = b.memmap();
    let mut p = PcpLists::new();
    let big = b.alloc(o(5)).unwrap();
    let block = check_free(mm, big, o(5)).unwrap();
    let block = p.free(mm, block).unwrap_err();
    b.free_checked(block);
    assert_eq!(p.pages(), 0);
    // A large folio queued for deferred split is freed by the allocator,
    // which takes it off its queue.
    let f = b.alloc_folio(o(4)).unwrap();
    let head = f.pfn();
    mm.folio(&f).set_anon();
    assert!(b.deferred_split_folio(head, crate::addr::VirtAddr::new(0x40_0000)));
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("last reference kept")
    };
    let block = check_frozen(frozen).unwrap();
    let block = p.free(mm, block).unwrap_err();
    b.free_checked(block);
    assert_eq!(b.deferred_len(), 0);
    assert_eq!(b.nr_free_pages(), 0x400);
    check(&b, &[&p]);
}

#[test]
fn per_page_flags_do_not_survive_a_pcp_free() {
    let mut b = buddy(0x400);
    let mm = b.memmap();
    let mut p = PcpLists::new();
    let f = b.alloc_folio(o(4)).unwrap();
    let pfn = f.pfn();
    let v = mm.folio(&f);
    v.set_anon();
    v.set_page_anon_exclusive(pfn + 7);
    let PutTestZero::Zero(frozen) = mm.folio_put_testzero(f) else {
        panic!("last reference kept")
    };
    p.free(mm, check_frozen(frozen).unwrap()).unwrap();
    assert!(!mm.page(pfn + 7).test_anon_exclusive());
    assert_eq!(mm.page(pfn).flags(), PageFlags::PCP);
    check(&b, &[&p]);
    // Handed out again, it is a clean folio head.
    let again = p.alloc(mm, o(4)).unwrap();
    assert_eq!(again, pfn);
    assert_eq!(mm.page(pfn).flags(), PageFlags::HEAD);
}

#[test]
fn a_block_on_a_list_cannot_be_freed_again() {
    let mut b = buddy(0x400);
    let mm = b.memmap();
    let mut p = PcpLists::new();
    let a = b.alloc(o(0)).unwrap();
    free(&mut p, &mut b, a, o(0));
    assert_eq!(
        check_free(mm, a, o(0)).unwrap_err(),
        crate::buddy::FreeError::NotAllocated
    );
    assert_eq!(b.free(a, o(0)), Err(crate::buddy::FreeError::NotAllocated));
    check(&b, &[&p]);
}

#[test]
#[should_panic(expected = "per-CPU list 0 holds")]
fn a_corrupted_list_is_caught_before_it_hands_out_a_frame() {
    let mut b = buddy(0x400);
    let mm = b.memmap();
    let mut p = PcpLists::new();
    let a = b.alloc(o(0)).unwrap();
    free(&mut p, &mut b, a, o(0));
    // A stray write makes the listed frame look allocated.
    mm.page(a).store_flags(PageFlags::HEAD);
    let _ = p.alloc(mm, o(0));
}

/// Random allocations and frees of orders 0..=6 through two CPUs' lists
/// against a model of what is allocated: no frame is handed out twice,
/// every page is free or allocated exactly once, and once everything is
/// freed and drained the buddy lists are whole again.
#[test]
fn random_model() {
    const PAGES: u64 = 0x1000;
    let mut b = buddy(PAGES);
    let initial = b.free_per_order();
    let mut lists = [PcpLists::new(), PcpLists::new()];
    let mut owned = vec![false; PAGES as usize];
    let mut live: Vec<(Pfn, Order)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..20_000 {
        let cpu = rand(2) as usize;
        if rand(100) < 55 {
            let order = o(rand(7) as u8);
            let got = alloc(&mut lists[cpu], &mut b, order).or_else(|| {
                // What the kernel does before it fails: drain every list.
                for p in &mut lists {
                    p.drain_to(&mut b, 0);
                }
                b.alloc(order)
            });
            if let Some(pfn) = got {
                assert!(pfn.is_order_aligned(order));
                for i in 0..order.pages() {
                    let slot = &mut owned[(pfn + i).as_u64() as usize];
                    assert!(!*slot, "{:?} handed out twice", pfn + i);
                    *slot = true;
                }
                live.push((pfn, order));
            }
        } else if !live.is_empty() {
            let (pfn, order) = live.swap_remove(rand(live.len() as u64) as usize);
            for i in 0..order.pages() {
                owned[(pfn + i).as_u64() as usize] = false;
            }
            free(&mut lists[cpu], &mut b, pfn, order);
        }
        let allocated: u64 = live.iter().map(|(_, o)| o.pages()).sum();
        let on_lists: u64 = lists.iter().map(PcpLists::pages).sum();
        assert_eq!(
            b.nr_free_pages() + on_lists + allocated,
            PAGES,
            "step {step}"
        );
        if step % 1000 == 0 {
            check(&b, &[&lists[0], &lists[1]]);
        }
    }
    for (pfn, order) in live.drain(..) {
        free(&mut lists[0], &mut b, pfn, order);
    }
    for p in &mut lists {
        p.drain_to(&mut b, 0);
    }
    assert_eq!(b.free_per_order(), initial);
    check(&b, &[&lists[0], &lists[1]]);
}
