#!/usr/bin/env bash
# Stream tools: dh-info, dh-cat, dh-head, dh-split, dh-npy — and the stream
# reader's handling of damaged input, through dh-info --verify.
. "$(dirname "$0")/../lib.sh"

# mknpy DESCR SHAPE ROWBYTES ROWS > file : a .npy of random data
mknpy() { npy_header "$1" "$2"; head -c $(($3 * $4)) /dev/urandom; }
# labels 0..9 repeating, as |u1
mklabels() {
  npy_header '|u1' "($1,)"
  for ((i = 0; i < $1; i++)); do printf "\\x0$((i % 10))"; done
}
mknpy '|u1' '(200, 12)' 12 200 > "$TMP/x.npy"
mklabels 200 > "$TMP/y.npy"
dh-npy import --field z --labels "$TMP/y.npy" "$TMP/x.npy" > "$TMP/s.dhs" 2>"$TMP/err"

t_begin "npy_import_and_info"
t_check "import" test -s "$TMP/s.dhs"
dh-info "$TMP/s.dhs" > "$TMP/info" 2>&1 || t_fail "dh-info failed: $(cat "$TMP/info")"
grep -q '^rows: *200 ' "$TMP/info" || t_fail "row count: $(grep rows "$TMP/info")"
grep -q 'z:u8\[12\] label:i32 id:str' "$TMP/info" || t_fail "schema line"
[ "$(grep -cE '^ +[0-9] +20$' "$TMP/info")" = 10 ] || t_fail "label histogram"
t_end

t_begin "verify_ok"
out=$(dh-info --verify "$TMP/s.dhs") || t_fail "verify failed"
case $out in *"ok: features stream, 200 rows"*) ;; *) t_fail "verify said: $out";; esac
t_end

t_begin "npy_export_roundtrip"
dh-npy export --field z "$TMP/s.dhs" > "$TMP/x2.npy" || t_fail "export failed"
# the data part (after the 128-byte header of both files) must be identical
cmp -s <(tail -c 2400 "$TMP/x.npy") <(tail -c 2400 "$TMP/x2.npy") || t_fail "data differs"
t_end

t_begin "cat_concatenates"
dh-cat "$TMP/s.dhs" "$TMP/s.dhs" - < "$TMP/s.dhs" > "$TMP/c.dhs" || t_fail "dh-cat failed"
dh-info -v "$TMP/c.dhs" | grep -q '600 rows' || t_fail "600 rows expected"
cat "$TMP/s.dhs" "$TMP/s.dhs" | dh-info -v | grep -q '400 rows in 2 chunks, 2 streams' || t_fail "byte-wise concatenation"
t_end

mknpy '|u1' '(50, 7)' 7 50 > "$TMP/o.npy"
dh-npy import --field z "$TMP/o.npy" > "$TMP/other.dhs"
expect_fail "cat_rejects_other_schema" dh-cat "$TMP/s.dhs" "$TMP/other.dhs"
cat "$TMP/s.dhs" "$TMP/other.dhs" > "$TMP/mixed.dhs"
expect_fail "reader_rejects_mismatched_concatenation" dh-info --verify "$TMP/mixed.dhs"

t_begin "head"
[ "$(dh-head -n 7 "$TMP/s.dhs" | dh-info -v)" = "<stdin>: ok: features stream, 7 rows in 1 chunks, 1 stream" ] || t_fail "7 rows"
dh-head -n 0 < "$TMP/s.dhs" | dh-info -v | grep -q ' 0 rows' || t_fail "0 rows"
dh-head -n 1000 < "$TMP/s.dhs" | dh-info -v | grep -q ' 200 rows' || t_fail "all rows"
t_end

t_begin "split_per_class"
dh-split --per-class 3 --seed 5 -o "$TMP/q.dhs" -r "$TMP/db.dhs" < "$TMP/s.dhs" || t_fail "split failed"
dh-info "$TMP/q.dhs" | grep -qE '^rows: +30 ' || t_fail "30 queries"
dh-info "$TMP/db.dhs" | grep -qE '^rows: +170 ' || t_fail "170 db"
[ "$(grep -cE '^ +[0-9] +3$' <(dh-info "$TMP/q.dhs"))" = 10 ] || t_fail "3 per class"
dh-split --per-class 3 --seed 5 -o "$TMP/q2.dhs" "$TMP/s.dhs"
cmp -s <(dh-npy export -F z "$TMP/q.dhs") <(dh-npy export -F z "$TMP/q2.dhs") || t_fail "not deterministic"
dh-split --per-class 3 --seed 6 -o "$TMP/q3.dhs" "$TMP/s.dhs"
cmp -s <(dh-npy export -F z "$TMP/q.dhs") <(dh-npy export -F z "$TMP/q3.dhs") && t_fail "seed has no effect"
t_end

