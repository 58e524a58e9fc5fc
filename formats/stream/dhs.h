/* dhs.h — the deephash stream format: read and write incrementally.
 *
 * A stream is a sequence of msgpack objects (see man/dh-stream.5):
 *   header  {"format":"deephash-stream","version":1,"kind":K,
 *            "fields":[{"name":N,"dtype":T,"shape":[...]},...],"meta":{...}}
 *   chunk*  {"rows":n,"cols":[bin,...],"crc":c}   one bin per field, raw LE
 *   trailer {"end":true,"rows":N,"chunks":C,"crc":c,"header_crc":h}
 * Streams concatenated byte-wise read as one when their schemas agree.
 *
 * Column layouts in a chunk of n rows:
 *   fixed-size field : n * row_bytes bytes, row-major, little-endian
 *   DHS_BITS [K]     : n * ceil(K/8) bytes; bit k of a row is bit (k % 8)
 *                      (LSB first) of byte k / 8; padding bits are 0
 *   variable field   : (DHS_STR, or any numeric dtype with shape [-1])
 *                      n little-endian u32 lengths (in elements; bytes for
 *                      STR) followed by the concatenated row data
 *
 * Standard kinds and their fields (the contract between programs):
 *   images   : pixels u8 [C,H,W], label i32, id str
 *   features : z f32 [D], label i32, id str
 *   codes    : code bits [K], label i32, id str
 *   model    : name str, shape i64 [-1], data f32 [-1]  (one tensor a row)
 *   rankings : see man/dh-rank.1
 */
#ifndef DHS_H
#define DHS_H
#include <stdint.h>
#include <stdio.h>
#include "dh_util.h"

#define DHS_FORMAT_NAME "deephash-stream"
#define DHS_VERSION     1
#define DHS_MAX_FIELDS  32
#define DHS_MAX_DIMS    8
#define DHS_NAME_MAX    64

typedef enum { DHS_U8 = 1, DHS_I32, DHS_I64, DHS_F32, DHS_F64, DHS_BITS, DHS_STR } dhs_dtype;

const char *dhs_dtype_name(dhs_dtype t);          /* "u8","i32","i64","f32","f64","bits","str" */
int dhs_dtype_parse(const char *s, dhs_dtype *t); /* 0 ok, -1 unknown */
size_t dhs_dtype_size(dhs_dtype t);               /* bytes per element; 0 for BITS/STR */

typedef struct dhs_field {
    char name[DHS_NAME_MAX];
    dhs_dtype dtype;
    int ndim;                    /* 0 = scalar */
    int64_t shape[DHS_MAX_DIMS]; /* shape[0] == -1: variable-length 1-D */
    /* derived by dhs_schema_add / the reader: */
    int variable;      /* STR, or shape [-1] */
    int64_t row_elems; /* elements per row (bits for BITS); 0 if variable */
    int64_t row_bytes; /* bytes per row; 0 if variable */
} dhs_field;

typedef struct dhs_schema {
    char kind[DHS_NAME_MAX];
    int nfields;
    dhs_field fields[DHS_MAX_FIELDS];
} dhs_schema;

void dhs_schema_init(dhs_schema *s, const char *kind);
/* Append a field; returns its index, or -1 (with e set) on a bad name,
 * duplicate, too many fields or an invalid shape. For STR pass ndim 0. */
int dhs_schema_add(dhs_schema *s, const char *name, dhs_dtype t, int ndim, const int64_t *shape, dh_err *e);
int dhs_field_index(const dhs_schema *s, const char *name); /* -1 if absent */
/* Same kind and the same fields (names, dtypes, shapes, order). */
int dhs_schema_equal(const dhs_schema *a, const dhs_schema *b);
/* Check that s has field `name` with dtype t (and, if ndim >= 0, that many
 * dimensions); returns its index or -1 with a DH_ESCHEMA message. */
int dhs_require_field(const dhs_schema *s, const char *name, dhs_dtype t, int ndim, dh_err *e);
/* "pixels:u8[3,32,32] label:i32 id:str" — for messages and dh-info. */
void dhs_schema_describe(const dhs_schema *s, char *buf, size_t n);

/* ---- metadata: an ordered string-keyed map of msgpack values ------------ */
typedef struct dhs_meta dhs_meta;
typedef enum { DHS_M_NIL, DHS_M_BOOL, DHS_M_INT, DHS_M_FLOAT, DHS_M_STR, DHS_M_ARRAY, DHS_M_MAP } dhs_mtype;

