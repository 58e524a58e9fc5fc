/* dh-map — retrieval metrics for Hamming rankings: mAP (database order and
 * tie-aware), mAP@R, precision/recall@k, precision within a Hamming radius,
 * precision-recall by radius; as a table, JSON, or a gnuplot plot.
 *
 *   dh-map [RANKINGS]                 rankings stream (stdin) + database labels
 *   dh-map --query Q --db DB          fast path from codes, no rankings
 *   dh-map --plot OUT.png A.json ...  draw saved --json results together
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <strings.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_prog.h"
#include "dhs.h"
#include "evalmap.h"
#include "hamming.h"
#include "rank.h"
#include "rank_codes.h"
#include "dk_prog.h"

static void usage(void) {
    printf("Usage: dh-map [OPTIONS] [RANKINGS]\n"
           "       dh-map --query QUERIES --db DATABASE [OPTIONS]\n"
           "       dh-map --plot FILE RESULT.json...\n"
           "Evaluate Hamming retrieval: relevant = same label; ranking = database sorted\n"
           "by Hamming distance, ties in database order.\n\n"
           "  -d, --db FILE        database codes (labels); default: the rankings' db\n"
           "  -Q, --query FILE     query codes: evaluate directly (fast path)\n"
           "  -R, --at R           mAP@R cut-off (default 1000; 0: none)\n"
           "  -k, --k LIST         precision/recall@k cut-offs (default 1,10,100,1000)\n"
           "  -r, --radius N       precision within Hamming radius N (default 2)\n"
           "      --json           JSON on stdout instead of the table\n"
           "      --plot FILE      draw PR and P@k curves (FILE.png or FILE.svg, gnuplot)\n"
           "      --title TEXT     name of this result in plots and JSON\n"
           "      --device D       cpu, cuda or auto for the fast path (default $DH_DEVICE, else auto)\n"
           "  -j, --threads N      CPU threads (default: all cores, or $DH_THREADS)\n"
           "      --progress       show progress even when stderr is not a terminal\n"
           "  -q, --quiet          no notes on stderr\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "A query with no relevant item has AP 0 and counts in the mean. See dh-map(1).\n");
    exit(DH_EXIT_OK);
}

/* ---- one result series (for output and plots) ------------------------------------ */
typedef struct series {
    char label[512];
    int pr_n;
    double *pr_p, *pr_r;
    int nk;
    int64_t ks[DH_MAP_MAX_K];
    double pk[DH_MAP_MAX_K];
    int have_k[DH_MAP_MAX_K];
} series;

static void print_num(FILE *f, int have, double v) {
    if (have)
        fprintf(f, "%.6f", v);
    else
        fputs("null", f);
}

