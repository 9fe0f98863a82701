r"""Axonal delay: a trainable, fractional time shift per neuron (or per channel).

A delay :math:`d \ge 0` (ms) is :math:`d/T_s = m + f` bins with integer
:math:`m` and :math:`0 \le f < 1`; the shift interpolates linearly between the
two neighbouring integer shifts (bins before the start read as zero):

.. math::

    y[t] = (1 - f)\, x[t - m] + f\, x[t - m - 1]

Backward.  Input (the adjoint, a shift by :math:`-d`):

.. math::

    \frac{\partial\mathcal L}{\partial x[t]} = (1-f)\, g[t + m] + f\, g[t + m + 1]

Delay (exact derivative of the piecewise-linear interpolation, taken from the
right at integer shifts; summed over the batch and over the neurons that share
a delay):

.. math::

    \frac{\partial\mathcal L}{\partial d} = \frac{1}{T_s}\sum_t g[t]\,
        \bigl(x[t - m - 1] - x[t - m]\bigr)

Checked by finite differences at non-integer delays.  ``d`` has the shape of
``x.shape[1:-1]`` (one delay per neuron) or ``(C, 1, 1)`` (one per channel), or
anything that broadcasts to ``x.shape[1:-1]``.

Strategies: the definition runs per neuron row on dense arrays (:func:`delay`, ``_delay_cpu``;
:func:`delay_backward` with ``strategy="plain"``).  On spikes given as
:class:`~pysrm.events.SpikeEvents` (sorted by (neuron, time), unique: what SpikeEvents guarantees)
:func:`delay_events` shifts the events themselves (bitwise the dense result's events) and the
backward sums the delay gradient by parts over the events (``strategy="event"``, equal to float
rounding).  :func:`delay_backward_from_dense` fuses the input gradient of a following dense layer
with few outputs.  CUDA twin: :mod:`pysrm.ops.delay_cuda`; tests: ``tests/test_op_pool_delay_dropout.py``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import settings
from .._checks import float_array, positive
from ..backend import is_device_array
from ._primitives import delay_split_cpu, interpolate_cpu
from ._util import check_5d, check_strategy


@njit(parallel=True, cache=True)
def _delay_cpu(x, shift, out):
    # x, out: (N, M, T); shift: (M,) delays in bins (>= 0).  out[t] = (1-f) x[t-m] + f x[t-m-1]
    # (x[<0] = 0).  The bulk t > m runs over slices with indices from range(): no branches and no
    # negative-index checks, so it vectorises (measured 3.5x faster than one branchy loop).
    N, M, T = x.shape
    for job in prange(N * M):
        n = job // M
        j = job % M
        m, fq = delay_split_cpu(shift[j])
        f = x.dtype.type(fq)
        g = x.dtype.type(1.0) - f
        xr = x[n, j]
        o = out[n, j]
        for t in range(min(m, T)):
            o[t] = 0.0
        if m < T:
            o[m] = g * xr[0]
        if m + 1 < T:
            ob = o[m + 1:]
            for k in range(T - m - 1):
                ob[k] = g * xr[k + 1] + f * xr[k]


@njit(cache=True)
def _delay_shift_back(gr, d, o):
    # one neuron: o[t] = (1-f) g[t+m] + f g[t+m+1] (g[>= T] = 0)
    T = gr.shape[0]
    m, fq = delay_split_cpu(d)
    f = gr.dtype.type(fq)
    h = gr.dtype.type(1.0) - f
    if m < T:
        gs = gr[m:]
        for k in range(T - m - 1):
            o[k] = h * gs[k] + f * gs[k + 1]
        o[T - m - 1] = h * gr[T - 1]
    for t in range(max(T - m, 0), T):
        o[t] = 0.0


@njit(cache=True, fastmath={"reassoc"})  # reassociation lets the time reduction vectorise
def _delay_grad_term(gr, xr, d):
    # sum_t g[t] (x[t-m-1] - x[t-m]) = -g[m] x[0] + sum_k g[m+1+k] (x[k] - x[k+1])
    T = gr.shape[0]
    m, _ = delay_split_cpu(d)
    acc = 0.0
    if m < T:
        acc -= gr[m] * xr[0]
        g1 = gr[m + 1:]
        for k in range(T - m - 1):
            acc += g1[k] * (xr[k] - xr[k + 1])
    return acc


@njit(cache=True)
def _delay_backward_row(gr, xr, d, o):
    # one neuron: the input gradient row into o; returns its delay-gradient term
    _delay_shift_back(gr, d, o)
    return _delay_grad_term(gr, xr, d)


@njit(parallel=True, cache=True)
def _delay_backward_cpu(g, x, shift, gx, gd_rows):
    N, M, T = g.shape
    for job in prange(N * M):
        n = job // M
        j = job % M
        gd_rows[n, j] = _delay_backward_row(g[n, j], x[n, j], shift[j], gx[n, j])


@njit(parallel=True, cache=True)
def _delay_backward_events_cpu(g, shift, offsets, neuron, time, value, gx, gd_rows):
    # _delay_backward_cpu with the delay input given as events: the input gradient row shifted back,
    # the delay-gradient term summed by parts over the row's events (_delay_grad_by_events)
    N, M, T = g.shape
    for job in prange(N * M):
        n = job // M
        j = job % M
        _delay_shift_back(g[n, j], shift[j], gx[n, j])
        gd_rows[n, j] = _delay_grad_by_events(g[n, j], shift[j], offsets, neuron, time, value, n, j)


@njit(cache=True)
def _dense_grad_row(gy, w, n, j, gr):
    # gr[t] = sum_o w[o, j] gy[n, o, t]: row j of sample n of a dense layer's input gradient
    T = gr.shape[0]
    w0 = w[0, j]
    g0 = gy[n, 0]
    for t in range(T):
        gr[t] = w0 * g0[t]
    for o in range(1, w.shape[0]):
        wo = w[o, j]
        go = gy[n, o]
        for t in range(T):
            gr[t] += wo * go[t]


@njit(parallel=True, cache=True)
def _delay_backward_from_dense_cpu(gy, w, x, use_events, offsets, neuron, time, value, shift, gx, gd_rows,
                                   n_chunks):
    # as _delay_backward_cpu on g[n, j, :] = sum_o w[o, j] gy[n, o, :] (the input gradient of a dense
    # layer with few outputs), each row of g made in a buffer of its own: g is never written.  The
    # delay input is the dense x, or with use_events the events (unique, sorted by (neuron, time) per
    # sample): then the delay-gradient term is summed by parts over the input events,
    # sum_t g[t] (x[t-m-1] - x[t-m]) = sum_(tau, a) a (g[tau+m+1] - g[tau+m]), g[>= T] = 0 (equal to
    # the dense sum to float rounding)
    N, M, T = gx.shape
    rows = N * M
    per = (rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        gr = np.empty(T, dtype=gy.dtype)
        for r in range(c * per, min(rows, (c + 1) * per)):
            n = r // M
            j = r % M
            _dense_grad_row(gy, w, n, j, gr)
            if use_events:
                _delay_shift_back(gr, shift[j], gx[n, j])
                gd_rows[n, j] = _delay_grad_by_events(gr, shift[j], offsets, neuron, time, value, n, j)
            else:
                gd_rows[n, j] = _delay_backward_row(gr, x[n, j], shift[j], gx[n, j])


#: columns per run of equal integer shift (on average) from which the delay adjoint shifts run by run
SHIFT_MIN_RUN = 4


@njit(cache=True)
def _shift_back_time_major(gy, dm, df, dg, out):
    # the delay adjoint of a time-major (T, M) gradient: out[t, q] = (1-f) gy[t+m, q] + f gy[t+m+1, q] (rows
    # past T read as 0; _delay_shift_back's expression, pysrm.ops._primitives.interpolate) over the columns
    # q < len(dm) (dm: integer shift m, df: fraction f, dg: 1 - f per column).  Used by the fused
    # first-layer backward (_delay_back_time_major) and the conv blocks (pysrm.blocks.conv).  Columns with
    # equal m side by side form a run whose rows are whole vectors (0.10 ns per value where the shifts are
    # equal, against 0.9-1.0 for the per-column indexing below, which takes arrays whose runs are shorter
    # than SHIFT_MIN_RUN on average); the same value either way
    T, tw = gy.shape
    nb = min(tw, dm.shape[0])
    zero = gy.dtype.type(0.0)
    runs = 0
    for q in range(nb):
        if q == 0 or dm[q] != dm[q - 1]:
            runs += 1
    if runs * SHIFT_MIN_RUN > nb:  # per column
        for t in range(T):
            orow = out[t]
            for q in range(nb):
                m = dm[q]
                if t + m + 1 < T:
                    orow[q] = interpolate_cpu(gy[t + m, q], gy[t + m + 1, q], dg[q], df[q])
                elif t + m < T:
                    orow[q] = dg[q] * gy[t + m, q]
                else:
                    orow[q] = dg[q] * zero
        return
    q0 = 0
    while q0 < nb:  # run by run
        m = dm[q0]
        q1 = q0 + 1
        while q1 < nb and dm[q1] == m:
            q1 += 1
        g = dg[q0:q1]
        f = df[q0:q1]
        t_full = max(0, T - m - 1)  # rows whose two taps are both inside
        for t in range(t_full):
            a = gy[t + m, q0:q1]
            b = gy[t + m + 1, q0:q1]
            o = out[t, q0:q1]
            for i in range(q1 - q0):
                o[i] = interpolate_cpu(a[i], b[i], g[i], f[i])
        for t in range(t_full, T):
            o = out[t, q0:q1]
            if t + m < T:
                a = gy[t + m, q0:q1]
                for i in range(q1 - q0):
                    o[i] = g[i] * a[i]
            else:
                for i in range(q1 - q0):
                    o[i] = g[i] * zero
        q0 = q1


@njit(cache=True)
def _delay_back_time_major(gy, w, n, shift, offsets, neuron, time, value, G, out, gd_row, acc):
    # Sample n of the delay backward from a dense layer with few outputs, time-major (a row is one time
    # bin of every neuron), for a caller that wants it so (the fused first-layer backward):
    #   G[t, j] = sum_o w[o, j] gy[n, o, t]                    (row by row across neurons)
    #   out[t, j] = (1-f_j) G[t+m_j, j] + f_j G[t+m_j+1, j]     (G[>= T] = 0; across each run of
    #                                                            neurons with the same m, else per neuron:
    #                                                            _shift_back_time_major)
    #   gd_row[j] = sum_(tau, a) a (G[tau+m_j+1, j] - G[tau+m_j, j]) over the delay's input events
    # (float64 sums, events in their stored order).  Per element the operations of _dense_grad_row,
    # _delay_shift_back and _delay_grad_by_events in the same order: bitwise their results.  G: (T, M).
    T, M = out.shape
    K = w.shape[0]
    dt = out.dtype.type
    for t in range(T):
        row = G[t]
        w0 = w[0]
        a0 = gy[n, 0, t]
        for j in range(M):
            row[j] = w0[j] * a0
        for o in range(1, K):
            wo = w[o]
            ao = gy[n, o, t]
            for j in range(M):
                row[j] += wo[j] * ao
    ms = np.empty(M, dtype=np.int64)
    fs = np.empty(M, dtype=out.dtype)
    hs = np.empty(M, dtype=out.dtype)
    for j in range(M):
        m, fq = delay_split_cpu(shift[j])
        ms[j] = m
        fs[j] = dt(fq)
        hs[j] = dt(1.0) - fs[j]
    _shift_back_time_major(G, ms, fs, hs, out)
    acc[:] = 0.0
    zero = dt(0.0)
    for k in range(offsets[n], offsets[n + 1]):
        j = neuron[k]
        i0 = ms[j] + time[k]
        g1 = G[i0 + 1, j] if i0 + 1 < T else zero
        g0 = G[i0, j] if i0 < T else zero
        acc[j] += value[k] * (g1 - g0)
    for j in range(M):
        gd_row[j] = acc[j]


@njit(cache=True)
def _delay_grad_by_events(gr, d, offsets, neuron, time, value, n, j):
    # sum_(tau, a) a (g[tau+m+1] - g[tau+m]) over the input events of neuron j of sample n (g[>= T] = 0)
    T = gr.shape[0]
    m, _ = delay_split_cpu(d)
    a = offsets[n]
    b = offsets[n + 1]
    k = a + np.searchsorted(neuron[a:b], j)
    acc = 0.0
    zero = gr.dtype.type(0.0)
    while k < b and neuron[k] == j:
        i0 = m + time[k]
        g1 = gr[i0 + 1] if i0 + 1 < T else zero
        g0 = gr[i0] if i0 < T else zero
        acc += value[k] * (g1 - g0)
        k += 1
    return acc


def _shift_bins(d, neuron_shape, ts, dtype):
    """Validated delays in bins, one per neuron (flat), in ``dtype``; and ``d``'s shape and ``ts``."""
    ts = positive("ts", ts)
    float_array("delay", np.asarray(d, dtype=np.float64))
    d = np.asarray(d)
    try:
        full = np.broadcast_to(d, tuple(neuron_shape))
    except ValueError:
        raise ValueError(f"delay of shape {d.shape} does not broadcast to the neuron shape {tuple(neuron_shape)}; "
                         "expected one delay per neuron or per channel (C, 1, 1)") from None
    if (full < 0).any():
        raise ValueError(f"delays must be >= 0 ms, got min {full.min()}")
    shift = np.ascontiguousarray(full, dtype=np.float64).reshape(-1) / ts
    return shift.astype(dtype), d.shape, ts


