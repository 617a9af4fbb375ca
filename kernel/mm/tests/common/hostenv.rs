//! A whole machine for address-space tests: an arena of "RAM" (filled
//! with garbage), a memmap and buddy allocator over it, a recording TLB
//! that fails the test when a frame is freed while a translation to it may
//! still be cached, an mTHP policy and a zero page.

use std::alloc::{Layout, alloc, dealloc};

use folium_mm::aspace::{Access, AddressSpace};
use folium_mm::audit::{Report, Trees, audit};
use folium_mm::buddy::BuddyAllocator;
use folium_mm::env::MmEnv;
use folium_mm::folio::Folio;
use folium_mm::memmap::{Memmap, Page};
use folium_mm::pgtable::{FoldEvent, FoldPolicy, PteFormat, TableAlloc};
use folium_mm::phys::LinearMap;
use folium_mm::split::{SplitScan, deferred_split_scan};
use folium_mm::thp::ThpPolicy;
use folium_mm::tlb::{Asid, RecordingTlb, TlbOps};
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{Order, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

/// Fake physical address of the arena's first frame.
const FAKE_BASE: u64 = 0x4000_0000;
/// One past the highest user address the tests' spaces use.
pub const USER_END: u64 = 1 << 47;

/// Every memmap an environment made. They are leaked on purpose (the environment lends `&'static` borrows of
/// them, which may outlive it) and kept
/// reachable here, so that Miri's leak check, on for everything else,
/// does not report them.
static MEMMAPS: std::sync::Mutex<Vec<&'static Memmap>> = std::sync::Mutex::new(Vec::new());

/// "Physical memory": an arena, a memmap over it and a buddy allocator.
pub struct HostEnv {
    pub arena: *mut u8,
    pub layout: Layout,
    pub memmap: &'static Memmap,
    pub buddy: BuddyAllocator<'static>,
    pub tlb: RecordingTlb,
    pub tables: u64,
    pub thp: ThpPolicy,
    pub zero: Pfn,
    /// What [`MmEnv::gather_batch`] answers.
    pub gather_batch: usize,
    /// What [`MmEnv::batching`] answers.
    pub batching: bool,
    /// Every batch fork (true) and zap (false) handled, with its size.
    pub batches: std::cell::RefCell<Vec<(bool, usize)>>,
    /// What [`MmEnv::fold_policy`] answers (folding on by default).
    pub fold: FoldPolicy,
    /// Folding events counted through [`MmEnv::note_fold`]: folds,
    /// unfolds, refolds, block flushes.
    pub fold_events: std::cell::RefCell<[u64; 4]>,
    /// Every [`MmEnv::sync_icache`] call: (first frame, pages), with the
    /// frames' first word at the time (what an instruction fetch must see).
    pub icache_syncs: std::cell::RefCell<Vec<(Pfn, u64, u64)>>,
    /// Free frames when the environment was made: dropping it checks that
    /// every frame came back and no table is held (the books every test
    /// keeps without writing them), unless [`HostEnv::allow_leaks`].
    free_at_start: u64,
    check_leaks: bool,
    /// What [`MmEnv::cond_resched`] does besides counting the call
    /// (`resched_calls`): none by default; a test's hook may act on the
    /// TLB as other tasks and a rollover would, and answer a new ASID.
    #[allow(clippy::type_complexity)]
    pub resched: Option<Box<dyn FnMut(&RecordingTlb) -> Option<Asid>>>,
    /// Calls of [`MmEnv::cond_resched`].
    pub resched_calls: u64,
}

impl HostEnv {
    /// `frames` frames of RAM (the zero page is taken from them).
    pub fn new(frames: u64) -> HostEnv {
        let layout = Layout::from_size_align((frames * PAGE_SIZE) as usize, 4096).unwrap();
        // SAFETY: non-zero size.
        let arena = unsafe { alloc(layout) };
        assert!(!arena.is_null());
        // SAFETY: `arena` is valid for the whole layout.
        unsafe { arena.write_bytes(0x5a, layout.size()) };
        let (start, end) = (
            Pfn::new(FAKE_BASE >> 12),
            Pfn::new((FAKE_BASE >> 12) + frames),
        );
        let nr = Memmap::nr_pages_for(start, end) as usize;
        let storage: &'static mut [std::mem::MaybeUninit<Page>] =
            Box::leak(Box::new_uninit_slice(nr));
        // SAFETY: the leaked slice is aligned for Page and holds `nr` slots.
        let memmap: &'static Memmap = Box::leak(Box::new(unsafe {
            Memmap::init(storage.as_mut_ptr().cast(), start, end)
        }));
        MEMMAPS.lock().unwrap().push(memmap);
        let mut buddy = BuddyAllocator::new(memmap);
        buddy.add_free_range(start, end);
        let zero = buddy.alloc(Order::of(0)).unwrap();
        // SAFETY: a frame of the arena, just allocated.
        unsafe {
            arena
                .add((zero.phys().as_u64() - FAKE_BASE) as usize)
                .write_bytes(0, PAGE_SIZE as usize)
        };
        HostEnv {
            arena,
            layout,
            memmap,
            buddy,
            tlb: RecordingTlb::new(),
            tables: 0,
            thp: ThpPolicy::new(),
            zero,
            gather_batch: folium_mm::env::GATHER_BATCH,
            batching: true,
            batches: Default::default(),
            fold: FoldPolicy::ON,
            fold_events: Default::default(),
            icache_syncs: Default::default(),
            free_at_start: 0,
            check_leaks: true,
            resched: None,
            resched_calls: 0,
        }
        .with_free_recorded()
    }

    fn with_free_recorded(mut self) -> HostEnv {
        self.free_at_start = self.free_pages();
        self
    }

    /// This test keeps address spaces alive to its end on purpose: no
    /// leak check when the environment is dropped.
    pub fn allow_leaks(&mut self) {
        self.check_leaks = false;
    }

    pub fn free_pages(&self) -> u64 {
        self.buddy.nr_free_pages()
    }

    /// The hardware may cache any valid translation at any time (not a
    /// protnone one: the MMU never uses it).
    pub fn walk_all<F: PteFormat>(&self, a: &AddressSpace<F>) {
        for v in a.vmas().iter() {
            let mut va = v.start;
            while va < v.end {
                if let Some((pfn, attrs)) = a.translate(va).filter(|(_, a)| !a.protnone) {
                    self.tlb
                        .touch(a.asid, va, pfn, attrs.writable && attrs.user);
                }
                va = va + PAGE_SIZE;
            }
        }
    }

    /// Fails unless every writable translation the TLB may still hold for
    /// `a` is one its page tables grant now (same frame, still writable):
    /// a downgrade (fork's write-protect, mprotect, a COW replacement)
    /// that forgot its flush would let the program write where it may
    /// not.
    pub fn assert_no_stale_write<F: PteFormat>(&self, a: &AddressSpace<F>) {
        for (va, pfn, writable) in self.tlb.cached(a.asid) {
            if !writable {
                continue;
            }
            let now = a.translate(va);
            assert!(
                now.is_some_and(|(p, at)| p == pfn && at.writable && at.user),
                "stale writable TLB entry {va:?} -> {pfn:?}; the PTE is now {now:?}"
            );
        }
    }
}

