/* rankings.c — the rankings stream (see rankings.h). */
#include <stdlib.h>
#include <string.h>
#include "rankings.h"

int dh_rankings_header(const dh_rankings_meta *m, dhs_schema *s, dhs_meta **md, dh_err *e) {
    dhs_schema_init(s, "rankings");
    int64_t var = -1;
    if (dhs_schema_add(s, "query", DHS_I64, 0, NULL, e) < 0 || dhs_schema_add(s, "label", DHS_I32, 0, NULL, e) < 0 ||
        dhs_schema_add(s, "id", DHS_STR, 0, NULL, e) < 0 || dhs_schema_add(s, "idx", DHS_I64, 1, &var, e) < 0 ||
        dhs_schema_add(s, "dist", DHS_I32, 1, &var, e) < 0) {
        dh_err_prefix(e, "rankings schema");
        return e ? e->code : DH_EINVAL;
    }
    if (!(*md = dhs_meta_new())) return dh_seterr(e, DH_ENOMEM, "out of memory");
    dhs_meta_set_str(*md, "program", m->program);
    dhs_meta_set_str(*md, "command", m->command);
    dhs_meta_set_int(*md, "bits", m->bits);
    dhs_meta_set_str(*md, "db", m->db);
    dhs_meta_set_int(*md, "db_rows", m->db_rows);
    dhs_meta_set_int(*md, "top", m->top);
    dhs_meta_set_int(*md, "radius", m->radius);
    dhs_meta_set_bool(*md, "labels", m->labels);
    dhs_meta_set_str(*md, "order", "distance, then database position");
    dhs_meta_set_str(*md, "device", m->device);
    return DH_OK;
}

dhs_writer *dh_rankings_writer_open(FILE *f, const char *name, const dh_rankings_meta *m, dh_err *e) {
    dhs_schema s;
    dhs_meta *md;
    if (dh_rankings_header(m, &s, &md, e)) return NULL;
    dhs_writer *w = dhs_writer_open(f, name, &s, md, e);
    dhs_meta_free(md);
    return w;
}

int dh_rankings_write(dhs_writer *w, int64_t q0, int64_t n, const int32_t *labels, const char *ids,
                      const uint32_t *idlen, const dh_rank_result *res, dh_err *e) {
    int64_t *qidx = dh_malloc(e, (size_t)(n ? n : 1), sizeof *qidx);
    int32_t *lab = labels ? NULL : dh_malloc(e, (size_t)(n ? n : 1), sizeof *lab);
    uint32_t *cnt = dh_malloc(e, (size_t)(n ? n : 1), sizeof *cnt);
    uint32_t *nolen = idlen ? NULL : dh_calloc(e, (size_t)(n ? n : 1), sizeof *nolen);
    int rc = DH_ENOMEM;
    if (qidx && cnt && (labels || lab) && (idlen || nolen)) {
        for (int64_t i = 0; i < n; i++) {
            qidx[i] = q0 + i;
            cnt[i] = (uint32_t)(res->off[i + 1] - res->off[i]);
            if (lab) lab[i] = INT32_MIN;
        }
        const void *cols[5] = { qidx, labels ? labels : lab, ids ? ids : "", res->idx, res->dist };
        const uint32_t *lens[5] = { NULL, NULL, idlen ? idlen : nolen, cnt, cnt };
        rc = dhs_write_rows(w, n, cols, lens, e);
    }
    free(qidx);
    free(lab);
    free(cnt);
    free(nolen);
    return rc;
}

int dh_rankings_open(dh_rankings_reader *rr, dhs_reader *r, dh_err *e) {
    memset(rr, 0, sizeof *rr);
    rr->r = r;
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "rankings") != 0)
        return dh_seterr(e, DH_ESCHEMA, "a stream of kind '%s', expected 'rankings'", s->kind);
    if ((rr->fq = dhs_require_field(s, "query", DHS_I64, 0, e)) < 0 ||
        (rr->fl = dhs_require_field(s, "label", DHS_I32, 0, e)) < 0 ||
        (rr->fi = dhs_require_field(s, "idx", DHS_I64, 1, e)) < 0 ||
        (rr->fd = dhs_require_field(s, "dist", DHS_I32, 1, e)) < 0)
        return DH_ESCHEMA;
    const dhs_meta *m = dhs_reader_meta(r);
    int64_t bits = 0, top = -1, radius = -1;
    int labels = 1;
    if (dhs_meta_int(m, "bits", &bits) != 0 || dhs_meta_int(m, "db_rows", &rr->meta.db_rows) != 0 || bits < 1 ||
        bits > DH_HAMMING_MAX_BITS)
        return dh_seterr(e, DH_EFORMAT, "rankings without valid 'bits' and 'db_rows' metadata");
    dhs_meta_int(m, "top", &top);
    dhs_meta_int(m, "radius", &radius);
    dhs_meta_bool(m, "labels", &labels);
    rr->meta.bits = (int)bits;
    rr->meta.top = top;
    rr->meta.radius = radius < 0 ? -1 : radius > DH_HAMMING_MAX_BITS ? DH_HAMMING_MAX_BITS : (int)radius;
    rr->meta.labels = labels;
    rr->meta.db = dhs_meta_str(m, "db");
    rr->meta.program = dhs_meta_str(m, "program");
    rr->meta.command = dhs_meta_str(m, "command");
    rr->meta.device = dhs_meta_str(m, "device");
    return DH_OK;
}

int dh_rankings_next(dh_rankings_reader *rr, dh_ranking *q, dh_err *e) {
    while (!rr->ch || rr->i >= rr->ch->nrows) {
        int rc = dhs_read_chunk(rr->r, &rr->ch, e);
        if (rc != DH_OK) {
            rr->ch = NULL;
            return rc;
        }
        rr->i = 0;
    }
    const dhs_chunk *ch = rr->ch;
    int64_t i = rr->i++;
    int64_t n = (int64_t)(ch->off[rr->fi][i + 1] - ch->off[rr->fi][i]);
    int64_t nd = (int64_t)(ch->off[rr->fd][i + 1] - ch->off[rr->fd][i]);
    memcpy(&q->query, (const char *)ch->col[rr->fq] + i * sizeof q->query, sizeof q->query);
    memcpy(&q->label, (const char *)ch->col[rr->fl] + i * sizeof q->label, sizeof q->label);
    if (nd != n)
        return dh_seterr(e, DH_EFORMAT, "query %lld: %lld database rows but %lld distances", (long long)q->query,
                         (long long)n, (long long)nd);
    /* column data in a chunk need not be aligned: copy */
    if (n > rr->cap) {
        int64_t *ni = dh_realloc(e, rr->idx, (size_t)n, sizeof *ni);
        if (!ni) return DH_ENOMEM;
        rr->idx = ni;
        int32_t *nd2 = dh_realloc(e, rr->dist, (size_t)n, sizeof *nd2);
        if (!nd2) return DH_ENOMEM;
        rr->dist = nd2;
        rr->cap = n;
    }
    memcpy(rr->idx, (const char *)ch->col[rr->fi] + ch->off[rr->fi][i] * sizeof(int64_t), (size_t)n * sizeof(int64_t));
    memcpy(rr->dist, (const char *)ch->col[rr->fd] + ch->off[rr->fd][i] * sizeof(int32_t), (size_t)n * sizeof(int32_t));
    q->n = n;
    q->idx = rr->idx;
    q->dist = rr->dist;
    return DH_OK;
}

void dh_rankings_close(dh_rankings_reader *rr) {
    free(rr->idx);
    free(rr->dist);
    rr->idx = NULL;
    rr->dist = NULL;
    rr->cap = 0;
}
