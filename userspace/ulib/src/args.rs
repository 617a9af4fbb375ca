//! The initial stack as the program sees it: arguments, environment and
//! the auxiliary vector.

use core::ffi::CStr;

/// argc/argv/envp/auxv from the initial stack.
pub struct Args {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
    auxv: *const u64,
}

impl Args {
    /// Reads the stack layout at `sp`.
    ///
    /// # Safety
    ///
    /// `sp` must be the initial stack pointer the kernel handed to `_start`,
    /// and that memory must stay untouched while `Args` is used.
    pub unsafe fn from_initial_stack(sp: *const u64) -> Args {
        // SAFETY: per the ABI, argc is at sp, argv follows with a NULL
        // terminator, then envp with a NULL terminator, then auxv.
        unsafe {
            let argc = *sp as usize;
            let argv = sp.add(1) as *const *const u8;
            let envp = argv.add(argc + 1);
            let mut p = envp;
            while !(*p).is_null() {
                p = p.add(1);
            }
            Args {
                argc,
                argv,
                envp,
                auxv: p.add(1) as *const u64,
            }
        }
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.argc
    }

    /// True if there are no arguments (not even `argv[0]`).
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i` as bytes.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: i < argc, so argv[i] is a valid NUL-terminated string.
        Some(unsafe { CStr::from_ptr((*self.argv.add(i)).cast()) }.to_bytes())
    }

    /// Argument `i` as a `&str` ("" if not UTF-8).
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.get(i).map(|b| core::str::from_utf8(b).unwrap_or(""))
    }

    /// Every argument.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.argc).filter_map(|i| self.get(i))
    }

    /// The raw argv array (NULL-terminated), for `execve`.
    pub fn argv_ptr(&self) -> *const *const u8 {
        self.argv
    }

    /// The raw envp array (NULL-terminated), for `execve`.
    pub fn envp_ptr(&self) -> *const *const u8 {
        self.envp
    }

    /// The value of auxv entry `key`, if present.
    pub fn aux(&self, key: u64) -> Option<u64> {
        let mut p = self.auxv;
        loop {
            // SAFETY: the auxv is a list of (key, value) pairs ending with
            // AT_NULL, right after envp's NULL.
            let (k, v) = unsafe { (*p, *p.add(1)) };
            if k == 0 {
                return None;
            }
            if k == key {
                return Some(v);
            }
            // SAFETY: not yet at AT_NULL, so the next pair exists.
            p = unsafe { p.add(2) };
        }
    }
}
