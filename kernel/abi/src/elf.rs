//! Static ELF64 executables: checking a file and planning its load.
//!
//! [`plan`] reads only the bytes it is given and bounds-checks every
//! field, so a truncated, corrupt or hostile file yields an [`ElfError`]
//! naming the reason, never a panic. The [`LoadPlan`] says where each
//! `PT_LOAD` segment goes (with the load bias applied for static-PIE
//! `ET_DYN` files), what the auxiliary vector must report, and where the
//! program break starts; the kernel then maps and copies.

use alloc::vec::Vec;
use core::fmt;

use crate::{Machine, PAGE_SIZE};

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
/// Size of one program header (`Elf64_Phdr`).
pub const PHDR_SIZE: u64 = 56;
const EHDR_SIZE: usize = 64;
/// At most this many program headers are read.
const MAX_PHDRS: u16 = 64;
/// Largest total size of the loaded segments accepted (1 GiB).
pub const MAX_IMAGE: u64 = 1 << 30;
/// Where a static-PIE (`ET_DYN`) program is placed: two thirds of a
/// 47-bit user space, page aligned, as Linux's `ELF_ET_DYN_BASE` on x86-64.
/// (Linux on arm64 uses two thirds of 48 bits; Folium gives user space 47
/// bits on both architectures.)
pub fn dyn_base(_m: Machine) -> u64 {
    0x5555_5555_4000
}

/// Why a file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than the ELF header.
    Truncated,
    /// No `\x7fELF` magic.
    NotElf,
    /// Not ELF64 little-endian, version 1.
    UnsupportedClass,
    /// Built for another machine (`e_machine`).
    WrongMachine(u16),
    /// Neither `ET_EXEC` nor `ET_DYN`.
    NotExecutable(u16),
    /// The program-header table lies outside the file or is malformed.
    BadProgramHeaders,
    /// Has a `PT_INTERP`: needs a dynamic linker, which Folium lacks.
    Dynamic,
    /// No `PT_LOAD` segment.
    NoLoadSegments,
    /// Segment `n`: file bytes outside the file, or `p_filesz > p_memsz`.
    BadSegment(usize),
    /// Segment `n`: `p_vaddr` and `p_offset` disagree modulo the page size.
    Misaligned(usize),
    /// Segment `n` reaches outside user space (or wraps).
    OutsideUser(usize),
    /// Segments `a` and `b` overlap in memory.
    Overlap(usize, usize),
    /// The segments add up to more than [`MAX_IMAGE`].
    TooLarge,
    /// The entry point is in no executable segment.
    BadEntry,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated => write!(f, "file shorter than an ELF header"),
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::UnsupportedClass => write!(f, "not a little-endian ELF64 file"),
            ElfError::WrongMachine(m) => write!(f, "built for another machine (e_machine {m})"),
            ElfError::NotExecutable(t) => write!(f, "not an executable (e_type {t})"),
            ElfError::BadProgramHeaders => write!(f, "program headers outside the file"),
            ElfError::Dynamic => write!(
                f,
                "dynamically linked (PT_INTERP); only static programs run"
            ),
            ElfError::NoLoadSegments => write!(f, "no PT_LOAD segment"),
            ElfError::BadSegment(n) => write!(f, "segment {n} lies outside the file"),
            ElfError::Misaligned(n) => write!(f, "segment {n}: vaddr and offset not congruent"),
            ElfError::OutsideUser(n) => write!(f, "segment {n} reaches outside user space"),
            ElfError::Overlap(a, b) => write!(f, "segments {a} and {b} overlap"),
            ElfError::TooLarge => write!(f, "segments larger than {} MiB", MAX_IMAGE >> 20),
            ElfError::BadEntry => write!(f, "entry point in no executable segment"),
        }
    }
}

/// Access a segment asks for (`p_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    /// `PF_R`.
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub exec: bool,
}

/// One `PT_LOAD` segment, bias applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte in memory.
    pub vaddr: u64,
    /// Bytes in memory (the rest past `filesz` is zero: `.bss`).
    pub memsz: u64,
    /// Offset of the file bytes.
    pub offset: u64,
    /// Bytes copied from the file.
    pub filesz: u64,
    /// Permissions.
    pub perms: Perms,
}

