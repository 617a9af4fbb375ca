//! `mmtests`: the memory-management conformance suite. Runs on Folium
//! (under init) and, unchanged, natively on Linux: copy-on-write of every
//! folio size, partial unmaps, protections, `MADV_DONTNEED`, `MAP_FIXED`,
//! `MAP_POPULATE`, fork of many areas, the errno of each refused call, and
//! the mTHP knobs and fault counters. Every check is Linux's behaviour, so
//! a difference is a Folium bug.
//!
//! On Folium a test that needs an mTHP policy sets it through Linux's
//! sysfs knobs, proves with the per-size `anon_fault_alloc` counters that
//! the folio size it meant was used, and puts the knobs back. On Linux it
//! never writes a knob (the host is shared): it runs under the host's
//! policy, or is skipped (printed, not counted).
//!
//! Prints `test mmtests::NAME ... ok|FAILED: why` per test, `no_leak` on
//! Folium, and `mmtests: N passed, N failed`; exits 0 only if all passed.
//! `mmtests NAME...` runs the tests whose names contain one of the words.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_abi::Errno;
use folium_programs::pressure;
use folium_programs::thp::{
    FALLBACK, SIZES, SPLIT, SPLIT_DEFERRED, allocs, apply_policy, counters, only, read_knob,
    save_policy, write_knob,
};
use folium_programs::views::{
    Fd, KPF_ANON, KPF_HEAD, KPF_MMAP, KPF_TAIL, KPF_THP, KPF_ZERO_PAGE, PM_EXCLUSIVE, PM_FILE,
    PM_PFN, PM_PRESENT, kpageflags, pagemap,
};
use folium_programs::{
    Test, TestResult, ensure, ensure_eq, errno_of, exited, in_child, mem_free_kb, on_folium,
    run_suite, select_tests, signalled, spawn, write_file,
};
use ulib::println;
use ulib::sys::{self, mm::*};

ulib::entry!(main);

const PAGE: u64 = 4096;
const RW: u64 = PROT_READ | PROT_WRITE;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
/// `fd` for an anonymous mapping.
const NO_FD: u64 = u64::MAX;
/// The last word of a page.
const LAST: u64 = PAGE / 8 - 1;
/// An address above the user half on both architectures.
const HIGH: u64 = 0x8000_0000_0000_0000;

// ---------------------------------------------------------------------
// Mappings and their contents

/// A private anonymous mapping this test made, unmapped when dropped.
/// No Rust reference ever points into it: every access is a volatile
/// load or store through [`Map::get`] / [`Map::set`].
struct Map {
    addr: u64,
    len: u64,
}

impl Map {
    /// `len` bytes, read-write.
    fn new(len: u64) -> Result<Map, String> {
        let addr = sys::mmap(0, len, RW, ANON, NO_FD, 0)
            .map_err(|e| format!("mmap of {len:#x} bytes: {}", e.name()))?;
        Ok(Map { addr, len })
    }

    /// A mapping with a `len`-byte range aligned to `align` inside it (it
    /// maps `len + align` bytes); the range's start.
    fn aligned(len: u64, align: u64) -> Result<(Map, u64), String> {
        let m = Map::new(len + align)?;
        let start = m.addr.next_multiple_of(align);
        Ok((m, start))
    }

    fn check_range(&self, a: u64) {
        assert!(
            a.is_multiple_of(8) && a >= self.addr && a + 8 <= self.addr + self.len,
            "access at {a:#x} outside the mapping"
        );
    }

    /// The word at `a`.
    fn get(&self, a: u64) -> u64 {
        self.check_range(a);
        // SAFETY: `a` is an aligned word inside a range this process
        // mapped and no Rust object lives in; if the test made it
        // inaccessible, the access kills the process with SIGSEGV (what
        // such a test checks for) rather than reading anything else.
        unsafe { (a as *const u64).read_volatile() }
    }

