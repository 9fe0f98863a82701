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
    r"""The mask :math:`m = [U > p]/(1-p)`, :math:`U \sim \mathcal U(0, 1)`, one entry per neuron.

    Parameters
    ----------
    shape : tuple of int
        The shape ``(N, C, H, W, T)`` of the tensor to drop out.
    p : float
        The dropout probability, ``0 <= p < 1``.
    rng : numpy.random.Generator
        The source of ``U`` (``shape[:-1]`` draws).
    dtype : numpy dtype, default float32
        The mask's dtype (float32 or float64).

    Returns
    -------
    ndarray, shape (N, C, H, W)
        Values 0 or ``1/(1-p)`` in ``dtype``, for all time bins of a neuron.

    Raises
    ------
    ValueError
        ``p`` is not in ``[0, 1)``.
    """
    if not (0.0 <= float(p) < 1.0):
        raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
    keep = rng.random(tuple(shape[:-1])) >= p
    return (keep / (1.0 - p)).astype(dtype)


def dropout(x, mask):
    r"""Dropout of whole neurons with a fixed mask.

    .. math::

        y[n, c, h, w, t] = m[n, c, h, w]\, x[n, c, h, w, t]

    Parameters
    ----------
    x : ndarray or CUDA device array, shape (N, C, H, W, T)
        The input, float32 or float64.
    mask : ndarray or CUDA device array, shape (N, C, H, W)
        The mask (:func:`dropout_mask`), float32 or float64 (cast to ``x``'s dtype).

    Returns
    -------
    ndarray or CUDA device array
        Shape and dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` or ``mask`` is not a float32/float64 ndarray.
    ValueError
        ``x`` is not 5-D, ``mask`` does not have shape ``x.shape[:-1]``, or non-finite values.

    See Also
    --------
    dropout_backward : the adjoint.
    """
    if is_device_array(x):
        from . import dropout_cuda
        return dropout_cuda.dropout(x, mask)
    check_5d("x", x)
    float_array("mask", mask)
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"mask has shape {mask.shape}; expected one entry per neuron {x.shape[:-1]}")
    return x * mask[..., None].astype(x.dtype, copy=False)


def dropout_backward(grad, mask):
    r"""Adjoint of :func:`dropout` for the same mask: :math:`\partial\mathcal L/\partial x = m\, g`.

    i.e. ``grad_x[n, c, h, w, t] = mask[n, c, h, w] * grad[n, c, h, w, t]``.

    Parameters
    ----------
    grad : ndarray or CUDA device array, shape (N, C, H, W, T)
        The loss gradient ``g`` with respect to the dropout output, float32 or float64.
    mask : ndarray or CUDA device array, shape (N, C, H, W)
        The forward's mask.

    Returns
    -------
    ndarray or CUDA device array
        The input gradient: shape and dtype of ``grad``.

    Raises
    ------
    TypeError
        ``grad`` or ``mask`` is not a float32/float64 ndarray.
    ValueError
        ``grad`` is not 5-D, ``mask`` does not have shape ``grad.shape[:-1]``, or non-finite values.
    """
    if is_device_array(grad):
        from . import dropout_cuda
        return dropout_cuda.dropout(grad, mask)
    return dropout(grad, mask)
