"""A/B of the paper's CNNs between two checkouts, side by side: ``benchmarks/cnn_case.py`` in fresh
processes, alternating A and B, ``--rounds`` times per case; prints and writes training / inference
samples/s and peak resident memory (ranges over the rounds).

    python benchmarks/cnn_ab.py --a /path/to/old/checkout --b . --rounds 2 --out benchmarks/results/cnn_ab_2core
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = [("nmnist-cnn", 1, 300, 3), ("nmnist-cnn", 8, 300, 3), ("nmnist-cnn", 32, 300, 2),
         ("dvs-gesture", 1, 300, 3), ("dvs-gesture", 8, 300, 2), ("dvs-gesture", 16, 300, 1),
         ("dvs-gesture", 32, 300, 1),
         ("dvs-gesture", 1, 1450, 1)]
SCRIPT = Path(__file__).resolve().parent / "cnn_case.py"


def run(checkout, case, batch, T, steps):
    env = dict(os.environ, PYTHONPATH=str(checkout))
    p = subprocess.run([sys.executable, str(SCRIPT), case, str(batch), "--T", str(T), "--steps", str(steps)],
                       cwd=checkout, env=env, capture_output=True, text=True, timeout=5400)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--cases", help="comma-separated case:batch:T (default: all)")
    args = ap.parse_args()
    cases = CASES
    if args.cases:
        want = {tuple(c.split(":")) for c in args.cases.split(",")}
        cases = [c for c in CASES if (c[0], str(c[1]), str(c[2])) in want]
    rows = []
    for case, batch, T, steps in cases:
        res = {"A": [], "B": []}
        for k in range(args.rounds):
            for name in (("A", "B") if k % 2 == 0 else ("B", "A")):
                r = run(Path(args.a if name == "A" else args.b).resolve(), case, batch, T, steps)
                res[name].append(r)
                print(case, batch, T, name, r, flush=True)
        rows.append({"case": case, "batch": batch, "T": T, "runs": res})

    def rng(vals, fmt):
        return f"{fmt.format(min(vals))}-{fmt.format(max(vals))}" if vals else "error"
    lines = ["| case | batch | T | A train | B train | A inference | B inference | A peak MB | B peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for key, fmt in (("train_samples_per_s", "{:.2f}"), ("infer_samples_per_s", "{:.2f}"), ("peak_mb", "{:.0f}")):
            for name in ("A", "B"):
                cells.append(rng([x[key] for x in r["runs"][name] if key in x], fmt))
        lines.append(f"| {r['case']} | {r['batch']} | {r['T']} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps({"a": args.a, "b": args.b, "rows": rows}, indent=1))
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
