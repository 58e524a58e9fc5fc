/* dh_cudaload.h — the CUDA backend, loaded at run time.
 *
 * Every .cu file of deephash is compiled into one shared object,
 * libdhcuda.so, with the CUDA runtime linked statically into it and cuBLAS
 * and cuDNN as its needed libraries. Programs and libdeephash.a never link
 * CUDA: the first CUDA use calls dh_cuda_load(), which
 *   1. opens the driver, libcuda.so.1 (the system's, else a folder below);
 *   2. opens libdhcuda.so: $DH_CUDA_LIB, else PROG_DIR/../lib/libdhcuda.so,
 *      PROG_DIR/../lib/deephash/libdhcuda.so or PROG_DIR/libdhcuda.so
 *      (PROG_DIR: the folder of /proc/self/exe), else on the linker's path
 *      (make install puts it in PREFIX/lib);
 *   3. when a library it needs (libcublas.so.13, libcudnn.so.9, ...) is not
 *      on the linker's path, finds that file (its soname, so a wheel's lone
 *      libcudnn.so.9 is enough) in the folders below, opens it by its full
 *      path, and tries again;
 * and reports the first library it could not find, by name, as DH_EDEVICE.
 * Folders searched, in order: $DH_CUDA_PATH (colon-separated; with
 * DH_CUDA_PATH_ONLY=1 nothing else), $LD_LIBRARY_PATH, the active Python
 * environment's wheels ($VIRTUAL_ENV, $CONDA_PREFIX: lib/python3* /
 * {site,dist}-packages/nvidia/ * /lib, where nvidia-cudnn-cu13 puts
 * libcudnn.so.9 (nvidia/cudnn/lib) and CUDA 13's nvidia-cublas
 * libcublas.so.13 (nvidia/cu13/lib)) and $CONDA_PREFIX/lib, $CUDA_HOME,
 * $CUDA_PATH, $CUDNN_HOME (lib64, lib, targets/ * /lib), /usr/local/cuda and
 * /usr/local/cuda-* (newest first), /opt/cuda, the multiarch folders and
 * /usr/lib/wsl/lib, then the wheels of ~/.local, ~/.pyenv/versions/ *,
 * /opt/conda, /usr/local and /usr, and each $PYTHONPATH entry's nvidia/ * /lib.
 *
 * Entry points of libdhcuda.so are found by name (dh_cuda_sym); its exported
 * names are dk_*_cuda and dk_cuda_* (the tensor library's backend, dk_impl.h)
 * and dhcu_* (the other rooms). DH_CUDA_CALL(fn, e, args...) calls one,
 * declared with its prototype on the C side, and returns its int result, or
 * the load error when the backend is not there. A build without nvcc and
 * cuDNN (DH_USE_CUDA 0) has no libdhcuda.so and says so.
 *
 * The result is cached: a failed load is not retried in the same process.
 * Not thread-safe (as the rest of the library).
 */
#ifndef DH_CUDALOAD_H
#define DH_CUDALOAD_H
#include <stddef.h>
#include "dh_util.h"

/* Version of the interface between the C side and libdhcuda.so; both sides
 * are built from one tree, so a mismatch means a libdhcuda.so of another
 * build was found. libdhcuda.so's dhcu_abi_version() returns it. */
#define DH_CUDA_ABI 1

/* Load the CUDA backend (once). 0, or DH_EDEVICE with the reason in e
 * (the library not found, by name; this build without CUDA; ...). */
int dh_cuda_load(dh_err *e);
/* 1 once dh_cuda_load succeeded (never loads). */
int dh_cuda_loaded(void);
/* The address of libdhcuda.so's entry point `name`, loading the backend
 * first; NULL with e filled when it cannot. */
void *dh_cuda_sym(const char *name, dh_err *e);
/* The code of the error dh_cuda_sym left in e (DH_EDEVICE when e is NULL). */
int dh_cuda_errcode(const dh_err *e);

/* For reports (the device check): "libdhcuda.so => PATH; libcuda.so.1 =>
 * PATH; ..." for the CUDA libraries loaded in this process. Returns buf. */
const char *dh_cuda_libs_report(char *buf, size_t n);

/* The search, exposed for tests: the full path of soname in the folders
 * above (not the linker's own path). 0 when found. */
int dh_cuda_find_lib(const char *soname, char *path, size_t n);
/* From a dlerror() message "NAME: cannot open shared object file: ...",
 * NAME into name. 0 when the message is of that form. */
int dh_cuda_dlerror_missing(const char *msg, char *name, size_t n);

/* Call libdhcuda.so's int-returning fn(args) (fn declared on the C side;
 * the C side never defines it). e: the caller's dh_err * (may be NULL). */
#define DH_CUDA_CALL(fn, e, ...)                                                                                       \
    __extension__({                                                                                                    \
        static __typeof__(&fn) dh_cu_fp_;                                                                              \
        if (!dh_cu_fp_) dh_cu_fp_ = (__typeof__(&fn))dh_cuda_sym(#fn, (e));                                            \
        dh_cu_fp_ ? dh_cu_fp_(__VA_ARGS__) : dh_cuda_errcode(e);                                                       \
    })
/* Call a void fn(args) when the backend is loaded already (never loads it:
 * for shutdown and release functions). */
#define DH_CUDA_CALL_IF_LOADED(fn, ...)                                                                                \
    do {                                                                                                               \
        if (dh_cuda_loaded()) {                                                                                        \
            __typeof__(&fn) dh_cu_fp_ = (__typeof__(&fn))dh_cuda_sym(#fn, NULL);                                       \
            if (dh_cu_fp_) dh_cu_fp_(__VA_ARGS__);                                                                     \
        }                                                                                                              \
    } while (0)

#endif
