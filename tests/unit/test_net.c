/* test_net.c — the network runtime on the CPU: whole-network gradients
 * against finite differences (every layer type, residuals), a tiny
 * training run that learns, save/load round trip, and model errors. */
#include "check.h"
#include "net.h"
#include "dh_prog.h"
#include <unistd.h>

static const char *spec_all = "input 2 6 6\n"
                              "conv 3 k3 p1\n"
                              "bn\n"
                              "relu\n"
                              "res\n"
                              "  conv 3 k3 p1 nobias\n"
                              "  gelu\n"
                              "end\n"
                              "maxpool k2          # 3x3x3\n"
                              "avgpool k3 s1 p1\n"
                              "conv 4 k2 s1        # 4x2x2\n"
                              "scale 0.5\n"
                              "flatten\n"
                              "fc 6\n"
                              "bn name=z\n"
                              "gelu\n"
                              "dropout 0\n"
                              "feature z\n";

#define NB 4
#define K  3

/* Loss of the current parameters on (x, labels), training-mode forward. */
static double loss_at(net *n, const dk_tensor *x, const int32_t *lab) {
    dk_tensor z, lg;
    double loss = -1;
    if (net_forward_to_z(n, x, 1, &z, NULL) || net_head_forward(n, &lg, NULL) ||
        dk_softmax_xent(&lg, lab, 0.0f, 1.0f, &loss, NULL, NULL, NULL))
        return -1;
    return loss;
}

static void make_batch(dk_tensor *x, int32_t *lab, const netspec *ns, uint64_t seed) {
    dk_tensor_alloc4(x, DK_CPU, 4, NB, ns->in[0], ns->in[1], ns->in[2], NULL);
    dk_rand_normal(x, 0, 1, seed, 0, NULL);
    for (int i = 0; i < NB; i++) lab[i] = i % K;
}

/* sum(c * z) + w x the classification loss, training-mode forward (c NULL: the classification loss alone). */
static double combined_at(net *n, const dk_tensor *x, const int32_t *lab, const float *c, float w) {
    dk_tensor z;
    double xl = loss_at(n, x, lab), s = 0;
    if (!c) return xl;
    if (xl < 0 || net_forward_to_z(n, x, 1, &z, NULL)) return -1;
    for (int64_t i = 0; i < z.n; i++) s += (double)c[i] * z.data[i];
    return s + w * xl;
}

/* Every parameter's gradient (p->g, already computed) against central
 * differences of combined_at, about 7 entries per tensor: the worst
 * relative error and its tensor; returns the entries checked. */
static int fd_check(net *n, const dk_tensor *x, const int32_t *lab, const float *c, float w, double *worst,
                    const char **wname) {
    int checked = 0;
    *worst = 0, *wname = "";
    for (int i = 0; i < n->nparams; i++) {
        net_param *p = &n->params[i];
        int64_t step = p->w.n > 12 ? p->w.n / 7 : 1;
        for (int64_t j = 0; j < p->w.n; j += step) {
            float old = p->w.data[j];
            const float h = 1e-2f;
            p->w.data[j] = old + h;
            double lp = combined_at(n, x, lab, c, w);
            p->w.data[j] = old - h;
            double lm = combined_at(n, x, lab, c, w);
            p->w.data[j] = old;
            double num = (lp - lm) / (2 * h), ana = p->g.data[j];
            /* floor 1e-2: the loss is a float sum, so (lp - lm) / 2h carries noise of ~1e-4 */
            double err = fabs(num - ana) / (1e-2 + fabs(num) + fabs(ana));
            if (err > *worst) *worst = err, *wname = p->name;
            checked++;
        }
    }
    return checked;
}

