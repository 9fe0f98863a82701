r"""Spike generation with refractory response, and its surrogate derivative.

Forward (SLAYER's ``getSpikes``): scan time forward; wherever the membrane
potential reaches the threshold a spike of amplitude :math:`1/T_s` is emitted
and the refractory response is added to the potential from that bin on, in
place, so later bins see it:

.. math::

    s[t] = \frac{1}{T_s}\,[u[t] \ge \vartheta], \qquad
    u[t+j] \mathrel{+}= \nu[j] \ \ (j \ge 0) \text{ when } s[t] \ne 0

The returned potential is the one *after* all refractory responses were added.

Exact ties.  The potential reaches the threshold exactly in exact arithmetic whenever the weights and
responses line up (an input spike through weight :math:`\vartheta` at the lag where
:math:`\epsilon = 1`, i.e. :math:`t = \tau_{sr}`); computed, it lands a few ulps above or below
:math:`\vartheta` depending on the psp strategy (direct sum or recursion), the summation order of the
synapse and the dtype.  So that such ties spike whatever ran, the test is

.. math::

    u[t] \ge \vartheta\,(1 - r_{\text{tie}}),\qquad r_{\text{tie}} = 2^{-17} \approx 7.6\cdot 10^{-6}
    \text{ (float32)},\quad 2^{-40} \approx 9.1\cdot 10^{-13} \text{ (float64)}

(:func:`firing_threshold`; :data:`TIE_RTOL`), far below any physical scale and above the rounding of
the psp paths (tested on a sweep of exact ties).  Every spike scan of pysrm, CPU and CUDA, fused or
not, compares with this value; the surrogate below uses :math:`\vartheta` itself.

Backward (surrogate; the spike function is not differentiable):

.. math::

    \frac{\partial\mathcal L}{\partial u[t]} = \frac{\partial\mathcal L}{\partial s[t]}\,
    \rho(u[t]),\qquad
    \rho(u) = \frac{s_\rho}{\tau_\rho\vartheta}\,
    \exp\!\left(-\frac{|u - \vartheta|}{\tau_\rho \vartheta}\right)

evaluated on the potential after the refractory responses; no gradient flows
through the refractory feedback (as in SLAYER).  This surrogate is tested
against its formula, not by finite differences.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

from .._checks import positive
from ..backend import is_device_array
from ._fastexp import rho_row
from ._primitives import add_response_column_cpu, fires_cpu, spike_scan_row_cpu
from ._util import as_rows, response_as

#: relative tolerance of the threshold test per dtype (module docstring, "Exact ties")
TIE_RTOL = {np.dtype(np.float32): 2.0 ** -17, np.dtype(np.float64): 2.0 ** -40}


def firing_threshold(theta: float, dtype) -> float:
    r"""The value a potential of ``dtype`` is compared with: ``theta * (1 - TIE_RTOL[dtype])``.

    .. math::

        \vartheta_{\text{fire}} = \vartheta\,(1 - r_{\text{tie}}),\qquad r_{\text{tie}} = 2^{-17}
        \text{ (float32)},\ 2^{-40} \text{ (float64)}

    Parameters
    ----------
    theta : float
        The threshold :math:`\vartheta`, in the potential's unit.
    dtype : numpy dtype or type
        float32 or float64: the dtype of the potential.

    Returns
    -------
    numpy.float32 or numpy.float64
        The firing threshold rounded to ``dtype`` (the potential's unit).

    Raises
    ------
    KeyError
        ``dtype`` is neither float32 nor float64.
    """
    dt = np.dtype(dtype)
    return dt.type(float(theta) * (1.0 - TIE_RTOL[dt]))


@njit(parallel=True, cache=True)
def _spike_cpu(u_in, nu, theta, amp, u, s):
    # per row: u = u_in, s = 0, then the scan of the row (pysrm.ops._primitives.spike_scan_row: in bin
    # order, u[t] >= theta spikes and adds nu to u[t:t+L]).  u and s are written completely here (one pass,
    # the row in cache): no separate copy / zero fill.
    # (Skipping 16-bin blocks below theta was tried: 1.5x on 0.6 % spikes, no gain at the 2.6 % of
    # the N-MNIST hidden layer, so the plain scan stays.)
    rows, T = u_in.shape
    for r in prange(rows):
        ur = u[r]
        sr = s[r]
        ui = u_in[r]
        for t in range(T):
            ur[t] = ui[t]
            sr[t] = 0.0
        spike_scan_row_cpu(ur, sr, nu, theta, amp)


# --------------------------------------------------------------------------- time-major scan (fused blocks)
# The fused CPU blocks (pysrm.blocks.dense_srm's first layer, pysrm.blocks.conv) keep a sample time-major, a row per
# time bin of M neurons; their spike scan runs bin by bin with these two functions (over the primitives
# fires and add_response of pysrm.ops._primitives).  Per neuron the operations and their order are _spike_cpu's (the threshold test of a bin, then nu added to its following
# bins), so the spikes and potentials are bitwise the op's (tested through the blocks).

@njit(cache=True)
def flag_words(flag, M):
    """The ``uint64`` words of the flag bytes ``flag[:8 ceil(M/8)]`` (eight neurons' flags per word), with
    the bytes after neuron ``M - 1`` zeroed (they stay 0: only the first ``M`` are ever set)."""
    nw = (M + 7) // 8
    for j in range(M, 8 * nw):
        flag[j] = 0
    return flag[:8 * nw].view(np.uint64)


@njit(cache=True)
def scan_bin_time_major(buf, t, nu, theta, flag, words, found):
    """The spike scan of bin ``t`` of a time-major potential ``buf`` ``(T, M)``, in place.

    Neuron ``j`` spikes where ``buf[t, j] >= theta`` (the firing threshold, :func:`firing_threshold`); the
    refractory response ``nu`` is then added to its bins ``t .. t + len(nu) - 1`` (within ``T``).  The test
    of the whole bin is vectorised into the flag bytes ``flag`` (``words``: :func:`flag_words`), then only
    the spiking neurons are visited, ascending.  Their indices go to ``found[:k]``; returns ``k``.
    """
    row = buf[t]
    M = row.shape[0]
    for j in range(M):
        flag[j] = fires_cpu(row[j], theta)
    k = 0
    for w in range(words.shape[0]):
        bits = words[w]
        while bits != 0:
            j = 8 * w + (trailing_zeros(bits) >> 3)
            bits &= bits - np.uint64(1)
            found[k] = j
            k += 1
            add_response_column_cpu(buf, t, j, nu)
    return k


@njit(parallel=True, cache=True)
def _spike_backward_cpu(g, u, theta, scale, width, out):
    rows, T = g.shape
    a = scale / width
    inv_width = g.dtype.type(1.0) / width
    B = 64  # rows per parallel task: one scratch row per task, not per row
    for c in prange((rows + B - 1) // B):
        scratch = np.empty(T, dtype=np.int32)
        for r in range(c * B, min(rows, c * B + B)):
            rho_row(g[r], u[r], theta, a, inv_width, out[r], scratch)


def spike(u, refractory_kernel, theta: float, ts: float):
    r"""Spikes of potential ``u`` with the refractory response (SLAYER's ``getSpikes``).

    Scan time forward; where the potential reaches the threshold a spike of amplitude ``1/Ts`` is
    emitted and the refractory response is added from that bin on (module docstring):

    .. math::

        s[t] = \frac{1}{T_s}\,[u[t] \ge \vartheta\,(1 - r_{\text{tie}})], \qquad
        u[t+j] \mathrel{+}= \nu[j] \ \ (j \ge 0) \text{ when } s[t] \ne 0

    Parameters
    ----------
    u : ndarray or CUDA device array, shape (..., T)
        The membrane potential (its own unit), time last, any leading shape; float32 or float64.  Not
        modified.
    refractory_kernel : array_like, shape (K,)
        :math:`\nu` sampled from lag 0 (:func:`pysrm.responses.refractory_kernel`), the potential's
        unit; cast to ``u``'s dtype.
    theta : float
        The threshold :math:`\vartheta`, the potential's unit; > 0 (compared as
        :func:`firing_threshold`).
    ts : float
        The time step ``Ts`` in ms; > 0.

    Returns
    -------
    s : ndarray or CUDA device array
        Spikes of amplitude ``1/ts`` (0 elsewhere): shape and dtype of ``u``.
    u_post : ndarray or CUDA device array
        The potential after the refractory responses were added: shape and dtype of ``u``.

    Raises
    ------
    TypeError
        ``u`` is not a float32/float64 ndarray, or ``theta``/``ts`` is not a number.
    ValueError
        ``u`` has no axis or non-finite values; the kernel is empty, not 1-D or non-finite; ``theta`` or
        ``ts`` is not finite or ``<= 0``.

    See Also
    --------
    spike_backward : the surrogate backward.
    """
    if is_device_array(u):
        from . import spike_cuda
        return spike_cuda.spike(u, refractory_kernel, theta, ts)
    theta = positive("theta", theta)
    ts = positive("ts", ts)
    u_in = as_rows("u", u)
    nu = response_as("refractory_kernel", refractory_kernel, u.dtype)
    rows = np.empty_like(u_in)
    s = np.empty_like(u_in)
    _spike_cpu(u_in, nu, firing_threshold(theta, u.dtype), u.dtype.type(1.0 / ts), rows, s)
    return s.reshape(u.shape), rows.reshape(u.shape)


def surrogate(u, neuron):
    r"""The surrogate derivative :math:`\rho(u)` itself.

    .. math::

        \rho(u) = \frac{s_\rho}{\tau_\rho\vartheta}
        \exp\!\left(-\frac{|u - \vartheta|}{\tau_\rho \vartheta}\right)

    Parameters
    ----------
    u : ndarray, shape (..., T)
        The membrane potential (its own unit), time last; float32 or float64.
    neuron : NeuronParams
        ``theta`` (the potential's unit), ``tau_rho`` and ``scale_rho`` (relative to ``theta``); see
        :class:`~pysrm.params.NeuronParams`.

    Returns
    -------
    ndarray
        :math:`\rho(u)` (per unit of potential): shape and dtype of ``u``.

    Raises
    ------
    TypeError
        ``u`` is not a float32/float64 ndarray.
    ValueError
        ``u`` has no axis or non-finite values.
    """
    return spike_backward(np.ones_like(u), u, neuron)


def spike_backward(grad_s, u, neuron):
    r"""Backward of :func:`spike` (SLAYER's surrogate; no gradient through the refractory feedback).

    .. math::

        \frac{\partial\mathcal L}{\partial u[t]} = \frac{\partial\mathcal L}{\partial s[t]}\,
        \rho(u[t]),\qquad
        \rho(u) = \frac{s_\rho}{\tau_\rho\vartheta}
        \exp\!\left(-\frac{|u - \vartheta|}{\tau_\rho \vartheta}\right)

    i.e. ``grad_u = grad_s * scale_rho/(tau_rho*theta) * exp(-|u-theta|/(tau_rho*theta))``.

    Parameters
    ----------
    grad_s : ndarray or CUDA device array, shape (..., T)
        The loss gradient with respect to the spikes ``s``, time last; float32 or float64.
    u : ndarray or CUDA device array, shape (..., T)
        The potential returned by :func:`spike` (after the refractory responses), the shape of
        ``grad_s``; float32 or float64 (cast to ``grad_s``'s dtype).
    neuron : NeuronParams
        ``theta`` (the potential's unit), ``tau_rho`` and ``scale_rho`` (relative to ``theta``); see
        :class:`~pysrm.params.NeuronParams`.

    Returns
    -------
    ndarray or CUDA device array
        The gradient with respect to ``u``: shape and dtype of ``grad_s``.

    Raises
    ------
    TypeError
        ``grad_s`` or ``u`` is not a float32/float64 ndarray.
    ValueError
        ``grad_s`` and ``u`` differ in shape, have no axis or contain non-finite values.

    See Also
    --------
    spike : the forward.
    """
    if is_device_array(grad_s):
        from . import spike_cuda
        return spike_cuda.spike_backward(grad_s, u, neuron)
    g = as_rows("grad_s", grad_s)
    ur = as_rows("u", u)
    if g.shape != ur.shape:
        raise ValueError(f"grad_s has shape {grad_s.shape} but u has shape {u.shape}; they must match")
    out = np.empty_like(g)
    width = neuron.tau_rho * neuron.theta
    dt = g.dtype.type
    _spike_backward_cpu(g, ur.astype(g.dtype, copy=False), dt(neuron.theta), dt(neuron.scale_rho), dt(width), out)
    return out.reshape(grad_s.shape)
