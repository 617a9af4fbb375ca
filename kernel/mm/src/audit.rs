//! The mm audit: a self-check of the whole machine's memory books, run on
//! demand (the kernel serves it as `/sys/kernel/mm/folium/audit`). It
//! walks every live page table and the memmap and reports each place
//! where they disagree.
//!
//! # What it checks
//!
//! 1. **The memmap covers every managed frame once.** Walking the
//!    descriptors block by block, each frame the allocator manages lies in
//!    exactly one free block (`BUDDY` head, or `PCP` on a CPU's list) or
//!    one allocated block (`HEAD` head); no tail of a block carries a head
//!    marker; the free pages counted this way equal the allocator's own
//!    count plus what the CPUs' lists hold, and
//!    `free + folio pages + table pages + kernel pages` equals the pages it
//!    manages.
//! 2. **Every table is accounted for.** Each table reachable from a root
//!    (user trees below `user_end`, kernel trees whole) is a frame the
//!    allocator handed out as a page table ([`PageFlags::PGTABLE`]) and is
//!    reached exactly once; each frame marked as a table is reachable (a
//!    marked frame nobody links is a leaked table). Kernel tables built
//!    from frames the allocator never managed (boot-time tables in the
//!    image) are skipped.
//! 3. **No user entry points at a free or foreign frame.** Every present
//!    user leaf maps the shared zero page or a page of an allocated
//!    anonymous folio; never a free frame, a table, a kernel block or a
//!    reserved frame, and never through an L1/L2 block (user spaces map
//!    4 KiB entries only).
//! 4. **Every anonymous folio's counts are what the tables imply.** An
//!    anonymous folio's mapcount is the number of present user entries
//!    mapping any of its pages, and its refcount the same number: each
//!    mapping holds one reference, and at an audit point nothing else
//!    does (see below). An anonymous folio no entry maps is a leaked one.
//! 5. **The known exceptions hold their exact counts.** The zero page has
//!    refcount 1 (the kernel's, never put) and mapcount 0 however many
//!    entries map it (Linux's special PTE). A kernel block (heap, kernel
//!    stack, the zero page, boot allocations: any allocated block that is
//!    neither an anonymous folio nor a table) holds at least one
//!    reference and is mapped by no user entry. A table frame holds
//!    exactly one reference and no mapcount. The deferred-split queue
//!    holds no reference: its length equals the number of heads flagged
//!    [`PageFlags::DEFERRED`].
//!
//! # When it is exact
//!
//! The counts are exact between address-space operations, when no
//! [`Gather`](crate::mmu_gather::Gather) is in flight (a gather owns the
//! references of entries it has cleared but not yet put) and no fault is
//! between allocating a folio and mapping it. The kernel runs the audit
//! inside the caller's own syscall with every other process stopped at a
//! kernel exit point or a blocking wait, which is such a point; callers
//! that could interrupt an operation midway must not audit.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;

use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::buddy::BuddyAllocator;
use crate::memmap::{Memmap, PageFlags};
use crate::pgtable::{Level, PageTable, PteFormat};

/// Findings kept in a [`Report`] (the rest are only counted).
pub const MAX_FINDINGS: usize = 32;

/// What a frame is, as the memmap says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// No descriptor: outside the memmap.
    Outside,
    /// Not managed by the allocator (hole, firmware, kernel image, memmap).
    Reserved,
    /// In a free block.
    Free,
    /// A page-table frame.
    Table,
    /// A page of an anonymous folio.
    Anon,
    /// The shared zero page.
    Zero,
    /// A page of another allocated block (heap, kernel stack...).
    Kernel,
}

