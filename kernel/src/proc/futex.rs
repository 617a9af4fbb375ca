//! Futexes (Linux's `futex(2)`): threads block on a 32-bit word of user
//! memory while it holds an expected value, and others wake them.
//!
//! A waiter is keyed by its address space and the word's address. Linux
//! keys a private futex (`FUTEX_PRIVATE_FLAG`) the same way, and a shared
//! one in anonymous private memory too (only shared file or shmem pages
//! get a key of their own), which is the only memory Folium maps: the two
//! kinds are one here.
//!
//! The wait queues are the process table's ([`super::wait_on_key`]): the
//! value is compared under the table's lock the queue is changed under,
//! so a wake that follows a store to the word can never slip between a
//! waiter's comparison and its sleep. The comparison reads the word with
//! the ordinary user-copy routine, which cannot take a page fault there
//! (a missing page ends the copy early): then the lock is dropped, the
//! page faulted in, and the comparison made again, as Linux does.
//!
//! Changes the kernel makes to futex words another thread may be
//! changing at the same moment (the robust list at exit) are atomic
//! read-modify-writes on the word's frame, through the linear map, with
//! the address-space lock held so the mapping cannot change meanwhile.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

use folium_abi::Errno;
use folium_mm::VirtAddr;
use folium_mm::aspace::{Access, FaultError};

use super::{Task, WaitEnd, WaitKey};
use crate::memory::frames;
use crate::memory::uspace::KernelEnv;

/// `FUTEX_WAITERS`: someone waits on this robust futex.
const FUTEX_WAITERS: u32 = 0x8000_0000;
/// `FUTEX_OWNER_DIED`: the owner of this robust futex died holding it.
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// `FUTEX_TID_MASK`: the owner's tid in a robust futex word.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Most entries of a robust list walked at exit (Linux's
/// `ROBUST_LIST_LIMIT`): a list looped by mistake still ends.
const ROBUST_LIST_LIMIT: usize = 2048;

/// The key of the futex word at `uaddr` in `task`'s address space: EINVAL
/// if it is not 4-byte aligned, EFAULT outside the user half.
pub fn key(task: &Task, uaddr: u64) -> Result<WaitKey, Errno> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    if uaddr
        .checked_add(4)
        .is_none_or(|e| e > crate::arch::USER_TOP)
    {
        return Err(Errno::EFAULT);
    }
    let mm = task.mm.as_ref().ok_or(Errno::EFAULT)?;
    Ok(WaitKey {
        space: mm.id(),
        addr: uaddr,
    })
}

/// Reads the word at `uaddr` without faulting (None: not readable now).
fn peek(uaddr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    (crate::arch::copy_from_user(&mut b, uaddr) == 0).then(|| u32::from_le_bytes(b))
}

/// How a wait for the word at `uaddr` to change from `val` ended:
/// `Ok(())` when woken; EAGAIN if the word did not hold `val`; ETIMEDOUT
/// past monotonic `until_ns` (`u64::MAX`: none); EINTR if the process is
/// being killed; EFAULT if the word cannot be read. A stop and continue
/// in between resumes the wait (Linux restarts it).
pub fn wait(task: &mut Task, uaddr: u64, val: u32, until_ns: u64, bits: u32) -> Result<(), Errno> {
    let key = key(task, uaddr)?;
    let mm = task.mm.clone().ok_or(Errno::EFAULT)?;
    loop {
        let differs = Cell::new(false);
        let unreadable = Cell::new(false);
        let end = super::wait_on_key(
            Some(&mut *task),
            &mm,
            key,
            bits,
            until_ns,
            true,
            || match peek(uaddr) {
                Some(v) if v == val => true,
                Some(_) => {
                    differs.set(true);
                    false
                }
                None => {
                    unreadable.set(true);
                    false
                }
            },
        );
        match end {
            WaitEnd::Woken => return Ok(()),
            WaitEnd::TimedOut => return Err(Errno::ETIMEDOUT),
            WaitEnd::NotBlocked if differs.get() => return Err(Errno::EAGAIN),
            WaitEnd::NotBlocked if unreadable.get() => {
                // Fault the page in (or fail as a user read would), then
                // compare again.
                let mut b = [0u8; 4];
                crate::uaccess::copy_in(task, &mut b, uaddr)?;
            }
            WaitEnd::NotBlocked => return Err(Errno::EINTR),
            WaitEnd::Interrupted if super::fatal_signal_pending() => return Err(Errno::EINTR),
            WaitEnd::Interrupted => {
                if until_ns != u64::MAX && crate::time::monotonic_ns() >= until_ns {
                    return Err(Errno::ETIMEDOUT);
                }
            }
        }
    }
}

/// Wakes up to `n` waiters on the word at `uaddr` whose bitset meets
/// `bits`; how many.
pub fn wake(task: &Task, uaddr: u64, n: u32, bits: u32) -> Result<u32, Errno> {
    Ok(super::wake_key(key(task, uaddr)?, n, bits))
}

