/* libFuzzer target: the image-source decoders must reject any input cleanly
 * (no crash, leak, hang or huge allocation) — `make fuzz`.
 *
 * The first byte picks what is fed:
 *   0  dh_decode_image (JPEG / PNG from memory); byte 1 picks want_c
 *   1  an IDX images + labels pair; bytes 1-2 (little endian) give the size
 *      of the images file, the labels file is the rest
 *   2  one source file (archive, CIFAR-10 binary tarball, IDX) through
 *      dh_ingest_load; byte 1 picks the forced kind and the split
 * Files are written to two memfds (made once) and opened as /proc/self/fd/N. Limits are
 * small so that no input can make the library allocate much. */
#define _GNU_SOURCE
#include "ingest.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static dh_ingest_limits fuzz_limits(void) {
    dh_ingest_limits lim = dh_ingest_default_limits;
    lim.max_side = 1024;
    lim.max_pixels = 1 << 16;
    lim.max_member_bytes = 1 << 20;
    lim.max_total_bytes = 32 << 20;
    return lim;
}

/* The file of slot k (two memfds made once, rewritten for every input:
 * creating and removing files per input cost more than the parsing) holding
 * buf; its path in p. Returns the fd or -1. */
static int mem_file(int k, const uint8_t *buf, size_t n, char *p, size_t pn) {
    static int fds[2] = { -1, -1 };
    if (fds[k] < 0 && (fds[k] = memfd_create("fuzz", 0)) < 0) return -1;
    int fd = fds[k];
    if (ftruncate(fd, 0) != 0) return -1;
    size_t o = 0;
    while (o < n) {
        ssize_t w = pwrite(fd, buf + o, n - o, (off_t)o);
        if (w <= 0) return -1;
        o += (size_t)w;
    }
    snprintf(p, pn, "/proc/self/fd/%d", fd);
    return fd;
}

static void use_set(dh_ingest_set *s, const dh_ingest_opts *o) {
    dh_err e;
    if (dh_ingest_select(s, o, 1, 42, 8, 0, &e)) return;
    size_t n = (size_t)s->C * s->H * s->W;
    uint8_t *px = malloc(n ? n : 1);
    if (!px) return;
    unsigned sum = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (!dh_ingest_pixels(s, i, px, &e)) sum += px[0] + px[n - 1];
    (void)sum;
    free(px);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once++) setenv("TZ", "UTC", 0); /* else mktime (libarchive) reads /etc/localtime per member */
    if (size < 2) return 0;
    dh_err e;
    dh_ingest_limits lim = fuzz_limits();
    int mode = data[0] % 3, sel = data[1];
    if (mode == 0) {
        static const int wc[3] = { 0, 1, 3 };
        dh_decoder *d = dh_decoder_new(&e);
        if (!d) return 0;
        dh_image im;
        if (dh_decode_image(d, data + 2, size - 2, wc[sel % 3], &lim, &im, &e) == DH_OK) {
            size_t n = (size_t)im.w * im.h * im.c;
            volatile unsigned sum = im.px[0] + im.px[n - 1];
            (void)sum;
            free(im.px);
        }
        dh_decoder_free(d);
        return 0;
    }
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    o.lim = lim;
    o.threads = 1; /* deterministic */
    o.skip_bad = sel & 1;
    if (sel & 2) {
        o.resize_w = 5;
        o.resize_h = 3;
    }
    if (sel & 4) o.channels = (sel & 8) ? 3 : 1;
    char p1[64], p2[64];
    int fd1 = -1, fd2 = -1;
    dh_ingest_set s;
    if (mode == 1) {
        if (size < 4) return 0;
        size_t ni = (size_t)data[2] | (size_t)data[3] << 8;
        const uint8_t *rest = data + 4;
        size_t nr = size - 4;
        if (ni > nr) ni = nr;
        fd1 = mem_file(0, rest, ni, p1, sizeof p1);
        fd2 = mem_file(1, rest + ni, nr - ni, p2, sizeof p2);
        if (fd1 >= 0 && fd2 >= 0) {
            const char *paths[2] = { p1, p2 };
            o.kind = DH_SRC_IDX;
            if (dh_ingest_load(paths, 2, &o, &s, &e) == DH_OK) use_set(&s, &o);
            dh_ingest_free(&s);
        }
    } else {
        static const dh_src_kind kinds[4] = { DH_SRC_AUTO, DH_SRC_IMAGES, DH_SRC_CIFAR, DH_SRC_IDX };
        static const char *const splits[4] = { NULL, "all", "train", "test" };
        o.kind = kinds[(sel >> 4) & 3];
        o.split = splits[(sel >> 6) & 3];
        fd1 = mem_file(0, data + 2, size - 2, p1, sizeof p1);
        if (fd1 >= 0) {
            const char *paths[1] = { p1 };
            if (dh_ingest_load(paths, 1, &o, &s, &e) == DH_OK) use_set(&s, &o);
            dh_ingest_free(&s);
        }
    }
    return 0;
}