    /// Stores `v` at `a`.
    fn set(&self, a: u64, v: u64) {
        self.check_range(a);
        // SAFETY: as in `get`.
        unsafe { (a as *mut u64).write_volatile(v) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let _ = sys::munmap(self.addr, self.len);
    }
}

/// The address of word `w` of page `p` of the range at `start`.
fn at(start: u64, p: u64, w: u64) -> u64 {
    start + p * PAGE + w * 8
}

/// The pattern word `w` of page `p` holds.
fn val(p: u64, w: u64) -> u64 {
    0xa5a5_0000_0000_0000 ^ (p << 20) ^ w
}

/// Writes the pattern into the first and last word of each of `pages`
/// pages at `start` (touching every page).
fn fill(m: &Map, start: u64, pages: u64) {
    for p in 0..pages {
        m.set(at(start, p, 0), val(p, 0));
        m.set(at(start, p, LAST), val(p, LAST));
    }
}

/// Checks the first and last word of each of `pages` pages at `start`
/// against `want(page, word)`.
fn check(
    m: &Map,
    start: u64,
    pages: u64,
    what: &str,
    want: impl Fn(u64, u64) -> u64,
) -> TestResult {
    for p in 0..pages {
        for w in [0, LAST] {
            let (got, exp) = (m.get(at(start, p, w)), want(p, w));
            if got != exp {
                return Err(format!(
                    "{what}: page {p} word {w} is {got:#x}, expected {exp:#x}"
                ));
            }
        }
    }
    Ok(())
}

/// Checks the pattern, except pages in `zero` (which read 0).
fn check_pattern_but(m: &Map, start: u64, pages: u64, what: &str, zero: &[u64]) -> TestResult {
    check(m, start, pages, what, |p, w| {
        if zero.contains(&p) { 0 } else { val(p, w) }
    })
}

/// Runs `f` in a child: passes if it returned `Ok` (a failure is printed
/// by the child and named here).
fn child_ok(what: &str, f: impl FnOnce() -> TestResult) -> TestResult {
    let st = in_child(|| child_body(what, f))?;
    ensure!(exited(st) == Some(0), "{what}: status {st:#x}");
    Ok(())
}

fn child_body(what: &str, f: impl FnOnce() -> TestResult) -> i32 {
    match f() {
        Ok(()) => 0,
        Err(why) => {
            println!("mmtests: {what}: {why}");
            1
        }
    }
}

/// Runs `f` in a child that must die of SIGSEGV.
fn expect_segv(what: &str, f: impl FnOnce()) -> TestResult {
    let st = in_child(|| {
        f();
        100
    })?;
    ensure!(
        signalled(st) == Some(11),
        "{what}: status {st:#x}, expected death by SIGSEGV"
    );
    Ok(())
}

fn wait_ok(pid: i32, what: &str) -> TestResult {
    let (got, st) = sys::wait4(pid, 0).map_err(|e| format!("wait4: {}", e.name()))?;
    ensure_eq!(got, pid);
    ensure!(exited(st) == Some(0), "{what}: status {st:#x}");
    Ok(())
}

// ---------------------------------------------------------------------
// The mTHP knobs and counters

fn delta(before: [u64; 8], after: [u64; 8]) -> [u64; 8] {
    core::array::from_fn(|i| after[i].wrapping_sub(before[i]))
}

/// `n` at `kb`'s place, 0 elsewhere (all 0 for 4 kB).
fn only_at(kb: u64, n: u64) -> [u64; 8] {
    SIZES.map(|k| if k == kb { n } else { 0 })
}

/// Runs `body` and puts every knob back as it was before (Folium only:
/// the caller never writes a knob on Linux).
fn keeping_knobs(body: impl FnOnce() -> TestResult) -> TestResult {
    let saved = save_policy()?;
    let r = body();
    let sizes: Vec<&str> = saved.1.iter().map(String::as_str).collect();
    let restored = apply_policy(&saved.0, &sizes);
    r?;
    restored?;
    ensure_eq!(save_policy()?, saved, "the knobs were not restored");
    Ok(())
}

/// Runs `body` under the policy `top` / `sizes` (per [`SIZES`]) and puts
/// the knobs back as they were. On Linux nothing is written: `body` runs
/// under the host's policy.
fn with_policy(top: &str, sizes: [&str; 8], body: impl FnOnce() -> TestResult) -> TestResult {
    if !on_folium() {
        return body();
    }
    keeping_knobs(|| {
        apply_policy(top, &sizes)?;
        body()
    })
}

/// Runs `body` with folios of `kb` kB only (Folium; Linux: the host's
/// policy).
fn with_only(kb: u64, body: impl FnOnce() -> TestResult) -> TestResult {
    with_policy("never", only(kb), body)
}

/// Touches `pages` pages at `start` with the pattern; on Folium checks
/// that exactly `folios` folios of `kb` kB (none of any other size) were
/// allocated for them.
fn fill_counted(m: &Map, start: u64, pages: u64, kb: u64, folios: u64) -> TestResult {
    let folium = on_folium();
    let before = if folium { allocs()? } else { [0; 8] };
    fill(m, start, pages);
    if folium {
        let after = allocs()?;
        ensure_eq!(
            delta(before, after),
            only_at(kb, folios),
            "(anon_fault_alloc moves of {SIZES:?} kB)"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Copy-on-write per folio size

/// Marks a test writes over the pattern.
const CHILD1: u64 = 0xc1c1_c1c1_0000_0001;
const PARENT1: u64 = 0x9a9a_9a9a_0000_0001;
const PARENT2: u64 = 0x9a9a_9a9a_0000_0002;
const CHILD2: u64 = 0xc2c2_c2c2_0000_0002;

/// A region of one `kb` folio (at least 4 pages) is touched, then: a
/// child writes the middle page and sees its write there and the
/// original elsewhere (the rest of that page included); the parent still
/// sees the original; the parent writes a page and forks a second child,
/// which sees that write, but not the parent's write to a third page made
/// after the fork (the child waits 20 ms first); the child's own write
/// does not reach the parent.
fn cow_isolation(kb: u64) -> TestResult {
    let size = kb * 1024;
    let len = size.max(4 * PAGE);
    let pages = len / PAGE;
    with_only(kb, || {
        let (m, base) = Map::aligned(len, size)?;
        if !on_folium() {
            // The host's own policy (often `madvise` for 2 MiB): asked for
            // here, so the largest size really is a THP there too.
            let _ = sys::madvise(base, len, MADV_HUGEPAGE);
        }
        fill_counted(&m, base, pages, kb, len / size * u64::from(kb > 4))?;
        let (mid, q, r) = (pages / 2, pages / 4, pages * 3 / 4);
        child_ok("child 1", || {
            m.set(at(base, mid, 0), CHILD1);
            check(&m, base, pages, "child 1 after its write", |p, w| {
                if (p, w) == (mid, 0) {
                    CHILD1
                } else {
                    val(p, w)
                }
            })
        })?;
        check(&m, base, pages, "parent after child 1", val)?;
        m.set(at(base, q, 0), PARENT1);
        let child2 = spawn(|| {
            let c = child_body("child 2", || {
                let _ = sys::nanosleep(20_000_000);
                check(&m, base, pages, "child 2", |p, w| {
                    if (p, w) == (q, 0) { PARENT1 } else { val(p, w) }
                })?;
                m.set(at(base, q, 0), CHILD2);
                ensure_eq!(m.get(at(base, q, 0)), CHILD2);
                Ok(())
            });
            sys::exit_group(c)
        })?;
        m.set(at(base, r, 0), PARENT2);
        wait_ok(child2, "child 2")?;
        check(&m, base, pages, "parent after child 2", |p, w| {
            match (p, w) {
                (p, 0) if p == q => PARENT1,
                (p, 0) if p == r => PARENT2,
                _ => val(p, w),
            }
        })
    })
}

fn t_cow_4k() -> TestResult {
    cow_isolation(4)
}
fn t_cow_16k() -> TestResult {
    cow_isolation(16)
}
fn t_cow_32k() -> TestResult {
    cow_isolation(32)
}
fn t_cow_64k() -> TestResult {
    cow_isolation(64)
}
fn t_cow_128k() -> TestResult {
    cow_isolation(128)
}
fn t_cow_256k() -> TestResult {
    cow_isolation(256)
}
fn t_cow_512k() -> TestResult {
    cow_isolation(512)
}
fn t_cow_1024k() -> TestResult {
    cow_isolation(1024)
}
fn t_cow_2048k() -> TestResult {
    cow_isolation(2048)
}

// ---------------------------------------------------------------------
// Unmapping, protections, DONTNEED, MAP_FIXED, MAP_POPULATE

/// Two 64 kB folios; four pages in the middle of the first are unmapped:
/// they fault, the rest of both folios reads back intact.
fn t_partial_munmap() -> TestResult {
    with_only(64, || {
        let (m, base) = Map::aligned(128 << 10, 64 << 10)?;
        fill_counted(&m, base, 32, 64, 2)?;
        ensure_eq!(sys::munmap(at(base, 6, 0), 4 * PAGE), Ok(0));
        check_pattern_but(&m, base, 6, "before the hole", &[])?;
        check(&m, at(base, 10, 0), 22, "after the hole", |p, w| {
            val(p + 10, w)
        })?;
        for p in [6, 9] {
            expect_segv("a read of an unmapped page", || {
                m.get(at(base, p, 0));
            })?;
        }
        expect_segv("a write to an unmapped page", || {
            m.set(at(base, 8, LAST), 1)
        })?;
        // The pieces stay private and writable.
        m.set(at(base, 5, 0), 55);
        m.set(at(base, 10, 0), 1010);
        ensure_eq!(m.get(at(base, 5, 0)), 55);
        ensure_eq!(m.get(at(base, 10, 0)), 1010);
        ensure_eq!(m.get(at(base, 11, 0)), val(11, 0));
        Ok(())
    })
}

fn t_access_after_munmap() -> TestResult {
    let m = Map::new(2 * PAGE)?;
    fill(&m, m.addr, 2);
    ensure_eq!(sys::munmap(m.addr, 2 * PAGE), Ok(0));
    expect_segv("a read after munmap", || {
        m.get(m.addr);
    })?;
    expect_segv("a write after munmap", || m.set(at(m.addr, 1, LAST), 1))?;
    ensure_eq!(sys::munmap(m.addr, 2 * PAGE), Ok(0), "unmapping it again");
    Ok(())
}

fn t_write_after_mprotect_read() -> TestResult {
    let m = Map::new(2 * PAGE)?;
    fill(&m, m.addr, 2);
    ensure_eq!(sys::mprotect(m.addr, 2 * PAGE, PROT_READ), Ok(0));
    check_pattern_but(&m, m.addr, 2, "read-only", &[])?;
    expect_segv("a write to a read-only page", || m.set(at(m.addr, 1, 7), 1))?;
    check_pattern_but(&m, m.addr, 2, "after the refused write", &[])?;
    // Half back to read-write: that half is writable, the other is not.
    ensure_eq!(sys::mprotect(m.addr, PAGE, RW), Ok(0));
    m.set(m.addr, 42);
    ensure_eq!(m.get(m.addr), 42);
    expect_segv("a write to the page left read-only", || {
        m.set(at(m.addr, 1, 0), 1)
    })?;
    Ok(())
}

fn t_prot_none_then_back() -> TestResult {
    let m = Map::new(4 * PAGE)?;
    fill(&m, m.addr, 4);
    ensure_eq!(sys::mprotect(at(m.addr, 1, 0), 2 * PAGE, PROT_NONE), Ok(0));
    expect_segv("a read of a PROT_NONE page", || {
        m.get(at(m.addr, 2, LAST));
    })?;
    expect_segv("a write to a PROT_NONE page", || m.set(at(m.addr, 1, 0), 1))?;
    // The neighbours are untouched: a child reads them without dying.
    child_ok("a read of the neighbours", || {
        ensure_eq!(m.get(m.addr), val(0, 0));
        ensure_eq!(m.get(at(m.addr, 3, LAST)), val(3, LAST));
        Ok(())
    })?;
    ensure_eq!(sys::mprotect(at(m.addr, 1, 0), 2 * PAGE, RW), Ok(0));
    check_pattern_but(&m, m.addr, 4, "back to read-write", &[])?;
    m.set(at(m.addr, 2, 0), 7);
    ensure_eq!(m.get(at(m.addr, 2, 0)), 7);
    Ok(())
}

fn t_madv_dontneed() -> TestResult {
    // Small pages: the advised pages read zero, the mapping stays.
    let m = Map::new(8 * PAGE)?;
    fill(&m, m.addr, 8);
    ensure_eq!(
        sys::madvise(at(m.addr, 2, 0), 3 * PAGE, MADV_DONTNEED),
        Ok(0)
    );
    check_pattern_but(&m, m.addr, 8, "4 kB pages", &[2, 3, 4])?;
    m.set(at(m.addr, 3, 0), 33);
    ensure_eq!(m.get(at(m.addr, 3, 0)), 33);
    ensure_eq!(m.get(at(m.addr, 3, LAST)), 0);
    // Part of a 64 kB folio: the rest of it is intact.
    with_only(64, || {
        let (m, base) = Map::aligned(64 << 10, 64 << 10)?;
        fill_counted(&m, base, 16, 64, 1)?;
        ensure_eq!(sys::madvise(at(base, 3, 0), 5 * PAGE, MADV_DONTNEED), Ok(0));
        check_pattern_but(&m, base, 16, "a 64 kB folio", &[3, 4, 5, 6, 7])?;
        m.set(at(base, 4, 0), 44);
        ensure_eq!(m.get(at(base, 4, 0)), 44);
        ensure_eq!(m.get(at(base, 5, 0)), 0);
        ensure_eq!(sys::madvise(base, 64 << 10, MADV_DONTNEED), Ok(0));
        check(&m, base, 16, "the whole folio dropped", |_, _| 0)
    })
}

/// MAP_FIXED over the middle of two touched 64 kB folios (across their
/// boundary): fresh zero pages with the new rights there, the rest intact.
fn t_map_fixed_replaces() -> TestResult {
    with_only(64, || {
        let (m, base) = Map::aligned(128 << 10, 64 << 10)?;
        fill_counted(&m, base, 32, 64, 2)?;
        let a = at(base, 10, 0);
        let got = sys::mmap(a, 12 * PAGE, PROT_READ, ANON | MAP_FIXED, NO_FD, 0);
        ensure_eq!(got, Ok(a));
        let fresh: Vec<u64> = (10..22).collect();
        check_pattern_but(&m, base, 32, "after MAP_FIXED", &fresh)?;
        expect_segv("a write to the read-only replacement", || {
            m.set(at(base, 15, 0), 1)
        })?;
        // Read-write again: the replacement is private and writable.
        let got = sys::mmap(a, PAGE, RW, ANON | MAP_FIXED, NO_FD, 0);
        ensure_eq!(got, Ok(a));
        m.set(a, 1234);
        ensure_eq!(m.get(a), 1234);
        ensure_eq!(m.get(at(base, 9, LAST)), val(9, LAST));
        Ok(())
    })
}

/// MAP_POPULATE faults the memory in at mmap time: on Folium, with 64 kB
/// folios, two of them are counted before any touch (and none after).
fn t_map_populate() -> TestResult {
    with_only(64, || {
        let folium = on_folium();
        let (m, base) = Map::aligned(128 << 10, 64 << 10)?;
        let before = if folium { allocs()? } else { [0; 8] };
        let got = sys::mmap(
            base,
            128 << 10,
            RW,
            ANON | MAP_FIXED | MAP_POPULATE,
            NO_FD,
            0,
        );
        ensure_eq!(got, Ok(base));
        if folium {
            ensure_eq!(
                delta(before, allocs()?),
                only_at(64, 2),
                "at mmap time ({SIZES:?} kB)"
            );
        }
        check(&m, base, 32, "populated", |_, _| 0)?;
        fill(&m, base, 32);
        check_pattern_but(&m, base, 32, "written", &[])?;
        if folium {
            ensure_eq!(
                delta(before, allocs()?),
                only_at(64, 2),
                "after touching it ({SIZES:?} kB)"
            );
        }
        // Read-only populate works too (and reads zero).
        let r = sys::mmap(0, 4 * PAGE, PROT_READ, ANON | MAP_POPULATE, NO_FD, 0)
            .map_err(|e| format!("read-only MAP_POPULATE: {}", e.name()))?;
        let ro = Map {
            addr: r,
            len: 4 * PAGE,
        };
        check(&ro, r, 4, "read-only populated", |_, _| 0)
    })
}

/// 1000 one-page areas (holes between them), each with its own value: a
/// child sees them all, overwrites them all; the parent's stay.
fn t_fork_with_1000_mappings() -> TestResult {
    const N: u64 = 1000;
    let m = Map::new(2 * N * PAGE)?;
    for i in 0..N {
        ensure_eq!(sys::munmap(at(m.addr, 2 * i + 1, 0), PAGE), Ok(0));
    }
    let slot = |i: u64| at(m.addr, 2 * i, i % 512);
    let v = |i: u64| 0x1000_0000 + i * 7;
    for i in 0..N {
        m.set(slot(i), v(i));
    }
    child_ok("the child", || {
        for i in 0..N {
            ensure_eq!(m.get(slot(i)), v(i), "area {i}");
            m.set(slot(i), !v(i));
        }
        for i in 0..N {
            ensure_eq!(m.get(slot(i)), !v(i), "area {i} after the write");
        }
        Ok(())
    })?;
    for i in 0..N {
        ensure_eq!(m.get(slot(i)), v(i), "area {i} in the parent");
    }
    // They are separate areas: the holes still fault.
    expect_segv("a read of a hole", || {
        m.get(at(m.addr, 501, 0));
    })?;
    Ok(())
}

// ---------------------------------------------------------------------
// Errors

fn t_mmap_errors() -> TestResult {
    let m = Map::new(4 * PAGE)?;
    let mmap = |a, l, p, f| errno_of(sys::mmap(a, l, p, f, NO_FD, 0));
    ensure_eq!(
        mmap(m.addr + 1, PAGE, RW, ANON | MAP_FIXED),
        Some("EINVAL"),
        "unaligned MAP_FIXED"
    );
    ensure_eq!(mmap(0, 0, RW, ANON), Some("EINVAL"), "length 0");
    ensure_eq!(mmap(0, 1 << 60, RW, ANON), Some("ENOMEM"), "1 EiB");
    ensure_eq!(
        mmap(0, u64::MAX - 10, RW, ANON),
        Some("ENOMEM"),
        "a length that overflows when rounded"
    );
    ensure_eq!(
        mmap(HIGH, PAGE, RW, ANON | MAP_FIXED),
        Some("ENOMEM"),
        "MAP_FIXED above the user half"
    );
    ensure_eq!(
        mmap(0, PAGE, RW, MAP_ANONYMOUS),
        Some("EINVAL"),
        "neither MAP_PRIVATE nor MAP_SHARED"
    );
    ensure_eq!(
        mmap(0, PAGE, RW, MAP_ANONYMOUS | 0xf),
        Some("EINVAL"),
        "an unknown mapping type"
    );
    // A free hint is taken as is; an unaligned one moves to a nearby page
    // boundary (Linux rounds down on x86-64, up in the generic code).
    let hint = {
        let h = Map::new(16 * PAGE)?;
        h.addr
    };
    let got = sys::mmap(hint, 4 * PAGE, RW, ANON, NO_FD, 0);
    ensure_eq!(got, Ok(hint), "a free hint");
    ensure_eq!(sys::munmap(hint, 4 * PAGE), Ok(0));
    let got = sys::mmap(hint + 100, 4 * PAGE, RW, ANON, NO_FD, 0);
    ensure!(
        got == Ok(hint) || got == Ok(hint + PAGE),
        "an unaligned hint {:#x}: {got:x?}",
        hint + 100
    );
    ensure_eq!(sys::munmap(got.unwrap_or(hint), 4 * PAGE), Ok(0));
    // MAP_NORESERVE is accepted; a length is rounded up to whole pages.
    let p = sys::mmap(0, 100, RW, ANON | MAP_NORESERVE, NO_FD, 0)
        .map_err(|e| format!("MAP_NORESERVE: {}", e.name()))?;
    let n = Map { addr: p, len: PAGE };
    n.set(p + PAGE - 8, 5);
    ensure_eq!(n.get(p + PAGE - 8), 5);
    // mmap ignores prot bits it does not know (mprotect refuses them).
    let p = sys::mmap(0, PAGE, RW | 0x100, ANON, NO_FD, 0)
        .map_err(|e| format!("mmap with an unknown prot bit: {}", e.name()))?;
    let u = Map { addr: p, len: PAGE };
    u.set(p, 9);
    ensure_eq!(u.get(p), 9);
    Ok(())
}

fn t_munmap_errors() -> TestResult {
    let m = Map::new(4 * PAGE)?;
    ensure_eq!(
        errno_of(sys::munmap(m.addr + 8, PAGE)),
        Some("EINVAL"),
        "unaligned"
    );
    ensure_eq!(errno_of(sys::munmap(m.addr, 0)), Some("EINVAL"), "length 0");
    ensure_eq!(
        errno_of(sys::munmap(m.addr, u64::MAX - m.addr + PAGE)),
        Some("EINVAL"),
        "a range that wraps"
    );
    ensure_eq!(
        errno_of(sys::munmap(m.addr, u64::MAX - 10)),
        Some("EINVAL"),
        "a length that overflows when rounded"
    );
    ensure_eq!(
        errno_of(sys::munmap(HIGH, PAGE)),
        Some("EINVAL"),
        "above the user half"
    );
    // Nothing mapped: fine.
    let free = {
        let f = Map::new(4 * PAGE)?;
        f.addr
    };
    ensure_eq!(sys::munmap(free, 4 * PAGE), Ok(0), "nothing mapped");
    // A length not a page multiple covers the partial page.
    fill(&m, m.addr, 4);
    ensure_eq!(sys::munmap(at(m.addr, 2, 0), 1), Ok(0));
    expect_segv("a read of the page unmapped by length 1", || {
        m.get(at(m.addr, 2, LAST));
    })?;
    ensure_eq!(m.get(at(m.addr, 3, 0)), val(3, 0));
    Ok(())
}

fn t_mprotect_errors() -> TestResult {
    let m = Map::new(4 * PAGE)?;
    let mp = |a, l, p| errno_of(sys::mprotect(a, l, p));
    ensure_eq!(mp(m.addr + 8, PAGE, PROT_READ), Some("EINVAL"), "unaligned");
    ensure_eq!(mp(m.addr, PAGE, 0x100), Some("EINVAL"), "unknown prot bit");
    ensure_eq!(mp(m.addr, 0, PROT_READ), None, "length 0");
    ensure_eq!(
        mp(m.addr, u64::MAX - m.addr + PAGE, PROT_READ),
        Some("ENOMEM"),
        "a range that wraps"
    );
    ensure_eq!(
        mp(m.addr, u64::MAX - 10, PROT_READ),
        Some("ENOMEM"),
        "a length that overflows when rounded"
    );
    ensure_eq!(
        mp(HIGH, PAGE, PROT_READ),
        Some("ENOMEM"),
        "above the user half"
    );
    ensure_eq!(sys::munmap(at(m.addr, 2, 0), PAGE), Ok(0));
    ensure_eq!(
        mp(m.addr, 4 * PAGE, PROT_READ),
        Some("ENOMEM"),
        "over a hole"
    );
    ensure_eq!(
        mp(at(m.addr, 2, 0), PAGE, PROT_READ),
        Some("ENOMEM"),
        "in a hole"
    );
    // A length not a page multiple covers the partial page.
    ensure_eq!(mp(m.addr, PAGE + 1, PROT_READ), None);
    expect_segv("a write to a page protected by length PAGE + 1", || {
        m.set(at(m.addr, 1, 0), 1)
    })?;
    Ok(())
}

fn t_madvise_errors() -> TestResult {
    let m = Map::new(4 * PAGE)?;
    let ma = |a, l, adv| errno_of(sys::madvise(a, l, adv));
    ensure_eq!(
        ma(m.addr + 8, PAGE, MADV_DONTNEED),
        Some("EINVAL"),
        "unaligned"
    );
    ensure_eq!(ma(m.addr, PAGE, 999), Some("EINVAL"), "unknown advice");
    ensure_eq!(ma(m.addr, 0, MADV_DONTNEED), None, "length 0");
    ensure_eq!(
        ma(m.addr, u64::MAX - 10, MADV_DONTNEED),
        Some("EINVAL"),
        "a length that overflows when rounded"
    );
    for adv in [
        MADV_NORMAL,
        MADV_RANDOM,
        MADV_SEQUENTIAL,
        MADV_WILLNEED,
        MADV_DONTNEED,
        MADV_FREE,
        MADV_HUGEPAGE,
        MADV_NOHUGEPAGE,
    ] {
        ensure_eq!(ma(m.addr, 4 * PAGE, adv), None, "advice {adv}");
    }
    ensure_eq!(sys::munmap(at(m.addr, 2, 0), PAGE), Ok(0));
    for adv in [MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_HUGEPAGE] {
        ensure_eq!(
            ma(m.addr, 4 * PAGE, adv),
            Some("ENOMEM"),
            "advice {adv} over a hole"
        );
    }
    ensure_eq!(
        ma(at(m.addr, 2, 0), PAGE, MADV_DONTNEED),
        Some("ENOMEM"),
        "in a hole"
    );
    Ok(())
}

fn t_fixed_noreplace() -> TestResult {
    let m = Map::new(8 * PAGE)?;
    fill(&m, m.addr, 8);
    // [0, 2) becomes a hole; [2, 8) stays mapped.
    ensure_eq!(sys::munmap(m.addr, 2 * PAGE), Ok(0));
    let nr = |a, l| sys::mmap(a, l, RW, ANON | MAP_FIXED_NOREPLACE, NO_FD, 0);
    ensure_eq!(
        errno_of(nr(at(m.addr, 4, 0), PAGE)),
        Some("EEXIST"),
        "inside"
    );
    ensure_eq!(
        errno_of(nr(at(m.addr, 1, 0), 2 * PAGE)),
        Some("EEXIST"),
        "overlapping the start"
    );
    ensure_eq!(
        errno_of(nr(at(m.addr, 7, 0), 4 * PAGE)),
        Some("EEXIST"),
        "overlapping the end"
    );
    ensure_eq!(errno_of(nr(m.addr + 8, PAGE)), Some("EINVAL"), "unaligned");
    check(&m, at(m.addr, 2, 0), 6, "after the refusals", |p, w| {
        val(p + 2, w)
    })?;
    // Exactly the hole: granted where asked, zero-filled.
    ensure_eq!(nr(m.addr, 2 * PAGE), Ok(m.addr), "exactly the hole");
    check(&m, m.addr, 2, "the new mapping", |_, _| 0)?;
    Ok(())
}

// ---------------------------------------------------------------------
// The knobs and the counters

/// Linux's format: `words` with exactly one in brackets and a newline.
fn check_knob_text(text: &str, words: &[&str]) -> TestResult {
    let got: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']']))
        .collect();
    ensure_eq!(got, words, "{text:?}");
    ensure_eq!(text.matches('[').count(), 1, "{text:?}");
    ensure_eq!(text.matches(']').count(), 1, "{text:?}");
    ensure!(text.ends_with('\n') && !text.contains("  "), "{text:?}");
    Ok(())
}

const SIZE_WORDS: [&str; 4] = ["always", "inherit", "madvise", "never"];
const TOP_WORDS: [&str; 3] = ["always", "madvise", "never"];

/// The text a knob with `words` reads when set to `set`.
fn knob_text(words: &[&str], set: &str) -> String {
    let v: Vec<String> = words
        .iter()
        .map(|w| {
            if *w == set {
                format!("[{w}]")
            } else {
                String::from(*w)
            }
        })
        .collect();
    v.join(" ") + "\n"
}

fn t_thp_knobs_round_trip() -> TestResult {
    check_knob_text(&read_knob(None)?, &TOP_WORDS)?;
    for kb in SIZES {
        check_knob_text(&read_knob(Some(kb))?, &SIZE_WORDS)?;
    }
    allocs()?;
    counters(&FALLBACK)?;
    for kb in [4, 8, 4096] {
        ensure!(read_knob(Some(kb)).is_err(), "a {kb} kB knob exists");
    }
    if !on_folium() {
        // Not a skip line: the read-only checks above ran and count.
        println!("mmtests: thp_knobs_round_trip: knob writes not tried on Linux (the host's)");
        return Ok(());
    }
    keeping_knobs(|| {
        for kb in SIZES {
            for w in SIZE_WORDS {
                ensure_eq!(write_knob(Some(kb), w.as_bytes()), Ok(w.len() as u64));
                ensure_eq!(read_knob(Some(kb))?, knob_text(&SIZE_WORDS, w), "{kb} kB");
            }
            let nl = b"madvise\n";
            ensure_eq!(write_knob(Some(kb), nl), Ok(8), "one newline is allowed");
            for bad in [&b"bogus"[..], b"always ", b"Always", b"never\n\n"] {
                ensure_eq!(write_knob(Some(kb), bad), Err("EINVAL"), "{kb} kB: {bad:?}");
            }
            ensure_eq!(read_knob(Some(kb))?, knob_text(&SIZE_WORDS, "madvise"));
        }
        for w in TOP_WORDS {
            ensure_eq!(write_knob(None, w.as_bytes()), Ok(w.len() as u64));
            ensure_eq!(read_knob(None)?, knob_text(&TOP_WORDS, w));
        }
        ensure_eq!(
            write_knob(None, b"inherit"),
            Err("EINVAL"),
            "top-level inherit"
        );
        ensure_eq!(
            write_knob(None, b"bogus"),
            Err("EINVAL"),
            "top level: bogus"
        );
        ensure_eq!(
            write_knob(None, b"never\n"),
            Ok(6),
            "top level: one newline"
        );
        // sysfs takes an empty write as a no-op.
        ensure_eq!(write_knob(None, b""), Ok(0), "top level: an empty write");
        ensure_eq!(read_knob(None)?, knob_text(&TOP_WORDS, "never"));
        ensure_eq!(write_knob(Some(64), b""), Ok(0), "64 kB: an empty write");
        ensure_eq!(read_knob(Some(64))?, knob_text(&SIZE_WORDS, "madvise"));
        Ok(())
    })
}

/// Folium only: with one size enabled, touching one page in each of K
/// aligned regions counts exactly K folios of that size (none of any
/// other, no fallback), and the whole folio is mapped (touching the rest
/// counts nothing); MADV_NOHUGEPAGE turns it off; with the top level
/// `madvise` and the size `inherit`, only an MADV_HUGEPAGE area gets it.
fn t_fault_counters_follow_policy() -> TestResult {
    const K: u64 = 3;
    for kb in [16, 64, 512, 2048] {
        let size = kb * 1024;
        with_only(kb, || {
            let (m, base) = Map::aligned(K * size, size)?;
            let (a0, f0) = (allocs()?, counters(&FALLBACK)?);
            for k in 0..K {
                m.set(base + k * size + size / 2, k + 1);
            }
            let (a1, f1) = (allocs()?, counters(&FALLBACK)?);
            ensure_eq!(delta(a0, a1), only_at(kb, K), "{kb} kB: alloc of {SIZES:?}");
            ensure_eq!(delta(f0, f1), [0; 8], "{kb} kB: fallback of {SIZES:?}");
            fill(&m, base, K * size / PAGE);
            ensure_eq!(delta(a1, allocs()?), [0; 8], "{kb} kB: the rest was mapped");
            // MADV_NOHUGEPAGE wins over `always`.
            let (n, nbase) = Map::aligned(size, size)?;
            ensure_eq!(sys::madvise(nbase, size, MADV_NOHUGEPAGE), Ok(0));
            let a2 = allocs()?;
            n.set(nbase, 1);
            ensure_eq!(delta(a2, allocs()?), [0; 8], "{kb} kB: MADV_NOHUGEPAGE");
            Ok(())
        })?;
        let inherit = SIZES.map(|k| if k == kb { "inherit" } else { "never" });
        with_policy("madvise", inherit, || {
            let (plain, pbase) = Map::aligned(size, size)?;
            let (adv, abase) = Map::aligned(size, size)?;
            ensure_eq!(sys::madvise(abase, size, MADV_HUGEPAGE), Ok(0));
            let a0 = allocs()?;
            plain.set(pbase, 1);
            let a1 = allocs()?;
            adv.set(abase, 1);
            let a2 = allocs()?;
            ensure_eq!(delta(a0, a1), [0; 8], "{kb} kB inherit, not advised");
            ensure_eq!(
                delta(a1, a2),
                only_at(kb, 1),
                "{kb} kB inherit, MADV_HUGEPAGE"
            );
            Ok(())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Deferred split

/// Runs the shrinkers, the deferred-split one among them (Linux and
/// Folium: a write of 2 to `drop_caches`).
fn drop_caches() -> TestResult {
    ensure_eq!(write_file(c"/proc/sys/vm/drop_caches", 1, b"2"), Ok(1));
    Ok(())
}

/// Folium only: a munmap of part of a 64 kB folio queues it for deferred
/// split once (`split_deferred`), one of a whole folio never does; the
/// shrinker then splits it (`split`) and what is left keeps its data and
/// stays writable.
fn t_deferred_split_counts() -> TestResult {
    with_only(64, || {
        let (m, base) = Map::aligned(128 << 10, 64 << 10)?;
        fill_counted(&m, base, 32, 64, 2)?;
        let d0 = counters(&SPLIT_DEFERRED)?;
        ensure_eq!(sys::munmap(base, 64 << 10), Ok(0));
        ensure_eq!(delta(d0, counters(&SPLIT_DEFERRED)?), [0; 8], "whole folio");
        ensure_eq!(sys::munmap(at(base, 16, 0), 4 * PAGE), Ok(0));
        ensure_eq!(sys::munmap(at(base, 21, 0), PAGE), Ok(0));
        ensure_eq!(
            delta(d0, counters(&SPLIT_DEFERRED)?),
            only_at(64, 1),
            "part of a folio, twice (split_deferred of {SIZES:?} kB)"
        );
        let s0 = counters(&SPLIT)?;
        drop_caches()?;
        ensure_eq!(
            delta(s0, counters(&SPLIT)?),
            only_at(64, 1),
            "split of {SIZES:?} kB"
        );
        check(&m, at(base, 22, 0), 10, "after the split", |p, w| {
            val(p + 22, w)
        })?;
        ensure_eq!(m.get(at(base, 20, LAST)), val(20, LAST));
        m.set(at(base, 25, 0), 25);
        ensure_eq!(m.get(at(base, 25, 0)), 25);
        ensure_eq!(m.get(at(base, 26, 0)), val(26, 0));
        Ok(())
    })
}

/// Folium only: a 2 MiB folio with one page left mapped pins 2 MiB until
/// the shrinker splits it; then 511 pages' worth comes back (MemFree) and
/// the page left keeps its data.
fn t_split_gives_memory_back() -> TestResult {
    with_only(2048, || {
        let (m, base) = Map::aligned(2 << 20, 2 << 20)?;
        fill_counted(&m, base, 512, 2048, 1)?;
        let free = || mem_free_kb().ok_or_else(|| String::from("no MemFree"));
        let before = free()?;
        ensure_eq!(sys::munmap(base, 100 * PAGE), Ok(0));
        ensure_eq!(sys::munmap(at(base, 101, 0), 411 * PAGE), Ok(0));
        let pinned = free()?;
        ensure!(
            pinned < before + 64,
            "MemFree {before} -> {pinned} kB: the folio should still be whole"
        );
        let s0 = counters(&SPLIT)?;
        drop_caches()?;
        ensure_eq!(delta(s0, counters(&SPLIT)?), only_at(2048, 1));
        let after = free()?;
        ensure!(
            after >= pinned + 511 * 4,
            "MemFree {pinned} -> {after} kB: 511 pages should have come back"
        );
        ensure_eq!(m.get(at(base, 100, 0)), val(100, 0));
        ensure_eq!(m.get(at(base, 100, LAST)), val(100, LAST));
        m.set(at(base, 100, 0), 7);
        ensure_eq!(m.get(at(base, 100, 0)), 7);
        Ok(())
    })
}

/// Folium only: memory filled with 2 MiB folios that each have one page
/// left mapped. A fault that finds no free frame splits them (the
/// shrinker runs before the OOM killer), so a new 16 MiB fits and nobody
/// is killed.
fn t_memory_pressure_splits_before_oom() -> TestResult {
    with_only(2048, || {
        child_ok("filling memory", || {
            let mut maps = Vec::new();
            let mut pinned = 0u64;
            while mem_free_kb().is_some_and(|kb| kb > 8 << 10) {
                let Ok((m, base)) = Map::aligned(2 << 20, 2 << 20) else {
                    break;
                };
                let a0 = allocs()?;
                fill(&m, base, 512);
                if delta(a0, allocs()?) == only_at(2048, 1) {
                    ensure_eq!(sys::munmap(at(base, 1, 0), 511 * PAGE), Ok(0));
                    pinned += 1;
                }
                maps.push((m, base));
            }
            ensure!(pinned >= 4, "only {pinned} folios of 2 MiB");
            let s0 = counters(&SPLIT)?;
            let (m, base) = Map::aligned(16 << 20, 2 << 20)?;
            ensure_eq!(sys::madvise(base, 16 << 20, MADV_NOHUGEPAGE), Ok(0));
            fill(&m, base, 4096);
            check_pattern_but(&m, base, 4096, "the new memory", &[])?;
            let split = delta(s0, counters(&SPLIT)?)[7];
            ensure!(split >= 1, "no 2 MiB folio was split");
            for (m, base) in &maps {
                ensure_eq!(m.get(*base), val(0, 0), "a pinned page");
            }
            Ok(())
        })
    })
}

// ---------------------------------------------------------------------
// Linux's views of memory: pagemap, kpageflags, smaps_rollup

/// On Linux, why the host's knobs give no `kb` folios to a region advised
/// `MADV_HUGEPAGE` (`None`: they do); `None` on Folium, which sets them.
fn host_refuses(kb: u64) -> Result<Option<String>, String> {
    if on_folium() {
        return Ok(None);
    }
    let (top, size) = (read_knob(None)?, read_knob(Some(kb))?);
    let word = |t: &str| String::from(folium_programs::thp::current(t).unwrap_or(""));
    let (top, size) = (word(&top), word(&size));
    let ok = match size.as_str() {
        "always" | "madvise" => true,
        "inherit" => top != "never",
        _ => false,
    };
    Ok((!ok).then(|| format!("the host's hugepages-{kb}kB is {size:?}, top level {top:?}")))
}

/// Prints why a view test is skipped here; `Ok` (the test does not run).
fn skipped(test: &str, why: &str) -> TestResult {
    println!("mmtests: {test} skipped on Linux ({why})");
    Ok(())
}

/// A mapping of exactly `size` bytes aligned to `size`, so that no folio
/// larger than `size` fits in it.
fn exact(size: u64) -> Result<(Map, u64), String> {
    let (m, start) = Map::aligned(size, size)?;
    let (addr, end) = (m.addr, m.addr + m.len);
    core::mem::forget(m);
    if start > addr {
        ensure_eq!(sys::munmap(addr, start - addr), Ok(0));
    }
    if end > start + size {
        ensure_eq!(sys::munmap(start + size, end - start - size), Ok(0));
    }
    Ok((
        Map {
            addr: start,
            len: size,
        },
        start,
    ))
}

/// `anon_fault_fallback` of `kb`.
fn fallbacks(kb: u64) -> Result<u64, String> {
    let i = SIZES.iter().position(|&k| k == kb).ok_or("no such size")?;
    Ok(counters(&FALLBACK)?[i])
}

/// A region of exactly one `kb` folio, written (on Linux advised
/// `MADV_HUGEPAGE`); `Ok(None)` on Linux if the fault fell back to a
/// smaller size, which the host's memory decides, not the kernel's rules.
fn one_folio(kb: u64) -> Result<Option<(Map, u64)>, String> {
    let size = kb * 1024;
    let (m, base) = exact(size)?;
    if !on_folium() {
        ensure_eq!(sys::madvise(base, size, MADV_HUGEPAGE), Ok(0));
    }
    let fb = fallbacks(kb)?;
    fill_counted(&m, base, size / PAGE, kb, 1)?;
    if !on_folium() && fallbacks(kb)? != fb {
        return Ok(None);
    }
    Ok(Some((m, base)))
}

/// One `kb` folio, as pagemap and kpageflags show it: every page present,
/// exclusive and anonymous, frames consecutive from a head aligned to the
/// folio size; kpageflags marks the head and the tails of one THP,
/// anonymous and mapped. `AnonHugePages` grows by 2 MiB for a 2 MiB folio
/// only; after `MADV_DONTNEED` of one page it is no longer whole (Linux:
/// no longer PMD-mapped) and is not counted, and that page reads 0.
fn pagemap_layout(kb: u64) -> TestResult {
    let name = format!("pagemap_layout_{kb}K");
    if let Some(why) = host_refuses(kb)? {
        return skipped(&name, &why);
    }
    with_only(kb, || {
        let pages = kb * 1024 / PAGE;
        let huge0 = folium_programs::views::rollup_kb("AnonHugePages")?;
        let Some((m, base)) = one_folio(kb)? else {
            return skipped(&name, "the host's allocation fell back to a smaller size");
        };
        let e = pagemap(base, pages as usize)?;
        for (k, &e) in e.iter().enumerate() {
            ensure_eq!(
                e & (PM_PRESENT | PM_EXCLUSIVE | PM_FILE),
                PM_PRESENT | PM_EXCLUSIVE,
                "page {k}: {e:#x}"
            );
        }
        let pfn = e[0] & PM_PFN;
        if pfn == 0 {
            return skipped(&name, "pagemap shows no frames: not root");
        }
        ensure!(
            pfn.is_multiple_of(pages),
            "head frame {pfn:#x} not aligned to {pages} pages"
        );
        for (k, &e) in e.iter().enumerate() {
            ensure_eq!(e & PM_PFN, pfn + k as u64, "frame of page {k}");
        }
        let huge = folium_programs::views::rollup_kb("AnonHugePages")? - huge0;
        ensure_eq!(
            huge,
            if kb == 2048 { 2048 } else { 0 },
            "AnonHugePages grew by"
        );
        match kpageflags(pfn, pages as usize) {
            Err(None) => {
                println!("mmtests: {name}: kpageflags not readable (not root), not checked")
            }
            Err(Some(why)) => return Err(why),
            Ok(f) => {
                let mask = KPF_HEAD | KPF_TAIL | KPF_THP | KPF_ANON | KPF_MMAP;
                let common = KPF_THP | KPF_ANON | KPF_MMAP;
                for (k, &f) in f.iter().enumerate() {
                    let want = common | if k == 0 { KPF_HEAD } else { KPF_TAIL };
                    ensure_eq!(f & mask, want, "kpageflags of page {k}: {f:#x}");
                }
            }
        }
        ensure_eq!(sys::madvise(at(base, 7, 0), PAGE, MADV_DONTNEED), Ok(0));
        ensure_eq!(pagemap(at(base, 7, 0), 1)?, [0], "the dropped page");
        let huge = folium_programs::views::rollup_kb("AnonHugePages")?;
        ensure_eq!(huge, huge0, "AnonHugePages after MADV_DONTNEED of one page");
        check_pattern_but(&m, base, pages, "after MADV_DONTNEED", &[7])
    })
}

fn t_pagemap_layout_64k() -> TestResult {
    pagemap_layout(64)
}
fn t_pagemap_layout_2048k() -> TestResult {
    pagemap_layout(2048)
}

/// The exclusive bit of one PTE-mapped large folio (64 kB on Folium,
/// 2 MiB on Linux, its last page dropped) through fork and copy-on-write:
/// all pages exclusive before the fork;
/// none in the child after it; the child's write to page 3 gives it an
/// exclusive page of its own (another frame), and the parent's page 3,
/// mapped once again, turns exclusive while the others stay shared; once
/// the child is gone every page is exclusive again.
fn t_pagemap_exclusive_fork_cow() -> TestResult {
    const NAME: &str = "pagemap_exclusive_fork_cow";
    let kb = if on_folium() { 64 } else { 2048 };
    if let Some(why) = host_refuses(kb)? {
        return skipped(NAME, &why);
    }
    with_only(kb, || {
        let pages = (kb * 1024 / PAGE) as usize;
        let Some((m, base)) = one_folio(kb)? else {
            return skipped(NAME, "the host's allocation fell back to a smaller size");
        };
        // The last page dropped: Linux then maps the 2 MiB folio with
        // PTEs, as Folium maps every folio. (A PMD-mapped THP is another
        // case there: 6.18 reports every page of it by its first page.)
        ensure_eq!(
            sys::madvise(at(base, pages as u64 - 1, 0), PAGE, MADV_DONTNEED),
            Ok(0)
        );
        let pages = pages - 1;
        let excl = |e: &[u64]| e.iter().map(|e| e & PM_EXCLUSIVE != 0).collect::<Vec<_>>();
        let only3: Vec<bool> = (0..pages).map(|k| k == 3).collect();
        let e = pagemap(base, pages)?;
        ensure_eq!(excl(&e), [true].repeat(pages), "before the fork");
        let orig3 = e[3] & PM_PFN;
        let child = spawn(|| {
            let c = child_body("child", || {
                ensure_eq!(
                    excl(&pagemap(base, pages)?),
                    [false].repeat(pages),
                    "child after fork"
                );
                m.set(at(base, 3, 0), CHILD1);
                let e = pagemap(base, pages)?;
                ensure_eq!(excl(&e), only3, "child after its write");
                ensure!(
                    orig3 == 0 || e[3] & PM_PFN != orig3,
                    "page 3 was not copied"
                );
                Ok(())
            });
            if c != 0 {
                sys::exit_group(c);
            }
            loop {
                let _ = sys::nanosleep(1_000_000_000);
            }
        })?;
        let mut seen = None;
        for _ in 0..500 {
            let e = pagemap(base, pages)?;
            if e[3] & PM_EXCLUSIVE != 0 {
                seen = Some(e);
                break;
            }
            if let Ok((pid, st)) = sys::wait4(child, sys::WNOHANG)
                && pid == child
            {
                return Err(format!("the child ended early: status {st:#x}"));
            }
            let _ = sys::nanosleep(10_000_000);
        }
        ensure_eq!(sys::kill(child, 9), Ok(0));
        let (_, st) = sys::wait4(child, 0).map_err(|e| format!("wait4: {}", e.name()))?;
        ensure_eq!(signalled(st), Some(9), "the child (status {st:#x})");
        let e = seen.ok_or("the parent's page 3 never turned exclusive")?;
        ensure_eq!(excl(&e), only3, "parent after the child's write");
        ensure_eq!(e[3] & PM_PFN, orig3, "the parent's page 3 moved");
        ensure_eq!(
            excl(&pagemap(base, pages)?),
            [true].repeat(pages),
            "after the child's exit"
        );
        check_pattern_but(
            &m,
            base,
            pages as u64 + 1,
            "parent at the end",
            &[pages as u64],
        )
    })
}

/// A read of untouched memory maps the zero page: present, neither
/// exclusive nor a file page, its frame `ZERO_PAGE` in kpageflags; the
/// neighbours read 0; a write then gives an exclusive anonymous page.
fn t_pagemap_zero_page() -> TestResult {
    with_only(4, || {
        let m = Map::new(4 * PAGE)?;
        ensure_eq!(m.get(at(m.addr, 1, 0)), 0);
        let e = pagemap(m.addr, 3)?;
        ensure_eq!((e[0], e[2]), (0, 0), "the untouched neighbours");
        ensure_eq!(
            e[1] & (PM_PRESENT | PM_EXCLUSIVE | PM_FILE),
            PM_PRESENT,
            "{:#x}",
            e[1]
        );
        let zero = e[1] & PM_PFN;
        if zero != 0 {
            match kpageflags(zero, 1) {
                Ok(f) => ensure!(f[0] & KPF_ZERO_PAGE != 0, "kpageflags {:#x}", f[0]),
                Err(Some(why)) => return Err(why),
                Err(None) => println!("mmtests: kpageflags not readable (not root), not checked"),
            }
        }
        m.set(at(m.addr, 1, 0), 5);
        let e = pagemap(m.addr, 2)?;
        ensure_eq!(
            e[1] & (PM_PRESENT | PM_EXCLUSIVE | PM_FILE),
            PM_PRESENT | PM_EXCLUSIVE
        );
        ensure!(zero == 0 || e[1] & PM_PFN != zero, "still the zero page");
        if let Ok(f) = kpageflags(e[1] & PM_PFN, 1) {
            ensure!(
                zero == 0 || f[0] & (KPF_ZERO_PAGE | KPF_ANON) == KPF_ANON,
                "{:#x}",
                f[0]
            );
        }
        Ok(())
    })
}

/// Linux's errno for bad reads of pagemap (and kpageflags when readable):
/// EINVAL for an offset or count not a multiple of 8 and for a negative
/// offset, EFAULT for a buffer outside user space, 0 bytes for a count of
/// 0 and past the end, EINVAL for `SEEK_END`, EBADF for a closed fd; and
/// `lseek` + `read` reads the entry at the position and moves it.
fn t_pagemap_errors() -> TestResult {
    let fd = Fd::open(c"/proc/self/pagemap").map_err(|e| format!("open: {}", e.name()))?;
    let mut buf = [0u64; 4];
    let p = buf.as_mut_ptr() as u64;
    ensure_eq!(errno_of(fd.pread_raw(p, 8, 3)), Some("EINVAL"));
    ensure_eq!(errno_of(fd.pread_raw(p, 12, 0)), Some("EINVAL"));
    ensure_eq!(errno_of(fd.pread_raw(p, 8, 1 << 63)), Some("EINVAL"));
    ensure_eq!(errno_of(fd.pread_raw(HIGH, 8, 0)), Some("EFAULT"));
    ensure_eq!(fd.pread_raw(p, 0, 8), Ok(0));
    ensure_eq!(
        fd.pread_raw(p, 32, (1 << 48) / PAGE * 8),
        Ok(0),
        "past the end"
    );
    ensure_eq!(fd.pread_raw(p, 32, 1 << 62), Ok(0), "far past the end");
    ensure_eq!(errno_of(fd.lseek(0, 2)), Some("EINVAL"), "SEEK_END");
    let m = Map::new(2 * PAGE)?;
    m.set(at(m.addr, 1, 0), 1);
    let off = m.addr / PAGE * 8;
    ensure_eq!(fd.lseek(off, 0), Ok(off));
    let mut b = [0u8; 16];
    ensure_eq!(fd.read(&mut b), Ok(16));
    let (e0, e1) = (
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
    );
    ensure_eq!((e0, e1 & PM_PRESENT), (0, PM_PRESENT), "{e0:#x} {e1:#x}");
    ensure_eq!(fd.lseek(0, 1), Ok(off + 16), "the read moved the position");
    let closed = fd.0;
    drop(fd);
    let bad = Fd(closed);
    ensure_eq!(errno_of(bad.pread_raw(p, 8, 0)), Some("EBADF"));
    core::mem::forget(bad);
    if let Ok(k) = Fd::open(c"/proc/kpageflags")
        && k.pread_raw(p, 8, 0) != Err(Errno::EPERM)
    {
        ensure_eq!(errno_of(k.pread_raw(p, 8, 4)), Some("EINVAL"));
        ensure_eq!(errno_of(k.pread_raw(p, 4, 0)), Some("EINVAL"));
        ensure_eq!(k.pread_raw(p, 8, 1 << 62), Ok(0), "past the last frame");
    }
    Ok(())
}

/// Tests that only run on Folium, with the reason printed on Linux.
const FOLIUM_ONLY: [(&str, &str); 8] = [
    (
        "fault_counters_follow_policy",
        "it sets the mTHP knobs, which are the host's",
    ),
    (
        "deferred_split_counts",
        "it sets the mTHP knobs and drops the host's caches",
    ),
    (
        "split_gives_memory_back",
        "it sets the mTHP knobs and drops the host's caches",
    ),
    (
        "memory_pressure_splits_before_oom",
        "it fills the host's memory",
    ),
    (
        "unmap_tables_with_heap_full",
        "it fills the kernel heap through a Folium knob",
    ),
    ("oom_kills_page_table_hog", "it fills the host's memory"),
    (
        "oom_kills_every_process_sharing_the_space",
        "it fills the host's memory",
    ),
    (
        "populate_stops_when_memory_runs_out",
        "it fills the host's memory",
    ),
];

const TESTS: &[Test] = &[
    ("cow_isolation_4K", t_cow_4k),
    ("cow_isolation_16K", t_cow_16k),
    ("cow_isolation_32K", t_cow_32k),
    ("cow_isolation_64K", t_cow_64k),
    ("cow_isolation_128K", t_cow_128k),
    ("cow_isolation_256K", t_cow_256k),
    ("cow_isolation_512K", t_cow_512k),
    ("cow_isolation_1024K", t_cow_1024k),
    ("cow_isolation_2048K", t_cow_2048k),
    ("partial_munmap_of_a_large_folio", t_partial_munmap),
    ("access_after_munmap_segfaults", t_access_after_munmap),
    (
        "write_after_mprotect_read_segfaults",
        t_write_after_mprotect_read,
    ),
    ("prot_none_then_back", t_prot_none_then_back),
    ("madv_dontneed_reads_zeroes", t_madv_dontneed),
    ("map_fixed_replaces", t_map_fixed_replaces),
    ("map_populate", t_map_populate),
    ("fork_with_1000_mappings", t_fork_with_1000_mappings),
    ("mmap_errors", t_mmap_errors),
    ("munmap_errors", t_munmap_errors),
    ("mprotect_errors", t_mprotect_errors),
    ("madvise_errors", t_madvise_errors),
    ("fixed_noreplace", t_fixed_noreplace),
    ("thp_knobs_round_trip", t_thp_knobs_round_trip),
    (
        "fault_counters_follow_policy",
        t_fault_counters_follow_policy,
    ),
    ("deferred_split_counts", t_deferred_split_counts),
    ("split_gives_memory_back", t_split_gives_memory_back),
    (
        "memory_pressure_splits_before_oom",
        t_memory_pressure_splits_before_oom,
    ),
    ("pagemap_layout_64K", t_pagemap_layout_64k),
    ("pagemap_layout_2048K", t_pagemap_layout_2048k),
    ("pagemap_exclusive_fork_cow", t_pagemap_exclusive_fork_cow),
    ("pagemap_zero_page", t_pagemap_zero_page),
    ("pagemap_errors", t_pagemap_errors),
    (
        "unmap_tables_with_heap_full",
        pressure::t_unmap_tables_with_heap_full,
    ),
    (
        "oom_kills_page_table_hog",
        pressure::t_oom_kills_page_table_hog,
    ),
    (
        "oom_kills_every_process_sharing_the_space",
        pressure::t_oom_kills_every_process_sharing_the_space,
    ),
    (
        "populate_stops_when_memory_runs_out",
        pressure::t_populate_stops_when_memory_runs_out,
    ),
];

fn main(args: &ulib::Args) -> i32 {
    run_suite(
        "mmtests",
        &select_tests("mmtests", TESTS, args, &FOLIUM_ONLY),
    )
}
