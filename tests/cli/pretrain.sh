#!/usr/bin/env bash
# tests/cli/pretrain.sh — dh-pretrain and dh-feats end to end on small
# synthetic images streams (written with Python + msgpack), and their
# errors on bad input.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3

cat > "$TMP/dhs.py" <<'EOF'
# Minimal deephash stream writer/reader (see man/dh-stream.5).
import msgpack, zlib, struct, sys
import numpy as np

def write(f, kind, fields, meta, cols, chunk=100):
    """fields: [(name, dtype, shape)], cols: list of per-field row lists/arrays."""
    hdr = msgpack.packb({"format": "deephash-stream", "version": 1, "kind": kind,
                         "fields": [{"name": n, "dtype": t, "shape": list(s)} for n, t, s in fields],
                         "meta": meta}, use_bin_type=True)
    f.write(hdr)
    hcrc = zlib.crc32(hdr)
    n = len(cols[0]); crc = 0; nch = 0
    for s in range(0, n, chunk):
        e = min(n, s + chunk); bins = []
        for (name, t, shape), col in zip(fields, cols):
            if t == "str":
                strs = [x.encode() for x in col[s:e]]
                b = np.array([len(x) for x in strs], "<u4").tobytes() + b"".join(strs)
            else:
                b = np.ascontiguousarray(col[s:e]).tobytes()
            bins.append(b)
        c = 0
        for b in bins: c = zlib.crc32(b, c)
        for b in bins: crc = zlib.crc32(b, crc)
        f.write(msgpack.packb({"rows": e - s, "cols": bins, "crc": c}, use_bin_type=True))
        nch += 1
    f.write(msgpack.packb({"end": True, "rows": n, "chunks": nch, "crc": crc, "header_crc": hcrc}, use_bin_type=True))

def read(f):
    u = msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)
    hdr = next(u); rows = {fd["name"]: [] for fd in hdr["fields"]}; n = 0
    for obj in u:
        if obj.get("end"): break
        k = obj["rows"]; n += k
        for fd, b in zip(hdr["fields"], obj["cols"]):
            if fd["dtype"] == "str":
                lens = np.frombuffer(b[:4 * k], "<u4"); o = 4 * k
                for L in lens: rows[fd["name"]].append(b[o:o + L].decode()); o += int(L)
            else:
                dt = {"f32": "<f4", "i32": "<i4", "u8": "u1", "i64": "<i8"}[fd["dtype"]]
                if fd["shape"] == [-1]:   # variable: k u32 lengths, then the data
                    lens = np.frombuffer(b[:4 * k], "<u4"); a = np.frombuffer(b[4 * k:], dt); o = 0
                    for L in lens: rows[fd["name"]].append(a[o:o + L]); o += int(L)
                else:
                    rows[fd["name"]].append(np.frombuffer(b, dt).reshape([k] + fd["shape"]))
    for fd in hdr["fields"]:
        if fd["dtype"] != "str" and fd["shape"] != [-1] and rows[fd["name"]]: rows[fd["name"]] = np.concatenate(rows[fd["name"]])
    return hdr, n, rows

