/* test_prog.c — the program conventions (formats/prog): the one mapping
 * from library errors to exit statuses, the reserved option letters, and
 * the permissions of atomic output files. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "dh_prog.h"

static void t_exit_statuses(void) {
    CHECK(dh_exit_status(DH_OK) == DH_EXIT_OK);
    CHECK(dh_exit_status(DH_EOF) == DH_EXIT_OK);
    CHECK(dh_exit_status(DH_EIO) == 3);
    CHECK(dh_exit_status(DH_EFORMAT) == 1);
    CHECK(dh_exit_status(DH_ETRUNC) == 1);
    CHECK(dh_exit_status(DH_ECHECKSUM) == 1);
    CHECK(dh_exit_status(DH_ESCHEMA) == 1); /* a model tensor of the wrong shape */
    CHECK(dh_exit_status(DH_EUNSUPPORTED) == 1);
    CHECK(dh_exit_status(DH_EINVAL) == 2);
    CHECK(dh_exit_status(DH_EDEVICE) == 4);
    CHECK(dh_exit_status(DH_ENOMEM) == 5); /* a CUDA out-of-memory too (dh_cuda.h) */
    CHECK(dh_exit_status(DH_ELIMIT) == 5);
}

static void t_letters(void) {
    static const struct {
        int c;
        const char *lo;
    } want[] = { { DH_OPT_BITS, "--bits" },   { DH_OPT_BATCH, "--batch" },       { DH_OPT_DEVICE, "--device" },
                 { DH_OPT_DB, "--db" },       { DH_OPT_MODEL, "--model" },       { DH_OPT_OUTPUT, "--output" },
                 { DH_OPT_SEED, "--seed" },   { DH_OPT_ROWS, "--limit/--rows" }, { DH_OPT_THREADS, "--threads" },
                 { DH_OPT_QUIET, "--quiet" }, { DH_OPT_HELP, "--help" },         { DH_OPT_VERSION, "--version" } };
    int n = 0;
    for (const dh_letter *l = dh_letters; l->letter; l++) n++;
    CHECKF(n == (int)(sizeof want / sizeof want[0]), "%d letters in the table", n);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const dh_letter *l = dh_letter_find(want[i].c);
        CHECKF(l && !strcmp(l->longopt, want[i].lo), "-%c", want[i].c);
        for (size_t j = 0; j < i; j++) CHECK(want[i].c != want[j].c);
    }
    CHECK(dh_letter_find('M') == NULL && dh_letter_find('x') == NULL);
}

/* dh_out_open + commit of a small file under umask u; its mode */
static int out_mode(const char *path, mode_t u) {
    mode_t old = umask(u);
    dh_outfile o;
    dh_err e;
    int rc = dh_out_open(&o, path, &e);
    umask(old);
    if (rc) return -1;
    fputs("x", o.f);
    if (dh_out_commit(&o, &e)) return -1;
    struct stat st;
    return stat(path, &st) ? -1 : (int)(st.st_mode & 0777);
}

static void t_output_modes(void) {
    char dir[] = "/tmp/test_prog.XXXXXX";
    if (!mkdtemp(dir)) SKIP_TEST("mkdtemp");
    char a[256], b[256], c[256];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    int ma = out_mode(a, 022), mb = out_mode(b, 077);
    CHECKF(ma == 0644, "umask 022: mode %o, not 644 (as '> file' gives)", ma);
    CHECKF(mb == 0600, "umask 077: mode %o, not 600", mb);
    /* a file that is replaced keeps its permissions, as with '> file' */
    FILE *f = fopen(c, "w");
    if (f) fclose(f);
    chmod(c, 0640);
    int mc = out_mode(c, 022);
    CHECKF(mc == 0640, "replaced file: mode %o, not 640", mc);
    unlink(a);
    unlink(b);
    unlink(c);
    rmdir(dir);
}

static void t_output_error_names_path_once(void) {
    dh_outfile o;
    dh_err e;
    const char *p = "/nonexistent/dir/x.codes";
    CHECK(dh_out_open(&o, p, &e) == DH_EIO);
    const char *want = "/nonexistent/dir/x.codes: cannot create: ";
    CHECKF(!strncmp(e.msg, want, strlen(want)), "%s", e.msg);
    CHECKF(strstr(e.msg + 1, p) == NULL, "path twice: %s", e.msg);
}

int main(void) {
    RUN(t_exit_statuses);
    RUN(t_letters);
    RUN(t_output_modes);
    RUN(t_output_error_names_path_once);
    return check_done();
}
