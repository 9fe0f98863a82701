"""Small helpers shared by the op wrappers (validation and reshaping)."""
from __future__ import annotations

import numpy as np

from .._checks import float_array


def as_rows(name: str, x: np.ndarray, check_finite: bool = True) -> np.ndarray:
    """View ``x`` of shape ``(..., T)`` as a C-contiguous ``(rows, T)`` array."""
    float_array(name, x, min_ndim=1, finite=check_finite)
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


def response_as(name: str, kernel, dtype) -> np.ndarray:
    """A 1-D response array in ``dtype``; rejects empty or non-finite responses."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise ValueError(f"{name} contains non-finite values")
    return np.ascontiguousarray(k.astype(dtype))


def check_5d(name: str, x: np.ndarray) -> np.ndarray:
    """Check a dense spike tensor ``(N, C, H, W, T)``."""
    float_array(name, x, ndim=5)
    return x


def check_strategy(strategy, valid) -> str:
    """Check an op's ``strategy`` argument against its ``valid`` names (ValueError listing them)."""
    if strategy not in valid:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(map(repr, valid))}")
    return strategy
