import numpy as np
import pytest

import reference as ref
from pysrm import SpikeEvents
from pysrm.functional import conv, conv_backward
from pysrm.gradcheck import check_conv, relative_error
from pysrm.ops.dense import dense_path_only


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_paths_match_reference(stride, pad, dtype):
    rng = np.random.default_rng(4)
    x = np.where(rng.random((2, 3, 7, 6, 5)) < 0.04, 1.0, 0.0).astype(dtype)
    w = rng.normal(size=(4, 3, 3, 3)).astype(dtype)
    expected = ref.conv(w.astype(np.float64), x.astype(np.float64), stride, pad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    ev = SpikeEvents.from_dense(x)
    np.testing.assert_allclose(conv(w, ev, stride, pad), expected, **tol)
    with dense_path_only():
        np.testing.assert_allclose(conv(w, x, stride, pad), expected, **tol)
    g = rng.normal(size=expected.shape).astype(dtype)
    gx_e, gw_e = conv_backward(w, ev, g, stride, pad)
    with dense_path_only():
        gx_d, gw_d = conv_backward(w, x, g, stride, pad)
    np.testing.assert_allclose(gw_e, gw_d, **tol)
    np.testing.assert_allclose(gx_e, gx_d, **tol)
    # adjoint identity <conv(x), g> = <x, grad_x>
    assert abs(np.sum(expected * g) - np.sum(x * gx_d)) < 1e-3 * (1 + abs(np.sum(expected * g)))


def test_conv_finite_differences():
    rng = np.random.default_rng(0)
    for events in (False, True):
        for stride, pad in ((1, 1), (2, 0)):
            for r in check_conv(rng, events, stride, pad):
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
def test_stride_one_conv_as_blas_products_matches_the_direct_loops(kernel, pad, hw, dtype, rows, monkeypatch):
    """Dense stride-1 inputs take BLAS products (the flat-offset forms of pysrm.ops.conv): forward, weight
    gradient and input gradient (the flipped-kernel conv; the direct loop where the padding exceeds
    kernel - 1, last case) equal the direct loops to float rounding (the sums run in another order).
    rows=12: products over two output columns at a time (several chunks per row, the last one short)."""
    from pysrm.ops import conv as C
    if rows is not None:
        monkeypatch.setattr(C, "GEMM_ROWS", rows)
    rng = np.random.default_rng(7)
    N, Ci, Co, T = 3, 4, 20, 6
    x = rng.normal(size=(N, Ci) + hw + (T,)).astype(dtype)
    w = rng.normal(size=(Co, Ci) + kernel).astype(dtype)
    ho, wo = C.conv_output_size(hw[0], hw[1], kernel, 1, pad)
    with dense_path_only():
        out = conv(w, x, 1, pad)
        g = rng.normal(size=out.shape).astype(dtype)
        gx, gw = conv_backward(w, x, g, 1, pad)
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
