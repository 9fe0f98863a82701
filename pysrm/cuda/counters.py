"""Launch counters of the CUDA backend: ``with count_launches() as c:`` counts, in the current thread
(or asyncio task) only, the kernel launches (``c.kernels``, by kernel name), the cuBLAS calls (``c.blas``),
the device memsets (``c.memsets``) and the device allocations (``c.allocs``) made inside the block
(``benchmarks/cuda_launch_count.py`` prints them per training step).

The counter is a :mod:`contextvars` value, never a module-wide one; :func:`note` records one event in it
(:func:`pysrm.cuda.launches.launch`, :func:`pysrm.cuda.memory.empty`, the cuBLAS calls).  Pure Python: this
module imports no CUDA.
"""
from __future__ import annotations

import contextvars
from collections import Counter
from contextlib import contextmanager


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


def counting() -> bool:
    """True inside a :func:`count_launches` block (callers skip the bookkeeping otherwise)."""
    return _COUNT.get() is not None


__all__ = ["LaunchCount", "count_launches", "note", "counting"]
