//! File syscalls: the console on fds 0-2, the control files of
//! `crate::proc::files` and the views of memory of `crate::proc::views`
//! (read, `pread64` and `lseek` at any offset).

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_abi::structs::{S_IFCHR, S_IFREG, Stat};

use crate::proc::Task;
use crate::proc::exec::MACHINE;
use crate::proc::files::{self, File};
use crate::proc::views;
use crate::uaccess;

/// Most bytes one `read`/`write` moves (Linux's MAX_RW_COUNT is ~2 GiB;
/// the console has no use for more than this per call).
const MAX_RW: u64 = 1 << 20;
pub const AT_FDCWD: u64 = (-100i64) as u64;
const AT_EMPTY_PATH: u64 = 0x1000;

pub fn write(task: &mut Task, fd: u64, buf: u64, len: u64) -> SysResult {
    match task.files.get(fd)? {
        File::Console => {}
        File::Control { knob: None, .. } | File::View { .. } => return Err(Errno::EBADF),
        File::Control {
            knob: Some(knob), ..
        } => {
            // A knob takes one short word per write, as sysfs does; an
            // empty write changes nothing and succeeds (sysfs returns 0
            // before calling the knob's handler).
            if len == 0 {
                return Ok(0);
            }
            let mut word = [0u8; 64];
            let n = (len as usize).min(word.len());
            uaccess::copy_in(task, &mut word[..n], buf)?;
            if len as usize > word.len() {
                return Err(Errno::EINVAL);
            }
            knob.write(&word[..n])?;
            return Ok(len);
        }
    }
    let claimed = claim_console(task)?;
    let r = write_console(task, buf, len);
    if claimed {
        crate::console::release_writer(task.pid);
    }
    r
}

/// Waits for the console to be free of other processes' writes and
/// claims it (see `console::claim_writer`): true if this call claimed
/// it, false if the caller (a `writev`) holds it already. EINTR for a
/// process being killed meanwhile.
fn claim_console(task: &mut Task) -> Result<bool, Errno> {
    loop {
        if let Some(new) = crate::console::claim_writer(task.pid) {
            return Ok(new);
        }
        if crate::proc::fatal_signal_pending() {
            return Err(Errno::EINTR);
        }
        // The holder is runnable (a write never blocks): let it finish.
        crate::proc::yield_now(task);
    }
}

/// Copies `len` bytes at `buf` to the console, in chunks.
fn write_console(task: &mut Task, buf: u64, len: u64) -> SysResult {
    let len = len.min(MAX_RW);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        // The UART takes a few hundred microseconds per chunk: let others
        // run between chunks, and end early (a short count, as Linux's
        // tty writes do) for a process being killed.
        if done > 0 {
            crate::proc::cond_resched(task);
        }
        if crate::proc::fatal_signal_pending() {
            return if done > 0 {
                Ok(done)
            } else {
                Err(Errno::EINTR)
            };
        }
        let n = (len - done).min(chunk.len() as u64) as usize;
        if let Err(e) = uaccess::copy_in(task, &mut chunk[..n], buf + done) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        crate::console::write_bytes(&chunk[..n]);
        done += n as u64;
    }
    Ok(done)
}

pub fn writev(task: &mut Task, fd: u64, iov: u64, cnt: u64) -> SysResult {
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let console = matches!(task.files.get(fd)?, File::Console);
    // One claim of the console for all the vectors, as Linux's tty write
    // takes its lock once per call.
    let claimed = console && claim_console(task)?;
    let r = writev_each(task, fd, iov, cnt);
    if claimed {
        crate::console::release_writer(task.pid);
    }
    r
}

