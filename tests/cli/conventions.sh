#!/usr/bin/env bash
# Program conventions of deephash(7), through the programs: a model tensor
# whose shape does not match its specification is bad data (exit 1, one
# line naming the tensor and both shapes), never a usage error; -o files
# get the permissions shell redirection gives; an error names a path once;
# dh-encode's report is what its --help promises.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
export DH_DEVICE=cpu

# expect_exit NAME STATUS CMD... : expect_fail, and exit status STATUS
expect_exit() {
  local name=$1 want=$2; shift 2
  expect_fail "$name" "$@"
  local rc
  "$@" > /dev/null 2>&1; rc=$?
  [ $rc = "$want" ] || { echo "FAIL ${name}_status: exit $rc, not $want: $(head -c 200 "$TMP/ef.err")"; T_NFAIL=$((T_NFAIL + 1)); }
}

# ---- inputs: tiny images and features (numpy -> dh-npy), a net, a hash and a deep hash model
if ! $PY -c 'import numpy, msgpack' 2>/dev/null; then
  t_skip conventions_models "needs /usr/bin/python3 with numpy and msgpack"
  have_py=0
else
  have_py=1
  $PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; r = np.random.default_rng(5); N = 64
y = (np.arange(N) % 4).astype('<i4'); np.save(t + '/y.npy', y)
np.save(t + '/px.npy', r.integers(0, 255, (N, 1, 28, 28)).astype('u1'))
np.save(t + '/z.npy', (r.normal(0, 1, (4, 20))[y] + r.normal(0, 1, (N, 20))).astype('<f4'))
PYEOF
  dh-npy import --kind images --field pixels --labels "$TMP/y.npy" -o "$TMP/im.dhs" "$TMP/px.npy"
  dh-npy import --field z --labels "$TMP/y.npy" -o "$TMP/f.dhs" "$TMP/z.npy"
  dh-pretrain -q --epochs 1 --batch 32 -o "$TMP/net.dhm" "$TMP/im.dhs" 2> "$TMP/err" ||
    echo "# dh-pretrain: $(cat "$TMP/err")" >&2
  dh-feats -q -m "$TMP/net.dhm" -o "$TMP/if.dhs" "$TMP/im.dhs" 2> /dev/null
  dh-inithash -q --bits 8 --epochs 1 -o "$TMP/ih.dhm" "$TMP/if.dhs" 2> /dev/null
  dh-inithash -q --bits 8 --epochs 1 -o "$TMP/h.dhm" "$TMP/f.dhs"
  dh-finetune -q --arch lenet --bits 8 --epochs 1 --batch 32 -o "$TMP/dh.dhm" "$TMP/im.dhs" 2> /dev/null
fi

# reshape IN OUT TENSOR DIMS : IN with TENSOR's shape set to DIMS (same element
# count), a well-formed stream (checksums and trailer recomputed)
reshape() {
  $PY - "$@" <<'PYEOF'
import sys, struct, zlib, msgpack
src, dst, name, dims = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split(',')]
u = msgpack.Unpacker(open(src, 'rb'), raw=False)
head = msgpack.packb(next(u), use_bin_type=True); out = open(dst, 'wb'); out.write(head)
rows = chunks = crc = 0
for o in u:
    if 'end' in o:
        out.write(msgpack.packb({'end': True, 'rows': rows, 'chunks': chunks, 'crc': crc, 'header_crc': zlib.crc32(head)}))
        break
    n, cols = o['rows'], o['cols']
    nl = struct.unpack('<%dI' % n, cols[0][:4 * n]); sl = struct.unpack('<%dI' % n, cols[1][:4 * n])
    names, shapes, a, b = [], [], 4 * n, 4 * n
    for i in range(n):
        names.append(cols[0][a:a + nl[i]].decode()); a += nl[i]
        shapes.append(list(struct.unpack('<%dq' % sl[i], cols[1][b:b + 8 * sl[i]]))); b += 8 * sl[i]
    assert name in names, name
    shapes[names.index(name)] = dims
    cols = [cols[0], struct.pack('<%dI' % n, *map(len, shapes)) + b''.join(struct.pack('<%dq' % len(s), *s) for s in shapes), cols[2]]
    for c in cols: crc = zlib.crc32(c, crc)
    out.write(msgpack.packb({'rows': n, 'cols': cols, 'crc': zlib.crc32(b''.join(cols))}, use_bin_type=True))
    rows += n; chunks += 1
