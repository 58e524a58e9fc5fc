/* deeploss_device.c — the C side of the deep losses' device path
 * (dh_dloss_eval_cuda, deeploss.h): the batch checks and the scalars that
 * need only the host labels (pair counts, pair weights, HashNet's beta),
 * then the kernels of deeploss_kernels.cu in libdhcuda.so (deeploss_cuda.h),
 * loaded at first use. A build without CUDA has the same code and answers
 * DH_EDEVICE (the backend is absent): nothing here links CUDA.
 *
 * Which methods: those flagged DH_DLOSS_DEVICE in the registry, each with
 * its kernel below. Not ported: the stateful greedyhash, dsdh and adsh,
 * whose state the host updates at every batch (GreedyHash's classifier
 * step, DSDH's and ADSH's stored outputs): they keep the host path.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "deeploss_cuda.h"
#include "deeploss_impl.h"
#include "dh_cudaload.h"
#include "dh_rng.h"
#include "hashloss.h"

static const struct {
    const char *name;
    int kernel;
} kernels[] = { { "deephash", DL_CU_DEEPHASH },  { "dpsh", DL_CU_DPSH },     { "dhn", DL_CU_DHN },
                { "hashnet", DL_CU_HASHNET },    { "dch", DL_CU_DCH },       { "dsh", DL_CU_DSH },
                { "dtsh", DL_CU_DTSH },          { "mihash", DL_CU_MIHASH }, { "csq", DL_CU_CSQ },
                { "orthohash", DL_CU_ORTHOHASH } };

static int kernel_of(const dh_dloss_method *m) {
    if (!(m->flags & DH_DLOSS_DEVICE)) return DL_CU_NONE;
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (strcmp(kernels[i].name, m->name) == 0) return kernels[i].kernel;
    return DL_CU_NONE;
}

int dh_dloss_eval_cuda(dh_dloss *L, const dh_dloss_batch *b, const float *d_u, float *d_du, dh_dloss_stats *st,
                       dh_err *e) {
    if (!L) return dh_seterr(e, DH_EINVAL, "deep loss: no loss");
    const dh_dloss_method *m = L->m;
    int kernel = kernel_of(m);
    if (kernel == DL_CU_NONE)
        return dh_seterr(e, DH_EUNSUPPORTED, "deep loss %s: no device path (the host computes it: dh_dloss_eval)",
                         m->name);
    int rc = dl_check_batch(L, b, 0, e);
    if (rc) return rc;
    if (!d_u) return dh_seterr(e, DH_EINVAL, "deep loss %s: no device array u", m->name);
    const int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    const double P = (double)B * (B - 1);
    dl_cu_args a;
    memset(&a, 0, sizeof a);
    a.method = kernel;
    a.B = B;
    a.K = K;
    a.C = C;
    a.u = d_u;
    a.du = d_du;
    a.labels = b->labels;
    a.multi = b->multi;
    double w1, w0, scale = 0;
    float *tie = NULL;
    switch (kernel) {
    case DL_CU_DEEPHASH: { /* the registry's adapter (dl_deephash_eval), on dhcu_hashloss */
        dh_hashloss_opts o;
        dl_deephash_opts(L, &o);
        if (K > DH_HL_MAX_BITS) return dh_seterr(e, DH_EINVAL, "deep loss deephash: bits %d out of range", K);
        dh_hashloss_stats w;
        dh_hashloss_weights(b->labels, B, &o, &w);
        a.s[0] = w.wpos;
        a.s[1] = w.wneg;
    } break;
    case DL_CU_DPSH:
    case DL_CU_DHN:
        a.s[0] = L->p[0]; /* eta, lambda */
        a.s[1] = P;
        break;
    case DL_CU_HASHNET:
        dl_balance_weights(b, C, L->p[5] != 0, &w1, &w0);
        a.s[0] = L->p[0];
        a.s[1] = scale = dl_hashnet_beta(L, b->step);
        a.s[2] = w1;
        a.s[3] = w0;
        a.s[4] = P;
        break;
    case DL_CU_DCH:
        dl_balance_weights(b, C, 1, &w1, &w0);
        a.s[0] = L->p[0];
        a.s[1] = L->p[1];
        a.s[2] = w1;
        a.s[3] = w0;
        a.s[4] = P;
        break;
    case DL_CU_DSH:
        a.s[0] = L->p[0];
        a.s[1] = L->p[1];
        a.s[2] = P;
        break;
    case DL_CU_DTSH:
    case DL_CU_MIHASH: /* margin, lambda; nbins, a */
        a.s[0] = L->p[0];
        a.s[1] = L->p[1];
        break;
    case DL_CU_CSQ: /* dl_csq_eval's tie-breaking signs for multi-hot rows */
        a.s[0] = L->p[0];
        a.codebook = L->state;
        if (b->multi) {
            tie = dh_malloc(e, (size_t)K, sizeof(float));
            if (!tie) return DH_ENOMEM;
            uint64_t ts = dh_splitmix64_at(L->cfg.seed, 0x746965ULL);
            for (int k = 0; k < K; k++) tie[k] = (dh_rng_u32(ts, (uint64_t)k) >> 31) ? 1.0f : -1.0f;
            a.tie = tie;
        }
        break;
    case DL_CU_ORTHOHASH:
        a.s[0] = L->p[0];
        a.s[1] = L->p[1];
        a.s[2] = L->p[3];
        a.codebook = L->state;
        break;
    }
    double term[DL_CU_NTERMS];
    memset(term, 0, sizeof term);
    rc = DH_CUDA_CALL(dhcu_dloss, e, &a, term, e);
    free(tie);
    if (rc) return rc;
    dh_dloss_stats s;
    memset(&s, 0, sizeof s);
    for (int t = 0; t < DL_CU_NTERMS && t < DH_DLOSS_MAX_TERMS; t++) s.term[t] = term[t];
    if (kernel == DL_CU_DEEPHASH)
        s.loss = term[0]; /* the surrogate; q and right are reported, not summed */
    else
        for (int t = 0; t < DH_DLOSS_MAX_TERMS && m->terms[t]; t++) s.loss += term[t];
    s.scale = scale;
    if (!isfinite(s.loss)) return dh_seterr(e, DH_EINVAL, "deep loss %s: the loss is not finite (diverged?)", m->name);
    if (st) *st = s;
    return DH_OK;
}

void dh_dloss_cuda_release(void) { DH_CUDA_CALL_IF_LOADED(dhcu_dloss_release); }