def images(path, n, C, H, W, K, seed, prefix="c"):
    """Class k: a bright horizontal band at a class-specific height, plus noise."""
    rng = np.random.default_rng(seed)
    lab = (np.arange(n) % K).astype("<i4")
    pix = rng.integers(0, 60, size=(n, C, H, W)).astype(np.int32)
    for i in range(n):
        r0 = (lab[i] * H) // K
        pix[i, :, r0:r0 + max(1, H // K), :] += 150
    pix = np.clip(pix, 0, 255).astype("u1")
    with open(path, "wb") as f:
        write(f, "images", [("pixels", "u8", (C, H, W)), ("label", "i32", ()), ("id", "str", ())],
              {"classes": [prefix + str(k) for k in range(K)], "source": "synthetic"},
              [pix, lab, ["img%04d" % i for i in range(n)]])

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "images":
        images(sys.argv[2], *map(int, sys.argv[3:9]), *sys.argv[9:10])
    elif cmd == "features":   # a features stream (the wrong kind for dh-pretrain)
        with open(sys.argv[2], "wb") as f:
            write(f, "features", [("z", "f32", (4,)), ("label", "i32", ()), ("id", "str", ())], {},
                  [np.zeros((3, 4), "<f4"), np.zeros(3, "<i4"), ["a", "b", "c"]])
    elif cmd == "hashmodel":  # a model without a network
        with open(sys.argv[2], "wb") as f:
            write(f, "model", [("name", "str", ()), ("shape", "i64", (-1,)), ("data", "f32", (-1,))],
                  {"model": "hash"}, [[], [], []])
    elif cmd == "checkfeats":  # FEATS IMAGES D: rows, labels, ids agree; z finite
        hdr, n, r = read(open(sys.argv[2], "rb"))
        hi, ni, ri = read(open(sys.argv[3], "rb"))
        D = int(sys.argv[4])
        assert hdr["kind"] == "features", hdr["kind"]
        assert hdr["fields"][0] == {"name": "z", "dtype": "f32", "shape": [D]}, hdr["fields"]
        assert n == ni, (n, ni)
        assert (r["label"] == ri["label"]).all()
        assert r["id"] == ri["id"]
        assert np.isfinite(r["z"]).all() and r["z"].std() > 0
        assert hdr["meta"]["classes"] == hi["meta"]["classes"]
        assert hdr["meta"]["program"] == "dh-feats"
    elif cmd == "samefeats":  # A B: the same z within float tolerance
        _, _, a = read(open(sys.argv[2], "rb")); _, _, b = read(open(sys.argv[3], "rb"))
        d = np.abs(a["z"] - b["z"]).max()
        assert d <= 1e-4 * (1 + np.abs(a["z"]).max()), d
    elif cmd == "sameparams":  # A B: the same tensors, bit for bit
        _, _, a = read(open(sys.argv[2], "rb")); _, _, b = read(open(sys.argv[3], "rb"))
        assert a["name"] == b["name"], (a["name"], b["name"])
        bad = [n for n, x, y in zip(a["name"], a["data"], b["data"]) if x.tobytes() != y.tobytes()]
        assert not bad, "differ: %s" % bad
    elif cmd == "meta":  # MODEL KEY VALUE: the model's metadata says so
        hdr, _, _ = read(open(sys.argv[2], "rb"))
        assert str(hdr["meta"].get(sys.argv[3])) == sys.argv[4], (sys.argv[3], hdr["meta"].get(sys.argv[3]))
    elif cmd == "checkmodel":  # MODEL: a net model with a head
        hdr, n, r = read(open(sys.argv[2], "rb"))
        m = hdr["meta"]
        assert hdr["kind"] == "model" and m["model"] == "net", m
        assert "feature" in m["net"] and len(m["mean"]) == len(m["input"]) - 2
        assert "head.weight" in r["name"], r["name"]
EOF

# synthetic data: 4 classes of 1x12x12 images, and 1x28x28 for the lenet default
$PY "$TMP/dhs.py" images "$TMP/train.dhs" 320 1 12 12 4 1
$PY "$TMP/dhs.py" images "$TMP/test.dhs" 80 1 12 12 4 2
$PY "$TMP/dhs.py" images "$TMP/mnist.dhs" 96 1 28 28 4 3
$PY "$TMP/dhs.py" images "$TMP/rgb.dhs" 16 3 12 12 4 4
$PY "$TMP/dhs.py" images "$TMP/other.dhs" 16 1 12 12 4 5 other
$PY "$TMP/dhs.py" features "$TMP/feats.dhs"
$PY "$TMP/dhs.py" hashmodel "$TMP/hash.dhm"
cat > "$TMP/small.net" <<'EOF'
# a small test net
input 1 12 12
conv 8 k3 p1
bn
relu
maxpool k2        # 8x6x6
res
  conv 8 k3 p1
  bn
  relu
end
maxpool k2        # 8x3x3
fc 16 name=z
relu
feature z
EOF

t_begin "help and version"
out=$(dh-pretrain --help) || t_fail "dh-pretrain --help failed"
case $out in *Usage*--arch*) ;; *) t_fail "dh-pretrain --help: no usage";; esac
out=$(dh-feats --help) || t_fail "dh-feats --help failed"
case $out in *Usage*--model*) ;; *) t_fail "dh-feats --help: no usage";; esac
dh-pretrain --version | grep -q deephash || t_fail "dh-pretrain --version"
dh-feats --version | grep -q deephash || t_fail "dh-feats --version"
t_end

