//! Copying to and from user memory. Every user pointer goes through here:
//! the arch routines bound-check the range and access it with exception
//! fixups (and PAN/SMAP-aware instructions), so a bad pointer becomes
//! EFAULT, never a kernel fault. A page the copy finds missing or
//! copy-on-write is faulted in through the task's address space, as a
//! user access would, and the copy resumes (Linux does the same from its
//! page-fault handler).

use alloc::vec::Vec;

use folium_abi::Errno;
use folium_mm::VirtAddr;
use folium_mm::aspace::{Access, FaultError};

use crate::arch;
use crate::proc::Task;
use crate::proc::oom::{self, Oom};

/// Runs `copy(offset)` (which returns the bytes it could not copy from
/// `offset` on) until done, faulting in the page at the first uncopied
/// byte between attempts. EFAULT when the address space refuses; ENOMEM
/// when no frame can be had and the OOM killer chose this process.
fn with_faults(
    task: &mut Task,
    base: u64,
    len: usize,
    access: Access,
    mut copy: impl FnMut(usize) -> usize,
) -> Result<(), Errno> {
    // The areas decide first: PROT_NONE and read-only areas refuse the
    // kernel's accesses as they refuse the user's.
    if !task
        .space_read()
        .is_some_and(|s| s.allows(VirtAddr::new(base), len as u64, access))
    {
        return Err(Errno::EFAULT);
    }
    let mut done = 0;
    let mut last_fault = None;
    while done < len {
        let left = copy(done);
        let new_done = len - left;
        if left == 0 {
            return Ok(());
        }
        let at = base + new_done as u64;
        // A second fault at the same address after a successful fix-up
        // means the mapping forbids this access: give up.
        if new_done == done && last_fault == Some(at) {
            return Err(Errno::EFAULT);
        }
        // The lock is held for the fault only: the copy runs without it
        // (another thread may unmap meanwhile: the copy then stops short
        // and the next fault finds the hole).
        let fixed = task.fault(at, access);
        match fixed {
            Ok(()) => {}
            // No frame is not a bad address: reclaim, or let the OOM
            // killer act, then try again; ENOMEM only if this process is
            // the one to go.
            Err(FaultError::OutOfMemory) => match oom::out_of_memory(task) {
                Oom::Retry => continue,
                Oom::Chosen => return Err(Errno::ENOMEM),
            },
            Err(_) => return Err(Errno::EFAULT),
        }
        last_fault = Some(at);
        done = new_done;
    }
    Ok(())
}

/// Copies `dst.len()` bytes from user address `src`.
pub fn copy_in(task: &mut Task, dst: &mut [u8], src: u64) -> Result<(), Errno> {
    let len = dst.len();
    with_faults(task, src, len, Access::Read, |off| {
        arch::copy_from_user(&mut dst[off..], src + off as u64)
    })
}

/// Copies `src` to user address `dst`.
pub fn copy_out(task: &mut Task, dst: u64, src: &[u8]) -> Result<(), Errno> {
    with_faults(task, dst, src.len(), Access::Write, |off| {
        arch::copy_to_user(dst + off as u64, &src[off..])
    })
}

/// Copies as much of `src` to user address `dst` as the address space
/// allows, a page at a time, stopping at the first page it refuses: the
/// bytes copied, or EFAULT if none could be. Linux's copies report how
/// much they left, so `read` into a buffer that runs into an inaccessible
/// page returns the short count.
pub fn copy_out_partial(task: &mut Task, dst: u64, src: &[u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < src.len() {
        let at = dst.wrapping_add(done as u64);
        let n = ((folium_mm::PAGE_SIZE - at % folium_mm::PAGE_SIZE) as usize).min(src.len() - done);
        if let Err(e) = copy_out(task, at, &src[done..done + n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n;
    }
    Ok(done)
}

/// Reads a little-endian u64 at user address `at`.
pub fn read_u64(task: &mut Task, at: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    copy_in(task, &mut b, at)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a u32 at user address `at`.
pub fn write_u32(task: &mut Task, at: u64, v: u32) -> Result<(), Errno> {
    copy_out(task, at, &v.to_le_bytes())
}

/// Reads a NUL-terminated string of at most `max` bytes (NUL excluded):
/// ENAMETOOLONG if longer, EFAULT if unreadable.
pub fn read_cstr(task: &mut Task, at: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        // Copy up to the next 64-byte boundary so no read crosses into an
        // unmapped page past the terminator.
        let addr = at + out.len() as u64;
        let n = 64 - (addr % 64) as usize;
        copy_in(task, &mut chunk[..n], addr)?;
        if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..z]);
            return if out.len() > max {
                Err(Errno::ENAMETOOLONG)
            } else {
                Ok(out)
            };
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
    }
}

/// Counts the entries of a NULL-terminated array of user pointers (argv,
/// envp) at `at` (0: none), as Linux's `count` does before copying:
/// EFAULT if the array cannot be read, E2BIG if it is longer than
/// `max`.
pub fn count_ptrs(task: &mut Task, at: u64, max: usize) -> Result<usize, Errno> {
    if at == 0 {
        return Ok(0);
    }
    let mut n = 0;
    while read_u64(task, at + 8 * n as u64)? != 0 {
        if n == max {
            return Err(Errno::E2BIG);
        }
        n += 1;
    }
    Ok(n)
}

/// Appends the first `count` strings of the user pointer array at `at` to
/// `out`, each with its NUL, as `folium_abi::stack::Strings` lays them out.
/// `budget` is what the strings may still take and shrinks by each; a
/// string longer than `max_len` (NUL included) or past the budget is
/// E2BIG, an unreadable one EFAULT, and running out of kernel memory
/// ENOMEM (never an abort).
pub fn read_strings(
    task: &mut Task,
    at: u64,
    count: usize,
    max_len: usize,
    budget: &mut usize,
    out: &mut Vec<u8>,
) -> Result<(), Errno> {
    for i in 0..count {
        let mut p = read_u64(task, at + 8 * i as u64)?;
        let begin = out.len();
        let mut chunk = [0u8; 256];
        loop {
            // Up to the next page boundary at most, so no read crosses into
            // an unmapped page past the terminator.
            let n = chunk
                .len()
                .min((folium_mm::PAGE_SIZE - p % folium_mm::PAGE_SIZE) as usize);
            copy_in(task, &mut chunk[..n], p)?;
            let (take, done) = match chunk[..n].iter().position(|&b| b == 0) {
                Some(z) => (z + 1, true),
                None => (n, false),
            };
            let len = out.len() - begin + take;
            if len > max_len || len > *budget {
                return Err(Errno::E2BIG);
            }
            out.try_reserve(take).map_err(|_| Errno::ENOMEM)?;
            out.extend_from_slice(&chunk[..take]);
            if done {
                break;
            }
            p += n as u64;
        }
        *budget -= out.len() - begin;
    }
    Ok(())
}