static void t_gradcheck(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(spec_all, "all", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, K, DK_CPU, 8, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 7, &e) == DH_OK);
    /* give biases and bn parameters non-trivial values */
    for (int i = 0; i < n->nparams; i++)
        if (!n->params[i].decay) dk_rand_uniform(&n->params[i].w, 0.5f, 1.5f, 99, (uint64_t)i * 100, NULL);
    dk_tensor x;
    int32_t lab[NB];
    make_batch(&x, lab, &ns, 3);
    double loss;
    int64_t correct;
    REQUIRE(net_grad_xent(n, &x, lab, 0.0f, &loss, &correct, &e) == DH_OK);
    CHECK(loss > 0 && correct >= 0 && correct <= NB);
    double worst;
    const char *wname;
    int checked = fd_check(n, &x, lab, NULL, 1.0f, &worst, &wname);
    printf("# gradcheck: %d entries of %d tensors, worst relative error %.3g (%s)\n", checked, n->nparams, worst,
           wname);
    CHECKF(worst < 0.05, "worst relative error %g in %s", worst, wname);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

/* A loss of another kind at z plus a weighted classification term (stage 3's --aux-xent):
 * L = sum(c * z) + w xent(head(z)). net_head_xent_add adds the term's gradient to dz = c and sets the head's;
 * every parameter's gradient against finite differences of L, on a net without kinks (no relu, no max pooling: a
 * finite difference that crosses one is wrong whatever the gradient). */
static const char *spec_smooth = "input 2 6 6\n"
                                 "conv 3 k3 p1\n"
                                 "bn\n"
                                 "gelu\n"
                                 "avgpool k2\n"
                                 "flatten\n"
                                 "fc 6\n"
                                 "bn name=z\n"
                                 "gelu\n"
                                 "feature z\n";

static void t_head_xent_add(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(spec_smooth, "smooth", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, K, DK_CPU, 8, &n, &e) == DH_OK && net_init(n, 5, &e) == DH_OK);
    for (int i = 0; i < n->nparams; i++)
        if (!n->params[i].decay) dk_rand_uniform(&n->params[i].w, 0.5f, 1.5f, 98, (uint64_t)i * 100, NULL);
    dk_tensor x, z, dz;
    int32_t lab[NB];
    make_batch(&x, lab, &ns, 4);
    const float w = 2.5f;
    REQUIRE(dk_tensor_alloc4(&dz, DK_CPU, 2, NB, n->zdim, 1, 1, &e) == DH_OK &&
            dk_rand_normal(&dz, 0, 1, 21, 0, &e) == DH_OK);
    float *c = malloc(sizeof *c * (size_t)dz.n);
    REQUIRE(c);
    memcpy(c, dz.data, sizeof *c * (size_t)dz.n);
    double xl;
    int64_t correct;
    REQUIRE(net_forward_to_z(n, &x, 1, &z, &e) == DH_OK);
    REQUIRE(net_head_xent_add(n, lab, 0.0f, w, &xl, &correct, &dz, &e) == DH_OK);
    CHECK(fabs(xl - loss_at(n, &x, lab)) < 1e-6 && correct >= 0 && correct <= NB);
    REQUIRE(net_forward_to_z(n, &x, 1, &z, &e) == DH_OK); /* loss_at ran a forward: the same one again */
    REQUIRE(net_backward_from_z(n, &dz, &e) == DH_OK);
    double worst;
    const char *wname;
    int checked = fd_check(n, &x, lab, c, w, &worst, &wname);
    printf("# head_xent_add: %d entries of %d tensors, worst relative error %.3g (%s)\n", checked, n->nparams, worst,
           wname);
    CHECKF(worst < 0.05, "worst relative error %g in %s", worst, wname);
    /* refusals: the net's own dz buffer; a dz of the wrong size; a net without a head */
    dk_tensor own, bad;
    REQUIRE(net_forward_to_z(n, &x, 1, &z, &e) == DH_OK && net_dz(n, &own, &e) == DH_OK);
    CHECK(net_head_xent_add(n, lab, 0.0f, w, &xl, &correct, &own, &e) == DH_EINVAL);
    REQUIRE(dk_tensor_rows(&dz, 0, NB - 1, &bad, &e) == DH_OK);
    CHECK(net_head_xent_add(n, lab, 0.0f, w, &xl, &correct, &bad, &e) == DH_EINVAL);
    net *h0;
    REQUIRE(net_create(&ns, 0, DK_CPU, 8, &h0, &e) == DH_OK && net_init(h0, 5, &e) == DH_OK);
    REQUIRE(net_forward_to_z(h0, &x, 1, &z, &e) == DH_OK);
    CHECK(net_head_xent_add(h0, lab, 0.0f, w, &xl, &correct, &dz, &e) == DH_EINVAL);
    printf("# without a head: %s\n", e.msg);
    net_free(h0);
    free(c);
    dk_tensor_free(&dz);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

