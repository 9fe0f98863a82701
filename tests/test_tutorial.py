"""The tutorial notebook (examples/tutorial.ipynb) is committed without outputs and executes top to
bottom on the CPU (nbclient, in a temporary folder), with its checks (finite differences, Network
against the functional ops, a trained network above chance) holding and its figures made.

Skipped only where the notebook tooling is missing (it is in the ``test`` extra)."""
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "tutorial.ipynb"
CELL_TIMEOUT_S = 600  # per cell, generous for a loaded machine: the whole notebook takes well under a minute


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 10
    for i, cell in enumerate(code):
        assert cell.outputs == [] and cell.execution_count is None, f"code cell {i} has outputs"


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_tutorial_executes(tmp_path, monkeypatch):
    # the kernel (started in tmp_path) imports the pysrm these tests import, so it runs the same code and
    # shares its Numba cache (a source checkout's or an installed package's)
    import pysrm
    here = str(Path(pysrm.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=CELL_TIMEOUT_S,
                                     kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) if any cell fails
    elapsed = time.perf_counter() - t0
    print(f"tutorial executed in {elapsed:.1f} s")

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= 6, f"{figures} figures"
    text = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "identical to the network's output: True" in text
    assert "DenseSRMBlock" in text  # the default network's plan
    for name in ("spike-rate", "spikemax", "spikemax_g", "spikemax_s"):
        assert f"\n{name} " in text or text.startswith(f"{name} ")
    acc = float(text.split("test accuracy ")[1].split(" %")[0])
    assert acc > 50.0, text  # chance is 10 %
