//! Processes and their threads: the table, round-robin scheduling on
//! every CPU, fork, clone of threads, exit, wait and kill.
//!
//! Each thread (a process is a group of them, see `docs/architecture.md`,
//! "Threads") has a kernel thread of its own (a [`KernelStack`] and an
//! [`arch::Context`]) that runs [`task_main`]: enter user mode with
//! [`arch::run_user`], handle whatever brought it back (a syscall, a fault,
//! an interrupt), repeat. Kernel code runs with interrupts masked; a task
//! gives up the CPU only in [`schedule`]: when it blocks, yields, exits,
//! its time slice ran out on the way back to user mode, or at a
//! preemption point of long kernel work ([`cond_resched`], Linux's
//! `cond_resched`: between page tables of fork, unmap, teardown and
//! mprotect, between chunks of console output and other long copies).
//! A preemption point briefly unmasks interrupts so a pending tick is
//! taken, and switches if the slice is used up (or a sleeper is due);
//! it is only placed where the caller holds no lock and what other
//! processes may read (its published page-table root, its tables, the
//! folio counts) is consistent. The boot thread becomes CPU 0's idle
//! thread, each secondary CPU's start-up thread that CPU's.
//!
//! **Several CPUs.** Each CPU has a run queue of its own (`runq.rs`,
//! Linux's `struct rq`), its running thread, slice and idle thread. A
//! switch takes only its CPU's queue lock, not the table's: each thread's
//! scheduling state (runnable, running, queued, affinity) is mirrored in
//! atomics of its [`KThread`], which the table's lock keeps in step with
//! the process state. A woken thread goes to an idle CPU (with a
//! reschedule IPI), else to the waker's; a CPU about to idle, or to keep
//! running the thread it runs while another has one waiting, takes one
//! from the longest other queue, and one whose queue is two or more
//! shorter than the longest pulls one. A process switched out on one CPU
//! may be picked by another before the first has saved its registers:
//! each kernel thread has an `on_cpu` flag (Linux's
//! `task_struct::on_cpu`), set by the CPU that switches to it and cleared
//! by that CPU once it has switched away ([`finish_switch`], on the next
//! thread); only that CPU may take the thread back until then, and a
//! reaper waits for the flag before it frees a zombie's stack. A CPU with
//! nothing to run sleeps in its idle thread. Readers of other processes'
//! page tables (the deferred split, the mm audit, the `/proc` views of
//! memory) first stop the other CPUs at a consistent point
//! ([`crate::smp::stop_others`]).
//!
//! State is split by who may touch it:
//! - [`ProcInfo`] (parent, children, state, exit status, pending kill) lives
//!   in the table behind [`PROCS`]'s lock: other processes read and change
//!   it (wait, reparenting, kill, wake-ups).
//! - [`Task`] (registers, kernel stack, files, and a reference to the
//!   address space its process's threads share behind a lock of its own,
//!   [`mm::Mm`]) is used by its own thread only, on whichever CPU runs it: it takes one `&mut Task` when it
//!   starts ([`task_main`]) and passes it down; its parent builds it before
//!   the thread exists (fork), and its reaper frees it after the thread is
//!   gone. Switching touches only each thread's [`Context`] (a heap object
//!   of its own), and a resumed thread installs its own address space.
//!   What others need to know (signal dispositions and mask, resident
//!   pages for the OOM killer) is published in [`ProcInfo`].

pub mod exec;
pub mod fault;
pub mod files;
pub mod futex;
pub mod mm;
pub mod oom;
pub mod ptdump;
mod runq;
pub mod views;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use folium_abi::Errno;
use folium_abi::signal::{DefaultAction, ExitStatus, Signal};
use folium_abi::stack::{self, Strings};

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use folium_mm::PhysAddr;

use crate::arch::{self, Context, UserContext, UserExit};
use crate::memory::kstack::KernelStack;
use crate::memory::uspace::{self, KernelEnv};
use crate::smp::MAX_CPUS;
use crate::sync::IrqMutex;
use mm::{Mm, MmGuard, MmReadGuard};

/// A process id.
pub type Pid = u32;

/// The first process.
pub const INIT_PID: Pid = 1;

/// One past the largest pid (Linux's default `pid_max`).
pub const PID_MAX: Pid = 32_768;

/// Where pid allocation starts again after it reached [`PID_MAX`]
/// (Linux's `RESERVED_PIDS`: low pids stay for daemons started at boot).
const PID_WRAP_TO: Pid = 300;

/// Most processes at once, zombies included (Linux: RLIMIT_NPROC /
/// threads-max; fork then fails with EAGAIN).
pub const MAX_PROCS: usize = 512;

/// What a process is doing, as others see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// On a run queue, or running.
    Runnable,
    /// Waiting in `wait4` for a child to change state.
    WaitChild,
    /// Sleeping until monotonic time `until_ns`.
    Sleep {
        /// Deadline in nanoseconds of `CLOCK_MONOTONIC`.
        until_ns: u64,
    },
    /// Stopped by SIGSTOP (or another stop signal at its default action)
    /// until SIGCONT or SIGKILL.
    Stopped,
    /// On a wait queue of the table (a futex, an address-space lock)
    /// until woken, or until `until_ns` (`u64::MAX`: no deadline).
    Blocked {
        /// Deadline in nanoseconds of `CLOCK_MONOTONIC`.
        until_ns: u64,
        /// Whether a fatal or stop signal ends the wait early.
        killable: bool,
    },
    /// Dead, waiting to be reaped.
    Zombie(ExitStatus),
}

/// The shared part of a thread (behind the table lock). A process is a
/// thread group: its first thread (the leader, whose tid is the
/// process's pid, its `tgid`) holds what belongs to the whole process
/// (parent, children, signal dispositions, stop reports, the published
/// root and footprint); every thread has its own state, kill and stop
/// requests, affinity and robust list.
pub struct ProcInfo {
    /// Its thread group (the leader's tid).
    pub tgid: Pid,
    /// Leader only: the other threads of the group still running or
    /// dying (a thread leaves the list when it exits).
    pub threads: Vec<Pid>,
    /// Parent (init after reparenting). Leader only.
    pub ppid: Pid,
    /// Children not yet reaped (their leaders). Leader only.
    pub children: Vec<Pid>,
    /// What it is doing.
    pub state: State,
    /// How it is to end, acted on at its next kernel exit point: a fatal
    /// signal to its process, or another thread's `exit_group`.
    pub kill: Option<ExitStatus>,
    /// A stop signal sent to it, acted on at its next return to user mode.
    pub stop: Option<Signal>,
    /// A stop or continue its parent has not collected with `wait4`
    /// (`WUNTRACED`, `WCONTINUED`): the raw wait status.
    pub report: Option<u32>,
    /// Signal dispositions and mask (here, not in [`Task`], because
    /// senders read them).
    pub signals: Signals,
    /// Signals sent while blocked, delivered when unblocked.
    pub pending: u64,
    /// Short name for reports (the program's file name, as Linux's `comm`).
    pub name: String,
    /// Resident pages of its address space, as the process itself last
    /// published them (the OOM killer's measure, with `pt_pages`).
    pub rss: u64,
    /// Page-table pages of its address space (Linux's `VmPTE`), published
    /// with `rss`.
    pub pt_pages: u64,
    /// The head of its robust-futex list (`set_robust_list`), 0 for none:
    /// here rather than in [`Task`] because `get_robust_list` may read
    /// another process's. Like Linux's `task_struct::robust_list`, a new
    /// process (fork or clone) starts without one, and exec and exit clear
    /// it.
    robust_list: u64,
    /// The root of its user page table while it has an address space,
    /// published so the deferred split can count a folio's mappings in
    /// every space without touching another process's [`Task`].
    pt_root: Option<PhysAddr>,
    /// The CPUs it may run on (`sched_setaffinity`), a bit per CPU index.
    pub affinity: u64,
    /// The private part.
    task: *mut Task,
    /// Its kernel thread's saved registers while switched out, and whether
    /// a CPU still runs on them: a heap object of its own, written by
    /// `switch_to` through this pointer, so switching never touches the
    /// [`Task`] its thread holds.
    kthread: *mut KThread,
}

// SAFETY: the raw Task pointer is only dereferenced under the rules in the
// module doc (the task's own thread, on one CPU at a time; its reaper once
// that thread is gone); ProcInfo itself is only reached through PROCS's
// lock.
unsafe impl Send for ProcInfo {}

/// A kernel thread's switch state.
struct KThread {
    /// Saved registers while switched out.
    ctx: Context,
    /// True from when a CPU picks the thread until that CPU has switched
    /// away from it and its registers are all in `ctx`.
    on_cpu: AtomicBool,
    /// What the run queues know of it, without the table's lock.
    sched: runq::Sched,
}

/// Every affinity bit: a new process may run on any CPU.
pub const ALL_CPUS: u64 = (1 << MAX_CPUS) - 1;

/// Signal dispositions and mask (recorded; default actions apply).
#[derive(Clone)]
pub struct Signals {
    /// Raw `struct sigaction` per signal (handler, flags, restorer, mask).
    pub actions: [[u64; 4]; Signal::MAX as usize],
    /// Blocked signals.
    pub mask: u64,
}

/// The private part of a thread.
pub struct Task {
    /// Its tid (the process's pid for the group's leader).
    pub pid: Pid,
    /// Its process (thread group): the leader's tid.
    pub tgid: Pid,
    /// The user address space, shared with the other threads of the
    /// process (None only while being torn down).
    pub mm: Option<Arc<Mm>>,
    /// User registers.
    pub uctx: UserContext,
    /// Its kernel stack, owned here so that it is freed (unmapped, then
    /// its frames released) when the reaper drops the task.
    _kstack: KernelStack,
    /// Open files: the process's table (shared with the threads made
    /// with `CLONE_FILES`).
    pub files: files::Files,
    /// `CLONE_CHILD_CLEARTID` / `set_tid_address`: zeroed at exit.
    pub clear_child_tid: u64,
    /// `CLONE_CHILD_SETTID`: the child writes its tid here when it first runs.
    pub set_child_tid: u64,
    /// Resource limits set with `prlimit64` (soft, hard) by resource.
    pub rlimits: [(u64, u64); 16],
    /// Made with `CLONE_VFORK`: set (and the parent woken) when it execs
    /// or exits ([`vfork_release`]).
    pub vfork_done: Option<Arc<AtomicBool>>,
}

