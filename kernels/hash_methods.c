/* hash_methods.c — the registry of hash-fitting methods (dh-inithash --method).
 *
 * To add a method: write kernels/hash_<name>.c with its fit function (and,
 * for a non-linear transform, its project function), declare them below,
 * and add one line to the table. Keep "deephash" first: it is the default.
 */
#include <string.h>
#include "hashfn.h"

/* ---- declarations of methods defined in other files (H6 adds here) ---- */
/* BEGIN METHOD DECLARATIONS */
/* END METHOD DECLARATIONS */

static const dh_hash_method methods[] = {
    /* name, summary, supervised, fit, transform, project */
    { "deephash", "the paper's stage 2: sigmoid hash layer + softmax trained on z (default)",
      1, dh_fit_deephash, "linear", NULL },
    /* BEGIN METHOD TABLE (one line per method) */
    /* END METHOD TABLE */
};

const dh_hash_method *dh_hash_method_at(int i)
{
    if (i < 0 || i >= (int)(sizeof methods / sizeof methods[0])) return NULL;
    return &methods[i];
}

const dh_hash_method *dh_hash_method_find(const char *name)
{
    const dh_hash_method *m;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (name && strcmp(m->name, name) == 0) return m;
    return NULL;
}

int dh_hash_transform_known(const char *transform)
{
    const dh_hash_method *m;
    if (!transform) return 0;
    if (strcmp(transform, "linear") == 0) return 1;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (m->transform && strcmp(m->transform, transform) == 0 && m->project) return 1;
    return 0;
}

dh_hash_project_fn dh_hash_transform_project(const char *transform)
{
    const dh_hash_method *m;
    if (!transform || strcmp(transform, "linear") == 0) return NULL;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        if (m->transform && strcmp(m->transform, transform) == 0 && m->project) return m->project;
    return NULL;
}
