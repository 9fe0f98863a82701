r"""Device helpers for the CUDA backend (Numba CUDA).

Moving data
    :func:`to_device` copies a NumPy array, or a :class:`~pysrm.events.SpikeEvents`
    (into a :class:`DeviceSpikeEvents` with the same fields as device arrays), to
    the GPU once; :func:`to_host` brings either back.  Device arrays pass through
    both unchanged in the direction they already are.

Elementwise kernels used by training (all on flat, C-contiguous arrays)
    ``fill(a, v)``       :math:`a_i \leftarrow v`
    ``axpy(y, x, a)``    :math:`y_i \leftarrow y_i + a\,x_i` (``accumulate`` is ``a = 1``: ``grad += g``)
    ``scale(a, s)``      :math:`a_i \leftarrow s\,a_i`
    ``copy(dst, src)``   :math:`dst_i \leftarrow src_i` (``copy_new`` allocates)
    ``maximum(a, lo)``   :math:`a_i \leftarrow \max(a_i, lo)`
    ``total(x)``         :math:`\sum_i x_i` in float64 (``sum_async`` keeps it on the device)
    ``transpose(x, out)`` batched 2-D transpose ``out[b, c, r] = x[b, r, c]`` (shared-memory tiles)

Thread mapping: one thread per element in a *grid-stride loop*
(``for i in range(cuda.grid(1), n, cuda.gridsize(1))``), so any grid size is
correct.  :func:`launch_config` picks the grid from the current
:class:`LaunchConfig` (:func:`current_launch`): the threads per block (256 by default)
and the largest grid (``max_blocks``); under the simulator 8 threads and 3 blocks, so
that tiny inputs span several blocks *and* every thread loops more than once.
``with launch_settings(threads_per_block=..., max_blocks=...):`` changes it for the
code inside the block, in the current thread (or asyncio task) only: a
:mod:`contextvars` variable, never a module-wide setting.

Every launch with zero work is skipped (CUDA rejects empty grids).
Compiled kernels are cached on disk (``cache=True``) where Numba supports it.
"""
from __future__ import annotations

import contextvars
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

# numba-cuda (seen with numba 0.68.0 + numba-cuda on NumPy 2.5.2, on an H200 machine) registers an
# overload for ``np.row_stack`` when it compiles its first kernel; NumPy 2.5 removed that alias of
# ``np.vstack``, so every CUDA kernel failed with "module 'numpy' has no attribute 'row_stack'".
# Restoring the alias (only where it is missing) lets numba-cuda load; pysrm itself never uses it.
# Done here, where CUDA is imported, never on a CPU-only ``import pysrm``.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import config as _numba_config  # noqa: E402
from numba import cuda  # noqa: E402

from .backend import is_device_array
from .events import EventBatch, SpikeEvents

#: True when Numba runs kernels in its CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)


class LaunchConfig:
    """Launch parameters of the 1-D grid-stride kernels (immutable; see :func:`launch_settings`)."""

    __slots__ = ("threads_per_block", "max_blocks")

    def __init__(self, threads_per_block: int = 256, max_blocks: int = 65535 * 8):
        if not 1 <= int(threads_per_block) <= 1024:
            raise ValueError(f"threads_per_block must be in [1, 1024], got {threads_per_block}")
        if int(max_blocks) < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        object.__setattr__(self, "threads_per_block", int(threads_per_block))
        object.__setattr__(self, "max_blocks", int(max_blocks))

    def __setattr__(self, name, value):
        raise AttributeError("LaunchConfig is immutable; use launch_settings(...)")

    def __repr__(self):
        return f"LaunchConfig(threads_per_block={self.threads_per_block}, max_blocks={self.max_blocks})"


#: The default launch configuration of every 1-D kernel of the CUDA backend.
DEFAULT_LAUNCH = LaunchConfig(*((8, 3) if SIMULATOR else (256, 65535 * 8)))
_LAUNCH = contextvars.ContextVar("pysrm_cuda_launch", default=DEFAULT_LAUNCH)


def current_launch() -> LaunchConfig:
    """The launch configuration in effect in this thread / context."""
    return _LAUNCH.get()


@contextmanager
def launch_settings(threads_per_block: int | None = None, max_blocks: int | None = None):
    """Within this block (this thread or task only) the 1-D kernels launch with these settings."""
    cur = _LAUNCH.get()
    cfg = LaunchConfig(cur.threads_per_block if threads_per_block is None else threads_per_block,
                       cur.max_blocks if max_blocks is None else max_blocks)
    token = _LAUNCH.set(cfg)
    try:
        yield cfg
    finally:
        _LAUNCH.reset(token)


