/* ingest.h — read image datasets (archives, directories, CIFAR-10 binary,
 * IDX) into memory, ready to be written as an "images" stream.
 *
 * Sources (detected from content unless a format is forced):
 *   DH_SRC_IMAGES  a libarchive archive (tar, tar.gz/bz2/xz, zip, ...) or a
 *                  directory holding .../<split>/<class>/<image> (or just
 *                  <class>/<image>), JPEG or PNG images. Class names are the
 *                  folder names of every split, sorted (byte order).
 *   DH_SRC_CIFAR   the CIFAR-10 binary distribution (a tarball holding
 *                  data_batch_1..5.bin, test_batch.bin, batches.meta.txt).
 *   DH_SRC_IDX     MNIST-style IDX files (gzipped or not): an images file and
 *                  its labels file, or the directory holding the usual four.
 *
 * Pixels are kept per image as u8 planes, C x H x W (C = 1 grey or 3 RGB);
 * dh_ingest_pixels() gives an image in the set's output layout.
 *
 * Like every deephash library this never prints and never exits: errors come
 * back in a dh_err whose message names the member: "member M: reason".
 */
#ifndef DH_INGEST_H
#define DH_INGEST_H
#include <stddef.h>
#include <stdint.h>
#include "dh_util.h"
#include "dh_rng.h"

typedef enum { DH_SRC_AUTO = 0, DH_SRC_IMAGES, DH_SRC_CIFAR, DH_SRC_IDX } dh_src_kind;
const char *dh_src_kind_name(dh_src_kind k);          /* "images","cifar-binary","idx" */
int dh_src_kind_parse(const char *s, dh_src_kind *k); /* 0 ok, -1 unknown */

/* Decoding limits (protection against decompression bombs and runaway input). */
typedef struct dh_ingest_limits {
    int64_t max_side;          /* largest width or height, default 16384        */
    int64_t max_pixels;        /* largest width*height of one image, default 2^26 */
    uint64_t max_member_bytes; /* largest archive member / file read, 1 GiB      */
    uint64_t max_total_bytes;  /* all decoded pixels together, default 16 GiB    */
} dh_ingest_limits;
extern const dh_ingest_limits dh_ingest_default_limits;

/* ---- single images ---------------------------------------------------------- */
typedef struct dh_image {
    int w, h, c; /* c: 1 (grey) or 3 (RGB) */
    uint8_t *px; /* (c, h, w) planar, malloc'd */
} dh_image;

/* A decoder holds per-thread state (the libjpeg object) and is reused. */
typedef struct dh_decoder dh_decoder;
dh_decoder *dh_decoder_new(dh_err *e);
void dh_decoder_free(dh_decoder *d);
/* Decode a JPEG or PNG held in memory (kind found from its first bytes).
 * want_c: 0 keeps the image's own colour (grey stays grey, anything else
 * becomes RGB; alpha is dropped), 1 forces grey, 3 forces RGB. Out-of-limit
 * sizes fail with DH_ELIMIT before any pixel buffer is allocated; anything
 * libjpeg calls a warning (corrupt or truncated data) is an error. */
int dh_decode_image(dh_decoder *d, const uint8_t *buf, size_t n, int want_c, const dh_ingest_limits *lim, dh_image *out,
                    dh_err *e);

/* Grey value of an RGB pixel: (299 R + 587 G + 114 B + 500) / 1000 (BT.601). */
static inline uint8_t dh_rgb_to_grey(uint8_t r, uint8_t g, uint8_t b) {
    return (uint8_t)((299u * r + 587u * g + 114u * b + 500u) / 1000u);
}
/* Convert src (sc, sh, sw) planar into dst (dc, dh, dw): channels first
 * (grey->RGB copies the plane, RGB->grey as above), then bilinear resizing
 * with pixel centres aligned (a no-op copy when the sizes agree). */
int dh_image_convert(const uint8_t *src, int sc, int sh, int sw, uint8_t *dst, int dc, int dh,
                     int dw); /* 0, or -1 out of memory */
/* Bilinear resize of one plane (sh, sw) -> (dh, dw). */
void dh_resize_plane(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw);

