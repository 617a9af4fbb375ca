//! A small, bounds-checked reader of flattened device trees (DTB).
//!
//! Firmware input is not trusted to be well formed: every offset and length
//! is checked against the blob, nesting and node counts are bounded, and a
//! malformed blob yields an error or fewer facts, never a panic or a read
//! outside the blob. Only what the boot layer needs is extracted: RAM,
//! reservations, the command line, the root `compatible`, the console UART,
//! and devices that sit directly under the root (their `reg` needs no
//! `ranges` translation): interrupt controllers, among them the GIC's
//! version and ranges, and a PL031 real-time clock.

use folium_mm::PhysAddr;

use crate::{IrqController, PhysRange, RangeList};

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
const MAX_DEPTH: usize = 16;
const PATH_MAX: usize = 256;

/// Why a blob was rejected outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Too short for a header, or the magic is wrong.
    NotADtb,
    /// Header offsets or sizes point outside the blob, or the version is too old.
    BadHeader,
    /// The structure block is malformed (bad token, nesting, truncated).
    BadStructure,
}

/// What the boot layer learns from a DTB.
#[derive(Debug, Default)]
pub struct DtbFacts<'a> {
    /// `/memory*` `reg` ranges.
    pub ram: RangeList,
    /// `/memreserve/` entries and `/reserved-memory` children.
    pub reserved: RangeList,
    /// MMIO of root-level interrupt controllers and of the console UART.
    pub mmio: RangeList,
    /// `/chosen/bootargs`.
    pub bootargs: Option<&'a [u8]>,
    /// The root node's first `compatible` string.
    pub compatible: Option<&'a [u8]>,
    /// The console UART's first `reg` address (`/chosen/stdout-path`).
    pub console_uart: Option<PhysAddr>,
    /// The first root-level GIC (v2 or v3) with both of its `reg` ranges.
    pub irq_controller: Option<IrqController>,
    /// The initial ramdisk (`/chosen/linux,initrd-start` .. `-end`).
    pub initrd: Option<PhysRange>,
    /// The registers of the first root-level `arm,pl031` real-time clock
    /// (its first, non-empty `reg` range).
    pub rtc: Option<PhysRange>,
}