def _prepare(x, d, ts, name="x"):
    check_5d(name, x)
    shift, d_shape, ts = _shift_bins(d, x.shape[1:-1], ts, x.dtype)
    N, T = x.shape[0], x.shape[-1]
    return np.ascontiguousarray(x).reshape(N, -1, T), shift, d_shape, ts


@njit(cache=True)
def _delay_neuron_events(time, value, k, e, d, T, j, out_n, out_t, out_v, pos, write):
    # The events k..e-1 of one neuron (times strictly ascending) shifted by d bins: each event (tau, a)
    # gives (1-f) a at tau+m and f a at tau+m+1; where the second meets the next event's first
    # (tau' = tau+1) the bin holds (1-f) a' + f a, computed as _delay_cpu does (g * x[t-m] + f * x[t-m-1]);
    # zero values and bins >= T are dropped, as SpikeEvents.from_dense of the dense result would.
    m, fq = delay_split_cpu(d)
    f = value.dtype.type(fq)
    g = value.dtype.type(1.0) - f
    for q in range(k, e):
        tau = time[q]
        b = tau + m
        if b >= T:
            break
        if q > k and time[q - 1] == tau - 1:
            v = interpolate_cpu(value[q], value[q - 1], g, f)
        elif b == m:
            v = g * value[q]
        else:
            v = interpolate_cpu(value[q], value.dtype.type(0.0), g, f)
        if v != 0:
            if write:
                out_n[pos] = j
                out_t[pos] = b
                out_v[pos] = v
            pos += 1
        if b + 1 < T and not (q + 1 < e and time[q + 1] == tau + 1):
            v = interpolate_cpu(value.dtype.type(0.0), value[q], g, f)
            if v != 0:
                if write:
                    out_n[pos] = j
                    out_t[pos] = b + 1
                    out_v[pos] = v
                pos += 1
    return pos


