/* rank.h — Hamming ranking: for each query code, the database rows ordered
 * by Hamming distance and then by database position (a stable sort by
 * distance), cut to the first `top` rows and/or to distance <= `radius`.
 *
 * Codes are in word form (see hamming.h): q (nq, W), db (ndb, W).
 *
 * CPU: per query a single streaming pass over the database keeps a
 * per-distance count of the candidates so far and the distance bound below
 * which a later row can still enter the top R (a later row at the bound
 * loses the tie to the earlier ones); candidates go to a buffer that is
 * compacted when full, and a final counting sort by distance (stable)
 * gives the order. Queries are processed in blocks against tiles of the
 * database that stay in cache; blocks are spread over pthreads.
 *
 * CUDA (rank_kernels.cu): the database stays resident on the device; per
 * query a histogram of distances gives the cut distance, and a second pass
 * scatters the selected rows to their final positions with a stable
 * per-distance rank (counting sort, no full sort).
 *
 * Codes must follow hamming.h (padding bits 0): the entry points check it
 * (DH_EINVAL), since a stray padding bit would give distances above bits.
 *
 * Devices: every op of this room is declared here whatever the build;
 * dh_ranker (and dh_map_codes in evalmap.h) dispatch by device, and in a
 * build without CUDA the CUDA entry points return DH_EUNSUPPORTED ("this
 * build has no CUDA backend").
 */
#ifndef DH_RANK_H
#define DH_RANK_H
#include <stdint.h>
#include "dh_util.h"
#include "hamming.h"

#define DH_RANK_ALL      INT64_MAX /* top = all rows */
#define DH_RANK_NORADIUS (-1)

/* Where a search op runs: the CPU; CUDA (an error when it cannot); or
 * auto: CUDA when a device is present and the codes are within the
 * kernels' limits, the CPU otherwise. */
typedef enum { DH_SEARCH_CPU = 0, DH_SEARCH_CUDA, DH_SEARCH_AUTO } dh_search_dev;
/* "cpu", "cuda" or "auto"; NULL is auto. DH_EINVAL for anything else. */
int dh_search_dev_parse(const char *s, dh_search_dev *dev, dh_err *e);

/* Results for a batch of queries, CSR: the list of query i is
 * idx[off[i] .. off[i+1]) with distances dist[...]. */
typedef struct dh_rank_result {
    int64_t nq;
    int64_t *off;  // (nq+1)
    int64_t *idx;  // (off[nq]) database row numbers
    int32_t *dist; // (off[nq]) Hamming distances
} dh_rank_result;
void dh_rank_result_free(dh_rank_result *r);

/* Number of worker threads to use by default into *threads: online CPUs
 * (at least 1, at most 256), or $DH_THREADS when set (1..1024, used up to
 * 256). A DH_THREADS that is not such a number is DH_EINVAL, not ignored. */
int dh_rank_default_threads(int *threads, dh_err *e);

/* Run fn(ctx, i0, i1, tid) over [0, n) split into `nthreads` contiguous
 * ranges on pthreads (in the calling thread when nthreads <= 1). Returns 0,
 * or -1 if a thread could not be created (the work is then done inline). */
int dh_rank_parallel(int nthreads, int64_t n, void (*fn)(void *ctx, int64_t i0, int64_t i1, int tid), void *ctx);

/* CPU ranking. top >= 1 (DH_RANK_ALL for every row); radius >= 0 keeps only
 * rows with distance <= radius (DH_RANK_NORADIUS: no limit). bits is the
 * code length (distances are <= bits). */
int dh_rank_cpu(const uint64_t *q, int64_t nq, const uint64_t *db, int64_t ndb, int bits, int64_t top, int radius,
                int nthreads, dh_rank_result *out, dh_err *e);

/* CUDA ranking (identical results to dh_rank_cpu), in rank_kernels.cu,
 * part of libdhcuda.so (loaded at the first CUDA use, dh_cudaload.h). A
 * context keeps the database on the device between batches of queries.
 * Codes of more than DH_RANK_CUDA_MAX_BITS bits are DH_EUNSUPPORTED;
 * without the CUDA backend or a device, DH_EDEVICE naming what is missing
 * ("this build has no CUDA backend", a library not found, no device). */
#define DH_RANK_CUDA_MAX_BITS 1024
typedef struct dh_rank_cuda dh_rank_cuda;
int dh_rank_cuda_open(dh_rank_cuda **ctx, const uint64_t *db, int64_t ndb, int bits,
                      const int32_t *labels /* (ndb) or NULL; unused */, dh_err *e);
int dh_rank_cuda_run(dh_rank_cuda *ctx, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out,
                     dh_err *e);
void dh_rank_cuda_close(dh_rank_cuda *ctx);
/* 1 if a CUDA device can be used (loads the backend; 0 in CPU-only builds). */
int dh_rank_cuda_available(void);

/* Internal: the entry points of libdhcuda.so behind the functions above
 * (arguments checked on the C side first). */
int dhcu_search_probe(dh_err *e); /* 0 when a CUDA device can be used */
int dhcu_rank_open(void **ctx, const uint64_t *db, int64_t ndb, int bits, dh_err *e);
int dhcu_rank_run(void *ctx, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out, dh_err *e);
void dhcu_rank_close(void *ctx);

/* Ranking dispatched by device: the database (borrowed, it must outlive
 * the ranker) is kept, on the device for CUDA, between batches of queries.
 * DH_SEARCH_AUTO falls back to the CPU when CUDA cannot take the database
 * (no device, codes too long, no memory). Results are identical on both. */
typedef struct dh_ranker dh_ranker;
int dh_ranker_open(dh_ranker **r, const uint64_t *db, int64_t ndb, int bits, dh_search_dev dev, int nthreads,
                   dh_err *e);
int dh_ranker_run(dh_ranker *r, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out, dh_err *e);
const char *dh_ranker_device(const dh_ranker *r); /* "cpu" or "cuda" */
void dh_ranker_close(dh_ranker *r);

#endif
