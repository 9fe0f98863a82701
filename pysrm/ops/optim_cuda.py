r"""CUDA kernels of the optimiser updates (formulas in :mod:`pysrm.ops.optim`, the CPU twins).

Per element, the updates of SGD (with momentum), Adam and NAdam, weight decay and the clamp: the
functions of :mod:`pysrm.ops._elementwise`, compiled here as CUDA device functions and for the CPU
kernels of :mod:`pysrm.ops.optim` (one definition for both).

The scalars (including every ``1 - beta``, bias correction and NAdam factor)
are computed on the host in float64 by the same functions as the CPU kernels'
(:mod:`pysrm.ops.optim`) and rounded to the parameter dtype, and each kernel performs the same operations in
the same order in that dtype, so the device update equals NumPy's (to the
rounding of fused multiply-adds on a real GPU).

Thread mapping: one thread per parameter element in a grid-stride loop (flat
arrays); every update, weight decay and clamp is one fused kernel per
parameter -- or, for the parameters of a :class:`ParameterPack` (below) (one flat buffer each for
data, gradients and every optimiser state), one kernel for all of them (``*_update_many``; each
element finds its parameter's clamp in the pack's segment table, a short loop over the few
parameters).  :func:`nonfinite_flags` reduces one "has NaN/inf" flag per gradient (atomic
max, one thread per element) so the optimiser can refuse a bad step, naming
the parameter, with one small read back per step.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import cuda as dev
from ..backend import is_device_array
from ._elementwise import adam_element, sgd_element  # the per-element math, shared with the CPU kernels
from .optim import _common, adam_step  # the host-side scalars, shared


_sgd_element = cuda.jit(device=True, cache=True)(sgd_element)
_adam_element = cuda.jit(device=True, cache=True)(adam_element)


@cuda.jit(cache=True)
def _sgd_kernel(p, g, v, lr, mu, use_mom, wd, use_wd, lower, use_lower):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        q, vi = _sgd_element(p[i], g[i], v[i], lr, mu, use_mom, wd, use_wd, lower, use_lower)
        if use_mom:
            v[i] = vi
        p[i] = q


@cuda.jit(cache=True)
def _adam_kernel(p, g, m, v, st, lower, use_lower):
    # Adam, or NAdam with st.nesterov (the CPU kernel's per-element function; st: AdamStep)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], m[i], v[i] = _adam_element(p[i], g[i], m[i], v[i], st, lower, use_lower)


@cuda.jit(device=True, cache=True)
def _segment(seg_end, i):
    s = 0
    while s < seg_end.shape[0] - 1 and i >= seg_end[s]:
        s += 1
    return s


@cuda.jit(cache=True)
def _sgd_many_kernel(p, g, v, seg_end, seg_lower, seg_use, lr, mu, use_mom, wd, use_wd):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        s = _segment(seg_end, i)
        q, vi = _sgd_element(p[i], g[i], v[i], lr, mu, use_mom, wd, use_wd, seg_lower[s], seg_use[s] != 0)
        if use_mom:
            v[i] = vi
        p[i] = q


@cuda.jit(cache=True)
def _adam_many_kernel(p, g, m, v, seg_end, seg_lower, seg_use, st):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        s = _segment(seg_end, i)
        p[i], m[i], v[i] = _adam_element(p[i], g[i], m[i], v[i], st, seg_lower[s], seg_use[s] != 0)


def _flat(a):
    return a.reshape(a.size)


def sgd_update_many(pack, v, lr, momentum, weight_decay=0.0):
    """SGD step on every parameter of ``pack`` (:class:`ParameterPack` (below)) in one launch; ``v``
    the flat velocity (None without momentum)."""
    dt, _, _, wd, use_wd = _common(pack.data, None, weight_decay)
    vv = v if v is not None else pack.data
    dev.launch(_sgd_many_kernel, pack.size, pack.data, pack.grad, vv, pack.seg_end, pack.seg_lower,
               pack.seg_use_lower, dt(lr), dt(momentum), bool(momentum), wd, use_wd)


def adam_update_many(pack, m, v, lr, b1, b2, eps, k, weight_decay=0.0):
    """Adam step ``k`` on every parameter of ``pack`` in one launch (``m``, ``v`` flat)."""
    dt, _, _, wd, use_wd = _common(pack.data, None, weight_decay)
    dev.launch(_adam_many_kernel, pack.size, pack.data, pack.grad, m, v, pack.seg_end, pack.seg_lower,
               pack.seg_use_lower, adam_step(dt, lr, b1, b2, eps, k, wd, use_wd))


def nadam_update_many(pack, m, v, lr, b1, b2, eps, k, mu, mu_next, mu_product, weight_decay=0.0):
    """NAdam step ``k`` on every parameter of ``pack`` in one launch."""
    dt, _, _, wd, use_wd = _common(pack.data, None, weight_decay)
    dev.launch(_adam_many_kernel, pack.size, pack.data, pack.grad, m, v, pack.seg_end, pack.seg_lower,
               pack.seg_use_lower, adam_step(dt, lr, b1, b2, eps, k, wd, use_wd, (mu, mu_next, mu_product)))


def sgd_update(p, g, v, lr, momentum, weight_decay=0.0, lower=None):
    """In-place SGD step on device arrays ``p`` (parameter), ``g`` (gradient), ``v`` (velocity)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    vv = _flat(v) if v is not None else _flat(p)
    dev.launch(_sgd_kernel, p.size, _flat(p), _flat(g), vv, dt(lr), dt(momentum), bool(momentum), wd, use_wd,
               lo, use_lower)


