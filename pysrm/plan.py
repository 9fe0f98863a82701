r"""Execution plans: a network's layers as a sequence of steps, single layers or fused blocks.

A :class:`~pysrm.network.Network` does not run its layers one by one itself: it compiles them into a
plan (:func:`build_plan`) and its ``forward`` and ``backward`` are loops over the plan's steps::

    for step in plan:           x = step.forward(x, train)
    for step in reversed(plan): grad = step.backward(grad)

A step is either a :class:`LayerStep` (one layer, its own ``forward``/``backward``) or a fused
**block**: a class that declares the layer ``pattern`` it covers (e.g. ``(Dense, SRM, Delay)``) and
runs those layers' ops as fewer passes over memory, keeping what its backward needs in its own
fields.  One matcher builds the plan: at each position it takes the first registered block (longest
pattern first) whose :meth:`Step.matches` accepts the layers there, else a single-layer step.  Adding
a block is a new class decorated with :func:`register_block`; it touches no other block and not
``Network``.

Fusion is an option of the network (``Network(..., fuse=True)``, the default; ``fuse=False`` runs
every layer on its own), and so is ``strategy="plain"`` (every op's plain definition, no fusion).
The blocks below match only on the CPU; the CUDA blocks (:mod:`pysrm.plan_cuda`, imported by
:func:`build_plan` for ``device="cuda"``) only on the GPU.

Blocks of this module (CPU; their ops are in :mod:`pysrm.ops.srm`, :mod:`pysrm.ops.delay` and
:mod:`pysrm.ops.convblock`):

``DenseSRMBlock``       Dense -> SRM.  Forward: one pass per sample in cache on an event input
                        (:func:`pysrm.ops.srm.dense_srm_forward`) from
                        :data:`FUSED_MIN_OUTPUTS` outputs up; bitwise the two layers.  Backward of a
                        first layer: the fused weight gradient
                        (:func:`pysrm.ops.srm.srm_dense_backward_weights`; bitwise).
``DenseSRMDelayBlock``  Dense -> SRM -> Delay.  As above; when a dense or conv layer follows, the
                        spikes are handed to the delay as events and delayed as events
                        (:func:`pysrm.ops.delay.delay_events`; bitwise).  Backward from a following
                        dense layer with few outputs: that layer's input gradient made row by row
                        inside the delay backward (:func:`pysrm.ops.delay.delay_backward_from_dense`),
                        and for a first layer inside its fused weight-gradient pass
                        (:func:`pysrm.ops.srm.srm_dense_backward_through_delay`); equal to the
                        unfused plan to float rounding (the dense input gradient's sum runs in another
                        order than BLAS).
``ConvBlock`` family    Conv -> SRM [-> Delay] [-> Pool -> SRM] per sample in cache-sized tiles, spikes
                        as events, the backward recomputing each sample's forward (or reading the
                        potentials the forward kept); nothing of size batch x T x neurons is kept.
                        Spikes and input gradients bitwise, weight and delay gradients bitwise or to
                        float rounding (:class:`ConvBlock`).

A dense layer's input gradient crosses a step boundary uncomputed when the step before can use it so
(:class:`pysrm.ops.dense.DenseInputGrad`; the plan sets ``defer_input_grad`` on the dense step exactly
then); every other step receives arrays.  Tests: ``tests/test_plan.py`` (every block against the
unfused plan, bitwise or to rounding as stated; finite differences through the plan).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import functional as F
from .events import SpikeEvents
from .layers import SRM, Conv, Delay, Dense, Layer
from .ops.dense import CONV_EVENT_DENSITY_THRESHOLD, EVENT_DENSITY_THRESHOLD, DenseInputGrad, events_if_sparse
from .ops.srm import fused_forward_applies

#: below this many outputs the fused Dense -> SRM forward is slower than the three ops (measured: 10
#: outputs 0.68 vs 0.35 ms, 32 about even, 64 1.4 vs 1.7 ms at N-MNIST batch-32 shapes), unless its
#: spikes are wanted as events
FUSED_MIN_OUTPUTS = 48
#: a conv block whose conv takes BLAS products (a dense-ish input) runs fused only when the batch's conv
#: output would take more than this many bytes: below it the separate layers are faster (N-MNIST CNN conv3
#: at batch 8: 480 vs 950 ms per step, benchmarks/RESULTS.md), above it the fused block keeps the memory
#: small (the same spikes; weight gradients to rounding)
BLAS_BLOCK_MIN_BYTES = 128 * 2 ** 20
#: conv blocks run fused from this batch size up: they parallelise over the samples (and the backward's
#: fixed parts of the batch), so a batch of one or two runs on one thread, where the separate layers'
#: kernels use every core (measured DVS Gesture batch 1: 2.9 fused vs 4.0 separate samples/s training).
#: A batch-size rule, never a thread-count rule: results stay independent of NUMBA_NUM_THREADS.
FUSED_CONV_MIN_BATCH = 4
#: the default :attr:`PlanOptions.memory_budget`: 2 GiB
MEMORY_BUDGET = 2 * 2 ** 30
#: bytes an unfused training step of a conv network holds per conv output value (neuron x bin of the
#: batch) at its peak, in units of the dtype's size: the conv output, the spikes, the surrogate's input
#: and the next layer's copy (measured: the DVS Gesture network at batch 16 with its BLAS-mode conv2 on its
#: own and conv1 fused peaks at 1.82 GB for 16 x 29.5 MB of conv outputs, 3.9x; benchmarks/RESULTS.md,
#: issue 17)
UNFUSED_VALUES_PER_OUTPUT = 4


@dataclass(frozen=True)
class PlanOptions:
    """What a plan is built for: ``fuse`` (use blocks), ``strategy`` (``"auto"`` or ``"plain"``),
    ``device`` (``"cpu"`` or ``"cuda"``) and ``memory_budget`` (bytes; default :data:`MEMORY_BUDGET`):
    a conv block whose conv runs as BLAS products runs its layers one by one (faster: no recompute, the
    unfused backward's larger products) when the whole network's unfused conv layers would fit in it,
    else fused (see :class:`ConvBlock`)."""

    fuse: bool = True
    strategy: str = "auto"
    device: str = "cpu"
    memory_budget: int = MEMORY_BUDGET

    def __post_init__(self):
        b = self.memory_budget
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0:
            raise ValueError(f"memory_budget must be a number of bytes >= 0; got {b!r}")

    @property
    def cpu_fusion(self) -> bool:
        """True when CPU blocks may match."""
        return self.fuse and self.strategy == "auto" and self.device == "cpu"


def materialize(grad):
    """``grad`` as an array (a :class:`~pysrm.ops.dense.DenseInputGrad` is computed; None stays None)."""
    return grad.materialize() if isinstance(grad, DenseInputGrad) else grad


class Step:
    """One step of a plan: covers ``layers`` (consecutive layers of the network).

    Subclasses set ``pattern`` (the layer types, in order) and implement ``forward(x, train)`` and
    ``backward(grad)``.  ``backward`` returns the gradient of the step's input (None for a first
    step); it receives an array, or a :class:`~pysrm.ops.dense.DenseInputGrad` only when the class
    sets ``accepts_dense_input_grad``.
    """

    pattern: tuple = ()
    accepts_dense_input_grad = False

    def __init__(self, layers, options: PlanOptions, following=()):
        self.layers = tuple(layers)
        self.options = options
        self.following = tuple(following)  # the layers after this step (for blocks that look ahead)
        self.defer_input_grad = False       # set by build_plan when the step before accepts it

    @classmethod
    def matches(cls, layers, i: int, options: PlanOptions) -> bool:
        """Whether this block covers ``layers[i:i + len(pattern)]``: the types, and the block's own
        conditions (see :meth:`applies`)."""
        n = len(cls.pattern)
        if not n or i + n > len(layers):
            return False
        if not all(isinstance(l, t) for l, t in zip(layers[i:i + n], cls.pattern)):
            return False
        return cls.applies(layers[i:i + n], options)

    @classmethod
    def applies(cls, layers, options: PlanOptions) -> bool:
        return True

    def release(self):
        """Drop the caches of the last forward pass: the step's own fields named ``_x``, ``_u``, ``_x_delay``,
        ``_saved``, and its layers' (:meth:`pysrm.layers.Layer.release`)."""
        for name in ("_x", "_u", "_x_delay", "_saved"):
            if name in self.__dict__:
                setattr(self, name, None)
        for layer in self.layers:
            layer.release()

    @property
    def first(self) -> bool:
        """True for a step whose input needs no gradient (the network's first)."""
        return not self.layers[0].need_input_grad

    def forward(self, x, train: bool = False):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({', '.join(l.name for l in self.layers)})"

    def __repr__(self):
        return self.describe()


