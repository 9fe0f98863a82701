r"""Fully connected synapse, applied independently in every time bin.

Forward, for input ``x`` of shape ``(N, C, H, W, T)`` flattened to
``(N, I, T)`` with ``I = C*H*W`` and weights ``w`` of shape ``(O, I)``:

.. math::

    a[n, o, t] = \sum_i w[o, i]\, x[n, i, t]

Backward (adjoint, the transpose):

.. math::

    \frac{\partial\mathcal L}{\partial x[n,i,t]} = \sum_o w[o,i]\, g[n,o,t], \qquad
    \frac{\partial\mathcal L}{\partial w[o,i]} = \sum_{n,t} g[n,o,t]\, x[n,i,t]

The output has shape ``(N, O, 1, 1, T)``.  Two paths give the same result to
float rounding:

* event driven (sparse inputs, a :class:`~pysrm.events.SpikeEvents` or a dense
  array with few non-zeros): the forward adds the weight column ``w[:, i]`` for
  each input event ``(i, t)`` and the weight gradient adds ``g[n, :, t]`` per
  event -- cost O(events x O);
* dense BLAS otherwise: one single-threaded product per sample (forward, input
  gradient) or per block of 64 outputs (weight gradient, ``G X^T`` with ``G`` and
  ``X`` laid out as ``(O, N*T)`` and ``(N*T, I)``), in parallel Numba loops (the
  BLAS library itself is kept single-threaded next to Numba's threads).

The choice is made from the measured density of the input
(:data:`EVENT_DENSITY_THRESHOLD`).  Both are exact linear maps, checked by
finite differences.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from numba import njit, prange

from .._checks import float_array, same_dtype
from ..backend import is_device_array
from ..events import SpikeEvents
from ._util import check_5d

#: inputs with at most this fraction of non-zero bins take the event-driven paths.  Set from the
#: crossovers measured in the second session (dense layers about 0.18 forward / 0.25 weight gradient on
#: one thread, conv layers about 0.09 / 0.15), a little below them; remeasured in the fourth session
#: (benchmarks/RESULTS.md, "event-driven versus dense paths": dense above 0.3, conv about 0.13 / 0.2)
#: higher thresholds made no measurable difference on the benchmark networks, so these stay.
EVENT_DENSITY_THRESHOLD = 0.15
CONV_EVENT_DENSITY_THRESHOLD = 0.08
#: the event-driven dense weight gradient is split into this many partial sums over the batch (the
#: parallelism of that kernel; a constant so that results do not depend on the number of threads)
WGRAD_PARTS = 4


@njit(parallel=True, cache=True)
def _dense_events_cpu(offsets, neuron, time, value, wT, out):
    # out[n, :, t] += value * wT[i, :] for every event (i, t) of sample n.  Each sample accumulates
    # into a (T, O) buffer of its own (rows of wT are contiguous; the buffer stays in cache) and is
    # then written out transposed, so no (N, T, O) array is zeroed, filled and transposed in memory.
    # The events are used in their stored order: sorting them by time first cost as much as this
    # kernel and gained nothing with the per-sample buffer (measured T = 300..1500, benchmarks/RESULTS.md).
    N = offsets.shape[0] - 1
    O = wT.shape[1]
    T = out.shape[2]
    for n in prange(N):
        acc = np.zeros((T, O), dtype=out.dtype)
        for k in range(offsets[n], offsets[n + 1]):
            i = neuron[k]
            t = time[k]
            v = value[k]
            for o in range(O):
                acc[t, o] += v * wT[i, o]
        out[n, :, :] = acc.T


@njit(cache=True)
def add_weighted_rows(row, rows, idx, val, k, e):
    """``row += val[q] * rows[idx[q]]`` for q = k .. e-1, in that order, up to eight source rows per pass
    over ``row`` (one load and store of ``row`` per eight rows instead of per row; the additions per
    element happen in the same order, so the result is bitwise that of one row at a time)."""
    O = row.shape[0]
    while e - k >= 8:
        w0 = rows[idx[k]]
        w1 = rows[idx[k + 1]]
        w2 = rows[idx[k + 2]]
        w3 = rows[idx[k + 3]]
        w4 = rows[idx[k + 4]]
        w5 = rows[idx[k + 5]]
        w6 = rows[idx[k + 6]]
        w7 = rows[idx[k + 7]]
        v0 = val[k]
        v1 = val[k + 1]
        v2 = val[k + 2]
        v3 = val[k + 3]
        v4 = val[k + 4]
        v5 = val[k + 5]
        v6 = val[k + 6]
        v7 = val[k + 7]
        for o in range(O):
            row[o] = (((((((row[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]) + v4 * w4[o])
                       + v5 * w5[o]) + v6 * w6[o]) + v7 * w7[o]
        k += 8
    while e - k >= 4:
        w0 = rows[idx[k]]
        w1 = rows[idx[k + 1]]
        w2 = rows[idx[k + 2]]
        w3 = rows[idx[k + 3]]
        v0 = val[k]
        v1 = val[k + 1]
        v2 = val[k + 2]
        v3 = val[k + 3]
        for o in range(O):
            row[o] = (((row[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]
        k += 4
    if e - k >= 2:
        w0 = rows[idx[k]]
        w1 = rows[idx[k + 1]]
        v0 = val[k]
        v1 = val[k + 1]
        for o in range(O):
            row[o] = (row[o] + v0 * w0[o]) + v1 * w1[o]
        k += 2
    if e - k == 1:
        w0 = rows[idx[k]]
        v0 = val[k]
        for o in range(O):
            row[o] += v0 * w0[o]


@njit(cache=True)
def add_event_rows_by_neuron(gw, rows, neuron, time, value, e, end, touched):
    """``gw[neuron[q]] += value[q] * rows[time[q]]`` for the events q = e .. end-1 of one sample (sorted by
    neuron): the events of one neuron are consecutive and their rows are added together
    (add_weighted_rows; the same order per element as one event at a time: bitwise).  A row of ``gw``
    not yet ``touched`` is zeroed first (then in cache) and marked, so ``gw`` needs no zeroing pass."""
    while e < end:
        f = e + 1
        i = neuron[e]
        while f < end and neuron[f] == i:
            f += 1
        if not touched[i]:
            gw[i, :] = 0.0
            touched[i] = True
        add_weighted_rows(gw[i], rows, time, value, e, f)
        e = f


@njit(parallel=True, cache=True)
def _dense_events_wgrad_cpu(offsets, neuron, time, value, g, parts, touched):
    # parts[p, i, :] = sum of value * g[n, :, t] over the events (i, t) of the samples n of part p, for the
    # rows touched[p, i] (the others are left as they were and mean zero).  Each part (one per
    # thread) takes a share of the samples, copies g[n] transposed into a (T, O) buffer of its own (in
    # cache), so an event reads one contiguous row; no (N, T, O) transposed copy of g is made in memory
    # and no thread skips other threads' events.  The parts are summed by _sum_parts_T.
    N = offsets.shape[0] - 1
    O, T = g.shape[1], g.shape[2]
    n_parts = parts.shape[0]
    step = (N + n_parts - 1) // n_parts
    for p in prange(n_parts):
        gw = parts[p]
        tp = touched[p]
        tp[:] = False
        gT = np.empty((T, O), dtype=g.dtype)
        for n in range(p * step, min(N, (p + 1) * step)):
            gT[:, :] = g[n].T
            add_event_rows_by_neuron(gw, gT, neuron, time, value, offsets[n], offsets[n + 1], tp)


@njit(parallel=True, cache=True)
def _sum_parts_T(parts, touched, out, accumulate):
    # out[o, i] = sum_p parts[p, i, o] over the parts that touched row i (out[o, i] += ... with
    # accumulate), in tiles of 64 inputs; an untouched row is zero (adding it would change nothing)
    P, I, O = parts.shape
    B = 64
    for b in prange((I + B - 1) // B):
        i0 = b * B
        i1 = min(I, i0 + B)
        acc = np.zeros((i1 - i0, O), dtype=out.dtype)
        for p in range(P):
            for i in range(i0, i1):
                if touched[p, i]:
                    a = acc[i - i0]
                    r = parts[p, i]
                    for o in range(O):
                        a[o] += r[o]
        if accumulate:
            out[:, i0:i1] += acc.T
        else:
            out[:, i0:i1] = acc.T


@njit(parallel=True, cache=True)
def _transpose_cpu(src, dst):
    # dst = src.T, in parallel slabs of 64 columns of src
    R, C = src.shape
    for b in prange((C + 63) // 64):
        c0 = b * 64
        c1 = min(C, c0 + 64)
        dst[c0:c1, :] = src[:, c0:c1].T


_FROZEN = None  # inside frozen_weights(): {(address, shape, strides, dtype): (w, w.T contiguous)}


@contextmanager
def frozen_weights():
    """Within this block :func:`transposed_weights` of a read-only (non-writeable) weight array is made
    once and reused.  :meth:`pysrm.network.Network.inference` enters it with the network's parameters
    made read-only, so they cannot change while a copy is kept; the copies are dropped on exit."""
    global _FROZEN
    old = _FROZEN
    _FROZEN = {}
    try:
        yield
    finally:
        _FROZEN = old


def transposed_weights(w):
    """``w.T`` as a C-contiguous array (the event kernels read a weight row per input event), made by a
    parallel transpose into a reused workspace (valid until the next call for this shape); inside
    :func:`frozen_weights`, for a read-only ``w``, made once into an array of its own and reused."""
    if _FROZEN is not None and not w.flags.writeable:
        key = (w.ctypes.data, w.shape, w.strides, w.dtype.str)
        hit = _FROZEN.get(key)
        if hit is None:  # the entry holds w itself, so its memory cannot be reused for another array
            wT = np.empty((w.shape[1], w.shape[0]), dtype=w.dtype)
            _transpose_cpu(np.ascontiguousarray(w), wT)
            hit = _FROZEN[key] = (w, wT)
        return hit[1]
    wT = _workspace((w.shape[1], w.shape[0]), w.dtype, "wT")
    _transpose_cpu(np.ascontiguousarray(w), wT)
    return wT


def wgrad_parts(N: int, w) -> int:
    """Number of partial sums of the event weight gradient for a batch of ``N``: it depends on the
    shapes only (at least 4 samples per part -- each part costs a zeroed (I, O) buffer --, at most
    WGRAD_PARTS, at most 256 MB), never on the thread count, so results are bitwise the same with any
    number of threads (sweeps and resumed runs equal serial runs)."""
    return max(1, min(max(1, N // 4), WGRAD_PARTS, (1 << 28) // max(1, w.size * w.itemsize)))


_WORKSPACES: dict = {}


def _key(shape, dtype, tag):
    return (tag, tuple(shape), np.dtype(dtype).str)


def partial_sums_workspace(shape, dtype):
    """The partial sums of the event weight gradients, ``(parts, inputs, outputs)``, reused across
    steps (contents undefined: the kernels zero a row when they first touch it in a call, and say
    which rows they touched), and the ``(parts, inputs)`` touched flags for one call."""
    return _workspace(shape, dtype, "parts"), np.empty(shape[:2], dtype=np.bool_)


def _workspace(shape, dtype, tag: str = ""):
    """A work array of this shape and dtype, allocated once per process and reused (contents undefined).

    The event weight gradient's partial sums are tens of MB (8 x inputs x outputs); allocated afresh
    each step they were new pages every time, and their first touch inside the parallel kernel made the
    first steps of a run up to 5x slower (measured 48 ms instead of 5-10 ms per call at N-MNIST shapes).
    Kept per (tag, shape, dtype): one per use and dense layer shape.  Callers must not hold on to it
    across calls."""
    key = _key(shape, dtype, tag)
    ws = _WORKSPACES.get(key)
    if ws is None:
        ws = _WORKSPACES[key] = np.empty(shape, dtype=dtype)
    return ws


@contextmanager
def dense_path_only():
    """Within this block dense arrays always take the dense (BLAS / loop) paths (used by checks and tests)."""
    global EVENT_DENSITY_THRESHOLD, CONV_EVENT_DENSITY_THRESHOLD
    old = EVENT_DENSITY_THRESHOLD, CONV_EVENT_DENSITY_THRESHOLD
    EVENT_DENSITY_THRESHOLD = CONV_EVENT_DENSITY_THRESHOLD = 0.0
    try:
        yield
    finally:
        EVENT_DENSITY_THRESHOLD, CONV_EVENT_DENSITY_THRESHOLD = old


def events_if_sparse(x, kind: str = "dense"):
    """``x`` as SpikeEvents when it is sparse enough for the event-driven paths of ``kind`` ('dense' or
    'conv'), else ``x`` itself.  Layers call this once per forward so that the backward reuses the events."""
    if isinstance(x, SpikeEvents) or is_device_array(x):
        return x
    ev = _as_events(x, kind)
    return x if ev is None else ev


def _as_events(x, kind: str = "dense"):
    """SpikeEvents for sparse inputs, or None when the dense path is better (``kind``: 'dense' or 'conv')."""
    if isinstance(x, SpikeEvents):
        return x
    threshold = EVENT_DENSITY_THRESHOLD if kind == "dense" else CONV_EVENT_DENSITY_THRESHOLD
    if threshold <= 0.0:
        return None
    return SpikeEvents.from_dense(x, max_density=threshold)


@njit(parallel=True, cache=True)
def _batched_matmul_cpu(a, b, out):
    # out[n] = a @ b[n] for every sample n, in parallel over the samples: one single-threaded BLAS call
    # each (the BLAS library stays single-threaded next to Numba's threads, see pysrm._blas), so a
    # dense layer's products use every core; each product is the one np.matmul makes (bitwise).
    for n in prange(b.shape[0]):
        np.dot(a, b[n], out[n])


@njit(parallel=True, cache=True)
def _matmul_row_blocks_cpu(a, b, out, rows):
    # out = a @ b as one BLAS call per block of `rows` rows of a, in parallel (fixed blocks: the same
    # result with any number of threads)
    M = a.shape[0]
    for k in prange((M + rows - 1) // rows):
        r0 = k * rows
        r1 = min(M, r0 + rows)
        np.dot(a[r0:r1], b, out[r0:r1])


def _check(w, x):
    float_array("w", w, ndim=2)
    if isinstance(x, SpikeEvents):
        shape, dtype = x.shape, x.dtype
    else:
        check_5d("x", x)
        shape, dtype = x.shape, x.dtype
    n_in = shape[1] * shape[2] * shape[3]
    if w.shape[1] != n_in:
        raise ValueError(f"dense weight has {w.shape[1]} inputs but x of shape {shape} has "
                         f"C*H*W = {n_in} input neurons; expected w of shape (outputs, {n_in})")
    if w.dtype != dtype:
        raise TypeError(f"w has dtype {w.dtype} but x has dtype {dtype}; they must match")
    return shape


def dense(w, x):
    r"""``a[n, o, t] = sum_i w[o, i] x[n, i, t]``; returns ``(N, O, 1, 1, T)``.

    ``x`` is a dense ``(N, C, H, W, T)`` array or a :class:`SpikeEvents`.
    """
    if is_device_array(w):
        from . import dense_cuda
        return dense_cuda.dense(w, x)
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O = w.shape[0]
    ev = _as_events(x)
    if ev is not None:
        out = np.empty((N, O, T), dtype=w.dtype)
        _dense_events_cpu(ev.offsets, ev.neuron, ev.time, ev.value, transposed_weights(w), out)
    else:
        out = np.empty((N, O, T), dtype=w.dtype)
        _batched_matmul_cpu(np.ascontiguousarray(w), np.ascontiguousarray(x).reshape(N, -1, T), out)
    return out.reshape(N, O, 1, 1, T)


def dense_backward(w, x, grad, need_input_grad: bool = True):
    r"""Gradients of :func:`dense`: returns ``(grad_x, grad_w)``.

    ``grad_x[n, i, t] = sum_o w[o, i] grad[n, o, t]`` (reshaped like ``x``; ``None``
    when ``need_input_grad`` is False, e.g. for the first layer) and
    ``grad_w[o, i] = sum_{n, t} grad[n, o, t] x[n, i, t]``.
    """
    if is_device_array(w):
        from . import dense_cuda
        return dense_cuda.dense_backward(w, x, grad, need_input_grad)
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O = w.shape[0]
    float_array("grad", grad)
    if grad.shape != (N, O, 1, 1, T):
        raise ValueError(f"grad has shape {grad.shape}; expected the dense output shape {(N, O, 1, 1, T)}")
    same_dtype("grad", grad, "w", w)
    g = grad.reshape(N, O, T)
    ev = _as_events(x)
    if ev is not None:
        # partial gradients over shares of the samples, summed in a fixed order (wgrad_parts)
        parts, touched = partial_sums_workspace((wgrad_parts(N, w), w.shape[1], O), w.dtype)
        _dense_events_wgrad_cpu(ev.offsets, ev.neuron, ev.time, ev.value, np.ascontiguousarray(g), parts,
                                touched)
        grad_w = np.empty_like(w)
        _sum_parts_T(parts, touched, grad_w, False)
    else:
        # grad_w = G X^T with G = grad as (O, N*T) and X = x as (I, N*T): one BLAS product per block of
        # 64 outputs, in parallel, on the two operands laid out as (O, N*T) and (N*T, I)
        x3 = x.reshape(N, -1, T)
        gt = np.ascontiguousarray(g.transpose(1, 0, 2)).reshape(O, N * T)
        xt = np.ascontiguousarray(x3.transpose(0, 2, 1)).reshape(N * T, x3.shape[1])
        grad_w = np.empty_like(w)
        _matmul_row_blocks_cpu(gt, xt, grad_w, 64)
    grad_x = None
    if need_input_grad:
        grad_x = np.empty((N, w.shape[1], T), dtype=w.dtype)
        _batched_matmul_cpu(np.ascontiguousarray(w).T, np.ascontiguousarray(g), grad_x)
        grad_x = grad_x.reshape(shape)
    return grad_x, grad_w
