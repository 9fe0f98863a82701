"""Aggregating run directories into the paper's tables and figures (``pysrm report``).

Runs are grouped by **everything that defines an experiment**: every key of
the run's config (dataset, network, delays, dropout, initialisation scales,
the neuron and simulation parameters, the loss and the settings that loss
uses, the gradient mode, epochs, batch size, optimiser, learning rate and its
schedule, jitter, data subset: lists, ``n_train``/``n_test``, ``val_split``,
empty-sample policy) except those in :data:`NOT_EXPERIMENT` (the seed, where
the data and the run lie, the device, how often the test split was
evaluated), plus the name of the data folder and the number of test samples.
Loss names are compared in one spelling (``spikemax_g`` = ``spikemax-g``).
Each group is one row; the runs of a group are its trials, one per seed.
Runs that repeat a seed of the same experiment -- the same command run twice,
e.g. the README's ``pysrm train`` (seed 0, a new ``runs/..._<time>`` folder
each time) -- count once: :func:`make_report` keeps the most recent of them
(the one whose report.json was written last, which reflects the code and data
of the latest attempt) and lists the others under the table with their
accuracies ("Repeated runs"), so that the mean ± std is over distinct seeds
and never counts one result twice, and nothing is dropped silently.  Training
is deterministic, so repeats normally agree; when they do not (another pysrm
version, another machine's float rounding) the note shows by how much.
:func:`group_runs` itself still refuses repeated seeds (``ValueError``) for
callers that pass records directly.  When the groups differ in settings that
the table's columns do not show (e.g. epochs), a column "other settings" gives
each row's values, and :func:`make_report` returns the differing keys.

For every group the table gives the network, the neuron time constants, the
loss settings, the number of trials, and the test accuracy, the **latency at
99 %** (earliest inference time at which the test accuracy reaches 99 % of
its final value; :data:`LATENCY_FRACTION`) and the total spike count per
sample as mean ± standard deviation over the trials (sample standard
deviation, ``ddof=1``; 0 for a single trial).  Written as Markdown and CSV
always, and as figures (PNG and SVG) when matplotlib is installed:

* ``accuracy_vs_time``: test accuracy versus inference time, one curve per
  group (mean over trials, shaded ± std) and one panel per dataset;
* ``spike_counts``: average spike count per layer per sample, grouped bars per group.

The figures stay readable with many groups: legends go below the axes (wrapped
labels, in columns), the figure grows with them, and the layout is constrained
so that nothing is cut off.

The output folder is owned by one process while it is written
(:class:`pysrm.rundir.DirLock`): a second ``pysrm report`` (or a sweep) writing
the same folder at the same time is refused with a message naming the first.
"""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np

from .config import TrainConfig, normalize_loss
from .rundir import DirLock

#: the fraction of the final accuracy that the table's latency column uses
LATENCY_FRACTION = 0.99
#: config keys that do not define the experiment (seed, bookkeeping, where the data/run lie, device, the
#: conv layers' memory budget: it changes which equal-to-rounding execution runs, not the experiment)
NOT_EXPERIMENT = ("seed", "trials", "out", "device", "data_dir", "test_every", "memory_gb")
#: loss settings and the losses that use them (ignored for the others when grouping)
LOSS_SETTINGS = {"window": ("spikemax",), "eps": ("spikemax", "spikemax-g"),
                 "true_rate": ("spike-rate", "num-spikes"), "false_rate": ("spike-rate", "num-spikes"),
                 "true_count": ("num-spikes",), "false_count": ("num-spikes",)}
#: experiment keys that the table shows in their own columns
SHOWN = ("dataset", "loss", "net", "tau_sr", "tau_ref", "window", "eps", "true_rate", "false_rate", "true_count",
         "false_count")


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
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [next(p for p in found if p.resolve() == u) for u in unique]  # a run given twice counts once


def experiment_key(cfg: TrainConfig, n_test_samples=None) -> dict:
    """The settings that define the experiment of a run (see the module docstring), as a sorted dict."""
    d = cfg.to_dict()
    d["loss"] = normalize_loss(d["loss"])
    for k in NOT_EXPERIMENT:
        d.pop(k, None)
    for k, losses in LOSS_SETTINGS.items():
        if d["loss"] not in losses:
            d.pop(k, None)
    d["data"] = Path(cfg.data_dir).name if cfg.data_dir else None
    d["n_test_samples"] = n_test_samples
    return dict(sorted(d.items()))


