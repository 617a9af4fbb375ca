//! Host tests of faults that run at once on one address space through a
//! shared borrow (`AddressSpace::handle_fault_shared`), as the threads of
//! one process fault under the read side of their address-space lock.
//! `std` threads race on the same pages, in different orders, mixing
//! reads and writes; afterwards an independent model of what they did
//! says what each page must map, the mm audit checks every count, and
//! teardown must give every frame back. Miri runs them too, on fewer
//! pages.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use folium_mm::aspace::{Access, AddressSpace};
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::memmap::Memmap;
use folium_mm::pgtable::{PteFormat, TableAlloc};
use folium_mm::phys::LinearMap;
use folium_mm::stats::STATS;
use folium_mm::thp::ThpPolicy;
use folium_mm::tlb::{Asid, TlbOps};
use folium_mm::{Order, Pfn, PhysAddr, VirtAddr};

#[macro_use]
mod common;
use common::hostenv::{HostEnv, anon, new_space, va, write_u64};

/// Threads faulting at once.
const THREADS: u64 = 4;

/// Pages of the area: two last-level tables (Miri: a quarter of one).
fn pages() -> u64 {
    if cfg!(miri) { 128 } else { 1024 }
}

/// The machine the threads share: whatever needs the allocator (and the
/// environment's books of tables and frames) goes through the mutex.
struct Machine(Mutex<HostEnv>);

// SAFETY: a HostEnv holds the arena's base pointer and single-threaded
// cells (the recording TLB, counters); behind the mutex one thread at a
// time reaches them, and the arena itself is only reached through the
// linear map, whose frames the allocator hands to one owner at a time.
unsafe impl Sync for Machine {}

/// TLB flushes, counted (the threads' own TLB: the machine's recording
/// one is not shared).
#[derive(Default)]
struct Flushes(AtomicU64);

impl TlbOps for Flushes {
    fn flush_page(&self, _: Asid, _: VirtAddr) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn flush_range(&self, _: Asid, _: VirtAddr, _: VirtAddr) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn flush_asid(&self, _: Asid) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One thread's environment: the allocator under the machine's lock, the
/// rest lock-free.
struct ThreadEnv<'a> {
    machine: &'a Machine,
    memmap: &'static Memmap,
    linear: LinearMap,
    zero: Pfn,
    thp: &'a ThpPolicy,
    tlb: Flushes,
}

impl<'a> ThreadEnv<'a> {
    fn new(machine: &'a Machine, thp: &'a ThpPolicy) -> ThreadEnv<'a> {
        let m = machine.0.lock().unwrap();
        ThreadEnv {
            memmap: m.memmap,
            linear: m.linear(),
            zero: m.zero,
            machine,
            thp,
            tlb: Flushes::default(),
        }
    }
}

// SAFETY: the frames come from the machine's allocator (HostEnv's own
// TableAlloc, which keeps its books), unused until now.
unsafe impl TableAlloc for ThreadEnv<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.machine.0.lock().unwrap().alloc_table()
    }
    fn relax(&self) {
        std::thread::yield_now();
    }
}

impl MmEnv for ThreadEnv<'_> {
    fn memmap(&self) -> &Memmap {
        self.memmap
    }
    fn linear(&self) -> LinearMap {
        self.linear
    }
    fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        self.machine.0.lock().unwrap().alloc_folio(order)
    }
    fn folio_put_refs(&mut self, folio: Folio, nr: u32) {
        self.machine.0.lock().unwrap().folio_put_refs(folio, nr);
    }
    fn free_table(&mut self, table: PhysAddr) {
        self.machine.0.lock().unwrap().free_table(table);
    }
    fn tlb(&self) -> &dyn TlbOps {
        &self.tlb
    }
    fn thp(&self) -> &ThpPolicy {
        self.thp
    }
    fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool {
        self.machine
            .0
            .lock()
            .unwrap()
            .deferred_split_folio(head, base)
    }
    fn zero_pfn(&self) -> Pfn {
        self.zero
    }
}