class LayerStep(Step):
    """One layer on its own: its ``forward`` and ``backward``."""

    def __init__(self, layer: Layer, options: PlanOptions, following=()):
        super().__init__((layer,), options, following)
        self.layer = layer

    @property
    def accepts_dense_input_grad(self) -> bool:
        return bool(getattr(self.layer, "accepts_dense_input_grad", False))

    def forward(self, x, train: bool = False):
        return self.layer.forward(x, train)

    def backward(self, grad):
        if not self.accepts_dense_input_grad:
            grad = materialize(grad)
        if isinstance(self.layer, Dense):
            return self.layer.backward(grad, defer_input_grad=self.defer_input_grad)
        return self.layer.backward(grad)

    def describe(self) -> str:
        return self.layer.name


_BLOCKS: list = []


def register_block(cls):
    """Class decorator: make ``cls`` (a :class:`Step` subclass with a ``pattern``) available to
    :func:`build_plan`.  Longer patterns are tried first."""
    if not issubclass(cls, Step) or not cls.pattern:
        raise TypeError(f"{cls!r} must be a Step subclass with a non-empty pattern")
    _BLOCKS.append(cls)
    _BLOCKS.sort(key=lambda c: -len(c.pattern))
    return cls


def registered_blocks() -> tuple:
    """The block classes :func:`build_plan` tries, in order."""
    return tuple(_BLOCKS)


