/* shard.c — sharded databases (see shard.h). */
#include <stdlib.h>
#include <string.h>
#include "hamming.h"
#include "shard.h"

void dh_shard_free(dh_shard *sh) {
    free(sh->row);
    free(sh->of);
    memset(sh, 0, sizeof *sh);
}

int dh_shard_meta(const dhs_meta *m, dh_shard *sh, dh_err *e) {
    memset(sh, 0, sizeof *sh);
    sh->row0 = -1;
    if (!dhs_meta_has(m, "shards")) return DH_OK;
    int64_t k = -1, n = 0, total = -1, row0 = -1;
    const char *by = dhs_meta_str(m, "shard_by"), *of = dhs_meta_str(m, "shard_of");
    if (dhs_meta_int(m, "shards", &n) || dhs_meta_int(m, "shard", &k) || dhs_meta_int(m, "shard_total_rows", &total) ||
        !by || n < 1 || n > DH_SHARDS_MAX || k < 0 || k >= n || total < 0 || total > (INT64_C(1) << 40))
        return dh_seterr(e, DH_EFORMAT, "bad shard metadata (shard, shards, shard_by, shard_total_rows)");
    if (!strcmp(by, "contiguous")) {
        if (dhs_meta_int(m, "shard_row0", &row0) || row0 < 0 || row0 > total)
            return dh_seterr(e, DH_EFORMAT, "bad shard metadata (shard_row0)");
    } else if (strcmp(by, "hash") != 0)
        return dh_seterr(e, DH_EFORMAT, "bad shard metadata: shard_by '%s' is not contiguous or hash", by);
    sh->k = (int)k;
    sh->n = (int)n;
    sh->total = total;
    sh->row0 = row0;
    snprintf(sh->by, sizeof sh->by, "%s", by);
    if (of && !(sh->of = dh_strdup(e, of))) return DH_ENOMEM;
    return DH_OK;
}

int dh_shard_codes_load(const char *path, dh_codeset *c, dh_shard *sh, dh_err *e) {
    memset(c, 0, sizeof *c);
    memset(sh, 0, sizeof *sh);
    const char *name = (!path || !strcmp(path, "-")) ? "<stdin>" : path;
    dhs_reader *r = dhs_open_path(path, NULL, e);
    if (!r) return e ? e->code : DH_EIO;
    int bits, lf, idf, rc = dh_codes_schema(dhs_reader_schema(r), &bits, &lf, &idf, e);
    if (!rc) rc = dh_shard_meta(dhs_reader_meta(r), sh, e);
    int rf = dhs_field_index(dhs_reader_schema(r), "row");
    if (!rc && sh->n && !strcmp(sh->by, "hash") && rf < 0)
        rc = dh_seterr(e, DH_ESCHEMA, "a hash shard without its field 'row'");
    if (!rc && rf >= 0 && sh->n && !strcmp(sh->by, "hash") &&
        (dhs_reader_schema(r)->fields[rf].dtype != DHS_I64 || dhs_reader_schema(r)->fields[rf].ndim != 0))
        rc = dh_seterr(e, DH_ESCHEMA, "field 'row' is not a scalar i64");
    if (rc) {
        dh_err_prefix(e, "%s", name);
        dhs_close(r);
        dh_shard_free(sh);
        return rc;
    }
    dhs_table t;
    rc = dhs_read_table(r, &t, 0, e);
    dhs_close(r);
    if (rc) {
        dh_shard_free(sh);
        return rc;
    }
    int cf = dhs_field_index(&t.schema, "code");
    c->n = t.nrows;
    c->bits = bits;
    c->W = dh_ham_words(bits);
    c->w = dh_malloc(e, (size_t)(c->n ? c->n : 1) * c->W, sizeof *c->w);
    if (!c->w) rc = DH_ENOMEM;
    if (!rc) dh_ham_pack(t.col[cf], c->n, bits, c->w);
    sh->rows = c->n;
    if (!rc && sh->n) {
        if (sh->row0 >= 0 && sh->row0 + c->n > sh->total)
            rc = dh_seterr(e, DH_EFORMAT, "%s: rows %lld..%lld of a database of %lld rows", name, (long long)sh->row0,
                           (long long)(sh->row0 + c->n - 1), (long long)sh->total);
        if (!rc && !strcmp(sh->by, "hash")) {
            sh->row = dh_malloc(e, (size_t)(c->n ? c->n : 1), sizeof *sh->row);
            if (!sh->row) rc = DH_ENOMEM;
            for (int64_t i = 0; !rc && i < c->n; i++) {
                memcpy(&sh->row[i], (const char *)t.col[rf] + i * 8, 8);
                if (sh->row[i] < 0 || sh->row[i] >= sh->total || (i > 0 && sh->row[i] <= sh->row[i - 1]))
                    rc = dh_seterr(e, DH_EFORMAT,
                                   "%s: row %lld: 'row' %lld is not increasing within 0..%lld (the whole database)",
                                   name, (long long)i, (long long)sh->row[i], (long long)sh->total - 1);
            }
        }
    }
    dhs_table_free(&t);
    if (rc) {
        dh_codes_free(c);
        dh_shard_free(sh);
    }
    return rc;
}

