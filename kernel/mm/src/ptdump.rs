//! Page-table dumps of a user address space, for people to read: `ptdump`,
//! one line per run of entries with the same attributes in the layout of
//! Linux's arm64 page-table dump (`/sys/kernel/debug/kernel_page_tables`),
//! and `mmview`, one record per run of pages of one folio with what the
//! memmap says about it (folio head and order, mapcount, how many address
//! spaces map the page). The kernel serves both as files under
//! `/sys/kernel/mm/folium/`; `cargo xtask mmview` draws the second.
//!
//! Both walk the tree read-only ([`PageTable::for_each_leaf_below`], with
//! [`PageTable::raw_leaf`] for the raw entry) and never panic on what they
//! find: a frame outside the memmap or not in any folio just has no folio
//! fields. Output is bounded: after [`Dump::max_lines`] lines the dump
//! stops with a line that says so and where.
//!
//! # ptdump lines
//!
//! ```text
//! 0x00007fffff6b0000-0x00007fffff6c5000          84K PTE   USR RW NX SHD AF NG         UXN    MEM/NORMAL
//! 0x00007fffff6c5000-0x00007fffff6c6000           4K PTE   USR ro NX SHD AF NG         UXN    MEM/NORMAL
//! 0x00007fffff6f0000-0x00007fffffffd000        9268K
//! ```
//!
//! The range (end exclusive), its size in the largest unit that divides it
//! (K, M, G ...), the level of the entries (`PTE` pages, `PMD` 2 MiB
//! blocks, `PUD` 1 GiB blocks), then one column per attribute, in Linux's
//! order and spelling: a blank for a valid entry or `F` for an entry the
//! MMU does not use, which a user dump shows for a `PROT_NONE` page (its
//! protnone entry keeps the frame; the other columns then say how it is
//! spelled, not what the hardware allows), `USR` (user accessible),
//! `ro` or `RW`, `NX` or `x ` (arm64: privileged execute-never, always set
//! on user pages), `SHD` (inner shareable), `AF` (accessed), `NG` (not
//! global), `CON` (the arm64 contiguous hint: the entry belongs to a
//! folded block of [`PteFormat::CONT_ENTRIES`] entries, as
//! [`PteFormat::pte_cont`] reads it), `BLK` (a block rather than a page),
//! `UXN` (user execute-never), a blank where Linux shows `GP` (BTI guarded
//! pages, which Folium does not use), and the memory type. Consecutive
//! entries merge into one line when their level and every column agree,
//! as Linux merges them; frames need not be consecutive. A range no entry
//! maps gets a line with its range and size alone (Linux names the level
//! its walk found empty there; this dump does not).
//!
//! Where Folium differs from Linux's columns: `RW` means write permission,
//! so a writable entry the hardware has not yet marked dirty (arm64 DBM
//! with AP\[2\] still set) shows `RW`, where Linux, printing AP\[2\],
//! shows `ro`. On x86-64 the same layout is used (not Linux's x86 dump):
//! `NX` is the NX bit, `SHD`, `CON` and `UXN` stay blank, `NG` is a clear
//! G bit, and the memory types read `MEM/NORMAL`, `MEM/UC-`, `DEVICE/UC`.
//!
//! The dump opens with `---[ TITLE ]---` and ends with `---[ TITLE end
//! ]---`, or `---[ truncated at 0xADDR: more than N lines ]---`.
//!
//! # mmview records
//!
//! ```text
//! 0x0000ffffbfe00000-0x0000ffffbfe10000 pfn=0x4a230 head=0x4a230 order=4 mapcount=32 maps=2 perm=r-- flags=yd-- PTE
//! ```
//!
//! One line per run of pages that are consecutive in both address and
//! frame, belong to one folio and agree on every field: the range, the
//! first page's frame, the folio's head frame and order, its mapcount (the
//! number of PTEs mapping any of its pages, Linux's `folio_mapcount`), then
//! `maps`, how many live address spaces (this one included) map this very
//! page at this address: more than 1 means the page is shared
//! copy-on-write after a fork (Linux's per-page mapcount would say the
//! same; Folium keeps only the folio's). `perm` is read, write, execute
//! as the entry grants them (`---` for a `PROT_NONE` page); `flags` are `y` young (accessed), `d` dirty,
//! `c` in a folded (contiguous) block, `z` the shared zero page, `-` for
//! each that is not. A frame outside the memmap or in no folio shows
//! `head=- order=- mapcount=-`. Lines starting with `#` are comments: the
//! title first, the field list, and `# end` or `# truncated at 0xADDR:
//! more than N lines` last.

