//! Structures syscalls copy between kernel and user space, serialised to
//! the exact bytes Linux uses on each architecture (no `unsafe`
//! transmutes: each writes its fields at their documented offsets).

use crate::Machine;

/// `struct timespec` (16 bytes on both 64-bit ABIs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: i64,
}

impl Timespec {
    /// The wire form.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }

    /// Parses the wire form.
    pub fn from_bytes(b: [u8; 16]) -> Timespec {
        let (s, n) = b.split_at(8);
        Timespec {
            sec: i64::from_le_bytes(s.try_into().unwrap_or_default()),
            nsec: i64::from_le_bytes(n.try_into().unwrap_or_default()),
        }
    }

    /// Nanoseconds, if the value is valid (`nsec` in range, `sec` >= 0)
    /// and fits a u64; Linux answers EINVAL otherwise.
    pub fn to_nanos(self) -> Option<u64> {
        if self.sec < 0 || !(0..1_000_000_000).contains(&self.nsec) {
            return None;
        }
        (self.sec as u64)
            .checked_mul(1_000_000_000)?
            .checked_add(self.nsec as u64)
    }

    /// From nanoseconds.
    pub fn from_nanos(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        }
    }
}

/// `struct utsname`: six 65-byte NUL-padded fields.
pub struct Utsname<'a> {
    /// `sysname`.
    pub sysname: &'a str,
    /// `nodename`.
    pub nodename: &'a str,
    /// `release`.
    pub release: &'a str,
    /// `version`.
    pub version: &'a str,
    /// `machine`.
    pub machine: &'a str,
}

impl Utsname<'_> {
    /// The 390-byte wire form (`domainname` left empty).
    pub fn to_bytes(&self) -> [u8; 390] {
        let mut b = [0u8; 390];
        let fields = [
            self.sysname,
            self.nodename,
            self.release,
            self.version,
            self.machine,
        ];
        for (i, f) in fields.iter().enumerate() {
            let n = f.len().min(64);
            b[i * 65..i * 65 + n].copy_from_slice(&f.as_bytes()[..n]);
        }
        b
    }
}

/// What `fstat` reports about a file, independent of layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// `st_nlink`.
    pub nlink: u32,
    /// `st_rdev`.
    pub rdev: u64,
    /// `st_size`.
    pub size: i64,
    /// `st_blksize`.
    pub blksize: i32,
}

/// `S_IFCHR`: a character device.
pub const S_IFCHR: u32 = 0o020000;
/// `S_IFREG`: a regular file.
pub const S_IFREG: u32 = 0o100000;

impl Stat {
    /// Bytes of `struct stat` on `m` (144 on x86-64, 128 on arm64).
    pub const fn size(m: Machine) -> usize {
        match m {
            Machine::X86_64 => 144,
            Machine::Aarch64 => 128,
        }
    }

    /// The wire form for `m` (times zero). Returns a buffer of 144 bytes
    /// of which the first [`Stat::size`]`(m)` are meaningful.
    pub fn to_bytes(&self, m: Machine) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        match m {
            // x86-64: nlink u64 @16, mode @24, uid @28, gid @32, rdev @40,
            // size @48, blksize i64 @56, blocks @64, times from @72.
            Machine::X86_64 => {
                put(16, &u64::from(self.nlink).to_le_bytes());
                put(24, &self.mode.to_le_bytes());
                put(40, &self.rdev.to_le_bytes());
                put(48, &self.size.to_le_bytes());
                put(56, &i64::from(self.blksize).to_le_bytes());
            }
            // asm-generic: mode @16, nlink u32 @20, uid @24, gid @28,
            // rdev @32, size @48, blksize i32 @56, blocks @64, times @72.
            Machine::Aarch64 => {
                put(16, &self.mode.to_le_bytes());
                put(20, &self.nlink.to_le_bytes());
                put(32, &self.rdev.to_le_bytes());
                put(48, &self.size.to_le_bytes());
                put(56, &self.blksize.to_le_bytes());
            }
        }
        b
    }
}

/// `struct rlimit64`: soft and hard limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// `rlim_cur`.
    pub cur: u64,
    /// `rlim_max`.
    pub max: u64,
}

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

impl Rlimit {
    /// The wire form.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.cur.to_le_bytes());
        b[8..].copy_from_slice(&self.max.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_validation() {
        assert_eq!(Timespec { sec: 1, nsec: 5 }.to_nanos(), Some(1_000_000_005));
        assert_eq!(Timespec { sec: -1, nsec: 0 }.to_nanos(), None);
        assert_eq!(
            Timespec {
                sec: 0,
                nsec: 1_000_000_000
            }
            .to_nanos(),
            None
        );
        assert_eq!(
            Timespec {
                sec: i64::MAX,
                nsec: 0
            }
            .to_nanos(),
            None
        );
        let t = Timespec::from_nanos(3_000_000_007);
        assert_eq!(Timespec::from_bytes(t.to_bytes()), t);
    }

    #[test]
    fn stat_layouts() {
        let s = Stat {
            mode: S_IFCHR | 0o620,
            nlink: 1,
            rdev: 0x8800,
            blksize: 1024,
            ..Stat::default()
        };
        let x = s.to_bytes(Machine::X86_64);
        assert_eq!(
            u32::from_le_bytes(x[24..28].try_into().unwrap()),
            S_IFCHR | 0o620
        );
        assert_eq!(u64::from_le_bytes(x[16..24].try_into().unwrap()), 1);
        let a = s.to_bytes(Machine::Aarch64);
        assert_eq!(
            u32::from_le_bytes(a[16..20].try_into().unwrap()),
            S_IFCHR | 0o620
        );
        assert_eq!(u32::from_le_bytes(a[20..24].try_into().unwrap()), 1);
        assert_eq!(i32::from_le_bytes(a[56..60].try_into().unwrap()), 1024);
    }

    #[test]
    fn utsname_fields_sit_65_bytes_apart() {
        let u = Utsname {
            sysname: "Linux",
            nodename: "folium",
            release: "6.12.0-folium",
            version: "#1",
            machine: "aarch64",
        }
        .to_bytes();
        assert_eq!(&u[..6], b"Linux\0");
        assert_eq!(&u[65..72], b"folium\0");
        assert_eq!(&u[260..268], b"aarch64\0");
    }
}
