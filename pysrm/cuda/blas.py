r"""cuBLAS through CuPy, and the choice of the backend of the GEMM-shaped products.

cuBLAS is called through CuPy's thin bindings (``cupy_backends.cuda.libs.cublas``) on CuPy's cuBLAS
handle, with pointers taken from the Numba device arrays' ``__cuda_array_interface__`` (zero copy: no
CuPy array is made).  Every call runs on the default stream, the stream of pysrm's Numba kernels
(CuPy's current stream must be its null stream, the default), so no synchronisation is needed.

:func:`available`: a real GPU, CuPy importable and used (:func:`pysrm.cuda.memory.cupy_module`), and a
first product and transpose checked against NumPy (decided once per process).  :func:`gemm_backend`
resolves :func:`pysrm.cuda.settings.math_settings`' ``gemm`` to ``"cublas"`` or ``"numba"``; the six
products of the synapses (:mod:`pysrm.ops._cublas_cuda`, :mod:`pysrm.ops._gemm_cuda`) and
:func:`transpose2d` follow it.  :func:`backend_info` reports the allocator and the GEMM backend.

Calls: :func:`gemm_rm` (row-major strided-batched GEMM, ``cublasGemmStridedBatchedEx``) and
:func:`transpose_into` (``geam``: ``C = alpha op(A) + beta op(B)``, also used to add a transposed event
weight gradient into a parameter's gradient in one call).  Precision: float32 products accumulate in
float32 (``CUBLAS_COMPUTE_32F``), or, with ``math_settings(tf32=True)`` (default off), with TF32 tensor
cores (``CUBLAS_COMPUTE_32F_FAST_TF32``: the inputs rounded to a 10-bit mantissa, about 1e-3 relative);
float64 in float64.  The math mode of the handle is set before each call, so a process-wide
``CUPY_TF32`` does not change pysrm's products.  cuBLAS picks its algorithm per shape; its results do
not depend on the number of host threads.

This module imports no other pysrm CUDA module than those of this package: the products that use it sit
above it, so there is no import circle.
"""
from __future__ import annotations

import functools

import numpy as np

from .counters import note
from .launches import SIMULATOR
from .memory import _cupy_state, accumulate, array_to_device, cupy_module, empty, transpose
from .settings import current_math

# cuBLAS / CUDA enums (stable values of the cuBLAS API)
_OP_N, _OP_T = 0, 1
_R_32F, _R_64F = 0, 1
_COMPUTE_32F, _COMPUTE_64F, _COMPUTE_32F_FAST_TF32 = 68, 70, 77
_DEFAULT_MATH, _TF32_TENSOR_OP_MATH = 0, 3
_POINTER_MODE_HOST = 0
_GEMM_DEFAULT = -1

# host scalars for alpha / beta (read by cuBLAS during the call; never written)
_SCALARS = {np.dtype(np.float32): {v: np.array([v], dtype=np.float32) for v in (0.0, 1.0)},
            np.dtype(np.float64): {v: np.array([v], dtype=np.float64) for v in (0.0, 1.0)}}


def _lib():
    from cupy_backends.cuda.libs import cublas
    return cublas


def _handle(tf32: bool):
    """CuPy's cuBLAS handle of the current device, set up for one pysrm call."""
    import cupy
    lib = _lib()
    h = cupy.cuda.device.get_cublas_handle()
    lib.setPointerMode(h, _POINTER_MODE_HOST)
    lib.setMathMode(h, _TF32_TENSOR_OP_MATH if tf32 else _DEFAULT_MATH)
    return h


def _stream_ok():
    import cupy
    return cupy.cuda.get_current_stream().ptr == 0


def _ptr(a, offset: int = 0) -> int:
    """Device address of element ``offset`` of device array ``a`` (C-contiguous)."""
    return int(a.__cuda_array_interface__["data"][0]) + int(offset) * a.dtype.itemsize


@functools.lru_cache(maxsize=1)
def _state():
    """``(ok, reason)``: cuBLAS usable here; decided once per process by a small product checked
    against NumPy (an immutable result)."""
    if SIMULATOR:
        return False, "the CUDA simulator cannot run CuPy / cuBLAS"
    if cupy_module() is None:
        return False, f"CuPy not used: {_cupy_state()[1]}"
    try:
        rng = np.random.default_rng(0)
        for dt in (np.float32, np.float64):
            a = rng.normal(size=(2, 3, 4)).astype(dt)
            w = rng.normal(size=(5, 3)).astype(dt)
            da, dw = array_to_device(a), array_to_device(w)
            out = empty((2, 5, 4), dt)
            gemm_rm(dw, da, out, 5, 4, 3, False, False, 3, 4, 4, batch=2, sA=0, sB=12, sC=20, tf32=False)
            ref = np.einsum("oi,bit->bot", w, a)
            got = out.copy_to_host()
            if not np.allclose(got, ref, rtol=1e-4, atol=1e-5):
                return False, f"check product wrong ({dt.__name__}): max error {np.abs(got - ref).max():.3g}"
            t = empty((3, 5), dt)
            transpose_into(dw, t, 5, 3)
            if not np.array_equal(t.copy_to_host(), w.T):
                return False, f"check transpose wrong ({dt.__name__})"
        return True, ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def available() -> bool:
    """True where pysrm calls cuBLAS (see the module docstring)."""
    return _state()[0]


def why_unavailable() -> str:
    """Empty where :func:`available`, else the reason."""
    return _state()[1]


