r"""CUDA kernels of the trainable axonal delay (see :mod:`pysrm.ops.delay`).

With :math:`d/T_s = m + f` (integer :math:`m`, :math:`0 \le f < 1`) per neuron:

.. math::

    y[t] = (1-f)\,x[t-m] + f\,x[t-m-1], \qquad
    \frac{\partial\mathcal L}{\partial x[t]} = (1-f)\,g[t+m] + f\,g[t+m+1]

.. math::

    \frac{\partial\mathcal L}{\partial d} = \frac{1}{T_s}\sum_{n,t} g[t]\,\bigl(x[t-m-1] - x[t-m]\bigr)

summed over the neurons that share a delay (``d`` broadcasts to ``(C, H, W)``).

Thread mapping (grid-stride loops):

* the shift ``d / T_s`` of a neuron (its broadcast delay) is computed where it is used
  (:func:`delay_shift`), in float64 and rounded to the data dtype (as the CPU op: float64 division,
  then rounding), so no shift array is stored;
* forward and input gradient: one thread per element ``(n, j, t)`` (``t`` fastest), one launch;
* delay gradient (:func:`delay_grad`, one launch): one block per delay entry; its threads stride over
  the ``(n, neuron, t)`` terms of the entry (``t`` fastest: coalesced) and sum in float64, then the
  block adds its partial sums in a fixed tree (deterministic, no atomics) and adds the result divided
  by ``T_s`` to the gradient array (``accumulate_into``: a parameter's gradient) or writes it.  The
  CPU sums per ``(n, neuron)`` row first and rounds in between: the two agree to float rounding.
  The gradient may be read through a following sum pool (``pool=``; the fused blocks of
  :mod:`pysrm.blocks.cuda`).

Everything stays on the device, including the delays (a trained parameter);
negative delays (which the CPU op rejects and the optimiser clamps away) read
nothing out of range.
"""
from __future__ import annotations


import numpy as np
from numba import cuda

from .. import cuda as dev
from .._checks import positive
from . import _primitives_cuda as prim
from ._records import DelayArgs, PoolRead, RowGeometry


@cuda.jit(device=True, cache=True)
def delay_shift(dl, j, P, Wn):
    """``(m, f)`` with ``m + f = d / ts`` of neuron ``j = (c, h, w)`` (``P = H W``, ``Wn = W``), the delay
    broadcast from the flat ``(Cd, Hd, Wd)`` array ``d3`` of ``dl`` (``DelayArgs``); ``d / ts`` in float64,
    rounded to float32 when ``is32`` (as the shift array of the CPU op holds it), ``f`` in float64."""
    d3, Cd, Hd, Wd, ts, is32 = dl.d3, dl.Cd, dl.Hd, dl.Wd, dl.ts, dl.is32
    c = j // P
    p = j - c * P
    h = p // Wn
    w = p - h * Wn
    cd = c if Cd > 1 else 0
    hd = h if Hd > 1 else 0
    wd = w if Wd > 1 else 0
    q = d3[(cd * Hd + hd) * Wd + wd] / ts
    if is32:
        q = np.float64(np.float32(q))
    return prim.delay_split(q)


@cuda.jit(cache=True)
def _shift_interp_kernel(x, dl, P, Wn, out, sign):
    # out[n, j, t] = (1-f) x[n, j, t + sign*m] + f x[n, j, t + sign*(m+1)] with m + f = d_j / ts
    # (sign -1: the delay; +1: its adjoint), in float64 (the primitive interpolate of the CPU op)
    N, M, T = x.shape
    total = N * M * T
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = idx % T
        q = idx // T
        j = q % M
        n = q // M
        m, f = delay_shift(dl, j, P, Wn)
        a = t + sign * m
        x0 = 0.0
        x1 = 0.0
        if a >= 0 and a < T:
            x0 = x[n, j, a]
        a += sign
        if a >= 0 and a < T:
            x1 = x[n, j, a]
        out[n, j, t] = prim.interpolate(x0, x1, 1.0 - f, f)


