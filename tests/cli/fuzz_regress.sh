#!/usr/bin/env bash
# Fuzz findings as regression tests, no clang needed. Every input kept in
# tests/fuzz/regress/NAME/ and every seed of tests/fuzz/corpus-NAME/ is
# replayed through the fuzz target NAME built as an ordinary program
# ($DH_TESTS/fuzz_replay_NAME: tests/fuzz/replay.c, under the sanitizers in
# `make test`); the findings that a program meets are replayed through the
# program too: one stderr line, the documented exit status, no sanitizer
# report, in bounded time and memory. See tests/fuzz/README.md.
. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FZ=$ROOT/tests/fuzz R=$FZ/regress
: "${DH_TESTS:=build/rel/tests}"
DH_TESTS=$(cd "$ROOT" && cd "$DH_TESTS" && pwd)

# ---- every target on its seeds and its kept findings
for src in "$FZ"/fuzz_*.c; do
  n=$(basename "$src" .c); n=${n#fuzz_}
  t_begin "fuzz_replay_$n"
  bin=$DH_TESTS/fuzz_replay_$n
  if [ ! -x "$bin" ]; then
    t_fail "$bin not built (make all builds it)"
  else
    dirs="$FZ/corpus-$n"; [ -d "$R/$n" ] && dirs="$dirs $R/$n"
    [ -n "$(ls -A "$FZ/corpus-$n" 2>/dev/null)" ] || t_fail "no seeds in tests/fuzz/corpus-$n"
    # shellcheck disable=SC2086
    "$bin" $dirs >"$TMP/replay.out" 2>"$TMP/replay.err" || t_fail "exit $?: $(grep -m3 -E 'ERROR|runtime error|fuzz_' "$TMP/replay.err" | tr '\n' ' ')"
    grep -q 'AddressSanitizer\|runtime error\|LeakSanitizer' "$TMP/replay.err" && t_fail "sanitizer report: $(grep -m2 -E 'ERROR|runtime error' "$TMP/replay.err" | tr '\n' ' ')"
  fi
  t_end
done

# run_bounded SECONDS MAX_MB CMD...: CMD within SECONDS and (with GNU time) MAX_MB of memory; status in $RB_RC
run_bounded() {
  local secs=$1 mb=$2; shift 2
  RB_RC=0; RB_MSG=""
  if [ -x /usr/bin/time ]; then
    timeout "$secs" /usr/bin/time -f '%M' -o "$TMP/rss" "$@" >"$TMP/rb.out" 2>"$TMP/rb.err" || RB_RC=$?
    local kb; kb=$(tail -1 "$TMP/rss" 2>/dev/null)
    case $kb in *[!0-9]*|'') ;; *) [ "$kb" -le $((mb * 1024)) ] || RB_MSG="used $((kb / 1024)) MB (at most $mb)";; esac
  else
    timeout "$secs" "$@" >"$TMP/rb.out" 2>"$TMP/rb.err" || RB_RC=$?
  fi
  [ "$RB_RC" = 124 ] && RB_MSG="still running after $secs s"
  grep -q 'AddressSanitizer\|runtime error' "$TMP/rb.err" && RB_MSG="sanitizer report: $(grep -m1 -E 'ERROR|runtime error' "$TMP/rb.err")"
  true
}
# expect_error NAME STATUS SECONDS MAX_MB CMD...: one 'dh-' line on stderr, exit STATUS
expect_error() {
  local name=$1 want=$2 secs=$3 mb=$4; shift 4
  t_begin "$name"
  run_bounded "$secs" "$mb" "$@"
  [ -n "$RB_MSG" ] && t_fail "$RB_MSG"
  [ "$RB_RC" = "$want" ] || t_fail "exit $RB_RC, expected $want: $(head -c 200 "$TMP/rb.err")"
  [ "$(grep -c . "$TMP/rb.err")" = 1 ] && grep -q '^dh-[a-z-]*: ' "$TMP/rb.err" || t_fail "stderr not one 'dh-PROG:' line: $(head -c 200 "$TMP/rb.err")"
  t_end
}

# ---- stream reader: nested header arrays (22 bytes declared 3 x 3.4 GB,
# allocated before their elements were read: "out of memory" under a 4 GB
# address-space limit, 540 MB and 7 s with AddressSanitizer); now truncated
expect_error header_nested_arrays 1 30 200 dh-info --verify "$R/stream/header-nested-arrays-22-bytes"
expect_error header_nested_arrays_30_levels 1 30 200 dh-info --verify "$R/stream/header-nested-arrays-30-levels"

# ---- stream reader: a header map of 200,000 keys (1.7 MB) took 7 minutes
# (a duplicate check per key); now sorted
t_begin header_many_keys
if /usr/bin/python3 -c 'import msgpack' 2>/dev/null; then
  /usr/bin/python3 - "$TMP/keys.dhs" <<'PYEOF'
import sys, zlib, msgpack
meta = {"k%d" % i: i & 127 for i in range(200000)}
h = msgpack.packb({"format": "deephash-stream", "version": 1, "kind": "x", "fields": [], "meta": meta})
t = msgpack.packb({"end": True, "rows": 0, "chunks": 0, "crc": 0, "header_crc": zlib.crc32(h)})
open(sys.argv[1], "wb").write(h + t)
PYEOF
  run_bounded 60 500 dh-info --verify "$TMP/keys.dhs"
  [ -n "$RB_MSG" ] && t_fail "$RB_MSG"
  [ "$RB_RC" = 0 ] || t_fail "exit $RB_RC: $(head -c 200 "$TMP/rb.err")"
  # and a duplicate among them is still found
  sed 's/k199999/k199998/' "$TMP/keys.dhs" > "$TMP/dup.dhs"
  timeout 60 dh-info --verify "$TMP/dup.dhs" 2>&1 | grep -q "duplicate metadata key 'k199998'" || t_fail "duplicate key not reported within 60 s"
  t_end
else
  t_skip header_many_keys "needs /usr/bin/python3 with msgpack"
fi

# ---- dh-npy import: a labels file declaring 2^62 rows (with a data file
# that agrees) overflowed the allocation and wrote past it (heap overflow);
# a row of 2^40 x 2^40 elements overflowed the element count (undefined)
expect_error npy_labels_count_overflow 5 30 200 dh-npy import --field z --labels "$R/npy/labels-count-2e62" "$R/npy/data-count-2e62"
expect_error npy_row_size_overflow 5 30 200 dh-npy import --field z "$R/npy/row-size-overflow"
# 2^40 labels declared, 3 present: memory grows with the labels read
expect_error npy_labels_count_2e40 1 30 200 dh-npy import --field z --labels "$R/npy/labels-count-2e40" "$R/npy/data-count-2e40"

# ---- dh-plot (dh_map_read_json): whole-number fields of a dh-map result
# beyond int / int64 (bits 1e10, R 3.5e19, radius -1e20) were converted
# anyway (undefined behaviour); now 'not a dh-map result'
for f in map-bits-1e10 map-R-3.5e19 map-radius-negative; do
  expect_error "json_$f" 1 30 200 dh-plot --script -o "$TMP/p.gp" "$R/json/$f"
done
t_done
