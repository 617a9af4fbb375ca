//! The CPUs the firmware describes and how each secondary one is started:
//! the DTB's `/cpus` nodes (PSCI or a spin table) on arm64, ACPI's MADT
//! (INIT-SIPI-SIPI) on x86. Read at entry, before the heap exists, so the
//! list has a fixed capacity; CPUs past it are counted, not kept.

use folium_mm::PhysAddr;

/// Most CPUs the kernel brings up (QEMU `-smp 1..8`, the Pis' four).
pub const MAX_CPUS: usize = 8;

/// How a secondary CPU is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMethod {
    /// PSCI `CPU_ON` (the DTB's `enable-method = "psci"`).
    Psci,
    /// A spin table: the CPU waits for an entry address at this physical
    /// address (`cpu-release-addr`), then for an event.
    SpinTable(PhysAddr),
    /// x86 INIT-SIPI-SIPI through the local APIC.
    Sipi,
    /// Something Folium does not drive (reported, left alone).
    Unknown,
}

/// How PSCI calls reach the firmware (the DTB's `/psci` `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `hvc #0` (a hypervisor, or QEMU's emulation of one).
    Hvc,
    /// `smc #0` (a secure monitor).
    Smc,
}

/// One CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuDesc {
    /// Its hardware id: the MPIDR affinity fields (Aff3 in bits 39:32,
    /// Aff2..Aff0 in 23:0, as `reg` gives them) on arm64, the local APIC
    /// id on x86.
    pub hw_id: u64,
    /// How it is started.
    pub method: StartMethod,
}

/// The CPUs found, in firmware order.
#[derive(Clone, Copy, Debug)]
pub struct CpuList {
    cpus: [CpuDesc; MAX_CPUS],
    len: usize,
    /// CPUs described beyond [`MAX_CPUS`] (not kept).
    pub dropped: usize,
    /// The PSCI conduit, if the firmware has PSCI.
    pub psci: Option<PsciConduit>,
}

impl Default for CpuList {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuList {
    /// No CPUs.
    pub const fn new() -> Self {
        CpuList {
            cpus: [CpuDesc {
                hw_id: 0,
                method: StartMethod::Unknown,
            }; MAX_CPUS],
            len: 0,
            dropped: 0,
            psci: None,
        }
    }

    /// Adds `c` (a second entry with the same hardware id is ignored:
    /// firmware that lists a CPU twice does not start it twice).
    pub fn push(&mut self, c: CpuDesc) {
        if self.as_slice().iter().any(|d| d.hw_id == c.hw_id) {
            return;
        }
        if self.len == MAX_CPUS {
            self.dropped += 1;
            return;
        }
        self.cpus[self.len] = c;
        self.len += 1;
    }

    /// The CPUs kept.
    pub fn as_slice(&self) -> &[CpuDesc] {
        &self.cpus[..self.len]
    }

