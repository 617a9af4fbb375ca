//! The initial process stack Linux builds for `execve`, as bytes: argc,
//! the argv and envp pointer arrays, the auxiliary vector, and above them
//! the strings and the 16 random bytes `AT_RANDOM` points to.
//!
//! ```text
//!  top ->  8 zero bytes (end marker)
//!          execfn string, envp strings, argv strings (NUL-terminated)
//!          platform string, 16 random bytes
//!          padding to 16
//!          auxv (key, value) pairs ... AT_NULL
//!          envp[0..m], NULL
//!          argv[0..n], NULL
//!  sp  ->  argc                                   (sp is 16-byte aligned)
//! ```

use alloc::vec::Vec;

/// Auxiliary-vector keys (`AT_*`).
#[allow(missing_docs)]
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
    pub const MINSIGSTKSZ: u64 = 51;
}

/// Longest argument or environment string, its NUL included (Linux's
/// `MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Most bytes the strings (the program's path, arguments and environment,
/// each with its NUL) and the argv and envp pointers may take together:
/// Linux's limit, a quarter of the default 8 MiB stack rlimit
/// (`bprm_stack_limits`).
pub const MAX_ARG_BYTES: usize = 2 << 20;

/// The bytes of the pointer arrays for `argc` arguments and `envc`
/// environment strings, as Linux charges them against [`MAX_ARG_BYTES`]
/// (an empty argv is charged one pointer).
pub const fn pointer_bytes(argc: usize, envc: usize) -> usize {
    let n = if argc == 0 { 1 } else { argc };
    (n + envc) * 8
}

/// A list of strings as they lie on the stack: one after another, each
/// followed by its NUL (so no string contains a NUL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strings<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Strings<'a> {
    /// No strings.
    pub const EMPTY: Strings<'static> = Strings {
        bytes: &[],
        count: 0,
    };

    /// The strings in `bytes`, which must be empty or end with a NUL.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        if bytes.last().is_some_and(|&b| b != 0) {
            return None;
        }
        let count = bytes.iter().filter(|&&b| b == 0).count();
        Some(Strings { bytes, count })
    }

    /// How many strings.
    pub fn count(&self) -> usize {
        self.count
    }

    /// All of them with their NULs.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Where each string starts in [`Self::bytes`].
    fn starts(&self) -> impl Iterator<Item = usize> + 'a {
        let b = self.bytes;
        core::iter::once(0)
            .chain(
                b.iter()
                    .enumerate()
                    .filter(|(_, c)| **c == 0)
                    .map(|(i, _)| i + 1),
            )
            .take(self.count)
    }
}

/// `strs` joined as [`Strings`] lays them out (kernel-made lists: the
/// first process's arguments, tests).
pub fn join(strs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strs {
        out.extend_from_slice(s);
        out.push(0);
    }
    out
}

/// What goes on the stack.
pub struct StackSpec<'a> {
    /// One past the highest byte of the stack.
    pub top: u64,
    /// Arguments.
    pub argv: Strings<'a>,
    /// Environment strings (`KEY=value`).
    pub envp: Strings<'a>,
    /// `AT_EXECFN`: the program's path.
    pub execfn: &'a [u8],
    /// `AT_PLATFORM` (`"aarch64"`, `"x86_64"`).
    pub platform: &'a [u8],
    /// The 16 bytes `AT_RANDOM` points to.
    pub random: [u8; 16],
    /// Every other auxv entry; `AT_RANDOM`, `AT_EXECFN`, `AT_PLATFORM` and
    /// `AT_NULL` are added here.
    pub aux: &'a [(u64, u64)],
}

/// The built stack: write `bytes` at `sp`, start the program with that `sp`.
#[derive(Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The initial stack pointer (16-byte aligned), where argc lives.
    pub sp: u64,
    /// The contents of `[sp, top)`.
    pub bytes: Vec<u8>,
}

/// Why no stack was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The strings and pointers exceed [`MAX_ARG_BYTES`] or a string
    /// [`MAX_ARG_STRLEN`]: Linux's `E2BIG`.
    TooBig,
    /// No memory for the image: `ENOMEM`.
    NoMemory,
}

