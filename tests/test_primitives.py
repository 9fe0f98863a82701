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


@njit(cache=False)
def _spike_times(u, nu, theta, times, count):
    # the schedule of the fused conv block's row scan: the spike bins of each row listed
    T = u.shape[1]
    for r in range(u.shape[0]):
        t = P.next_spike_cpu(u[r], 0, nu, theta)
        while t < T:
            times[r, count[r]] = t
            count[r] += 1
            t = P.next_spike_cpu(u[r], t + 1, nu, theta)


def test_next_spike_lists_the_spike_op_times():
    rng = np.random.default_rng(9)
    _, _, nu = _responses(dtype=np.float32)
    u = _drive(rng, (6, 31), np.float32)
    s_ref, u_ref = spike(u, nu, 1.5, 1.0)
    times, count = np.zeros((6, 31), np.int64), np.zeros(6, np.int64)
    uu = u.copy()
    _spike_times(uu, nu, firing_threshold(1.5, np.float32), times, count)
    np.testing.assert_array_equal(uu, u_ref)
    for r in range(6):
        np.testing.assert_array_equal(times[r, :count[r]], np.flatnonzero(s_ref[r]))


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


# --------------------------------------------------------------------------- delay, pool, event indices

@njit(cache=False)
def _delay_rows(x, shift):
    # y[t] = (1-f) x[t-m] + f x[t-m-1] from the primitives, f rounded to the dtype as the op does
    out = np.empty_like(x)
    zero = x.dtype.type(0.0)
    for r in range(x.shape[0]):
        m, fq = P.delay_split_cpu(shift[r])
        f = x.dtype.type(fq)
        g = x.dtype.type(1.0) - f
        for t in range(x.shape[1]):
            x0 = x[r, t - m] if 0 <= t - m else zero
            x1 = x[r, t - m - 1] if 0 <= t - m - 1 else zero
            out[r, t] = P.interpolate_cpu(x0, x1, g, f)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_delay_split_and_interpolate_are_the_delay(dtype):
    rng = np.random.default_rng(6)
    x = _drive(rng, (2, 3, 2, 2, 19), dtype)
    d = (rng.random((3, 2, 2)) * 4.0).astype(dtype)
    d[0, 0, 0] = 2.0  # an integer shift
    ref = delay(x, d, 0.5)
    shift = np.tile((np.asarray(d, np.float64) / 0.5).astype(dtype).reshape(-1), 2)
    out = _delay_rows(x.reshape(-1, 19), shift).reshape(x.shape)
    np.testing.assert_array_equal(out, ref)


@njit(cache=False)
def _pool_flat(x, shape, k, wp, Ho, Wo):
    N, C, H, W, T = shape
    out = np.empty((N, C, Ho, Wo, T), dtype=x.dtype)
    gx = np.empty(N * C * H * W * T, dtype=x.dtype)
    for idx in range(N * C * Ho * Wo * T):
        n, c, oy, ox, t = P.unravel5_cpu(idx, C, Ho, Wo, T)
        out[n, c, oy, ox, t] = P.pool_window_sum_cpu(x, (n * C + c) * H * W * T + t, W, T, oy, ox, k, H, wp,
                                                     x.dtype.type(0.0))
    g = out.ravel()
    for idx in range(N * C * H * W * T):
        n, c, iy, ix, t = P.unravel5_cpu(idx, C, H, W, T)
        gx[idx] = P.pooled_grad_cpu(g, (n * C + c) * Ho * Wo * T + t, Wo, T, iy, ix, k, wp)
    return out, gx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw,k", [((5, 4), 2), ((6, 6), 3)])
def test_pool_primitives_are_the_pool(dtype, hw, k):
    rng = np.random.default_rng(7)
    x = _drive(rng, (2, 3) + hw + (5,), dtype)
    ref = pool(x, k, 1.3, strategy="plain")
    out, gx = _pool_flat(x.ravel(), x.shape, k, dtype(1.3), ref.shape[2], ref.shape[3])
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(gx.reshape(x.shape), pool_backward(ref, x.shape, k, 1.3))


