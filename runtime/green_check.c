/*
 * green_check.c - the failure path of GREEN_CHECK and the wall clock (green_check.h).
 */
#include "green_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void green_check_fail(const char *file, int line, const char *cond, const char *msg) {
    fprintf(stderr, "%s:%d: check failed: %s: %s\n", file, line, cond, msg);
    fflush(stderr);
    abort();
}

double green_wallclock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
