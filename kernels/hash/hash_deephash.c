/* hash_deephash.c — the paper's stage 2 (Algorithm 1, lines 6-12): fit the
 * K-bit hash layer on frozen features z by training a two-layer shallow
 * network, hash layer then softmax classifier, to minimise the
 * classification error:
 *
 *   x = (z - m) / s               per-dimension standardisation (folded into W, b)
 *   u = W x + b                   (K)   the hash layer; code bit k = [u_k > 0]
 *   h = sigmoid(u)  (or tanh)     (K)
 *   p = softmax(V h + c)          (C)
 *
 * Mini-batch SGD with momentum and weight decay, reshuffled every epoch,
 * deterministic for a seed. Afterwards each hash unit is rescaled by a
 * positive factor (codes unchanged) so that RMS(u_k) over the training
 * set is `urms` (default 1): the pre-activations then start stage 3 in the
 * sigmoid's working range instead of saturated (DESIGN.md, "The method").
 * The model stores the folded W (K, D) and b (K), transform "linear".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hashfn.h"
#include "hash_linalg.h"
#include "dh_rng.h"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Classes 0..C-1 in increasing label order; returns C or -1. */
static int map_classes(const int32_t *labels, int64_t N, int32_t *cls, dh_err *e) {
    int32_t *s = dh_malloc(e, (size_t)N, sizeof(int32_t));
    if (!s) return -1;
    memcpy(s, labels, sizeof(int32_t) * (size_t)N);
    qsort(s, (size_t)N, sizeof *s, cmp_i32);
    int64_t C = 0;
    for (int64_t i = 0; i < N; i++)
        if (i == 0 || s[i] != s[i - 1]) s[C++] = s[i];
    for (int64_t i = 0; i < N; i++) {
        int32_t *p = bsearch(&labels[i], s, (size_t)C, sizeof *s, cmp_i32);
        cls[i] = (int32_t)(p - s);
    }
    free(s);
    return (int)C;
}

