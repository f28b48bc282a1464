/* util.c: thread-local error message, checked allocation, clock. */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ERR_LEN 1024
static _Thread_local char err_buf[ERR_LEN];

void err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, ERR_LEN, fmt, ap);
    va_end(ap);
}

void err_prefix(const char *fmt, ...) {
    char old[ERR_LEN], pre[ERR_LEN];
    memcpy(old, err_buf, ERR_LEN);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, ERR_LEN, fmt, ap);
    va_end(ap);
    /* pre + ": " + old, truncated to the buffer */
    size_t np = strnlen(pre, ERR_LEN - 1), no = strnlen(old, ERR_LEN - 1), k = 0;
    memcpy(err_buf, pre, np), k = np;
    if (k + 2 < ERR_LEN) memcpy(err_buf + k, ": ", 2), k += 2;
    if (no > ERR_LEN - 1 - k) no = ERR_LEN - 1 - k;
    memcpy(err_buf + k, old, no);
    err_buf[k + no] = 0;
}

const char *err_get(void) {
    return err_buf[0] ? err_buf : "unknown error";
}
void err_clear(void) {
    err_buf[0] = 0;
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) err_set("out of memory (asked for %zu bytes)", n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) err_set("out of memory (asked for %zu x %zu bytes)", n, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) err_set("out of memory (asked for %zu bytes)", n);
    return q;
}

char *xstrdup(const char *s) {
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
