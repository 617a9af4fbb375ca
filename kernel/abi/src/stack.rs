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

use alloc::vec;
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

/// Most bytes of argument and environment strings accepted (Linux's
/// default `ARG_MAX` is a quarter of the 8 MiB stack limit; this is less).
pub const MAX_STRINGS: usize = 128 << 10;

/// What goes on the stack.
pub struct StackSpec<'a> {
    /// One past the highest byte of the stack.
    pub top: u64,
    /// Arguments (without NULs; one is added to each).
    pub argv: &'a [&'a [u8]],
    /// Environment strings (`KEY=value`).
    pub envp: &'a [&'a [u8]],
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

/// The strings do not fit ([`MAX_STRINGS`]): Linux's `E2BIG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooBig;

/// Lays out the stack described by `spec`.
pub fn build<'a>(spec: &StackSpec<'a>) -> Result<InitialStack, TooBig> {
    let strings: usize = spec
        .argv
        .iter()
        .chain(spec.envp)
        .chain([&spec.execfn, &spec.platform])
        .map(|s| s.len() + 1)
        .sum();
    if strings > MAX_STRINGS {
        return Err(TooBig);
    }
    // Strings and random bytes, placed downwards from the end marker.
    let mut blobs: Vec<(u64, &[u8])> = Vec::new();
    let mut cursor = spec.top - 8;
    let random_bytes = spec.random;
    let mut place = |s: &'a [u8], nul: bool| -> u64 {
        cursor -= s.len() as u64 + u64::from(nul);
        blobs.push((cursor, s));
        cursor
    };
    let execfn = place(spec.execfn, true);
    let envp: Vec<u64> = spec.envp.iter().rev().map(|e| place(e, true)).collect();
    let argv: Vec<u64> = spec.argv.iter().rev().map(|a| place(a, true)).collect();
    let platform = place(spec.platform, true);
    let random = place(&[0; 16], false);
    let strings_bottom = cursor & !15;

    let mut aux: Vec<(u64, u64)> = spec.aux.to_vec();
    aux.extend([
        (at::RANDOM, random),
        (at::EXECFN, execfn),
        (at::PLATFORM, platform),
        (at::NULL, 0),
    ]);
    let words = 1 + (argv.len() + 1) + (envp.len() + 1) + 2 * aux.len();
    let sp = (strings_bottom - 8 * words as u64) & !15;

    let mut bytes = vec![0u8; (spec.top - sp) as usize];
    let mut put = |at: u64, b: &[u8]| {
        let off = (at - sp) as usize;
        bytes[off..off + b.len()].copy_from_slice(b);
    };
    // The NULs are already there: the buffer starts zeroed.
    for (at, s) in &blobs {
        put(*at, s);
    }
    put(random, &random_bytes);
    let mut table: Vec<u64> = Vec::with_capacity(words);
    table.push(spec.argv.len() as u64);
    table.extend(argv.iter().rev());
    table.push(0);
    table.extend(envp.iter().rev());
    table.push(0);
    for (k, v) in aux {
        table.extend([k, v]);
    }
    for (i, w) in table.iter().enumerate() {
        put(sp + 8 * i as u64, &w.to_le_bytes());
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
        let spec = StackSpec {
            top,
            argv: &[b"init", b"-x", b""],
            envp: &[b"HOME=/", b"TERM=linux"],
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
            let st = build(&StackSpec {
                top: 0x1_0000,
                argv: &args,
                envp: &[],
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

    #[test]
    fn huge_arguments_are_refused() {
        let big = vec![b'a'; MAX_STRINGS];
        let r = build(&StackSpec {
            top: 0x100_0000,
            argv: &[&big],
            envp: &[],
            execfn: b"x",
            platform: b"x",
            random: [0; 16],
            aux: &[],
        });
        assert_eq!(r, Err(TooBig));
    }
}
