r"""Per-row and per-element building blocks of the ops, written once and compiled for both targets: the CPU
kernels (``numba.njit``, inlined) and the CUDA kernels (``numba.cuda.jit(device=True)``), as
:mod:`pysrm.ops._elementwise` does for the surrogate and the optimisers.  (``event_taps``,
``add_response_column``, ``alpha_step`` and ``alpha_output`` have only their CPU forms so far: no CUDA
kernel schedules them yet.)

The plain loop of each op (its ``"plain"`` strategy, the definition a reader starts from) stays written
out in the op's module; the fast CPU strategies, the fused blocks and the CUDA kernels (the single ops'
and the fused SRM kernels of ``srm_cuda``) call these functions, so the math lives in one place and the
CPU and CUDA twins cannot drift apart (same operations in the same order: bitwise equal where the op
promised bitwise results).  ``tests/test_primitives.py`` checks every primitive against the plain op
(CPU forms) and against the CPU form (CUDA forms, under the simulator).

Spike generation (:mod:`pysrm.ops.spike`)
    ``fires(v, theta)`` the threshold test with the tie rule folded into ``theta``
    (``theta`` = :func:`pysrm.ops.spike.firing_threshold`); ``add_response(u, t, nu)`` the refractory
    response added to the bins from a spike in bin ``t`` on (``add_response_column`` the same for a
    column of a time-major buffer); ``next_spike`` the scan
    of one neuron's row in place up to its next spike, ``spike_scan_row`` the whole row's scan; ``highest_bit``, ``refractory_from_mask`` and
    ``spike_step_masked`` the same scan one bin at a time with the spikes of the last ``len(nu) - 1``
    bins kept in a 64-bit mask (the fused CUDA kernel's schedule: it carries no array across tiles).
Post-synaptic potential (:mod:`pysrm.ops.psp`)
    ``causal_sum`` the direct causal sum of one output bin (oldest input first, zero inputs skipped:
    the order of the plain scatter); ``correlation_sum`` its adjoint for one bin (float64 sum of the
    products); ``alpha_step`` / ``alpha_output`` one step of the O(T) alpha recursion and its truncated
    output.
Axonal delay (:mod:`pysrm.ops.delay`)
    ``delay_split(q)`` a shift of ``q`` bins as ``(m, f)``, ``q = m + f``, ``0 <= f < 1``;
    ``interpolate(x0, x1, g, f)`` the two-tap interpolation ``g x0 + f x1`` of the delay (``x0 = x[t-m]``,
    ``x1 = x[t-m-1]``, ``g = 1 - f``) and of its adjoint (``x0 = g[t+m]``, ``x1 = g[t+m+1]``).
Sum pooling (:mod:`pysrm.ops.pool`)
    ``pool_window_sum`` the weighted sum over one output's window (``ky`` outer, ``kx`` inner: the order
    of the CPU op); ``pooled_grad`` the adjoint read, the window's gradient times the weight.
Event scatter / gather of the synapses (:mod:`pysrm.ops.conv`, :mod:`pysrm.ops.dense`)
    ``decode_neuron`` channel, row and column of a flat neuron index; ``output_index`` the output position
    an input position reaches under one kernel offset (or -1); ``unravel5`` the five indices of a flat
    ``(N, C, H, W, T)`` position (time fastest).

A primitive that calls another is compiled against that target's form of it (:func:`on_target`: the
function's globals rebound), so it is written once as well.  The CUDA forms are compiled in ``_primitives_cuda``
(imported only by the CUDA modules, for GPU arrays); nothing here imports numba.cuda.  No builtin ``min``/``max`` in the primitives: they do not compile for every Numba CUDA target.
"""
from __future__ import annotations

import types

import numpy as np
from numba import njit


def on_target(fn, **forms):
    """``fn`` with the primitives it calls rebound to one target's ``forms`` (name = compiled function), for
    ``numba.njit`` or ``numba.cuda.jit(device=True)``: the same code object, other globals."""
    g = dict(fn.__globals__)
    g.update(forms)
    out = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__doc__ = fn.__doc__
    out.__qualname__ = fn.__qualname__
    out.__module__ = fn.__module__
    return out


# --------------------------------------------------------------------------- spike generation

def fires(v, theta):
    """The threshold test of a bin: ``v >= theta``, ``theta`` the firing threshold (tie rule included)."""
    return v >= theta


def add_response(u, t, nu):
    """``u[t + q] += nu[q]`` for ``q < min(len(nu), len(u) - t)``, ascending: the refractory response of a
    spike in bin ``t`` added to the bins ``t, t+1, ...`` of a neuron's row ``u``."""
    n = nu.shape[0]
    if u.shape[0] - t < n:
        n = u.shape[0] - t
    for q in range(n):
        u[t + q] += nu[q]