/* Two-class toy problem: bright vs dark images. A few SGD steps must fit it. */
static void t_learns(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 1 8 8\nconv 4 k3 p1\nbn\nrelu\ndropout 0.2\nmaxpool k2\nfc 8\nrelu\nfeature\n", "toy",
                          &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 2, DK_CPU, 16, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 1, &e) == DH_OK);
    dk_tensor x;
    dk_tensor_alloc4(&x, DK_CPU, 4, 16, 1, 8, 8, NULL);
    int32_t lab[16];
    dk_rand_normal(&x, 0, 0.5f, 5, 0, NULL);
    for (int i = 0; i < 16; i++) {
        lab[i] = i & 1;
        for (int j = 0; j < 64; j++) x.data[i * 64 + j] += lab[i] ? 1.0f : -1.0f;
    }
    float lr[2] = { 0.1f, 0.1f }, wd[2] = { 5e-4f, 5e-4f };
    double first = 0, loss = 0;
    int64_t correct = 0;
    for (int s = 0; s < 30; s++) {
        REQUIRE(net_grad_xent(n, &x, lab, 0.0f, &loss, &correct, &e) == DH_OK);
        if (s == 0) first = loss;
        REQUIRE(net_sgd_step(n, lr, 0.9f, wd, 0, &e) == DH_OK);
    }
    CHECKF(loss < first * 0.5, "loss %g -> %g", first, loss);
    REQUIRE(net_eval_xent(n, &x, lab, &loss, &correct, &e) == DH_OK);
    CHECKF(correct == 16, "eval correct %lld / 16", (long long)correct);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

/* Inference runs conv [relu] pool (and conv maxpool relu, as conv relu maxpool)
 * fused and keeps no activations: a backward
 * pass after it is refused, one after a training forward is not; the fused
 * inference gives the z of the layer-by-layer one (the reference composes
 * the same single ops: bit for bit). */
static void t_inference_fusion(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 3 12 12\nconv 6 k3 p1\nrelu\nmaxpool k3 s2 p1\nconv 8 k3 p1\nmaxpool k2\nrelu\n"
                          "conv 8 k3 p1\navgpool k2\nflatten\nfc 5\nfeature\n",
                          "fuse", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, 4, &n, &e) == DH_OK && net_init(n, 3, &e) == DH_OK);
    dk_tensor x, z, dz;
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, 4, 3, 12, 12, &e) == DH_OK);
    dk_rand_normal(&x, 0, 1, 9, 0, NULL);
    dk_cpu_backend was = dk_cpu_get_backend();
    REQUIRE(dk_cpu_set_backend(DK_CPU_REF, &e) == DH_OK);
    REQUIRE(net_forward_to_z(n, &x, 0, &z, &e) == DH_OK);
    float fused[20];
    memcpy(fused, z.data, sizeof fused);
    REQUIRE(net_dz(n, &dz, &e) == DH_OK);
    CHECK(net_backward_from_z(n, &dz, &e) == DH_EINVAL && strstr(e.msg, "inference"));
    /* layer by layer: a training forward of a net without batch norm or dropout computes the same z */
    REQUIRE(net_forward_to_z(n, &x, 1, &z, &e) == DH_OK);
    CHECK(memcmp(fused, z.data, sizeof fused) == 0);
    REQUIRE(net_dz(n, &dz, &e) == DH_OK);
    CHECK(net_backward_from_z(n, &dz, &e) == DH_OK);
    REQUIRE(dk_cpu_set_backend(was, &e) == DH_OK);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