use core::fmt::{self, Write};

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use crate::memmap::Memmap;
use crate::pgtable::{Attrs, Level, MemType, PageTable, PteFormat, Translation};

/// The most lines a dump prints by default (each a little over 100
/// bytes, so about 256 KiB of kernel heap at most).
pub const MAX_LINES: usize = 2048;

/// What to dump and what to look things up in.
pub struct Dump<'a, F: PteFormat> {
    /// The tree to dump.
    pub table: &'a PageTable<F>,
    /// One past the last address dumped: the end of the user half.
    pub end: VirtAddr,
    /// The most lines written, first and last included.
    pub max_lines: usize,
    /// Where folios are described (`None`: no folio fields).
    pub memmap: Option<&'a Memmap>,
    /// Every other live address space, for the `maps` census.
    pub others: &'a [&'a PageTable<F>],
    /// The shared zero page, if there is one.
    pub zero_pfn: Option<Pfn>,
}

/// One leaf entry as the dumps see it.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    va: u64,
    level: Level,
    pfn: Pfn,
    attrs: Attrs,
    cont: bool,
}

impl Leaf {
    fn end(&self) -> u64 {
        self.va + self.level.size()
    }
}

/// Linux's name for the entries of a level (4 levels, 48-bit VAs).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::L0 => "PGD",
        Level::L1 => "PUD",
        Level::L2 => "PMD",
        Level::L3 => "PTE",
    }
}

/// `size` bytes in the largest unit that divides it, as Linux's dump
/// prints it: right-aligned in 9 columns, then the unit letter.
fn write_size(out: &mut impl Write, size: u64) -> fmt::Result {
    const UNITS: &[u8] = b"KMGTPE";
    let mut v = size >> 10;
    let mut unit = 0;
    while v != 0 && v & 1023 == 0 && unit + 1 < UNITS.len() {
        v >>= 10;
        unit += 1;
    }
    write!(out, "{v:>9}{}", UNITS[unit] as char)
}

/// The attribute columns of a ptdump line: what two entries must share to
/// merge into one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prot {
    /// Invalid to the MMU: a protnone entry (Linux's `F` column).
    invalid: bool,
    level: Level,
    user: bool,
    ro: bool,
    nx: bool,
    shd: bool,
    af: bool,
    ng: bool,
    con: bool,
    uxn: bool,
    mem: MemType,
}

/// True for the arm64 format (the one with a contiguous hint).
fn is_arm64<F: PteFormat>() -> bool {
    F::CONT_ENTRIES > 1
}

impl Prot {
    fn of<F: PteFormat>(l: &Leaf) -> Prot {
        let a = l.attrs;
        let arm = is_arm64::<F>();
        // arm64: user pages are never executable by the kernel (PXN set),
        // kernel pages never by user code (UXN set); see `Attrs`.
        let (nx, uxn) = match (arm, a.user) {
            (true, true) => (true, !a.exec),
            (true, false) => (!a.exec, true),
            (false, _) => (!a.exec, false),
        };
        Prot {
            invalid: a.protnone,
            level: l.level,
            user: a.user,
            ro: !a.writable,
            nx,
            shd: arm,
            af: a.young,
            ng: !a.global,
            con: l.cont,
            uxn,
            mem: a.mem,
        }
    }

    fn write<F: PteFormat>(&self, out: &mut impl Write) -> fmt::Result {
        let col = |on: bool, set: &'static str, clear: &'static str| if on { set } else { clear };
        let mem = match (is_arm64::<F>(), self.mem) {
            (_, MemType::Normal) => "MEM/NORMAL",
            (true, MemType::Device) => "DEVICE/nGnRnE",
            (true, MemType::NormalNonCacheable) => "MEM/NORMAL-NC",
            (false, MemType::Device) => "DEVICE/UC",
            (false, MemType::NormalNonCacheable) => "MEM/UC-",
        };
        let cols = [
            col(self.invalid, "F", " "),
            col(self.user, "USR", "   "),
            col(self.ro, "ro", "RW"),
            col(self.nx, "NX", "x "),
            col(self.shd, "SHD", "   "),
            col(self.af, "AF", "  "),
            col(self.ng, "NG", "  "),
            col(self.con, "CON", "   "),
            col(self.level != Level::L3, "BLK", "   "),
            col(self.uxn, "UXN", "   "),
            "  ",
            mem,
        ];
        for c in cols {
            write!(out, " {c}")?;
        }
        Ok(())
    }
}

