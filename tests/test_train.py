"""Training pipeline: run directory, checkpoints (atomic), resume equivalence, config validation, report."""
import json

import numpy as np
import pytest

from pysrm.config import TrainConfig
from pysrm.train import TrainingInterrupted, load_checkpoint, load_run, save_checkpoint, train, build_network
from pysrm.report import make_report

TINY = dict(n_train=48, n_test=24, epochs=2, batch_size=16, t_sample=30.0, net="16x16x2-12-10", lr=0.01)


def tiny(**kw):
    return TrainConfig(**{**TINY, **kw}).validate()


def test_run_directory_contents(tmp_path):
    rep = train(tiny(), run_dir=tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "config.toml").exists() and (run / "checkpoints" / "last.npz").exists()
    assert (run / "checkpoints" / "best.npz").exists()
    cfg_text = (run / "config.toml").read_text()
    assert "[versions]" in cfg_text and "numba" in cfg_text and "seed = 0" in cfg_text
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # counted from 1, as on the screen
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_s"} <= set(rows[0])
    saved = json.loads((run / "report.json").read_text())
    assert saved["final_accuracy"] == rep["final_accuracy"]
    curve = saved["test"]["accuracy_vs_time"]
    assert len(curve["time_ms"]) == 30 and len(curve["accuracy"]) == 30
    assert set(saved["test"]["spike_counts_per_layer"]) == {"dense1.srm", "output"}
    assert set(saved["test"]["latency_ms"]) == {"0.9", "0.95", "0.99"}


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    cfg = tiny(dropout=0.2, epochs=2)
    train(cfg, run_dir=tmp_path / "full")
    with pytest.raises(TrainingInterrupted, match="pysrm train --resume"):
        train(cfg, run_dir=tmp_path / "cut", stop_after_batches=4)  # mid-epoch 2 (3 batches per epoch)
    train(TrainConfig(), run_dir=tmp_path / "cut", resume=True)
    _, a = load_run(tmp_path / "full", checkpoint="last")
    _, b = load_run(tmp_path / "cut", checkpoint="last")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    ma = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["train_loss"], r["test_acc"]) for r in ma] == [(r["train_loss"], r["test_acc"]) for r in mb]


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = tiny()
    net = build_network(cfg)
    from pysrm.optim import make_optimizer
    opt = make_optimizer("adam", net.parameters(), lr=0.01)
    path = tmp_path / "last.npz"
    save_checkpoint(path, net, opt, {"epoch": 1, "batch": 0, "best": 0.5})
    before = {k: v.copy() for k, v in net.state_dict().items()}
    for p in net.parameters():
        p.data += 1.0

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial garbage")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, opt, {"epoch": 2, "batch": 0, "best": 0.6})
    monkeypatch.undo()
    meta = load_checkpoint(path, net, opt)
    assert meta["epoch"] == 1
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(bad, build_network(tiny()))


