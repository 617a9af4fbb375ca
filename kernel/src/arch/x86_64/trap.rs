//! Exception and interrupt handling: the IDT for all 256 vectors (`idt.S`
//! stubs; #DF, NMI and #MC on their own IST stacks), traps from ring 3
//! (handed to `user.rs`), interrupts (`apic.rs`), expected traps (int3,
//! faults on fixup-listed instructions) and the fatal reports, kernel
//! stack overflow first among them.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::Ordering;

use super::super::{
    EXEC_FAULTED, EXPECT_BREAKPOINT, Exit, STOPPING, TrapRecord, fixup_for, record_trap,
    take_exec_probe,
};
use x86_64::registers::control::Cr2;

use super::frame::TrapFrame;
use super::{gdt, overflow, user};

core::arch::global_asm!(
    include_str!("idt.S"),
    handler = sym handle_exception,
    user_handler = sym handle_user_trap,
    pc_krsp = const user::PCPU_KERNEL_RSP,
    kernel_ds = const gdt::KERNEL_DS as u64,
    smap = sym super::cpu::SMAP_ON,
    options(att_syntax)
);

unsafe extern "C" {
    static isr_stub_table: [u64; 32];
    static isr_irq_stubs: u8;
    fn probe_read_u64(addr: u64) -> ProbeRet;
    fn probe_write_u64(addr: u64, value: u64) -> ProbeRet;
}

/// (rax, rdx) as returned by the probe routines.
#[repr(C)]
struct ProbeRet {
    value: u64,
    faulted: u64,
}

/// One 16-byte IDT gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

const INTERRUPT_GATE: u8 = 0x8e; // present, DPL 0, 64-bit interrupt gate
/// The same with DPL 3: `int3` in ring 3 may raise it (other vectors, when
/// raised by `int n` from ring 3, become #GP).
const USER_INTERRUPT_GATE: u8 = 0xee;
const VEC_NMI: usize = 2;
const VEC_BP: u64 = 3;
const VEC_DF: usize = 8;
const VEC_MC: usize = 18;
const VEC_PF: u64 = 14;
/// #PF error code bit: the access was an instruction fetch.
const PF_INSTR: u64 = 1 << 4;

/// The IST slot a vector's gate names: a double fault is most often the
/// kernel stack overflowing, and an NMI or machine check may arrive with
/// any RSP, so these three run on stacks of their own. 0: the current stack.
fn ist_for(vector: usize) -> u8 {
    match vector {
        VEC_DF => gdt::IST_DOUBLE_FAULT,
        VEC_NMI => gdt::IST_NMI,
        VEC_MC => gdt::IST_MACHINE_CHECK,
        _ => 0,
    }
}

/// Bytes between two interrupt stubs of `isr_irq_stubs`.
const IRQ_STUB_SIZE: u64 = 16;

/// The entry stub of `vector`.
fn stub_addr(vector: usize) -> u64 {
    if vector < 32 {
        // SAFETY: a read-only table of 32 addresses emitted by idt.S.
        unsafe { isr_stub_table[vector] }
    } else {
        (&raw const isr_irq_stubs) as u64 + (vector as u64 - 32) * IRQ_STUB_SIZE
    }
}

/// Loads the higher-half GDT and the TSS (the IST stacks), fills and loads
/// the IDT, then sets up this CPU for user mode (`cpu::init`).
pub fn init_exceptions() {
    super::user::set_percpu(0);
    gdt::init();
    // SAFETY: runs once at boot before interrupts are enabled; the IDT is a
    // static that lives forever, and each stub address comes from idt.S.
    // The IST slots the gates name were set in the TSS just loaded.
    unsafe {
        let idt = &raw mut IDT;
        for (vector, gate) in (*idt).0.iter_mut().enumerate() {
            let addr = stub_addr(vector);
            *gate = Gate {
                offset_low: addr as u16,
                selector: gdt::KERNEL_CS,
                ist: ist_for(vector),
                type_attr: if vector == VEC_BP as usize {
                    USER_INTERRUPT_GATE
                } else {
                    INTERRUPT_GATE
                },
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                reserved: 0,
            };
        }
    }
    load_idt();
    super::cpu::init();
}

