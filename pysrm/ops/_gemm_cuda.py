r"""Tiled shared-memory matrix products for the dense and conv CUDA ops.

One kernel computes every product the synapses need, as a (batched or
batch-reduced) matrix product whose operands are *read through an index map*
(implicit GEMM: the conv's im2col matrix is never stored):

.. math::

    C[b, r, c] = \sum_k A_b[r, k]\, B_b[k, c] \quad\text{(batched)}, \qquad
    C[z, r, c] = \sum_{(b, k) \in \text{split } z} A_b[r, k]\, B_b[k, c] \quad\text{(reduced, split-K)}

====  =============  =========================================  ================================================================  =======
mode  product        ``A_b[r, k]``                              ``B_b[k, c]``                                                     reduced
====  =============  =========================================  ================================================================  =======
0     dense forward  ``w[o=r, i=k]``                            ``x[b, i=k, t=c]``                                                no
1     dense grad x   ``w[o=k, i=r]``                            ``g[b, o=k, t=c]``                                                no
2     dense grad w   ``g[b, o=r, t=k]``                         ``x[b, i=c, t=k]``                                                yes
3     conv forward   ``w[co=r, (ci,ky,kx)=k]``                  ``x[b, ci, s*oy+ky-p, s*ox+kx-p, t]``, ``c=(oy,ox,t)``            no
4     conv grad x    ``w[co, ci=r, ky, kx]``, ``k=(co,ky,kx)``  ``g[b, co, oy, ox, t]`` with ``s*oy+ky-p = iy``, ``c=(iy,ix,t)``  no
5     conv grad w    ``g[b, co=r, (oy,ox,t)=k]``                ``x[b, ci, s*oy+ky-p, s*ox+kx-p, t]``, ``c=(ci,ky,kx)``           yes
====  =============  =========================================  ================================================================  =======

Out-of-range (padding) positions read as zero.

Thread mapping and tiling.  A block of ``GEMM_THREADS x GEMM_THREADS`` threads
computes a ``GEMM_BLOCK x GEMM_BLOCK`` tile of ``C`` (``blockIdx.y`` rows,
``blockIdx.x`` columns); each thread owns a ``GEMM_MICRO x GEMM_MICRO``
register block (rows ``ty + i*GEMM_THREADS``, columns ``tx + j*GEMM_THREADS``,
so stores are coalesced).  The reduction runs over ``GEMM_THREADS``-deep K
tiles: the block stages the ``A`` and ``B`` tiles in shared memory (each thread
loads ``GEMM_MICRO`` elements of each, in the order that makes the global reads
contiguous for that mode), synchronises, and accumulates the outer products
from shared memory into registers.  ``blockIdx.z`` strides over the batch
(batched modes) or over the ``(sample, K tile)`` pairs (reduced modes: split-K,
so a small weight gradient still fills the GPU); the reduced modes write one
partial tile per ``z`` which :func:`pysrm.cuda.sum_rows` adds up in a fixed
order (deterministic, no atomics).

Backends.  :func:`gemm` runs a product through cuBLAS (:mod:`pysrm.ops._cublas_cuda`) where
:func:`pysrm.cuda.gemm_backend` says so (a real GPU with CuPy, the default there), else through the
Numba kernel of this module, which is the fallback and what the CUDA simulator tests; ``backend=``
forces one (``tests/test_cuda_cublas.py`` compares them on a real GPU).
"""
from __future__ import annotations


import numpy as np
from numba import cuda

from .. import cuda as dev
from .. import settings
from ..cuda import GEMM_BLOCK, GEMM_MICRO, GEMM_THREADS
from ._conv_index import col2im_source, im2col_source
from ._records import CONV_FWD, CONV_GW, CONV_GX, DENSE_FWD, DENSE_GW, DENSE_GX, ProductGeometry

_REDUCED = (DENSE_GW, CONV_GW)

#: options of the GEMM kernels: at most 128 registers per thread, so that two 256-thread blocks fit
#: on an SM (ptxas, sm_90: float32 126 registers and no spills; float64 128 with a few bytes spilled)
_GEMM_JIT = dict(cache=True) if dev.SIMULATOR else dict(cache=True, max_registers=128)




@cuda.jit(device=True, cache=True)
def _a_index(mode, b, r, k, g):
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = g
    if mode == DENSE_FWD:
        return r * Ci + k
    if mode == DENSE_GX:
        return k * Ci + r
    if mode == DENSE_GW:
        return (b * Co + r) * T + k
    if mode == CONV_FWD:
        return r * (Ci * KH * KW) + k
    if mode == CONV_GX:
        co = k // (KH * KW)
        rem = k - co * (KH * KW)
        return (co * Ci + r) * (KH * KW) + rem
    return (b * Co + r) * (Ho * Wo * T) + k


