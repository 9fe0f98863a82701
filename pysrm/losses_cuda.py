r"""CUDA versions of the losses of :mod:`pysrm.losses` (value and gradient on the device).

Every formula is the one in the class docstrings of :mod:`pysrm.losses`, and
the per-sample math is the CPU's own: the plain functions of :mod:`pysrm.losses`
(``window_count_row``, ``spike_rate_sample``, ``spikemax_g_sample``,
``spikemax_s_sample``, ``spikemax_bin``, ``spikemax_grad_row``), compiled here
with ``cuda.jit(device=True)``; only the schedule differs (one thread per
sample, bin or row instead of a ``prange`` loop).  Like the CPU kernels they
compute in float64 (inputs are read as float64, the gradient is rounded to the
dtype of the spikes at the end).  Spikes are viewed as ``(N, C, M, T)`` (``M`` = the
neurons of a class population, 1 for the usual ``(N, classes, 1, 1, T)``).

Each loss runs its own kernels: :class:`pysrm.losses.Loss` subclasses call
their function here (``spike_rate``, ``spikemax``, ``spikemax_g``,
``spikemax_s``, ``num_spikes``, ``spike_time``) from ``_value_and_grad_cuda``.

Entry points (``loss`` is a :class:`pysrm.losses.Loss`)::

    value, grad = value_and_grad(loss, spikes, labels)          # value: float (one small copy back)
    pending, grad = value_and_grad(loss, spikes, labels, sync=False)  # pending.get() -> float, later
    v = value(loss, spikes, labels)
    c = window_counts(spikes, window_bins, ts)                  # float64 device array
    n = class_counts(spikes, ts)                                # (N, classes) float64 device array

Only a per-sample array (loss and smallest count of each sample, ``N x 2``
float64) comes back to the host, and with ``sync=False`` not until
``pending.get()``; the gradient stays on the device.

Values read from the spike-dtype arrays are widened with ``np.float64(...)``
before they are accumulated (so that Numba's CUDA simulator, which runs the
kernels as NumPy scalar code, accumulates in float64 too).

Kernels and thread mapping (grid-stride loops):

* ``_row_sums``: one thread per row ``(n, k, m)``: :math:`c = T_s \sum_t s[t]`
  over all bins (spike-rate) or a bin range (num-spikes' region);
* ``_class_sums``: one thread per ``(n, k)``: the population count over ``m``
  and ``t`` (spikemax-g, spikemax-s);
* ``_spike_rate_samples``, ``_spikemax_g_samples``, ``_spikemax_s_samples``: one
  thread per sample: the loss and :math:`\partial L_n/\partial c` (the per-sample functions);
* ``_fill_time``: one thread per gradient element: broadcast
  :math:`\partial L/\partial c` (times a factor) along time;
* ``_window_counts``: one thread per population ``(n, k)`` (or row): causal sliding-window
  counts, a running sum (:math:`O(T)` per row; ``window_count_row``);
* ``_spikemax_terms``: one thread per ``(n, t)``: :math:`l[t] = \log S[t] - \log\tilde c_y[t]`
  and :math:`g_k[t] = 1/S[t] - y_k/\tilde c_y[t]` (``spikemax_bin``);
* ``_spikemax_reduce``: one thread per sample: mean of :math:`l` and smallest count;
* ``_spikemax_grad``: one thread per ``(n, k)``: the exact gradient (reverse
  running sum over the :math:`W_b` windows containing each bin) or the paper's
  local form (``spikemax_grad_row``), written to all ``m``;
* num-spikes / spike-time: elementwise kernels (region mask, difference,
  scaling) around the CUDA PSP and its adjoint (:mod:`pysrm.ops.psp_cuda`),
  ``_region_error`` / ``_region_grad`` (one thread per row) for the count error
  inside the target region, and ``_sum_squares`` (one thread per sample).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import cuda as dev
from . import losses as L
from .backend import is_device_array
from .events import EventBatch
from .ops import psp_cuda

# the per-sample (per-row) functions of pysrm.losses, the CPU kernels' definitions, compiled as device functions
_window_count_row = cuda.jit(device=True, cache=True)(L.window_count_row)
_spike_rate_sample = cuda.jit(device=True, cache=True)(L.spike_rate_sample)
_spikemax_g_sample = cuda.jit(device=True, cache=True)(L.spikemax_g_sample)
_spikemax_s_sample = cuda.jit(device=True, cache=True)(L.spikemax_s_sample)
_spikemax_bin = cuda.jit(device=True, cache=True)(L.spikemax_bin)
_spikemax_grad_row = cuda.jit(device=True, cache=True)(L.spikemax_grad_row)


# --------------------------------------------------------------------------- kernels

@cuda.jit(cache=True)
def _row_sums(s, t0, t1, ts, out):
    # out[r] = ts * sum_{t0 <= t < t1} s[r, t]   (float64)
    R = s.shape[0]
    for r in range(cuda.grid(1), R, cuda.gridsize(1)):
        acc = 0.0
        for t in range(t0, t1):
            acc += np.float64(s[r, t])
        out[r] = acc * ts


@cuda.jit(cache=True)
def _class_sums(s, ts, out):
    # s: (N, C, M*T); out[n, k] = ts * sum s[n, k, :]
    N, C, Q = s.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        n = idx // C
        k = idx - n * C
        acc = 0.0
        for q in range(Q):
            acc += np.float64(s[n, k, q])
        out[n, k] = acc * ts


@cuda.jit(cache=True)
def _spike_rate_samples(c, labels, true_rate, false_rate, duration, res, dc):
    # res[n, 0] = L_n, res[n, 1] = 1 (no count is logged); c, dc: (N, C, M)
    for n in range(cuda.grid(1), c.shape[0], cuda.gridsize(1)):
        res[n, 0] = _spike_rate_sample(c[n], labels[n], true_rate, false_rate, duration, dc[n])
        res[n, 1] = 1.0


@cuda.jit(cache=True)
def _spikemax_g_samples(c, labels, eps, res, dc):
    # res[n, 0] = L_n, res[n, 1] = smallest count + eps; c, dc: (N, C)
    for n in range(cuda.grid(1), c.shape[0], cuda.gridsize(1)):
        loss, cmin = _spikemax_g_sample(c[n], labels[n], eps, dc[n])
        res[n, 0] = loss
        res[n, 1] = cmin


@cuda.jit(cache=True)
def _spikemax_s_samples(c, labels, res, dc):
    # res[n, 0] = L_n, res[n, 1] = 1; c, dc: (N, C)
    for n in range(cuda.grid(1), c.shape[0], cuda.gridsize(1)):
        res[n, 0] = _spikemax_s_sample(c[n], labels[n], dc[n])
        res[n, 1] = 1.0


@cuda.jit(cache=True)
def _fill_time(dc, factor, out):
    # out[r, q] = (dc[r] * factor) rounded to out's dtype; dc: (R,), out: (R, Q)
    R, Q = out.shape
    for idx in range(cuda.grid(1), R * Q, cuda.gridsize(1)):
        r = idx // Q
        out[r, idx - r * Q] = dc[r] * factor


@cuda.jit(cache=True)
def _window_counts(s, wb, ts, out):
    # s: (R, M, T) populations of M rows; out[r, t] = ts * their count over the window ending at t
    for r in range(cuda.grid(1), s.shape[0], cuda.gridsize(1)):
        _window_count_row(s[r], wb, ts, out[r])


@cuda.jit(cache=True)
def _spikemax_terms(c, labels, eps, l, cmin_t, g):
    # one thread per (n, t): l[n, t], cmin_t[n, t] and g[n, :, t] of the bin
    N, C, T = c.shape
    for idx in range(cuda.grid(1), N * T, cuda.gridsize(1)):
        n = idx // T
        t = idx - n * T
        lt, mn = _spikemax_bin(c[n], labels[n], t, eps, g[n])
        l[n, t] = lt
        cmin_t[n, t] = mn


@cuda.jit(cache=True)
def _spikemax_reduce(l, cmin_t, res):
    N, T = l.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        acc = 0.0
        mn = math.inf
        for t in range(T):
            acc += l[n, t]
            if cmin_t[n, t] < mn:
                mn = cmin_t[n, t]
        res[n, 0] = acc / T
        res[n, 1] = mn


@cuda.jit(cache=True)
def _spikemax_grad(g, wb, ts, paper, window_ms, inv_n, out):
    # one thread per (n, k): the class's gradient in place in g (N, C, T) float64, then times 1/N into
    # out (N, C, M, T) in the spikes dtype, for every neuron m of the class
    N, C, M, T = out.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        n = idx // C
        k = idx - n * C
        _spikemax_grad_row(g[n, k], wb, ts, paper, window_ms)
        for t in range(T):
            v = g[n, k, t] * inv_n
            for m in range(M):
                out[n, k, m, t] = v


@cuda.jit(cache=True)
def _mask_region(s, a, b, out):
    # out = s with bins a <= t < b set to zero; s, out: (R, T)
    R, T = s.shape
    for idx in range(cuda.grid(1), R * T, cuda.gridsize(1)):
        t = idx % T
        r = idx // T
        out[r, t] = 0.0 if (t >= a and t < b) else s[r, t]


@cuda.jit(cache=True)
def _region_error(s, e, labels, C, M, a, b, ts, true_count, false_count, buf):
    # e[r, a:b] += ((ts * sum_{a<=t<b} s[r, t]) - target) / (b - a), rounded to e's dtype first
    # (through buf, an array of e's dtype, as the CPU's .astype(e.dtype))
    R, T = s.shape
    for r in range(cuda.grid(1), R, cuda.gridsize(1)):
        n = r // (C * M)
        k = (r // M) % C
        acc = 0.0
        for t in range(a, b):
            acc += np.float64(s[r, t])
        tgt = true_count if k == labels[n] else false_count
        buf[r] = (acc * ts - tgt) / (b - a)
        add = buf[r]
        for t in range(a, b):
            e[r, t] += add


@cuda.jit(cache=True)
def _region_grad(g, grad, a, b, factor):
    # grad[r, a:b] = (sum_{a<=t<b} g[r, t] (float64)) * factor, rounded to grad's dtype
    R, T = g.shape
    for r in range(cuda.grid(1), R, cuda.gridsize(1)):
        acc = 0.0
        for t in range(a, b):
            acc += np.float64(g[r, t])
        v = acc * factor
        for t in range(a, b):
            grad[r, t] = v


@cuda.jit(cache=True)
def _sum_squares(e, half_ts, res):
    # res[n, 0] = half_ts * sum of e[n, :]**2 (float64); res[n, 1] = 1
    N, Q = e.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        acc = 0.0
        for q in range(Q):
            v = np.float64(e[n, q])
            acc += v * v
        res[n, 0] = half_ts * acc
        res[n, 1] = 1.0


@cuda.jit(cache=True)
def _sub_scaled(x, y, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = x[i] - y[i]


@cuda.jit(cache=True)
def _scale_into(x, s, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = x[i] * s


# --------------------------------------------------------------------------- results

class PendingLoss:
    """A loss value still on the device; :meth:`get` (or ``float()``) copies ``N x 2`` numbers back.

    ``get`` also raises the CPU loss's ``ValueError`` for negative spikes (a count + eps <= 0).
    """

    def __init__(self, res, eps=None, reduce="mean", N=1):
        self._res, self._eps, self._reduce, self._N = res, eps, reduce, N
        self._value = None

    def get(self) -> float:
        if self._value is None:
            host = self._res.copy_to_host()
            if self._eps is not None and not (host[:, 1] > 0).all():
                L._raise_nonpositive(host[:, 1], self._eps)
            self._value = float(host[:, 0].mean())
        return self._value

    __float__ = get

    def __repr__(self):
        return f"PendingLoss({'pending' if self._value is None else self._value})"


def _finish(res, grad, sync, eps=None):
    pending = PendingLoss(res, eps)
    return (pending.get() if sync else pending), grad


# --------------------------------------------------------------------------- checks

def _check_spikes(spikes):
    shape = tuple(spikes.shape)
    if not is_device_array(spikes) or isinstance(spikes, EventBatch):
        raise TypeError(f"spikes must be a device array, got {type(spikes).__name__}")
    if np.dtype(spikes.dtype).type not in (np.float32, np.float64):
        raise TypeError(f"spikes must have dtype float32 or float64, got {spikes.dtype}")
    if len(shape) < 3:
        raise ValueError(f"spikes must have at least 3 dimensions, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"spikes must have no empty axis, got shape {shape}")
    N, C, T = shape[0], shape[1], shape[-1]
    M = int(np.prod(shape[2:-1], dtype=np.int64))
    return N, C, M, T


def _labels(labels, N, C):
    if is_device_array(labels):
        if tuple(labels.shape) != (N,):
            raise ValueError(f"labels must have shape ({N},) (one per sample), got shape {tuple(labels.shape)}")
        return dev.astype(labels, np.int64)
    return dev.to_device(L._check_labels(labels, N, C))


# --------------------------------------------------------------------------- losses

def window_counts(spikes, window_bins: int, ts: float = 1.0):
    """Device version of :func:`pysrm.losses.window_counts` (float64 result, same shape)."""
    if isinstance(window_bins, bool) or not isinstance(window_bins, (int, np.integer)):
        raise TypeError(f"window_bins must be an integer, got {window_bins!r} ({type(window_bins).__name__})")
    if window_bins < 1:
        raise ValueError(f"window_bins must be >= 1, got {window_bins}")
    ts = L.positive("ts", ts)
    T = tuple(spikes.shape)[-1]
    rows = spikes.size // T
    out = dev.empty(tuple(spikes.shape), np.float64)
    dev.launch(_window_counts, rows, spikes.reshape(rows, 1, T), int(window_bins), ts, out.reshape(rows, T))
    return out


def class_counts(spikes, ts: float = 1.0):
    """Spike count of every class population, ``ts * sum`` over the middle axes and time: a float64
    device array ``(N, classes)`` (copy it back with ``.copy_to_host()`` for predictions/metrics)."""
    N, C, M, T = _check_spikes(spikes)
    c = dev.empty((N, C), np.float64)
    dev.launch(_class_sums, N * C, spikes.reshape(N, C, M * T), L.positive("ts", ts), c)
    return c


def spike_rate(loss, spikes, labels, sync):
    """:class:`pysrm.losses.SpikeRate` on the device: ``(value, grad)``."""
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    R = N * C * M
    c = dev.empty((N, C, M), np.float64)
    dev.launch(_row_sums, R, spikes.reshape(R, T), 0, T, loss.ts, c.reshape(R))
    res = dev.empty((N, 2), np.float64)
    dc = dev.empty((N, C, M), np.float64)
    dev.launch(_spike_rate_samples, N, c, y, loss.true_rate, loss.false_rate, T * loss.ts, res, dc)
    grad = dev.empty(tuple(spikes.shape), spikes.dtype)
    dev.launch(_fill_time, R * T, dc.reshape(R), loss.ts / N, grad.reshape(R, T))
    return _finish(res, grad, sync)


def _class_count_loss(loss, spikes, labels, sync, samples, *scalars, eps=None):
    # the global class-count losses: counts c (N, C), then the loss's per-sample kernel ``samples``
    # (c, labels, *scalars, res, dc), then dL/dc * grad_scale / N broadcast over the class's neurons and bins
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    c = dev.empty((N, C), np.float64)
    dev.launch(_class_sums, N * C, spikes.reshape(N, C, M * T), loss.ts, c)
    res = dev.empty((N, 2), np.float64)
    dc = dev.empty((N, C), np.float64)
    dev.launch(samples, N, c, y, *scalars, res, dc)
    grad = dev.empty(tuple(spikes.shape), spikes.dtype)
    dev.launch(_fill_time, N * C * M * T, dc.reshape(N * C), loss._grad_scale(T) / N, grad.reshape(N * C, M * T))
    return _finish(res, grad, sync, eps)


def spikemax_g(loss, spikes, labels, sync):
    """:class:`pysrm.losses.SpikeMaxG` on the device: ``(value, grad)``."""
    return _class_count_loss(loss, spikes, labels, sync, _spikemax_g_samples, loss.eps, eps=loss.eps)


def spikemax_s(loss, spikes, labels, sync):
    """:class:`pysrm.losses.SpikeMaxS` on the device: ``(value, grad)``."""
    return _class_count_loss(loss, spikes, labels, sync, _spikemax_s_samples)


def spikemax(loss, spikes, labels, sync):
    """:class:`pysrm.losses.SpikeMax` on the device: ``(value, grad)``."""
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    loss._check_bins(T)
    wb = int(loss.window_bins)
    c = dev.empty((N, C, T), np.float64)
    dev.launch(_window_counts, N * C, spikes.reshape(N * C, M, T), wb, loss.ts, c.reshape(N * C, T))
    l = dev.empty((N, T), np.float64)
    cmin_t = dev.empty((N, T), np.float64)
    g = dev.empty((N, C, T), np.float64)
    dev.launch(_spikemax_terms, N * T, c, y, loss.eps, l, cmin_t, g)
    res = dev.empty((N, 2), np.float64)
    dev.launch(_spikemax_reduce, N, l, cmin_t, res)
    grad = dev.empty(tuple(spikes.shape), spikes.dtype)
    dev.launch(_spikemax_grad, N * C, g, wb, loss.ts, loss.grad_mode == "paper", wb * loss.ts, 1.0 / N,
               grad.reshape(N, C, M, T))
    return _finish(res, grad, sync, loss.eps)


def _num_spikes_error(loss, spikes, labels):
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    a, b = loss._region(T)
    R = N * C * M
    s2 = spikes.reshape(R, T)
    outside = dev.empty((R, T), spikes.dtype)
    dev.launch(_mask_region, R * T, s2, a, b, outside)
    e = psp_cuda.psp(outside, loss.kernel, loss.ts)
    buf = dev.empty((R,), spikes.dtype)
    dev.launch(_region_error, R, s2, e, y, C, M, a, b, loss.ts, float(loss.true_count), float(loss.false_count),
               buf)
    res = dev.empty((N, 2), np.float64)
    dev.launch(_sum_squares, N, e.reshape(N, C * M * T), 0.5 * loss.ts, res)
    return res, e, N, (a, b)


def num_spikes(loss, spikes, labels, sync):
    """:class:`pysrm.losses.NumSpikes` on the device: ``(value, grad)``."""
    res, e, N, (a, b) = _num_spikes_error(loss, spikes, labels)
    dt = np.dtype(e.dtype)
    g = dev.empty(tuple(e.shape), dt)
    dev.launch(_scale_into, e.size, e.reshape(e.size), dt.type(loss.ts / N), g.reshape(g.size))
    grad = psp_cuda.psp_backward(g, loss.kernel, loss.ts)
    if loss.grad_mode == "exact":
        dev.launch(_region_grad, g.shape[0], g, grad, a, b, loss.ts / (b - a))
    return _finish(res, grad.reshape(*spikes.shape), sync)


def num_spikes_value(loss, spikes, labels, sync):
    """The value of :class:`pysrm.losses.NumSpikes` on the device (no gradient)."""
    return _finish(_num_spikes_error(loss, spikes, labels)[0], None, sync)[0]


def _spike_time_error(loss, spikes, desired):
    N, _, _, _ = _check_spikes(spikes)
    if not is_device_array(desired):
        L.float_array("desired", desired)
    if tuple(desired.shape) != tuple(spikes.shape):
        raise ValueError(f"desired has shape {tuple(desired.shape)} but spikes has shape {tuple(spikes.shape)}; "
                         f"they must match")
    desired = dev.to_device(desired, spikes.dtype)
    diff = dev.empty(tuple(spikes.shape), spikes.dtype)
    dev.launch(_sub_scaled, spikes.size, spikes.reshape(spikes.size), desired.reshape(desired.size),
               diff.reshape(diff.size))
    e = psp_cuda.psp(diff, loss.kernel, loss.ts)
    res = dev.empty((N, 2), np.float64)
    dev.launch(_sum_squares, N, e.reshape(N, e.size // N), 0.5 * loss.ts, res)
    return res, e, N


def spike_time(loss, spikes, desired, sync):
    """:class:`pysrm.losses.SpikeTime` on the device: ``(value, grad)``."""
    res, e, N = _spike_time_error(loss, spikes, desired)
    dt = np.dtype(e.dtype)
    g = dev.empty(tuple(e.shape), dt)
    dev.launch(_scale_into, e.size, e.reshape(e.size), dt.type(loss.ts / N), g.reshape(g.size))
    return _finish(res, psp_cuda.psp_backward(g, loss.kernel, loss.ts), sync)


def spike_time_value(loss, spikes, desired, sync):
    """The value of :class:`pysrm.losses.SpikeTime` on the device (no gradient)."""
    return _finish(_spike_time_error(loss, spikes, desired)[0], None, sync)[0]


def value_and_grad(loss, spikes, labels, sync: bool = True):
    """``(value, grad)`` of ``loss`` for device ``spikes``: the batch-mean loss (a float, or a
    :class:`PendingLoss` with ``sync=False``) and the gradient as a device array like ``spikes``.

    ``labels`` (``desired`` for spike-time) may be on the host or the device.  Each loss runs its own
    kernels (its ``_value_and_grad_cuda``, one of the functions above).
    """
    return loss._value_and_grad_cuda(spikes, labels, sync)


def value(loss, spikes, labels, sync: bool = True):
    """The batch-mean loss of device ``spikes`` (a float, or a :class:`PendingLoss` with ``sync=False``)."""
    return loss._value_cuda(spikes, labels, sync)


__all__ = ["value_and_grad", "value", "window_counts", "class_counts", "PendingLoss", "spike_rate", "spikemax",
           "spikemax_g", "spikemax_s", "num_spikes", "num_spikes_value", "spike_time", "spike_time_value"]
