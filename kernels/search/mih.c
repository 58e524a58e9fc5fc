/* mih.c — multi-index hashing (see mih.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "hamming.h"
#include "mih.h"

#define MIH_MAX_W (DH_MIH_MAX_BITS / 64)

/* Relative costs, in units of one code word compared by the linear scan
 * (which streams cache-resident tiles of the database through AVX-512
 * VPOPCNTQ for a block of queries): a bucket looked up (cache misses on
 * its offset and its first codes) and a code word compared in a bucket
 * (the codes of a bucket are contiguous, but buckets are scattered over
 * memory). Fitted on 1,000,000 random 64-bit codes (an AMD EPYC); they
 * only decide when a query goes to the scan, never what it returns. */
#define MIH_PROBE_COST  250.0
#define MIH_CAND_COST   5.0
#define MIH_ACCEPT_COST 40.0 /* a code within the bound, counted and kept */

struct dh_mih {
    int64_t n;
    int bits, W, m;
    int beg[DH_MIH_MAX_TABLES], len[DH_MIH_MAX_TABLES];
    uint32_t *off[DH_MIH_MAX_TABLES];    /* (2^len + 1) */
    uint32_t *rows[DH_MIH_MAX_TABLES];   /* (n) */
    uint64_t *codes[DH_MIH_MAX_TABLES];  /* (n, W): db[rows[p]] */
    const uint64_t *db;                  /* (n, W), borrowed */
    uint64_t mask[DH_MIH_MAX_TABLES][2]; /* substring masks of codes of <= 2 words */
    int simd;                            /* AVX-512 VPOPCNTQ for one-word codes */
    double budget;
    pthread_mutex_t mu;
    dh_mih_stats st;
};

static int mih_use_avx512(void);

/* Substring t of a code: bits [beg, beg + len). */
static inline uint32_t sub_of(const uint64_t *c, int beg, int len) {
    int w = beg >> 6, sh = beg & 63;
    uint64_t v = c[w] >> sh;
    if (sh + len > 64) v |= c[w + 1] << (64 - sh);
    return (uint32_t)(v & ((UINT64_C(1) << len) - 1));
}

int dh_mih_default_tables(int64_t n, int bits) {
    int lg = 0;
    while (lg < 62 && (INT64_C(1) << (lg + 1)) <= n) lg++;
    int s = lg - 3;
    if (s < 4) s = 4;
    if (s > DH_MIH_MAX_SUBBITS) s = DH_MIH_MAX_SUBBITS;
    int m = (bits + s - 1) / s;
    int mmin = (bits + DH_MIH_MAX_SUBBITS - 1) / DH_MIH_MAX_SUBBITS;
    if (m < mmin) m = mmin;
    if (m > DH_MIH_MAX_TABLES) m = DH_MIH_MAX_TABLES;
    if (m > bits) m = bits;
    return m < 1 ? 1 : m;
}

uint32_t dh_mih_db_crc(const uint64_t *db, int64_t n, int bits) {
    int W = dh_ham_words(bits), nb = (bits + 7) / 8;
    uLong crc = crc32_z(0, Z_NULL, 0);
    uint8_t row[DH_HAMMING_MAX_BITS / 8];
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < nb; k++) row[k] = (uint8_t)(db[i * W + k / 8] >> (8 * (k % 8)));
        crc = crc32_z(crc, row, (size_t)nb);
    }
    return (uint32_t)crc;
}

static int mih_layout(dh_mih *x, int64_t n, int bits, int tables, dh_err *e) {
    if (bits < 1 || bits > DH_MIH_MAX_BITS)
        return dh_seterr(e, DH_EUNSUPPORTED, "multi-index hashing handles codes of 1..%d bits, not %d", DH_MIH_MAX_BITS,
                         bits);
    if (n < 0 || n > DH_MIH_MAX_ROWS)
        return dh_seterr(e, DH_EUNSUPPORTED, "multi-index hashing handles at most %lld rows, not %lld",
                         (long long)DH_MIH_MAX_ROWS, (long long)n);
    if (tables < 1 || tables > DH_MIH_MAX_TABLES || tables > bits)
        return dh_seterr(e, DH_EINVAL, "%d tables for %d-bit codes: give 1..%d", tables, bits,
                         bits < DH_MIH_MAX_TABLES ? bits : DH_MIH_MAX_TABLES);
    if ((bits + tables - 1) / tables > DH_MIH_MAX_SUBBITS)
        return dh_seterr(e, DH_EINVAL,
                         "%d tables for %d-bit codes make substrings of %d bits: at most %d (at least %d tables)",
                         tables, bits, (bits + tables - 1) / tables, DH_MIH_MAX_SUBBITS,
                         (bits + DH_MIH_MAX_SUBBITS - 1) / DH_MIH_MAX_SUBBITS);
    x->n = n;
    x->bits = bits;
    x->W = dh_ham_words(bits);
    x->m = tables;
    for (int t = 0; t < tables; t++) {
        x->beg[t] = (int)((int64_t)t * bits / tables);
        x->len[t] = (int)((int64_t)(t + 1) * bits / tables) - x->beg[t];
    }
    for (int t = 0; t < tables && x->W <= 2; t++)
        for (int b = x->beg[t]; b < x->beg[t] + x->len[t]; b++) x->mask[t][b / 64] |= UINT64_C(1) << (b % 64);
    x->simd = mih_use_avx512();
    x->budget = 1.0;
    return DH_OK;
}