/// Counts lines against the cap.
struct Lines<'o, W: Write> {
    out: &'o mut W,
    written: usize,
    max: usize,
    /// Set once the cap stopped the dump.
    stopped: bool,
}

impl<W: Write> Lines<'_, W> {
    /// Room for one more line, keeping one for the closing line; if
    /// there is none, writes the truncation line (`note` formats it with
    /// the address reached and the cap) and stops.
    fn room(&mut self, at: u64, note: fn(&mut W, u64, usize) -> fmt::Result) -> bool {
        if self.stopped {
            return false;
        }
        if self.written + 1 < self.max {
            self.written += 1;
            return true;
        }
        self.stopped = true;
        let _ = note(self.out, at, self.max);
        false
    }
}

impl<'a, F: PteFormat> Dump<'a, F> {
    /// A dump of `table` below `end`, with no memmap, no other spaces and
    /// the default cap.
    pub fn new(table: &'a PageTable<F>, end: VirtAddr) -> Dump<'a, F> {
        Dump {
            table,
            end,
            max_lines: MAX_LINES,
            memmap: None,
            others: &[],
            zero_pfn: None,
        }
    }

    /// Calls `f` for each leaf below `end`, in address order.
    fn leaves(&self, mut f: impl FnMut(Leaf)) {
        self.table
            .for_each_leaf_below(self.end, |va, t: Translation| {
                let cont = self
                    .table
                    .raw_leaf(va)
                    .is_some_and(|leaf| F::pte_cont(leaf.pte));
                f(Leaf {
                    va: va.as_u64(),
                    level: t.level,
                    pfn: t.pa.pfn(),
                    attrs: t.attrs,
                    cont,
                });
            });
    }

    /// Writes the arm64-ptdump-style dump (see the module doc), headed by
    /// `---[ title ]---`.
    pub fn ptdump<W: Write>(&self, title: &str, out: &mut W) -> fmt::Result {
        writeln!(out, "---[ {title} ]---")?;
        let mut lines = Lines {
            out,
            written: 1,
            max: self.max_lines.max(2),
            stopped: false,
        };
        fn note<W: Write>(out: &mut W, at: u64, max: usize) -> fmt::Result {
            writeln!(
                out,
                "---[ truncated at {at:#018x}: more than {max} lines ]---"
            )
        }
        // The open run: (start, end, prot).
        let mut run: Option<(u64, u64, Prot)> = None;
        let mut covered = 0u64;
        let hole = |lines: &mut Lines<'_, W>, from: u64, to: u64| -> fmt::Result {
            if to > from && lines.room(from, note::<W>) {
                write!(lines.out, "{from:#018x}-{to:#018x}   ")?;
                write_size(lines.out, to - from)?;
                writeln!(lines.out)?;
            }
            Ok(())
        };
        let flush = |lines: &mut Lines<'_, W>, (s, e, p): (u64, u64, Prot)| -> fmt::Result {
            if lines.room(s, note::<W>) {
                write!(lines.out, "{s:#018x}-{e:#018x}   ")?;
                write_size(lines.out, e - s)?;
                write!(lines.out, " {}", level_name(p.level))?;
                p.write::<F>(lines.out)?;
                writeln!(lines.out)?;
            }
            Ok(())
        };
        let mut result = Ok(());
        self.leaves(|l| {
            if lines.stopped || result.is_err() {
                return;
            }
            let p = Prot::of::<F>(&l);
            match &mut run {
                Some((_, e, q)) if *e == l.va && *q == p => *e = l.end(),
                open => {
                    if let Some(r) = open.take() {
                        result = flush(&mut lines, r);
                        covered = r.1;
                    }
                    if result.is_ok() {
                        result = hole(&mut lines, covered, l.va);
                    }
                    *open = Some((l.va, l.end(), p));
                }
            }
        });
        result?;
        if let Some(r) = run {
            flush(&mut lines, r)?;
            covered = r.1;
        }
        hole(&mut lines, covered, self.end.as_u64())?;
        if !lines.stopped {
            writeln!(lines.out, "---[ {title} end ]---")?;
        }
        Ok(())
    }

    /// How many address spaces (this one and [`Dump::others`]) map frame
    /// `pfn` at `va`.
    fn maps(&self, va: u64, pfn: Pfn) -> u32 {
        let va = VirtAddr::new(va);
        1 + self
            .others
            .iter()
            .filter(|o| o.translate(va).is_some_and(|t| t.pa.pfn() == pfn))
            .count() as u32
    }

    /// Writes the mmview records (see the module doc), headed by
    /// `# title`.
    pub fn mmview<W: Write>(&self, title: &str, out: &mut W) -> fmt::Result {
        writeln!(out, "# {title}")?;
        writeln!(
            out,
            "# format={} page={PAGE_SIZE} cont_entries={} fields: start-end pfn head order mapcount maps perm flags(young dirty cont zero) level",
            F::NAME,
            F::CONT_ENTRIES
        )?;
        let mut lines = Lines {
            out,
            written: 2,
            max: self.max_lines.max(3),
            stopped: false,
        };
        fn note<W: Write>(out: &mut W, at: u64, max: usize) -> fmt::Result {
            writeln!(out, "# truncated at {at:#018x}: more than {max} lines")
        }
        let mut run: Option<Record> = None;
        let mut result = Ok(());
        self.leaves(|l| {
            if lines.stopped || result.is_err() {
                return;
            }
            let r = self.record(&l);
            match &mut run {
                Some(open) if open.extends(&r) => open.end = r.end,
                open => {
                    if let Some(done) = open.take()
                        && lines.room(done.start, note::<W>)
                    {
                        result = done.write(lines.out);
                    }
                    *open = Some(r);
                }
            }
        });
        result?;
        if let Some(done) = run
            && lines.room(done.start, note::<W>)
        {
            done.write(lines.out)?;
        }
        if !lines.stopped {
            writeln!(lines.out, "# end")?;
        }
        Ok(())
    }

    fn record(&self, l: &Leaf) -> Record {
        let folio = self
            .memmap
            .filter(|m| m.contains(l.pfn))
            .and_then(|m| m.page_folio(l.pfn))
            .map(|f| (f.pfn(), f.order().get(), f.mapcount()));
        Record {
            start: l.va,
            end: l.end(),
            level: l.level,
            pfn: l.pfn,
            folio,
            maps: self.maps(l.va, l.pfn),
            attrs: l.attrs,
            cont: l.cont,
            zero: self.zero_pfn == Some(l.pfn),
        }
    }
}

