//! `init`, the first process: runs the program named by its first
//! argument (`init=NAME args...` on the kernel command line) as its
//! child, reaps every process that ends (orphans are reparented to it),
//! prints each exit status, and exits with the program's status; the
//! kernel then powers off, successfully only if that status was 0.
//!
//! `init=A,B,...` runs several programs one after the other (each gets
//! the remaining arguments) and exits with the first non-zero status, or
//! 0: how a test boot runs more than one suite.
//!
//! After each program, once it and everything it started are reaped,
//! init runs the kernel's mm audit (`/sys/kernel/mm/folium/audit`) and
//! prints the result; a failed audit makes init's status 3 (unless the
//! program already failed).
#![no_std]
#![no_main]

use alloc::vec::Vec;
use folium_abi::Errno;
use folium_programs::{describe_status, exit_code};
use ulib::{println, sys};

extern crate alloc;

ulib::entry!(main);

fn main(args: &ulib::Args) -> i32 {
    let Some(names) = args.get(1) else {
        println!("init: no program to run (boot with init=NAME)");
        return 2;
    };
    let mut code = 0;
    for name in names.split(|&b| b == b',').filter(|n| !n.is_empty()) {
        let mut c = run(name, args);
        if !audit_after(name) && c == 0 {
            c = 3;
        }
        if code == 0 {
            code = c;
        }
    }
    code
}

/// Runs the kernel's mm audit once `name` and everything it started are
/// gone, and prints its first line (the whole report if it failed); false
/// if it found anything. Where there is no audit (Linux), true.
fn audit_after(name: &[u8]) -> bool {
    let Some(report) = folium_programs::mm_audit() else {
        return true;
    };
    let name = core::str::from_utf8(name).unwrap_or("?");
    let ok = report.starts_with("audit: ok");
    if ok {
        let totals = report.lines().nth(1).unwrap_or("");
        println!("init: mm audit after {name}: ok; {totals}");
    } else {
        println!("init: mm audit after {name} FAILED:");
        for l in report.lines() {
            println!("init:   {l}");
        }
    }
    ok
}

/// Runs `name` with `args`' arguments from the second on and reaps every
/// process that ends until none is left (the program's orphans too, so
/// the next program starts alone); the program's exit code.
fn run(name: &[u8], args: &ulib::Args) -> i32 {
    let mut path: Vec<u8> = Vec::with_capacity(name.len() + 2);
    if !name.starts_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path.push(0);
    let child = match sys::fork() {
        Ok(0) => {
            // The program's argv[0] is its path, not the whole list.
            // SAFETY: argv[1] exists (main read it), and the argv array
            // is writable memory on this process's initial stack, which
            // lives as long as the process; only this child, which execs
            // or exits right away, changes it.
            let argv = unsafe { args.argv_ptr().add(1) as *mut *const u8 };
            // SAFETY: as above; `path` outlives the execve call.
            unsafe { *argv = path.as_ptr() };
            // SAFETY: `path` is NUL-terminated; argv + 1 and envp are the
            // kernel-built NULL-terminated arrays of our own stack.
            let e = unsafe { sys::execve(&path, argv, args.envp_ptr()) };
            println!(
                "init: cannot run {}: {:?}",
                core::str::from_utf8(name).unwrap_or("?"),
                e.err().map(Errno::name)
            );
            sys::exit_group(127);
        }
        Ok(pid) => pid as i32,
        Err(e) => {
            println!("init: fork failed: {}", e.name());
            return 1;
        }
    };
    let mut code = 1;
    loop {
        match sys::wait4(-1, 0) {
            Ok((pid, status)) => {
                let (what, n) = describe_status(status);
                println!("init: pid {pid} {what} {n}");
                if pid == child {
                    code = exit_code(status);
                }
            }
            Err(Errno::ECHILD) => break,
            Err(e) => {
                println!("init: wait4 failed: {}", e.name());
                break;
            }
        }
    }
    code
}