/// The table (the run queues are per CPU: `runq.rs`).
pub struct Table {
    procs: BTreeMap<Pid, ProcInfo>,
    next_pid: Pid,
    /// Sleeping processes by deadline (each in `State::Sleep` or
    /// `State::Blocked` with that deadline): a switch wakes the due ones
    /// without scanning the table.
    sleepers: BTreeSet<(u64, Pid)>,
    /// Threads blocked on a key, in arrival order, with the bits a wake
    /// must match (futex bitsets; `u32::MAX` for every other wait).
    waitq: BTreeMap<WaitKey, VecDeque<(Pid, u32)>>,
    /// Threads (not leaders) that exited and wait for the kernel to free
    /// them ([`reap_threads`]): no parent collects a thread.
    dead: Vec<Pid>,
}

/// What a blocked thread waits on: a user address of one address space
/// (a futex), or the space's lock (`addr` = `u64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaitKey {
    /// The address space ([`Mm::id`]).
    pub space: u64,
    /// The address.
    pub addr: u64,
}

impl Table {
    /// Every published page-table root, each once: a process made with
    /// `CLONE_VM` (vfork) publishes the root it shares with its parent.
    pub(super) fn live_roots(&self) -> Vec<PhysAddr> {
        let mut roots: Vec<PhysAddr> = self.procs.values().filter_map(|p| p.pt_root).collect();
        roots.sort_unstable();
        roots.dedup();
        roots
    }

    /// A pid for a new process: the next one after the last handed out,
    /// never one in the table (zombies included: their parent has yet to
    /// collect them by that pid), wrapping from [`PID_MAX`] to
    /// [`PID_WRAP_TO`] as Linux does.
    fn alloc_pid(&mut self) -> Pid {
        let pid = next_free_pid(self.next_pid, |p| self.procs.contains_key(&p));
        self.next_pid = pid + 1;
        pid
    }
}

/// The first pid from `from` on (wrapping from [`PID_MAX`] to
/// [`PID_WRAP_TO`]) that `live` does not claim. There always is one: at
/// most [`MAX_PROCS`] pids are live, far fewer than the range.
fn next_free_pid(from: Pid, live: impl Fn(Pid) -> bool) -> Pid {
    const _: () = assert!(MAX_PROCS < (PID_MAX - PID_WRAP_TO) as usize);
    let mut pid = from;
    loop {
        if pid >= PID_MAX {
            pid = PID_WRAP_TO;
        }
        if !live(pid) {
            return pid;
        }
        pid += 1;
    }
}

/// The process table.
pub static PROCS: IrqMutex<Table> = IrqMutex::new(Table {
    procs: BTreeMap::new(),
    next_pid: INIT_PID,
    sleepers: BTreeSet::new(),
    waitq: BTreeMap::new(),
    dead: Vec::new(),
});

/// Set while [`Table::dead`] may hold threads to free: checked without
/// the lock on every return to user mode.
static DEAD_THREADS: AtomicBool = AtomicBool::new(false);

/// Bumped whenever a fatal signal is recorded for any process, so a
/// thread returning to user mode looks its own up (under the table lock)
/// only when something may have changed: the syscall path takes no lock.
static KILL_EPOCH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Bumped by every [`publish_rss`] in the middle of an operation, so the
/// task loop publishes the final figure even if it equals the one it
/// published before.
static RSS_EPOCH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Each CPU's idle thread's saved context.
struct IdleContext(core::cell::UnsafeCell<Context>);
// SAFETY: CPU i's is touched only by `switch_away` on CPU i (an idle
// thread never moves), with interrupts masked.
unsafe impl Sync for IdleContext {}
static IDLE: [IdleContext; MAX_CPUS] =
    [const { IdleContext(core::cell::UnsafeCell::new(Context::empty())) }; MAX_CPUS];

/// Per CPU: the `on_cpu` flag of the thread it is switching away from,
/// cleared by [`finish_switch`] once the switch is done (null: none, or
/// the idle thread, which no other CPU runs).
static SWITCHED_FROM: [AtomicPtr<AtomicBool>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Switches from one thread to another, on every CPU.
static SWITCHES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The run queues' locks' contention, all CPUs together.
pub fn runq_contention() -> (u64, u64) {
    runq::contention()
}

/// Switches from one thread to another so far, on every CPU.
pub fn switches() -> u64 {
    SWITCHES.load(Ordering::Relaxed)
}

/// Set when CPU 0 enters its idle loop after the self-tests: from then on
/// the other CPUs run processes too.
static SCHEDULING: AtomicBool = AtomicBool::new(false);

impl Table {
    /// What this CPU runs.
    fn current(&self) -> Option<Pid> {
        runq::current()
    }

    /// The CPU running `pid`, if one does.
    fn cpu_of(&self, pid: Pid) -> Option<usize> {
        runq::cpu_of(pid)
    }

    /// The leader of `pid`'s thread group (`pid` itself if unknown).
    fn leader(&self, pid: Pid) -> Pid {
        self.procs.get(&pid).map_or(pid, |p| p.tgid)
    }

    /// Every thread of `tgid`'s group, the leader first.
    fn group(&self, tgid: Pid) -> Vec<Pid> {
        let mut all = alloc::vec![tgid];
        if let Some(l) = self.procs.get(&tgid) {
            all.extend_from_slice(&l.threads);
        }
        all
    }

    /// The earliest sleeper's deadline (`u64::MAX`: nobody sleeps).
    fn next_deadline(&self) -> u64 {
        self.sleepers.first().map_or(u64::MAX, |&(d, _)| d)
    }

    /// Makes `pid` runnable in the table and queues it (at the front:
    /// `front`), unless it already was runnable or its CPU still runs it
    /// (`runq::wake_up`). The other direction is
    /// [`ProcInfo::leave_runnable`], by the thread itself.
    fn make_state_runnable(&mut self, pid: Pid, front: bool) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.state == State::Runnable {
            return;
        }
        p.state = State::Runnable;
        p.kt().sched.set_runnable(true);
        runq::wake_up(p.kthread, front);
    }
}

/// The running process's pid (None in the idle thread).
pub fn current_pid() -> Option<Pid> {
    PROCS.lock().current()
}

/// The running process's private part.
///
/// # Safety
///
/// Called by the running process's own kernel thread; the reference must
/// not be held across [`schedule`] while someone else could reap or fork
/// this task (they can't: only its parent reaps it, after it is dead).
pub unsafe fn current_task<'a>() -> &'a mut Task {
    let t = {
        let g = PROCS.lock();
        g.current().and_then(|p| g.procs.get(&p).map(|i| i.task))
    };
    let t = t.unwrap_or_else(|| panic!("current_task outside a process"));
    // SAFETY: the caller is that task's own thread (see above).
    unsafe { &mut *t }
}

impl Signals {
    /// Every signal at its default action, nothing blocked.
    pub const fn default() -> Signals {
        Signals {
            actions: [[0; 4]; Signal::MAX as usize],
            mask: 0,
        }
    }

    fn action(&self, sig: Signal) -> &[u64; 4] {
        &self.actions[sig.0 as usize - 1]
    }

    fn ignored(&self, sig: Signal) -> bool {
        self.action(sig)[0] == SIG_IGN
    }

    fn blocked(&self, sig: Signal) -> bool {
        !sig.is_unblockable() && self.mask & bit(sig) != 0
    }
}

/// `SIG_IGN` as a handler value.
const SIG_IGN: u64 = 1;
/// `SA_NOCLDWAIT`: children of this process are reaped automatically.
const SA_NOCLDWAIT: u64 = 2;

fn bit(sig: Signal) -> u64 {
    1 << (sig.0 - 1)
}

impl Task {
    fn new(pid: Pid, mm: Arc<Mm>, uctx: UserContext, kstack: KernelStack) -> Box<Task> {
        Box::new(Task {
            pid,
            tgid: pid,
            mm: Some(mm),
            uctx,
            _kstack: kstack,
            files: files::Files::console(),
            clear_child_tid: 0,
            set_child_tid: 0,
            rlimits: files::default_rlimits(),
            vfork_done: None,
        })
    }

    /// Its address space, locked (None once it has none).
    pub fn space(&self) -> Option<MmGuard> {
        self.mm.as_ref().map(|m| m.lock(self.pid))
    }

    /// Its address space, locked for reading beside its sibling threads'
    /// faults (None once it has none).
    pub fn space_read(&self) -> Option<MmReadGuard> {
        self.mm.as_ref().map(|m| m.read(self.pid))
    }

    /// Resolves a fault at `va` under the shared side of its address
    /// space's lock, beside its sibling threads' faults.
    pub fn fault(
        &self,
        va: u64,
        access: folium_mm::aspace::Access,
    ) -> folium_mm::aspace::FaultResult {
        let Some(space) = self.space_read() else {
            return Err(folium_mm::aspace::FaultError::Unmapped);
        };
        let asid = space.asid();
        space.handle_fault_shared(&mut KernelEnv, folium_mm::VirtAddr::new(va), access, asid)
    }

    /// Installs its address space as this CPU's user half (or the empty
    /// one if it has none).
    fn activate(&self) {
        match &self.mm {
            Some(m) => m.activate(),
            None => uspace::deactivate(),
        }
    }

    /// The root of its page table, if it has an address space.
    pub fn root(&self) -> Option<PhysAddr> {
        self.mm.as_ref().map(|m| m.root())
    }
}

/// The kernel thread a new task starts as.
fn new_kthread(task: &Task, pid: Pid, affinity: u64) -> *mut KThread {
    Box::into_raw(Box::new(KThread {
        ctx: Context::new(task._kstack.top(), task_main, u64::from(pid)),
        on_cpu: AtomicBool::new(false),
        sched: runq::Sched::new(pid, affinity),
    }))
}

/// Creates the first process running `program` with `argv`; returns its pid.
pub fn spawn_init(program: &exec::Program, argv: &[&[u8]]) -> Result<Pid, Errno> {
    runq::reserve();
    let kstack = KernelStack::new().ok_or(Errno::ENOMEM)?;
    let mut space = uspace::new_space().map_err(|_| Errno::ENOMEM)?;
    let env = stack::join(&[b"HOME=/", b"TERM=linux"]);
    let argv = stack::join(argv);
    let (Some(argv), Some(env)) = (Strings::new(&argv), Strings::new(&env)) else {
        return Err(Errno::EINVAL);
    };
    let start = match exec::load(&mut space, program, argv, env) {
        Ok(s) => s,
        Err(e) => {
            space.teardown(&mut KernelEnv);
            return Err(e);
        }
    };
    let pid = PROCS.lock().alloc_pid();
    let task = Task::new(
        pid,
        Mm::new(space),
        UserContext::new(start.entry, start.sp),
        kstack,
    );
    let affinity = ALL_CPUS;
    let mut t = PROCS.lock();
    t.procs.insert(
        pid,
        ProcInfo::new(
            task,
            0,
            Signals::default(),
            String::from(program.name),
            affinity,
        ),
    );
    if let Some(p) = t.procs.get(&pid) {
        runq::place_new(p.kthread);
    }
    Ok(pid)
}

