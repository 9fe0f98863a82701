r"""Losses on output spike tensors, each with an explicit value and gradient.

The four losses of the Spikemax paper (Shrestha, Zhu & Sun, IJCNN 2022) and
SLAYER's two classic losses, written as value-and-gradient computations with
respect to the output spike tensor (there is no autograd in pysrm: the
gradient returned here is what the network's backward pass starts from).

=============  ============  ==================================================
name           class         what it measures
=============  ============  ==================================================
spike-rate     SpikeRate     squared error of each neuron's rate (paper eq. 4)
spikemax       SpikeMax      NLL of sliding-window count ratios (eqs. 5-8, 11)
spikemax-g     SpikeMaxG     NLL of global count ratios (eq. 12)
spikemax-s     SpikeMaxS     NLL of the softmax of global counts (eqs. 13-14)
num-spikes     NumSpikes     SLAYER's spike count loss (``spikeLoss.numSpikes``)
spike-time     SpikeTime     SLAYER's spike time loss (``spikeLoss.spikeTime``)
=============  ============  ==================================================

Conventions (all losses)
------------------------
* ``spikes`` has shape ``(N, classes, ..., T)`` (network outputs are
  ``(N, classes, 1, 1, T)``), float32 or float64; a spike has amplitude
  :math:`1/T_s` and times are in ms.  ``labels`` is an integer array ``(N,)``
  with values in ``0 .. classes-1``.
* Counts.  Global: :math:`c_i = T_s \sum_t s_i[t]`.  Sliding window of
  :math:`W` ms (:math:`W_b = W/T_s` bins, a whole number):
  :math:`c_i[t] = T_s \sum_{t-W_b < t' \le t} s_i[t']` -- causal, and at the
  first :math:`W_b - 1` bins the window is *truncated at 0* (it holds the
  bins :math:`0..t` only); the loss still averages over all :math:`T` bins.
* Middle axes.  The probability losses (``spikemax*``) and the classifiers
  need one count per class: the neurons ``spikes[n, i, ...]`` form the
  *population* of class ``i`` and their counts are summed.  The squared-error
  losses (``spike-rate``, ``num-spikes``, ``spike-time``) act per neuron: every
  neuron of class ``i`` gets the target of class ``i``.  With singleton
  middle axes (the usual case) both readings are the same.
* Batch reduction: the *mean* over the batch, :math:`L = \frac1N \sum_n L_n`;
  the returned gradient already contains the factor :math:`1/N`.
* ``value`` is a Python float computed in float64; the gradient has the
  shape and dtype of ``spikes``.
* Zero counts: the count-ratio losses use :math:`\tilde c_i = c_i + \epsilon`
  (``eps``, default :data:`DEFAULT_EPS` = 0.01 spike) *in numerator and
  denominator*, so value and gradient stay finite when the label neuron or
  every neuron is silent, and the gradient on a silent label neuron,
  :math:`-(1 - p_y)/\tilde c_y < 0`, pushes it to fire.  (With an ``eps`` in
  the denominator only, a silent label neuron gives :math:`-\log 0 = \infty`.)
  ``eps`` is a pseudo-count of 1/100 spike: it biases :math:`p` negligibly
  once neurons fire a few spikes and bounds the gradient on a silent neuron
  by :math:`T_s/\epsilon` per bin.

Gradient modes (option ``grad``)
--------------------------------
``'exact'`` (default) is the true derivative :math:`\partial L/\partial s`, what
central finite differences measure (see :func:`gradcheck_cases`).  ``'paper'``
is the formula printed in the paper; each class's docstring shows both.  For
the count-ratio losses the printed forms are *rate-normalised* (they divide by
the rate :math:`c/W` or :math:`c/T` instead of the count), which makes them
the exact gradient multiplied by the number of bins :math:`T/T_s` (exactly
for ``spikemax-g``; for ``spikemax`` approximately, the printed form is also
*local in time*: bin :math:`t` only sees the window ending at :math:`t`,
whereas the exact gradient sums over the :math:`W_b` windows that contain
:math:`t`).  For ``spikemax-s`` the printed form is the exact gradient divided
by :math:`T_s`.  For ``num-spikes`` ``'paper'`` is SLAYER's gradient (the
count error treated as a constant and back-propagated through the PSP
adjoint, as SLAYER-PyTorch's autograd does).  ``spike-rate`` and
``spike-time`` have no separate printed gradient: ``'paper'`` equals
``'exact'``.

Entry point::

    loss = make_loss("spikemax", ts=1.0, window=50.0)
    value, grad = loss.value_and_grad(spikes, labels)
"""
from __future__ import annotations

import inspect
import math

import numpy as np
from numba import njit, prange

from ._checks import float_array, positive
from .backend import is_device_array
from .params import NeuronParams, SimParams

__all__ = [
    "LOSSES", "DEFAULT_EPS", "GRAD_MODES", "make_loss", "Loss", "SpikeRate", "SpikeMax", "SpikeMaxG",
    "SpikeMaxS", "NumSpikes", "SpikeTime", "window_counts", "gradcheck_cases", "finite_difference_error",
]

#: Valid loss names for :func:`make_loss`.
LOSSES = ("spike-rate", "spikemax", "spikemax-g", "spikemax-s", "num-spikes", "spike-time")
#: Default pseudo-count added to every count of the count-ratio losses.
DEFAULT_EPS = 0.01
#: Valid values of the ``grad`` option.
GRAD_MODES = ("exact", "paper")

# --------------------------------------------------------------------------- per-sample math
# The definitions, written once as plain Python: compiled below for the CPU (njit, inlined into the
# prange kernels) and in pysrm.losses_cuda for the GPU (cuda.jit(device=True)), so that the CPU and CUDA
# losses run the same operations in the same order.  All work in float64 (values read from spike-dtype
# arrays are widened with np.float64 first, which is also what Numba's CUDA simulator needs to
# accumulate in float64).

def window_count_row(s, wb, ts, out):
    """Causal window counts of one population ``s`` (M, T): ``out[t] = ts * sum(s[:, max(0, t-wb+1) : t+1])``;
    a running sum, O(M T)."""
    M, T = s.shape
    acc = 0.0
    for t in range(T):
        v = 0.0
        for m in range(M):
            v += np.float64(s[m, t])
        acc += v
        if t >= wb:
            old = 0.0
            for m in range(M):
                old += np.float64(s[m, t - wb])
            acc -= old
        out[t] = ts * acc


def spike_rate_sample(c, y, true_rate, false_rate, duration, dc):
    """Spike-rate loss of one sample from its counts ``c`` (C, M): returns ``L_n = sum (c/duration - target)^2``
    and writes ``dc = dL_n/dc`` (C, M)."""
    C, M = c.shape
    acc = 0.0
    for k in range(C):
        tgt = true_rate if k == y else false_rate
        for m in range(M):
            d = c[k, m] / duration - tgt
            acc += d * d
            dc[k, m] = 2.0 * d / duration
    return acc


def spikemax_g_sample(c, y, eps, dc):
    """Spikemax-g of one sample from its class counts ``c`` (C,): returns ``(L_n, min_k c~_k)`` with
    ``L_n = log sum c~ - log c~_y``, ``c~ = c + eps``, and writes ``dc = dL_n/dc`` (C,) (NaN, and a NaN loss,
    when a count + eps is not positive)."""
    C = c.shape[0]
    S = 0.0
    mn = math.inf
    for k in range(C):
        v = c[k] + eps
        S += v
        if v < mn:  # (not min(): the CUDA target does not type it here)
            mn = v
    cy = c[y] + eps
    if mn > 0.0:
        for k in range(C):
            g = 1.0 / S
            if k == y:
                g -= 1.0 / cy
            dc[k] = g
        return math.log(S) - math.log(cy), mn
    for k in range(C):
        dc[k] = math.nan
    return math.nan, mn


