r"""The stateful half of pysrm: layers that hold parameters and the caches of
their last forward pass, and call the ops of :mod:`pysrm.functional`.

Every layer has ``forward(x, train=False)``, ``backward(grad) -> grad_input``
(accumulating ``+=`` into its parameters' ``grad``), ``parameters()`` and
``output_shape(input_shape)``.  Shapes are ``(C, H, W)`` per sample; tensors
are ``(N, C, H, W, T)``.  A layer keeps only its own parameters and the caches of
its own last forward pass (:attr:`Layer.cache`); it never reads another layer.
Sequences of layers run as fused passes are the blocks of :mod:`pysrm.blocks`, which
keep their own caches.

Each layer declares the kinds of value (:mod:`pysrm.plan`) its ``forward`` takes and
gives and its ``backward`` takes and gives (``takes``, ``gives``, ``grad_takes``,
``grad_gives``; by default arrays only); the planner links neighbouring steps by them.
The one kind beyond arrays and spike events is a dense layer's deferred input gradient
(:class:`~pysrm.ops.dense.DenseInputGrad`): :class:`Dense` can give it
(:meth:`Layer.backward_as`), :class:`Delay` takes it.

Two settings a :class:`~pysrm.network.Network` gives its layers: ``strategy``
(``"auto"`` or ``"plain"``: the ops' fast strategies, or the plain definitions) and
``workspace`` (the network's :class:`~pysrm.workspace.Workspace`; None: every op
allocates its work arrays for the call).

Weight initialisation follows SLAYER-PyTorch: PyTorch's default
``kaiming_uniform(a=sqrt(5))`` -- i.e. :math:`\mathcal U(-1/\sqrt{f}, 1/\sqrt{f})`
with fan-in :math:`f` -- multiplied by a ``weight_scale`` of 10 for dense and
100 for conv layers.  Pooling weights are fixed at ``1.1 * theta``.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .backend import is_device_array
from .events import SpikeEvents
from . import settings
from .ops.dense import DenseInputGrad, events_if_sparse
from .params import NeuronParams, SimParams
from .plan import ARRAY, DENSE_INPUT_GRAD, EVENTS
from .responses import check_responses

DENSE_WEIGHT_SCALE = 10.0
CONV_WEIGHT_SCALE = 100.0


class Parameter:
    r"""A trainable array with its gradient, and an optional lower clamp applied after each update.

    ``data`` and ``grad`` are NumPy arrays, or CUDA device arrays after :meth:`to` ``("cuda")``;
    the methods below work on either.

    Parameters
    ----------
    data : ndarray
        The initial values (any shape, float32 or float64; kept as given, not copied).
    name : str
        The parameter's name, e.g. ``"dense.weight"`` (the key in a state dict).
    lower : float or None, default None
        Where given, :meth:`clamp` keeps ``data >= lower`` (e.g. 0 ms for delays).
    """

    def __init__(self, data: np.ndarray, name: str, lower: float | None = None):
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name
        self.lower = lower

    @property
    def on_device(self) -> bool:
        """True when ``data`` is a CUDA device array."""
        return is_device_array(self.data)

    def to(self, device: str) -> "Parameter":
        r"""Move ``data`` and ``grad`` to ``'cuda'`` (device arrays) or ``'cpu'`` (NumPy arrays).

        Parameters
        ----------
        device : {"cuda", "cpu"}
            Where to; an array already there (or another value) is left as it is.

        Returns
        -------
        Parameter
            ``self``.
        """
        if device == "cuda" and not self.on_device:
            from . import cuda as dev
            self.data = dev.to_device(self.data)
            self.grad = dev.to_device(self.grad)
        elif device == "cpu" and self.on_device:
            from . import cuda as dev
            self.data = dev.to_host(self.data)
            self.grad = dev.to_host(self.grad)
        return self

    def accumulate_grad(self, g):
        r"""``grad += g`` (on the device with the CUDA accumulate kernel).

        Parameters
        ----------
        g : ndarray or CUDA device array
            A gradient of ``data``'s shape and dtype (a host array is copied to the device when ``grad`` is
            there).
        """
        if is_device_array(self.grad):
            from . import cuda as dev
            dev.accumulate(self.grad, dev.to_device(g))
        else:
            self.grad += g

    def zero_grad(self):
        """Set ``grad`` to zero in place."""
        if is_device_array(self.grad):
            from . import cuda as dev
            dev.memset_zero(self.grad)
        else:
            self.grad[...] = 0

    def clamp(self):
        """``data = max(data, lower)`` in place, where ``lower`` is given."""
        if self.lower is not None:
            if self.on_device:
                from . import cuda as dev
                dev.maximum(self.data, self.lower)
            else:
                np.maximum(self.data, self.lower, out=self.data)

    def __repr__(self):
        return f"Parameter({self.name}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: no parameters, identity shape.

    Attributes
    ----------
    takes, gives : tuple of str
        the kinds of value (:data:`pysrm.plan.VALUE_KINDS`) ``forward`` takes (prefers to be given) and
        gives; default arrays only
    events_max_density : float
        where ``forward`` takes events: the fraction of active values up to which it prefers them
    grad_takes, grad_gives : tuple of str
        the kinds ``backward`` takes and :meth:`backward_as` can give
    cache : dict
        what ``backward`` needs from the last forward pass; emptied by :meth:`release`
    """

    name = "layer"
    need_input_grad = True
    strategy = "auto"
    workspace = None
    takes = (ARRAY,)
    gives = (ARRAY,)
    events_max_density = 1.0
    grad_takes = (ARRAY,)
    grad_gives = (ARRAY,)

    @property
    def cache(self) -> dict:
        """What the backward needs from the last forward pass, a dict (made on first use)."""
        c = self.__dict__.get("_cache")
        if c is None:
            c = self.__dict__["_cache"] = {}
        return c

    def parameters(self) -> list:
        r"""The layer's trainable parameters.

        Returns
        -------
        list of Parameter
            Empty for the base class.
        """
        return []

    def zero_grad(self):
        """Set the gradients of :meth:`parameters` to zero."""
        for p in self.parameters():
            p.zero_grad()

    def output_shape(self, in_shape):
        r"""The per-sample output shape for a per-sample input shape.

        Parameters
        ----------
        in_shape : tuple of int
            ``(C, H, W)``.

        Returns
        -------
        tuple of int
            ``(C', H', W')``; the base class returns ``in_shape``.
        """
        return tuple(in_shape)

    def release(self):
        """Drop the caches of the last forward pass (a network calls this before each forward)."""
        self.cache.clear()

    def cached(self, name: str):
        r"""``cache[name]``, kept by the last forward pass.

        Parameters
        ----------
        name : str
            The cache entry, e.g. ``"x"`` or ``"u"``.

        Returns
        -------
        object
            The cached value.

        Raises
        ------
        RuntimeError
            The last forward did not keep it (no ``forward(train=True)`` before the backward).
        """
        value = self.cache.get(name)
        if value is None:
            raise RuntimeError(f"{self.name}: backward called without a forward(train=True)")
        return value

    def check_input(self, x):
        r"""Check that ``x`` is ``(N, *in_shape, T)`` (layers without ``in_shape`` accept any).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            The input tensor.

        Raises
        ------
        ValueError
            ``x`` is not 5-D or its ``(C, H, W)`` is not ``in_shape``.
        """
        in_shape = getattr(self, "in_shape", None)
        if in_shape is not None:
            _check_input_shape(self, x, in_shape)

    def forward(self, x, train: bool = False):  # pragma: no cover - interface
        r"""The layer's output for input ``x`` (an interface: subclasses implement it).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T), float32 or float64.
        train : bool, default False
            True keeps in :attr:`cache` what :meth:`backward` needs.

        Returns
        -------
        ndarray, SpikeEvents or CUDA device array
            Shape ``(N, *output_shape((C, H, W)), T)``.

        Raises
        ------
        NotImplementedError
            Always, in the base class.
        """
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - interface
        r"""The input gradient for the output gradient ``grad``; accumulates into the parameters' ``grad``.

        An interface: subclasses implement it.

        Parameters
        ----------
        grad : ndarray or CUDA device array
            The loss gradient with respect to the last forward's output, its shape and dtype.

        Returns
        -------
        ndarray, CUDA device array or None
            The gradient with respect to the input (None where ``need_input_grad`` is False).

        Raises
        ------
        NotImplementedError
            Always, in the base class.
        """
        raise NotImplementedError

    def backward_as(self, grad, kind: str = ARRAY):
        r""":meth:`backward`, its input gradient handed on as ``kind``.

        ``kind`` is one of ``grad_gives``: what the plan links (:meth:`pysrm.plan.Planner.link`).  The base
        class gives arrays only.

        Parameters
        ----------
        grad : ndarray or CUDA device array
            The loss gradient with respect to the last forward's output.
        kind : str, default ARRAY
            A value kind of :mod:`pysrm.plan` (``"array"``, ...).

        Returns
        -------
        ndarray, CUDA device array or None
            The input gradient, as :meth:`backward`.

        Raises
        ------
        ValueError
            ``kind`` is not one this layer gives.
        """
        if kind != ARRAY:
            raise ValueError(f"{self.name}: backward cannot give {kind!r}; it gives {self.grad_gives}")
        return self.backward(grad)

    def astype(self, dtype):
        r"""Convert the parameters to ``dtype`` (on their device) and reset their gradients to zero.

        Parameters
        ----------
        dtype : numpy dtype
            float32 or float64.

        Returns
        -------
        Layer
            ``self``.
        """
        for p in self.parameters():
            if p.on_device:
                from . import cuda as dev
                p.data = dev.astype(p.data, dtype)
                p.grad = dev.zeros_like(p.data)
            else:
                p.data = p.data.astype(dtype)
                p.grad = np.zeros_like(p.data)
        return self

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        r"""A short description of the layer's configuration (for ``repr`` and summaries).

        Returns
        -------
        str
            Empty for the base class.
        """
        return ""


