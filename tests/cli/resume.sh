#!/usr/bin/env bash
# tests/cli/resume.sh — checkpoints of dh-pretrain and dh-finetune
# (--checkpoint, --checkpoint-every, --resume, --stop-after, SIGINT/SIGTERM).
# A run stopped after an epoch (or between two steps, or by a signal) and
# resumed writes the same model, byte for byte, as the run that was not
# stopped: under DH_CPU=ref and under the default CPU engine (oneDNN when
# built with it), for stage 1 (with lookahead too, and the air recipe:
# reflected crops, lookahead from epoch 3), stage 3 on features,
# joint and from random init., and the
# registry losses that keep state (GreedyHash, DSDH, ADSH with its database
# codes). Then what a resume refuses: another run's checkpoint (data,
# batch, seed, schedule), another program's, a model that is no checkpoint,
# a truncated or corrupted file.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy' 2>/dev/null || ! command -v dh-npy >/dev/null; then
  t_skip resume "needs /usr/bin/python3 with numpy and dh-npy"; exit 0
fi
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]
# images: 1x28x28, 4 classes (a bright square at a class-specific place)
r = np.random.default_rng(5); N = 96
y = (np.arange(N) % 4).astype('<i4'); x = r.integers(0, 60, (N, 1, 28, 28)).astype('u1')
for i in range(N):
    a, b = divmod(int(y[i]), 2); x[i, 0, 4 + 12 * a:12 + 12 * a, 4 + 12 * b:12 + 12 * b] = 220
np.save(t + '/px.npy', x); np.save(t + '/py.npy', y)
x2 = x.copy(); x2[0, 0, 0, 0] ^= 1; np.save(t + '/px2.npy', x2)   # one pixel differs
# colour images for the air recipe: 3x32x32, 4 classes
ya = (np.arange(48) % 4).astype('<i4'); xa = r.integers(0, 256, (48, 3, 32, 32)).astype('u1')
for i in range(48): xa[i, int(ya[i]) % 3, 8:24, 8:24] = 250
np.save(t + '/pa.npy', xa); np.save(t + '/pay.npy', ya)
# features: Gaussian classes
N, D, C = 400, 24, 5
mu = np.random.default_rng(7).normal(0, 0.5, (C, D)); r = np.random.default_rng(1)
y = r.integers(0, C, N).astype('<i4')
np.save(t + '/fz.npy', (mu[y] + r.normal(0, 1, (N, D))).astype('<f4')); np.save(t + '/fy.npy', y)
PYEOF
dh-npy import --kind images --field pixels --labels "$TMP/py.npy" "$TMP/px.npy" > "$TMP/im.dhs"
dh-npy import --kind images --field pixels --labels "$TMP/py.npy" "$TMP/px2.npy" > "$TMP/im2.dhs"
dh-npy import --field z --labels "$TMP/fy.npy" "$TMP/fz.npy" > "$TMP/f.dhs"
dh-npy import --kind images --field pixels --labels "$TMP/pay.npy" "$TMP/pa.npy" > "$TMP/rgb.dhs"
dh-inithash -q --bits 12 --epochs 2 "$TMP/f.dhs" > "$TMP/fh0.dhm"

