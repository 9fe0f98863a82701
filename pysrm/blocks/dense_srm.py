r"""Dense -> SRM [-> Delay] blocks on the CPU: the first layers of an event-driven network, fused.

What it fuses, per sample in one ``(T, O)`` buffer that stays in cache (time-major: a row is one time
bin of every neuron, so the per-neuron recursions run across neurons in vector registers), instead of
three passes over ``(N, O, T)`` arrays in memory:

.. math::

    a = W x, \qquad u = \epsilon * a, \qquad (s, u_{ref}) = \mathrm{spike}(u),
    \qquad y[t] = (1-f)\, s[t-m] + f\, s[t-m-1]

scheduled over the ops' primitives: the event rows of the dense op
(:func:`pysrm.ops.dense.add_weighted_rows`, :func:`pysrm.ops.dense.add_event_rows_by_neuron`), the
alpha recursion and the correlation time-major (:func:`pysrm.ops.srm.alpha_time_major`,
:func:`pysrm.ops.srm.correlation_time_major`), the spike scan of a time bin
(:func:`pysrm.ops.spike.scan_bin_time_major`), the surrogate (:func:`pysrm.ops._fastexp.rho_row`) and
the delay's adjoint read from a dense layer's output gradient (``pysrm.ops.delay``).

Engines (each also works where its fused pass does not apply -- GPU arrays, dense inputs -- by running
the separate ops; exported by :mod:`pysrm.functional`):

* :func:`dense_srm_forward` -- ``spike(psp(dense(w, x)))`` for an event input: the weight rows of the
  input events, the alpha recursion across neurons, the spike scan; optionally the spikes as events
  for the next layer (no dense spike array) and the potential time-major.  Bitwise the separate ops.
* :func:`srm_dense_backward_weights` -- the first layer's weight gradient
  ``dense_backward(w, x, srm_backward(grad_s, u))[1]``, time-major per sample.  Bitwise.
* :func:`srm_dense_backward_through_delay` -- the same from the gradient of a dense layer with few
  outputs read through a delay (``dense -> srm -> delay -> dense``): the delay's input gradient is
  made row by row inside the pass.  Bitwise :func:`pysrm.ops.delay.delay_backward_from_dense`
  followed by :func:`srm_dense_backward_weights`.

Blocks and their policy (the plan's steps, :mod:`pysrm.plan`; CPU plans with ``fuse=True`` and
``strategy="auto"``):

``DenseSRMBlock``       Dense -> SRM.  Forward: the fused pass on an event input whose spike response
                        is an alpha function long enough for the recursion
                        (:func:`fused_forward_applies`) from the setting ``fused_min_outputs`` outputs up, or
                        whenever its spikes are handed on as events; else the dense op and the SRM op.
                        Backward of a first layer: the fused weight gradient; of a hidden one the SRM
                        backward and the dense backward, the input gradient handed on uncomputed
                        (:data:`pysrm.plan.DENSE_INPUT_GRAD`) where the step before takes it.
``DenseSRMDelayBlock``  Dense -> SRM -> Delay (the delay's time step the neurons').  As above; where the
                        next step takes events (a dense or conv layer) the spikes are handed to the
                        delay as events and delayed as events (:func:`pysrm.ops.delay.delay_events`;
                        bitwise), as an array where the delayed events are denser than the next step
                        takes.  Backward from a deferred dense input gradient: made row by row inside
                        the delay backward (:func:`pysrm.ops.delay.delay_backward_from_dense`), and for
                        a first layer inside its fused weight-gradient pass
                        (:func:`srm_dense_backward_through_delay`).

Results: spikes and the SRM-Dense weight gradients bitwise those of the unfused plan; with a delay,
gradients equal to float rounding (the dense input gradient's sum runs in another order than BLAS).
Tests: ``tests/test_blocks_dense_srm.py`` (every block against the unfused plan) and
``tests/test_op_spike.py`` (each engine against the composition of the ops, bitwise).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange

from .._checks import positive
from ..backend import is_device_array
from ..events import SpikeEvents
from ..layers import SRM, Delay, Dense
from ..ops._fastexp import rho_row
from ..ops._records import NeuronBackward, NeuronForward, events_of
from ..ops._util import as_rows, response_as
from ..ops.delay import _delay_back_time_major, delay, delay_backward, delay_backward_from_dense, delay_events
from ..ops.dense import DenseInputGrad, add_event_rows_by_neuron, add_weighted_rows, dense_backward, events_if_sparse
from ..ops.dense import dense as dense_op
from ..ops.psp import alpha_parameters
from ..ops.spike import firing_threshold, flag_words, scan_bin_time_major
from ..ops.srm import alpha_time_major, correlation_time_major, srm_backward, srm_forward
from .. import settings
from ..plan import ARRAY, DENSE_INPUT_GRAD, EVENTS, Step, materialize



# --------------------------------------------------------------------------- engines

#: what the fused first-layer forward writes (_dense_srm_events_cpu): the potential u_out (write_u: 0 not at
#: all (inference), 1 neuron-major (N, O, T), 2 time-major (N, T, O)), the dense spikes s_out (N, O, T)
#: with write_s, and with write_idx the spikes listed per sample: spike_neuron[n, k] = o,
#: spike_time[n, k] = t for k < spike_count[n], time-major in the order found
DenseSRMOutputs = namedtuple("DenseSRMOutputs",
                             "u_out write_u s_out write_s spike_neuron spike_time spike_count write_idx")

#: the delay between a first layer and a dense layer with few outputs (_srm_backward_wgrad_events_cpu with
#: enabled): the outer output gradient gy (N, O2, T), the outer weight w2 (O2, O), the delay's shift in
#: bins, its input spikes as events (d_offsets, d_neuron, d_time, d_value: EventArrays' fields; a record
#: inside a record does not pass a parallel kernel's boundary in Numba), and gd_rows (N, O), the
#: delay-gradient terms (output)
DelayThrough = namedtuple("DelayThrough", "enabled gy w2 shift d_offsets d_neuron d_time d_value gd_rows")


@njit(parallel=True, cache=True)
def _dense_srm_events_cpu(ev, wT, stage, amp, T, n_chunks, out):
    # Per sample, all in one (T, O) buffer that stays in cache (time-major: a row is one time bin of
    # every neuron, so the recursions below run across neurons):
    #   1. a[t, :] += value * wT[i, :] for each input event (i, t)            (pysrm.ops.dense, events)
    #      (grouped by t, add_weighted_rows)
    #   2. psp by the alpha recursion of pysrm.ops.psp, in place, time-major (alpha_time_major)
    #   3. the spike scan of pysrm.ops.spike: u >= theta spikes and adds nu to the following bins
    #      (theta: the firing threshold of pysrm.ops.spike.firing_threshold)
    #   4. the outputs written as `out` (DenseSRMOutputs) asks
    # Per element the operations and their order are those of the separate kernels, so the result is
    # bitwise theirs (tested).  ev: EventArrays; stage: NeuronForward (its alpha recursion)
    offsets, neuron, time, value = ev.offsets, ev.neuron, ev.time, ev.value
    alpha, gain, L, nu, theta = stage.alpha, stage.gain, stage.L, stage.nu, stage.theta
    u_out, write_u, s_out, write_s = out.u_out, out.write_u, out.s_out, out.write_s
    spike_neuron, spike_time, spike_count, write_idx = out.spike_neuron, out.spike_time, out.spike_count, out.write_idx
    N = offsets.shape[0] - 1
    O = wT.shape[1]
    per = (N + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):  # work buffers allocated once per chunk of samples
        acc = np.empty((T, O), dtype=u_out.dtype)
        hist = np.empty((2, L, O))
        first = np.empty(T + 1, dtype=np.int64)
        flag = np.zeros(8 * ((O + 7) // 8), dtype=np.uint8)  # one byte per neuron: u >= theta in this bin
        words = flag_words(flag, O)  # eight neurons' flags per word (the tail bytes stay 0)
        found = np.empty(O, dtype=np.int64)
        for n in range(c * per, min(N, (c + 1) * per)):
            acc[:, :] = 0.0
            # the sample's events grouped by time bin (stable counting sort: within a bin they keep
            # their stored, neuron-ascending order, so each acc element sums in the same order as
            # the plain event loop), then added up to eight weight rows at a time per acc row
            e0, e1 = offsets[n], offsets[n + 1]
            first[:] = 0
            for k in range(e0, e1):
                first[time[k] + 1] += 1
            for t in range(T):
                first[t + 1] += first[t]
            nb = np.empty(e1 - e0, dtype=np.int32)
            vb = np.empty(e1 - e0, dtype=value.dtype)
            fill = first[:T].copy()
            for k in range(e0, e1):
                t = time[k]
                nb[fill[t]] = neuron[k]
                vb[fill[t]] = value[k]
                fill[t] += 1
            for t in range(T):
                add_weighted_rows(acc[t], wT, nb, vb, first[t], first[t + 1])
            alpha_time_major(acc, alpha, gain, L, hist, False)
            sn = s_out[n] if write_s else s_out[0]
            if write_s:
                sn[:, :] = 0.0
            ns = 0
            for t in range(T):
                # the spike scan of bin t (pysrm.ops.spike.scan_bin_time_major), then its spikes written
                k = scan_bin_time_major(acc, t, nu, theta, flag, words, found)
                for i in range(k):
                    o = found[i]
                    if write_s:
                        sn[o, t] = amp
                    if write_idx:
                        spike_neuron[n, ns] = o
                        spike_time[n, ns] = t
                        ns += 1
            if write_idx:
                spike_count[n] = ns
            if write_u == 1:
                u_out[n, :, :] = acc.T
            elif write_u == 2:  # time-major (N, T, O): a plain copy, much cheaper than the transposed one
                u_out[n, :, :] = acc


def sample_chunks(N: int) -> int:
    """Tasks of the per-sample fused kernels for a batch of ``N``: by shape (at most
    :mod:`pysrm.settings`' ``sample_chunks``), never by thread count."""
    return max(1, min(N, settings.current().sample_chunks))


def fused_forward_applies(w, x, srm_kernel) -> bool:
    """True where :func:`dense_srm_forward` runs fused (a CPU weight, an event input, an alpha spike
    response of at least the setting ``recursive_min_length`` samples); elsewhere it composes the three ops."""
    from ..events import SpikeEvents
    return (not is_device_array(w) and isinstance(x, SpikeEvents) and len(srm_kernel) >= settings.current().recursive_min_length
            and alpha_parameters(srm_kernel) is not None)


def dense_srm_forward(w, x, srm_kernel, refractory_kernel, theta: float, ts: float, need_potential: bool = True,
                      need_events: bool = False, need_dense_spikes: bool = True, time_major_potential: bool = False,
                      workspace=None):
    r"""``spike(psp(dense(w, x)))`` for an event input: returns ``(s, u_ref)``, each ``(N, O, 1, 1, T)``.

    The first layer of an event-driven network in one pass per sample: the weight columns of the
    input events, the spike response and the spike scan all run on a ``(T, O)`` buffer that stays in
    cache, instead of three passes over ``(N, O, T)`` arrays in memory (pysrm.ops.dense, .psp,
    .spike: same operations in the same order, bitwise the same result, tested).  Used when ``x`` is
    a :class:`~pysrm.events.SpikeEvents` on the CPU and the spike response is an alpha function long
    enough for the recursion (the setting ``recursive_min_length``); otherwise it is the
    composition of the three ops.  With ``need_potential=False`` (inference) ``u_ref`` is not written
    and None is returned in its place.  With ``need_events=True`` a third item is returned: the output
    spikes as :class:`~pysrm.events.SpikeEvents` (listed by the scan itself, no pass over ``s``; None
    on the fallback path), and with ``need_dense_spikes=False`` as well the dense ``s`` is not written
    (None in its place, except on the fallback path).  With ``time_major_potential=True`` the potential
    is returned time-major, ``(N, T, O)`` (what :func:`srm_dense_backward_weights` reads; on the
    fallback path too).  The backward is the layers' own
    (:func:`srm_backward`, then :func:`pysrm.ops.dense.dense_backward`).
    """
    from ..ops.dense import _check, dense, transposed_weights
    from ..events import SpikeEvents
    if not fused_forward_applies(w, x, srm_kernel):
        s, u = srm_forward(dense(w, x, workspace=workspace), srm_kernel, refractory_kernel, theta, ts)
        if not need_potential:
            u = None
        elif time_major_potential and not is_device_array(u):
            N, O, T = u.shape[0], int(np.prod(u.shape[1:-1])), u.shape[-1]
            u = np.ascontiguousarray(u.reshape(N, O, T).transpose(0, 2, 1))
        return (s, u) + ((None,) if need_events else ())
    shape = _check(w, x)
    alpha = alpha_parameters(srm_kernel)
    N, T = shape[0], shape[4]
    O = w.shape[0]
    dt = w.dtype.type
    write_s = need_dense_spikes or not need_events
    nu = response_as("refractory_kernel", refractory_kernel, w.dtype)
    u_mode = (2 if time_major_potential else 1) if need_potential else 0
    u = np.empty(((N, T, O) if u_mode == 2 else (N, O, T)) if u_mode else (1, 1, 1), dtype=w.dtype)
    s = np.empty((N, O, T) if write_s else (1, 1, 1), dtype=w.dtype)
    sp_n = np.empty((N, O * T) if need_events else (1, 1), dtype=np.int32)
    sp_t = np.empty_like(sp_n)
    count = np.zeros(N, dtype=np.int64)
    amp = dt(1.0 / positive("ts", ts))
    stage = NeuronForward(alpha[0], alpha[1] * ts, len(srm_kernel),
                          response_as("srm_kernel", srm_kernel, w.dtype) * dt(ts), True, nu,
                          firing_threshold(positive("theta", theta), w.dtype))
    _dense_srm_events_cpu(events_of(x), transposed_weights(w, workspace), stage, amp, T, sample_chunks(N),
                          DenseSRMOutputs(u, u_mode, s, write_s, sp_n, sp_t, count, bool(need_events)))
    out = (s.reshape(N, O, 1, 1, T) if write_s else None,
           (u if u_mode == 2 else u.reshape(N, O, 1, 1, T)) if u_mode else None)
    if need_events:
        out += (SpikeEvents.from_spike_lists((N, O, 1, 1, T), sp_n, sp_t, count, amp),)
    return out


@njit(parallel=True, cache=True)
def _srm_backward_wgrad_events_cpu(ev, g, u, stage, parts, touched, through):
    # The first layer's backward in one pass per sample, time-major (a row is one time bin of every
    # neuron), on the partial sums of the event weight gradient (pysrm.ops.dense._dense_events_wgrad_cpu:
    # same parts, same samples per part, same order):
    #   gT = grad_s[n] transposed; gu[t] = gT[t] * rho(u[n, t]) (rho_row on each time bin, u kept
    #   time-major (N, T, O) by the forward); ga = the correlation of gu with the spike response (the
    #   alpha recursion backwards in time or the direct sum, in place on gu: correlation_time_major, as
    #   srm_backward picks, across neurons); then parts[p, i, :] += value * ga[t, :] for each input event (i, t)
    #   (a row zeroed where the part first touches it, flagged in touched[p])
    #   (grouped by neuron, add_weighted_rows).
    # Nothing of size (N, O, T) is written; per element the operations are those of srm_backward and
    # the event weight gradient, so the result is bitwise theirs (tested).
    # With through.enabled (DelayThrough), grad_s is not given: it is the input gradient of a delay (shift
    # `shift`, input spikes as events d_events) read by a dense layer w2 with few outputs and output
    # gradient gy, made here time-major per sample by pysrm.ops.delay._delay_back_time_major (the
    # operations of _delay_backward_from_dense_cpu: bitwise its result), along with the delay-gradient
    # terms gd_rows[n, j].  ev: EventArrays; stage: NeuronBackward
    offsets, neuron, time, value = ev.offsets, ev.neuron, ev.time, ev.value
    theta, scale, width, L = stage.theta, stage.scale, stage.width, stage.L
    gy, w2, shift, gd_rows = through.gy, through.w2, through.shift, through.gd_rows
    d_off, d_neu, d_time, d_val = through.d_offsets, through.d_neuron, through.d_time, through.d_value
    N, T, O = u.shape
    n_parts = parts.shape[0]
    step = (N + n_parts - 1) // n_parts
    a = scale / width
    inv_width = g.dtype.type(1.0) / width
    for p in prange(n_parts):
        gw = parts[p]
        tp = touched[p]
        tp[:] = False
        gT = np.empty((T, O), dtype=g.dtype)
        gu = np.empty((T, O), dtype=g.dtype)
        hist = np.empty((2, L, O))
        scratch = np.empty(O, dtype=np.int32)
        row = np.empty(O, dtype=g.dtype)
        G = np.empty((T, O) if through.enabled else (1, 1), dtype=g.dtype)
        acc64 = np.empty(O if through.enabled else 1)
        for n in range(p * step, min(N, (p + 1) * step)):
            if through.enabled:
                _delay_back_time_major(gy, w2, n, shift, d_off, d_neu, d_time, d_val, G, gT, gd_rows[n], acc64)
            else:
                gT[:, :] = g[n].T
            un = u[n]
            for t in range(T):
                rho_row(gT[t], un[t], theta, a, inv_width, gu[t], scratch)
            correlation_time_major(gu, row, hist, stage)
            add_event_rows_by_neuron(gw, gu, neuron, time, value, offsets[n], offsets[n + 1], tp)


def _potential_time_major(u, N, O, T, u_time_major):
    """The kept potential as the fused backward reads it, ``(N, T, O)``: ``u`` as given when it is
    already time-major, else ``(N, O, 1, 1, T)`` transposed."""
    if u_time_major:
        return np.ascontiguousarray(u)
    return np.ascontiguousarray(as_rows("u", u).reshape(N, O, T).transpose(0, 2, 1))


def _potential_neuron_major(u, N, O, T, u_time_major):
    """The kept potential in the layout of the spikes, ``(N, O, 1, 1, T)``."""
    if u_time_major:
        return np.ascontiguousarray(u.transpose(0, 2, 1)).reshape(N, O, 1, 1, T)
    return u


def fused_backward_applies(grad_s, w, x) -> bool:
    """True where :func:`srm_dense_backward_weights` runs as one fused pass (CPU arrays, an event input
    ``x``); elsewhere it composes :func:`srm_backward` and :func:`pysrm.ops.dense.dense_backward`."""
    from ..events import SpikeEvents
    return not is_device_array(grad_s) and not is_device_array(w) and isinstance(x, SpikeEvents)


def srm_dense_backward_weights(grad_s, u, neuron, srm_kernel, ts: float, w, x, u_time_major: bool = False,
                               accumulate_into=None, workspace=None):
    r"""Weight gradient of a first layer ``s = spike(psp(dense(w, x)))``:
    ``dense_backward(w, x, srm_backward(grad_s, u, ...), need_input_grad=False)[1]``.

    Parameters
    ----------
    grad_s : ndarray (N, O, 1, 1, T), the gradient of the layer's spikes
    u : the potential the forward kept: ``(N, O, 1, 1, T)``, or ``(N, T, O)`` with ``u_time_major``
        (as :func:`dense_srm_forward` gives it with ``time_major_potential``)
    neuron, srm_kernel, ts : the layer's :class:`~pysrm.params.NeuronParams`, spike response, time step (ms)
    w : ndarray (O, I); x : the layer's input, :class:`~pysrm.events.SpikeEvents` or ``(N, C, H, W, T)``
    accumulate_into : optional C-contiguous array like ``w`` (e.g. the parameter's gradient): the result
        is added to it and it is returned (no separate ``grad_w`` array)
    workspace : :class:`pysrm.workspace.Workspace` or None

    Returns ``grad_w`` (O, I).  For an event input on the CPU (:func:`fused_backward_applies`) in one pass
    per sample, time-major (no ``(N, O, T)`` intermediate; bitwise the two ops, tested); otherwise the two
    ops.  Raises TypeError for mismatched dtypes, ValueError for mismatched shapes.
    """
    from ..ops.dense import _check, dense_backward
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O = w.shape[0]
    if grad_s.dtype != w.dtype or u.dtype != w.dtype:
        raise TypeError(f"grad_s ({grad_s.dtype}), u ({u.dtype}) and w ({w.dtype}) must have the same dtype")
    if u_time_major and u.shape != (N, T, O):
        raise ValueError(f"time-major u has shape {u.shape}; expected {(N, T, O)}")
    if not fused_backward_applies(grad_s, w, x):
        g_a = srm_backward(grad_s, _potential_neuron_major(u, N, O, T, u_time_major), neuron, srm_kernel, ts)
        _, gw = dense_backward(w, x, g_a, need_input_grad=False, workspace=workspace)
        return _accumulated(gw, accumulate_into)
    g = as_rows("grad_s", grad_s).reshape(N, O, T)
    return _fused_wgrad(g, _potential_time_major(u, N, O, T, u_time_major), neuron, srm_kernel, ts, w, x, None,
                        accumulate_into, workspace)


def _accumulated(gw, accumulate_into):
    if accumulate_into is None:
        return gw
    accumulate_into += gw
    return accumulate_into


def _fused_wgrad(g, ur, neuron, srm_kernel, ts, w, x, through, accumulate_into, workspace):
    """The fused first-layer weight gradient (_srm_backward_wgrad_events_cpu) on a time-major potential
    ``ur``; ``through``: the delay-backward arguments of srm_dense_backward_through_delay, or None."""
    from ..ops.dense import _sum_parts_T, partial_sums_workspace, wgrad_parts
    N, T, O = ur.shape
    dt = w.dtype.type
    width = neuron.tau_rho * neuron.theta
    alpha = alpha_parameters(srm_kernel) if len(srm_kernel) >= settings.current().recursive_min_length_backward else None
    k = response_as("srm_kernel", srm_kernel, w.dtype) * dt(ts)
    parts, touched = partial_sums_workspace((wgrad_parts(N, w), w.shape[1], O), w.dtype, workspace)
    if through is None:  # a DelayThrough that is not used: arrays of the right types, no data
        f1, i1, i0 = np.empty(1, w.dtype), np.empty(1, np.int32), np.zeros(2, np.int64)
        through = DelayThrough(False, np.empty((1, 1, 1), w.dtype), np.empty((1, 1), w.dtype), f1, i0, i1, i1, f1,
                               np.empty((1, 1), w.dtype))
    stage = NeuronBackward(dt(neuron.theta), dt(neuron.scale_rho), dt(width), k, alpha[0] if alpha else 0.0,
                           alpha[1] * ts if alpha else 0.0, len(srm_kernel), alpha is not None)
    _srm_backward_wgrad_events_cpu(events_of(x), g, ur, stage, parts, touched, through)
    acc = (accumulate_into is not None and accumulate_into.shape == w.shape and accumulate_into.dtype == w.dtype
           and accumulate_into.flags.c_contiguous and not is_device_array(accumulate_into))
    if accumulate_into is not None and not acc:
        raise ValueError(f"accumulate_into must be a C-contiguous CPU array of shape {w.shape} and dtype {w.dtype}")
    grad_w = accumulate_into if acc else np.empty_like(w)
    _sum_parts_T(parts, touched, grad_w, acc)
    return grad_w


def through_delay_applies(grad_dense, w2, x_delay, w, x) -> bool:
    """True where :func:`srm_dense_backward_through_delay` runs as one fused pass: CPU arrays, event
    inputs to the first layer and to the delay, at most
    the setting ``fused_dense_max_outputs`` outputs of ``w2``, one dtype."""
    from ..events import SpikeEvents
    return (not is_device_array(grad_dense) and not is_device_array(w) and isinstance(x_delay, SpikeEvents)
            and isinstance(x, SpikeEvents) and w2.shape[0] <= settings.current().fused_dense_max_outputs
            and w2.dtype == w.dtype == x_delay.dtype == grad_dense.dtype)


def srm_dense_backward_through_delay(grad_dense, w2, x_delay, d, ts: float, u, neuron, srm_kernel, w, x,
                                     u_time_major: bool = False, accumulate_into=None, workspace=None):
    r"""The backward of ``dense(w2, delay(spike(psp(dense(w, x))), d))`` from the gradient of the outer dense
    output, for a first layer ``w``: returns ``(grad_w, grad_d)``.

    Parameters
    ----------
    grad_dense : ndarray (N, O2, 1, 1, T), the gradient of the outer dense layer's output
    w2 : ndarray (O2, O), the outer dense weight; x_delay : the delay's input (the first layer's spikes,
        SpikeEvents or dense ``(N, O, 1, 1, T)``); d : the delays (ms), broadcastable to ``(O, 1, 1)``
    ts, u, neuron, srm_kernel, w, x, u_time_major, accumulate_into, workspace : as
        :func:`srm_dense_backward_weights`

    Equals :func:`pysrm.ops.delay.delay_backward_from_dense` followed by
    :func:`srm_dense_backward_weights`, which is what runs where the fused pass does not apply
    (:func:`through_delay_applies`).  Where it applies, each row of the delay's input gradient is made
    inside the first layer's per-sample pass (no ``(N, O, T)`` array; bitwise the two, tested).
    ``w2``'s own weight gradient is not computed here.  Errors as the two functions.
    """
    from ..ops.delay import _delay_grad, _shift_bins, delay_backward_from_dense
    if not through_delay_applies(grad_dense, w2, x_delay, w, x):
        gx, gd = delay_backward_from_dense(w2, grad_dense, x_delay, d, ts)
        gw = srm_dense_backward_weights(gx, u, neuron, srm_kernel, ts, w, x, u_time_major, accumulate_into,
                                        workspace)
        return gw, gd
    from ..ops.dense import _check
    shape = _check(w, x)
    N, T = x_delay.shape[0], x_delay.shape[4]
    shift, d_shape, ts = _shift_bins(d, x_delay.shape[1:-1], ts, w.dtype)
    M = shift.shape[0]
    O = w.shape[0]
    if M != O or w2.shape[1] != M or grad_dense.size != N * w2.shape[0] * T or shape[0] != N or shape[4] != T:
        raise ValueError(f"shapes do not chain: first layer w {w.shape}, delay input {x_delay.shape}, outer w2 "
                         f"{w2.shape}, outer gradient {grad_dense.shape}")
    if u_time_major and u.shape != (N, T, O):
        raise ValueError(f"time-major u has shape {u.shape}; expected {(N, T, O)}")
    gy = np.ascontiguousarray(grad_dense, dtype=w.dtype).reshape(N, w2.shape[0], T)
    gd_rows = np.empty((N, M), dtype=w.dtype)
    through = DelayThrough(True, gy, np.ascontiguousarray(w2), shift, x_delay.offsets, x_delay.neuron, x_delay.time,
                           x_delay.value, gd_rows)
    gw = _fused_wgrad(np.empty((1, 1, 1), w.dtype), _potential_time_major(u, N, O, T, u_time_major), neuron, srm_kernel, ts, w,
                      x, through, accumulate_into, workspace)
    return gw, _delay_grad(gd_rows, x_delay.shape, d_shape, ts)


# --------------------------------------------------------------------------- blocks

class DenseSRMBlock(Step):
    """Dense -> SRM on the CPU (module docstring: its policy).  Cache: ``x`` (the input, events where
    sparse), ``u`` (the potential; time-major ``(N, T, O)`` for a first layer's fused backward when
    ``u_time_major``)."""

    pattern = (Dense, SRM)
    takes = (ARRAY, EVENTS)
    events_max_density = Dense.events_max_density
    grad_gives = (ARRAY, DENSE_INPUT_GRAD)

    @classmethod
    def applies(cls, layers, options):
        return options.cpu_fusion

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.dense, self.srm = layers[0], layers[1]

    @property
    def emit_events(self) -> bool:
        """Whether the spikes are handed on as events (the planner's link)."""
        return self.output.kind == EVENTS

    def _fused_forward_wanted(self, x) -> bool:
        return (isinstance(x, SpikeEvents) and fused_forward_applies(self.dense.weight.data, x, self.srm.srm)
                and (self.dense.weight.data.shape[0] >= settings.current().fused_min_outputs or self.emit_events))

    def _dense_srm(self, x, train: bool):
        """The spikes of Dense -> SRM: events where handed on as events and the fused pass ran, else an array."""
        dense, srm = self.dense, self.srm
        dense.check_input(x)
        w = dense.weight.data
        x = events_if_sparse(x, "dense")
        emit = self.emit_events
        if self._fused_forward_wanted(x):
            time_major = train and self.first
            s, u, *ev = dense_srm_forward(w, x, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts,
                                            need_potential=train, need_events=emit,
                                            need_dense_spikes=False, time_major_potential=time_major,
                                            workspace=dense.workspace)
            out = ev[0] if emit and ev[0] is not None else s
            u_time_major = time_major and u is not None
        else:
            a = dense_op(w, x, workspace=dense.workspace)
            out, u = srm_forward(a, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts)
            u_time_major = False
        if train:
            self.cache.update(x=x, u=u, u_time_major=u_time_major)
        srm.record(out)
        return out

    def forward(self, x, train: bool = False):
        return self._dense_srm(x, train)

    def _backward_srm_dense(self, grad):
        """From the gradient of the spikes (an array) to the input gradient of the dense layer, handed on
        as ``grad_output`` asks."""
        dense, srm = self.dense, self.srm
        u, x = self.cached("u"), self.cache["x"]
        w = dense.weight
        if self.first:
            srm_dense_backward_weights(grad, u, srm.neuron, srm.srm, srm.sim.ts, w.data, x,
                                         self.cache["u_time_major"], accumulate_into=w.grad, workspace=dense.workspace)
            return None
        g_a = srm_backward(grad, u, srm.neuron, srm.srm, srm.sim.ts)
        defer = self.grad_output == DENSE_INPUT_GRAD
        gx, gw = dense_backward(w.data, x, g_a, need_input_grad=not defer, workspace=dense.workspace)
        w.accumulate_grad(gw)
        if defer:
            return DenseInputGrad(w.data, g_a, x.shape)
        return gx

    def backward(self, grad):
        return self._backward_srm_dense(materialize(grad))


class DenseSRMDelayBlock(DenseSRMBlock):
    """Dense -> SRM -> Delay on the CPU (module docstring: its policy).  Cache: as
    :class:`DenseSRMBlock`, and ``x_delay`` (the delay's input: events or an array)."""

    pattern = (Dense, SRM, Delay)
    gives = (ARRAY, EVENTS)
    grad_takes = (ARRAY, DENSE_INPUT_GRAD)

    @classmethod
    def applies(cls, layers, options):
        return options.cpu_fusion and layers[2].sim.ts == layers[1].sim.ts

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.delay = layers[2]

    def forward(self, x, train: bool = False):
        s = self._dense_srm(x, train)
        d, ts = self.delay.delay.data, self.delay.sim.ts
        if isinstance(s, SpikeEvents):
            y = delay_events(s, d, ts)
            if y.n_events > self.output.max_density * int(np.prod(y.shape)):  # denser than the next step takes
                s = s.to_dense()
                y = delay(s, d, ts)
        else:
            y = delay(s, d, ts)
        if train:
            self.cache["x_delay"] = s
        return y

    def backward(self, grad):
        x_delay = self.cached("x_delay")
        srm, delay, dense = self.srm, self.delay, self.dense
        d = delay.delay
        if isinstance(grad, DenseInputGrad):
            if self.first:
                w = dense.weight
                _, gd = srm_dense_backward_through_delay(
                    grad.g, grad.w, x_delay, d.data, delay.sim.ts, self.cache["u"], srm.neuron, srm.srm, w.data,
                    self.cache["x"], self.cache["u_time_major"], accumulate_into=w.grad, workspace=dense.workspace)
                d.accumulate_grad(gd)
                return None
            gs, gd = delay_backward_from_dense(grad.w, grad.g, x_delay, d.data, delay.sim.ts)
        else:
            gs, gd = delay_backward(grad, x_delay, d.data, delay.sim.ts)
        d.accumulate_grad(gd)
        return self._backward_srm_dense(gs)


#: the blocks of this family, in the order a planner registers them
BLOCKS = (DenseSRMBlock, DenseSRMDelayBlock)
