r"""CPU kernels of the optimiser updates (formulas in :mod:`pysrm.optim`; CUDA twins in :mod:`.optim_cuda`).

Per element :math:`i` of a parameter :math:`\theta` with gradient :math:`g`
(plus :math:`\lambda\theta` with weight decay) and step :math:`k`:

* SGD, momentum :math:`\mu`: :math:`v \leftarrow \mu v + g`, :math:`\theta \leftarrow \theta - \eta v`
  (:math:`\theta \leftarrow \theta - \eta g` without momentum);
* Adam: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\theta \leftarrow \theta - \eta\,\hat m/(\sqrt{\hat v} + \epsilon)` with
  :math:`\hat m = m/(1-\beta_1^k)`, :math:`\hat v = v/(1-\beta_2^k)`;
* NAdam: as Adam with
  :math:`\theta \leftarrow \theta - \eta\bigl[\mu_{k+1} m/(1-\Pi\mu_{k+1}) + (1-\mu_k) g/(1-\Pi)\bigr]/(\sqrt{\hat v}+\epsilon)`,
  :math:`\Pi = \prod_{j\le k}\mu_j`;

then the clamp :math:`\theta \leftarrow \max(\theta, \text{lower})` when the parameter has one.

One fused pass per parameter, parallel over elements, instead of NumPy's ten
or so whole-array passes with temporaries: on the N-MNIST dense network (1.2 M
weights) the Adam step went from about 2.5 ms to a fraction of that on 2 cores
(benchmarks/RESULTS.md).  The scalars (every ``1 - beta``, bias correction and
NAdam factor) are computed in float64 on the host and rounded to the parameter
dtype, and every operation runs in that dtype in the same order as the NumPy
expressions they replace (``tests/reference.py`` keeps those; the tests compare)
and as the CUDA kernels.  :func:`all_finite` is the "refuse NaN/inf gradients"
check as one parallel read.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._elementwise import AdamStep, adam_element_cpu, sgd_element_cpu

# The update kernels are plain ``prange`` loops with the weight decay and clamp written inline: LLVM then
# vectorises them (0.2 ms for Adam on 1.2 M float32 weights, 2 threads); the same body in chunked loops
# with a helper function for the decay ran ten times slower (not vectorised).

@njit(parallel=True, cache=True)
def _sgd_cpu(p, g, v, lr, mu, use_mom, wd, use_wd, lower, use_lower):
    # (pysrm.ops._elementwise.sgd_element, the CUDA kernel's too; v is only written with momentum)
    for i in prange(p.shape[0]):
        q, vi = sgd_element_cpu(p[i], g[i], v[i], lr, mu, use_mom, wd, use_wd, lower, use_lower)
        if use_mom:
            v[i] = vi
        p[i] = q


@njit(parallel=True, cache=True)
def _adam_cpu(p, g, m, v, st, lower, use_lower):
    # Adam, or NAdam with st.nesterov (pysrm.ops._elementwise.adam_element, the CUDA kernels' too)
    for i in prange(p.shape[0]):
        p[i], m[i], v[i] = adam_element_cpu(p[i], g[i], m[i], v[i], st, lower, use_lower)


@njit(parallel=True, cache=True)
def _count_nonfinite_cpu(g):
    bad = 0
    for i in prange(g.shape[0]):
        x = g[i]
        bad += 0 if x - x == 0 else 1   # NaN and +-inf give NaN for x - x
    return bad


def _flat(a):
    if not a.flags.c_contiguous:
        raise ValueError(f"optimiser arrays must be C-contiguous; got an array of shape {a.shape} "
                         f"with strides {a.strides}")
    return a.reshape(a.size)


def _common(p, lower, weight_decay):
    """(dtype constructor, lower, use_lower, weight decay, use_wd) of a parameter; shared with optim_cuda."""
    dt = np.dtype(p.dtype).type
    use_lower = lower is not None
    return dt, dt(lower if use_lower else 0.0), use_lower, dt(weight_decay), bool(weight_decay)


def _moment_scalars(dt, lr, b1, b2, eps, k):
    """(lr, b1, 1 - b1, b2, 1 - b2, 1 - b1**k, 1 - b2**k, eps) computed in float64 and rounded to the
    parameter dtype, as the NumPy formulas do; shared with optim_cuda so both round alike."""
    return dt(lr), dt(b1), dt(1 - b1), dt(b2), dt(1 - b2), dt(1 - b1 ** k), dt(1 - b2 ** k), dt(eps)


def _nesterov_scalars(dt, mu, mu_next, mu_product):
    """NAdam's (mu_next, 1 - prod * mu_next, 1 - mu, 1 - prod), rounded to the dtype (prod includes mu)."""
    prod = float(mu_product)
    return dt(mu_next), dt(1 - prod * mu_next), dt(1 - mu), dt(1 - prod)


def adam_step(dt, lr, b1, b2, eps, k, wd, use_wd, nesterov=None) -> AdamStep:
    """The :data:`~pysrm.ops._elementwise.AdamStep` scalars of Adam step ``k`` (1-based) in the dtype
    constructor ``dt``; ``nesterov``: ``(mu, mu_next, mu_product)`` for NAdam, else None.  Shared with
    :mod:`pysrm.ops.optim_cuda` so that both round alike."""
    if nesterov is None:
        return AdamStep(*_moment_scalars(dt, lr, b1, b2, eps, k), wd, use_wd, False, dt(0.0), dt(1.0), dt(0.0),
                        dt(1.0))
    return AdamStep(*_moment_scalars(dt, lr, b1, b2, eps, k), wd, use_wd, True, *_nesterov_scalars(dt, *nesterov))


def all_finite(g) -> bool:
    """True when the array ``g`` holds no NaN or inf."""
    return _count_nonfinite_cpu(_flat(g)) == 0


def sgd_update(p, g, v, lr, momentum, weight_decay=0.0, lower=None):
    """In-place SGD step on ``p`` (parameter), ``g`` (gradient), ``v`` (velocity; unused without momentum)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    vv = _flat(v) if v is not None else _flat(p)
    _sgd_cpu(_flat(p), _flat(g), vv, dt(lr), dt(momentum), bool(momentum), wd, use_wd, lo, use_lower)


def adam_update(p, g, m, v, lr, b1, b2, eps, k, weight_decay=0.0, lower=None):
    """In-place Adam step ``k`` (1-based)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    _adam_cpu(_flat(p), _flat(g), _flat(m), _flat(v), adam_step(dt, lr, b1, b2, eps, k, wd, use_wd), lo, use_lower)


def nadam_update(p, g, m, v, lr, b1, b2, eps, k, mu, mu_next, mu_product, weight_decay=0.0, lower=None):
    """In-place NAdam step ``k`` (``mu_product`` already includes ``mu``)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    _adam_cpu(_flat(p), _flat(g), _flat(m), _flat(v),
              adam_step(dt, lr, b1, b2, eps, k, wd, use_wd, (mu, mu_next, mu_product)), lo, use_lower)
