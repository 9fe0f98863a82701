r"""The BLAS matrix product with leading dimensions, callable from Numba code: :func:`gemm`.

``gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta)`` computes, in the BLAS's
column-major convention,

.. math::

    C_{m \times n} \leftarrow \mathrm{op}(A)_{m \times k}\, \mathrm{op}(B)_{k \times n} + \beta\, C

where ``op`` transposes when its flag is ``ord('T')`` (``ord('N')``: as is), and ``a``, ``b``, ``c`` are
1-D arrays whose first element is the matrix's first element (a slice ``x[offset:]`` of a flat array
selects a sub-matrix) with leading dimensions ``lda``, ``ldb``, ``ldc``.  ``sgemm`` for float32,
``dgemm`` for float64.  It goes through Numba's own BLAS entry point (``numba_xxgemm``, which calls
SciPy's ``scipy.linalg.cython_blas``: the library ``np.dot`` uses inside Numba code), so compiled
functions stay cacheable.  A row-major product ``R = P Q`` is the column-major ``R^T = Q^T P^T``.
The BLAS runs single-threaded next to Numba's threads (:mod:`pysrm._threads`); callers parallelise over
independent products.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import _BLAS

_xxgemm32 = _BLAS().numba_xxgemm(types.float32)  # also loads SciPy's BLAS into Numba's helper
_xxgemm64 = _BLAS().numba_xxgemm(types.float64)


#: ``trans_a`` / ``trans_b`` of :func:`gemm`: the matrix as it is
NO_TRANS = ord("N")
#: ``trans_a`` / ``trans_b`` of :func:`gemm`: the matrix transposed
TRANS = ord("T")


def gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta):
    """See the module docstring (callable from Numba-compiled code only).  Raises if no BLAS."""
    raise NotImplementedError("gemm is only callable from Numba-compiled code")


@overload(gemm, jit_options={"cache": True})
def _gemm_impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta):
    if c.dtype == types.float32:
        fn, kind = _xxgemm32, ord("s")
    elif c.dtype == types.float64:
        fn, kind = _xxgemm64, ord("d")
    else:
        return None

    def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta):
        ab = np.empty(2, dtype=c.dtype)
        ab[0] = 1.0
        ab[1] = beta
        r = fn(kind, trans_a, trans_b, m, n, k, ab.ctypes, a.ctypes, lda, b.ctypes, ldb, ab[1:].ctypes,
               c.ctypes, ldc)
        if r != 0:
            raise RuntimeError("BLAS gemm is not available (SciPy's cython_blas)")
    return impl