static dh_mih *mih_new(dh_err *e) {
    dh_mih *x = dh_calloc(e, 1, sizeof *x);
    if (x) pthread_mutex_init(&x->mu, NULL);
    return x;
}

void dh_mih_free(dh_mih *x) {
    if (!x) return;
    for (int t = 0; t < DH_MIH_MAX_TABLES; t++) {
        free(x->off[t]);
        free(x->rows[t]);
        free(x->codes[t]);
    }
    pthread_mutex_destroy(&x->mu);
    free(x);
}

int dh_mih_tables(const dh_mih *x) { return x->m; }
void dh_mih_set_scan_budget(dh_mih *x, double fraction) { x->budget = fraction; }
void dh_mih_get_stats(const dh_mih *x, dh_mih_stats *s) { *s = x->st; }
int64_t dh_mih_bytes(const dh_mih *x) {
    int64_t b = 0;
    for (int t = 0; t < x->m; t++) b += ((INT64_C(1) << x->len[t]) + 1) * 4 + x->n * 4 + x->n * x->W * 8;
    return b;
}

/* ---- building ------------------------------------------------------------------------ */

typedef struct build_job {
    dh_mih *x;
    int need_rows; /* 1: bucket the rows (build); 0: rows read from a file */
    int oom;
    pthread_mutex_t mu;
} build_job;

/* Table t's codes gathered from the rows. */
static void gather_codes(dh_mih *x, int t) {
    int W = x->W;
    const uint32_t *rows = x->rows[t];
    uint64_t *c = x->codes[t];
    if (W == 1)
        for (int64_t p = 0; p < x->n; p++) c[p] = x->db[rows[p]];
    else if (W == 2)
        for (int64_t p = 0; p < x->n; p++) {
            const uint64_t *r = x->db + 2 * (int64_t)rows[p];
            c[2 * p] = r[0];
            c[2 * p + 1] = r[1];
        }
    else
        for (int64_t p = 0; p < x->n; p++)
            for (int w = 0; w < W; w++) c[p * W + w] = x->db[(int64_t)rows[p] * W + w];
}

static void build_tables(void *ctx, int64_t t0, int64_t t1, int tid) {
    build_job *jb = ctx;
    dh_mih *x = jb->x;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int beg = x->beg[t], len = x->len[t], W = x->W;
        size_t nbk = (size_t)1 << len;
        x->codes[t] = malloc((size_t)(x->n ? x->n : 1) * W * 8);
        if (jb->need_rows) {
            x->off[t] = calloc(nbk + 1, sizeof(uint32_t));
            x->rows[t] = malloc((size_t)(x->n ? x->n : 1) * sizeof(uint32_t));
        }
        uint32_t *pos = jb->need_rows ? malloc(nbk * sizeof *pos) : NULL;
        if (!x->codes[t] || !x->off[t] || !x->rows[t] || (jb->need_rows && !pos)) {
            free(pos);
            pthread_mutex_lock(&jb->mu);
            jb->oom = 1;
            pthread_mutex_unlock(&jb->mu);
            return;
        }
        if (jb->need_rows) {
            uint32_t *off = x->off[t];
            for (int64_t i = 0; i < x->n; i++) off[sub_of(x->db + i * W, beg, len) + 1]++;
            for (size_t v = 0; v < nbk; v++) off[v + 1] += off[v];
            memcpy(pos, off, nbk * sizeof *pos);
            for (int64_t i = 0; i < x->n; i++) x->rows[t][pos[sub_of(x->db + i * W, beg, len)]++] = (uint32_t)i;
            free(pos);
        }
        gather_codes(x, (int)t);
    }
}

static int run_build(dh_mih *x, int need_rows, int nthreads, dh_err *e) {
    build_job jb = { .x = x, .need_rows = need_rows };
    pthread_mutex_init(&jb.mu, NULL);
    dh_rank_parallel(nthreads < 1 ? 1 : nthreads, x->m, build_tables, &jb);
    pthread_mutex_destroy(&jb.mu);
    if (jb.oom) return dh_seterr(e, DH_ENOMEM, "out of memory building %d tables of %lld rows", x->m, (long long)x->n);
    return DH_OK;
}

int dh_mih_build(dh_mih **out, const uint64_t *db, int64_t n, int bits, int tables, int nthreads, dh_err *e) {
    *out = NULL;
    if (tables == 0) tables = dh_mih_default_tables(n, bits);
    dh_mih *x = mih_new(e);
    if (!x) return DH_ENOMEM;
    int rc = mih_layout(x, n, bits, tables, e);
    if (!rc) rc = dh_ham_check_padding(db, n, bits, "database", e);
    x->db = db;
    if (!rc) rc = run_build(x, 1, nthreads, e);
    if (rc) {
        dh_mih_free(x);
        return rc;
    }
    *out = x;
    return DH_OK;
}

/* ---- the file ------------------------------------------------------------------------- */

/* Little-endian fields of the header (man/dh-index.1). */
#define MIH_MAGIC      "DHMIHIDX"
#define MIH_HEAD_FIXED 64
#define MIH_HEAD_TABLE 16

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int host_le(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}
static void swap32(uint32_t *a, int64_t n) {
    for (int64_t i = 0; i < n; i++) a[i] = __builtin_bswap32(a[i]);
}

