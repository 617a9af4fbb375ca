//! Per-CPU run queues (Linux's `struct rq`, one per CPU): what each CPU
//! runs, and the runnable threads waiting for it, behind a lock of its
//! own, so that switching threads takes no lock another CPU's switches
//! take (the process table's lock, [`super::PROCS`], is left to what
//! changes process state: blocking, waking, fork, exit, wait).
//!
//! Each thread's scheduling state lives in its [`KThread`], in atomics
//! ([`Sched`]), so a CPU reads it without the table:
//! - `runnable`: the thread's table state is `Runnable` (kept by
//!   [`Sched::set_runnable`], called under the table's lock wherever the
//!   state changes);
//! - `running`: a CPU has taken it to run and has not yet decided, at its
//!   next switch, whether to queue it again;
//! - `queued`: it sits on a run queue (or is being moved between two). Who
//!   puts it on one first claims this flag, so a thread is never queued
//!   twice; the CPU that takes it off clears it.
//!
//! A waker ([`wake_up`], under the table's lock, once the state is
//! `Runnable`) and the CPU switching away from the thread ([`pick_next`])
//! settle who queues it without a shared lock, as Linux's `try_to_wake_up`
//! does with `p->on_rq` and `p->on_cpu`: the CPU clears `running`, then
//! reads `runnable`; the waker sets `runnable`, then reads `running`.
//! Both are sequentially consistent, so at least one sees the other's
//! store and queues the thread (the `queued` claim keeps it to one). A
//! thread whose registers are still being saved by its last CPU (its
//! `on_cpu` flag, [`KThread::on_cpu`]) is queued on that CPU, which alone
//! may take it: no CPU ever waits for another's switch to end, so two
//! CPUs can never wait for each other's thread.
//!
//! Placement: a woken thread goes to an idle CPU it may run on (which is
//! sent a reschedule IPI), else to the waker's CPU if allowed, else to the
//! first CPU its affinity allows. A new child goes to an idle CPU, or
//! right behind its creator on the creator's CPU (the creator returns
//! from `fork` first). Balancing: a CPU that would otherwise idle, or
//! keep running the thread it ran while another CPU has one waiting,
//! takes the first thread it may run from the longest other queue; a CPU
//! whose queue (counting what it ran) is two or more shorter than the
//! longest pulls one at its switch; a CPU that leaves threads waiting
//! kicks an idle CPU they may run on; a CPU sleeping idle looks at every
//! tick whether another CPU has two or more waiting. A queued thread its
//! affinity no longer allows where it sits moves to a CPU it allows when
//! its CPU next switches.
//!
//! Lock order: the table's lock, then one run queue's lock (never two at
//! once).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{KThread, Pid};
use crate::smp::MAX_CPUS;
use crate::sync::IrqMutex;

use Ordering::{Acquire, Relaxed, Release, SeqCst};

/// A thread's scheduling state, read and written without the table's lock.
pub(super) struct Sched {
    /// The table state is `Runnable`.
    runnable: AtomicBool,
    /// A CPU runs it and has not yet decided whether to queue it again.
    running: AtomicBool,
    /// On a run queue (claimed by whoever puts it there).
    queued: AtomicBool,
    /// The CPUs it may run on (the table's `affinity`, mirrored).
    affinity: AtomicU64,
    /// Its tid (exec from a thread that is not the leader changes it).
    pid: AtomicU32,
    /// The CPU that last ran it.
    last_cpu: AtomicUsize,
}

impl Sched {
    /// A new thread's: runnable, on no queue yet.
    pub(super) fn new(pid: Pid, affinity: u64) -> Sched {
        Sched {
            runnable: AtomicBool::new(true),
            running: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            affinity: AtomicU64::new(affinity),
            pid: AtomicU32::new(pid),
            last_cpu: AtomicUsize::new(crate::smp::id()),
        }
    }

    /// Mirrors the table state (called under the table's lock whenever it
    /// changes): true for `Runnable`. A thread that becomes runnable is
    /// then handed to [`wake_up`].
    pub(super) fn set_runnable(&self, runnable: bool) {
        self.runnable.store(runnable, SeqCst);
    }

