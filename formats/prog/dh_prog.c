/* dh_prog.c — the parts of a program every deephash main shares. */
#define _GNU_SOURCE
#include "dh_prog.h"
#include "dhs.h"
#include "dh_rng.h"
#include "rank.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *dh_progname = "dh";
int dh_quiet = 0;
int dh_progress_on = 0;
static char *cmdline_;
static char **argv_; /* for dh_bad_option called from dh_common_option */
static char **orig_; /* the arguments as given (getopt_long permutes argv): for dh_cmdline_omit */
static int origc_;

static int needs_quote(const char *s) {
    if (!*s) return 1;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              strchr("-_./=,:+@%", *s)))
            return 1;
    return 0;
}

/* The shell-quoted command line of argv[0..argc) (argv[0] as name),
 * without the options of omit (NULL-terminated long names taking a value:
 * "--NAME VALUE" and "--NAME=VALUE"; not after "--"); NULL out of memory. */
static char *build_cmdline(const char *name, int argc, char **argv, const char *const *omit) {
    size_t n = 1;
    for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
    char *line = malloc(n);
    if (!line) return NULL;
    char *p = line;
    int dashdash = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = i == 0 ? name : argv[i];
        if (i && !dashdash && !strcmp(a, "--")) dashdash = 1;
        int skip = 0;
        for (int k = 0; i && !dashdash && omit && omit[k] && !skip; k++) {
            size_t l = strlen(omit[k]);
            if (!strncmp(a, "--", 2) && !strncmp(a + 2, omit[k], l) && (a[2 + l] == 0 || a[2 + l] == '='))
                skip = a[2 + l] == 0 ? 2 : 1;
        }
        if (skip) {
            i += skip - 1; /* the value too */
            continue;
        }
        if (i) *p++ = ' ';
        if (needs_quote(a)) {
            *p++ = '\'';
            for (const char *s = a; *s; s++) {
                if (*s == '\'') {
                    memcpy(p, "'\\''", 4);
                    p += 4;
                } else
                    *p++ = *s;
            }
            *p++ = '\'';
        } else {
            size_t l = strlen(a);
            memcpy(p, a, l);
            p += l;
        }
    }
    *p = 0;
    return line;
}

void dh_prog_init(const char *name, int argc, char **argv) {
    dh_progname = name;
    argv_ = argv;
    opterr = 0; /* option errors are reported by dh_bad_option, in one line */
    signal(SIGPIPE, SIG_DFL);
    dh_progress_on = isatty(2);
    cmdline_ = build_cmdline(name, argc, argv, NULL);
    orig_ = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (orig_) memcpy(orig_, argv, sizeof(char *) * (size_t)argc), origc_ = argc;
}

const char *dh_cmdline(void) { return cmdline_ ? cmdline_ : dh_progname; }

void dh_cmdline_omit(const char *const *omit) {
    char *line = orig_ ? build_cmdline(dh_progname, origc_, orig_, omit) : NULL;
    if (!line) return;
    free(cmdline_);
    cmdline_ = line;
}

/* "dh-prog: message" and a newline on stderr. */
static __attribute__((format(printf, 1, 0))) void vline(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: ", dh_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void dh_die(int status, const char *fmt, ...) {
    va_list ap;
    if (dh_progress_on) fputs("\r\033[K", stderr);
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    exit(status);
}

int dh_exit_status(dh_code c) {
    switch (c) {
    case DH_OK:
    case DH_EOF: return DH_EXIT_OK;
    case DH_EIO: return DH_EXIT_IO;
    case DH_EINVAL: return DH_EXIT_USAGE;
    case DH_EDEVICE: return DH_EXIT_DEVICE;
    case DH_ENOMEM:
    case DH_ELIMIT: return DH_EXIT_NOMEM;
    default: return DH_EXIT_FAIL;
    }
}

void dh_die_err(const dh_err *e, const char *ctx) {
    int st = dh_exit_status(e->code);
    if (st == DH_EXIT_OK) st = DH_EXIT_FAIL;
    size_t n = ctx ? strlen(ctx) : 0;
    int named = n && !strncmp(e->msg, ctx, n) && e->msg[n] == ':'; /* the message names ctx already */
    if (n && !named) dh_die(st, "%s: %s", ctx, e->msg);
    dh_die(st, "%s", e->msg);
}

