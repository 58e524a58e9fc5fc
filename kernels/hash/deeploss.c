/* deeploss.c — the registry of deep hashing losses, parameters, batch
 * checks and the helpers the methods share (deeploss_impl.h).
 *
 * To add a method: write its eval (and init/epoch_end if it has state) in
 * one of the deeploss_*.c files, declare it in deeploss_impl.h, add one
 * entry to the table below and a section to man/dh-deep-methods.7.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "deeploss_impl.h"
#include "dh_rng.h"

#define BIG 1e6

/* clang-format off */
static const dh_dloss_method methods[] = {
    { .name = "deephash", .title = "DeepHash (Mu & Liu, AAAI 2017), the paper's loss",
      .group = "pairwise product", .input = "u",
      .summary = "exponentiated code-product loss, bilinear surrogate (hashloss.h); the default",
      .flags = DH_DLOSS_DEVICE, .lr_hint = 0.3, .nparams = 2,
      .params = { { "norm", 0, 0, 0, 2, 1, "balanced,mean,sum",
                    "pair weights: balanced (dh-finetune's default), mean, or sum (the paper's plain sum)" },
                  { "scale", 0, 0, 0, 1e30, 0, NULL, "multiplies every weight; 0: K^2 for balanced/mean, 1 for sum" } },
      .terms = { "surrogate", "exact_q", "right", NULL },
      .eval = dl_deephash_eval },
    { .name = "dpsh", .title = "DPSH (Li, Zhao & Kang, IJCAI 2016)", .group = "pairwise likelihood",
      .input = "u", .summary = "pairwise likelihood on theta = u_i.u_j/2 + eta |sign(u) - u|^2",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 1,
      .params = { { "eta", 10, 0, 0, BIG, 0, NULL, "weight of the quantisation term |b - u|^2 (authors' code: 10)" } },
      .terms = { "likelihood", "quantisation", NULL }, .eval = dl_dpsh_eval },
    { .name = "dhn", .title = "DHN (Zhu, Long, Wang & Cao, AAAI 2016)", .group = "pairwise likelihood",
      .input = "z = tanh(u)", .summary = "pairwise cross-entropy on z_i.z_j + pairwise log-cosh quantisation",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 1,
      .params = { { "lambda", 0.1, 0, 0, BIG, 0, NULL,
                    "weight of the quantisation sum log cosh(|z| - 1) (our choice; tuned by cross-validation in the paper)" } },
      .terms = { "cross_entropy", "quantisation", NULL }, .eval = dl_dhn_eval },
    { .name = "hashnet", .title = "HashNet (Cao, Long, Wang & Yu, ICCV 2017)", .group = "pairwise likelihood",
      .input = "h = tanh(beta u), beta growing with the step",
      .summary = "weighted pairwise likelihood on alpha h_i.h_j, continuation beta = (1 + gamma t)^power",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 1, .nparams = 6,
      .params = { { "alpha", 10, -1, 1e-9, 1e3, 0, NULL, "adaptive-sigmoid slope (authors' code: 10/K)" },
                  { "beta0", 1, 0, 1e-6, 1e3, 0, NULL, "initial tanh scale" },
                  { "gamma", 0.005, 0, 0, 10, 0, NULL, "continuation rate: beta = beta0 (1 + gamma t)^power" },
                  { "power", 0.5, 0, 0, 10, 0, NULL, "continuation power" },
                  { "step_size", 200, 0, 1, 1e9, 1, NULL, "beta changes every step_size steps (t rounded down)" },
                  { "balance", 1, 0, 0, 1, 1, NULL, "1: similar/dissimilar pairs weighted |S|/|S1|, |S|/|S0|" } },
      .terms = { "likelihood", NULL }, .eval = dl_hashnet_eval },
    { .name = "dch", .title = "DCH (Cao, Long, Liu & Wang, CVPR 2018)", .group = "pairwise likelihood",
      .input = "h = tanh(u)",
      .summary = "Cauchy cross-entropy on d = K/2 (1 - cos(h_i, h_j)) + Cauchy quantisation",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 2,
      .params = { { "gamma", 20, 0, 1e-6, BIG, 0, NULL, "Cauchy scale (authors' code: 20)" },
                  { "lambda", 0.1, 0, 0, BIG, 0, NULL, "weight of the Cauchy quantisation loss (a common PyTorch port: 0.1)" } },
      .terms = { "cauchy", "quantisation", NULL }, .eval = dl_dch_eval },
    { .name = "dsh", .title = "DSH (Liu, Wang, Shan & Chen, CVPR 2016)", .group = "pairwise difference",
      .input = "u", .summary = "contrastive loss on |u_i - u_j|^2 with margin m + alpha |(|u| - 1)|_1",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 2,
      .params = { { "m", 2, 1, 1e-9, BIG, 0, NULL, "margin on the squared distance (paper: 2K)" },
                  { "alpha", 0.01, 0, 0, BIG, 0, NULL, "weight of the regulariser (paper: 0.01)" } },
      .terms = { "contrastive", "regulariser", NULL }, .eval = dl_dsh_eval },
    { .name = "dtsh", .title = "DTSH (Wang, Shi & Kitani, ACCV 2016)", .group = "multiwise (triplet)",
      .input = "u", .summary = "triplet likelihood sigma(theta_qp - theta_qn - margin) + lambda |sign(u) - u|^2",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 2,
      .params = { { "margin", 0.5, 1, 0, BIG, 0, NULL, "margin alpha (authors' code: K/2)" },
                  { "lambda", 100, 0, 0, BIG, 0, NULL, "weight of the quantisation term (authors' code: 100)" } },
      .terms = { "triplet", "quantisation", NULL }, .eval = dl_dtsh_eval },
    { .name = "mihash", .title = "MIHash (Cakir, He, Bargal & Sclaroff, CVPR 2017 / TPAMI 2019)",
      .group = "multiwise (mutual information)", .input = "phi = 2 sigmoid(a u) - 1",
      .summary = "minus the mutual information between Hamming distances and neighbourhood, soft histograms",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_DEVICE, .lr_hint = 1, .nparams = 2,
      .params = { { "nbins", 0.5, 1, 1, DH_DLOSS_MAX_BITS, 1, NULL, "histogram bins over [0, K] (authors' code: K/2)" },
                  { "a", 1, 0, 1e-6, 1e3, 0, NULL, "sigmoid sharpness (authors' code: 1)" } },
      .terms = { "minus_mi", NULL }, .init = dl_mihash_init, .eval = dl_mihash_eval },
    { .name = "csq", .title = "CSQ (Yuan, Wang, Wang, Ma, Tay, Feng & Yan, CVPR 2020)",
      .group = "implicit (hash centres)", .input = "h = tanh(u)",
      .summary = "binary cross-entropy of (h+1)/2 to the class's hash centre + lambda log cosh(|h| - 1)",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_CLASSES | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 2,
      .params = { { "lambda", 1e-4, 0, 0, BIG, 0, NULL, "weight of the quantisation loss (authors' code: 1e-4)" },
                  { "centres", 0, 0, 0, 2, 1, "auto,hadamard,bernoulli",
                    "auto: Hadamard when K is a power of 2 and C <= 2K, else Bernoulli (the paper's rule)" } },
      .terms = { "centre", "quantisation", NULL }, .init = dl_csq_init, .destroy = dl_state_free,
      .eval = dl_csq_eval, .tensor = dl_codebook_tensor },
    { .name = "orthohash", .title = "OrthoHash (Hoe, Ng, Aggarwal, Chan, Chan & Chan, NeurIPS 2021)",
      .group = "implicit (angular)", .input = "u",
      .summary = "softmax cross-entropy of s (cos(u, c_y) - m) over the class codewords",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_CLASSES | DH_DLOSS_DEVICE, .lr_hint = 0.1, .nparams = 4,
      .params = { { "s", 8, 0, 1e-6, 1e3, 0, NULL, "cosine scale (authors' code: 8)" },
                  { "m", 0.2, 0, 0, 2, 0, NULL, "additive cosine margin (authors' code: 0.2)" },
                  { "codebook", 2, 0, 0, 2, 1, "auto,hadamard,bernoulli", "codewords (authors' default: bernoulli)" },
                  { "quan", 0, 0, 0, BIG, 0, NULL, "weight of 1 - cos(u, sign(u)) (authors' code: 0, off)" } },
      .terms = { "cross_entropy", "quantisation", NULL }, .init = dl_codebook_init, .destroy = dl_state_free,
      .eval = dl_orthohash_eval, .tensor = dl_codebook_tensor },
    { .name = "dsdh", .title = "DSDH (Li, Sun, He & Tan, NIPS 2017)", .group = "classification-oriented",
      .input = "u",
      .summary = "pairwise likelihood + eta |b - u|^2, codes b and classifier W by discrete steps each epoch",
      .flags = DH_DLOSS_MULTILABEL | DH_DLOSS_CLASSES | DH_DLOSS_NEEDS_IDX, .lr_hint = 0.03, .nparams = 4,
      .params = { { "mu", 1, 0, 1e-9, BIG, 0, NULL, "weight of the classification term |y - W^T b|^2 (1, see dh-deep-methods(7))" },
                  { "nu", 0.1, 0, 0, BIG, 0, NULL, "weight of |W|^2 (0.1, see dh-deep-methods(7))" },
                  { "eta", 55, 0, 0, BIG, 0, NULL, "weight of |b - u|^2 (55, see dh-deep-methods(7))" },
                  { "dcc_iter", 1, 0, 1, 1000, 1, NULL, "W-step + DCC sweeps over the bits at each epoch end" } },
      .terms = { "likelihood", "quantisation", "classification", NULL }, .init = dl_dsdh_init,
      .destroy = dl_dsdh_destroy, .eval = dl_dsdh_eval, .epoch_end = dl_dsdh_epoch_end, .tensor = dl_dsdh_tensor,
      .state = dl_dsdh_state },
    { .name = "greedyhash", .title = "GreedyHash (Su, Zhang, Huang & Tian, NeurIPS 2018)",
      .group = "classification-oriented", .input = "b = sign(u), straight-through",
      .summary = "softmax classifier on sign(u), gradient passed straight through + alpha |(|u| - 1)|^3",
      .flags = DH_DLOSS_CLASSES | DH_DLOSS_STRAIGHT, .lr_hint = 0.3, .nparams = 4,
      .params = { { "alpha", 0.1, 0, 0, BIG, 0, NULL, "weight of the cubic penalty (authors' code: 0.1 CIFAR, 1 ImageNet)" },
                  { "lr", 0.001, 0, 0, 1e3, 0, NULL, "classifier's SGD learning rate (authors' code: 0.001)" },
                  { "momentum", 0.9, 0, 0, 0.999, 0, NULL, "classifier's SGD momentum (0.9)" },
                  { "wd", 5e-4, 0, 0, 1, 0, NULL, "classifier's weight decay (5e-4)" } },
      .terms = { "cross_entropy", "penalty", NULL }, .init = dl_greedy_init, .destroy = dl_state_free,
      .eval = dl_greedy_eval, .tensor = dl_greedy_tensor, .state = dl_greedy_state },
    { .name = "adsh", .title = "ADSH (Jiang & Li, AAAI 2018)", .group = "asymmetric",
      .input = "h = tanh(u)",
      .summary = "(h_i.v_j - K S_ij)^2 against learned database codes V + gamma |v_i - h_i|^2; V by DCC each epoch",
      .flags = DH_DLOSS_CLASSES | DH_DLOSS_NEEDS_IDX | DH_DLOSS_NEEDS_DB | DH_DLOSS_ASYM, .lr_hint = 0.3,
      .nparams = 1,
      .params = { { "gamma", 200, 0, 0, BIG, 0, NULL, "weight of |v_i - h_i|^2 (authors' code: 200)" } },
      .terms = { "square", "quantisation", NULL }, .init = dl_adsh_init, .destroy = dl_adsh_destroy,
      .eval = dl_adsh_eval, .epoch_end = dl_adsh_epoch_end, .tensor = dl_adsh_tensor,
      .state = dl_adsh_state, .restored = dl_adsh_restored },
};
/* clang-format on */

