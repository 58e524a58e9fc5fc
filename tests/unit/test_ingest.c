/* test_ingest.c — the ingest library: JPEG/PNG decoding, conversion,
 * image trees (folder, tar.gz, zip), CIFAR-10 binary, IDX, selection.
 *
 * Every source is made here (libpng/libjpeg/libarchive/zlib writers).
 * `test_ingest --fixtures DIR` writes the same sources into DIR for the
 * shell tests (tests/cli/ingest.sh) instead of running the tests. */
#define _GNU_SOURCE
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "ingest.h"

/* ---- buffers -------------------------------------------------------------------- */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;
static void buf_add(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* ---- encoders --------------------------------------------------------------------- */
static void png_wr(png_structp p, png_bytep d, size_t n) { buf_add(png_get_io_ptr(p), d, n); }
static void png_fl(png_structp p) { (void)p; }

/* px interleaved (h, w, ch) with ch 1..4 (grey, grey+alpha, RGB, RGBA), depth 8 or 16
 * (16: each byte v written as v*257), palette when pal (ch must be 3). */
static buf encode_png(const uint8_t *px, int w, int h, int ch, int depth, int interlace, int pal) {
    buf b = { 0 };
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    int ct = ch == 1   ? PNG_COLOR_TYPE_GRAY
             : ch == 2 ? PNG_COLOR_TYPE_GRAY_ALPHA
             : ch == 3 ? PNG_COLOR_TYPE_RGB
                       : PNG_COLOR_TYPE_RGBA;
    int bpp = pal ? 1 : depth / 8;
    if (pal) ch = 1; /* one palette index per pixel */
    uint8_t *idx = NULL;
    /* no setjmp: a libpng error in a test encoder aborts */
    png_set_write_fn(p, &b, png_wr, png_fl);
    if (pal) {
        png_color colors[256];
        int nc = 0;
        idx = malloc((size_t)w * h);
        for (int i = 0; i < w * h; i++) {
            int k;
            for (k = 0; k < nc; k++)
                if (colors[k].red == px[3 * i] && colors[k].green == px[3 * i + 1] && colors[k].blue == px[3 * i + 2])
                    break;
            if (k == nc) {
                colors[nc].red = px[3 * i];
                colors[nc].green = px[3 * i + 1];
                colors[nc].blue = px[3 * i + 2];
                nc++;
            }
            idx[i] = (uint8_t)k;
        }
        png_set_IHDR(p, info, w, h, 8, PNG_COLOR_TYPE_PALETTE, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_set_PLTE(p, info, colors, nc);
    } else {
        png_set_IHDR(p, info, w, h, depth, ct, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    }
    png_write_info(p, info);
    uint8_t *rows = malloc((size_t)w * h * ch * bpp);
    png_bytep *rp = malloc(sizeof(png_bytep) * h);
    for (int y = 0; y < h; y++) {
        rp[y] = rows + (size_t)y * w * ch * bpp;
        for (int i = 0; i < w * ch; i++) {
            uint8_t v = pal ? idx[y * w + i] : px[(size_t)y * w * ch + i];
            if (bpp == 2) {
                rp[y][2 * i] = v;
                rp[y][2 * i + 1] = v;
            } /* v*257 big-endian */
            else
                rp[y][i] = v;
        }
    }
    png_write_image(p, rp);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    free(rows);
    free(rp);
    free(idx);
    return b;
}

static buf encode_jpeg(const uint8_t *px, int w, int h, int ch, int quality) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long outn = 0;
    jpeg_mem_dest(&ci, &out, &outn);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = ch;
    ci.in_color_space = ch == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    if (ch == 3) { /* no chroma subsampling: flat colours come back exactly */
        for (int i = 0; i < ci.num_components; i++) ci.comp_info[i].h_samp_factor = ci.comp_info[i].v_samp_factor = 1;
    }
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW r = (JSAMPROW)px + (size_t)ci.next_scanline * w * ch;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    buf b = { 0 };
    buf_add(&b, out, outn);
    free(out);
    return b;
}

static void write_file(const char *path, const void *d, size_t n) {
    char *dir = strdup(path);
    for (char *q = dir + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            mkdir(dir, 0755);
            *q = '/';
        }
    free(dir);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    fwrite(d, 1, n, f);
    fclose(f);
}

/* ---- the image tree fixture -------------------------------------------------------- */
/* 8x6 images. Value of PNG pixels: a pattern; of JPEG pixels: a flat colour. */
#define TW 8
#define TH 6
static uint8_t pat(int s, int k, int i, int ch, int y, int x) {
    return (uint8_t)((s * 53 + k * 31 + i * 17 + ch * 7 + y * 3 + x * 5) & 255);
}
static uint8_t flat(int k, int i, int ch) { return (uint8_t)(40 + 10 * k + 20 * i + 30 * ch); }

typedef struct tree_img {
    const char *path;
    int s, k, i, jpeg;
} tree_img;
static const tree_img tree[] = {
    { "train/cat/0.png", 0, 0, 0, 0 }, { "train/cat/1.png", 0, 0, 1, 0 }, { "train/cat/2.png", 0, 0, 2, 0 },
    { "train/dog/0.jpg", 0, 1, 0, 1 }, { "train/dog/1.jpg", 0, 1, 1, 1 }, { "train/dog/2.png", 0, 1, 2, 0 },
    { "test/cat/0.png", 1, 0, 0, 0 },  { "test/emu/0.jpg", 1, 2, 0, 1 },
};
#define NTREE (int)(sizeof tree / sizeof tree[0])

static buf tree_image(const tree_img *t) {
    uint8_t px[TH * TW * 3];
    for (int y = 0; y < TH; y++)
        for (int x = 0; x < TW; x++)
            for (int c = 0; c < 3; c++)
                px[(y * TW + x) * 3 + c] = t->jpeg ? flat(t->k, t->i, c) : pat(t->s, t->k, t->i, c, y, x);
    return t->jpeg ? encode_jpeg(px, TW, TH, 3, 95) : encode_png(px, TW, TH, 3, 8, 0, 0);
}

static void make_tree(const char *dir) {
    for (int j = 0; j < NTREE; j++) {
        buf b = tree_image(&tree[j]);
        char *p;
        if (asprintf(&p, "%s/%s", dir, tree[j].path) < 0) abort();
        write_file(p, b.p, b.n);
        free(p);
        free(b.p);
    }
    char *p;
    if (asprintf(&p, "%s/README.txt", dir) < 0) abort();
    write_file(p, "not an image\n", 13);
    free(p);
    if (asprintf(&p, "%s/train/cat/.hidden.png", dir) < 0) abort();
    write_file(p, "junk", 4);
    free(p);
}

/* An archive (libarchive writer) of named buffers. fmt: "tar.gz", "tar", "zip" */
typedef struct member {
    const char *name;
    const uint8_t *d;
    size_t n;
} member;
static void write_archive(const char *path, const char *fmt, const member *m, int n) {
    struct archive *a = archive_write_new();
    if (!strcmp(fmt, "zip"))
        archive_write_set_format_zip(a);
    else
        archive_write_set_format_pax_restricted(a);
    if (!strcmp(fmt, "tar.gz")) archive_write_add_filter_gzip(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        fprintf(stderr, "%s\n", archive_error_string(a));
        abort();
    }
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_size(e, (la_int64_t)m[i].n);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_write_header(a, e);
        archive_write_data(a, m[i].d, m[i].n);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void make_tree_archive(const char *path, const char *fmt, const char *prefix) {
    member m[NTREE + 1];
    buf bs[NTREE];
    char *names[NTREE];
    for (int j = 0; j < NTREE; j++) {
        bs[j] = tree_image(&tree[j]);
        if (asprintf(&names[j], "%s%s", prefix, tree[j].path) < 0) abort();
        m[j] = (member){ names[j], bs[j].p, bs[j].n };
    }
    m[NTREE] = (member){ "README", (const uint8_t *)"hello\n", 6 };
    write_archive(path, fmt, m, NTREE + 1);
    for (int j = 0; j < NTREE; j++) {
        free(bs[j].p);
        free(names[j]);
    }
}

/* CIFAR-10 binary: data_batch_1 (3 records), data_batch_2 (2), test_batch (2). */
static uint8_t cifar_px(int b, int r, int i) { return (uint8_t)(b * 71 + r * 13 + i * 7); }
static int cifar_label(int b, int r) { return (b * 3 + r) % 10; }
static buf cifar_batch(int b, int nrec, int badlabel) {
    buf o = { 0 };
    for (int r = 0; r < nrec; r++) {
        uint8_t rec[3073];
        rec[0] = (uint8_t)(badlabel && r == 1 ? 12 : cifar_label(b, r));
        for (int i = 0; i < 3072; i++) rec[1 + i] = cifar_px(b, r, i);
        buf_add(&o, rec, sizeof rec);
    }
    return o;
}
static void make_cifar(const char *path, int badlabel, int badsize) {
    buf b1 = cifar_batch(0, 3, 0), b2 = cifar_batch(1, 2, badlabel), t = cifar_batch(2, 2, 0);
    if (badsize) t.n -= 100;
    const char *meta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    member m[] = {
        { "cifar-10-batches-bin/batches.meta.txt", (const uint8_t *)meta, strlen(meta) },
        { "cifar-10-batches-bin/data_batch_2.bin", b2.p, b2.n },
        { "cifar-10-batches-bin/data_batch_1.bin", b1.p, b1.n },
        { "cifar-10-batches-bin/test_batch.bin", t.p, t.n },
        { "cifar-10-batches-bin/readme.html", (const uint8_t *)"<html>", 6 },
    };
    write_archive(path, "tar.gz", m, 5);
    free(b1.p);
    free(b2.p);
    free(t.p);
}

/* IDX: n images h x w and n labels; gz when gz. */
static uint8_t idx_px(int i, int y, int x) { return (uint8_t)(i * 11 + y * 7 + x); }
static void write_idx(const char *path, int gz, int ndims, const uint32_t *dims, const uint8_t *data, size_t n) {
    uint8_t hdr[4 + 16] = { 0, 0, 8, (uint8_t)ndims };
    for (int i = 0; i < ndims; i++) {
        hdr[4 + 4 * i] = dims[i] >> 24;
        hdr[5 + 4 * i] = dims[i] >> 16;
        hdr[6 + 4 * i] = dims[i] >> 8;
        hdr[7 + 4 * i] = dims[i];
    }
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, hdr, 4 + 4 * ndims);
        if (n) gzwrite(g, data, (unsigned)n);
        gzclose(g);
    } else {
        buf b = { 0 };
        buf_add(&b, hdr, 4 + 4 * ndims);
        buf_add(&b, data, n);
        write_file(path, b.p, b.n);
        free(b.p);
    }
}
static void make_idx(const char *dir, const char *prefix, int n, int nlab, int gz) {
    uint8_t *px = malloc((size_t)n * 5 * 4), lab[64];
    for (int i = 0; i < n; i++)
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 4; x++) px[(i * 5 + y) * 4 + x] = idx_px(i, y, x);
    for (int i = 0; i < nlab; i++) lab[i] = (uint8_t)(i % 3);
    char *p;
    uint32_t d3[3] = { (uint32_t)n, 5, 4 }, d1[1] = { (uint32_t)nlab };
    if (asprintf(&p, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "") < 0) abort();
    write_idx(p, gz, 3, d3, px, (size_t)n * 20);
    free(p);
    if (asprintf(&p, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "") < 0) abort();
    write_idx(p, gz, 1, d1, lab, nlab);
    free(p);
    free(px);
}

