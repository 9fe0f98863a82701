r"""CUDA kernels of the optimiser updates (formulas in :mod:`pysrm.ops.optim`, the CPU twins).

Per element, the updates of SGD (with momentum), Adam and NAdam, weight decay and the clamp, as
written out in :mod:`pysrm.ops.optim` (the CPU twins of these kernels).

The scalars (including every ``1 - beta``, bias correction and NAdam factor)
are computed on the host in float64 by the same functions as the CPU kernels'
(:mod:`pysrm.ops.optim`) and rounded to the parameter dtype, and each kernel performs the same operations in
the same order in that dtype, so the device update equals NumPy's (to the
rounding of fused multiply-adds on a real GPU).

Thread mapping: one thread per parameter element in a grid-stride loop (flat
arrays); every update, weight decay and clamp is one fused kernel per
parameter.  :func:`nonfinite_flags` reduces one "has NaN/inf" flag per gradient (atomic
max, one thread per element) so the optimiser can refuse a bad step, naming
the parameter, with one small read back per step.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import cuda as dev
from .optim import _common, _moment_scalars, _nesterov_scalars  # the host-side scalars, shared


@cuda.jit(device=True, cache=True)
def _decayed(g, p, i, wd, use_wd):
    if use_wd:
        return g[i] + wd * p[i]
    return g[i]


@cuda.jit(device=True, cache=True)
def _moments(gi, m, v, i, b1, c1, b2, c2):
    # Adam's moment updates m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, in the CPU kernel's order
    mi = m[i] * b1
    mi = mi + c1 * gi
    m[i] = mi
    vi = v[i] * b2
    vi = vi + c2 * gi * gi
    v[i] = vi
    return mi, vi


@cuda.jit(cache=True)
def _sgd_kernel(p, g, v, lr, mu, use_mom, wd, use_wd, lower, use_lower):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = _decayed(g, p, i, wd, use_wd)
        if use_mom:
            vi = v[i] * mu
            vi = vi + gi
            v[i] = vi
            gi = vi
        q = p[i] - lr * gi
        if use_lower and q < lower:
            q = lower
        p[i] = q


@cuda.jit(cache=True)
def _adam_kernel(p, g, m, v, lr, b1, c1, b2, c2, bc1, bc2, eps, wd, use_wd, lower, use_lower):
    # c1 = 1 - b1, c2 = 1 - b2, bc1 = 1 - b1**k, bc2 = 1 - b2**k (all rounded to the dtype)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = _decayed(g, p, i, wd, use_wd)
        mi, vi = _moments(gi, m, v, i, b1, c1, b2, c2)
        mhat = mi / bc1
        vhat = vi / bc2
        q = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
        if use_lower and q < lower:
            q = lower
        p[i] = q


@cuda.jit(cache=True)
def _nadam_kernel(p, g, m, v, lr, b1, c1, b2, c2, bc2, mu_next, den_m, one_minus_mu, den_g, eps, wd, use_wd,
                  lower, use_lower):
    # den_m = 1 - prod * mu_next, den_g = 1 - prod, one_minus_mu = 1 - mu (all rounded to the dtype)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = _decayed(g, p, i, wd, use_wd)
        mi, vi = _moments(gi, m, v, i, b1, c1, b2, c2)
        vhat = vi / bc2
        upd = mu_next * mi / den_m + one_minus_mu * gi / den_g
        q = p[i] - lr * upd / (math.sqrt(vhat) + eps)
        if use_lower and q < lower:
            q = lower
        p[i] = q


def _flat(a):
    return a.reshape(a.size)


def sgd_update(p, g, v, lr, momentum, weight_decay=0.0, lower=None):
    """In-place SGD step on device arrays ``p`` (parameter), ``g`` (gradient), ``v`` (velocity)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    vv = _flat(v) if v is not None else _flat(p)
    dev.launch(_sgd_kernel, p.size, _flat(p), _flat(g), vv, dt(lr), dt(momentum), bool(momentum), wd, use_wd,
               lo, use_lower)


def adam_update(p, g, m, v, lr, b1, b2, eps, k, weight_decay=0.0, lower=None):
    """In-place Adam step ``k`` (1-based) on device arrays."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    dev.launch(_adam_kernel, p.size, _flat(p), _flat(g), _flat(m), _flat(v),
               *_moment_scalars(dt, lr, b1, b2, eps, k), wd, use_wd, lo, use_lower)


def nadam_update(p, g, m, v, lr, b1, b2, eps, k, mu, mu_next, mu_product, weight_decay=0.0, lower=None):
    """In-place NAdam step ``k`` on device arrays (``mu_product`` already includes ``mu``)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    lr_, b1_, c1, b2_, c2, _, bc2, eps_ = _moment_scalars(dt, lr, b1, b2, eps, k)
    dev.launch(_nadam_kernel, p.size, _flat(p), _flat(g), _flat(m), _flat(v), lr_, b1_, c1, b2_, c2, bc2,
               *_nesterov_scalars(dt, mu, mu_next, mu_product), eps_, wd, use_wd, lo, use_lower)


def all_finite(arrays) -> bool:
    """True when no device array in ``arrays`` holds a NaN or inf (one small device-to-host read)."""
    return not nonfinite_flags(list(arrays)).any()


def clamp(p, lower) -> None:
    """``p = max(p, lower)`` in place."""
    dev.maximum(p, lower)


@cuda.jit(cache=True)
def _nonfinite_flag_kernel(g, flag, j):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        x = g[i]
        if math.isnan(x) or math.isinf(x):
            cuda.atomic.max(flag, j, 1)


def nonfinite_flags(arrays) -> np.ndarray:
    """Host int32 array: 1 for each device array in ``arrays`` holding a NaN or inf (one small copy back)."""
    flag = dev.zeros((max(1, len(arrays)),), np.int32)
    for j, a in enumerate(arrays):
        dev.launch(_nonfinite_flag_kernel, a.size, _flat(a), flag, j)
    return flag.copy_to_host()[:len(arrays)]
