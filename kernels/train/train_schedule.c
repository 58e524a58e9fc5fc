/* train_schedule.c — the learning-rate schedule as the programs spell it
 * (train.h): dk_schedule's grammar, "constant", and the paper's plain
 * "step" resolved for the number of epochs. */
#include <stdio.h>
#include <string.h>
#include "train.h"

int train_schedule(const char *s, double base, int epochs, dk_schedule *out, char *resolved, size_t n, dh_err *e) {
    char buf[64];
    if (!s) s = "const";
    if (!strcmp(s, "constant")) s = "const";
    if (!strcmp(s, "step")) { /* the paper's: x0.1 at 50% and 75% of the epochs, rounded down */
        int a = epochs / 2, b = epochs * 3 / 4;
        if (a < 1) a = 1;
        if (b <= a) b = a + 1;
        snprintf(buf, sizeof buf, "step:%d,%d", a, b);
        s = buf;
    }
    if (resolved && n) snprintf(resolved, n, "%s", s);
    return dk_schedule_parse(s, base, out, e);
}
