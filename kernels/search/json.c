/* json.c — a small JSON reader (see json.h): recursive descent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

#define MAX_DEPTH 256
/* Values in one document: a dh-map result has a few thousand; the bound
 * keeps a 64 MiB input of "[0,0,0,..." (33M values, about 2 GB of tree)
 * out. */
#define MAX_VALUES (1 << 22)

typedef struct jp {
    const char *s, *end, *p;
    dh_err *e;
    int rc;
    long nvalues;
} jp;

static int fail(jp *j, const char *why) {
    if (j->rc) return j->rc;
    int line = 1, col = 1;
    for (const char *q = j->s; q < j->p && q < j->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else
            col++;
    }
    j->rc = dh_seterr(j->e, DH_EFORMAT, "line %d, column %d: %s", line, col, why);
    return j->rc;
}

static int oom(jp *j) {
    if (!j->rc) j->rc = dh_seterr(j->e, DH_ENOMEM, "out of memory");
    return j->rc;
}

static void ws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(jp *j, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++, j->p++) {
        if (j->p >= j->end) return fail(j, "unterminated \\u escape");
        char c = *j->p;
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15) return fail(j, "bad \\u escape");
        *v = *v * 16 + d;
    }
    return 0;
}

static size_t utf8(unsigned c, char *o) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | (c >> 6 & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | (c >> 12 & 0x3f));
    o[2] = (char)(0x80 | (c >> 6 & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* A string at j->p (the opening quote): decoded into a new buffer. */
static char *string(jp *j) {
    j->p++; /* " */
    const char *q = j->p;
    while (q < j->end && *q != '"') q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
    if (q >= j->end) {
        fail(j, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(q - j->p) + 1), *o = out; /* decoding never lengthens */
    if (!out) {
        oom(j);
        return NULL;
    }
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) {
            fail(j, "control character in a string");
            break;
        }
        if (c != '\\') {
            *o++ = (char)c;
            j->p++;
            continue;
        }
        j->p++;
        static const char names[] = "\"\\/bfnrt", chars[] = "\"\\/\b\f\n\r\t";
        char x = *j->p++;
        const char *esc = x ? strchr(names, x) : NULL;
        if (esc) {
            *o++ = chars[esc - names];
            continue;
        }
        if (x != 'u') {
            j->p--;
            fail(j, "bad escape in a string");
            break;
        }
        unsigned u, lo;
        if (hex4(j, &u)) break;
        if (u >= 0xd800 && u < 0xdc00) { /* a high surrogate: its low one must follow */
            if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') {
                fail(j, "lone surrogate in a \\u escape");
                break;
            }
            j->p += 2;
            if (hex4(j, &lo)) break;
            if (lo < 0xdc00 || lo > 0xdfff) {
                fail(j, "bad surrogate pair in a \\u escape");
                break;
            }
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            fail(j, "lone surrogate in a \\u escape");
            break;
        }
        if (u == 0) {
            fail(j, "NUL character in a string");
            break;
        }
        o += utf8(u, o);
    }
    if (j->rc) {
        free(out);
        return NULL;
    }
    *o = 0;
    j->p++; /* " */
    return out;
}

static int number(jp *j, double *v) {
    const char *q = j->p;
    if (q < j->end && *q == '-') q++;
    if (q >= j->end || *q < '0' || *q > '9') return fail(j, "bad number");
    if (*q == '0')
        q++;
    else
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    if (q < j->end && *q == '.') {
        q++;
        if (q >= j->end || *q < '0' || *q > '9') return fail(j, "bad number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q >= j->end || *q < '0' || *q > '9') return fail(j, "bad number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    char buf[64];
    size_t n = (size_t)(q - j->p);
    if (n >= sizeof buf) return fail(j, "number too long");
    memcpy(buf, j->p, n);
    buf[n] = 0;
    *v = strtod(buf, NULL);
    j->p = q;
    return 0;
}

static int value(jp *j, dh_json *v, int depth);

static int push(jp *j, dh_json *v, int *cap) {
    if (v->n == *cap) {
        int nc = *cap ? 2 * *cap : 4;
        dh_json *k = realloc(v->kid, (size_t)nc * sizeof *k);
        if (!k) return oom(j);
        v->kid = k;
        *cap = nc;
    }
    memset(&v->kid[v->n], 0, sizeof *v->kid);
    v->n++;
    return 0;
}

static int container(jp *j, dh_json *v, int depth) {
    int obj = *j->p == '{', cap = 0;
    char close = obj ? '}' : ']';
    v->type = obj ? DH_JSON_OBJ : DH_JSON_ARR;
    if (depth >= MAX_DEPTH) return fail(j, "nested too deeply");
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (push(j, v, &cap)) return j->rc;
        dh_json *k = &v->kid[v->n - 1];
        if (obj) {
            if (j->p >= j->end || *j->p != '"') return fail(j, "expected a member name");
            if (!(k->key = string(j))) return j->rc;
            ws(j);
            if (j->p >= j->end || *j->p != ':') return fail(j, "expected ':'");
            j->p++;
            ws(j);
        }
        if (value(j, k, depth + 1)) return j->rc;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return fail(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int word(jp *j, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0) return fail(j, "unexpected character");
    j->p += n;
    return 0;
}

static int value(jp *j, dh_json *v, int depth) {
    if (j->p >= j->end) return fail(j, "unexpected end of input");
    if (++j->nvalues > MAX_VALUES) {
        if (!j->rc) j->rc = dh_seterr(j->e, DH_ELIMIT, "more than %d values (the reader's limit)", MAX_VALUES);
        return j->rc;
    }
    switch (*j->p) {
    case '{':
    case '[': return container(j, v, depth);
    case '"': v->type = DH_JSON_STR; return (v->str = string(j)) ? 0 : j->rc;
    case 't':
        v->type = DH_JSON_BOOL;
        v->b = 1;
        return word(j, "true");
    case 'f': v->type = DH_JSON_BOOL; return word(j, "false");
    case 'n': v->type = DH_JSON_NULL; return word(j, "null");
    default:
        if (*j->p != '-' && (*j->p < '0' || *j->p > '9')) return fail(j, "unexpected character");
        v->type = DH_JSON_NUM;
        return number(j, &v->num);
    }
}

static void clear(dh_json *v) {
    for (int i = 0; i < v->n; i++) clear(&v->kid[i]);
    free(v->kid);
    free(v->str);
    free(v->key);
}

void dh_json_write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void dh_json_free(dh_json *v) {
    if (!v) return;
    clear(v);
    free(v);
}

int dh_json_parse(const char *text, size_t len, dh_json **out, dh_err *e) {
    *out = NULL;
    jp j = { .s = text, .end = text + len, .p = text, .e = e };
    dh_json *v = calloc(1, sizeof *v);
    if (!v) return oom(&j);
    ws(&j);
    if (!value(&j, v, 0)) {
        ws(&j);
        if (j.p != j.end) fail(&j, "text after the value");
    }
    if (j.rc) {
        dh_json_free(v);
        return j.rc;
    }
    *out = v;
    return DH_OK;
}

const dh_json *dh_json_get(const dh_json *v, const char *key) {
    if (!v || v->type != DH_JSON_OBJ) return NULL;
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->kid[i].key, key)) return &v->kid[i];
    return NULL;
}

const char *dh_json_type_name(dh_json_type t) {
    static const char *const names[] = { "null", "true or false", "a number", "a string", "an array", "an object" };
    return (unsigned)t < 6 ? names[t] : "?";
}
