// x86_64 entry stubs for vectors 0..31 (exceptions) and 32..255
// (interrupts). Each pushes a dummy error code where the CPU pushes none,
// then the vector, then the general purpose registers, and calls
// handle_exception(frame). The handler may change the frame (RIP to resume
// at a fixup, RDX to return an error), restored by iretq.
// NMI (2), #DF (8) and #MC (18) arrive on their own IST stacks (the gates'
// IST fields, set in trap.rs): the same stubs run there, only RSP differs.
//
// A trap from ring 3 (CS.RPL = 3) arrives on TSS.RSP0, just below the
// frame of folium_enter_user (user.S): it swaps GS in, clears DF and AC
// (an interrupt gate leaves both as user code set them), and calls
// handle_user_trap(frame), which stores the registers into the user
// context and returns run_user's exit code; then it unwinds to
// folium_user_exit with the kernel RSP saved in the per-CPU area.

.macro STUB vec, has_error
.balign 16
isr_stub_\vec:
    .if \has_error == 0
    push    $0
    .endif
    push    $\vec
    jmp     isr_common
.endm

.section .text, "ax"
    STUB 0, 0
    STUB 1, 0
    STUB 2, 0
    STUB 3, 0
    STUB 4, 0
    STUB 5, 0
    STUB 6, 0
    STUB 7, 0
    STUB 8, 1
    STUB 9, 0
    STUB 10, 1
    STUB 11, 1
    STUB 12, 1
    STUB 13, 1
    STUB 14, 1
    STUB 15, 0
    STUB 16, 0
    STUB 17, 1
    STUB 18, 0
    STUB 19, 0
    STUB 20, 0
    STUB 21, 1
    STUB 22, 0
    STUB 23, 0
    STUB 24, 0
    STUB 25, 0
    STUB 26, 0
    STUB 27, 0
    STUB 28, 0
    STUB 29, 1
    STUB 30, 1
    STUB 31, 0

// Interrupt stubs, 16 bytes apart from isr_irq_stubs (trap.rs computes
// their addresses and a self-test checks the layout).
.balign 16
.globl isr_irq_stubs
isr_irq_stubs:
    .set vec, 32
    .rept 224
    .balign 16
    push    $0
    push    $vec
    jmp     isr_common
    .set vec, vec + 1
    .endr

// The general registers in TrapFrame order (r15 at the lowest address).
.macro PUSH_GPRS
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
.endm

.macro POP_GPRS
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
.endm

isr_common:
    testb   $3, 24(%rsp)              // CS of the interrupted code
    jnz     isr_from_user
    PUSH_GPRS
    mov     %rsp, %rdi
    cld
    call    {handler}
    POP_GPRS
    add     $16, %rsp                 // vector and error code
    iretq

isr_from_user:
    swapgs
    PUSH_GPRS
    pushq   $2                        // RFLAGS: DF = AC = 0 (IF stays 0)
    popfq
    mov     %rsp, %rdi
    call    {user_handler}
    mov     %gs:{pc_krsp}, %rsp
    mov     ${kernel_ds}, %ecx        // the CPU loaded a null SS
    mov     %ecx, %ss
    jmp     folium_user_exit

// copy_user(dst, src, n) -> bytes not copied. Callers checked that the
// user side lies below the user-half limit. 8 bytes at a time, then the
// tail; a fault in the 8-byte part continues byte by byte from where it
// stopped, so the count left is exact. SMAP: AC set only around the copy.
.globl folium_copy_user
folium_copy_user:                     // rdi = dst, rsi = src, rdx = n -> rax
    cmpb    $0, {smap}(%rip)
    je      1f
    stac
1:  mov     %rdx, %r8
    and     $7, %r8d
    mov     %rdx, %rcx
    shr     $3, %rcx
copy_user_quads:
    rep movsq
    mov     %r8, %rcx
copy_user_bytes:
    rep movsb
copy_user_done:
    cmpb    $0, {smap}(%rip)
    je      2f
    clac
2:  mov     %rcx, %rax
    ret
copy_user_quads_fault:                // rcx quads and r8 bytes left
    lea     (%r8, %rcx, 8), %rcx
    jmp     copy_user_bytes

// Fault-tolerant accessors; see exception_fixups below.
.globl probe_read_u64
probe_read_u64:                       // rdi = address -> rax = value, rdx = 0 or 1 (faulted)
    xor     %edx, %edx
probe_read_insn:
    mov     (%rdi), %rax
probe_read_resume:
    ret

.globl probe_write_u64
probe_write_u64:                      // rdi = address, rsi = value -> rdx = 0 or 1 (faulted)
    xor     %edx, %edx
probe_write_insn:
    mov     %rsi, (%rdi)
probe_write_resume:
    mov     %rdx, %rax
    ret

.section .rodata, "a"
.balign 8
.globl isr_stub_table
isr_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_stub_\n
    .endr
.globl exception_fixups
exception_fixups:                     // (faulting instruction, resume address) pairs
    .quad probe_read_insn, probe_read_resume
    .quad probe_write_insn, probe_write_resume
    .quad copy_user_quads, copy_user_quads_fault
    .quad copy_user_bytes, copy_user_done
.globl exception_fixups_end
exception_fixups_end:
