/* hash_methods.c — the registry of hash-fitting methods (dh-inithash --method).
 *
 * To add a method: write kernels/hash_<name>.c with its fit function (and,
 * for a non-linear transform, its project function), declare them below,
 * and add one line to the table. Keep "deephash" first: it is the default.
 */
#include <string.h>
#include "hashfn.h"

/* ---- declarations of methods defined in other files (H6 adds here) ---- */
/* BEGIN METHOD DECLARATIONS */
/* kernels/hash_<method>.c (declared also in kernels/hash_linalg.h) */
#define DH_FIT_DECL(f)                                                                                                 \
    int f(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,    \
          dh_err *e)
DH_FIT_DECL(dh_fit_lsh);
DH_FIT_DECL(dh_fit_pcah);
DH_FIT_DECL(dh_fit_itq);
DH_FIT_DECL(dh_fit_sh);
DH_FIT_DECL(dh_fit_ldah);
DH_FIT_DECL(dh_fit_bre);
DH_FIT_DECL(dh_fit_mlh);
DH_FIT_DECL(dh_fit_ksh);
DH_FIT_DECL(dh_fit_sdh);
int dh_sh_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u, dh_err *e);
int hl_rbf_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u,
                   dh_err *e);
/* END METHOD DECLARATIONS */

static const dh_hash_method methods[] = {
    /* name, summary, supervised, fit, transform, project */
    { "deephash", "the paper's stage 2: sigmoid hash layer + softmax trained on z (default)", 1, dh_fit_deephash,
      "linear", NULL },
    /* BEGIN METHOD TABLE (one line per method) */
    { "lsh", "random hyperplanes (Charikar 2002), data centred", 0, dh_fit_lsh, "linear", NULL },
    { "pcah", "PCA then sign: top-K principal directions", 0, dh_fit_pcah, "linear", NULL },
    { "sh", "spectral hashing (Weiss et al. 2008): PCA + 1-D eigenfunctions", 0, dh_fit_sh, "sh", dh_sh_project },
    { "itq", "iterative quantisation (Gong et al. 2013): PCA + learned rotation", 0, dh_fit_itq, "linear", NULL },
    { "ldah", "LDAHash (Strecha et al. 2012): LDA projections + FN/FP thresholds", 1, dh_fit_ldah, "linear", NULL },
    { "bre", "binary reconstructive embeddings (Kulis & Darrell 2009), RBF kernel", 1, dh_fit_bre, "rbf",
      hl_rbf_project },
    { "mlh", "minimal loss hashing (Norouzi & Fleet 2011): hinge loss, SGD", 1, dh_fit_mlh, "linear", NULL },
    { "ksh", "kernel supervised hashing (Liu et al. 2012): 300 RBF anchors", 1, dh_fit_ksh, "rbf", hl_rbf_project },
    { "sdh", "supervised discrete hashing (Shen et al. 2015): 1000 RBF anchors", 1, dh_fit_sdh, "rbf", hl_rbf_project },
    /* END METHOD TABLE */
};

const dh_hash_method *dh_hash_method_at(int i) {
    if (i < 0 || i >= (int)(sizeof methods / sizeof methods[0])) return NULL;
    return &methods[i];
}

const dh_hash_method *dh_hash_method_find(const char *name) {
    const dh_hash_method *m;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (name && strcmp(m->name, name) == 0) return m;
    return NULL;
}

int dh_hash_transform_known(const char *transform) {
    const dh_hash_method *m;
    if (!transform) return 0;
    if (strcmp(transform, "linear") == 0) return 1;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (m->transform && strcmp(m->transform, transform) == 0 && m->project) return 1;
    return 0;
}

dh_hash_project_fn dh_hash_transform_project(const char *transform) {
    const dh_hash_method *m;
    if (!transform || strcmp(transform, "linear") == 0) return NULL;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (m->transform && strcmp(m->transform, transform) == 0 && m->project) return m->project;
    return NULL;
}
