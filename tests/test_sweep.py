"""``pysrm sweep`` on a local Dask cluster: completes, equals serial runs, survives a killed worker.

A tiny config on the embedded synthetic dataset; one 2-process LocalCluster shared by the module.
The tests that need Dask are skipped without it (``pip install ".[dist]"``); the message a user
gets without Dask is tested either way.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pysrm.config import TrainConfig
from pysrm.sweep import local_cluster, local_sizing, plan_sweep, run_sweep, set_numba_threads
from pysrm.train import _Progress, train

needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason='Dask is not installed (pip install ".[dist]")')

TINY = dict(n_train=64, n_test=32, epochs=2, batch_size=16, t_sample=30, net="16x16x2-16-10", lr=0.05)
TINY_FLAGS = ["--dashboard-address", "none", "--n-train", "64", "--n-test", "32", "--epochs", "2", "--batch-size",
              "16", "--t-sample", "30", "--net", "16x16x2-16-10", "--lr", "0.05"]
LOSSES = ["spike-rate", "spikemax"]


def tiny_runs(losses=LOSSES, trials=2):
    return plan_sweep(TrainConfig(**TINY), losses, trials)


@pytest.fixture(scope="module")
def client():
    from distributed import Client
    cluster = local_cluster(2, 1, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The same runs, one after the other in this process, with pysrm.train.train."""
    root = tmp_path_factory.mktemp("serial")
    for r in tiny_runs():
        train(r.cfg, run_dir=root / r.name)
    return root


def _params(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "meta"}


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]


def assert_same_as_serial(sweep_dir, serial, names=None):
    names = names or [r.name for r in tiny_runs()]
    for name in names:
        got, want = sweep_dir / "runs" / name, serial / name
        rep_got = json.loads((got / "report.json").read_text())
        rep_want = json.loads((want / "report.json").read_text())
        assert rep_got["test"] == rep_want["test"], name
        assert rep_got["run_dir"] == str(got)
        for ck in ("last.npz", "best.npz"):
            a, b = _params(got / "checkpoints" / ck), _params(want / "checkpoints" / ck)
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} {ck} {k}")
        assert _metrics(got) == _metrics(want), name


# ---------------------------------------------------------------------------------------------- plan
def test_plan_names_seeds_and_losses():
    runs = plan_sweep(TrainConfig(seed=3, loss="spikemax"), ["spike-rate", "spikemax-g"], 2)
    assert [r.name for r in runs] == ["spike-rate/seed_3", "spike-rate/seed_4", "spikemax-g/seed_3",
                                      "spikemax-g/seed_4"]
    assert [(r.cfg.loss, r.cfg.seed, r.cfg.trials) for r in runs][1] == ("spike-rate", 4, 1)
    two = plan_sweep([("a", TrainConfig()), ("b", TrainConfig(dataset="nmnist"))], trials=1)
    assert [r.name for r in two] == ["a/spikemax/seed_0", "b/spikemax/seed_0"]


def test_local_sizing_never_oversubscribes():
    assert local_sizing(4, cores=2) == (2, 1)
    assert local_sizing(1, cores=8) == (1, 8)          # one run: all cores to it
    assert local_sizing(60, cores=16) == (16, 1)
    assert local_sizing(60, workers=3, cores=8) == (3, 2)
    assert local_sizing(60, threads=4, cores=16) == (4, 4)
    for n in (1, 3, 60):
        for cores in (1, 2, 7, 16):
            w, t = local_sizing(n, cores=cores)
            assert w * t <= cores and w <= n


# --------------------------------------------------------------------------------------------- sweeps
@needs_dask
def test_numba_threads_share_the_cores_of_a_worker_host(client):
    from dask.system import CPU_COUNT

    from pysrm.sweep import _auto_threads
    assert client.submit(_auto_threads, pure=False).result() == max(1, CPU_COUNT // 2)  # 2 one-thread workers
    assert client.submit(set_numba_threads, 1, pure=False).result() == 1


COLD_CACHE_SCRIPT = """
import sys
import numba  # imported by the main module, as the `pysrm` command does: spawned workers import it too
from pysrm.config import TrainConfig
from pysrm.sweep import plan_sweep, run_sweep

if __name__ == "__main__":
    runs = plan_sweep(TrainConfig(**TINY), ["spikemax"], 1)
    res = run_sweep(runs, sys.argv[1], workers=1, threads_per_run=1, dashboard=None, report=False, log=print)
    sys.exit(res.n_failed)
"""


@needs_dask
def test_a_worker_with_a_cold_kernel_cache_trains(tmp_path):
    # regression: on a machine whose Numba cache was empty, every run of `pysrm sweep` failed with
    # "Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched": the
    # spawned worker imports the main module (and numba) before the nanny applies NUMBA_NUM_THREADS,
    # and the worker's first compilation re-read the environment
    script = tmp_path / "cold_sweep.py"
    script.write_text(f"TINY = {dict(TINY, epochs=1)!r}\n" + COLD_CACHE_SCRIPT)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "empty_numba_cache"))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "sweep")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "sweep" / "runs" / "spikemax" / "seed_0" / "report.json").is_file()


