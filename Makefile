# deephash — root Makefile.
#
#   make              libraries and every program (CUDA backend when nvcc+cuDNN are found)
#   make test         the CPU test suite, built with AddressSanitizer + UBSan
#   make test-gpu     the GPU suite (needs a CUDA device)
#   make bench        CPU benchmarks (print figures)
#   make bench-gpu    GPU benchmarks
#   make fuzz         build and run every tests/fuzz/fuzz_*.c (clang/libFuzzer)
#   make demo         the full method on Fashion-MNIST at 48 bits (DEMO_EPOCHS, DEMO_FT_EPOCHS)
#   make test-fresh   README's commands on a fresh Debian bookworm root (debootstrap; root or sudo)
#   make install PREFIX=/usr/local
#   make clean
#
# Layout of the build: build/<variant>/{obj,lib,bin,tests}; variant "rel" is
# the normal build, "san" the sanitized CPU-only test build.

PREFIX  ?= /usr/local
VERSION := 0.1.0
CC      ?= cc
V       ?= rel

# ---- detection --------------------------------------------------------------
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda /opt/cuda /usr))
NVCC      ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard $(CUDA_HOME)/bin/nvcc))
CUDNN_H   := $(firstword $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h))
ifeq ($(V),san)
  USE_CUDA := 0
else ifeq ($(NO_CUDA),1)
  USE_CUDA := 0
else ifneq ($(and $(NVCC),$(CUDNN_H)),)
  USE_CUDA := 1
else
  USE_CUDA := 0
endif

# oneDNN (Debian libdnnl-dev): the fast CPU backend (kernels/dk/dk_dnnl.c),
# selected by default on the CPU when built in (DH_CPU=ref picks the reference);
# NO_DNNL=1 leaves it out. OpenMP is the CPU thread pool (DH_THREADS), shared
# with oneDNN's own threads.
DNNL_H := $(firstword $(wildcard /usr/include/oneapi/dnnl/dnnl.h /usr/local/include/oneapi/dnnl/dnnl.h))
DNNL_SO := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libdnnl.so /usr/lib/libdnnl.so /usr/local/lib/libdnnl.so /usr/lib64/libdnnl.so))
ifeq ($(NO_DNNL),1)
  USE_DNNL := 0
else ifneq ($(and $(DNNL_H),$(DNNL_SO)),)
  USE_DNNL := 1
else
  USE_DNNL := 0
endif

# MPI (Debian libopenmpi-dev): data-parallel training, `mpirun -np N dh-pretrain`
# (kernels/train/train_dist.c, the one file compiled with the MPI headers).
# Found with pkg-config (ompi-c, mpich) or the mpicc wrapper. Nothing links
# libmpi: train_dist.c opens it (libmpi.so.40 for Open MPI) when a launcher
# started the program, as NCCL for GPUs, so the programs and a bundle run
# where there is no MPI. NO_MPI=1 leaves it out: the programs then run alone
# as before and refuse to be one of several ranks.
ifeq ($(NO_MPI),1)
  USE_MPI := 0
else
  MPI_PC := $(firstword $(foreach p,ompi-c mpich,$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p))))
  ifneq ($(MPI_PC),)
    MPI_CFLAGS := $(shell pkg-config --cflags $(MPI_PC))
    MPI_LIBS   := $(shell pkg-config --libs $(MPI_PC))
  else ifneq ($(shell command -v mpicc 2>/dev/null),)
    MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || mpicc -compile_info 2>/dev/null | cut -d' ' -f2-)
    MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null || mpicc -link_info 2>/dev/null | cut -d' ' -f2-)
  endif
  USE_MPI := $(if $(strip $(MPI_LIBS)),1,0)
endif
MPI_VERSION := $(if $(filter 1,$(USE_MPI)),$(or $(MPI_PC),mpicc) $(shell pkg-config --modversion $(MPI_PC) 2>/dev/null))

BUILDDIR ?= build/$(V)
BUILD := $(BUILDDIR)
OBJ   := $(BUILD)/obj
LIBD  := $(BUILD)/lib
BIND  := $(BUILD)/bin
TESTD := $(BUILD)/tests

BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
CSTD    := -std=gnu11
ifeq ($(V),san)
  OPT   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else
  OPT   := -O3 -march=x86-64-v2 -g
  LDSAN :=
