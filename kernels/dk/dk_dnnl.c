/* dk_dnnl.c — the oneDNN CPU backend (see dk_dnnl.h).
 *
 * Convolutions run on the layouts oneDNN picks for the shape (blocked,
 * e.g. nChw16c, on AVX-512): our NCHW activations and OIHW filters are
 * reordered into the arena before the primitive and the outputs reordered
 * back, as PyTorch does for plain tensors; between two fused inference
 * ops the output can stay in the blocked layout (dk.h: inference chains,
 * dk_tensor.fmt). Batch normalisation for
 * inference runs on NCHW directly (in training dk_fast.c's, faster than
 * oneDNN 2.6's NCHW code). Matrix products use oneDNN's sgemm. Threads: oneDNN's OpenMP
 * pool, the one dk_cpu.c sizes (DH_THREADS).
 *
 * An operation is one cached `dnn_op`: the main primitive, one slot per
 * argument (our buffer's memory object; when the primitive wants another
 * layout or type, an inner memory in the arena and the reorder between
 * them) and the scratchpad (user-managed, in the arena). Ops are found by
 * a key of kind and geometry; nothing is created again for a shape seen.
 */
#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dk_dnnl.h"

static dnnl_engine_t eng;
static dnnl_stream_t strm;
static int use_bf16;

/* ---- the arena: transient buffers and scratchpads of every op ------------------ */
static void *arena;
static size_t arena_n;
static int64_t st_allocs, st_bytes, st_prims;

static int arena_reserve(size_t bytes, dh_err *e) {
    if (bytes <= arena_n) return 0;
    free(arena);
    arena = NULL;
    arena_n = 0;
    size_t n = (bytes + 4095) & ~(size_t)4095;
    if (posix_memalign(&arena, 4096, n) != 0) {
        arena = NULL;
        return dh_seterr(e, DH_ENOMEM, "onednn: out of memory for a %zu-byte workspace", n);
    }
    arena_n = n;
    st_allocs++;
    st_bytes += (int64_t)n;
    return 0;
}

/* ---- errors ---------------------------------------------------------------------- */
static int dnn_err(dh_err *e, dnnl_status_t s, const char *what) {
    if (s == dnnl_out_of_memory) return dh_seterr(e, DH_ENOMEM, "onednn: %s: out of memory", what);
    return dh_seterr(e, DH_EINVAL, "onednn: %s: status %d", what, (int)s);
}

/* ---- cached operations --------------------------------------------------------------- */
enum {
    OP_CONV_FWD = 1,
    OP_CONV_BWD_DATA,
    OP_CONV_BWD_W,
    OP_BN_INFER,
    OP_CONV_POOL,
    OP_CONV_BN
};
#define MAXARGS 10
#define NKEY    18

typedef struct dnn_arg {
    int arg;                  /* DNNL_ARG_* */
    int out;                  /* written by the primitive */
    dnnl_memory_t user;       /* our buffer's layout (handle set per call); NULL: arena only */
    dnnl_memory_t inner;      /* the primitive's layout, in the arena; NULL: the primitive uses `user` */
    dnnl_primitive_t reorder; /* user -> inner (inputs), inner -> user (outputs) */
    size_t off;               /* inner's offset in the arena */
} dnn_arg;

typedef struct dnn_op {
    struct dnn_op *next;
    int64_t key[NKEY];
    dnnl_primitive_t prim;
    int nargs;
    dnn_arg a[MAXARGS];
    size_t arena;       /* bytes this op needs */
    float *aux;         /* per-op host buffer (batch norm: C floats of variance) */
    struct dnn_op *sub; /* a second primitive run after this one (the pooling of OP_CONV_POOL), owned */
    int ofmt;           /* the output's kept layout (dk.h: inference chains), 0: float32 NCHW */
} dnn_op;

static dnn_op *ops;

static void op_free(dnn_op *o) {
    if (o->prim) dnnl_primitive_destroy(o->prim);
    for (int i = 0; i < o->nargs; i++) {
        dnn_arg *a = &o->a[i];
        if (a->user) dnnl_memory_destroy(a->user);
        if (a->inner) dnnl_memory_destroy(a->inner);
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
    }
    free(o->aux);
    if (o->sub) op_free(o->sub);
    free(o);
}

void dk_dnnl_flush(void) {
    while (ops) {
        dnn_op *n = ops->next;
        op_free(ops);
        ops = n;
    }
}

void dk_dnnl_shutdown(void) {
    dk_dnnl_flush();
    free(arena);
    arena = NULL;
    arena_n = 0;
    if (strm) dnnl_stream_destroy(strm);
    if (eng) dnnl_engine_destroy(eng);
    strm = NULL;
    eng = NULL;
}

int dk_dnnl_init(dh_err *e) {
    if (eng) return 0;
    dnnl_status_t s = dnnl_engine_create(&eng, dnnl_cpu, 0);
    if (s != dnnl_success) {
        eng = NULL;
        return dnn_err(e, s, "engine");
    }
    s = dnnl_stream_create(&strm, eng, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        dnnl_engine_destroy(eng);
        eng = NULL;
        strm = NULL;
        return dnn_err(e, s, "stream");
    }
    return 0;
}

void dk_dnnl_stats(int64_t *allocs, int64_t *bytes, int64_t *primitives) {
    *allocs = st_allocs;
    *bytes = st_bytes;
    *primitives = st_prims;
}