    /// Mirrors the table's affinity.
    pub(super) fn set_affinity(&self, mask: u64) {
        self.affinity.store(mask, Relaxed);
    }

    /// Mirrors a change of tid (exec from a thread that is not the leader).
    pub(super) fn set_pid(&self, pid: Pid) {
        self.pid.store(pid, Relaxed);
    }

    fn allows(&self, cpu: usize) -> bool {
        self.affinity.load(Relaxed) & 1 << cpu != 0
    }
}

/// A thread on a run queue.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Kt(NonNull<KThread>);

// SAFETY: a KThread is shared by design (atomics and a context only the
// CPU switching to or from it touches); it is freed only once it is a
// zombie off every CPU, and a zombie is on no run queue (module doc).
unsafe impl Send for Kt {}

impl Kt {
    /// # Safety
    ///
    /// `p` must be a live KThread that stays alive while on a queue or
    /// running (true of every thread in the table: see [`Kt`]).
    pub(super) unsafe fn new(p: *mut KThread) -> Kt {
        Kt(NonNull::new(p).expect("a null kernel thread"))
    }
    pub(super) fn ptr(self) -> *mut KThread {
        self.0.as_ptr()
    }
    fn get(&self) -> &KThread {
        // SAFETY: see the Send impl: live while queued or running.
        unsafe { self.0.as_ref() }
    }
    fn sched(&self) -> &Sched {
        &self.get().sched
    }
    fn on_cpu(&self) -> bool {
        self.get().on_cpu.load(Acquire)
    }
    /// True if `cpu` may take it from another CPU's queue: allowed there,
    /// and its registers saved (only the CPU saving them may take it
    /// before that).
    fn stealable_by(&self, cpu: usize) -> bool {
        self.sched().allows(cpu) && !self.on_cpu()
    }
}

/// One CPU's queue.
struct RunQueue {
    /// Runnable threads waiting, in order.
    queue: VecDeque<Kt>,
    /// Threads the running one created since it last gave up the CPU
    /// (no CPU was idle): queued right behind it when it does.
    new_children: Vec<Kt>,
}

static RQ: [IrqMutex<RunQueue>; MAX_CPUS] = [const {
    IrqMutex::new(RunQueue {
        queue: VecDeque::new(),
        new_children: Vec::new(),
    })
}; MAX_CPUS];
/// Each queue's length (waiting threads and new children), read without
/// its lock for balancing.
static LEN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// What each CPU runs (null: its idle thread), and its tid (0: idle).
static CURRENT: [AtomicPtr<KThread>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static CURRENT_PID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// CPUs sleeping in their idle thread with nothing to run: a wake-up
/// that queues a thread there sends a reschedule IPI and clears the bit.
/// Set by the CPU itself under its queue's lock, once it found nothing to
/// run; cleared by a kicker or by the CPU once it wakes.
static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);

/// Per CPU: its running thread is exiting, so what it wakes (its
/// parent in `wait4`, a joiner on its clear-child-tid futex) runs best
/// right here once it is gone (Linux's `WF_SYNC` wake-ups), not on an
/// idle CPU that first has to take an IPI. Cleared at the CPU's next
/// switch.
static EXITING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Marks this CPU's running thread as exiting (see [`EXITING`]).
pub(super) fn note_exiting() {
    EXITING[crate::smp::id()].store(true, Relaxed);
}

/// Gives every queue room for every thread there can be ([`super::MAX_PROCS`]),
/// once at boot: a switch then never allocates (nor frees) heap memory,
/// which may be full (a process that fills the heap must see it stay
/// full, and a switch must not fail for want of it).
pub(super) fn reserve() {
    for q in &RQ {
        let mut rq = q.lock();
        let want = super::MAX_PROCS;
        let queue_more = want.saturating_sub(rq.queue.len());
        let children_more = want.saturating_sub(rq.new_children.len());
        rq.queue.reserve_exact(queue_more);
        rq.new_children.reserve_exact(children_more);
    }
}

/// What this CPU runs (None: its idle thread).
pub(super) fn current() -> Option<Pid> {
    match CURRENT_PID[crate::smp::id()].load(Relaxed) {
        0 => None,
        p => Some(p),
    }
}

