r"""The index arithmetic of a convolution's products, written once for every kernel that needs it.

A conv layer's output ``(oy, ox)`` reads the input through the kernel tap ``(ky, kx)`` at

.. math::

    i_y = s_y\,o_y + k_y - p_y, \qquad i_x = s_x\,o_x + k_x - p_x

(stride ``s``, zero padding ``p``; positions outside the input read as zero).  The forward (im2col)
direction asks which input a tap reads (:func:`tap_input`); the adjoint (col2im, the input gradient)
asks which output an input feeds through a tap (:func:`tap_output`: none when the stride skips it).
:func:`im2col_source` and :func:`col2im_source` apply them to the flat ``(N, C, H, W, T)`` arrays of the
GPU products (``g`` a ``ProductGeometry`` record).

Plain functions marked ``register_jitable``: callable from Python, from ``numba.njit`` code and from
CUDA kernels alike (Numba compiles them for the target of the caller), so the implicit GEMM's operand
maps (:mod:`pysrm.ops._gemm_cuda`) and the im2col / col2im kernels (:mod:`pysrm.ops._cublas_cuda`)
share one definition.
"""
from __future__ import annotations

from numba.extending import register_jitable


@register_jitable
def unravel3(q, n1, n2):
    """``(a, b, c)`` with ``q = (a * n1 + b) * n2 + c``, ``0 <= b < n1``, ``0 <= c < n2`` (``q >= 0``)."""
    a = q // (n1 * n2)
    rem = q - a * (n1 * n2)
    b = rem // n2
    return a, b, rem - b * n2


@register_jitable
def tap_input(o, k, s, p, n_in):
    """The input position ``s * o + k - p`` that output ``o`` reads through tap ``k``, or -1 outside
    ``0 .. n_in - 1`` (padding)."""
    i = o * s + k - p
    if i < 0 or i >= n_in:
        return -1
    return i


@register_jitable
def tap_output(i, k, s, p, n_out):
    """The output position ``o`` with ``s * o + k - p == i`` (input ``i`` feeds it through tap ``k``), or -1
    when there is none in ``0 .. n_out - 1`` (the stride skips ``i``, or it lies in the padding)."""
    n = i + p - k
    if n < 0:
        return -1
    o = n // s
    if o * s != n or o >= n_out:
        return -1
    return o


@register_jitable
def im2col_source(b, q, p, g):
    """Flat index into ``x (N, Ci, H, W, T)`` of the im2col entry ``col[b, q = (ci, ky, kx), p = (oy, ox, t)]``,
    or -1 where it is padding (zero)."""
    ci, ky, kx = unravel3(q, g.KH, g.KW)
    oy, ox, t = unravel3(p, g.Wo, g.T)
    iy = tap_input(oy, ky, g.sy, g.py, g.H)
    ix = tap_input(ox, kx, g.sx, g.px, g.W)
    if iy < 0 or ix < 0:
        return -1
    return (((b * g.Ci + ci) * g.H + iy) * g.W + ix) * g.T + t


@register_jitable
def col2im_source(b, k, c, g):
    """Flat index into ``gy (N, Co, Ho, Wo, T)`` of the term ``k = (co, ky, kx)`` of the input gradient at
    ``c = (iy, ix, t)``, or -1 where no output reads that input through that tap."""
    co, ky, kx = unravel3(k, g.KH, g.KW)
    iy, ix, t = unravel3(c, g.W, g.T)
    oy = tap_output(iy, ky, g.sy, g.py, g.Ho)
    ox = tap_output(ix, kx, g.sx, g.px, g.Wo)
    if oy < 0 or ox < 0:
        return -1
    return (((b * g.Co + co) * g.Ho + oy) * g.Wo + ox) * g.T + t
