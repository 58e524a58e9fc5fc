/* ingest.c — dataset sources: archives and directories of JPEG/PNG images,
 * the CIFAR-10 binary tarball, IDX files; parallel decoding; selection.
 *
 * Archives are read sequentially by the calling thread (libarchive does the
 * decompression), which hands each image member's bytes to a bounded queue;
 * worker threads decode them (one libjpeg object per thread) and free the
 * bytes, so raw member data is held once and only while queued. Order is
 * made deterministic afterwards by sorting on the member path. */
#define _GNU_SOURCE
#include "ingest.h"
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Read block of archives, buffer of gzipped IDX files. The fuzz build makes
 * it small (-DDH_INGEST_IO_BLOCK=4096): small inputs then cross blocks, and
 * no input costs a megabyte to open. */
#ifndef DH_INGEST_IO_BLOCK
#define DH_INGEST_IO_BLOCK (1 << 20)
#endif

const char *dh_src_kind_name(dh_src_kind k) {
    switch (k) {
    case DH_SRC_IMAGES: return "images";
    case DH_SRC_CIFAR: return "cifar-binary";
    case DH_SRC_IDX: return "idx";
    default: return "auto";
    }
}

int dh_src_kind_parse(const char *s, dh_src_kind *k) {
    if (!strcmp(s, "auto"))
        *k = DH_SRC_AUTO;
    else if (!strcmp(s, "images") || !strcmp(s, "archive") || !strcmp(s, "dir"))
        *k = DH_SRC_IMAGES;
    else if (!strcmp(s, "cifar-binary") || !strcmp(s, "cifar"))
        *k = DH_SRC_CIFAR;
    else if (!strcmp(s, "idx") || !strcmp(s, "mnist"))
        *k = DH_SRC_IDX;
    else
        return -1;
    return 0;
}

void dh_ingest_opts_init(dh_ingest_opts *o) {
    memset(o, 0, sizeof *o);
    o->lim = dh_ingest_default_limits;
}

/* ---- small string sets ---------------------------------------------------------- */
typedef struct strset {
    char **v;
    int n, cap;
    int last;
} strset;

static const char *strset_add(strset *s, const char *x, size_t len, dh_err *e) {
    if (s->n && s->last < s->n && strlen(s->v[s->last]) == len && !memcmp(s->v[s->last], x, len)) return s->v[s->last];
    for (int i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && !memcmp(s->v[i], x, len)) {
            s->last = i;
            return s->v[i];
        }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v = dh_realloc(e, s->v, cap, sizeof *v);
        if (!v) return NULL;
        s->v = v;
        s->cap = cap;
    }
    char *c = dh_malloc(e, len + 1, 1);
    if (!c) return NULL;
    memcpy(c, x, len);
    c[len] = 0;
    s->last = s->n;
    s->v[s->n++] = c;
    return c;
}
static int strset_has(const strset *s, const char *x) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], x)) return 1;
    return 0;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void strset_sort(strset *s) {
    if (s->n > 1) qsort(s->v, s->n, sizeof *s->v, cmp_str);
    s->last = 0;
}
static void strset_free(strset *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}
/* "a, b, c" into buf */
static const char *strset_join(const strset *s, char *buf, size_t n) {
    buf[0] = 0;
    size_t o = 0;
    for (int i = 0; i < s->n && o + 4 < n; i++) {
        int k = snprintf(buf + o, n - o, "%s%s", i ? ", " : "", s->v[i]);
        if (k < 0) break;
        o += (size_t)k;
        if (i >= 20) {
            snprintf(buf + o, n - o, ", ...");
            break;
        }
    }
    return buf;
}

/* ---- private state of a set --------------------------------------------------- */
typedef struct priv {
    dh_item **all; /* every item read (owned) */
    int64_t nall, capall;
    void **blocks; /* shared pixel blocks (CIFAR batches, IDX data) */
    int nblocks, capblocks;
    strset classes; /* image trees: class folder names (interned) */
    int files;      /* image files given as paths: order kept, messages name the path */
} priv;

static dh_item *new_item(priv *p, dh_err *e) {
    if (p->nall == p->capall) {
        int64_t cap = p->capall ? 2 * p->capall : 1024;
        dh_item **v = dh_realloc(e, p->all, (size_t)cap, sizeof *v);
        if (!v) return NULL;
        p->all = v;
        p->capall = cap;
    }
    dh_item *it = dh_calloc(e, 1, sizeof *it);
    if (!it) return NULL;
    p->all[p->nall++] = it;
    return it;
}

static int add_block(priv *p, void *b, dh_err *e) {
    if (p->nblocks == p->capblocks) {
        int cap = p->capblocks ? 2 * p->capblocks : 8;
        void **v = dh_realloc(e, p->blocks, cap, sizeof *v);
        if (!v) {
            free(b);
            return DH_ENOMEM;
        }
        p->blocks = v;
        p->capblocks = cap;
    }
    p->blocks[p->nblocks++] = b;
    return 0;
}

void dh_ingest_free(dh_ingest_set *s) {
    if (!s) return;
    priv *p = s->priv;
    if (p) {
        for (int64_t i = 0; i < p->nall; i++) {
            dh_item *it = p->all[i];
            free(it->id);
            free(it->err);
            if (it->owns_px) free(it->px); /* image-tree items own their pixels; */
            free(it);                      /* CIFAR/IDX items point into blocks  */
        }
        free(p->all);
        for (int i = 0; i < p->nblocks; i++) free(p->blocks[i]);
        free(p->blocks);
        strset_free(&p->classes);
        free(p);
    }
    for (int i = 0; i < s->nclasses; i++) free(s->classes[i]);
    free(s->classes);
    for (int64_t i = 0; i < s->nbad; i++) free(s->bad[i]);
    free(s->bad);
    free(s->items);
    free(s->class_counts);
    free(s->split);
    memset(s, 0, sizeof *s);
}

/* ---- the decode pipeline ------------------------------------------------------- */
#define QCAP 512
typedef struct job {
    dh_item *it;
    uint8_t *buf;
    size_t n;
} job;

typedef struct pipeline {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    job q[QCAP];
    int head, count, closing;
    int want_c, rw, rh;
    const dh_ingest_limits *lim;
    uint64_t total_bytes;
    int over_total;
    int nthreads;
    pthread_t *tids;
    int started;
} pipeline;

static void item_fail(dh_item *it, const dh_err *e) {
    it->err = strdup(e->msg[0] ? e->msg : "cannot decode");
    it->errcode = e->code ? e->code : DH_EFORMAT;
    if (!it->err) it->errcode = DH_ENOMEM;
}

