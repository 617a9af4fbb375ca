//! Self-tests of physical memory and the kernel's page tables, run on every
//! board under `test`.

use alloc::vec::Vec;

use folium_mm::buddy::FreeError;
use folium_mm::folio::{Folio, PutOutcome, REF_SATURATED};
use folium_mm::memmap::Page;
use folium_mm::memmap::SafetyCounts;
use folium_mm::pgtable::MemType;
use folium_mm::{Order, Pfn, VirtAddr};

use super::{frames, kmap};
use crate::arch;

/// A small deterministic PRNG (xorshift64*), so failures replay exactly.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

kernel_test!(
    fn exhaust_all_frames_at_mixed_orders_then_restore() {
        // Through the CPUs' page lists, as faults allocate: exhausting
        // memory must reach the pages parked on every CPU's lists (an
        // allocation drains them before it fails), and once all is freed
        // and drained the buddy lists are whole again.
        frames::drain_all();
        let before = frames::stats();
        check!(before.free_pages > 0, "allocator has no free pages");
        check_eq!(before.pcp_pages, 0, "pages left on the lists after a drain");
        // Another CPU parks a batch on its own list: allocations here
        // must still reach it.
        let other = crate::smp::online().find(|&c| c != crate::smp::id());
        if let Some(cpu) = other {
            crate::smp::run_test_on(cpu, park_a_batch)?;
            let parked = frames::pcp_pages_on(cpu);
            check!(parked > 0, "CPU {cpu} parked nothing on its list");
            check_eq!(
                frames::stats().free_pages,
                before.free_pages,
                "parked pages not counted free"
            );
        }
        let mut rng = Rng::new(0x5eed_f011);
        let mut held: Vec<(Folio, Order)> = Vec::with_capacity(4096);
        let mut pages = 0u64;
        loop {
            let want = rng.below(Order::COUNT as u64) as u8;
            // Fall back order by order, as a fault would.
            let got = (0..=want).rev().find_map(|o| {
                let order = Order::of(o);
                frames::alloc_folio(order).map(|f| (f, order))
            });
            match got {
                Some((f, order)) => {
                    pages += order.pages();
                    held.push((f, order));
                }
                // Even order 0 failed: memory is exhausted.
                None => break,
            }
        }
        let exhausted = frames::stats();
        let parked_after = other.map_or(0, frames::pcp_pages_on);
        let no_more = Order::all().all(|o| frames::alloc_folio(o).map(frames::folio_put).is_none());
        // Free in random order (Fisher-Yates), through the lists.
        for i in (1..held.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            held.swap(i, j);
        }
        let nr = held.len();
        let not_freed = held
            .drain(..)
            .map(|(f, _)| frames::folio_put(f))
            .filter(|put| !put.freed())
            .count();
        let freed = frames::stats();
        frames::drain_all();
        let after = frames::stats();
        println!(
            "    {nr} folios, {pages} pages allocated; every order then failed: {no_more}; {} pages on the lists after freeing",
            freed.pcp_pages
        );
        check_eq!(not_freed, 0, "folios a single put did not free");
        check_eq!(exhausted.free_pages, 0, "pages left after exhausting");
        check_eq!(
            parked_after,
            0,
            "another CPU's list kept pages through exhaustion"
        );
        check!(no_more, "an allocation succeeded on an exhausted allocator");
        check_eq!(
            pages,
            before.free_pages,
            "allocated pages != free pages at start"
        );
        check_eq!(
            freed.free_pages,
            before.free_pages,
            "pages on the lists not counted free"
        );
        check!(freed.pcp_pages > 0, "no free went to a CPU's list");
        check_eq!(after.free_pages, before.free_pages);
        check_eq!(after.pcp_pages, 0);
        check_eq!(
            after.blocks,
            before.blocks,
            "free lists not merged back to the boot layout"
        );
        Ok(())
    }
);

/// Run on another CPU: one order-0 allocation refills a batch onto its
/// list, and the free puts the block back there.
fn park_a_batch() -> crate::ktest::TestResult {
    let f = check_some!(frames::alloc_folio(Order::of(0)));
    check_eq!(frames::folio_put(f), PutOutcome::Freed);
    Ok(())
}

