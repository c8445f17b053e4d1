/*
 * green_ctx_aarch64.S - context switch for aarch64 (AAPCS64).
 *
 * green__asm_switch(from = x0, to = x1) stores the callee-saved registers on the stack
 * being left, saves sp in from->sp, loads to->sp and restores the same frame:
 *
 *   offset  contents                 offset  contents
 *     0     x19, x20                   96     d8,  d9
 *    16     x21, x22                  112     d10, d11
 *    32     x23, x24                  128     d12, d13
 *    48     x25, x26                  144     d14, d15
 *    64     x27, x28                  160     FPCR (8 bytes), 8 bytes padding
 *    80     x29 (fp), x30 (lr)
 *
 * A new context has x19 = entry, x20 = arg, x29 = 0 and x30 = green__asm_trampoline.
 * sp stays 16-byte aligned throughout (176 = 11 * 16). Both functions start with a BTI
 * landing pad (hint 34, a no-op on CPUs without BTI), and the object carries the GNU
 * property note that marks it BTI-compatible, so linking it does not turn BTI off for
 * the whole program and the indirect jump into it does not raise SIGILL.
 */
    .text
    .globl  green__asm_switch
    .type   green__asm_switch, %function
    .p2align 4
green__asm_switch:
    .cfi_startproc
    hint    #34
    sub     sp, sp, #176
    .cfi_adjust_cfa_offset 176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    .cfi_adjust_cfa_offset -176
    ret
    .cfi_endproc
    .size   green__asm_switch, .-green__asm_switch

    .globl  green__asm_trampoline
    .type   green__asm_trampoline, %function
    .p2align 4
green__asm_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    hint    #34
    mov     x29, #0
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   green__asm_trampoline, .-green__asm_trampoline

    .section .note.gnu.property, "a"
    .balign 8
    .long   4
    .long   16
    .long   5
    .asciz  "GNU"
    .long   0xc0000000
    .long   4
    .long   1
    .long   0

    .section .note.GNU-stack, "", %progbits
