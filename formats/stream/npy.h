/* npy.h — NumPy .npy files (format versions 1.0-3.0): the header parser
 * and writer and the row readers behind `dh-npy import` (tools/dh-npy.c),
 * shared with the fuzz target tests/fuzz/fuzz_npy.c.
 *
 * Supported dtypes: <f4 <f8 <i4 <i8 <u4 <u8 |u1 |i1 |b1 (C order only).
 * Every declared size is checked before anything is allocated for it: the
 * header dict is at most NPY_MAX_HEADER bytes, a row (the elements after the
 * first axis) at most max_row_bytes, the first axis at most NPY_MAX_ROWS;
 * labels are stored as they are read, so a large declared count costs
 * nothing until its bytes arrive. Errors: DH_EFORMAT (not a .npy, a header
 * this reader cannot parse or an unsupported dtype), DH_ETRUNC (the file
 * ends early), DH_ELIMIT (beyond a limit), DH_EIO, DH_ENOMEM. Messages
 * start with the name given ("x.npy: truncated .npy data").
 */
#ifndef DH_NPY_H
#define DH_NPY_H
#include <stdint.h>
#include <stdio.h>
#include "dh_util.h"

#define NPY_MAX_DIMS      8
#define NPY_MAX_HEADER    (1u << 16)
#define NPY_MAX_ROWS      ((int64_t)1 << 40)
#define NPY_MAX_ROW_BYTES ((uint64_t)1 << 30) /* the stream chunk limit */

typedef struct npy_hdr {
    char descr[8]; /* e.g. "<f4" */
    int ndim;      /* >= 1 */
    int64_t shape[NPY_MAX_DIMS];
    int64_t elems; /* elements per row: the product of shape[1..] */
    size_t esize;  /* bytes per element */
} npy_hdr;

/* Read and check a header; f is left at the data. max_row_bytes 0 means
 * NPY_MAX_ROW_BYTES. */
int npy_read_header(FILE *f, const char *name, uint64_t max_row_bytes, npy_hdr *h, dh_err *e);
/* Write a version 1.0 header ({'descr', 'fortran_order': False, 'shape'}),
 * padded to a multiple of 64 bytes. Returns 0, or DH_EIO on a write error. */
int npy_write_header(FILE *f, const char *descr, int ndim, const int64_t *shape, dh_err *e);
/* Read a labels file: a header, then n integers (|u1, <i4 or <i8, a 1-D
 * array of exactly n rows) into a malloc'd int32 array *out (DH_EFORMAT for
 * a value outside int32). */
int npy_read_labels(FILE *f, const char *name, int64_t n, int32_t **out, dh_err *e);
/* Read row i (h->elems elements of h->esize bytes) into the scratch `in`
 * (h->elems * h->esize bytes) and convert it into `row`: as packed bits
 * when bits (1-byte elements, values 0 or 1 only; bit k at bit k%8 of byte k/8, ceil(elems/8)
 * bytes), <f8 narrowed to f32 (4*elems bytes), else copied as it is. */
int npy_read_row(FILE *f, const char *name, const npy_hdr *h, int bits, int64_t i, unsigned char *in,
                 unsigned char *row, dh_err *e);

#endif
