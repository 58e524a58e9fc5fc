#!/usr/bin/env bash
# tests/cli/stream_python.sh — the Python reader of dh-stream(5), taken from
# the manual page, on every kind of stream the programs write: images (with
# and without labels), features, codes, rankings (top R, and a radius with
# empty lists), the three kinds of model, concatenated streams. Each is
# checked against what the programs say of it (dh-info, dh-npy, dh-show).
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy, msgpack' 2>/dev/null; then
  t_skip stream_python "needs /usr/bin/python3 with numpy and msgpack"; exit 0
fi
export DH_DEVICE=cpu
man=$(dirname "$0")/../../man/dh-stream.5
sed -n '/^\.ft CR$/,/^\.ft$/p' "$man" | sed '1d;$d' > "$TMP/reader.py"
# py.py STREAM: "kind rows=N fields=a,b" then per field a summary line
cat "$TMP/reader.py" - > "$TMP/py.py" <<'PY'
import json
cols, head, rows = {}, None, 0
for h, c in read_stream(open(sys.argv[1], "rb")):
    head = h
    for k, v in c.items():
        cols.setdefault(k, []).extend(list(v))
    rows += len(next(iter(c.values())))
out = {"kind": head["kind"] if head else None, "rows": rows, "fields": [f["name"] for f in head["fields"]] if head else []}
for k, v in cols.items():
    if k == "id" or (head and [f for f in head["fields"] if f["name"] == k][0]["dtype"] == "str"):
        out[k] = v
    else:
        out[k] = [np.asarray(x).tolist() for x in v]
json.dump(out, open(sys.argv[2], "w"))
PY
read_py() { $PY "$TMP/py.py" "$1" "$2" 2> "$TMP/py.err"; }

# a small labelled dataset as IDX files (28x28, 3 classes), and three of its images as PNG files
$PY - "$TMP" <<'PYEOF'
import sys, gzip, numpy as np
t = sys.argv[1]; r = np.random.default_rng(2); n = 60
y = (np.arange(n) % 3).astype('u1')
x = (r.integers(0, 60, (n, 28, 28)) + 60 * y[:, None, None]).astype('u1')
open(t + '/train-images-idx3-ubyte', 'wb').write(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], '>u4').tobytes() + x.tobytes())
open(t + '/train-labels-idx1-ubyte', 'wb').write(bytes([0, 0, 8, 1]) + np.array([n], '>u4').tobytes() + y.tobytes())
PYEOF
(
  cd "$TMP" &&
  dh-ingest -q train-images-idx3-ubyte > im.dhs &&
  dh-head -n 3 im.dhs | dh-show -q -f files -o png && dh-ingest -q png/000000.png png/000002.png > un.dhs &&
  dh-pretrain -q --arch lenet --epochs 1 --batch 20 -o net.dhm im.dhs &&
  dh-feats -q -m net.dhm im.dhs > f.dhs &&
  dh-inithash -q --bits 12 -o hash.dhm f.dhs &&
  dh-finetune -q --epochs 1 --batch 20 -m net.dhm --hash hash.dhm -o dh.dhm im.dhs &&
  dh-encode -q -m dh.dhm im.dhs > db.codes &&
  dh-encode -q -m dh.dhm un.dhs > un.codes &&
  dh-rank -q --db db.codes --top 7 < db.codes > top.dhs &&
  dh-rank -q --db db.codes --radius 0 < un.codes > rad.dhs &&
  cat f.dhs f.dhs > ff.dhs
) > "$TMP/fixture.log" 2>&1 || { t_begin fixture; t_fail "$(tail -n 3 "$TMP/fixture.log")"; t_end; exit 1; }

