// Folium x86_64 entry, reached through QEMU's PVH boot path: 32-bit
// protected mode, paging off, EBX = physical address of hvm_start_info.
// Loads a GDT with a 64-bit code segment, enables PAE + long mode + NX with
// static early page tables, and calls Rust in the higher half.

.section .note.Xen, "a", @note
.balign 4
    .long 4                           // name size
    .long 8                           // descriptor size: an 8-byte address
    .long 18                          // XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad pvh_entry32
    .balign 4

.section .text.boot32, "ax"
.code32
.globl pvh_entry32
pvh_entry32:
    cli
    cld
    mov     %ebx, %esi                // keep hvm_start_info for Rust
    lgdt    boot_gdt_ptr
    mov     %cr4, %eax
    or      $0x20, %eax               // CR4.PAE
    mov     %eax, %cr4
    mov     $boot_pml4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx         // IA32_EFER
    rdmsr
    or      $0x900, %eax              // LME | NXE
    wrmsr
    mov     %cr0, %eax
    or      $0x80010001, %eax         // PG | WP | PE
    mov     %eax, %cr0
    ljmp    $0x08, $long_mode

.code64
long_mode:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    xor     %ax, %ax
    mov     %ax, %fs
    mov     %ax, %gs
    // Clear .bss (higher half; QEMU zero-fills it too, but do not rely on it).
    movabs  $__bss_start, %rdi
    movabs  $__bss_end, %rcx
    sub     %rdi, %rcx
    shr     $3, %rcx
    xor     %eax, %eax
    rep stosq
    movabs  $boot_stack_top, %rsp
    mov     %esi, %edi                // zero-extends: hvm_start_info physical address
    movabs  ${rust_entry}, %rax
    call    *%rax
1:  hlt
    jmp     1b

// An application processor's start, in three steps. It wakes from the
// SIPI in real mode at ap_trampoline (copied by the kernel to a page below
// 1 MiB, the SIPI vector's), loads the boot GDT and enters protected mode;
// ap_entry32 (here, at its link address) turns on long mode with the early
// tables exactly as the boot CPU did; ap_long_mode finds this CPU's slot
// of ap_mailbox by its APIC id (a slot per CPU, so one that comes up late
// never takes another's), jumps to the higher half and there installs the
// kernel's tables and stack and calls the kernel's entry. No slot: it
// halts.
.code16
.globl ap_trampoline
ap_trampoline:
    cli
    cld
    mov     %cs, %ax
    mov     %ax, %ds
    lgdtl   (ap_gdt_ptr - ap_trampoline)
    mov     %cr0, %eax
    or      $1, %eax                  // CR0.PE
    mov     %eax, %cr0
    ljmpl   $0x18, $ap_entry32
.balign 8
ap_gdt_ptr:
    .word   boot_gdt_ptr - boot_gdt - 1
    .long   boot_gdt
.globl ap_trampoline_end
ap_trampoline_end:

.code32
ap_entry32:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %cr4, %eax
    or      $0x20, %eax               // CR4.PAE
    mov     %eax, %cr4
    mov     $boot_pml4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx         // IA32_EFER
    rdmsr
    or      $0x900, %eax              // LME | NXE
    wrmsr
    // CR0 whole, not ORed: INIT leaves CD and NW set (caches off).
    mov     $0x80010033, %eax         // PG | WP | NE | ET | MP | PE
    mov     %eax, %cr0
    ljmp    $0x08, $ap_long_mode

.code64
ap_long_mode:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    xor     %ax, %ax
    mov     %ax, %fs
    mov     %ax, %gs
    mov     $1, %eax
    cpuid
    shr     $24, %ebx                 // CPUID.1:EBX[31:24], the initial APIC id
    bts     $63, %rbx                 // AP_SLOT_VALID
    movabs  $ap_mailbox, %rsi         // higher half: the early tables map it too
    mov     ${max_cpus}, %ecx
1:  cmp     %rbx, (%rsi)
    je      2f
    add     $64, %rsi
    dec     %ecx
    jnz     1b
3:  hlt
    jmp     3b
2:  mov     8(%rsi), %r12             // the kernel's CR3
    mov     16(%rsi), %r13            // stack top
    mov     24(%rsi), %r14            // entry
    mov     32(%rsi), %r15            // its argument
    movabs  $ap_high, %rax
    jmp     *%rax

.section .data.boot32, "aw"
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff          // 0x08: 64-bit kernel code (accessed)
    .quad 0x00cf93000000ffff          // 0x10: kernel data (accessed)
    .quad 0x00cf9b000000ffff          // 0x18: 32-bit code, for ap_trampoline
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

// Early tables: identity map and linear map of the first 4 GiB (2 MiB pages),
// and the kernel window KERNEL_VMA .. +2 GiB onto physical 0 .. 2 GiB.
.balign 4096
.globl boot_pml4
boot_pml4:
    .quad boot_pdpt_low + 0x3
    .fill 255, 8, 0
    .quad boot_pdpt_low + 0x3         // PML4[256]: linear map at 0xffff800000000000
    .fill 254, 8, 0
    .quad boot_pdpt_high + 0x3        // PML4[511]: kernel image window
boot_pdpt_low:
    .quad boot_pd + 0x0003
    .quad boot_pd + 0x1003
    .quad boot_pd + 0x2003
    .quad boot_pd + 0x3003
    .fill 508, 8, 0
boot_pdpt_high:
    .fill 510, 8, 0
    .quad boot_pd + 0x0003
    .quad boot_pd + 0x1003
boot_pd:
    .set i, 0
    .rept 2048
    .quad (i << 21) + 0x83            // present, writable, 2 MiB page
    .set i, i + 1
    .endr

// The application processor's last step, in the higher half: the
// kernel's tables (which do not map the low code above), its stack, its
// entry.
.section .text.ap, "ax"
.code64
ap_high:
    mov     %r12, %cr3
    mov     %r13, %rsp
    mov     %r15, %rdi
    call    *%r14
1:  cli
    hlt
    jmp     1b

// A 64-byte slot per CPU: (APIC id | 1 << 63, CR3, stack top, entry,
// argument), written by the kernel (`prepare_ap`).
.section .data.ap, "aw"
.balign 64
.globl ap_mailbox
ap_mailbox:
    .space  64 * {max_cpus}

.section .bss.boot_stack, "aw", @nobits
.balign 4096
.globl boot_stack_guard
boot_stack_guard:                     // left unmapped by the kernel's tables
    .space 4096
.globl boot_stack_bottom
boot_stack_bottom:
    .space 65536
.globl boot_stack_top
boot_stack_top:
