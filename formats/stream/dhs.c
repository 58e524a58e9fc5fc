/* dhs.c — the deephash stream format: incremental reader and writer.
 * The specification is man/dh-stream.5; the API is dhs.h.
 *
 * Reading is a small pull parser over a buffered FILE: every declared size
 * (string, array, bin, rows) is checked against the schema and the limits
 * before anything is allocated for it. Writing uses msgpack-c's packer. */
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include "dhs_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "deephash streams store little-endian arrays; this host is big-endian (add byte swapping)"
#endif

const dhs_limits dhs_default_limits = {
    .max_header_bytes = 64u << 20,
    .max_chunk_bytes = 1u << 30,
    .max_rows = (uint64_t)1 << 40,
};

/* ---- dtypes and schemas --------------------------------------------------- */
static const char *dtype_names[] = { NULL, "u8", "i32", "i64", "f32", "f64", "bits", "str" };

const char *dhs_dtype_name(dhs_dtype t) { return (t >= DHS_U8 && t <= DHS_STR) ? dtype_names[t] : "?"; }
int dhs_dtype_parse(const char *s, dhs_dtype *t) {
    for (int i = DHS_U8; i <= DHS_STR; i++)
        if (!strcmp(s, dtype_names[i])) {
            *t = (dhs_dtype)i;
            return 0;
        }
    return -1;
}
size_t dhs_dtype_size(dhs_dtype t) {
    switch (t) {
    case DHS_U8: return 1;
    case DHS_I32:
    case DHS_F32: return 4;
    case DHS_I64:
    case DHS_F64: return 8;
    default: return 0;
    }
}

void dhs_schema_init(dhs_schema *s, const char *kind) {
    memset(s, 0, sizeof *s);
    snprintf(s->kind, sizeof s->kind, "%s", kind ? kind : "");
}

static int valid_name(const char *n) {
    size_t l = strlen(n);
    if (l == 0 || l >= DHS_NAME_MAX) return 0;
    for (; *n; n++)
        if ((unsigned char)*n < 0x21 || *n == 0x7f) return 0;
    return 1;
}

/* Fill the derived members of f; 0 ok, -1 invalid (message in e). */
static int field_derive(dhs_field *f, uint64_t max_row_bytes, dh_err *e) {
    if (f->ndim < 0 || f->ndim > DHS_MAX_DIMS)
        return dh_seterr(e, DH_EFORMAT, "field %s: %d dimensions (at most %d)", f->name, f->ndim, DHS_MAX_DIMS), -1;
    f->variable = 0;
    if (f->dtype == DHS_STR) {
        if (f->ndim != 0) return dh_seterr(e, DH_EFORMAT, "field %s: a str field has no shape", f->name), -1;
        f->variable = 1;
    } else if (f->ndim >= 1 && f->shape[0] == -1) {
        if (f->ndim != 1 || f->dtype == DHS_BITS)
            return dh_seterr(e, DH_EFORMAT, "field %s: a variable-length field must be 1-D [-1] and not bits", f->name),
                   -1;
        f->variable = 1;
    }
    if (f->dtype == DHS_BITS && f->ndim != 1)
        return dh_seterr(e, DH_EFORMAT, "field %s: a bits field has shape [K]", f->name), -1;
    if (f->variable) {
        f->row_elems = 0;
        f->row_bytes = 0;
        return 0;
    }
    uint64_t el = 1;
    for (int d = 0; d < f->ndim; d++) {
        if (f->shape[d] < 1 || f->shape[d] > ((int64_t)1 << 31))
            return dh_seterr(e, DH_EFORMAT, "field %s: dimension %lld out of range", f->name, (long long)f->shape[d]),
                   -1;
        el *= (uint64_t)f->shape[d];
        if (el > max_row_bytes * 8) return dh_seterr(e, DH_ELIMIT, "field %s: row size beyond the limit", f->name), -1;
    }
    uint64_t bytes = f->dtype == DHS_BITS ? (el + 7) / 8 : el * dhs_dtype_size(f->dtype);
    if (bytes > max_row_bytes)
        return dh_seterr(e, DH_ELIMIT, "field %s: row of %llu bytes beyond the chunk limit", f->name,
                         (unsigned long long)bytes),
               -1;
    f->row_elems = (int64_t)el;
    f->row_bytes = (int64_t)bytes;
    return 0;
}

int dhs_schema_add(dhs_schema *s, const char *name, dhs_dtype t, int ndim, const int64_t *shape, dh_err *e) {
    if (!valid_name(name)) return dh_seterr(e, DH_EINVAL, "invalid field name '%s'", name), -1;
    if (t < DHS_U8 || t > DHS_STR) return dh_seterr(e, DH_EINVAL, "field %s: invalid dtype", name), -1;
    if (dhs_field_index(s, name) >= 0) return dh_seterr(e, DH_EINVAL, "duplicate field %s", name), -1;
    if (s->nfields >= DHS_MAX_FIELDS) return dh_seterr(e, DH_EINVAL, "too many fields"), -1;
    dhs_field f;
    memset(&f, 0, sizeof f);
    snprintf(f.name, sizeof f.name, "%s", name);
    f.dtype = t;
    f.ndim = ndim;
    for (int d = 0; d < ndim && d < DHS_MAX_DIMS; d++) f.shape[d] = shape[d];
    if (field_derive(&f, dhs_default_limits.max_chunk_bytes, e)) {
        if (e) e->code = DH_EINVAL;
        return -1;
    }
    s->fields[s->nfields] = f;
    return s->nfields++;
}

int dhs_field_index(const dhs_schema *s, const char *name) {
    for (int i = 0; i < s->nfields; i++)
        if (!strcmp(s->fields[i].name, name)) return i;
    return -1;
}

int dhs_schema_equal(const dhs_schema *a, const dhs_schema *b) {
    if (strcmp(a->kind, b->kind) || a->nfields != b->nfields) return 0;
    for (int i = 0; i < a->nfields; i++) {
        const dhs_field *x = &a->fields[i], *y = &b->fields[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim) return 0;
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d]) return 0;
    }
    return 1;
}

static void field_describe(const dhs_field *f, char *buf, size_t n) {
    int o = snprintf(buf, n, "%s:%s", f->name, dhs_dtype_name(f->dtype));
    if (f->ndim && o >= 0 && (size_t)o < n) {
        for (int d = 0; d < f->ndim && (size_t)o < n; d++)
            o += snprintf(buf + o, n - o, "%s%lld", d ? "," : "[", (long long)f->shape[d]);
        if ((size_t)o < n) snprintf(buf + o, n - o, "]");
    }
}

void dhs_schema_describe(const dhs_schema *s, char *buf, size_t n) {
    size_t o = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < s->nfields && o + 1 < n; i++) {
        char fb[160];
        field_describe(&s->fields[i], fb, sizeof fb);
        o += snprintf(buf + o, n - o, "%s%s", i ? " " : "", fb);
    }
}