# every kind: the reader reads it whole, rows as dh-info counts them
for s in im un f db.codes un.codes top rad net hash dh ff; do
  case $s in *.*) f=$s;; net|hash|dh) f=$s.dhm;; *) f=$s.dhs;; esac
  t_begin "reads_$s"
  read_py "$TMP/$f" "$TMP/$s.json" || t_fail "python: $(tail -n 1 "$TMP/py.err")"
  rows=$(dh-info "$TMP/$f" | awk '/^(rows|tensors):/ { print $2 }')
  $PY -c "import json, sys; d = json.load(open('$TMP/$s.json')); sys.exit(d['rows'] != $rows)" || t_fail "rows differ from dh-info ($rows)"
  t_end
done

t_begin images_pixels_labels
dh-npy export --field pixels "$TMP/im.dhs" > "$TMP/px.npy"; dh-npy export --field label "$TMP/im.dhs" > "$TMP/lab.npy"
$PY - "$TMP" <<'PYEOF' || t_fail "pixels or labels differ from dh-npy"
import sys, json, numpy as np
t = sys.argv[1]; d = json.load(open(t + '/im.json'))
assert d['kind'] == 'images' and d['fields'] == ['pixels', 'label', 'id']
assert (np.array(d['pixels'], 'u1') == np.load(t + '/px.npy')).all()
assert (np.array(d['label']) == np.load(t + '/lab.npy')).all()
u = json.load(open(t + '/un.json'))
assert u['fields'] == ['pixels', 'id'] and 'label' not in u and u['id'][1].endswith('png/000002.png'), u['fields']
assert (np.array(u['pixels'], 'u1') == np.load(t + '/px.npy')[[0, 2]]).all()
PYEOF
t_end

t_begin codes_bits
dh-npy export --field code --unpack "$TMP/db.codes" > "$TMP/code.npy"
$PY - "$TMP" <<'PYEOF' || t_fail "bits differ from dh-npy --unpack"
import sys, json, numpy as np
t = sys.argv[1]; d = json.load(open(t + '/db.codes.json'))
assert (np.array(d['code']) == np.load(t + '/code.npy')).all() and len(d['code'][0]) == 12
assert json.load(open(t + '/un.codes.json'))['fields'] == ['code', 'id']
PYEOF
t_end

t_begin rankings_lists
(cd "$TMP" && dh-show -f tsv top.dhs > top.tsv && dh-show -f tsv rad.dhs > rad.tsv) || t_fail "dh-show"
$PY - "$TMP" <<'PYEOF' || t_fail "idx/dist differ from dh-show"
import sys, json
t = sys.argv[1]
for name in ('top', 'rad'):
    d = json.load(open(t + '/%s.json' % name))
    assert d['fields'] == ['query', 'label', 'id', 'idx', 'dist']
    rows = [l.split('\t') for l in open(t + '/%s.tsv' % name).read().splitlines()[1:]]
    got = [(q, int(i), int(x)) for q, idx, dist in zip(d['query'], d['idx'], d['dist']) for i, x in zip(idx, dist)]
    assert got == [(int(r[0]), int(r[3]), int(r[5])) for r in rows], name
    if name == 'top': assert all(len(x) == 7 for x in d['idx'])
PYEOF
t_end

t_begin models_tensors
$PY - "$TMP" <<'PYEOF' || t_fail "tensor shapes and data do not agree"
import sys, json, numpy as np
t = sys.argv[1]
for name in ('net', 'hash', 'dh'):
    d = json.load(open(t + '/%s.json' % name))
    assert d['kind'] == 'model' and d['fields'] == ['name', 'shape', 'data'], d['fields']
    for nm, shape, data in zip(d['name'], d['shape'], d['data']):
        assert int(np.prod(shape)) == len(data), (name, nm, shape, len(data))
PYEOF
t_end

t_begin concatenated_streams
$PY -c "
import json; a = json.load(open('$TMP/f.json')); b = json.load(open('$TMP/ff.json'))
assert b['rows'] == 2 * a['rows'] and b['z'] == a['z'] + a['z']" || t_fail "cat a a"
t_end
t_done