def spikemax_s_sample(c, y, dc):
    """Spikemax-s of one sample from its class counts ``c`` (C,): returns ``L_n = logsumexp(c) - c_y`` and
    writes ``dc = softmax(c) - onehot(y)`` (C,)."""
    C = c.shape[0]
    mx = -math.inf
    for k in range(C):
        if c[k] > mx:
            mx = c[k]
    se = 0.0
    for k in range(C):
        se += math.exp(c[k] - mx)
    lse = mx + math.log(se)
    for k in range(C):
        g = math.exp(c[k] - lse)
        if k == y:
            g -= 1.0
        dc[k] = g
    return lse - c[y]


def spikemax_bin(c, y, t, eps, g):
    """Sliding-window spikemax of one sample at bin ``t``, from its window counts ``c`` (C, T): returns
    ``(l[t], min_k c~_k[t])`` with ``l[t] = log S[t] - log c~_y[t]`` and writes
    ``g[k, t] = dl[t]/dc_k[t] = 1/S[t] - y_k/c~_y[t]`` (NaN, and l = 0, when S or c~_y is not positive)."""
    C = c.shape[0]
    S = 0.0
    mn = math.inf
    for k in range(C):
        v = c[k, t] + eps
        S += v
        if v < mn:  # (not min(): the CUDA target does not type it here)
            mn = v
    cy = c[y, t] + eps
    if S > 0.0 and cy > 0.0:
        for k in range(C):
            gk = 1.0 / S
            if k == y:
                gk -= 1.0 / cy
            g[k, t] = gk
        return math.log(S) - math.log(cy), mn
    for k in range(C):
        g[k, t] = math.nan
    return 0.0, mn


def spikemax_grad_row(g, wb, ts, paper, window_ms):
    """One class's gradient of the sliding-window spikemax, in place on its per-bin terms ``g`` (T,) from
    :func:`spikemax_bin`: the paper's local form ``g * W``, or (exact) ``dL_n/ds[u] = ts/T *
    sum_{t=u}^{min(u+wb-1, T-1)} g[t]`` (suffix sums ``G[u]``, then ``G[u] - G[u+wb]``)."""
    T = g.shape[0]
    if paper:
        for t in range(T):
            g[t] *= window_ms
        return
    scale = ts / T
    run = 0.0
    for t in range(T - 1, -1, -1):
        run += g[t]
        g[t] = run
    for u in range(T):
        v = g[u]
        if u + wb < T:
            v -= g[u + wb]
        g[u] = scale * v


_window_count_row_cpu = njit(inline="always", cache=True)(window_count_row)
_spike_rate_sample_cpu = njit(inline="always", cache=True)(spike_rate_sample)
_spikemax_g_sample_cpu = njit(inline="always", cache=True)(spikemax_g_sample)
_spikemax_s_sample_cpu = njit(inline="always", cache=True)(spikemax_s_sample)
_spikemax_bin_cpu = njit(inline="always", cache=True)(spikemax_bin)
_spikemax_grad_row_cpu = njit(inline="always", cache=True)(spikemax_grad_row)


# --------------------------------------------------------------------------- CPU kernels (one sample or row per
# iteration of a prange loop; the CUDA kernels of pysrm.losses_cuda schedule the same functions on threads)

@njit(parallel=True, cache=True)
def _window_counts_cpu(s, wb, ts, out):
    """out[r, t] = ts * sum(s[r, :, max(0, t-wb+1) : t+1]); s (R, M, T), out (R, T)."""
    for r in prange(s.shape[0]):
        _window_count_row_cpu(s[r], wb, ts, out[r])


@njit(parallel=True, cache=True)
def _spike_rate_cpu(c, labels, true_rate, false_rate, duration, loss, dc):
    """Spike-rate per sample: ``loss[n]`` and ``dc[n] = dL_n/dc``; c, dc (N, C, M)."""
    for n in prange(c.shape[0]):
        loss[n] = _spike_rate_sample_cpu(c[n], labels[n], true_rate, false_rate, duration, dc[n])


@njit(parallel=True, cache=True)
def _spikemax_g_cpu(c, labels, eps, loss, dc, cmin):
    """Spikemax-g per sample: ``loss[n]``, ``dc[n] = dL_n/dc``, ``cmin[n]`` = smallest count + eps; c, dc (N, C)."""
    for n in prange(c.shape[0]):
        loss[n], cmin[n] = _spikemax_g_sample_cpu(c[n], labels[n], eps, dc[n])


@njit(parallel=True, cache=True)
def _spikemax_s_cpu(c, labels, loss, dc):
    """Spikemax-s per sample: ``loss[n]`` and ``dc[n] = dL_n/dc``; c, dc (N, C)."""
    for n in prange(c.shape[0]):
        loss[n] = _spikemax_s_sample_cpu(c[n], labels[n], dc[n])


@njit(parallel=True, cache=True)
def _spikemax_window_cpu(c, labels, wb, ts, eps, paper, window_ms, loss, grad, cmin):
    """Sliding-window spikemax on window counts ``c`` (N, C, T), without eps.

    loss[n] = mean_t (log S[t] - log c~_y[t]); grad (N, C, T) is dL_n/ds
    (exact) or the paper's local form; cmin[n] = min c~ (must be > 0).
    """
    N, C, T = c.shape
    for n in prange(N):
        y = labels[n]
        mn = math.inf
        acc = 0.0
        for t in range(T):
            l, m = _spikemax_bin_cpu(c[n], y, t, eps, grad[n])
            acc += l
            if m < mn:
                mn = m
        loss[n] = acc / T
        cmin[n] = mn
        for k in range(C):
            _spikemax_grad_row_cpu(grad[n, k], wb, ts, paper, window_ms)

# --------------------------------------------------------------------------- helpers

def _check_spikes(spikes):
    """Validate a spike tensor (N, classes, ..., T); return (N, C, M, T)."""
    float_array("spikes", spikes, min_ndim=3)
    if 0 in spikes.shape:
        raise ValueError(f"spikes must have no empty axis, got shape {spikes.shape}")
    N, C, T = spikes.shape[0], spikes.shape[1], spikes.shape[-1]
    M = int(np.prod(spikes.shape[2:-1], dtype=np.int64))
    return N, C, M, T


def _check_labels(labels, n, classes):
    """Validate integer labels of shape (n,) in 0..classes-1; return them as int64."""
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one per sample), got shape {arr.shape}")
    if n:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"labels must lie in 0..{classes - 1} (classes={classes}), found label {bad}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _bins(name, value_ms, ts, allow_zero=False):
    """Convert a duration in ms to a whole number of bins of ``ts`` ms."""
    v = positive(name, value_ms, allow_zero=allow_zero)
    n = v / ts
    if 0 < v < ts:
        ms = v * 1000
        raise ValueError(
            f"{name}={value_ms} ms is shorter than one bin (ts={ts} ms), so it holds no bin; expected a multiple of "
            f"ts (e.g. {name}={ts})" + (f"; times are in ms (did you mean {name}={ms:g}?)" if ms >= ts else ""))
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ValueError(
            f"{name}={value_ms} ms is not a whole number of bins of ts={ts} ms; expected a multiple "
            f"of ts (e.g. {name}={max(1, round(n)) * ts})")
    return int(round(n))


def _class_trains(spikes):
    """Population spike train of every class, float64, shape (N, C, T)."""
    N, C, T = spikes.shape[0], spikes.shape[1], spikes.shape[-1]
    s = spikes.reshape(N, C, -1, T)
    if s.shape[2] == 1:
        return np.ascontiguousarray(s[:, :, 0, :], dtype=np.float64)
    return s.sum(axis=2, dtype=np.float64)