def build_plan(layers, options: PlanOptions) -> list:
    """The steps that run ``layers`` (see the module docstring)."""
    if options.device == "cuda":
        from . import plan_cuda  # noqa: F401  (registers the CUDA blocks, pysrm/plan_cuda.py)
    layers = list(layers)
    steps = []
    i = 0
    while i < len(layers):
        step = None
        if options.fuse:
            for cls in _BLOCKS:
                if cls.matches(layers, i, options):
                    n = len(cls.pattern)
                    step = cls(layers[i:i + n], options, layers[i + n:])
                    break
        if step is None:
            step = LayerStep(layers[i], options, layers[i + 1:])
        steps.append(step)
        i += len(step.layers)
    for prev, step in zip(steps, steps[1:]):
        step.defer_input_grad = options.cpu_fusion and prev.accepts_dense_input_grad
    conv_outputs = sum(int(np.prod(l.output_shape(l.in_shape))) for l in layers if isinstance(l, Conv))
    for step in steps:
        if isinstance(step, ConvBlock):
            step.network_conv_outputs = conv_outputs
    return steps


# --------------------------------------------------------------------------- CPU blocks

@register_block
class DenseSRMBlock(Step):
    """Dense -> SRM on the CPU (module docstring)."""

    pattern = (Dense, SRM)

    @classmethod
    def applies(cls, layers, options):
        return options.cpu_fusion

    def __init__(self, layers, options, following=()):
        super().__init__(layers, options, following)
        self.dense, self.srm = layers[0], layers[1]
        self.emit_events = False
        self._x = self._u = None
        self._u_time_major = False

    def _fused_forward_wanted(self, x) -> bool:
        return (isinstance(x, SpikeEvents) and fused_forward_applies(self.dense.weight.data, x, self.srm.srm)
                and (self.dense.weight.data.shape[0] >= FUSED_MIN_OUTPUTS or self.emit_events))

    def forward(self, x, train: bool = False):
        dense, srm = self.dense, self.srm
        dense.check_input(x)
        w = dense.weight.data
        x = events_if_sparse(x, "dense")
        self._x = x if train else None
        if self._fused_forward_wanted(x):
            time_major = train and self.first
            s, u, *ev = F.dense_srm_forward(w, x, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts,
                                            need_potential=train, need_events=self.emit_events,
                                            need_dense_spikes=False, time_major_potential=time_major,
                                            workspace=dense.workspace)
            out = ev[0] if self.emit_events and ev[0] is not None else s
            self._u, self._u_time_major = u, time_major and u is not None
        else:
            a = F.dense(w, x, workspace=dense.workspace)
            s, u = F.srm_forward(a, srm.srm, srm.ref, srm.neuron.theta, srm.sim.ts)
            self._u, self._u_time_major = (u if train else None), False
            out = s
        srm.record(out)
        return out

    def _backward_srm_dense(self, grad):
        """From the gradient of the spikes (an array) to the input gradient of the dense layer."""
        dense, srm = self.dense, self.srm
        if self._u is None:
            raise RuntimeError(f"{srm.name}: backward called without a forward(train=True)")
        w = dense.weight
        if self.first:
            F.srm_dense_backward_weights(grad, self._u, srm.neuron, srm.srm, srm.sim.ts, w.data, self._x,
                                         self._u_time_major, accumulate_into=w.grad, workspace=dense.workspace)
            return None
        g_a = F.srm_backward(grad, self._u, srm.neuron, srm.srm, srm.sim.ts)
        gx, gw = F.dense_backward(w.data, self._x, g_a, need_input_grad=not self.defer_input_grad,
                                  workspace=dense.workspace)
        w.accumulate_grad(gw)
        if self.defer_input_grad:
            return DenseInputGrad(w.data, g_a, self._x.shape)
        return gx

    def backward(self, grad):
        return self._backward_srm_dense(materialize(grad))


