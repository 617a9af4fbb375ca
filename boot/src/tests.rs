//! Host tests of the boot layer's own decisions (the reservations implied
//! by how the kernel was entered, and the assembled range lists).

use super::*;

fn r(s: u64, e: u64) -> PhysRange {
    PhysRange {
        start: PhysAddr::new(s),
        end: PhysAddr::new(e),
    }
}

fn covers(list: &[PhysRange], x: PhysRange) -> bool {
    list.iter().any(|h| h.start <= x.start && x.end <= h.end)
}

#[test]
fn page_0_is_reserved_on_arm64_with_or_without_a_dtb() {
    let page0 = r(0, 0x1000);
    for fw in [
        Firmware::Unknown { raw: 0 },
        Firmware::Atags {
            pa: PhysAddr::new(0x100),
        },
    ] {
        let e = entry_reservations(Arch::Aarch64, fw, None);
        assert_eq!(e, [page0], "{fw:?}");
    }
    let dtb = Firmware::Dtb {
        pa: PhysAddr::new(0x4000_0000),
        size: 0x1_0000,
    };
    let e = entry_reservations(Arch::Aarch64, dtb, Some(r(0x4800_0000, 0x4812_3456)));
    assert!(covers(&e, page0));
    assert!(covers(&e, r(0x4000_0000, 0x4001_0000)), "the blob: {e:?}");
    assert!(
        covers(&e, r(0x4800_0000, 0x4812_4000)),
        "the initrd's pages: {e:?}"
    );
    // x86: the whole first MiB, whatever the firmware.
    let e = entry_reservations(Arch::X86_64, Firmware::Unknown { raw: 0 }, None);
    assert_eq!(e, [r(0, 0x10_0000)]);
}

#[test]
fn boot_ranges_list_each_byte_once() {
    let list = |v: &[PhysRange]| v.iter().copied().collect::<RangeList>();
    let b = BootRanges::new(
        list(&[
            r(0x8000_0000, 0x9000_0000),
            r(0x4000_0000, 0x8000_0000),
            r(0x4000_0000, 0x8000_0000),
        ]),
        list(&[r(0x4000_1000, 0x4000_2000), r(0x4000_1800, 0x4000_3000)]),
        RangeList::new(),
        &[r(0, 0x1000), r(0x4000_0000, 0x4000_0800)],
    );
    assert_eq!(b.ram.as_slice(), &[r(0x4000_0000, 0x9000_0000)]);
    assert_eq!(
        b.reserved.as_slice(),
        &[r(0, 0x1000), r(0x4000_0000, 0x4000_3000)]
    );
}