def _fill_time(dc, shape, dtype):
    """Broadcast a per-neuron gradient dc (shape[:-1] compatible) along time."""
    out = np.empty(shape, dtype=dtype)
    bshape = dc.shape + (1,) * (len(shape) - dc.ndim)
    out[...] = dc.reshape(bshape)
    return out


def _raise_nonpositive(cmin, eps):
    bad = int(np.argmin(cmin))
    raise ValueError(
        f"spikes give a count + eps <= 0 (found {cmin[bad]:.6g} in sample {bad}, eps={eps}); spike "
        f"tensors must be non-negative so that the counts can be logged")


def window_counts(spikes, window_bins: int, ts: float = 1.0) -> np.ndarray:
    r"""Causal sliding-window spike counts along the last axis (float64).

    .. math::

        c[t] = T_s \sum_{t' = \max(0,\, t - W_b + 1)}^{t} s[t']

    The window is truncated at the start (bins :math:`t < W_b - 1`).  Runs in
    :math:`O(T)` per row.  With ``window_bins >= T`` this is the cumulative
    count.  (Gradient: :math:`\partial c[t]/\partial s[t'] = T_s` for
    :math:`t - W_b < t' \le t`.)

    Parameters
    ----------
    spikes : ndarray or CUDA device array, shape (..., T)
        Spike trains (amplitude ``1/Ts``), time last, any leading shape; float32 or float64.  A device
        array is counted on the GPU (:func:`pysrm.losses_cuda.window_counts`).
    window_bins : int
        The window length :math:`W_b` in bins (not ms); ``>= 1``.
    ts : float, default 1.0
        The bin width ``Ts`` in ms; > 0.

    Returns
    -------
    ndarray or CUDA device array
        The counts :math:`c` (spikes), shape of ``spikes``, float64 (a device array for a device
        ``spikes``).

    Raises
    ------
    TypeError
        ``spikes`` is not a float32/float64 ndarray (host arrays only), ``window_bins`` is not an integer
        (a bool is refused), or ``ts`` is not a number.
    ValueError
        ``spikes`` has no axis or non-finite values (host arrays only), ``window_bins < 1``, or ``ts`` is not
        finite or ``<= 0``.
    """
    if is_device_array(spikes):
        from . import losses_cuda
        return losses_cuda.window_counts(spikes, window_bins, ts)
    float_array("spikes", spikes, min_ndim=1)
    if isinstance(window_bins, bool) or not isinstance(window_bins, (int, np.integer)):
        raise TypeError(f"window_bins must be an integer, got {window_bins!r} ({type(window_bins).__name__})")
    if window_bins < 1:
        raise ValueError(f"window_bins must be >= 1, got {window_bins}")
    ts = positive("ts", ts)
    rows = np.ascontiguousarray(spikes, dtype=np.float64).reshape(-1, 1, spikes.shape[-1])
    out = np.empty((rows.shape[0], rows.shape[2]))
    _window_counts_cpu(rows, int(window_bins), ts, out)
    return out.reshape(spikes.shape)


# --------------------------------------------------------------------------- losses

class Loss:
    r"""Base class: a loss :math:`L(s)` with its gradient :math:`\partial L/\partial s`.

    :math:`L = \frac1N \sum_n L_n` over the batch; each subclass defines :math:`L_n` and its gradient.
    Subclasses take ``ts`` (ms) and keyword options.

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors the loss will see; > 0.
    grad : {"exact", "paper"}, default "exact"
        The gradient returned (:data:`GRAD_MODES`): the true derivative, or the formula printed in the
        paper (see the module docstring).

    Raises
    ------
    TypeError
        ``ts`` is not a number.
    ValueError
        ``ts`` is not finite or ``<= 0``, or ``grad`` is not one of :data:`GRAD_MODES`.
    """

    name = "loss"

    def __init__(self, ts: float = 1.0, *, grad: str = "exact"):
        self.ts = positive("ts", ts)
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {', '.join(map(repr, GRAD_MODES))}; got {grad!r}")
        self.grad_mode = grad

    @property
    def options(self) -> dict:
        """The keyword options this loss was built with (for logging)."""
        return {"grad": self.grad_mode}

    def value_and_grad(self, spikes, labels):
        r"""Return ``(value, grad)``: the batch-mean loss and its gradient :math:`\partial L/\partial s`.

        GPU spike tensors are handled by the CUDA kernels of :mod:`pysrm.losses_cuda`.

        Parameters
        ----------
        spikes : ndarray or CUDA device array, shape (N, C, ..., T)
            The output spikes (amplitude ``1/Ts``, bins of ``ts`` ms): ``N`` samples, ``C`` classes, any
            middle axes (the neurons of a class's population), ``T`` bins; float32 or float64.
        labels : array_like of int, shape (N,)
            The class of each sample, in ``0 .. C-1`` (host or device array).  For :class:`SpikeTime`: the
            desired spike tensor, float32 or float64, the shape of ``spikes``.

        Returns
        -------
        value : float
            :math:`L`, the mean over the batch, computed in float64.
        grad : ndarray or CUDA device array
            :math:`\partial L/\partial s` (including the factor :math:`1/N`), or the paper's form with
            ``grad='paper'``; shape and dtype of ``spikes`` (a device array for device ``spikes``).

        Raises
        ------
        TypeError
            ``spikes`` is not a float32/float64 array; ``labels`` is not an integer array (host labels).
        ValueError
            ``spikes`` has fewer than 3 axes, an empty axis or (host) non-finite values; ``labels`` does
            not have shape ``(N,)`` or (host labels) lies outside ``0 .. C-1``.  And by loss: a
            ``window`` longer than the ``T`` bins (:class:`SpikeMax`); a count + ``eps`` that is not
            positive, i.e. negative spikes (:class:`SpikeMax`, :class:`SpikeMaxG`); a target region beyond
            the ``T`` bins or empty (:class:`NumSpikes`); a ``desired`` of another shape, or non-finite
            (:class:`SpikeTime`, with a ``TypeError`` for a non-float one).
        """
        if is_device_array(spikes):
            return self._value_and_grad_cuda(spikes, labels, True)
        return self._value_and_grad_cpu(spikes, labels)

    def value(self, spikes, labels) -> float:
        """The batch-mean loss as a Python float (no gradient is computed).

        Parameters
        ----------
        spikes : ndarray or CUDA device array, shape (N, C, ..., T)
            As for :meth:`Loss.value_and_grad`.
        labels : array_like of int, shape (N,)
            As for :meth:`Loss.value_and_grad` (the desired spike tensor for :class:`SpikeTime`).

        Returns
        -------
        float
            :math:`L`, the mean over the batch, computed in float64.

        Raises
        ------
        TypeError
            As for :meth:`Loss.value_and_grad`.
        ValueError
            As for :meth:`Loss.value_and_grad`.
        """
        if is_device_array(spikes):
            return self._value_cuda(spikes, labels, True)
        return self._value_cpu(spikes, labels)

    # Each loss computes with its own kernels: ``_value_and_grad_cpu`` (the CPU kernels above) and
    # ``_value_and_grad_cuda`` (its function in pysrm.losses_cuda, imported only for device arrays; ``sync=False``
    # returns the value as a pysrm.losses_cuda.PendingLoss).

    def _value_and_grad_cpu(self, spikes, labels):  # pragma: no cover - interface
        raise NotImplementedError

    def _value_cpu(self, spikes, labels) -> float:
        return self._value_and_grad_cpu(spikes, labels)[0]

    def _value_and_grad_cuda(self, spikes, labels, sync):
        raise TypeError(f"no CUDA implementation for loss {self.name!r}")

    def _value_cuda(self, spikes, labels, sync):
        return self._value_and_grad_cuda(spikes, labels, sync)[0]

    def __call__(self, spikes, labels):
        return self.value_and_grad(spikes, labels)

    def check_simulation(self, sim: SimParams, name: str = "t_sample", training: bool = True) -> "Loss":
        """Check this loss against a simulation of ``sim.n_bins`` bins before any batch runs.

        Parameters
        ----------
        sim : pysrm.params.SimParams
            The simulation whose outputs this loss will see (the training one, or the test one).
        name : str, default "t_sample"
            What sets ``sim.t_sample``, for messages (``'t_sample'``, ``'test_t_sample'``, ``'--t-max'``).
        training : bool, default True
            True when the loss trains on this simulation: then also targets it could never reach are an
            error (an evaluation only reports the value).

        Returns
        -------
        pysrm.losses.Loss
            ``self``.

        Raises
        ------
        TypeError
            When ``sim`` is not a :class:`~pysrm.params.SimParams`.
        ValueError
            When ``sim.ts`` differs from the loss's ``ts``, or (by subclass) a window or target region
            longer than the simulation, or a target count the region cannot hold; the message names the
            option, its value and the largest value that works.
        """
        if not isinstance(sim, SimParams):
            raise TypeError(f"sim must be a pysrm.SimParams, got {type(sim).__name__}")
        if abs(sim.ts - self.ts) > 1e-12 * self.ts:
            raise ValueError(f"ts={sim.ts} ms of the simulation differs from the loss ts={self.ts} ms; they must match")
        return self

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(ts={self.ts!r}, {opts})"