@register_block
class DenseSRMDelayBlock(DenseSRMBlock):
    """Dense -> SRM -> Delay on the CPU (module docstring)."""

    pattern = (Dense, SRM, Delay)
    accepts_dense_input_grad = True

    @classmethod
    def applies(cls, layers, options):
        return options.cpu_fusion and layers[2].sim.ts == layers[1].sim.ts

    def __init__(self, layers, options, following=()):
        super().__init__(layers, options, following)
        self.delay = layers[2]
        nxt = self.following[0] if self.following else None
        self.next_kind = "dense" if isinstance(nxt, Dense) else "conv" if isinstance(nxt, Conv) else None
        self.emit_events = self.next_kind is not None
        self._x_delay = None

    def forward(self, x, train: bool = False):
        s = super().forward(x, train)
        d, ts = self.delay.delay.data, self.delay.sim.ts
        if isinstance(s, SpikeEvents):
            threshold = EVENT_DENSITY_THRESHOLD if self.next_kind == "dense" else CONV_EVENT_DENSITY_THRESHOLD
            y = F.delay_events(s, d, ts)
            if y.n_events > threshold * int(np.prod(y.shape)):  # too dense for the next layer's event paths
                s = s.to_dense()
                y = F.delay(s, d, ts)
        else:
            y = F.delay(s, d, ts)
        self._x_delay = s if train else None
        return y

    def backward(self, grad):
        if self._x_delay is None:
            raise RuntimeError(f"{self.delay.name}: backward called without a forward(train=True)")
        srm, delay, dense = self.srm, self.delay, self.dense
        d = delay.delay
        if isinstance(grad, DenseInputGrad):
            if self.first:
                w = dense.weight
                _, gd = F.srm_dense_backward_through_delay(
                    grad.g, grad.w, self._x_delay, d.data, delay.sim.ts, self._u, srm.neuron, srm.srm, w.data,
                    self._x, self._u_time_major, accumulate_into=w.grad, workspace=dense.workspace)
                d.accumulate_grad(gd)
                return None
            gs, gd = F.delay_backward_from_dense(grad.w, grad.g, self._x_delay, d.data, delay.sim.ts)
        else:
            gs, gd = F.delay_backward(grad, self._x_delay, d.data, delay.sim.ts)
        d.accumulate_grad(gd)
        return self._backward_srm_dense(gs)




