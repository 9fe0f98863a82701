r"""2-D convolution synapse, applied independently in every time bin.

Forward, for ``x`` of shape ``(N, Ci, H, W, T)``, weights ``w`` of shape
``(Co, Ci, KH, KW)``, stride ``s`` and zero padding ``p`` (PyTorch/SLAYER
convention, a cross-correlation):

.. math::

    a[n, c_o, y, x, t] = \sum_{c_i, k_y, k_x} w[c_o, c_i, k_y, k_x]\;
        x[n, c_i, s y + k_y - p, s x + k_x - p, t]

with out-of-range input positions reading as zero; the output is
``(N, Co, Ho, Wo, T)`` with ``Ho = (H + 2p - KH) // s + 1`` (same for ``Wo``).

Backward (the adjoint: a transposed convolution for the input, a correlation
of gradient and input for the weights):

.. math::

    \frac{\partial\mathcal L}{\partial x[n, c_i, i_y, i_x, t]} =
        \sum_{c_o, k_y, k_x} w[c_o, c_i, k_y, k_x]\, g[n, c_o, y, x, t]
        \quad\text{where } s y + k_y - p = i_y,\ s x + k_x - p = i_x

.. math::

    \frac{\partial\mathcal L}{\partial w[c_o, c_i, k_y, k_x]} =
        \sum_{n, y, x, t} g[n, c_o, y, x, t]\, x[n, c_i, s y + k_y - p, s x + k_x - p, t]

Strategies (``strategy=``; tested against ``"plain"`` and finite differences in
``tests/test_op_conv.py``; CUDA twin :mod:`pysrm.ops.conv_cuda`, tested under the CUDA simulator):
``"plain"`` is the definition as direct loops (any stride).  Sparse inputs (a
:class:`~pysrm.events.SpikeEvents` or a dense array with a density under
the setting ``conv_event_density_threshold`` (:mod:`pysrm.settings`)) take the ``"event"`` paths that scatter every input event into the ``KH x KW x Co`` outputs it
reaches (forward) and gather the matching gradient entries (weight gradient).

Dense inputs with stride 1 use BLAS products (``"blas"``) (:mod:`pysrm.ops._blas_call`). With
``x`` zero-padded to ``(Ci, Hp, Wp, T)`` and flattened, the input of output
position ``(y, x, t)`` under kernel offset ``(k_y, k_x)`` lies a fixed distance
``(k_y Wp + k_x) T`` after the flat position ``(y Wp + x) T + t``, so for each
offset the sum over ``c_i`` is one matrix product over many positions at once:

.. math::

    a[:, y, x_0{:}x_1, :] \mathrel{+}= W_{k_y k_x}\; X_{\text{flat}}[:,\,
        (y + k_y) Wp\,T + (x_0 + k_x) T \;:\; \ldots + (x_1 - x_0) T]

(``W_{k_y k_x}`` the ``Co x Ci`` slice of ``w``).  The input gradient is the
same product for the conv of ``g`` with the flipped, transposed kernel and padding
``K - 1 - p``; the weight gradient is, per offset, ``G X_{k}^T`` summed over the
batch, with ``g`` laid out on the padded width (zero in the ``Wp - Wo``
columns that wrap into the next row).  These paths sum in BLAS's order: equal to
the direct loops (used for stride > 1) to float rounding (tested).
Everything is exact and checked by finite differences.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import settings
from .._checks import float_array, same_dtype
from ..backend import is_device_array
from ..events import SpikeEvents
from ._primitives import decode_neuron_cpu, event_taps_cpu, output_index_cpu
from ._util import check_5d, check_strategy
from ._blas_call import NO_TRANS, TRANS, gemm
from .dense import as_dense, as_events, events_if_sparse


def _pair(name, v):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        a, b = v
    else:
        a = b = v
    for q in (a, b):
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise TypeError(f"{name} must be an integer or a pair of integers, got {v!r}")
    return int(a), int(b)


def conv_output_size(h: int, w: int, kernel, stride=1, padding=0):
    """Spatial output size ``(Ho, Wo)`` of :func:`conv` on an ``h x w`` input.

    ``Ho = (h + 2 p_y - k_y) // s_y + 1`` (the same for ``Wo``).

    Parameters
    ----------
    h, w : int
        The input's height and width (pixels).
    kernel : int or pair of int
        The kernel's ``(KH, KW)``.
    stride : int or pair of int, default 1
        The stride ``(s_y, s_x)``.
    padding : int or pair of int, default 0
        The zero padding ``(p_y, p_x)``.

    Returns
    -------
    tuple of int
        ``(Ho, Wo)`` (may be < 1 when the kernel does not fit).

    Raises
    ------
    TypeError
        ``kernel``, ``stride`` or ``padding`` is not an integer or a pair of integers.
    ValueError
        ``kernel``, ``stride`` or ``padding`` is a sequence whose length is not 2.
    """
    kh, kw = _pair("kernel", kernel)
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    return (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1


@njit(parallel=True, cache=True)
def _conv_dense_cpu(x, w, out, sy, sx, py, px):
    N, Ci, H, W, T = x.shape
    Co, _, KH, KW = w.shape
    Ho, Wo = out.shape[2], out.shape[3]
    for job in prange(N * Co):
        n = job // Co
        co = job % Co
        for ci in range(Ci):
            for ky in range(KH):
                for kx in range(KW):
                    wv = w[co, ci, ky, kx]
                    for oy in range(Ho):
                        iy = oy * sy + ky - py
                        if iy < 0 or iy >= H:
                            continue
                        for ox in range(Wo):
                            ix = ox * sx + kx - px
                            if ix < 0 or ix >= W:
                                continue
                            for t in range(T):
                                out[n, co, oy, ox, t] += wv * x[n, ci, iy, ix, t]


#: channel, row and column of the flat input index ``idx = c*H*W + y*W + x`` (the event paths' decoding,
#: pysrm.ops._primitives.decode_neuron)
_decode = decode_neuron_cpu
#: the output position ``o`` with ``stride*o + k - pad == i``, or -1 when there is none
#: (pysrm.ops._primitives.output_index)
_output_index = output_index_cpu


@njit(parallel=True, cache=True)
def _conv_events_cpu(offsets, neuron, time, value, wT, outT, H, W, sy, sx, py, px):
    # wT: (Ci, KH, KW, Co); outT: (N, Ho, Wo, T, Co)
    N = offsets.shape[0] - 1
    KH, KW, Co = wT.shape[1], wT.shape[2], wT.shape[3]
    Ho, Wo = outT.shape[1], outT.shape[2]
    for n in prange(N):
        for k in range(offsets[n], offsets[n + 1]):
            ci, iy, ix = _decode(neuron[k], H, W)
            t = time[k]
            v = value[k]
            # the taps written out (event_taps' loops, the same order): a scatter over event_taps' list
            # made this forward 5-10 % slower (37-41 vs 42 ms, N-MNIST conv1 shapes at batch 8)
            for ky in range(KH):
                oy = _output_index(iy, py, ky, sy, Ho)
                if oy < 0:
                    continue
                for kx in range(KW):
                    ox = _output_index(ix, px, kx, sx, Wo)
                    if ox < 0:
                        continue
                    for co in range(Co):
                        outT[n, oy, ox, t, co] += v * wT[ci, ky, kx, co]


@njit(parallel=True, cache=True)
def _conv_input_grad_cpu(g, w, gx, sy, sx, py, px):
    N, Co, Ho, Wo, T = g.shape
    _, Ci, KH, KW = w.shape
    H, W = gx.shape[2], gx.shape[3]
    for job in prange(N * Ci):
        n = job // Ci
        ci = job % Ci
        for co in range(Co):
            for ky in range(KH):
                for kx in range(KW):
                    wv = w[co, ci, ky, kx]
                    for oy in range(Ho):
                        iy = oy * sy + ky - py
                        if iy < 0 or iy >= H:
                            continue
                        for ox in range(Wo):
                            ix = ox * sx + kx - px
                            if ix < 0 or ix >= W:
                                continue
                            for t in range(T):
                                gx[n, ci, iy, ix, t] += wv * g[n, co, oy, ox, t]


@njit(parallel=True, cache=True, fastmath={"reassoc"})  # reassociation lets the time reduction vectorise
def _conv_weight_grad_dense_cpu(g, x, gw, sy, sx, py, px):
    N, Co, Ho, Wo, T = g.shape
    _, Ci, KH, KW = gw.shape
    H, W = x.shape[2], x.shape[3]
    for job in prange(Co * Ci):
        co = job // Ci
        ci = job % Ci
        for ky in range(KH):
            for kx in range(KW):
                acc = 0.0
                for n in range(N):
                    for oy in range(Ho):
                        iy = oy * sy + ky - py
                        if iy < 0 or iy >= H:
                            continue
                        for ox in range(Wo):
                            ix = ox * sx + kx - px
                            if ix < 0 or ix >= W:
                                continue
                            for t in range(T):
                                acc += g[n, co, oy, ox, t] * x[n, ci, iy, ix, t]
                gw[co, ci, ky, kx] = acc


@njit(parallel=True, cache=True)
def _conv_weight_grad_events_cpu(offsets, neuron, time, value, gT, gwT, H, W, sy, sx, py, px):
    # gT: (N, Ho, Wo, T, Co); gwT: (chunks, Ci, KH, KW, Co), one buffer per chunk of the batch
    N = offsets.shape[0] - 1
    chunks = gwT.shape[0]
    KH, KW, Co = gwT.shape[2], gwT.shape[3], gwT.shape[4]
    Ho, Wo = gT.shape[1], gT.shape[2]
    step = (N + chunks - 1) // chunks
    for c in prange(chunks):
        taps = np.empty((KH * KW, 4), dtype=np.int64)
        for n in range(c * step, min(N, (c + 1) * step)):
            for k in range(offsets[n], offsets[n + 1]):
                ci, iy, ix = _decode(neuron[k], H, W)
                t = time[k]
                v = value[k]
                for j in range(event_taps_cpu(iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, taps)):
                    ky, kx, oy, ox = taps[j, 0], taps[j, 1], taps[j, 2], taps[j, 3]
                    for co in range(Co):
                        gwT[c, ci, ky, kx, co] += v * gT[n, oy, ox, t, co]


@njit(parallel=True, cache=True)
def _channels_cpu(first, last, to_last):
    # between the layouts first (N, C, H, W, T) and last (N, H, W, T, C): last[n, y, x, t, c] =
    # first[n, c, y, x, t] when to_last, else the other way round; per position one (T, C) block in
    # cache, in parallel over rows
    N, C, H, W, T = first.shape
    for job in prange(N * H):
        n = job // H
        y = job % H
        for x in range(W):
            blk = last[n, y, x]
            for c in range(C):
                r = first[n, c, y, x]
                if to_last:
                    for t in range(T):
                        blk[t, c] = r[t]
                else:
                    for t in range(T):
                        r[t] = blk[t, c]


@njit(parallel=True, cache=True)
def _pad_flat_cpu(x, py, px, out, S):
    # out[n, c*S : (c+1)*S] = x[n, c] zero-padded by (py, px) on both sides, flattened as (Hp, Wp, T);
    # the tail after the last channel is zero (what the wide products below read past the end)
    N, C, H, W, T = x.shape
    Wp = W + 2 * px
    for job in prange(N * C):
        n = job // C
        c = job % C
        o = out[n, c * S:(c + 1) * S]
        o[:] = 0.0
        for y in range(H):
            for xx in range(W):
                b = ((y + py) * Wp + xx + px) * T
                o[b:b + T] = x[n, c, y, xx]
        if c == C - 1:
            out[n, C * S:] = 0.0


@njit(parallel=True, cache=True)
def _conv_gemm_cpu(xp, S, wk, Ci, KW, out, Wp, cols):
    # out[n, :, oy, ox] = sum over the KH*KW offsets k of wk[k] (Co x Ci) times the padded input at
    # (oy + ky, ox + kx), for stride 1: in the flat padded layout (Hp, Wp, T) an output position's
    # input is a fixed distance (ky*Wp + kx)*T from position (oy, ox) of the output row's start, so
    # each offset is one BLAS product over `cols` consecutive output columns (cols*T rows) at once.
    # One task per sample, output row and chunk of columns: its (cols*T, Co) product stays in cache
    # over the offsets.
    N = xp.shape[0]
    _, Co, Ho, Wo, T = out.shape
    K = wk.shape[0]
    nch = (Wo + cols - 1) // cols
    for job in prange(N * Ho * nch):
        n = job // (Ho * nch)
        oy = (job // nch) % Ho
        ox0 = (job % nch) * cols
        nc = min(Wo, ox0 + cols) - ox0
        M = nc * T
        wide = np.empty(Co * M, dtype=out.dtype)
        for k in range(K):
            off = ((k // KW + oy) * Wp + k % KW + ox0) * T
            # column-major: wide^T (M x Co) (+)= X_k (M x Ci, ld S) W_k^T (Ci x Co, ld Ci)
            gemm(NO_TRANS, NO_TRANS, M, Co, Ci, xp[n, off:], S, wk[k], Ci, wide, M, 0.0 if k == 0 else 1.0)
        for c in range(Co):
            for q in range(nc):
                out[n, c, oy, ox0 + q] = wide[c * M + q * T:c * M + (q + 1) * T]




@njit(parallel=True, cache=True)
def _wide_cpu(g, Wp, out):
    # out[n, co*L : (co+1)*L] = g[n, co] in the wide layout (Ho, Wp, T), zero in the columns ox >= Wo
    N, Co, Ho, Wo, T = g.shape
    L = Ho * Wp * T
    for job in prange(N * Co):
        n = job // Co
        co = job % Co
        o = out[n, co * L:(co + 1) * L]
        for oy in range(Ho):
            for ox in range(Wp):
                b = (oy * Wp + ox) * T
                if ox < Wo:
                    o[b:b + T] = g[n, co, oy, ox]
                else:
                    o[b:b + T] = 0.0


@njit(parallel=True, cache=True)
def _conv_wgrad_gemm_cpu(xp, S, gwide, Co, Ci, Wp, T, KW, gwk):
    # gwk[k] (Co x Ci) = sum over samples n of G_n (Co x L) X_{n,k}^T (L x Ci): per offset k one BLAS
    # product per sample, added in sample order (one task per offset: the same result with any
    # number of threads)
    N = xp.shape[0]
    K = gwk.shape[0]
    L = gwide.shape[1] // Co
    for k in prange(K):
        off = ((k // KW) * Wp + k % KW) * T
        for n in range(N):
            # column-major: gwk[k]^T (Ci x Co, ld Ci) (+)= X^T (Ci x L; X is L x Ci, ld S) G (L x Co, ld L)
            gemm(TRANS, NO_TRANS, Ci, Co, L, xp[n, off:], S, gwide[n], L, gwk[k], Ci, 0.0 if n == 0 else 1.0)


def _padded(x, py, px, KW):
    """``x`` zero-padded and flattened per sample for the wide products: ``(N, C*S + (KW-1)*T)``, S."""
    N, C, H, W, T = x.shape
    S = (H + 2 * py) * (W + 2 * px) * T
    out = np.empty((N, C * S + (KW - 1) * T), dtype=x.dtype)
    _pad_flat_cpu(np.ascontiguousarray(x), py, px, out, S)
    return out, S


def _conv_gemm(w, x, py, px, ho, wo):
    """Stride-1 conv of a dense ``x`` as BLAS products (see _conv_gemm_cpu)."""
    N, Ci, H, W, T = x.shape
    Co, _, KH, KW = w.shape
    xp, S = _padded(x, py, px, KW)
    wk = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(KH * KW, Co * Ci)
    out = np.empty((N, Co, ho, wo, T), dtype=w.dtype)
    _conv_gemm_cpu(xp, S, wk, Ci, KW, out, W + 2 * px, max(1, settings.current().gemm_rows // T))
    return out


def _check(w, x, stride, padding):
    float_array("w", w, ndim=4)
    if isinstance(x, SpikeEvents):
        shape, dtype = x.shape, x.dtype
    else:
        check_5d("x", x)
        shape, dtype = x.shape, x.dtype
    if w.shape[1] != shape[1]:
        raise ValueError(f"conv weight expects {w.shape[1]} input channels but x of shape {shape} has {shape[1]}")
    if w.dtype != dtype:
        raise TypeError(f"w has dtype {w.dtype} but x has dtype {dtype}; they must match")
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    if sy < 1 or sx < 1 or py < 0 or px < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got stride={stride!r}, padding={padding!r}")
    ho, wo = conv_output_size(shape[2], shape[3], w.shape[2:], (sy, sx), (py, px))
    if ho < 1 or wo < 1:
        raise ValueError(f"conv kernel {w.shape[2:]} with padding {padding!r} does not fit input of "
                         f"spatial size {shape[2:4]}")
    return shape, (sy, sx, py, px), (ho, wo)


#: strategies of :func:`conv` / :func:`conv_backward`
STRATEGIES = ("auto", "plain", "event", "blas")


def _resolve(strategy, x, sy, sx):
    check_strategy(strategy, STRATEGIES)
    if strategy == "auto":
        ev = events_if_sparse(x, "conv")
        if isinstance(ev, SpikeEvents):
            return "event", ev
        return ("blas" if sy == sx == 1 else "plain"), x
    if strategy == "blas" and not (sy == sx == 1):
        raise ValueError(f"strategy 'blas' needs stride 1, got stride ({sy}, {sx}); use 'plain' or 'auto'")
    return strategy, (as_events(x) if strategy == "event" else as_dense(x))


def conv(w, x, stride=1, padding=0, strategy: str = "auto"):
    r"""Per-time-bin 2-D convolution (cross-correlation, SLAYER's ``conv``).

    .. math::

        a[n, c_o, y, x, t] = \sum_{c_i, k_y, k_x} w[c_o, c_i, k_y, k_x]\;
            x[n, c_i, s y + k_y - p, s x + k_x - p, t]

    with out-of-range input positions reading as zero.

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (Co, Ci, KH, KW)
        The weights, float32 or float64.
    x : ndarray, SpikeEvents or CUDA device array, shape (N, Ci, H, W, T)
        The input, the dtype of ``w``.
    stride, padding : int or pair of int
        The stride ``s`` (>= 1, default 1) and zero padding ``p`` (>= 0, default 0), in pixels.
    strategy : {"auto", "plain", "event", "blas"}, default "auto"
        ``"plain"`` (the direct loops of the definition, any stride), ``"event"`` (scatter each input
        event), ``"blas"`` (stride 1: one BLAS product per kernel offset) or ``"auto"`` (event for a
        SpikeEvents or at most the setting ``conv_event_density_threshold`` (:mod:`pysrm.settings`)
        non-zero bins, else blas for stride 1, else plain).  Ignored for device arrays.

    Returns
    -------
    ndarray or CUDA device array, shape (N, Co, Ho, Wo, T)
        The synaptic input ``a`` (:func:`conv_output_size`), dtype of ``w``.

    Raises
    ------
    TypeError
        ``w`` or ``x`` is not float32/float64, their dtypes differ, or ``stride``/``padding`` is not an
        integer or pair of integers.
    ValueError
        ``w`` is not 4-D or ``x`` not 5-D, ``Ci`` differs, ``stride < 1`` or ``padding < 0`` (or not a
        pair), the kernel does not fit the padded input, non-finite values, an unknown strategy, or
        ``"blas"`` with a stride above 1.

    See Also
    --------
    conv_backward : the adjoint.
    conv_output_size : ``(Ho, Wo)``.
    """
    if is_device_array(w):
        from . import conv_cuda
        return conv_cuda.conv(w, x, stride, padding)
    shape, (sy, sx, py, px), (ho, wo) = _check(w, x, stride, padding)
    N, _, H, W, T = shape
    Co = w.shape[0]
    strategy, x = _resolve(strategy, x, sy, sx)
    if strategy == "event":
        outT = np.zeros((N, ho, wo, T, Co), dtype=w.dtype)
        _conv_events_cpu(x.offsets, x.neuron, x.time, x.value, np.ascontiguousarray(w.transpose(1, 2, 3, 0)),
                         outT, H, W, sy, sx, py, px)
        out = np.empty((N, Co, ho, wo, T), dtype=w.dtype)
        _channels_cpu(out, outT, False)
        return out
    if strategy == "blas":
        return _conv_gemm(w, x, py, px, ho, wo)
    out = np.zeros((N, Co, ho, wo, T), dtype=w.dtype)
    _conv_dense_cpu(np.ascontiguousarray(x), np.ascontiguousarray(w), out, sy, sx, py, px)
    return out


def conv_backward(w, x, grad, stride=1, padding=0, need_input_grad: bool = True, strategy: str = "auto"):
    r"""Gradients of :func:`conv` (the adjoint).

    .. math::

        \frac{\partial\mathcal L}{\partial x[n, c_i, i_y, i_x, t]} =
            \sum_{c_o, k_y, k_x} w[c_o, c_i, k_y, k_x]\, g[n, c_o, y, x, t]
            \quad\text{where } s y + k_y - p = i_y,\ s x + k_x - p = i_x

    .. math::

        \frac{\partial\mathcal L}{\partial w[c_o, c_i, k_y, k_x]} =
            \sum_{n, y, x, t} g[n, c_o, y, x, t]\, x[n, c_i, s y + k_y - p, s x + k_x - p, t]

    Parameters
    ----------
    w : ndarray or CUDA device array, shape (Co, Ci, KH, KW)
        The weights, float32 or float64.
    x : ndarray, SpikeEvents or CUDA device array, shape (N, Ci, H, W, T)
        The forward's input, the dtype of ``w``.
    grad : ndarray or CUDA device array, shape (N, Co, Ho, Wo, T)
        The loss gradient ``g`` with respect to :func:`conv`'s output, the dtype of ``w``.
    stride, padding : int or pair of int
        As given to :func:`conv` (default 1 and 0).
    need_input_grad : bool, default True
        False skips the input gradient (e.g. for the first layer).
    strategy : {"auto", "plain", "event", "blas"}, default "auto"
        As for :func:`conv` (with ``"event"`` the input gradient is the BLAS or plain one: events do not
        help there).  Ignored for device arrays.

    Returns
    -------
    grad_x : ndarray or None
        Shape (N, Ci, H, W, T), dtype of ``w``; None when ``need_input_grad`` is False.
    grad_w : ndarray
        Shape and dtype of ``w``.

    Raises
    ------
    TypeError
        As :func:`conv`; ``grad`` is not float32/float64 or its dtype differs from ``w``'s.
    ValueError
        As :func:`conv`; ``grad`` does not have the conv output shape or holds non-finite values.

    See Also
    --------
    conv : the forward.
    """
    if is_device_array(w):
        from . import conv_cuda
        return conv_cuda.conv_backward(w, x, grad, stride, padding, need_input_grad)
    shape, (sy, sx, py, px), (ho, wo) = _check(w, x, stride, padding)
    N, Ci, H, W, T = shape
    Co = w.shape[0]
    float_array("grad", grad)
    if grad.shape != (N, Co, ho, wo, T):
        raise ValueError(f"grad has shape {grad.shape}; expected the conv output shape {(N, Co, ho, wo, T)}")
    same_dtype("grad", grad, "w", w)
    g = np.ascontiguousarray(grad)
    strategy, x = _resolve(strategy, x, sy, sx)
    if strategy == "event":
        chunks = max(1, min(N // 2, settings.current().conv_wgrad_parts))
        gwT = np.zeros((chunks, Ci) + w.shape[2:] + (Co,), dtype=w.dtype)
        gT = np.empty((N, ho, wo, T, Co), dtype=w.dtype)
        _channels_cpu(g, gT, True)
        _conv_weight_grad_events_cpu(x.offsets, x.neuron, x.time, x.value, gT, gwT, H, W, sy, sx, py, px)
        grad_w = np.ascontiguousarray(gwT.sum(axis=0).transpose(3, 0, 1, 2))
    elif strategy == "blas":
        KH, KW = w.shape[2:]
        xp, S = _padded(x, py, px, KW)
        Wp = W + 2 * px
        gwide = np.empty((N, Co * ho * Wp * T), dtype=w.dtype)
        _wide_cpu(g, Wp, gwide)
        gwk = np.empty((KH * KW, Co * Ci), dtype=w.dtype)
        _conv_wgrad_gemm_cpu(xp, S, gwide, Co, Ci, Wp, T, KW, gwk)
        grad_w = np.ascontiguousarray(gwk.reshape(KH, KW, Co, Ci).transpose(2, 3, 0, 1))
    else:
        grad_w = np.zeros_like(w)
        _conv_weight_grad_dense_cpu(g, np.ascontiguousarray(x), grad_w, sy, sx, py, px)
    grad_x = conv_input_grad(w, g, stride, padding, (H, W), plain=strategy == "plain") if need_input_grad else None
    return grad_x, grad_w


def conv_input_grad(w, g, stride, padding, input_hw, plain: bool = False):
    r"""The input gradient of :func:`conv` (the transposed conv).

    ``grad_x[n, ci, iy, ix, t] = sum_{co, ky, kx} w[co, ci, ky, kx] g[n, co, y, x, t]`` over the output
    positions ``(y, x)`` with ``s y + k_y - p = i_y`` (same for x).  Arrays are not checked.

    Parameters
    ----------
    w : ndarray, shape (Co, Ci, KH, KW)
        The weights, float32 or float64.
    g : ndarray, shape (N, Co, Ho, Wo, T)
        The loss gradient with respect to the conv output, the dtype of ``w``.
    stride, padding : int or pair of int
        As given to :func:`conv`.
    input_hw : tuple of int
        The input's ``(H, W)``.
    plain : bool, default False
        True forces the direct loops.

    Returns
    -------
    ndarray, shape (N, Ci, H, W, T)
        The input gradient, dtype of ``w``.

    Raises
    ------
    TypeError
        ``stride`` or ``padding`` is not an integer or a pair of integers.
    ValueError
        ``stride`` or ``padding`` is a sequence whose length is not 2.

    Notes
    -----
    Stride 1 (unless ``plain``): the conv of ``g`` with the flipped, transposed kernel and padding
    ``K - 1 - p``, as BLAS products; else the direct loops.
    """
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    H, W = input_hw
    KH, KW = w.shape[2:]
    g = np.ascontiguousarray(g)
    if not plain and sy == sx == 1 and py <= KH - 1 and px <= KW - 1:
        return _conv_gemm(np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)), g,
                          KH - 1 - py, KW - 1 - px, H, W)
    grad_x = np.zeros((g.shape[0], w.shape[1], H, W, g.shape[4]), dtype=w.dtype)
    _conv_input_grad_cpu(g, np.ascontiguousarray(w), grad_x, sy, sx, py, px)
    return grad_x
