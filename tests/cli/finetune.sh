#!/usr/bin/env bash
# tests/cli/finetune.sh — dh-finetune (stage 3). On synthetic features
# (numpy -> dh-npy import): fine-tuning the hash layer must raise the mAP of
# the stage-2 codes (mAP by brute force in numpy, queries = a held-out set,
# database = the training set). On tiny synthetic images: the joint
# (network + hash layer) path and "random init." run end to end and write
# a deep hash model that dh-encode reads. Then the bad inputs.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy' 2>/dev/null || ! command -v dh-npy >/dev/null; then
  t_skip finetune "needs /usr/bin/python3 with numpy and dh-npy"; exit 0
fi
# synth N D C MEANSEED SAMPLESEED SCALE OUT : Gaussian classes (features)
synth() {
  $PY - "$@" <<'PYEOF'
import sys, numpy as np
N, D, C, ms, ss = map(int, sys.argv[1:6]); sc = float(sys.argv[6]); out = sys.argv[7]
mu = np.random.default_rng(ms).normal(0, sc, (C, D))
r = np.random.default_rng(ss); y = r.integers(0, C, N).astype('<i4')
np.save(out + '.z.npy', (mu[y] + r.normal(0, 1.0, (N, D))).astype('<f4')); np.save(out + '.y.npy', y)
PYEOF
  dh-npy import --field z --labels "$7.y.npy" "$7.z.npy" > "$7"
}
# map QUERY.codes DB.codes : mAP over the whole Hamming ranking, ties by database order
map() {
  dh-npy export --field code --unpack "$1" > "$TMP/q.npy" && dh-npy export --field label "$1" > "$TMP/ql.npy" &&
  dh-npy export --field code --unpack "$2" > "$TMP/d.npy" && dh-npy export --field label "$2" > "$TMP/dl.npy" &&
  $PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; q = np.load(t + '/q.npy').astype(np.int32); ql = np.load(t + '/ql.npy')
d = np.load(t + '/d.npy').astype(np.int32); dl = np.load(t + '/dl.npy'); aps = []
for i in range(len(q)):
    o = np.argsort((q[i] != d).sum(1), kind='stable'); rel = dl[o] == ql[i]
    if rel.any(): aps.append((np.cumsum(rel)[rel] / (np.nonzero(rel)[0] + 1)).mean())
print('%.4f' % np.mean(aps))
PYEOF
}
synth 2000 48 10 7 1 0.4 "$TMP/tr.dhs"
synth 300 48 10 7 2 0.4 "$TMP/te.dhs"
synth 200 48 1 7 3 0.4 "$TMP/one.dhs"
dh-npy import --field z "$TMP/tr.dhs.z.npy" > "$TMP/nolab.dhs"
dh-inithash -q --bits 16 --epochs 10 "$TMP/tr.dhs" > "$TMP/h0.dhm"

t_begin help_version
dh-finetune --help > "$TMP/h" || t_fail "--help exit"
for o in --loss --backbone-lr --freeze-backbone --sampling --schedule --features --arch; do
  grep -q -- "$o" "$TMP/h" || t_fail "--help lacks $o"; done
dh-finetune --version | grep -q dh-finetune || t_fail "--version"
t_end

t_begin features_finetune_raises_map
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 4 "$TMP/tr.dhs" > "$TMP/h1.dhm" || t_fail "exit status"
dh-encode -m "$TMP/h0.dhm" "$TMP/tr.dhs" > "$TMP/db0" && dh-encode -m "$TMP/h0.dhm" "$TMP/te.dhs" > "$TMP/q0" || t_fail "encode stage 2"
dh-encode -m "$TMP/h1.dhm" "$TMP/tr.dhs" > "$TMP/db1" && dh-encode -m "$TMP/h1.dhm" "$TMP/te.dhs" > "$TMP/q1" || t_fail "encode stage 3"
m0=$(map "$TMP/q0" "$TMP/db0"); m1=$(map "$TMP/q1" "$TMP/db1")
echo "# synthetic 16 bits: stage-2 mAP $m0, fine-tuned mAP $m1" >&2
$PY -c "import sys; sys.exit(0 if float('$m1') > float('$m0') + 0.01 else 1)" || t_fail "mAP did not rise: $m0 -> $m1"
t_end