void dh_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    exit(DH_EXIT_USAGE);
}

/* ---- the option grammar (dh_opts.h) ---- */
const dh_letter dh_letters[] = { { 'b', "--bits", "code length" },
                                 { 'B', "--batch", "mini-batch size" },
                                 { 'd', "--device", "device: cpu, cuda or auto" },
                                 { 'D', "--db", "database codes" },
                                 { 'm', "--model", "model file" },
                                 { 'o', "--output", "output file, written atomically" },
                                 { 's', "--seed", "random seed" },
                                 { 'n', "--limit/--rows", "a row count" },
                                 { 'j', "--threads", "worker threads" },
                                 { 'q', "--quiet", "no progress or report" },
                                 { 'h', "--help", "help" },
                                 { 'V', "--version", "version" },
                                 { 0, 0, 0 } };

const dh_letter *dh_letter_find(int c) {
    for (const dh_letter *l = dh_letters; l->letter; l++)
        if (l->letter == c) return l;
    return NULL;
}

static const dh_moved *moved_;
void dh_prog_moved(const dh_moved *moved) { moved_ = moved; }

void dh_refuse_moved(int letter, const char *what, int newletter, const char *newlong) {
    const dh_letter *l = dh_letter_find(letter);
    char now[160];
    if (newletter)
        snprintf(now, sizeof now, "-%c (--%s)", newletter, newlong);
    else
        snprintf(now, sizeof now, "--%s", newlong);
    if (l) dh_usage_error("-%c is %s in deephash; the %s is %s", letter, l->longopt, what, now);
    dh_usage_error("-%c is not an option of %s any more; the %s is %s", letter, dh_progname, what, now);
}

void dh_bad_option(char **argv) {
    const char *arg = optind > 0 && argv[optind - 1] ? argv[optind - 1] : "?";
    /* a moved letter is the value of no long option, so optopt names it as a short one */
    if (optopt && moved_)
        for (const dh_moved *m = moved_; m->letter; m++)
            if (m->letter == optopt) dh_refuse_moved(m->letter, m->what, m->newletter, m->newlong);
    if (optopt && strncmp(arg, "--", 2) != 0)
        dh_usage_error("invalid option or missing value: '-%c' (see %s --help)", optopt, dh_progname);
    dh_usage_error("invalid option or missing value: '%s' (see %s --help)", arg, dh_progname);
}

void dh_version(void) {
    printf("%s (deephash) %s\n", dh_progname, DH_VERSION);
    exit(0);
}

int dh_common_option(int c, int progress, void (*usage)(void)) {
    if (c == 'q')
        dh_quiet = 1;
    else if (c == progress)
        dh_progress_on = 1;
    else if (c == 'h') {
        usage();
        exit(DH_EXIT_OK);
    } else if (c == 'V')
        dh_version();
    else if ((c == '?' || c == ':') && argv_)
        dh_bad_option(argv_); /* one line naming the option */
    else
        return 0;
    return 1;
}

const char *dh_input_arg(int argc, char **argv) {
    if (optind < argc - 1) dh_usage_error("at most one input file");
    return optind < argc ? argv[optind] : NULL;
}

void dh_stdin_once(const char *opt, const char *optval, const char *operand) {
    if (optval && !strcmp(optval, "-") && (!operand || !strcmp(operand, "-")))
        dh_usage_error("%s -: the other input reads standard input too; give one of them as a file", opt);
}

FILE *dh_open_in(const char *path) {
    if (!path || !strcmp(path, "-")) return stdin;
    FILE *f = fopen(path, "rb");
    if (!f) dh_die(DH_EXIT_IO, "%s: %s", path, strerror(errno));
    return f;
}

const char *dh_in_name(const char *path) { return (!path || !strcmp(path, "-")) ? "<stdin>" : path; }

/* Temporary output files not yet committed: removed when a signal ends the
 * program (SIGINT, SIGTERM, SIGHUP), so an interrupted run leaves nothing. */
#define MAX_PENDING 8
static char *volatile pending_[MAX_PENDING];

