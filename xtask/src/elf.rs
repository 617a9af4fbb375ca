//! ELF64 -> raw binary, as `objcopy -O binary` would (no external tool).

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