t_begin features_deterministic
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 1 --seed 3 "$TMP/tr.dhs" > "$TMP/a.dhm"
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 1 --seed 3 < "$TMP/tr.dhs" > "$TMP/b.dhm"
dh-npy export --field data "$TMP/a.dhm" > "$TMP/a.npy" 2>/dev/null; dh-npy export --field data "$TMP/b.dhm" > "$TMP/b.npy" 2>/dev/null
# compare the tensors (the meta differs only by the command line)
cmp -s "$TMP/a.npy" "$TMP/b.npy" || $PY - "$TMP" <<'PYEOF' || t_fail "same seed, different weights"
import sys, msgpack
t = sys.argv[1]
def rows(p): return [o['cols'] for o in msgpack.Unpacker(open(p, 'rb'), raw=False) if 'cols' in o]
sys.exit(0 if rows(t + '/a.dhm') == rows(t + '/b.dhm') else 1)
PYEOF
t_end

t_begin features_options
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 1 --loss paper --sampling paper --schedule step "$TMP/tr.dhs" > "$TMP/p.dhm" || t_fail "paper loss/sampling/schedule"
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 1 --loss balanced --schedule constant -B 100 "$TMP/tr.dhs" > "$TMP/p2.dhm" || t_fail "balanced"
dh-finetune -q --features --bits 12 --epochs 1 "$TMP/tr.dhs" > "$TMP/r.dhm" || t_fail "random init on features"
dh-encode -m "$TMP/r.dhm" "$TMP/te.dhs" > /dev/null || t_fail "encode random-init model"
t_end

# schedules: dk_schedule's grammar plus the paper's plain "step" (as dh-pretrain spells them)
t_begin features_schedules
for sc in step step:1 const constant cosine cosine:0 onecycle:0.3:0.1; do
  dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 2 --schedule $sc "$TMP/tr.dhs" > /dev/null || t_fail "--schedule $sc"
done
# the default is cosine:0 (no warm-up): the same model as spelling it out
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 2 "$TMP/tr.dhs" > "$TMP/s1.dhm"
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 2 --schedule cosine:0 "$TMP/tr.dhs" > "$TMP/s2.dhm"
$PY - "$TMP/s1.dhm" "$TMP/s2.dhm" <<'PYEOF' || t_fail "the default schedule is not cosine:0"
import sys, msgpack
def rows(p): return [o['cols'] for o in msgpack.Unpacker(open(p, 'rb'), raw=False) if 'cols' in o]
sys.exit(0 if rows(sys.argv[1]) == rows(sys.argv[2]) else 1)
PYEOF
t_end
expect_fail bad_schedule dh-finetune -q --features --hash "$TMP/h0.dhm" --schedule zigzag "$TMP/tr.dhs"
expect_fail bad_schedule_steps dh-finetune -q --features --hash "$TMP/h0.dhm" --schedule step:3,2 "$TMP/tr.dhs"

t_begin features_report
dh-finetune --features --hash "$TMP/h0.dhm" --epochs 1 "$TMP/tr.dhs" 2>"$TMP/log" >/dev/null || t_fail "exit"
grep -q 'epoch 1/1: Q .* surrogate .* right-sign pairs .* rows/s' "$TMP/log" || t_fail "no per-epoch report: $(cat "$TMP/log")"
t_end

