r"""CUDA blocks of the execution plan (:mod:`pysrm.plan`): a synapse, its SRM neurons, their delay and a
following sum pool with its SRM neurons, in as few kernels as the data dependencies allow.

What they fuse: :math:`a = W x` (or :math:`W \star x`, or a sum pool), :math:`u = \epsilon * a`,
:math:`(s, u_{ref}) = \mathrm{spike}(u)`, the delay :math:`y[t] = (1-f) s[t-m] + f s[t-m-1]` and a
following pool and neurons; backward the surrogate and the correlation, the delay's adjoint and
gradient, the pool's adjoint read inside the loads, and the synapse's products.  The kernels are those
of :mod:`pysrm.blocks.srm_cuda` (``srm_forward``, ``srm_backward``, ``applies``), the synapse's of
:mod:`pysrm.ops.dense_cuda` / :mod:`pysrm.ops.conv_cuda` / :mod:`pysrm.ops.pool_cuda` and the delay's
of :mod:`pysrm.ops.delay_cuda`; each block class below is one schedule over them with its own
``forward`` and ``backward`` (the shared pieces are the mixins' helpers).

Imported by :func:`pysrm.plan.default_planner` only for ``device="cuda"``
(:func:`pysrm.blocks.cuda_blocks`); the blocks apply only in a plan for that device, with
``fuse=True`` and ``strategy="auto"`` (``Network.to('cuda')`` builds such a plan;
``net.configure(fuse=False)`` runs every layer's own CUDA ops instead).  Every block runs the same
arithmetic as the layers it covers (the kernels of :mod:`pysrm.blocks.srm_cuda` are the separate ops
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

Policy: a block applies where every SRM layer it covers fits the fused kernels (``srm_cuda.applies``:
a spike response of at most :data:`pysrm.blocks.srm_cuda.MAX_KERNEL` samples, a refractory response of
at most 64); elsewhere the layers run one by one.  There is no run-time switch.  Cache per block:
``x`` (the synapse's input), ``col`` (a conv's im2col matrix), ``layout`` (of the synapse's output),
``u`` / ``u2`` (the potentials), ``s`` (the delay's input), ``x_shape`` (a pool's input shape).
"""
from __future__ import annotations

from ..events_cuda import DeviceSpikeEvents
from ..layers import SRM, Conv, Delay, Dense, Pool
from ..ops import conv_cuda, delay_cuda, dense_cuda, pool_cuda
from . import srm_cuda
from ..plan import PlanOptions, Step, materialize

_SYN = (Dense, Conv)

#: the layouts of the SRM kernel's input (``srm_cuda.srm_forward``): rows ``(N, C, H, W, T)``, a synapse's
#: untransposed ``(N, T, O)`` / ``(N, Ho, Wo, T, Co)`` sums, or the input of a sum pool read through
ROWS, CHANNELS_LAST, POOL = "rows", "channels_last", "pool"


def _cuda_fusion(options: PlanOptions) -> bool:
    return options.fuse and options.strategy == "auto" and options.device == "cuda"


def _input_events(x):
    return isinstance(x, DeviceSpikeEvents)


class _CudaBlock(Step):
    """What every CUDA block shares: its conditions and the fused SRM neurons."""

    @classmethod
    def applies(cls, layers, options):
        return _cuda_fusion(options) and all(srm_cuda.applies(l.srm, l.ref) for l in layers if isinstance(l, SRM))

    def _neurons(self, srm, a, shape, layout, pool, train, key):
        """The fused SRM forward of ``srm`` on ``a``; the potential kept as ``cache[key]`` in training."""
        s, u = srm_cuda.srm_forward(a, shape, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts, layout, pool,
                                    need_potential=train)
        srm.record(s)
        if u is not None:
            self.cache[key] = u
        return s


