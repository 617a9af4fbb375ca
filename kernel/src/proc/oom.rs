//! The OOM killer: when a fault, a user copy or `MAP_POPULATE` cannot get
//! a frame even after the deferred split gave back what it could, the
//! process with the largest footprint dies (never init), not whoever
//! asked next. The footprint is Linux's `oom_badness`: resident pages
//! plus page-table pages, so a process holding memory in tables (one byte
//! read per 2 MiB of a huge mapping costs a whole table and no resident
//! page) is seen too.

use core::sync::atomic::{AtomicBool, Ordering};

use folium_abi::signal::Signal;

use super::{INIT_PID, PROCS, Pid, State, Task};

/// What the caller that ran out of memory does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oom {
    /// Memory was given back (a split, or another process was killed and
    /// has run to its end): try again.
    Retry,
    /// The caller itself is the one to go (it has been sent SIGKILL,
    /// unless it is init): stop and report ENOMEM; the process dies on
    /// its way back to user mode.
    Chosen,
}

/// A process's footprint in pages, as the OOM killer ranks it.
pub fn badness(rss: u64, table_pages: u64) -> u64 {
    rss.saturating_add(table_pages)
}

/// The process to kill when memory runs out: the live one (not init) with
/// the largest [`badness`], `current` included; with its resident and
/// table pages. Falls back to `current` when nothing else qualifies.
pub fn victim(current: &Task) -> (Pid, u64, u64) {
    let (rss, tables) = current
        .space()
        .map_or((0, 0), |s| (s.rss(), s.table_pages()));
    let mut best = (current.tgid, rss, tables);
    let mut best_score = if current.tgid == INIT_PID {
        0
    } else {
        badness(rss, tables)
    };
    let t = PROCS.lock();
    for (&pid, p) in &t.procs {
        // Processes, by their leaders (which carry the process's
        // footprint); a process whose leader is dead still counts while
        // another of its threads lives.
        if pid == INIT_PID
            || pid == current.tgid
            || p.tgid != pid
            || matches!(p.state, State::Zombie(_)) && p.threads.is_empty()
        {
            continue;
        }
        let score = badness(p.rss, p.pt_pages);
        if score > best_score {
            best = (pid, p.rss, p.pt_pages);
            best_score = score;
        }
    }
    best
}

/// Set while one CPU chooses a victim.
static OOM_CHOOSING: AtomicBool = AtomicBool::new(false);

/// Called when `task` could not get a frame: reclaims by splitting
/// partly mapped folios (Linux's shrinkers) and, if that frees nothing,
/// kills the process with the largest footprint. If another process was
/// chosen, `task` waits for it to die before trying again.
pub fn out_of_memory(task: &mut Task) -> Oom {
    if super::split_deferred_folios().freed_pages > 0 {
        return Oom::Retry;
    }
    if fatal_signal_pending(task.pid) {
        // Chosen already (by an earlier pass, or killed by someone): give
        // up the allocation and die, freeing what it holds.
        return Oom::Chosen;
    }
    // One CPU at a time chooses (Linux's `oom_lock`): another that runs
    // out meanwhile waits and retries, and then finds the victim dying.
    if OOM_CHOOSING.swap(true, Ordering::Acquire) {
        super::yield_now(task);
        return Oom::Retry;
    }
    if dying_victim(task.tgid).is_some() {
        OOM_CHOOSING.store(false, Ordering::Release);
        // A process killed earlier is still giving its memory back (a
        // long teardown yields at its preemption points): wait for it
        // rather than kill a second one, as Linux's OOM killer aborts its
        // scan while a victim is exiting.
        super::yield_now(task);
        return Oom::Retry;
    }
    let (pid, rss, tables) = victim(task);
    println!(
        "Out of memory: Killed process {pid} ({}) total-rss:{}kB pgtables:{}kB",
        super::name_of(pid),
        rss * 4,
        tables * 4
    );
    let _ = super::send_signal(pid, Some(Signal::SIGKILL));
    // Killing it frees nothing while another process still runs in its
    // address space (CLONE_VM, vfork): those go too, as on Linux.
    let sharers = sharing_space(pid);
    for &other in &sharers {
        println!(
            "oom: Killed process {other} ({}) sharing the same memory",
            super::name_of(other)
        );
        let _ = super::send_signal(other, Some(Signal::SIGKILL));
    }
    OOM_CHOOSING.store(false, Ordering::Release);
    if pid == task.tgid || sharers.contains(&task.tgid) {
        return Oom::Chosen;
    }
    // Let it die and free its memory.
    super::yield_now(task);
    Oom::Retry
}

/// The other live processes (not init) that run in `pid`'s address
/// space, found by the page-table root each publishes.
fn sharing_space(pid: Pid) -> alloc::vec::Vec<Pid> {
    let t = PROCS.lock();
    let Some(root) = t.procs.get(&pid).and_then(|p| p.pt_root) else {
        return alloc::vec::Vec::new();
    };
    t.procs
        .iter()
        .filter(|&(&other, p)| {
            other != pid
                && other != INIT_PID
                && p.tgid == other
                && p.pt_root == Some(root)
                && !(matches!(p.state, State::Zombie(_)) && p.threads.is_empty())
        })
        .map(|(&other, _)| other)
        .collect()
}

/// True if `pid` has been sent a fatal signal it has not acted on yet:
/// long kernel work on its behalf stops (it dies on its way out).
pub fn fatal_signal_pending(pid: Pid) -> bool {
    PROCS
        .lock()
        .procs
        .get(&pid)
        .is_some_and(|p| p.kill.is_some())
}

/// A process other than `me` (and not init) with a thread that has been
/// sent a fatal signal and has not finished dying (not yet a zombie): its
/// memory is on its way back.
fn dying_victim(me: Pid) -> Option<Pid> {
    let t = PROCS.lock();
    t.procs
        .values()
        .find(|p| {
            p.tgid != me
                && p.tgid != INIT_PID
                && p.kill.is_some()
                && !matches!(p.state, State::Zombie(_))
        })
        .map(|p| p.tgid)
}