endif
# Rooms (see kernels/README.md, formats/README.md): each folder is one part
# of the system; headers are included by bare name, so every room is on the
# include path, and tests/unit/test_layering.sh checks the direction.
LIB_ROOMS  := kernels/base kernels/dk kernels/net kernels/hash kernels/search kernels/train formats/stream formats/netspec formats/image
PROG_ROOMS := formats/prog
ROOMS      := $(LIB_ROOMS) $(PROG_ROOMS)
CPPFLAGS := $(addprefix -I,$(ROOMS)) -DDH_VERSION='"$(VERSION)"' -DDH_USE_CUDA=$(USE_CUDA) -DDH_USE_DNNL=$(USE_DNNL) $(BLAS_CFLAGS) -D_FILE_OFFSET_BITS=64
# -ffp-contract=off: no a*b+c fused into an FMA behind the source's back.
# GNU C fuses by default wherever the target has FMA, which here means the
# AVX2 and AVX-512 clones (target_clones) of the GELU and the hash loss, and
# only from -O2 on: the optimised build and the sanitizer build that the
# tests run would compute different bits, and a max-pool's argmax in the air
# net flipped between them (test_dk_onednn under ONEDNN_MAX_CPU_ISA=AVX2).
# Off, every build and every clone computes what the C says; tests/cli/
# cpu_engine.sh checks that the two builds train the same model, bit for bit.
CFLAGS   += $(CSTD) $(OPT) $(WARN) -ffp-contract=off -pthread -fopenmp
LDLIBS   := -larchive -ljpeg -lpng -lmsgpackc -llapacke $(BLAS_LIBS) -lz -lm -lpthread
ifeq ($(USE_DNNL),1)
  LDLIBS += -ldnnl
endif
$(OBJ)/kernels/train/train_dist.o: CPPFLAGS += $(MPI_CFLAGS) -DDH_USE_MPI=$(USE_MPI)

# CUDA (kernels/README.md, "The CUDA backend at run time"): every .cu file goes
# into one shared object, lib/libdhcuda.so, with the CUDA runtime linked
# statically (and libstdc++), cuBLAS and cuDNN as its needed libraries; the
# programs never link CUDA and load it at the first CUDA use
# (kernels/base/dh_cudaload.c), so they run on the CPU where CUDA is absent.
# SASS for every architecture in CUDA_ARCH plus PTX for the last (CUDA_PTX),
# so one build loads on A100 (80), RTX 30 (86), RTX 40/L4/L40 (89), H100/H200
# (90) and JIT-compiles on newer GPUs: make CUDA_ARCH="90" for a faster build.
# Programs find lib/ through an $ORIGIN run path (DT_RPATH, so that it covers
# the libraries' own dependencies too: make bundle relies on it).
LDLIBS += -ldl
LDRUN  := -Wl,--disable-new-dtags,-rpath,'$$ORIGIN/../lib'
CUDA_ARCH ?= 80 86 89 90
CUDA_PTX  ?= $(lastword $(CUDA_ARCH))
ifeq ($(USE_CUDA),1)
  CUDA_GENCODE := $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) -gencode arch=compute_$(CUDA_PTX),code=compute_$(CUDA_PTX)
  NVCCFLAGS  ?= -O3 -std=c++17 $(CUDA_GENCODE) -Xcompiler -fPIC,-Wall,-Wshadow $(addprefix -I,$(ROOMS)) -DDH_USE_CUDA=1 -lineinfo
  DHCUDA     := $(LIBD)/libdhcuda.so
  DHCUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,--as-needed -lcublas -lcudnn -Wl,--no-as-needed -lcudart_static -lrt -ldl -lpthread
  # C files the .cu files call (compiled again into libdhcuda.so,
  # position-independent and hidden: the library has its own copies)
  CUDA_HOST_SRC := kernels/base/dh_util.c
endif

