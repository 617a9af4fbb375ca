//! Open files: the console on fds 0-2 and a tiny table of read-only
//! control files at Linux's paths (`/proc/meminfo`), reachable with
//! `openat`/`read`/`close` so one program reads Linux and Folium alike.
//! Not a filesystem: a path is either in the table or ENOENT.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use folium_abi::Errno;
use folium_abi::structs::RLIM_INFINITY;

/// What an fd refers to.
#[derive(Clone)]
pub enum File {
    /// The serial console (reads return end of file).
    Console,
    /// A snapshot of a control file's contents, read sequentially.
    Snapshot {
        /// The contents, generated at open.
        data: Vec<u8>,
        /// Read position.
        pos: usize,
    },
}

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

    /// Closes `fd`.
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        let slot = self
            .fds
            .get_mut(usize::try_from(fd).map_err(|_| Errno::EBADF)?)
            .ok_or(Errno::EBADF)?;
        slot.take().map(|_| ()).ok_or(Errno::EBADF)
    }

    /// Closes everything (exit).
    pub fn close_all(&mut self) {
        self.fds = Vec::new();
    }
}

/// Opens `path` for reading.
pub fn open(path: &[u8]) -> Result<File, Errno> {
    match path {
        b"/proc/meminfo" => Ok(File::Snapshot {
            data: meminfo().into_bytes(),
            pos: 0,
        }),
        _ => Err(Errno::ENOENT),
    }
}

/// `/proc/meminfo` in Linux's format (the fields Folium can fill).
pub fn meminfo() -> String {
    let s = crate::mm::frames::stats();
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