expect_fail f_single_class dh-finetune -q --features --hash "$TMP/h0.dhm" "$TMP/one.dhs"
expect_fail f_no_labels dh-finetune -q --features --hash "$TMP/h0.dhm" "$TMP/nolab.dhs"
synth 100 20 3 1 1 1 "$TMP/d20.dhs"
expect_fail f_dim_mismatch dh-finetune -q --features --hash "$TMP/h0.dhm" "$TMP/d20.dhs"
# NaN features: named as such (was "training diverged ... try a smaller --lr")
$PY -c "import numpy as np; z=np.load('$TMP/d20.dhs.z.npy'); z[5,3]=np.nan; np.save('$TMP/nan.z.npy', z)"
dh-npy import --field z --labels "$TMP/d20.dhs.y.npy" "$TMP/nan.z.npy" > "$TMP/nan.dhs"
dh-inithash -q -M lsh --bits 8 "$TMP/d20.dhs" > "$TMP/h20.dhm"
expect_fail f_nan_features dh-finetune -q --features --hash "$TMP/h20.dhm" "$TMP/nan.dhs"
t_begin f_nan_features_message; grep -q 'non-finite' "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"; t_end
# dh-encode: NaN features are an error, not codes
expect_fail encode_nan_features dh-encode -m "$TMP/h20.dhm" "$TMP/nan.dhs"
expect_fail bits_out_of_range dh-finetune -q --features --bits 300 "$TMP/tr.dhs"
# options silently ignored: the code length of --hash won over --bits, -m over --arch
expect_fail bits_with_hash dh-finetune -q --features --hash "$TMP/h0.dhm" --bits 24 "$TMP/tr.dhs"
expect_fail net_with_arch dh-finetune -q -m "$TMP/h0.dhm" --hash "$TMP/h0.dhm" --arch lenet "$TMP/tr.dhs"
expect_fail bad_loss dh-finetune -q --features --loss nosuch "$TMP/tr.dhs"
expect_fail hash_not_a_model dh-finetune -q --features --hash "$TMP/tr.dhs" "$TMP/tr.dhs"
if dh-inithash -q --method sh --bits 16 "$TMP/tr.dhs" > "$TMP/sh.dhm" 2>/dev/null; then
  expect_fail nonlinear_hash dh-finetune -q --features --hash "$TMP/sh.dhm" "$TMP/tr.dhs"
fi
# collapsed codes are said, also with -q: one feature vector for every row, a small rate (a large one moves the
# bias enough between batches to flip bits)
$PY -c "import numpy as np; np.save('$TMP/same.z.npy', np.ones((64, 6), '<f4')); np.save('$TMP/same.y.npy', (np.arange(64) % 2).astype('<i4'))"
dh-npy import --field z --labels "$TMP/same.y.npy" "$TMP/same.z.npy" > "$TMP/same.dhs"
t_begin collapse_warning
dh-finetune --features --bits 8 --epochs 2 -B 16 --lr 0.01 "$TMP/same.dhs" > "$TMP/same.dhm" 2> "$TMP/same.err" || t_fail "exit $?"
grep -q 'epoch 2/2: .* constant bits 8/8' "$TMP/same.err" || t_fail "no constant bits in the report: $(cat "$TMP/same.err")"
grep -q '^dh-finetune: warning: every training row had the same code in the last epoch' "$TMP/same.err" ||
  t_fail "no warning: $(cat "$TMP/same.err")"
dh-finetune -q --features --bits 8 --epochs 2 -B 16 --lr 0.01 "$TMP/same.dhs" 2>&1 >/dev/null | grep -q 'warning: every training' ||
  t_fail "-q hid the warning"
dh-finetune --features --hash "$TMP/h0.dhm" --epochs 1 "$TMP/tr.dhs" 2>&1 >/dev/null | grep -q 'constant bits\|warning' &&
  t_fail "a healthy run reported constant bits"
t_end
t_begin no_partial_output
dh-finetune -q --features --hash "$TMP/h0.dhm" -o "$TMP/out.dhm" "$TMP/one.dhs" 2>/dev/null
[ ! -e "$TMP/out.dhm" ] || t_fail "a failed run left its output"
t_end

