// Folium aarch64 entry: Linux arm64 Image header, EL2/EL3 -> EL1 drop,
// secondary-core parking, .bss clearing, early page tables, MMU on, and the
// jump to the higher half. Runs at the physical load address with the MMU
// off, so every address is formed PC-relatively (adr/adrp) until the jump.

.equ SCTLR_EL1_RES1,   0x30d00800
.equ SCTLR_EL1_MMU_ON, 0x30d0180d    // RES1 | M | C | SA | I
.equ EARLY_PAGE_RWX,   0x0040000000000707 // page, AttrIndx 1 (normal WB), inner shareable, AF, UXN
.equ EARLY_BLOCK_RWX,  0x0000000000000705 // 2 MiB block, normal WB, inner shareable, AF
.equ MAIR_VALUE,       0x44ff00      // 0: device nGnRnE, 1: normal WB RW-alloc, 2: normal non-cacheable
// T0SZ = T1SZ = 16 (48-bit VA), 4 KiB granules, inner-shareable WB-WA walks.
.equ TCR_VALUE,        0x00000000b5103510
.equ EARLY_L3_TABLES,  8             // 8 x 2 MiB = 16 MiB of image mapping

.section .text.head, "ax"
.globl _start
_start:
    b       primary_entry
    .word   0
    .quad   0x80000                   // text_offset
    .quad   __image_size              // includes .bss
    .quad   0xa                       // little-endian, 4 KiB pages, anywhere in RAM
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .word   0

.section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                   // boot information: DTB or ATAG list
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, park                  // only core 0 boots; others wait forever
    mrs     x20, CurrentEL
    lsr     x20, x20, #2              // the EL we were entered at, reported to Rust
    cmp     x20, #3
    b.eq    from_el3
    cmp     x20, #2
    b.eq    from_el2
    b       at_el1

park:
    wfe
    b       park

from_el3:
    mov     x0, #(1 << 10)            // SCR_EL3.RW: lower ELs are AArch64 (secure EL1)
    msr     scr_el3, x0
    msr     cptr_el3, xzr             // no FP/SIMD traps to EL3
    ldr     x0, =SCTLR_EL1_RES1
    msr     sctlr_el1, x0
    mov     x0, #0x3c5                // EL1h, DAIF masked
    msr     spsr_el3, x0
    adr     x0, at_el1
    msr     elr_el3, x0
    eret

from_el2:
    mov     x0, #0x33ff               // CPTR_EL2: no FP/SIMD traps to EL2
    msr     cptr_el2, x0
    mov     x0, #(1 << 31)            // HCR_EL2.RW: EL1 is AArch64; no stage 2
    msr     hcr_el2, x0
    mrs     x0, cnthctl_el2
    orr     x0, x0, #3                // EL1 may read the physical counter and timer
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mrs     x0, midr_el1              // EL1 reads of MIDR/MPIDR return these
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    ldr     x0, =SCTLR_EL1_RES1
    msr     sctlr_el1, x0
    mov     x0, #0x3c5                // EL1h, DAIF masked
    msr     spsr_el2, x0
    adr     x0, at_el1
    msr     elr_el2, x0
    eret

