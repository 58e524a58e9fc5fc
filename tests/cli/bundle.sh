#!/usr/bin/env bash
# make bundle (tools/dh-bundle) from the normal build ($DH_REL_BIN/..): the
# tarball's contents (no CUDA runtime, cuBLAS, cuDNN or driver in it), the
# $ORIGIN run path, every library resolving inside the bundle or to the C
# library, the GPU architectures in libdhcuda.so (sm_80/86/89/90 + PTX, by
# cuobjdump when there is one, else tools/dh-cuda-archs); then, in a minimal
# Debian bookworm root made by debootstrap (cached in build/bundle-root;
# without the -dev and library packages), a pipeline ingest -> map from the
# unpacked bundle, --device cuda failing with exit 4 and the name of the
# missing library (the driver; with a stand-in driver, cuBLAS), and the
# device check failing cleanly. Parts whose tool is missing skip visibly.
#   DH_BUNDLE_ROOT=DIR  use this root instead of build/bundle-root
#   DH_NO_DEBOOTSTRAP=1 never run debootstrap (use the root only if it exists)
. "$(dirname "$0")/../lib.sh"
src=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${DH_REL_BIN:-}" ] || [ ! -x "$DH_REL_BIN/dh-ingest" ]; then
  t_skip bundle "no normal build (DH_REL_BIN): make test sets it"; exit 0
fi
build=$(cd "$DH_REL_BIN/.." && pwd)
for t in ldd readelf objdump tar sha256sum; do
  command -v $t >/dev/null || { t_skip bundle "$t not found"; exit 0; }
done

# ---- make the bundle ---------------------------------------------------------------------------
t_begin bundle_builds
if "$src/tools/dh-bundle" "$build" "$TMP/b.tar.gz" > "$TMP/bundle.out" 2> "$TMP/bundle.err"; then
  echo "# $(cat "$TMP/bundle.out")"
else
  t_fail "tools/dh-bundle failed: $(tail -3 "$TMP/bundle.err")"
fi
t_end
[ -f "$TMP/b.tar.gz" ] || { t_done; exit; }
mkdir -p "$TMP/u" && tar -C "$TMP/u" -xzf "$TMP/b.tar.gz"
B=$(cd "$(ls -d "$TMP"/u/deephash-*)" && pwd -P)
name=$(basename "$B")

t_begin bundle_contents
for p in dh-ingest dh-pretrain dh-feats dh-inithash dh-finetune dh-encode dh-rank dh-map dh-info dh-cat dh-head dh-split dh-npy; do
  [ -x "$B/bin/$p" ] || t_fail "bin/$p missing"
