//! A round's child: issues exactly its plan's number of syscalls, drawn
//! at random from the mm calls (inside a window of its own address
//! space, plus arguments that must fail), fork/wait/kill of
//! grandchildren, control-file reads and knob garbage, syscall numbers
//! beyond every table, and syscalls given wild pointers; touches its own
//! memory where it believes it may; then ends as the plan says.
//!
//! The child keeps a page-state map of its window (what it mapped, with
//! which rights, as far as the kernel's answers tell) so its touches of
//! its own memory do not fault unless the plan says they may. It never
//! allocates on the heap (the sequence may move the program break).

use folium_abi::Sysno;
use ulib::sys::{self, nr, raw6};

use crate::plan::{Plan, STOPPING, Terminal};
use crate::rng::Rng;

/// The child's window: 64 MiB at 32 TiB, 2 MiB aligned, far from the
/// program, its heap and its stack.
pub const WINDOW: u64 = 0x2000_0000_0000;
/// Pages in the window.
const PAGES: usize = 16 * 1024;
const PAGE: u64 = 4096;
/// One past the highest user address (Linux's `TASK_SIZE`): 47 bits on
/// x86-64, 48 on arm64.
const USER_END: u64 = if cfg!(target_arch = "x86_64") {
    1 << 47
} else {
    1 << 48
};
const WINDOW_END: u64 = WINDOW + PAGES as u64 * PAGE;

const R: u8 = 1;
const W: u8 = 2;
const MAPPED: u8 = 0x80;
/// The page may be anything (a call on it failed midway or moved it).
const UNKNOWN: u8 = 0x40;

const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED: u64 = 0x10;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_POPULATE: u64 = 0x8000;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MAP_SHARED: u64 = 0x01;
const MAP_GROWSDOWN: u64 = 0x0100;

/// Control files: read, and (the writable ones) fed garbage.
const FILES: [&core::ffi::CStr; 13] = [
    AUDIT,
    c"/proc/meminfo",
    c"/proc/self/pagemap",
    c"/proc/kpageflags",
    c"/proc/self/smaps_rollup",
    c"/proc/sys/vm/drop_caches",
    c"/sys/kernel/mm/transparent_hugepage/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled",
    c"/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/stats/anon_fault_alloc",
    c"/sys/kernel/mm/folium/stats",
    c"/sys/kernel/mm/folium/ptdump",
    c"/sys/kernel/mm/folium/pte_batching",
    c"/sys/kernel/mm/folium/no-such-file",
];

/// Threads one child starts at most.
const MAX_THREADS: u32 = 4;

/// Where a thread maps its own memory (16 TiB: below the window, far
/// from every address the sequence hands the kernel), so the sequence's
/// page-state map of its window stays true.
const THREAD_AREA: u64 = 0x1000_0000_0000;

/// A fuzzer thread: a few hundred syscalls of its own, at random, on
/// memory of its own (map, touch, unmap), futex waits with timeouts,
/// sleeps, yields and reads of a `/proc` file through the shared fd
/// table, while the sequence runs (and may end the process under it).
/// It never allocates (the heap is not thread-safe) and never faults.
extern "C" fn thread_body(seed: u64) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let word = core::sync::atomic::AtomicU32::new(0);
    let rounds = 20 + next() % 200;
    for _ in 0..rounds {
        match next() % 6 {
            0 => {
                let len = (1 + next() % 16) * PAGE;
                let hint = THREAD_AREA + (next() % 64) * (2 << 20);
                if let Ok(p) = sys::mmap_anon(hint, len, 3, MAP_PRIVATE) {
                    // SAFETY: the first and last bytes of the mapping just
                    // made, which only this thread knows of.
                    unsafe {
                        core::ptr::write_volatile(p as *mut u8, 1);
                        core::ptr::write_volatile((p + len - 1) as *mut u8, 2);
                    }
                    let _ = sys::munmap(p, len);
                }
            }
            1 => {
                // Times out (nobody wakes it): ETIMEDOUT after 0.1-1 ms.
                let ts = [0u64, 100_000 + next() % 900_000];
                // SAFETY: a futex word and a timespec of this frame.
                let _ = unsafe {
                    raw6(
                        nr(Sysno::Futex),
                        [word.as_ptr() as u64, 128, 0, ts.as_ptr() as u64, 0, 0],
                    )
                };
            }
            2 => sys::sched_yield(),
            3 => {
                let _ = sys::nanosleep(next() % 200_000);
            }
            4 => {
                let _ = sys::gettid();
            }
            _ => {
                let mut b = [0u8; 64];
                let _ = folium_programs::read_into(c"/proc/self/status", &mut b);
            }
        }
    }
}

