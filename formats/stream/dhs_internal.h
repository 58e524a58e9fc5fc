/* dhs_internal.h — representation of metadata values, shared by the
 * stream library's files. Not installed as public API. */
#ifndef DHS_INTERNAL_H
#define DHS_INTERNAL_H
#include "dhs.h"

typedef struct dhs_mval {
    dhs_mtype t;
    int64_t i; /* INT */
    double f;  /* FLOAT */
    int b;     /* BOOL */
    char *s;
    uint32_t len; /* STR (NUL-terminated, len bytes) */
    struct dhs_mval *a;
    int n;       /* ARRAY */
    dhs_meta *m; /* MAP */
} dhs_mval;

struct dhs_meta {
    int n, cap;
    char **keys;
    dhs_mval *vals;
};

int dhs_meta_put(dhs_meta *m, const char *key, dhs_mval *v); /* takes ownership */
void dhs_mval_free(dhs_mval *v);
int dhs_mval_copy(dhs_mval *dst, const dhs_mval *src);
#endif