/* CRC-32 of a uint32 array as its little-endian bytes (a is in host order). */
static uLong crc_u32(uLong crc, const uint32_t *a, int64_t n) {
    if (host_le()) return crc32_z(crc, (const unsigned char *)a, (size_t)n * 4);
    uint8_t b[4096];
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t k = n - i < 1024 ? n - i : 1024;
        for (int64_t j = 0; j < k; j++) put32(b + 4 * j, a[i + j]);
        crc = crc32_z(crc, b, (size_t)k * 4);
    }
    return crc;
}

static uint32_t table_crc(const dh_mih *x, int t) {
    uLong c = crc32_z(0, Z_NULL, 0);
    c = crc_u32(c, x->off[t], (INT64_C(1) << x->len[t]) + 1);
    c = crc_u32(c, x->rows[t], x->n);
    return (uint32_t)c;
}

static int write_u32s(FILE *f, const uint32_t *a, int64_t n) {
    if (host_le()) return fwrite(a, 4, (size_t)n, f) == (size_t)n ? 0 : -1;
    uint8_t b[4096];
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t k = n - i < 1024 ? n - i : 1024;
        for (int64_t j = 0; j < k; j++) put32(b + 4 * j, a[i + j]);
        if (fwrite(b, 4, (size_t)k, f) != (size_t)k) return -1;
    }
    return 0;
}

/* CRC-32 of the header less its own four bytes (60..63). */
static uint32_t head_crc(const uint8_t *h, int hb) {
    uLong c = crc32_z(crc32_z(0, Z_NULL, 0), h, 60);
    return (uint32_t)crc32_z(c, h + MIH_HEAD_FIXED, (size_t)hb - MIH_HEAD_FIXED);
}

static int64_t file_bytes(int m, const int *len, int64_t n) {
    int64_t b = MIH_HEAD_FIXED + (int64_t)MIH_HEAD_TABLE * m;
    for (int t = 0; t < m; t++) b += 4 * (((INT64_C(1) << len[t]) + 1) + n);
    return b;
}

int dh_mih_write(const dh_mih *x, FILE *f, const char *name, dh_err *e) {
    int hb = MIH_HEAD_FIXED + MIH_HEAD_TABLE * x->m;
    uint8_t *h = dh_calloc(e, (size_t)hb, 1);
    if (!h) return DH_ENOMEM;
    memcpy(h, MIH_MAGIC, 8);
    put32(h + 8, DH_MIH_VERSION);
    put32(h + 12, (uint32_t)hb);
    put64(h + 16, (uint64_t)x->n);
    put32(h + 24, (uint32_t)x->bits);
    put32(h + 28, (uint32_t)x->m);
    put32(h + 32, dh_mih_db_crc(x->db, x->n, x->bits));
    put64(h + 40, (uint64_t)file_bytes(x->m, x->len, x->n));
    for (int t = 0; t < x->m; t++) {
        uint8_t *r = h + MIH_HEAD_FIXED + MIH_HEAD_TABLE * t;
        put32(r, (uint32_t)x->beg[t]);
        put32(r + 4, (uint32_t)x->len[t]);
        put32(r + 8, table_crc(x, t));
    }
    put32(h + 60, head_crc(h, hb));
    int bad = fwrite(h, 1, (size_t)hb, f) != (size_t)hb;
    free(h);
    for (int t = 0; !bad && t < x->m; t++)
        bad = write_u32s(f, x->off[t], (INT64_C(1) << x->len[t]) + 1) || write_u32s(f, x->rows[t], x->n);
    if (bad || fflush(f) != 0) return dh_seterr(e, DH_EIO, "%s: write error", name);
    return DH_OK;
}

static int read_exact(FILE *f, void *p, size_t n, const char *name, dh_err *e) {
    size_t k = fread(p, 1, n, f);
    if (k == n) return DH_OK;
    if (ferror(f)) return dh_seterr(e, DH_EIO, "%s: read error", name);
    return dh_seterr(e, DH_ETRUNC, "%s: the index ends early (truncated)", name);
}

/* Every row once in each table, in the bucket its substring says (the
 * codes gathered from the database). */
static int check_table(const dh_mih *x, int t, uint8_t *seen, const char *name, dh_err *e) {
    uint32_t nbk = (uint32_t)1 << x->len[t];
    const uint32_t *off = x->off[t], *rows = x->rows[t];
    if (off[0] != 0 || off[nbk] != (uint64_t)x->n)
        return dh_seterr(e, DH_EFORMAT, "%s: table %d: offsets do not span the %lld rows", name, t, (long long)x->n);
    for (uint32_t v = 0; v < nbk; v++)
        if (off[v + 1] < off[v])
            return dh_seterr(e, DH_EFORMAT, "%s: table %d: offsets decrease at bucket %u", name, t, v);
    memset(seen, 0, (size_t)(x->n + 7) / 8 + 1);
    for (int64_t p = 0; p < x->n; p++) {
        uint32_t r = rows[p];
        if (r >= (uint64_t)x->n)
            return dh_seterr(e, DH_EFORMAT, "%s: table %d: row %u beyond the %lld rows", name, t, r, (long long)x->n);
        if (seen[r >> 3] & (1 << (r & 7)))
            return dh_seterr(e, DH_EFORMAT, "%s: table %d: row %u listed twice", name, t, r);
        seen[r >> 3] |= (uint8_t)(1 << (r & 7));
    }
    return DH_OK;
}