/// Loads the IDT (every CPU shares it).
fn load_idt() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(&raw const IDT as u64),
    };
    // SAFETY: the IDT is a static that lives forever, filled by the boot
    // CPU's `init_exceptions` before any secondary CPU starts.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// A secondary CPU's exception state: its per-CPU area (index `index`),
/// GDT, TSS and IST stacks of its own, the shared IDT, its CR0/CR4
/// features and SYSCALL.
pub fn init_secondary_exceptions(index: usize) {
    super::user::set_percpu(index);
    // The IDT first: a fault in what follows is then reported, not a
    // triple fault.
    load_idt();
    let rsp0 = gdt::init_secondary();
    super::cpu::init_secondary(rsp0);
}

/// Raises `int3`.
pub fn raw_breakpoint() {
    // SAFETY: the handler returns past int3 while EXPECT_BREAKPOINT is set.
    // Declares every caller-saved register clobbered across the trap.
    unsafe { asm!("int3", clobber_abi("C"), options(nomem, nostack)) };
}

/// Loads from `addr` with fault recovery; returns (value, faulted).
pub fn raw_probe_read(addr: u64) -> (u64, bool) {
    // SAFETY: the load is listed in the exception table, so a fault resumes
    // with `faulted` set instead of being fatal.
    let r = unsafe { probe_read_u64(addr) };
    (r.value, r.faulted != 0)
}

/// Stores to `addr` with fault recovery; returns whether it faulted.
pub fn raw_probe_write(addr: u64, value: u64) -> bool {
    // SAFETY: as for `raw_probe_read`; callers choose harmless addresses.
    unsafe { probe_write_u64(addr, value).faulted != 0 }
}

/// A trap from ring 3 (`idt.S`, GS already swapped in): the fatal ones
/// (NMI, #DF, #MC) are reported as in the kernel; the others end
/// `run_user` with the code `user.rs` returns.
extern "C" fn handle_user_trap(frame: &mut TrapFrame) -> u64 {
    if matches!(frame.vector as usize, VEC_NMI | VEC_DF | VEC_MC) {
        handle_exception(frame);
    }
    user::trap_from_user(frame)
}

extern "C" fn handle_exception(frame: &mut TrapFrame) {
    if frame.vector >= 32 {
        // Kernel code takes interrupts only in `wait_for_interrupt`.
        super::apic::handle_irq(frame.vector);
        return;
    }
    if frame.vector == VEC_BP && EXPECT_BREAKPOINT.load(Ordering::SeqCst) {
        record_trap(TrapRecord {
            class: VEC_BP,
            syndrome: 0,
            addr: 0,
            pc: frame.rip - 1,
        });
        return;
    }
    if frame.vector == VEC_PF && frame.error_code & PF_INSTR != 0 && take_exec_probe(frame.rip) {
        record_trap(TrapRecord {
            class: VEC_PF,
            syndrome: frame.error_code,
            addr: Cr2::read_raw(),
            pc: frame.rip,
        });
        // Return to the probe's caller as if the probed function had: the
        // return address is on top of the interrupted stack.
        // SAFETY: the fault hit the first instruction of a function the
        // probe just called, so [rsp] is the return address the call pushed.
        frame.rip = unsafe { (frame.rsp as *const u64).read() };
        frame.rsp += 8;
        frame.rax = EXEC_FAULTED;
        return;
    }
    if frame.vector == VEC_PF
        && let Some(resume) = fixup_for(frame.rip)
    {
        record_trap(TrapRecord {
            class: VEC_PF,
            syndrome: frame.error_code,
            addr: Cr2::read_raw(),
            pc: frame.rip,
        });
        frame.rdx = 1;
        frame.rip = resume;
        return;
    }
    if STOPPING.load(Ordering::SeqCst) {
        super::park();
    }
    super::super::begin_fatal_report();
    let cr2 = Cr2::read_raw();
    if let Some(o) = overflow::find(frame.vector, cr2, frame.rsp) {
        report_stack_overflow(frame, cr2, &o);
    }
    let rec = TrapRecord {
        class: frame.vector,
        syndrome: frame.error_code,
        addr: cr2,
        pc: frame.rip,
    };
    println!("\nUNEXPECTED EXCEPTION: {}", Described(&rec));
    println!("{frame:?}");
    super::exit_qemu(Exit::Failure)
}

