// Folium aarch64 entry: Linux arm64 Image header, EL3/EL2 -> EL1 drop,
// secondary-core parking, .bss clearing, early page tables, MMU on, and the
// jump to the higher half. Runs at the physical load address with the MMU
// off, so every address is formed PC-relatively (adr/adrp) until the jump.
// `{{stack_*}}` operands are folium_boot's KERNEL_STACK_* constants.

.equ SCTLR_EL1_RES1,   0x30d00800
.equ SCTLR_EL1_MMU_ON, 0x34d5d81d    // RES1 | M | C | SA | SA0 | I | DZE | UCT | nTWI | nTWE | UCI
// SCTLR_EL1.SPAN (23) is RES1 without FEAT_PAN; with it, clearing SPAN
// makes every exception to EL1 set PSTATE.PAN, so kernel code (whose
// PSTATE.PAN is set once below) never touches EL0-accessible memory
// except through LDTR/STTR.
.equ SCTLR_EL1_SPAN,   (1 << 23)
.equ PSTATE_PAN,       (1 << 22)
// TCR_EL1: AS (36) 16-bit ASIDs, HA (39) hardware access flag, HD (40)
// hardware dirty state (DBM), each only where ID_AA64MMFR0/1 report it.
.equ TCR_AS,           36
.equ TCR_HA,           39
.equ TCR_HD,           40
// ICC_SRE_ELx: SRE (0), DFB (1), DIB (2), Enable (3): the GICv3 CPU
// interface through system registers, and lower levels may use it too.
.equ ICC_SRE_ALL,      0xf
.equ SCTLR_EL2_RES1,   0x30c50830    // E2H = 0 layout; MMU off, little-endian
.equ EARLY_PAGE_RWX,   0x0040000000000707 // page, AttrIndx 1 (normal WB), inner shareable, AF, UXN
.equ EARLY_BLOCK_RWX,  0x0000000000000705 // 2 MiB block, normal WB, inner shareable, AF
.equ MAIR_VALUE,       0x44ff00      // 0: device nGnRnE, 1: normal WB RW-alloc, 2: normal non-cacheable
// T0SZ = T1SZ = 16 (48-bit VA), 4 KiB granules, inner-shareable WB-WA walks.
.equ TCR_VALUE,        0x00000000b5103510
.equ EARLY_L3_TABLES,  8             // 8 x 2 MiB = 16 MiB of image mapping

.equ MPIDR_AFF_MASK,   0xff00ffffff  // Aff3 (39:32), Aff2..Aff0 (23:0)
.equ SLOT_VALID,       (1 << 63)
.equ SLOT_SIZE,        64
.equ SPSR_EL1H_MASKED, 0x3c5         // EL1h, DAIF masked
.equ SPSR_EL2H_MASKED, 0x3c9         // EL2h, DAIF masked

// SCR_EL3: NS (0) so everything below runs Non-secure (the kernel's RAM,
// UART and GIC are the Non-secure ones), bits 5:4 RES1, SMD (7) because no
// secure monitor stays behind to answer an SMC (it is UNDEFINED at EL1
// then, a plain EL1 exception), RW (10) for AArch64 below; HCE (8) only
// when dropping to EL2, where HVC must not be UNDEFINED for a hypervisor.
.equ SCR_EL3_TO_EL1,   0x4b1
.equ SCR_EL3_TO_EL2,   0x5b1

.equ HCR_EL2_RW,       (1 << 31)     // EL1 is AArch64
.equ HCR_EL2_E2H,      (1 << 34)
// CPTR_EL2 with E2H = 0: only the RES1 bits 13, 9 and 7:0. TFP (10),
// TZ (8), TSM (12), TTA (20), TAM (30), TCPAC (31) clear: FP/SIMD, SVE and
// SME and the trace, AMU and CPACR accesses of EL1 do not trap to EL2.
.equ CPTR_EL2_NVHE,    0x22ff
// CPTR_EL2 with E2H = 1 has CPACR_EL1's layout: FPEN (21:20) = 0b11;
// ZEN (17:16) and SMEN (25:24) are added when SVE / SME exist.
.equ CPTR_EL2_VHE_FP,  (3 << 20)
.equ CPACR_ZEN,        (3 << 16)
.equ CPACR_SMEN,       (3 << 24)
// CNTHCTL_EL2: EL1 may read the physical counter and use the physical
// timer. E2H = 0: EL1PCTEN (0), EL1PCEN (1). E2H = 1 moves them to
// bits 10 and 11 (bits 0 and 1 then govern EL0 in the EL2&0 regime).
.equ CNTHCTL_EL1_NVHE, 0x3
.equ CNTHCTL_EL1_VHE,  (3 << 10)

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
    mov     x28, #0                   // the boot CPU (1: a secondary, see secondary_entry)
    mov     x19, x0                   // boot information: DTB or ATAG list
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, park                  // only core 0 boots; others wait forever
lower_to_el1:                         // x28 says which path at_el1 takes
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
    adr     x0, hyp_vectors           // a trap at EL3 from here on is reported
    msr     vbar_el3, x0
    // CPTR_EL3: TFP, TTA, TAM, TCPAC clear (nothing of EL1's traps to EL3);
    // EZ and ESM enable SVE and SME below EL3, set only where they exist
    // (the bits are RES0 otherwise).
    mov     x1, #0
    mrs     x0, id_aa64pfr0_el1
    ubfx    x2, x0, #32, #4           // SVE
    cbz     x2, 1f
    orr     x1, x1, #(1 << 8)         // EZ
