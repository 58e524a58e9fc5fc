#!/usr/bin/env bash
# tests/cli/ingest.sh — dh-ingest end to end on sources made here: a folder
# tree of PNG and JPEG images packed as tar, tar.gz, tar.bz2, tar.xz and zip
# (by the tar and zip commands), a CIFAR-10 binary tarball, IDX files; then
# every bad input (one stderr line, non-zero exit, nothing on stdout).
# The images themselves come from `test_ingest --fixtures DIR`.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
: "${DH_TESTS:=build/rel/tests}"
FX=$TMP/fx
if ! "$DH_TESTS/test_ingest" --fixtures "$FX" >/dev/null 2>&1; then
  t_begin fixtures; t_fail "test_ingest --fixtures failed"; t_end; exit 1
fi

cat > "$TMP/rd.py" <<'EOF'
# Read an images stream; print facts as key=value, or check pixels.
import msgpack, sys, json
import numpy as np
def read(path):
    u = msgpack.Unpacker(open(path, 'rb'), raw=False, max_buffer_size=1 << 30)
    hdr = next(u); f = hdr['fields']; cols = {x['name']: [] for x in f}; trailer = None
    for o in u:
        if o.get('end'): trailer = o; continue
        n = o['rows']
        for fd, b in zip(f, o['cols']):
            if fd['dtype'] == 'str':
                lens = np.frombuffer(b[:4 * n], '<u4'); off = 4 * n
                for l in lens: cols[fd['name']].append(b[off:off + int(l)].decode()); off += int(l)
            else:
                dt = {'u8': 'u1', 'i32': '<i4'}[fd['dtype']]
                cols[fd['name']].append(np.frombuffer(b, dt).reshape((n,) + tuple(fd['shape'])))
    for fd in f:
        if fd['dtype'] != 'str': cols[fd['name']] = np.concatenate(cols[fd['name']]) if cols[fd['name']] else np.zeros(0)
    return hdr, cols, trailer
cmd = sys.argv[1]; h, c, t = read(sys.argv[2]); m = h['meta']
if cmd == 'facts':
    print('kind=%s n=%d shape=%s classes=%s counts=%s split=%s format=%s trailer=%s' % (
        h['kind'], len(c['id']), 'x'.join(map(str, h['fields'][0]['shape'])), ','.join(m['classes']),
        ','.join(map(str, m['class_counts'])), m['split'], m['format'], 'yes' if t else 'no'))
    print('ids=' + ','.join(c['id']))
    print('labels=' + ','.join(map(str, c['label'])))
elif cmd == 'pixels':   # the PNG images of the tree: exact pattern
    ok = True
    s_of = {'train': 0, 'test': 1}
    for i, id_ in enumerate(c['id']):
        parts = id_.split('/'); s, k, idx = parts[-3], parts[-2], parts[-1]
        if not idx.endswith('.png'): continue
        kk = m['classes'].index(k); ii = int(idx.split('.')[0])
        C, H, W = c['pixels'].shape[1:]
        ch, y, x = np.meshgrid(np.arange(3), np.arange(H), np.arange(W), indexing='ij')
        want = (s_of[s] * 53 + kk * 31 + ii * 17 + ch * 7 + y * 3 + x * 5) & 255
        if not (c['pixels'][i] == want).all(): ok = False; print('mismatch', id_)
    print('pixels=' + ('ok' if ok else 'bad'))
elif cmd == 'same':     # same pixels and labels as another stream
    h2, c2, t2 = read(sys.argv[3])
    print('same=' + ('yes' if (c['pixels'] == c2['pixels']).all() and (c['label'] == c2['label']).all() else 'no'))
EOF
facts() { $PY "$TMP/rd.py" facts "$1" 2>/dev/null; }
has() { grep -q -- "$2" "$1"; }

# --- help, version, usage ---------------------------------------------------
t_begin help_version
dh-ingest --help > "$TMP/h" 2>"$TMP/e" || t_fail "--help exit"
has "$TMP/h" "Usage: dh-ingest" || t_fail "--help text"
[ -s "$TMP/e" ] && t_fail "--help wrote stderr"
dh-ingest --version | grep -q '^dh-ingest (deephash) ' || t_fail "--version"
t_end
expect_fail usage_no_source dh-ingest
expect_fail usage_bad_resize dh-ingest --resize 32 "$FX/tree"
expect_fail usage_bad_format dh-ingest --format gif "$FX/tree"
expect_fail usage_bad_limit dh-ingest --limit -3 "$FX/tree"
t_begin usage_exit_status
dh-ingest --limit abc "$FX/tree" >/dev/null 2>&1; [ $? = 2 ] || t_fail "exit status not 2"
t_end

