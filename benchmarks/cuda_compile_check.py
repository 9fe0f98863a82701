"""Compile every CUDA kernel of pysrm to PTX for a real GPU, without a GPU.

Catches what the simulator cannot: code that runs as Python in the simulator
but that Numba's CUDA target cannot type or lower.  Needs NVVM (libnvvm +
libdevice), e.g. ``pip install --target /tmp/nvcc nvidia-cuda-nvcc-cu12`` and
``CUDA_HOME=/tmp/nvcc/nvidia/cuda_nvcc``.

Two steps, run automatically:

1. (subprocess, ``NUMBA_ENABLE_CUDASIM=1``) run the CUDA test files (``tests/test_cuda_*.py``, or
   the files given as arguments) and record
   the argument types of every kernel launch;
2. (this process, no simulator) ``cuda.compile_ptx`` each recorded kernel
   signature for compute capability 9.0 (H100/H200) and report the time.

Usage::

    CUDA_HOME=/tmp/nvcc/nvidia/cuda_nvcc python benchmarks/cuda_compile_check.py
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_RECORDER = r'''
import atexit, json, sys
import numpy as np
from numba.cuda.simulator import kernel as K
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

seen = {}

def describe(a):
    if isinstance(a, FakeCUDAArray):
        a = a._ary
    if isinstance(a, np.ndarray):
        layout = "C" if a.flags.c_contiguous else "A"
        return ["array", a.dtype.name, a.ndim, layout]
    if isinstance(a, (bool, np.bool_)):
        return ["scalar", "bool"]
    if isinstance(a, (int, np.integer)) and not isinstance(a, np.generic):
        return ["scalar", "int64"]
    if isinstance(a, np.generic):
        return ["scalar", a.dtype.name]
    if isinstance(a, float):
        return ["scalar", "float64"]
    if isinstance(a, tuple) and hasattr(type(a), "_fields"):  # a record (namedtuple) of pysrm
        return ["namedtuple", type(a).__module__, type(a).__qualname__, [describe(v) for v in a]]
    if isinstance(a, tuple):
        return ["tuple", [describe(v) for v in a]]
    raise TypeError(type(a))

orig = K.FakeCUDAKernel.__call__
def call(self, *args):
    if not self._device:
        key = (self.fn.__module__, self.fn.__name__, json.dumps([describe(a) for a in args]))
        seen[key] = 1
    return orig(self, *args)
K.FakeCUDAKernel.__call__ = call

def dump():
    with open(OUT, "w") as f:
        json.dump([[m, n, json.loads(s)] for (m, n, s) in seen], f)
atexit.register(dump)
'''


def record(out_path, tests):
    code = f"OUT = {out_path!r}\n" + _RECORDER + (
        "\nimport pytest\nrc = pytest.main(['-q', '-x', '-p', 'no:cacheprovider', " +
        ", ".join(repr(t) for t in tests) + "])\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def to_type(d):
    from numba import types
    if d[0] == "array":
        return types.Array(getattr(types, d[1]), d[2], d[3])
    if d[0] == "tuple":
        return types.Tuple([to_type(v) for v in d[1]])
    if d[0] == "namedtuple":  # a record: the same class, so that its fields are read by name
        import importlib
        cls = getattr(importlib.import_module(d[1]), d[2])
        return types.NamedTuple([to_type(v) for v in d[3]], cls)
    return {"bool": types.boolean, "int64": types.int64, "float32": types.float32, "float64": types.float64,
            "int32": types.int32}[d[1]]


def main():
    sys.path.insert(0, ROOT)
    tests = sys.argv[1:] or sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "tests", "test_cuda_*.py")))
    tests = [t for t in tests if os.path.exists(os.path.join(ROOT, t))]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sigs.json")
        record(path, tests)
        with open(path) as f:
            sigs = json.load(f)
    import importlib

    from numba import cuda
    from numba.cuda import dispatcher

    class _FakeDevice:  # device functions ask the current device for its compute capability
        compute_capability = (9, 0)

    dispatcher.get_current_device = lambda: _FakeDevice()
    failures = 0
    t_all = time.perf_counter()
    for module, name, args in sorted(sigs):
        mod = importlib.import_module(module)
        kern = getattr(mod, name)
        argtypes = tuple(to_type(a) for a in args)
        t0 = time.perf_counter()
        try:
            cuda.compile_ptx(kern.py_func, argtypes, cc=(9, 0))
            status = "ok"
        except Exception as exc:  # report and go on
            failures += 1
            status = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"{module}.{name}{tuple(str(a) for a in argtypes)}  {time.perf_counter() - t0:.2f}s  {status}")
    print(f"{len(sigs)} kernel signatures, {failures} failed, {time.perf_counter() - t_all:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