def add_response_column(buf, t, j, nu):
    """:func:`add_response` for column ``j`` of a time-major potential ``buf`` ``(T, M)``:
    ``buf[t + q, j] += nu[q]`` (indexed in place: no view of the column is made per spike, which cost the
    fused first layer 20 % at N-TIDIGITS shapes)."""
    n = nu.shape[0]
    if buf.shape[0] - t < n:
        n = buf.shape[0] - t
    for q in range(n):
        buf[t + q, j] += nu[q]


def next_spike(u, t, nu, theta):
    """The scan of one neuron's row ``u`` in place from bin ``t`` to its next spike: the first bin ``t' >= t``
    where ``fires(u[t'], theta)``, whose refractory response is then added to ``u[t':]``; returns ``t'``, or
    ``len(u)`` when there is none.  Repeated from ``t' + 1`` it is the op's scan (every schedule that scans
    a row: :func:`spike_scan_row`, the fused conv block's row scan)."""
    T = u.shape[0]
    while t < T:
        if fires(u[t], theta):
            add_response(u, t, nu)
            return t
        t += 1
    return T


def spike_scan_row(u, s, nu, theta, amp):
    """The spike scan of one neuron's row in place (:func:`next_spike` repeated): in bin order, where
    ``fires(u[t], theta)`` the spike ``s[t] = amp`` is written and the refractory response added to
    ``u[t:]``.  ``s`` is written only at spikes (the caller zeroes it).  Returns the number of spikes."""
    T = u.shape[0]
    count = 0
    t = next_spike(u, 0, nu, theta)
    while t < T:
        s[t] = amp
        count += 1
        t = next_spike(u, t + 1, nu, theta)
    return count


def highest_bit(m):
    """The index of the highest set bit of an int64 ``m > 0``."""
    b = 0
    if (m >> 32) != 0:
        b += 32
        m >>= 32
    if (m >> 16) != 0:
        b += 16
        m >>= 16
    if (m >> 8) != 0:
        b += 8
        m >>= 8
    if (m >> 4) != 0:
        b += 4
        m >>= 4
    if (m >> 2) != 0:
        b += 2
        m >>= 2
    if (m >> 1) != 0:
        b += 1
    return b


def refractory_from_mask(v, mask, nu):
    """``v`` plus the refractory responses of the earlier spikes in ``mask`` (bit ``b``: a spike ``b + 1``
    bins back, so ``nu[b + 1]``), oldest spike first: the order in which :func:`spike_scan_row` adds them."""
    while mask != 0:
        b = highest_bit(mask)
        v += nu[b + 1]
        mask ^= 1 << b
    return v


def spike_step_masked(v, mask, nu, theta, lim):
    """One bin of :func:`spike_scan_row` from its potential before any refractory response, ``v``, and the
    spikes of the last ``len(nu) - 1`` bins, ``mask`` (``lim = 2**(len(nu) - 1) - 1``; at most 64 samples):
    returns ``(v + responses (+ nu[0] at a spike), spiked, the next bin's mask)``."""
    v = refractory_from_mask(v, mask, nu)
    spk = fires(v, theta)
    bit = 0
    if spk:
        v += nu[0]
        bit = 1
    return v, spk, ((mask << 1) | bit) & lim


# --------------------------------------------------------------------------- post-synaptic potential

def causal_sum(x, k, t, lo, acc):
    """``acc + sum_s x[s] k[t - s]`` over ``s = max(lo, t - len(k) + 1) .. t`` ascending (oldest input first),
    zero inputs skipped: one output bin of the direct psp in the order of the plain scatter."""
    s0 = t - k.shape[0] + 1
    if s0 < lo:
        s0 = lo
    for s in range(s0, t + 1):
        v = x[s]
        if v != 0.0:
            acc += v * k[t - s]
    return acc


def correlation_sum(g, k, t, n):
    """``sum_i g[t + i] k[i]`` over ``i < min(len(k), n - t)`` (``n``: the bins of ``g``), each product in
    the arrays' dtype, summed in float64: one bin of the psp's adjoint."""
    m = k.shape[0]
    if n - t < m:
        m = n - t
    acc = 0.0
    for i in range(m):
        acc += np.float64(g[t + i] * k[i])
    return acc


def alpha_step(A, F, x, a):
    """One step of the alpha recursion of :mod:`pysrm.ops.psp`: ``F = a (F + A)``, ``A = a A + x``; returns
    ``(A, F)``."""
    F = a * (F + A)
    A = a * A + x
    return A, F


def alpha_output(F, a_old, f_old, aL, L, gain):
    """The truncated alpha response from the recursion: ``gain (F[t] - a^L (F[t-L] + L A[t-L]))``."""
    return gain * (F - aL * (f_old + L * a_old))


# --------------------------------------------------------------------------- axonal delay

def delay_split(q):
    """A shift of ``q`` bins (finite; the CPU ops take ``q >= 0``) as ``(m, f)``: the integer ``m = floor(q)`` and ``f = q - m`` (in ``q``'s
    arithmetic, float64 for a float32 ``q``; callers round ``f`` to their dtype)."""
    m = int(q)  # truncation, then down for a negative non-integer q: floor on both targets (no np.floor on
    if m > q:   # the CUDA target; math.floor made the CPU's event delay 10 % slower)
        m -= 1
    return m, q - m