static int check_buckets(const dh_mih *x, int t, const char *name, dh_err *e) {
    uint32_t nbk = (uint32_t)1 << x->len[t];
    const uint32_t *off = x->off[t];
    for (uint32_t v = 0; v < nbk; v++)
        for (uint32_t p = off[v]; p < off[v + 1]; p++)
            if (sub_of(x->codes[t] + (int64_t)p * x->W, x->beg[t], x->len[t]) != v)
                return dh_seterr(e, DH_EFORMAT,
                                 "%s: table %d: row %u is not in its bucket (index of another database?)", name, t,
                                 x->rows[t][p]);
    return DH_OK;
}

int dh_mih_read(dh_mih **out, FILE *f, const char *name, const uint64_t *db, int64_t n, int bits, int nthreads,
                dh_err *e) {
    *out = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        return dh_seterr(e, DH_EIO, "%s: the index must be a regular file", name);
    uint8_t h0[MIH_HEAD_FIXED];
    size_t got = fread(h0, 1, sizeof h0, f);
    if (ferror(f)) return dh_seterr(e, DH_EIO, "%s: read error", name);
    if (got < 8 || memcmp(h0, MIH_MAGIC, 8) != 0)
        return dh_seterr(e, DH_EFORMAT, "%s: not a deephash multi-index hashing index (dh-index)", name);
    if (got < sizeof h0) return dh_seterr(e, DH_ETRUNC, "%s: the index ends inside its header (truncated)", name);
    uint32_t ver = get32(h0 + 8);
    if (ver != DH_MIH_VERSION)
        return dh_seterr(e, DH_EFORMAT,
                         "%s: index format version %u; this program reads version %d (rebuild it with dh-index)", name,
                         ver, DH_MIH_VERSION);
    uint32_t hb = get32(h0 + 12), m = get32(h0 + 28), ibits = get32(h0 + 24);
    uint64_t in = get64(h0 + 16), fsize = get64(h0 + 40);
    if (m < 1 || m > DH_MIH_MAX_TABLES || hb != MIH_HEAD_FIXED + MIH_HEAD_TABLE * m)
        return dh_seterr(e, DH_EFORMAT, "%s: bad header (%u tables, %u header bytes)", name, m, hb);
    uint8_t h[MIH_HEAD_FIXED + MIH_HEAD_TABLE * DH_MIH_MAX_TABLES];
    memcpy(h, h0, sizeof h0);
    int rc = read_exact(f, h + MIH_HEAD_FIXED, hb - MIH_HEAD_FIXED, name, e);
    if (rc) return rc;
    if (head_crc(h, (int)hb) != get32(h + 60))
        return dh_seterr(e, DH_ECHECKSUM, "%s: the index header is damaged (checksum)", name);
    /* the database it was built for */
    if (in != (uint64_t)n || ibits != (uint32_t)bits)
        return dh_seterr(e, DH_ESCHEMA,
                         "%s: the index was built for another database (%llu rows of %u bits; this one has %lld of %d)",
                         name, (unsigned long long)in, ibits, (long long)n, bits);
    uint32_t dbcrc = dh_mih_db_crc(db, n, bits);
    if (dbcrc != get32(h + 32))
        return dh_seterr(
            e, DH_ESCHEMA,
            "%s: the index was built for another database (same size, database checksum %08x, index's %08x)", name,
            dbcrc, get32(h + 32));
    dh_mih *x = mih_new(e);
    if (!x) return DH_ENOMEM;
    rc = mih_layout(x, n, bits, (int)m, e);
    if (rc) {
        dh_err_prefix(e, "%s", name);
        dh_mih_free(x);
        if (rc == DH_EINVAL && e) e->code = DH_EFORMAT;
        return rc == DH_EINVAL ? DH_EFORMAT : rc;
    }
    x->db = db;
    for (int t = 0; t < x->m; t++) {
        const uint8_t *r = h + MIH_HEAD_FIXED + MIH_HEAD_TABLE * t;
        if (get32(r) != (uint32_t)x->beg[t] || get32(r + 4) != (uint32_t)x->len[t]) {
            dh_seterr(e, DH_EFORMAT, "%s: table %d: bits %u..+%u, expected %d..+%d", name, t, get32(r), get32(r + 4),
                      x->beg[t], x->len[t]);
            dh_mih_free(x);
            return DH_EFORMAT;
        }
    }
    int64_t want = file_bytes(x->m, x->len, n);
    if (fsize != (uint64_t)want) {
        dh_mih_free(x);
        return dh_seterr(e, DH_EFORMAT, "%s: the header says %llu bytes, its tables need %lld", name,
                         (unsigned long long)fsize, (long long)want);
    }
    if ((uint64_t)sb.st_size != fsize) {
        dh_mih_free(x);
        return dh_seterr(e, sb.st_size < (off_t)fsize ? DH_ETRUNC : DH_EFORMAT,
                         "%s: %lld bytes, the index has %llu (%s)", name, (long long)sb.st_size,
                         (unsigned long long)fsize, sb.st_size < (off_t)fsize ? "truncated" : "trailing data");
    }
    uint8_t *seen = dh_malloc(e, (size_t)(n + 7) / 8 + 1, 1);
    rc = seen ? DH_OK : DH_ENOMEM;
    for (int t = 0; !rc && t < x->m; t++) {
        int64_t nbk = INT64_C(1) << x->len[t];
        x->off[t] = dh_malloc(e, (size_t)nbk + 1, sizeof(uint32_t));
        x->rows[t] = dh_malloc(e, (size_t)(n ? n : 1), sizeof(uint32_t));
        if (!x->off[t] || !x->rows[t]) {
            rc = DH_ENOMEM;
            break;
        }
        if ((rc = read_exact(f, x->off[t], (size_t)(nbk + 1) * 4, name, e)) ||
            (rc = read_exact(f, x->rows[t], (size_t)n * 4, name, e)))
            break;
        if (!host_le()) {
            swap32(x->off[t], nbk + 1);
            swap32(x->rows[t], n);
        }
        if (table_crc(x, t) != get32(h + MIH_HEAD_FIXED + MIH_HEAD_TABLE * t + 8)) {
            rc = dh_seterr(e, DH_ECHECKSUM, "%s: table %d is damaged (checksum)", name, t);
            break;
        }
        rc = check_table(x, t, seen, name, e);
    }
    free(seen);
    if (!rc) rc = run_build(x, 0, nthreads, e);
    for (int t = 0; !rc && t < x->m; t++) rc = check_buckets(x, t, name, e);
    if (rc) {
        dh_mih_free(x);
        return rc;
    }
    *out = x;
    return DH_OK;
}

