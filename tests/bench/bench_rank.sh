#!/usr/bin/env bash
# bench_rank.sh — top-100 Hamming search over 1,000,000 random 64-bit codes
# with 10,000 queries: deephash's CPU ranking (bench_rank topk) side by
# side with FAISS IndexBinaryFlat on the same data and machine (Debian's
# python3-faiss, a benchmark-only dependency), checking that both return
# the same distances. Then the programs end to end: dh-map's fast path on
# 10,000 x 50,000 48-bit codes, start-up and I/O included.
set -u
: "${DH_TESTS:=build/rel/tests}" "${DH_BIN:=build/rel/bin}"
B="$DH_TESTS/bench_rank"
[ -x "$B" ] || { echo "bench_rank.sh: no $B"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/dhbench.XXXXXX"); trap 'rm -rf "$T"' EXIT
NQ=${NQ:-10000}; NDB=${NDB:-1000000}
BENCH_DIR=$T "$B" --nq "$NQ" --ndb "$NDB" topk
PY=/usr/bin/python3
if $PY -c 'import faiss' 2>/dev/null; then
  $PY - "$T" "$NQ" "$NDB" <<'PYEOF'
import sys, time, numpy as np, faiss
d, nq, ndb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
q = np.fromfile(d + '/q.u64', np.uint64).view(np.uint8).reshape(nq, 8)
db = np.fromfile(d + '/db.u64', np.uint64).view(np.uint8).reshape(ndb, 8)
index = faiss.IndexBinaryFlat(64)
index.add(db)
c = time.process_time(); t = time.time(); D, I = index.search(q, 100); t = time.time() - t; c = time.process_time() - c
print('BENCH topk100_faiss_IndexBinaryFlat_64bit_%dq_%dk %.0f queries/s  (%.3f s wall, faiss %s, %d threads; %.0f queries per CPU-second)'
      % (nq, ndb // 1000, nq / t, t, faiss.__version__, faiss.omp_get_max_threads(), nq / c))
ours = np.loadtxt(d + '/dh_top.txt', dtype=np.int64).reshape(-1, 100, 3)
n = ours.shape[0]
same_d = np.array_equal(ours[:, :, 2], D[:n])
same_i = np.mean([len(set(ours[i, :, 1]) & set(I[i])) / 100 for i in range(n)])
print('# faiss vs deephash on the first %d queries: distances identical: %s; same ids: %.1f%% (ties at the cut may be broken differently)'
      % (n, 'yes' if same_d else 'NO', 100 * same_i))
PYEOF
else
  echo "BENCH topk100_faiss skipped (python3-faiss not installed: apt-get install python3-faiss)"
fi

# programs end to end (dh-map fast path): codes streams from test_rank gen
G="$DH_TESTS/test_rank"
if [ -x "$G" ] && [ -x "$DH_BIN/dh-map" ]; then
  "$G" gen 10000 48 10 1 flip=4 > "$T/q.codes" && "$G" gen 50000 48 10 2 flip=4 > "$T/db.codes"
  s=$(date +%s.%N)
  "$DH_BIN/dh-map" --device cpu --query "$T/q.codes" --db "$T/db.codes" > "$T/map.txt" 2> "$T/map.err"
  e=$(date +%s.%N)
  echo "BENCH dh-map_fast_path_10000x50000_48bit_cpu $(echo "$e - $s" | bc) s  (whole program; $(sed 's/^dh-map: //' "$T/map.err"); mAP $(awk '$1=="mAP"{print $2}' "$T/map.txt"))"
fi