def interpolate(x0, x1, g, f):
    """The delay's two-tap interpolation ``g x0 + f x1`` (``g = 1 - f``)."""
    return g * x0 + f * x1


# --------------------------------------------------------------------------- sum pooling

def pool_window_sum(x, base, W, T, oy, ox, k, H, wp, acc):
    """``acc + sum wp x[base + (iy W + ix) T]`` over the window of output ``(oy, ox)`` of a ``k x k`` sum
    pool (``iy = k oy + ky < H``, ``ix = k ox + kx < W``; ``ky`` outer, ``kx`` inner), ``x`` flat with the
    sample-channel-bin offset ``base``."""
    for ky in range(k):
        iy = oy * k + ky
        if iy < H:
            for kx in range(k):
                ix = ox * k + kx
                if ix < W:
                    acc += wp * x[base + (iy * W + ix) * T]
    return acc


def pooled_grad(g, base, Wo, T, iy, ix, k, wp):
    """The pool's adjoint at input ``(iy, ix)``: ``wp g[base + ((iy // k) Wo + ix // k) T]`` (``g`` the
    pool output's gradient, flat, ``base`` its sample-channel-bin offset)."""
    return wp * g[base + ((iy // k) * Wo + ix // k) * T]


# --------------------------------------------------------------------------- event scatter / gather

def decode_neuron(idx, H, W):
    """Channel, row and column of the flat input index ``idx = c H W + y W + x``."""
    rem = idx % (H * W)
    return idx // (H * W), rem // W, rem % W


def output_index(i, pad, k, stride, n_out):
    """The output position ``o`` with ``stride o + k - pad == i``, or -1 when there is none."""
    n = i + pad - k
    if n < 0 or n % stride != 0 or n // stride >= n_out:
        return -1
    return n // stride


def event_taps(iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, taps):
    """The kernel taps through which an input event at row ``iy``, column ``ix`` reaches the output of a
    ``KH x KW`` conv (padding ``py, px``, stride ``sy, sx``, output ``Ho x Wo``): ``taps[j] = (ky, kx, oy,
    ox)`` with ``sy oy + ky - py == iy`` and ``sx ox + kx - px == ix``, in ``ky``-then-``kx`` order (the
    order every event-driven conv loop adds in); ``taps``: int64 ``(>= KH KW, 4)``.  Returns how many.
    The event scatter of the conv forward, its event weight gradient and the conv block's tile schedules
    loop over these taps."""
    n = 0
    for ky in range(KH):
        oy = output_index(iy, py, ky, sy, Ho)
        if oy < 0:
            continue
        for kx in range(KW):
            ox = output_index(ix, px, kx, sx, Wo)
            if ox < 0:
                continue
            taps[n, 0] = ky
            taps[n, 1] = kx
            taps[n, 2] = oy
            taps[n, 3] = ox
            n += 1
    return n


def unravel5(idx, C, H, W, T):
    """``(n, c, y, x, t)`` of the flat index of an ``(N, C, H, W, T)`` array (time fastest)."""
    t = idx % T
    q = idx // T
    x = q % W
    q = q // W
    y = q % H
    q = q // H
    return q // C, q % C, y, x, t


# --------------------------------------------------------------------------- CPU forms

def _cpu(fn, **forms):
    return njit(inline="always", cache=True)(on_target(fn, **forms) if forms else fn)


fires_cpu = _cpu(fires)
add_response_cpu = _cpu(add_response)
add_response_column_cpu = _cpu(add_response_column)
next_spike_cpu = _cpu(next_spike, fires=fires_cpu, add_response=add_response_cpu)
spike_scan_row_cpu = _cpu(spike_scan_row, next_spike=next_spike_cpu)
highest_bit_cpu = _cpu(highest_bit)
refractory_from_mask_cpu = _cpu(refractory_from_mask, highest_bit=highest_bit_cpu)
spike_step_masked_cpu = _cpu(spike_step_masked, fires=fires_cpu, refractory_from_mask=refractory_from_mask_cpu)
causal_sum_cpu = _cpu(causal_sum)
correlation_sum_cpu = _cpu(correlation_sum)
alpha_step_cpu = _cpu(alpha_step)
alpha_output_cpu = _cpu(alpha_output)
delay_split_cpu = _cpu(delay_split)
interpolate_cpu = _cpu(interpolate)
pool_window_sum_cpu = _cpu(pool_window_sum)
pooled_grad_cpu = _cpu(pooled_grad)
decode_neuron_cpu = _cpu(decode_neuron)
output_index_cpu = _cpu(output_index)
unravel5_cpu = _cpu(unravel5)
event_taps_cpu = _cpu(event_taps, output_index=output_index_cpu)
