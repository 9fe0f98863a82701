r"""Device memory of the CUDA backend: allocation (CuPy's pool or Numba's allocator), host <-> device
copies of arrays, the elementwise kernels used by training, the batched transpose, and the cache of
read-only device constants.

Elementwise kernels (all on flat, C-contiguous arrays)
    ``fill(a, v)``       :math:`a_i \leftarrow v`
    ``axpy(y, x, a)``    :math:`y_i \leftarrow y_i + a\,x_i` (``accumulate`` is ``a = 1``: ``grad += g``)
    ``scale(a, s)``      :math:`a_i \leftarrow s\,a_i`
    ``copy(dst, src)``   :math:`dst_i \leftarrow src_i` (``copy_new`` allocates)
    ``maximum(a, lo)``   :math:`a_i \leftarrow \max(a_i, lo)`
    ``total(x)``         :math:`\sum_i x_i` in float64 (``sum_async`` keeps it on the device)
    ``transpose(x, out)`` batched 2-D transpose ``out[b, c, r] = x[b, r, c]`` (shared-memory tiles)

Memory and CuPy
    Where CuPy is importable and a real GPU is used (not the simulator; ``PYSRM_CUDA_CUPY=0``
    disables it), device arrays are taken from CuPy's memory pool (:func:`empty`; wrapped as Numba
    device arrays through ``__cuda_array_interface__``, zero copy) and zeroed with a memset
    (:func:`zeros`): Numba's own allocator calls ``cuMemAlloc`` for every array and frees them in
    batches with ``cuMemFree``, which waits for the whole device, so a training step stalled several
    times.  CuPy's pool is stream ordered; pysrm runs all its kernels, memsets and cuBLAS calls on
    the default stream (CuPy's current stream must be the null stream, its default), so a block
    returned to the pool is reused only by work queued after the last kernel that read it.
    Otherwise Numba's allocator is used.  :func:`pysrm.cuda.blas.backend_info` says which.

Constants
    :func:`constant` keeps device copies of small read-only host arrays (response kernels) in a
    :class:`ConstantCache` keyed by content.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from ..backend import is_device_array
from .counters import counting, note
from .. import settings
from .launches import SIMULATOR, TRANSPOSE_TILE, _TRANSPOSE_PAD, cuda, current_launch, launch, \
    launch_config, launch_grid

# --------------------------------------------------------------------------- kernels

@cuda.jit(cache=True)
def _fill_kernel(a, v):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = v


@cuda.jit(cache=True)
def _axpy_kernel(y, x, alpha):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        y[i] += alpha * x[i]


@cuda.jit(cache=True)
def _add_kernel(y, x):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        y[i] += x[i]


@cuda.jit(cache=True)
def _scale_kernel(a, s):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] *= s


@cuda.jit(cache=True)
def _copy_kernel(dst, src):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit(cache=True)
def _maximum_kernel(a, lo):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        if a[i] < lo:
            a[i] = lo


@cuda.jit(cache=True)
def _sum_rows_kernel(x, out):
    # out[j] = sum_b x[b, j]  (x: (B, M)); one thread per column j, summed in order of b
    B, M = x.shape
    for j in range(cuda.grid(1), M, cuda.gridsize(1)):
        acc = x[0, j]
        for b in range(1, B):
            acc += x[b, j]
        out[j] = acc


@cuda.jit(cache=True)
def _sum_rows_acc_kernel(x, out):
    # out[j] += sum_b x[b, j]  (the sum in order of b, then added)
    B, M = x.shape
    for j in range(cuda.grid(1), M, cuda.gridsize(1)):
        acc = x[0, j]
        for b in range(1, B):
            acc += x[b, j]
        out[j] += acc


@cuda.jit(cache=True)
def _sum_kernel(x, out):
    # out[0] += sum of x (float64): each thread sums its grid-stride share, then one atomic add
    acc = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        acc += np.float64(x[i])
    cuda.atomic.add(out, 0, acc)


@cuda.jit(cache=True)
def _cast_kernel(dst, src):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


def _transpose_body(x, out, tile):
    # out[b, c, r] = x[b, r, c]; block (TILE, TILE) threads moves one TILE x TILE tile through
    # shared memory so that both the read and the write are coalesced (the +1 column avoids bank
    # conflicts).  blockIdx.z strides over the batch.
    B, R, C = x.shape
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    c0 = cuda.blockIdx.x * TRANSPOSE_TILE
    r0 = cuda.blockIdx.y * TRANSPOSE_TILE
    for b in range(cuda.blockIdx.z, B, cuda.gridDim.z):
        r = r0 + ty
        c = c0 + tx
        if r < R and c < C:
            tile[ty, tx] = x[b, r, c]
        cuda.syncthreads()
        c = c0 + ty
        r = r0 + tx
        if r < R and c < C:
            out[b, c, r] = tile[tx, ty]
        cuda.syncthreads()


_transpose_body_dev = cuda.jit(device=True, cache=True)(_transpose_body)


@cuda.jit(cache=True)
def _transpose_f32(x, out):
    tile = cuda.shared.array((TRANSPOSE_TILE, _TRANSPOSE_PAD), dtype=np.float32)
    _transpose_body_dev(x, out, tile)


@cuda.jit(cache=True)
def _transpose_f64(x, out):
    tile = cuda.shared.array((TRANSPOSE_TILE, _TRANSPOSE_PAD), dtype=np.float64)
    _transpose_body_dev(x, out, tile)


# --------------------------------------------------------------------------- allocation

def _flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


def _cupy_state():
    """``(cupy module or None, reason)``: whether pysrm uses CuPy here: the setting ``cuda_cupy`` true
    (:mod:`pysrm.settings`, read on each call; ``PYSRM_CUDA_CUPY=0`` turns it off) and the probe
    (:func:`_cupy_probe`) passed."""
    if not SIMULATOR and not settings.current().cuda_cupy:
        return None, "disabled by the setting cuda_cupy (PYSRM_CUDA_CUPY=0)"
    return _cupy_probe()


@functools.lru_cache(maxsize=1)
def _cupy_probe():
    """``(cupy module or None, reason)``: whether CuPy works here (a real GPU, CuPy importable, and a round
    trip through a CuPy-allocated buffer with a Numba kernel gives the right values).  Probed once per
    process (an immutable result)."""
    if SIMULATOR:
        return None, "the CUDA simulator cannot run CuPy"
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no GPU"
        probe = cupy.arange(5, dtype=np.float32)
        d = cuda.from_cuda_array_interface(probe.__cuda_array_interface__, owner=probe, sync=False)
        _axpy_kernel[1, 32](d, d, np.float32(1.0))  # d = 2 * d, through Numba on CuPy's memory
        got = d.copy_to_host()
        if not np.array_equal(got, 2 * np.arange(5, dtype=np.float32)):
            return None, f"a Numba kernel on CuPy memory gave {got}"
        return cupy, "ok"
    except Exception as exc:  # no CuPy, or it does not work with this driver / Numba
        return None, f"{type(exc).__name__}: {exc}"


def cupy_module():
    """The CuPy module where pysrm uses it (see the module docstring), else None."""
    return _cupy_state()[0]


def empty(shape, dtype):
    """An uninitialised device array (from CuPy's memory pool where CuPy is used)."""
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if counting():
        note("alloc")
    cp = cupy_module()
    if cp is None or 0 in shape:
        return cuda.device_array(shape, dtype=dtype)
    a = cp.empty(shape, dtype=dtype)
    return cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=a, sync=False)