def gemm_rm(A, B, C, M: int, N: int, K: int, trans_a: bool, trans_b: bool, lda: int, ldb: int, ldc: int,
            batch: int = 1, sA: int = 0, sB: int = 0, sC: int = 0, beta: float = 0.0, tf32: bool | None = None,
            offA: int = 0, offB: int = 0, offC: int = 0) -> None:
    r"""Row-major ``C[b] (M x N) = op(A[b]) (M x K) . op(B[b]) (K x N) + beta C[b]`` for ``b < batch``.

    ``A``, ``B``, ``C``: device arrays of one dtype (float32/float64); matrix ``b`` of each starts at
    element ``off + b * stride`` and has leading dimension ``ld`` (row length in elements).
    ``op(A) = A^T`` with ``trans_a`` (``A`` stored ``K x M``).  ``beta`` 0 or 1.  ``tf32`` None takes
    :func:`pysrm.cuda.settings.current_math`.  One ``cublasGemmStridedBatchedEx`` call (cuBLAS is column-major:
    it computes ``C^T = op(B)^T op(A)^T``).
    """
    if M == 0 or N == 0 or batch == 0:
        return
    dt = np.dtype(C.dtype)
    if not (A.dtype == B.dtype == dt):
        raise TypeError(f"gemm_rm: dtypes differ ({A.dtype}, {B.dtype}, {dt})")
    if tf32 is None:
        tf32 = current_math().tf32
    tf32 = bool(tf32) and dt == np.float32
    if dt == np.float32:
        rtype, ctype = _R_32F, (_COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F)
    elif dt == np.float64:
        rtype, ctype = _R_64F, _COMPUTE_64F
    else:
        raise TypeError(f"gemm_rm: dtype {dt} is not float32/float64")
    if K < 1:
        raise ValueError("gemm_rm: K must be >= 1 (an empty reduction is the caller's case)")
    sc = _SCALARS[dt]
    lib = _lib()
    if not _stream_ok():
        import cupy
        with cupy.cuda.Stream.null:
            return gemm_rm(A, B, C, M, N, K, trans_a, trans_b, lda, ldb, ldc, batch, sA, sB, sC, beta, tf32,
                           offA, offB, offC)
    h = _handle(tf32)
    note("blas", "gemm_strided_batched")
    lib.gemmStridedBatchedEx(h, _OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N, int(N), int(M),
                             int(K), sc[1.0].ctypes.data,
                             _ptr(B, offB), rtype, int(ldb), int(sB),
                             _ptr(A, offA), rtype, int(lda), int(sA),
                             sc[1.0 if beta else 0.0].ctypes.data,
                             _ptr(C, offC), rtype, int(ldc), int(sC), int(batch), ctype, _GEMM_DEFAULT)


def transpose_into(X, Y, R: int, Cc: int, accumulate: bool = False) -> None:
    """``Y (Cc x R) = X^T`` (``+ Y`` with ``accumulate``) for row-major ``X (R x Cc)``; one ``geam``."""
    if R == 0 or Cc == 0:
        return
    dt = np.dtype(Y.dtype)
    sc = _SCALARS[dt]
    lib = _lib()
    if not _stream_ok():
        import cupy
        with cupy.cuda.Stream.null:
            return transpose_into(X, Y, R, Cc, accumulate)
    h = _handle(False)
    geam = lib.sgeam if dt == np.float32 else lib.dgeam
    note("blas", "geam")
    # column-major: Y' (R x Cc, ld R) = 1 * X'^T + beta * Y'  with X' (Cc x R, ld Cc); in place in B = C
    geam(h, _OP_T, _OP_N, int(R), int(Cc), sc[1.0].ctypes.data, _ptr(X), int(Cc),
         sc[1.0 if accumulate else 0.0].ctypes.data, _ptr(Y), int(R), _ptr(Y), int(R))


def gemm_backend() -> str:
    """``"cublas"`` or ``"numba"``: the backend the GEMM-shaped products use now (``"cublas"`` asked for
    where it is unavailable raises RuntimeError)."""
    want = current_math().gemm
    if want == "numba":
        return "numba"
    if available():
        return "cublas"
    if want == "cublas":
        raise RuntimeError(f"cuBLAS was asked for but is unavailable: {why_unavailable()}")
    return "numba"


def transpose2d(x, R: int, C: int, out=None, accumulate: bool = False):
    """``out (C x R) = x^T`` for a C-contiguous device array ``x`` of ``R * C`` elements seen as ``R x C``
    (``out += x^T`` with ``accumulate``; ``out`` any device array of ``C * R`` elements).  One cuBLAS
    ``geam`` where the GEMM backend is cuBLAS, else the shared-memory transpose kernel (and an add)."""
    if out is None:
        out = empty((C, R), x.dtype)
        accumulate = False
    if gemm_backend() == "cublas":
        transpose_into(x, out, R, C, accumulate)
        return out
    if accumulate:
        t = transpose(x.reshape(1, R, C)).reshape(C, R)
        _add(out.reshape(C, R), t)
        return out
    transpose(x.reshape(1, R, C), out.reshape(1, C, R))
    return out


_add = accumulate  # (transpose2d has a parameter of that name)


def backend_info() -> dict:
    """Which allocator and GEMM backend pysrm's CUDA code uses in this process, and why."""
    cp, why = _cupy_state()
    return {"simulator": SIMULATOR, "allocator": "cupy-pool" if cp is not None else "numba",
            "cupy": getattr(cp, "__version__", None), "cupy_reason": why,
            "cublas": available(), "cublas_reason": why_unavailable() or "ok",
            "gemm": gemm_backend(), "tf32": current_math().tf32}


__all__ = ["available", "why_unavailable", "gemm_rm", "transpose_into", "gemm_backend", "transpose2d",
           "backend_info"]
