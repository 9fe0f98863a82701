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
                        ``accumulate_into``); above the setting ``cublas_partial_limit`` (:mod:`pysrm.settings`) elements of ``P``: one
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

The calls themselves (:func:`pysrm.cuda.blas.gemm_rm`, :func:`pysrm.cuda.blas.transpose_into`), whether
cuBLAS is available here (:func:`pysrm.cuda.blas.available`) and the backend choice live in
:mod:`pysrm.cuda.blas`; this module imports it, never the other way round.
"""
from __future__ import annotations


import numpy as np
from numba import cuda

from .. import cuda as dev
from .. import settings
from ..cuda.blas import available, gemm_rm, transpose_into, why_unavailable  # noqa: F401 (this module's API)
from ._conv_index import im2col_source, tap_output, unravel3
from ._records import CONV_FWD, CONV_GW, CONV_GX, DENSE_FWD, DENSE_GW, DENSE_GX

#: above this many elements of the per-sample partial weight gradients (mode 2/5), one GEMM per
#: sample accumulating instead (memory)



# --------------------------------------------------------------------------- im2col / col2im

@cuda.jit(cache=True)
def _im2col_kernel(x, col, g, zero):
    # col[b, (ci, ky, kx), (oy, ox, t)] = x[b, ci, sy*oy + ky - py, sx*ox + kx - px, t] (0 outside)
    # one thread per col element, t fastest (coalesced reads and writes); g: ProductGeometry
    K = g.Ci * g.KH * g.KW
    P = g.Ho * g.Wo * g.T
    n = col.shape[0]
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        q = idx // P
        b = q // K
        src = im2col_source(b, q - b * K, idx - q * P, g)
        col[idx] = x[src] if src >= 0 else zero


@cuda.jit(cache=True)
def _col2im_kernel(dcol, gx, g, zero):
    # gx[b, ci, iy, ix, t] = sum over (ky, kx) with iy = sy*oy + ky - py, ix = sx*ox + kx - px of
    # dcol[b, (ci, ky, kx), (oy, ox, t)]; ky, kx ascending; one thread per gx element, t fastest;
    # g: ProductGeometry
    KH, KW, Ho, Wo, T = g.KH, g.KW, g.Ho, g.Wo, g.T
    K = g.Ci * KH * KW
    P = Ho * Wo * T
    n = gx.shape[0]
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        q, iy, ix = unravel3(idx // T, g.H, g.W)
        t = idx % T
        b = q // g.Ci
        ci = q - b * g.Ci
        acc = zero
        for ky in range(KH):
            oy = tap_output(iy, ky, g.sy, g.py, Ho)
            if oy < 0:
                continue
            for kx in range(KW):
                ox = tap_output(ix, kx, g.sx, g.px, Wo)
                if ox < 0:
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
    if nbatch * M * Ncol <= settings.current().cublas_partial_limit or nbatch == 1:
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
