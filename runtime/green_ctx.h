/*
 * green_ctx.h - machine context switching for greenlets (internal to runtime/).
 *
 * Two implementations, both always built where the CPU has one, so bench_runtime can
 * compare them in one run:
 *
 *   asm       green_ctx_x86_64.S / green_ctx_aarch64.S: saves only what the ABI makes
 *             callee-saved, plus the floating-point control state, on the stack being
 *             left, then stores the stack pointer. About 10 ns.
 *   ucontext  glibc's swapcontext: portable, but it makes a sigprocmask system call on
 *             every switch (POSIX says it saves the signal mask). About 500 ns.
 *
 * The runtime uses asm unless built with -DWORKERD_CONTEXT=ucontext (or on a CPU with
 * no asm port): green__ctx_* name the selected one.
 *
 * Invariants: a context is started once, through green__*_init, whose entry function
 * must never return (a greenlet ends by switching away for good). The stack pointer always
 * points into a real stack, also mid-switch, because a signal handler may run on it.
 */
#ifndef WORKERD_GREEN_CTX_H
#define WORKERD_GREEN_CTX_H

#include <stddef.h>
#include <ucontext.h>

typedef void (*green_ctx_entry)(void *arg);

/* The asm context: the saved stack pointer; everything else is on that stack. */
typedef struct green_asm_ctx {
    void *sp;
} green_asm_ctx;

#ifdef GREEN_HAVE_ASM
/* Save the callee-saved registers and FP control words on the current stack into from,
 * and resume to. Returns when something switches back to from. */
void green__asm_switch(green_asm_ctx *from, green_asm_ctx *to);
#endif
/* Prepare ctx to run entry(arg) on the stack [lo, lo + size) at its first switch. */
void green__asm_init(green_asm_ctx *ctx, void *lo, size_t size, green_ctx_entry entry, void *arg);

typedef struct green_uc_ctx {
    ucontext_t uc;
} green_uc_ctx;

void green__uc_switch(green_uc_ctx *from, green_uc_ctx *to);
void green__uc_init(green_uc_ctx *ctx, void *lo, size_t size, green_ctx_entry entry, void *arg);

#if defined(GREEN_USE_UCONTEXT) || !defined(GREEN_HAVE_ASM)
typedef green_uc_ctx green_ctx;
#define green__ctx_switch green__uc_switch
#define green__ctx_init green__uc_init
#define GREEN_CTX_NAME "ucontext"
#else
typedef green_asm_ctx green_ctx;
#define green__ctx_switch green__asm_switch
#define green__ctx_init green__asm_init
#define GREEN_CTX_NAME "asm"
#endif

#endif