class _SynapseMixin:
    """The Dense or Conv layer in front of the block's neurons (``self.syn``, ``self.srm``)."""

    def _synapse_forward(self, x, train):
        """The synapse's output for the SRM kernel: ``(a, layout, rows_shape)``."""
        syn = self.syn
        syn.check_input(x)
        N, T = x.shape[0], x.shape[4]
        w = syn.weight.data
        ev = _input_events(x)
        if train:
            self.cache["x"] = x
        if isinstance(syn, Dense):
            shape = (N, w.shape[0], 1, 1, T)
            if ev:
                a, layout = dense_cuda.dense(w, x, time_major=True), CHANNELS_LAST
            else:
                a, layout = dense_cuda.dense(w, x), ROWS
        else:
            shape = (N,) + syn.output_shape(x.shape[1:4]) + (T,)
            if ev:
                a, layout = conv_cuda.conv(w, x, syn.stride, syn.padding, channels_last=True), CHANNELS_LAST
            else:
                a, col = conv_cuda.conv(w, x, syn.stride, syn.padding, keep_col=True)
                layout = ROWS
                if train:
                    self.cache["col"] = col
        self.cache["layout"] = layout
        return a, layout, shape

    def _synapse_backward(self, g, delay=None, pool=None):
        """From the gradient of the neurons' spikes ``g`` (read through ``delay`` and ``pool``): the fused
        SRM backward, then the synapse's gradients (the weight gradient added to the parameter's); returns
        the input gradient."""
        syn, srm = self.syn, self.srm
        u = self.cached("u")
        x = self.cached("x")
        need_gx = syn.need_input_grad
        cl = self.cache["layout"] == CHANNELS_LAST and not need_gx
        ga = srm_cuda.srm_backward(g, u, srm.neuron, srm.srm, srm.sim.ts, delay=delay, pool=pool, out_channels_last=cl)
        w = syn.weight
        if isinstance(syn, Dense):
            N, T = x.shape[0], x.shape[4]
            O = w.data.shape[0]
            gx, _ = dense_cuda.dense_backward(w.data, x, None if cl else ga.reshape(N, O, 1, 1, T), need_gx,
                                              accumulate_into=w.grad, grad_time_major=ga.reshape(N, T, O) if cl else None)
            return gx
        gx, _ = conv_cuda.conv_backward(w.data, x, None if cl else ga, syn.stride, syn.padding, need_gx,
                                        accumulate_into=w.grad, grad_channels_last=ga if cl else None,
                                        col=self.cache.get("col"))
        return gx


class _DelayMixin:
    """The delay after the block's first neurons (``self.delay``)."""

    def _delay_forward(self, s, train):
        if train:
            self.cache["s"] = s
        return delay_cuda.delay(s, self.delay.delay.data, self.delay.sim.ts)

    def _delay_backward(self, g, pool=None):
        """The delay gradient (added to the parameter's; ``g`` read through ``pool``); returns the
        ``(d, ts)`` the first neurons' backward reads its gradient through."""
        d = self.delay.delay
        delay_cuda.delay_grad(g, self.cached("s"), d.data, self.delay.sim.ts, accumulate_into=d.grad, pool=pool)
        return d.data, self.delay.sim.ts


class _PoolSRMMixin:
    """The sum pool and its neurons after the block's first neurons (``self.pool``, ``self.srm2``)."""

    def _pool_neurons(self, y, train):
        p = self.pool
        N, C, H, W, T = y.shape
        return self._neurons(self.srm2, y, (N,) + p.output_shape((C, H, W)) + (T,), POOL, (p.kernel, p.weight),
                             train, "u2")

    def _pool_neurons_backward(self, grad):
        """The gradient of the pool's output (the pool's neurons' fused backward) and the pool the first
        neurons' backward reads it through."""
        srm2 = self.srm2
        g = srm_cuda.srm_backward(materialize(grad), self.cached("u2"), srm2.neuron, srm2.srm, srm2.sim.ts)
        return g, (self.pool.kernel, self.pool.weight)


class CudaSynSRMDelayPoolSRM(_SynapseMixin, _DelayMixin, _PoolSRMMixin, _CudaBlock):
    """Dense|Conv -> SRM -> Delay -> Pool -> SRM on the GPU."""
    pattern = (_SYN, SRM, Delay, Pool, SRM)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.syn, self.srm, self.delay, self.pool, self.srm2 = layers

    def forward(self, x, train: bool = False):
        self.cache.clear()
        a, layout, shape = self._synapse_forward(x, train)
        s = self._neurons(self.srm, a, shape, layout, None, train, "u")
        return self._pool_neurons(self._delay_forward(s, train), train)

    def backward(self, grad):
        g, pool = self._pool_neurons_backward(grad)
        delay = self._delay_backward(g, pool)
        return self._synapse_backward(g, delay, pool)


