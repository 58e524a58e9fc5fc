/* dk_prog.h — device selection for the programs in bin/: --device parsed
 * (and initialised) with the programs' one-line error convention
 * (formats/dh_prog.h). Unlike the rest of kernels/, these print and exit:
 * they are for main(), not for library code.
 */
#ifndef DK_PROG_H
#define DK_PROG_H
#include "dk.h"

/* dk_device_parse(device) (NULL: $DH_DEVICE, else auto); on failure dies
 * "dh-prog: --device: reason". */
dk_device dk_prog_device_parse(const char *device);
/* dk_prog_device_parse, then dk_init; on failure of the latter dies
 * "dh-prog: cuda: reason". */
dk_device dk_prog_device_open(const char *device);
/* --precision fp32|bf16: the CPU engine's precision, as $DH_PRECISION (which
 * it sets for dk_init). Dies "--precision: ..." on another value; the next
 * dk_prog_device_open dies when the device is CUDA and P is bf16. */
void dk_prog_set_precision(const char *p);

#endif
