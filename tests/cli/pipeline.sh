#!/usr/bin/env bash
# All eight stages end to end on a small Fashion-MNIST subset (synthetic
# images when the dataset package is absent), on the CPU; the mAP must be
# far above chance, and damaged intermediate files must be rejected by the
# next stage.
. "$(dirname "$0")/../lib.sh"
export DH_DEVICE=cpu
FM=/usr/share/datasets/fashion-mnist
W=$TMP/w; mkdir -p "$W"

if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  src="Fashion-MNIST subset"
  dh-ingest -q --split train --per-class 300 --shuffle --seed 3 -o "$W/train.dhs" "$FM" 2>"$W/err" || { echo "FAIL pipeline_ingest: $(cat "$W/err")"; exit 1; }
  dh-ingest -q --split test --per-class 30 -o "$W/test.dhs" "$FM"
else
  src="synthetic images (dataset-fashion-mnist not installed)"
  echo "SKIP pipeline_real_data: dataset-fashion-mnist not installed; running on synthetic images"
  # 10 classes of 28x28 grey images: a bright bar whose position is the class, plus noise
  /usr/bin/env python3 - "$W" <<'PY' 2>/dev/null || { echo "SKIP pipeline: neither Fashion-MNIST nor python3 available"; exit 0; }
import gzip, os, random, struct, sys
w = sys.argv[1]; random.seed(1)
for split, n in (("train", 3000), ("t10k", 300)):
    imgs, labs = bytearray(), bytearray()
    for i in range(n):
        c = i % 10; labs.append(c)
        for y in range(28):
            for x in range(28):
                v = 200 if 2 + 2 * c <= y < 5 + 2 * c else 0
                imgs.append(max(0, min(255, v + random.randint(-40, 40))))
    gzip.open(f"{w}/{split}-images-idx3-ubyte.gz", "wb").write(struct.pack(">IIII", 2051, n, 28, 28) + bytes(imgs))
    gzip.open(f"{w}/{split}-labels-idx1-ubyte.gz", "wb").write(struct.pack(">II", 2049, n) + bytes(labs))
PY
  dh-ingest -q --split train -o "$W/train.dhs" "$W"
  dh-ingest -q --split test -o "$W/test.dhs" "$W"
fi

t_begin "pipeline_all_stages ($src)"
start=$(date +%s)
dh-pretrain -q --arch lenet --epochs 3 --seed 1 -o "$W/net.dhm" "$W/train.dhs" 2>"$W/err" || t_fail "dh-pretrain: $(tail -1 "$W/err")"
dh-feats -q -m "$W/net.dhm" "$W/train.dhs" > "$W/ftrain.dhs" 2>"$W/err" || t_fail "dh-feats: $(tail -1 "$W/err")"
dh-inithash -q --bits 16 --seed 1 -o "$W/hash.dhm" "$W/ftrain.dhs" 2>"$W/err" || t_fail "dh-inithash: $(tail -1 "$W/err")"
dh-finetune -q -m "$W/net.dhm" --hash "$W/hash.dhm" --epochs 1 --seed 1 -o "$W/dh.dhm" "$W/train.dhs" 2>"$W/err" || t_fail "dh-finetune: $(tail -1 "$W/err")"
dh-encode -q -m "$W/dh.dhm" "$W/train.dhs" > "$W/db.codes" 2>"$W/err" || t_fail "dh-encode db: $(tail -1 "$W/err")"
dh-encode -q -m "$W/dh.dhm" < "$W/test.dhs" > "$W/q.codes" 2>"$W/err" || t_fail "dh-encode query: $(tail -1 "$W/err")"
dh-rank -q --db "$W/db.codes" --top all < "$W/q.codes" > "$W/rank.dhs" 2>"$W/err" || t_fail "dh-rank: $(tail -1 "$W/err")"
dh-map -q --json --db "$W/db.codes" "$W/rank.dhs" > "$W/m1.json" 2>"$W/err" || t_fail "dh-map rankings: $(tail -1 "$W/err")"
dh-map -q --json --query "$W/q.codes" --db "$W/db.codes" > "$W/m2.json" 2>"$W/err" || t_fail "dh-map fast path: $(tail -1 "$W/err")"
m1=$(grep -o '"mAP": [0-9.]*' "$W/m1.json" | grep -o '[0-9.]*$')
m2=$(grep -o '"mAP": [0-9.]*' "$W/m2.json" | grep -o '[0-9.]*$')
# chance is about 0.1 (ten balanced classes)
[ -n "$m1" ] && [ "$(echo "$m1 > 0.3" | bc)" = 1 ] || t_fail "mAP $m1 is not far above chance (0.1)"
[ "$m1" = "$m2" ] || t_fail "rankings path ($m1) and fast path ($m2) disagree"
echo "# pipeline: mAP $m1 at 16 bits on $src in $(( $(date +%s) - start )) s" >&2
t_end

