"""How the GEMM-shaped products run on the GPU: ``with math_settings(gemm=..., tf32=...):`` (a
:mod:`contextvars` value like :func:`pysrm.cuda.launches.launch_settings`) picks the backend of the
products (``"auto"``: cuBLAS where :func:`pysrm.cuda.blas.available`, else the Numba GEMM;
``"cublas"``; ``"numba"``; :func:`pysrm.cuda.blas.gemm_backend` resolves it) and whether cuBLAS may use
TF32 tensor cores for float32 products (default **off**: float32 FMA products, whose spikes agree with the
CPU's; TF32 rounds the inputs of the products to 10-bit mantissas).  Defaults: the fields ``cuda_gemm`` and
``cuda_tf32`` of :mod:`pysrm.settings` (environment ``PYSRM_CUDA_GEMM``, ``PYSRM_CUDA_TF32=1``).  Pure
Python: this module imports no CUDA.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

from .. import settings


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


_MATH = contextvars.ContextVar("pysrm_cuda_math", default=None)


def default_math() -> MathConfig:
    """The GEMM settings outside any :func:`math_settings` block: :attr:`pysrm.settings.Settings.cuda_gemm`
    and :attr:`~pysrm.settings.Settings.cuda_tf32` of the settings in force."""
    s = settings.current()
    return MathConfig(s.cuda_gemm, s.cuda_tf32)


def current_math() -> MathConfig:
    """The GEMM settings in effect in this thread / context."""
    cfg = _MATH.get()
    return default_math() if cfg is None else cfg


@contextmanager
def math_settings(gemm: str | None = None, tf32: bool | None = None):
    """Within this block (this thread or task only) the GEMM-shaped products use these settings."""
    cur = current_math()
    cfg = MathConfig(cur.gemm if gemm is None else gemm, cur.tf32 if tf32 is None else tf32)
    token = _MATH.set(cfg)
    try:
        yield cfg
    finally:
        _MATH.reset(token)


__all__ = ["MathConfig", "default_math", "current_math", "math_settings"]
