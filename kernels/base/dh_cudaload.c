/* dh_cudaload.c — finding and loading libdhcuda.so and the CUDA libraries it
 * needs (dh_cudaload.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_cudaload.h"

#ifndef DH_USE_CUDA
#define DH_USE_CUDA 0
#endif

static int g_state; /* 0 not tried, 1 loaded, -1 failed (g_err says why) */
static void *g_handle;
static dh_err g_err;
static char g_path[PATH_MAX];

int dh_cuda_loaded(void) { return g_state == 1; }

int dh_cuda_errcode(const dh_err *e) { return e ? (int)e->code : DH_EDEVICE; }

/* ---- the folders to search -------------------------------------------------------------------------------------- */
typedef struct {
    char **d;
    int n, cap;
} dirlist;

static void dl_add(dirlist *L, const char *dir) {
    if (!dir || !*dir) return;
    for (int i = 0; i < L->n; i++)
        if (strcmp(L->d[i], dir) == 0) return;
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 32;
        char **d = realloc(L->d, (size_t)cap * sizeof *d);
        if (!d) return;
        L->d = d;
        L->cap = cap;
    }
    char *s = strdup(dir);
    if (s) L->d[L->n++] = s;
}

static void dl_free(dirlist *L) {
    for (int i = 0; i < L->n; i++) free(L->d[i]);
    free(L->d);
    memset(L, 0, sizeof *L);
}

/* Every entry of a colon-separated list, each followed by suffix. */
static void dl_add_list(dirlist *L, const char *list, const char *suffix) {
    if (!list) return;
    char buf[PATH_MAX];
    const char *p = list;
    while (*p) {
        const char *c = strchr(p, ':');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len > 0 && len + strlen(suffix) < sizeof buf) {
            memcpy(buf, p, len);
            strcpy(buf + len, suffix);
            dl_add(L, buf);
        }
        if (!c) break;
        p = c + 1;
    }
}

/* Every folder matching pattern; newest_first reverses glob's sorted order
 * (so /usr/local/cuda-13.1 comes before /usr/local/cuda-12.8). */
static void dl_add_glob(dirlist *L, const char *pattern, int newest_first) {
    glob_t g;
    if (glob(pattern, GLOB_ONLYDIR, NULL, &g) != 0) return;
    for (size_t i = 0; i < g.gl_pathc; i++) dl_add(L, g.gl_pathv[newest_first ? g.gl_pathc - 1 - i : i]);
    globfree(&g);
}

static void dl_add_prefix(dirlist *L, const char *prefix, int newest_first) {
    if (!prefix || !*prefix) return;
    static const char *const sub[] = { "/lib64", "/lib", "/targets/*/lib" };
    char pat[PATH_MAX];
    for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
        if ((size_t)snprintf(pat, sizeof pat, "%s%s", prefix, sub[i]) >= sizeof pat) continue;
        dl_add_glob(L, pat, newest_first);
    }
}

/* The Python wheels' nvidia/ * /lib under a prefix (a venv, conda, ~/.local). */
static void dl_add_wheels(dirlist *L, const char *prefix) {
    if (!prefix || !*prefix) return;
    char pat[PATH_MAX];
    if ((size_t)snprintf(pat, sizeof pat, "%s/lib/python3*/site-packages/nvidia/*/lib", prefix) < sizeof pat)
        dl_add_glob(L, pat, 0);
    if ((size_t)snprintf(pat, sizeof pat, "%s/lib/python3*/dist-packages/nvidia/*/lib", prefix) < sizeof pat)
        dl_add_glob(L, pat, 0);
}

