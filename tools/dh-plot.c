/* dh-plot — draw dh-map results with gnuplot: the precision-recall curve
 * (one point per Hamming radius) and precision@k, several results on the
 * same axes (man/dh-plot.1).
 *
 *   dh-map --json ... | dh-plot -o pr.png
 *   dh-plot -o compare.svg itq.json deephash.json
 *
 * The results are read with the search library's JSON reader
 * (map_report.h); the gnuplot script carries its data inline, is piped to
 * gnuplot, and gnuplot writes the image straight into the atomic output.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dh_prog.h"
#include "map_report.h"

static void usage(void) {
    printf("Usage: dh-plot -o FILE [OPTIONS] [RESULT.json]...\n"
           "Draw dh-map --json results with gnuplot: the precision-recall curve (one point\n"
           "per Hamming radius) and precision@k, every result on the same axes. Reads the\n"
           "RESULT files, or one result on standard input (none, or '-').\n\n"
           "  -o, --output FILE    the image, written atomically (PNG or SVG by the extension)\n"
           "      --format F       png or svg (default: from FILE; needed for -o -)\n"
           "      --db-order       precision@k in database order (default: tie-aware, where\n"
           "                       the result has it)\n"
           "      --script         write the gnuplot script (data inline) to FILE instead (PNG\n"
           "                       unless --format svg or FILE.svg)\n"
           "  -q, --quiet          no notes on stderr\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "Needs gnuplot (5.0 or later, with the cairo terminals). See dh-plot(1).\n");
}

typedef struct series {
    char *label;
    dh_map_result r;
    const int *have_k; /* the precision@k drawn: tie-aware or database order */
    const double *pk;
} series;

static char *slurp(const char *path, size_t *len) {
    FILE *f = dh_open_in(path);
    size_t cap = 1 << 16, n = 0, max = (size_t)64 << 20;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap || cap >= max) break;
        char *nb = realloc(b, cap *= 2);
        if (!nb) free(b);
        b = nb;
    }
    if (!b) dh_die(DH_EXIT_NOMEM, "out of memory");
    if (ferror(f)) dh_die(DH_EXIT_IO, "%s: %s", dh_in_name(path), strerror(errno));
    if (n == cap) dh_die(DH_EXIT_NOMEM, "%s: larger than %zu MiB", dh_in_name(path), max >> 20);
    if (f != stdin) fclose(f);
    *len = n;
    return b;
}

/* a gnuplot double-quoted string */
static void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* One panel: every series with points, or a note when none has any. */
static void panel(FILE *g, const series *sv, int ns, const char *block, int pk) {
    int any = 0;
    for (int i = 0; i < ns; i++) {
        int npts = pk ? 0 : sv[i].r.pr_n;
        for (int k = 0; pk && k < sv[i].r.nk; k++) npts += sv[i].have_k[k];
        if (!npts) continue;
        fprintf(g, "%s$%s%d using 1:2 with linespoints title ", any++ ? ", " : "plot ", block, i);
        gp_str(g, sv[i].label);
    }
    if (!any) fprintf(g, "set label 'no points' at graph 0.5, 0.5 center\nplot [1:10] NaN notitle\nunset label");
    fputc('\n', g);
}

static void script(FILE *g, const series *sv, int ns, int svg, const char *pk_title) {
    fprintf(g, "set terminal %s\n",
            svg ? "svg noenhanced size 1200,500 dynamic" : "pngcairo noenhanced size 1200,500 font ',10'");
    for (int i = 0; i < ns; i++) {
        const dh_map_result *r = &sv[i].r;
        fprintf(g, "$pr%d << EOD\n", i);
        for (int d = 0; d < r->pr_n; d++) fprintf(g, "%.6f %.6f %d\n", r->pr_r[d], r->pr_p[d], d);
        fprintf(g, "EOD\n$pk%d << EOD\n", i);
        for (int k = 0; k < r->nk; k++)
            if (sv[i].have_k[k]) fprintf(g, "%lld %.6f\n", (long long)r->ks[k], sv[i].pk[k]);
        fprintf(g, "EOD\n");
    }
    fprintf(g, "set multiplot layout 1,2\nset grid\nset key bottom left\n"
               "set title 'Precision-recall (one point per Hamming radius)'\n"
               "set xlabel 'recall'\nset ylabel 'precision'\nset xrange [0:1]\nset yrange [0:1]\n");
    panel(g, sv, ns, "pr", 0);
    fprintf(g,
            "set title '%s'\nset xlabel 'k'\nset ylabel 'precision'\nset logscale x\n"
            "set autoscale x\nset yrange [0:1]\n",
            pk_title);
    panel(g, sv, ns, "pk", 1);
    fprintf(g, "unset multiplot\n");
}

