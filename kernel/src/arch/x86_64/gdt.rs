//! The kernel's GDT and TSS, in the higher half: kernel and user segments in
//! the order SYSCALL/SYSRET need, and a 64-bit TSS holding RSP0 and the IST
//! stacks that #DF, NMI and #MC run on.

use core::arch::asm;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::VirtAddr;
use x86_64::structures::tss::TaskStateSegment;

/// Kernel code, 64-bit, DPL 0.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data (and stack), DPL 0.
pub const KERNEL_DS: u16 = 0x10;
/// 32-bit user code: a placeholder that fixes SYSRET's base (see [`STAR`]).
pub const USER_CS32: u16 = 0x18 | 3;
/// User data (and stack), DPL 3, requested with RPL 3.
pub const USER_DS: u16 = 0x20 | 3;
/// User code, 64-bit, DPL 3, requested with RPL 3.
pub const USER_CS: u16 = 0x28 | 3;
/// The 16-byte 64-bit TSS descriptor (slots 6 and 7).
pub const TSS_SEL: u16 = 0x30;

/// The `IA32_STAR` value for SYSCALL/SYSRET with this GDT.
///
/// SYSCALL loads CS = `STAR[47:32]` and SS = `STAR[47:32]` + 8:
/// 0x08 = [`KERNEL_CS`], 0x08 + 8 = 0x10 = [`KERNEL_DS`].
/// 64-bit SYSRET loads CS = `STAR[63:48]` + 16 and SS = `STAR[63:48]` + 8, and
/// forces RPL 3 on both: with base 0x1b ([`USER_CS32`]),
/// (0x1b + 16) | 3 = 0x2b = [`USER_CS`] and (0x1b + 8) | 3 = 0x23 = [`USER_DS`].
/// (A 32-bit SYSRET would load CS = base itself, hence the placeholder.)
pub const STAR: u64 = (USER_CS32 as u64) << 48 | (KERNEL_CS as u64) << 32;

const _: () = {
    assert!(STAR >> 32 & 0xfffc == KERNEL_CS as u64);
    assert!((STAR >> 32 & 0xfffc) + 8 == KERNEL_DS as u64);
    assert!(((STAR >> 48) + 16) | 3 == USER_CS as u64);
    assert!(((STAR >> 48) + 8) | 3 == USER_DS as u64);
};

/// IST slot (1-based, as IDT gates name it) of the #DF stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI stack.
pub const IST_NMI: u8 = 2;
/// IST slot of the #MC stack.
pub const IST_MACHINE_CHECK: u8 = 3;

/// Bytes per IST stack: enough for the fatal report (console and register
/// formatting, no heap).
pub const IST_STACK_SIZE: usize = 16 << 10;
const IST_STACKS: usize = 3;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// The IST stacks, in `.bss`; touched only by the CPU (on entry through a
/// gate naming one) and the handler that then runs on it.
static mut IST_STACK: [IstStack; IST_STACKS] =
    [const { IstStack([0; IST_STACK_SIZE]) }; IST_STACKS];

/// What the CPU reads RSP0 and the IST pointers from. Written at boot and by
/// [`set_kernel_stack`]; the CPU only reads it.
static mut TSS: TaskStateSegment = TaskStateSegment::new();

#[repr(C, align(16))]
struct Gdt([u64; 8]);

/// The GDT's entries as loaded (the TSS slots are filled per CPU).
const GDT_ENTRIES: [u64; 8] = [
    0,
    // The accessed bits are preset, so loading a segment never makes the
    // CPU write a descriptor.
    0x00af_9b00_0000_ffff, // 0x08: 64-bit kernel code
    0x00cf_9300_0000_ffff, // 0x10: kernel data
    0x00cf_fb00_0000_ffff, // 0x18: 32-bit user code (placeholder for SYSRET)
    0x00cf_f300_0000_ffff, // 0x20: user data
    0x00af_fb00_0000_ffff, // 0x28: 64-bit user code
    0,                     // 0x30: TSS, low half (filled by `load`)
    0,                     //       TSS, high half
];