/* ---- search ---------------------------------------------------------------------------- */

typedef struct mih_state {
    int64_t *cnt; /* (bits+1) accepted rows per distance */
    int bound;    /* rows with distance <= bound may still be in the result */
    int64_t inb;  /* accepted rows with distance <= bound */
    int64_t R;
    int64_t nc, cap;
    uint32_t *cidx;
    uint16_t *cd;
    int64_t *pos;          /* (bits+1) */
    uint32_t *kbuf, *ktmp; /* (kcap) rows grouped by distance */
    int64_t kcap;
    int oom;
    int64_t probes, cands, accepted;
    double last_cost; /* of the last search, in scan units */
} mih_state;

static void st_compact(mih_state *s) {
    int64_t k = 0;
    for (int64_t i = 0; i < s->nc; i++)
        if (s->cd[i] <= s->bound) {
            s->cidx[k] = s->cidx[i];
            s->cd[k] = s->cd[i];
            k++;
        }
    s->nc = k;
}

static inline void st_accept(mih_state *s, uint32_t row, int d) {
    if (s->nc == s->cap) {
        st_compact(s);
        if (s->nc > s->cap / 2) {
            int64_t nc = s->cap * 2;
            uint32_t *ni = realloc(s->cidx, (size_t)nc * sizeof *ni);
            if (ni) s->cidx = ni;
            uint16_t *nd = ni ? realloc(s->cd, (size_t)nc * sizeof *nd) : NULL;
            if (nd) s->cd = nd;
            if (!ni || !nd) {
                s->oom = 1;
                return;
            }
            s->cap = nc;
        }
    }
    s->accepted++;
    s->cidx[s->nc] = row;
    s->cd[s->nc] = (uint16_t)d;
    s->nc++;
    s->cnt[d]++;
    s->inb++;
    while (s->bound > 0 && s->inb - s->cnt[s->bound] >= s->R) {
        s->inb -= s->cnt[s->bound];
        s->bound--;
    }
}

/* Was the row with x = code ^ query reached before step (r, t)? Yes when
 * some other substring j has (d_j, j) < (r, t). Codes of one or two words
 * use the substrings' masks. */
static inline __attribute__((always_inline)) int seen_before(const dh_mih *X, const uint64_t *x, int r, int t,
                                                             const int W) {
    for (int j = 0; j < X->m; j++) {
        if (j == t) continue;
        int dj;
        if (W == 1)
            dj = dh_popcount64(x[0] & X->mask[j][0]);
        else if (W == 2)
            dj = dh_popcount64(x[0] & X->mask[j][0]) + dh_popcount64(x[1] & X->mask[j][1]);
        else
            dj = dh_popcount64(sub_of(x, X->beg[j], X->len[j]));
        if (dj < r || (dj == r && j < t)) return 1;
    }
    return 0;
}

/* The codes [b, e) of a bucket of table t, reached at step (r, t). */
static inline __attribute__((always_inline)) void scan_bucket(const dh_mih *X, mih_state *s, const uint64_t *q,
                                                              const uint64_t *codes, const uint32_t *rows, uint32_t b,
                                                              uint32_t e, int r, int t, const int W) {
    uint64_t x[MIH_MAX_W];
    for (uint32_t p = b; p < e; p++) {
        const uint64_t *c = codes + (int64_t)p * W;
        int d = 0;
        for (int w = 0; w < W; w++) {
            x[w] = c[w] ^ q[w];
            d += dh_popcount64(x[w]);
        }
        if (d <= s->bound && !seen_before(X, x, r, t, W)) st_accept(s, rows[p], d);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MIH_HAVE_AVX512 1
/* One-word codes, 8 at a time with AVX-512 VPOPCNTQ; the rows within the
 * bound are taken one by one (the bound may shrink within the 8). */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void scan_bucket_w1_avx512(const dh_mih *X, mih_state *s,
                                                                                     uint64_t q0, const uint64_t *codes,
                                                                                     const uint32_t *rows, uint32_t b,
                                                                                     uint32_t e, int r, int t) {
    __m512i qa = _mm512_set1_epi64((long long)q0);
    uint32_t p = b;
    for (; p + 8 <= e; p += 8) {
        __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(codes + p)), qa));
        __mmask8 m = _mm512_cmple_epu64_mask(d, _mm512_set1_epi64(s->bound));
        while (m) {
            int k = __builtin_ctz(m);
            m &= (__mmask8)(m - 1);
            uint64_t x = codes[p + k] ^ q0;
            int dd = dh_popcount64(x);
            if (dd <= s->bound && !seen_before(X, &x, r, t, 1)) st_accept(s, rows[p + k], dd);
        }
    }
    scan_bucket(X, s, &q0, codes, rows, p, e, r, t, 1);
}
#endif