def memset_zero(a) -> None:
    """``a[...] = 0`` for a C-contiguous device array: one device memset where CuPy is used, else the
    fill kernel."""
    cp = cupy_module()
    if cp is None or a.size == 0:
        fill(a, 0)
        return
    if counting():
        note("memset")
    ptr = a.__cuda_array_interface__["data"][0]
    cp.cuda.runtime.memsetAsync(ptr, 0, a.size * a.dtype.itemsize, 0)


def zeros(shape, dtype):
    """A device array of zeros."""
    a = empty(shape, dtype)
    memset_zero(a)
    return a


def empty_like(a):
    return empty(a.shape, a.dtype)


def zeros_like(a):
    return zeros(a.shape, a.dtype)


# --------------------------------------------------------------------------- elementwise ops

def fill(a, value) -> None:
    """``a[...] = value`` on the device."""
    launch(_fill_kernel, a.size, _flat(a), a.dtype.type(value))


def axpy(y, x, alpha=1.0) -> None:
    """``y += alpha * x`` on the device (``alpha`` in ``y``'s dtype)."""
    _check_same(y, x)
    launch(_axpy_kernel, y.size, _flat(y), _flat(x), y.dtype.type(alpha))


def accumulate(y, x) -> None:
    """``y += x`` on the device (gradient accumulation)."""
    _check_same(y, x)
    launch(_add_kernel, y.size, _flat(y), _flat(x))


def scale(a, s) -> None:
    """``a *= s`` on the device."""
    launch(_scale_kernel, a.size, _flat(a), a.dtype.type(s))


def copy(dst, src) -> None:
    """``dst[...] = src`` (same shape and dtype) on the device."""
    _check_same(dst, src)
    launch(_copy_kernel, dst.size, _flat(dst), _flat(src))


