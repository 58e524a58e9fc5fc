/* libFuzzer target: the stream reader (formats/stream/dhs.c) must reject
 * any input cleanly — no crash, leak, hang or allocation beyond its limits —
 * and what it accepts must survive the writer: header, chunks, trailer,
 * concatenated streams, metadata (`make fuzz`, tests/fuzz/README.md).
 *
 * Inputs of odd size go through dhs_read_table (the programs that load a
 * whole stream), even ones through the chunk reader, each chunk written
 * again (whole, or as two row ranges when it has several rows: dh-cat,
 * dh-head, dh-split) to a stream in memory that is read back: its rows must
 * be the same, or the target aborts. */
#include "fuzz.h"
#include "dhs.h"

FZ_STREAM_MUTATOR

static const dhs_limits fz_lim = { .max_header_bytes = 64u << 10, .max_chunk_bytes = 1u << 20, .max_rows = 1u << 20 };

/* Per field: CRC of the row data and of the row lengths (variable fields),
 * independent of how the rows are cut into chunks. */
typedef struct {
    uint32_t data[DHS_MAX_FIELDS], lens[DHS_MAX_FIELDS];
    int64_t rows;
} digest;

static void digest_chunk(digest *d, const dhs_schema *s, const dhs_chunk *c) {
    for (int i = 0; i < s->nfields; i++) {
        const dhs_field *f = &s->fields[i];
        if (!c->off[i]) {
            d->data[i] = (uint32_t)crc32_z(d->data[i], c->col[i], (size_t)(c->nrows * f->row_bytes));
            continue;
        }
        size_t es = f->dtype == DHS_STR ? 1 : dhs_dtype_size(f->dtype);
        for (int64_t r = 0; r < c->nrows; r++) {
            uint64_t l = c->off[i][r + 1] - c->off[i][r];
            d->lens[i] = (uint32_t)crc32_z(d->lens[i], (const uint8_t *)&l, sizeof l);
        }
        d->data[i] = (uint32_t)crc32_z(d->data[i], c->col[i], (size_t)(c->off[i][c->nrows] * es));
        if (f->dtype == DHS_STR && c->nrows) { /* as programs read ids */
            size_t n;
            const char *p = dhs_str_at(c, i, c->nrows - 1, &n);
            volatile uint8_t last = n ? (uint8_t)p[n - 1] : 0;
            (void)last;
        }
    }
    d->rows += c->nrows;
}

static void read_back(const char *buf, size_t len, const digest *want) {
    FILE *f = fz_open((const uint8_t *)buf, len);
    if (!f) return;
    dh_err e;
    dhs_reader *r = dhs_open(f, "copy", NULL, &e); /* rechunked: may exceed fz_lim, never the defaults */
    if (!r) {
        fprintf(stderr, "fuzz_stream: the writer's copy does not open: %s\n", e.msg);
        abort();
    }
    digest got;
    memset(&got, 0, sizeof got);
    dhs_chunk *c;
    int rc;
    while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) digest_chunk(&got, dhs_reader_schema(r), c);
    if (rc != DH_EOF || memcmp(&got, want, sizeof got)) {
        fprintf(stderr, "fuzz_stream: the writer's copy differs (%s)\n", rc == DH_EOF ? "rows" : e.msg);
        abort();
    }
    dhs_close(r);
    fclose(f);
}

static void by_chunks(dhs_reader *r) {
    const dhs_schema *s = dhs_reader_schema(r);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return;
    dh_err e, we;
    dhs_writer *w = dhs_writer_open(out, "copy", s, dhs_reader_meta(r), &we);
    if (!w) {
        fprintf(stderr, "fuzz_stream: the writer refuses what the reader accepted: %s\n", we.msg);
        abort();
    }
    digest d;
    memset(&d, 0, sizeof d);
    dhs_chunk *c;
    int rc, wrc = 0;
    while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) {
        digest_chunk(&d, s, c);
        if (wrc) continue;
        if (c->nrows > 1) {
            int64_t h = c->nrows / 2;
            wrc = dhs_write_chunk_range(w, c, 0, h, &we);
            if (!wrc) wrc = dhs_write_chunk_range(w, c, h, c->nrows - h, &we);
        } else
            wrc = dhs_write_chunk(w, c, &we);
    }
    if (wrc) {
        fprintf(stderr, "fuzz_stream: the writer refuses rows the reader accepted: %s\n", we.msg);
        abort();
    }
    if (rc == DH_EOF) {
        if (dhs_writer_close(w, &we)) {
            fprintf(stderr, "fuzz_stream: closing the copy: %s\n", we.msg);
            abort();
        }
        fflush(out);
        read_back(buf, len, &d);
        /* what dh-info prints */
        char *json = dhs_meta_to_json(dhs_reader_meta(r));
        char desc[512];
        dhs_schema_describe(s, desc, sizeof desc);
        free(json);
    } else
        dhs_writer_abort(w);
    fclose(out);
    free(buf);
}

static void as_table(dhs_reader *r) {
    dhs_table t;
    dh_err e;
    if (dhs_read_table(r, &t, 4u << 20, &e)) return;
    volatile size_t sum = 0;
    for (int i = 0; i < t.schema.nfields; i++)
        if (t.schema.fields[i].dtype == DHS_STR && t.nrows) {
            size_t n;
            const char *p = dhs_table_str_at(&t, i, t.nrows - 1, &n);
            sum += n ? (uint8_t)p[n - 1] : 0;
        }
    (void)sum;
    dhs_table_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fz_open(data, size);
    if (!f) return 0;
    dh_err e;
    dhs_reader *r = dhs_open(f, "fuzz", &fz_lim, &e);
    if (r) {
        if (size & 1)
            as_table(r);
        else
            by_chunks(r);
        dhs_close(r);
    }
    fclose(f);
    return 0;
}