int dh_dloss_count(void) { return (int)(sizeof methods / sizeof methods[0]); }

const dh_dloss_method *dh_dloss_method_at(int i) { return i >= 0 && i < dh_dloss_count() ? &methods[i] : NULL; }

const dh_dloss_method *dh_dloss_find(const char *name) {
    for (int i = 0; name && i < dh_dloss_count(); i++)
        if (strcasecmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

double dh_dloss_param_default(const dh_dloss_param *p, int bits) {
    double v = p->def * pow((double)bits, (double)p->def_kpow);
    if (p->is_int) v = fmax(p->lo, floor(v + 0.5));
    return v;
}

static void list_methods(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < dh_dloss_count() && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", methods[i].name);
}

static void list_params(const dh_dloss_method *m, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    if (m->nparams == 0) snprintf(buf, n, "none");
    for (int i = 0; i < m->nparams && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", m->params[i].name);
}

/* Word w of a comma-separated list: its index, or -1. */
static int choice_index(const char *choices, const char *w) {
    int idx = 0;
    size_t wl = strlen(w);
    for (const char *c = choices; *c; idx++) {
        const char *end = strchr(c, ',');
        size_t l = end ? (size_t)(end - c) : strlen(c);
        if (l == wl && strncmp(c, w, l) == 0) return idx;
        if (!end) break;
        c = end + 1;
    }
    return -1;
}

static int set_param(dh_dloss *L, const char *kv, unsigned *seen, dh_err *e) {
    const dh_dloss_method *m = L->m;
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: parameter '%s' is not NAME=VALUE", m->name, kv ? kv : "(null)");
    char name[64];
    size_t nl = (size_t)(eq - kv);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, kv, nl);
    name[nl] = 0;
    const char *val = eq + 1;
    for (int i = 0; i < m->nparams; i++) {
        const dh_dloss_param *p = &m->params[i];
        if (strcmp(p->name, name) != 0) continue;
        if (*seen & (1u << i)) return dh_seterr(e, DH_EINVAL, "deep loss %s: parameter %s given twice", m->name, name);
        *seen |= 1u << i;
        if (p->choices) {
            int c = choice_index(p->choices, val);
            if (c < 0)
                return dh_seterr(e, DH_EINVAL, "deep loss %s: %s=%s: not one of %s", m->name, name, val, p->choices);
            L->p[i] = c;
            return DH_OK;
        }
        double v;
        if (dh_parse_double(val, p->lo, p->hi, &v))
            return dh_seterr(e, DH_EINVAL, "deep loss %s: %s=%s: not a number in [%g, %g]", m->name, name, val, p->lo,
                             p->hi);
        if (p->is_int && v != floor(v))
            return dh_seterr(e, DH_EINVAL, "deep loss %s: %s=%s: not an integer", m->name, name, val);
        L->p[i] = v;
        return DH_OK;
    }
    char known[256];
    list_params(m, known, sizeof known);
    return dh_seterr(e, DH_EINVAL, "deep loss %s: unknown parameter '%s' (parameters: %s)", m->name, name, known);
}

int dh_dloss_create(const char *name, const char *const *params, int n, const dh_dloss_config *cfg, dh_dloss **out,
                    dh_err *e) {
    if (out) *out = NULL;
    if (!out || !cfg) return dh_seterr(e, DH_EINVAL, "deep loss: no output or configuration");
    const dh_dloss_method *m = dh_dloss_find(name);
    if (!m) {
        char known[512];
        list_methods(known, sizeof known);
        return dh_seterr(e, DH_EINVAL, "deep loss: unknown method '%s' (methods: %s)", name ? name : "(null)", known);
    }
    if (cfg->bits < 1 || cfg->bits > DH_DLOSS_MAX_BITS)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: bits %d out of range 1..%d", m->name, cfg->bits,
                         DH_DLOSS_MAX_BITS);
    if (cfg->classes < 0 || cfg->classes > 1000000)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: classes %d out of range", m->name, cfg->classes);
    if ((m->flags & DH_DLOSS_CLASSES) && cfg->classes < 2)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: needs the number of classes (>= 2), got %d", m->name,
                         cfg->classes);
    if (cfg->db_size < 0 || ((m->flags & DH_DLOSS_NEEDS_IDX) && cfg->db_size < 1))
        return dh_seterr(e, DH_EINVAL, "deep loss %s: needs the database size (training rows), got %lld", m->name,
                         (long long)cfg->db_size);
    if (n < 0 || (n > 0 && !params)) return dh_seterr(e, DH_EINVAL, "deep loss %s: bad parameter list", m->name);
    dh_dloss *L = dh_calloc(e, 1, sizeof *L);
    if (!L) return DH_ENOMEM;
    L->m = m;
    L->cfg = *cfg;
    for (int i = 0; i < m->nparams; i++) L->p[i] = dh_dloss_param_default(&m->params[i], cfg->bits);
    unsigned seen = 0;
    for (int i = 0; i < n; i++) {
        int rc = set_param(L, params[i], &seen, e);
        if (rc) {
            free(L);
            return rc;
        }
    }
    if (m->init) {
        int rc = m->init(L, e);
        if (rc) {
            dh_dloss_free(L);
            return rc;
        }
    }
    *out = L;
    return DH_OK;
}

