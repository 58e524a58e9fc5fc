/* rank_codes.c — see rank_codes.h. */
#include <stdlib.h>
#include <string.h>
#include "hamming.h"
#include "rank_codes.h"

int dh_codes_schema(const dhs_schema *s, int *bits, int *label_field, int *id_field, dh_err *e) {
    if (strcmp(s->kind, "codes") != 0)
        return dh_seterr(e, DH_ESCHEMA, "a stream of kind '%s', expected 'codes'", s->kind);
    int f = dhs_require_field(s, "code", DHS_BITS, 1, e);
    if (f < 0) return DH_ESCHEMA;
    int64_t k = s->fields[f].shape[0];
    if (k < 1 || k > DH_HAMMING_MAX_BITS)
        return dh_seterr(e, DH_ESCHEMA, "codes of %lld bits: supported 1..%d", (long long)k, DH_HAMMING_MAX_BITS);
    *bits = (int)k;
    *label_field = dhs_field_index(s, "label");
    if (*label_field >= 0 && (s->fields[*label_field].dtype != DHS_I32 || s->fields[*label_field].ndim != 0))
        return dh_seterr(e, DH_ESCHEMA, "field 'label' is not a scalar i32");
    *id_field = dhs_field_index(s, "id");
    if (*id_field >= 0 && s->fields[*id_field].dtype != DHS_STR) *id_field = -1;
    return DH_OK;
}

int dh_codes_load(const char *path, dh_codeset *c, int need_labels, dh_err *e) {
    memset(c, 0, sizeof *c);
    const char *name = (!path || !strcmp(path, "-")) ? "<stdin>" : path;
    dhs_reader *r = dhs_open_path(path, NULL, e);
    if (!r) return e ? e->code : DH_EIO;
    int rc = dh_codes_read(r, name, c, need_labels, e);
    dhs_close(r);
    return rc;
}

int dh_codes_read(dhs_reader *r, const char *name, dh_codeset *c, int need_labels, dh_err *e) {
    memset(c, 0, sizeof *c);
    int bits, lf, idf, rc;
    rc = dh_codes_schema(dhs_reader_schema(r), &bits, &lf, &idf, e);
    if (rc == DH_OK && need_labels && lf < 0)
        rc = dh_seterr(e, DH_ESCHEMA, "the codes have no labels (no field 'label'): relevance needs labelled rows");
    if (rc != DH_OK) {
        dh_err_prefix(e, "%s", name);
        return rc;
    }
    dhs_table t;
    rc = dhs_read_table(r, &t, 0, e);
    if (rc != DH_OK) return rc;
    int cf = dhs_field_index(&t.schema, "code");
    c->n = t.nrows;
    c->bits = bits;
    c->W = dh_ham_words(bits);
    c->w = dh_malloc(e, (size_t)(c->n ? c->n : 1) * c->W, sizeof *c->w);
    if (lf >= 0) c->label = dh_malloc(e, (size_t)(c->n ? c->n : 1), sizeof *c->label);
    if (!c->w || (lf >= 0 && !c->label)) {
        dhs_table_free(&t);
        dh_codes_free(c);
        return DH_ENOMEM;
    }
    dh_ham_pack(t.col[cf], c->n, bits, c->w);
    if (lf >= 0) memcpy(c->label, t.col[lf], (size_t)c->n * sizeof *c->label);
    dhs_table_free(&t);
    for (int64_t i = 0; need_labels && i < c->n; i++)
        if (c->label[i] == DH_NO_LABEL) {
            dh_seterr(e, DH_EFORMAT, "%s: row %lld is unlabelled (label -1): relevance needs labelled rows", name,
                      (long long)i);
            dh_codes_free(c);
            return DH_EFORMAT;
        }
    return DH_OK;
}

void dh_codes_free(dh_codeset *c) {
    free(c->w);
    free(c->label);
    memset(c, 0, sizeof *c);
}