dhs_meta *dhs_meta_new(void);
void dhs_meta_free(dhs_meta *m);
dhs_meta *dhs_meta_copy(const dhs_meta *m);
/* Setters replace an existing key. Return 0, or -1 on allocation failure. */
int dhs_meta_set_str(dhs_meta *m, const char *key, const char *v);
int dhs_meta_set_int(dhs_meta *m, const char *key, int64_t v);
int dhs_meta_set_float(dhs_meta *m, const char *key, double v);
int dhs_meta_set_bool(dhs_meta *m, const char *key, int v);
int dhs_meta_set_strv(dhs_meta *m, const char *key, const char *const *v, int n);
int dhs_meta_set_intv(dhs_meta *m, const char *key, const int64_t *v, int n);
int dhs_meta_set_floatv(dhs_meta *m, const char *key, const double *v, int n);
int dhs_meta_set_map(dhs_meta *m, const char *key, const dhs_meta *v); /* copies v */
int dhs_meta_del(dhs_meta *m, const char *key);
/* Getters: absent key or wrong type -> NULL / -1. */
int dhs_meta_has(const dhs_meta *m, const char *key);
dhs_mtype dhs_meta_type(const dhs_meta *m, const char *key); /* DHS_M_NIL if absent */
const char *dhs_meta_str(const dhs_meta *m, const char *key);
int dhs_meta_int(const dhs_meta *m, const char *key, int64_t *out);
int dhs_meta_float(const dhs_meta *m, const char *key, double *out); /* ints convert */
int dhs_meta_bool(const dhs_meta *m, const char *key, int *out);
/* Arrays: number of elements, or -1 if absent / not an array. */
int dhs_meta_len(const dhs_meta *m, const char *key);
const char *dhs_meta_str_at(const dhs_meta *m, const char *key, int i);
int dhs_meta_int_at(const dhs_meta *m, const char *key, int i, int64_t *out);
int dhs_meta_float_at(const dhs_meta *m, const char *key, int i, double *out);
const dhs_meta *dhs_meta_map(const dhs_meta *m, const char *key);
/* Iterate keys in order: i from 0 to dhs_meta_count-1. */
int dhs_meta_count(const dhs_meta *m);
const char *dhs_meta_key(const dhs_meta *m, int i);
/* JSON text of the whole map (for dh-info); caller frees. */
char *dhs_meta_to_json(const dhs_meta *m);

/* ---- limits ------------------------------------------------------------- */
typedef struct dhs_limits {
    uint64_t max_header_bytes; /* default 64 MiB */
    uint64_t max_chunk_bytes;  /* default 1 GiB: one chunk's column data */
    uint64_t max_rows;         /* default 2^40: per stream */
} dhs_limits;
extern const dhs_limits dhs_default_limits;

/* ---- reading ------------------------------------------------------------ */
typedef struct dhs_reader dhs_reader;

/* One chunk's rows, column by column; valid until the next read call. */
typedef struct dhs_chunk {
    int64_t nrows;
    void *col[DHS_MAX_FIELDS];     /* fixed: nrows*row_bytes; variable: row data */
    uint64_t *off[DHS_MAX_FIELDS]; /* variable fields: nrows+1 offsets in elements
                                       (bytes for STR) into col[f]; else NULL */
} dhs_chunk;

/* Open a stream and read its header. `name` is used in messages ("<stdin>").
 * dhs_open_path: NULL or "-" is stdin; the reader owns the FILE it opened.
 * lim may be NULL for the defaults. */
dhs_reader *dhs_open(FILE *f, const char *name, const dhs_limits *lim, dh_err *e);
dhs_reader *dhs_open_path(const char *path, const dhs_limits *lim, dh_err *e);
const dhs_schema *dhs_reader_schema(const dhs_reader *r);
const dhs_meta *dhs_reader_meta(const dhs_reader *r); /* first stream's meta */
const char *dhs_reader_name(const dhs_reader *r);
/* Read the next chunk. Returns DH_OK (*out set), DH_EOF at the clean end of
 * the input (every trailer verified), or an error code with e set. Checks
 * each chunk's checksum before returning it. */