kernel_test!(
    fn folio_refcount_mapcount_and_page_folio() {
        let before = frames::stats().free_pages;
        let order = Order::of(4);
        let f = check_some!(frames::alloc_folio(order));
        // Metadata through the shared memmap, without the allocator lock.
        let m = frames::memmap();
        let pfn = f.pfn();
        let extra = m.folio_get(&f);
        let v = m.folio(&f);
        v.add_mapcount(16);
        let mapped = v.mapcount();
        v.sub_mapcount(16);
        let heads_ok =
            (0..order.pages()).all(|i| m.page_folio(pfn + i).map(|h| h.pfn()) == Some(pfn));
        check_eq!(v.ref_count(), 2);
        check_eq!(mapped, 16);
        check!(heads_ok, "page_folio did not find the head for every page");
        check_eq!(frames::stats().free_pages, before - 16);
        check_eq!(frames::folio_put(extra), PutOutcome::Held, "first put");
        check_eq!(frames::folio_put(f), PutOutcome::Freed, "last put");
        check_eq!(frames::stats().free_pages, before);
        Ok(())
    }
);

/// Undoes a pin a test provoked on purpose: resets the folio at `pfn` to
/// one reference and no mapping, then puts that reference. `None` if no
/// allocated folio is headed at `pfn` (it was freed after all).
fn unpin(pfn: Pfn) -> Option<PutOutcome> {
    let v = frames::memmap()
        .page_folio(pfn)
        .filter(|v| v.pfn() == pfn)?;
    // SAFETY: callers have put every handle to the folio, and the mappings
    // they counted were never backed by a PTE; the one reference set here
    // is taken back right below.
    unsafe { v.reset_counts_for_tests(1, 0) };
    // SAFETY: the reference reset_counts_for_tests just made.
    Some(frames::folio_put(unsafe { Folio::from_raw(pfn) }))
}

kernel_test!(
    fn saturated_folio_is_pinned_not_freed() {
        let m = frames::memmap();
        let before = frames::stats().free_pages;
        let s0 = frames::safety();
        let order = Order::of(2);
        let f = check_some!(frames::alloc_folio(order));
        let pfn = f.pfn();
        let g = m.folio_get(&f);
        // Far more references than a u32 holds: must stick, not wrap.
        m.folio(&f).ref_add(u32::MAX);
        m.folio(&f).ref_add(u32::MAX);
        let rc = m.folio(&f).ref_count();
        let puts = (frames::folio_put(g), frames::folio_put(f));
        let still = m.page_folio(pfn).map(|v| (v.pfn(), v.ref_count()));
        let during = frames::stats().free_pages;
        let raw_free = frames::with(|b| b.free(pfn, order));
        let s1 = frames::safety();
        let undo = unpin(pfn);
        check_eq!(rc, REF_SATURATED);
        check_eq!(puts, (PutOutcome::Saturated, PutOutcome::Saturated));
        check_eq!(
            still,
            Some((pfn, REF_SATURATED)),
            "pinned folio not allocated"
        );
        check_eq!(
            during,
            before - order.pages(),
            "a saturated folio was freed"
        );
        check_eq!(
            raw_free,
            Err(FreeError::Referenced {
                refcount: REF_SATURATED
            }),
            "the allocator must not free a saturated folio"
        );
        check_eq!(
            s1,
            SafetyCounts {
                ref_saturated: s0.ref_saturated + 1,
                put_saturated: s0.put_saturated + 2,
                ..s0
            }
        );
        check_eq!(undo, Some(PutOutcome::Freed));
        check_eq!(frames::stats().free_pages, before);
        Ok(())
    }
);

kernel_test!(
    fn last_put_on_a_mapped_folio_is_refused() {
        let m = frames::memmap();
        let before = frames::stats().free_pages;
        let s0 = frames::safety();
        let order = Order::of(3);
        let f = check_some!(frames::alloc_folio(order));
        let pfn = f.pfn();
        m.folio(&f).add_mapcount(3);
        let put = frames::folio_put(f);
        let still = m
            .page_folio(pfn)
            .map(|v| (v.pfn(), v.ref_count(), v.mapcount()));
        let during = frames::stats().free_pages;
        let raw_free = frames::with(|b| b.free(pfn, order));
        // An unmap past zero is refused too, and leaves the count alone.
        let unmapped = m.page_folio(pfn).map(|v| v.sub_mapcount(4));
        let s1 = frames::safety();
        let undo = unpin(pfn);
        frames::print_safety();
        check_eq!(put, PutOutcome::Mapped { mapcount: 3 });
        check_eq!(
            still,
            Some((pfn, REF_SATURATED, 3)),
            "a mapped folio must stay allocated, pinned"
        );
        check_eq!(during, before - order.pages(), "a mapped folio was freed");
        check_eq!(
            raw_free,
            Err(FreeError::Mapped { mapcount: 3 }),
            "the allocator must not free a mapped folio"
        );
        check_eq!(unmapped, Some(3));
        check_eq!(
            s1,
            SafetyCounts {
                // The last put, then the raw free.
                freed_mapped: s0.freed_mapped + 2,
                map_underflow: s0.map_underflow + 1,
                ..s0
            }
        );
        check_eq!(undo, Some(PutOutcome::Freed));
        check_eq!(frames::stats().free_pages, before);
        Ok(())
    }
);

