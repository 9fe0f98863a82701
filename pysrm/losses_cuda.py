r"""CUDA versions of the losses of :mod:`pysrm.losses` (value and gradient on the device).

Every formula is the one in the class docstrings of :mod:`pysrm.losses`; the
kernels follow the CPU kernels step by step and, like them, compute in float64
(inputs are read as float64, the gradient is rounded to the dtype of the
spikes at the end).  Spikes are viewed as ``(N, C, M, T)`` (``M`` = the
neurons of a class population, 1 for the usual ``(N, classes, 1, 1, T)``).

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
* ``_count_loss``: one thread per sample: the loss and :math:`\partial L_n/\partial c`
  of spike-rate / spikemax-g / spikemax-s (a port of the CPU kernel);
* ``_fill_time``: one thread per gradient element: broadcast
  :math:`\partial L/\partial c` (times a factor) along time;
* ``_class_window_counts``: one thread per ``(n, k)``: causal sliding-window
  counts of the population train, a running sum (:math:`O(T)` per row);
* ``_spikemax_terms``: one thread per ``(n, t)``: :math:`l[t] = \log S[t] - \log\tilde c_y[t]`
  and :math:`g_k[t] = 1/S[t] - y_k/\tilde c_y[t]`;
* ``_spikemax_reduce``: one thread per sample: mean of :math:`l` and smallest count;
* ``_spikemax_grad``: one thread per ``(n, k)``: the exact gradient (reverse
  running sum over the :math:`W_b` windows containing each bin) or the paper's
  local form, written to all ``m``;
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
from .ops import psp_cuda

_KIND = {"spike-rate": 0, "spikemax-g": 1, "spikemax-s": 2}


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
    # s: (N, C, M*T); out[n, k, 0] = ts * sum s[n, k, :]
    N, C, Q = s.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        n = idx // C
        k = idx - n * C
        acc = 0.0
        for q in range(Q):
            acc += np.float64(s[n, k, q])
        out[n, k, 0] = acc * ts


@cuda.jit(cache=True)
def _count_loss(c, labels, kind, eps, true_rate, false_rate, duration, res, dc):
    # port of pysrm.losses._count_loss_cpu; res[n, 0] = loss, res[n, 1] = cmin
    N, C, M = c.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        y = labels[n]
        if kind == 0:
            acc = 0.0
            for k in range(C):
                tgt = true_rate if k == y else false_rate
                for m in range(M):
                    d = c[n, k, m] / duration - tgt
                    acc += d * d
                    dc[n, k, m] = 2.0 * d / duration
            res[n, 0] = acc
            res[n, 1] = 1.0
        elif kind == 1:
            S = 0.0
            mn = math.inf
            for k in range(C):
                v = c[n, k, 0] + eps
                S += v
                if v < mn:
                    mn = v
            res[n, 1] = mn
            cy = c[n, y, 0] + eps
            if mn > 0.0:
                res[n, 0] = math.log(S) - math.log(cy)
                for k in range(C):
                    g = 1.0 / S
                    if k == y:
                        g -= 1.0 / cy
                    dc[n, k, 0] = g
            else:
                res[n, 0] = math.nan
                for k in range(C):
                    dc[n, k, 0] = math.nan
        else:
            mx = -math.inf
            for k in range(C):
                if c[n, k, 0] > mx:
                    mx = c[n, k, 0]
            se = 0.0
            for k in range(C):
                se += math.exp(c[n, k, 0] - mx)
            lse = mx + math.log(se)
            res[n, 0] = lse - c[n, y, 0]
            for k in range(C):
                g = math.exp(c[n, k, 0] - lse)
                if k == y:
                    g -= 1.0
                dc[n, k, 0] = g
            res[n, 1] = 1.0


@cuda.jit(cache=True)
def _fill_time(dc, factor, out):
    # out[r, q] = (dc[r] * factor) rounded to out's dtype; dc: (R,), out: (R, Q)
    R, Q = out.shape
    for idx in range(cuda.grid(1), R * Q, cuda.gridsize(1)):
        r = idx // Q
        out[r, idx - r * Q] = dc[r] * factor


@cuda.jit(cache=True)
def _class_window_counts(s, wb, ts, out):
    # s: (N, C, M, T) spikes; out[n, k, t] = ts * sum over the window of the population train
    N, C, M, T = s.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        n = idx // C
        k = idx - n * C
        acc = 0.0
        for t in range(T):
            v = 0.0
            for m in range(M):
                v += np.float64(s[n, k, m, t])
            acc += v
            if t >= wb:
                old = 0.0
                for m in range(M):
                    old += np.float64(s[n, k, m, t - wb])
                acc -= old
            out[n, k, t] = ts * acc


@cuda.jit(cache=True)
def _window_counts_rows(s, wb, ts, out):
    R, T = s.shape
    for r in range(cuda.grid(1), R, cuda.gridsize(1)):
        acc = 0.0
        for t in range(T):
            acc += np.float64(s[r, t])
            if t >= wb:
                acc -= np.float64(s[r, t - wb])
            out[r, t] = ts * acc


@cuda.jit(cache=True)
def _spikemax_terms(c, labels, eps, l, cmin_t, g):
    N, C, T = c.shape
    for idx in range(cuda.grid(1), N * T, cuda.gridsize(1)):
        n = idx // T
        t = idx - n * T
        y = labels[n]
        S = 0.0
        mn = math.inf
        for k in range(C):
            v = c[n, k, t] + eps
            S += v
            if v < mn:
                mn = v
        cmin_t[n, t] = mn
        cy = c[n, y, t] + eps
        if S > 0.0 and cy > 0.0:
            l[n, t] = math.log(S) - math.log(cy)
            for k in range(C):
                gv = 1.0 / S
                if k == y:
                    gv -= 1.0 / cy
                g[n, k, t] = gv
        else:
            l[n, t] = 0.0
            for k in range(C):
                g[n, k, t] = math.nan


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
    # g: (N, C, T) float64 (modified); out: (N, C, M, T) in the spikes dtype
    N, C, M, T = out.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        n = idx // C
        k = idx - n * C
        if paper:
            for t in range(T):
                v = g[n, k, t] * window_ms
                v *= inv_n
                for m in range(M):
                    out[n, k, m, t] = v
        else:
            scale = ts / T
            run = 0.0
            for t in range(T - 1, -1, -1):
                run += g[n, k, t]
                g[n, k, t] = run
            for u in range(T):
                v = g[n, k, u]
                if u + wb < T:
                    v -= g[n, k, u + wb]
                v = scale * v
                v *= inv_n
                for m in range(M):
                    out[n, k, m, u] = v


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
    if not is_device_array(spikes) or isinstance(spikes, dev.DeviceSpikeEvents):
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
    dev.launch(_window_counts_rows, rows, spikes.reshape(rows, T), int(window_bins), ts, out.reshape(rows, T))
    return out


def class_counts(spikes, ts: float = 1.0):
    """Spike count of every class population, ``ts * sum`` over the middle axes and time: a float64
    device array ``(N, classes)`` (copy it back with ``.copy_to_host()`` for predictions/metrics)."""
    N, C, M, T = _check_spikes(spikes)
    c = dev.empty((N, C, 1), np.float64)
    dev.launch(_class_sums, N * C, spikes.reshape(N, C, M * T), L.positive("ts", ts), c)
    return c.reshape(N, C)


def _count_losses(loss, spikes, labels, sync):
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    name = loss.name
    kind = _KIND[name]
    res = dev.empty((N, 2), np.float64)
    if kind == 0:
        c = dev.empty((N, C, M), np.float64)
        dev.launch(_row_sums, N * C * M, spikes.reshape(N * C * M, T), 0, T, loss.ts, c.reshape(N * C * M))
        dc = dev.empty((N, C, M), np.float64)
        dev.launch(_count_loss, N, c, y, 0, 0.0, loss.true_rate, loss.false_rate, T * loss.ts, res, dc)
        factor = loss.ts / N
        rows, Q = N * C * M, T
        eps = None
    else:
        c = dev.empty((N, C, 1), np.float64)
        dev.launch(_class_sums, N * C, spikes.reshape(N, C, M * T), loss.ts, c)
        dc = dev.empty((N, C, 1), np.float64)
        eps = loss.eps if kind == 1 else 0.0
        dev.launch(_count_loss, N, c, y, kind, eps, 0.0, 0.0, 1.0, res, dc)
        if kind == 1:
            factor = (loss.ts if loss.grad_mode == "exact" else T * loss.ts) / N
        else:
            factor = (loss.ts if loss.grad_mode == "exact" else 1.0) / N
            eps = None
        rows, Q = N * C, M * T
    grad = dev.empty(tuple(spikes.shape), spikes.dtype)
    dev.launch(_fill_time, rows * Q, dc.reshape(rows), factor, grad.reshape(rows, Q))
    return _finish(res, grad, sync, eps)


def _spikemax(loss, spikes, labels, sync):
    N, C, M, T = _check_spikes(spikes)
    y = _labels(labels, N, C)
    if loss.window_bins > T:
        raise ValueError(
            f"window={loss.window} ms ({loss.window_bins} bins) is longer than the simulation "
            f"({T} bins = {T * loss.ts} ms); expected window <= {T * loss.ts} ms")
    wb = int(loss.window_bins)
    c = dev.empty((N, C, T), np.float64)
    dev.launch(_class_window_counts, N * C, spikes.reshape(N, C, M, T), wb, loss.ts, c)
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


def _num_spikes(loss, spikes, labels, sync):
    res, e, N, (a, b) = _num_spikes_error(loss, spikes, labels)
    dt = np.dtype(e.dtype)
    g = dev.empty(tuple(e.shape), dt)
    dev.launch(_scale_into, e.size, e.reshape(e.size), dt.type(loss.ts / N), g.reshape(g.size))
    grad = psp_cuda.psp_backward(g, loss.kernel, loss.ts)
    if loss.grad_mode == "exact":
        dev.launch(_region_grad, g.shape[0], g, grad, a, b, loss.ts / (b - a))
    return _finish(res, grad.reshape(*spikes.shape), sync)


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


def _spike_time(loss, spikes, desired, sync):
    res, e, N = _spike_time_error(loss, spikes, desired)
    dt = np.dtype(e.dtype)
    g = dev.empty(tuple(e.shape), dt)
    dev.launch(_scale_into, e.size, e.reshape(e.size), dt.type(loss.ts / N), g.reshape(g.size))
    return _finish(res, psp_cuda.psp_backward(g, loss.kernel, loss.ts), sync)


def value_and_grad(loss, spikes, labels, sync: bool = True):
    """``(value, grad)`` of ``loss`` for device ``spikes``: the batch-mean loss (a float, or a
    :class:`PendingLoss` with ``sync=False``) and the gradient as a device array like ``spikes``.

    ``labels`` (``desired`` for spike-time) may be on the host or the device.
    """
    name = loss.name
    if name in _KIND:
        return _count_losses(loss, spikes, labels, sync)
    if name == "spikemax":
        return _spikemax(loss, spikes, labels, sync)
    if name == "num-spikes":
        return _num_spikes(loss, spikes, labels, sync)
    if name == "spike-time":
        return _spike_time(loss, spikes, labels, sync)
    raise TypeError(f"no CUDA implementation for loss {name!r}")


def value(loss, spikes, labels, sync: bool = True):
    """The batch-mean loss of device ``spikes`` (a float, or a :class:`PendingLoss` with ``sync=False``)."""
    if loss.name == "num-spikes":
        res = _num_spikes_error(loss, spikes, labels)[0]
    elif loss.name == "spike-time":
        res = _spike_time_error(loss, spikes, labels)[0]
    else:
        return value_and_grad(loss, spikes, labels, sync)[0]
    pending = PendingLoss(res)
    return pending.get() if sync else pending


__all__ = ["value_and_grad", "value", "window_counts", "class_counts", "PendingLoss"]