class SpikeRate(Loss):
    r"""Spike-rate loss (Spikemax paper eq. 4): squared error of every neuron's rate.

    .. math::

        r_i = \frac{c_i}{T}, \qquad
        \hat r_i = \begin{cases} r_{true} & i = y \\ r_{false} & i \ne y\end{cases},
        \qquad L_n = \sum_i \left(r_i - \hat r_i\right)^2,
        \qquad L = \frac1N \sum_n L_n

    with :math:`c_i = T_s\sum_t s_i[t]`, :math:`T` the length of the spike
    tensor in ms (bins :math:`\times T_s`), rates in spikes per ms.  The
    constant factor is **1** (no :math:`\tfrac12`), as in lava-dl's
    ``SpikeRate`` (MSE with sum reduction).  The sum runs over every neuron;
    all neurons of ``spikes[n, i, ...]`` target the rate of class ``i``.

    Gradient (``'exact'``; ``'paper'`` is the same):

    .. math::

        \frac{\partial L}{\partial s_i[t]} = \frac1N\, 2\left(r_i - \hat r_i\right)\frac{T_s}{T}

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    true_rate : float, default 0.2
        The target rate :math:`r_{true}` of the label class's neurons, in spikes per ms (0.2 = 200 Hz);
        ``>= 0``, at most ``1/ts`` (one spike per bin).
    false_rate : float, default 0.03
        The target rate :math:`r_{false}` of the other classes' neurons, in spikes per ms (0.03 = 30 Hz);
        ``>= 0`` and below ``true_rate``.
    grad : {"exact", "paper"}, default "exact"
        The gradient returned: both give the exact gradient above.

    Raises
    ------
    TypeError
        ``ts``, ``true_rate`` or ``false_rate`` is not a number.
    ValueError
        ``ts`` is not finite or ``<= 0``; ``grad`` is unknown; a rate is negative or not finite, or above
        ``1/ts`` spikes per ms (the message suggests the value in spikes per ms when it looks like Hz);
        ``true_rate <= false_rate``.
    """

    name = "spike-rate"

    def __init__(self, ts: float = 1.0, *, true_rate: float = 0.2, false_rate: float = 0.03, grad: str = "exact"):
        super().__init__(ts, grad=grad)
        self.true_rate = positive("true_rate", true_rate, allow_zero=True)
        self.false_rate = positive("false_rate", false_rate, allow_zero=True)
        max_rate = 1.0 / self.ts
        for key, v in (("true_rate", self.true_rate), ("false_rate", self.false_rate)):
            if v > max_rate * (1 + 1e-12):
                hint = (f"; rates are spikes per ms (did you mean {key}={v / 1000:g}, i.e. {v:g} spikes/s?)"
                        if v / 1000 <= max_rate else "; rates are spikes per ms")
                raise ValueError(f"{key}={v:g} spikes/ms is above {max_rate:g} spikes/ms, the most a neuron can fire "
                                 f"at Ts={self.ts:g} ms (one spike per bin), so the target cannot be reached; expected "
                                 f"{key} <= {max_rate:g}{hint}")
        if self.true_rate <= self.false_rate:
            raise ValueError(f"true_rate={self.true_rate:g} spikes/ms is not above false_rate={self.false_rate:g} "
                             f"spikes/ms: the loss would ask the label neuron to fire no more than the others, so it "
                             f"cannot tell the classes apart; expected true_rate > false_rate (e.g. true_rate=0.2, "
                             f"false_rate=0.03)")

    @property
    def options(self):
        """The keyword options this loss was built with (dict, for logging)."""
        return {"true_rate": self.true_rate, "false_rate": self.false_rate, "grad": self.grad_mode}

    def _value_and_grad_cpu(self, spikes, labels):
        N, C, M, T = _check_spikes(spikes)
        y = _check_labels(labels, N, C)
        c = spikes.reshape(N, C, M, T).sum(axis=-1, dtype=np.float64) * self.ts
        loss = np.empty(N)
        dc = np.empty((N, C, M))
        _spike_rate_cpu(c, y, self.true_rate, self.false_rate, T * self.ts, loss, dc)
        dc *= self.ts / N
        return float(loss.mean()), _fill_time(dc.reshape(spikes.shape[:-1]), spikes.shape, spikes.dtype)

    def _value_and_grad_cuda(self, spikes, labels, sync):
        from .losses_cuda import spike_rate
        return spike_rate(self, spikes, labels, sync)


class _ClassCountLoss(Loss):
    r"""The losses of the global class counts :math:`c_i = T_s \sum_t s_i[t]` (summed over a class's
    population), ``c`` (N, C) float64: each computes its per-sample values into ``loss`` (N,) and
    :math:`\partial L_n/\partial c` into ``dc`` (N, C) with ``_samples_cpu``; ``_grad_scale(T)`` is the
    factor (:math:`T_s`, or the paper's) that turns it into :math:`N\,\partial L/\partial s`."""

    def _samples_cpu(self, c, y, loss, dc):  # pragma: no cover - interface
        raise NotImplementedError

    def _grad_scale(self, T):  # pragma: no cover - interface
        raise NotImplementedError

    def _value_and_grad_cpu(self, spikes, labels):
        N, C, M, T = _check_spikes(spikes)
        y = _check_labels(labels, N, C)
        c = spikes.reshape(N, C, M * T).sum(axis=-1, dtype=np.float64) * self.ts
        loss = np.empty(N)
        dc = np.empty((N, C))
        self._samples_cpu(c, y, loss, dc)
        dc *= self._grad_scale(T) / N
        return float(loss.mean()), _fill_time(dc, spikes.shape, spikes.dtype)


