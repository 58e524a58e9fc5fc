#!/usr/bin/env bash
# tests/fuzz/gen-corpus.sh — regenerate the seed corpora of the stream, model
# and .npy fuzz targets (tests/fuzz/corpus-{stream,model,npy}/) with the
# project's own writers: the programs make every stream kind (images from
# the image-source seeds, features, codes, rankings, hash, net and deep hash
# models), dh-cat and cat concatenate them, dh-head cuts them, dh-npy export
# writes the .npy seeds; the edge cases of dh-stream(5) that no program
# writes (f64 and variable-length fields, nested metadata, an empty chunk
# list, damaged streams) come from the format's own Python writer (the one
# in the manual). The seeds are committed (file names without .dhs/.dhm,
# which .gitignore hides); rerun this when the format or a writer changes:
#
#   make V=rel NO_CUDA=1 BUILDDIR=build/gen all && DH_BIN=build/gen/bin tests/fuzz/gen-corpus.sh
#
# Needs /usr/bin/python3 with msgpack and numpy for the hand-made edge cases.
set -eu
cd "$(dirname "$0")/../.."
: "${DH_BIN:=build/rel/bin}"
B=$(cd "$DH_BIN" && pwd)
export PATH="$B:$PATH"
F=$PWD/tests/fuzz
. tests/lib.sh >/dev/null # npy_header, $TMP (removed at exit)
S=$F/corpus-stream M=$F/corpus-model N=$F/corpus-npy
rm -rf "$S" "$M" "$N"
mkdir -p "$S" "$M" "$N"
cd "$TMP"
q=-q

# ---- images (dh-ingest, from the image-source seeds less their 2 mode bytes)
tail -c +3 "$F/corpus-ingest/tree-tgz-all" > tree.tgz
tail -c +3 "$F/corpus-ingest/cifar-tgz-train" > cifar.tgz
dh-ingest $q --split all --resize 4x4 --gray tree.tgz > im-gray.dhs
dh-ingest $q --split train --resize 3x2 tree.tgz > im-rgb.dhs
dh-ingest $q --split train cifar.tgz > im-cifar.dhs
cp im-gray.dhs "$S/images-gray"
cp im-rgb.dhs "$S/images-rgb"
dh-head -n 1 im-cifar.dhs > "$S/images-cifar-1row"

# ---- features, codes (dh-npy import: u8, i32, i64, f32, bits, str fields)
{ npy_header '<f4' '(6, 4)'; printf '\0\0\200\77\0\0\0\100\0\0\100\100\0\0\200\100%.0s' 1 2 3 4 5 6; } > z.npy
{ npy_header '<f8' '(6, 2)'; head -c 96 /dev/zero | tr '\0' '\77'; } > z8.npy
{ npy_header '|u1' '(6,)'; printf '\0\1\2\0\1\2'; } > y.npy
{ npy_header '<i8' '(6,)'; head -c 48 /dev/zero; } > y8.npy
{ npy_header '|u1' '(6, 12)'; for i in 1 2 3 4 5 6; do printf '\1\0\1\1\0\0\1\0\1\0\0\1'; done; } > b.npy
dh-npy import --field z --labels y.npy z.npy > feats.dhs
dh-npy import --field z z8.npy > feats-nolabel.dhs
dh-npy import --kind codes --field code --bits --labels y.npy b.npy > codes12.dhs
dh-npy import --kind ints --field v y8.npy > ints.dhs
dh-npy import --kind bytes --field px b.npy > bytes.dhs
cp feats.dhs "$S/features"
cp feats-nolabel.dhs "$S/features-nolabel"
cp codes12.dhs "$S/codes-12bits"
cp ints.dhs "$S/i64-field"
cp bytes.dhs "$S/u8-field"

# ---- models (dh-inithash: linear, sh, rbf; dh-pretrain, dh-finetune)
dh-inithash $q --method lsh --bits 8 feats.dhs > h-lsh.dhm
dh-inithash $q --method sh --bits 8 feats.dhs > h-sh.dhm
dh-inithash $q --method ksh --bits 8 --anchors 3 --pairs 20 feats.dhs > h-ksh.dhm
dh-inithash $q --method deephash --bits 8 --epochs 1 feats.dhs > h-deephash.dhm
printf 'input 1 4 4\nconv 2 k3 p1 name=c\nbn\nrelu\nfc 8 name=z\nfeature z\n' > tiny.net
dh-pretrain $q --net tiny.net --epochs 1 --batch 2 -o net.dhm im-gray.dhs
dh-feats $q -m net.dhm im-gray.dhs > feats-net.dhs
dh-inithash $q --method lsh --bits 8 feats-net.dhs > h-net.dhm
dh-finetune $q -m net.dhm --hash h-net.dhm --epochs 1 --batch 2 -o deep.dhm im-gray.dhs
for m in h-lsh h-sh h-ksh h-deephash net deep; do cp $m.dhm "$M/model-$m"; done
cp h-ksh.dhm "$S/model-ksh"
cp feats.dhs "$M/not-a-model-features"

# ---- codes, rankings (dh-encode, dh-rank)
dh-encode $q -m h-lsh.dhm feats.dhs > codes.dhs
dh-encode $q -m deep.dhm im-gray.dhs > codes-deep.dhs
dh-rank $q --db codes.dhs --top 3 codes.dhs > rank.dhs
cp codes.dhs "$S/codes"
cp codes-deep.dhs "$S/codes-deep"
cp rank.dhs "$S/rankings"

