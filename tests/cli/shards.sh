#!/usr/bin/env bash
# Sharded databases: dh-split --shards, dh-rank on each shard, dh-merge =
# dh-rank on the whole database, byte for byte (every row's data), for 1,
# 2, 3 and 7 shards, contiguous and hashed, top-k and radius, the scan and
# multi-index hashing; the examples of dh-merge(1) run here (xargs; GNU
# parallel, Slurm and ssh with the host list pointed at this machine);
# bad input to dh-split --shards and dh-merge.
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${DH_TESTS:=build/rel/tests}"
GEN="$DH_TESTS/test_rank"
PY=/usr/bin/python3
if [ ! -x "$GEN" ]; then t_skip shards "no $GEN (test_rank builds the code streams)"; exit 0; fi
if ! $PY -c 'import msgpack' 2>/dev/null; then t_skip shards "python3 msgpack missing"; exit 0; fi

# every row of a stream, its fields in hex: the data byte for byte,
# whatever the chunking; 'meta' prints metadata keys
cat > "$TMP/dump.py" <<'PYEOF'
import sys, struct, msgpack
def stream(path):
    u = msgpack.Unpacker(open(path, 'rb'), raw=False, max_buffer_size=1 << 30)
    hdr = next(u); out = []; end = None; start = 0
    for o in u:
        if 'fields' in o: start = len(out); end = None; continue  # a concatenated stream
        if o.get('end'): end = o; continue
        n = o['rows']; cols = []
        for f, b in zip(hdr['fields'], o['cols']):
            if f['dtype'] == 'str' or f['shape'] == [-1]:
                lens = struct.unpack('<%dI' % n, b[:4 * n]); es = {'str': 1, 'i64': 8, 'i32': 4}[f['dtype']]
                p = 4 * n; c = []
                for l in lens: c.append(b[p:p + l * es]); p += l * es
            else:
                rb = len(b) // n; c = [b[i * rb:(i + 1) * rb] for i in range(n)]
            cols.append(c)
        out += [[c[i] for c in cols] for i in range(n)]
    assert end is not None and end['rows'] == len(out) - start, 'no trailer'
    return hdr, out
hdr, rows = stream(sys.argv[2])
names = [f['name'] for f in hdr['fields']]
if sys.argv[1] == 'rows':
    for r in rows: print(' '.join(x.hex() for x in r))
elif sys.argv[1] == 'meta':
    for k in sys.argv[3:]: print(k, hdr['meta'].get(k))
elif sys.argv[1] == 'fields':
    print(' '.join(names))
elif sys.argv[1] == 'bygrow':  # rows of a hash shard without 'row', keyed by it
    i = names.index('row')
    for r in rows: print(struct.unpack('<q', r[i])[0], ' '.join(x.hex() for j, x in enumerate(r) if j != i))
PYEOF
dump() { $PY "$TMP/dump.py" "$@"; }

"$GEN" gen 900 64 12 1 flip=10 > "$TMP/db.codes" && "$GEN" gen 40 64 12 2 flip=10 > "$TMP/q.codes"
"$GEN" gen 300 20 4 3 flip=6 > "$TMP/db20.codes" && "$GEN" gen 25 20 4 4 flip=6 > "$TMP/q20.codes"
"$GEN" gen 700 128 9 5 flip=12 nolabel > "$TMP/db128.codes" && "$GEN" gen 20 128 9 6 flip=12 nolabel > "$TMP/q128.codes"

# same data and the same bits/db_rows/top/radius/labels as the unsharded rankings
same_rankings() {  # reference merged
  dump rows "$1" > "$TMP/a" && dump rows "$2" > "$TMP/b" || return 1
  [ -s "$TMP/a" ] && cmp -s "$TMP/a" "$TMP/b" || return 1
  [ "$(dump meta "$1" bits db_rows top radius labels)" = "$(dump meta "$2" bits db_rows top radius labels)" ]
}

# rank the shards one by one and merge: sharded == unsharded
check_sharded() {  # name db q N by "dh-rank args"
  local name=$1 db=$2 q=$3 N=$4 by=$5 args=$6
  t_begin "$name"
  rm -rf "$TMP/s"; mkdir "$TMP/s"
  dh-rank -q -D "$db" $args "$q" > "$TMP/s/whole.dhs" 2> "$TMP/err" || t_fail "dh-rank whole: $(cat "$TMP/err")"
  dh-split --shards "$N" --shard-by "$by" -o "$TMP/s/db-%d.codes" "$db" 2> "$TMP/err" || t_fail "dh-split: $(cat "$TMP/err")"
  for k in $(seq 0 $((N - 1))); do
    dh-rank -q -D "$TMP/s/db-$k.codes" $args -o "$TMP/s/r-$k.dhs" "$q" 2> "$TMP/err" || t_fail "dh-rank shard $k: $(cat "$TMP/err")"
  done
  # any order of the inputs
  dh-merge -q -o "$TMP/s/merged.dhs" $(ls "$TMP"/s/r-*.dhs | sort -r) 2> "$TMP/err" || t_fail "dh-merge: $(cat "$TMP/err")"
  same_rankings "$TMP/s/whole.dhs" "$TMP/s/merged.dhs" || t_fail "merged rankings differ from the whole database's"
  t_end
}