@cuda.jit(device=True, cache=True)
def _b_index(mode, b, k, c, g):
    # flat index into B, or -1 for a zero (padding) entry
    Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T = g
    if mode == DENSE_FWD:
        return (b * Ci + k) * T + c
    if mode == DENSE_GX:
        return (b * Co + k) * T + c
    if mode == DENSE_GW:
        return (b * Ci + c) * T + k
    if mode == CONV_FWD:  # k = (ci, ky, kx), c = (oy, ox, t)
        return im2col_source(b, k, c, g)
    if mode == CONV_GW:  # c = (ci, ky, kx), k = (oy, ox, t)
        return im2col_source(b, c, k, g)
    return col2im_source(b, k, c, g)  # CONV_GX: k = (co, ky, kx), c = (iy, ix, t)


@cuda.jit(device=True, cache=True)
def _tile_step(mode, ops, dims, b, k0, g, zero, sA, sB, acc, areg, breg):
    # one K tile of the block's product: ops = (A, B), dims = (M, Ncol, K, nbatch); sA, sB the shared tiles,
    # acc, areg, breg the thread's registers
    A, B = ops
    M, Ncol, K, nbatch = dims
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * GEMM_THREADS + tx
    nt = GEMM_THREADS * GEMM_THREADS
    r0 = cuda.blockIdx.y * GEMM_BLOCK
    c0 = cuda.blockIdx.x * GEMM_BLOCK
    a_kfast = mode == DENSE_FWD or mode == DENSE_GW or mode == CONV_FWD or mode == CONV_GW
    b_cfast = mode == DENSE_FWD or mode == DENSE_GX or mode == CONV_FWD or mode == CONV_GX
    for e in range(GEMM_MICRO):
        q = tid + e * nt
        if a_kfast:
            ar = q // GEMM_THREADS
            ak = q - ar * GEMM_THREADS
        else:
            ak = q // GEMM_BLOCK
            ar = q - ak * GEMM_BLOCK
        r = r0 + ar
        k = k0 + ak
        v = zero
        if r < M and k < K:
            v = A[_a_index(mode, b, r, k, g)]
        sA[ak, ar] = v
        if b_cfast:
            bk = q // GEMM_BLOCK
            bc = q - bk * GEMM_BLOCK
        else:
            bc = q // GEMM_THREADS
            bk = q - bc * GEMM_THREADS
        k = k0 + bk
        c = c0 + bc
        v = zero
        if k < K and c < Ncol:
            idx = _b_index(mode, b, k, c, g)
            if idx >= 0:
                v = B[idx]
        sB[bk, bc] = v
    cuda.syncthreads()
    for kk in range(GEMM_THREADS):
        for i in range(GEMM_MICRO):
            areg[i] = sA[kk, ty + i * GEMM_THREADS]
        for j in range(GEMM_MICRO):
            breg[j] = sB[kk, tx + j * GEMM_THREADS]
        for i in range(GEMM_MICRO):
            for j in range(GEMM_MICRO):
                acc[i, j] += areg[i] * breg[j]
    cuda.syncthreads()


@cuda.jit(device=True, cache=True)
def _store(C, z, M, Ncol, acc, zero, accumulate):
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    r0 = cuda.blockIdx.y * GEMM_BLOCK
    c0 = cuda.blockIdx.x * GEMM_BLOCK
    for i in range(GEMM_MICRO):
        r = r0 + ty + i * GEMM_THREADS
        for j in range(GEMM_MICRO):
            c = c0 + tx + j * GEMM_THREADS
            if r < M and c < Ncol:
                if accumulate:
                    C[z, r, c] += acc[i, j]
                else:
                    C[z, r, c] = acc[i, j]
            acc[i, j] = zero


@cuda.jit(device=True, cache=True)
def _gemm_body(mode, ops, C, dims, accumulate, g, zero, sA, sB, acc, areg, breg):
    # ops = (A, B), dims = (M, Ncol, K, nbatch): see _tile_step
    M, Ncol, K, nbatch = dims
    for i in range(GEMM_MICRO):
        for j in range(GEMM_MICRO):
            acc[i, j] = zero
    reduced = mode == DENSE_GW or mode == CONV_GW
    if reduced:
        nkt = (K + GEMM_THREADS - 1) // GEMM_THREADS
        for item in range(cuda.blockIdx.z, nbatch * nkt, cuda.gridDim.z):
            b = item // nkt
            k0 = (item - b * nkt) * GEMM_THREADS
            _tile_step(mode, ops, dims, b, k0, g, zero, sA, sB, acc, areg, breg)
        _store(C, cuda.blockIdx.z, M, Ncol, acc, zero, accumulate)
    else:
        for b in range(cuda.blockIdx.z, nbatch, cuda.gridDim.z):
            for k0 in range(0, K, GEMM_THREADS):
                _tile_step(mode, ops, dims, b, k0, g, zero, sA, sB, acc, areg, breg)
            _store(C, b, M, Ncol, acc, zero, accumulate)


