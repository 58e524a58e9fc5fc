#!/usr/bin/env bash
# tests/cli/ablation.sh — make stage3-ablation (pipelines/experiment.mk) on
# tiny synthetic images: stage 2 alone, stage 3 on the hash layer
# (--features) and joint stage 3 from one net.dhm, every mode at every
# seed, one table with mean ± sd and the gains over stage 2 paired by seed;
# a stage-3 run interrupted earlier (a checkpoint left beside its model)
# is resumed by make and gives the model an uninterrupted run gives.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v make >/dev/null || ! $PY -c 'import numpy' 2>/dev/null; then
  t_skip stage3_ablation "needs make and /usr/bin/python3 with numpy"; exit 0
fi
W=$TMP/w; AW=$W/stage3-ablation; mkdir -p "$W/codes" "$W/results" && touch "$W/.dir"
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]
for name, seed, N in (("tr", 5, 128), ("te", 6, 48)):
    r = np.random.default_rng(seed)
    y = (np.arange(N) % 4).astype('<i4'); x = r.integers(0, 60, (N, 1, 28, 28)).astype('u1')
    for i in range(N):
        a, b = divmod(int(y[i]), 2); x[i, 0, 4 + 12 * a:12 + 12 * a, 4 + 12 * b:12 + 12 * b] = 220
    np.save(f'{t}/{name}x.npy', x); np.save(f'{t}/{name}y.npy', y)
PYEOF
# the pipeline's stage 0 and 1 made by hand (make takes them as up to date)
(dh-npy import --kind images --field pixels --labels "$TMP/try.npy" "$TMP/trx.npy" > "$W/train.dhs" &&
 dh-npy import --kind images --field pixels --labels "$TMP/tey.npy" "$TMP/tex.npy" > "$W/test.dhs" &&
 ln -sf test.dhs "$W/query.dhs" && sleep 1 &&
 dh-pretrain -q -e 1 -B 16 -o "$W/net.dhm" "$W/train.dhs" 2>/dev/null &&
 dh-feats -q -m "$W/net.dhm" -o "$W/feats-train.dhs" "$W/train.dhs" &&
 dh-feats -q -m "$W/net.dhm" -o "$W/feats-query.dhs" "$W/query.dhs") || { t_begin fixture; t_fail "fixture"; t_end; exit 1; }
abl() { make -s -f "$root/pipelines/experiment.mk" BIN="$DH_BIN" W="$W" ABL_BITS=8 ABL_SEEDS="1 2" \
  ABL_FINETUNE="--epochs 2 -B 32" "$@"; }

# an interrupted run: features-8-s1 stopped after its first epoch, its checkpoint beside it
abl "$AW/hash0-8-s1.dhm" > "$TMP/mk.out" 2>&1
FT=(dh-finetune -q --features --hash "$AW/hash0-8-s1.dhm" --seed 1 --epochs 2 -B 32)
"${FT[@]}" --checkpoint "$AW/features-8-s1.dhm.ckpt" --stop-after 1 -o "$AW/features-8-s1.dhm" "$W/feats-train.dhs" 2>/dev/null

t_begin stage3_ablation_resumes
abl -n "$AW/features-8-s1.dhm" 2>&1 | grep -q -- "--resume $AW/features-8-s1.dhm.ckpt" || t_fail "make would not resume: $(abl -n "$AW/features-8-s1.dhm" 2>&1 | grep dh-finetune)"
t_end

t_begin stage3_ablation_table
abl stage3-ablation > "$TMP/mk.out" 2>&1 || t_fail "exit status: $(tail -3 "$TMP/mk.out")"
T=$AW/stage3-ablation.md
[ -s "$T" ] && sed "s/^/# /" "$T" >&2 || t_fail "no table"
for row in "stage 2 only" "stage 3 on the hash layer" "stage 3 joint"; do
  grep -q "^| $row .* | 8 | 2 | .* ± " "$T" || t_fail "no '$row' row over two seeds: $(cat "$T")"; done
grep -q "^Gain over stage 2 only" "$T" || t_fail "no gains table"
[ "$(grep -c '^| stage 3 .* | [-+][0-9.]* ± ' "$T")" = 2 ] || t_fail "gains: $(cat "$T")"
grep -q "Missing" "$T" && t_fail "runs missing: $(cat "$T")"
t_end

t_begin stage3_ablation_resumed
[ -e "$AW/features-8-s1.dhm.ckpt" ] && t_fail "the checkpoint was not removed"
cp "$AW/features-8-s1.dhm" "$TMP/resumed.dhm"
"${FT[@]}" -o "$AW/features-8-s1.dhm" "$W/feats-train.dhs" || t_fail "the straight run"
cmp -s "$TMP/resumed.dhm" "$AW/features-8-s1.dhm" || t_fail "the resumed run's model is not the straight run's"
t_end
t_done