# --- the tree as a folder ------------------------------------------------------
t_begin folder_train
dh-ingest -q --split train "$FX/tree" > "$TMP/dir.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
facts "$TMP/dir.dhs" > "$TMP/f"
has "$TMP/f" "kind=images n=6 shape=3x6x8 classes=cat,dog,emu counts=3,3,0 split=train format=images trailer=yes" || t_fail "facts: $(head -1 "$TMP/f")"
has "$TMP/f" "ids=train/cat/0.png,train/cat/1.png,train/cat/2.png,train/dog/0.jpg,train/dog/1.jpg,train/dog/2.png" || t_fail "order: $(sed -n 2p "$TMP/f")"
has "$TMP/f" "labels=0,0,0,1,1,1" || t_fail "labels"
$PY "$TMP/rd.py" pixels "$TMP/dir.dhs" | grep -q pixels=ok || t_fail "PNG pixels not exact"
[ -s "$TMP/e" ] && t_fail "--quiet wrote stderr: $(cat "$TMP/e")"
t_end

t_begin folder_test_split_and_all
dh-ingest -q --split test "$FX/tree" > "$TMP/t.dhs" && facts "$TMP/t.dhs" > "$TMP/f" || t_fail exit
has "$TMP/f" "n=2 .*counts=1,0,1 split=test" || t_fail "$(head -1 "$TMP/f")"
dh-ingest -q --split all "$FX/tree" > "$TMP/a.dhs" && facts "$TMP/a.dhs" > "$TMP/f" || t_fail exit
has "$TMP/f" "n=8 .*split=all" || t_fail "$(head -1 "$TMP/f")"
t_end

# --- the same tree in archives: same pixels and labels -------------------------
(cd "$FX/tree" && tar cf "$FX/tree.tar" . && tar czf "$FX/tree2.tar.gz" .) || { t_begin make_archives; t_fail "tar"; t_end; }
(cd "$FX/tree" && command -v bzip2 >/dev/null && tar cjf "$FX/tree.tar.bz2" .)
(cd "$FX/tree" && command -v xz >/dev/null && tar cJf "$FX/tree.tar.xz" .)
(cd "$FX/tree" && command -v zip >/dev/null && zip -qr "$FX/tree.zip" .)
for a in tree.tar tree2.tar.gz tree.tar.bz2 tree.tar.xz tree.zip; do
  [ -f "$FX/$a" ] || { t_skip "archive_${a#tree}" "could not make one (bzip2, xz or zip missing)"; continue; }
  t_begin "archive_${a#tree}"
  dh-ingest -q --split train "$FX/$a" > "$TMP/ar.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
  facts "$TMP/ar.dhs" > "$TMP/f"
  has "$TMP/f" "n=6 shape=3x6x8 classes=cat,dog,emu counts=3,3,0 split=train" || t_fail "$(head -1 "$TMP/f")"
  $PY "$TMP/rd.py" same "$TMP/ar.dhs" "$TMP/dir.dhs" | grep -q same=yes || t_fail "differs from the folder"
  t_end
done
t_begin archive_stdin
dh-ingest -q --split train - < "$FX/tree2.tar.gz" > "$TMP/in.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
$PY "$TMP/rd.py" same "$TMP/in.dhs" "$TMP/dir.dhs" | grep -q same=yes || t_fail "differs"
t_end

# --- options ------------------------------------------------------------------------
t_begin shuffle_seed_deterministic
dh-ingest -q --split all --shuffle --seed 5 "$FX/tree" > "$TMP/s1.dhs"
dh-ingest -q --split all --shuffle --seed 5 "$FX/tree" > "$TMP/s2.dhs"
dh-ingest -q --split all --shuffle --seed 6 "$FX/tree" > "$TMP/s3.dhs"
cmp -s "$TMP/s1.dhs" "$TMP/s2.dhs" || t_fail "same seed, different bytes"
[ "$(facts "$TMP/s1.dhs" | sed -n 2p)" != "$(facts "$TMP/s3.dhs" | sed -n 2p)" ] || t_fail "seeds 5 and 6 give one order"
[ "$(facts "$TMP/s1.dhs" | sed -n 2p)" != "$(facts "$TMP/a.dhs" | sed -n 2p)" ] || t_fail "shuffle kept the sorted order"
t_end

