//! Signal numbers (the same on arm64 and x86-64), their default actions,
//! and the status words `wait4` reports.

/// A signal number, 1..=64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(pub u8);

#[allow(missing_docs)]
impl Signal {
    pub const SIGHUP: Signal = Signal(1);
    pub const SIGINT: Signal = Signal(2);
    pub const SIGQUIT: Signal = Signal(3);
    pub const SIGILL: Signal = Signal(4);
    pub const SIGTRAP: Signal = Signal(5);
    pub const SIGABRT: Signal = Signal(6);
    pub const SIGBUS: Signal = Signal(7);
    pub const SIGFPE: Signal = Signal(8);
    pub const SIGKILL: Signal = Signal(9);
    pub const SIGUSR1: Signal = Signal(10);
    pub const SIGSEGV: Signal = Signal(11);
    pub const SIGUSR2: Signal = Signal(12);
    pub const SIGPIPE: Signal = Signal(13);
    pub const SIGALRM: Signal = Signal(14);
    pub const SIGTERM: Signal = Signal(15);
    pub const SIGCHLD: Signal = Signal(17);
    pub const SIGCONT: Signal = Signal(18);
    pub const SIGSTOP: Signal = Signal(19);
    pub const SIGTSTP: Signal = Signal(20);
    pub const SIGTTIN: Signal = Signal(21);
    pub const SIGTTOU: Signal = Signal(22);
    pub const SIGURG: Signal = Signal(23);
    pub const SIGWINCH: Signal = Signal(28);
    /// Highest valid signal number.
    pub const MAX: u8 = 64;
}

/// What a signal does when nothing handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Ends the process.
    Terminate,
    /// Ends the process and (where enabled) dumps core.
    Core,
    /// Nothing happens.
    Ignore,
    /// Stops the process (job control; Folium treats it as ignored).
    Stop,
    /// Resumes a stopped process.
    Continue,
}

impl Signal {
    /// A valid signal number, or `None` (0 is "check only" for kill).
    pub fn new(n: u64) -> Option<Signal> {
        (1..=u64::from(Signal::MAX))
            .contains(&n)
            .then_some(Signal(n as u8))
    }

    /// The default action (Linux `signal(7)`).
    pub fn default_action(self) -> DefaultAction {
        match self.0 {
            3..=8 | 11 | 24 | 25 | 31 => DefaultAction::Core,
            17 | 23 | 28 => DefaultAction::Ignore,
            19..=22 => DefaultAction::Stop,
            18 => DefaultAction::Continue,
            _ => DefaultAction::Terminate,
        }
    }

    /// True for SIGKILL and SIGSTOP, which can be neither caught nor ignored.
    pub fn is_unblockable(self) -> bool {
        self == Signal::SIGKILL || self == Signal::SIGSTOP
    }
}

/// How a child ended, as `wait4` encodes it in its status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`: WIFEXITED, WEXITSTATUS = code & 0xff.
    Exited(u8),
    /// Killed by a signal: WIFSIGNALED, WTERMSIG; `core` sets WCOREDUMP.
    Signaled {
        /// The signal.
        signal: Signal,
        /// A core was dumped (never, in Folium: RLIMIT_CORE is 0).
        core: bool,
    },
}

impl ExitStatus {
    /// The status word (`(code << 8)`, or `signo | 0x80 if core`).
    pub fn wait_status(self) -> u32 {
        match self {
            ExitStatus::Exited(code) => u32::from(code) << 8,
            ExitStatus::Signaled { signal, core } => {
                u32::from(signal.0) | if core { 0x80 } else { 0 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_match_the_libc_macros() {
        let w = ExitStatus::Exited(3).wait_status();
        assert_eq!(w & 0x7f, 0, "WIFEXITED");
        assert_eq!((w >> 8) & 0xff, 3, "WEXITSTATUS");
        let w = ExitStatus::Signaled {
            signal: Signal::SIGSEGV,
            core: false,
        }
        .wait_status();
        assert!((w & 0x7f) != 0 && (w & 0x7f) != 0x7f, "WIFSIGNALED");
        assert_eq!(w & 0x7f, 11, "WTERMSIG");
        assert_eq!(w & 0x80, 0, "no WCOREDUMP");
    }

    #[test]
    fn default_actions() {
        assert_eq!(Signal::SIGSEGV.default_action(), DefaultAction::Core);
        assert_eq!(Signal::SIGKILL.default_action(), DefaultAction::Terminate);
        assert_eq!(Signal::SIGTERM.default_action(), DefaultAction::Terminate);
        assert_eq!(Signal::SIGCHLD.default_action(), DefaultAction::Ignore);
        assert_eq!(Signal::new(0), None);
        assert_eq!(Signal::new(65), None);
        assert_eq!(Signal::new(64), Some(Signal(64)));
    }
}