def test_event_indices():
    dec = njit(cache=False)(lambda i, H, W: P.decode_neuron_cpu(i, H, W))
    oi = njit(cache=False)(lambda i, p, k, s, n: P.output_index_cpu(i, p, k, s, n))
    H, W = 5, 7
    for idx in range(3 * H * W):
        assert dec(idx, H, W) == (idx // (H * W), (idx % (H * W)) // W, idx % W)
    for i in range(9):
        for pad in range(3):
            for kk in range(3):
                for s in (1, 2, 3):
                    hits = [o for o in range(4) if s * o + kk - pad == i]
                    assert oi(i, pad, kk, s, 4) == (hits[0] if hits else -1)


def test_event_taps_are_the_taps_of_the_conv_definition():
    """event_taps lists, in ky-then-kx order, exactly the (ky, kx, oy, ox) of the conv's definition
    (out[oy, ox] += w[ky, kx] x[sy oy + ky - py, sx ox + kx - px]) that an input at (iy, ix) reaches."""
    taps_of = njit(cache=False)(lambda iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, taps:
                                P.event_taps_cpu(iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, taps))
    for (KH, KW), (py, px), (sy, sx), (H, W) in [((3, 3), (1, 1), (1, 1), (6, 5)), ((5, 3), (2, 0), (2, 1), (9, 7)),
                                                  ((2, 2), (0, 1), (2, 2), (6, 6)), ((1, 1), (0, 0), (1, 1), (3, 3))]:
        Ho, Wo = (H + 2 * py - KH) // sy + 1, (W + 2 * px - KW) // sx + 1
        taps = np.full((KH * KW, 4), -7, dtype=np.int64)
        for iy in range(H):
            for ix in range(W):
                want = [(ky, kx, oy, ox) for ky in range(KH) for kx in range(KW) for oy in range(Ho) for ox in range(Wo)
                        if sy * oy + ky - py == iy and sx * ox + kx - px == ix]
                n = taps_of(iy, ix, KH, KW, py, px, sy, sx, Ho, Wo, taps)
                assert [tuple(t) for t in taps[:n]] == want


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


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_delay_pool_index_primitives_equal_the_cpu_forms(cu, dtype):
    cuda, D = cu

    @cuda.jit
    def pooled(x, shape, k, wp, out, g, gx, zero):
        N, C, H, W, T = shape
        Ho, Wo = out.shape[2], out.shape[3]
        for idx in range(N * C * Ho * Wo * T):
            n, c, oy, ox, t = D.unravel5(idx, C, Ho, Wo, T)
            out[n, c, oy, ox, t] = D.pool_window_sum(x, (n * C + c) * H * W * T + t, W, T, oy, ox, k, H, wp, zero)
        for idx in range(N * C * H * W * T):
            n, c, iy, ix, t = D.unravel5(idx, C, H, W, T)
            gx[idx] = D.pooled_grad(g, (n * C + c) * Ho * Wo * T + t, Wo, T, iy, ix, k, wp)

    @cuda.jit
    def misc(q, ms, fs, vals, H, W, dec, oidx):
        for i in range(q.shape[0]):
            m, f = D.delay_split(q[i])
            ms[i] = m
            fs[i] = f
            vals[i] = D.interpolate(q[i], 1.5, 1.0 - f, f)
        for i in range(dec.shape[0]):
            c, y, x = D.decode_neuron(i, H, W)
            dec[i, 0] = c
            dec[i, 1] = y
            dec[i, 2] = x
            oidx[i] = D.output_index(i % 9, 1, i % 3, 2, 4)

    rng = np.random.default_rng(8)
    x = _drive(rng, (2, 2, 5, 4, 3), dtype)
    k, wp = 2, dtype(1.3)
    out = np.empty((2, 2, 3, 2, 3), dtype)
    ref, gref = _pool_flat(x.ravel(), x.shape, k, wp, 3, 2)
    gx = np.empty(x.size, dtype)
    _run1(cuda, pooled, x.ravel(), x.shape, k, wp, out, ref.ravel(), gx, dtype(0))
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(gx, gref)
    q = rng.random(6) * 5.0
    ms, fs, vals = np.empty(6, np.int64), np.empty(6), np.empty(6)
    dec, oidx = np.empty((30, 3), np.int64), np.empty(30, np.int64)
    _run1(cuda, misc, q, ms, fs, vals, 2, 5, dec, oidx)
    split = njit(cache=False)(lambda v: P.delay_split_cpu(v))
    dec_c = njit(cache=False)(lambda i, H, W: P.decode_neuron_cpu(i, H, W))
    oi_c = njit(cache=False)(lambda i, p, kk, s, n: P.output_index_cpu(i, p, kk, s, n))
    for i in range(6):
        m, f = split(q[i])
        assert (ms[i], fs[i]) == (m, f)
        assert vals[i] == P.interpolate(q[i], 1.5, 1.0 - f, f)
    for i in range(30):
        assert tuple(dec[i]) == dec_c(i, 2, 5)
        assert oidx[i] == oi_c(i % 9, 1, i % 3, 2, 4)