/// One disagreement between the tables and the memmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A managed frame in no block.
    Uncovered {
        /// The frame.
        pfn: Pfn,
    },
    /// A head marker on a frame inside another block.
    Overlap {
        /// The enclosing block's head.
        head: Pfn,
        /// The marked frame inside it.
        inner: Pfn,
    },
    /// The memmap's free blocks do not add up to the allocator's count.
    FreeCount {
        /// The allocator's count (its free lists and the CPUs' lists).
        allocator: u64,
        /// Pages in free blocks of the memmap.
        memmap: u64,
    },
    /// The census does not add up to the pages the allocator manages.
    Managed {
        /// The allocator's count.
        allocator: u64,
        /// free + folio + table + kernel pages.
        census: u64,
    },
    /// A reachable table that is not a page-table frame.
    TableFrame {
        /// The table.
        table: PhysAddr,
        /// What the frame is.
        kind: FrameKind,
    },
    /// A table reached more than once.
    TableShared {
        /// The table.
        table: PhysAddr,
        /// How often it was reached.
        times: u32,
    },
    /// A page-table frame no root reaches.
    TableLeaked {
        /// The table.
        table: PhysAddr,
    },
    /// A table frame whose counts are not (1, 0).
    TableCounts {
        /// The table.
        table: PhysAddr,
        /// Its refcount.
        refcount: u32,
        /// Its mapcount.
        mapcount: u32,
    },
    /// A user entry mapping a frame that is neither an anonymous folio's
    /// nor the zero page.
    BadEntry {
        /// Which user tree (index into the roots audited).
        space: usize,
        /// The virtual address.
        va: VirtAddr,
        /// The frame it maps.
        pfn: Pfn,
        /// What the frame is.
        kind: FrameKind,
    },
    /// An L1/L2 block leaf in a user tree.
    UserBlock {
        /// Which user tree.
        space: usize,
        /// The virtual address.
        va: VirtAddr,
        /// The level of the leaf.
        level: u8,
    },
    /// An anonymous folio whose refcount is not its number of entries.
    Refcount {
        /// The folio.
        head: Pfn,
        /// Its refcount.
        refcount: u32,
        /// Entries mapping it.
        entries: u32,
    },
    /// An anonymous folio whose mapcount is not its number of entries.
    Mapcount {
        /// The folio.
        head: Pfn,
        /// Its mapcount.
        mapcount: u32,
        /// Entries mapping it.
        entries: u32,
    },
    /// The zero page's counts are not (1, 0).
    ZeroPage {
        /// Its refcount.
        refcount: u32,
        /// Its mapcount.
        mapcount: u32,
    },
    /// A kernel block with no reference or with a mapcount.
    KernelBlock {
        /// The block's head.
        head: Pfn,
        /// Its refcount.
        refcount: u32,
        /// Its mapcount.
        mapcount: u32,
    },
    /// The deferred-split queue's length differs from the flagged heads.
    Deferred {
        /// The queue's length.
        queued: u64,
        /// Heads flagged `DEFERRED`.
        flagged: u64,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pa = |p: Pfn| p.as_u64() * PAGE_SIZE;
        match *self {
            Finding::Uncovered { pfn } => write!(f, "frame {:#x} is in no block", pa(pfn)),
            Finding::Overlap { head, inner } => write!(
                f,
                "frame {:#x} inside the block at {:#x} is marked as a block",
                pa(inner),
                pa(head)
            ),
            Finding::FreeCount { allocator, memmap } => {
                write!(f, "free pages: allocator {allocator}, memmap {memmap}")
            }
            Finding::Managed { allocator, census } => {
                write!(f, "managed pages: allocator {allocator}, census {census}")
            }
            Finding::TableFrame { table, kind } => {
                write!(f, "table {:#x} is a {kind:?} frame", table.as_u64())
            }
            Finding::TableShared { table, times } => {
                write!(f, "table {:#x} reached {times} times", table.as_u64())
            }
            Finding::TableLeaked { table } => {
                write!(f, "table {:#x} leaked: no root reaches it", table.as_u64())
            }
            Finding::TableCounts {
                table,
                refcount,
                mapcount,
            } => write!(
                f,
                "table {:#x} has refcount {refcount} mapcount {mapcount}",
                table.as_u64()
            ),
            Finding::BadEntry {
                space,
                va,
                pfn,
                kind,
            } => write!(
                f,
                "space {space} maps {:#x} to {kind:?} frame {:#x}",
                va.as_u64(),
                pa(pfn)
            ),
            Finding::UserBlock { space, va, level } => write!(
                f,
                "space {space} maps {:#x} with an L{level} block",
                va.as_u64()
            ),
            Finding::Refcount {
                head,
                refcount,
                entries,
            } => write!(
                f,
                "folio {:#x}: refcount {refcount}, mapped by {entries} entries",
                pa(head)
            ),
            Finding::Mapcount {
                head,
                mapcount,
                entries,
            } => write!(
                f,
                "folio {:#x}: mapcount {mapcount}, mapped by {entries} entries",
                pa(head)
            ),
            Finding::ZeroPage { refcount, mapcount } => write!(
                f,
                "zero page: refcount {refcount} mapcount {mapcount} (want 1, 0)"
            ),
            Finding::KernelBlock {
                head,
                refcount,
                mapcount,
            } => write!(
                f,
                "kernel block {:#x}: refcount {refcount} mapcount {mapcount}",
                pa(head)
            ),
            Finding::Deferred { queued, flagged } => {
                write!(f, "deferred split: {queued} queued, {flagged} flagged")
            }
        }
    }
}

