r"""Sum pooling (SLAYER's aggregate pooling) with a fixed weight.

For a pooling size ``k`` (stride ``k``) and fixed weight ``w_p`` (SLAYER uses
``1.1 * theta`` so that one input spike can make the pooling neuron fire):

.. math::

    a[n, c, y, x, t] = w_p \sum_{k_y=0}^{k-1}\sum_{k_x=0}^{k-1} x[n, c, k y + k_y, k x + k_x, t]

Spatial sizes that are not multiples of ``k`` are zero padded at the bottom and
right edge (as SLAYER does; for ``k = 2`` this is exactly SLAYER's padding), so
the output is ``(N, C, ceil(H/k), ceil(W/k), T)``.  Channels never mix.

Backward (adjoint: every input position receives its pooling window's gradient):

.. math::

    \frac{\partial\mathcal L}{\partial x[n, c, i_y, i_x, t]} = w_p\, g[n, c, \lfloor i_y/k\rfloor, \lfloor i_x/k\rfloor, t]

The weight is fixed (not trained).  Exact; checked by finite differences (``tests/test_op_pool_delay_dropout.py``;
CUDA twin :mod:`pysrm.ops.pool_cuda`, tested under the CUDA simulator).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._checks import float_array, positive, positive_int
from ..backend import is_device_array
from ..events import SpikeEvents
from ._util import check_5d, check_strategy

#: strategies of :func:`pool`
STRATEGIES = ("auto", "plain", "event")
from .dense import as_dense, as_events, events_if_sparse


@njit(parallel=True, cache=True)
def _pool_dense_cpu(x, k, wp, out):
    N, C, H, W, T = x.shape
    for job in prange(N * C):
        n = job // C
        c = job % C
        for iy in range(H):
            oy = iy // k
            for ix in range(W):
                ox = ix // k
                for t in range(T):
                    out[n, c, oy, ox, t] += wp * x[n, c, iy, ix, t]


@njit(parallel=True, cache=True)
def _pool_events_cpu(offsets, neuron, time, value, H, W, k, wp, out):
    N = offsets.shape[0] - 1
    for n in prange(N):
        for e in range(offsets[n], offsets[n + 1]):
            idx = neuron[e]
            c = idx // (H * W)
            rem = idx % (H * W)
            out[n, c, (rem // W) // k, (rem % W) // k, time[e]] += wp * value[e]


@njit(parallel=True, cache=True)
def _pool_backward_cpu(g, k, wp, gx):
    N, C, H, W, T = gx.shape
    for job in prange(N * C):
        n = job // C
        c = job % C
        for iy in range(H):
            oy = iy // k
            for ix in range(W):
                ox = ix // k
                for t in range(T):
                    gx[n, c, iy, ix, t] = wp * g[n, c, oy, ox, t]


def pool_output_size(h: int, w: int, k: int):
    """Spatial output size of :func:`pool` on an ``h x w`` input: ``(ceil(h/k), ceil(w/k))``.

    Parameters
    ----------
    h, w : int
        The input's height and width (pixels).
    k : int
        The window size and stride, >= 1.

    Returns
    -------
    tuple of int
        ``(Ho, Wo)``.
    """
    return -(-h // k), -(-w // k)


def _check(x, k, weight):
    k = positive_int("kernel", k)
    weight = positive("weight", weight)
    if isinstance(x, SpikeEvents):
        shape = x.shape
    else:
        check_5d("x", x)
        shape = x.shape
    return shape, k, weight


def pool(x, k: int, weight: float, strategy: str = "auto"):
    r"""Sum pooling with a fixed weight (SLAYER's ``pool``).

    .. math::

        a[n, c, y, x, t] = w_p \sum_{k_y=0}^{k-1}\sum_{k_x=0}^{k-1} x[n, c, k y + k_y, k x + k_x, t]

    with the input zero padded at the bottom and right edge to multiples of ``k``.

    Parameters
    ----------
    x : ndarray, SpikeEvents or CUDA device array, shape (N, C, H, W, T)
        The input, float32 or float64.
    k : int
        The window size and stride (pixels), >= 1.
    weight : float
        The fixed weight ``w_p`` (SLAYER: ``1.1 * theta``), > 0.
    strategy : {"auto", "plain", "event"}, default "auto"
        ``"plain"`` (the dense sum of the definition), ``"event"`` (each input event added to its
        window's output) or ``"auto"`` (event for a SpikeEvents or at most the setting
        ``conv_event_density_threshold`` (:mod:`pysrm.settings`) non-zero bins).  Ignored for device
        arrays.

    Returns
    -------
    ndarray or CUDA device array, shape (N, C, ceil(H/k), ceil(W/k), T)
        The pooled input, dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` is not float32/float64; ``k`` is not an integer; ``weight`` is not a number.
    ValueError
        ``x`` is not 5-D or holds non-finite values; ``k < 1``; ``weight`` is not finite or ``<= 0``;
        an unknown strategy.

    See Also
    --------
    pool_backward : the adjoint.

    Notes
    -----
    Both strategies add the same terms in the same order per output element (bitwise equal; tested).
    """
    if is_device_array(x):
        from . import pool_cuda
        return pool_cuda.pool(x, k, weight)
    shape, k, weight = _check(x, k, weight)
    check_strategy(strategy, STRATEGIES)
    N, C, H, W, T = shape
    ho, wo = pool_output_size(H, W, k)
    dtype = x.dtype
    out = np.zeros((N, C, ho, wo, T), dtype=dtype)
    if strategy == "auto":
        x = events_if_sparse(x, "conv")
    else:
        x = as_events(x) if strategy == "event" else as_dense(x)
    if isinstance(x, SpikeEvents):
        _pool_events_cpu(x.offsets, x.neuron, x.time, x.value, H, W, k, dtype.type(weight), out)
    else:
        _pool_dense_cpu(np.ascontiguousarray(x), k, dtype.type(weight), out)
    return out


def pool_backward(grad, input_shape, k: int, weight: float):
    r"""Adjoint of :func:`pool`: every input position receives its window's gradient.

    .. math::

        \frac{\partial\mathcal L}{\partial x[n, c, i_y, i_x, t]} =
            w_p\, g[n, c, \lfloor i_y/k\rfloor, \lfloor i_x/k\rfloor, t]

    Parameters
    ----------
    grad : ndarray or CUDA device array, shape (N, C, ceil(H/k), ceil(W/k), T)
        The loss gradient ``g`` with respect to the pool output, float32 or float64.
    input_shape : tuple of int
        The pool input's ``(N, C, H, W, T)``.
    k : int
        The window size and stride (pixels), >= 1.
    weight : float
        The fixed weight ``w_p``, > 0.

    Returns
    -------
    ndarray or CUDA device array, shape ``input_shape``
        The input gradient, dtype of ``grad``.

    Raises
    ------
    TypeError
        ``grad`` is not float32/float64; ``k`` is not an integer; ``weight`` is not a number.
    ValueError
        ``grad`` does not have the pool output shape or holds non-finite values; ``k < 1``; ``weight``
        is not finite or ``<= 0``.

    See Also
    --------
    pool : the forward.
    """
    if is_device_array(grad):
        from . import pool_cuda
        return pool_cuda.pool_backward(grad, input_shape, k, weight)
    k = positive_int("kernel", k)
    weight = positive("weight", weight)
    float_array("grad", grad, ndim=5)
    N, C, H, W, T = (int(s) for s in input_shape)
    expected = (N, C) + pool_output_size(H, W, k) + (T,)
    if grad.shape != expected:
        raise ValueError(f"grad has shape {grad.shape}; expected the pool output shape {expected}")
    gx = np.empty((N, C, H, W, T), dtype=grad.dtype)
    _pool_backward_cpu(np.ascontiguousarray(grad), k, grad.dtype.type(weight), gx)
    return gx
