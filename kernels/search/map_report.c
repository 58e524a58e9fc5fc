/* map_report.c — dh-map's table and JSON result, and the JSON read back
 * (see map_report.h). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "map_report.h"

static void print_num(FILE *f, int have, double v) {
    if (have)
        fprintf(f, "%.6f", v);
    else
        fputs("null", f);
}

void dh_map_write_json(FILE *f, const dh_map_result *r, const char *label, const char *note) {
    fprintf(f, "{\n  \"program\": \"dh-map\",\n  \"label\": ");
    dh_json_write_str(f, label);
    fprintf(f, ",\n  \"bits\": %d,\n  \"queries\": %lld,\n  \"database\": %lld,\n", r->bits, (long long)r->nq,
            (long long)r->ndb);
    fprintf(f, "  \"relevance\": \"same label\",\n  \"ties\": \"database order (stable sort by distance)\",\n"
               "  \"tie_aware\": \"the exact expected value under a uniformly random order among equal distances\",\n");
    fprintf(f, "  \"empty_relevant\": \"AP 0, counted in the mean\",\n  \"queries_without_relevant\": %lld,\n",
            (long long)r->nq_norel);
    fprintf(f, "  \"mAP\": ");
    print_num(f, r->have_map, r->map);
    fprintf(f, ",\n  \"mAP_tie_aware\": ");
    print_num(f, r->have_map, r->map_tie);
    fprintf(f, ",\n  \"mAP_at_R\": {\"R\": %lld, \"value\": ", (long long)r->at_r);
    print_num(f, r->have_map_r, r->map_r);
    fprintf(f, ", \"tie_aware\": ");
    print_num(f, r->have_map_r_tie, r->map_r_tie);
    fprintf(f, "},\n  \"precision_at_radius\": {\"radius\": %d, \"value\": ", r->radius);
    print_num(f, r->have_prad, r->prad);
    fprintf(f, ", \"tie_aware\": "); /* order-free: the same */
    print_num(f, r->have_prad, r->prad);
    fprintf(f, "},\n  \"precision_at_k\": [");
    for (int i = 0; i < r->nk; i++) {
        fprintf(f, "%s\n    {\"k\": %lld, \"precision\": ", i ? "," : "", (long long)r->ks[i]);
        print_num(f, r->have_k[i], r->pk[i]);
        fprintf(f, ", \"recall\": ");
        print_num(f, r->have_k[i], r->rk[i]);
        fprintf(f, ", \"precision_tie_aware\": ");
        print_num(f, r->have_k_tie[i], r->pk_tie[i]);
        fprintf(f, ", \"recall_tie_aware\": ");
        print_num(f, r->have_k_tie[i], r->rk_tie[i]);
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"pr_curve\": [");
    for (int d = 0; d < r->pr_n; d++)
        fprintf(f, "%s\n    {\"radius\": %d, \"precision\": %.6f, \"recall\": %.6f}", d ? "," : "", d, r->pr_p[d],
                r->pr_r[d]);
    fprintf(f, "\n  ]");
    if (note) {
        fprintf(f, ",\n  \"note\": ");
        dh_json_write_str(f, note);
    }
    fprintf(f, "\n}\n");
}

static void cell(FILE *f, int width, int have, double v) {
    if (have)
        fprintf(f, "  %*.4f", width, v);
    else
        fprintf(f, "  %*s", width, "n/a");
}

static void row(FILE *f, const char *name, int have, double v, int have_tie, double tie) {
    fprintf(f, "  %-34s", name);
    cell(f, 8, have, v);
    cell(f, 9, have_tie, tie);
    fputc('\n', f);
}