/// Resident pages a thread's space may gain or lose before the thread
/// publishes the new figure in the table on its way back to user mode
/// (the OOM killer's measure): Linux folded its per-task RSS counters
/// into the mm every 64 events (`TASK_RSS_EVENTS_THRESH`) for the same
/// reason, a shared line touched on every fault.
const RSS_PUBLISH_STEP: u64 = 64;

/// The body of every process's kernel thread.
extern "C" fn task_main(pid: u64) -> ! {
    let pid = pid as Pid;
    // SAFETY: this thread is `pid`'s own (see module doc); this is the one
    // reference to its Task the thread makes, passed down from here.
    let task = unsafe { current_task() };
    debug_assert_eq!(task.pid, pid);
    // A thread installs its own address space (here, and when `schedule`
    // returns to it): no other thread touches this Task.
    task.activate();
    // Its first run starts here, not in `switch_away`: finish the switch.
    finish_switch();
    let mut published = (0, 0);
    let mut seen_epoch = u64::MAX;
    let mut seen_rss_epoch = 0;
    if task.set_child_tid != 0 {
        let at = task.set_child_tid;
        let _ = crate::uaccess::write_u32(task, at, pid);
    }
    loop {
        // Between two returns to user mode nothing is half done: the
        // place to stop for a CPU that reads other spaces.
        crate::smp::park_if_asked();
        if DEAD_THREADS.load(Ordering::Acquire) {
            reap_threads();
        }
        // SeqCst, against the killer's bump and this CPU's record of
        // running this thread (`kick_running`).
        let epoch = KILL_EPOCH.load(core::sync::atomic::Ordering::SeqCst);
        if epoch != seen_epoch {
            seen_epoch = epoch;
            // `task.pid`, not the thread's first tid: an exec from a
            // thread other than the leader gives it the leader's.
            if let Some(status) = pending_kill(task.pid) {
                exit_current(task, status);
            }
            if stop_if_asked(task) {
                // Stopped, then continued or killed: look again.
                seen_epoch = u64::MAX;
                continue;
            }
        }
        // A preemption point that had no `&mut Task` to hand
        // (`preempt`) resumes with the empty user half: install ours again
        // before user code runs.
        if let Some(m) = &task.mm
            && arch::user_root().0 != m.root()
        {
            m.activate();
        }
        match arch::run_user(&mut task.uctx) {
            UserExit::Syscall => crate::syscall::dispatch(task),
            UserExit::Interrupt => {}
            UserExit::Fault(f) => fault::handle(task, f),
        }
        // Skipped while another thread works on the space: it publishes.
        let usage = task.mm.as_ref().map_or(Some((0, 0)), |m| m.try_usage());
        // A long operation may have published a figure of its own
        // midway (`publish_rss`): then publish again whatever it is.
        // Otherwise only a change of [`RSS_PUBLISH_STEP`] pages or more
        // (or of the tables) is: each publish takes the table's lock,
        // which threads faulting in parallel would otherwise take after
        // every fault.
        let rss_epoch = RSS_EPOCH.load(core::sync::atomic::Ordering::Relaxed);
        if let Some(usage) = usage
            && (usage.0.abs_diff(published.0) >= RSS_PUBLISH_STEP
                || usage.1 != published.1
                || rss_epoch != seen_rss_epoch)
        {
            published = usage;
            seen_rss_epoch = rss_epoch;
            if let Some(p) = PROCS.lock().procs.get_mut(&task.tgid) {
                (p.rss, p.pt_pages) = usage;
            }
        }
        if crate::sched::take_need_resched() {
            yield_now(task);
        }
    }
}

/// Acts on a stop signal sent to `task`: it stops (its parent is told and
/// woken) until SIGCONT or SIGKILL. Returns whether it stopped.
fn stop_if_asked(task: &mut Task) -> bool {
    {
        let mut t = PROCS.lock();
        let Some(p) = t.procs.get_mut(&task.pid) else {
            return false;
        };
        let Some(sig) = p.stop.take() else {
            return false;
        };
        if p.kill.is_some() {
            return false;
        }
        p.leave_runnable(State::Stopped);
        // The process's stop is reported once, on its leader.
        let tgid = p.tgid;
        if let Some(l) = t.procs.get_mut(&tgid) {
            l.report = Some(0x7f | u32::from(sig.0) << 8);
            let ppid = l.ppid;
            wake_waiters(&mut t, ppid);
        }
    }
    schedule(Some(task));
    true
}

fn pending_kill(pid: Pid) -> Option<ExitStatus> {
    PROCS.lock().procs.get(&pid).and_then(|p| p.kill)
}

/// Wakes sleepers whose deadline passed (called by the scheduler) and
/// puts them at the head of the run queue, as Linux's CFS favours a task
/// that slept (its virtual runtime is behind the CPU hogs'): a timed
/// wake-up waits for the running task's next preemption point, not for
/// every runnable task's slice. Records the next deadline for the tick.
fn wake_sleepers(t: &mut Table, now: u64) {
    let mut woken = Vec::new();
    while let Some(&(until_ns, pid)) = t.sleepers.first() {
        if until_ns > now {
            break;
        }
        t.sleepers.pop_first();
        if t.procs.get(&pid).and_then(ProcInfo::deadline) == Some(until_ns) {
            woken.push(pid);
        }
    }
    // At the front of their queues, in deadline order.
    for &pid in woken.iter().rev() {
        t.make_state_runnable(pid, true);
    }
    crate::sched::set_next_wake(t.next_deadline());
}

impl ProcInfo {
    /// A runnable new thread's entry for `task` (its tid and group come
    /// from it; a leader's entry publishes the space's root), owning the
    /// task and a fresh kernel thread.
    fn new(task: Box<Task>, ppid: Pid, signals: Signals, name: String, affinity: u64) -> ProcInfo {
        let pid = task.pid;
        ProcInfo {
            tgid: task.tgid,
            threads: Vec::new(),
            ppid,
            children: Vec::new(),
            state: State::Runnable,
            kill: None,
            stop: None,
            report: None,
            signals,
            pending: 0,
            name,
            rss: 0,
            pt_pages: 0,
            robust_list: 0,
            pt_root: if pid == task.tgid { task.root() } else { None },
            affinity,
            kthread: new_kthread(&task, pid, affinity),
            task: Box::into_raw(task),
        }
    }

    /// Its kernel thread.
    fn kt(&self) -> &KThread {
        // SAFETY: a thread in the table has a live KThread (freed only
        // once the thread is out of the table).
        unsafe { &*self.kthread }
    }

    /// Sets a state other than `Runnable`: the running thread blocks,
    /// stops or exits (its CPU then does not queue it again).
    fn leave_runnable(&mut self, state: State) {
        debug_assert!(state != State::Runnable);
        self.state = state;
        self.kt().sched.set_runnable(false);
    }

    /// The deadline it sleeps or waits until, if any.
    fn deadline(&self) -> Option<u64> {
        match self.state {
            State::Sleep { until_ns } => Some(until_ns),
            State::Blocked { until_ns, .. } if until_ns != u64::MAX => Some(until_ns),
            _ => None,
        }
    }
}

/// Makes `pid` runnable if a signal may end what it waits for (a
/// sleep, a wait for a child, a stop, a killable wait on a queue) and
/// queues it.
fn wake(t: &mut Table, pid: Pid) {
    if t.procs.get(&pid).is_some_and(|p| {
        matches!(
            p.state,
            State::WaitChild
                | State::Sleep { .. }
                | State::Stopped
                | State::Blocked { killable: true, .. }
        )
    }) {
        make_runnable(t, pid);
    }
}

/// Wakes the threads of process `tgid` waiting for a child (`wait4` may
/// be called by any of them).
fn wake_waiters(t: &mut Table, tgid: Pid) {
    for tid in t.group(tgid) {
        if t.procs
            .get(&tid)
            .is_some_and(|p| p.state == State::WaitChild)
        {
            make_runnable(t, tid);
        }
    }
}

/// Makes blocked `pid` runnable, whatever it waits for, and queues it.
fn make_runnable(t: &mut Table, pid: Pid) {
    if let Some(p) = t.procs.get_mut(&pid)
        && !matches!(p.state, State::Runnable | State::Zombie(_))
    {
        let slept = p.deadline();
        if let Some(until_ns) = slept {
            t.sleepers.remove(&(until_ns, pid));
            // The tick's deadline follows, so idle CPUs do not wake for
            // a sleeper that is gone.
            crate::sched::set_next_wake(t.next_deadline());
        }
        t.make_state_runnable(pid, false);
    }
}

/// Gives the CPU to the next runnable process (or the idle thread), and
/// returns when this thread is scheduled again. The current process must
/// already have recorded why it stops (Runnable to yield, a blocked state,
/// or Zombie, in which case this never returns). `me` is the caller's own
/// task (None in the idle thread or a dying one): its address space is
/// installed again when the thread resumes.
pub fn schedule(me: Option<&mut Task>) {
    if !switch_away() {
        return;
    }
    // Back on this thread: install its user half (or none for idle),
    // then let go of the thread this CPU left.
    match me {
        Some(t) => t.activate(),
        None => uspace::deactivate(),
    }
    finish_switch();
}

