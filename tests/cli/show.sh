#!/usr/bin/env bash
# tests/cli/show.sh — dh-show: rankings as text (checked against a numpy
# ranking), as a PNG contact sheet (read back with dh-ingest: the frames'
# colours counted), as HTML (the inlined images decoded), images streams as
# PNG files (read back identical); unlabelled queries passed through
# dh-encode and dh-rank; bad inputs.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import numpy, msgpack' 2>/dev/null; then
  t_skip show "needs /usr/bin/python3 with numpy and msgpack"; exit 0
fi
# 40 database and 5 query images (1x8x8 grey, 4 classes) and their 16-bit
# codes (the class pattern with bits flipped at random); grey pixels below
# 200, so that no image pixel has a frame's colour
$PY - "$TMP" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]; r = np.random.default_rng(5)
def make(n, name):
    y = r.integers(0, 4, n).astype('<i4')
    px = r.integers(0, 200, (n, 1, 8, 8)).astype('u1')
    base = np.array([[(c >> (k % 4)) & 1 for k in range(16)] for c in (3, 5, 10, 12)], 'u1')
    code = base[y] ^ (r.random((n, 16)) < 0.2).astype('u1')
    np.save(t + '/%s-px.npy' % name, px); np.save(t + '/%s-y.npy' % name, y); np.save(t + '/%s-code.npy' % name, code)
make(40, 'db'); make(5, 'q')
PYEOF
for s in db q; do
  dh-npy import -q --kind images --field pixels --labels "$TMP/$s-y.npy" "$TMP/$s-px.npy" > "$TMP/$s.dhs"
  dh-npy import -q --kind codes --field code --bits --labels "$TMP/$s-y.npy" "$TMP/$s-code.npy" > "$TMP/$s.codes"
done
dh-npy import -q --kind codes --field code --bits "$TMP/q-code.npy" > "$TMP/qu.codes"   # no labels
dh-npy import -q --kind images --field pixels "$TMP/q-px.npy" > "$TMP/qu.dhs"
(cd "$TMP" && dh-rank -q --db db.codes --top 6 < q.codes > r.dhs && dh-rank -q --db db.codes --top 6 < qu.codes > ru.dhs) ||
  { t_begin fixture; t_fail "dh-rank"; t_end; exit 1; }

t_begin help_version
dh-show --help | grep -q -- '--query' || t_fail "--help"
dh-show --version | grep -q '^dh-show (deephash) ' || t_fail "--version"
t_end

# the expected ranking: distance, then database row (stable), top 6
$PY - "$TMP" > "$TMP/want.tsv" <<'PYEOF'
import sys, numpy as np
t = sys.argv[1]
dc, dy = np.load(t + '/db-code.npy'), np.load(t + '/db-y.npy')
qc, qy = np.load(t + '/q-code.npy'), np.load(t + '/q-y.npy')
print('query\tquery_id\trank\tdb\tdb_id\tdist\trelevant')
for i in range(len(qc)):
    d = (dc != qc[i]).sum(1); o = np.argsort(d, kind='stable')[:6]
    for k, j in enumerate(o):
        print('%d\t%d\t%d\t%d\t%d\t%d\t%d' % (i, i, k + 1, j, j, d[j], int(dy[j] == qy[i])))
PYEOF

t_begin tsv_matches_numpy
(cd "$TMP" && dh-show -f tsv r.dhs) > "$TMP/got.tsv" 2> "$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
cmp -s "$TMP/got.tsv" "$TMP/want.tsv" || t_fail "differs: $(diff "$TMP/got.tsv" "$TMP/want.tsv" | head -3)"
# the database's ids from its images stream give the same; -k, -n cut
dh-show -f tsv --db "$TMP/db.dhs" "$TMP/r.dhs" | cmp -s - "$TMP/want.tsv" || t_fail "--db images"
[ "$(dh-show -f tsv -k 2 -n 3 --db "$TMP/db.codes" "$TMP/r.dhs" | wc -l)" = 7 ] || t_fail "-k 2 -n 3"
t_end

t_begin jsonl_matches_tsv
dh-show -f jsonl --db "$TMP/db.codes" -o "$TMP/got.jsonl" "$TMP/r.dhs" || t_fail "exit status"
$PY - "$TMP" <<'PYEOF' || t_fail "jsonl differs from tsv"
import sys, json
t = sys.argv[1]
rows = [l.rstrip('\n').split('\t') for l in open(t + '/want.tsv')][1:]
js = [json.loads(l) for l in open(t + '/got.jsonl')]
assert len(js) == len(rows)
for j, r in zip(js, rows):
    assert [j['query'], j['query_id'], j['rank'], j['db'], j['db_id'], j['dist'], j['relevant']] == \
        [int(r[0]), r[1], int(r[2]), int(r[3]), r[4], int(r[5]), r[6] == '1'], (j, r)
PYEOF
t_end

