/* Unit tests of the stream format library (formats/dhs.h). */
#define _GNU_SOURCE
#include "../unit/check.h"
#include "dhs.h"
#include "dh_prog.h"
#include <stdint.h>
#include <unistd.h>

/* A stream with every dtype: u8[2,3], i32, i64[2], f32[4], f64, bits[13], str, f32[-1]. */
static void make_schema(dhs_schema *s) {
    int64_t sh23[2] = { 2, 3 }, sh2[1] = { 2 }, sh4[1] = { 4 }, sh13[1] = { 13 }, var[1] = { -1 };
    dhs_schema_init(s, "test");
    dhs_schema_add(s, "px", DHS_U8, 2, sh23, NULL);
    dhs_schema_add(s, "label", DHS_I32, 0, NULL, NULL);
    dhs_schema_add(s, "big", DHS_I64, 1, sh2, NULL);
    dhs_schema_add(s, "z", DHS_F32, 1, sh4, NULL);
    dhs_schema_add(s, "d", DHS_F64, 0, NULL, NULL);
    dhs_schema_add(s, "code", DHS_BITS, 1, sh13, NULL);
    dhs_schema_add(s, "id", DHS_STR, 0, NULL, NULL);
    dhs_schema_add(s, "v", DHS_F32, 1, var, NULL);
}

typedef struct {
    uint8_t px[6];
    int32_t label;
    int64_t big[2];
    float z[4];
    double d;
    uint8_t code[2];
    char id[16];
    float v[3];
    uint32_t vl;
} row_t;

static void gen_row(int64_t i, row_t *r) {
    memset(r, 0, sizeof *r);
    for (int k = 0; k < 6; k++) r->px[k] = (uint8_t)(i * 7 + k);
    r->label = (int32_t)(i % 10) - 3;
    r->big[0] = (int64_t)i << 33;
    r->big[1] = -i;
    for (int k = 0; k < 4; k++) r->z[k] = (float)i * 0.5f + k;
    r->d = 1.0 / (double)(i + 1);
    r->code[0] = (uint8_t)(i * 31);
    r->code[1] = (uint8_t)(i & 0x1f);
    snprintf(r->id, sizeof r->id, "row%lld", (long long)i);
    r->vl = (uint32_t)(i % 4);
    for (uint32_t k = 0; k < r->vl; k++) r->v[k] = (float)(i + k);
}

/* Write n rows (in batches of `batch`) with chunk size chunk_rows into a memory buffer. */
static char *write_stream(int64_t n, int64_t batch, int64_t chunk_rows, size_t *size, const char *source) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, size);
    dhs_schema s;
    make_schema(&s);
    dhs_meta *m = dhs_meta_new();
    const char *classes[] = { "cat", "dog" };
    dhs_meta_set_strv(m, "classes", classes, 2);
    dhs_meta_set_str(m, "source", source);
    dhs_meta_set_int(m, "n", n);
    dhs_meta_set_float(m, "pi", 3.25);
    dh_err e;
    dhs_writer *w = dhs_writer_open(f, "mem", &s, m, &e);
    dhs_meta_free(m);
    if (!w) {
        fclose(f);
        free(buf);
        return NULL;
    }
    if (chunk_rows) dhs_writer_set_chunk_rows(w, chunk_rows);
    for (int64_t i0 = 0; i0 < n; i0 += batch) {
        int64_t b = n - i0 < batch ? n - i0 : batch;
        uint8_t px[6 * 64];
        int32_t lab[64];
        int64_t big[128];
        float z[256];
        double d[64];
        uint8_t code[128];
        char ids[64 * 16];
        uint32_t idl[64];
        float v[64 * 3];
        uint32_t vl[64];
        size_t io = 0, vo = 0;
        for (int64_t k = 0; k < b; k++) {
            row_t r;
            gen_row(i0 + k, &r);
            memcpy(px + 6 * k, r.px, 6);
            lab[k] = r.label;
            memcpy(big + 2 * k, r.big, 16);
            memcpy(z + 4 * k, r.z, 16);
            d[k] = r.d;
            memcpy(code + 2 * k, r.code, 2);
            idl[k] = (uint32_t)strlen(r.id);
            memcpy(ids + io, r.id, idl[k]);
            io += idl[k];
            vl[k] = r.vl;
            memcpy(v + vo, r.v, r.vl * 4);
            vo += r.vl;
        }
        const void *cols[8] = { px, lab, big, z, d, code, ids, v };
        const uint32_t *lens[8] = { 0, 0, 0, 0, 0, 0, idl, vl };
        if (dhs_write_rows(w, b, cols, lens, &e)) {
            dhs_writer_abort(w);
            fclose(f);
            free(buf);
            return NULL;
        }
    }
    if (dhs_writer_close(w, &e)) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    return buf;
}