at_el1:
    msr     spsel, #1
    mov     x0, #(3 << 20)            // CPACR_EL1.FPEN: Rust code uses FP/SIMD registers
    msr     cpacr_el1, x0
    ldr     x0, =SCTLR_EL1_RES1       // MMU and caches off, known state
    msr     sctlr_el1, x0
    isb

    // Clear .bss (it holds the early tables and the boot stack).
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  stp     xzr, xzr, [x0], #16
    cmp     x0, x1
    b.lo    1b

    adrp    x21, _start               // physical address of the image
    ldr     x22, =_start              // its link (virtual) address
    sub     x23, x22, x21             // kimage_voffset = VA - PA

    // TTBR1: L0[511] -> L1, L1[510] -> L2, L2[0..8] -> eight L3 tables that
    // together cover KERNEL_VMA .. KERNEL_VMA + 16 MiB with 4 KiB pages.
    adrp    x0, early_ttbr1_l0
    adrp    x1, early_img_l1
    orr     x2, x1, #3
    str     x2, [x0, #(511 * 8)]
    adrp    x2, early_img_l2
    orr     x3, x2, #3
    str     x3, [x1, #(510 * 8)]
    adrp    x3, early_img_l3
    mov     x4, #0
2:  add     x5, x3, x4, lsl #12
    orr     x5, x5, #3
    str     x5, [x2, x4, lsl #3]
    add     x4, x4, #1
    cmp     x4, #EARLY_L3_TABLES
    b.lo    2b
    ldr     x6, =__image_start
    ldr     x7, =__image_end
    ldr     x8, =KERNEL_VMA
    sub     x9, x6, x8
    lsr     x9, x9, #12               // first L3 index
    sub     x10, x7, x8
    lsr     x10, x10, #12             // end L3 index
    sub     x11, x6, x23              // physical address of __image_start
    ldr     x12, =EARLY_PAGE_RWX
3:  orr     x13, x11, x12
    str     x13, [x3, x9, lsl #3]
    add     x11, x11, #4096
    add     x9, x9, #1
    cmp     x9, x10
    b.lo    3b

    // TTBR0: identity-map the 2 MiB block holding this code, so the
    // instruction after the MMU switch is still fetched.
    adrp    x0, early_ttbr0_l0
    adrp    x1, early_id_l1
    adrp    x2, early_id_l2
    ubfx    x3, x21, #39, #9
    orr     x4, x1, #3
    str     x4, [x0, x3, lsl #3]
    ubfx    x3, x21, #30, #9
    orr     x4, x2, #3
    str     x4, [x1, x3, lsl #3]
    ubfx    x3, x21, #21, #9
    lsr     x4, x21, #21
    lsl     x4, x4, #21
    ldr     x5, =EARLY_BLOCK_RWX
    orr     x4, x4, x5
    str     x4, [x2, x3, lsl #3]

    // Everything in .bss (the tables just written, the zeroed stack) was
    // stored with the MMU off, i.e. uncached. Invalidate any stale copies of
    // those lines a previous boot stage may have left in the caches, so the
    // cacheable table walks and accesses after MMU-on see memory.
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
    mrs     x2, ctr_el0
    ubfx    x2, x2, #16, #4           // CTR_EL0.DminLine: log2(words per line)
    mov     x3, #4
    lsl     x2, x3, x2                // line size in bytes
    sub     x3, x2, #1
    bic     x0, x0, x3
4:  dc      ivac, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    4b
    dsb     sy

    ldr     x0, =MAIR_VALUE
    msr     mair_el1, x0
    ldr     x0, =TCR_VALUE
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0xf              // PARange
    cmp     x1, #5
    mov     x2, #5
    csel    x1, x1, x2, ls            // at most 48-bit output addresses (no LPA2)
    bfi     x0, x1, #32, #3           // TCR_EL1.IPS
    msr     tcr_el1, x0
    adrp    x0, early_ttbr0_l0
    msr     ttbr0_el1, x0
    adrp    x0, early_ttbr1_l0
    msr     ttbr1_el1, x0
    dsb     ish
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x0, =SCTLR_EL1_MMU_ON
    msr     sctlr_el1, x0
    isb
    ldr     x0, =high_entry
    br      x0

// Called at its physical address through the identity map (TTBR0), with
// x0 = the new TTBR1 root and x1 = a table with no valid entry. TTBR1 is
// pointed at the empty table and the TLB invalidated before the new root is
// installed (break-before-make for the whole kernel half), so no stale or
// conflicting kernel-half translation survives. Touches no memory.
.globl replace_ttbr1
replace_ttbr1:
    dsb     ishst                     // table writes visible to the walker first
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ret

high_entry:
    adrp    x0, boot_stack_top
    add     x0, x0, :lo12:boot_stack_top
    mov     sp, x0
    // The kernel's vectors, so a fault while the boot code parses firmware
    // data is reported (or at least stops QEMU) instead of looping.
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    mov     x1, x20
    mov     x2, x23
    bl      {rust_entry}
    b       park

.section .bss.early, "aw", %nobits
.balign 4096
.globl early_ttbr1_l0
early_ttbr1_l0:  .space 4096
early_img_l1:    .space 4096
early_img_l2:    .space 4096
early_img_l3:    .space 4096 * EARLY_L3_TABLES
.globl early_ttbr0_l0
early_ttbr0_l0:  .space 4096
early_id_l1:     .space 4096
early_id_l2:     .space 4096
.balign 4096
.globl boot_stack_guard
boot_stack_guard:                     // left unmapped by the kernel's tables
                 .space 4096
.globl boot_stack_bottom
boot_stack_bottom:
                 .space 65536
.globl boot_stack_top
boot_stack_top:
