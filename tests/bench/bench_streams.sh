#!/usr/bin/env bash
# dh-cat throughput on a ~1 GB features stream through a pipe
# (issue 2 target: at least 1 GB/s on a 2-core machine).
set -eu
. "$(dirname "$0")/../lib.sh"   # npy_header, $TMP (removed at exit)
tmp=$TMP
# 1 MiB of .npy (f32 rows of 256) -> a stream; 64 copies -> 64 MiB; 16 of those through the pipe
{ npy_header '<f4' '(1024, 256)'; head -c $((1024*256*4)) /dev/urandom; } > "$tmp/x.npy"
dh-npy import --field z "$tmp/x.npy" > "$tmp/one.dhs"
for i in $(seq 1 64); do echo "$tmp/one.dhs"; done > "$tmp/list"
dh-cat $(cat "$tmp/list") > "$tmp/64.dhs"              # 64 MiB
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do echo "$tmp/64.dhs"; done > "$tmp/list16"
bytes=$(( $(stat -c %s "$tmp/64.dhs") * 16 ))
# warm the page cache
cat $(cat "$tmp/list16") > /dev/null
t0=$(date +%s.%N)
cat $(cat "$tmp/list16") | dh-cat | dh-info --verify -q
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc -l)
printf 'dh-cat: %.2f GB through a pipe (cat | dh-cat | dh-info --verify) in %.2f s: %.2f GB/s (target >= 1 GB/s)\n' \
  "$(echo "$bytes / 1000000000" | bc -l)" "$secs" "$(echo "$bytes / 1000000000 / $secs" | bc -l)"
rss=$( { /usr/bin/time -f '%M' dh-cat "$tmp/64.dhs" "$tmp/64.dhs" > /dev/null; } 2>&1 | tail -1)
echo "dh-cat: peak memory $((rss / 1024)) MiB for 128 MiB of input (bounded by the chunk size)"
