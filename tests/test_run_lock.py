"""Run directories owned by one process at a time (issue 23): a second writer -- train, resume, a sweep's
run, a report -- is refused at once with a message that names the holder, never corrupts the first, and
a lock left by a dead process blocks nobody.  The holder is a real second process (flock locks belong to
open files, so a helper process holds one exactly as a running `pysrm train` does)."""
import json
import os
import subprocess
import sys
from pathlib import Path
import pytest
from click.testing import CliRunner

from pysrm.config import TrainConfig
from pysrm.rundir import LOCK_NAME, DirectoryInUse, DirLock, holder_of
from pysrm_cli.main import main
from test_cli import pysrm_command

TINY = ["--n-train", "48", "--n-test", "24", "--batch-size", "16", "--t-sample", "30", "--net", "16x16x2-12-10"]

HOLDER = """
import sys
from pysrm.rundir import DirLock
lock = DirLock(sys.argv[1]).acquire()
print("held", flush=True)
if sys.argv[2] == "die":      # end without releasing: the kernel drops the lock, the file stays behind
    import os
    os._exit(0)
sys.stdin.read()              # hold it until the test closes our stdin
lock.release()
"""


class Holder:
    """A helper process that owns ``path`` until :meth:`stop` (``die=True``: it exits at once, leaving
    its lock file with its pid behind)."""

    def __init__(self, path, die: bool = False):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "die" if die else "hold"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"
        if die:
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_train_is_refused_while_another_process_owns_the_run_directory(tmp_path):
    out = tmp_path / "same"
    with Holder(out) as h:
        p = subprocess.run(pysrm_command() + ["train", *TINY, "--epochs", "1", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 1, p.stderr
        assert f"run directory {out} is in use by another process: pid {h.proc.pid} on host" in p.stderr
        assert "-c" in p.stderr and "wait until it ends, or choose another --out" in p.stderr
        assert "Traceback" not in p.stderr
        assert sorted(q.name for q in out.iterdir()) == [LOCK_NAME]  # nothing written, the holder's file kept
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == h.proc.pid
    r = run("train", *TINY, "--epochs", "1", "--out", out)  # free again
    assert r.exit_code == 0, r.output
    assert not (out / LOCK_NAME).exists()  # released (and removed) at the end


def test_resume_and_report_are_refused_and_change_nothing(tmp_path):
    out = tmp_path / "run"
    assert run("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    before = snapshot(out)
    with Holder(out) as h:
        r = run("train", "--resume", out, "--epochs", "2")
        assert r.exit_code == 1 and f"{out} is in use by another process: pid {h.proc.pid}" in r.output
        assert f"wait until it ends before resuming {out}" in r.output
        assert {k: v for k, v in snapshot(out).items() if k != LOCK_NAME} == before
    rep = tmp_path / "rep"
    with Holder(rep) as h:
        r = run("report", out, "--out", rep)
        assert r.exit_code == 1 and f"report folder {rep} is in use by another process: pid {h.proc.pid}" in r.output
        assert sorted(q.name for q in rep.iterdir()) == [LOCK_NAME]
    r = run("report", out, "--out", rep)
    assert r.exit_code == 0 and (rep / "table.md").exists() and not (rep / LOCK_NAME).exists()


def test_trials_check_for_a_running_trial_before_training_any(tmp_path):
    out = tmp_path / "trials"
    with Holder(out / "seed_1") as h:
        r = run("train", *TINY, "--epochs", "1", "--trials", "2", "--out", out)
        assert r.exit_code == 1 and f"seed_1 is in use by another process: pid {h.proc.pid}" in r.output
        assert not (out / "seed_0").exists()


def test_a_sweep_run_in_progress_elsewhere_is_neither_deleted_nor_trained(tmp_path):
    from pysrm.sweep import ID_FILE, run_task
    sweep = tmp_path / "sweep"
    run_dir = sweep / "runs" / "spikemax" / "seed_0"
    run_dir.mkdir(parents=True)
    (sweep / ID_FILE).write_text("abc\n")
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n')  # someone's partial run, no checkpoint yet
    cfg = TrainConfig(n_train=48, n_test=24, epochs=1, batch_size=16, t_sample=30.0, net="16x16x2-12-10")
    with Holder(run_dir) as h:
        with pytest.raises(DirectoryInUse, match=rf"is in use by another process: pid {h.proc.pid}"):
            run_task("spikemax/seed_0", cfg.to_dict(), str(sweep), "abc", shared=True, threads=1)
        assert (run_dir / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
    res = run_task("spikemax/seed_0", cfg.to_dict(), str(sweep), "abc", shared=True, threads=1)
    assert res["in_place"] and (run_dir / "report.json").exists()


def test_two_trainings_started_together_into_one_out(tmp_path):
    """The issue's case: two `pysrm train --out same` at once.  One trains; the other is refused (or, if
    it starts after the first ended, finds a finished run); the run is whole and evaluates."""
    out = tmp_path / "same"
    cmd = pysrm_command() + ["train", "--n-train", "480", *TINY[2:], "--epochs", "3", "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    refused = next(err for rc, err in results if rc == 1)
    assert "is in use by another process: pid" in refused or "already holds a run" in refused, refused
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    r = run("eval", out)
    assert r.exit_code == 0 and "test accuracy" in r.output


def test_a_lock_left_by_a_dead_process_blocks_nobody(tmp_path):
    out = tmp_path / "run"
    h = Holder(out, die=True)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == h.proc.pid  # its details are still there
    assert holder_of(out) is None
    r = run("train", *TINY, "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "report.json").exists()


def test_a_lock_is_exclusive_within_one_process_too_and_temp_files_are_per_process(tmp_path):
    a = DirLock(tmp_path / "d").acquire()
    assert a.created == [tmp_path / "d"]
    with pytest.raises(DirectoryInUse, match=rf"pid {os.getpid()} on host .* \(started \d{{4}}-"):
        DirLock(tmp_path / "d").acquire()
    assert holder_of(tmp_path / "d")["pid"] == os.getpid()
    a.release()
    a.remove_created()
    assert not (tmp_path / "d").exists()
    import numpy as np
    from pysrm.train import _atomic_savez
    target = tmp_path / "x.npz"
    _atomic_savez(target, {"a": np.zeros(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]  # the per-process temporary is gone


def test_default_run_directories_started_in_the_same_second_get_distinct_names(tmp_path, monkeypatch):
    """Two `pysrm train` without --out in one second (the Quick start run twice by a script): the
    second run gets <name>_2 instead of being refused."""
    import pysrm.train as T
    monkeypatch.setattr(T, "default_run_dir", lambda cfg: tmp_path / "runs" / "synthetic_spikemax_seed0_20261207")
    a = T._claim_default_run_dir(TrainConfig())
    b = T._claim_default_run_dir(TrainConfig())
    assert a.path.name == "synthetic_spikemax_seed0_20261207" and b.path.name == a.path.name + "_2"
    assert a.created == [tmp_path / "runs", a.path] and b.created == [b.path]
    a.release()
    b.release()


def test_train_trials_without_out_claims_a_new_default_directory(tmp_path, monkeypatch):
    """The path `pysrm train` takes (train_trials, one trial, no --out) claims its default directory too:
    a second run whose default name is taken (started in the same second) trains into <name>_2 instead
    of failing as 'already holds a run' (a fresh-clone CI run of the test command hit that)."""
    import pysrm.train as T
    base = tmp_path / "runs" / "synthetic_spikemax_seed0_20261207"
    monkeypatch.setattr(T, "default_run_dir", lambda cfg: base)
    cfg = dict(n_train=48, n_test=24, epochs=1, batch_size=16, t_sample=30.0, net="16x16x2-12-10")
    (a,) = T.train_trials(TrainConfig(**cfg))
    (b,) = T.train_trials(TrainConfig(**cfg))
    assert Path(a["run_dir"]) == base and Path(b["run_dir"]) == base.with_name(base.name + "_2")
    assert (base / "report.json").exists() and (base.with_name(base.name + "_2") / "report.json").exists()


def test_a_second_sweep_into_one_sweep_directory_is_refused(tmp_path, monkeypatch):
    """run_sweep owns SWEEP_DIR before it plans, connects or writes anything (no Dask needed to see it)."""
    import pysrm.sweep as S
    monkeypatch.setattr(S, "require_dask", lambda: None)  # the refusal comes before any use of Dask
    runs = S.plan_sweep(TrainConfig(n_train=48, n_test=24, epochs=1, batch_size=16, t_sample=30.0,
                                    net="16x16x2-12-10"), ["spikemax"], 1)
    sweep = tmp_path / "sweep"
    with Holder(sweep) as h:
        with pytest.raises(DirectoryInUse, match=rf"sweep directory {sweep} is in use by another process: pid "
                                                 rf"{h.proc.pid}.*running the same command again"):
            S.run_sweep(runs, sweep, workers=1, dashboard=None, log=lambda line: None)
        assert sorted(p.name for p in sweep.iterdir()) == [LOCK_NAME]  # no sweep.json, no id, no runs
