//! Tests that press the kernel where a user program hurts it most (issue
//! 17): munmap and mprotect over ~70,000 page tables while the kernel heap
//! is full, a page-table hog the OOM killer must pick before a bystander
//! with more resident memory, and `MAP_POPULATE` of a huge read-only
//! mapping once memory runs out. Folium only: each exhausts the machine's
//! memory or the kernel heap (`mmtests` lists them as such).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use ulib::println;
use ulib::sys::{self, mm::*};

use crate::thp::{FOLIUM_STATS, apply_policy, only, save_policy};
use crate::{
    TestResult, ensure, ensure_eq, in_child, mem_free_kb, read_file, read_into, signalled, spawn,
    write_file,
};

const PAGE: u64 = 4096;
/// The span of one last-level page table.
const SPAN: u64 = 2 << 20;
const NO_FD: u64 = u64::MAX;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
const SIGKILL: u8 = 9;
/// Folium's knob: how far the kernel heap may grow on demand, in kB.
const HEAP_GROW: &CStr = c"/sys/kernel/mm/folium/heap_grow_kb";
/// Where heap-filling mappings go (one page each, a page apart so they
/// never merge into one area).
const FILL_BASE: u64 = 0x1000_0000_0000;
/// Most mappings a process may have (Linux's `vm.max_map_count`).
const MAX_MAP_COUNT: u64 = 65_530;

/// Runs `f` in a child; its error, printed there, fails the test.
fn child_ok(what: &str, f: impl FnOnce() -> TestResult) -> TestResult {
    let status = in_child(|| match f() {
        Ok(()) => 0,
        Err(why) => {
            println!("mmtests: {what}: {why}");
            1
        }
    })?;
    ensure_eq!(status, 0, "{what}: the child failed");
    Ok(())
}

/// Runs `body` with 2 MiB folios only (filling memory with them costs a
/// fault and a clear per 2 MiB), and puts the mTHP knobs back.
fn with_2m_folios(body: impl FnOnce() -> TestResult) -> TestResult {
    let saved = save_policy()?;
    apply_policy("never", &only(2048))?;
    let r = body();
    let sizes: Vec<&str> = saved.1.iter().map(String::as_str).collect();
    apply_policy(&saved.0, &sizes)?;
    r
}

/// Free memory past which the tests that exhaust it are not run: their
/// page-table hog costs a user fault per 4 KiB of tables (with 1 GiB,
/// raspi3b, the two take about a minute of CPU under TCG; with 2 GiB,
/// raspi4b, several). They run on virt and q35 (512 MiB).
const MEMORY_TESTS_MAX_KB: u64 = 768 << 10;

/// `Some(free kB)` if the memory-exhausting tests run on this machine;
/// prints why not otherwise.
fn small_memory(test: &str) -> Result<Option<u64>, String> {
    let free_kb = mem_free_kb().ok_or("no MemFree")?;
    if free_kb > MEMORY_TESTS_MAX_KB {
        println!(
            "mmtests: {test}: not run with {} MiB free (over {} MiB: too slow in TCG)",
            free_kb >> 10,
            MEMORY_TESTS_MAX_KB >> 10
        );
        return Ok(None);
    }
    Ok(Some(free_kb))
}

/// A `Name:  value kB` line of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> Result<u64, String> {
    let text = read_file(c"/proc/self/status").ok_or("no /proc/self/status")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in {text:?}"))
}

/// A counter of Folium's stats file.
fn stat(name: &str) -> Result<u64, String> {
    let mut buf = [0u8; 8192];
    let n = read_into(FOLIUM_STATS, &mut buf).ok_or("no stats file")?;
    let text = core::str::from_utf8(&buf[..n]).map_err(|_| "stats not UTF-8")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("no {name} in the stats"))
}

/// Reads one byte at `a` (a user load the kernel must resolve).
fn touch(a: u64) {
    // SAFETY: `a` lies in a readable mapping this process made and no
    // Rust object lives in.
    let _ = unsafe { (a as *const u8).read_volatile() };
}

/// Writes one byte at `a`.
fn poke(a: u64) {
    // SAFETY: `a` lies in a writable mapping this process made and no
    // Rust object lives in.
    unsafe { (a as *mut u8).write_volatile(1) };
}

/// Sleeps until killed.
fn sleep_forever() -> ! {
    loop {
        let _ = sys::nanosleep(1_000_000_000);
    }
}

/// A read-only area of `tables` × 2 MiB (not touched yet); its address.
fn sparse_area(tables: u64) -> Result<u64, String> {
    sys::mmap(0, tables * SPAN, PROT_READ, ANON | MAP_NORESERVE, NO_FD, 0)
        .map_err(|e| format!("mmap of {tables} × 2 MiB: {}", e.name()))
}

