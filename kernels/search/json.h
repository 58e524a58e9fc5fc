/* json.h — a small JSON reader (RFC 8259) for the files deephash writes
 * and reads back (dh-map --json results, read by dh-plot).
 *
 * The whole text is parsed into a tree: objects keep their members in
 * order (duplicate keys: the first is found), strings are decoded to UTF-8
 * (\uXXXX escapes and surrogate pairs included; a NUL character is
 * refused), numbers are doubles. Nesting is limited to 256 levels. Errors
 * are DH_EFORMAT "line L, column C: reason".
 */
#ifndef DH_JSON_H
#define DH_JSON_H
#include <stddef.h>
#include <stdio.h>
#include "dh_util.h"

typedef enum { DH_JSON_NULL, DH_JSON_BOOL, DH_JSON_NUM, DH_JSON_STR, DH_JSON_ARR, DH_JSON_OBJ } dh_json_type;

typedef struct dh_json {
    dh_json_type type;
    int b;               /* BOOL */
    double num;          /* NUM */
    char *str;           /* STR */
    char *key;           /* the member's name, inside an object */
    struct dh_json *kid; /* ARR, OBJ: n elements or members */
    int n;
} dh_json;

/* Parse text[0..len) (one value, surrounded by white space only). *out is
 * the tree (dh_json_free), NULL on failure: DH_EFORMAT with the line and
 * column (also for nesting beyond 256 levels), DH_ELIMIT beyond 2^22
 * values in all. */
int dh_json_parse(const char *text, size_t len, dh_json **out, dh_err *e);
void dh_json_free(dh_json *v);
/* Write s to f as a JSON string: quoted, '"' and '\\' escaped, control
 * characters as \\u00XX (other bytes as they are: UTF-8 passes through). */
void dh_json_write_str(FILE *f, const char *s);

/* The member key of object v: NULL when v is not an object or has none. */
const dh_json *dh_json_get(const dh_json *v, const char *key);
const char *dh_json_type_name(dh_json_type t); /* "null", "a number", ... */

#endif
