/* train_ckpt.c — checkpoints of a training run (train_ckpt.h): the
 * container, fingerprints, and the state of stage 1 and stage 3. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train_ckpt.h"
#include "dh_rng.h"

/* ---- the container ------------------------------------------------------------------------------------------------ */
void train_ckpt_engine(dk_device dev, char *buf, size_t n) {
    if (dev != DK_CPU) {
        snprintf(buf, n, "%s", dk_device_name(dev));
        return;
    }
    snprintf(buf, n, "cpu %s, %d thread%s, %s", dk_cpu_backend_name(dk_cpu_get_backend()), dk_threads(),
             dk_threads() == 1 ? "" : "s", dk_cpu_precision_name());
}

int train_ckpt_same_engine(const dhs_model *ck, dk_device dev) {
    char buf[128];
    const char *was = dhs_meta_str(ck->meta, "engine");
    train_ckpt_engine(dev, buf, sizeof buf);
    return was && !strcmp(was, buf);
}

/* Meta "engine" of ck: the engine of dev now. */
static int set_engine(dhs_model *ck, dk_device dev, dh_err *e) {
    char engine[128];
    train_ckpt_engine(dev, engine, sizeof engine);
    return dhs_meta_set_str(ck->meta, "engine", engine) ? dh_seterr(e, DH_ENOMEM, "out of memory") : DH_OK;
}