static void *worker(void *arg) {
    pipeline *pl = arg;
    dh_err e;
    e.code = 0;
    e.msg[0] = 0;
    dh_decoder *d = dh_decoder_new(&e);
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        while (pl->count == 0 && !pl->closing) pthread_cond_wait(&pl->not_empty, &pl->mu);
        if (pl->count == 0) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        job j = pl->q[pl->head];
        pl->head = (pl->head + 1) % QCAP;
        pl->count--;
        pthread_cond_signal(&pl->not_full);
        pthread_mutex_unlock(&pl->mu);

        dh_item *it = j.it;
        dh_image im;
        e.code = 0;
        e.msg[0] = 0;
        if (!d) {
            dh_seterr(&e, DH_ENOMEM, "cannot create a JPEG decoder");
            item_fail(it, &e);
        } else if (dh_decode_image(d, j.buf, j.n, pl->want_c, pl->lim, &im, &e)) {
            item_fail(it, &e);
        } else {
            if (pl->rw && (im.w != pl->rw || im.h != pl->rh)) {
                uint8_t *r = malloc((size_t)pl->rw * pl->rh * im.c);
                if (!r || dh_image_convert(im.px, im.c, im.h, im.w, r, im.c, pl->rh, pl->rw)) {
                    free(r);
                    free(im.px);
                    dh_seterr(&e, DH_ENOMEM, "out of memory resizing");
                    item_fail(it, &e);
                    goto done;
                }
                free(im.px);
                im.px = r;
                im.w = pl->rw;
                im.h = pl->rh;
            }
            it->w = im.w;
            it->h = im.h;
            it->c = im.c;
            it->px = im.px;
            uint64_t nb = (uint64_t)im.w * im.h * im.c;
            pthread_mutex_lock(&pl->mu);
            pl->total_bytes += nb;
            if (pl->total_bytes > pl->lim->max_total_bytes) pl->over_total = 1;
            pthread_mutex_unlock(&pl->mu);
        }
    done:
        free(j.buf);
    }
    dh_decoder_free(d);
    return NULL;
}

/* The decoder threads start with the first image queued (pipeline_push):
 * a source without images (IDX, CIFAR-10, an archive of other files, a
 * damaged one) starts none. */
static void pipeline_start(pipeline *pl, const dh_ingest_opts *o) {
    memset(pl, 0, sizeof *pl);
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->not_empty, NULL);
    pthread_cond_init(&pl->not_full, NULL);
    pl->want_c = o->channels;
    pl->rw = o->resize_w;
    pl->rh = o->resize_h;
    pl->lim = &o->lim;
    int n = o->threads;
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    pl->nthreads = n > 64 ? 64 : n; /* wanted; the number running once started */
    pl->started = 1;
}

static int pipeline_threads(pipeline *pl, dh_err *e) {
    int n = pl->nthreads;
    pl->nthreads = 0;
    pl->tids = dh_calloc(e, n, sizeof *pl->tids);
    if (!pl->tids) return DH_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&pl->tids[i], NULL, worker, pl) != 0) {
            if (i == 0) {
                free(pl->tids);
                pl->tids = NULL;
                return dh_seterr(e, DH_ENOMEM, "cannot start decoder threads");
            }
            break;
        }
        pl->nthreads++;
    }
    return 0;
}

/* Queue a member's bytes (taking ownership: freed on failure too). */
static int pipeline_push(pipeline *pl, dh_item *it, uint8_t *buf, size_t n, dh_err *e) {
    if (!pl->tids) {
        int rc = pipeline_threads(pl, e);
        if (rc) {
            free(buf);
            return rc;
        }
    }
    pthread_mutex_lock(&pl->mu);
    while (pl->count == QCAP) pthread_cond_wait(&pl->not_full, &pl->mu);
    pl->q[(pl->head + pl->count) % QCAP] = (job){ it, buf, n };
    pl->count++;
    pthread_cond_signal(&pl->not_empty);
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

static int pipeline_over(pipeline *pl) {
    pthread_mutex_lock(&pl->mu);
    int r = pl->over_total;
    pthread_mutex_unlock(&pl->mu);
    return r;
}

/* Finish: wait for every queued job, stop the threads. */
static void pipeline_finish(pipeline *pl) {
    if (!pl->started) return;
    pthread_mutex_lock(&pl->mu);
    pl->closing = 1;
    pthread_cond_broadcast(&pl->not_empty);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; pl->tids && i < pl->nthreads; i++) pthread_join(pl->tids[i], NULL);
    free(pl->tids);
    pl->tids = NULL;
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->not_empty);
    pthread_cond_destroy(&pl->not_full);
    pl->started = 0;
}

/* ---- member paths ------------------------------------------------------------------ */
static int has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), k = strlen(ext);
    return n > k && !strcasecmp(name + n - k, ext);
}
static int is_image_name(const char *name) {
    return has_ext(name, ".jpg") || has_ext(name, ".jpeg") || has_ext(name, ".jpe") || has_ext(name, ".png");
}
static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Normalise "./a//b/c" -> "a/b/c" into a fresh string. */
static char *norm_path(const char *p, dh_err *e) {
    char *r = dh_malloc(e, strlen(p) + 1, 1);
    if (!r) return NULL;
    char *o = r;
    while (*p) {
        while (*p == '/') p++;
        if (p[0] == '.' && (p[1] == '/' || p[1] == 0)) {
            p++;
            continue;
        }
        while (*p && *p != '/') *o++ = *p++;
        if (*p == '/') *o++ = '/';
    }
    if (o > r && o[-1] == '/') o--;
    *o = 0;
    return r;
}

/* Path components of a normalised path (at most max), hidden check. */
typedef struct comps {
    int n;
    const char *s[64];
    size_t len[64];
    int hidden;
} comps;
static void split_path(const char *p, comps *c) {
    c->n = 0;
    c->hidden = 0;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (c->n < 64) {
            c->s[c->n] = p;
            c->len[c->n] = l;
            c->n++;
        }
        if ((l > 0 && p[0] == '.') || (l == 8 && !memcmp(p, "__MACOSX", 8))) c->hidden = 1;
        if (!q) break;
        p = q + 1;
    }
}

/* ---- image-tree / CIFAR scanning state -------------------------------------------- */
typedef struct cifar_batch {
    char *name;
    uint8_t *data;
    size_t n;
    int test;
} cifar_batch;

typedef struct scan {
    const dh_ingest_opts *o;
    const char *want_split; /* NULL: all (decided later) */
    priv *p;
    pipeline pl;
    int depth; /* depth of image members, 0 until the first */
    char *depth_member;
    strset splits; /* split folder names seen */
    int64_t nimages, nread;
    /* CIFAR binary */
    int cifar_seen;
    cifar_batch *batches;
    int nbatches;
    char *meta_txt;
} scan;

static int want_split_match(const scan *sc, const char *s, size_t len) {
    if (!sc->want_split) return 1;
    return strlen(sc->want_split) == len && !memcmp(sc->want_split, s, len);
}

static int is_cifar_batch(const char *b, int *test) {
    if (!strcmp(b, "test_batch.bin")) {
        *test = 1;
        return 1;
    }
    if (!strncmp(b, "data_batch_", 11)) {
        const char *q = b + 11;
        if (*q < '0' || *q > '9') return 0;
        while (*q >= '0' && *q <= '9') q++;
        if (!strcmp(q, ".bin")) {
            *test = 0;
            return 1;
        }
    }
    return 0;
}

typedef int (*read_fn)(void *ctx, uint8_t **buf, size_t *n, dh_err *e);

/* Look at one member (regular file). read() fetches its bytes when wanted.
 * Returns 0 or an error code. */
