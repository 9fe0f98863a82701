"""`pysrm report` groups runs by experiment (issue 16): never averages different networks, epochs or
settings, never counts one seed twice.  The runs are written directly (config.toml + report.json)."""
import json

import pytest
from click.testing import CliRunner

from pysrm.config import TrainConfig, dump_toml
from pysrm.report import make_report
from pysrm_cli.main import main

DENSE = "34x34x2-512-10"
CNN = "34x34x2-16c5-2a-32c3-2a-64c3-512-10"


def fake_run(path, acc, **cfg):
    """A finished run directory with the given config and test accuracy."""
    c = TrainConfig(**{"dataset": "nmnist", "loss": "spikemax", "net": DENSE, "seed": 0, **cfg})
    path.mkdir(parents=True)
    (path / "config.toml").write_text(dump_toml({**c.to_dict(), "versions": {"pysrm": "0.1.0"}}))
    times = [float(t) for t in range(1, 11)]
    test = {"accuracy": acc, "loss": 1.0, "n_samples": 100,
            "accuracy_vs_time": {"time_ms": times, "accuracy": [acc * t / 10 for t in times]},
            "latency_ms": {"0.9": 9.0, "0.95": 10.0, "0.99": 10.0},
            "spike_counts_per_layer": {"dense1.srm": 100.0, "output": 10.0}}
    (path / "report.json").write_text(json.dumps({"test": test, "final_accuracy": acc, "seconds_per_epoch": 1.0,
                                                  "run_dir": str(path)}))
    return path


def test_different_networks_and_epochs_are_separate_rows(tmp_path):
    """The issue's folder: a dense network and the paper's CNN, 1 to 20 epochs, all seed 0, once
    reported as one row 'nmnist | spikemax | <one net> | 8 trials | 48.08 ± 21.98'."""
    runs = tmp_path / "runs"
    accs = {}
    for net in (DENSE, CNN):
        for epochs in (1, 2, 5, 20):
            acc = 0.1 + 0.04 * epochs + (0.1 if net == CNN else 0.0)
            fake_run(runs / f"{'cnn' if net == CNN else 'dense'}_{epochs}", acc, net=net, epochs=epochs)
            accs[(net, epochs)] = acc
    res = make_report([runs], tmp_path / "rep")
    rows = res["rows"]
    assert len(rows) == 8 and all(r["trials"] == 1 and r["acc_std"] == 0.0 for r in rows)
    got = {(r["net"], r["other_settings"]): r["acc_mean"] for r in rows}
    assert got == {(net, f"epochs {e}"): pytest.approx(a) for (net, e), a in accs.items()}
    assert res["differences"] == ["epochs", "net"]
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "| other settings |" in md and "| epochs 20 |" in md and "The rows differ in: epochs, net" in md


def test_runs_that_repeat_a_seed_count_once_as_the_most_recent_and_are_listed(tmp_path):
    """Issue 23: `pysrm report runs/` refused a folder in which the Quick start had run twice (same
    experiment, same seed).  A seed counts once (the most recent run); the others are listed, with how
    much they differ; group_runs itself still refuses duplicates for callers that pass records."""
    import os
    from pysrm.report import group_runs, load_record
    a = fake_run(tmp_path / "runs" / "a", 0.9)
    b = fake_run(tmp_path / "runs" / "b", 0.8)
    c = fake_run(tmp_path / "runs" / "c", 0.7, seed=1)
    os.utime(b / "report.json", (1e9, 1e9))  # b finished first
    res = make_report([tmp_path / "runs"], tmp_path / "rep")
    (row,) = res["rows"]
    assert row["trials"] == 2 and row["seeds"] == "0 1" and row["acc_mean"] == pytest.approx(0.8)
    assert row["run_dirs"] == f"{a} {c}" and row["repeats_not_counted"] == 1
    assert res["n_runs"] == 2 and res["repeats"] == [str(b)]
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "Repeated runs: 1 run(s) repeat a seed of an experiment in the table" in md
    assert f"- {b} (80.00 %): repeat(s) of {a} (nmnist spikemax, seed 0, 90.00 %, counted); the repeats differ " \
           f"by up to 10.00 points" in md
    assert "repeats_not_counted" in (tmp_path / "rep" / "table.csv").read_text().splitlines()[0]
    with pytest.raises(ValueError, match=r"runs .*a and .*b are the same experiment with the same seed 0"):
        group_runs([load_record(a), load_record(b)])
    r = CliRunner().invoke(main, ["report", str(a), str(b), "--out", str(tmp_path / "rep2")])
    assert r.exit_code == 0 and "1 runs (and 1 repeated run(s) not counted, listed above)" in r.output