t_begin limit_per_class
dh-ingest -q --split train --per-class 2 "$FX/tree" > "$TMP/p.dhs" && facts "$TMP/p.dhs" > "$TMP/f" || t_fail exit
has "$TMP/f" "n=4 .*counts=2,2,0" || t_fail "per-class: $(head -1 "$TMP/f")"
dh-ingest -q --split train --limit 4 "$FX/tree" > "$TMP/p.dhs" && facts "$TMP/p.dhs" > "$TMP/f" || t_fail exit
has "$TMP/f" "n=4 .*counts=3,1,0" || t_fail "limit: $(head -1 "$TMP/f")"
t_end

t_begin gray_rgb_resize
dh-ingest -q --split train --gray "$FX/tree" > "$TMP/g.dhs" && facts "$TMP/g.dhs" | grep -q "shape=1x6x8" || t_fail gray
dh-ingest -q --split train --resize 4x3 "$FX/tree" > "$TMP/r.dhs" && facts "$TMP/r.dhs" | grep -q "shape=3x3x4" || t_fail resize
dh-ingest -q --rgb "$FX/idx" --split test > "$TMP/r.dhs" && facts "$TMP/r.dhs" | grep -q "shape=3x5x4" || t_fail "rgb idx"
t_end

t_begin output_file
dh-ingest -q --split train -o "$TMP/o.dhs" "$FX/tree" || t_fail exit
$PY "$TMP/rd.py" same "$TMP/o.dhs" "$TMP/dir.dhs" | grep -q same=yes || t_fail "-o differs from stdout"
facts "$TMP/o.dhs" | grep -q "trailer=yes" || t_fail "no trailer"
ls "$TMP"/.o.dhs.tmp* >/dev/null 2>&1 && t_fail "temporary file left"
t_end

t_begin report_on_stderr
dh-ingest --split train "$FX/tree" 2>"$TMP/e" >/dev/null || t_fail exit
grep -q "^dh-ingest: .*6 images, 3 classes" "$TMP/e" || t_fail "no report: $(cat "$TMP/e")"
t_end

# --- CIFAR-10 binary and IDX -----------------------------------------------------------
t_begin cifar_binary
dh-ingest -q --split train "$FX/cifar-bin.tar.gz" > "$TMP/c.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
facts "$TMP/c.dhs" > "$TMP/f"
has "$TMP/f" "n=5 shape=3x32x32 classes=airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck .*split=train format=cifar-binary trailer=yes" || t_fail "$(head -1 "$TMP/f")"
has "$TMP/f" "labels=0,1,2,3,4" || t_fail "labels: $(sed -n 3p "$TMP/f")"
dh-ingest -q --split test --format cifar-binary "$FX/cifar-bin.tar.gz" > "$TMP/c.dhs" && facts "$TMP/c.dhs" | grep -q "n=2 " || t_fail "test split"
t_end

t_begin idx_folder_and_pair
dh-ingest -q --split train "$FX/idx" > "$TMP/i.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
facts "$TMP/i.dhs" | grep -q "n=7 shape=1x5x4 classes=0,1,2 counts=3,2,2 split=train format=idx" || t_fail "$(facts "$TMP/i.dhs" | head -1)"
dh-ingest -q "$FX/idx/train-images-idx3-ubyte.gz" "$FX/idx/train-labels-idx1-ubyte.gz" > "$TMP/i2.dhs" || t_fail "pair"
$PY "$TMP/rd.py" same "$TMP/i.dhs" "$TMP/i2.dhs" | grep -q same=yes || t_fail "pair differs"
dh-ingest -q --classes a,b,c --split test "$FX/idx" > "$TMP/i3.dhs" && facts "$TMP/i3.dhs" | grep -q "classes=a,b,c" || t_fail "--classes"
t_end