for N in 1 2 3 7; do
  for by in contiguous hash; do
    check_sharded "sharded_${N}_${by}_top10" "$TMP/db.codes" "$TMP/q.codes" $N $by "-k 10"
    check_sharded "sharded_${N}_${by}_radius" "$TMP/db.codes" "$TMP/q.codes" $N $by "-r 12"
  done
done
check_sharded sharded_3_contiguous_top1 "$TMP/db.codes" "$TMP/q.codes" 3 contiguous "-k 1"
check_sharded sharded_3_hash_top100 "$TMP/db.codes" "$TMP/q.codes" 3 hash "-k 100"
check_sharded sharded_2_hash_top_all "$TMP/db20.codes" "$TMP/q20.codes" 2 hash "-k all"
check_sharded sharded_7_contiguous_top5_radius "$TMP/db20.codes" "$TMP/q20.codes" 7 contiguous "-k 5 -r 4"
check_sharded sharded_3_hash_mih "$TMP/db.codes" "$TMP/q.codes" 3 hash "-M mih -k 25"
check_sharded sharded_3_contiguous_mih_radius "$TMP/db.codes" "$TMP/q.codes" 3 contiguous "-M mih -r 10"
check_sharded sharded_2_unlabelled_128bit "$TMP/db128.codes" "$TMP/q128.codes" 2 hash "-k 30"
# top larger than a shard, not than the database; more shards than rows
check_sharded sharded_7_top_beyond_a_shard "$TMP/db20.codes" "$TMP/q20.codes" 7 contiguous "-k 250"
"$GEN" gen 5 20 2 7 > "$TMP/tiny.codes"
check_sharded sharded_9_of_5_rows "$TMP/tiny.codes" "$TMP/q20.codes" 9 contiguous "-k 3"
check_sharded sharded_9_of_5_rows_hash "$TMP/tiny.codes" "$TMP/q20.codes" 9 hash "-r 8"

# an index per shard
t_begin sharded_with_indexes
rm -rf "$TMP/s"; mkdir "$TMP/s"
dh-split --shards 3 -o "$TMP/s/db-%d.codes" "$TMP/db.codes" &&
for k in 0 1 2; do
  dh-index -q -o "$TMP/s/db-$k.mih" "$TMP/s/db-$k.codes" &&
  dh-rank -q -D "$TMP/s/db-$k.codes" -I "$TMP/s/db-$k.mih" -k 20 -o "$TMP/s/r-$k.dhs" "$TMP/q.codes" || t_fail "shard $k"
done
dh-merge -q "$TMP"/s/r-*.dhs > "$TMP/s/merged.dhs" && dh-rank -q -D "$TMP/db.codes" -k 20 "$TMP/q.codes" > "$TMP/s/whole.dhs" &&
  same_rankings "$TMP/s/whole.dhs" "$TMP/s/merged.dhs" || t_fail "differs"
t_end

# the shards hold the database: contiguous shards concatenated are its rows;
# hash shards hold every row once, ids and labels kept, with its number
t_begin split_shards_keep_rows
rm -rf "$TMP/s"; mkdir "$TMP/s"
dh-split --shards 4 -o "$TMP/s/c%02d.codes" "$TMP/db.codes" || t_fail "contiguous"
cat "$TMP"/s/c0[0-3].codes | dump rows /dev/stdin > "$TMP/a"; dump rows "$TMP/db.codes" > "$TMP/b"
cmp -s "$TMP/a" "$TMP/b" || t_fail "contiguous shards are not the database's rows"
[ "$(dump meta "$TMP/s/c02.codes" shard shards shard_by shard_total_rows shard_row0 shard_of | tr '\n' ' ')" = \
  "shard 2 shards 4 shard_by contiguous shard_total_rows 900 shard_row0 450 shard_of $TMP/db.codes " ] ||
  t_fail "metadata: $(dump meta "$TMP/s/c02.codes" shard shards shard_by shard_total_rows shard_row0 shard_of | tr '\n' ' ')"
