"""The documentation (docs/: Sphinx, the API reference from the docstrings, the Markdown pages) builds
with warnings as errors, so a malformed docstring, an unresolved cross-reference or a broken link
between the pages fails the suite.  The tutorial is rendered without executing it here
(``nb_execution_mode=off``; tests/test_tutorial.py executes it).

Skipped only where the documentation tools are missing (they are in the ``test`` extra)."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("furo")

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
           "-D", "nb_execution_mode=off", "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(f"docs built in {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, f"sphinx-build failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"

    index = (out / "index.html").read_text(encoding="utf-8")
    for page in ("conventions", "losses", "architecture", "results", "benchmarks", "speed", "gpu", "cli",
                 "limitations", "_generated/tutorial", "api/index"):
        assert f'href="{page}.html' in index or (out / f"{page}.html").is_file(), page
        assert (out / f"{page}.html").is_file(), page
    functional = (out / "api" / "ops.html").read_text(encoding="utf-8")
    assert 'id="pysrm.ops.psp.psp_backward"' in functional  # an API entry made from a docstring
    modules = ["pysrm", "pysrm.functional", "pysrm.layers", "pysrm.network", "pysrm.plan", "pysrm.losses",
               "pysrm.optim", "pysrm.data", "pysrm.events", "pysrm.workspace", "pysrm.classifier",
               "pysrm.gradcheck", "pysrm.train", "pysrm.config", "pysrm.ops.psp", "pysrm.ops.spike",
               "pysrm.ops.dense", "pysrm.ops.conv", "pysrm.ops.srm"]
    html = "".join(p.read_text(encoding="utf-8") for p in (out / "api").glob("*.html"))
    for module in modules:
        assert f'id="module-{module}"' in html, module
