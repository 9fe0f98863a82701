r"""The CUDA backend's device layer (Numba CUDA), one module per concern.

=====================================  ==============================================================
module                                 what it holds
=====================================  ==============================================================
:mod:`pysrm.cuda.launches`             ``numba.cuda`` itself, ``SIMULATOR``, the launch settings
                                       (:func:`launch_settings`, :class:`LaunchConfig`),
                                       :func:`launch` / :func:`launch_grid`, the kernels' tile sizes
:mod:`pysrm.cuda.counters`             :func:`count_launches`: kernel launches, cuBLAS calls, memsets and
                                       allocations counted per thread (pure Python)
:mod:`pysrm.cuda.settings`             :func:`math_settings`: the GEMM backend and TF32 (pure Python)
:mod:`pysrm.cuda.memory`               allocation (CuPy's pool or Numba's), the elementwise kernels
                                       (:func:`fill`, :func:`axpy`, :func:`copy`, ...), :func:`transpose`,
                                       the cache of device constants (:func:`constant`)
:mod:`pysrm.cuda.blas`                 cuBLAS through CuPy, :func:`gemm_backend`, :func:`transpose2d`,
                                       :func:`backend_info`
:mod:`pysrm.cuda.transfer`             :func:`to_device` / :func:`to_host` of arrays and spike events
=====================================  ==============================================================

Elsewhere, beside what they serve: the device spike events (:class:`pysrm.events_cuda.DeviceSpikeEvents`,
beside :class:`pysrm.events.SpikeEvents`) and the parameter pack of a network on the GPU
(:class:`pysrm.ops.optim_cuda.ParameterPack`, beside the optimiser kernels).

The modules import each other in one direction only (counters <- launch <- memory <- transfer, and
memory, settings <- blas; the GEMM products of :mod:`pysrm.ops._gemm_cuda` and :mod:`pysrm.ops._cublas_cuda` sit above
:mod:`pysrm.cuda.blas`), so there is no import circle.  This package namespace re-exports the public
device API, which the CUDA ops use as ``from pysrm import cuda as dev; dev.zeros(...)``.
"""
from __future__ import annotations

from .blas import backend_info, gemm_backend, transpose2d
from .counters import LaunchCount, count_launches, note
from .launches import (DEFAULT_LAUNCH, GEMM_BLOCK, GEMM_MICRO, GEMM_THREADS, SIMULATOR, TRANSPOSE_TILE,
                     LaunchConfig, ceil_div, current_launch, launch, launch_config, launch_grid, launch_settings,
                     synchronize)
from .memory import (accumulate, accumulate_, astype, axpy, constant, copy, copy_new, cupy_module, empty,
                     empty_like, fill, maximum, memset_zero, scale, sum_async, sum_rows, total, transpose, zeros,
                     zeros_like)
from .settings import MathConfig, current_math, default_math, math_settings
from .transfer import to_device, to_host


__all__ = [
    "SIMULATOR", "LaunchConfig", "DEFAULT_LAUNCH", "current_launch", "launch_settings", "launch_config", "launch",
    "launch_grid", "empty", "zeros", "empty_like", "zeros_like", "fill", "axpy", "accumulate", "scale", "copy",
    "copy_new", "maximum", "astype", "sum_rows", "sum_async", "total", "transpose", "transpose2d", "count_launches",
    "LaunchCount", "math_settings", "current_math", "default_math", "MathConfig", "gemm_backend", "backend_info", "memset_zero",
    "cupy_module", "constant", "to_device", "to_host", "synchronize", "ceil_div",
]
