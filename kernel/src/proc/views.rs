//! Linux's views of memory as files: `/proc/self/pagemap` and
//! `/proc/kpageflags`, whose entries are made at read time from the file
//! offset (8 bytes per virtual page, per frame: far too large to make at
//! open), and `/proc/self/smaps_rollup` and `status`, made at open like the other
//! control files. The numbers come from `folium_mm::views`; this file
//! adds Linux's file semantics.
//!
//! Reads follow Linux's `pagemap_read` and `kpageflags_read`: the offset
//! and the count must be multiples of 8 (EINVAL); a negative offset is
//! EINVAL and a buffer reaching past the user half EFAULT (the VFS's
//! checks); a count of 0, or an offset at or past the end (the user
//! address-space size for pagemap, the end of the memmap for kpageflags),
//! reads 0 bytes; a fault while copying out is EFAULT. At most
//! [`VIEW_MAX`] bytes are read per call (a short read, which readers of
//! regular files must expect; Linux's limit is 2 GiB), so no call holds
//! the CPU for long. `lseek` moves to any offset with `SEEK_SET` and
//! `SEEK_CUR` and refuses `SEEK_END` (EINVAL), as Linux's `mem_lseek`.
//!
//! A pagemap file shows the address space of the process that opened it
//! (after a fork, the child's inherited descriptor still shows its
//! parent's, as on Linux), and reads 0 bytes once that process is gone.
//! Paths: `/proc/self/…` and `/proc/<own pid>/…`.

use alloc::string::String;
use alloc::vec::Vec;

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_mm::views::{MapcountCache, kpageflags};
use folium_mm::{PAGE_SIZE, Pfn};

use super::{Pid, Task};
use crate::memory::{frames, uspace};
use crate::uaccess;

/// A view read at the file offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// `/proc/<pid>/pagemap` of the process `pid`.
    Pagemap(Pid),
    /// `/proc/kpageflags`.
    KpageFlags,
}

/// Bytes per entry.
const ENTRY: u64 = 8;

/// Entries made and copied out at once.
const CHUNK: usize = 512;

/// Most bytes one read returns.
pub const VIEW_MAX: u64 = 1 << 20;

/// One past the last address pagemap covers: Linux's `TASK_SIZE` (the
/// x86-64 user half less its top page; arm64's 48-bit user half).
#[cfg(target_arch = "x86_64")]
const PAGEMAP_END: u64 = (1 << 47) - PAGE_SIZE;
#[cfg(not(target_arch = "x86_64"))]
const PAGEMAP_END: u64 = 1 << 48;

/// The file a `/proc/...` path names among the views, if any: the kind
/// of an offset-addressed view, or the text of `smaps_rollup` now.
pub enum Found {
    /// Read at the offset.
    View(ViewKind),
    /// Text made at open.
    Text(String),
}