class CudaSynSRMPoolSRM(_SynapseMixin, _PoolSRMMixin, _CudaBlock):
    """Dense|Conv -> SRM -> Pool -> SRM on the GPU."""
    pattern = (_SYN, SRM, Pool, SRM)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.syn, self.srm, self.pool, self.srm2 = layers

    def forward(self, x, train: bool = False):
        self.cache.clear()
        a, layout, shape = self._synapse_forward(x, train)
        return self._pool_neurons(self._neurons(self.srm, a, shape, layout, None, train, "u"), train)

    def backward(self, grad):
        g, pool = self._pool_neurons_backward(grad)
        return self._synapse_backward(g, None, pool)


class CudaSynSRMDelay(_SynapseMixin, _DelayMixin, _CudaBlock):
    """Dense|Conv -> SRM -> Delay on the GPU."""
    pattern = (_SYN, SRM, Delay)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.syn, self.srm, self.delay = layers

    def forward(self, x, train: bool = False):
        self.cache.clear()
        a, layout, shape = self._synapse_forward(x, train)
        return self._delay_forward(self._neurons(self.srm, a, shape, layout, None, train, "u"), train)

    def backward(self, grad):
        g = materialize(grad)
        return self._synapse_backward(g, self._delay_backward(g))


class CudaSynSRM(_SynapseMixin, _CudaBlock):
    """Dense|Conv -> SRM on the GPU."""
    pattern = (_SYN, SRM)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.syn, self.srm = layers

    def forward(self, x, train: bool = False):
        self.cache.clear()
        a, layout, shape = self._synapse_forward(x, train)
        return self._neurons(self.srm, a, shape, layout, None, train, "u")

    def backward(self, grad):
        return self._synapse_backward(materialize(grad))


class CudaPoolSRM(_CudaBlock):
    """Pool -> SRM on the GPU: the pooling inside the SRM kernel's loads (an event input is pooled by the
    event kernel first)."""
    pattern = (Pool, SRM)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.pool, self.srm = layers

    def forward(self, x, train: bool = False):
        self.cache.clear()
        p = self.pool
        p.check_input(x)
        N, C, H, W, T = x.shape
        self.cache["x_shape"] = tuple(x.shape)
        shape = (N,) + p.output_shape((C, H, W)) + (T,)
        if _input_events(x):
            return self._neurons(self.srm, pool_cuda.pool(x, p.kernel, p.weight), shape, ROWS, None, train, "u")
        return self._neurons(self.srm, x, shape, POOL, (p.kernel, p.weight), train, "u")

    def backward(self, grad):
        srm, p = self.srm, self.pool
        u = self.cached("u")
        if not p.need_input_grad:
            return None
        ga = srm_cuda.srm_backward(materialize(grad), u, srm.neuron, srm.srm, srm.sim.ts)
        return pool_cuda.pool_backward(ga, self.cache["x_shape"], p.kernel, p.weight)


class CudaSRM(_CudaBlock):
    """SRM on its own on the GPU: the fused SRM kernels."""
    pattern = (SRM,)

    def __init__(self, layers, context):
        super().__init__(layers, context)
        self.srm = layers[0]

    def forward(self, x, train: bool = False):
        self.cache.clear()
        if _input_events(x):
            x = x.to_dense()
        return self._neurons(self.srm, x, tuple(x.shape), ROWS, None, train, "u")

    def backward(self, grad):
        srm = self.srm
        return srm_cuda.srm_backward(materialize(grad), self.cached("u"), srm.neuron, srm.srm, srm.sim.ts)


#: the blocks of this family, in the order a planner registers them
BLOCKS = (CudaSynSRMDelayPoolSRM, CudaSynSRMPoolSRM, CudaSynSRMDelay, CudaSynSRM, CudaPoolSRM, CudaSRM)

__all__ = ["CudaSynSRMDelayPoolSRM", "CudaSynSRMPoolSRM", "CudaSynSRMDelay", "CudaSynSRM", "CudaPoolSRM", "CudaSRM",
           "BLOCKS"]
