/* dhs_meta.c — stream metadata: an ordered map of msgpack values.
 * Internal representation shared with dhs.c through dhs_internal.h. */
#include "dhs_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dhs_meta *dhs_meta_new(void) { return calloc(1, sizeof(dhs_meta)); }

void dhs_mval_free(dhs_mval *v) {
    switch (v->t) {
    case DHS_M_STR: free(v->s); break;
    case DHS_M_ARRAY:
        for (int i = 0; i < v->n; i++) dhs_mval_free(&v->a[i]);
        free(v->a);
        break;
    case DHS_M_MAP: dhs_meta_free(v->m); break;
    default: break;
    }
    memset(v, 0, sizeof *v);
}

void dhs_meta_free(dhs_meta *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        dhs_mval_free(&m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    free(m);
}

int dhs_mval_copy(dhs_mval *dst, const dhs_mval *src) {
    *dst = *src;
    switch (src->t) {
    case DHS_M_STR:
        dst->s = malloc(src->len + 1);
        if (!dst->s) return -1;
        memcpy(dst->s, src->s, src->len + 1);
        break;
    case DHS_M_ARRAY:
        dst->a = calloc(src->n ? src->n : 1, sizeof *dst->a);
        if (!dst->a) return -1;
        for (int i = 0; i < src->n; i++)
            if (dhs_mval_copy(&dst->a[i], &src->a[i])) {
                dst->n = i;
                return -1;
            }
        break;
    case DHS_M_MAP:
        dst->m = dhs_meta_copy(src->m);
        if (!dst->m) return -1;
        break;
    default: break;
    }
    return 0;
}

dhs_meta *dhs_meta_copy(const dhs_meta *m) {
    dhs_meta *c = dhs_meta_new();
    if (!c || !m) return c;
    for (int i = 0; i < m->n; i++) {
        dhs_mval v;
        if (dhs_mval_copy(&v, &m->vals[i]) || dhs_meta_append(c, m->keys[i], &v)) { /* keys of m are unique */
            dhs_meta_free(c);
            return NULL;
        }
    }
    return c;
}

static int find(const dhs_meta *m, const char *key) {
    if (!m) return -1;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], key)) return i;
    return -1;
}

/* Take ownership of *v under key (replacing an old value). */
int dhs_meta_put(dhs_meta *m, const char *key, dhs_mval *v) {
    int i = find(m, key);
    if (i >= 0) {
        dhs_mval_free(&m->vals[i]);
        m->vals[i] = *v;
        return 0;
    }
    return dhs_meta_append(m, key, v);
}

int dhs_meta_append(dhs_meta *m, const char *key, dhs_mval *v) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 8;
        char **k = realloc(m->keys, cap * sizeof *k);
        if (!k) return -1;
        m->keys = k;
        dhs_mval *vv = realloc(m->vals, cap * sizeof *vv);
        if (!vv) return -1;
        m->vals = vv;
        m->cap = cap;
    }
    m->keys[m->n] = strdup(key);
    if (!m->keys[m->n]) return -1;
    m->vals[m->n++] = *v;
    return 0;
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int dhs_meta_duplicate(const dhs_meta *m, const char **dup) {
    *dup = NULL;
    if (m->n <= 8) { /* the usual small maps */
        for (int i = 1; i < m->n; i++)
            for (int j = 0; j < i; j++)
                if (!strcmp(m->keys[i], m->keys[j])) return *dup = m->keys[i], 1;
        return 0;
    }
    char **k = malloc((size_t)m->n * sizeof *k);
    if (!k) return -1;
    memcpy(k, m->keys, (size_t)m->n * sizeof *k);
    qsort(k, (size_t)m->n, sizeof *k, cmp_key);
    for (int i = 1; i < m->n && !*dup; i++)
        if (!strcmp(k[i - 1], k[i])) *dup = k[i];
    free(k);
    return *dup != NULL;
}

