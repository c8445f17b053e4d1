/*
 * green_ctx_x86_64.S - context switch for x86_64 (System V ABI).
 *
 * green__asm_switch(from, to) pushes the callee-saved registers and the FP control words
 * onto the stack being left, stores %rsp in from->sp, loads to->sp and pops the same
 * frame from the stack being resumed. The frame, from the saved stack pointer up:
 *
 *   offset  contents
 *     0     MXCSR (4 bytes), x87 control word (2 bytes), 2 bytes padding
 *     8     r15
 *    16     r14
 *    24     r13     (a new context: the entry's argument)
 *    32     r12     (a new context: the entry function)
 *    40     rbx
 *    48     rbp     (a new context: 0, so backtraces stop)
 *    56     return address (a new context: green__asm_trampoline)
 *
 * Caller-saved registers need no saving: the switch is an ordinary call to the compiler.
 * The FP control words are callee-saved by the ABI: a greenlet that changes the rounding
 * mode must not change it for the others.
 */
    .text
    .globl  green__asm_switch
    .type   green__asm_switch, @function
    .p2align 4
green__asm_switch:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    popq    %r14
    .cfi_adjust_cfa_offset -8
    popq    %r13
    .cfi_adjust_cfa_offset -8
    popq    %r12
    .cfi_adjust_cfa_offset -8
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    ret
    .cfi_endproc
    .size   green__asm_switch, .-green__asm_switch

/* The first frame of every greenlet: no caller (the return address is undefined in CFI,
 * the frame pointer is 0), calls entry(arg) with the stack 16-byte aligned. The entry
 * never returns; ud2 makes sure a bug there traps instead of running off. */
    .globl  green__asm_trampoline
    .type   green__asm_trampoline, @function
    .p2align 4
green__asm_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   green__asm_trampoline, .-green__asm_trampoline

    .section .note.GNU-stack, "", @progbits