int dh_dloss_create_spec(const char *spec, const dh_dloss_config *cfg, dh_dloss **out, dh_err *e) {
    if (out) *out = NULL;
    if (!spec || !*spec) return dh_seterr(e, DH_EINVAL, "deep loss: empty method name");
    char *s = dh_strdup(e, spec);
    if (!s) return DH_ENOMEM;
    const char *params[DH_DLOSS_MAX_PARAMS * 2];
    int n = 0, rc = DH_OK;
    char *colon = strchr(s, ':');
    if (colon) {
        *colon = 0;
        for (char *tok = colon + 1;;) {
            char *comma = strchr(tok, ',');
            if (comma) *comma = 0;
            if (n == (int)(sizeof params / sizeof params[0])) {
                rc = dh_seterr(e, DH_EINVAL, "deep loss %s: too many parameters", s);
                break;
            }
            params[n++] = tok;
            if (!comma) break;
            tok = comma + 1;
        }
    }
    if (rc == DH_OK) rc = dh_dloss_create(s, params, n, cfg, out, e);
    free(s);
    return rc;
}

void dh_dloss_free(dh_dloss *L) {
    if (!L) return;
    if (L->m->destroy) L->m->destroy(L);
    free(L->db_labels);
    free(L->db_multi);
    free(L);
}

