/* picture.c — an RGB canvas, a 5x7 bitmap font, PNG encoding (libpng). */
#include "picture.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANVAS_MAX_PIXELS ((int64_t)1 << 28)

int dh_canvas_init(dh_canvas *c, int w, int h, const uint8_t bg[3], dh_err *e) {
    memset(c, 0, sizeof *c);
    if (w < 1 || h < 1 || (int64_t)w * h > CANVAS_MAX_PIXELS)
        return dh_seterr(e, DH_ELIMIT, "a picture of %dx%d pixels is beyond the limit of %lld pixels", w, h,
                         (long long)CANVAS_MAX_PIXELS);
    c->px = dh_malloc(e, (size_t)w * h, 3);
    if (!c->px) return DH_ENOMEM;
    c->w = w;
    c->h = h;
    for (size_t i = 0; i < (size_t)w * h; i++) memcpy(c->px + 3 * i, bg, 3);
    return 0;
}

void dh_canvas_free(dh_canvas *c) {
    if (!c) return;
    free(c->px);
    memset(c, 0, sizeof *c);
}

void dh_canvas_fill(dh_canvas *c, int x, int y, int w, int h, const uint8_t rgb[3]) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) memcpy(c->px + 3 * ((size_t)j * c->w + i), rgb, 3);
}

void dh_canvas_frame(dh_canvas *c, int x, int y, int w, int h, int t, const uint8_t rgb[3]) {
    dh_canvas_fill(c, x - t, y - t, w + 2 * t, t, rgb);
    dh_canvas_fill(c, x - t, y + h, w + 2 * t, t, rgb);
    dh_canvas_fill(c, x - t, y, t, h, rgb);
    dh_canvas_fill(c, x + w, y, t, h, rgb);
}

void dh_canvas_image(dh_canvas *c, int x, int y, const uint8_t *planar, int ch, int ih, int iw, int scale) {
    size_t plane = (size_t)ih * iw;
    for (int j = 0; j < ih * scale; j++) {
        int cy = y + j;
        if (cy < 0 || cy >= c->h) continue;
        for (int i = 0; i < iw * scale; i++) {
            int cx = x + i;
            if (cx < 0 || cx >= c->w) continue;
            size_t s = (size_t)(j / scale) * iw + i / scale;
            uint8_t *d = c->px + 3 * ((size_t)cy * c->w + cx);
            d[0] = planar[s];
            d[1] = ch == 3 ? planar[plane + s] : planar[s];
            d[2] = ch == 3 ? planar[2 * plane + s] : planar[s];
        }
    }
}

/* ---- the font: 5 columns per character, bit 0 the top row; 7 rows, and an
 * eighth for the descenders of g, j, p, q, y ----------------------------------- */