static void search_dirs(dirlist *L) {
    dl_add_list(L, getenv("DH_CUDA_PATH"), "");
    const char *only = getenv("DH_CUDA_PATH_ONLY");
    if (only && strcmp(only, "1") == 0) return;
    dl_add_list(L, getenv("LD_LIBRARY_PATH"), "");
    /* the active Python environment's wheels (and conda's own lib/) first */
    dl_add_wheels(L, getenv("VIRTUAL_ENV"));
    dl_add_wheels(L, getenv("CONDA_PREFIX"));
    dl_add_prefix(L, getenv("CONDA_PREFIX"), 0);
    dl_add_prefix(L, getenv("CUDA_HOME"), 0);
    dl_add_prefix(L, getenv("CUDA_PATH"), 0);
    dl_add_prefix(L, getenv("CUDNN_HOME"), 0);
    dl_add_prefix(L, "/usr/local/cuda", 0);
    dl_add_prefix(L, "/usr/local/cuda-*", 1);
    dl_add_prefix(L, "/opt/cuda", 0);
#if defined(__x86_64__)
    dl_add(L, "/usr/lib/x86_64-linux-gnu");
    dl_add(L, "/usr/lib/x86_64-linux-gnu/nvidia/current");
#elif defined(__aarch64__)
    dl_add(L, "/usr/lib/aarch64-linux-gnu");
    dl_add(L, "/usr/lib/aarch64-linux-gnu/nvidia/current");
#endif
    dl_add(L, "/usr/lib64");
    dl_add(L, "/usr/lib/wsl/lib");
    /* other Python environments' wheels */
    const char *home = getenv("HOME");
    char buf[PATH_MAX];
    if (home && (size_t)snprintf(buf, sizeof buf, "%s/.local", home) < sizeof buf) dl_add_wheels(L, buf);
    if (home && (size_t)snprintf(buf, sizeof buf, "%s/.pyenv/versions/*", home) < sizeof buf) {
        glob_t g;
        if (glob(buf, GLOB_ONLYDIR, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) dl_add_wheels(L, g.gl_pathv[i]);
            globfree(&g);
        }
    }
    dl_add_wheels(L, "/opt/conda");
    dl_add_wheels(L, "/usr/local");
    dl_add_wheels(L, "/usr");
    dl_add_list(L, getenv("PYTHONPATH"), "/nvidia/*/lib"); /* not folders yet: patterns */
}

int dh_cuda_find_lib(const char *soname, char *path, size_t n) {
    dirlist L = { 0 };
    search_dirs(&L);
    int rc = -1;
    for (int i = 0; i < L.n && rc; i++) {
        char cand[PATH_MAX];
        if ((size_t)snprintf(cand, sizeof cand, "%s/%s", L.d[i], soname) >= sizeof cand) continue;
        if (strchr(L.d[i], '*')) { /* a $PYTHONPATH pattern */
            glob_t g;
            if (glob(cand, 0, NULL, &g) == 0) {
                if (g.gl_pathc > 0 && strlen(g.gl_pathv[0]) < n) {
                    strcpy(path, g.gl_pathv[0]);
                    rc = 0;
                }
                globfree(&g);
            }
            continue;
        }
        if (access(cand, R_OK) == 0 && strlen(cand) < n) {
            strcpy(path, cand);
            rc = 0;
        }
    }
    dl_free(&L);
    return rc;
}

int dh_cuda_dlerror_missing(const char *msg, char *name, size_t n) {
    if (!msg) return -1;
    const char *p = strstr(msg, ": cannot open shared object file");
    if (!p || p == msg) return -1;
    size_t len = (size_t)(p - msg);
    if (len >= n) return -1;
    memcpy(name, msg, len);
    name[len] = 0;
    return 0;
}

/* What a library is, for messages. */
static const char *lib_kind(const char *soname) {
    const char *b = strrchr(soname, '/');
    b = b ? b + 1 : soname;
    if (strncmp(b, "libcudnn", 8) == 0) return "cuDNN";
    if (strncmp(b, "libcublas", 9) == 0) return "cuBLAS";
    if (strncmp(b, "libcudart", 9) == 0) return "the CUDA runtime";
    if (strncmp(b, "libcuda.", 8) == 0) return "the CUDA driver";
    if (strncmp(b, "libnvidia", 9) == 0) return "the NVIDIA driver";
    return "the library";
}