# same NAME CMD... : CMD (a training command writing its model to stdout,
# run in a directory under $TMP: inputs are ../NAME) run three ways:
# straight through (--checkpoint, so that the checkpoint writes are part of
# it too); stopped after epoch 1 (exit 75) then resumed; with a checkpoint
# every 0.001 minute (pauses between steps). The three models (and ADSH's
# database codes, when $DBC is set) must be the same bytes.
same() {
  local name=$1; shift
  t_begin "$name"
  rm -rf "$TMP/a" "$TMP/b" "$TMP/c"; mkdir "$TMP/a" "$TMP/b" "$TMP/c"
  local dbc=""; [ -n "${DBC:-}" ] && dbc="--db-codes db.codes"
  (cd "$TMP/a" && "$@" $dbc --checkpoint ck.dhm > m.dhm 2> err) || t_fail "straight run: $(head -c 200 "$TMP/a/err")"
  (cd "$TMP/b" && "$@" $dbc --checkpoint ck.dhm --stop-after 1 > m.dhm 2> err); local rc=$?
  [ $rc = 75 ] || t_fail "--stop-after 1: exit $rc, not 75: $(head -c 200 "$TMP/b/err")"
  [ -s "$TMP/b/m.dhm" ] && t_fail "--stop-after wrote a model"
  [ -s "$TMP/b/ck.dhm" ] || t_fail "--stop-after wrote no checkpoint"
  (cd "$TMP/b" && "$@" $dbc --resume ck.dhm > m.dhm 2> err) || t_fail "resume: $(head -c 200 "$TMP/b/err")"
  cmp -s "$TMP/a/m.dhm" "$TMP/b/m.dhm" || t_fail "stopped after epoch 1 and resumed: another model"
  (cd "$TMP/c" && "$@" $dbc --checkpoint ck.dhm --checkpoint-every 0.001m > m.dhm 2> err) || t_fail "--checkpoint-every 0.001m"
  cmp -s "$TMP/a/m.dhm" "$TMP/c/m.dhm" || t_fail "paused between steps: another model"
  if [ -n "$dbc" ]; then
    cmp -s "$TMP/a/db.codes" "$TMP/b/db.codes" || t_fail "resumed: other database codes"
    cmp -s "$TMP/a/db.codes" "$TMP/c/db.codes" || t_fail "paused: other database codes"
  fi
  t_end
}

engines="ref"
if DH_CPU=onednn dh-finetune -q --features --hash "$TMP/fh0.dhm" --epochs 1 "$TMP/f.dhs" > /dev/null 2>&1; then
  engines="ref onednn"
else
  t_skip resume_onednn "this build has no oneDNN"
fi
(cd "$TMP" && dh-pretrain -q -e 1 -B 16 im.dhs > net.dhm 2>/dev/null && dh-feats -q -m net.dhm im.dhs |
  dh-inithash -q --bits 8 --epochs 2 > ih.dhm) || t_fail "stage 1/2 helpers"
for cpu in $engines; do
  export DH_CPU=$cpu
  same "pretrain_$cpu" dh-pretrain -q -e 2 -B 16 --augment ../im.dhs
  same "pretrain_lookahead_$cpu" dh-pretrain -q -e 2 -B 16 --augment --lookahead ../im.dhs
  same "finetune_features_$cpu" dh-finetune -q --features --hash ../fh0.dhm --epochs 2 -B 32 ../f.dhs
  same "finetune_joint_$cpu" dh-finetune -q -m ../net.dhm --hash ../ih.dhm --epochs 2 -B 16 --augment crop-flip ../im.dhs
  same "finetune_random_init_$cpu" dh-finetune -q --arch lenet --bits 8 --epochs 2 -B 16 --sampling paper --skip 5 ../im.dhs
  same "finetune_aux_xent_$cpu" dh-finetune -q -m ../net.dhm --hash ../ih.dhm --epochs 2 -B 16 --aux-xent 1 ../im.dhs
  same "finetune_random_init_aux_xent_$cpu" dh-finetune -q --arch lenet --bits 8 --epochs 2 -B 16 --aux-xent 0.5 ../im.dhs
