r"""Fully connected synapse, applied independently in every time bin.

Definition (SLAYER's ``dense``), for input ``x`` of shape ``(N, C, H, W, T)`` flattened to
``(N, I, T)`` with ``I = C*H*W`` and weights ``w`` of shape ``(O, I)``:

.. math::

    a[n, o, t] = \sum_i w[o, i]\, x[n, i, t]

Backward (the adjoint, the transpose):

.. math::

    \frac{\partial\mathcal L}{\partial x[n,i,t]} = \sum_o w[o,i]\, g[n,o,t], \qquad
    \frac{\partial\mathcal L}{\partial w[o,i]} = \sum_{n,t} g[n,o,t]\, x[n,i,t]

The output has shape ``(N, O, 1, 1, T)``.  Exact linear maps, checked by finite differences
(``tests/test_op_dense.py``; CUDA twin :mod:`pysrm.ops.dense_cuda`, tested against these under the
CUDA simulator in ``tests/test_cuda_ops.py``).

Strategies (``strategy=`` of :func:`dense` and :func:`dense_backward`; all give the definition, to
float rounding where the order of a sum differs, tested against ``"plain"``):

``"plain"``
    the definition as written: one loop over ``i`` per output element (``_dense_plain_cpu``,
    ``_dense_plain_backward_cpu``), in parallel over independent outputs.  What a student reads; slow.
``"event"``
    event driven (sparse inputs, a :class:`~pysrm.events.SpikeEvents` or a dense array with few
    non-zeros): the forward adds the weight column ``w[:, i]`` for each input event ``(i, t)``, the
    weight gradient adds ``g[n, :, t]`` per event -- cost O(events x O).  The weight gradient is
    summed into :func:`wgrad_parts` partial sums over fixed shares of the batch (by shape, never by
    thread count) and those are added in a fixed order.  No input gradient from events: that one is
    the BLAS product below.
``"blas"``
    dense BLAS: one single-threaded product per sample (forward, input gradient) or per block of 64
    outputs (weight gradient, ``G X^T`` with ``G`` and ``X`` laid out as ``(O, N*T)`` and
    ``(N*T, I)``), in parallel Numba loops over those fixed blocks.
``"auto"`` (default)
    ``"event"`` when ``x`` is a SpikeEvents or at most the setting ``event_density_threshold`` (:mod:`pysrm.settings`) of its bins are
    non-zero (:func:`resolve`), else ``"blas"``.

Work arrays (the transposed weight, the partial sums) come from the ``workspace`` argument
(:class:`pysrm.workspace.Workspace`, e.g. a network's) or are allocated for the call.  Results are
bitwise independent of the number of threads (every parallel loop is split by shape).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import settings
from .._checks import float_array, same_dtype
from ..backend import is_device_array
from ..events import SpikeEvents
from ._util import check_5d, check_strategy

#: strategies of :func:`dense` / :func:`dense_backward`
STRATEGIES = ("auto", "plain", "event", "blas")


# --------------------------------------------------------------------------- the definition ("plain")

@njit(parallel=True, cache=True)
def _dense_plain_cpu(w, x, out):
    # a[n, o, t] = sum_i w[o, i] x[n, i, t], i ascending; one task per (n, o)
    N, I, T = x.shape
    O = w.shape[0]
    for job in prange(N * O):
        n = job // O
        o = job % O
        for t in range(T):
            acc = out.dtype.type(0.0)
            for i in range(I):
                acc += w[o, i] * x[n, i, t]
            out[n, o, t] = acc


@njit(parallel=True, cache=True)
def _dense_plain_backward_cpu(w, x, g, gx, gw, need_input_grad):
    # gx[n, i, t] = sum_o w[o, i] g[n, o, t] (o ascending); gw[o, i] = sum_n sum_t g[n, o, t] x[n, i, t]
    N, I, T = x.shape
    O = w.shape[0]
    for job in prange(O * I):
        o = job // I
        i = job % I
        acc = gw.dtype.type(0.0)
        for n in range(N):
            for t in range(T):
                acc += g[n, o, t] * x[n, i, t]
        gw[o, i] = acc
    if need_input_grad:
        for job in prange(N * I):
            n = job // I
            i = job % I
            for t in range(T):
                acc = gx.dtype.type(0.0)
                for o in range(O):
                    acc += w[o, i] * g[n, o, t]
                gx[n, i, t] = acc


# --------------------------------------------------------------------------- strategy "event"

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



def transposed_weights(w, workspace=None):
    """``w.T`` as a C-contiguous array (the event kernels read a weight row per input event).

    Made by a parallel transpose: into a work array of ``workspace`` (valid until its next use for this
    shape), or, inside ``workspace.frozen()`` for a read-only ``w``, once per block; into a new array
    without a workspace.

    Parameters
    ----------
    w : ndarray, shape (O, I)
        The weights, float32 or float64.
    workspace : Workspace or None, default None
        Where the work array comes from (:class:`pysrm.workspace.Workspace`); None allocates one.

    Returns
    -------
    ndarray, shape (I, O)
        ``w.T``, C-contiguous, dtype of ``w``.
    """
    def make(w):
        wT = np.empty((w.shape[1], w.shape[0]), dtype=w.dtype)
        _transpose_cpu(np.ascontiguousarray(w), wT)
        return wT
    if workspace is None:
        return make(w)
    hit = workspace.frozen_copy("wT", w, make)
    if hit is not None:
        return hit
    wT = workspace.array("wT", (w.shape[1], w.shape[0]), w.dtype)
    _transpose_cpu(np.ascontiguousarray(w), wT)
    return wT


def wgrad_parts(N: int, w) -> int:
    """Number of partial sums of the event weight gradient for a batch of ``N``.

    It depends on the shapes only (at least 4 samples per part -- each part costs a zeroed (I, O)
    buffer --, at most the setting ``dense_wgrad_parts``, at most 256 MB), never on the thread count,
    so results are bitwise the same with any number of threads (sweeps and resumed runs equal serial
    runs).

    Parameters
    ----------
    N : int
        The batch size.
    w : ndarray, shape (O, I)
        The weights (their size and itemsize bound the memory).

    Returns
    -------
    int
        The number of parts, >= 1.
    """
    return max(1, min(max(1, N // 4), settings.current().dense_wgrad_parts, (1 << 28) // max(1, w.size * w.itemsize)))


def partial_sums_workspace(shape, dtype, workspace=None):
    """Work arrays of the event weight gradient: the partial sums and their touched flags.

    The contents are undefined: the kernels zero a row when they first touch it in a call, and say
    which rows they touched.  From ``workspace`` when given (reused across steps: fresh pages each step
    made the first steps several times slower), else new.

    Parameters
    ----------
    shape : tuple of int
        ``(parts, I, O)``: :func:`wgrad_parts`, inputs, outputs.
    dtype : numpy dtype
        float32 or float64, the weights' dtype.
    workspace : Workspace or None, default None
        Where the partial sums come from (:class:`pysrm.workspace.Workspace`); None allocates.

    Returns
    -------
    parts : ndarray, shape (parts, I, O)
        The partial sums, ``dtype``.
    touched : ndarray, shape (parts, I)
        bool flags, one per row of ``parts``.
    """
    parts = workspace.array("wgrad_parts", shape, dtype) if workspace is not None else np.empty(shape, dtype)
    return parts, np.empty(shape[:2], dtype=np.bool_)


def events_if_sparse(x, kind: str = "dense"):
    """``x`` as SpikeEvents when it is sparse enough for the event-driven paths of ``kind``, else ``x``.

    Sparse enough: at most the setting ``event_density_threshold`` (``kind='dense'``) or
    ``conv_event_density_threshold`` (otherwise) of its bins are non-zero.  Layers call this once per
    forward so that the backward reuses the events.

    Parameters
    ----------
    x : ndarray, SpikeEvents or CUDA device array
        Dense input of shape (N, C, H, W, T), float32 or float64; SpikeEvents and device arrays are
        returned as they are.
    kind : {"dense", "conv"}, default "dense"
        Which threshold applies: ``'dense'``, or ``'conv'`` for conv and pool layers.

    Returns
    -------
    SpikeEvents or ndarray
        The events of ``x`` (shape and dtype of ``x``), or ``x`` itself.

    Raises
    ------
    TypeError
        ``x`` is neither SpikeEvents, a device array nor a float32/float64 ndarray.
    ValueError
        ``x`` is not 5-D, or holds non-finite values.
    """
    if isinstance(x, SpikeEvents) or is_device_array(x):
        return x
    cfg = settings.current()
    threshold = cfg.event_density_threshold if kind == "dense" else cfg.conv_event_density_threshold
    ev = SpikeEvents.from_dense(x, max_density=threshold)
    return x if ev is None else ev


def as_events(x) -> SpikeEvents:
    """``x`` as SpikeEvents whatever its density (what the ``"event"`` strategy runs on).

    Parameters
    ----------
    x : ndarray or SpikeEvents
        Shape (N, C, H, W, T), float32 or float64.

    Returns
    -------
    SpikeEvents
        ``x`` itself, or the events of its non-zero entries (shape and dtype of ``x``).

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray (nor SpikeEvents).
    ValueError
        ``x`` is not 5-D, or holds non-finite values.
    """
    return x if isinstance(x, SpikeEvents) else SpikeEvents.from_dense(x)


def as_dense(x) -> np.ndarray:
    """``x`` as a dense array (what the ``"plain"`` and ``"blas"`` strategies run on).

    Parameters
    ----------
    x : ndarray or SpikeEvents
        Shape (N, C, H, W, T), float32 or float64.

    Returns
    -------
    ndarray, shape (N, C, H, W, T)
        ``x`` itself, or the dense tensor of the events (dtype of ``x``).
    """
    return x.to_dense() if isinstance(x, SpikeEvents) else x


def resolve(strategy: str, x, kind: str = "dense"):
    """Decide ``"auto"`` and put ``x`` in the form the strategy reads (events or dense).

    Parameters
    ----------
    strategy : {"auto", "plain", "event", "blas"}
        The requested strategy; ``"auto"`` is ``"event"`` when :func:`events_if_sparse` gives events,
        else ``"blas"``.
    x : ndarray or SpikeEvents
        The input, shape (N, C, H, W, T), float32 or float64.
    kind : {"dense", "conv"}, default "dense"
        Which density threshold ``"auto"`` applies (:func:`events_if_sparse`).

    Returns
    -------
    strategy : str
        ``"plain"``, ``"event"`` or ``"blas"``.
    x : ndarray or SpikeEvents
        SpikeEvents for ``"event"``, else a dense ndarray.

    Raises
    ------
    ValueError
        ``strategy`` is unknown (the message lists the valid ones); ``x`` is not 5-D or holds non-finite
        values.
    TypeError
        ``x`` is not a float32/float64 ndarray (nor SpikeEvents).
    """
    check_strategy(strategy, STRATEGIES)
    if strategy == "auto":
        ev = events_if_sparse(x, kind)
        return ("event", ev) if isinstance(ev, SpikeEvents) else ("blas", x)
    return strategy, (as_events(x) if strategy == "event" else as_dense(x))


# --------------------------------------------------------------------------- strategy "blas"

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


def dense(w, x, strategy: str = "auto", workspace=None):
    r"""Dense synapse, applied independently in every time bin (SLAYER's ``dense``).

    .. math::

        a[n, o, t] = \sum_i w[o, i]\, x[n, i, t]

    with ``x`` flattened to ``(N, I, T)``, ``I = C*H*W``.

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (O, I)
        The weights, float32 or float64 (the potential's unit per unit of ``x``).
    x : ndarray, SpikeEvents or CUDA device array, shape (N, C, H, W, T)
        The input, ``C*H*W == I``, the dtype of ``w``.
    strategy : {"auto", "plain", "event", "blas"}, default "auto"
        How to compute it (module docstring); ignored for device arrays.
    workspace : Workspace or None, default None
        Work arrays reused from it (:class:`pysrm.workspace.Workspace`); None allocates them.

    Returns
    -------
    ndarray or CUDA device array, shape (N, O, 1, 1, T)
        The synaptic input ``a``, dtype of ``w``.

    Raises
    ------
    TypeError
        ``w`` or ``x`` is not float32/float64, or their dtypes differ.
    ValueError
        ``w`` is not 2-D, ``x`` not 5-D, ``w.shape[1] != C*H*W``, non-finite values, or an unknown
        ``strategy``.

    See Also
    --------
    dense_backward : the adjoint.

    Notes
    -----
    ``"auto"`` takes ``"event"`` when ``x`` is a SpikeEvents or at most the setting
    ``event_density_threshold`` (:mod:`pysrm.settings`) of its bins are non-zero, else ``"blas"``.
    Results are bitwise independent of the number of threads.
    """
    if is_device_array(w):
        from . import dense_cuda
        return dense_cuda.dense(w, x)
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O = w.shape[0]
    strategy, x = resolve(strategy, x)
    out = np.empty((N, O, T), dtype=w.dtype)
    if strategy == "event":
        _dense_events_cpu(x.offsets, x.neuron, x.time, x.value, transposed_weights(w, workspace), out)
    elif strategy == "blas":
        _batched_matmul_cpu(np.ascontiguousarray(w), np.ascontiguousarray(x).reshape(N, -1, T), out)
    else:
        _dense_plain_cpu(np.ascontiguousarray(w), np.ascontiguousarray(x).reshape(N, -1, T), out)
    return out.reshape(N, O, 1, 1, T)


def dense_backward(w, x, grad, need_input_grad: bool = True, strategy: str = "auto", workspace=None):
    r"""Gradients of :func:`dense` (its adjoint, the transpose).

    .. math::

        \frac{\partial\mathcal L}{\partial x[n,i,t]} = \sum_o w[o,i]\, g[n,o,t], \qquad
        \frac{\partial\mathcal L}{\partial w[o,i]} = \sum_{n,t} g[n,o,t]\, x[n,i,t]

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (O, I)
        The weights, float32 or float64.
    x : ndarray, SpikeEvents or CUDA device array, shape (N, C, H, W, T)
        The forward's input, ``C*H*W == I``, the dtype of ``w``.
    grad : ndarray or CUDA device array, shape (N, O, 1, 1, T)
        The loss gradient ``g`` with respect to :func:`dense`'s output, the dtype of ``w``.
    need_input_grad : bool, default True
        False skips the input gradient (e.g. for the first layer).
    strategy : {"auto", "plain", "event", "blas"}, default "auto"
        As for :func:`dense`; the ``"event"`` strategy takes the input gradient from the BLAS product
        (events do not help there).  Ignored for device arrays.
    workspace : Workspace or None, default None
        Work arrays reused from it (:class:`pysrm.workspace.Workspace`); None allocates them.

    Returns
    -------
    grad_x : ndarray or None
        Shape and dtype of ``x`` (dense); None when ``need_input_grad`` is False.
    grad_w : ndarray
        Shape (O, I) and dtype of ``w``.

    Raises
    ------
    TypeError
        ``w``, ``x`` or ``grad`` is not float32/float64, or their dtypes differ.
    ValueError
        ``w`` is not 2-D, ``x`` not 5-D, ``w.shape[1] != C*H*W``, ``grad`` not of shape
        ``(N, O, 1, 1, T)``, non-finite values, or an unknown ``strategy``.

    See Also
    --------
    dense : the forward.
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
    g = np.ascontiguousarray(grad).reshape(N, O, T)
    strategy, x = resolve(strategy, x)
    if strategy == "plain":
        x3 = np.ascontiguousarray(x).reshape(N, -1, T)
        grad_w = np.empty_like(w)
        grad_x = np.empty(x3.shape if need_input_grad else (1, 1, 1), dtype=w.dtype)
        _dense_plain_backward_cpu(np.ascontiguousarray(w), x3, g, grad_x, grad_w, bool(need_input_grad))
        return (grad_x.reshape(shape) if need_input_grad else None), grad_w
    if strategy == "event":
        # partial gradients over shares of the samples, summed in a fixed order (wgrad_parts)
        parts, touched = partial_sums_workspace((wgrad_parts(N, w), w.shape[1], O), w.dtype, workspace)
        _dense_events_wgrad_cpu(x.offsets, x.neuron, x.time, x.value, g, parts, touched)
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
    grad_x = dense_input_grad(w, g).reshape(shape) if need_input_grad else None
    return grad_x, grad_w


def dense_input_grad(w, g):
    r"""The input gradient of :func:`dense`: ``grad_x[n, i, t] = sum_o w[o, i] g[n, o, t]``.

    The BLAS product of :func:`dense_backward`; no argument is checked.

    Parameters
    ----------
    w : ndarray, shape (O, I)
        The weights, float32 or float64.
    g : ndarray, shape (N, O, T)
        The loss gradient with respect to the dense output, the dtype of ``w``.

    Returns
    -------
    ndarray, shape (N, I, T)
        The input gradient, dtype of ``w``.
    """
    N, O, T = g.shape
    grad_x = np.empty((N, w.shape[1], T), dtype=w.dtype)
    _batched_matmul_cpu(np.ascontiguousarray(w).T, np.ascontiguousarray(g), grad_x)
    return grad_x


class DenseInputGrad:
    r"""The input gradient of a dense layer, not yet computed.

    :math:`g_x[n, i, t] = \sum_o w[o, i]\, g[n, o, t]`.

    What a dense step of a :mod:`pysrm.plan` hands back when the step before it can use the product row
    by row (:func:`pysrm.ops.delay.delay_backward_from_dense`) instead of reading it from memory.
    :meth:`materialize` computes it (the BLAS product of :func:`dense_backward`).

    Parameters
    ----------
    w : ndarray, shape (O, I)
        The weights, float32 or float64.
    g : ndarray, shape (N, O, 1, 1, T)
        The loss gradient with respect to the dense output, the dtype of ``w``.
    shape : tuple of int
        The input's shape ``(N, C, H, W, T)``, ``C*H*W == I``.
    """

    __slots__ = ("w", "g", "shape")

    def __init__(self, w, g, shape):
        self.w, self.g, self.shape = w, g, tuple(shape)

    def materialize(self) -> np.ndarray:
        """Compute the gradient (:func:`dense_input_grad`).

        Returns
        -------
        ndarray, shape (N, C, H, W, T)
            ``shape``, the dtype of ``w``.
        """
        N, T = self.shape[0], self.shape[-1]
        return dense_input_grad(self.w, np.ascontiguousarray(self.g).reshape(N, self.w.shape[0], T)).reshape(self.shape)
