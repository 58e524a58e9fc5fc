/* hashloss.c — CPU reference of the exponentiated code-product loss, the
 * CPU engine's fast path (rows over the OpenMP threads, the bit loop
 * vectorised), and the C side of its CUDA twin (argument checks, then
 * libdhcuda.so). */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "dh_cudaload.h"
#include "dk_vexp.h"
#include "hashloss.h"

static int check_size(int B, int K, dh_err *e) {
    if (B < 2) return dh_seterr(e, DH_EINVAL, "hash loss: a batch needs at least 2 rows, got %d", B);
    if (K < 1 || K > DH_HL_MAX_BITS)
        return dh_seterr(e, DH_EINVAL, "hash loss: bits %d out of range 1..%d", K, DH_HL_MAX_BITS);
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The number of ordered pairs of equal labels; sorts a copy in scratch (B
 * entries) when given one, else counts pair by pair. */
static int64_t hl_pos_pairs(const int32_t *labels, int B, int32_t *scratch) {
    int64_t pos = 0;
    if (scratch) {
        memcpy(scratch, labels, sizeof(int32_t) * (size_t)B);
        qsort(scratch, (size_t)B, sizeof *scratch, cmp_i32);
        for (int i = 0; i < B;) {
            int j = i;
            while (j < B && scratch[j] == scratch[i]) j++;
            pos += (int64_t)(j - i) * (j - i - 1);
            i = j;
        }
    } else {
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) pos += (i != j && labels[i] == labels[j]);
    }
    return pos;
}

static void hl_weights(const int32_t *labels, int B, const dh_hashloss_opts *o, dh_hashloss_stats *st,
                       int32_t *scratch) {
    int64_t pairs = (int64_t)B * (B - 1), pos = hl_pos_pairs(labels, B, scratch);
    int64_t neg = pairs - pos;
    double scale = (o && o->scale != 0.0) ? o->scale : 1.0;
    double wp = 1.0, wn = 1.0;
    dh_hl_norm norm = o ? o->norm : DH_HL_SUM;
    if (norm == DH_HL_MEAN && pairs > 0)
        wp = wn = 1.0 / (double)pairs;
    else if (norm == DH_HL_BALANCED) {
        if (pos > 0 && neg > 0) {
            wp = 0.5 / (double)pos;
            wn = 0.5 / (double)neg;
        } else if (pairs > 0)
            wp = wn = 1.0 / (double)pairs;
    }
    st->pairs = pairs;
    st->pos_pairs = pos;
    st->wpos = wp * scale;
    st->wneg = wn * scale;
}

void dh_hashloss_weights(const int32_t *labels, int B, const dh_hashloss_opts *o, dh_hashloss_stats *st) {
    int32_t *s = B > 0 ? malloc(sizeof(int32_t) * (size_t)B) : NULL;
    hl_weights(labels, B, o, st, s);
    free(s);
}