/* ---- whole sources ------------------------------------------------------------ */
typedef struct dh_ingest_opts {
    dh_src_kind kind;       /* DH_SRC_AUTO: detect                             */
    const char *split;      /* NULL: the only split, or error if several; "all" */
    int channels;           /* 0 auto, 1 grey, 3 RGB                            */
    int resize_w, resize_h; /* 0: none (sizes must agree)                       */
    int skip_bad;           /* skip undecodable images instead of failing      */
    int threads;            /* decoder threads; <= 0: number of CPUs            */
    const char *const *class_names;
    int nclass_names; /* names for IDX/CIFAR labels */
    dh_ingest_limits lim;
    /* Progress callback (called from the reading thread), may be NULL. */
    void (*progress)(void *arg, int64_t members_read);
    void *progress_arg;
} dh_ingest_opts;
void dh_ingest_opts_init(dh_ingest_opts *o);

typedef struct dh_item {
    char *id; /* member path, or the index within the split          */
    int32_t label;
    int w, h, c;     /* as decoded (after --resize/--gray in the decoder)   */
    uint8_t *px;     /* (c, h, w) planar; may point into a shared block     */
    char *err;       /* undecodable: the reason (then px is NULL)           */
    int errcode;     /* its dh_code                                         */
    const char *cls; /* image trees: the class folder name (interned)       */
    int split_ok;    /* image trees: in the chosen split                    */
    int owns_px;     /* px was decoded for this item (else it points into a block) */
} dh_item;

typedef struct dh_ingest_set {
    dh_src_kind kind;
    char *split; /* the split read ("" when the source has none)   */
    int nclasses;
    char **classes;        /* (nclasses) sorted folder names or given names */
    int64_t n;             /* images in the set (after selection)           */
    dh_item **items;       /* (n) in output order                            */
    int C, H, W;           /* output layout                                  */
    int64_t *class_counts; /* (nclasses) images per class in the set          */
    int labelled;          /* 0: no labels (image files, images not in class  */
                           /* folders): items have label -1, nclasses is 0    */
    int64_t nbad;          /* skipped undecodable images (--skip-bad)         */
    char **bad;            /* (nbad) "member M: reason"                        */
    /* internal storage */
    void *priv;
} dh_ingest_set;

/* Read the source(s): one path (archive, directory, IDX images file), two
 * (IDX images, labels), or any number of JPEG/PNG files (found by their
 * first bytes). Every image of the split is decoded; the set comes back in
 * deterministic order (sorted ids; image files in the order given) with
 * labels and classes set and bad images either reported (first in order, as
 * an error) or skipped. Image files, and a folder or archive whose images
 * are not in class folders (all at its top level), give an unlabelled set
 * (labelled 0, ids the paths as given / the member names). */
int dh_ingest_load(const char *const *paths, int npaths, const dh_ingest_opts *o, dh_ingest_set *s, dh_err *e);
/* Reorder and cut: shuffle (Fisher-Yates, seeded, deterministic) when asked,
 * then keep at most per_class images of each class (DH_EINVAL on an
 * unlabelled set) and at most limit images (0 = no limit). Then fix the
 * output layout (C,H,W) and check that sizes agree (unless resizing); fills
 * class_counts. */
int dh_ingest_select(dh_ingest_set *s, const dh_ingest_opts *o, int shuffle, uint64_t seed, int64_t limit,
                     int64_t per_class, dh_err *e);
/* Pixels of item i in the output layout (C*H*W bytes) into dst. */
int dh_ingest_pixels(const dh_ingest_set *s, int64_t i, uint8_t *dst, dh_err *e);
void dh_ingest_free(dh_ingest_set *s);

/* Detect a source's kind from its content (a directory's file names). */
int dh_ingest_detect(const char *path, dh_src_kind *k, dh_err *e);
/* 1 when path is a regular file starting with a JPEG or PNG signature. */
int dh_is_image_file(const char *path);

/* --classes: "a,b,c" split in place (s is modified and must outlive *out);
 * "fashion-mnist" and "cifar10" name the known sets. Returns the count, or
 * -1 with e set (an empty name); free(*out) when done. */
int dh_ingest_class_names(char *s, const char ***out, dh_err *e);

/* --shuffle draws from dh_splitmix64 (dh_rng.h). */

#endif
