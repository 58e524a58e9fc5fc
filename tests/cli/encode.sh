#!/usr/bin/env bash
# tests/cli/encode.sh — dh-encode: features + hash model -> codes, checked
# against a numpy evaluation of the model; bad inputs.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy, msgpack' 2>/dev/null || ! command -v dh-npy >/dev/null; then
  t_skip encode "needs /usr/bin/python3 with numpy, msgpack and dh-npy"; exit 0
fi
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; r = np.random.default_rng(3)
y = r.integers(0, 3, 333).astype('<i4'); z = (r.normal(0, 1, (3, 20))[y] + r.normal(0, 1, (333, 20))).astype('<f4')
np.save(t + '/z.npy', z); np.save(t + '/y.npy', y)
np.save(t + '/z7.npy', z[:, :7].copy())
PYEOF
dh-npy import --field z --labels "$TMP/y.npy" "$TMP/z.npy" > "$TMP/f.dhs"
dh-npy import --field z "$TMP/z7.npy" > "$TMP/f7.dhs"
dh-inithash -q --bits 13 --epochs 2 "$TMP/f.dhs" > "$TMP/h.dhm"

t_begin help_version
dh-encode --help | grep -q -- '--model' || t_fail "--help"
dh-encode --version | grep -q dh-encode || t_fail "--version"
t_end

t_begin encode_matches_model
dh-encode -m "$TMP/h.dhm" --batch 50 "$TMP/f.dhs" > "$TMP/c.dhs" || t_fail "exit status"
# Recompute the codes from the model's W and b with numpy and compare bit by bit.
$PY - "$TMP" <<'PYEOF' || t_fail "codes differ from sign(W z + b) or layout wrong"
import sys, msgpack, numpy as np
t = sys.argv[1]
def rd(p):
    u = msgpack.Unpacker(open(p, 'rb'), raw=False); h = next(u); rows = [o for o in u if 'cols' in o]; return h, rows
h, rows = rd(t + '/m.tmp') if False else rd(t + '/h.dhm')
tens = {}
for o in rows:
    n = o['rows']; names = o['cols'][0]; shp = o['cols'][1]; dat = o['cols'][2]
    nl = np.frombuffer(names[:4*n], '<u4'); sl = np.frombuffer(shp[:4*n], '<u4'); dl = np.frombuffer(dat[:4*n], '<u4')
    no, so, do = 4*n, 4*n, 4*n
    for i in range(n):
        nm = names[no:no+nl[i]].decode(); no += nl[i]
        s = np.frombuffer(shp[so:so+8*sl[i]], '<i8'); so += 8*sl[i]
        tens[nm] = np.frombuffer(dat[do:do+4*dl[i]], '<f4').reshape(s); do += 4*dl[i]
z = np.load(t + '/z.npy'); W = tens['W']; b = tens.get('b', np.zeros(W.shape[0], 'f4'))
want = (z.astype('f8') @ W.T.astype('f8') + b) > 0
hc, crow = rd(t + '/c.dhs')
assert hc['kind'] == 'codes' and hc['meta']['bits'] == 13, hc
K = 13; nb = 2
got = np.concatenate([np.frombuffer(o['cols'][0], 'u1').reshape(-1, nb) for o in crow])
bits = np.unpackbits(got, axis=1, bitorder='little')
assert (bits[:, K:] == 0).all(), "padding bits not zero"
bad = (bits[:, :K] != want).sum()
assert bad <= 2, "%d bits differ" % bad   # float rounding at u ~ 0 only
lab = np.concatenate([np.frombuffer(o['cols'][1], '<i4') for o in crow])
assert (lab == np.load(t + '/y.npy')).all()
PYEOF
t_end

t_begin batch_size_invariant
dh-encode -m "$TMP/h.dhm" --batch 1 "$TMP/f.dhs" > "$TMP/c1.dhs"
dh-encode -m "$TMP/h.dhm" --batch 1000 < "$TMP/f.dhs" > "$TMP/c2.dhs"
dh-npy export --field code "$TMP/c1.dhs" > "$TMP/c1.npy" && dh-npy export --field code "$TMP/c2.dhs" > "$TMP/c2.npy" || t_fail "export"
cmp -s "$TMP/c1.npy" "$TMP/c2.npy" || t_fail "codes depend on --batch"
t_end

t_begin no_labels_passthrough
dh-encode -m "$TMP/h.dhm" "$TMP/f.dhs" -o "$TMP/c3.dhs" || t_fail "-o"
dh-npy import --field z "$TMP/z.npy" | dh-encode -m "$TMP/h.dhm" > "$TMP/c4.dhs" || t_fail "unlabelled features"
t_end

expect_fail no_model dh-encode "$TMP/f.dhs"
expect_fail model_missing dh-encode -m "$TMP/none.dhm" "$TMP/f.dhs"
expect_fail model_not_a_model dh-encode -m "$TMP/f.dhs" "$TMP/f.dhs"
expect_fail dim_mismatch dh-encode -m "$TMP/h.dhm" "$TMP/f7.dhs"
expect_fail input_is_codes dh-encode -m "$TMP/h.dhm" "$TMP/c.dhs"
expect_fail bad_batch dh-encode -m "$TMP/h.dhm" --batch 0 "$TMP/f.dhs"
expect_fail model_and_input_stdin sh -c 'dh-encode -m - < "$1"' sh "$TMP/h.dhm"
head -c 5000 "$TMP/f.dhs" > "$TMP/trunc.dhs"
t_begin truncated_input_no_trailer
dh-encode -m "$TMP/h.dhm" "$TMP/trunc.dhs" > "$TMP/ct.dhs" 2>"$TMP/err"; rc=$?
[ $rc != 0 ] || t_fail "exit 0 on a truncated input"
[ "$(grep -c . "$TMP/err")" = 1 ] || t_fail "stderr: $(cat "$TMP/err")"
if dh-info "$TMP/ct.dhs" >/dev/null 2>&1; then t_fail "output of a failed run reads as complete"; fi
t_end
# -o onto a symbolic link or a FIFO writes through it; the atomic rename
# used to replace the link (or a device such as /dev/null) by a plain file.
t_begin output_symlink_fifo_kept
: > "$TMP/target.dhs"; ln -s target.dhs "$TMP/link.dhs"
dh-encode -m "$TMP/h.dhm" -o "$TMP/link.dhs" "$TMP/f.dhs" || t_fail "exit status (symlink)"
[ -L "$TMP/link.dhs" ] || t_fail "the symlink was replaced"
dh-info --verify "$TMP/target.dhs" >/dev/null 2>&1 || t_fail "the link's target was not written"
mkfifo "$TMP/fifo"; dh-info --verify "$TMP/fifo" >/dev/null 2>&1 & pid=$!
dh-encode -m "$TMP/h.dhm" -o "$TMP/fifo" "$TMP/f.dhs" || t_fail "exit status (fifo)"
wait $pid || t_fail "the stream through the FIFO does not verify"
[ -p "$TMP/fifo" ] || t_fail "the FIFO was replaced"
t_end
t_done
