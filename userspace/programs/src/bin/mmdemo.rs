//! `mmdemo`: builds an address space worth drawing and prints snapshots
//! of its page tables for `cargo xtask mmview` (Folium only: it reads
//! `/sys/kernel/mm/folium/ptdump` and `.../mmview`).
//!
//! Through the mTHP knobs it faults in 256 KiB of 64 KiB folios (area
//! A), one 2 MiB folio (B) and four pages of order 0, one of them only
//! read, so it maps the shared zero page (C); puts the knobs back; makes
//! one page of A read-only with `mprotect`; then forks. The child writes
//! one page of A and one of B (copy-on-write: each gets a page of its
//! own) and the parent waits for it to have done so. Snapshots, in the
//! order printed:
//!
//! 1. `parent-before-fork`: A in 64 KiB runs (the mprotected page apart),
//!    B one 2 MiB run, C, all mapped once and writable;
//! 2. `child-after-cow`: the child, its two copied pages new order-0
//!    folios mapped once, everything else shared with the parent and
//!    read-only;
//! 3. `parent-after-fork`: the parent while the child lives: read-only,
//!    shared (`maps=2`) but for the two pages the child copied;
//! 4. `parent-after-child-exit`: every page mapped once again, still
//!    read-only until the parent writes it.
//!
//! It prints `mmdemo: layout ...` with the addresses first (the test in
//! `cargo xtask test` checks the snapshots against them) and exits 0 if
//! every step worked.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::mmview::snapshot;
use folium_programs::thp::{apply_policy, only, save_policy};
use folium_programs::{exited, on_folium};
use ulib::println;
use ulib::sys::{self, mm::*};

ulib::entry!(main);

const PAGE: u64 = 4096;
const KB64: u64 = 64 << 10;
const MB2: u64 = 2 << 20;
const RW: u64 = PROT_READ | PROT_WRITE;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
const NO_FD: u64 = u64::MAX;

/// A private anonymous mapping of `len` bytes with `align`-aligned
/// `len` bytes inside; the aligned start.
fn aligned_area(len: u64, align: u64) -> Result<u64, String> {
    let addr = sys::mmap(0, len + align, RW, ANON, NO_FD, 0)
        .map_err(|e| format!("mmap of {:#x} bytes: {}", len + align, e.name()))?;
    Ok(addr.next_multiple_of(align))
}

/// Stores `v` in the first word of the page at `a`.
fn store(a: u64, v: u64) {
    // SAFETY: `a` is a page-aligned address of a read-write private
    // mapping this program made, where no Rust object lives.
    unsafe { (a as *mut u64).write_volatile(v) }
}

/// The first word of the page at `a`.
fn load(a: u64) -> u64 {
    // SAFETY: as in `store`; the page is readable.
    unsafe { (a as *const u64).read_volatile() }
}

/// Writes every page of `[start, start + len)` under the policy
/// `sizes` (per `SIZES`, top level `never`).
fn populate(start: u64, len: u64, sizes: &[&str]) -> Result<(), String> {
    apply_policy("never", sizes)?;
    for p in (start..start + len).step_by(PAGE as usize) {
        store(p, p);
    }
    Ok(())
}

fn run() -> Result<(), String> {
    if !on_folium() {
        return Err("needs Folium (it reads /sys/kernel/mm/folium/ptdump)".into());
    }
    let saved = save_policy()?;
    let a = aligned_area(4 * KB64, KB64)?;
    let b = aligned_area(MB2, MB2)?;
    let c = aligned_area(4 * PAGE, PAGE)?;
    let built = (|| {
        populate(a, 4 * KB64, &only(64))?;
        populate(b, MB2, &only(2048))?;
        populate(c, 3 * PAGE, &["never"; 8])?;
        // The fourth page is only read: the zero page.
        if load(c + 3 * PAGE) != 0 {
            return Err(String::from("a fresh page does not read 0"));
        }
        Ok(())
    })();
    let sizes: Vec<&str> = saved.1.iter().map(String::as_str).collect();
    apply_policy(&saved.0, &sizes)?;
    built?;
    let ro_page = a + KB64 + 5 * PAGE;
    sys::mprotect(ro_page, PAGE, PROT_READ).map_err(|e| format!("mprotect: {}", e.name()))?;
    let cow = a + 2 * PAGE;
    let cow_2m = b + 100 * PAGE;
    println!(
        "mmdemo: layout a64k={a:#x} a64k_len={:#x} b2m={b:#x} b2m_len={MB2:#x} c4k={c:#x} c4k_len={:#x} ro_page={ro_page:#x} cow_page={cow:#x} cow_page_2m={cow_2m:#x}",
        4 * KB64,
        4 * PAGE
    );
    snapshot("parent-before-fork")?;
    let child = match sys::fork() {
        Ok(0) => {
            store(cow, 0xc0c0);
            store(cow_2m, 0xc0c0);
            let ok = snapshot("child-after-cow").is_ok();
            // Stay alive (sharing the rest) until the parent has looked,
            // then go: the parent ends this with SIGKILL.
            for _ in 0..100 {
                let _ = sys::nanosleep(100_000_000);
            }
            sys::exit_group(if ok { 0 } else { 1 })
        }
        Ok(pid) => pid as i32,
        Err(e) => return Err(format!("fork: {}", e.name())),
    };
    // Folium runs the child first; the sleep lets it get through its
    // copy and snapshot elsewhere too.
    let _ = sys::nanosleep(200_000_000);
    snapshot("parent-after-fork")?;
    let _ = sys::kill(child, 9);
    let (_, status) = sys::wait4(child, 0).map_err(|e| format!("wait4: {}", e.name()))?;
    if exited(status).is_some_and(|s| s != 0) {
        return Err(format!("the child failed (status {status:#x})"));
    }
    snapshot("parent-after-child-exit")?;
    // The child's writes never reached the parent.
    if load(cow) != cow || load(cow_2m) != cow_2m {
        return Err(String::from("the child's copy-on-write reached the parent"));
    }
    Ok(())
}

fn main(_args: &ulib::Args) -> i32 {
    match run() {
        Ok(()) => {
            println!("mmdemo: ok");
            0
        }
        Err(e) => {
            println!("mmdemo: FAILED: {e}");
            1
        }
    }
}