int dhs_read_chunk(dhs_reader *r, dhs_chunk **out, dh_err *e);
int64_t dhs_reader_rows(const dhs_reader *r); /* rows returned so far */
int dhs_reader_streams(const dhs_reader *r);  /* concatenated streams seen */
void dhs_close(dhs_reader *r);

/* The whole stream in memory (for programs that need the full dataset). */
typedef struct dhs_table {
    dhs_schema schema;
    dhs_meta *meta;
    int64_t nrows;
    void *col[DHS_MAX_FIELDS]; /* contiguous; variable fields as in dhs_chunk */
    uint64_t *off[DHS_MAX_FIELDS];
} dhs_table;
/* Read every remaining chunk of r into t (limit: max_bytes of column data
 * in total, 0 = no limit beyond memory). */
int dhs_read_table(dhs_reader *r, dhs_table *t, uint64_t max_bytes, dh_err *e);
/* Open path, read it whole, close. */
int dhs_load_table(const char *path, dhs_table *t, dh_err *e);
void dhs_table_free(dhs_table *t);
/* Row i of a STR field as a pointer and a length (not NUL-terminated). */
const char *dhs_str_at(const dhs_chunk *c, int field, int64_t i, size_t *len);
const char *dhs_table_str_at(const dhs_table *t, int field, int64_t i, size_t *len);

/* ---- writing ------------------------------------------------------------ */
typedef struct dhs_writer dhs_writer;
/* Write the header; meta may be NULL. The writer does not close f. */
dhs_writer *dhs_writer_open(FILE *f, const char *name, const dhs_schema *s, const dhs_meta *meta, dh_err *e);
/* Rows per chunk (default: about 4 MiB of data per chunk, at least 1 row). */
void dhs_writer_set_chunk_rows(dhs_writer *w, int64_t rows);
/* Append n rows given column by column. For fixed fields cols[f] holds
 * n*row_bytes bytes; for variable fields cols[f] holds the concatenated row
 * data and lens[f] the n per-row lengths in elements (lens may be NULL when
 * there is no variable field). Rows are buffered and written in chunks. */
int dhs_write_rows(dhs_writer *w, int64_t n, const void *const *cols, const uint32_t *const *lens, dh_err *e);
/* Pass a chunk read from a reader with the same schema straight through. */
int dhs_write_chunk(dhs_writer *w, const dhs_chunk *c, dh_err *e);
/* Write rows [start, start+n) of a chunk read with the same schema. */
int dhs_write_chunk_range(dhs_writer *w, const dhs_chunk *c, int64_t start, int64_t n, dh_err *e);
/* Flush, write the trailer, fflush f; reports any write error. Frees w. */
int dhs_writer_close(dhs_writer *w, dh_err *e);
/* Free without a trailer (the output stays visibly incomplete). */
void dhs_writer_abort(dhs_writer *w);
int64_t dhs_writer_rows(const dhs_writer *w);

/* ---- models: named f32 tensors + meta, stored as kind "model" ---------- */
typedef struct dhs_tensor {
    char *name;
    int ndim;
    int64_t shape[DHS_MAX_DIMS];
    int64_t n; /* number of elements */
    float *data;
} dhs_tensor;
typedef struct dhs_model {
    dhs_meta *meta; /* e.g. "model": "net"|"hash"|"deephash", "net": spec text */
    int ntensors;
    dhs_tensor *t;
} dhs_model;
void dhs_model_init(dhs_model *m); /* empty model with an empty meta */
void dhs_model_free(dhs_model *m);
/* Add a copy of data (or zeros when data is NULL); returns the tensor or NULL. */
dhs_tensor *dhs_model_add(dhs_model *m, const char *name, int ndim, const int64_t *shape, const float *data, dh_err *e);
dhs_tensor *dhs_model_find(const dhs_model *m, const char *name);
/* Like find, but checks the shape (ndim dims given in shape) with an error. */
dhs_tensor *dhs_model_get(const dhs_model *m, const char *name, int ndim, const int64_t *shape, dh_err *e);
int dhs_model_read(dhs_reader *r, dhs_model *m, dh_err *e);
int dhs_model_load(const char *path, dhs_model *m, dh_err *e); /* "-" = stdin */
int dhs_model_write(FILE *f, const char *name, const dhs_model *m, dh_err *e);
/* Saving a model to a path atomically is dh_model_save (formats/prog). */

#endif
