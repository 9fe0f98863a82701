"""What a newcomer met in a review of issues 23 and 26 (each case: the command, what it must do)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from test_runs import TINY, run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fc") / "run"
    r = run("train", *TINY, "--epochs", "1", "--test-every", "0", "--out", d)
    assert r.exit_code == 0, r.output
    return d


def test_eval_json_is_strict_json_when_the_loss_is_undefined(tiny_run):
    """--t-max shorter than the spikemax window leaves the loss undefined: null, not NaN (invalid JSON)."""
    r = run("eval", tiny_run, "--t-max", "10", "--json")
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("{")][-1]
    d = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert d["loss"] is None and 0.0 <= d["accuracy"] <= 1.0


def test_best_checkpoint_that_was_never_kept_is_named(tiny_run):
    """A run with --test-every 0 and no validation split keeps no best network: eval says it uses the last."""
    r = run("eval", tiny_run, "--checkpoint", "best")
    assert r.exit_code == 0 and "kept no best checkpoint" in r.output and "evaluating the last" in r.output


def test_missing_optional_dependency_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    """pysrm train --dataset tonic:NMNIST without tonic installed: one line saying what to install."""
    import builtins
    real_import = builtins.__import__

    def no_tonic(name, *args, **kw):
        if name == "tonic" or name.startswith("tonic."):
            raise ModuleNotFoundError("No module named 'tonic'")
        return real_import(name, *args, **kw)
    monkeypatch.setattr(builtins, "__import__", no_tonic)
    r = run("train", "--dataset", "tonic:NMNIST", "--data-dir", tmp_path, "--out", tmp_path / "r")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "Error:" in r.output and "pip install '.[tonic]'" in r.output and "in a clone of pysrm" in r.output


def test_nir_export_file_mode_messages_and_folder(tiny_run, tmp_path):
    pytest.importorskip("nir")
    old = os.umask(0o022)
    try:
        out = tmp_path / "new" / "net.nir"          # its folder is made, as pysrm train --out does
        r = run("export", tiny_run, "--out", out, "--checkpoint", "best")
        assert r.exit_code == 0, r.output
        assert "kept no best checkpoint" in r.output
        mode = stat.S_IMODE(out.stat().st_mode)
        assert mode == 0o644, oct(mode)             # as config.toml and the checkpoints (mkstemp made 0600)
        r = run("export", tiny_run, "--out", out)
        assert r.exit_code != 0 and "--overwrite" in r.output and "overwrite=True" not in r.output
        (tmp_path / "afile").write_text("x")
        r = run("export", tiny_run, "--out", tmp_path / "afile" / "x.nir")
        assert r.exit_code != 0 and "--out" in r.output and "afile is a file" in r.output, r.output
    finally:
        os.umask(old)


def test_eval_nir_prints_what_eval_prints(tiny_run, tmp_path):
    pytest.importorskip("nir")
    out = tmp_path / "net.nir"
    assert run("export", tiny_run, "--out", out).exit_code == 0
    r = run("eval", "--nir", out, "--dataset", "synthetic")
    assert r.exit_code == 0, r.output
    assert f"NIR graph {out}" in r.output and "seed -" not in r.output
    assert "accuracy vs inference time" in r.output


def test_python_dash_m_pysrm_runs_the_command():
    r = subprocess.run([sys.executable, "-m", "pysrm", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "pysrm" in r.stdout, r.stderr
