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
"""
from __future__ import annotations

import numpy as np

from ._checks import positive


class Optimizer:
    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr = positive("lr", lr)
        self.weight_decay = positive("weight_decay", weight_decay, allow_zero=True)
        self.step_count = 0

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def _grad(self, p):
        g = p.grad
        if not np.isfinite(g).all():
            raise FloatingPointError(f"gradient of {p.name} contains NaN or inf; refusing to update the parameters")
        return g + self.weight_decay * p.data if self.weight_decay else g

    def step(self):
        self.step_count += 1
        for i, p in enumerate(self.params):
            self._update(i, p, self._grad(p))
            p.clamp()

    def _update(self, i, p, g):  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict:
        out = {"step_count": np.array(self.step_count), "lr": np.array(self.lr)}
        for key, arrays in self._slots().items():
            for i, a in enumerate(arrays):
                out[f"{key}.{i}"] = a.copy()
        return out

    def load_state_dict(self, state: dict):
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        for key, arrays in self._slots().items():
            for i, a in enumerate(arrays):
                a[...] = state[f"{key}.{i}"]

    def _slots(self) -> dict:
        return {}


class SGD(Optimizer):
    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = positive("momentum", momentum, allow_zero=True)
        self.v = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i, p, g):
        if self.momentum:
            self.v[i] *= self.momentum
            self.v[i] += g
            g = self.v[i]
        p.data -= (self.lr * g).astype(p.data.dtype, copy=False)

    def _slots(self):
        return {"v": self.v}


class Adam(Optimizer):
    def __init__(self, params, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps = positive("eps", eps)
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i, p, g):
        k = self.step_count
        m, v = self.m[i], self.v[i]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * g * g
        mhat = m / (1 - self.b1 ** k)
        vhat = v / (1 - self.b2 ** k)
        p.data -= (self.lr * mhat / (np.sqrt(vhat) + self.eps)).astype(p.data.dtype, copy=False)

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

    def _update(self, i, p, g):
        k = self.step_count
        m, v = self.m[i], self.v[i]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * g * g
        prod = float(self.mu_product)
        vhat = v / (1 - self.b2 ** k)
        upd = (self._mu_next * m / (1 - prod * self._mu_next) + (1 - self._mu) * g / (1 - prod))
        p.data -= (self.lr * upd / (np.sqrt(vhat) + self.eps)).astype(p.data.dtype, copy=False)

    def state_dict(self):
        out = super().state_dict()
        out["mu_product"] = self.mu_product.copy()
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mu_product = np.array(float(state["mu_product"]))


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "nadam": NAdam}


def make_optimizer(name: str, params, lr: float, **kwargs) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **kwargs)
