//! What a round's child will do, derived from (seed, round) alone, so the
//! parent knows it without being told: how many syscalls its sequence
//! issues, and how it ends (its terminal act), which fixes the wait
//! statuses that are acceptable.

use folium_abi::signal::Signal;

use crate::rng::Rng;

/// How a child ends after its sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// Exits with its syscall count.
    Normal,
    /// `exit_group(code)`.
    Exit(u8),
    /// Loads from an address that is never mapped (NULL, the kernel half,
    /// a non-canonical address).
    WildLoad,
    /// Stores to an address that is never mapped.
    WildStore,
    /// Stores to one of its own read-only or PROT_NONE pages, or loads
    /// from a PROT_NONE page, or touches just past a mapping: a fault if
    /// the page is what the child believes, else it lives on.
    MaybeFault,
    /// Jumps to an address that is not executable.
    WildJump,
    /// Sends itself this signal.
    SelfKill(u8),
    /// An instruction that traps (undefined, breakpoint, x86 divide by
    /// zero, arm64 unaligned exclusive load).
    Trap(u8),
    /// Unmaps its own stack.
    UnmapStack,
    /// One syscall of any number in the table, random arguments (never
    /// one that reaches another process or exits).
    RandomSyscall,
}

/// A child's plan.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Syscalls its sequence issues (at most 250, its exit status).
    pub syscalls: u32,
    /// How it ends.
    pub terminal: Terminal,
}

/// The plan of `round` of run `seed`.
pub fn plan(seed: u64, round: u64) -> Plan {
    let mut r = Rng::new(seed, round, 1);
    let syscalls = 20 + r.below(200) as u32;
    let terminal = match r.below(100) {
        0..=59 => Terminal::Normal,
        60..=62 => Terminal::Exit(r.below(256) as u8),
        63..=67 => Terminal::WildLoad,
        68..=71 => Terminal::WildStore,
        72..=77 => Terminal::MaybeFault,
        78..=80 => Terminal::WildJump,
        81..=86 => Terminal::SelfKill(1 + r.below(64) as u8),
        87..=89 => Terminal::Trap(r.below(4) as u8),
        90..=91 => Terminal::UnmapStack,
        _ => Terminal::RandomSyscall,
    };
    Plan { syscalls, terminal }
}

/// Signals whose default action is to ignore (Linux): SIGCHLD, SIGCONT,
/// SIGURG, SIGWINCH.
pub const IGNORED_BY_DEFAULT: [u8; 4] = [17, 18, 23, 28];
/// Signals whose default action is to stop: SIGSTOP, SIGTSTP, SIGTTIN,
/// SIGTTOU.
pub const STOPPING: [u8; 4] = [19, 20, 21, 22];

/// SIGKILL: the OOM killer's signal, and the parent's for a child past
/// its deadline; acceptable for every plan.
pub const SIGKILL: u32 = Signal::SIGKILL.0 as u32;
const SIGILL: u32 = Signal::SIGILL.0 as u32;
const SIGTRAP: u32 = Signal::SIGTRAP.0 as u32;
const SIGBUS: u32 = Signal::SIGBUS.0 as u32;
const SIGFPE: u32 = Signal::SIGFPE.0 as u32;
const SIGSEGV: u32 = Signal::SIGSEGV.0 as u32;

/// How a child ended, from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Exited with this status.
    Exited(u32),
    /// Killed by this signal.
    Signaled(u32),
}

/// Why `end` is not an acceptable end for `plan`, if it is not.
pub fn check(plan: &Plan, end: End) -> Option<&'static str> {
    if end == End::Signaled(SIGKILL) {
        return None;
    }
    let faulted = matches!(end, End::Signaled(SIGSEGV | SIGBUS));
    let lived = end == End::Exited(plan.syscalls);
    let ok = match plan.terminal {
        Terminal::Normal => lived,
        Terminal::Exit(c) => end == End::Exited(u32::from(c)),
        Terminal::WildLoad | Terminal::WildStore | Terminal::WildJump | Terminal::UnmapStack => {
            faulted
        }
        Terminal::MaybeFault => faulted || lived,
        Terminal::SelfKill(s) => {
            if IGNORED_BY_DEFAULT.contains(&s) || STOPPING.contains(&s) {
                lived
            } else {
                end == End::Signaled(u32::from(s))
            }
        }
        Terminal::Trap(_) => {
            matches!(
                end,
                End::Signaled(SIGILL | SIGTRAP | SIGFPE | SIGBUS | SIGSEGV)
            )
        }
        Terminal::RandomSyscall => matches!(end, End::Exited(_) | End::Signaled(1..=64)),
    };
    (!ok).then_some(match plan.terminal {
        Terminal::Normal => "a child that should have lived ended otherwise",
        Terminal::Exit(_) => "exit_group's status was not reported",
        Terminal::MaybeFault => "a touch of its own memory ended it without a fault",
        Terminal::SelfKill(_) => "a signal to itself did not end it as its default action says",
        Terminal::Trap(_) => "a trapping instruction did not end it with a trap signal",
        Terminal::RandomSyscall => "a random syscall left an impossible wait status",
        _ => "a wild access did not end it with SIGSEGV or SIGBUS",
    })
}
