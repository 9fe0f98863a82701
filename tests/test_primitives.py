"""The primitives of pysrm/ops/_primitives.py (the per-row / per-element math shared by the fast CPU
strategies, the fused blocks and the CUDA kernels) against the plain ops.

CPU forms (``*_cpu``, njit inline) are driven by small njit loops here and compared with the ops' plain
strategies: bitwise where the op promises bitwise results.  The CUDA forms (pysrm/ops/_primitives_cuda.py)
run under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported) on tiny
shapes and are compared with the CPU forms.
"""
import numpy as np
import pytest
from numba import njit

from cuda_helpers import needs_device

from pysrm import NeuronParams, SimParams
from pysrm import functional as F
from pysrm.ops import _primitives as P
from pysrm.ops.delay import delay, delay_backward
from pysrm.ops.pool import pool, pool_backward
from pysrm.ops.psp import psp, psp_backward
from pysrm.ops.spike import firing_threshold, spike

DTYPES = [np.float32, np.float64]


def _responses(long=True, dtype=np.float64):
    if long:
        neuron = NeuronParams(theta=1.5, tau_sr=2.0, tau_ref=1.5, tau_rho=0.5)
    else:
        neuron = NeuronParams(theta=1.5, tau_sr=0.6, tau_ref=0.5, tau_rho=0.5)
    sim = SimParams(1.0, 40.0)
    return (neuron, np.asarray(F.srm_kernel(neuron, sim, 0.01), dtype=dtype),
            np.asarray(F.refractory_kernel(neuron, sim, 0.01), dtype=dtype))


def _drive(rng, shape, dtype, density=0.5):
    return (rng.random(shape) * 3.0 * (rng.random(shape) < density)).astype(dtype)


# --------------------------------------------------------------------------- CPU drivers

@njit(cache=False)
def _scan_rows(u, nu, theta, amp):
    s = np.zeros_like(u)
    for r in range(u.shape[0]):
        P.spike_scan_row_cpu(u[r], s[r], nu, theta, amp)
    return s


@njit(cache=False)
def _scan_rows_masked(u, nu, theta, amp, lim):
    s = np.zeros_like(u)
    for r in range(u.shape[0]):
        mask = 0
        for t in range(u.shape[1]):
            v, spk, mask = P.spike_step_masked_cpu(u[r, t], mask, nu, theta, lim)
            u[r, t] = v
            if spk:
                s[r, t] = amp
    return s


@njit(cache=False)
def _causal(x, k, zero):
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for t in range(x.shape[1]):
            out[r, t] = P.causal_sum_cpu(x[r], k, t, 0, zero)
    return out


@njit(cache=False)
def _correlation(g, k):
    out = np.empty(g.shape)
    for r in range(g.shape[0]):
        for t in range(g.shape[1]):
            out[r, t] = P.correlation_sum_cpu(g[r], k, t, g.shape[1])
    return out


@njit(cache=False)
def _alpha(x, a, gain, L):
    out = np.empty(x.shape)
    aL = a ** L
    for r in range(x.shape[0]):
        ha = np.zeros(L)
        hf = np.zeros(L)
        A = 0.0
        F_ = 0.0
        j = 0
        for t in range(x.shape[1]):
            A, F_ = P.alpha_step_cpu(A, F_, x[r, t], a)
            out[r, t] = P.alpha_output_cpu(F_, ha[j], hf[j], aL, L, gain)
            ha[j] = A
            hf[j] = F_
            j = (j + 1) % L
    return out


def _rows_spikes(u, nu, theta, ts):
    s, up = spike(u, nu, theta, ts)
    return s, up


# --------------------------------------------------------------------------- spike scan

