"""The benchmark harness runs (a functional check only: speed is never asserted in tests)."""
import os

import pytest

from pysrm.bench import markdown, run_case


def test_bench_case_reports_every_measurement():
    r = run_case("t-scaling", batch=2, steps=1, T=20)
    for key in ("train_samples_per_s", "infer_samples_per_s", "compile_s", "peak_mb", "input_events_per_sample"):
        assert r[key] >= 0, key
    assert r["T"] == 20 and r["batch"] == 2
    assert "| t-scaling | 34x34x2-512-10 | 20 | 2 |" in markdown([r])


def test_unknown_case_is_an_error():
    with pytest.raises(KeyError):
        run_case("imagenet", batch=1, steps=1)


def test_nmnist_benchmark_batches_span_epochs_when_more_are_asked():
    """A case asking for more batches than one epoch holds gets them (a shorter list once made the
    timed loop shorter than the step count it was divided by)."""
    import pytest
    from pysrm.bench import _nmnist_batches, _nmnist_dir
    from pysrm.params import SimParams
    if not _nmnist_dir().is_dir():
        pytest.skip("NMNISTsmall not available")
    batches = _nmnist_batches(250, 6, SimParams(1.0, 30.0))  # 1,000 samples: 4 batches per epoch
    assert len(batches) == 6 and all(len(y) == 250 for _, y in batches)


def test_bench_without_data_skips_those_cases_and_runs_the_others(monkeypatch, tmp_path, capsys):
    """Issue 16: after a non-editable `pip install .`, `pysrm bench --quick` looked for its data next to
    site-packages and exited 2.  Data come from options or environment variables; a case whose data
    is missing is skipped with a message, the others run."""
    import pysrm.bench as B
    monkeypatch.setattr(B, "SOURCE_ROOT", tmp_path / "site-packages")  # not a source checkout
    monkeypatch.delenv("PYSRM_NMNIST_SMALL", raising=False)
    monkeypatch.delenv("PYSRM_NTIDIGITS_SAMPLE", raising=False)
    monkeypatch.setenv("PYSRM_DATA_DIR", str(tmp_path / "data"))
    ran = []
    envs = []
    monkeypatch.setattr(B, "_subprocess", lambda case, batch, steps, T=None, environ=None: (
        ran.append(case), envs.append(environ))[0] or {
        "case": case, "net": "n", "T": T or 300, "batch": batch, "train_samples_per_s": 1.0,
        "infer_samples_per_s": 1.0, "compile_s": 0.0, "peak_mb": 1.0, "input_events_per_sample": 1.0})
    assert B.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert sorted(set(ran)) == ["dvs-gesture", "t-scaling"]
    for case in ("nmnist-dense", "nmnist-cnn", "memory"):
        assert f"skipped {case}: NMNISTsmall not found at {tmp_path / 'data' / 'NMNISTsmall'}" in out
    assert "pass --nmnist-small DIR or set PYSRM_NMNIST_SMALL" in out
    assert "skipped ntidigits: N-TIDIGITS sample not found" in out and "PYSRM_NTIDIGITS_SAMPLE" in out
    # the options point the cases at the data (and on to their subprocesses)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "train1K.txt").write_text("#\n")
    ran.clear()
    assert B.main(["--quick", "--only", "nmnist-dense", "--nmnist-small", str(tmp_path / "small")]) == 0
    assert ran == ["nmnist-dense", "nmnist-dense"]
    # ... through the subprocesses' environment; this process's environment is left as it was
    assert {e["PYSRM_NMNIST_SMALL"] for e in envs[-2:]} == {str(tmp_path / "small")}
    assert "PYSRM_NMNIST_SMALL" not in os.environ
    assert B._nmnist_dir(envs[-1]) == tmp_path / "small"


def test_bench_help_documents_the_data_locations():
    from click.testing import CliRunner
    from pysrm_cli.main import main
    r = CliRunner().invoke(main, ["bench", "--help"])
    assert r.exit_code == 0
    for s in ("--nmnist-small", "--ntidigits-sample", "PYSRM_NMNIST_SMALL", "PYSRM_NTIDIGITS_SAMPLE",
              "skipped"):
        assert s in r.output, s


def test_installed_copy_of_pysrm_looks_for_bench_data_outside_site_packages(tmp_path):
    """A copy of the package outside a checkout (as `pip install .` makes it): no path relative to
    the package, a skip message instead of exit 2."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    site = tmp_path / "site-packages"
    shutil.copytree(Path(__file__).resolve().parents[1] / "pysrm", site / "pysrm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYSRM_NMNIST_SMALL", "PYSRM_NTIDIGITS_SAMPLE")}
    env.update(PYTHONPATH=str(site), PYSRM_DATA_DIR=str(tmp_path / "data"))
    p = subprocess.run([sys.executable, "-m", "pysrm.bench", "--quick", "--only", "nmnist-dense,ntidigits"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"skipped nmnist-dense: NMNISTsmall not found at {tmp_path / 'data' / 'NMNISTsmall'}" in p.stdout
    assert "skipped ntidigits" in p.stdout and "2 case(s) skipped for missing data" in p.stdout
