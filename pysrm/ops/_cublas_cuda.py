r"""The GEMM-shaped products of the dense and conv CUDA ops through cuBLAS (reached through CuPy).

cuBLAS is called through CuPy's thin bindings (``cupy_backends.cuda.libs.cublas``) on CuPy's cuBLAS
handle, with pointers taken from the Numba device arrays' ``__cuda_array_interface__`` (zero copy: no
CuPy array is made).  Every call runs on the default stream, the stream of pysrm's Numba kernels
(CuPy's current stream must be its null stream, the default), so no synchronisation is needed.

Used where :func:`available` (a real GPU, CuPy importable, a first product checked against NumPy)
and :func:`pysrm.cuda.gemm_backend` says ``"cublas"``; otherwise, and always under the CUDA simulator
(which cannot run CuPy), the Numba GEMM of :mod:`pysrm.ops._gemm_cuda` computes the same products
(``tests/test_cuda_cublas.py`` compares the two on a real GPU).

Products (row-major arrays; ``b`` the sample; the modes of :mod:`pysrm.ops._gemm_cuda`):

=====  ===============  ====================================================================
mode   product          cuBLAS calls
=====  ===============  ====================================================================
0      dense forward    ``a[b] (O x T) = w (O x I) . x[b] (I x T)``: one strided-batched GEMM
1      dense grad x     ``gx[b] (I x T) = w^T . g[b] (O x T)``: one strided-batched GEMM
2      dense grad w     ``P[b] = g[b] (O x T) . x[b]^T`` (strided batched), then
                        ``sum_b P[b]`` in order of ``b`` (:func:`pysrm.cuda.sum_rows`, or added to
                        ``accumulate_into``); above :data:`PARTIAL_LIMIT` elements of ``P``: one
                        GEMM per sample accumulating (beta = 1), in order of ``b``
3      conv forward     ``col[b] = im2col(x[b])`` (``(Ci KH KW) x (Ho Wo T)``, a Numba kernel), then
                        ``a[b] = w (Co x Ci KH KW) . col[b]``: one strided-batched GEMM
4      conv grad x      ``dcol[b] = w^T . g[b]`` (one strided-batched GEMM), then the gather
                        ``gx = col2im(dcol)`` (a Numba kernel; each input element sums the
                        ``(co, ky, kx)`` entries that read it, in a fixed order, no atomics)
5      conv grad w      ``col = im2col(x)``, then as mode 2 with ``col`` in place of ``x``
=====  ===============  ====================================================================

Precision: float32 products accumulate in float32 (``CUBLAS_COMPUTE_32F``), or, with
``pysrm.cuda.math_settings(tf32=True)`` (default off), with TF32 tensor cores
(``CUBLAS_COMPUTE_32F_FAST_TF32``: the inputs rounded to a 10-bit mantissa, about 1e-3 relative);
float64 in float64.  The math mode of the handle is set before each call (``CUBLAS_DEFAULT_MATH``, or
``CUBLAS_TF32_TENSOR_OP_MATH`` with TF32), so a process-wide ``CUPY_TF32`` does not change pysrm's
products.  cuBLAS picks its algorithm per shape; its results do not depend on the number of host
threads.

Transposes (:func:`transpose_into`): ``geam`` (``C = alpha op(A) + beta op(B)``), also used to add a
transposed event weight gradient into a parameter's gradient in one call.
"""
from __future__ import annotations

import functools
import os

import numpy as np
from numba import cuda

from .. import cuda as dev
from ._records import CONV_FWD, CONV_GW, CONV_GX, DENSE_FWD, DENSE_GW, DENSE_GX