void dl_state_free(dh_dloss *L) {
    free(L->state);
    L->state = NULL;
}

int dh_dloss_set_database(dh_dloss *L, const int32_t *labels, const uint8_t *multi, int64_t n, dh_err *e) {
    if (!L) return dh_seterr(e, DH_EINVAL, "deep loss: no loss");
    const char *nm = L->m->name;
    int C = L->cfg.classes;
    if (n != L->cfg.db_size)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: database of %lld rows, configured for %lld", nm, (long long)n,
                         (long long)L->cfg.db_size);
    if ((labels != NULL) == (multi != NULL))
        return dh_seterr(e, DH_EINVAL, "deep loss %s: give the database's labels or its multi-hot labels", nm);
    if (multi && !(L->m->flags & DH_DLOSS_MULTILABEL))
        return dh_seterr(e, DH_EUNSUPPORTED, "deep loss %s: single-label only (multi-hot database labels given)", nm);
    if (multi && C < 1) return dh_seterr(e, DH_EINVAL, "deep loss %s: multi-hot labels need the number of classes", nm);
    for (int64_t i = 0; labels && i < n; i++)
        if (labels[i] < 0 || (C > 0 && labels[i] >= C))
            return dh_seterr(e, DH_EINVAL, "deep loss %s: database row %lld: label %d out of range 0..%d", nm,
                             (long long)i, labels[i], C - 1);
    free(L->db_labels);
    free(L->db_multi);
    L->db_labels = NULL;
    L->db_multi = NULL;
    if (labels) {
        L->db_labels = dh_malloc(e, (size_t)(n > 0 ? n : 1), sizeof(int32_t));
        if (!L->db_labels) return DH_ENOMEM;
        memcpy(L->db_labels, labels, sizeof(int32_t) * (size_t)n);
    } else {
        L->db_multi = dh_malloc(e, (size_t)(n > 0 ? n : 1) * (size_t)C, 1);
        if (!L->db_multi) return DH_ENOMEM;
        memcpy(L->db_multi, multi, (size_t)n * (size_t)C);
    }
    L->db_n = n;
    return DH_OK;
}

