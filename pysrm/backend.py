"""Choosing the CPU or the CUDA implementation from the arrays that come in.

CPU arrays are ``numpy.ndarray``; GPU arrays are Numba device arrays (anything
exposing ``__cuda_array_interface__``).  ``numba.cuda`` is imported only when a
GPU array is seen or a CUDA device is asked for, so the CPU path never pays
for it.
"""
from __future__ import annotations

import numpy as np


class CudaUnavailableError(RuntimeError):
    """Raised when CUDA is requested but no usable CUDA device (or simulator) exists."""


def is_device_array(x) -> bool:
    """True for a GPU array (Numba device array or any CUDA-array-interface object), an array of
    Numba's CUDA simulator (``__cuda_ndarray__``, it has no ``__cuda_array_interface__``) or a
    :class:`pysrm.events_cuda.DeviceSpikeEvents` (``__pysrm_device__``)."""
    if isinstance(x, np.ndarray):
        return False
    return (hasattr(x, "__cuda_array_interface__") or bool(getattr(x, "__cuda_ndarray__", False))
            or bool(getattr(x, "__pysrm_device__", False)))


def cuda_available() -> bool:
    """True when Numba can use a CUDA GPU, or the CUDA simulator is enabled."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the machine
        return False


def require_cuda() -> None:
    """Raise :class:`CudaUnavailableError` with an actionable message when CUDA is absent."""
    if not cuda_available():
        raise CudaUnavailableError(
            "device 'cuda' was requested but Numba finds no usable CUDA GPU (no NVIDIA driver or "
            "device visible). Use --device cpu, or --device auto to fall back to the CPU; to test the "
            "CUDA kernels without a GPU set NUMBA_ENABLE_CUDASIM=1 before starting Python.")


def resolve_device(device: str) -> str:
    """Map a user device name (``cpu``, ``cuda``, ``auto``) to ``cpu`` or ``cuda``."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be one of 'cpu', 'cuda', 'auto'; got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    require_cuda()
    return "cuda"
