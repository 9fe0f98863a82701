"""A/B speed comparison of two checkouts of pysrm on the same machine, side by side.

Runs ``python -m pysrm.bench --case CASE --batch B --steps S`` (one fresh process per measurement)
alternately from checkout A and checkout B, ``--rounds`` times, and prints training and inference
samples/s per case with the range over the rounds and the ratio B/A of the medians.

    python benchmarks/ab.py --a /path/to/old/checkout --b . --rounds 3 --out benchmarks/results/ab

Both checkouts run with the same Python (this one) and ``PYTHONPATH`` set to the checkout, so they
share the installed dependencies; data locations are each checkout's defaults (``../shared`` next to
the checkout, or ``PYSRM_NMNIST_SMALL``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = [("nmnist-dense", 32, 40), ("nmnist-dense", 8, 80), ("ntidigits", 32, 10), ("nmnist-cnn", 8, 3)]


def measure(checkout: Path, case: str, batch: int, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-m", "pysrm.bench", "--case", case, "--batch", str(batch), "--steps", str(steps)]
    p = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="checkout A (before)")
    ap.add_argument("--b", required=True, help="checkout B (after)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="write <out>.json and <out>.md")
    ap.add_argument("--cases", help="comma-separated case:batch or case:batch:steps to run (any case of "
                    "pysrm.bench; default: all of CASES)")
    args = ap.parse_args(argv)
    cases = CASES
    if args.cases:
        steps_of = {(c[0], c[1]): c[2] for c in CASES}
        cases = []
        for spec in args.cases.split(","):
            parts = spec.strip().split(":")
            if len(parts) not in (2, 3):
                ap.error(f"--cases: {spec!r} is not case:batch or case:batch:steps")
            case, batch = parts[0], int(parts[1])
            steps = int(parts[2]) if len(parts) == 3 else steps_of.get((case, batch), 3)
            cases.append((case, batch, steps))
    a, b = Path(args.a).resolve(), Path(args.b).resolve()
    rows = []
    for case, batch, steps in cases:
        runs = {"A": [], "B": []}
        for k in range(args.rounds):
            for name, path in (("A", a), ("B", b)) if k % 2 == 0 else (("B", b), ("A", a)):
                r = measure(path, case, batch, steps)
                runs[name].append(r)
                print(f"{case} batch {batch} round {k + 1} {name}: "
                      f"{r.get('train_samples_per_s', float('nan')):.1f} / {r.get('infer_samples_per_s', float('nan')):.1f}"
                      f" samples/s", flush=True)
        rows.append({"case": case, "batch": batch, "steps": steps, "runs": runs})
    lines = ["| case | batch | A train samples/s | B train samples/s | B/A | A inference | B inference | B/A |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for key in ("train_samples_per_s", "infer_samples_per_s"):
            va = [x[key] for x in r["runs"]["A"] if key in x]
            vb = [x[key] for x in r["runs"]["B"] if key in x]
            if not va or not vb:
                cells += ["error", "error", ""]
                continue
            cells += [f"{min(va):.1f}-{max(va):.1f}", f"{min(vb):.1f}-{max(vb):.1f}",
                      f"{statistics.median(vb) / statistics.median(va):.2f}"]
        lines.append(f"| {r['case']} | {r['batch']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps({"a": str(a), "b": str(b), "rows": rows}, indent=1))
        Path(args.out + ".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