static char tmpdir[256];
static char *tpath(const char *rel) {
    static char b[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(b[k], sizeof b[k], "%s/%s", tmpdir, rel);
    return b[k];
}

/* ---- decoder tests ------------------------------------------------------------------- */
static dh_decoder *dec;

static void t_png_roundtrip(void) {
    const int w = 7, h = 5;
    uint8_t px[7 * 5 * 4];
    for (int i = 0; i < w * h * 4; i++) px[i] = (uint8_t)(i * 37 + 11);
    dh_err e = { 0 };
    for (int ch = 1; ch <= 4; ch++) {
        for (int depth = 8; depth <= 16; depth += 8) {
            for (int il = 0; il <= 1; il++) {
                buf b = encode_png(px, w, h, ch, depth, il, 0);
                dh_image im;
                int rc = dh_decode_image(dec, b.p, b.n, 0, NULL, &im, &e);
                free(b.p);
                CHECKF(rc == 0, "ch %d depth %d: %s", ch, depth, e.msg);
                if (rc) continue;
                int oc = ch <= 2 ? 1 : 3; /* alpha dropped */
                CHECK(im.w == w && im.h == h && im.c == oc);
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        for (int c = 0; c < oc; c++)
                            CHECKF(im.px[(c * h + y) * w + x] == px[(y * w + x) * ch + c],
                                   "ch %d depth %d il %d at %d,%d,%d", ch, depth, il, c, y, x);
                free(im.px);
            }
        }
    }
}

static void t_png_palette_and_forced_channels(void) {
    const int w = 4, h = 3;
    uint8_t px[4 * 3 * 3];
    for (int i = 0; i < w * h; i++) {
        px[3 * i] = (uint8_t)(i * 20);
        px[3 * i + 1] = (uint8_t)(255 - i * 9);
        px[3 * i + 2] = (uint8_t)(i & 1 ? 200 : 3);
    }
    dh_err e = { 0 };
    dh_image im;
    buf b = encode_png(px, w, h, 3, 8, 0, 1);
    REQUIRE(dh_decode_image(dec, b.p, b.n, 0, NULL, &im, &e) == 0);
    CHECK(im.c == 3);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++) CHECK(im.px[c * w * h + i] == px[3 * i + c]);
    free(im.px);
    REQUIRE(dh_decode_image(dec, b.p, b.n, 1, NULL, &im, &e) == 0); /* forced grey */
    CHECK(im.c == 1);
    for (int i = 0; i < w * h; i++) CHECK(im.px[i] == dh_rgb_to_grey(px[3 * i], px[3 * i + 1], px[3 * i + 2]));
    free(im.px);
    free(b.p);
    b = encode_png(px, w, h, 1, 8, 0, 0); /* grey forced to RGB: three equal planes */
    REQUIRE(dh_decode_image(dec, b.p, b.n, 3, NULL, &im, &e) == 0);
    CHECK(im.c == 3);
    for (int i = 0; i < w * h; i++)
        CHECK(im.px[i] == px[i] && im.px[w * h + i] == px[i] && im.px[2 * w * h + i] == px[i]);
    free(im.px);
    free(b.p);
}