# colour counts of a PNG read back by dh-ingest: "green=N red=N blue=N grey=N w=W h=H"
cat > "$TMP/colours.py" <<'EOF'
import sys, msgpack, numpy as np
u = msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False); h = next(u); o = next(u)
C, H, W = h['fields'][0]['shape']; p = np.frombuffer(o['cols'][0], 'u1').reshape(C, H, W)
def n(c): return int(((p[0] == c[0]) & (p[1] == c[1]) & (p[2] == c[2])).sum())
print('green=%d red=%d blue=%d grey=%d w=%d h=%d' % (n((0, 170, 60)), n((225, 30, 30)), n((30, 90, 220)),
      n((215, 215, 215)), W, H))
EOF
colours() { dh-ingest -q "$1" > "$TMP/sheet.dhs" && $PY "$TMP/colours.py" "$TMP/sheet.dhs"; }
frame=$(( 72 * 72 - 64 * 64 ))   # 8x8 images at --scale 8: 64x64, frames 4 thick
t_begin png_contact_sheet
dh-show --query "$TMP/q.dhs" --db "$TMP/db.dhs" -n 3 -k 5 --scale 8 -o "$TMP/s.png" "$TMP/r.dhs" 2> "$TMP/e" ||
  t_fail "exit: $(cat "$TMP/e")"
