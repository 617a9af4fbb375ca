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

use crate::board::{Machine, machine_from_compatible};
use crate::cpus::{CpuDesc, CpuList, PsciConduit, StartMethod};
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

/// What the boot layer learns from a DTB without allocating (read at
/// entry, before the kernel heap exists).
#[derive(Debug, Default)]
pub struct DtbFacts<'a> {
    /// `/chosen/bootargs`.
    pub bootargs: Option<&'a [u8]>,
    /// The root node's first `compatible` string.
    pub compatible: Option<&'a [u8]>,
    /// The machine the root `compatible` list names.
    pub machine: Machine,
    /// The console UART's first `reg` address (`/chosen/stdout-path`, or
    /// `linux,stdout-path`), translated to a CPU physical address.
    pub console_uart: Option<PhysAddr>,
    /// The first root-level GIC (v2 or v3) with both of its `reg` ranges.
    pub irq_controller: Option<IrqController>,
    /// The initial ramdisk (`/chosen/linux,initrd-start` .. `-end`).
    pub initrd: Option<PhysRange>,
    /// The registers of the first root-level `arm,pl031` real-time clock
    /// (its first, non-empty `reg` range).
    pub rtc: Option<PhysRange>,
    /// The CPUs under `/cpus` and the `/psci` conduit.
    pub cpus: CpuList,
}

/// The DTB's physical ranges, as many as it lists (read once the kernel
/// heap exists: nothing here has a fixed capacity).
#[derive(Debug, Default, Clone)]
pub struct DtbRanges {
    /// `reg` (or `linux,usable-memory`) of every root-level node with
    /// `device_type = "memory"` that is not disabled, as listed.
    pub ram: RangeList,
    /// `/memreserve/` entries and the `reg` of every available
    /// `/reserved-memory` child.
    pub reserved: RangeList,
    /// MMIO of root-level interrupt controllers and of the console UART.
    pub mmio: RangeList,
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

    /// Walks the structure block, calling `f` for every property.
    fn walk(&self, mut f: impl FnMut(&Prop<'_, 'a>)) -> Result<(), FdtError> {
        let s = self.structs;
        let mut off = 0usize;
        let mut depth = 0usize;
        let mut node = 0usize;
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
                    node += 1;
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
                    f(&Prop {
                        depth,
                        node,
                        path: &path[..path_len[depth]],
                        name,
                        value,
                        ac,
                        sc,
                    });
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

    /// Extracts the facts that need no allocation; whatever is malformed
    /// is skipped.
    pub fn facts(&self) -> DtbFacts<'a> {
        let mut facts = DtbFacts::default();
        let (mut initrd_start, mut initrd_end) = (None, None);
        let _ = self.walk(|p| match (p.depth, p.name) {
            (1, b"compatible") => {
                facts.compatible = cstr(p.value, 0).filter(|s| !s.is_empty());
                facts.machine = machine_from_compatible(p.value);
            }
            (2, b"bootargs") if p.path == b"/chosen" => facts.bootargs = cstr(p.value, 0),
            (2, b"linux,initrd-start") if p.path == b"/chosen" => initrd_start = be_cells(p.value),
            (2, b"linux,initrd-end") if p.path == b"/chosen" => initrd_end = be_cells(p.value),
            _ => {}
        });
        facts.console_uart = self.console().map(|r| r.start);
        facts.irq_controller = self.gic();
        facts.rtc = self.rtc();
        facts.cpus = self.cpus();
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

    /// Collects RAM, reservations and MMIO, as many as the blob lists.
    ///
    /// RAM is what Linux's early scan takes: root-level nodes whose
    /// `device_type` is `"memory"` (whatever their name), unless their
    /// `status` says they are not available; `linux,usable-memory`
    /// replaces `reg` where present. The ranges come as listed (possibly
    /// overlapping or repeated): callers normalise them.
    pub fn ranges(&self) -> DtbRanges {
        let mut out = DtbRanges::default();
        let mut i = 0;
        // Bounded by the blob: each entry is 16 bytes of it.
        while let (Some(addr), Some(size)) =
            (be64(self.rsvmap, i * 16), be64(self.rsvmap, i * 16 + 8))
        {
            if addr == 0 && size == 0 {
                break;
            }
            out.reserved.push(PhysRange::new(PhysAddr::new(addr), size));
            i += 1;
        }
        let mut cur = NodeProps::default();
        let flush = |n: &NodeProps<'a>, out: &mut DtbRanges| {
            if !n.available {
                return;
            }
            match n.kind {
                NodeKind::Root if n.memory => {
                    let reg = n.usable.or(n.reg).unwrap_or(&[]);
                    decode_reg(reg, n.ac, n.sc, |r| out.ram.push(r));
                }
                NodeKind::Root if n.intc => {
                    decode_reg(n.reg.unwrap_or(&[]), n.ac, n.sc, |r| out.mmio.push(r))
                }
                NodeKind::Reserved => {
                    decode_reg(n.reg.unwrap_or(&[]), n.ac, n.sc, |r| out.reserved.push(r))
                }
                _ => {}
            }
        };
        let _ = self.walk(|p| {
            if p.node != cur.node {
                // A node's properties all precede its children's, so the
                // previous node is complete.
                flush(&cur, &mut out);
                cur = NodeProps {
                    node: p.node,
                    kind: if p.depth == 2 {
                        NodeKind::Root
                    } else if p.depth == 3 && p.path.starts_with(b"/reserved-memory/") {
                        NodeKind::Reserved
                    } else {
                        NodeKind::Other
                    },
                    available: true,
                    ac: p.ac,
                    sc: p.sc,
                    ..NodeProps::default()
                };
            }
            match p.name {
                b"device_type" => cur.memory = cstr(p.value, 0) == Some(b"memory"),
                b"status" => cur.available = matches!(cstr(p.value, 0), Some(b"okay" | b"ok")),
                b"reg" => cur.reg = Some(p.value),
                b"linux,usable-memory" => cur.usable = Some(p.value),
                b"interrupt-controller" => cur.intc = true,
                _ => {}
            }
        });
        flush(&cur, &mut out);
        if let Some(r) = self.console() {
            out.mmio.push(r);
        }
        out
    }