static void t_jpeg_roundtrip(void) {
    const int w = 16, h = 16;
    uint8_t px[16 * 16 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            px[(y * w + x) * 3] = (uint8_t)(60 + 4 * x);
            px[(y * w + x) * 3 + 1] = (uint8_t)(90 + 3 * y);
            px[(y * w + x) * 3 + 2] = (uint8_t)(150 - 2 * x - y);
        }
    dh_err e = { 0 };
    dh_image im;
    buf b = encode_jpeg(px, w, h, 3, 95);
    REQUIRE(dh_decode_image(dec, b.p, b.n, 0, NULL, &im, &e) == 0);
    CHECK(im.w == w && im.h == h && im.c == 3);
    double sum = 0, mx = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double d = fabs((double)im.px[(c * h + y) * w + x] - px[(y * w + x) * 3 + c]);
                sum += d;
                if (d > mx) mx = d;
            }
    printf("# jpeg q95 16x16 ramp: mean |err| %.3f, max %.0f\n", sum / (w * h * 3), mx);
    CHECK(sum / (w * h * 3) < 2.0);
    CHECK(mx <= 8);
    free(im.px);
    /* grey JPEG stays one channel; RGB JPEG forced grey */
    REQUIRE(dh_decode_image(dec, b.p, b.n, 1, NULL, &im, &e) == 0);
    CHECK(im.c == 1);
    free(im.px);
    free(b.p);
    uint8_t g[16 * 16];
    for (int i = 0; i < 256; i++) g[i] = (uint8_t)(100 + (i % 16));
    b = encode_jpeg(g, 16, 16, 1, 95);
    REQUIRE(dh_decode_image(dec, b.p, b.n, 0, NULL, &im, &e) == 0);
    CHECK(im.c == 1);
    for (int i = 0; i < 256; i++) CHECK(abs(im.px[i] - g[i]) <= 3);
    free(im.px);
    free(b.p);
}

static void t_jpeg_cmyk(void) {
    uint8_t px[8 * 8 * 4];
    /* K falls by row (a flat image would hide a row-stride bug) */
    for (int i = 0; i < 64; i++) {
        px[4 * i] = 200;
        px[4 * i + 1] = 100;
        px[4 * i + 2] = 50;
        px[4 * i + 3] = (uint8_t)(255 - 24 * (i / 8));
    }
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long outn = 0;
    jpeg_mem_dest(&ci, &out, &outn);
    ci.image_width = 8;
    ci.image_height = 8;
    ci.input_components = 4;
    ci.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&ci); /* CMYK with an Adobe marker: read as inverted */
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < 8) {
        JSAMPROW r = px + ci.next_scanline * 32;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    dh_image im;
    dh_err e = { 0 };
    int rc = dh_decode_image(dec, out, outn, 0, NULL, &im, &e);
    CHECKF(rc == 0, "%s", e.msg);
    if (!rc) {
        CHECK(im.c == 3 && im.w == 8 && im.h == 8);
        for (int y = 0; y < 8; y++) {
            int k = 255 - 24 * y, i = y * 8 + 3;
            CHECKF(abs(im.px[i] - 200 * k / 255) <= 3 && abs(im.px[64 + i] - 100 * k / 255) <= 3 &&
                       abs(im.px[128 + i] - 50 * k / 255) <= 3,
                   "row %d: rgb %d %d %d", y, im.px[i], im.px[64 + i], im.px[128 + i]);
        }
        free(im.px);
    }
    rc = dh_decode_image(dec, out, outn, 1, NULL, &im, &e);
    CHECK(rc == 0 && im.c == 1 && abs(im.px[0] - dh_rgb_to_grey(200, 100, 50)) <= 2);
    if (!rc) free(im.px);
    free(out);
}