dh-split --shards 4 --shard-by hash -o "$TMP/s/h%d.codes" "$TMP/db.codes" || t_fail "hash"
[ "$(dump fields "$TMP/s/h0.codes")" = "code label id row" ] || t_fail "hash shard fields: $(dump fields "$TMP/s/h0.codes")"
for k in 0 1 2 3; do dump bygrow "$TMP/s/h$k.codes"; done | sort -n | cut -d' ' -f2- > "$TMP/a"
cmp -s "$TMP/a" "$TMP/b" || t_fail "hash shards are not the database's rows"
for k in 0 1 2 3; do n=$(dump rows "$TMP/s/h$k.codes" | wc -l); [ "$n" -gt 150 ] || t_fail "shard $k has $n of 900 rows"; done
# the same split twice: the same files
dh-split --shards 4 --shard-by hash -o "$TMP/s/g%d.codes" "$TMP/db.codes" &&
  [ "$(dump rows "$TMP/s/h1.codes")" = "$(dump rows "$TMP/s/g1.codes")" ] || t_fail "not deterministic"
# from standard input
dh-split --shards 2 -o "$TMP/s/in%d.codes" < "$TMP/db.codes" && dh-split --shards 2 -o "$TMP/s/f%d.codes" "$TMP/db.codes" &&
  [ "$(dump rows "$TMP/s/in1.codes")" = "$(dump rows "$TMP/s/f1.codes")" ] &&
  [ "$(dump meta "$TMP/s/in1.codes" shard_of)" = "shard_of <stdin>" ] || t_fail "stdin"
t_end

# ---- dh-merge(1)'s examples, run here ----
# block N of the page's EXAMPLES (.EX ... .EE), roff escapes undone
block() { awk -v n="$1" '/^\.SH EXAMPLES/{e=1; next} /^\.SH/{e=0} e && /^\.EX/{b++; x=1; next} /^\.EE/{x=0} e && x && b == n' \
  "$root/man/dh-merge.1" | sed -e 's/\\-/-/g' -e 's/\\e$/\\/'; }
