/* netspec.c — parser for network specifications (see netspec.h, man/dh-net.5). */
#include "netspec.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- built-in architectures --------------------------------------------- */

static const char lenet_text[] = "# lenet: LeNet-style net for 28x28 grey images (Caffe zoo lenet plus ReLUs\n"
                                 "# after the pooling layers), z = 500\n"
                                 "input 1 28 28\n"
                                 "conv 20 k5          # 20x24x24\n"
                                 "maxpool k2 s2       # 20x12x12\n"
                                 "relu\n"
                                 "conv 50 k5          # 50x8x8\n"
                                 "maxpool k2 s2       # 50x4x4\n"
                                 "relu\n"
                                 "fc 500 name=z\n"
                                 "relu\n"
                                 "feature z           # 500 units\n";

static const char cifar_text[] = "# cifar: Caffe-zoo cifar10_full-style net (LRN left out), z = 1024\n"
                                 "input 3 32 32\n"
                                 "conv 32 k5 p2       # 32x32x32\n"
                                 "maxpool k3 s2 p1    # 32x16x16\n"
                                 "relu\n"
                                 "conv 32 k5 p2\n"
                                 "relu\n"
                                 "avgpool k3 s2 p1    # 32x8x8\n"
                                 "conv 64 k5 p2\n"
                                 "relu\n"
                                 "avgpool k3 s2 p1    # 64x4x4\n"
                                 "fc 1024 name=z\n"
                                 "relu\n"
                                 "feature z           # 1024 units\n";

static const char fast_text[] = "# fast: ResNet-9-style BN net (fast CIFAR-10 training records), z = 512\n"
                                "input 3 32 32\n"
                                "conv 64 k3 p1 nobias name=prep\n"
                                "bn\n"
                                "relu\n"
                                "conv 128 k3 p1 nobias\n"
                                "maxpool k2          # 128x16x16\n"
                                "bn\n"
                                "relu\n"
                                "res\n"
                                "  conv 128 k3 p1 nobias\n"
                                "  bn\n"
                                "  relu\n"
                                "  conv 128 k3 p1 nobias\n"
                                "  bn\n"
                                "  relu\n"
                                "end\n"
                                "conv 256 k3 p1 nobias\n"
                                "maxpool k2          # 256x8x8\n"
                                "bn\n"
                                "relu\n"
                                "conv 512 k3 p1 nobias\n"
                                "maxpool k2          # 512x4x4\n"
                                "bn\n"
                                "relu\n"
                                "res\n"
                                "  conv 512 k3 p1 nobias\n"
                                "  bn\n"
                                "  relu\n"
                                "  conv 512 k3 p1 nobias\n"
                                "  bn\n"
                                "  relu\n"
                                "end\n"
                                "maxpool k4          # 512x1x1\n"
                                "flatten\n"
                                "scale 0.125         # keeps the classifier's logits small, as in the records\n"
                                "feature             # 512 units\n";

static const char air_text[] =
    "# air: the airbench94 layout (Jordan 2024, fast CIFAR-10 training records), z = 256\n"
    "input 3 32 32\n"
    "conv 24 k2 whiten name=whiten  # 24x31x31: 2x2 patch whitening, +/- each of 12 directions\n"
    "gelu\n"
    "conv 64 k3 p1 nobias\n"
    "maxpool k2          # 64x15x15\n"
    "bn\n"
    "gelu\n"
    "conv 64 k3 p1 nobias\n"
    "bn\n"
    "gelu\n"
    "conv 256 k3 p1 nobias\n"
    "maxpool k2          # 256x7x7\n"
    "bn\n"
    "gelu\n"
    "conv 256 k3 p1 nobias\n"
    "bn\n"
    "gelu\n"
    "conv 256 k3 p1 nobias\n"
    "maxpool k2          # 256x3x3\n"
    "bn\n"
    "gelu\n"
    "conv 256 k3 p1 nobias\n"
    "bn\n"
    "gelu\n"
    "maxpool k3          # 256x1x1\n"
    "flatten\n"
    "scale 0.1111        # 1/9: the records' logit scaling\n"
    "feature             # 256 units\n";

static const struct {
    const char *name, *text;
} builtins[] = {
    { "lenet", lenet_text },
    { "cifar", cifar_text },
    { "fast", fast_text },
    { "air", air_text },
};

const char *netspec_builtin_text(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(name, builtins[i].name) == 0) return builtins[i].text;
    return NULL;
}
const char *netspec_builtin_names(void) { return "lenet cifar fast air"; }

