"""pysrm: SRM spiking neural networks with SLAYER-style backpropagation.

Array convention (everywhere): spike tensors are ``(batch, channels, height,
width, time)``, time last, float32 by default (every op also runs in float64).
A spike has amplitude ``1/Ts``; the spike count of neuron i is
``c_i = Ts * sum_t s_i[t]``.  Times are in milliseconds.
"""
import os as _os
import sys as _sys

# pysrm's Numba kernels use every core.  A multi-threaded BLAS next to them makes both spin against each
# other (measured: batch-32 training 2x slower on 2 cores), so unless the user chose otherwise the BLAS
# runs single-threaded: through the environment for BLAS libraries loaded from now on, and, when NumPy
# was imported first, by asking the OpenBLAS already loaded (pysrm/_blas.py; README "Threads").
_numpy_first = "numpy" in _sys.modules
_user_blas = "OPENBLAS_NUM_THREADS" in _os.environ or bool(_os.environ.get("PYSRM_KEEP_BLAS_THREADS"))
if not _user_blas:
    if _numpy_first:
        from ._blas import limit_blas_threads as _limit_blas_threads
        _limit_blas_threads(1)
    for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ.setdefault(_var, "1")

import numpy as _np  # noqa: E402

# numba-cuda (seen with numba 0.68.0 + numba-cuda on NumPy 2.5.2, on an H200 machine) registers an
# overload for ``np.row_stack`` when it compiles its first kernel; NumPy 2.5 removed that alias of
# ``np.vstack``, so every CUDA kernel failed with "module 'numpy' has no attribute 'row_stack'".
# Restoring the alias (only where it is missing) lets numba-cuda load; pysrm itself never uses it.
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack

from .params import NeuronParams, SimParams  # noqa: E402
from .events import SpikeEvents  # noqa: E402

__version__ = "0.1.0"

__all__ = ["NeuronParams", "SimParams", "SpikeEvents", "__version__"]