def adam_update(p, g, m, v, lr, b1, b2, eps, k, weight_decay=0.0, lower=None):
    """In-place Adam step ``k`` (1-based) on device arrays."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    dev.launch(_adam_kernel, p.size, _flat(p), _flat(g), _flat(m), _flat(v),
               adam_step(dt, lr, b1, b2, eps, k, wd, use_wd), lo, use_lower)


def nadam_update(p, g, m, v, lr, b1, b2, eps, k, mu, mu_next, mu_product, weight_decay=0.0, lower=None):
    """In-place NAdam step ``k`` on device arrays (``mu_product`` already includes ``mu``)."""
    dt, lo, use_lower, wd, use_wd = _common(p, lower, weight_decay)
    dev.launch(_adam_kernel, p.size, _flat(p), _flat(g), _flat(m), _flat(v),
               adam_step(dt, lr, b1, b2, eps, k, wd, use_wd, (mu, mu_next, mu_product)), lo, use_lower)


def all_finite(arrays) -> bool:
    """True when no device array in ``arrays`` holds a NaN or inf (one small device-to-host read)."""
    return not nonfinite_flags(list(arrays)).any()


def clamp(p, lower) -> None:
    """``p = max(p, lower)`` in place."""
    dev.maximum(p, lower)


@cuda.jit(cache=True)
def _nonfinite_flag_kernel(g, flag, j):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        x = g[i]
        if math.isnan(x) or math.isinf(x):
            cuda.atomic.max(flag, j, 1)


def nonfinite_flags(arrays) -> np.ndarray:
    """Host int32 array: 1 for each device array in ``arrays`` holding a NaN or inf (one small copy back)."""
    flag = dev.zeros((max(1, len(arrays)),), np.int32)
    for j, a in enumerate(arrays):
        dev.launch(_nonfinite_flag_kernel, a.size, _flat(a), flag, j)
    return flag.copy_to_host()[:len(arrays)]


# --------------------------------------------------------------------------- parameters in one buffer

class ParameterPack:
    """The device parameters of a network in one flat data buffer and one flat gradient buffer.

    Made by :meth:`pack` (``Network.to('cuda')`` calls it): every parameter's ``data`` and ``grad``
    become views of ``data`` / ``grad`` (same values; the parameter objects are kept), so that zeroing
    the gradients (:meth:`zero_grad`) and an optimiser step (:mod:`pysrm.ops.optim_cuda`,
    ``*_update_many``) are one launch for all parameters.  ``offsets[i]`` is the first element of
    parameter ``i``; the per-parameter clamp (``lower``) is a segment table on the device.
    :meth:`of` returns the pack only while it is intact (the same parameters, in order, still holding
    the views: replacing ``p.data`` -- ``Layer.astype``, ``Parameter.to`` -- breaks it, and the callers
    then work per parameter).
    """

    def __init__(self, params):
        self.params = list(params)
        dt = np.dtype(self.params[0].data.dtype)
        sizes = [int(p.data.size) for p in self.params]
        self.dtype = dt
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.size = int(self.offsets[-1])
        self.data = dev.empty((self.size,), dt)
        self.grad = dev.empty((self.size,), dt)
        self._data_views = self.views_of(self.data)
        self._grad_views = self.views_of(self.grad)
        for p, dv, gv in zip(self.params, self._data_views, self._grad_views):
            dev.copy(dv, p.data)
            dev.copy(gv, p.grad)
            p.data, p.grad = dv, gv
            p._pysrm_pack = self
        lower = np.array([p.lower if p.lower is not None else 0.0 for p in self.params], dtype=dt)
        use = np.array([p.lower is not None for p in self.params], dtype=np.int8)
        self.seg_end = dev.to_device(self.offsets[1:].copy())
        self.seg_lower = dev.to_device(lower)
        self.seg_use_lower = dev.to_device(use)

    def views_of(self, flat) -> list:
        """Views of the flat device array ``flat`` shaped like the parameters, in order."""
        return [flat[int(a):int(b)].reshape(p.data.shape) if int(b) > int(a) else flat[0:0]
                for p, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:])]

    @classmethod
    def pack(cls, params):
        """Pack ``params`` (device parameters of one dtype, at least one); None where that does not hold."""
        params = list(params)
        if not params or not all(is_device_array(p.data) and is_device_array(p.grad) for p in params):
            return None
        if len({np.dtype(p.data.dtype) for p in params}) != 1 or any(p.data.size == 0 for p in params):
            return None
        return cls(params)

    def intact(self, params) -> bool:
        params = list(params)
        return (len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))
                and all(p.data is dv and p.grad is gv
                        for p, dv, gv in zip(params, self._data_views, self._grad_views)))

    @staticmethod
    def of(params):
        """The intact pack holding exactly ``params`` (in order), else None."""
        params = list(params)
        if not params:
            return None
        pk = getattr(params[0], "_pysrm_pack", None)
        return pk if pk is not None and pk.intact(params) else None

    def zero_grad(self) -> None:
        """Every parameter's gradient set to 0: one memset (or one fill launch)."""
        dev.memset_zero(self.grad)


def zero_grads(params) -> None:
    """``p.grad[...] = 0`` for device parameters: one launch when they form an intact
    :class:`ParameterPack`, else one per parameter."""
    pk = ParameterPack.of(params)
    if pk is not None:
        pk.zero_grad()
        return
    for p in params:
        if is_device_array(p.grad):
            dev.memset_zero(p.grad)
        else:
            p.grad[...] = 0