# test-time augmentation of features and codes (the numerics: test_net_recipe's tta_z)
t_begin "feats_encode_tta"
dh-feats -q --tta=flip -m "$W/net.dhm" "$W/test.dhs" > "$W/ftf.dhs" 2>"$W/err" || t_fail "dh-feats --tta=flip: $(tail -1 "$W/err")"
dh-feats -q -m "$W/net.dhm" "$W/test.dhs" > "$W/ft0.dhs" 2>"$W/err" || t_fail "dh-feats: $(tail -1 "$W/err")"
dh-info "$W/ftf.dhs" 2>/dev/null | grep -q 'tta.*flip' || t_fail "dh-feats --tta=flip: meta tta not recorded"
dh-info "$W/ft0.dhs" 2>/dev/null | grep -q 'tta.*none' || t_fail "dh-feats: meta tta none not recorded"
[ "$(dh-info "$W/ftf.dhs" 2>/dev/null | grep -c '^rows: *300')" = 1 ] || t_fail "dh-feats --tta=flip: 300 rows expected"
cmp -s "$W/ftf.dhs" "$W/ft0.dhs" && t_fail "features with and without --tta=flip are identical"
dh-encode -q --tta -m "$W/dh.dhm" "$W/test.dhs" > "$W/qf1.codes" 2>"$W/err" || t_fail "dh-encode --tta: $(tail -1 "$W/err")"
dh-encode -q --tta=full -m "$W/dh.dhm" "$W/test.dhs" > "$W/qf2.codes" 2>"$W/err" || t_fail "dh-encode --tta=full: $(tail -1 "$W/err")"
dh-info "$W/qf1.codes" 2>/dev/null | grep -q 'tta.*full' || t_fail "dh-encode --tta: meta tta not recorded"
dh-map -q --json --query "$W/qf1.codes" --db "$W/db.codes" > "$W/mt.json" 2>"$W/err" || t_fail "dh-map: $(tail -1 "$W/err")"
mt=$(grep -o '"mAP": [0-9.]*' "$W/mt.json" | grep -o '[0-9.]*$')
[ -n "$mt" ] && [ "$(echo "$mt > 0.3" | bc)" = 1 ] || t_fail "mAP $mt of codes with test-time augmentation is not far above chance"
m2=$(dh-map -q --json --query "$W/qf2.codes" --db "$W/db.codes" 2>/dev/null | grep -o '"mAP": [0-9.]*' | grep -o '[0-9.]*$')
[ "$mt" = "$m2" ] || t_fail "plain --tta ($mt) is not --tta=full ($m2)"
echo "# pipeline: mAP with --tta=full queries $mt (plain $m1)" >&2
t_end
expect_fail "feats_rejects_bad_tta" dh-feats -q --tta=mirror -m "$W/net.dhm" "$W/test.dhs"
expect_fail "encode_tta_needs_images" dh-encode -q --tta=flip -m "$W/hash.dhm" "$W/ftrain.dhs"
t_begin "encode_tta_usage_exit"
dh-encode -q --tta=flip -m "$W/hash.dhm" "$W/ftrain.dhs" >/dev/null 2>"$W/err"; rc=$?
[ $rc = 2 ] || t_fail "exit $rc, expected 2"
grep -q 'needs images' "$W/err" || t_fail "message: $(cat "$W/err")"
t_end