t_begin "pretrain a small net and reach high accuracy"
dh-pretrain --net "$TMP/small.net" --epochs 4 --batch 32 --lr 0.05 --val "$TMP/test.dhs" \
    --device cpu --seed 5 -o "$TMP/m1.dhm" < "$TMP/train.dhs" 2>"$TMP/log1" || t_fail "dh-pretrain failed: $(tail -2 "$TMP/log1")"
grep -q 'epoch 4/4' "$TMP/log1" || t_fail "no epoch line: $(cat "$TMP/log1")"
acc=$(grep 'epoch 4/4' "$TMP/log1" | sed 's/.*val loss [0-9.]* acc \([0-9.]*\)%.*/\1/')
awk -v a="$acc" 'BEGIN { exit !(a >= 90) }' || t_fail "val accuracy $acc% < 90%"
$PY "$TMP/dhs.py" checkmodel "$TMP/m1.dhm" || t_fail "model check"
t_end

t_begin "deterministic on the CPU with --seed"
dh-pretrain --net "$TMP/small.net" --epochs 1 --batch 32 --device cpu --seed 9 -q < "$TMP/train.dhs" > "$TMP/d1.dhm" &&
dh-pretrain --net "$TMP/small.net" --epochs 1 --batch 32 --device cpu --seed 9 -q < "$TMP/train.dhs" > "$TMP/d2.dhm" || t_fail "run failed"
cmp -s "$TMP/d1.dhm" "$TMP/d2.dhm" || t_fail "two runs with the same seed differ"
dh-pretrain --net "$TMP/small.net" --epochs 1 --batch 32 --device cpu --seed 10 -q < "$TMP/train.dhs" > "$TMP/d3.dhm"
cmp -s "$TMP/d1.dhm" "$TMP/d3.dhm" && t_fail "different seeds give the same model"
t_end

t_begin "dh-feats: features for every image, in a pipe, bounded batches"
cat "$TMP/test.dhs" | dh-feats -m "$TMP/m1.dhm" --batch 7 --device cpu -q > "$TMP/f1.dhs" || t_fail "dh-feats failed"
$PY "$TMP/dhs.py" checkfeats "$TMP/f1.dhs" "$TMP/test.dhs" 16 || t_fail "features check"
dh-feats -m "$TMP/m1.dhm" --batch 64 -q -o "$TMP/f2.dhs" "$TMP/test.dhs" || t_fail "dh-feats -o failed"
$PY "$TMP/dhs.py" samefeats "$TMP/f1.dhs" "$TMP/f2.dhs" || t_fail "features depend on the batch size"
t_end

t_begin "lenet is the default for 28x28 grey images; augmentation and schedules run"
dh-pretrain --epochs 1 --batch 32 --augment --schedule onecycle --nesterov --label-smoothing 0.1 \
    --device cpu -o "$TMP/lenet.dhm" "$TMP/mnist.dhs" 2>"$TMP/log2" || t_fail "lenet failed: $(tail -1 "$TMP/log2")"
