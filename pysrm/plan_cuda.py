r"""CUDA blocks of the execution plan (:mod:`pysrm.plan`): a synapse, its SRM neurons, their delay and a
following sum pool with its SRM neurons, in as few kernels as the data dependencies allow.

Imported by :func:`pysrm.plan.build_plan` only for ``PlanOptions(device="cuda")``; the blocks apply
only there, with ``fuse=True`` and ``strategy="auto"`` (``Network.to('cuda')`` builds such a plan;
``net.configure(fuse=False)`` runs every layer's own CUDA ops instead).  Every block runs the same
arithmetic as the layers it covers (the kernels of :mod:`pysrm.ops.srm_cuda` are the separate ops
fused; tests: ``tests/test_cuda_plan.py`` under the CUDA simulator, against the CPU network and the
unfused CUDA plan).

Patterns (``Syn`` is Dense or Conv; the longest that matches wins):

=========================================  ===========================================================
pattern                                    what runs (forward; backward)
=========================================  ===========================================================
``Syn, SRM, Delay, Pool, SRM``             synapse product; fused SRM; delay; fused pool + SRM (the
                                           pooling inside the SRM kernel's loads).  Backward: fused SRM
                                           backward of the pool's neurons; the delay gradient read
                                           through the pool; the fused SRM backward of the synapse's
                                           neurons read through the delay and the pool; the synapse's
                                           gradients (the weight gradient added to the parameter's)
``Syn, SRM, Pool, SRM``                    as above without the delay
``Syn, SRM, Delay``                        synapse; fused SRM; delay.  Backward through the delay
``Syn, SRM``                               synapse; fused SRM
``Pool, SRM``                              fused pool + SRM (an event input is pooled by the event
                                           kernel first)
``SRM``                                    fused SRM
=========================================  ===========================================================

Launches saved against the layer-by-layer CUDA plan (per step, each block): the SRM forward's four
(psp, copy, zero fill, scan) become one, its backward's two (surrogate, correlation) one; a pool and
the delay's input gradient are never stored (read through), the delay's shift is computed where it is
used and its gradient is one deterministic launch added straight to the parameter's gradient; an event
synapse hands its ``(N, T, O)`` / ``(N, Ho, Wo, T, Co)`` sums to the SRM kernel untransposed and takes
its output gradient in that layout back (two transposes less), the weight gradients are added to the
parameters' gradients by the product itself (no separate add).  Counts: ``benchmarks/cuda_launch_count.py``.

Where a block's conditions do not hold (a spike response longer than
:data:`pysrm.ops.srm_cuda.MAX_KERNEL` samples, a refractory response longer than 64), the layers run
one by one.
"""
from __future__ import annotations

import numpy as np

from . import cuda as dev
from .cuda import DeviceSpikeEvents
from .layers import SRM, Conv, Delay, Dense, Pool
from .ops import conv_cuda, delay_cuda, dense_cuda, pool_cuda, srm_cuda
from .plan import PlanOptions, Step, materialize, register_block

_SYN = (Dense, Conv)


def _cuda_fusion(options: PlanOptions) -> bool:
    return options.fuse and options.strategy == "auto" and options.device == "cuda"


def _srm_fits(layer: SRM) -> bool:
    return srm_cuda.applies(layer.srm, layer.ref)


def _input_events(x):
    return isinstance(x, DeviceSpikeEvents)