impl HostEnv {
    /// Runs the deferred-split scan over `spaces` (which must be every
    /// space alive), and fails if it frees a frame the TLB may still
    /// translate.
    pub fn split_scan<F: PteFormat>(&mut self, spaces: &[&AddressSpace<F>]) -> SplitScan {
        let queued: Vec<(Pfn, u64)> = self
            .buddy
            .deferred_folios()
            .map(|(head, _)| (head, self.memmap.page_folio(head).unwrap().nr_pages()))
            .collect();
        let tables: Vec<_> = spaces.iter().map(|a| a.page_table()).collect();
        let scan = deferred_split_scan(&mut self.buddy, &tables, &self.thp);
        for (head, pages) in queued {
            for pfn in (0..pages).map(|k| head + k) {
                if self.memmap.page_folio(pfn).is_none() {
                    assert!(
                        !self.tlb.maps_frame(pfn),
                        "split freed {pfn:?} while a translation to it may be cached"
                    );
                }
            }
        }
        scan
    }
}

impl HostEnv {
    /// The mm audit of this machine with `spaces` as every user space
    /// alive (no kernel trees: the host has none).
    pub fn audit<F: PteFormat>(&self, spaces: &[&AddressSpace<F>]) -> Report {
        let tables: Vec<_> = spaces.iter().map(|a| a.page_table()).collect();
        let trees = Trees {
            user: &tables,
            user_end: VirtAddr::new(USER_END),
            kernel: &[],
            zero_pfn: self.zero,
        };
        let mut scratch = vec![0u32; self.memmap.nr_pages() as usize];
        audit(&self.buddy, 0, &trees, &mut scratch).unwrap()
    }
}

