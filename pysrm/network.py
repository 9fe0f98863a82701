r"""Networks built from the Spikemax paper's shorthand strings.

Grammar (tokens joined by ``-``)::

    first token   input shape: HxWxC (e.g. 34x34x2) or N (N channels, shape (N, 1, 1))
    KcN           conv with K output channels and an N x N kernel; optional sS stride and
                  pP padding suffixes (16c5p1); default stride 1, padding N // 2
    Na            sum pooling N x N (stride N), fixed weight 1.1 * theta
    N             dense layer with N neurons

Every conv and dense layer is followed by SRM neurons and, with
``delays=True``, a trainable axonal delay on its output spikes (not on the
output layer).  Pooling layers are followed by SRM neurons too (as in SLAYER).
With ``dropout=p > 0`` a :class:`~pysrm.layers.Dropout` precedes every conv
and dense layer except the first.

A network simulates inputs of any length (``t_sample`` only bounds the
response kernels), so the same network can be tested on longer samples than it
was trained on (DVS Gesture: 300 ms training windows, 1.5 s test samples).

``Network.forward`` keeps every spiking layer's output of the last forward in
``layer_spikes`` (for spike counts per layer).

A network runs its layers through an execution plan (:mod:`pysrm.plan`): ``forward`` and
``backward`` are loops over the plan's steps, single layers or fused blocks (:mod:`pysrm.blocks`;
on the CPU: Dense -> SRM [-> Delay] on event inputs and the conv blocks; on the GPU the CUDA blocks),
built by a :class:`~pysrm.plan.Planner` (``Network(..., planner=...)``; by default
:func:`pysrm.plan.default_planner` of the network's device).
``Network(..., fuse=False)`` runs every layer on its own; ``strategy="plain"`` runs every op's plain
definition (slow; for reading and checking).  ``net.plan`` lists the steps.  The blocks give the
separate layers' results (bitwise, or to float rounding where a sum's order differs; tested).

State: the network owns its work arrays (``net.workspace``, :class:`pysrm.workspace.Workspace`) and
its layers own the caches of their last forward pass, so two networks can run in two threads at
once and give what they give one after the other (tested).  A network itself is used by one thread
at a time.  Its compute runs with the BLAS limited to one thread (pysrm's Numba loops run their
single-threaded BLAS calls in parallel; :func:`pysrm._threads.compute_scope`), restored afterwards.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np

from ._checks import all_finite, trusted_inputs
from ._threads import compute_scope
from .backend import is_device_array, resolve_device
from .events import SpikeEvents
from .layers import SRM, Conv, Delay, Dense, Dropout, Layer, Pool
from .params import NeuronParams, SimParams
from . import settings
from .plan import PlanOptions, Planner, default_planner, materialize
from .workspace import Workspace

#: values of the ``strategy`` option
STRATEGIES = ("auto", "plain")

_INPUT_RE = re.compile(r"^(\d+)x(\d+)x(\d+)$|^(\d+)$")
_CONV_RE = re.compile(r"^(\d+)c(\d+)(?:s(\d+))?(?:p(\d+))?$")
_POOL_RE = re.compile(r"^(\d+)a$")
_DENSE_RE = re.compile(r"^(\d+)$")

GRAMMAR_HELP = ("expected tokens joined by '-': an input shape 'HxWxC' or 'N' first, then 'KcN' (conv, optional "
                "'sS' stride / 'pP' padding), 'Na' (sum pool) or 'N' (dense), e.g. '34x34x2-16c5-2a-32c3-2a-64c3-512-10'")


def parse_net(spec: str):
    r"""Parse a shorthand string into ``(input_shape, [(kind, args), ...])``.

    Parameters
    ----------
    spec : str
        The network string (module docstring), e.g. ``'34x34x2-16c5-2a-32c3-2a-64c3-512-10'``: an input
        shape ``'HxWxC'`` or ``'N'``, then ``'KcN'`` (conv, optional ``'sS'`` stride / ``'pP'`` padding),
        ``'Na'`` (sum pool) or ``'N'`` (dense), joined by ``'-'``.

    Returns
    -------
    input_shape : tuple of int
        ``(C, H, W)`` of one sample (``(N, 1, 1)`` for ``'N'``).
    layers : list of (str, dict)
        ``("conv", {"out_channels", "kernel", "stride", "padding"})``, ``("pool", {"kernel"})`` or
        ``("dense", {"out_features"})``, in order.

    Raises
    ------
    TypeError
        ``spec`` is not a string.
    ValueError
        A malformed string or token, a size < 1, or a string ending with a pooling layer (the message
        gives the grammar).
    """
    if not isinstance(spec, str):
        raise TypeError(f"network spec must be a string, got {type(spec).__name__}")
    tokens = spec.strip().split("-")
    if len(tokens) < 2 or any(t == "" for t in tokens):
        raise ValueError(f"malformed network string {spec!r}: {GRAMMAR_HELP}")
    m = _INPUT_RE.match(tokens[0])
    if not m:
        raise ValueError(f"malformed input shape {tokens[0]!r} in network string {spec!r}: {GRAMMAR_HELP}")
    if m.group(4) is not None:
        in_shape = (int(m.group(4)), 1, 1)
    else:
        h, w, c = int(m.group(1)), int(m.group(2)), int(m.group(3))
        in_shape = (c, h, w)
    if min(in_shape) < 1:
        raise ValueError(f"input shape {tokens[0]!r} in {spec!r} must have sizes >= 1")
    layers = []
    for tok in tokens[1:]:
        if (m := _CONV_RE.match(tok)):
            co, k = int(m.group(1)), int(m.group(2))
            s = int(m.group(3)) if m.group(3) else 1
            p = int(m.group(4)) if m.group(4) is not None else None
            if co < 1 or k < 1 or s < 1:
                raise ValueError(f"conv token {tok!r} in {spec!r} needs channels, kernel and stride >= 1")
            layers.append(("conv", dict(out_channels=co, kernel=k, stride=s, padding=p)))
        elif (m := _POOL_RE.match(tok)):
            k = int(m.group(1))
            if k < 1:
                raise ValueError(f"pool token {tok!r} in {spec!r} needs a size >= 1")
            layers.append(("pool", dict(kernel=k)))
        elif (m := _DENSE_RE.match(tok)):
            n = int(m.group(1))
            if n < 1:
                raise ValueError(f"dense token {tok!r} in {spec!r} needs >= 1 neurons")
            layers.append(("dense", dict(out_features=n)))
        else:
            raise ValueError(f"unknown layer token {tok!r} in network string {spec!r}: {GRAMMAR_HELP}")
    if layers[-1][0] == "pool":
        raise ValueError(f"network string {spec!r} ends with a pooling layer; expected a dense or conv output layer")
    return in_shape, layers


def _check_finite_input(name, x):
    """The one scan for NaN/inf at the network boundary (the layers then run with trusted inputs)."""
    if is_device_array(x):
        return
    values = x.value if isinstance(x, SpikeEvents) else x
    if isinstance(values, np.ndarray) and not all_finite(values):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); expected finite numbers")


class Network:
    """A feed-forward spiking network: a sequence of layers, run through an execution plan.

    Parameters
    ----------
    layers : list of Layer
        the layers (:class:`~pysrm.layers.Layer`), in order
    input_shape : tuple
        ``(C, H, W)`` of one sample
    neuron, sim : NeuronParams, SimParams
        :class:`~pysrm.params.NeuronParams`, :class:`~pysrm.params.SimParams`
    spec : str or None
        the shorthand string it was built from (for messages)
    fuse : bool
        run layer sequences as the fused blocks of :mod:`pysrm.blocks` where they apply
    strategy : str
        ``"auto"`` (the ops' fast strategies) or ``"plain"`` (every op's plain definition; implies no
        fusion)
    memory_budget : int, optional
        bytes (default: the setting ``memory_budget`` of :mod:`pysrm.settings`, 0): the conv layers
        whose convs run as BLAS products run unfused when the whole network's unfused conv layers fit in it, else as
        fused blocks (faster and leaner) (:class:`pysrm.blocks.conv.ConvBlock`); spikes are the same either way, weight
        gradients equal to float rounding
    planner : Planner or None
        the :class:`~pysrm.plan.Planner` that builds the plan (its blocks); None: a new
        :func:`~pysrm.plan.default_planner` of the network's device each time the plan is built

    Raises
    ------
    ValueError
        an unknown ``strategy``, a negative ``memory_budget``
    """

    def __init__(self, layers: list, input_shape, neuron: NeuronParams, sim: SimParams, spec: str | None = None,
                 fuse: bool = True, strategy: str = "auto", memory_budget: int | None = None,
                 planner: Planner | None = None):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.neuron, self.sim, self.spec = neuron, sim, spec
        self.device = "cpu"
        self.planner = planner
        self.workspace = Workspace()
        for i, layer in enumerate(self.layers):
            layer.need_input_grad = i > 0
        self.output_shape = self._shape_after(len(self.layers))
        self.configure(fuse=fuse, strategy=strategy, memory_budget=memory_budget)

    def configure(self, fuse: bool | None = None, strategy: str | None = None,
                  memory_budget: int | None = None) -> "Network":
        r"""Change the execution options and rebuild the plan.

        Parameters
        ----------
        fuse : bool or None, default None
            Run layer sequences as fused blocks where they apply; None keeps the current value.
        strategy : {"auto", "plain"} or None, default None
            The ops' fast strategies or their plain definitions (implies no fusion); None keeps the current
            value.
        memory_budget : int or None, default None
            Bytes (as for :class:`Network`); None keeps the current value (on the first call: the setting
            ``memory_budget`` in force).

        Returns
        -------
        Network
            ``self``.

        Raises
        ------
        ValueError
            An unknown ``strategy`` or a negative ``memory_budget``.
        """
        old = self.options  # None on the first call (from __init__)
        fuse = (old.fuse if old is not None else True) if fuse is None else bool(fuse)
        strategy = (old.strategy if old is not None else "auto") if strategy is None else strategy
        if memory_budget is None and old is not None:
            memory_budget = old.memory_budget  # else None: PlanOptions takes the setting in force now
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(map(repr, STRATEGIES))}")
        if isinstance(memory_budget, float) and memory_budget.is_integer():
            memory_budget = int(memory_budget)
        self.options = PlanOptions(fuse=fuse and strategy == "auto", strategy=strategy, device=self.device,
                                   memory_budget=memory_budget)
        for layer in self.layers:
            layer.strategy = strategy
            layer.workspace = self.workspace
        planner = self.planner if self.planner is not None else default_planner(self.device)
        self.plan = planner.build(self.layers, self.options)
        return self

    options = None  # the PlanOptions of the plan (configure)
    _forward_settings = None  # the settings the last training forward ran with (its backward uses them)

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_string(cls, spec: str, neuron: NeuronParams | None = None, sim: SimParams | None = None,
                    delays: bool = False, delay_per: str = "neuron", dropout: float = 0.0, seed: int = 0,
                    dtype=np.float32, srm_tolerance: float = 0.01, ref_tolerance: float = 0.01,
                    dense_weight_scale: float = 10.0, conv_weight_scale: float = 100.0, fuse: bool = True,
                    strategy: str = "auto", memory_budget: int | None = None,
                    planner: Planner | None = None) -> "Network":
        r"""Build a network from a shorthand string (see the module docstring).

        Every conv or dense layer is followed by SRM neurons (the last ones named ``"output"``); pooling
        layers too.

        Parameters
        ----------
        spec : str
            The network string (:func:`parse_net`).
        neuron : NeuronParams or None, default None
            The neurons' parameters (ms); None means ``NeuronParams()``.
        sim : SimParams or None, default None
            ``ts`` and ``t_sample`` (ms); None means ``SimParams()``.
        delays : bool, default False
            Add a trainable :class:`~pysrm.layers.Delay` after every hidden conv/dense layer's neurons.
        delay_per : {"neuron", "channel"}, default "neuron"
            One delay per neuron or per channel.
        dropout : float, default 0.0
            Dropout probability before every conv/dense layer but the first (0: none); ``0 <= p < 1``.
        seed : int, default 0
            Seed of the weight initialisation and the dropout masks.
        dtype : numpy dtype, default float32
            float32 or float64, of the parameters (inputs are converted to it).
        srm_tolerance, ref_tolerance : float, default 0.01
            Where the sampled responses are cut (relative to their peak).
        dense_weight_scale : float, default 10.0
            Factor on the initial dense weights.
        conv_weight_scale : float, default 100.0
            Factor on the initial conv weights.
        fuse, strategy, memory_budget, planner
            As for :class:`Network`.

        Returns
        -------
        Network
            The network, on the CPU.

        Raises
        ------
        TypeError
            ``dtype`` is not float32 or float64; ``spec`` is not a string.
        ValueError
            A malformed ``spec`` (:func:`parse_net`), a kernel that does not fit, ``dropout`` not in
            ``[0, 1)``, a ``delay_per`` other than ``'neuron'``/``'channel'``, an all-zero response, or an
            unknown ``strategy``.
        """
        neuron = neuron or NeuronParams()
        sim = sim or SimParams()
        dtype = np.dtype(dtype)
        if dtype.type not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        in_shape, plan = parse_net(spec)
        rng = np.random.default_rng(seed)
        layers: list[Layer] = []
        shape = in_shape
        counts = {"conv": 0, "pool": 0, "dense": 0}
        for idx, (kind, args) in enumerate(plan):
            counts[kind] += 1
            name = f"{kind}{counts[kind]}"
            last = idx == len(plan) - 1
            if kind in ("conv", "dense") and dropout > 0 and idx > 0:
                layers.append(Dropout(dropout, rng, name=f"dropout_{name}"))
            if kind == "conv":
                layer = Conv(shape, rng=rng, dtype=dtype, name=name, weight_scale=conv_weight_scale, **args)
            elif kind == "pool":
                layer = Pool(shape, args["kernel"], neuron.theta, name=name)
            else:
                layer = Dense(shape, args["out_features"], rng=rng, dtype=dtype, name=name,
                              weight_scale=dense_weight_scale)
            layers.append(layer)
            shape = layer.output_shape(shape)
            layers.append(SRM(neuron, sim, srm_tolerance, ref_tolerance, name=f"{name}.srm" if not last else "output"))
            if delays and kind != "pool" and not last:
                layers.append(Delay(shape, sim, per=delay_per, dtype=dtype, name=f"{name}.delay"))
        return cls(layers, in_shape, neuron, sim, spec, fuse=fuse, strategy=strategy, memory_budget=memory_budget,
                   planner=planner)

    def _shape_after(self, n):
        shape = self.input_shape
        for layer in self.layers[:n]:
            shape = layer.output_shape(shape)
        return shape

    def to(self, device: str) -> "Network":
        r"""Move the parameters (and their gradients) to ``'cuda'``, ``'cpu'`` or ``'auto'``.

        On ``'cuda'`` every op runs as a CUDA kernel and the arrays stay on the GPU; inputs
        given on the host are copied there by :meth:`forward`; the parameters and their gradients are
        packed into one device buffer each (:class:`pysrm.ops.optim_cuda.ParameterPack`: the gradients are zeroed
        and the optimisers update all parameters in one launch).  ``'auto'`` falls back to the CPU.

        Parameters
        ----------
        device : {"cuda", "cpu", "auto"}
            Where to.

        Returns
        -------
        Network
            ``self``.

        Raises
        ------
        CudaUnavailableError
            ``'cuda'`` without a usable GPU (:class:`~pysrm.backend.CudaUnavailableError`).
        """
        device = resolve_device(device)
        for p in self.parameters():
            p.to(device)
        if device == "cuda":  # all parameters (and gradients) in one buffer: one launch to zero / update
            from .ops.optim_cuda import ParameterPack
            ParameterPack.pack(self.parameters())
        self.device = device
        self.workspace.clear()
        return self.configure()

    @property
    def dtype(self):
        """The parameters' dtype (float32 or float64; float32 for a network without parameters)."""
        for p in self.parameters():
            return p.data.dtype
        return np.dtype(np.float32)

    # -- forward / backward -----------------------------------------------------------------------------
    def forward(self, x, train: bool = False):
        r"""Output spikes for input ``x``, through the plan's steps.

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T) with ``(C, H, W)`` the network's input shape and ``T >= 1``; converted to
            :attr:`dtype`; spikes of amplitude ``1/Ts``.
        train : bool, default False
            True keeps what :meth:`backward` needs.

        Returns
        -------
        ndarray, SpikeEvents or CUDA device array
            The output spikes, shape (N, classes, 1, 1, T), amplitude ``1/Ts``.

        Raises
        ------
        ValueError
            ``x`` has another shape, no time bin, or non-finite values.
        TypeError
            ``x`` is on the GPU but the network on the CPU.
        """
        shape = x.shape
        if len(shape) != 5 or tuple(shape[1:4]) != self.input_shape:
            raise ValueError(f"network input has shape {tuple(shape)}; expected (N, "
                             f"{', '.join(map(str, self.input_shape))}, T) for network {self.spec!r}")
        if shape[4] < 1:
            raise ValueError(f"network input has {shape[4]} time bins; expected at least one")
        dtype = self.dtype
        if self.device == "cuda":
            from . import cuda as dev
            x = dev.to_device(x, dtype)  # host batches are copied once; device ones only converted
        elif is_device_array(x):
            raise TypeError("network input is on the GPU but the network is on the CPU; call net.to('cuda')")
        elif isinstance(x, SpikeEvents):
            if x.dtype != dtype:
                x = x.astype(dtype)
        elif x.dtype != dtype:
            x = x.astype(dtype)
        _check_finite_input("network input", x)
        for step in self.plan:  # the last forward's caches and records go now, not after this forward's peak
            step.release()
        cfg = settings.current()
        self._forward_settings = cfg if train else None
        with compute_scope(), trusted_inputs():
            for step in self.plan:
                x = step.forward(x, train)
        return x

    __call__ = forward

    def backward(self, grad):
        r"""Back-propagate ``dL/d(output spikes)``; accumulates into every parameter's ``grad``.

        Parameters
        ----------
        grad : ndarray or CUDA device array
            The loss gradient with respect to the output spikes, shape (N, classes, 1, 1, T), the network's
            dtype.

        Returns
        -------
        ndarray, CUDA device array or None
            The gradient of the network input, shape (N, C, H, W, T) (None: the first layer needs none).

        Raises
        ------
        ValueError
            ``grad`` holds non-finite values, or has the wrong shape.
        RuntimeError
            No ``forward(train=True)`` ran before.
        """
        _check_finite_input("gradient of the network output", grad)
        cfg = self._forward_settings if self._forward_settings is not None else settings.current()
        with compute_scope(), trusted_inputs(), settings.use(cfg):  # the forward's settings: they agree
            for step in reversed(self.plan):
                grad = step.backward(grad)
                if grad is None:
                    break
            return materialize(grad)

    def describe_plan(self) -> str:
        r"""The plan's steps, one per line (a fused block lists the layers it covers).

        Returns
        -------
        str
            The description.
        """
        return "\n".join(f"  {k}: {step.describe()}" for k, step in enumerate(self.plan))

    # -- parameters -------------------------------------------------------------------------------------
    def parameters(self) -> list:
        r"""Every layer's trainable parameters, in layer order.

        Returns
        -------
        list of Parameter
            The parameters (weights, delays).
        """
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self):
        """Set every parameter's gradient to zero (one launch on the GPU when packed)."""
        params = self.parameters()
        if self.device == "cuda":
            from .ops.optim_cuda import zero_grads
            zero_grads(params)  # one launch when the parameters are packed (Network.to)
            return
        for p in params:
            p.zero_grad()

    @contextmanager
    def inference(self):
        r"""A block of forward passes with fixed parameters (evaluation, benchmarks).

        Inside it the parameters' NumPy arrays are read-only (writing to them raises), so what the CPU
        kernels derive from a weight -- the transposed copy the event-driven paths read -- is made once per
        block instead of once per forward pass (the network's workspace, ``Workspace.frozen``).  Results are
        bitwise those of plain forward calls; on exit the arrays are writeable again and the copies are
        dropped.

        Yields
        ------
        Network
            ``self``.
        """
        params = [p for p in self.parameters() if not p.on_device]
        flags = [p.data.flags.writeable for p in params]
        try:
            for p in params:
                p.data.flags.writeable = False
            with self.workspace.frozen():
                yield self
        finally:
            for p, f in zip(params, flags):
                p.data.flags.writeable = f

    def state_dict(self) -> dict:
        r"""``{name: NumPy copy of the parameter}`` (copied back from the GPU if needed).

        Returns
        -------
        dict of str to ndarray
            The parameters' values, their shapes and dtype.
        """
        return {p.name: (p.data.copy_to_host() if p.on_device else p.data.copy()) for p in self.parameters()}

    def load_state_dict(self, state: dict):
        r"""Copy the values of ``state`` into the parameters (on their device, in their dtype).

        Parameters
        ----------
        state : dict of str to ndarray
            As :meth:`state_dict` returns it: one array per parameter name, of its shape.

        Raises
        ------
        ValueError
            A parameter is missing or unexpected, or an array has another shape.
        """
        params = {p.name: p for p in self.parameters()}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(f"state does not match the network: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            if state[name].shape != p.data.shape:
                raise ValueError(f"parameter {name}: stored shape {state[name].shape}, network shape {p.data.shape}")
            if p.on_device:
                p.data.copy_to_device(np.ascontiguousarray(state[name], dtype=p.data.dtype))
            else:
                p.data[...] = state[name]

    @property
    def layer_spikes(self) -> list:
        """``[(name, spikes)]`` of every spiking layer from the last forward pass, dense ``(N, C, H, W, T)``
        arrays (made from the recorded events on first access where a fused block recorded events)."""
        return [(l.name, l.last_spikes) for l in self.layers if isinstance(l, SRM)]

    @property
    def recorded_spikes(self) -> list:
        """``[(name, spikes)]`` of every spiking layer from the last forward pass as recorded: a
        :class:`~pysrm.events.SpikeEvents` where a fused block produced events, else the dense array (no
        dense copy is made: what :func:`pysrm.classifier.spike_counts_per_layer` needs)."""
        return [(l.name, l.last_events if l.last_events is not None else l.last_spikes)
                for l in self.layers if isinstance(l, SRM)]

    def summary(self) -> str:
        r"""A table of the layers: name, type, output shape ``(C, H, W)``, parameter count, description.

        Returns
        -------
        str
            The table, one line per layer, and the total parameter count.
        """
        lines = [f"Network {self.spec!r}: input {self.input_shape}"]
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
            n = sum(p.data.size for p in layer.parameters())
            lines.append(f"  {layer.name:<18} {type(layer).__name__:<8} {str(shape):<16} params {n:<8} {layer.describe()}")
        lines.append(f"  total parameters: {sum(p.data.size for p in self.parameters())}")
        return "\n".join(lines)
