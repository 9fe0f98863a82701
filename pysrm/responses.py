r"""Response functions of the SRM neuron, sampled on the simulation grid.

("kernel" in the rest of pysrm means a compute kernel; these are *responses*,
but the SLAYER names ``srm_kernel``/``refractory_kernel`` are kept.)

Both responses are alpha functions sampled at :math:`t = 0, T_s, 2T_s, \dots`
(lag 0 included) and computed in float64:

.. math::

    \epsilon(t) = \frac{t}{\tau_{sr}} e^{1 - t/\tau_{sr}}, \qquad
    \nu(t) = -s_{ref}\vartheta \frac{t}{\tau_{ref}} e^{1 - t/\tau_{ref}}

Sampling stops at (and excludes) the first sample with ``|value| < tolerance``
and ``t > tau`` -- exactly SLAYER-PyTorch's ``_calculateAlphaKernel``.
The tolerance is 0.01 by default for both; the original SLAYER reference data
used ``1e-4`` for the refractory response.
"""
from __future__ import annotations

import math

import numpy as np

from ._checks import positive
from .params import NeuronParams, SimParams


def alpha_response(tau: float, mult: float, ts: float, t_sample: float, tolerance: float = 0.01) -> np.ndarray:
    r"""Sample ``mult * t/tau * exp(1 - t/tau)`` at ``t = k*ts`` (float64).

    Stops at the first sample with ``|value| < tolerance`` and ``t > tau``,
    or at ``t_sample``.
    """
    tau = positive("tau", tau)
    ts = positive("ts", ts)
    t_sample = positive("t_sample", t_sample)
    tolerance = positive("tolerance", tolerance)
    values = []
    n = int(round(t_sample / ts))
    for k in range(n):
        t = k * ts
        v = mult * t / tau * math.exp(1.0 - t / tau)
        if abs(v) < tolerance and t > tau:
            break
        values.append(v)
    return np.asarray(values, dtype=np.float64)


def srm_kernel(neuron: NeuronParams, sim: SimParams, tolerance: float = 0.01) -> np.ndarray:
    r"""Spike response :math:`\epsilon[k] = \epsilon(k T_s)`, :math:`\epsilon(t) = \frac{t}{\tau_{sr}}
    e^{1 - t/\tau_{sr}}` (SLAYER's SRM spike response; ``tau_sr`` in ms), sampled from lag 0 on the
    grid of ``sim.ts`` ms: a 1-D float64 array (unitless), cut as the module docstring says.
    ValueError/TypeError for non-positive ``tau_sr``, ``ts``, ``t_sample`` or ``tolerance``."""
    return alpha_response(neuron.tau_sr, 1.0, sim.ts, sim.t_sample, tolerance)


def refractory_kernel(neuron: NeuronParams, sim: SimParams, tolerance: float = 0.01) -> np.ndarray:
    r"""Refractory response :math:`\nu[k] = \nu(k T_s)`, :math:`\nu(t) = -s_{ref}\vartheta \frac{t}{\tau_{ref}}
    e^{1 - t/\tau_{ref}}` (SLAYER's refractory response; added to the potential after each spike),
    sampled from lag 0 on the grid of ``sim.ts`` ms: a 1-D float64 array in units of the potential
    (negative).  Errors as :func:`srm_kernel`."""
    return alpha_response(neuron.tau_ref, -neuron.scale_ref * neuron.theta, sim.ts, sim.t_sample, tolerance)