static int scan_member(scan *sc, const char *rawname, int64_t size, read_fn rd, void *rctx, dh_err *e) {
    const dh_ingest_opts *o = sc->o;
    char *name = norm_path(rawname, e);
    if (!name) return DH_ENOMEM;
    comps c;
    split_path(name, &c);
    int rc = 0;
    const char *b = base_name(name);
    int test = 0;
    if (c.hidden || c.n == 0) goto out;
    if (o->kind != DH_SRC_IMAGES && (is_cifar_batch(b, &test) || !strcmp(b, "batches.meta.txt"))) {
        sc->cifar_seen = 1;
        if (!strcmp(b, "batches.meta.txt")) {
            if (size > (1 << 20)) {
                rc = dh_seterr(e, DH_EFORMAT, "member %s: too large for a class list", name);
                goto out;
            }
            uint8_t *buf;
            size_t n;
            if ((rc = rd(rctx, &buf, &n, e))) {
                dh_err_prefix(e, "member %s", name);
                goto out;
            }
            free(sc->meta_txt);
            sc->meta_txt = dh_malloc(e, n + 1, 1);
            if (!sc->meta_txt) {
                free(buf);
                rc = DH_ENOMEM;
                goto out;
            }
            memcpy(sc->meta_txt, buf, n);
            sc->meta_txt[n] = 0;
            free(buf);
            goto out;
        }
        const char *sp = test ? "test" : "train";
        if (!strset_add(&sc->splits, sp, strlen(sp), e)) {
            rc = DH_ENOMEM;
            goto out;
        }
        if (sc->want_split && strcmp(sc->want_split, sp)) goto out;
        if (size >= 0 && (uint64_t)size > o->lim.max_member_bytes) {
            rc = dh_seterr(e, DH_ELIMIT, "member %s: size %lld exceeds the limit of %llu bytes", name, (long long)size,
                           (unsigned long long)o->lim.max_member_bytes);
            goto out;
        }
        uint8_t *buf;
        size_t n;
        if ((rc = rd(rctx, &buf, &n, e))) {
            dh_err_prefix(e, "member %s", name);
            goto out;
        }
        if (n == 0 || n % 3073 != 0) {
            free(buf);
            rc = dh_seterr(e, DH_EFORMAT, "member %s: size %zu is not a multiple of 3073 (label byte + 3x32x32 pixels)",
                           name, n);
            goto out;
        }
        cifar_batch *v = dh_realloc(e, sc->batches, sc->nbatches + 1, sizeof *v);
        if (!v) {
            free(buf);
            rc = DH_ENOMEM;
            goto out;
        }
        sc->batches = v;
        v[sc->nbatches++] = (cifar_batch){ name, buf, n, test };
        name = NULL; /* owned by the batch */
        goto out;
    }
    if (o->kind == DH_SRC_CIFAR || !is_image_name(b)) goto out;
    /* an image member: [..prefix/][split/]class/file, or file (unlabelled) */
    if (!sc->depth) {
        sc->depth = c.n;
        sc->depth_member = dh_strdup(e, name);
        if (!sc->depth_member) {
            rc = DH_ENOMEM;
            goto out;
        }
    } else if (c.n != sc->depth && (c.n == 1 || sc->depth == 1)) {
        rc = dh_seterr(e, DH_EFORMAT,
                       "member %s: layout not understood: images both at the top level (unlabelled) and in class "
                       "folders (%s)",
                       name, sc->depth_member);
        goto out;
    } else if (c.n != sc->depth) {
        rc = dh_seterr(e, DH_EFORMAT,
                       "member %s: layout not understood: images at different folder depths (%d here, %d for %s)", name,
                       c.n, sc->depth, sc->depth_member);
        goto out;
    }
    const char *cls = NULL; /* top-level images have no class */
    if (c.n >= 2 && !(cls = strset_add(&sc->p->classes, c.s[c.n - 2], c.len[c.n - 2], e))) {
        rc = DH_ENOMEM;
        goto out;
    }
    int in_split = 1;
    if (c.n >= 3) {
        if (!strset_add(&sc->splits, c.s[c.n - 3], c.len[c.n - 3], e)) {
            rc = DH_ENOMEM;
            goto out;
        }
        in_split = want_split_match(sc, c.s[c.n - 3], c.len[c.n - 3]);
    } else if (sc->want_split) {
        in_split = 0;
    }
    if (!in_split) goto out;
    if (size >= 0 && (uint64_t)size > o->lim.max_member_bytes) {
        rc = dh_seterr(e, DH_ELIMIT, "member %s: size %lld exceeds the limit of %llu bytes (--max-member-bytes)", name,
                       (long long)size, (unsigned long long)o->lim.max_member_bytes);
        goto out;
    }
    if (pipeline_over(&sc->pl)) {
        rc = dh_seterr(e, DH_ELIMIT, "member %s: decoded images exceed the limit of %llu bytes in total (--max-memory)",
                       name, (unsigned long long)o->lim.max_total_bytes);
        goto out;
    }
    dh_item *it = new_item(sc->p, e);
    if (!it) {
        rc = DH_ENOMEM;
        goto out;
    }
    it->id = name;
    name = NULL;
    it->cls = cls;
    it->label = -1;
    it->split_ok = 1;
    it->owns_px = 1;
    uint8_t *buf;
    size_t n;
    if ((rc = rd(rctx, &buf, &n, e))) {
        dh_err_prefix(e, "member %s", it->id);
        goto out;
    }
    sc->nimages++;
    if ((rc = pipeline_push(&sc->pl, it, buf, n, e))) goto out;
out:
    free(name);
    sc->nread++;
    if (o->progress) o->progress(o->progress_arg, sc->nread);
    return rc;
}

/* -- archive members -- */
typedef struct arc_ctx {
    struct archive *a;
    int64_t size;
    uint64_t max;
} arc_ctx;
static int arc_read(void *ctx, uint8_t **out, size_t *n, dh_err *e) {
    arc_ctx *c = ctx;
    size_t cap = c->size >= 0 ? (size_t)c->size + 1 : 65536, len = 0;
    uint8_t *buf = dh_malloc(e, cap ? cap : 1, 1);
    if (!buf) return DH_ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= c->max) {
                free(buf);
                return dh_seterr(e, DH_ELIMIT, "larger than the limit of %llu bytes", (unsigned long long)c->max);
            }
            size_t nc = cap * 2 > c->max ? (size_t)c->max + 1 : cap * 2;
            uint8_t *b = dh_realloc(e, buf, nc, 1);
            if (!b) {
                free(buf);
                return DH_ENOMEM;
            }
            buf = b;
            cap = nc;
        }
        la_ssize_t r = archive_read_data(c->a, buf + len, cap - len);
        if (r < 0) {
            dh_seterr(e, r == ARCHIVE_FATAL ? DH_ETRUNC : DH_EFORMAT, "damaged or truncated archive: %s",
                      archive_error_string(c->a) ? archive_error_string(c->a) : "read error");
            free(buf);
            return e ? e->code : DH_EFORMAT;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (c->size >= 0 && len != (size_t)c->size) {
        free(buf);
        return dh_seterr(e, DH_ETRUNC, "truncated archive: member has %zu of %lld bytes", len, (long long)c->size);
    }
    *out = buf;
    *n = len;
    return 0;
}

