//! The arch-neutral meaning of a page-table entry: absent, table, or leaf
//! with attributes.

use super::level::Level;
use crate::addr::{PAGE_SIZE, PhysAddr};

/// What one page-table entry means, independent of how an architecture
/// spells it. Every [`PteFormat`](super::PteFormat) round-trips it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PteKind {
    /// Not valid: the hardware faults on any access through it.
    Absent,
    /// Points to the next-level table at this (4 KiB aligned) address.
    Table(PhysAddr),
    /// Maps memory directly: a 4 KiB page at level 3, a 2 MiB or 1 GiB
    /// block at level 2 or 1. `pa` is aligned to the level's size. With
    /// [`Attrs::protnone`] (level 3 only) the hardware sees no mapping at
    /// all, but the mm still does: see there.
    Leaf {
        /// First byte of the mapped page or block.
        pa: PhysAddr,
        /// Permissions, state bits and memory type.
        attrs: Attrs,
    },
}

/// The memory type of a mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MemType {
    /// Ordinary RAM: write-back cacheable (inner shareable on arm64).
    #[default]
    Normal,
    /// MMIO: uncached, no speculation, no gathering or reordering
    /// (arm64 Device-nGnRnE, x86 UC).
    Device,
    /// RAM that must bypass the caches, e.g. buffers shared with a
    /// non-coherent device (arm64 Normal non-cacheable, x86 UC-).
    NormalNonCacheable,
}

/// Permissions and state of a leaf mapping.
///
/// **Execute model.** There is one `exec` bit, read together with `user`:
/// a user mapping with `exec` is executable at EL0 / CPL 3 and *never* in
/// the kernel; a kernel mapping with `exec` is executable in the kernel and
/// never by user code. "Executable by both" is not expressible on purpose:
/// no correct Folium mapping wants it (arm64 encodes this with PXN/UXN, x86
/// with NX plus SMEP).
///
/// **Dirty model.** `dirty` means "may have been written since last
/// cleaned". `writable` with `!dirty` is a clean writable mapping: on arm64
/// with hardware dirty management the first write marks it dirty without a
/// fault, on x86 the CPU sets D. `dirty` with `!writable` records a dirty
/// page that was later write-protected (fork's COW), so the dirt survives.
/// Kernel mappings that must never fault pass `young` and `dirty`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Stores are allowed.
    pub writable: bool,
    /// Accessible from user mode (EL0 / CPL 3).
    pub user: bool,
    /// Instruction fetch allowed at the mapping's own privilege (see above).
    pub exec: bool,
    /// Shared by all address spaces: TLB entries are not tagged with an
    /// ASID/PCID (arm64 `!nG`, x86 G). Kernel mappings only.
    pub global: bool,
    /// Accessed ("young"): arm64 AF, x86 A. An old arm64 entry faults on
    /// first access unless hardware access-flag management is on.
    pub young: bool,
    /// Written since last cleaned; see the dirty model above.
    pub dirty: bool,
    /// Memory type.
    pub mem: MemType,
    /// `PROT_NONE` (Linux's "protnone" encoding; L3 pages only): the
    /// entry keeps its frame and every other attribute for the mm, which
    /// counts it as a mapping of its folio (fork copies it, zap frees it,
    /// mprotect turns it back into an ordinary page with its contents),
    /// but it is *invalid* to the MMU (arm64: valid bit clear, x86: P
    /// clear, with a software bit telling it from an empty entry), so any
    /// access, the kernel's through a user pointer included, faults and
    /// nothing is cached in a TLB. The other attributes then say how the
    /// page was mapped, not what the hardware allows.
    pub protnone: bool,
}

impl Attrs {
    /// Kernel data: read-write, non-executable, global, normal memory,
    /// pre-set young and dirty so it never takes an access/dirty fault.
    pub const KERNEL_DATA: Attrs = Attrs {
        writable: true,
        user: false,
        exec: false,
        global: true,
        young: true,
        dirty: true,
        mem: MemType::Normal,
        protnone: false,
    };
    /// Kernel read-only data: like [`Attrs::KERNEL_DATA`] without write.
    pub const KERNEL_RODATA: Attrs = Attrs {
        writable: false,
        dirty: false,
        ..Attrs::KERNEL_DATA
    };
    /// Kernel text: read-only and executable by the kernel only.
    pub const KERNEL_TEXT: Attrs = Attrs {
        exec: true,
        ..Attrs::KERNEL_RODATA
    };
    /// Kernel MMIO: read-write device memory, never executable.
    pub const KERNEL_DEVICE: Attrs = Attrs {
        mem: MemType::Device,
        ..Attrs::KERNEL_DATA
    };

    /// A user mapping of normal memory: non-global, not yet young or dirty.
    pub const fn user(writable: bool, exec: bool) -> Attrs {
        Attrs {
            writable,
            user: true,
            exec,
            global: false,
            young: false,
            dirty: false,
            mem: MemType::Normal,
            protnone: false,
        }
    }
}

/// Why a [`PteKind`] cannot be encoded at a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteError {
    /// A leaf at level 0, a table at level 3, or a protnone leaf above
    /// level 3.
    BadLevel,
    /// The address is not aligned to the page, block or table size.
    Misaligned,
    /// The address does not fit the format's output-address field.
    AddressTooWide,
}

/// The checks every format shares: level, alignment, address width.
pub(super) fn check_common(kind: PteKind, level: Level, pa_bits: u32) -> Result<(), PteError> {
    let (pa, align) = match kind {
        PteKind::Absent => return Ok(()),
        PteKind::Table(pa) if level.can_be_table() => (pa, PAGE_SIZE),
        // Protnone exists for user pages only: never a block.
        PteKind::Leaf { attrs, .. } if attrs.protnone && level != Level::L3 => {
            return Err(PteError::BadLevel);
        }
        PteKind::Leaf { pa, .. } if level.can_be_leaf() => (pa, level.size()),
        PteKind::Table(_) | PteKind::Leaf { .. } => return Err(PteError::BadLevel),
    };
    if !pa.is_aligned(align) {
        return Err(PteError::Misaligned);
    }
    if pa.as_u64() >> pa_bits != 0 {
        return Err(PteError::AddressTooWide);
    }
    Ok(())
}
