#!/usr/bin/env bash
# Reruns the whole NMNISTsmall loss comparison of docs/results.md (issue 8):
# 4 losses x 5 seeds of the dense network 34x34x2-512-10 with the shared settings of
# examples/configs/nmnist_small_study.toml, then the report (table + the two figures).
#
#   benchmarks/reproduce_nmnist_small.sh [DATA_DIR] [OUT_DIR]
#
# DATA_DIR  SLAYER's NMNISTsmall folder (<id>.bs2, train1K.txt, test100.txt);
#           default ../shared/data/NMNISTsmall (relative to the repository root)
# OUT_DIR   sweep directory; default sweeps/nmnist_small_study
#
# Needs pysrm with Dask (pip install "pysrm-snn[dist]", from a clone pip install ".[dist]") and matplotlib for the figures.
# Runs on a local Dask cluster of 2 worker processes x 1 Numba thread (a 2-core machine);
# set WORKERS to use more cores.  The first study (30 epochs) took 31 min on 2 cores (see docs/results.md).
# pysrm and python must be on PATH (e.g. an activated virtual environment).
# Running it again skips the runs that are complete (pysrm sweep), and rewrites the report.
set -euo pipefail

# arguments are relative to the caller's directory; the defaults to the repository root
DATA_DIR=${1:+$(realpath "$1")}
OUT_DIR=${2:+$(realpath -m "$2")}
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-$(realpath ../shared/data/NMNISTsmall)}   # absolute: the workers resolve it
OUT_DIR=${OUT_DIR:-sweeps/nmnist_small_study}
WORKERS=${WORKERS:-2}

export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

status=0
time pysrm sweep --config examples/configs/nmnist_small_study.toml --data-dir "$DATA_DIR" \
    --losses spike-rate,spikemax,spikemax-g,spikemax-s --trials 5 --seed 0 \
    --workers "$WORKERS" --threads-per-run 1 --dashboard-address none --out "$OUT_DIR" || status=$?   # exit status = number of failed runs

# Table I (mean +- std over the 5 seeds) and the two figures.  docs/figures/nmnist_small_*.png/svg
# are copies of $OUT_DIR/report/accuracy_vs_time.* and spike_counts.* (copy them by hand to update).
pysrm report "$OUT_DIR/runs" --out "$OUT_DIR/report"

# The extra columns of docs/results.md: latency at 90/95/99 % of the final accuracy and the
# spike count of each layer, mean +- std over seeds (read from every run's report.json).
python - "$OUT_DIR/runs" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np

runs = sorted(Path(sys.argv[1]).glob("*/seed_*/report.json"))
by_loss = {}
for p in runs:
    r = json.loads(p.read_text())
    by_loss.setdefault(r["loss"], []).append(r)

def ms(v, fmt="{:.1f}"):
    v = np.asarray([x for x in v if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    sd = v.std(ddof=1) if v.size > 1 else 0.0
    return (fmt + " ± " + fmt).format(v.mean(), sd)

print("| loss | seeds | test accuracy (%) | per-seed accuracy (%) | latency 90 % (ms) | latency 95 % (ms) "
      "| latency 99 % (ms) | hidden spikes / sample | output spikes / sample | s / epoch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for loss in ("spike-rate", "spikemax", "spikemax-g", "spikemax-s"):
    rs = sorted(by_loss.get(loss, []), key=lambda r: r["seed"])
    if not rs:
        continue
    lat = {f: [r["test"]["latency_ms"][f] for r in rs] for f in ("0.9", "0.95", "0.99")}
    layers = list(rs[0]["test"]["spike_counts_per_layer"])
    spk = {l: [r["test"]["spike_counts_per_layer"][l] for r in rs] for l in layers}
    print(f"| {loss} | {' '.join(str(r['seed']) for r in rs)} "
          f"| {ms([100 * r['final_accuracy'] for r in rs], '{:.2f}')} "
          f"| {', '.join('%.0f' % (100 * r['final_accuracy']) for r in rs)} "
          f"| {ms(lat['0.9'])} | {ms(lat['0.95'])} | {ms(lat['0.99'])} "
          f"| {ms(spk[layers[0]], '{:.0f}')} | {ms(spk[layers[-1]], '{:.0f}')} "
          f"| {ms([r['seconds_per_epoch'] for r in rs])} |")
EOF
exit $status