int dh_hashloss_ref(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o, float *du,
                    dh_hashloss_stats *st, dh_err *e) {
    int rc = check_size(B, K, e);
    if (rc) return rc;
    dh_hashloss_stats s;
    memset(&s, 0, sizeof s);
    dh_hashloss_weights(labels, B, o, &s);
    float *sg = dh_malloc(e, (size_t)B * (size_t)K, sizeof(float));                /* (B, K) signs */
    double *acc = du ? dh_calloc(e, (size_t)B * (size_t)K, sizeof(double)) : NULL; /* (B, K) */
    if (!sg || (du && !acc)) {
        free(sg);
        free(acc);
        return DH_ENOMEM;
    }
    for (size_t t = 0; t < (size_t)B * K; t++) sg[t] = dh_hl_sign(u[t]);

    const float invK = 1.0f / (float)K;
    const float ch = coshf(invK), sh = sinhf(invK);
    double q = 0, sur = 0;
    int64_t right = 0;
    for (int i = 0; i < B; i++) {
        const float *ui = u + (size_t)i * K, *si = sg + (size_t)i * K;
        for (int j = i + 1; j < B; j++) {
            const float *uj = u + (size_t)j * K, *sj = sg + (size_t)j * K;
            int cnt = 0;
            for (int k = 0; k < K; k++) cnt += (si[k] == sj[k]) ? 1 : -1;
            float P = (float)cnt * invK;
            float y = labels[i] == labels[j] ? 1.0f : -1.0f;
            double w = y > 0 ? s.wpos : s.wneg;
            q += 2.0 * w * exp(-(double)y * (double)cnt / (double)K); /* (i,j) and (j,i) */
            right += (y * (float)cnt > 0) ? 2 : 0;
            float cp = -y * sh;
            const float Rp = dh_hl_reweight(y, P, 1.0f, invK), Rm = dh_hl_reweight(y, P, -1.0f, invK);
            double ls = 0;
            for (int k = 0; k < K; k++) {
                float dl;
                ls += dh_hl_bit_r(si[k] == sj[k] ? Rp : Rm, ui[k] * uj[k], ch, cp, &dl);
                if (acc) {
                    /* both ordered pairs: d/du_ik of w/K (l(i,j) + l(j,i)) */
                    double g = 2.0 * w * invK * dl;
                    acc[(size_t)i * K + k] += g * uj[k];
                    acc[(size_t)j * K + k] += g * ui[k];
                }
            }
            sur += 2.0 * w * invK * ls;
        }
    }
    if (du)
        for (size_t t = 0; t < (size_t)B * K; t++) du[t] = (float)acc[t];
    s.q = q;
    s.surrogate = sur;
    s.right = s.pairs ? (double)right / (double)s.pairs : 0;
    if (st) *st = s;
    free(sg);
    free(acc);
    return DH_OK;
}

/* ---- the CPU engine's path ------------------------------------------------------------
 * The same sums as dh_hashloss_ref, arranged for speed: the rows i of the
 * upper triangle are dealt to the OpenMP threads in turn (i = t, t + T, ...),
 * each thread accumulating its gradient contributions in its own (B, K)
 * buffer (the buffers are then added in thread order: the result depends on
 * the thread count, never on timing); the bit loop is branch-free so that
 * it vectorises: with t = exp(-|a|), 2σ(a) - 1 = sign(a) (1 - t) / (1 + t)
 * and 2σ(a)(1 - σ(a)) = 2t / (1 + t)^2, and exp is a polynomial accurate to
 * about 2 ulp. The loss sums of a pair are in float (the reference: double);
 * test_hashloss holds the two within 1e-5 relative. */

typedef struct {
    const float *u, *sg;
    const float *E;   /* E[m + K + 1] = exp(m / K), m = -(K+1)..K+1: every R of a pair */
    const double *Eq; /* Eq[m + K] = exp(m / K) in double, m = -K..K: the exact loss */
    const int32_t *labels;
    int B, K;
    double wpos, wneg;
    float invK, ch, sh;
} hl_job;

typedef struct {
    double q, sur;
    int64_t right;
} hl_sums;

/* Row i against rows j > i: loss sums into *s, gradients into acc (B, K) when acc. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* no-trapping-math: with it GCC runs the vectorised bit loop (4 to 8 times
 * faster here); without it the selects keep it on the scalar copy */
