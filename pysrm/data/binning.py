"""Conversion of events into (sparse) spike tensors.

Binning follows SLAYER-PyTorch (``spikeFileIO.event.toSpikeTensor`` with
``binningMode='OR'``) bin by bin:

* the timestamp is converted to milliseconds, ``t_ms = t_us / 1000``, and the
  bin is ``round(t_ms / Ts)`` with NumPy's round (half to even);
* several events of one neuron in one bin give **one** spike of amplitude
  ``1/Ts`` (OR binning; the spike count of a bin is never more than one);
* events with ``bin >= T = t_sample / Ts`` are cropped (the sample is cut to
  ``t_sample``) and shorter samples are padded with empty bins; the number of
  cropped events is counted in ``stats['cropped']``.

Layouts (the ``(C, H, W)`` placement of an event):

``'polarity'`` (2-D sensors, SLAYER's convention)
    an event ``(x, y, p, t)`` goes to ``[p, y, x, bin]``: channel = polarity,
    H = y, W = x.
``'address'`` (1-D sensors such as the N-TIDIGITS cochlea)
    the address ``x`` goes to the channel axis, ``[x, 0, 0, bin]``, so a
    dense first layer sees ``C`` inputs; the polarity is ignored.

Events outside the sensor are an error (``out_of_range='error'``) or dropped
with a warning giving their count (``'warn'``); they are never dropped
silently.  Augmentation shifts (``shift``) that move events off the sensor
drop them on purpose; they are counted in ``stats['shifted_out']``.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..events import SpikeEvents
from ..params import SimParams

LAYOUTS = ("polarity", "address")


def _check_layout(layout, sensor_shape):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    shape = tuple(int(s) for s in sensor_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"sensor_shape must be (C, H, W) with positive sizes, got {sensor_shape!r}")
    if layout == "address" and shape[1:] != (1, 1):
        raise ValueError(f"layout 'address' needs sensor_shape (C, 1, 1), got {shape}")
    return shape


def binned_shape(sensor_shape, downsample: int = 1, layout: str = "polarity") -> tuple:
    """``(C, H, W)`` of the spike tensor after spatial downsampling by ``downsample``."""
    c, h, w = _check_layout(layout, sensor_shape)
    k = int(downsample)
    if k < 1:
        raise ValueError(f"downsample must be an integer >= 1, got {downsample!r}")
    if layout == "address":
        return (-(-c // k), 1, 1)
    return (c, -(-h // k), -(-w // k))


def event_bins(t_us, ts: float, t_start=0):
    """SLAYER's time bin ``round((t_us - t_start) / 1000 / ts)`` (float64, half to even)."""
    t = np.asarray(t_us)
    if t_start:
        t = t - t_start
    return np.round((t / 1000.0) / ts)


def out_of_sensor(events, sensor_shape, layout="polarity") -> np.ndarray:
    """Boolean mask of the events whose address lies outside ``sensor_shape``."""
    c, h, w = _check_layout(layout, sensor_shape)
    if layout == "address":
        return (events["x"] >= c) | (events["y"] != 0)
    return (events["x"] >= w) | (events["y"] >= h) | (events["p"] >= c)


def drop_out_of_sensor(events, sensor_shape, layout="polarity", out_of_range="warn",
                       where="events", stats=None) -> np.ndarray:
    """Return ``events`` without the out-of-sensor ones, per the ``out_of_range`` policy.

    ``'error'`` raises a ``ValueError`` naming ``where``; ``'warn'`` drops them
    with a warning giving the count (added to ``stats['out_of_range']``).
    """
    if out_of_range not in ("error", "warn"):
        raise ValueError(f"out_of_range must be 'error' or 'warn', got {out_of_range!r}")
    bad = out_of_sensor(events, sensor_shape, layout)
    n_bad = int(np.count_nonzero(bad))
    if not n_bad:
        return events
    e = events[bad]
    msg = (f"{where}: {n_bad} of {len(events)} event(s) lie outside the sensor {tuple(sensor_shape)} "
           f"(C, H, W) with layout {layout!r}: x in [{e['x'].min()}, {e['x'].max()}], "
           f"y in [{e['y'].min()}, {e['y'].max()}], p in [{e['p'].min()}, {e['p'].max()}]")
    if out_of_range == "error":
        raise ValueError(msg + "; expected addresses inside the sensor (pass out_of_range='warn' to drop them)")
    warnings.warn(msg + "; dropped", stacklevel=3)
    if stats is not None:
        stats["out_of_range"] = stats.get("out_of_range", 0) + n_bad
    return events[~bad]


