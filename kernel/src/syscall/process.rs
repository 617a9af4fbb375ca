//! Process syscalls: clone/fork, execve, wait4, kill, and the
//! robust-futex list (`set_robust_list`, `get_robust_list`).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;

use folium_abi::errno::SysResult;
use folium_abi::signal::Signal;
use folium_abi::stack::{self, MAX_ARG_BYTES, MAX_ARG_STRLEN, Strings};
use folium_abi::{Errno, Sysno};

use crate::memory::uspace::{self, KernelEnv};
use crate::proc::{self, Task, exec};
use crate::uaccess;

const CSIGNAL: u64 = 0xff;
const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
/// Ignored by Linux since 2.6 (musl still passes it).
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;

pub fn fork(task: &mut Task) -> SysResult {
    proc::fork_current(task, 0, 0).map(u64::from)
}

/// `clone`: a new process (fork semantics), or with `CLONE_THREAD` a
/// new thread of the caller's process (what `pthread_create` asks for).
/// Argument order differs: x86-64 passes (flags, stack, parent_tid,
/// child_tid, tls); arm64 (flags, stack, parent_tid, tls, child_tid).
///
/// Linux's rules: `CLONE_THREAD` needs `CLONE_SIGHAND`, which needs
/// `CLONE_VM` (EINVAL otherwise). A new process may share the caller's
/// address space (`CLONE_VM`) and may make the caller wait until it
/// execs or exits (`CLONE_VFORK`): `vfork` and `posix_spawn` ask for
/// both. A thread shares the fd table with `CLONE_FILES`, and gets a
/// copy of it without; a process always gets a copy (`CLONE_FILES`,
/// `CLONE_FS` and `CLONE_SIGHAND` without `CLONE_THREAD`: EINVAL).
pub fn clone(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[0];
    let (ptid, tls, ctid) = if cfg!(target_arch = "x86_64") {
        (a[2], a[4], a[3])
    } else {
        (a[2], a[3], a[4])
    };
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0
        || flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0
    {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_THREAD != 0 {
        let known = CSIGNAL
            | CLONE_VM
            | CLONE_FS
            | CLONE_FILES
            | CLONE_SIGHAND
            | CLONE_THREAD
            | CLONE_SYSVSEM
            | CLONE_DETACHED
            | CLONE_SETTLS
            | CLONE_PARENT_SETTID
            | CLONE_CHILD_CLEARTID
            | CLONE_CHILD_SETTID;
        if flags & !known != 0 {
            return Err(Errno::EINVAL);
        }
        let tid = proc::clone_thread(
            task,
            proc::NewThread {
                stack: a[1],
                tls: (flags & CLONE_SETTLS != 0).then_some(tls),
                set_child_tid: if flags & CLONE_CHILD_SETTID != 0 {
                    ctid
                } else {
                    0
                },
                clear_child_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
                    ctid
                } else {
                    0
                },
                share_files: flags & CLONE_FILES != 0,
                parent_tid: if flags & CLONE_PARENT_SETTID != 0 {
                    ptid
                } else {
                    0
                },
            },
        )?;
        return Ok(u64::from(tid));
    }
    let threads = CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_SETTLS;
    if flags & threads != 0 {
        return Err(Errno::EINVAL);
    }
    let known = CSIGNAL
        | CLONE_VM
        | CLONE_VFORK
        | CLONE_PARENT_SETTID
        | CLONE_CHILD_CLEARTID
        | CLONE_CHILD_SETTID;
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let settid = if flags & CLONE_CHILD_SETTID != 0 {
        ctid
    } else {
        0
    };
    let cleartid = if flags & CLONE_CHILD_CLEARTID != 0 {
        ctid
    } else {
        0
    };
    let done = (flags & CLONE_VFORK != 0).then(|| Arc::new(AtomicBool::new(false)));
    let pid = proc::fork_process(
        task,
        proc::NewProcess {
            settid,
            cleartid,
            share_vm: flags & CLONE_VM != 0,
            vfork: done.clone(),
            stack: a[1],
            parent_tid: if flags & CLONE_PARENT_SETTID != 0 {
                ptid
            } else {
                0
            },
        },
    )?;
    if let Some(done) = done {
        proc::vfork_wait(task, pid, &done);
    }
    Ok(u64::from(pid))
}

