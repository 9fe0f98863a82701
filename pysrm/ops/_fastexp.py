r"""The surrogate derivative over one row, with a vectorisable float32 exponential.

``rho_row(g, u, theta, a, inv_width, out)`` writes

.. math::

    out[t] = g[t] \cdot a \cdot \exp(-|u[t] - \vartheta| \cdot w^{-1})

for a row of ``T`` bins.  NumPy/Numba's ``exp`` is a scalar libm call (about 2 ns per element on
the benchmark machine; the pip builds of llvmlite have no SVML), which made the surrogate the
largest part of the SRM backward.  For **float32** rows this module evaluates the exponential
itself, in loops that LLVM vectorises:

.. math::

    x = \max(-|u-\vartheta| w^{-1}, -87), \quad k = \lfloor x \log_2 e + 1/2 \rfloor, \quad
    r = x - k \ln 2 \;(\text{two-part } \ln 2), \quad
    e^x = 2^k \sum_{j=0}^{6} r^j / j!

with :math:`|r| \le \ln 2 / 2`, so the truncation error is below :math:`(\ln 2/2)^7/7! \approx 1.2
\cdot 10^{-7}` relative (about one float32 ulp; tested against ``np.exp`` over the whole range).
:math:`2^k` is assembled from its exponent bits.  Arguments below -87 (where float32 ``exp`` is
denormal or zero) give ``exp(-87) ~ 1.6e-38`` times ``g``, not 0.  **float64** rows use ``np.exp``
(exact to rounding; :func:`pysrm.ops._elementwise.surrogate_element`, the function the CUDA kernels
compile too), so float64 gradient checks are unaffected.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._elementwise import surrogate_element_cpu

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125        # ln 2 split so that k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.4286068203094173e-06


def rho_row(g, u, theta, a, inv_width, out, scratch):
    """See the module docstring (``scratch``: an int32 work row of the same length)."""
    raise NotImplementedError("rho_row is only callable from Numba-compiled code")


@overload(rho_row, jit_options={"cache": True})
def _rho_row_impl(g, u, theta, a, inv_width, out, scratch):
    if isinstance(out, types.Array) and out.dtype == types.float32:
        def fast(g, u, theta, a, inv_width, out, scratch):
            n = out.shape[0]
            log2e = np.float32(_LOG2E)
            hi = np.float32(_LN2_HI)
            lo = np.float32(_LN2_LO)
            half = np.float32(0.5)
            lim = np.float32(-87.0)
            for t in range(n):
                x = max(-abs(u[t] - theta) * inv_width, lim)
                k = np.floor(x * log2e + half)
                r = (x - k * hi) - k * lo
                p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
                    np.float32(1.0 / 6.0) + r * (np.float32(1.0 / 24.0) + r * (
                        np.float32(1.0 / 120.0) + r * np.float32(1.0 / 720.0))))))
                out[t] = p
                scratch[t] = (np.int32(k) + np.int32(127)) << np.int32(23)
            pow2 = scratch.view(np.float32)
            for t in range(n):
                out[t] = g[t] * a * out[t] * pow2[t]
        return fast

    def exact(g, u, theta, a, inv_width, out, scratch):
        for t in range(out.shape[0]):
            out[t] = surrogate_element_cpu(g[t], u[t], theta, a, inv_width)
    return exact
