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
# tie-aware: exact expectations under random order among equal distances,
# by positions (not the library's harmonic-number form) and math.comb
from math import comb
def group_ap(Nb, Rb, n, m):
    if m == 0: return 0.0
    beta = (m - 1) / (n - 1) if n > 1 else 0.0
    return sum(m / n * (Rb + 1 + (i - 1) * beta) / (Nb + i) for i in range(1, n + 1))
pkt, rkt, aprt = {k: [] for k in ks}, {k: [] for k in ks}, []
for q, l in zip(qb, ql):
    d = (q[None, :] != db).sum(1); rel = dl == l; Rel = rel.sum()
    groups = [((d == g).sum(), (rel & (d == g)).sum()) for g in range(db.shape[1] + 1)]
    def at(k):  # (items before, relevant before, n, m) of the group of rank k, and the sums of the groups before
        Nb = Rb = 0; S = 0.0
        for n, m in groups:
            if Nb + n >= k: return Nb, Rb, n, m, S
            S += group_ap(Nb, Rb, n, m); Nb += n; Rb += m
    for k in ks:
        kk = min(k, len(db)); Nb, Rb, n, m, _ = at(kk); e = Rb + (kk - Nb) * m / n
        pkt[k].append(e / kk); rkt[k].append(e / Rel if Rel else 0.0)
    RR = min(R, len(db)); Nb, Rb, n, m, S = at(RR); t = RR - Nb
    aprt.append(sum(comb(m, x) * comb(n - m, t - x) / comb(n, t) * (S + group_ap(Nb, Rb, t, x)) / (Rb + x)
                    for x in range(max(0, t - (n - m)), min(t, m) + 1) if Rb + x > 0))
close(res['mAP_at_R']['tie_aware'], np.mean(aprt), 'mAP@R tie-aware')
for e in res['precision_at_k']:
    close(e['precision_tie_aware'], np.mean(pkt[e['k']]), 'P@%d tie-aware' % e['k'])
    close(e['recall_tie_aware'], np.mean(rkt[e['k']]), 'R@%d tie-aware' % e['k'])
close(res['precision_at_radius']['tie_aware'], res['precision_at_radius']['value'], 'P@r2 is order-free')
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
assert a['mAP_at_R'] == b['mAP_at_R'] and a['precision_at_radius'] == b['precision_at_radius']
PYEOF
  t_end
done

t_begin map_table_states_rules
dh-map -q --query "$TMP/q24" --db "$TMP/db24" > "$TMP/t" || t_fail "dh-map failed"
grep -q 'relevance: same label' "$TMP/t" && grep -q 'ties in database order' "$TMP/t" && grep -q 'tie-aware' "$TMP/t" &&
grep -q 'without any relevant item' "$TMP/t" && grep -qE '^  mAP  *0\.[0-9]{4}  *0\.[0-9]{4}$' "$TMP/t" &&
grep -qE '^  mAP@1000  *0\.[0-9]{4}  *0\.[0-9]{4}$' "$TMP/t" &&
grep -qE '^ +1( +[01]\.[0-9]{4}){4}$' "$TMP/t" || t_fail "table lacks rules or numbers: $(head -12 "$TMP/t")"
t_end

# the queries' codes on standard input (or as the input file) with --db: the fast path
t_begin map_codes_input_is_the_fast_path
dh-map -q --json --query "$TMP/q24" --db "$TMP/db24" > "$TMP/fq.json" &&
dh-map -q --json -D "$TMP/db24" < "$TMP/q24" > "$TMP/fs.json" &&
dh-map -q --json -D "$TMP/db24" "$TMP/q24" > "$TMP/ff.json" || t_fail "dh-map failed"
$PY - "$TMP/fq.json" "$TMP/fs.json" "$TMP/ff.json" <<'PYEOF' || t_fail "results differ"
import sys, json
a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
assert b['label'] == '<stdin>' and c['label'].endswith('q24')
for x in (b, c):
    for k in ('mAP', 'mAP_tie_aware', 'mAP_at_R', 'precision_at_k', 'pr_curve', 'queries'):
        assert a[k] == x[k], k
PYEOF
t_end

