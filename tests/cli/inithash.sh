#!/usr/bin/env bash
# tests/cli/inithash.sh — dh-inithash (stage 2) end to end on synthetic
# features made here (numpy -> dh-npy import), and its bad inputs.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy' 2>/dev/null || ! command -v dh-npy >/dev/null; then
  t_skip inithash "needs /usr/bin/python3 with numpy and dh-npy"; exit 0
fi
# synth N D C MEANSEED SAMPLESEED LABELS(0/1) OUT : Gaussian classes
synth() {
  $PY - "$@" <<'PYEOF'
import sys, numpy as np
N, D, C, ms, ss, lab = map(int, sys.argv[1:7]); out = sys.argv[7]
mu = np.random.default_rng(ms).normal(0, 1.0, (C, D))
r = np.random.default_rng(ss); y = r.integers(0, C, N).astype('<i4')
np.save(out + '.z.npy', (mu[y] + r.normal(0, 1.0, (N, D))).astype('<f4')); np.save(out + '.y.npy', y)
PYEOF
  if [ "$6" = 1 ]; then dh-npy import --field z --labels "$7.y.npy" "$7.z.npy" > "$7"
  else dh-npy import --field z "$7.z.npy" > "$7"; fi
}
synth 600 12 4 1 2 1 "$TMP/f.dhs"
synth 100 12 4 1 3 0 "$TMP/nolab.dhs"
synth 100 12 1 1 3 1 "$TMP/one.dhs"

t_begin help_version
dh-inithash --help > "$TMP/h" 2>&1 || t_fail "--help exit"
grep -q -- '--bits' "$TMP/h" || t_fail "--help lacks --bits"
grep -q 'deephash' "$TMP/h" || t_fail "--help lacks the method list"
dh-inithash --version | grep -q 'dh-inithash' || t_fail "--version"
t_end

t_begin fit_default
dh-inithash -q --bits 24 --epochs 5 -o "$TMP/h.dhm" "$TMP/f.dhs" || t_fail "exit status"
[ -s "$TMP/h.dhm" ] || t_fail "no model"
dh-info "$TMP/h.dhm" > "$TMP/info" 2>&1 || t_fail "dh-info cannot read the model"
grep -q '"model": *"hash"' "$TMP/info" || grep -q 'model.*hash' "$TMP/info" || t_fail "meta model != hash: $(head -c 200 "$TMP/info")"
t_end

t_begin deterministic
dh-inithash -q --bits 16 --epochs 3 --seed 5 < "$TMP/f.dhs" > "$TMP/a.dhm"
dh-inithash -q --bits 16 --epochs 3 --seed 5 < "$TMP/f.dhs" > "$TMP/b.dhm"
cmp -s "$TMP/a.dhm" "$TMP/b.dhm" || t_fail "same seed, different model"
t_end

t_begin list_methods
dh-inithash --list-methods | grep -qx deephash || t_fail "deephash not listed"
t_end

expect_fail bits_too_small dh-inithash --bits 4 "$TMP/f.dhs"
expect_fail bits_too_large dh-inithash --bits 257 "$TMP/f.dhs"
expect_fail bits_not_number dh-inithash --bits 12x "$TMP/f.dhs"
expect_fail unknown_method dh-inithash --method nosuch "$TMP/f.dhs"
expect_fail no_labels dh-inithash -q "$TMP/nolab.dhs"
expect_fail single_class dh-inithash -q "$TMP/one.dhs"
expect_fail bad_param dh-inithash -q --param urms "$TMP/f.dhs"
# a misspelt parameter was silently ignored
expect_fail unknown_param dh-inithash -q --epochs 1 --param urmss=2 "$TMP/f.dhs"
t_begin known_param_accepted
dh-inithash -q --epochs 1 --param urms=2 "$TMP/f.dhs" > /dev/null 2>"$TMP/err" || t_fail "$(cat "$TMP/err")"
t_end
# mlh --pairs P meant P/batch iterations past the --iterations bound (ran for hours; overflowed near 2^63)
expect_fail mlh_pairs_too_many timeout 20 dh-inithash -q -M mlh --bits 8 --pairs 999999999999 "$TMP/f.dhs"
# bre --sigma tiny wrote a model with gamma = inf (exit 0) that no encoder can use
expect_fail bre_sigma_tiny dh-inithash -q -M bre --bits 8 --anchors 10 --samples 100 --sigma 1e-300 "$TMP/f.dhs"
expect_fail mlh_pairs_int64_max timeout 20 dh-inithash -q -M mlh --bits 8 --pairs 9223372036854775807 "$TMP/f.dhs"
expect_fail missing_file dh-inithash -q "$TMP/nonexistent.dhs"
head -c 3000 "$TMP/f.dhs" > "$TMP/trunc.dhs"
expect_fail truncated dh-inithash -q "$TMP/trunc.dhs"
expect_fail wrong_kind dh-inithash -q "$TMP/h.dhm"
t_begin no_partial_output
dh-inithash -q -o "$TMP/out.dhm" "$TMP/one.dhs" 2>/dev/null
[ ! -e "$TMP/out.dhm" ] || t_fail "a failed run left $TMP/out.dhm"
t_end
t_done