# damaged intermediates are rejected by the next stage
head -c $(( $(stat -c %s "$W/ftrain.dhs") - 20 )) "$W/ftrain.dhs" > "$W/ftrain.cut"
expect_fail "inithash_rejects_truncated_features" dh-inithash -q --bits 16 "$W/ftrain.cut"
perl -e 'my $f=shift; open(F,"<:raw",$f); local $/; my $d=<F>; my $o=int(length($d)/2); substr($d,$o,1)=chr(ord(substr($d,$o,1))^4); print $d' "$W/net.dhm" > "$W/net.bad"
expect_fail "feats_rejects_damaged_net" dh-feats -q -m "$W/net.bad" "$W/test.dhs"
head -c $(( $(stat -c %s "$W/db.codes") / 2 )) "$W/db.codes" > "$W/db.cut"
expect_fail "map_rejects_truncated_db" dh-map -q --query "$W/q.codes" --db "$W/db.cut"
expect_fail "rank_rejects_truncated_db" dh-rank -q --db "$W/db.cut" "$W/q.codes"
head -c $(( $(stat -c %s "$W/test.dhs") - 3 )) "$W/test.dhs" > "$W/test.cut"
expect_fail "encode_rejects_truncated_images" dh-encode -q -m "$W/dh.dhm" "$W/test.cut"
expect_fail "encode_rejects_wrong_model_kind" dh-encode -q -m "$W/test.dhs" "$W/test.dhs"

# unlabelled query images (image files) through the features path: dh-feats
# keeps them unlabelled, a shallow hash model encodes them
t_begin "unlabelled_images_through_feats"
if dh-show -q -f files -n 3 -o "$W/qpng" "$W/test.dhs" 2>"$W/err" && dh-ingest -q "$W"/qpng/*.png > "$W/q1.dhs" 2>"$W/err"; then
  dh-feats -q -m "$W/net.dhm" "$W/q1.dhs" > "$W/q1f.dhs" 2>"$W/err" || t_fail "dh-feats: $(tail -1 "$W/err")"
  dh-info "$W/q1f.dhs" 2>/dev/null | grep -q '^fields: *z:f32\[[0-9]*\] id:str$' || t_fail "features of unlabelled images: $(dh-info "$W/q1f.dhs" 2>&1 | grep fields)"
  dh-encode -q -m "$W/hash.dhm" "$W/q1f.dhs" > "$W/q1c.dhs" 2>"$W/err" || t_fail "dh-encode: $(tail -1 "$W/err")"
  [ "$(dh-info "$W/q1c.dhs" 2>/dev/null | sed -n 's/^rows: *\([0-9]*\).*/\1/p')" = 3 ] || t_fail "3 codes expected"
else
  t_fail "dh-show/dh-ingest of image files: $(tail -1 "$W/err")"
fi
t_end

# a stage over a TCP connection (as `ssh host dh-STAGE` would run it)
t_begin "stage_over_tcp"
if command -v socat >/dev/null; then
  # A port below Linux's ephemeral range (32768-60999), so that no outgoing
  # connection of another test holds it. The client connects only once the
  # listener says it listens (socat -d -d); a listener that cannot bind (the
  # port is taken, perhaps by someone else's listener) exits, and another
  # port is tried.
  : > "$W/q.remote"
  got=
  for try in 1 2 3 4 5; do
    port=$(( 10000 + RANDOM % 22000 ))
    # -t 60 on both ends: after the input ends, wait for the stage to finish
    # (socat's default is half a second, then the stage dies of SIGPIPE)
    socat -d -d -t 60 TCP-LISTEN:$port,reuseaddr EXEC:"$DH_BIN/dh-encode -q -m $W/dh.dhm" 2>"$W/socat.err" &
    spid=$!
    # under load the listener may take seconds to start
    for i in $(seq 300); do
      grep -q " listening on " "$W/socat.err" && break
      kill -0 $spid 2>/dev/null || break
      sleep 0.1
    done
    if grep -q " listening on " "$W/socat.err"; then
      socat -t 60 - TCP:127.0.0.1:$port < "$W/test.dhs" > "$W/q.remote" 2>"$W/socat.cerr" && got=1
      wait $spid 2>/dev/null
      break
    fi
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
  done
  if [ -z "$got" ]; then
    t_fail "stage over TCP: $(grep ' E ' "$W/socat.err" | tail -1) $(tail -1 "$W/socat.cerr" 2>/dev/null)"
  else
    cmp -s "$W/q.remote" "$W/q.codes" || t_fail "codes computed over TCP differ from local ones ($(stat -c %s "$W/q.remote") bytes against $(stat -c %s "$W/q.codes"); $(grep ' E ' "$W/socat.err" | tail -1))"
  fi
  t_end
else
  t_skip stage_over_tcp "socat not installed"
fi
t_done