/// [`schedule`] without the user half: switches to the next runnable
/// thread if that is another one, and returns true when this one runs
/// again (whatever user half that left installed, on whichever CPU),
/// false if it kept the CPU. On true, the caller installs its user half
/// (or the empty one), then calls [`finish_switch`]: until then the
/// thread this CPU left may still have its tables installed here, so no
/// other CPU may run it yet.
fn switch_away() -> bool {
    let cpu = crate::smp::id();
    // Sleepers whose deadline passed go to the run queues first (the
    // table's lock only then: a switch takes only this CPU's queue).
    if crate::sched::sleeper_due() {
        wake_sleepers(&mut PROCS.lock(), crate::time::monotonic_ns());
    }
    let (prev, next) = runq::pick_next(cpu);
    if prev == next {
        return false;
    }
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    let idle = IDLE[cpu].0.get();
    uspace::switching_threads();
    // The lock is released: switch. Only the two threads' KThread objects
    // are touched, never their Tasks.
    // SAFETY: both kernel threads are live (a KThread is freed only when
    // its process is reaped, after its thread stopped running for good,
    // which the reaper checks through `on_cpu`); `prev` is this thread's,
    // `next` one that was switched out (by this CPU or another: then the
    // wait below lets that CPU finish saving it) or never started.
    unsafe {
        let next_ctx: *const Context = match next {
            Some(k) => {
                while (*k).on_cpu.load(Ordering::Acquire) {
                    crate::smp::run_posted_calls();
                    core::hint::spin_loop();
                }
                // Release: a waker that finds the flag set finds the
                // CPU it names (`runq::Sched::last_cpu`) too.
                (*k).on_cpu.store(true, Ordering::Release);
                &raw const (*k).ctx
            }
            None => idle,
        };
        let prev_ctx: *mut Context = match prev {
            Some(k) => {
                SWITCHED_FROM[cpu].store(&raw mut (*k).on_cpu, Ordering::Relaxed);
                &raw mut (*k).ctx
            }
            None => idle,
        };
        arch::switch_to(prev_ctx, next_ctx);
    }
    true
}

/// Completes a switch on the thread that now runs: the thread this CPU
/// left has all its registers saved, so another CPU may resume it (or its
/// reaper free it). Runs first thing after `switch_to` returns, and at a
/// new thread's start.
fn finish_switch() {
    let from = SWITCHED_FROM[crate::smp::id()].swap(core::ptr::null_mut(), Ordering::Relaxed);
    if !from.is_null() {
        // SAFETY: the flag of a live KThread (its reaper waits for this
        // store before freeing it).
        unsafe { (*from).store(false, Ordering::Release) };
    }
}

/// A preemption point without the caller's [`Task`] (Linux
/// `cond_resched`): takes a pending timer tick (a brief interrupt
/// window), and if a reschedule is due, lets the next runnable process
/// run, returning true when this one runs again. The current process
/// stays runnable throughout. The user half is then the empty one
/// ([`task_main`] installs the process's own before returning to user
/// mode, and [`uspace::cond_resched_space`] at once): the caller must
/// not touch user memory afterwards, or use [`cond_resched`].
///
/// Context: called by a process's kernel thread (a no-op in the idle
/// thread or at boot) holding no lock ([`IrqMutex`]: checked), with
/// everything other processes may read consistent: the page tables
/// behind every published root, folio counts, the table itself.
pub fn preempt() -> bool {
    if runq::current().is_none() {
        return false;
    }
    assert!(
        crate::sync::held() == 0,
        "preemption point with {} lock(s) held",
        crate::sync::held()
    );
    arch::irq_window();
    crate::smp::park_if_asked();
    if !crate::sched::take_need_resched() || !switch_away() {
        return false;
    }
    uspace::deactivate();
    finish_switch();
    true
}

/// Gives the CPU to the next runnable thread whether or not the slice is
/// used up (a [`preempt`] without the tick): true if another ran, false
/// if none was runnable or this is the idle thread. The same contract as
/// [`preempt`] (no lock held, the user half left empty).
pub fn yield_away() -> bool {
    if runq::current().is_none() {
        return false;
    }
    assert!(
        crate::sync::held() == 0,
        "yield with {} lock(s) held",
        crate::sync::held()
    );
    if !switch_away() {
        return false;
    }
    uspace::deactivate();
    finish_switch();
    true
}

/// A preemption point ([`preempt`]) for code that holds its own task
/// `me`: its address space is installed again when it resumes. True if
/// it gave up the CPU.
pub fn cond_resched(me: &mut Task) -> bool {
    if !preempt() {
        return false;
    }
    if let Some(m) = &me.mm {
        m.activate();
    }
    true
}

/// True if the current process has been sent a fatal signal (Linux
/// `fatal_signal_pending`): long work on its behalf stops early, since it
/// will die on its way back to user mode.
pub fn fatal_signal_pending() -> bool {
    let t = PROCS.lock();
    t.current()
        .and_then(|p| t.procs.get(&p))
        .is_some_and(|p| p.kill.is_some())
}

/// Puts the current process `me` at the back of the run queue.
pub fn yield_now(me: &mut Task) {
    schedule(Some(me));
}

/// The idle loop of the boot thread: runs processes until none is left.
/// From here on the other CPUs run processes too.
pub fn idle_loop() -> ! {
    SCHEDULING.store(true, Ordering::Release);
    for cpu in crate::smp::online().filter(|&c| c != 0) {
        let _ = crate::smp::send_ipi(cpu);
    }
    loop {
        schedule(None);
        if PROCS.lock().procs.is_empty() {
            // Only reached if init never existed; init's exit powers off.
            crate::arch::exit_qemu(crate::arch::Exit::Failure);
        }
        idle_wait();
    }
}

/// One round of a secondary CPU's idle thread: runs processes once CPU 0
/// has started them, then sleeps until an interrupt if nothing is left to
/// run here. `job` runs work handed to the idle thread (self-tests).
pub fn secondary_idle(job: fn()) {
    job();
    if SCHEDULING.load(Ordering::Acquire) {
        schedule(None);
    }
    idle_wait();
}

/// Sleeps until an interrupt if this CPU has nothing to run, as one of
/// the idle CPUs a wake-up kicks; then stops if another CPU asked.
fn idle_wait() {
    if DEAD_THREADS.load(Ordering::Acquire) {
        reap_threads();
    }
    let cpu = crate::smp::id();
    let sleep = !runq::idle_or_work(cpu);
    // A wake-up between the look and the wait leaves its IPI pending,
    // which ends the wait at once. Ticks and other interrupts wake the
    // CPU too: it sleeps on unless it was kicked, another CPU's queue
    // has threads waiting (then it looks for one it may take), a sleeper
    // is due, a job was posted or another CPU stops the machine.
    if sleep {
        loop {
            arch::wait_for_interrupt();
            crate::smp::park_if_asked();
            if runq::idle_should_wake(cpu)
                || crate::sched::sleeper_due()
                || crate::smp::job_posted()
            {
                break;
            }
        }
        runq::idle_end(cpu);
    }
    crate::smp::park_if_asked();
}

/// Blocks the current process in `state` until woken; returns false if it
/// was woken by a fatal signal (the caller returns EINTR and the task loop
/// then exits).
pub fn block(me: &mut Task, state: State) -> bool {
    block_holding(Some(me), PROCS.lock(), state)
}

/// [`block`] with the table's lock already held (`t`), taken by a caller
/// that checked its condition under it: a wake-up that comes after the
/// check then finds the new state, where with the lock dropped in between
/// another CPU could wake the process before it blocked, and the wake-up
/// would be lost (Linux sets the task state before checking the
/// condition, `prepare_to_wait`, for the same reason).
fn block_holding(
    me: Option<&mut Task>,
    t: crate::sync::IrqMutexGuard<'_, Table>,
    state: State,
) -> bool {
    {
        let mut guard = t;
        let t = &mut *guard;
        let Some(pid) = t.current() else {
            return true;
        };
        let Some(p) = t.procs.get_mut(&pid) else {
            return true;
        };
        let killable = !matches!(
            state,
            State::Blocked {
                killable: false,
                ..
            }
        );
        if killable && p.kill.is_some() {
            return false;
        }
        p.leave_runnable(state);
        if let Some(until_ns) = p.deadline() {
            t.sleepers.insert((until_ns, pid));
            crate::sched::note_sleeper(until_ns);
        }
    }
    match me {
        Some(me) => {
            schedule(Some(&mut *me));
            // A stop signal wakes a sleeper (Linux's signal_wake_up): it
            // stops here, and once continued its caller finds the
            // condition it waits for unchanged and blocks again (a sleep
            // goes on to its deadline, as Linux restarts nanosleep).
            stop_if_asked(me);
        }
        None => schedule(None),
    }
    current_pid().and_then(pending_kill).is_none()
}

/// How a wait on a queue ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The condition did not hold: it never blocked.
    NotBlocked,
    /// A wake on its key took it off the queue.
    Woken,
    /// Its deadline passed first.
    TimedOut,
    /// A signal ended the wait (a fatal one, or a stop and continue):
    /// the caller looks at its condition again or gives up.
    Interrupted,
}

/// Blocks the running thread on `key` (matching wakes whose bits meet
/// `bits`) until woken, until `until_ns` (`u64::MAX`: never), or, if
/// `killable`, until a signal interrupts it; but only if `still`, run
/// under the table's lock the queue is changed under, says the condition
/// holds (so a wake after that look finds the thread queued: no wake-up
/// is lost). Afterwards the user half is `me`'s, or, without `me` (the
/// address-space lock, which has no task at hand), `mm`'s.
pub fn wait_on_key(
    me: Option<&mut Task>,
    mm: &Mm,
    key: WaitKey,
    bits: u32,
    until_ns: u64,
    killable: bool,
    still: impl FnOnce() -> bool,
) -> WaitEnd {
    let mut t = PROCS.lock();
    let Some(tid) = t.current() else {
        return WaitEnd::NotBlocked;
    };
    if !still() {
        return WaitEnd::NotBlocked;
    }
    t.waitq.entry(key).or_default().push_back((tid, bits));
    let has_task = me.is_some();
    let not_killed = block_holding(me, t, State::Blocked { until_ns, killable });
    if !has_task {
        mm.activate();
    }
    let me = tid;
    let mut t = PROCS.lock();
    // Still queued (on `key`, or wherever a requeue moved it): not woken
    // by a wake.
    let mut queued = None;
    let mut emptied = None;
    for (k, q) in t.waitq.iter_mut() {
        if let Some(i) = q.iter().position(|&(tid, _)| tid == me) {
            queued = q.remove(i);
            if q.is_empty() {
                emptied = Some(*k);
            }
            break;
        }
    }
    if let Some(k) = emptied {
        t.waitq.remove(&k);
    }
    match queued {
        None => WaitEnd::Woken,
        Some(_) if !not_killed => WaitEnd::Interrupted,
        Some(_) if until_ns != u64::MAX && crate::time::monotonic_ns() >= until_ns => {
            WaitEnd::TimedOut
        }
        Some(_) => WaitEnd::Interrupted,
    }
}

/// Wakes up to `n` threads blocked on `key` whose bits meet `bits`, in
/// arrival order; how many it woke.
pub fn wake_key(key: WaitKey, n: u32, bits: u32) -> u32 {
    let mut t = PROCS.lock();
    wake_key_locked(&mut t, key, n, bits)
}