# --- bad input: one line, non-zero, nothing on stdout (so no trailer) ------------------
nothing_out() { t_begin "$1_no_output"; [ -s "$TMP/ef.out" ] && t_fail "stdout not empty"; t_end; }
head -c $(( $(wc -c < "$FX/tree2.tar.gz") / 2 )) "$FX/tree2.tar.gz" > "$TMP/cut.tar.gz"
head -c $(( $(wc -c < "$FX/tree.tar") * 2 / 3 )) "$FX/tree.tar" > "$TMP/cut.tar"
printf 'hello, not an archive\n' > "$TMP/junk.bin"
mkdir -p "$TMP/badtree/s/a" "$TMP/mixed/s/a" "$TMP/layout/a/b" "$TMP/layout/c"
cp "$FX/img/one.png" "$TMP/badtree/s/a/0.png"; cp "$FX/img/cut.jpg" "$TMP/badtree/s/a/1.jpg"; cp "$FX/img/one.jpg" "$TMP/badtree/s/a/2.jpg"
cp "$FX/img/one.png" "$TMP/mixed/s/a/0.png"; cp "$FX/img/small.png" "$TMP/mixed/s/a/1.png"
cp "$FX/img/one.png" "$TMP/layout/a/b/0.png"; cp "$FX/img/one.png" "$TMP/layout/c/1.png"
(cd "$TMP/badtree" && tar czf "$TMP/badtree.tar.gz" .)

expect_fail bad_truncated_archive dh-ingest --split train "$TMP/cut.tar.gz"; nothing_out truncated
expect_fail bad_truncated_tar dh-ingest --split train "$TMP/cut.tar"; nothing_out truncated_tar
expect_fail bad_not_an_archive dh-ingest "$TMP/junk.bin"; nothing_out junk
expect_fail bad_missing_file dh-ingest "$TMP/nope.tar"
expect_fail bad_undecodable_image dh-ingest "$TMP/badtree.tar.gz"; nothing_out undecodable
t_begin bad_undecodable_names_member
grep -q "^dh-ingest: $TMP/badtree.tar.gz: member s/a/1.jpg: JPEG" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail bad_mixed_sizes dh-ingest "$TMP/mixed"; nothing_out mixed
t_begin bad_mixed_sizes_message
grep -q "member s/a/1.png: image size 4x4 differs from 8x6 of member s/a/0.png (use --resize WxH)" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail bad_layout dh-ingest "$TMP/layout"
expect_fail bad_unknown_split dh-ingest --split valid "$FX/tree"
t_begin bad_unknown_split_message
grep -q "unknown split 'valid' (the folder has: test, train)" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail bad_several_splits dh-ingest "$FX/tree.tar"
expect_fail bad_labels_mismatch dh-ingest --split train "$FX/idxbad"; nothing_out labels
expect_fail bad_cifar_label dh-ingest --split train "$FX/cifar-badlabel.tar.gz"
expect_fail bad_decoding_limit dh-ingest --max-pixels 20 --split train "$FX/tree"
t_begin bad_decoding_limit_status
dh-ingest --max-pixels 20 --split train "$FX/tree" >/dev/null 2>&1; [ $? = 5 ] || t_fail "exit status not 5"
t_end
expect_fail bad_member_limit dh-ingest --max-member-bytes 50 --split train "$TMP/badtree.tar.gz"
expect_fail bad_output_dir dh-ingest --split train -o "$TMP/no/such/dir/x.dhs" "$FX/tree"

t_begin skip_bad
dh-ingest --skip-bad "$TMP/badtree.tar.gz" > "$TMP/sb.dhs" 2>"$TMP/e" || t_fail "exit: $(cat "$TMP/e")"
facts "$TMP/sb.dhs" | grep -q "n=2 .*trailer=yes" || t_fail "rows"
grep -q "skipped member s/a/1.jpg: JPEG" "$TMP/e" || t_fail "which: $(cat "$TMP/e")"
grep -q "skipped 1 undecodable image" "$TMP/e" || t_fail "how many: $(cat "$TMP/e")"
t_end

# --- images without labels: image files, folders and archives without class folders ---
# ids and field names of a stream, one line: "fields=pixels,id ids=a,b"
cat > "$TMP/ul.py" <<'EOF'
import msgpack, sys, numpy as np
u = msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False); h = next(u); ids = []; px = []
for o in u:
    if o.get('end'): continue
    n = o['rows']; b = o['cols'][-1]; lens = np.frombuffer(b[:4 * n], '<u4'); off = 4 * n
    for l in lens: ids.append(b[off:off + int(l)].decode()); off += int(l)
    px.append(np.frombuffer(o['cols'][0], 'u1'))
print('fields=%s ids=%s classes=%s sum=%d' % (','.join(f['name'] for f in h['fields']), ','.join(ids),
      'classes' in h['meta'], int(np.concatenate(px).astype(np.int64).sum())))
