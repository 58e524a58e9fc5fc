/* map_report.h — dh-map's reports (man/dh-map.1): the table for people,
 * the JSON result for scripts, and the JSON result read back (dh-plot).
 */
#ifndef DH_MAP_REPORT_H
#define DH_MAP_REPORT_H
#include <stdio.h>
#include "dh_util.h"
#include "evalmap.h"

/* Write the table or the JSON result of r, named label, with an optional
 * note (NULL: none) on f; the caller checks f for write errors. */
void dh_map_write_table(FILE *f, const dh_map_result *r, const char *label, const char *note);
void dh_map_write_json(FILE *f, const dh_map_result *r, const char *label, const char *note);

/* Read a JSON result (text[0..len)) back into r (dh_map_result_free) and
 * *label (malloc'd). Metrics written as null are read with their have_*
 * flag 0, and so are those absent from older results. DH_EFORMAT naming
 * what is wrong for text that is not JSON or not a dh-map result. */
int dh_map_read_json(const char *text, size_t len, dh_map_result *r, char **label, dh_err *e);

#endif
