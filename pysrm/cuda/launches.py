r"""Kernel launches of the CUDA backend: the launch settings, :func:`launch` / :func:`launch_grid`, and
the compile-time tile sizes of the shared-memory kernels.

Thread mapping: one thread per element in a *grid-stride loop*
(``for i in range(cuda.grid(1), n, cuda.gridsize(1))``), so any grid size is
correct.  :func:`launch_config` picks the grid from the current
:class:`LaunchConfig` (:func:`current_launch`): the threads per block (256 by default)
and the largest grid (``max_blocks``); under the simulator 8 threads and 3 blocks, so
that tiny inputs span several blocks *and* every thread loops more than once.
``with launch_settings(threads_per_block=..., max_blocks=...):`` changes it for the
code inside the block, in the current thread (or asyncio task) only: a
:mod:`contextvars` variable, never a module-wide setting.

Every launch with zero work is skipped (CUDA rejects empty grids).  Every kernel of the CUDA backend
is launched through :func:`launch` (1-D grid-stride) or :func:`launch_grid` (explicit grid and block),
so that :func:`pysrm.cuda.counters.count_launches` sees it.

This is the module of the package that imports ``numba.cuda`` first (with numba-cuda's cache locators,
``pysrm._kernel_cache``).
"""
from __future__ import annotations

import contextvars
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

from .. import _kernel_cache  # noqa: E402

_kernel_cache.install_cuda()  # numba-cuda's own cache locators, where it has them (see _kernel_cache)

from .counters import counting, note  # noqa: E402

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


def launch_config(n: int, threads_per_block: int | None = None) -> tuple:
    """``(blocks, threads)`` for a grid-stride kernel over ``n`` work items (``n >= 1``)."""
    cfg = _LAUNCH.get()
    tpb = threads_per_block or cfg.threads_per_block
    blocks = max(1, min(cfg.max_blocks, (int(n) + tpb - 1) // tpb))
    return blocks, tpb


def _kernel_name(kernel) -> str:
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    return getattr(fn, "__name__", None) or getattr(kernel, "__name__", "kernel")


def launch(kernel, n: int, *args) -> None:
    """Launch a 1-D grid-stride ``kernel`` over ``n`` items (nothing when ``n == 0``)."""
    if n <= 0:
        return
    blocks, tpb = launch_config(n)
    if counting():
        note("kernel", _kernel_name(kernel))
    kernel[blocks, tpb](*args)


def launch_grid(kernel, grid, block, *args) -> None:
    """Launch ``kernel[grid, block](*args)`` (counted by :func:`pysrm.cuda.counters.count_launches`)."""
    if counting():
        note("kernel", _kernel_name(kernel))
    kernel[grid, block](*args)


def synchronize() -> None:
    """Wait for every queued kernel (for timing)."""
    cuda.synchronize()


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


__all__ = ["SIMULATOR", "LaunchConfig", "DEFAULT_LAUNCH", "current_launch", "launch_settings", "launch_config",
           "launch", "launch_grid", "synchronize", "ceil_div", "GEMM_THREADS", "GEMM_MICRO", "GEMM_BLOCK",
           "TRANSPOSE_TILE"]
