#!/usr/bin/env bash
# bench_mih.sh — multi-index hashing (dh-rank --method mih) against the
# linear scan and against FAISS's IndexBinaryMultiHash, same codes, same
# machine, one thread each (CPU seconds: on a loaded machine wall time
# overstates the cost, CPU time does not).
#
#   NDB=1000000 NQ=1000 BITS=64,128 KINDS=random,clustered NFLIPS=0,1,2 tests/bench/bench_mih.sh
#
# bench_mih (tests/bench/bench_mih.c) prints MIH vs the scan (identical
# results checked) for k = 1, 10, 100 and writes the codes and its top-k;
# then FAISS's multi-hash index (Debian's python3-faiss, a benchmark-only
# dependency: tools/install-deps --bench) with the same substrings (M tables
# of K/M bits) searches them with nflip = 0, 1, 2 (buckets within nflip
# bits of the query's substring: approximate), and each line says how many
# queries got the exact k nearest distances. Then the programs end to end:
# dh-index and dh-rank --index against dh-rank's scan, start-up and I/O
# included. The load of the machine is printed first.
set -u
: "${DH_TESTS:=build/rel/tests}" "${DH_BIN:=build/rel/bin}"
B="$DH_TESTS/bench_mih"
[ -x "$B" ] || { echo "bench_mih.sh: no $B"; exit 0; }
NDB=${NDB:-1000000}; NQ=${NQ:-1000}; BITS=${BITS:-64,128}; KINDS=${KINDS:-random,clustered}; NFLIPS=${NFLIPS:-0,1,2}
T=$(mktemp -d "${TMPDIR:-/tmp}/dhbench.XXXXXX"); trap 'rm -rf "$T"' EXIT
echo "# load: $(uptime | sed 's/.*load average/load average/'), $(nproc) cores"
"$B" --ndb "$NDB" --nq "$NQ" --bits "$BITS" --kind "$KINDS" --threads 1 --dir "$T"
PY=/usr/bin/python3
if $PY -c 'import faiss' 2>/dev/null; then
  $PY - "$T" "$NDB" "$NQ" "$BITS" "$KINDS" "$NFLIPS" <<'PYEOF'
import sys, time, numpy as np, faiss
d, ndb, nq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
faiss.omp_set_num_threads(1)
for bits in [int(b) for b in sys.argv[4].split(',')]:
    W = bits // 8
    for kind in sys.argv[5].split(','):
        try:
            db = np.fromfile('%s/%d-%s-db.u64' % (d, bits, kind), np.uint64).view(np.uint8).reshape(ndb, W)
            q = np.fromfile('%s/%d-%s-q.u64' % (d, bits, kind), np.uint64).view(np.uint8).reshape(nq, W)
        except (FileNotFoundError, ValueError):
            continue
        m = 4 if bits == 64 else 8
        c = time.process_time()
        index = faiss.IndexBinaryMultiHash(bits, m, bits // m)
        index.add(db)
        build = time.process_time() - c
        for k in (1, 10, 100):
            ours = np.loadtxt('%s/%d-%s-top%d.txt' % (d, bits, kind, k), dtype=np.int64).reshape(nq, k, 3)
            for nflip in [int(x) for x in sys.argv[6].split(',')]:
                index.nflip = nflip
                c = time.process_time(); t = time.time()
                D, I = index.search(q, k)
                c = time.process_time() - c; t = time.time() - t
                D = np.where(I < 0, 1 << 20, D)
                exact = np.mean(np.all(D == ours[:, :, 2], axis=1))
                print('BENCH faiss_multihash_top%d_%dbit_%s_%dk_nflip%d %.0f queries/CPU-s  (%d tables of %d bits, '
                      'faiss %s, 1 thread, add %.2f CPU-s; exact k nearest distances for %.1f%% of queries; wall %.3f s)'
                      % (k, bits, kind, ndb // 1000, nflip, nq / c, m, bits // m, faiss.__version__, build,
                         100 * exact, t))
                sys.stdout.flush()
PYEOF
else
  echo "BENCH faiss_multihash skipped (python3-faiss not installed: apt-get install python3-faiss)"
fi

# the programs end to end, one thread: dh-index, dh-rank --index vs dh-rank's scan
G="$DH_TESTS/test_rank"
if [ -x "$G" ] && [ -x "$DH_BIN/dh-rank" ] && [ -x "$DH_BIN/dh-index" ]; then
  PNQ=${PNQ:-10000}
  "$G" gen "$NDB" 64 500 1 flip=16 > "$T/db.codes" && "$G" gen "$PNQ" 64 500 2 flip=16 > "$T/q.codes"
  cpu() { /usr/bin/time -f '%U %S' -o "$T/time" "$@" && awk '{printf "%.3f", $1 + $2}' "$T/time"; }
  ti=$(cpu "$DH_BIN/dh-index" -q -j 1 -o "$T/db.mih" "$T/db.codes")
  ts=$(cpu "$DH_BIN/dh-rank" -q -j 1 -D "$T/db.codes" -k 100 -o "$T/rs.dhs" "$T/q.codes")
  tm=$(cpu "$DH_BIN/dh-rank" -q -j 1 -D "$T/db.codes" -I "$T/db.mih" -k 100 -o "$T/rm.dhs" "$T/q.codes")
  tb=$(cpu "$DH_BIN/dh-rank" -q -j 1 -D "$T/db.codes" -M mih -k 100 -o "$T/rb.dhs" "$T/q.codes")
  same=no; $PY - "$T" <<'PYEOF' && same=yes
import sys, msgpack
def data(p):
    u = msgpack.Unpacker(open(p, 'rb'), raw=False, max_buffer_size=1 << 30); next(u)
    return [o['cols'][3:] for o in u if 'cols' in o]
sys.exit(0 if data(sys.argv[1] + '/rs.dhs') == data(sys.argv[1] + '/rm.dhs') == data(sys.argv[1] + '/rb.dhs') else 1)
PYEOF
  echo "BENCH programs_top100_64bit_clustered_${NDB}x${PNQ} dh-rank --index ${tm} CPU-s, scan ${ts} CPU-s, --method mih (index built in memory) ${tb} CPU-s, dh-index ${ti} CPU-s  (whole programs, one thread, reading the codes included; 500 centres, 1 bit in 16 flipped; identical rankings: $same)"
fi
