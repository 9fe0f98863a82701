r"""Post-synaptic potential: causal filtering with the spike response.

Forward (convolution, causal, lag 0 included):

.. math::

    \mathrm{psp}(x)[t] = T_s \sum_{i=0}^{L-1} \epsilon[i]\, x[t-i]

Backward (its adjoint, the correlation):

.. math::

    \frac{\partial \mathcal L}{\partial x[t]} = T_s \sum_{i=0}^{L-1} \epsilon[i]\, g[t+i],
    \qquad g = \frac{\partial \mathcal L}{\partial\, \mathrm{psp}(x)}

Both act on the last (time) axis of an array of any shape.  The forward
kernel is event driven: it skips zero inputs, so filtering a spike train costs
O(spikes x L).  Both are exact (linear) and checked by finite differences.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..backend import is_device_array
from ._util import as_rows, response_as


@njit(parallel=True, cache=True)
def _psp_cpu(x, k, out):
    rows, T = x.shape
    L = k.shape[0]
    for r in prange(rows):
        for t in range(T):
            v = x[r, t]
            if v != 0.0:
                m = min(L, T - t)
                for i in range(m):
                    out[r, t + i] += v * k[i]


@njit(parallel=True, cache=True)
def _psp_backward_cpu(g, k, out):
    rows, T = g.shape
    L = k.shape[0]
    for r in prange(rows):
        for t in range(T):
            m = min(L, T - t)
            acc = 0.0
            for i in range(m):
                acc += g[r, t + i] * k[i]
            out[r, t] = acc


def psp(x, kernel, ts: float):
    r"""Filter ``x`` (shape ``(..., T)``) causally: ``out[t] = ts * sum_i kernel[i] * x[t-i]``."""
    if is_device_array(x):
        from . import psp_cuda
        return psp_cuda.psp(x, kernel, ts)
    rows = as_rows("x", x)
    k = response_as("kernel", kernel, x.dtype) * x.dtype.type(ts)
    out = np.zeros_like(rows)
    _psp_cpu(rows, k, out)
    return out.reshape(x.shape)


def psp_backward(grad, kernel, ts: float):
    r"""Adjoint of :func:`psp` (correlation): ``out[t] = ts * sum_i kernel[i] * grad[t+i]``."""
    if is_device_array(grad):
        from . import psp_cuda
        return psp_cuda.psp_backward(grad, kernel, ts)
    rows = as_rows("grad", grad)
    k = response_as("kernel", kernel, grad.dtype) * grad.dtype.type(ts)
    out = np.empty_like(rows)
    _psp_backward_cpu(rows, k, out)
    return out.reshape(grad.shape)
