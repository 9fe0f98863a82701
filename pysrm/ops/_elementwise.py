r"""Per-element math written once and compiled for both targets: the CPU kernels
(``numba.njit``, inlined) and the CUDA kernels (``numba.cuda.jit(device=True)``).

Keeping one definition is what keeps the CPU and CUDA twins from drifting apart: the same operations in
the same order, so the two agree to the rounding of fused multiply-adds on a real GPU.

``sgd_element``, ``adam_element``
    the optimiser updates of :mod:`pysrm.ops.optim` (SGD with momentum; Adam, or NAdam with
    ``nesterov``), weight decay and clamp included, for one element: they take the element's values and
    return the new ones (formulas in :mod:`pysrm.optim`).
``surrogate_element``
    the surrogate derivative of the spike function times the incoming gradient,
    :math:`g\,\frac{s_\rho}{\tau_\rho\vartheta}\exp(-|u - \vartheta| / (\tau_\rho\vartheta))`
    (:mod:`pysrm.ops.spike`), given ``a = s_rho / (tau_rho theta)`` and ``inv_width = 1 / (tau_rho
    theta)``: the float64 CPU rows and every CUDA kernel (the float32 CPU rows use the vectorised
    exponential of :mod:`pysrm.ops._fastexp`).

The plain Python functions are the definitions; ``*_cpu`` below are their CPU forms, and the CUDA modules
(:mod:`pysrm.ops.optim_cuda`, :mod:`pysrm.ops.spike_cuda`, imported only for GPU arrays) compile the
same functions with ``cuda.jit(device=True)``.  Tests: ``tests/test_network.py`` (optimisers against
NumPy), ``tests/test_op_spike.py`` (surrogate against its formula), ``tests/test_cuda_ops.py`` (CUDA
against CPU under the simulator).
"""
from __future__ import annotations

import math
from collections import namedtuple

from numba import njit

#: the scalars of one Adam / NAdam step, rounded to the parameter dtype on the host
#: (:func:`pysrm.ops.optim.adam_step`): ``lr``, ``b1``, ``c1 = 1 - b1``, ``b2``, ``c2 = 1 - b2``,
#: ``bc1 = 1 - b1**k``, ``bc2 = 1 - b2**k``, ``eps``, the weight decay ``wd`` (``use_wd``), and NAdam's
#: (``nesterov``) ``mu_next``, ``den_m = 1 - prod * mu_next``, ``one_minus_mu = 1 - mu``, ``den_g = 1 - prod``
AdamStep = namedtuple("AdamStep", "lr b1 c1 b2 c2 bc1 bc2 eps wd use_wd nesterov mu_next den_m one_minus_mu den_g")


def sgd_element(p, g, v, lr, mu, use_mom, wd, use_wd, lower, use_lower):
    """SGD with optional momentum ``mu``, weight decay ``wd`` and clamp ``lower``: returns ``(p, v)``."""
    gi = g
    if use_wd:
        gi = gi + wd * p
    if use_mom:
        vi = v * mu
        vi = vi + gi
        v = vi
        gi = vi
    q = p - lr * gi
    if use_lower and q < lower:
        q = lower
    return q, v


def adam_element(p, g, m, v, st, lower, use_lower):
    """Adam (or NAdam with ``st.nesterov``) for one element: returns ``(p, m, v)``.  ``st``: the step's
    :data:`AdamStep` scalars (computed on the host, rounded to the dtype); ``lower`` the clamp when
    ``use_lower``."""
    lr, b1, c1, b2, c2, bc1, bc2, eps = st.lr, st.b1, st.c1, st.b2, st.c2, st.bc1, st.bc2, st.eps
    wd, use_wd, nesterov = st.wd, st.use_wd, st.nesterov
    mu_next, den_m, one_minus_mu, den_g = st.mu_next, st.den_m, st.one_minus_mu, st.den_g
    gi = g
    if use_wd:
        gi = gi + wd * p
    mi = m * b1
    mi = mi + c1 * gi
    vi = v * b2
    vi = vi + c2 * gi * gi
    vhat = vi / bc2
    if nesterov:
        upd = mu_next * mi / den_m + one_minus_mu * gi / den_g
    else:
        upd = mi / bc1
    q = p - lr * upd / (math.sqrt(vhat) + eps)
    if use_lower and q < lower:
        q = lower
    return q, mi, vi


def surrogate_element(g, u, theta, a, inv_width):
    """``g * a * exp(-|u - theta| * inv_width)``."""
    return g * a * math.exp(-abs(u - theta) * inv_width)


sgd_element_cpu = njit(inline="always", cache=True)(sgd_element)
adam_element_cpu = njit(inline="always", cache=True)(adam_element)
surrogate_element_cpu = njit(inline="always", cache=True)(surrogate_element)
