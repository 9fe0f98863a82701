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
import warnings

import numpy as np

from ._checks import positive
from .params import NeuronParams, SimParams


def alpha_response(tau: float, mult: float, ts: float, t_sample: float, tolerance: float = 0.01) -> np.ndarray:
    r"""Sample an alpha function on the simulation grid.

    .. math::

        a[k] = m \frac{k T_s}{\tau} e^{1 - k T_s/\tau}, \qquad k = 0, 1, \dots

    Sampling stops at (and excludes) the first sample with ``|a[k]| < tolerance`` and ``k Ts > tau``, or
    at ``t_sample`` (SLAYER-PyTorch's ``_calculateAlphaKernel``).

    Parameters
    ----------
    tau : float
        Time constant (ms); > 0.
    mult : float
        Peak value :math:`m` (reached at ``t = tau``), in the unit of the result.
    ts : float
        Bin width ``Ts`` (ms); > 0.
    t_sample : float
        Longest response (ms); > 0.  At most ``round(t_sample / ts)`` samples.
    tolerance : float, default 0.01
        Cut-off, in the unit of ``mult``; > 0.

    Returns
    -------
    ndarray, shape (K,), float64
        The samples from lag 0 (``a[0] = 0``); ``K`` follows from the cut.

    Raises
    ------
    TypeError
        ``tau``, ``ts``, ``t_sample`` or ``tolerance`` is not a number.
    ValueError
        ``tau``, ``ts``, ``t_sample`` or ``tolerance`` is not finite or not > 0.
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
    r"""Spike response (psp kernel) of the SRM neuron, sampled on the simulation grid.

    .. math::

        \epsilon[k] = \epsilon(k T_s), \qquad \epsilon(t) = \frac{t}{\tau_{sr}} e^{1 - t/\tau_{sr}}

    (SLAYER's SRM spike response), cut as the module docstring says.

    Parameters
    ----------
    neuron : NeuronParams
        ``tau_sr`` (ms) is used.
    sim : SimParams
        ``ts`` (ms, the bin width ``Ts``) and ``t_sample`` (ms, the longest response).
    tolerance : float, default 0.01
        Cut-off of the samples (unitless); > 0.

    Returns
    -------
    ndarray, shape (K,), float64
        :math:`\epsilon[0], \dots, \epsilon[K-1]` from lag 0 (unitless, peak 1 at ``t = tau_sr``).

    Raises
    ------
    TypeError, ValueError
        ``tolerance`` is not a number > 0 (as :func:`alpha_response`).
    """
    return alpha_response(neuron.tau_sr, 1.0, sim.ts, sim.t_sample, tolerance)


def refractory_kernel(neuron: NeuronParams, sim: SimParams, tolerance: float = 0.01) -> np.ndarray:
    r"""Refractory response of the SRM neuron, sampled on the simulation grid.

    .. math::

        \nu[k] = \nu(k T_s), \qquad \nu(t) = -s_{ref}\vartheta \frac{t}{\tau_{ref}} e^{1 - t/\tau_{ref}}

    (SLAYER's refractory response: added to the potential after each spike), cut as the module
    docstring says.

    Parameters
    ----------
    neuron : NeuronParams
        ``tau_ref`` (ms), ``scale_ref`` and ``theta`` are used.
    sim : SimParams
        ``ts`` (ms, the bin width ``Ts``) and ``t_sample`` (ms, the longest response).
    tolerance : float, default 0.01
        Cut-off of the samples, in the unit of the potential; > 0 (SLAYER's reference data used 1e-4).

    Returns
    -------
    ndarray, shape (K,), float64
        :math:`\nu[0], \dots, \nu[K-1]` from lag 0, in the unit of the potential (<= 0).

    Raises
    ------
    TypeError, ValueError
        ``tolerance`` is not a number > 0 (as :func:`alpha_response`).
    """
    return alpha_response(neuron.tau_ref, -neuron.scale_ref * neuron.theta, sim.ts, sim.t_sample, tolerance)


class SettingsWarning(UserWarning):
    """A setting that gives a working but degraded network (e.g. a time constant below the bin width ``Ts``)."""


def _alpha_peak_ratio_min(tolerance: float) -> float:
    """The largest ``x = Ts/tau >= 1`` whose first sample ``x e^(1-x)`` is still >= ``tolerance``."""
    lo, hi = 1.0, 2.0
    while hi * math.exp(1.0 - hi) >= tolerance:
        lo, hi = hi, 2.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid * math.exp(1.0 - mid) >= tolerance:
            lo = mid
        else:
            hi = mid
    return lo


def _ms_hint(name: str, tau: float, sim: SimParams) -> str:
    """'; times are in ms (did you mean 5?)' when ``tau`` looks like seconds typed for ms."""
    ms = tau * 1000.0
    if ms >= sim.ts and ms <= sim.t_sample:
        return f"; times are in ms (did you mean {name}={ms:g}?)"
    return "; times are in ms"


def check_responses(neuron: NeuronParams, sim: SimParams, srm_tolerance: float = 0.01,
                    ref_tolerance: float = 0.01, where: str = "", which=("tau_sr", "tau_ref")) -> list:
    r"""Check that the neuron's responses, sampled at ``sim.ts``, make a neuron that can work.

    The spike response :math:`\epsilon` and the refractory response :math:`\nu` are sampled at
    :math:`t = k T_s` (:func:`srm_kernel`, :func:`refractory_kernel`).  A time constant far below
    ``Ts`` (e.g. ``tau_sr=0.005``: 5 ms typed in seconds) gives a response of all zeros: no input
    ever moves the potential (``tau_sr``), or a neuron is never reset after a spike (``tau_ref``).
    That is an error.  A time constant below ``Ts`` (the response lasts a bin or two) or above
    ``t_sample`` (the response is cut at ``t_sample`` while still rising) gives a degraded
    network: a :class:`SettingsWarning`.

    Parameters
    ----------
    neuron : pysrm.params.NeuronParams
        ``tau_sr``, ``tau_ref`` (ms), ``scale_ref`` and ``theta`` are used.
    sim : pysrm.params.SimParams
        ``ts`` (ms, the bin width ``Ts``) and ``t_sample`` (ms).
    srm_tolerance, ref_tolerance : float, default 0.01
        The tolerances the responses are cut with (as for :func:`srm_kernel`, :func:`refractory_kernel`).
    where : str, default ""
        Added to the messages (e.g. ``" (test_t_sample)"``).
    which : tuple of str, default ("tau_sr", "tau_ref")
        The responses to check: ``"tau_sr"`` (spike response), ``"tau_ref"`` (refractory response).

    Returns
    -------
    list of str
        The warnings issued (each also as a :class:`SettingsWarning`); empty when all is well.

    Raises
    ------
    ValueError
        When a response sampled at ``Ts`` is all zeros; the message names the parameter, its value,
        the smallest value that works, and (for values that look like seconds) the value in ms.

    Warns
    -----
    SettingsWarning
        A time constant below ``Ts`` or above ``t_sample`` (one warning per message returned).
    """
    issued = []
    ref_peak = neuron.scale_ref * neuron.theta
    for name, tau, kernel, tol, peak in (
            ("tau_sr", neuron.tau_sr, srm_kernel(neuron, sim, srm_tolerance), srm_tolerance, 1.0),
            ("tau_ref", neuron.tau_ref, refractory_kernel(neuron, sim, ref_tolerance), ref_tolerance, ref_peak)):
        if name not in which:
            continue
        what = "spike response" if name == "tau_sr" else "refractory response"
        effect = ("no input ever moves the potential and no neuron can spike" if name == "tau_sr" else
                  "a neuron is never reset after a spike and fires in every bin while its potential is above theta")
        if not np.any(kernel):
            tau_min = sim.ts / _alpha_peak_ratio_min(tol / peak)
            raise ValueError(
                f"{name}={tau:g} ms is below Ts={sim.ts:g} ms{where}: its {what} sampled at Ts is all zeros "
                f"(no sample >= {tol:g}), so {effect}; expected {name} >= {tau_min:.3g} ms (better >= Ts = "
                f"{sim.ts:g} ms){_ms_hint(name, tau, sim)}")
        if tau < sim.ts:
            msg = (f"{name}={tau:g} ms is below Ts={sim.ts:g} ms{where}: its {what} sampled at Ts lasts "
                   f"{int(np.count_nonzero(kernel))} bin(s) and its largest sample is "
                   f"{np.max(np.abs(kernel)) / peak:.2g} of its peak; expected {name} >= Ts = {sim.ts:g} ms for a "
                   f"response the bins resolve{_ms_hint(name, tau, sim)}")
        elif tau > sim.t_sample:
            msg = (f"{name}={tau:g} ms is longer than t_sample={sim.t_sample:g} ms{where}: its {what} is cut at "
                   f"t_sample while still rising (largest sample {np.max(np.abs(kernel)) / peak:.2g} of its peak); "
                   f"expected {name} <= {sim.t_sample:g} ms (times are in ms)")
        else:
            continue
        issued.append(msg)
        warnings.warn(msg, SettingsWarning, stacklevel=1)  # one place: each message shown once
    return issued
