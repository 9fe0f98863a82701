"""Keep freed memory for reuse inside the process (glibc): ``tune_malloc()``.

A training step allocates a few dozen temporaries of several MB (spike trains, potentials and
gradients of shape (batch, neurons, T)).  With glibc's defaults, arrays above the mmap threshold
(dynamic, at most 32 MiB) are fresh mappings, and freed heap memory above the trim threshold is given
back to the kernel, so the next step touches new pages again: one page fault per 4 KiB, which on
the 2-core benchmark VM cost up to a third of a batch-32 training step of the N-MNIST dense network
(measured 842-1,308 samples/s with the defaults, 1,315-1,367 after tune_malloc, same peak memory;
benchmarks/RESULTS.md).  ``tune_malloc`` raises both thresholds with ``mallopt`` so that those blocks
stay in the heap and are reused, and turns mmap off for large blocks (``M_MMAP_MAX = 0``): even at its
highest threshold glibc maps every block above 32 MiB afresh, and the N-MNIST CNN at batch 8 allocates
tensors of up to 177 MB each step (measured: 4.2 -> 6.0 samples/s training, 11 -> 16 inference; peak
memory 1.84 -> 2.20 GB, the price of reusing heap blocks instead of unmapping them).  It changes the allocator of the whole process (freed memory is
kept rather than returned to the OS), so the library never calls it on import: the ``pysrm``
command, ``pysrm sweep`` workers and the benchmarks call it; a script can call it itself.  No-op
(returns False) off glibc, or when the environment variable ``PYSRM_NO_MALLOC_TUNING`` is set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_THRESHOLD = 32 * 1024 * 1024      # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 1 << 30               # keep up to 1 GiB of freed heap memory for reuse
_done = None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds and turn mmap off for large blocks (see the module
    docstring); True when applied."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("PYSRM_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return _done
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = (bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
             and bool(mallopt(_M_MMAP_MAX, 0)))
    return _done