# ---- the losses of the deeploss registry (--loss NAME[:k=v,...])
# exit status 2 and one line on stderr
expect_usage() {
  local name=$1; shift
  expect_fail "$name" "$@"
  t_begin "${name}_exit2"; "$@" >/dev/null 2>&1; local rc=$?; [ $rc = 2 ] || t_fail "exit status $rc, expected 2"; t_end
}
t_begin registry_features_hashnet
dh-finetune --features --hash "$TMP/h0.dhm" --epochs 2 --loss hashnet "$TMP/tr.dhs" 2>"$TMP/log" > "$TMP/hn.dhm" || t_fail "exit status"
grep -q 'epoch 2/2: loss .* likelihood .* beta .* mean|u|' "$TMP/log" || t_fail "report: $(grep epoch "$TMP/log" | tail -1)"
dh-info "$TMP/hn.dhm" 2>&1 | grep -q '"loss": "hashnet"' || t_fail "no loss in the model's meta"
dh-encode -m "$TMP/hn.dhm" "$TMP/te.dhs" > "$TMP/hnq" || t_fail "dh-encode"
t_end
t_begin registry_features_adsh_db_codes
dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 2 --loss adsh --db-codes "$TMP/adsh.codes" -o "$TMP/adsh.dhm" "$TMP/tr.dhs" || t_fail "exit status"
[ -s "$TMP/adsh.dhm" ] || t_fail "no model"
dh-info "$TMP/adsh.codes" > "$TMP/info" 2>&1 || t_fail "db codes unreadable"
grep -q 'kind: *codes' "$TMP/info" && grep -q 'code:bits\[16\] label:i32 id:str' "$TMP/info" && grep -q 'rows: *2000 ' "$TMP/info" ||
  t_fail "db codes: $(head -5 "$TMP/info")"
# the labels and ids are the training rows', in order
dh-npy export --field label "$TMP/adsh.codes" > "$TMP/al.npy" && dh-npy export --field label "$TMP/tr.dhs" > "$TMP/tl.npy"
cmp -s "$TMP/al.npy" "$TMP/tl.npy" || t_fail "labels differ from the training rows'"
dh-encode -q -m "$TMP/adsh.dhm" "$TMP/te.dhs" | dh-map -q --db "$TMP/adsh.codes" > "$TMP/am" || t_fail "dh-map with the learned database"
grep -q mAP "$TMP/am" || t_fail "no mAP"
t_end
t_begin registry_adsh_without_db_codes
dh-finetune --features --hash "$TMP/h0.dhm" --epochs 1 --loss adsh "$TMP/tr.dhs" 2>"$TMP/log" > "$TMP/a2.dhm" || t_fail "exit status"
grep -q -- '--db-codes' "$TMP/log" || t_fail "no note about --db-codes"
t_end
t_begin registry_help
dh-finetune --loss help > "$TMP/lh" || t_fail "exit status"
for m in deephash dpsh dhn hashnet dch dsh dtsh mihash csq orthohash dsdh greedyhash adsh; do
  grep -q "^$m " "$TMP/lh" || t_fail "--loss help lacks $m"; done
t_end
t_begin registry_every_loss_runs
for m in deephash dpsh dhn dch dsh dtsh mihash csq orthohash dsdh greedyhash "csq:lambda=0.001,centres=bernoulli"; do
  dh-finetune -q --features --hash "$TMP/h0.dhm" --epochs 1 -B 100 --loss "$m" "$TMP/tr.dhs" > "$TMP/m.dhm" || t_fail "--loss $m"
done
t_end
expect_usage registry_unknown dh-finetune -q --features --hash "$TMP/h0.dhm" --loss nosuch "$TMP/tr.dhs"
expect_usage registry_bad_param dh-finetune -q --features --hash "$TMP/h0.dhm" --loss dpsh:eta=-1 "$TMP/tr.dhs"
t_begin registry_bad_param_message; grep -q 'eta=-1' "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"; t_end
expect_usage registry_unknown_param dh-finetune -q --features --hash "$TMP/h0.dhm" --loss hashnet:zeta=1 "$TMP/tr.dhs"
expect_usage registry_db_codes_not_adsh dh-finetune -q --features --hash "$TMP/h0.dhm" --loss dpsh --db-codes "$TMP/x.codes" "$TMP/tr.dhs"
expect_usage registry_loss_scale dh-finetune -q --features --hash "$TMP/h0.dhm" --loss dpsh --loss-scale 2 "$TMP/tr.dhs"
# hadamard centres need a power-of-two code length: known only once --hash is read (16 bits here: fine; 12: refused)
dh-inithash -q --bits 12 --epochs 2 "$TMP/tr.dhs" > "$TMP/h12.dhm"
expect_usage registry_bad_for_bits dh-finetune -q --features --hash "$TMP/h12.dhm" --loss csq:centres=hadamard "$TMP/tr.dhs"

