/* dh_util.c — errors, checked allocation, option-value parsing. */
#include "dh_util.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int dh_seterr(dh_err *e, dh_code code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void dh_err_prefix(dh_err *e, const char *fmt, ...) {
    if (!e) return;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    size_t at = (size_t)n < sizeof e->msg ? (size_t)n : sizeof e->msg - 1;
    size_t room = sizeof e->msg - at;
    if (room > 3) {
        memcpy(e->msg + at, ": ", 2);
        size_t l = strnlen(old, sizeof old - 1);
        if (l > room - 3) l = room - 3;
        memcpy(e->msg + at + 2, old, l);
        e->msg[at + 2 + l] = 0;
    }
}

const char *dh_code_name(dh_code c) {
    switch (c) {
    case DH_OK: return "ok";
    case DH_EOF: return "end of input";
    case DH_EIO: return "I/O error";
    case DH_EFORMAT: return "malformed input";
    case DH_ETRUNC: return "truncated input";
    case DH_ECHECKSUM: return "damaged data";
    case DH_ESCHEMA: return "schema mismatch";
    case DH_ELIMIT: return "limit exceeded";
    case DH_ENOMEM: return "out of memory";
    case DH_EINVAL: return "invalid argument";
    case DH_EDEVICE: return "device error";
    case DH_EUNSUPPORTED: return "unsupported";
    }
    return "unknown error";
}

void *dh_malloc(dh_err *e, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        dh_seterr(e, DH_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    size_t bytes = n * size;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) dh_seterr(e, DH_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *dh_calloc(dh_err *e, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) dh_seterr(e, DH_ENOMEM, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *dh_realloc(dh_err *e, void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        dh_seterr(e, DH_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    size_t bytes = n * size;
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) dh_seterr(e, DH_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return q;
}

char *dh_strdup(dh_err *e, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = dh_malloc(e, n, 1);
    if (p) memcpy(p, s, n);
    return p;
}

double dh_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dh_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int dh_parse_int(const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (dh_parse_i64(s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int dh_parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "123", "4K", "1G", "2MiB" */
int dh_parse_size(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *s == '-') return -1;
    uint64_t mul = 1;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K': mul = 1ull << 10; break;
        case 'm':
        case 'M': mul = 1ull << 20; break;
        case 'g':
        case 'G': mul = 1ull << 30; break;
        case 't':
        case 'T': mul = 1ull << 40; break;
        default: return -1;
        }
        if (end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB")) return -1;
    }
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}