PYEOF
}
# names TENSOR GOT WANT : the one stderr line names the tensor and both shapes
names() {
  t_begin "$1_message"
  grep -q "'$2'" "$TMP/ef.err" && grep -q "$3" "$TMP/ef.err" && grep -q "$4" "$TMP/ef.err" ||
    t_fail "$(head -c 200 "$TMP/ef.err")"
  t_end
}

if [ $have_py = 1 ] && [ -s "$TMP/net.dhm" ] && [ -s "$TMP/ih.dhm" ] && [ -s "$TMP/dh.dhm" ]; then
  reshape "$TMP/net.dhm" "$TMP/bad-net.dhm" z.weight 800,500
  dh-info --verify "$TMP/bad-net.dhm" > /dev/null || t_fail "the reshaped model is not a well-formed stream"
  expect_exit model_shape_feats 1 dh-feats -q -m "$TMP/bad-net.dhm" "$TMP/im.dhs"
  names model_shape_feats z.weight 800x500 500x800
  expect_exit model_shape_finetune_net 1 dh-finetune -q --epochs 1 -m "$TMP/bad-net.dhm" --hash "$TMP/ih.dhm" "$TMP/im.dhs"
  names model_shape_finetune_net z.weight 800x500 500x800
  reshape "$TMP/net.dhm" "$TMP/bad-head.dhm" head.weight 500,4
  expect_exit model_shape_head 1 dh-feats -q -m "$TMP/bad-head.dhm" "$TMP/im.dhs"
  names model_shape_head head.weight 500x4 x500
  reshape "$TMP/dh.dhm" "$TMP/bad-conv.dhm" conv1.weight 1,20,5,5
  expect_exit model_shape_encode_deep_net 1 dh-encode -q -m "$TMP/bad-conv.dhm" "$TMP/im.dhs"
  names model_shape_encode_deep_net conv1.weight 1x20x5x5 20x1x5x5
  reshape "$TMP/dh.dhm" "$TMP/bad-dhw.dhm" hash.W 500,8
  expect_exit model_shape_encode_deep_hash 1 dh-encode -q -m "$TMP/bad-dhw.dhm" "$TMP/im.dhs"
  names model_shape_encode_deep_hash hash.W 500x8 8x500
  reshape "$TMP/h.dhm" "$TMP/bad-w.dhm" W 20,8
  expect_exit model_shape_encode_hash 1 dh-encode -q -m "$TMP/bad-w.dhm" "$TMP/f.dhs"
  names model_shape_encode_hash W 20x8 8x20
  expect_exit model_shape_finetune_hash 1 dh-finetune -q --features --epochs 1 --hash "$TMP/bad-w.dhm" "$TMP/f.dhs"
  names model_shape_finetune_hash W 20x8 8x20
  reshape "$TMP/h.dhm" "$TMP/bad-b.dhm" b 2,4
  expect_exit model_shape_encode_bias 1 dh-encode -q -m "$TMP/bad-b.dhm" "$TMP/f.dhs"
  names model_shape_encode_bias b 2x4 "expected 8"
elif [ $have_py = 1 ]; then
  echo "FAIL conventions_models: could not make the models (dh-pretrain, dh-inithash or dh-finetune failed)"
  T_NFAIL=$((T_NFAIL + 1))
fi