int dk_dnnl_bf16_supported(void) {
    /* oneDNN dispatches bf16 kernels on avx512_core_bf16 (or AMX). Asked of
     * oneDNN rather than of the CPU, so that ONEDNN_MAX_CPU_ISA (AVX2, say)
     * makes this machine behave as an older one, bf16 refused included. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return __builtin_cpu_supports("avx512bf16") && (isa & bf16) == bf16;
}

void dk_dnnl_set_bf16(int on) {
    if (on != use_bf16) dk_dnnl_flush();
    use_bf16 = on;
}

static dnn_op *op_find(const int64_t *key) {
    dnn_op **pp = &ops;
    for (dnn_op *o = ops; o; pp = &o->next, o = o->next)
        if (memcmp(o->key, key, sizeof o->key) == 0) {
            *pp = o->next; /* move to front */
            o->next = ops;
            ops = o;
            return o;
        }
    return NULL;
}

static dnn_op *op_new(const int64_t *key, dh_err *e) {
    dnn_op *o = dh_calloc(e, 1, sizeof *o);
    if (!o) return NULL;
    memcpy(o->key, key, sizeof o->key);
    st_allocs++;
    return o;
}

static void op_insert(dnn_op *o) {
    o->next = ops;
    ops = o;
}

/* A newly built op: into the cache when it was built (rc 0), else freed. */
static dnn_op *op_commit(dnn_op *o, int rc) {
    if (rc) {
        if (o) op_free(o);
        return NULL;
    }
    op_insert(o);
    return o;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Add an argument: `user` is the md of our buffer (NULL: arena only, of
 * md `want`); `want` the primitive's md (NULL: the same as user). */
static int add_arg(dnn_op *o, int arg, int out, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *want,
                   dh_err *e) {
    dnn_arg *a = &o->a[o->nargs++];
    memset(a, 0, sizeof *a);
    a->arg = arg;
    a->out = out;
    dnnl_status_t s;
    if (user && (s = dnnl_memory_create(&a->user, user, eng, DNNL_MEMORY_NONE)) != dnnl_success)
        return dnn_err(e, s, "memory");
    if (want && user && dnnl_memory_desc_equal(user, want)) want = NULL;
    if (!want) return 0;
    if ((s = dnnl_memory_create(&a->inner, want, eng, DNNL_MEMORY_NONE)) != dnnl_success)
        return dnn_err(e, s, "memory");
    a->off = o->arena;
    o->arena += align64(dnnl_memory_desc_get_size(want));
    if (!user) return 0;
    dnnl_primitive_desc_t rpd;
    s = out ? dnnl_reorder_primitive_desc_create(&rpd, want, eng, user, eng, NULL)
            : dnnl_reorder_primitive_desc_create(&rpd, user, eng, want, eng, NULL);
    if (s != dnnl_success) return dnn_err(e, s, "reorder");
    s = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (s != dnnl_success) return dnn_err(e, s, "reorder");
    st_prims++;
    return 0;
}

/* The primitive and its scratchpad from a primitive descriptor. */
static int set_prim(dnn_op *o, dnnl_primitive_desc_t pd, dh_err *e) {
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    int rc;
    if (sp && dnnl_memory_desc_get_size(sp) > 0 && (rc = add_arg(o, DNNL_ARG_SCRATCHPAD, 0, NULL, sp, e))) return rc;
    dnnl_status_t s = dnnl_primitive_create(&o->prim, pd);
    if (s != dnnl_success) return dnn_err(e, s, "primitive");
    st_prims++;
    return 0;
}

static dnnl_primitive_attr_t user_scratchpad_attr(void) {
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    return attr;
}

/* Run o with our buffers bufs[i] for argument i (NULL for arena-only ones),
 * its arena space from byte `base` on (a sub-op's: after its parent's).
 * skip: bit i set = input i's inner copy already holds bufs[i] (the filter
 * of the previous chunk of the same op); its reorder is not run again. */
static int op_run_at(dnn_op *o, void *const *bufs, unsigned skip, size_t base, dh_err *e) {
    int rc = arena_reserve(base + o->arena, e);
    if (rc) return rc;
    dnnl_exec_arg_t args[MAXARGS];
    dnnl_status_t s = dnnl_success;
    for (int i = 0; i < o->nargs && s == dnnl_success; i++) {
        dnn_arg *a = &o->a[i];
        if (a->user) s = dnnl_memory_set_data_handle(a->user, bufs[i]);
        if (s == dnnl_success && a->inner) s = dnnl_memory_set_data_handle(a->inner, (char *)arena + base + a->off);
        args[i].arg = a->arg;
        args[i].memory = a->inner ? a->inner : a->user;
    }
    for (int i = 0; i < o->nargs && s == dnnl_success; i++) {
        dnn_arg *a = &o->a[i];
        if (a->reorder && !a->out && !(skip >> i & 1)) {
            dnnl_exec_arg_t r[2] = { { DNNL_ARG_FROM, a->user }, { DNNL_ARG_TO, a->inner } };
            s = dnnl_primitive_execute(a->reorder, strm, 2, r);
        }
    }
    if (s == dnnl_success) s = dnnl_primitive_execute(o->prim, strm, o->nargs, args);
    for (int i = 0; i < o->nargs && s == dnnl_success; i++) {
        dnn_arg *a = &o->a[i];
        if (a->reorder && a->out) {
            dnnl_exec_arg_t r[2] = { { DNNL_ARG_FROM, a->inner }, { DNNL_ARG_TO, a->user } };
            s = dnnl_primitive_execute(a->reorder, strm, 2, r);
        }
    }
    if (s == dnnl_success) s = dnnl_stream_wait(strm);
    return s == dnnl_success ? 0 : dnn_err(e, s, "execute");
}
static int op_run(dnn_op *o, void *const *bufs, unsigned skip, dh_err *e) { return op_run_at(o, bufs, skip, 0, e); }

/* ---- memory descriptors -------------------------------------------------------------- */
static int md4(dnnl_memory_desc_t *md, int64_t a, int64_t b, int64_t c, int64_t d, dnnl_data_type_t t,
               dnnl_format_tag_t tag) {
    dnnl_dims_t dims = { a, b, c, d };
    return dnnl_memory_desc_init_by_tag(md, 4, dims, t, tag) != dnnl_success;
}
static int md1(dnnl_memory_desc_t *md, int64_t a) {
    dnnl_dims_t dims = { a };
    return dnnl_memory_desc_init_by_tag(md, 1, dims, dnnl_f32, dnnl_x) != dnnl_success;
}

/* ---- kept layouts (dk.h, inference chains) ------------------------------------------------ */
/* A kept tensor's fmt: 1 + 4 x (0: f32, 1: bf16) + the index of its tag below;
 * only layouts with the images outermost, so that a chunk of images is a
 * contiguous range of bytes. */
static const dnnl_format_tag_t kept_tags[4] = { dnnl_abcd, dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b };

static int fmt_md(int fmt, int64_t N, int64_t C, int64_t H, int64_t W, dnnl_memory_desc_t *md) {
    if (fmt < 1 || fmt > 8) return -1;
    return md4(md, N, C, H, W, (fmt - 1) / 4 ? dnnl_bf16 : dnnl_f32, kept_tags[(fmt - 1) % 4]);
}

/* The fmt of md (an activation of N x C x H x W), or 0 when it is none of
 * the kept layouts or takes more bytes than the tensor's float32 NCHW. */
static int fmt_of(const dnnl_memory_desc_t *md, int64_t N, int64_t C, int64_t H, int64_t W) {
    for (int f = 1; f <= 8; f++) {
        dnnl_memory_desc_t c;
        if (!fmt_md(f, N, C, H, W, &c) && dnnl_memory_desc_equal(md, &c))
            return dnnl_memory_desc_get_size(&c) <= (size_t)(N * C * H * W) * sizeof(float) ? f : 0;
    }
    return 0;
}

/* Bytes per image of an activation (C, H, W) in fmt (0: float32 NCHW). */
static size_t fmt_image_bytes(int fmt, int64_t C, int64_t H, int64_t W) {
    dnnl_memory_desc_t c;
    if (fmt > 0 && !fmt_md(fmt, 1, C, H, W, &c)) return dnnl_memory_desc_get_size(&c);
    return (size_t)(C * H * W) * sizeof(float);
}

/* ---- matrix products ----------------------------------------------------------------------- */
int dk_sgemm_dnnl(int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e) {
    dnnl_status_t s = dnnl_sgemm(tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return s == dnnl_success ? 0 : dnn_err(e, s, "sgemm");
}

/* ---- convolution ------------------------------------------------------------------------------ */
typedef struct {
    int64_t N, C, H, W, F, KH, KW, OH, OW;
    int stride, pad;
} cgeom;

static cgeom conv_geom(const dk_tensor *x, const dk_tensor *w, const dk_tensor *y, int stride, int pad) {
    cgeom g = { x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2],
                w->shape[3], y->shape[2], y->shape[3], stride,      pad };
    return g;
}

/* oneDNN wants the right padding that makes the output size exact; a
 * negative one (a floor that drops input rows) is left to the reference. */
static int64_t right_pad(int64_t out, int64_t stride, int64_t k, int64_t in, int64_t pad) {
    return (out - 1) * stride + k - in - pad;
}
static int conv_pads(const cgeom *g, dnnl_dims_t st, dnnl_dims_t pl, dnnl_dims_t pr) {
    st[0] = st[1] = g->stride;
    pl[0] = pl[1] = g->pad;
    pr[0] = right_pad(g->OH, g->stride, g->KH, g->H, g->pad);
    pr[1] = right_pad(g->OW, g->stride, g->KW, g->W, g->pad);
    return pr[0] >= 0 && pr[1] >= 0;
}

static void conv_key(int64_t *key, int kind, const cgeom *g, int bias) {
    memset(key, 0, NKEY * sizeof *key);
    int64_t k[NKEY] = { kind, g->N, g->C, g->H, g->W, g->F, g->KH, g->KW, g->stride, g->pad, bias, use_bf16 };
    memcpy(key, k, sizeof k);
}

/* The convolution's memory descriptors: ours (plain f32) and "any" ones
 * for oneDNN to choose (bf16 for the multiplied inputs under bf16). */
typedef struct {
    dnnl_memory_desc_t x, w, b, y;           /* plain: nchw, oihw, x, nchw */
    dnnl_memory_desc_t ax, aw, ay, axo, awo; /* any: inputs (maybe bf16), outputs f32 */
} conv_mds;

/* The activations' layout inside a convolution: oneDNN's choice (blocked,
 * 16 channels per block on AVX-512), except in bf16 when the output
 * channels, or more than a few input channels, are not a multiple of 16:
 * then NHWC, where brgconv runs without padding the channels to the block
 * (lenet's 20 and 50 channels: the bf16 passes 1.3-2.0x faster, the
 * first layer's filter gradient 3x). */
static dnnl_format_tag_t act_tag(const cgeom *g) {
    int odd = g->F % 16 != 0 || (g->C % 16 != 0 && g->C >= 8);
    return use_bf16 && odd ? dnnl_acdb : dnnl_format_tag_any;
}
static int conv_mds_init(const cgeom *g, conv_mds *m) {
    dnnl_data_type_t it = use_bf16 ? dnnl_bf16 : dnnl_f32;
    return md4(&m->x, g->N, g->C, g->H, g->W, dnnl_f32, dnnl_nchw) ||
           md4(&m->w, g->F, g->C, g->KH, g->KW, dnnl_f32, dnnl_oihw) || md1(&m->b, g->F) ||
           md4(&m->y, g->N, g->F, g->OH, g->OW, dnnl_f32, dnnl_nchw) ||
           md4(&m->ax, g->N, g->C, g->H, g->W, it, act_tag(g)) ||
           md4(&m->aw, g->F, g->C, g->KH, g->KW, it, dnnl_format_tag_any) ||
           md4(&m->ay, g->N, g->F, g->OH, g->OW, it, act_tag(g)) ||
           md4(&m->axo, g->N, g->C, g->H, g->W, dnnl_f32, act_tag(g)) ||
           md4(&m->awo, g->F, g->C, g->KH, g->KW, dnnl_f32, dnnl_format_tag_any);
}

/* The forward primitive descriptor (also the hint of the backward ones). */
static dnnl_primitive_desc_t conv_fwd_pd(const cgeom *g, const conv_mds *m, int bias, dnnl_prop_kind_t prop,
                                         dnnl_data_type_t yt, dnnl_primitive_attr_t attr) {
    dnnl_dims_t st, pl, pr;
    conv_pads(g, st, pl, pr);
    dnnl_memory_desc_t yo;
    md4(&yo, g->N, g->F, g->OH, g->OW, yt, act_tag(g));
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_convolution_forward_desc_init(&cd, prop, dnnl_convolution_direct, &m->ax, &m->aw, bias ? &m->b : NULL, &yo,
                                           st, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) != dnnl_success)
        return NULL;
    return pd;
}