t_begin "split_count_fraction"
dh-split --count 17 -o "$TMP/a.dhs" -r "$TMP/b.dhs" "$TMP/s.dhs" || t_fail "count"
dh-info -v "$TMP/a.dhs" | grep -q ' 17 rows' || t_fail "17"
dh-info -v "$TMP/b.dhs" | grep -q ' 183 rows' || t_fail "183"
dh-split --fraction 0.25 -o "$TMP/a.dhs" "$TMP/s.dhs" && dh-info -v "$TMP/a.dhs" | grep -q ' 50 rows' || t_fail "fraction"
t_end

expect_fail "split_too_many_per_class" dh-split --per-class 21 -o "$TMP/z.dhs" "$TMP/s.dhs"
t_begin "split_failure_leaves_no_file"
[ -e "$TMP/z.dhs" ] && t_fail "output exists after failure"
t_end
expect_fail "split_needs_one_mode" dh-split -o "$TMP/z.dhs" "$TMP/s.dhs"
# -o and -r the same: the rest silently replaced the selection (exit 0)
expect_fail "split_output_is_rest" dh-split --count 1 -o "$TMP/z.dhs" -r "$TMP/z.dhs" "$TMP/s.dhs"
expect_fail "split_both_stdout" dh-split --count 1 -o - -r - "$TMP/s.dhs"
expect_fail "info_missing_file" dh-info "$TMP/nonexistent.dhs"
expect_fail "info_bad_option" dh-info --frobnicate
if [ -c /dev/full ]; then  # a write error on stdout exited 0
  expect_fail "info_write_error" sh -c 'dh-info "$1" > /dev/full' sh "$TMP/s.dhs"
fi
expect_fail "npy_not_npy" dh-npy import --field z "$TMP/s.dhs"
expect_fail "npy_no_such_field" dh-npy export --field nope "$TMP/s.dhs"
# an empty kind made a stream no reader accepts (exit 0)
expect_fail "npy_empty_kind" dh-npy import --kind "" --field z "$TMP/x.npy"

# -o (dh-head, dh-cat, dh-npy): the complete result, or no file at all
t_begin "output_option"
dh-head -n 5 -o "$TMP/o-head.dhs" "$TMP/s.dhs" && dh-info -v "$TMP/o-head.dhs" | grep -q ' 5 rows' || t_fail "dh-head -o"
dh-cat -o "$TMP/o-cat.dhs" "$TMP/s.dhs" - < "$TMP/s.dhs" && dh-info -v "$TMP/o-cat.dhs" | grep -q ' 400 rows' || t_fail "dh-cat -o"
dh-npy export -F z -o "$TMP/o.npy" "$TMP/s.dhs" && cmp -s "$TMP/o.npy" "$TMP/x2.npy" || t_fail "dh-npy export -o"
dh-npy import -F z --labels "$TMP/y.npy" -o "$TMP/o-imp.dhs" "$TMP/x.npy" &&
  cmp -s <(dh-npy export -F label "$TMP/o-imp.dhs") <(dh-npy export -F label "$TMP/s.dhs") || t_fail "dh-npy import -o"
head -c 1500 "$TMP/s.dhs" > "$TMP/cut.dhs"
dh-head -n 1000 -o "$TMP/o-fail1" "$TMP/cut.dhs" 2> /dev/null && t_fail "dh-head: truncated input accepted"
dh-cat -o "$TMP/o-fail2" "$TMP/s.dhs" "$TMP/cut.dhs" 2> /dev/null && t_fail "dh-cat: truncated input accepted"
dh-npy export -F nope -o "$TMP/o-fail3" "$TMP/s.dhs" 2> /dev/null && t_fail "dh-npy: missing field accepted"
for f in o-fail1 o-fail2 o-fail3; do [ ! -e "$TMP/$f" ] || t_fail "$f left behind by a failed run"; done
ls -a "$TMP" | grep -q '\.tmp\.' && t_fail "temporary file left: $(ls -a "$TMP" | grep '\.tmp\.')"
t_end