@cuda.jit(**_GEMM_JIT)
def _gemm_f32(mode, A, B, C, M, Ncol, K, nbatch, accumulate, g, zero):
    sA = cuda.shared.array((GEMM_THREADS, GEMM_BLOCK), dtype=np.float32)
    sB = cuda.shared.array((GEMM_THREADS, GEMM_BLOCK), dtype=np.float32)
    acc = cuda.local.array((GEMM_MICRO, GEMM_MICRO), dtype=np.float32)
    areg = cuda.local.array(GEMM_MICRO, dtype=np.float32)
    breg = cuda.local.array(GEMM_MICRO, dtype=np.float32)
    _gemm_body(mode, (A, B), C, (M, Ncol, K, nbatch), accumulate, g, zero, sA, sB, acc, areg, breg)


@cuda.jit(**_GEMM_JIT)
def _gemm_f64(mode, A, B, C, M, Ncol, K, nbatch, accumulate, g, zero):
    sA = cuda.shared.array((GEMM_THREADS, GEMM_BLOCK), dtype=np.float64)
    sB = cuda.shared.array((GEMM_THREADS, GEMM_BLOCK), dtype=np.float64)
    acc = cuda.local.array((GEMM_MICRO, GEMM_MICRO), dtype=np.float64)
    areg = cuda.local.array(GEMM_MICRO, dtype=np.float64)
    breg = cuda.local.array(GEMM_MICRO, dtype=np.float64)
    _gemm_body(mode, (A, B), C, (M, Ncol, K, nbatch), accumulate, g, zero, sA, sB, acc, areg, breg)


def geometry(Ci, H=1, W=1, Co=1, Ho=1, Wo=1, KH=1, KW=1, sy=1, sx=1, py=0, px=0, T=1) -> ProductGeometry:
    """The integer geometry record the index maps read (dense: ``Ci = I``, ``Co = O``)."""
    return ProductGeometry(*(int(v) for v in (Ci, H, W, Co, Ho, Wo, KH, KW, sy, sx, py, px, T)))


def gemm(mode: int, A, B, M: int, Ncol: int, K: int, nbatch: int, geom: tuple, dtype, out=None,
         accumulate_into=None, backend: str | None = None, col=None):
    """Run the product of ``mode`` (see the module table) and return ``C``.

    Batched modes return ``(nbatch, M, Ncol)`` (``out`` may be given to write into); reduced
    modes return ``(M, Ncol)`` (the sum over the batch), or add it to ``accumulate_into`` (a device
    array of ``M * Ncol`` elements, e.g. a parameter's gradient) and return that.  ``backend``:
    ``"cublas"``, ``"numba"`` or None (:func:`pysrm.cuda.gemm_backend`).  ``col``: for modes 3 and 5
    on cuBLAS, the im2col matrix of ``B`` if already made.
    """
    dtype = np.dtype(dtype)
    backend = backend or dev.gemm_backend()
    if backend == "cublas":
        from . import _cublas_cuda
        return _cublas_cuda.product(mode, A, B, M, Ncol, K, nbatch, geom, dtype, out=out,
                                    accumulate_into=accumulate_into, col=col)
    if backend != "numba":
        raise ValueError(f"unknown GEMM backend {backend!r}; expected 'cublas' or 'numba'")
    if accumulate_into is not None and mode in _REDUCED:
        res = gemm(mode, A, B, M, Ncol, K, nbatch, geom, dtype, backend="numba")
        dev.accumulate(accumulate_into.reshape(M, Ncol), res)
        return accumulate_into
    kern = _gemm_f32 if dtype == np.float32 else _gemm_f64
    cfg = settings.current()  # cuda_split_blocks, cuda_grid_z_max
    A1 = A.reshape(A.size)
    B1 = B.reshape(B.size)
    tiles_x = dev.ceil_div(Ncol, GEMM_BLOCK)
    tiles_y = dev.ceil_div(M, GEMM_BLOCK)
    block = (GEMM_THREADS, GEMM_THREADS)
    zero = dtype.type(0)
    if mode in _REDUCED:
        work = nbatch * dev.ceil_div(K, GEMM_THREADS)
        nsplit = max(1, min(work, dev.ceil_div(cfg.cuda_split_blocks, tiles_x * tiles_y), cfg.cuda_grid_z_max))
        if M == 0 or Ncol == 0:
            return dev.zeros((M, Ncol), dtype)
        if work == 0:
            return dev.zeros((M, Ncol), dtype)
        part = dev.empty((nsplit, M, Ncol), dtype)
        dev.launch_grid(kern, (tiles_x, tiles_y, nsplit), block, mode, A1, B1, part, M, Ncol, K, nbatch, False, geom,
                        zero)
        if nsplit == 1:
            return part.reshape(M, Ncol)
        return dev.sum_rows(part.reshape(nsplit, M * Ncol)).reshape(M, Ncol)
    C = out if out is not None else dev.empty((nbatch, M, Ncol), dtype)
    if C.size == 0:
        return C
    if K == 0:
        dev.fill(C, 0)
        return C
    dev.launch_grid(kern, (tiles_x, tiles_y, min(nbatch, cfg.cuda_grid_z_max)), block, mode, A1, B1, C, M, Ncol, K, nbatch,
                    False, geom, zero)
    return C
