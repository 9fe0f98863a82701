r"""Execution plans: a network's layers as a sequence of steps, single layers or fused blocks.

A :class:`~pysrm.network.Network` does not run its layers one by one itself: a :class:`Planner`
compiles them into a plan (:meth:`Planner.build`) and the network's ``forward`` and ``backward`` are
loops over the plan's steps::

    for step in plan:           x = step.forward(x, train)
    for step in reversed(plan): grad = step.backward(grad)

**Steps.**  A step is either a :class:`LayerStep` (one layer, its own ``forward``/``backward``) or a
fused **block** (the package :mod:`pysrm.blocks`, one module per block family): a :class:`Step`
subclass that declares the layer ``pattern`` it covers (e.g. ``(Dense, SRM, Delay)``), its conditions
(:meth:`Step.applies`), and runs those layers' ops as fewer passes over memory.

**The planner.**  A :class:`Planner` owns its block classes (:meth:`Planner.register`; no module-level
registry).  At each position of the layer list it takes the first of its blocks (longest pattern
first, then in the order registered) whose :meth:`Step.matches` accepts the layers there, else a
single-layer step.  :func:`default_planner` returns a new planner with the standard blocks of a device
(:func:`pysrm.blocks.cpu_blocks`; with :func:`pysrm.blocks.cuda_blocks` as well for ``"cuda"``), so a
block registered in one planner changes no other.  A network uses the default planner unless given
one (``Network(..., planner=...)``).

**Value kinds.**  What passes between two steps is one of three kinds of value:

==========================  ===========================================================================
kind                        what it is
==========================  ===========================================================================
:data:`ARRAY`               a dense ``(N, C, H, W, T)`` array (a gradient: of that shape)
:data:`EVENTS`              spikes as :class:`~pysrm.events.SpikeEvents` (forward only)
:data:`DENSE_INPUT_GRAD`    a dense layer's input gradient not yet computed
                            (:class:`pysrm.ops.dense.DenseInputGrad`; backward only)
==========================  ===========================================================================

Every step declares the kinds its forward takes and gives (``takes``, ``gives``; a step that takes
events also says up to which density it prefers them, ``events_max_density``) and the kinds its
backward takes and gives (``grad_takes``, ``grad_gives``); a :class:`LayerStep` declares its layer's
(:class:`pysrm.layers.Layer`).  The planner connects each pair of neighbouring steps
(:meth:`Planner.link`): a step hands on events where it can give them and the next step takes them
(its ``Step.output``, a :class:`Link`), else an array; its backward hands on a deferred dense
input gradient where it can and the step before takes one (``Step.grad_output``), else an array.
Kinds other than arrays are linked only in a fused CPU plan (:attr:`PlanOptions.linked_kinds`); the
network's output is an array.  No block looks at the layers around its pattern.

**Network-wide facts.**  Every step of a plan gets the plan's :class:`PlanContext`: the options and
the facts about the whole network a block's policy may need, each computed once per plan (e.g. the
conv output values per sample and bin that the conv blocks' memory rule reads).

**Caches.**  A step keeps what its backward needs in ``Step.cache`` (a dict) and its layers keep
theirs in :attr:`pysrm.layers.Layer.cache`; :meth:`Step.release` empties both (a network calls it
before each forward).

**The device is fixed per plan.**  A plan is built for ``PlanOptions.device``: a CPU plan holds CPU
blocks and layers only and never imports a CUDA module (tested in a fresh process); a CUDA plan's
blocks (:mod:`pysrm.blocks.cuda`) are imported by :func:`default_planner` for ``"cuda"`` only.

Fusion is an option of the network (``Network(..., fuse=True)``, the default; ``fuse=False`` runs
every layer on its own), and so is ``strategy="plain"`` (every op's plain definition, no fusion).
Tests: ``tests/test_plan.py`` (the planner, value kinds, a block registered in its own planner, the
plain strategy), ``tests/test_blocks_dense_srm.py``, ``tests/test_blocks_conv.py`` (every block
against the unfused plan), ``tests/test_cuda_plan.py`` (the CUDA blocks, under the simulator).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import settings
from .ops.dense import DenseInputGrad

#: a dense array (forward: values or spikes; backward: a gradient)
ARRAY = "array"
#: spikes as :class:`~pysrm.events.SpikeEvents` (forward only)
EVENTS = "events"
#: a dense layer's input gradient not yet computed (:class:`~pysrm.ops.dense.DenseInputGrad`; backward only)
DENSE_INPUT_GRAD = "dense_input_grad"
#: every kind of value a plan hands between steps
VALUE_KINDS = (ARRAY, EVENTS, DENSE_INPUT_GRAD)


@dataclass(frozen=True)
class PlanOptions:
    """What a plan is built for.

    Parameters
    ----------
    fuse : bool
        use blocks where they apply
    strategy : str
        ``"auto"`` (the ops' fast strategies) or ``"plain"`` (every op's plain definition, no fusion)
    device : str
        ``"cpu"`` or ``"cuda"``: the device of every step of the plan
    memory_budget : int
        bytes (default: the setting ``memory_budget`` of :mod:`pysrm.settings`, 0): what a block may plan to hold at once (the conv blocks'
        schedule rule, :class:`pysrm.blocks.conv.ConvBlock`)

    Raises
    ------
    ValueError
        a ``memory_budget`` that is not a number of bytes >= 0
    """

    fuse: bool = True
    strategy: str = "auto"
    device: str = "cpu"
    memory_budget: int = None

    def __post_init__(self):
        if self.memory_budget is None:
            object.__setattr__(self, "memory_budget", settings.current().memory_budget)
        b = self.memory_budget
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0:
            raise ValueError(f"memory_budget must be a number of bytes >= 0; got {b!r}")

    @property
    def cpu_fusion(self) -> bool:
        """True when CPU blocks may match."""
        return self.fuse and self.strategy == "auto" and self.device == "cpu"

    @property
    def linked_kinds(self) -> frozenset:
        """Which kinds of value the planner may hand between steps (all of :data:`VALUE_KINDS` in a fused
        CPU plan, only :data:`ARRAY` otherwise, i.e. in a layer-by-layer or plain plan and a CUDA plan)."""
        return frozenset(VALUE_KINDS) if self.cpu_fusion else frozenset((ARRAY,))


@dataclass(frozen=True)
class Link:
    """What a step's forward hands on (set by :meth:`Planner.link`): ``kind`` (:data:`ARRAY` or
    :data:`EVENTS`) and, for events, ``max_density``: the fraction of active values above which the
    next step prefers an array (its ``events_max_density``)."""

    kind: str = ARRAY
    max_density: float = 1.0


class PlanContext:
    """What every step of one plan shares: the plan's ``options`` and facts about the whole network
    (``layers``: all of its layers, in order), each computed once per plan and kept here.

    Parameters
    ----------
    layers : sequence of Layer
    options : PlanOptions
    """

    def __init__(self, layers, options: PlanOptions):
        self.layers = tuple(layers)
        self.options = options
        self._output_values = {}

    def keeps_potentials(self, conv, n: int, t: int, itemsize: int) -> bool:
        """Whether the fused conv block of the Conv layer ``conv`` keeps its potentials in a training forward
        of ``n`` samples of ``t`` bins: the network's Conv layers, in order, each claim about
        ``n t (conv outputs + pooled outputs) itemsize`` bytes (the potentials of its SRM and of the SRM
        after the pooling that follows it before the next Conv or Dense layer), and a layer keeps them where
        its claim still fits in the setting ``store_potentials_bytes`` (the total for the network) after
        the claims of the earlier layers that fit.  A rule on shapes only (never on threads or timing)."""
        from .layers import Conv, Dense, Pool
        budget = settings.current().store_potentials_bytes
        used = 0
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Conv):
                continue
            values = int(np.prod(layer.output_shape(layer.in_shape)))
            for nxt in self.layers[i + 1:]:
                if isinstance(nxt, (Conv, Dense)):
                    break
                if isinstance(nxt, Pool):
                    values += int(np.prod(nxt.output_shape(nxt.in_shape)))
                    break
            claim = n * t * values * itemsize
            fits = used + claim <= budget
            if fits:
                used += claim
            if layer is conv:
                return fits
        return False

    def output_values(self, layer_type) -> int:
        """The output values per sample and time bin of the network's layers of ``layer_type`` together
        (e.g. ``Conv``: what the conv blocks' memory rule reads).  Computed once per type."""
        n = self._output_values.get(layer_type)
        if n is None:
            n = self._output_values[layer_type] = sum(int(np.prod(l.output_shape(l.in_shape))) for l in self.layers
                                                      if isinstance(l, layer_type))
        return n


def materialize(grad):
    """``grad`` as an array (a :class:`~pysrm.ops.dense.DenseInputGrad` is computed; None stays None)."""
    return grad.materialize() if isinstance(grad, DenseInputGrad) else grad


class Step:
    """One step of a plan: covers ``layers`` (consecutive layers of the network).

    Subclasses set ``pattern`` (the layer types, in order; an entry may be a tuple of types) and
    implement ``forward(x, train)`` and ``backward(grad)``; they may override :meth:`applies` (the
    block's own conditions) and the value kinds below.  ``backward`` returns the gradient of the step's
    input (None for a first step).

    Attributes
    ----------
    takes, gives : tuple of str
        the value kinds (:data:`VALUE_KINDS`) the forward takes and can give
    events_max_density : float
        where the forward takes events: the fraction of active values up to which it prefers them
    grad_takes, grad_gives : tuple of str
        the kinds the backward takes and can give
    output : Link
        what the forward hands on (set by the planner)
    grad_output : str
        what the backward hands on (set by the planner)
    cache : dict
        what the backward needs from the last forward; emptied by :meth:`release`
    context : PlanContext
        the plan's options and network-wide facts (``options`` is ``context.options``)
    """

    pattern: tuple = ()
    takes = (ARRAY,)
    gives = (ARRAY,)
    events_max_density = 1.0
    grad_takes = (ARRAY,)
    grad_gives = (ARRAY,)

    def __init__(self, layers, context: PlanContext):
        self.layers = tuple(layers)
        self.context = context
        self.options = context.options
        self.output = Link()
        self.grad_output = ARRAY
        self.cache = {}

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
        """The block's conditions beyond the layer types (default: none)."""
        return True

    def release(self):
        """Drop the caches of the last forward pass: ``cache`` and the layers' own
        (:meth:`pysrm.layers.Layer.release`)."""
        self.cache.clear()
        for layer in self.layers:
            layer.release()

    @property
    def first(self) -> bool:
        """True for a step whose input needs no gradient (the network's first)."""
        return not self.layers[0].need_input_grad

    def cached(self, name: str):
        """``cache[name]``; RuntimeError when the last forward did not keep it (no ``train=True``)."""
        value = self.cache.get(name)
        if value is None:
            raise RuntimeError(f"{self.describe()}: backward called without a forward(train=True)")
        return value

    def forward(self, x, train: bool = False):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({', '.join(l.name for l in self.layers)})"

    def __repr__(self):
        return self.describe()


class LayerStep(Step):
    """One layer on its own: its ``forward`` and ``backward``; the value kinds are the layer's
    (:class:`pysrm.layers.Layer`)."""

    def __init__(self, layer, context: PlanContext):
        super().__init__((layer,), context)
        self.layer = layer
        self.takes, self.gives = layer.takes, layer.gives
        self.events_max_density = layer.events_max_density
        self.grad_takes, self.grad_gives = layer.grad_takes, layer.grad_gives
        self._materialize = DENSE_INPUT_GRAD not in layer.grad_takes

    def forward(self, x, train: bool = False):
        return self.layer.forward(x, train)

    def backward(self, grad):
        if self._materialize:
            grad = materialize(grad)
        return self.layer.backward_as(grad, self.grad_output)

    def describe(self) -> str:
        return self.layer.name


class Planner:
    """Builds plans from the block classes it owns.

    Parameters
    ----------
    blocks : iterable of type
        :class:`Step` subclasses with a non-empty ``pattern`` (registered in this order)

    Raises
    ------
    TypeError
        a block that is not a :class:`Step` subclass with a pattern
    """

    def __init__(self, blocks=()):
        self._blocks = []
        for cls in blocks:
            self.register(cls)

    def register(self, cls):
        """Make ``cls`` available to this planner (no other); longer patterns are tried first, equal ones
        in the order registered.  Returns ``cls`` (usable as a class decorator of a planner's blocks)."""
        if not (isinstance(cls, type) and issubclass(cls, Step)) or not cls.pattern:
            raise TypeError(f"{cls!r} must be a Step subclass with a non-empty pattern")
        self._blocks.append(cls)
        self._blocks.sort(key=lambda c: -len(c.pattern))
        return cls

    @property
    def blocks(self) -> tuple:
        """The block classes tried, in order."""
        return tuple(self._blocks)

    def build(self, layers, options: PlanOptions) -> list:
        """The steps that run ``layers`` for ``options``, linked (:meth:`link`)."""
        layers = list(layers)
        context = PlanContext(layers, options)
        steps = []
        i = 0
        while i < len(layers):
            step = None
            if options.fuse:
                for cls in self._blocks:
                    if cls.matches(layers, i, options):
                        step = cls(layers[i:i + len(cls.pattern)], context)
                        break
            if step is None:
                step = LayerStep(layers[i], context)
            steps.append(step)
            i += len(step.layers)
        self.link(steps, options)
        return steps

    @staticmethod
    def link(steps, options: PlanOptions):
        """Connect neighbouring steps by the value kinds they declare (module docstring): a step's
        ``output`` is events where it gives them and the next step takes them, else an array
        (the last step's: an array); its ``grad_output`` is a deferred dense input gradient
        where it gives one and the step before takes one, else an array.  Only the kinds of
        ``options.linked_kinds`` are linked."""
        kinds = options.linked_kinds
        for prev, step in zip(steps, steps[1:]):
            events = EVENTS in kinds and EVENTS in prev.gives and EVENTS in step.takes
            prev.output = Link(EVENTS, step.events_max_density) if events else Link()
            deferred = (DENSE_INPUT_GRAD in kinds and DENSE_INPUT_GRAD in step.grad_gives
                        and DENSE_INPUT_GRAD in prev.grad_takes)
            step.grad_output = DENSE_INPUT_GRAD if deferred else ARRAY
        if steps:
            steps[-1].output = Link()
            steps[0].grad_output = ARRAY


def default_planner(device: str = "cpu") -> Planner:
    """A new :class:`Planner` with the standard blocks of ``device``: the CPU blocks
    (:func:`pysrm.blocks.cpu_blocks`), and for ``"cuda"`` the CUDA blocks as well
    (:func:`pysrm.blocks.cuda_blocks`, imported only then)."""
    from .blocks import cpu_blocks, cuda_blocks
    return Planner(cpu_blocks() + (cuda_blocks() if device == "cuda" else ()))


def build_plan(layers, options: PlanOptions, planner: Planner | None = None) -> list:
    """The steps that run ``layers``: ``planner.build(layers, options)``, by default with
    :func:`default_planner` of ``options.device``."""
    return (planner or default_planner(options.device)).build(layers, options)