/// Lays out the stack described by `spec`. The only allocation is the
/// image itself, and its failure is an error, not an abort.
pub fn build(spec: &StackSpec<'_>) -> Result<InitialStack, StackError> {
    let (argv, envp) = (spec.argv, spec.envp);
    let strings = argv.bytes.len() + envp.bytes.len() + spec.execfn.len() + 1;
    if strings + pointer_bytes(argv.count, envp.count) > MAX_ARG_BYTES
        || spec.execfn.len() >= MAX_ARG_STRLEN
    {
        return Err(StackError::TooBig);
    }
    // Upwards from the lowest: the random bytes, the platform, the
    // arguments, the environment, the path, then the 8-byte end marker
    // at the top.
    let execfn = spec.top - 8 - (spec.execfn.len() as u64 + 1);
    let envp_at = execfn - envp.bytes.len() as u64;
    let argv_at = envp_at - argv.bytes.len() as u64;
    let platform = argv_at - (spec.platform.len() as u64 + 1);
    let random = platform - 16;
    let strings_bottom = random & !15;

    let extra = [
        (at::RANDOM, random),
        (at::EXECFN, execfn),
        (at::PLATFORM, platform),
        (at::NULL, 0),
    ];
    let words = 1 + (argv.count + 1) + (envp.count + 1) + 2 * (spec.aux.len() + extra.len());
    let sp = (strings_bottom - 8 * words as u64) & !15;

    let len = (spec.top - sp) as usize;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|_| StackError::NoMemory)?;
    // The NULs and the end marker come from the zero fill.
    bytes.resize(len, 0);
    let mut put = |at: u64, b: &[u8]| {
        let off = (at - sp) as usize;
        bytes[off..off + b.len()].copy_from_slice(b);
    };
    put(random, &spec.random);
    put(platform, spec.platform);
    put(argv_at, argv.bytes);
    put(envp_at, envp.bytes);
    put(execfn, spec.execfn);
    let mut slot = sp;
    let mut word = |w: u64| {
        put(slot, &w.to_le_bytes());
        slot += 8;
    };
    word(argv.count as u64);
    argv.starts().for_each(|o| word(argv_at + o as u64));
    word(0);
    envp.starts().for_each(|o| word(envp_at + o as u64));
    word(0);
    for &(k, v) in spec.aux.iter().chain(&extra) {
        word(k);
        word(v);
    }
    Ok(InitialStack { sp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(st: &InitialStack, va: u64) -> u64 {
        let o = (va - st.sp) as usize;
        u64::from_le_bytes(st.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(st: &InitialStack, va: u64) -> &[u8] {
        let o = (va - st.sp) as usize;
        let n = st.bytes[o..].iter().position(|&b| b == 0).unwrap();
        &st.bytes[o..o + n]
    }

    /// Reads the stack back the way a libc `_start` does.
    #[test]
    fn a_libc_start_finds_everything() {
        let top = 0x7fff_ffff_f000;
        let argv = join(&[b"init", b"-x", b""]);
        let envp = join(&[b"HOME=/", b"TERM=linux"]);
        let spec = StackSpec {
            top,
            argv: Strings::new(&argv).unwrap(),
            envp: Strings::new(&envp).unwrap(),
            execfn: b"/init",
            platform: b"x86_64",
            random: *b"0123456789abcdef",
            aux: &[(at::PAGESZ, 4096), (at::ENTRY, 0x40_1000)],
        };
        let st = build(&spec).unwrap();
        assert_eq!(st.sp % 16, 0);
        assert_eq!(st.sp + st.bytes.len() as u64, top);
        assert_eq!(word(&st, st.sp), 3, "argc");
        let argv = st.sp + 8;
        let got: Vec<&[u8]> = (0..3).map(|i| cstr(&st, word(&st, argv + 8 * i))).collect();
        assert_eq!(got, [&b"init"[..], b"-x", b""]);
        assert_eq!(word(&st, argv + 24), 0, "argv NULL");
        let envp = argv + 32;
        assert_eq!(cstr(&st, word(&st, envp)), b"HOME=/");
        assert_eq!(cstr(&st, word(&st, envp + 8)), b"TERM=linux");
        assert_eq!(word(&st, envp + 16), 0, "envp NULL");
        let mut auxv = std::collections::HashMap::new();
        let mut p = envp + 24;
        loop {
            let (k, v) = (word(&st, p), word(&st, p + 8));
            if k == at::NULL {
                break;
            }
            auxv.insert(k, v);
            p += 16;
        }
        assert_eq!(auxv[&at::PAGESZ], 4096);
        assert_eq!(auxv[&at::ENTRY], 0x40_1000);
        let r = auxv[&at::RANDOM];
        let o = (r - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 16], b"0123456789abcdef");
        assert_eq!(cstr(&st, auxv[&at::EXECFN]), b"/init");
        assert_eq!(cstr(&st, auxv[&at::PLATFORM]), b"x86_64");
        assert_eq!(word(&st, top - 8), 0, "end marker");
    }

    #[test]
    fn alignment_holds_for_every_count() {
        for n in 0..6 {
            let args: Vec<&[u8]> = (0..n).map(|_| &b"abc"[..]).collect();
            let joined = join(&args);
            let st = build(&StackSpec {
                top: 0x1_0000,
                argv: Strings::new(&joined).unwrap(),
                envp: Strings::EMPTY,
                execfn: b"x",
                platform: b"aarch64",
                random: [7; 16],
                aux: &[],
            })
            .unwrap();
            assert_eq!(st.sp % 16, 0, "{n} args");
            assert_eq!(word(&st, st.sp), n as u64);
        }
    }

    fn spec_with<'a>(argv: &'a [u8], envp: &'a [u8], execfn: &'a [u8]) -> StackSpec<'a> {
        StackSpec {
            top: 0x100_0000,
            argv: Strings::new(argv).unwrap(),
            envp: Strings::new(envp).unwrap(),
            execfn,
            platform: b"x",
            random: [0; 16],
            aux: &[],
        }
    }

    /// Linux's limit counts the path, every string with its NUL and one
    /// pointer per string: exactly at it builds, one byte over is E2BIG.
    #[test]
    fn the_limit_is_linuxs_to_the_byte() {
        let execfn = b"/p";
        // Two arguments, one environment string: 3 pointers.
        let fixed = execfn.len() + 1 + pointer_bytes(2, 1);
        let room = MAX_ARG_BYTES - fixed;
        // "a" + NUL, then the rest split into the second argument and the
        // environment string.
        let rest = room - 2;
        let (b, e) = (rest / 2, rest - rest / 2);
        let mut argv = join(&[b"a"]);
        argv.extend(core::iter::repeat_n(b'b', b - 1));
        argv.push(0);
        let mut envp = vec![b'e'; e - 1];
        envp.push(0);
        let st = build(&spec_with(&argv, &envp, execfn)).unwrap();
        assert_eq!(word(&st, st.sp), 2);
        assert_eq!(cstr(&st, word(&st, st.sp + 16)).len(), b - 1);
        assert_eq!(cstr(&st, word(&st, st.sp + 32)).len(), e - 1);
        envp.insert(0, b'e');
        assert_eq!(
            build(&spec_with(&argv, &envp, execfn)),
            Err(StackError::TooBig)
        );
    }

    /// Empty strings cost their NUL and their pointer: the count is
    /// bounded by the bytes, with no limit of its own.
    #[test]
    fn many_empty_strings_fit_until_their_pointers_do_not() {
        let fits = (MAX_ARG_BYTES - 3) / 9;
        let argv = vec![0u8; fits];
        let st = build(&spec_with(&argv, &[], b"x")).unwrap();
        assert_eq!(word(&st, st.sp), fits as u64);
        let last = word(&st, st.sp + 8 * fits as u64);
        assert_eq!(cstr(&st, last), b"");
        assert_eq!(word(&st, st.sp + 8 * (fits as u64 + 1)), 0, "argv NULL");
        let argv = vec![0u8; fits + 1];
        assert_eq!(build(&spec_with(&argv, &[], b"x")), Err(StackError::TooBig));
    }

    #[test]
    fn strings_must_end_with_their_nul() {
        assert_eq!(Strings::new(b"ab"), None);
        assert_eq!(Strings::new(b"a\0b").map(|s| s.count()), None);
        assert_eq!(Strings::new(b"a\0\0b\0").map(|s| s.count()), Some(3));
        assert_eq!(Strings::new(b"").map(|s| s.count()), Some(0));
    }
}