/// Reads one byte per 2 MiB of the area at `a`: each read maps the zero
/// page and costs one page table, and no resident page.
fn make_tables(a: u64, tables: u64) {
    for k in 0..tables {
        touch(a + k * SPAN);
    }
}

/// Maps single pages at `FILL_BASE` (a page apart) until mmap refuses or
/// there are `max`; how many it made.
fn fill_areas(max: u64) -> u64 {
    let mut n = 0;
    while n < max {
        let at = FILL_BASE + 2 * n * PAGE;
        if sys::mmap(at, PAGE, PROT_READ, ANON | MAP_FIXED, NO_FD, 0).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// A heap filler: `areas` areas, then copies of this process (a fork
/// copies the area map: the heap fills a map per syscall) until fork is
/// refused. The copies end once this process is gone.
fn filler(areas: u64) -> ! {
    fill_areas(areas);
    let me = sys::getpid();
    while let Ok(pid) = sys::fork() {
        if pid == 0 {
            while sys::getppid() == me {
                let _ = sys::nanosleep(10_000_000);
            }
            sys::exit_group(0)
        }
    }
    sleep_forever()
}

/// True if the kernel heap refuses a new area (mmap of one page: ENOMEM).
fn heap_full() -> bool {
    match sys::mmap(0, PAGE, PROT_READ, ANON, NO_FD, 0) {
        Ok(p) => {
            let _ = sys::munmap(p, PAGE);
            false
        }
        Err(e) => e.name() == "ENOMEM",
    }
}

/// Waits until `read()` gives the same value twice 20 ms apart (another
/// process finished what it was doing); gives up after ~10 s.
fn settle(read: impl Fn() -> Result<u64, String>) -> Result<(), String> {
    let mut last = read()?;
    for _ in 0..500 {
        let _ = sys::nanosleep(20_000_000);
        let now = read()?;
        if now == last {
            return Ok(());
        }
        last = now;
    }
    Err(String::from("it never settled"))
}

fn kill_all(pids: &[i32]) {
    for &p in pids {
        let _ = sys::kill(p, SIGKILL);
        let _ = sys::wait4(p, 0);
    }
}

/// Issue 17's crash, scaled to the board: ~70,000 page tables (a byte
/// read per 2 MiB of a read-only mapping), the kernel heap filled with
/// areas by helper processes and this one until mmap says ENOMEM, then
/// mprotect and munmap over the whole range must succeed (they collected
/// every table in a vector of up to 1 MiB, and the full heap panicked
/// the kernel) and give the tables back.
pub fn t_unmap_tables_with_heap_full() -> TestResult {
    let saved = read_file(HEAP_GROW).ok_or("no heap_grow_kb knob")?;
    // No growth on demand: the boot heap is all there is, so a few
    // helpers fill it.
    write_file(HEAP_GROW, 1, b"0")?;
    let r = child_ok("unmap_tables_with_heap_full", unmap_tables_with_heap_full);
    write_file(HEAP_GROW, 1, saved.trim().as_bytes())?;
    r
}

fn unmap_tables_with_heap_full() -> TestResult {
    let free_kb = mem_free_kb().ok_or("no MemFree")?;
    // 70,000 tables (280 MiB) where memory allows: more than 65,536, so a
    // vector of them needs a 1 MiB block.
    let tables = (free_kb * 6 / 10 / 4).min(70_000);
    let len = tables * SPAN;
    let a = sparse_area(tables)?;
    // Two fillers fork before the tables exist (a fork would copy them)
    // and start when the marker process is gone: one with a full map of
    // areas, copied until the heap refuses a copy of it, and one with a
    // quarter of that, copied until less than a copy of its map is left,
    // which fits this process's own map.
    let marker = spawn(|| sleep_forever())?;
    let mut pids = Vec::from([marker]);
    for areas in [MAX_MAP_COUNT, MAX_MAP_COUNT / 4] {
        match spawn(|| {
            while sys::kill(marker, 0).is_ok() {
                let _ = sys::nanosleep(10_000_000);
            }
            filler(areas)
        }) {
            Ok(pid) => pids.push(pid),
            Err(why) => {
                kill_all(&pids);
                return Err(why);
            }
        }
    }
    let r = (|| {
        make_tables(a, tables);
        let pte = status_kb("VmPTE")?;
        ensure!(pte >= tables * 4, "VmPTE {pte} kB for {tables} tables");
        let _ = sys::kill(marker, SIGKILL);
        let _ = sys::wait4(marker, 0);
        // Once the heap is full even the stats file cannot be opened: the
        // value stays put then too.
        settle(|| Ok(stat("kernel_heap_used").unwrap_or(u64::MAX)))?;
        // What the fillers left, this process takes.
        let mine = fill_areas(MAX_MAP_COUNT);
        ensure!(
            mine < MAX_MAP_COUNT && heap_full(),
            "the heap is not full: {mine} areas here"
        );
        ensure_eq!(sys::mprotect(a, len, PROT_NONE), Ok(0), "mprotect");
        // Still full after mprotect (which frees nothing), so both calls
        // ran against a full heap; munmap then frees the area's own node,
        // which may make room for a one-page mmap again.
        ensure!(heap_full(), "the heap came free by itself");
        ensure_eq!(sys::munmap(a, len), Ok(0), "munmap");
        kill_all(&pids);
        ensure_eq!(sys::munmap(FILL_BASE, 2 * MAX_MAP_COUNT * PAGE), Ok(0));
        // The fillers' copies end within 10 ms of their parent.
        settle(|| mem_free_kb().ok_or_else(|| String::from("no MemFree")))?;
        let after = status_kb("VmPTE")?;
        ensure!(
            after + tables * 4 <= pte,
            "VmPTE {pte} kB before munmap, {after} kB after"
        );
        Ok(())
    })();
    kill_all(&pids);
    r
}

/// A page-table hog (60% of free memory in tables, almost nothing
/// resident) and a bystander with 16 MiB resident; this process then
/// allocates until memory runs out. The OOM killer, ranking by resident
/// plus table pages, must kill the hog, not the bystander (nor this
/// process, smaller than the hog).
pub fn t_oom_kills_page_table_hog() -> TestResult {
    let Some(free_kb) = small_memory("oom_kills_page_table_hog")? else {
        return Ok(());
    };
    with_2m_folios(|| {
        child_ok("oom_kills_page_table_hog", || {
            oom_kills_page_table_hog(free_kb)
        })
    })
}

fn oom_kills_page_table_hog(free_kb: u64) -> TestResult {
    const BYSTANDER: u64 = 16 << 20;
    let by = spawn(|| {
        let Ok(m) = sys::mmap(0, BYSTANDER, PROT_READ | PROT_WRITE, ANON, NO_FD, 0) else {
            sys::exit_group(2)
        };
        for p in 0..BYSTANDER / PAGE {
            poke(m + p * PAGE);
        }
        sleep_forever()
    })?;
    // 60%: this process, allocating until the OOM killer acts, stays
    // below 40%.
    let tables = free_kb * 6 / 10 / 4;
    let hog = spawn(|| {
        let Ok(a) = sparse_area(tables) else {
            sys::exit_group(2)
        };
        make_tables(a, tables);
        // It holds its memory in tables, not resident pages.
        let ok = status_kb("VmPTE").is_ok_and(|kb| kb >= tables * 4)
            && status_kb("VmRSS").is_ok_and(|kb| kb < 4096);
        if !ok {
            sys::exit_group(3)
        }
        sleep_forever()
    })?;
    let r = (|| {
        settle(|| mem_free_kb().ok_or_else(|| String::from("no MemFree")))?;
        for (pid, who) in [(by, "bystander"), (hog, "hog")] {
            ensure_eq!(
                sys::wait4(pid, sys::WNOHANG),
                Ok((0, 0)),
                "the {who} ended early"
            );
        }
        // Memory in 4 MiB steps, populated by the kernel (a fault per
        // page would take long), until the OOM killer has acted. At most
        // three quarters of what was free: more than the 40% left beside
        // the hog, so memory runs out, but not all of it, so the pages
        // the dying hog gives back (its teardown takes a while, and this
        // process keeps allocating meanwhile) cannot run memory out a
        // second time.
        const STEP: u64 = 4 << 20;
        let mut maps = Vec::new();
        let mut status = None;
        while status.is_none() && (maps.len() as u64) * STEP < free_kb * 1024 / 4 * 3 {
            let rw = PROT_READ | PROT_WRITE;
            match sys::mmap(0, STEP, rw, ANON | MAP_POPULATE, NO_FD, 0) {
                Ok(m) => maps.push(m),
                Err(e) => return Err(format!("mmap: {}", e.name())),
            }
            if let Ok((got, s)) = sys::wait4(hog, sys::WNOHANG)
                && got == hog
            {
                status = Some(s);
            }
        }
        // The hog may still be tearing its tables down: wait for it to
        // become a zombie, up to a minute.
        for _ in 0..6000 {
            if status.is_some() {
                break;
            }
            match sys::wait4(hog, sys::WNOHANG) {
                Ok((got, s)) if got == hog => status = Some(s),
                _ => {
                    let _ = sys::nanosleep(10_000_000);
                }
            }
        }
        let status = status.ok_or("memory ran out and the hog lived")?;
        ensure_eq!(signalled(status), Some(9), "the hog's status {status:#x}");
        ensure_eq!(
            sys::wait4(by, sys::WNOHANG),
            Ok((0, 0)),
            "the bystander died too"
        );
        // The memory this process was given is real.
        for &m in &maps {
            poke(m);
        }
        for m in maps {
            let _ = sys::munmap(m, STEP);
        }
        Ok(())
    })();
    kill_all(&[by, hog]);
    r
}

/// `MAP_POPULATE` of a 1 TiB read-only mapping once memory is nearly full
/// (the kernel fills it with zero-page tables): it must stop when memory
/// runs out (the OOM killer picks the populating process, the largest),
/// not fill RAM and return success.
pub fn t_populate_stops_when_memory_runs_out() -> TestResult {
    let Some(free_kb) = small_memory("populate_stops_when_memory_runs_out")? else {
        return Ok(());
    };
    with_2m_folios(|| populate_stops_when_memory_runs_out(free_kb))
}

fn populate_stops_when_memory_runs_out(free_kb: u64) -> TestResult {
    child_ok("populate_stops_when_memory_runs_out", || {
        let pid = spawn(|| {
            // All but 16 MiB resident here first, so populate meets the end
            // of memory after a few thousand tables.
            let len = free_kb.saturating_sub(16 << 10) * 1024;
            let rw = PROT_READ | PROT_WRITE;
            if sys::mmap(0, len, rw, ANON | MAP_POPULATE, NO_FD, 0).is_err() {
                sys::exit_group(12)
            }
            // Time for the parent to see this process alive after the fill.
            let _ = sys::nanosleep(500_000_000);
            let r = sys::mmap(
                0,
                1 << 40,
                PROT_READ,
                ANON | MAP_NORESERVE | MAP_POPULATE,
                NO_FD,
                0,
            );
            // Still alive: populate returned.
            sys::exit_group(if r.is_ok() { 10 } else { 11 })
        })?;
        // Alive after filling memory: what kills it now is populate's OOM.
        settle(|| mem_free_kb().ok_or_else(|| String::from("no MemFree")))?;
        ensure_eq!(
            sys::wait4(pid, sys::WNOHANG),
            Ok((0, 0)),
            "the process died filling memory, before populate"
        );
        let (_, status) = sys::wait4(pid, 0).map_err(|e| format!("wait4: {}", e.name()))?;
        ensure_eq!(
            signalled(status),
            Some(9),
            "populate's process ended with {status:#x} (exit 10: success, 11: an error, 12: no memory to fill)"
        );
        Ok(())
    })
}

/// A `CLONE_VM` child's body for [`t_oom_kills_every_process_sharing_the_space`]:
/// maps and populates 4 MiB at a time until it is killed.
extern "C" fn vm_hog(_: u64) {
    loop {
        if sys::mmap(
            0,
            4 << 20,
            PROT_READ | PROT_WRITE,
            ANON | MAP_POPULATE,
            NO_FD,
            0,
        )
        .is_err()
        {
            let _ = sys::nanosleep(1_000_000);
        }
    }
}

/// A vfork child (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` makes)
/// allocates until memory runs out. It is the largest process, but
/// killing it frees nothing while its parent, waiting in the same
/// address space, lives: the OOM killer must kill the parent too, as
/// Linux kills every process sharing the victim's memory. Otherwise the
/// parent, let go by its child's death, would exit 0 with the memory.
pub fn t_oom_kills_every_process_sharing_the_space() -> TestResult {
    let Some(free_before) = small_memory("oom_kills_every_process_sharing_the_space")? else {
        return Ok(());
    };
    with_2m_folios(|| {
        let parent = spawn(|| {
            let _ = ulib::thread::vm_child(vm_hog, 0, true);
            sys::exit_group(0)
        })?;
        let (got, st) = sys::wait4(parent, 0).map_err(|e| String::from(e.name()))?;
        ensure_eq!(got, parent);
        ensure_eq!(
            signalled(st),
            Some(u32::from(SIGKILL)),
            "the vfork parent sharing the killed child's space: status {st:#x}"
        );
        // Every page comes back: the space goes with its last user. That
        // is the child, not the parent waited for, so its teardown may
        // still be running (and MemFree may hold still for a while as it
        // unmaps, before the frees): wait for the memory itself.
        back_to(free_before)
    })
}

/// Waits (up to 10 s) until MemFree is within 4 MiB of `free_kb`, what
/// it was before a test filled memory.
fn back_to(free_kb: u64) -> TestResult {
    let mut now = 0;
    for _ in 0..500 {
        now = mem_free_kb().ok_or("no MemFree")?;
        if now + (4 << 10) >= free_kb {
            return Ok(());
        }
        let _ = sys::nanosleep(20_000_000);
    }
    Err(format!(
        "MemFree {now} kB, {free_kb} kB before: the memory did not come back"
    ))
}
