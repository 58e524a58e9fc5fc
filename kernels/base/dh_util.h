/* dh_util.h — errors and small utilities shared by every deephash library.
 *
 * Libraries never print and never exit: a function that can fail takes a
 * `dh_err *` (may be NULL), fills it with a code and a one-line message
 * (no program name, no trailing newline) and returns the code (non-zero).
 * Programs turn it into "dh-PROG: context: message" and an exit status
 * (see dh_prog.h).
 */
#ifndef DH_UTIL_H
#define DH_UTIL_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DH_OK = 0,
    DH_EOF,         /* clean end of input: not a failure for readers            */
    DH_EIO,         /* the operating system failed a read/write/open             */
    DH_EFORMAT,     /* malformed input: bad structure, bad value, not our format */
    DH_ETRUNC,      /* input ended before it was complete                        */
    DH_ECHECKSUM,   /* data damaged: checksum or row count mismatch              */
    DH_ESCHEMA,     /* wrong kind, missing field, shapes that do not agree       */
    DH_ELIMIT,      /* a declared size beyond the configured limits              */
    DH_ENOMEM,      /* allocation failed                                         */
    DH_EINVAL,      /* invalid argument from the caller (a usage error)          */
    DH_EDEVICE,     /* CUDA device missing or failing                            */
    DH_EUNSUPPORTED /* valid request this build or input kind cannot do          */
} dh_code;

typedef struct dh_err {
    dh_code code;
    char msg[1024];
} dh_err;

/* Set e (if non-NULL) to code and a printf-formatted message; returns code. */
int dh_seterr(dh_err *e, dh_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix the current message with context: "ctx: old message". */
void dh_err_prefix(dh_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *dh_code_name(dh_code c);

/* Allocation that reports failure through e (and refuses n*size overflow). */
void *dh_malloc(dh_err *e, size_t n, size_t size);
void *dh_calloc(dh_err *e, size_t n, size_t size);
void *dh_realloc(dh_err *e, void *p, size_t n, size_t size);
char *dh_strdup(dh_err *e, const char *s);

/* Wall-clock seconds (monotonic). */
double dh_now(void);

/* Parse helpers for option values: whole string must be a number in range.
 * Return 0 on success, -1 otherwise. */
int dh_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int dh_parse_int(const char *s, int lo, int hi, int *out);
int dh_parse_double(const char *s, double lo, double hi, double *out);
/* A byte count with an optional K/M/G/T suffix (powers of 1024; "B" or "iB"
 * may follow): "123", "4K", "1G", "2MiB". */
int dh_parse_size(const char *s, uint64_t *out);

#endif