int netspec_builtin(const char *name, netspec *ns, dh_err *e) {
    const char *t = netspec_builtin_text(name);
    if (!t) return dh_seterr(e, DH_EINVAL, "unknown architecture '%s' (known: %s)", name, netspec_builtin_names());
    return netspec_parse(t, name, ns, e);
}

const char *ns_type_name(ns_type t) {
    switch (t) {
    case NS_CONV: return "conv";
    case NS_FC: return "fc";
    case NS_BN: return "bn";
    case NS_RELU: return "relu";
    case NS_GELU: return "gelu";
    case NS_MAXPOOL: return "maxpool";
    case NS_AVGPOOL: return "avgpool";
    case NS_GAP: return "gap";
    case NS_DROPOUT: return "dropout";
    case NS_FLATTEN: return "flatten";
    case NS_SCALE: return "scale";
    case NS_RES: return "res";
    case NS_END: return "end";
    }
    return "?";
}

void netspec_free(netspec *ns) {
    if (!ns) return;
    free(ns->layers);
    free(ns->text);
    memset(ns, 0, sizeof *ns);
}

int64_t netspec_nparams(const netspec *ns) {
    int64_t n = 0;
    for (int i = 0; i < ns->nlayers; i++) {
        const ns_layer *l = &ns->layers[i];
        int64_t cin = l->in[0], fin = (int64_t)l->in[0] * l->in[1] * l->in[2];
        if (l->type == NS_CONV)
            n += (int64_t)l->out * cin * l->k * l->k + (l->bias ? l->out : 0);
        else if (l->type == NS_FC)
            n += (int64_t)l->out * fin + (l->bias ? l->out : 0);
        else if (l->type == NS_BN)
            n += 2 * cin;
    }
    return n;
}

/* ---- parsing -------------------------------------------------------------- */

#define MAX_WORDS 16
#define MAX_ELEMS (1LL << 26) /* elements per image at any layer */

typedef struct {
    const char *fname;
    int line;
    dh_err *e;
} pctx;