static const uint8_t font5x7[95][5] = {
    { 0x00, 0x00, 0x00, 0x00, 0x00 }, /*   */ { 0x00, 0x00, 0x5F, 0x00, 0x00 }, /* ! */
    { 0x00, 0x07, 0x00, 0x07, 0x00 }, /* " */ { 0x14, 0x7F, 0x14, 0x7F, 0x14 }, /* # */
    { 0x24, 0x2A, 0x7F, 0x2A, 0x12 }, /* $ */ { 0x23, 0x13, 0x08, 0x64, 0x62 }, /* % */
    { 0x36, 0x49, 0x55, 0x22, 0x50 }, /* & */ { 0x00, 0x05, 0x03, 0x00, 0x00 }, /* ' */
    { 0x00, 0x1C, 0x22, 0x41, 0x00 }, /* ( */ { 0x00, 0x41, 0x22, 0x1C, 0x00 }, /* ) */
    { 0x14, 0x08, 0x3E, 0x08, 0x14 }, /* * */ { 0x08, 0x08, 0x3E, 0x08, 0x08 }, /* + */
    { 0x00, 0x50, 0x30, 0x00, 0x00 }, /* , */ { 0x08, 0x08, 0x08, 0x08, 0x08 }, /* - */
    { 0x00, 0x60, 0x60, 0x00, 0x00 }, /* . */ { 0x20, 0x10, 0x08, 0x04, 0x02 }, /* / */
    { 0x3E, 0x51, 0x49, 0x45, 0x3E }, /* 0 */ { 0x00, 0x42, 0x7F, 0x40, 0x00 }, /* 1 */
    { 0x42, 0x61, 0x51, 0x49, 0x46 }, /* 2 */ { 0x21, 0x41, 0x45, 0x4B, 0x31 }, /* 3 */
    { 0x18, 0x14, 0x12, 0x7F, 0x10 }, /* 4 */ { 0x27, 0x45, 0x45, 0x45, 0x39 }, /* 5 */
    { 0x3C, 0x4A, 0x49, 0x49, 0x30 }, /* 6 */ { 0x01, 0x71, 0x09, 0x05, 0x03 }, /* 7 */
    { 0x36, 0x49, 0x49, 0x49, 0x36 }, /* 8 */ { 0x06, 0x49, 0x49, 0x29, 0x1E }, /* 9 */
    { 0x00, 0x36, 0x36, 0x00, 0x00 }, /* : */ { 0x00, 0x56, 0x36, 0x00, 0x00 }, /* ; */
    { 0x08, 0x14, 0x22, 0x41, 0x00 }, /* < */ { 0x14, 0x14, 0x14, 0x14, 0x14 }, /* = */
    { 0x00, 0x41, 0x22, 0x14, 0x08 }, /* > */ { 0x02, 0x01, 0x51, 0x09, 0x06 }, /* ? */
    { 0x32, 0x49, 0x79, 0x41, 0x3E }, /* @ */ { 0x7E, 0x11, 0x11, 0x11, 0x7E }, /* A */
    { 0x7F, 0x49, 0x49, 0x49, 0x36 }, /* B */ { 0x3E, 0x41, 0x41, 0x41, 0x22 }, /* C */
    { 0x7F, 0x41, 0x41, 0x22, 0x1C }, /* D */ { 0x7F, 0x49, 0x49, 0x49, 0x41 }, /* E */
    { 0x7F, 0x09, 0x09, 0x09, 0x01 }, /* F */ { 0x3E, 0x41, 0x49, 0x49, 0x7A }, /* G */
    { 0x7F, 0x08, 0x08, 0x08, 0x7F }, /* H */ { 0x00, 0x41, 0x7F, 0x41, 0x00 }, /* I */
    { 0x20, 0x40, 0x41, 0x3F, 0x01 }, /* J */ { 0x7F, 0x08, 0x14, 0x22, 0x41 }, /* K */
    { 0x7F, 0x40, 0x40, 0x40, 0x40 }, /* L */ { 0x7F, 0x02, 0x0C, 0x02, 0x7F }, /* M */
    { 0x7F, 0x04, 0x08, 0x10, 0x7F }, /* N */ { 0x3E, 0x41, 0x41, 0x41, 0x3E }, /* O */
    { 0x7F, 0x09, 0x09, 0x09, 0x06 }, /* P */ { 0x3E, 0x41, 0x51, 0x21, 0x5E }, /* Q */
    { 0x7F, 0x09, 0x19, 0x29, 0x46 }, /* R */ { 0x46, 0x49, 0x49, 0x49, 0x31 }, /* S */
    { 0x01, 0x01, 0x7F, 0x01, 0x01 }, /* T */ { 0x3F, 0x40, 0x40, 0x40, 0x3F }, /* U */
    { 0x1F, 0x20, 0x40, 0x20, 0x1F }, /* V */ { 0x3F, 0x40, 0x38, 0x40, 0x3F }, /* W */
    { 0x63, 0x14, 0x08, 0x14, 0x63 }, /* X */ { 0x07, 0x08, 0x70, 0x08, 0x07 }, /* Y */
    { 0x61, 0x51, 0x49, 0x45, 0x43 }, /* Z */ { 0x00, 0x7F, 0x41, 0x41, 0x00 }, /* [ */
    { 0x02, 0x04, 0x08, 0x10, 0x20 }, /* \ */ { 0x00, 0x41, 0x41, 0x7F, 0x00 }, /* ] */
    { 0x04, 0x02, 0x01, 0x02, 0x04 }, /* ^ */ { 0x40, 0x40, 0x40, 0x40, 0x40 }, /* _ */
    { 0x00, 0x01, 0x02, 0x04, 0x00 }, /* ` */ { 0x20, 0x54, 0x54, 0x54, 0x78 }, /* a */
    { 0x7F, 0x48, 0x44, 0x44, 0x38 }, /* b */ { 0x38, 0x44, 0x44, 0x44, 0x20 }, /* c */
    { 0x38, 0x44, 0x44, 0x48, 0x7F }, /* d */ { 0x38, 0x54, 0x54, 0x54, 0x18 }, /* e */
    { 0x08, 0x7E, 0x09, 0x01, 0x02 }, /* f */ { 0x18, 0xA4, 0xA4, 0xA4, 0x7C }, /* g */
    { 0x7F, 0x08, 0x04, 0x04, 0x78 }, /* h */ { 0x00, 0x44, 0x7D, 0x40, 0x00 }, /* i */
    { 0x40, 0x80, 0x84, 0x7D, 0x00 }, /* j */ { 0x7F, 0x10, 0x28, 0x44, 0x00 }, /* k */
    { 0x00, 0x41, 0x7F, 0x40, 0x00 }, /* l */ { 0x7C, 0x04, 0x18, 0x04, 0x78 }, /* m */
    { 0x7C, 0x08, 0x04, 0x04, 0x78 }, /* n */ { 0x38, 0x44, 0x44, 0x44, 0x38 }, /* o */
    { 0xFC, 0x24, 0x24, 0x24, 0x18 }, /* p */ { 0x18, 0x24, 0x24, 0x24, 0xFC }, /* q */
    { 0x7C, 0x08, 0x04, 0x04, 0x08 }, /* r */ { 0x48, 0x54, 0x54, 0x54, 0x20 }, /* s */
    { 0x04, 0x3F, 0x44, 0x40, 0x20 }, /* t */ { 0x3C, 0x40, 0x40, 0x20, 0x7C }, /* u */
    { 0x1C, 0x20, 0x40, 0x20, 0x1C }, /* v */ { 0x3C, 0x40, 0x30, 0x40, 0x3C }, /* w */
    { 0x44, 0x28, 0x10, 0x28, 0x44 }, /* x */ { 0x1C, 0xA0, 0xA0, 0xA0, 0x7C }, /* y */
    { 0x44, 0x64, 0x54, 0x4C, 0x44 }, /* z */ { 0x00, 0x08, 0x36, 0x41, 0x00 }, /* { */
    { 0x00, 0x00, 0x7F, 0x00, 0x00 }, /* | */ { 0x00, 0x41, 0x36, 0x08, 0x00 }, /* } */
    { 0x08, 0x04, 0x08, 0x10, 0x08 },                                           /* ~ */
};

