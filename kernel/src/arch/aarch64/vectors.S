// EL1 exception vectors: every entry saves the full register state into a
// TrapFrame on the current stack and calls handle_exception(kind, frame).
// The handler may change the frame (ELR to skip or fix up an instruction,
// x-registers to return an error), which is restored before `eret`.

.equ FRAME_SIZE, 288                  // 31 GPRs + ELR, SPSR, ESR, FAR, SP_EL0 = 36 x 8

.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 2048
.globl exception_vectors
exception_vectors:
    VECTOR 0                          // current EL, SP_EL0: sync
    VECTOR 1                          //   irq
    VECTOR 2                          //   fiq
    VECTOR 3                          //   serror
    VECTOR 4                          // current EL, SP_ELx: sync
    VECTOR 5                          //   irq
    VECTOR 6                          //   fiq
    VECTOR 7                          //   serror
    VECTOR 8                          // lower EL, AArch64: sync
    VECTOR 9                          //   irq
    VECTOR 10                         //   fiq
    VECTOR 11                         //   serror
    VECTOR 12                         // lower EL, AArch32: sync
    VECTOR 13                         //   irq
    VECTOR 14                         //   fiq
    VECTOR 15                         //   serror

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x2, spsr_el1
    mrs     x3, esr_el1
    stp     x2, x3, [sp, #256]
    mrs     x4, far_el1
    mrs     x5, sp_el0
    stp     x4, x5, [sp, #272]
    mov     x1, sp
    bl      {handler}
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x2, x3, [sp, #256]
    msr     spsr_el1, x2
    ldp     x4, x5, [sp, #272]
    msr     sp_el0, x5
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

// Fault-tolerant accessors: the exception table below lets a fault on the
// marked instruction resume at its fixup with x1 = 1 instead of being fatal.
.section .text, "ax"
.globl probe_read_u64
probe_read_u64:                       // x0 = address -> x0 = value, x1 = 0 or 1 (faulted)
    mov     x1, #0
probe_read_insn:
    ldr     x0, [x0]
    ret

.globl probe_write_u64
probe_write_u64:                      // x0 = address, x1 = value -> x1 = 0 or 1 (faulted)
    mov     x2, x1
    mov     x1, #0
probe_write_insn:
    str     x2, [x0]
    ret

.section .rodata, "a"
.balign 8
.globl exception_fixups
exception_fixups:                     // (faulting instruction, resume address) pairs
    .quad probe_read_insn, probe_read_insn + 4
    .quad probe_write_insn, probe_write_insn + 4
.globl exception_fixups_end
exception_fixups_end:
