/* rankings.h — the rankings stream (kind "rankings", man/dh-rank.1): what
 * dh-rank writes and dh-map reads.
 *
 * One row per query, in query order:
 *   query i64 (its row in the query input), label i32 (INT32_MIN when the
 *   queries have none), id str, idx i64 [-1] (database rows, best first),
 *   dist i32 [-1] (their Hamming distances, non-decreasing).
 * Metadata: program, command, bits, db (the database path as given),
 * db_rows, top (-1: all), radius (-1: none), labels (bool), order, device.
 */
#ifndef DH_RANKINGS_H
#define DH_RANKINGS_H
#include <stdint.h>
#include <stdio.h>
#include "dhs.h"
#include "dh_util.h"
#include "rank.h"

typedef struct dh_rankings_meta {
    int bits;
    const char *db; /* the database as named (may be NULL when read) */
    int64_t db_rows;
    int64_t top; /* -1: whole rankings */
    int radius;  /* -1: no radius */
    int labels;  /* the queries had labels */
    const char *program, *command, *device;
} dh_rankings_meta;

/* The schema and metadata of a rankings stream (*md: free with
 * dhs_meta_free), for writers that add keys of their own (shards). */
int dh_rankings_header(const dh_rankings_meta *m, dhs_schema *s, dhs_meta **md, dh_err *e);
/* Header of a rankings stream on f (not closed by the writer). */
dhs_writer *dh_rankings_writer_open(FILE *f, const char *name, const dh_rankings_meta *m, dh_err *e);
/* The rankings of n queries numbered q0, q0+1, ...: labels (n) or NULL
 * (INT32_MIN), ids concatenated with their lengths idlen (n) or NULL
 * (empty ids), their lists in res. */
int dh_rankings_write(dhs_writer *w, int64_t q0, int64_t n, const int32_t *labels, const char *ids,
                      const uint32_t *idlen, const dh_rank_result *res, dh_err *e);

/* Reading, one query at a time. */
typedef struct dh_ranking {
    int64_t query;
    int32_t label;
    int64_t n;          /* rows listed */
    const int64_t *idx; /* (n) valid until the next call */
    const int32_t *dist;
} dh_ranking;
typedef struct dh_rankings_reader {
    dhs_reader *r; /* borrowed */
    dh_rankings_meta meta;
    int fq, fl, fi, fd;
    dhs_chunk *ch;
    int64_t i; /* next row of ch */
    int64_t cap;
    int64_t *idx; /* aligned copies of the current row */
    int32_t *dist;
} dh_rankings_reader;
/* Check the schema and metadata of r (its header read): DH_ESCHEMA for
 * another kind or missing fields, DH_EFORMAT for missing bits/db_rows. */
int dh_rankings_open(dh_rankings_reader *rr, dhs_reader *r, dh_err *e);
/* The next query's list: DH_OK, DH_EOF at the end, or an error. */
int dh_rankings_next(dh_rankings_reader *rr, dh_ranking *q, dh_err *e);
void dh_rankings_close(dh_rankings_reader *rr); /* frees the buffers, not r */

#endif
