r"""CUDA kernels of the fully connected synapse (see :mod:`pysrm.ops.dense`).

.. math::

    a[n, o, t] = \sum_i w[o, i]\, x[n, i, t], \qquad
    \frac{\partial\mathcal L}{\partial x[n,i,t]} = \sum_o w[o,i]\, g[n,o,t], \qquad
    \frac{\partial\mathcal L}{\partial w[o,i]} = \sum_{n,t} g[n,o,t]\, x[n,i,t]

Dense input (a device array ``(N, C, H, W, T)``): the three products are tiled
shared-memory matrix products (:mod:`pysrm.ops._gemm_cuda`, modes 0-2; the
weight gradient is split over batch and K tiles and reduced deterministically).

Sparse input (a :class:`~pysrm.events_cuda.DeviceSpikeEvents`), event driven:

* forward: one thread per ``(event, o)`` (``o`` fastest) adds
  ``value * w[o, i]`` into ``out^T[n, t, o]`` with an atomic add (coalesced,
  reading the transposed weights ``w^T``); the result is transposed back to
  ``(N, O, T)`` through shared-memory tiles -- cost O(events x O);
* weight gradient: one block per chunk of ``cuda_event_chunk`` (:mod:`pysrm.settings`) consecutive events,
  its threads striding over ``o``; each thread sums ``value * g^T[n, t, o]``
  over the chunk's events in a register and flushes the sum into
  ``grad_w^T[i, o]`` (atomic add) whenever the event's neuron ``i`` changes --
  events of a sample are sorted by neuron, so runs are long and atomics few;
* input gradient (only when asked): the dense product of mode 1.

The dense products run through cuBLAS where available (:mod:`pysrm.ops._cublas_cuda`), else the
Numba GEMM; the transposes of the event paths through cuBLAS ``geam`` or the transpose kernel
(:func:`pysrm.cuda.transpose2d`).  For the fused blocks of :mod:`pysrm.blocks.cuda`: ``dense(...,
time_major=True)`` returns the event path's ``(N, T, O)`` sum untransposed, ``dense_backward`` takes
the output gradient time-major (``grad_time_major``, read by the event weight gradient directly) and
adds the weight gradient to ``accumulate_into`` (the parameter's gradient) instead of returning a new
array.
"""
from __future__ import annotations


import numpy as np
from numba import cuda

from .. import cuda as dev
from ..backend import is_device_array
from .. import settings
from ..events_cuda import DeviceSpikeEvents
from . import _gemm_cuda as G



@cuda.jit(cache=True)
def _dense_events_kernel(sample, neuron, time, value, wT, outT):
    E = neuron.shape[0]
    O = wT.shape[1]
    for idx in range(cuda.grid(1), E * O, cuda.gridsize(1)):
        k = idx // O
        o = idx - k * O
        cuda.atomic.add(outT, (sample[k], time[k], o), value[k] * wT[neuron[k], o])


@cuda.jit(cache=True)
def _dense_events_wgrad_kernel(sample, neuron, time, value, gT, gwT, chunk, zero):
    E = neuron.shape[0]
    O = gT.shape[2]
    nchunks = (E + chunk - 1) // chunk
    for c in range(cuda.blockIdx.x, nchunks, cuda.gridDim.x):
        k0 = c * chunk
        k1 = k0 + chunk
        if k1 > E:  # (no min(): builtin min/max do not compile for every Numba CUDA target)
            k1 = E
        for o in range(cuda.threadIdx.x, O, cuda.blockDim.x):
            cur = neuron[k0]
            acc = zero
            for k in range(k0, k1):
                i = neuron[k]
                if i != cur:
                    cuda.atomic.add(gwT, (cur, o), acc)
                    acc = zero
                    cur = i
                acc += value[k] * gT[sample[k], time[k], o]
            cuda.atomic.add(gwT, (cur, o), acc)


def _check(w, x):
    if len(w.shape) != 2:
        raise ValueError(f"w must have 2 dimensions, got shape {tuple(w.shape)}")
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"x must have 5 dimensions, got shape {shape}")
    n_in = shape[1] * shape[2] * shape[3]
    if w.shape[1] != n_in:
        raise ValueError(f"dense weight has {w.shape[1]} inputs but x of shape {shape} has "
                         f"C*H*W = {n_in} input neurons; expected w of shape (outputs, {n_in})")
    if w.dtype != x.dtype:
        raise TypeError(f"w has dtype {w.dtype} but x has dtype {x.dtype}; they must match")
    if not isinstance(x, DeviceSpikeEvents) and not is_device_array(x):
        raise TypeError(f"x must be a device array or DeviceSpikeEvents when w is on the device, "
                        f"got {type(x).__name__}; move it with pysrm.cuda.to_device")
    return shape


