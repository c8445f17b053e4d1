/*
 * green_ctx.c - preparing new contexts: the initial frame the asm switch pops for a new
 * greenlet (layouts in green_ctx_*.S), and the ucontext fallback.
 *
 * The initial FP control state is the creating thread's current one, so a greenlet
 * starts with the same rounding and exception masks as the code that spawned it.
 */
#include "green_ctx.h"

#include <stdint.h>
#include <string.h>

#ifdef GREEN_HAVE_ASM
void green__asm_trampoline(void);

void green__asm_init(green_asm_ctx *ctx, void *lo, size_t size, green_ctx_entry entry, void *arg) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    uint64_t *frame = (uint64_t *)(top - 64);
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    frame[0] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    frame[1] = 0;                          /* r15 */
    frame[2] = 0;                          /* r14 */
    frame[3] = (uint64_t)(uintptr_t)arg;   /* r13 */
    frame[4] = (uint64_t)(uintptr_t)entry; /* r12 */
    frame[5] = 0;                          /* rbx */
    frame[6] = 0;                          /* rbp */
    frame[7] = (uint64_t)(uintptr_t)green__asm_trampoline;
    ctx->sp = frame;
#elif defined(__aarch64__)
    uint64_t *frame = (uint64_t *)(top - 176);
    uint64_t fpcr;
    memset(frame, 0, 176);
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    frame[0] = (uint64_t)(uintptr_t)entry;                  /* x19 */
    frame[1] = (uint64_t)(uintptr_t)arg;                    /* x20 */
    frame[10] = 0;                                          /* x29 */
    frame[11] = (uint64_t)(uintptr_t)green__asm_trampoline; /* x30 */
    frame[20] = fpcr;
    ctx->sp = frame;
#else
#error "GREEN_HAVE_ASM set for a CPU without an asm port"
#endif
}
#endif

/* makecontext passes int arguments only: the pointer travels as two halves. */
static void uc_trampoline(unsigned int hi, unsigned int lo, unsigned int ehi, unsigned int elo) {
    void *arg = (void *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    green_ctx_entry entry = (green_ctx_entry)(((uintptr_t)ehi << 32) | (uintptr_t)elo);
    entry(arg);
}

void green__uc_init(green_uc_ctx *ctx, void *lo, size_t size, green_ctx_entry entry, void *arg) {
    uintptr_t a = (uintptr_t)arg, e = (uintptr_t)entry;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))uc_trampoline, 4, (unsigned int)(a >> 32),
                (unsigned int)a, (unsigned int)(e >> 32), (unsigned int)e);
}

void green__uc_switch(green_uc_ctx *from, green_uc_ctx *to) {
    swapcontext(&from->uc, &to->uc);
}