/// Wakes up to `n` waiters on `uaddr` where an error has no one to go to
/// (`CLONE_CHILD_CLEARTID` at exit).
pub fn wake_address(task: &Task, uaddr: u64, n: u32) {
    let _ = wake(task, uaddr, n, u32::MAX);
}

/// `FUTEX_REQUEUE` / `FUTEX_CMP_REQUEUE`: wakes up to `n_wake` waiters on
/// `uaddr`, moves up to `n_move` others to `uaddr2`; with `cmp`, only if
/// the word at `uaddr` still holds it (EAGAIN otherwise). The woken and
/// moved count.
pub fn requeue(
    task: &mut Task,
    uaddr: u64,
    uaddr2: u64,
    n_wake: u32,
    n_move: u32,
    cmp: Option<u32>,
) -> Result<u32, Errno> {
    let from = key(task, uaddr)?;
    let to = key(task, uaddr2)?;
    loop {
        let unreadable = Cell::new(false);
        let r = super::requeue(from, to, n_wake, n_move, || match cmp {
            None => Ok(()),
            Some(c) => match peek(uaddr) {
                Some(v) if v == c => Ok(()),
                Some(_) => Err(Errno::EAGAIN),
                None => {
                    unreadable.set(true);
                    Err(Errno::EFAULT)
                }
            },
        });
        if !unreadable.get() {
            return r;
        }
        let mut b = [0u8; 4];
        crate::uaccess::copy_in(task, &mut b, uaddr)?;
    }
}

/// Runs `f` on the word at `uaddr` as an atomic, with the address-space
/// lock held and the page mapped writable (faulted in first, as a user
/// store would): EFAULT if it cannot be written.
fn with_word<R>(task: &mut Task, uaddr: u64, f: impl FnOnce(&AtomicU32) -> R) -> Result<R, Errno> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let va = VirtAddr::new(uaddr);
    for _ in 0..4 {
        let mut space = task.space().ok_or(Errno::EFAULT)?;
        if !space.allows(va, 4, Access::Write) {
            return Err(Errno::EFAULT);
        }
        match space.translate(va) {
            Some((pfn, attrs)) if attrs.user && attrs.writable && !attrs.protnone => {
                let p = frames::linear()
                    .ptr::<u32>(pfn.phys())
                    .wrapping_byte_add((uaddr % folium_mm::PAGE_SIZE) as usize);
                // SAFETY: a RAM frame mapped writable into the caller's
                // space, in the linear map, 4-byte aligned; it stays
                // mapped (and allocated) while `space`, the lock, is
                // held, since only a holder may unmap it. User code on
                // other CPUs reaches the same bytes, which is why the
                // access is atomic.
                let word = unsafe { AtomicU32::from_ptr(p) };
                return Ok(f(word));
            }
            _ => match space.handle_fault(&mut KernelEnv, va, Access::Write) {
                Ok(()) => {}
                Err(FaultError::OutOfMemory) => return Err(Errno::ENOMEM),
                Err(_) => return Err(Errno::EFAULT),
            },
        }
    }
    Err(Errno::EFAULT)
}

/// Marks one robust futex of exiting thread `tid` (Linux's
/// `handle_futex_death`): if `tid` still owns it, the owner-died bit goes
/// in (keeping the waiters bit), and a waiter is woken to take it over.
fn futex_death(task: &mut Task, uaddr: u64, tid: u32) {
    let Ok(woke) = with_word(task, uaddr, |w| {
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & FUTEX_TID_MASK != tid {
                return false;
            }
            let new = (cur & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
            match w.compare_exchange(cur, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return cur & FUTEX_WAITERS != 0,
                Err(now) => cur = now,
            }
        }
    }) else {
        return;
    };
    if woke {
        wake_address(task, uaddr, 1);
    }
}

/// Walks the exiting thread's robust-futex list (`set_robust_list`),
/// marking every futex it still holds and waking a waiter on each, as
/// Linux's `exit_robust_list`: the head is `{next, futex_offset,
/// list_op_pending}`, each entry's futex word is at entry +
/// `futex_offset`, and the list ends where it points back at the head.
/// A bad pointer ends the walk quietly.
pub fn exit_robust_list(task: &mut Task) {
    let Ok(head) = super::robust_list(task.pid) else {
        return;
    };
    if head == 0 {
        return;
    }
    let read = |task: &mut Task, at: u64| crate::uaccess::read_u64(task, at).ok();
    let (Some(mut entry), Some(offset), Some(pending)) = (
        read(task, head),
        read(task, head + 8),
        read(task, head + 16),
    ) else {
        return;
    };
    let tid = task.pid;
    // Bit 0 of a pointer marks a PI futex, which Folium has not: masked.
    let futex_of = |e: u64| (e & !1).wrapping_add(offset);
    let mut n = 0;
    while entry != head && n < ROBUST_LIST_LIMIT {
        let Some(next) = read(task, entry & !1) else {
            return;
        };
        // The one being locked or unlocked right now is handled last.
        if entry != pending {
            futex_death(task, futex_of(entry), tid);
        }
        entry = next;
        n += 1;
    }
    if pending != 0 {
        futex_death(task, futex_of(pending), tid);
    }
}
