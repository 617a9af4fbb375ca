//! The kernel's own page tables, built from buddy frames at boot and
//! switched to on both architectures: the linear map of all RAM (normal
//! write-back, never executable, in the largest blocks that fit and that
//! the CPU has: 1 GiB ones only where `arch::has_gib_pages`), the
//! kernel image with W^X per section (4 KiB pages), and the board's MMIO
//! as device memory. The boot stub's early tables are dropped.

use folium_boot::{BootInfo, PhysRange};
use folium_mm::pgtable::{Attrs, Level, MapOptions, MemType, PageTable, TableAlloc, Translation};
use folium_mm::{PAGE_SIZE, PhysAddr, VirtAddr};
use spin::Once;

use super::frames;
use crate::arch::KernelPteFormat;
use crate::platform::Board;

/// Page-table frames come from the buddy allocator and are never freed.
pub(super) struct BuddyTables;

// SAFETY: every frame is a fresh order-0 block (4 KiB aligned RAM mapped by
// the linear map), owned from now on by the page table that links it.
unsafe impl TableAlloc for BuddyTables {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        frames::alloc_table_frame()
    }
}

/// The kernel's tables, for lookups by tests.
pub struct KernelTables {
    /// Root of the kernel half (TTBR1_EL1 / CR3).
    pub root: PhysAddr,
}

static KERNEL_TABLES: Once<KernelTables> = Once::new();

/// Builds the kernel's tables and switches to them.
pub fn init(info: &BootInfo, board: &Board) {
    let lin = frames::linear();
    let mut pt = PageTable::<KernelPteFormat>::create(&mut BuddyTables, lin)
        .expect("no frame for the kernel's root table");
    let map = |pt: &mut PageTable<KernelPteFormat>,
               va: u64,
               pa: u64,
               size: u64,
               attrs: Attrs,
               opts: MapOptions| {
        if let Err(e) = pt.map_range(
            VirtAddr::new(va),
            PhysAddr::new(pa),
            size,
            attrs,
            &mut BuddyTables,
            opts,
        ) {
            panic!("kernel map of {va:#x} -> {pa:#x} (+{size:#x}) failed: {e}");
        }
    };
    // The linear map of RAM, except that the kernel image's alias is
    // read-only: W^X would mean little if text were writable through it.
    let image = info.kernel_phys.pages_covering();
    let ram = frames::usable_ram(board);
    let linear_opts = if crate::arch::has_gib_pages() {
        MapOptions::LARGEST
    } else {
        MapOptions::LARGEST_NO_GIB
    };
    for r in frames::subtract(&ram, &[image]) {
        map(
            &mut pt,
            r.start.as_u64() + info.linear_offset,
            r.start.as_u64(),
            r.size(),
            Attrs::KERNEL_DATA,
            linear_opts,
        );
    }
    for r in ram.iter().filter(|r| r.overlaps(&image)) {
        let (s, e) = (r.start.max(image.start), r.end.min(image.end));
        map(
            &mut pt,
            s.as_u64() + info.linear_offset,
            s.as_u64(),
            e - s,
            Attrs::KERNEL_RODATA,
            MapOptions::PAGES,
        );
    }
    let l = folium_boot::image_layout();
    let voff = crate::arch::kimage_voffset(info);
    let sections = [
        (l.start, l.text_end, Attrs::KERNEL_TEXT),
        (l.text_end, l.rodata_end, Attrs::KERNEL_RODATA),
        // .data and .bss, minus the guard page below the boot stack.
        (l.rodata_end, l.stack_guard, Attrs::KERNEL_DATA),
        (l.stack_guard + PAGE_SIZE, l.end, Attrs::KERNEL_DATA),
    ];
    for (s, e, attrs) in sections {
        if s < e {
            map(
                &mut pt,
                s.as_u64(),
                s.as_u64() - voff,
                e - s,
                attrs,
                MapOptions::PAGES,
            );
        }
    }
    for r in crate::platform::device_regions() {
        let PhysRange { start: s, end: e } = r.pages_covering();
        let va = VirtAddr::new(s.as_u64() + info.linear_offset);
        // A firmware-described range that overlaps RAM (or another device)
        // is skipped with a warning rather than stopping the boot.
        if let Err(e) = pt.map_range(
            va,
            s,
            e - s,
            Attrs::KERNEL_DEVICE,
            &mut BuddyTables,
            MapOptions::PAGES,
        ) {
            println!("mm: warning: device range {r:?} not mapped: {e}");
        }
    }
    // Every process's root copies the kernel's root entries once, when it
    // is created: give each kernel-half root slot its table now, so later
    // kernel mappings (task stacks) land below entries every process has.
    if let Some(slots) = crate::arch::KERNEL_ROOT_SLOTS {
        pt.prealloc_root_slots(slots, &mut BuddyTables)
            .expect("no frames for the kernel half's root slots");
    }
    let tables = pt.count_tables();
    // SAFETY: the new tree maps everything the kernel touches from here on
    // at the same virtual addresses as the early tables did: the image, the
    // linear map of RAM (stack, heap, memmap, page tables) and the board's
    // MMIO; nothing else refers to the early tables' contents.
    unsafe { crate::arch::switch_kernel_tables(pt.root(), zeroed_table) };
    println!(
        "mm: switched to the kernel's own page tables: root {:#x}, {} table frames",
        pt.root().as_u64(),
        tables
    );
    KERNEL_TABLES.call_once(|| KernelTables { root: pt.root() });
}