# ---- the comparison target of pipelines/experiment.mk on these features: every method
# from one stage-2 start, the top ones over more seeds, one table; a failed run is named
root=$(cd "$(dirname "$0")/../.." && pwd)
deep() { make -s -f "$root/pipelines/experiment.mk" deep-methods BIN="$DH_BIN" W="$TMP/w" DEEP_FEATS_TRAIN="$TMP/tr.dhs" \
  DEEP_FEATS_QUERY="$TMP/te.dhs" DEEP_BITS=8 DEEP_SEEDS="1 2" DEEP_TOP=2 DEEP_FINETUNE="--epochs 1 -B 100" "$@"; }
if command -v make >/dev/null; then
  t_begin deep_methods_table
  deep DEEP_METHODS="stage2 deephash dpsh adsh" > "$TMP/dm.out" 2>&1 || t_fail "exit status: $(tail -3 "$TMP/dm.out")"
  T=$TMP/w/deep-features/deep-methods.md
  [ -s "$T" ] || t_fail "no table"
  grep -q '^| adsh | 8 | ' "$T" && grep -q '^| dpsh | 8 | ' "$T" && grep -q '^| stage 2 only .* | 8 | 1 | ' "$T" ||
    t_fail "rows missing: $(cat "$T")"
  [ "$(grep -c '| 8 | 2 | .* ± ' "$T")" = 2 ] || t_fail "not two methods over two seeds: $(cat "$T")"
  ls "$TMP/w/deep-features/adsh-8-s2-db.codes" >/dev/null || t_fail "ADSH's learned database codes not used"
  t_end
  t_begin deep_methods_failed_run
  deep DEEP_METHODS="deephash dsh" DEEP_LOSS_dsh=dsh:m=-1 DEEP_TOP=1 > "$TMP/dm.out" 2>&1 && t_fail "exit status 0"
  grep -q 'Missing (failed or not run): dsh-8-s1' "$TMP/w/deep-features/deep-methods.md" || t_fail "the failed run not named"
  t_end
else
  t_skip deep_methods_table "no make"
fi

# ---- images: tiny 1x28x28 synthetic classes (a bright square at a class-specific place)
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; r = np.random.default_rng(5); N = 96
y = (np.arange(N) % 4).astype('<i4'); x = r.integers(0, 60, (N, 1, 28, 28)).astype('u1')
for i in range(N):
    a, b = divmod(int(y[i]), 2); x[i, 0, 4 + 12 * a:12 + 12 * a, 4 + 12 * b:12 + 12 * b] = 220
np.save(t + '/px.npy', x); np.save(t + '/py.npy', y); np.save(t + '/p1.npy', np.zeros(N, '<i4'))
PYEOF
dh-npy import --kind images --field pixels --labels "$TMP/py.npy" "$TMP/px.npy" > "$TMP/im.dhs"
dh-npy import --kind images --field pixels --labels "$TMP/p1.npy" "$TMP/px.npy" > "$TMP/im1.dhs"

t_begin images_random_init
dh-finetune -q --device cpu --arch lenet --bits 8 --epochs 1 -B 32 "$TMP/im.dhs" -o "$TMP/ri.dhm" || t_fail "exit status"
dh-info "$TMP/ri.dhm" 2>&1 | grep -q deephash || t_fail "not a deephash model"
dh-encode -m "$TMP/ri.dhm" "$TMP/im.dhs" > "$TMP/ric.dhs" || t_fail "dh-encode of images"
t_end

