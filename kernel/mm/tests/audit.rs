//! Host tests of the mm audit over real address spaces on both PTE
//! formats: the books balance through faults, the zero page, fork, COW,
//! partial unmaps and teardown, with totals checked against a second
//! count; and each table and folio check reports a corruption made on
//! purpose (a count off by one, a leaked table, an entry to a free, table
//! or kernel frame), then passes again once it is undone.

use folium_mm::audit::{Finding, FrameKind};
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::pgtable::{Level, PageTable, PteFormat, PteKind, TableAlloc};
use folium_mm::{Order, Pfn};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, folio_at, new_space, read_u64, set_sizes, va, write_u64};

use folium_mm::aspace::AddressSpace;

const FRAMES: u64 = 4096;

/// (entries mapping folios, entries mapping the zero page, tables) of
/// `spaces`, counted through `translate` and the tree's own table count.
fn second_count<F: PteFormat>(env: &HostEnv, spaces: &[&AddressSpace<F>]) -> (u64, u64, u64) {
    let (mut entries, mut zero, mut tables) = (0, 0, 0);
    for a in spaces {
        tables += a.page_table().count_tables() as u64;
        for v in a.vmas().iter() {
            let mut at = v.start;
            while at < v.end {
                match a.translate(at) {
                    Some((pfn, _)) if pfn == env.zero => zero += 1,
                    Some(_) => entries += 1,
                    None => {}
                }
                at = at + folium_mm::PAGE_SIZE;
            }
        }
    }
    (entries, zero, tables)
}

fn assert_balanced<F: PteFormat>(env: &HostEnv, spaces: &[&AddressSpace<F>]) {
    let r = env.audit(spaces);
    assert!(r.ok(), "{:?}", r.findings);
    let t = r.totals;
    assert_eq!(
        (t.entries, t.zero_entries, t.user_tables),
        second_count(env, spaces)
    );
    assert_eq!(
        t.table_pages, t.user_tables,
        "the host has no kernel tables"
    );
    assert_eq!(t.free, env.free_pages());
    assert_eq!(
        t.free + t.folio_pages + t.table_pages + t.kernel_pages,
        t.managed
    );
}

fn books_balance_through_the_mm_operations<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(4, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 96);
    assert_balanced(&env, &[&a]);
    for p in 0..40 {
        write_u64(&mut env, &mut a, va(p), p);
    }
    for p in 64..70 {
        assert_eq!(read_u64(&mut env, &mut a, va(p)), 0);
    }
    assert_balanced(&env, &[&a]);
    let r = env.audit(&[&a]);
    assert_eq!(r.totals.zero_entries, 6);
    assert_eq!(r.totals.folios, 3, "40 pages in 16-page folios");
    a.unmap(&mut env, va(20), va(24)).unwrap();
    assert!(env.buddy.deferred_len() > 0);
    assert_balanced(&env, &[&a]);
    let mut b = a.fork(&mut env, None).unwrap();
    assert_balanced(&env, &[&a, &b]);
    // A fork doubles every count: leaving the child out is caught.
    let partial = env.audit(&[&a]);
    assert!(
        partial
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Refcount { .. })),
        "{partial:?}"
    );
    write_u64(&mut env, &mut b, va(3), 7);
    assert_balanced(&env, &[&a, &b]);
    b.teardown(&mut env);
    assert_balanced(&env, &[&a]);
    a.teardown(&mut env);
    let r = env.audit::<F>(&[]);
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!((r.totals.folios, r.totals.table_pages), (0, 0));
}
on_both_formats!(books_balance_through_the_mm_operations: balance_x86_64, balance_aarch64);

fn wrong_counts_are_found<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[(2, "always")]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 4);
    write_u64(&mut env, &mut a, va(0), 1);
    let (head, _, refs, maps) = folio_at(&env, &a, 0);
    assert_eq!((refs, maps), (4, 4));
    // One reference too many: a leak the audit names.
    let f = env.memmap.page_folio(head).unwrap();
    f.ref_add(1);
    let r = env.audit(&[&a]);
    assert_eq!(
        r.findings,
        [Finding::Refcount {
            head,
            refcount: 5,
            entries: 4
        }]
    );
    // SAFETY: the reference taken just above, ended here.
    env.folio_put(unsafe { Folio::from_raw(head) });
    assert!(env.audit(&[&a]).ok());
    f.add_mapcount(1);
    let r = env.audit(&[&a]);
    assert_eq!(
        r.findings,
        [Finding::Mapcount {
            head,
            mapcount: 5,
            entries: 4
        }]
    );
    f.sub_mapcount(1);
    assert!(env.audit(&[&a]).ok());
    a.teardown(&mut env);
}
on_both_formats!(wrong_counts_are_found: counts_x86_64, counts_aarch64);

fn a_leaked_table_is_found<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 1);
    write_u64(&mut env, &mut a, va(0), 1);
    let t = env.alloc_table().unwrap();
    let r = env.audit(&[&a]);
    assert_eq!(r.findings, [Finding::TableLeaked { table: t }]);
    // The root is a table too: a space the caller forgot looks leaked.
    let forgot = env.audit::<F>(&[]);
    assert!(
        forgot
            .findings
            .contains(&Finding::TableLeaked { table: a.root() })
    );
    env.free_table(t);
    assert!(env.audit(&[&a]).ok());
    a.teardown(&mut env);
}
on_both_formats!(a_leaked_table_is_found: leaked_table_x86_64, leaked_table_aarch64);

