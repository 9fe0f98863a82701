r"""Gradient verification by central finite differences (float64).

For an op :math:`y = f(\theta)` and a random probe :math:`R`, the scalar
:math:`\mathcal L = \sum y \odot R` has the analytic gradient that the op's
backward computes from ``grad = R``; it is compared with

.. math::

    \frac{\partial\mathcal L}{\partial\theta_j} \approx
    \frac{\mathcal L(\theta + h e_j) - \mathcal L(\theta - h e_j)}{2h}

The reported error is ``max_j |analytic_j - numeric_j| / max(max_j |numeric_j|, 1e-12)``.
Every differentiable op (psp, dense, conv, pool, delay, dropout with a fixed
mask) is checked with respect to its inputs and parameters, in every strategy
(``plain``, ``event``, ``blas``, ``recursive``: the ops' ``strategy=``), and so is every loss (from
:func:`pysrm.losses.gradcheck_cases`).  The spike function is not
differentiable: its surrogate is checked against its formula instead
(``spike.surrogate``).

Use ``pysrm gradcheck`` on the command line or :func:`run_all` here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import functional as F
from .events import SpikeEvents
from .params import NeuronParams, SimParams

TOLERANCE = 1e-6


def numeric_gradient(f, x: np.ndarray, h: float = 1e-6, indices=None) -> np.ndarray:
    """Central differences of the scalar function ``f()`` w.r.t. the array ``x`` (modified in place, restored)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    idx = range(flat.size) if indices is None else indices
    for j in idx:
        old = flat[j]
        flat[j] = old + h
        fp = f()
        flat[j] = old - h
        fm = f()
        flat[j] = old
        gflat[j] = (fp - fm) / (2 * h)
    return g


def relative_error(analytic, numeric) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(float(np.abs(numeric).max(initial=0.0)), 1e-12)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


@dataclass
class CheckResult:
    name: str
    wrt: str
    error: float
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)


def _spikes(rng, shape, p=0.2):
    """Real-valued sparse test input: zeros, spikes and arbitrary values mixed."""
    x = np.where(rng.random(shape) < p, rng.normal(size=shape), 0.0)
    x[..., 0] += 1.0  # a dense column
    return x


def _check_linear(name, forward, backward_fn, wrts, rng):
    """``forward()`` returns y; ``backward_fn(R)`` returns dict wrt -> analytic gradient."""
    y = forward()
    R = rng.normal(size=y.shape)
    analytic = backward_fn(R)
    results = []
    for wrt, arr in wrts.items():
        num = numeric_gradient(lambda: float(np.sum(forward() * R)), arr)
        results.append(CheckResult(name, wrt, relative_error(analytic[wrt], num)))
    return results


def check_psp(rng):
    """The recursive (alpha response) and the direct (any response) paths."""
    eps = F.srm_kernel(NeuronParams(tau_sr=2.0), SimParams(1.0, 20.0))
    other = eps + np.linspace(0.0, 0.1, eps.size)  # not an alpha function: plain only
    x = _spikes(rng, (2, 3, 20))
    results = []
    for name, k, st in (("psp[recursive]", eps, "recursive"), ("psp[plain]", eps, "plain"),
                        ("psp[plain, any response]", other, "plain")):
        results += _check_linear(name, lambda k=k, st=st: F.psp(x, k, 0.5, strategy=st),
                                 lambda R, k=k, st=st: {"x": F.psp_backward(R, k, 0.5, strategy=st)}, {"x": x}, rng)
    return results


def check_dense(rng, strategy: str):
    x = _spikes(rng, (2, 3, 2, 2, 6), 0.1)
    w = rng.normal(size=(4, 12))

    def bwd(R):
        gx, gw = F.dense_backward(w, x, R, strategy=strategy)
        return {"x": gx, "w": gw}
    return _check_linear(f"dense[{strategy}]", lambda: F.dense(w, x, strategy=strategy), bwd, {"x": x, "w": w}, rng)


def check_conv(rng, strategy: str, stride=1, padding=1):
    x = _spikes(rng, (2, 2, 5, 6, 4), 0.15)
    w = rng.normal(size=(3, 2, 3, 3))

    def bwd(R):
        gx, gw = F.conv_backward(w, x, R, stride, padding, strategy=strategy)
        return {"x": gx, "w": gw}
    return _check_linear(f"conv[{strategy}, s{stride} p{padding}]",
                         lambda: F.conv(w, x, stride, padding, strategy=strategy), bwd, {"x": x, "w": w}, rng)


def check_pool(rng, strategy: str):
    x = _spikes(rng, (2, 2, 5, 4, 3))
    return _check_linear(f"pool[{strategy}, k2, odd edge]", lambda: F.pool(x, 2, 11.0, strategy=strategy),
                         lambda R: {"x": F.pool_backward(R, x.shape, 2, 11.0)}, {"x": x}, rng)


def check_delay(rng, strategy: str):
    x = _spikes(rng, (2, 3, 2, 1, 12), 0.5)
    d = rng.uniform(0.1, 3.0, size=(3, 2, 1))
    d[0, 0, 0] = 1.3  # keep every delay away from integers (kinks of the interpolation)
    d = np.round(d * 10) / 10 + 0.05

    def bwd(R):
        gx, gd = F.delay_backward(R, x, d, 0.5, strategy=strategy)
        return {"x": gx, "d": gd}
    return _check_linear(f"delay[{strategy}]", lambda: F.delay(x, d, 0.5), bwd, {"x": x, "d": d}, rng)


def check_dropout(rng):
    x = _spikes(rng, (2, 3, 2, 2, 5))
    mask = F.dropout_mask(x.shape, 0.3, rng, np.float64)
    return _check_linear("dropout[fixed mask]", lambda: F.dropout(x, mask),
                         lambda R: {"x": F.dropout_backward(R, mask)}, {"x": x}, rng)


def op_checks(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    results = []
    results += check_psp(rng)
    for strategy in ("plain", "event", "blas"):
        results += check_dense(rng, strategy)
        results += check_conv(rng, strategy)
    for strategy in ("plain", "event"):
        results += check_conv(rng, strategy, stride=2, padding=2 if strategy == "event" else 0)
        results += check_pool(rng, strategy)
        results += check_delay(rng, strategy)
    results += check_dropout(rng)
    return results


def loss_checks() -> list:
    try:
        from .losses import gradcheck_cases
    except ImportError:  # pragma: no cover - losses always ship with pysrm
        return []
    return [CheckResult(name, "spikes", float(fn())) for name, fn in gradcheck_cases()]


def run_all(seed: int = 0) -> list:
    """All op and loss checks; a list of :class:`CheckResult`."""
    return op_checks(seed) + loss_checks()


def format_table(results) -> str:
    lines = [f"{'check':<32} {'w.r.t.':<8} {'max rel. error':>15}  {'tol':>7}  result",
             "-" * 74]
    for r in results:
        lines.append(f"{r.name:<32} {r.wrt:<8} {r.error:>15.3e}  {r.tolerance:>7.0e}  {'ok' if r.passed else 'FAIL'}")
    return "\n".join(lines)
