#!/usr/bin/env bash
# dh-map: fast path vs rankings path vs a Python textbook reference; JSON,
# bad input (plots: plot.sh).
. "$(dirname "$0")/../lib.sh"
: "${DH_TESTS:=build/rel/tests}"
GEN="$DH_TESTS/test_rank"
PY=/usr/bin/python3
if [ ! -x "$GEN" ]; then t_skip map_cli "no $GEN (test_rank builds the code streams)"; exit 0; fi
if ! $PY -c 'import msgpack, numpy' 2>/dev/null; then t_skip map_cli "python3 msgpack/numpy missing"; exit 0; fi

# Textbook mAP etc. from the codes streams (stable sort, AP by definition).
cat > "$TMP/ref.py" <<'PYEOF'
import sys, json, msgpack, numpy as np
def codes(path):
    u = msgpack.Unpacker(open(path, 'rb'), raw=False)
    hdr = next(u); names = [f['name'] for f in hdr['fields']]
    K = hdr['fields'][names.index('code')]['shape'][0]; nb = (K + 7) // 8
    ch = [o for o in u if 'cols' in o]
    c = np.concatenate([np.frombuffer(o['cols'][names.index('code')], np.uint8).reshape(-1, nb) for o in ch])
    lab = np.concatenate([np.frombuffer(o['cols'][names.index('label')], '<i4') for o in ch])
    return np.unpackbits(c, axis=1, bitorder='little')[:, :K], lab
(qb, ql), (db, dl) = codes(sys.argv[1]), codes(sys.argv[2])
R = int(sys.argv[3]); ks = [int(k) for k in sys.argv[4].split(',')]
res = json.load(open(sys.argv[5]))
aps, apr, pk, p2 = [], [], {k: [] for k in ks}, []
for q, l in zip(qb, ql):
    d = (q[None, :] != db).sum(1)
    o = np.lexsort((np.arange(len(db)), d))
    rel = (dl[o] == l).astype(float)
    cum = np.cumsum(rel); prec = cum / np.arange(1, len(rel) + 1)
    aps.append((prec * rel).sum() / rel.sum() if rel.sum() else 0.0)
    rr = rel[:R]; apr.append((prec[:R] * rr).sum() / rr.sum() if rr.sum() else 0.0)
    for k in ks: pk[k].append(rel[:k].sum() / min(k, len(rel)))
    w = d[o] <= 2; p2.append(rel[w].sum() / w.sum() if w.sum() else 0.0)
def close(a, b, what):
    assert abs(a - b) < 2e-6, (what, a, b)
close(res['mAP'], np.mean(aps), 'mAP')
close(res['mAP_at_R']['value'], np.mean(apr), 'mAP@R')
close(res['precision_at_radius']['value'], np.mean(p2), 'P@r2')
for e in res['precision_at_k']: close(e['precision'], np.mean(pk[e['k']]), 'P@%d' % e['k'])
print('ok')
PYEOF

"$GEN" gen 30 24 4 1 > "$TMP/q24" && "$GEN" gen 400 24 4 2 > "$TMP/db24"
"$GEN" gen 25 65 3 3 flip=3 > "$TMP/q65" && "$GEN" gen 300 65 3 4 flip=3 > "$TMP/db65"
"$GEN" gen 20 5 3 5 flip=2 > "$TMP/q5" && "$GEN" gen 200 5 3 6 flip=2 > "$TMP/db5"

for b in 24 65 5; do
  t_begin "map_fast_path_vs_reference_bits$b"
  dh-map -q --json --at 50 --k 1,10,100 --query "$TMP/q$b" --db "$TMP/db$b" > "$TMP/fast.json" 2>"$TMP/err" || t_fail "dh-map: $(cat "$TMP/err")"
  $PY "$TMP/ref.py" "$TMP/q$b" "$TMP/db$b" 50 1,10,100 "$TMP/fast.json" > "$TMP/out" 2>&1 || t_fail "reference: $(tail -1 "$TMP/out")"
  t_end
  t_begin "map_rankings_path_equals_fast_path_bits$b"
  dh-rank -q --db "$TMP/db$b" < "$TMP/q$b" | dh-map -q --json --at 50 --k 1,10,100 > "$TMP/slow.json" 2>"$TMP/err" || t_fail "dh-rank | dh-map: $(cat "$TMP/err")"
  $PY - "$TMP/fast.json" "$TMP/slow.json" <<'PYEOF' || t_fail "results differ"