/// What the audit counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Pages the allocator manages.
    pub managed: u64,
    /// Pages in free blocks.
    pub free: u64,
    /// Anonymous folios.
    pub folios: u64,
    /// Pages of anonymous folios.
    pub folio_pages: u64,
    /// Page-table frames (user and kernel).
    pub table_pages: u64,
    /// Of which reachable from the user roots.
    pub user_tables: u64,
    /// Pages of other allocated blocks (heap, kernel stacks, zero page...).
    pub kernel_pages: u64,
    /// User entries mapping anonymous folios.
    pub entries: u64,
    /// User entries mapping the zero page.
    pub zero_entries: u64,
    /// User address spaces walked.
    pub spaces: u64,
}

/// The audit's result: totals and the findings (the first
/// [`MAX_FINDINGS`] of them, and how many there were).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// What was counted.
    pub totals: Totals,
    /// The first findings.
    pub findings: Vec<Finding>,
    /// How many findings there were in all.
    pub nr_findings: u64,
}

impl Report {
    /// True if the books balance.
    pub fn ok(&self) -> bool {
        self.nr_findings == 0
    }

    fn find(&mut self, f: Finding) {
        self.nr_findings += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        }
    }

    /// The report as text: `ok` or `FAILED: N findings`, the totals, then
    /// one line per kept finding.
    pub fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let t = &self.totals;
        if self.ok() {
            writeln!(out, "audit: ok")?;
        } else {
            writeln!(out, "audit: FAILED: {} findings", self.nr_findings)?;
        }
        writeln!(
            out,
            "pages: managed {} = free {} + folio {} + table {} + kernel {}",
            t.managed, t.free, t.folio_pages, t.table_pages, t.kernel_pages
        )?;
        writeln!(
            out,
            "spaces {} user_tables {} folios {} entries {} zero_entries {}",
            t.spaces, t.user_tables, t.folios, t.entries, t.zero_entries
        )?;
        for f in &self.findings {
            writeln!(out, "finding: {f}")?;
        }
        if self.nr_findings > self.findings.len() as u64 {
            writeln!(
                out,
                "finding: ... {} more",
                self.nr_findings - self.findings.len() as u64
            )?;
        }
        Ok(())
    }
}

/// The trees to audit.
pub struct Trees<'a, F: PteFormat> {
    /// Every live user address space (all of them, or folio counts fall
    /// short and tables look leaked).
    pub user: &'a [&'a PageTable<F>],
    /// One past the highest user address: root entries from here up are
    /// the shared kernel half (x86) and are not walked in user trees.
    pub user_end: VirtAddr,
    /// The kernel's own trees, walked whole for their tables only (their
    /// leaves map kernel memory).
    pub kernel: &'a [&'a PageTable<F>],
    /// The shared zero page.
    pub zero_pfn: Pfn,
}

/// What `pfn` is.
pub fn frame_kind(mm: &Memmap, zero_pfn: Pfn, pfn: Pfn) -> FrameKind {
    let Some(page) = mm.get(pfn) else {
        return FrameKind::Outside;
    };
    if page.is_reserved() {
        return FrameKind::Reserved;
    }
    if pfn == zero_pfn {
        return FrameKind::Zero;
    }
    match mm.page_folio(pfn) {
        None => FrameKind::Free,
        Some(f) => {
            let flags = f.head_page().flags();
            if flags.contains(PageFlags::PGTABLE) {
                FrameKind::Table
            } else if flags.contains(PageFlags::ANON) {
                FrameKind::Anon
            } else {
                FrameKind::Kernel
            }
        }
    }
}