@njit(parallel=True, cache=True)
def _delay_events_cpu(offsets, neuron, time, value, shift, T, out_n, out_t, out_v, counts):
    # per sample and neuron run: _delay_neuron_events, written from 2 * offsets[n] (an event gives at
    # most two), the number written in counts[n]
    N = offsets.shape[0] - 1
    for n in prange(N):
        start = 2 * offsets[n]
        pos = start
        k = offsets[n]
        end = offsets[n + 1]
        while k < end:
            j = neuron[k]
            e = k + 1
            while e < end and neuron[e] == j:
                e += 1
            pos = _delay_neuron_events(time, value, k, e, shift[j], T, j, out_n, out_t, out_v, pos, True)
            k = e
        counts[n] = pos - start


@njit(parallel=True, cache=True)
def _compact_events_cpu(src_start, offsets, src_n, src_t, src_v, out_n, out_t, out_v):
    # out[offsets[n]:offsets[n+1]] = src[src_start[n]:src_start[n] + count]
    N = offsets.shape[0] - 1
    for n in prange(N):
        a = src_start[n]
        c = offsets[n + 1] - offsets[n]
        o = offsets[n]
        out_n[o:o + c] = src_n[a:a + c]
        out_t[o:o + c] = src_t[a:a + c]
        out_v[o:o + c] = src_v[a:a + c]


