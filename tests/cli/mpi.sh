#!/usr/bin/env bash
# tests/cli/mpi.sh — data-parallel training (kernels/train/train_dist.h):
# `mpirun -np 2` dh-pretrain and dh-finetune on tiny synthetic images give
# the model of one process with the same global batch, within a stated
# tolerance; rank 0 alone writes (stdout) and reports; a batch that does not
# divide among the ranks is refused; a checkpointed and resumed 2-rank run
# is the uninterrupted one. The figure compared is, over the
# model's tensors, max |a - b| / max(1, max |a|) (the max abs difference for
# weights below 1), printed on a '#' line:
#   no batch norm (lenet, the joint fine-tuning):  <= 1e-4 (float rounding:
#     the gradient summed in another order; measured ~1e-6 after 16 steps)
#   batch norm (each rank normalises its slice with its own statistics,
#     as PyTorch DDP without SyncBatchNorm):        <= 1e-2 (measured ~5e-3
#     after 16 steps; training the same net with half the batch on one
#     process moves it by ~3e-2)
#   --features (every rank trains the whole layer): identical
# Skips visibly without mpirun; with a build without MPI (NO_MPI=1, or
# libopenmpi-dev absent) it checks that 2 ranks are refused instead.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! command -v mpirun >/dev/null; then t_skip mpi "no mpirun (Debian: openmpi-bin)"; exit 0; fi
if ! $PY -c 'import numpy, msgpack' 2>/dev/null; then t_skip mpi "needs /usr/bin/python3 with numpy and msgpack"; exit 0; fi
# OpenMPI refuses root without these; --oversubscribe: 2 ranks on 1 core too.
# Leak checking off under mpirun: Open MPI's own allocations outlive MPI_Finalize.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export DH_THREADS=1 DH_DEVICE=cpu
mpi2() { ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 120 mpirun -np 2 --oversubscribe "$@"; }
if ! mpi2 true > /dev/null 2> "$TMP/probe"; then
  t_skip mpi "mpirun cannot start 2 processes here: $(grep -m1 "[A-Za-z]" "$TMP/probe" | head -c 200)"; exit 0
fi

# 256 images 1x28x28 of 4 classes (a bright band per class)
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
r = np.random.default_rng(5); n = 256
y = r.integers(0, 4, n).astype('<i4'); x = r.integers(0, 60, (n, 1, 28, 28)).astype(np.float32)
for i in range(n): x[i, :, 7 * y[i]:7 * y[i] + 7, :] += 150
np.save(sys.argv[1] + '/x.npy', np.clip(x, 0, 255).astype(np.uint8)); np.save(sys.argv[1] + '/y.npy', y)
PYEOF
dh-npy import --kind images --field pixels --labels "$TMP/y.npy" -o "$TMP/im.dhs" "$TMP/x.npy" || { t_begin mpi_data; t_fail "dh-npy import"; t_end; exit 1; }

if ! grep -q 'libmpi\.so' "$DH_BIN/dh-pretrain"; then # the MPI build names the library it opens
  t_skip mpi_training "this build has no MPI (make's first line; Debian: libopenmpi-dev)"
  t_begin mpi_refused_without_mpi # N copies would each train the whole model: refused
  mpi2 dh-pretrain -q --arch lenet -e 1 -B 32 -o "$TMP/m.dhm" "$TMP/im.dhs" > /dev/null 2> "$TMP/err"
  rc=$?
  [ $rc != 0 ] || t_fail "exit 0"
  grep -q 'dh-pretrain: data-parallel training: .*this build has no MPI' "$TMP/err" || t_fail "stderr: $(head -c 300 "$TMP/err")"
  [ ! -e "$TMP/m.dhm" ] || t_fail "a model was written"
  t_end
  t_done; exit
fi

# cmp A B TOL : the figure above <= TOL
cmpm() {
  $PY - "$@" <<'PYEOF'
import sys, msgpack, numpy as np
def load(p):
    u = msgpack.Unpacker(open(p, 'rb'), raw=False, max_buffer_size=1 << 30)
    next(u); out = {}
    for c in u:
        if 'end' in c: break
        n = c['rows']; b = c['cols']; names = []; o = 4 * n
        for L in np.frombuffer(b[0][:4 * n], '<u4'): names.append(b[0][o:o + L].decode()); o += int(L)
        o = 4 * n
        for k, L in zip(names, np.frombuffer(b[2][:4 * n], '<u4')):
            out[k] = np.frombuffer(b[2][o:o + 4 * int(L)], '<f4').astype(np.float64); o += 4 * int(L)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
if a.keys() != b.keys(): print('tensors differ:', sorted(a), sorted(b)); sys.exit(1)
d, worst = 0.0, ''
for k in a:
    x = float(np.max(np.abs(a[k] - b[k])) / max(1.0, np.max(np.abs(a[k])))) if a[k].size else 0.0
    if x > d: d, worst = x, k
print('# %s: max difference %.3g (%s), tolerance %g' % (sys.argv[4], d, worst or '-', float(sys.argv[3])))
sys.exit(0 if d <= float(sys.argv[3]) else 1)
PYEOF
}
# same NAME TOL PROG ARGS... : PROG alone and on 2 ranks (-o), the models within TOL
same() {
  local name=$1 tol=$2; shift 2
  t_begin "$name"
  "$@" -q -o "$TMP/one.dhm" "$TMP/in" 2> "$TMP/err1" || t_fail "one process: $(head -c 200 "$TMP/err1")"
  mpi2 "$@" -q -o "$TMP/two.dhm" "$TMP/in" 2> "$TMP/err2" > /dev/null || t_fail "2 ranks: $(head -c 300 "$TMP/err2")"
  [ "$T_FAILED" = 0 ] && { cmpm "$TMP/one.dhm" "$TMP/two.dhm" "$tol" "$name, 1 vs 2 ranks" || t_fail "beyond $tol"; }
  t_end
}
ln -sf "$TMP/im.dhs" "$TMP/in"
same mpi_pretrain_lenet 1e-4 dh-pretrain --arch lenet -e 2 -B 32
cat > "$TMP/bn.net" <<'EOF'
input 1 28 28
conv 8 k5 nobias
bn
relu
maxpool k2 s2
fc 32 name=z
relu
feature z
EOF
same mpi_pretrain_batchnorm 1e-2 dh-pretrain -N "$TMP/bn.net" -e 2 -B 32

