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
/* Append without looking for key (the caller knows it is new, or checks
 * with dhs_meta_duplicate); takes ownership. 0, or -1 out of memory. */
int dhs_meta_append(dhs_meta *m, const char *key, dhs_mval *v);
/* 1 with *dup set when a key appears twice (found by sorting: n log n),
 * 0 when none does, -1 out of memory. */
int dhs_meta_duplicate(const dhs_meta *m, const char **dup);
void dhs_mval_free(dhs_mval *v);
int dhs_mval_copy(dhs_mval *dst, const dhs_mval *src);
#endif
