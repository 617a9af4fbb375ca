//! Kernel stacks for tasks, in a kernel virtual region of their own.
//!
//! The region is cut into 128 KiB slots ([`KERNEL_STACK_ALIGN`]); a stack
//! occupies the lower 64 KiB of its slot ([`KERNEL_STACK_SIZE`]) and the
//! upper half stays unmapped, so below every stack lies at least 64 KiB
//! that faults: an overflow is caught (x86: #PF -> #DF on its IST stack;
//! aarch64: the vectors test SP bit [`KERNEL_STACK_SHIFT`](folium_boot::KERNEL_STACK_SHIFT), which this
//! layout makes 0 for every SP inside a stack and 1 just below one).
//!
//! A stack's memory is one order-4 folio mapped with 4 KiB kernel data
//! PTEs; freeing unmaps, flushes the stack from every CPU's TLB, then
//! frees the folio.

use folium_boot::{KERNEL_STACK_ALIGN, KERNEL_STACK_SIZE};
use folium_mm::folio::Folio;
use folium_mm::pgtable::{Attrs, Level, PageTable, PteKind};
use folium_mm::{Order, PAGE_SIZE, VirtAddr};

use super::frames;
use super::kmap::BuddyTables;
use crate::arch::KernelPteFormat;
use crate::sync::IrqMutex;

/// First byte of the kernel-stack region (the same on both arches: far
/// above any linear-map address of real RAM, below the kernel image).
pub const KSTACK_BASE: u64 = 0xffff_e000_0000_0000;
/// Number of slots (and so the most task stacks at once): 128 MiB of VA.
pub const KSTACK_SLOTS: u32 = 1024;

const PAGES: u64 = KERNEL_STACK_SIZE as u64 / PAGE_SIZE;
const ORDER: Order = Order::of(4);
const _: () = assert!(ORDER.pages() == PAGES, "one folio per stack");

/// Which slots are in use, one bit each (no heap: stacks come and go with
/// every fork and exit).
struct Slots([u64; KSTACK_SLOTS as usize / 64]);

impl Slots {
    /// Claims the lowest free slot.
    fn take(&mut self) -> Option<u32> {
        let (w, word) = self
            .0
            .iter_mut()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let bit = word.trailing_ones();
        *word |= 1 << bit;
        Some(w as u32 * 64 + bit)
    }

    fn give_back(&mut self, slot: u32) {
        self.0[slot as usize / 64] &= !(1 << (slot % 64));
    }
}

static SLOTS: IrqMutex<Slots> = IrqMutex::new(Slots([0; KSTACK_SLOTS as usize / 64]));

/// A mapped kernel stack; unmapped and freed on drop.
pub struct KernelStack {
    slot: u32,
    folio: Option<Folio>,
}

fn slot_base(slot: u32) -> u64 {
    KSTACK_BASE + u64::from(slot) * KERNEL_STACK_ALIGN as u64
}

fn kernel_tables() -> PageTable<KernelPteFormat> {
    let root = super::kmap::root().expect("kernel tables not built");
    // SAFETY: the live kernel tree; kernel-stack PTEs are changed only here,
    // under the SLOTS lock or on a slot this module owns exclusively.
    unsafe { PageTable::new(root, frames::linear()) }
}

/// Builds every page table the region needs (256 KiB for 1024 slots), so
/// mapping a stack later never allocates a table: the free-page count
/// after a task is reaped equals the count before it started.
pub fn init() {
    let mut pt = kernel_tables();
    let mut va = KSTACK_BASE;
    while va < slot_base(KSTACK_SLOTS) {
        pt.pte_slot_alloc(VirtAddr::new(va), &mut BuddyTables)
            .expect("no frames for the kernel-stack region's tables");
        va += Level::L2.size();
    }
    #[cfg(target_arch = "x86_64")]
    crate::arch::overflow::set_guard_lookup(Some(|addr| {
        guard_of(addr).map(|(slot, stack)| crate::arch::overflow::GuardedStack {
            name: "task kernel stack",
            id: Some(u64::from(slot)),
            guard: stack.start - KERNEL_STACK_SIZE as u64..stack.start,
            stack,
        })
    }));
}

impl KernelStack {
    /// Maps a new stack, or `None` when out of memory or slots.
    pub fn new() -> Option<KernelStack> {
        let slot = SLOTS.lock().take()?;
        let mut stack = KernelStack { slot, folio: None };
        let folio = frames::alloc_folio(ORDER)?;
        let mut pt = kernel_tables();
        let base = slot_base(slot);
        for i in 0..PAGES {
            let va = VirtAddr::new(base + i * PAGE_SIZE);
            let Ok(ps) = pt.pte_slot_alloc(va, &mut BuddyTables) else {
                // `stack` (no folio yet) returns the slot; unmap what was mapped.
                stack.folio = Some(folio);
                return None;
            };
            let leaf = PteKind::Leaf {
                pa: (folio.pfn() + i).phys(),
                attrs: Attrs::KERNEL_DATA,
            };
            pt.set_pte(
                ps,
                <KernelPteFormat as folium_mm::pgtable::PteFormat>::encode(leaf, Level::L3),
            );
        }
        stack.folio = Some(folio);
        // New valid entries need no flush; make them visible to the walker.
        #[cfg(target_arch = "aarch64")]
        {
            use aarch64_cpu::asm::barrier;
            barrier::dsb(barrier::ISHST);
            barrier::isb(barrier::SY);
        }
        Some(stack)
    }

    /// The lowest address of the stack.
    pub fn bottom(&self) -> u64 {
        slot_base(self.slot)
    }