done
[ -f "$B/man/man1/dh-ingest.1" ] && [ -f "$B/man/man5/dh-stream.5" ] || t_fail "man pages missing"
[ -x "$B/tests/gpu/device-check" ] || t_fail "tests/gpu/device-check missing"
[ -f "$B/README" ] && [ -f "$B/MANIFEST" ] || t_fail "README or MANIFEST missing"
(cd "$B" && sha256sum --quiet -c MANIFEST) >/dev/null 2>&1 || t_fail "MANIFEST does not match"
for l in "$B"/lib/*; do
  case $(basename "$l") in
    libcuda.so*|libcudart*|libcublas*|libcudnn*|libnvidia*) t_fail "bundle carries $(basename "$l")";;
    libc.so*|libm.so*|ld-linux*|libpthread*|libdl.so*) t_fail "bundle carries the C library's $(basename "$l")";;
  esac
done
if [ -f "$build/lib/libdhcuda.so" ]; then
  [ -f "$B/lib/libdhcuda.so" ] || t_fail "lib/libdhcuda.so missing"
  for t in gpu_test_env gpu_test_dk_ops gpu_test_hashloss; do
    [ -x "$build/tests/$t" ] && { [ -x "$B/tests/$t" ] || t_fail "tests/$t missing"; }
  done
  readelf -d "$B/lib/libdhcuda.so" | grep -q 'NEEDED.*libcudart' && t_fail "libdhcuda.so needs libcudart (should be static)"
fi
echo "# lib/: $(ls "$B/lib" | tr '\n' ' ')"
t_end

t_begin bundle_rpath
for p in "$B"/bin/* "$B"/tests/gpu_test_* ; do
  [ -f "$p" ] || continue
  readelf -d "$p" | grep -q 'R.*PATH.*\$ORIGIN/\.\./lib' || t_fail "$(basename "$p"): no \$ORIGIN/../lib run path"
  readelf -d "$p" | grep -q 'NEEDED.*\(libcudart\|libcublas\|libcudnn\|libcuda\.\)' && t_fail "$(basename "$p") links CUDA"
done
t_end

# Chroot-free: with the environment emptied, ldd resolves every library of
# every bundled file inside the bundle, or to the C library (and, for
# libdhcuda.so only, to the host's CUDA libraries).
t_begin bundle_ldd_resolves_inside
for f in "$B"/bin/* "$B"/tests/gpu_test_* "$B"/tests/test_net "$B"/lib/*; do
  [ -f "$f" ] || continue
  while read -r so arrow path rest; do
    [ "$arrow" = "=>" ] || continue
    case $so in
      linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libmvec.so*|libresolv.so*) continue;;
      libcublas*|libcudnn*) [ "$(basename "$f")" = libdhcuda.so ] && continue;;
    esac
    case $f in
      "$B"/lib/*) [ -e "$B/lib/$so" ] || t_fail "$(basename "$f") needs $so, not in lib/";; # no run path: the program's applies
      *) case $(readlink -f "$path") in "$B"/lib/*) ;; *) t_fail "$(basename "$f"): $so -> $path";; esac;;
    esac
  done < <(env -i PATH=/usr/bin:/bin ldd "$f" 2>/dev/null)
done
t_end

# At run time too: every library a pipeline stage loads comes from the bundle
# or the C library (LD_DEBUG lists them).
t_begin bundle_loads_only_its_libraries
env -i PATH=/usr/bin:/bin LD_DEBUG=libs "$B/bin/dh-map" --version > /dev/null 2> "$TMP/ld.log"
grep -q 'calling init' "$TMP/ld.log" || t_fail "LD_DEBUG printed nothing"
while read -r lib; do
  case $lib in
    "$B"/lib/*) ;;
    */libc.so*|*/libm.so*|*/ld-linux*|*/libgcc_s.so*|*/libpthread.so*|*/libdl.so*|*/librt.so*|*/libmvec.so*) ;;
    *) t_fail "loaded $lib from outside the bundle";;
  esac
done < <(sed -n 's/.*calling init: //p' "$TMP/ld.log" | xargs -r readlink -f | sort -u)
t_end

# ---- GPU architectures --------------------------------------------------------------------------
if [ -f "$B/lib/libdhcuda.so" ]; then
  t_begin bundle_cuda_archs
  want=${DH_EXPECT_ARCHS:-"80 86 89 90"}
  if command -v cuobjdump >/dev/null; then
    got=$(cuobjdump --list-elf --list-ptx "$B/lib/libdhcuda.so" 2>&1 | grep -o 'sm_[0-9]*\|compute_[0-9]*' | sort -u | tr '\n' ' ')
    how=cuobjdump
  elif command -v python3 >/dev/null; then
    got=$("$src/tools/dh-cuda-archs" "$B/lib/libdhcuda.so" 2>&1 | tr -d '\n' | sed 's/ptx://g')
    how=tools/dh-cuda-archs
  else
    got=""; how=none
  fi
  echo "# GPU code in libdhcuda.so ($how): $got"
  if [ $how = none ]; then t_fail "neither cuobjdump nor python3 to list the GPU code"; fi
  for a in $want; do
    case " $got " in *" sm_$a "*) ;; *) t_fail "no SASS for sm_$a ($got)";; esac
  done
  case " $got " in *" compute_"*) ;; *) t_fail "no PTX ($got)";; esac
  t_end
