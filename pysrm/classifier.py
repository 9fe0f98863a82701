r"""Reading a class out of output spikes, and the metrics of the Spikemax paper.

Spike tensors are ``(N, classes, ..., T)`` (network outputs
``(N, classes, 1, 1, T)``); the neurons ``spikes[n, i, ...]`` are the
population of class ``i`` and their counts are summed (as in
:mod:`pysrm.losses`).

Prediction is the arg-max of the class counts:

.. math::

    \hat y = \min\,\{\, i : c_i \ge \max_k c_k - \delta \,\}, \qquad
    \delta = 10^{-9} \max(1, \max_k c_k)

i.e. **ties go to the lowest class index** (as NumPy's ``argmax``), and counts
within a relative :math:`10^{-9}` of the maximum are treated as tied, so that
the rounding of a floating-point sum can never decide a tie between equal
spike counts.  In particular a silent output (all counts zero) predicts
class 0.  Counts are accumulated in float64 along time.

GPU arrays are accepted: output spikes (small) are copied to the host, and
hidden layers' spike counts are summed on the device (one number per layer).
"""
from __future__ import annotations

import numpy as np

from ._checks import float_array, positive
from .backend import is_device_array
from .losses import _check_labels, _check_spikes, _class_trains, _window_counts_cpu

__all__ = ["predict", "predict_window", "accuracy_vs_time", "latency", "spike_counts_per_layer"]

_TIE_RTOL = 1e-9


def _host(spikes):
    """Output spikes on the host (copied back from the GPU if needed)."""
    if is_device_array(spikes):
        from .cuda import to_host
        return to_host(spikes)
    return spikes


def _argmax_lowest(c):
    """Arg-max over axis 1 with ties (up to _TIE_RTOL) to the lowest index."""
    cmax = c.max(axis=1, keepdims=True)
    tol = _TIE_RTOL * np.maximum(1.0, np.abs(cmax))
    return np.argmax(c >= cmax - tol, axis=1).astype(np.int64)


def _running_counts(spikes, window_bins):
    """Class counts (N, C, T) over the last ``window_bins`` bins (up to ``t``), in spikes / Ts."""
    N, C, _, T = _check_spikes(spikes)
    s = _class_trains(spikes)
    c = np.empty_like(s)
    _window_counts_cpu(s.reshape(N * C, 1, T), int(window_bins), 1.0, c.reshape(N * C, T))
    return c


def predict(spikes) -> np.ndarray:
    r"""Predicted class of every sample from the global counts, shape ``(N,)`` int64.

    :math:`\hat y_n = \arg\max_i \sum_{t} \sum_{j \in \text{class } i} s_{n,j}[t]`,
    ties to the lowest index (see the module docstring).
    """
    spikes = _host(spikes)
    N, C, _, T = _check_spikes(spikes)
    c = _running_counts(spikes, T)[:, :, -1]
    return _argmax_lowest(c)


def predict_window(spikes, window_bins: int) -> np.ndarray:
    r"""Moving-window prediction at every bin, shape ``(N, T)`` int64.

    At bin :math:`t` the counts are taken over bins
    :math:`\max(0, t - W_b + 1) .. t` (causal, truncated at 0 like the
    ``spikemax`` loss), then the arg-max is taken with ties to the lowest index.
    """
    spikes = _host(spikes)
    N, C, _, T = _check_spikes(spikes)
    if isinstance(window_bins, bool) or not isinstance(window_bins, (int, np.integer)):
        raise TypeError(f"window_bins must be an integer, got {window_bins!r} ({type(window_bins).__name__})")
    if not 1 <= window_bins <= T:
        raise ValueError(f"window_bins must lie in 1..{T} (the number of time bins), got {window_bins}")
    return _argmax_lowest(_running_counts(spikes, window_bins))


def accuracy_vs_time(spikes, labels, ts: float):
    r"""Accuracy as a function of inference time (the paper's latency curve).

    For every bin :math:`k` the prediction uses the spikes in bins
    :math:`0..k`, i.e. the spikes at times :math:`\le t_k = k\,T_s`:

    .. math::

        \mathrm{acc}(t_k) = \frac1N \sum_n \left[\arg\max_i \sum_{t' \le k} s_{n,i}[t'] = y_n\right]

    Computed in one pass (running counts).  Returns ``(times_ms, acc)``, two
    float64 arrays of length ``T`` with ``times_ms = k * ts``; ``acc[-1]`` is
    the accuracy of :func:`predict`.
    """
    spikes = _host(spikes)
    N, C, _, T = _check_spikes(spikes)
    y = _check_labels(labels, N, C)
    ts = positive("ts", ts)
    pred = _argmax_lowest(_running_counts(spikes, T))
    acc = (pred == y[:, None]).mean(axis=0)
    return np.arange(T, dtype=np.float64) * ts, acc.astype(np.float64)


def latency(times, acc, fraction: float = 0.99) -> float:
    r"""Earliest time at which the accuracy reaches ``fraction`` of its final value.

    .. math::

        t^* = \min\{\, t_k : \mathrm{acc}(t_k) \ge f \cdot \mathrm{acc}(t_{T-1}) \,\}

    (compared with a :math:`10^{-12}` slack for rounding).  If the final
    accuracy is 0 this is ``times[0]``.
    """
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {t.shape}")
    if a.shape != t.shape:
        raise ValueError(f"acc has shape {a.shape} but times has shape {t.shape}; they must match")
    if not (np.isfinite(t).all() and np.isfinite(a).all()):
        raise ValueError("times and acc must be finite")
    f = positive("fraction", fraction)
    if f > 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    hit = np.nonzero(a >= f * a[-1] - 1e-12)[0]
    return float(t[hit[0]])


def spike_counts_per_layer(layer_spikes, ts: float) -> dict:
    r"""Average total spike count per sample of every layer (paper Figs. 3, 5, 7).

    ``layer_spikes`` is a list of ``(layer_name, spikes)`` pairs (as
    ``net.layer_spikes`` or ``net.recorded_spikes``) or a dict, each ``spikes`` of shape ``(N, ..., T)``
    or a :class:`~pysrm.events.SpikeEvents` (counted from its events, no dense copy).

    .. math::

        \bar c_\ell = \frac1N \sum_n T_s \sum_{j,t} s^{(\ell)}_{n,j}[t]

    Returns a dict ``layer_name -> float`` in the given order.
    """
    ts = positive("ts", ts)
    items = list(layer_spikes.items()) if isinstance(layer_spikes, dict) else list(layer_spikes)
    out = {}
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"layer_spikes[{i}] must be a (layer_name, spikes) pair, got {type(item).__name__}")
        name, s = item
        if is_device_array(s):
            from .cuda import total
            out[name] = float(ts * total(s) / s.shape[0])
            continue
        from .events import SpikeEvents
        if isinstance(s, SpikeEvents):
            if name in out:
                raise ValueError(f"layer name {name!r} appears twice in layer_spikes; names must be unique")
            if s.shape[0] == 0:
                raise ValueError(f"spikes of layer {name!r} has an empty batch (shape {s.shape})")
            out[name] = float(ts * s.value.sum(dtype=np.float64) / s.shape[0])
            continue
        float_array(f"spikes of layer {name!r}", s, min_ndim=2)
        if name in out:
            raise ValueError(f"layer name {name!r} appears twice in layer_spikes; names must be unique")
        if s.shape[0] == 0:
            raise ValueError(f"spikes of layer {name!r} has an empty batch (shape {s.shape})")
        out[name] = float(ts * s.sum(dtype=np.float64) / s.shape[0])
    return out