@needs_dask
def test_sweep_completes_equals_serial_and_rerun_skips(client, serial, tmp_path):
    out = tmp_path / "sweep"
    lines = []
    res = run_sweep(tiny_runs(), out, client=client, threads_per_run=1, log=lines.append)
    assert res.n_failed == 0 and len(res.done) == 4, lines
    assert sum("done: test accuracy" in line for line in lines) == 4
    assert_same_as_serial(out, serial)
    table = (out / "report" / "table.md").read_text()
    assert "| synthetic | spike-rate |" in table and "| synthetic | spikemax |" in table and " ± " in table
    manifest = json.loads((out / "sweep.json").read_text())
    assert {v["status"] for v in manifest["runs"].values()} == {"done"}

    lines.clear()  # the same sweep again: nothing to train, so no cluster is even started
    again = run_sweep(tiny_runs(), out, log=lines.append)
    assert len(again.skipped) == 4 and not again.done and not any(line.startswith("dask:") for line in lines)
    assert again.report["n_runs"] == 4


@needs_dask
def test_sweep_returns_files_when_workers_do_not_share_the_directory(client, serial, tmp_path):
    out, scratch = tmp_path / "sweep", tmp_path / "scratch"
    res = run_sweep(tiny_runs(), out, client=client, threads_per_run=1, shared=False, scratch=str(scratch),
                    log=lambda line: None)
    assert res.n_failed == 0 and len(res.done) == 4
    assert_same_as_serial(out, serial)
    assert not list(scratch.rglob("*.npz"))  # the workers' copies are removed once returned