/// Looks `path` up among the views (`me` is the opener).
pub fn lookup(path: &[u8], me: &Task) -> Option<Found> {
    if path == b"/proc/kpageflags" {
        return Some(Found::View(ViewKind::KpageFlags));
    }
    let rest = path.strip_prefix(b"/proc/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (who, file) = (&rest[..slash], &rest[slash + 1..]);
    let own = alloc::format!("{}", me.tgid);
    if who != b"self" && who != own.as_bytes() {
        return None;
    }
    match file {
        b"pagemap" => Some(Found::View(ViewKind::Pagemap(me.tgid))),
        b"smaps_rollup" => Some(Found::Text(smaps_rollup(me))),
        b"status" => Some(Found::Text(status(me))),
        _ => None,
    }
}

/// `/proc/self/status` of `me`: the memory lines in Linux's format
/// (`VmRSS`, `RssAnon`, and `VmPTE`, its page tables, which the OOM
/// killer charges too), after its name and ids.
fn status(me: &Task) -> String {
    use core::fmt::Write;
    let (rss, tables) = me.space().map_or((0, 0), |s| (s.rss(), s.table_pages()));
    let mut text = String::new();
    let kb = |pages: u64| pages * (PAGE_SIZE / 1024);
    let _ = writeln!(text, "Name:\t{}", super::name_of(me.pid));
    let _ = writeln!(text, "State:\tR (running)");
    let _ = writeln!(text, "Tgid:\t{}", me.tgid);
    let _ = writeln!(text, "Pid:\t{}", me.pid);
    let _ = writeln!(text, "PPid:\t{}", super::parent_of(me.pid));
    let _ = writeln!(text, "VmRSS:\t{:>8} kB", kb(rss));
    let _ = writeln!(text, "RssAnon:\t{:>8} kB", kb(rss));
    let _ = writeln!(text, "VmPTE:\t{:>8} kB", kb(tables));
    text
}

/// `smaps_rollup` of `me` in Linux's format (empty without an address
/// space, as Linux's is for a process without an mm).
fn smaps_rollup(me: &Task) -> String {
    let mut text = String::new();
    let Some(space) = me.space() else {
        return text;
    };
    let areas = space.vmas();
    let (Some(first), Some(last)) = (areas.iter().next(), areas.iter().last()) else {
        return text;
    };
    let sums = crate::smp::stop_others(|| {
        let (roots, _) = super::page_table_roots(me.tgid);
        uspace::with_view(space.root(), &roots, |v| {
            v.smaps_rollup(areas.iter().map(|a| (a.start, a.end)))
        })
    });
    let _ = sums.write(first.start, last.end, &mut text);
    text
}

/// Reads `len` bytes of view `kind` at offset `pos` into user memory at
/// `buf`; the number of bytes read (the caller moves the file position).
pub fn read_at(task: &mut Task, kind: ViewKind, pos: u64, buf: u64, len: u64) -> SysResult {
    if buf
        .checked_add(len)
        .is_none_or(|end| end > uspace::USER_END.as_u64())
    {
        return Err(Errno::EFAULT);
    }
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if !pos.is_multiple_of(ENTRY) || !len.is_multiple_of(ENTRY) {
        return Err(Errno::EINVAL);
    }
    let first = pos / ENTRY;
    // How many entries the file has from `first` on.
    let left = match kind {
        ViewKind::Pagemap(_) => first
            .checked_mul(PAGE_SIZE)
            .filter(|&va| va < PAGEMAP_END)
            .map_or(0, |va| (PAGEMAP_END - va) / PAGE_SIZE),
        ViewKind::KpageFlags => frames::memmap().end_pfn().as_u64().saturating_sub(first),
    };
    let n = (len.min(VIEW_MAX) / ENTRY).min(left);
    if n == 0 {
        return Ok(0);
    }
    // Whose page table: the caller's own, or another's as published (none
    // once it is gone, when Linux reads 0 bytes).
    let own_root = |task: &Task, pid: Pid, published: Option<folium_mm::PhysAddr>| {
        if pid == task.tgid {
            task.root()
        } else {
            published
        }
    };
    if let ViewKind::Pagemap(pid) = kind
        && own_root(task, pid, super::page_table_roots(pid).1).is_none()
    {
        return Ok(0);
    }
    let mut entries: Vec<u64> = Vec::new();
    entries
        .try_reserve_exact(CHUNK)
        .map_err(|_| Errno::ENOMEM)?;
    let mut bytes: Vec<u8> = Vec::new();
    bytes
        .try_reserve_exact(CHUNK * ENTRY as usize)
        .map_err(|_| Errno::ENOMEM)?;
    let mut done = 0u64;
    while done < n {
        // Between chunks: a preemption point; a process being killed
        // stops here.
        if done > 0 {
            super::cond_resched(task);
            if super::fatal_signal_pending() {
                break;
            }
        }
        let k = (n - done).min(CHUNK as u64) as usize;
        entries.clear();
        entries.resize(k, 0);
        let at = first + done;
        match kind {
            // The roots are collected afresh for each chunk, with the other
            // CPUs stopped (a process may have exited and freed its tables
            // since the last); a fresh cache per chunk, as copying out may
            // fault and change the mappings of the folios counted.
            ViewKind::Pagemap(pid) => {
                let read = crate::smp::stop_others(|| {
                    let (all, own) = super::page_table_roots(pid);
                    let own = own_root(task, pid, own)?;
                    uspace::with_view(own, &all, |v| {
                        v.pagemap(at, &mut entries, &mut MapcountCache::default());
                    });
                    Some(())
                });
                if read.is_none() {
                    break;
                }
            }
            ViewKind::KpageFlags => {
                let (memmap, zero) = (frames::memmap(), uspace::zero_pfn());
                for (i, e) in entries.iter_mut().enumerate() {
                    *e = kpageflags(memmap, zero, Pfn::new(at + i as u64));
                }
            }
        }
        bytes.clear();
        bytes.extend(entries.iter().flat_map(|e| e.to_le_bytes()));
        uaccess::copy_out(task, buf + done * ENTRY, &bytes)?;
        done += k as u64;
    }
    Ok(done * ENTRY)
}

/// `lseek` on a view: the new offset (`SEEK_SET` 0, `SEEK_CUR` 1; any
/// other, `SEEK_END` included, is EINVAL).
pub fn seek(pos: u64, off: u64, whence: u64) -> Result<u64, Errno> {
    match whence {
        0 => Ok(off),
        1 => Ok(pos.wrapping_add(off)),
        _ => Err(Errno::EINVAL),
    }
}