/// The kernel's mm audit: read mid-run too, with grandchildren alive and
/// every other process stopped wherever it is.
const AUDIT: &core::ffi::CStr = c"/sys/kernel/mm/folium/audit";

/// Words a knob may be fed (valid and not).
const WORDS: [&[u8]; 14] = [
    b"always",
    b"madvise",
    b"never",
    b"inherit",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"always\n",
    b"[never]",
    b"",
    b"-1",
    b"18446744073709551616",
];

/// The child's state.
pub struct Child {
    rng: Rng,
    /// Page states of the window.
    state: [u8; PAGES],
    /// Mappings the kernel placed outside the window: (start, len, rights).
    extras: [(u64, u64, u8); 8],
    /// Live grandchildren.
    kids: [i32; 4],
    /// Threads started (they end on their own, or with the process).
    threads: u32,
    /// Syscalls issued.
    count: u32,
    /// Syscalls to issue.
    budget: u32,
    /// Bytes used as a valid buffer for reads and writes.
    buf: [u8; 512],
    /// Print every call and touch (`--trace` of a one-round replay).
    pub verbose: bool,
}

impl Child {
    /// A child of `round` of `seed`, planned as `plan`.
    pub fn new(seed: u64, round: u64, plan: &Plan) -> Child {
        Child {
            rng: Rng::new(seed, round, 2),
            state: [0; PAGES],
            extras: [(0, 0, 0); 8],
            kids: [0; 4],
            threads: 0,
            count: 0,
            budget: plan.syscalls,
            buf: [0; 512],
            verbose: false,
        }
    }

    /// Issues one syscall (counted).
    fn sys(&mut self, s: Sysno, a: [u64; 6]) -> Result<u64, u64> {
        self.sys_nr(nr(s), a)
    }

    fn sys_nr(&mut self, n: u64, a: [u64; 6]) -> Result<u64, u64> {
        self.count += 1;
        // SAFETY: every pointer argument the fuzzer passes is either wild
        // (the kernel must refuse it: EFAULT) or points into this
        // process's own memory, where a kernel write changes only bytes
        // the child never relies on (its scratch buffer, its window, its
        // stack below the live frames is never handed out).
        let r = unsafe { raw6(n, a) };
        if self.verbose {
            ulib::println!(
                "  sys {n} {:#x} {:#x} {:#x} {:#x} {:#x} -> {:#x}",
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                r
            );
        }
        if r > (-4096i64) as u64 {
            Err(r.wrapping_neg())
        } else {
            Ok(r)
        }
    }

    fn left(&self) -> u32 {
        self.budget - self.count
    }

    /// Runs the sequence, then the terminal act; returns the exit status.
    pub fn run(mut self, plan: &Plan) -> i32 {
        while self.left() > 0 {
            self.step();
        }
        self.reap_all_uncounted();
        self.terminal(plan.terminal);
        self.count as i32
    }

    /// One operation of at most `left()` syscalls.
    fn step(&mut self) {
        let left = self.left();
        let op = self.rng.below(100);
        if left < 4 {
            // The few last ones: single calls.
            match op % 3 {
                0 => self.wild_pointer_call(),
                1 => self.unknown_number(),
                _ => self.mprotect(),
            }
            return;
        }
        match op {
            0..=17 => self.mmap(),
            18..=27 => self.munmap(),
            28..=37 => self.mprotect(),
            38..=45 => self.madvise(),
            46..=49 => self.brk(),
            50..=53 => self.mremap(),
            54..=65 => {
                self.touch();
                self.touch();
                self.wild_pointer_call();
            }
            66..=72 => self.read_file(),
            73..=75 => self.write_knob(),
            76..=83 => self.wild_pointer_call(),
            84..=87 => self.unknown_number(),
            88..=91 => self.fork_kid(),
            92..=95 => self.kill_or_wait_kid(),
            96..=97 if left >= 2 && self.threads < MAX_THREADS => self.thread_kid(),
            _ => {
                let _ = self.sys(Sysno::Getpid, [0; 6]);
            }
        }
    }

