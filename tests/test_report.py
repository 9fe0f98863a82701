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


def test_same_experiment_with_the_same_seed_is_refused(tmp_path):
    a = fake_run(tmp_path / "runs" / "a", 0.9)
    b = fake_run(tmp_path / "runs" / "b", 0.8)
    with pytest.raises(ValueError, match=r"runs .*a and .*b are the same experiment with the same seed 0"):
        make_report([tmp_path / "runs"], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
    r = CliRunner().invoke(main, ["report", str(a), str(b), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 1 and "same seed 0" in r.output and str(a) in r.output


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
