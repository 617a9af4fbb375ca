//! An address space as the threads of a process share it (Linux's
//! `mm_struct`): the [`UserSpace`], a lock with a shared and an exclusive
//! side (Linux's `mmap_lock`), and the ASID bookkeeping every CPU that
//! runs one of the threads shares.
//!
//! **The lock.** Faults take the shared side ([`Mm::read`]): the faults
//! of several threads run at once, each through `&UserSpace`, taking a
//! last-level table's lock inside the space only to look at and change
//! its entries (see `AddressSpace::handle_fault_shared`). Everything else (mmap,
//! munmap, mprotect, mremap, brk, fork, exec, the kernel's own accesses
//! to user memory that are not fault fix-ups) takes the exclusive side
//! ([`Mm::lock`]) and gets `&mut UserSpace`.
//!
//! Both sides sleep: a thread that finds the lock taken blocks until it
//! is let go, so an exclusive holder may reach preemption points (between
//! page tables of a long munmap or fork) while other threads of the
//! process wait. A waiting writer holds new readers off, so a stream of
//! faults cannot starve an munmap. A thread of a process with one thread
//! never waits: taking either side is one atomic compare-exchange.
//!
//! The ASID tag lives here rather than in the space: a thread resuming on
//! another CPU installs the space without the lock (it may be held by a
//! sibling switched out mid-operation), and every CPU that installs it
//! must agree on one number. The space's own copy of its number
//! (`UserSpace::asid`, which its exclusive operations flush with) is set
//! from the tag whenever the exclusive side is taken and whenever the
//! holder installs the space again at a preemption point: while the
//! holder runs, its CPU has the space installed, so a rollover keeps the
//! number (each CPU's active number is carried into the new generation)
//! and the copy stays right. A fault under the shared side reads the
//! number from the tag instead ([`MmReadGuard::asid`]): the faulting
//! thread's CPU has the space installed for the same reason.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use folium_mm::PhysAddr;
use folium_mm::asid::AsidTag;

use super::Pid;
use crate::memory::uspace::{self, KernelEnv, UserSpace};
use crate::sync::IrqMutex;

/// A shared address space.
pub struct Mm {
    /// The space itself, reached only through an [`MmGuard`] or an
    /// [`MmReadGuard`] (`None` once torn down).
    space: UnsafeCell<Option<UserSpace>>,
    /// Its page-table root, fixed for its life.
    root: PhysAddr,
    /// The ASID tag every CPU installing the space goes through.
    tag: IrqMutex<AsidTag>,
    /// The lock: [`WRITER`] while the exclusive side is held, else the
    /// number of shared holders.
    state: AtomicU64,
    /// The tid holding the exclusive side (0: none): a thread taking it
    /// twice is a bug, caught at once rather than a silent hang.
    owner: AtomicU32,
    /// Threads waiting for the exclusive side: while there is one, the
    /// shared side admits nobody new.
    writers_waiting: AtomicU32,
    /// Threads blocked waiting for either side (they sit on the table's
    /// wait queue under [`Mm::wait_key`]).
    waiters: AtomicU32,
}

/// [`Mm::state`] while the exclusive side is held.
const WRITER: u64 = 1 << 63;

// SAFETY: the space is reached only through the guards: an MmGuard
// (`&mut`) exists only while the lock's state is WRITER, MmReadGuards
// (`&`, whose users change tables only under the tables' locks and
// counts only atomically) only while it counts them; everything else
// is atomic or behind an IrqMutex.
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
            state: AtomicU64::new(0),
            owner: AtomicU32::new(0),
            writers_waiting: AtomicU32::new(0),
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
    /// holds the exclusive side (then it publishes them itself).
    pub fn try_usage(&self) -> Option<(u64, u64)> {
        self.try_read()?;
        // SAFETY: the shared side is ours for these two reads (both
        // counts are atomics in the space).
        let usage = unsafe { (*self.space.get()).as_ref() }.map(|s| (s.rss(), s.table_pages()));
        self.read_unlock();
        usage
    }

    /// Takes the shared side unless a writer holds it or waits for it
    /// (another reader coming or going meanwhile is no reason to give
    /// up: it looks again).
    fn try_read(&self) -> Option<()> {
        let mut cur = self.state.load(Ordering::SeqCst);
        loop {
            if cur & WRITER != 0 || self.writers_waiting.load(Ordering::SeqCst) != 0 {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Takes the exclusive side for thread `me` (blocking while another
    /// thread holds either side).
    pub fn lock(self: &Arc<Self>, me: Pid) -> MmGuard {
        if self
            .state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        self.owner.store(me, Ordering::Relaxed);
        // SAFETY: the exclusive side is ours: no other guard exists.
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
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        self.wait_until(|| {
            self.state
                .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes the shared side for thread `me` (blocking while a thread
    /// holds the exclusive side or waits for it), for a fault.
    pub fn read(self: &Arc<Self>, me: Pid) -> MmReadGuard {
        if self.try_read().is_none() {
            assert!(
                self.owner.load(Ordering::Relaxed) != me,
                "thread {me} takes its address-space lock twice"
            );
            self.wait_until(|| self.try_read().is_some());
        }
        MmReadGuard {
            mm: Arc::clone(self),
        }
    }

    /// Blocks until `take` succeeds. Each look after the first is made
    /// with the waiter counted, under the table's lock: a release after
    /// the look sees the count and wakes us (it needs that lock, which we
    /// hold until we block), so no wake-up is lost.
    fn wait_until(&self, take: impl Fn() -> bool) {
        loop {
            if take() {
                return;
            }
            let taken = core::cell::Cell::new(false);
            let counted = core::cell::Cell::new(false);
            super::wait_on_key(
                None,
                self,
                self.wait_key(),
                u32::MAX,
                u64::MAX,
                false,
                || {
                    self.waiters.fetch_add(1, Ordering::SeqCst);
                    counted.set(true);
                    taken.set(take());
                    !taken.get()
                },
            );
            // Not counted if it returned before looking (no thread to
            // block): the count must not go below the waiters there are.
            if counted.get() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
            if taken.get() {
                return;
            }
        }
    }

    /// Wakes every waiter, if there is one: each looks again (a writer
    /// let go, so any of them may get in; or the last reader left, so a
    /// writer may).
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            super::wake_key(self.wait_key(), u32::MAX, u32::MAX);
        }
    }

    fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.state.store(0, Ordering::SeqCst);
        self.wake_waiters();
    }

    fn read_unlock(&self) {
        if self.state.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.wake_waiters();
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

/// The space, locked for a fault: shared with other faulting threads.
pub struct MmReadGuard {
    mm: Arc<Mm>,
}

impl MmReadGuard {
    /// The number the space runs with: the tag's, which the faulting
    /// thread's CPU (where the space is installed) keeps alive.
    pub fn asid(&self) -> folium_mm::tlb::Asid {
        self.mm.tag.lock().asid().unwrap_or(self.asid)
    }
}

impl Deref for MmReadGuard {
    type Target = UserSpace;
    fn deref(&self) -> &UserSpace {
        // SAFETY: this guard holds the shared side, so no `&mut` exists;
        // the space is torn down only by its last user, which holds no
        // guard then.
        unsafe { (*self.mm.space.get()).as_ref() }.expect("a live space")
    }
}

impl Drop for MmReadGuard {
    fn drop(&mut self) {
        self.mm.read_unlock();
    }
}

impl Drop for MmGuard {
    fn drop(&mut self) {
        uspace::forget_working(&self.mm);
        self.mm.unlock();
    }
}