/// The CPU running `pid`, if one does (a snapshot: it may move on;
/// sequentially consistent with [`pick_next`]'s record, for
/// `kick_running`).
pub(super) fn cpu_of(pid: Pid) -> Option<usize> {
    (0..MAX_CPUS).find(|&c| CURRENT_PID[c].load(SeqCst) == pid)
}

/// Records that this CPU's running thread (`kt`) is now `pid` (exec
/// from a thread that is not the leader gives it the leader's).
pub(super) fn rename_current(kt: *mut KThread, pid: Pid) {
    let cpu = crate::smp::id();
    debug_assert_eq!(CURRENT[cpu].load(Relaxed), kt);
    // SAFETY: the running thread's own KThread.
    unsafe { (*kt).sched.set_pid(pid) };
    CURRENT_PID[cpu].store(pid, Relaxed);
}

/// The waits for the run queues' locks, summed: (acquisitions that
/// waited, nanoseconds).
pub fn contention() -> (u64, u64) {
    RQ.iter().fold((0, 0), |(n, ns), q| {
        let (a, b) = q.contention();
        (n + a, ns + b)
    })
}

/// Puts `kt` (claimed: `queued` set by the caller) on `cpu`'s queue, at
/// the back (or the front), and wakes `cpu` if it sleeps idle.
fn push(cpu: usize, kt: Kt, front: bool) {
    {
        let mut rq = RQ[cpu].lock();
        if front {
            rq.queue.push_front(kt);
        } else {
            rq.queue.push_back(kt);
        }
        LEN[cpu].fetch_add(1, Relaxed);
    }
    // After the push: an idle CPU sets its bit under its queue's lock
    // after looking, so either it saw the thread or the bit is seen here.
    kick(cpu);
}

/// Sends `cpu` a reschedule IPI if it sleeps idle (and clears its bit).
fn kick(cpu: usize) {
    let bit = 1 << cpu;
    if IDLE_CPUS.load(SeqCst) & bit != 0 && IDLE_CPUS.fetch_and(!bit, SeqCst) & bit != 0 {
        if cpu == crate::smp::id() {
            return;
        }
        let _ = crate::smp::send_ipi(cpu);
    }
}

/// Where a thread that may run on `allowed` goes: this CPU if the thread
/// running here is exiting (it frees the CPU at once), else an idle CPU
/// (the lowest), else this CPU if allowed, else the lowest allowed CPU
/// that is online.
fn place(allowed: u64) -> usize {
    let me = crate::smp::id();
    if allowed & 1 << me != 0 && EXITING[me].load(Relaxed) {
        return me;
    }
    let idle = IDLE_CPUS.load(Relaxed) & allowed & !(1 << me);
    if idle != 0 {
        return idle.trailing_zeros() as usize;
    }
    if allowed & 1 << me != 0 {
        return me;
    }
    crate::smp::online()
        .find(|&c| allowed & 1 << c != 0)
        .unwrap_or(me)
}

/// Queues `kt`, which just became runnable (its `runnable` set, under the
/// table's lock), unless its CPU still runs it: that CPU queues it again
/// when it switches away (module doc). `front`: at the head of the queue
/// (a sleeper whose deadline passed).
pub(super) fn wake_up(kt: *mut KThread, front: bool) {
    // SAFETY: a thread in the table (the caller holds the table's lock).
    let kt = unsafe { Kt::new(kt) };
    let s = kt.sched();
    debug_assert!(s.runnable.load(Relaxed));
    if s.running.load(SeqCst) || s.queued.swap(true, SeqCst) {
        return;
    }
    // Registers still being saved: only the CPU saving them may take it.
    let cpu = if kt.on_cpu() {
        s.last_cpu.load(Relaxed)
    } else {
        place(s.affinity.load(Relaxed))
    };
    push(cpu, kt, front);
}