int dl_check_batch(const dh_dloss *L, const dh_dloss_batch *b, int host_u, dh_err *e) {
    const char *nm = L->m->name;
    int K = L->cfg.bits, C = L->cfg.classes;
    if (!b || (host_u && !b->u)) return dh_seterr(e, DH_EINVAL, "deep loss %s: no batch", nm);
    if (b->rows < 2 || b->rows > (1 << 20))
        return dh_seterr(e, DH_EINVAL, "deep loss %s: a batch needs 2..%d rows, got %d", nm, 1 << 20, b->rows);
    if ((b->labels != NULL) == (b->multi != NULL))
        return dh_seterr(e, DH_EINVAL, "deep loss %s: a batch has labels or multi-hot labels (exactly one)", nm);
    if (b->multi && !(L->m->flags & DH_DLOSS_MULTILABEL))
        return dh_seterr(e, DH_EUNSUPPORTED, "deep loss %s: single-label only (multi-hot labels given)", nm);
    if (b->multi && C < 1)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: multi-hot labels need the number of classes", nm);
    for (int i = 0; b->labels && i < b->rows; i++)
        if (b->labels[i] < 0 || (C > 0 && b->labels[i] >= C))
            return dh_seterr(e, DH_EINVAL, "deep loss %s: row %d: label %d out of range 0..%d", nm, i, b->labels[i],
                             C > 0 ? C - 1 : INT32_MAX);
    if (L->m->flags & DH_DLOSS_NEEDS_IDX) {
        if (!b->idx) return dh_seterr(e, DH_EINVAL, "deep loss %s: the batch has no database row indices (idx)", nm);
        for (int i = 0; i < b->rows; i++)
            if (b->idx[i] < 0 || b->idx[i] >= L->cfg.db_size)
                return dh_seterr(e, DH_EINVAL, "deep loss %s: row %d: database index %lld out of range 0..%lld", nm, i,
                                 (long long)b->idx[i], (long long)L->cfg.db_size - 1);
    }
    if ((L->m->flags & DH_DLOSS_NEEDS_DB) && !L->db_labels && !L->db_multi)
        return dh_seterr(e, DH_EINVAL, "deep loss %s: the database's labels were not given (dh_dloss_set_database)",
                         nm);
    if (b->step < 0 || b->epoch < 0) return dh_seterr(e, DH_EINVAL, "deep loss %s: negative step or epoch", nm);
    for (size_t t = 0; host_u && t < (size_t)b->rows * (size_t)K; t++)
        if (!isfinite(b->u[t]))
            return dh_seterr(e, DH_EINVAL, "deep loss %s: row %zu: hash output is not finite", nm, t / (size_t)K);
    return DH_OK;
}