    /// The value of property `name` of the node at `path` (exact path).
    fn prop(&self, path: &[u8], name: &[u8]) -> Option<&'a [u8]> {
        let mut found = None;
        let _ = self.walk(|p| {
            if found.is_none() && p.path == path && p.name == name {
                found = Some(p.value);
            }
        });
        found
    }

    /// The console's register range: `/chosen/stdout-path` (else
    /// `linux,stdout-path`), a path or an alias optionally followed by
    /// more path and by `:options`, translated through every ancestor's
    /// `ranges` to a CPU physical address.
    fn console(&self) -> Option<PhysRange> {
        let sp = self
            .prop(b"/chosen", b"stdout-path")
            .or_else(|| self.prop(b"/chosen", b"linux,stdout-path"))?;
        let sp = cstr(sp, 0)?;
        let sp = sp.split(|&c| c == b':').next().unwrap_or(b"");
        let mut buf = [0u8; PATH_MAX];
        let path = self.resolve_alias(sp, &mut buf)?;
        self.translated_reg(path).next()
    }

    /// `path` itself if absolute; else its first component looked up in
    /// `/aliases`, with the rest of `path` appended (in `buf`).
    fn resolve_alias<'b>(&self, path: &'b [u8], buf: &'b mut [u8; PATH_MAX]) -> Option<&'b [u8]> {
        if path.first() == Some(&b'/') {
            return Some(path);
        }
        let cut = path.iter().position(|&c| c == b'/').unwrap_or(path.len());
        let (alias, rest) = path.split_at(cut);
        if alias.is_empty() {
            return None;
        }
        let target = cstr(self.prop(b"/aliases", alias)?, 0)?;
        if target.first() != Some(&b'/') {
            return None;
        }
        let len = target.len() + rest.len();
        let dst = buf.get_mut(..len)?;
        dst[..target.len()].copy_from_slice(target);
        dst[target.len()..].copy_from_slice(rest);
        Some(&buf[..len])
    }

    /// The `reg` ranges of the node at `path` (components may omit the
    /// unit address, as in Linux), translated through each ancestor's
    /// `ranges` into the root's address space. Empty if an ancestor below
    /// the root has no `ranges` (its children are not memory mapped) or
    /// uses cell counts this reader does not handle.
    fn translated_reg(&self, path: &[u8]) -> impl Iterator<Item = PhysRange> {
        // Per depth on the way to the node: own (#address-cells,
        // #size-cells), `ranges`, and the path length that matched.
        let mut cells = [(2u32, 1u32); MAX_DEPTH + 1];
        let mut ranges: [Option<&'a [u8]>; MAX_DEPTH + 1] = [None; MAX_DEPTH + 1];
        let mut target: Option<(usize, usize, &'a [u8])> = None;
        let mut matched_node = [0usize; MAX_DEPTH + 1];
        let want = path_components(path);
        let _ = self.walk(|p| {
            // Only the first node matching at each depth counts.
            if p.depth == 0 || (matched_node[p.depth] != 0 && matched_node[p.depth] != p.node) {
                return;
            }
            if !path_prefix_matches(p.path, path) {
                return;
            }
            if matched_node[p.depth] == 0 {
                // An earlier ancestor must have matched (the walk is in
                // document order, so it did if it exists).
                matched_node[p.depth] = p.node;
            }
            match p.name {
                b"#address-cells" => cells[p.depth].0 = be32(p.value, 0).unwrap_or(2),
                b"#size-cells" => cells[p.depth].1 = be32(p.value, 0).unwrap_or(1),
                b"ranges" => ranges[p.depth] = Some(p.value),
                b"reg" if path_components(p.path) == want && target.is_none() => {
                    target = Some((p.depth, p.node, p.value));
                }
                _ => {}
            }
        });
        let mut out = [None; 4];
        if let Some((depth, _, reg)) = target {
            let (ac, sc) = cells[depth - 1];
            let mut n = 0;
            decode_reg(reg, ac, sc, |r| {
                if n < out.len() {
                    out[n] = translate(r, depth, &cells, &ranges);
                    n += 1;
                }
            });
        }
        out.into_iter().flatten()
    }

    /// The first root-level node whose `compatible` list `pick` accepts:
    /// its path (in `path`, `len` bytes) and what `pick` returned.
    fn root_child<T>(
        &self,
        path: &mut [u8; PATH_MAX],
        mut pick: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<(T, usize)> {
        let mut found = None;
        let _ = self.walk(|p| {
            if p.depth == 2
                && p.name == b"compatible"
                && found.is_none()
                && let Some(v) = pick(p.value)
            {
                // `p.path` is at most PATH_MAX long (the walk cuts it).
                let n = p.path.len().min(PATH_MAX);
                path[..n].copy_from_slice(&p.path[..n]);
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

    /// The CPUs: every `/cpus` child whose `device_type` is `"cpu"` and
    /// whose `status` (if any) is `"okay"`, with its `reg` (the MPIDR
    /// affinity) and `enable-method`; `cpu-release-addr` for a spin table.
    /// And the `method` of `/psci` (or `/firmware/psci`).
    fn cpus(&self) -> CpuList {
        #[derive(Default)]
        struct Node {
            id: usize,
            cpu: bool,
            ok: bool,
            reg: Option<u64>,
            psci: bool,
            spin: bool,
            release: Option<u64>,
        }
        let mut list = CpuList::new();
        let mut cur = Node::default();
        let flush = |n: &Node, list: &mut CpuList| {
            let Some(hw_id) = n.reg.filter(|_| n.cpu && n.ok) else {
                return;
            };
            let method = match (n.psci, n.spin, n.release) {
                (true, _, _) => StartMethod::Psci,
                (_, true, Some(pa)) => StartMethod::SpinTable(PhysAddr::new(pa)),
                _ => StartMethod::Unknown,
            };
            list.push(CpuDesc { hw_id, method });
        };
        let _ = self.walk(|p| {
            // `/psci`, or `/firmware/psci` where newer trees put it.
            if matches!(p.path, b"/psci" | b"/firmware/psci") && p.name == b"method" {
                list.psci = match cstr(p.value, 0) {
                    Some(b"hvc") => Some(PsciConduit::Hvc),
                    Some(b"smc") => Some(PsciConduit::Smc),
                    _ => None,
                };
            }
            if p.depth != 3 || !p.path.starts_with(b"/cpus/") {
                return;
            }
            if p.node != cur.id {
                flush(&cur, &mut list);
                cur = Node {
                    id: p.node,
                    ok: true,
                    ..Node::default()
                };
            }
            match p.name {
                b"device_type" => cur.cpu = cstr(p.value, 0) == Some(b"cpu"),
                b"status" => cur.ok = matches!(cstr(p.value, 0), Some(b"okay" | b"ok")),
                b"reg" => {
                    cur.reg = match p.ac {
                        1 => be32(p.value, 0).map(u64::from),
                        2 => be64(p.value, 0),
                        _ => None,
                    }
                }
                b"enable-method" => {
                    let m = cstr(p.value, 0);
                    cur.psci = m == Some(b"psci");
                    cur.spin = m == Some(b"spin-table");
                }
                b"cpu-release-addr" => cur.release = be_cells(p.value),
                _ => {}
            }
        });
        flush(&cur, &mut list);
        list
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
        self.walk(|p| {
            if p.path == path && p.name == b"reg" {
                decode_reg(p.value, p.ac, p.sc, &mut f);
            }
        })
    }
}

/// One property, as the walk meets it.
struct Prop<'p, 'a> {
    /// 1 for the root's properties, 2 for its children's, ...
    depth: usize,
    /// The node's number in document order (the root is 1).
    node: usize,
    /// The node's path ("/" for the root).
    path: &'p [u8],
    name: &'a [u8],
    value: &'a [u8],
    /// The parent's `#address-cells` / `#size-cells` (the cells of `reg`).
    ac: u32,
    sc: u32,
}

/// Where a node sits, as far as [`Fdt::ranges`] cares.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum NodeKind {
    /// A child of the root: memory or an interrupt controller.
    Root,
    /// A child of `/reserved-memory`.
    Reserved,
    #[default]
    Other,
}

/// The properties of one node that [`Fdt::ranges`] reads, gathered
/// before deciding (a node may list `reg` before `device_type` or
/// `status`).
#[derive(Default)]
struct NodeProps<'a> {
    node: usize,
    kind: NodeKind,
    available: bool,
    memory: bool,
    intc: bool,
    reg: Option<&'a [u8]>,
    usable: Option<&'a [u8]>,
    ac: u32,
    sc: u32,
}

/// Number of components of a path ("/" has none, "/a/b" two).
fn path_components(path: &[u8]) -> usize {
    path.split(|&c| c == b'/').filter(|c| !c.is_empty()).count()
}

/// Whether the node at `node_path` is `target` or one of its ancestors;
/// a component of `target` without a unit address (`@...`) matches any
/// unit address, as Linux's path lookup does.
fn path_prefix_matches(node_path: &[u8], target: &[u8]) -> bool {
    let mut want = target.split(|&c| c == b'/').filter(|c| !c.is_empty());
    for have in node_path.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        let Some(w) = want.next() else {
            return false;
        };
        let base = have.split(|&c| c == b'@').next().unwrap_or(b"");
        if have != w && (w.contains(&b'@') || base != w) {
            return false;
        }
    }
    true
}

/// Reads a number of 0, 1 or 2 cells at byte `off` of `v`.
fn read_cells(v: &[u8], off: usize, cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(v, off).map(u64::from),
        2 => be64(v, off),
        _ => None,
    }
}

/// Translates `r`, a `reg` range of a node at `depth`, up through the
/// `ranges` of its ancestors at depths `depth - 1` down to 2 (the root's
/// children's addresses are CPU physical addresses).
fn translate(
    r: PhysRange,
    depth: usize,
    cells: &[(u32, u32); MAX_DEPTH + 1],
    ranges: &[Option<&[u8]>; MAX_DEPTH + 1],
) -> Option<PhysRange> {
    let mut addr = r.start.as_u64();
    let size = r.size();
    for k in (2..depth).rev() {
        let map = ranges[k]?;
        if map.is_empty() {
            continue; // an identity mapping
        }
        let (cac, csc) = cells[k];
        let pac = cells[k - 1].0;
        if cac > 2 || csc > 2 || pac > 2 {
            return None;
        }
        let stride = 4 * (cac + pac + csc) as usize;
        if stride == 0 {
            return None;
        }
        addr = (0..map.len() / stride).find_map(|i| {
            let off = i * stride;
            let child = read_cells(map, off, cac)?;
            let parent = read_cells(map, off + 4 * cac as usize, pac)?;
            let len = read_cells(map, off + 4 * (cac + pac) as usize, csc)?;
            let within = addr.checked_sub(child).filter(|&d| d < len)?;
            parent.checked_add(within)
        })?;
    }
    Some(PhysRange::new(PhysAddr::new(addr), size))
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
    fn reads_cpus_psci_and_spin_tables() {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .begin("psci")
            .prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")
            .prop("method", b"hvc\0")
            .end()
            .begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0])
            .begin("cpu-map")
            .begin("cluster0")
            .begin("core0")
            .cells("cpu", &[1])
            .end()
            .end()
            .end()
            .begin("cpu@0")
            .prop("device_type", b"cpu\0")
            .prop("enable-method", b"psci\0")
            .cells("reg", &[0])
            .end()
            .begin("cpu@1")
            .prop("device_type", b"cpu\0")
            .cells("reg", &[0x101])
            .prop("enable-method", b"psci\0")
            .begin("l2-cache")
            .prop("device_type", b"cache\0")
            .cells("reg", &[7])
            .end()
            .end()
            .begin("cpu@2")
            .prop("device_type", b"cpu\0")
            .cells("reg", &[2])
            .prop("status", b"disabled\0")
            .end()
            .begin("cpu@3")
            .prop("device_type", b"cpu\0")
            .cells("reg", &[3])
            .prop("enable-method", b"spin-table\0")
            .cells("cpu-release-addr", &[0, 0xf0])
            .end()
            .begin("cpu@4")
            .prop("device_type", b"cpu\0")
            .cells("reg", &[4])
            .prop("enable-method", b"spin-table\0")
            .end()
            .end()
            .end();
        let blob = b.build();
        let c = Fdt::new(&blob).unwrap().facts().cpus;
        assert_eq!(c.psci, Some(PsciConduit::Hvc));
        assert_eq!(
            c.as_slice(),
            [
                CpuDesc {
                    hw_id: 0,
                    method: StartMethod::Psci
                },
                CpuDesc {
                    hw_id: 0x101,
                    method: StartMethod::Psci
                },
                CpuDesc {
                    hw_id: 3,
                    method: StartMethod::SpinTable(PhysAddr::new(0xf0))
                },
                CpuDesc {
                    hw_id: 4,
                    method: StartMethod::Unknown
                },
            ],
            "the disabled CPU, cpu-map and the cache node are not CPUs"
        );
        assert!(Fdt::new(&virt_like()).unwrap().facts().cpus.is_empty());
    }

    #[test]
    fn reads_a_virt_like_tree() {
        let blob = virt_like();
        let fdt = Fdt::new(&blob).unwrap();
        let f = fdt.facts();
        let m = fdt.ranges();
        assert_eq!(f.compatible, Some(&b"linux,dummy-virt"[..]));
        assert_eq!(f.machine, Machine::Virt);
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
            m.ram.as_slice(),
            &[PhysRange::new(PhysAddr::new(0x4000_0000), 0x2000_0000)]
        );
        assert_eq!(
            m.reserved.as_slice(),
            &[
                PhysRange::new(PhysAddr::new(0x4800_0000), 0x10_0000),
                PhysRange::new(PhysAddr::new(0x5000_0000), 0x2000)
            ]
        );
        assert_eq!(f.console_uart, Some(PhysAddr::new(0x0900_0000)));
        assert_eq!(
            m.mmio.as_slice().len(),
            3,
            "two GIC ranges and the UART: {:?}",
            m.mmio
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
        assert!(Fdt::new(&blob).unwrap().ranges().ram.is_empty());
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
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0, 0, 0x1000])
            .end()
            .end();
        let blob = b.build();
        assert!(Fdt::new(&blob).unwrap().ranges().ram.is_empty());
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
        assert_eq!(fdt.walk(|_| {}), Err(FdtError::BadStructure));
        let mut b = Builder::default();
        for _ in 0..40 {
            b.begin("n");
        }
        for _ in 0..40 {
            b.end();
        }
        let blob = b.build();
        assert_eq!(
            Fdt::new(&blob).unwrap().walk(|_| {}),
            Err(FdtError::BadStructure)
        );
    }

    fn r(a: u64, s: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(a), s)
    }

    #[test]
    fn memory_is_found_by_device_type_and_status() {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            // Any name: the device_type decides, wherever it is listed.
            .begin("sdram@80000000")
            .cells("reg", &[0, 0x8000_0000, 0, 0x1000_0000])
            .prop("device_type", b"memory\0")
            .end()
            // Named memory but without device_type: not RAM (as Linux).
            .begin("memory@90000000")
            .cells("reg", &[0, 0x9000_0000, 0, 0x1000_0000])
            .end()
            // Disabled banks are not RAM; "okay" and "ok" ones are.
            .begin("memory@a0000000")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0xa000_0000, 0, 0x1000_0000])
            .prop("status", b"disabled\0")
            .end()
            .begin("memory@b0000000")
            .prop("device_type", b"memory\0")
            .prop("status", b"okay\0")
            .cells(
                "reg",
                &[0, 0xb000_0000, 0, 0x1000, 0, 0xc000_0000, 0, 0x2000],
            )
            .end()
            .begin("memory@d0000000")
            .prop("status", b"ok\0")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0xd000_0000, 0, 0x1000_0000])
            // linux,usable-memory replaces reg.
            .cells("linux,usable-memory", &[0, 0xd000_0000, 0, 0x1000])
            .begin("child")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0x1234, 0x1000])
            .end()
            .end()
            // Not at the root: not scanned.
            .begin("soc")
            .begin("memory@e0000000")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0xe000_0000, 0, 0x1000])
            .end()
            .end()
            .end();
        let blob = b.build();
        let ram = Fdt::new(&blob).unwrap().ranges().ram;
        assert_eq!(
            ram.as_slice(),
            &[
                r(0x8000_0000, 0x1000_0000),
                r(0xb000_0000, 0x1000),
                r(0xc000_0000, 0x2000),
                r(0xd000_0000, 0x1000)
            ]
        );
    }

    #[test]
    fn reservations_have_no_fixed_limit_and_follow_status() {
        let mut b = Builder::default();
        for i in 0..100u64 {
            b.rsv.push((0x1000_0000 + i * 0x10_0000, 0x1000));
        }
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .begin("reserved-memory")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2]);
        for i in 0..60u32 {
            b.begin(&std::format!("r@{i}"));
            if i == 7 {
                b.prop("status", b"disabled\0");
            }
            b.cells("reg", &[1, i * 0x10_0000, 0, 0x2000]).end();
        }
        // A dynamically placed region has no reg: nothing to reserve.
        b.begin("pool").cells("size", &[0, 0x10_0000]).end();
        b.end().end();
        let blob = b.build();
        let res = Fdt::new(&blob).unwrap().ranges().reserved;
        assert_eq!(res.as_slice().len(), 100 + 59);
        assert_eq!(res.total(), 100 * 0x1000 + 59 * 0x2000);
        assert!(
            !res.as_slice()
                .contains(&r(0x1_0000_0000 + 7 * 0x10_0000, 0x2000))
        );
        assert!(
            res.as_slice()
                .contains(&r(0x1_0000_0000 + 59 * 0x10_0000, 0x2000))
        );
        assert!(
            res.as_slice()
                .contains(&r(0x1000_0000 + 99 * 0x10_0000, 0x1000))
        );
    }

    /// A Pi-like tree: the UART under a `/soc` bus whose `ranges` map bus
    /// addresses 0x7e00_0000.. to CPU addresses 0x3f00_0000.., many
    /// aliases, and `chosen` as given.
    fn pi_like(chosen: &[(&str, &[u8])], soc_ranges: Option<&[u32]>) -> Vec<u8> {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .begin("aliases");
        for i in 0..40 {
            b.prop(&std::format!("i2c{i}"), b"/soc/i2c@7e804000\0");
        }
        b.prop("serial1", b"/soc/serial@7e201000\0")
            .prop("soc", b"/soc\0")
            .end()
            .begin("chosen");
        for (k, v) in chosen {
            b.prop(k, v);
        }
        b.end().begin("soc").cells("#address-cells", &[1]);
        b.cells("#size-cells", &[1]);
        if let Some(rg) = soc_ranges {
            b.cells("ranges", rg);
        }
        b.begin("serial@7e215040")
            .cells("reg", &[0x7e21_5040, 0x40])
            .end()
            .begin("serial@7e201000")
            .cells("reg", &[0x7e20_1000, 0x200])
            .end()
            .end()
            .end();
        b.build()
    }

    #[test]
    fn stdout_path_resolves_any_path_and_alias() {
        let pi_ranges: &[u32] = &[
            0x7e00_0000,
            0x3f00_0000,
            0x100_0000,
            0x4000_0000,
            0x4000_0000,
            0x1000,
        ];
        let uart = |chosen: &[(&str, &[u8])], ranges: Option<&[u32]>| {
            let blob = pi_like(chosen, ranges);
            let fdt = Fdt::new(&blob).unwrap();
            let a = fdt.facts().console_uart;
            // The MMIO list holds the same range, found the same way.
            let m = fdt.ranges().mmio;
            assert_eq!(a, m.as_slice().first().map(|r| r.start));
            a
        };
        let pa = Some(PhysAddr::new(0x3f20_1000));
        // An alias after 40 others, with options.
        assert_eq!(
            uart(&[("stdout-path", b"serial1:115200n8\0")], Some(pi_ranges)),
            pa
        );
        // A full path; a path without the unit address; the older name.
        assert_eq!(
            uart(
                &[("stdout-path", b"/soc/serial@7e201000\0")],
                Some(pi_ranges)
            ),
            pa
        );
        assert_eq!(
            uart(&[("stdout-path", b"/soc/serial\0")], Some(pi_ranges)),
            Some(PhysAddr::new(0x3f21_5040)),
            "the first node of that name"
        );
        assert_eq!(
            uart(
                &[("linux,stdout-path", b"/soc/serial@7e201000\0")],
                Some(pi_ranges)
            ),
            pa
        );
        // An alias followed by more path.
        assert_eq!(
            uart(
                &[("stdout-path", b"soc/serial@7e201000:9600\0")],
                Some(pi_ranges)
            ),
            pa
        );
        // stdout-path wins over linux,stdout-path.
        assert_eq!(
            uart(
                &[
                    ("linux,stdout-path", b"/soc/serial@7e215040\0"),
                    ("stdout-path", b"serial1\0")
                ],
                Some(pi_ranges)
            ),
            pa
        );
        // An empty `ranges` is the identity.
        assert_eq!(
            uart(&[("stdout-path", b"serial1\0")], Some(&[])),
            Some(PhysAddr::new(0x7e20_1000))
        );
        // No `ranges` (not memory mapped), an address outside every
        // window, an unknown alias or path: no console.
        assert_eq!(uart(&[("stdout-path", b"serial1\0")], None), None);
        assert_eq!(
            uart(&[("stdout-path", b"serial1\0")], Some(&[0, 0, 0x1000])),
            None
        );
        assert_eq!(
            uart(&[("stdout-path", b"serial9\0")], Some(pi_ranges)),
            None
        );
        assert_eq!(
            uart(&[("stdout-path", b"/soc/serial@1\0")], Some(pi_ranges)),
            None
        );
        assert_eq!(
            uart(&[("stdout-path", b":115200\0")], Some(pi_ranges)),
            None
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
                let _ = fdt.ranges();
            }
        }
    }
}