fi

# ---- a root without the libraries: debootstrap (cached) ------------------------------------------
root=${DH_BUNDLE_ROOT:-$src/build/bundle-root}
if [ "$(id -u)" != 0 ]; then t_skip bundle_in_bare_root "not root (chroot)"; t_done; exit; fi
if [ ! -x "$root/bin/sh" ]; then
  if [ "${DH_NO_DEBOOTSTRAP:-}" = 1 ] || ! command -v debootstrap >/dev/null; then
    t_skip bundle_in_bare_root "no Debian root at $root and no debootstrap (apt-get install debootstrap)"; t_done; exit
  fi
  mkdir -p "$(dirname "$root")"
  (
    flock 9
    if [ ! -x "$root/bin/sh" ]; then
      rm -rf "$root.tmp"
      echo "# debootstrap --variant=minbase bookworm $root (once; cached)"
      timeout 900 debootstrap --variant=minbase bookworm "$root.tmp" http://deb.debian.org/debian > "$TMP/debootstrap.log" 2>&1 &&
        mv "$root.tmp" "$root"
    fi
  ) 9> "$root.lock"
  if [ ! -x "$root/bin/sh" ]; then
    t_skip bundle_in_bare_root "debootstrap could not make $root: $(tail -1 "$TMP/debootstrap.log" 2>/dev/null)"; t_done; exit
  fi
fi

t_begin bare_root_lacks_the_libraries
for l in libarchive.so.13 libopenblas.so.0 libmsgpackc.so.2 libjpeg.so.62 libpng16.so.16 liblapacke.so.3 libcudnn.so.9 libcublas.so.13; do
  ls "$root"/usr/lib/x86_64-linux-gnu/$l "$root"/lib/x86_64-linux-gnu/$l >/dev/null 2>&1 && t_fail "the root has $l"
done
t_end

job=opt/dhtest.$$
# /proc: the dynamic linker finds $ORIGIN (and the loader the program's
# folder) through /proc/self/exe, as on any real machine. Mounted in a
# mount namespace of each command's own (unshare -m), so that runs at the
# same time never unmount each other's.
command -v unshare >/dev/null || { t_skip bundle_in_bare_root "no unshare (util-linux)"; t_done; exit; }
trap 'rm -rf "$TMP" "${root:?}/$job"' EXIT
in_root() {
  unshare -m -- /bin/sh -c 'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/env -i PATH="$2" HOME=/tmp /bin/sh -c "$3"' \
    sh "$root" "/$job/$name/bin:/usr/bin:/bin" "cd /$job && $*"
}
mkdir -p "$root/$job"
if ! in_root true 2> "$TMP/unshare.err"; then t_skip bundle_in_bare_root "cannot chroot with /proc: $(head -1 "$TMP/unshare.err")"; t_done; exit; fi
tar -C "$root/$job" -xzf "$TMP/b.tar.gz"
# a tiny MNIST-style IDX dataset: 200 images 28x28 of 10 classes
idx_header() { printf "\\x00\\x00\\x08\\x$1"; for v in "${@:2}"; do printf "\\x$(printf %02x $((v>>24&255)))\\x$(printf %02x $((v>>16&255)))\\x$(printf %02x $((v>>8&255)))\\x$(printf %02x $((v&255)))"; done; }
{ idx_header 03 200 28 28; head -c $((200*28*28)) /dev/urandom; } > "$root/$job/images.idx"
{ idx_header 01 200; for i in $(seq 0 199); do printf "\\x$(printf %02x $((i % 10)))"; done; } > "$root/$job/labels.idx"

