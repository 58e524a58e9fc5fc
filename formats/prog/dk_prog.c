/* dk_prog.c — device selection for the programs' main() (dk_prog.h). */
#include "dk_prog.h"
#include "dh_prog.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

dk_device dk_prog_device_parse(const char *device) {
    dh_err e;
    dk_device dev;
    if (dk_device_parse(device, &dev, &e)) dh_die_err(&e, "--device");
    return dev;
}

static int g_bf16_asked;

void dk_prog_set_precision(const char *p) {
    if (strcmp(p, "fp32") != 0 && strcmp(p, "bf16") != 0) dh_usage_error("--precision: '%s' is not fp32 or bf16", p);
    if (setenv("DH_PRECISION", p, 1) != 0) dh_die(DH_EXIT_FAIL, "--precision: setenv: %s", strerror(errno));
    g_bf16_asked = strcmp(p, "bf16") == 0;
}

dk_device dk_prog_device_open(const char *device) {
    dh_err e;
    dk_device dev = dk_prog_device_parse(device);
    if (g_bf16_asked && dev == DK_CUDA)
        dh_usage_error("--precision bf16: the CPU engine's (oneDNN); on CUDA the arithmetic is FP32 (DH_TF32=1 for "
                       "TF32): use --device cpu");
    if (dk_init(dev, &e)) dh_die_err(&e, dk_device_name(dev));
    return dev;
}