/// Runs the audit of `buddy`'s memmap against `trees`. `pcp_pages` is
/// what the CPUs' page lists (`pcp.rs`) hold, free pages whose heads are
/// marked `PCP` instead of `BUDDY`. `scratch` holds one
/// counter per memmap descriptor (its contents are overwritten); a
/// shorter one makes the audit report nothing but that it could not run
/// (`None`).
pub fn audit<F: PteFormat>(
    buddy: &BuddyAllocator<'_>,
    pcp_pages: u64,
    trees: &Trees<'_, F>,
    scratch: &mut [u32],
) -> Option<Report> {
    let mm = buddy.memmap();
    let nr = mm.nr_pages() as usize;
    let counts = scratch.get_mut(..nr)?;
    counts.fill(0);
    let r = Report::default();
    let idx = |pfn: Pfn| (pfn - mm.start_pfn()) as usize;

    // Tables and entries: count visits of each table frame, and entries
    // of each anonymous folio on its head's counter (tables and folio
    // heads are different frames, told apart by their kinds).
    let cells = Cell::from_mut(&mut *counts).as_slice_of_cells();
    let bump = |pfn: Pfn| {
        let c = &cells[idx(pfn)];
        c.set(c.get().saturating_add(1));
    };
    let report = RefCell::new(r);
    let visit_table = |t: PhysAddr, kernel: bool| {
        let kind = frame_kind(mm, trees.zero_pfn, t.pfn());
        match kind {
            FrameKind::Table => bump(t.pfn()),
            FrameKind::Reserved | FrameKind::Outside if kernel => {}
            _ => report
                .borrow_mut()
                .find(Finding::TableFrame { table: t, kind }),
        }
    };
    for tree in trees.kernel {
        tree.walk_below(
            VirtAddr::new(u64::MAX),
            &mut |t, _| visit_table(t, true),
            &mut |_, _, _| {},
        );
    }
    for (space, tree) in trees.user.iter().enumerate() {
        tree.walk_below(
            trees.user_end,
            &mut |t, _| {
                report.borrow_mut().totals.user_tables += 1;
                visit_table(t, false);
            },
            &mut |va, raw, level| {
                let mut r = report.borrow_mut();
                if level != Level::L3 {
                    let level = level.get();
                    r.find(Finding::UserBlock { space, va, level });
                    return;
                }
                let pfn = F::pte_pfn(raw);
                match frame_kind(mm, trees.zero_pfn, pfn) {
                    FrameKind::Zero => r.totals.zero_entries += 1,
                    FrameKind::Anon => {
                        // frame_kind found the head through page_folio.
                        if let Some(f) = mm.page_folio(pfn) {
                            bump(f.pfn());
                            r.totals.entries += 1;
                        }
                    }
                    kind => r.find(Finding::BadEntry {
                        space,
                        va,
                        pfn,
                        kind,
                    }),
                }
            },
        );
    }
    let mut r = report.into_inner();
    r.totals.spaces = trees.user.len() as u64;

    // The memmap, block by block.
    let pages = mm.pages();
    let mut flagged_deferred = 0u64;
    let mut i = 0usize;
    while i < nr {
        let page = &pages[i];
        let pfn = mm.start_pfn() + i as u64;
        if page.is_reserved() {
            i += 1;
            continue;
        }
        let Some(order) = page.head_order() else {
            r.find(Finding::Uncovered { pfn });
            i += 1;
            continue;
        };
        let len = (order.pages() as usize).min(nr - i);
        r.totals.managed += len as u64;
        for (k, tail) in pages[i + 1..i + len].iter().enumerate() {
            if tail.flags().intersects(PageFlags::MARKER_MASK) {
                r.find(Finding::Overlap {
                    head: pfn,
                    inner: pfn + (k + 1) as u64,
                });
            }
        }
        if page.is_free_head() {
            r.totals.free += len as u64;
            i += len;
            continue;
        }
        let flags = page.flags();
        let refcount = page.refcount().load(core::sync::atomic::Ordering::Relaxed);
        let mapcount = page.mapcount().load(core::sync::atomic::Ordering::Relaxed);
        if flags.contains(PageFlags::DEFERRED) {
            flagged_deferred += 1;
        }
        if flags.contains(PageFlags::PGTABLE) {
            r.totals.table_pages += len as u64;
            let table = pfn.phys();
            match counts[i] {
                0 => r.find(Finding::TableLeaked { table }),
                1 => {}
                times => r.find(Finding::TableShared { table, times }),
            }
            if refcount != 1 || mapcount != 0 {
                r.find(Finding::TableCounts {
                    table,
                    refcount,
                    mapcount,
                });
            }
        } else if flags.contains(PageFlags::ANON) {
            r.totals.folios += 1;
            r.totals.folio_pages += len as u64;
            let entries = counts[i];
            if refcount != entries {
                r.find(Finding::Refcount {
                    head: pfn,
                    refcount,
                    entries,
                });
            }
            if mapcount != entries {
                r.find(Finding::Mapcount {
                    head: pfn,
                    mapcount,
                    entries,
                });
            }
        } else {
            r.totals.kernel_pages += len as u64;
            if pfn == trees.zero_pfn {
                if refcount != 1 || mapcount != 0 {
                    r.find(Finding::ZeroPage { refcount, mapcount });
                }
            } else if refcount == 0 || mapcount != 0 {
                r.find(Finding::KernelBlock {
                    head: pfn,
                    refcount,
                    mapcount,
                });
            }
        }
        i += len;
    }
    let t = r.totals;
    if t.free != buddy.nr_free_pages() + pcp_pages {
        r.find(Finding::FreeCount {
            allocator: buddy.nr_free_pages() + pcp_pages,
            memmap: t.free,
        });
    }
    let census = t.free + t.folio_pages + t.table_pages + t.kernel_pages;
    if census != buddy.nr_managed_pages() || t.managed != census {
        r.find(Finding::Managed {
            allocator: buddy.nr_managed_pages(),
            census,
        });
    }
    if flagged_deferred != buddy.deferred_len() {
        r.find(Finding::Deferred {
            queued: buddy.deferred_len(),
            flagged: flagged_deferred,
        });
    }
    Some(r)
}

#[cfg(test)]
mod tests;