grep -q 'net lenet' "$TMP/log2" || t_fail "lenet not chosen: $(head -1 "$TMP/log2")"
dh-feats -m "$TMP/lenet.dhm" -q "$TMP/mnist.dhs" > "$TMP/f3.dhs" || t_fail "dh-feats lenet"
$PY "$TMP/dhs.py" checkfeats "$TMP/f3.dhs" "$TMP/mnist.dhs" 500 || t_fail "lenet features check"
t_end

# ---- the air recipe (issue 15): whitening, lookahead, alternating flips, test-time augmentation ----
$PY "$TMP/dhs.py" images "$TMP/air.dhs" 96 3 32 32 4 7
$PY "$TMP/dhs.py" images "$TMP/airv.dhs" 32 3 32 32 4 8
t_begin "pretrain: --arch air runs its recipe and reports test-time augmentation"
dh-pretrain --print-net --arch air | grep -q '^conv 24 k2 whiten' || t_fail "air: no whiten layer"
dh-pretrain --arch air -e 2 -B 32 --lr 0.2 --val "$TMP/airv.dhs" --device cpu -o "$TMP/air1.dhm" "$TMP/air.dhs" \
    2>"$TMP/loga" || t_fail "air failed: $(tail -1 "$TMP/loga")"
grep -q 'translate 2 (reflect) + alternating flips, lookahead' "$TMP/loga" || t_fail "recipe line: $(sed -n 2p "$TMP/loga")"
grep -q '(onecycle:0.23:0.07 from 0.2)' "$TMP/loga" || t_fail "schedule: $(sed -n 2p "$TMP/loga")"
grep -q 'epoch 1/2 .*val loss [0-9.]* acc [0-9.]*%  lr' "$TMP/loga" || t_fail "epoch 1 line: $(cat "$TMP/loga")"
grep -q 'epoch 2/2 .*val loss [0-9.]* acc [0-9.]*% (tta [0-9.]*%)' "$TMP/loga" || t_fail "epoch line: $(cat "$TMP/loga")"
grep -q 'airv.dhs: test accuracy [0-9.]*%, [0-9.]*% with test-time flips and translations' "$TMP/loga" ||
  t_fail "no final line"
dh-info "$TMP/air1.dhm" 2>/dev/null | grep -q 'tta.*full' || t_fail "meta tta: $(dh-info "$TMP/air1.dhm" 2>&1 | head -20)"
dh-feats -m "$TMP/air1.dhm" -q "$TMP/airv.dhs" > "$TMP/fa.dhs" || t_fail "dh-feats air"
$PY "$TMP/dhs.py" checkfeats "$TMP/fa.dhs" "$TMP/airv.dhs" 256 || t_fail "air features check"
t_end
t_begin "pretrain: a whiten net with the recipe's options is deterministic"
cat > "$TMP/wh.net" <<'EOF'
input 3 12 12
conv 12 k2 whiten name=wh   # 12x11x11
gelu
conv 8 k3 p1 nobias
bn
gelu
maxpool k2                  # 8x5x5
flatten
feature
EOF
for i in 1 2; do
  dh-pretrain -q --net "$TMP/wh.net" -e 2 -B 4 --lr 0.05 --translate 1 --flip alternate --lookahead --device cpu \
      --seed 4 "$TMP/rgb.dhs" > "$TMP/wh$i.dhm" || t_fail "run $i failed"
done
cmp -s "$TMP/wh1.dhm" "$TMP/wh2.dhm" || t_fail "two runs with the same seed differ"
t_end
t_begin "pretrain: --recipe air on a --net file trains as --arch air"
dh-pretrain --print-net --arch air > "$TMP/air.net"
dh-pretrain -q --arch air -e 1 -B 32 --lr 0.2 --device cpu -o "$TMP/air3.dhm" "$TMP/air.dhs" || t_fail "--arch air"
dh-pretrain -q --net "$TMP/air.net" --recipe air -e 1 -B 32 --lr 0.2 --device cpu -o "$TMP/air4.dhm" "$TMP/air.dhs" ||
  t_fail "--recipe air"
