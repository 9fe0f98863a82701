"""Aggregating run directories into the paper's tables and figures (``pysrm report``).

Runs are grouped by (dataset, loss).  For every group the table gives the
network, the neuron time constants, the loss settings, the number of trials,
and the test accuracy, latency (earliest inference time at which accuracy
reaches 99 % of its final value) and total spike count per sample as
mean ± standard deviation over the trials (sample standard deviation, ``ddof=1``;
0 for a single trial).  Written as Markdown and CSV always, and as figures
(PNG and SVG) when matplotlib is installed:

* ``accuracy_vs_time``: test accuracy versus inference time, one curve per
  loss (mean over trials, shaded ± std) and one panel per dataset;
* ``spike_counts``: average spike count per layer per sample, grouped bars per loss.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .config import TrainConfig


def find_runs(paths) -> list:
    """Run directories (folders with a report.json) at or below ``paths``."""
    found = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        if (p / "report.json").exists():
            found.append(p)
        else:
            found.extend(sorted(q.parent for q in p.rglob("report.json")))
    if not found:
        raise ValueError(f"no finished runs (report.json) found under {', '.join(map(str, paths))}")
    return found


def load_record(run_dir: Path) -> dict:
    rep = json.loads((run_dir / "report.json").read_text())
    cfg = TrainConfig.from_toml(run_dir / "config.toml")
    test = rep["test"]
    return {
        "run_dir": str(run_dir), "dataset": cfg.dataset, "loss": cfg.loss, "net": cfg.net, "seed": cfg.seed,
        "tau_sr": cfg.tau_sr, "tau_ref": cfg.tau_ref, "window": cfg.window, "true_rate": cfg.true_rate,
        "false_rate": cfg.false_rate, "accuracy": test["accuracy"],
        "latency": test["latency_ms"].get("0.99"),
        "times": np.asarray(test["accuracy_vs_time"]["time_ms"]),
        "curve": np.asarray(test["accuracy_vs_time"]["accuracy"]),
        "spikes": test["spike_counts_per_layer"],
        "seconds_per_epoch": rep.get("seconds_per_epoch"),
    }


def _ms(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _loss_settings(r):
    if r["loss"] == "spikemax":
        return f"W = {r['window']:g} ms"
    if r["loss"] == "spike-rate":
        return f"rates ({r['true_rate']:g}, {r['false_rate']:g})"
    return ""


def aggregate(records: list) -> list:
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["loss"]), []).append(r)
    rows = []
    for (dataset, loss), rs in sorted(groups.items()):
        acc = _ms([r["accuracy"] for r in rs])
        lat = _ms([r["latency"] for r in rs])
        spk = _ms([sum(r["spikes"].values()) for r in rs])
        sec = _ms([r["seconds_per_epoch"] for r in rs])
        r0 = rs[0]
        rows.append({
            "dataset": dataset, "loss": loss, "net": r0["net"], "tau_sr": r0["tau_sr"], "tau_ref": r0["tau_ref"],
            "settings": _loss_settings(r0), "trials": len(rs), "seeds": " ".join(str(r["seed"]) for r in rs),
            "acc_mean": acc[0], "acc_std": acc[1], "latency_mean": lat[0], "latency_std": lat[1],
            "spikes_mean": spk[0], "spikes_std": spk[1], "sec_per_epoch": sec[0],
        })
    return rows


def markdown_table(rows: list) -> str:
    lines = ["| dataset | loss | network | (tau_sr, tau_ref) ms | loss settings | trials | test accuracy (%) | "
             "latency (ms) | spikes / sample | s / epoch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['loss']} | {r['net']} | ({r['tau_sr']:g}, {r['tau_ref']:g}) | {r['settings']} | "
            f"{r['trials']} | {100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f} | "
            f"{r['latency_mean']:.1f} ± {r['latency_std']:.1f} | {r['spikes_mean']:.0f} ± {r['spikes_std']:.0f} | "
            f"{r['sec_per_epoch']:.1f} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list, path: Path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


def plot(records: list, out_dir: Path) -> list:
    """Write the two figures as PNG and SVG; returns the written paths ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    datasets = sorted({r["dataset"] for r in records})
    losses = sorted({r["loss"] for r in records})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for loss in losses:
            rs = [r for r in records if r["dataset"] == ds and r["loss"] == loss]
            if not rs:
                continue
            n = min(len(r["curve"]) for r in rs)
            curves = np.stack([r["curve"][:n] for r in rs]) * 100
            t = rs[0]["times"][:n]
            m = curves.mean(0)
            sd = curves.std(0, ddof=1) if len(rs) > 1 else np.zeros_like(m)
            ax.plot(t, m, label=f"{loss} (n={len(rs)})")
            ax.fill_between(t, m - sd, m + sd, alpha=0.25)
        ax.set_xlabel("inference time (ms)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(ds)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out_dir / f"accuracy_vs_time.{ext}"
        fig.savefig(p, dpi=120)
        written.append(p)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        rs_ds = [r for r in records if r["dataset"] == ds]
        layers = list(rs_ds[0]["spikes"].keys())
        width = 0.8 / max(1, len(losses))
        x = np.arange(len(layers))
        for i, loss in enumerate(losses):
            rs = [r for r in rs_ds if r["loss"] == loss]
            if not rs:
                continue
            vals = np.array([[r["spikes"].get(l, np.nan) for l in layers] for r in rs])
            ax.bar(x + i * width, vals.mean(0), width, yerr=vals.std(0, ddof=1) if len(rs) > 1 else None,
                   label=loss, capsize=2)
        ax.set_xticks(x + width * (len(losses) - 1) / 2)
        ax.set_xticklabels(layers, rotation=30, ha="right")
        ax.set_ylabel("spikes per sample")
        ax.set_yscale("log")
        ax.set_title(ds)
        ax.legend()
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out_dir / f"spike_counts.{ext}"
        fig.savefig(p, dpi=120)
        written.append(p)
    plt.close(fig)
    return written


def make_report(paths, out_dir) -> dict:
    """Aggregate the runs under ``paths`` into ``out_dir`` (table.md, table.csv, figures)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [load_record(p) for p in find_runs(paths)]
    rows = aggregate(records)
    md = markdown_table(rows)
    (out_dir / "table.md").write_text(md)
    write_csv(rows, out_dir / "table.csv")
    figures = plot(records, out_dir)
    return {"rows": rows, "markdown": md, "figures": [str(f) for f in figures], "n_runs": len(records)}