def delay_events(x, d, ts: float):
    r""":func:`delay` of spike events, without the dense arrays.

    ``SpikeEvents.from_dense(delay(x.to_dense(), d, ts))``, bitwise (tested): an event at bin ``t``
    becomes events at ``t + m`` (value ``(1 - f) v``) and ``t + m + 1`` (value ``f v``) with
    ``d / Ts = m + f`` bins, those within ``T`` and non-zero.

    Parameters
    ----------
    x : SpikeEvents, shape (N, C, H, W, T)
        The input events (sorted by (neuron, time) per sample, one event per bin: what SpikeEvents
        guarantees), float32 or float64.
    d : array_like
        Delays in ms (>= 0), broadcastable to ``(C, H, W)`` (one per neuron, or per channel
        ``(C, 1, 1)``).
    ts : float
        The time step ``Ts`` in ms; > 0.

    Returns
    -------
    SpikeEvents
        The delayed events, ``x``'s shape and dtype, sorted the same way.

    Raises
    ------
    TypeError
        ``x`` is not a SpikeEvents; ``ts`` is not a number.
    ValueError
        Delays that are negative, non-finite or do not broadcast to ``(C, H, W)``; ``ts`` is not finite
        or ``<= 0``.
    """
    from ..events import SpikeEvents
    if not isinstance(x, SpikeEvents):
        raise TypeError(f"delay_events takes SpikeEvents, got {type(x).__name__}")
    shift, _, _ = _shift_bins(d, x.shape[1:-1], ts, x.dtype)
    N, T = x.shape[0], x.shape[4]
    # one pass into buffers of the upper bound (two delayed events per event), then compacted
    bound = 2 * x.n_events
    tmp_n = np.empty(bound, dtype=np.int32)
    tmp_t = np.empty(bound, dtype=np.int32)
    tmp_v = np.empty(bound, dtype=x.dtype)
    counts = np.empty(N, dtype=np.int64)
    _delay_events_cpu(x.offsets, x.neuron, x.time, x.value, shift, T, tmp_n, tmp_t, tmp_v, counts)
    offsets = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n_ev = int(offsets[-1])
    out_n = np.empty(n_ev, dtype=np.int32)
    out_t = np.empty(n_ev, dtype=np.int32)
    out_v = np.empty(n_ev, dtype=x.dtype)
    _compact_events_cpu(2 * x.offsets, offsets, tmp_n, tmp_t, tmp_v, out_n, out_t, out_v)
    return SpikeEvents._trusted(x.shape, offsets, out_n, out_t, out_v)


