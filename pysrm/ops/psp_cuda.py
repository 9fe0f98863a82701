r"""CUDA kernels of the post-synaptic potential (see :mod:`pysrm.ops.psp`).

Forward, causal filtering on the last (time) axis, rows ``r`` = all other axes:

.. math::

    \mathrm{psp}(x)[r, t] = \sum_{i=0}^{\min(L, t+1)-1} k[i]\, x[r, t-i], \qquad k = T_s\,\epsilon

Backward, the correlation:

.. math::

    g_x[r, t] = \sum_{i=0}^{\min(L, T-t)-1} k[i]\, g[r, t+i]

Thread mapping: one thread per output element ``(r, t)`` (flat index, ``t``
fastest, so neighbouring threads read neighbouring bins: coalesced), in a
grid-stride loop; each thread gathers its ``<= L`` terms (the forward skips
zero inputs and sums oldest input first, the order of the CPU scatter): the primitives
``causal_sum`` and ``correlation_sum`` of ``pysrm.ops._primitives``, shared with the fused kernels.

The GPU always evaluates this direct (truncated-kernel) form, which is
parallel over the bins, and follows the CPU op's precision:

* where the CPU uses its direct kernels (short or non-alpha responses), the
  scaled response ``k`` is rounded to the data dtype exactly as there, the
  forward accumulates in the data dtype and the backward sums the dtype
  products in float64 -- the same arithmetic, so the same result;
* where the CPU uses the O(T) alpha recursion (:func:`pysrm.ops.psp.alpha_parameters`,
  responses of at least the settings ``recursive_min_length`` / ``recursive_min_length_backward``
  samples), which works in float64, the GPU takes ``k`` in float64 and
  accumulates in float64 too: both round the same float64 value to the dtype.

``k`` is cached on the device (:func:`pysrm.cuda.constant`), so it is not
copied again at every call.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import cuda as dev
from . import _primitives_cuda as prim
from ._util import response_as
from .. import settings
from .psp import alpha_parameters


@cuda.jit(cache=True)
def _psp_kernel(x, k, out, zero):
    # one thread per (r, t): the direct causal sum (pysrm.ops._primitives.causal_sum)
    rows, T = x.shape
    n = rows * T
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = idx // T
        t = idx - r * T
        out[r, t] = prim.causal_sum(x[r], k, t, 0, zero)


@cuda.jit(cache=True)
def _psp_backward_kernel(g, k, out):
    # one thread per (r, t): the correlation, float64 sum of products in k's precision
    # (pysrm.ops._primitives.correlation_sum)
    rows, T = g.shape
    n = rows * T
    for idx in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = idx // T
        t = idx - r * T
        out[r, t] = prim.correlation_sum(g[r], k, t, T)


def _scaled(kernel, dtype, ts, min_recursive):
    """The device response ``ts * kernel`` and the accumulator zero, in the precision of the CPU path."""
    dtype = np.dtype(dtype)
    if len(kernel) >= min_recursive and alpha_parameters(kernel) is not None:
        return dev.constant(response_as("kernel", kernel, np.float64) * float(ts)), np.float64(0)
    return dev.constant(response_as("kernel", kernel, dtype) * dtype.type(ts)), dtype.type(0)


def _rows(x):
    T = tuple(x.shape)[-1]
    return x.reshape(x.size // T if T else 0, T)


def psp(x, kernel, ts: float):
    """Device version of :func:`pysrm.ops.psp.psp` (same arguments; ``x`` a device array)."""
    k, zero = _scaled(kernel, x.dtype, ts, settings.current().recursive_min_length)
    out = dev.empty(x.shape, x.dtype)
    dev.launch(_psp_kernel, x.size, _rows(x), k, _rows(out), zero)
    return out


def psp_backward(grad, kernel, ts: float):
    """Device version of :func:`pysrm.ops.psp.psp_backward`."""
    k, _ = _scaled(kernel, grad.dtype, ts, settings.current().recursive_min_length_backward)
    out = dev.empty(grad.shape, grad.dtype)
    dev.launch(_psp_backward_kernel, grad.size, _rows(grad), k, _rows(out))
    return out