/// An mTHP policy with 16 KiB and 64 KiB folios on: neighbouring faults
/// then compete for whole ranges, not only single pages.
fn small_folios() -> ThpPolicy {
    let thp = ThpPolicy::new();
    thp.write_top(b"always").unwrap();
    for o in 2..=9 {
        let s: &[u8] = if o == 2 || o == 4 {
            b"always"
        } else {
            b"never"
        };
        thp.write_size(o, s).unwrap();
    }
    thp
}

/// The order thread `t` visits pages in: each starts at its own offset
/// and strides differently, so every page is contended, at different
/// moments.
fn visit(t: u64, n: u64) -> impl Iterator<Item = u64> {
    let stride = [1, 7, 13, 31][t as usize % 4];
    (0..n).map(move |k| (t * n / THREADS + k * stride) % n)
}

/// Whether thread `t` writes (or only reads) page `p`.
fn writes(t: u64, p: u64) -> bool {
    !(p + t).is_multiple_of(3)
}

/// Where thread `t` stores its byte in a page, and the byte.
fn mark_at(t: u64) -> usize {
    64 + t as usize
}
fn mark(t: u64) -> u8 {
    0xa0 + t as u8
}

/// Runs `work(t, env)` on `THREADS` threads at once over `a`, started
/// together.
fn race<F: PteFormat>(
    machine: &Machine,
    thp: &ThpPolicy,
    a: &AddressSpace<F>,
    work: impl Fn(u64, &mut ThreadEnv<'_>, &AddressSpace<F>) + Sync,
) {
    let start = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (work, start) = (&work, &start);
            s.spawn(move || {
                let mut env = ThreadEnv::new(machine, thp);
                start.wait();
                work(t, &mut env, a);
            });
        }
    });
}

/// Rounds of each race (Miri: one).
fn rounds() -> u64 {
    if cfg!(miri) { 1 } else { 16 }
}

/// Threads fault one empty area together, reading and writing: after
/// each fault the access must be possible (a fault that lost a race
/// looks again rather than leaving it to the access); a page some thread
/// wrote must end up a private writable page (never the zero
/// page), a page only read the zero page; no frame is mapped twice, the
/// resident count matches the tables, the audit balances, and teardown
/// gives every frame back.
fn faults_race_on_every_page<F: PteFormat>() {
    let n = pages();
    let mut env = HostEnv::new(4096);
    let mut a = new_space::<F>(&mut env, 1);
    let thp = small_folios();
    let retries = STATS.fault_retries.load(Ordering::Relaxed);
    for _ in 0..rounds() {
        anon(&mut a, 0, n);
        let machine = Machine(Mutex::new(env));
        race(&machine, &thp, &a, |t, env, a| {
            for p in visit(t, n) {
                let access = if writes(t, p) {
                    Access::Write
                } else {
                    Access::Read
                };
                a.handle_fault_shared(env, va(p), access, Asid(1)).unwrap();
                // Its `Ok` means the access succeeds now (a lost race
                // included: another fault may only have moved the page
                // further on since).
                let (pfn, attrs) = a.translate(va(p)).expect("mapped after its fault");
                if access == Access::Write {
                    assert!(attrs.writable && pfn != env.zero, "page {p}: not writable");
                }
            }
        });
        env = machine.0.into_inner().unwrap();
        let mut frames = HashSet::new();
        for p in 0..n {
            let written = (0..THREADS).any(|t| writes(t, p));
            let (pfn, attrs) = a.translate(va(p)).expect("every page was faulted");
            if written {
                assert!(attrs.writable && pfn != env.zero, "page {p}");
                assert!(frames.insert(pfn), "page {p}: frame {pfn:?} mapped twice");
            } else {
                assert!(!attrs.writable && pfn == env.zero, "page {p}");
            }
        }
        assert_eq!(a.rss(), a.resident_pages());
        assert_eq!(a.rss(), frames.len() as u64);
        let report = env.audit(&[&a]);
        assert!(report.ok(), "{:?}", report.findings);
        a.unmap(&mut env, va(0), va(n)).unwrap();
    }
    // Not asserted (whether a race was lost is up to the host's
    // scheduler), but shown with --nocapture.
    println!(
        "faults that lost a race: {}",
        STATS.fault_retries.load(Ordering::Relaxed) - retries
    );
    a.teardown(&mut env);
}
on_both_formats!(faults_race_on_every_page: faults_race_on_every_page_x86, faults_race_on_every_page_arm);

