/* ingest_decode.c — JPEG (libjpeg-turbo) and PNG (libpng) decoding from
 * memory into planar u8 images, channel conversion and bilinear resizing. */
#include "ingest.h"
#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

const dh_ingest_limits dh_ingest_default_limits = {
    .max_side = 16384,
    .max_pixels = (int64_t)1 << 26,
    .max_member_bytes = (uint64_t)1 << 30,
    .max_total_bytes = (uint64_t)16 << 30,
};

/* ---- libjpeg error handling: every error and warning ends the decode ------ */
typedef struct jerr_t {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_t;

static void jerr_exit(j_common_ptr c) {
    jerr_t *j = (jerr_t *)c->err;
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

static void jerr_emit(j_common_ptr c, int level) {
    if (level >= 0) return;       /* trace messages */
    jerr_t *j = (jerr_t *)c->err; /* a warning: corrupt or truncated data */
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

struct dh_decoder {
    struct jpeg_decompress_struct cinfo;
    jerr_t jerr;
    uint8_t *scratch; /* interleaved rows (h, w, c) */
    size_t scratch_cap;
};

dh_decoder *dh_decoder_new(dh_err *e) {
    dh_decoder *d = dh_calloc(e, 1, sizeof *d);
    if (!d) return NULL;
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jerr_exit;
    d->jerr.pub.emit_message = jerr_emit;
    if (setjmp(d->jerr.jb)) {
        dh_seterr(e, DH_ENOMEM, "libjpeg: %s", d->jerr.msg);
        free(d);
        return NULL;
    }
    jpeg_create_decompress(&d->cinfo);
    return d;
}

void dh_decoder_free(dh_decoder *d) {
    if (!d) return;
    jpeg_destroy_decompress(&d->cinfo);
    free(d->scratch);
    free(d);
}

static int check_size(int64_t w, int64_t h, const dh_ingest_limits *lim, dh_err *e) {
    if (w <= 0 || h <= 0) return dh_seterr(e, DH_EFORMAT, "image has size %lldx%lld", (long long)w, (long long)h);
    if (w > lim->max_side || h > lim->max_side || w * h > lim->max_pixels)
        return dh_seterr(
            e, DH_ELIMIT,
            "image size %lldx%lld exceeds the decoding limit (%lld per side, %lld pixels; see --max-pixels)",
            (long long)w, (long long)h, (long long)lim->max_side, (long long)lim->max_pixels);
    return 0;
}

static uint8_t *scratch_get(dh_decoder *d, size_t n, dh_err *e) {
    if (n > d->scratch_cap) {
        uint8_t *p = dh_realloc(e, d->scratch, n, 1);
        if (!p) return NULL;
        d->scratch = p;
        d->scratch_cap = n;
    }
    return d->scratch;
}

/* (h, w, c) interleaved -> (c, h, w) planar */
static void hwc_to_chw(const uint8_t *src, uint8_t *dst, int h, int w, int c) {
    size_t plane = (size_t)h * w;
    if (c == 1) {
        memcpy(dst, src, plane);
        return;
    }
    uint8_t *r = dst, *g = dst + plane, *b = dst + 2 * plane;
    for (size_t i = 0; i < plane; i++) {
        r[i] = src[3 * i];
        g[i] = src[3 * i + 1];
        b[i] = src[3 * i + 2];
    }
}

/* In place: n CMYK pixels -> n RGB (c 3) or grey (c 1) pixels. Inverted
 * (Adobe) files hold 255-C etc.: R = C*K/255; plain ones R = (255-C)(255-K)/255. */
static void cmyk_to_rgb(uint8_t *px, size_t n, int inverted, int c) {
    for (size_t i = 0; i < n; i++) {
        unsigned cc = px[4 * i], m = px[4 * i + 1], y = px[4 * i + 2], k = px[4 * i + 3];
        if (!inverted) {
            cc = 255 - cc;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        uint8_t r = (uint8_t)((cc * k + 127) / 255), g = (uint8_t)((m * k + 127) / 255),
                b = (uint8_t)((y * k + 127) / 255);
        if (c == 1)
            px[i] = dh_rgb_to_grey(r, g, b);
        else {
            px[3 * i] = r;
            px[3 * i + 1] = g;
            px[3 * i + 2] = b;
        }
    }
}

static int decode_jpeg(dh_decoder *d, const uint8_t *buf, size_t n, int want_c, const dh_ingest_limits *lim,
                       dh_image *out, dh_err *e) {
    struct jpeg_decompress_struct *ci = &d->cinfo;
    /* state that must survive a longjmp lives in *out / *d, not in locals */
    out->px = NULL;
    if (setjmp(d->jerr.jb)) {
        jpeg_abort_decompress(ci);
        free(out->px);
        out->px = NULL;
        return dh_seterr(e, DH_EFORMAT, "JPEG: %s", d->jerr.msg);
    }
    jpeg_mem_src(ci, buf, (unsigned long)n);
    jpeg_read_header(ci, TRUE);
    if (check_size(ci->image_width, ci->image_height, lim, e)) {
        jpeg_abort_decompress(ci);
        return e ? e->code : DH_ELIMIT;
    }
    int c = want_c ? want_c : (ci->jpeg_color_space == JCS_GRAYSCALE ? 1 : 3);
    /* CMYK/YCCK (print files): libjpeg gives CMYK, converted below */
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    int oc = cmyk ? 4 : c;
    ci->out_color_space = cmyk ? JCS_CMYK : c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    int w = (int)ci->output_width, h = (int)ci->output_height;
    if ((int)ci->output_components != oc) {
        jpeg_abort_decompress(ci);
        return dh_seterr(e, DH_EFORMAT, "JPEG: unexpected %d output components", ci->output_components);
    }
    size_t npx = (size_t)w * h * oc;
    uint8_t *rows = scratch_get(d, npx, e);
    out->px = rows ? malloc((size_t)w * h * c) : NULL;
    if (!rows || !out->px) {
        jpeg_abort_decompress(ci);
        free(out->px);
        out->px = NULL;
        return dh_seterr(e, DH_ENOMEM, "out of memory decoding a %dx%d image", w, h);
    }
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = rows + (size_t)ci->output_scanline * w * oc;
        jpeg_read_scanlines(ci, &row, 1);
    }
    int inverted = ci->saw_Adobe_marker; /* Adobe (Photoshop) CMYK is stored inverted */
    jpeg_finish_decompress(ci);
    if (cmyk) cmyk_to_rgb(rows, (size_t)w * h, inverted, c);
    hwc_to_chw(rows, out->px, h, w, c);
    out->w = w;
    out->h = h;
    out->c = c;
    return 0;
}

/* ---- PNG ------------------------------------------------------------------- */
typedef struct png_ctx {
    const uint8_t *buf;
    size_t n, pos;
    char msg[256];
    uint8_t *px; /* interleaved result */
    png_bytep *rowp;
    int want_c;
} png_ctx;

static void png_err_fn(png_structp p, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(p, 1);
}
static void png_warn_fn(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg;
}

static void png_read_fn(png_structp p, png_bytep data, size_t len) {
    png_ctx *c = png_get_io_ptr(p);
    if (c->n - c->pos < len) png_error(p, "file truncated");
    memcpy(data, c->buf + c->pos, len);
    c->pos += len;
}

static int decode_png(dh_decoder *d, const uint8_t *buf, size_t n, int want_c, const dh_ingest_limits *lim,
                      dh_image *out, dh_err *e) {
    png_ctx ctx_s, *ctx = &ctx_s;
    memset(ctx, 0, sizeof *ctx);
    ctx->buf = buf;
    ctx->n = n;
    ctx->want_c = want_c;
    out->px = NULL;
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_err_fn, png_warn_fn);
    if (!p) return dh_seterr(e, DH_ENOMEM, "PNG: out of memory");
    png_infop info = png_create_info_struct(p);
    if (!info) {
        png_destroy_read_struct(&p, NULL, NULL);
        return dh_seterr(e, DH_ENOMEM, "PNG: out of memory");
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_read_struct(&p, &info, NULL);
        free(ctx->px);
        free(ctx->rowp);
        free(out->px);
        out->px = NULL;
        return dh_seterr(e, DH_EFORMAT, "PNG: %s", ctx->msg);
    }
    png_set_read_fn(p, ctx, png_read_fn);
    /* libpng's own limits (1,000,000 per side) stay; ours are checked below,
     * after the header and before any pixel buffer */
    png_set_chunk_malloc_max(p, 64u << 20);
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    int depth = png_get_bit_depth(p, info), ctype = png_get_color_type(p, info);
    if (check_size(w, h, lim, e)) {
        png_destroy_read_struct(&p, &info, NULL);
        return e ? e->code : DH_ELIMIT;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (depth == 16) png_set_scale_16(p);
    png_set_strip_alpha(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    int c = png_get_channels(p, info);
    if ((c != 1 && c != 3) || png_get_rowbytes(p, info) != (size_t)w * c) png_error(p, "unsupported pixel layout");
    ctx->px = malloc((size_t)w * h * c);
    ctx->rowp = malloc(sizeof(png_bytep) * h);
    if (!ctx->px || !ctx->rowp) png_error(p, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) ctx->rowp[y] = ctx->px + (size_t)y * w * c;
    png_read_image(p, ctx->rowp);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    free(ctx->rowp);
    ctx->rowp = NULL;
    int oc = ctx->want_c ? ctx->want_c : c;
    out->px = malloc((size_t)w * h * oc);
    if (!out->px) {
        free(ctx->px);
        return dh_seterr(e, DH_ENOMEM, "out of memory decoding a %ux%u image", w, h);
    }
    if (oc == c) {
        hwc_to_chw(ctx->px, out->px, h, w, c);
    } else if (oc == 1) { /* RGB -> grey */
        for (size_t i = 0; i < (size_t)w * h; i++)
            out->px[i] = dh_rgb_to_grey(ctx->px[3 * i], ctx->px[3 * i + 1], ctx->px[3 * i + 2]);
    } else { /* grey -> RGB */
        for (int k = 0; k < 3; k++) memcpy(out->px + (size_t)k * w * h, ctx->px, (size_t)w * h);
    }
    free(ctx->px);
    out->w = (int)w;
    out->h = (int)h;
    out->c = oc;
    (void)d;
    return 0;
}

int dh_decode_image(dh_decoder *d, const uint8_t *buf, size_t n, int want_c, const dh_ingest_limits *lim, dh_image *out,
                    dh_err *e) {
    static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a };
    if (!lim) lim = &dh_ingest_default_limits;
    memset(out, 0, sizeof *out);
    if (n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return decode_jpeg(d, buf, n, want_c, lim, out, e);
    if (n >= 8 && !memcmp(buf, png_sig, 8)) return decode_png(d, buf, n, want_c, lim, out, e);
    if (n == 0) return dh_seterr(e, DH_EFORMAT, "empty file, not an image");
    return dh_seterr(e, DH_EFORMAT, "not a JPEG or PNG file");
}

/* ---- conversion -------------------------------------------------------------- */
/* Bilinear sampling along one axis: output index i, scale s (source/output),
 * n source pixels. Sets the two source neighbours and returns the weight of
 * the second. */
static double src_coord(int i, double s, int n, int *i0, int *i1) {
    double f = (i + 0.5) * s - 0.5;
    if (f < 0) f = 0;
    int p = (int)f;
    if (p > n - 1) p = n - 1;
    *i0 = p;
    *i1 = p + 1 < n ? p + 1 : n - 1;
    double w = f - p;
    if (w > 1) w = 1;
    return w;
}

void dh_resize_plane(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw) {
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * sw);
        return;
    }
    double sy = (double)sh / dh, sx = (double)sw / dw;
    for (int y = 0; y < dh; y++) {
        int y0, y1;
        double wy = src_coord(y, sy, sh, &y0, &y1);
        for (int x = 0; x < dw; x++) {
            int x0, x1;
            double wx = src_coord(x, sx, sw, &x0, &x1);
            double top = src[(size_t)y0 * sw + x0] * (1 - wx) + src[(size_t)y0 * sw + x1] * wx;
            double bot = src[(size_t)y1 * sw + x0] * (1 - wx) + src[(size_t)y1 * sw + x1] * wx;
            double v = top * (1 - wy) + bot * wy;
            dst[(size_t)y * dw + x] = (uint8_t)(v + 0.5);
        }
    }
}

int dh_image_convert(const uint8_t *src, int sc, int sh, int sw, uint8_t *dst, int dc, int dh, int dw) {
    size_t splane = (size_t)sh * sw, dplane = (size_t)dh * dw;
    if (sc == dc) {
        for (int k = 0; k < dc; k++) dh_resize_plane(src + k * splane, sh, sw, dst + k * dplane, dh, dw);
        return 0;
    }
    if (sc == 1) { /* grey -> RGB */
        dh_resize_plane(src, sh, sw, dst, dh, dw);
        memcpy(dst + dplane, dst, dplane);
        memcpy(dst + 2 * dplane, dst, dplane);
        return 0;
    }
    /* RGB -> grey, then resize */
    if (sh == dh && sw == dw) {
        for (size_t i = 0; i < splane; i++) dst[i] = dh_rgb_to_grey(src[i], src[splane + i], src[2 * splane + i]);
        return 0;
    }
    uint8_t *g = malloc(splane);
    if (!g) return -1;
    for (size_t i = 0; i < splane; i++) g[i] = dh_rgb_to_grey(src[i], src[splane + i], src[2 * splane + i]);
    dh_resize_plane(g, sh, sw, dst, dh, dw);
    free(g);
    return 0;
}
