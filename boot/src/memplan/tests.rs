//! Host tests of the boot memory plan on synthetic firmware tables.

use super::*;

const GIB: u64 = 1 << 30;

fn r(s: u64, e: u64) -> PhysRange {
    PhysRange {
        start: PhysAddr::new(s),
        end: PhysAddr::new(e),
    }
}

/// Every managed free page is handed out exactly once: `now`, `deferred`
/// and the memmap are disjoint and together make up the managed RAM minus
/// the holes (checked by a second computation from the inputs).
fn check_partition(p: &MemPlan, ram: &[PhysRange], holes: &[PhysRange]) {
    let mut parts: alloc::vec::Vec<PhysRange> = p.now.as_slice().to_vec();
    parts.extend(p.deferred.as_slice());
    parts.push(p.memmap);
    let raw: u64 = parts.iter().map(PhysRange::size).sum();
    let mut union: RangeList = parts.into_iter().collect();
    union.normalize();
    assert_eq!(union.total(), raw, "now/deferred/memmap overlap: {p:?}");
    let mut want = usable_ram(ram);
    want.subtract(p.unused.as_slice());
    let holes: alloc::vec::Vec<PhysRange> = holes.iter().map(|h| h.pages_covering()).collect();
    want.subtract(&holes);
    want.normalize();
    assert_eq!(union, want, "{p:?}");
    // The memmap covers every managed frame.
    for b in p.ram.as_slice() {
        assert!(p.span.0 <= b.start.pfn() && b.end.pfn() <= p.span.1);
    }
}

#[test]
fn arm64_ram_crossing_512_gib_is_deferred_not_lost() {
    // 1 TiB from 1 GiB up: half of it beyond the early map.
    let ram = [r(GIB, GIB + (1024 * GIB))];
    let holes = [r(GIB, GIB + 0x20_0000)];
    let p = plan(&ram, &holes, |x| below(x, AARCH64_EARLY_LIMIT)).unwrap();
    check_partition(&p, &ram, &holes);
    assert!(
        p.memmap.end.as_u64() <= AARCH64_EARLY_LIMIT,
        "{:?}",
        p.memmap
    );
    assert_eq!(
        p.deferred.as_slice(),
        &[r(AARCH64_EARLY_LIMIT, GIB + 1024 * GIB)]
    );
    assert!(p.unused.is_empty());
    // 32 bytes per 4 KiB frame: 8 GiB of memmap for 1 TiB.
    assert_eq!(p.memmap.size(), 8 * GIB);
}

#[test]
fn x86_ram_above_4_gib_is_managed() {
    // q35 with 8 GiB: low RAM up to 2 GiB, the rest above 4 GiB.
    let ram = [
        r(0, 0x9_fc00),
        r(0x10_0000, 0x8000_0000),
        r(4 * GIB, 4 * GIB + 6 * GIB),
    ];
    let holes = [r(0, 0x10_0000), r(0x10_0000, 0x40_0000)];
    let p = plan(&ram, &holes, |x| below(x, X86_64_EARLY_LIMIT)).unwrap();
    check_partition(&p, &ram, &holes);
    assert!(p.memmap.end.as_u64() <= X86_64_EARLY_LIMIT);
    assert_eq!(p.deferred.as_slice(), &[r(4 * GIB, 10 * GIB)]);
    assert_eq!(p.span.1, PhysAddr::new(10 * GIB).pfn());
    // 512 GiB above 4 GiB needs a 4 GiB memmap, which does not fit in the
    // 2 GiB below 4 GiB: that bank is given up (and reported), not the boot.
    let big = [r(0x10_0000, 0x8000_0000), r(4 * GIB, 4 * GIB + 512 * GIB)];
    let p = plan(&big, &holes, |x| below(x, X86_64_EARLY_LIMIT)).unwrap();
    check_partition(&p, &big, &holes);
    assert_eq!(p.unused.as_slice(), &[r(4 * GIB, 516 * GIB)]);
}

#[test]
fn overlapping_and_repeated_banks_are_merged() {
    let ram = [
        r(0x4000_0000, 0x8000_0000),
        r(0x4000_0000, 0x8000_0000),
        r(0x6000_0000, 0x9000_0000),
        // Two banks splitting a page between them keep it.
        r(0x9000_0000, 0x9000_0800),
        r(0x9000_0800, 0x9000_2000),
    ];
    let u = usable_ram(&ram);
    assert_eq!(u.as_slice(), &[r(0x4000_0000, 0x9000_2000)]);
    let p = plan(&ram, &[], Some).unwrap();
    check_partition(&p, &ram, &[]);
    assert_eq!(p.now.total() + p.memmap.size(), 0x5000_2000);
}

#[test]
fn hundreds_of_banks_and_reservations_are_all_kept() {
    // 300 banks of 4 MiB with 4 MiB gaps above one of 1 GiB (which can
    // hold the memmap), 500 reservations of one page.
    let mut ram: alloc::vec::Vec<PhysRange> = (0..300u64)
        .map(|i| r(2 * GIB + i * 0x80_0000, 2 * GIB + i * 0x80_0000 + 0x40_0000))
        .collect();
    let holes: alloc::vec::Vec<PhysRange> = (0..500u64)
        .map(|i| {
            let b = ram[(i % 300) as usize].start.as_u64() + (i / 300 + 1) * 0x10_0000;
            r(b, b + 0x1000)
        })
        .collect();
    ram.push(r(GIB, 2 * GIB));
    let p = plan(&ram, &holes, Some).unwrap();
    check_partition(&p, &ram, &holes);
    // The first small bank touches the big one: they merge.
    assert_eq!(p.ram.as_slice().len(), 300);
    assert!(p.unused.is_empty());
    assert!(p.memmap.start.as_u64() >= GIB && p.memmap.end.as_u64() <= 2 * GIB + 0x40_0000);
    assert_eq!(
        p.now.total() + p.memmap.size(),
        GIB + 300 * 0x40_0000 - 500 * 0x1000
    );
}

#[test]
fn no_ram_or_no_room_is_an_error() {
    assert_eq!(plan(&[], &[], Some).err(), Some(PlanError::NoRam));
    // Unreachable RAM cannot host the memmap.
    assert!(matches!(
        plan(&[r(8 * GIB, 9 * GIB)], &[], |x| below(x, 4 * GIB)),
        Err(PlanError::NoRoomForMemmap(_))
    ));
    // RAM beyond the 48-bit physical space is not managed.
    assert_eq!(
        usable_ram(&[r(MAX_PHYS - 0x1000, MAX_PHYS + 0x1000)]).as_slice(),
        &[r(MAX_PHYS - 0x1000, MAX_PHYS)]
    );
}
