/* dh_ckpt.c — the checkpoint options of the training programs (dh_ckpt.h). */
#define _GNU_SOURCE
#include "dh_ckpt.h"
#include "dh_prog.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>

const char dh_ckpt_help[] = "      --checkpoint FILE   write checkpoints of the run to FILE (atomically), and one at\n"
                            "                          SIGINT/SIGTERM before exiting (130/143)\n"
                            "      --checkpoint-every N[e|m]  every N epochs (default 1e) or N minutes\n"
                            "      --resume FILE       continue the run of that checkpoint (same data and options)\n"
                            "      --stop-after N      stop after epoch N with a checkpoint (exit 75)\n";

static volatile sig_atomic_t caught_;

static void on_signal(int sig) {
    if (caught_) dh_out_on_signal(sig); /* the second one: at once */
    caught_ = sig;
}

void dh_ckpt_init(dh_ckpt *c) {
    memset(c, 0, sizeof *c);
    c->every = 1;
}

int dh_ckpt_option(dh_ckpt *c, int opt, int base, const char *arg) {
    if (opt < base || opt >= base + DH_CKPT_NOPTS) return 0;
    switch (opt - base) {
    case 0: c->path = arg; break;
    case 1: {
        size_t n = strlen(arg);
        char num[64], unit = n ? arg[n - 1] : 0;
        if (unit == 'e' || unit == 'm') n--;
        snprintf(num, sizeof num, "%.*s", (int)n, arg);
        double v;
        if (n == 0 || n >= sizeof num || dh_parse_double(num, 1e-3, 1e9, &v) || (unit != 'm' && (v != (int)v || v < 1)))
            dh_usage_error("--checkpoint-every: '%s' is not N (epochs), Ne (epochs) or Nm (minutes)", arg);
        if (unit == 'm')
            c->minutes = v, c->every = 0;
        else
            c->every = (int)v, c->minutes = 0;
        break;
    }
    case 2: c->resume = arg; break;
    case 3:
        if (dh_parse_int(arg, 1, 1000000, &c->stop_after))
            dh_usage_error("--stop-after: '%s' is not an epoch count (1 or more)", arg);
        break;
    }
    return 1;
}

void dh_ckpt_start(dh_ckpt *c) {
    static const char *const omit[] = { "checkpoint", "checkpoint-every", "resume", "stop-after", NULL };
    if (!c->path) c->path = c->resume;
    if (c->stop_after && !c->path) dh_usage_error("--stop-after needs --checkpoint FILE (or --resume FILE)");
    if (c->path && !strcmp(c->path, "-")) dh_usage_error("--checkpoint: a file, not standard output");
    dh_cmdline_omit(omit);
    c->t_last = dh_now();
    if (!c->path) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void dh_ckpt_not_output(const dh_ckpt *c, const char *opt, const char *out) {
    if (c->path && out && !strcmp(c->path, out))
        dh_usage_error("%s %s: the checkpoint file too; give the checkpoint another name", opt, out);
}

int dh_ckpt_signal(void) { return caught_; }

int dh_ckpt_due_step(const dh_ckpt *c) {
    if (!c->path) return 0;
    return caught_ || (c->minutes > 0 && dh_now() - c->t_last >= 60 * c->minutes);
}

int dh_ckpt_due_epoch(const dh_ckpt *c, int done, int epochs) {
    if (!c->path || done >= epochs) return 0;
    return dh_ckpt_due_step(c) || (c->every > 0 && done % c->every == 0) || done == c->stop_after;
}

void dh_ckpt_save(dh_ckpt *c, const dhs_model *ck, int done) {
    dh_err e;
    int64_t step = 0;
    if (dh_model_save(c->path, ck, &e)) dh_die_err(&e, c->path);
    dhs_meta_int(ck->meta, "step", &step);
    c->saved++;
    c->t_last = dh_now();
    int sig = caught_;
    if (sig) {
        if (dh_progress_on) fputs("\r\033[K", stderr);
        fprintf(stderr, "%s: %s: checkpoint at step %lld written to %s (continue with --resume %s)\n", dh_progname,
                strsignal(sig), (long long)step, c->path, c->path);
        exit(128 + sig);
    }
    if (c->stop_after && done == c->stop_after) {
        dh_note("stopped after epoch %d: checkpoint at step %lld written to %s (continue with --resume %s)", done,
                (long long)step, c->path, c->path);
        exit(DH_EXIT_STOPPED);
    }
    dh_note("checkpoint at step %lld written to %s", (long long)step, c->path);
}

void dh_ckpt_load(const dh_ckpt *c, dhs_model *ck) {
    dh_err e;
    if (dhs_model_load(c->resume, ck, &e)) dh_die_err(&e, c->resume); /* (it initialises ck) */
}
