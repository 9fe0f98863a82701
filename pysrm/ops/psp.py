r"""Post-synaptic potential: causal filtering with the spike response.

Forward (convolution, causal, lag 0 included):

.. math::

    \mathrm{psp}(x)[t] = T_s \sum_{i=0}^{L-1} \epsilon[i]\, x[t-i]

Backward (its adjoint, the correlation):

.. math::

    \frac{\partial \mathcal L}{\partial x[t]} = T_s \sum_{i=0}^{L-1} \epsilon[i]\, g[t+i],
    \qquad g = \frac{\partial \mathcal L}{\partial\, \mathrm{psp}(x)}

Both act on the last (time) axis of an array of any shape.

Two exact ways to compute them (``strategy=``; CUDA twin :mod:`pysrm.ops.psp_cuda`, direct sums;
tests in ``tests/test_op_psp.py``):

* ``"plain"`` -- the definition, direct (any response): the forward scatters every non-zero input into
  the ``L`` bins it reaches (event driven: O(non-zeros x L)); the backward
  gathers ``L`` gradient bins per output bin (O(T x L)).
* ``"recursive"`` (alpha responses, detected from the samples): a sampled alpha
  function :math:`\epsilon[i] = K\, i\, a^i` (:math:`a = e^{-T_s/\tau}`) is the
  impulse response of a second-order recursion, and its truncation after
  :math:`L` samples subtracts the same recursion delayed by :math:`L`:

  .. math::

      A[t] = a A[t-1] + x[t],\quad F[t] = a\,(F[t-1] + A[t-1])

      \mathrm{psp}(x)[t] = T_s K \bigl(F[t] - a^L (F[t-L] + L\, A[t-L])\bigr)

  because :math:`\sum_{i\ge L} i a^i x[t-i] = a^L \sum_{k\ge 0}(k+L) a^k x[t-L-k]`.
  The backward runs the same recursion backwards in time.  O(T) per row
  whatever ``L`` is; accumulated in float64, so the result equals the direct
  (truncated-kernel) definition to float rounding (tested).

``"auto"`` takes the recursion for alpha responses of at least the setting ``recursive_min_length`` (:mod:`pysrm.settings`) samples
(backward: the setting ``recursive_min_length_backward``), else the direct sums.  Both are exact (linear) and
checked by finite differences; they agree to float rounding (tested).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from .. import settings
from .._checks import positive
from ..backend import is_device_array
from ._primitives import alpha_output_cpu, alpha_step_cpu
from ._util import as_rows, check_strategy, response_as

#: strategies of :func:`psp` / :func:`psp_backward`
STRATEGIES = ("auto", "plain", "recursive")


@njit(parallel=True, cache=True)
def _psp_cpu(x, k, out):
    rows, T = x.shape
    L = k.shape[0]
    for r in prange(rows):
        for t in range(T):
            v = x[r, t]
            if v != 0.0:
                m = min(L, T - t)
                for i in range(m):
                    out[r, t + i] += v * k[i]


@njit(parallel=True, cache=True)
def _psp_backward_cpu(g, k, out):
    # out[r, t] = sum_i k[i] g[r, t + i], lag-major so the inner loop over t vectorises
    rows, T = g.shape
    L = k.shape[0]
    for r in prange(rows):
        out[r, :] = 0.0
        for i in range(min(L, T)):
            ki = k[i]
            for t in range(T - i):
                out[r, t] += ki * g[r, t + i]


@njit(cache=True)
def _alpha_1row(x0, o0, a, gain, L):
    # o[t] = gain * (F[t] - a^L (F[t-L] + L A[t-L])), A/F the recursions of the module docstring, in
    # float64 (one step: pysrm.ops._primitives.alpha_step / alpha_output); ring buffers hold A and F of
    # the last L steps
    T = x0.shape[0]
    aL = a ** L
    hist_a = np.zeros(L)
    hist_f = np.zeros(L)
    A = 0.0
    F = 0.0
    j = 0
    for t in range(T):
        A, F = alpha_step_cpu(A, F, x0[t], a)
        o0[t] = alpha_output_cpu(F, hist_a[j], hist_f[j], aL, L, gain)
        hist_a[j] = A
        hist_f[j] = F
        j += 1
        if j == L:
            j = 0


@njit(cache=True)
def _alpha_4rows(x0, x1, x2, x3, o0, o1, o2, o3, a, gain, L):
    # _alpha_1row on four rows at once: the recursion is a chain of dependent multiply-adds, so one
    # row runs at the latency of that chain; four independent chains interleaved fill the pipeline
    # (measured 1.8x).  Same operations in the same order per row: results are bitwise those of
    # _alpha_1row.
    T = x0.shape[0]
    aL = a ** L
    ha = np.zeros((L, 4))
    hf = np.zeros((L, 4))
    A0 = A1 = A2 = A3 = 0.0
    F0 = F1 = F2 = F3 = 0.0
    j = 0
    for t in range(T):
        A0, F0 = alpha_step_cpu(A0, F0, x0[t], a)
        A1, F1 = alpha_step_cpu(A1, F1, x1[t], a)
        A2, F2 = alpha_step_cpu(A2, F2, x2[t], a)
        A3, F3 = alpha_step_cpu(A3, F3, x3[t], a)
        h_a = ha[j]
        h_f = hf[j]
        o0[t] = alpha_output_cpu(F0, h_a[0], h_f[0], aL, L, gain)
        o1[t] = alpha_output_cpu(F1, h_a[1], h_f[1], aL, L, gain)
        o2[t] = alpha_output_cpu(F2, h_a[2], h_f[2], aL, L, gain)
        o3[t] = alpha_output_cpu(F3, h_a[3], h_f[3], aL, L, gain)
        h_a[0] = A0
        h_a[1] = A1
        h_a[2] = A2
        h_a[3] = A3
        h_f[0] = F0
        h_f[1] = F1
        h_f[2] = F2
        h_f[3] = F3
        j += 1
        if j == L:
            j = 0


@njit(cache=True)
def alpha_filter_rows(x, out, r0, r1, a, gain, L, reverse):
    """The alpha recursion on rows r0..r1-1 of ``x`` into ``out`` (backwards in time if ``reverse``)."""
    r = r0
    while r + 4 <= r1:
        if reverse:
            _alpha_4rows(x[r, ::-1], x[r + 1, ::-1], x[r + 2, ::-1], x[r + 3, ::-1],
                         out[r, ::-1], out[r + 1, ::-1], out[r + 2, ::-1], out[r + 3, ::-1], a, gain, L)
        else:
            _alpha_4rows(x[r], x[r + 1], x[r + 2], x[r + 3], out[r], out[r + 1], out[r + 2], out[r + 3],
                         a, gain, L)
        r += 4
    while r < r1:
        if reverse:
            _alpha_1row(x[r, ::-1], out[r, ::-1], a, gain, L)
        else:
            _alpha_1row(x[r], out[r], a, gain, L)
        r += 1


@njit(parallel=True, cache=True)
def _psp_alpha_cpu(x, a, gain, L, out):
    rows = x.shape[0]
    for g in prange((rows + 3) // 4):
        alpha_filter_rows(x, out, 4 * g, min(rows, 4 * g + 4), a, gain, L, False)


@njit(parallel=True, cache=True)
def _psp_alpha_backward_cpu(g, a, gain, L, out):
    # out[t] = gain * (F'[t] - a^L (F'[t+L] + L A'[t+L])) with A'[t] = a A'[t+1] + g[t], F'[t] = a (F'[t+1] + A'[t+1])
    rows = g.shape[0]
    for k in prange((rows + 3) // 4):
        alpha_filter_rows(g, out, 4 * k, min(rows, 4 * k + 4), a, gain, L, True)


def alpha_parameters(kernel):
    r"""Recognise a sampled alpha response: ``(a, K)`` when ``kernel[i] == K * i * a**i`` for all i.

    The match is to 1e-9 relative to ``max |kernel|``; it needs at least 3 samples, ``kernel[0] == 0``,
    ``kernel[1] > 0`` and ``0 < a < 1`` (``a = kernel[2] / (2 kernel[1])``).

    Parameters
    ----------
    kernel : array_like, shape (K,)
        The sampled response from lag 0, float32 or float64 (compared in float64).

    Returns
    -------
    tuple of (float, float) or None
        ``(a, K)`` (``a = exp(-Ts / tau)``, dimensionless; ``K`` the response's scale), or ``None`` when
        ``kernel`` is not an alpha function.

    Notes
    -----
    Remembered per kernel value (``functools.lru_cache`` keyed by the kernel's float64 bytes, which
    determine the result completely; immutable results, thread-safe): the layers ask for the same few
    responses every step.
    """
    return _alpha_parameters_of_bytes(np.asarray(kernel, dtype=np.float64).tobytes())


@functools.lru_cache(maxsize=256)
def _alpha_parameters_of_bytes(key: bytes):
    return _alpha_parameters(np.frombuffer(key, dtype=np.float64))


def _alpha_parameters(k):
    L = k.shape[0]
    if L < 3 or k[0] != 0.0 or k[1] <= 0.0:
        return None
    a = k[2] / (2.0 * k[1])
    if not (0.0 < a < 1.0):
        return None
    K = k[1] / a
    i = np.arange(L)
    ref = K * i * a ** i
    if np.abs(ref - k).max() > 1e-9 * np.abs(k).max():
        return None
    return a, K


def _filter(name, x, kernel, ts, min_recursive, recursive_kernel, direct_kernel, strategy):
    """Shared wrapper of psp and its adjoint: validate, pick the recursive or the direct kernel, reshape."""
    check_strategy(strategy, STRATEGIES)
    ts = positive("ts", ts)
    rows = as_rows(name, x)
    alpha = None
    if strategy != "plain":
        alpha = alpha_parameters(kernel) if (strategy == "recursive" or len(kernel) >= min_recursive) else None
        if strategy == "recursive" and alpha is None:
            raise ValueError("strategy 'recursive' needs an alpha-function kernel (kernel[i] = K i a**i, at least "
                             "3 samples); this kernel is not one: use 'plain' or 'auto'")
    if alpha is not None:
        out = np.empty_like(rows)  # written completely by the recursion
        recursive_kernel(rows, alpha[0], alpha[1] * ts, len(kernel), out)
    else:
        out = np.zeros_like(rows)  # the direct kernels accumulate
        direct_kernel(rows, response_as("kernel", kernel, x.dtype) * x.dtype.type(ts), out)
    return out.reshape(x.shape)


def psp(x, kernel, ts: float, strategy: str = "auto"):
    r"""Filter ``x`` causally with the spike response (SLAYER's ``psp``).

    .. math::

        \mathrm{out}[\ldots, t] = T_s \sum_{i=0}^{K-1} \mathrm{kernel}[i]\, x[\ldots, t-i]

    i.e. ``out[..., t] = ts * sum_i kernel[i] * x[..., t-i]`` (causal, lag 0 included; bins before 0 are
    zero).

    Parameters
    ----------
    x : ndarray or CUDA device array, shape (..., T)
        The input (spikes of amplitude ``1/Ts``, or any signal), time last, any leading shape
        (``(N, C, H, W, T)``, ``(N, M, T)``, ...); float32 or float64.
    kernel : array_like, shape (K,)
        The sampled response from lag 0 (:func:`pysrm.responses.srm_kernel`); cast to ``x``'s dtype.
    ts : float
        The time step ``Ts`` in ms; > 0.
    strategy : {"auto", "plain", "recursive"}, default "auto"
        ``"plain"``: the direct sum; ``"recursive"``: the alpha recursion of the module docstring
        (alpha kernels only); ``"auto"``: recursive for alpha kernels of at least the setting
        ``recursive_min_length`` (:mod:`pysrm.settings`) samples, else plain.  Ignored for device arrays
        (direct sums).

    Returns
    -------
    ndarray or CUDA device array
        Shape and dtype of ``x`` (the potential's unit per unit of ``x`` times ms).

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray, or ``ts`` is not a number.
    ValueError
        ``x`` has no axis or non-finite values; ``kernel`` is empty, not 1-D or non-finite; ``ts`` is not
        finite or ``<= 0``; ``strategy`` is unknown; ``"recursive"`` is asked for a kernel that is not an
        alpha function.

    See Also
    --------
    psp_backward : the adjoint.

    Notes
    -----
    The strategies are both exact (linear) and agree to float rounding: the direct sum is event driven
    (O(non-zeros x K)); the recursion is O(T) per row whatever ``K`` is, accumulated in float64.
    """
    if is_device_array(x):
        from . import psp_cuda
        return psp_cuda.psp(x, kernel, ts)
    return _filter("x", x, kernel, ts, settings.current().recursive_min_length, _psp_alpha_cpu, _psp_cpu, strategy)


def psp_backward(grad, kernel, ts: float, strategy: str = "auto"):
    r"""Adjoint of :func:`psp` (the correlation).

    .. math::

        \frac{\partial \mathcal L}{\partial x[\ldots, t]} = T_s \sum_{i=0}^{K-1} \mathrm{kernel}[i]\,
        \mathrm{grad}[\ldots, t+i]

    i.e. ``out[..., t] = ts * sum_i kernel[i] * grad[..., t+i]`` (bins past ``T - 1`` are zero).

    Parameters
    ----------
    grad : ndarray or CUDA device array, shape (..., T)
        The loss gradient with respect to :func:`psp`'s output, time last; float32 or float64.
    kernel : array_like, shape (K,)
        The sampled response from lag 0, as given to :func:`psp`.
    ts : float
        The time step ``Ts`` in ms; > 0.
    strategy : {"auto", "plain", "recursive"}, default "auto"
        As for :func:`psp`; ``"auto"`` uses the recursion from the setting
        ``recursive_min_length_backward`` samples.  Ignored for device arrays.

    Returns
    -------
    ndarray or CUDA device array
        The gradient with respect to :func:`psp`'s input ``x``: shape and dtype of ``grad``.

    Raises
    ------
    TypeError
        ``grad`` is not a float32/float64 ndarray, or ``ts`` is not a number.
    ValueError
        ``grad`` has no axis or non-finite values; ``kernel`` is empty, not 1-D or non-finite; ``ts`` is
        not finite or ``<= 0``; ``strategy`` is unknown; ``"recursive"`` is asked for a kernel that is not
        an alpha function.

    See Also
    --------
    psp : the forward filter.
    """
    if is_device_array(grad):
        from . import psp_cuda
        return psp_cuda.psp_backward(grad, kernel, ts)
    return _filter("grad", grad, kernel, ts, settings.current().recursive_min_length_backward, _psp_alpha_backward_cpu,
                   _psp_backward_cpu, strategy)