static void t_bad_images(void) {
    uint8_t px[16 * 16 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 7);
    dh_err e = { 0 };
    dh_image im;
    buf j = encode_jpeg(px, 16, 16, 3, 90), p = encode_png(px, 16, 16, 3, 8, 0, 0);
    /* truncated JPEG: libjpeg's "premature end" warning is an error */
    CHECK(dh_decode_image(dec, j.p, j.n / 2, 0, NULL, &im, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "JPEG") != NULL, "%s", e.msg);
    /* the decoder object is reusable after an error */
    CHECK(dh_decode_image(dec, j.p, j.n, 0, NULL, &im, &e) == 0);
    free(im.px);
    CHECK(dh_decode_image(dec, p.p, p.n - 30, 0, NULL, &im, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "PNG") != NULL, "%s", e.msg);
    /* a damaged IDAT byte: CRC error */
    uint8_t *q = malloc(p.n);
    memcpy(q, p.p, p.n);
    q[p.n - 20] ^= 0x55;
    CHECK(dh_decode_image(dec, q, p.n, 0, NULL, &im, &e) == DH_EFORMAT);
    free(q);
    CHECK(dh_decode_image(dec, (const uint8_t *)"GIF89a......", 12, 0, NULL, &im, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "not a JPEG or PNG") != NULL, "%s", e.msg);
    CHECK(dh_decode_image(dec, (const uint8_t *)"", 0, 0, NULL, &im, &e) == DH_EFORMAT);
    free(j.p);
    free(p.p);
}

static void t_decoding_limits(void) {
    uint8_t px[64 * 64 * 3] = { 0 };
    dh_err e = { 0 };
    dh_image im;
    dh_ingest_limits lim = dh_ingest_default_limits;
    lim.max_pixels = 1000;
    buf j = encode_jpeg(px, 64, 64, 3, 90), p = encode_png(px, 64, 64, 3, 8, 0, 0);
    CHECK(dh_decode_image(dec, j.p, j.n, 0, &lim, &im, &e) == DH_ELIMIT);
    CHECK(dh_decode_image(dec, p.p, p.n, 0, &lim, &im, &e) == DH_ELIMIT);
    CHECKF(strstr(e.msg, "limit") != NULL, "%s", e.msg);
    /* a bomb: a PNG header claiming 40000 x 40000 (CRC fixed) with a tiny body */
    uint8_t *q = malloc(p.n);
    memcpy(q, p.p, p.n);
    uint32_t big = 40000;
    for (int k = 0; k < 2; k++) {
        q[16 + 4 * k] = big >> 24;
        q[17 + 4 * k] = big >> 16;
        q[18 + 4 * k] = big >> 8;
        q[19 + 4 * k] = big;
    }
    uint32_t crc = (uint32_t)crc32(0, q + 12, 17);
    q[29] = crc >> 24;
    q[30] = crc >> 16;
    q[31] = crc >> 8;
    q[32] = crc;
    CHECK(dh_decode_image(dec, q, p.n, 0, NULL, &im, &e) == DH_ELIMIT);
    CHECKF(strstr(e.msg, "40000x40000") != NULL, "%s", e.msg);
    /* the same in a JPEG SOF0 marker */
    memcpy(q, j.p, j.n < p.n ? j.n : p.n);
    free(q);
    q = malloc(j.n);
    memcpy(q, j.p, j.n);
    for (size_t i = 2; i + 9 < j.n; i++)
        if (q[i] == 0xff && (q[i + 1] == 0xc0 || q[i + 1] == 0xc1)) {
            q[i + 5] = 0xea;
            q[i + 6] = 0x60; /* height 60000 */
            q[i + 7] = 0xea;
            q[i + 8] = 0x60; /* width 60000 */
            break;
        }
    CHECK(dh_decode_image(dec, q, j.n, 0, NULL, &im, &e) == DH_ELIMIT);
    free(q);
    free(j.p);
    free(p.p);
}

static void t_resize_and_convert(void) {
    uint8_t a[4 * 4], b[2 * 2], c[4 * 4];
    for (int i = 0; i < 16; i++) a[i] = 77;
    dh_resize_plane(a, 4, 4, b, 2, 2);
    for (int i = 0; i < 4; i++) CHECK(b[i] == 77);
    /* 2x2 blocks of 0/100/200/40 -> their values at half size (centres align) */
    uint8_t blk[4] = { 0, 100, 200, 40 };
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) a[y * 4 + x] = blk[(y / 2) * 2 + x / 2];
    dh_resize_plane(a, 4, 4, b, 2, 2);
    for (int i = 0; i < 4; i++) CHECKF(b[i] == blk[i], "%d: %d vs %d", i, b[i], blk[i]);
    dh_resize_plane(a, 4, 4, c, 4, 4);
    CHECK(!memcmp(a, c, 16));
    /* upscale a horizontal ramp stays monotone and within range */
    uint8_t r[2] = { 0, 200 }, u[8];
    dh_resize_plane(r, 1, 2, u, 1, 8);
    CHECK(u[0] == 0 && u[7] == 200);
    for (int i = 1; i < 8; i++) CHECK(u[i] >= u[i - 1]);
    /* channels */
    uint8_t rgb[3 * 4] = { 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120 }, g[4], g3[12];
    CHECK(dh_image_convert(rgb, 3, 2, 2, g, 1, 2, 2) == 0);
    for (int i = 0; i < 4; i++) CHECK(g[i] == dh_rgb_to_grey(rgb[i], rgb[4 + i], rgb[8 + i]));
    CHECK(dh_image_convert(g, 1, 2, 2, g3, 3, 2, 2) == 0);
    for (int i = 0; i < 4; i++) CHECK(g3[i] == g[i] && g3[4 + i] == g[i] && g3[8 + i] == g[i]);
    CHECK(dh_rgb_to_grey(255, 255, 255) == 255 && dh_rgb_to_grey(0, 0, 0) == 0);
}

