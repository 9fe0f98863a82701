"""The kernels' interfaces (issue 24): short parameter lists, and a CPU network that never touches CUDA.

* No Numba-compiled function takes more than :data:`MAX_PARAMETERS` parameters: a kernel takes named
  records (:mod:`pysrm.ops._records`, the records of :mod:`pysrm.blocks.conv` and
  :mod:`pysrm.blocks.dense_srm`, the optimisers' ``AdamStep``, the CUDA kernels' records) instead of long
  positional lists.  :data:`NOT_YET` lists exceptions (none now); it only shrinks: a listed function that
  takes few parameters fails the test until it is taken off the list.
* A CPU network's forward, backward and optimiser step import no pysrm CUDA module (checked in a fresh
  process, on a dense and a conv network).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pysrm"

#: the most parameters a compiled function may take
MAX_PARAMETERS = 12

#: compiled functions that may still take more (file relative to pysrm/, function name)
NOT_YET: set = set()


def _compiled_functions():
    """(file, name, number of parameters) of every function decorated with a Numba jit in pysrm/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any("jit" in ast.unparse(d) for d in node.decorator_list):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                yield path.relative_to(PACKAGE).as_posix(), node.name, n


def test_no_compiled_function_takes_more_than_twelve_parameters():
    found = list(_compiled_functions())
    assert len(found) > 100, "the scan found too few compiled functions: is the decorator check still right?"
    too_many = [f"{f}:{name} takes {n}" for f, name, n in found if n > MAX_PARAMETERS and (f, name) not in NOT_YET]
    assert not too_many, "compiled functions with more than 12 parameters (use a record):\n" + "\n".join(too_many)
    now_short = sorted(f"{f}:{name} ({n})" for f, name, n in found if (f, name) in NOT_YET and n <= MAX_PARAMETERS)
    assert not now_short, "take these off NOT_YET, they are short now: " + ", ".join(now_short)
    names = {(f, name) for f, name, _ in found}
    assert NOT_YET <= names, f"NOT_YET names functions that no longer exist: {sorted(NOT_YET - names)}"


_TRAIN_ONE_STEP = r"""
import sys
import numpy as np
from pysrm import NeuronParams, SimParams
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import Adam
sim = SimParams(ts=1.0, t_sample=30.0)
for spec in ("8x8x2-16-4", "8x8x2-4c3-2a-8-4"):
    net = Network.from_string(spec, NeuronParams(theta=10, tau_sr=2, tau_ref=2), sim)
    loss, opt = make_loss("spikemax", ts=sim.ts, window=10.0), Adam(net.parameters(), lr=0.01)
    x = (np.random.default_rng(0).random((4, 2, 8, 8, 30)) < 0.2).astype(np.float32)
    out = net.forward(x, train=True)
    value, grad = loss.value_and_grad(out, np.array([0, 1, 2, 3]))
    net.zero_grad()
    net.backward(grad)
    opt.step()
    assert np.isfinite(value)
cuda = sorted(m for m in sys.modules if m.startswith("pysrm") and ("cuda" in m or "cublas" in m))
print("CUDA-MODULES", cuda, sorted(m for m in sys.modules if m.startswith("numba.cuda"))[:3])
"""


def test_cpu_training_step_imports_no_cuda_module():
    r = subprocess.run([sys.executable, "-c", _TRAIN_ONE_STEP], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CUDA-MODULES [] []" in r.stdout, r.stdout


_IMPORT_FIRST = r"""
import importlib, sys
importlib.import_module(sys.argv[1])
import pysrm.cuda, pysrm.ops._cublas_cuda, pysrm.ops._gemm_cuda  # every module still complete
"""


def test_cuda_modules_import_in_any_order_without_a_circle():
    """Each module of the device seam imports first in a fresh process (no module needs one that is still
    being imported), and none of the pysrm.cuda package's modules imports a pysrm module above it (the
    cuBLAS products, the ops, the events, the optimiser): the import graph has no circle."""
    import os
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    for mod in ("pysrm.cuda", "pysrm.cuda.launches", "pysrm.cuda.counters", "pysrm.cuda.settings", "pysrm.cuda.memory",
                "pysrm.cuda.blas", "pysrm.cuda.transfer", "pysrm.ops._cublas_cuda", "pysrm.ops._gemm_cuda",
                "pysrm.events_cuda", "pysrm.ops.optim_cuda"):
        r = subprocess.run([sys.executable, "-c", _IMPORT_FIRST, mod], capture_output=True, text=True, env=env)
        assert r.returncode == 0, f"importing {mod} first failed:\n{r.stderr[-2000:]}"
    # what the package's modules may import from the rest of pysrm: the CPU modules below it, and (inside
    # to_device, only when spike events are copied) pysrm.events_cuda, which needs only .launch and .memory;
    # pysrm.settings (the tunables record, which imports nothing of pysrm)
    allowed = {"backend", "events", "_kernel_cache", "events_cuda", "settings"}  # settings: pure Python
    for path in sorted((PACKAGE / "cuda").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                names = [node.module] if node.module else [a.name for a in node.names]
                assert set(names) <= allowed, f"pysrm/cuda/{path.name}: {ast.unparse(node)}"
            elif isinstance(node, ast.ImportFrom) and node.level == 0 or isinstance(node, ast.Import):
                mods = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(m.startswith("pysrm") for m in mods), f"pysrm/cuda/{path.name}: {ast.unparse(node)}"
    events_cuda = ast.parse((PACKAGE / "events_cuda.py").read_text())
    for node in ast.walk(events_cuda):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cuda"):
            assert node.module in ("cuda.launches", "cuda.memory"), f"events_cuda.py: {ast.unparse(node)}"