/// The boot CPU's GDT. Writable: `ltr` sets the busy bit in the TSS
/// descriptor.
static mut GDT: Gdt = Gdt(GDT_ENTRIES);

/// A secondary CPU's GDT, TSS and IST stacks (a TSS that one CPU's task
/// register holds is busy: no other CPU may load it).
#[repr(C, align(16))]
struct CpuTables {
    gdt: Gdt,
    tss: TaskStateSegment,
    ist: [IstStack; IST_STACKS],
}

static LOADED: AtomicBool = AtomicBool::new(false);

/// The bytes of IST stack `ist` (1-based), lowest address first.
pub fn ist_stack(ist: u8) -> Range<u64> {
    assert!((1..=IST_STACKS as u8).contains(&ist), "no IST stack {ist}");
    let base = (&raw const IST_STACK) as u64 + (ist as u64 - 1) * IST_STACK_SIZE as u64;
    base..base + IST_STACK_SIZE as u64
}

/// The two GDT slots of an available 64-bit TSS (type 9, present, DPL 0).
fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    let limit = u64::from(limit);
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40
        | (limit >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56;
    [low, base >> 32]
}

/// Loads the boot CPU's GDT, reloads every segment register from it and
/// loads the task register. Runs once; later calls return at once (`ltr`
/// of a busy TSS would raise #GP).
///
/// Works on the early tables as well as on the kernel's: the GDT, TSS and
/// IST stacks live in the image's `.data`/`.bss`, mapped writable by both.
pub fn init() {
    if LOADED.swap(true, Ordering::SeqCst) {
        return;
    }
    let ends = [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].map(|i| ist_stack(i).end);
    // SAFETY: runs once, at boot, on the boot CPU, before any IST or ring
    // change can consult the TSS; the statics are referred to by nothing
    // else yet, and the IST stacks are the static ones.
    unsafe { load(&raw mut GDT, &raw mut TSS, ends) };
}

/// Gives a secondary CPU a GDT, TSS and IST stacks of its own (on the
/// heap, for good) and loads them; returns the address of its TSS.RSP0.
pub fn init_secondary() -> *mut u64 {
    // SAFETY: all-zero bytes are a valid `CpuTables` (a zero TSS, zero
    // descriptors and stacks), filled in below before use.
    let t = alloc::boxed::Box::leak(unsafe {
        alloc::boxed::Box::<CpuTables>::new_zeroed().assume_init()
    });
    t.gdt.0 = GDT_ENTRIES;
    // Not all zeros: a zero I/O-map base would make the TSS's own bytes
    // an I/O permission bitmap granting ports to ring 3.
    t.tss = TaskStateSegment::new();
    let ends = core::array::from_fn(|i| {
        let s = &raw const t.ist[i];
        s as u64 + IST_STACK_SIZE as u64
    });
    // SAFETY: the tables were just allocated for this CPU and live
    // forever; nothing else refers to them.
    unsafe { load(&raw mut t.gdt, &raw mut t.tss, ends) };
    (&raw mut t.tss.privilege_stack_table).cast::<u64>()
}