kernel_test!(
    fn anon_exclusive_does_not_survive_free_and_reallocation() {
        let m = frames::memmap();
        let order = Order::of(4);
        let n = order.pages();
        let f = check_some!(frames::alloc_folio(order));
        let pfn = f.pfn();
        let v = m.folio(&f);
        v.set_anon();
        for i in [1, n / 2, n - 1] {
            v.set_page_anon_exclusive(pfn + i);
        }
        let set = (0..n)
            .filter(|&i| m.page(pfn + i).test_anon_exclusive())
            .count();
        // Free and reallocate under one lock hold, so nothing else can take
        // the frames in between: the buddy hands the same block back.
        let (put, g) = frames::with(|b| {
            let put = b.folio_put(f);
            let stale_free = (0..n).any(|i| m.page(pfn + i).test_anon_exclusive());
            (put, b.alloc_folio(order).map(|g| (g, stale_free)))
        });
        let (g, stale_free) = check_some!(g);
        let w = m.folio(&g);
        let same = g.pfn() == pfn;
        let stale = (0..n)
            .filter(|&i| w.page_anon_exclusive(g.pfn() + i))
            .count();
        let anon = w.test_anon();
        let put_g = frames::folio_put(g);
        check_eq!(set, 3, "the bits were not set");
        check_eq!(put, PutOutcome::Freed);
        check!(!stale_free, "a free block still carries anon-exclusive");
        check!(same, "reallocation did not reuse the frames");
        check_eq!(stale, 0, "pages of the new folio still anon-exclusive");
        check!(!anon, "folio flag survived");
        check_eq!(put_g, PutOutcome::Freed);
        Ok(())
    }
);

kernel_test!(
    fn memmap_descriptor_is_small() {
        check!(
            size_of::<Page>() <= 64,
            "Page descriptor is {} bytes",
            size_of::<Page>()
        );
        Ok(())
    }
);

kernel_test!(
    fn zeroed_folio_reads_zero() {
        let order = Order::of(2);
        let f = check_some!(frames::alloc_folio(order));
        let p = frames::linear().ptr::<u64>(f.pfn().phys());
        let n = (order.bytes() / 8) as usize;
        // SAFETY: the folio is ours and mapped by the linear map.
        unsafe { core::ptr::write_bytes(p, 0xa5, n) };
        frames::zero_folio(&f, order);
        // SAFETY: as above.
        let all_zero = (0..n).all(|i| unsafe { p.add(i).read_volatile() } == 0);
        let put = frames::folio_put(f);
        check!(all_zero);
        check_eq!(put, PutOutcome::Freed);
        Ok(())
    }
);

fn text_addr() -> u64 {
    kmain_marker as *const () as u64
}

#[inline(never)]
fn kmain_marker() {}

kernel_test!(
    fn kernel_text_and_rodata_are_write_protected() {
        static RO: u64 = 0x1234;
        for (what, addr) in [("text", text_addr() & !7), ("rodata", &raw const RO as u64)] {
            let old = arch::probe_read(addr);
            check!(old.is_ok(), "{what} not readable");
            // Writing back the value just read would be harmless if it succeeded.
            let r = arch::probe_write(addr, old.unwrap_or(0));
            let rec = check_some!(r.err(), "write to kernel {what} at {addr:#x} did not fault");
            check_eq!(rec.addr, addr);
            #[cfg(target_arch = "aarch64")]
            check_eq!(
                (rec.syndrome & 0x3c) >> 2,
                3,
                "DFSC should be a permission fault: {}",
                arch::describe(&rec)
            );
            #[cfg(target_arch = "x86_64")]
            check_eq!(
                rec.syndrome & 0x7,
                0x3,
                "error code should be present + write: {}",
                arch::describe(&rec)
            );
        }
        Ok(())
    }
);

