#!/usr/bin/env bash
# dh-ingest speed on the real datasets (issue 3 targets on a 2-core CPU box):
# all 60,000 CIFAR-10 JPEGs of ../shared/data/cifar10-jpg.tar.gz in <= 3 s
# (the train and the test split, each a pass over the archive), and the
# 70,000 Fashion-MNIST images in <= 1 s. Output goes to /dev/null; best of 3.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOP=$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null) || TOP=$ROOT
SHARED=$TOP/../shared/data
CIFAR=$SHARED/cifar10-jpg.tar.gz
FM=/usr/share/datasets/fashion-mnist
best() {  # best wall time of 3 runs of: dh-ingest ARGS... (train and test)
  local b=999 t0 t1 s
  for i in 1 2 3; do
    t0=$(date +%s.%N)
    dh-ingest -q --split train "$@" > /dev/null || return 1
    dh-ingest -q --split test "$@" > /dev/null || return 1
    t1=$(date +%s.%N)
    s=$(echo "$t1 - $t0" | bc -l)
    b=$(echo "if ($s < $b) $s else $b" | bc -l)
  done
  printf '%.2f' "$b"
}
if [ -f "$CIFAR" ]; then
  cat "$CIFAR" > /dev/null
  s=$(best "$CIFAR") && printf 'dh-ingest: CIFAR-10 JPEG archive, 60,000 images (train + test runs): %s s, %.0f images/s (target <= 3 s)\n' "$s" "$(echo "60000 / $s" | bc -l)" \
    || echo "dh-ingest: CIFAR-10 JPEG archive: FAILED"
else
  echo "dh-ingest: CIFAR-10 JPEG archive: skipped (no ../shared/data/cifar10-jpg.tar.gz)"
fi
if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  cat "$FM"/* > /dev/null
  s=$(best "$FM") && printf 'dh-ingest: Fashion-MNIST IDX, 70,000 images (train + test runs): %s s, %.0f images/s (target <= 1 s)\n' "$s" "$(echo "70000 / $s" | bc -l)" \
    || echo "dh-ingest: Fashion-MNIST: FAILED"
else
  echo "dh-ingest: Fashion-MNIST: skipped (no $FM)"
fi