/// The kernel stack overflow report: one line naming the stack, its guard
/// and the register that lies in it, then the registers; stops the machine.
/// Formats straight to the console, never through the heap: the overflow
/// may have struck while the heap's lock was held.
fn report_stack_overflow(frame: &TrapFrame, cr2: u64, o: &overflow::Overflow) -> ! {
    let name = NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("interrupt");
    println!(
        "\nKERNEL STACK OVERFLOW on the {}: {} {:#x} is in its guard page [{:#x}..{:#x}); \
         vector {} ({name}), RIP {:#x}, RSP {:#x}{}",
        o.stack,
        o.by,
        o.at,
        o.stack.guard.start,
        o.stack.guard.end,
        frame.vector,
        frame.rip,
        frame.rsp,
        // CR2 as well when RSP told (CR2 may still say what faulted).
        CrNote(o.by != "CR2", cr2),
    );
    println!("{frame:?}");
    super::exit_qemu(Exit::Failure)
}

/// `", CR2 <value>"` if the flag is set, nothing otherwise; formats without
/// the heap.
struct CrNote(bool, u64);

impl fmt::Display for CrNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 {
            write!(f, ", CR2 {:#x}", self.1)?;
        }
        Ok(())
    }
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// Human-readable report of a trap record.
pub fn describe(r: &TrapRecord) -> alloc::string::String {
    alloc::format!("{}", Described(r))
}

/// A trap record's report, formatted without the heap (the fatal path
/// may have struck while this CPU held the heap's lock).
pub struct Described<'a>(pub &'a TrapRecord);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let name = NAMES.get(r.class as usize).copied().unwrap_or("interrupt");
        write!(
            f,
            "vector {} ({name}), error code {:#x}, RIP {:#x}",
            r.class, r.syndrome, r.pc
        )?;
        if r.class == VEC_PF {
            let e = r.syndrome;
            write!(
                f,
                ", CR2 {:#x}: {} {} in {} mode{}",
                r.addr,
                if e & 1 != 0 {
                    "protection violation on"
                } else {
                    "not-present page on"
                },
                if e & 0x10 != 0 {
                    "instruction fetch"
                } else if e & 2 != 0 {
                    "write"
                } else {
                    "read"
                },
                if e & 4 != 0 { "user" } else { "supervisor" },
                if e & 8 != 0 {
                    " (reserved bit set)"
                } else {
                    ""
                },
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  RIP {:#018x}  CS {:#x}  RFLAGS {:#x}  RSP {:#018x}  SS {:#x}",
            self.rip, self.cs, self.rflags, self.rsp, self.ss
        )?;
        writeln!(
            f,
            "  RAX {:#018x}  RBX {:#018x}  RCX {:#018x}  RDX {:#018x}",
            self.rax, self.rbx, self.rcx, self.rdx
        )?;
        writeln!(
            f,
            "  RSI {:#018x}  RDI {:#018x}  RBP {:#018x}  R8  {:#018x}",
            self.rsi, self.rdi, self.rbp, self.r8
        )?;
        writeln!(
            f,
            "  R9  {:#018x}  R10 {:#018x}  R11 {:#018x}  R12 {:#018x}",
            self.r9, self.r10, self.r11, self.r12
        )?;
        write!(
            f,
            "  R13 {:#018x}  R14 {:#018x}  R15 {:#018x}",
            self.r13, self.r14, self.r15
        )
    }
}