/* Read a memory stream fully, checking every row against gen_row. Returns
 * the error code (DH_OK on success); *nrows gets the rows seen. */
static int read_check(const char *buf, size_t size, int64_t *nrows, int *mismatch, dh_err *e) {
    FILE *f = fmemopen((void *)buf, size, "rb");
    if (!size) f = fopen("/dev/null", "rb");
    dhs_reader *r = dhs_open(f, "mem", NULL, e);
    *nrows = 0;
    *mismatch = 0;
    if (!r) {
        fclose(f);
        return e->code;
    }
    int rc;
    for (;;) {
        dhs_chunk *c;
        rc = dhs_read_chunk(r, &c, e);
        if (rc) break;
        for (int64_t i = 0; i < c->nrows; i++) {
            row_t x;
            gen_row(*nrows % 1000 + 0, &x);
            int64_t gi = *nrows;
            gen_row(gi % 100000, &x);
            if (memcmp((uint8_t *)c->col[0] + 6 * i, x.px, 6) || ((int32_t *)c->col[1])[i] != x.label ||
                memcmp((int64_t *)c->col[2] + 2 * i, x.big, 16) || memcmp((float *)c->col[3] + 4 * i, x.z, 16) ||
                ((double *)c->col[4])[i] != x.d || memcmp((uint8_t *)c->col[5] + 2 * i, x.code, 2))
                *mismatch = 1;
            size_t l;
            const char *id = dhs_str_at(c, 6, i, &l);
            if (l != strlen(x.id) || memcmp(id, x.id, l)) *mismatch = 1;
            if (c->off[7][i + 1] - c->off[7][i] != x.vl || memcmp((float *)c->col[7] + c->off[7][i], x.v, x.vl * 4))
                *mismatch = 1;
            (*nrows)++;
        }
    }
    dhs_close(r);
    fclose(f);
    return rc == DH_EOF ? DH_OK : rc;
}

static void t_roundtrip_all_dtypes(void) {
    size_t n;
    int64_t rows;
    int mm;
    dh_err e;
    char *b = write_stream(1000, 37, 0, &n, "a");
    REQUIRE(b);
    CHECKF(read_check(b, n, &rows, &mm, &e) == DH_OK, "%s", e.msg);
    CHECK(rows == 1000);
    CHECK(!mm);
    free(b);
}

static void t_chunk_boundaries(void) {
    int64_t sizes[] = { 1, 2, 3, 7, 64, 999, 1000, 1001 };
    for (int k = 0; k < 8; k++) {
        size_t n;
        int64_t rows;
        int mm;
        dh_err e;
        char *b = write_stream(1000, 29, sizes[k], &n, "a");
        REQUIRE(b);
        CHECKF(read_check(b, n, &rows, &mm, &e) == DH_OK, "chunk %lld: %s", (long long)sizes[k], e.msg);
        CHECK(rows == 1000 && !mm);
        free(b);
    }
}

