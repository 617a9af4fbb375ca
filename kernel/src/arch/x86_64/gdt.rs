//! The kernel's GDT, in the higher half: 64-bit code and data segments.

use core::arch::asm;

#[repr(C, align(16))]
struct Gdt([u64; 3]);

static GDT: Gdt = Gdt([
    0,
    // The accessed bits are preset: the GDT lives in read-only memory, and
    // the CPU would otherwise write them on the first segment load.
    0x00af_9b00_0000_ffff, // 0x08: 64-bit kernel code
    0x00cf_9300_0000_ffff, // 0x10: kernel data
]);

/// Loads the GDT and reloads every segment register from it.
pub fn load() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: x86_64::VirtAddr::new(&raw const GDT as u64),
    };
    // SAFETY: the GDT is a static in the kernel image with the same
    // selectors as the boot GDT, so reloading CS (far return) and the data
    // segments keeps the current privilege and flat addressing.
    unsafe {
        x86_64::instructions::tables::lgdt(&ptr);
        asm!(
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {sel:e}, 0x10",
            "mov ds, {sel:e}",
            "mov es, {sel:e}",
            "mov ss, {sel:e}",
            tmp = out(reg) _,
            sel = out(reg) _,
        );
    }
}
