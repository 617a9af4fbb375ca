//! File syscalls: the console on fds 0-2 and the control files of
//! `crate::proc::files`.

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_abi::structs::{S_IFCHR, S_IFREG, Stat};

use crate::proc::Task;
use crate::proc::exec::MACHINE;
use crate::proc::files::{self, File};
use crate::uaccess;

/// Most bytes one `read`/`write` moves (Linux's MAX_RW_COUNT is ~2 GiB;
/// the console has no use for more than this per call).
const MAX_RW: u64 = 1 << 20;
const AT_FDCWD: u64 = (-100i64) as u64;
const AT_EMPTY_PATH: u64 = 0x1000;

pub fn write(task: &mut Task, fd: u64, buf: u64, len: u64) -> SysResult {
    match task.files.get(fd)? {
        File::Console => {}
        File::Control { knob: None, .. } => return Err(Errno::EBADF),
        File::Control {
            knob: Some(knob), ..
        } => {
            // A knob takes one short word per write, as sysfs does; an
            // empty write changes nothing and succeeds (sysfs returns 0
            // before calling the knob's handler).
            let knob = *knob;
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
    let len = len.min(MAX_RW);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
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
    task.files.get(fd)?;
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
    let chunk = match task.files.get(fd)? {
        File::Console => return Ok(0),
        File::Control {
            readable: false, ..
        } => return Err(Errno::EBADF),
        File::Control { data, pos, .. } => {
            let n = (data.len() - *pos).min(len.min(MAX_RW) as usize);
            data[*pos..*pos + n].to_vec()
        }
    };
    uaccess::copy_out(task, buf, &chunk)?;
    if let File::Control { pos, .. } = task.files.get(fd)? {
        *pos += chunk.len();
    }
    Ok(chunk.len() as u64)
}

pub fn openat(task: &mut Task, dirfd: u64, path: u64, flags: u64) -> SysResult {
    let path = uaccess::read_cstr(task, path, 4095)?;
    if !path.starts_with(b"/") && dirfd != AT_FDCWD {
        task.files.get(dirfd)?;
        return Err(Errno::ENOTDIR);
    }
    // A snapshot lives on the kernel heap.
    if !crate::heap::can_grow() {
        return Err(Errno::ENOMEM);
    }
    let f = files::open(&path, flags)?;
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
    let st = stat_of(task.files.get(fd)?);
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
    let f = files::open(&path, 0)?;
    put_stat(task, &stat_of(&f), buf)
}

pub fn ioctl(task: &mut Task, fd: u64, _cmd: u64) -> SysResult {
    task.files.get(fd)?;
    // No terminal: TIOCGWINSZ, TCGETS ... all say "not a tty", so libc
    // treats the console as a plain file.
    Err(Errno::ENOTTY)
}