static int mih_use_avx512(void) {
#ifdef MIH_HAVE_AVX512
    const char *v = getenv("DH_NO_SIMD");
    if (v && *v && strcmp(v, "0") != 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
#else
    return 0;
#endif
}

/* Probes go in groups: the group's offsets are prefetched, then the
 * buckets' first codes, then the buckets are read. */
#define MIH_GROUP 32

/* Every bucket of table t at exactly r bits from the query's substring qv:
 * the values qv ^ c for every c of r bits among the substring's len
 * (Gosper's order). */
static inline __attribute__((always_inline)) void mih_step_w(const dh_mih *X, mih_state *s, const uint64_t *q,
                                                             uint32_t qv, int t, int r, const int W) {
    int len = X->len[t];
    const uint32_t *off = X->off[t], *rows = X->rows[t];
    const uint64_t *codes = X->codes[t];
    const uint32_t lim = (uint32_t)1 << len;
    uint32_t c = r ? (((uint32_t)1 << r) - 1) : 0;
    if (c >= lim) return;
    uint32_t vals[MIH_GROUP], bb[MIH_GROUP], ee[MIH_GROUP];
    int more = 1;
    while (more) {
        int k = 0;
        while (k < MIH_GROUP) {
            vals[k] = qv ^ c;
            __builtin_prefetch(off + vals[k]);
            k++;
            if (c == 0) {
                more = 0;
                break;
            }
            uint32_t u = c & (0u - c), v = c + u;
            if (v >= lim) {
                more = 0;
                break;
            }
            c = v + (((v ^ c) / u) >> 2);
            if (c >= lim) {
                more = 0;
                break;
            }
        }
        for (int i = 0; i < k; i++) {
            bb[i] = off[vals[i]];
            ee[i] = off[vals[i] + 1];
            if (ee[i] > bb[i]) __builtin_prefetch(codes + (int64_t)bb[i] * W);
        }
        s->probes += k;
        for (int i = 0; i < k; i++) {
            if (ee[i] == bb[i]) continue;
            s->cands += ee[i] - bb[i];
#ifdef MIH_HAVE_AVX512
            if (W == 1 && X->simd && ee[i] - bb[i] >= 8) {
                scan_bucket_w1_avx512(X, s, q[0], codes, rows, bb[i], ee[i], r, t);
                continue;
            }
#endif
            scan_bucket(X, s, q, codes, rows, bb[i], ee[i], r, t, W);
        }
    }
}

static void mih_step(const dh_mih *X, mih_state *s, const uint64_t *q, uint32_t qv, int t, int r) {
    if (X->W == 1)
        mih_step_w(X, s, q, qv, t, r, 1);
    else if (X->W == 2)
        mih_step_w(X, s, q, qv, t, r, 2);
    else
        mih_step_w(X, s, q, qv, t, r, X->W);
}

/* Sort rows ascending: insertion sort when short, else LSD radix on
 * 8-bit digits over the bits in use. */
static void sort_rows(uint32_t *k, uint32_t *tmp, int64_t n, int nbits) {
    if (n <= 32) {
        for (int64_t i = 1; i < n; i++) {
            uint32_t v = k[i];
            int64_t j = i;
            while (j > 0 && k[j - 1] > v) {
                k[j] = k[j - 1];
                j--;
            }
            k[j] = v;
        }
        return;
    }
    uint32_t *src = k, *dst = tmp;
    int64_t cnt[256];
    for (int shift = 0; shift < nbits; shift += 8) {
        memset(cnt, 0, sizeof cnt);
        for (int64_t i = 0; i < n; i++) cnt[(src[i] >> shift) & 255]++;
        int64_t sum = 0;
        for (int d = 0; d < 256; d++) {
            int64_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & 255]++] = src[i];
        uint32_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != k) memcpy(k, src, (size_t)n * sizeof *k);
}

typedef struct search_job {
    dh_mih *X;
    const uint64_t *q;
    int64_t nq, top, R;
    int radius, maxd;
    double budget; /* in scanned codes */
    int64_t *res_n;
    int64_t **res_idx;
    uint16_t **res_d;
    int oom;
    dh_err err;
    pthread_mutex_t mu;
} search_job;

/* Queries set aside for the scan, ranked together (the scan is fastest on
 * a block of queries: the database tiles stay in cache for all of them). */
#define MIH_SCAN_BLOCK 16
typedef struct scan_block {
    int n;
    int64_t qi[MIH_SCAN_BLOCK];
    uint64_t q[MIH_SCAN_BLOCK * MIH_MAX_W];
} scan_block;