class SpikeMaxG(_ClassCountLoss):
    r"""Spikemax with global counts (paper eq. 12): NLL of the count ratio.

    .. math::

        \tilde c_i = c_i + \epsilon, \quad p_i = \frac{\tilde c_i}{\sum_k \tilde c_k},
        \quad L_n = -\log p_y, \quad L = \frac1N\sum_n L_n

    with :math:`c_i = T_s\sum_t s_i[t]` the (population) count of class
    :math:`i`.

    Gradients, :math:`T` the duration in ms:

    .. math::

        \text{exact:}\quad \frac{\partial L}{\partial s_i[t]}
            = \frac1N\, T_s\, \frac{p_i - y_i}{\tilde c_i}
            = \frac1N\, T_s \left(\frac{1}{\sum_k \tilde c_k} - \frac{y_i}{\tilde c_y}\right)
        \qquad
        \text{paper (eq. 12):}\quad \frac1N\,\frac{p_i - y_i}{\tilde c_i / T}

    (paper = exact :math:`\times\, T/T_s`.)  A silent label neuron gets
    :math:`-\frac1N T_s (1-p_y)/\epsilon < 0`: gradient descent makes it fire.

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    eps : float, default 0.01
        The pseudo-count :math:`\epsilon` (spikes, :data:`DEFAULT_EPS` by default) added to every class count; > 0.
    grad : {"exact", "paper"}, default "exact"
        The gradient returned: ``'exact'`` or the paper's eq. 12 (above).

    Raises
    ------
    TypeError
        ``ts`` or ``eps`` is not a number.
    ValueError
        ``ts`` or ``eps`` is not finite or ``<= 0``; ``grad`` is unknown.
    """

    name = "spikemax-g"

    def __init__(self, ts: float = 1.0, *, eps: float = DEFAULT_EPS, grad: str = "exact"):
        super().__init__(ts, grad=grad)
        self.eps = positive("eps", eps)

    @property
    def options(self):
        """The keyword options this loss was built with (dict, for logging)."""
        return {"eps": self.eps, "grad": self.grad_mode}

    def _samples_cpu(self, c, y, loss, dc):
        cmin = np.empty(len(y))
        _spikemax_g_cpu(c, y, self.eps, loss, dc, cmin)
        if not (cmin > 0).all():
            _raise_nonpositive(cmin, self.eps)

    def _grad_scale(self, T):
        return self.ts if self.grad_mode == "exact" else T * self.ts

    def _value_and_grad_cuda(self, spikes, labels, sync):
        from .losses_cuda import spikemax_g
        return spikemax_g(self, spikes, labels, sync)


class SpikeMaxS(_ClassCountLoss):
    r"""Spikemax-s (paper eqs. 13-14): softmax of the global counts, then NLL.

    .. math::

        p_i = \frac{e^{c_i}}{\sum_k e^{c_k}}, \qquad
        L_n = -\log p_y = \log\sum_k e^{c_k} - c_y, \qquad L = \frac1N\sum_n L_n

    computed with log-sum-exp (subtracting :math:`\max_k c_k`), so it is finite
    for any counts, silent outputs included; no ``eps`` is needed.

    Gradients:

    .. math::

        \text{exact:}\quad \frac{\partial L}{\partial s_i[t]} = \frac1N\, T_s \left(p_i - y_i\right)
        \qquad
        \text{paper (eq. 14):}\quad \frac1N \left(p_i - y_i\right)

    (paper = exact / :math:`T_s`.)

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    grad : {"exact", "paper"}, default "exact"
        The gradient returned: ``'exact'`` or the paper's eq. 14 (above).

    Raises
    ------
    TypeError
        ``ts`` is not a number.
    ValueError
        ``ts`` is not finite or ``<= 0``; ``grad`` is unknown.
    """

    name = "spikemax-s"

    def _samples_cpu(self, c, y, loss, dc):
        _spikemax_s_cpu(c, y, loss, dc)

    def _grad_scale(self, T):
        return self.ts if self.grad_mode == "exact" else 1.0

    def _value_and_grad_cuda(self, spikes, labels, sync):
        from .losses_cuda import spikemax_s
        return spikemax_s(self, spikes, labels, sync)


class SpikeMax(Loss):
    r"""Spikemax with sliding-window counts (paper eqs. 5-8, gradient eq. 11).

    With a window of :math:`W` ms (:math:`W_b = W/T_s` bins) and :math:`T_b`
    time bins:

    .. math::

        c_i[t] = T_s \sum_{t' = \max(0,\, t-W_b+1)}^{t} s_i[t'], \quad
        \tilde c_i[t] = c_i[t] + \epsilon, \quad
        p_i[t] = \frac{\tilde c_i[t]}{\sum_k \tilde c_k[t]}

    .. math::

        l[t] = -\log p_y[t], \qquad L_n = \frac{1}{T_b}\sum_{t=0}^{T_b-1} l[t],
        \qquad L = \frac1N \sum_n L_n

    The window is causal and truncated at 0 for :math:`t < W_b - 1` (it holds
    bins :math:`0..t`); those early bins count in the mean like the others.

    Gradients:

    .. math::

        \text{exact:}\quad \frac{\partial L}{\partial s_i[u]} = \frac1N\,\frac{T_s}{T_b}
            \sum_{t=u}^{\min(u+W_b-1,\, T_b-1)} \frac{p_i[t] - y_i}{\tilde c_i[t]}

    .. math::

        \text{paper (eq. 11):}\quad \frac{\partial L}{\partial s_i[u]} = \frac1N\,
            \frac{p_i[u] - y_i}{\tilde c_i[u] / W}

    The exact form sums over every window that contains bin :math:`u` (an
    :math:`O(T)` reverse running sum per row); the paper's form is local in
    time (only the window ending at :math:`u`) and rate-normalised -- about
    :math:`T_b` times the exact gradient when the counts vary slowly.

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    window : float
        The window :math:`W` in ms; required (the default None is refused), a whole number of bins of
        ``ts`` (:math:`W_b = W/T_s \ge 1`), at most the simulation's length (checked by
        :meth:`SpikeMax.check_simulation`, and against the ``T`` bins of each call).
    eps : float, default 0.01
        The pseudo-count :math:`\epsilon` (spikes, :data:`DEFAULT_EPS` by default) added to every window count; > 0.
    grad : {"exact", "paper"}, default "exact"
        The gradient returned: ``'exact'`` or the paper's eq. 11 (above).

    Raises
    ------
    TypeError
        ``ts``, ``window`` or ``eps`` is not a number.
    ValueError
        ``window`` is None; ``ts``, ``window`` or ``eps`` is not finite or ``<= 0``; ``window`` is shorter
        than one bin or not a whole number of bins (the message suggests a multiple of ``ts``, and the
        value in ms when it looks like seconds); ``grad`` is unknown.
    """

    name = "spikemax"

    def __init__(self, ts: float = 1.0, *, window: float | None = None, eps: float = DEFAULT_EPS,
                 grad: str = "exact"):
        super().__init__(ts, grad=grad)
        if window is None:
            raise ValueError("window (ms) is required for the sliding-window loss 'spikemax'; "
                             "use 'spikemax-g' for global counts")
        self.window = positive("window", window)
        self.window_bins = _bins("window", window, self.ts)
        self.eps = positive("eps", eps)

    @property
    def options(self):
        """The keyword options this loss was built with (dict, for logging)."""
        return {"window": self.window, "eps": self.eps, "grad": self.grad_mode}

    def check_simulation(self, sim: SimParams, name: str = "t_sample", training: bool = True) -> "SpikeMax":
        """As :meth:`Loss.check_simulation`; also a ``window`` longer than the simulation is an error.

        Parameters
        ----------
        sim : pysrm.params.SimParams
            The simulation whose outputs this loss will see.
        name : str, default "t_sample"
            What sets ``sim.t_sample``, for messages.
        training : bool, default True
            Whether the loss trains on this simulation (no effect here beyond the base class's checks).

        Returns
        -------
        SpikeMax
            ``self``.

        Raises
        ------
        TypeError
            ``sim`` is not a :class:`~pysrm.params.SimParams`.
        ValueError
            ``sim.ts`` differs from the loss's ``ts``, or ``window`` is longer than ``sim.t_sample`` (the
            message names both and the largest window that works).
        """
        super().check_simulation(sim, name, training)
        if self.window_bins > sim.n_bins:
            raise ValueError(f"window={self.window:g} ms ({self.window_bins} bins) is longer than the simulation "
                             f"({name}={sim.t_sample:g} ms, {sim.n_bins} bins of Ts={sim.ts:g} ms); expected window "
                             f"<= {sim.t_sample:g} ms (or a longer {name})")
        return self

    def _check_bins(self, T):
        """Raise ``ValueError`` when the window is longer than spikes of ``T`` bins (CPU and CUDA)."""
        if self.window_bins > T:
            raise ValueError(
                f"window={self.window} ms ({self.window_bins} bins) is longer than the simulation "
                f"({T} bins = {T * self.ts} ms); expected window <= {T * self.ts} ms")

    def _value_and_grad_cpu(self, spikes, labels):
        N, C, M, T = _check_spikes(spikes)
        y = _check_labels(labels, N, C)
        self._check_bins(T)
        s = _class_trains(spikes)
        c = np.empty_like(s)
        _window_counts_cpu(s.reshape(N * C, 1, T), self.window_bins, self.ts, c.reshape(N * C, T))
        loss = np.empty(N)
        g = np.empty_like(c)
        cmin = np.empty(N)
        _spikemax_window_cpu(c, y, self.window_bins, self.ts, self.eps, self.grad_mode == "paper",
                             self.window_bins * self.ts, loss, g, cmin)
        if not (cmin > 0).all():
            _raise_nonpositive(cmin, self.eps)
        g *= 1.0 / N
        out = np.empty(spikes.shape, dtype=spikes.dtype)
        out.reshape(N, C, M, T)[...] = g[:, :, None, :]
        return float(loss.mean()), out

    def _value_and_grad_cuda(self, spikes, labels, sync):
        from .losses_cuda import spikemax
        return spikemax(self, spikes, labels, sync)