int dh_dloss_eval(dh_dloss *L, const dh_dloss_batch *b, float *du, dh_dloss_stats *st, dh_err *e) {
    if (!L) return dh_seterr(e, DH_EINVAL, "deep loss: no loss");
    int rc = dl_check_batch(L, b, 1, e);
    if (rc) return rc;
    size_t n = (size_t)b->rows * (size_t)L->cfg.bits;
    double *u = dh_malloc(e, n, sizeof(double));
    double *g = dh_calloc(e, n, sizeof(double));
    if (!u || !g) {
        free(u);
        free(g);
        return DH_ENOMEM;
    }
    for (size_t t = 0; t < n; t++) u[t] = b->u[t];
    dh_dloss_stats s;
    memset(&s, 0, sizeof s);
    rc = L->m->eval(L, b, u, g, &s, e);
    if (rc == DH_OK && !isfinite(s.loss))
        rc = dh_seterr(e, DH_EINVAL, "deep loss %s: the loss is not finite (diverged?)", L->m->name);
    if (rc == DH_OK && du)
        for (size_t t = 0; t < n; t++) du[t] = (float)g[t];
    if (rc == DH_OK && st) *st = s;
    free(u);
    free(g);
    return rc;
}

int dh_dloss_epoch_end(dh_dloss *L, dh_err *e) {
    if (!L) return dh_seterr(e, DH_EINVAL, "deep loss: no loss");
    return L->m->epoch_end ? L->m->epoch_end(L, e) : DH_OK;
}

