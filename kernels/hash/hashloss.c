/* hashloss.c — CPU reference of the exponentiated code-product loss, and
 * the C side of its CUDA twin (argument checks, then libdhcuda.so). */
#include <stdlib.h>
#include <string.h>
#include "dh_cudaload.h"
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

void dh_hashloss_weights(const int32_t *labels, int B, const dh_hashloss_opts *o, dh_hashloss_stats *st) {
    int64_t pairs = (int64_t)B * (B - 1), pos = 0;
    int32_t *s = malloc(sizeof(int32_t) * (size_t)(B > 0 ? B : 1));
    if (s) {
        memcpy(s, labels, sizeof(int32_t) * (size_t)B);
        qsort(s, (size_t)B, sizeof *s, cmp_i32);
        for (int i = 0; i < B;) {
            int j = i;
            while (j < B && s[j] == s[i]) j++;
            pos += (int64_t)(j - i) * (j - i - 1);
            i = j;
        }
        free(s);
    } else {
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) pos += (i != j && labels[i] == labels[j]);
    }
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

int dh_hashloss_cpu(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o, float *du,
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