1:  mrs     x2, id_aa64pfr1_el1
    ubfx    x2, x2, #24, #4           // SME
    cbz     x2, 2f
    orr     x1, x1, #(1 << 12)        // ESM
2:  msr     cptr_el3, x1
    ubfx    x1, x0, #24, #4           // ID_AA64PFR0_EL1.GIC: GICv3 system registers?
    cbz     x1, 3f
    mov     x1, #ICC_SRE_ALL
    msr     S3_6_C12_C12_5, x1        // ICC_SRE_EL3
    isb
3:  ubfx    x0, x0, #8, #4            // ID_AA64PFR0_EL1.EL2: implemented?
    cbz     x0, el3_to_el1
    // Through EL2, so one path (from_el2) sets up everything EL2 owns.
    ldr     x0, =SCR_EL3_TO_EL2
    msr     scr_el3, x0
    ldr     x0, =SCTLR_EL2_RES1       // its reset value is UNKNOWN (EE, M)
    msr     sctlr_el2, x0
    mov     x0, #SPSR_EL2H_MASKED
    msr     spsr_el3, x0
    adr     x0, from_el2
    msr     elr_el3, x0
    eret

el3_to_el1:
    ldr     x0, =SCR_EL3_TO_EL1
    msr     scr_el3, x0
    ldr     x0, =SCTLR_EL1_RES1
    msr     sctlr_el1, x0
    mov     x0, #SPSR_EL1H_MASKED
    msr     spsr_el3, x0
    adr     x0, at_el1
    msr     elr_el3, x0
    eret

from_el2:
    adr     x0, hyp_vectors           // a trap at EL2 from here on is reported
    msr     vbar_el2, x0
    // ID_AA64MMFR4_EL1 (S3_0_C0_C7_4; an unallocated ID register reads as
    // 0 on older CPUs). Its E2H0 field (27:24) is signed: negative means
    // FEAT_E2H0 is absent, HCR_EL2.E2H is RES1 and EL2 always uses the
    // E2H = 1 register layouts. Anything else: E2H is ours to clear.
    mrs     x0, S3_0_C0_C7_4
    sbfx    x0, x0, #24, #4
    tbnz    x0, #63, el2_e2h_res1

    // HCR_EL2 first (and an isb): a loader may have left E2H set, and it
    // decides how the CPTR/CNTHCTL writes and the SCTLR_EL1 name below are
    // interpreted. No stage 2, no traps routed to EL2.
    mov     x0, #HCR_EL2_RW
    msr     hcr_el2, x0
    isb
    mov     x0, #CPTR_EL2_NVHE
    msr     cptr_el2, x0
    mrs     x0, cnthctl_el2
    orr     x0, x0, #CNTHCTL_EL1_NVHE
    msr     cnthctl_el2, x0
    ldr     x0, =SCTLR_EL1_RES1
    msr     sctlr_el1, x0
    b       el2_common

el2_e2h_res1:
    // E2H stays 1 (TGE = 0, so EL1 still runs its own EL1&0 regime). With
    // E2H = 1 an EL2 access named *_EL1 reaches the EL2 register, so the
    // real SCTLR_EL1 is written through its EL12 alias.
    mov     x0, #HCR_EL2_RW
    orr     x0, x0, #HCR_EL2_E2H
    msr     hcr_el2, x0
    isb
    mov     x1, #CPTR_EL2_VHE_FP
    mrs     x0, id_aa64pfr0_el1
    ubfx    x0, x0, #32, #4           // SVE
    cbz     x0, 1f
    orr     x1, x1, #CPACR_ZEN
