//! Open files: the console on fds 0-2 and a tiny table of control files at
//! Linux's paths (`/proc/meminfo`, `/proc/sys/vm/drop_caches` and the
//! transparent-hugepage knobs and counters under
//! `/sys/kernel/mm/transparent_hugepage/`), reachable with
//! `openat`/`read`/`write`/`close` so one program configures and reads
//! Linux and Folium alike; and Folium's own knobs and counters, which
//! Linux does not have, under `/sys/kernel/mm/folium/`
//! ([`folium_abi::sysfs`]). Linux's views of memory (`pagemap`,
//! `kpageflags`, `smaps_rollup`) are in `views.rs`. Not a filesystem: a
//! path is either in the table or ENOENT.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

use folium_abi::Errno;
use folium_abi::structs::RLIM_INFINITY;

use super::Task;
use super::views::{self, Found, ViewKind};
use crate::sync::IrqMutex;

/// What an fd refers to.
#[derive(Clone)]
pub enum File {
    /// The serial console (reads return end of file).
    Console,
    /// A control file: its contents as of the open, read sequentially,
    /// and, if opened for writing, the knob a write sets.
    Control {
        /// The contents, generated at open.
        data: Arc<[u8]>,
        /// Read position.
        pos: Pos,
        /// Opened for reading.
        readable: bool,
        /// Opened for writing: the knob a write sets.
        knob: Option<Knob>,
    },
    /// A view of memory whose entries are made at read time from the
    /// offset (`/proc/self/pagemap`, `/proc/kpageflags`; see `views.rs`).
    View {
        /// Which view.
        kind: ViewKind,
        /// The file offset.
        pos: Pos,
    },
}

/// The position of an open file, shared by every fd that refers to it
/// (a table shared by threads, or copied by fork: as Linux's `struct
/// file`, one position for all). Atomic, so two threads reading one file
/// at once each read their own part.
#[derive(Clone, Default)]
pub struct Pos(Arc<core::sync::atomic::AtomicU64>);

impl Pos {
    /// The position now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Moves it to `v`.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// Takes `[p, f(p))` from the position `p` it has now and moves it to
    /// `f(p)`, atomically; returns `(p, f(p))`.
    pub fn take(&self, f: impl Fn(u64) -> u64) -> (u64, u64) {
        let mut p = self.get();
        loop {
            let n = f(p);
            match self.0.compare_exchange(p, n, Relaxed, Relaxed) {
                Ok(_) => return (p, n),
                Err(now) => p = now,
            }
        }
    }

    /// Moves it from `from` to `to` unless something moved it meanwhile
    /// (a short read giving back what it did not copy; a view's read).
    pub fn advance_from(&self, from: u64, to: u64) {
        let _ = self.0.compare_exchange(from, to, Relaxed, Relaxed);
    }
}

/// A writable control file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// `transparent_hugepage/enabled`.
    ThpTop,
    /// `transparent_hugepage/hugepages-<N>kB/enabled`, by folio order.
    ThpSize(u8),
    /// `/sys/kernel/mm/folium/pte_batching` (Folium's own): `1` batches
    /// fork and zap over large folios, `0` goes PTE by PTE.
    Batching,
    /// `/sys/kernel/mm/folium/contpte` (Folium's own, arm64 only): `1`
    /// folds whole 64 KiB blocks of one folio, `0` folds no new ones.
    Contpte,
    /// `/sys/kernel/mm/folium/contpte_fork_per_pte` (arm64 only, for
    /// measurement): `1` makes fork unfold folded blocks and write-protect
    /// them entry by entry (Linux before 6.9), `0` keeps them folded.
    ContpteForkPerPte,
    /// `/sys/kernel/mm/folium/heap_grow_kb` (Folium's own): how far the
    /// kernel heap may grow on demand beyond its boot size, in kB (whole
    /// 4 MiB chunks); tests lower it to exhaust the heap quickly.
    HeapGrow,
    /// `/proc/sys/vm/drop_caches`: 1 to 4 as on Linux. Folium has no page
    /// cache; bit 2 runs the shrinkers, here the deferred split (Linux's
    /// `drop_slab` runs its deferred-split shrinker the same way).
    DropCaches,
}