def copy_new(src):
    """A new device array equal to ``src``."""
    out = empty_like(src)
    copy(out, src)
    return out


def maximum(a, lower) -> None:
    """``a = max(a, lower)`` in place (the parameter clamp)."""
    launch(_maximum_kernel, a.size, _flat(a), a.dtype.type(lower))


def astype(a, dtype):
    """``a`` converted to ``dtype`` on the device (``a`` itself when it already has it)."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    out = empty(a.shape, dtype)
    launch(_cast_kernel, a.size, _flat(out), _flat(a))
    return out


def sum_rows(x, out=None, accumulate: bool = False):
    """``out[j] = sum_b x[b, j]`` for a 2-D device array ``x`` (summed in order of ``b``); with
    ``accumulate`` the sum is added to ``out``."""
    B, M = x.shape
    if out is None:
        out = empty((M,), x.dtype)
        accumulate = False
    launch(_sum_rows_acc_kernel if accumulate else _sum_rows_kernel, M, x, out)
    return out


def sum_async(x):
    """The sum of all elements of device array ``x`` as a float64 device array of shape ``(1,)``
    (read it with ``.copy_to_host()[0]`` when needed, e.g. once per epoch for spike counts)."""
    out = zeros((1,), np.float64)
    if x.size:
        blocks, tpb = launch_config(min(x.size, 1024 * current_launch().threads_per_block))
        launch_grid(_sum_kernel, blocks, tpb, _flat(x), out)
    return out


def total(x) -> float:
    """The sum of all elements of device array ``x`` (float64), copied back to the host."""
    return float(sum_async(x).copy_to_host()[0])


def transpose(x, out=None):
    """Batched transpose ``out[b, c, r] = x[b, r, c]`` of a 3-D device array."""
    B, R, C = x.shape
    if out is None:
        out = empty((B, C, R), x.dtype)
    if x.size == 0:
        return out
    kern = _transpose_f32 if x.dtype == np.float32 else _transpose_f64
    t = TRANSPOSE_TILE
    grid = ((C + t - 1) // t, (R + t - 1) // t, min(B, settings.current().cuda_grid_z_max))
    launch_grid(kern, grid, (t, t), x, out)
    return out


def accumulate_(y, x) -> None:
    """``y += x`` (alias of :func:`accumulate` for modules that have a parameter of that name)."""
    accumulate(y, x)


def _check_same(a, b):
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"device arrays must have equal shape and dtype, got {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")



# --------------------------------------------------------------------------- host <-> device (arrays)

def _host_to_device(a):
    """A device copy of the C-contiguous host array ``a``: memory from :func:`empty` (CuPy's pool where
    CuPy is used), then one host-to-device copy."""
    if cupy_module() is None or a.size == 0:
        return cuda.to_device(a)
    d = empty(a.shape, a.dtype)
    d.copy_to_device(a)
    return d


def array_to_device(x, dtype=None):
    """A device copy of the host array ``x`` (converted to ``dtype`` on the host first when given); a
    device array is returned as it is (converted on the device when ``dtype`` differs)."""
    if is_device_array(x):
        return x if dtype is None else astype(x, dtype)
    a = np.asarray(x)
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    return _host_to_device(np.require(a, requirements="C"))  # (ascontiguousarray would make 0-d arrays 1-d)


# --------------------------------------------------------------------------- constants cache

class ConstantCache:
    """Device copies of small, read-only host arrays (responses, ...), cached by content.

    Repeated calls with equal arrays (the same response kernel every time step) return the same device
    array, so the training loop does not copy them again.  Keyed completely (dtype, shape and every byte
    of the array); its entries are never written after they are made (every kernel only reads them), so
    one cache serves the whole process (:func:`constant`); a lock guards the dict.  The oldest entries are
    dropped beyond ``size``.
    """

    def __init__(self, size: int = 256):
        self.size = int(size)
        self._entries: "OrderedDict[tuple, object]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, arr):
        a = np.ascontiguousarray(arr)
        key = (a.dtype.str, a.shape, a.tobytes())
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        d = cuda.to_device(a)
        with self._lock:
            d = self._entries.setdefault(key, d)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return d

    def __len__(self):
        return len(self._entries)


_CONSTANTS = ConstantCache(256)


def constant(arr) -> object:
    """A device copy of the small, read-only host array ``arr``, cached by content (:class:`pysrm.cuda.memory.ConstantCache`)."""
    return _CONSTANTS.get(arr)


__all__ = ["empty", "zeros", "empty_like", "zeros_like", "memset_zero", "cupy_module", "fill", "axpy",
           "accumulate", "scale", "copy", "copy_new", "maximum", "astype", "sum_rows", "sum_async", "total",
           "transpose", "array_to_device", "constant", "ConstantCache"]