class ConvBlock(Step):
    """Conv -> SRM [-> Delay] [-> Pool -> SRM] on the CPU, per sample in cache
    (:mod:`pysrm.ops.convblock`); the subclasses set the pattern.  The conv runs as the unfused conv layer
    would: event driven up to :data:`pysrm.ops.dense.CONV_EVENT_DENSITY_THRESHOLD` of its input active,
    else as BLAS products (stride 1), from :data:`FUSED_CONV_MIN_BATCH` samples up.  A BLAS-mode block
    runs its layers one by one instead (faster, more memory) when its batch's conv output is at most
    :data:`BLAS_BLOCK_MIN_BYTES`, or when the unfused conv layers of the whole network fit in the plan's
    memory budget: ``UNFUSED_VALUES_PER_OUTPUT x N x T x (conv outputs of all conv layers per bin) x
    itemsize <= PlanOptions.memory_budget`` (:data:`UNFUSED_VALUES_PER_OUTPUT`; e.g. the DVS Gesture CNN
    at its batch 16 runs unfused in 1.8 GB, at batch 32 fused in 1.2 GB).  A strided conv on a dense
    input always runs unfused.  The choice depends only on shapes, dtype, batch size and budget (never
    on threads or timing).  The
    spikes leave as events; the backward recomputes each sample's forward (nothing of size batch x T x
    neurons is kept).  Spikes and input gradients bitwise those of the unfused plan; weight gradients
    bitwise (event driven) or to float rounding (BLAS: summed over fixed parts of the batch); delay
    gradients to float rounding (summed by parts over the spikes)."""

    @classmethod
    def applies(cls, layers, options):
        srms = [l for l in layers if isinstance(l, SRM)]
        delays = [l for l in layers if isinstance(l, Delay)]
        ts = srms[0].sim.ts
        return (options.cpu_fusion and all(s.sim.ts == ts for s in srms) and all(d.sim.ts == ts for d in delays))

    def __init__(self, layers, options, following=()):
        from .layers import Pool
        super().__init__(layers, options, following)
        self.conv, self.srm1 = layers[0], layers[1]
        self.delay = next((l for l in layers if isinstance(l, Delay)), None)
        self.pool = next((l for l in layers if isinstance(l, Pool)), None)
        self.srm2 = layers[-1] if self.pool is not None else None
        nxt = self.following[0] if self.following else None
        self.next_kind = "dense" if isinstance(nxt, Dense) else "conv"
        self._x = None
        self._saved = None
        self._stages = {}
        self._layer_steps = None  # set when the input was too dense: the layers run one by one
        self.network_conv_outputs = 0  # conv output values per bin and sample of the whole network (build_plan)

    def _stage(self, srm, dtype):
        from .ops.convblock import NeuronStage
        key = (id(srm), np.dtype(dtype).str)
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
        from .ops.convblock import conv_block_forward
        self.conv.check_input(x)
        from .ops.convblock import uses_blas
        x = x if isinstance(x, SpikeEvents) else SpikeEvents.from_dense(x)
        out_bytes = int(np.prod(self.conv.output_shape(self.conv.in_shape))) * x.shape[0] * x.shape[4] * \
            self.conv.weight.data.itemsize
        if x.shape[0] < FUSED_CONV_MIN_BATCH or (x.density > CONV_EVENT_DENSITY_THRESHOLD and (
                not uses_blas(x, self.conv.stride) or out_bytes <= BLAS_BLOCK_MIN_BYTES
                or self.unfused_bytes(x.shape[0], x.shape[4]) <= self.options.memory_budget)):
            # the layers one by one, as the unfused plan: a small batch (FUSED_CONV_MIN_BATCH), or a dense-ish
            # input where the conv is strided (its direct loops) or the batch small enough (BLAS_BLOCK_MIN_BYTES,
            # the memory budget)
            x = x.to_dense()
            self._layer_steps = [LayerStep(l, self.options) for l in self.layers]
            for step in self._layer_steps:
                x = step.forward(x, train)
            return x
        self._layer_steps = None
        from .ops.convblock import STORE_POTENTIALS_BYTES, potential_bytes
        w, delay, pool, st1, st2 = self._args()
        keep = train and potential_bytes(w, x, self.conv.stride, self.conv.padding, pool) <= STORE_POTENTIALS_BYTES
        out = conv_block_forward(w, x, self.conv.stride, self.conv.padding, st1, delay, pool, st2, keep_potentials=keep)
        s1, s2 = out[0], out[1]
        self._saved = out[2] if keep else None
        self._x = x if train else None
        self.srm1.record(s1)
        if self.pool is not None:
            self.srm2.record(s2)
            return s2
        if self.delay is None:
            return s1
        d, ts = delay
        y = F.delay_events(s1, d, ts)
        threshold = EVENT_DENSITY_THRESHOLD if self.next_kind == "dense" else CONV_EVENT_DENSITY_THRESHOLD
        if y.n_events > threshold * int(np.prod(y.shape)):  # too dense for the next layer's event paths
            return y.to_dense()  # bitwise F.delay of the dense spikes (delay_events' contract)
        return y

    def unfused_bytes(self, n: int, t: int) -> int:
        """The estimated peak bytes of the network's conv layers run unfused for a batch of ``n`` samples
        of ``t`` bins: ``UNFUSED_VALUES_PER_OUTPUT x n x t x network_conv_outputs x itemsize``."""
        outputs = self.network_conv_outputs or int(np.prod(self.conv.output_shape(self.conv.in_shape)))
        return UNFUSED_VALUES_PER_OUTPUT * n * t * outputs * self.conv.weight.data.itemsize

    def backward(self, grad):
        from .ops.convblock import conv_block_backward
        if self._layer_steps is not None:
            for step in reversed(self._layer_steps):
                grad = step.backward(grad)
            return grad
        if self._x is None:
            raise RuntimeError(f"{self.conv.name}: backward called without a forward(train=True)")
        w, delay, pool, st1, st2 = self._args()
        gx, gw, gd = conv_block_backward(w, self._x, self.conv.stride, self.conv.padding, st1, materialize(grad),
                                         delay, pool, st2, need_input_grad=not self.first, saved=self._saved)
        self._saved = None
        self.conv.weight.accumulate_grad(gw)
        if self.delay is not None:
            self.delay.delay.accumulate_grad(gd)
        return gx


def _conv_block(pattern, name):
    from .layers import Pool
    types = {"conv": Conv, "srm": SRM, "delay": Delay, "pool": Pool}
    cls = type(name, (ConvBlock,), {"pattern": tuple(types[p] for p in pattern),
                                    "__doc__": " -> ".join(p.capitalize() for p in pattern) + " (see ConvBlock)."})
    return register_block(cls)


ConvSRMDelayPoolSRMBlock = _conv_block(("conv", "srm", "delay", "pool", "srm"), "ConvSRMDelayPoolSRMBlock")
ConvSRMPoolSRMBlock = _conv_block(("conv", "srm", "pool", "srm"), "ConvSRMPoolSRMBlock")
ConvSRMDelayBlock = _conv_block(("conv", "srm", "delay"), "ConvSRMDelayBlock")
ConvSRMBlock = _conv_block(("conv", "srm"), "ConvSRMBlock")