/* conv bn [relu|gelu] groups (inside a res block, at the feature) and conv
 * pool bn relu fused for inference: oneDNN's folded convolutions against the
 * reference, which composes the single ops (the layer-by-layer values), on
 * a trained-looking net (running statistics moved by training steps). */
static void t_inference_fusion_bn(void) {
    if (!dk_cpu_has_onednn()) SKIP_TEST("this build has no oneDNN backend");
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 3 12 12\nconv 8 k3 p1 nobias\nbn\nrelu\nres\n  conv 8 k3 p1\n  bn\n  gelu\nend\n"
                          "conv 8 k3 p1 nobias\nmaxpool k2\nbn\nrelu\nconv 6 k3 p1\nbn\nflatten\nfc 5\nfeature\n",
                          "fusebn", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, 4, &n, &e) == DH_OK && net_init(n, 3, &e) == DH_OK);
    dk_tensor x, z, dz;
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, 4, 3, 12, 12, &e) == DH_OK);
    dk_cpu_backend was = dk_cpu_get_backend();
    REQUIRE(dk_cpu_set_backend(DK_CPU_REF, &e) == DH_OK);
    for (int it = 0; it < 3; it++) { /* the running statistics away from 0 and 1 */
        dk_rand_normal(&x, 0.5f, 2, 10 + it, 0, NULL);
        REQUIRE(net_forward_to_z(n, &x, 1, &z, &e) == DH_OK);
    }
    dk_rand_normal(&x, 0, 1, 9, 0, NULL);
    REQUIRE(net_forward_to_z(n, &x, 0, &z, &e) == DH_OK);
    float ref[20];
    memcpy(ref, z.data, sizeof ref);
    REQUIRE(dk_cpu_set_backend(DK_CPU_ONEDNN, &e) == DH_OK);
    REQUIRE(net_forward_to_z(n, &x, 0, &z, &e) == DH_OK);
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        double d = fabs((double)z.data[i] - ref[i]);
        if (d > worst) worst = d;
        CHECK_NEAR(z.data[i], ref[i], 1e-4 + 1e-3 * fabs(ref[i]));
    }
    printf("  conv-bn fused inference z, oneDNN vs reference: max abs %.3g\n", worst);
    REQUIRE(net_dz(n, &dz, &e) == DH_OK);
    CHECK(net_backward_from_z(n, &dz, &e) == DH_EINVAL && strstr(e.msg, "inference"));
    REQUIRE(dk_cpu_set_backend(was, &e) == DH_OK);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