# ---- concatenation, several chunks, empty streams, cuts (dh-stream(5))
cat feats.dhs feats.dhs > "$S/concat-2"
cat feats.dhs feats.dhs | dh-cat > "$S/two-chunks"
dh-head -n 0 feats.dhs > empty.dhs
cp empty.dhs "$S/empty"
cat empty.dhs feats.dhs empty.dhs > "$S/concat-empty"
cat feats.dhs codes.dhs > "$S/concat-mismatch"
dh-head -n 2 codes12.dhs > "$S/head-2"
n=$(wc -c < feats.dhs)
head -c $((n - 1)) feats.dhs > "$S/cut-trailer"
head -c $((n / 2)) feats.dhs > "$S/cut-chunk"
head -c 20 feats.dhs > "$S/cut-header"

# ---- edge cases no program writes: the manual's Python writer
/usr/bin/python3 - "$S" <<'PYEOF'
import sys, zlib, msgpack, numpy as np
out = sys.argv[1]
def stream(kind, fields, chunks, meta=None, damage=None):
    head = msgpack.packb({"format": "deephash-stream", "version": 1, "kind": kind, "fields": fields,
                          "meta": meta if meta is not None else {}})
    body, crc, rows = b"", 0, 0
    for n, cols in chunks:
        c = zlib.crc32(b"".join(cols))
        for col in cols: crc = zlib.crc32(col, crc)
        body += msgpack.packb({"rows": n, "cols": cols, "crc": c})
        rows += n
    tail = msgpack.packb({"end": True, "rows": rows, "chunks": len(chunks), "crc": crc,
                          "header_crc": zlib.crc32(head)})
    return head + body + tail
def var(rows, es=1):  # a variable-length column: u32 lengths (in elements), then the data
    return np.array([len(r) // es for r in rows], "<u4").tobytes() + b"".join(rows)
f64 = [{"name": "x", "dtype": "f64", "shape": [2, 2]}]
open(out + "/f64-2d", "wb").write(stream("features", f64, [(2, [np.arange(8, dtype="<f8").tobytes()])]))
vf = [{"name": "v", "dtype": "f32", "shape": [-1]}, {"name": "s", "dtype": "str", "shape": []}]
open(out + "/variable", "wb").write(stream("lists", vf, [
    (3, [var([b"", np.ones(2, "<f4").tobytes(), np.ones(1, "<f4").tobytes()], 4), var([b"a", b"", b"ccc"])]),
    (1, [var([np.ones(3, "<f4").tobytes()], 4), var([b"\xff\x00"])])]))
meta = {"classes": ["a", "b"], "nested": {"m": {"list": [1, -2, 3.5, None, True, [], {}], "big": 2**64 - 1}},
        "neg": -2**63, "f": 1e300, "bin": b"\x00\x01"}
open(out + "/meta-nested", "wb").write(stream("features", [{"name": "label", "dtype": "i32", "shape": []}],
                                            [(1, [b"\x01\x00\x00\x00"])], meta))
open(out + "/no-fields", "wb").write(stream("nothing", [], []))
bits = [{"name": "code", "dtype": "bits", "shape": [3]}]
open(out + "/bits-3", "wb").write(stream("codes", bits, [(2, [b"\x05\x02"])]))
many = [{"name": "f%d" % i, "dtype": "u8", "shape": [1]} for i in range(32)]
open(out + "/fields-32", "wb").write(stream("wide", many, [(1, [bytes([i]) for i in range(32)])]))
dims = [{"name": "t", "dtype": "u8", "shape": [1] * 8}]
open(out + "/dims-8", "wb").write(stream("deep", dims, [(1, [b"\x07"])]))
good = stream("features", [{"name": "label", "dtype": "i32", "shape": []}], [(1, [b"\x01\x00\x00\x00"])])
bad = bytearray(good); bad[-20] ^= 1
open(out + "/damaged-crc", "wb").write(bytes(bad))
open(out + "/version-2", "wb").write(good.replace(b"\xa7version\x01", b"\xa7version\x02"))
PYEOF

# ---- .npy seeds: what dh-npy export writes, and headers by hand
dh-npy export --field z feats.dhs > "$N/export-f4"
dh-npy export --field label feats.dhs > "$N/export-labels-i4"
dh-npy export --field code codes12.dhs > "$N/export-bits-packed"
dh-npy export --field code --unpack codes12.dhs > "$N/export-bits-01"
dh-npy export --field v ints.dhs > "$N/export-i8"
dh-npy export --field pixels im-gray.dhs > "$N/export-u1-3d"
cp z8.npy "$N/f8"
cp y.npy "$N/labels-u1"
{ npy_header '|b1' '(3, 8)'; head -c 24 /dev/zero; } > "$N/b1"
{ npy_header '<f4' '(0, 5)'; } > "$N/zero-rows"
{ npy_header '<u4' '(2,)'; printf '\1\0\0\0\2\0\0\0'; } > "$N/u4"
# a version 2.0 header (4-byte length) and a Fortran-ordered one
/usr/bin/python3 -c "
import struct, sys
d = b\"{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }\"
d += b' ' * ((64 - (12 + len(d) + 1) % 64) % 64) + b'\\n'
sys.stdout.buffer.write(b'\\x93NUMPY\\x02\\x00' + struct.pack('<I', len(d)) + d + struct.pack('<2i', 1, 2))" > "$N/v2"
{ npy_header '<f4' '(1, 1)' | sed 's/False/True /'; printf '\0\0\0\0'; } > "$N/fortran"
echo "gen-corpus: $(ls "$S" | wc -l) stream, $(ls "$M" | wc -l) model, $(ls "$N" | wc -l) npy seeds"