# a class-sorted database (as dh-ingest writes one): the database-order P@1
# depends on the storage order, the tie-aware values do not
t_begin map_tie_aware_class_sorted_vs_shuffled
"$GEN" gen 40 6 4 11 flip=2 > "$TMP/qs" && "$GEN" gen 600 6 4 12 flip=2 sorted > "$TMP/dbsorted" &&
"$GEN" gen 600 6 4 12 flip=2 > "$TMP/dbshuf" || t_fail "gen"
dh-map -q --json --at 50 -D "$TMP/dbsorted" "$TMP/qs" > "$TMP/cs.json" &&
dh-map -q --json --at 50 -D "$TMP/dbshuf" "$TMP/qs" > "$TMP/cu.json" || t_fail "dh-map failed"
$PY - "$TMP/cs.json" "$TMP/cu.json" <<'PYEOF' || t_fail "tie-aware values depend on the database order"
import sys, json
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def close(x, y, w): assert abs(x - y) < 2e-6, (w, x, y)
close(a['mAP_tie_aware'], b['mAP_tie_aware'], 'mAP')
close(a['mAP_at_R']['tie_aware'], b['mAP_at_R']['tie_aware'], 'mAP@R')
for x, y in zip(a['precision_at_k'], b['precision_at_k']):
    close(x['precision_tie_aware'], y['precision_tie_aware'], 'P@%d' % x['k'])
    close(x['recall_tie_aware'], y['recall_tie_aware'], 'R@%d' % x['k'])
print('# P@1 database order: class-sorted %.4f, shuffled %.4f; tie-aware %.4f'
      % (a['precision_at_k'][0]['precision'], b['precision_at_k'][0]['precision'], a['precision_at_k'][0]['precision_tie_aware']))
PYEOF
t_end

# the option grammar: -D is the database, -d the device, -o an atomic output
t_begin map_option_grammar
dh-map -q -d cpu -D "$TMP/db24" -o "$TMP/out.txt" "$TMP/q24" > "$TMP/stdout" || t_fail "-d cpu -D -o"
[ -s "$TMP/out.txt" ] && [ ! -s "$TMP/stdout" ] && grep -q '^  mAP ' "$TMP/out.txt" || t_fail "-o: the report is not in the file"
dh-map -d "$TMP/db24" "$TMP/q24" > /dev/null 2> "$TMP/err"; rc=$?
[ $rc = 2 ] && [ "$(cat "$TMP/err")" = "dh-map: -d is --device in deephash; the database is -D (--db)" ] ||
  t_fail "-d PATH: exit $rc, '$(cat "$TMP/err")'"
dh-map -q -D "$TMP/db24" -o "$TMP/bad.txt" "$TMP/nolab" 2> /dev/null && t_fail "unlabelled queries accepted"
[ -e "$TMP/bad.txt" ] && t_fail "a failed run left its -o file"
ls "$TMP"/*.tmp* > /dev/null 2>&1 && t_fail "temporary file left"
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
"$GEN" gen 400 24 4 2 unlabelled=17 > "$TMP/db24u"
"$GEN" gen 30 24 4 1 unlabelled=3 > "$TMP/q24u"
dh-rank -q -D "$TMP/db24" < "$TMP/q24u" > "$TMP/r_q24u"
dh-rank -q --db "$TMP/db24" < "$TMP/nolab" > "$TMP/r_nolab"
dh-rank -q --db "$TMP/db24" < "$TMP/q24" > "$TMP/r24"
head -c 300 "$TMP/r24" > "$TMP/r_trunc"
expect_fail map_bits_mismatch dh-map --query "$TMP/q32" --db "$TMP/db24"
expect_fail map_missing_db_labels dh-map --query "$TMP/q24" --db "$TMP/nolab"
expect_fail map_missing_query_labels dh-map --query "$TMP/nolab" --db "$TMP/db24"
expect_fail map_rankings_without_labels dh-map --db "$TMP/db24" "$TMP/r_nolab"
expect_fail map_codes_without_db dh-map "$TMP/q24"
expect_fail map_codes_stdin_without_db sh -c 'dh-map < "$1"' sh "$TMP/q24"
expect_fail map_unlabelled_db_row dh-map --query "$TMP/q24" --db "$TMP/db24u"
expect_fail map_unlabelled_query_row dh-map -D "$TMP/db24" "$TMP/q24u"
expect_fail map_rankings_unlabelled_query dh-map --db "$TMP/db24" "$TMP/r_q24u"
expect_fail map_d_is_device dh-map -d "$TMP/db24" "$TMP/q24"
expect_fail map_output_dir_missing dh-map -o "$TMP/no/such/dir/x.txt" --query "$TMP/q24" --db "$TMP/db24"
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
