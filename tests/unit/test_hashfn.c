/* test_hashfn.c — hash models: packing, linear projection, binding, the
 * method registry and the paper's stage-2 fit (deephash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "hashfn.h"

static uint64_t rng = 0x1234567887654321ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double s = 0;
    for (int i = 0; i < 12; i++) s += urand();
    return s - 6;
}

static void t_pack_layout(void) {
    float u[2 * 11];
    for (int i = 0; i < 22; i++) u[i] = -1;
    u[0] = 1;
    u[3] = 0.5f;
    u[8] = 2;
    u[10] = 1e-9f; /* row 0: bits 0, 3, 8, 10 */
    u[11 + 7] = 3;
    u[11 + 9] = 0.0f; /* row 1: bit 7 (u == 0 is 0) */
    uint8_t c[4];
    memset(c, 0xff, sizeof c);
    dh_pack_signs(u, 2, 11, c);
    CHECK(c[0] == 0x09);
    CHECK(c[1] == 0x05); /* bits 8 and 10; padding bits zero */
    CHECK(c[2] == 0x80);
    CHECK(c[3] == 0x00);
}

static void t_linear_project_mean_bias(void) {
    enum { K = 3, D = 4, N = 5 };
    float W[K * D], b[K], m[D], z[N * D], u[N * K];
    for (int i = 0; i < K * D; i++) W[i] = (float)nrand();
    for (int i = 0; i < K; i++) b[i] = (float)nrand();
    for (int i = 0; i < D; i++) m[i] = (float)nrand();
    for (int i = 0; i < N * D; i++) z[i] = (float)nrand();
    dh_linear_project(W, b, m, z, N, D, K, u);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double s = b[k];
            for (int d = 0; d < D; d++) s += W[k * D + d] * (z[i * D + d] - m[d]);
            CHECK_NEAR(u[i * K + k], s, 1e-5);
        }
}

static void t_registry(void) {
    const dh_hash_method *m = dh_hash_method_find("deephash");
    REQUIRE(m != NULL);
    CHECK(m->supervised == 1);
    CHECK(strcmp(m->transform, "linear") == 0);
    CHECK(dh_hash_method_at(0) == m); /* the default comes first */
    CHECK(dh_hash_method_find("no-such-method") == NULL);
    CHECK(dh_hash_transform_known("linear"));
    CHECK(!dh_hash_transform_known("no-such-transform"));
}

static void t_params(void) {
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    o.param[o.nparams++] = "urms=2.5";
    o.param[o.nparams++] = "n=7";
    o.param[o.nparams++] = "bad=x";
    double d;
    int64_t i;
    dh_err e;
    CHECK(dh_hash_param_double(&o, "urms", 1, &d, &e) == 0 && d == 2.5);
    CHECK(dh_hash_param_int(&o, "n", 0, &i, &e) == 0 && i == 7);
    CHECK(dh_hash_param_int(&o, "missing", 42, &i, &e) == 0 && i == 42);
    CHECK(dh_hash_param_double(&o, "bad", 0, &d, &e) == -1);
    CHECK(dh_hash_param(&o, "ur") == NULL);
}

/* Bind a model built in memory and check shapes are enforced. */
static void t_bind(void) {
    enum { K = 8, D = 5 };
    float W[K * D] = { 0 }, b[K] = { 0 };
    dh_err e;
    dhs_model m;
    dhs_model_init(&m);
    REQUIRE(dh_hash_model_begin(&m, "deephash", "linear", K, D, &e) == DH_OK);
    REQUIRE(dh_hash_model_set_linear(&m, "", W, b, NULL, K, D, &e) == DH_OK);
    dh_hashfn h;
    CHECK(dh_hashfn_bind(&h, &m, "", &e) == DH_OK);
    CHECK(h.K == K && h.D == D && h.b && !h.mean);
    dhs_meta_set_int(m.meta, "dim", D + 1); /* inconsistent with W */
    CHECK(dh_hashfn_bind(&h, &m, "", &e) != DH_OK);
    dhs_meta_set_int(m.meta, "dim", D);
    dhs_meta_set_int(m.meta, "bits", 300);
    CHECK(dh_hashfn_bind(&h, &m, "", &e) == DH_ESCHEMA);
    dhs_meta_set_int(m.meta, "bits", K);
    dhs_meta_set_str(m.meta, "model", "net");
    CHECK(dh_hashfn_bind(&h, &m, "", &e) == DH_ESCHEMA);
    dhs_model_free(&m);
}

/* Stage 2 on separable synthetic features: codes of different classes
 * differ, same-class codes mostly agree, RMS(u) is rescaled to 1. */
static void t_fit_deephash(void) {
    enum { N = 600, D = 10, C = 4, K = 16 };
    float *z = malloc(sizeof(float) * N * D), mu[C][D], *u = malloc(sizeof(float) * N * K);
    int32_t lab[N];
    REQUIRE(z && u);
    for (int c = 0; c < C; c++)
        for (int d = 0; d < D; d++) mu[c][d] = (float)(3 * nrand());
    for (int i = 0; i < N; i++) {
        lab[i] = 10 + 7 * (i % C); /* arbitrary label values */
        for (int d = 0; d < D; d++)
            z[i * D + d] = mu[i % C][d] + (float)nrand() + 5.0f; /* offset: tests standardisation */
    }
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    o.epochs = 15;
    dhs_model m;
    dhs_model_init(&m);
    dh_err e;
    int rc = dh_fit_deephash(z, lab, N, D, K, &o, &m, &e);
    CHECKF(rc == DH_OK, "fit: %s", e.msg);
    if (rc == DH_OK) {
        dh_hashfn h;
        REQUIRE(dh_hashfn_bind(&h, &m, "", &e) == DH_OK);
        dh_hashfn_project(&h, z, N, u, &e);
        double ss = 0;
        for (int i = 0; i < N * K; i++) ss += (double)u[i] * u[i];
        CHECK_NEAR(sqrt(ss / (N * K)), 1.0, 1e-3);
        /* mean Hamming distance within vs between classes */
        double win = 0, btw = 0;
        int nw = 0, nb = 0;
        for (int i = 0; i < N; i += 7)
            for (int j = i + 1; j < N; j += 5) {
                int dd = 0;
                for (int k = 0; k < K; k++) dd += (u[i * K + k] > 0) != (u[j * K + k] > 0);
                if (lab[i] == lab[j]) {
                    win += dd;
                    nw++;
                } else {
                    btw += dd;
                    nb++;
                }
            }
        win /= nw;
        btw /= nb;
        CHECKF(win < 2 && btw > 4, "within %g, between %g", win, btw);
    }
    dhs_model_free(&m);
    /* bad inputs */
    dhs_model_init(&m);
    CHECK(dh_fit_deephash(z, NULL, N, D, K, &o, &m, &e) == DH_ESCHEMA);
    dhs_model_free(&m);
    for (int i = 0; i < N; i++) lab[i] = 3;
    dhs_model_init(&m);
    CHECK(dh_fit_deephash(z, lab, N, D, K, &o, &m, &e) == DH_EFORMAT);
    CHECK(strstr(e.msg, "single class") != NULL);
    dhs_model_free(&m);
    free(z);
    free(u);
}

int main(void) {
    RUN(t_pack_layout);
    RUN(t_linear_project_mean_bias);
    RUN(t_registry);
    RUN(t_params);
    RUN(t_bind);
    RUN(t_fit_deephash);
    return check_done();
}