fn wake_key_locked(t: &mut Table, key: WaitKey, n: u32, bits: u32) -> u32 {
    let mut woken = Vec::new();
    if let Some(q) = t.waitq.get_mut(&key) {
        let mut i = 0;
        while i < q.len() && (woken.len() as u32) < n {
            if q[i].1 & bits != 0 {
                if let Some((tid, _)) = q.remove(i) {
                    woken.push(tid);
                }
            } else {
                i += 1;
            }
        }
        if q.is_empty() {
            t.waitq.remove(&key);
        }
    }
    for &tid in &woken {
        // Taken off the queue whatever it does now; made runnable only if
        // it still waits there (one stopped meanwhile stays stopped).
        if t.procs
            .get(&tid)
            .is_some_and(|p| matches!(p.state, State::Blocked { .. }))
        {
            make_runnable(t, tid);
        }
    }
    woken.len() as u32
}

/// Wakes up to `n_wake` threads blocked on `from` and moves up to
/// `n_move` more to `to` (Linux's futex requeue); how many it woke and
/// moved. `check`, run first under the lock, may refuse (the futex word
/// changed).
pub fn requeue(
    from: WaitKey,
    to: WaitKey,
    n_wake: u32,
    n_move: u32,
    check: impl FnOnce() -> Result<(), Errno>,
) -> Result<u32, Errno> {
    let mut t = PROCS.lock();
    check()?;
    let woken = wake_key_locked(&mut t, from, n_wake, u32::MAX);
    let mut moved = 0;
    if from != to {
        let mut taken = VecDeque::new();
        if let Some(q) = t.waitq.get_mut(&from) {
            while moved < n_move {
                let Some(w) = q.pop_front() else { break };
                taken.push_back(w);
                moved += 1;
            }
            if q.is_empty() {
                t.waitq.remove(&from);
            }
        }
        if !taken.is_empty() {
            t.waitq.entry(to).or_default().extend(taken);
        }
    }
    Ok(woken + moved)
}

/// Ends the running thread, `task` (`exit`; `exit_group` and fatal
/// signals end every thread of its process, each through here). The last
/// thread out tears the address space down; when the whole process is
/// gone (the leader dead, no thread left), its parent is told.
pub fn exit_current(task: &mut Task, status: ExitStatus) -> ! {
    let pid = task.pid;
    let tgid = task.tgid;
    // What it wakes from here on (a joiner, its parent) takes this CPU.
    runq::note_exiting();
    if task.clear_child_tid != 0 {
        // `pthread_join` waits on this word: zeroed, then woken.
        let at = task.clear_child_tid;
        if crate::uaccess::write_u32(task, at, 0).is_ok() {
            futex::wake_address(task, at, 1);
        }
    }
    futex::exit_robust_list(task);
    set_robust_list(pid, 0);
    task.files.release();
    if let Some(mm) = task.mm.take() {
        // This CPU stops using the tables first.
        uspace::deactivate();
        if let Some(space) = mm::release(mm) {
            // The last user: withdraw the published root, then free.
            withdraw_root(space.root());
            space.teardown(&mut KernelEnv);
        }
    }
    vfork_release(task);
    let group_status = {
        let mut t = PROCS.lock();
        if let Some(p) = t.procs.get_mut(&pid) {
            p.leave_runnable(State::Zombie(status));
        }
        if pid != tgid {
            if let Some(l) = t.procs.get_mut(&tgid) {
                l.threads.retain(|&x| x != pid);
            }
            t.dead.push(pid);
            DEAD_THREADS.store(true, Ordering::Release);
        }
        let done = match t.procs.get(&tgid) {
            Some(l) if l.threads.is_empty() => match l.state {
                State::Zombie(s) => Some(s),
                _ => None,
            },
            _ => None,
        };
        // Under the same hold as the last thread's exit: a parent must
        // not reap the process before its children have moved to init.
        if done.is_some() && tgid != INIT_PID {
            group_exited(&mut t, tgid);
        }
        // The process is over: it no longer names a space another
        // process (CLONE_VM) may still run in.
        if done.is_some()
            && let Some(l) = t.procs.get_mut(&tgid)
        {
            l.pt_root = None;
        }
        done
    };
    if let Some(s) = group_status
        && tgid == INIT_PID
    {
        let code = match s {
            ExitStatus::Exited(c) => u32::from(c),
            ExitStatus::Signaled { signal, .. } => 128 + u32::from(signal.0),
        };
        println!("folium: init exited with status {code}, powering off");
        crate::arch::exit_qemu(if code == 0 {
            crate::arch::Exit::Success
        } else {
            crate::arch::Exit::Failure
        });
    }
    schedule(None);
    unreachable!("a zombie was scheduled");
}

/// Process `tgid` is gone (its last thread exited): its children go to
/// init, and its parent is told (or, if the parent ignores SIGCHLD, init
/// reaps it instead).
fn group_exited(t: &mut Table, tgid: Pid) {
    // Orphans go to init, which reaps them.
    let children = t
        .procs
        .get_mut(&tgid)
        .map(|p| core::mem::take(&mut p.children))
        .unwrap_or_default();
    let mut zombie_child = false;
    for c in &children {
        if let Some(ci) = t.procs.get_mut(c) {
            ci.ppid = INIT_PID;
            zombie_child |= matches!(ci.state, State::Zombie(_));
        }
    }
    if let Some(init) = t.procs.get_mut(&INIT_PID) {
        init.children.extend(children);
    }
    if zombie_child {
        wake_waiters(t, INIT_PID);
    }
    let ppid = t.procs.get(&tgid).map_or(0, |p| p.ppid);
    // A parent that ignores SIGCHLD (or set SA_NOCLDWAIT) never sees
    // its children's exit: they are reaped for it (by init, here).
    let autoreap = t.procs.get(&ppid).is_some_and(|pp| {
        let a = pp.signals.action(Signal::SIGCHLD);
        a[0] == SIG_IGN || a[1] & SA_NOCLDWAIT != 0
    });
    if autoreap && ppid != INIT_PID {
        if let Some(pp) = t.procs.get_mut(&ppid) {
            pp.children.retain(|&c| c != tgid);
        }
        if let Some(init) = t.procs.get_mut(&INIT_PID) {
            init.children.push(tgid);
        }
        if let Some(p) = t.procs.get_mut(&tgid) {
            p.ppid = INIT_PID;
        }
        wake_waiters(t, ppid);
        wake_waiters(t, INIT_PID);
    } else {
        wake_waiters(t, ppid);
    }
}

/// Frees the threads that exited and whose CPUs have switched away from
/// them (no parent reaps a thread: the kernel does, from any thread on
/// its way to user mode and from the idle threads).
fn reap_threads() {
    let mut gone = Vec::new();
    {
        let mut t = PROCS.lock();
        let dead = core::mem::take(&mut t.dead);
        for tid in dead {
            match t.procs.get(&tid) {
                // SAFETY: the KThread lives until the entry is removed.
                Some(p) if unsafe { (*p.kthread).on_cpu.load(Ordering::Acquire) } => {
                    t.dead.push(tid);
                }
                Some(_) => {
                    if let Some(info) = t.procs.remove(&tid) {
                        // SAFETY: as in `reap`: the thread is dead, off
                        // every CPU, and out of the table.
                        let remains = unsafe {
                            Remains {
                                task: Box::from_raw(info.task),
                                kthread: Box::from_raw(info.kthread),
                            }
                        };
                        gone.push(remains);
                    }
                }
                None => {}
            }
        }
        DEAD_THREADS.store(!t.dead.is_empty(), Ordering::Release);
    }
    for r in gone {
        free_remains(r);
    }
}

/// Ends every thread of process `tgid` but `except` with `status` (a
/// fatal signal, or `exit_group`), each at its next kernel exit point;
/// a leader already dead takes the status as the process's.
fn kill_group(t: &mut Table, tgid: Pid, status: ExitStatus, except: Pid) {
    end_threads(t, tgid, status, except, true);
}

/// [`kill_group`]; with `as_process` false (exec ending the other
/// threads), a dead leader keeps its status.
fn end_threads(t: &mut Table, tgid: Pid, status: ExitStatus, except: Pid, as_process: bool) {
    // Bumped before the kicks look where each thread runs (see
    // `kick_running`).
    KILL_EPOCH.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
    for tid in t.group(tgid) {
        if tid == except {
            continue;
        }
        let Some(p) = t.procs.get_mut(&tid) else {
            continue;
        };
        match p.state {
            State::Zombie(_) if tid == tgid && as_process => p.state = State::Zombie(status),
            State::Zombie(_) => {}
            _ if p.kill.is_none() => {
                p.stop = None;
                p.kill = Some(status);
                wake(t, tid);
                kick_running(t, tid);
            }
            _ => {}
        }
    }
}

/// `exit_group`: ends every thread of the caller's process with `code`.
pub fn exit_group(task: &mut Task, code: u8) -> ! {
    end_process(task, ExitStatus::Exited(code))
}

/// Ends the caller's whole process with `status` (`exit_group`, a fatal
/// fault: Linux delivers a fault's signal to the process, whose default
/// action ends every thread).
pub fn end_process(task: &mut Task, status: ExitStatus) -> ! {
    kill_group(&mut PROCS.lock(), task.tgid, status, task.pid);
    exit_current(task, status)
}

/// Ends the other threads of the caller's process (exec, Linux's
/// `de_thread`) and waits until they are gone. A caller other than the
/// leader then becomes the leader: it takes the process's pid, and the
/// old leader's entry (its parent, children, actions, published root)
/// with it, as on Linux. EINTR if the process is killed meanwhile.
pub fn end_other_threads(task: &mut Task) -> Result<(), Errno> {
    let (me, tgid) = (task.pid, task.tgid);
    let alone = {
        let t = PROCS.lock();
        t.procs.get(&tgid).is_none_or(|l| l.threads.is_empty())
    };
    if alone {
        return Ok(());
    }
    let killed = ExitStatus::Signaled {
        signal: Signal::SIGKILL,
        core: false,
    };
    {
        // A thread already ended (by a sibling's exec or exit_group, a
        // fatal signal) does not end the others: the first exec wins.
        let mut t = PROCS.lock();
        if t.procs.get(&me).is_some_and(|p| p.kill.is_some()) {
            return Err(Errno::EINTR);
        }
        end_threads(&mut t, tgid, killed, me, false);
    }
    loop {
        if fatal_signal_pending() {
            return Err(Errno::EINTR);
        }
        let gone = {
            let t = PROCS.lock();
            t.procs.get(&tgid).is_none_or(|l| {
                l.threads.iter().all(|&x| x == me)
                    && (me == tgid
                        || matches!(l.state, State::Zombie(_))
                            // SAFETY: the KThread lives while its entry does.
                            && !unsafe { (*l.kthread).on_cpu.load(Ordering::Acquire) })
            })
        };
        if gone {
            if me != tgid {
                take_over_leader(task);
            }
            return Ok(());
        }
        // A consistent point: no lock held, no operation half done.
        crate::smp::park_if_asked();
        if !yield_away() {
            crate::smp::run_posted_calls();
            core::hint::spin_loop();
        } else {
            task.activate();
        }
    }
}