# fine-tuning: the lenet of 1 rank and its stage-2 layer; joint training, then the hash layer on features
dh-pretrain -q --arch lenet -e 1 -B 32 -o "$TMP/net.dhm" "$TMP/im.dhs" &&
  dh-feats -q -m "$TMP/net.dhm" "$TMP/im.dhs" > "$TMP/f.dhs" && dh-inithash -q --bits 16 -o "$TMP/h.dhm" "$TMP/f.dhs" ||
  { t_begin mpi_finetune_setup; t_fail "pretrain/feats/inithash"; t_end; }
same mpi_finetune_joint 1e-4 dh-finetune -m "$TMP/net.dhm" --hash "$TMP/h.dhm" -e 2 -B 32
# the classification term: each rank weights its slice by its share of the batch
same mpi_finetune_joint_aux_xent 1e-4 dh-finetune -m "$TMP/net.dhm" --hash "$TMP/h.dhm" -e 2 -B 32 --aux-xent 1
ln -sf "$TMP/f.dhs" "$TMP/in"
same mpi_finetune_features 0 dh-finetune --features --hash "$TMP/h.dhm" -e 2 -B 30

# a checkpoint (rank 0 writes it) and a resume on 2 ranks: the uninterrupted 2-rank model, bit for bit
t_begin mpi_checkpoint_resume
mpi2 dh-pretrain -q --arch lenet -e 2 -B 32 --checkpoint "$TMP/ck.dhm" --stop-after 1 -o "$TMP/r.dhm" "$TMP/im.dhs" \
  > /dev/null 2> "$TMP/err"
[ $? != 0 ] && [ -s "$TMP/ck.dhm" ] && [ ! -e "$TMP/r.dhm" ] || t_fail "--stop-after 1: $(head -c 200 "$TMP/err")"
mpi2 dh-pretrain -q --arch lenet -e 2 -B 32 --resume "$TMP/ck.dhm" -o "$TMP/r.dhm" "$TMP/im.dhs" > /dev/null 2> "$TMP/err" ||
  t_fail "--resume: $(head -c 200 "$TMP/err")"
mpi2 dh-pretrain -q --arch lenet -e 2 -B 32 -o "$TMP/u.dhm" "$TMP/im.dhs" > /dev/null 2> "$TMP/err" || t_fail "uninterrupted"
[ "$T_FAILED" = 0 ] && { cmpm "$TMP/r.dhm" "$TMP/u.dhm" 0 "mpi_checkpoint_resume, resumed vs uninterrupted" || t_fail "resumed != uninterrupted"; }
t_end

# rank 0 alone writes stdout and reports
t_begin mpi_rank0_writes
mpi2 dh-pretrain --arch lenet -e 1 -B 32 "$TMP/im.dhs" > "$TMP/out.dhm" 2> "$TMP/err" || t_fail "exit status: $(head -c 200 "$TMP/err")"
dh-info "$TMP/out.dhm" > "$TMP/info" 2>&1 || t_fail "stdout is not one model: $(head -c 200 "$TMP/info")"
n=$(grep -c 'epoch 1/1' "$TMP/err"); [ "$n" = 1 ] || t_fail "$n epoch reports (one expected)"
grep -q 'on 2 ranks (MPI)' "$TMP/err" || t_fail "no 'on 2 ranks' note"
t_end

# a global batch that does not divide among the ranks: refused, nothing written
for p in pretrain finetune; do
  t_begin "mpi_${p}_batch_must_divide"
  if [ $p = pretrain ]; then
    mpi2 dh-pretrain -q --arch lenet -e 1 -B 31 -o "$TMP/x.dhm" "$TMP/im.dhs" > /dev/null 2> "$TMP/err"
  else
    mpi2 dh-finetune -q -m "$TMP/net.dhm" --hash "$TMP/h.dhm" -e 1 -B 31 -o "$TMP/x.dhm" "$TMP/im.dhs" > /dev/null 2> "$TMP/err"
  fi
  rc=$?
  [ $rc != 0 ] || t_fail "exit 0"
  grep -q "dh-$p: --batch: a batch of 31 does not divide among 2 ranks: give a multiple of 2" "$TMP/err" ||
    t_fail "stderr: $(head -c 300 "$TMP/err")"
  [ ! -e "$TMP/x.dhm" ] || t_fail "a model was written"
  t_end
done
t_done
