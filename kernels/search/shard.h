/* shard.h — sharded databases: the shard metadata dh-split --shards writes,
 * a shard's rows mapped to the whole database's, and the rankings of a
 * shard (what dh-rank writes on a shard and dh-merge reads).
 *
 * A shard is a codes stream (kind "codes") whose metadata says which part
 * of which database it is:
 *   shard (int k), shards (int N), shard_by ("contiguous" or "hash"),
 *   shard_total_rows (rows of the whole database), shard_of (its name),
 *   and, contiguous: shard_row0 (the whole database's row number of the
 *   shard's first row); hash: a field "row" i64 holding each row's number
 *   in the whole database (increasing).
 * Rows keep their database order within a shard, so ranking a shard and
 * mapping its rows to the whole database's numbers gives the shard's part
 * of the whole ranking in the whole ranking's order (distance, then row).
 *
 * The rankings of a shard are a rankings stream (rankings.h) whose idx are
 * rows of the whole database and whose db_rows is the whole database's
 * row count, with the shard's metadata as above and shard_rows (the
 * shard's own row count).
 */
#ifndef DH_SHARD_H
#define DH_SHARD_H
#include <stdint.h>
#include <stdio.h>
#include "dh_util.h"
#include "dhs.h"
#include "rank_codes.h"
#include "rankings.h"

#define DH_SHARDS_MAX 65536

typedef struct dh_shard {
    int k, n;      /* shard k of n; n == 0: the stream is not a shard */
    int64_t total; /* rows of the whole database */
    int64_t rows;  /* rows of this shard */
    int64_t row0;  /* contiguous: whole-database row of the first row; -1 for hash */
    int64_t *row;  /* hash: (rows) whole-database rows, increasing; else NULL */
    char by[16];   /* "contiguous" or "hash" */
    char *of;      /* the database's name as dh-split was given it */
} dh_shard;

/* Read the shard metadata of a stream (its header read): sh->n = 0 when it
 * has none, DH_EFORMAT when it is incomplete or out of range. rows is the
 * stream's row count when known (-1: not yet). */
int dh_shard_meta(const dhs_meta *m, dh_shard *sh, dh_err *e);

/* Load a codes stream as dh_codes_load does (no labels needed) together
 * with its shard metadata and, for a hash shard, its "row" field (checked:
 * increasing, below the whole database's row count). */
int dh_shard_codes_load(const char *path, dh_codeset *c, dh_shard *sh, dh_err *e);

/* Rows of the shard to rows of the whole database, in place. */
void dh_shard_map(const dh_shard *sh, int64_t *idx, int64_t n);

void dh_shard_free(dh_shard *sh);

/* The rankings stream's header with the shard's metadata (sh->n > 0), or
 * a plain rankings header (sh NULL or sh->n == 0; then as
 * dh_rankings_writer_open). m->db_rows is the whole database's. */
dhs_writer *dh_shard_rankings_writer_open(FILE *f, const char *name, const dh_rankings_meta *m, const dh_shard *sh,
                                          dh_err *e);

/* Shard name patterns: a printf-like pattern with exactly one %d (flags 0
 * and a width allowed: %03d) and %% for a percent sign. DH_EINVAL when the
 * pattern is not one; else the name of shard k in out (size n). */
int dh_shard_name(const char *pattern, int k, char *out, size_t n, dh_err *e);

#endif