static void t_empty_stream(void) {
    size_t n;
    int64_t rows;
    int mm;
    dh_err e;
    char *b = write_stream(0, 1, 0, &n, "a");
    REQUIRE(b);
    CHECK(read_check(b, n, &rows, &mm, &e) == DH_OK);
    CHECK(rows == 0);
    /* the schema and meta are there */
    FILE *f = fmemopen(b, n, "rb");
    dhs_reader *r = dhs_open(f, "mem", NULL, &e);
    REQUIRE(r);
    CHECK(dhs_reader_schema(r)->nfields == 8);
    CHECK(!strcmp(dhs_meta_str_at(dhs_reader_meta(r), "classes", 1), "dog"));
    double pi;
    CHECK(dhs_meta_float(dhs_reader_meta(r), "pi", &pi) == 0 && pi == 3.25);
    dhs_close(r);
    fclose(f);
    free(b);
}

static void t_empty_input_is_error(void) {
    int64_t rows;
    int mm;
    dh_err e;
    CHECK(read_check("", 0, &rows, &mm, &e) == DH_EFORMAT);
}

static void t_concatenation(void) {
    size_t n1, n2;
    int64_t rows;
    int mm;
    dh_err e;
    char *a = write_stream(100, 10, 7, &n1, "first");
    char *b = write_stream(100, 10, 7, &n2, "second");
    REQUIRE(a && b);
    char *c = malloc(n1 + n2);
    memcpy(c, a, n1);
    memcpy(c + n1, b, n2);
    /* rows continue: gen_row(100..199) differ from stream 2's rows 0..99, so
     * check counts and use a direct read */
    FILE *f = fmemopen(c, n1 + n2, "rb");
    dhs_reader *r = dhs_open(f, "mem", NULL, &e);
    REQUIRE(r);
    dhs_chunk *ch;
    int rc;
    int64_t tot = 0;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) tot += ch->nrows;
    CHECKF(rc == DH_EOF, "%s", e.msg);
    CHECK(tot == 200);
    CHECK(dhs_reader_streams(r) == 2);
    CHECK(!strcmp(dhs_meta_str(dhs_reader_meta(r), "source"), "first"));
    dhs_close(r);
    fclose(f);
    (void)rows;
    (void)mm;
    free(a);
    free(b);
    free(c);
}

static void t_concatenation_schema_mismatch(void) {
    size_t n1;
    dh_err e;
    char *a = write_stream(10, 10, 0, &n1, "a");
    REQUIRE(a);
    char *b = NULL;
    size_t n2;
    FILE *f = open_memstream(&b, &n2);
    dhs_schema s;
    dhs_schema_init(&s, "test");
    dhs_schema_add(&s, "label", DHS_I32, 0, NULL, NULL);
    dhs_writer *w = dhs_writer_open(f, "b", &s, NULL, &e);
    int32_t l[3] = { 1, 2, 3 };
    const void *cols[1] = { l };
    dhs_write_rows(w, 3, cols, NULL, &e);
    dhs_writer_close(w, &e);
    fclose(f);
    char *c = malloc(n1 + n2);
    memcpy(c, a, n1);
    memcpy(c + n1, b, n2);
    int64_t rows;
    int mm;
    CHECK(read_check(c, n1 + n2, &rows, &mm, &e) == DH_ESCHEMA);
    CHECK(strstr(e.msg, "does not match") != NULL);
    free(a);
    free(b);
    free(c);
}

static void t_little_endian_bytes(void) {
    char *b = NULL;
    size_t n;
    dh_err e;
    FILE *f = open_memstream(&b, &n);
    dhs_schema s;
    dhs_schema_init(&s, "x");
    dhs_schema_add(&s, "v", DHS_I32, 0, NULL, NULL);
    dhs_writer *w = dhs_writer_open(f, "b", &s, NULL, &e);
    int32_t v = 0x01020304;
    const void *cols[1] = { &v };
    dhs_write_rows(w, 1, cols, NULL, &e);
    dhs_writer_close(w, &e);
    fclose(f);
    const unsigned char want[] = { 0xc4, 4, 0x04, 0x03, 0x02, 0x01 }; /* bin8 of 4 bytes, LE */
    CHECK(memmem(b, n, want, sizeof want) != NULL);
    free(b);
}

