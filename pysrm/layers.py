r"""The stateful half of pysrm: layers that hold parameters and the caches of
their last forward pass, and call the ops of :mod:`pysrm.functional`.

Every layer has ``forward(x, train=False)``, ``backward(grad) -> grad_input``
(accumulating ``+=`` into its parameters' ``grad``), ``parameters()`` and
``output_shape(input_shape)``.  Shapes are ``(C, H, W)`` per sample; tensors
are ``(N, C, H, W, T)``.

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
from .ops.dense import events_if_sparse
from .params import NeuronParams, SimParams

DENSE_WEIGHT_SCALE = 10.0
CONV_WEIGHT_SCALE = 100.0
#: fused CPU passes of layer pairs: Dense -> SRM on event inputs (SRM.forward_from_dense and, for a first
#: layer, SRM.backward_into_dense) and Delay -> Dense with few outputs (Delay.backward_from_dense)
FUSE_DENSE_SRM = True
#: below this many outputs the fused Dense -> SRM forward is slower than the three ops (measured: 10
#: outputs 0.68 vs 0.35 ms, 32 about even, 64 1.4 vs 1.7 ms at N-MNIST batch-32 shapes), unless its
#: spikes are wanted as events
FUSED_MIN_OUTPUTS = 48


class Parameter:
    """A trainable array with its gradient; ``lower`` is an optional clamp applied after each update.

    ``data`` and ``grad`` are NumPy arrays, or CUDA device arrays after :meth:`to` ``("cuda")``;
    the methods below work on either.
    """

    def __init__(self, data: np.ndarray, name: str, lower: float | None = None):
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name
        self.lower = lower

    @property
    def on_device(self) -> bool:
        return is_device_array(self.data)

    def to(self, device: str) -> "Parameter":
        """Move ``data`` and ``grad`` to ``'cuda'`` (device arrays) or ``'cpu'`` (NumPy arrays)."""
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
        """``grad += g`` (on the device with the CUDA accumulate kernel)."""
        if is_device_array(self.grad):
            from . import cuda as dev
            dev.accumulate(self.grad, dev.to_device(g))
        else:
            self.grad += g

    def zero_grad(self):
        if is_device_array(self.grad):
            from . import cuda as dev
            dev.fill(self.grad, 0)
        else:
            self.grad[...] = 0

    def clamp(self):
        if self.lower is not None:
            if self.on_device:
                from . import cuda as dev
                dev.maximum(self.data, self.lower)
            else:
                np.maximum(self.data, self.lower, out=self.data)

    def __repr__(self):
        return f"Parameter({self.name}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: no parameters, identity shape."""

    name = "layer"
    need_input_grad = True

    def parameters(self) -> list:
        return []

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x, train: bool = False):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - interface
        raise NotImplementedError

    def astype(self, dtype):
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
        return ""


def _check_input_shape(layer, x, in_shape):
    shape = x.shape
    if len(shape) != 5 or tuple(shape[1:4]) != tuple(in_shape):
        raise ValueError(f"{layer.name}: input has shape {tuple(shape)}; expected (N, {', '.join(map(str, in_shape))}, T)")


class Dense(Layer):
    """Fully connected synapse ``(C, H, W) -> (out_features, 1, 1)`` (see :mod:`pysrm.ops.dense`)."""

    def __init__(self, in_shape, out_features: int, rng: np.random.Generator, weight_scale: float = DENSE_WEIGHT_SCALE,
                 dtype=np.float32, name: str = "dense"):
        self.in_shape = tuple(int(s) for s in in_shape)
        fan_in = int(np.prod(self.in_shape))
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(int(out_features), fan_in)) * weight_scale
        self.weight = Parameter(w.astype(dtype), f"{name}.weight")
        self.name = name
        self._x = None

    def parameters(self):
        return [self.weight]

    def output_shape(self, in_shape):
        return (self.weight.data.shape[0], 1, 1)

    def forward(self, x, train=False):
        _check_input_shape(self, x, self.in_shape)
        self._x = x = events_if_sparse(x, "dense")  # found once, reused by the backward
        return F.dense(self.weight.data, x)

    def backward(self, grad):
        gx, gw = F.dense_backward(self.weight.data, self._x, grad, self.need_input_grad)
        self.weight.accumulate_grad(gw)
        return gx

    def describe(self):
        return f"{int(np.prod(self.in_shape))} -> {self.weight.data.shape[0]}"