    /// How many were kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the firmware described none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// MADT entry types Folium reads.
const MADT_LOCAL_APIC: u8 = 0;
const MADT_LOCAL_X2APIC: u8 = 9;
/// Processor flags: enabled (usable now). Online-capable ones without it
/// can only be hot-added later, and are left out.
const MADT_ENABLED: u32 = 1;
/// The MADT's fixed part: the 36-byte ACPI header, the local APIC
/// address and flags.
const MADT_HEADER: usize = 44;

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The usable processors of an ACPI MADT (`table`: the whole table, header
/// included): local APIC (type 0) and local x2APIC (type 9) entries that
/// are enabled, in table order. A malformed entry ends
/// the walk; what came before it is kept.
pub fn madt_cpus(table: &[u8]) -> CpuList {
    let mut list = CpuList::new();
    let len = le32(table, 4).map_or(0, |l| l as usize).min(table.len());
    let mut off = MADT_HEADER;
    while off + 2 <= len {
        let (kind, elen) = (table[off], usize::from(table[off + 1]));
        if elen < 2 || off + elen > len {
            break;
        }
        let e = &table[off..off + elen];
        let (id, flags) = match (kind, elen) {
            (MADT_LOCAL_APIC, 8..) => (u32::from(e[3]), le32(e, 4)),
            (MADT_LOCAL_X2APIC, 16..) => (le32(e, 4).unwrap_or(0), le32(e, 8)),
            _ => (0, None),
        };
        if let Some(f) = flags
            && f & MADT_ENABLED != 0
        {
            list.push(CpuDesc {
                hw_id: u64::from(id),
                method: StartMethod::Sipi,
            });
        }
        off += elen;
    }
    list
}

/// The longest ACPI table read (a claimed length beyond it is a broken
/// table, and would have the checksum walk gigabytes).
const ACPI_TABLE_MAX: usize = 1 << 20;

/// True if the `len` bytes of an ACPI structure sum to 0 mod 256.
pub fn acpi_checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// Finds the MADT through the RSDP at `rsdp`, reading physical memory
/// with `read(pa, len)` (which returns `None` for what it cannot reach).
/// Checksums are verified; the XSDT is preferred to the RSDT.
pub fn find_madt<'a>(rsdp: u64, read: impl Fn(u64, usize) -> Option<&'a [u8]>) -> Option<&'a [u8]> {
    let r = read(rsdp, 20)?;
    if &r[..8] != b"RSD PTR " || !acpi_checksum_ok(r) {
        return None;
    }
    let revision = r[15];
    let rsdt = u64::from(le32(r, 16)?);
    let (root, entry) = if revision >= 2 {
        let r2 = read(rsdp, 36)?;
        let xsdt = u64::from_le_bytes(r2.get(24..32)?.try_into().ok()?);
        if acpi_checksum_ok(r2) && xsdt != 0 {
            (xsdt, 8)
        } else {
            (rsdt, 4)
        }
    } else {
        (rsdt, 4)
    };
    let table = |pa: u64| -> Option<&'a [u8]> {
        let len = le32(read(pa, 36)?, 4)? as usize;
        if !(36..=ACPI_TABLE_MAX).contains(&len) {
            return None;
        }
        let t = read(pa, len)?;
        acpi_checksum_ok(t).then_some(t)
    };
    let root = table(root)?;
    // Bounded by the root table's length.
    for off in (36..root.len()).step_by(entry) {
        let pa = match entry {
            8 => u64::from_le_bytes(root.get(off..off + 8)?.try_into().ok()?),
            _ => u64::from(le32(root, off)?),
        };
        if let Some(t) = table(pa)
            && &t[..4] == b"APIC"
        {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn madt(entries: &[&[u8]]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(b"APIC");
        t.extend([0; 4]);
        t.resize(MADT_HEADER, 0);
        for e in entries {
            t.extend(*e);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    fn lapic(apic: u8, flags: u32) -> Vec<u8> {
        let mut e = std::vec![MADT_LOCAL_APIC, 8, apic, apic];
        e.extend(flags.to_le_bytes());
        e
    }

    #[test]
    fn madt_keeps_enabled_processors_only() {
        let x2 = {
            let mut e = std::vec![MADT_LOCAL_X2APIC, 16, 0, 0];
            e.extend(300u32.to_le_bytes());
            e.extend(1u32.to_le_bytes());
            e.extend(7u32.to_le_bytes());
            e
        };
        let ioapic = [1u8, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0];
        let t = madt(&[
            &lapic(0, 1),
            &ioapic,
            &lapic(1, 0),
            &lapic(2, 2),
            &x2,
            &lapic(0, 1),
            &lapic(3, 3),
        ]);
        let l = madt_cpus(&t);
        let ids: Vec<u64> = l.as_slice().iter().map(|c| c.hw_id).collect();
        assert_eq!(
            ids,
            [0, 300, 3],
            "disabled 1, online-capable-only 2 and the duplicate 0 are left out"
        );
        assert!(l.as_slice().iter().all(|c| c.method == StartMethod::Sipi));
    }

    #[test]
    fn madt_stops_at_a_malformed_entry_and_caps_the_list() {
        let zero_len = [MADT_LOCAL_APIC, 0, 5, 5];
        let t = madt(&[&lapic(3, 1), &zero_len, &lapic(4, 1)]);
        assert_eq!(madt_cpus(&t).len(), 1);
        let many: Vec<Vec<u8>> = (0..12).map(|i| lapic(i, 1)).collect();
        let refs: Vec<&[u8]> = many.iter().map(|e| e.as_slice()).collect();
        let l = madt_cpus(&madt(&refs));
        assert_eq!((l.len(), l.dropped), (MAX_CPUS, 12 - MAX_CPUS));
        // A length field past the table's end is cut to the table.
        let mut t = madt(&[&lapic(9, 1)]);
        t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(madt_cpus(&t).len(), 1);
        assert!(madt_cpus(&t[..10]).is_empty());
    }

    /// Physical memory for `find_madt`: (address, bytes) regions.
    fn reader<'a>(mem: &'a [(u64, Vec<u8>)]) -> impl Fn(u64, usize) -> Option<&'a [u8]> {
        move |pa, len| {
            mem.iter().find_map(|(base, b)| {
                let off = pa.checked_sub(*base)? as usize;
                b.get(off..off + len)
            })
        }
    }

    fn sdt(sig: &[u8; 4], entries: &[u64], wide: bool) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(sig);
        t.resize(36, 0);
        for &e in entries {
            if wide {
                t.extend(e.to_le_bytes());
            } else {
                t.extend((e as u32).to_le_bytes());
            }
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    fn rsdp(rsdt: u32, xsdt: Option<u64>) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(b"RSD PTR ");
        r.push(0);
        r.extend(b"FOLIUM");
        r.push(if xsdt.is_some() { 2 } else { 0 });
        r.extend(rsdt.to_le_bytes());
        fix_checksum(&mut r, 8);
        if let Some(x) = xsdt {
            r.extend(36u32.to_le_bytes());
            r.extend(x.to_le_bytes());
            r.extend([0; 4]);
            fix_checksum(&mut r, 32);
        }
        r
    }

    #[test]
    fn rsdt_and_xsdt_lead_to_the_madt() {
        let m = madt(&[&lapic(0, 1), &lapic(1, 1)]);
        let facp = sdt(b"FACP", &[], false);
        let rsdt = sdt(b"RSDT", &[0x2000, 0x3000], false);
        let mem = std::vec![
            (0x1000, rsdp(0x4000, None)),
            (0x2000, facp.clone()),
            (0x3000, m.clone()),
            (0x4000, rsdt),
        ];
        assert_eq!(find_madt(0x1000, reader(&mem)), Some(m.as_slice()));

        let xsdt = sdt(b"XSDT", &[0x2000, 0x3000], true);
        let mem = std::vec![
            (0x1000, rsdp(0x9999, Some(0x5000))),
            (0x2000, facp),
            (0x3000, m.clone()),
            (0x5000, xsdt),
        ];
        assert_eq!(find_madt(0x1000, reader(&mem)), Some(m.as_slice()));
    }

    #[test]
    fn bad_checksums_and_unreachable_tables_give_none() {
        let mut m = madt(&[&lapic(0, 1)]);
        let rsdt = sdt(b"RSDT", &[0x3000], false);
        let mut bad_rsdp = rsdp(0x4000, None);
        bad_rsdp[9] ^= 1;
        let mem = std::vec![
            (0x1000, bad_rsdp),
            (0x3000, m.clone()),
            (0x4000, rsdt.clone())
        ];
        assert_eq!(find_madt(0x1000, reader(&mem)), None);
        m[40] ^= 1;
        let mem = std::vec![(0x1000, rsdp(0x4000, None)), (0x3000, m), (0x4000, rsdt)];
        assert_eq!(find_madt(0x1000, reader(&mem)), None, "MADT checksum");
        let mem = std::vec![(0x1000, rsdp(0x4000, None))];
        assert_eq!(find_madt(0x1000, reader(&mem)), None, "RSDT not reachable");
        // A root table claiming 2 MiB is not read at all.
        let mut huge = sdt(b"RSDT", &[0x3000], false);
        huge[4..8].copy_from_slice(&(2u32 << 20).to_le_bytes());
        let read_count = std::cell::Cell::new(0usize);
        let mem = std::vec![(0x1000, rsdp(0x4000, None)), (0x4000, huge)];
        let r = reader(&mem);
        let counting = |pa, len| {
            read_count.set(read_count.get().max(len));
            r(pa, len)
        };
        assert_eq!(find_madt(0x1000, counting), None);
        assert!(read_count.get() <= 36, "read {} bytes", read_count.get());
    }
}