static int put_str(dhs_mval *v, const char *s) {
    v->t = DHS_M_STR;
    v->len = (uint32_t)strlen(s);
    v->s = strdup(s);
    return v->s ? 0 : -1;
}

int dhs_meta_set_str(dhs_meta *m, const char *key, const char *s) {
    dhs_mval v = { 0 };
    if (put_str(&v, s ? s : "")) return -1;
    if (dhs_meta_put(m, key, &v)) {
        dhs_mval_free(&v);
        return -1;
    }
    return 0;
}
int dhs_meta_set_int(dhs_meta *m, const char *key, int64_t x) {
    dhs_mval v = { .t = DHS_M_INT, .i = x };
    return dhs_meta_put(m, key, &v);
}
int dhs_meta_set_float(dhs_meta *m, const char *key, double x) {
    dhs_mval v = { .t = DHS_M_FLOAT, .f = x };
    return dhs_meta_put(m, key, &v);
}
int dhs_meta_set_bool(dhs_meta *m, const char *key, int x) {
    dhs_mval v = { .t = DHS_M_BOOL, .b = !!x };
    return dhs_meta_put(m, key, &v);
}
static int set_array(dhs_meta *m, const char *key, int n, int kind, const void *src) {
    dhs_mval v = { .t = DHS_M_ARRAY, .n = n };
    v.a = calloc(n ? n : 1, sizeof *v.a);
    if (!v.a) return -1;
    for (int i = 0; i < n; i++) {
        if (kind == 0) {
            if (put_str(&v.a[i], ((const char *const *)src)[i])) goto fail;
        } else if (kind == 1) {
            v.a[i].t = DHS_M_INT;
            v.a[i].i = ((const int64_t *)src)[i];
        } else {
            v.a[i].t = DHS_M_FLOAT;
            v.a[i].f = ((const double *)src)[i];
        }
    }
    if (dhs_meta_put(m, key, &v)) goto fail;
    return 0;
fail:
    dhs_mval_free(&v);
    return -1;
}
int dhs_meta_set_strv(dhs_meta *m, const char *key, const char *const *v, int n) { return set_array(m, key, n, 0, v); }
int dhs_meta_set_intv(dhs_meta *m, const char *key, const int64_t *v, int n) { return set_array(m, key, n, 1, v); }
int dhs_meta_set_floatv(dhs_meta *m, const char *key, const double *v, int n) { return set_array(m, key, n, 2, v); }
int dhs_meta_set_map(dhs_meta *m, const char *key, const dhs_meta *sub) {
    dhs_mval v = { .t = DHS_M_MAP, .m = dhs_meta_copy(sub) };
    if (!v.m) return -1;
    if (dhs_meta_put(m, key, &v)) {
        dhs_meta_free(v.m);
        return -1;
    }
    return 0;
}
int dhs_meta_del(dhs_meta *m, const char *key) {
    int i = find(m, key);
    if (i < 0) return -1;
    free(m->keys[i]);
    dhs_mval_free(&m->vals[i]);
    memmove(m->keys + i, m->keys + i + 1, (m->n - i - 1) * sizeof *m->keys);
    memmove(m->vals + i, m->vals + i + 1, (m->n - i - 1) * sizeof *m->vals);
    m->n--;
    return 0;
}