static int not_found(dh_err *e, const char *soname, const char *needed_by) {
    const char *only = getenv("DH_CUDA_PATH_ONLY");
    int restricted = only && strcmp(only, "1") == 0;
    const int driver = strcmp(soname, "libcuda.so.1") == 0;
    return dh_seterr(e, DH_EDEVICE, "%s (%s%s%s) not found%s: searched %s; DH_CUDA_PATH=DIR adds a folder",
                     lib_kind(soname), soname, needed_by ? ", needed by " : "", needed_by ? needed_by : "",
                     driver ? " (no NVIDIA driver on this machine?)" : "",
                     restricted ? "DH_CUDA_PATH only (DH_CUDA_PATH_ONLY=1)"
                                : "the linker's path, LD_LIBRARY_PATH, CUDA_HOME, /usr/local/cuda*, /opt/cuda and the "
                                  "Python wheels (nvidia/*/lib)");
}

/* Open soname by its full path from the search (its own missing
 * dependencies first, depth-limited). */
static int preload(const char *soname, const char *needed_by, int depth, dh_err *e) {
    char path[PATH_MAX];
    if (dh_cuda_find_lib(soname, path, sizeof path) != 0) return not_found(e, soname, needed_by);
    for (int tries = 0; tries < 8; tries++) {
        if (dlopen(path, RTLD_NOW | RTLD_GLOBAL)) return 0;
        const char *msg = dlerror();
        char miss[PATH_MAX];
        if (depth < 4 && dh_cuda_dlerror_missing(msg, miss, sizeof miss) == 0 && strcmp(miss, path) != 0 &&
            strcmp(miss, soname) != 0) {
            int rc = preload(miss, soname, depth + 1, e);
            if (rc) return rc;
            continue;
        }
        return dh_seterr(e, DH_EDEVICE, "%s: %s", lib_kind(soname), msg ? msg : "cannot be loaded");
    }
    return dh_seterr(e, DH_EDEVICE, "%s (%s): cannot be loaded", lib_kind(soname), path);
}