def _check_input_shape(layer, x, in_shape):
    shape = x.shape
    if len(shape) != 5 or tuple(shape[1:4]) != tuple(in_shape):
        raise ValueError(f"{layer.name}: input has shape {tuple(shape)}; expected (N, {', '.join(map(str, in_shape))}, T)")


class Dense(Layer):
    r"""Fully connected synapse ``(C, H, W) -> (out_features, 1, 1)`` (see :mod:`pysrm.ops.dense`).

    ``a[n, o, t] = sum_i w[o, i] x[n, i, t]``; the weights start as
    :math:`\mathcal U(-1/\sqrt{f}, 1/\sqrt{f})` times ``weight_scale``, with fan-in ``f = C*H*W``.

    Parameters
    ----------
    in_shape : tuple of int
        The input's ``(C, H, W)``.
    out_features : int
        The number of outputs ``O``.
    rng : numpy.random.Generator
        The source of the initial weights.
    weight_scale : float, default 10.0
        The factor on the initial weights (``DENSE_WEIGHT_SCALE``, SLAYER's).
    dtype : numpy dtype, default float32
        The weights' dtype (float32 or float64).
    name : str, default "dense"
        The layer's name (the weight is ``"<name>.weight"``, shape ``(O, C*H*W)``).
    """

    def __init__(self, in_shape, out_features: int, rng: np.random.Generator, weight_scale: float = DENSE_WEIGHT_SCALE,
                 dtype=np.float32, name: str = "dense"):
        self.in_shape = tuple(int(s) for s in in_shape)
        fan_in = int(np.prod(self.in_shape))
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(int(out_features), fan_in)) * weight_scale
        self.weight = Parameter(w.astype(dtype), f"{name}.weight")
        self.name = name

    takes = (ARRAY, EVENTS)
    @property
    def events_max_density(self) -> float:
        """Event inputs up to the dense op's event threshold (the setting ``event_density_threshold``)."""
        return settings.current().event_density_threshold
    #: its input gradient can be handed on uncomputed (CPU), to a step that reads it row by row
    grad_gives = (ARRAY, DENSE_INPUT_GRAD)

    def parameters(self):
        r"""The weight, ``(O, C*H*W)``.

        Returns
        -------
        list of Parameter
            ``[weight]``.
        """
        return [self.weight]

    def output_shape(self, in_shape):
        r"""The output shape ``(O, 1, 1)``.

        Parameters
        ----------
        in_shape : tuple of int
            The input's ``(C, H, W)`` (not used: the weight fixes the output).

        Returns
        -------
        tuple of int
            ``(O, 1, 1)``.
        """
        return (self.weight.data.shape[0], 1, 1)

    def forward(self, x, train=False):
        r"""The synaptic input ``a[n, o, t] = sum_i w[o, i] x[n, i, t]`` (:func:`pysrm.ops.dense.dense`).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T) with ``(C, H, W) == in_shape``, the weights' dtype.
        train : bool, default False
            True keeps ``x`` (as events when sparse) for :meth:`backward`.

        Returns
        -------
        ndarray or CUDA device array
            Shape (N, O, 1, 1, T), the weights' dtype.

        Raises
        ------
        ValueError
            ``x`` is not ``(N, *in_shape, T)``; errors of the op (non-finite values, ...).
        TypeError
            The op's dtype errors (``x`` not float32/float64, or not the weights' dtype).
        """
        _check_input_shape(self, x, self.in_shape)
        if self.strategy == "auto":
            x = events_if_sparse(x, "dense")  # found once, reused by the backward
        if train:
            self.cache["x"] = x
        return F.dense(self.weight.data, x, strategy=self.strategy, workspace=self.workspace)

    def backward(self, grad):
        r"""Accumulate the weight gradient; return the input gradient.

        ``grad_w[o, i] = sum_{n,t} g[n, o, t] x[n, i, t]``, ``grad_x[n, i, t] = sum_o w[o, i] g[n, o, t]``.

        Parameters
        ----------
        grad : ndarray or CUDA device array
            Shape (N, O, 1, 1, T), the weights' dtype.

        Returns
        -------
        ndarray, CUDA device array or None
            Shape (N, C, H, W, T); None for a first layer (``need_input_grad`` False).
        """
        return self.backward_as(grad, ARRAY)

    def backward_as(self, grad, kind: str = ARRAY):
        r""":meth:`backward`, the input gradient handed on as ``kind``.

        With ``kind`` :data:`~pysrm.plan.DENSE_INPUT_GRAD` the input gradient is returned as a
        :class:`~pysrm.ops.dense.DenseInputGrad` (not yet computed; CPU only).

        Parameters
        ----------
        grad : ndarray or CUDA device array
            Shape (N, O, 1, 1, T), the weights' dtype.
        kind : str, default ARRAY
            ``"array"`` or :data:`~pysrm.plan.DENSE_INPUT_GRAD`.

        Returns
        -------
        ndarray, DenseInputGrad, CUDA device array or None
            The input gradient, shape (N, C, H, W, T); None for a first layer.

        Raises
        ------
        RuntimeError
            No ``forward(train=True)`` ran before (:meth:`Layer.cached`).
        ValueError
            ``grad`` does not have the output's shape, or holds non-finite values.
            ``kind`` is not one this layer gives (from :meth:`Layer.backward_as`).
        """
        if kind not in self.grad_gives:
            return super().backward_as(grad, kind)
        x = self.cached("x")
        defer = kind == DENSE_INPUT_GRAD and self.need_input_grad and not self.weight.on_device
        gx, gw = F.dense_backward(self.weight.data, x, grad, self.need_input_grad and not defer,
                                  strategy=self.strategy, workspace=self.workspace)
        self.weight.accumulate_grad(gw)
        if defer:
            return DenseInputGrad(self.weight.data, grad, x.shape)
        return gx

    def describe(self):
        r"""``"<inputs> -> <outputs>"``.

        Returns
        -------
        str
            The description.
        """
        return f"{int(np.prod(self.in_shape))} -> {self.weight.data.shape[0]}"