def dense(w, x, time_major: bool = False):
    """Device version of :func:`pysrm.ops.dense.dense`; returns ``(N, O, 1, 1, T)``, or with
    ``time_major`` for an event input the ``(N, T, O)`` sum (dense inputs: ``(N, O, 1, 1, T)`` always)."""
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O, I = w.shape
    dt = np.dtype(w.dtype)
    if isinstance(x, DeviceSpikeEvents):
        outT = dev.zeros((N, T, O), dt)
        if x.n_events:
            wT = dev.transpose2d(w, O, I)
            dev.launch(_dense_events_kernel, x.n_events * O, x.sample, x.neuron, x.time, x.value, wT, outT)
        if time_major:
            return outT
        out = dev.transpose(outT)
    else:
        out = G.gemm(G.DENSE_FWD, w, x, O, T, I, N, G.geometry(I, Co=O, T=T), dt)
    return out.reshape(N, O, 1, 1, T)


def dense_backward(w, x, grad, need_input_grad: bool = True, accumulate_into=None, grad_time_major=None):
    """Device version of :func:`pysrm.ops.dense.dense_backward`: ``(grad_x or None, grad_w)``.

    ``accumulate_into``: a device array like ``w`` (the parameter's gradient) to which ``grad_w`` is
    added (and which is returned as ``grad_w``).  ``grad_time_major``: the output gradient as ``(N, T, O)``
    (then ``grad`` may be None unless the input gradient is asked for)."""
    shape = _check(w, x)
    N, T = shape[0], shape[4]
    O, I = w.shape
    if grad is not None:
        if tuple(grad.shape) != (N, O, 1, 1, T):
            raise ValueError(f"grad has shape {tuple(grad.shape)}; expected the dense output shape {(N, O, 1, 1, T)}")
        if grad.dtype != w.dtype:
            raise TypeError(f"grad has dtype {grad.dtype} but w has dtype {w.dtype}; they must match")
    elif grad_time_major is None or need_input_grad:
        raise ValueError("dense_backward: grad is needed (no time-major gradient, or the input gradient asked)")
    if grad_time_major is not None and (tuple(grad_time_major.shape) != (N, T, O) or grad_time_major.dtype != w.dtype):
        raise ValueError(f"grad_time_major must be {(N, T, O)} {w.dtype}, got {tuple(grad_time_major.shape)} "
                         f"{grad_time_major.dtype}")
    if accumulate_into is not None and (tuple(accumulate_into.shape) != (O, I) or accumulate_into.dtype != w.dtype):
        raise ValueError(f"accumulate_into must be {(O, I)} {w.dtype}")
    dt = np.dtype(w.dtype)
    geom = G.geometry(I, Co=O, T=T)
    if isinstance(x, DeviceSpikeEvents):
        gwT = dev.zeros((I, O), dt)
        if x.n_events:
            gT = grad_time_major if grad_time_major is not None else dev.transpose(grad.reshape(N, O, T))
            chunk = settings.current().cuda_event_chunk
            blocks = min(dev.ceil_div(x.n_events, chunk), dev.current_launch().max_blocks)
            tpb = min(dev.current_launch().threads_per_block, max(32 if not dev.SIMULATOR else 1, O))
            dev.launch_grid(_dense_events_wgrad_kernel, blocks, tpb, x.sample, x.neuron, x.time, x.value, gT, gwT,
                            chunk, dt.type(0))
        if accumulate_into is not None:
            grad_w = dev.transpose2d(gwT, I, O, out=accumulate_into, accumulate=True)
        else:
            grad_w = dev.transpose2d(gwT, I, O)
    else:
        if grad is None:
            grad = dev.transpose(grad_time_major).reshape(N, O, 1, 1, T)
        grad_w = G.gemm(G.DENSE_GW, grad, x, O, I, T, N, geom, dt, accumulate_into=accumulate_into)
    grad_x = None
    if need_input_grad:
        grad_x = G.gemm(G.DENSE_GX, w, grad, I, T, O, N, geom, dt).reshape(shape)
    return grad_x, grad_w.reshape(O, I)