static int scan_archive(scan *sc, const char *path, dh_err *e) {
    struct archive *a = archive_read_new();
    if (!a) return dh_seterr(e, DH_ENOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    int r = (!path || !strcmp(path, "-")) ? archive_read_open_fd(a, 0, DH_INGEST_IO_BLOCK)
                                          : archive_read_open_filename(a, path, DH_INGEST_IO_BLOCK);
    if (r != ARCHIVE_OK) {
        int err = archive_errno(a);
        const char *m = archive_error_string(a) ? archive_error_string(a) : "cannot open";
        if (err == ENOENT || err == EACCES || err == EISDIR || err == ENOTDIR)
            dh_seterr(e, DH_EIO, "%s", strerror(err));
        else if (strcasestr(m, "truncated") || strcasestr(m, "damaged") || strcasestr(m, "corrupt"))
            dh_seterr(e, DH_ETRUNC, "damaged or truncated archive: %s", m);
        else
            dh_seterr(e, DH_EFORMAT, "not a readable archive, image folder, CIFAR-10 binary or IDX file: %s", m);
        archive_read_free(a);
        return e ? e->code : DH_EIO;
    }
    struct archive_entry *ent;
    char last[512] = "";
    int rc = 0, nmembers = 0;
    for (;;) {
        r = archive_read_next_header(a, &ent);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            const char *m = archive_error_string(a) ? archive_error_string(a) : "read error";
            if (nmembers == 0 && (strcasestr(m, "truncated") || strcasestr(m, "damaged") || strcasestr(m, "corrupt")))
                rc = dh_seterr(e, DH_ETRUNC, "damaged or truncated archive: %s", m);
            else if (nmembers == 0)
                rc = dh_seterr(e, DH_EFORMAT, "not a readable archive, image folder, CIFAR-10 binary or IDX file: %s",
                               m);
            else
                rc = dh_seterr(e, DH_ETRUNC, "after member %s: damaged or truncated archive: %s", last, m);
            break;
        }
        nmembers++;
        const char *name = archive_entry_pathname(ent);
        if (!name) name = archive_entry_pathname_utf8(ent);
        if (!name) continue;
        snprintf(last, sizeof last, "%s", name);
        if (archive_entry_filetype(ent) != AE_IFREG) continue;
        arc_ctx ac = { a, archive_entry_size_is_set(ent) ? archive_entry_size(ent) : -1, sc->o->lim.max_member_bytes };
        if ((rc = scan_member(sc, name, ac.size, arc_read, &ac, e))) break;
    }
    archive_read_free(a);
    return rc;
}

/* -- directory members -- */
typedef struct file_ctx {
    const char *path;
    int64_t size;
    uint64_t max;
} file_ctx;
static int file_read(void *ctx, uint8_t **out, size_t *n, dh_err *e) {
    file_ctx *c = ctx;
    if (c->size < 0 || (uint64_t)c->size > c->max)
        return dh_seterr(e, DH_ELIMIT, "larger than the limit of %llu bytes", (unsigned long long)c->max);
    FILE *f = fopen(c->path, "rb");
    if (!f) return dh_seterr(e, DH_EIO, "%s", strerror(errno));
    uint8_t *buf = dh_malloc(e, (size_t)c->size + 1, 1);
    if (!buf) {
        fclose(f);
        return DH_ENOMEM;
    }
    size_t got = fread(buf, 1, (size_t)c->size + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return dh_seterr(e, DH_EIO, "read error");
    }
    if (got != (size_t)c->size) {
        free(buf);
        return dh_seterr(e, DH_EIO, "file changed size while reading");
    }
    *out = buf;
    *n = got;
    return 0;
}

