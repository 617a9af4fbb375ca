//! ELF64 -> raw binary, as `objcopy -O binary` would (no external tool),
//! and the check that a file is a program Folium can run.

use crate::build::Arch;

/// Checks that `elf` is a program Folium runs on `arch`: a little-endian
/// ELF64 executable (or static PIE) for that instruction set, statically
/// linked (no `PT_INTERP`: Folium has no dynamic loader). The error says
/// what the file is instead.
pub fn check_static_program(elf: &[u8], arch: Arch) -> Result<(), String> {
    if elf.get(0..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let rd16 = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let rd64 = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let machine = match rd16(0x12).ok_or("truncated ELF header")? {
        183 => Some(Arch::Aarch64),
        62 => Some(Arch::X86_64),
        _ => None,
    };
    if machine != Some(arch) {
        return Err(format!(
            "a program for {}, not {}",
            machine.map_or("another machine", Arch::name),
            arch.name()
        ));
    }
    match rd16(0x10) {
        Some(2 | 3) => {}
        _ => return Err("not an executable (a relocatable object or core file?)".into()),
    }
    let phoff = rd64(0x20).ok_or("truncated ELF header")? as usize;
    let phentsize = usize::from(rd16(0x36).ok_or("truncated ELF header")?);
    let phnum = usize::from(rd16(0x38).ok_or("truncated ELF header")?);
    for i in 0..phnum {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        let p_type = elf
            .get(ph..ph + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            .ok_or("program headers outside the file")?;
        if p_type == 3 {
            return Err(
                "dynamically linked (it names a program interpreter); link it with -static".into(),
            );
        }
    }
    Ok(())
}

/// The loadable bytes of a little-endian ELF64 file, laid out by physical
/// load address from the lowest loaded segment; zero-fill (.bss) omitted.
pub fn to_raw_binary(elf: &[u8]) -> Result<Vec<u8>, String> {
    let rd16 = |o: usize| -> Result<u64, String> {
        elf.get(o..o + 2)
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or("truncated ELF".into())
    };
    let rd64 = |o: usize| -> Result<u64, String> {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or("truncated ELF".into())
    };
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".into());
    }
    let phoff = rd64(0x20)? as usize;
    let phentsize = rd16(0x36)? as usize;
    let phnum = rd16(0x38)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = rd64(ph)? & 0xffff_ffff;
        if p_type != 1 {
            continue;
        }
        let (offset, paddr, filesz) = (rd64(ph + 8)?, rd64(ph + 0x18)?, rd64(ph + 0x20)?);
        if filesz > 0 {
            segs.push((paddr, offset as usize, filesz as usize));
        }
    }
    let base = segs
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let end = segs.iter().map(|s| s.0 + s.2 as u64).max().unwrap_or(base);
    let mut out = vec![0u8; (end - base) as usize];
    for (paddr, offset, size) in segs {
        let src = elf
            .get(offset..offset + size)
            .ok_or("segment outside the file")?;
        let at = (paddr - base) as usize;
        out[at..at + size].copy_from_slice(src);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header for `machine` of type `e_type` with one program
    /// header of type `p_type`.
    fn program(machine: u16, e_type: u16, p_type: u32) -> Vec<u8> {
        let mut f = vec![0u8; 0x100];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
        f[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        f[0x40..0x44].copy_from_slice(&p_type.to_le_bytes());
        f
    }

    #[test]
    fn only_static_programs_for_the_arch_pass() {
        let check = |f: &[u8], a| check_static_program(f, a);
        assert!(check(&program(183, 2, 1), Arch::Aarch64).is_ok());
        assert!(
            check(&program(62, 3, 1), Arch::X86_64).is_ok(),
            "static PIE"
        );
        let e = check(&program(62, 2, 1), Arch::Aarch64).unwrap_err();
        assert_eq!(e, "a program for x86_64, not aarch64");
        let e = check(&program(183, 3, 3), Arch::Aarch64).unwrap_err();
        assert!(e.contains("-static"), "{e}");
        assert!(
            check(&program(183, 1, 1), Arch::Aarch64).is_err(),
            "an object file"
        );
        assert!(check(b"#!/bin/sh\n", Arch::Aarch64).is_err());
        let mut elf32 = program(183, 2, 1);
        elf32[4] = 1;
        assert!(check(&elf32, Arch::Aarch64).is_err());
        assert!(check(&program(183, 2, 1)[..0x30], Arch::Aarch64).is_err());
    }

    #[test]
    fn rejects_non_elf() {
        assert!(to_raw_binary(b"not an elf file at all").is_err());
    }

    #[test]
    fn lays_out_segments_by_physical_address() {
        // A hand-made ELF64 with two PT_LOAD segments, 0x10 bytes apart.
        let mut f = vec![0u8; 0x200];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        for (i, (paddr, off, data)) in [(0x1000u64, 0x100usize, b"AB"), (0x1010, 0x110, b"CD")]
            .iter()
            .enumerate()
        {
            let ph = 0x40 + i * 56;
            f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&(*off as u64).to_le_bytes());
            f[ph + 0x18..ph + 0x20].copy_from_slice(&paddr.to_le_bytes());
            f[ph + 0x20..ph + 0x28].copy_from_slice(&2u64.to_le_bytes());
            f[*off..off + 2].copy_from_slice(*data);
        }
        let raw = to_raw_binary(&f).unwrap();
        assert_eq!(raw.len(), 0x12);
        assert_eq!(&raw[0..2], b"AB");
        assert_eq!(&raw[0x10..0x12], b"CD");
        assert!(raw[2..0x10].iter().all(|&b| b == 0));
    }
}