static const dnnl_memory_desc_t *q(dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Append the activation DK_ACT_* (none: nothing) to *po, created on first
 * use; 0 or -1. */
static int append_act(dnnl_post_ops_t *po, int act) {
    if (act == DK_ACT_NONE) return 0;
    if (!*po && dnnl_post_ops_create(po) != dnnl_success) return -1;
    dnnl_alg_kind_t alg = act == DK_ACT_RELU ? dnnl_eltwise_relu : dnnl_eltwise_gelu_erf;
    return dnnl_post_ops_append_eltwise(*po, 1.0f, alg, 0.0f, 0.0f) == dnnl_success ? 0 : -1;
}

/* Build or find the op of `kind` for geometry g; NULL with *rc = DECLINE
 * when oneDNN has no implementation, or an error. OP_CONV_BN: the forward
 * for inference with the activation act as its post-op and, in aux, room
 * for the folded filter (F C KH KW floats), bias and scales (F floats each).
 * The forwards: the input in layout infmt (0: float32 NCHW; dk.h, inference
 * chains), the output kept (outreq DK_FMT_KEEP: in the primitive's own
 * layout and precision where fmt_of allows, o->ofmt; > 0: in that layout)
 * or not (0). */
static dnn_op *conv_op(int kind, const cgeom *g, int bias, int act, int infmt, int outreq, int *rc, dh_err *e) {
    int64_t key[NKEY];
    conv_key(key, kind, g, bias);
    key[12] = act;
    key[13] = infmt;
    key[14] = outreq;
    dnn_op *o = op_find(key);
    if (o) return o;
    if ((*rc = dk_dnnl_init(e))) return NULL;
    dnnl_dims_t st, pl, pr;
    conv_mds m;
    *rc = DK_DNNL_DECLINE;
    if (!conv_pads(g, st, pl, pr) || conv_mds_init(g, &m)) return NULL;
    int fwd = kind == OP_CONV_FWD || kind == OP_CONV_BN, ofmt = 0;
    dnnl_memory_desc_t ux = m.x, uy = m.y; /* our buffers' layouts */
    if (infmt && (!fwd || fmt_md(infmt, g->N, g->C, g->H, g->W, &ux))) return NULL;
    dnnl_primitive_attr_t attr = user_scratchpad_attr();
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    dnnl_convolution_desc_t cd;
    if (!attr || append_act(&po, act) || (po && dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success)) goto out;
    dnnl_prop_kind_t prop = kind == OP_CONV_BN ? dnnl_forward_inference : dnnl_forward_training;
    /* a kept output in the precision of the next convolution's input (which rounds it to that anyway) */
    fpd = conv_fwd_pd(g, &m, bias, prop, fwd && outreq ? m.ax.data_type : dnnl_f32, attr);
    if (fpd && fwd && outreq) {
        ofmt = outreq > 0 ? outreq : fmt_of(q(fpd, dnnl_query_dst_md), g->N, g->F, g->OH, g->OW);
        if (ofmt && fmt_md(ofmt, g->N, g->F, g->OH, g->OW, &uy)) ofmt = 0;
        if (!ofmt && m.ax.data_type != dnnl_f32) { /* not kept: float32 out, as unchained */
            dnnl_primitive_desc_destroy(fpd);
            fpd = conv_fwd_pd(g, &m, bias, prop, dnnl_f32, attr);
        }
    }
    if (!fpd) goto out;
    if (fwd) {
        pd = fpd;
        fpd = NULL;
    } else if (kind == OP_CONV_BWD_DATA) {
        if (dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &m.axo, &m.aw, &m.ay, st, pl, pr) !=
                dnnl_success ||
            dnnl_primitive_desc_create(&pd, &cd, attr, eng, fpd) != dnnl_success)
            pd = NULL;
    } else {
        if (dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &m.ax, &m.awo, NULL, &m.ay, st,
                                                        pl, pr) != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &cd, attr, eng, fpd) != dnnl_success)
            pd = NULL;
    }
    if (!pd) goto out;
    *rc = 0;
    if (!(o = op_new(key, e))) {
        *rc = DH_ENOMEM;
        goto out;
    }
    o->ofmt = ofmt;
    /* argument order = the order of bufs[] in the callers */
    if (fwd) {
        *rc = add_arg(o, DNNL_ARG_SRC, 0, &ux, q(pd, dnnl_query_src_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_WEIGHTS, 0, &m.w, q(pd, dnnl_query_weights_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_DST, 1, &uy, q(pd, dnnl_query_dst_md), e);
        if (!*rc && bias) *rc = add_arg(o, DNNL_ARG_BIAS, 0, &m.b, NULL, e);
    } else if (kind == OP_CONV_BWD_DATA) {
        *rc = add_arg(o, DNNL_ARG_DIFF_DST, 0, &m.y, q(pd, dnnl_query_diff_dst_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_WEIGHTS, 0, &m.w, q(pd, dnnl_query_weights_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_DIFF_SRC, 1, &m.x, q(pd, dnnl_query_diff_src_md), e);
    } else {
        *rc = add_arg(o, DNNL_ARG_SRC, 0, &m.x, q(pd, dnnl_query_src_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_DIFF_DST, 0, &m.y, q(pd, dnnl_query_diff_dst_md), e);
        if (!*rc) *rc = add_arg(o, DNNL_ARG_DIFF_WEIGHTS, 1, &m.w, q(pd, dnnl_query_diff_weights_md), e);
    }
    int64_t naux = kind == OP_CONV_BWD_W ? g->F * g->C * g->KH * g->KW
                   : kind == OP_CONV_BN  ? g->F * g->C * g->KH * g->KW + 2 * g->F
                                         : 0;
    if (!*rc && naux && !(o->aux = dh_malloc(e, (size_t)naux, sizeof(float)))) *rc = DH_ENOMEM;
    if (!*rc) *rc = set_prim(o, pd, e);
    o = op_commit(o, *rc);
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return o;
}

/* Images per oneDNN call: a large batch runs in chunks whose layout copies
 * (input and output, in the arena) stay within ~24 MB, so the arena stays
 * small and a chunk's copies are still in cache when the convolution reads
 * them; the filter is reordered once per call. Chunks are even-sized. */
static int64_t conv_chunk(const cgeom *g) {
    const int64_t target = 24 << 20;
    int64_t per = 4 * (g->C * g->H * g->W + g->F * g->OH * g->OW);
    int64_t nb = per > 0 ? target / per : g->N;
    if (nb < 1) nb = 1;
    if (nb >= g->N) return g->N;
    int64_t chunks = (g->N + nb - 1) / nb;
    return (g->N + chunks - 1) / chunks;
}

/* The op for a chunk of n images of g. */
static dnn_op *chunk_op(int kind, const cgeom *g, int64_t n, int bias, int *rc, dh_err *e) {
    cgeom c = *g;
    c.N = n;
    return conv_op(kind, &c, bias, DK_ACT_NONE, 0, 0, rc, e);
}

static void fold_bn(const cgeom *g, const float *w, const float *b, const dk_bn_act *bn, float *wf, float *bf);
static void bn_affine(const dk_bn_act *bn, int64_t C, float *scale, float *shift);

/* The forward in chunks; with bn, the inference one with the normalisation
 * folded into the filter and bias (OP_CONV_BN). x may be kept and y asked
 * to keep (dk.h, inference chains): the first chunk's op decides the
 * layout, the others follow it. */
static int conv_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                        const dk_bn_act *bn, dk_tensor *y, dh_err *e) {
    cgeom g = conv_geom(x, w, y, stride, pad);
    int64_t nb = conv_chunk(&g), wn = g.F * g.C * g.KH * g.KW;
    int infmt = x->fmt > 0 ? x->fmt : 0, outreq = y->fmt == DK_FMT_KEEP ? DK_FMT_KEEP : 0;
    size_t xs = fmt_image_bytes(infmt, g.C, g.H, g.W), ys = 0;
    dnn_op *last = NULL;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        cgeom c = g;
        c.N = n;
        int rc = DK_DNNL_DECLINE;
        dnn_op *o = bn ? conv_op(OP_CONV_BN, &c, 1, bn->act, infmt, outreq, &rc, e)
                       : conv_op(OP_CONV_FWD, &c, b != NULL, 0, infmt, outreq, &rc, e);
        if (!o) return rc; /* a DECLINE at any chunk leaves it all to the composition, which writes every output */
        if (b0 == 0) {
            if (outreq) outreq = o->ofmt; /* the other chunks: in the first one's layout, or not kept */
            ys = fmt_image_bytes(o->ofmt, g.F, g.OH, g.OW);
        }
        void *bufs[4] = { (char *)x->data + b0 * xs, w->data, (char *)y->data + b0 * ys, b ? b->data : NULL };
        if (bn) {
            /* each op (at most two chunk sizes) folds into its own buffer, once per call */
            if (o != last) fold_bn(&g, w->data, b ? b->data : NULL, bn, o->aux, o->aux + wn);
            bufs[1] = o->aux;
            bufs[3] = o->aux + wn;
        }
        if ((rc = op_run(o, bufs, o == last ? 1u << 1 : 0, e))) return rc;
        last = o;
    }
    y->fmt = outreq > 0 ? outreq : 0;
    return 0;
}

int dk_conv2d_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                           dk_tensor *y, dh_err *e) {
    return conv_forward(x, w, b, stride, pad, NULL, y, e);
}

int dk_conv2d_backward_data_dnnl(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,
                                 dh_err *e) {
    cgeom g = conv_geom(dx, w, dy, stride, pad);
    int64_t nb = conv_chunk(&g), xs = g.C * g.H * g.W, ys = g.F * g.OH * g.OW;
    dnn_op *last = NULL;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        int rc;
        dnn_op *o = chunk_op(OP_CONV_BWD_DATA, &g, n, 0, &rc, e);
        if (!o) return rc;
        void *bufs[3] = { dy->data + b0 * ys, w->data, dx->data + b0 * xs };
        if ((rc = op_run(o, bufs, o == last ? 1u << 1 : 0, e))) return rc;
        last = o;
    }
    return 0;
}

