#!/usr/bin/env bash
# The EXAMPLES of every man page, run. A fixture directory holds small
# files under the names the examples use (train.dhs, net.dhm, db.codes, ...,
# made from a Fashion-MNIST subset or synthetic images); dataset paths are
# pointed at small copies. Each page runs in a fresh copy of the fixture,
# its commands in order. An example whose input is not in the fixture, or
# that asks for a CUDA device on a machine without one, is counted as
# skipped and named; any other non-zero exit fails the page.
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${DH_REL_BIN:-}" ] && [ -d "$DH_REL_BIN" ] && export PATH="$(cd "$DH_REL_BIN" && pwd):$PATH"
export DH_DEVICE=cpu
F=$TMP/fixture; mkdir -p "$F/fm"
FM=/usr/share/datasets/fashion-mnist
# small IDX copies of Fashion-MNIST (first N images of each split)
idx_subset() {  # src-images src-labels n dst-prefix
  local n=$3
  { printf '\x00\x00\x08\x03'; printf "\\x$(printf %02x $((n >> 24 & 255)))\\x$(printf %02x $((n >> 16 & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x$(printf %02x $((n & 255)))"
    printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'; gzip -dc "$1" | tail -c +17 | head -c $((n * 784)); } | gzip > "$4-images-idx3-ubyte.gz"
  { printf '\x00\x00\x08\x01'; printf "\\x$(printf %02x $((n >> 24 & 255)))\\x$(printf %02x $((n >> 16 & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x$(printf %02x $((n & 255)))"
    gzip -dc "$2" | tail -c +9 | head -c "$n"; } | gzip > "$4-labels-idx1-ubyte.gz"
}
if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  idx_subset "$FM/train-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz" 600 "$F/fm/train"
  idx_subset "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" 200 "$F/fm/t10k"
else
  echo "SKIP man_examples: dataset-fashion-mnist not installed (needed for the fixture)"; exit 0
fi
shared=$root/../shared/data/cifar10-jpg.tar.gz
if [ -f "$shared" ]; then  # a small archive in the same layout
  (cd "$TMP" && tar xzf "$shared" --wildcards 'cifar10/*/*/000[0-4].jpg' 2>/dev/null && tar czf "$F/cifar10-jpg.tar.gz" cifar10)
fi
(
  cd "$F"
  dh-ingest -q --split train fm > train.dhs && dh-ingest -q --split test fm > test.dhs
  dh-head -n 300 train.dhs > train-part1.dhs && cp train-part1.dhs train-part2.dhs && cp train.dhs a.dhs && cp test.dhs b.dhs && cp train.dhs all.dhs
  dh-pretrain -q --epochs 1 -o net.dhm train.dhs
  dh-feats -q -m net.dhm train.dhs > feats.dhs && cp feats.dhs train.feats && dh-feats -q -m net.dhm test.dhs > test.feats
  dh-inithash -q --bits 16 -o hash0.dhm feats.dhs
  dh-finetune -q --epochs 1 -m net.dhm --hash hash0.dhm -o deephash.dhm train.dhs && cp deephash.dhm model.dhm
  dh-encode -q -m deephash.dhm train.dhs > db.codes && cp db.codes train.codes && cp db.codes dh-train.codes
  dh-encode -q -m deephash.dhm test.dhs > q.codes && cp q.codes query.codes && cp q.codes test.codes && cp q.codes dh-test.codes
  dh-inithash -q --method itq --bits 16 -o itq.dhm feats.dhs
  dh-encode -q -m itq.dhm feats.dhs > itq-train.codes && dh-encode -q -m itq.dhm test.feats > itq-test.codes
  dh-npy export --field z feats.dhs > X.npy && dh-npy export --field label feats.dhs > y.npy
  # the dh-net(5) example network
  awk '/^\.SH EXAMPLES/{e=1} e && /^input /{p=1} p{print} p && /^feature/{exit}' "$root/man/dh-net.5" > small.net
) > "$TMP/fixture.log" 2>&1 || { echo "FAIL man_examples_fixture: $(tail -3 "$TMP/fixture.log")"; exit 1; }

# commands of a page's EXAMPLES: lines in .nf/.fi or .EX/.EE starting with a
# program name, continuation lines (\e at the end) joined, roff escapes undone
examples() {
  awk '/^\.SH EXAMPLES/{e=1; next} /^\.SH/{e=0} e' "$1" |
  awk '/^\.(nf|EX)/{b=1; next} /^\.(fi|EE)/{b=0; next} b' |
  sed -e 's/\\-/-/g' -e 's/\\(mu/x/g' -e 's/\\e$/\\/' |
  awk '{ if (cont) { line = line " " $0 } else { line = $0 }
         if (line ~ /\\$/) { sub(/\\$/, "", line); cont = 1; next } cont = 0
         if (line ~ /^ *(dh-|cat )/) print line }'
}

for page in "$root"/man/*.[157]; do
  name=$(basename "$page")
  cmds=$(examples "$page")
  [ -n "$cmds" ] || continue
  t_begin "man_examples_$name"
  rm -rf "$TMP/run"; cp -r "$F" "$TMP/run"
  ran=0; skipped=""
  while IFS= read -r c; do
    c=${c//\/usr\/share\/datasets\/fashion-mnist/fm}
    (cd "$TMP/run" && timeout 120 bash -o pipefail -c "$c") > "$TMP/ex.out" 2> "$TMP/ex.err"; rc=$?
    if [ $rc = 0 ]; then ran=$((ran + 1))
    elif grep -q 'No such file or directory\|no CUDA device\|no CUDA backend' "$TMP/ex.err"; then skipped="$skipped [${c:0:50}]"
    else t_fail "'$c' exited $rc: $(grep -v '^#' "$TMP/ex.err" | tail -1)"; fi
  done <<< "$cmds"
  [ -n "$skipped" ] && echo "# $name: skipped (input or device not here):$skipped" >&2
  [ $ran -gt 0 ] || t_fail "no example could run"
  t_end
done
t_done