class CudaBlock(Step):
    """A fused CUDA block (module docstring); subclasses set ``pattern``."""

    @classmethod
    def applies(cls, layers, options):
        return _cuda_fusion(options) and all(_srm_fits(l) for l in layers if isinstance(l, SRM))

    def __init__(self, layers, options, following=()):
        super().__init__(layers, options, following)
        ls = list(layers)
        self.syn = ls.pop(0) if isinstance(ls[0], (Dense, Conv, Pool)) else None
        self.srm = ls.pop(0)
        self.delay = ls.pop(0) if ls and isinstance(ls[0], Delay) else None
        self.pool = ls.pop(0) if ls and isinstance(ls[0], Pool) else None
        self.srm2 = ls.pop(0) if ls else None
        self._clear()

    def _clear(self):
        self._x = self._col = self._u = self._s = self._u2 = None
        self._a_layout = "rows"
        self._x_shape = None

    # -- forward -------------------------------------------------------------------------------------
    def _synapse(self, x, train):
        """The synapse's output ``a`` as ``(array, layout, rows_shape, pool)`` for the SRM kernel."""
        syn = self.syn
        if syn is None:
            if _input_events(x):
                x = x.to_dense()
            return x, "rows", tuple(x.shape), None
        syn.check_input(x)
        N, T = x.shape[0], x.shape[4]
        if isinstance(syn, Pool):
            C, H, W = x.shape[1:4]
            self._x_shape = tuple(x.shape)
            shape = (N,) + syn.output_shape((C, H, W)) + (T,)
            if _input_events(x):
                return pool_cuda.pool(x, syn.kernel, syn.weight), "rows", shape, None
            return x, "pool", shape, (syn.kernel, syn.weight)
        w = syn.weight.data
        ev = _input_events(x)
        self._x = x if train else None
        if isinstance(syn, Dense):
            shape = (N, w.shape[0], 1, 1, T)
            if ev:
                return dense_cuda.dense(w, x, time_major=True), "channels_last", shape, None
            return dense_cuda.dense(w, x), "rows", shape, None
        shape = (N,) + syn.output_shape(x.shape[1:4]) + (T,)
        if ev:
            return conv_cuda.conv(w, x, syn.stride, syn.padding, channels_last=True), "channels_last", shape, None
        a, col = conv_cuda.conv(w, x, syn.stride, syn.padding, keep_col=True)
        self._col = col if train else None
        return a, "rows", shape, None

    def forward(self, x, train: bool = False):
        self._clear()
        a, layout, shape, pool = self._synapse(x, train)
        self._a_layout = layout
        srm = self.srm
        s, u = srm_cuda.srm_forward(a, shape, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts, layout, pool,
                                    need_potential=train)
        srm.record(s)
        self._u = u
        out = s
        if self.delay is not None:
            out = delay_cuda.delay(s, self.delay.delay.data, self.delay.sim.ts)
            self._s = s if train else None
        if self.pool is not None:
            p, srm2 = self.pool, self.srm2
            N, C, H, W, T = out.shape
            shape2 = (N,) + p.output_shape((C, H, W)) + (T,)
            out, u2 = srm_cuda.srm_forward(out, shape2, srm2.srm, srm2.ref, srm2.neuron.theta, srm2.sim.ts, "pool",
                                           (p.kernel, p.weight), need_potential=train)
            srm2.record(out)
            self._u2 = u2
        return out

    # -- backward ------------------------------------------------------------------------------------
    def backward(self, grad):
        grad = materialize(grad)
        if self._u is None or (self.srm2 is not None and self._u2 is None):
            raise RuntimeError(f"{self.describe()}: backward called without a forward(train=True)")
        g, pool = grad, None
        if self.srm2 is not None:
            srm2 = self.srm2
            g = srm_cuda.srm_backward(g, self._u2, srm2.neuron, srm2.srm, srm2.sim.ts)  # the pool output's gradient
            pool = (self.pool.kernel, self.pool.weight)
        delay = None
        if self.delay is not None:
            d = self.delay.delay
            delay_cuda.delay_grad(g, self._s, d.data, self.delay.sim.ts, accumulate_into=d.grad, pool=pool)
            delay = (d.data, self.delay.sim.ts)
        syn, srm = self.syn, self.srm
        need_gx = syn is not None and syn.need_input_grad
        cl = (self._a_layout == "channels_last" and isinstance(syn, (Dense, Conv)) and not need_gx)
        ga = srm_cuda.srm_backward(g, self._u, srm.neuron, srm.srm, srm.sim.ts, delay=delay, pool=pool,
                                   out_channels_last=cl)
        if syn is None:
            return ga
        if isinstance(syn, Pool):
            if not need_gx:
                return None
            return pool_cuda.pool_backward(ga, self._x_shape, syn.kernel, syn.weight)
        w = syn.weight
        if isinstance(syn, Dense):
            N, T = self._x.shape[0], self._x.shape[4]
            O = w.data.shape[0]
            gx, _ = dense_cuda.dense_backward(w.data, self._x, None if cl else ga.reshape(N, O, 1, 1, T), need_gx,
                                              accumulate_into=w.grad, grad_time_major=ga.reshape(N, T, O) if cl else None)
            return gx
        gx, _ = conv_cuda.conv_backward(w.data, self._x, None if cl else ga, syn.stride, syn.padding, need_gx,
                                        accumulate_into=w.grad, grad_channels_last=ga if cl else None, col=self._col)
        return gx

    def describe(self) -> str:
        return f"{type(self).__name__}({', '.join(l.name for l in self.layers)})"


@register_block
class CudaSynSRMDelayPoolSRM(CudaBlock):
    """Dense|Conv -> SRM -> Delay -> Pool -> SRM on the GPU."""
    pattern = (_SYN, SRM, Delay, Pool, SRM)


@register_block
class CudaSynSRMPoolSRM(CudaBlock):
    """Dense|Conv -> SRM -> Pool -> SRM on the GPU."""
    pattern = (_SYN, SRM, Pool, SRM)


@register_block
class CudaSynSRMDelay(CudaBlock):
    """Dense|Conv -> SRM -> Delay on the GPU."""
    pattern = (_SYN, SRM, Delay)


@register_block
class CudaSynSRM(CudaBlock):
    """Dense|Conv -> SRM on the GPU."""
    pattern = (_SYN, SRM)


@register_block
class CudaPoolSRM(CudaBlock):
    """Pool -> SRM on the GPU."""
    pattern = (Pool, SRM)


@register_block
class CudaSRM(CudaBlock):
    """SRM on its own on the GPU."""
    pattern = (SRM,)


__all__ = ["CudaBlock", "CudaSynSRMDelayPoolSRM", "CudaSynSRMPoolSRM", "CudaSynSRMDelay", "CudaSynSRM",
           "CudaPoolSRM", "CudaSRM"]
