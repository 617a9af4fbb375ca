//! Unit tests of `vma.rs`.

use super::*;
use proptest::prelude::*;

fn va(p: u64) -> VirtAddr {
    VirtAddr::new(p * PAGE_SIZE)
}

fn anon(s: u64, e: u64, prot: Prot) -> Vma {
    Vma::new(va(s), va(e), prot, VmaKind::Anon)
}

#[test]
fn prot_bits_round_trip() {
    for bits in 0..8u64 {
        assert_eq!(
            Prot::from_bits(bits).map(|p| u64::from(p.bits())),
            Some(bits)
        );
    }
    assert_eq!(Prot::RW.bits(), 3);
}

#[test]
fn find_free_refuses_odd_requests() {
    let m = VmaMap::new();
    assert_eq!(m.find_free(0, va(0), va(100)), None, "zero length");
    assert_eq!(m.find_free(100, va(0), va(100)), None, "unaligned length");
    assert_eq!(m.find_free(PAGE_SIZE, va(50), va(10)), None, "hi below lo");
    assert_eq!(m.find_free(PAGE_SIZE, va(10), va(50)), Some(va(49)));
}

#[test]
fn empty_means_no_bytes() {
    assert!(anon(5, 5, Prot::RW).is_empty());
    assert!(anon(6, 5, Prot::RW).is_empty());
    let v = anon(5, 6, Prot::RW);
    assert!(!v.is_empty());
    assert_eq!(v.len(), PAGE_SIZE);
}

#[test]
fn insert_merges_and_refuses_overlap() {
    let mut m = VmaMap::new();
    m.insert(anon(10, 20, Prot::RW)).unwrap();
    m.insert(anon(20, 30, Prot::RW)).unwrap();
    assert_eq!(m.len(), 1, "adjacent compatible areas merge");
    m.insert(anon(5, 10, Prot::READ)).unwrap();
    assert_eq!(m.len(), 2, "different rights do not merge");
    assert_eq!(m.insert(anon(29, 31, Prot::RW)), Err(VmaError::Overlap));
    assert_eq!(
        m.insert(Vma::new(va(40), va(40), Prot::RW, VmaKind::Anon)),
        Err(VmaError::Invalid)
    );
    assert_eq!(m.find(va(25)).unwrap().start, va(10));
    assert!(m.find(va(30)).is_none());
    m.check().unwrap();
}

#[test]
fn remove_splits_one_area_in_three() {
    let mut m = VmaMap::new();
    m.insert(anon(10, 20, Prot::RW)).unwrap();
    assert_eq!(m.splits_needed(va(12), va(15)), 2);
    let gone = m.remove_range(va(12), va(15)).unwrap();
    assert_eq!(gone, 1);
    let left: Vec<_> = m.iter().map(|v| (v.start, v.end)).collect();
    assert_eq!(left, [(va(10), va(12)), (va(15), va(20))]);
    assert_eq!(m.remove_range(va(100), va(200)).unwrap(), 0);
    assert_eq!(m.splits_needed(va(10), va(20)), 0);
    m.check().unwrap();
}

#[test]
fn protect_over_a_hole_changes_nothing() {
    let mut m = VmaMap::new();
    m.insert(anon(10, 20, Prot::RW)).unwrap();
    m.insert(anon(21, 30, Prot::RW)).unwrap();
    assert_eq!(m.protect(va(15), va(25), Prot::READ), Err(VmaError::Hole));
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|v| v.prot == Prot::RW));
    m.protect(va(12), va(14), Prot::READ).unwrap();
    assert_eq!(m.len(), 4);
    m.protect(va(12), va(14), Prot::RW).unwrap();
    assert_eq!(m.len(), 2, "re-merged after restoring the rights");
    m.check().unwrap();
}

#[test]
fn find_free_is_top_down() {
    let mut m = VmaMap::new();
    m.insert(anon(90, 100, Prot::RW)).unwrap();
    m.insert(anon(70, 85, Prot::RW)).unwrap();
    assert_eq!(m.find_free(5 * PAGE_SIZE, va(0), va(100)), Some(va(85)));
    assert_eq!(m.find_free(6 * PAGE_SIZE, va(0), va(100)), Some(va(64)));
    assert_eq!(m.find_free(6 * PAGE_SIZE, va(66), va(100)), None);
    assert_eq!(m.find_free(3 * PAGE_SIZE, va(0), va(110)), Some(va(107)));
}

proptest! {
    // Fewer cases under Miri, which runs this thousands of times slower,
    // and no regression file (its isolation has no working directory).
    #![proptest_config(if cfg!(miri) {
        ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig::default()
    })]

    /// Random inserts, removals and protections against a per-page model.
    #[test]
    fn matches_a_per_page_model(ops in proptest::collection::vec(
        (0u8..3, 0u64..64, 1u64..16, 0u8..4), 1..60)) {
        let mut m = VmaMap::new();
        let mut model: [Option<Prot>; 80] = [None; 80];
        for (op, s, n, p) in ops {
            let (s, e) = (s, s + n);
            let prot = Prot(p);
            match op {
                0 => {
                    let free = model[s as usize..e as usize].iter().all(Option::is_none);
                    let r = m.insert(anon(s, e, prot));
                    prop_assert_eq!(r.is_ok(), free);
                    if free {
                        model[s as usize..e as usize].fill(Some(prot));
                    }
                }
                1 => {
                    m.remove_range(va(s), va(e)).unwrap();
                    model[s as usize..e as usize].fill(None);
                }
                _ => {
                    let full = model[s as usize..e as usize].iter().all(Option::is_some);
                    let r = m.protect(va(s), va(e), prot);
                    prop_assert_eq!(r.is_ok(), full);
                    if full {
                        model[s as usize..e as usize].fill(Some(prot));
                    }
                }
            }
            prop_assert_eq!(m.check(), Ok(()));
            for (i, want) in model.iter().enumerate() {
                prop_assert_eq!(m.find(va(i as u64)).map(|v| v.prot), *want, "page {}", i);
            }
        }
    }
}
