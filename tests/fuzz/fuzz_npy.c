/* libFuzzer target: the .npy reader of `dh-npy import` (formats/stream/npy.c)
 * must reject any input cleanly (no crash, leak, hang or allocation beyond
 * its limits) — `make fuzz`, tests/fuzz/README.md.
 *
 * The input is a .npy file, read as dh-npy import reads its DATA file
 * (header, then every row, as packed bits too when it is a 2-D array of
 * bytes) and, when it is 1-D, also as its --labels file. */
#include "fuzz.h"
#include "npy.h"

#define FZ_MAX_ROW (1u << 16) /* bytes of one row: -max_len is smaller */

static void rows(const uint8_t *data, size_t size, int bits) {
    FILE *f = fz_open(data, size);
    if (!f) return;
    npy_hdr h;
    dh_err e;
    if (npy_read_header(f, "fuzz.npy", FZ_MAX_ROW, &h, &e) == DH_OK && h.elems > 0 && (!bits || h.esize == 1)) {
        size_t n = (size_t)h.elems * h.esize;
        unsigned char *in = malloc(n), *row = malloc(n + 1); /* n covers the f32, bits and copied rows */
        if (in && row)
            for (int64_t i = 0; i < h.shape[0]; i++)
                if (npy_read_row(f, "fuzz.npy", &h, bits, i, in, row, &e)) break;
        free(in);
        free(row);
    }
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rows(data, size, 0);
    rows(data, size, 1);
    FILE *f = fz_open(data, size);
    if (!f) return 0;
    npy_hdr h;
    dh_err e;
    if (npy_read_header(f, "fuzz.npy", 0, &h, &e) == DH_OK && h.ndim == 1) {
        rewind(f);
        int32_t *lab;
        if (npy_read_labels(f, "labels.npy", h.shape[0], &lab, &e) == DH_OK) free(lab);
    }
    fclose(f);
    return 0;
}
