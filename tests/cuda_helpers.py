"""Shared by the CUDA-simulator tests: device availability, tolerances and the comparison with the CPU."""
import os

import numpy as np
import pytest

from pysrm.backend import cuda_available

HAVE_DEVICE = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda_available()
needs_device = pytest.mark.skipif(not HAVE_DEVICE,
                                  reason="needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")


def tol(dtype):
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def assert_close(actual, expected, dtype, what=""):
    """max |actual - expected| <= tol * max |expected| (float64 1e-10, float32 1e-5)."""
    from pysrm.cuda import to_host
    a = np.asarray(to_host(actual), dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale = max(float(np.abs(e).max(initial=0.0)), 1e-30)
    err = float(np.abs(a - e).max(initial=0.0))
    assert err <= tol(dtype) * scale, f"{what}: max error {err:.3g} > {tol(dtype):g} * {scale:.3g}"