static void t_truncation_every_offset(void) {
    size_t n;
    dh_err e;
    char *b = write_stream(20, 7, 6, &n, "a");
    REQUIRE(b);
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t rows;
        int mm;
        int rc = read_check(b, k, &rows, &mm, &e);
        if (rc == DH_OK) {
            bad = 1;
            fprintf(stderr, "prefix of %zu/%zu bytes accepted\n", k, n);
            break;
        }
        if (rc != DH_ETRUNC && rc != DH_EFORMAT) {
            bad = 1;
            fprintf(stderr, "prefix %zu: code %d %s\n", k, rc, e.msg);
            break;
        }
    }
    CHECK(!bad);
    free(b);
}

static void t_bit_flips_detected(void) {
    size_t n;
    dh_err e;
    char *b = write_stream(12, 5, 4, &n, "a");
    REQUIRE(b);
    int undetected = 0;
    for (size_t k = 0; k < n * 8; k++) {
        b[k / 8] ^= (char)(1 << (k % 8));
        int64_t rows;
        int mm;
        int rc = read_check(b, n, &rows, &mm, &e);
        if (rc == DH_OK) {
            undetected++;
            if (undetected < 5) fprintf(stderr, "flip of bit %zu of byte %zu undetected\n", k % 8, k / 8);
        }
        b[k / 8] ^= (char)(1 << (k % 8));
    }
    CHECKF(undetected == 0, "%d of %zu bit flips undetected", undetected, n * 8);
    free(b);
}

static void t_wrong_version(void) {
    size_t n;
    dh_err e;
    int64_t rows;
    int mm;
    char *b = write_stream(3, 3, 0, &n, "a");
    REQUIRE(b);
    char *p = memmem(b, n, "\xa7version\x01", 9);
    REQUIRE(p);
    p[8] = 2;
    CHECK(read_check(b, n, &rows, &mm, &e) == DH_EFORMAT);
    CHECK(strstr(e.msg, "version 2") != NULL);
    free(b);
}

static void t_absurd_sizes_rejected_before_allocation(void) {
    dh_err e;
    int64_t rows;
    int mm;
    /* header: a map claiming 2^32-1 entries */
    const char h1[] = "\xdf\xff\xff\xff\xff";
    CHECK(read_check(h1, 5, &rows, &mm, &e) != DH_OK);
    /* a valid header followed by a chunk claiming 2^39 rows */
    size_t n;
    char *b = write_stream(0, 1, 0, &n, "a");
    REQUIRE(b);
    /* strip the trailer: find the trailer map (0x85 + "end") */
    char *t = memmem(b, n,
                     "\x85\xa3"
                     "end",
                     5);
    REQUIRE(t);
    size_t hl = (size_t)(t - b);
    unsigned char chunk[] = { 0x83, 0xa4, 'r', 'o', 'w', 's', 0xcf, 0, 0, 0x02, 0, 0, 0, 0, 0 }; /* 2^41 rows */
    char *c = malloc(hl + 64);
    memcpy(c, b, hl);
    memcpy(c + hl, chunk, sizeof chunk);
    int rc = read_check(c, hl + sizeof chunk, &rows, &mm, &e);
    CHECKF(rc == DH_ELIMIT, "rc %d: %s", rc, e.msg);
    /* a chunk with a plausible row count but a 4 GiB bin */
    unsigned char chunk2[] = { 0x83, 0xa4, 'r', 'o',  'w',  's',  0x01, 0xa4, 'c',
                               'o',  'l',  's', 0x98, 0xc6, 0xff, 0xff, 0xff, 0xf0 };
    memcpy(c + hl, chunk2, sizeof chunk2);
    rc = read_check(c, hl + sizeof chunk2, &rows, &mm, &e);
    CHECKF(rc == DH_ELIMIT || rc == DH_EFORMAT, "rc %d: %s", rc, e.msg);
    free(b);
    free(c);
}