kernel_test!(
    fn kernel_tables_map_sections_w_xor_x() {
        static mut DATA: u64 = 0;
        static RODATA: u64 = 1;
        let t = kmap::translate(VirtAddr::new(text_addr()));
        check!(
            t.is_some_and(|t| t.attrs.exec && !t.attrs.writable),
            "text: {t:?}"
        );
        let r = kmap::translate(VirtAddr::new(&raw const RODATA as u64));
        check!(
            r.is_some_and(|t| !t.attrs.exec && !t.attrs.writable),
            "rodata: {r:?}"
        );
        let d = kmap::translate(VirtAddr::new(&raw mut DATA as u64));
        check!(
            d.is_some_and(|t| !t.attrs.exec && t.attrs.writable),
            "data: {d:?}"
        );
        // The linear map: normal memory, writable, never executable.
        let f = check_some!(frames::alloc_folio(Order::of(0)));
        let va = VirtAddr::new(frames::linear().ptr::<u8>(f.pfn().phys()) as u64);
        let l = kmap::translate(va);
        check_eq!(frames::folio_put(f), PutOutcome::Freed);
        check!(
            l.is_some_and(|t| t.attrs.writable && !t.attrs.exec && t.attrs.mem == MemType::Normal),
            "linear: {l:?}"
        );
        check!(
            l.is_some_and(|t| t.pa == f_phys(va)),
            "linear map is not pa + offset"
        );
        for r in crate::platform::device_regions() {
            let va = VirtAddr::new(r.start.as_u64() + frames::linear().offset());
            let dv = kmap::translate(va);
            check!(
                dv.is_some_and(|t| t.attrs.mem == MemType::Device && !t.attrs.exec),
                "device {r:?}: {dv:?}"
            );
        }
        Ok(())
    }
);

fn f_phys(va: VirtAddr) -> folium_mm::PhysAddr {
    frames::phys_of(va.as_u64() as *const u8)
}

kernel_test!(
    fn early_identity_map_is_gone() {
        let info = folium_boot::info();
        check!(info.is_some());
        let pa = info.map_or(0, |i| i.kernel_phys.start.as_u64());
        let r = arch::probe_read(pa);
        check!(
            r.is_err(),
            "the kernel's physical address {pa:#x} is still identity-mapped"
        );
        Ok(())
    }
);

kernel_test!(
    fn the_live_tables_are_the_kernels_own() {
        let root = kmap::root();
        check!(root.is_some());
        check_eq!(Some(arch::current_kernel_root()), root, "TTBR1_EL1 / CR3");
        Ok(())
    }
);

kernel_test!(
    fn kernel_data_is_not_executable() {
        // `mov x0, #0; ret` / `xor eax, eax; ret`: harmless if it did run.
        #[cfg(target_arch = "aarch64")]
        static mut CODE: [u32; 2] = [0xd280_0000, 0xd65f_03c0];
        #[cfg(target_arch = "x86_64")]
        static mut CODE: [u8; 3] = [0x31, 0xc0, 0xc3];
        let addr = &raw mut CODE as u64;
        // SAFETY: CODE is a function returning 0, as probe_exec requires.
        let r = unsafe { arch::probe_exec(addr) };
        let rec = check_some!(r.err(), "data at {addr:#x} was executable");
        check_eq!(rec.pc, addr);
        #[cfg(target_arch = "aarch64")]
        {
            check_eq!(rec.class, 0x21, "instruction abort at EL1");
            check_eq!(
                (rec.syndrome & 0x3c) >> 2,
                3,
                "IFSC should be a permission fault"
            );
        }
        #[cfg(target_arch = "x86_64")]
        check_eq!(
            rec.syndrome & 0x11,
            0x11,
            "error code: present + instruction fetch"
        );
        Ok(())
    }
);

kernel_test!(
    fn image_alias_in_linear_map_is_read_only() {
        let info = check_some!(folium_boot::info());
        let text_pa = (text_addr() & !7) - arch::kimage_voffset(info);
        let alias = text_pa + info.linear_offset;
        let old = arch::probe_read(alias);
        check!(
            old == arch::probe_read(text_addr() & !7),
            "alias does not show the same bytes as text"
        );
        let r = arch::probe_write(alias, old.unwrap_or(0));
        check!(
            r.is_err(),
            "kernel text writable through its linear alias {alias:#x}"
        );
        Ok(())
    }
);

