"""Settings that cannot work are refused before the first batch (issue 23, "Settings that cannot work").

Each test is one case of the issue: responses sampled at Ts (time constants, rates, counts, windows),
test-time settings validated at start-up for train, resume and eval, samples that bin to nothing (for
from_arrays, the file readers and the tonic adapter), and numeric options whose errors name the option.
CLI cases run through a real subprocess (as tests/test_cli.py does); library cases call pysrm directly.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from pysrm import NeuronParams, SimParams
from pysrm.config import TrainConfig
from pysrm.data import from_arrays, from_tonic, load_dataset, make_events
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.responses import SettingsWarning, check_responses
from pysrm.train import check_empty_samples, train
from pysrm_cli.main import main

sys.path.insert(0, os.path.dirname(__file__))
from test_cli import pysrm_command  # noqa: E402
from test_data_nmnist import _list_dir  # noqa: E402

TINY = dict(n_train=16, n_test=8, epochs=1, batch_size=16, t_sample=30.0, net="16x16x2-12-10")
TINY_FLAGS = ["--n-train", "16", "--n-test", "8", "--epochs", "1", "--batch-size", "16", "--t-sample", "30",
              "--net", "16x16x2-12-10"]


def cli(*args, timeout=300):
    """``pysrm ARGS`` in a real subprocess."""
    return subprocess.run(pysrm_command() + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


# ------------------------------------------------------------------------ 1. responses sampled at Ts
def test_a_time_constant_whose_response_is_all_zeros_is_refused_by_every_object_that_samples_it():
    sim = SimParams(1.0, 60.0)
    bad = NeuronParams(tau_sr=0.005)
    msg = r"tau_sr=0.005 ms is below Ts=1 ms: its spike response sampled at Ts is all zeros.*did you mean tau_sr=5\?"
    with pytest.raises(ValueError, match=msg):
        check_responses(bad, sim)
    with pytest.raises(ValueError, match=msg):
        Network.from_string("16x16x2-12-10", bad, sim)
    with pytest.raises(ValueError, match=msg):
        make_loss("num-spikes", ts=1.0, neuron=bad, sim=sim)
    with pytest.raises(ValueError, match=msg):
        TrainConfig(tau_sr=0.005, tau_ref=0.005).validate()
    with pytest.raises(ValueError, match=r"tau_ref=0.005 ms .*refractory response .*all zeros.*expected tau_ref >= "):
        Network.from_string("16x16x2-12-10", NeuronParams(tau_ref=0.005), sim)
    # the smallest value the message names works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SettingsWarning)
        check_responses(NeuronParams(tau_sr=0.14, tau_ref=0.14), sim)


def test_a_degraded_response_is_a_warning_that_names_the_parameter():
    with pytest.warns(SettingsWarning, match=r"tau_sr=0.5 ms is below Ts=1 ms.*expected tau_sr >= Ts = 1 ms"):
        issued = check_responses(NeuronParams(tau_sr=0.5), SimParams(1.0, 60.0))
    assert len(issued) == 1
    with pytest.warns(SettingsWarning, match=r"tau_ref=500 ms is longer than t_sample=60 ms.*expected tau_ref <= 60"):
        check_responses(NeuronParams(tau_ref=500.0), SimParams(1.0, 60.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_responses(NeuronParams(tau_sr=1.0, tau_ref=1.0), SimParams(1.0, 300.0)) == []
        for name in ("nmnist", "nmnist_dense", "dvs_gesture", "ntidigits"):  # the shipped configs stay silent
            TrainConfig.from_toml(os.path.join(os.path.dirname(__file__), "..", "examples", "configs",
                                               f"{name}.toml")).validate()


def test_rates_counts_and_windows_that_cannot_be_reached_are_refused():
    with pytest.raises(ValueError, match=r"true_rate=200 spikes/ms is above 1 spikes/ms.*did you mean true_rate=0.2"):
        make_loss("spike-rate", ts=1.0, true_rate=200.0)
    with pytest.raises(ValueError, match=r"false_rate=0.6 spikes/ms is above 0.5 spikes/ms"):
        make_loss("spike-rate", ts=2.0, true_rate=0.4, false_rate=0.6)
    with pytest.raises(ValueError, match="true_rate=0.01 spikes/ms is not above false_rate=0.03"):
        make_loss("spike-rate", ts=1.0, true_rate=0.01)
    with pytest.raises(ValueError, match="true_count=5 is not above false_count=10"):
        make_loss("num-spikes", ts=1.0, true_count=5.0)
    loss = make_loss("num-spikes", ts=1.0, true_count=60.0, false_count=10.0)
    with pytest.raises(ValueError, match=r"true_count=60 spikes cannot be reached.*holds 30 bins.*expected true_count "
                                         r"<= 30"):
        loss.check_simulation(SimParams(1.0, 30.0))
    loss.check_simulation(SimParams(1.0, 30.0), training=False)  # an evaluation only reports the value
    with pytest.raises(ValueError, match=r"window=20 ms \(20 bins\) is longer than the simulation \(test_t_sample=10"):
        make_loss("spikemax", ts=1.0, window=20.0).check_simulation(SimParams(1.0, 10.0), "test_t_sample")
    with pytest.raises(ValueError, match=r"window=0.02 ms is shorter than one bin.*did you mean window=20\?"):
        make_loss("spikemax", ts=1.0, window=0.02)
    with pytest.raises(ValueError, match="true_count=100 spikes cannot be reached"):
        TrainConfig(loss="num-spikes", true_count=100.0).validate()
    with pytest.raises(ValueError, match="true_rate=2 spikes/ms is above 1"):
        TrainConfig(loss="spike-rate", true_rate=2.0).validate()


def test_cli_train_with_a_time_constant_in_seconds_stops_before_training(tmp_path):
    out = tmp_path / "run"
    p = cli("train", *TINY_FLAGS, "--tau-sr", "0.005", "--tau-ref", "0.005", "--out", str(out))
    assert p.returncode == 1, p.stderr
    assert "tau_sr=0.005 ms is below Ts=1 ms" in p.stderr and "did you mean tau_sr=5?" in p.stderr
    assert "epoch" not in p.stderr and "Traceback" not in p.stderr and not out.exists()


def test_cli_prints_a_degraded_setting_as_one_warning_line(tmp_path):
    out = tmp_path / "run"  # the loss check, after the responses', stops the run after the warning: nothing trains
    p = cli("train", *TINY_FLAGS, "--tau-sr", "0.5", "--loss", "spike-rate", "--true-rate", "0.01", "--out", str(out))
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and not out.exists() and "true_rate=0.01 spikes/ms is not above" in p.stderr
    assert [line for line in lines if line.startswith("warning: ")] == [
        line for line in lines if "tau_sr=0.5 ms is below Ts=1 ms" in line], p.stderr
    assert sum("tau_sr=0.5 ms is below Ts=1 ms" in line for line in lines) == 1  # once


# ---------------------------------------------------- 2. test-time settings are validated at start-up
def test_a_window_longer_than_the_test_samples_is_refused_at_start_up():
    with pytest.raises(ValueError, match=r"window=20.0 ms is longer than test_t_sample=10.0 ms.*test_t_sample >= 20"):
        TrainConfig(window=20.0, test_t_sample=10.0).validate()
    TrainConfig(window=20.0, test_t_sample=10.0).validate(test_loss=False)  # pysrm eval reports its loss as NaN
    with pytest.raises(ValueError, match=r"test_t_sample=25.5 ms is not a whole number of bins of ts=1.0 ms"):
        TrainConfig(test_t_sample=25.5).validate()


def test_cli_train_refuses_test_settings_that_would_fail_after_the_epochs(tmp_path):
    out = tmp_path / "run"
    p = cli("train", *TINY_FLAGS, "--window", "20", "--test-t-sample", "10", "--test-every", "0", "--out", str(out))
    assert p.returncode == 1 and "window=20.0 ms is longer than test_t_sample=10.0 ms" in p.stderr, p.stderr
    assert "epoch 1/1" not in p.stderr and not out.exists()


def test_cli_resume_of_an_old_run_with_bad_test_settings_is_refused_then_finished_with_an_override(tmp_path):
    run = tmp_path / "old"
    train(TrainConfig(**TINY, test_every=0).validate(), run_dir=run)
    # what a run of an older pysrm left: every epoch trained, its config with a window longer than the test
    # samples, no report (the final evaluation failed)
    (run / "report.json").unlink()
    text = (run / "config.toml").read_text().replace("# test_t_sample = (unset)", "test_t_sample = 10.0")
    (run / "config.toml").write_text(text)
    p = cli("train", "--resume", str(run))
    assert p.returncode == 1 and "window=20.0 ms is longer than test_t_sample=10.0 ms" in p.stderr, p.stderr
    assert f"pysrm train --resume {run} --test-t-sample MS" in p.stderr and not (run / "report.json").exists()
    p = cli("train", "--resume", str(run), "--test-t-sample", "20")
    assert p.returncode == 0, p.stderr
    assert (run / "report.json").exists() and "test_t_sample = 20.0" in (run / "config.toml").read_text()
    p = cli("train", "--resume", str(run), "--window", "5")
    assert p.returncode == 2 and "--test-t-sample and --test-every" in p.stderr and "not --window" in p.stderr


def test_eval_validates_the_runs_settings_and_names_t_max(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**TINY).validate(), run_dir=run)
    r = CliRunner().invoke(main, ["eval", str(run), "--t-max", "10.5"])
    assert r.exit_code == 1 and "--t-max 10.5: test_t_sample=10.5 ms is not a whole number of bins" in r.output
    r = CliRunner().invoke(main, ["eval", str(run), "--t-max", "-1"])
    assert r.exit_code == 2 and "'--t-max'" in r.output
    text = (run / "config.toml").read_text().replace("tau_sr = 2.0", "tau_sr = 0.005")
    (run / "config.toml").write_text(text)
    r = CliRunner().invoke(main, ["eval", str(run)])
    assert r.exit_code == 1 and "tau_sr=0.005 ms is below Ts=1 ms" in r.output


# ------------------------------------------------------------------ 3. samples that bin to nothing
def _arrays(rng, n, t0, span_us=50_000):
    return [make_events(rng.integers(0, 8, 40), rng.integers(0, 6, 40), t0 + np.sort(rng.integers(0, span_us, 40)), 1)
            for _ in range(n)]


def test_from_arrays_with_absolute_timestamps_is_refused_naming_the_window():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"4 of 4 sample\(s\) have no event inside the simulated window.*"
                                         r"look like absolute timestamps: subtract each sample's first timestamp"):
        from_arrays(_arrays(rng, 4, 3_000_000_000), [0, 1, 0, 1], sensor_shape=(2, 6, 8), sim=SimParams(1.0, 60.0))
    evs = _arrays(rng, 3, 0)
    evs[1]["t"] += 3_000_000_000
    with pytest.raises(ValueError, match=r"1 of 3 sample\(s\) .*indices \[1\]"):
        from_arrays(evs, [0, 1, 0], sensor_shape=(2, 6, 8), sim=SimParams(1.0, 60.0))


def test_from_arrays_with_times_in_ms_is_a_counted_warning_naming_the_unit():
    rng = np.random.default_rng(1)
    with pytest.warns(SettingsWarning, match=r"4 of 4 train samples have all their events in a single time bin.*"
                                             r"times read as microseconds.*time_unit='ms'"):
        ds = from_arrays(_arrays(rng, 4, 0, span_us=50), [0, 1, 0, 1], sensor_shape=(2, 6, 8),
                         sim=SimParams(1.0, 60.0))
    assert len(ds) == 4


class Seq(list):
    """A sequence of tonic-style ``(events, target)`` with a ``sensor_size`` (what from_tonic reads; no tonic needed)."""

    sensor_size = (4, 3, 2)


def ev2d(x, y, t, p):
    a = np.zeros(len(x), dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    a["x"], a["y"], a["t"], a["p"] = x, y, t, p
    return a


def test_tonic_adapter_samples_outside_the_window_follow_the_empty_sample_policy():
    far = ev2d([0, 1], [0, 1], [3_000_000_000, 3_000_001_000], [0, 1])
    ds = from_tonic(Seq([(ev2d([0], [0], [100], [0]), 0), (far, 1), (ev2d([1], [1], [200], [1]), 0)]), ts=1.0,
                    t_sample=5.0)
    assert ds.empty_samples() == [1]
    with pytest.raises(ValueError, match="tonic:Seq sample 1: none of its 2 event.*simulated window"):
        ds.sample(1)
    messages = []
    kept = check_empty_samples(ds, "training", "skip", messages.append)
    assert len(kept) == 2 and "skipping 1 of 3 training sample(s)" in messages[0]
    with pytest.raises(ValueError, match=r"1 of 3 training sample\(s\) have no event inside the simulated window "
                                         r"\(t = 0 .. 5 ms\), e.g. tonic:Seq sample 1"):
        check_empty_samples(ds, "training", "error")
    # a time unit that collapses every sample into one bin is reported with the unit to give
    ms_as_us = from_tonic(Seq([(ev2d([0, 1, 2], [0, 1, 0], [1, 20, 45], [0, 1, 0]), k % 2) for k in range(4)]),
                          ts=1.0, t_sample=60.0)
    messages = []
    assert check_empty_samples(ms_as_us, "training", "error", messages.append) is ms_as_us
    assert len(messages) == 1 and "warning: 4 of 4 training samples have all their events in a single time bin" \
        in messages[0] and "time_unit='ms'" in messages[0]


def test_file_reader_samples_beyond_t_sample_follow_the_empty_sample_policy(tmp_path):
    ok = ([1, 2], [3, 4], [0, 1], [1000, 2000])
    late = ([1, 2], [3, 4], [0, 1], [200_000, 250_000])  # 200 ms: beyond a 30 ms simulation
    _list_dir(tmp_path, [(1, 3), (2, 4), (3, 5)], {1: ok, 2: late, 3: ok})
    ds = load_dataset("nmnist", "train", data_dir=tmp_path, sim=SimParams(1.0, 30.0))
    assert ds.empty_samples() == [1]
    with pytest.raises(ValueError, match=r"2\.bs2: none of its 2 event\(s\) falls inside the simulated window "
                                         r"\(t = 0 .. 30 ms"):
        ds.sample(1)
    assert check_empty_samples(ds, "training", "skip").labels.tolist() == [3, 5]
    from pysrm.data.summary import format_summary, summarize  # what `pysrm data info` prints
    s = summarize(ds)
    assert s["outside_window_samples"] == 1
    assert "no event inside the simulated window (t = 0 .. 30 ms): 1, e.g." in format_summary(s)
    assert load_dataset("nmnist", "train", data_dir=tmp_path, sim=SimParams(1.0, 300.0)).empty_samples() == []


# ---------------------------------------------------------- 4. numeric options' errors name the option
def test_cli_negative_seed_names_the_option():
    p = cli("train", "--seed", "-1")
    assert p.returncode == 1 and "Error: --seed -1: seed must be an integer >= 0" in p.stderr, p.stderr
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        TrainConfig(seed=-1).validate()


@pytest.mark.parametrize("args,named", [
    (["train", "--epochs", "-1"], "--epochs -1: epochs must"), (["train", "--batch-size", "0"], "--batch-size 0: "),
    (["train", "--lr", "nan"], "--lr nan: lr must"), (["train", "--tau-sr", "-2"], "--tau-sr -2.0: tau_sr must"),
    (["train", "--ts", "inf"], "--ts inf: ts must"), (["train", "--n-train", "0"], "--n-train 0: n_train must"),
    (["train", "--dropout", "1.5"], "--dropout 1.5: dropout must"),
    (["train", "--val-split", "-0.1"], "--val-split -0.1: val_split must"),
    (["train", "--trials", "0"], "--trials 0: trials must"), (["train", "--test-every", "-1"], "--test-every -1: "),
    (["train", "--jitter", "-1"], "--jitter -1: jitter must"), (["train", "--window", "0"], "--window 0.0: "),
    (["train", "--true-rate", "-0.2"], "--true-rate -0.2: true_rate must"), (["train", "--eps", "0"], "--eps 0.0: "),
    (["train", "--memory-gb", "-1"], "--memory-gb -1.0: "), (["train", "--test-t-sample", "-10"], "--test-t-sample -10"),
    (["train", "--ts", "0.7"], "--ts 0.7: ts=0.7 ms does not divide"),
    (["train", "--window", "0.02"], "--window 0.02: window=0.02 ms is shorter than one bin"),
    (["sweep", "--seed", "-3", "--out", "sweep_out"], "--seed -3: seed must"),
])
def test_every_numeric_train_option_error_names_the_option(args, named):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and named in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("args,option", [
    (["gradcheck", "--seed", "-1"], "--seed"), (["eval", ".", "--t-max", "nan"], "--t-max"),
    (["sweep", "--trials", "0", "--out", "sweep_out"], "--trials"),
    (["sweep", "--workers", "0", "--out", "sweep_out"], "--workers"),
])
def test_other_numeric_options_are_refused_by_click_naming_the_option(args, option):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output, r.output
