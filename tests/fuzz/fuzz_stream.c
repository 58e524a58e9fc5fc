/* libFuzzer target: the stream reader must reject any input cleanly (no
 * crash, leak, hang or huge allocation) — `make fuzz`. */
#define _GNU_SOURCE
#include "dhs.h"
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return 0;
    dhs_limits lim = dhs_default_limits;
    lim.max_chunk_bytes = 1 << 20; /* keep allocations within the fuzzer's budget */
    lim.max_header_bytes = 1 << 20;
    dh_err e;
    dhs_reader *r = dhs_open(f, "fuzz", &lim, &e);
    if (r) {
        dhs_chunk *c;
        int64_t rows = 0;
        while (dhs_read_chunk(r, &c, &e) == DH_OK) {
            /* touch the data the way programs do */
            for (int i = 0; i < dhs_reader_schema(r)->nfields; i++)
                if (c->off[i]) rows += (int64_t)c->off[i][c->nrows];
            rows += c->nrows;
        }
        dhs_close(r);
        (void)rows;
    }
    fclose(f);
    return 0;
}