#: Tile sizes of the shared-memory matrix products and transposes (compile-time constants,
#: frozen into the cached kernels -- deliberately not configurable at run time).
#: ``GEMM_THREADS`` x ``GEMM_THREADS`` threads compute a ``GEMM_BLOCK`` x ``GEMM_BLOCK`` tile
#: of the product, each thread a ``GEMM_MICRO`` x ``GEMM_MICRO`` register block; the K
#: (reduction) tile is ``GEMM_THREADS`` deep.  The simulator (which never caches) uses tiny
#: tiles so that small test shapes cover several tiles and the partial-tile edges.
GEMM_THREADS = 4 if SIMULATOR else 16
GEMM_MICRO = 2 if SIMULATOR else 4
GEMM_BLOCK = GEMM_THREADS * GEMM_MICRO
TRANSPOSE_TILE = 4 if SIMULATOR else 32
_TRANSPOSE_PAD = TRANSPOSE_TILE + 1  # a global constant: Numba does not fold ``TILE + 1`` in a shape
#: Largest ``gridDim.z`` of the batched kernels (they stride over the rest of the batch).
GRID_Z_MAX = int(os.environ.get("PYSRM_CUDA_GRID_Z_MAX", "2" if SIMULATOR else "65535"))


def launch_config(n: int, threads_per_block: int | None = None) -> tuple:
    """``(blocks, threads)`` for a grid-stride kernel over ``n`` work items (``n >= 1``)."""
    cfg = _LAUNCH.get()
    tpb = threads_per_block or cfg.threads_per_block
    blocks = max(1, min(cfg.max_blocks, (int(n) + tpb - 1) // tpb))
    return blocks, tpb


def launch(kernel, n: int, *args) -> None:
    """Launch a 1-D grid-stride ``kernel`` over ``n`` items (nothing when ``n == 0``)."""
    if n <= 0:
        return
    blocks, tpb = launch_config(n)
    kernel[blocks, tpb](*args)


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
def _sum_kernel(x, out):
    # out[0] += sum of x (float64): each thread sums its grid-stride share, then one atomic add
    acc = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        acc += np.float64(x[i])
    cuda.atomic.add(out, 0, acc)


@cuda.jit(cache=True)
def _event_sample_kernel(offsets, sample):
    # sample[k] = n for offsets[n] <= k < offsets[n+1]; one thread per sample n
    N = offsets.shape[0] - 1
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        for k in range(offsets[n], offsets[n + 1]):
            sample[k] = n


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


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """A device array of zeros."""
    a = empty(shape, dtype)
    fill(a, 0)
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


def sum_rows(x, out=None):
    """``out[j] = sum_b x[b, j]`` for a 2-D device array ``x`` (summed in order of ``b``)."""
    B, M = x.shape
    if out is None:
        out = empty((M,), x.dtype)
    launch(_sum_rows_kernel, M, x, out)
    return out


def sum_async(x):
    """The sum of all elements of device array ``x`` as a float64 device array of shape ``(1,)``
    (read it with ``.copy_to_host()[0]`` when needed, e.g. once per epoch for spike counts)."""
    out = zeros((1,), np.float64)
    if x.size:
        blocks, tpb = launch_config(min(x.size, 1024 * current_launch().threads_per_block))
        _sum_kernel[blocks, tpb](_flat(x), out)
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
    grid = ((C + t - 1) // t, (R + t - 1) // t, min(B, GRID_Z_MAX))
    kern[grid, (t, t)](x, out)
    return out


def _check_same(a, b):
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"device arrays must have equal shape and dtype, got {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")


# --------------------------------------------------------------------------- constants cache

_CONST_CACHE: "OrderedDict[tuple, object]" = OrderedDict()
_CONST_CACHE_SIZE = 256
_CONST_LOCK = threading.Lock()


def constant(arr) -> object:
    """A device copy of a small, read-only host array (responses, ...), cached by content.

    Repeated calls with equal arrays (the same response kernel every time step) return the
    same device array, so the training loop does not copy them again.  The cache is process-wide
    because it is keyed completely (dtype, shape and every byte of the array) and its entries are
    never written after they are made (every kernel only reads them); a lock guards the dict.
    """
    a = np.ascontiguousarray(arr)
    key = (a.dtype.str, a.shape, a.tobytes())
    with _CONST_LOCK:
        hit = _CONST_CACHE.get(key)
        if hit is not None:
            _CONST_CACHE.move_to_end(key)
            return hit
    d = cuda.to_device(a)
    with _CONST_LOCK:
        d = _CONST_CACHE.setdefault(key, d)
        if len(_CONST_CACHE) > _CONST_CACHE_SIZE:
            _CONST_CACHE.popitem(last=False)
    return d


# --------------------------------------------------------------------------- events

class DeviceSpikeEvents(EventBatch):
    """A :class:`~pysrm.events.SpikeEvents` whose arrays live on the GPU.

    Same fields (``shape``, ``offsets``, ``neuron``, ``time``, ``value``; events of a
    sample sorted by ``(neuron, time)``), plus ``sample`` (the sample index of every
    event, computed on the device on first use).  The dense/conv/pool CUDA ops accept it
    and run event driven.  ``is_device_array`` is true for it.
    """

    __slots__ = ("shape", "offsets", "neuron", "time", "value", "_sample")
    #: marks a device-resident object for :func:`pysrm.backend.is_device_array`
    __pysrm_device__ = True

    def __init__(self, shape, offsets, neuron, time, value):
        self.shape = tuple(int(s) for s in shape)
        self.offsets, self.neuron, self.time, self.value = offsets, neuron, time, value
        self._sample = None

    @classmethod
    def from_host(cls, ev: SpikeEvents) -> "DeviceSpikeEvents":
        out = cls(ev.shape, cuda.to_device(ev.offsets), cuda.to_device(ev.neuron), cuda.to_device(ev.time),
                  cuda.to_device(ev.value))
        return out

    @property
    def sample(self):
        """Device array ``(n_events,)`` int32: the sample of every event."""
        if self._sample is None:
            s = empty((max(self.n_events, 0),), np.int32)
            launch(_event_sample_kernel, self.shape[0], self.offsets, s)
            self._sample = s
        return self._sample

    def astype(self, dtype) -> "DeviceSpikeEvents":
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        out = DeviceSpikeEvents(self.shape, self.offsets, self.neuron, self.time, astype(self.value, dtype))
        out._sample = self._sample
        return out

    def reshape_neurons(self, shape) -> "DeviceSpikeEvents":
        """The same events seen with another (N, C, H, W, T) shape of equal neuron count (Flatten)."""
        out = DeviceSpikeEvents(shape, self.offsets, self.neuron, self.time, self.value)
        out._sample = self._sample
        return out

    def to_host(self) -> SpikeEvents:
        return SpikeEvents(self.shape, self.offsets.copy_to_host(), self.neuron.copy_to_host(),
                           self.time.copy_to_host(), self.value.copy_to_host())

    def to_dense(self):
        """The dense ``(N, C, H, W, T)`` device array (duplicate events add up)."""
        n, c, h, w, t = self.shape
        out = zeros(self.shape, self.dtype)
        launch(_scatter_events_kernel, self.n_events, self.sample, self.neuron, self.time, self.value,
               out.reshape(n, c * h * w, t))
        return out

    def __repr__(self):
        return f"DeviceSpikeEvents(shape={self.shape}, n_events={self.n_events}, dtype={self.dtype})"


@cuda.jit(cache=True)
def _scatter_events_kernel(sample, neuron, time, value, out):
    for k in range(cuda.grid(1), neuron.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(out, (sample[k], neuron[k], time[k]), value[k])


def to_device(x, dtype=None):
    """Copy ``x`` to the GPU: a NumPy array becomes a device array, a ``SpikeEvents`` a
    :class:`DeviceSpikeEvents`; device arrays are returned as they are.  ``dtype``
    converts (on the host, before the copy) when given."""
    if isinstance(x, DeviceSpikeEvents):
        return x if dtype is None else x.astype(dtype)
    if isinstance(x, SpikeEvents):
        if dtype is not None and np.dtype(dtype) != x.dtype:
            x = x.astype(dtype)
        return DeviceSpikeEvents.from_host(x)
    if is_device_array(x):
        return x if dtype is None else astype(x, dtype)
    a = np.asarray(x)
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    return cuda.to_device(np.require(a, requirements="C"))  # (ascontiguousarray would make 0-d arrays 1-d)


def to_host(x):
    """Copy ``x`` back to the host (a NumPy array or a ``SpikeEvents``); host data and ``None``
    are returned unchanged."""
    if x is None or isinstance(x, (np.ndarray, SpikeEvents, float, int, np.generic)):
        return x
    if isinstance(x, DeviceSpikeEvents):
        return x.to_host()
    if is_device_array(x):
        return x.copy_to_host()
    raise TypeError(f"to_host: cannot copy a {type(x).__name__} to the host")


def synchronize() -> None:
    """Wait for every queued kernel (for timing)."""
    cuda.synchronize()


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


__all__ = [
    "SIMULATOR", "LaunchConfig", "DEFAULT_LAUNCH", "current_launch", "launch_settings", "launch_config", "launch", "empty", "zeros", "empty_like", "zeros_like",
    "fill", "axpy", "accumulate", "scale", "copy", "copy_new", "maximum", "astype", "sum_rows", "sum_async",
    "total", "transpose",
    "constant", "DeviceSpikeEvents", "to_device", "to_host", "synchronize", "ceil_div",
]
