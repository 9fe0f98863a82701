r"""CUDA kernels of sum pooling (see :mod:`pysrm.ops.pool`).

.. math::

    a[n, c, y, x, t] = w_p \sum_{k_y, k_x < k} x[n, c, k y + k_y, k x + k_x, t], \qquad
    \frac{\partial\mathcal L}{\partial x[n, c, i_y, i_x, t]} = w_p\, g[n, c, \lfloor i_y/k\rfloor, \lfloor i_x/k\rfloor, t]

(bottom/right edges zero padded; output ``(N, C, ceil(H/k), ceil(W/k), T)``).

Thread mapping (grid-stride loops, ``t`` fastest so accesses are coalesced):

* dense forward: one thread per output element gathers its ``k x k`` window
  (in the CPU kernel's order of additions, in the input dtype: the primitive ``pool_window_sum`` of
  ``pysrm.ops._primitives``, which the fused SRM kernel reads its pooled input with);
* event-driven forward (:class:`~pysrm.events_cuda.DeviceSpikeEvents`): one thread per
  event adds ``w_p * value`` into its output element (atomic add);
* backward: one thread per input element reads its window's gradient (``pooled_grad``, as the
  delay's and the fused kernels' reads through a pool).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import cuda as dev
from .._checks import positive, positive_int
from ..events_cuda import DeviceSpikeEvents
from . import _primitives_cuda as prim
from .pool import pool_output_size


@cuda.jit(cache=True)
def _pool_kernel(x, shape, k, wp, out, zero):
    # x: the flat (N, C, H, W, T) input (shape); out: (N, C, Ho, Wo, T), one thread per output element,
    # its window summed by the primitive pool_window_sum (the CPU op's order)
    N, C, H, W, T = shape
    Ho, Wo = out.shape[2], out.shape[3]
    total = N * C * Ho * Wo * T
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, oy, ox, t = prim.unravel5(idx, C, Ho, Wo, T)
        out[n, c, oy, ox, t] = prim.pool_window_sum(x, (n * C + c) * H * W * T + t, W, T, oy, ox, k, H, wp, zero)


@cuda.jit(cache=True)
def _pool_events_kernel(sample, neuron, time, value, H, W, k, wp, out):
    E = neuron.shape[0]
    for e in range(cuda.grid(1), E, cuda.gridsize(1)):
        c, iy, ix = prim.decode_neuron(neuron[e], H, W)
        cuda.atomic.add(out, (sample[e], c, iy // k, ix // k, time[e]), wp * value[e])


@cuda.jit(cache=True)
def _pool_backward_kernel(g, k, wp, gx):
    # g: the flat pool output gradient (N, C, Ho, Wo, T); one thread per input element (pooled_grad)
    N, C, H, W, T = gx.shape
    Ho, Wo = (H + k - 1) // k, (W + k - 1) // k
    total = N * C * H * W * T
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, iy, ix, t = prim.unravel5(idx, C, H, W, T)
        gx[n, c, iy, ix, t] = prim.pooled_grad(g, (n * C + c) * Ho * Wo * T + t, Wo, T, iy, ix, k, wp)


def pool(x, k: int, weight: float):
    """Device version of :func:`pysrm.ops.pool.pool`."""
    k = positive_int("kernel", k)
    weight = positive("weight", weight)
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    N, C, H, W, T = shape
    ho, wo = pool_output_size(H, W, k)
    dt = np.dtype(x.dtype)
    if isinstance(x, DeviceSpikeEvents):
        out = dev.zeros((N, C, ho, wo, T), dt)
        dev.launch(_pool_events_kernel, x.n_events, x.sample, x.neuron, x.time, x.value, H, W, k, dt.type(weight), out)
        return out
    out = dev.empty((N, C, ho, wo, T), dt)
    dev.launch(_pool_kernel, out.size, x.reshape(x.size), (N, C, H, W, T), k, dt.type(weight), out, dt.type(0))
    return out


def pool_backward(grad, input_shape, k: int, weight: float):
    """Device version of :func:`pysrm.ops.pool.pool_backward`."""
    k = positive_int("kernel", k)
    weight = positive("weight", weight)
    N, C, H, W, T = (int(s) for s in input_shape)
    expected = (N, C) + pool_output_size(H, W, k) + (T,)
    if tuple(grad.shape) != expected:
        raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the pool output shape {expected}")
    dt = np.dtype(grad.dtype)
    gx = dev.empty((N, C, H, W, T), dt)
    dev.launch(_pool_backward_kernel, gx.size, grad.reshape(grad.size), k, dt.type(weight), gx)
    return gx