# ---- damaged input: every case one line, non-zero, no crash ----
size=$(stat -c %s "$TMP/s.dhs")
t_begin "truncated_streams_rejected"
for cut in 0 1 5 17 60 100 150 $((size/4)) $((size/2)) $((size-200)) $((size-40)) $((size-10)) $((size-1)); do
  head -c "$cut" "$TMP/s.dhs" > "$TMP/t.dhs"
  dh-info --verify "$TMP/t.dhs" > /dev/null 2> "$TMP/t.err"; rc=$?
  if [ $rc = 0 ] || [ $rc -ge 128 ] || [ "$(grep -c . "$TMP/t.err")" != 1 ]; then t_fail "cut at $cut: rc $rc: $(head -c 200 "$TMP/t.err")"; break; fi
done
t_end

t_begin "bit_flips_rejected"
for off in 0 3 20 50 90 130 170 $((size/3)) $((size/2)) $((size-100)) $((size-30)) $((size-3)); do
  for bit in 0 3 7; do
    perl -e 'my ($f,$o,$b)=@ARGV; open(F,"<:raw",$f); local $/; my $d=<F>; substr($d,$o,1)=chr(ord(substr($d,$o,1))^(1<<$b)); print $d' \
      "$TMP/s.dhs" "$off" "$bit" > "$TMP/f.dhs"
    dh-info --verify "$TMP/f.dhs" > /dev/null 2> "$TMP/f.err"; rc=$?
    if [ $rc = 0 ] || [ $rc -ge 128 ] || [ "$(grep -c . "$TMP/f.err")" != 1 ]; then t_fail "flip byte $off bit $bit: rc $rc: $(head -c 200 "$TMP/f.err")"; break 2; fi
  done
done
t_end

head -c 3000 /dev/urandom > "$TMP/rand.dhs"
expect_fail "random_bytes_rejected" dh-info --verify "$TMP/rand.dhs"
: > "$TMP/empty.dhs"
expect_fail "empty_input_rejected" dh-info --verify "$TMP/empty.dhs"
perl -e 'my $f=shift; open(F,"<:raw",$f); local $/; my $d=<F>; $d =~ s/\xa7version\x01/\xa7version\x07/; print $d' "$TMP/s.dhs" > "$TMP/v.dhs"
expect_fail "wrong_version_rejected" dh-info --verify "$TMP/v.dhs"
grep -q 'version 7' "$TMP/ef.err" || echo "FAIL wrong_version_message: $(cat "$TMP/ef.err")"
# a header that declares a 4 GiB string
printf '\x81\xdb\xff\xff\xff\xff' > "$TMP/huge.dhs"
expect_fail "absurd_size_rejected" dh-info --verify "$TMP/huge.dhs"

t_begin "help_and_version"
for p in dh-info dh-cat dh-head dh-split dh-npy; do
  $p --help | grep -q "^Usage: $p" || t_fail "$p --help"
  $p --version | grep -q "^$p (deephash) " || t_fail "$p --version"
done
t_end

t_begin "python_example_from_manual"
if /usr/bin/python3 -c 'import msgpack, numpy' 2>/dev/null; then
  man=$(dirname "$0")/../../man/dh-stream.5
  sed -n '/^\.ft CR$/,/^\.ft$/p' "$man" | sed '1d;$d' > "$TMP/ex.py"
  cat >> "$TMP/ex.py" <<'PY'
import io, subprocess
z = np.arange(30, dtype=np.float32).reshape(10, 3); lab = np.arange(10) % 3
buf = io.BytesIO(); write_features(buf, z, lab)
open(sys.argv[1], "wb").write(buf.getvalue())
got = list(read_stream(open(sys.argv[2], "rb")))
assert sum(len(c["id"]) for _, c in got) == 200, "rows"
assert got[0][1]["z"].shape[1] == 12 and got[0][1]["label"][13] == 3
assert got[0][0]["kind"] == "features"
PY
  /usr/bin/python3 "$TMP/ex.py" "$TMP/py.dhs" "$TMP/s.dhs" 2> "$TMP/py.err" || t_fail "python: $(tail -2 "$TMP/py.err")"
  dh-info -v "$TMP/py.dhs" | grep -q '10 rows' || t_fail "dh-info rejects the Python-written stream"
  t_end
else
  t_skip python_example_from_manual "python3-msgpack/python3-numpy not installed"
fi
t_done