def test_report_of_the_readme_quick_start_run_twice(tmp_path):
    """The first thing a user tries: `pysrm train` twice (same seed, default run directories, possibly in
    the same second), then `pysrm report runs/` -- through the real command, in a fresh folder."""
    import subprocess
    from test_cli import pysrm_command
    tiny = ["--n-train", "48", "--n-test", "24", "--batch-size", "16", "--t-sample", "30", "--net", "16x16x2-12-10",
            "--epochs", "1"]
    for _ in range(2):
        p = subprocess.run(pysrm_command() + ["train", *tiny], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
    runs = sorted(q.name for q in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(q.startswith("synthetic_spikemax_seed0_") for q in runs)
    p = subprocess.run(pysrm_command() + ["report", "runs/"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "| synthetic | spikemax | 16x16x2-12-10 |" in p.stdout and "| 1 |" in p.stdout
    assert "Repeated runs: 1 run(s)" in p.stdout
    assert (tmp_path / "report" / "table.md").exists() and (tmp_path / "report" / "accuracy_vs_time.png").exists()


def test_figures_with_many_groups_keep_legends_and_labels_inside(tmp_path):
    """Issue 23: with many groups the legends ran off the figure and tick labels were cut."""
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pysrm.report import accuracy_figure, differing_keys, find_runs, group_runs, load_record, spike_figure
    runs = tmp_path / "runs"
    for net in (DENSE, CNN):
        for loss in ("spike-rate", "spikemax", "spikemax-g", "spikemax-s"):
            for epochs in (1, 5, 20):
                fake_run(runs / f"{'cnn' if net == CNN else 'dense'}_{loss}_{epochs}", 0.5 + epochs / 100, net=net,
                         loss=loss, epochs=epochs, dropout=0.1 if epochs == 20 else 0.0)
    fake_run(runs / "synthetic", 0.9, dataset="synthetic", net="16x16x2-64-10")
    groups = group_runs([load_record(p) for p in find_runs([runs])])
    assert len(groups) == 25
    varying = differing_keys(groups)
    for make in (accuracy_figure, spike_figure):
        fig = make(groups, varying)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        for ax in fig.axes:  # what is drawn of each panel: ticks and their labels, titles, legend
            e = ax.get_tightbbox(renderer)
            assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, \
                (make.__name__, ax.get_title(), e, box)
            legend = ax.get_legend()
            assert legend is not None and not legend.get_window_extent(renderer).overlaps(
                ax.get_window_extent(renderer))  # below the axes, not over the curves
            assert max(len(line) for t in legend.get_texts() for line in t.get_text().splitlines()) <= 72  # wrapped
        plt.close(fig)


def test_default_output_folders_are_ignored_by_git():
    """`pysrm report` writes report/ by default and the docs' sweeps go to sweeps/: neither belongs in git."""
    from pathlib import Path
    from pysrm_cli.main import report
    default = next(p for p in report.params if p.name == "out_dir").default
    lines = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().splitlines()
    assert f"{default}/" in lines and "sweeps/" in lines and "runs/" in lines


def test_trials_of_one_experiment_are_averaged_and_loss_settings_split_groups(tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in ((0, 0.9), (1, 0.8), (2, 0.7)):
        fake_run(runs / f"w30_{seed}", acc, seed=seed, window=30.0)
    fake_run(runs / "w20_0", 0.5, window=20.0)
    fake_run(runs / "g_0", 0.6, loss="spikemax_g")
    fake_run(runs / "g_1", 0.4, loss="spikemax-g", seed=1, window=99.0)  # window: not a spikemax-g setting
    res = make_report([runs], tmp_path / "rep")
    by = {(r["loss"], r["settings"]): r for r in res["rows"]}
    assert set(by) == {("spikemax", "W = 30 ms"), ("spikemax", "W = 20 ms"), ("spikemax-g", "")}
    w30 = by[("spikemax", "W = 30 ms")]
    assert w30["trials"] == 3 and w30["seeds"] == "0 1 2" and w30["acc_mean"] == pytest.approx(0.8)
    assert w30["acc_std"] == pytest.approx(0.1)
    assert by[("spikemax-g", "")]["trials"] == 2 and by[("spikemax-g", "")]["acc_mean"] == pytest.approx(0.5)


def test_the_latency_column_says_which_fraction_it_uses(tmp_path):
    from pysrm.report import LATENCY_FRACTION
    fake_run(tmp_path / "runs" / "a", 0.9)
    res = make_report([tmp_path / "runs"], tmp_path / "rep")
    assert LATENCY_FRACTION == 0.99
    assert "latency to 99 % of final accuracy (ms)" in res["markdown"]
    assert res["rows"][0]["latency_fraction"] == 0.99 and res["rows"][0]["latency_mean"] == 10.0
    assert "latency_fraction" in (tmp_path / "rep" / "table.csv").read_text().splitlines()[0]