/* Damaged images: random byte changes and cuts never crash (run under ASan);
 * each decode either succeeds with a sane image or fails with a message. */
static void t_mutated_images(void) {
    uint8_t px[24 * 20 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 13 + (i / 60) * 7);
    buf srcs[3] = { encode_jpeg(px, 24, 20, 3, 80), encode_png(px, 24, 20, 3, 8, 0, 0),
                    encode_png(px, 24, 20, 3, 8, 1, 0) };
    uint64_t st = 12345;
    int nok = 0, nerr = 0;
    for (int k = 0; k < 3; k++) {
        uint8_t *q = malloc(srcs[k].n);
        for (int it = 0; it < 400; it++) {
            memcpy(q, srcs[k].p, srcs[k].n);
            size_t n = srcs[k].n;
            int nflip = 1 + (int)(dh_splitmix64(&st) % 4);
            for (int f = 0; f < nflip; f++) q[dh_splitmix64(&st) % n] = (uint8_t)dh_splitmix64(&st);
            if (it % 3 == 0) n = 1 + dh_splitmix64(&st) % n;
            dh_image im;
            dh_err e = { 0 };
            int rc = dh_decode_image(dec, q, n, 0, NULL, &im, &e);
            if (rc == 0) {
                CHECK(im.w > 0 && im.h > 0 && (im.c == 1 || im.c == 3) && im.px);
                free(im.px);
                nok++;
            } else {
                CHECK(e.msg[0] != 0);
                nerr++;
            }
        }
        free(q);
        free(srcs[k].p);
    }
    printf("# mutated images: %d decoded, %d rejected\n", nok, nerr);
    CHECK(nerr > 0);
}

/* ---- sources ------------------------------------------------------------------------ */
static int load(const char *path, const char *split, dh_ingest_set *s, dh_err *e) {
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    o.split = split;
    o.threads = 2;
    const char *p[1] = { path };
    return dh_ingest_load(p, 1, &o, s, e);
}
static int load_sel(const char *path, const char *split, dh_ingest_set *s, dh_err *e) {
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    o.split = split;
    int rc = load(path, split, s, e);
    if (!rc) rc = dh_ingest_select(s, &o, 0, 0, 0, 0, e);
    return rc;
}

/* the train split of the tree as loaded from any container */
static void check_tree_train(dh_ingest_set *s, const char *prefix) {
    CHECK(s->kind == DH_SRC_IMAGES);
    CHECK(s->nclasses == 3);
    if (s->nclasses == 3)
        CHECK(!strcmp(s->classes[0], "cat") && !strcmp(s->classes[1], "dog") && !strcmp(s->classes[2], "emu"));
    CHECK(!strcmp(s->split, "train"));
    REQUIRE(s->n == 6);
    CHECK(s->C == 3 && s->H == TH && s->W == TW);
    CHECK(s->class_counts[0] == 3 && s->class_counts[1] == 3 && s->class_counts[2] == 0);
    uint8_t px[3 * TH * TW];
    for (int j = 0; j < 6; j++) {
        const tree_img *t = &tree[j];
        char want[128];
        snprintf(want, sizeof want, "%s%s", prefix, t->path);
        CHECKF(!strcmp(s->items[j]->id, want), "id %s, want %s", s->items[j]->id, want);
        CHECK(s->items[j]->label == t->k);
        dh_err e;
        REQUIRE(dh_ingest_pixels(s, j, px, &e) == 0);
        int maxd = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < TH; y++)
                for (int x = 0; x < TW; x++) {
                    int want_v = t->jpeg ? flat(t->k, t->i, c) : pat(t->s, t->k, t->i, c, y, x);
                    int d = abs(px[(c * TH + y) * TW + x] - want_v);
                    if (d > maxd) maxd = d;
                }
        CHECKF(t->jpeg ? maxd <= 2 : maxd == 0, "%s: max |err| %d", t->path, maxd);
    }
}

static void t_tree_folder(void) {
    dh_ingest_set s;
    dh_err e = { 0 };
    int rc = load_sel(tpath("tree"), "train", &s, &e);
    CHECKF(rc == 0, "%s", e.msg);
    if (!rc) check_tree_train(&s, "");
    dh_ingest_free(&s);
    rc = load_sel(tpath("tree"), "test", &s, &e);
    CHECKF(rc == 0, "%s", e.msg);
    CHECK(s.n == 2 && s.nclasses == 3);
    if (s.n == 2) CHECK(s.items[0]->label == 0 && s.items[1]->label == 2);
    dh_ingest_free(&s);
    rc = load_sel(tpath("tree"), "all", &s, &e);
    CHECK(rc == 0 && s.n == 8);
    dh_ingest_free(&s);
}

static void t_tree_archives(void) {
    const char *fmts[3] = { "tar.gz", "tar", "zip" };
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "tree.%s", fmts[i]);
        make_tree_archive(tpath(name), fmts[i], "./data/");
        dh_ingest_set s;
        dh_err e = { 0 };
        int rc = load_sel(tpath(name), "train", &s, &e);
        CHECKF(rc == 0, "%s: %s", fmts[i], e.msg);
        if (!rc) check_tree_train(&s, "data/");
        dh_ingest_free(&s);
    }
}