static const dhs_mval *get(const dhs_meta *m, const char *key) {
    int i = find(m, key);
    return i < 0 ? NULL : &m->vals[i];
}
int dhs_meta_has(const dhs_meta *m, const char *key) { return find(m, key) >= 0; }
dhs_mtype dhs_meta_type(const dhs_meta *m, const char *key) {
    const dhs_mval *v = get(m, key);
    return v ? v->t : DHS_M_NIL;
}
const char *dhs_meta_str(const dhs_meta *m, const char *key) {
    const dhs_mval *v = get(m, key);
    return v && v->t == DHS_M_STR ? v->s : NULL;
}
static int as_int(const dhs_mval *v, int64_t *out) {
    if (!v || v->t != DHS_M_INT) return -1;
    *out = v->i;
    return 0;
}
static int as_float(const dhs_mval *v, double *out) {
    if (!v) return -1;
    if (v->t == DHS_M_FLOAT) {
        *out = v->f;
        return 0;
    }
    if (v->t == DHS_M_INT) {
        *out = (double)v->i;
        return 0;
    }
    return -1;
}
int dhs_meta_int(const dhs_meta *m, const char *key, int64_t *out) { return as_int(get(m, key), out); }
int dhs_meta_float(const dhs_meta *m, const char *key, double *out) { return as_float(get(m, key), out); }
int dhs_meta_bool(const dhs_meta *m, const char *key, int *out) {
    const dhs_mval *v = get(m, key);
    if (!v || v->t != DHS_M_BOOL) return -1;
    *out = v->b;
    return 0;
}
int dhs_meta_len(const dhs_meta *m, const char *key) {
    const dhs_mval *v = get(m, key);
    return v && v->t == DHS_M_ARRAY ? v->n : -1;
}
static const dhs_mval *at(const dhs_meta *m, const char *key, int i) {
    const dhs_mval *v = get(m, key);
    if (!v || v->t != DHS_M_ARRAY || i < 0 || i >= v->n) return NULL;
    return &v->a[i];
}
const char *dhs_meta_str_at(const dhs_meta *m, const char *key, int i) {
    const dhs_mval *v = at(m, key, i);
    return v && v->t == DHS_M_STR ? v->s : NULL;
}
int dhs_meta_int_at(const dhs_meta *m, const char *key, int i, int64_t *out) { return as_int(at(m, key, i), out); }
int dhs_meta_float_at(const dhs_meta *m, const char *key, int i, double *out) { return as_float(at(m, key, i), out); }
const dhs_meta *dhs_meta_map(const dhs_meta *m, const char *key) {
    const dhs_mval *v = get(m, key);
    return v && v->t == DHS_M_MAP ? v->m : NULL;
}
int dhs_meta_count(const dhs_meta *m) { return m ? m->n : 0; }
const char *dhs_meta_key(const dhs_meta *m, int i) { return m && i >= 0 && i < m->n ? m->keys[i] : NULL; }

/* ---- JSON ---------------------------------------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
    int bad;
} sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->bad = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_jstr(sbuf *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_puts(b, e);
        } else
            sb_put(b, (const char *)&s[i], 1);
    }
    sb_puts(b, "\"");
}
static void json_meta(sbuf *b, const dhs_meta *m);
static void json_val(sbuf *b, const dhs_mval *v) {
    char t[64];
    switch (v->t) {
    case DHS_M_NIL: sb_puts(b, "null"); break;
    case DHS_M_BOOL: sb_puts(b, v->b ? "true" : "false"); break;
    case DHS_M_INT:
        snprintf(t, sizeof t, "%lld", (long long)v->i);
        sb_puts(b, t);
        break;
    case DHS_M_FLOAT:
        snprintf(t, sizeof t, "%.17g", v->f);
        sb_puts(b, t);
        break;
    case DHS_M_STR: sb_jstr(b, v->s, v->len); break;
    case DHS_M_ARRAY:
        sb_puts(b, "[");
        for (int i = 0; i < v->n; i++) {
            if (i) sb_puts(b, ", ");
            json_val(b, &v->a[i]);
        }
        sb_puts(b, "]");
        break;
    case DHS_M_MAP: json_meta(b, v->m); break;
    }
}
static void json_meta(sbuf *b, const dhs_meta *m) {
    sb_puts(b, "{");
    for (int i = 0; m && i < m->n; i++) {
        if (i) sb_puts(b, ", ");
        sb_jstr(b, m->keys[i], strlen(m->keys[i]));
        sb_puts(b, ": ");
        json_val(b, &m->vals[i]);
    }
    sb_puts(b, "}");
}
char *dhs_meta_to_json(const dhs_meta *m) {
    sbuf b = { 0 };
    json_meta(&b, m);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