impl Segment {
    /// One past the last byte in memory.
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// What loading a checked program means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Added to every address of the file (0 for `ET_EXEC`).
    pub bias: u64,
    /// First instruction (`AT_ENTRY`).
    pub entry: u64,
    /// The `PT_LOAD` segments in file order.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (`AT_PHDR`), if mapped.
    pub phdr: u64,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u64,
    /// Page-aligned end of the highest segment: the initial program break.
    pub brk: u64,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Rounds up to a page; `None` on overflow.
fn page_up(v: u64) -> Option<u64> {
    Some(v.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

/// Checks `file` as a static executable for `machine` whose segments must
/// end at or below `user_end`, and plans its load.
pub fn plan(file: &[u8], machine: Machine, user_end: u64) -> Result<LoadPlan, ElfError> {
    if file.len() < EHDR_SIZE {
        return Err(if file.starts_with(b"\x7fELF") || file.len() < 4 {
            ElfError::Truncated
        } else {
            ElfError::NotElf
        });
    }
    if &file[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if file[4] != ELFCLASS64 || file[5] != ELFDATA2LSB || file[6] != EV_CURRENT {
        return Err(ElfError::UnsupportedClass);
    }
    let hdr = |off| u16_at(file, off).ok_or(ElfError::Truncated);
    let e_type = hdr(16)?;
    let e_machine = hdr(18)?;
    let want = match machine {
        Machine::Aarch64 => EM_AARCH64,
        Machine::X86_64 => EM_X86_64,
    };
    if e_machine != want {
        return Err(ElfError::WrongMachine(e_machine));
    }
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::NotExecutable(e_type));
    }
    let entry = u64_at(file, 24).ok_or(ElfError::Truncated)?;
    let phoff = u64_at(file, 32).ok_or(ElfError::Truncated)?;
    let phentsize = hdr(54)?;
    let phnum = hdr(56)?;
    if phnum == 0 || phnum > MAX_PHDRS || u64::from(phentsize) != PHDR_SIZE {
        return Err(ElfError::BadProgramHeaders);
    }
    let table_end = phoff
        .checked_add(u64::from(phnum) * PHDR_SIZE)
        .ok_or(ElfError::BadProgramHeaders)?;
    if table_end > file.len() as u64 {
        return Err(ElfError::BadProgramHeaders);
    }
    let bias = if e_type == ET_DYN {
        dyn_base(machine)
    } else {
        0
    };

    let mut segments = Vec::new();
    let mut phdr_vaddr = None;
    for i in 0..usize::from(phnum) {
        let p = phoff as usize + i * PHDR_SIZE as usize;
        let field32 = |off| u32_at(file, p + off).ok_or(ElfError::BadProgramHeaders);
        let field64 = |off| u64_at(file, p + off).ok_or(ElfError::BadProgramHeaders);
        match field32(0)? {
            PT_INTERP => return Err(ElfError::Dynamic),
            PT_PHDR => {
                phdr_vaddr = Some(field64(16)?);
                continue;
            }
            PT_LOAD => {}
            _ => continue,
        }
        let n = segments.len();
        let flags = field32(4)?;
        let (offset, vaddr) = (field64(8)?, field64(16)?);
        let (filesz, memsz) = (field64(32)?, field64(40)?);
        let file_end = offset.checked_add(filesz).ok_or(ElfError::BadSegment(n))?;
        if filesz > memsz || file_end > file.len() as u64 {
            return Err(ElfError::BadSegment(n));
        }
        if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
            return Err(ElfError::Misaligned(n));
        }
        if memsz > MAX_IMAGE {
            return Err(ElfError::TooLarge);
        }
        let start = vaddr.checked_add(bias).ok_or(ElfError::OutsideUser(n))?;
        let end = start
            .checked_add(memsz)
            .and_then(page_up)
            .ok_or(ElfError::OutsideUser(n))?;
        if start < PAGE_SIZE || end > user_end {
            return Err(ElfError::OutsideUser(n));
        }
        segments.push(Segment {
            vaddr: start,
            memsz,
            offset,
            filesz,
            perms: Perms {
                read: flags & 4 != 0,
                write: flags & 2 != 0,
                exec: flags & 1 != 0,
            },
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    let total: u64 = segments.iter().map(|s| s.memsz).sum();
    if total > MAX_IMAGE {
        return Err(ElfError::TooLarge);
    }
    // Bytes may not overlap; pages may be shared (the loader then gives the
    // shared page the union of both segments' permissions).
    for (a, sa) in segments.iter().enumerate() {
        for (b, sb) in segments.iter().enumerate().skip(a + 1) {
            if sa.memsz > 0 && sb.memsz > 0 && sa.vaddr < sb.end() && sb.vaddr < sa.end() {
                return Err(ElfError::Overlap(a, b));
            }
        }
    }
    let entry = entry.checked_add(bias).ok_or(ElfError::BadEntry)?;
    if !segments
        .iter()
        .any(|s| s.perms.exec && s.vaddr <= entry && entry < s.end())
    {
        return Err(ElfError::BadEntry);
    }
    // AT_PHDR: PT_PHDR if present, else the loaded bytes that hold the table.
    let phdr = match phdr_vaddr {
        Some(v) => v.wrapping_add(bias),
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && table_end <= s.offset + s.filesz)
            .map_or(0, |s| s.vaddr + (phoff - s.offset)),
    };
    let brk = segments
        .iter()
        .map(|s| page_up(s.end()).unwrap_or(user_end))
        .max()
        .unwrap_or(0);
    Ok(LoadPlan {
        bias,
        entry,
        segments,
        phdr,
        phnum: u64::from(phnum),
        brk,
    })
}

/// Builds a minimal valid ELF64 file for tests: one header, `segs`
/// program headers (type, flags, offset, vaddr, filesz, memsz) and the
/// file padded to `len` bytes.
#[cfg(test)]
pub(crate) fn build_test_elf(
    machine: u16,
    e_type: u16,
    entry: u64,
    segs: &[(u32, u32, u64, u64, u64, u64)],
    len: usize,
) -> Vec<u8> {
    let mut f = alloc::vec![0u8; len.max(64 + segs.len() * 56)];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = ELFCLASS64;
    f[5] = ELFDATA2LSB;
    f[6] = EV_CURRENT;
    f[16..18].copy_from_slice(&e_type.to_le_bytes());
    f[18..20].copy_from_slice(&machine.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    for (i, &(ty, flags, off, va, filesz, memsz)) in segs.iter().enumerate() {
        let p = 64 + i * 56;
        f[p..p + 4].copy_from_slice(&ty.to_le_bytes());
        f[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
        f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
        f[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
        f[p + 24..p + 32].copy_from_slice(&va.to_le_bytes());
        f[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
        f[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        f[p + 48..p + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USER_END: u64 = 1 << 47;
    const RX: u32 = 5;
    const RW: u32 = 6;

    fn good() -> Vec<u8> {
        build_test_elf(
            EM_X86_64,
            ET_EXEC,
            0x40_1000,
            &[
                (PT_LOAD, 4, 0, 0x40_0000, 0x200, 0x200),
                (PT_LOAD, RX, 0x1000, 0x40_1000, 0x100, 0x100),
                (PT_LOAD, RW, 0x2000, 0x40_3000, 0x10, 0x5000),
            ],
            0x3000,
        )
    }

    #[test]
    fn plans_a_static_executable() {
        let p = plan(&good(), Machine::X86_64, USER_END).unwrap();
        assert_eq!(p.bias, 0);
        assert_eq!(p.entry, 0x40_1000);
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.phdr, 0x40_0040, "headers inside the first segment");
        assert_eq!(p.phnum, 3);
        assert_eq!(p.brk, 0x40_8000);
        assert!(p.segments[2].perms.write && !p.segments[2].perms.exec);
    }

    #[test]
    fn pt_phdr_names_the_headers_and_loads_nothing() {
        let f = build_test_elf(
            EM_X86_64,
            ET_EXEC,
            0x40_1000,
            &[
                (PT_PHDR, 4, 0x40, 0x40_0040, 0xa8, 0xa8),
                (PT_LOAD, 4, 0, 0x40_0000, 0x200, 0x200),
                (PT_LOAD, RX, 0x1000, 0x40_1000, 0x100, 0x100),
            ],
            0x2000,
        );
        let p = plan(&f, Machine::X86_64, USER_END).unwrap();
        assert_eq!(p.segments.len(), 2, "PT_PHDR is not a load segment");
        assert_eq!(p.phdr, 0x40_0040);
        assert_eq!(p.phnum, 3);
    }

    #[test]
    fn static_pie_is_biased() {
        let mut f = good();
        f[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        let p = plan(&f, Machine::X86_64, USER_END).unwrap();
        let base = dyn_base(Machine::X86_64);
        assert_eq!(p.bias, base);
        assert_eq!(p.entry, base + 0x40_1000);
        assert_eq!(p.segments[0].vaddr, base + 0x40_0000);
    }

    #[test]
    fn refuses_with_a_reason() {
        let f = good();
        assert_eq!(
            plan(&f[..40], Machine::X86_64, USER_END),
            Err(ElfError::Truncated)
        );
        assert_eq!(
            plan(b"#!/bin/sh\n", Machine::X86_64, USER_END),
            Err(ElfError::NotElf)
        );
        assert_eq!(
            plan(&f, Machine::Aarch64, USER_END),
            Err(ElfError::WrongMachine(EM_X86_64))
        );
        // The program headers cut off.
        assert_eq!(
            plan(&f[..64 + 56], Machine::X86_64, USER_END),
            Err(ElfError::BadProgramHeaders)
        );
        let seg = |segs: &[(u32, u32, u64, u64, u64, u64)], entry| {
            plan(
                &build_test_elf(EM_X86_64, ET_EXEC, entry, segs, 0x3000),
                Machine::X86_64,
                USER_END,
            )
        };
        assert_eq!(
            seg(
                &[(PT_LOAD, RX, 0x1000, 0x40_1000, 0x5000, 0x5000)],
                0x40_1000
            ),
            Err(ElfError::BadSegment(0)),
            "file bytes past the end"
        );
        assert_eq!(
            seg(&[(PT_LOAD, RX, 0x1000, 0x40_1000, 0x200, 0x100)], 0x40_1000),
            Err(ElfError::BadSegment(0)),
            "filesz > memsz"
        );
        assert_eq!(
            seg(&[(PT_LOAD, RX, 0x1000, 0x40_1800, 0x100, 0x100)], 0x40_1800),
            Err(ElfError::Misaligned(0))
        );
        assert_eq!(
            seg(
                &[(PT_LOAD, RX, 0x1000, 0xffff_8000_0000_1000, 0x100, 0x100)],
                0x1000
            ),
            Err(ElfError::OutsideUser(0)),
            "kernel half"
        );
        assert_eq!(
            seg(
                &[(PT_LOAD, RX, 0x1000, 0x7fff_ffff_f000, 0x100, 0x2000)],
                0x7fff_ffff_f000
            ),
            Err(ElfError::OutsideUser(0)),
            "crosses the top of user space"
        );
        assert_eq!(
            seg(
                &[(PT_LOAD, RX, 0x1000, 0xffff_ffff_ffff_f000, 0x100, 0x2000)],
                0
            ),
            Err(ElfError::OutsideUser(0)),
            "wraps"
        );
        assert_eq!(
            seg(&[(PT_LOAD, RX, 0x1000, 0x1000, 0x100, 1 << 40)], 0x1000),
            Err(ElfError::TooLarge)
        );
        assert_eq!(
            seg(
                &[
                    (PT_LOAD, RX, 0x1000, 0x40_1000, 0x100, 0x2000),
                    (PT_LOAD, RW, 0x2000, 0x40_2000, 0x10, 0x10)
                ],
                0x40_1000
            ),
            Err(ElfError::Overlap(0, 1))
        );
        assert_eq!(
            seg(&[(PT_LOAD, RW, 0x1000, 0x40_1000, 0x100, 0x100)], 0x40_1000),
            Err(ElfError::BadEntry),
            "entry in a non-executable segment"
        );
        assert_eq!(
            seg(&[(PT_INTERP, 4, 0x1000, 0, 0x10, 0x10)], 0),
            Err(ElfError::Dynamic)
        );
        assert_eq!(seg(&[(4, 4, 0, 0, 0, 0)], 0), Err(ElfError::NoLoadSegments));
        let mut f = good();
        f[16..18].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            plan(&f, Machine::X86_64, USER_END),
            Err(ElfError::NotExecutable(1)),
            "a relocatable object"
        );
    }

    #[test]
    fn shared_boundary_pages_are_allowed() {
        // Text ends mid-page and data starts later in the same page.
        let p = plan(
            &build_test_elf(
                EM_AARCH64,
                ET_EXEC,
                0x40_0100,
                &[
                    (PT_LOAD, RX, 0, 0x40_0000, 0x800, 0x800),
                    (PT_LOAD, RW, 0x800, 0x40_0800, 0x100, 0x300),
                ],
                0x1000,
            ),
            Machine::Aarch64,
            USER_END,
        )
        .unwrap();
        assert_eq!(p.brk, 0x40_1000);
    }

    proptest! {
        /// Any corruption of a valid file is refused or planned, never a panic,
        /// and a plan never reaches outside user space.
        #[test]
        fn corrupted_files_never_panic(
            flips in proptest::collection::vec((0usize..0x200, any::<u8>()), 1..12),
            cut in 0usize..0x3000,
        ) {
            let mut f = good();
            for (at, v) in flips {
                f[at] = v;
            }
            f.truncate(cut.max(1));
            if let Ok(p) = plan(&f, Machine::X86_64, USER_END) {
                for s in &p.segments {
                    prop_assert!(s.end() <= USER_END && s.vaddr >= PAGE_SIZE);
                    prop_assert!(s.offset + s.filesz <= f.len() as u64);
                }
            }
        }
    }
}
