r"""Fused CUDA kernels of an SRM layer: ``spike(psp(a))`` in one kernel, its backward in one kernel.

Forward (:func:`srm_forward`), per row ``r`` (a neuron of a sample) and time bin ``t``:

.. math::

    u[t] = \sum_{i<\min(L,t+1)} k[i]\, a[t-i], \qquad
    u_{ref}[t] = u[t] + \sum_{t' < t,\ s[t'] \ne 0,\ t - t' < L_\nu} \nu[t - t'], \qquad
    s[t] = \tfrac{1}{T_s}[u_{ref}[t] \ge \vartheta]

(and ``u_ref[t] += nu[0]`` at a spike), exactly the separate ops :func:`pysrm.ops.psp_cuda.psp` and
:func:`pysrm.ops.spike_cuda.spike`: the psp sum in their order (oldest input first, zeros skipped) and
precision (float64 where the CPU uses its float64 alpha recursion, else the dtype), the refractory
responses added in the dtype in the order of the spikes (oldest first) as the CPU scan adds them, the
CPU's firing threshold (:func:`pysrm.ops.spike.firing_threshold`).  So the spikes are those of the
separate ops and of the CPU (to the rounding of the psp sum; tested under the simulator, bitwise there).

Backward (:func:`srm_backward`):

.. math::

    g_a[t] = \sum_{i<\min(L, T-t)} k[i]\, \rho(u_{ref}[t+i])\, g_s[t+i]

(the surrogate of :func:`pysrm.ops._elementwise.surrogate_element` in the dtype, the correlation summed
in float64 as :func:`pysrm.ops.psp_cuda.psp_backward`).

Where the layer's input comes from and where its gradient goes, without intermediate arrays:

* input ``a`` (``src_mode``): ``"rows"`` ``(rows, T)``; ``"channels_last"`` ``(N, P, T, C)`` (the event
  paths' sums of :mod:`pysrm.ops.dense_cuda` / :mod:`pysrm.ops.conv_cuda`, not transposed); ``"pool"``
  the sum pooling of ``(N, C, H, W, T)`` computed while loading (``a = w_p \sum`` over the window, in
  the order of :mod:`pysrm.ops.pool`; no pooled array is stored);
* gradient of the spikes: read directly, **through a delay** (``g_s[t] = (1-f) g[t+m] + f g[t+m+1]``,
  ``d / T_s = m + f`` computed per neuron as :mod:`pysrm.ops.delay_cuda` does) and/or **through a sum
  pool** (``g[.., i_y, i_x, t] = w_p\, g_p[.., i_y/k, i_x/k, t]``), so neither the delay's nor the
  pool's input gradient is stored;
* output gradient ``g_a``: ``(rows, T)``, or channels-last ``(N, P, T, C)`` for the event weight
  gradients (no transpose).

Thread mapping.  A block of :data:`THREADS` threads owns :data:`ROWS` rows and walks their time axis
in tiles of :data:`TILE` bins; every global read and write goes through shared-memory tiles with the
time axis (or, channels-last, the channel axis) fastest across the threads, so all are coalesced.
Forward: the tile's inputs and the ``L - 1`` bins before it are loaded, all threads compute the psp of
the tile's bins, then one warp scans the tile in time (one lane per row; the spikes of the last
``L_nu - 1`` bins are a 64-bit mask per lane, so the scan carries no array across tiles), then all
threads store ``s`` and ``u_ref``.  Backward: the tile's surrogate products and those of the ``L - 1``
bins after it, then all threads the correlation.  Rows are grouped channel-fastest where a
channels-last array is read or written.

Limits: the fused kernels take spike responses of at most :data:`MAX_KERNEL` samples and refractory
responses of at most 64 (``applies``); the blocks of :mod:`pysrm.blocks.cuda` fall back to the
separate ops otherwise.  Under the CUDA simulator the tiles are tiny (4 rows x 4 bins, 16 threads,
responses up to 16 samples), so small tests cross tiles and halos.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import cuda

from .. import cuda as dev
from .._checks import positive
from ..ops._elementwise import surrogate_element
from ..ops import _primitives_cuda as prim
from ..ops._util import response_as
from .. import settings
from ..ops.psp_cuda import _scaled  # the device response in the CPU path's precision, as the separate op
from ..ops._records import DelayArgs, PoolRead, RowGeometry
from ..ops.delay_cuda import _g_at
from ..ops.delay_cuda import delay_shift as _delay_shift
from ..ops.spike import firing_threshold

SIM = dev.SIMULATOR
#: time bins per tile (4 under the simulator, to keep its runs short)
TILE = 4 if SIM else 32
#: rows (neurons of one sample) per block
ROWS = 4 if SIM else 32
#: threads per block
THREADS = 16 if SIM else 256
#: longest spike response the fused kernels take (the tiles carry its L - 1 bins of halo)
MAX_KERNEL = 16 if SIM else 64
#: longest refractory response (the scan keeps the last 63 bins' spikes in a 64-bit mask)
MAX_REFRACTORY = 64
_TW = TILE + MAX_KERNEL - 1  # tile width with halo
_TP = TILE + 1               # padded tile row (bank conflicts)

SRC_ROWS, SRC_CHANNELS_LAST, SRC_POOL = 0, 1, 2
G_DELAY, G_POOL = 1, 2
OUT_ROWS, OUT_CHANNELS_LAST = 0, 1

_surrogate = cuda.jit(device=True, cache=True)(surrogate_element)

#: where the forward reads its input (mode: SRC_ROWS, SRC_CHANNELS_LAST or SRC_POOL; for SRC_POOL the pool's
#: input size Hi x Wi, kernel pk and weight wp), and the data dtype's zero zdt
SourceRead = namedtuple("SourceRead", "mode Hi Wi pk wp zdt")
#: the fused forward's neurons: the scaled spike response k and its accumulator zero zacc (float64 where the
#: CPU sums in float64), the refractory response nu, the mask lim of its last len(nu) - 1 bins, the firing
#: threshold theta and the spike amplitude amp
FusedForward = namedtuple("FusedForward", "k zacc nu lim theta amp")
#: the fused forward's outputs: the spikes s_out, and u_out when write_u
ForwardOut = namedtuple("ForwardOut", "s_out u_out write_u")
#: where the backward reads the spikes' gradient (gmode: bits G_DELAY, G_POOL) through a following pool (pr:
#: PoolRead) and delay (dl: DelayArgs)
GradRead = namedtuple("GradRead", "gmode pr dl")
#: the fused backward's neurons: the scaled spike response k, the surrogate's theta, a = scale / width,
#: inv_width = 1 / width, and the dtype's zero zdt
FusedBackward = namedtuple("FusedBackward", "k theta a inv_width zdt")


@cuda.jit(device=True, cache=True)
def _row_of(q, grp_cl, C, P):
    # the row (n, c, p) -> (n*C + c)*P + p of the group's q-th slot; grouped channel-fastest if grp_cl
    if grp_cl:
        c = q % C
        m = q // C
        p = m % P
        n = m // P
        return (n * C + c) * P + p
    return q


@cuda.jit(device=True, cache=True)
def _src_val(src, sr, r, t, geo):
    # the layer's input a at row r, bin t, read as sr (SourceRead) says; geo: RowGeometry of the layer
    mode, H, W, pk, wp, zdt = sr.mode, sr.Hi, sr.Wi, sr.pk, sr.wp, sr.zdt
    T, C, P, Wo = geo.T, geo.C, geo.P, geo.Wn
    if mode == SRC_ROWS:
        return src[r * T + t]
    n = r // (C * P)
    rem = r - n * (C * P)
    c = rem // P
    p = rem - c * P
    if mode == SRC_CHANNELS_LAST:
        return src[((n * P + p) * T + t) * C + c]
    # sum pooling of (N, C, H, W, T): the window of output (oy, ox), ky outer, kx inner (pysrm.ops.pool's
    # order; the primitive of pysrm.ops.pool_cuda)
    oy = p // Wo
    return prim.pool_window_sum(src, (n * C + c) * H * W * T + t, W, T, oy, p - oy * Wo, pk, H, wp, zdt)


@cuda.jit(device=True, cache=True)
def _fwd_body(src, sr, geo, grp_cl, st, out, tin, tu, tsp):
    # records: sr SourceRead, geo RowGeometry, st FusedForward, out ForwardOut; tin, tu, tsp the block's tiles
    N, C, P, T = geo.N, geo.C, geo.P, geo.T
    mode, zdt = sr.mode, sr.zdt
    k, zacc, nu, lim, theta, amp = st.k, st.zacc, st.nu, st.lim, st.theta, st.amp
    s_out, u_out, write_u = out.s_out, out.u_out, out.write_u
    rows = N * C * P
    L = k.shape[0]
    tid = cuda.threadIdx.x
    nth = cuda.blockDim.x
    ngroups = (rows + ROWS - 1) // ROWS
    width = TILE + L - 1
    for grp in range(cuda.blockIdx.x, ngroups, cuda.gridDim.x):
        q0 = grp * ROWS
        mask = 0  # the scanning lane's row: spikes of the last Lr - 1 bins, bit b = bin t - 1 - b
        for t0 in range(0, T, TILE):
            h0 = t0 - (L - 1)
            # 1. inputs of bins h0 .. t0+TILE-1 (time fastest, or slots fastest for channels-last)
            for e in range(tid, ROWS * width, nth):
                if mode == SRC_CHANNELS_LAST:
                    i = e % ROWS
                    j = e // ROWS
                else:
                    j = e % width
                    i = e // width
                t = h0 + j
                v = zdt
                if q0 + i < rows and t >= 0 and t < T:
                    v = _src_val(src, sr, _row_of(q0 + i, grp_cl, C, P), t, geo)
                tin[i, j] = v
            cuda.syncthreads()
            # 2. psp of the tile's bins (the primitive causal_sum of pysrm.ops.psp_cuda: oldest input first,
            #    zeros skipped)
            for e in range(tid, ROWS * TILE, nth):
                i = e // TILE
                tt = e - i * TILE
                t = t0 + tt
                if q0 + i < rows and t < T:  # bin t is tin[i, t - h0]; bins before 0 are tin[i, :-h0]
                    tu[i, tt] = prim.causal_sum(tin[i], k, t - h0, -h0, zacc)
            cuda.syncthreads()
            # 3. the spike scan, one lane per row (the primitive spike_step_masked: the CPU scan's additions,
            #    oldest spike first)
            if tid < ROWS and q0 + tid < rows:
                for tt in range(TILE):
                    t = t0 + tt
                    if t < T:
                        v, spk, mask = prim.spike_step_masked(tu[tid, tt], mask, nu, theta, lim)
                        tsp[tid, tt] = 1 if spk else 0
                        tu[tid, tt] = v
            cuda.syncthreads()
            # 4. store s and u_ref (time fastest: each row's tile is one contiguous segment)
            for e in range(tid, ROWS * TILE, nth):
                i = e // TILE
                tt = e - i * TILE
                t = t0 + tt
                if q0 + i < rows and t < T:
                    r = _row_of(q0 + i, grp_cl, C, P)
                    s_out[r * T + t] = amp if tsp[i, tt] != 0 else zdt
                    if write_u:
                        u_out[r * T + t] = tu[i, tt]
            cuda.syncthreads()


@cuda.jit(cache=True)
def _srm_fwd_f32(src, sr, geo, grp_cl, st, out):
    tin = cuda.shared.array((ROWS, _TW), dtype=np.float32)
    tu = cuda.shared.array((ROWS, _TP), dtype=np.float32)
    tsp = cuda.shared.array((ROWS, _TP), dtype=np.int8)
    _fwd_body(src, sr, geo, grp_cl, st, out, tin, tu, tsp)


@cuda.jit(cache=True)
def _srm_fwd_f64(src, sr, geo, grp_cl, st, out):
    tin = cuda.shared.array((ROWS, _TW), dtype=np.float64)
    tu = cuda.shared.array((ROWS, _TP), dtype=np.float64)
    tsp = cuda.shared.array((ROWS, _TP), dtype=np.int8)
    _fwd_body(src, sr, geo, grp_cl, st, out, tin, tu, tsp)


@cuda.jit(device=True, cache=True)
def _g_base(gsrc, gr, r, t, geo):
    # the gradient of the layer's spikes before the delay: g[r, t], or through a following sum pool (G_POOL
    # of gr.gmode), read as the delay's backward reads it (pysrm.ops.delay_cuda._g_at, its mode 2: the pool)
    return _g_at(gsrc, gr.gmode & G_POOL, r, t, geo, gr.pr)


@cuda.jit(device=True, cache=True)
def _g_val(gsrc, gr, r, t, geo):
    # the gradient of the layer's spikes at row r, bin t, read through the delay and pool gr (GradRead) says
    T, C, P = geo.T, geo.C, geo.P
    if gr.gmode & G_DELAY:
        m, f = _delay_shift(gr.dl, r % (C * P), P, geo.Wn)
        g0 = 0.0
        g1 = 0.0
        a = t + m
        if a >= 0 and a < T:
            g0 = _g_base(gsrc, gr, r, a, geo)
        a += 1
        if a >= 0 and a < T:
            g1 = _g_base(gsrc, gr, r, a, geo)
        return prim.interpolate(g0, g1, 1.0 - f, f)  # the delay's adjoint, as pysrm.ops.delay_cuda
    return _g_base(gsrc, gr, r, t, geo)


@cuda.jit(device=True, cache=True)
def _bwd_body(gsrc, gr, geo, grp_cl, u, st, out, omode, tg):
    # records: gr GradRead, geo RowGeometry, st FusedBackward; out in the layout omode (OUT_ROWS,
    # OUT_CHANNELS_LAST); tg the block's tile
    N, C, P, T = geo.N, geo.C, geo.P, geo.T
    k, theta, a, inv_width, zdt = st.k, st.theta, st.a, st.inv_width, st.zdt
    rows = N * C * P
    L = k.shape[0]
    tid = cuda.threadIdx.x
    nth = cuda.blockDim.x
    ngroups = (rows + ROWS - 1) // ROWS
    width = TILE + L - 1
    for grp in range(cuda.blockIdx.x, ngroups, cuda.gridDim.x):
        q0 = grp * ROWS
        for t0 in range(0, T, TILE):
            # 1. grad_s * rho(u) of bins t0 .. t0+TILE+L-2 (time fastest)
            for e in range(tid, ROWS * width, nth):
                j = e % width
                i = e // width
                t = t0 + j
                if q0 + i < rows and t < T:
                    r = _row_of(q0 + i, grp_cl, C, P)
                    tg[i, j] = _g_val(gsrc, gr, r, t, geo)
                    tg[i, j] = _surrogate(tg[i, j], u[r * T + t], theta, a, inv_width)  # in the dtype
                else:
                    tg[i, j] = zdt
            cuda.syncthreads()
            # 2. the correlation with the spike response (float64 sum: correlation_sum, as psp_cuda.psp_backward)
            for e in range(tid, ROWS * TILE, nth):
                if omode == OUT_CHANNELS_LAST:
                    i = e % ROWS
                    tt = e // ROWS
                else:
                    tt = e % TILE
                    i = e // TILE
                t = t0 + tt
                if q0 + i < rows and t < T:
                    acc = prim.correlation_sum(tg[i], k, tt, T - t0)  # tg[i, j] is bin t0 + j
                    r = _row_of(q0 + i, grp_cl, C, P)
                    if omode == OUT_CHANNELS_LAST:
                        n = r // (C * P)
                        rem = r - n * (C * P)
                        c = rem // P
                        p = rem - c * P
                        out[((n * P + p) * T + t) * C + c] = acc
                    else:
                        out[r * T + t] = acc
            cuda.syncthreads()


@cuda.jit(cache=True)
def _srm_bwd_f32(gsrc, gr, geo, grp_cl, u, st, out, omode):
    tg = cuda.shared.array((ROWS, _TW), dtype=np.float32)
    _bwd_body(gsrc, gr, geo, grp_cl, u, st, out, omode, tg)


@cuda.jit(cache=True)
def _srm_bwd_f64(gsrc, gr, geo, grp_cl, u, st, out, omode):
    tg = cuda.shared.array((ROWS, _TW), dtype=np.float64)
    _bwd_body(gsrc, gr, geo, grp_cl, u, st, out, omode, tg)


# --------------------------------------------------------------------------- host side

def applies(srm_kernel, refractory_kernel) -> bool:
    """True when the fused kernels take these responses (lengths 1 .. :data:`MAX_KERNEL` and
    1 .. :data:`MAX_REFRACTORY`)."""
    return 1 <= len(srm_kernel) <= MAX_KERNEL and 1 <= len(refractory_kernel) <= MAX_REFRACTORY


def _grid(rows):
    groups = dev.ceil_div(rows, ROWS)
    return max(1, min(groups, dev.current_launch().max_blocks))


def _zero_array(dtype):
    return dev.constant(np.zeros(1, dtype=dtype))


def srm_forward(src, rows_shape, srm_kernel, refractory_kernel, theta: float, ts: float, src_mode: str = "rows",
                pool=None, need_potential: bool = True, dtype=None):
    r"""Fused SRM forward on the device: returns ``(s, u_ref)`` shaped ``rows_shape`` (``(N, C, H, W, T)``;
    ``u_ref`` None without ``need_potential``).

    ``src``: a device array with the layer's input ``a`` laid out as ``src_mode`` says: ``"rows"``
    (``rows_shape``), ``"channels_last"`` (``(N, H, W, T, C)`` / ``(N, T, C)``: ``(N, P, T, C)`` with
    ``P = H W``) or ``"pool"`` (``pool = (k, weight)``; ``src`` the pool's input ``(N, C, k H', k W', T)``
    -ish: any ``(N, C, Hi, Wi, T)`` with ``ceil(Hi / k) = H``, ``ceil(Wi / k) = W``).
    Responses, ``theta`` and ``ts`` (ms) as :func:`pysrm.ops.srm.srm_forward`; ``applies`` must hold.
    One kernel launch.
    """
    N, C, H, W, T = (int(v) for v in rows_shape)
    dt = np.dtype(dtype or src.dtype)
    theta = positive("theta", theta)
    ts = positive("ts", ts)
    if not applies(srm_kernel, refractory_kernel):
        raise ValueError(f"srm_cuda.srm_forward: responses of {len(srm_kernel)} / {len(refractory_kernel)} samples; "
                         f"the fused kernel takes at most {MAX_KERNEL} / {MAX_REFRACTORY}")
    mode = {"rows": SRC_ROWS, "channels_last": SRC_CHANNELS_LAST, "pool": SRC_POOL}[src_mode]
    P = H * W
    rows = N * C * P
    k, zacc = _scaled(srm_kernel, dt, ts, settings.current().recursive_min_length)
    nu = dev.constant(response_as("refractory_kernel", refractory_kernel, dt))
    lim = np.int64((1 << (len(refractory_kernel) - 1)) - 1)
    s = dev.empty((N, C, H, W, T), dt)
    u = dev.empty((N, C, H, W, T), dt) if need_potential else _zero_array(dt)
    Hi = Wi = 1
    pk, wp = 1, dt.type(0)
    if mode == SRC_POOL:
        pk, weight = pool
        pk, wp = int(pk), dt.type(positive("weight", weight))
        Hi, Wi = int(src.shape[2]), int(src.shape[3])
        if -(-Hi // pk) != H or -(-Wi // pk) != W:
            raise ValueError(f"pool input {tuple(src.shape)} does not pool ({pk}) to {rows_shape}")
    if rows == 0 or T == 0:
        return s, (u if need_potential else None)
    kern = _srm_fwd_f32 if dt == np.float32 else _srm_fwd_f64
    dev.launch_grid(kern, _grid(rows), THREADS, src.reshape(src.size), SourceRead(mode, Hi, Wi, pk, wp, dt.type(0)),
                    RowGeometry(N, C, P, W, T), mode == SRC_CHANNELS_LAST,
                    FusedForward(k, zacc, nu, lim, firing_threshold(theta, dt), dt.type(1.0 / ts)),
                    ForwardOut(s.reshape(s.size), u.reshape(u.size), bool(need_potential)))
    return s, (u if need_potential else None)


def srm_backward(grad, u, neuron, srm_kernel, ts: float, delay=None, pool=None, out_channels_last: bool = False):
    r"""Fused SRM backward on the device: the gradient of the layer's input ``a``.

    ``u``: the ``u_ref`` of :func:`srm_forward`, ``(N, C, H, W, T)``.  ``grad``: the gradient of the
    spikes, shaped like ``u``; or, with ``pool = (k, weight)``, the gradient of a following sum pool's
    output ``(N, C, ceil(H/k), ceil(W/k), T)``; and/or with ``delay = (d, ts_delay)`` (``d`` the device
    delays in ms, broadcastable to ``(C, H, W)``) the gradient of the following delay's output.
    Returns ``(N, C, H, W, T)``, or with ``out_channels_last`` ``(N, H, W, T, C)``.  One kernel launch.
    """
    N, C, H, W, T = (int(v) for v in u.shape)
    dt = np.dtype(u.dtype)
    if grad.dtype != dt:
        raise TypeError(f"grad has dtype {grad.dtype} but u has dtype {dt}; they must match")
    P = H * W
    rows = N * C * P
    k, _ = _scaled(srm_kernel, dt, ts, settings.current().recursive_min_length_backward)
    if len(srm_kernel) > MAX_KERNEL:
        raise ValueError(f"srm_cuda.srm_backward: a response of {len(srm_kernel)} samples; at most {MAX_KERNEL}")
    gmode = 0
    pk, wp, Ho, Wo = 1, dt.type(0), 1, 1
    if pool is not None:
        gmode |= G_POOL
        pk, weight = pool
        pk, wp = int(pk), dt.type(positive("weight", weight))
        Ho, Wo = -(-H // pk), -(-W // pk)
        if tuple(grad.shape) != (N, C, Ho, Wo, T):
            raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the pool output {(N, C, Ho, Wo, T)}")
    elif tuple(grad.shape) != (N, C, H, W, T):
        raise ValueError(f"grad has shape {tuple(grad.shape)} but u has shape {(N, C, H, W, T)}")
    d3, Cd, Hd, Wd, tsd = _zero_array(dt), 1, 1, 1, 1.0
    if delay is not None:
        gmode |= G_DELAY
        d, tsd = delay
        tsd = positive("ts", tsd)
        dshape = tuple(int(v) for v in d.shape)
        if len(dshape) > 3:
            raise ValueError(f"delay of shape {dshape} does not broadcast to the neuron shape {(C, H, W)}")
        Cd, Hd, Wd = (1,) * (3 - len(dshape)) + dshape
        for a_, b_ in zip((Cd, Hd, Wd), (C, H, W)):
            if a_ not in (1, b_):
                raise ValueError(f"delay of shape {dshape} does not broadcast to the neuron shape {(C, H, W)}")
        d3 = d.reshape(d.size) if d.size else _zero_array(dt)
    out = dev.empty((N, H, W, T, C) if out_channels_last else (N, C, H, W, T), dt)
    if rows == 0 or T == 0:
        return out
    width = neuron.tau_rho * neuron.theta
    scale, wd = dt.type(neuron.scale_rho), dt.type(width)
    kern = _srm_bwd_f32 if dt == np.float32 else _srm_bwd_f64
    gr = GradRead(gmode, PoolRead(pk, Ho, Wo, wp), DelayArgs(d3, Cd, Hd, Wd, float(tsd), dt == np.float32))
    dev.launch_grid(kern, _grid(rows), THREADS, grad.reshape(grad.size), gr, RowGeometry(N, C, P, W, T),
                    bool(out_channels_last), u.reshape(u.size),
                    FusedBackward(k, dt.type(neuron.theta), scale / wd, dt.type(1.0) / wd, dt.type(0)),
                    out.reshape(out.size), OUT_CHANNELS_LAST if out_channels_last else OUT_ROWS)
    return out