dh-pretrain -q --net "$TMP/air.net" -e 1 -B 32 --lr 0.2 --device cpu -o "$TMP/air5.dhm" "$TMP/air.dhs" || t_fail "plain"
$PY "$TMP/dhs.py" sameparams "$TMP/air3.dhm" "$TMP/air4.dhm" || t_fail "--net air.net --recipe air differs from --arch air"
$PY "$TMP/dhs.py" sameparams "$TMP/air3.dhm" "$TMP/air5.dhm" 2>/dev/null && t_fail "the plain recipe trained the same"
$PY "$TMP/dhs.py" meta "$TMP/air4.dhm" recipe air || t_fail "meta recipe"
$PY "$TMP/dhs.py" meta "$TMP/air5.dhm" recipe "" || t_fail "meta recipe of a plain --net"
$PY "$TMP/dhs.py" meta "$TMP/air4.dhm" precision fp32 || t_fail "meta precision"
t_end
expect_fail "pretrain: unknown --recipe" dh-pretrain --recipe air95 -N "$TMP/air.net" -o "$TMP/x.dhm" "$TMP/air.dhs"
printf 'input 3 12 12\nrelu\nconv 8 k2 whiten\nfeature\n' > "$TMP/wh-bad.net"
expect_fail "pretrain: bad --flip" dh-pretrain --flip sideways --arch air -o "$TMP/x.dhm" "$TMP/air.dhs"
t_begin "pretrain: --tta=flip, --crop-pad, --warmup-start, --precision"
dh-pretrain --arch air -e 1 -B 32 --lr 0.2 --val "$TMP/airv.dhs" --tta=flip --crop-pad mean --warmup-start 0.5 \
    --precision fp32 --device cpu -o "$TMP/air2.dhm" "$TMP/air.dhs" 2>"$TMP/logb" || t_fail "failed: $(tail -1 "$TMP/logb")"
grep -q 'translate 2 + alternating flips' "$TMP/logb" || t_fail "--crop-pad mean: $(sed -n 2p "$TMP/logb")"
grep -q '(onecycle:0.23:0.07 from 0.5)' "$TMP/logb" || t_fail "--warmup-start: $(sed -n 2p "$TMP/logb")"
grep -q 'epoch 1/1 .*acc [0-9.]*% (flips [0-9.]*%)' "$TMP/logb" || t_fail "--tta=flip: $(cat "$TMP/logb")"
grep -q '[0-9.]*% with test-time flips (' "$TMP/logb" || t_fail "--tta=flip final line: $(tail -1 "$TMP/logb")"
t_end
expect_fail "pretrain: bad --tta" dh-pretrain --tta=both --arch air -o "$TMP/x.dhm" "$TMP/air.dhs"
expect_fail "pretrain: bad --crop-pad" dh-pretrain --crop-pad wrap --arch air -o "$TMP/x.dhm" "$TMP/air.dhs"
expect_fail "pretrain: bad --warmup-start" dh-pretrain --warmup-start 1.5 --arch air -o "$TMP/x.dhm" "$TMP/air.dhs"
expect_fail "pretrain: bad --precision" dh-pretrain --precision fp16 --arch air -o "$TMP/x.dhm" "$TMP/air.dhs"
expect_fail "pretrain: whiten not first" dh-pretrain --net "$TMP/wh-bad.net" -o "$TMP/x.dhm" "$TMP/rgb.dhs"

# ---- the option grammar: -B --batch, -N --net; the old -b, -m, -n refused --------
t_begin "pretrain: -B and -N"
dh-pretrain -q -N "$TMP/small.net" -e 1 -B 32 --momentum 0.5 --device cpu -o "$TMP/n1.dhm" "$TMP/train.dhs" 2>"$TMP/log3" ||
  t_fail "$(tail -1 "$TMP/log3")"