def bin_events(events, sensor_shape, sim: SimParams, *, t_start: int = 0, shift=(0, 0), downsample: int = 1,
               layout: str = "polarity", dtype=np.float32, out_of_range: str = "error",
               stats: dict | None = None, name: str = "events") -> SpikeEvents:
    """Bin one sample's events into a :class:`~pysrm.events.SpikeEvents` with ``N = 1``.

    Parameters
    ----------
    events : structured array with fields ``x, y, t, p`` (``t`` in us)
    sensor_shape : ``(C, H, W)`` of the sensor (before downsampling)
    sim : :class:`~pysrm.params.SimParams`; ``T = sim.n_bins`` bins of ``sim.ts`` ms
    t_start : time (us) that becomes t = 0 (windows); earlier events are cropped
    shift : ``(dx, dy)`` pixel shift (augmentation); events moved off the
        sensor are dropped and counted in ``stats['shifted_out']``
    downsample : spatial pooling factor ``k``: pixel ``(x, y)`` -> ``(x//k, y//k)``
        (for layout ``'address'``: channel ``x//k``), OR-merged
    layout : ``'polarity'`` or ``'address'`` (see module docstring)
    out_of_range : ``'error'`` or ``'warn'`` for events outside the sensor
    stats : optional dict whose counters ``events_binned`` (events in, after dropping those
        outside the sensor), ``cropped``, ``shifted_out``, ``out_of_range`` are incremented
    """
    if not isinstance(sim, SimParams):
        raise TypeError(f"sim must be a pysrm.params.SimParams, got {type(sim).__name__}")
    c, h, w = _check_layout(layout, sensor_shape)
    oc, oh, ow = binned_shape(sensor_shape, downsample, layout)
    k = int(downsample)
    n_bins = sim.n_bins
    if events.size:
        events = drop_out_of_sensor(events, (c, h, w), layout, out_of_range, name, stats)
    b = event_bins(events["t"], sim.ts, t_start)
    keep = (b >= 0) & (b < n_bins)
    x = events["x"].astype(np.int64)
    dx, dy = (int(s) for s in shift)
    if layout == "address":
        if dy:
            raise ValueError(f"layout 'address' has no y axis to shift; got shift {shift!r}")
        chan = x + dx
        inside = (chan >= 0) & (chan < c)
    else:
        y = events["y"].astype(np.int64)
        if dx or dy:
            x = x + dx
            y = y + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        else:
            inside = None
    if stats is not None:
        stats["events_binned"] = stats.get("events_binned", 0) + int(b.size)
        stats["cropped"] = stats.get("cropped", 0) + int(b.size - np.count_nonzero(keep))
        if inside is not None and (dx or dy):
            stats["shifted_out"] = stats.get("shifted_out", 0) + int(np.count_nonzero(keep & ~inside))
    if inside is not None and (dx or dy):
        keep &= inside
    b = b[keep].astype(np.int64)
    if layout == "address":
        neuron = chan[keep] // k
    else:
        xs, ys = x[keep], y[keep]
        if k > 1:
            xs, ys = xs // k, ys // k
        neuron = (events["p"][keep].astype(np.int64) * oh + ys) * ow + xs
    key = np.unique(neuron * n_bins + b)
    dt = np.dtype(dtype)
    return SpikeEvents((1, oc, oh, ow, n_bins), np.array([0, key.size]), key // n_bins, key % n_bins,
                       np.full(key.size, 1.0 / sim.ts, dtype=dt))