/// The exec'ing thread `task` (not the leader, which is dead and off its
/// CPU, and the group's only other member) becomes the leader: its entry
/// moves to the leader's pid with what is the process's, and the old
/// leader is freed.
fn take_over_leader(task: &mut Task) {
    let (me, tgid) = (task.pid, task.tgid);
    let remains = {
        let mut t = PROCS.lock();
        let (Some(old), Some(mut mine)) = (t.procs.remove(&tgid), t.procs.remove(&me)) else {
            unreachable!("exec: thread {me} of {tgid} lost its table entries");
        };
        mine.threads = Vec::new();
        mine.ppid = old.ppid;
        mine.children = old.children;
        mine.report = old.report;
        mine.signals.actions = old.signals.actions;
        mine.pending = old.pending;
        mine.rss = old.rss;
        mine.pt_pages = old.pt_pages;
        mine.pt_root = old.pt_root;
        t.procs.insert(tgid, mine);
        if let Some(p) = t.procs.get(&tgid) {
            runq::rename_current(p.kthread, tgid);
        }
        task.pid = tgid;
        // SAFETY: the old leader is dead, off every CPU (checked by the
        // caller under this lock's earlier hold; a zombie never runs
        // again) and out of the table: the last user of both.
        unsafe {
            Remains {
                task: Box::from_raw(old.task),
                kthread: Box::from_raw(old.kthread),
            }
        }
    };
    free_remains(remains);
}

/// What [`reap`] found.
enum Reaped {
    /// The child was dead: its exit status (its entry is gone), and what
    /// is left of it, for the caller to free once it let go of the
    /// table's lock (freeing its kernel stack flushes the TLBs of every
    /// CPU, which no one should wait for behind that lock).
    Dead(ExitStatus, Remains),
    /// The child is dead but its CPU is still switching away from it (its
    /// stack is in use): try again in a moment, without the table's lock,
    /// which that CPU needs to finish.
    Leaving,
    /// The child is alive.
    Alive,
}

/// A reaped process's private part and kernel thread.
struct Remains {
    task: Box<Task>,
    kthread: Box<KThread>,
}

/// Takes a dead child's table entry out; what is left of it is freed by
/// the caller ([`Reaped::Dead`]).
fn reap(t: &mut Table, parent: Pid, child: Pid) -> Reaped {
    let Some(info) = t.procs.get(&child) else {
        return Reaped::Alive;
    };
    let State::Zombie(status) = info.state else {
        return Reaped::Alive;
    };
    // A process is dead once its last thread is.
    if !info.threads.is_empty() {
        return Reaped::Alive;
    }
    // SAFETY: the KThread lives until the entry is removed below.
    if unsafe { (*info.kthread).on_cpu.load(Ordering::Acquire) } {
        return Reaped::Leaving;
    }
    let Some(info) = t.procs.remove(&child) else {
        return Reaped::Alive;
    };
    if let Some(p) = t.procs.get_mut(&parent) {
        p.children.retain(|&c| c != child);
    }
    // SAFETY: the child is dead (its thread never runs again) and removed
    // from the table, so this is the last user of its Task.
    let task = unsafe { Box::from_raw(info.task) };
    // SAFETY: its thread is gone (no CPU is on it, checked above), so
    // nothing switches to or from it again; it came from Box::into_raw in
    // `new_kthread`.
    let kthread = unsafe { Box::from_raw(info.kthread) };
    Reaped::Dead(status, Remains { task, kthread })
}

/// Frees what a reaped process left, without the table's lock.
fn free_remains(r: Remains) {
    let Remains { task, kthread } = r;
    // The task first: its kernel stack and its user context (whose FP
    // state every CPU forgets) go with it; then the switch state.
    drop(task);
    drop(kthread);
    // Chunks the heap grew for this process and no longer uses go back.
    crate::heap::trim();
}

/// Linux `wait4` options Folium knows.
pub const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WCONTINUED: u64 = 8;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;
const WNOTHREAD: u64 = 0x2000_0000;

/// Waits for a child: `Ok(Some((pid, raw wait status)))`, `Ok(None)` with WNOHANG
/// and nothing to report, or ECHILD / EINVAL / EINTR.
pub fn wait_child(me: &mut Task, which: i64, options: u64) -> Result<Option<(Pid, u32)>, Errno> {
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WALL | WCLONE | WNOTHREAD) != 0 {
        return Err(Errno::EINVAL);
    }
    // Any thread of the process waits for the process's children.
    let pid = me.tgid;
    loop {
        let mut leaving = false;
        let t = {
            let mut t = PROCS.lock();
            let children = t
                .procs
                .get(&pid)
                .map(|p| p.children.clone())
                .unwrap_or_default();
            let matching: Vec<Pid> = children
                .into_iter()
                .filter(|&c| which <= 0 || i64::from(c) == which)
                .collect();
            if matching.is_empty() {
                return Err(Errno::ECHILD);
            }
            for c in matching {
                match reap(&mut t, pid, c) {
                    Reaped::Dead(status, remains) => {
                        drop(t);
                        free_remains(remains);
                        return Ok(Some((c, status.wait_status())));
                    }
                    Reaped::Leaving => leaving = true,
                    Reaped::Alive => {}
                }
                // A stop (WUNTRACED) or a continue (WCONTINUED) not yet
                // collected.
                if let Some(ci) = t.procs.get_mut(&c)
                    && let Some(st) = ci.report
                {
                    let wanted = if st == 0xffff { WCONTINUED } else { WUNTRACED };
                    if options & wanted != 0 {
                        ci.report = None;
                        return Ok(Some((c, st)));
                    }
                }
            }
            if options & WNOHANG != 0 && !leaving {
                return Ok(None);
            }
            t
        };
        if leaving {
            // A child died a moment ago on another CPU, which is still
            // switching away from it: a few microseconds.
            drop(t);
            crate::smp::run_posted_calls();
            core::hint::spin_loop();
            continue;
        }
        // Blocks under the lock the children were looked at with: a child
        // that exits on another CPU from here on finds this process
        // waiting, and wakes it.
        if !block_holding(Some(&mut *me), t, State::WaitChild) {
            return Err(Errno::EINTR);
        }
    }
}

/// Sends `sig` to `pid` (Linux `kill` for one process; signal 0 only
/// checks that it exists). Handlers are recorded but never run: a signal
/// whose default action ends the process ends it unless it is ignored; a
/// blocked one waits until it is unblocked. init, like Linux's, is immune
/// to signals it has not set a handler for (all of them, here).
///
/// A signal goes to the whole process of thread `pid` (the dispositions
/// and the mask are the process's, kept on its leader): a fatal one ends
/// every thread, a stop stops every thread, SIGCONT resumes them all.
pub fn send_signal(pid: Pid, sig: Option<Signal>) -> Result<(), Errno> {
    let mut t = PROCS.lock();
    let tgid = t.procs.get(&pid).ok_or(Errno::ESRCH)?.tgid;
    let Some(sig) = sig else { return Ok(()) };
    let group = t.group(tgid);

    let live: Vec<Pid> = group
        .iter()
        .copied()
        .filter(|p| {
            t.procs
                .get(p)
                .is_some_and(|i| !matches!(i.state, State::Zombie(_)))
        })
        .collect();
    if live.is_empty() || tgid == INIT_PID {
        return Ok(());
    }
    // SIGCONT resumes a stopped process whatever its disposition, and
    // cancels a stop not yet acted on (Linux's prepare_signal).
    if sig == Signal::SIGCONT {
        let mut resumed = false;
        for &tid in &live {
            let Some(p) = t.procs.get_mut(&tid) else {
                continue;
            };
            p.stop = None;
            if p.state == State::Stopped {
                resumed = true;
                make_runnable(&mut t, tid);
            }
        }
        if resumed {
            let ppid = t.procs.get(&tgid).map_or(0, |l| l.ppid);
            if let Some(l) = t.procs.get_mut(&tgid) {
                l.report = Some(0xffff);
            }
            wake_waiters(&mut t, ppid);
            return Ok(());
        }
    }
    let Some(l) = t.procs.get_mut(&tgid) else {
        return Ok(());
    };
    if l.signals.ignored(sig) && !sig.is_unblockable() {
        return Ok(());
    }
    // Blocked only if every thread blocks it (Linux then leaves it
    // pending on the process until one unblocks it).
    let blocked = live
        .iter()
        .all(|p| t.procs.get(p).is_none_or(|i| i.signals.blocked(sig)));
    let Some(l) = t.procs.get_mut(&tgid) else {
        return Ok(());
    };
    if blocked {
        l.pending |= bit(sig);
        return Ok(());
    }
    let fatal = matches!(
        sig.default_action(),
        DefaultAction::Terminate | DefaultAction::Core
    );
    // A stop signal at its default action (handlers never run here)
    // stops the process at its next return to user mode.
    let default_stop = sig.default_action() == DefaultAction::Stop
        && (sig == Signal::SIGSTOP || l.signals.action(sig)[0] == 0);
    let dying = live
        .iter()
        .any(|p| t.procs.get(p).is_some_and(|i| i.kill.is_some()));
    if default_stop && !dying {
        // Any stop report not yet collected is stale now; bumped before
        // the kicks look where each thread runs (see `kick_running`).
        KILL_EPOCH.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        for &tid in &live {
            if let Some(p) = t.procs.get_mut(&tid) {
                p.stop = Some(sig);
                // A timed sleep, a wait for a child or on a futex stops
                // at once rather than when it would have returned: each
                // blocks again when woken early.
                if matches!(
                    p.state,
                    State::Sleep { .. } | State::WaitChild | State::Blocked { killable: true, .. }
                ) {
                    wake(&mut t, tid);
                }
                kick_running(&t, tid);
            }
        }
        return Ok(());
    }
    // SIGKILL ends a process whose other threads are already ending
    // (an exec or exit_group under way), as on Linux.
    if fatal && (!dying || sig == Signal::SIGKILL) {
        let status = ExitStatus::Signaled {
            signal: sig,
            core: false,
        };
        kill_group(&mut t, tgid, status, 0);
    }
    Ok(())
}