class _PspLoss(Loss):
    """Shared set-up of the losses that filter with the SRM response."""

    def __init__(self, ts, neuron, sim, grad):
        super().__init__(ts, grad=grad)
        if neuron is None:
            neuron = NeuronParams()
        if not isinstance(neuron, NeuronParams):
            raise TypeError(f"neuron must be a pysrm.NeuronParams, got {type(neuron).__name__}")
        if sim is None:
            # The response is cut where it falls below tolerance; t_sample only bounds it.
            sim = SimParams(ts=self.ts, t_sample=self.ts * 100000)
        if not isinstance(sim, SimParams):
            raise TypeError(f"sim must be a pysrm.SimParams, got {type(sim).__name__}")
        if abs(sim.ts - self.ts) > 1e-12 * self.ts:
            raise ValueError(f"sim.ts={sim.ts} ms differs from the loss ts={self.ts} ms; they must match")
        from .responses import check_responses, srm_kernel
        check_responses(neuron, sim, which=("tau_sr",))  # a spike response of all zeros at this ts is an error
        self.neuron = neuron
        self.sim = sim
        self.kernel = srm_kernel(neuron, sim)

    def _psp(self, x):
        from .ops.psp import psp
        return psp(np.ascontiguousarray(x), self.kernel, self.ts)

    def _psp_backward(self, g):
        from .ops.psp import psp_backward
        return psp_backward(np.ascontiguousarray(g), self.kernel, self.ts)