static void t_random_bytes(void) {
    unsigned s = 12345;
    int accepted = 0;
    for (int k = 0; k < 2000; k++) {
        char buf[256];
        size_t n = 1 + (s = s * 1103515245u + 12345u) % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (char)((s = s * 1103515245u + 12345u) >> 16);
        if (k % 3 == 0) buf[0] = (char)0x85; /* look like a map */
        dh_err e;
        int64_t rows;
        int mm;
        if (read_check(buf, n, &rows, &mm, &e) == DH_OK) accepted++;
    }
    CHECK(accepted == 0);
}

static void t_meta_roundtrip_and_json(void) {
    dhs_meta *m = dhs_meta_new();
    int64_t iv[3] = { 1, -2, 3 };
    dhs_meta_set_intv(m, "counts", iv, 3);
    dhs_meta_set_str(m, "q", "a\"b");
    dhs_meta_set_bool(m, "yes", 1);
    dhs_meta *sub = dhs_meta_new();
    dhs_meta_set_int(sub, "k", 7);
    dhs_meta_set_map(m, "sub", sub);
    dhs_meta_free(sub);
    dhs_meta_set_int(m, "q2", 5);
    dhs_meta_del(m, "q2");
    char *j = dhs_meta_to_json(m);
    CHECKF(!strcmp(j, "{\"counts\": [1, -2, 3], \"q\": \"a\\\"b\", \"yes\": true, \"sub\": {\"k\": 7}}"), "%s", j);
    free(j);
    /* through a stream */
    char *b = NULL;
    size_t n;
    dh_err e;
    FILE *f = open_memstream(&b, &n);
    dhs_schema s;
    dhs_schema_init(&s, "x");
    dhs_schema_add(&s, "v", DHS_I32, 0, NULL, NULL);
    dhs_writer *w = dhs_writer_open(f, "b", &s, m, &e);
    dhs_writer_close(w, &e);
    fclose(f);
    f = fmemopen(b, n, "rb");
    dhs_reader *r = dhs_open(f, "b", NULL, &e);
    REQUIRE(r);
    int64_t x;
    CHECK(dhs_meta_int_at(dhs_reader_meta(r), "counts", 1, &x) == 0 && x == -2);
    CHECK(dhs_meta_int(dhs_meta_map(dhs_reader_meta(r), "sub"), "k", &x) == 0 && x == 7);
    dhs_close(r);
    fclose(f);
    free(b);
    dhs_meta_free(m);
}

static void t_model_roundtrip(void) {
    dhs_model m;
    dh_err e;
    dhs_model_init(&m);
    int64_t sh[2] = { 3, 4 }, sh1[1] = { 5 };
    float w[12], bb[5];
    for (int i = 0; i < 12; i++) w[i] = (float)i / 3;
    for (int i = 0; i < 5; i++) bb[i] = -(float)i;
    REQUIRE(dhs_model_add(&m, "fc.weight", 2, sh, w, &e));
    REQUIRE(dhs_model_add(&m, "fc.bias", 1, sh1, bb, &e));
    CHECK(dhs_model_add(&m, "fc.bias", 1, sh1, bb, &e) == NULL);
    dhs_meta_set_str(m.meta, "model", "net");
    char path[] = "/tmp/dhs_model_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECKF(dh_model_save(path, &m, &e) == 0, "%s", e.msg);
    dhs_model m2;
    CHECKF(dhs_model_load(path, &m2, &e) == 0, "%s", e.msg);
    CHECK(m2.ntensors == 2);
    dhs_tensor *t = dhs_model_get(&m2, "fc.weight", 2, sh, &e);
    CHECK(t && !memcmp(t->data, w, sizeof w));
    int64_t wrong[2] = { 4, 3 };
    CHECK(dhs_model_get(&m2, "fc.weight", 2, wrong, &e) == NULL && e.code == DH_ESCHEMA);
    CHECK(!strcmp(dhs_meta_str(m2.meta, "model"), "net"));
    unlink(path);
    dhs_model_free(&m);
    dhs_model_free(&m2);
}

