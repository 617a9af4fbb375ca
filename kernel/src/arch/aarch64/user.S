// User mode as a function call: enter_user(ctx, exit) saves the kernel's
// callee-saved registers in a frame on the current (task's) kernel stack,
// loads the whole user state from the UserContext and `eret`s to EL0. SP_EL1
// stays at that frame, so the next exception from EL0 lands on it: the
// vector (vectors.S, VECTOR_USER) pushes the user's x0/x1 below it and
// branches to user_exit with the vector number in x1. user_exit stores the
// user state back into the UserContext whose address the frame holds,
// records the vector, ESR_EL1 and FAR_EL1 in the exit record, restores the
// kernel's registers and returns from enter_user.
//
// Frame at SP_EL1 while user code runs (ENTER_FRAME bytes):
//   [0] ctx  [8] exit record  [16..112) x19..x30  [112..176) d8..d15
// The uc_* operands are UserContext field offsets, from user.rs.

.equ ENTER_FRAME, 176

.section .text, "ax"
.globl enter_user
enter_user:
    sub     sp, sp, #ENTER_FRAME
    stp     x0, x1, [sp, #0]
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     x29, x30, [sp, #96]
    stp     d8, d9, [sp, #112]
    stp     d10, d11, [sp, #128]
    stp     d12, d13, [sp, #144]
    stp     d14, d15, [sp, #160]

    add     x2, x0, #{uc_q}
    ldp     q0, q1, [x2, #0]
    ldp     q2, q3, [x2, #32]
    ldp     q4, q5, [x2, #64]
    ldp     q6, q7, [x2, #96]
    ldp     q8, q9, [x2, #128]
    ldp     q10, q11, [x2, #160]
    ldp     q12, q13, [x2, #192]
    ldp     q14, q15, [x2, #224]
    ldp     q16, q17, [x2, #256]
    ldp     q18, q19, [x2, #288]
    ldp     q20, q21, [x2, #320]
    ldp     q22, q23, [x2, #352]
    ldp     q24, q25, [x2, #384]
    ldp     q26, q27, [x2, #416]
    ldp     q28, q29, [x2, #448]
    ldp     q30, q31, [x2, #480]
    ldp     x2, x3, [x0, #{uc_fpcr}]      // fpcr, fpsr
    msr     fpcr, x2
    msr     fpsr, x3
    ldp     x2, x3, [x0, #{uc_sp}]        // sp, pc
    msr     sp_el0, x2
    msr     elr_el1, x3
    ldp     x2, x3, [x0, #{uc_pstate}]    // pstate, tls
    msr     spsr_el1, x2
    msr     tpidr_el0, x3

    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    // Nothing after an eret runs, not even speculatively.
    dsb     nsh
    isb

// From VECTOR_USER: SP = frame - 16 holding the user's x0/x1, x1 = vector.
.globl user_exit
user_exit:
    ldr     x0, [sp, #16]                 // ctx
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16             // the user's x0, x1; SP = frame
    stp     x2, x3, [x0, #0]
    mrs     x2, sp_el0
    mrs     x3, elr_el1
    stp     x2, x3, [x0, #{uc_sp}]
    mrs     x2, spsr_el1
    mrs     x3, tpidr_el0
    stp     x2, x3, [x0, #{uc_pstate}]
    mrs     x2, fpcr
    mrs     x3, fpsr
    stp     x2, x3, [x0, #{uc_fpcr}]
    // The kernel runs with the default FP modes, whatever the user chose.
    msr     fpcr, xzr
    add     x2, x0, #{uc_q}
    stp     q0, q1, [x2, #0]
    stp     q2, q3, [x2, #32]
    stp     q4, q5, [x2, #64]
    stp     q6, q7, [x2, #96]
    stp     q8, q9, [x2, #128]
    stp     q10, q11, [x2, #160]
    stp     q12, q13, [x2, #192]
    stp     q14, q15, [x2, #224]
    stp     q16, q17, [x2, #256]
    stp     q18, q19, [x2, #288]
    stp     q20, q21, [x2, #320]
    stp     q22, q23, [x2, #352]
    stp     q24, q25, [x2, #384]
    stp     q26, q27, [x2, #416]
    stp     q28, q29, [x2, #448]
    stp     q30, q31, [x2, #480]

    ldr     x3, [sp, #8]                  // exit record: vector, ESR, FAR
    mrs     x4, esr_el1
    mrs     x5, far_el1
    stp     x1, x4, [x3, #0]
    str     x5, [x3, #16]

    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp, #96]
    ldp     d8, d9, [sp, #112]
    ldp     d10, d11, [sp, #128]
    ldp     d12, d13, [sp, #144]
    ldp     d14, d15, [sp, #160]
    add     sp, sp, #ENTER_FRAME
    ret
