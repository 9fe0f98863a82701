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

import functools
import warnings
from collections import namedtuple

import numpy as np
from numba import njit

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
    """``(C, H, W)`` of the spike tensor after spatial downsampling.

    Parameters
    ----------
    sensor_shape : tuple of int
        The sensor's ``(C, H, W)``.
    downsample : int, default 1
        Pooling factor ``k >= 1``.
    layout : {'polarity', 'address'}, default 'polarity'
        ``'polarity'``: ``(C, ceil(H/k), ceil(W/k))``; ``'address'``: ``(ceil(C/k), 1, 1)``.

    Returns
    -------
    tuple of int
        The binned ``(C, H, W)``.

    Raises
    ------
    ValueError
        An unknown ``layout``, a ``sensor_shape`` that is not ``(C, H, W)`` with positive sizes, or not
        ``(C, 1, 1)`` for the ``'address'`` layout; ``downsample < 1``.
    """
    c, h, w = _check_layout(layout, sensor_shape)
    k = int(downsample)
    if k < 1:
        raise ValueError(f"downsample must be an integer >= 1, got {downsample!r}")
    if layout == "address":
        return (-(-c // k), 1, 1)
    return (c, -(-h // k), -(-w // k))


def event_bins(t_us, ts: float, t_start=0):
    """SLAYER's time bin of event times.

    ``bin = round((t_us - t_start) / 1000 / ts)``, NumPy's round (half to even).

    Parameters
    ----------
    t_us : array_like, shape (n_events,)
        Event times (us).
    ts : float
        Bin width ``Ts`` (ms).
    t_start : int, default 0
        Time (us) that becomes bin 0.

    Returns
    -------
    ndarray, shape (n_events,), float64
        The bins (whole numbers; negative or ``>= T`` outside the window).
    """
    t = np.asarray(t_us)
    if t_start:
        t = t - t_start
    return np.round((t / 1000.0) / ts)


def out_of_sensor(events, sensor_shape, layout="polarity") -> np.ndarray:
    """Mask of the events whose address lies outside the sensor.

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE, shape (n_events,)
        Structured events with fields ``x, y, p``.
    sensor_shape : tuple of int
        The sensor's ``(C, H, W)``.
    layout : {'polarity', 'address'}, default 'polarity'
        ``'polarity'``: outside when ``x >= W``, ``y >= H`` or ``p >= C``; ``'address'``: when ``x >= C``
        or ``y != 0``.

    Returns
    -------
    ndarray of bool, shape (n_events,)

    Raises
    ------
    ValueError
        An unknown ``layout``, a ``sensor_shape`` that is not ``(C, H, W)`` with positive sizes, or not
        ``(C, 1, 1)`` for the ``'address'`` layout.
    """
    c, h, w = _check_layout(layout, sensor_shape)
    if layout == "address":
        return (events["x"] >= c) | (events["y"] != 0)
    return (events["x"] >= w) | (events["y"] >= h) | (events["p"] >= c)


def drop_out_of_sensor(events, sensor_shape, layout="polarity", out_of_range="warn",
                       where="events", stats=None) -> np.ndarray:
    """Return ``events`` without the out-of-sensor ones, per the ``out_of_range`` policy.

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE, shape (n_events,)
        Structured events with fields ``x, y, p``.
    sensor_shape : tuple of int
        The sensor's ``(C, H, W)``.
    layout : {'polarity', 'address'}, default 'polarity'
        As for :func:`out_of_sensor`.
    out_of_range : {'warn', 'error'}, default 'warn'
        ``'error'`` raises; ``'warn'`` drops them with a warning giving the count.
    where : str, default "events"
        Names the sample in the messages.
    stats : dict, optional
        Its counter ``out_of_range`` is increased by the number dropped.

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_kept,)
        ``events`` itself when all are inside, else a copy without the others.

    Raises
    ------
    ValueError
        Events lie outside the sensor and ``out_of_range='error'`` (names ``where``, the count and the
        address ranges); an unknown ``out_of_range``; or as for :func:`out_of_sensor`.
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


# ------------------------------------------------------------------------------------ linear-time kernels
# Binning without a sort: every event's bin (SLAYER's rounding, half to even, as np.round) and neuron in one
# pass, then a counting sort by neuron (stable) and, within a neuron, the times in order (already so for
# recordings, whose events come in time order; an insertion sort or a sort of the run otherwise) with
# equal times merged into one spike.  O(events + neurons) per sample; the result is bitwise the one of the
# NumPy reference (_bin_events_numpy: np.round, np.unique), which the tests compare on real and random events.

@njit(cache=True, nogil=True)
def _round_half_even(v):
    # np.round(v) (= rint, ties to even) for a float64 v; exact for |v| < 2**52 (v - floor(v) is exact)
    r = np.floor(v)
    d = v - r
    if d > 0.5:
        r += 1.0
    elif d == 0.5 and r - 2.0 * np.floor(r * 0.5) != 0.0:
        r += 1.0
    return r


@njit(cache=True, nogil=True)
def _sort_unique(nid, tb, cnt, n_neurons):
    """The (neuron, time) pairs sorted by neuron then time, equal pairs merged (their counts added):
    (neuron int32, time int32, count int32)."""
    m = nid.shape[0]
    start = np.zeros(n_neurons + 1, dtype=np.int64)
    for q in range(m):
        if nid[q] < 0 or nid[q] >= n_neurons:
            raise ValueError("binning: an event lies outside the sensor (internal error: events must be checked)")
        start[nid[q] + 1] += 1
    for j in range(n_neurons):
        start[j + 1] += start[j]
    pos = start[:-1].copy()
    st = np.empty(m, dtype=np.int64)
    sc = np.empty(m, dtype=np.int64)
    for q in range(m):
        j = nid[q]
        d = pos[j]
        st[d] = tb[q]
        sc[d] = cnt[q]
        pos[j] = d + 1
    out_n = np.empty(m, dtype=np.int32)
    out_t = np.empty(m, dtype=np.int32)
    out_c = np.empty(m, dtype=np.int32)
    u = 0
    for j in range(n_neurons):
        a = start[j]
        b = start[j + 1]
        if a == b:
            continue
        ordered = True
        for q in range(a + 1, b):
            if st[q] < st[q - 1]:
                ordered = False
                break
        if not ordered:
            if b - a <= 64:
                for q in range(a + 1, b):
                    tv = st[q]
                    cv = sc[q]
                    r = q
                    while r > a and st[r - 1] > tv:
                        st[r] = st[r - 1]
                        sc[r] = sc[r - 1]
                        r -= 1
                    st[r] = tv
                    sc[r] = cv
            else:
                order = np.argsort(st[a:b])
                st[a:b] = st[a:b][order]
                sc[a:b] = sc[a:b][order]
        prev = -1
        for q in range(a, b):
            if st[q] != prev:
                out_n[u] = j
                out_t[u] = st[q]
                out_c[u] = sc[q]
                prev = st[q]
                u += 1
            else:
                out_c[u - 1] += sc[q]
    return out_n[:u], out_t[:u], out_c[:u]


#: what the binning kernels need of the sensor and of the binned layout: the sensor (c, h, w), the shift
#: (dx, dy) in pixels, the downsampling factor k, the binned (oh, ow) and number of neurons, and whether the
#: layout is "address" (one axis of channels) rather than "polarity" (p, y, x)
BinLayout = namedtuple("BinLayout", "c h w dx dy k oh ow n_neurons address")


def _bin_layout(layout, sensor_shape, shift, downsample) -> BinLayout:
    c, h, w = _check_layout(layout, sensor_shape)
    oc, oh, ow = binned_shape((c, h, w), downsample, layout)
    dx, dy = (int(s) for s in shift)
    if layout == "address" and dy:
        raise ValueError(f"layout 'address' has no y axis to shift; got shift {shift!r}")
    return BinLayout(c, h, w, dx, dy, int(downsample), oh, ow, oc * oh * ow, layout == "address")


@njit(cache=True, nogil=True)
def _bin_kernel(x, y, p, t, t_start, ts, n_bins, geo):
    """Bins of one sample's events (already inside the sensor): (neuron, time, count, cropped, shifted_out);
    ``count`` is the number of events merged into each spike.  ``geo``: :data:`BinLayout`."""
    c, h, w, dx, dy, k, oh, ow = geo.c, geo.h, geo.w, geo.dx, geo.dy, geo.k, geo.oh, geo.ow
    n_neurons, address = geo.n_neurons, geo.address
    n = x.shape[0]
    nid = np.empty(n, dtype=np.int64)
    tb = np.empty(n, dtype=np.int64)
    shifted = dx != 0 or dy != 0
    m = 0
    cropped = 0
    shifted_out = 0
    for i in range(n):
        r = _round_half_even(((t[i] - t_start) / 1000.0) / ts)
        if not (r >= 0.0 and r < n_bins):
            cropped += 1
            continue
        if address:
            ch = np.int64(x[i]) + dx
            if shifted and (ch < 0 or ch >= c):
                shifted_out += 1
                continue
            j = ch // k
        else:
            xx = np.int64(x[i]) + dx
            yy = np.int64(y[i]) + dy
            if shifted and (xx < 0 or xx >= w or yy < 0 or yy >= h):
                shifted_out += 1
                continue
            j = (np.int64(p[i]) * oh + yy // k) * ow + xx // k
        nid[m] = j
        tb[m] = np.int64(r)
        m += 1
    on, ot, oc = _sort_unique(nid[:m], tb[:m], np.ones(m, dtype=np.int32), n_neurons)
    return on, ot, oc, cropped, shifted_out


@njit(cache=True, nogil=True)
def _shift_binned(neuron, time, count, xs, ys, geo):
    """Shift (``dx, dy``) and downsample (``k``) spikes binned at the sensor's resolution (sorted, unique,
    ``count`` events each; ``xs``/``ys`` the x and y of every neuron of the sensor): (neuron, time, events
    shifted off the sensor).  Equal to binning the events
    with that shift and downsampling: a shift moves every event of a pixel alike, and OR-binning commutes
    with the downsampling's OR-merge.  ``geo``: :data:`BinLayout`."""
    c, h, w, dx, dy, k, oh, ow = geo.c, geo.h, geo.w, geo.dx, geo.dy, geo.k, geo.oh, geo.ow
    n_neurons, address = geo.n_neurons, geo.address
    m = neuron.shape[0]
    out_n = np.empty(m, dtype=np.int32)
    out_t = np.empty(m, dtype=np.int32)
    cn = np.empty(m, dtype=np.int32)
    hw = h * w
    u = 0
    shifted_out = 0
    prev = -1
    inside = False
    jn = 0
    for q in range(m):
        j0 = np.int64(neuron[q])
        if j0 != prev:  # the entries come grouped by neuron: its new place once per neuron
            prev = j0
            if address:
                ch = j0 + dx
                inside = ch >= 0 and ch < c
                jn = ch // k
            else:
                yy = np.int64(ys[j0]) + dy  # tables, not divisions (an integer division costs ~40 cycles)
                xx = np.int64(xs[j0]) + dx
                inside = xx >= 0 and xx < w and yy >= 0 and yy < h
                if k == 1:
                    jn = j0 + dy * w + dx
                else:
                    jn = (np.int64(j0 // hw) * oh + yy // k) * ow + xx // k
        if not inside:
            shifted_out += count[q]
            continue
        out_n[u] = jn
        out_t[u] = time[q]
        cn[u] = count[q]
        u += 1
    if k == 1:
        # a translation keeps the (p, y, x) order and distinct pixels distinct: still sorted and unique
        return out_n[:u], out_t[:u], shifted_out
    on, ot, _ = _sort_unique(out_n[:u], out_t[:u], cn[:u], n_neurons)
    return on, ot, shifted_out


def _field(events, name):
    a = events[name]
    if a.dtype.kind not in "iub":
        raise TypeError(f"events field {name!r} must be integer, got {a.dtype}")
    return a


def _spikes(shape, neuron, time, ts, dtype) -> SpikeEvents:
    """A one-sample SpikeEvents of arrays made here in canonical order (sorted, unique)."""
    return SpikeEvents._trusted(shape, np.array([0, neuron.shape[0]], dtype=np.int64), neuron, time,
                                np.full(neuron.shape[0], 1.0 / ts, dtype=np.dtype(dtype)))


def bin_kernel(events, sensor_shape, ts: float, n_bins: int, *, t_start: int = 0, shift=(0, 0),
               downsample: int = 1, layout: str = "polarity"):
    """Bin events that lie inside ``sensor_shape`` (not checked here) in one linear pass, without a sort.

    ``bin = round((t - t_start) / 1000 / ts)`` (half to even), kept when ``0 <= bin < n_bins``.

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE, shape (n_events,)
        Structured events with integer fields ``x, y, p`` and an integer ``t`` (us).
    sensor_shape : tuple of int
        The sensor's ``(C, H, W)``.
    ts : float
        Bin width ``Ts`` (ms).
    n_bins : int
        Number of bins ``T``.
    t_start : int, default 0
        Time (us) that becomes bin 0.
    shift : tuple of int, default (0, 0)
        ``(dx, dy)`` pixel shift; events moved off the sensor are dropped (counted).
    downsample : int, default 1
        Pooling factor ``k``.
    layout : {'polarity', 'address'}, default 'polarity'

    Returns
    -------
    neuron : ndarray, shape (n_spikes,), int32
        Flat index into the downsampled ``(C, H, W)`` of :func:`binned_shape`; sorted by (neuron, time),
        one entry per bin.
    time : ndarray, shape (n_spikes,), int32
        Time bin.
    count : ndarray, shape (n_spikes,), int32
        Number of events merged into each entry.
    cropped : int
        Events outside ``0 .. n_bins``.
    shifted_out : int
        Events shifted off the sensor.

    Raises
    ------
    TypeError
        ``t``, ``x``, ``y`` or ``p`` is not an integer field.
    ValueError
        As for :func:`binned_shape`; a ``dy`` shift with the ``'address'`` layout.
    """
    geo = _bin_layout(layout, sensor_shape, shift, downsample)
    t = events["t"]
    if t.dtype.kind not in "iu":
        raise TypeError(f"bin_kernel needs integer event times (us), got {t.dtype}")
    if t.dtype != np.int64:
        t = t.astype(np.int64)
    x = _field(events, "x")
    address = layout == "address"
    y = x if address else _field(events, "y")
    p = x if address else _field(events, "p")
    return _bin_kernel(x, y, p, t, int(t_start), float(ts), int(n_bins), geo)


def shift_binned(neuron, time, count, sensor_shape, *, shift=(0, 0), downsample: int = 1, layout: str = "polarity"):
    """Shift and downsample spikes binned at the sensor's resolution.

    The result equals binning the events with that shift and downsampling: a shift moves every event of
    a pixel alike, and OR-binning commutes with the downsampling's OR-merge.

    Parameters
    ----------
    neuron, time : ndarray, shape (n_spikes,), int32
        Spikes from :func:`bin_kernel` without shift and downsampling (sorted, unique).
    count : ndarray, shape (n_spikes,), int32
        Events merged into each spike (counted when shifted off the sensor).
    sensor_shape : tuple of int
        The sensor's ``(C, H, W)``.
    shift : tuple of int, default (0, 0)
        ``(dx, dy)`` in pixels.
    downsample : int, default 1
        Pooling factor ``k``.
    layout : {'polarity', 'address'}, default 'polarity'

    Returns
    -------
    neuron : ndarray, shape (n_out,), int32
        Flat index into the downsampled ``(C, H, W)``, sorted by (neuron, time), unique.
    time : ndarray, shape (n_out,), int32
    shifted_out : int
        Events shifted off the sensor.

    Raises
    ------
    ValueError
        As for :func:`binned_shape`; a ``dy`` shift with the ``'address'`` layout.
    """
    geo = _bin_layout(layout, sensor_shape, shift, downsample)
    xs, ys = _pixel_tables(geo.c, geo.h, geo.w)
    return _shift_binned(neuron, time, count, xs, ys, geo)


@functools.lru_cache(maxsize=16)
def _pixel_tables(c, h, w):
    """x and y (int32) of every neuron ``(p * H + y) * W + x`` of a ``(C, H, W)`` sensor (read-only)."""
    _, ys, xs = np.indices((c, h, w), dtype=np.int32)
    xs, ys = xs.ravel(), ys.ravel()
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def bin_events(events, sensor_shape, sim: SimParams, *, t_start: int = 0, shift=(0, 0), downsample: int = 1,
               layout: str = "polarity", dtype=np.float32, out_of_range: str = "error",
               stats: dict | None = None, name: str = "events") -> SpikeEvents:
    """Bin one sample's events into a spike tensor with ``N = 1``.

    An event ``(x, y, p, t)`` becomes a spike of amplitude ``1/Ts`` at
    ``[p, y // k, x // k, round((t - t_start) / 1000 / Ts)]`` (layout ``'address'``: ``[x // k, 0, 0, bin]``),
    NumPy's round (half to even); several events in one bin make one spike (OR binning); bins outside
    ``0 .. T-1`` are cropped.

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE, shape (n_events,)
        Structured events with fields ``x, y, t, p`` (``t`` in us).
    sensor_shape : tuple of int
        ``(C, H, W)`` of the sensor (before downsampling).
    sim : SimParams
        ``T = sim.n_bins`` bins of ``sim.ts`` ms.
    t_start : int, default 0
        Time (us) that becomes t = 0 (windows); earlier events are cropped.
    shift : tuple of int, default (0, 0)
        ``(dx, dy)`` pixel shift (augmentation); events moved off the sensor are dropped and counted in
        ``stats['shifted_out']``.
    downsample : int, default 1
        Spatial pooling factor ``k >= 1`` (OR-merged).
    layout : {'polarity', 'address'}, default 'polarity'
        See the module docstring.
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.
    out_of_range : {'error', 'warn'}, default 'error'
        Events outside the sensor: an error, or dropped with a warning.
    stats : dict, optional
        Counters ``events_binned`` (events in, after dropping those outside the sensor), ``cropped``,
        ``shifted_out``, ``out_of_range``, increased here.
    name : str, default "events"
        Names the sample in the messages.

    Returns
    -------
    SpikeEvents
        Shape ``(1, C', H', W', T)`` with ``(C', H', W')`` = :func:`binned_shape`, values ``1/Ts`` of
        dtype ``dtype``.

    Raises
    ------
    TypeError
        ``sim`` is not a :class:`~pysrm.params.SimParams`.
    ValueError
        Events outside the sensor with ``out_of_range='error'`` (names ``name``); as for
        :func:`binned_shape`; a ``dy`` shift with the ``'address'`` layout.

    Notes
    -----
    Integer event times take one linear pass (:func:`bin_kernel`, no sort); other time types go through
    a NumPy reference (``np.round`` and ``np.unique``).  Both give the same spikes (tested).
    """
    if not isinstance(sim, SimParams):
        raise TypeError(f"sim must be a pysrm.params.SimParams, got {type(sim).__name__}")
    c, h, w = _check_layout(layout, sensor_shape)
    oc, oh, ow = binned_shape(sensor_shape, downsample, layout)
    dx, dy = (int(s) for s in shift)
    if layout == "address" and dy:
        raise ValueError(f"layout 'address' has no y axis to shift; got shift {shift!r}")
    if events["t"].dtype.kind not in "iu" or any(events[f].dtype.kind not in "iub" for f in ("x", "y", "p")):
        return _bin_events_numpy(events, sensor_shape, sim, t_start=t_start, shift=shift, downsample=downsample,
                                 layout=layout, dtype=dtype, out_of_range=out_of_range, stats=stats, name=name)
    if events.size:
        events = drop_out_of_sensor(events, (c, h, w), layout, out_of_range, name, stats)
    neuron, time, _, cropped, shifted_out = bin_kernel(events, (c, h, w), sim.ts, sim.n_bins, t_start=t_start,
                                                       shift=(dx, dy), downsample=downsample, layout=layout)
    if stats is not None:
        stats["events_binned"] = stats.get("events_binned", 0) + int(events.size)
        stats["cropped"] = stats.get("cropped", 0) + int(cropped)
        if dx or dy:
            stats["shifted_out"] = stats.get("shifted_out", 0) + int(shifted_out)
    return _spikes((1, oc, oh, ow, sim.n_bins), neuron, time, sim.ts, dtype)

def _bin_events_numpy(events, sensor_shape, sim: SimParams, *, t_start: int = 0, shift=(0, 0), downsample: int = 1,
               layout: str = "polarity", dtype=np.float32, out_of_range: str = "error",
               stats: dict | None = None, name: str = "events") -> SpikeEvents:
    """The NumPy reference of :func:`bin_events` (``np.round`` and a sort-unique ``np.unique``): same
    arguments, same result; kept for event times that are not integers and for the tests."""
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
