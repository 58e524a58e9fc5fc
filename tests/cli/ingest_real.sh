#!/usr/bin/env bash
# tests/cli/ingest_real.sh — dh-ingest on the real datasets, when present:
# Fashion-MNIST (Debian package dataset-fashion-mnist) 60,000 / 10,000 images,
# 6,000 / 1,000 per class; the CIFAR-10 JPEG archive in ../shared/data
# 50,000 / 10,000 images, 10 classes of 5,000 / 1,000. Skips visibly when a
# dataset is absent. Uses the optimised build ($DH_REL_BIN) when given: the
# sanitized one takes several times longer on 60,000 JPEGs.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
BIN=$DH_BIN
if [ -n "${DH_REL_BIN:-}" ] && [ -x "$DH_REL_BIN/dh-ingest" ]; then BIN=$(cd "$DH_REL_BIN" && pwd); fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOP=$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null) || TOP=$ROOT
SHARED=$TOP/../shared/data
FM=/usr/share/datasets/fashion-mnist
CIFAR=$SHARED/cifar10-jpg.tar.gz

cat > "$TMP/hist.py" <<'PYEOF'
# rows, classes, per-class counts (from the labels), meta class_counts, trailer
import msgpack, sys
import numpy as np
u = msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False, max_buffer_size=1 << 30)
h = next(u); li = [f['name'] for f in h['fields']].index('label'); labels = []; t = False
for o in u:
    if o.get('end'): t = True; continue
    labels.append(np.frombuffer(o['cols'][li], '<i4'))
lab = np.concatenate(labels); m = h['meta']
print('n=%d nclasses=%d hist=%s meta=%s shape=%s trailer=%s' % (len(lab), len(m['classes']),
      ','.join(map(str, np.bincount(lab, minlength=len(m['classes'])))), ','.join(map(str, m['class_counts'])),
      'x'.join(map(str, h['fields'][0]['shape'])), 'yes' if t else 'no'))
PYEOF

check() {  # NAME SPLIT SOURCE N PER SHAPE
  t_begin "$1"
  "$BIN/dh-ingest" -q --split "$2" "$3" > "$TMP/o.dhs" 2>"$TMP/e" || t_fail "exit: $(head -c 300 "$TMP/e")"
  local per; per=$(printf "$5,%.0s" 1 2 3 4 5 6 7 8 9 10); per=${per%,}
  local want="n=$4 nclasses=10 hist=$per meta=$per shape=$6 trailer=yes"
  local got; got=$($PY "$TMP/hist.py" "$TMP/o.dhs" 2>&1)
  [ "$got" = "$want" ] || t_fail "got '$got', want '$want'"
  t_end
  rm -f "$TMP/o.dhs"
}

if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  check fashion_mnist_train train "$FM" 60000 6000 1x28x28
  check fashion_mnist_test test "$FM" 10000 1000 1x28x28
else
  t_skip fashion_mnist "no $FM (apt-get install dataset-fashion-mnist)"
fi
if [ -f "$CIFAR" ]; then
  check cifar10_jpg_train train "$CIFAR" 50000 5000 3x32x32
  check cifar10_jpg_test test "$CIFAR" 10000 1000 3x32x32
else
  t_skip cifar10_jpg "no ../shared/data/cifar10-jpg.tar.gz beside the repository"
fi
t_done