int dk_conv2d_backward_filter_dnnl(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,
                                   dh_err *e) {
    cgeom g = conv_geom(x, dw, dy, stride, pad);
    int64_t nb = conv_chunk(&g), xs = g.C * g.H * g.W, ys = g.F * g.OH * g.OW;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        int rc;
        dnn_op *o = chunk_op(OP_CONV_BWD_W, &g, n, 0, &rc, e);
        if (!o) return rc;
        /* the first chunk writes dw, each other one a copy added to it in chunk order */
        float *part = b0 == 0 ? dw->data : o->aux;
        void *bufs[3] = { x->data + b0 * xs, dy->data + b0 * ys, part };
        if ((rc = op_run(o, bufs, 0, e))) return rc;
        if (b0 > 0) {
            float *d = dw->data;
            int64_t m = dw->n;
#pragma omp parallel for schedule(static) if (m >= 32768)
            for (int64_t i = 0; i < m; i++) d[i] += part[i];
        }
    }
    return 0;
}

/* ---- convolution + pooling, inference ------------------------------------------------------------------------ */
typedef struct {
    int relu, avg, k, s, p;
    int64_t OH, OW; /* the pooled output */
    int bn, act;    /* a normalisation (and DK_ACT_*) after the pooling */
} pgeom;

/* The normalisation as a per-channel affine map: scale a = gamma / sqrt(var
 * + eps) (as the reference computes it), shift beta - a mean. */