t_end
refused() {  # NAME MESSAGE ARGS... : a usage error (exit 2) whose one line is MESSAGE
  local name=$1 msg=$2; shift 2
  expect_fail "$name" dh-pretrain "$@"
  t_begin "$name: exit 2 and the message"
  dh-pretrain "$@" >/dev/null 2>&1; [ $? = 2 ] || t_fail "exit status not 2"
  [ "$(cat "$TMP/ef.err")" = "$msg" ] || t_fail "got: $(cat "$TMP/ef.err")"
  t_end
}
refused "pretrain: -b refused" "dh-pretrain: -b is --bits in deephash; the batch size is -B (--batch)" \
  -b 32 --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
refused "pretrain: -m refused" "dh-pretrain: -m is --model in deephash; the momentum is --momentum" \
  -m 0.9 --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
refused "pretrain: -n refused" "dh-pretrain: -n is --limit/--rows in deephash; the network specification is -N (--net)" \
  -n "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"

# ---- too few steps per epoch: trained, with one warning line (also with -q) ----
$PY "$TMP/dhs.py" images "$TMP/sixty.dhs" 60 1 28 28 4 6
t_begin "pretrain: warns when an epoch has fewer than 10 steps"
dh-pretrain -q --epochs 1 --device cpu -o "$TMP/w.dhm" "$TMP/sixty.dhs" 2>"$TMP/warn" || t_fail "exit status"
[ "$(grep -c . "$TMP/warn")" = 1 ] || t_fail "expected one stderr line: $(cat "$TMP/warn")"
grep -q '^dh-pretrain: warning: .*sixty.dhs: 60 images in batches of 60: 1 step per epoch.*-B 6' "$TMP/warn" ||
  t_fail "$(cat "$TMP/warn")"
[ -s "$TMP/w.dhm" ] || t_fail "no model"
dh-pretrain -q --net "$TMP/small.net" --epochs 1 --batch 32 --device cpu -o "$TMP/w2.dhm" "$TMP/train.dhs" 2>"$TMP/warn2"
[ -s "$TMP/warn2" ] && t_fail "10 steps per epoch warned: $(cat "$TMP/warn2")"
t_end

# ---- images that fit no network: the message says how to re-ingest them ----
$PY "$TMP/dhs.py" images "$TMP/rgb28.dhs" 16 3 28 28 4 7
expect_fail "pretrain: no built-in network for the images" dh-pretrain -o "$TMP/x.dhm" "$TMP/rgb28.dhs"
t_begin "pretrain: no built-in network: what to do"
grep -q 'no built-in network for 3x28x28 images.*dh-ingest --gray --resize 28x28.*--resize 32x32' "$TMP/ef.err" ||
  t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail "pretrain: grey 12x12 images into lenet" dh-pretrain --arch lenet -o "$TMP/x.dhm" "$TMP/train.dhs"
t_begin "pretrain: lenet's input: what to do"
grep -q "images are 1x12x12, the network 'lenet' takes 1x28x28: re-ingest them with dh-ingest --resize 28x28" "$TMP/ef.err" ||
  t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail "pretrain: rgb 28x28 images into lenet" dh-pretrain --arch lenet -o "$TMP/x.dhm" "$TMP/rgb28.dhs"
t_begin "pretrain: rgb into lenet: what to do"
grep -q "re-ingest them with dh-ingest --gray\$" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end

