r"""Optimisers on plain arrays (:class:`~pysrm.layers.Parameter` lists).

* SGD with momentum :math:`\mu`: :math:`v \leftarrow \mu v + g,\ \theta \leftarrow \theta - \eta v`.
* Adam (Kingma & Ba): :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)` with bias-corrected
  :math:`\hat m = m/(1-\beta_1^k)`, :math:`\hat v = v/(1-\beta_2^k)`.
* NAdam (Dozat; as PyTorch with momentum decay 0.004): Nesterov momentum in Adam,
  :math:`\mu_k = \beta_1 (1 - 0.5\cdot 0.96^{k\psi})`,
  :math:`\theta \leftarrow \theta - \eta \bigl[\mu_{k+1} m / (1-\prod_{j\le k+1}\mu_j)
  + (1-\mu_k) g / (1-\prod_{j\le k}\mu_j)\bigr] / (\sqrt{\hat v} + \epsilon)`.

Optional L2 weight decay adds :math:`\lambda\theta` to the gradient.  After
every step each parameter's clamp hook runs (e.g. delays >= 0).  The state
(``state_dict``) is plain arrays, saved in checkpoints.

Each parameter is updated by one fused kernel, clamp included: the parallel Numba
CPU kernels of :mod:`pysrm.ops.optim`, or on the GPU (after ``Network.to('cuda')``)
their CUDA twins in :mod:`pysrm.ops.optim_cuda` (same formulas, same rounding);
the optimiser's state then lives on the GPU too (moved there on the first step)
and ``state_dict`` copies it back.  On the GPU, when the parameters are the intact
:class:`pysrm.ops.optim_cuda.ParameterPack` of a network (``Network.to('cuda')`` makes one), the state is
kept in flat buffers alike and the NaN check and the update are one launch each for all
parameters.
"""
from __future__ import annotations

import numpy as np

from ._checks import positive
from .backend import is_device_array


def _on_device(params) -> bool:
    dev = [is_device_array(p.data) for p in params]
    if any(dev) and not all(dev):
        raise ValueError("some parameters are on the GPU and some on the CPU; move the whole network with "
                         "net.to(device) before building the optimiser or stepping")
    return bool(dev) and dev[0]


class Optimizer:
    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr = positive("lr", lr)
        self.weight_decay = positive("weight_decay", weight_decay, allow_zero=True)
        self.step_count = 0

    def zero_grad(self):
        on_dev = [is_device_array(p.grad) for p in self.params]
        if on_dev and all(on_dev):
            from .ops.optim_cuda import zero_grads
            zero_grads(self.params)  # one launch for a packed network
            return
        for p, d in zip(self.params, on_dev):
            if d:
                from . import cuda as dev
                dev.memset_zero(p.grad)
            else:
                p.grad[...] = 0

    def step(self):
        self.step_count += 1
        if _on_device(self.params):
            self._step_device()
            return
        from .ops import optim as kernels
        for p in self.params:  # every gradient is checked before any parameter changes
            if not kernels.all_finite(p.grad):
                raise FloatingPointError(f"gradient of {p.name} contains NaN or inf; refusing to update the parameters")
        for arrays in self._slots().values():  # state follows parameters moved back to the CPU
            for i, a in enumerate(arrays):
                if is_device_array(a):
                    arrays[i] = a.copy_to_host()
        for i, p in enumerate(self.params):
            self._update(kernels, i, p)  # the CPU kernels (pysrm/ops/optim.py) share the device API

    def _step_device(self):
        from . import cuda as dev
        from .ops import optim_cuda
        pack = optim_cuda.ParameterPack.of(self.params)
        if pack is None or optim_cuda.nonfinite_flags([pack.grad]).any():
            bad = optim_cuda.nonfinite_flags([p.grad for p in self.params])
            if bad.any():
                p = self.params[int(np.flatnonzero(bad)[0])]
                raise FloatingPointError(f"gradient of {p.name} contains NaN or inf; refusing to update the "
                                         f"parameters")
        if pack is not None:
            self._update_many(optim_cuda, pack, self._flat_state(pack))
            return
        for arrays in self._slots().values():  # state moves to the device on the first step
            for i, a in enumerate(arrays):
                if not is_device_array(a):
                    arrays[i] = dev.to_device(a)
        for i, p in enumerate(self.params):
            self._update(optim_cuda, i, p)

    def _flat_state(self, pack) -> dict:
        """The optimiser state of a packed network as flat device buffers ``{slot: flat}``, the per-parameter
        slot arrays being views of them (made on first use, from the current state)."""
        from . import cuda as dev
        cached = getattr(self, "_flat_cache", None)
        slots = self._slots()
        if cached is not None and cached[0] is pack and all(
                all(a is v for a, v in zip(slots[key], cached[2][key])) for key in slots):
            return cached[1]
        flats, views = {}, {}
        for key, arrays in slots.items():
            flat = dev.empty((pack.size,), pack.dtype)
            vs = pack.views_of(flat)
            for i, a in enumerate(arrays):
                if is_device_array(a):
                    dev.copy(vs[i], a)
                else:
                    vs[i].copy_to_device(np.ascontiguousarray(a, dtype=pack.dtype))
                arrays[i] = vs[i]
            flats[key], views[key] = flat, vs
        self._flat_cache = (pack, flats, views)
        return flats

    def _update_many(self, kernels, pack, flats):  # pragma: no cover - interface
        raise NotImplementedError

    def _update(self, kernels, i, p):  # pragma: no cover - interface
        # ``kernels`` is pysrm.ops.optim (CPU) or pysrm.ops.optim_cuda (GPU): the same functions
        raise NotImplementedError

    def state_dict(self) -> dict:
        out = {"step_count": np.array(self.step_count), "lr": np.array(self.lr)}
        for key, arrays in self._slots().items():
            for i, a in enumerate(arrays):
                out[f"{key}.{i}"] = a.copy_to_host() if is_device_array(a) else a.copy()
        return out

    def load_state_dict(self, state: dict):
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        for key, arrays in self._slots().items():
            for i, a in enumerate(arrays):
                if is_device_array(a):
                    a.copy_to_device(np.ascontiguousarray(state[f"{key}.{i}"], dtype=a.dtype))
                else:
                    a[...] = state[f"{key}.{i}"]

    def _slots(self) -> dict:
        return {}


