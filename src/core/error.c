/*
 * Status codes and the thread-local error message that goes with them.
 * Implements ft_errorf/ft_error_wrap/ft_error_message and the always-on assert.
 */
#include "ftune/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FT_ERRMSG_MAX 1024
static _Thread_local char errmsg[FT_ERRMSG_MAX];

/* Store the n-byte message `m`. One too long keeps its start and its end around " ... ": the
 * reason ("File name too long") comes last, after paths that may fill the buffer on their own. */
static void set_message(const char *m, size_t n) {
    if (n < FT_ERRMSG_MAX) {
        memmove(errmsg, m, n + 1);
        return;
    }
    const size_t head = FT_ERRMSG_MAX / 4, tail = FT_ERRMSG_MAX - head - 6;
    memmove(errmsg, m, head);
    memcpy(errmsg + head, " ... ", 5);
    memmove(errmsg + head + 5, m + n - tail, tail + 1);
}

/* Format into a buffer of its own (the arguments may point into errmsg), then store. */
static void set_messagev(const char *fmt, va_list ap) {
    char buf[FT_ERRMSG_MAX];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) n = 0, buf[0] = 0;
    char *big = (size_t)n >= sizeof buf ? malloc((size_t)n + 1) : NULL;
    if (big) vsnprintf(big, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (big)
        set_message(big, (size_t)n);
    else
        set_message(buf, strlen(buf)); /* short, or no memory: the start only */
    free(big);
}

static void set_messagef(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_messagev(fmt, ap);
    va_end(ap);
}

ft_status ft_errorf(ft_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_messagev(fmt, ap);
    va_end(ap);
    return code;
}

ft_status ft_error_wrap(ft_status code, const char *fmt, ...) {
    char prefix[FT_ERRMSG_MAX], old[FT_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    set_messagef("%s: %s", prefix, old[0] ? old : ft_status_name(code));
    return code;
}

const char *ft_printable(char *out, size_t cap, const char *s) {
    FT_ASSERT(cap >= 8);
    size_t i = 0;
    for (; s[i] && i < cap - 4; i++)
        out[i] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = 0;
    return out;
}

const char *ft_error_message(void) { return errmsg; }

void ft_error_clear(void) { errmsg[0] = 0; }

const char *ft_status_name(ft_status s) {
    switch (s) {
    case FT_OK: return "ok";
    case FT_ERR_IO: return "I/O error";
    case FT_ERR_FORMAT: return "malformed input";
    case FT_ERR_UNSUPPORTED: return "unsupported";
    case FT_ERR_ARG: return "invalid argument";
    case FT_ERR_NOMEM: return "out of memory";
    case FT_ERR_NOT_FOUND: return "not found";
    }
    return "unknown error";
}

void ft_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "ftune: internal error: assertion `%s` failed at %s:%d\n", expr, file, line);
    abort();
}
