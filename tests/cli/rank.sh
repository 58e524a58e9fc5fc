#!/usr/bin/env bash
# dh-rank: rankings against a Python brute-force reference, options, bad input.
. "$(dirname "$0")/../lib.sh"
: "${DH_TESTS:=build/rel/tests}"
GEN="$DH_TESTS/test_rank"
PY=/usr/bin/python3
if [ ! -x "$GEN" ]; then t_skip rank_cli "no $GEN (test_rank builds the code streams)"; exit 0; fi
if ! $PY -c 'import msgpack, numpy' 2>/dev/null; then t_skip rank_cli "python3 msgpack/numpy missing"; exit 0; fi

# A reader of the stream format in a few lines of Python, and a brute-force
# ranking: stable sort by (distance, database position).
cat > "$TMP/ref.py" <<'PYEOF'
import sys, msgpack, numpy as np
def read(path):
    u = msgpack.Unpacker(open(path, 'rb'), raw=False, max_buffer_size=1 << 30)
    hdr = next(u); rows = []; end = None
    for o in u:
        if o.get('end'): end = o; continue
        rows.append(o)
    assert end is not None, 'no trailer'
    return hdr, rows
def codes(path):
    hdr, chunks = read(path)
    names = [f['name'] for f in hdr['fields']]
    K = hdr['fields'][names.index('code')]['shape'][0]; nb = (K + 7) // 8
    c = np.concatenate([np.frombuffer(ch['cols'][names.index('code')], np.uint8).reshape(-1, nb) for ch in chunks])
    bits = np.unpackbits(c, axis=1, bitorder='little')[:, :K]
    return bits
def rankings(path):
    hdr, chunks = read(path)
    names = [f['name'] for f in hdr['fields']]
    out = []
    for ch in chunks:
        n = ch['rows']
        def var(name, dt):
            b = ch['cols'][names.index(name)]
            lens = np.frombuffer(b[:4 * n], '<u4'); data = np.frombuffer(b[4 * n:], dt)
            offs = [0] + [int(x) for x in np.cumsum(lens)]
            return [data[offs[i]:offs[i + 1]] for i in range(n)]
        q = np.frombuffer(ch['cols'][names.index('query')], '<i8')
        for i, (ix, d) in enumerate(zip(var('idx', '<i8'), var('dist', '<i4'))):
            out.append((int(q[i]), ix, d))
    return hdr, out
if sys.argv[1] == 'dump':
    for qi, ix, d in rankings(sys.argv[2])[1]: print(qi, list(ix), list(d))
    sys.exit(0)
qb, db = codes(sys.argv[1]), codes(sys.argv[2])
top = sys.argv[4]; radius = int(sys.argv[5])
hdr, got = rankings(sys.argv[3])
assert hdr['kind'] == 'rankings'
assert len(got) == len(qb), (len(got), len(qb))
for qi, ix, d in got:
    dist = (qb[qi][None, :] != db).sum(1)
    order = np.lexsort((np.arange(len(db)), dist))
    if radius >= 0: order = order[dist[order] <= radius]
    if top != 'all': order = order[:int(top)]
    assert np.array_equal(order, ix), (qi, order[:10], ix[:10])
    assert np.array_equal(dist[order], d), qi
print('ok')
PYEOF

"$GEN" gen 40 48 5 1 > "$TMP/q48" && "$GEN" gen 300 48 5 2 > "$TMP/db48"
"$GEN" gen 30 7 3 3 > "$TMP/q7" && "$GEN" gen 200 7 3 4 > "$TMP/db7"
"$GEN" gen 30 65 3 5 > "$TMP/q65" && "$GEN" gen 200 65 3 6 > "$TMP/db65"

for spec in "48 10 -1" "48 all -1" "48 all 8" "7 3 -1" "7 all 1" "65 25 -1" "65 7 20"; do
  set -- $spec
  t_begin "rank_vs_reference_bits$1_top$2_radius$3"
  args="--top $2"; [ "$3" -ge 0 ] && args="$args --radius $3"
  if dh-rank -q --db "$TMP/db$1" $args < "$TMP/q$1" > "$TMP/r" 2>"$TMP/err"; then
    $PY "$TMP/ref.py" "$TMP/q$1" "$TMP/db$1" "$TMP/r" "$2" "$3" > "$TMP/out" 2>&1 || t_fail "reference: $(tail -1 "$TMP/out")"
  else t_fail "dh-rank failed: $(cat "$TMP/err")"; fi
  t_end