/* Run gnuplot on the script, its image going to outfd; one error line on failure. */
static void gnuplot(const char *text, size_t len, int outfd) {
    FILE *ef = tmpfile();
    int p[2];
    if (!ef || pipe(p) != 0) dh_die(DH_EXIT_IO, "running gnuplot: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) dh_die(DH_EXIT_IO, "running gnuplot: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(p[0], 0) < 0 || dup2(outfd, 1) < 0 || dup2(fileno(ef), 2) < 0) _exit(126);
        close(p[0]);
        close(p[1]);
        execlp("gnuplot", "gnuplot", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    signal(SIGPIPE, SIG_IGN); /* gnuplot may stop reading early: its status says why */
    for (size_t o = 0; o < len;) {
        ssize_t w = write(p[1], text + o, len - o);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        o += (size_t)w;
    }
    close(p[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        fclose(ef);
        return;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) dh_die(DH_EXIT_FAIL, "gnuplot is not installed");
    char line[512] = "", buf[512];
    rewind(ef);
    while (!line[0] && fgets(buf, sizeof buf, ef)) {
        buf[strcspn(buf, "\n")] = 0;
        char *s = buf + strspn(buf, " \t^");
        if (*s) snprintf(line, sizeof line, "%s", s);
    }
    fclose(ef);
    dh_die(DH_EXIT_FAIL, "gnuplot failed%s%s", line[0] ? ": " : "", line);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-plot", argc, argv);
    const char *out = NULL, *format = NULL;
    int only_script = 0, db_order = 0;
    enum { O_FORMAT = 256, O_SCRIPT, O_DBORDER, O_PROG };
    static const struct option lo[] = { { "output", required_argument, 0, 'o' },
                                        { "format", required_argument, 0, O_FORMAT },
                                        { "script", no_argument, 0, O_SCRIPT },
                                        { "db-order", no_argument, 0, O_DBORDER },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    while ((c = getopt_long(argc, argv, "o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_SCRIPT: only_script = 1; break;
        case O_DBORDER: db_order = 1; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) exit(DH_EXIT_USAGE);
        }
    }
    if (!out) dh_usage_error("no output: give -o FILE.png or -o FILE.svg");
    const char *ext = strrchr(out, '.');
    if (!format && ext && (!strcasecmp(ext, ".png") || !strcasecmp(ext, ".svg"))) format = ext + 1;
    if (!format && only_script) format = "png"; /* -o names the script */
    if (!format) dh_usage_error("-o %s: the name must end in .png or .svg (or give --format)", out);
    if (strcasecmp(format, "png") != 0 && strcasecmp(format, "svg") != 0)
        dh_usage_error("--format: '%s' is not png or svg", format);
    int ns = argc > optind ? argc - optind : 1, nstdin = 0;
    for (int i = optind; i < argc; i++) nstdin += !strcmp(argv[i], "-");
    if (nstdin > 1) dh_usage_error("standard input ('-') given more than once");

    series *sv = calloc((size_t)ns, sizeof *sv);
    int mixed = 0; /* results drawn in database order although tie-aware was asked for */
    if (!sv) dh_die(DH_EXIT_NOMEM, "out of memory");
    dh_err e;
    for (int i = 0; i < ns; i++) {
        const char *path = argc > optind ? argv[optind + i] : NULL;
        size_t len;
        char *text = slurp(path, &len);
        if (dh_map_read_json(text, len, &sv[i].r, &sv[i].label, &e) != DH_OK) dh_die_err(&e, dh_in_name(path));
        if (!sv[i].label && !(sv[i].label = strdup(dh_in_name(path)))) dh_die(DH_EXIT_NOMEM, "out of memory");
        free(text);
        int tie = 0; /* results of older versions have no tie-aware values: database order */
        for (int k = 0; !db_order && k < sv[i].r.nk; k++) tie |= sv[i].r.have_k_tie[k];
        sv[i].have_k = tie ? sv[i].r.have_k_tie : sv[i].r.have_k;
        sv[i].pk = tie ? sv[i].r.pk_tie : sv[i].r.pk;
        mixed += !db_order && !tie;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&text, &len);
    if (!g) dh_die(DH_EXIT_NOMEM, "out of memory");
    script(g, sv, ns, !strcasecmp(format, "svg"),
           db_order      ? "Precision@k (ties in database order)"
           : mixed == ns ? "Precision@k (ties in database order: the results have no tie-aware values)"
           : mixed       ? "Precision@k (tie-aware where the result has it)"
                         : "Precision@k (tie-aware)");
    if (fclose(g) != 0) dh_die(DH_EXIT_NOMEM, "out of memory");

    static dh_outfile of;
    if (dh_out_open_guarded(&of, out, &e) != DH_OK) dh_die_err(&e, out);
    if (only_script) {
        fwrite(text, 1, len, of.f);
    } else {
        if (fflush(of.f) != 0) dh_die(DH_EXIT_IO, "%s: %s", out, strerror(errno));
        gnuplot(text, len, fileno(of.f));
        struct stat stt;
        if (fstat(fileno(of.f), &stt) == 0 && S_ISREG(stt.st_mode) && stt.st_size == 0)
            dh_die(DH_EXIT_FAIL, "gnuplot wrote nothing");
    }
    if (dh_out_commit(&of, &e) != DH_OK) dh_die_err(&e, out);
    for (int i = 0; i < ns; i++) {
        dh_map_result_free(&sv[i].r);
        free(sv[i].label);
    }
    free(sv);
    free(text);
    return DH_EXIT_OK;
}
