//! The rest: uname, getrandom, rlimits, TLS, signal dispositions, reboot.

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_abi::signal::Signal;
use folium_abi::structs::{Rlimit, Utsname};

use crate::proc::{self, Task};
use crate::uaccess;

pub fn uname(task: &mut Task, buf: u64) -> SysResult {
    let u = Utsname {
        sysname: "Linux",
        nodename: "folium",
        release: "6.12.0-folium",
        version: concat!("#1 Folium ", env!("CARGO_PKG_VERSION")),
        machine: if cfg!(target_arch = "aarch64") {
            "aarch64"
        } else {
            "x86_64"
        },
    };
    uaccess::copy_out(task, buf, &u.to_bytes())?;
    Ok(0)
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

pub fn getrandom(task: &mut Task, buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE)
    {
        return Err(Errno::EINVAL);
    }
    let len = len.min(32 << 20);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        // Every 4 KiB (as Linux's `get_random_bytes_user`): a preemption
        // point, and a process being killed stops with what it has.
        if done > 0 && done.is_multiple_of(4096) {
            proc::cond_resched(task);
            if proc::fatal_signal_pending() {
                return Ok(done);
            }
        }
        let n = (len - done).min(256) as usize;
        crate::rng::fill(&mut chunk[..n]);
        if let Err(e) = uaccess::copy_out(task, buf + done, &chunk[..n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n as u64;
    }
    Ok(done)
}

pub fn prlimit64(task: &mut Task, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != u64::from(task.pid) {
        // Other processes' limits: Folium keeps them per process but only
        // lets a process read and set its own.
        return Err(Errno::EPERM);
    }
    let r = usize::try_from(resource)
        .ok()
        .filter(|&r| r < task.rlimits.len())
        .ok_or(Errno::EINVAL)?;
    let (cur, max) = task.rlimits[r];
    if old != 0 {
        uaccess::copy_out(task, old, &Rlimit { cur, max }.to_bytes())?;
    }
    if new != 0 {
        let mut b = [0u8; 16];
        uaccess::copy_in(task, &mut b, new)?;
        let cur = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let max = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        if cur > max {
            return Err(Errno::EINVAL);
        }
        task.rlimits[r] = (cur, max);
    }
    Ok(0)
}

const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;

pub fn arch_prctl(task: &mut Task, code: u64, addr: u64) -> SysResult {
    if !cfg!(target_arch = "x86_64") {
        return Err(Errno::ENOSYS);
    }
    match code {
        ARCH_SET_FS => {
            if addr >= crate::arch::USER_TOP {
                return Err(Errno::EPERM);
            }
            task.uctx.set_tls(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            uaccess::copy_out(task, addr, &task.uctx.tls().to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn rt_sigaction(task: &mut Task, sig: u64, act: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let s = Signal::new(sig).ok_or(Errno::EINVAL)?;
    if act != 0 && s.is_unblockable() {
        return Err(Errno::EINVAL);
    }
    let mut new = None;
    if act != 0 {
        let mut b = [0u8; 32];
        uaccess::copy_in(task, &mut b, act)?;
        let mut a = [0u64; 4];
        for (i, w) in a.iter_mut().enumerate() {
            *w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        }
        new = Some(a);
    }
    if old != 0 {
        // Check the destination before changing anything.
        let cur = proc::sigaction(task.pid, s, None);
        let mut b = [0u8; 32];
        for (i, w) in cur.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        uaccess::copy_out(task, old, &b)?;
    }
    proc::sigaction(task.pid, s, new);
    Ok(0)
}

pub fn rt_sigprocmask(task: &mut Task, how: u64, set: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let v = if set != 0 {
        if how > 2 {
            return Err(Errno::EINVAL);
        }
        Some(uaccess::read_u64(task, set)?)
    } else {
        None
    };
    let prev = proc::sigprocmask(task.pid, |m| match (v, how) {
        (None, _) => m,
        (Some(v), 0) => m | v,
        (Some(v), 1) => m & !v,
        (Some(v), _) => v,
    });
    if old != 0 {
        uaccess::copy_out(task, old, &prev.to_le_bytes())?;
    }
    Ok(0)
}

const MAGIC1: u64 = 0xfee1_dead;
const MAGIC2: [u64; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
const CMD_RESTART: u64 = 0x0123_4567;
const CMD_HALT: u64 = 0xcdef_0123;
const CMD_POWER_OFF: u64 = 0x4321_fedc;
const CMD_CAD_ON: u64 = 0x89ab_cdef;
const CMD_CAD_OFF: u64 = 0;

pub fn reboot(m1: u64, m2: u64, cmd: u64) -> SysResult {
    if m1 as u32 as u64 != MAGIC1 || !MAGIC2.contains(&(m2 as u32 as u64)) {
        return Err(Errno::EINVAL);
    }
    match cmd as u32 as u64 {
        CMD_POWER_OFF | CMD_HALT | CMD_RESTART => {
            println!("folium: reboot({cmd:#x}) requested, powering off");
            crate::arch::exit_qemu(crate::arch::Exit::Success)
        }
        CMD_CAD_ON | CMD_CAD_OFF => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}