void dh_map_write_table(FILE *f, const dh_map_result *r, const char *label, const char *note) {
    fprintf(f, "dh-map: %s: %lld queries, database of %lld, %d-bit codes\n", label, (long long)r->nq, (long long)r->ndb,
            r->bits);
    fprintf(f, "relevance: same label.  ranking: Hamming distance, ties in database order.\n");
    fprintf(f, "tie-aware: the exact expected value under a random order among equal distances.\n");
    fprintf(f, "queries without any relevant item: %lld (AP 0, counted in the means)\n", (long long)r->nq_norel);
    if (note) fprintf(f, "note: %s\n", note);
    fprintf(f, "\n  %-34s  %8s  %9s\n", "", "db order", "tie-aware");
    row(f, "mAP", r->have_map, r->map, r->have_map, r->map_tie);
    char b[64];
    if (r->at_r > 0) {
        snprintf(b, sizeof b, "mAP@%lld", (long long)r->at_r);
        row(f, b, r->have_map_r, r->map_r, r->have_map_r_tie, r->map_r_tie);
    }
    snprintf(b, sizeof b, "precision, Hamming radius <= %d", r->radius);
    row(f, b, r->have_prad, r->prad, r->have_prad, r->prad); /* order-free: the same */
    if (r->nk) {
        fprintf(f, "\n  %10s  %18s  %18s\n", "", "database order", "tie-aware");
        fprintf(f, "  %10s  %8s  %8s  %8s  %8s\n", "k", "P@k", "R@k", "P@k", "R@k");
        for (int i = 0; i < r->nk; i++) {
            fprintf(f, "  %10lld", (long long)r->ks[i]);
            cell(f, 8, r->have_k[i], r->pk[i]);
            cell(f, 8, r->have_k[i], r->rk[i]);
            cell(f, 8, r->have_k_tie[i], r->pk_tie[i]);
            cell(f, 8, r->have_k_tie[i], r->rk_tie[i]);
            fputc('\n', f);
        }
    }
    if (r->pr_n) {
        fprintf(f, "\n  %6s  %9s  %8s   (by Hamming radius, order-free; 0 when nothing is that close)\n", "radius",
                "precision", "recall");
        for (int d = 0; d < r->pr_n; d++) fprintf(f, "  %6d  %9.4f  %8.4f\n", d, r->pr_p[d], r->pr_r[d]);
    }
}

/* ---- reading a result back --------------------------------------------------------------------------- */

typedef struct rd {
    dh_err *e;
    char where[96]; /* the element being read, for messages */
} rd;

static int bad(rd *c, const char *key, const dh_json *v, const char *want) {
    const char *what = v ? dh_json_type_name(v->type) : "missing";
    if (!*key) return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result: %s%s, expected %s", c->where, what, want);
    return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result: %s'%s' is %s, expected %s", c->where, key, what, want);
}

/* A number or null (or absent unless required): *have says which. */
static int num(rd *c, const dh_json *o, const char *key, int required, double *x, int *have) {
    const dh_json *v = dh_json_get(o, key);
    *x = 0;
    *have = 0;
    if ((!v && !required) || (v && v->type == DH_JSON_NULL)) return DH_OK;
    if (!v || v->type != DH_JSON_NUM) return bad(c, key, v, required > 1 ? "a number" : "a number or null");
    *x = v->num;
    *have = 1;
    return DH_OK;
}

/* A whole number in [lo, hi], or null or absent (0): the counts of a result
 * (a value outside the range is no dh-map result, and would not convert). */
static int whole(rd *c, const dh_json *o, const char *key, double lo, double hi, int64_t *x) {
    double v;
    int have;
    *x = 0;
    if (num(c, o, key, 0, &v, &have)) return DH_EFORMAT;
    if (!have) return DH_OK;
    if (!(v >= lo && v <= hi) || v != (double)(int64_t)v)
        return dh_seterr(c->e, DH_EFORMAT,
                         "not a dh-map result: %s'%s' = %g, expected a whole number from %.0f to %.0f", c->where, key,
                         v, lo, hi);
    *x = (int64_t)v;
    return DH_OK;
}
#define MAX_COUNT 9.2e18 /* below 2^63 */

static int cut(rd *c, const dh_json *o, const char *key, const char *ckey, double cmax, int64_t *cv, int *have,
               double *v, int *have_tie, double *tie) {
    const dh_json *x = dh_json_get(o, key);
    if (!x) return DH_OK;
    if (x->type != DH_JSON_OBJ) return bad(c, key, x, "an object");
    snprintf(c->where, sizeof c->where, "%s: ", key);
    int rc =
        whole(c, x, ckey, 0, cmax, cv) || num(c, x, "value", 0, v, have) || num(c, x, "tie_aware", 0, tie, have_tie);
    c->where[0] = 0;
    return rc ? DH_EFORMAT : DH_OK;
}

static const dh_json *array(rd *c, const dh_json *o, const char *key, int *rc) {
    const dh_json *a = dh_json_get(o, key);
    if (!a || a->type != DH_JSON_ARR) *rc = bad(c, key, a, "an array");
    return a;
}