@cuda.jit(device=True, cache=True)
def _g_at(g, gmode, r, t, geo, pr):
    # the delay output's gradient at row r, bin t: g[r, t], or through a following sum pool (gmode 2; pr:
    # PoolRead); geo: RowGeometry of the rows
    T, P, Wn = geo.T, geo.P, geo.Wn
    if gmode == 2:
        nc = r // P  # n * C + c
        p = r - nc * P
        iy = p // Wn
        return prim.pooled_grad(g, nc * pr.Ho * pr.Wo * T + t, pr.Wo, T, iy, p - iy * Wn, pr.pk, pr.wp)
    return g[r * T + t]


@cuda.jit(device=True, cache=True)
def _delay_grad_body(g, gmode, x, geo, pr, dl, gd, accumulate, part):
    # gd[e] (+)= (1/ts) sum over the entry's neurons j, samples n, bins t of g[n, j, t] (x[t-m-1] - x[t-m]);
    # geo: RowGeometry of x, pr: PoolRead (gmode 2), dl: DelayArgs
    N, C, P, Wn, T = geo.N, geo.C, geo.P, geo.Wn, geo.T
    Hn = P // Wn if Wn > 0 else 0
    Cd, Hd, Wd, ts = dl.Cd, dl.Hd, dl.Wd, dl.ts
    tid = cuda.threadIdx.x
    nth = cuda.blockDim.x
    n_entries = Cd * Hd * Wd
    for e in range(cuda.blockIdx.x, n_entries, cuda.gridDim.x):
        cd = e // (Hd * Wd)
        rem = e - cd * (Hd * Wd)
        hd = rem // Wd
        wd = rem - hd * Wd
        c0, nc = (cd, 1) if Cd > 1 else (0, C)
        h0, nh = (hd, 1) if Hd > 1 else (0, Hn)
        w0, nw = (wd, 1) if Wd > 1 else (0, Wn)
        total = N * nc * nh * nw * T
        acc = 0.0
        for k in range(tid, total, nth):
            t = k % T
            q = k // T
            w = w0 + q % nw
            q = q // nw
            h = h0 + q % nh
            q = q // nh
            c = c0 + q % nc
            n = q // nc
            j = (c * Hn + h) * Wn + w
            r = n * (C * P) + j
            m, f = delay_shift(dl, j, P, Wn)
            b = t - m
            dx = 0.0
            if b - 1 >= 0 and b - 1 < T:
                dx += x[r * T + b - 1]
            if b >= 0 and b < T:
                dx -= x[r * T + b]
            if dx != 0.0:
                acc += _g_at(g, gmode, r, t, geo, pr) * dx
        part[tid] = acc
        cuda.syncthreads()
        s = nth // 2
        while s > 0:
            if tid < s:
                part[tid] += part[tid + s]
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            if accumulate:
                gd[e] += part[0] / ts
            else:
                gd[e] = part[0] / ts
        cuda.syncthreads()


#: threads per block of the delay-gradient kernel (a power of two; the reduction tree is fixed)
GRAD_THREADS = 16 if dev.SIMULATOR else 256
_GRAD_THREADS = GRAD_THREADS


@cuda.jit(cache=True)
def _delay_grad_kernel(g, gmode, x, geo, pr, dl, gd, accumulate):
    part = cuda.shared.array(_GRAD_THREADS, dtype=np.float64)
    _delay_grad_body(g, gmode, x, geo, pr, dl, gd, accumulate, part)