__attribute__((optimize("no-trapping-math"), target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void hl_row(const hl_job *J, int i, double *restrict acc, float *restrict dl, hl_sums *s) {
    const int B = J->B, K = J->K;
    const float invK = J->invK, ch = J->ch, sh = J->sh, *E = J->E;
    const float *restrict ui = J->u + (size_t)i * K, *restrict si = J->sg + (size_t)i * K;
    double q = 0, sur = 0;
    int64_t right = 0;
    for (int j = i + 1; j < B; j++) {
        const float *restrict uj = J->u + (size_t)j * K, *restrict sj = J->sg + (size_t)j * K;
        int cnt = 0;
#pragma omp simd reduction(+ : cnt)
        for (int k = 0; k < K; k++) cnt += si[k] == sj[k] ? 1 : -1;
        int same = J->labels[i] == J->labels[j], m = same ? -cnt : cnt; /* -y cnt */
        float y = same ? 1.0f : -1.0f;
        double w = same ? J->wpos : J->wneg;
        q += 2.0 * w * J->Eq[m + K];
        right += (y * (float)cnt > 0) ? 2 : 0;
        const float cp = -y * sh, cp2 = 2.0f * cp;
        /* R = exp(-y (P - s/K)): s = +1 gives exp((m + y)/K), s = -1 exp((m - y)/K) */
        const float Rp = E[m + (same ? 1 : -1) + K + 1], Rm = E[m - (same ? 1 : -1) + K + 1];
        float ls = 0;
#pragma omp simd reduction(+ : ls)
        for (int k = 0; k < K; k++) {
            float a = ui[k] * uj[k];
            float R = si[k] == sj[k] ? Rp : Rm;
            /* t = exp(-|a|), about 2 ulp (dk_vexp.h; below e^-87, and for a NaN product, e^-87) */
            float t = dk_vexp_neg(-__builtin_fabsf(a));
            float inv = 1.0f / (1.0f + t);
            float th = __builtin_copysignf((1.0f - t) * inv, a); /* 2σ(a) - 1 */
            ls += R * (ch + cp * th);
            dl[k] = R * cp2 * t * inv * inv;
        }
        sur += 2.0 * w * invK * (double)ls;
        if (acc) {
            double g = 2.0 * w * invK;
            double *restrict ai = acc + (size_t)i * K, *restrict aj = acc + (size_t)j * K;
#pragma omp simd
            for (int k = 0; k < K; k++) {
                double d = g * (double)dl[k];
                ai[k] += d * (double)uj[k];
                aj[k] += d * (double)ui[k];
            }
        }
    }
    s->q += q, s->sur += sur, s->right += right;
}

/* The fast path's work buffers: one block per calling thread, kept between
 * calls and grown on demand (training allocates nothing after its first
 * batch); dh_hashloss_cpu_release frees the calling thread's. */
static _Thread_local struct {
    void *p;
    size_t n;
} hl_ws;
static _Thread_local int64_t hl_grows;

static int hl_reserve(size_t bytes, dh_err *e) {
    if (bytes <= hl_ws.n) return 0;
    free(hl_ws.p);
    hl_ws.n = 0;
    hl_ws.p = dh_malloc(e, bytes, 1);
    if (!hl_ws.p) return DH_ENOMEM;
    hl_ws.n = bytes;
    hl_grows++;
    return 0;
}

/* DH_CPU=ref: the reference everywhere (as for the network's ops). */
static int want_ref(void) {
    const char *c = getenv("DH_CPU");
    return c && strcmp(c, "ref") == 0;
}

int dh_hashloss_cpu(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o, float *du,
                    dh_hashloss_stats *st, dh_err *e) {
    if (want_ref()) return dh_hashloss_ref(u, labels, B, K, o, du, st, e);
    int rc = check_size(B, K, e);
    if (rc) return rc;
    /* a non-finite u (a diverged step): the reference's NaNs, which the trainer reports */
    int finite = 1;
    for (size_t t = 0; t < (size_t)B * (size_t)K; t++) finite &= __builtin_isfinite(u[t]);
    if (!finite) return dh_hashloss_ref(u, labels, B, K, o, du, st, e);
    dh_hashloss_stats s;
    memset(&s, 0, sizeof s);
    int T = 1;
#ifdef _OPENMP
    T = omp_get_max_threads();
#endif
    /* a small batch is not worth the threads */
    if ((int64_t)B * B * K < (1 << 15)) T = 1;
    if (T > B - 1) T = B - 1;
    size_t BK = (size_t)B * (size_t)K;
    /* one block, kept: each thread's gradient sums (T, B, K) and E in double,
     * the thread sums, then the signs, each thread's dl and E in float, then
     * the sorted labels */
    size_t nacc = du ? (size_t)T * BK : 0, nsg = BK + (size_t)T * K + (size_t)(2 * K + 3);
    size_t need = sizeof(double) * (nacc + (size_t)(2 * K + 1)) + sizeof(hl_sums) * (size_t)T +
                  sizeof(float) * nsg + sizeof(int32_t) * (size_t)B;
    if (hl_reserve(need, e)) return DH_ENOMEM;
    double *acc = du ? (double *)hl_ws.p : NULL, *Eq = (double *)hl_ws.p + nacc;
    hl_sums *sums = (hl_sums *)(Eq + 2 * K + 1);
    float *sg = (float *)(sums + T);
    int32_t *sorted = (int32_t *)(sg + nsg);
    if (acc) memset(acc, 0, sizeof(double) * nacc);
    memset(sums, 0, sizeof(hl_sums) * (size_t)T);
    hl_weights(labels, B, o, &s, sorted);
    for (size_t t = 0; t < BK; t++) sg[t] = dh_hl_sign(u[t]);
    float *E = sg + BK + (size_t)T * K, invK = 1.0f / (float)K;
    for (int m = -(K + 1); m <= K + 1; m++) E[m + K + 1] = expf((float)m * invK);
    for (int m = -K; m <= K; m++) Eq[m + K] = exp((double)m / (double)K);
    hl_job J = { u, sg, E, Eq, labels, B, K, s.wpos, s.wneg, invK, coshf(invK), sinhf(invK) };
#pragma omp parallel for num_threads(T) schedule(static, 1) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int i = t; i < B; i += T)
            hl_row(&J, i, acc ? acc + (size_t)t * BK : NULL, sg + BK + (size_t)t * K, &sums[t]);
    double q = 0, sur = 0;
    int64_t right = 0;
    for (int t = 0; t < T; t++) q += sums[t].q, sur += sums[t].sur, right += sums[t].right;
    if (du) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1)
        for (size_t x = 0; x < BK; x++) {
            double a = acc[x];
            for (int t = 1; t < T; t++) a += acc[(size_t)t * BK + x];
            du[x] = (float)a;
        }
    }
    s.q = q;
    s.surrogate = sur;
    s.right = s.pairs ? (double)right / (double)s.pairs : 0;
    if (st) *st = s;
    return DH_OK;
}

