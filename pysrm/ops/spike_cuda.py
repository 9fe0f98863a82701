r"""CUDA kernels of spike generation and its surrogate (see :mod:`pysrm.ops.spike`).

Forward (sequential in time within a row, parallel over rows):

.. math::

    s[t] = \tfrac{1}{T_s}[u[t] \ge \vartheta],\qquad u[t+j] \mathrel{+}= \nu[j]\ (j\ge 0)\ \text{when } s[t]\ne 0

Backward (elementwise surrogate on the post-refractory potential):

.. math::

    g_u[t] = g_s[t]\, \frac{s_\rho}{\tau_\rho\vartheta}\exp\!\left(-\frac{|u[t]-\vartheta|}{\tau_\rho\vartheta}\right)

Thread mapping.  Forward: ``u`` is first copied to ``u_post`` (one thread per
element, coalesced); then one thread per row (neuron) scans its ``T`` bins in
order and adds the refractory response in place with the CPU kernel's row scan
(``pysrm.ops._primitives.spike_scan_row``: same order of additions, the same firing threshold :func:`pysrm.ops.spike.firing_threshold`
and amplitude in the input dtype, so the spike trains are identical for identical potentials).
The surrogate is :func:`pysrm.ops._elementwise.surrogate_element`, the CPU's float64 function.  Backward: one thread per
element in a grid-stride loop.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import cuda as dev
from .._checks import positive
from ._util import response_as
from ._elementwise import surrogate_element
from . import _primitives_cuda as prim
from .spike import firing_threshold


@cuda.jit(cache=True)
def _spike_kernel(u, nu, theta, amp, s):
    # u: (rows, T) potential, modified in place; s: (rows, T) zeros on entry; one thread per row scans it
    # with the CPU's primitive (pysrm.ops._primitives.spike_scan_row)
    rows = u.shape[0]
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        prim.spike_scan_row(u[r], s[r], nu, theta, amp)


_surrogate_element = cuda.jit(device=True, cache=True)(surrogate_element)  # the CPU's per-element function


@cuda.jit(cache=True)
def _spike_backward_kernel(g, u, theta, a, inv_width, out):
    # a = scale_rho / width and inv_width = 1 / width, computed as the CPU computes them
    n = g.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = _surrogate_element(g[i], u[i], theta, a, inv_width)


def spike(u, refractory_kernel, theta: float, ts: float):
    """Device version of :func:`pysrm.ops.spike.spike`: returns ``(s, u_post)``; ``u`` is not modified."""
    theta = positive("theta", theta)
    ts = positive("ts", ts)
    dt = np.dtype(u.dtype)
    nu = dev.constant(response_as("refractory_kernel", refractory_kernel, dt))
    T = tuple(u.shape)[-1]
    rows = u.size // T if T else 0
    u_post = dev.copy_new(u)
    s = dev.zeros(u.shape, dt)
    dev.launch(_spike_kernel, rows, u_post.reshape(rows, T), nu, firing_threshold(theta, dt), dt.type(1.0 / ts),
               s.reshape(rows, T))
    return s, u_post


def spike_backward(grad_s, u, neuron):
    """Device version of :func:`pysrm.ops.spike.spike_backward`: ``grad_s * rho(u)``."""
    if tuple(grad_s.shape) != tuple(u.shape):
        raise ValueError(f"grad_s has shape {tuple(grad_s.shape)} but u has shape {tuple(u.shape)}; they must match")
    dt = np.dtype(grad_s.dtype)
    u = dev.astype(u, dt)
    out = dev.empty(grad_s.shape, dt)
    width = neuron.tau_rho * neuron.theta
    scale, w = dt.type(neuron.scale_rho), dt.type(width)
    dev.launch(_spike_backward_kernel, grad_s.size, grad_s.reshape(grad_s.size), u.reshape(u.size),
               dt.type(neuron.theta), scale / w, dt.type(1.0) / w, out.reshape(out.size))
    return out


def surrogate(u, neuron):
    """The surrogate derivative ``rho(u)`` on the device."""
    ones = dev.empty(u.shape, u.dtype)
    dev.fill(ones, 1.0)
    return spike_backward(ones, u, neuron)