t_begin images_finetune_joint
if dh-pretrain -q --device cpu -e 1 -B 32 "$TMP/im.dhs" > "$TMP/net.dhm" 2>"$TMP/perr" &&
   dh-feats -q -m "$TMP/net.dhm" "$TMP/im.dhs" > "$TMP/imf.dhs" &&
   dh-inithash -q --bits 8 --epochs 2 "$TMP/imf.dhs" > "$TMP/ih.dhm"; then
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 "$TMP/im.dhs" > "$TMP/dh.dhm" || t_fail "joint fine-tuning"
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 --freeze-backbone "$TMP/im.dhs" > "$TMP/dhf.dhm" || t_fail "frozen backbone"
  dh-encode -m "$TMP/dh.dhm" "$TMP/im.dhs" > "$TMP/imc.dhs" || t_fail "encode"
  [ "$(dh-npy export --field label "$TMP/imc.dhs" | wc -c)" -gt 0 ] || t_fail "no codes"
  # a registry loss on the joint path (batch rows from the images' epoch order), and ADSH's codes with the images' ids
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 --loss dsdh "$TMP/im.dhs" > "$TMP/dsdh.dhm" || t_fail "joint dsdh"
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 2 -B 32 --loss adsh --db-codes "$TMP/imdb.codes" \
    "$TMP/im.dhs" > "$TMP/adshi.dhm" || t_fail "joint adsh"
  dh-info "$TMP/imdb.codes" 2>&1 | grep -q 'rows: *96 ' || t_fail "joint adsh: database codes"
  dh-info "$TMP/adshi.dhm" 2>&1 | grep -q '"hash_method": "adsh"' || t_fail "joint adsh: hash_method"
else
  t_fail "stage 1/2 helpers failed: $(head -c 200 "$TMP/perr")"
fi
t_end
# the classification term (--aux-xent): stage 1's head on -m, a new head with --arch; it learns the classes
t_begin aux_xent
if [ -s "$TMP/net.dhm" ] && [ -s "$TMP/ih.dhm" ]; then
  dh-finetune --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 3 -B 32 --aux-xent 1 "$TMP/im.dhs" \
    > "$TMP/ax.dhm" 2> "$TMP/ax.err" || t_fail "joint with --aux-xent: $(tail -1 "$TMP/ax.err")"
  grep -q 'epoch 3/3: .*  xent [0-9.]*  train acc [0-9.]*%' "$TMP/ax.err" || t_fail "no xent/accuracy in the epoch notes"
  dh-encode -m "$TMP/ax.dhm" "$TMP/im.dhs" > /dev/null || t_fail "encode"
  # the same run again (the same command line: the model records it): the same model, bit for bit
  dh-finetune --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 3 -B 32 --aux-xent 1 "$TMP/im.dhs" \
    > "$TMP/ax2.dhm" 2> /dev/null && cmp -s "$TMP/ax.dhm" "$TMP/ax2.dhm" || t_fail "not deterministic"
  # and not the model without the term (the records alone: dh-cat drops the meta's command line)
  dh-finetune --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 3 -B 32 --aux-xent 0 "$TMP/im.dhs" \
    > "$TMP/ax0.dhm" 2> /dev/null || t_fail "--aux-xent 0"
  dh-cat "$TMP/ax.dhm" "$TMP/ax.dhm" > "$TMP/axaa" && dh-cat "$TMP/ax.dhm" "$TMP/ax0.dhm" > "$TMP/axab" || t_fail "dh-cat"
  cmp -s "$TMP/axaa" "$TMP/axab" && t_fail "the term changed nothing"