typedef struct pathlist {
    char **v;
    int64_t n, cap;
} pathlist;
static int walk(const char *root, const char *rel, int depth, pathlist *pl, dh_err *e) {
    if (depth > 32) return dh_seterr(e, DH_EFORMAT, "%s: folders nested too deeply", rel);
    char *dir;
    if (asprintf(&dir, "%s%s%s", root, *rel ? "/" : "", rel) < 0) return dh_seterr(e, DH_ENOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        free(dir);
        return dh_seterr(e, DH_EIO, "%s%s%s", *rel ? rel : "", *rel ? ": " : "", strerror(err));
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue; /* ., .., hidden */
        char *r;
        if (asprintf(&r, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
            rc = dh_seterr(e, DH_ENOMEM, "out of memory");
            break;
        }
        char *full;
        if (asprintf(&full, "%s/%s", root, r) < 0) {
            free(r);
            rc = dh_seterr(e, DH_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        int isdir = 0, isreg = 0;
        if (lstat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                isdir = 1;
            else if (S_ISREG(st.st_mode))
                isreg = 1;
            else if (S_ISLNK(st.st_mode) && stat(full, &st) == 0 && S_ISREG(st.st_mode))
                isreg = 1;
        }
        free(full);
        if (isdir) {
            rc = walk(root, r, depth + 1, pl, e);
            free(r);
            if (rc) break;
        } else if (isreg) {
            if (pl->n == pl->cap) {
                int64_t cap = pl->cap ? 2 * pl->cap : 1024;
                char **v = dh_realloc(e, pl->v, (size_t)cap, sizeof *v);
                if (!v) {
                    free(r);
                    rc = DH_ENOMEM;
                    break;
                }
                pl->v = v;
                pl->cap = cap;
            }
            pl->v[pl->n++] = r;
        } else {
            free(r);
        }
    }
    closedir(d);
    free(dir);
    return rc;
}

static int scan_dir(scan *sc, const char *root, dh_err *e) {
    pathlist pl = { 0 };
    int rc = walk(root, "", 0, &pl, e);
    if (!rc && pl.n > 1) qsort(pl.v, (size_t)pl.n, sizeof *pl.v, cmp_str);
    for (int64_t i = 0; !rc && i < pl.n; i++) {
        char *full;
        if (asprintf(&full, "%s/%s", root, pl.v[i]) < 0) {
            rc = dh_seterr(e, DH_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        file_ctx fc = { full, stat(full, &st) == 0 ? (int64_t)st.st_size : -1, sc->o->lim.max_member_bytes };
        rc = scan_member(sc, pl.v[i], fc.size, file_read, &fc, e);
        free(full);
    }
    for (int64_t i = 0; i < pl.n; i++) free(pl.v[i]);
    free(pl.v);
    return rc;
}

/* ---- finishing a scan: split checks, labels, order, bad images ------------------ */
static int cmp_item(const void *a, const void *b) {
    return strcmp((*(dh_item *const *)a)->id, (*(dh_item *const *)b)->id);
}

static int check_split(scan *sc, const char *src_what, dh_ingest_set *s, dh_err *e) {
    const char *want = sc->o->split;
    char buf[512];
    strset_sort(&sc->splits);
    if (want && strcmp(want, "all")) {
        if (!strset_has(&sc->splits, want)) {
            if (sc->splits.n == 0)
                return dh_seterr(e, DH_EINVAL, "unknown split '%s': the %s has no split folders", want, src_what);
            return dh_seterr(e, DH_EINVAL, "unknown split '%s' (the %s has: %s)", want, src_what,
                             strset_join(&sc->splits, buf, sizeof buf));
        }
        s->split = strdup(want);
    } else if (want) {
        s->split = strdup("all");
    } else {
        if (sc->splits.n > 1)
            return dh_seterr(e, DH_EINVAL, "the %s has several splits (%s): choose one with --split (or --split all)",
                             src_what, strset_join(&sc->splits, buf, sizeof buf));
        s->split = strdup(sc->splits.n ? sc->splits.v[0] : "");
    }
    return s->split ? 0 : dh_seterr(e, DH_ENOMEM, "out of memory");
}

static int set_class_names(dh_ingest_set *s, const dh_ingest_opts *o, char **names, int n, dh_err *e) {
    /* names: default names (copied); o->class_names override when given */
    if (o->nclass_names > 0) {
        if (o->nclass_names < n)
            return dh_seterr(e, DH_EINVAL, "--classes names %d classes, the labels need %d", o->nclass_names, n);
        n = o->nclass_names;
    }
    s->classes = dh_calloc(e, n > 0 ? n : 1, sizeof *s->classes);
    if (!s->classes) return DH_ENOMEM;
    s->nclasses = n;
    for (int i = 0; i < n; i++) {
        s->classes[i] = dh_strdup(e, o->nclass_names > 0 ? o->class_names[i] : names[i]);
        if (!s->classes[i]) return DH_ENOMEM;
    }
    return 0;
}

/* Items of the set in sorted order; bad ones: error or skip list. */
static int collect_items(dh_ingest_set *s, priv *p, const dh_ingest_opts *o, dh_err *e) {
    dh_item **v = dh_malloc(e, p->nall ? (size_t)p->nall : 1, sizeof *v);
    if (!v) return DH_ENOMEM;
    int64_t n = 0;
    for (int64_t i = 0; i < p->nall; i++)
        if (p->all[i]->split_ok) v[n++] = p->all[i];
    if (s->kind == DH_SRC_IMAGES && !p->files && n > 1) qsort(v, (size_t)n, sizeof *v, cmp_item);
    const char *member = p->files ? "" : "member ";
    int64_t m = 0, nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (v[i]->err) {
            if (!o->skip_bad) {
                dh_seterr(
                    e, v[i]->errcode == DH_ELIMIT ? DH_ELIMIT : (v[i]->errcode == DH_ENOMEM ? DH_ENOMEM : DH_EFORMAT),
                    "%s%s: %s", member, v[i]->id, v[i]->err);
                free(v);
                return e ? e->code : DH_EFORMAT;
            }
            nbad++;
        } else {
            v[m++] = v[i];
        }
    }
    if (nbad) {
        s->bad = dh_calloc(e, (size_t)nbad, sizeof *s->bad);
        if (!s->bad) {
            free(v);
            return DH_ENOMEM;
        }
        for (int64_t i = 0, k = 0; i < p->nall && k < nbad; i++) {
            dh_item *it = p->all[i];
            if (it->split_ok && it->err) {
                if (asprintf(&s->bad[k], "%s%s: %s", member, it->id, it->err) < 0) s->bad[k] = NULL;
                k++;
                s->nbad = k;
            }
        }
        if (s->nbad > 1) qsort(s->bad, (size_t)s->nbad, sizeof *s->bad, cmp_str);
    }
    s->items = v;
    s->n = m;
    if (m == 0 && nbad) return dh_seterr(e, DH_EFORMAT, "no decodable images (%lld skipped)", (long long)nbad);
    if (m == 0 && !s->labelled) return dh_seterr(e, DH_EFORMAT, "no images");
    if (m == 0) return dh_seterr(e, DH_EFORMAT, "no images in the split");
    return 0;
}

static int cifar_finish(scan *sc, dh_ingest_set *s, dh_err *e) {
    priv *p = sc->p;
    static const char *const cifar10_names[10] = { "airplane", "automobile", "bird",  "cat",  "deer",
                                                   "dog",      "frog",       "horse", "ship", "truck" };
    char *names[256];
    int nn = 0;
    if (sc->meta_txt) {
        for (char *q = sc->meta_txt, *t; (t = strsep(&q, "\n")) && nn < 256;) {
            size_t l = strlen(t);
            while (l && (t[l - 1] == '\r' || t[l - 1] == ' ')) t[--l] = 0;
            if (l) names[nn++] = t;
        }
    }
    if (nn == 0) {
        for (int i = 0; i < 10; i++) names[i] = (char *)cifar10_names[i];
        nn = 10;
    }
    int rc = set_class_names(s, sc->o, names, nn, e);
    if (rc) return rc;
    /* batches in name order: data_batch_1..5, test_batch */
    for (int i = 1; i < sc->nbatches; i++)
        for (int j = i; j > 0 && strcmp(sc->batches[j - 1].name, sc->batches[j].name) > 0; j--) {
            cifar_batch t = sc->batches[j];
            sc->batches[j] = sc->batches[j - 1];
            sc->batches[j - 1] = t;
        }
    int64_t idx = 0;
    for (int b = 0; b < sc->nbatches; b++) {
        cifar_batch *cb = &sc->batches[b];
        if ((rc = add_block(p, cb->data, e))) {
            cb->data = NULL;
            return rc;
        }
        uint8_t *data = cb->data;
        cb->data = NULL;
        int64_t nrec = (int64_t)(cb->n / 3073);
        for (int64_t r = 0; r < nrec; r++) {
            const uint8_t *rec = data + r * 3073;
            if (rec[0] >= s->nclasses)
                return dh_seterr(e, DH_EFORMAT, "member %s: record %lld: label %d out of range (%d classes)", cb->name,
                                 (long long)r, rec[0], s->nclasses);
            dh_item *it = new_item(p, e);
            if (!it) return DH_ENOMEM;
            if (asprintf(&it->id, "%lld", (long long)idx++) < 0) {
                it->id = NULL;
                return dh_seterr(e, DH_ENOMEM, "out of memory");
            }
            it->label = rec[0];
            it->w = 32;
            it->h = 32;
            it->c = 3;
            it->px = (uint8_t *)rec + 1;
            it->split_ok = 1;
        }
    }
    return 0;
}

static int images_archive_or_dir(const char *path, int isdir, const dh_ingest_opts *o, dh_ingest_set *s, dh_err *e) {
    scan sc;
    memset(&sc, 0, sizeof sc);
    sc.o = o;
    sc.p = s->priv;
    sc.want_split = (o->split && strcmp(o->split, "all")) ? o->split : NULL;
    pipeline_start(&sc.pl, o);
    int rc = isdir ? scan_dir(&sc, path, e) : scan_archive(&sc, path, e);
    pipeline_finish(&sc.pl);
    const char *what = isdir ? "folder" : "archive";
    if (!rc && sc.pl.over_total)
        rc = dh_seterr(e, DH_ELIMIT, "decoded images exceed the limit of %llu bytes in total (--max-memory)",
                       (unsigned long long)o->lim.max_total_bytes);
    if (!rc) {
        int cifar =
            o->kind == DH_SRC_CIFAR || (o->kind == DH_SRC_AUTO && sc.cifar_seen && sc.nimages == 0 && !sc.depth);
        if (cifar) {
            s->kind = DH_SRC_CIFAR;
            if (!sc.cifar_seen)
                rc = dh_seterr(e, DH_EFORMAT, "no CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin) in the %s",
                               what);
            if (!rc) rc = check_split(&sc, what, s, e);
            if (!rc) rc = cifar_finish(&sc, s, e);
        } else {
            s->kind = DH_SRC_IMAGES;
            if (o->kind == DH_SRC_AUTO && sc.cifar_seen && sc.depth)
                rc = dh_seterr(
                    e, DH_EFORMAT,
                    "layout not understood: the %s holds both CIFAR-10 binary batches and image folders (use --format)",
                    what);
            if (!rc && !sc.depth)
                rc = dh_seterr(e, DH_EFORMAT,
                               "no JPEG or PNG images found in the %s (expected images, or <split>/<class>/<image> "
                               "folders)",
                               what);
            if (!rc && sc.depth == 1 && o->nclass_names > 0)
                rc = dh_seterr(e, DH_EINVAL, "--classes: the images of the %s are not in class folders (no labels)",
                               what);
            if (!rc) rc = check_split(&sc, what, s, e);
            if (!rc && sc.depth == 1) {
                s->labelled = 0; /* images at the top level: no classes */
            } else if (!rc) {
                priv *p = s->priv;
                strset_sort(&p->classes);
                rc = set_class_names(s, o, p->classes.v, p->classes.n, e);
                for (int64_t i = 0; !rc && i < p->nall; i++) {
                    dh_item *it = p->all[i];
                    char **f = bsearch(&it->cls, p->classes.v, p->classes.n, sizeof(char *), cmp_str);
                    it->label = f ? (int32_t)(f - p->classes.v) : -1;
                }
            }
        }
    }
    if (!rc) rc = collect_items(s, s->priv, o, e);
    strset_free(&sc.splits);
    free(sc.depth_member);
    for (int i = 0; i < sc.nbatches; i++) {
        free(sc.batches[i].name);
        free(sc.batches[i].data);
    }
    free(sc.batches);
    free(sc.meta_txt);
    return rc;
}

/* ---- IDX ------------------------------------------------------------------------------ */
typedef struct idx_file {
    int ndims;
    uint32_t dims[4];
    uint8_t *data;
    size_t n;
} idx_file;

static int read_idx(const char *path, const char *member, const dh_ingest_limits *lim, idx_file *f, dh_err *e) {
    memset(f, 0, sizeof *f);
    gzFile g = gzopen(path, "rb");
    if (!g) return dh_seterr(e, DH_EIO, "member %s: %s", member, strerror(errno ? errno : ENOENT));
    gzbuffer(g, DH_INGEST_IO_BLOCK);
    uint8_t hdr[4 + 16];
    int rc = 0;
    int got = gzread(g, hdr, 4);
    if (got != 4 || hdr[0] != 0 || hdr[1] != 0) {
        rc = dh_seterr(e, DH_EFORMAT, "member %s: not an IDX file", member);
        goto out;
    }
    if (hdr[2] != 0x08) {
        rc = dh_seterr(e, DH_EFORMAT, "member %s: IDX data type 0x%02x is not unsigned bytes", member, hdr[2]);
        goto out;
    }
    f->ndims = hdr[3];
    if (f->ndims < 1 || f->ndims > 4) {
        rc = dh_seterr(e, DH_EFORMAT, "member %s: IDX with %d dimensions", member, f->ndims);
        goto out;
    }
    if (gzread(g, hdr + 4, 4 * f->ndims) != 4 * f->ndims) {
        rc = dh_seterr(e, DH_ETRUNC, "member %s: truncated IDX header", member);
        goto out;
    }
    uint64_t total = 1;
    for (int i = 0; i < f->ndims; i++) {
        const uint8_t *q = hdr + 4 + 4 * i;
        f->dims[i] = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
        total *= f->dims[i];
        if (total > lim->max_member_bytes) {
            rc = dh_seterr(e, DH_ELIMIT, "member %s: IDX data larger than the limit of %llu bytes", member,
                           (unsigned long long)lim->max_member_bytes);
            goto out;
        }
    }
    /* grow the buffer as data arrives: a lying header cannot make us allocate */
    size_t cap = total < (16u << 20) ? (size_t)total : (16u << 20), len = 0;
    f->data = dh_malloc(e, cap ? cap : 1, 1);
    if (!f->data) {
        rc = DH_ENOMEM;
        goto out;
    }
    while (len < total) {
        if (len == cap) {
            size_t nc = cap * 2 < total ? cap * 2 : (size_t)total;
            uint8_t *b = dh_realloc(e, f->data, nc, 1);
            if (!b) {
                rc = DH_ENOMEM;
                goto out;
            }
            f->data = b;
            cap = nc;
        }
        size_t want = cap - len;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(g, f->data + len, (unsigned)want);
        if (r < 0) {
            int en;
            rc = dh_seterr(e, DH_EFORMAT, "member %s: %s", member, gzerror(g, &en));
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (len < total) {
        int en;
        const char *m = gzerror(g, &en);
        rc = dh_seterr(e, DH_ETRUNC, "member %s: truncated: %zu of %llu data bytes%s%s", member, len,
                       (unsigned long long)total, en ? ": " : "", en ? m : "");
        goto out;
    }
    uint8_t extra;
    int r = gzread(g, &extra, 1);
    if (r > 0) {
        rc = dh_seterr(e, DH_EFORMAT, "member %s: data beyond the %llu bytes its header declares", member,
                       (unsigned long long)total);
        goto out;
    }
    if (r < 0) {
        int en;
        rc = dh_seterr(e, DH_EFORMAT, "member %s: %s", member, gzerror(g, &en));
        goto out;
    }
    f->n = len;
out:
    gzclose(g);
    if (rc) {
        free(f->data);
        f->data = NULL;
    }
    return rc;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Find "<dir>/<prefix>-<kind>-ubyte[.gz]" */
static char *idx_find(const char *dir, const char *prefix, const char *kind) {
    const char *exts[2] = { ".gz", "" };
    for (int i = 0; i < 2; i++) {
        char *p;
        if (asprintf(&p, "%s/%s-%s-ubyte%s", dir, prefix, kind, exts[i]) < 0) return NULL;
        if (file_exists(p)) return p;
        free(p);
    }
    return NULL;
}

static int idx_source(const char *const *paths, int npaths, const dh_ingest_opts *o, dh_ingest_set *s, dh_err *e) {
    char *img = NULL, *lab = NULL;
    const char *split = o->split;
    int rc = 0;
    struct stat st;
    if (npaths == 1 && stat(paths[0], &st) == 0 && S_ISDIR(st.st_mode)) {
        char *ti = idx_find(paths[0], "train", "images-idx3"), *tl = idx_find(paths[0], "train", "labels-idx1");
        char *vi = idx_find(paths[0], "t10k", "images-idx3"), *vl = idx_find(paths[0], "t10k", "labels-idx1");
        if (!vi) vi = idx_find(paths[0], "test", "images-idx3");
        if (!vl) vl = idx_find(paths[0], "test", "labels-idx1");
        int has_train = ti || tl, has_test = vi || vl;
        if (!split) {
            if (has_train && has_test)
                rc = dh_seterr(e, DH_EINVAL, "the folder has several splits (test, train): choose one with --split");
            else
                split = has_train ? "train" : "test";
        }
        if (!rc && (!has_train && !has_test))
            rc =
                dh_seterr(e, DH_EFORMAT, "layout not understood: no train-/t10k-images-idx3-ubyte files in the folder");
        if (!rc && strcmp(split, "train") && strcmp(split, "test"))
            rc = dh_seterr(e, DH_EINVAL, "unknown split '%s' (the folder has: %s%s%s)", split, has_test ? "test" : "",
                           has_test && has_train ? ", " : "", has_train ? "train" : "");
        if (!rc) {
            int tr = !strcmp(split, "train");
            img = tr ? ti : vi;
            lab = tr ? tl : vl;
            if (tr) {
                ti = tl = NULL;
            } else {
                vi = vl = NULL;
            }
            if (!img && !lab)
                rc = dh_seterr(e, DH_EINVAL, "unknown split '%s': no %s files in the folder", split,
                               tr ? "train-" : "t10k-");
            else if (!img)
                rc = dh_seterr(e, DH_EFORMAT, "member %s: labels without an images file", base_name(lab));
            else if (!lab)
                rc = dh_seterr(e, DH_EFORMAT, "member %s: images without a labels file", base_name(img));
        }
        free(ti);
        free(tl);
        free(vi);
        free(vl);
    } else {
        img = strdup(paths[0]);
        if (!strcmp(paths[0], "-") || (npaths >= 2 && !strcmp(paths[1], "-")))
            rc = dh_seterr(e, DH_EINVAL, "IDX files cannot be read from standard input");
        else if (npaths >= 2)
            lab = strdup(paths[1]);
        else {
            /* the usual partner: ...images-idx3... <-> ...labels-idx1...
             * (read_idx's dimension check puts them the right way round) */
            const char *b = base_name(paths[0]);
            const char *q = strstr(b, "images-idx3"), *r = strstr(b, "labels-idx1");
            const char *at = q ? q : r, *with = q ? "labels-idx1" : "images-idx3";
            if (at) {
                if (asprintf(&lab, "%.*s%s%s", (int)(at - paths[0]), paths[0], with, at + strlen("images-idx3")) < 0)
                    lab = NULL;
                if (lab && !file_exists(lab)) {
                    free(lab);
                    lab = NULL;
                }
            }
            if (!lab)
                rc = dh_seterr(e, DH_EINVAL, "an IDX file needs its partner (images and labels): give both paths");
        }
        if (!rc && !split) {
            const char *b = base_name(paths[0]);
            split = !strncmp(b, "train", 5)                              ? "train"
                    : (!strncmp(b, "t10k", 4) || !strncmp(b, "test", 4)) ? "test"
                                                                         : "";
        }
    }
    idx_file fi = { 0 }, fl = { 0 };
    if (!rc) rc = read_idx(img, base_name(img), &o->lim, &fi, e);
    if (!rc) rc = read_idx(lab, base_name(lab), &o->lim, &fl, e);
    if (!rc && fi.ndims == 1 && fl.ndims == 3) { /* given the other way round */
        idx_file t = fi;
        fi = fl;
        fl = t;
        char *tp = img;
        img = lab;
        lab = tp;
    }
    if (!rc && fi.ndims != 3)
        rc = dh_seterr(e, DH_EFORMAT, "member %s: an images file has 3 dimensions (N, H, W), this one %d",
                       base_name(img), fi.ndims);
    if (!rc && fl.ndims != 1)
        rc =
            dh_seterr(e, DH_EFORMAT, "member %s: a labels file has 1 dimension, this one %d", base_name(lab), fl.ndims);
    if (!rc && fi.dims[0] != fl.dims[0])
        rc = dh_seterr(e, DH_EFORMAT, "member %s: labels do not match images: %u labels for %u images in %s",
                       base_name(lab), fl.dims[0], fi.dims[0], base_name(img));
    if (!rc && (fi.dims[1] == 0 || fi.dims[2] == 0 || fi.dims[1] > o->lim.max_side || fi.dims[2] > o->lim.max_side))
        rc = dh_seterr(e, DH_EFORMAT, "member %s: image size %ux%u not usable", base_name(img), fi.dims[2], fi.dims[1]);
    int maxl = -1;
    if (!rc)
        for (uint32_t i = 0; i < fl.dims[0]; i++)
            if (fl.data[i] > maxl) maxl = fl.data[i];
    if (!rc) {
        char *names[256];
        char nb[256][12];
        int nc = maxl + 1;
        if (nc < 1) nc = 1;
        for (int i = 0; i < nc; i++) {
            snprintf(nb[i], sizeof nb[i], "%d", i);
            names[i] = nb[i];
        }
        rc = set_class_names(s, o, names, nc, e);
    }
    if (!rc) {
        s->kind = DH_SRC_IDX;
        s->split = strdup(split ? split : "");
        priv *p = s->priv;
        size_t plane = (size_t)fi.dims[1] * fi.dims[2];
        if (!s->split) rc = DH_ENOMEM;
        if (!rc) rc = add_block(p, fi.data, e);
        uint8_t *data = fi.data;
        fi.data = NULL;
        for (uint32_t i = 0; !rc && i < fi.dims[0]; i++) {
            dh_item *it = new_item(p, e);
            if (!it) {
                rc = DH_ENOMEM;
                break;
            }
            if (asprintf(&it->id, "%u", i) < 0) {
                it->id = NULL;
                rc = dh_seterr(e, DH_ENOMEM, "out of memory");
                break;
            }
            it->label = fl.data[i];
            it->w = (int)fi.dims[2];
            it->h = (int)fi.dims[1];
            it->c = 1;
            it->px = data + i * plane;
            it->split_ok = 1;
        }
    }
    free(fi.data);
    free(fl.data);
    free(img);
    free(lab);
    if (!rc) rc = collect_items(s, s->priv, o, e);
    return rc;
}

/* ---- detection ------------------------------------------------------------------------- */
int dh_ingest_detect(const char *path, dh_src_kind *k, dh_err *e) {
    struct stat st;
    if (!path || !strcmp(path, "-")) {
        *k = DH_SRC_IMAGES;
        return 0;
    } /* stdin: an archive */
    if (stat(path, &st) != 0) return dh_seterr(e, DH_EIO, "%s", strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char *f = idx_find(path, "train", "images-idx3");
        if (!f) f = idx_find(path, "t10k", "images-idx3");
        if (!f) f = idx_find(path, "test", "images-idx3");
        if (!f) f = idx_find(path, "train", "labels-idx1");
        if (!f) f = idx_find(path, "t10k", "labels-idx1");
        *k = f ? DH_SRC_IDX : DH_SRC_IMAGES;
        free(f);
        return 0;
    }
    /* a file: IDX (possibly gzipped) starts 00 00 08 <ndims>; anything else
     * goes to libarchive, which tells archives (and CIFAR tarballs) apart */
    gzFile g = gzopen(path, "rb");
    if (!g) return dh_seterr(e, DH_EIO, "%s", strerror(errno ? errno : EIO));
    uint8_t h[4];
    int n = gzread(g, h, 4);
    gzclose(g);
    if (n == 4 && h[0] == 0 && h[1] == 0 && h[2] == 0x08 && h[3] >= 1 && h[3] <= 4)
        *k = DH_SRC_IDX;
    else
        *k = DH_SRC_IMAGES;
    return 0;
}

int dh_is_image_file(const char *path) {
    struct stat st;
    if (!path || !strcmp(path, "-") || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t h[8];
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    return (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) || (n == 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8));
}

/* A path read as one image: a JPEG/PNG signature, or a regular file named
 * like an image (so that a damaged one is reported as an image, not as an
 * unreadable archive). */
static int image_path(const char *path) {
    struct stat st;
    if (dh_is_image_file(path)) return 1;
    return path && strcmp(path, "-") && is_image_name(path) && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Image files named on the command line: unlabelled, in the order given. */
static int image_files_source(const char *const *paths, int npaths, const dh_ingest_opts *o, dh_ingest_set *s,
                              dh_err *e) {
    if (o->split) return dh_seterr(e, DH_EINVAL, "--split: image files have no splits (a folder or an archive has)");
    if (o->nclass_names > 0) return dh_seterr(e, DH_EINVAL, "--classes: image files have no labels");
    priv *p = s->priv;
    p->files = 1;
    pipeline pl;
    pipeline_start(&pl, o);
    int rc = 0;
    for (int i = 0; !rc && i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            rc = dh_seterr(e, DH_EIO, "%s: %s", paths[i], strerror(errno));
            break;
        }
        if (!S_ISREG(st.st_mode)) {
            rc = dh_seterr(e, DH_EINVAL, "%s: not an image file (with several sources, each is a JPEG or PNG file)",
                           paths[i]);
            break;
        }
        if (pipeline_over(&pl)) {
            rc = dh_seterr(e, DH_ELIMIT, "%s: decoded images exceed the limit of %llu bytes in total (--max-memory)",
                           paths[i], (unsigned long long)o->lim.max_total_bytes);
            break;
        }
        dh_item *it = new_item(p, e);
        if (!it || !(it->id = dh_strdup(e, paths[i]))) {
            rc = DH_ENOMEM;
            break;
        }
        it->label = -1;
        it->split_ok = 1;
        it->owns_px = 1;
        file_ctx fc = { paths[i], (int64_t)st.st_size, o->lim.max_member_bytes };
        uint8_t *buf;
        size_t n;
        if ((rc = file_read(&fc, &buf, &n, e))) {
            dh_err_prefix(e, "%s", paths[i]);
            break;
        }
        if ((rc = pipeline_push(&pl, it, buf, n, e))) break;
        if (o->progress) o->progress(o->progress_arg, i + 1);
    }
    pipeline_finish(&pl);
    if (!rc && pl.over_total)
        rc = dh_seterr(e, DH_ELIMIT, "decoded images exceed the limit of %llu bytes in total (--max-memory)",
                       (unsigned long long)o->lim.max_total_bytes);
    if (rc) return rc;
    s->kind = DH_SRC_IMAGES;
    s->labelled = 0;
    s->split = dh_strdup(e, "");
    if (!s->split) return DH_ENOMEM;
    return collect_items(s, p, o, e);
}

int dh_ingest_load(const char *const *paths, int npaths, const dh_ingest_opts *o, dh_ingest_set *s, dh_err *e) {
    memset(s, 0, sizeof *s);
    if (npaths < 1) return dh_seterr(e, DH_EINVAL, "no source given");
    s->priv = dh_calloc(e, 1, sizeof(priv));
    if (!s->priv) return DH_ENOMEM;
    s->labelled = 1;
    dh_src_kind k = o->kind;
    int rc = 0;
    if (k == DH_SRC_AUTO && (rc = dh_ingest_detect(paths[0], &k, e))) return rc;
    if (k == DH_SRC_IMAGES && image_path(paths[0])) {
        for (int i = 1; i < npaths; i++)
            if (!image_path(paths[i]))
                return dh_seterr(e, DH_EINVAL, "%s: not a JPEG or PNG file (with several sources, each is an image)",
                                 paths[i]);
        return image_files_source(paths, npaths, o, s, e);
    }
    if (npaths > 2 || (npaths == 2 && k != DH_SRC_IDX))
        return dh_seterr(e, DH_EINVAL,
                         "several sources are only for JPEG or PNG files, or an IDX images and labels pair");
    if (k == DH_SRC_IDX) return idx_source(paths, npaths, o, s, e);
    struct stat st;
    int isdir = paths[0] && strcmp(paths[0], "-") && stat(paths[0], &st) == 0 && S_ISDIR(st.st_mode);
    /* AUTO stays AUTO here: images vs CIFAR is decided by member names */
    return images_archive_or_dir(paths[0], isdir, o, s, e);
}

/* ---- selection ----------------------------------------------------------------------------- */
int dh_ingest_select(dh_ingest_set *s, const dh_ingest_opts *o, int shuffle, uint64_t seed, int64_t limit,
                     int64_t per_class, dh_err *e) {
    if (shuffle && s->n > 1) {
        uint64_t st = seed;
        for (int64_t i = s->n - 1; i > 0; i--) {
            uint64_t r = dh_splitmix64(&st);
            int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
            dh_item *t = s->items[i];
            s->items[i] = s->items[j];
            s->items[j] = t;
        }
    }
    if (per_class > 0 && !s->labelled)
        return dh_seterr(e, DH_EINVAL, "--per-class: the images have no labels (not in class folders)");
    free(s->class_counts);
    s->class_counts = dh_calloc(e, s->nclasses > 0 ? s->nclasses : 1, sizeof *s->class_counts);
    if (!s->class_counts) return DH_ENOMEM;
    int64_t m = 0;
    for (int64_t i = 0; i < s->n; i++) {
        dh_item *it = s->items[i];
        if (!s->labelled) {
            if (limit > 0 && m >= limit) break;
            s->items[m++] = it;
            continue;
        }
        if (it->label < 0 || it->label >= s->nclasses)
            return dh_seterr(e, DH_EFORMAT, "member %s: label %d out of range (%d classes)", it->id, it->label,
                             s->nclasses);
        if (limit > 0 && m >= limit) break;
        if (per_class > 0 && s->class_counts[it->label] >= per_class) continue;
        s->class_counts[it->label]++;
        s->items[m++] = it;
    }
    s->n = m;
    if (m == 0) return dh_seterr(e, DH_EFORMAT, "no images selected");
    /* output layout */
    int C = o->channels;
    if (!C) {
        C = 1;
        for (int64_t i = 0; i < m; i++)
            if (s->items[i]->c == 3) {
                C = 3;
                break;
            }
    }
    s->C = C;
    if (o->resize_w) {
        s->W = o->resize_w;
        s->H = o->resize_h;
    } else {
        const dh_item *f = s->items[0];
        const char *mem = s->priv && ((priv *)s->priv)->files ? "" : "member ";
        s->W = f->w;
        s->H = f->h;
        for (int64_t i = 1; i < m; i++) {
            const dh_item *it = s->items[i];
            if (it->w != f->w || it->h != f->h)
                return dh_seterr(e, DH_EFORMAT, "%s%s: image size %dx%d differs from %dx%d of %s%s (use --resize WxH)",
                                 mem, it->id, it->w, it->h, f->w, f->h, mem, f->id);
        }
    }
    return 0;
}

int dh_ingest_pixels(const dh_ingest_set *s, int64_t i, uint8_t *dst, dh_err *e) {
    const dh_item *it = s->items[i];
    if (it->c == s->C && it->w == s->W && it->h == s->H) {
        memcpy(dst, it->px, (size_t)s->C * s->H * s->W);
        return 0;
    }
    if (dh_image_convert(it->px, it->c, it->h, it->w, dst, s->C, s->H, s->W))
        return dh_seterr(e, DH_ENOMEM, "out of memory converting member %s", it->id);
    return 0;
}

/* "a,b,c" split in place; "fashion-mnist" and "cifar10" name the known sets.
 * Returns the count, or -1 with e set (an empty name). */
int dh_ingest_class_names(char *s, const char ***out, dh_err *e) {
    static char fashion[] = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";
    static char cifar10[] = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck";
    if (!strcmp(s, "fashion-mnist"))
        s = fashion;
    else if (!strcmp(s, "cifar10") || !strcmp(s, "cifar-10"))
        s = cifar10;
    int n = 1;
    for (char *p = s; *p; p++) n += *p == ',';
    const char **v = dh_calloc(e, n, sizeof *v);
    if (!v) return -1;
    int k = 0;
    for (char *t; (t = strsep(&s, ","));) {
        if (!*t) {
            free(v);
            dh_seterr(e, DH_EINVAL, "empty class name");
            return -1;
        }
        v[k++] = t;
    }
    *out = v;
    return k;
}