void dh_out_on_signal(int sig) {
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending_[i]) unlink(pending_[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Our handler for sig, unless the program has its own (dh_ckpt). */
static void on_signal_unless_handled(int sig) {
    struct sigaction old;
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(sig, dh_out_on_signal);
}

static void pending_add(char *tmp) {
    static int installed;
    if (!installed) {
        installed = 1;
        on_signal_unless_handled(SIGINT);
        on_signal_unless_handled(SIGTERM);
        on_signal_unless_handled(SIGHUP);
    }
    for (int i = 0; i < MAX_PENDING; i++)
        if (!pending_[i]) {
            pending_[i] = tmp;
            return;
        }
}

static void pending_del(const char *tmp) {
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending_[i] == tmp) pending_[i] = NULL;
}

int dh_out_open(dh_outfile *o, const char *path, dh_err *e) {
    memset(o, 0, sizeof *o);
    if (!path || !strcmp(path, "-")) {
        o->f = stdout;
        return 0;
    }
    struct stat st, lst;
    if (lstat(path, &lst) == 0 && !S_ISREG(lst.st_mode) && !(stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        /* a device, FIFO or symbolic link (/dev/null, /dev/stdout, a named
         * pipe): written directly (tmp NULL), since a rename over it would
         * replace the node itself */
        if (!(o->path = dh_strdup(e, path))) return DH_ENOMEM;
        if (!(o->f = fopen(path, "wb"))) {
            int err = errno;
            free(o->path);
            o->path = NULL;
            return dh_seterr(e, DH_EIO, "%s: %s", path, strerror(err));
        }
        return 0;
    }
    o->path = dh_strdup(e, path);
    o->tmp = dh_malloc(e, strlen(path) + 32, 1);
    if (!o->path || !o->tmp) {
        free(o->path);
        free(o->tmp);
        return DH_ENOMEM;
    }
    /* temp beside the target so rename() stays on one filesystem; created
     * 0666 less the umask (and a directory's default ACL), as the shell's
     * `> path` creates a file, not mkstemp's 0600 */
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    static uint64_t seq;
    uint64_t x = (uint64_t)getpid() << 32 ^ (uint64_t)(dh_now() * 1e6) ^ (uintptr_t)o;
    int fd = -1, err = 0;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        x = dh_mix64(x + ++seq);
        sprintf(o->tmp, "%.*s.%s.tmp.%06llx", dirlen, path, slash ? slash + 1 : path,
                (unsigned long long)(x & 0xffffff));
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (err = errno) != EEXIST) break;
    }
    /* a file that is replaced keeps its permissions, as with `> path` */
    if (fd >= 0 && lstat(path, &lst) == 0 && S_ISREG(lst.st_mode)) fchmod(fd, lst.st_mode & 0777);
    if (fd < 0) {
        free(o->path);
        free(o->tmp);
        o->path = o->tmp = NULL;
        return dh_seterr(e, DH_EIO, "%s: cannot create: %s", path, strerror(err));
    }
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        close(fd);
        unlink(o->tmp);
        return dh_seterr(e, DH_EIO, "%s: %s", path, strerror(errno));
    }
    pending_add(o->tmp);
    return 0;
}

int dh_out_commit(dh_outfile *o, dh_err *e) {
    if (!o->path) { /* stdout */
        if (fflush(o->f) != 0 || ferror(o->f))
            return dh_seterr(e, DH_EIO, "<stdout>: write error: %s", strerror(errno));
        return 0;
    }
    int rc = 0;
    if (!o->tmp) { /* a device or FIFO, written directly */
        if (fflush(o->f) != 0 || ferror(o->f))
            rc = dh_seterr(e, DH_EIO, "%s: write error: %s", o->path, strerror(errno));
        if (fclose(o->f) != 0 && !rc) rc = dh_seterr(e, DH_EIO, "%s: close: %s", o->path, strerror(errno));
        free(o->path);
        memset(o, 0, sizeof *o);
        return rc;
    }
    if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0)
        rc = dh_seterr(e, DH_EIO, "%s: write error: %s", o->path, strerror(errno));
    if (fclose(o->f) != 0 && !rc) rc = dh_seterr(e, DH_EIO, "%s: close: %s", o->path, strerror(errno));
    o->f = NULL;
    if (!rc && rename(o->tmp, o->path) != 0) rc = dh_seterr(e, DH_EIO, "%s: rename: %s", o->path, strerror(errno));
    if (rc) unlink(o->tmp);
    pending_del(o->tmp);
    free(o->path);
    free(o->tmp);
    o->path = o->tmp = NULL;
    return rc;
}

