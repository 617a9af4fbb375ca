//! Linux's views of memory from user space, the same on Linux and Folium:
//! `/proc/self/pagemap` entries, `/proc/kpageflags` words (root only on
//! Linux) and fields of `/proc/self/smaps_rollup`, read with `pread64`.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ffi::CStr;

use folium_abi::{Errno, Sysno};
use ulib::sys::{call, call_int};

/// Bits 0-54 of a pagemap entry: the frame number.
pub const PM_PFN: u64 = (1 << 55) - 1;
/// Bit 56: the page is mapped exactly once.
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// Bit 61: a file page or shared anonymous page.
pub const PM_FILE: u64 = 1 << 61;
/// Bit 63: present.
pub const PM_PRESENT: u64 = 1 << 63;

/// `KPF_MMAP`.
pub const KPF_MMAP: u64 = 1 << 11;
/// `KPF_ANON`.
pub const KPF_ANON: u64 = 1 << 12;
/// `KPF_COMPOUND_HEAD`.
pub const KPF_HEAD: u64 = 1 << 15;
/// `KPF_COMPOUND_TAIL`.
pub const KPF_TAIL: u64 = 1 << 16;
/// `KPF_THP`.
pub const KPF_THP: u64 = 1 << 22;
/// `KPF_ZERO_PAGE`.
pub const KPF_ZERO_PAGE: u64 = 1 << 24;

/// An open file, closed when dropped.
pub struct Fd(pub u64);

impl Fd {
    /// Opens `path` read-only.
    pub fn open(path: &CStr) -> Result<Fd, Errno> {
        // SAFETY: a NUL-terminated path; flags O_RDONLY.
        let fd = unsafe {
            call(
                Sysno::Openat,
                [(-100i64) as u64, path.as_ptr() as u64, 0, 0, 0, 0],
            )
        }?;
        Ok(Fd(fd))
    }

    /// `pread64(fd, buf, len, off)` into raw user memory `buf` (which
    /// need not be valid: the kernel checks it).
    pub fn pread_raw(&self, buf: u64, len: u64, off: u64) -> Result<u64, Errno> {
        // SAFETY: the kernel writes at most `len` bytes at `buf`; callers
        // pass either a buffer of theirs or one the kernel must refuse.
        unsafe { call(Sysno::Pread64, [self.0, buf, len, off, 0, 0]) }
    }

    /// Reads 8-byte entries at entry index `first` into `out`; the
    /// number of entries read.
    pub fn entries(&self, first: u64, out: &mut [u64]) -> Result<usize, Errno> {
        let n = self.pread_raw(out.as_mut_ptr() as u64, out.len() as u64 * 8, first * 8)?;
        Ok(n as usize / 8)
    }

    /// `lseek(fd, off, whence)`.
    pub fn lseek(&self, off: u64, whence: u64) -> Result<u64, Errno> {
        call_int(Sysno::Lseek, [self.0, off, whence, 0, 0, 0])
    }

    /// `read(fd, buf)`.
    pub fn read(&self, buf: &mut [u8]) -> Result<u64, Errno> {
        ulib::sys::read(self.0 as i32, buf)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = call_int(Sysno::Close, [self.0, 0, 0, 0, 0, 0]);
    }
}

/// The pagemap entries of the `n` pages from `addr`.
pub fn pagemap(addr: u64, n: usize) -> Result<Vec<u64>, String> {
    let fd = Fd::open(c"/proc/self/pagemap").map_err(|e| format!("pagemap: {}", e.name()))?;
    let mut out = vec![0; n];
    let got = fd
        .entries(addr / 4096, &mut out)
        .map_err(|e| format!("pagemap read: {}", e.name()))?;
    if got != n {
        return Err(format!("pagemap: {got} entries of {n}"));
    }
    Ok(out)
}

/// The kpageflags words of frames `pfn..pfn + n`; `Err(None)` if the file
/// cannot be read (Linux: not root), `Err(Some(why))` on a short read.
pub fn kpageflags(pfn: u64, n: usize) -> Result<Vec<u64>, Option<String>> {
    let fd = Fd::open(c"/proc/kpageflags").map_err(|_| None)?;
    let mut out = vec![0; n];
    match fd.entries(pfn, &mut out) {
        Ok(got) if got == n => Ok(out),
        Ok(got) => Err(Some(format!("kpageflags: {got} entries of {n}"))),
        Err(Errno::EPERM | Errno::EACCES) => Err(None),
        Err(e) => Err(Some(format!("kpageflags read: {}", e.name()))),
    }
}

/// A field of `/proc/self/smaps_rollup`, in kB (`AnonHugePages`, `Rss`).
pub fn rollup_kb(field: &str) -> Result<u64, String> {
    let fd =
        Fd::open(c"/proc/self/smaps_rollup").map_err(|e| format!("smaps_rollup: {}", e.name()))?;
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        match fd.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n as usize,
            Err(e) => return Err(format!("smaps_rollup read: {}", e.name())),
        }
    }
    let text = core::str::from_utf8(&buf[..len]).map_err(|_| String::from("not UTF-8"))?;
    let line = text
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .ok_or_else(|| format!("no {field} in smaps_rollup"))?;
    line.split_ascii_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))
}