static void bn_affine(const dk_bn_act *bn, int64_t C, float *scale, float *shift) {
    for (int64_t c = 0; c < C; c++) {
        float a = bn->gamma->data[c] / sqrtf(bn->var->data[c] + bn->eps);
        scale[c] = a;
        shift[c] = bn->beta->data[c] - a * bn->mean->data[c];
    }
}

/* The op: the convolution (forward_inference, ReLU as a post-op) writing its
 * blocked output into the arena, and as its sub-op the pooling reading it
 * there and writing the NCHW output through a reorder. The input in layout
 * infmt, the output kept or not, as conv_op's; o->sub->ofmt. */
static dnn_op *conv_pool_op(const cgeom *g, int bias, const pgeom *pg, int infmt, int outreq, int *rc, dh_err *e) {
    int64_t key[NKEY];
    conv_key(key, OP_CONV_POOL, g, bias);
    key[12] = pg->relu;
    key[13] = pg->avg;
    key[14] = pg->k;
    key[15] = pg->s;
    key[16] = pg->p;
    key[17] = pg->bn | pg->act << 1 | (int64_t)infmt << 8 | (int64_t)(outreq & 0xff) << 16;
    dnn_op *o = op_find(key);
    if (o) return o;
    if ((*rc = dk_dnnl_init(e))) return NULL;
    *rc = DK_DNNL_DECLINE;
    dnnl_dims_t st, pl, pr, kst = { pg->s, pg->s }, kk = { pg->k, pg->k }, kpl = { pg->p, pg->p }, kpr;
    kpr[0] = right_pad(pg->OH, pg->s, pg->k, g->OH, pg->p);
    kpr[1] = right_pad(pg->OW, pg->s, pg->k, g->OW, pg->p);
    conv_mds m;
    dnnl_memory_desc_t py, pya, ux;
    /* under bf16 the convolution's output, never seen outside, is bf16 too:
     * half the bytes written and pooled. The next convolution rounds its
     * input to bf16 anyway: the same maxima; averages of rounded values. */
    dnnl_data_type_t yt = use_bf16 ? dnnl_bf16 : dnnl_f32;
    /* left to the composition: a floor that drops the last rows (a negative
     * right pad; oneDNN would pool a cropped view with its slow reference
     * code) and a right pad past the window (a window of padding only) */
    if (!conv_pads(g, st, pl, pr) || kpr[0] < 0 || kpr[1] < 0 || kpr[0] >= pg->k || kpr[1] >= pg->k ||
        conv_mds_init(g, &m) || md4(&py, g->N, g->F, pg->OH, pg->OW, dnnl_f32, dnnl_nchw) ||
        md4(&pya, g->N, g->F, pg->OH, pg->OW, yt, dnnl_format_tag_any))
        return NULL;
    ux = m.x;
    if (infmt && fmt_md(infmt, g->N, g->C, g->H, g->W, &ux)) return NULL;
    dnnl_primitive_attr_t attr = user_scratchpad_attr(), cattr = user_scratchpad_attr();
    dnnl_post_ops_t po = NULL, ppo = NULL;
    dnnl_primitive_desc_t cpd = NULL, ppd = NULL;
    dnnl_pooling_desc_t pdesc;
    dnnl_memory_desc_t pc; /* a per-channel operand of the pooling's post-ops: (1, F, 1, 1) f32 */
    if (!attr || !cattr || md4(&pc, 1, g->F, 1, 1, dnnl_f32, dnnl_nchw)) goto out;
    if (append_act(&po, pg->relu ? DK_ACT_RELU : DK_ACT_NONE) ||
        (po && dnnl_primitive_attr_set_post_ops(cattr, po) != dnnl_success))
        goto out;
    /* the normalisation after the pooling: times the scale, plus the shift, the activation */
    if (pg->bn && (dnnl_post_ops_create(&ppo) != dnnl_success ||
                   dnnl_post_ops_append_binary(ppo, dnnl_binary_mul, &pc) != dnnl_success ||
                   dnnl_post_ops_append_binary(ppo, dnnl_binary_add, &pc) != dnnl_success ||
                   append_act(&ppo, pg->act) || dnnl_primitive_attr_set_post_ops(attr, ppo) != dnnl_success))
        goto out;
    if (!(cpd = conv_fwd_pd(g, &m, bias, dnnl_forward_inference, yt, cattr))) goto out;
    const dnnl_memory_desc_t *cy = q(cpd, dnnl_query_dst_md);
    if (dnnl_pooling_forward_desc_init(&pdesc, dnnl_forward_inference,
                                       pg->avg ? dnnl_pooling_avg_include_padding : dnnl_pooling_max, cy, &pya, kst, kk,
                                       kpl, kpr) != dnnl_success ||
        dnnl_primitive_desc_create(&ppd, &pdesc, attr, eng, NULL) != dnnl_success) {
        ppd = NULL;
        goto out;
    }
    *rc = 0;
    if (!(o = op_new(key, e)) || !(o->sub = op_new(key, e))) {
        *rc = DH_ENOMEM;
        goto fail;
    }
    /* argument order = the order of bufs[] in dk_conv2d_pool_forward_dnnl; the
     * convolution's output (argument 2) lives in the arena only */
    /* the pooled output kept: in the pooling's own layout and precision (under
     * bf16 the values are bf16 already), else float32 NCHW through a reorder */
    const dnnl_memory_desc_t *pd_dst = q(ppd, dnnl_query_dst_md);
    int ofmt = outreq > 0 ? outreq : outreq ? fmt_of(pd_dst, g->N, g->F, pg->OH, pg->OW) : 0;
    dnnl_memory_desc_t uy = py;
    if (ofmt && fmt_md(ofmt, g->N, g->F, pg->OH, pg->OW, &uy)) ofmt = 0, uy = py;
    o->sub->ofmt = ofmt;
    *rc = add_arg(o, DNNL_ARG_SRC, 0, &ux, q(cpd, dnnl_query_src_md), e);
    if (!*rc) *rc = add_arg(o, DNNL_ARG_WEIGHTS, 0, &m.w, q(cpd, dnnl_query_weights_md), e);
    if (!*rc) *rc = add_arg(o, DNNL_ARG_DST, 1, NULL, cy, e);
    if (!*rc && bias) *rc = add_arg(o, DNNL_ARG_BIAS, 0, &m.b, NULL, e);
    if (!*rc) *rc = set_prim(o, cpd, e);
    if (!*rc) *rc = add_arg(o->sub, DNNL_ARG_SRC, 0, cy, NULL, e);
    if (!*rc) *rc = add_arg(o->sub, DNNL_ARG_DST, 1, &uy, pd_dst, e);
    if (!*rc && pg->bn) *rc = add_arg(o->sub, DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, 0, &pc, NULL, e);
    if (!*rc && pg->bn) *rc = add_arg(o->sub, DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, 0, &pc, NULL, e);
    if (!*rc && pg->bn && !(o->aux = dh_malloc(e, (size_t)(2 * g->F), sizeof(float)))) *rc = DH_ENOMEM;
    if (!*rc) *rc = set_prim(o->sub, ppd, e);
fail:
    o = op_commit(o, *rc);
out:
    if (cpd) dnnl_primitive_desc_destroy(cpd);
    if (ppd) dnnl_primitive_desc_destroy(ppd);
    if (po) dnnl_post_ops_destroy(po);
    if (ppo) dnnl_post_ops_destroy(ppo);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (cattr) dnnl_primitive_attr_destroy(cattr);
    return o;
}