static void t_deterministic_and_roundtrip(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(spec_all, "all", &ns, &e) == DH_OK);
    net *a, *b;
    REQUIRE(net_create(&ns, K, DK_CPU, 8, &a, &e) == DH_OK);
    REQUIRE(net_create(&ns, K, DK_CPU, 8, &b, &e) == DH_OK);
    REQUIRE(net_init(a, 42, &e) == DH_OK && net_init(b, 42, &e) == DH_OK);
    for (int i = 0; i < a->nparams; i++)
        CHECK(memcmp(a->params[i].w.data, b->params[i].w.data, a->params[i].w.n * sizeof(float)) == 0);
    net_free(b);
    /* train one step so bn running stats move, then save / load */
    dk_tensor x;
    int32_t lab[NB];
    make_batch(&x, lab, &ns, 11);
    double loss;
    int64_t correct;
    float lr[2] = { 0.05f, 0.05f }, wd[2] = { 0, 0 };
    REQUIRE(net_grad_xent(a, &x, lab, 0.1f, &loss, &correct, &e) == DH_OK);
    REQUIRE(net_sgd_step(a, lr, 0.9f, wd, 1, &e) == DH_OK);
    float mean[2] = { 0.25f, 0.5f }, sd[2] = { 0.5f, 2.0f };
    REQUIRE(net_set_norm(a, mean, sd, &e) == DH_OK);
    const char *cls[3] = { "a", "b", "c" };
    REQUIRE(net_set_classes(a, cls, 3, &e) == DH_OK);
    dhs_model m;
    dhs_model_init(&m);
    REQUIRE(net_to_model(a, &m, &e) == DH_OK);
    char path[] = "/tmp/test_net_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(dh_model_save(path, &m, &e) == DH_OK);
    dhs_model_free(&m);
    dhs_model m2;
    REQUIRE(dhs_model_load(path, &m2, &e) == DH_OK);
    unlink(path);
    CHECK(strcmp(dhs_meta_str(m2.meta, "model"), "net") == 0);
    net *c;
    REQUIRE(net_from_model(&m2, DK_CPU, 5, &c, &e) == DH_OK);
    CHECK(c->nclasses == K && c->zdim == 6 && c->nclass_names == 3 && strcmp(c->class_names[2], "c") == 0);
    CHECK(c->mean[1] == 0.5f && c->std[1] == 2.0f);
    dk_tensor za, zc, xv;
    REQUIRE(dk_tensor_rows(&x, 0, 3, &xv, &e) == DH_OK);
    REQUIRE(net_forward_to_z(a, &xv, 0, &za, &e) == DH_OK);
    REQUIRE(net_forward_to_z(c, &xv, 0, &zc, &e) == DH_OK);
    CHECK(za.n == 18 && zc.n == 18);
    CHECK(memcmp(za.data, zc.data, 18 * sizeof(float)) == 0);

    /* errors: a missing tensor, a wrong shape, no net, a bad spec */
    dhs_model bad;
    net *bn = NULL;
    dhs_model_init(&bad);
    dhs_meta_set_str(bad.meta, "model", "hash");
    CHECK(net_from_model(&bad, DK_CPU, 4, &bn, &e) == DH_ESCHEMA && strstr(e.msg, "no network"));
    dhs_meta_set_str(bad.meta, "net", "input 1 2 2\nbogus\nfeature\n");
    CHECK(net_from_model(&bad, DK_CPU, 4, &bn, &e) == DH_EFORMAT && strstr(e.msg, "model:net:2:"));
    dhs_meta_set_str(bad.meta, "net", spec_all);
    CHECK(net_from_model(&bad, DK_CPU, 4, &bn, &e) != DH_OK);
    dhs_model_free(&bad);
    dhs_tensor *t = dhs_model_find(&m2, "conv2.weight");
    REQUIRE(t);
    t->shape[0] = 1; /* damage the shape */
    CHECK(net_from_model(&m2, DK_CPU, 4, &bn, &e) != DH_OK && strstr(e.msg, "conv2.weight"));
    /* wrong input shape to forward */
    dk_tensor wrong;
    dk_tensor_alloc4(&wrong, DK_CPU, 4, 2, 1, 6, 6, NULL);
    CHECK(net_forward_to_z(a, &wrong, 0, &za, &e) == DH_ESCHEMA);
    dk_tensor_free(&wrong);
    dhs_model_free(&m2);
    dk_tensor_free(&x);
    net_free(a);
    net_free(c);
    netspec_free(&ns);
}

static void t_builtins_build(void) {
    const char *names[] = { "lenet", "cifar", "fast", "air" };
    for (int i = 0; i < 4; i++) {
        netspec ns;
        dh_err e;
        REQUIRE(netspec_builtin(names[i], &ns, &e) == DH_OK);
        net *n;
        REQUIRE(net_create(&ns, 10, DK_CPU, 2, &n, &e) == DH_OK);
        REQUIRE(net_init(n, 1, &e) == DH_OK);
        CHECK(net_nparams(n) == netspec_nparams(&ns) + 10 * ns.zdim + 10);
        dk_tensor x, z;
        dk_tensor_alloc4(&x, DK_CPU, 4, 2, ns.in[0], ns.in[1], ns.in[2], NULL);
        dk_rand_normal(&x, 0, 1, 1, 0, NULL);
        int frc = net_forward_to_z(n, &x, 0, &z, &e);
        CHECKF(frc == DH_OK, "%s: %s", names[i], e.msg);
        CHECK(z.shape[0] == 2 && z.shape[1] == ns.zdim);
        dk_tensor_free(&x);
        net_free(n);
        netspec_free(&ns);
    }
}

