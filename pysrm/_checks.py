"""Input validation helpers shared by the public wrappers.

Every helper raises ``ValueError`` or ``TypeError`` whose message names the
parameter, the value found and what was expected.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np

_state = threading.local()


@contextmanager
def trusted_inputs():
    """Inside this block ops skip the scan for non-finite values (shape and dtype checks remain).

    The network validates its input and the loss gradient once and runs its layers in this block:
    the interior arrays are produced by pysrm's own kernels from finite inputs and finite weights
    (the optimisers refuse non-finite gradients), so scanning every intermediate again would only
    cost a pass over memory per op.
    """
    old = getattr(_state, "trusted", False)
    _state.trusted = True
    try:
        yield
    finally:
        _state.trusted = old

FLOAT_DTYPES = (np.float32, np.float64)


def positive(name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as float, checking it is finite and > 0 (or >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if allow_zero:
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    elif v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def float_array(name: str, x, ndim=None, min_ndim=None, finite: bool = True) -> np.ndarray:
    """Check that ``x`` is a float32/float64 NumPy array of the expected rank."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {x.shape}")
    if finite and not getattr(_state, "trusted", False) and not all_finite(x):
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); expected finite numbers")
    return x


def all_finite(x: np.ndarray) -> bool:
    """True when every entry is finite.

    Fast path: one summation pass without a temporary boolean array (a sum is finite when all terms
    are, unless finite values overflow -- then the exact elementwise check decides).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(x, axis=None)):
            return True
    return bool(np.isfinite(x).all())


def same_dtype(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} has dtype {a.dtype} but {name_b} has dtype {b.dtype}; they must match")


def positive_int(name: str, value, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    v = int(value)
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return v
