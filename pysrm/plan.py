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

Blocks of this module (CPU, event-driven first layers; their ops are in :mod:`pysrm.ops.srm` and
:mod:`pysrm.ops.delay`):

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


@dataclass(frozen=True)
class PlanOptions:
    """What a plan is built for: ``fuse`` (use blocks), ``strategy`` (``"auto"`` or ``"plain"``) and
    ``device`` (``"cpu"`` or ``"cuda"``)."""

    fuse: bool = True
    strategy: str = "auto"
    device: str = "cpu"

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
