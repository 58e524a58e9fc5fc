/* libFuzzer target: model loading must reject any input cleanly (no crash,
 * leak, hang or allocation beyond the limits) — `make fuzz`,
 * tests/fuzz/README.md.
 *
 * The input is a model stream (formats/stream/dhs_model.c: named f32
 * tensors plus metadata). What loads is then used as the programs use it:
 * bound as a hash function (kernels/hash/hashfn.c; prefix "" for hash
 * models, "hash." for deep hash models) and made to encode two feature rows
 * when that is small; its network specification ("net" in the metadata)
 * parsed and its parameter count compared with the tensors (what
 * net_from_model checks first); and the model written again and read back,
 * which must give the same tensors (else the target aborts). */
#include "fuzz.h"
#include "dhs.h"
#include "hashfn.h"
#include "netspec.h"

FZ_STREAM_MUTATOR

static const dhs_limits fz_lim = { .max_header_bytes = 64u << 10, .max_chunk_bytes = 1u << 20, .max_rows = 1u << 16 };

static void encode(const dhs_model *m, const char *prefix) {
    dh_hashfn h;
    dh_err e;
    if (dh_hashfn_bind(&h, m, prefix, &e)) return;
    if ((int64_t)h.D * h.K > (1 << 20)) return;
    float *z = calloc((size_t)h.D * 2, sizeof *z);
    uint8_t *codes = malloc(((size_t)h.K + 7) / 8 * 2);
    if (z && codes) {
        for (int d = 0; d < h.D; d++) z[h.D + d] = (float)(d % 7) - 3.0f;
        dh_hashfn_encode(&h, z, 2, codes, &e);
    }
    free(z);
    free(codes);
}

static void net_spec(const dhs_model *m) {
    const char *text = dhs_meta_str(m->meta, "net");
    if (!text) return;
    netspec ns;
    dh_err e;
    if (netspec_parse(text, "model:net", &ns, &e)) return;
    int64_t have = 0;
    for (int i = 0; i < m->ntensors; i++) have += m->t[i].n;
    volatile int fits = netspec_nparams(&ns) <= have;
    (void)fits;
    netspec_free(&ns);
}

static void same_model(const dhs_model *a, const dhs_model *b) {
    int same = a->ntensors == b->ntensors;
    for (int i = 0; same && i < a->ntensors; i++) {
        const dhs_tensor *x = &a->t[i], *y = &b->t[i];
        same = !strcmp(x->name, y->name) && x->ndim == y->ndim && x->n == y->n &&
               !memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) &&
               !memcmp(x->data, y->data, sizeof *x->data * (size_t)x->n);
    }
    if (!same) {
        fprintf(stderr, "fuzz_model: the model written again reads back different\n");
        abort();
    }
}

static void write_back(const dhs_model *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return;
    dh_err e;
    if (dhs_model_write(out, "copy", m, &e)) {
        fprintf(stderr, "fuzz_model: the model does not write again: %s\n", e.msg);
        abort();
    }
    fclose(out);
    FILE *f = fz_open((const uint8_t *)buf, len);
    dhs_reader *r = f ? dhs_open(f, "copy", NULL, &e) : NULL;
    dhs_model m2;
    if (!r || dhs_model_read(r, &m2, &e)) {
        fprintf(stderr, "fuzz_model: the model written again does not read back: %s\n", e.msg);
        abort();
    }
    same_model(m, &m2);
    dhs_model_free(&m2);
    dhs_close(r);
    fclose(f);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fz_open(data, size);
    if (!f) return 0;
    dh_err e;
    dhs_reader *r = dhs_open(f, "fuzz", &fz_lim, &e);
    if (r) {
        dhs_model m;
        if (dhs_model_read(r, &m, &e) == DH_OK) {
            encode(&m, "");
            encode(&m, "hash.");
            net_spec(&m);
            write_back(&m);
        }
        dhs_model_free(&m);
        dhs_close(r);
    }
    fclose(f);
    return 0;
}
