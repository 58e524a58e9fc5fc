/* mih.h — multi-index hashing: exact Hamming search that reads a small part
 * of the database (Norouzi, Punjani & Fleet, "Fast Exact Search in Hamming
 * Space with Multi-Index Hashing", CVPR 2012 / TPAMI 2014).
 *
 * Each K-bit code is cut into m contiguous substrings (table t covers bits
 * [t K / m, (t + 1) K / m), so lengths differ by at most one); table t
 * buckets the database rows by the value of their substring t (a direct
 * table of 2^s + 1 offsets into the rows, rows in database order within a
 * bucket, and a copy of each row's code beside it so a bucket is read
 * sequentially). By the pigeonhole principle, a code within distance
 * r' m + t of the query agrees with it within distance r' on one of the
 * substrings 0..t, or within r' - 1 on another; so searching the substrings
 * in the order (r', t) = (0,0), (0,1), ..., (0,m-1), (1,0), ... (all values
 * at exactly r' bits from the query's substring t) has found, after step
 * (r', t), every row within distance r' m + t. A row is counted once: at
 * the first step that reaches it, the smallest (distance of substring j, j)
 * over its substrings. The search stops when every row that can be in the
 * result has been found: for the top R, once R rows lie within the
 * guaranteed distance; for a radius, once the guaranteed distance reaches
 * it. The found rows are sorted by (distance, database row), so the result
 * is exactly dh_rank_cpu's: same rows, distances and tie order.
 *
 * When the search for a query has done as much work as a linear scan would
 * (probes and candidates weighed against the database size; the scan
 * budget), that query is ranked by dh_rank_cpu instead: the result is the
 * same, and the worst case (random codes, large R) costs about one scan.
 *
 * The index file (dh-index(1), man/dh-index.1 has the layout): a header
 * with magic, version, the database's row count, code length and CRC-32,
 * the table count and a CRC-32 per table, then each table's offsets and
 * rows as little-endian uint32. Loading checks all of it (sizes against
 * the file size before allocating, checksums, offsets and rows in range,
 * every row once per table, in the bucket its code says), so a damaged,
 * truncated or mismatched index is an error, never a crash or a wrong
 * ranking.
 */
#ifndef DH_MIH_H
#define DH_MIH_H
#include <stdint.h>
#include <stdio.h>
#include "dh_util.h"
#include "rank.h"

#define DH_MIH_MAX_TABLES  64
#define DH_MIH_MAX_SUBBITS 24                  /* a table has at most 2^24 buckets */
#define DH_MIH_MAX_BITS    1024                /* longer codes: use the scan */
#define DH_MIH_MAX_ROWS    INT64_C(4294967295) /* rows are uint32 */
#define DH_MIH_VERSION     1

typedef struct dh_mih dh_mih;

/* The table count for n rows of `bits` bits: substrings of about
 * log2(n) - 3 bits (at least 4, at most DH_MIH_MAX_SUBBITS), at most
 * DH_MIH_MAX_TABLES tables. */
int dh_mih_default_tables(int64_t n, int bits);

/* Build the index of db (n, W) in memory; tables 0 picks the default.
 * db is borrowed and must outlive the index. DH_EINVAL for tables that
 * make substrings longer than DH_MIH_MAX_SUBBITS or shorter than 1 bit,
 * DH_EUNSUPPORTED for codes over DH_MIH_MAX_BITS or more than
 * DH_MIH_MAX_ROWS rows. */
int dh_mih_build(dh_mih **out, const uint64_t *db, int64_t n, int bits, int tables, int nthreads, dh_err *e);

/* Write the index (the layout above) to f; name is for messages. */
int dh_mih_write(const dh_mih *x, FILE *f, const char *name, dh_err *e);

/* Read an index from f (a regular file: its size is checked before any
 * allocation) for the database db (n, W), borrowed. Errors: DH_EFORMAT
 * (not an index, another version, bad structure), DH_ETRUNC, DH_ECHECKSUM
 * (damaged), DH_ESCHEMA (built for another database: rows, bits or
 * checksum differ), DH_EIO; messages start with name. */
int dh_mih_read(dh_mih **out, FILE *f, const char *name, const uint64_t *db, int64_t n, int bits, int nthreads,
                dh_err *e);

/* Search: the same contract and results as dh_rank_cpu (rank.h). */
int dh_mih_search(dh_mih *x, const uint64_t *q, int64_t nq, int64_t top, int radius, int nthreads, dh_rank_result *out,
                  dh_err *e);

/* The scan budget: a query whose search has cost `fraction` of a linear
 * scan is ranked by the scan instead (default 1.0; 0: never, always the
 * index; a negative value: always the scan, for tests). */
void dh_mih_set_scan_budget(dh_mih *x, double fraction);

typedef struct dh_mih_stats {
    int64_t queries;    /* searched (since the index was opened) */
    int64_t probes;     /* buckets looked up */
    int64_t candidates; /* codes compared in those buckets */
    int64_t scans;      /* queries handed to the linear scan */
} dh_mih_stats;
void dh_mih_get_stats(const dh_mih *x, dh_mih_stats *s);
int dh_mih_tables(const dh_mih *x);
/* Bytes of memory the index holds (tables, rows, code copies). */
int64_t dh_mih_bytes(const dh_mih *x);
void dh_mih_free(dh_mih *x);

/* The database checksum an index records: CRC-32 (zlib) of the codes as
 * stored in a codes stream (ceil(bits/8) bytes a row), rows in order. */
uint32_t dh_mih_db_crc(const uint64_t *db, int64_t n, int bits);

#endif
