#!/usr/bin/env bash
# tests/cli/cpu_engine.sh — the CPU engine seen from the programs: DH_THREADS,
# DH_CPU and DH_PRECISION validated (one error line, non-zero exit); each
# backend bit-identical run to run; oneDNN the default when built in; and
# the steady-state allocation test of the optimised build (test_dk_steady
# without sanitizers, where page faults are meaningful).
. "$(dirname "$0")/../lib.sh"
# the search programs read DH_THREADS too (when no --threads is given)
for p in dh-rank dh-map dh-index; do
  expect_fail "threads_bad_$p" env DH_THREADS=abc $p --db /dev/null </dev/null
done
t_begin threads_option_wins
DH_THREADS=abc dh-rank -j 2 --db /dev/null </dev/null 2>"$TMP/err"
grep -q DH_THREADS "$TMP/err" && t_fail "DH_THREADS checked although --threads was given: $(cat "$TMP/err")"
DH_THREADS=abc dh-rank --help >/dev/null 2>&1 || t_fail "--help fails with a bad DH_THREADS"
t_end

FM=/usr/share/datasets/fashion-mnist
if [ ! -d $FM ]; then t_skip cpu_engine "$FM absent (Debian dataset-fashion-mnist)"; exit 0; fi
dh-ingest -q --split train --limit 256 $FM > "$TMP/train.dhs" || { echo "FAIL cpu_engine_data: dh-ingest"; exit 1; }
# the model on stdout: the command line (kept in the model) is the same for every run
pretrain() { dh-pretrain -q --arch lenet --epochs 1 --batch 64 --seed 3 --device cpu "$@" "$TMP/train.dhs"; }

expect_fail threads_not_a_number env DH_THREADS=abc dh-pretrain -q --arch lenet --epochs 1 --device cpu -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail threads_zero env DH_THREADS=0 dh-pretrain -q --arch lenet --epochs 1 --device cpu -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail cpu_backend_unknown env DH_CPU=fast dh-pretrain -q --arch lenet --epochs 1 --device cpu -o "$TMP/x.dhm" "$TMP/train.dhs"
expect_fail precision_unknown env DH_PRECISION=fp16 dh-pretrain -q --arch lenet --epochs 1 --device cpu -o "$TMP/x.dhm" "$TMP/train.dhs"
t_begin threads_message
DH_THREADS=2x dh-pretrain -q --arch lenet --epochs 1 --device cpu -o "$TMP/x.dhm" "$TMP/train.dhs" 2>"$TMP/err"
grep -q "DH_THREADS='2x'" "$TMP/err" || t_fail "message does not name the value: $(cat "$TMP/err")"
[ ! -e "$TMP/x.dhm" ] || t_fail "a model was written"
t_end

# Same seed, same bits, per backend and thread count (OpenBLAS's and oneDNN's
# products depend on the thread count, so models do too).
t_begin ref_same_bits_run_to_run
DH_CPU=ref DH_THREADS=2 pretrain >"$TMP/r1.dhm" 2>"$TMP/err" || t_fail "$(tail -1 "$TMP/err")"
DH_CPU=ref DH_THREADS=2 pretrain >"$TMP/r2.dhm" 2>"$TMP/err" || t_fail "$(tail -1 "$TMP/err")"
cmp -s "$TMP/r1.dhm" "$TMP/r2.dhm" || t_fail "two runs give different models"
t_end

