"""Keep the BLAS single-threaded next to pysrm's Numba threads: ``limit_blas_threads()``.

pysrm's Numba kernels use every core.  An OpenBLAS pool of as many threads next to them spins while
Numba works and the two fight for the cores: on the 2-core benchmark VM a batch-32 training step of
the N-MNIST dense network ran at 490-570 samples/s with NumPy's default BLAS threads and 1,040-1,260
with one BLAS thread (benchmarks/RESULTS.md).  Setting ``OPENBLAS_NUM_THREADS`` only works before
the BLAS library is loaded, i.e. before NumPy is imported, and most scripts import NumPy first; so
``import pysrm`` also asks every OpenBLAS already loaded in the process (NumPy's and SciPy's
``scipy_openblas`` builds, or a system ``libopenblas``) for one thread through its
``*openblas_set_num_threads*`` entry point, found by ``ctypes`` among the loaded libraries
(``/proc/self/maps``, Linux).  It does nothing when the user has set ``OPENBLAS_NUM_THREADS``
(their choice wins) or ``PYSRM_KEEP_BLAS_THREADS``.  MKL builds are left alone apart from the
environment variable.
"""
from __future__ import annotations

import ctypes

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


def _loaded_openblas() -> list:
    """Paths of the OpenBLAS shared libraries mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def limit_blas_threads(n: int = 1) -> list:
    """Set every loaded OpenBLAS to ``n`` threads; returns the library paths it changed.

    ``import pysrm`` calls it (n = 1) unless ``OPENBLAS_NUM_THREADS`` or ``PYSRM_KEEP_BLAS_THREADS``
    is set; calling it again later is harmless.
    """
    changed = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = (ctypes.c_int,)
                setter.restype = None
                setter(int(n))
                changed.append(path)
                break
    return changed
