//! Linux errno values (identical on arm64 and x86-64) and the encoding of
//! a failed syscall's return value (`-errno`).

/// A Linux error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub u16);

macro_rules! errnos {
    ($($name:ident = $v:literal, $doc:literal;)*) => {
        impl Errno {
            $(#[doc = $doc] pub const $name: Errno = Errno($v);)*

            /// The symbolic name (`"EFAULT"`), or `"E?"` for an unknown value.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($v => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted.";
    ENOENT = 2, "No such file or directory.";
    ESRCH = 3, "No such process.";
    EINTR = 4, "Interrupted system call.";
    EIO = 5, "I/O error.";
    E2BIG = 7, "Argument list too long.";
    ENOEXEC = 8, "Exec format error.";
    EBADF = 9, "Bad file descriptor.";
    ECHILD = 10, "No child processes.";
    EAGAIN = 11, "Try again.";
    ENOMEM = 12, "Out of memory.";
    EACCES = 13, "Permission denied.";
    EFAULT = 14, "Bad address.";
    EBUSY = 16, "Device or resource busy.";
    EEXIST = 17, "File exists.";
    ENODEV = 19, "No such device.";
    ENOTDIR = 20, "Not a directory.";
    EISDIR = 21, "Is a directory.";
    EINVAL = 22, "Invalid argument.";
    EMFILE = 24, "Too many open files.";
    ENOTTY = 25, "Not a typewriter.";
    ENOSPC = 28, "No space left on device.";
    ESPIPE = 29, "Illegal seek.";
    EROFS = 30, "Read-only file system.";
    EPIPE = 32, "Broken pipe.";
    ERANGE = 34, "Math result not representable.";
    ENAMETOOLONG = 36, "File name too long.";
    ENOSYS = 38, "Function not implemented.";
    ENOTSUP = 95, "Operation not supported.";
    ETIMEDOUT = 110, "Connection timed out.";
}

impl Errno {
    /// The syscall return value for this error: `-errno` as a register.
    #[inline]
    pub const fn to_ret(self) -> u64 {
        (-(self.0 as i64)) as u64
    }

    /// The error a raw syscall return value carries, if any (Linux returns
    /// -4095..=-1 for errors).
    #[inline]
    pub const fn from_ret(ret: u64) -> Option<Errno> {
        let v = ret as i64;
        if v < 0 && v >= -4095 {
            Some(Errno((-v) as u16))
        } else {
            None
        }
    }
}

/// A syscall's result: a non-negative value or an errno.
pub type SysResult = Result<u64, Errno>;

/// The register value that carries `r` back to user space.
#[inline]
pub const fn encode(r: SysResult) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => e.to_ret(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_return_register() {
        for e in [Errno::EPERM, Errno::EFAULT, Errno::ENOSYS, Errno(4095)] {
            assert_eq!(Errno::from_ret(e.to_ret()), Some(e));
        }
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret((-4096i64) as u64), None, "a large address");
        assert_eq!(encode(Err(Errno::EINVAL)), (-22i64) as u64);
        assert_eq!(Errno::ENOSYS.name(), "ENOSYS");
    }
}
