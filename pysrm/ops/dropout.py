r"""Dropout of whole neurons: one mask per neuron for all time bins.

.. math::

    y[n, c, h, w, t] = m[n, c, h, w]\, x[n, c, h, w, t], \qquad
    m = \frac{[\,U > p\,]}{1 - p},\ U \sim \mathcal U(0, 1)

Backward with the same (fixed) mask: :math:`\partial\mathcal L/\partial x = m\, g`.
Linear in ``x`` for a fixed mask, so checked by finite differences.
"""
from __future__ import annotations

import numpy as np

from .._checks import float_array
from ..backend import is_device_array
from ._util import check_5d


def dropout_mask(shape, p: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """The mask :math:`m = [U > p]/(1-p)` for a tensor of ``shape`` ``(N, C, H, W, T)``: an array of shape
    ``shape[:-1]`` (one entry per neuron, for all time bins) with values 0 or ``1/(1-p)`` in ``dtype``,
    drawn from ``rng``.  ValueError unless ``0 <= p < 1``."""
    if not (0.0 <= float(p) < 1.0):
        raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
    keep = rng.random(tuple(shape[:-1])) >= p
    return (keep / (1.0 - p)).astype(dtype)


def dropout(x, mask):
    r"""Dropout of whole neurons: ``y[n, c, h, w, t] = mask[n, c, h, w] * x[n, c, h, w, t]``.

    ``x``: ``(N, C, H, W, T)`` float32/float64 (or a CUDA device array); ``mask``: ``(N, C, H, W)``
    (:func:`dropout_mask`).  Returns an array like ``x``.  ValueError for a mask of another shape or
    non-finite values."""
    if is_device_array(x):
        from . import dropout_cuda
        return dropout_cuda.dropout(x, mask)
    check_5d("x", x)
    float_array("mask", mask)
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"mask has shape {mask.shape}; expected one entry per neuron {x.shape[:-1]}")
    return x * mask[..., None].astype(x.dtype, copy=False)


def dropout_backward(grad, mask):
    r"""Adjoint of :func:`dropout` for the same mask: ``grad_x = mask[..., None] * grad`` (shapes and
    errors as :func:`dropout`)."""
    if is_device_array(grad):
        from . import dropout_cuda
        return dropout_cuda.dropout(grad, mask)
    return dropout(grad, mask)