@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_scan_row_is_the_spike_op(dtype):
    rng = np.random.default_rng(0)
    _, _, nu = _responses(dtype=dtype)
    u = _drive(rng, (9, 37), dtype)
    theta, ts = 1.5, 1.0
    u[0, 0] = dtype(theta)  # an exact tie spikes
    s_ref, u_ref = spike(u, nu, theta, ts)
    uu = u.copy()
    s = _scan_rows(uu, nu, firing_threshold(theta, dtype), dtype(1.0 / ts))
    assert s[0, 0] != 0
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(uu, u_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_step_masked_is_the_spike_op(dtype):
    rng = np.random.default_rng(1)
    _, _, nu = _responses(dtype=dtype)
    assert len(nu) <= 64
    u = _drive(rng, (9, 37), dtype)
    theta, ts = 1.5, 1.0
    s_ref, u_ref = spike(u, nu, theta, ts)
    uu = u.copy()
    lim = np.int64((1 << (len(nu) - 1)) - 1)
    s = _scan_rows_masked(uu, nu, firing_threshold(theta, dtype), dtype(1.0 / ts), lim)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(uu, u_ref)


def test_highest_bit():
    hb = njit(cache=False)(lambda m: P.highest_bit_cpu(m))
    for b in range(63):
        assert hb(np.int64(1) << b) == b
        assert hb((np.int64(1) << b) | 1) == b


# --------------------------------------------------------------------------- psp and its adjoint

@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_sum_is_the_plain_psp(dtype):
    rng = np.random.default_rng(2)
    _, k, _ = _responses(long=False, dtype=dtype)
    x = _drive(rng, (5, 23), dtype)
    ts = 1.0
    ref = psp(x, k, ts, strategy="plain")
    out = _causal(x, (k * dtype(ts)).astype(dtype), dtype(0))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlation_sum_is_the_psp_adjoint(dtype):
    rng = np.random.default_rng(3)
    _, k, _ = _responses(dtype=dtype)
    g = rng.standard_normal((5, 23)).astype(dtype)
    ref = psp_backward(g, k, 1.0, strategy="plain")
    out = _correlation(g, k)
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_step_is_the_recursive_psp(dtype):
    rng = np.random.default_rng(4)
    _, k, _ = _responses()
    from pysrm.ops.psp import alpha_parameters
    a, K = alpha_parameters(k)
    x = _drive(rng, (6, 41), dtype)
    ref = psp(x, k, 1.0, strategy="recursive")
    out = _alpha(x, a, K * 1.0, len(k)).astype(dtype)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out, psp(x, k, 1.0, strategy="plain"), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- CUDA forms (simulator)

@pytest.fixture(scope="module")
def cu():
    from numba import cuda

    from pysrm.ops import _primitives_cuda as D
    return cuda, D


def _run1(cuda, kern, *args):
    kern[1, 1](*args)


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_spike_and_psp_primitives_equal_the_cpu_forms(cu, dtype):
    cuda, D = cu

    @cuda.jit
    def scan(u, s, nu, theta, amp, lim, u2, s2):
        for r in range(u.shape[0]):
            D.spike_scan_row(u[r], s[r], nu, theta, amp)
            mask = 0
            for t in range(u2.shape[1]):
                v, spk, mask = D.spike_step_masked(u2[r, t], mask, nu, theta, lim)
                u2[r, t] = v
                if spk:
                    s2[r, t] = amp

    @cuda.jit
    def sums(x, k, zero, out, g, out2):
        for r in range(x.shape[0]):
            for t in range(x.shape[1]):
                out[r, t] = D.causal_sum(x[r], k, t, 0, zero)
                out2[r, t] = D.correlation_sum(g[r], k, t, g.shape[1])

    rng = np.random.default_rng(5)
    _, k, nu = _responses(long=False, dtype=dtype)
    u = _drive(rng, (3, 13), dtype)
    theta, amp = firing_threshold(1.5, dtype), dtype(1.0)
    lim = np.int64((1 << (len(nu) - 1)) - 1)
    u1, s1, u2, s2 = u.copy(), np.zeros_like(u), u.copy(), np.zeros_like(u)
    _run1(cuda, scan, u1, s1, nu, theta, amp, lim, u2, s2)
    uc = u.copy()
    sc = _scan_rows(uc, nu, theta, amp)
    for a, b in ((u1, uc), (s1, sc), (u2, uc), (s2, sc)):
        np.testing.assert_array_equal(a, b)
    g = rng.standard_normal(u.shape).astype(dtype)
    out, out2 = np.empty_like(u), np.empty(u.shape)
    _run1(cuda, sums, u, k, dtype(0), out, g, out2)
    np.testing.assert_array_equal(out, _causal(u, k, dtype(0)))
    np.testing.assert_array_equal(out2, _correlation(g, k))
