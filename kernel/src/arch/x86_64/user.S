// Entering and leaving ring 3 (Intel syntax). The per-CPU area is at GS
// while in the kernel (KERNEL_GS_BASE holds the user's GS base); every
// entry from ring 3 swaps it in first, every exit swaps it out last.
//
// folium_enter_user(ctx, sysret) -> exit code
//   Saves the callee-saved registers on the kernel stack, records that RSP
//   (per-CPU kernel_rsp, TSS.RSP0) and ctx, loads the user registers and
//   leaves with sysretq (RCX = RIP, R11 = RFLAGS) or iretq (all registers).
// folium_syscall_entry (IA32_LSTAR)
//   Stores the user registers into ctx (RCX and R11 twice: as themselves
//   and as RIP and RFLAGS), then returns from folium_enter_user with 0.
// folium_user_exit
//   The common tail, also reached from idt.S after an interrupt or
//   exception in ring 3 (code in RAX, RSP = kernel_rsp).

.section .text, "ax"
.balign 16
.globl folium_enter_user
folium_enter_user:
    push    rbx
    push    rbp
    push    r12
    push    r13
    push    r14
    push    r15
    sub     rsp, 8                      // 16-byte aligned RSP0
    mov     gs:[{pc_krsp}], rsp
    mov     gs:[{pc_ctx}], rdi
    mov     rax, gs:[{pc_rsp0}]
    mov     [rax], rsp                  // TSS.RSP0: traps from ring 3 land below this frame
    test    rsi, rsi
    jz      2f
    mov     rcx, [rdi + {rip}]
    mov     r11, [rdi + {rflags}]
    mov     rax, [rdi + {rax}]
    mov     rbx, [rdi + {rbx}]
    mov     rdx, [rdi + {rdx}]
    mov     rsi, [rdi + {rsi}]
    mov     rbp, [rdi + {rbp}]
    mov     r8, [rdi + {r8}]
    mov     r9, [rdi + {r9}]
    mov     r10, [rdi + {r10}]
    mov     r12, [rdi + {r12}]
    mov     r13, [rdi + {r13}]
    mov     r14, [rdi + {r14}]
    mov     r15, [rdi + {r15}]
    mov     rsp, [rdi + {rsp}]          // interrupts are masked; NMI and #MC use IST stacks
    mov     rdi, [rdi + {rdi}]
    swapgs
    sysretq
2:
    push    {user_ds}
    push    qword ptr [rdi + {rsp}]
    push    qword ptr [rdi + {rflags}]
    push    {user_cs}
    push    qword ptr [rdi + {rip}]
    mov     rax, [rdi + {rax}]
    mov     rbx, [rdi + {rbx}]
    mov     rcx, [rdi + {rcx}]
    mov     rdx, [rdi + {rdx}]
    mov     rsi, [rdi + {rsi}]
    mov     rbp, [rdi + {rbp}]
    mov     r8, [rdi + {r8}]
    mov     r9, [rdi + {r9}]
    mov     r10, [rdi + {r10}]
    mov     r11, [rdi + {r11}]
    mov     r12, [rdi + {r12}]
    mov     r13, [rdi + {r13}]
    mov     r14, [rdi + {r14}]
    mov     r15, [rdi + {r15}]
    mov     rdi, [rdi + {rdi}]
    swapgs
    iretq

.balign 16
.globl folium_syscall_entry
folium_syscall_entry:
    swapgs
    mov     gs:[{pc_ursp}], rsp         // never trust the user RSP: not used as a stack
    mov     rsp, gs:[{pc_ctx}]          // a base register for the stores below
    mov     [rsp + {rax}], rax
    mov     [rsp + {rbx}], rbx
    mov     [rsp + {rcx}], rcx
    mov     [rsp + {rip}], rcx
    mov     [rsp + {rdx}], rdx
    mov     [rsp + {rsi}], rsi
    mov     [rsp + {rdi}], rdi
    mov     [rsp + {rbp}], rbp
    mov     [rsp + {r8}], r8
    mov     [rsp + {r9}], r9
    mov     [rsp + {r10}], r10
    mov     [rsp + {r11}], r11
    mov     [rsp + {rflags}], r11
    mov     [rsp + {r12}], r12
    mov     [rsp + {r13}], r13
    mov     [rsp + {r14}], r14
    mov     [rsp + {r15}], r15
    mov     rax, gs:[{pc_ursp}]
    mov     [rsp + {rsp}], rax
    mov     rsp, gs:[{pc_krsp}]
    mov     eax, {exit_syscall}
.globl folium_user_exit
folium_user_exit:
    add     rsp, 8
    pop     r15
    pop     r14
    pop     r13
    pop     r12
    pop     rbp
    pop     rbx
    ret
