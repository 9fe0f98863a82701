r"""Fused conv blocks on the CPU: conv -> SRM [-> delay] [-> pool -> SRM], one sample at a time.

The ops of such a chain (:mod:`pysrm.ops.conv`, :mod:`pysrm.ops.psp`, :mod:`pysrm.ops.spike`,
:mod:`pysrm.ops.delay`, :mod:`pysrm.ops.pool`) run on whole-batch ``(N, C, H, W, T)`` arrays: every
intermediate of the batch is written to memory and read back, and a training step keeps the
potentials of every layer (the paper's N-MNIST CNN at batch 32: 8 GB).  Here the chain runs per
sample, **time-major** (a row is one time bin of every neuron of the sample, channels last:
``b = (y W + x) C + c``), so that the per-neuron recursions run across neurons in vector registers and
nothing of size batch x T x neurons is kept:

forward, per sample (input events ``(c_i, y, x, t, v)`` of the conv layer):
  1. :math:`a[t] \mathrel{+}= v\, w[:, c_i, k_y, k_x]` at every output position the event reaches
     (the event-driven conv of :mod:`pysrm.ops.conv`, same order of additions);
  2. :math:`u = \mathrm{psp}(a)` (the alpha recursion, or the direct sum, of :mod:`pysrm.ops.psp`);
  3. the spike scan with the refractory response (:mod:`pysrm.ops.spike`): a byte per neuron and bin;
  4. optionally the axonal delay :math:`y[t] = (1-f) s[t-m] + f s[t-m-1]` (:mod:`pysrm.ops.delay`)
     fused into
  5. optionally sum pooling :math:`p = w_p \sum_{k\times k} y` (:mod:`pysrm.ops.pool`) and
  6. the pooling layer's SRM neurons (2 and 3 again).

The block's output spikes leave as :class:`~pysrm.events.SpikeEvents` (the next conv block or dense
layer reads events).  Per element every operation is the separate op's, in the same order, so the
spikes are **bitwise** those of the unfused plan with event-driven convs (tested).

backward, per sample, from the gradient of the block's output spikes: the forward of the sample is
**recomputed** (its input events and the parameters determine it; nothing of the forward but the
output events is kept), then, time-major: the surrogate and the correlation with the spike response of
the pooling layer's SRM (:func:`pysrm.ops.srm.srm_backward`), the pooling adjoint, the delay adjoint
and the delay-gradient terms (summed by parts over the spikes, as
:func:`pysrm.ops.delay.delay_backward` does for event inputs), the conv layer's SRM backward, and the
conv weight gradient from the input events (the terms of the event-driven weight gradient of
:mod:`pysrm.ops.conv`, over the same fixed shares of the batch, each input neuron's events summed first
and then added, tap by tap).  The input
gradient of a hidden conv layer is the transposed conv of the gradient of its output, one BLAS product
per kernel offset on the batch (:func:`pysrm.ops.conv.conv_input_grad`).  Input gradients are bitwise
the unfused plan's; weight gradients equal it to float rounding (grouped by input neuron), and so do the
delay gradients (summed by parts instead of over all bins).

Memory: per task a few ``(T, neurons)`` work arrays of one sample (the N-MNIST CNN's first block:
about 60 MB), plus the output events; nothing grows with the batch but the events and, for a hidden
conv layer, the gradient of its output during the backward.

Blocks and their policy (the plan's steps, :mod:`pysrm.plan`; CPU plans with ``fuse=True`` and
``strategy="auto"``, all SRM and delay layers on one time step): :class:`ConvSRMDelayPoolSRMBlock`,
:class:`ConvSRMPoolSRMBlock`, :class:`ConvSRMDelayBlock`, :class:`ConvSRMBlock`.  A block has two
schedules, chosen per forward by :meth:`ConvBlock.schedule` from shapes, dtype, batch size and the
plan's memory budget only (never threads or timing, so results stay independent of
``NUMBA_NUM_THREADS``):

* ``"fused"`` -- :func:`conv_block_forward` / :func:`conv_block_backward` above, the conv event driven
  up to the setting ``conv_event_density_threshold`` of its input active, else as BLAS products
  (stride 1; :func:`uses_blas`); its weight gradient event driven up to the setting
  ``conv_wgrad_event_density_threshold`` (0.2, the measured crossover), else as BLAS products;
* ``"layers"`` -- the layers one by one, as the unfused plan (faster where the fused block would
  parallelise badly or where the unfused layers' memory is affordable):

  - a batch below the setting ``fused_conv_min_batch`` (the fused block parallelises over the samples;
    measured DVS Gesture batch 1: 2.9 fused vs 4.0 separate samples/s training);
  - a dense-ish input (above the conv event threshold) where the conv is strided (its direct loops),
    or whose batch's conv output takes at most the setting ``blas_block_min_bytes``, or where the unfused conv
    layers of the whole network fit in the plan's memory budget:
    ``unfused_values_per_output x N x T x (conv outputs per sample and bin of all conv layers) x
    itemsize <= PlanOptions.memory_budget`` (the setting ``unfused_values_per_output``; e.g. the DVS Gesture
    CNN at its batch 16 runs unfused in 1.8 GB, at batch 32 fused in 1.2 GB).

Fused, the spikes leave as events where the next step takes events (a delayed output as an array where
it is denser than the next step takes), else as an array.  Spikes and input gradients are bitwise those
of the unfused plan; weight gradients to float rounding (event driven: each input neuron's events summed
first; BLAS: summed over fixed parts of the batch); delay gradients to float rounding (summed by parts
over the spikes).

Tests: ``tests/test_blocks_conv.py`` (every block and schedule against the unfused plan, the delay
gradient against finite differences, kept against recomputed potentials, the memory-budget rule).
CPU only; on the GPU the CUDA blocks (:mod:`pysrm.blocks.cuda`) or the separate ops run.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange

from ..ops._fastexp import rho_row
from ..ops._blas_call import NO_TRANS, TRANS, gemm
from ..ops.conv import _decode
from ..ops._primitives import delay_split_cpu, event_taps_cpu, interpolate_cpu, output_index_cpu
from ..ops._records import NeuronBackward, NeuronForward, events_of
from ..ops.delay import _shift_back_time_major
from ..ops.spike import flag_words, scan_bin_time_major
from ..ops.srm import correlation_time_major, psp_time_major
from .. import functional as F
from .. import settings
from ..events import SpikeEvents
from ..layers import SRM, Conv, Delay, Pool
from ..plan import ARRAY, EVENTS, LayerStep, Step, materialize


# --------------------------------------------------------------------------- the kernels' records
# The kernels take these named tuples instead of long positional lists (Numba compiles a named tuple of
# scalars and arrays as a struct; a field is read as ``geo.Ho``).  They are built by _kernel_args below;
# EventArrays, NeuronForward and NeuronBackward are shared with pysrm.ops.srm (pysrm.ops._records).

#: the conv's geometry: input (H, W), stride, padding, output (Ho, Wo) and the bins T
ConvGeometry = namedtuple("ConvGeometry", "H W sy sx py px Ho Wo T")
#: the delay (per channels-last column: integer shift dm, fraction df, 1 - fraction dg) and the pooling
#: (kernel pk, weight wp, pooled size H2 x W2) after the conv layer's neurons, and the spike amplitude 1/Ts
DelayPool = namedtuple("DelayPool", "has_delay dm df dg has_pool pk wp H2 W2 amp")
#: the tiling (n1 tiles of tw1 columns; canon1/canon2: canonical neuron of each channels-last column of the
#: conv and the pooled layer) and the conv's products (dense_conv: BLAS products with the kernel wk, `cols`
#: output columns per product; else event driven)
Tiling = namedtuple("Tiling", "n1 tw1 canon1 canon2 dense_conv wk cols blas_wgrad")
#: the work arrays of one tile's forward (see _tile_forward)
TileWork = namedtuple("TileWork",
                      "buf1 buf2 row1 row2 hist1 hist2 flag found times1 count1 times2 count2 xp S wide trans taps")
#: the shape of the stride-1 conv's BLAS products on a padded sample (_conv_gemm_row): the padded sample's
#: channel stride S and width Wp, the input channels K_in, the kernel width KW, the output channels K_out
#: and width Wo, the bins T and the output columns per product
GemmShape = namedtuple("GemmShape", "S Wp K_in KW K_out Wo T cols")
#: the potentials a training forward kept (stored: whether there are any)
SavedPotentials = namedtuple("SavedPotentials", "stored store1 store2")
#: the backward's input (g_out, the gradient of the block's output) and outputs (see _block_backward_cpu)
BackwardArrays = namedtuple("BackwardArrays",
                            "g_out parts gwk_parts gd_rows need_ga ga_out gx_blas wkf pgy pgx gx_out")


# --------------------------------------------------------------------------- per-tile stages (time-major)

def tile_rows(has_pool: bool, pk: int, Wo: int, Co: int) -> int:
    """Output rows of the conv layer per tile: with pooling the input rows of one pooled row, else about
    the setting ``conv_block_tile`` columns (:mod:`pysrm.settings`; whole output rows, at least one: a
    (T, tile) block of a sample stays in L2)."""
    return pk if has_pool else max(1, settings.current().conv_block_tile // (Wo * Co))


def tile_width(has_pool: bool, pk: int, Ho: int, Wo: int, Co: int) -> int:
    """Columns per tile of the conv layer's neurons (see the module docstring's layout)."""
    return min(Ho, tile_rows(has_pool, pk, Wo, Co)) * Wo * Co


@njit(cache=True)
def _row_starts(e0, e1, neuron, W, starts):
    # starts[q] .. starts[q+1]: the events of input row q = ci H + iy (events sorted by neuron
    # ci H W + iy W + ix: each row's events are consecutive), offsets into the event arrays
    starts[:] = 0
    for k in range(e0, e1):
        starts[neuron[k] // W + 1] += 1
    starts[0] = e0
    for q in range(starts.shape[0] - 1):
        starts[q + 1] += starts[q]


@njit(cache=True)
def _scatter_tile(buf, c0, starts, ev, wT, geo, iy_lo, iy_hi):
    # buf (T, tw), the tile's columns c0 <= b < c0 + tw (b = (oy Wo + ox) Co + co), zeroed, then
    # buf[t, b - c0] += v * wT[ci, ky, kx, co] for the sample's events of the input rows iy_lo..iy_hi (those
    # that can reach the tile; starts: _row_starts), in their stored order, at the output positions in the
    # tile (pysrm.ops.conv._conv_events_cpu's loops; per output element the same events in the same order)
    T, tw = buf.shape
    Ci, KH, KW, Co = wT.shape[0], wT.shape[1], wT.shape[2], wT.shape[3]
    H, W, sy, sx, py, px, Ho, Wo = geo.H, geo.W, geo.sy, geo.sx, geo.py, geo.px, geo.Ho, geo.Wo
    neuron, time, value = ev.neuron, ev.time, ev.value
    buf[:, :] = 0.0
    lo = max(iy_lo, 0)
    hi = min(iy_hi, H - 1)
    for k in _band(starts, Ci, H, lo, hi):
        ci, iy, ix = _decode(neuron[k], H, W)
        row = buf[time[k]]
        v = value[k]
        # the taps written out (pysrm.ops._primitives.event_taps' loops, the same order): the forward scatter
        # over event_taps' list was 5-10 % slower (N-MNIST CNN conv2 block 67-68 vs 61-64 ms per inference
        # forward at batch 8); the weight gradients use event_taps
        for ky in range(KH):
            oy = output_index_cpu(iy, py, ky, sy, Ho)
            if oy < 0:
                continue
            for kx in range(KW):
                ox = output_index_cpu(ix, px, kx, sx, Wo)
                if ox < 0:
                    continue
                off = (oy * Wo + ox) * Co - c0
                if off < 0 or off >= tw:
                    continue
                wk = wT[ci, ky, kx]
                for co in range(Co):
                    row[off + co] += v * wk[co]


@njit(cache=True)
def _band(starts, Ci, H, lo, hi):
    # the event indices of input rows lo..hi of every input channel, channel by channel (their stored order)
    n = 0
    for ci in range(Ci):
        if hi >= lo:
            n += starts[ci * H + hi + 1] - starts[ci * H + lo]
    out = np.empty(n, dtype=np.int64)
    q = 0
    for ci in range(Ci):
        if hi >= lo:
            for k in range(starts[ci * H + lo], starts[ci * H + hi + 1]):
                out[q] = k
                q += 1
    return out


@njit(cache=True)
def _pad_events(xp, S, n, ev, geo):
    # sample n's input, zero-padded by (py, px) and flattened per channel as (Hp, Wp, T) at ci S (the
    # layout of pysrm.ops.conv._pad_flat_cpu), from its events (one per bin)
    H, W, py, px, T = geo.H, geo.W, geo.py, geo.px, geo.T
    neuron, time, value = ev.neuron, ev.time, ev.value
    Wp = W + 2 * px
    xp[:] = 0.0
    for k in range(ev.offsets[n], ev.offsets[n + 1]):
        ci, iy, ix = _decode(neuron[k], H, W)
        xp[ci * S + ((iy + py) * Wp + ix + px) * T + time[k]] = value[k]


@njit(cache=True)
def _conv_gemm_row(xp, wk, gs, oy, wide, tile, c0, dst, to_tile):
    # output row oy of a stride-1 conv of the padded sample xp as BLAS products, exactly the products of
    # pysrm.ops.conv._conv_gemm_cpu's tasks (n, oy, ox0) for this sample (so bitwise its result): per chunk
    # of `cols` output columns, one product per kernel offset accumulated into wide (Co, cols T); written to
    # the tile (time-major, tile[t, (oy Wo + ox) Co + co - c0]) with to_tile, else to dst (Co, Ho, Wo, T);
    # gs: GemmShape (Ci = gs.K_in input channels, Co = gs.K_out output channels)
    S, Wp, Ci, KW, Co, Wo, T, cols = gs.S, gs.Wp, gs.K_in, gs.KW, gs.K_out, gs.Wo, gs.T, gs.cols
    K = wk.shape[0]
    for ox0 in range(0, Wo, cols):
        nc = min(Wo, ox0 + cols) - ox0
        M = nc * T
        for k in range(K):
            off = ((k // KW + oy) * Wp + k % KW + ox0) * T
            gemm(NO_TRANS, NO_TRANS, M, Co, Ci, xp[off:], S, wk[k], Ci, wide, M, 0.0 if k == 0 else 1.0)
        if to_tile:
            for q in range(nc):
                base = ((oy * Wo + ox0 + q) * Co) - c0
                for t in range(T):
                    trow = tile[t]
                    for c in range(Co):
                        trow[base + c] = wide[c * M + q * T + t]
        else:
            for c in range(Co):
                for q in range(nc):
                    dst[c, oy, ox0 + q] = wide[c * M + q * T:c * M + (q + 1) * T]


@njit(cache=True)
def _spike_scan_tm(buf, nu, theta, flag, found, col_times, col_count):
    # the spike scan of pysrm.ops.spike over buf (T, M) in place, bin by bin (pysrm.ops.spike.
    # scan_bin_time_major: bitwise the op's result); the spike times of column j are listed in
    # col_times[j, :col_count[j]] (ascending).  found: a work array of at least M.  Returns the number of
    # spikes.
    T, M = buf.shape
    words = flag_words(flag, M)
    col_count[:M] = 0
    count = 0
    for t in range(T):
        k = scan_bin_time_major(buf, t, nu, theta, flag, words, found)
        for i in range(k):
            j = found[i]
            col_times[j, col_count[j]] = t
            col_count[j] += 1
        count += k
    return count


#: refractory responses longer than this take the row-by-row scan (_spike_scan_rows): their additions after
#: a spike are contiguous there, where the time-major scan touches one cache line per bin.  A compile-time
#: constant of the block's kernels (not a setting of :mod:`pysrm.settings`: the choice is made inside them)
ROW_SCAN_MIN_LENGTH = 16


@njit(cache=True)
def _spike_scan_rows(buf, nu, theta, trans, times, count):
    # _spike_scan_tm on a transposed copy (trans (M, T): one row per neuron, pysrm.ops.spike._spike_cpu's
    # loop), for long refractory responses; the same operations per neuron: bitwise its result
    T, M = buf.shape
    L = nu.shape[0]
    for j0 in range(0, M, 16):
        j1 = min(M, j0 + 16)
        for t in range(T):
            for j in range(j0, j1):
                trans[j, t] = buf[t, j]
    count[:M] = 0
    total = 0
    for j in range(M):
        r = trans[j]
        # the row's scan written out (pysrm.ops._primitives.next_spike's loop, the same operations in the same
        # order: bitwise its result, tested): next_spike repeated here made the DVS Gesture conv block 15 %
        # slower (118-119 vs 131-158 ms per forward at batch 8), so this schedule keeps its own loop
        for t in range(T):
            if r[t] >= theta:
                times[j, count[j]] = t
                count[j] += 1
                for q in range(min(L, T - t)):
                    r[t + q] += nu[q]
        total += count[j]
    for j0 in range(0, M, 16):
        j1 = min(M, j0 + 16)
        for t in range(T):
            for j in range(j0, j1):
                buf[t, j] = trans[j, t]
    return total


@njit(cache=True)
def _scan(buf, nu, theta, flag, found, trans, times, count):
    # the spike scan of a tile: time-major for short refractory responses, row by row for long ones
    if nu.shape[0] > ROW_SCAN_MIN_LENGTH:
        return _spike_scan_rows(buf, nu, theta, trans, times, count)
    return _spike_scan_tm(buf, nu, theta, flag, found, times, count)


@njit(cache=True)
def _delay_pool_tile(col_times, col_count, dp, c0, rows, Wo, C, out):
    # one pooled row, event driven: out (T, W2 C), zeroed by the caller, += wp * y over the tile's input
    # columns b = (ly Wo + ix) C + c in ascending order (per output element the inputs in row-major order:
    # pysrm.ops.pool's order), y the delayed spikes of column b at the bins they reach:
    # y[t] = g x[t-m] + f x[t-m-1] (x = amp at the column's spike times, else 0; pysrm.ops.delay._delay_cpu's
    # expression, evaluated where it is not 0); dp: DelayPool (its coefficients of column b at c0 + b)
    T = out.shape[0]
    amp, pk, wp, has_delay = dp.amp, dp.pk, dp.wp, dp.has_delay
    zero = amp - amp
    for ly in range(rows):
        for ix in range(Wo):
            ib = (ly * Wo + ix) * C
            ob = (ix // pk) * C
            for c in range(C):
                b = ib + c
                n_sp = col_count[b]
                times = col_times[b]
                if not has_delay:
                    for q in range(n_sp):
                        out[times[q], ob + c] += wp * amp
                    continue
                m = dp.dm[c0 + b]
                g = dp.dg[c0 + b]
                f = dp.df[c0 + b]
                for q in range(n_sp):
                    tau = times[q]
                    t0 = tau + m
                    if t0 >= T:
                        break
                    prev = amp if (q > 0 and times[q - 1] == tau - 1) else zero
                    out[t0, ob + c] += wp * interpolate_cpu(amp, prev, g, f)
                    if t0 + 1 < T and not (q + 1 < n_sp and times[q + 1] == tau + 1):
                        out[t0 + 1, ob + c] += wp * interpolate_cpu(zero, amp, g, f)


@njit(cache=True)
def _gather_tile(g, canon, c0, out):
    # out[t, j] = g[canon[c0 + j], t] for the tile's real columns (g (M, T) neuron-major), in blocks of 16
    # columns (16 read streams)
    T, tw = out.shape
    w = min(tw, canon.shape[0] - c0)
    for j0 in range(0, w, 16):
        j1 = min(w, j0 + 16)
        for t in range(T):
            orow = out[t]
            for j in range(j0, j1):
                orow[j] = g[canon[c0 + j], t]


@njit(cache=True)
def _rho_tm(g, u, theta, scale, width, out, scratch):
    # out[t] = g[t] * rho(u[t]) row by row (pysrm.ops._fastexp.rho_row, the surrogate of pysrm.ops.spike);
    # out a separate array (aliased with u the loops do not vectorise: 5x slower)
    a = scale / width
    inv_width = g.dtype.type(1.0) / width
    for t in range(g.shape[0]):
        rho_row(g[t], u[t], theta, a, inv_width, out[t], scratch)


@njit(cache=True)
def _tile_geometry(r, has_pool, pk, Ho, Wo, Co, tw1, KH, sy, py):
    # tile r: its first column c0, its number of input rows of the pooled row (rows), and the input rows
    # iy_lo..iy_hi that reach its output rows
    c0 = r * tw1
    rpt = tw1 // (Wo * Co)
    oy0 = r * rpt
    oy1 = min(Ho, oy0 + rpt) - 1
    rows = oy1 - oy0 + 1
    return c0, rows, oy0 * sy - py, oy1 * sy - py + KH - 1


@njit(cache=True)
def _tile_forward(r, starts, ev, wT, geo, s1, s2, dp, til, work):
    # steps 1-6 of the module docstring for tile r of a sample (its events by input row: starts): work.buf1
    # (T, tw1) ends as the conv layer's potential after the refractory responses, work.buf2 (T, W2 Co) the
    # pooled layer's; the spike times per column in times1/count1 and times2/count2; returns the two spike
    # counts.  Records: ev EventArrays, geo ConvGeometry, s1/s2 NeuronForward of the conv and the pooled
    # layer, dp DelayPool, til Tiling, work TileWork
    Co = wT.shape[3]
    Wo = geo.Wo
    buf1, buf2 = work.buf1, work.buf2
    tw1 = buf1.shape[1]
    c0, rows, iy_lo, iy_hi = _tile_geometry(r, dp.has_pool, dp.pk, geo.Ho, Wo, Co, tw1, wT.shape[1], geo.sy, geo.py)
    if til.dense_conv:  # the BLAS products of pysrm.ops.conv's stride-1 path, row by row, on the padded sample xp
        T = buf1.shape[0]
        rpt = tw1 // (Wo * Co)
        gs = GemmShape(work.S, geo.W + 2 * geo.px, wT.shape[0], wT.shape[2], Co, Wo, T, til.cols)
        for oy in range(r * rpt, min(geo.Ho, (r + 1) * rpt)):
            _conv_gemm_row(work.xp, til.wk, gs, oy, work.wide, buf1, c0, buf1.reshape((1, 1, 1, buf1.size)), True)
        if rows * Wo * Co < tw1:
            buf1[:, rows * Wo * Co:] = 0.0
    else:
        _scatter_tile(buf1, c0, starts, ev, wT, geo, iy_lo, iy_hi)
    psp_time_major(buf1, work.row1, work.hist1, s1)
    c1 = _scan(buf1, s1.nu, s1.theta, work.flag, work.found, work.trans, work.times1, work.count1)
    c2 = 0
    if dp.has_pool:
        buf2[:, :] = 0.0
        _delay_pool_tile(work.times1, work.count1, dp, c0, rows, Wo, Co, buf2)
        psp_time_major(buf2, work.row2, work.hist2, s2)
        c2 = _scan(buf2, s2.nu, s2.theta, work.flag, work.found, work.trans, work.times2, work.count2)
    return c1, c2


@njit(cache=True)
def _append_spikes(times, count, width, canon, c0, nb, tb, n):
    # append (canon[c0 + j], t) for the listed spikes of the tile's columns j < width; grows nb/tb
    for j in range(width):
        cj = count[j]
        if cj == 0:
            continue
        if n + cj > nb.shape[0]:
            cap = max(2 * nb.shape[0], n + cj)
            nb2 = np.empty(cap, dtype=np.int32)
            tb2 = np.empty(cap, dtype=np.int32)
            nb2[:n] = nb[:n]
            tb2[:n] = tb[:n]
            nb, tb = nb2, tb2
        c = canon[c0 + j]
        for q in range(cj):
            nb[n] = c
            tb[n] = times[j, q]
            n += 1
    return nb, tb, n


@njit(cache=True)
def _sorted_by_neuron(nb, tb, n, n_neurons):
    # the n listed (neuron, time) pairs sorted by neuron (stable counting sort: per neuron the listed order)
    start = np.zeros(n_neurons + 1, dtype=np.int64)
    for q in range(n):
        start[nb[q] + 1] += 1
    for j in range(n_neurons):
        start[j + 1] += start[j]
    on = np.empty(n, dtype=np.int32)
    ot = np.empty(n, dtype=np.int32)
    for q in range(n):
        j = nb[q]
        p = start[j]
        start[j] += 1
        on[p] = j
        ot[p] = tb[q]
    return on, ot


@njit(nogil=True, cache=True)
def _sample_forward(n, ev, wT, geo, s1, s2, dp, til, saved):
    # the forward of sample n, tile by tile (every tile's work stays in cache): its spikes of SRM1 and SRM2
    # as (neuron, time) pairs sorted by (canonical neuron, time); with til.dense_conv the conv as BLAS
    # products on the zero-padded sample (pysrm.ops.conv's stride-1 path), else event driven; with
    # saved.stored the potentials after the refractory responses into saved.store1[n, r] and
    # saved.store2[n, r] (tile-major).  Records: see _tile_forward
    H, W, py, px, Ho, Wo, T = geo.H, geo.W, geo.py, geo.px, geo.Ho, geo.Wo, geo.T
    has_pool, tw1 = dp.has_pool, til.tw1
    Co = wT.shape[3]
    tw2 = dp.W2 * Co
    buf1 = np.empty((T, tw1), dtype=wT.dtype)
    buf2 = np.empty((T, tw2) if has_pool else (1, 1), dtype=wT.dtype)
    row1 = np.empty(tw1, dtype=wT.dtype)
    row2 = np.empty(tw2, dtype=wT.dtype)
    hist1 = np.empty((2, s1.L, tw1))
    hist2 = np.empty((2, s2.L, tw2))
    flag = np.zeros(8 * ((max(tw1, tw2) + 7) // 8), dtype=np.uint8)
    times1 = np.empty((tw1, T), dtype=np.int32)
    count1 = np.empty(tw1, dtype=np.int64)
    times2 = np.empty((tw2, T), dtype=np.int32)
    count2 = np.empty(tw2, dtype=np.int64)
    nb1 = np.empty(4096, dtype=np.int32)
    tb1 = np.empty(4096, dtype=np.int32)
    nb2 = np.empty(4096, dtype=np.int32)
    tb2 = np.empty(4096, dtype=np.int32)
    n_s1 = 0
    n_s2 = 0
    M1 = Ho * Wo * Co
    starts = np.empty(wT.shape[0] * H + 1, dtype=np.int64)
    _row_starts(ev.offsets[n], ev.offsets[n + 1], ev.neuron, W, starts)
    Ci, KW = wT.shape[0], wT.shape[2]
    S = (H + 2 * py) * (W + 2 * px) * T
    xp = np.empty(Ci * S + (KW - 1) * T if til.dense_conv else 1, dtype=wT.dtype)
    wide = np.empty(Co * til.cols * T if til.dense_conv else 1, dtype=wT.dtype)
    if til.dense_conv:
        _pad_events(xp, S, n, ev, geo)
    trans = np.empty((max(tw1, tw2), T) if max(s1.nu.shape[0], s2.nu.shape[0]) > ROW_SCAN_MIN_LENGTH else (1, 1),
                     dtype=wT.dtype)
    found = np.empty(max(tw1, tw2), dtype=np.int64)  # the spiking columns of a bin (the scan's work array)
    taps = np.empty((1, 4), dtype=np.int64)  # (the backward's tile weight gradient lists an event's taps here)
    work = TileWork(buf1, buf2, row1, row2, hist1, hist2, flag, found, times1, count1, times2, count2, xp, S, wide,
                    trans, taps)
    for r in range(til.n1):
        _tile_forward(r, starts, ev, wT, geo, s1, s2, dp, til, work)
        if saved.stored:
            saved.store1[n, r] = buf1
            if has_pool:
                saved.store2[n, r] = buf2
        c0 = r * tw1
        nb1, tb1, n_s1 = _append_spikes(times1, count1, min(tw1, M1 - c0), til.canon1, c0, nb1, tb1, n_s1)
        if has_pool:
            nb2, tb2, n_s2 = _append_spikes(times2, count2, tw2, til.canon2, r * tw2, nb2, tb2, n_s2)
    on1, ot1 = _sorted_by_neuron(nb1, tb1, n_s1, M1)
    on2, ot2 = _sorted_by_neuron(nb2, tb2, n_s2, dp.H2 * dp.W2 * Co if has_pool else 1)
    return on1, ot1, on2, ot2


@njit(cache=True)
def _spikes_of(u, theta, times, count):
    # the spike times per column of a potential after the refractory responses: a bin spiked exactly where
    # u >= theta (the refractory response is 0 at lag 0, so a spike leaves its own bin unchanged, and
    # later responses reach later bins only)
    T, M = u.shape
    count[:M] = 0
    for t in range(T):
        row = u[t]
        for j in range(M):
            if row[j] >= theta:
                times[j, count[j]] = t
                count[j] += 1


@njit(cache=True)
def _pool_back_tile(src, gy, rows, Wo, Co, pk, wp):
    # the pooling adjoint for one pooled row: gy[t, (ly, x), c] = wp * src[t, x // pk, c] over the tile's
    # input rows (pysrm.ops.pool._pool_backward_cpu's product), a channel vector at a time (row slices: the
    # loop over c vectorises; indexed element by element it ran at 0.9 ns per value, now 0.15)
    T = gy.shape[0]
    for t in range(T):
        srow = src[t]
        drow = gy[t]
        for ix in range(Wo):
            s = srow[(ix // pk) * Co:(ix // pk + 1) * Co]
            for ly in range(rows):
                d = drow[(ly * Wo + ix) * Co:(ly * Wo + ix + 1) * Co]
                for c in range(Co):
                    d[c] = wp * s[c]


@njit(cache=True)
def _delay_grad_tile(gy, times, count, dm, amp, zero, gd):
    # the delay-gradient terms sum_(spikes tau) amp (gy[tau+m+1] - gy[tau+m]) of the tile's columns (float64
    # sums, times ascending: pysrm.ops.delay._delay_grad_by_events) into gd (stored in its dtype); gy (T, tw)
    T = gy.shape[0]
    for b in range(gd.shape[0]):
        acc = 0.0
        m = dm[b]
        for q in range(count[b]):
            i0 = m + times[b, q]
            g1 = gy[i0 + 1, b] if i0 + 1 < T else zero
            g0 = gy[i0, b] if i0 < T else zero
            acc += amp * (g1 - g0)
        gd[b] = acc


@njit(parallel=True, cache=True)
def _block_backward_cpu(ev, wT, geo, s1, s2, dp, til, b1, b2, saved, io):
    # per part (fixed shares of the batch, as pysrm.ops.conv's event weight gradient), per sample and per
    # tile: recompute the tile's forward, then its backward (module docstring).  The weight gradient:
    # event driven into parts[p] (Ci, KH, KW, Co) -- per weight element the samples ascending and the
    # events in their stored order, as the event weight gradient of pysrm.ops.conv (an output row belongs
    # to one tile and the tiles ascend with the input row) --, or with dense_conv as BLAS products per
    # kernel offset into gwk_parts[p] (KH KW, Co Ci; pysrm.ops.conv's stride-1 products, the samples of
    # the part accumulated).  The delay-gradient terms into gd_rows[n, b] (channels last).  The input
    # gradient: with gx_blas per sample as pysrm.ops.conv.conv_input_grad's BLAS products (the flipped
    # kernel wkf on the gradient padded by (pgy, pgx)) into gx_out[n]; else (need_ga) the conv output's
    # gradient into ga_out[n] (Co, Ho, Wo, T) for a batch-wide input gradient.  Records: ev EventArrays, geo
    # ConvGeometry, s1/s2 NeuronForward and b1/b2 NeuronBackward of the conv and the pooled layer, dp
    # DelayPool, til Tiling, saved SavedPotentials, io BackwardArrays (the arrays named above)
    offsets, neuron, time, value = ev.offsets, ev.neuron, ev.time, ev.value
    H, W, sy, sx, py, px, Ho, Wo, T = geo.H, geo.W, geo.sy, geo.sx, geo.py, geo.px, geo.Ho, geo.Wo, geo.T
    has_delay, dm, df, dg, has_pool, pk, wp, W2, amp = (dp.has_delay, dp.dm, dp.df, dp.dg, dp.has_pool, dp.pk,
                                                        dp.wp, dp.W2, dp.amp)
    n1, tw1, canon1, canon2, dense_conv, cols = til.n1, til.tw1, til.canon1, til.canon2, til.dense_conv, til.cols
    blas_wgrad = til.blas_wgrad
    stored, store1, store2 = saved.stored, saved.store1, saved.store2
    g_out, parts, gwk_parts, gd_rows, need_ga = io.g_out, io.parts, io.gwk_parts, io.gd_rows, io.need_ga
    ga_out, gx_blas, wkf, pgy, pgx, gx_out = io.ga_out, io.gx_blas, io.wkf, io.pgy, io.pgx, io.gx_out
    N = offsets.shape[0] - 1
    Co = wT.shape[3]
    KH, KW = wT.shape[1], wT.shape[2]
    M1 = Ho * Wo * Co
    tw2 = W2 * Co
    n_parts = gwk_parts.shape[0] if blas_wgrad else parts.shape[0]  # the weight gradient's partial sums
    step = (N + n_parts - 1) // n_parts
    zero = amp - amp
    for p in prange(n_parts):
        gwp = parts[p]
        buf1 = np.empty((T, tw1), dtype=wT.dtype)
        gy = np.zeros((T, tw1), dtype=wT.dtype)         # padding columns stay 0
        buf2 = np.empty((T, tw2) if has_pool else (1, 1), dtype=wT.dtype)
        g2 = np.empty((T, tw2) if has_pool else (1, 1), dtype=wT.dtype)
        row1 = np.empty(tw1, dtype=wT.dtype)
        row2 = np.empty(tw2, dtype=wT.dtype)
        hist1 = np.empty((2, max(s1.L, b1.L), tw1))
        hist2 = np.empty((2, max(s2.L, b2.L), tw2))
        flag = np.zeros(8 * ((max(tw1, tw2) + 7) // 8), dtype=np.uint8)
        scratch = np.empty(max(tw1, tw2), dtype=np.int32)
        times1 = np.empty((tw1, T), dtype=np.int32)
        count1 = np.empty(tw1, dtype=np.int64)
        times2 = np.empty((tw2, T), dtype=np.int32)
        count2 = np.empty(tw2, dtype=np.int64)
        gd = np.empty(tw1, dtype=wT.dtype)
        acc = np.empty(Co, dtype=wT.dtype)  # one input neuron's weight-gradient terms of one tap
        gu1 = np.empty((T, tw1), dtype=wT.dtype)
        gu2 = np.empty((T, tw2) if has_pool else (1, 1), dtype=wT.dtype)
        starts = np.empty(wT.shape[0] * H + 1, dtype=np.int64)
        Ci = wT.shape[0]
        Wp = W + 2 * px
        S = (H + 2 * py) * Wp * T
        L = Ho * Wp * T
        xp = np.empty(Ci * S + (KW - 1) * T if dense_conv else 1, dtype=wT.dtype)
        wide = np.empty(max(Co, Ci) * cols * T if (dense_conv or gx_blas) else 1, dtype=wT.dtype)
        gwide = np.zeros(Co * L if blas_wgrad else 1, dtype=wT.dtype)   # the columns ox >= Wo stay 0
        Hq = Ho + 2 * pgy
        Wq = Wo + 2 * pgx
        Sq = Hq * Wq * T
        gpad = np.zeros(Co * Sq + (KW - 1) * T if gx_blas else 1, dtype=wT.dtype)  # the padding stays 0
        trans = np.empty((max(tw1, tw2), T) if max(s1.nu.shape[0], s2.nu.shape[0]) > ROW_SCAN_MIN_LENGTH else (1, 1),
                         dtype=wT.dtype)
        found = np.empty(max(tw1, tw2), dtype=np.int64)
        taps = np.empty((KH * KW, 4), dtype=np.int64)
        work = TileWork(buf1, buf2, row1, row2, hist1, hist2, flag, found, times1, count1, times2, count2, xp, S,
                        wide, trans, taps)
        gs_in = GemmShape(Sq, Wq, Co, KW, Ci, W, T, cols)   # the input gradient's products (flipped kernel)
        first_n = True
        for n in range(p * step, min(N, (p + 1) * step)):
            _row_starts(offsets[n], offsets[n + 1], neuron, W, starts)
            if dense_conv:
                _pad_events(xp, S, n, ev, geo)
            gn = g_out[n]
            for r in range(n1):
                if stored:  # the forward's potentials; the spikes are where they reach the threshold
                    buf1[:, :] = store1[n, r]
                    if has_pool:
                        buf2[:, :] = store2[n, r]
                    _spikes_of(buf1, s1.theta, times1, count1)
                else:
                    _tile_forward(r, starts, ev, wT, geo, s1, s2, dp, til, work)
                c0, rows, iy_lo, iy_hi = _tile_geometry(r, has_pool, pk, Ho, Wo, Co, tw1, KH, sy, py)
                width = min(tw1, M1 - c0)
                if has_pool:
                    _gather_tile(gn, canon2, r * tw2, g2)
                    _rho_tm(g2, buf2, b2.theta, b2.scale, b2.width, gu2, scratch)     # gu2 = g2 * rho(u2)
                    correlation_time_major(gu2, row2, hist2, b2)
                    _pool_back_tile(gu2, gy, rows, Wo, Co, pk, wp)
                else:
                    _gather_tile(gn, canon1, c0, gy)
                if has_delay:  # gy: the gradient of the delayed spikes; shifted into gu1, then gy = gu1 * rho(u1)
                    _delay_grad_tile(gy, times1, count1, dm[c0:c0 + tw1], amp, zero, gd[:width])
                    gd_rows[n, c0:c0 + width] = gd[:width]
                    _shift_back_time_major(gy, dm[c0:c0 + tw1], df[c0:c0 + tw1], dg[c0:c0 + tw1], gu1)
                    _rho_tm(gu1, buf1, b1.theta, b1.scale, b1.width, gy, scratch)
                    gsur = gy
                else:
                    _rho_tm(gy, buf1, b1.theta, b1.scale, b1.width, gu1, scratch)      # gu1 = gs * rho(u1)
                    gsur = gu1
                correlation_time_major(gsur, row1, hist1, b1)  # gsur: the gradient of the conv's output
                if blas_wgrad or gx_blas:
                    # the conv output's gradient in the layouts of the BLAS products: wide (Co, Ho, Wp, T)
                    # for the weight gradient, padded (Co, Hq, Wq, T) for the input gradient
                    for j0 in range(0, width, Co):
                        pos = (c0 + j0) // Co
                        oy = pos // Wo
                        ox = pos % Wo
                        for t in range(T):
                            src = gsur[t, j0:j0 + Co]
                            for co in range(Co):
                                if blas_wgrad:
                                    gwide[co * L + (oy * Wp + ox) * T + t] = src[co]
                                if gx_blas:
                                    gpad[co * Sq + ((oy + pgy) * Wq + ox + pgx) * T + t] = src[co]
                # conv weight gradient from the events that reach the tile (the terms of
                # pysrm.ops.conv._conv_weight_grad_events_cpu, grouped as below)
                hi_band = -1  # blas_wgrad: no event-driven weight gradient (an empty band)
                if not blas_wgrad:
                    hi_band = min(iy_hi, H - 1)
                # per input neuron (its events are consecutive) and tap: the neuron's events summed into acc
                # first, then acc added to the weight row (the weight row is read and written once per neuron
                # and tap instead of once per event: conv3 of the N-MNIST CNN 1.3-1.5x faster); per weight
                # element the same terms as the unfused event weight gradient, grouped by input neuron
                band = _band(starts, wT.shape[0], H, max(iy_lo, 0), hi_band)
                e0 = 0
                while e0 < band.shape[0]:
                    nrn = neuron[band[e0]]
                    e1 = e0 + 1
                    while e1 < band.shape[0] and neuron[band[e1]] == nrn:
                        e1 += 1
                    ci, iy, ix = _decode(nrn, H, W)
                    for j in range(event_taps_cpu(iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, work.taps)):
                        off = (work.taps[j, 2] * Wo + work.taps[j, 3]) * Co - c0
                        if off < 0 or off >= tw1:
                            continue
                        acc[:] = 0.0
                        for e in range(e0, e1):
                            k = band[e]
                            tk = time[k]
                            v = value[k]
                            for co in range(Co):
                                acc[co] += v * gsur[tk, off + co]
                        gk = gwp[ci, work.taps[j, 0], work.taps[j, 1]]
                        for co in range(Co):
                            gk[co] += acc[co]
                    e0 = e1
                if need_ga:
                    gan = ga_out[n]
                    for j0 in range(0, width, Co):
                        pos = (c0 + j0) // Co
                        oy = pos // Wo
                        ox = pos % Wo
                        for t in range(T):
                            src = gsur[t, j0:j0 + Co]
                            for co in range(Co):
                                gan[co, oy, ox, t] = src[co]
            if blas_wgrad:
                # per kernel offset: gwk[k]^T (Ci x Co) (+)= X_k^T (Ci x L) G (L x Co), the samples of the part
                # accumulated in order (pysrm.ops.conv._conv_wgrad_gemm_cpu's products)
                gwk = gwk_parts[p]
                for k in range(KH * KW):
                    off = ((k // KW) * Wp + k % KW) * T
                    gemm(TRANS, NO_TRANS, Ci, Co, L, xp[off:], S, gwide, L, gwk[k], Ci, 0.0 if first_n else 1.0)
            if gx_blas:
                for iy in range(H):
                    _conv_gemm_row(gpad, wkf, gs_in, iy, wide, gu1, 0, gx_out[n], False)
            first_n = False


@njit(cache=True)
def _delay_coefficients(shift, dm, df, dg):
    # per neuron: m = floor(d), f = d - m, g = 1 - f in the dtype of shift (as pysrm.ops.delay._delay_cpu)
    for j in range(shift.shape[0]):
        m, fq = delay_split_cpu(shift[j])  # fq in float64 (its own name: a reassigned f would unify to float64)
        dm[j] = m
        df[j] = shift.dtype.type(fq)
        dg[j] = shift.dtype.type(1.0) - df[j]


# --------------------------------------------------------------------------- wrappers

def channels_last_index(C: int, H: int, W: int) -> np.ndarray:
    """``canon[b]``: the canonical neuron index ``c H W + y W + x`` of the channels-last buffer column
    ``b = (y W + x) C + c`` (int32, length ``C H W``)."""
    c = np.arange(C)
    yx = np.arange(H * W)
    return (c[None, :] * (H * W) + yx[:, None]).reshape(-1).astype(np.int32)


def wgrad_parts(N: int) -> int:
    """Partial sums of the fused weight gradient for a batch of ``N``: the event-driven conv weight
    gradient's partition (by shape; at most the setting ``conv_wgrad_parts``)."""
    return max(1, min(N // 2, settings.current().conv_wgrad_parts))


class NeuronStage:
    """The SRM neurons of a block stage, as the kernels take them: from the neuron parameters, the spike
    and refractory responses and the time step ``ts`` (ms), in ``dtype``.

    Attributes
    ----------
    forward : tuple
        The ``NeuronForward`` record of the forward kernels (psp, refractory response, firing threshold;
        ``pysrm.ops._records``).
    backward : tuple
        The ``NeuronBackward`` record of the backward kernels (surrogate, correlation with the spike
        response).
    amp : numpy scalar of ``dtype``
        The spike amplitude ``1/ts``.
    """

    def __init__(self, neuron, srm_kernel, refractory_kernel, ts, dtype):
        from ..ops.psp import alpha_parameters
        from ..ops.spike import firing_threshold
        from ..ops._util import response_as
        dt = np.dtype(dtype).type
        alpha = alpha_parameters(srm_kernel)
        L = len(srm_kernel)
        k = response_as("srm_kernel", srm_kernel, dtype) * dt(ts)
        cfg = settings.current()
        fwd_alpha = alpha is not None and L >= cfg.recursive_min_length
        bwd_alpha = alpha is not None and L >= cfg.recursive_min_length_backward
        a, K = alpha if alpha is not None else (0.0, 0.0)
        self.forward = NeuronForward(float(a), float(K * ts), L, k, fwd_alpha,
                                     response_as("refractory_kernel", refractory_kernel, dtype),
                                     firing_threshold(neuron.theta, dtype))
        self.backward = NeuronBackward(dt(neuron.theta), dt(neuron.scale_rho), dt(neuron.tau_rho * neuron.theta), k,
                                       float(a), float(K * ts), L, bwd_alpha)
        self.amp = dt(1.0 / ts)


def _geometry(w, x, stride, padding, pool_k):
    from ..ops.conv import _check
    shape, (sy, sx, py, px), (ho, wo) = _check(w, x, stride, padding)
    H2, W2 = ((ho + pool_k - 1) // pool_k, (wo + pool_k - 1) // pool_k) if pool_k else (1, 1)
    return shape, (sy, sx, py, px), (ho, wo), (H2, W2)


def _delay_args(d, ts, Co, Ho, Wo, dtype, n_cols):
    """Per channels-last column (``n_cols``, padding included): the integer shift, its fraction and
    1 - fraction (pysrm.ops.delay)."""
    from ..ops.delay import _shift_bins
    M = Co * Ho * Wo
    dm = np.zeros(n_cols, dtype=np.int64)
    df = np.zeros(n_cols, dtype=dtype)
    dg = np.ones(n_cols, dtype=dtype)
    if d is not None:
        shift, _, _ = _shift_bins(d, (Co, Ho, Wo), ts, dtype)
        _delay_coefficients(np.ascontiguousarray(shift[channels_last_index(Co, Ho, Wo)]), dm[:M], df[:M], dg[:M])
    return dm, df, dg


def uses_blas(x, stride, threshold=None) -> bool:
    """Whether the block's conv runs as BLAS products (stride 1 and an input above ``threshold``, by
    default the setting ``conv_event_density_threshold``, where pysrm.ops.conv's ``"auto"`` takes its
    BLAS path) rather than event driven; the weight gradient's threshold is the setting
    ``conv_wgrad_event_density_threshold``."""
    from ..ops.conv import _pair
    if threshold is None:
        threshold = settings.current().conv_event_density_threshold
    return x.density > threshold and _pair("stride", stride) == (1, 1)


def _kernel_args(w, x, stride, padding, stage1, delay, pool, stage2):
    """The kernels' records of a block (EventArrays, the transposed weights wT (Ci, KH, KW, Co),
    ConvGeometry, DelayPool, Tiling) and the shapes ``(shape, Co, Ho, Wo, H2, W2, n1, tw1)``."""
    shape, (sy, sx, py, px), (Ho, Wo), (H2, W2) = _geometry(w, x, stride, padding, pool[0] if pool else 0)
    Co = w.shape[0]
    dtype = w.dtype
    pk, wp = (int(pool[0]), dtype.type(pool[1])) if pool else (1, dtype.type(1.0))
    tw1 = tile_width(pool is not None, pk, Ho, Wo, Co)
    n1 = H2 if pool else -(-(Co * Ho * Wo) // tw1)
    d, ts_d = delay if delay is not None else (None, 1.0)
    dm, df, dg = _delay_args(d, ts_d, Co, Ho, Wo, dtype, n1 * tw1)
    KH, KW = w.shape[2], w.shape[3]
    wk = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(KH * KW, Co * w.shape[1])
    ev = events_of(x)
    wT = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
    geo = ConvGeometry(shape[2], shape[3], sy, sx, py, px, Ho, Wo, shape[4])
    dp = DelayPool(delay is not None, dm, df, dg, pool is not None, pk, wp, H2, W2, stage1.amp)
    til = Tiling(n1, tw1, channels_last_index(Co, Ho, Wo),
                 channels_last_index(Co, H2, W2) if pool else np.zeros(1, np.int32),
                 uses_blas(x, stride), wk, max(1, settings.current().gemm_rows // shape[4]),
                 uses_blas(x, stride, settings.current().conv_wgrad_event_density_threshold))
    return (ev, wT, geo, dp, til), (shape, Co, Ho, Wo, H2, W2, n1, tw1)




def conv_block_forward(w, x, stride, padding, stage1, delay=None, pool=None, stage2=None, keep_potentials=False):
    r"""Forward of ``conv -> SRM [-> delay] [-> pool -> SRM]`` per sample (module docstring).

    Parameters
    ----------
    w : ndarray (Co, Ci, KH, KW), float32 or float64; x : :class:`~pysrm.events.SpikeEvents`
        ``(N, Ci, H, W, T)`` of the same dtype
    stride, padding : the conv's (ints or pairs)
    stage1, stage2 : :class:`NeuronStage` of the conv layer's SRM and of the pooling layer's SRM
    delay : ``(d, ts)``, delays in ms broadcastable to ``(Co, Ho, Wo)`` and the time step, or None
    pool : ``(k, weight)`` of the sum pooling (requires ``stage2``), or None

    keep_potentials : also return the potentials (after the refractory responses) for
        :func:`conv_block_backward` (``saved=``), which then does not recompute the forward

    Returns ``(spikes1, spikes2)`` as :class:`~pysrm.events.SpikeEvents` (``spikes2`` None without pooling):
    the spikes of the conv layer's SRM (before the delay) and of the pooling layer's SRM; with
    ``keep_potentials`` a third item, the kept potentials.
    """
    (ev, wT, geo, dp, til), (shape, Co, Ho, Wo, H2, W2, n1, tw1) = _kernel_args(w, x, stride, padding, stage1,
                                                                                 delay, pool, stage2)
    N, T = shape[0], shape[4]
    # potentials can stand in for the recomputed forward only where a spike leaves its own bin unchanged
    # (refractory response 0 at lag 0; see _spikes_of)
    keep = bool(keep_potentials) and stage1.forward.nu[0] == 0 and (stage2 is None or stage2.forward.nu[0] == 0)
    saved = SavedPotentials(keep, np.empty((N, n1, T, tw1) if keep else (1, 1, 1, 1), dtype=w.dtype),
                            np.empty((N, n1, T, Co * W2) if (keep and pool) else (1, 1, 1, 1), dtype=w.dtype))
    s1f = stage1.forward
    s2f = stage2.forward if stage2 is not None else s1f
    results = map_samples(lambda n: _sample_forward(n, ev, wT, geo, s1f, s2f, dp, til, saved), N)
    s1 = _events((N, Co, Ho, Wo, T), [r[0] for r in results], [r[1] for r in results], stage1.amp)
    s2 = _events((N, Co, H2, W2, T), [r[2] for r in results], [r[3] for r in results], stage1.amp) if pool else None
    if keep_potentials:
        return s1, s2, ((saved.store1, saved.store2) if keep else None)
    return s1, s2


def map_samples(fn, N):
    """``[fn(0), ..., fn(N-1)]``, run by as many Python threads as Numba has (``fn`` is a ``nogil`` kernel
    call; each sample's result depends on the sample only, so on no thread count)."""
    import numba
    workers = max(1, min(N, numba.get_num_threads()))
    if workers == 1:
        return [fn(n) for n in range(N)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, range(N)))


def _events(shape, neurons, times, amp):
    """SpikeEvents of per-sample (neuron, time) arrays already sorted by (neuron, time)."""
    from ..events import SpikeEvents
    offsets = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in neurons], out=offsets[1:])
    neuron = np.concatenate(neurons) if neurons else np.zeros(0, np.int32)
    time = np.concatenate(times) if times else np.zeros(0, np.int32)
    return SpikeEvents._trusted(shape, offsets, neuron, time, np.full(neuron.shape[0], amp, dtype=np.asarray(amp).dtype))


def conv_block_backward(w, x, stride, padding, stage1, grad, delay=None, pool=None, stage2=None,
                        need_input_grad=True, saved=None):
    r"""Backward of :func:`conv_block_forward` from ``grad``, the gradient of the block's output spikes:
    of the pooling layer's SRM ``(N, Co, H2, W2, T)`` with pooling, else of the (delayed) conv spikes
    ``(N, Co, Ho, Wo, T)``.  The forward of every sample is recomputed, unless ``saved`` holds the
    potentials a ``keep_potentials`` forward kept (bitwise the same either way).

    Returns ``(grad_x, grad_w, grad_d)``: the input gradient ``(N, Ci, H, W, T)`` (None unless
    ``need_input_grad``), the weight gradient like ``w`` and the delay gradient of the shape of ``d``
    (None without a delay)."""
    from ..ops.conv import conv_input_grad
    from ..ops.delay import _delay_grad, _shift_bins
    (ev, wT, geo, dp, til), (shape, Co, Ho, Wo, H2, W2, n1, tw1) = _kernel_args(w, x, stride, padding, stage1,
                                                                                 delay, pool, stage2)
    N, Ci, H, W, T = shape
    KH, KW = w.shape[2], w.shape[3]
    dtype = w.dtype
    M_out = Co * H2 * W2 if pool else Co * Ho * Wo
    if grad.shape[0] != N or grad.size != N * M_out * T:
        raise ValueError(f"grad has shape {grad.shape}; expected {(N, Co) + ((H2, W2) if pool else (Ho, Wo)) + (T,)}")
    g = np.ascontiguousarray(grad, dtype=dtype).reshape(N, M_out, T)
    blas_wgrad = til.blas_wgrad
    parts = np.zeros((wgrad_parts(N), Ci, KH, KW, Co) if not blas_wgrad else (1, 1, 1, 1, 1), dtype=dtype)
    gwk_parts = np.zeros((wgrad_parts(N), KH * KW, Co * Ci) if blas_wgrad else (1, 1, 1), dtype=dtype)
    gd_rows = np.zeros((N, Co * Ho * Wo) if delay is not None else (1, 1), dtype=dtype)
    from ..ops.conv import _pair
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    gx_blas = bool(need_input_grad) and sy == sx == 1 and py <= KH - 1 and px <= KW - 1
    need_ga = bool(need_input_grad) and not gx_blas
    ga = np.empty((N, Co, Ho, Wo, T) if need_ga else (1, 1, 1, 1, 1), dtype=dtype)
    gx = np.empty((N, Ci, H, W, T) if gx_blas else (1, 1, 1, 1, 1), dtype=dtype)
    wkf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)).reshape(KH * KW, Ci * Co)
    s2 = stage2 if stage2 is not None else stage1
    store1, store2 = saved if saved is not None else (np.empty((1, 1, 1, 1), dtype), np.empty((1, 1, 1, 1), dtype))
    if saved is not None and store1.shape != (N, n1, T, tw1):
        # the kept potentials were tiled under other settings (conv_block_tile) than this backward's
        raise ValueError(f"saved potentials have shape {store1.shape}; this backward tiles them as "
                         f"{(N, n1, T, tw1)}: run the backward under the settings of its forward")
    io = BackwardArrays(g, parts, gwk_parts, gd_rows, need_ga, ga, gx_blas, wkf, KH - 1 - py, KW - 1 - px, gx)
    _block_backward_cpu(ev, wT, geo, stage1.forward, s2.forward, dp, til, stage1.backward, s2.backward,
                        SavedPotentials(saved is not None, store1, store2), io)
    if blas_wgrad:
        grad_w = np.ascontiguousarray(gwk_parts.sum(axis=0).reshape(KH, KW, Co, Ci).transpose(2, 3, 0, 1))
    else:
        grad_w = np.ascontiguousarray(parts.sum(axis=0).transpose(3, 0, 1, 2))
    grad_d = None
    if delay is not None:
        d, ts = delay
        _, d_shape, ts = _shift_bins(d, (Co, Ho, Wo), ts, dtype)
        canon_rows = np.empty_like(gd_rows)
        canon_rows[:, channels_last_index(Co, Ho, Wo)] = gd_rows
        grad_d = _delay_grad(canon_rows, (N, Co, Ho, Wo, T), d_shape, ts)
    grad_x = gx if gx_blas else (conv_input_grad(w, ga, stride, padding, (H, W)) if need_input_grad else None)
    return grad_x, grad_w, grad_d