done
export DH_CPU=ref
# the air recipe: crops with reflection, warm-up from 0.2, lookahead from epoch 3 (the copy at step 20 of 30,
# the net set to the average after epochs 3, 4, 5); stopped after epoch 4 (the average started) and resumed
AIR="dh-pretrain -q --arch air -e 5 -B 8 --lr 0.2 --device cpu ../rgb.dhs"
same pretrain_air $AIR
t_begin pretrain_air_resumed_late
rm -rf "$TMP/a4" "$TMP/b4"; mkdir "$TMP/a4" "$TMP/b4"
(cd "$TMP/a4" && $AIR > m.dhm 2> err) || t_fail "straight run: $(head -c 200 "$TMP/a4/err")"
(cd "$TMP/b4" && $AIR --checkpoint ck.dhm --stop-after 4 > m.dhm 2> err); [ $? = 75 ] || t_fail "--stop-after 4"
(cd "$TMP/b4" && $AIR --resume ck.dhm > m.dhm 2> err) || t_fail "resume: $(head -c 200 "$TMP/b4/err")"
cmp -s "$TMP/a4/m.dhm" "$TMP/b4/m.dhm" || t_fail "stopped after epoch 4 and resumed: another model"
t_end
same finetune_greedyhash dh-finetune -q --features --hash ../fh0.dhm --epochs 2 -B 32 --loss greedyhash ../f.dhs
same finetune_dsdh dh-finetune -q --features --hash ../fh0.dhm --epochs 3 -B 32 --loss dsdh ../f.dhs
DBC=1 same finetune_adsh dh-finetune -q --features --hash ../fh0.dhm --epochs 3 -B 32 --loss adsh ../f.dhs
same finetune_adsh_joint dh-finetune -q -m ../net.dhm --hash ../ih.dhm --epochs 2 -B 16 --loss adsh ../im.dhs

# a signal: the checkpoint at the next step, exit 128 + the signal, and the resumed run matches
FT="dh-finetune -q --features --hash fh0.dhm --epochs 60 -B 8 f.dhs"
(cd "$TMP" && $FT > full.dhm 2>/dev/null) || t_fail "long run"
for sig in TERM INT; do
  t_begin "signal_$sig"
  rm -f "$TMP/ck-s.dhm"
  (cd "$TMP" && exec $FT --checkpoint ck-s.dhm > s.dhm 2> s.err) & pid=$!
  for _ in $(seq 1 600); do [ -s "$TMP/ck-s.dhm" ] && break; sleep 0.05; done  # the first epoch's checkpoint
  kill -$sig $pid 2>/dev/null; wait $pid; rc=$?
  want=$((128 + $(kill -l $sig)))
  if [ $rc = 0 ]; then
    t_fail "the run ended before the signal (exit 0)"
  else
    [ $rc = $want ] || t_fail "exit $rc, not $want: $(head -c 200 "$TMP/s.err")"
    grep -q "checkpoint at step [0-9]* written to ck-s.dhm" "$TMP/s.err" || t_fail "no note: $(head -c 200 "$TMP/s.err")"
    dh-info --verify "$TMP/ck-s.dhm" > /dev/null 2>&1 || t_fail "the checkpoint does not verify"
    ls "$TMP"/.ck-s.dhm.tmp.* > /dev/null 2>&1 && t_fail "a temporary file left"
    (cd "$TMP" && $FT --resume ck-s.dhm > s.dhm 2> s.err) || t_fail "resume: $(head -c 200 "$TMP/s.err")"
    cmp -s "$TMP/full.dhm" "$TMP/s.dhm" || t_fail "resumed after SIG$sig: another model"
  fi
  t_end
done

