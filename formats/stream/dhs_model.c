/* dhs_model.c — models as streams: one named f32 tensor per row
 * (fields name:str, shape:i64[-1], data:f32[-1]; kind "model"). */
#include "dhs.h"
#include "dhs.h"
#include <stdlib.h>
#include <string.h>

void dhs_model_init(dhs_model *m) {
    memset(m, 0, sizeof *m);
    m->meta = dhs_meta_new();
}

void dhs_model_free(dhs_model *m) {
    for (int i = 0; i < m->ntensors; i++) {
        free(m->t[i].name);
        free(m->t[i].data);
    }
    free(m->t);
    dhs_meta_free(m->meta);
    memset(m, 0, sizeof *m);
}

dhs_tensor *dhs_model_find(const dhs_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

dhs_tensor *dhs_model_add(dhs_model *m, const char *name, int ndim, const int64_t *shape, const float *data,
                          dh_err *e) {
    if (ndim < 0 || ndim > DHS_MAX_DIMS) {
        dh_seterr(e, DH_EINVAL, "tensor %s: %d dimensions", name, ndim);
        return NULL;
    }
    if (dhs_model_find(m, name)) {
        dh_seterr(e, DH_EINVAL, "tensor %s: duplicate name", name);
        return NULL;
    }
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > INT64_MAX / shape[d])) {
            dh_seterr(e, DH_EINVAL, "tensor %s: bad shape", name);
            return NULL;
        }
        n *= shape[d];
    }
    dhs_tensor *t = dh_realloc(e, m->t, (size_t)m->ntensors + 1, sizeof *t);
    if (!t) return NULL;
    m->t = t;
    t = &m->t[m->ntensors];
    memset(t, 0, sizeof *t);
    t->name = dh_strdup(e, name);
    t->data = dh_calloc(e, (size_t)(n ? n : 1), sizeof(float));
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return NULL;
    }
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->n = n;
    if (data && n) memcpy(t->data, data, (size_t)n * sizeof(float));
    m->ntensors++;
    return t;
}

dhs_tensor *dhs_model_get(const dhs_model *m, const char *name, int ndim, const int64_t *shape, dh_err *e) {
    dhs_tensor *t = dhs_model_find(m, name);
    if (!t) {
        dh_seterr(e, DH_ESCHEMA, "model has no tensor '%s'", name);
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char a[128] = "", b[128] = "";
        for (int d = 0, o = 0; d < t->ndim; d++)
            o += snprintf(a + o, sizeof a - o, "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        for (int d = 0, o = 0; d < ndim; d++)
            o += snprintf(b + o, sizeof b - o, "%s%lld", d ? "x" : "", (long long)shape[d]);
        dh_seterr(e, DH_ESCHEMA, "model tensor '%s' has shape %s, expected %s", name, a, b);
        return NULL;
    }
    return t;
}

static void model_schema(dhs_schema *s) {
    int64_t var = -1;
    dhs_schema_init(s, "model");
    dhs_schema_add(s, "name", DHS_STR, 0, NULL, NULL);
    dhs_schema_add(s, "shape", DHS_I64, 1, &var, NULL);
    dhs_schema_add(s, "data", DHS_F32, 1, &var, NULL);
}

int dhs_model_read(dhs_reader *r, dhs_model *m, dh_err *e) {
    dhs_model_init(m);
    dhs_schema want;
    model_schema(&want);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "model"))
        return dh_seterr(e, DH_ESCHEMA, "%s: a %s stream, not a model", dhs_reader_name(r), s->kind);
    if (!dhs_schema_equal(s, &want))
        return dh_seterr(e, DH_ESCHEMA, "%s: model stream with unexpected fields", dhs_reader_name(r));
    dhs_meta_free(m->meta);
    m->meta = dhs_meta_copy(dhs_reader_meta(r));
    if (!m->meta) return dh_seterr(e, DH_ENOMEM, "out of memory");
    for (;;) {
        dhs_chunk *c;
        int rc = dhs_read_chunk(r, &c, e);
        if (rc == DH_EOF) break;
        if (rc) {
            dhs_model_free(m);
            dhs_model_init(m);
            return rc;
        }
        for (int64_t i = 0; i < c->nrows; i++) {
            size_t nl;
            const char *nm = dhs_str_at(c, 0, i, &nl);
            char name[256];
            if (nl == 0 || nl >= sizeof name || memchr(nm, 0, nl)) { /* a NUL cut the name ("\0x" saved as "") */
                dhs_model_free(m);
                dhs_model_init(m);
                return dh_seterr(e, DH_EFORMAT, "%s: tensor name of %zu bytes%s", dhs_reader_name(r), nl,
                                 nl && nl < sizeof name ? " with a NUL byte" : "");
            }
            memcpy(name, nm, nl);
            name[nl] = 0;
            uint64_t nd = c->off[1][i + 1] - c->off[1][i];
            const int64_t *shape = (const int64_t *)c->col[1] + c->off[1][i];
            uint64_t nel = c->off[2][i + 1] - c->off[2][i];
            const float *data = (const float *)c->col[2] + c->off[2][i];
            uint64_t prod = 1;
            int bad = nd > DHS_MAX_DIMS;
            for (uint64_t d = 0; !bad && d < nd; d++) {
                if (shape[d] < 0 || (shape[d] && prod > UINT64_MAX / (uint64_t)shape[d]))
                    bad = 1;
                else
                    prod *= (uint64_t)shape[d];
            }
            if (bad || prod != nel) {
                dhs_model_free(m);
                dhs_model_init(m);
                return dh_seterr(e, DH_EFORMAT, "%s: tensor %s: shape does not match its %llu values",
                                 dhs_reader_name(r), name, (unsigned long long)nel);
            }
            if (!dhs_model_add(m, name, (int)nd, shape, data, e)) {
                dh_err_prefix(e, "%s", dhs_reader_name(r));
                dhs_model_free(m);
                dhs_model_init(m);
                return e ? e->code : DH_EFORMAT;
            }
        }
    }
    return 0;
}

int dhs_model_load(const char *path, dhs_model *m, dh_err *e) {
    dhs_reader *r = dhs_open_path(path, NULL, e);
    if (!r) {
        dhs_model_init(m);
        return e ? e->code : DH_EFORMAT;
    }
    int rc = dhs_model_read(r, m, e);
    dhs_close(r);
    return rc;
}

int dhs_model_write(FILE *f, const char *name, const dhs_model *m, dh_err *e) {
    dhs_schema s;
    model_schema(&s);
    dhs_writer *w = dhs_writer_open(f, name, &s, m->meta, e);
    if (!w) return e ? e->code : DH_EIO;
    for (int i = 0; i < m->ntensors; i++) {
        const dhs_tensor *t = &m->t[i];
        uint32_t ln[3] = { (uint32_t)strlen(t->name), (uint32_t)t->ndim, (uint32_t)t->n };
        const uint32_t *lens[3] = { &ln[0], &ln[1], &ln[2] };
        const void *cols[3] = { t->name, t->shape, t->data };
        if ((uint64_t)t->n > UINT32_MAX / 4) {
            dhs_writer_abort(w);
            return dh_seterr(e, DH_ELIMIT, "tensor %s too large", t->name);
        }
        int rc = dhs_write_rows(w, 1, cols, lens, e);
        if (rc) {
            dhs_writer_abort(w);
            return rc;
        }
    }
    return dhs_writer_close(w, e);
}