static int read_result(rd *c, const dh_json *root, dh_map_result *r, char **label) {
    if (root->type != DH_JSON_OBJ)
        return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result: %s, expected an object",
                         dh_json_type_name(root->type));
    const dh_json *p = dh_json_get(root, "program"), *l = dh_json_get(root, "label");
    if (!p || p->type != DH_JSON_STR || strcmp(p->str, "dh-map") != 0)
        return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result (no \"program\": \"dh-map\")");
    if (l && l->type != DH_JSON_STR) return bad(c, "label", l, "a string");
    if (l && !(*label = dh_strdup(c->e, l->str))) return DH_ENOMEM;
    double x;
    int64_t bits, radius;
    int h, rc = DH_OK;
    if (whole(c, root, "bits", 0, INT_MAX, &bits) || whole(c, root, "queries", 0, MAX_COUNT, &r->nq) ||
        whole(c, root, "database", 0, MAX_COUNT, &r->ndb) ||
        whole(c, root, "queries_without_relevant", 0, MAX_COUNT, &r->nq_norel))
        return DH_EFORMAT;
    r->bits = (int)bits;
    if (num(c, root, "mAP", 0, &r->map, &r->have_map) || num(c, root, "mAP_tie_aware", 0, &r->map_tie, &h) ||
        cut(c, root, "mAP_at_R", "R", MAX_COUNT, &r->at_r, &r->have_map_r, &r->map_r, &r->have_map_r_tie,
            &r->map_r_tie) ||
        cut(c, root, "precision_at_radius", "radius", INT_MAX, &radius, &r->have_prad, &r->prad, &h, &x))
        return DH_EFORMAT;
    r->radius = (int)radius;
    const dh_json *pk = array(c, root, "precision_at_k", &rc), *pr = rc ? NULL : array(c, root, "pr_curve", &rc);
    if (rc) return rc;
    if (pk->n > DH_MAP_MAX_K)
        return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result: more than %d precision_at_k entries", DH_MAP_MAX_K);
    for (int i = 0; i < pk->n; i++) {
        const dh_json *o = &pk->kid[i];
        int hr;
        snprintf(c->where, sizeof c->where, "precision_at_k[%d]: ", i);
        if (o->type != DH_JSON_OBJ) return bad(c, "", o, "an object");
        if (num(c, o, "k", 2, &x, &h) || num(c, o, "precision", 1, &r->pk[i], &r->have_k[i]) ||
            num(c, o, "recall", 0, &r->rk[i], &hr) ||
            num(c, o, "precision_tie_aware", 0, &r->pk_tie[i], &r->have_k_tie[i]) ||
            num(c, o, "recall_tie_aware", 0, &r->rk_tie[i], &hr))
            return DH_EFORMAT;
        if (x < 1 || x > 9.2e18) return dh_seterr(c->e, DH_EFORMAT, "not a dh-map result: %sk = %g", c->where, x);
        r->ks[i] = (int64_t)x;
    }
    r->nk = pk->n;
    r->pr_n = pr->n;
    r->pr_p = dh_calloc(c->e, (size_t)pr->n + 1, sizeof *r->pr_p);
    r->pr_r = dh_calloc(c->e, (size_t)pr->n + 1, sizeof *r->pr_r);
    if (!r->pr_p || !r->pr_r) return DH_ENOMEM;
    for (int d = 0; d < pr->n; d++) {
        const dh_json *o = &pr->kid[d];
        snprintf(c->where, sizeof c->where, "pr_curve[%d]: ", d);
        if (o->type != DH_JSON_OBJ) return bad(c, "", o, "an object");
        if (num(c, o, "precision", 2, &r->pr_p[d], &h) || num(c, o, "recall", 2, &r->pr_r[d], &h)) return DH_EFORMAT;
    }
    return DH_OK;
}

int dh_map_read_json(const char *text, size_t len, dh_map_result *r, char **label, dh_err *e) {
    memset(r, 0, sizeof *r);
    *label = NULL;
    dh_json *root;
    int rc = dh_json_parse(text, len, &root, e);
    if (rc) {
        if (rc == DH_EFORMAT) dh_err_prefix(e, "not JSON");
        return rc;
    }
    rd c = { .e = e };
    rc = read_result(&c, root, r, label);
    dh_json_free(root);
    if (rc) {
        dh_map_result_free(r);
        free(*label);
        *label = NULL;
    }
    return rc;
}