class NumSpikes(_PspLoss):
    r"""SLAYER's spike count loss (SLAYER-PyTorch ``spikeLoss.numSpikes``).

    A target region of bins :math:`R = [a, b)` with :math:`a = t_{start}/T_s`,
    :math:`b = t_{stop}/T_s`, :math:`n_R = b - a`.  Inside the region the
    error is the count error spread evenly; outside it, spikes are penalised
    like in :class:`SpikeTime` with a desired train of zero (their PSP):

    .. math::

        e_i[t] = \varepsilon * \bigl(s_i \,[t \notin R]\bigr)[t]
            + [t \in R]\,\frac{c^R_i - \hat c_i}{n_R},
        \qquad c^R_i = T_s \sum_{t\in R} s_i[t],
        \qquad \hat c_i = \begin{cases} \text{true\_count} & i = y\\
                                        \text{false\_count} & i \ne y\end{cases}

    .. math::

        L_n = \frac{T_s}{2} \sum_i \sum_t e_i[t]^2, \qquad L = \frac1N \sum_n L_n

    where :math:`\varepsilon * x` is :func:`pysrm.ops.psp.psp` (which includes
    the factor :math:`T_s`) with the SRM response of ``neuron``/``sim``.  This
    is SLAYER's value (which sums over the batch; here it is the mean), per
    neuron: every neuron of ``spikes[n, i, ...]`` targets class ``i``'s count.

    Gradients, with :math:`g = \frac{T_s}{N} e` and :math:`\varepsilon^\top`
    the PSP adjoint (:func:`pysrm.ops.psp.psp_backward`):

    .. math::

        \text{exact:}\quad \frac{\partial L}{\partial s_i[u]} =
            \begin{cases} (\varepsilon^\top g_i)[u] & u \notin R \\
            \frac{T_s}{n_R} \sum_{t \in R} g_i[t] & u \in R \end{cases}
        \qquad
        \text{paper (SLAYER):}\quad \frac{\partial L}{\partial s_i[u]} = (\varepsilon^\top g_i)[u]
        \ \text{ for all } u

    SLAYER-PyTorch computes the count error and the masked desired train from
    detached copies of the output, so its autograd gives the ``'paper'`` form:
    inside the region the count error reaches the spikes through the PSP
    adjoint instead of directly.  Use ``grad='paper'`` to reproduce SLAYER
    training.

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    t_start : float, default 0.0
        Start :math:`t_{start}` (ms) of the target region; ``>= 0``, a whole number of bins.
    t_stop : float or None, default None
        End :math:`t_{stop}` (ms, excluded) of the target region; > ``t_start``, a whole number of bins, at
        most the simulation's length (checked by :meth:`NumSpikes.check_simulation` and on each call).  None: the end
        of the simulation.
    true_count : float, default 60.0
        Target count :math:`\hat c_y` (spikes in the region) of the label class's neurons; ``>= 0``.
    false_count : float, default 10.0
        Target count of the other classes' neurons; ``>= 0`` and below ``true_count``.  (60 and 10 are
        the values of SLAYER's N-MNIST example.)
    neuron : pysrm.params.NeuronParams or None, default None
        Its spike response (``tau_sr``, ms) is the filter :math:`\varepsilon`; None: ``NeuronParams()``.
    sim : pysrm.params.SimParams or None, default None
        Samples the response (:func:`pysrm.responses.srm_kernel`); its ``ts`` must equal ``ts``.  None: a
        ``SimParams`` with this ``ts`` (the response is cut where it falls below tolerance).
    grad : {"exact", "paper"}, default "exact"
        The gradient returned: ``'exact'``, or ``'paper'`` (SLAYER's, above).

    Raises
    ------
    TypeError
        ``ts``, ``t_start``, ``t_stop``, ``true_count`` or ``false_count`` is not a number; ``neuron`` is
        not a :class:`~pysrm.params.NeuronParams` or ``sim`` not a :class:`~pysrm.params.SimParams`.
    ValueError
        ``ts`` is not finite or ``<= 0``; ``grad`` is unknown; ``sim.ts`` differs from ``ts``; the spike
        response sampled at ``Ts`` is all zeros (``tau_sr`` far below ``Ts``,
        :func:`pysrm.responses.check_responses`); ``t_start`` is
        negative, ``t_stop`` is not > 0, either is not finite, shorter than one bin or not a whole number
        of bins; ``t_stop <= t_start``; a count is negative or not finite; ``true_count <= false_count``.

    Warns
    -----
    pysrm.responses.SettingsWarning
        ``tau_sr`` below ``Ts`` or above ``sim.t_sample`` (:func:`pysrm.responses.check_responses`).
    """

    name = "num-spikes"

    def __init__(self, ts: float = 1.0, *, t_start: float = 0.0, t_stop: float | None = None,
                 true_count: float = 60.0, false_count: float = 10.0, neuron: NeuronParams | None = None,
                 sim: SimParams | None = None, grad: str = "exact"):
        super().__init__(ts, neuron, sim, grad)
        self.t_start = positive("t_start", t_start, allow_zero=True)
        self.start_bin = _bins("t_start", t_start, self.ts, allow_zero=True)
        self.t_stop = None if t_stop is None else positive("t_stop", t_stop)
        self.stop_bin = None if t_stop is None else _bins("t_stop", t_stop, self.ts)
        if self.stop_bin is not None and self.stop_bin <= self.start_bin:
            raise ValueError(f"t_stop={t_stop} ms must be greater than t_start={t_start} ms")
        self.true_count = positive("true_count", true_count, allow_zero=True)
        self.false_count = positive("false_count", false_count, allow_zero=True)
        if self.true_count <= self.false_count:
            raise ValueError(f"true_count={self.true_count:g} is not above false_count={self.false_count:g}: the loss "
                             f"would ask the label neuron for no more spikes than the others, so it cannot tell the "
                             f"classes apart; expected true_count > false_count (e.g. true_count=60, false_count=10)")

    @property
    def options(self):
        """The keyword options this loss was built with (dict, for logging)."""
        return {"t_start": self.t_start, "t_stop": self.t_stop, "true_count": self.true_count,
                "false_count": self.false_count, "neuron": self.neuron, "sim": self.sim, "grad": self.grad_mode}

    def check_simulation(self, sim: SimParams, name: str = "t_sample", training: bool = True) -> "NumSpikes":
        """As :meth:`Loss.check_simulation`; also a target region beyond the simulation, and (``training``) a
        ``true_count`` above the spikes the region can hold (one per bin), are errors.

        Parameters
        ----------
        sim : pysrm.params.SimParams
            The simulation whose outputs this loss will see.
        name : str, default "t_sample"
            What sets ``sim.t_sample``, for messages.
        training : bool, default True
            True when the loss trains on this simulation: then a ``true_count`` above the bins of the
            target region is an error too.

        Returns
        -------
        NumSpikes
            ``self``.

        Raises
        ------
        TypeError
            ``sim`` is not a :class:`~pysrm.params.SimParams`.
        ValueError
            ``sim.ts`` differs from the loss's ``ts``; ``t_stop`` is beyond ``sim.t_sample``; ``t_start``
            leaves an empty target region; (``training``) ``true_count`` exceeds the region's bins.  The
            message names the option, its value and the largest value that works.
        """
        super().check_simulation(sim, name, training)
        T = sim.n_bins
        what = f"the simulation ({name}={sim.t_sample:g} ms, {T} bins of Ts={sim.ts:g} ms)"
        b = T if self.stop_bin is None else self.stop_bin
        if b > T:
            raise ValueError(f"t_stop={self.t_stop:g} ms is beyond {what}; expected t_stop <= {sim.t_sample:g} ms")
        if self.start_bin >= b:
            raise ValueError(f"t_start={self.t_start:g} ms leaves an empty target region in {what}; expected t_start "
                             f"< {b * sim.ts:g} ms")
        n_r = b - self.start_bin
        if training and self.true_count > n_r:
            raise ValueError(f"true_count={self.true_count:g} spikes cannot be reached: the target region of {what} "
                             f"holds {n_r} bins and a neuron fires at most once per bin; expected true_count <= {n_r} "
                             f"(or a longer {name})")
        return self

    def _region(self, T):
        a = self.start_bin
        b = T if self.stop_bin is None else self.stop_bin
        if b > T:
            raise ValueError(
                f"t_stop={self.t_stop} ms (bin {b}) is beyond the simulation ({T} bins = {T * self.ts} ms); "
                f"expected t_stop <= {T * self.ts} ms")
        if a >= b:
            raise ValueError(
                f"t_start={self.t_start} ms (bin {a}) leaves an empty target region in a simulation of "
                f"{T} bins ({T * self.ts} ms)")
        return a, b

    def _error(self, spikes, labels):
        N, C, M, T = _check_spikes(spikes)
        y = _check_labels(labels, N, C)
        a, b = self._region(T)
        s = spikes.reshape(N, C, M, T)
        outside = s.copy()
        outside[..., a:b] = 0
        e = self._psp(outside)
        target = np.where(np.arange(C)[None, :] == y[:, None], self.true_count, self.false_count)
        cr = s[..., a:b].sum(axis=-1, dtype=np.float64) * self.ts
        e[..., a:b] += ((cr - target[:, :, None]) / (b - a)).astype(e.dtype)[..., None]
        value = 0.5 * self.ts * float(np.sum(np.square(e, dtype=np.float64))) / N
        return value, e, N, (a, b)

    def _value_cpu(self, spikes, labels):
        return self._error(spikes, labels)[0]

    def _value_and_grad_cpu(self, spikes, labels):
        value, e, N, (a, b) = self._error(spikes, labels)
        g = e * e.dtype.type(self.ts / N)
        grad = self._psp_backward(g)
        if self.grad_mode == "exact":
            inside = g[..., a:b].sum(axis=-1, dtype=np.float64) * (self.ts / (b - a))
            grad[..., a:b] = inside.astype(grad.dtype)[..., None]
        return value, grad.reshape(spikes.shape)

    def _value_and_grad_cuda(self, spikes, labels, sync):
        from .losses_cuda import num_spikes
        return num_spikes(self, spikes, labels, sync)

    def _value_cuda(self, spikes, labels, sync):
        from .losses_cuda import num_spikes_value
        return num_spikes_value(self, spikes, labels, sync)