/// The process (thread group) of thread `tid`: ESRCH if there is none.
pub fn tgid_of(tid: Pid) -> Result<Pid, Errno> {
    PROCS
        .lock()
        .procs
        .get(&tid)
        .filter(|p| !matches!(p.state, State::Zombie(_)) || p.tgid == tid)
        .map(|p| p.tgid)
        .ok_or(Errno::ESRCH)
}

/// If `pid` runs on another CPU, interrupts it so it sees a signal at
/// once (Linux's `kick_process`): from user mode, the interrupt brings it
/// back to the kernel, where it looks. Where a thread runs is read
/// without the table's lock (a CPU records its choice in `runq` when it
/// switches): the caller bumps [`KILL_EPOCH`] first, and the record and
/// this read are sequentially consistent with that bump and the thread's
/// read of it, so a thread this read misses reads the new epoch on its
/// way to user mode.
fn kick_running(t: &Table, pid: Pid) {
    if let Some(cpu) = t.cpu_of(pid)
        && cpu != crate::smp::id()
    {
        let _ = crate::smp::send_ipi(cpu);
    }
}

/// Reads (and with `new`, replaces) the raw `struct sigaction` of `sig`
/// for `pid`.
pub fn sigaction(pid: Pid, sig: Signal, new: Option<[u64; 4]>) -> [u64; 4] {
    let mut t = PROCS.lock();
    let tgid = t.leader(pid);
    let Some(p) = t.procs.get_mut(&tgid) else {
        return [0; 4];
    };
    let old = *p.signals.action(sig);
    if let Some(a) = new {
        p.signals.actions[sig.0 as usize - 1] = a;
        // Ignoring a pending signal discards it.
        if a[0] == SIG_IGN {
            p.pending &= !bit(sig);
        }
    }
    old
}

/// Updates `pid`'s signal mask with `f` (SIGKILL and SIGSTOP stay
/// unblocked) and returns the old mask; a pending signal that is no
/// longer blocked is delivered.
pub fn sigprocmask(pid: Pid, f: impl FnOnce(u64) -> u64) -> u64 {
    let unblockable = bit(Signal::SIGKILL) | bit(Signal::SIGSTOP);
    let (old, now) = {
        let mut t = PROCS.lock();
        let tgid = t.leader(pid);
        // The mask is the thread's own; what waits is the process's.
        let Some(p) = t.procs.get_mut(&pid) else {
            return 0;
        };
        let old = p.signals.mask;
        p.signals.mask = f(old) & !unblockable;
        let mask = p.signals.mask;
        let Some(l) = t.procs.get_mut(&tgid) else {
            return old;
        };
        let ready = l.pending & !mask;
        l.pending &= !ready;
        (old, ready)
    };
    for n in 1..=u64::from(Signal::MAX) {
        if now & (1 << (n - 1)) != 0 {
            let _ = send_signal(pid, Signal::new(n));
        }
    }
    old
}

/// At `execve`: handlers go back to the default action (ignored signals
/// stay ignored; the mask and pending signals are kept), as on Linux.
pub fn reset_handlers_on_exec(pid: Pid) {
    let mut t = PROCS.lock();
    let tgid = t.leader(pid);
    if let Some(p) = t.procs.get_mut(&tgid) {
        for a in p.signals.actions.iter_mut() {
            if a[0] > SIG_IGN {
                *a = [0; 4];
            }
        }
    }
}

/// Publishes the current process's resident pages `rss` (the OOM
/// killer's measure) in the middle of a long operation on its space; the
/// task loop publishes them after every return to the kernel.
pub fn publish_rss(rss: u64) {
    RSS_EPOCH.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let mut t = PROCS.lock();
    if let Some(p) = t.current() {
        let tgid = t.leader(p);
        if let Some(i) = t.procs.get_mut(&tgid) {
            i.rss = rss;
        }
    }
}

/// Publishes the root of process `pid`'s user page table (`None` once it
/// has no address space), after exec replaced it or before exit frees
/// it. Only the leader's entry holds it: every address space once.
pub fn publish_root(pid: Pid, root: Option<PhysAddr>) {
    if let Some(p) = PROCS.lock().procs.get_mut(&pid) {
        p.pt_root = root;
    }
}

/// Withdraws `root` wherever it is published: its space is about to be
/// torn down by its last user. Every process that ran in it published
/// it (a vfork parent and child both do), and one that exited first may
/// still be a zombie holding it.
pub fn withdraw_root(root: PhysAddr) {
    for p in PROCS.lock().procs.values_mut() {
        if p.pt_root == Some(root) {
            p.pt_root = None;
        }
    }
}

/// The roots of every live user page table, and `pid`'s (if it has an
/// address space): what Linux's views of memory read (`views.rs`).
pub fn page_table_roots(pid: Pid) -> (Vec<PhysAddr>, Option<PhysAddr>) {
    let t = PROCS.lock();
    let all = t.live_roots();
    let tgid = t.leader(pid);
    (all, t.procs.get(&tgid).and_then(|p| p.pt_root))
}

/// Runs the deferred split over every process's page tables (Linux's
/// deferred-split shrinker): before the OOM killer, and on a write of 2 or
/// 3 to `/proc/sys/vm/drop_caches`.
///
/// Its cost is queued folios x processes table walks: it goes round the
/// queue in steps of about [`SPLIT_STEP_WALKS`] walks, each under the
/// allocator's lock with the roots collected afresh (a process may have
/// exited meanwhile), with a preemption point between steps, so the scan
/// never holds the CPU for long; it stops early if the current process is
/// being killed. The user half is the empty one afterwards if it was
/// preempted (see [`preempt`]): callers return to user mode without
/// touching user memory.
pub fn split_deferred_folios() -> folium_mm::split::SplitScan {
    let queued = crate::memory::frames::with(|b| b.deferred_len());
    let mut total = folium_mm::split::SplitScan::default();
    while total.scanned < queued {
        // The scan reads every process's tables: the other CPUs wait.
        let s = crate::smp::stop_others(|| {
            let roots = PROCS.lock().live_roots();
            let step =
                (SPLIT_STEP_WALKS / roots.len().max(1) as u64).clamp(1, queued - total.scanned);
            uspace::split_deferred_folios(&roots, step)
        });
        if s.scanned == 0 {
            break;
        }
        total.scanned += s.scanned;
        total.split += s.split;
        total.failed += s.failed;
        total.dequeued += s.dequeued;
        total.freed_pages += s.freed_pages;
        preempt();
        if fatal_signal_pending() {
            break;
        }
    }
    total
}

/// Folio x address-space walks one step of [`split_deferred_folios`]
/// makes at most (one folio per step beyond that many processes): each
/// walk reads at most one table's entries, so a step takes well under a
/// millisecond.
const SPLIT_STEP_WALKS: u64 = 256;

/// The head of `pid`'s robust-futex list (0: none), ESRCH if there is no
/// such process (a zombie still exists, without a list).
pub fn robust_list(pid: Pid) -> Result<u64, Errno> {
    PROCS
        .lock()
        .procs
        .get(&pid)
        .map(|p| p.robust_list)
        .ok_or(Errno::ESRCH)
}

/// Records `head` as `pid`'s robust-futex list head (0 clears it).
pub fn set_robust_list(pid: Pid, head: u64) {
    if let Some(p) = PROCS.lock().procs.get_mut(&pid) {
        p.robust_list = head;
    }
}

/// The CPUs `pid` may run on (ESRCH: no such process).
pub fn affinity(pid: Pid) -> Result<u64, Errno> {
    PROCS
        .lock()
        .procs
        .get(&pid)
        .map(|p| p.affinity)
        .ok_or(Errno::ESRCH)
}

/// Limits `pid` to the CPUs in `mask`; if it runs now on a CPU outside
/// it (another than this one), that CPU is asked to reschedule, and the
/// process moves at its next preemption point or return to user mode.
pub fn set_affinity(pid: Pid, mask: u64) -> Result<(), Errno> {
    let mut t = PROCS.lock();
    let p = t.procs.get_mut(&pid).ok_or(Errno::ESRCH)?;
    p.affinity = mask;
    p.kt().sched.set_affinity(mask);
    let runnable = p.state == State::Runnable;
    match t.cpu_of(pid) {
        Some(cpu) if mask & 1 << cpu == 0 && cpu != crate::smp::id() => {
            crate::sched::resched_cpu(cpu);
        }
        // Queued where it may no longer run: that CPU moves it when it
        // next looks; a sleeping CPU it may now run on would not look by
        // itself.
        None if runnable => {
            let me = crate::smp::id();
            for cpu in crate::smp::online() {
                if mask & 1 << cpu == 0 && cpu != me && runq::has_waiting(cpu) {
                    crate::sched::resched_cpu(cpu);
                }
            }
            runq::kick_idle(mask);
        }
        _ => {}
    }
    Ok(())
}

/// Every live process except init and `except` (their pids), for
/// `kill(-1, sig)`.
pub fn all_pids_except(except: Pid) -> Vec<Pid> {
    PROCS
        .lock()
        .procs
        .iter()
        .filter(|(p, i)| {
            **p != INIT_PID
                && **p != except
                && i.tgid == **p
                && !(matches!(i.state, State::Zombie(_)) && i.threads.is_empty())
        })
        .map(|(p, _)| *p)
        .collect()
}

/// The parent of thread `pid`'s process.
pub fn parent_of(pid: Pid) -> Pid {
    let t = PROCS.lock();
    t.procs.get(&t.leader(pid)).map_or(0, |p| p.ppid)
}

/// The name of `pid` (for reports).
pub fn name_of(pid: Pid) -> String {
    PROCS
        .lock()
        .procs
        .get(&pid)
        .map(|p| p.name.clone())
        .unwrap_or_default()
}

/// Sets the current process's name (execve).
pub fn set_name(pid: Pid, name: &str) {
    if let Some(p) = PROCS.lock().procs.get_mut(&pid) {
        p.name = String::from(name);
    }
}

/// Creates a child process of the current thread's process as a copy of
/// it (fork, or clone with fork semantics). Returns the child's pid.
pub fn fork_current(
    parent: &mut Task,
    child_settid: u64,
    child_cleartid: u64,
) -> Result<Pid, Errno> {
    fork_process(
        parent,
        NewProcess {
            settid: child_settid,
            cleartid: child_cleartid,
            ..NewProcess::default()
        },
    )
}

