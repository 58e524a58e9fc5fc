/* dh_ckpt.h — the checkpoint options of the training programs (dh-pretrain,
 * dh-finetune) and what they do: when to write a checkpoint, writing it
 * atomically, SIGINT/SIGTERM, --stop-after. What a checkpoint holds is
 * kernels/train/train_ckpt.h.
 *
 *   --checkpoint FILE         write checkpoints to FILE (atomically: a
 *                             temporary file beside it, renamed over it)
 *   --checkpoint-every N[e|m] every N epochs (default 1e) or N minutes
 *   --resume FILE             continue the run of that checkpoint (and write
 *                             the next checkpoints there, unless --checkpoint)
 *   --stop-after N            stop after epoch N with a checkpoint (exit
 *                             DH_EXIT_STOPPED)
 *
 * With a checkpoint file, SIGINT and SIGTERM only set a flag: the program
 * writes a checkpoint at the next step boundary and exits 128 + the signal
 * (130, 143), as the shell reports a program killed by it; a second signal
 * kills at once. These options are left out of the command line a model
 * records (dh_cmdline): they say how a run was carried out, not what it
 * computed, so a resumed run writes the same model as an uninterrupted one.
 *
 * Use in a main: DH_CKPT_LONGOPTS(base) in the getopt_long table, base..base+3
 * given to dh_ckpt_option, dh_ckpt_start after parsing, then in the loop
 * dh_ckpt_due_step / dh_ckpt_due_epoch, dh_ckpt_save, dh_ckpt_stop.
 */
#ifndef DH_CKPT_H
#define DH_CKPT_H
#include <stdint.h>
#include "dhs.h"

/* The status of a run that stopped with a checkpoint as --stop-after asked
 * (EX_TEMPFAIL of sysexits.h: "try again", here with --resume). */
#define DH_EXIT_STOPPED 75

typedef struct dh_ckpt {
    const char *path;   /* --checkpoint FILE, or NULL: none written */
    const char *resume; /* --resume FILE, or NULL */
    int every;          /* --checkpoint-every N (epochs), or */
    double minutes;     /* N minutes (0: by epochs) */
    int stop_after;     /* --stop-after N, or 0 */
    double t_last;      /* when the last checkpoint was written (or the run started) */
    int saved;          /* checkpoints written */
} dh_ckpt;

#define DH_CKPT_NOPTS 4
#define DH_CKPT_LONGOPTS(base)                                                                                         \
    { "checkpoint", 1, 0, (base) }, { "checkpoint-every", 1, 0, (base) + 1 }, { "resume", 1, 0, (base) + 2 }, {        \
        "stop-after", 1, 0, (base) + 3                                                                                 \
    }
/* The --help lines of these options. */
extern const char dh_ckpt_help[];

void dh_ckpt_init(dh_ckpt *c);
/* Handle getopt value opt if it is one of base..base+3: 1, else 0. A bad
 * value is a usage error (exit 2). */
int dh_ckpt_option(dh_ckpt *c, int opt, int base, const char *arg);
/* After the options: --stop-after needs a checkpoint file, --resume FILE
 * is the default one; the signal handlers when a checkpoint is written; the
 * command line without these options (dh_cmdline); the clock. */
void dh_ckpt_start(dh_ckpt *c);
/* A usage error when the checkpoint file is also the output `out` (may be NULL) of option `opt`. */
void dh_ckpt_not_output(const dh_ckpt *c, const char *opt, const char *out);
/* The signal caught (SIGINT, SIGTERM), or 0. */
int dh_ckpt_signal(void);
/* Whether to write a checkpoint between two steps: a signal, or the minutes
 * of --checkpoint-every elapsed. */
int dh_ckpt_due_step(const dh_ckpt *c);
/* Whether to write one after epoch `done` (1-based) of `epochs`: as
 * dh_ckpt_due_step, or every N epochs, or --stop-after N; never after the
 * last epoch (the model is written then). */
int dh_ckpt_due_epoch(const dh_ckpt *c, int done, int epochs);
/* Write ck atomically to the checkpoint file (dies on failure, naming it),
 * with a note; then stop if asked: after a signal exit 128 + its number,
 * after epoch --stop-after (done: the epochs completed) DH_EXIT_STOPPED. */
void dh_ckpt_save(dh_ckpt *c, const dhs_model *ck, int done);
/* Load and return the checkpoint of --resume into ck (dies on failure). */
void dh_ckpt_load(const dh_ckpt *c, dhs_model *ck);

#endif
