/* rank_codes.h — reading codes streams (kind "codes": code bits [K],
 * label i32, id str) into word form for ranking and evaluation. */
#ifndef DH_RANK_CODES_H
#define DH_RANK_CODES_H
#include <stdint.h>
#include "dhs.h"
#include "dh_util.h"

/* Check a codes schema: kind "codes", a field "code" of dtype bits with
 * shape [K] (1 <= K <= DH_HAMMING_MAX_BITS). Sets *bits, and the indices
 * of "label" (i32) and "id" (str), -1 when absent. */
int dh_codes_schema(const dhs_schema *s, int *bits, int *label_field, int *id_field, dh_err *e);

typedef struct dh_codeset {
    int64_t n;
    int bits, W;
    uint64_t *w;    // (n, W) codes in word form
    int32_t *label; // (n) or NULL when the stream has no labels
} dh_codeset;

/* The label of an unlabelled row (dh-ingest of images without a class). */
#define DH_NO_LABEL (-1)

/* Load a whole codes stream (path "-" or NULL: stdin). need_labels: fail
 * with DH_ESCHEMA when the stream has no label field, DH_EFORMAT when a
 * row's label is DH_NO_LABEL. Messages are prefixed by the input's name. */
int dh_codes_load(const char *path, dh_codeset *c, int need_labels, dh_err *e);
/* The same from a reader already open (its header read; not closed here),
 * messages prefixed by name. */
int dh_codes_read(dhs_reader *r, const char *name, dh_codeset *c, int need_labels, dh_err *e);
void dh_codes_free(dh_codeset *c);

#endif