    /// Starts a thread of this process ([`thread_body`]), counted as the
    /// two syscalls it takes (its stack's mmap and the clone). It runs
    /// beside the sequence until it ends, or until the process does
    /// (`exit_group`, a fatal signal, a fault: every thread goes).
    ///
    /// One time in four the same body runs in a process of its own that
    /// shares this address space instead (`clone(CLONE_VM | CLONE_VFORK)`,
    /// `posix_spawn`'s way: the sequence waits until it ends), and one
    /// time in four in such a process beside the sequence (`CLONE_VM`
    /// alone), kept as a grandchild the sequence may signal and wait for.
    /// It may outlive the process, in the space they share.
    fn thread_kid(&mut self) {
        let seed = self.rng.next();
        self.count += 2;
        match self.rng.below(4) {
            0 => {
                let _ = ulib::thread::vm_child(thread_body, seed, true);
            }
            1 => {
                if let Some(slot) = self.kids.iter().position(|&k| k == 0)
                    && let Ok(pid) = ulib::thread::vm_child(thread_body, seed, false)
                {
                    self.kids[slot] = pid;
                }
            }
            // Never joined: its stack stays mapped for the process's life.
            _ => {
                if ulib::thread::spawn(thread_body, seed).is_ok() {
                    self.threads += 1;
                }
            }
        }
    }

    // ---- the window and its page states ----

    fn page_of(va: u64) -> Option<usize> {
        (WINDOW..WINDOW_END)
            .contains(&va)
            .then(|| ((va - WINDOW) / PAGE) as usize)
    }

    /// Marks `[start, start + len)` (clipped to the window) with `s`.
    /// Where the range reaches outside the window (a huge length), the
    /// extras it overlaps there are forgotten: a call that changed that
    /// range (a `MREMAP_FIXED` unmaps its whole target, even when it is
    /// refused afterwards) may have unmapped part of them.
    fn mark(&mut self, start: u64, len: u64, s: u8) {
        let end_all = start.saturating_add(len);
        for (lo, hi) in [
            (start, end_all.min(WINDOW)),
            (start.max(WINDOW_END), end_all),
        ] {
            for e in self.extras.iter_mut() {
                if e.1 != 0 && lo < hi && lo < e.0.saturating_add(e.1) && e.0 < hi {
                    *e = (0, 0, 0);
                }
            }
        }
        let end = end_all.min(WINDOW_END);
        let mut va = start.max(WINDOW) & !(PAGE - 1);
        while va < end {
            if let Some(p) = Self::page_of(va) {
                self.state[p] = s;
            }
            va += PAGE;
        }
    }

    /// A random page-aligned range inside the window.
    fn window_range(&mut self) -> (u64, u64) {
        let first = self.rng.below(PAGES as u64);
        let max = PAGES as u64 - first;
        let pages = match self.rng.below(4) {
            0 => 1,
            1 => 1 + self.rng.below(16.min(max)),
            2 => 1 + self.rng.below(512.min(max)),
            _ => 1 + self.rng.below(max),
        };
        (WINDOW + first * PAGE, pages * PAGE)
    }