done

t_begin rank_threads_and_batches_agree
dh-rank -q --db "$TMP/db48" --top 17 -j 1 --batch 3 < "$TMP/q48" > "$TMP/r1" &&
dh-rank -q --db "$TMP/db48" --top 17 -j 2 < "$TMP/q48" > "$TMP/r2" || t_fail "dh-rank failed"
$PY "$TMP/ref.py" dump "$TMP/r1" > "$TMP/d1" && $PY "$TMP/ref.py" dump "$TMP/r2" > "$TMP/d2" &&
  [ -s "$TMP/d1" ] && cmp -s "$TMP/d1" "$TMP/d2" || t_fail "outputs differ"
t_end

t_begin rank_query_file_argument
dh-rank -q --db "$TMP/db7" --top 3 "$TMP/q7" > "$TMP/r" && $PY "$TMP/ref.py" "$TMP/q7" "$TMP/db7" "$TMP/r" 3 -1 >/dev/null 2>&1 || t_fail "positional query file"
t_end

# the option grammar: -D is the database, -d the device, -B the batch, -o an atomic output
t_begin rank_option_grammar
dh-rank -q -D "$TMP/db48" -d cpu -B 4 -k 9 -o "$TMP/ro.dhs" "$TMP/q48" > "$TMP/stdout" || t_fail "-D -d -B -k -o"
[ ! -s "$TMP/stdout" ] && $PY "$TMP/ref.py" "$TMP/q48" "$TMP/db48" "$TMP/ro.dhs" 9 -1 > /dev/null 2>&1 || t_fail "-o: rankings wrong or on stdout"
dh-rank -q --db "$TMP/db48" --device cpu --batch 4 --top 9 "$TMP/q48" | cmp -s - "$TMP/ro.dhs" && t_fail "metadata should name the command"
dh-rank -d "$TMP/db48" "$TMP/q48" > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 2 ] && [ "$(cat "$TMP/err")" = "dh-rank: -d is --device in deephash; the database is -D (--db)" ] ||
  t_fail "-d PATH: exit $rc, '$(cat "$TMP/err")'"
dh-rank -D "$TMP/db48" -d tpu "$TMP/q48" > /dev/null 2>&1; rc=$?
[ $rc = 2 ] || t_fail "-d tpu: exit $rc"
t_end

t_begin rank_help_version
dh-rank --help > "$TMP/h" 2>&1 && grep -q -- '--top' "$TMP/h" && dh-rank --version | grep -q 'dh-rank' || t_fail "help/version"
t_end

# ---- bad input ----
"$GEN" gen 10 32 3 7 > "$TMP/q32"
"$GEN" gen 10 48 3 8 kind=features > "$TMP/wrongkind"
"$GEN" gen 5 48 3 9 > "$TMP/db5"
head -c 100 "$TMP/q48" > "$TMP/trunc"
expect_fail rank_bits_mismatch dh-rank --db "$TMP/db48" "$TMP/q32"
expect_fail rank_wrong_kind_queries dh-rank --db "$TMP/db48" "$TMP/wrongkind"
expect_fail rank_wrong_kind_db dh-rank --db "$TMP/wrongkind" "$TMP/q48"
expect_fail rank_top_larger_than_db dh-rank --db "$TMP/db5" --top 6 "$TMP/q48"
expect_fail rank_no_db dh-rank "$TMP/q48"
expect_fail rank_missing_db_file dh-rank --db "$TMP/nonexistent" "$TMP/q48"
expect_fail rank_bad_top dh-rank --db "$TMP/db48" --top -3 "$TMP/q48"
expect_fail rank_bad_radius dh-rank --db "$TMP/db48" --radius x "$TMP/q48"
expect_fail rank_bad_device dh-rank --db "$TMP/db48" --device tpu "$TMP/q48"
expect_fail rank_d_is_device dh-rank -d "$TMP/db48" "$TMP/q48"
expect_fail rank_bad_batch dh-rank -D "$TMP/db48" -B 0 "$TMP/q48"
expect_fail rank_truncated_queries dh-rank --db "$TMP/db48" "$TMP/trunc"
expect_fail rank_not_a_stream dh-rank --db "$TMP/db48" /etc/passwd
expect_fail rank_empty_input dh-rank --db "$TMP/db48" /dev/null
# --db - with the queries on standard input too: was "<stdin>: empty input"
expect_fail rank_db_and_queries_stdin sh -c 'dh-rank --db - < "$1"' sh "$TMP/db48"