impl Knob {
    /// Applies a write of `buf`: the whole buffer, or EINVAL.
    pub fn write(self, buf: &[u8]) -> Result<(), Errno> {
        let thp = &crate::memory::THP;
        match self {
            Knob::ThpTop => thp.write_top(buf),
            Knob::ThpSize(order) => thp.write_size(order, buf),
            Knob::Batching => {
                crate::memory::set_batching(bool_word(buf)?);
                Ok(())
            }
            Knob::Contpte => {
                crate::memory::set_contpte(bool_word(buf)?);
                Ok(())
            }
            Knob::ContpteForkPerPte => {
                crate::memory::set_contpte_fork_per_pte(bool_word(buf)?);
                Ok(())
            }
            Knob::HeapGrow => {
                let word = buf.strip_suffix(b"\n").unwrap_or(buf);
                let kb: u64 = core::str::from_utf8(word)
                    .ok()
                    .and_then(|w| w.parse().ok())
                    .ok_or(Errno::EINVAL)?;
                crate::heap::set_limit(kb.saturating_mul(1024));
                Ok(())
            }
            Knob::DropCaches => {
                let word = buf.strip_suffix(b"\n").unwrap_or(buf);
                let v: u8 = core::str::from_utf8(word)
                    .ok()
                    .and_then(|w| w.trim().parse().ok())
                    .filter(|v| (1..=4).contains(v))
                    .ok_or(Errno::EINVAL)?;
                DROP_CACHES.store(v, Relaxed);
                if v & 2 != 0 {
                    let _ = crate::proc::split_deferred_folios();
                }
                Ok(())
            }
        }
        .map_err(|_| Errno::EINVAL)
    }
}

/// The last value written to `/proc/sys/vm/drop_caches` (what reading it
/// shows, as on Linux).
static DROP_CACHES: AtomicU8 = AtomicU8::new(0);

/// Most open files per process (`RLIMIT_NOFILE`'s soft default).
pub const MAX_FDS: usize = 1024;

/// A process's open files.
#[derive(Clone)]
pub struct FdTable {
    fds: Vec<Option<File>>,
}

impl FdTable {
    /// fds 0, 1 and 2 on the console.
    pub fn console() -> FdTable {
        FdTable {
            fds: alloc::vec![
                Some(File::Console),
                Some(File::Console),
                Some(File::Console)
            ],
        }
    }

    /// The file at `fd`, or EBADF.
    pub fn get(&mut self, fd: u64) -> Result<&mut File, Errno> {
        self.fds
            .get_mut(usize::try_from(fd).map_err(|_| Errno::EBADF)?)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)
    }

    /// Installs `f` at the lowest free fd.
    pub fn install(&mut self, f: File) -> Result<u64, Errno> {
        if let Some(i) = self.fds.iter().position(Option::is_none) {
            self.fds[i] = Some(f);
            return Ok(i as u64);
        }
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        self.fds.push(Some(f));
        Ok(self.fds.len() as u64 - 1)
    }
}

/// A thread's handle on its process's fd table: shared by the threads
/// `clone` made with `CLONE_FILES`, copied by `fork` (Linux's
/// `files_struct`). Every method takes the table's lock for a moment and
/// hands back owned values, so no caller holds it across a user copy
/// (which may fault, and so sleep on the address-space lock).
pub struct Files(Option<Arc<IrqMutex<FdTable>>>);

impl Files {
    /// A new table with fds 0, 1 and 2 on the console.
    pub fn console() -> Files {
        Files(Some(Arc::new(IrqMutex::new(FdTable::console()))))
    }

    /// The same table (`CLONE_FILES`).
    pub fn share(&self) -> Files {
        Files(self.0.clone())
    }