/// A zeroed page-table frame for the architecture's switch (arm64's empty
/// TTBR0 root), from the frame allocator.
fn zeroed_table() -> PhysAddr {
    let t = frames::alloc_table_frame().expect("no frame for an empty page table");
    EMPTY_ROOT.call_once(|| t);
    // SAFETY: a fresh frame of RAM nobody else uses, mapped writable by the
    // linear map.
    unsafe { core::ptr::write_bytes(frames::linear().ptr::<u8>(t), 0, PAGE_SIZE as usize) };
    t
}

/// The table [`zeroed_table`] made (arm64's empty TTBR0 root), if any.
static EMPTY_ROOT: Once<PhysAddr> = Once::new();

/// Every root of a tree of the kernel's own: its tables, and the empty
/// user root arm64 installs while no process runs (the mm audit counts
/// their tables as the kernel's).
pub fn table_roots() -> impl Iterator<Item = PhysAddr> {
    root().into_iter().chain(EMPTY_ROOT.get().copied())
}

/// Root of the kernel's tables (None before they are built).
pub fn root() -> Option<PhysAddr> {
    KERNEL_TABLES.get().map(|k| k.root)
}

/// Looks up `va` in the kernel's tables.
pub fn translate(va: VirtAddr) -> Option<Translation> {
    let kt = KERNEL_TABLES.get()?;
    // SAFETY: `kt.root` is the live kernel tree built above; this handle is
    // only used to read it, and the tree is not modified after boot.
    let pt = unsafe { PageTable::<KernelPteFormat>::new(kt.root, frames::linear()) };
    pt.translate(va)
}

kernel_test!(
    fn gib_pages_only_where_the_cpu_has_them() {
        let root = check_some!(root(), "the kernel's tables are not built");
        // SAFETY: the live kernel tree, only read here; nothing modifies it
        // after boot.
        let pt = unsafe { PageTable::<KernelPteFormat>::new(root, frames::linear()) };
        let gib = crate::arch::has_gib_pages();
        let mut leaves = [0u64; 4];
        let mut first_gib_leaf = None;
        // The highest-mapped RAM block: the one most likely above 4 GiB.
        // (By its PA: `for_each_leaf` spells upper-half VAs in x86's
        // canonical form, not as arm64's TTBR1 addresses.)
        let mut top_block: Option<Translation> = None;
        pt.for_each_leaf(|va, t| {
            leaves[usize::from(t.level.get())] += 1;
            if t.level == Level::L1 {
                first_gib_leaf.get_or_insert(va);
            }
            if t.level != Level::L3
                && t.attrs.mem == MemType::Normal
                && top_block.is_none_or(|b| t.pa > b.pa)
            {
                top_block = Some(t);
            }
        });
        println!(
            "    1 GiB pages {}; leaves: {} x 1 GiB, {} x 2 MiB, {} x 4 KiB",
            if gib { "supported" } else { "not supported" },
            leaves[1],
            leaves[2],
            leaves[3]
        );
        if !gib {
            check_eq!(
                leaves[1],
                0,
                "1 GiB leaf at {first_gib_leaf:x?} on a CPU without 1 GiB pages"
            );
        }
        // Not degraded to 4 KiB pages: RAM comes in blocks.
        let block = check_some!(top_block, "no block maps RAM");
        // A second path: the walker itself must take the block. A 1 GiB
        // entry the CPU lacks faults (reserved bit) instead of reading.
        let last_pa = block.pa + (block.level.size() - 8);
        let last = VirtAddr::new(frames::linear().ptr::<u64>(last_pa) as u64);
        check!(
            crate::arch::probe_read(last.as_u64()).is_ok(),
            "the last word of the {:?} block at pa {:?} does not read at {last:?}",
            block.level,
            block.pa
        );
        check_eq!(translate(last).map(|t| t.pa), Some(last_pa));
        Ok(())
    }
);