void dh_out_abort(dh_outfile *o) {
    if (!o->path) return; /* stdout: the missing trailer marks it incomplete */
    if (o->f) fclose(o->f);
    if (o->tmp) {
        unlink(o->tmp);
        pending_del(o->tmp);
    }
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

static dh_outfile *guarded_;
static void guarded_abort(void) { dh_out_abort(guarded_); }

int dh_out_open_guarded(dh_outfile *o, const char *path, dh_err *e) {
    int rc = dh_out_open(o, path, e);
    if (rc) return rc;
    if (!guarded_) atexit(guarded_abort);
    guarded_ = o;
    return 0;
}

int dh_model_save(const char *path, const dhs_model *m, dh_err *e) {
    dh_outfile o;
    int rc = dh_out_open(&o, path, e);
    if (rc) return rc;
    rc = dhs_model_write(o.f, o.path ? o.path : "<stdout>", m, e);
    if (rc) {
        dh_out_abort(&o);
        return rc;
    }
    return dh_out_commit(&o, e);
}

void dh_meta_carry(dhs_meta *out, const dhs_meta *in) {
    if (!in) return;
    const char *src = dhs_meta_str(in, "source");
    if (src) dhs_meta_set_str(out, "source", src);
    if (dhs_meta_type(in, "classes") == DHS_M_ARRAY) {
        int n = dhs_meta_len(in, "classes");
        const char **names = n > 0 ? calloc((size_t)n, sizeof *names) : NULL;
        if (names) {
            int ok = 1;
            for (int i = 0; i < n; i++)
                if (!(names[i] = dhs_meta_str_at(in, "classes", i))) ok = 0;
            if (ok) dhs_meta_set_strv(out, "classes", names, n);
            free(names);
        }
    }
}

static void fmt_time(char *b, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(b, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(b, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(b, n, "%d:%02d", t / 60, t % 60);
}

void dh_progress_start(dh_progress *p, const char *what, const char *unit, int64_t total) {
    p->what = what;
    p->unit = unit ? unit : "rows";
    p->total = total;
    p->t0 = p->tlast = dh_now();
    p->shown = 0;
}

static void progress_print(dh_progress *p, int64_t done, int final) {
    double el = dh_now() - p->t0;
    double rate = el > 0 ? done / el : 0;
    char eta[32] = "", tb[32];
    fmt_time(tb, sizeof tb, el);
    if (p->total > 0 && !final) {
        char e[24];
        fmt_time(e, sizeof e, rate > 0 ? (p->total - done) / rate : -1);
        snprintf(eta, sizeof eta, "  ETA %s", e);
    }
    if (p->total > 0)
        fprintf(stderr, "\r\033[K%s: %s %lld/%lld %s  %.0f %s/s  %s%s%s", dh_progname, p->what, (long long)done,
                (long long)p->total, p->unit, rate, p->unit, tb, eta, final ? "\n" : "");
    else
        fprintf(stderr, "\r\033[K%s: %s %lld %s  %.0f %s/s  %s%s", dh_progname, p->what, (long long)done, p->unit, rate,
                p->unit, tb, final ? "\n" : "");
}

void dh_progress_update(dh_progress *p, int64_t done) {
    if (dh_quiet || !dh_progress_on) return;
    double t = dh_now();
    if (t - p->tlast < 0.25) return;
    p->tlast = t;
    p->shown = 1;
    progress_print(p, done, 0);
}

void dh_progress_end(dh_progress *p, int64_t done) {
    if (dh_quiet || !dh_progress_on || !p->shown) return;
    progress_print(p, done, 1);
}

void dh_note(const char *fmt, ...) {
    if (dh_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

int dh_prog_threads(int given) {
    if (given > 0) return given;
    dh_err e;
    int n = 1;
    if (dh_rank_default_threads(&n, &e) != DH_OK) dh_die_err(&e, "environment");
    return n;
}
