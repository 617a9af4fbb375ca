//! Unit tests of `memmap.rs`.

use super::*;

#[test]
fn page_flags_combine_as_sets() {
    let hd = PageFlags::HEAD | PageFlags::DIRTY;
    assert_eq!(hd.bits(), 1 | 1 << 4);
    assert_eq!(hd | PageFlags::HEAD, hd, "or-ing a flag already set");
    assert_eq!((hd | hd).bits(), hd.bits());
    assert!(hd.contains(PageFlags::DIRTY) && !hd.contains(PageFlags::YOUNG));
    assert_eq!(hd.without(PageFlags::HEAD), PageFlags::DIRTY);
    assert_eq!(PageFlags::EMPTY.bits(), 0);
}

#[test]
fn span_is_widened_to_max_blocks() {
    let (s, e) = Memmap::span_for(Pfn::new(0x40003), Pfn::new(0x40801));
    assert_eq!((s, e), (Pfn::new(0x40000), Pfn::new(0x40c00)));
    assert_eq!(
        Memmap::nr_pages_for(Pfn::new(0x40003), Pfn::new(0x40801)),
        0xc00
    );
    assert_eq!(Memmap::bytes_for(0xc00), 0xc00 * 32);
    assert_eq!(Memmap::nr_pages_for(Pfn::new(0x400), Pfn::new(0x400)), 0);
}

#[test]
fn init_marks_everything_reserved() {
    let mm = test_memmap(Pfn::new(0x1001), Pfn::new(0x1402));
    assert_eq!(mm.start_pfn(), Pfn::new(0x1000));
    assert_eq!(mm.end_pfn(), Pfn::new(0x1800));
    assert_eq!(mm.nr_pages(), 0x800);
    assert!(mm.contains(Pfn::new(0x17ff)) && !mm.contains(Pfn::new(0x1800)));
    assert!(mm.get(Pfn::new(0xfff)).is_none());
    for p in mm.pages() {
        assert_eq!(p.flags(), PageFlags::RESERVED);
        assert_eq!(p.head_order(), None);
        assert_eq!((p.next(), p.prev()), (NONE, NONE));
    }
    assert!(mm.page(Pfn::new(0x1234)).is_reserved());
}

#[test]
fn anon_exclusive_is_per_page() {
    let mm = test_memmap(Pfn::new(0), Pfn::new(4));
    let p = mm.page(Pfn::new(1));
    p.set_flags(PageFlags::ANON_EXCLUSIVE);
    assert!(p.test_anon_exclusive());
    assert!(!mm.page(Pfn::new(0)).test_anon_exclusive());
    assert!(p.is_reserved(), "other flags untouched");
    p.clear_anon_exclusive();
    assert_eq!(p.flags(), PageFlags::RESERVED);
}

#[test]
fn empty_memmap() {
    let mm = test_memmap(Pfn::new(0x400), Pfn::new(0x400));
    assert_eq!(mm.nr_pages(), 0);
    assert!(mm.pages().is_empty());
    assert!(!mm.contains(Pfn::new(0x400)));
}