import sys, json
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ('mAP', 'mAP_tie_aware', 'queries', 'database', 'bits'):
    assert abs(a[k] - b[k]) < 1e-6, k
assert a['pr_curve'] == b['pr_curve'] and a['precision_at_k'] == b['precision_at_k']
PYEOF
  t_end
done

t_begin map_table_states_rules
dh-map -q --query "$TMP/q24" --db "$TMP/db24" > "$TMP/t" || t_fail "dh-map failed"
grep -q 'relevance: same label' "$TMP/t" && grep -q 'ties in database order' "$TMP/t" && grep -q 'tie-aware' "$TMP/t" &&
grep -q 'without any relevant item' "$TMP/t" && grep -q '^  mAP  *0\.[0-9]' "$TMP/t" || t_fail "table lacks rules or numbers"
t_end

t_begin map_top_cut_rankings_report_na
dh-rank -q --db "$TMP/db24" --top 20 < "$TMP/q24" | dh-map -q --json --at 20 --k 1,10,100 > "$TMP/cut.json" || t_fail "dh-map failed"
$PY - "$TMP/cut.json" "$TMP/fast.json" <<'PYEOF' || t_fail "wrong availability"
import sys, json
c = json.load(open(sys.argv[1]))
assert c['mAP'] is None and c['mAP_at_R']['value'] is not None
pk = {e['k']: e['precision'] for e in c['precision_at_k']}
assert pk[1] is not None and pk[10] is not None and pk[100] is None
PYEOF
t_end

t_begin map_db_from_rankings_metadata
( cd "$TMP" && dh-rank -q --db db24 < q24 | dh-map -q --json > meta.json ) || t_fail "dh-map without --db failed"
t_end

t_begin map_plot_is_dh_plot
dh-map --plot "$TMP/x.png" --query "$TMP/q24" --db "$TMP/db24" > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 2 ] && [ "$(grep -c . "$TMP/err")" = 1 ] && grep -q 'dh-plot -o' "$TMP/err" || t_fail "--plot: exit $rc, '$(cat "$TMP/err")'"
[ -e "$TMP/x.png" ] && t_fail "a file was written"
t_end

t_begin map_help_version
dh-map --help | grep -q -- '--query' && dh-map --version | grep -q dh-map || t_fail "help/version"
t_end

# ---- bad input ----
"$GEN" gen 10 32 3 7 > "$TMP/q32"
"$GEN" gen 10 24 3 8 nolabel > "$TMP/nolab"
"$GEN" gen 10 24 3 8 kind=features > "$TMP/wrongkind"
dh-rank -q --db "$TMP/db24" < "$TMP/nolab" > "$TMP/r_nolab"
dh-rank -q --db "$TMP/db24" < "$TMP/q24" > "$TMP/r24"
head -c 300 "$TMP/r24" > "$TMP/r_trunc"
expect_fail map_bits_mismatch dh-map --query "$TMP/q32" --db "$TMP/db24"
expect_fail map_missing_db_labels dh-map --query "$TMP/q24" --db "$TMP/nolab"
expect_fail map_missing_query_labels dh-map --query "$TMP/nolab" --db "$TMP/db24"
expect_fail map_rankings_without_labels dh-map --db "$TMP/db24" "$TMP/r_nolab"
expect_fail map_codes_as_rankings dh-map --db "$TMP/db24" "$TMP/q24"
expect_fail map_wrong_kind_db dh-map --query "$TMP/q24" --db "$TMP/wrongkind"
expect_fail map_rankings_other_db dh-map --db "$TMP/db65" "$TMP/r24"
expect_fail map_truncated_rankings dh-map --db "$TMP/db24" "$TMP/r_trunc"
expect_fail map_query_without_db dh-map --query "$TMP/q24"
expect_fail map_bad_k dh-map --k 1,x --query "$TMP/q24" --db "$TMP/db24"
expect_fail map_empty_input dh-map --db "$TMP/db24" /dev/null
expect_fail map_db_and_query_stdin sh -c 'dh-map --db - --query - < "$1"' sh "$TMP/db24"
# a write error on stdout: one line (the 'evaluated' note came first)
if [ -c /dev/full ]; then
  expect_fail map_write_error sh -c 'dh-map --query "$1" --db "$2" > /dev/full' sh "$TMP/q24" "$TMP/db24"
fi
t_done