EOF
ul() { $PY "$TMP/ul.py" "$1" 2>&1; }
mkdir -p "$TMP/ul/photos" "$TMP/ul/mixed/cls"
cp "$FX/img/one.png" "$TMP/ul/photos/b.png"; cp "$FX/img/one.jpg" "$TMP/ul/photos/a.jpg"
cp "$FX/img/one.png" "$TMP/ul/mixed/x.png"; cp "$FX/img/one.png" "$TMP/ul/mixed/cls/y.png"
t_begin unlabelled_single_file
dh-ingest -q "$FX/img/one.png" > "$TMP/u1.dhs" || t_fail "exit status"
ul "$TMP/u1.dhs" | grep -q "^fields=pixels,id ids=$FX/img/one.png classes=False" || t_fail "$(ul "$TMP/u1.dhs")"
dh-info "$TMP/u1.dhs" | grep -q 'pixels:u8\[3,6,8\] id:str' || t_fail "dh-info"
# the same pixels as the image read from a class folder
mkdir -p "$TMP/ul/tree/c"; cp "$FX/img/one.png" "$TMP/ul/tree/c/"; dh-ingest -q "$TMP/ul/tree" > "$TMP/tree1.dhs"
[ "$(ul "$TMP/u1.dhs" | sed 's/.*sum=//')" = "$(ul "$TMP/tree1.dhs" | sed 's/.*sum=//')" ] || t_fail "pixels differ"
t_end
t_begin unlabelled_files_in_given_order_gray_resize
dh-ingest -q --gray --resize 5x3 "$FX/img/small.png" "$FX/img/one.jpg" > "$TMP/u2.dhs" || t_fail "exit status"
ul "$TMP/u2.dhs" | grep -q "ids=$FX/img/small.png,$FX/img/one.jpg " || t_fail "order: $(ul "$TMP/u2.dhs")"
dh-info "$TMP/u2.dhs" | grep -q 'pixels:u8\[1,3,5\] id:str' || t_fail "--gray --resize"
t_end
t_begin unlabelled_folder_and_archive
dh-ingest -q "$TMP/ul/photos" > "$TMP/u3.dhs" || t_fail "folder"
ul "$TMP/u3.dhs" | grep -q "^fields=pixels,id ids=a.jpg,b.png classes=False" || t_fail "folder: $(ul "$TMP/u3.dhs")"
(cd "$TMP/ul/photos" && tar czf "$TMP/ul/photos.tar.gz" b.png a.jpg)
dh-ingest -q - < "$TMP/ul/photos.tar.gz" > "$TMP/u4.dhs" || t_fail "archive"
ul "$TMP/u4.dhs" | grep -q "^fields=pixels,id ids=a.jpg,b.png classes=False" || t_fail "archive: $(ul "$TMP/u4.dhs")"
dh-ingest -q --shuffle --seed 3 --limit 1 "$TMP/ul/photos" | dh-info - | grep -q 'rows: *1 ' || t_fail "--limit"
t_end
t_begin unlabelled_report
dh-ingest "$FX/img/one.png" 2>&1 >/dev/null | grep -q "1 image without labels, 3x6x8" || t_fail "summary line"
t_end
expect_fail unlabelled_bad_mixed_layout dh-ingest "$TMP/ul/mixed"; nothing_out unlabelled_mixed
expect_fail unlabelled_bad_image dh-ingest "$FX/img/cut.jpg"; nothing_out unlabelled_bad_image
t_begin unlabelled_bad_image_message
grep -q "^dh-ingest: $FX/img/cut.jpg: JPEG" "$TMP/ef.err" || t_fail "$(cat "$TMP/ef.err")"
t_end
expect_fail unlabelled_bad_second_source dh-ingest "$FX/img/one.png" "$FX/tree.tar.gz"
expect_fail unlabelled_bad_missing_file dh-ingest "$FX/img/one.png" "$TMP/nope.png"
for o in "--per-class 1" "--split train" "--classes a,b"; do
  expect_fail "unlabelled_usage_${o%% *}" dh-ingest $o "$FX/img/one.png"
  t_begin "unlabelled_usage_${o%% *}_status"; dh-ingest $o "$FX/img/one.png" >/dev/null 2>&1; [ $? = 2 ] || t_fail "exit $?"; t_end
done

t_done