static void t_read_table(void) {
    size_t n;
    dh_err e;
    char *b = write_stream(500, 50, 33, &n, "a");
    REQUIRE(b);
    FILE *f = fmemopen(b, n, "rb");
    dhs_reader *r = dhs_open(f, "mem", NULL, &e);
    dhs_table t;
    CHECK(dhs_read_table(r, &t, 0, &e) == 0);
    CHECK(t.nrows == 500);
    row_t x;
    gen_row(321, &x);
    size_t l;
    const char *id = dhs_table_str_at(&t, 6, 321, &l);
    CHECK(l == strlen(x.id) && !memcmp(id, x.id, l));
    CHECK(((int32_t *)t.col[1])[321] == x.label);
    CHECK(t.off[7][322] - t.off[7][321] == x.vl);
    dhs_table_free(&t);
    dhs_close(r);
    fclose(f);
    free(b);
}

static void t_schema_errors(void) {
    dhs_schema s;
    dh_err e;
    dhs_schema_init(&s, "x");
    int64_t bad[1] = { 0 };
    CHECK(dhs_schema_add(&s, "a", DHS_F32, 1, bad, &e) < 0);
    CHECK(dhs_schema_add(&s, "", DHS_F32, 0, NULL, &e) < 0);
    CHECK(dhs_schema_add(&s, "a", DHS_F32, 0, NULL, &e) == 0);
    CHECK(dhs_schema_add(&s, "a", DHS_F32, 0, NULL, &e) < 0);
    CHECK(dhs_require_field(&s, "a", DHS_I32, -1, &e) < 0 && e.code == DH_ESCHEMA);
    CHECK(dhs_require_field(&s, "b", DHS_F32, -1, &e) < 0);
    CHECK(dhs_require_field(&s, "a", DHS_F32, 0, &e) == 0);
}

/* Variable-length i64 rows must be 8-byte aligned in a chunk, whatever the
 * row count (the u32 length table before them has 4*rows bytes). */
static void t_variable_rows_aligned(void) {
    for (int64_t n = 1; n <= 4; n++) {
        char *b = NULL;
        size_t sz;
        dh_err e;
        FILE *f = open_memstream(&b, &sz);
        dhs_schema s;
        int64_t var = -1;
        dhs_schema_init(&s, "x");
        dhs_schema_add(&s, "v", DHS_I64, 1, &var, NULL);
        dhs_writer *w = dhs_writer_open(f, "b", &s, NULL, &e);
        int64_t v[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        uint32_t l[4] = { 2, 2, 2, 2 };
        const void *cols[1] = { v };
        const uint32_t *lens[1] = { l };
        dhs_write_rows(w, n, cols, lens, &e);
        dhs_writer_close(w, &e);
        fclose(f);
        f = fmemopen(b, sz, "rb");
        dhs_reader *r = dhs_open(f, "b", NULL, &e);
        dhs_chunk *c;
        CHECK(r && dhs_read_chunk(r, &c, &e) == DH_OK);
        if (r && c) {
            CHECKF((uintptr_t)c->col[0] % 8 == 0, "%lld rows: data at %p", (long long)n, c->col[0]);
            CHECK(((int64_t *)c->col[0])[2 * n - 1] == 2 * n);
        }
        dhs_close(r);
        fclose(f);
        free(b);
    }
}

int main(void) {
    RUN(t_roundtrip_all_dtypes);
    RUN(t_chunk_boundaries);
    RUN(t_empty_stream);
    RUN(t_empty_input_is_error);
    RUN(t_concatenation);
    RUN(t_concatenation_schema_mismatch);
    RUN(t_little_endian_bytes);
    RUN(t_truncation_every_offset);
    RUN(t_bit_flips_detected);
    RUN(t_wrong_version);
    RUN(t_absurd_sizes_rejected_before_allocation);
    RUN(t_random_bytes);
    RUN(t_meta_roundtrip_and_json);
    RUN(t_model_roundtrip);
    RUN(t_read_table);
    RUN(t_schema_errors);
    RUN(t_variable_rows_aligned);
    return check_done();
}
