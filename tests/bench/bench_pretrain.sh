#!/usr/bin/env bash
# tests/bench/bench_pretrain.sh — stage-1 figures (benchmarks, not tests).
#
#   tests/bench/bench_pretrain.sh                   CPU: lenet on Fashion-MNIST (60,000 train / 10,000 test)
#   tests/bench/bench_pretrain.sh --gpu [ARCHIVE]   GPU: cifar and fast on CIFAR-10, plus dh-feats images/s
#
# Prints one "BENCH name: value" line per figure. $DH_BIN: the programs
# (default build/rel/bin). Extra dh-pretrain options: $PRETRAIN_OPTS.
# The CIFAR-10 archive (JPEG folders or the binary tarball): ARCHIVE, else
# $DH_CIFAR10, else the shared copy beside the repository
# (../shared/data/cifar10-jpg.tar.gz).
set -u
: "${DH_BIN:=build/rel/bin}"
export PATH="$(cd "$DH_BIN" && pwd):$PATH"
W=$(mktemp -d "${TMPDIR:-/tmp}/dhbench.XXXXXX")
trap 'rm -rf "$W"' EXIT
gpu=0
[ "${1:-}" = --gpu ] && { gpu=1; shift; }
C10=${1:-${DH_CIFAR10:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/data/cifar10-jpg.tar.gz}}

# run NAME CMD... : time a dh-pretrain run; report accuracy, wall time, images/s
run_pretrain() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  if ! dh-pretrain "$@" ${PRETRAIN_OPTS:-} 2>"$W/$name.log"; then
    echo "BENCH $name: FAILED: $(tail -1 "$W/$name.log")"; return 1
  fi
  t1=$(date +%s.%N)
  local acc ips
  acc=$(grep 'epoch ' "$W/$name.log" | tail -1 | sed -n 's/.*val loss [0-9.]* acc \([0-9.]*\)%.*/\1/p')
  ips=$(sed -n 's/.*trained in .* (\([0-9]*\) images\/s).*/\1/p' "$W/$name.log")
  grep 'epoch ' "$W/$name.log" | sed "s/^/  $name: /"
  echo "BENCH $name test accuracy: $acc %"
  echo "BENCH $name dh-pretrain wall time: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
  echo "BENCH $name training images/s: $ips"
}

run_feats() {
  local name=$1 model=$2 data=$3; shift 3
  dh-feats -m "$model" "$@" "$data" 2>"$W/$name.flog" >/dev/null || { echo "BENCH $name dh-feats: FAILED: $(tail -1 "$W/$name.flog")"; return 1; }
  echo "BENCH $name dh-feats images/s: $(sed -n 's/.*(\([0-9]*\) images\/s.*/\1/p' "$W/$name.flog")"
}

if [ $gpu = 0 ]; then
  FM=/usr/share/datasets/fashion-mnist
  if [ ! -d $FM ]; then echo "SKIP bench_pretrain: $FM absent"; exit 0; fi
  dh-ingest -q --split train $FM > "$W/train.dhs" && dh-ingest -q --split test $FM > "$W/test.dhs" || exit 1
  echo "# CPU ($(nproc) cores), lenet on Fashion-MNIST, default options"
  run_pretrain lenet-cpu --arch lenet --device cpu --val "$W/test.dhs" -o "$W/lenet.dhm" "$W/train.dhs"
  run_feats lenet-cpu "$W/lenet.dhm" "$W/train.dhs" --device cpu
else
  if [ ! -f "$C10" ]; then echo "SKIP bench_pretrain: $C10 absent (give the CIFAR-10 archive as an argument or DH_CIFAR10)"; exit 0; fi
  dh-ingest -q --split train "$C10" > "$W/train.dhs" && dh-ingest -q --split test "$C10" > "$W/test.dhs" || exit 1
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | sed "s/^/# GPU: /"
  for a in fast cifar; do
    run_pretrain $a-gpu --arch $a --device cuda --val "$W/test.dhs" -o "$W/$a.dhm" "$W/train.dhs"
    run_feats $a-gpu "$W/$a.dhm" "$W/train.dhs" --device cuda --batch 1024
  done
fi