int dh_fit_deephash(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                    dhs_model *out, dh_err *e) {
    if (!labels) return dh_seterr(e, DH_ESCHEMA, "method deephash is supervised: the features have no labels");
    if (N < 2) return dh_seterr(e, DH_EFORMAT, "need at least 2 training rows, got %lld", (long long)N);
    double urms, mom, wd;
    const char *act = dh_hash_param(opts, "activation");
    if (dh_hash_param_double(opts, "urms", 1.0, &urms, e) || dh_hash_param_double(opts, "momentum", 0.9, &mom, e) ||
        dh_hash_param_double(opts, "wd", 1e-4, &wd, e))
        return DH_EINVAL;
    if (!act) act = "sigmoid";
    int tanh_act = strcmp(act, "tanh") == 0;
    if (!tanh_act && strcmp(act, "sigmoid") != 0)
        return dh_seterr(e, DH_EINVAL, "parameter activation: '%s' is not sigmoid or tanh", act);
    if (urms < 0 || mom < 0 || mom >= 1 || wd < 0)
        return dh_seterr(e, DH_EINVAL, "parameters: need urms >= 0, 0 <= momentum < 1, wd >= 0");
    int epochs = opts->epochs > 0 ? opts->epochs : 30;
    double lr = opts->lr > 0 ? opts->lr : 0.1;
    int B = opts->batch > 0 ? opts->batch : 128;
    if (B > N) B = (int)N;
    uint64_t seed = opts->seed;

    int rc = DH_ENOMEM;
    int32_t *cls = dh_malloc(e, (size_t)N, sizeof(int32_t));
    float *mean = dh_calloc(e, (size_t)D, sizeof(float)), *isd = dh_malloc(e, (size_t)D, sizeof(float));
    float *W = dh_malloc(e, (size_t)K * D, sizeof(float)), *b = dh_calloc(e, (size_t)K, sizeof(float));
    float *mW = dh_calloc(e, (size_t)K * D, sizeof(float)), *mb = dh_calloc(e, (size_t)K, sizeof(float));
    float *x = dh_malloc(e, (size_t)B * D, sizeof(float)), *h = dh_malloc(e, (size_t)B * K, sizeof(float));
    float *dh_ = dh_malloc(e, (size_t)B * K, sizeof(float));
    float *gW = dh_malloc(e, (size_t)K * D, sizeof(float)), *gb = dh_malloc(e, (size_t)K, sizeof(float));
    int64_t *perm = dh_malloc(e, (size_t)N, sizeof(int64_t));
    float *V = NULL, *c = NULL, *mV = NULL, *mc = NULL, *p = NULL, *gV = NULL, *gc = NULL;
    double *acc = dh_calloc(e, (size_t)D * 2, sizeof(double));
    if (!cls || !mean || !isd || !W || !b || !mW || !mb || !x || !h || !dh_ || !gW || !gb || !perm || !acc) goto done;
    int C = map_classes(labels, N, cls, e);
    if (C < 0) goto done;
    if (C < 2) {
        rc = dh_seterr(e, DH_EFORMAT, "the features have a single class (label %d): nothing to separate", labels[0]);
        goto done;
    }
    V = dh_malloc(e, (size_t)C * K, sizeof(float));
    c = dh_calloc(e, (size_t)C, sizeof(float));
    mV = dh_calloc(e, (size_t)C * K, sizeof(float));
    mc = dh_calloc(e, (size_t)C, sizeof(float));
    p = dh_malloc(e, (size_t)B * C, sizeof(float));
    gV = dh_malloc(e, (size_t)C * K, sizeof(float));
    gc = dh_malloc(e, (size_t)C, sizeof(float));
    if (!V || !c || !mV || !mc || !p || !gV || !gc) goto done;

    /* standardisation statistics */
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++) {
            double v = z[i * D + d];
            acc[d] += v;
            acc[D + d] += v * v;
        }
    for (int d = 0; d < D; d++) {
        double m = acc[d] / N, var = acc[D + d] / N - m * m;
        mean[d] = (float)m;
        isd[d] = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 1.0f;
        if (!isfinite(m) || !isfinite(var)) {
            rc = dh_seterr(e, DH_EFORMAT, "features contain non-finite values (dimension %d)", d);
            goto done;
        }
    }
    /* Xavier-style initialisation */
    uint64_t ctr = 0;
    float sw = (float)sqrt(1.0 / D), sv = (float)sqrt(1.0 / K);
    for (size_t t = 0; t < (size_t)K * D; t++) W[t] = sw * dh_rng_normal(seed, ctr++);
    for (size_t t = 0; t < (size_t)C * K; t++) V[t] = sv * dh_rng_normal(seed, ctr++);
    for (int64_t i = 0; i < N; i++) perm[i] = i;

    double loss = 0;
    int64_t correct = 0, seen = 0;
    for (int ep = 0; ep < epochs; ep++) {
        for (int64_t i = N - 1; i > 0; i--) { /* reshuffle every epoch */
            int64_t j = (int64_t)(((uint64_t)dh_rng_u32(seed ^ 0x5eedULL, ctr++) * (uint64_t)(i + 1)) >> 32);
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        loss = 0;
        correct = 0;
        seen = 0;
        for (int64_t s0 = 0; s0 + B <= N; s0 += B) { /* drop the last partial batch */
            for (int r = 0; r < B; r++) {
                const float *zr = z + perm[s0 + r] * D;
                for (int d = 0; d < D; d++) x[(size_t)r * D + d] = (zr[d] - mean[d]) * isd[d];
            }
            /* u = x W^T + b -> h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, K, D, 1.0f, x, D, W, D, 0.0f, h, K);
            for (int r = 0; r < B; r++)
                for (int k = 0; k < K; k++) {
                    float u = h[r * K + k] + b[k];
                    h[r * K + k] = tanh_act ? tanhf(u) : 1.0f / (1.0f + expf(-u));
                }
            /* logits = h V^T + c -> softmax p, then dlogits = (p - onehot) / B */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, C, K, 1.0f, h, K, V, K, 0.0f, p, C);
            for (int r = 0; r < B; r++) {
                float *pr = p + (size_t)r * C, mx = -INFINITY;
                int arg = 0;
                for (int j = 0; j < C; j++) {
                    pr[j] += c[j];
                    if (pr[j] > mx) {
                        mx = pr[j];
                        arg = j;
                    }
                }
                double s = 0;
                for (int j = 0; j < C; j++) {
                    pr[j] = expf(pr[j] - mx);
                    s += pr[j];
                }
                int y = cls[perm[s0 + r]];
                loss += -log(pr[y] / s + 1e-30);
                correct += arg == y;
                for (int j = 0; j < C; j++) pr[j] = (float)(pr[j] / s) / B;
                pr[y] -= 1.0f / B;
            }
            seen += B;
            /* gradients of the classifier */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, K, B, 1.0f, p, C, h, K, 0.0f, gV, K);
            for (int j = 0; j < C; j++) {
                double s = 0;
                for (int r = 0; r < B; r++) s += p[(size_t)r * C + j];
                gc[j] = (float)s;
            }
            /* dh = dlogits V, du = dh * act'(u) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, K, C, 1.0f, p, C, V, K, 0.0f, dh_, K);
            for (int t = 0; t < B * K; t++) {
                float hv = h[t];
                dh_[t] *= tanh_act ? (1.0f - hv * hv) : hv * (1.0f - hv);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, B, 1.0f, dh_, K, x, D, 0.0f, gW, D);
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int r = 0; r < B; r++) s += dh_[(size_t)r * K + k];
                gb[k] = (float)s;
            }
            /* SGD with momentum; weight decay on weights only */
            float fl = (float)lr, fm = (float)mom, fw = (float)wd;
            for (size_t t = 0; t < (size_t)K * D; t++) {
                mW[t] = fm * mW[t] + gW[t] + fw * W[t];
                W[t] -= fl * mW[t];
            }
            for (int k = 0; k < K; k++) {
                mb[k] = fm * mb[k] + gb[k];
                b[k] -= fl * mb[k];
            }
            for (size_t t = 0; t < (size_t)C * K; t++) {
                mV[t] = fm * mV[t] + gV[t] + fw * V[t];
                V[t] -= fl * mV[t];
            }
            for (int j = 0; j < C; j++) {
                mc[j] = fm * mc[j] + gc[j];
                c[j] -= fl * mc[j];
            }
        }
        if (!isfinite(loss)) {
            rc = dh_seterr(e, DH_EFORMAT, "training diverged at epoch %d (try a smaller --lr)", ep + 1);
            goto done;
        }
        hl_note(opts, "stage 2 epoch %d/%d: loss %.4f, train accuracy %.4f", ep + 1, epochs, loss / (seen ? seen : 1),
                (double)correct / (seen ? seen : 1));
    }

    /* Fold the standardisation: u = W' z + b' with W'[k,d] = W[k,d] isd[d],
     * b' = b - W' m. Then rescale each unit to RMS(u_k) = urms. */
    for (int k = 0; k < K; k++) {
        double off = 0;
        for (int d = 0; d < D; d++) {
            W[(size_t)k * D + d] *= isd[d];
            off += (double)W[(size_t)k * D + d] * mean[d];
        }
        b[k] = (float)(b[k] - off);
    }
    if (urms > 0) {
        double *ss = dh_calloc(e, (size_t)K, sizeof(double));
        if (!ss) goto done;
        for (int64_t s0 = 0; s0 < N; s0 += B) {
            int n = (int)(N - s0 < B ? N - s0 : B);
            dh_linear_project(W, b, NULL, z + s0 * D, n, D, K, h);
            for (int r = 0; r < n; r++)
                for (int k = 0; k < K; k++) ss[k] += (double)h[r * K + k] * h[r * K + k];
        }
        double before = 0;
        for (int k = 0; k < K; k++) {
            double rms = sqrt(ss[k] / N);
            before += rms / K;
            float f = rms > 1e-20 ? (float)(urms / rms) : 1.0f;
            for (int d = 0; d < D; d++) W[(size_t)k * D + d] *= f;
            b[k] *= f;
        }
        hl_note(opts, "stage 2: hash units rescaled from mean RMS(u) %.3g to %.3g (codes unchanged)", before, urms);
        free(ss);
    }
    rc = dh_hash_model_begin(out, "deephash", "linear", K, D, e);
    if (rc == DH_OK) rc = dh_hash_model_set_linear(out, "", W, b, NULL, K, D, e);
    if (rc == DH_OK) {
        if (dhs_meta_set_int(out->meta, "epochs", epochs) || dhs_meta_set_float(out->meta, "lr", lr) ||
            dhs_meta_set_int(out->meta, "batch", B) || dhs_meta_set_str(out->meta, "activation", act) ||
            dhs_meta_set_float(out->meta, "urms", urms) || dhs_meta_set_int(out->meta, "classes", C) ||
            dhs_meta_set_float(out->meta, "train_accuracy", (double)correct / (seen ? seen : 1)))
            rc = dh_seterr(e, DH_ENOMEM, "out of memory");
    }
done:
    free(cls);
    free(mean);
    free(isd);
    free(W);
    free(b);
    free(mW);
    free(mb);
    free(x);
    free(h);
    free(dh_);
    free(gW);
    free(gb);
    free(perm);
    free(V);
    free(c);
    free(mV);
    free(mc);
    free(p);
    free(gV);
    free(gc);
    free(acc);
    return rc;
}
