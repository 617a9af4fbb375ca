// EL1 exception vectors: every entry taken at EL1 saves the full register
// state into a TrapFrame on the current stack and calls
// handle_exception(kind, frame). The handler may change the frame (ELR to
// skip or fix up an instruction, x-registers to return an error), which is
// restored before `eret`.
//
// Entries from EL0 (vectors 8..11) belong to run_user (user.S): SP_EL1 is
// then the frame enter_user left on the task's kernel stack; the entry
// parks the user's x0/x1 just below it and branches to user_exit with the
// vector number in x1, which saves the whole user state into the
// UserContext and returns from enter_user.
//
// Exceptions taken from EL1 on SP_EL1 (vectors 4..7) first check that the
// frame fits on the kernel stack. Every EL1 stack is the lower half of a
// slot twice its size and aligned to that (folium_boot::KERNEL_STACK_*), so
// an SP inside a stack has bit {stack_shift} clear and one that has run
// below the stack's base has it set. On overflow the frame goes to a
// static overflow stack instead and stack_overflow_handler reports it: the
// frame push would otherwise fault in the guard page, re-enter this vector,
// push again below, and so on through whatever lies under the guard.

.equ FRAME_SIZE, 288                  // 31 GPRs + ELR, SPSR, ESR, FAR, SP_EL0 = 36 x 8
.equ OVERFLOW_STACK_SIZE, 16384

.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
.endm

.macro VECTOR_USER kind
.balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       user_exit
.endm

// The test needs the new SP in a general register, and every general
// register still holds the interrupted context. x0 and SP trade values
// with additions and subtractions (SP can be an operand, so no scratch
// register is needed): with s = the new SP and v = x0,
// sp := s + v, x0 := sp - x0 = s; after the test x0 := sp - x0 = v and
// sp := sp - x0 = s undo it.
.macro VECTOR_CHECKED kind
.balign 0x80
    sub     sp, sp, #FRAME_SIZE
    add     sp, sp, x0
    sub     x0, sp, x0
    tbnz    x0, #{stack_shift}, 1f
    sub     x0, sp, x0
    sub     sp, sp, x0
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
1:  // Overflow: x0 = s, sp = s + v. Park s in TPIDRRO_EL0 (EL0's read-only
    // thread register, which the kernel does not use; this path never
    // returns), move v into SP so x0 can form the overflow stack's address
    // a, then swap the two.
    msr     tpidrro_el0, x0
    sub     x0, sp, x0
    mov     sp, x0
    adrp    x0, overflow_stack_top
    add     x0, x0, :lo12:overflow_stack_top
    sub     x0, x0, #FRAME_SIZE
    sub     x0, sp, x0                // x0 = v - a
    sub     sp, sp, x0                // sp = a
    add     x0, sp, x0                // x0 = v
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       stack_overflow_common
.endm

// Stores x2..x30 and the exception registers into the frame at SP (x0 and
// x1 are already there); leaves x0 alone.
.macro SAVE_REST
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
.endm

.section .text.vectors, "ax"
.balign 2048
.globl exception_vectors
exception_vectors:
    VECTOR 0                          // current EL, SP_EL0: sync (unused by Folium)
    VECTOR 1                          //   irq
    VECTOR 2                          //   fiq
    VECTOR 3                          //   serror
    VECTOR_CHECKED 4                  // current EL, SP_ELx: sync
    VECTOR_CHECKED 5                  //   irq
    VECTOR_CHECKED 6                  //   fiq
    VECTOR_CHECKED 7                  //   serror
    VECTOR_USER 8                     // lower EL, AArch64: sync (run_user's frame)
    VECTOR_USER 9                     //   irq
    VECTOR_USER 10                    //   fiq
    VECTOR_USER 11                    //   serror
    VECTOR 12                         // lower EL, AArch32: sync
    VECTOR 13                         //   irq
    VECTOR 14                         //   fiq
    VECTOR 15                         //   serror

exception_common:
    SAVE_REST
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

// On the overflow stack with x0 = kind and the frame's x0/x1 saved; the SP
// that did not fit the frame is in TPIDRRO_EL0. Does not return. A nested
// exception while reporting lands on the overflow stack again (through
// either path) and ends in the same fatal report, which stops at once when
// a report is already under way.
stack_overflow_common:
    SAVE_REST
    mov     x1, sp
    mrs     x2, tpidrro_el0
    bl      {overflow_handler}
1:  wfe
    b       1b

.section .bss.overflow_stack, "aw", %nobits
.balign 16
overflow_stack:
    .space  OVERFLOW_STACK_SIZE
overflow_stack_top:

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

// User-memory copies: x0 = destination, x1 = source, x2 = length ->
// x0 = bytes not copied. The user side is accessed with LDTR/STTR, which
// check EL0's permissions and are exempt from PAN, so a kernel address
// faults as well (the Rust wrappers refuse those before calling). Whole
// words first; a fault there falls back to bytes from the same place, so
// the count left is exact. The fixup path overwrites x1, so the routines
// keep their pointers in x4/x5.
.globl copy_from_user_asm
copy_from_user_asm:
    mov     x4, x1                    // user source
    mov     x5, x0                    // kernel destination
1:  cmp     x2, #8
    b.lo    cfu_bytes
cfu_word_insn:
    ldtr    x3, [x4]
    str     x3, [x5], #8
    add     x4, x4, #8
    sub     x2, x2, #8
    b       1b
cfu_bytes:
    cbz     x2, cfu_done
cfu_byte_insn:
    ldtrb   w3, [x4]
    strb    w3, [x5], #1
    add     x4, x4, #1
    sub     x2, x2, #1
    b       cfu_bytes
cfu_done:
    mov     x0, x2
    ret

.globl copy_to_user_asm
copy_to_user_asm:
    mov     x4, x1                    // kernel source
    mov     x5, x0                    // user destination
1:  cmp     x2, #8
    b.lo    ctu_bytes
    ldr     x3, [x4]
ctu_word_insn:
    sttr    x3, [x5]
    add     x4, x4, #8
    add     x5, x5, #8
    sub     x2, x2, #8
    b       1b
ctu_bytes:
    cbz     x2, ctu_done
    ldrb    w3, [x4]
ctu_byte_insn:
    sttrb   w3, [x5]
    add     x4, x4, #1
    add     x5, x5, #1
    sub     x2, x2, #1
    b       ctu_bytes
ctu_done:
    mov     x0, x2
    ret

.section .rodata, "a"
.balign 8
.globl exception_fixups
exception_fixups:                     // (faulting instruction, resume address) pairs
    .quad probe_read_insn, probe_read_insn + 4
    .quad probe_write_insn, probe_write_insn + 4
    .quad cfu_word_insn, cfu_bytes
    .quad cfu_byte_insn, cfu_done
    .quad ctu_word_insn, ctu_bytes
    .quad ctu_byte_insn, ctu_done
.globl exception_fixups_end
exception_fixups_end:
