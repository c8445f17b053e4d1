/*
 * test_ctx.c - the context switch on its own (no hub, no libev), for both the asm and the
 * ucontext implementations: control goes back and forth, values the compiler keeps in
 * callee-saved integer and FP registers survive, the FP rounding mode stays per context,
 * and a new context starts on a 16-byte aligned stack.
 *
 * It needs only libc, so tests/cross-aarch64.sh can build it for aarch64 and run it under
 * qemu: the aarch64 assembly is checked even on an x86_64 machine.
 */
#include "green_ctx.h"
#include "testlib.h"

#include <fenv.h>
#include <stdint.h>
#include <sys/mman.h>

#define STACK (64 * 1024)

typedef struct {
    void (*sw)(void *from, void *to);
    void (*init)(void *ctx, void *lo, size_t size, green_ctx_entry entry, void *arg);
    void *main_ctx, *other_ctx;
} impl;

#ifdef GREEN_HAVE_ASM
static green_asm_ctx asm_main, asm_other;
static void asm_sw(void *a, void *b) {
    green__asm_switch(a, b);
}
static void asm_init(void *c, void *lo, size_t size, green_ctx_entry e, void *arg) {
    green__asm_init(c, lo, size, e, arg);
}
#endif
static green_uc_ctx uc_main, uc_other;
static void uc_sw(void *a, void *b) {
    green__uc_switch(a, b);
}
static void uc_init(void *c, void *lo, size_t size, green_ctx_entry e, void *arg) {
    green__uc_init(c, lo, size, e, arg);
}

static impl *cur;
static long counter;
static volatile long sink;
static int other_round;
static uintptr_t other_misalign;

static void *new_stack(void) {
    void *p = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

/* Clobbers every register it can and changes the rounding mode, then hands back. */
static void bouncer(void *arg) {
    (void)arg;
    volatile char probe __attribute__((aligned(16)));
    other_misalign = (uintptr_t)&probe % 16;
    fesetround(FE_DOWNWARD);
    for (;;) {
        double a = counter * 1.5, b = a * 3.25, c = b - 7.0, d = c / 3.0;
        long x = counter * 7, y = x ^ 0x5555, z = y + x * 3;
        sink = (long)(a + b + c + d) + x + y + z;
        counter++;
        other_round = fegetround();
        cur->sw(cur->other_ctx, cur->main_ctx);
    }
}

static void run_impl(impl *im) {
    cur = im;
    counter = 0;
    void *stack = new_stack();
    im->init(im->other_ctx, stack, STACK, bouncer, NULL);
    /* Values live across the switches: the compiler keeps them in callee-saved registers. */
    long i1 = 11, i2 = 22, i3 = 33, i4 = 44, i5 = 55, i6 = 66;
    double f1 = 1.25, f2 = 2.5, f3 = 3.75, f4 = 5.0, f5 = 6.25, f6 = 7.5, f7 = 8.75, f8 = 10.0;
    for (int round = 0; round < 1000; round++) {
        im->sw(im->main_ctx, im->other_ctx);
        i1 += 1, i2 += 2, i3 += 3, i4 += 4, i5 += 5, i6 += 6;
        f1 += 1, f2 += 1, f3 += 1, f4 += 1, f5 += 1, f6 += 1, f7 += 1, f8 += 1;
        ASSERT_EQ(fegetround(), FE_TONEAREST);
        ASSERT_EQ(other_round, FE_DOWNWARD);
    }
    ASSERT_EQ(counter, 1000);
    ASSERT_EQ(i1 + i2 + i3 + i4 + i5 + i6, 231 + 21000);
    ASSERT(f1 + f2 + f3 + f4 + f5 + f6 + f7 + f8 == 45.0 + 8000.0);
    ASSERT_EQ(other_misalign, 0);
    munmap(stack, STACK);
}

#ifdef GREEN_HAVE_ASM
TEST(test_asm_switch_keeps_registers_and_fp_mode) {
    impl im = {asm_sw, asm_init, &asm_main, &asm_other};
    run_impl(&im);
}
#endif

TEST(test_ucontext_switch_keeps_registers_and_fp_mode) {
    impl im = {uc_sw, uc_init, &uc_main, &uc_other};
    run_impl(&im);
}