1:  mrs     x0, id_aa64pfr1_el1
    ubfx    x0, x0, #24, #4           // SME
    cbz     x0, 2f
    orr     x1, x1, #CPACR_SMEN
2:  msr     cptr_el2, x1
    mrs     x0, cnthctl_el2
    orr     x0, x0, #CNTHCTL_EL1_VHE
    msr     cnthctl_el2, x0
    ldr     x0, =SCTLR_EL1_RES1
    msr     S3_5_C1_C0_0, x0          // SCTLR_EL12

el2_common:
    msr     cntvoff_el2, xzr
    // With a GICv3 CPU interface, EL1 may only use its system registers
    // (ICC_*_EL1) if EL2 enables them; no virtual interrupts (ICH_HCR_EL2
    // off), so the kernel talks to the physical interface.
    mrs     x0, id_aa64pfr0_el1
    ubfx    x0, x0, #24, #4           // GIC
    cbz     x0, 1f
    mov     x0, #ICC_SRE_ALL
    msr     S3_4_C12_C9_5, x0         // ICC_SRE_EL2
    isb
    msr     S3_4_C12_C11_0, xzr       // ICH_HCR_EL2
1:
    mrs     x0, midr_el1              // EL1 reads of MIDR/MPIDR return these
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    mov     x0, #SPSR_EL1H_MASKED
    msr     spsr_el2, x0
    adr     x0, at_el1
    msr     elr_el2, x0
    eret

// EL2 / EL3 vectors while and after the kernel leaves those levels: nothing
// should ever trap there, and a branch through a stale or zero VBAR would
// run garbage. Ask the semihosting host to stop with the failure status;
// if that HLT itself traps (no semihosting), wait forever.
.balign 2048
hyp_vectors:
.rept 16
.balign 0x80
    b       hyp_trap
.endr

hyp_trap:
    mrs     x0, CurrentEL
    cmp     x0, #(3 << 2)
    b.eq    1f
    mrs     x1, elr_el2
    b       2f
1:  mrs     x1, elr_el3
2:  adr     x2, hyp_exit_hlt
    cmp     x1, x2
    b.eq    park
    mov     w0, #0x20                 // SYS_EXIT_EXTENDED
    adr     x1, hyp_exit_block
hyp_exit_hlt:
    hlt     #0xf000
    b       park

.balign 8
hyp_exit_block:
    .quad   0x20026, 1                // ADP_Stopped_ApplicationExit, status 1

at_el1:
    msr     spsel, #1
    mov     x0, #(3 << 20)            // CPACR_EL1.FPEN: Rust code uses FP/SIMD registers
    msr     cpacr_el1, x0
    ldr     x0, =SCTLR_EL1_RES1       // MMU and caches off, known state
    msr     sctlr_el1, x0
    isb
    cbnz    x28, secondary_el1

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
    // cacheable table walks and accesses after MMU-on see memory. The dmb
    // makes those (non-cacheable) stores complete before the first
    // invalidation: DC IVAC may write a dirty stale line back, and one that
    // landed after a store would undo it.
    dmb     sy
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

    adrp    x0, early_ttbr1_l0
    bl      enable_mmu
    ldr     x0, =high_entry
    br      x0

// Turns the MMU on with TTBR1 = x0 (a physical table address) and TTBR0 =
// the early identity map, so the return address, in .text.boot, is still
// fetched. The same settings on every CPU: MAIR, TCR (from this CPU's ID
// registers), SCTLR, PAN. Clobbers x0-x4.
enable_mmu:
    mov     x4, x0
    ldr     x0, =MAIR_VALUE
    msr     mair_el1, x0
    ldr     x0, =TCR_VALUE
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0xf              // PARange
    cmp     x1, #5
    mov     x2, #5
    csel    x1, x1, x2, ls            // at most 48-bit output addresses (no LPA2)
    bfi     x0, x1, #32, #3           // TCR_EL1.IPS
    mrs     x1, id_aa64mmfr0_el1
    ubfx    x1, x1, #4, #4            // ASIDBits: 2 = 16 bits
    cmp     x1, #2
    b.ne    5f
    orr     x0, x0, #(1 << TCR_AS)
