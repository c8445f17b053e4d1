/*
 * ctl_out.c - workerctl's output: one-line JSON documents for scripts (--json), aligned text
 * tables and short durations for people.
 *
 * A table is collected first and printed at the end, because the column widths depend on
 * every row. Cells are copied, so callers may pass temporary buffers. The last column is not
 * padded, so lines carry no trailing blanks. Out of memory while collecting drops the cell's
 * text (it prints as "?"): this is output of a short-lived CLI, not data.
 *
 * Runs on the main thread; writes to stdout.
 */
#include "ctl.h"

#include "green_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ctl_print_json(json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text != NULL) {
        puts(text);
        free(text);
    } else {
        ctl_error(CTL_FAIL, "out of memory");
    }
    json_decref(v);
}

static void add_row(ctl_table *t, va_list ap) {
    char **cells = realloc(t->cells, (size_t)(t->nrows + 1) * (size_t)t->ncols * sizeof *cells);
    if (cells == NULL)
        return;
    t->cells = cells;
    for (int i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        cells[t->nrows * t->ncols + i] = strdup(s ? s : "-");
    }
    t->nrows++;
}

void ctl_table_init(ctl_table *t, int ncols, ...) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    va_list ap;
    va_start(ap, ncols);
    add_row(t, ap);
    va_end(ap);
}

void ctl_table_row(ctl_table *t, ...) {
    va_list ap;
    va_start(ap, t);
    add_row(t, ap);
    va_end(ap);
}

void ctl_table_print(ctl_table *t) {
    size_t width[32] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols && i < 32; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t len = s ? strlen(s) : 1;
            if (len > width[i])
                width[i] = len;
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                printf("%-*s  ", (int)width[i < 32 ? i : 31], s ? s : "?");
            else
                printf("%s\n", s ? s : "?");
        }
        for (int i = 0; i < t->ncols; i++)
            free(t->cells[r * t->ncols + i]);
    }
    free(t->cells);
    memset(t, 0, sizeof *t);
}

const char *ctl_age(double t, char *buf, size_t len) {
    if (!(t > 0)) {
        snprintf(buf, len, "-");
        return buf;
    }
    double d = green_wallclock() - t;
    long s = d > 0 ? (long)d : 0;
    if (s < 60)
        snprintf(buf, len, "%lds", s);
    else if (s < 3600)
        snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
    return buf;
}