static void t_split_errors(void) {
    dh_ingest_set s;
    dh_err e = { 0 };
    CHECK(load(tpath("tree.tar.gz"), "valid", &s, &e) == DH_EINVAL);
    CHECKF(strstr(e.msg, "unknown split 'valid'") && strstr(e.msg, "test, train"), "%s", e.msg);
    dh_ingest_free(&s);
    CHECK(load(tpath("tree.tar.gz"), NULL, &s, &e) == DH_EINVAL);
    CHECKF(strstr(e.msg, "several splits"), "%s", e.msg);
    dh_ingest_free(&s);
    /* <class>/<image> only: no --split needed, any --split is unknown */
    int rc = load(tpath("tree/train"), NULL, &s, &e);
    CHECKF(rc == 0 && s.n == 6 && !strcmp(s.split, ""), "%s", e.msg);
    dh_ingest_free(&s);
    CHECK(load(tpath("tree/train"), "train", &s, &e) == DH_EINVAL);
    dh_ingest_free(&s);
}

static void t_bad_members(void) {
    uint8_t px[TH * TW * 3] = { 0 };
    buf good = encode_png(px, TW, TH, 3, 8, 0, 0), big = encode_png(px, 4, 4, 3, 8, 0, 0);
    member m[] = { { "s/a/0.png", good.p, good.n },
                   { "s/a/1.png", good.p, good.n / 2 },
                   { "s/b/0.png", good.p, good.n } };
    write_archive(tpath("bad.tar"), "tar", m, 3);
    dh_ingest_set s;
    dh_err e = { 0 };
    CHECK(load(tpath("bad.tar"), NULL, &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "member s/a/1.png: PNG") != NULL, "%s", e.msg);
    dh_ingest_free(&s);
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    o.skip_bad = 1;
    const char *p[1] = { tpath("bad.tar") };
    REQUIRE(dh_ingest_load(p, 1, &o, &s, &e) == 0);
    CHECK(s.n == 2 && s.nbad == 1);
    if (s.nbad == 1) CHECKF(strstr(s.bad[0], "s/a/1.png") != NULL, "%s", s.bad[0]);
    dh_ingest_free(&s);
    /* mixed sizes: error at selection, fine with a resize */
    member mm[] = { { "a/0.png", good.p, good.n }, { "a/1.png", big.p, big.n } };
    write_archive(tpath("mixed.tar"), "tar", mm, 2);
    REQUIRE(load(tpath("mixed.tar"), NULL, &s, &e) == 0);
    CHECK(dh_ingest_select(&s, &o, 0, 0, 0, 0, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "member a/1.png: image size 4x4 differs") != NULL, "%s", e.msg);
    dh_ingest_free(&s);
    o.skip_bad = 0;
    o.resize_w = 5;
    o.resize_h = 3;
    REQUIRE(dh_ingest_load(p, 0, &o, &s, &e) != 0); /* npaths 0: an error, not a crash */
    dh_ingest_free(&s);
    p[0] = tpath("mixed.tar");
    REQUIRE(dh_ingest_load(p, 1, &o, &s, &e) == 0);
    CHECK(dh_ingest_select(&s, &o, 0, 0, 0, 0, &e) == 0);
    CHECK(s.W == 5 && s.H == 3 && s.items[0]->w == 5 && s.items[1]->h == 3);
    dh_ingest_free(&s);
    /* layout: different depths, and no class folder */
    member md[] = { { "a/0.png", good.p, good.n }, { "x/a/1.png", good.p, good.n } };
    write_archive(tpath("depth.tar"), "tar", md, 2);
    CHECK(load(tpath("depth.tar"), NULL, &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "layout not understood") != NULL, "%s", e.msg);
    dh_ingest_free(&s);
    /* images not in class folders: unlabelled; beside class folders: an error */
    member mt[] = { { "0.png", good.p, good.n } };
    write_archive(tpath("top.tar"), "tar", mt, 1);
    CHECK(load_sel(tpath("top.tar"), NULL, &s, &e) == 0);
    CHECK(s.labelled == 0 && s.nclasses == 0 && s.n == 1 && s.items[0]->label == -1);
    dh_ingest_free(&s);
    member mtm[] = { { "0.png", good.p, good.n }, { "a/1.png", good.p, good.n } };
    write_archive(tpath("topmix.tar"), "tar", mtm, 2);
    CHECK(load(tpath("topmix.tar"), NULL, &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "member a/1.png: layout not understood") != NULL, "%s", e.msg);
    dh_ingest_free(&s);
    /* no images at all */
    member mn[] = { { "README", (const uint8_t *)"x", 1 } };
    write_archive(tpath("none.tar"), "tar", mn, 1);
    CHECK(load(tpath("none.tar"), NULL, &s, &e) == DH_EFORMAT);
    dh_ingest_free(&s);
    free(good.p);
    free(big.p);
}

static void t_truncated_and_garbage_archives(void) {
    FILE *f = fopen(tpath("tree.tar.gz"), "rb");
    REQUIRE(f);
    uint8_t b[1 << 16];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    write_file(tpath("cut.tar.gz"), b, n * 2 / 3);
    dh_ingest_set s;
    dh_err e = { 0 };
    int rc = load(tpath("cut.tar.gz"), "train", &s, &e);
    CHECKF(rc == DH_ETRUNC || rc == DH_EFORMAT, "rc %d: %s", rc, e.msg);
    CHECKF(strstr(e.msg, "member") || strstr(e.msg, "truncated"), "%s", e.msg);
    dh_ingest_free(&s);
    write_file(tpath("garbage.bin"), "this is not an archive at all, just some text\n", 47);
    CHECK(load(tpath("garbage.bin"), NULL, &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "not a readable archive") != NULL, "%s", e.msg);
    dh_ingest_free(&s);
    CHECK(load(tpath("does-not-exist.tar"), NULL, &s, &e) == DH_EIO);
    dh_ingest_free(&s);
}

/* Every cut of an archive: an error naming the problem, or (a cut in the
 * padding at the end) the whole split; never a crash or a partial set. */