/* With a GPU (rel build): the same net on CUDA and on the CPU, the same
 * parameters and batch: z, loss and every gradient agree within
 * |gpu - cpu| <= atol + rtol * max|cpu| (per tensor; cuDNN may use TF32). */
static void t_cuda_matches_cpu(void) {
    if (!DH_USE_CUDA || !dk_cuda_available()) SKIP_TEST("no CUDA device");
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(spec_all, "all", &ns, &e) == DH_OK);
    net *a, *g;
    REQUIRE(dk_init(DK_CUDA, &e) == DH_OK);
    REQUIRE(net_create(&ns, K, DK_CPU, 8, &a, &e) == DH_OK);
    REQUIRE(net_create(&ns, K, DK_CUDA, 8, &g, &e) == DH_OK);
    REQUIRE(net_init(a, 3, &e) == DH_OK && net_init(g, 3, &e) == DH_OK);
    for (int i = 0; i < a->nparams; i++) REQUIRE(dk_copy(&g->params[i].w, &a->params[i].w, &e) == DH_OK);
    dk_tensor x, xg;
    int32_t lab[NB];
    int32_t *labg = NULL;
    make_batch(&x, lab, &ns, 21);
    REQUIRE(dk_tensor_alloc(&xg, DK_CUDA, 4, x.shape, &e) == DH_OK && dk_copy(&xg, &x, &e) == DH_OK);
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof lab, (void **)&labg, &e) == DH_OK);
    REQUIRE(dk_mem_upload(DK_CUDA, labg, lab, sizeof lab, &e) == DH_OK);
    double la, lg;
    int64_t ca, cg;
    REQUIRE(net_grad_xent(a, &x, lab, 0.1f, &la, &ca, &e) == DH_OK);
    REQUIRE(net_grad_xent(g, &xg, labg, 0.1f, &lg, &cg, &e) == DH_OK);
    printf("# cuda vs cpu: loss %.6f vs %.6f\n", lg, la);
    CHECK_NEAR(lg, la, 1e-3 + 1e-2 * fabs(la));
    double worst = 0;
    const char *wn = "";
    for (int i = 0; i < a->nparams; i++) {
        int64_t n = a->params[i].g.n;
        float *h = malloc(n * sizeof *h);
        REQUIRE(h && dk_download(&g->params[i].g, h, n, &e) == DH_OK);
        double mx = 0, err = 0;
        for (int64_t j = 0; j < n; j++) {
            mx = fmax(mx, fabs(a->params[i].g.data[j]));
            double d = fabs(h[j] - a->params[i].g.data[j]);
            err = fmax(err, d == d ? d : INFINITY); /* fmax ignores a NaN */
        }
        double rel = err / (1e-4 + mx);
        if (rel > worst) {
            worst = rel;
            wn = a->params[i].name;
        }
        free(h);
    }
    printf("# cuda vs cpu: worst gradient error %.3g of the tensor's max (%s)\n", worst, wn);
    CHECKF(worst < 2e-2, "gradient %s differs by %g of its max", wn, worst);
    dk_mem_free(DK_CUDA, labg);
    dk_tensor_free(&x);
    dk_tensor_free(&xg);
    net_free(a);
    net_free(g);
    netspec_free(&ns);
}

int main(void) {
    RUN(t_gradcheck);
    RUN(t_head_xent_add);
    RUN(t_learns);
    RUN(t_inference_fusion);
    RUN(t_inference_fusion_bn);
    RUN(t_deterministic_and_roundtrip);
    RUN(t_builtins_build);
    RUN(t_cuda_matches_cpu);
    dk_shutdown();
    return check_done();
}