/// How `clone` without `CLONE_THREAD` makes a process.
#[derive(Default)]
pub struct NewProcess {
    /// `CLONE_CHILD_SETTID`: where the child writes its pid first thing.
    pub settid: u64,
    /// `CLONE_CHILD_CLEARTID`: zeroed and woken when it exits.
    pub cleartid: u64,
    /// `CLONE_VM`: the child runs in the caller's address space (as
    /// `vfork` and `posix_spawn` ask), not in a copy of it.
    pub share_vm: bool,
    /// `CLONE_VFORK`: set by the child when it execs or exits; the caller
    /// waits for that in [`vfork_wait`].
    pub vfork: Option<Arc<AtomicBool>>,
    /// The child's user stack pointer (0: the caller's).
    pub stack: u64,
    /// `CLONE_PARENT_SETTID`: where the child's pid is written in the
    /// caller's memory before the child can run (0: nowhere).
    pub parent_tid: u64,
}

/// Makes a child process of the caller's ([`fork_current`], or `clone`
/// with `new`'s options). Returns its pid.
pub fn fork_process(parent: &mut Task, new: NewProcess) -> Result<Pid, Errno> {
    // The child's copy of the area map and file table live on the heap.
    let areas = if new.share_vm {
        0
    } else {
        parent.space().map_or(0, |s| s.vmas().len())
    };
    if PROCS.lock().procs.len() >= MAX_PROCS || !crate::heap::can_allocate(areas * 96 + 64 * 1024) {
        return Err(Errno::EAGAIN);
    }
    let kstack = KernelStack::new().ok_or(Errno::EAGAIN)?;
    let mm = if new.share_vm {
        parent.mm.clone().ok_or(Errno::ENOMEM)?
    } else {
        // The copy has preemption points (between page tables): other
        // processes run during a long fork, the child does not exist
        // yet. The parent's other threads wait for its address-space
        // lock.
        let space = parent
            .space()
            .ok_or(Errno::ENOMEM)?
            .fork(&mut KernelEnv, uspace::kernel_half().as_ref())
            .map_err(|_| Errno::ENOMEM)?;
        Mm::new(space)
    };
    let pid = PROCS.lock().alloc_pid();
    let uctx = child_context(parent, pid, new.parent_tid, new.stack);
    let mut task = Task::new(pid, mm, uctx, kstack);
    task.vfork_done = new.vfork;
    task.files = parent.files.copy();
    task.rlimits = parent.rlimits;
    task.set_child_tid = new.settid;
    task.clear_child_tid = new.cleartid;
    let mut t = PROCS.lock();
    let ptgid = parent.tgid;
    // The process's actions, the forking thread's mask.
    let mut signals = t
        .procs
        .get(&ptgid)
        .map_or_else(Signals::default, |l| l.signals.clone());
    signals.mask = t.procs.get(&parent.pid).map_or(0, |p| p.signals.mask);
    let (name, affinity) = t
        .procs
        .get(&parent.pid)
        .map(|p| (p.name.clone(), p.affinity))
        .unwrap_or((String::new(), ALL_CPUS));
    t.procs
        .insert(pid, ProcInfo::new(task, ptgid, signals, name, affinity));
    if let Some(p) = t.procs.get_mut(&ptgid) {
        p.children.push(pid);
    }
    place_new(&mut t, pid);
    Ok(pid)
}

/// The user registers a new thread or process `id` starts with: the
/// creator's, returning 0 from `clone`, on `stack` (0: the creator's).
/// First writes `id` to `parent_tid` (`CLONE_PARENT_SETTID`, 0: nowhere)
/// in the creator's memory, before the new one can run, as Linux's
/// copy_process does: one sharing that memory (a thread, a `CLONE_VM`
/// process) may read the word at once, or exit at once and clear it
/// (`CLONE_CHILD_CLEARTID` on the same word, as pthreads pass) and wake
/// its joiner, which must not find the id written back after that. A
/// failed write is ignored, as on Linux.
fn child_context(parent: &mut Task, id: Pid, parent_tid: u64, stack: u64) -> UserContext {
    if parent_tid != 0 {
        let _ = crate::uaccess::write_u32(parent, parent_tid, id);
    }
    let mut uctx = parent.uctx.clone();
    uctx.set_syscall_ret(0);
    if stack != 0 {
        uctx.set_sp(stack);
    }
    uctx
}

/// What a `CLONE_VFORK` parent waits on: its child's pid, outside every
/// address space's keys (an [`Mm::id`] is a kernel address, never 1).
fn vfork_key(child: Pid) -> WaitKey {
    WaitKey {
        space: 1,
        addr: u64::from(child),
    }
}

/// The `CLONE_VFORK` parent's wait (Linux `wait_for_vfork_done`): until
/// `child` has set `done` (it exec'd or exited), or a fatal signal ends
/// the caller. Stops and other signals do not end it.
pub fn vfork_wait(me: &mut Task, child: Pid, done: &AtomicBool) {
    let Some(mm) = me.mm.clone() else { return };
    loop {
        let still = || !done.load(Ordering::SeqCst);
        let end = wait_on_key(
            Some(me),
            &mm,
            vfork_key(child),
            u32::MAX,
            u64::MAX,
            true,
            still,
        );
        if matches!(end, WaitEnd::NotBlocked | WaitEnd::Woken) || fatal_signal_pending() {
            return;
        }
    }
}

/// Lets a `CLONE_VFORK` parent go on (Linux `mm_release`): `task` execs
/// (its new address space is in place) or exits (its hold on the old one
/// is given up). The flag is set before the wake, and the parent looks
/// at it under the table's lock it queues itself under, so the wake
/// cannot be lost.
pub fn vfork_release(task: &mut Task) {
    if let Some(done) = task.vfork_done.take() {
        done.store(true, Ordering::SeqCst);
        wake_key(vfork_key(task.pid), u32::MAX, u32::MAX);
    }
}

/// Where a new thread or process goes: the creator returns first,
/// whenever its slice ends: the new one is queued only when the creator
/// gives up the CPU, right behind it (`switch_away`), as Linux's CFS
/// places a new task one slice behind its parent's virtual runtime
/// (`START_DEBIT`, without `sched_child_runs_first`). A CPU with nothing
/// to do takes it at once (Linux's fork balancing picks the idlest CPU).
fn place_new(t: &mut Table, pid: Pid) {
    if let Some(p) = t.procs.get(&pid) {
        runq::place_new(p.kthread);
    }
}

/// What a new thread starts with (`clone` with `CLONE_THREAD`).
pub struct NewThread {
    /// Its user stack pointer (0: the creator's).
    pub stack: u64,
    /// Its thread pointer (`CLONE_SETTLS`).
    pub tls: Option<u64>,
    /// `CLONE_CHILD_SETTID`: where it writes its tid first thing.
    pub set_child_tid: u64,
    /// `CLONE_CHILD_CLEARTID`: zeroed and woken when it exits.
    pub clear_child_tid: u64,
    /// `CLONE_FILES`: the fd table is shared, not copied.
    pub share_files: bool,
    /// `CLONE_PARENT_SETTID`: where its tid is written in the process's
    /// memory before it can run (0: nowhere).
    pub parent_tid: u64,
}

/// Creates a thread in the caller's process, sharing its address space:
/// it returns 0 from `clone` on `new.stack`. Returns its tid.
pub fn clone_thread(parent: &mut Task, new: NewThread) -> Result<Pid, Errno> {
    if PROCS.lock().procs.len() >= MAX_PROCS || !crate::heap::can_allocate(64 * 1024) {
        return Err(Errno::EAGAIN);
    }
    let mm = parent.mm.clone().ok_or(Errno::ENOMEM)?;
    let kstack = KernelStack::new().ok_or(Errno::EAGAIN)?;
    let tid = PROCS.lock().alloc_pid();
    let mut uctx = child_context(parent, tid, new.parent_tid, new.stack);
    if let Some(tls) = new.tls {
        uctx.set_tls(tls);
    }
    let mut task = Task::new(tid, mm, uctx, kstack);
    task.tgid = parent.tgid;
    task.files = if new.share_files {
        parent.files.share()
    } else {
        parent.files.copy()
    };
    task.rlimits = parent.rlimits;
    task.set_child_tid = new.set_child_tid;
    task.clear_child_tid = new.clear_child_tid;
    let mut t = PROCS.lock();
    let (name, affinity) = t
        .procs
        .get(&parent.pid)
        .map(|p| (p.name.clone(), p.affinity))
        .unwrap_or((String::new(), ALL_CPUS));
    // A process being killed gets no new thread that would outlive it;
    // one being stopped, none that keeps running.
    let kill = t.procs.get(&parent.pid).and_then(|p| p.kill);
    let stop = t.procs.get(&parent.pid).and_then(|p| p.stop);
    let mask = t.procs.get(&parent.pid).map_or(0, |p| p.signals.mask);
    // Its own mask, its creator's to start with; the actions are the
    // process's (on the leader).
    let signals = Signals {
        mask,
        ..Signals::default()
    };
    let mut info = ProcInfo::new(task, 0, signals, name, affinity);
    info.kill = kill;
    info.stop = stop;
    t.procs.insert(tid, info);
    if let Some(l) = t.procs.get_mut(&parent.tgid) {
        l.threads.push(tid);
    }
    place_new(&mut t, tid);
    Ok(tid)
}

kernel_test!(
    fn pids_wrap_around_and_skip_live_ones() {
        // Live pids, zombies included (the table holds both).
        let live = [5, 6, 8, PID_MAX - 1, PID_WRAP_TO, PID_WRAP_TO + 1];
        let is_live = |p: Pid| live.contains(&p);
        check_eq!(next_free_pid(5, is_live), 7);
        check_eq!(next_free_pid(7, is_live), 7);
        check_eq!(next_free_pid(8, is_live), 9);
        // At the top: wrap to PID_WRAP_TO, never to a low or live pid.
        check_eq!(next_free_pid(PID_MAX - 1, is_live), PID_WRAP_TO + 2);
        check_eq!(next_free_pid(PID_MAX, is_live), PID_WRAP_TO + 2);
        check_eq!(next_free_pid(Pid::MAX, is_live), PID_WRAP_TO + 2);
        // Every pid the table holds now is skipped, wherever it starts.
        let t = PROCS.lock();
        let taken: Vec<Pid> = t.procs.keys().copied().collect();
        drop(t);
        for &p in &taken {
            let got = next_free_pid(p, |q| taken.contains(&q));
            check!(!taken.contains(&got), "pid {got} handed out again");
            check!((PID_WRAP_TO.min(p)..PID_MAX).contains(&got), "pid {got}");
        }
        Ok(())
    }
);