run_example() {  # name block-number [setup]
  local name=$1 n=$2 setup=${3:-}
  t_begin "man_dh_merge_example_$name"
  rm -rf "$TMP/ex"; mkdir "$TMP/ex"
  cp "$TMP/db.codes" "$TMP/q.codes" "$TMP/ex/"
  block "$n" > "$TMP/ex.sh"
  [ -s "$TMP/ex.sh" ] || t_fail "no example block $n"
  (cd "$TMP/ex" && { [ -z "$setup" ] || dh-split --shards 4 -o db-%d.codes db.codes; } &&
    bash -e -o pipefail -c "$(declare -f ssh srun); $(cat "$TMP/ex.sh")") > "$TMP/ex.out" 2> "$TMP/ex.err" ||
    t_fail "exit $?: $(tail -2 "$TMP/ex.err")"
  dh-rank -q -D "$TMP/db.codes" -k 100 "$TMP/q.codes" > "$TMP/whole100.dhs"
  same_rankings "$TMP/whole100.dhs" "$TMP/ex/top100.dhs" || t_fail "top100.dhs is not the whole database's top 100"
  t_end
}
# ssh HOST CMD...: run CMD here (the shard is "on the host": in this directory)
ssh() { shift; "$@"; }
# srun --ntasks=N CMD...: N tasks here, SLURM_PROCID 0..N-1
srun() { local n=${1#--ntasks=}; shift; local i; for i in $(seq 0 $((n - 1))); do SLURM_PROCID=$i "$@" & done; wait; }
run_example xargs 1
if command -v parallel > /dev/null && parallel --version 2> /dev/null | grep -q 'GNU parallel'; then
  # the host list pointed at this machine (':'), where transfers are not needed
  block 2 | sed 's/-S host1,host2/-S :/' > "$TMP/par.sh"
  t_begin man_dh_merge_example_parallel
  rm -rf "$TMP/ex"; mkdir "$TMP/ex"; cp "$TMP/db.codes" "$TMP/q.codes" "$TMP/ex/"
  (cd "$TMP/ex" && dh-split --shards 4 -o db-%d.codes db.codes && bash -e -o pipefail "$TMP/par.sh") > /dev/null 2> "$TMP/ex.err" ||
    t_fail "exit $?: $(grep -v Warning "$TMP/ex.err" | tail -2)"
  dh-rank -q -D "$TMP/db.codes" -k 100 "$TMP/q.codes" > "$TMP/whole100.dhs"
  same_rankings "$TMP/whole100.dhs" "$TMP/ex/top100.dhs" || t_fail "not the whole database's top 100"
  t_end
else
  t_skip man_dh_merge_example_parallel "GNU parallel not installed"
fi
run_example srun 3 setup
run_example ssh 4 setup

# ---- bad input ----
rm -rf "$TMP/s"; mkdir "$TMP/s"
dh-split --shards 3 -o "$TMP/s/a%d.codes" "$TMP/db.codes"
dh-split --shards 2 -o "$TMP/s/b%d.codes" "$TMP/db.codes"
for k in 0 1 2; do dh-rank -q -D "$TMP/s/a$k.codes" -k 10 -o "$TMP/s/ra$k.dhs" "$TMP/q.codes"; done
dh-rank -q -D "$TMP/s/a2.codes" -k 11 -o "$TMP/s/ra2k11.dhs" "$TMP/q.codes"
"$GEN" gen 40 64 12 9 flip=10 > "$TMP/q2.codes"
dh-rank -q -D "$TMP/s/a2.codes" -k 10 -o "$TMP/s/ra2q2.dhs" "$TMP/q2.codes"
dh-rank -q -D "$TMP/s/b0.codes" -k 10 -o "$TMP/s/rb0.dhs" "$TMP/q.codes"
dh-rank -q -D "$TMP/db.codes" -k 10 -o "$TMP/s/whole.dhs" "$TMP/q.codes"
head -c 700 "$TMP/s/ra1.dhs" > "$TMP/s/trunc.dhs"
expect_fail merge_missing_shard dh-merge "$TMP/s/ra0.dhs" "$TMP/s/ra1.dhs"
expect_fail merge_shard_twice dh-merge "$TMP/s/ra0.dhs" "$TMP/s/ra1.dhs" "$TMP/s/ra1.dhs"
expect_fail merge_other_split dh-merge "$TMP/s/ra0.dhs" "$TMP/s/rb0.dhs"
expect_fail merge_other_top dh-merge "$TMP/s/ra0.dhs" "$TMP/s/ra1.dhs" "$TMP/s/ra2k11.dhs"
expect_fail merge_other_queries dh-merge "$TMP/s/ra0.dhs" "$TMP/s/ra1.dhs" "$TMP/s/ra2q2.dhs"
expect_fail merge_not_a_shard dh-merge "$TMP/s/whole.dhs"
expect_fail merge_codes_not_rankings dh-merge "$TMP/s/a0.codes"
expect_fail merge_truncated dh-merge "$TMP/s/ra0.dhs" "$TMP/s/trunc.dhs" "$TMP/s/ra2.dhs"
expect_fail merge_no_input dh-merge
expect_fail merge_missing_file dh-merge "$TMP/s/nonexistent.dhs"
expect_fail merge_stdin_twice dh-merge - -
t_begin merge_no_output_on_failure
dh-merge -o "$TMP/s/out.dhs" "$TMP/s/ra0.dhs" "$TMP/s/trunc.dhs" "$TMP/s/ra2.dhs" 2> /dev/null
[ ! -e "$TMP/s/out.dhs" ] || t_fail "a file was left"
t_end
expect_fail split_shards_no_pattern dh-split --shards 3 -o "$TMP/s/x.codes" "$TMP/db.codes"
expect_fail split_shards_two_patterns dh-split --shards 3 -o "$TMP/s/x%d-%d.codes" "$TMP/db.codes"
expect_fail split_shards_bad_conversion dh-split --shards 3 -o "$TMP/s/x%s.codes" "$TMP/db.codes"
expect_fail split_shards_zero dh-split --shards 0 -o "$TMP/s/x%d.codes" "$TMP/db.codes"
expect_fail split_shards_with_rest dh-split --shards 2 -o "$TMP/s/x%d.codes" -r "$TMP/s/r.codes" "$TMP/db.codes"
expect_fail split_shards_and_count dh-split --shards 2 --count 3 -o "$TMP/s/x%d.codes" "$TMP/db.codes"
expect_fail split_shard_by_alone dh-split --shard-by hash --count 3 -o "$TMP/s/x.codes" "$TMP/db.codes"
expect_fail split_shard_by_bad dh-split --shards 2 --shard-by random -o "$TMP/s/x%d.codes" "$TMP/db.codes"
expect_fail split_shards_of_a_shard dh-split --shards 2 -o "$TMP/s/y%d.codes" "$TMP/s/a0.codes"
expect_fail split_shards_truncated dh-split --shards 2 -o "$TMP/s/z%d.codes" "$TMP/s/trunc.dhs"
t_begin split_shards_no_output_on_failure
ls "$TMP"/s/x* "$TMP"/s/y* "$TMP"/s/z* > /dev/null 2>&1 && t_fail "files were left: $(ls "$TMP"/s/x* "$TMP"/s/y* "$TMP"/s/z* 2>/dev/null | head -3)"
t_end
# a shard whose rows were tampered with: hash shards concatenated (rows not increasing)
dh-split --shards 2 --shard-by hash -o "$TMP/s/h%d.codes" "$TMP/db.codes"
cat "$TMP/s/h1.codes" "$TMP/s/h0.codes" > "$TMP/s/hcat.codes"
expect_fail rank_shard_rows_out_of_order dh-rank -D "$TMP/s/hcat.codes" "$TMP/q.codes"
expect_fail rank_shard_top_beyond_whole dh-rank -D "$TMP/s/a0.codes" -k 901 "$TMP/q.codes"
t_done