int dk_conv2d_pool_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                                int relu, int avg, int pk, int ps, int pp, const dk_bn_act *bn, const dk_tensor *t,
                                dk_tensor *y, dh_err *e) {
    cgeom g = conv_geom(x, w, t, stride, pad);
    pgeom pg = { relu, avg, pk, ps, pp, y->shape[2], y->shape[3], bn != NULL, bn ? bn->act : 0 };
    /* a pooling without padding whose floor drops the convolution's last rows
     * or columns (the air net's 31 -> 15): the convolution computes only the
     * rows and columns the pooling reads, the same values (a right pad of the
     * convolution that turns negative is declined in conv_pool_op) */
    if (pp == 0) {
        int64_t rh = (pg.OH - 1) * ps + pk, rw = (pg.OW - 1) * ps + pk;
        if (rh < g.OH) g.OH = rh;
        if (rw < g.OW) g.OW = rw;
    }
    /* chunks as the convolution's (its output stays in the arena, in cache for
     * the pooling); x kept and y to keep as in conv_forward */
    int64_t nb = conv_chunk(&g);
    int infmt = x->fmt > 0 ? x->fmt : 0, outreq = y->fmt == DK_FMT_KEEP ? DK_FMT_KEEP : 0;
    size_t xs = fmt_image_bytes(infmt, g.C, g.H, g.W), ys = 0;
    dnn_op *last = NULL;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        cgeom c = g;
        c.N = n;
        int rc = DK_DNNL_DECLINE;
        dnn_op *o = conv_pool_op(&c, b != NULL, &pg, infmt, outreq, &rc, e);
        if (!o) return rc; /* a DECLINE at any chunk leaves it all to the composition, which writes every output */
        if (b0 == 0) {
            if (outreq) outreq = o->sub->ofmt;
            ys = fmt_image_bytes(o->sub->ofmt, g.F, pg.OH, pg.OW);
        }
        if ((rc = arena_reserve(o->arena + o->sub->arena, e))) return rc;
        void *cb[4] = { (char *)x->data + b0 * xs, w->data, NULL, b ? b->data : NULL };
        if ((rc = op_run(o, cb, o == last ? 1u << 1 : 0, e))) return rc;
        /* each op (at most two chunk sizes) computes the normalisation's scale and shift once per call */
        if (bn && o != last) bn_affine(bn, g.F, o->aux, o->aux + g.F);
        void *pb[4] = { (char *)arena + o->a[2].off, (char *)y->data + b0 * ys, bn ? o->aux : NULL,
                        bn ? o->aux + g.F : NULL };
        if ((rc = op_run_at(o->sub, pb, 0, o->arena, e))) return rc;
        last = o;
    }
    y->fmt = outreq > 0 ? outreq : 0;
    return 0;
}