fn entries_to_foreign_frames_are_found<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 2);
    write_u64(&mut env, &mut a, va(0), 1);
    write_u64(&mut env, &mut a, va(1), 2);
    let (mine, attrs) = a.translate(va(1)).unwrap();
    // A free frame, a table frame (the root) and a kernel block.
    let kernel = env.buddy.alloc(Order::of(0)).unwrap();
    let free = env.buddy.alloc(Order::of(0)).unwrap();
    env.buddy.free(free, Order::of(0)).unwrap();
    let table = a.root().pfn();
    // SAFETY: the space's own live tree in the arena; this handle writes
    // one entry while nothing else uses the tree, and puts it back.
    let mut pt = unsafe { PageTable::<F>::new(a.root(), env.linear()) };
    let slot = pt.pte_slot(va(1)).unwrap();
    let old = pt.pte(slot);
    for (pfn, kind) in [
        (free, FrameKind::Free),
        (table, FrameKind::Table),
        (kernel, FrameKind::Kernel),
    ] {
        let leaf = PteKind::Leaf {
            pa: pfn.phys(),
            attrs,
        };
        pt.set_pte(slot, F::encode(leaf, Level::L3));
        let r = env.audit(&[&a]);
        assert!(
            r.findings.contains(&Finding::BadEntry {
                space: 0,
                va: va(1),
                pfn,
                kind
            }),
            "{kind:?}: {r:?}"
        );
        // The folio the entry used to map lost a mapping.
        assert!(
            r.findings.contains(&Finding::Refcount {
                head: mine,
                refcount: 1,
                entries: 0
            }),
            "{r:?}"
        );
    }
    pt.set_pte(slot, old);
    assert!(env.audit(&[&a]).ok());
    env.buddy.free(kernel, Order::of(0)).unwrap();
    let _: Pfn = free;
    a.teardown(&mut env);
}
on_both_formats!(entries_to_foreign_frames_are_found: foreign_x86_64, foreign_aarch64);

/// The L2 table (the one holding the entry for a 2 MiB span) that maps
/// `at` in `a`, found by reading the tree's upper levels.
fn l2_table<F: PteFormat>(
    env: &HostEnv,
    a: &AddressSpace<F>,
    at: folium_mm::VirtAddr,
) -> folium_mm::PhysAddr {
    let mut t = a.root();
    for level in [Level::L0, Level::L1] {
        let p = env.linear().ptr::<u64>(t);
        // SAFETY: `t` is a table of the space's live tree in the arena,
        // and the index is below 512.
        let raw = unsafe { p.add(level.index_of(at)).read() };
        match F::decode(folium_mm::pgtable::Pte::from_bits(raw), level) {
            PteKind::Table(next) => t = next,
            other => panic!("no table below {level:?}: {other:?}"),
        }
    }
    t
}

fn bad_upper_entries_are_found<F: PteFormat>() {
    let mut env = HostEnv::new(FRAMES);
    set_sizes(&env, "never", &[]);
    let mut a = new_space::<F>(&mut env, 1);
    anon(&mut a, 0, 1);
    write_u64(&mut env, &mut a, va(0), 1);
    let l3 = a.page_table().pte_slot(va(0)).unwrap().table;
    let l2 = l2_table(&env, &a, va(0));
    // The L2 entry for the next 2 MiB, which nothing maps.
    let next = folium_mm::VirtAddr::new(va(0).as_u64() + (2 << 20));
    let entry = env
        .linear()
        .ptr::<u64>(l2)
        .wrapping_add(Level::L2.index_of(next));
    let kernel = env.buddy.alloc(Order::of(0)).unwrap();
    let set = |kind: PteKind| {
        // SAFETY: one entry of the space's own L2 table, which was 0 and
        // is put back to 0 below; nothing else uses the tree meanwhile.
        unsafe { entry.write(F::encode(kind, Level::L2).bits()) }
    };
    // The same L3 table linked twice: reached twice, its page counted
    // twice.
    set(PteKind::Table(l3));
    let r = env.audit(&[&a]);
    assert!(
        r.findings.contains(&Finding::TableShared {
            table: l3,
            times: 2
        }),
        "{r:?}"
    );
    // A kernel frame linked as a table.
    set(PteKind::Table(kernel.phys()));
    let r = env.audit(&[&a]);
    assert!(
        r.findings.contains(&Finding::TableFrame {
            table: kernel.phys(),
            kind: FrameKind::Kernel
        }),
        "{r:?}"
    );
    // A 2 MiB block in a user tree.
    let (pfn, attrs) = a.translate(va(0)).unwrap();
    let block = Pfn::new(pfn.as_u64() & !511).phys();
    set(PteKind::Leaf { pa: block, attrs });
    let r = env.audit(&[&a]);
    assert!(
        r.findings.contains(&Finding::UserBlock {
            space: 0,
            va: next,
            level: 2
        }),
        "{r:?}"
    );
    // SAFETY: as above: the entry goes back to 0.
    unsafe { entry.write(0) };
    assert!(env.audit(&[&a]).ok());
    env.buddy.free(kernel, Order::of(0)).unwrap();
    a.teardown(&mut env);
}
on_both_formats!(bad_upper_entries_are_found: upper_x86_64, upper_aarch64);