static void json_str(FILE *f, const char *s) {
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

static void write_json(FILE *f, const dh_map_result *r, const char *label, const char *ties_note) {
    fprintf(f, "{\n  \"program\": \"dh-map\",\n  \"label\": ");
    json_str(f, label);
    fprintf(f, ",\n  \"bits\": %d,\n  \"queries\": %lld,\n  \"database\": %lld,\n", r->bits, (long long)r->nq,
            (long long)r->ndb);
    fprintf(f, "  \"relevance\": \"same label\",\n  \"ties\": \"database order (stable sort by distance)\",\n");
    fprintf(f, "  \"empty_relevant\": \"AP 0, counted in the mean\",\n  \"queries_without_relevant\": %lld,\n",
            (long long)r->nq_norel);
    fprintf(f, "  \"mAP\": ");
    print_num(f, r->have_map, r->map);
    fprintf(f, ",\n  \"mAP_tie_aware\": ");
    print_num(f, r->have_map, r->map_tie);
    fprintf(f, ",\n  \"mAP_at_R\": {\"R\": %lld, \"value\": ", (long long)r->at_r);
    print_num(f, r->have_map_r, r->map_r);
    fprintf(f, "},\n  \"precision_at_radius\": {\"radius\": %d, \"value\": ", r->radius);
    print_num(f, r->have_prad, r->prad);
    fprintf(f, "},\n  \"precision_at_k\": [");
    for (int i = 0; i < r->nk; i++) {
        fprintf(f, "%s\n    {\"k\": %lld, \"precision\": ", i ? "," : "", (long long)r->ks[i]);
        print_num(f, r->have_k[i], r->pk[i]);
        fprintf(f, ", \"recall\": ");
        print_num(f, r->have_k[i], r->rk[i]);
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"pr_curve\": [");
    for (int d = 0; d < r->pr_n; d++)
        fprintf(f, "%s\n    {\"radius\": %d, \"precision\": %.6f, \"recall\": %.6f}", d ? "," : "", d, r->pr_p[d],
                r->pr_r[d]);
    fprintf(f, "\n  ]");
    if (ties_note) fprintf(f, ",\n  \"note\": \"%s\"", ties_note);
    fprintf(f, "\n}\n");
}

static void write_table(FILE *f, const dh_map_result *r, const char *label, const char *note) {
    fprintf(f, "dh-map: %s: %lld queries, database of %lld, %d-bit codes\n", label, (long long)r->nq, (long long)r->ndb,
            r->bits);
    fprintf(f, "relevance: same label.  ranking: Hamming distance, ties in database order.\n");
    fprintf(f, "queries without any relevant item: %lld (AP 0, counted in the means)\n", (long long)r->nq_norel);
    if (note) fprintf(f, "note: %s\n", note);
    fprintf(f, "\n");
#define ROW(name, have, v)                                                                                             \
    do {                                                                                                               \
        fprintf(f, "  %-34s ", name);                                                                                  \
        if (have)                                                                                                      \
            fprintf(f, "%.4f\n", v);                                                                                   \
        else                                                                                                           \
            fprintf(f, "n/a\n");                                                                                       \
    } while (0)
    ROW("mAP", r->have_map, r->map);
    ROW("mAP, tie-aware (random tie order)", r->have_map, r->map_tie);
    char b[64];
    if (r->at_r > 0) {
        snprintf(b, sizeof b, "mAP@%lld", (long long)r->at_r);
        ROW(b, r->have_map_r, r->map_r);
    }
    snprintf(b, sizeof b, "precision, Hamming radius <= %d", r->radius);
    ROW(b, r->have_prad, r->prad);
#undef ROW
    if (r->nk) {
        fprintf(f, "\n  %10s  %8s  %8s\n", "k", "P@k", "R@k");
        for (int i = 0; i < r->nk; i++) {
            if (r->have_k[i])
                fprintf(f, "  %10lld  %8.4f  %8.4f\n", (long long)r->ks[i], r->pk[i], r->rk[i]);
            else
                fprintf(f, "  %10lld  %8s  %8s\n", (long long)r->ks[i], "n/a", "n/a");
        }
    }
    if (r->pr_n) {
        fprintf(f, "\n  %6s  %9s  %8s   (by Hamming radius; precision 0 when nothing is that close)\n", "radius",
                "precision", "recall");
        for (int d = 0; d < r->pr_n; d++) fprintf(f, "  %6d  %9.4f  %8.4f\n", d, r->pr_p[d], r->pr_r[d]);
    }
}

/* ---- plots ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max, f) : 0;
    fclose(f);
    if (!b) return NULL;
    b[n] = 0;
    return b;
}

/* number after "key": inside [s, end); returns 1 if found (null -> *have 0) */
static int json_num(const char *s, const char *end, const char *key, double *v, int *have) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(s, k);
    if (!p || p >= end) return 0;
    p += strlen(k);
    while (*p == ' ') p++;
    if (!strncmp(p, "null", 4)) {
        *have = 0;
        *v = 0;
        return 1;
    }
    char *q;
    *v = strtod(p, &q);
    if (q == p) return 0;
    *have = 1;
    return 1;
}