/// Places a new thread, runnable and never run: on an idle CPU it may run
/// on, or right behind its creator on this CPU.
pub(super) fn place_new(kt: *mut KThread) {
    // SAFETY: a thread just put in the table (the caller holds its lock).
    let kt = unsafe { Kt::new(kt) };
    let s = kt.sched();
    let claimed = !s.queued.swap(true, SeqCst);
    debug_assert!(claimed, "a new thread already queued");
    let me = crate::smp::id();
    let allowed = s.affinity.load(Relaxed);
    if IDLE_CPUS.load(Relaxed) & allowed & !(1 << me) != 0 || allowed & 1 << me == 0 {
        push(place(allowed), kt, false);
    } else {
        RQ[me].lock().new_children.push(kt);
        LEN[me].fetch_add(1, Relaxed);
    }
}

/// Takes `kt` off a queue to run it on `cpu` (the caller removed it
/// under that queue's lock).
fn take(kt: Kt, cpu: usize) -> Kt {
    let s = kt.sched();
    // `running` before `queued` is let go: a waker never finds it
    // neither running nor queued while it is about to run.
    s.running.store(true, SeqCst);
    s.queued.store(false, SeqCst);
    s.last_cpu.store(cpu, Relaxed);
    kt
}

/// The switch decision of CPU `cpu` (Linux `__schedule`'s
/// `pick_next_task` with the requeue of `prev`): queues the thread it
/// runs again if it is still runnable, puts its new children behind it,
/// and takes the next thread to run (None: the idle thread). Records the
/// choice as what `cpu` runs. Returns (what it ran, what it runs now).
pub(super) fn pick_next(cpu: usize) -> (Option<*mut KThread>, Option<*mut KThread>) {
    let prev = NonNull::new(CURRENT[cpu].load(Relaxed)).map(Kt);
    EXITING[cpu].store(false, Relaxed);
    // Balancing (Linux's load balance, reduced to queue lengths): a CPU
    // whose queue, with what it ran, holds two or more fewer threads
    // than the longest other pulls one from it. Done before this CPU's
    // own queue is locked: never two queue locks at once.
    let mine = LEN[cpu].load(Relaxed)
        + usize::from(prev.is_some_and(|p| p.sched().runnable.load(Relaxed)));
    let pulled = steal(cpu, mine + 2);
    // Threads to move elsewhere, a few per switch (no allocation here:
    // the rest move at the next one).
    let mut migrate = [None; 4];
    let mut moving = 0;
    let waiting;
    let next = {
        let mut rq = RQ[cpu].lock();
        if let Some(k) = pulled {
            rq.queue.push_back(k);
            LEN[cpu].fetch_add(1, Relaxed);
        }
        if let Some(p) = prev {
            let s = p.sched();
            // The decision (module doc): let go of `running`, then look.
            s.running.store(false, SeqCst);
            if s.runnable.load(SeqCst) && !s.queued.swap(true, SeqCst) {
                rq.queue.push_back(p);
                LEN[cpu].fetch_add(1, Relaxed);
            }
        }
        let RunQueue {
            queue,
            new_children,
        } = &mut *rq;
        queue.extend(new_children.drain(..));
        let mut next = None;
        let mut i = 0;
        while let Some(&k) = rq.queue.get(i) {
            if !k.sched().allows(cpu) {
                // Affinity changed: moved once its registers are saved.
                if (k.on_cpu() && Some(k) == prev) || moving == migrate.len() {
                    i += 1;
                } else {
                    rq.queue.remove(i);
                    LEN[cpu].fetch_sub(1, Relaxed);
                    migrate[moving] = Some(k);
                    moving += 1;
                }
                continue;
            }
            rq.queue.remove(i);
            LEN[cpu].fetch_sub(1, Relaxed);
            next = Some(k);
            break;
        }
        // Where what is left may run (for the kick below).
        waiting = rq
            .queue
            .iter()
            .fold(0, |m, k| m | k.sched().affinity.load(Relaxed));
        next.map(|k| take(k, cpu))
    };
    for k in migrate.into_iter().flatten() {
        push(place(k.sched().affinity.load(Relaxed)), k, false);
    }
    // Nothing here but what it ran, while another CPU has a backlog (or
    // nothing at all): take work from the busiest queue.
    let next = match next {
        None => steal(cpu, 1).map(|k| take(k, cpu)),
        // Only what it ran is left here while another CPU has a thread
        // waiting (its CPU runs something else): run that one, as the
        // one queue did (a yield then lets any waiting thread run).
        Some(n) if Some(n) == prev && LEN[cpu].load(Relaxed) == 0 => match steal(cpu, 1) {
            Some(other) => {
                let other = take(other, cpu);
                // `prev` waits at the head of its own queue instead.
                let s = n.sched();
                s.queued.store(true, SeqCst);
                s.running.store(false, SeqCst);
                push(cpu, n, true);
                Some(other)
            }
            None => Some(n),
        },
        n => n,
    };
    // Whatever this CPU leaves waiting, an idle CPU it may run on may
    // take at once.
    kick_idle(waiting);
    let ptr = next.map(Kt::ptr);
    CURRENT[cpu].store(ptr.unwrap_or(core::ptr::null_mut()), Relaxed);
    let pid = next.map_or(0, |k| k.sched().pid.load(Relaxed));
    // SeqCst: a killer that bumps the kill epoch and then misses this
    // record is seen by the thread, which reads the epoch after it.
    CURRENT_PID[cpu].store(pid, SeqCst);
    (prev.map(Kt::ptr), ptr)
}