def delay(x, d, ts: float):
    r"""Axonal delay (SLAYER's ``delay``): shift every neuron of ``x`` later by ``d`` ms.

    .. math::

        y[t] = (1 - f)\, x[t - m] + f\, x[t - m - 1], \qquad d / T_s = m + f

    with integer ``m`` and ``0 <= f < 1`` (bins before the start read as zero).

    Parameters
    ----------
    x : ndarray or CUDA device array, shape (N, C, H, W, T)
        The input, float32 or float64.
    d : array_like
        Delays in ms (>= 0), broadcastable to ``(C, H, W)`` (one per neuron, or per channel
        ``(C, 1, 1)``).
    ts : float
        The time step ``Ts`` in ms; > 0.

    Returns
    -------
    ndarray or CUDA device array
        The delayed input: shape and dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray; ``ts`` is not a number.
    ValueError
        ``x`` is not 5-D or holds non-finite values; delays that are negative, non-finite or do not
        broadcast to ``(C, H, W)``; ``ts`` is not finite or ``<= 0``.

    See Also
    --------
    delay_backward : the adjoint and the delay gradient.
    delay_events : the same on SpikeEvents.
    """
    if is_device_array(x):
        from . import delay_cuda
        return delay_cuda.delay(x, d, ts)
    x3, shift, _, _ = _prepare(x, d, ts)
    out = np.empty_like(x3)
    _delay_cpu(x3, shift, out)
    return out.reshape(x.shape)


#: strategies of :func:`delay_backward`
STRATEGIES = ("auto", "plain", "event")