    /// A table of its own with the same open files (fork): each fd
    /// refers to the same open file, position included, as on Linux.
    pub fn copy(&self) -> Files {
        Files(
            self.0
                .as_ref()
                .map(|t| Arc::new(IrqMutex::new(t.lock().clone()))),
        )
    }

    fn table(&self) -> Result<&IrqMutex<FdTable>, Errno> {
        self.0.as_deref().ok_or(Errno::EBADF)
    }

    /// The file at `fd` (sharing its contents and position), or EBADF.
    pub fn get(&self, fd: u64) -> Result<File, Errno> {
        self.table()?.lock().get(fd).map(|f| f.clone())
    }

    /// EBADF unless `fd` is open.
    pub fn check(&self, fd: u64) -> Result<(), Errno> {
        self.table()?.lock().get(fd).map(|_| ())
    }

    /// Installs `f` at the lowest free fd.
    pub fn install(&self, f: File) -> Result<u64, Errno> {
        self.table()?.lock().install(f)
    }

    /// Closes `fd`.
    pub fn close(&self, fd: u64) -> Result<(), Errno> {
        // The file is dropped after the lock is let go.
        let f = {
            let mut t = self.table()?.lock();
            let slot = t
                .fds
                .get_mut(usize::try_from(fd).map_err(|_| Errno::EBADF)?)
                .ok_or(Errno::EBADF)?;
            slot.take().ok_or(Errno::EBADF)?
        };
        drop(f);
        Ok(())
    }

    /// Lets go of the table (a thread's exit), allocating nothing: the
    /// last thread holding it closes every file.
    pub fn release(&mut self) {
        if let Some(t) = self.0.take().and_then(Arc::into_inner) {
            drop(t);
        }
    }
}

const THP_DIR: &[u8] = b"/sys/kernel/mm/transparent_hugepage/";

/// Folium's own directory, with its slash.
const FOLIUM_DIR: &[u8] = concat!(folium_abi::folium_mm_path!(), "/").as_bytes();

/// The PMD size in bytes, what Linux's `hpage_pmd_size` reads: the largest
/// anonymous folio (order 9, 2 MiB with 4 KiB pages).
const HPAGE_PMD_SIZE: u64 = folium_abi::PAGE_SIZE << folium_mm::thp::MAX_ORDER;

/// What a control-file path names: its contents now, and its knob if it
/// accepts writes.
fn lookup(path: &[u8]) -> Option<(String, Option<Knob>)> {
    if path == b"/proc/meminfo" {
        return Some((meminfo(), None));
    }
    if path == b"/sys/devices/system/cpu/online" || path == b"/sys/devices/system/cpu/possible" {
        // What glibc's get_nprocs reads: the CPUs that came up, as ranges.
        return Some((cpu_list(crate::smp::online()), None));
    }
    if path == b"/proc/sys/vm/drop_caches" {
        let text = alloc::format!("{}\n", DROP_CACHES.load(Relaxed));
        return Some((text, Some(Knob::DropCaches)));
    }
    if let Some(file) = path.strip_prefix(FOLIUM_DIR) {
        return folium_file(file);
    }
    let thp = &crate::memory::THP;
    let rest = path.strip_prefix(THP_DIR)?;
    let mut text = String::new();
    if rest == b"enabled" {
        thp.read_top(&mut text);
        return Some((text, Some(Knob::ThpTop)));
    }
    if rest == b"hpage_pmd_size" {
        let _ = writeln!(text, "{HPAGE_PMD_SIZE}");
        return Some((text, None));
    }
    let rest = rest.strip_prefix(b"hugepages-")?;
    let kb_end = rest.iter().position(|&b| b == b'k')?;
    let kb: u64 = core::str::from_utf8(&rest[..kb_end]).ok()?.parse().ok()?;
    let order = folium_mm::thp::order_of_kb(kb)?;
    let file = rest[kb_end..].strip_prefix(b"kB/")?;
    if file == b"enabled" {
        thp.read_size(order, &mut text);
        return Some((text, Some(Knob::ThpSize(order))));
    }
    let (alloc, fallback) = thp.counters(order)?;
    let (split, split_failed, split_deferred) = thp.split_counters(order)?;
    let count = match file.strip_prefix(b"stats/")? {
        b"anon_fault_alloc" => alloc,
        b"anon_fault_fallback" => fallback,
        b"split" => split,
        b"split_failed" => split_failed,
        b"split_deferred" => split_deferred,
        _ => return None,
    };
    let _ = writeln!(text, "{count}");
    Some((text, None))
}

