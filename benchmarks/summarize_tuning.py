"""Summarise tuning runs from their validation accuracy only (never test accuracy).

    python benchmarks/summarize_tuning.py RUNS_DIR

For every run directory under RUNS_DIR (each with a metrics.jsonl written by ``pysrm train
--val-split``) prints: epochs done, the best validation accuracy and its epoch, the mean of the
last three epochs' validation accuracy, and the mean training time per epoch.  The test accuracy in
metrics.jsonl is deliberately not read.
"""
import json
import os
import sys


def summarize(root):
    rows = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "metrics.jsonl")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        if recs and min(r["epoch"] for r in recs) == 0:  # files written before epochs counted from 1
            recs = [dict(r, epoch=r["epoch"] + 1) for r in recs]
        recs = [r for r in recs if r.get("val_acc") is not None]
        if not recs:
            rows.append((name, 0, float("nan"), -1, float("nan"), float("nan")))
            continue
        val = [r["val_acc"] for r in recs]
        best = max(range(len(val)), key=val.__getitem__)
        last3 = sum(val[-3:]) / len(val[-3:])
        sec = sum(r.get("seconds", 0.0) for r in recs) / len(recs)
        rows.append((name, len(recs), 100 * val[best], recs[best]["epoch"], 100 * last3, sec))
    print(f"{'run':<28} {'epochs':>6} {'val best':>9} {'(ep)':>5} {'val last3':>10} {'s/epoch':>8}")
    for name, n, vb, ep, l3, sec in rows:
        print(f"{name:<28} {n:>6} {vb:>9.1f} {ep:>5} {l3:>10.1f} {sec:>8.1f}")


if __name__ == "__main__":
    summarize(sys.argv[1] if len(sys.argv) > 1 else "runs/tune")