/* The next {...} object of the JSON array at *a: 1 with the object in
 * [*o, *oe] and *a moved past it, 0 at the array's end, -1 for an object
 * that is not closed. */
static int json_next_obj(const char **a, const char **o, const char **oe) {
    const char *ob = strchr(*a, '{'), *ae = strchr(*a, ']');
    if (!ob || !ae || ob > ae) return 0;
    const char *e = strchr(ob, '}');
    if (!e) return -1;
    *o = ob;
    *oe = e;
    *a = e + 1;
    return 1;
}

/* Parse the arrays of a dh-map --json result. */
static int parse_result_json(const char *path, series *s) {
    memset(s, 0, sizeof *s);
    char *b = slurp(path, 16 << 20);
    if (!b) dh_die(DH_EXIT_IO, "%s: %s", path, strerror(errno));
    int ok = strstr(b, "\"program\": \"dh-map\"") != NULL;
    const char *p = strstr(b, "\"label\": \"");
    if (ok && p) {
        p += 10;
        size_t i = 0;
        while (*p && *p != '"' && i + 1 < sizeof s->label) {
            if (*p == '\\' && p[1]) p++;
            s->label[i++] = *p++;
        }
        s->label[i] = 0;
    }
    const char *a = ok ? strstr(b, "\"precision_at_k\": [") : NULL;
    if (!a) ok = 0;
    while (ok && s->nk < DH_MAP_MAX_K) {
        const char *o, *oe;
        int r = json_next_obj(&a, &o, &oe);
        if (r <= 0) {
            if (r < 0) ok = 0;
            break;
        }
        double k, pv;
        int hk, hp;
        if (!json_num(o, oe, "k", &k, &hk) || !json_num(o, oe, "precision", &pv, &hp)) {
            ok = 0;
            break;
        }
        s->ks[s->nk] = (int64_t)k;
        s->pk[s->nk] = pv;
        s->have_k[s->nk] = hp;
        s->nk++;
    }
    a = ok ? strstr(b, "\"pr_curve\": [") : NULL;
    if (!a) ok = 0;
    int cap = 0;
    while (ok) {
        const char *o, *oe;
        int r = json_next_obj(&a, &o, &oe);
        if (r <= 0) {
            if (r < 0) ok = 0;
            break;
        }
        double pv, rv;
        int h1, h2;
        if (!json_num(o, oe, "precision", &pv, &h1) || !json_num(o, oe, "recall", &rv, &h2)) {
            ok = 0;
            break;
        }
        if (s->pr_n == cap) {
            cap = cap ? 2 * cap : 64;
            s->pr_p = realloc(s->pr_p, (size_t)cap * sizeof(double));
            s->pr_r = realloc(s->pr_r, (size_t)cap * sizeof(double));
            if (!s->pr_p || !s->pr_r) dh_die(DH_EXIT_NOMEM, "out of memory");
        }
        s->pr_p[s->pr_n] = pv;
        s->pr_r[s->pr_n] = rv;
        s->pr_n++;
    }
    free(b);
    if (!ok) dh_die(DH_EXIT_FAIL, "%s: not a dh-map --json result", path);
    if (!s->label[0]) snprintf(s->label, sizeof s->label, "%s", path);
    return 0;
}