[ "$(head -c 8 "$TMP/s.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || t_fail "not a PNG"
c=$(colours "$TMP/s.png")
rel=$(awk -F'\t' 'NR > 1 && $1 < 3 && $3 <= 5 && $7 == 1' "$TMP/want.tsv" | wc -l)
[ "$rel" -gt 0 ] && [ "$rel" -lt 15 ] || t_fail "fixture: $rel relevant of 15"
echo "$c" | grep -q "green=$(( rel * frame )) red=$(( (15 - rel) * frame )) blue=$(( 3 * frame )) " ||
  t_fail "frames: $c, want $rel green and $((15 - rel)) red of $frame pixels, 3 blue"
grep -q "showing the first 3 of 5 queries" "$TMP/e" || t_fail "no note on the queries left out"
# another -n and -k give another size
c2=$(dh-show --query "$TMP/q.dhs" --db "$TMP/db.dhs" -q -n 5 -k 2 --scale 8 "$TMP/r.dhs" > "$TMP/s2.png" && colours "$TMP/s2.png")
echo "$c2" | grep -q "blue=$(( 5 * frame )) " || t_fail "-n 5: $c2"
[ "$(echo "$c" | sed 's/.* h=//')" -lt "$(echo "$c2" | sed 's/.* h=//')" ] || t_fail "height: $c / $c2"
t_end

t_begin png_unlabelled_queries_grey_frames
dh-show --query "$TMP/qu.dhs" --db "$TMP/db.dhs" -q -n 2 -k 3 --scale 8 "$TMP/ru.dhs" > "$TMP/su.png" || t_fail "exit status"
colours "$TMP/su.png" | grep -q "green=0 red=0 blue=$(( 2 * frame )) grey=$(( 6 * frame )) " || t_fail "$(colours "$TMP/su.png")"
dh-show -f tsv --db "$TMP/db.codes" -n 1 -k 1 "$TMP/ru.dhs" | tail -n 1 | grep -q $'\t$' || t_fail "relevant not empty"
t_end

t_begin html_self_contained
dh-show --query "$TMP/q.dhs" --db "$TMP/db.dhs" -q -n 2 -k 4 -o "$TMP/s.html" "$TMP/r.dhs" || t_fail "exit status"
[ "$(grep -o '<img ' "$TMP/s.html" | wc -l)" = 10 ] || t_fail "images: $(grep -o '<img ' "$TMP/s.html" | wc -l), want 10"
grep -Eq 'src="(https?:|/)' "$TMP/s.html" && t_fail "refers to something outside"
# the first inlined image is query 0's pixels
$PY - "$TMP" <<'PYEOF' > "$TMP/q0.png" || t_fail "no data: URI"
import sys, re, base64
s = open(sys.argv[1] + '/s.html').read()
sys.stdout.buffer.write(base64.b64decode(re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)', s).group(1)))
PYEOF
dh-ingest -q "$TMP/q0.png" | dh-npy export --field pixels > "$TMP/q0.npy"
dh-head -n 1 "$TMP/q.dhs" | dh-npy export --field pixels | cmp -s - "$TMP/q0.npy" || t_fail "query image differs"
t_end

t_begin images_to_png_files_and_back
dh-show -q -f files -o "$TMP/files" "$TMP/db.dhs" || t_fail "exit status"
[ "$(ls "$TMP/files" | wc -l)" = 40 ] && [ -f "$TMP/files/000039.png" ] || t_fail "files: $(ls "$TMP/files" | head -3)"
dh-ingest -q "$TMP/files" | dh-npy export --field pixels > "$TMP/back.npy"
dh-npy export --field pixels "$TMP/db.dhs" | cmp -s - "$TMP/back.npy" || t_fail "pixels differ after the round trip"
dh-show -q -n 12 --columns 4 -o "$TMP/grid.png" "$TMP/db.dhs" || t_fail "grid"
colours "$TMP/grid.png" | grep -q "grey=$(( 12 * frame ))" || t_fail "grid: $(colours "$TMP/grid.png")"
t_end

# queries without labels through dh-encode and dh-rank (a features model)
t_begin unlabelled_pass_through_encode_rank
$PY -c "import numpy as np; r = np.random.default_rng(1); np.save('$TMP/z.npy', r.normal(0, 1, (30, 6)).astype('<f4'))"
dh-npy import -q --field z --labels <($PY -c "import numpy as np, sys; np.save(sys.stdout.buffer, (np.arange(30) % 3).astype('<i4'))") \
  "$TMP/z.npy" > "$TMP/zl.dhs"
dh-npy import -q --field z "$TMP/z.npy" > "$TMP/zu.dhs"
dh-inithash -q --method lsh --bits 8 -o "$TMP/lsh.dhm" "$TMP/zl.dhs" || t_fail "dh-inithash"
dh-encode -q -m "$TMP/lsh.dhm" "$TMP/zl.dhs" > "$TMP/zdb.codes" || t_fail "encode db"
dh-encode -q -m "$TMP/lsh.dhm" "$TMP/zu.dhs" > "$TMP/zu.codes" || t_fail "encode unlabelled"
dh-info "$TMP/zu.codes" | grep -q 'fields: *code:bits\[8\] id:str' || t_fail "codes: $(dh-info "$TMP/zu.codes" | grep fields)"
dh-rank -q --db "$TMP/zdb.codes" --top 3 "$TMP/zu.codes" > "$TMP/zr.dhs" || t_fail "rank"
[ "$(dh-show -f tsv "$TMP/zr.dhs" | wc -l)" = 91 ] || t_fail "tsv rows"
dh-map --db "$TMP/zdb.codes" "$TMP/zr.dhs" > /dev/null 2> "$TMP/e" && t_fail "dh-map on unlabelled queries: exit 0"
grep -q 'no labels' "$TMP/e" || t_fail "dh-map message: $(cat "$TMP/e")"
t_end

# --- bad inputs: one line, non-zero; no output file ------------------------------------
head -c $(( $(wc -c < "$TMP/r.dhs") - 20 )) "$TMP/r.dhs" > "$TMP/cut.dhs"
dh-head -n 30 "$TMP/db.dhs" > "$TMP/db30.dhs"
dh-show -q -f files -o "$TMP/qfiles" "$TMP/q.dhs" && dh-ingest -q "$TMP/qfiles" > "$TMP/other.dhs"   # other ids
expect_fail bad_picture_without_db dh-show --query "$TMP/q.dhs" -o "$TMP/x.png" "$TMP/r.dhs"
expect_fail bad_picture_without_query dh-show --db "$TMP/db.dhs" -o "$TMP/x.png" "$TMP/r.dhs"
expect_fail bad_db_codes_for_picture dh-show --query "$TMP/q.dhs" --db "$TMP/db.codes" -o "$TMP/x.png" "$TMP/r.dhs"
expect_fail bad_db_rows dh-show --query "$TMP/q.dhs" --db "$TMP/db30.dhs" -o "$TMP/x.png" "$TMP/r.dhs"
t_begin bad_db_rows_message
grep -q "30 rows, but the rankings were made against a database of 40" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail bad_query_rows dh-show --query <(dh-head -n 2 "$TMP/q.dhs") --db "$TMP/db.dhs" -o "$TMP/x.png" "$TMP/r.dhs"
expect_fail bad_query_ids dh-show --query "$TMP/other.dhs" --db "$TMP/db.dhs" -n 5 -o "$TMP/x.png" "$TMP/r.dhs"
expect_fail bad_truncated_rankings dh-show -f tsv --db "$TMP/db.codes" -o "$TMP/x.tsv" "$TMP/cut.dhs"
expect_fail bad_not_rankings dh-show -f tsv "$TMP/q.codes"
expect_fail bad_tsv_for_images dh-show -f tsv "$TMP/db.dhs"
expect_fail bad_files_for_rankings dh-show -f files -o "$TMP/d" "$TMP/r.dhs"
expect_fail bad_format dh-show -f gif "$TMP/r.dhs"
expect_fail bad_tsv_db_missing dh-show -f tsv "$TMP/r.dhs"   # names db.codes, relative to $TMP
t_begin bad_no_output_file
[ -e "$TMP/x.png" ] || [ -e "$TMP/x.tsv" ] && t_fail "an output file was left"
t_end
t_begin bad_exit_statuses
dh-show --query "$TMP/q.dhs" -o "$TMP/x.png" "$TMP/r.dhs" 2>/dev/null; [ $? = 2 ] || t_fail "usage: not 2"
dh-show --query "$TMP/q.dhs" --db "$TMP/db30.dhs" -o "$TMP/x.png" "$TMP/r.dhs" 2>/dev/null; [ $? = 1 ] || t_fail "bad data: not 1"
t_end
t_done