class Conv(Layer):
    """2-D convolution synapse (see :mod:`pysrm.ops.conv`); default padding ``kernel // 2``."""

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
        self._x = None
        ho, wo = F.conv_output_size(self.in_shape[1], self.in_shape[2], int(kernel), self.stride, self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(f"{name}: kernel {kernel} (padding {self.padding}, stride {self.stride}) does not fit "
                             f"input {self.in_shape}")

    def parameters(self):
        return [self.weight]

    def output_shape(self, in_shape):
        k = self.weight.data.shape[2]
        return (self.weight.data.shape[0],) + F.conv_output_size(in_shape[1], in_shape[2], k, self.stride, self.padding)

    def forward(self, x, train=False):
        _check_input_shape(self, x, self.in_shape)
        self._x = x = events_if_sparse(x, "conv")  # found once, reused by the backward
        return F.conv(self.weight.data, x, self.stride, self.padding)

    def backward(self, grad):
        gx, gw = F.conv_backward(self.weight.data, self._x, grad, self.stride, self.padding, self.need_input_grad)
        self.weight.accumulate_grad(gw)
        return gx

    def describe(self):
        co, ci, k, _ = self.weight.data.shape
        return f"{ci} -> {co}, kernel {k}, stride {self.stride}, padding {self.padding}"


class Pool(Layer):
    """Sum pooling with fixed weight ``1.1 * theta`` (see :mod:`pysrm.ops.pool`)."""

    def __init__(self, in_shape, kernel: int, theta: float, name: str = "pool"):
        self.in_shape = tuple(int(s) for s in in_shape)
        self.kernel = int(kernel)
        self.weight = 1.1 * float(theta)
        self.name = name
        self._shape = None

    def output_shape(self, in_shape):
        return (in_shape[0],) + F.pool_output_size(in_shape[1], in_shape[2], self.kernel)

    def forward(self, x, train=False):
        _check_input_shape(self, x, self.in_shape)
        self._shape = x.shape
        return F.pool(x, self.kernel, self.weight)

    def backward(self, grad):
        if not self.need_input_grad:
            return None
        return F.pool_backward(grad, self._shape, self.kernel, self.weight)

    def describe(self):
        return f"{self.kernel}x{self.kernel}, weight {self.weight:g}"


class SRM(Layer):
    r"""SRM neurons: ``s = spike(psp(a))`` with the refractory response.

    Backward: ``grad_a = psp_backward(grad_s * rho(u))`` (surrogate, see :mod:`pysrm.ops.spike`).
    The last forward's output spikes are kept in ``last_spikes`` (for spike counts; made dense from
    ``last_events`` on first access when the fused path produced events only).
    """

    def __init__(self, neuron: NeuronParams, sim: SimParams, srm_tolerance: float = 0.01,
                 ref_tolerance: float = 0.01, name: str = "srm"):
        self.neuron, self.sim, self.name = neuron, sim, name
        self.srm = F.srm_kernel(neuron, sim, srm_tolerance)
        self.ref = F.refractory_kernel(neuron, sim, ref_tolerance)
        self._u = None
        self._u_time_major = False
        self._spikes = None
        self.last_events = None

    @property
    def last_spikes(self):
        if self._spikes is None and self.last_events is not None:
            self._spikes = self.last_events.to_dense()
        return self._spikes

    @last_spikes.setter
    def last_spikes(self, s):
        self._spikes = s

    def forward(self, a, train=False):
        u = F.psp(a, self.srm, self.sim.ts)
        s, u_post = F.spike(u, self.ref, self.neuron.theta, self.sim.ts)
        self._u = u_post if train else None
        self._u_time_major = False
        self.last_spikes = s
        self.last_events = None
        return s

    def forward_from_dense(self, dense: "Dense", x, train=False, need_events=False):
        """``self.forward(dense.forward(x))``, fused into one pass per sample on the CPU when ``x`` is
        sparse enough for the dense layer's event path (:func:`pysrm.ops.srm.dense_srm_forward`,
        bitwise the same result; :data:`FUSE_DENSE_SRM` switches it off).  Both layers keep what
        their backward needs, as if run one after the other.  With ``need_events`` the spikes are
        returned as :class:`~pysrm.events.SpikeEvents` where the fused path runs (no dense spike
        array is written; ``last_spikes`` makes one on demand), else as the dense array."""
        if (not FUSE_DENSE_SRM or dense.weight.on_device or is_device_array(x)
                or (dense.weight.data.shape[0] < FUSED_MIN_OUTPUTS and not need_events)):
            return self.forward(dense.forward(x, train), train)
        _check_input_shape(dense, x, dense.in_shape)
        dense._x = x = events_if_sparse(x, "dense")
        # a first layer keeps its potential time-major (cheaper to write; only its fused backward reads it)
        time_major = train and not dense.need_input_grad and isinstance(x, SpikeEvents)
        out = F.dense_srm_forward(dense.weight.data, x, self.srm, self.ref, self.neuron.theta, self.sim.ts,
                                  need_potential=train, need_events=need_events, need_dense_spikes=False,
                                  time_major_potential=time_major)
        self._u = out[1]
        self._u_time_major = time_major and self._u is not None
        self.last_events = out[2] if need_events else None
        self.last_spikes = out[0]
        return out[0] if self.last_events is None else self.last_events

    def _potential(self):
        """The kept potential in the layout of the spikes, (N, O, 1, 1, T)."""
        if self._u_time_major:
            N, T, O = self._u.shape
            return np.ascontiguousarray(self._u.transpose(0, 2, 1)).reshape(N, O, 1, 1, T)
        return self._u

    def backward(self, grad):
        if self._u is None:
            raise RuntimeError(f"{self.name}: backward called without a forward(train=True)")
        return F.srm_backward(grad, self._potential(), self.neuron, self.srm, self.sim.ts)

    def backward_into_dense(self, dense: "Dense", grad):
        """``dense.backward(self.backward(grad))`` for a first layer (no input gradient): fused into one
        pass per sample on event inputs on the CPU (:func:`pysrm.ops.srm.srm_dense_backward_weights`,
        bitwise the same weight gradient), else the two backwards.  Returns the input gradient (None
        for a first layer)."""
        if self._u is None:
            raise RuntimeError(f"{self.name}: backward called without a forward(train=True)")
        gw = None
        if FUSE_DENSE_SRM and not dense.need_input_grad:
            gw = F.srm_dense_backward_weights(grad, self._u, self.neuron, self.srm, self.sim.ts,
                                              dense.weight.data, dense._x, u_time_major=self._u_time_major,
                                              accumulate_into=dense.weight.grad)
        if gw is None:
            return dense.backward(self.backward(grad))
        if gw is not dense.weight.grad:  # else already added to it
            dense.weight.accumulate_grad(gw)
        return None

    def backward_through(self, dense: "Dense", delay: "Delay", dense2: "Dense", grad):
        """The backward of ``dense -> self -> delay -> dense2`` from ``dense2``'s output gradient, for a
        first layer ``dense``: fused into the first layer's per-sample pass on the CPU
        (:func:`pysrm.ops.srm.srm_dense_backward_through_delay`; bitwise the same as
        ``delay.backward_from_dense`` then ``self.backward_into_dense``, which run where it does not
        apply).  Returns None (no input gradient)."""
        if self._u is None:
            raise RuntimeError(f"{self.name}: backward called without a forward(train=True)")
        out = None
        if FUSE_DENSE_SRM and not dense.need_input_grad and delay._x is not None and delay.sim.ts == self.sim.ts:
            out = F.srm_dense_backward_through_delay(grad, dense2.weight.data, delay._x, delay.delay.data,
                                                     self.sim.ts, self._u, self.neuron, self.srm,
                                                     dense.weight.data, dense._x, self._u_time_major,
                                                     accumulate_into=dense.weight.grad)
        if out is None:
            return self.backward_into_dense(dense, delay.backward_from_dense(dense2, grad))
        _, gw2 = F.dense_backward(dense2.weight.data, dense2._x, grad, need_input_grad=False)
        dense2.weight.accumulate_grad(gw2)
        gw, gd = out
        delay.delay.accumulate_grad(gd)
        if gw is not dense.weight.grad:  # else already added to it
            dense.weight.accumulate_grad(gw)
        return None

    def describe(self):
        n = self.neuron
        return f"theta {n.theta:g}, tau_sr {n.tau_sr:g}, tau_ref {n.tau_ref:g}"


class Delay(Layer):
    """Trainable axonal delay per neuron (``per='neuron'``) or per channel (``per='channel'``), kept >= 0 ms.

    Initialised to 0 ms (no delay); see :mod:`pysrm.ops.delay` for the gradient.
    """

    def __init__(self, in_shape, sim: SimParams, per: str = "neuron", dtype=np.float32, name: str = "delay"):
        if per not in ("neuron", "channel"):
            raise ValueError(f"delay 'per' must be 'neuron' or 'channel', got {per!r}")
        self.in_shape = tuple(int(s) for s in in_shape)
        shape = self.in_shape if per == "neuron" else (self.in_shape[0], 1, 1)
        self.delay = Parameter(np.zeros(shape, dtype=dtype), f"{name}.delay", lower=0.0)
        self.sim, self.per, self.name = sim, per, name
        self._x = None

    def parameters(self):
        return [self.delay]

    def forward(self, x, train=False):
        self._x = x if train else None
        return F.delay(x, self.delay.data, self.sim.ts)

    def forward_events(self, events, train=False, kind="dense"):
        """``self.forward(events.to_dense())`` for spikes given as SpikeEvents (from a fused spike layer):
        returns the delayed spikes as SpikeEvents (:func:`pysrm.ops.delay.delay_events`, no dense
        array; bitwise what the next ``kind`` ('dense'/'conv') layer would have made of the dense
        output), or the dense output where that is denser than the event paths' threshold.  The
        backward then works from the events too."""
        from .ops.dense import CONV_EVENT_DENSITY_THRESHOLD, EVENT_DENSITY_THRESHOLD
        threshold = EVENT_DENSITY_THRESHOLD if kind == "dense" else CONV_EVENT_DENSITY_THRESHOLD
        out = F.delay_events(events, self.delay.data, self.sim.ts) if threshold > 0.0 else None
        if out is None or out.n_events > threshold * int(np.prod(out.shape)):
            return self.forward(events.to_dense(), train)
        self._x = events if train else None
        return out

    def backward(self, grad):
        x = self._x
        if isinstance(x, SpikeEvents) and is_device_array(grad):
            x = x.to_dense()
        gx, gd = F.delay_backward(grad, x, self.delay.data, self.sim.ts)
        self.delay.accumulate_grad(gd)
        return gx

    def backward_from_dense(self, dense: "Dense", grad):
        """``self.backward(dense.backward(grad))`` for a dense layer that reads this delay's output: on
        the CPU with few dense outputs the dense input gradient is made row by row inside the delay
        backward, which reads its input as events where it has them
        (:func:`pysrm.ops.delay.delay_backward_from_dense`; equal to float rounding)."""
        out = None
        if FUSE_DENSE_SRM and self._x is not None and not dense.weight.on_device:
            out = F.delay_backward_from_dense(dense.weight.data, grad, self._x, self.delay.data, self.sim.ts)
        if out is None:
            return self.backward(dense.backward(grad))
        _, gw = F.dense_backward(dense.weight.data, dense._x, grad, need_input_grad=False)
        dense.weight.accumulate_grad(gw)
        gx, gd = out
        self.delay.accumulate_grad(gd)
        return gx

    def describe(self):
        return f"per {self.per}"


class Dropout(Layer):
    """Drops whole neurons (one mask per neuron for all time bins) with probability ``p`` in training."""

    def __init__(self, p: float, rng: np.random.Generator, name: str = "dropout"):
        if not (0.0 <= float(p) < 1.0):
            raise ValueError(f"dropout p must be in [0, 1), got {p!r}")
        self.p, self.rng, self.name = float(p), rng, name
        self._mask = None

    def forward(self, x, train=False):
        if not train or self.p == 0.0:
            self._mask = None
            return x
        if isinstance(x, SpikeEvents) or (is_device_array(x) and hasattr(x, "to_dense")):
            x = x.to_dense()
        self._mask = F.dropout_mask(tuple(x.shape), self.p, self.rng, x.dtype)
        if is_device_array(x):  # the mask is drawn on the host (same draws as on the CPU), copied once
            from . import cuda as dev
            self._mask = dev.to_device(self._mask)
        return F.dropout(x, self._mask)

    def backward(self, grad):
        return grad if self._mask is None else F.dropout_backward(grad, self._mask)

    def describe(self):
        return f"p {self.p:g}"


class Flatten(Layer):
    """Reshape ``(C, H, W)`` to ``(C*H*W, 1, 1)``."""

    name = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)), 1, 1)

    def forward(self, x, train=False):
        if isinstance(x, SpikeEvents):
            self._shape = x.shape
            n, c, h, w, t = x.shape
            return SpikeEvents((n, c * h * w, 1, 1, t), x.offsets, x.neuron, x.time, x.value)
        if is_device_array(x):  # device array or DeviceSpikeEvents (shape is a plain tuple)
            self._shape = tuple(x.shape)
            n, c, h, w, t = self._shape
            if hasattr(x, "reshape_neurons"):
                return x.reshape_neurons((n, c * h * w, 1, 1, t))
            return x.reshape(n, c * h * w, 1, 1, t)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1, 1, 1, x.shape[-1])

    def backward(self, grad):
        return None if grad is None else grad.reshape(self._shape)
