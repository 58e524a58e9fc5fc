/* dk_prog.c — device selection for the programs' main() (dk_prog.h). */
#include <string.h>
#include "dk_prog.h"
#include "dh_prog.h"
#include "rank.h"

dk_device dk_prog_device_parse(const char *device) {
    dh_err e;
    dk_device dev;
    if (dk_device_parse(device, &dev, &e)) dh_die_err(&e, "--device");
    return dev;
}

dk_device dk_prog_device_open(const char *device) {
    dh_err e;
    dk_device dev = dk_prog_device_parse(device);
    if (dk_init(dev, &e)) dh_die_err(&e, dk_device_name(dev));
    return dev;
}

int dk_prog_rank_device(const char *device, int *auto_dev) {
    *auto_dev = !device || !strcmp(device, "auto");
    if (*auto_dev) return dh_rank_cuda_available();
    if (!strcmp(device, "cuda")) return 1;
    if (strcmp(device, "cpu") != 0) dh_usage_error("--device: '%s' is not cpu, cuda or auto", device);
    return 0;
}
