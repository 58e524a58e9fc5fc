/* dk_prog.c — device selection for the programs' main() (dk_prog.h). */
#include "dk_prog.h"
#include "dh_prog.h"

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