static void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Draw PR curves and P@k for the series into out (.png or .svg). */
static void draw(const char *out, const series *sv, int ns) {
    const char *ext = strrchr(out, '.');
    const char *term;
    if (ext && !strcasecmp(ext, ".png"))
        term = "pngcairo noenhanced size 1200,500 font ',10'";
    else if (ext && !strcasecmp(ext, ".svg"))
        term = "svg noenhanced size 1200,500 dynamic";
    else
        dh_usage_error("--plot %s: the name must end in .png or .svg", out);
    char dir[] = "/tmp/dh-map.XXXXXX";
    if (!mkdtemp(dir)) dh_die(DH_EXIT_IO, "temporary directory: %s", strerror(errno));
    char p[4096 + 64], tmpout[4096 + 64];
    snprintf(tmpout, sizeof tmpout, "%s.tmp%ld%s", out, (long)getpid(), ext);
    for (int i = 0; i < ns; i++) {
        snprintf(p, sizeof p, "%s/pr%d.dat", dir, i);
        FILE *f = fopen(p, "w");
        if (!f) dh_die(DH_EXIT_IO, "%s: %s", p, strerror(errno));
        for (int d = 0; d < sv[i].pr_n; d++) fprintf(f, "%.6f %.6f %d\n", sv[i].pr_r[d], sv[i].pr_p[d], d);
        fclose(f);
        snprintf(p, sizeof p, "%s/pk%d.dat", dir, i);
        f = fopen(p, "w");
        if (!f) dh_die(DH_EXIT_IO, "%s: %s", p, strerror(errno));
        for (int k = 0; k < sv[i].nk; k++)
            if (sv[i].have_k[k]) fprintf(f, "%lld %.6f\n", (long long)sv[i].ks[k], sv[i].pk[k]);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/plot.gp", dir);
    FILE *g = fopen(p, "w");
    if (!g) dh_die(DH_EXIT_IO, "%s: %s", p, strerror(errno));
    fprintf(g, "set terminal %s\nset output ", term);
    gp_str(g, tmpout);
    fprintf(g, "\nset multiplot layout 1,2\nset grid\nset key bottom left\n"
               "set title 'Precision-recall (one point per Hamming radius)'\n"
               "set xlabel 'recall'\nset ylabel 'precision'\nset xrange [0:1]\nset yrange [0:1]\nplot ");
    for (int i = 0; i < ns; i++) {
        fprintf(g, "%s'%s/pr%d.dat' using 1:2 with linespoints title ", i ? ", " : "", dir, i);
        gp_str(g, sv[i].label);
    }
    fprintf(g, "\nset title 'Precision@k'\nset xlabel 'k'\nset ylabel 'precision'\nset logscale x\n"
               "set autoscale x\nset yrange [0:1]\nplot ");
    for (int i = 0; i < ns; i++) {
        fprintf(g, "%s'%s/pk%d.dat' using 1:2 with linespoints title ", i ? ", " : "", dir, i);
        gp_str(g, sv[i].label);
    }
    fprintf(g, "\nunset multiplot\nset output\n");
    fclose(g);
    char cmd[8192 + 200];
    snprintf(cmd, sizeof cmd, "gnuplot '%s/plot.gp' > '%s/gp.err' 2>&1", dir, dir);
    int rc = system(cmd);
    char errline[512] = "";
    snprintf(p, sizeof p, "%s/gp.err", dir);
    FILE *ef = fopen(p, "r");
    if (ef) {
        char line[512];
        while (fgets(line, sizeof line, ef))
            if (line[0] != '\n' && !errline[0]) snprintf(errline, sizeof errline, "%s", line);
        fclose(ef);
    }
    errline[strcspn(errline, "\n")] = 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* leave it */
    }
    if (rc != 0 || access(tmpout, F_OK) != 0) {
        unlink(tmpout);
        if (rc == 127 * 256 || (WIFEXITED(rc) && WEXITSTATUS(rc) == 127))
            dh_die(DH_EXIT_FAIL, "--plot: gnuplot is not installed");
        dh_die(DH_EXIT_FAIL, "--plot %s: gnuplot failed%s%s", out, errline[0] ? ": " : "", errline);
    }
    if (rename(tmpout, out) != 0) {
        int er = errno;
        unlink(tmpout);
        dh_die(DH_EXIT_IO, "%s: %s", out, strerror(er));
    }
}

