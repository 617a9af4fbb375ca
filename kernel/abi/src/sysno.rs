//! Syscall numbers: one arch-neutral [`Sysno`] and each architecture's
//! table (arm64 uses the generic table of `asm-generic/unistd.h`, x86-64
//! its own). A number that an architecture lacks (`fork` on arm64) is
//! absent from that table.

use crate::Machine;

macro_rules! syscalls {
    ($($name:ident = $a64:tt, $x64:tt;)*) => {
        /// A system call Folium knows by name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Sysno { $($name,)* }

        impl Sysno {
            /// Every known syscall.
            pub const ALL: &'static [Sysno] = &[$(Sysno::$name,)*];

            /// This syscall's number on `m`, if `m` has it.
            pub const fn number(self, m: Machine) -> Option<u64> {
                match (self, m) {
                    $(
                        (Sysno::$name, Machine::Aarch64) => syscalls!(@num $a64),
                        (Sysno::$name, Machine::X86_64) => syscalls!(@num $x64),
                    )*
                }
            }

            /// The Rust name of the variant (`SetRobustList`); see the
            /// `Display` impl for Linux's.
            const fn variant_name(self) -> &'static str {
                match self {
                    $(Sysno::$name => stringify!($name),)*
                }
            }

            /// The syscall number `n` means on `m`.
            pub fn from_number(n: u64, m: Machine) -> Option<Sysno> {
                match m {
                    Machine::Aarch64 => AARCH64.get(n as usize).copied().flatten(),
                    Machine::X86_64 => X86_64.get(n as usize).copied().flatten(),
                }
            }
        }

        const fn table(m: Machine) -> [Option<Sysno>; TABLE_LEN] {
            let mut t = [None; TABLE_LEN];
            let all = Sysno::ALL;
            let mut i = 0;
            while i < all.len() {
                if let Some(n) = all[i].number(m) {
                    t[n as usize] = Some(all[i]);
                }
                i += 1;
            }
            t
        }
    };
    (@num -) => { None };
    (@num $n:literal) => { Some($n) };
}

/// One more than the highest number in either table.
const TABLE_LEN: usize = 440;

static AARCH64: [Option<Sysno>; TABLE_LEN] = table(Machine::Aarch64);
static X86_64: [Option<Sysno>; TABLE_LEN] = table(Machine::X86_64);

syscalls! {
    Read = 63, 0;
    Write = 64, 1;
    Open = -, 2;
    Close = 57, 3;
    Stat = -, 4;
    Fstat = 80, 5;
    Lstat = -, 6;
    Poll = -, 7;
    Lseek = 62, 8;
    Mmap = 222, 9;
    Mprotect = 226, 10;
    Munmap = 215, 11;
    Brk = 214, 12;
    RtSigaction = 134, 13;
    RtSigprocmask = 135, 14;
    RtSigreturn = 139, 15;
    Ioctl = 29, 16;
    Pread64 = 67, 17;
    Readv = 65, 19;
    Writev = 66, 20;
    Access = -, 21;
    Pipe = -, 22;
    SchedYield = 124, 24;
    SchedSetaffinity = 122, 203;
    SchedGetaffinity = 123, 204;
    Getcpu = 168, 309;
    Mremap = 216, 25;
    Madvise = 233, 28;
    Dup = 23, 32;
    Nanosleep = 101, 35;
    Getpid = 172, 39;
    Clone = 220, 56;
    Fork = -, 57;
    Vfork = -, 58;
    Execve = 221, 59;
    Exit = 93, 60;
    Wait4 = 260, 61;
    Kill = 129, 62;
    Uname = 160, 63;
    Fcntl = 25, 72;
    Getcwd = 17, 79;
    Readlink = -, 89;
    Gettimeofday = 169, 96;
    Getrlimit = 163, 97;
    Getuid = 174, 102;
    Getgid = 176, 104;
    Geteuid = 175, 107;
    Getegid = 177, 108;
    Getppid = 173, 110;
    Sigaltstack = 132, 131;
    ArchPrctl = -, 158;
    Setrlimit = 164, 160;
    Reboot = 142, 169;
    Mount = 40, 165;
    Gettid = 178, 186;
    Tkill = 130, 200;
    Futex = 98, 202;
    SetTidAddress = 96, 218;
    ClockGettime = 113, 228;
    ClockGetres = 114, 229;
    ClockNanosleep = 115, 230;
    ExitGroup = 94, 231;
    Tgkill = 131, 234;
    Openat = 56, 257;
    Mkdirat = 34, 258;
    Newfstatat = 79, 262;
    Readlinkat = 78, 267;
    SetRobustList = 99, 273;
    GetRobustList = 100, 274;
    Dup3 = 24, 292;
    Prlimit64 = 261, 302;
    Getrandom = 278, 318;
    Rseq = 293, 334;
    Statx = 291, 332;
    Clone3 = 435, 435;
    Faccessat = 48, 269;
    Faccessat2 = 439, 439;
}

