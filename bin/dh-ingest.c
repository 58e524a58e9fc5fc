/* dh-ingest — read an image dataset (archive or folder of JPEG/PNG images,
 * CIFAR-10 binary tarball, IDX files) and write an images stream.
 *
 *   dh-ingest --split train cifar10-jpg.tar.gz > train.dhs
 *   dh-ingest --split test /usr/share/datasets/fashion-mnist > test.dhs
 *
 * Output: kind images, fields pixels u8 [C,H,W], label i32, id str; meta
 * classes, class_counts, source, format, split, channels, height, width,
 * command (and seed/shuffle, skipped). Every image is decoded before the
 * header is written, so a failure leaves nothing on stdout (and never a
 * trailer).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "ingest.h"

static void usage(void) {
    printf("Usage: %s [OPTION]... SOURCE [LABELS]\n"
           "  or:  dh-ingest [OPTION]... IMAGE...\n"
           "Read an image dataset and write an images stream (pixels u8 [C,H,W], label, id).\n"
           "SOURCE is an archive (tar, tar.gz/bz2/xz, zip; '-' for standard input) or a\n"
           "folder of JPEG/PNG images laid out <split>/<class>/<image>, the CIFAR-10 binary\n"
           "tarball, or MNIST-style IDX files (the folder of the four files, an images\n"
           "file, or an images file and its LABELS file; gzipped or not).\n"
           "JPEG/PNG files named on the command line (dh-ingest q.jpg, dh-ingest *.png), or\n"
           "a folder or archive of images not in class folders, give images without labels\n"
           "(no label field), e.g. queries for dh-encode | dh-rank | dh-show.\n\n"
           "  -S, --split NAME       the split to read (a folder name: train, test...), or 'all'\n"
           "  -f, --format KIND      auto (default), images, cifar-binary or idx\n"
           "  -n, --limit N          at most N images (after ordering)\n"
           "      --per-class N      at most N images of each class\n"
           "      --shuffle          random order (default: sorted by member path / index)\n"
           "      --seed S           seed for --shuffle (default 0)\n"
           "      --gray, --grey     one grey channel\n"
           "      --rgb              three RGB channels (default: RGB unless every image is grey)\n"
           "      --resize WxH       resize every image to W x H (bilinear)\n"
           "      --skip-bad         skip undecodable images (listed on stderr) instead of failing\n"
           "      --classes A,B,...  class names for numeric labels (IDX, CIFAR binary);\n"
           "                         'fashion-mnist' and 'cifar10' name the known sets\n"
           "  -j, --threads N        decoder threads (default: number of CPUs)\n"
           "      --max-pixels N     largest image (width*height) decoded (default 67108864)\n"
           "      --max-side N       largest width or height (default 16384)\n"
           "      --max-member-bytes N  largest member or file read (default 1G)\n"
           "      --max-memory N     largest total of decoded pixels (default 16G)\n"
           "  -o, --output FILE      write to FILE atomically (default: standard output)\n"
           "  -q, --quiet            no progress or report\n"
           "      --progress         show progress even when stderr is not a terminal\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n\n"
           "Sizes take K, M, G suffixes (powers of 1024). See dh-ingest(1).\n",
           dh_progname);
}

static int64_t members_read;
static void on_progress(void *arg, int64_t n) {
    members_read = n;
    dh_progress_update(arg, n);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-ingest", argc, argv);
    dh_ingest_opts o;
    dh_ingest_opts_init(&o);
    const char *out = NULL;
    int shuffle = 0;
    int64_t limit = 0, per_class = 0, seed = 0;
    const char **cnames = NULL;
    enum {
        O_PROG = 256,
        O_PERCLASS,
        O_SHUFFLE,
        O_SEED,
        O_GRAY,
        O_RGB,
        O_RESIZE,
        O_SKIPBAD,
        O_CLASSES,
        O_MAXPX,
        O_MAXSIDE,
        O_MAXMEMBER,
        O_MAXMEM
    };
    static const struct option lo[] = { { "split", 1, 0, 'S' },
                                        { "format", 1, 0, 'f' },
                                        { "limit", 1, 0, DH_OPT_ROWS },
                                        { "per-class", 1, 0, O_PERCLASS },
                                        { "shuffle", 0, 0, O_SHUFFLE },
                                        { "seed", 1, 0, O_SEED },
                                        { "gray", 0, 0, O_GRAY },
                                        { "grey", 0, 0, O_GRAY },
                                        { "rgb", 0, 0, O_RGB },
                                        { "resize", 1, 0, O_RESIZE },
                                        { "skip-bad", 0, 0, O_SKIPBAD },
                                        { "classes", 1, 0, O_CLASSES },
                                        { "threads", 1, 0, DH_OPT_THREADS },
                                        { "max-pixels", 1, 0, O_MAXPX },
                                        { "max-side", 1, 0, O_MAXSIDE },
                                        { "max-member-bytes", 1, 0, O_MAXMEMBER },
                                        { "max-memory", 1, 0, O_MAXMEM },
                                        { "output", 1, 0, DH_OPT_OUTPUT },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    uint64_t sz;
    /* -s is --seed in deephash; --seed stays long here, as it always was */
    static const dh_moved moved[] = { { 's', "split", 'S', "split" }, { 0 } };
    dh_prog_moved(moved);
    while ((c = getopt_long(argc, argv, "S:f:n:j:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'S':
            if (!*optarg || strchr(optarg, '/')) dh_usage_error("--split: '%s' is not a folder name", optarg);
            o.split = optarg;
            break;
        case 'f':
            if (dh_src_kind_parse(optarg, &o.kind))
                dh_usage_error("--format: '%s' is not auto, images, cifar-binary or idx", optarg);
            break;
        case 'n':
            if (dh_parse_i64(optarg, 1, INT64_MAX, &limit))
                dh_usage_error("--limit: '%s' is not a positive integer", optarg);
            break;
        case O_PERCLASS:
            if (dh_parse_i64(optarg, 1, INT64_MAX, &per_class))
                dh_usage_error("--per-class: '%s' is not a positive integer", optarg);
            break;
        case O_SHUFFLE: shuffle = 1; break;
        case O_SEED:
            if (dh_parse_i64(optarg, 0, INT64_MAX, &seed))
                dh_usage_error("--seed: '%s' is not a non-negative integer", optarg);
            break;
        case O_GRAY: o.channels = 1; break;
        case O_RGB: o.channels = 3; break;
        case O_RESIZE: {
            int w, h;
            char x, extra;
            if (sscanf(optarg, "%d%c%d%c", &w, &x, &h, &extra) != 3 || (x != 'x' && x != 'X') || w < 1 || h < 1 ||
                w > 65535 || h > 65535)
                dh_usage_error("--resize: '%s' is not WxH (e.g. 32x32)", optarg);
            o.resize_w = w;
            o.resize_h = h;
            break;
        }
        case O_SKIPBAD: o.skip_bad = 1; break;
        case O_CLASSES: {
            dh_err ce;
            if ((o.nclass_names = dh_ingest_class_names(optarg, &cnames, &ce)) < 0)
                dh_usage_error("--classes: %s", ce.msg);
            o.class_names = cnames;
            break;
        }
        case 'j':
            if (dh_parse_int(optarg, 1, 64, &o.threads))
                dh_usage_error("--threads: '%s' is not an integer in 1..64", optarg);
            break;
        case O_MAXPX:
            if (dh_parse_size(optarg, &sz) || sz < 1 || sz > (1ull << 40))
                dh_usage_error("--max-pixels: '%s' is not a count in 1..2^40", optarg);
            o.lim.max_pixels = (int64_t)sz;
            break;
        case O_MAXSIDE:
            if (dh_parse_size(optarg, &sz) || sz < 1 || sz > (1u << 20))
                dh_usage_error("--max-side: '%s' is not a count in 1..2^20", optarg);
            o.lim.max_side = (int64_t)sz;
            break;
        case O_MAXMEMBER:
            if (dh_parse_size(optarg, &sz) || sz < 1) dh_usage_error("--max-member-bytes: '%s' is not a size", optarg);
            o.lim.max_member_bytes = sz;
            break;
        case O_MAXMEM:
            if (dh_parse_size(optarg, &sz) || sz < 1) dh_usage_error("--max-memory: '%s' is not a size", optarg);
            o.lim.max_total_bytes = sz;
            break;
        case 'o': out = optarg; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_usage_error("unknown option; try '%s --help'", dh_progname);
        }
    }
    int npaths = argc - optind;
    if (npaths < 1) dh_usage_error("no source given; try '%s --help'", dh_progname);
    const char *const *paths = (const char *const *)argv + optind;
    const char *srcname = dh_in_name(paths[0]);
    /* several image files: messages name the file themselves */
    char nfiles[64];
    if (npaths > 2 || (npaths == 2 && dh_is_image_file(paths[0]))) {
        snprintf(nfiles, sizeof nfiles, "%d image files", npaths);
        srcname = nfiles;
    }
    const char *ctx = srcname == nfiles ? NULL : srcname;

    dh_err e = { 0 };
    dh_progress prog;
    dh_progress_start(&prog, "reading", "members", 0);
    o.progress = on_progress;
    o.progress_arg = &prog;
    double t0 = dh_now();
    dh_ingest_set s;
    if (dh_ingest_load(paths, npaths, &o, &s, &e)) {
        if (dh_progress_on && !dh_quiet) fputs("\r\033[K", stderr);
        dh_die_err(&e, ctx);
    }
    dh_progress_end(&prog, members_read);
    if (dh_ingest_select(&s, &o, shuffle, (uint64_t)seed, limit, per_class, &e)) dh_die_err(&e, ctx);
    for (int64_t i = 0; i < s.nbad; i++)
        fprintf(stderr, "%s: %s: skipped %s\n", dh_progname, srcname, s.bad[i] ? s.bad[i] : "(out of memory)");
    if (s.nbad)
        fprintf(stderr, "%s: %s: skipped %lld undecodable image%s\n", dh_progname, srcname, (long long)s.nbad,
                s.nbad == 1 ? "" : "s");

    /* schema and metadata */
    dhs_schema sch;
    dhs_schema_init(&sch, "images");
    int64_t shape[3] = { s.C, s.H, s.W };
    /* unlabelled images (image files, no class folders): no label field */
    if (dhs_schema_add(&sch, "pixels", DHS_U8, 3, shape, &e) < 0 ||
        (s.labelled && dhs_schema_add(&sch, "label", DHS_I32, 0, NULL, &e) < 0) ||
        dhs_schema_add(&sch, "id", DHS_STR, 0, NULL, &e) < 0)
        dh_die_err(&e, "schema");
    dhs_meta *m = dhs_meta_new();
    if (!m) dh_die(DH_EXIT_NOMEM, "out of memory");
    int bad = 0;
    if (s.labelled) {
        bad |= dhs_meta_set_strv(m, "classes", (const char *const *)s.classes, s.nclasses);
        bad |= dhs_meta_set_intv(m, "class_counts", s.class_counts, s.nclasses);
    }
    bad |= dhs_meta_set_str(m, "source", srcname);
    if (npaths == 2 && s.kind == DH_SRC_IDX) bad |= dhs_meta_set_str(m, "labels_source", paths[1]);
    bad |= dhs_meta_set_str(m, "format", dh_src_kind_name(s.kind));
    bad |= dhs_meta_set_str(m, "split", s.split);
    bad |= dhs_meta_set_int(m, "channels", s.C);
    bad |= dhs_meta_set_int(m, "height", s.H);
    bad |= dhs_meta_set_int(m, "width", s.W);
    bad |= dhs_meta_set_str(m, "layout", "NCHW");
    bad |= dhs_meta_set_bool(m, "shuffle", shuffle);
    if (shuffle) bad |= dhs_meta_set_int(m, "seed", seed);
    if (s.nbad) bad |= dhs_meta_set_int(m, "skipped", s.nbad);
    bad |= dhs_meta_set_str(m, "command", dh_cmdline());
    if (bad) dh_die(DH_EXIT_NOMEM, "out of memory");

    dh_outfile of;
    if (dh_out_open(&of, out, &e)) dh_die_err(&e, NULL);
    static char obuf[1 << 20];
    if (!out) setvbuf(of.f, obuf, _IOFBF, sizeof obuf);
    dhs_writer *w = dhs_writer_open(of.f, out ? out : "<stdout>", &sch, m, &e);
    if (!w) {
        dh_out_abort(&of);
        dh_die_err(&e, NULL);
    }

    size_t rowb = (size_t)s.C * s.H * s.W;
    int64_t B = (int64_t)((4u << 20) / (rowb ? rowb : 1));
    if (B < 1) B = 1;
    if (B > 4096) B = 4096;
    uint8_t *pix = malloc((size_t)B * rowb);     // (B, C, H, W)
    int32_t *lab = malloc(sizeof *lab * B);      // (B)
    uint32_t *idlen = malloc(sizeof *idlen * B); // (B)
    size_t idcap = 1 << 16;
    char *ids = malloc(idcap);
    if (!pix || !lab || !idlen || !ids) {
        dhs_writer_abort(w);
        dh_out_abort(&of);
        dh_die(DH_EXIT_NOMEM, "out of memory");
    }
    dh_progress_start(&prog, "writing", "images", s.n);
    for (int64_t i0 = 0; i0 < s.n; i0 += B) {
        int64_t nb = s.n - i0 < B ? s.n - i0 : B;
        size_t idn = 0;
        for (int64_t k = 0; k < nb; k++) {
            const dh_item *it = s.items[i0 + k];
            if (dh_ingest_pixels(&s, i0 + k, pix + k * rowb, &e)) {
                dhs_writer_abort(w);
                dh_out_abort(&of);
                dh_die_err(&e, ctx);
            }
            lab[k] = it->label;
            size_t l = strlen(it->id);
            if (idn + l > idcap) {
                while (idn + l > idcap) idcap *= 2;
                char *p = realloc(ids, idcap);
                if (!p) {
                    dhs_writer_abort(w);
                    dh_out_abort(&of);
                    dh_die(DH_EXIT_NOMEM, "out of memory");
                }
                ids = p;
            }
            memcpy(ids + idn, it->id, l);
            idn += l;
            idlen[k] = (uint32_t)l;
        }
        const void *cols[3] = { pix, lab, ids };
        const uint32_t *lens[3] = { NULL, NULL, idlen };
        if (!s.labelled) { /* pixels, id */
            cols[1] = ids;
            lens[1] = idlen;
        }
        if (dhs_write_rows(w, nb, cols, lens, &e)) {
            dhs_writer_abort(w);
            dh_out_abort(&of);
            dh_die_err(&e, NULL);
        }
        dh_progress_update(&prog, i0 + nb);
    }
    dh_progress_end(&prog, s.n);
    if (dhs_writer_close(w, &e)) {
        dh_out_abort(&of);
        dh_die_err(&e, NULL);
    }
    if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    if (s.labelled)
        dh_note("%s: %lld images, %d classes, %dx%dx%d, split '%s', %.2f s", srcname, (long long)s.n, s.nclasses, s.C,
                s.H, s.W, s.split, dh_now() - t0);
    else
        dh_note("%s: %lld image%s without labels, %dx%dx%d, %.2f s", srcname, (long long)s.n, s.n == 1 ? "" : "s", s.C,
                s.H, s.W, dh_now() - t0);
    free(pix);
    free(lab);
    free(idlen);
    free(ids);
    dhs_meta_free(m);
    dh_ingest_free(&s);
    free(cnames);
    return DH_EXIT_OK;
}