def delay_backward(grad, x, d, ts: float, strategy: str = "auto"):
    r"""Gradients of :func:`delay`: the input's (a shift by ``-d``) and the delay's.

    .. math::

        \frac{\partial\mathcal L}{\partial x[t]} = (1-f)\, g[t + m] + f\, g[t + m + 1], \qquad
        \frac{\partial\mathcal L}{\partial d} = \frac{1}{T_s}\sum_t g[t]\,
            \bigl(x[t - m - 1] - x[t - m]\bigr)

    (the delay gradient taken from the right at integer shifts, summed over the batch and over the
    neurons that share a delay).

    Parameters
    ----------
    grad : ndarray or CUDA device array, shape (N, C, H, W, T)
        The loss gradient ``g`` with respect to the delayed output, float32 or float64.
    x : ndarray, SpikeEvents or CUDA device array, shape (N, C, H, W, T)
        The delay's input.
    d : array_like
        Delays in ms (>= 0), broadcastable to ``(C, H, W)``.
    ts : float
        The time step ``Ts`` in ms; > 0.
    strategy : {"auto", "plain", "event"}, default "auto"
        ``"plain"`` (the dense sums of the definition), ``"event"`` (the delay-gradient sum taken by
        parts over the input events; equal to the dense sum to float rounding, ``grad_x`` bitwise the
        same) or ``"auto"`` (``"event"`` when ``x`` is a SpikeEvents).  Ignored for device arrays.

    Returns
    -------
    grad_x : ndarray or CUDA device array
        Shape and dtype of ``grad``.
    grad_d : ndarray
        The shape of ``d``, dtype of ``grad`` (per ms).

    Raises
    ------
    TypeError
        ``grad`` or ``x`` is not a float32/float64 ndarray; ``ts`` is not a number.
    ValueError
        ``grad`` or ``x`` is not 5-D or holds non-finite values; delays that are negative, non-finite or do not
        broadcast to ``(C, H, W)``; ``ts`` is not finite or ``<= 0``; ``grad`` and ``x`` differ in shape; an unknown strategy.

    See Also
    --------
    delay : the forward.
    """
    if is_device_array(grad):
        from . import delay_cuda
        return delay_cuda.delay_backward(grad, x, d, ts)
    from ..events import SpikeEvents
    check_strategy(strategy, STRATEGIES)
    if strategy == "plain" and isinstance(x, SpikeEvents):
        x = x.to_dense()
    elif strategy == "event" and not isinstance(x, SpikeEvents):
        check_5d("x", x)
        x = SpikeEvents.from_dense(x)
    if isinstance(x, SpikeEvents):
        check_5d("grad", grad)
        if grad.shape != x.shape:
            raise ValueError(f"grad has shape {grad.shape}; expected the delay output shape {x.shape}")
        shift, d_shape, ts = _shift_bins(d, x.shape[1:-1], ts, grad.dtype)
        N, T = x.shape[0], x.shape[-1]
        g3 = np.ascontiguousarray(grad).reshape(N, -1, T)
        gx = np.empty_like(g3)
        gd_rows = np.empty(g3.shape[:2], dtype=grad.dtype)
        _delay_backward_events_cpu(g3, shift, x.offsets, x.neuron, x.time, x.value, gx, gd_rows)
        return gx.reshape(x.shape), _delay_grad(gd_rows, x.shape, d_shape, ts)
    x3, shift, d_shape, ts = _prepare(x, d, ts)
    check_5d("grad", grad)
    if grad.shape != x.shape:
        raise ValueError(f"grad has shape {grad.shape}; expected the delay output shape {x.shape}")
    g3 = np.ascontiguousarray(grad).reshape(x3.shape)
    gx = np.empty_like(g3)
    gd_rows = np.empty(x3.shape[:2], dtype=grad.dtype)
    _delay_backward_cpu(g3, x3, shift, gx, gd_rows)
    return gx.reshape(x.shape), _delay_grad(gd_rows, x.shape, d_shape, ts)




def from_dense_applies(w, grad_dense, x) -> bool:
    """Whether :func:`delay_backward_from_dense` makes the dense input gradient row by row.

    True for CPU arrays, at most the setting ``fused_dense_max_outputs`` outputs and one dtype;
    elsewhere it runs the two ops.

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (O, I)
        The following dense layer's weights.
    grad_dense : ndarray or CUDA device array, shape (N, O, 1, 1, T)
        The loss gradient with respect to the dense layer's output.
    x : ndarray or SpikeEvents, shape (N, C, H, W, T)
        The delay's input.

    Returns
    -------
    bool
        True where the fused path applies.
    """
    return (not is_device_array(grad_dense) and not is_device_array(w) and w.shape[0] <= settings.current().fused_dense_max_outputs
            and w.dtype == x.dtype == grad_dense.dtype)