# ---- sources ------------------------------------------------------------------
LIB_SRC  := $(foreach r,$(LIB_ROOMS),$(wildcard $(r)/*.c))
PRG_SRC  := $(foreach r,$(PROG_ROOMS),$(wildcard $(r)/*.c))
CU_SRC   := $(if $(filter 1,$(USE_CUDA)),$(foreach r,$(ROOMS),$(wildcard $(r)/*.cu)))
PROG_SRC := $(wildcard bin/dh-*.c) $(wildcard tools/dh-*.c)
PROGS    := $(patsubst %.c,$(BIND)/%,$(notdir $(PROG_SRC)))
UTEST_SRC:= $(wildcard tests/unit/test_*.c)
UTESTS   := $(patsubst tests/unit/%.c,$(TESTD)/%,$(UTEST_SRC))
GTEST_SRC:= $(wildcard tests/gpu/test_*.c)
GTESTS   := $(patsubst tests/gpu/%.c,$(TESTD)/gpu_%,$(GTEST_SRC))
BENCH_SRC:= $(wildcard tests/bench/bench_*.c)
BENCHES  := $(patsubst tests/bench/%.c,$(TESTD)/%,$(BENCH_SRC))

LIB_OBJ := $(patsubst %.c,$(OBJ)/%.o,$(LIB_SRC))
CU_OBJ  := $(patsubst %.cu,$(OBJ)/%.cu.o,$(CU_SRC)) $(patsubst %.c,$(OBJ)/pic/%.o,$(CUDA_HOST_SRC))
PRG_OBJ := $(patsubst %.c,$(OBJ)/%.o,$(PRG_SRC))
# libdhprog.a: the program conventions (the one library that prints and
# exits); libdeephash.a: everything else.
LIBS    := $(LIBD)/libdhprog.a $(LIBD)/libdeephash.a
# Headers for users of the library: every room's, less the internal ones.
PRIVATE_HDRS := dk_impl.h dk_elem.h dk_dnnl.h dhs_internal.h hash_linalg.h dh_cuda.h deeploss_impl.h deeploss_elem.h deeploss_cuda.h train_nccl.h
PUBLIC_HDRS  := $(filter-out $(addprefix %/,$(PRIVATE_HDRS)),$(foreach r,$(ROOMS),$(wildcard $(r)/*.h)))

# Object files are kept (not removed as intermediates), so a second make builds nothing.
.SECONDARY:
.PHONY: all info test test-gpu bench bench-gpu fuzz fuzz-build install clean demo bundle
all: info $(PROGS) $(UTESTS) $(BENCHES)
all: $(DHCUDA) $(GTESTS)
$(PROGS) $(UTESTS) $(GTESTS) $(BENCHES): LDSAN += $(LDRUN)

info:
	@echo "deephash $(VERSION): build $(V), nvcc: $(if $(NVCC),$(NVCC),not found), cuDNN: $(if $(CUDNN_H),$(CUDNN_H),not found), CUDA backend: $(if $(filter 1,$(USE_CUDA)),yes,no), oneDNN: $(if $(filter 1,$(USE_DNNL)),$(DNNL_H) (CPU backend: onednn; DH_CPU=ref for the reference),not found (CPU backend: ref)), MPI: $(if $(filter 1,$(USE_MPI)),$(strip $(MPI_VERSION)) (mpirun -np N dh-pretrain: data-parallel training),$(if $(filter 1,$(NO_MPI)),off (NO_MPI=1),not found))"

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(OBJ)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(OBJ)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

# Exported: the entry points dk_*_cuda, dk_cuda_* and dhcu_* (dh_cudaload.h);
# the rest (the static CUDA runtime, libstdc++, the C copies) stays inside.
$(DHCUDA): $(CU_OBJ)
	@mkdir -p $(dir $@)
	printf '{ global: dk_*_cuda; dk_cuda_*; dhcu_*; local: *; };\n' > $(BUILD)/dhcuda.map
	$(CXX) -shared -o $@ $^ -Wl,-soname,libdhcuda.so -Wl,--version-script=$(BUILD)/dhcuda.map -Wl,-Bsymbolic \
	  -Wl,-z,defs -Wl,--enable-new-dtags,-rpath,'$$ORIGIN' -static-libstdc++ -static-libgcc $(DHCUDA_LIBS)

$(LIBD)/libdhprog.a: $(PRG_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $^

$(LIBD)/libdeephash.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $^

$(BIND)/%: $(OBJ)/bin/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $< $(LIBS) $(LDLIBS) -o $@

$(BIND)/%: $(OBJ)/tools/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $< $(LIBS) $(LDLIBS) -o $@

$(TESTD)/test_%: $(OBJ)/tests/unit/test_%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $< $(LIBS) $(LDLIBS) -o $@

$(TESTD)/gpu_test_%: $(OBJ)/tests/gpu/test_%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $< $(LIBS) $(LDLIBS) -o $@

$(TESTD)/bench_%: $(OBJ)/tests/bench/bench_%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $< $(LIBS) $(LDLIBS) -o $@

# ---- tests ----------------------------------------------------------------------
# `make test` installs missing dependencies, builds the normal build (so the
# CUDA path compiles and links), then builds and runs the suite sanitized.
test:
	@tools/install-deps --check || tools/install-deps
	$(MAKE) V=rel BUILDDIR=build/rel all
	$(MAKE) V=san BUILDDIR=build/san all
	DH_BIN=build/san/bin DH_TESTS=build/san/tests DH_REL_BIN=build/rel/bin tests/run

# The CUDA-vs-CPU tests with their error tables (tests/gpu/device-check,
# steps env and tests; logs in $(BUILD)/test-gpu): fails when this build has
# no CUDA backend, when there is no GPU, and when any test fails or skips.
comma := ,
test-gpu: all $(GTESTS)
	@[ "$(USE_CUDA)" = 1 ] || { echo "make test-gpu: this build has no CUDA backend (nvcc: $(if $(NVCC),$(NVCC),not found), cuDNN header: $(if $(CUDNN_H),$(CUDNN_H),not found)$(if $(filter 1,$(NO_CUDA)),$(comma) NO_CUDA=1)): no GPU test can run" >&2; exit 1; }
	DH_BIN=$(BIND) DH_TESTS=$(TESTD) tests/gpu/device-check --steps env,tests $(BUILD)/test-gpu

# A relocatable tarball (tools/dh-bundle): programs, GPU tests and device
# check, man pages, lib/ with libdhcuda.so and every non-system library the
# programs need (never the CUDA runtime, cuBLAS, cuDNN or the driver).
BUNDLE ?= $(BUILD)/deephash-$(VERSION)-$(shell uname -m).tar.gz
bundle: all $(GTESTS)
	tools/dh-bundle $(BUILD) $(BUNDLE)

bench: all
	DH_BIN=$(BIND) DH_TESTS=$(TESTD) tests/bench/run

bench-gpu: all
	DH_BIN=$(BIND) DH_TESTS=$(TESTD) tests/bench/run --gpu

# ---- fuzz: libFuzzer on every parser of outside input (tests/fuzz/README.md) ----
# `make fuzz` builds the targets with clang (ASan + UBSan + libFuzzer, CPU
# only) under build/fuzz and runs each for FUZZ_SECONDS (default 60) on its
# seeds tests/fuzz/corpus-NAME with its dictionary tests/fuzz/NAME.dict
# (FUZZ_TARGETS="stream npy" for some). The libraries of the rooms below are
# built once into build/fuzz/libfuzzdh.a with coverage instrumentation.
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_ROOMS   := kernels/base formats/stream formats/netspec formats/image kernels/hash kernels/search
FUZZ_CC      ?= clang
FUZZ_CPPFLAGS = $(filter-out -DDH_USE_CUDA=%,$(CPPFLAGS)) -DDH_USE_CUDA=0 -DDHS_RBUF=4096 -DDH_INGEST_IO_BLOCK=4096
FUZZ_CFLAGS  := $(CSTD) -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined $(WARN)
FUZZ_OBJ     := $(patsubst %.c,build/fuzz/obj/%.o,$(foreach r,$(FUZZ_ROOMS),$(wildcard $(r)/*.c)))
FUZZ_BINS    := $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build/fuzz/libfuzzdh.a: $(FUZZ_OBJ)
	rm -f $@; ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h build/fuzz/libfuzzdh.a
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -DDH_LIBFUZZER -fsanitize=fuzzer $< build/fuzz/libfuzzdh.a $(LDLIBS) -o $@

fuzz-build: $(FUZZ_BINS)

fuzz:
	@tools/install-deps --check || tools/install-deps
	$(MAKE) NO_CUDA=1 fuzz-build
	tests/fuzz/run $(FUZZ_NAMES)

# The same targets in the ordinary build, as replay programs (tests/fuzz/
# replay.c): tests/cli/fuzz_regress.sh replays the kept findings and the
# seeds with them in `make test`, no clang needed.
FUZZ_REPLAYS := $(addprefix $(TESTD)/fuzz_replay_,$(FUZZ_NAMES))
all: $(FUZZ_REPLAYS)
$(TESTD)/fuzz_replay_%: $(OBJ)/tests/fuzz/fuzz_%.o $(OBJ)/tests/fuzz/replay.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) $^ $(LDLIBS) -o $@

# ---- demo: the full method on Fashion-MNIST at 48 bits (CPU or GPU) ------------
demo:
	@tools/install-deps --check || tools/install-deps
	$(MAKE) V=rel BUILDDIR=build/rel all
	$(MAKE) -C pipelines/fashion-mnist BIN=$(CURDIR)/build/rel/bin W=$(CURDIR)/pipelines/work/demo \
	  PRETRAIN="--epochs $${DEMO_EPOCHS:-4}" FINETUNE="--epochs $${DEMO_FT_EPOCHS:-3}" demo
	@echo "== the programs are in $(CURDIR)/build/rel/bin: export PATH=\"$(CURDIR)/build/rel/bin:\$$PATH\""

# ---- test-fresh: a new user's first run, on a fresh Debian bookworm root ----------
# debootstrap (cached in build/fresh/), the committed checkout with ../shared
# beside it, tools/install-deps, make, man -l, a short demo, dh-show; about
# 15 minutes on 2 cores. FRESH_TEST=1 adds make test. See tests/fresh/run.
.PHONY: test-fresh
test-fresh:
	tests/fresh/run

# ---- install --------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/deephash \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBS) $(DESTDIR)$(PREFIX)/lib/
	$(if $(DHCUDA),install -m 755 $(DHCUDA) $(DESTDIR)$(PREFIX)/lib/)
	install -m 644 $(PUBLIC_HDRS) $(DESTDIR)$(PREFIX)/include/deephash/
	for m in man/*.1; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man1/; done; true
	for m in man/*.5; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man5/; done; true
	for m in man/*.7; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man7/; done; true
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LDLIBS) -fopenmp|' tools/deephash.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/deephash.pc

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' -type f 2>/dev/null)