    /// A length for a call that may fail: zero, unaligned, huge, negative.
    fn odd_len(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => 0,
            1 => 1 + self.rng.below(8191),
            2 => 1 << 40,
            3 => (-4096i64) as u64,
            4 => u64::MAX,
            5 => USER_END,
            6 => (self.rng.below(64) + 1) << 21,
            _ => self.rng.next(),
        }
    }

    /// An address for a call that must fail.
    fn odd_addr(&mut self) -> u64 {
        match self.rng.below(7) {
            0 => 0,
            1 => 0xffff_8000_0000_0000,
            2 => USER_END - PAGE,
            3 => WINDOW + 1 + self.rng.below(PAGE - 1),
            4 => 0x0100_0000_0000_0000,
            5 => !(PAGE - 1),
            _ => self.rng.below(0x1_0000) & !(PAGE - 1),
        }
    }

    fn prot(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => 0,
            1 => 1,
            2..=6 => 3,
            7 => 1 | 4,
            8 => 3 | 8,
            _ => self.rng.next() & 0x0300_000f,
        }
    }

    fn rights(prot: u64) -> u8 {
        let mut s = MAPPED;
        if prot & 1 != 0 {
            s |= R;
        }
        if prot & 2 != 0 {
            // A writable page is readable on both architectures.
            s |= W | R;
        }
        s
    }

    fn keep_extra(&mut self, start: u64, len: u64, prot: u64) {
        if let Some(e) = self.extras.iter_mut().find(|e| e.1 == 0) {
            *e = (start, len, Self::rights(prot));
        } else if self.left() > 0 {
            let _ = self.sys(Sysno::Munmap, [start, len, 0, 0, 0, 0]);
            self.mark(start, len, 0);
        } else {
            self.mark(start, len, UNKNOWN);
        }
    }

    // ---- mm calls ----

    fn mmap(&mut self) {
        let (mut addr, mut len) = self.window_range();
        let prot = self.prot();
        let mut flags = MAP_PRIVATE | MAP_ANONYMOUS;
        if self.rng.chance(50) {
            flags |= MAP_FIXED;
        } else if self.rng.chance(20) {
            flags |= MAP_FIXED_NOREPLACE;
        }
        if len <= 8 << 20 && self.rng.chance(15) {
            flags |= MAP_POPULATE;
        }
        if self.rng.chance(10) {
            flags |= MAP_NORESERVE;
        }
        let odd = self.rng.chance(15);
        if odd {
            match self.rng.below(6) {
                0 => len = self.odd_len(),
                1 => addr = self.odd_addr(),
                2 => flags = (flags & !MAP_PRIVATE) | MAP_SHARED,
                3 => flags |= MAP_GROWSDOWN,
                4 => flags = self.rng.next() & !(MAP_FIXED | MAP_POPULATE),
                _ => addr = 0,
            }
            // Never a fixed mapping outside the window, never populate
            // a huge one: the child must survive its own calls.
            if Self::page_of(addr).is_none() || len > WINDOW_END - addr {
                flags &= !(MAP_FIXED | MAP_POPULATE);
                flags |= MAP_NORESERVE;
            }
        }
        let fd = if self.rng.chance(90) {
            u64::MAX
        } else {
            self.rng.below(8)
        };
        let off = if self.rng.chance(90) {
            0
        } else {
            self.rng.next() & 0xffff_f000
        };
        match self.sys(Sysno::Mmap, [addr, len, prot, flags, fd, off]) {
            Ok(got) => {
                // A hint the kernel honoured may run past the window (a
                // huge length): its window part is marked too.
                self.mark(got, len, Self::rights(prot));
                let inside = Self::page_of(got).is_some() && len <= WINDOW_END - got;
                if !inside {
                    self.keep_extra(got, len, prot);
                }
            }
            Err(_) => {
                // A refused MAP_FIXED may have unmapped the range first.
                if flags & MAP_FIXED != 0 {
                    self.mark(addr, len, UNKNOWN);
                }
            }
        }
    }

    fn munmap(&mut self) {
        if self.rng.chance(20) {
            let addr = self.odd_addr();
            let len = self.odd_len();
            // Refused, or (inside the window) unmaps window pages only.
            let safe = Self::page_of(addr).is_some() && len <= WINDOW_END - addr;
            if safe || addr >= USER_END || addr & (PAGE - 1) != 0 || len == 0 {
                if self.sys(Sysno::Munmap, [addr, len, 0, 0, 0, 0]).is_ok() {
                    self.mark(addr, len, 0);
                }
                return;
            }
        }
        if self.rng.chance(10)
            && let Some(i) = self.extras.iter().position(|e| e.1 != 0)
        {
            let (a, l, _) = self.extras[i];
            self.extras[i] = (0, 0, 0);
            let _ = self.sys(Sysno::Munmap, [a, l, 0, 0, 0, 0]);
            self.mark(a, l, 0);
            return;
        }
        let (addr, len) = self.window_range();
        match self.sys(Sysno::Munmap, [addr, len, 0, 0, 0, 0]) {
            Ok(_) => self.mark(addr, len, 0),
            Err(_) => self.mark(addr, len, UNKNOWN),
        }
    }

    fn mprotect(&mut self) {
        let prot = self.prot();
        if self.rng.chance(15) {
            let addr = self.odd_addr();
            let len = self.odd_len();
            if Self::page_of(addr).is_none() && addr & (PAGE - 1) == 0 && addr < USER_END {
                // A valid address outside the window could be the
                // program's own: protect nothing there.
                let _ = self.sys(Sysno::Mprotect, [addr, 0, prot, 0, 0, 0]);
            } else {
                let _ = self.sys(Sysno::Mprotect, [addr, len, prot, 0, 0, 0]);
                self.mark(addr, len, UNKNOWN);
            }
            return;
        }
        let (addr, len) = self.window_range();
        match self.sys(Sysno::Mprotect, [addr, len, prot, 0, 0, 0]) {
            Ok(_) => self.mark(addr, len, Self::rights(prot)),
            Err(_) => self.mark(addr, len, UNKNOWN),
        }
    }

    fn madvise(&mut self) {
        const ADVICE: [u64; 18] = [
            0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21,
        ];
        let advice = match self.rng.below(10) {
            0 => self.rng.next(),
            1 => 22 + self.rng.below(4),
            _ => self.rng.pick(&ADVICE),
        };
        let (addr, len) = if self.rng.chance(10) {
            (self.odd_addr(), self.odd_len())
        } else {
            self.window_range()
        };
        // MADV_REMOVE, HWPOISON and SOFT_OFFLINE (9, 100, 101) and
        // arbitrary advice outside the window could touch the program.
        if Self::page_of(addr).is_none() && addr < USER_END && addr & (PAGE - 1) == 0 {
            let _ = self.sys(Sysno::Madvise, [addr, 0, advice, 0, 0, 0]);
            return;
        }
        let _ = self.sys(Sysno::Madvise, [addr, len, advice, 0, 0, 0]);
    }

    fn brk(&mut self) {
        let cur = self.sys(Sysno::Brk, [0; 6]).unwrap_or(0);
        let want = match self.rng.below(6) {
            0 => cur + (self.rng.below(4096) << 12),
            1 => cur.wrapping_sub(self.rng.below(16) << 12),
            2 => 0,
            3 => cur + (32 << 40),
            4 => 0xffff_8000_0000_0000,
            _ => cur + self.rng.below(1 << 20),
        };
        let now = self.sys(Sysno::Brk, [want, 0, 0, 0, 0, 0]).unwrap_or(cur);
        // A break moved into the window (32 TiB up) maps or unmaps
        // window pages behind the state's back.
        let (lo, hi) = (cur.min(now), cur.max(now));
        if hi > WINDOW && lo < WINDOW_END {
            self.mark(lo, hi - lo, UNKNOWN);
        }
    }

    fn mremap(&mut self) {
        let (old, old_len) = self.window_range();
        let (new, new_len) = self.window_range();
        let flags = match self.rng.below(6) {
            0 => 0,
            1 | 2 => 1,
            3 => 3,
            4 => 5,
            _ => self.rng.next() & 0xf,
        };
        let new_len = if self.rng.chance(10) {
            self.odd_len()
        } else {
            new_len
        };
        let r = self.sys(Sysno::Mremap, [old, old_len, new_len, flags, new, 0]);
        if let Ok(got) = r {
            self.mark(old, old_len, UNKNOWN);
            self.mark(new, new_len, UNKNOWN);
            if Self::page_of(got).is_none() {
                self.keep_extra(got, new_len, 0);
            } else {
                self.mark(got, new_len, UNKNOWN);
            }
        } else {
            // A refusal can come after changes, as on Linux: a shrinking
            // MREMAP_FIXED unmaps the old range's tail and the target
            // before it finds the old range is not one mapping.
            self.mark(old, old_len, UNKNOWN);
            if flags & 2 != 0 {
                self.mark(new, new_len, UNKNOWN);
            }
        }
    }

    // ---- memory touches (no syscall) ----

    /// Loads or stores at a random page the child believes it may.
    fn touch(&mut self) {
        let start = self.rng.below(PAGES as u64) as usize;
        let write = self.rng.chance(60);
        let want = if write { W } else { R };
        let hit = (0..64)
            .map(|k| (start + k * 97) % PAGES)
            .find(|&p| self.state[p] & (MAPPED | UNKNOWN | want) == MAPPED | want);
        let at = match hit {
            Some(p) => WINDOW + p as u64 * PAGE + (self.rng.below(PAGE / 8) * 8),
            None => match self.extras.iter().find(|e| e.1 != 0 && e.2 & want != 0) {
                Some(&(a, l, _)) => a + (self.rng.below(l.div_ceil(PAGE).min(1 << 20)) * PAGE),
                None => return,
            },
        };
        // The window's pages are known by their state only.
        if hit.is_none() && Self::page_of(at).is_some() {
            return;
        }
        let p = at as *mut u64;
        if self.verbose {
            ulib::println!("  touch {at:#x} write {write}");
        }
        if write {
            let v = self.rng.next();
            // SAFETY: the page is mapped writable as far as the kernel's
            // answers tell (its state), and holds only fuzz data.
            unsafe { p.write_volatile(v) };
        } else {
            // SAFETY: as above, mapped readable.
            let _ = unsafe { p.read_volatile() };
        }
    }

    // ---- files ----

    fn read_file(&mut self) {
        let path = self.rng.pick(&FILES);
        let flags = if self.rng.chance(90) {
            0
        } else {
            self.rng.next() & 0x7_ffff
        };
        let Ok(fd) = self.sys(
            Sysno::Openat,
            [(-100i64) as u64, path.as_ptr() as u64, flags, 0, 0, 0],
        ) else {
            return;
        };
        if self.rng.chance(30) {
            let off = match self.rng.below(4) {
                0 => self.rng.below(1 << 20) * 8,
                1 => (WINDOW / PAGE) * 8,
                2 => self.rng.next(),
                _ => self.rng.below(4096),
            };
            let whence = self.rng.below(4);
            let _ = self.sys(Sysno::Lseek, [fd, off, whence, 0, 0, 0]);
        }
        let (ptr, len) = if self.rng.chance(25) {
            (self.wild_ptr(), self.rng.below(8192))
        } else {
            (self.buf.as_mut_ptr() as u64, self.rng.below(512))
        };
        let got = self.sys(Sysno::Read, [fd, ptr, len, 0, 0, 0]);
        if path == AUDIT
            && ptr == self.buf.as_ptr() as u64
            && let Ok(n) = got
            && self.buf[..n as usize].starts_with(b"audit: FAILED")
        {
            // The parent sees status 254, which no plan allows.
            let text = core::str::from_utf8(&self.buf[..n as usize]).unwrap_or("?");
            ulib::println!("fuzz: mm audit read by a child failed:\n{text}");
            sys::exit_group(254);
        }
        let _ = self.sys(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    }

    fn write_knob(&mut self) {
        let path = self.rng.pick(&FILES);
        let mode = self.rng.pick(&[1u64, 1, 2, 0]);
        let Ok(fd) = self.sys(
            Sysno::Openat,
            [(-100i64) as u64, path.as_ptr() as u64, mode, 0, 0, 0],
        ) else {
            return;
        };
        let (ptr, len) = match self.rng.below(4) {
            0 => {
                let n = self.rng.below(64) as usize;
                for b in &mut self.buf[..n] {
                    *b = self.rng.next() as u8;
                }
                (self.buf.as_ptr() as u64, n as u64)
            }
            1 => (self.wild_ptr(), self.rng.below(64)),
            _ => {
                let w = self.rng.pick(&WORDS);
                (w.as_ptr() as u64, w.len() as u64)
            }
        };
        let _ = self.sys(Sysno::Write, [fd, ptr, len, 0, 0, 0]);
        let _ = self.sys(Sysno::Close, [fd, 0, 0, 0, 0, 0]);
    }

    // ---- wild pointers and unknown numbers ----

    /// A pointer the kernel must refuse, or one into the child's window
    /// at an odd place (where whatever the kernel writes is fuzz data).
    fn wild_ptr(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => 0,
            1 => 1 + self.rng.below(0xfff),
            2 => 0xffff_8000_0000_0000 + (self.rng.next() & 0x7fff_ffff_ffff),
            3 => u64::MAX - self.rng.below(64),
            4 => USER_END - self.rng.below(16),
            5 => 0x0123_4567_89ab_cdef,
            // Inside the window, on whatever page (unmapped, read-only,
            // PROT_NONE, or writable at an odd offset).
            6 | 7 => WINDOW + self.rng.below(PAGES as u64 * PAGE),
            // Just past the end of the window.
            8 => WINDOW_END - self.rng.below(8),
            // Unaligned, near the start of a window page. (Never into
            // the stack: a kernel write of a random length there would
            // clobber the child's own frames.)
            _ => WINDOW + self.rng.below(PAGES as u64) * PAGE + 1 + self.rng.below(15),
        }
    }

    /// A pointer that is never mapped (for calls where a valid pointer
    /// could do harm: sleep lengths, console writes).
    fn bad_ptr(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => 0,
            1 => 0xffff_8000_0000_0000 + (self.rng.next() & 0x7fff_ffff_f000),
            2 => USER_END + self.rng.below(0x1000),
            _ => u64::MAX - 7,
        }
    }

    fn wild_pointer_call(&mut self) {
        let p = self.wild_ptr();
        let q = self.wild_ptr();
        let n = self.rng.below(1 << 16);
        let small = self.rng.below(70);
        let r = self.rng.next();
        let _ = match self.rng.below(16) {
            0 => self.sys(Sysno::Uname, [p, 0, 0, 0, 0, 0]),
            1 => self.sys(Sysno::ClockGettime, [r % 12, p, 0, 0, 0, 0]),
            2 => self.sys(Sysno::Getrandom, [p, n, r % 8, 0, 0, 0]),
            3 => {
                let b = self.bad_ptr();
                self.sys(Sysno::Nanosleep, [b, q, 0, 0, 0, 0])
            }
            4 => self.sys(Sysno::Wait4, [u64::MAX, p, 1, q, 0, 0]),
            5 => self.sys(Sysno::RtSigprocmask, [r % 4, p, q, 8, 0, 0]),
            6 => self.sys(Sysno::RtSigaction, [small, p, q, 8, 0, 0]),
            7 => self.sys(Sysno::Openat, [(-100i64) as u64, p, 0, 0, 0, 0]),
            8 => {
                let b = self.bad_ptr();
                self.sys(Sysno::Execve, [b, p, q, 0, 0, 0])
            }
            9 => {
                let b = self.bad_ptr();
                self.sys(Sysno::Write, [1, b, n, 0, 0, 0])
            }
            10 => self.sys(Sysno::Fstat, [r % 5, p, 0, 0, 0, 0]),
            11 => self.sys(Sysno::GetRobustList, [0, p, q, 0, 0, 0]),
            12 => self.sys(Sysno::Prlimit64, [0, r % 20, 0, p, 0, 0]),
            13 => self.sys(Sysno::ClockGetres, [r % 12, p, 0, 0, 0, 0]),
            14 => {
                let b = self.bad_ptr();
                self.sys(Sysno::Writev, [1, b, r % 8, 0, 0, 0])
            }
            _ => self.sys(Sysno::Readlinkat, [(-100i64) as u64, p, q, n, 0, 0]),
        };
    }

    /// A syscall number no kernel's table has: it must fail with ENOSYS
    /// (also when only its low 32 bits are read). Anything else ends the
    /// child with status 255, which the parent reports.
    fn unknown_number(&mut self) {
        let low = 1000 + self.rng.below(0x3fff_0000 - 1000);
        let n = match self.rng.below(4) {
            0 => low,
            1 => (self.rng.next() << 32) | low,
            2 => u64::MAX,
            _ => 0xffff_ffff,
        };
        let a = [self.rng.next(), self.wild_ptr(), self.rng.next(), 0, 0, 0];
        if self.sys_nr(n, a) != Err(38) {
            sys::exit_group(255);
        }
    }

    // ---- grandchildren ----

    fn fork_kid(&mut self) {
        let Some(slot) = self.kids.iter().position(|&k| k == 0) else {
            self.kill_or_wait_kid();
            return;
        };
        match ulib::sys::fork() {
            Ok(0) => {
                // The grandchild: a few operations on its copy of the
                // window, maybe a fault, then exit. No sleeping call, no
                // grandchildren of its own.
                self.count = 0;
                self.budget = 12;
                self.kids = [0; 4];
                while self.left() >= 4 {
                    match self.rng.below(6) {
                        0 => self.mmap(),
                        1 => self.munmap(),
                        2 => self.mprotect(),
                        3 => self.madvise(),
                        _ => {
                            self.touch();
                            self.wild_pointer_call();
                        }
                    }
                }
                if self.rng.chance(20) {
                    let p = self.bad_ptr() as *const u8;
                    // SAFETY: a load from an address that is never
                    // mapped: the process dies of SIGSEGV here, as meant.
                    let _ = unsafe { p.read_volatile() };
                }
                sys::exit_group(0);
            }
            Ok(pid) => {
                self.count += 1;
                self.kids[slot] = pid as i32;
            }
            Err(_) => self.count += 1,
        }
    }

    fn kill_or_wait_kid(&mut self) {
        let Some(i) = self.kids.iter().position(|&k| k != 0) else {
            // No grandchild: signal 0 to pids that may or may not exist.
            let pid = self
                .rng
                .pick(&[0u64, (-1i64) as u64, 99_999, (-5i64) as u64]);
            let _ = self.sys(Sysno::Kill, [pid, 0, 0, 0, 0, 0]);
            return;
        };
        let pid = self.kids[i] as u64;
        if self.rng.chance(50) {
            let sig = self.rng.below(70);
            let _ = self.sys(Sysno::Kill, [pid, sig, 0, 0, 0, 0]);
        }
        let opts = match self.rng.below(4) {
            0 => 0,
            1 => 1,
            2 => self.rng.next() & 0xffff_ffff,
            _ => 1 | 2 | 8,
        };
        let mut st = 0u32;
        if self
            .sys(Sysno::Wait4, [pid, (&raw mut st) as u64, opts, 0, 0, 0])
            .is_ok_and(|got| got == pid)
        {
            self.kids[i] = 0;
        }
    }

    /// Kills and reaps every grandchild left (not counted: the plan's
    /// count does not depend on how many are left).
    fn reap_all_uncounted(&mut self) {
        for k in self.kids {
            if k != 0 {
                let _ = sys::kill(k, 9);
                let _ = sys::wait4(k, 0);
            }
        }
        self.kids = [0; 4];
    }

    // ---- the terminal act ----

    fn terminal(&mut self, t: Terminal) {
        match t {
            Terminal::Normal => {}
            Terminal::Exit(c) => sys::exit_group(i32::from(c)),
            Terminal::WildLoad => {
                let p = self.bad_ptr() as *const u64;
                // SAFETY: an address that is never mapped: the load
                // faults and the process dies of SIGSEGV, as planned.
                let _ = unsafe { p.read_volatile() };
            }
            Terminal::WildStore => {
                let p = self.bad_ptr() as *mut u64;
                // SAFETY: as for WildLoad, with a store.
                unsafe { p.write_volatile(1) };
            }
            Terminal::MaybeFault => self.maybe_fault(),
            Terminal::WildJump => {
                let target = if self.rng.chance(50) {
                    self.bad_ptr()
                } else {
                    self.buf.as_ptr() as u64
                };
                // SAFETY: a jump to memory that is not executable (never
                // mapped, or the stack, which is never executable): the
                // fetch faults and the process dies, as planned.
                let f: extern "C" fn() = unsafe { core::mem::transmute(target as usize) };
                f();
            }
            Terminal::SelfKill(sig) => {
                // The sequence may have blocked or ignored signals with
                // wild pointers to random masks and actions: undo that.
                let _ = sys::sigprocmask(2, 0);
                let _ = sys::sigaction_simple(sig, 0, 0);
                let _ = sys::kill(sys::getpid(), sig);
                if STOPPING.contains(&sig) {
                    let _ = sys::kill(sys::getpid(), 18);
                }
            }
            Terminal::Trap(k) => trap(k),
            Terminal::UnmapStack => {
                let local = 0u64;
                let sp = (&raw const local) as u64 & !(PAGE - 1);
                // Below the user end: a range past it is refused whole.
                let end = (sp + 8 * PAGE).min(USER_END);
                let _ = sys::munmap(sp - 16 * PAGE, end - (sp - 16 * PAGE));
                // The next call or return touches the unmapped stack.
                let _ = core::hint::black_box(sys::getpid());
            }
            Terminal::RandomSyscall => self.random_syscall(),
        }
    }

    /// Touches its own memory where the state says it must fault (a
    /// store to a read-only page, a load from PROT_NONE or unmapped), or
    /// just past its last mapped page.
    fn maybe_fault(&mut self) {
        let start = self.rng.below(PAGES as u64) as usize;
        let pick = (0..PAGES)
            .map(|k| (start + k) % PAGES)
            .find(|&p| self.state[p] & (MAPPED | UNKNOWN | W) == MAPPED);
        let (at, store) = match pick {
            Some(p) => (WINDOW + p as u64 * PAGE, true),
            None => (WINDOW + start as u64 * PAGE, false),
        };
        let p = at as *mut u64;
        if store {
            // SAFETY: a page the child mapped without write access: the
            // store faults (SIGSEGV), as planned; if the state is wrong
            // the page is the child's own fuzz memory.
            unsafe { p.write_volatile(7) };
        } else {
            // SAFETY: a window page that may be unmapped or PROT_NONE:
            // the load faults or reads fuzz memory.
            let _ = unsafe { p.read_volatile() };
        }
    }

    /// One call of a random number in the table with random arguments,
    /// except those that reach other processes or end this one.
    fn random_syscall(&mut self) {
        let deny = [
            Sysno::Kill,
            Sysno::Tkill,
            Sysno::Tgkill,
            Sysno::Prlimit64,
            Sysno::Exit,
            Sysno::ExitGroup,
            Sysno::Reboot,
        ];
        let n = loop {
            let n = self.rng.below(460);
            if !deny.iter().any(|&s| nr(s) == n) {
                break n;
            }
        };
        let mut a = [0u64; 6];
        for x in &mut a {
            *x = match self.rng.below(4) {
                0 => self.rng.below(64),
                1 => self.wild_ptr(),
                2 => self.rng.next(),
                _ => (-(self.rng.below(200) as i64)) as u64,
            };
        }
        let _ = self.sys_nr(n, a);
    }
}

/// An instruction that traps: kind 0 undefined, 1 breakpoint, 2 x86
/// divide by zero / arm64 unaligned exclusive load, 3 undefined again.
#[inline(never)]
fn trap(kind: u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: each instruction traps and the kernel ends the process
    // with SIGILL, SIGTRAP or SIGFPE, as planned; none touches memory.
    unsafe {
        match kind {
            1 => core::arch::asm!("int3"),
            2 => core::arch::asm!("xor ecx, ecx", "xor edx, edx", "mov eax, 1", "div ecx",
                                  out("eax") _, out("ecx") _, out("edx") _),
            _ => core::arch::asm!("ud2"),
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let word = 0u64;
        let odd = (&raw const word) as u64 + 1;
        // SAFETY: each instruction traps and the kernel ends the process
        // with SIGILL, SIGTRAP or SIGBUS, as planned; the exclusive load
        // reads (at most) this stack word's own bytes.
        unsafe {
            match kind {
                1 => core::arch::asm!("brk #0x3"),
                2 => core::arch::asm!("ldxr {v}, [{a}]", a = in(reg) odd, v = out(reg) _),
                _ => core::arch::asm!("udf #0"),
            }
        }
    }
}