int train_ckpt_begin(dhs_model *ck, const char *program, const char *cmdline, int64_t step, const dhs_meta *match,
                     dh_err *e) {
    dhs_meta *m = ck->meta;
    if (dhs_meta_set_str(m, "model", "checkpoint") || dhs_meta_set_str(m, "checkpoint_of", program) ||
        dhs_meta_set_int(m, "checkpoint_version", TRAIN_CKPT_VERSION) || dhs_meta_set_int(m, "step", step) ||
        dhs_meta_set_str(m, "cmdline", cmdline ? cmdline : program) || (match && dhs_meta_set_map(m, "match", match)))
        return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

int train_ckpt_match(dhs_meta *match, const char *key, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return dhs_meta_set_str(match, key, buf);
}

int train_ckpt_check(const dhs_model *ck, const char *name, const char *program, const dhs_meta *want, int64_t *step,
                     dh_err *e) {
    const char *model = dhs_meta_str(ck->meta, "model"), *of = dhs_meta_str(ck->meta, "checkpoint_of");
    int64_t v = 0;
    if (!model || strcmp(model, "checkpoint") != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: not a checkpoint (a '%s' model)", name, model ? model : "?");
    if (!of || strcmp(of, program) != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: a checkpoint of %s, not of %s", name, of ? of : "?", program);
    if (dhs_meta_int(ck->meta, "checkpoint_version", &v) || v != TRAIN_CKPT_VERSION)
        return dh_seterr(e, DH_ESCHEMA, "%s: checkpoint version %lld, this program reads version %d", name,
                         (long long)v, TRAIN_CKPT_VERSION);
    if (dhs_meta_int(ck->meta, "step", step) || *step < 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: checkpoint without a valid \"step\"", name);
    const dhs_meta *have = dhs_meta_map(ck->meta, "match");
    for (int i = 0; want && i < dhs_meta_count(want); i++) {
        const char *k = dhs_meta_key(want, i), *w = dhs_meta_str(want, k), *h = have ? dhs_meta_str(have, k) : NULL;
        if (!h || !w || strcmp(h, w) != 0)
            return dh_seterr(e, DH_ESCHEMA,
                             "%s: a checkpoint of another run: %s %s there, %s here (a resume takes the run's data "
                             "and options)",
                             name, k, h ? h : "(none)", w ? w : "(none)");
    }
    return DH_OK;
}

int train_ckpt_put_host(dhs_model *ck, const char *name, const float *x, int64_t n, dh_err *e) {
    return dhs_model_add(ck, name, 1, &n, x, e) ? DH_OK : e->code;
}

int train_ckpt_get_host(const dhs_model *ck, const char *name, float *x, int64_t n, dh_err *e) {
    const dhs_tensor *t = dhs_model_find(ck, name);
    if (!t) return dh_seterr(e, DH_ESCHEMA, "no tensor '%s'", name);
    if (t->n != n)
        return dh_seterr(e, DH_ESCHEMA, "tensor '%s' has %lld values, this run has %lld", name, (long long)t->n,
                         (long long)n);
    memcpy(x, t->data, sizeof(float) * (size_t)n);
    return DH_OK;
}

int train_ckpt_put(dhs_model *ck, const char *name, const dk_tensor *t, dh_err *e) {
    dhs_tensor *d = dhs_model_add(ck, name, t->ndim, t->shape, NULL, e);
    if (!d) return e->code;
    return dk_download(t, d->data, t->n, e);
}

int train_ckpt_get(const dhs_model *ck, const char *name, dk_tensor *t, dh_err *e) {
    const dhs_tensor *d = dhs_model_find(ck, name);
    if (!d) return dh_seterr(e, DH_ESCHEMA, "no tensor '%s'", name);
    if (d->n != t->n)
        return dh_seterr(e, DH_ESCHEMA, "tensor '%s' has %lld values, this run has %lld", name, (long long)d->n,
                         (long long)t->n);
    return dk_upload(t, d->data, t->n, e);
}

int train_ckpt_put_tensors(dhs_model *ck, const char *prefix, const dk_tensor *t, int n, dh_err *e) {
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s:%d", prefix, i);
        if (train_ckpt_put(ck, name, &t[i], e)) return e->code;
    }
    return DH_OK;
}

int train_ckpt_get_tensors(const dhs_model *ck, const char *prefix, dk_tensor *t, int n, dh_err *e) {
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s:%d", prefix, i);
        if (train_ckpt_get(ck, name, &t[i], e)) return e->code;
    }
    return DH_OK;
}

int train_ckpt_get_int(const dhs_model *ck, const char *key, int64_t *v, dh_err *e) {
    if (dhs_meta_int(ck->meta, key, v)) return dh_seterr(e, DH_ESCHEMA, "no integer \"%s\"", key);
    return DH_OK;
}

int train_ckpt_get_float(const dhs_model *ck, const char *key, double *v, dh_err *e) {
    if (dhs_meta_float(ck->meta, key, v)) return dh_seterr(e, DH_ESCHEMA, "no number \"%s\"", key);
    return DH_OK;
}

/* ---- networks ----------------------------------------------------------------------------------------------------- */
int train_ckpt_put_net(dhs_model *ck, const net *n, dh_err *e) {
    char name[NS_NAME_MAX + 40];
    for (int i = 0; i < n->nparams; i++) {
        snprintf(name, sizeof name, "net:%s", n->params[i].name);
        if (train_ckpt_put(ck, name, &n->params[i].w, e)) return e->code;
        snprintf(name, sizeof name, "net:%s:v", n->params[i].name);
        if (train_ckpt_put(ck, name, &n->params[i].v, e)) return e->code;
    }
    for (int i = 0; i < n->nstate; i++) {
        snprintf(name, sizeof name, "net:%s", n->state[i].name);
        if (train_ckpt_put(ck, name, &n->state[i].t, e)) return e->code;
    }
    if (dhs_meta_set_int(ck->meta, "net_step", (int64_t)n->step)) return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

int train_ckpt_get_net(const dhs_model *ck, net *n, dh_err *e) {
    char name[NS_NAME_MAX + 40];
    int64_t st;
    for (int i = 0; i < n->nparams; i++) {
        snprintf(name, sizeof name, "net:%s", n->params[i].name);
        if (train_ckpt_get(ck, name, &n->params[i].w, e)) return e->code;
        snprintf(name, sizeof name, "net:%s:v", n->params[i].name);
        if (train_ckpt_get(ck, name, &n->params[i].v, e)) return e->code;
    }
    for (int i = 0; i < n->nstate; i++) {
        snprintf(name, sizeof name, "net:%s", n->state[i].name);
        if (train_ckpt_get(ck, name, &n->state[i].t, e)) return e->code;
    }
    if (train_ckpt_get_int(ck, "net_step", &st, e)) return e->code;
    n->step = (uint64_t)st;
    return DH_OK;
}

/* ---- fingerprints ------------------------------------------------------------------------------------------------- */
uint64_t train_hash64(const void *p, size_t n, uint64_t h) {
    const unsigned char *s = p;
    uint64_t w;
    h = dh_mix64(h ^ (uint64_t)n);
    for (; n >= 8; n -= 8, s += 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    w = 0;
    memcpy(&w, s, n);
    return dh_mix64(h ^ w);
}

/* h over a device buffer of n bytes, downloaded in pieces of 16 MB. */
static int hash_device(dk_device dev, const void *src, size_t n, uint64_t *h, dh_err *e) {
    if (dev == DK_CPU) {
        *h = train_hash64(src, n, *h);
        return DH_OK;
    }
    const size_t piece = (size_t)16 << 20;
    unsigned char *buf = dh_malloc(e, n < piece ? (n ? n : 1) : piece, 1);
    if (!buf) return DH_ENOMEM;
    int rc = DH_OK;
    for (size_t o = 0; rc == DH_OK && o < n; o += piece) {
        size_t k = n - o < piece ? n - o : piece;
        if (dk_mem_download(dev, buf, (const unsigned char *)src + o, k, e))
            rc = e->code;
        else
            *h = train_hash64(buf, k, *h);
    }
    free(buf);
    return rc;
}

int train_images_fingerprint(const train_images *d, uint64_t *h, dh_err *e) {
    int64_t shape[4] = { d->S, d->C, d->H, d->W };
    uint64_t x = train_hash64(shape, sizeof shape, 0);
    x = train_hash64(d->hlab, sizeof(int32_t) * (size_t)d->S, x);
    if (d->ids) x = train_hash64(d->ids, (size_t)d->idoff[d->S], x);
    if (hash_device(d->dev, d->pix, (size_t)d->S * d->C * d->H * d->W, &x, e)) return e->code;
    *h = x;
    return DH_OK;
}

uint64_t train_features_fingerprint(const train_features *f) {
    int64_t shape[2] = { f->N, f->D };
    uint64_t x = train_hash64(shape, sizeof shape, 0);
    x = train_hash64(f->lab, sizeof(int32_t) * (size_t)f->N, x);
    return train_hash64(f->z, sizeof(float) * (size_t)f->N * f->D, x);
}

/* h over a tensor's values (downloaded). */
static int hash_tensor(const dk_tensor *t, uint64_t *h, dh_err *e) {
    return hash_device(t->dev, t->data, sizeof(float) * (size_t)t->n, h, e);
}

int train_net_fingerprint(const net *n, uint64_t *h, dh_err *e) {
    uint64_t x = train_hash64(n->spec.text, strlen(n->spec.text), 0);
    x = train_hash64(n->mean, sizeof n->mean, x);
    x = train_hash64(n->std, sizeof n->std, x);
    for (int i = 0; i < n->nparams; i++)
        if (hash_tensor(&n->params[i].w, &x, e)) return e->code;
    for (int i = 0; i < n->nstate; i++)
        if (hash_tensor(&n->state[i].t, &x, e)) return e->code;
    *h = x;
    return DH_OK;
}

/* ---- stage 3 ------------------------------------------------------------------------------------------------------- */
int train_finetune_fingerprint(const train_finetune *t, uint64_t *h, dh_err *e) {
    uint64_t x = 0;
    int64_t dims[3] = { t->K, t->D, t->B };
    if (t->nw && train_net_fingerprint(t->nw, &x, e)) return e->code;
    x = train_hash64(dims, sizeof dims, x);
    x = train_hash64(&t->r2, sizeof t->r2, x);
    if (hash_tensor(&t->th.W, &x, e) || hash_tensor(&t->th.b, &x, e) || hash_tensor(&t->th.m, &x, e)) return e->code;
    *h = x;
    return DH_OK;
}

/* The registry loss's state as "loss:NAME" tensors (bytes as floats: exact). */
static int put_loss(const train_finetune *t, dhs_model *ck, dh_err *e) {
    dh_dloss_state s;
    char name[80];
    for (int i = 0; t->dloss && dh_dloss_state_at(t->dloss, i, &s) == 0; i++) {
        snprintf(name, sizeof name, "loss:%s", s.name);
        dhs_tensor *d = dhs_model_add(ck, name, 1, &s.n, s.u8 ? NULL : s.data, e);
        if (!d) return e->code;
        for (int64_t k = 0; s.u8 && k < s.n; k++) d->data[k] = ((const uint8_t *)s.data)[k];
    }
    return DH_OK;
}

static int get_loss(train_finetune *t, const dhs_model *ck, dh_err *e) {
    dh_dloss_state s;
    char name[80];
    for (int i = 0; t->dloss && dh_dloss_state_at(t->dloss, i, &s) == 0; i++) {
        snprintf(name, sizeof name, "loss:%s", s.name);
        const dhs_tensor *d = dhs_model_find(ck, name);
        if (!d || d->n != s.n)
            return dh_seterr(e, DH_ESCHEMA, "%s tensor '%s' (%lld values)", d ? "a wrong-sized" : "no", name,
                             (long long)s.n);
        if (!s.u8)
            memcpy(s.data, d->data, sizeof(float) * (size_t)s.n);
        else
            for (int64_t k = 0; k < s.n; k++) {
                float v = d->data[k];
                if (!(v >= 0 && v <= 255))
                    return dh_seterr(e, DH_EFORMAT, "tensor '%s': value %g is not a byte", name, v);
                ((uint8_t *)s.data)[k] = (uint8_t)v;
            }
    }
    dh_dloss_state_restored(t->dloss);
    return DH_OK;
}

/* The paper sampling's cursor at the start of the epoch step `step` is in:
 * the epoch whose order is loaded started at ep_cursor; a later one starts
 * at cursor. */
static int64_t epoch_cursor(const train_finetune *t) {
    int64_t spe = t->N / t->B;
    return t->ep_loaded >= 0 && t->ep_loaded == t->step / spe ? t->ep_cursor : t->cursor;
}

int train_finetune_ckpt(const train_finetune *t, dhs_model *ck, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (dhs_meta_set_int(ck->meta, "cursor", epoch_cursor(t))) return dh_seterr(e, DH_ENOMEM, "out of memory");
    if (set_engine(ck, t->th.dev, e)) return e->code;
    if (train_ckpt_put(ck, "hash:W", &t->th.W, e) || train_ckpt_put(ck, "hash:b", &t->th.b, e) ||
        train_ckpt_put(ck, "hash:c", &t->th.c, e) || train_ckpt_put(ck, "hash:vW", &t->th.vW, e) ||
        train_ckpt_put(ck, "hash:vb", &t->th.vb, e) || (t->nw && train_ckpt_put_net(ck, t->nw, e)) ||
        put_loss(t, ck, e))
        return e->code;
    return DH_OK;
}

int train_finetune_restore(train_finetune *t, const dhs_model *ck, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    int64_t step, cursor, spe = t->N / t->B;
    if (train_ckpt_get_int(ck, "step", &step, e) || train_ckpt_get_int(ck, "cursor", &cursor, e)) return e->code;
    if (step > spe * t->o.epochs || cursor < 0 || cursor >= t->N)
        return dh_seterr(e, DH_ESCHEMA, "step %lld or cursor %lld out of range for this run", (long long)step,
                         (long long)cursor);
    if (train_ckpt_get(ck, "hash:W", &t->th.W, e) || train_ckpt_get(ck, "hash:b", &t->th.b, e) ||
        train_ckpt_get(ck, "hash:c", &t->th.c, e) || train_ckpt_get(ck, "hash:vW", &t->th.vW, e) ||
        train_ckpt_get(ck, "hash:vb", &t->th.vb, e) || (t->nw && train_ckpt_get_net(ck, t->nw, e)) ||
        get_loss(t, ck, e))
        return e->code;
    t->step = step;
    t->cursor = cursor;
    t->ep_loaded = -1;
    return DH_OK;
}

/* ---- stage 1 ------------------------------------------------------------------------------------------------------- */
int train_pretrain_ckpt(dhs_model *ck, const net *n, double loss_sum, int64_t correct, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (dhs_meta_set_float(ck->meta, "epoch_loss_sum", loss_sum) ||
        dhs_meta_set_int(ck->meta, "epoch_correct", correct))
        return dh_seterr(e, DH_ENOMEM, "out of memory");
    if (set_engine(ck, n->dev, e)) return e->code;
    return train_ckpt_put_net(ck, n, e);
}

int train_pretrain_restore(const dhs_model *ck, net *n, double *loss_sum, int64_t *correct, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (train_ckpt_get_float(ck, "epoch_loss_sum", loss_sum, e) || train_ckpt_get_int(ck, "epoch_correct", correct, e))
        return e->code;
    return train_ckpt_get_net(ck, n, e);
}