# --------------------------------------------------------------------------- blocks


#: the schedules of a conv block (:meth:`ConvBlock.schedule`)
FUSED, LAYERS = "fused", "layers"


class ConvBlock(Step):
    """Conv -> SRM [-> Delay] [-> Pool -> SRM] on the CPU (module docstring: its schedules and policy);
    the subclasses set the pattern.  Its cache in the fused schedule: ``x`` (the input events) and
    ``saved`` (the potentials a training forward kept: :meth:`pysrm.plan.PlanContext.keeps_potentials`).

    Attributes
    ----------
    last_schedule : str or None
        the schedule of the last forward (``"fused"`` or ``"layers"``; None before any)
    """

    takes = (ARRAY, EVENTS)
    gives = (ARRAY, EVENTS)
    events_max_density = Conv.events_max_density

    @classmethod
    def applies(cls, layers, options):
        srms = [l for l in layers if isinstance(l, SRM)]
        delays = [l for l in layers if isinstance(l, Delay)]
        ts = srms[0].sim.ts
        return (options.cpu_fusion and all(s.sim.ts == ts for s in srms) and all(d.sim.ts == ts for d in delays))

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.conv, self.srm1 = layers[0], layers[1]
        self.delay = next((l for l in layers if isinstance(l, Delay)), None)
        self.pool = next((l for l in layers if isinstance(l, Pool)), None)
        self.srm2 = layers[-1] if self.pool is not None else None
        self.last_schedule = None
        self._stages = {}  # NeuronStage per (SRM layer, dtype, recursion settings): derived, not a forward cache
        self._layer_steps = [LayerStep(l, context) for l in self.layers]  # the "layers" schedule

    # -- the policy ----------------------------------------------------------------------------------------
    def schedule(self, x) -> str:
        """The schedule for input events ``x`` (:data:`FUSED` or :data:`LAYERS`; the rule of the module
        docstring: batch size, input density, stride, the batch's conv output bytes against
        the setting ``blas_block_min_bytes``, :meth:`unfused_bytes` against the plan's memory budget)."""
        n, t = x.shape[0], x.shape[4]
        cfg = settings.current()
        if n < cfg.fused_conv_min_batch:
            return LAYERS
        if x.density <= cfg.conv_event_density_threshold:
            return FUSED  # event-driven conv
        out_bytes = int(np.prod(self.conv.output_shape(self.conv.in_shape))) * n * t * self.conv.weight.data.itemsize
        if (not uses_blas(x, self.conv.stride) or out_bytes <= cfg.blas_block_min_bytes
                or self.unfused_bytes(n, t) <= self.options.memory_budget):
            return LAYERS
        return FUSED

    def unfused_bytes(self, n: int, t: int) -> int:
        """The estimated peak bytes of the network's conv layers run unfused for a batch of ``n`` samples
        of ``t`` bins: ``unfused_values_per_output x n x t x (conv outputs of the network) x itemsize``
        (the network's conv outputs per sample and bin: :meth:`pysrm.plan.PlanContext.output_values`)."""
        outputs = self.context.output_values(Conv) or int(np.prod(self.conv.output_shape(self.conv.in_shape)))
        return settings.current().unfused_values_per_output * n * t * outputs * self.conv.weight.data.itemsize

    # -- the schedules ---------------------------------------------------------------------------------------
    def _stage(self, srm, dtype):
        cfg = settings.current()  # the stage's psp strategy depends on the recursion lengths
        key = (id(srm), np.dtype(dtype).str, cfg.recursive_min_length, cfg.recursive_min_length_backward)
        st = self._stages.get(key)
        if st is None:
            st = self._stages[key] = NeuronStage(srm.neuron, srm.srm, srm.ref, srm.sim.ts, dtype)
        return st

    def _args(self):
        w = self.conv.weight.data
        delay = (self.delay.delay.data, self.delay.sim.ts) if self.delay is not None else None
        pool = (self.pool.kernel, self.pool.weight) if self.pool is not None else None
        st2 = self._stage(self.srm2, w.dtype) if self.pool is not None else None
        return w, delay, pool, self._stage(self.srm1, w.dtype), st2

    def forward(self, x, train: bool = False):
        self.conv.check_input(x)
        x = x if isinstance(x, SpikeEvents) else SpikeEvents.from_dense(x)
        self.last_schedule = self.schedule(x)
        if self.last_schedule == LAYERS:
            x = x.to_dense()
            for step in self._layer_steps:
                x = step.forward(x, train)
            return x
        return self._forward_fused(x, train)

    def _forward_fused(self, x, train):
        w, delay, pool, st1, st2 = self._args()
        keep = train and self.context.keeps_potentials(self.conv, x.shape[0], x.shape[4], w.dtype.itemsize)
        out = conv_block_forward(w, x, self.conv.stride, self.conv.padding, st1, delay, pool, st2, keep_potentials=keep)
        s1, s2 = out[0], out[1]
        saved = out[2] if keep else None
        if train:
            self.cache.update(x=x, saved=saved)
        self.srm1.record(s1)
        if self.pool is not None:
            self.srm2.record(s2)
            return self._hand_on(s2)
        if self.delay is None:
            return self._hand_on(s1)
        d, ts = delay
        y = F.delay_events(s1, d, ts)
        if self.output.kind == EVENTS and y.n_events <= self.output.max_density * int(np.prod(y.shape)):
            return y
        return y.to_dense()  # bitwise F.delay of the dense spikes (delay_events' contract)

    def _hand_on(self, s):
        """The block's output spikes as the next step takes them (the planner's link)."""
        return s if self.output.kind == EVENTS else s.to_dense()

    def backward(self, grad):
        if self.last_schedule == LAYERS:
            for step in reversed(self._layer_steps):
                grad = step.backward(grad)
            return grad
        x = self.cached("x")
        w, delay, pool, st1, st2 = self._args()
        gx, gw, gd = conv_block_backward(w, x, self.conv.stride, self.conv.padding, st1, materialize(grad),
                                         delay, pool, st2, need_input_grad=not self.first,
                                         saved=self.cache.pop("saved", None))
        self.conv.weight.accumulate_grad(gw)
        if self.delay is not None:
            self.delay.delay.accumulate_grad(gd)
        return gx


class ConvSRMDelayPoolSRMBlock(ConvBlock):
    """Conv -> SRM -> Delay -> Pool -> SRM (see :class:`ConvBlock`)."""
    pattern = (Conv, SRM, Delay, Pool, SRM)


class ConvSRMPoolSRMBlock(ConvBlock):
    """Conv -> SRM -> Pool -> SRM (see :class:`ConvBlock`)."""
    pattern = (Conv, SRM, Pool, SRM)


class ConvSRMDelayBlock(ConvBlock):
    """Conv -> SRM -> Delay (see :class:`ConvBlock`)."""
    pattern = (Conv, SRM, Delay)


class ConvSRMBlock(ConvBlock):
    """Conv -> SRM (see :class:`ConvBlock`)."""
    pattern = (Conv, SRM)


#: the blocks of this family, in the order a planner registers them
BLOCKS = (ConvSRMDelayPoolSRMBlock, ConvSRMPoolSRMBlock, ConvSRMDelayBlock, ConvSRMBlock)