# ---- -o: the permissions '> file' gives (0666 less the umask); a replaced file keeps its own
npy_header '<f4' '(6, 3)' > "$TMP/x.npy"; head -c 72 /dev/zero >> "$TMP/x.npy"
dh-npy import -F z -o "$TMP/x.dhs" "$TMP/x.npy"
dh-inithash -q --method lsh --bits 8 -o "$TMP/lsh.dhm" "$TMP/x.dhs"
mode() { stat -c %a "$1"; }
for u in 022 077 002; do
  t_begin "output_mode_umask_$u"
  rm -f "$TMP"/m-*
  want=$(umask $u; : > "$TMP/m-shell"; mode "$TMP/m-shell")
  (umask $u
   dh-head -o "$TMP/m-head" "$TMP/x.dhs"
   dh-cat -o "$TMP/m-cat" "$TMP/x.dhs"
   dh-npy export -F z -o "$TMP/m-npy" "$TMP/x.dhs"
   dh-split --count 2 -o "$TMP/m-split" -r "$TMP/m-rest" "$TMP/x.dhs"
   dh-inithash -q --method lsh --bits 8 -o "$TMP/m-inithash" "$TMP/x.dhs"
   dh-encode -q -m "$TMP/lsh.dhm" -o "$TMP/m-encode" "$TMP/x.dhs") 2> "$TMP/err" || t_fail "a program failed: $(head -c 200 "$TMP/err")"
  for f in head cat npy split rest inithash encode; do
    [ "$(mode "$TMP/m-$f")" = "$want" ] || t_fail "umask $u: -o file of $f has mode $(mode "$TMP/m-$f"), '> file' gives $want"
  done
  t_end
done
t_begin "output_mode_replaced_file_kept"
: > "$TMP/keep"; chmod 640 "$TMP/keep"
(umask 022; dh-head -o "$TMP/keep" "$TMP/x.dhs") || t_fail "dh-head"
[ "$(mode "$TMP/keep")" = 640 ] || t_fail "mode $(mode "$TMP/keep"), not 640"
dh-info -v "$TMP/keep" > /dev/null || t_fail "not the new stream"
t_end

# ---- an error names a path once (was "x.codes: x.codes: cannot create")
for prog in "dh-encode -q -m $TMP/lsh.dhm" "dh-head" "dh-cat" "dh-inithash -q --method lsh --bits 8" "dh-npy import -F z"; do
  name=${prog%% *}
  in=$TMP/x.dhs; [ "$name" = dh-npy ] && in=$TMP/x.npy
  t_begin "error_names_path_once_$name"
  # shellcheck disable=SC2086
  $prog -o /nonexistent/dir/x.out "$in" > /dev/null 2> "$TMP/err"; rc=$?
  [ $rc = 3 ] || t_fail "exit $rc, not 3"
  [ "$(cat "$TMP/err")" = "$name: /nonexistent/dir/x.out: cannot create: No such file or directory" ] || t_fail "$(head -c 200 "$TMP/err")"
  t_end
done

# ---- dh-encode: the report its --help promises, silenced by -q
t_begin "encode_report"
dh-encode --help | grep -q -- '-q, --quiet .*report' || t_fail "--help"
dh-encode -m "$TMP/lsh.dhm" "$TMP/x.dhs" > /dev/null 2> "$TMP/err" || t_fail "exit status"
[ "$(grep -c . "$TMP/err")" = 1 ] && grep -qE '^dh-encode: 6 rows -> 8-bit codes in [0-9.]+ s \([0-9]+ rows/s, cpu\)$' "$TMP/err" ||
  t_fail "report: $(head -c 200 "$TMP/err")"
dh-encode -q -m "$TMP/lsh.dhm" "$TMP/x.dhs" > /dev/null 2> "$TMP/err"
[ ! -s "$TMP/err" ] || t_fail "-q: $(head -c 200 "$TMP/err")"
t_end
t_done