def _broadcast(x_shape, d):
    """``(d3 flat device array, (Cd, Hd, Wd), d_shape)`` of delays ``d`` for inputs of ``x_shape``."""
    neurons = tuple(x_shape[1:4])
    d_shape = tuple(int(v) for v in d.shape)
    if len(d_shape) > 3:
        raise ValueError(f"delay of shape {d_shape} does not broadcast to the neuron shape {neurons}; "
                         "expected one delay per neuron or per channel (C, 1, 1)")
    d3_shape = (1,) * (3 - len(d_shape)) + d_shape
    for a, b in zip(d3_shape, neurons):
        if a not in (1, b):
            raise ValueError(f"delay of shape {d_shape} does not broadcast to the neuron shape {neurons}; "
                             "expected one delay per neuron or per channel (C, 1, 1)")
    if isinstance(d, np.ndarray):
        d = dev.to_device(d)
    return d.reshape(max(1, d.size)), d3_shape, d_shape


def _shifted(x, d, ts, sign):
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    ts = positive("ts", ts)
    d3, (Cd, Hd, Wd), _ = _broadcast(shape, d)
    N, C, H, W, T = shape
    x3 = x.reshape(N, C * H * W, T)
    out = dev.empty(x3.shape, x3.dtype)
    dev.launch(_shift_interp_kernel, x3.size, x3, DelayArgs(d3, Cd, Hd, Wd, float(ts), np.dtype(x.dtype) == np.float32),
               H * W, W, out, sign)
    return out.reshape(shape)


def delay(x, d, ts: float):
    """Device version of :func:`pysrm.ops.delay.delay` (one launch)."""
    return _shifted(x, d, ts, -1)


def delay_input_grad(grad, d, ts: float):
    """The input gradient of the delay, ``(1-f) g[t+m] + f g[t+m+1]`` (one launch)."""
    return _shifted(grad, d, ts, 1)


def delay_grad(grad, x, d, ts: float, accumulate_into=None, pool=None):
    r"""The delay gradient :math:`\frac{1}{T_s}\sum_{n,t} g[t](x[t-m-1] - x[t-m])` summed over the neurons
    sharing each delay (one launch, deterministic; module docstring).

    ``grad``: the delay output's gradient like ``x``, or with ``pool = (k, weight)`` the gradient of a
    following sum pool's output (read through it).  Returns an array shaped like ``d``, or adds to
    ``accumulate_into`` (a device array like ``d``) and returns it."""
    shape = tuple(x.shape)
    ts = positive("ts", ts)
    N, C, H, W, T = shape
    d3, (Cd, Hd, Wd), d_shape = _broadcast(shape, d)
    dt = np.dtype(x.dtype)
    gmode, pk, wp, Ho, Wo = 0, 1, dt.type(0), 1, 1
    if pool is not None:
        gmode = 2
        pk, weight = pool
        pk, wp = int(pk), dt.type(positive("weight", weight))
        Ho, Wo = -(-H // pk), -(-W // pk)
        expected = (N, C, Ho, Wo, T)
    else:
        expected = shape
    if tuple(grad.shape) != expected:
        raise ValueError(f"grad has shape {tuple(grad.shape)}; expected {expected}")
    if accumulate_into is not None:
        if tuple(accumulate_into.shape) != d_shape or accumulate_into.dtype != dt:
            raise ValueError(f"accumulate_into must be {d_shape} {dt}")
        gd = accumulate_into
    else:
        gd = dev.empty(d_shape, dt)
    n_entries = Cd * Hd * Wd
    blocks = max(1, min(n_entries, dev.current_launch().max_blocks))
    dev.launch_grid(_delay_grad_kernel, blocks, GRAD_THREADS, grad.reshape(grad.size), gmode, x.reshape(x.size),
                    RowGeometry(N, C, H * W, W, T), PoolRead(pk, Ho, Wo, wp),
                    DelayArgs(d3, Cd, Hd, Wd, float(ts), dt == np.float32), gd.reshape(max(1, gd.size)),
                    accumulate_into is not None)
    return gd


def delay_backward(grad, x, d, ts: float):
    """Device version of :func:`pysrm.ops.delay.delay_backward`: ``(grad_x, grad_d)`` (two launches)."""
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the delay output shape {tuple(x.shape)}")
    gx = delay_input_grad(grad, d, ts)
    return gx, delay_grad(grad, x, d, ts)