if DH_CPU=onednn pretrain >"$TMP/o1.dhm" 2>"$TMP/err"; then
  t_begin onednn_same_bits_run_to_run
  DH_CPU=onednn pretrain >"$TMP/o2.dhm" 2>"$TMP/err" || t_fail "$(tail -1 "$TMP/err")"
  cmp -s "$TMP/o1.dhm" "$TMP/o2.dhm" || t_fail "two runs give different models"
  t_end
  t_begin onednn_default
  pretrain >"$TMP/d.dhm" 2>"$TMP/err" || t_fail "$(tail -1 "$TMP/err")"
  cmp -s "$TMP/o1.dhm" "$TMP/d.dhm" || t_fail "the default CPU backend is not onednn"
  t_end
  # --precision P is $DH_PRECISION: the same features (or the same refusal)
  t_begin precision_option_is_the_environment
  feats() { dh-feats -q -m "$TMP/o1.dhm" "$@" "$TMP/train.dhs" >"$TMP/f.dhs" && dh-npy export --field z -o "$TMP/${1-}${2-}.npy" "$TMP/f.dhs"; }
  feats --precision bf16 2>"$TMP/e1"; r1=$?
  DH_PRECISION=bf16 feats 2>"$TMP/e2"; r2=$?
  [ $r1 = $r2 ] || t_fail "exit $r1 with --precision bf16, $r2 with DH_PRECISION=bf16: $(cat "$TMP/e1" "$TMP/e2")"
  [ $r1 != 0 ] || cmp -s "$TMP/--precisionbf16.npy" "$TMP/.npy" || t_fail "--precision bf16 and DH_PRECISION=bf16 differ"
  feats --precision fp32 2>"$TMP/e1" || t_fail "--precision fp32: $(cat "$TMP/e1")"
  t_end
  expect_fail precision_option_unknown dh-feats -q -m "$TMP/o1.dhm" --precision fp16 "$TMP/train.dhs"
  # the same for stage 3 (random init. of lenet; the model keeps its command line: compare the codes)
  t_begin precision_option_is_the_environment_finetune
  ft() { dh-finetune -q --arch lenet --bits 16 --epochs 1 --batch 64 --device cpu "$@" -o "$TMP/ft.dhm" "$TMP/train.dhs" &&
         dh-encode -q -m "$TMP/ft.dhm" "$@" -o "$TMP/ft${1-}${2-}.codes" "$TMP/train.dhs"; }
  ft --precision bf16 2>"$TMP/e1"; r1=$?
  DH_PRECISION=bf16 ft 2>"$TMP/e2"; r2=$?
  [ $r1 = $r2 ] || t_fail "exit $r1 with --precision bf16, $r2 with DH_PRECISION=bf16: $(cat "$TMP/e1" "$TMP/e2")"
  # the codes' meta holds the model's command line, which differs: compare the records alone (dh-cat
  # keeps the first input's meta, so both sides get the same)
  if [ $r1 = 0 ]; then
    dh-cat "$TMP/ft.codes" "$TMP/ft.codes" > "$TMP/ftaa" && dh-cat "$TMP/ft.codes" "$TMP/ft--precisionbf16.codes" > "$TMP/ftab" ||
      t_fail "dh-cat"
    cmp -s "$TMP/ftaa" "$TMP/ftab" || t_fail "--precision bf16 and DH_PRECISION=bf16 give different codes"
  fi
  t_end
  # the fine-tuned model says where and in what arithmetic it was trained, as dh-pretrain's does
  t_begin finetune_model_records_precision
  if [ $r1 = 0 ]; then
    dh-info "$TMP/ft.dhm" | grep -q '"precision": "bf16"' || t_fail "bf16 run: $(dh-info "$TMP/ft.dhm" | grep -o '"precision": "[^"]*"')"
  fi
  DH_PRECISION=fp32 ft 2>"$TMP/e1" || t_fail "fp32 run: $(tail -1 "$TMP/e1")"
  dh-info "$TMP/ft.dhm" > "$TMP/ft.info"
  grep -q '"device": "cpu"' "$TMP/ft.info" || t_fail "no device: $(grep -m1 meta "$TMP/ft.info")"
  grep -q '"precision": "fp32"' "$TMP/ft.info" || t_fail "no fp32: $(grep -o '"precision": "[^"]*"' "$TMP/ft.info")"
  t_end
  expect_fail precision_option_unknown_finetune dh-finetune -q --arch lenet --precision fp16 -o "$TMP/x.dhm" "$TMP/train.dhs"
  expect_fail precision_bf16_on_cuda dh-finetune -q --arch lenet --precision bf16 --device cuda -o "$TMP/x.dhm" "$TMP/train.dhs"
else
  grep -q "no oneDNN" "$TMP/err" && t_skip onednn_same_bits_run_to_run "this build has no oneDNN backend" ||
    { echo "FAIL onednn_run: $(tail -1 "$TMP/err")"; T_NFAIL=$((T_NFAIL+1)); }
fi

# A CPU without AVX-512 (other oneDNN kernels and layouts, bf16 refused),
# emulated by holding oneDNN to AVX2: the op-by-op comparison with the
# reference again, and bf16 refused with one error line.
if [ -n "${DH_TESTS:-}" ] && [ -x "$DH_TESTS/test_dk_onednn" ] && [ -s "$TMP/o1.dhm" ]; then
  t_begin onednn_ops_on_avx2
  ONEDNN_MAX_CPU_ISA=AVX2 "$DH_TESTS/test_dk_onednn" > "$TMP/avx2.out" 2>&1; rc=$?
  [ $rc = 0 ] || t_fail "exit $rc: $(grep -m1 '^FAIL' "$TMP/avx2.out" || tail -1 "$TMP/avx2.out")"
  n=$(grep -c '^PASS' "$TMP/avx2.out"); [ "$n" -ge 10 ] || t_fail "only $n cases passed"
  grep -q '^SKIP bf16: .*AVX512-BF16' "$TMP/avx2.out" || t_fail "bf16 not refused: $(grep bf16 "$TMP/avx2.out" | head -2)"
  t_end
  expect_fail bf16_refused_on_avx2 env ONEDNN_MAX_CPU_ISA=AVX2 DH_PRECISION=bf16 dh-feats -q -m "$TMP/o1.dhm" "$TMP/train.dhs"
  t_begin bf16_refused_on_avx2_says_why
  grep -q 'AVX512-BF16.*ONEDNN_MAX_CPU_ISA' "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
  t_end
fi

# The build the tests run (make test: the sanitizer build, -O1) and the
# optimised build people run (-O3, the AVX2/AVX-512 clones) compute the same
# bits: no FMA contraction (Makefile, -ffp-contract=off), no reassociation.
# A net with batch norm, GELU (the fast path's clones) and max pooling, and
# random init. of lenet through the paper's loss (the hash loss's clones).
if [ -n "${DH_REL_BIN:-}" ] && [ -x "$DH_REL_BIN/dh-pretrain" ] &&
   [ "$(cd "$DH_REL_BIN" && pwd)" != "$(cd "$(dirname "$(command -v dh-pretrain)")" && pwd)" ]; then
  rel=$(cd "$DH_REL_BIN" && pwd)
  printf 'input 1 28 28\nconv 8 k3 p1 nobias\nbn\ngelu\nmaxpool k2\nconv 16 k3 p1 nobias\nbn\ngelu\nmaxpool k3 s2 p1\nflatten\nfc 32 name=z\ngelu\nfeature z\n' > "$TMP/g.net"
  both() { # NAME COMMAND...: the command with this build and with the optimised one, stdout compared
    "${@:2}" > "$TMP/$1.a" 2>"$TMP/err" || { t_fail "this build: $(tail -1 "$TMP/err")"; return; }
    PATH="$rel:$PATH" "${@:2}" > "$TMP/$1.b" 2>"$TMP/err" || { t_fail "optimised build: $(tail -1 "$TMP/err")"; return; }
    cmp -s "$TMP/$1.a" "$TMP/$1.b" || t_fail "the two builds give different models ($(cmp "$TMP/$1.a" "$TMP/$1.b" | head -1))"
  }
  for cpu in ref onednn; do
    t_begin "builds_same_bits_gelu_net_$cpu"
    both "g$cpu" env DH_CPU=$cpu DH_THREADS=2 dh-pretrain -q --net "$TMP/g.net" --epochs 1 --batch 64 --seed 5 --device cpu "$TMP/train.dhs"
    t_end
  done
  t_begin builds_same_bits_hash_loss
  both ri env DH_THREADS=2 dh-finetune -q --arch lenet --bits 24 --epochs 1 --batch 64 --seed 5 --device cpu "$TMP/train.dhs"
  t_end
else
  t_skip builds_same_bits "no second, optimised build (DH_REL_BIN): make test sets it"
fi

steady=${DH_REL_BIN:+$DH_REL_BIN/../tests/test_dk_steady}
if [ -n "$steady" ] && [ -x "$steady" ]; then
  "$steady" | sed -e 's/^\(PASS\|FAIL\|SKIP\) \([a-z_]*\)/\1 optimised_\2/' -e '/^  /d' | tee "$TMP/steady.out"
  grep -q '^FAIL' "$TMP/steady.out" && T_NFAIL=$((T_NFAIL+1))
else
  t_skip optimised_steady "no optimised build (DH_REL_BIN): make test sets it"
fi
t_done