/// One mmview line.
#[derive(Clone, Copy, Debug)]
struct Record {
    start: u64,
    end: u64,
    level: Level,
    pfn: Pfn,
    /// (head, order, mapcount).
    folio: Option<(Pfn, u8, u32)>,
    maps: u32,
    attrs: Attrs,
    cont: bool,
    zero: bool,
}

impl Record {
    /// True if `next` (one entry) continues this run.
    fn extends(&self, next: &Record) -> bool {
        self.level == Level::L3
            && next.level == Level::L3
            && next.start == self.end
            && next.pfn.as_u64() == self.pfn.as_u64() + (self.end - self.start) / PAGE_SIZE
            && next.folio.map(|f| f.0) == self.folio.map(|f| f.0)
            && next.maps == self.maps
            && next.attrs.writable == self.attrs.writable
            && next.attrs.exec == self.attrs.exec
            && next.attrs.user == self.attrs.user
            && next.attrs.young == self.attrs.young
            && next.attrs.dirty == self.attrs.dirty
            && next.attrs.protnone == self.attrs.protnone
            && next.cont == self.cont
            && next.zero == self.zero
    }

    fn write(&self, out: &mut impl Write) -> fmt::Result {
        write!(
            out,
            "{:#018x}-{:#018x} pfn={:#x} ",
            self.start,
            self.end,
            self.pfn.as_u64()
        )?;
        match self.folio {
            Some((head, order, mapcount)) => write!(
                out,
                "head={:#x} order={order} mapcount={mapcount}",
                head.as_u64()
            )?,
            None => write!(out, "head=- order=- mapcount=-")?,
        }
        let a = self.attrs;
        let f = |on: bool, c: char| if on { c } else { '-' };
        writeln!(
            out,
            " maps={} perm={}{}{} flags={}{}{}{} {}",
            self.maps,
            f(a.user, 'r'),
            f(a.writable, 'w'),
            f(a.exec, 'x'),
            f(a.young, 'y'),
            f(a.dirty, 'd'),
            f(self.cont, 'c'),
            f(self.zero, 'z'),
            level_name(self.level)
        )
    }
}