static int scan_flush(search_job *jb, scan_block *b) {
    dh_mih *X = jb->X;
    if (!b->n) return 0;
    dh_rank_result r;
    int rc = dh_rank_cpu(b->q, b->n, X->db, X->n, X->bits, jb->top, jb->radius, 1, &r, NULL) == DH_OK ? 0 : -1;
    for (int i = 0; !rc && i < b->n; i++) {
        int64_t qi = b->qi[i], m = r.off[i + 1] - r.off[i];
        jb->res_n[qi] = m;
        jb->res_idx[qi] = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        jb->res_d[qi] = malloc((size_t)(m ? m : 1) * sizeof(uint16_t));
        if (!jb->res_idx[qi] || !jb->res_d[qi]) {
            rc = -1;
            break;
        }
        memcpy(jb->res_idx[qi], r.idx + r.off[i], (size_t)m * sizeof(int64_t));
        for (int64_t k = 0; k < m; k++) jb->res_d[qi][k] = (uint16_t)r.dist[r.off[i] + k];
    }
    if (r.off) dh_rank_result_free(&r);
    b->n = 0;
    return rc;
}

static int scan_add(search_job *jb, scan_block *b, int64_t qi) {
    memcpy(b->q + (int64_t)b->n * jb->X->W, jb->q + qi * jb->X->W, (size_t)jb->X->W * 8);
    b->qi[b->n++] = qi;
    return b->n == MIH_SCAN_BLOCK ? scan_flush(jb, b) : 0;
}

/* The work of a search so far, in scan units. */
static double mih_cost(const dh_mih *X, const mih_state *s, int64_t p0, int64_t c0, int64_t a0) {
    return (double)(s->probes - p0) * MIH_PROBE_COST + (double)(s->cands - c0) * MIH_CAND_COST * X->W +
           (double)(s->accepted - a0) * MIH_ACCEPT_COST;
}

static int search_one(search_job *jb, mih_state *s, int64_t qi) {
    dh_mih *X = jb->X;
    const uint64_t *q = jb->q + qi * X->W;
    memset(s->cnt, 0, (size_t)(X->bits + 1) * sizeof *s->cnt);
    s->bound = jb->maxd;
    s->inb = 0;
    s->nc = 0;
    s->R = jb->R;
    int64_t p0 = s->probes, c0 = s->cands, a0 = s->accepted;
    uint32_t qv[DH_MIH_MAX_TABLES];
    for (int t = 0; t < X->m; t++) qv[t] = sub_of(q, X->beg[t], X->len[t]);
    /* the first buckets of every table at once (their offsets were
     * prefetched with the previous query), and the next query's offsets */
    for (int t = 0; t < X->m; t++) __builtin_prefetch(X->codes[t] + (int64_t)X->off[t][qv[t]] * X->W);
    if (qi + 1 < jb->nq)
        for (int t = 0; t < X->m; t++) __builtin_prefetch(X->off[t] + sub_of(q + X->W, X->beg[t], X->len[t]));
    int over = 0;
    for (int r = 0; !over; r++) {
        for (int t = 0; t < X->m; t++) {
            mih_step(X, s, q, qv[t], t, r);
            if (s->oom) return -1;
            if (r >= X->len[t] || (int64_t)r * X->m + t >= s->bound) {
                over = 1; /* every row that can be in the result has been found */
                break;
            }
            if (jb->budget > 0 && mih_cost(X, s, p0, c0, a0) > jb->budget) {
                s->last_cost = mih_cost(X, s, p0, c0, a0);
                return 1; /* a scan costs less */
            }
        }
    }
    /* the rows within the bound, by (distance, row): a counting sort by
     * distance, then each distance's rows sorted, up to R rows */
    int B = s->bound;
    int64_t total = 0;
    for (int d = 0; d <= B; d++) {
        s->pos[d] = total;
        total += s->cnt[d];
    }
    if (total > s->kcap) {
        uint32_t *nk = realloc(s->kbuf, (size_t)total * sizeof *nk);
        if (nk) s->kbuf = nk;
        uint32_t *nt = nk ? realloc(s->ktmp, (size_t)total * sizeof *nt) : NULL;
        if (nt) s->ktmp = nt;
        if (!nk || !nt) return -1;
        s->kcap = total;
    }
    for (int64_t i = 0; i < s->nc; i++)
        if (s->cd[i] <= B) s->kbuf[s->pos[s->cd[i]]++] = s->cidx[i];
    int nbits = 32;
    while (nbits > 1 && ((uint64_t)(X->n - 1) >> (nbits - 1)) == 0) nbits--;
    s->last_cost = mih_cost(X, s, p0, c0, a0);
    int64_t m = total < jb->R ? total : jb->R;
    int64_t *oi = malloc((size_t)(m ? m : 1) * sizeof *oi);
    uint16_t *od = malloc((size_t)(m ? m : 1) * sizeof *od);
    if (!oi || !od) {
        free(oi);
        free(od);
        return -1;
    }
    int64_t o = 0, g0 = 0;
    for (int d = 0; d <= B && o < m; d++) {
        int64_t g1 = s->pos[d]; /* the group ends where the next one starts */
        sort_rows(s->kbuf + g0, s->ktmp, g1 - g0, nbits);
        for (int64_t i = g0; i < g1 && o < m; i++, o++) {
            oi[o] = s->kbuf[i];
            od[o] = (uint16_t)d;
        }
        g0 = g1;
    }
    jb->res_n[qi] = m;
    jb->res_idx[qi] = oi;
    jb->res_d[qi] = od;
    return 0;
}

/* Each thread follows its queries: while the searches cost less than a
 * scan on average (a moving average of their cost in scan units), each
 * query is searched, and one that reaches a scan's cost is set aside for
 * the scan; while they cost more, the queries go to the scan, and every
 * MIH_RETRY-th is searched again to follow the workload. */
