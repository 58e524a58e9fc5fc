/* libFuzzer target: the network-specification parser must reject any text
 * cleanly (no crash, leak, hang or huge allocation) — `make fuzz`. */
#include "netspec.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1); /* netspec_parse takes a C string */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    netspec ns;
    dh_err e;
    if (netspec_parse(text, "fuzz", &ns, &e) == DH_OK) {
        /* touch what programs use: shapes, names, parameter count */
        int64_t n = netspec_nparams(&ns);
        for (int i = 0; i < ns.nlayers; i++)
            n += ns.layers[i].shape[0] + (int64_t)strlen(ns.layers[i].name) + strlen(ns_type_name(ns.layers[i].type));
        n += ns.zdim + (int64_t)strlen(ns.zname) + (int64_t)strlen(ns.text);
        (void)n;
        netspec_free(&ns);
    }
    free(text);
    return 0;
}
