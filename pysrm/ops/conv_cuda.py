r"""CUDA kernels of the 2-D convolution synapse (see :mod:`pysrm.ops.conv`).

.. math::

    a[n, c_o, y, x, t] = \sum_{c_i, k_y, k_x} w[c_o, c_i, k_y, k_x]\, x[n, c_i, s y + k_y - p, s x + k_x - p, t]

with the input gradient (transposed convolution) and the weight gradient
(correlation of gradient and input) of the CPU module's docstring.

Dense input: implicit-GEMM tiled shared-memory products (:mod:`pysrm.ops._gemm_cuda`):

* forward (mode 3): ``C[n] (Co x Ho*Wo*T) = W (Co x Ci*KH*KW) . im2col(x[n])``;
* input gradient (mode 4): ``C[n] (Ci x H*W*T) = W^T . col2im-gather(g[n])``
  (each input position gathers the ``(co, ky, kx)`` outputs it reached -- no atomics);
* weight gradient (mode 5): ``C (Co x Ci*KH*KW) = sum_n g[n] (Co x Ho*Wo*T) . im2col(x[n])^T``,
  split over (sample, K tile) blocks and reduced deterministically.

The im2col operand is never stored; its entries are read through the index map.

Sparse input (:class:`~pysrm.events_cuda.DeviceSpikeEvents`), event driven (the event's neuron decoded and the
outputs it reaches found by the CPU event paths' primitives ``decode_neuron`` / ``output_index`` of
``pysrm.ops._primitives``):

* forward: one thread per ``(event, ky, kx, co)`` (``co`` fastest) scatters
  ``value * w[co, ci, ky, kx]`` into ``out^T[n, oy, ox, t, co]`` (atomic add,
  coalesced over ``co``); transposed back to ``(N, Co, Ho, Wo, T)`` through
  shared-memory tiles;
* weight gradient: one block per chunk of consecutive events, threads striding
  over ``j = (ky, kx, co)``; each thread sums ``value * g^T[n, oy, ox, t, co]``
  in a register and flushes it into ``grad_w^T[ci, ky, kx, co]`` (atomic add)
  when the event's channel changes (events are sorted by neuron, so by channel);
* input gradient (only when asked): the dense product of mode 4.

Through cuBLAS where available (:mod:`pysrm.ops._cublas_cuda`: im2col / col2im kernels around
strided-batched GEMMs), else the Numba implicit GEMM.  For the fused blocks of :mod:`pysrm.blocks.cuda`:
``conv(..., channels_last=True)`` returns the event path's ``(N, Ho, Wo, T, Co)`` sum untransposed,
``keep_col=True`` also returns the im2col matrix (cuBLAS; reused by the weight gradient),
``conv_backward`` takes the output gradient channels-last (``grad_channels_last``) and adds the weight
gradient to ``accumulate_into``.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .. import cuda as dev
from ..backend import is_device_array
from .. import settings
from ..events_cuda import DeviceSpikeEvents
from . import _gemm_cuda as G
from . import _primitives_cuda as prim
from ._records import EventList
from .conv import _pair, conv_output_size


@cuda.jit(cache=True)
def _conv_events_kernel(sample, neuron, time, value, wT, outT, H, W, sy, sx, py, px):
    # wT: (Ci, KH, KW, Co); outT: (N, Ho, Wo, T, Co)
    E = neuron.shape[0]
    KH, KW, Co = wT.shape[1], wT.shape[2], wT.shape[3]
    Ho, Wo = outT.shape[1], outT.shape[2]
    per = KH * KW * Co
    for idx in range(cuda.grid(1), E * per, cuda.gridsize(1)):
        k = idx // per
        j = idx - k * per
        ky = j // (KW * Co)
        rem = j - ky * (KW * Co)
        kx = rem // Co
        co = rem - kx * Co
        ci, iy, ix = prim.decode_neuron(neuron[k], H, W)
        oy = prim.output_index(iy, py, ky, sy, Ho)
        ox = prim.output_index(ix, px, kx, sx, Wo)
        if oy < 0 or ox < 0:
            continue
        cuda.atomic.add(outT, (sample[k], oy, ox, time[k], co), value[k] * wT[ci, ky, kx, co])


@cuda.jit(cache=True)
def _conv_events_wgrad_kernel(ev, gT, gwT, g, chunk, zero):
    # ev: EventList of the input events; gT: (N, Ho, Wo, T, Co); gwT: (Ci, KH, KW, Co); g: ProductGeometry
    sample, neuron, time, value = ev.sample, ev.neuron, ev.time, ev.value
    H, W, sy, sx, py, px = g.H, g.W, g.sy, g.sx, g.py, g.px
    E = neuron.shape[0]
    KH, KW, Co = gwT.shape[1], gwT.shape[2], gwT.shape[3]
    Ho, Wo = gT.shape[1], gT.shape[2]
    per = KH * KW * Co
    nchunks = (E + chunk - 1) // chunk
    for c in range(cuda.blockIdx.x, nchunks, cuda.gridDim.x):
        k0 = c * chunk
        k1 = k0 + chunk
        if k1 > E:  # (no min(): builtin min/max do not compile for every Numba CUDA target)
            k1 = E
        for j in range(cuda.threadIdx.x, per, cuda.blockDim.x):
            ky = j // (KW * Co)
            rem = j - ky * (KW * Co)
            kx = rem // Co
            co = rem - kx * Co
            cur = neuron[k0] // (H * W)
            acc = zero
            for k in range(k0, k1):
                ci, iy, ix = prim.decode_neuron(neuron[k], H, W)
                if ci != cur:
                    cuda.atomic.add(gwT, (cur, ky, kx, co), acc)
                    acc = zero
                    cur = ci
                oy = prim.output_index(iy, py, ky, sy, Ho)
                ox = prim.output_index(ix, px, kx, sx, Wo)
                if oy < 0 or ox < 0:
                    continue
                acc += value[k] * gT[sample[k], oy, ox, time[k], co]
            cuda.atomic.add(gwT, (cur, ky, kx, co), acc)


def _check(w, x, stride, padding):
    if len(w.shape) != 4:
        raise ValueError(f"w must have 4 dimensions, got shape {tuple(w.shape)}")
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    if not isinstance(x, DeviceSpikeEvents) and not is_device_array(x):
        raise TypeError(f"x must be a device array or DeviceSpikeEvents when w is on the device, "
                        f"got {type(x).__name__}; move it with pysrm.cuda.to_device")
    if w.shape[1] != shape[1]:
        raise ValueError(f"conv weight expects {w.shape[1]} input channels but x of shape {shape} has {shape[1]}")
    if w.dtype != x.dtype:
        raise TypeError(f"w has dtype {w.dtype} but x has dtype {x.dtype}; they must match")
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    if sy < 1 or sx < 1 or py < 0 or px < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got stride={stride!r}, padding={padding!r}")
    ho, wo = conv_output_size(shape[2], shape[3], tuple(w.shape[2:]), (sy, sx), (py, px))
    if ho < 1 or wo < 1:
        raise ValueError(f"conv kernel {tuple(w.shape[2:])} with padding {padding!r} does not fit input of "
                         f"spatial size {shape[2:4]}")
    return shape, (sy, sx, py, px), (ho, wo)


def conv(w, x, stride=1, padding=0, channels_last: bool = False, keep_col: bool = False):
    """Device version of :func:`pysrm.ops.conv.conv`; returns ``(N, Co, Ho, Wo, T)``, or with
    ``channels_last`` for an event input the ``(N, Ho, Wo, T, Co)`` sum.  With ``keep_col`` returns
    ``(out, col)``: ``col`` the im2col matrix of a dense input on cuBLAS (else None), for
    :func:`conv_backward`."""
    shape, (sy, sx, py, px), (ho, wo) = _check(w, x, stride, padding)
    N, Ci, H, W, T = shape
    Co, _, KH, KW = w.shape
    dt = np.dtype(w.dtype)
    col = None
    if isinstance(x, DeviceSpikeEvents):
        outT = dev.zeros((N, ho, wo, T, Co), dt)
        if x.n_events:
            wT = dev.transpose2d(w, Co, Ci * KH * KW).reshape(Ci, KH, KW, Co)
            dev.launch(_conv_events_kernel, x.n_events * KH * KW * Co, x.sample, x.neuron, x.time, x.value, wT,
                       outT, H, W, sy, sx, py, px)
        if channels_last:
            out = outT
        else:
            out = dev.transpose(outT.reshape(N, ho * wo * T, Co)).reshape(N, Co, ho, wo, T)
    else:
        geom = G.geometry(Ci, H, W, Co, ho, wo, KH, KW, sy, sx, py, px, T)
        backend = dev.gemm_backend()
        if backend == "cublas" and keep_col:
            from . import _cublas_cuda
            col = _cublas_cuda.im2col(x, geom, N, dt)
        out = G.gemm(G.CONV_FWD, w, x, Co, ho * wo * T, Ci * KH * KW, N, geom, dt, backend=backend, col=col)
        out = out.reshape(N, Co, ho, wo, T)
    return (out, col) if keep_col else out


def conv_backward(w, x, grad, stride=1, padding=0, need_input_grad: bool = True, accumulate_into=None,
                  grad_channels_last=None, col=None):
    """Device version of :func:`pysrm.ops.conv.conv_backward`: ``(grad_x or None, grad_w)``.

    ``accumulate_into``: a device array like ``w`` to which ``grad_w`` is added (and returned).
    ``grad_channels_last``: the output gradient as ``(N, Ho, Wo, T, Co)`` (event inputs read it directly;
    ``grad`` may then be None unless the input gradient is asked for).  ``col``: the im2col matrix from
    :func:`conv` with ``keep_col``."""
    shape, (sy, sx, py, px), (ho, wo) = _check(w, x, stride, padding)
    N, Ci, H, W, T = shape
    Co, _, KH, KW = w.shape
    if grad is not None:
        if tuple(grad.shape) != (N, Co, ho, wo, T):
            raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the conv output shape {(N, Co, ho, wo, T)}")
        if grad.dtype != w.dtype:
            raise TypeError(f"grad has dtype {grad.dtype} but w has dtype {w.dtype}; they must match")
    elif grad_channels_last is None or need_input_grad:
        raise ValueError("conv_backward: grad is needed (no channels-last gradient, or the input gradient asked)")
    if grad_channels_last is not None and (tuple(grad_channels_last.shape) != (N, ho, wo, T, Co)
                                           or grad_channels_last.dtype != w.dtype):
        raise ValueError(f"grad_channels_last must be {(N, ho, wo, T, Co)} {w.dtype}")
    if accumulate_into is not None and (tuple(accumulate_into.shape) != tuple(w.shape)
                                        or accumulate_into.dtype != w.dtype):
        raise ValueError(f"accumulate_into must be {tuple(w.shape)} {w.dtype}")
    dt = np.dtype(w.dtype)
    geom = G.geometry(Ci, H, W, Co, ho, wo, KH, KW, sy, sx, py, px, T)
    Kc = Ci * KH * KW
    if isinstance(x, DeviceSpikeEvents):
        gwT = dev.zeros((Ci, KH, KW, Co), dt)
        if x.n_events:
            if grad_channels_last is not None:
                gT = grad_channels_last
            else:
                gT = dev.transpose(grad.reshape(N, Co, ho * wo * T)).reshape(N, ho, wo, T, Co)
            per = KH * KW * Co
            chunk = settings.current().cuda_event_chunk
            blocks = min(dev.ceil_div(x.n_events, chunk), dev.current_launch().max_blocks)
            tpb = min(dev.current_launch().threads_per_block, max(32 if not dev.SIMULATOR else 1, per))
            dev.launch_grid(_conv_events_wgrad_kernel, blocks, tpb, EventList(x.sample, x.neuron, x.time, x.value), gT,
                            gwT, geom, chunk, dt.type(0))
        if accumulate_into is not None:
            grad_w = dev.transpose2d(gwT, Kc, Co, out=accumulate_into, accumulate=True)
        else:
            grad_w = dev.transpose2d(gwT, Kc, Co)
    else:
        if grad is None:
            grad = dev.transpose(grad_channels_last.reshape(N, ho * wo * T, Co)).reshape(N, Co, ho, wo, T)
        grad_w = G.gemm(G.CONV_GW, grad, x, Co, Kc, ho * wo * T, N, geom, dt, accumulate_into=accumulate_into,
                        col=col)
    grad_x = None
    if need_input_grad:
        grad_x = G.gemm(G.CONV_GX, w, grad, Ci, H * W * T, Co * KH * KW, N, geom, dt).reshape(shape)
    return grad_x, grad_w.reshape(Co, Ci, KH, KW)