/// A CPU list in Linux's format (`0-3`, `0,2-3`), with a newline.
fn cpu_list(cpus: impl Iterator<Item = usize>) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for c in cpus {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == c => *end = c,
            _ => runs.push((c, c)),
        }
    }
    let mut text = String::new();
    for (i, (a, b)) in runs.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = if a == b {
            write!(text, "{sep}{a}")
        } else {
            write!(text, "{sep}{a}-{b}")
        };
    }
    text.push('\n');
    text
}

/// A switch's `0` or `1` (one trailing newline allowed), or EINVAL.
fn bool_word(buf: &[u8]) -> Result<bool, Errno> {
    match buf.strip_suffix(b"\n").unwrap_or(buf) {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ => Err(Errno::EINVAL),
    }
}

/// A file of Folium's own directory (`file` is its name there): the
/// batching switch, the batching and flush counters, and the caller's
/// page-table dumps (`ptdump`, `mmview`: see [`super::ptdump`]).
fn folium_file(file: &[u8]) -> Option<(String, Option<Knob>)> {
    let mut text = String::new();
    match file {
        b"pte_batching" => {
            let _ = writeln!(text, "{}", u8::from(crate::memory::batching()));
            Some((text, Some(Knob::Batching)))
        }
        // Only arm64 folds: elsewhere the files do not exist, so a program
        // can tell.
        b"contpte" if cfg!(target_arch = "aarch64") => {
            let on = crate::memory::fold_policy().fold;
            let _ = writeln!(text, "{}", u8::from(on));
            Some((text, Some(Knob::Contpte)))
        }
        b"contpte_fork_per_pte" if cfg!(target_arch = "aarch64") => {
            let on = crate::memory::fold_policy().fork_per_pte;
            let _ = writeln!(text, "{}", u8::from(on));
            Some((text, Some(Knob::ContpteForkPerPte)))
        }
        b"ptdump" => Some((super::ptdump::generate(super::ptdump::View::Ptdump), None)),
        b"mmview" => Some((super::ptdump::generate(super::ptdump::View::Mmview), None)),
        b"heap_grow_kb" => {
            let _ = writeln!(text, "{}", crate::heap::limit() / 1024);
            Some((text, Some(Knob::HeapGrow)))
        }
        // Reading runs the mm audit (`crate::memory::audit`).
        b"audit" => Some((crate::memory::audit::text(), None)),
        b"stats" => {
            folium_mm::stats::STATS.write(&mut text);
            let queued = crate::memory::frames::with(|b| b.deferred_len());
            let _ = writeln!(text, "deferred_split_queue {queued}");
            let (grown, shrunk) = crate::heap::chunk_counts();
            let _ = writeln!(text, "kernel_heap_used {}", crate::heap::used());
            let _ = writeln!(text, "kernel_heap_total {}", crate::heap::total());
            let _ = writeln!(text, "kernel_heap_chunks {}", grown - shrunk);
            let _ = writeln!(
                text,
                "kernel_heap_chunks_refused {}",
                crate::heap::chunks_refused()
            );
            // The locks every CPU shares: acquisitions that had to wait,
            // and how long they waited in all.
            let _ = writeln!(text, "sched_switches {}", super::switches());
            // TLB maintenance that reached other CPUs (x86: IPI rounds;
            // arm64: broadcast invalidations, which always do).
            let _ = writeln!(text, "tlb_shootdowns {}", crate::arch::tlb::shootdowns());
            // x86: other CPUs' flushes left for their next install of the
            // space, as they did not run it (no IPI); 0 on arm64.
            let _ = writeln!(
                text,
                "tlb_flushes_deferred {}",
                crate::arch::tlb::deferred()
            );
            // The CPUs' page lists: their sizes, pages on them now, and
            // how often they went to the buddy allocator's lock.
            let (batch, high, refills, drains, drain_alls) = crate::memory::frames::pcp_stats();
            let _ = writeln!(text, "pcp_batch {batch}");
            let _ = writeln!(text, "pcp_high {high}");
            let _ = writeln!(text, "pcp_pages {}", crate::memory::frames::pcp_pages());
            let _ = writeln!(text, "pcp_refills {refills}");
            let _ = writeln!(text, "pcp_drains {drains}");
            let _ = writeln!(text, "pcp_drain_alls {drain_alls}");
            for (name, (n, ns)) in [
                ("sched", super::PROCS.contention()),
                ("runq", super::runq_contention()),
                ("frames", crate::memory::frames::contention()),
                ("heap", crate::heap::contention()),
            ] {
                let _ = writeln!(text, "{name}_lock_contended {n}");
                let _ = writeln!(text, "{name}_lock_wait_ns {ns}");
            }
            Some((text, None))
        }
        _ => None,
    }
}