/// Points `tss`'s IST slots at `ist_ends`, writes its descriptor into
/// `gdt`, loads `gdt`, reloads every segment register and loads the task
/// register.
///
/// # Safety
///
/// `gdt` and `tss` live forever, are this CPU's alone, and no IST or
/// ring change can consult the TSS while this runs; `ist_ends` are the
/// 16-aligned tops of stacks of `IST_STACK_SIZE` bytes that only this
/// CPU's #DF, NMI and #MC gates use.
unsafe fn load(gdt: *mut Gdt, tss: *mut TaskStateSegment, ist_ends: [u64; IST_STACKS]) {
    // SAFETY: the caller's contract: exclusive, live tables. RSP0 stays as
    // it is until `set_kernel_stack`: nothing runs in ring 3 before then.
    unsafe {
        for (slot, end) in ist_ends.into_iter().enumerate() {
            (*tss).interrupt_stack_table[slot] = VirtAddr::new(end);
        }
        let [low, high] = tss_descriptor(tss as u64, (size_of::<TaskStateSegment>() - 1) as u32);
        let slot = usize::from(TSS_SEL / 8);
        (*gdt).0[slot] = low;
        (*gdt).0[slot + 1] = high;
    }
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: VirtAddr::new(gdt as u64),
    };
    // SAFETY: the GDT lives forever with the same kernel selectors as the
    // boot GDT, so reloading CS (far return) and the data segments keeps
    // the current privilege and flat addressing; the TSS descriptor was
    // just written and points at a valid, live TSS.
    unsafe {
        x86_64::instructions::tables::lgdt(&ptr);
        asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {sel:e}, {ds}",
            "mov ds, {sel:e}",
            "mov es, {sel:e}",
            "mov ss, {sel:e}",
            cs = const KERNEL_CS as u64,
            ds = const KERNEL_DS as u32,
            tmp = out(reg) _,
            sel = out(reg) _,
        );
        asm!("ltr {0:x}", in(reg) TSS_SEL, options(nostack, preserves_flags));
    }
}

/// Sets RSP0: the stack the CPU switches to when an interrupt, exception or
/// system call enters ring 0 from ring 3. `top` is the stack's first byte
/// past its end (16-byte aligned); each process's kernel stack goes here on
/// a context switch.
pub fn set_kernel_stack(top: u64) {
    debug_assert!(
        top.is_multiple_of(16),
        "kernel stack top {top:#x} misaligned"
    );
    let tss = &raw mut TSS;
    // SAFETY: a plain store to a field of the TSS static (unaligned: the
    // struct is packed as the hardware lays it out). The CPU reads RSP0 only
    // on a ring 3 -> 0 transition, which cannot happen on the boot CPU
    // while the kernel runs this there (the only TSS it writes is the boot
    // CPU's).
    unsafe { (*tss).privilege_stack_table[0] = VirtAddr::new(top) };
}

/// Where TSS.RSP0 lives, for the ring 3 entry code (`user.S` stores the
/// kernel RSP there on every entry to user mode).
pub fn rsp0_ptr() -> *mut u64 {
    let tss = &raw mut TSS;
    // SAFETY: computing a field address; nothing is read or written. RSP0
    // sits at byte 4 of the packed hardware layout (unaligned for u64).
    unsafe { (&raw mut (*tss).privilege_stack_table).cast::<u64>() }
}

/// RSP0 as the TSS holds it now.
pub fn kernel_stack() -> u64 {
    let tss = &raw const TSS;
    // SAFETY: a plain (unaligned) load from the TSS static; see
    // `set_kernel_stack` for who writes it.
    unsafe { (*tss).privilege_stack_table[0].as_u64() }
}

/// `lar`: the access-rights bytes the CPU itself reads for `sel` (None if
/// it refuses the selector).
fn access_rights(sel: u16) -> Option<u32> {
    let (rights, ok): (u32, u8);
    // SAFETY: `lar` only reads the descriptor table and sets ZF.
    unsafe {
        asm!(
            "lar {r:e}, {s:e}",
            "setz {ok}",
            r = out(reg) rights,
            s = in(reg) u32::from(sel),
            ok = out(reg_byte) ok,
            options(nostack, readonly)
        );
    }
    (ok != 0).then_some(rights)
}