/// Linux's name of the syscall (`set_robust_list`, `rseq`, `wait4`): the
/// variant's words in lower case joined by `_`, which is how every name
/// in the tables above is spelled.
impl core::fmt::Display for Sysno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for (i, c) in self.variant_name().chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    f.write_char('_')?;
                }
                f.write_char(c.to_ascii_lowercase())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip() {
        for &s in Sysno::ALL {
            for m in [Machine::Aarch64, Machine::X86_64] {
                if let Some(n) = s.number(m) {
                    assert_eq!(Sysno::from_number(n, m), Some(s), "{s:?} on {m:?}");
                }
            }
        }
        // Spot checks against the published tables.
        assert_eq!(Sysno::from_number(64, Machine::Aarch64), Some(Sysno::Write));
        assert_eq!(Sysno::from_number(1, Machine::X86_64), Some(Sysno::Write));
        assert_eq!(
            Sysno::from_number(220, Machine::Aarch64),
            Some(Sysno::Clone)
        );
        assert_eq!(Sysno::from_number(57, Machine::X86_64), Some(Sysno::Fork));
        assert_eq!(Sysno::Fork.number(Machine::Aarch64), None);
        assert_eq!(Sysno::from_number(100_000, Machine::X86_64), None);
        assert_eq!(Sysno::from_number(0, Machine::Aarch64), None);
    }

    #[test]
    fn display_gives_linux_names() {
        let name = |s: Sysno| std::format!("{s}");
        assert_eq!(name(Sysno::SetRobustList), "set_robust_list");
        assert_eq!(name(Sysno::GetRobustList), "get_robust_list");
        assert_eq!(name(Sysno::Rseq), "rseq");
        assert_eq!(name(Sysno::Wait4), "wait4");
        assert_eq!(name(Sysno::Pread64), "pread64");
        assert_eq!(name(Sysno::RtSigaction), "rt_sigaction");
        assert_eq!(name(Sysno::ArchPrctl), "arch_prctl");
        assert_eq!(name(Sysno::Clone3), "clone3");
        // Every name is a C identifier in lower case, as Linux's are.
        for &s in Sysno::ALL {
            let n = name(s);
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{n}"
            );
            assert!(!n.starts_with('_') && !n.contains("__"), "{n}");
        }
        assert_eq!(
            Sysno::from_number(100, Machine::Aarch64),
            Some(Sysno::GetRobustList)
        );
        assert_eq!(
            Sysno::from_number(274, Machine::X86_64),
            Some(Sysno::GetRobustList)
        );
    }

    #[test]
    fn no_two_names_share_a_number() {
        for m in [Machine::Aarch64, Machine::X86_64] {
            let mut seen = std::collections::HashMap::new();
            for &s in Sysno::ALL {
                if let Some(n) = s.number(m) {
                    assert!(seen.insert(n, s).is_none(), "{m:?} {n} twice");
                }
            }
        }
    }
}