kernel_test!(
    fn boot_stack_has_a_guard_page() {
        let guard = folium_boot::image_layout().stack_guard.as_u64();
        let r = arch::probe_read(guard);
        check!(
            r.is_err(),
            "the page below the boot stack ({guard:#x}) is mapped"
        );
        #[cfg(target_arch = "aarch64")]
        check_eq!(
            (r.err().map_or(0, |t| t.syndrome) & 0x3c) >> 2,
            1,
            "translation fault"
        );
        Ok(())
    }
);

/// Reference and mapping updates one CPU makes in [`hammer_folio`].
const HAMMER_ROUNDS: u32 = 20_000;
/// CPUs at [`hammer_folio`]'s start line, and the start.
static HAMMER_READY: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
static HAMMER_GO: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Takes and puts references to the folio whose head is `arg`, and adds
/// and removes mappings of it, [`HAMMER_ROUNDS`] times: each round leaves
/// the counts as it found them, so whatever the other CPUs do at the
/// same moment, the counts end where they started, if and only if every
/// update is atomic.
fn hammer_folio(arg: u64) {
    use core::sync::atomic::Ordering::{AcqRel, Acquire};
    let pfn = Pfn::new(arg);
    // All start together: each says it is here, then waits for the word.
    HAMMER_READY.fetch_add(1, AcqRel);
    while !HAMMER_GO.load(Acquire) {
        core::hint::spin_loop();
    }
    hammer_folio_rounds(pfn);
}

/// [`hammer_folio`]'s rounds.
fn hammer_folio_rounds(pfn: Pfn) {
    let memmap = frames::memmap();
    for i in 0..HAMMER_ROUNDS {
        let nr = 1 + i % 3;
        let Some(f) = memmap.page_folio(pfn) else {
            return;
        };
        f.ref_add(nr);
        f.add_mapcount(nr);
        f.sub_mapcount(nr);
        // SAFETY: the `nr` references were taken just above and nothing
        // else claims them.
        let handle = unsafe { Folio::from_raw(pfn) };
        // Never the last reference: the test holds one throughout.
        let _ = memmap.folio_put_refs_testzero(handle, nr);
    }
}

kernel_test!(
    fn folio_counts_stay_exact_under_updates_from_every_cpu() {
        let others: Vec<usize> = crate::smp::online().filter(|&c| c != 0).collect();
        if others.is_empty() {
            return Ok(()); // one CPU
        }
        let safety0 = frames::safety();
        let folio = check_some!(frames::with(|b| b.alloc_folio(Order::of(2))));
        let pfn = folio.pfn();
        let memmap = frames::memmap();
        let done: Vec<u64> = others.iter().map(|&c| crate::smp::jobs_done(c)).collect();
        HAMMER_READY.store(0, core::sync::atomic::Ordering::Relaxed);
        HAMMER_GO.store(false, core::sync::atomic::Ordering::Relaxed);
        let mut posted = 0;
        for &c in &others {
            posted += usize::from(crate::smp::post_job(c, hammer_folio, pfn.as_u64()));
        }
        // Wait (a second at most) for them at the start line, then go.
        let deadline = crate::time::monotonic_ns() + 1_000_000_000;
        while HAMMER_READY.load(core::sync::atomic::Ordering::Acquire) < posted
            && crate::time::monotonic_ns() < deadline
        {
            core::hint::spin_loop();
        }
        HAMMER_GO.store(true, core::sync::atomic::Ordering::Release);
        check_eq!(posted, others.len(), "a job for every other CPU");
        hammer_folio_rounds(pfn);
        for (&c, &d) in others.iter().zip(&done) {
            check!(crate::smp::wait_jobs(c, d + 1), "CPU {c} finished");
        }
        let f = check_some!(memmap.page_folio(pfn));
        let counts = (f.ref_count(), f.mapcount());
        let safety = frames::safety();
        let put = frames::folio_put(folio);
        check_eq!(
            counts,
            (1, 0),
            "(refcount, mapcount) after every CPU's updates"
        );
        check_eq!(safety, safety0, "no saturation, underflow or refusal");
        check!(put.freed(), "the last put frees it: {put:?}");
        Ok(())
    }
);