def _killer(marker, wipe=None):
    """A progress sink that SIGKILLs its worker process at the start of epoch 2 -- once in the whole sweep."""

    class KillOnce(_Progress):
        def start_epoch(self, epoch, epochs, n_batches):
            if epoch != 1:
                return
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            if wipe:  # node lost: its disk goes with it
                shutil.rmtree(wipe, ignore_errors=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return KillOnce()


@needs_dask
def test_worker_killed_mid_run_resumes_and_equals_serial(client, serial, tmp_path):
    out = tmp_path / "sweep"
    lines = []
    res = run_sweep(tiny_runs(), out, client=client, threads_per_run=1, log=lines.append,
                    task_progress=_killer(str(tmp_path / "killed")))
    assert (tmp_path / "killed").exists()
    assert res.n_failed == 0 and len(res.done) == 4, lines
    retried = [o for o in res.runs if o.attempts > 1]
    assert len(retried) == 1 and retried[0].attempts == 2
    assert retried[0].resumed_from == [1, 0]  # from the checkpoint written after epoch 1
    assert any("worker lost while running" in line for line in lines)
    assert_same_as_serial(out, serial)


@needs_dask
def test_worker_lost_with_its_scratch_restarts_the_run(client, serial, tmp_path):
    out, scratch = tmp_path / "sweep", tmp_path / "scratch"
    runs = tiny_runs(["spikemax"], 1)
    res = run_sweep(runs, out, client=client, threads_per_run=1, shared=False, scratch=str(scratch),
                    log=lambda line: None, task_progress=_killer(str(tmp_path / "killed"), wipe=str(scratch)))
    assert res.n_failed == 0 and res.done[0].attempts == 2 and res.done[0].resumed_from is None
    assert_same_as_serial(out, serial, ["spikemax/seed_0"])


@needs_dask
def test_failing_runs_are_reported_and_do_not_stop_the_others(client, tmp_path):
    runs = tiny_runs(trials=1) + tiny_runs(["spikemax-g"], 1)
    runs[0].cfg = runs[0].cfg.updated({"net": "16x16x2-16-3"})   # fails on the worker (3 outputs, 10 classes)
    runs[1].cfg = runs[1].cfg.updated({"lr": -1.0})              # fails validation on the client
    out = tmp_path / "sweep"
    res = run_sweep(runs, out, client=client, threads_per_run=1, retries=1, log=lambda line: None)
    assert res.n_failed == 2 and [o.name for o in res.done] == ["spikemax-g/seed_0"]
    errors = {o.name: o.error for o in res.failed}
    assert "ValueError" in errors["spike-rate/seed_0"] and "3 outputs" in errors["spike-rate/seed_0"]
    assert "lr must be" in errors["spikemax/seed_0"]
    assert "Traceback" in (out / "runs" / "spike-rate" / "seed_0" / "error.txt").read_text()
    assert all(o.attempts <= 1 for o in res.runs)  # a failing run is not retried
    assert res.report["n_runs"] == 1


# ------------------------------------------------------------------------------------------------ CLI
@needs_dask
def test_cli_sweep_runs_reports_and_skips_on_rerun(tmp_path):
    from pysrm_cli.sweep_cmd import sweep
    out = tmp_path / "sweep"
    args = ["--losses", "spike-rate,spikemax", "--trials", "2", "--workers", "2", "--out", str(out)] + TINY_FLAGS
    r = CliRunner().invoke(sweep, args)
    assert r.exit_code == 0, r.output
    assert "local cluster: 2 worker processes x 1 Numba thread" in r.output
    assert "[4/4]" in r.output and "4 of 4 runs complete" in r.output
    assert "| synthetic | spikemax |" in r.output and (out / "report" / "table.csv").exists()
    assert sorted(p.parent.relative_to(out / "runs").as_posix() for p in out.rglob("report.json")) == [
        "spike-rate/seed_0", "spike-rate/seed_1", "spikemax/seed_0", "spikemax/seed_1"]
    r = CliRunner().invoke(sweep, args)
    assert r.exit_code == 0 and "4 already complete, skipped" in r.output and "[1/" not in r.output


@needs_dask
def test_cli_exit_status_counts_failed_runs(tmp_path):
    from pysrm_cli.sweep_cmd import sweep
    args = ["--losses", "spike-rate,spikemax", "--trials", "1", "--workers", "1", "--out", str(tmp_path / "s")]
    r = CliRunner().invoke(sweep, args + TINY_FLAGS[:-4] + ["--net", "16x16x2-16-3"])
    assert r.exit_code == 2, r.output
    assert "0 of 2 runs complete" in r.output and "2 failed" in r.output and "3 outputs" in r.output


def test_cli_options_and_usage_errors():
    from pysrm_cli.sweep_cmd import sweep
    r = CliRunner().invoke(sweep, ["--help"])
    assert r.exit_code == 0
    for opt in ("--losses", "--scheduler", "--workers", "--retries", "--tau-sr", "--epochs", "--net"):
        assert opt in r.output
    r = CliRunner().invoke(sweep, ["--losses", "spikemax,nope", "--out", "x"])
    assert r.exit_code == 2 and "unknown loss nope" in r.output


def test_without_dask_says_how_to_install(monkeypatch):
    """Runs with or without Dask installed: hides it if present."""
    from pysrm_cli.sweep_cmd import sweep
    monkeypatch.setitem(sys.modules, "distributed", None)
    r = CliRunner().invoke(sweep, ["--out", "x"])
    assert r.exit_code == 1 and 'pip install ".[dist]" in a clone of pysrm' in r.output
    code = ("import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
            "import pysrm.sweep, pysrm_cli.sweep_cmd")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_task_returns_a_run_that_an_earlier_attempt_finished(tmp_path):
    """An attempt that trained and reported but whose result never reached the client: the retry finds
    the finished run in its scratch folder and returns its report (resume says 'already finished')."""
    from pysrm.sweep import run_task
    cfg = TrainConfig(**{**TINY, "epochs": 1})
    done = train(cfg, run_dir=tmp_path / "scratch" / "pysrm-sweep" / "sid" / "spikemax" / "seed_0")
    res = run_task("spikemax/seed_0", cfg.to_dict(), str(tmp_path / "sweep"), "sid", shared=False,
                   scratch=str(tmp_path / "scratch"))
    assert res["report"]["final_accuracy"] == done["final_accuracy"] and res["resumed_from"] == (1, 0)
    assert set(res["files"]) >= {"config.toml", "metrics.jsonl", "report.json", "checkpoints/last.npz"}
