r"""CUDA kernels of the trainable axonal delay (see :mod:`pysrm.ops.delay`).

With :math:`d/T_s = m + f` (integer :math:`m`, :math:`0 \le f < 1`) per neuron:

.. math::

    y[t] = (1-f)\,x[t-m] + f\,x[t-m-1], \qquad
    \frac{\partial\mathcal L}{\partial x[t]} = (1-f)\,g[t+m] + f\,g[t+m+1]

.. math::

    \frac{\partial\mathcal L}{\partial d} = \frac{1}{T_s}\sum_{n,t} g[t]\,\bigl(x[t-m-1] - x[t-m]\bigr)

summed over the neurons that share a delay (``d`` broadcasts to ``(C, H, W)``).

Thread mapping (grid-stride loops):

* ``shift``: one thread per neuron reads its (broadcast) delay and stores
  ``d / T_s`` in the data dtype (as the CPU op: float64 division, then rounding);
* forward and input gradient: one thread per element ``(n, j, t)`` (``t`` fastest);
* delay gradient: one thread per ``(n, j)`` sums over ``t`` (float64, as the CPU
  kernel), then one thread per delay entry sums its rows over the batch and
  the neurons that share it (same order of reduction as the CPU wrapper).

Everything stays on the device, including the delays (a trained parameter);
negative delays (which the CPU op rejects and the optimiser clamps away) read
nothing out of range.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import cuda as dev
from .._checks import positive


@cuda.jit(cache=True)
def _shift_kernel(d3, C, H, W, ts, shift):
    Cd, Hd, Wd = d3.shape
    M = C * H * W
    for j in range(cuda.grid(1), M, cuda.gridsize(1)):
        c = j // (H * W)
        rem = j - c * (H * W)
        h = rem // W
        w = rem - h * W
        cd = c if Cd > 1 else 0
        hd = h if Hd > 1 else 0
        wd = w if Wd > 1 else 0
        shift[j] = d3[cd, hd, wd] / ts


@cuda.jit(cache=True)
def _interp_shift_kernel(x, shift, out, sign):
    # out[t] = (1-f) x[t + sign*m] + f x[t + sign*(m+1)]  (x outside [0, T) is 0), m + f = shift[j]:
    # sign = -1 is the delay itself, sign = +1 its adjoint (the input gradient)
    N, M, T = x.shape
    total = N * M * T
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = idx % T
        q = idx // T
        j = q % M
        n = q // M
        d = shift[j]
        m = int(math.floor(d))
        f = np.float64(d) - m  # float64, as the CPU kernel's float32 - int
        a = t + sign * m
        v = 0.0
        if a >= 0 and a < T:
            v += (1.0 - f) * x[n, j, a]
        a += sign
        if a >= 0 and a < T:
            v += f * x[n, j, a]
        out[n, j, t] = v


@cuda.jit(cache=True)
def _delay_rows_kernel(g, x, shift, gd_rows):
    N, M, T = g.shape
    for idx in range(cuda.grid(1), N * M, cuda.gridsize(1)):
        j = idx % M
        n = idx // M
        d = shift[j]
        m = int(math.floor(d))
        acc = 0.0
        for t in range(T):
            b = t - m
            dx = 0.0
            if b - 1 >= 0 and b - 1 < T:
                dx += x[n, j, b - 1]
            if b >= 0 and b < T:
                dx -= x[n, j, b]
            acc += g[n, j, t] * dx
        gd_rows[n, j] = acc


@cuda.jit(cache=True)
def _delay_reduce_kernel(gd_rows, C, H, W, ts, zero, gd3):
    # gd3[cd, hd, wd] = sum over the neurons (c, h, w) sharing the delay of (sum_n gd_rows[n, j]) / ts
    N = gd_rows.shape[0]
    Cd, Hd, Wd = gd3.shape
    for e in range(cuda.grid(1), Cd * Hd * Wd, cuda.gridsize(1)):
        cd = e // (Hd * Wd)
        rem = e - cd * (Hd * Wd)
        hd = rem // Wd
        wd = rem - hd * Wd
        c0, c1 = (cd, cd + 1) if Cd > 1 else (0, C)
        h0, h1 = (hd, hd + 1) if Hd > 1 else (0, H)
        w0, w1 = (wd, wd + 1) if Wd > 1 else (0, W)
        acc = zero
        for c in range(c0, c1):
            for h in range(h0, h1):
                for w in range(w0, w1):
                    j = (c * H + h) * W + w
                    s = zero
                    for n in range(N):
                        s += gd_rows[n, j]
                    acc += s / ts
        gd3[cd, hd, wd] = acc


def _prepare(x, d, ts):
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    ts = positive("ts", ts)
    neurons = shape[1:4]
    d_shape = tuple(d.shape)
    if len(d_shape) > 3:
        raise ValueError(f"delay of shape {d_shape} does not broadcast to the neuron shape {neurons}; "
                         "expected one delay per neuron or per channel (C, 1, 1)")
    d3_shape = (1,) * (3 - len(d_shape)) + d_shape
    for a, b in zip(d3_shape, neurons):
        if a not in (1, b):
            raise ValueError(f"delay of shape {d_shape} does not broadcast to the neuron shape {neurons}; "
                             "expected one delay per neuron or per channel (C, 1, 1)")
    dt = np.dtype(x.dtype)
    if isinstance(d, np.ndarray):
        d = dev.to_device(d)
    d3 = d.reshape(*d3_shape)
    C, H, W = neurons
    shift = dev.empty((C * H * W,), dt)
    dev.launch(_shift_kernel, C * H * W, d3, C, H, W, float(ts), shift)
    N, T = shape[0], shape[4]
    return x.reshape(N, C * H * W, T), shift, d_shape, d3_shape, ts


def delay(x, d, ts: float):
    """Device version of :func:`pysrm.ops.delay.delay`."""
    x3, shift, _, _, _ = _prepare(x, d, ts)
    out = dev.empty(x3.shape, x3.dtype)
    dev.launch(_interp_shift_kernel, x3.size, x3, shift, out, -1)
    return out.reshape(x.shape)


def delay_backward(grad, x, d, ts: float):
    """Device version of :func:`pysrm.ops.delay.delay_backward`: ``(grad_x, grad_d)``."""
    x3, shift, d_shape, d3_shape, ts = _prepare(x, d, ts)
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the delay output shape {tuple(x.shape)}")
    dt = np.dtype(grad.dtype)
    g3 = grad.reshape(x3.shape)
    gx = dev.empty(x3.shape, dt)
    dev.launch(_interp_shift_kernel, g3.size, g3, shift, gx, 1)
    N, M, _ = x3.shape
    gd_rows = dev.empty((N, M), dt)
    dev.launch(_delay_rows_kernel, N * M, g3, x3, shift, gd_rows)
    gd3 = dev.empty(d3_shape, dt)
    C, H, W = x.shape[1:4]
    dev.launch(_delay_reduce_kernel, gd3.size, gd_rows, C, H, W, dt.type(ts), dt.type(0), gd3)
    return gx.reshape(x.shape), gd3.reshape(*d_shape) if d_shape else gd3.reshape(())