/* ---- convolution + batch normalisation + activation, inference ----------------------------------------------- */
/* The normalisation folded into the filter and bias: per output channel f,
 * with the pooling tail's scale a and shift (bn_affine), w' = a w,
 * b' = a b + shift. */
static void fold_bn(const cgeom *g, const float *w, const float *b, const dk_bn_act *bn, float *wf, float *bf) {
    int64_t per = g->C * g->KH * g->KW, F = g->F;
    float *a = bf + F; /* the scales, after the biases in the op's buffer */
    bn_affine(bn, F, a, bf);
#pragma omp parallel for schedule(static) if (F * per >= 65536)
    for (int64_t f = 0; f < F; f++) {
        for (int64_t i = 0; i < per; i++) wf[f * per + i] = a[f] * w[f * per + i];
        if (b) bf[f] += a[f] * b[f];
    }
}

int dk_conv2d_bn_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                              const dk_bn_act *bn, const dk_tensor *t, dk_tensor *y, dh_err *e) {
    (void)t; /* its shape is y's */
    return conv_forward(x, w, b, stride, pad, bn, y, e);
}

/* ---- batch normalisation (NCHW; (N, C) as (N, C, 1, 1)) --------------------------------------------- */
static void bn_dims(const dk_tensor *x, int64_t *N, int64_t *C, int64_t *H, int64_t *W) {
    *N = x->shape[0];
    *C = x->shape[1];
    *H = x->ndim >= 3 ? x->shape[2] : 1;
    *W = x->ndim >= 4 ? x->shape[3] : 1;
}