int dhs_require_field(const dhs_schema *s, const char *name, dhs_dtype t, int ndim, dh_err *e) {
    int i = dhs_field_index(s, name);
    if (i < 0) return dh_seterr(e, DH_ESCHEMA, "%s stream has no field '%s'", s->kind, name), -1;
    const dhs_field *f = &s->fields[i];
    if (f->dtype != t)
        return dh_seterr(e, DH_ESCHEMA, "field '%s' is %s, expected %s", name, dhs_dtype_name(f->dtype),
                         dhs_dtype_name(t)),
               -1;
    if (ndim >= 0 && f->ndim != ndim)
        return dh_seterr(e, DH_ESCHEMA, "field '%s' has %d dimensions, expected %d", name, f->ndim, ndim), -1;
    return i;
}

/* Pipes carry whole chunks of megabytes: a 1 MiB pipe buffer (instead of
 * 64 KiB) cuts the context switches between the two ends. Best effort. */
static void widen_pipe(FILE *f) {
    struct stat st;
    int fd = fileno(f);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

/* ---- reader: buffered input ------------------------------------------------ */
#ifndef DHS_RBUF
#define DHS_RBUF (256u << 10) /* the fuzz build makes it small (-DDHS_RBUF=4096): refills in small inputs */
#endif
#define RBUF DHS_RBUF

struct dhs_reader {
    FILE *f;
    int own;
    char *name;
    dhs_limits lim;
    unsigned char *buf;
    size_t pos, len;
    int eof;
    uint64_t offset; /* bytes consumed so far */
    int track;       /* header bytes: crc them */
    uint32_t tcrc;
    uint64_t tbytes;
    dhs_schema schema;
    dhs_meta *meta;
    int nstreams, done;
    int64_t rows_total, rows_stream, chunks_stream;
    uint32_t crc_stream, header_crc;
    dhs_chunk chunk;
    unsigned char *cbuf[DHS_MAX_FIELDS];
    size_t ccap[DHS_MAX_FIELDS];
    size_t ocap[DHS_MAX_FIELDS];
};

static int fill(dhs_reader *r, size_t need) {
    if (r->len - r->pos >= need) return 1;
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    while (r->len < need && !r->eof) {
        size_t got = fread(r->buf + r->len, 1, RBUF - r->len, r->f);
        r->len += got;
        if (got == 0) r->eof = 1;
    }
    return r->len - r->pos >= need;
}

static void consumed(dhs_reader *r, const unsigned char *p, size_t n) {
    if (r->track) {
        r->tcrc = (uint32_t)crc32_z(r->tcrc, p, n);
        r->tbytes += n;
    }
    r->offset += n;
}

static int trunc_err(dhs_reader *r, dh_err *e, const char *where) {
    if (ferror(r->f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", r->name, strerror(errno));
    return dh_seterr(e, DH_ETRUNC, "%s: truncated %s (at byte %llu)", r->name, where, (unsigned long long)r->offset);
}

/* Get n (small) bytes at *p. */
static int take(dhs_reader *r, size_t n, const unsigned char **p, dh_err *e, const char *where) {
    if (!fill(r, n)) return trunc_err(r, e, where);
    *p = r->buf + r->pos;
    r->pos += n;
    consumed(r, *p, n);
    if (r->track && r->tbytes > r->lim.max_header_bytes)
        return dh_seterr(e, DH_ELIMIT, "%s: header larger than %llu bytes", r->name,
                         (unsigned long long)r->lim.max_header_bytes);
    return 0;
}

/* Copy n bytes (any size) into dst. */
static int read_into(dhs_reader *r, void *dst, size_t n, dh_err *e, const char *where) {
    unsigned char *d = dst;
    size_t have = r->len - r->pos;
    size_t k = have < n ? have : n;
    memcpy(d, r->buf + r->pos, k);
    consumed(r, r->buf + r->pos, k);
    r->pos += k;
    d += k;
    n -= k;
    if (n == 0) return 0;
    if (n >= RBUF / 2) { /* large: read directly */
        size_t got = fread(d, 1, n, r->f);
        consumed(r, d, got);
        if (got < n) {
            r->eof = 1;
            return trunc_err(r, e, where);
        }
        return 0;
    }
    if (!fill(r, n)) return trunc_err(r, e, where);
    memcpy(d, r->buf + r->pos, n);
    consumed(r, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* ---- reader: msgpack tokens ------------------------------------------------ */
#define FMTERR(...) dh_seterr(e, DH_EFORMAT, __VA_ARGS__)

static int rd_byte(dhs_reader *r, unsigned char *c, dh_err *e, const char *where) {
    const unsigned char *p = NULL;
    int rc = take(r, 1, &p, e, where);
    *c = rc ? 0 : *p;
    return rc;
}

static int rd_len(dhs_reader *r, int nbytes, uint32_t *n, dh_err *e, const char *where) {
    const unsigned char *p = NULL;
    int rc = take(r, nbytes, &p, e, where);
    *n = rc ? 0 : (uint32_t)be(p, nbytes);
    return rc;
}

static int rd_map(dhs_reader *r, uint32_t *n, dh_err *e, const char *where) {
    unsigned char c;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    if ((c & 0xf0) == 0x80) {
        *n = c & 0x0f;
        return 0;
    }
    if (c == 0xde) return rd_len(r, 2, n, e, where);
    if (c == 0xdf) return rd_len(r, 4, n, e, where);
    return FMTERR("%s: %s: expected a map at byte %llu", r->name, where, (unsigned long long)r->offset - 1);
}

static int rd_array(dhs_reader *r, uint32_t *n, dh_err *e, const char *where) {
    unsigned char c;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    if ((c & 0xf0) == 0x90) {
        *n = c & 0x0f;
        return 0;
    }
    if (c == 0xdc) return rd_len(r, 2, n, e, where);
    if (c == 0xdd) return rd_len(r, 4, n, e, where);
    return FMTERR("%s: %s: expected an array at byte %llu", r->name, where, (unsigned long long)r->offset - 1);
}

/* A string into dst (capacity cap, NUL-terminated); longer strings are an error. */
static int rd_str(dhs_reader *r, char *dst, size_t cap, dh_err *e, const char *where) {
    unsigned char c;
    uint32_t n;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    if ((c & 0xe0) == 0xa0)
        n = c & 0x1f;
    else if (c == 0xd9 || c == 0xda || c == 0xdb) {
        if ((rc = rd_len(r, c == 0xd9 ? 1 : c == 0xda ? 2 : 4, &n, e, where))) return rc;
    } else
        return FMTERR("%s: %s: expected a string at byte %llu", r->name, where, (unsigned long long)r->offset - 1);
    if (n >= cap) return FMTERR("%s: %s: string of %u bytes too long", r->name, where, n);
    if ((rc = read_into(r, dst, n, e, where))) return rc;
    dst[n] = 0;
    return 0;
}

static int rd_uint(dhs_reader *r, uint64_t *v, dh_err *e, const char *where) {
    unsigned char c;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    if (c <= 0x7f) {
        *v = c;
        return 0;
    }
    int n = 0, sgn = 0;
    switch (c) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0:
        n = 1;
        sgn = 1;
        break;
    case 0xd1:
        n = 2;
        sgn = 1;
        break;
    case 0xd2:
        n = 4;
        sgn = 1;
        break;
    case 0xd3:
        n = 8;
        sgn = 1;
        break;
    default:
        return FMTERR("%s: %s: expected an unsigned integer at byte %llu", r->name, where,
                      (unsigned long long)r->offset - 1);
    }
    const unsigned char *p = NULL;
    if ((rc = take(r, n, &p, e, where))) return rc;
    uint64_t x = be(p, n);
    if (sgn && (x >> (8 * n - 1)) & 1) return FMTERR("%s: %s: negative value", r->name, where);
    *v = x;
    return 0;
}

/* A generic value (header metadata), within the header byte budget. */
static int rd_value(dhs_reader *r, dhs_mval *v, int depth, dh_err *e);

static uint64_t header_room(dhs_reader *r) {
    return r->lim.max_header_bytes > r->tbytes ? r->lim.max_header_bytes - r->tbytes : 0;
}

static int rd_value(dhs_reader *r, dhs_mval *v, int depth, dh_err *e) {
    const char *where = "header";
    memset(v, 0, sizeof *v);
    if (depth > 32) return FMTERR("%s: header nested too deeply", r->name);
    unsigned char c;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    uint32_t n = 0;
    const unsigned char *p = NULL;
    if (c <= 0x7f) {
        v->t = DHS_M_INT;
        v->i = c;
        return 0;
    }
    if (c >= 0xe0) {
        v->t = DHS_M_INT;
        v->i = (int8_t)c;
        return 0;
    }
    if ((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf) {
        if (c == 0xde)
            rc = rd_len(r, 2, &n, e, where);
        else if (c == 0xdf)
            rc = rd_len(r, 4, &n, e, where);
        else
            n = c & 0x0f;
        if (rc) return rc;
        if ((uint64_t)n * 2 > header_room(r)) return FMTERR("%s: header map of %u entries cannot fit", r->name, n);
        v->t = DHS_M_MAP;
        v->m = dhs_meta_new();
        if (!v->m) return dh_seterr(e, DH_ENOMEM, "out of memory");
        for (uint32_t i = 0; i < n; i++) {
            char key[256];
            if ((rc = rd_str(r, key, sizeof key, e, "metadata key"))) return rc;
            dhs_mval x;
            if ((rc = rd_value(r, &x, depth + 1, e))) {
                dhs_mval_free(&x);
                return rc;
            }
            /* appended, duplicates found below by sorting: a check per key
             * was quadratic (200,000 keys, 1.7 MB: 7 minutes) */
            if (dhs_meta_append(v->m, key, &x)) {
                dhs_mval_free(&x);
                return dh_seterr(e, DH_ENOMEM, "out of memory");
            }
        }
        const char *dup;
        if ((rc = dhs_meta_duplicate(v->m, &dup)) < 0) return dh_seterr(e, DH_ENOMEM, "out of memory");
        if (rc) return FMTERR("%s: duplicate metadata key '%s'", r->name, dup);
        return 0;
    }
    if ((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd) {
        if (c == 0xdc)
            rc = rd_len(r, 2, &n, e, where);
        else if (c == 0xdd)
            rc = rd_len(r, 4, &n, e, where);
        else
            n = c & 0x0f;
        if (rc) return rc;
        if (n > header_room(r)) return FMTERR("%s: header array of %u elements cannot fit", r->name, n);
        v->t = DHS_M_ARRAY;
        /* grown as the elements arrive: a declared length costs nothing its
         * bytes have not paid for (nested, it multiplied: 22 bytes asked
         * for 10 GB) */
        uint32_t cap = n < 16 ? n : 16;
        v->a = calloc(cap ? cap : 1, sizeof *v->a);
        if (!v->a) return dh_seterr(e, DH_ENOMEM, "out of memory");
        for (uint32_t i = 0; i < n; i++) {
            if (i == cap) {
                cap = cap > n / 2 ? n : cap * 2;
                dhs_mval *a = realloc(v->a, (size_t)cap * sizeof *a);
                if (!a) return dh_seterr(e, DH_ENOMEM, "out of memory");
                v->a = a;
            }
            v->n = (int)i + 1;
            if ((rc = rd_value(r, &v->a[i], depth + 1, e))) return rc;
        }
        v->n = (int)n;
        return 0;
    }
    if ((c & 0xe0) == 0xa0 || (c >= 0xd9 && c <= 0xdb) || (c >= 0xc4 && c <= 0xc6)) {
        if ((c & 0xe0) == 0xa0)
            n = c & 0x1f;
        else if (c == 0xd9 || c == 0xc4)
            rc = rd_len(r, 1, &n, e, where);
        else if (c == 0xda || c == 0xc5)
            rc = rd_len(r, 2, &n, e, where);
        else
            rc = rd_len(r, 4, &n, e, where);
        if (rc) return rc;
        if (n > header_room(r)) return FMTERR("%s: header string of %u bytes cannot fit", r->name, n);
        v->t = DHS_M_STR;
        v->s = malloc((size_t)n + 1);
        if (!v->s) return dh_seterr(e, DH_ENOMEM, "out of memory");
        v->len = n;
        v->s[0] = 0;
        if ((rc = read_into(r, v->s, n, e, where))) return rc;
        v->s[n] = 0;
        return 0;
    }
    switch (c) {
    case 0xc0: v->t = DHS_M_NIL; return 0;
    case 0xc2:
    case 0xc3:
        v->t = DHS_M_BOOL;
        v->b = c == 0xc3;
        return 0;
    case 0xca:
    case 0xcb: {
        int k = c == 0xca ? 4 : 8;
        if ((rc = take(r, k, &p, e, where))) return rc;
        uint64_t x = be(p, k);
        v->t = DHS_M_FLOAT;
        if (k == 4) {
            uint32_t y = (uint32_t)x;
            float f;
            memcpy(&f, &y, 4);
            v->f = f;
        } else
            memcpy(&v->f, &x, 8);
        return 0;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int k = 1 << ((c & 3));
        if ((rc = take(r, k, &p, e, where))) return rc;
        uint64_t x = be(p, k);
        v->t = DHS_M_INT;
        if (c >= 0xd0) { /* signed: sign-extend */
            int sh = 64 - 8 * k;
            v->i = (int64_t)(x << sh) >> sh;
        } else if (x > (uint64_t)INT64_MAX) {
            v->t = DHS_M_FLOAT;
            v->f = (double)x;
        } else
            v->i = (int64_t)x;
        return 0;
    }
    }
    return FMTERR("%s: unsupported msgpack type 0x%02x in header", r->name, c);
}

/* ---- reader: header, chunks, trailer -------------------------------------- */
static int parse_field(dhs_reader *r, const dhs_mval *fv, dhs_field *f, dh_err *e) {
    memset(f, 0, sizeof *f);
    if (fv->t != DHS_M_MAP) return FMTERR("%s: header: a field is not a map", r->name);
    const dhs_meta *m = fv->m;
    const char *name = dhs_meta_str(m, "name"), *dt = dhs_meta_str(m, "dtype");
    if (!name || !valid_name(name)) return FMTERR("%s: header: field without a valid name", r->name);
    snprintf(f->name, sizeof f->name, "%s", name);
    if (!dt || dhs_dtype_parse(dt, &f->dtype))
        return FMTERR("%s: header: field %s: unknown dtype '%s'", r->name, name, dt ? dt : "");
    int nd = dhs_meta_len(m, "shape");
    if (nd < 0) return FMTERR("%s: header: field %s: no shape", r->name, name);
    if (nd > DHS_MAX_DIMS)
        return FMTERR("%s: header: field %s: %d dimensions (at most %d)", r->name, name, nd, DHS_MAX_DIMS);
    f->ndim = nd;
    for (int d = 0; d < nd; d++)
        if (dhs_meta_int_at(m, "shape", d, &f->shape[d]))
            return FMTERR("%s: header: field %s: bad shape", r->name, name);
    for (int i = 0; i < dhs_meta_count(m); i++) {
        const char *k = dhs_meta_key(m, i);
        if (strcmp(k, "name") && strcmp(k, "dtype") && strcmp(k, "shape"))
            return FMTERR("%s: header: field %s: unknown key '%s'", r->name, name, k);
    }
    if (field_derive(f, r->lim.max_chunk_bytes, e)) {
        dh_err_prefix(e, "%s: header", r->name);
        return e->code;
    }
    return 0;
}

/* Read a header into *s and *meta (meta may be NULL to discard). */
static int parse_header(dhs_reader *r, dhs_schema *s, dhs_meta **meta, dh_err *e) {
    r->track = 1;
    r->tcrc = 0;
    r->tbytes = 0;
    dhs_mval top;
    unsigned char c;
    int rc;
    if (!fill(r, 1)) {
        r->track = 0;
        if (ferror(r->f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", r->name, strerror(errno));
        return FMTERR("%s: empty input: not a deephash stream", r->name);
    }
    c = r->buf[r->pos];
    if (!((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf)) {
        r->track = 0;
        return FMTERR("%s: not a deephash stream (byte %llu is not a msgpack map)", r->name,
                      (unsigned long long)r->offset);
    }
    rc = rd_value(r, &top, 0, e);
    r->track = 0;
    r->header_crc = r->tcrc;
    if (rc) {
        dhs_mval_free(&top);
        return rc;
    }
    const dhs_meta *h = top.m;
    const char *fmt = dhs_meta_str(h, "format"), *kind = dhs_meta_str(h, "kind");
    int64_t ver;
    if (!fmt || strcmp(fmt, DHS_FORMAT_NAME)) {
        rc = FMTERR("%s: not a deephash stream (no \"format\": \"%s\")", r->name, DHS_FORMAT_NAME);
        goto out;
    }
    if (dhs_meta_int(h, "version", &ver)) {
        rc = FMTERR("%s: header without a version", r->name);
        goto out;
    }
    if (ver != DHS_VERSION) {
        rc = FMTERR("%s: stream version %lld is not supported (this reader reads version %d)", r->name, (long long)ver,
                    DHS_VERSION);
        goto out;
    }
    if (!kind || !valid_name(kind)) {
        rc = FMTERR("%s: header without a valid kind", r->name);
        goto out;
    }
    for (int i = 0; i < dhs_meta_count(h); i++) {
        const char *k = dhs_meta_key(h, i);
        if (strcmp(k, "format") && strcmp(k, "version") && strcmp(k, "kind") && strcmp(k, "fields") &&
            strcmp(k, "meta")) {
            rc = FMTERR("%s: header: unknown key '%s'", r->name, k);
            goto out;
        }
    }
    dhs_schema_init(s, kind);
    int nf = dhs_meta_len(h, "fields");
    if (nf < 0) {
        rc = FMTERR("%s: header without fields", r->name);
        goto out;
    }
    if (nf > DHS_MAX_FIELDS) {
        rc = FMTERR("%s: %d fields (at most %d)", r->name, nf, DHS_MAX_FIELDS);
        goto out;
    }
    for (int i = 0; i < h->n; i++) {
        if (strcmp(h->keys[i], "fields")) continue;
        for (int j = 0; j < nf; j++) {
            if ((rc = parse_field(r, &h->vals[i].a[j], &s->fields[j], e))) goto out;
            for (int k = 0; k < j; k++)
                if (!strcmp(s->fields[k].name, s->fields[j].name)) {
                    rc = FMTERR("%s: duplicate field %s", r->name, s->fields[j].name);
                    goto out;
                }
        }
    }
    s->nfields = nf;
    if (dhs_meta_has(h, "meta") && !dhs_meta_map(h, "meta")) {
        rc = FMTERR("%s: header: meta is not a map", r->name);
        goto out;
    }
    if (meta) {
        const dhs_meta *m = dhs_meta_map(h, "meta");
        *meta = m ? dhs_meta_copy(m) : dhs_meta_new();
        if (!*meta) {
            rc = dh_seterr(e, DH_ENOMEM, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    dhs_mval_free(&top);
    return rc;
}

static void start_stream(dhs_reader *r) {
    r->nstreams++;
    r->rows_stream = 0;
    r->chunks_stream = 0;
    r->crc_stream = 0;
}

dhs_reader *dhs_open(FILE *f, const char *name, const dhs_limits *lim, dh_err *e) {
    dh_err tmp;
    if (!e) e = &tmp;
    dhs_reader *r = calloc(1, sizeof *r);
    if (!r) {
        dh_seterr(e, DH_ENOMEM, "out of memory");
        return NULL;
    }
    r->f = f;
    r->lim = lim ? *lim : dhs_default_limits;
    r->name = strdup(name ? name : "<stream>");
    r->buf = malloc(RBUF);
    if (!r->name || !r->buf) {
        dh_seterr(e, DH_ENOMEM, "out of memory");
        dhs_close(r);
        return NULL;
    }
    widen_pipe(f);
    if (parse_header(r, &r->schema, &r->meta, e)) {
        dhs_close(r);
        return NULL;
    }
    start_stream(r);
    return r;
}

dhs_reader *dhs_open_path(const char *path, const dhs_limits *lim, dh_err *e) {
    if (!path || !strcmp(path, "-")) return dhs_open(stdin, "<stdin>", lim, e);
    FILE *f = fopen(path, "rb");
    if (!f) {
        dh_seterr(e, DH_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    dhs_reader *r = dhs_open(f, path, lim, e);
    if (!r) {
        fclose(f);
        return NULL;
    }
    r->own = 1;
    return r;
}

const dhs_schema *dhs_reader_schema(const dhs_reader *r) { return &r->schema; }
const dhs_meta *dhs_reader_meta(const dhs_reader *r) { return r->meta; }
const char *dhs_reader_name(const dhs_reader *r) { return r->name; }
int64_t dhs_reader_rows(const dhs_reader *r) { return r->rows_total; }
int dhs_reader_streams(const dhs_reader *r) { return r->nstreams; }

void dhs_close(dhs_reader *r) {
    if (!r) return;
    if (r->own && r->f) fclose(r->f);
    for (int i = 0; i < DHS_MAX_FIELDS; i++) {
        free(r->cbuf[i]);
        free(r->chunk.off[i]);
    }
    dhs_meta_free(r->meta);
    free(r->buf);
    free(r->name);
    free(r);
}

static int grow(unsigned char **p, size_t *cap, size_t need, dh_err *e) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c = c > SIZE_MAX / 2 ? need : c * 2;
    unsigned char *q = realloc(*p, c);
    if (!q) return dh_seterr(e, DH_ENOMEM, "out of memory allocating %zu bytes", c);
    *p = q;
    *cap = c;
    return 0;
}

static int rd_bin_len(dhs_reader *r, uint32_t *n, dh_err *e, const char *where) {
    unsigned char c;
    int rc = rd_byte(r, &c, e, where);
    if (rc) return rc;
    if (c == 0xc4) return rd_len(r, 1, n, e, where);
    if (c == 0xc5) return rd_len(r, 2, n, e, where);
    if (c == 0xc6) return rd_len(r, 4, n, e, where);
    return FMTERR("%s: %s: expected a bin column at byte %llu", r->name, where, (unsigned long long)r->offset - 1);
}

static int read_chunk_body(dhs_reader *r, uint32_t nkeys, dh_err *e) {
    char where[96];
    snprintf(where, sizeof where, "chunk %lld", (long long)r->chunks_stream + 1);
    uint64_t rows;
    uint32_t ncols = 0;
    char key[16];
    int rc;
    if (nkeys != 3) return FMTERR("%s: %s: expected 3 keys (rows, cols, crc), got %u", r->name, where, nkeys);
    if ((rc = rd_uint(r, &rows, e, where))) return rc;
    if (rows == 0 || rows > r->lim.max_rows || (uint64_t)r->rows_total + rows > r->lim.max_rows)
        return dh_seterr(e, rows ? DH_ELIMIT : DH_EFORMAT, "%s: %s: %llu rows %s", r->name, where,
                         (unsigned long long)rows, rows ? "beyond the row limit" : "(empty chunk)");
    if ((rc = rd_str(r, key, sizeof key, e, where))) return rc;
    if (strcmp(key, "cols")) return FMTERR("%s: %s: expected key 'cols', got '%s'", r->name, where, key);
    if ((rc = rd_array(r, &ncols, e, where))) return rc;
    if ((int)ncols != r->schema.nfields)
        return FMTERR("%s: %s: %u columns for %d fields", r->name, where, ncols, r->schema.nfields);
    uint32_t crc = 0;
    uint64_t total = 0;
    dhs_chunk *ch = &r->chunk;
    for (int i = 0; i < r->schema.nfields; i++) {
        const dhs_field *f = &r->schema.fields[i];
        uint32_t L = 0;
        if ((rc = rd_bin_len(r, &L, e, where))) return rc;
        total += L;
        if (total > r->lim.max_chunk_bytes)
            return dh_seterr(e, DH_ELIMIT, "%s: %s: more than %llu bytes of column data", r->name, where,
                             (unsigned long long)r->lim.max_chunk_bytes);
        if (!f->variable) {
            if ((uint64_t)f->row_bytes * rows != L)
                return FMTERR("%s: %s: field %s: %u bytes for %llu rows of %lld bytes", r->name, where, f->name, L,
                              (unsigned long long)rows, (long long)f->row_bytes);
            if ((rc = grow(&r->cbuf[i], &r->ccap[i], L, e))) return rc;
            if ((rc = read_into(r, r->cbuf[i], L, e, where))) return rc;
            crc = (uint32_t)crc32_z(crc, r->cbuf[i], L);
            ch->col[i] = r->cbuf[i];
            ch->off[i] = NULL;
        } else {
            size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
            if ((uint64_t)L < 4 * rows)
                return FMTERR("%s: %s: field %s: %u bytes cannot hold %llu lengths", r->name, where, f->name, L,
                              (unsigned long long)rows);
            /* place the bin so the row data after the 4*rows length table is
             * 8-byte aligned (i64/f64 rows are read in place) */
            size_t pad = (size_t)((4 * rows) % 8);
            if ((rc = grow(&r->cbuf[i], &r->ccap[i], L + pad, e))) return rc;
            unsigned char *bin = r->cbuf[i] + pad;
            if ((rc = read_into(r, bin, L, e, where))) return rc;
            crc = (uint32_t)crc32_z(crc, bin, L);
            if (r->ocap[i] < rows + 1) {
                uint64_t *o = realloc(ch->off[i], (rows + 1) * sizeof *o);
                if (!o) return dh_seterr(e, DH_ENOMEM, "out of memory");
                ch->off[i] = o;
                r->ocap[i] = rows + 1;
            }
            uint64_t *off = ch->off[i];
            off[0] = 0;
            const unsigned char *lp = bin;
            for (uint64_t k = 0; k < rows; k++) {
                uint32_t l;
                memcpy(&l, lp + 4 * k, 4);
                off[k + 1] = off[k] + l;
            }
            if (off[rows] * es != L - 4 * rows)
                return FMTERR("%s: %s: field %s: lengths add up to %llu elements, column holds %llu bytes", r->name,
                              where, f->name, (unsigned long long)off[rows], (unsigned long long)(L - 4 * rows));
            ch->col[i] = bin + 4 * rows;
        }
    }
    uint64_t want;
    if ((rc = rd_str(r, key, sizeof key, e, where))) return rc;
    if (strcmp(key, "crc")) return FMTERR("%s: %s: expected key 'crc', got '%s'", r->name, where, key);
    if ((rc = rd_uint(r, &want, e, where))) return rc;
    if (want != crc)
        return dh_seterr(e, DH_ECHECKSUM,
                         "%s: %s: checksum mismatch (stored %08llx, computed %08x): the data is damaged", r->name,
                         where, (unsigned long long)want, crc);
    ch->nrows = (int64_t)rows;
    r->crc_stream = r->chunks_stream ? (uint32_t)crc32_combine(r->crc_stream, crc, (z_off_t)total) : crc;
    r->chunks_stream++;
    r->rows_stream += (int64_t)rows;
    r->rows_total += (int64_t)rows;
    return 0;
}

static int read_trailer_body(dhs_reader *r, uint32_t nkeys, dh_err *e) {
    const char *where = "trailer";
    int have_end = 1, have_rows = 0, have_chunks = 0, have_crc = 0, have_h = 0;
    unsigned char c;
    int rc;
    if ((rc = rd_byte(r, &c, e, where))) return rc;
    if (c != 0xc3) return FMTERR("%s: trailer: \"end\" is not true", r->name);
    for (uint32_t i = 1; i < nkeys; i++) {
        char key[16];
        uint64_t v;
        if ((rc = rd_str(r, key, sizeof key, e, where))) return rc;
        if ((rc = rd_uint(r, &v, e, where))) return rc;
        if (!strcmp(key, "rows") && !have_rows) {
            have_rows = 1;
            if (v != (uint64_t)r->rows_stream)
                return dh_seterr(e, DH_ECHECKSUM, "%s: trailer says %llu rows, stream holds %lld: the data is damaged",
                                 r->name, (unsigned long long)v, (long long)r->rows_stream);
        } else if (!strcmp(key, "chunks") && !have_chunks) {
            have_chunks = 1;
            if (v != (uint64_t)r->chunks_stream)
                return dh_seterr(e, DH_ECHECKSUM,
                                 "%s: trailer says %llu chunks, stream holds %lld: the data is damaged", r->name,
                                 (unsigned long long)v, (long long)r->chunks_stream);
        } else if (!strcmp(key, "crc") && !have_crc) {
            have_crc = 1;
            if (v != r->crc_stream)
                return dh_seterr(e, DH_ECHECKSUM, "%s: trailer checksum mismatch: the data is damaged", r->name);
        } else if (!strcmp(key, "header_crc") && !have_h) {
            have_h = 1;
            if (v != r->header_crc)
                return dh_seterr(e, DH_ECHECKSUM, "%s: header checksum mismatch: the header is damaged", r->name);
        } else
            return FMTERR("%s: trailer: unexpected key '%s'", r->name, key);
    }
    if (!(have_end && have_rows && have_chunks && have_crc && have_h)) return FMTERR("%s: trailer incomplete", r->name);
    return 0;
}

int dhs_read_chunk(dhs_reader *r, dhs_chunk **out, dh_err *e) {
    dh_err tmp;
    if (!e) e = &tmp;
    *out = NULL;
    if (r->done) return DH_EOF;
    for (;;) {
        uint32_t n = 0;
        char key[16];
        int rc;
        if (!fill(r, 1)) {
            if (ferror(r->f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", r->name, strerror(errno));
            return dh_seterr(e, DH_ETRUNC,
                             "%s: stream ends without a trailer after %lld rows (incomplete or cut short)", r->name,
                             (long long)r->rows_stream);
        }
        if ((rc = rd_map(r, &n, e, "chunk or trailer"))) return rc;
        if (n == 0) return FMTERR("%s: empty map where a chunk or trailer belongs", r->name);
        if ((rc = rd_str(r, key, sizeof key, e, "chunk or trailer"))) return rc;
        if (!strcmp(key, "rows")) {
            if ((rc = read_chunk_body(r, n, e))) return rc;
            *out = &r->chunk;
            return DH_OK;
        }
        if (strcmp(key, "end")) return FMTERR("%s: unexpected key '%s' where a chunk or trailer belongs", r->name, key);
        if (n != 5) return FMTERR("%s: trailer with %u keys (expected 5)", r->name, n);
        if ((rc = read_trailer_body(r, n, e))) return rc;
        /* end of one stream: another may follow (concatenation) */
        if (!fill(r, 1)) {
            if (ferror(r->f)) return dh_seterr(e, DH_EIO, "%s: read error: %s", r->name, strerror(errno));
            r->done = 1;
            return DH_EOF;
        }
        dhs_schema s2;
        if ((rc = parse_header(r, &s2, NULL, e))) {
            dh_err_prefix(e, "after stream %d", r->nstreams);
            return rc;
        }
        if (!dhs_schema_equal(&r->schema, &s2)) {
            char a[256], b[256];
            dhs_schema_describe(&r->schema, a, sizeof a);
            dhs_schema_describe(&s2, b, sizeof b);
            return dh_seterr(e, DH_ESCHEMA, "%s: concatenated stream %d does not match the first: %s %s vs %s %s",
                             r->name, r->nstreams + 1, r->schema.kind, a, s2.kind, b);
        }
        start_stream(r);
    }
}

const char *dhs_str_at(const dhs_chunk *c, int field, int64_t i, size_t *len) {
    *len = (size_t)(c->off[field][i + 1] - c->off[field][i]);
    return (const char *)c->col[field] + c->off[field][i];
}

/* ---- tables ----------------------------------------------------------------- */
int dhs_read_table(dhs_reader *r, dhs_table *t, uint64_t max_bytes, dh_err *e) {
    memset(t, 0, sizeof *t);
    t->schema = r->schema;
    t->meta = dhs_meta_copy(r->meta);
    if (!t->meta) return dh_seterr(e, DH_ENOMEM, "out of memory");
    size_t cap[DHS_MAX_FIELDS] = { 0 }, used[DHS_MAX_FIELDS] = { 0 };
    int64_t ocap = 0;
    uint64_t total = 0;
    int nf = t->schema.nfields;
    for (;;) {
        dhs_chunk *c;
        int rc = dhs_read_chunk(r, &c, e);
        if (rc == DH_EOF) break;
        if (rc) {
            dhs_table_free(t);
            return rc;
        }
        for (int i = 0; i < nf; i++) {
            const dhs_field *f = &t->schema.fields[i];
            size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
            size_t bytes = f->variable ? (size_t)c->off[i][c->nrows] * es : (size_t)(c->nrows * f->row_bytes);
            total += bytes;
            if (max_bytes && total > max_bytes) {
                dhs_table_free(t);
                return dh_seterr(e, DH_ELIMIT, "%s: more than %llu bytes of data to hold in memory", r->name,
                                 (unsigned long long)max_bytes);
            }
            unsigned char *p = t->col[i];
            if (grow(&p, &cap[i], used[i] + bytes, e)) {
                dhs_table_free(t);
                return DH_ENOMEM;
            }
            t->col[i] = p;
            memcpy(p + used[i], c->col[i], bytes);
            if (f->variable) {
                if (t->nrows + c->nrows + 1 > ocap) {
                    int64_t oc = ocap ? ocap : 1024;
                    while (oc < t->nrows + c->nrows + 1) oc *= 2;
                    for (int j = 0; j < nf; j++) {
                        if (!t->schema.fields[j].variable) continue;
                        uint64_t *o = realloc(t->off[j], oc * sizeof *o);
                        if (!o) {
                            dhs_table_free(t);
                            return dh_seterr(e, DH_ENOMEM, "out of memory");
                        }
                        if (!t->off[j]) o[0] = 0;
                        t->off[j] = o;
                    }
                    ocap = oc;
                }
                uint64_t base = t->off[i][t->nrows];
                for (int64_t k = 1; k <= c->nrows; k++) t->off[i][t->nrows + k] = base + c->off[i][k];
            }
            used[i] += bytes;
        }
        t->nrows += c->nrows;
    }
    /* fields never touched (zero rows) still get valid pointers */
    for (int i = 0; i < nf; i++) {
        if (!t->col[i]) t->col[i] = calloc(1, 8);
        if (t->schema.fields[i].variable && !t->off[i]) t->off[i] = calloc(1, sizeof(uint64_t));
        if (!t->col[i] || (t->schema.fields[i].variable && !t->off[i])) {
            dhs_table_free(t);
            return dh_seterr(e, DH_ENOMEM, "out of memory");
        }
    }
    return 0;
}

int dhs_load_table(const char *path, dhs_table *t, dh_err *e) {
    dhs_reader *r = dhs_open_path(path, NULL, e);
    if (!r) {
        memset(t, 0, sizeof *t);
        return e ? e->code : DH_EFORMAT;
    }
    int rc = dhs_read_table(r, t, 0, e);
    dhs_close(r);
    return rc;
}

void dhs_table_free(dhs_table *t) {
    for (int i = 0; i < DHS_MAX_FIELDS; i++) {
        free(t->col[i]);
        free(t->off[i]);
    }
    dhs_meta_free(t->meta);
    memset(t, 0, sizeof *t);
}

const char *dhs_table_str_at(const dhs_table *t, int field, int64_t i, size_t *len) {
    *len = (size_t)(t->off[field][i + 1] - t->off[field][i]);
    return (const char *)t->col[field] + t->off[field][i];
}

/* ---- writer ----------------------------------------------------------------- */
struct dhs_writer {
    FILE *f;
    char *name;
    dhs_schema schema;
    msgpack_packer pk;
    int ioerr;
    int64_t chunk_rows;                 /* flush when this many rows are buffered */
    int64_t nbuf;                       /* rows buffered */
    unsigned char *buf[DHS_MAX_FIELDS]; /* fixed: rows; variable: data */
    size_t used[DHS_MAX_FIELDS], cap[DHS_MAX_FIELDS];
    uint32_t *lens[DHS_MAX_FIELDS]; /* variable: per-row lengths */
    size_t lcap[DHS_MAX_FIELDS];
    size_t bufbytes;
    int64_t rows, chunks;
    uint32_t crc, header_crc;
};

static int pk_write(void *data, const char *buf, size_t len) {
    dhs_writer *w = data;
    if (w->ioerr) return -1;
    if (len && fwrite(buf, 1, len, w->f) != len) {
        w->ioerr = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

static void pk_cstr(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_meta(msgpack_packer *pk, const dhs_meta *m);
static void pack_val(msgpack_packer *pk, const dhs_mval *v) {
    switch (v->t) {
    case DHS_M_NIL: msgpack_pack_nil(pk); break;
    case DHS_M_BOOL:
        if (v->b)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case DHS_M_INT: msgpack_pack_int64(pk, v->i); break;
    case DHS_M_FLOAT: msgpack_pack_double(pk, v->f); break;
    case DHS_M_STR:
        msgpack_pack_str(pk, v->len);
        msgpack_pack_str_body(pk, v->s, v->len);
        break;
    case DHS_M_ARRAY:
        msgpack_pack_array(pk, v->n);
        for (int i = 0; i < v->n; i++) pack_val(pk, &v->a[i]);
        break;
    case DHS_M_MAP: pack_meta(pk, v->m); break;
    }
}
static void pack_meta(msgpack_packer *pk, const dhs_meta *m) {
    int n = dhs_meta_count(m);
    msgpack_pack_map(pk, n);
    for (int i = 0; i < n; i++) {
        pk_cstr(pk, m->keys[i]);
        pack_val(pk, &m->vals[i]);
    }
}

static int sbuf_write(void *data, const char *buf, size_t len) { return msgpack_sbuffer_write(data, buf, len); }

static int werr(dhs_writer *w, dh_err *e) {
    return dh_seterr(e, DH_EIO, "%s: write error: %s", w->name, strerror(w->ioerr ? w->ioerr : EIO));
}

dhs_writer *dhs_writer_open(FILE *f, const char *name, const dhs_schema *s, const dhs_meta *meta, dh_err *e) {
    /* a kind the reader would refuse (dh-npy import --kind '') */
    if (!valid_name(s->kind)) {
        dh_seterr(e, DH_EINVAL, "invalid stream kind '%s'", s->kind);
        return NULL;
    }
    dhs_writer *w = calloc(1, sizeof *w);
    if (!w) {
        dh_seterr(e, DH_ENOMEM, "out of memory");
        return NULL;
    }
    w->f = f;
    w->name = strdup(name ? name : "<stdout>");
    w->schema = *s;
    msgpack_packer_init(&w->pk, w, pk_write);
    widen_pipe(f);
    int64_t rowb = 0;
    for (int i = 0; i < s->nfields; i++) rowb += s->fields[i].variable ? 16 : s->fields[i].row_bytes;
    w->chunk_rows = rowb ? (4 << 20) / rowb : 65536;
    if (w->chunk_rows < 1) w->chunk_rows = 1;
    if (w->chunk_rows > (1 << 20)) w->chunk_rows = 1 << 20;
    /* The header is packed into memory first so its checksum is known. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer hp;
    msgpack_packer_init(&hp, &sb, sbuf_write);
    msgpack_pack_map(&hp, 5);
    pk_cstr(&hp, "format");
    pk_cstr(&hp, DHS_FORMAT_NAME);
    pk_cstr(&hp, "version");
    msgpack_pack_int(&hp, DHS_VERSION);
    pk_cstr(&hp, "kind");
    pk_cstr(&hp, s->kind);
    pk_cstr(&hp, "fields");
    msgpack_pack_array(&hp, s->nfields);
    for (int i = 0; i < s->nfields; i++) {
        const dhs_field *fl = &s->fields[i];
        msgpack_pack_map(&hp, 3);
        pk_cstr(&hp, "name");
        pk_cstr(&hp, fl->name);
        pk_cstr(&hp, "dtype");
        pk_cstr(&hp, dhs_dtype_name(fl->dtype));
        pk_cstr(&hp, "shape");
        msgpack_pack_array(&hp, fl->ndim);
        for (int d = 0; d < fl->ndim; d++) msgpack_pack_int64(&hp, fl->shape[d]);
    }
    pk_cstr(&hp, "meta");
    if (meta)
        pack_meta(&hp, meta);
    else
        msgpack_pack_map(&hp, 0);
    w->header_crc = (uint32_t)crc32_z(0, (const unsigned char *)sb.data, sb.size);
    pk_write(w, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (!w->name || w->ioerr) {
        if (w->ioerr)
            werr(w, e);
        else
            dh_seterr(e, DH_ENOMEM, "out of memory");
        dhs_writer_abort(w);
        return NULL;
    }
    return w;
}

void dhs_writer_set_chunk_rows(dhs_writer *w, int64_t rows) { w->chunk_rows = rows < 1 ? 1 : rows; }
int64_t dhs_writer_rows(const dhs_writer *w) { return w->rows; }

/* Write one chunk from column pointers (variable fields: data + lengths). */
static int emit_chunk(dhs_writer *w, int64_t n, const void *const *cols, const uint32_t *const *lens, dh_err *e) {
    if (n <= 0) return 0;
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 3);
    pk_cstr(pk, "rows");
    msgpack_pack_uint64(pk, (uint64_t)n);
    pk_cstr(pk, "cols");
    msgpack_pack_array(pk, w->schema.nfields);
    uint32_t crc = 0;
    uint64_t total = 0;
    for (int i = 0; i < w->schema.nfields; i++) {
        const dhs_field *f = &w->schema.fields[i];
        uint64_t L;
        if (!f->variable) {
            L = (uint64_t)n * f->row_bytes;
            if (L > UINT32_MAX)
                return dh_seterr(e, DH_ELIMIT, "%s: chunk column of %llu bytes is too large", w->name,
                                 (unsigned long long)L);
            msgpack_pack_bin(pk, (size_t)L);
            msgpack_pack_bin_body(pk, cols[i], (size_t)L);
            if (L) crc = (uint32_t)crc32_z(crc, cols[i], (size_t)L);
        } else {
            size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
            uint64_t el = 0;
            for (int64_t k = 0; k < n; k++) el += lens[i][k];
            L = 4 * (uint64_t)n + el * es;
            if (L > UINT32_MAX)
                return dh_seterr(e, DH_ELIMIT, "%s: chunk column of %llu bytes is too large", w->name,
                                 (unsigned long long)L);
            msgpack_pack_bin(pk, (size_t)L);
            msgpack_pack_bin_body(pk, lens[i], 4 * (size_t)n);
            msgpack_pack_bin_body(pk, cols[i], (size_t)(el * es));
            crc = (uint32_t)crc32_z(crc, (const unsigned char *)lens[i], 4 * (size_t)n); /* n >= 1 */
            if (el) crc = (uint32_t)crc32_z(crc, cols[i], (size_t)(el * es));
        }
        total += L;
    }
    pk_cstr(pk, "crc");
    msgpack_pack_uint32(pk, crc);
    if (w->ioerr) return werr(w, e);
    w->crc = w->chunks ? (uint32_t)crc32_combine(w->crc, crc, (z_off_t)total) : crc;
    w->chunks++;
    w->rows += n;
    return 0;
}

static int flush_buf(dhs_writer *w, dh_err *e) {
    if (!w->nbuf) return 0;
    const void *cols[DHS_MAX_FIELDS];
    const uint32_t *lens[DHS_MAX_FIELDS];
    for (int i = 0; i < w->schema.nfields; i++) {
        cols[i] = w->buf[i];
        lens[i] = w->lens[i];
    }
    int rc = emit_chunk(w, w->nbuf, cols, lens, e);
    w->nbuf = 0;
    w->bufbytes = 0;
    for (int i = 0; i < w->schema.nfields; i++) w->used[i] = 0;
    return rc;
}

int dhs_write_rows(dhs_writer *w, int64_t n, const void *const *cols, const uint32_t *const *lens, dh_err *e) {
    if (n < 0) return dh_seterr(e, DH_EINVAL, "negative row count");
    int nf = w->schema.nfields;
    /* per-field element cursors into the caller's variable data */
    uint64_t vpos[DHS_MAX_FIELDS] = { 0 };
    int64_t done = 0;
    while (done < n) {
        int64_t take_n = w->chunk_rows - w->nbuf;
        if (take_n > n - done) take_n = n - done;
        for (int i = 0; i < nf; i++) {
            const dhs_field *f = &w->schema.fields[i];
            size_t bytes;
            const unsigned char *src;
            if (!f->variable) {
                bytes = (size_t)(take_n * f->row_bytes);
                src = (const unsigned char *)cols[i] + (size_t)(done * f->row_bytes);
            } else {
                if (!lens || !lens[i]) return dh_seterr(e, DH_EINVAL, "field %s: no lengths given", f->name);
                size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
                uint64_t el = 0;
                for (int64_t k = 0; k < take_n; k++) el += lens[i][done + k];
                bytes = (size_t)(el * es);
                src = (const unsigned char *)cols[i] + vpos[i] * es;
                vpos[i] += el;
                size_t nl = (size_t)(w->nbuf + take_n);
                if (nl > w->lcap[i]) {
                    size_t c = w->lcap[i] ? w->lcap[i] : 1024;
                    while (c < nl) c *= 2;
                    uint32_t *q = realloc(w->lens[i], c * sizeof *q);
                    if (!q) return dh_seterr(e, DH_ENOMEM, "out of memory");
                    w->lens[i] = q;
                    w->lcap[i] = c;
                }
                memcpy(w->lens[i] + w->nbuf, lens[i] + done, take_n * sizeof(uint32_t));
            }
            if (grow(&w->buf[i], &w->cap[i], w->used[i] + bytes, e)) return DH_ENOMEM;
            if (bytes) memcpy(w->buf[i] + w->used[i], src, bytes);
            w->used[i] += bytes;
            w->bufbytes += bytes;
        }
        w->nbuf += take_n;
        done += take_n;
        if (w->nbuf >= w->chunk_rows || w->bufbytes >= (8u << 20)) {
            int rc = flush_buf(w, e);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Column pointers and per-row lengths for rows [start, start+n) of a chunk
 * with schema s; lens[f] is allocated for variable fields (free with
 * free_lens). */
static int chunk_slice(const dhs_schema *s, const dhs_chunk *c, int64_t start, int64_t n, const void **cols,
                       uint32_t **lens, dh_err *e) {
    for (int i = 0; i < s->nfields; i++) {
        const dhs_field *f = &s->fields[i];
        lens[i] = NULL;
        if (!f->variable) {
            cols[i] = (const unsigned char *)c->col[i] + (size_t)(start * f->row_bytes);
            continue;
        }
        size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
        cols[i] = (const unsigned char *)c->col[i] + c->off[i][start] * es;
        lens[i] = dh_malloc(e, n ? (size_t)n : 1, sizeof(uint32_t));
        if (!lens[i]) return DH_ENOMEM;
        for (int64_t k = 0; k < n; k++) lens[i][k] = (uint32_t)(c->off[i][start + k + 1] - c->off[i][start + k]);
    }
    return 0;
}

static void free_lens(uint32_t **lens) {
    for (int i = 0; i < DHS_MAX_FIELDS; i++) free(lens[i]);
}

int dhs_write_chunk(dhs_writer *w, const dhs_chunk *c, dh_err *e) {
    int rc = flush_buf(w, e); /* rows written before keep their order */
    if (rc) return rc;
    const void *cols[DHS_MAX_FIELDS];
    uint32_t *lens[DHS_MAX_FIELDS] = { 0 };
    rc = chunk_slice(&w->schema, c, 0, c->nrows, cols, lens, e);
    if (!rc) rc = emit_chunk(w, c->nrows, cols, (const uint32_t *const *)lens, e); /* no copy */
    free_lens(lens);
    return rc;
}

int dhs_write_chunk_range(dhs_writer *w, const dhs_chunk *c, int64_t start, int64_t n, dh_err *e) {
    if (start < 0 || n < 0 || start + n > c->nrows) return dh_seterr(e, DH_EINVAL, "row range outside the chunk");
    if (n == 0) return 0;
    const void *cols[DHS_MAX_FIELDS];
    uint32_t *lens[DHS_MAX_FIELDS] = { 0 };
    int rc = chunk_slice(&w->schema, c, start, n, cols, lens, e);
    if (!rc) rc = dhs_write_rows(w, n, cols, (const uint32_t *const *)lens, e);
    free_lens(lens);
    return rc;
}

static void writer_free(dhs_writer *w) {
    for (int i = 0; i < DHS_MAX_FIELDS; i++) {
        free(w->buf[i]);
        free(w->lens[i]);
    }
    free(w->name);
    free(w);
}

int dhs_writer_close(dhs_writer *w, dh_err *e) {
    int rc = flush_buf(w, e);
    if (!rc) {
        msgpack_packer *pk = &w->pk;
        msgpack_pack_map(pk, 5);
        pk_cstr(pk, "end");
        msgpack_pack_true(pk);
        pk_cstr(pk, "rows");
        msgpack_pack_uint64(pk, (uint64_t)w->rows);
        pk_cstr(pk, "chunks");
        msgpack_pack_uint64(pk, (uint64_t)w->chunks);
        pk_cstr(pk, "crc");
        msgpack_pack_uint32(pk, w->crc);
        pk_cstr(pk, "header_crc");
        msgpack_pack_uint32(pk, w->header_crc);
        if (!w->ioerr && fflush(w->f) != 0) w->ioerr = errno ? errno : EIO;
        if (w->ioerr || ferror(w->f)) rc = werr(w, e);
    }
    writer_free(w);
    return rc;
}

void dhs_writer_abort(dhs_writer *w) {
    if (!w) return;
    fflush(w->f);
    writer_free(w);
}
