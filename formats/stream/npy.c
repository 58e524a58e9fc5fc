/* npy.c — NumPy .npy headers and rows (see npy.h). */
#include "npy.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FMTERR(...) dh_seterr(e, DH_EFORMAT, __VA_ARGS__)

static int short_read(FILE *f, const char *name, const char *what, dh_err *e) {
    if (ferror(f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", name, strerror(errno));
    return dh_seterr(e, DH_ETRUNC, "%s: truncated .npy %s", name, what);
}

/* The dict's values, from its text d (NUL-terminated). */
static int parse_dict(const char *d, const char *name, uint64_t max_row_bytes, npy_hdr *h, dh_err *e) {
    const char *p = strstr(d, "'descr'");
    if (!p || !(p = strchr(p + 7, '\''))) return FMTERR("%s: .npy header without descr", name);
    const char *q = strchr(p + 1, '\'');
    if (!q || q - p - 1 >= (int)sizeof h->descr) return FMTERR("%s: unsupported .npy dtype", name);
    memcpy(h->descr, p + 1, (size_t)(q - p - 1));
    p = strstr(d, "'fortran_order'");
    if (!p) return FMTERR("%s: .npy header without fortran_order", name);
    p = strchr(p, ':');
    while (p && (*p == ':' || isspace((unsigned char)*p))) p++;
    if (!p || strncmp(p, "False", 5))
        return FMTERR("%s: Fortran-ordered arrays are not supported (use np.ascontiguousarray)", name);
    p = strstr(d, "'shape'");
    if (!p || !(p = strchr(p, '('))) return FMTERR("%s: .npy header without shape", name);
    p++;
    for (;;) {
        while (isspace((unsigned char)*p) || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || h->ndim >= NPY_MAX_DIMS) return FMTERR("%s: bad .npy shape", name);
        h->shape[h->ndim++] = v;
        p = end;
    }
    if (h->ndim < 1) return FMTERR("%s: a 0-d array has no rows", name);
    const char *t = h->descr;
    if (!strcmp(t, "<f4") || !strcmp(t, "<i4") || !strcmp(t, "<u4"))
        h->esize = 4;
    else if (!strcmp(t, "<f8") || !strcmp(t, "<i8") || !strcmp(t, "<u8"))
        h->esize = 8;
    else if (!strcmp(t, "|u1") || !strcmp(t, "|i1") || !strcmp(t, "|b1"))
        h->esize = 1;
    else
        return FMTERR("%s: dtype %s not supported (use little-endian f4, f8, i4, i8, u1)", name, t);
    if (h->shape[0] > NPY_MAX_ROWS)
        return dh_seterr(e, DH_ELIMIT, "%s: %lld rows (at most %lld)", name, (long long)h->shape[0],
                         (long long)NPY_MAX_ROWS);
    /* row size, refusing overflow: every factor is checked against the limit */
    uint64_t el = 1, lim = max_row_bytes / h->esize;
    for (int i = 1; i < h->ndim; i++) {
        uint64_t s = (uint64_t)h->shape[i];
        if (s && el > lim / s)
            return dh_seterr(e, DH_ELIMIT, "%s: rows of more than %llu bytes", name, (unsigned long long)max_row_bytes);
        el *= s;
    }
    h->elems = (int64_t)el;
    return 0;
}

int npy_read_header(FILE *f, const char *name, uint64_t max_row_bytes, npy_hdr *h, dh_err *e) {
    memset(h, 0, sizeof *h);
    if (!max_row_bytes) max_row_bytes = NPY_MAX_ROW_BYTES;
    unsigned char m[10];
    if (fread(m, 1, 10, f) != 10 || memcmp(m, "\x93NUMPY", 6)) {
        if (ferror(f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", name, strerror(errno));
        return FMTERR("%s: not a .npy file", name);
    }
    uint32_t hl;
    if (m[6] == 1)
        hl = m[8] | (uint32_t)m[9] << 8;
    else if (m[6] == 2 || m[6] == 3) {
        unsigned char x[2];
        if (fread(x, 1, 2, f) != 2) return short_read(f, name, "header", e);
        hl = m[8] | (uint32_t)m[9] << 8 | (uint32_t)x[0] << 16 | (uint32_t)x[1] << 24;
    } else
        return FMTERR("%s: .npy version %d not supported", name, m[6]);
    if (hl > NPY_MAX_HEADER) return FMTERR("%s: .npy header of %u bytes is implausible", name, hl);
    char *d = malloc((size_t)hl + 1);
    if (!d) return dh_seterr(e, DH_ENOMEM, "out of memory");
    if (fread(d, 1, hl, f) != hl) {
        free(d);
        return short_read(f, name, "header", e);
    }
    d[hl] = 0;
    int rc = parse_dict(d, name, max_row_bytes, h, e);
    free(d);
    return rc;
}

int npy_write_header(FILE *f, const char *descr, int ndim, const int64_t *shape, dh_err *e) {
    char dict[512];
    int o = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim && d < NPY_MAX_DIMS + 1; d++)
        o += snprintf(dict + o, sizeof dict - o, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
    o += snprintf(dict + o, sizeof dict - o, "), }");
    size_t total = 10 + (size_t)o + 1;
    size_t pad = (64 - total % 64) % 64;
    uint16_t hl = (uint16_t)(o + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned char l[2] = { (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8) };
    fwrite(l, 1, 2, f);
    fwrite(dict, 1, (size_t)o, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    if (ferror(f)) return dh_seterr(e, DH_EIO, "write error: %s", strerror(errno));
    return 0;
}

int npy_read_labels(FILE *f, const char *name, int64_t n, int32_t **out, dh_err *e) {
    *out = NULL;
    npy_hdr h;
    int rc = npy_read_header(f, name, 0, &h, e);
    if (rc) return rc;
    if (h.ndim != 1 || h.shape[0] != n)
        return FMTERR("%s: labels must be a 1-D array of %lld rows", name, (long long)n);
    if (strcmp(h.descr, "<i4") && strcmp(h.descr, "<i8") && strcmp(h.descr, "|u1"))
        return FMTERR("%s: labels must be integers (i4, i8 or u1), not %s", name, h.descr);
    int32_t *lab = NULL;
    int64_t cap = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i == cap) { /* grow with the data read, not with the declared count */
            int64_t c = cap ? (cap > n / 2 ? n : cap * 2) : (n < 4096 ? n : 4096);
            int32_t *p = realloc(lab, (size_t)c * sizeof *p);
            if (!p) {
                free(lab);
                return dh_seterr(e, DH_ENOMEM, "out of memory");
            }
            lab = p;
            cap = c;
        }
        int64_t v = 0;
        unsigned char b[8] = { 0 };
        if (fread(b, 1, h.esize, f) != h.esize) {
            free(lab);
            return short_read(f, name, "data", e);
        }
        if (h.esize == 1)
            v = b[0];
        else if (h.esize == 4) {
            int32_t x;
            memcpy(&x, b, 4);
            v = x;
        } else
            memcpy(&v, b, 8);
        if (v < INT32_MIN || v > INT32_MAX) {
            free(lab);
            return FMTERR("%s: label %lld out of range", name, (long long)v);
        }
        lab[i] = (int32_t)v;
    }
    if (!lab && !(lab = malloc(sizeof *lab))) return dh_seterr(e, DH_ENOMEM, "out of memory");
    *out = lab;
    return 0;
}

int npy_read_row(FILE *f, const char *name, const npy_hdr *h, int bits, int64_t i, unsigned char *in,
                 unsigned char *row, dh_err *e) {
    size_t n = (size_t)h->elems * h->esize;
    if (bits && h->esize != 1) return dh_seterr(e, DH_EINVAL, "%s: bits from elements of %zu bytes", name, h->esize);
    if (fread(in, 1, n, f) != n) return short_read(f, name, "data", e);
    if (bits) {
        memset(row, 0, ((size_t)h->elems + 7) / 8);
        for (int64_t k = 0; k < h->elems; k++) {
            if (in[k] > 1) return FMTERR("%s: row %lld: --bits needs 0/1 values", name, (long long)i);
            row[k >> 3] |= (unsigned char)(in[k] << (k & 7));
        }
    } else if (!strcmp(h->descr, "<f8")) {
        for (int64_t k = 0; k < h->elems; k++) {
            double x;
            memcpy(&x, in + 8 * k, 8);
            float y = (float)x;
            memcpy(row + 4 * k, &y, 4);
        }
    } else
        memcpy(row, in, n);
    return 0;
}
