import numpy as np
import pytest

import reference as ref
from pysrm import SpikeEvents
from pysrm.functional import conv, conv_backward
from pysrm.gradcheck import check_conv, relative_error


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_every_strategy_matches_the_plain_loops_and_reference(stride, pad, dtype):
    rng = np.random.default_rng(4)
    x = np.where(rng.random((2, 3, 7, 6, 5)) < 0.04, 1.0, 0.0).astype(dtype)
    w = rng.normal(size=(4, 3, 3, 3)).astype(dtype)
    expected = ref.conv(w.astype(np.float64), x.astype(np.float64), stride, pad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    g = rng.normal(size=expected.shape).astype(dtype)
    plain = conv(w, x, stride, pad, strategy="plain")
    gx_p, gw_p = conv_backward(w, x, g, stride, pad, strategy="plain")
    np.testing.assert_allclose(plain, expected, **tol)
    ev = SpikeEvents.from_dense(x)
    cases = [("event", ev), ("event", x), ("auto", ev), ("auto", x), ("plain", ev)]
    if stride == 1:
        cases += [("blas", x), ("blas", ev)]
    else:
        with pytest.raises(ValueError, match="'blas' needs stride 1"):
            conv(w, x, stride, pad, strategy="blas")
    for strategy, inp in cases:
        np.testing.assert_allclose(conv(w, inp, stride, pad, strategy=strategy), plain, **tol, err_msg=strategy)
        gx, gw = conv_backward(w, inp, g, stride, pad, strategy=strategy)
        np.testing.assert_allclose(gw, gw_p, **tol, err_msg=strategy)
        np.testing.assert_allclose(gx, gx_p, **tol, err_msg=strategy)
    # adjoint identity <conv(x), g> = <x, grad_x>
    assert abs(np.sum(expected * g) - np.sum(x * gx_p)) < 1e-3 * (1 + abs(np.sum(expected * g)))


def test_conv_finite_differences():
    rng = np.random.default_rng(0)
    for strategy in ("plain", "event", "blas"):
        for stride, pad in ((1, 1), (2, 0)):
            if strategy == "blas" and stride > 1:
                continue
            for r in check_conv(rng, strategy, stride, pad):
                assert r.passed, r


def test_conv_errors():
    w = np.zeros((2, 3, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="input channels"):
        conv(w, np.zeros((1, 2, 5, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        conv(w, np.zeros((1, 3, 2, 2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="stride"):
        conv(w, np.zeros((1, 3, 5, 5, 3), dtype=np.float32), stride=1.5)
    assert relative_error(np.ones(3), np.ones(3)) == 0.0


@pytest.mark.parametrize("kernel,pad,hw", [((3, 3), (1, 1), (7, 6)), ((5, 5), (2, 2), (9, 8)), ((3, 2), (0, 1), (6, 7)),
                                           ((3, 3), (0, 0), (5, 5)), ((2, 3), (3, 1), (6, 6))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [None, 12])
def test_stride_one_conv_as_blas_products_matches_the_direct_loops(kernel, pad, hw, dtype, rows):
    """Dense stride-1 inputs take BLAS products (the flat-offset forms of pysrm.ops.conv): forward, weight
    gradient and input gradient (the flipped-kernel conv; the direct loop where the padding exceeds
    kernel - 1, last case) equal the direct loops to float rounding (the sums run in another order).
    rows=12: products over two output columns at a time (several chunks per row, the last one short)."""
    from pysrm.ops import conv as C
    from pysrm import settings
    with settings.override(**({} if rows is None else {"gemm_rows": rows})):
        _blas_against_direct(C, kernel, pad, hw, dtype)


def _blas_against_direct(C, kernel, pad, hw, dtype):
    rng = np.random.default_rng(7)
    N, Ci, Co, T = 3, 4, 20, 6
    x = rng.normal(size=(N, Ci) + hw + (T,)).astype(dtype)
    w = rng.normal(size=(Co, Ci) + kernel).astype(dtype)
    ho, wo = C.conv_output_size(hw[0], hw[1], kernel, 1, pad)
    out = conv(w, x, 1, pad, strategy="blas")
    g = rng.normal(size=out.shape).astype(dtype)
    gx, gw = conv_backward(w, x, g, 1, pad, strategy="blas")
    ref_out = np.zeros((N, Co, ho, wo, T), dtype=dtype)
    C._conv_dense_cpu(x, w, ref_out, 1, 1, *pad)
    ref_gw = np.zeros_like(w)
    C._conv_weight_grad_dense_cpu(g, x, ref_gw, 1, 1, *pad)
    ref_gx = np.zeros_like(x)
    C._conv_input_grad_cpu(g, w, ref_gx, 1, 1, *pad)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, want in ((out, ref_out), (gw, ref_gw), (gx, ref_gx)):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * np.abs(want).max())