fi
# on by default with -m (W = 100, said in the first note; the same model as asking for it), off for --arch,
# --loss paper, other losses and --freeze-backbone
if [ -s "$TMP/net.dhm" ] && [ -s "$TMP/ih.dhm" ]; then
  ft() { dh-finetune --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 "$@" "$TMP/im.dhs"; }
  ft > "$TMP/axd.dhm" 2> "$TMP/axd.err" || t_fail "default: $(tail -1 "$TMP/axd.err")"
  grep -q 'loss balanced (scale 64) + 100 x classification, ' "$TMP/axd.err" || t_fail "first note: $(head -1 "$TMP/axd.err")"
  grep -q 'epoch 1/1: .*  xent [0-9.]*  train acc' "$TMP/axd.err" || t_fail "no xent in the epoch note"
  ft --aux-xent 100 > "$TMP/ax100.dhm" 2> /dev/null || t_fail "--aux-xent 100"
  dh-cat "$TMP/axd.dhm" "$TMP/axd.dhm" > "$TMP/axaa" && dh-cat "$TMP/axd.dhm" "$TMP/ax100.dhm" > "$TMP/axab" &&
    cmp -s "$TMP/axaa" "$TMP/axab" || t_fail "the default is not --aux-xent 100"
  for o in "--aux-xent 0" "--loss paper" "--loss dpsh" "--freeze-backbone"; do
    ft $o 2>&1 > /dev/null | grep -q 'classification\|xent' && t_fail "the term ran with $o"
  done
fi
dh-finetune --device cpu --arch lenet --bits 8 --epochs 1 -B 32 "$TMP/im.dhs" 2>&1 > /dev/null | grep -q 'classification\|xent' &&
  t_fail "the term ran with --arch"
dh-finetune --device cpu --arch lenet --bits 8 --epochs 6 -B 32 --aux-xent 1 --backbone-lr 0.01 "$TMP/im.dhs" \
  -o "$TMP/axr.dhm" 2> "$TMP/axr.err" || t_fail "random init. with --aux-xent: $(tail -1 "$TMP/axr.err")"
dh-info "$TMP/axr.dhm" 2>&1 | grep -q '^ *head.weight  *4x500 ' || t_fail "random init.: no 4-class head in the model"
acc=$(sed -n 's/.*epoch 6\/6: .*train acc \([0-9.]*\)%.*/\1/p' "$TMP/axr.err")
echo "# random init. with --aux-xent 1, 6 epochs of 96 images: training accuracy ${acc}%" >&2
[ -n "$acc" ] && $PY -c "import sys; sys.exit(0 if float('$acc') >= 90 else 1)" || t_fail "the head did not learn the 4 classes: '${acc}'"
t_end
expect_usage() {
  local name=$1; shift
  t_begin "$name"; "$@" > /dev/null 2> "$TMP/eu.err"; local rc=$?
  [ $rc = 2 ] || t_fail "exit status $rc, expected 2"
  grep -q -- '--aux-xent' "$TMP/eu.err" || t_fail "message: $(cat "$TMP/eu.err")"; t_end
}
expect_usage aux_xent_features dh-finetune -q --features --hash "$TMP/h0.dhm" --aux-xent 1 "$TMP/tr.dhs"
expect_usage aux_xent_frozen dh-finetune -q --device cpu --arch lenet --freeze-backbone --aux-xent 1 "$TMP/im.dhs"
expect_usage aux_xent_negative dh-finetune -q --device cpu --arch lenet --aux-xent -1 "$TMP/im.dhs"
expect_usage aux_xent_not_a_number dh-finetune -q --device cpu --arch lenet --aux-xent x "$TMP/im.dhs"
if [ -s "$TMP/net.dhm" ] && [ -s "$TMP/ih.dhm" ]; then
  # labels beyond stage 1's head (4 classes): refused before training
  $PY -c "import numpy as np; np.save('$TMP/py9.npy', (np.arange(96) % 9).astype('<i4'))"
  dh-npy import --kind images --field pixels --labels "$TMP/py9.npy" "$TMP/px.npy" > "$TMP/im9.dhs"
  expect_fail aux_xent_labels_beyond_head dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --aux-xent 1 "$TMP/im9.dhs"
  t_begin aux_xent_labels_beyond_head_message
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --aux-xent 1 "$TMP/im9.dhs" -o "$TMP/no.dhm" 2> "$TMP/e9.err"
  grep -q 'label [4-8] is not one of the 4 classes' "$TMP/e9.err" || t_fail "$(cat "$TMP/e9.err")"
  [ -e "$TMP/no.dhm" ] && t_fail "wrote a model"
  # without the term the same labels train (the hash loss needs only equal/unequal): the default term steps
  # aside with a note, --aux-xent 0 asks for none
  dh-finetune --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 "$TMP/im9.dhs" 2> "$TMP/e9d.err" > /dev/null ||
    t_fail "the default: $(tail -1 "$TMP/e9d.err")"
  grep -q 'net.dhm: no classification term (.*label [4-8] is not one of the 4 classes' "$TMP/e9d.err" || t_fail "no note: $(cat "$TMP/e9d.err")"
  grep -q 'classification\|xent' <(grep -v 'no classification term' "$TMP/e9d.err") && t_fail "the term ran: $(cat "$TMP/e9d.err")"
  dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" --epochs 1 -B 32 --aux-xent 0 "$TMP/im9.dhs" > /dev/null ||
    t_fail "--aux-xent 0"
  t_end