#: above this many elements of the per-sample partial weight gradients (mode 2/5), one GEMM per
#: sample accumulating instead (memory)
PARTIAL_LIMIT = int(os.environ.get("PYSRM_CUBLAS_PARTIAL_LIMIT", str(1 << 27)))

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
    if dev.SIMULATOR:
        return False, "the CUDA simulator cannot run CuPy / cuBLAS"
    if dev.cupy_module() is None:
        return False, f"CuPy not used: {dev._cupy_state()[1]}"
    try:
        rng = np.random.default_rng(0)
        for dt in (np.float32, np.float64):
            a = rng.normal(size=(2, 3, 4)).astype(dt)
            w = rng.normal(size=(5, 3)).astype(dt)
            da, dw = dev.to_device(a), dev.to_device(w)
            out = dev.empty((2, 5, 4), dt)
            gemm_rm(dw, da, out, 5, 4, 3, False, False, 3, 4, 4, batch=2, sA=0, sB=12, sC=20, tf32=False)
            ref = np.einsum("oi,bit->bot", w, a)
            got = out.copy_to_host()
            if not np.allclose(got, ref, rtol=1e-4, atol=1e-5):
                return False, f"check product wrong ({dt.__name__}): max error {np.abs(got - ref).max():.3g}"
            t = dev.empty((3, 5), dt)
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
    :func:`pysrm.cuda.current_math`.  One ``cublasGemmStridedBatchedEx`` call (cuBLAS is column-major:
    it computes ``C^T = op(B)^T op(A)^T``).
    """
    if M == 0 or N == 0 or batch == 0:
        return
    dt = np.dtype(C.dtype)
    if not (A.dtype == B.dtype == dt):
        raise TypeError(f"gemm_rm: dtypes differ ({A.dtype}, {B.dtype}, {dt})")
    if tf32 is None:
        tf32 = dev.current_math().tf32
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
    dev.note("blas", "gemm_strided_batched")
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
    dev.note("blas", "geam")
    # column-major: Y' (R x Cc, ld R) = 1 * X'^T + beta * Y'  with X' (Cc x R, ld Cc); in place in B = C
    geam(h, _OP_T, _OP_N, int(R), int(Cc), sc[1.0].ctypes.data, _ptr(X), int(Cc),
         sc[1.0 if accumulate else 0.0].ctypes.data, _ptr(Y), int(R), _ptr(Y), int(R))


# --------------------------------------------------------------------------- im2col / col2im

@cuda.jit(cache=True)
def _im2col_kernel(x, col, g, zero):
    # col[b, (ci, ky, kx), (oy, ox, t)] = x[b, ci, sy*oy + ky - py, sx*ox + kx - px, t] (0 outside)
    # one thread per col element, t fastest (coalesced reads and writes); g: ProductGeometry
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = g
    K = Ci * KH * KW
    P = Ho * Wo * T
    n = col.shape[0]
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        q = idx // P
        p = idx - q * P
        b = q // K
        kk = q - b * K
        ci = kk // (KH * KW)
        rem = kk - ci * (KH * KW)
        ky = rem // KW
        kx = rem - ky * KW
        pp = p // T
        t = p - pp * T
        oy = pp // Wo
        ox = pp - oy * Wo
        iy = oy * sy + ky - py
        ix = ox * sx + kx - px
        v = zero
        if iy >= 0 and iy < H and ix >= 0 and ix < W:
            v = x[(((b * Ci + ci) * H + iy) * W + ix) * T + t]
        col[idx] = v


@cuda.jit(cache=True)
def _col2im_kernel(dcol, gx, g, zero):
    # gx[b, ci, iy, ix, t] = sum over (ky, kx) with iy = sy*oy + ky - py, ix = sx*ox + kx - px of
    # dcol[b, (ci, ky, kx), (oy, ox, t)]; ky, kx ascending; one thread per gx element, t fastest;
    # g: ProductGeometry
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = g
    K = Ci * KH * KW
    P = Ho * Wo * T
    n = gx.shape[0]
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = idx % T
        q = idx // T
        ix = q % W
        q = q // W
        iy = q % H
        q = q // H
        ci = q % Ci
        b = q // Ci
        acc = zero
        for ky in range(KH):
            ny = iy + py - ky
            if ny < 0:
                continue
            oy = ny // sy
            if oy * sy != ny or oy >= Ho:
                continue
            for kx in range(KW):
                nx = ix + px - kx
                if nx < 0:
                    continue
                ox = nx // sx
                if ox * sx != nx or ox >= Wo:
                    continue
                acc += dcol[(b * K + (ci * KH + ky) * KW + kx) * P + (oy * Wo + ox) * T + t]
        gx[idx] = acc


def im2col(x, geom, nbatch: int, dtype, out=None):
    """``(nbatch, Ci*KH*KW, Ho*Wo*T)`` im2col matrix of ``x`` (flat or ``(N, Ci, H, W, T)``); ``geom`` as
    :func:`pysrm.ops._gemm_cuda.geometry`."""
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = geom
    dtype = np.dtype(dtype)
    K, P = Ci * KH * KW, Ho * Wo * T
    col = out if out is not None else dev.empty((nbatch, K, P), dtype)
    dev.launch(_im2col_kernel, nbatch * K * P, x.reshape(x.size), col.reshape(col.size), geom,
               dtype.type(0))
    return col


def col2im(dcol, geom, nbatch: int, dtype):
    """The adjoint of :func:`im2col`: ``(nbatch, Ci, H, W, T)`` flattened to ``(nbatch, Ci, H*W*T)``."""
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = geom
    dtype = np.dtype(dtype)
    gx = dev.empty((nbatch, Ci, H * W * T), dtype)
    dev.launch(_col2im_kernel, gx.size, dcol.reshape(dcol.size), gx.reshape(gx.size), geom,
               dtype.type(0))
    return gx


# --------------------------------------------------------------------------- the six products

def _reduce_partials(part, M, Ncol, nbatch, dtype, accumulate_into):
    """``sum_b part[b]`` in order of ``b``, written to a new array or added to ``accumulate_into``."""
    flat = part.reshape(nbatch, M * Ncol)
    if accumulate_into is not None:
        dev.sum_rows(flat, accumulate_into.reshape(M * Ncol), accumulate=True)
        return accumulate_into
    return dev.sum_rows(flat).reshape(M, Ncol)


def _batch_reduced(gmat, bmat, M, Ncol, K, nbatch, ld_b, sB, dtype, accumulate_into):
    """``sum_b gmat[b] (M x K) . bmat[b]^T`` where ``bmat[b]`` is ``Ncol x K`` (leading dim ``ld_b``,
    batch stride ``sB``); result ``(M, Ncol)``, or added to ``accumulate_into``."""
    if nbatch * M * Ncol <= PARTIAL_LIMIT or nbatch == 1:
        if nbatch == 1:
            out = accumulate_into if accumulate_into is not None else dev.empty((M, Ncol), dtype)
            gemm_rm(gmat, bmat, out, M, Ncol, K, False, True, K, ld_b, Ncol,
                    beta=1.0 if accumulate_into is not None else 0.0)
            return out.reshape(M, Ncol)
        part = dev.empty((nbatch, M, Ncol), dtype)
        gemm_rm(gmat, bmat, part, M, Ncol, K, False, True, K, ld_b, Ncol, batch=nbatch, sA=M * K, sB=sB,
                sC=M * Ncol)
        return _reduce_partials(part, M, Ncol, nbatch, dtype, accumulate_into)
    out = accumulate_into if accumulate_into is not None else dev.zeros((M, Ncol), dtype)
    for b in range(nbatch):  # in order of b, accumulating (beta = 1)
        gemm_rm(gmat, bmat, out, M, Ncol, K, False, True, K, ld_b, Ncol, beta=1.0, offA=b * M * K, offB=b * sB)
    return out.reshape(M, Ncol)


def product(mode: int, A, B, M: int, Ncol: int, K: int, nbatch: int, geom: tuple, dtype, out=None,
            accumulate_into=None, col=None):
    """The product of ``mode`` (module table; arguments as :func:`pysrm.ops._gemm_cuda.gemm`) through cuBLAS.

    Batched modes return ``(nbatch, M, Ncol)``; reduced modes (DENSE_GW, CONV_GW) ``(M, Ncol)``, or add it to
    ``accumulate_into`` (a C-contiguous device array of ``M * Ncol`` elements) and return that.  ``col``:
    the im2col matrix of ``B`` already made (CONV_FWD, CONV_GW), else it is made here.
    """
    dtype = np.dtype(dtype)
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = geom
    if K == 0 or (mode == CONV_GX and Co == 0):  # an empty sum
        if mode in (DENSE_GW, CONV_GW):
            return accumulate_into if accumulate_into is not None else dev.zeros((M, Ncol), dtype)
        C = out if out is not None else dev.empty((nbatch, M, Ncol), dtype)
        dev.memset_zero(C)
        return C
    if mode == DENSE_FWD:  # a[b] = w . x[b]: w (O x I), x[b] (I x T)
        C = out if out is not None else dev.empty((nbatch, M, Ncol), dtype)
        gemm_rm(A, B, C, M, Ncol, K, False, False, K, Ncol, Ncol, batch=nbatch, sA=0, sB=K * Ncol, sC=M * Ncol)
        return C
    if mode == DENSE_GX:  # gx[b] = w^T . g[b]: w stored (O x I) = (K x M)
        C = out if out is not None else dev.empty((nbatch, M, Ncol), dtype)
        gemm_rm(A, B, C, M, Ncol, K, True, False, M, Ncol, Ncol, batch=nbatch, sA=0, sB=K * Ncol, sC=M * Ncol)
        return C
    if mode == DENSE_GW:  # gw = sum_b g[b] (O x T) . x[b]^T, x[b] stored (I x T) = (Ncol x K)
        return _batch_reduced(A, B, M, Ncol, K, nbatch, K, Ncol * K, dtype, accumulate_into)
    if mode == CONV_FWD:  # a[b] (Co x P) = w (Co x Ci KH KW) . col[b]
        if col is None:
            col = im2col(B, geom, nbatch, dtype)
        C = out if out is not None else dev.empty((nbatch, M, Ncol), dtype)
        gemm_rm(A, col, C, M, Ncol, K, False, False, K, Ncol, Ncol, batch=nbatch, sA=0, sB=K * Ncol, sC=M * Ncol)
        return C
    if mode == CONV_GX:  # dcol[b] (Ci KH KW x P) = w^T . g[b]; gx = col2im(dcol)
        Kc, P = Ci * KH * KW, Ho * Wo * T
        dcol = dev.empty((nbatch, Kc, P), dtype)
        gemm_rm(A, B, dcol, Kc, P, Co, True, False, Kc, P, P, batch=nbatch, sA=0, sB=Co * P, sC=Kc * P)
        gx = col2im(dcol, geom, nbatch, dtype)
        if out is not None:
            dev.copy(out.reshape(gx.shape), gx)
            return out
        return gx
    if mode == CONV_GW:  # gw (Co x Ci KH KW) = sum_b g[b] (Co x P) . col[b]^T, col[b] stored (Kc x P)
        if col is None:
            col = im2col(B, geom, nbatch, dtype)
        return _batch_reduced(A, col, M, Ncol, K, nbatch, K, Ncol * K, dtype, accumulate_into)
    raise ValueError(f"unknown GEMM mode {mode}")
