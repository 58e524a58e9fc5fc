/* picture.h — pictures out: an RGB canvas to draw contact sheets on, a
 * built-in 5x7 bitmap font, and PNG encoding into memory (libpng).
 *
 * Images come in as the streams hold them: planar u8 (c, h, w), c = 1
 * (grey) or 3 (RGB). The canvas is interleaved RGB (h, w, 3). Drawing is
 * clipped to the canvas; nothing here prints or exits.
 */
#ifndef DH_PICTURE_H
#define DH_PICTURE_H
#include <stddef.h>
#include <stdint.h>
#include "dh_util.h"

typedef struct dh_canvas {
    int w, h;
    uint8_t *px; /* (h, w, 3) RGB */
} dh_canvas;

/* A w x h canvas filled with bg (RGB). DH_ELIMIT beyond 2^28 pixels. */
int dh_canvas_init(dh_canvas *c, int w, int h, const uint8_t bg[3], dh_err *e);
void dh_canvas_free(dh_canvas *c);
/* Fill the rectangle (x, y, w, h) with rgb. */
void dh_canvas_fill(dh_canvas *c, int x, int y, int w, int h, const uint8_t rgb[3]);
/* A frame of thickness t around the rectangle (x, y, w, h), outside it. */
void dh_canvas_frame(dh_canvas *c, int x, int y, int w, int h, int t, const uint8_t rgb[3]);
/* Draw a planar image (ch 1 or 3, ih x iw) at (x, y), each pixel as a
 * scale x scale block (nearest neighbour). */
void dh_canvas_image(dh_canvas *c, int x, int y, const uint8_t *planar, int ch, int ih, int iw, int scale);

/* The font: 5x7 dots (descenders in an eighth row) in a 6x8 cell, printable
 * ASCII (other bytes as '?'). */
#define DH_FONT_W 6
#define DH_FONT_H 8
/* Width in pixels of s (at most n bytes of it) at the given dot scale. */
int dh_text_width(const char *s, size_t n, int scale);
/* Draw at most n bytes of s with its top-left corner at (x, y); returns x
 * after the text. */
int dh_canvas_text(dh_canvas *c, int x, int y, const char *s, size_t n, int scale, const uint8_t rgb[3]);

/* Encode a w x h image as PNG into a malloc'd buffer (*out, *n). px holds
 * c channels (1 grey, 3 RGB), interleaved (h, w, c) or, with planar set,
 * planar (c, h, w). */
int dh_png_encode(const uint8_t *px, int w, int h, int c, int planar, uint8_t **out, size_t *n, dh_err *e);

#endif