/* Batch norm for inference (training's runs in dk_fast.c, faster than
 * oneDNN 2.6's NCHW implementation). */
static dnn_op *bn_infer_op(const dk_tensor *x, float eps, int *rc, dh_err *e) {
    int64_t N, C, H, W;
    bn_dims(x, &N, &C, &H, &W);
    union {
        float f;
        uint32_t u;
    } ep = { eps };
    int64_t key[NKEY] = { OP_BN_INFER, N, C, H, W, ep.u };
    dnn_op *o = op_find(key);
    if (o) return o;
    if ((*rc = dk_dnnl_init(e))) return NULL;
    *rc = DK_DNNL_DECLINE;
    dnnl_memory_desc_t d, c;
    if (md4(&d, N, C, H, W, dnnl_f32, dnnl_nchw) || md1(&c, C)) return NULL;
    dnnl_primitive_attr_t attr = user_scratchpad_attr();
    if (!attr) return NULL;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | dnnl_use_global_stats;
    dnnl_batch_normalization_desc_t bd;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &d, eps, flags) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &bd, attr, eng, NULL) != dnnl_success)
        goto out;
    *rc = 0;
    if (!(o = op_new(key, e))) {
        *rc = DH_ENOMEM;
        goto out;
    }
    /* argument order = the order of bufs[] in dk_bn_forward_infer_dnnl */
    int a[] = { DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_DST };
    for (int i = 0; i < 6 && !*rc; i++) *rc = add_arg(o, a[i], i == 5, (i == 0 || i == 5) ? &d : &c, NULL, e);
    if (!*rc) *rc = set_prim(o, pd, e);
    o = op_commit(o, *rc);
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return o;
}

int dk_bn_forward_infer_dnnl(const dk_tensor *x, const float *gamma, const float *beta, const float *rmean,
                             const float *rvar, float eps, dk_tensor *y, dh_err *e) {
    int rc;
    dnn_op *o = bn_infer_op(x, eps, &rc, e);
    if (!o) return rc;
    void *bufs[6] = { x->data, (void *)gamma, (void *)beta, (void *)rmean, (void *)rvar, y->data };
    return op_run(o, bufs, 0, e);
}