/// Takes the first thread `cpu` may run, and whose registers are saved,
/// off the longest other queue holding at least `min` (None: none). It
/// stays claimed (`queued`): the caller runs it ([`take`]) or queues it.
fn steal(cpu: usize, min: usize) -> Option<Kt> {
    let mut tried = 1u64 << cpu;
    loop {
        // The longest queue not tried yet (no allocation: this runs in
        // the middle of a switch).
        let (c, len) = (0..MAX_CPUS)
            .filter(|&c| tried & 1 << c == 0)
            .map(|c| (c, LEN[c].load(Relaxed)))
            .max_by_key(|&(_, len)| len)?;
        if len < min {
            return None;
        }
        tried |= 1 << c;
        let mut rq = RQ[c].lock();
        let at = rq.queue.iter().position(|k| k.stealable_by(cpu));
        if let Some(i) = at
            && let Some(k) = rq.queue.remove(i)
        {
            LEN[c].fetch_sub(1, Relaxed);
            return Some(k);
        }
    }
}

/// For the idle loop: true if `cpu` has something to run (on its queue,
/// or one it may take from another); if not, marks it idle (under its
/// queue's lock, so a thread queued on it later kicks it).
pub(super) fn idle_or_work(cpu: usize) -> bool {
    let elsewhere = (0..MAX_CPUS).any(|c| {
        c != cpu
            && LEN[c].load(Relaxed) != 0
            && RQ[c].lock().queue.iter().any(|k| k.stealable_by(cpu))
    });
    let rq = RQ[cpu].lock();
    let work = elsewhere || !rq.queue.is_empty() || !rq.new_children.is_empty();
    if !work {
        IDLE_CPUS.fetch_or(1 << cpu, SeqCst);
    }
    work
}

/// True if `cpu`, sleeping idle, should stop: kicked (its bit cleared),
/// or another CPU has a backlog, two threads or more waiting (looked at
/// every tick: a single waiting thread was a kick's to hand over, and
/// its CPU runs it within a slice anyway).
pub(super) fn idle_should_wake(cpu: usize) -> bool {
    IDLE_CPUS.load(Acquire) & 1 << cpu == 0
        || (0..MAX_CPUS).any(|c| c != cpu && LEN[c].load(Relaxed) >= 2)
}

/// True if `cpu`'s queue has threads waiting (a snapshot).
pub(super) fn has_waiting(cpu: usize) -> bool {
    LEN[cpu].load(Relaxed) != 0
}

/// Marks `cpu` no longer idle.
pub(super) fn idle_end(cpu: usize) {
    IDLE_CPUS.fetch_and(!(1 << cpu), Release);
}

/// Sends an idle CPU among `allowed` (not this one) a reschedule IPI, so
/// it looks for work (a thread whose affinity now allows it).
pub(super) fn kick_idle(allowed: u64) {
    let others = IDLE_CPUS.load(Relaxed) & allowed & !(1 << crate::smp::id());
    if others != 0 {
        kick(others.trailing_zeros() as usize);
    }
}