/// A big-endian cell value of 4 or 8 bytes (`linux,initrd-*` use either).
fn be_cells(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => Some(u64::from(u32::from_be_bytes(v.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// `compatible` strings of GICv2-class distributors with a memory-mapped
/// CPU interface.
const GIC_V2_COMPATIBLE: [&[u8]; 4] = [
    b"arm,cortex-a15-gic",
    b"arm,gic-400",
    b"arm,cortex-a9-gic",
    b"arm,cortex-a7-gic",
];
const GIC_V3_COMPATIBLE: &[u8] = b"arm,gic-v3";
const PL031_COMPATIBLE: &[u8] = b"arm,pl031";

/// Whether a `compatible` string list names a GIC: `Some(true)` for v3,
/// `Some(false)` for v2.
fn gic_version(list: &[u8]) -> Option<bool> {
    list.split(|&c| c == 0).find_map(|s| {
        if s == GIC_V3_COMPATIBLE {
            Some(true)
        } else {
            GIC_V2_COMPATIBLE.contains(&s).then_some(false)
        }
    })
}

/// A validated blob.
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap: &'a [u8],
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some((u64::from(be32(b, off)?) << 32) | u64::from(be32(b, off + 4)?))
}

/// The bytes of a NUL-terminated string starting at `off` (without the NUL).
fn cstr(b: &[u8], off: usize) -> Option<&[u8]> {
    let rest = b.get(off..)?;
    let n = rest.iter().position(|&c| c == 0)?;
    Some(&rest[..n])
}

/// Reads the total size from a header (to know how much to map).
pub fn total_size(header: &[u8]) -> Option<u32> {
    (be32(header, 0)? == MAGIC)
        .then(|| be32(header, 4))
        .flatten()
}

impl<'a> Fdt<'a> {
    /// Validates the header of `blob` (which may be longer than the DTB).
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        if be32(blob, 0) != Some(MAGIC) {
            return Err(FdtError::NotADtb);
        }
        let field = |i: usize| {
            be32(blob, 4 * i)
                .ok_or(FdtError::NotADtb)
                .map(|v| v as usize)
        };
        let total = field(1)?;
        let (off_struct, off_strings, off_rsvmap, version) =
            (field(2)?, field(3)?, field(4)?, field(5)?);
        let (size_strings, size_struct) = (field(8)?, field(9)?);
        let blob = blob.get(..total).ok_or(FdtError::BadHeader)?;
        let region =
            |off: usize, len: usize| off.checked_add(len).and_then(|end| blob.get(off..end));
        if version < 17 {
            return Err(FdtError::BadHeader);
        }
        Ok(Fdt {
            blob,
            structs: region(off_struct, size_struct).ok_or(FdtError::BadHeader)?,
            strings: region(off_strings, size_strings).ok_or(FdtError::BadHeader)?,
            rsvmap: blob.get(off_rsvmap..).ok_or(FdtError::BadHeader)?,
        })
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> usize {
        self.blob.len()
    }

    /// Walks the structure block, calling `f(depth, path, property name,
    /// value, parent address cells, parent size cells)` for every property.
    fn walk(
        &self,
        mut f: impl FnMut(usize, &[u8], &'a [u8], &'a [u8], u32, u32),
    ) -> Result<(), FdtError> {
        let s = self.structs;
        let mut off = 0usize;
        let mut depth = 0usize;
        // (#address-cells, #size-cells) each node sets for its children.
        let mut cells = [(2u32, 1u32); MAX_DEPTH + 1];
        let mut path = [0u8; PATH_MAX];
        let mut path_len = [0usize; MAX_DEPTH + 1];
        loop {
            let token = be32(s, off).ok_or(FdtError::BadStructure)?;
            off += 4;
            match token {
                BEGIN_NODE => {
                    let name = cstr(s, off).ok_or(FdtError::BadStructure)?;
                    off = (off + name.len() + 1).next_multiple_of(4);
                    if depth == MAX_DEPTH {
                        return Err(FdtError::BadStructure);
                    }
                    // The root is "/"; a child of the root is "/name"; deeper
                    // nodes append "/name" to their parent's path. Paths
                    // longer than PATH_MAX are cut (and then match nothing
                    // the boot layer looks for).
                    let mut len = path_len[depth];
                    let mut push = |c: u8| {
                        if len < PATH_MAX {
                            path[len] = c;
                            len += 1;
                        }
                    };
                    if depth == 0 {
                        push(b'/');
                    } else {
                        if depth >= 2 {
                            push(b'/');
                        }
                        name.iter().for_each(|&c| push(c));
                    }
                    depth += 1;
                    path_len[depth] = len;
                    cells[depth] = (2, 1);
                }
                END_NODE => {
                    depth = depth.checked_sub(1).ok_or(FdtError::BadStructure)?;
                }
                PROP => {
                    let len = be32(s, off).ok_or(FdtError::BadStructure)? as usize;
                    let nameoff = be32(s, off + 4).ok_or(FdtError::BadStructure)? as usize;
                    off += 8;
                    let value = s
                        .get(off..off.checked_add(len).ok_or(FdtError::BadStructure)?)
                        .ok_or(FdtError::BadStructure)?;
                    off = (off + len).next_multiple_of(4);
                    let name = cstr(self.strings, nameoff).ok_or(FdtError::BadStructure)?;
                    if depth == 0 {
                        return Err(FdtError::BadStructure);
                    }
                    match name {
                        b"#address-cells" => cells[depth].0 = be32(value, 0).unwrap_or(2),
                        b"#size-cells" => cells[depth].1 = be32(value, 0).unwrap_or(1),
                        _ => {}
                    }
                    let (ac, sc) = cells[depth - 1];
                    f(depth, &path[..path_len[depth]], name, value, ac, sc);
                }
                NOP => {}
                END => {
                    return if depth == 0 {
                        Ok(())
                    } else {
                        Err(FdtError::BadStructure)
                    };
                }
                _ => return Err(FdtError::BadStructure),
            }
        }
    }

    /// Extracts the boot layer's facts; whatever is malformed is skipped.
    pub fn facts(&self) -> DtbFacts<'a> {
        let mut facts = DtbFacts::default();
        for i in 0..64 {
            let (Some(addr), Some(size)) =
                (be64(self.rsvmap, i * 16), be64(self.rsvmap, i * 16 + 8))
            else {
                break;
            };
            if addr == 0 && size == 0 {
                break;
            }
            facts
                .reserved
                .push_coalescing(PhysRange::new(PhysAddr::new(addr), size));
        }
        let mut stdout: Option<&[u8]> = None;
        let (mut initrd_start, mut initrd_end) = (None, None);
        let mut aliases: [(&[u8], &[u8]); 16] = [(&[], &[]); 16];
        let mut n_aliases = 0;
        let _ = self.walk(|depth, path, name, value, ac, sc| {
            let node = path.rsplit(|&c| c == b'/').next().unwrap_or(b"");
            let node_base = node.split(|&c| c == b'@').next().unwrap_or(b"");
            match (depth, name) {
                (1, b"compatible") => facts.compatible = cstr(value, 0).filter(|s| !s.is_empty()),
                (2, b"reg") if node_base == b"memory" => {
                    decode_reg(value, ac, sc, |r| facts.ram.push(r))
                }
                (2, b"bootargs") if path == b"/chosen" => facts.bootargs = cstr(value, 0),
                (2, b"stdout-path") if path == b"/chosen" => stdout = cstr(value, 0),
                (2, b"linux,initrd-start") if path == b"/chosen" => initrd_start = be_cells(value),
                (2, b"linux,initrd-end") if path == b"/chosen" => initrd_end = be_cells(value),
                (2, _) if path == b"/aliases" && n_aliases < aliases.len() => {
                    if let Some(target) = cstr(value, 0) {
                        aliases[n_aliases] = (name, target);
                        n_aliases += 1;
                    }
                }
                (3, b"reg") if path.starts_with(b"/reserved-memory/") => {
                    decode_reg(value, ac, sc, |r| facts.reserved.push_coalescing(r))
                }
                (2, b"interrupt-controller") => {
                    let _ = self.node_reg(path, |r| facts.mmio.push(r));
                }
                _ => {}
            }
        });
        // stdout-path is a path or an alias, optionally followed by ":options".
        if let Some(sp) = stdout {
            let sp = sp.split(|&c| c == b':').next().unwrap_or(b"");
            let target = if sp.first() == Some(&b'/') {
                Some(sp)
            } else {
                aliases[..n_aliases].iter().find(|a| a.0 == sp).map(|a| a.1)
            };
            if let Some(t) = target.filter(|t| t.iter().filter(|&&c| c == b'/').count() == 1) {
                let _ = self.node_reg(t, |r| {
                    facts.console_uart.get_or_insert(r.start);
                    facts.mmio.push(r);
                });
            }
        }
        facts.irq_controller = self.gic();
        facts.rtc = self.rtc();
        if let (Some(s), Some(e)) = (initrd_start, initrd_end)
            && s < e
        {
            facts.initrd = Some(PhysRange {
                start: PhysAddr::new(s),
                end: PhysAddr::new(e),
            });
        }
        facts
    }

    /// The first root-level node whose `compatible` list `pick` accepts:
    /// its path (in `path`, `len` bytes) and what `pick` returned.
    fn root_child<T>(
        &self,
        path: &mut [u8; PATH_MAX],
        mut pick: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<(T, usize)> {
        let mut found = None;
        let _ = self.walk(|depth, p, name, value, _, _| {
            if depth == 2
                && name == b"compatible"
                && found.is_none()
                && let Some(v) = pick(value)
            {
                // `p` is at most PATH_MAX long (the walk cuts it).
                let n = p.len().min(PATH_MAX);
                path[..n].copy_from_slice(&p[..n]);
                found = Some((v, n));
            }
        });
        found
    }

    /// The first root-level node whose `compatible` names a GIC, if its
    /// `reg` holds the two ranges that version needs.
    fn gic(&self) -> Option<IrqController> {
        let mut path = [0u8; PATH_MAX];
        let (v3, len) = self.root_child(&mut path, gic_version)?;
        let mut regs = [None; 2];
        let mut i = 0;
        self.node_reg(&path[..len], |r| {
            if let Some(slot) = regs.get_mut(i) {
                *slot = Some(r);
            }
            i += 1;
        })
        .ok()?;
        let [Some(first), Some(second)] = regs else {
            return None;
        };
        Some(if v3 {
            IrqController::GicV3 {
                dist: first,
                redist: second,
            }
        } else {
            IrqController::GicV2 {
                dist: first,
                cpu: second,
            }
        })
    }

    /// The first `reg` range of the first root-level PL031, if not empty.
    fn rtc(&self) -> Option<PhysRange> {
        let mut path = [0u8; PATH_MAX];
        let ((), len) = self.root_child(&mut path, |list| {
            list.split(|&c| c == 0)
                .any(|s| s == PL031_COMPATIBLE)
                .then_some(())
        })?;
        let mut first = None;
        self.node_reg(&path[..len], |r| {
            first.get_or_insert(r);
        })
        .ok()?;
        first.filter(|r| !r.is_empty())
    }

    /// Calls `f` for each `reg` range of the node at `path`.
    fn node_reg(&self, path: &[u8], mut f: impl FnMut(PhysRange)) -> Result<(), FdtError> {
        self.walk(|_, p, name, value, ac, sc| {
            if p == path && name == b"reg" {
                decode_reg(value, ac, sc, &mut f);
            }
        })
    }
}

/// Decodes a `reg` value with the given cell counts (1 or 2 each).
fn decode_reg(value: &[u8], ac: u32, sc: u32, mut f: impl FnMut(PhysRange)) {
    if !(1..=2).contains(&ac) || sc > 2 {
        return;
    }
    let read = |off: usize, cells: u32| match cells {
        0 => Some(0),
        1 => be32(value, off).map(u64::from),
        _ => be64(value, off),
    };
    let stride = 4 * (ac + sc) as usize;
    for i in 0..value.len() / stride {
        let off = i * stride;
        if let (Some(addr), Some(size)) = (read(off, ac), read(off + 4 * ac as usize, sc)) {
            f(PhysRange::new(PhysAddr::new(addr), size));
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A tiny DTB writer for tests.
    #[derive(Default)]
    struct Builder {
        structs: Vec<u8>,
        strings: Vec<u8>,
        rsv: Vec<(u64, u64)>,
    }

    impl Builder {
        fn begin(&mut self, name: &str) -> &mut Self {
            self.structs.extend(BEGIN_NODE.to_be_bytes());
            self.structs.extend(name.as_bytes());
            self.structs.push(0);
            self.structs
                .resize(self.structs.len().next_multiple_of(4), 0);
            self
        }
        fn end(&mut self) -> &mut Self {
            self.structs.extend(END_NODE.to_be_bytes());
            self
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let off = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            self.structs.extend(PROP.to_be_bytes());
            self.structs.extend((value.len() as u32).to_be_bytes());
            self.structs.extend(off.to_be_bytes());
            self.structs.extend(value);
            self.structs
                .resize(self.structs.len().next_multiple_of(4), 0);
            self
        }
        fn cells(&mut self, name: &str, v: &[u32]) -> &mut Self {
            let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &bytes)
        }
        fn build(&mut self) -> Vec<u8> {
            self.structs.extend(END.to_be_bytes());
            let off_rsv = 40usize;
            let rsv_len = (self.rsv.len() + 1) * 16;
            let off_struct = off_rsv + rsv_len;
            let off_strings = off_struct + self.structs.len();
            let total = off_strings + self.strings.len();
            let mut b = Vec::new();
            for v in [
                MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                off_rsv as u32,
                17,
                16,
                0,
            ] {
                b.extend(v.to_be_bytes());
            }
            b.extend((self.strings.len() as u32).to_be_bytes());
            b.extend((self.structs.len() as u32).to_be_bytes());
            for &(a, s) in self.rsv.iter().chain([(0, 0)].iter()) {
                b.extend(a.to_be_bytes());
                b.extend(s.to_be_bytes());
            }
            b.extend(&self.structs);
            b.extend(&self.strings);
            b
        }
    }

    fn virt_like() -> Vec<u8> {
        let mut b = Builder::default();
        b.rsv.push((0x4800_0000, 0x10_0000));
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .prop("compatible", b"linux,dummy-virt\0")
            .begin("memory@40000000")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0x4000_0000, 0, 0x2000_0000])
            .end()
            .begin("intc@8000000")
            .prop("compatible", b"arm,cortex-a15-gic\0")
            .prop("interrupt-controller", b"")
            .cells(
                "reg",
                &[0, 0x0800_0000, 0, 0x1_0000, 0, 0x0801_0000, 0, 0x1_0000],
            )
            .end()
            .begin("pl011@9000000")
            .cells("reg", &[0, 0x0900_0000, 0, 0x1000])
            .end()
            .begin("pl031@9010000")
            .prop("compatible", b"arm,pl031\0arm,primecell\0")
            .cells("reg", &[0, 0x0901_0000, 0, 0x1000])
            .end()
            .begin("reserved-memory")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .begin("fw@50000000")
            .cells("reg", &[0x5000_0000, 0x2000])
            .end()
            .end()
            .begin("aliases")
            .prop("serial0", b"/pl011@9000000\0")
            .end()
            .begin("chosen")
            .prop("bootargs", b"test=buddy\0")
            .prop("stdout-path", b"serial0:115200n8\0")
            .prop("linux,initrd-start", &0x4800_0000u32.to_be_bytes())
            .prop("linux,initrd-end", &0x4812_3456u64.to_be_bytes())
            .end()
            .end();
        b.build()
    }

    #[test]
    fn reads_a_virt_like_tree() {
        let blob = virt_like();
        let fdt = Fdt::new(&blob).unwrap();
        let f = fdt.facts();
        assert_eq!(f.compatible, Some(&b"linux,dummy-virt"[..]));
        assert_eq!(f.bootargs, Some(&b"test=buddy"[..]));
        assert_eq!(
            f.initrd,
            Some(PhysRange {
                start: PhysAddr::new(0x4800_0000),
                end: PhysAddr::new(0x4812_3456)
            }),
            "4- and 8-byte cells both read"
        );
        assert_eq!(
            f.ram.as_slice(),
            &[PhysRange::new(PhysAddr::new(0x4000_0000), 0x2000_0000)]
        );
        assert_eq!(
            f.reserved.as_slice(),
            &[
                PhysRange::new(PhysAddr::new(0x4800_0000), 0x10_0000),
                PhysRange::new(PhysAddr::new(0x5000_0000), 0x2000)
            ]
        );
        assert_eq!(f.console_uart, Some(PhysAddr::new(0x0900_0000)));
        assert_eq!(
            f.mmio.as_slice().len(),
            3,
            "two GIC ranges and the UART: {:?}",
            f.mmio
        );
        assert_eq!(total_size(&blob), Some(blob.len() as u32));
        let r = |a: u64, s: u64| PhysRange::new(PhysAddr::new(a), s);
        assert_eq!(f.rtc, Some(r(0x0901_0000, 0x1000)));
        assert_eq!(
            f.irq_controller,
            Some(IrqController::GicV2 {
                dist: r(0x0800_0000, 0x1_0000),
                cpu: r(0x0801_0000, 0x1_0000)
            })
        );
    }

    /// A root with one interrupt-controller child `name`, with the given
    /// `compatible` list and `reg` cells (2 address, 2 size cells).
    fn one_intc(name: &str, compatible: &[u8], reg: &[u32]) -> Vec<u8> {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .begin(name)
            .prop("compatible", compatible)
            .prop("interrupt-controller", b"")
            .cells("reg", reg)
            .end()
            .end();
        b.build()
    }

    #[test]
    fn gic_versions_and_ranges() {
        let r = |a: u64, s: u64| PhysRange::new(PhysAddr::new(a), s);
        let v3 = one_intc(
            "intc@8000000",
            b"arm,gic-v3\0",
            &[0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0xf6_0000],
        );
        assert_eq!(
            Fdt::new(&v3).unwrap().facts().irq_controller,
            Some(IrqController::GicV3 {
                dist: r(0x0800_0000, 0x1_0000),
                redist: r(0x080a_0000, 0xf6_0000)
            })
        );
        // A later entry of the string list counts too; extra ranges
        // (GICv2 virtualisation frames) are ignored.
        let v2 = one_intc(
            "gic@ff841000",
            b"brcm,foo\0arm,gic-400\0",
            &[
                0,
                0xff84_1000,
                0,
                0x1000,
                0,
                0xff84_2000,
                0,
                0x2000,
                0,
                0xff84_4000,
                0,
                0x2000,
            ],
        );
        assert_eq!(
            Fdt::new(&v2).unwrap().facts().irq_controller,
            Some(IrqController::GicV2 {
                dist: r(0xff84_1000, 0x1000),
                cpu: r(0xff84_2000, 0x2000)
            })
        );
        // One range is not enough for either version.
        let short = one_intc("intc@0", b"arm,gic-v3\0", &[0, 0x0800_0000, 0, 0x1_0000]);
        assert_eq!(Fdt::new(&short).unwrap().facts().irq_controller, None);
        // Neither is an unknown controller, nor a prefix of a known name.
        let other = one_intc(
            "intc@0",
            b"arm,gic-v3-its\0arm,gic\0",
            &[0, 0x1000, 0, 0x1000, 0, 0x2000, 0, 0x1000],
        );
        assert_eq!(Fdt::new(&other).unwrap().facts().irq_controller, None);
    }

    /// A root (2 address, 2 size cells) with one child `name` holding the
    /// given `compatible` list and, if any, `reg` cells.
    fn one_node(name: &str, compatible: &[u8], reg: Option<&[u32]>) -> Vec<u8> {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .begin(name)
            .prop("compatible", compatible);
        if let Some(reg) = reg {
            b.cells("reg", reg);
        }
        b.end().end();
        b.build()
    }

    #[test]
    fn the_pl031_rtc_is_found_only_where_it_is_usable() {
        let rtc = |blob: Vec<u8>| Fdt::new(&blob).unwrap().facts().rtc;
        let r = |a: u64, s: u64| PhysRange::new(PhysAddr::new(a), s);
        // The first `reg` range; any position in the compatible list.
        assert_eq!(
            rtc(one_node(
                "rtc@1000",
                b"arm,primecell\0arm,pl031\0",
                Some(&[0, 0x1000, 0, 0x1000, 0, 0x8000, 0, 0x1000])
            )),
            Some(r(0x1000, 0x1000))
        );
        // A prefix, a longer name, no `reg`, an empty or truncated one: none.
        for (compatible, reg) in [
            (&b"arm,pl03\0"[..], Some(&[0, 0x1000, 0, 0x1000][..])),
            (b"arm,pl0310\0", Some(&[0, 0x1000, 0, 0x1000])),
            (b"arm,pl031\0", None),
            (b"arm,pl031\0", Some(&[0, 0x1000, 0, 0])),
            (b"arm,pl031\0", Some(&[0, 0x1000, 0])),
        ] {
            assert_eq!(
                rtc(one_node("rtc@1000", compatible, reg)),
                None,
                "{compatible:?} {reg:?}"
            );
        }
        // Under a bus node the `reg` would need `ranges` translation.
        let mut b = Builder::default();
        b.begin("")
            .begin("soc")
            .begin("rtc@1000")
            .prop("compatible", b"arm,pl031\0")
            .cells("reg", &[0, 0x1000, 0, 0x1000])
            .end()
            .end()
            .end();
        assert_eq!(rtc(b.build()), None);
        // None on a tree without one.
        assert_eq!(
            rtc(one_intc("intc@0", b"arm,gic-400\0", &[0, 0, 0, 0x1000])),
            None
        );
    }

    #[test]
    fn nested_gics_are_not_taken() {
        // Under a bus node the `reg` would need `ranges` translation.
        let mut b = Builder::default();
        b.begin("")
            .begin("soc")
            .begin("gic@1000")
            .prop("compatible", b"arm,gic-400\0")
            .cells("reg", &[0x1000, 0x1000, 0x2000, 0x1000])
            .end()
            .end()
            .end();
        let blob = b.build();
        assert_eq!(Fdt::new(&blob).unwrap().facts().irq_controller, None);
    }

    #[test]
    fn missing_nodes_and_empty_properties_are_not_errors() {
        let mut b = Builder::default();
        b.begin("")
            .begin("chosen")
            .prop("bootargs", b"")
            .prop("stdout-path", b"")
            .end()
            .end();
        let blob = b.build();
        let f = Fdt::new(&blob).unwrap().facts();
        assert!(f.ram.is_empty());
        assert_eq!(f.compatible, None);
        assert_eq!(
            f.bootargs, None,
            "an empty property has no NUL-terminated string"
        );
        assert_eq!(f.console_uart, None);
    }

    #[test]
    fn odd_cell_counts_are_skipped() {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[3])
            .begin("memory@0")
            .cells("reg", &[0, 0, 0, 0x1000])
            .end()
            .end();
        let blob = b.build();
        assert!(Fdt::new(&blob).unwrap().facts().ram.is_empty());
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let good = virt_like();
        assert_eq!(Fdt::new(&good[..20]).err(), Some(FdtError::NotADtb));
        let mut bad = good.clone();
        bad[0] = 0;
        assert_eq!(Fdt::new(&bad).err(), Some(FdtError::NotADtb));
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&(good.len() as u32 + 1).to_be_bytes());
        assert_eq!(
            Fdt::new(&bad).err(),
            Some(FdtError::BadHeader),
            "totalsize beyond the blob"
        );
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Fdt::new(&bad).err(),
            Some(FdtError::BadHeader),
            "struct offset beyond the blob"
        );
    }

    #[test]
    fn unbalanced_or_deep_trees_fail_cleanly() {
        let mut b = Builder::default();
        b.begin("").begin("a");
        let blob = b.build();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.walk(|_, _, _, _, _, _| {}), Err(FdtError::BadStructure));
        let mut b = Builder::default();
        for _ in 0..40 {
            b.begin("n");
        }
        for _ in 0..40 {
            b.end();
        }
        let blob = b.build();
        assert_eq!(
            Fdt::new(&blob).unwrap().walk(|_, _, _, _, _, _| {}),
            Err(FdtError::BadStructure)
        );
    }

    proptest::proptest! {
        #[test]
        fn corrupted_blobs_never_panic(flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 1..16)) {
            let mut blob = virt_like();
            let n = blob.len();
            for (i, v) in flips {
                blob[i % n] = v;
            }
            if let Ok(fdt) = Fdt::new(&blob) {
                let _ = fdt.facts();
            }
        }
    }
}