static void t_cut_archives(void) {
    FILE *f = fopen(tpath("tree.tar.gz"), "rb");
    REQUIRE(f);
    static uint8_t b[1 << 16];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    int nfail = 0;
    for (size_t cut = 1; cut < n; cut += n / 40 + 1) {
        write_file(tpath("cut2.tar.gz"), b, cut);
        dh_ingest_set s;
        dh_err e = { 0 };
        int rc = load(tpath("cut2.tar.gz"), "train", &s, &e);
        if (rc == 0)
            CHECKF(s.n == 6, "cut at %zu of %zu: %lld images", cut, n, (long long)s.n);
        else {
            CHECK(e.msg[0] != 0);
            nfail++;
        }
        dh_ingest_free(&s);
    }
    CHECK(nfail > 0);
}

static void t_cifar_binary(void) {
    make_cifar(tpath("cifar-bin.tar.gz"), 0, 0);
    dh_ingest_set s;
    dh_err e = { 0 };
    int rc = load_sel(tpath("cifar-bin.tar.gz"), "train", &s, &e);
    REQUIRE(rc == 0);
    CHECK(s.kind == DH_SRC_CIFAR && s.nclasses == 10 && !strcmp(s.classes[3], "cat"));
    REQUIRE(s.n == 5);
    CHECK(s.C == 3 && s.H == 32 && s.W == 32);
    uint8_t px[3072];
    int k = 0;
    for (int b = 0; b < 2; b++)
        for (int r = 0; r < (b ? 2 : 3); r++, k++) {
            char id[16];
            snprintf(id, sizeof id, "%d", k);
            CHECK(!strcmp(s.items[k]->id, id));
            CHECK(s.items[k]->label == cifar_label(b, r));
            dh_ingest_pixels(&s, k, px, &e);
            int ok = 1;
            for (int i = 0; i < 3072; i++) ok &= px[i] == cifar_px(b, r, i);
            CHECKF(ok, "batch %d record %d pixels", b, r);
        }
    dh_ingest_free(&s);
    REQUIRE(load_sel(tpath("cifar-bin.tar.gz"), "test", &s, &e) == 0);
    CHECK(s.n == 2 && s.items[1]->label == cifar_label(2, 1));
    dh_ingest_free(&s);
    CHECK(load(tpath("cifar-bin.tar.gz"), NULL, &s, &e) == DH_EINVAL);
    dh_ingest_free(&s);
    make_cifar(tpath("cifar-badlabel.tar.gz"), 1, 0);
    CHECK(load(tpath("cifar-badlabel.tar.gz"), "train", &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "data_batch_2.bin: record 1: label 12 out of range"), "%s", e.msg);
    dh_ingest_free(&s);
    make_cifar(tpath("cifar-badsize.tar.gz"), 0, 1);
    CHECK(load(tpath("cifar-badsize.tar.gz"), "test", &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "member cifar-10-batches-bin/test_batch.bin: size"), "%s", e.msg);
    dh_ingest_free(&s);
}

static void t_idx(void) {
    mkdir(tpath("idx"), 0755);
    mkdir(tpath("idxraw"), 0755);
    make_idx(tpath("idx"), "train", 7, 7, 1);
    make_idx(tpath("idx"), "t10k", 4, 4, 1);
    make_idx(tpath("idxraw"), "train", 7, 7, 0);
    dh_ingest_set s;
    dh_err e = { 0 };
    const char *dirs[2] = { "idx", "idxraw" };
    for (int d = 0; d < 2; d++) {
        int rc = load_sel(tpath(dirs[d]), "train", &s, &e);
        CHECKF(rc == 0, "%s", e.msg);
        CHECK(s.kind == DH_SRC_IDX && s.n == 7 && s.C == 1 && s.H == 5 && s.W == 4 && s.nclasses == 3);
        uint8_t px[20];
        for (int i = 0; i < s.n && !rc; i++) {
            CHECK(s.items[i]->label == i % 3);
            dh_ingest_pixels(&s, i, px, &e);
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 4; x++) CHECK(px[y * 4 + x] == idx_px(i, y, x));
        }
        dh_ingest_free(&s);
    }
    REQUIRE(load_sel(tpath("idx"), "test", &s, &e) == 0);
    CHECK(s.n == 4);
    dh_ingest_free(&s);
    CHECK(load(tpath("idx"), NULL, &s, &e) == DH_EINVAL); /* two splits */
    dh_ingest_free(&s);
    CHECK(load(tpath("idx"), "valid", &s, &e) == DH_EINVAL);
    dh_ingest_free(&s);
    /* the images file alone finds its labels; a pair given explicitly (either order) */
    int rc = load_sel(tpath("idx/t10k-images-idx3-ubyte.gz"), NULL, &s, &e);
    CHECKF(rc == 0 && s.n == 4 && !strcmp(s.split, "test"), "%s", e.msg);
    dh_ingest_free(&s);
    rc = load_sel(tpath("idx/train-labels-idx1-ubyte.gz"), NULL, &s, &e);
    CHECKF(rc == 0 && s.n == 7 && !strcmp(s.split, "train"), "labels file alone: %s", e.msg);
    dh_ingest_free(&s);
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    const char *pair[2] = { tpath("idx/train-labels-idx1-ubyte.gz"), tpath("idx/train-images-idx3-ubyte.gz") };
    rc = dh_ingest_load(pair, 2, &o, &s, &e);
    CHECKF(rc == 0 && s.n == 7, "%s", e.msg);
    dh_ingest_free(&s);
    /* labels that do not match images */
    mkdir(tpath("idxbad"), 0755);
    make_idx(tpath("idxbad"), "train", 7, 6, 1);
    CHECK(load(tpath("idxbad"), "train", &s, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "labels do not match images"), "%s", e.msg);
    dh_ingest_free(&s);
    /* truncated data (header says 7 images, 3 present); a lying huge header */
    uint32_t d3[3] = { 7, 5, 4 }, dbig[3] = { 0x7fffffff, 1000, 1000 };
    uint8_t some[60] = { 0 };
    write_idx(tpath("idxbad/train-images-idx3-ubyte.gz"), 1, 3, d3, some, 60);
    make_idx(tpath("idxbad"), "t10k", 7, 7, 0);
    CHECK(load(tpath("idxbad"), "train", &s, &e) == DH_ETRUNC);
    CHECKF(strstr(e.msg, "member train-images-idx3-ubyte.gz: truncated"), "%s", e.msg);
    dh_ingest_free(&s);
    write_idx(tpath("idxbad/t10k-images-idx3-ubyte"), 0, 3, dbig, some, 60);
    CHECK(load(tpath("idxbad"), "test", &s, &e) == DH_ELIMIT);
    dh_ingest_free(&s);
    /* content detection: a gzipped IDX file is IDX, an archive is not */
    dh_src_kind k;
    CHECK(dh_ingest_detect(tpath("idx/train-images-idx3-ubyte.gz"), &k, &e) == 0 && k == DH_SRC_IDX);
    CHECK(dh_ingest_detect(tpath("idx"), &k, &e) == 0 && k == DH_SRC_IDX);
    CHECK(dh_ingest_detect(tpath("tree.tar.gz"), &k, &e) == 0 && k == DH_SRC_IMAGES);
    CHECK(dh_ingest_detect(tpath("tree"), &k, &e) == 0 && k == DH_SRC_IMAGES);
}