impl Drop for HostEnv {
    fn drop(&mut self) {
        // A failing test is already reported; a second panic would abort.
        if self.check_leaks && !std::thread::panicking() {
            assert_eq!(self.tables, 0, "page tables still held at the end");
            assert_eq!(
                self.free_pages(),
                self.free_at_start,
                "frames not back at the end of the test"
            );
        }
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.arena, self.layout) };
    }
}

// SAFETY: the frames come from the arena's buddy allocator, unused until
// now, and pass to the page table that asked for them.
unsafe impl TableAlloc for HostEnv {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let t = self.buddy.alloc_table().map(Pfn::phys);
        self.tables += u64::from(t.is_some());
        t
    }
}

impl MmEnv for HostEnv {
    fn memmap(&self) -> &Memmap {
        self.memmap
    }
    fn linear(&self) -> LinearMap {
        // SAFETY: every frame the buddy hands out lies in the arena, and
        // the base is derived from the arena's pointer.
        unsafe { LinearMap::from_base(self.arena.wrapping_sub(FAKE_BASE as usize)) }
    }
    fn alloc_folio(&mut self, order: Order) -> Option<Folio> {
        self.buddy.alloc_folio(order)
    }
    fn folio_put_refs(&mut self, folio: Folio, nr: u32) {
        let head = folio.pfn();
        let pages = self.memmap.folio(&folio).nr_pages();
        if self.buddy.folio_put_refs(folio, nr).freed() {
            // Any frame of the folio, not only its head.
            for k in 0..pages {
                let pfn = head + k;
                assert!(
                    !self.tlb.maps_frame(pfn),
                    "{pfn:?} freed while a translation to it may be cached"
                );
            }
        }
    }
    fn free_table(&mut self, table: PhysAddr) {
        self.tables -= 1;
        self.buddy.free(table.pfn(), Order::of(0)).unwrap();
    }
    fn tlb(&self) -> &dyn TlbOps {
        &self.tlb
    }
    fn thp(&self) -> &ThpPolicy {
        &self.thp
    }
    fn deferred_split_folio(&mut self, head: Pfn, base: VirtAddr) -> bool {
        self.buddy.deferred_split_folio(head, base)
    }
    fn zero_pfn(&self) -> Pfn {
        self.zero
    }
    fn gather_batch(&self) -> usize {
        self.gather_batch
    }
    fn batching(&self) -> bool {
        self.batching
    }
    fn note_batch(&self, fork: bool, nr: usize) {
        self.batches.borrow_mut().push((fork, nr));
    }
    fn fold_policy(&self) -> FoldPolicy {
        self.fold
    }
    fn note_fold(&self, event: FoldEvent, n: u64) {
        self.fold_events.borrow_mut()[event as usize] += n;
    }
    fn sync_icache(&self, pfn: Pfn, nr: u64) {
        // SAFETY: a frame of the arena, mapped by the linear map.
        let word = unsafe { self.linear().ptr::<u64>(pfn.phys()).read_unaligned() };
        self.icache_syncs.borrow_mut().push((pfn, nr, word));
    }
    fn cond_resched(
        &mut self,
        _root: PhysAddr,
        _tag: &mut folium_mm::asid::AsidTag,
        _rss: u64,
    ) -> Option<Asid> {
        self.resched_calls += 1;
        self.resched.as_mut().and_then(|f| f(&self.tlb))
    }
}