static void series_from_result(series *s, const dh_map_result *r, const char *label) {
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%s", label);
    s->pr_n = r->pr_n;
    s->pr_p = r->pr_p;
    s->pr_r = r->pr_r;
    s->nk = r->nk;
    for (int i = 0; i < r->nk; i++) {
        s->ks[i] = r->ks[i];
        s->pk[i] = r->pk[i];
        s->have_k[i] = r->have_k[i];
    }
}

static int is_json_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\t' || c == '\r') {}
    fclose(f);
    return c == '{';
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* number of entries equal to v in sorted array a[0..n) */
static int64_t count_eq(const int32_t *a, int64_t n, int32_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (a[m] < v)
            lo = m + 1;
        else
            hi = m;
    }
    int64_t s = lo;
    hi = n;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (a[m] <= v)
            lo = m + 1;
        else
            hi = m;
    }
    return lo - s;
}

int main(int argc, char **argv) {
    dh_prog_init("dh-map", argc, argv);
    const char *dbpath = NULL, *qpath = NULL, *plot = NULL, *title = NULL, *device = getenv("DH_DEVICE");
    int json = 0, threads = dh_rank_default_threads();
    dh_map_opts o = { .at_r = 1000, .nk = 4, .ks = { 1, 10, 100, 1000 }, .radius = 2 };
    static const struct option lo[] = { { "db", required_argument, 0, 'd' },
                                        { "query", required_argument, 0, 'Q' },
                                        { "at", required_argument, 0, 'R' },
                                        { "k", required_argument, 0, 'k' },
                                        { "radius", required_argument, 0, 'r' },
                                        { "json", no_argument, 0, 'J' },
                                        { "plot", required_argument, 0, 'p' },
                                        { "title", required_argument, 0, 'T' },
                                        { "device", required_argument, 0, 'D' },
                                        { "threads", required_argument, 0, 'j' },
                                        DH_COMMON_LONGOPTS('P') };
    int c;
    while ((c = getopt_long(argc, argv, "d:Q:R:k:r:j:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'd': dbpath = optarg; break;
        case 'Q': qpath = optarg; break;
        case 'R':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &o.at_r) != 0)
                dh_usage_error("--at: '%s' is not a number >= 0", optarg);
            break;
        case 'k': {
            o.nk = 0;
            char *s = strdup(optarg), *save = NULL;
            if (!s) dh_die(DH_EXIT_NOMEM, "out of memory");
            for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o.nk == DH_MAP_MAX_K) dh_usage_error("--k: more than %d values", DH_MAP_MAX_K);
                if (dh_parse_i64(t, 1, INT64_MAX, &o.ks[o.nk]) != 0)
                    dh_usage_error("--k: '%s' is not a positive number", t);
                o.nk++;
            }
            free(s);
            break;
        }
        case 'r':
            if (dh_parse_int(optarg, 0, DH_HAMMING_MAX_BITS, &o.radius) != 0)
                dh_usage_error("--radius: '%s' is not a number in 0..%d", optarg, DH_HAMMING_MAX_BITS);
            break;
        case 'J': json = 1; break;
        case 'p': {
            plot = optarg;
            const char *x = strrchr(plot, '.');
            if (!x || (strcasecmp(x, ".png") && strcasecmp(x, ".svg")))
                dh_usage_error("--plot %s: the name must end in .png or .svg", plot);
            break;
        }
        case 'T': title = optarg; break;
        case 'D': device = optarg; break;
        case 'j':
            if (dh_parse_int(optarg, 1, 256, &threads) != 0) dh_usage_error("--threads: '%s' is not in 1..256", optarg);
            break;
        default:
            if (!dh_common_option(c, 'P', usage)) exit(DH_EXIT_USAGE);
        }
    }
    int auto_dev, use_cuda = dk_prog_rank_device(device, &auto_dev);

    /* plot-only mode: dh-map --plot OUT a.json b.json ... */
    if (plot && optind < argc && !qpath && is_json_file(argv[optind])) {
        int ns = argc - optind;
        series *sv = calloc((size_t)ns, sizeof *sv);
        if (!sv) dh_die(DH_EXIT_NOMEM, "out of memory");
        for (int i = 0; i < ns; i++) parse_result_json(argv[optind + i], &sv[i]);
        draw(plot, sv, ns);
        for (int i = 0; i < ns; i++) {
            free(sv[i].pr_p);
            free(sv[i].pr_r);
        }
        free(sv);
        return DH_EXIT_OK;
    }
    if (argc - optind > 1) dh_usage_error("more than one input (to plot saved results: --plot FILE A.json B.json)");

    dh_err e;
    dh_map_acc acc;
    dh_map_result res;
    double *H = NULL;
    char label[512];
    const char *note = NULL;
    double t0 = dh_now(), tcomp = 0;
    const char *devname = "cpu";
    if (qpath) {
        /* ---- fast path: codes in, no rankings ---- */
        if (optind < argc) dh_usage_error("--query given: no rankings input expected");
        if (!dbpath) dh_usage_error("--query needs --db FILE");
        dh_stdin_once("--db", dbpath, qpath);
        dh_codeset q, db;
        if (dh_codes_load(qpath, &q, 1, &e) != DH_OK) dh_die_err(&e, NULL);
        if (dh_codes_load(dbpath, &db, 1, &e) != DH_OK) dh_die_err(&e, NULL);
        if (q.bits != db.bits)
            dh_die(DH_EXIT_FAIL, "code length mismatch: queries %s have %d bits, database %s has %d", qpath, q.bits,
                   dbpath, db.bits);
        if (db.n == 0) dh_die(DH_EXIT_FAIL, "%s: the database is empty", dbpath);
        if (q.n == 0) dh_die(DH_EXIT_FAIL, "%s: no queries", qpath);
        H = dh_map_harmonic(db.n, &e);
        if (!H || dh_map_acc_init(&acc, db.bits, db.n, &o, H, &e) != DH_OK) dh_die_err(&e, NULL);
        double t1 = dh_now();
        int rc;
        if (use_cuda) {
            double gs = 0;
            rc = dh_map_cuda(q.w, q.label, q.n, db.w, db.label, db.n, db.bits, &acc, &gs, &e);
            devname = "cuda";
            tcomp = gs;
            if (rc == DH_EUNSUPPORTED && auto_dev) { /* codes too long for the kernels: CPU */
                use_cuda = 0;
                rc = DH_OK;
            } else if (rc == DH_EUNSUPPORTED)
                e.code = DH_EDEVICE;
        }
        if (!use_cuda) {
            /* in slices, for the progress line; results do not depend on the slicing */
            devname = "cpu";
            dh_progress pg;
            dh_progress_start(&pg, "evaluating", "queries", q.n);
            const int64_t slice = 4096;
            rc = DH_OK;
            for (int64_t i0 = 0; i0 < q.n && rc == DH_OK; i0 += slice) {
                int64_t n = q.n - i0 < slice ? q.n - i0 : slice;
                rc = dh_map_cpu(q.w + i0 * q.W, q.label + i0, n, db.w, db.label, db.n, db.bits, threads, &acc, &e);
                dh_progress_update(&pg, i0 + n);
            }
            dh_progress_end(&pg, q.n);
            tcomp = dh_now() - t1;
        }
        if (rc != DH_OK) dh_die_err(&e, use_cuda ? "--device cuda" : NULL);
        snprintf(label, sizeof label, "%s", title ? title : qpath);
        dh_codes_free(&q);
        dh_codes_free(&db);
    } else {
        /* ---- rankings stream + database labels ---- */
        const char *in = optind < argc ? argv[optind] : NULL;
        const char *inname = dh_in_name(in);
        dh_stdin_once("--db", dbpath, in);
        dhs_reader *r = dhs_open_path(in, NULL, &e);
        if (!r) dh_die_err(&e, in ? NULL : inname);
        const dhs_schema *s = dhs_reader_schema(r);
        if (strcmp(s->kind, "rankings") != 0)
            dh_die(DH_EXIT_FAIL, "%s: a stream of kind '%s', expected 'rankings'%s", inname, s->kind,
                   !strcmp(s->kind, "codes") ? " (for codes: dh-map --query QUERIES --db DATABASE)" : "");
        int fq = dhs_require_field(s, "query", DHS_I64, 0, &e),
            fl = fq < 0 ? -1 : dhs_require_field(s, "label", DHS_I32, 0, &e);
        int fi = fl < 0 ? -1 : dhs_require_field(s, "idx", DHS_I64, 1, &e),
            fd = fi < 0 ? -1 : dhs_require_field(s, "dist", DHS_I32, 1, &e);
        if (fd < 0) dh_die_err(&e, inname);
        const dhs_meta *m = dhs_reader_meta(r);
        int64_t bits64 = 0, db_rows = 0, top = -1, radius = -1;
        int labels = 1;
        if (dhs_meta_int(m, "bits", &bits64) != 0 || dhs_meta_int(m, "db_rows", &db_rows) != 0 || bits64 < 1 ||
            bits64 > DH_HAMMING_MAX_BITS)
            dh_die(DH_EXIT_FAIL, "%s: rankings without valid 'bits' and 'db_rows' metadata", inname);
        dhs_meta_int(m, "top", &top);
        dhs_meta_int(m, "radius", &radius);
        dhs_meta_bool(m, "labels", &labels);
        if (!labels) dh_die(DH_EXIT_FAIL, "%s: the queries had no labels: cannot judge relevance", inname);
        if (!dbpath) dbpath = dhs_meta_str(m, "db");
        if (!dbpath) dh_usage_error("no database: give --db FILE");
        int bits = (int)bits64;
        dh_codeset db;
        if (dh_codes_load(dbpath, &db, 1, &e) != DH_OK) dh_die_err(&e, NULL);
        if (db.n != db_rows)
            dh_die(DH_EXIT_FAIL, "%s has %lld rows but the rankings were made against %lld", dbpath, (long long)db.n,
                   (long long)db_rows);
        if (db.bits != bits)
            dh_die(DH_EXIT_FAIL, "code length mismatch: rankings of %d-bit codes, database %s has %d", bits, dbpath,
                   db.bits);
        int32_t *sorted = dh_malloc(&e, (size_t)db.n, sizeof *sorted);
        int64_t *hist = dh_malloc(&e, (size_t)bits + 1, sizeof *hist),
                *relhist = dh_malloc(&e, (size_t)bits + 1, sizeof *relhist);
        if (!sorted || !hist || !relhist) dh_die_err(&e, NULL);
        memcpy(sorted, db.label, (size_t)db.n * sizeof *sorted);
        qsort(sorted, (size_t)db.n, sizeof *sorted, cmp_i32);
        H = dh_map_harmonic(db.n, &e);
        if (!H || dh_map_acc_init(&acc, bits, db.n, &o, H, &e) != DH_OK) dh_die_err(&e, NULL);
        int64_t topn = top < 0 ? db.n : top;
        int64_t *ridx = NULL, rowcap = 0;
        int32_t *rdist = NULL;
        double t1 = dh_now();
        dh_progress pg;
        dh_progress_start(&pg, "evaluating", "queries", 0);
        for (;;) {
            dhs_chunk *ch;
            int rc = dhs_read_chunk(r, &ch, &e);
            if (rc == DH_EOF) break;
            if (rc != DH_OK) dh_die_err(&e, inname);
            for (int64_t i = 0; i < ch->nrows; i++) {
                int64_t n = (int64_t)(ch->off[fi][i + 1] - ch->off[fi][i]);
                if ((int64_t)(ch->off[fd][i + 1] - ch->off[fd][i]) != n)
                    dh_die(DH_EXIT_FAIL, "%s: row %lld: %lld database rows but %lld distances", inname,
                           (long long)dhs_reader_rows(r), (long long)n,
                           (long long)(ch->off[fd][i + 1] - ch->off[fd][i]));
                if (n > db.n)
                    dh_die(DH_EXIT_FAIL, "%s: row %lld: %lld rows ranked, the database has %lld", inname,
                           (long long)dhs_reader_rows(r), (long long)n, (long long)db.n);
                /* column data in a chunk need not be aligned: copy */
                if (n > rowcap) {
                    rowcap = n;
                    ridx = realloc(ridx, (size_t)rowcap * sizeof *ridx);
                    rdist = realloc(rdist, (size_t)rowcap * sizeof *rdist);
                    if (!ridx || !rdist) dh_die(DH_EXIT_NOMEM, "out of memory");
                }
                memcpy(ridx, (const char *)ch->col[fi] + ch->off[fi][i] * sizeof(int64_t), (size_t)n * sizeof(int64_t));
                memcpy(rdist, (const char *)ch->col[fd] + ch->off[fd][i] * sizeof(int32_t),
                       (size_t)n * sizeof(int32_t));
                const int64_t *idx = ridx;
                const int32_t *dist = rdist;
                int32_t ql;
                int64_t qrow;
                memcpy(&ql, (const char *)ch->col[fl] + i * sizeof ql, sizeof ql);
                memcpy(&qrow, (const char *)ch->col[fq] + i * sizeof qrow, sizeof qrow);
                int cu;
                if (n >= db.n)
                    cu = bits;
                else if (n < topn)
                    cu = radius >= 0 ? (int)radius : bits;
                else
                    cu = n > 0 ? dist[n - 1] - 1 : -1;
                if (cu > bits) cu = bits;
                dh_map_qraw raw = { .hist = hist, .relhist = relhist };
                if (dh_map_list(idx, dist, n, ql, db.label, db.n, bits, count_eq(sorted, db.n, ql), cu, &o, &raw, &e) !=
                    DH_OK)
                    dh_die(DH_EXIT_FAIL, "%s: query %lld: %s", inname, (long long)qrow, e.msg);
                dh_map_acc_add(&acc, &raw);
            }
            dh_progress_update(&pg, acc.nq);
        }
        dh_progress_end(&pg, acc.nq);
        tcomp = dh_now() - t1;
        dhs_close(r);
        if (top >= 0 && top < db.n)
            note = "rankings cut at --top: whole-ranking metrics need 'dh-rank --top all' or the fast path";
        else if (radius >= 0 && radius < bits)
            note = "rankings cut at --radius: whole-ranking metrics need 'dh-rank --top all' or the fast path";
        snprintf(label, sizeof label, "%s", title ? title : inname);
        free(sorted);
        free(hist);
        free(relhist);
        free(ridx);
        free(rdist);
        dh_codes_free(&db);
    }
    if (acc.nq == 0) dh_die(DH_EXIT_FAIL, "no queries to evaluate");
    if (dh_map_acc_result(&acc, &res, &e) != DH_OK) dh_die_err(&e, NULL);
    if (json)
        write_json(stdout, &res, label, note);
    else
        write_table(stdout, &res, label, note);
    if (fflush(stdout) != 0 || ferror(stdout)) dh_die(DH_EXIT_IO, "<stdout>: %s", strerror(errno));
    dh_note("evaluated %lld queries against %lld in %.3f s of computation on %s (%.3f s in all)", (long long)res.nq,
            (long long)res.ndb, tcomp, devname, dh_now() - t0);
    if (plot) {
        series sv;
        series_from_result(&sv, &res, label);
        draw(plot, &sv, 1);
    }
    dh_map_result_free(&res);
    dh_map_acc_free(&acc);
    free(H);
    return DH_EXIT_OK;
}
