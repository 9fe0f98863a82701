import numpy as np
import pytest

import reference as ref
from pysrm import NeuronParams, SimParams
from pysrm.functional import psp, psp_backward, srm_kernel
from pysrm.gradcheck import check_psp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_psp_matches_reference(dtype):
    rng = np.random.default_rng(1)
    eps = srm_kernel(NeuronParams(tau_sr=3.0), SimParams(0.5, 30.0))
    x = np.where(rng.random((2, 3, 2, 2, 60)) < 0.2, rng.normal(size=(2, 3, 2, 2, 60)), 0).astype(dtype)
    out = psp(x, eps, 0.5)
    assert out.dtype == dtype and out.shape == x.shape
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, ref.psp(x.astype(np.float64), eps, 0.5), rtol=tol, atol=tol)
    g = rng.normal(size=x.shape).astype(dtype)
    np.testing.assert_allclose(psp_backward(g, eps, 0.5), ref.psp_backward(g.astype(np.float64), eps, 0.5),
                               rtol=tol, atol=tol)


def test_psp_finite_differences():
    for r in check_psp(np.random.default_rng(0)):
        assert r.passed, r


def test_psp_is_causal_and_starts_at_lag_zero():
    eps = srm_kernel(NeuronParams(tau_sr=2.0), SimParams(1.0, 20.0))
    x = np.zeros((1, 40))
    x[0, 5] = 1.0
    out = psp(x, eps, 1.0)
    assert np.all(out[0, :5] == 0)
    np.testing.assert_allclose(out[0, 5:5 + len(eps)], eps)


def test_psp_rejects_bad_input():
    eps = np.array([0.0, 1.0])
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        psp([1.0, 2.0], eps, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        psp(np.array([[np.nan, 0.0]]), eps, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        psp(np.zeros((2, 3), dtype=np.int64), eps, 1.0)


@pytest.mark.parametrize("tau", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recursive_alpha_form_equals_truncated_kernel(tau, dtype):
    """The O(T) recursion gives the truncated-kernel definition to float rounding (forward and backward)."""
    from pysrm.ops import psp as P
    eps = srm_kernel(NeuronParams(tau_sr=tau), SimParams(1.0, 200.0))
    assert P.alpha_parameters(eps) is not None
    rng = np.random.default_rng(0)
    x = np.where(rng.random((5, 200)) < 0.3, rng.normal(size=(5, 200)), 0).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for fast, direct in ((P._psp_alpha_cpu, P._psp_cpu), (P._psp_alpha_backward_cpu, P._psp_backward_cpu)):
        a, K = P.alpha_parameters(eps)
        out = np.empty_like(x)
        fast(x, a, K * 0.5, len(eps), out)
        ref_out = np.zeros_like(x)
        direct(x, (eps * 0.5).astype(dtype), ref_out)
        assert np.abs(out - ref_out).max() <= tol * np.abs(ref_out).max()


def test_non_alpha_kernels_take_the_direct_path():
    from pysrm.ops import psp as P
    assert P.alpha_parameters(np.array([0.0, 1.0, 0.5, 0.1, 0.3, 0.2, 0.1])) is None
    k = np.array([0.5, 1.0, 0.25])
    x = np.zeros((1, 6))
    x[0, 1] = 2.0
    np.testing.assert_allclose(psp(x, k, 1.0)[0], [0, 1.0, 2.0, 0.5, 0, 0])