t_begin bundle_pipeline_in_bare_root
if ! in_root "dh-ingest -q images.idx labels.idx > all.dhs &&
  dh-split --per-class 5 -o test.dhs -r train.dhs all.dhs &&
  dh-pretrain -q --arch lenet --epochs 1 --device auto -o net.dhm train.dhs &&
  dh-feats -q -m net.dhm < train.dhs > feats.dhs &&
  dh-inithash -q --bits 16 < feats.dhs > hash.dhm &&
  dh-finetune -q --features --hash hash.dhm --epochs 1 -o ft.dhm feats.dhs &&
  dh-encode -q -m ft.dhm < feats.dhs > db.codes &&
  dh-feats -q -m net.dhm < test.dhs | dh-encode -q -m ft.dhm > q.codes &&
  dh-rank -q --db db.codes --top 10 < q.codes > ranks.dhs &&
  dh-map --db db.codes < ranks.dhs > map.txt && dh-map --query q.codes --db db.codes --json > map.json" > "$TMP/pipe.log" 2>&1; then
  t_fail "pipeline failed in the bare root: $(grep -v warning "$TMP/pipe.log" | tail -2)"
fi
grep -q '"mAP"' "$root/$job/map.json" 2>/dev/null || t_fail "no mAP from dh-map"
t_end

t_begin bundle_device_cuda_names_the_driver
in_root "dh-feats --device cuda -m net.dhm < test.dhs > /dev/null" > "$TMP/cuda.out" 2> "$TMP/cuda.err"; rc=$?
[ $rc = 4 ] || t_fail "exit $rc, expected 4"
grep -q 'libcuda.so.1' "$TMP/cuda.err" || t_fail "does not name libcuda.so.1: $(cat "$TMP/cuda.err")"
[ "$(grep -c . "$TMP/cuda.err")" = 1 ] || t_fail "not one line: $(cat "$TMP/cuda.err")"
echo "# $(cat "$TMP/cuda.err")"
t_end

# A stand-in driver (no GPU behind it) gets past the driver: then the first
# CUDA library missing from the root is named (cuBLAS; cuDNN after it).
if [ -f "$B/lib/libdhcuda.so" ] && command -v cc >/dev/null; then
  t_begin bundle_device_cuda_names_cublas
  mkdir -p "$root/$job/fakedrv"
  echo 'int cuInit(unsigned f) { (void)f; return 100; }' > "$TMP/fake.c"
  if cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/$job/fakedrv/libcuda.so.1" "$TMP/fake.c" 2>/dev/null; then
    in_root "DH_CUDA_PATH=/$job/fakedrv dh-feats --device cuda -m net.dhm < test.dhs > /dev/null" 2> "$TMP/cuda2.err"; rc=$?
    [ $rc = 4 ] || t_fail "exit $rc, expected 4"
    grep -q 'cuBLAS (libcublas.so.13' "$TMP/cuda2.err" || grep -q 'cuDNN (libcudnn.so.9' "$TMP/cuda2.err" ||
      t_fail "does not name cuBLAS/cuDNN: $(cat "$TMP/cuda2.err")"
    echo "# $(cat "$TMP/cuda2.err")"
  else
    t_fail "could not build the stand-in driver"
  fi
  t_end
fi

t_begin device_check_fails_cleanly_without_gpu
in_root "/$job/$name/tests/gpu/device-check /$job/dc" > "$TMP/dc.out" 2>&1; rc=$?
[ $rc != 0 ] || t_fail "device-check exited 0 without a GPU"
[ $rc -lt 128 ] || t_fail "device-check killed by a signal"
grep -q '^env .*FAIL.*libcuda.so.1' "$TMP/dc.out" || t_fail "summary does not say why: $(tail -5 "$TMP/dc.out")"
grep -q 'device-check: FAILED' "$TMP/dc.out" || t_fail "no FAILED verdict"
[ -f "$root/$job/dc/summary.txt" ] && [ -f "$root/$job/dc/01-env.log" ] || t_fail "no summary or log in OUTDIR"
t_end
t_done
