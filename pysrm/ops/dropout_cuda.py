r"""CUDA kernel of neuron dropout (see :mod:`pysrm.ops.dropout`).

.. math::

    y[n, c, h, w, t] = m[n, c, h, w]\, x[n, c, h, w, t]

The same kernel is the backward (``grad_x = m * grad``).  Thread mapping: one
thread per element of ``x`` in a grid-stride loop (``t`` fastest); the mask
index is the element index divided by ``T``.  A host mask (drawn with the
layer's NumPy generator, so CPU and GPU runs drop the same neurons) is copied
to the device once per call; a device mask is used as it is.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import cuda as dev


@cuda.jit(cache=True)
def _dropout_kernel(x, mask, T, out):
    n = x.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] * mask[i // T]


def dropout(x, mask):
    """Device version of :func:`pysrm.ops.dropout.dropout`: ``mask[..., None] * x``."""
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    if tuple(mask.shape) != shape[:-1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected one entry per neuron {shape[:-1]}")
    dt = np.dtype(x.dtype)
    if isinstance(mask, np.ndarray):
        m = dev.to_device(mask, dt)
    else:
        m = dev.astype(mask, dt)
    out = dev.empty(shape, dt)
    dev.launch(_dropout_kernel, x.size, x.reshape(x.size), m.reshape(m.size), shape[-1], out.reshape(out.size))
    return out


dropout_backward = dropout
