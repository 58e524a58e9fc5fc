#!/usr/bin/env bash
# pipelines/deep-table.sh [OPTIONS] DIR — the deep-methods comparison
# (pipelines/experiment.mk, make deep-methods) as one Markdown table, from
# the dh-map --json files DIR/METHOD-BITS-sSEED.json and the training wall
# times DIR/METHOD-BITS-sSEED.dhm.time.
#   --methods "A B ..."  the methods (default: every one found)
#   --bits "12 24 ..."   the code lengths (default: every one found)
#   --seeds "1 2 3"      the seeds; the first ranks the methods (default: 1 2 3)
#   --top N              without --table: print the N best methods (mean tie-aware mAP
#                        over the bit lengths at the first seed; a missing run counts 0;
#                        stage2, the common start, is never among them)
#   --table              the table (with --top N: the runs expected for the N best
#                        at every seed); exit 1 when an expected run is missing
#   --all-seeds          with --table: every method at every seed, in the order of
#                        --methods, and each method's gain over the first (paired by
#                        seed: mean +- sd of the differences)
#   --title TEXT         the table's first words (default: the deep hashing losses')
set -euo pipefail
methods= bits= seeds="1 2 3" top=0 table=0 all=0 title=""
while [ $# -gt 1 ]; do
  case $1 in
    --methods) methods=$2; shift 2 ;;
    --bits) bits=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --table) table=1; shift ;;
    --all-seeds) all=1; shift ;;
    --title) title=$2; shift 2 ;;
    *) echo "deep-table.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# = 1 ] || { echo "usage: deep-table.sh [--methods L] [--bits L] [--seeds L] [--top N] [--table] DIR" >&2; exit 2; }
exec /usr/bin/python3 - "$1" "$methods" "$bits" "$seeds" "$top" "$table" "$all" "$title" <<'PY'
import glob, json, math, os, re, sys
D, methods, bits, seeds, top, table = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5]), sys.argv[6] == "1"
all_seeds, title = sys.argv[7] == "1", sys.argv[8]
runs = {}  # (method, bits, seed) -> dict
for f in glob.glob(os.path.join(D, "*-*-s*.json")):
    m = re.fullmatch(r"(.+)-(\d+)-s(\d+)\.json", os.path.basename(f))
    if not m: continue
    try: j = json.load(open(f))
    except Exception: continue
    t = None
    tf = f[:-5] + ".dhm.time"
    if os.path.exists(tf):
        try: t = float(open(tf).read().split()[-1])
        except Exception: t = None
    def ta(x): return x.get("tie_aware", x.get("value")) if isinstance(x, dict) else None
    runs[(m.group(1), int(m.group(2)), m.group(3))] = {
        "map": j.get("mAP_tie_aware", j.get("mAP")), "map_db": j.get("mAP"),
        "at_r": ta(j.get("mAP_at_R") or {}), "R": (j.get("mAP_at_R") or {}).get("R"),
        "p_r": ta(j.get("precision_at_radius") or {}), "radius": (j.get("precision_at_radius") or {}).get("radius"),
        "time": t, "queries": j.get("queries"), "database": j.get("database")}
if not methods: methods = sorted({k[0] for k in runs})
B = [int(b) for b in bits] if bits else sorted({k[1] for k in runs})
s1 = seeds[0]
def score(m): return sum((runs.get((m, b, s1)) or {}).get("map") or 0.0 for b in B) / max(len(B), 1)
ranked = list(methods) if all_seeds else sorted(methods, key=lambda m: -score(m))
best = list(methods) if all_seeds else [m for m in ranked if m != "stage2"][:top] if top > 0 else []
if not table:
    print(" ".join(best)); sys.exit(0)
def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs: return None, None, 0
    mu = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return mu, sd, len(xs)
def fmt(xs, d=4):
    mu, sd, n = stats(xs)
    if mu is None: return "–"
    return f"{mu:.{d}f}" + (f" ± {sd:.{d}f}" if sd is not None else "")
NAMES = {"deephash": "deephash (default: --loss balanced)", "paper": "deephash (--loss paper)",
         "stage2": "stage 2 only (the common start, no fine-tuning)",
         "features": "stage 3 on the hash layer (--features, frozen backbone)",
         "joint": "stage 3 joint (network and hash layer)"}
any_run = next(iter(runs.values()), None)
R = next((r["R"] for r in runs.values() if r["R"]), 1000); rad = next((r["radius"] for r in runs.values() if r["radius"] is not None), 2)
print((title + " (" if title else "Deep hashing losses, one trainer, one stage-2 start (dh-finetune --loss; ") + f"{os.path.basename(os.path.normpath(D))})"
      + (f": {any_run['queries']} queries against {any_run['database']} database rows" if any_run else "") + ". "
      f"Tie-aware values (dh-map(1)): mAP over the whole ranking, mAP@{R}, precision within Hamming radius {rad}; "
      f"training time = the training run's wall time. "
      + (f"Mean ± sd over seeds {', '.join(seeds)} for every row.\n" if all_seeds else
         f"Seed {s1} for every method"
         + (f"; mean ± sd over seeds {', '.join(seeds)} for the top {len(best)}" if best and len(seeds) > 1 else "")
         + ". Methods ranked by the mean mAP over the bit lengths (seed " + s1 + ").\n"))
print("| method | " + " | ".join(f"{b} bits" for b in B) + " |")
print("|---|" + "---|" * len(B))
def seeds_of(m): return seeds if m in best else [s1]
for m in ranked:
    print(f"| {NAMES.get(m, m)} | " + " | ".join(fmt([(runs.get((m, b, s)) or {}).get("map") for s in seeds_of(m)]) for b in B) + " |")
print()
print(f"| method | bits | seeds | mAP | mAP@{R} | P@r≤{rad} | training time (s) |")
print("|---|---|---|---|---|---|---|")
missing = []
for m in ranked:
    for b in B:
        rs = [runs.get((m, b, s)) for s in seeds_of(m)]
        missing += [f"{m}-{b}-s{s}" for s, r in zip(seeds_of(m), rs) if r is None]
        rs = [r for r in rs if r]
        if not rs: continue
        print(f"| {NAMES.get(m, m)} | {b} | {len(rs)} | " + " | ".join(fmt([r[k] for r in rs]) for k in ("map", "at_r", "p_r"))
              + f" | {fmt([r['time'] for r in rs], 1)} |")
if all_seeds and len(ranked) > 1:
    m0 = ranked[0]
    print(f"\nGain over {NAMES.get(m0, m0)}: tie-aware mAP difference paired by seed, mean ± sd.\n")
    print("| method | " + " | ".join(f"{b} bits" for b in B) + " |")
    print("|---|" + "---|" * len(B))
    for m in ranked[1:]:
        cells = []
        for b in B:
            d = [(runs.get((m, b, s)) or {}).get("map") for s in seeds]
            z = [(runs.get((m0, b, s)) or {}).get("map") for s in seeds]
            cells.append(fmt([x - y if x is not None and y is not None else None for x, y in zip(d, z)]))
        print(f"| {NAMES.get(m, m)} | " + " | ".join(c if c.startswith(("-", "–")) else "+" + c for c in cells) + " |")
if missing:
    print(f"\nMissing (failed or not run): {' '.join(missing)}")
    sys.exit(1)
PY