void dh_shard_map(const dh_shard *sh, int64_t *idx, int64_t n) {
    if (!sh->n) return;
    if (sh->row)
        for (int64_t i = 0; i < n; i++) idx[i] = sh->row[idx[i]];
    else
        for (int64_t i = 0; i < n; i++) idx[i] += sh->row0;
}

/* dh_rankings_header's schema and metadata, with the shard's keys added. */
dhs_writer *dh_shard_rankings_writer_open(FILE *f, const char *name, const dh_rankings_meta *m, const dh_shard *sh,
                                          dh_err *e) {
    if (!sh || !sh->n) return dh_rankings_writer_open(f, name, m, e);
    dhs_schema s;
    dhs_meta *md;
    if (dh_rankings_header(m, &s, &md, e)) return NULL;
    dhs_meta_set_int(md, "shard", sh->k);
    dhs_meta_set_int(md, "shards", sh->n);
    dhs_meta_set_str(md, "shard_by", sh->by);
    dhs_meta_set_int(md, "shard_total_rows", sh->total);
    if (sh->row0 >= 0) dhs_meta_set_int(md, "shard_row0", sh->row0);
    dhs_meta_set_int(md, "shard_rows", sh->rows);
    if (sh->of) dhs_meta_set_str(md, "shard_of", sh->of);
    dhs_writer *w = dhs_writer_open(f, name, &s, md, e);
    dhs_meta_free(md);
    return w;
}

int dh_shard_name(const char *pattern, int k, char *out, size_t n, dh_err *e) {
    size_t o = 0;
    int conv = 0;
    for (const char *p = pattern; *p; p++) {
        char piece[32];
        const char *add = piece;
        if (*p != '%') {
            piece[0] = *p;
            piece[1] = 0;
        } else if (p[1] == '%') {
            add = "%";
            p++;
        } else {
            const char *q = p + 1;
            int zero = 0, width = 0;
            if (*q == '0') {
                zero = 1;
                q++;
            }
            while (*q >= '0' && *q <= '9' && width < 100) width = width * 10 + (*q++ - '0');
            if (*q != 'd' || width >= 100)
                return dh_seterr(e, DH_EINVAL, "'%s': a name pattern takes one %%d (or %%0Nd) and %%%% only", pattern);
            if (conv++) return dh_seterr(e, DH_EINVAL, "'%s': more than one %%d in the name pattern", pattern);
            snprintf(piece, sizeof piece, zero ? "%0*d" : "%*d", width, k);
            p = q;
        }
        size_t l = strlen(add);
        if (o + l + 1 > n) return dh_seterr(e, DH_EINVAL, "'%s': the shard names are too long", pattern);
        memcpy(out + o, add, l);
        o += l;
    }
    if (!conv) return dh_seterr(e, DH_EINVAL, "'%s': the name pattern has no %%d for the shard number", pattern);
    out[o] = 0;
    return DH_OK;
}