#define MIH_RETRY 32

static void search_worker(void *ctx, int64_t q0, int64_t q1, int tid) {
    search_job *jb = ctx;
    dh_mih *X = jb->X;
    (void)tid;
    mih_state s;
    memset(&s, 0, sizeof s);
    s.cap = 4096;
    s.cnt = malloc((size_t)(X->bits + 1) * sizeof *s.cnt);
    s.cidx = malloc((size_t)s.cap * sizeof *s.cidx);
    s.cd = malloc((size_t)s.cap * sizeof *s.cd);
    s.pos = malloc((size_t)(X->bits + 1) * sizeof *s.pos);
    scan_block *blk = malloc(sizeof *blk);
    int oom = !s.cnt || !s.cidx || !s.cd || !s.pos || !blk;
    if (blk) blk->n = 0;
    int64_t scans = 0, since = 0;
    double scan_units = (double)X->n * X->W, avg = 0;
    for (int64_t qi = q0; !oom && qi < q1; qi++) {
        int rc = 1;
        if (jb->budget == 0 || (jb->budget > 0 && (avg < jb->budget || ++since >= MIH_RETRY))) {
            since = 0;
            rc = search_one(jb, &s, qi);
            if (rc >= 0 && jb->budget > 0) /* a query set aside costs its search and a scan */
                avg = 0.75 * avg + 0.25 * (s.last_cost + (rc == 1 ? scan_units : 0));
        }
        if (rc == 1) {
            scans++;
            rc = scan_add(jb, blk, qi);
        }
        if (rc < 0) oom = 1;
    }
    if (!oom && blk && scan_flush(jb, blk) < 0) oom = 1;
    free(blk);
    free(s.cnt);
    free(s.cidx);
    free(s.cd);
    free(s.pos);
    free(s.kbuf);
    free(s.ktmp);
    pthread_mutex_lock(&jb->mu);
    if (oom) jb->oom = 1;
    X->st.probes += s.probes;
    X->st.candidates += s.cands;
    X->st.scans += scans;
    X->st.queries += q1 - q0;
    pthread_mutex_unlock(&jb->mu);
}

int dh_mih_search(dh_mih *X, const uint64_t *q, int64_t nq, int64_t top, int radius, int nthreads, dh_rank_result *out,
                  dh_err *e) {
    memset(out, 0, sizeof *out);
    if (top < 1) return dh_seterr(e, DH_EINVAL, "top must be at least 1");
    if (nq < 0) return dh_seterr(e, DH_EINVAL, "negative row count");
    if (dh_ham_check_padding(q, nq, X->bits, "queries", e)) return DH_EINVAL;
    int64_t R = top < X->n ? top : X->n;
    int maxd = (radius >= 0 && radius < X->bits) ? radius : X->bits;
    if (X->n == 0 || nq == 0 || (R == X->n && maxd == X->bits)) /* everything: the scan */
        return dh_rank_cpu(q, nq, X->db, X->n, X->bits, top, radius, nthreads, out, e);
    search_job jb;
    memset(&jb, 0, sizeof jb);
    jb.X = X;
    jb.q = q;
    jb.nq = nq;
    jb.top = top;
    jb.R = R;
    jb.radius = radius;
    jb.maxd = maxd;
    jb.budget = X->budget > 0 ? X->budget * (double)X->n * X->W : X->budget;
    out->nq = nq;
    out->off = dh_calloc(e, (size_t)nq + 1, sizeof *out->off);
    jb.res_n = dh_calloc(e, (size_t)nq, sizeof *jb.res_n);
    jb.res_idx = dh_calloc(e, (size_t)nq, sizeof *jb.res_idx);
    jb.res_d = dh_calloc(e, (size_t)nq, sizeof *jb.res_d);
    int rc = DH_OK;
    if (!out->off || !jb.res_n || !jb.res_idx || !jb.res_d) {
        rc = DH_ENOMEM;
        goto done;
    }
    pthread_mutex_init(&jb.mu, NULL);
    dh_rank_parallel(nthreads < 1 ? 1 : nthreads, nq, search_worker, &jb);
    pthread_mutex_destroy(&jb.mu);
    if (jb.oom) {
        rc = dh_seterr(e, DH_ENOMEM, "out of memory searching %lld queries", (long long)nq);
        goto done;
    }
    for (int64_t i = 0; i < nq; i++) out->off[i + 1] = out->off[i] + jb.res_n[i];
    int64_t tot = out->off[nq];
    out->idx = dh_malloc(e, (size_t)(tot ? tot : 1), sizeof *out->idx);
    out->dist = dh_malloc(e, (size_t)(tot ? tot : 1), sizeof *out->dist);
    if (!out->idx || !out->dist) {
        rc = DH_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < nq; i++) {
        int64_t o = out->off[i];
        memcpy(out->idx + o, jb.res_idx[i], (size_t)jb.res_n[i] * sizeof(int64_t));
        for (int64_t k = 0; k < jb.res_n[i]; k++) out->dist[o + k] = jb.res_d[i][k];
    }
done:
    if (jb.res_idx)
        for (int64_t i = 0; i < nq; i++) free(jb.res_idx[i]);
    if (jb.res_d)
        for (int64_t i = 0; i < nq; i++) free(jb.res_d[i]);
    free(jb.res_n);
    free(jb.res_idx);
    free(jb.res_d);
    if (rc != DH_OK) dh_rank_result_free(out);
    return rc;
}