class SpikeTime(_PspLoss):
    r"""SLAYER's spike time loss (SLAYER-PyTorch ``spikeLoss.spikeTime``).

    A van Rossum-like distance between the output and a desired spike tensor
    :math:`\hat s` of the same shape:

    .. math::

        e = \varepsilon * (s - \hat s), \qquad
        L_n = \frac{T_s}{2} \sum_{i,t} e_i[t]^2, \qquad L = \frac1N\sum_n L_n

    Gradient (``'exact'``; ``'paper'`` is the same, SLAYER's autograd gives it):

    .. math::

        \frac{\partial L}{\partial s} = \varepsilon^\top\!\left(\frac{T_s}{N}\, e\right)

    Call as ``value_and_grad(spikes, desired)``: ``desired`` has the shape of
    ``spikes`` (float32 or float64, cast to ``spikes``'s dtype).

    Parameters
    ----------
    ts : float, default 1.0
        The bin width ``Ts`` in ms of the spike tensors; > 0.
    neuron : pysrm.params.NeuronParams or None, default None
        Its spike response (``tau_sr``, ms) is the filter :math:`\varepsilon`; None: ``NeuronParams()``.
    sim : pysrm.params.SimParams or None, default None
        Samples the response (:func:`pysrm.responses.srm_kernel`); its ``ts`` must equal ``ts``.  None: a
        ``SimParams`` with this ``ts`` (the response is cut where it falls below tolerance).
    grad : {"exact", "paper"}, default "exact"
        Accepted for uniformity; both give the gradient above.

    Raises
    ------
    TypeError
        ``ts`` is not a number; ``neuron`` is not a :class:`~pysrm.params.NeuronParams` or ``sim`` not a
        :class:`~pysrm.params.SimParams`.
    ValueError
        ``ts`` is not finite or ``<= 0``; ``grad`` is unknown; ``sim.ts`` differs from ``ts``; the spike
        response sampled at ``Ts`` is all zeros (``tau_sr`` far below ``Ts``,
        :func:`pysrm.responses.check_responses`).

    Warns
    -----
    pysrm.responses.SettingsWarning
        ``tau_sr`` below ``Ts`` or above ``sim.t_sample`` (:func:`pysrm.responses.check_responses`).
    """

    name = "spike-time"

    def __init__(self, ts: float = 1.0, *, neuron: NeuronParams | None = None, sim: SimParams | None = None,
                 grad: str = "exact"):
        super().__init__(ts, neuron, sim, grad)

    @property
    def options(self):
        """The keyword options this loss was built with (dict, for logging)."""
        return {"neuron": self.neuron, "sim": self.sim, "grad": self.grad_mode}

    def _error(self, spikes, desired):
        N, _, _, _ = _check_spikes(spikes)
        float_array("desired", desired)
        if desired.shape != spikes.shape:
            raise ValueError(f"desired has shape {desired.shape} but spikes has shape {spikes.shape}; "
                             f"they must match")
        e = self._psp(spikes - desired.astype(spikes.dtype, copy=False))
        return 0.5 * self.ts * float(np.sum(np.square(e, dtype=np.float64))) / N, e, N

    def _value_cpu(self, spikes, desired):
        return self._error(spikes, desired)[0]

    def _value_and_grad_cpu(self, spikes, desired):
        value, e, N = self._error(spikes, desired)
        return value, self._psp_backward(e * e.dtype.type(self.ts / N))

    def _value_and_grad_cuda(self, spikes, desired, sync):
        from .losses_cuda import spike_time
        return spike_time(self, spikes, desired, sync)

    def _value_cuda(self, spikes, desired, sync):
        from .losses_cuda import spike_time_value
        return spike_time_value(self, spikes, desired, sync)


_CLASSES = {cls.name: cls for cls in (SpikeRate, SpikeMax, SpikeMaxG, SpikeMaxS, NumSpikes, SpikeTime)}


def _option_names(cls):
    return tuple(p.name for p in inspect.signature(cls.__init__).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


def make_loss(name: str, ts: float = 1.0, **options) -> Loss:
    """Build the loss called ``name`` (one of :data:`LOSSES`) for bins of ``ts`` ms.

    Names are case-insensitive and ``_`` may stand for ``-`` (``spikemax_g``).
    The losses and their equations are those of the module docstring.

    Parameters
    ----------
    name : str
        One of :data:`LOSSES`: ``'spike-rate'`` (:class:`SpikeRate`), ``'spikemax'`` (:class:`SpikeMax`,
        needs ``window``), ``'spikemax-g'`` (:class:`SpikeMaxG`), ``'spikemax-s'`` (:class:`SpikeMaxS`),
        ``'num-spikes'`` (:class:`NumSpikes`), ``'spike-time'`` (:class:`SpikeTime`).
    ts : float, default 1.0
        The bin width ``Ts`` in ms; > 0.
    **options
        The keyword options of that loss's class (e.g. ``window`` in ms, ``eps``, ``true_rate`` in spikes
        per ms, ``grad``), with its defaults.

    Returns
    -------
    Loss
        An instance of the loss's class.

    Raises
    ------
    TypeError
        ``name`` is not a string; an option is not one of that loss (the message lists its options); or
        as raised by the loss's constructor (an option of the wrong type).
    ValueError
        ``name`` is not a known loss (the message lists :data:`LOSSES`); or as raised by the loss's
        constructor (an option out of range, e.g. a missing ``window`` for ``'spikemax'``).
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {name!r} ({type(name).__name__})")
    key = name.strip().lower().replace("_", "-")
    if key not in _CLASSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    cls = _CLASSES[key]
    valid = _option_names(cls)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r} for loss {key!r}; valid options: {', '.join(valid)}")
    return cls(ts, **options)


# --------------------------------------------------------------------------- gradient check

def _fd_spikes(rng, shape, ts):
    """Spike tensor mixing zeros, spikes of 1/ts and real values (float64)."""
    u = rng.random(shape)
    s = np.where(u < 0.4, 0.0, np.where(u < 0.7, 1.0 / ts, rng.uniform(0.05, 2.0, shape) / ts))
    return s.astype(np.float64)


def finite_difference_error(f, grad, x, h: float = 1e-6) -> float:
    r"""Max relative error of ``grad`` against central differences of ``f`` at ``x``.

    .. math::

        \mathrm{err} = \frac{\max_j |g_j - \hat g_j|}{\max_j |\hat g_j|}, \qquad
        \hat g_j = \frac{f(x + h e_j) - f(x - h e_j)}{2h}

    (the denominator is floored at 1e-12).

    Parameters
    ----------
    f : callable
        ``f(x) -> float``, the loss value at a float64 array of the shape of ``x``; it is called
        ``2 * x.size`` times on one float64 copy of ``x``, perturbed in place and restored.
    grad : array_like
        The analytic gradient :math:`g` to check, the shape of ``x``.
    x : array_like
        The point (e.g. a spike tensor ``(N, C, ..., T)``); copied to float64.
    h : float, default 1e-6
        The step, in the unit of ``x``.

    Returns
    -------
    float
        The max relative error ``err`` (0 for a perfect gradient).
    """
    from .gradcheck import numeric_gradient, relative_error
    x = np.array(x, dtype=np.float64)
    return relative_error(grad, numeric_gradient(lambda: f(x), x, h))


def gradcheck_cases():
    """Gradient checks of every loss, one per case: ``[(name, fn)]``.

    Each ``fn()`` checks one loss (exact mode, float64) by central finite
    differences on a small random input (a fixed seed per case) and returns the
    max relative error (see :func:`finite_difference_error`; expected below
    1e-6).

    Returns
    -------
    list of (str, callable)
        ``name`` (the loss and its setting, e.g. ``'spikemax (W=3 bins)'``) and ``fn() -> float``; seven
        cases covering the six losses.
    """
    specs = [
        ("spike-rate", "spike-rate", {"true_rate": 0.5, "false_rate": 0.1}, (3, 3, 7), 1.0),
        ("spikemax (W=3 bins)", "spikemax", {"window": 3.0}, (3, 3, 8), 1.0),
        ("spikemax (W=2 bins, ts=0.5)", "spikemax", {"window": 1.0}, (2, 3, 1, 2, 6), 0.5),
        ("spikemax-g", "spikemax-g", {}, (3, 4, 6), 1.0),
        ("spikemax-s", "spikemax-s", {}, (3, 4, 6), 0.5),
        ("num-spikes", "num-spikes", {"t_start": 2.0, "t_stop": 6.0, "true_count": 3.0, "false_count": 1.0},
         (2, 3, 9), 1.0),
        ("spike-time", "spike-time", {}, (2, 2, 8), 1.0),
    ]
    cases = []
    for i, (label, name, opts, shape, ts) in enumerate(specs):
        def fn(name=name, opts=opts, shape=shape, ts=ts, seed=1000 + i):
            rng = np.random.default_rng(seed)
            s = _fd_spikes(rng, shape, ts)
            loss = make_loss(name, ts=ts, grad="exact", **opts)
            if name == "spike-time":
                target = _fd_spikes(rng, shape, ts)
            else:
                target = rng.integers(0, shape[1], shape[0])
            grad = loss.value_and_grad(s, target)[1]
            return finite_difference_error(lambda x: loss.value(x, target), grad, s)
        cases.append((label, fn))
    return cases
