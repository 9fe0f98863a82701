"""Run directories and the training command (issue 16): nothing overwritten or ignored without a word,
degenerate input refused at start-up, no silent hours.  Tiny synthetic runs (T = 30, 12 hidden neurons)."""
import json
import os
import re
import signal
import subprocess
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from pysrm.config import TrainConfig
from pysrm.train import TrainingInterrupted, load_run, train
from pysrm_cli.main import main

TINY = ["--n-train", "48", "--n-test", "24", "--batch-size", "16", "--t-sample", "30", "--net", "16x16x2-12-10"]
TINY_CFG = dict(n_train=48, n_test=24, batch_size=16, t_sample=30.0, net="16x16x2-12-10", lr=0.01)


def run(*args, env=None):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False, env=env)


def tiny(**kw):
    return TrainConfig(**{**TINY_CFG, **kw}).validate()


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------ overwriting
def test_out_naming_an_existing_run_does_not_overwrite_it(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "2", "--out", out).exit_code == 0
    report = (out / "report.json").read_bytes()
    r = run("train", *TINY, "--epochs", "1", "--out", out)
    assert r.exit_code == 1
    assert f"{out} already holds a run (finished after 2 epoch(s)); it is not overwritten" in r.output
    assert f"--resume {out}" in r.output and "--overwrite" in r.output
    assert (out / "report.json").read_bytes() == report and len(rows(out)) == 2
    r = run("train", *TINY, "--epochs", "1", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(rows(out)) == 1 and json.loads((out / "report.json").read_text())["epochs"] == 1


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = run("train", *TINY, "--epochs", "1", "--out", tmp_path, "--overwrite")
    assert r.exit_code == 1 and "is not empty and is not a run directory (it holds notes.txt)" in r.output
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "config.toml").exists()


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_its_checks(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    r = run("train", *TINY, "--epochs", "1", "--out", out, "--overwrite", "--net", "34x34x2-10")
    assert r.exit_code == 1 and "expects input" in r.output
    assert (out / "report.json").exists() and (out / "checkpoints" / "last.npz").exists()


def test_a_run_that_fails_validation_leaves_no_run_directory(tmp_path):
    for flags in (["--n-train", "0"], ["--net", "34x34x2-10"], ["--jitter", "50"],
                  ["--n-train", "1", "--val-split", "0.5"]):
        out = tmp_path / "r"
        args = [a for a in TINY if a not in ("--n-train", "48")] if "--n-train" in flags else TINY
        r = run("train", *args, *flags, "--epochs", "1", "--out", out)
        assert r.exit_code != 0, flags
        assert not out.exists(), flags


def test_trials_check_every_trial_directory_before_training(tmp_path):
    out = tmp_path / "trials"
    (out / "seed_1" / "checkpoints").mkdir(parents=True)
    (out / "seed_1" / "config.toml").write_text("epochs = 1\n")
    r = run("train", *TINY, "--epochs", "1", "--trials", "2", "--out", out)
    assert r.exit_code == 1 and "seed_1 already holds a run" in r.output
    assert not (out / "seed_0").exists()


def test_failure_before_the_first_checkpoint_removes_the_new_run_directory(tmp_path, monkeypatch):
    import pysrm.train as T

    def diverge(*a, **k):
        raise FloatingPointError("loss became nan at epoch 1, batch 1; try a smaller --lr")
    monkeypatch.setattr(T, "_train_epoch", diverge)
    with pytest.raises(FloatingPointError):
        train(tiny(epochs=1), run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------ resume
def test_resume_with_epochs_extends_the_run_exactly(tmp_path):
    from pysrm.train import RunFinished
    cfg = tiny(epochs=3, lr_decay=0.9, dropout=0.2)
    train(cfg, run_dir=tmp_path / "full")
    train(cfg.updated({"epochs": 2}), run_dir=tmp_path / "ext")
    with pytest.raises(RunFinished, match=r"already finished: it trained all 2 epochs"):
        train(TrainConfig(), run_dir=tmp_path / "ext", resume=True)
    train(TrainConfig(), run_dir=tmp_path / "ext", resume=True, epochs=3)
    _, a = load_run(tmp_path / "full", checkpoint="last")
    _, b = load_run(tmp_path / "ext", checkpoint="last")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    ra, rb = rows(tmp_path / "full"), rows(tmp_path / "ext")
    assert [r["epoch"] for r in rb] == [1, 2, 3]
    assert [(r["train_loss"], r["lr"]) for r in ra] == [(r["train_loss"], r["lr"]) for r in rb]
    assert TrainConfig.from_toml(tmp_path / "ext" / "config.toml").epochs == 3
    assert json.loads((tmp_path / "ext" / "report.json").read_text())["epochs"] == 3
    with pytest.raises(ValueError, match=r"--epochs 2: .* has already trained 3 epoch\(s\); expected --epochs >= 3"):
        train(TrainConfig(), run_dir=tmp_path / "ext", resume=True, epochs=2)


def test_cli_resume_of_a_finished_run_says_so_and_extends_with_epochs(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "2", "--out", out).exit_code == 0
    r = run("train", "--resume", out)
    assert r.exit_code == 0
    assert "already finished: it trained all 2 epochs" in r.output and "--epochs N (N > 2)" in r.output
    assert "resuming" not in r.output and "at epoch 3" not in r.output and len(rows(out)) == 2
    r = run("train", "--resume", out, "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert f"resuming {out} at epoch 3/3" in r.output and "epoch 3/3: train loss" in r.output
    assert [row["epoch"] for row in rows(out)] == [1, 2, 3]


def test_cli_resume_refuses_options_it_would_ignore(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    r = run("train", "--resume", out, "--lr", "0.5", "--epochs", "2")
    assert r.exit_code == 2
    assert "only --epochs (to extend it) and --device can be given with it, not --lr" in r.output
    assert len(rows(out)) == 1


def test_resume_reads_metrics_files_that_count_epochs_from_zero(tmp_path):
    """metrics.jsonl counts epochs from 1, as the screen does; a run interrupted under the old
    convention (from 0) resumes into a file with one convention and the same numbers."""
    cfg = tiny(epochs=2)
    train(cfg, run_dir=tmp_path / "full")
    with pytest.raises(TrainingInterrupted):
        train(cfg, run_dir=tmp_path / "cut", stop_after_batches=4)  # in epoch 2
    old = [dict(r, epoch=r["epoch"] - 1) for r in rows(tmp_path / "cut")]
    assert [r["epoch"] for r in old] == [0]
    (tmp_path / "cut" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    train(TrainConfig(), run_dir=tmp_path / "cut", resume=True)
    assert [r["epoch"] for r in rows(tmp_path / "cut")] == [1, 2]
    assert [r["train_loss"] for r in rows(tmp_path / "cut")] == [r["train_loss"] for r in rows(tmp_path / "full")]


def test_resume_of_a_trials_folder_continues_every_trial(tmp_path):
    out = tmp_path / "t"
    assert run("train", *TINY, "--epochs", "1", "--trials", "2", "--out", out).exit_code == 0
    r = run("train", "--resume", out, "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "trial 1/2 (seed 0) epoch 2/2: train loss" in r.output
    assert "trial 2/2 (seed 1) epoch 2/2: train loss" in r.output
    assert [len(rows(out / f"seed_{s}")) for s in (0, 1)] == [2, 2]


# ------------------------------------------------------------------------------------ eval
def test_eval_does_not_claim_to_save_anything(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = run("eval", out, "--t-max", "15")
    assert r.exit_code == 0 and "test accuracy" in r.output
    assert "saved in" not in r.output and "report.json" not in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


# ------------------------------------------------------------------------------------ degenerate input
def test_n_train_and_n_test_zero_are_errors():
    for opt in ("--n-train", "--n-test"):
        k = TINY.index(opt)
        args = TINY[:k] + TINY[k + 2:]
        r = run("train", *args, opt, "0", "--epochs", "1")
        assert r.exit_code == 1
        assert f"{opt[2:].replace('-', '_')} must be an integer >= 1" in r.output and "no " in r.output
    with pytest.raises(ValueError, match="n_train must be an integer >= 1"):
        TrainConfig(n_train=0).validate()


def test_val_split_that_leaves_no_training_sample_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"val_split 0\.5 of 1 training sample\(s\) .* leaves no sample"):
        train(tiny(n_train=1, val_split=0.5, epochs=1), run_dir=tmp_path / "r")


def test_jitter_that_drops_most_events_is_an_error_and_large_losses_are_counted(tmp_path):
    from pysrm.train import jitter_loss
    assert jitter_loss(50, (2, 16, 16)) == pytest.approx(1 - (256 / 1616) ** 2)
    assert jitter_loss(0, (2, 16, 16)) == 0.0 and jitter_loss(2, (2, 34, 34)) == pytest.approx(1 - (164 / 170) ** 2)
    r = run("train", *TINY, "--jitter", "50", "--epochs", "1", "--out", tmp_path / "a")
    assert r.exit_code == 1
    assert "jitter 50 px would move about 97 % of the events off the 16x16 sensor" in r.output
    m = re.search(r"expected jitter <= (\d+) px", r.output)
    assert m and jitter_loss(int(m.group(1)), (2, 16, 16)) <= 0.5 < jitter_loss(int(m.group(1)) + 1, (2, 16, 16))
    r = run("train", *TINY, "--jitter", "6", "--epochs", "1", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    m = re.search(r"warning: epoch 1: jitter 6 px moved (\d+) of (\d+) training events \((\d+) %\) off the sensor",
                  r.output)
    assert m and 0.2 < int(m.group(1)) / int(m.group(2)) < 0.6


def _nmnist_list_dir(root, n_train=6, n_test=3, empty=(2,)):
    """A SLAYER list-layout N-MNIST folder of tiny samples; the ids in ``empty`` have no event."""
    rng = np.random.default_rng(0)
    root.mkdir()
    ids = list(range(1, n_train + n_test + 1))
    for i in ids:
        n = 0 if i in empty else 30
        x, y, t = rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 25_000, n))
        with open(root / f"{i}.bs2", "wb") as f:
            for xi, yi, ti in zip(x, y, t):
                f.write(bytes([int(xi), int(yi), (1 << 7) | (int(ti) >> 16), (int(ti) >> 8) & 0xFF, int(ti) & 0xFF]))
    (root / "train_x.txt").write_text("#id class\n" + "".join(f"{i} {i % 10}\n" for i in ids[:n_train]))
    (root / "test_x.txt").write_text("#id class\n" + "".join(f"{i} {i % 10}\n" for i in ids[n_train:]))


NMNIST_TINY = ["--dataset", "nmnist", "--net", "34x34x2-10", "--t-sample", "30", "--epochs", "1", "--batch-size", "2"]


def test_empty_samples_are_found_at_start_up(tmp_path):
    """Issue 16: a sample with no events aborted training only when it was first drawn, mid-epoch."""
    data = tmp_path / "data"
    _nmnist_list_dir(data)
    out = tmp_path / "run"
    r = run("train", *NMNIST_TINY, "--data-dir", data, "--out", out)
    assert r.exit_code == 1
    assert "1 of 6 training sample(s) have no event inside the sensor, e.g. " in r.output and "2.bs2" in r.output
    assert "--empty-samples skip" in r.output and not out.exists()
    r = run("train", *NMNIST_TINY, "--data-dir", data, "--out", out, "--empty-samples", "skip")
    assert r.exit_code == 0, r.output
    assert "skipping 1 of 6 training sample(s)" in r.output
    assert json.loads((out / "report.json").read_text())["n_train_samples"] == 5
    # the test split is checked too
    data2 = tmp_path / "data2"
    _nmnist_list_dir(data2, empty=(8,))
    r = run("train", *NMNIST_TINY, "--data-dir", data2, "--out", tmp_path / "run2")
    assert r.exit_code == 1 and "1 of 3 test sample(s) have no event" in r.output and "8.bs2" in r.output


# ------------------------------------------------------------------------------------ what it says
def test_progress_lines_when_not_on_a_terminal(tmp_path):
    r = run("train", *TINY, "--epochs", "1", "--out", tmp_path / "r", env={"PYSRM_PROGRESS_SECONDS": "0"})
    assert r.exit_code == 0
    assert "epoch 1/1: first batch; compiling the kernels not cached yet" in r.output
    # the first batch includes compiling: no rate or ETA from it (it once promised 33 minutes for a 70 s run)
    assert re.search(r"^epoch 1/1: batch 1/3, loss [\d.]+, acc [\d.]+%, compiled$", r.output, re.M), r.output
    assert re.search(r"^epoch 1/1: batch 2/3, loss [\d.]+, acc [\d.]+%, [\d.]+ samples/s, ETA \d+ s$", r.output,
                     re.M), r.output
    assert "\r" not in r.output


def test_device_auto_says_which_device_it_picked(tmp_path):
    from pysrm.backend import cuda_available
    r = run("train", *TINY, "--epochs", "1", "--device", "auto", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    want = "device auto: using cuda" if cuda_available() else "device auto: using cpu (no usable CUDA GPU found)"
    assert want in r.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["device"] == want.split()[3]
    r = run("eval", tmp_path / "r", "--device", "auto")
    assert r.exit_code == 0 and want in r.output


def test_trial_lines_say_which_trial(tmp_path):
    r = run("train", *TINY, "--epochs", "1", "--trials", "2", "--seed", "3", "--out", tmp_path / "t")
    assert r.exit_code == 0, r.output
    assert re.search(r"^trial 1/2 \(seed 3\) epoch 1/1: train loss", r.output, re.M)
    assert re.search(r"^trial 2/2 \(seed 4\) epoch 1/1: train loss", r.output, re.M)


def test_metrics_count_epochs_as_the_screen_does(tmp_path):
    r = run("train", *TINY, "--epochs", "2", "--out", tmp_path / "r")
    screen = [int(e) for e in re.findall(r"^epoch (\d+)/2: train loss", r.output, re.M)]
    assert screen == [1, 2] and [row["epoch"] for row in rows(tmp_path / "r")] == screen


@pytest.mark.parametrize("spelling", ["spikemax_g", "spikemax-g", "SpikeMax_S", "spike_rate"])
def test_loss_names_in_both_spellings_on_the_command_line_and_in_config_files(tmp_path, spelling):
    canonical = spelling.lower().replace("_", "-")
    r = run("train", *TINY, "--epochs", "1", "--loss", spelling, "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    assert f"loss {canonical}," in r.output
    assert TrainConfig.from_toml(tmp_path / "a" / "config.toml").loss == canonical
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'loss = "{spelling}"\n')
    assert TrainConfig.from_toml(cfg).validate().loss == canonical
    assert TrainConfig(loss=spelling).validate().loss == canonical


def test_sweep_accepts_both_loss_spellings():
    import click
    from pysrm_cli.sweep_cmd import _losses
    assert _losses(None, None, "spike_rate,spikemax,spikemax_g,spikemax-s") == [
        "spike-rate", "spikemax", "spikemax-g", "spikemax-s"]
    with pytest.raises(click.BadParameter, match="listed twice"):
        _losses(None, None, "spikemax_g,spikemax-g")


def test_progress_on_a_terminal_says_that_kernels_compile_then_draws_the_bar():
    import io
    from pysrm_cli.main import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True
    s = Tty()
    bar = ProgressBar(stream=s)
    bar.start_trial(2, 3, 7)
    bar.start_epoch(0, 4, 10)
    assert s.getvalue() == ("\rtrial 2/3 (seed 7) epoch 1/4: first batch; compiling the kernels not cached yet "
                            "(about a minute on a first run; later runs load them from disk) ...")
    bar.batch(1, 10, 2.0, 0.5, 100.0)
    assert "\rtrial 2/3 (seed 7) epoch 1/4 [##......................] 1/10 loss 2.0000 acc  50.0%" in s.getvalue()
    bar.end_epoch({"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "seconds": 1.0, "samples_per_s": 10.0})
    assert s.getvalue().endswith("trial 2/3 (seed 7) epoch 1/4: train loss 1.0000 acc 50.0% | 1.0 s, 10 samples/s\n")
    bar.end_epoch({"epoch": 2, "train_loss": 1.0, "train_acc": 0.5, "seconds": 40.0, "samples_per_s": 0.2})
    assert s.getvalue().endswith("| 40.0 s, 0.2 samples/s\n")  # a slow CNN epoch is not '0 samples/s'
    bar.start_epoch(1, 4, 10)  # compiled once per process: no second note
    assert s.getvalue().count("compiling the kernels") == 1


# ------------------------------------------------------------------------------------ Ctrl-C at every point (issue 23)
class SigintAt:
    """A progress sink that sends this process SIGINT at one point of a run, and records what the run
    acknowledges: 'eval test N' / 'eval final test' (start of the test evaluation of epoch N / the final
    one), 'end N' (after the metrics line of epoch N), 'message' (the first message, during start-up)."""

    def __init__(self, when):
        self.when, self.sent, self.acks = when, False, []

    def _at(self, point):
        if point == self.when and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next line of this function

    epoch = 0

    def start_trial(self, *a): ...
    def batch(self, *a): ...

    def start_epoch(self, epoch, epochs, n_batches):
        self.epoch = epoch + 1

    def end_epoch(self, row):
        self._at(f"end {row['epoch']}")

    def message(self, text):
        self._at("message")

    def start_eval(self, what, n_samples):
        self._at("eval final test" if what == "final test" else f"eval {what} {self.epoch}")

    def stop_requested(self, text):
        self.acks.append(text)


def _params(run_dir):
    with np.load(run_dir / "checkpoints" / "last.npz") as z:
        return {k: z[k] for k in z.files if k.startswith("param/")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full") / "run"
    train(tiny(epochs=2, dropout=0.2), run_dir=d)
    return d


main_thread_only = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                      reason="SIGINT handlers are installed in the main thread only")


@main_thread_only
@pytest.mark.parametrize("when, ack, stopped", [
    ("eval test 2", "stopping this evaluation and saving a checkpoint", "in epoch 2/2, after its last batch, before"),
    ("end 2", "finishing the checkpoint being written, then stopping", "during the final evaluation"),
    ("eval final test", "stopping the final evaluation; every epoch is checkpointed", "during the final evaluation"),
])
def test_ctrl_c_after_the_last_batch_is_acknowledged_honoured_and_resumes_exactly(tmp_path, uninterrupted, when,
                                                                                   ack, stopped):
    """Issue 23: Ctrl-C once the last batch of the last epoch had started (its test evaluation, the final
    evaluation) was ignored and the run exited 0.  Now: acknowledged at once, stopped at the next batch
    of the evaluation, and --resume gives the same run as one never interrupted."""
    from pysrm.train import RunDir
    out = tmp_path / "run"
    sink = SigintAt(when)
    with pytest.raises(TrainingInterrupted, match=stopped) as e:
        train(tiny(epochs=2, dropout=0.2), run_dir=out, progress=sink)
    assert sink.sent and len(sink.acks) == 1 and sink.acks[0].startswith(f"stop requested (Ctrl-C): {ack}")
    assert not e.value.complete and not (out / "report.json").exists()
    if when == "eval test 2":
        assert RunDir(out).describe() == "interrupted in epoch 2, after its last batch, before its evaluation"
        assert [r["epoch"] for r in rows(out)] == [1]
    train(TrainConfig(), run_dir=out, resume=True)
    assert [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows(out)] == \
        [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows(uninterrupted)]
    a, b = _params(out), _params(uninterrupted)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((out / "report.json").read_text())["test"] == \
        json.loads((uninterrupted / "report.json").read_text())["test"]


@main_thread_only
def test_ctrl_c_while_the_report_is_written_finishes_it_and_still_says_it_stopped(tmp_path, monkeypatch):
    from pysrm.train import RunDir
    write = RunDir.write_report

    def interrupted_write(self, report):
        os.kill(os.getpid(), signal.SIGINT)
        write(self, report)
    monkeypatch.setattr(RunDir, "write_report", interrupted_write)
    sink = SigintAt(None)
    with pytest.raises(TrainingInterrupted, match="the run is complete") as e:
        train(tiny(epochs=1), run_dir=tmp_path / "run", progress=sink)
    assert e.value.complete and (tmp_path / "run" / "report.json").exists()
    assert sink.acks == ["stop requested (Ctrl-C): finishing report.json (being written), then stopping; the run "
                         "is complete; Ctrl-C again aborts without saving"]


@main_thread_only
def test_ctrl_c_during_start_up_stops_at_once_and_leaves_nothing(tmp_path):
    from pysrm.train import TrainingAborted
    with pytest.raises(TrainingAborted, match="before the first epoch ended; nothing was saved"):
        train(tiny(epochs=1, device="auto"), run_dir=tmp_path / "new" / "run", progress=SigintAt("message"))
    assert not (tmp_path / "new").exists()  # the folders this run made are removed


def test_ctrl_c_in_the_last_batch_of_a_real_run_exits_130_and_resumes(tmp_path):
    """The issue's case through `pysrm train`: SIGINT once the last batch (of 2) has started."""
    from test_cli import pysrm_command
    out = tmp_path / "run"
    args = ["--n-train", "32", "--n-test", "600", "--batch-size", "16", "--t-sample", "30", "--net", "16x16x2-12-10",
            "--epochs", "1", "--out", str(out)]
    p = subprocess.Popen(pysrm_command() + ["train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYSRM_PROGRESS_SECONDS": "0"})
    seen = []
    for line in p.stderr:
        seen.append(line)
        if line.startswith("epoch 1/1: batch 1/2"):
            p.send_signal(signal.SIGINT)
            break
    err = "".join(seen) + p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 130, err
    assert "stop requested (Ctrl-C): " in err
    # where it lands depends on the machine's load: before the last batch (the loader still fetching it),
    # after it or during the evaluation, or in the final evaluation -- each one honoured and resumable
    assert re.search(r"training interrupted (in epoch 1/1 before batch 2/2|in epoch 1/1, after its last batch, "
                     r"before its evaluation ended|during the final evaluation)", err), err
    assert f"Resume with: pysrm train --resume {out}" in err and not (out / "report.json").exists()
    r = run("train", "--resume", out)
    assert r.exit_code == 0, r.output
    assert [row["epoch"] for row in rows(out)] == [1] and (out / "report.json").exists()


# ------------------------------------------------------------------------------------ output paths (issue 23)
def test_out_below_a_file_or_a_file_as_out_is_a_message_not_a_traceback(tmp_path):
    from test_cli import pysrm_command
    outfile = tmp_path / "outfile"
    outfile.write_text("mine")
    p = subprocess.run(pysrm_command() + ["train", *TINY, "--epochs", "1", "--out", str(outfile / "run")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"Invalid value for '--out': {outfile}/run: {outfile} is a file, so no folder can be made below it" \
        in p.stderr
    run_dir = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "1", "--out", run_dir).exit_code == 0
    p = subprocess.run(pysrm_command() + ["report", str(run_dir), "--out", str(outfile)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"Invalid value for '--out': {outfile}: it is a file, not a folder" in p.stderr
    assert outfile.read_text() == "mine"


@pytest.mark.parametrize("args", [
    ["bench", "--quick", "--out", "{f}/results"],
    ["data", "fetch", "nmnist", "--to", "{f}/nmnist"],
    ["sweep", "--out", "{f}"],
    ["sweep", "--out", "{f}/sweep"],
    ["report", "{run}", "--out", "{f}/rep"],
])
def test_every_output_option_refuses_a_path_under_a_file_before_any_work(tmp_path, args):
    outfile = tmp_path / "outfile"
    outfile.write_text("mine")
    args = [a.format(f=outfile, run=tmp_path) for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and r.exception is not None and isinstance(r.exception, SystemExit), r.output
    option = args[args.index(next(a for a in args if a.startswith(str(outfile)))) - 1]
    assert f"Invalid value for '{option}'" in r.output and f"{outfile}" in r.output and "is a file" in r.output


def test_out_from_a_config_file_below_a_file_names_it(tmp_path):
    outfile = tmp_path / "outfile"
    outfile.write_text("mine")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'out = "{outfile}/run"\nepochs = 1\nn_train = 48\nn_test = 24\nnet = "16x16x2-12-10"\n')
    r = CliRunner().invoke(main, ["train", "--config", str(cfg)])
    assert r.exit_code == 1 and not isinstance(r.exception, NotADirectoryError), r.output
    assert f"--out {outfile}/run: {outfile} is a file, so no folder can be made below it" in r.output
