//! Locks that interrupt handlers may take: [`IrqMutex`] masks interrupts
//! on this CPU for as long as it is held, so a handler can never spin on a
//! lock that the code it interrupted holds. A CPU spinning for one runs
//! the cross-CPU calls posted to it, so it never deadlocks against a
//! holder that waits for such a call.
//!
//! Every lock a handler may reach goes through it: the frame allocator,
//! the heap, the console and the scheduler. Folio refcounts and mapcounts
//! are atomics in the memmap and need no lock at all.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::irqflags::{IrqFlags, irq_restore, irq_save};

/// How many [`IrqMutex`]es this CPU holds now: a preemption point checks
/// it is 0, since switching away while holding a spin lock would leave the
/// next thread to spin on it for ever.
pub fn held() -> usize {
    crate::smp::held()
}

/// A spin lock that masks interrupts while held (Linux `spin_lock_irqsave`).
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
    /// The holder's CPU index + 1 (0: free), so code can tell its own
    /// CPU's hold (a nested use that must not wait) from another's.
    owner: AtomicUsize,
    /// Acquisitions that found the lock held, and the nanoseconds they
    /// spun in all (counted on the slow path only).
    contended: AtomicU64,
    spin_ns: AtomicU64,
}

/// Holds an [`IrqMutex`]; unlocks, then restores the interrupt mask, on drop.
pub struct IrqMutexGuard<'a, T> {
    // Dropped before the interrupt mask is restored (see Drop).
    guard: Option<spin::MutexGuard<'a, T>>,
    owner: &'a AtomicUsize,
    flags: IrqFlags,
}

impl<T> IrqMutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
            owner: AtomicUsize::new(0),
            contended: AtomicU64::new(0),
            spin_ns: AtomicU64::new(0),
        }
    }

    /// Masks interrupts, then takes the lock. While it spins, it runs the
    /// cross-CPU calls posted to this CPU (`crate::smp::call_on`): the
    /// holder may be waiting for one of them, with its interrupts masked.
    #[inline]
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let flags = irq_save();
        let guard = match self.inner.try_lock() {
            Some(g) => g,
            None => self.lock_slow(),
        };
        crate::smp::lock_taken();
        self.owner.store(crate::smp::id() + 1, Ordering::Relaxed);
        IrqMutexGuard {
            guard: Some(guard),
            owner: &self.owner,
            flags,
        }
    }

    #[cold]
    fn lock_slow(&self) -> spin::MutexGuard<'_, T> {
        // The clock is read while spinning, never once the lock is held
        // (on x86 it is an HPET read, which would lengthen the hold): the
        // wait is counted up to the last failed try.
        let t0 = crate::time::monotonic_ns();
        let mut last = t0;
        let guard = loop {
            if let Some(g) = self.inner.try_lock() {
                break g;
            }
            crate::smp::run_posted_calls();
            core::hint::spin_loop();
            last = crate::time::monotonic_ns();
        };
        self.contended.fetch_add(1, Ordering::Relaxed);
        self.spin_ns
            .fetch_add(last.saturating_sub(t0), Ordering::Relaxed);
        guard
    }

    /// Acquisitions that had to wait, and the nanoseconds they waited.
    pub fn contention(&self) -> (u64, u64) {
        (
            self.contended.load(Ordering::Relaxed),
            self.spin_ns.load(Ordering::Relaxed),
        )
    }

    /// True if someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// True if this CPU holds the lock (then taking it again would spin
    /// for ever). Only this CPU writes its own index there, and it does
    /// so with interrupts masked, so the answer cannot change under it.
    pub fn is_held_here(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == crate::smp::id() + 1
    }

    /// Breaks the lock.
    ///
    /// # Safety
    ///
    /// The holder must never touch the protected value again (it was
    /// interrupted by a fatal path that stops the machine).
    pub unsafe fn force_unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Unlock first: an interrupt taken the moment the mask lifts must
        // find the lock free.
        self.owner.store(0, Ordering::Relaxed);
        self.guard = None;
        crate::smp::lock_released();
        irq_restore(self.flags);
    }
}
