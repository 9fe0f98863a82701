r"""Axonal delay: a trainable, fractional time shift per neuron (or per channel).

A delay :math:`d \ge 0` (ms) is :math:`d/T_s = m + f` bins with integer
:math:`m` and :math:`0 \le f < 1`; the shift interpolates linearly between the
two neighbouring integer shifts (bins before the start read as zero):

.. math::

    y[t] = (1 - f)\, x[t - m] + f\, x[t - m - 1]

Backward.  Input (the adjoint, a shift by :math:`-d`):

.. math::

    \frac{\partial\mathcal L}{\partial x[t]} = (1-f)\, g[t + m] + f\, g[t + m + 1]

Delay (exact derivative of the piecewise-linear interpolation, taken from the
right at integer shifts; summed over the batch and over the neurons that share
a delay):

.. math::

    \frac{\partial\mathcal L}{\partial d} = \frac{1}{T_s}\sum_t g[t]\,
        \bigl(x[t - m - 1] - x[t - m]\bigr)

Checked by finite differences at non-integer delays.  ``d`` has the shape of
``x.shape[1:-1]`` (one delay per neuron) or ``(C, 1, 1)`` (one per channel), or
anything that broadcasts to ``x.shape[1:-1]``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._checks import float_array, positive
from ..backend import is_device_array
from ._util import check_5d


@njit(parallel=True, cache=True)
def _delay_cpu(x, shift, out):
    # x, out: (N, M, T); shift: (M,) delays in bins (>= 0).  out[t] = (1-f) x[t-m] + f x[t-m-1]
    # (x[<0] = 0).  The bulk t > m runs over slices with indices from range(): no branches and no
    # negative-index checks, so it vectorises (measured 3.5x faster than one branchy loop).
    N, M, T = x.shape
    for job in prange(N * M):
        n = job // M
        j = job % M
        d = shift[j]
        m = int(np.floor(d))
        f = x.dtype.type(d - m)
        g = x.dtype.type(1.0) - f
        xr = x[n, j]
        o = out[n, j]
        for t in range(min(m, T)):
            o[t] = 0.0
        if m < T:
            o[m] = g * xr[0]
        if m + 1 < T:
            ob = o[m + 1:]
            for k in range(T - m - 1):
                ob[k] = g * xr[k + 1] + f * xr[k]


@njit(parallel=True, cache=True, fastmath={"reassoc"})  # reassociation lets the time reduction vectorise
def _delay_backward_cpu(g, x, shift, gx, gd_rows):
    # gx[t] = (1-f) g[t+m] + f g[t+m+1]  (g[>= T] = 0)
    # gd    = sum_t g[t] (x[t-m-1] - x[t-m]) = -g[m] x[0] + sum_k g[m+1+k] (x[k] - x[k+1])
    N, M, T = g.shape
    for job in prange(N * M):
        n = job // M
        j = job % M
        d = shift[j]
        m = int(np.floor(d))
        f = g.dtype.type(d - m)
        h = g.dtype.type(1.0) - f
        gr = g[n, j]
        xr = x[n, j]
        o = gx[n, j]
        acc = 0.0
        if m < T:
            gs = gr[m:]
            for k in range(T - m - 1):
                o[k] = h * gs[k] + f * gs[k + 1]
            o[T - m - 1] = h * gr[T - 1]
            acc -= gr[m] * xr[0]
            g1 = gr[m + 1:]
            for k in range(T - m - 1):
                acc += g1[k] * (xr[k] - xr[k + 1])
        for t in range(max(T - m, 0), T):
            o[t] = 0.0
        gd_rows[n, j] = acc


def _prepare(x, d, ts, name="x"):
    check_5d(name, x)
    ts = positive("ts", ts)
    float_array("delay", np.asarray(d, dtype=np.float64))
    d = np.asarray(d)
    try:
        full = np.broadcast_to(d, x.shape[1:-1])
    except ValueError:
        raise ValueError(f"delay of shape {d.shape} does not broadcast to the neuron shape {x.shape[1:-1]}; "
                         "expected one delay per neuron or per channel (C, 1, 1)") from None
    if (full < 0).any():
        raise ValueError(f"delays must be >= 0 ms, got min {full.min()}")
    shift = np.ascontiguousarray(full, dtype=np.float64).reshape(-1) / ts
    N, T = x.shape[0], x.shape[-1]
    return np.ascontiguousarray(x).reshape(N, -1, T), shift.astype(x.dtype), d.shape, ts


def delay(x, d, ts: float):
    r"""Shift every neuron of ``x`` (``(N, C, H, W, T)``) later by ``d`` ms (linear interpolation)."""
    if is_device_array(x):
        from . import delay_cuda
        return delay_cuda.delay(x, d, ts)
    x3, shift, _, _ = _prepare(x, d, ts)
    out = np.empty_like(x3)
    _delay_cpu(x3, shift, out)
    return out.reshape(x.shape)


def delay_backward(grad, x, d, ts: float):
    r"""Gradients of :func:`delay`: returns ``(grad_x, grad_d)``; ``grad_d`` has the shape of ``d``."""
    if is_device_array(grad):
        from . import delay_cuda
        return delay_cuda.delay_backward(grad, x, d, ts)
    x3, shift, d_shape, ts = _prepare(x, d, ts)
    check_5d("grad", grad)
    if grad.shape != x.shape:
        raise ValueError(f"grad has shape {grad.shape}; expected the delay output shape {x.shape}")
    g3 = np.ascontiguousarray(grad).reshape(x3.shape)
    gx = np.empty_like(g3)
    gd_rows = np.empty(x3.shape[:2], dtype=grad.dtype)
    _delay_backward_cpu(g3, x3, shift, gx, gd_rows)
    gd_full = gd_rows.sum(axis=0).reshape(x.shape[1:-1]) / grad.dtype.type(ts)
    # sum over the neurons that share a delay (broadcast dimensions)
    lead = gd_full.ndim - len(d_shape)
    gd = gd_full.sum(axis=tuple(range(lead))) if lead else gd_full
    axes = tuple(i for i, s in enumerate(d_shape) if s == 1 and gd.shape[i] != 1)
    if axes:
        gd = gd.sum(axis=axes, keepdims=True)
    return gx.reshape(x.shape), gd.reshape(d_shape).astype(grad.dtype)