fn writev_each(task: &mut Task, fd: u64, iov: u64, cnt: u64) -> SysResult {
    let mut total = 0;
    for i in 0..cnt {
        let base = uaccess::read_u64(task, iov + 16 * i)?;
        let len = uaccess::read_u64(task, iov + 16 * i + 8)?;
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        match write(task, fd, base, len) {
            Ok(n) => total += n,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

pub fn read(task: &mut Task, fd: u64, buf: u64, len: u64) -> SysResult {
    read_at(task, fd, None, buf, len)
}

/// `pread64`: a read at `off`, the file position unchanged (ESPIPE on the
/// console, EINVAL for a negative offset).
pub fn pread64(task: &mut Task, fd: u64, buf: u64, len: u64, off: u64) -> SysResult {
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if let File::Console = task.files.get(fd)? {
        return Err(Errno::ESPIPE);
    }
    read_at(task, fd, Some(off), buf, len)
}

/// Reads from `fd` at `at` (`pread64`, the position unchanged) or, with
/// `None`, at its position, which moves past what was read. The file is
/// the one the fd referred to when the call began (another thread may
/// close or reuse the fd meanwhile); two reads of one file at once each
/// take their own part of it.
fn read_at(task: &mut Task, fd: u64, at: Option<u64>, buf: u64, len: u64) -> SysResult {
    let (data, pos) = match task.files.get(fd)? {
        File::Console => return Ok(0),
        File::Control {
            readable: false, ..
        } => return Err(Errno::EBADF),
        File::Control { data, pos, .. } => (data, pos),
        File::View { kind, pos } => {
            let from = at.unwrap_or_else(|| pos.get());
            let n = views::read_at(task, kind, from, buf, len)?;
            if at.is_none() {
                pos.advance_from(from, from.wrapping_add(n));
            }
            return Ok(n);
        }
    };
    let size = data.len() as u64;
    let want = len.min(MAX_RW);
    let (from, to) = match at {
        Some(a) => (a.min(size), a.min(size).saturating_add(want).min(size)),
        None => pos.take(|p| p.min(size).saturating_add(want).min(size).max(p)),
    };
    // A position past the end (an lseek there) reads nothing.
    let from_clamped = from.min(size);
    let to_clamped = to.min(size).max(from_clamped);
    let chunk = &data[from_clamped as usize..to_clamped as usize];
    // A buffer that runs into an inaccessible page gets what fits before
    // it, as on Linux; what was not copied goes back to the position.
    let copied = match uaccess::copy_out_partial(task, buf, chunk) {
        Ok(c) => c as u64,
        Err(e) => {
            if at.is_none() {
                pos.advance_from(to, from);
            }
            return Err(e);
        }
    };
    if at.is_none() && copied < to_clamped - from_clamped {
        pos.advance_from(to, from_clamped + copied);
    }
    Ok(copied)
}

/// `lseek`: ESPIPE on the console; a control file moves with `SEEK_SET`,
/// `SEEK_CUR` and `SEEK_END` (EINVAL for a negative result); a view as
/// Linux's `mem_lseek` (`views::seek`).
pub fn lseek(task: &mut Task, fd: u64, off: u64, whence: u64) -> SysResult {
    match task.files.get(fd)? {
        File::Console => Err(Errno::ESPIPE),
        File::View { pos, .. } => {
            let new = views::seek(pos.get(), off, whence)?;
            pos.set(new);
            Ok(new)
        }
        File::Control { data, pos, .. } => {
            let base = match whence {
                0 => 0,
                1 => pos.get() as i64,
                2 => data.len() as i64,
                _ => return Err(Errno::EINVAL),
            };
            let new = base.checked_add(off as i64).ok_or(Errno::EINVAL)?;
            if new < 0 {
                return Err(Errno::EINVAL);
            }
            pos.set(new as u64);
            Ok(new as u64)
        }
    }
}

pub fn openat(task: &mut Task, dirfd: u64, path: u64, flags: u64) -> SysResult {
    let path = uaccess::read_cstr(task, path, 4095)?;
    if !path.starts_with(b"/") && dirfd != AT_FDCWD {
        task.files.check(dirfd)?;
        return Err(Errno::ENOTDIR);
    }
    // A snapshot lives on the kernel heap.
    if !crate::heap::can_grow() {
        return Err(Errno::ENOMEM);
    }
    let f = files::open(&path, flags, task)?;
    task.files.install(f)
}

pub fn close(task: &mut Task, fd: u64) -> SysResult {
    task.files.close(fd).map(|()| 0)
}

fn stat_of(f: &File) -> Stat {
    match f {
        File::Console => Stat {
            mode: S_IFCHR | 0o620,
            nlink: 1,
            rdev: 0x0500, // major 5, minor 0: /dev/tty-like
            blksize: 1024,
            ..Stat::default()
        },
        // Linux's pagemap and kpageflags are readable by their owner only.
        File::View { .. } => Stat {
            mode: S_IFREG | 0o400,
            nlink: 1,
            blksize: 1024,
            ..Stat::default()
        },
        File::Control { .. } => Stat {
            mode: S_IFREG | 0o444,
            nlink: 1,
            blksize: 1024,
            ..Stat::default()
        },
    }
}

fn put_stat(task: &mut Task, st: &Stat, buf: u64) -> SysResult {
    let bytes = st.to_bytes(MACHINE);
    uaccess::copy_out(task, buf, &bytes[..Stat::size(MACHINE)])?;
    Ok(0)
}

pub fn fstat(task: &mut Task, fd: u64, buf: u64) -> SysResult {
    let st = stat_of(&task.files.get(fd)?);
    put_stat(task, &st, buf)
}

pub fn newfstatat(task: &mut Task, dirfd: u64, path: u64, buf: u64, flags: u64) -> SysResult {
    let path = uaccess::read_cstr(task, path, 4095)?;
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        return fstat(task, dirfd, buf);
    }
    let f = files::open(&path, 0, task)?;
    put_stat(task, &stat_of(&f), buf)
}

const FIONREAD: u32 = 0x541b;
const FIONBIO: u32 = 0x5421;
const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;
const FIOASYNC: u32 = 0x5452;

/// `ioctl`: the requests Linux answers for every file (`do_vfs_ioctl`):
/// FIOCLEX/FIONCLEX, FIONBIO/FIOASYNC (which read their int argument),
/// FIONREAD (the bytes left: `i_size - pos` for a /proc file, whose size
/// is 0; none waiting on the console). The request is a 32-bit int, as
/// Linux's `cmd` is.
pub fn ioctl(task: &mut Task, fd: u64, cmd: u64, arg: u64) -> SysResult {
    let left = match task.files.get(fd)? {
        File::Console => 0,
        File::Control { pos, .. } => (pos.get() as i64).wrapping_neg() as i32,
        File::View { pos, .. } => (pos.get() as i64).wrapping_neg() as i32,
    };
    match cmd as u32 {
        FIOCLEX | FIONCLEX => Ok(0),
        FIONBIO | FIOASYNC => {
            let mut b = [0u8; 4];
            uaccess::copy_in(task, &mut b, arg)?;
            Ok(0)
        }
        FIONREAD => {
            uaccess::copy_out(task, arg, &left.to_le_bytes())?;
            Ok(0)
        }
        // No terminal: TIOCGWINSZ, TCGETS ... all say "not a tty", so libc
        // treats the console as a plain file.
        _ => Err(Errno::ENOTTY),
    }
}

/// `readlinkat`: no file here is a symbolic link. Linux's order: a size
/// of 0 or less is EINVAL, then the path is read (EFAULT), then looked
/// up: EINVAL for a file that exists, ENOENT otherwise.
pub fn readlinkat(task: &mut Task, dirfd: u64, path: u64, bufsiz: u64) -> SysResult {
    if bufsiz as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = uaccess::read_cstr(task, path, 4095)?;
    if exists(task, dirfd, &path)? {
        Err(Errno::EINVAL)
    } else {
        Err(Errno::ENOENT)
    }
}

/// Whether `path` (relative ones from `dirfd`) names a file: EBADF for a
/// relative path from a bad `dirfd`, ENOTDIR from a file.
fn exists(task: &mut Task, dirfd: u64, path: &[u8]) -> Result<bool, Errno> {
    if !path.starts_with(b"/") && dirfd != AT_FDCWD {
        task.files.check(dirfd)?;
        return Err(Errno::ENOTDIR);
    }
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(files::open(path, 0, task).is_ok() || crate::proc::exec::find(path).is_some())
}

const R_OK_W_OK_X_OK: u64 = 7;
const X_OK: u64 = 1;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EACCESS: u64 = 0x200;

/// `faccessat`/`faccessat2`/`access`: every process is root, which may
/// read and write any file (Linux's CAP_DAC_OVERRIDE) and execute those
/// with an execute bit: the embedded programs, not the /proc and /sys
/// files. Linux's order: mode, then flags (EINVAL), then the path.
pub fn faccessat(task: &mut Task, dirfd: u64, path: u64, mode: u64, flags: u64) -> SysResult {
    if mode as u32 as u64 & !R_OK_W_OK_X_OK != 0 {
        return Err(Errno::EINVAL);
    }
    if flags as u32 as u64 & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = uaccess::read_cstr(task, path, 4095)?;
    if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
        task.files.check(dirfd)?;
        return if mode & X_OK != 0 {
            Err(Errno::EACCES)
        } else {
            Ok(0)
        };
    }
    if !exists(task, dirfd, &path)? {
        return Err(Errno::ENOENT);
    }
    if mode & X_OK != 0 && crate::proc::exec::find(&path).is_none() {
        return Err(Errno::EACCES);
    }
    Ok(0)
}