class Conv(Layer):
    r"""2-D convolution synapse (see :mod:`pysrm.ops.conv`); default padding ``kernel // 2``.

    The weights start as :math:`\mathcal U(-1/\sqrt{f}, 1/\sqrt{f})` times ``weight_scale``, with
    fan-in ``f = C * kernel**2``.

    Parameters
    ----------
    in_shape : tuple of int
        The input's ``(C, H, W)``.
    out_channels : int
        The number of output channels ``Co``.
    kernel : int
        The kernel size ``K`` (pixels; square kernels ``K x K``).
    rng : numpy.random.Generator
        The source of the initial weights.
    stride : int, default 1
        The stride (pixels).
    padding : int or None, default None
        The zero padding (pixels); None means ``kernel // 2``.
    weight_scale : float, default 100.0
        The factor on the initial weights (``CONV_WEIGHT_SCALE``, SLAYER's).
    dtype : numpy dtype, default float32
        The weights' dtype (float32 or float64).
    name : str, default "conv"
        The layer's name (the weight is ``"<name>.weight"``, shape ``(Co, C, K, K)``).

    Raises
    ------
    ValueError
        The kernel (with its padding and stride) does not fit the input.
    """

    def __init__(self, in_shape, out_channels: int, kernel: int, rng: np.random.Generator, stride: int = 1,
                 padding: int | None = None, weight_scale: float = CONV_WEIGHT_SCALE, dtype=np.float32,
                 name: str = "conv"):
        self.in_shape = tuple(int(s) for s in in_shape)
        cin = self.in_shape[0]
        self.stride = int(stride)
        self.padding = int(kernel) // 2 if padding is None else int(padding)
        fan_in = cin * kernel * kernel
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(int(out_channels), cin, int(kernel), int(kernel))) * weight_scale
        self.weight = Parameter(w.astype(dtype), f"{name}.weight")
        self.name = name
        ho, wo = F.conv_output_size(self.in_shape[1], self.in_shape[2], int(kernel), self.stride, self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(f"{name}: kernel {kernel} (padding {self.padding}, stride {self.stride}) does not fit "
                             f"input {self.in_shape}")

    takes = (ARRAY, EVENTS)
    @property
    def events_max_density(self) -> float:
        """Event inputs up to the conv op's event threshold (the setting ``conv_event_density_threshold``)."""
        return settings.current().conv_event_density_threshold

    def parameters(self):
        r"""The weight, ``(Co, C, K, K)``.

        Returns
        -------
        list of Parameter
            ``[weight]``.
        """
        return [self.weight]

    def output_shape(self, in_shape):
        r"""The output shape ``(Co, Ho, Wo)`` (:func:`pysrm.ops.conv.conv_output_size`).

        Parameters
        ----------
        in_shape : tuple of int
            The input's ``(C, H, W)``.

        Returns
        -------
        tuple of int
            ``(Co, Ho, Wo)``.
        """
        k = self.weight.data.shape[2]
        return (self.weight.data.shape[0],) + F.conv_output_size(in_shape[1], in_shape[2], k, self.stride, self.padding)

    def forward(self, x, train=False):
        r"""The synaptic input, the per-time-bin convolution (:func:`pysrm.ops.conv.conv`).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T) with ``(C, H, W) == in_shape``, the weights' dtype.
        train : bool, default False
            True keeps ``x`` (as events when sparse) for :meth:`backward`.

        Returns
        -------
        ndarray or CUDA device array
            Shape (N, Co, Ho, Wo, T), the weights' dtype.

        Raises
        ------
        ValueError
            ``x`` is not ``(N, *in_shape, T)``; errors of the op (non-finite values, ...).
        TypeError
            The op's dtype errors (``x`` not float32/float64, or not the weights' dtype).
        """
        _check_input_shape(self, x, self.in_shape)
        if self.strategy == "auto":
            x = events_if_sparse(x, "conv")  # found once, reused by the backward
        if train:
            self.cache["x"] = x
        return F.conv(self.weight.data, x, self.stride, self.padding, strategy=self.strategy)

    def backward(self, grad):
        r"""Accumulate the weight gradient; return the input gradient (:func:`pysrm.ops.conv.conv_backward`).

        Parameters
        ----------
        grad : ndarray or CUDA device array
            Shape (N, Co, Ho, Wo, T), the weights' dtype.

        Returns
        -------
        ndarray, CUDA device array or None
            Shape (N, C, H, W, T); None for a first layer (``need_input_grad`` False).
        """
        gx, gw = F.conv_backward(self.weight.data, self.cached("x"), grad, self.stride, self.padding, self.need_input_grad,
                                 strategy=self.strategy)
        self.weight.accumulate_grad(gw)
        return gx

    def describe(self):
        r"""``"<Ci> -> <Co>, kernel K, stride s, padding p"``.

        Returns
        -------
        str
            The description.
        """
        co, ci, k, _ = self.weight.data.shape
        return f"{ci} -> {co}, kernel {k}, stride {self.stride}, padding {self.padding}"


class Pool(Layer):
    r"""Sum pooling with fixed weight ``1.1 * theta`` (see :mod:`pysrm.ops.pool`).

    Parameters
    ----------
    in_shape : tuple of int
        The input's ``(C, H, W)``.
    kernel : int
        The window size and stride ``k`` (pixels).
    theta : float
        The threshold of the following neurons (the potential's unit); the weight is ``1.1 * theta``.
    name : str, default "pool"
        The layer's name.
    """

    def __init__(self, in_shape, kernel: int, theta: float, name: str = "pool"):
        self.in_shape = tuple(int(s) for s in in_shape)
        self.kernel = int(kernel)
        self.weight = 1.1 * float(theta)
        self.name = name

    takes = (ARRAY, EVENTS)
    @property
    def events_max_density(self) -> float:
        """Event inputs as the conv layers take them (pool's own strategy picks its path)."""
        return settings.current().conv_event_density_threshold

    def output_shape(self, in_shape):
        r"""The output shape ``(C, ceil(H/k), ceil(W/k))``.

        Parameters
        ----------
        in_shape : tuple of int
            The input's ``(C, H, W)``.

        Returns
        -------
        tuple of int
            ``(C, ceil(H/k), ceil(W/k))``.
        """
        return (in_shape[0],) + F.pool_output_size(in_shape[1], in_shape[2], self.kernel)

    def forward(self, x, train=False):
        r"""``a = 1.1 theta * sum over each k x k window`` (:func:`pysrm.ops.pool.pool`).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T) with ``(C, H, W) == in_shape``, float32 or float64.
        train : bool, default False
            Not used (the backward needs only the input's shape, always kept).

        Returns
        -------
        ndarray or CUDA device array
            Shape (N, C, ceil(H/k), ceil(W/k), T), dtype of ``x``.

        Raises
        ------
        ValueError
            ``x`` is not ``(N, *in_shape, T)``; errors of the op (non-finite values, ...).
        TypeError
            The op's dtype errors (``x`` not float32/float64, or not the weights' dtype).
        """
        _check_input_shape(self, x, self.in_shape)
        self.cache["shape"] = x.shape
        return F.pool(x, self.kernel, self.weight, strategy=self.strategy)

    def backward(self, grad):
        r"""The input gradient ``grad_x[.., iy, ix, t] = 1.1 theta * grad[.., iy//k, ix//k, t]``.

        Parameters
        ----------
        grad : ndarray or CUDA device array
            Shape (N, C, ceil(H/k), ceil(W/k), T), float32 or float64.

        Returns
        -------
        ndarray, CUDA device array or None
            Shape (N, C, H, W, T); None when ``need_input_grad`` is False.
        """
        if not self.need_input_grad:
            return None
        return F.pool_backward(grad, self.cached("shape"), self.kernel, self.weight)

    def describe(self):
        r"""``"kxk, weight w"``.

        Returns
        -------
        str
            The description.
        """
        return f"{self.kernel}x{self.kernel}, weight {self.weight:g}"


class SRM(Layer):
    r"""SRM neurons: ``s = spike(psp(a))`` with the refractory response.

    Backward: ``grad_a = psp_backward(grad_s * rho(u))`` (surrogate, see :mod:`pysrm.ops.spike`;
    :func:`pysrm.ops.srm.srm_backward`).  The last forward's output spikes are kept in ``last_spikes``
    (for spike counts; made dense from ``last_events`` on first access when a fused block recorded
    events only, :meth:`record`).

    Parameters
    ----------
    neuron : NeuronParams
        ``theta``, ``tau_sr``, ``tau_ref``, ``scale_ref`` (ms, relative to ``theta``), ``tau_rho``,
        ``scale_rho``.
    sim : SimParams
        ``ts`` (ms) and ``t_sample`` (ms).
    srm_tolerance, ref_tolerance : float, default 0.01
        Where the sampled spike and refractory responses are cut (relative to their peak).
    name : str, default "srm"
        The layer's name.

    Raises
    ------
    ValueError
        A response sampled at ``ts`` is all zeros (:func:`pysrm.responses.check_responses`).
    """

    def __init__(self, neuron: NeuronParams, sim: SimParams, srm_tolerance: float = 0.01,
                 ref_tolerance: float = 0.01, name: str = "srm"):
        self.neuron, self.sim, self.name = neuron, sim, name
        check_responses(neuron, sim, srm_tolerance, ref_tolerance)  # an all-zero response is an error
        self.srm = F.srm_kernel(neuron, sim, srm_tolerance)
        self.ref = F.refractory_kernel(neuron, sim, ref_tolerance)
        self._spikes = None
        self.last_events = None

    @property
    def last_spikes(self):
        """The spikes of the last forward pass, ``(N, C, H, W, T)``, amplitude ``1/Ts`` (None before any)."""
        if self._spikes is None and self.last_events is not None:
            self._spikes = self.last_events.to_dense()
        return self._spikes

    def forward(self, a, train=False):
        r"""Spikes of the potential ``u = psp(a)`` (:func:`pysrm.ops.psp.psp`, :func:`pysrm.ops.spike.spike`).

        Parameters
        ----------
        a : ndarray or CUDA device array
            The synaptic input, shape (N, C, H, W, T), float32 or float64.
        train : bool, default False
            True keeps the potential for :meth:`backward`.

        Returns
        -------
        ndarray or CUDA device array
            Spikes of amplitude ``1/Ts``: shape and dtype of ``a``.

        Raises
        ------
        TypeError
            ``a`` is not float32/float64.
        ValueError
            ``a`` holds non-finite values.
        """
        psp = "plain" if self.strategy == "plain" else "auto"
        u = F.psp(a, self.srm, self.sim.ts, strategy=psp)
        s, u_post = F.spike(u, self.ref, self.neuron.theta, self.sim.ts)
        if train:
            self.cache["u"] = u_post
        self.record(s)
        return s

    def record(self, spikes):
        r"""Keep ``spikes`` as ``last_spikes``.

        Parameters
        ----------
        spikes : ndarray, SpikeEvents or None
            An array, or SpikeEvents made dense on first access; None: nothing.
        """
        if isinstance(spikes, SpikeEvents):
            self._spikes, self.last_events = None, spikes
        else:
            self._spikes, self.last_events = spikes, None

    def release(self):
        """Drop the caches and the recorded spikes of the last forward pass."""
        super().release()
        self.record(None)

    def backward(self, grad):
        r"""The gradient of the synaptic input (:func:`pysrm.ops.srm.srm_backward`).

        .. math::

            \frac{\partial\mathcal L}{\partial a[t]} = T_s \sum_{i} \epsilon[i]\;
                \rho(u_{ref}[t+i])\, \frac{\partial\mathcal L}{\partial s[t+i]}

        Parameters
        ----------
        grad : ndarray or CUDA device array
            The loss gradient with respect to the spikes, shape (N, C, H, W, T).

        Returns
        -------
        ndarray or CUDA device array
            Shape and dtype of ``grad``.

        Raises
        ------
        RuntimeError
            No ``forward(train=True)`` ran before (:meth:`Layer.cached`).
        ValueError
            ``grad`` does not have the output's shape, or holds non-finite values.
        """
        u = self.cached("u")
        strategy = "plain" if self.strategy == "plain" else "auto"
        return F.srm_backward(grad, u, self.neuron, self.srm, self.sim.ts, strategy=strategy)

    def describe(self):
        r"""``"theta .., tau_sr .., tau_ref .."``.

        Returns
        -------
        str
            The description.
        """
        n = self.neuron
        return f"theta {n.theta:g}, tau_sr {n.tau_sr:g}, tau_ref {n.tau_ref:g}"


class Delay(Layer):
    r"""Trainable axonal delay (ms) per neuron or per channel, kept >= 0 ms.

    Initialised to 0 ms (no delay); see :mod:`pysrm.ops.delay` for the shift and the gradient.

    Parameters
    ----------
    in_shape : tuple of int
        The input's ``(C, H, W)``.
    sim : SimParams
        ``ts`` (ms), the bin width the delays are divided by.
    per : {"neuron", "channel"}, default "neuron"
        One delay per neuron (shape ``(C, H, W)``) or per channel (``(C, 1, 1)``).
    dtype : numpy dtype, default float32
        The delays' dtype.
    name : str, default "delay"
        The layer's name (the parameter is ``"<name>.delay"``).

    Raises
    ------
    ValueError
        ``per`` is neither ``'neuron'`` nor ``'channel'``.
    """

    def __init__(self, in_shape, sim: SimParams, per: str = "neuron", dtype=np.float32, name: str = "delay"):
        if per not in ("neuron", "channel"):
            raise ValueError(f"delay 'per' must be 'neuron' or 'channel', got {per!r}")
        self.in_shape = tuple(int(s) for s in in_shape)
        shape = self.in_shape if per == "neuron" else (self.in_shape[0], 1, 1)
        self.delay = Parameter(np.zeros(shape, dtype=dtype), f"{name}.delay", lower=0.0)
        self.sim, self.per, self.name = sim, per, name

    takes = (ARRAY, EVENTS)
    #: its backward takes a following dense layer's uncomputed input gradient (pysrm.plan)
    grad_takes = (ARRAY, DENSE_INPUT_GRAD)

    def parameters(self):
        r"""The delays (ms), ``(C, H, W)`` or ``(C, 1, 1)``.

        Returns
        -------
        list of Parameter
            ``[delay]``.
        """
        return [self.delay]

    def forward(self, x, train=False):
        r"""Delayed ``x``: ``y[t] = (1 - f) x[t - m] + f x[t - m - 1]``, ``d / Ts = m + f``.

        A dense array for a dense ``x``; for spikes given as SpikeEvents the delayed events
        (:func:`pysrm.ops.delay.delay_events`, the dense result's events bitwise).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T), float32 or float64.
        train : bool, default False
            True keeps ``x`` for :meth:`backward`.

        Returns
        -------
        ndarray, SpikeEvents or CUDA device array
            Shape and dtype of ``x``.

        Raises
        ------
        TypeError
            ``x`` is not float32/float64.
        ValueError
            ``x`` is not 5-D or holds non-finite values; the delays are negative or non-finite.
        """
        if train:
            self.cache["x"] = x
        if isinstance(x, SpikeEvents):
            if self.strategy == "plain":
                return F.delay(x.to_dense(), self.delay.data, self.sim.ts)
            return F.delay_events(x, self.delay.data, self.sim.ts)
        return F.delay(x, self.delay.data, self.sim.ts)

    def backward(self, grad):
        r"""Accumulate the delay gradient; return the input gradient (:func:`pysrm.ops.delay.delay_backward`).

        ``grad`` may be the uncomputed input gradient of a following dense layer
        (:class:`~pysrm.ops.dense.DenseInputGrad`): it is then made row by row inside the delay backward
        (:func:`pysrm.ops.delay.delay_backward_from_dense`).

        Parameters
        ----------
        grad : ndarray, DenseInputGrad or CUDA device array
            The loss gradient with respect to the output, shape (N, C, H, W, T).

        Returns
        -------
        ndarray or CUDA device array
            Shape (N, C, H, W, T), the input's dtype.

        Raises
        ------
        RuntimeError
            No ``forward(train=True)`` ran before (:meth:`Layer.cached`).
        ValueError
            ``grad`` does not have the output's shape, or holds non-finite values.
        """
        x = self.cached("x")
        if isinstance(grad, DenseInputGrad):
            gx, gd = F.delay_backward_from_dense(grad.w, grad.g, x, self.delay.data, self.sim.ts)
            self.delay.accumulate_grad(gd)
            return gx
        if isinstance(x, SpikeEvents) and is_device_array(grad):
            x = x.to_dense()
        strategy = "plain" if self.strategy == "plain" else "auto"
        gx, gd = F.delay_backward(grad, x, self.delay.data, self.sim.ts, strategy=strategy)
        self.delay.accumulate_grad(gd)
        return gx

    def describe(self):
        r"""``"per neuron"`` or ``"per channel"``.

        Returns
        -------
        str
            The description.
        """
        return f"per {self.per}"


class Dropout(Layer):
    r"""Drops whole neurons (one mask per neuron for all time bins) with probability ``p`` in training.

    Parameters
    ----------
    p : float
        The dropout probability, ``0 <= p < 1``.
    rng : numpy.random.Generator
        The source of the masks.
    name : str, default "dropout"
        The layer's name.

    Raises
    ------
    ValueError
        ``p`` is not in ``[0, 1)``.
    """

    def __init__(self, p: float, rng: np.random.Generator, name: str = "dropout"):
        if not (0.0 <= float(p) < 1.0):
            raise ValueError(f"dropout p must be in [0, 1), got {p!r}")
        self.p, self.rng, self.name = float(p), rng, name

    def forward(self, x, train=False):
        r"""``y = m x`` with a fresh mask :math:`m = [U > p]/(1-p)` in training, else ``x``.

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T), float32 or float64 (events are made dense in training).
        train : bool, default False
            True draws a mask and keeps it for :meth:`backward`; False returns ``x``.

        Returns
        -------
        ndarray, SpikeEvents or CUDA device array
            Shape and dtype of ``x``.

        Raises
        ------
        TypeError
            ``x`` is not float32/float64.
        ValueError
            ``x`` is not 5-D or holds non-finite values.
        """
        if not train or self.p == 0.0:
            self.cache.pop("mask", None)
            return x
        if isinstance(x, SpikeEvents) or (is_device_array(x) and hasattr(x, "to_dense")):
            x = x.to_dense()
        mask = F.dropout_mask(tuple(x.shape), self.p, self.rng, x.dtype)
        if is_device_array(x):  # the mask is drawn on the host (same draws as on the CPU), copied once
            from . import cuda as dev
            mask = dev.to_device(mask)
        self.cache["mask"] = mask
        return F.dropout(x, mask)

    def backward(self, grad):
        r"""``grad_x = m grad`` with the last training forward's mask (``grad`` itself without one).

        Parameters
        ----------
        grad : ndarray or CUDA device array
            Shape (N, C, H, W, T), float32 or float64.

        Returns
        -------
        ndarray or CUDA device array
            Shape and dtype of ``grad``.
        """
        mask = self.cache.get("mask")
        return grad if mask is None else F.dropout_backward(grad, mask)

    def describe(self):
        r"""``"p .."``.

        Returns
        -------
        str
            The description.
        """
        return f"p {self.p:g}"


class Flatten(Layer):
    """Reshape ``(C, H, W)`` to ``(C*H*W, 1, 1)``."""

    name = "flatten"

    def output_shape(self, in_shape):
        r"""``(C*H*W, 1, 1)``.

        Parameters
        ----------
        in_shape : tuple of int
            The input's ``(C, H, W)``.

        Returns
        -------
        tuple of int
            ``(C*H*W, 1, 1)``.
        """
        return (int(np.prod(in_shape)), 1, 1)

    def forward(self, x, train=False):
        r"""Reshape ``(N, C, H, W, T)`` to ``(N, C*H*W, 1, 1, T)`` (no copy).

        Parameters
        ----------
        x : ndarray, SpikeEvents or CUDA device array
            Shape (N, C, H, W, T).
        train : bool, default False
            Not used (the input's shape is always kept).

        Returns
        -------
        ndarray, SpikeEvents or CUDA device array
            Shape (N, C*H*W, 1, 1, T), the values of ``x``.
        """
        if isinstance(x, SpikeEvents):
            self.cache["shape"] = x.shape
            n, c, h, w, t = x.shape
            return SpikeEvents((n, c * h * w, 1, 1, t), x.offsets, x.neuron, x.time, x.value)
        if is_device_array(x):  # device array or DeviceSpikeEvents (shape is a plain tuple)
            shape = self.cache["shape"] = tuple(x.shape)
            n, c, h, w, t = shape
            if hasattr(x, "reshape_neurons"):
                return x.reshape_neurons((n, c * h * w, 1, 1, t))
            return x.reshape(n, c * h * w, 1, 1, t)
        self.cache["shape"] = x.shape
        return x.reshape(x.shape[0], -1, 1, 1, x.shape[-1])

    def backward(self, grad):
        r"""Reshape ``grad`` back to the last input's shape ``(N, C, H, W, T)``.

        Parameters
        ----------
        grad : ndarray, CUDA device array or None
            Shape (N, C*H*W, 1, 1, T).

        Returns
        -------
        ndarray, CUDA device array or None
            Shape (N, C, H, W, T); None for a None ``grad``.

        Raises
        ------
        RuntimeError
            No forward ran before.
        """
        return None if grad is None else grad.reshape(self.cached("shape"))