/// After a fork, the child's threads write-fault its pages together and
/// each then stores a byte of its own: each page gets one private copy
/// holding the parent's data and every thread's byte (a copy replaced by
/// another thread's would lose stores); the parent's pages keep their frames and data; the audit of
/// both balances; and every frame comes back after both teardowns.
fn copy_on_write_races_after_fork<F: PteFormat>() {
    let n = pages();
    let mut env = HostEnv::new(4096);
    let mut parent = new_space::<F>(&mut env, 1);
    anon(&mut parent, 0, n);
    common::hostenv::set_sizes(&env, "always", &[(4, "always")]);
    for p in 0..n {
        write_u64(&mut env, &mut parent, va(p), 0x1000 + p);
    }
    let before: Vec<Pfn> = (0..n).map(|p| parent.translate(va(p)).unwrap().0).collect();
    let thp = small_folios();
    for _ in 0..rounds() {
        let mut child = parent.fork(&mut env, None).unwrap();
        child.asid = Asid(2);
        let machine = Machine(Mutex::new(env));
        race(&machine, &thp, &child, |t, env, a| {
            for p in visit(t, n) {
                a.handle_fault_shared(env, va(p), Access::Write, Asid(2))
                    .unwrap();
                // The store the fault was for: a byte of the thread's own.
                let (pfn, attrs) = a.translate(va(p)).unwrap();
                assert!(attrs.writable);
                let at = env.linear.ptr::<u8>(pfn.phys()).wrapping_add(mark_at(t));
                // SAFETY: a frame of the arena the child maps writable;
                // other threads store other bytes of it, atomically too.
                unsafe { AtomicU8::from_ptr(at) }.store(mark(t), Ordering::Relaxed);
            }
        });
        env = machine.0.into_inner().unwrap();
        let mut frames = HashSet::new();
        for p in 0..n {
            let (pfn, attrs) = child.translate(va(p)).unwrap();
            assert!(attrs.writable);
            assert!(
                frames.insert(pfn),
                "child page {p}: frame {pfn:?} mapped twice"
            );
            let mut b = [0u8; 8];
            assert!(child.read_bytes(&env, va(p), &mut b));
            assert_eq!(u64::from_le_bytes(b), 0x1000 + p);
            // No thread's store went to a copy another thread replaced.
            for t in 0..THREADS {
                let mut m = [0u8];
                assert!(child.read_bytes(&env, va(p) + mark_at(t) as u64, &mut m));
                assert_eq!(m[0], mark(t), "page {p}: thread {t}'s store is lost");
            }
            assert!(parent.read_bytes(&env, va(p), &mut b));
            assert_eq!(u64::from_le_bytes(b), 0x1000 + p);
            assert_eq!(parent.translate(va(p)).unwrap().0, before[p as usize]);
        }
        // The parent still maps every page, so none may have been reused.
        assert!(frames.iter().all(|f| !before.contains(f)));
        assert_eq!(child.rss(), child.resident_pages());
        let report = env.audit(&[&parent, &child]);
        assert!(report.ok(), "{:?}", report.findings);
        child.teardown(&mut env);
    }
    parent.teardown(&mut env);
}
on_both_formats!(copy_on_write_races_after_fork: copy_on_write_races_after_fork_x86, copy_on_write_races_after_fork_arm);