/// The address of page `page` of the tests' window (2 MiB aligned).
pub fn va(page: u64) -> VirtAddr {
    VirtAddr::new(0x40_0000 + page * PAGE_SIZE)
}

/// An empty space tagged `asid`.
pub fn new_space<F: PteFormat>(env: &mut HostEnv, asid: u16) -> AddressSpace<F> {
    let mut a = AddressSpace::<F>::new(env, VirtAddr::new(USER_END), None).unwrap();
    a.asid = Asid(asid);
    a
}

/// A user store of `v` at `at`: a write fault first if the page is
/// missing or not writable, then the store through the page tables.
pub fn write_u64<F: PteFormat>(env: &mut HostEnv, a: &mut AddressSpace<F>, at: VirtAddr, v: u64) {
    // A user store: fault for write if not writable, then store.
    if a.translate(at).is_none_or(|(_, attrs)| !attrs.writable) {
        a.handle_fault(env, at, Access::Write).unwrap();
    }
    let (pfn, attrs) = a.translate(at).unwrap();
    assert!(attrs.writable && attrs.user && !attrs.exec);
    let p = env.linear().ptr::<u8>(pfn.phys());
    // SAFETY: a mapped, writable page of the arena.
    unsafe {
        p.add((at.as_u64() % PAGE_SIZE) as usize)
            .cast::<u64>()
            .write_unaligned(v)
    };
}

/// A user load at `at`: a read fault first if the page is missing.
pub fn read_u64<F: PteFormat>(env: &mut HostEnv, a: &mut AddressSpace<F>, at: VirtAddr) -> u64 {
    if a.translate(at).is_none() {
        a.handle_fault(env, at, Access::Read).unwrap();
    }
    let mut b = [0u8; 8];
    assert!(a.read_bytes(env, at, &mut b));
    u64::from_le_bytes(b)
}

/// An anonymous read-write area of `pages` pages from page `first`.
pub fn anon(a: &mut AddressSpace<impl PteFormat>, first: u64, pages: u64) {
    a.add_vma(Vma::new(
        va(first),
        va(first + pages),
        Prot::RW,
        VmaKind::Anon,
    ))
    .unwrap();
}

/// (head frame, order, refcount, mapcount) of the folio `page` maps.
pub fn folio_at(env: &HostEnv, a: &AddressSpace<impl PteFormat>, page: u64) -> (Pfn, u8, u32, u32) {
    let (pfn, _) = a.translate(va(page)).expect("mapped");
    let f = env.memmap.page_folio(pfn).expect("a folio");
    (f.pfn(), f.order().get(), f.ref_count(), f.mapcount())
}

/// The top-level knob set to `top`, each order in `sizes` to its word and
/// every other size to `never`.
pub fn set_sizes(env: &HostEnv, top: &str, sizes: &[(u8, &str)]) {
    env.thp.write_top(top.as_bytes()).unwrap();
    for o in 2..=9 {
        let s = sizes
            .iter()
            .find(|(k, _)| *k == o)
            .map_or("never", |(_, s)| s);
        env.thp.write_size(o, s.as_bytes()).unwrap();
    }
}