class SGD(Optimizer):
    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = positive("momentum", momentum, allow_zero=True)
        self.v = [_zeros_like(p.data) for p in self.params]

    def _update(self, kernels, i, p):
        kernels.sgd_update(p.data, p.grad, self.v[i] if self.momentum else None, self.lr, self.momentum,
                           self.weight_decay, p.lower)

    def _update_many(self, kernels, pack, flats):
        kernels.sgd_update_many(pack, flats["v"] if self.momentum else None, self.lr, self.momentum,
                                self.weight_decay)

    def _slots(self):
        return {"v": self.v}


class Adam(Optimizer):
    def __init__(self, params, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps = positive("eps", eps)
        self.m = [_zeros_like(p.data) for p in self.params]
        self.v = [_zeros_like(p.data) for p in self.params]

    def _update(self, kernels, i, p):
        kernels.adam_update(p.data, p.grad, self.m[i], self.v[i], self.lr, self.b1, self.b2, self.eps,
                            self.step_count, self.weight_decay, p.lower)

    def _update_many(self, kernels, pack, flats):
        kernels.adam_update_many(pack, flats["m"], flats["v"], self.lr, self.b1, self.b2, self.eps, self.step_count,
                                 self.weight_decay)

    def _slots(self):
        return {"m": self.m, "v": self.v}


class NAdam(Adam):
    def __init__(self, params, lr: float = 0.002, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum_decay: float = 0.004):
        super().__init__(params, lr, betas, eps, weight_decay)
        self.psi = momentum_decay
        self.mu_product = np.array(1.0)

    def step(self):
        k = self.step_count + 1
        self._mu = self.b1 * (1 - 0.5 * 0.96 ** (k * self.psi))
        self._mu_next = self.b1 * (1 - 0.5 * 0.96 ** ((k + 1) * self.psi))
        self.mu_product = np.array(float(self.mu_product) * self._mu)
        super().step()

    def _update(self, kernels, i, p):
        kernels.nadam_update(p.data, p.grad, self.m[i], self.v[i], self.lr, self.b1, self.b2, self.eps,
                             self.step_count, self._mu, self._mu_next, float(self.mu_product), self.weight_decay,
                             p.lower)

    def _update_many(self, kernels, pack, flats):
        kernels.nadam_update_many(pack, flats["m"], flats["v"], self.lr, self.b1, self.b2, self.eps, self.step_count,
                                  self._mu, self._mu_next, float(self.mu_product), self.weight_decay)

    def state_dict(self):
        out = super().state_dict()
        out["mu_product"] = self.mu_product.copy()
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mu_product = np.array(float(state["mu_product"]))


def _zeros_like(a):
    """Zeros like ``a``, on the GPU when ``a`` is there."""
    if is_device_array(a):
        from . import cuda as dev
        return dev.zeros_like(a)
    return np.zeros_like(a)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "nadam": NAdam}


def make_optimizer(name: str, params, lr: float, **kwargs) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **kwargs)