const dh_dloss_method *dh_dloss_method_of(const dh_dloss *L) { return L ? L->m : NULL; }

double dh_dloss_param_value(const dh_dloss *L, const char *name) {
    for (int i = 0; L && name && i < L->m->nparams; i++)
        if (strcmp(L->m->params[i].name, name) == 0) return L->p[i];
    return NAN;
}

const float *dh_dloss_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols) {
    if (!L || !name || !L->m->tensor) return NULL;
    return L->m->tensor(L, name, rows, cols);
}

int dh_dloss_state_at(dh_dloss *L, int i, dh_dloss_state *out) {
    if (!L || !L->state || !L->m->state || i < 0) return -1;
    return L->m->state(L, i, out);
}

void dh_dloss_state_restored(dh_dloss *L) {
    if (L && L->state && L->m->restored) L->m->restored(L);
}

int dh_dloss_describe(char *buf, size_t size) {
    size_t o = 0;
    if (!buf || size == 0) return -1;
    buf[0] = 0;
    for (int i = 0; i < dh_dloss_count() && o < size; i++) {
        const dh_dloss_method *m = &methods[i];
        o += (size_t)snprintf(buf + o, size - o, "%-11s %s\n", m->name, m->summary);
        for (int j = 0; j < m->nparams && o < size; j++) {
            const dh_dloss_param *p = &m->params[j];
            if (p->choices)
                o += (size_t)snprintf(buf + o, size - o, "  %s=%s\n", p->name, p->choices);
            else if (p->def_kpow)
                o += (size_t)snprintf(buf + o, size - o, "  %s=%g*K^%d\n", p->name, p->def, p->def_kpow);
            else
                o += (size_t)snprintf(buf + o, size - o, "  %s=%g\n", p->name, p->def);
        }
    }
    return o < size ? 0 : -1;
}

/* ---- helpers shared by the methods ---- */

int dl_similar(const dh_dloss_batch *b, int C, int i, int j) {
    if (b->labels) return b->labels[i] == b->labels[j];
    const uint8_t *a = b->multi + (size_t)i * (size_t)C, *c = b->multi + (size_t)j * (size_t)C;
    for (int k = 0; k < C; k++)
        if (a[k] && c[k]) return 1;
    return 0;
}