fi
if [ -s "$TMP/net.dhm" ] && [ -s "$TMP/ih.dhm" ]; then
  expect_fail net_without_hash dh-finetune -q --device cpu -m "$TMP/net.dhm" "$TMP/im.dhs"
  expect_fail hash_dim_mismatch dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/h0.dhm" "$TMP/im.dhs"
  expect_fail images_single_class dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" "$TMP/im1.dhs"
  expect_fail features_without_flag dh-finetune -q --device cpu -m "$TMP/net.dhm" --hash "$TMP/ih.dhm" "$TMP/tr.dhs"
fi
# augmentation: none by default, for fine-tuning a stage-1 net and for a random initialisation of colour
# images alike; crop-flip when asked (the note line says which)
t_begin augment_defaults
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; r = np.random.default_rng(6); N = 32
np.save(t + '/cx.npy', r.integers(0, 255, (N, 3, 32, 32)).astype('u1')); np.save(t + '/cy.npy', (np.arange(N) % 2).astype('<i4'))
PYEOF
dh-npy import --kind images --field pixels --labels "$TMP/cy.npy" "$TMP/cx.npy" > "$TMP/cim.dhs"
if dh-pretrain -q --device cpu --arch cifar -e 1 -B 16 "$TMP/cim.dhs" > "$TMP/cnet.dhm" 2>"$TMP/perr" &&
   dh-feats -q -m "$TMP/cnet.dhm" "$TMP/cim.dhs" > "$TMP/cf.dhs" && dh-inithash -q --bits 8 --epochs 1 "$TMP/cf.dhs" > "$TMP/ch.dhm"; then
  ft() { dh-finetune --device cpu --epochs 1 -B 16 "$@" "$TMP/cim.dhs" -o "$TMP/cd.dhm" 2>&1 >/dev/null | grep -o 'augment pad [0-9]* flip [0-9]*'; }
  a=$(ft -m "$TMP/cnet.dhm" --hash "$TMP/ch.dhm"); [ "$a" = "augment pad 0 flip 0" ] || t_fail "-m default: '$a'"
  a=$(ft -m "$TMP/cnet.dhm" --hash "$TMP/ch.dhm" --augment crop-flip); [ "$a" = "augment pad 4 flip 1" ] || t_fail "-m crop-flip: '$a'"
  a=$(ft --arch cifar --bits 8); [ "$a" = "augment pad 0 flip 0" ] || t_fail "--arch default: '$a'"
  a=$(ft --arch cifar --bits 8 --augment crop-flip); [ "$a" = "augment pad 4 flip 1" ] || t_fail "--arch crop-flip: '$a'"
else
  t_fail "stage 1/2 helpers failed: $(head -c 200 "$TMP/perr")"
fi
t_end
expect_fail hash_without_net dh-finetune -q --hash "$TMP/h0.dhm" "$TMP/im.dhs"
expect_fail no_network dh-finetune -q "$TMP/im.dhs"
expect_fail bad_arch dh-finetune -q --arch nosuch "$TMP/im.dhs"
t_done