def test_config_validation_and_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('net = "16x16x2-8-10"\nepochs = 3\nbogus_key = 1\n')
    with pytest.raises(ValueError, match="unknown key 'bogus_key'.*valid keys: dataset"):
        TrainConfig.from_toml(p)
    p.write_text('epochs = "three"\n')
    with pytest.raises(ValueError, match="epochs .* must be of type int"):
        TrainConfig.from_toml(p)
    p.write_text('epochs = 3\nloss = "spikemax-g"\n')
    cfg = TrainConfig.from_toml(p, {"epochs": 5})
    assert cfg.epochs == 5 and cfg.loss == "spikemax-g"
    with pytest.raises(ValueError, match="loss must be one of spike-rate, spikemax"):
        TrainConfig(loss="nll").validate()
    with pytest.raises(ValueError, match="tau_sr must be a finite number > 0"):
        TrainConfig(tau_sr=-1.0).validate()
    p.write_text("epochs = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        TrainConfig.from_toml(p)


def test_network_and_dataset_mismatch_is_reported(tmp_path):
    with pytest.raises(ValueError, match="expects input .* change --net"):
        train(tiny(net="34x34x2-10"), run_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="11 outputs but dataset 'synthetic' has 10 classes"):
        train(tiny(net="16x16x2-11"), run_dir=tmp_path / "r2")


def test_report_from_two_runs(tmp_path):
    train(tiny(loss="spikemax", epochs=1), run_dir=tmp_path / "runs" / "a")
    train(tiny(loss="spike-rate", epochs=1, seed=1), run_dir=tmp_path / "runs" / "b")
    res = make_report([tmp_path / "runs"], tmp_path / "rep")
    assert res["n_runs"] == 2
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "| synthetic | spike-rate |" in md and "| synthetic | spikemax |" in md
    assert (tmp_path / "rep" / "table.csv").read_text().startswith("dataset,loss,")
    for name in ("accuracy_vs_time", "spike_counts"):
        for ext in ("png", "svg"):
            assert (tmp_path / "rep" / f"{name}.{ext}").stat().st_size > 1000


def test_test_every_controls_the_per_epoch_test_evaluation(tmp_path):
    # test_every = 0 with a validation split: no test result before the end (blind tuning), 'best'
    # chosen on validation, the final network still tested once for report.json
    rep = train(tiny(epochs=3, val_split=0.25, test_every=0), run_dir=tmp_path / "blind")
    rows = [json.loads(line) for line in (tmp_path / "blind" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("val_acc" in r and "test_acc" not in r for r in rows)
    assert (tmp_path / "blind" / "checkpoints" / "best.npz").is_file()
    assert 0.0 <= rep["final_accuracy"] <= 1.0 and rep["test"]["n_samples"] == 24
    # every 2nd epoch and the last
    train(tiny(epochs=3, test_every=2), run_dir=tmp_path / "every2")
    rows = [json.loads(line) for line in (tmp_path / "every2" / "metrics.jsonl").read_text().splitlines()]
    assert ["test_acc" in r for r in rows] == [False, True, True]
    with pytest.raises(ValueError, match="test_every"):
        TrainConfig(test_every=-1).validate()


def test_tune_malloc_is_idempotent_and_can_be_disabled(monkeypatch):
    import sys
    from pysrm import _malloc
    monkeypatch.setattr(_malloc, "_done", None)
    monkeypatch.setenv("PYSRM_NO_MALLOC_TUNING", "1")
    assert _malloc.tune_malloc() is False
    monkeypatch.setattr(_malloc, "_done", None)
    monkeypatch.delenv("PYSRM_NO_MALLOC_TUNING")
    applied = _malloc.tune_malloc()
    assert applied is (sys.platform.startswith("linux") and applied)  # True on glibc Linux
    assert _malloc.tune_malloc() is applied                            # second call: no new mallopt
    if sys.platform.startswith("linux"):
        import platform
        if platform.libc_ver()[0] == "glibc":
            assert applied
    np.ones((64, 1024, 1024), dtype=np.uint8).sum()                   # large arrays still allocate


def test_tune_malloc_reuses_blocks_above_glibcs_mmap_limit():
    """After tune_malloc a freed 64 MB block (above glibc's largest mmap threshold, 32 MiB) stays in the
    process for reuse instead of being unmapped (glibc's default: the next step maps and faults fresh
    pages); checked by the resident size after ``del``, with and without the tuning."""
    import subprocess
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    code = """
import os, sys, numpy as np
if sys.argv[1] == "1":
    from pysrm._malloc import tune_malloc
    assert tune_malloc()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
a = np.ones(16 * 1024 * 1024, dtype=np.float32)   # 64 MB, touched
r0 = rss_mb()
del a
print(r0 - rss_mb())                               # MB given back to the OS by the free
"""
    given_back = {}
    for tuned in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, tuned], capture_output=True, text=True)
        if out.returncode != 0 and "AssertionError" in out.stderr:
            pytest.skip("mallopt not available (not glibc)")
        assert out.returncode == 0, out.stderr
        given_back[tuned] = float(out.stdout.strip().splitlines()[-1])
    assert given_back["0"] > 48 and given_back["1"] < 8, given_back