kernel_test!(
    fn gdt_has_user_segments_and_a_busy_tss() {
        let mut gdtr = [0u8; 10];
        let (tr, cs, ss): (u16, u16, u16);
        // SAFETY: sgdt stores 10 bytes into the buffer; str and the segment
        // reads only read registers.
        unsafe {
            asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
            asm!(
                "str {0:x}",
                "mov {1:x}, cs",
                "mov {2:x}, ss",
                out(reg) tr,
                out(reg) cs,
                out(reg) ss,
                options(nomem, nostack)
            );
        }
        let limit = u16::from_le_bytes([gdtr[0], gdtr[1]]);
        let base = u64::from_le_bytes(gdtr[2..10].try_into().unwrap_or([0; 8]));
        check_eq!(base, (&raw const GDT) as u64, "GDTR base");
        check_eq!(usize::from(limit), size_of::<Gdt>() - 1, "GDTR limit");
        check_eq!((tr, cs, ss), (TSS_SEL, KERNEL_CS, KERNEL_DS), "TR, CS, SS");

        // What the CPU makes of each descriptor (lar: type at bits 8..12,
        // DPL 13..14, present 15, L 21, D/B 22).
        let dpl = |r: u32| (r >> 13) & 3;
        let kcs = check_some!(access_rights(KERNEL_CS));
        let ucs = check_some!(access_rights(USER_CS), "USER_CS refused");
        let uds = check_some!(access_rights(USER_DS), "USER_DS refused");
        let ucs32 = check_some!(access_rights(USER_CS32), "USER_CS32 refused");
        check!(kcs & 1 << 21 != 0 && dpl(kcs) == 0, "kernel CS {kcs:#x}");
        check!(
            ucs & 1 << 21 != 0 && ucs & 1 << 11 != 0 && dpl(ucs) == 3,
            "user CS {ucs:#x}"
        );
        check!(
            ucs32 & 1 << 21 == 0 && ucs32 & 1 << 22 != 0 && dpl(ucs32) == 3,
            "user CS32 {ucs32:#x}"
        );
        check!(
            uds & 1 << 11 == 0 && uds & 1 << 9 != 0 && dpl(uds) == 3,
            "user DS {uds:#x}"
        );
        // ltr marked the TSS busy (type 0xb) in the GDT itself.
        let tss = check_some!(access_rights(TSS_SEL), "TSS refused");
        check_eq!((tss >> 8) & 0xf, 0xb, "TSS type (busy 64-bit TSS)");

        // The TSS the descriptor points at, read as the CPU would.
        let raw = |i: usize| {
            // SAFETY: `base` is the live GDT (checked above); slot `i` < 8.
            unsafe { ((base as *const u64).add(i)).read_volatile() }
        };
        let (lo, hi) = (raw(6), raw(7));
        let tss_base = (lo >> 16 & 0xff_ffff) | (lo >> 56 & 0xff) << 24 | hi << 32;
        check_eq!(
            tss_base,
            (&raw const TSS) as u64,
            "TSS base in its descriptor"
        );
        let field = |off: u64| {
            // SAFETY: `off` + 8 lies inside the 104-byte TSS at `tss_base`.
            unsafe { ((tss_base + off) as *const u64).read_unaligned() }
        };
        for ist in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK] {
            let s = ist_stack(ist);
            check_eq!(
                field(0x24 + 8 * (u64::from(ist) - 1)),
                s.end,
                "IST{ist} pointer"
            );
            check!(s.end.is_multiple_of(16) && s.end - s.start >= 16 << 10);
            // Mapped and writable: the CPU pushes there with no way back.
            check!(
                crate::arch::probe_write(s.start, 0).is_ok(),
                "IST{ist} stack bottom"
            );
            check!(
                crate::arch::probe_write(s.end - 8, 0).is_ok(),
                "IST{ist} stack top"
            );
        }
        let old = kernel_stack();
        set_kernel_stack(0xffff_ffff_8123_4560);
        let seen = field(4);
        set_kernel_stack(old);
        check_eq!(seen, 0xffff_ffff_8123_4560, "RSP0 after set_kernel_stack");
        check_eq!(field(4), old, "RSP0 restored");
        check_eq!(STAR, 0x001b_0008_0000_0000);
        Ok(())
    }
);