void dl_label_vector(const dh_dloss_batch *b, int C, int i, double *y) {
    for (int c = 0; c < C; c++) y[c] = 0;
    if (b->labels)
        y[b->labels[i]] = 1;
    else
        for (int c = 0; c < C; c++) y[c] = b->multi[(size_t)i * (size_t)C + c] ? 1 : 0;
}

void dl_pair_counts(const dh_dloss_batch *b, int C, int64_t *s1, int64_t *s0) {
    int64_t p = 0, n = 0;
    for (int i = 0; i < b->rows; i++)
        for (int j = 0; j < b->rows; j++)
            if (i != j) {
                if (dl_similar(b, C, i, j))
                    p++;
                else
                    n++;
            }
    *s1 = p;
    *s0 = n;
}

/* Sylvester's Hadamard matrix entry (i, j) of H_K, K a power of two:
 * (-1)^popcount(i & j). */
static float hadamard_entry(int i, int j) { return (__builtin_popcount((unsigned)(i & j)) & 1) ? -1.0f : 1.0f; }

int dl_codebook(int C, int K, int kind, uint64_t seed, const char *who, float *out, dh_err *e) {
    int pow2 = K > 0 && (K & (K - 1)) == 0;
    if (kind == 0) kind = (pow2 && C <= 2 * K) ? 1 : 2;
    if (kind == 1) {
        if (!pow2 || C > 2 * K)
            return dh_seterr(e, DH_EINVAL,
                             "deep loss %s: Hadamard codewords need K a power of 2 and at most 2K classes "
                             "(K %d, %d classes)",
                             who, K, C);
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K; k++) out[(size_t)c * K + k] = (c < K ? 1.0f : -1.0f) * hadamard_entry(c % K, k);
        return DH_OK;
    }
    /* Bernoulli(1/2) codewords: 100 draws, keep the one whose closest pair
     * of codewords is farthest apart (first best on ties). */
    float *cand = dh_malloc(e, (size_t)C * K, sizeof(float));
    if (!cand) return DH_ENOMEM;
    int best = -1;
    for (int draw = 0; draw < 100; draw++) {
        uint64_t s = dh_splitmix64_at(seed, (uint64_t)draw);
        for (size_t t = 0; t < (size_t)C * K; t++) cand[t] = (dh_rng_u32(s, t) >> 31) ? 1.0f : -1.0f;
        int mind = K;
        for (int a = 0; a < C && mind > 0; a++)
            for (int c = a + 1; c < C; c++) {
                int d = 0;
                for (int k = 0; k < K; k++) d += cand[(size_t)a * K + k] != cand[(size_t)c * K + k];
                if (d < mind) mind = d;
            }
        if (mind > best) {
            best = mind;
            memcpy(out, cand, sizeof(float) * (size_t)C * K);
        }
        if (C < 2) break;
    }
    free(cand);
    return DH_OK;
}

int dl_spd_solve(double *A, int n, double *R, int m) {
    /* Cholesky A = L L^T in place (lower triangle), then two triangular solves. */
    for (int j = 0; j < n; j++) {
        double d = A[(size_t)j * n + j];
        for (int k = 0; k < j; k++) d -= A[(size_t)j * n + k] * A[(size_t)j * n + k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        A[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            for (int k = 0; k < j; k++) s -= A[(size_t)i * n + k] * A[(size_t)j * n + k];
            A[(size_t)i * n + j] = s / d;
        }
    }
    for (int c = 0; c < m; c++) {
        for (int i = 0; i < n; i++) { /* L y = r */
            double s = R[(size_t)i * m + c];
            for (int k = 0; k < i; k++) s -= A[(size_t)i * n + k] * R[(size_t)k * m + c];
            R[(size_t)i * m + c] = s / A[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) { /* L^T x = y */
            double s = R[(size_t)i * m + c];
            for (int k = i + 1; k < n; k++) s -= A[(size_t)k * n + i] * R[(size_t)k * m + c];
            R[(size_t)i * m + c] = s / A[(size_t)i * n + i];
        }
    }
    return 0;
}