t_begin rank_exit_status_usage
dh-rank --db "$TMP/db5" --top 6 "$TMP/q48" >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || t_fail "--top too large: exit $rc, want 2"
dh-rank --db "$TMP/db48" "$TMP/q32" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || t_fail "bits mismatch: exit $rc, want 1"
t_end

# a failure in the middle leaves an output without a trailer
t_begin rank_failure_leaves_no_trailer
cat "$TMP/q48" "$TMP/trunc" > "$TMP/qbad"
dh-rank -q --db "$TMP/db48" "$TMP/qbad" > "$TMP/rbad" 2>/dev/null && t_fail "exit 0 on a damaged input"
$PY - "$TMP/rbad" <<'PYEOF' || t_fail "the output has a trailer"
import sys, msgpack
objs = list(msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False))
assert not any(isinstance(o, dict) and o.get('end') for o in objs)
PYEOF
t_end
t_begin rank_output_failure_leaves_no_file
cat "$TMP/q48" "$TMP/trunc" > "$TMP/qbad2"
dh-rank -q -D "$TMP/db48" -o "$TMP/rfail.dhs" "$TMP/qbad2" 2> /dev/null && t_fail "exit 0 on a damaged input"
[ -e "$TMP/rfail.dhs" ] && t_fail "-o left a file"
ls "$TMP"/*.tmp* > /dev/null 2>&1 && t_fail "temporary file left"
t_end

# ---- multi-index hashing: --method mih, dh-index, --index ----
"$GEN" gen 3000 64 40 11 flip=12 > "$TMP/dbm" && "$GEN" gen 30 64 40 12 flip=12 > "$TMP/qm"
for spec in "48 10 -1" "48 all 8" "7 3 -1" "65 25 -1" "65 7 20"; do
  set -- $spec
  t_begin "rank_mih_vs_reference_bits$1_top$2_radius$3"
  args="--top $2"; [ "$3" -ge 0 ] && args="$args --radius $3"
  if dh-rank -q -M mih --db "$TMP/db$1" $args < "$TMP/q$1" > "$TMP/r" 2>"$TMP/err"; then
    $PY "$TMP/ref.py" "$TMP/q$1" "$TMP/db$1" "$TMP/r" "$2" "$3" > "$TMP/out" 2>&1 || t_fail "reference: $(tail -1 "$TMP/out")"
  else t_fail "dh-rank failed: $(cat "$TMP/err")"; fi
  t_end
done
t_begin rank_mih_index_same_rankings
dh-index -q -o "$TMP/dbm.mih" "$TMP/dbm" && dh-index -q -t 3 -D "$TMP/dbm" > "$TMP/dbm3.mih" || t_fail "dh-index"
for args in "-k 1" "-k 10" "-k 100" "-r 6" "-k 5 -r 9"; do
  dh-rank -q -D "$TMP/dbm" $args "$TMP/qm" > "$TMP/rs" &&
  dh-rank -q -D "$TMP/dbm" -I "$TMP/dbm.mih" $args "$TMP/qm" > "$TMP/ri" &&
  dh-rank -q -D "$TMP/dbm" -I "$TMP/dbm3.mih" -j 1 $args "$TMP/qm" > "$TMP/ri3" &&
  dh-rank -q -D "$TMP/dbm" -M mih -t 6 $args "$TMP/qm" > "$TMP/rm" || t_fail "dh-rank $args"
  $PY "$TMP/ref.py" dump "$TMP/rs" > "$TMP/ds"
  for r in ri ri3 rm; do $PY "$TMP/ref.py" dump "$TMP/$r" | cmp -s - "$TMP/ds" || t_fail "$r $args differs from the scan"; done
  [ -s "$TMP/ds" ] || t_fail "empty rankings"
done
$PY "$TMP/ref.py" "$TMP/qm" "$TMP/dbm" "$TMP/ri" 5 9 > /dev/null 2>&1 || t_fail "not the reference"
# the index depends only on the database and the table count
dh-index -q -j 1 -o "$TMP/dbm-again.mih" "$TMP/dbm" && cmp -s "$TMP/dbm.mih" "$TMP/dbm-again.mih" || t_fail "not reproducible"
t_end
# a damaged, truncated or mismatched index: one line, exit 1, never a crash
cp "$TMP/dbm.mih" "$TMP/flip.mih"; printf '\x01' | dd of="$TMP/flip.mih" bs=1 seek=5000 conv=notrunc 2>/dev/null
head -c 4000 "$TMP/dbm.mih" > "$TMP/short.mih"
"$GEN" gen 3000 64 40 13 flip=12 > "$TMP/dbm-other"
expect_fail rank_index_damaged dh-rank -D "$TMP/dbm" -I "$TMP/flip.mih" "$TMP/qm"
expect_fail rank_index_truncated dh-rank -D "$TMP/dbm" -I "$TMP/short.mih" "$TMP/qm"
expect_fail rank_index_other_db dh-rank -D "$TMP/dbm-other" -I "$TMP/dbm.mih" "$TMP/qm"
expect_fail rank_index_other_size dh-rank -D "$TMP/db48" -I "$TMP/dbm.mih" "$TMP/q48"
expect_fail rank_index_not_an_index dh-rank -D "$TMP/dbm" -I "$TMP/dbm" "$TMP/qm"
expect_fail rank_index_missing dh-rank -D "$TMP/dbm" -I "$TMP/nonexistent.mih" "$TMP/qm"
expect_fail rank_index_not_a_file dh-rank -D "$TMP/dbm" -I /dev/null "$TMP/qm"
t_begin rank_index_errors_exit_status
dh-rank -D "$TMP/dbm-other" -I "$TMP/dbm.mih" "$TMP/qm" > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 1 ] && grep -q "built for another database" "$TMP/err" || t_fail "other database: exit $rc, $(cat "$TMP/err")"
dh-rank -D "$TMP/dbm" -I "$TMP/flip.mih" "$TMP/qm" > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 1 ] && grep -q "damaged" "$TMP/err" || t_fail "damaged: exit $rc, $(cat "$TMP/err")"
t_end
expect_fail rank_mih_on_cuda dh-rank -D "$TMP/dbm" -M mih -d cuda "$TMP/qm"
expect_fail rank_index_with_scan dh-rank -D "$TMP/dbm" -M scan -I "$TMP/dbm.mih" "$TMP/qm"
expect_fail rank_tables_with_index dh-rank -D "$TMP/dbm" -I "$TMP/dbm.mih" -t 3 "$TMP/qm"
expect_fail rank_tables_without_mih dh-rank -D "$TMP/dbm" -t 3 "$TMP/qm"
expect_fail rank_bad_method dh-rank -D "$TMP/dbm" -M tree "$TMP/qm"
expect_fail rank_tables_too_few dh-rank -D "$TMP/dbm" -M mih -t 2 "$TMP/qm"
expect_fail index_tables_too_few dh-index -t 2 -o "$TMP/x.mih" "$TMP/dbm"
expect_fail index_not_codes dh-index -o "$TMP/x.mih" "$TMP/wrongkind"
expect_fail index_truncated_db dh-index -o "$TMP/x.mih" "$TMP/trunc"
expect_fail index_db_twice dh-index -D "$TMP/dbm" -o "$TMP/x.mih" "$TMP/dbm"
t_begin index_no_output_on_failure
[ ! -e "$TMP/x.mih" ] || t_fail "a file was left"
t_end

t_done