static int perr(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(pctx *c, const char *fmt, ...) {
    char buf[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return dh_seterr(c->e, DH_EFORMAT, "%s:%d: %s", c->fname, c->line, buf);
}

/* Whole-word integer in [lo,hi]. */
static int word_int(pctx *c, const char *what, const char *w, int lo, int hi, int *out) {
    if (dh_parse_int(w, lo, hi, out) != 0)
        return perr(c, "bad number '%s' for %s (expected an integer from %d to %d)", w, what, lo, hi);
    return 0;
}

/* Options kN sN pN nobias whiten name=X; `allowed` is a string of letters from "kspbwn". */
typedef struct {
    int k, s, p, bias, whiten, has_k, has_s, has_p;
    char name[NS_NAME_MAX];
} opts;

static int parse_opts(pctx *c, const char *stmt, char **w, int nw, const char *allowed, opts *o) {
    for (int i = 0; i < nw; i++) {
        const char *a = w[i];
        if ((a[0] == 'k' || a[0] == 's' || a[0] == 'p') && isdigit((unsigned char)a[1]) && strchr(allowed, a[0])) {
            int v;
            if (a[0] == 'k') {
                if (word_int(c, "kernel size", a + 1, 1, 64, &v)) return -1;
                o->k = v;
                o->has_k = 1;
            }
            if (a[0] == 's') {
                if (word_int(c, "stride", a + 1, 1, 64, &v)) return -1;
                o->s = v;
                o->has_s = 1;
            }
            if (a[0] == 'p') {
                if (word_int(c, "padding", a + 1, 0, 64, &v)) return -1;
                o->p = v;
                o->has_p = 1;
            }
        } else if (strcmp(a, "nobias") == 0 && strchr(allowed, 'b')) {
            o->bias = 0;
        } else if (strcmp(a, "whiten") == 0 && strchr(allowed, 'w')) {
            o->whiten = 1;
        } else if (strncmp(a, "name=", 5) == 0 && strchr(allowed, 'n')) {
            const char *n = a + 5;
            size_t len = strlen(n);
            if (len == 0 || len >= NS_NAME_MAX) return perr(c, "bad layer name '%s'", n);
            if (!isalpha((unsigned char)n[0])) return perr(c, "layer name '%s' must start with a letter", n);
            for (size_t j = 0; j < len; j++)
                if (!isalnum((unsigned char)n[j]) && n[j] != '_' && n[j] != '-')
                    return perr(c, "layer name '%s': only letters, digits, '_' and '-' allowed", n);
            memcpy(o->name, n, len + 1);
        } else {
            return perr(c, "%s: unexpected '%s'", stmt, a);
        }
    }
    return 0;
}

static int out_size(pctx *c, const char *stmt, int in, int k, int s, int p, int *out) {
    if (in + 2 * p < k)
        return perr(c, "%s: kernel %d larger than the padded input %d (input %d, padding %d)", stmt, k, in + 2 * p, in,
                    p);
    *out = (in + 2 * p - k) / s + 1;
    return 0;
}

int netspec_parse(const char *text, const char *fname, netspec *ns, dh_err *e) {
    memset(ns, 0, sizeof *ns);
    pctx c = { fname ? fname : "<spec>", 0, e };
    ns->layers = dh_calloc(e, NS_MAX_LAYERS, sizeof *ns->layers);
    ns->text = dh_strdup(e, text);
    if (!ns->layers || !ns->text) {
        netspec_free(ns);
        return DH_ENOMEM;
    }

    int have_input = 0, have_feature = 0;
    int cur[3] = { 0, 0, 0 };
    int stack[NS_MAX_DEPTH], depth = 0;
    int count[NS_END + 1] = { 0 };
    int last_param = -1; /* index of the last layer with parameters */
    char line[1024];
    const char *p = text;
    int rc = DH_OK;

    while (*p) {
        c.line++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= sizeof line) {
            rc = perr(&c, "line too long");
            goto fail;
        }
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (nl ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *w[MAX_WORDS];
        int nw = 0;
        for (char *tok = strtok(line, " \t\r"); tok; tok = strtok(NULL, " \t\r")) {
            if (nw == MAX_WORDS) {
                rc = perr(&c, "too many words");
                goto fail;
            }
            w[nw++] = tok;
        }
        if (nw == 0) continue;
        const char *stmt = w[0];

        if (have_feature) {
            rc = perr(&c, "'%s' after 'feature' (feature must be the last statement)", stmt);
            goto fail;
        }
        if (strcmp(stmt, "input") == 0) {
            if (have_input) {
                rc = perr(&c, "second 'input'");
                goto fail;
            }
            if (nw != 4) {
                rc = perr(&c, "input: expected 'input C H W'");
                goto fail;
            }
            if (word_int(&c, "input channels", w[1], 1, 1024, &ns->in[0]) ||
                word_int(&c, "input height", w[2], 1, 8192, &ns->in[1]) ||
                word_int(&c, "input width", w[3], 1, 8192, &ns->in[2])) {
                rc = DH_EFORMAT;
                goto fail;
            }
            if ((int64_t)ns->in[0] * ns->in[1] * ns->in[2] > MAX_ELEMS) {
                rc = perr(&c, "input: image too large");
                goto fail;
            }
            memcpy(cur, ns->in, sizeof cur);
            have_input = 1;
            continue;
        }
        if (!have_input) {
            rc = perr(&c, "'%s' before 'input' (the first statement must be 'input C H W')", stmt);
            goto fail;
        }

        if (strcmp(stmt, "feature") == 0) {
            if (nw > 2) {
                rc = perr(&c, "feature: expected 'feature [NAME]'");
                goto fail;
            }
            if (ns->nlayers == 0) {
                rc = perr(&c, "feature: no layers before it");
                goto fail;
            }
            if (depth > 0) {
                rc = perr(&c, "feature inside a 'res' block (missing 'end')");
                goto fail;
            }
            if (nw == 2) {
                int found = -1;
                for (int i = 0; i < ns->nlayers; i++)
                    if (strcmp(ns->layers[i].name, w[1]) == 0) found = i;
                if (found < 0) {
                    rc = perr(&c, "feature: no layer named '%s'", w[1]);
                    goto fail;
                }
                if (found != last_param) {
                    rc = perr(&c, "feature: '%s' is not the last layer with parameters ('%s' is)", w[1],
                              ns->layers[last_param].name);
                    goto fail;
                }
                snprintf(ns->zname, sizeof ns->zname, "%s", w[1]);
            } else {
                snprintf(ns->zname, sizeof ns->zname, "z");
            }
            ns->zdim = cur[0] * cur[1] * cur[2];
            have_feature = 1;
            continue;
        }

        if (ns->nlayers == NS_MAX_LAYERS) {
            rc = perr(&c, "too many layers (at most %d)", NS_MAX_LAYERS);
            goto fail;
        }
        ns_layer *l = &ns->layers[ns->nlayers];
        memset(l, 0, sizeof *l);
        l->line = c.line;
        l->bias = 1;
        l->match = -1;
        memcpy(l->in, cur, sizeof cur);
        opts o = { .k = 0, .s = 1, .p = 0, .bias = 1 };
        int nout = 0;

        if (strcmp(stmt, "conv") == 0 || strcmp(stmt, "fc") == 0) {
            int conv = stmt[0] == 'c';
            l->type = conv ? NS_CONV : NS_FC;
            if (nw < 2) {
                rc = perr(&c, "%s: missing the number of %s", stmt, conv ? "output channels" : "units");
                goto fail;
            }
            if (word_int(&c, conv ? "output channels" : "units", w[1], 1, 1 << 16, &l->out)) {
                rc = DH_EFORMAT;
                goto fail;
            }
            if (parse_opts(&c, stmt, w + 2, nw - 2, conv ? "kspbwn" : "bn", &o)) {
                rc = DH_EFORMAT;
                goto fail;
            }
            l->bias = o.bias;
            if (conv) {
                if (!o.has_k) {
                    rc = perr(&c, "conv: missing kernel size (e.g. k3)");
                    goto fail;
                }
                l->k = o.k;
                l->s = o.s;
                l->p = o.p;
                if (o.whiten && (ns->nlayers > 0 || l->out % 2 || l->out > 2 * cur[0] * l->k * l->k)) {
                    rc = perr(&c,
                              "conv: whiten needs the first layer and an even number of outputs up to 2 x %d "
                              "(twice the %dx%dx%d patch size)",
                              cur[0] * l->k * l->k, cur[0], l->k, l->k);
                    goto fail;
                }
                l->whiten = o.whiten;
                int oh = 0, ow = 0;
                if (out_size(&c, stmt, cur[1], l->k, l->s, l->p, &oh) ||
                    out_size(&c, stmt, cur[2], l->k, l->s, l->p, &ow)) {
                    rc = DH_EFORMAT;
                    goto fail;
                }
                cur[0] = l->out;
                cur[1] = oh;
                cur[2] = ow;
            } else {
                cur[0] = l->out;
                cur[1] = 1;
                cur[2] = 1;
            }
            nout = 1;
        } else if (strcmp(stmt, "bn") == 0) {
            l->type = NS_BN;
            if (parse_opts(&c, stmt, w + 1, nw - 1, "n", &o)) {
                rc = DH_EFORMAT;
                goto fail;
            }
            nout = 1;
        } else if (strcmp(stmt, "relu") == 0 || strcmp(stmt, "gelu") == 0 || strcmp(stmt, "gap") == 0 ||
                   strcmp(stmt, "flatten") == 0) {
            l->type = stmt[0] == 'r'                     ? NS_RELU
                      : stmt[0] == 'g' && stmt[1] == 'e' ? NS_GELU
                      : stmt[0] == 'g'                   ? NS_GAP
                                                         : NS_FLATTEN;
            if (nw != 1) {
                rc = perr(&c, "%s: unexpected '%s'", stmt, w[1]);
                goto fail;
            }
            if (l->type == NS_GAP) {
                cur[1] = 1;
                cur[2] = 1;
            }
            if (l->type == NS_FLATTEN) {
                cur[0] = cur[0] * cur[1] * cur[2];
                cur[1] = 1;
                cur[2] = 1;
            }
        } else if (strcmp(stmt, "maxpool") == 0 || strcmp(stmt, "avgpool") == 0) {
            l->type = stmt[0] == 'm' ? NS_MAXPOOL : NS_AVGPOOL;
            if (parse_opts(&c, stmt, w + 1, nw - 1, "ksp", &o)) {
                rc = DH_EFORMAT;
                goto fail;
            }
            if (!o.has_k) {
                rc = perr(&c, "%s: missing kernel size (e.g. k2)", stmt);
                goto fail;
            }
            l->k = o.k;
            l->s = o.has_s ? o.s : o.k;
            l->p = o.p;
            if (2 * l->p > l->k) {
                rc = perr(&c, "%s: padding %d more than half the kernel %d", stmt, l->p, l->k);
                goto fail;
            }
            int oh = 0, ow = 0;
            if (out_size(&c, stmt, cur[1], l->k, l->s, l->p, &oh) ||
                out_size(&c, stmt, cur[2], l->k, l->s, l->p, &ow)) {
                rc = DH_EFORMAT;
                goto fail;
            }
            cur[1] = oh;
            cur[2] = ow;
        } else if (strcmp(stmt, "dropout") == 0 || strcmp(stmt, "scale") == 0) {
            int drop = stmt[0] == 'd';
            l->type = drop ? NS_DROPOUT : NS_SCALE;
            if (nw != 2) {
                rc = perr(&c, "%s: expected '%s %s'", stmt, stmt, drop ? "P" : "F");
                goto fail;
            }
            double v;
            if (drop ? dh_parse_double(w[1], 0.0, 0.999, &v) : dh_parse_double(w[1], -1e6, 1e6, &v)) {
                rc = perr(&c, drop ? "bad number '%s' for dropout (expected 0 <= P < 1)" : "bad number '%s' for scale",
                          w[1]);
                goto fail;
            }
            l->f = (float)v;
        } else if (strcmp(stmt, "res") == 0) {
            l->type = NS_RES;
            if (nw != 1) {
                rc = perr(&c, "res: unexpected '%s'", w[1]);
                goto fail;
            }
            if (depth == NS_MAX_DEPTH) {
                rc = perr(&c, "res blocks nested too deep");
                goto fail;
            }
            stack[depth++] = ns->nlayers;
        } else if (strcmp(stmt, "end") == 0) {
            l->type = NS_END;
            if (nw != 1) {
                rc = perr(&c, "end: unexpected '%s'", w[1]);
                goto fail;
            }
            if (depth == 0) {
                rc = perr(&c, "'end' without 'res'");
                goto fail;
            }
            int b = stack[--depth];
            ns_layer *r = &ns->layers[b];
            if (b == ns->nlayers - 1) {
                rc = perr(&c, "empty res block");
                goto fail;
            }
            if (memcmp(r->in, cur, sizeof cur) != 0) {
                rc = perr(&c,
                          "res block (line %d) changes the shape %dx%dx%d to %dx%dx%d; "
                          "a residual needs them equal",
                          r->line, r->in[0], r->in[1], r->in[2], cur[0], cur[1], cur[2]);
                goto fail;
            }
            r->match = ns->nlayers;
            l->match = b;
        } else {
            rc = perr(&c, "unknown statement '%s'", stmt);
            goto fail;
        }

        if (nout) {
            count[l->type]++;
            if (o.name[0])
                snprintf(l->name, sizeof l->name, "%s", o.name);
            else
                snprintf(l->name, sizeof l->name, "%s%d", ns_type_name(l->type), count[l->type]);
            if (strcmp(l->name, "head") == 0) {
                rc = perr(&c, "the name 'head' is reserved for the classifier");
                goto fail;
            }
            for (int i = 0; i < ns->nlayers; i++)
                if (strcmp(ns->layers[i].name, l->name) == 0) {
                    rc = perr(&c, "duplicate layer name '%s' (line %d)", l->name, ns->layers[i].line);
                    goto fail;
                }
            last_param = ns->nlayers;
        }
        if ((int64_t)cur[0] * cur[1] * cur[2] > MAX_ELEMS) {
            rc = perr(&c, "%s: output too large", stmt);
            goto fail;
        }
        memcpy(l->shape, cur, sizeof cur);
        ns->nlayers++;
    }
    c.line++;
    if (!have_input) {
        rc = perr(&c, "no 'input' statement");
        goto fail;
    }
    if (depth > 0) {
        c.line = ns->layers[stack[depth - 1]].line;
        rc = perr(&c, "'res' without 'end'");
        goto fail;
    }
    if (!have_feature) {
        rc = perr(&c, "no 'feature' statement (which output is z?)");
        goto fail;
    }
    return DH_OK;
fail:
    netspec_free(ns);
    return rc ? rc : DH_EFORMAT;
}

int netspec_load(const char *path, netspec *ns, dh_err *e) {
    memset(ns, 0, sizeof *ns);
    FILE *f = fopen(path, "rb");
    if (!f) return dh_seterr(e, DH_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = dh_malloc(e, cap, 1);
    if (!buf) {
        fclose(f);
        return DH_ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= (1u << 20)) {
                free(buf);
                fclose(f);
                return dh_seterr(e, DH_ELIMIT, "%s: larger than 1 MiB: not a network specification", path);
            }
            char *nb = dh_realloc(e, buf, cap * 2, 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return DH_ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return dh_seterr(e, DH_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        return dh_seterr(e, DH_EFORMAT, "%s: contains NUL bytes: not a network specification", path);
    }
    int rc = netspec_parse(buf, path, ns, e);
    free(buf);
    return rc;
}