int64_t dh_hashloss_cpu_grows(void) { return hl_grows; }

void dh_hashloss_cpu_release(void) {
    free(hl_ws.p);
    hl_ws.p = NULL;
    hl_ws.n = 0;
}

/* ---- CUDA twin: the entry points of libdhcuda.so ---------------------------------- */
int dh_hashloss_cuda(const float *d_u, const int32_t *d_labels, int B, int K, double wpos, double wneg, float *d_du,
                     dh_hashloss_stats *st, dh_err *e) {
    int rc = check_size(B, K, e);
    if (rc) return rc;
    if (!d_u || !d_labels) return dh_seterr(e, DH_EINVAL, "hash loss: device arrays missing");
    return DH_CUDA_CALL(dhcu_hashloss, e, d_u, d_labels, B, K, wpos, wneg, d_du, st, e);
}

int dh_hashloss_cuda_host(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o, float *du,
                          dh_hashloss_stats *st, dh_err *e) {
    int rc = check_size(B, K, e);
    if (rc) return rc;
    dh_hashloss_stats s;
    memset(&s, 0, sizeof s);
    dh_hashloss_weights(labels, B, o, &s);
    rc = DH_CUDA_CALL(dhcu_hashloss_host, e, u, labels, B, K, s.wpos, s.wneg, du, &s, e);
    if (rc == DH_OK && st) *st = s;
    return rc;
}

void dh_hashloss_cuda_release(void) { DH_CUDA_CALL_IF_LOADED(dhcu_hashloss_release); }
