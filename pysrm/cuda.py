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

Launches and their count
    Every kernel of the CUDA backend is launched through :func:`launch` (1-D grid-stride) or
    :func:`launch_grid` (explicit grid and block); cuBLAS calls go through
    :mod:`pysrm.ops._cublas_cuda`.  ``with count_launches() as c:`` counts, in the current thread
    only, the kernel launches (``c.kernels``, by kernel name), the cuBLAS calls (``c.blas``), the
    device memsets (``c.memsets``) and the device allocations (``c.allocs``) made inside the block
    (``benchmarks/cuda_launch_count.py`` prints them per training step).

Memory and CuPy
    Where CuPy is importable and a real GPU is used (not the simulator; ``PYSRM_CUDA_CUPY=0``
    disables it), device arrays are taken from CuPy's memory pool (:func:`empty`; wrapped as Numba
    device arrays through ``__cuda_array_interface__``, zero copy) and zeroed with a memset
    (:func:`zeros`): Numba's own allocator calls ``cuMemAlloc`` for every array and frees them in
    batches with ``cuMemFree``, which waits for the whole device, so a training step stalled several
    times.  CuPy's pool is stream ordered; pysrm runs all its kernels, memsets and cuBLAS calls on
    the default stream (CuPy's current stream must be the null stream, its default), so a block
    returned to the pool is reused only by work queued after the last kernel that read it.
    Otherwise Numba's allocator is used.  :func:`backend_info` says which.

GEMM settings
    ``with math_settings(gemm=..., tf32=...):`` (a :mod:`contextvars` value like
    :func:`launch_settings`) picks the backend of the GEMM-shaped products (``"auto"``: cuBLAS where
    :func:`pysrm.ops._cublas_cuda.available`, else the Numba GEMM of :mod:`pysrm.ops._gemm_cuda`;
    ``"cublas"``; ``"numba"``) and whether cuBLAS may use TF32 tensor cores for float32 products
    (default **off**: float32 FMA products, whose spikes agree with the CPU's; TF32 rounds the
    inputs of the products to 10-bit mantissas).  Defaults from the environment at import:
    ``PYSRM_CUDA_GEMM`` and ``PYSRM_CUDA_TF32=1``.
"""
from __future__ import annotations

import contextvars
import functools
import os
import threading
import warnings
from collections import Counter, OrderedDict
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

from . import _kernel_cache  # noqa: E402

_kernel_cache.install_cuda()  # numba-cuda's own cache locators, where it has them (see _kernel_cache)

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


class MathConfig:
    """How the GEMM-shaped products run (immutable; see :func:`math_settings`): ``gemm`` is
    ``"auto"``, ``"cublas"`` or ``"numba"``; ``tf32`` lets cuBLAS use TF32 tensor cores for float32."""

    __slots__ = ("gemm", "tf32")
    GEMMS = ("auto", "cublas", "numba")

    def __init__(self, gemm: str = "auto", tf32: bool = False):
        if gemm not in self.GEMMS:
            raise ValueError(f"gemm must be one of {', '.join(map(repr, self.GEMMS))}, got {gemm!r}")
        object.__setattr__(self, "gemm", gemm)
        object.__setattr__(self, "tf32", bool(tf32))

    def __setattr__(self, name, value):
        raise AttributeError("MathConfig is immutable; use math_settings(...)")

    def __repr__(self):
        return f"MathConfig(gemm={self.gemm!r}, tf32={self.tf32})"


#: the default GEMM settings (environment at import: PYSRM_CUDA_GEMM, PYSRM_CUDA_TF32=1)
DEFAULT_MATH = MathConfig(os.environ.get("PYSRM_CUDA_GEMM", "auto") or "auto",
                          os.environ.get("PYSRM_CUDA_TF32", "0") == "1")
_MATH = contextvars.ContextVar("pysrm_cuda_math", default=DEFAULT_MATH)


def current_math() -> MathConfig:
    """The GEMM settings in effect in this thread / context."""
    return _MATH.get()


@contextmanager
def math_settings(gemm: str | None = None, tf32: bool | None = None):
    """Within this block (this thread or task only) the GEMM-shaped products use these settings."""
    cur = _MATH.get()
    cfg = MathConfig(cur.gemm if gemm is None else gemm, cur.tf32 if tf32 is None else tf32)
    token = _MATH.set(cfg)
    try:
        yield cfg
    finally:
        _MATH.reset(token)


def gemm_backend() -> str:
    """``"cublas"`` or ``"numba"``: the backend the GEMM-shaped products use now (``"cublas"`` asked for
    where it is unavailable raises RuntimeError)."""
    want = _MATH.get().gemm
    if want == "numba":
        return "numba"
    from .ops import _cublas_cuda
    if _cublas_cuda.available():
        return "cublas"
    if want == "cublas":
        raise RuntimeError(f"cuBLAS was asked for but is unavailable: {_cublas_cuda.why_unavailable()}")
    return "numba"


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


class LaunchCount:
    """What :func:`count_launches` saw: ``kernels`` (a Counter of kernel names), ``blas`` (a Counter of
    cuBLAS routine names), ``memsets``, ``allocs``; ``launches`` is kernels + cuBLAS calls + memsets."""

    def __init__(self):
        self.kernels = Counter()
        self.blas = Counter()
        self.memsets = 0
        self.allocs = 0

    @property
    def n_kernels(self) -> int:
        return sum(self.kernels.values())

    @property
    def n_blas(self) -> int:
        return sum(self.blas.values())

    @property
    def launches(self) -> int:
        return self.n_kernels + self.n_blas + self.memsets

    def as_dict(self) -> dict:
        return {"launches": self.launches, "kernels": self.n_kernels, "blas": self.n_blas, "memsets": self.memsets,
                "allocs": self.allocs, "by_kernel": dict(self.kernels), "by_blas": dict(self.blas)}

    def __repr__(self):
        return (f"LaunchCount(launches={self.launches}: kernels={self.n_kernels}, blas={self.n_blas}, "
                f"memsets={self.memsets}; allocs={self.allocs})")


_COUNT = contextvars.ContextVar("pysrm_cuda_launch_count", default=None)


@contextmanager
def count_launches():
    """Count the launches made inside this block, in this thread only (see the module docstring)."""
    c = LaunchCount()
    token = _COUNT.set(c)
    try:
        yield c
    finally:
        _COUNT.reset(token)


def note(kind: str, name: str = "") -> None:
    """Record one ``kind`` ("kernel", "blas", "memset", "alloc") event in the active counter, if any."""
    c = _COUNT.get()
    if c is None:
        return
    if kind == "kernel":
        c.kernels[name] += 1
    elif kind == "blas":
        c.blas[name] += 1
    elif kind == "memset":
        c.memsets += 1
    else:
        c.allocs += 1


def _kernel_name(kernel) -> str:
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    return getattr(fn, "__name__", None) or getattr(kernel, "__name__", "kernel")


def launch(kernel, n: int, *args) -> None:
    """Launch a 1-D grid-stride ``kernel`` over ``n`` items (nothing when ``n == 0``)."""
    if n <= 0:
        return
    blocks, tpb = launch_config(n)
    if _COUNT.get() is not None:
        note("kernel", _kernel_name(kernel))
    kernel[blocks, tpb](*args)


def launch_grid(kernel, grid, block, *args) -> None:
    """Launch ``kernel[grid, block](*args)`` (counted by :func:`count_launches`)."""
    if _COUNT.get() is not None:
        note("kernel", _kernel_name(kernel))
    kernel[grid, block](*args)


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


@functools.lru_cache(maxsize=1)
def _cupy_state():
    """``(cupy module or None, reason)``: whether pysrm may use CuPy here (a real GPU, CuPy importable,
    ``PYSRM_CUDA_CUPY`` not ``0``, and a round trip through a CuPy-allocated buffer with a Numba
    kernel gives the right values).  Decided once per process (an immutable result)."""
    if SIMULATOR:
        return None, "the CUDA simulator cannot run CuPy"
    if os.environ.get("PYSRM_CUDA_CUPY", "1") == "0":
        return None, "disabled by PYSRM_CUDA_CUPY=0"
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


def backend_info() -> dict:
    """Which allocator and GEMM backend pysrm's CUDA code uses in this process, and why."""
    from .ops import _cublas_cuda
    cp, why = _cupy_state()
    return {"simulator": SIMULATOR, "allocator": "cupy-pool" if cp is not None else "numba",
            "cupy": getattr(cp, "__version__", None), "cupy_reason": why,
            "cublas": _cublas_cuda.available(), "cublas_reason": _cublas_cuda.why_unavailable() or "ok",
            "gemm": gemm_backend(), "tf32": current_math().tf32}


def empty(shape, dtype):
    """An uninitialised device array (from CuPy's memory pool where CuPy is used)."""
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if _COUNT.get() is not None:
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
    if _COUNT.get() is not None:
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
    grid = ((C + t - 1) // t, (R + t - 1) // t, min(B, GRID_Z_MAX))
    launch_grid(kern, grid, (t, t), x, out)
    return out


def transpose2d(x, R: int, C: int, out=None, accumulate: bool = False):
    """``out (C x R) = x^T`` for a C-contiguous device array ``x`` of ``R * C`` elements seen as ``R x C``
    (``out += x^T`` with ``accumulate``; ``out`` any device array of ``C * R`` elements).  One cuBLAS
    ``geam`` where the GEMM backend is cuBLAS, else the shared-memory transpose kernel (and an add)."""
    if out is None:
        out = empty((C, R), x.dtype)
        accumulate = False
    if gemm_backend() == "cublas":
        from .ops import _cublas_cuda
        _cublas_cuda.transpose_into(x, out, R, C, accumulate)
        return out
    if accumulate:
        t = transpose(x.reshape(1, R, C)).reshape(C, R)
        accumulate_(out.reshape(C, R), t)
        return out
    transpose(x.reshape(1, R, C), out.reshape(1, C, R))
    return out


def accumulate_(y, x) -> None:
    """``y += x`` (alias of :func:`accumulate` for modules that have a parameter of that name)."""
    accumulate(y, x)


def _check_same(a, b):
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"device arrays must have equal shape and dtype, got {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")


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
        self.data = empty((self.size,), dt)
        self.grad = empty((self.size,), dt)
        self._data_views = self.views_of(self.data)
        self._grad_views = self.views_of(self.grad)
        for p, dv, gv in zip(self.params, self._data_views, self._grad_views):
            copy(dv, p.data)
            copy(gv, p.grad)
            p.data, p.grad = dv, gv
            p._pysrm_pack = self
        lower = np.array([p.lower if p.lower is not None else 0.0 for p in self.params], dtype=dt)
        use = np.array([p.lower is not None for p in self.params], dtype=np.int8)
        self.seg_end = to_device(self.offsets[1:].copy())
        self.seg_lower = to_device(lower)
        self.seg_use_lower = to_device(use)

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
        memset_zero(self.grad)


def zero_grads(params) -> None:
    """``p.grad[...] = 0`` for device parameters: one launch when they form an intact
    :class:`ParameterPack`, else one per parameter."""
    pk = ParameterPack.of(params)
    if pk is not None:
        pk.zero_grad()
        return
    for p in params:
        if is_device_array(p.grad):
            memset_zero(p.grad)
        else:
            p.grad[...] = 0


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
        out = cls(ev.shape, _host_to_device(ev.offsets), _host_to_device(ev.neuron), _host_to_device(ev.time),
                  _host_to_device(ev.value))
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
    return _host_to_device(np.require(a, requirements="C"))  # (ascontiguousarray would make 0-d arrays 1-d)


def _host_to_device(a):
    """A device copy of the C-contiguous host array ``a``: memory from :func:`empty` (CuPy's pool where
    CuPy is used), then one host-to-device copy."""
    if cupy_module() is None or a.size == 0:
        return cuda.to_device(a)
    d = empty(a.shape, a.dtype)
    d.copy_to_device(a)
    return d


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
    "total", "transpose", "transpose2d", "count_launches", "LaunchCount", "launch_grid", "math_settings",
    "current_math", "MathConfig", "gemm_backend", "backend_info", "memset_zero", "cupy_module", "ParameterPack",
    "zero_grads",
    "constant", "DeviceSpikeEvents", "to_device", "to_host", "synchronize", "ceil_div",
]