/* Where libdhcuda.so is: $DH_CUDA_LIB or beside the program. */
static int find_self(char *out, size_t n, dh_err *e) {
    const char *env = getenv("DH_CUDA_LIB");
    if (env && *env) {
        if (access(env, R_OK) != 0) return dh_seterr(e, DH_EDEVICE, "DH_CUDA_LIB=%s: no such file", env);
        if (strlen(env) >= n) return dh_seterr(e, DH_EDEVICE, "DH_CUDA_LIB: path too long");
        strcpy(out, env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return dh_seterr(e, DH_EDEVICE, "CUDA backend: cannot find this program's folder (/proc/self/exe)");
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    static const char *const rel[] = { "/../lib/libdhcuda.so", "/../lib/deephash/libdhcuda.so", "/libdhcuda.so" };
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        char cand[PATH_MAX];
        if ((size_t)snprintf(cand, sizeof cand, "%s%s", exe, rel[i]) >= sizeof cand) continue;
        if (access(cand, R_OK) == 0) {
            char *r = realpath(cand, NULL);
            int ok = r && strlen(r) < n;
            if (ok) strcpy(out, r);
            free(r);
            if (ok) return 0;
        }
    }
    /* not beside the program (a program of the user's own, linked with
     * libdeephash.a): the linker's path, e.g. an installed PREFIX/lib */
    snprintf(out, n, "libdhcuda.so");
    return 0;
}

static int load(dh_err *e) {
    if (!DH_USE_CUDA)
        return dh_seterr(e, DH_EDEVICE, "this build has no CUDA backend (built without nvcc and cuDNN, or NO_CUDA=1)");
    /* 1. the driver (cudart, linked into libdhcuda.so, opens it by this name) */
    if (!dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL)) {
        dh_err pe;
        if (preload("libcuda.so.1", NULL, 0, &pe)) return dh_seterr(e, DH_EDEVICE, "no CUDA device: %s", pe.msg);
    }
    /* 2. libdhcuda.so, 3. the libraries it needs */
    char self[PATH_MAX];
    int rc = find_self(self, sizeof self, e);
    if (rc) return rc;
    for (int tries = 0; tries < 16; tries++) {
        g_handle = dlopen(self, RTLD_NOW | RTLD_LOCAL);
        if (g_handle) break;
        const char *msg = dlerror();
        char miss[PATH_MAX];
        if (dh_cuda_dlerror_missing(msg, miss, sizeof miss) == 0 && strcmp(miss, self) == 0)
            return dh_seterr(e, DH_EDEVICE,
                             "the CUDA backend libdhcuda.so is neither in this program's ../lib nor on the linker's "
                             "path (a build without CUDA, or a program moved without its lib/ folder; DH_CUDA_LIB "
                             "names it)");
        if (dh_cuda_dlerror_missing(msg, miss, sizeof miss) == 0 && strcmp(miss, self) != 0) {
            rc = preload(miss, "libdhcuda.so", 0, e);
            if (rc) return rc;
            continue;
        }
        return dh_seterr(e, DH_EDEVICE, "loading the CUDA backend: %s", msg ? msg : self);
    }
    if (!g_handle) return dh_seterr(e, DH_EDEVICE, "loading the CUDA backend %s: too many missing libraries", self);
    int (*abi)(void) = (int (*)(void))dlsym(g_handle, "dhcu_abi_version");
    if (!abi || abi() != DH_CUDA_ABI) {
        dlclose(g_handle);
        g_handle = NULL;
        return dh_seterr(e, DH_EDEVICE, "%s is from another build of deephash (interface %d, expected %d)", self,
                         abi ? abi() : 0, DH_CUDA_ABI);
    }
    strcpy(g_path, self);
    return 0;
}

int dh_cuda_load(dh_err *e) {
    if (g_state == 0) {
        memset(&g_err, 0, sizeof g_err);
        g_state = load(&g_err) == 0 ? 1 : -1;
    }
    if (g_state == 1) return 0;
    if (e) *e = g_err;
    return g_err.code ? (int)g_err.code : DH_EDEVICE;
}

void *dh_cuda_sym(const char *name, dh_err *e) {
    if (dh_cuda_load(e)) return NULL;
    void *p = dlsym(g_handle, name);
    if (!p) dh_seterr(e, DH_EDEVICE, "%s has no entry point %s (a libdhcuda.so of another build?)", g_path, name);
    return p;
}

/* ---- report ------------------------------------------------------------------------------------------------------ */
typedef struct {
    char *buf;
    size_t n, o;
} report;

static int report_one(struct dl_phdr_info *info, size_t size, void *ctx) {
    (void)size;
    report *r = ctx;
    const char *path = info->dlpi_name;
    if (!path || !*path) return 0;
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    static const char *const want[] = { "libdhcuda.so", "libcuda.so", "libcublas", "libcudnn.so", "libcudart" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (strncmp(b, want[i], strlen(want[i])) == 0) {
            char *real = realpath(path, NULL);
            if (r->o < r->n)
                r->o +=
                    (size_t)snprintf(r->buf + r->o, r->n - r->o, "%s%s => %s", r->o ? "; " : "", b, real ? real : path);
            free(real);
            break;
        }
    return 0;
}

const char *dh_cuda_libs_report(char *buf, size_t n) {
    if (!n) return buf;
    buf[0] = 0;
    report r = { buf, n, 0 };
    dl_iterate_phdr(report_one, &r);
    if (!buf[0]) snprintf(buf, n, "(no CUDA library loaded)");
    return buf;
}
