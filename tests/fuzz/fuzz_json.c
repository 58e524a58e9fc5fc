/* libFuzzer target: the JSON reader (kernels/search/json.c) and what reads
 * dh-map results with it (dh_map_read_json, kernels/search/map_report.c,
 * used by dh-plot) must reject any input cleanly (no crash, leak, hang or
 * undefined behaviour) — `make fuzz`, tests/fuzz/README.md.
 *
 * A tree that parses is checked (types, keys only inside objects, strings
 * without NUL, dh_json_get finding each object's first member of a name),
 * written back as JSON and parsed again, which must give the same tree
 * (else the target aborts). Then the input is read as a dh-map result, and
 * what is read is written as the table and as JSON. */
#include "fuzz.h"
#include "json.h"
#include "map_report.h"
#include <math.h>

#define FZ_CHECK(c)                                                                                                    \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            fprintf(stderr, "fuzz_json: check failed: %s (line %d)\n", #c, __LINE__);                                  \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void check(const dh_json *v, int in_obj, int depth) {
    FZ_CHECK(depth <= 257);
    FZ_CHECK((unsigned)v->type <= DH_JSON_OBJ);
    FZ_CHECK(in_obj ? v->key != NULL : v->key == NULL);
    if (v->key) (void)strlen(v->key);
    FZ_CHECK(strcmp(dh_json_type_name(v->type), "?") != 0);
    switch (v->type) {
    case DH_JSON_STR:
        FZ_CHECK(v->str != NULL);
        (void)strlen(v->str);
        break;
    case DH_JSON_ARR:
    case DH_JSON_OBJ:
        FZ_CHECK(v->n >= 0 && (v->n == 0 || v->kid));
        for (int i = 0; i < v->n; i++) check(&v->kid[i], v->type == DH_JSON_OBJ, depth + 1);
        if (v->type == DH_JSON_OBJ && v->n) {
            const char *k = v->kid[v->n - 1].key;
            const dh_json *f = dh_json_get(v, k);
            FZ_CHECK(f && !strcmp(f->key, k));
            for (const dh_json *g = v->kid; g < f; g++) FZ_CHECK(strcmp(g->key, k) != 0);
        }
        break;
    default: FZ_CHECK(!v->str && !v->n);
    }
    if (v->type != DH_JSON_OBJ) FZ_CHECK(dh_json_get(v, "") == NULL);
}

static void put(FILE *f, const dh_json *v) {
    if (v->key) {
        dh_json_write_str(f, v->key);
        fputc(':', f);
    }
    switch (v->type) {
    case DH_JSON_NULL: fputs("null", f); break;
    case DH_JSON_BOOL: fputs(v->b ? "true" : "false", f); break;
    case DH_JSON_NUM:
        if (isinf(v->num))
            fputs(v->num > 0 ? "1e999" : "-1e999", f);
        else
            fprintf(f, "%.17g", v->num);
        break;
    case DH_JSON_STR: dh_json_write_str(f, v->str); break;
    default:
        fputc(v->type == DH_JSON_OBJ ? '{' : '[', f);
        for (int i = 0; i < v->n; i++) {
            if (i) fputc(',', f);
            put(f, &v->kid[i]);
        }
        fputc(v->type == DH_JSON_OBJ ? '}' : ']', f);
    }
}

static int same(const dh_json *a, const dh_json *b) {
    if (a->type != b->type || a->n != b->n || !a->key != !b->key || (a->key && strcmp(a->key, b->key))) return 0;
    switch (a->type) {
    case DH_JSON_BOOL: return a->b == b->b;
    case DH_JSON_NUM: return a->num == b->num || (isnan(a->num) && isnan(b->num));
    case DH_JSON_STR: return !strcmp(a->str, b->str);
    case DH_JSON_ARR:
    case DH_JSON_OBJ:
        for (int i = 0; i < a->n; i++)
            if (!same(&a->kid[i], &b->kid[i])) return 0;
        return 1;
    default: return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dh_err e;
    dh_json *v = NULL;
    if (dh_json_parse((const char *)data, size, &v, &e) == DH_OK) {
        FZ_CHECK(v);
        check(v, 0, 0);
        char *txt = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&txt, &n);
        if (f) {
            put(f, v);
            fclose(f);
            dh_json *w = NULL;
            int rc = dh_json_parse(txt, n, &w, &e);
            if (rc) fprintf(stderr, "fuzz_json: written back: %s\n", e.msg);
            FZ_CHECK(rc == DH_OK);
            FZ_CHECK(same(v, w));
            dh_json_free(w);
            free(txt);
        }
        dh_json_free(v);
    } else {
        FZ_CHECK(!v && e.code && e.msg[0]);
    }

    dh_map_result r;
    char *label = NULL;
    if (dh_map_read_json((const char *)data, size, &r, &label, &e) == DH_OK) {
        char *txt = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&txt, &n);
        if (f) {
            dh_map_write_table(f, &r, label ? label : "x", "note");
            dh_map_write_json(f, &r, label ? label : "x", NULL);
            fclose(f);
            free(txt);
        }
        dh_map_result_free(&r);
        free(label);
    } else {
        FZ_CHECK(!label && e.code && e.msg[0]);
    }
    return 0;
}