def delay_backward_from_dense(w, grad_dense, x, d, ts: float):
    r""":func:`delay_backward` of the input gradient of a following dense layer, fused.

    ``delay_backward(grad_x, x, d, ts)`` with ``grad_x[n, i, t] = sum_o w[o, i] grad_dense[n, o, t]``,
    the input gradient of a dense layer ``w`` that reads this delay's output.

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (O, I)
        The dense layer's weights, ``I = C*H*W``; float32 or float64.
    grad_dense : ndarray or CUDA device array, shape (N, O, 1, 1, T)
        The loss gradient with respect to the dense layer's output.
    x : ndarray, SpikeEvents or CUDA device array, shape (N, C, H, W, T)
        The delay's input.
    d : array_like
        Delays in ms (>= 0), broadcastable to ``(C, H, W)``.
    ts : float
        The time step ``Ts`` in ms; > 0.

    Returns
    -------
    grad_x : ndarray or CUDA device array
        The gradient of the delay's input: shape of ``x``, its dtype.
    grad_d : ndarray
        The shape of ``d`` (per ms).

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray; ``ts`` is not a number.
    ValueError
        ``x`` is not 5-D or holds non-finite values; delays that are negative, non-finite or do not
        broadcast to ``(C, H, W)``; ``ts`` is not finite or ``<= 0``; ``grad_dense`` does not hold ``N * O * T`` entries; ``w.shape[1]`` is not ``C*H*W``.

    Notes
    -----
    Where :func:`from_dense_applies`, each row of the dense input gradient is made in cache and shifted
    there, instead of a BLAS product written to memory and read back (N-MNIST dense network, batch 32:
    a 20 MB array); equal to the two ops to float rounding (the product's summation order differs from
    BLAS; tested).  Elsewhere the two ops run (with their errors).
    """
    from ..events import SpikeEvents
    from .dense import dense_input_grad
    events = isinstance(x, SpikeEvents)
    N, T = x.shape[0], x.shape[-1]
    O = w.shape[0]
    if grad_dense.size != N * O * T:
        raise ValueError(f"grad_dense has shape {grad_dense.shape}; expected {(N, O, 1, 1, T)} for w of shape "
                         f"{w.shape} and x of shape {x.shape}")
    if not from_dense_applies(w, grad_dense, x):
        if is_device_array(grad_dense):
            from .dense import dense_backward
            gx, _ = dense_backward(w, x, grad_dense, need_input_grad=True)
        else:
            gx = dense_input_grad(w, np.ascontiguousarray(grad_dense).reshape(N, O, T)).reshape(x.shape)
        return delay_backward(gx, x, d, ts)
    if events:
        shift, d_shape, ts = _shift_bins(d, x.shape[1:-1], ts, x.dtype)
    else:
        x3, shift, d_shape, ts = _prepare(x, d, ts)
    M = shift.shape[0]
    if w.shape[1] != M:
        raise ValueError(f"dense weight has {w.shape[1]} inputs; the delay has {M} neurons")
    gy = np.ascontiguousarray(grad_dense).reshape(N, O, T)
    gx = np.empty((N, M, T), dtype=x.dtype)
    gd_rows = np.empty((N, M), dtype=x.dtype)
    chunks = max(1, min(N * M, settings.current().delay_row_chunks))
    if events:
        x3 = np.empty((1, 1, 1), dtype=x.dtype)
        ev = (x.offsets, x.neuron, x.time, x.value)
    else:
        ev = (np.zeros(2, np.int64), np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, x.dtype))
    _delay_backward_from_dense_cpu(gy, np.ascontiguousarray(w), x3, events, *ev, shift, gx, gd_rows, chunks)
    return gx.reshape(x.shape), _delay_grad(gd_rows, x.shape, d_shape, ts)


def _delay_grad(gd_rows, x_shape, d_shape, ts):
    """The delay gradient from the per-(sample, neuron) terms: divided by Ts, summed over the batch and
    over the neurons that share a delay."""
    gd_full = gd_rows.sum(axis=0).reshape(x_shape[1:-1]) / gd_rows.dtype.type(ts)
    # sum over the neurons that share a delay (broadcast dimensions)
    lead = gd_full.ndim - len(d_shape)
    gd = gd_full.sum(axis=tuple(range(lead))) if lead else gd_full
    axes = tuple(i for i, s in enumerate(d_shape) if s == 1 and gd.shape[i] != 1)
    if axes:
        gd = gd.sum(axis=axes, keepdims=True)
    return gd.reshape(d_shape).astype(gd_rows.dtype)