    /// One past the highest address: the initial stack pointer.
    pub fn top(&self) -> u64 {
        slot_base(self.slot) + KERNEL_STACK_SIZE as u64
    }

    /// The slot number (for reports).
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        let mut pt = kernel_tables();
        let base = slot_base(self.slot);
        for i in 0..PAGES {
            let va = base + i * PAGE_SIZE;
            if let Some(ps) = pt.pte_slot(VirtAddr::new(va)) {
                pt.take_pte(ps);
            }
        }
        // One flush of the stack on every CPU, any of which may have
        // cached it (the stack's owner ran there; others speculate).
        crate::arch::flush_kernel_range(base, PAGES);
        // Unhooked and flushed: now the frames may be reused.
        if let Some(f) = self.folio.take() {
            let outcome = frames::folio_put(f);
            if !outcome.freed() {
                println!("kstack: warning: stack folio not freed ({outcome:?})");
            }
        }
        SLOTS.lock().give_back(self.slot);
    }
}

/// The slot whose stack's guard (the unmapped 64 KiB below it) holds
/// `addr`, with that stack's range: for overflow reports.
pub fn guard_of(addr: u64) -> Option<(u32, core::ops::Range<u64>)> {
    let end = slot_base(KSTACK_SLOTS);
    if !(KSTACK_BASE..end).contains(&addr) {
        return None;
    }
    let off = (addr - KSTACK_BASE) % KERNEL_STACK_ALIGN as u64;
    if off < KERNEL_STACK_SIZE as u64 {
        return None; // inside a stack
    }
    let slot = ((addr - KSTACK_BASE) / KERNEL_STACK_ALIGN as u64 + 1) as u32;
    (slot < KSTACK_SLOTS).then(|| {
        (
            slot,
            slot_base(slot)..slot_base(slot) + KERNEL_STACK_SIZE as u64,
        )
    })
}

kernel_test!(
    fn kernel_stacks_are_mapped_guarded_and_freed() {
        let a = check_some!(KernelStack::new());
        let b = check_some!(KernelStack::new());
        check!(a.top() % 16 == 0 && a.bottom() % KERNEL_STACK_ALIGN as u64 == 0);
        check!(a.slot() != b.slot());
        // Every byte of the stack is writable through the new mapping ...
        for off in (0..KERNEL_STACK_SIZE as u64).step_by(PAGE_SIZE as usize) {
            check!(crate::arch::probe_write(a.bottom() + off, off).is_ok());
            check_eq!(crate::arch::probe_read(a.bottom() + off).ok(), Some(off));
        }
        // ... and the guard below it (and the upper half of its slot) faults.
        check!(crate::arch::probe_read(a.bottom() - 8).is_err());
        check!(crate::arch::probe_read(a.top()).is_err());
        check_eq!(guard_of(b.bottom() - 8).map(|g| g.0), Some(b.slot()));
        check_eq!(guard_of(a.bottom() + 8), None);
        let bottom = a.bottom();
        drop(a);
        // Unmapped (and flushed) once dropped.
        check!(crate::arch::probe_read(bottom).is_err());
        drop(b);
        Ok(())
    }
);

/// What [`read_there`] read on the other CPU.
static READ_THERE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn read_there(va: u64) {
    let v = crate::arch::probe_read(va).unwrap_or(u64::MAX);
    READ_THERE.store(v, core::sync::atomic::Ordering::Relaxed);
}

/// Reads the u64 at `va` on CPU `cpu` (`u64::MAX` if it faults there).
fn read_on(cpu: usize, va: u64) -> u64 {
    crate::smp::call_on(1 << cpu, read_there, va);
    READ_THERE.load(core::sync::atomic::Ordering::Relaxed)
}

kernel_test!(
    fn a_freed_kernel_stack_leaves_no_translation_on_any_cpu() {
        const OLD: u64 = 0x01d0_01d0;
        const NEW: u64 = 0x0e30_0e30;
        const OTHER: u64 = 0xb10c_b10c;
        let cpus: alloc::vec::Vec<usize> = crate::smp::online().filter(|&i| i != 0).collect();
        let a = check_some!(KernelStack::new());
        let (slot, va) = (a.slot(), a.bottom());
        let old_pfn = check_some!(a.folio.as_ref()).pfn();
        check!(crate::arch::probe_write(va, OLD).is_ok());
        // Every other CPU reads it: each TLB now holds the translation.
        for &c in &cpus {
            check_eq!(read_on(c, va), OLD, "CPU {c} before the free");
        }
        drop(a);
        // The old frames go to someone else (this CPU's page list hands
        // the folio just freed back first), the slot to a new stack.
        let blocker = check_some!(frames::alloc_folio(ORDER));
        let b = KernelStack::new();
        // SAFETY: the blocker's first page is ours, in the linear map.
        unsafe {
            frames::linear()
                .ptr::<u64>(blocker.pfn().phys())
                .write_volatile(OTHER)
        };
        let b = check_some!(b);
        let ok = (|| {
            check_eq!(
                blocker.pfn(),
                old_pfn,
                "the blocker did not get the freed frames (the test proves nothing)"
            );
            check_eq!(b.slot(), slot, "the new stack takes the same slot");
            check!(check_some!(b.folio.as_ref()).pfn() != old_pfn, "new frames");
            check!(crate::arch::probe_write(va, NEW).is_ok());
            // A CPU still holding the old translation would read OTHER.
            for &c in &cpus {
                check_eq!(read_on(c, va), NEW, "CPU {c} after the free");
            }
            Ok(())
        })();
        let freed = frames::folio_put(blocker).freed();
        drop(b);
        ok?;
        check!(freed, "the blocker folio was freed");
        Ok(())
    }
);
