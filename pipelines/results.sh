#!/usr/bin/env bash
# pipelines/results.sh WORKDIR [PAPER] — a Markdown results table from the
# dh-map --json files in WORKDIR/results, beside the paper's numbers
# (PAPER = cifar10 or mnist: Tables 2 and 3 of Mu & Liu 2017), with the
# wall time of each model's training stage (WORKDIR/*.dhm.time).
set -euo pipefail
W=$1; PAPER=${2:-}
exec python3 - "$W" "$PAPER" <<'PY'
import glob, json, os, sys
W, paper = sys.argv[1], sys.argv[2]
PAPERS = {
 "cifar10": {"lsh": (0.1311, 0.1619, 0.2034), "itq": (0.2711, 0.2825, 0.2909), "pcah": (0.2056, 0.1867, 0.1695),
             "sh": (0.1935, 0.1921, 0.1750), "ldah": (0.2187, 0.1794, 0.1587), "bre": (0.2552, 0.2668, 0.2864),
             "mlh": (0.1737, 0.1675, 0.1737), "ksh": (0.3441, 0.4617, 0.5482),
             "random": (0.5728, 0.6503, 0.6585), "deephash": (0.4986, 0.5588, 0.5966), "finetune": (0.6874, 0.7289, 0.7410),
             "ftfeat": (0.6874, 0.7289, 0.7410)},
 "mnist": {"lsh": (0.3717, 0.4933, 0.5725), "itq": (0.7578, 0.8132, 0.8293), "pcah": (0.4997, 0.4607, 0.3641),
           "sh": (0.5175, 0.5330, 0.4898), "ldah": (0.5052, 0.3685, 0.3093), "bre": (0.6950, 0.7498, 0.7785),
           "mlh": (0.6731, 0.4404, 0.4258), "ksh": (0.9537, 0.9713, 0.9817),
           "random": (0.9806, 0.9862, 0.9873), "deephash": (0.9673, 0.9753, 0.9796), "finetune": (0.9918, 0.9931, 0.9938)},
}
LABEL = {"cifar10": "CIFAR-10", "mnist": "MNIST: the paper has no Fashion-MNIST figures; MNIST is the closest, and easier"}
NAMES = {"finetune": "DeepHash, fine-tuned (stage 3)", "ftfeat": "DeepHash, stage 3 on the hash layer only (--features, frozen backbone)", "deephash": "DeepHash, pre-training only (stages 1+2)",
         "random": "DeepHash, random init. (stage 3 from scratch)"}
res = {}
for f in glob.glob(os.path.join(W, "results", "*.json")):
    name = os.path.basename(f)[:-5]
    try:
        j = json.load(open(f))
    except Exception:
        continue
    parts = name.split("-")
    bits = int(parts[-1])
    method = parts[1] if parts[0] == "hash" else parts[0]
    t = None
    model = os.path.join(W, "-".join(parts) + ".dhm.time")
    if os.path.exists(model):
        t = float(open(model).read().split()[-1])
    res.setdefault(method, {})[bits] = (j["mAP"], j.get("mAP_tie_aware"), t, j["queries"], j["database"])
bits = sorted({b for m in res.values() for b in m})
order = ["finetune", "ftfeat", "deephash", "random", "ksh", "sdh", "bre", "mlh", "itq", "pcah", "sh", "ldah", "lsh"]
methods = [m for m in order if m in res] + sorted(m for m in res if m not in order)
P = PAPERS.get(paper, {})
q = next(iter(next(iter(res.values())).values())) if res else None
print(f"Tie-aware mAP over the whole Hamming ranking (the expected AP under a random order among equal distances; with ties in database order in brackets)"
      + (f", {q[3]} queries against {q[4]} database items" if q else "") + "."
      + (f" Paper column: Mu & Liu 2017 Tables 2-3 on {LABEL.get(paper, paper)}." if P else "") + "\n")
hdr = "| method | " + " | ".join(f"{b} bits" for b in bits) + " | training time (s) |"
if P: hdr += f" paper, {paper.upper()} (12 / 24 / 48 bits) |"
print(hdr)
print("|" + "---|" * (len(bits) + 2 + (1 if P else 0)))
for m in methods:
    cells = []
    times = []
    for b in bits:
        v = res[m].get(b)
        cells.append((f"{v[1]:.4f} ({v[0]:.4f})" if v[1] is not None else f"({v[0]:.4f})") if v else "")
        if v and v[2] is not None: times.append(f"{v[2]:.0f}")
    row = f"| {NAMES.get(m, m.upper())} | " + " | ".join(cells) + f" | {' / '.join(times)} |"
    if P: row += " " + (" / ".join(f"{x:.4f}" for x in P[m]) if m in P else "–") + " |"
    print(row)
PY