5:  mrs     x1, id_aa64mmfr1_el1
    ubfx    x1, x1, #0, #4            // HAFDBS: 1 = access flag, 2 = also dirty state
    cbz     x1, 6f
    orr     x0, x0, #(1 << TCR_HA)
    cmp     x1, #2
    b.lo    6f
    orr     x0, x0, #(1 << TCR_HD)
6:  msr     tcr_el1, x0
    adrp    x0, early_ttbr0_l0
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x4
    dsb     ish
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x0, =SCTLR_EL1_MMU_ON
    mrs     x1, id_aa64mmfr1_el1
    ubfx    x1, x1, #20, #4           // PAN
    cbz     x1, 7f
    bic     x0, x0, #SCTLR_EL1_SPAN
7:  msr     sctlr_el1, x0
    isb
    cbz     x1, 8f
    mov     x0, #PSTATE_PAN
    msr     S3_0_C4_C2_3, x0          // PAN: kernel accesses to user pages fault
8:  ret

// A secondary CPU, released by PSCI CPU_ON or a spin table at this
// physical address, with the MMU off at EL1, EL2 or EL3. It lowers itself
// to EL1 as the boot CPU did, then finds its slot in `secondary_mailbox`
// by its MPIDR affinity (a slot per CPU, so one that comes up late can
// never take another's): the kernel's TTBR1 root, its stack, its Rust
// entry and that entry's argument. The CPU that released it cleaned the
// slot to memory, as this one reads it with its caches off. No slot yet
// (CPUs that share one spin-table address all wake at the first release):
// it waits for an event and looks again.
.globl secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x28, #1
    b       lower_to_el1

secondary_el1:
    mrs     x1, mpidr_el1
    ldr     x2, =MPIDR_AFF_MASK
    and     x1, x1, x2
    orr     x1, x1, #SLOT_VALID
3:  adrp    x0, secondary_mailbox
    add     x0, x0, :lo12:secondary_mailbox
    mov     x3, #{max_cpus}
1:  ldr     x2, [x0]
    cmp     x2, x1
    b.eq    2f
    add     x0, x0, #SLOT_SIZE
    subs    x3, x3, #1
    b.ne    1b
    wfe
    b       3b
2:  ldp     x19, x20, [x0, #16]       // stack top, Rust entry (virtual)
    ldr     x21, [x0, #32]            // its argument
    ldr     x0, [x0, #8]              // TTBR1 root (physical)
    bl      enable_mmu
    ldr     x0, =secondary_high
    br      x0

secondary_high:
    mov     sp, x19
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x21
    blr     x20
    b       park


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
    msr     tpidr_el1, xzr            // the kernel's per-CPU index: CPU 0
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

// The boot stack obeys the kernel-stack layout rule (folium_boot's
// KERNEL_STACK_*, checked again by the linker script): it is the lower
// half of a slot twice its size and aligned to that, so the vectors'
// overflow test (bit KERNEL_STACK_SHIFT of SP) works on it. This section
// starts on such a boundary; the early tables fill the start of the slot
// below the stack, the guard page (left unmapped by the kernel's tables) is
// that slot's last page, and the stack follows directly above it. `.org`
// fails to assemble if the tables ever grow into the guard page.
.section .bss.early, "aw", %nobits
.balign {stack_align}
.globl early_ttbr1_l0
early_ttbr1_l0:  .space 4096
early_img_l1:    .space 4096
early_img_l2:    .space 4096
early_img_l3:    .space 4096 * EARLY_L3_TABLES
.globl early_ttbr0_l0
early_ttbr0_l0:  .space 4096
early_id_l1:     .space 4096
early_id_l2:     .space 4096
.org {stack_align} - {stack_guard}
.globl boot_stack_guard
boot_stack_guard:
                 .space {stack_guard}
.globl boot_stack_bottom
boot_stack_bottom:
                 .space {stack_size}
.globl boot_stack_top
boot_stack_top:

// What a secondary CPU reads first (see secondary_entry): a 64-byte slot
// per CPU, each (MPIDR affinity | SLOT_VALID, TTBR1 root, stack top,
// entry, argument), written by the kernel (`prepare_secondary`).
.section .data.secondary, "aw"
.balign 64
.globl secondary_mailbox
secondary_mailbox:
    .space  SLOT_SIZE * {max_cpus}

// For the linker script's check of the rule.
.globl __kernel_stack_align
.set __kernel_stack_align, {stack_align}
.globl __kernel_stack_size
.set __kernel_stack_size, {stack_size}
.globl __kernel_stack_guard
.set __kernel_stack_guard, {stack_guard}
