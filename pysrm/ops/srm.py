r"""The SRM neuron as one op: ``spike(psp(a))`` forward, and its backward fused.

Forward (see :mod:`pysrm.ops.psp` and :mod:`pysrm.ops.spike`):

.. math::

    u = \mathrm{psp}(a), \qquad (s, u_{ref}) = \mathrm{spike}(u)

Backward (the surrogate of the spike function, then the correlation with the
spike response), computed row by row in one pass backwards in time instead
of two passes over memory:

.. math::

    \frac{\partial\mathcal L}{\partial a[t]} = T_s \sum_{i=0}^{L-1} \epsilon[i]\;
        \rho(u_{ref}[t+i])\, \frac{\partial\mathcal L}{\partial s[t+i]}

It equals ``psp_backward(spike_backward(grad_s, u_ref, neuron), kernel, ts)``
to float rounding (tested); the gradient promise is the surrogate's.  The surrogate is evaluated by
:func:`pysrm.ops._fastexp.rho_row` (a vectorised exponential in float32, within a few float32 ulp of
``np.exp``; ``np.exp`` itself in float64).

Time-major forms of the neuron's two linear maps (a row is one time bin of every neuron, so the
recursions run across neurons in vector registers), for the fused blocks of :mod:`pysrm.blocks`:
:func:`psp_time_major` (the psp, in place) and :func:`correlation_time_major` (its adjoint), both on
the alpha recursion :func:`alpha_time_major` or the direct sum; per element the operations of
:mod:`pysrm.ops.psp`, so bitwise its results.

The fused blocks that schedule this op with a synapse and a delay (Dense -> SRM -> Delay,
Conv -> SRM -> Delay -> Pool -> SRM, the CUDA blocks) live in :mod:`pysrm.blocks`; the CUDA twins of
this op are the separate ops' (:mod:`pysrm.ops.psp_cuda`, :mod:`pysrm.ops.spike_cuda`).  Tests:
``tests/test_op_spike.py`` (srm_backward against the two ops, the time-major forms through the blocks).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._checks import positive
from ..backend import is_device_array
from ._util import as_rows, check_strategy, response_as
from ._fastexp import rho_row
from ._primitives import alpha_output_cpu, alpha_step_cpu
from .. import settings
from .psp import alpha_filter_rows, alpha_parameters, psp, psp_backward
from .spike import spike, spike_backward


@njit(parallel=True, cache=True)
def _srm_backward_direct_cpu(g, u, theta, scale, width, k, out, n_chunks):
    rows, T = g.shape
    L = k.shape[0]
    a = scale / width
    inv_width = g.dtype.type(1.0) / width
    step = (rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
            gu = np.empty(T, dtype=g.dtype)  # one row of grad_s * rho(u), reused for the chunk's rows
            scratch = np.empty(T, dtype=np.int32)
            for r in range(c * step, min(rows, (c + 1) * step)):
                rho_row(g[r], u[r], theta, a, inv_width, gu, scratch)
                o = out[r]
                k0 = k[0]
                for t in range(T):
                    o[t] = k0 * gu[t]
                for i in range(1, min(L, T)):  # lag-major: the inner loop over t vectorises
                    ki = k[i]
                    gs = gu[i:]
                    for t in range(T - i):
                        o[t] += ki * gs[t]


@njit(parallel=True, cache=True)
def _srm_backward_alpha_cpu(g, u, theta, scale, width, alpha, gain, L, out):
    # per task of 64 rows: gu = grad_s * rho(u) (vectorised), then the alpha recursion backwards in
    # time on gu (pysrm.ops.psp.alpha_filter_rows, 4 rows interleaved)
    rows, T = g.shape
    a = scale / width
    inv_width = g.dtype.type(1.0) / width
    B = 64  # rows per parallel task: the work buffers are allocated once per task
    for k in prange((rows + B - 1) // B):
        r0 = B * k
        r1 = min(rows, r0 + B)
        gu = np.empty((r1 - r0, T), dtype=g.dtype)
        scratch = np.empty(T, dtype=np.int32)
        for r in range(r0, r1):
            rho_row(g[r], u[r], theta, a, inv_width, gu[r - r0], scratch)
        alpha_filter_rows(gu, out[r0:r1], 0, r1 - r0, alpha, gain, L, True)


def srm_forward(a, srm_kernel, refractory_kernel, theta: float, ts: float):
    r"""SRM neurons driven by the synaptic input ``a``: ``(s, u_ref) = spike(psp(a))``.

    SLAYER's SRM model: :math:`u = \epsilon * a`, spikes where :math:`u \ge \vartheta`, each followed by
    the refractory response :math:`\nu`:

    .. math::

        u = \mathrm{psp}(a), \qquad (s, u_{ref}) = \mathrm{spike}(u)

    Parameters
    ----------
    a : ndarray or CUDA device array, shape (..., T)
        The synaptic input, time last, any leading shape; float32 or float64.
    srm_kernel : array_like, shape (K,)
        The spike response :math:`\epsilon` from lag 0 (:func:`pysrm.responses.srm_kernel`).
    refractory_kernel : array_like, shape (K_ref,)
        The refractory response :math:`\nu` from lag 0 (:func:`pysrm.responses.refractory_kernel`),
        the potential's unit.
    theta : float
        The threshold :math:`\vartheta`, the potential's unit; > 0.
    ts : float
        The time step ``Ts`` in ms; > 0.

    Returns
    -------
    s : ndarray or CUDA device array
        Spikes of amplitude ``1/ts``: shape and dtype of ``a``.
    u_ref : ndarray or CUDA device array
        The potential after the refractory responses: shape and dtype of ``a``.

    Raises
    ------
    TypeError
        ``a`` is not a float32/float64 ndarray; ``theta`` or ``ts`` is not a number.
    ValueError
        ``a`` has no axis or non-finite values; a response is empty, not 1-D or non-finite; ``theta``
        or ``ts`` is not finite or ``<= 0``.

    See Also
    --------
    pysrm.ops.psp.psp, pysrm.ops.spike.spike, srm_backward
    """
    return spike(psp(a, srm_kernel, ts), refractory_kernel, theta, ts)


@njit(cache=True)
def alpha_time_major(buf, alpha, gain, L, hist, reverse):
    """The alpha recursion of :mod:`pysrm.ops.psp` in place along axis 0 of a ``(T, O)`` array, all ``O``
    columns at once (vectorised across them), backwards in time if ``reverse``.  ``hist`` is a
    ``(2, L, O)`` float64 work array: row ``prev`` holds A, F of the previous bin, row ``j`` those of
    L bins back.  Per element the operations are those of ``psp._alpha_1row``: bitwise the same.
    (In place on purpose: with a separate output array that may alias the input, LLVM's overlap check
    sent the in-place calls to the scalar loop.)"""
    T, O = buf.shape
    aL = alpha ** L
    hist[:, :, :] = 0.0
    j = 0
    prev = L - 1
    for s in range(T):
        row = buf[T - 1 - s] if reverse else buf[s]
        a_prev = hist[0, prev]
        f_prev = hist[1, prev]
        a_old = hist[0, j]
        f_old = hist[1, j]
        for o in range(O):
            A, F = alpha_step_cpu(a_prev[o], f_prev[o], row[o], alpha)
            row[o] = alpha_output_cpu(F, a_old[o], f_old[o], aL, L, gain)
            a_old[o] = A
            f_old[o] = F
        prev = j
        j += 1
        if j == L:
            j = 0


@njit(cache=True)
def psp_time_major(buf, row, hist, stage):
    """The psp of :mod:`pysrm.ops.psp` in place along axis 0 of a time-major ``(T, M)`` array (a row is one
    time bin of ``M`` neurons): the alpha recursion (:func:`alpha_time_major`) when ``stage.use_alpha``, else
    the direct sum ``u[t] = sum_{t' <= t} a[t'] k[t - t']`` over the sources ascending (the order of
    ``pysrm.ops.psp._psp_cpu`` per element: bitwise its result), descending in ``t`` so that the sources
    are still unchanged.  ``stage``: ``NeuronForward`` (``pysrm.ops._records``); ``row``: ``(M,)`` and
    ``hist``: ``(2, L, M)`` float64 work arrays."""
    if stage.use_alpha:
        alpha_time_major(buf, stage.alpha, stage.gain, stage.L, hist, False)
        return
    k = stage.k
    T, M = buf.shape
    Lk = k.shape[0]
    for t in range(T - 1, -1, -1):
        i0 = min(Lk - 1, t)
        src = buf[t - i0]
        ki = k[i0]
        for j in range(M):
            row[j] = src[j] * ki
        for i in range(i0 - 1, -1, -1):
            src = buf[t - i]
            ki = k[i]
            for j in range(M):
                row[j] += src[j] * ki
        buf[t, :] = row


@njit(cache=True)
def correlation_time_major(buf, row, hist, stage):
    """The adjoint of :func:`psp_time_major` (the correlation with the spike response, as
    :func:`pysrm.ops.psp.psp_backward`) in place along axis 0 of a time-major ``(T, M)`` array: the alpha
    recursion backwards in time when ``stage.use_alpha``, else the direct sum
    ``out[t] = k[0] g[t] + k[1] g[t+1] + ...`` in that order (``_srm_backward_direct_cpu``'s order per
    element).  ``stage``: ``NeuronBackward`` (``pysrm.ops._records``); work arrays as
    :func:`psp_time_major`."""
    if stage.use_alpha:
        alpha_time_major(buf, stage.alpha, stage.gain, stage.L, hist, True)
        return
    k = stage.k
    T, M = buf.shape
    Lk = k.shape[0]
    for t in range(T):
        g0 = buf[t]
        k0 = k[0]
        for j in range(M):
            row[j] = k0 * g0[j]
        for i in range(1, min(Lk, T - t)):
            gi = buf[t + i]
            ki = k[i]
            for j in range(M):
                row[j] += ki * gi[j]
        buf[t, :] = row


#: strategies of :func:`srm_backward`
STRATEGIES = ("auto", "plain", "fused")


def srm_backward(grad_s, u, neuron, srm_kernel, ts: float, strategy: str = "auto"):
    r"""Backward of SRM neurons: ``psp_backward(grad_s * rho(u), srm_kernel, ts)``.

    .. math::

        \frac{\partial\mathcal L}{\partial a[t]} = T_s \sum_{i=0}^{L-1} \epsilon[i]\;
            \rho(u_{ref}[t+i])\, \frac{\partial\mathcal L}{\partial s[t+i]}

    Parameters
    ----------
    grad_s : ndarray or CUDA device array, shape (..., T)
        The loss gradient with respect to the spikes, time last; float32 or float64.
    u : ndarray or CUDA device array, shape (..., T)
        The potential after the refractory responses (as :func:`srm_forward` returns it), the shape of
        ``grad_s`` (cast to its dtype).
    neuron : NeuronParams
        ``theta``, ``tau_rho`` and ``scale_rho`` of the surrogate (:class:`~pysrm.params.NeuronParams`).
    srm_kernel : array_like, shape (L,)
        The spike response :math:`\epsilon` from lag 0.
    ts : float
        The time step ``Ts`` in ms; > 0.
    strategy : {"auto", "plain", "fused"}, default "auto"
        ``"plain"`` (:func:`pysrm.ops.spike.spike_backward` then :func:`pysrm.ops.psp.psp_backward`,
        both plain), ``"fused"`` (one pass per row: the surrogate and then the correlation, by the
        alpha recursion for alpha kernels of at least the setting ``recursive_min_length_backward``
        samples, else the direct sum) or ``"auto"`` (= ``"fused"`` on the CPU).  They agree to float
        rounding (tested).  Device arrays run the two ops.

    Returns
    -------
    ndarray or CUDA device array
        The gradient with respect to the potential's input ``a``: shape and dtype of ``grad_s``.

    Raises
    ------
    TypeError
        ``grad_s`` or ``u`` is not a float32/float64 ndarray; ``ts`` is not a number.
    ValueError
        ``grad_s`` and ``u`` differ in shape, have no axis or contain non-finite values; an unknown
        strategy; ``srm_kernel`` is empty, not 1-D or non-finite, or ``ts`` is not finite or ``<= 0``
        (checked where the direct sum or ``"plain"`` runs: the fused alpha recursion takes ``ts`` as
        given).

    See Also
    --------
    srm_forward : the forward.
    """
    check_strategy(strategy, STRATEGIES)
    if is_device_array(grad_s):
        return psp_backward(spike_backward(grad_s, u, neuron), srm_kernel, ts)
    if strategy == "plain":
        return psp_backward(spike_backward(grad_s, u, neuron), srm_kernel, ts, strategy="plain")
    g = as_rows("grad_s", grad_s)
    ur = as_rows("u", u)
    if g.shape != ur.shape:
        raise ValueError(f"grad_s has shape {grad_s.shape} but u has shape {u.shape}; they must match")
    ur = ur.astype(g.dtype, copy=False)
    out = np.empty_like(g)
    dt = g.dtype.type
    width = neuron.tau_rho * neuron.theta
    alpha = alpha_parameters(srm_kernel) if len(srm_kernel) >= settings.current().recursive_min_length_backward else None
    if alpha is not None:
        _srm_backward_alpha_cpu(g, ur, dt(neuron.theta), dt(neuron.scale_rho), dt(width), alpha[0],
                                alpha[1] * ts, len(srm_kernel), out)
    else:
        k = response_as("srm_kernel", srm_kernel, g.dtype) * g.dtype.type(positive("ts", ts))
        _srm_backward_direct_cpu(g, ur, dt(neuron.theta), dt(neuron.scale_rho), dt(width), k, out,
                                 max(1, min(g.shape[0], 64)))
    return out.reshape(grad_s.shape)