static void t_select(void) {
    mkdir(tpath("sel"), 0755);
    make_idx(tpath("sel"), "train", 30, 30, 0); /* labels i % 3: 10 per class */
    dh_ingest_set s;
    dh_err e = { 0 };
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    char ord[3][30][8];
    for (int run = 0; run < 3; run++) {
        REQUIRE(load(tpath("sel"), "train", &s, &e) == 0);
        REQUIRE(dh_ingest_select(&s, &o, 1, run == 2 ? 8 : 7, 0, 0, &e) == 0);
        REQUIRE(s.n == 30);
        for (int i = 0; i < 30; i++) snprintf(ord[run][i], 8, "%s", s.items[i]->id);
        dh_ingest_free(&s);
    }
    int same01 = 1, same02 = 1, sorted = 1;
    for (int i = 0; i < 30; i++) {
        same01 &= !strcmp(ord[0][i], ord[1][i]);
        same02 &= !strcmp(ord[0][i], ord[2][i]);
        sorted &= atoi(ord[0][i]) == i;
    }
    CHECK(same01 && !same02 && !sorted);
    REQUIRE(load(tpath("sel"), "train", &s, &e) == 0);
    REQUIRE(dh_ingest_select(&s, &o, 0, 0, 0, 4, &e) == 0);
    CHECK(s.n == 12 && s.class_counts[0] == 4 && s.class_counts[1] == 4 && s.class_counts[2] == 4);
    CHECK(!strcmp(s.items[0]->id, "0") && !strcmp(s.items[11]->id, "11"));
    dh_ingest_free(&s);
    REQUIRE(load(tpath("sel"), "train", &s, &e) == 0);
    REQUIRE(dh_ingest_select(&s, &o, 1, 3, 5, 2, &e) == 0);
    CHECK(s.n == 5);
    for (int c = 0; c < 3; c++) CHECK(s.class_counts[c] <= 2);
    dh_ingest_free(&s);
    /* names for numeric labels */
    const char *names[3] = { "zero", "one", "two" };
    o.class_names = names;
    o.nclass_names = 3;
    const char *p[1] = { tpath("sel") };
    REQUIRE(dh_ingest_load(p, 1, &o, &s, &e) == 0);
    CHECK(s.nclasses == 3 && !strcmp(s.classes[2], "two"));
    dh_ingest_free(&s);
    o.nclass_names = 2;
    CHECK(dh_ingest_load(p, 1, &o, &s, &e) == DH_EINVAL);
    dh_ingest_free(&s);
}

static void make_all(const char *dir) {
    snprintf(tmpdir, sizeof tmpdir, "%s", dir);
    make_tree(tpath("tree"));
    make_tree_archive(tpath("tree.tar.gz"), "tar.gz", "");
    make_cifar(tpath("cifar-bin.tar.gz"), 0, 0);
    make_cifar(tpath("cifar-badlabel.tar.gz"), 1, 0);
    mkdir(tpath("idx"), 0755);
    make_idx(tpath("idx"), "train", 7, 7, 1);
    make_idx(tpath("idx"), "t10k", 4, 4, 0);
    mkdir(tpath("idxbad"), 0755);
    make_idx(tpath("idxbad"), "train", 7, 6, 1);
    /* single images for the shell tests */
    uint8_t px[TH * TW * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 3);
    buf b = encode_png(px, TW, TH, 3, 8, 0, 0);
    write_file(tpath("img/one.png"), b.p, b.n);
    write_file(tpath("img/cut.png"), b.p, b.n / 2);
    free(b.p);
    b = encode_png(px, 4, 4, 3, 8, 0, 0);
    write_file(tpath("img/small.png"), b.p, b.n);
    free(b.p);
    b = encode_jpeg(px, TW, TH, 3, 90);
    write_file(tpath("img/one.jpg"), b.p, b.n);
    write_file(tpath("img/cut.jpg"), b.p, b.n / 2);
    free(b.p);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--fixtures")) {
        make_all(argv[2]);
        return 0;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/test_ingest.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    make_tree(tpath("tree"));
    make_tree_archive(tpath("tree.tar.gz"), "tar.gz", "");
    dh_err e = { 0 };
    dec = dh_decoder_new(&e);
    RUN(t_png_roundtrip);
    RUN(t_png_palette_and_forced_channels);
    RUN(t_jpeg_roundtrip);
    RUN(t_jpeg_cmyk);
    RUN(t_bad_images);
    RUN(t_decoding_limits);
    RUN(t_resize_and_convert);
    RUN(t_mutated_images);
    RUN(t_tree_folder);
    RUN(t_tree_archives);
    RUN(t_split_errors);
    RUN(t_bad_members);
    RUN(t_truncated_and_garbage_archives);
    RUN(t_cut_archives);
    RUN(t_cifar_binary);
    RUN(t_idx);
    RUN(t_select);
    dh_decoder_free(dec);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