/// `vfork` (x86-64 only; arm64 libcs call `clone` with these flags):
/// `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` on the caller's stack.
pub fn vfork(task: &mut Task) -> SysResult {
    clone(task, [CLONE_VM | CLONE_VFORK | 17, 0, 0, 0, 0, 0])
}

pub fn wait4(task: &mut Task, pid: u64, status: u64, options: u64, rusage: u64) -> SysResult {
    let which = pid as i32 as i64;
    match proc::wait_child(task, which, options)? {
        None => Ok(0),
        Some((child, st)) => {
            if status != 0 {
                uaccess::write_u32(task, status, st)?;
            }
            if rusage != 0 {
                uaccess::copy_out(task, rusage, &[0u8; 144])?;
            }
            Ok(u64::from(child))
        }
    }
}

pub fn kill(task: &mut Task, pid: u64, sig: u64) -> SysResult {
    let sig = match sig {
        0 => None,
        n => Some(Signal::new(n).ok_or(Errno::EINVAL)?),
    };
    let pid = pid as i32;
    if pid > 0 {
        proc::send_signal(pid as u32, sig)?;
        return Ok(0);
    }
    // Every process is in init's process group: kill(0) reaches all of
    // them, the caller included; kill(-1) all but the caller; init is
    // immune either way. No other process group exists.
    let targets = match pid {
        -1 => proc::all_pids_except(task.pid),
        0 => {
            let mut v = proc::all_pids_except(task.pid);
            v.push(task.pid);
            v
        }
        _ => return Err(Errno::ESRCH),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    for p in targets {
        let _ = proc::send_signal(p, sig);
    }
    Ok(0)
}

/// `tkill(tid, sig)` / `tgkill(tgid, tid, sig)`: a signal to one
/// thread, which (handlers never run here) acts on its whole process as
/// Linux's default actions do; `tgkill` checks the thread is in `tgid`
/// (ESRCH otherwise).
pub fn tkill(task: &mut Task, s: Sysno, a: [u64; 6]) -> SysResult {
    let (tgid, tid, sig) = if s == Sysno::Tgkill {
        (Some(a[0] as i32), a[1], a[2])
    } else {
        (None, a[0], a[1])
    };
    if (tid as i32) <= 0 || tgid.is_some_and(|g| g <= 0) {
        return Err(Errno::EINVAL);
    }
    let sig = match sig {
        0 => None,
        n => Some(Signal::new(n).ok_or(Errno::EINVAL)?),
    };
    let tid = tid as i32 as proc::Pid;
    let owner = proc::tgid_of(tid)?;
    if tgid.is_some_and(|g| g as proc::Pid != owner) {
        return Err(Errno::ESRCH);
    }
    let _ = task;
    proc::send_signal(tid, sig).map(|()| 0)
}

/// Linux's `nr_cpu_ids`: one past the highest CPU index that came up.
fn nr_cpu_ids() -> u64 {
    crate::smp::online().max().map_or(1, |c| c as u64 + 1)
}

/// Linux's `cpumask_size()`: the mask in whole `unsigned long`s (8 bytes
/// for Folium's at most 8 CPUs).
const CPUMASK_BYTES: u64 = 8;

/// The pid a `sched_*` call names (0: the caller); ESRCH for a negative
/// one, as Linux's lookup finds none.
fn sched_target(task: &Task, pid: u64) -> Result<proc::Pid, Errno> {
    match pid as i32 {
        0 => Ok(task.pid),
        p if p > 0 => Ok(p as proc::Pid),
        _ => Err(Errno::ESRCH),
    }
}

/// `sched_getaffinity(pid, len, mask)`: the CPUs `pid` may run on (of
/// those online), as Linux writes them: `min(len, cpumask_size)` bytes,
/// the count returned; EINVAL if `len` is not a whole number of longs or
/// too short for every CPU id.
pub fn sched_getaffinity(task: &mut Task, pid: u64, len: u64, mask: u64) -> SysResult {
    // Linux takes the length as an `unsigned int`.
    let len = u64::from(len as u32);
    if len.checked_mul(8).is_none_or(|bits| bits < nr_cpu_ids()) || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let pid = sched_target(task, pid)?;
    let online = crate::smp::online().fold(0u64, |m, c| m | 1 << c);
    let allowed = proc::affinity(pid)? & online;
    let n = len.min(CPUMASK_BYTES);
    crate::uaccess::copy_out(task, mask, &allowed.to_le_bytes()[..n as usize])?;
    Ok(n)
}

/// `sched_setaffinity(pid, len, mask)`: limits `pid` to the CPUs in
/// `mask` (the first `min(len, cpumask_size)` bytes, the rest taken as
/// zeros, as Linux reads it); EINVAL if none of them is online. A process
/// on a CPU it may no longer use moves at once.
pub fn sched_setaffinity(task: &mut Task, pid: u64, len: u64, mask: u64) -> SysResult {
    // Linux's order: the mask is read (EFAULT), the process found
    // (ESRCH), then the mask checked (EINVAL).
    let mut bytes = [0u8; CPUMASK_BYTES as usize];
    let n = u64::from(len as u32).min(CPUMASK_BYTES) as usize;
    crate::uaccess::copy_in(task, &mut bytes[..n], mask)?;
    let pid = sched_target(task, pid)?;
    proc::affinity(pid)?;
    let online = crate::smp::online().fold(0u64, |m, c| m | 1 << c);
    let wanted = u64::from_le_bytes(bytes) & online;
    if wanted == 0 {
        return Err(Errno::EINVAL);
    }
    proc::set_affinity(pid, wanted)?;
    if pid == task.pid && wanted & 1 << crate::smp::id() == 0 {
        proc::yield_now(task);
    }
    Ok(0)
}

/// `getcpu(cpu, node, cache)`: the CPU the caller runs on (and NUMA node
/// 0); either pointer may be null.
pub fn getcpu(task: &mut Task, cpu: u64, node: u64) -> SysResult {
    let here = crate::smp::id() as u32;
    if cpu != 0 {
        crate::uaccess::write_u32(task, cpu, here)?;
    }
    if node != 0 {
        crate::uaccess::write_u32(task, node, 0)?;
    }
    Ok(0)
}

/// `sizeof(struct robust_list_head)` on 64-bit Linux: `list.next`,
/// `futex_offset`, `list_op_pending`.
const ROBUST_LIST_HEAD_LEN: u64 = 24;

/// `set_robust_list(head, len)`: records `head` for this process, as
/// Linux does: only the length is checked, never the pointer (it is read
/// only when the list is walked at exit).
pub fn set_robust_list(task: &mut Task, head: u64, len: u64) -> SysResult {
    if len != ROBUST_LIST_HEAD_LEN {
        return Err(Errno::EINVAL);
    }
    proc::set_robust_list(task.pid, head);
    Ok(0)
}

/// `get_robust_list(pid, head_ptr, len_ptr)`: writes the recorded head of
/// `pid` (0: the caller) to `*head_ptr` and the head's size to `*len_ptr`
/// (the length first, as Linux does), EFAULT if either cannot be written,
/// ESRCH if no process has that pid.
///
/// Linux lets a process read another's list only with ptrace read access
/// to it (same user, or CAP_SYS_PTRACE). Folium has no credentials: every
/// process runs as uid 0 (what `getuid` says) with every capability, and
/// Linux grants root that access to any process, so any existing process
/// may be read here too, never EPERM.
pub fn get_robust_list(task: &mut Task, pid: u64, head_ptr: u64, len_ptr: u64) -> SysResult {
    // The pid is a C int: the upper half of the register is ignored, and
    // no process has a negative pid.
    let pid = match pid as i32 {
        0 => task.pid,
        p if p > 0 => p as u32,
        _ => return Err(Errno::ESRCH),
    };
    let head = proc::robust_list(pid)?;
    uaccess::copy_out(task, len_ptr, &ROBUST_LIST_HEAD_LEN.to_le_bytes())?;
    uaccess::copy_out(task, head_ptr, &head.to_le_bytes())?;
    Ok(0)
}

/// Replaces the running program. On success the new program starts when
/// the task next enters user mode (there is no caller to return to).
pub fn execve(task: &mut Task, path: u64, argv: u64, envp: u64) -> SysResult {
    let path = uaccess::read_cstr(task, path, 4095)?;
    // Linux opens the file before it copies the arguments: a missing
    // program is ENOENT whatever the argument pointers.
    let program = exec::find(&path).ok_or(Errno::ENOENT)?;
    if !crate::heap::can_grow() {
        return Err(Errno::ENOMEM);
    }
    // Linux's order and limits: count both arrays, charge their pointers
    // and the path, then copy the environment and the arguments into one
    // kernel buffer (no per-string allocation) within what is left.
    // More pointers than these could never fit: E2BIG without reading on.
    let argc = uaccess::count_ptrs(task, argv, MAX_ARG_BYTES / 8)?;
    let envc = uaccess::count_ptrs(task, envp, MAX_ARG_BYTES / 8)?;
    let execfn = exec::execfn(&program);
    let mut budget = MAX_ARG_BYTES
        .checked_sub(stack::pointer_bytes(argc, envc) + execfn.len() + 1)
        .ok_or(Errno::E2BIG)?;
    let mut env_bytes = Vec::new();
    uaccess::read_strings(
        task,
        envp,
        envc,
        MAX_ARG_STRLEN,
        &mut budget,
        &mut env_bytes,
    )?;
    let mut arg_bytes = Vec::new();
    uaccess::read_strings(
        task,
        argv,
        argc,
        MAX_ARG_STRLEN,
        &mut budget,
        &mut arg_bytes,
    )?;
    // Each string was read up to and including its NUL.
    let args = Strings::new(&arg_bytes).ok_or(Errno::EFAULT)?;
    let envs = Strings::new(&env_bytes).ok_or(Errno::EFAULT)?;
    let mut space = uspace::new_space().map_err(|_| Errno::ENOMEM)?;
    let start = match exec::load(&mut space, &program, args, envs) {
        Ok(s) => s,
        Err(e) => {
            space.teardown(&mut KernelEnv);
            return Err(e);
        }
    };
    // Point of no return: the other threads go, then the old image; the
    // new one runs.
    if let Err(e) = proc::end_other_threads(task) {
        space.teardown(&mut KernelEnv);
        return Err(e);
    }
    // Linux's mm_release: a space another process still runs in (a
    // CLONE_VM parent) sees the clear-child-tid word zeroed and woken,
    // as at exit, before this process leaves it.
    if task.clear_child_tid != 0 && task.mm.as_ref().is_some_and(|m| Arc::strong_count(m) > 1) {
        let at = task.clear_child_tid;
        if uaccess::write_u32(task, at, 0).is_ok() {
            proc::futex::wake_address(task, at, 1);
        }
    }
    let new = proc::mm::Mm::new(space);
    new.activate();
    proc::publish_root(task.tgid, Some(new.root()));
    if let Some(old) = task.mm.replace(new)
        && let Some(old) = proc::mm::release(old)
    {
        proc::withdraw_root(old.root());
        old.teardown(&mut KernelEnv);
    }
    // A vfork parent goes on now that its space is free for it again.
    proc::vfork_release(task);
    task.uctx = crate::arch::UserContext::new(start.entry, start.sp);
    task.clear_child_tid = 0;
    // The old image's robust-futex list is gone with it (Linux's
    // futex_exec_release).
    proc::set_robust_list(task.pid, 0);
    proc::reset_handlers_on_exec(task.pid);
    proc::set_name(task.pid, program.name);
    // The return value lands in the fresh context's x0/rax: Linux starts
    // programs with it 0.
    Ok(0)
}