# what a resume refuses (exit 1, one line naming the difference)
(cd "$TMP" && dh-finetune -q --features --hash fh0.dhm --epochs 2 -B 32 --checkpoint ck-f.dhm --stop-after 1 f.dhs > /dev/null 2>&1)
(cd "$TMP" && dh-pretrain -q -e 2 -B 8 --checkpoint ck-p.dhm --stop-after 1 im.dhs > /dev/null 2>&1)
cd "$TMP" || exit 1
F="dh-finetune -q --features --hash fh0.dhm"
expect_fail refuse_batch $F --epochs 2 -B 16 --resume ck-f.dhm f.dhs
grep -q "batch 32 there, 16 here" "$TMP/ef.err" || { t_begin refuse_batch_message; t_fail "$(cat "$TMP/ef.err")"; t_end; }
expect_fail refuse_seed $F --epochs 2 -B 32 --seed 2 --resume ck-f.dhm f.dhs
expect_fail refuse_schedule $F --epochs 3 -B 32 --resume ck-f.dhm f.dhs
expect_fail refuse_lr $F --epochs 2 -B 32 --lr 1 --resume ck-f.dhm f.dhs
expect_fail refuse_start dh-finetune -q --features --epochs 2 -B 32 --resume ck-f.dhm f.dhs
expect_fail refuse_data_pretrain dh-pretrain -q -e 2 -B 8 --resume ck-p.dhm im2.dhs
grep -q "data" "$TMP/ef.err" || { t_begin refuse_data_message; t_fail "$(cat "$TMP/ef.err")"; t_end; }
expect_fail refuse_arch dh-pretrain -q -e 2 -B 8 --arch fast --resume ck-p.dhm im.dhs
expect_fail refuse_other_program $F --epochs 2 -B 32 --resume ck-p.dhm f.dhs
grep -q "a checkpoint of dh-pretrain" "$TMP/ef.err" || { t_begin refuse_other_program_message; t_fail "$(cat "$TMP/ef.err")"; t_end; }
expect_fail refuse_not_checkpoint $F --epochs 2 -B 32 --resume fh0.dhm f.dhs
head -c 3000 ck-f.dhm > trunc.dhm
expect_fail refuse_truncated $F --epochs 2 -B 32 --resume trunc.dhm f.dhs
$PY -c "import sys; b = bytearray(open('ck-f.dhm', 'rb').read()); b[len(b) // 2] ^= 0x10; open('bad.dhm', 'wb').write(b)"
expect_fail refuse_corrupt $F --epochs 2 -B 32 --resume bad.dhm f.dhs
t_begin refuse_statuses
$F --epochs 2 -B 16 --resume ck-f.dhm f.dhs > /dev/null 2>&1; [ $? = 1 ] || t_fail "mismatch: not exit 1"
$F --epochs 2 -B 32 --resume trunc.dhm f.dhs > /dev/null 2>&1; [ $? = 1 ] || t_fail "truncated: not exit 1"
$F --epochs 2 -B 32 --resume nosuch.dhm f.dhs > /dev/null 2>&1; [ $? = 3 ] || t_fail "missing file: not exit 3"
t_end
# usage
expect_fail stop_after_without_checkpoint $F --epochs 2 --stop-after 1 f.dhs
expect_fail bad_every $F --epochs 2 --checkpoint x.dhm --checkpoint-every 2x f.dhs
expect_fail bad_every_fraction $F --epochs 2 --checkpoint x.dhm --checkpoint-every 1.5 f.dhs
expect_fail checkpoint_is_output $F --epochs 2 --checkpoint x.dhm -o x.dhm f.dhs
t_begin usage_status
$F --epochs 2 --stop-after 1 f.dhs > /dev/null 2>&1; [ $? = 2 ] || t_fail "--stop-after without a file: not exit 2"
t_end
# -o stays atomic: a stopped run leaves no model under the final name; the cmdline leaves the checkpoint options out
t_begin stop_leaves_no_output
$F --epochs 2 -B 32 --checkpoint ck-o.dhm --stop-after 1 -o out.dhm f.dhs 2>/dev/null; rc=$?
[ $rc = 75 ] || t_fail "exit $rc"
[ -e out.dhm ] && t_fail "out.dhm written"
ls .out.dhm.tmp.* > /dev/null 2>&1 && t_fail "a temporary file left"
$F --epochs 2 -B 32 --resume ck-o.dhm -o out.dhm f.dhs 2>/dev/null || t_fail "resume"
dh-info out.dhm | grep -q '"cmdline": "dh-finetune -q --features --hash fh0.dhm --epochs 2 -B 32 -o out.dhm f.dhs"' ||
  t_fail "cmdline: $(dh-info out.dhm | grep -o '"cmdline": "[^"]*"')"
t_end
t_begin help
for p in dh-pretrain dh-finetune; do
  for o in --checkpoint --checkpoint-every --resume --stop-after; do
    $p --help | grep -q -- "$o " || t_fail "$p --help lacks $o"; done; done
t_end
t_done
