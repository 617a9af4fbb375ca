//! An address space as the threads of a process share it (Linux's
//! `mm_struct`): the [`UserSpace`], a lock its users take one at a time
//! (Linux's `mmap_lock`, write side only so far: faults, mmap, munmap,
//! mprotect, fork and the kernel's own accesses all take it), and the
//! ASID bookkeeping every CPU that runs one of the threads shares.
//!
//! The lock sleeps: a thread that finds it held blocks until the holder
//! lets go, so the holder may reach preemption points (between page tables
//! of a long munmap or fork) while other threads of the process wait. A
//! thread of a process with one thread never waits: taking it is one
//! atomic exchange.
//!
//! The ASID tag lives here rather than in the space: a thread resuming on
//! another CPU installs the space without the lock (it may be held by a
//! sibling switched out mid-operation), and every CPU that installs it
//! must agree on one number. The space's own copy of its number
//! (`UserSpace::asid`, which its operations flush with) is set from the
//! tag whenever the lock is taken and whenever the holder installs the
//! space again at a preemption point: while the holder runs, its CPU has
//! the space installed, so a rollover keeps the number (each CPU's active
//! number is carried into the new generation) and the copy stays right.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use folium_mm::PhysAddr;
use folium_mm::asid::AsidTag;

use super::Pid;
use crate::memory::uspace::{self, KernelEnv, UserSpace};
use crate::sync::IrqMutex;

/// A shared address space.
pub struct Mm {
    /// The space itself, reached only through an [`MmGuard`] (`None` once
    /// torn down).
    space: UnsafeCell<Option<UserSpace>>,
    /// Its page-table root, fixed for its life.
    root: PhysAddr,
    /// The ASID tag every CPU installing the space goes through.
    tag: IrqMutex<AsidTag>,
    /// The tid holding the lock (0: free).
    owner: AtomicU32,
    /// Threads blocked waiting for the lock (they sit on the table's wait
    /// queue under [`Mm::wait_key`]).
    waiters: AtomicU32,
}

// SAFETY: the space is reached only through an MmGuard, and the lock
// (`owner`) lets one thread at a time hold one; everything else is atomic
// or behind an IrqMutex.
unsafe impl Sync for Mm {}
// SAFETY: as above; a UserSpace may move between CPUs.
unsafe impl Send for Mm {}

impl Mm {
    /// Wraps `space`, with the ASID tag it has so far.
    pub fn new(space: UserSpace) -> Arc<Mm> {
        Arc::new(Mm {
            root: space.root(),
            tag: IrqMutex::new(space.asid_tag),
            space: UnsafeCell::new(Some(space)),
            owner: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        })
    }

    /// The page-table root.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// What the table's wait queues know this space by (futex keys of its
    /// addresses, and its lock).
    pub fn id(&self) -> u64 {
        self as *const Mm as u64
    }

    /// The wait-queue key of the lock: no user address is `u64::MAX`.
    fn wait_key(&self) -> super::WaitKey {
        super::WaitKey {
            space: self.id(),
            addr: u64::MAX,
        }
    }

    /// Installs the space as this CPU's user half (no lock needed: only
    /// the shared tag changes).
    pub fn activate(&self) {
        uspace::activate_root(self.root, &mut self.tag.lock());
    }

    /// Installs the space again after a preemption point of an operation
    /// on it, returning the number it now has.
    pub(crate) fn reactivate(&self) -> folium_mm::tlb::Asid {
        uspace::activate_root(self.root, &mut self.tag.lock())
    }

    /// The space's resident and page-table pages, unless another thread
    /// than `me` holds the lock (then it publishes them itself).
    pub fn try_usage(&self, me: Pid) -> Option<(u64, u64)> {
        self.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: the lock is ours for these two reads.
        let usage = unsafe { (*self.space.get()).as_ref() }.map(|s| (s.rss(), s.table_pages()));
        self.unlock();
        usage
    }

    /// Takes the lock for thread `me` (blocking while another thread
    /// holds it).
    pub fn lock(self: &Arc<Self>, me: Pid) -> MmGuard {
        if self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        // SAFETY: the lock is ours: no other guard exists.
        let space = unsafe { &mut *self.space.get() };
        if let Some(s) = space.as_mut()
            && let Some(asid) = self.tag.lock().asid()
        {
            s.asid = asid;
        }
        uspace::note_working(self);
        MmGuard {
            mm: Arc::clone(self),
        }
    }

    #[cold]
    fn lock_slow(&self, me: Pid) {
        assert!(
            self.owner.load(Ordering::Relaxed) != me,
            "thread {me} takes its address-space lock twice"
        );
        loop {
            if self
                .owner
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            // Counted before looking again, under the table's lock: an
            // unlock after the look sees the count and wakes us (it needs
            // that lock, which we hold until we block).
            super::wait_on_key(
                None,
                self,
                self.wait_key(),
                u32::MAX,
                u64::MAX,
                false,
                || {
                    self.waiters.fetch_add(1, Ordering::SeqCst);
                    self.owner.load(Ordering::SeqCst) != 0
                },
            );
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn unlock(&self) {
        self.owner.store(0, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            super::wake_key(self.wait_key(), 1, u32::MAX);
        }
    }

    /// Takes the space out to tear it down: only the last user may.
    fn take(mut self) -> Option<UserSpace> {
        self.space.get_mut().take()
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        // Normally torn down by `release`; a space dropped any other way
        // still gives its frames back.
        if let Some(s) = self.space.get_mut().take() {
            s.teardown(&mut KernelEnv);
        }
    }
}

/// Gives up one thread's hold on `mm`: the last one out takes the space
/// (for the caller to tear down once it stopped using it).
pub fn release(mm: Arc<Mm>) -> Option<UserSpace> {
    Arc::into_inner(mm).and_then(Mm::take)
}

/// The space, locked.
pub struct MmGuard {
    mm: Arc<Mm>,
}

impl Deref for MmGuard {
    type Target = UserSpace;
    fn deref(&self) -> &UserSpace {
        // SAFETY: this guard holds the lock; the space is torn down only
        // by its last user, which holds no guard then.
        unsafe { (*self.mm.space.get()).as_ref() }.expect("a live space")
    }
}

impl DerefMut for MmGuard {
    fn deref_mut(&mut self) -> &mut UserSpace {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { (*self.mm.space.get()).as_mut() }.expect("a live space")
    }
}

impl Drop for MmGuard {
    fn drop(&mut self) {
        uspace::forget_working(&self.mm);
        self.mm.unlock();
    }
}