int dh_text_width(const char *s, size_t n, int scale) {
    size_t l = strnlen(s, n);
    return l ? (int)(l * DH_FONT_W - 1) * scale : 0;
}

int dh_canvas_text(dh_canvas *c, int x, int y, const char *s, size_t n, int scale, const uint8_t rgb[3]) {
    for (size_t k = 0; k < n && s[k]; k++) {
        unsigned char ch = (unsigned char)s[k];
        const uint8_t *g = font5x7[(ch >= 32 && ch < 127 ? ch : '?') - 32];
        for (int col = 0; col < 5; col++)
            for (int row = 0; row < 8; row++)
                if (g[col] >> row & 1) dh_canvas_fill(c, x + col * scale, y + row * scale, scale, scale, rgb);
        x += DH_FONT_W * scale;
    }
    return x;
}

/* ---- PNG into memory ------------------------------------------------------------ */
typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} membuf;

typedef struct pngerr {
    jmp_buf jb;
    char msg[200];
} pngerr;

static void png_err_fn(png_structp png, png_const_charp msg) {
    pngerr *pe = png_get_error_ptr(png);
    snprintf(pe->msg, sizeof pe->msg, "%s", msg);
    longjmp(pe->jb, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_write_fn(png_structp png, png_bytep data, png_size_t len) {
    membuf *b = png_get_io_ptr(png);
    if (b->oom) return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            png_error(png, "out of memory");
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}
static void png_flush_fn(png_structp png) { (void)png; }

int dh_png_encode(const uint8_t *px, int w, int h, int c, int planar, uint8_t **out, size_t *n, dh_err *e) {
    *out = NULL;
    *n = 0;
    if (w < 1 || h < 1 || (c != 1 && c != 3) || (int64_t)w * h > CANVAS_MAX_PIXELS)
        return dh_seterr(e, DH_EINVAL, "cannot encode a %dx%dx%d image as PNG", c, h, w);
    uint8_t *row = dh_malloc(e, (size_t)w, (size_t)c);
    if (!row) return DH_ENOMEM;
    /* volatile: these change after setjmp and are read after a longjmp */
    membuf buf = { 0 };
    membuf *volatile bp = &buf;
    pngerr pe;
    pe.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        free(row);
        return dh_seterr(e, DH_ENOMEM, "out of memory creating a PNG writer");
    }
    if (setjmp(pe.jb)) {
        png_destroy_write_struct(&png, &info);
        free(row);
        free(bp->p);
        return dh_seterr(e, bp->oom ? DH_ENOMEM : DH_EFORMAT, "PNG encoding: %s", pe.msg);
    }
    png_set_write_fn(png, bp, png_write_fn, png_flush_fn);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t plane = (size_t)w * h;
    for (int y = 0; y < h; y++) {
        if (planar) {
            for (int x = 0; x < w; x++)
                for (int k = 0; k < c; k++) row[(size_t)x * c + k] = px[k * plane + (size_t)y * w + x];
        } else {
            memcpy(row, px + (size_t)y * w * c, (size_t)w * c);
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    *out = buf.p;
    *n = buf.n;
    return 0;
}