def load_record(run_dir: Path) -> dict:
    rep = json.loads((run_dir / "report.json").read_text())
    cfg = TrainConfig.from_toml(run_dir / "config.toml")
    test = rep["test"]
    exp = experiment_key(cfg, test.get("n_samples"))
    return {
        "run_dir": str(run_dir), "dataset": cfg.dataset, "loss": exp["loss"], "net": cfg.net, "seed": cfg.seed,
        "tau_sr": cfg.tau_sr, "tau_ref": cfg.tau_ref, "window": cfg.window, "true_rate": cfg.true_rate,
        "false_rate": cfg.false_rate, "eps": cfg.eps, "experiment": exp, "accuracy": test["accuracy"],
        "latency": test["latency_ms"].get(f"{LATENCY_FRACTION:g}"),
        "times": np.asarray(test["accuracy_vs_time"]["time_ms"]),
        "curve": np.asarray(test["accuracy_vs_time"]["accuracy"]),
        "spikes": test["spike_counts_per_layer"],
        "seconds_per_epoch": rep.get("seconds_per_epoch"),
        "finished": (run_dir / "report.json").stat().st_mtime,
    }


def _ms(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _loss_settings(r):
    eps = f", eps {r['eps']:g}" if r.get("eps") is not None and r["loss"] in LOSS_SETTINGS["eps"] else ""
    if r["loss"] == "spikemax":
        return f"W = {r['window']:g} ms{eps}"
    if r["loss"] == "spike-rate":
        return f"rates ({r['true_rate']:g}, {r['false_rate']:g})"
    return eps[2:]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def group_runs(records: list) -> list:
    """Records grouped by experiment (insertion order of the first run of each); raises ValueError when
    two runs of one experiment share a seed."""
    groups: dict = {}
    for r in records:
        groups.setdefault(json.dumps(r["experiment"], sort_keys=True, default=str), []).append(r)
    for rs in groups.values():
        seen: dict = {}
        for r in rs:
            if r["seed"] in seen:
                raise ValueError(f"runs {seen[r['seed']]} and {r['run_dir']} are the same experiment with the same "
                                 f"seed {r['seed']}: averaging them would count one result as two trials. Give "
                                 f"pysrm report only one of them (trials of an experiment need distinct seeds)")
            seen[r["seed"]] = r["run_dir"]
    return list(groups.values())


def _experiment_id(r) -> str:
    return json.dumps(r["experiment"], sort_keys=True, default=str)


def drop_repeats(records: list) -> tuple:
    """``(kept, repeats)``: one record per experiment and seed (the most recently finished), and a
    ``(not counted, counted)`` pair for each record left out (see the module docstring)."""
    latest: dict = {}
    for r in records:
        key = (_experiment_id(r), r["seed"])
        if key not in latest or (r["finished"], r["run_dir"]) > (latest[key]["finished"], latest[key]["run_dir"]):
            latest[key] = r
    kept = [r for r in records if latest[(_experiment_id(r), r["seed"])] is r]
    repeats = [(r, latest[(_experiment_id(r), r["seed"])]) for r in records
               if latest[(_experiment_id(r), r["seed"])] is not r]
    return kept, repeats


def repeats_note(repeats: list) -> str:
    """The Markdown note under the table that lists the runs left out as repeats ('' when none)."""
    if not repeats:
        return ""
    by_counted: dict = {}
    for r, counted in repeats:
        by_counted.setdefault(counted["run_dir"], (counted, []))[1].append(r)
    lines = [f"\nRepeated runs: {len(repeats)} run(s) repeat a seed of an experiment in the table (the same "
             f"settings and seed, e.g. one command run twice). Each seed counts once, as its most recent run; "
             f"not counted:"]
    for counted, others in by_counted.values():
        diff = max(abs(o["accuracy"] - counted["accuracy"]) for o in others)
        lines.append("- " + ", ".join(f"{o['run_dir']} ({100 * o['accuracy']:.2f} %)" for o in others)
                     + f": repeat(s) of {counted['run_dir']} ({counted['dataset']} {counted['loss']}, seed "
                       f"{counted['seed']}, {100 * counted['accuracy']:.2f} %, counted)"
                     + (f"; the repeats differ by up to {100 * diff:.2f} points" if diff > 0 else ""))
    return "\n".join(lines) + "\n"


def differing_keys(groups: list) -> list:
    """Experiment keys whose value is not the same in every group (a key missing in a group counts as a value)."""
    keys = sorted({k for rs in groups for k in rs[0]["experiment"]})
    return [k for k in keys if len({json.dumps(rs[0]["experiment"].get(k, "(n/a)"), default=str)
                                    for rs in groups}) > 1]


def aggregate(records: list, repeats: list = ()) -> list:
    """One row per experiment (see the module docstring), sorted by dataset, loss, then the other settings.

    ``repeats``: the ``(not counted, counted)`` pairs of :func:`drop_repeats`, counted per row in
    ``repeats_not_counted``.
    """
    groups = group_runs(records)
    n_repeats: dict = {}
    for _, counted in repeats:
        n_repeats[counted["run_dir"]] = n_repeats.get(counted["run_dir"], 0) + 1
    varying = [k for k in differing_keys(groups) if k not in SHOWN]
    rows = []
    for rs in groups:
        acc = _ms([r["accuracy"] for r in rs])
        lat = _ms([r["latency"] for r in rs])
        spk = _ms([sum(r["spikes"].values()) for r in rs])
        sec = _ms([r["seconds_per_epoch"] for r in rs])
        r0 = rs[0]
        exp = r0["experiment"]
        rows.append({
            "dataset": r0["dataset"], "loss": r0["loss"], "net": r0["net"], "tau_sr": r0["tau_sr"],
            "tau_ref": r0["tau_ref"], "settings": _loss_settings(r0),
            "other_settings": ", ".join(f"{k} {_fmt(exp.get(k))}" for k in varying),
            "trials": len(rs), "seeds": " ".join(str(r["seed"]) for r in rs),
            "acc_mean": acc[0], "acc_std": acc[1], "latency_fraction": LATENCY_FRACTION,
            "latency_mean": lat[0], "latency_std": lat[1],
            "spikes_mean": spk[0], "spikes_std": spk[1], "sec_per_epoch": sec[0],
            "run_dirs": " ".join(r["run_dir"] for r in rs),
            "repeats_not_counted": sum(n_repeats.get(r["run_dir"], 0) for r in rs),
        })
    rows.sort(key=lambda r: (r["dataset"], r["loss"], r["net"], r["other_settings"], r["settings"]))
    return rows


def markdown_table(rows: list) -> str:
    other = any(r["other_settings"] for r in rows)
    pct = f"{100 * LATENCY_FRACTION:g} %"
    lines = ["| dataset | loss | network | (tau_sr, tau_ref) ms | loss settings | " + ("other settings | " if other else "")
             + f"trials | test accuracy (%) | latency to {pct} of final accuracy (ms) | spikes / sample | s / epoch |",
             "|---|---|---|---|---|" + ("---|" if other else "") + "---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['loss']} | {r['net']} | ({r['tau_sr']:g}, {r['tau_ref']:g}) | {r['settings']} | "
            + (f"{r['other_settings']} | " if other else "") +
            f"{r['trials']} | {100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f} | "
            f"{r['latency_mean']:.1f} ± {r['latency_std']:.1f} | {r['spikes_mean']:.0f} ± {r['spikes_std']:.0f} | "
            f"{r['sec_per_epoch']:.1f} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list, path: Path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


def _label(r, varying, width: int = 64) -> str:
    """The legend label of a group: its loss and the settings in which the groups differ, wrapped."""
    extra = ", ".join(f"{k} {_fmt(r['experiment'].get(k))}" for k in varying
                      if k not in ("dataset", "loss") and r["experiment"].get(k) is not None)  # None: n/a to it
    return textwrap.fill(r["loss"] + (f" [{extra}]" if extra else ""), width, break_long_words=True)


_LINESTYLES = ("-", "--", ":", "-.")
_HATCHES = (None, "//", "..", "xx")


def _legend_columns(n_entries: int) -> tuple:
    """``(columns, label width in characters)`` of a legend of ``n_entries`` under a 6.5-inch panel."""
    return (1, 64) if n_entries <= 4 else (2, 34)


def _legend_below(ax, n_entries: int):
    """A legend under the axes; constrained layout makes room for it."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=_legend_columns(n_entries)[0],
              fontsize="small", frameon=False)


def _panel_height(labels_per_panel: list) -> float:
    """Figure height (inches): the axes, their tick labels, plus the tallest legend (wrapped lines, in columns)."""
    legend = 0.0
    for labels in labels_per_panel:
        ncol = _legend_columns(len(labels))[0]
        rows = [labels[k:k + ncol] for k in range(0, len(labels), ncol)]
        lines = sum(max(label.count("\n") + 1 for label in row) for row in rows)
        legend = max(legend, 0.17 * lines + 0.08 * len(rows))
    return 3.6 + 1.0 + legend


def _grow_to_fit(fig, tries: int = 4):
    """Make ``fig`` taller until everything drawn (legends below the axes included) lies inside it."""
    for _ in range(tries):
        fig.canvas.draw()
        tight = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
        w, h = fig.get_size_inches()
        over = max(0.0, -tight.y0) + max(0.0, tight.y1 - h)
        if over <= 0.01:
            return
        fig.set_size_inches(w, h + over + 0.1)


def _panel_labels(groups: list, datasets: list, varying: list) -> list:
    """The legend labels of each panel (dataset), wrapped for the legend's columns."""
    out = []
    for ds in datasets:
        gs = [rs for rs in groups if rs[0]["dataset"] == ds]
        width = _legend_columns(len(gs))[1]
        out.append([f"{_label(rs[0], varying, width)} (n={len(rs)})" for rs in gs])
    return out


def accuracy_figure(groups: list, varying: list):
    """The accuracy-versus-inference-time figure of ``groups`` (:func:`group_runs`), one panel per dataset."""
    import matplotlib.pyplot as plt
    datasets = sorted({rs[0]["dataset"] for rs in groups})
    per_panel = _panel_labels(groups, datasets, varying)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), _panel_height(per_panel)),
                             squeeze=False, layout="constrained")
    for ax, ds, labels in zip(axes[0], datasets, per_panel):
        gs = [rs for rs in groups if rs[0]["dataset"] == ds]
        for i, (rs, label) in enumerate(zip(gs, labels)):
            n = min(len(r["curve"]) for r in rs)
            curves = np.stack([r["curve"][:n] for r in rs]) * 100
            t = rs[0]["times"][:n]
            m = curves.mean(0)
            sd = curves.std(0, ddof=1) if len(rs) > 1 else np.zeros_like(m)
            ax.plot(t, m, label=label,
                    linestyle=_LINESTYLES[(i // 10) % len(_LINESTYLES)])  # 10 colours, then another style
            ax.fill_between(t, m - sd, m + sd, alpha=0.25)
        ax.set_xlabel("inference time (ms)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(ds)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        _legend_below(ax, len(gs))
    _grow_to_fit(fig)
    return fig


def spike_figure(groups: list, varying: list):
    """The spikes-per-layer figure of ``groups`` (:func:`group_runs`), one panel per dataset."""
    import matplotlib.pyplot as plt
    datasets = sorted({rs[0]["dataset"] for rs in groups})
    per_panel = _panel_labels(groups, datasets, varying)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), _panel_height(per_panel) + 0.4),
                             squeeze=False, layout="constrained")
    for ax, ds, labels in zip(axes[0], datasets, per_panel):
        gs = [rs for rs in groups if rs[0]["dataset"] == ds]
        layers = list(dict.fromkeys(l for rs in gs for r in rs for l in r["spikes"]))
        width = 0.8 / max(1, len(gs))
        x = np.arange(len(layers))
        for i, rs in enumerate(gs):
            vals = np.array([[r["spikes"].get(l, np.nan) for l in layers] for r in rs])
            ax.bar(x + i * width, vals.mean(0), width, yerr=vals.std(0, ddof=1) if len(rs) > 1 else None,
                   label=labels[i], capsize=2, hatch=_HATCHES[(i // 10) % len(_HATCHES)])
        ax.set_xticks(x + width * (len(gs) - 1) / 2)
        ax.set_xticklabels(layers, rotation=30, ha="right")
        ax.set_ylabel("spikes per sample")
        ax.set_yscale("log")
        ax.set_title(ds)
        _legend_below(ax, len(gs))
    _grow_to_fit(fig)
    return fig


def plot(records: list, out_dir: Path) -> list:
    """Write the two figures as PNG and SVG, one curve / bar set per experiment; returns the written
    paths ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    groups = group_runs(records)
    varying = differing_keys(groups)
    written = []
    for name, make in (("accuracy_vs_time", accuracy_figure), ("spike_counts", spike_figure)):
        fig = make(groups, varying)
        for ext in ("png", "svg"):
            p = out_dir / f"{name}.{ext}"
            fig.savefig(p, dpi=120)
            written.append(p)
        plt.close(fig)
    return written


def make_report(paths, out_dir) -> dict:
    """Aggregate the runs under ``paths`` into ``out_dir`` (table.md, table.csv, figures).

    Returns ``rows``, ``markdown``, ``figures``, ``n_runs`` (the runs counted), ``repeats`` (the
    run directories left out as repeats of a counted run's seed, see :func:`drop_repeats`) and
    ``differences`` (the experiment keys in which the rows differ).  ``out_dir`` is locked while it
    is written (:class:`pysrm.rundir.DirectoryInUse` when another process writes it).
    """
    records, repeats = drop_repeats([load_record(p) for p in find_runs(paths)])
    groups = group_runs(records)
    rows = aggregate(records, repeats)
    md = markdown_table(rows)
    diffs = differing_keys(groups)
    if len(rows) > 1 and diffs:
        md += "\nThe rows differ in: " + ", ".join(diffs) + "\n"
    md += (f"\nLatency: the earliest inference time at which the test accuracy reaches "
           f"{100 * LATENCY_FRACTION:g} % of its final value (mean ± std over the trials).\n")
    md += repeats_note(repeats)
    with DirLock(out_dir, what="report folder", hint="wait until it ends, or choose another --out") as lock:
        (lock.path / "table.md").write_text(md)
        write_csv(rows, lock.path / "table.csv")
        figures = plot(records, lock.path)
    return {"rows": rows, "markdown": md, "figures": [str(f) for f in figures], "n_runs": len(records),
            "repeats": [r["run_dir"] for r, _ in repeats], "differences": diffs}