/// Opens `path` for `me` with the access mode of `flags` (`O_RDONLY`,
/// `O_WRONLY`, `O_RDWR`): ENOENT if no such file, EACCES to write a
/// read-only one.
pub fn open(path: &[u8], flags: u64, me: &Task) -> Result<File, Errno> {
    let found = match views::lookup(path, me) {
        Some(Found::View(kind)) => Err(kind),
        Some(Found::Text(text)) => Ok((text, None)),
        None => Ok(lookup(path).ok_or(Errno::ENOENT)?),
    };
    let (readable, writable) = match flags & 3 {
        0 => (true, false),
        1 => (false, true),
        2 => (true, true),
        _ => return Err(Errno::EINVAL),
    };
    let (text, knob) = match found {
        Err(_) | Ok((_, None)) if writable => return Err(Errno::EACCES),
        Err(kind) => {
            return Ok(File::View {
                kind,
                pos: Pos::default(),
            });
        }
        Ok(found) => found,
    };
    Ok(File::Control {
        data: text.into_bytes().into(),
        pos: Pos::default(),
        readable,
        knob: if writable { knob } else { None },
    })
}

/// `/proc/meminfo` in Linux's format (the fields Folium can fill).
pub fn meminfo() -> String {
    let s = crate::memory::frames::stats();
    let kb = |pages: u64| pages * 4;
    let mut out = String::new();
    let mut line = |name: &str, v: u64| {
        let _ = writeln!(out, "{:<16}{:>8} kB", alloc::format!("{name}:"), v);
    };
    line("MemTotal", kb(s.managed_pages));
    line("MemFree", kb(s.free_pages));
    line("MemAvailable", kb(s.free_pages));
    line("Buffers", 0);
    line("Cached", 0);
    line("SwapTotal", 0);
    line("SwapFree", 0);
    line("AnonPages", kb(s.managed_pages - s.free_pages));
    out
}

/// Resource limits a new process starts with (soft, hard), by resource
/// number: RLIMIT_STACK 8 MiB, RLIMIT_CORE 0, RLIMIT_NOFILE 1024/4096,
/// everything else unlimited.
pub fn default_rlimits() -> [(u64, u64); 16] {
    let mut r = [(RLIM_INFINITY, RLIM_INFINITY); 16];
    r[3] = (8 << 20, RLIM_INFINITY); // RLIMIT_STACK
    r[4] = (0, RLIM_INFINITY); // RLIMIT_CORE
    r[7] = (MAX_FDS as u64, 4096); // RLIMIT_NOFILE
    r
}