# ---- bad input -----------------------------------------------------------
expect_fail "pretrain: wrong stream kind" dh-pretrain --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/feats.dhs"
expect_fail "pretrain: image shape does not fit the net" dh-pretrain --arch lenet -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail "pretrain: rgb images into a grey net" dh-pretrain --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/rgb.dhs"
printf 'input 1 12 12\nconv 8 k3\nbogus 3\nfeature\n' > "$TMP/bad.net"
expect_fail "pretrain: invalid spec" dh-pretrain --net "$TMP/bad.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
grep -q "bad.net:3: unknown statement 'bogus'" "$TMP/ef.err" || echo "FAIL pretrain: spec error names file:line: $(cat "$TMP/ef.err")"
expect_fail "pretrain: missing spec file" dh-pretrain --net "$TMP/none.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail "pretrain: unknown arch" dh-pretrain --arch vgg -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail "pretrain: bad option value" dh-pretrain --epochs 0 -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail "pretrain: bad schedule" dh-pretrain --schedule zigzag --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
head -c 3000 "$TMP/train.dhs" > "$TMP/trunc.dhs"
expect_fail "pretrain: truncated images stream" dh-pretrain --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/trunc.dhs"
expect_fail "pretrain: empty input" dh-pretrain --net "$TMP/small.net" -o "$TMP/x.dhm" /dev/null
expect_fail "pretrain: val stream of another shape" dh-pretrain --net "$TMP/small.net" --val "$TMP/mnist.dhs" -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail "pretrain: val stream with other classes" dh-pretrain --net "$TMP/small.net" --val "$TMP/other.dhs" -o "$TMP/x.dhm" "$TMP/train.dhs"
if nvidia-smi -L >/dev/null 2>&1; then t_skip "pretrain: --device cuda without a GPU" "this machine has a GPU"
else expect_fail "pretrain: --device cuda without a GPU" dh-pretrain --device cuda --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"; fi
expect_fail "pretrain: -o in a missing directory fails before training" dh-pretrain --net "$TMP/small.net" -o "$TMP/no/such/dir/m.dhm" "$TMP/train.dhs"
grep -q 'no/such/dir' "$TMP/ef.err" || echo "FAIL pretrain: -o error names the path: $(cat "$TMP/ef.err")"
expect_fail "pretrain: bad --device" dh-pretrain --device tpu --net "$TMP/small.net" -o "$TMP/x.dhm" "$TMP/train.dhs"
t_begin "pretrain: a failed run leaves no output file"
[ -e "$TMP/x.dhm" ] && t_fail "x.dhm exists"
ls "$TMP" | grep -q 'tmp\.' && t_fail "temporary file left behind"
t_end

expect_fail "feats: no model" dh-feats "$TMP/test.dhs"
expect_fail "feats: missing model file" dh-feats -m "$TMP/none.dhm" "$TMP/test.dhs"
head -c 2000 "$TMP/m1.dhm" > "$TMP/trunc.dhm"
expect_fail "feats: truncated model" dh-feats -m "$TMP/trunc.dhm" "$TMP/test.dhs"
$PY - "$TMP/m1.dhm" "$TMP/flip.dhm" <<'EOF'
import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 0x55
open(sys.argv[2], "wb").write(b)
EOF
expect_fail "feats: damaged model" dh-feats -m "$TMP/flip.dhm" "$TMP/test.dhs"
expect_fail "feats: model of another kind (features)" dh-feats -m "$TMP/feats.dhs" "$TMP/test.dhs"
expect_fail "feats: model without a network" dh-feats -m "$TMP/hash.dhm" "$TMP/test.dhs"
expect_fail "feats: wrong stream kind" dh-feats -m "$TMP/m1.dhm" "$TMP/feats.dhs"
expect_fail "feats: images of the wrong shape" dh-feats -m "$TMP/m1.dhm" "$TMP/mnist.dhs"
expect_fail "feats: truncated images" dh-feats -m "$TMP/m1.dhm" -o "$TMP/y.dhs" "$TMP/trunc.dhs"
t_begin "feats: a failed run leaves no output file"
[ -e "$TMP/y.dhs" ] && t_fail "y.dhs exists"
t_end
if nvidia-smi -L >/dev/null 2>&1; then t_skip "feats: --device cuda without a GPU" "this machine has a GPU"
else expect_fail "feats: --device cuda without a GPU" dh-feats --device cuda -m "$TMP/m1.dhm" "$TMP/test.dhs"; fi
t_done
