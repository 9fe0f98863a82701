import numpy as np
import pytest

import reference as ref
from pysrm import NeuronParams, SimParams
from pysrm.functional import refractory_kernel, spike, spike_backward, surrogate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spike_matches_reference(dtype):
    rng = np.random.default_rng(2)
    n = NeuronParams(theta=5, tau_ref=2)
    nu = refractory_kernel(n, SimParams(0.5, 40))
    u = (rng.normal(size=(3, 4, 80)) * 6).astype(dtype)
    s, up = spike(u, nu, n.theta, 0.5)
    s_ref, up_ref = ref.spike(u, nu.astype(dtype).astype(np.float64), n.theta, 0.5)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_allclose(up, up_ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
    assert set(np.unique(s)) <= {0.0, 2.0}
    assert np.all(u == u)  # input untouched (no NaN) ...
    assert not np.shares_memory(u, up)


def test_surrogate_matches_formula():
    n = NeuronParams(theta=10, tau_rho=0.5, scale_rho=2.0)
    u = np.linspace(-20, 40, 61).reshape(1, 61)
    expected = ref.rho(u, 10, 0.5, 2.0)
    np.testing.assert_allclose(surrogate(u, n), expected, rtol=1e-12)
    g = np.random.default_rng(0).normal(size=u.shape)
    np.testing.assert_allclose(spike_backward(g, u, n), g * expected, rtol=1e-12)
    # the peak is scale_rho / (tau_rho * theta) at u == theta
    assert surrogate(np.array([[10.0]]), n)[0, 0] == pytest.approx(2.0 / 5.0)


def test_spike_backward_shape_mismatch():
    with pytest.raises(ValueError, match="must match"):
        spike_backward(np.zeros((2, 3)), np.zeros((2, 4)), NeuronParams())


@pytest.mark.parametrize("tau", [1.0, 5.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_srm_backward_equals_the_composition(tau, dtype):
    from pysrm.functional import psp_backward, srm_backward, srm_kernel
    n = NeuronParams(theta=5, tau_sr=tau, tau_rho=0.7, scale_rho=1.3)
    sim = SimParams(1.0, 60)
    eps = srm_kernel(n, sim)
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3, 7, 60)).astype(dtype)
    u = (rng.normal(size=(3, 7, 60)) * 6).astype(dtype)
    fused = srm_backward(g, u, n, eps, sim.ts)
    composed = psp_backward(spike_backward(g, u, n), eps, sim.ts)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert fused.dtype == dtype
    assert np.abs(fused - composed).max() <= tol * np.abs(composed).max()


def test_float32_surrogate_uses_an_exponential_within_a_few_ulp():
    # pysrm.ops._fastexp: vectorised float32 exp (2^k * degree-6 polynomial) against np.exp, through the
    # surrogate kernel that uses it: a = scale / width = 2, 1 / width = 0.1
    from pysrm.ops.spike import _spike_backward_cpu
    x = np.linspace(-90.0, 0.0, 400_001)
    u = (10.0 - 10.0 * x).astype(np.float32)          # -|u - 10| / 10 = x
    g = np.linspace(-3, 3, x.size).astype(np.float32)
    out = np.empty_like(u)
    _spike_backward_cpu(g[None], u[None], np.float32(10), np.float32(20), np.float32(10), out[None])
    arg = np.maximum(-np.abs(u - np.float32(10)) * np.float32(0.1), np.float32(-87.0))
    ref = g.astype(np.float64) * 2.0 * np.exp(arg.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=5e-7, atol=0)
    out64 = np.empty(x.size)
    _spike_backward_cpu(g[None].astype(np.float64), u[None].astype(np.float64), 10.0, 20.0, 10.0, out64[None])
    ref64 = g * 2.0 * np.exp(-np.abs(u.astype(np.float64) - 10.0) * 0.1)
    np.testing.assert_allclose(out64, ref64, rtol=1e-15, atol=0)   # float64: np.exp itself


def _event_input(rng, N, I, T, per_sample, dtype):
    from pysrm.events import SpikeEvents
    dense = np.zeros((N, I, 1, 1, T), dtype)
    for n in range(N):
        k = rng.integers(0, I * T, size=per_sample if n != 1 else 0)  # sample 1 has no events
        dense[n].reshape(-1)[np.unique(k)] = rng.choice([1.0, 0.5, 2.0], size=np.unique(k).size)
    return SpikeEvents.from_dense(dense), dense


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tau_sr,T", [(1.0, 40), (4.0, 40), (4.0, 9), (10.0, 120)])
def test_fused_dense_srm_forward_is_bitwise_the_composition(tau_sr, T, dtype):
    """dense -> psp -> spike in one pass per sample (pysrm.blocks.dense_srm.dense_srm_forward) gives exactly the
    spikes and potentials of the three ops run one after the other, including T shorter than the
    response and a sample without events."""
    from pysrm.functional import dense, dense_srm_forward, srm_forward, srm_kernel
    from pysrm import settings
    from pysrm.ops.psp import alpha_parameters
    rng = np.random.default_rng(5)
    neuron = NeuronParams(theta=1.0, tau_sr=tau_sr, tau_ref=1.5)
    sim = SimParams(1.0, float(T))
    eps, nu = srm_kernel(neuron, sim), refractory_kernel(neuron, sim)
    assert len(eps) >= settings.current().recursive_min_length and alpha_parameters(eps) is not None  # the fused path runs
    x, x_dense = _event_input(rng, 4, 30, T, 60, dtype)
    w = rng.normal(0.0, 1.0, size=(13, 30)).astype(dtype)
    s, u = dense_srm_forward(w, x, eps, nu, neuron.theta, sim.ts)
    s_ref, u_ref = srm_forward(dense(w, x), eps, nu, neuron.theta, sim.ts)  # the event path of dense
    assert s.dtype == u.dtype == dtype and s.shape == (4, 13, 1, 1, T)
    assert 0 < s.sum() < s.size  # some spikes, not all
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(u, u_ref)
    assert not s[1].any()
    _, u_tm = dense_srm_forward(w, x, eps, nu, neuron.theta, sim.ts, time_major_potential=True)
    np.testing.assert_array_equal(u_tm, u.reshape(4, 13, T).transpose(0, 2, 1))
    s_inf, u_inf = dense_srm_forward(w, x, eps, nu, neuron.theta, sim.ts, need_potential=False)  # inference
    assert u_inf is None
    np.testing.assert_array_equal(s_inf, s)
    from pysrm.events import SpikeEvents
    _, _, ev = dense_srm_forward(w, x, eps, nu, neuron.theta, sim.ts, need_events=True)  # spikes as events
    ref_ev = SpikeEvents.from_dense(s)
    for name in ("offsets", "neuron", "time", "value"):
        np.testing.assert_array_equal(getattr(ev, name), getattr(ref_ev, name), err_msg=name)


def test_fused_dense_srm_forward_falls_back_for_dense_inputs_and_short_responses():
    from pysrm.functional import dense, dense_srm_forward, srm_forward, srm_kernel
    rng = np.random.default_rng(6)
    neuron = NeuronParams(theta=1.0, tau_sr=0.3, tau_ref=0.3)  # response shorter than the recursion's minimum
    sim = SimParams(1.0, 20.0)
    eps, nu = srm_kernel(neuron, sim), refractory_kernel(neuron, sim)
    x, x_dense = _event_input(rng, 2, 8, 20, 30, np.float32)
    w = rng.normal(0.0, 2.0, size=(5, 8)).astype(np.float32)
    s_ref, u_ref = srm_forward(dense(w, x_dense), eps, nu, neuron.theta, sim.ts)
    for inp in (x, x_dense):
        s, u = dense_srm_forward(w, inp, eps, nu, neuron.theta, sim.ts)
        np.testing.assert_array_equal(s, s_ref)
        np.testing.assert_allclose(u, u_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tau_sr,T", [(1.0, 40), (4.0, 70), (4.0, 9)])  # direct and recursive correlation
def test_fused_first_layer_weight_gradient_is_bitwise_the_composition(tau_sr, T, dtype):
    """srm_dense_backward_weights = dense_backward(w, x, srm_backward(grad_s, u))[1], bitwise, for the
    direct (short response) and the recursive correlation, with more samples than partial sums."""
    from pysrm.functional import dense_backward, srm_backward, srm_dense_backward_weights, srm_kernel
    from pysrm import settings
    rng = np.random.default_rng(8)
    neuron = NeuronParams(theta=1.0, tau_sr=tau_sr, tau_ref=1.5, tau_rho=0.5)
    sim = SimParams(1.0, float(T))
    eps = srm_kernel(neuron, sim)
    x, _ = _event_input(rng, 9, 30, T, 50, dtype)
    w = rng.normal(0.0, 1.0, size=(70, 30)).astype(dtype)  # 70 outputs: two blocks of 64 rows
    g = rng.normal(size=(9, 70, 1, 1, T)).astype(dtype)
    u = (rng.normal(size=(9, 70, 1, 1, T)) * 2).astype(dtype)
    gw = srm_dense_backward_weights(g, u, neuron, eps, sim.ts, w, x)
    _, gw_ref = dense_backward(w, x, srm_backward(g, u, neuron, eps, sim.ts), need_input_grad=False)
    assert gw.dtype == dtype and np.abs(gw).max() > 0
    np.testing.assert_array_equal(gw, gw_ref)
    u_tm = np.ascontiguousarray(u.reshape(9, 70, T).transpose(0, 2, 1))  # the potential kept time-major
    np.testing.assert_array_equal(srm_dense_backward_weights(g, u_tm, neuron, eps, sim.ts, w, x, u_time_major=True),
                                  gw_ref)
    if T > 20:  # both correlation forms are covered (T = 9 truncates the response)
        assert (len(eps) >= settings.current().recursive_min_length_backward) == (tau_sr > 2)


@pytest.mark.parametrize("tau_sr,delays", [(1.0, "mixed"), (4.0, "mixed"), (1.0, "runs")])
def test_first_layer_backward_through_a_delay_is_bitwise_the_two_fused_steps(tau_sr, delays):
    """srm_dense_backward_through_delay = delay_backward_from_dense (delay input as events) followed by
    srm_dense_backward_weights, bitwise: the delay's input gradient is made inside the first layer's pass,
    time-major (per neuron where the integer shifts differ ("mixed"), across runs of neurons with the same
    integer shift ("runs", as in training from zero delays), and delays beyond the end)."""
    from pysrm.events import SpikeEvents
    from pysrm.functional import (delay_backward_from_dense, srm_dense_backward_through_delay,
                                  srm_dense_backward_weights, srm_kernel)
    rng = np.random.default_rng(13)
    T, N, I, O, O2 = 60, 6, 20, 37, 5
    neuron = NeuronParams(theta=1.0, tau_sr=tau_sr, tau_ref=1.5, tau_rho=0.5)
    sim = SimParams(1.0, float(T))
    eps = srm_kernel(neuron, sim)
    x, _ = _event_input(rng, N, I, T, 40, np.float32)
    w = rng.normal(size=(O, I)).astype(np.float32)
    spikes = SpikeEvents.from_dense((rng.random((N, O, 1, 1, T)) < 0.1).astype(np.float32))
    if delays == "mixed":
        d = rng.uniform(0.0, 5.0, size=(O, 1, 1)).astype(np.float32)
    else:  # runs of equal integer shifts, one whole bin, and delays of T - 1 bins and more
        d = rng.uniform(0.0, 0.9, size=(O, 1, 1)).astype(np.float32)
        d[10:20] += 2.0
        d[20] = 3.0
        d[30:33, 0, 0] = [T - 1.0, T + 0.5, 2.0 * T]
    w2 = rng.normal(size=(O2, O)).astype(np.float32)
    gy = rng.normal(size=(N, O2, 1, 1, T)).astype(np.float32)
    u_tm = (rng.normal(size=(N, T, O)) * 2).astype(np.float32)
    gw, gd = srm_dense_backward_through_delay(gy, w2, spikes, d, sim.ts, u_tm, neuron, eps, w, x, u_time_major=True)
    gx_ref, gd_ref = delay_backward_from_dense(w2, gy, spikes, d, sim.ts)
    gw_ref = srm_dense_backward_weights(gx_ref, u_tm, neuron, eps, sim.ts, w, x, u_time_major=True)
    assert np.abs(gw).max() > 0 and np.abs(gd).max() > 0
    np.testing.assert_array_equal(gw, gw_ref)
    np.testing.assert_array_equal(gd, gd_ref)


@pytest.mark.parametrize("n_out", [8, 64, 70])
def test_fused_spike_scan_visits_every_spiking_neuron_of_a_bin(n_out):
    """The fused forward tests a whole time bin at once and visits the set flags of 64-bit words of eight
    neurons: with many neurons spiking in the same bins (whole words set, a short last word), its
    spikes, potentials and listed events equal the separate ops'."""
    from pysrm.events import SpikeEvents
    from pysrm.functional import dense, dense_srm_forward, srm_forward, srm_kernel
    rng = np.random.default_rng(11)
    T = 30
    neuron = NeuronParams(theta=1.0, tau_sr=4.0, tau_ref=1.0)
    sim = SimParams(1.0, float(T))
    eps, nu = srm_kernel(neuron, sim), refractory_kernel(neuron, sim)
    x, _ = _event_input(rng, 3, 10, T, 40, np.float32)
    w = np.abs(rng.normal(2.0, 1.0, size=(n_out, 10))).astype(np.float32)  # most neurons fire together
    s, u, ev = dense_srm_forward(w, x, eps, nu, neuron.theta, sim.ts, need_events=True)
    s_ref, u_ref = srm_forward(dense(w, x), eps, nu, neuron.theta, sim.ts)
    per_bin = (s_ref[0, :, 0, 0] > 0).sum(axis=0)
    assert per_bin.max() >= min(n_out, 8)  # whole words of flags set in some bins
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(u, u_ref)
    ref_ev = SpikeEvents.from_dense(s_ref)
    for name in ("offsets", "neuron", "time", "value"):
        np.testing.assert_array_equal(getattr(ev, name), getattr(ref_ev, name), err_msg=name)


# --------------------------------------------------------------------------- exact ties at the threshold

def _tie_spikes(theta, tau_sr, ts, t0, dtype, weights, strategy, fuse=None):
    """Spike times (bins) of one SRM neuron fed one input spike (amplitude 1/ts) at bin t0 through each
    of ``weights`` (summed), computed with the given psp strategy, or through a network."""
    from pysrm.functional import psp, srm_kernel
    neuron = NeuronParams(theta=theta, tau_sr=tau_sr, tau_ref=tau_sr)
    sim = SimParams(ts, 30.0 * ts + 4 * tau_sr)
    T = sim.n_bins
    if fuse is None:
        x = np.zeros((1, 1, 1, 1, T), dtype)
        x[..., t0] = 1.0 / ts
        u = psp(x * dtype(sum(weights)), srm_kernel(neuron, sim), ts, strategy=strategy)
        s, _ = spike(u, refractory_kernel(neuron, sim), theta, ts)
        return list(np.flatnonzero(s[0, 0, 0, 0]))
    from pysrm import SpikeEvents
    from pysrm.network import Network
    net = Network.from_string(f"{len(weights)}-48-1", neuron, sim, dtype=dtype, fuse=fuse)
    net.layers[0].weight.data[...] = 0.0
    net.layers[0].weight.data[:, :] = np.asarray(weights, dtype)[None, :]
    x = np.zeros((1, len(weights), 1, 1, T), dtype)
    x[..., t0] = 1.0 / ts
    net.forward(SpikeEvents.from_dense(x))
    return list(np.flatnonzero(net.layer_spikes[0][1][0, 0, 0, 0]))


def test_exact_tie_spikes_whatever_the_psp_strategy_and_dtype():
    """The issue's case: theta 10, tau_sr 2, tau_ref 2, Ts 1 ms, one input spike of amplitude 1/Ts at bin 3
    through weight 10 gives a potential of exactly 10 at bin 5 (10 eps(tau_sr) = 10); it must spike at
    5 ms.  The float64 recursion computes 9.999999999999998 (it did not spike before the tie rule)."""
    for dtype in (np.float32, np.float64):
        for strategy in ("plain", "recursive"):
            assert _tie_spikes(10.0, 2.0, 1.0, 3, dtype, [10.0], strategy)[:1] == [5], (dtype, strategy)
        for fuse in (True, False):
            assert _tie_spikes(10.0, 2.0, 1.0, 3, dtype, [10.0], None, fuse=fuse)[:1] == [5], (dtype, fuse)


def test_sweep_of_exact_ties_spikes_identically_in_every_path():
    """Ties by construction: the potential equals theta exactly at lag tau_sr/ts (eps = 1 there), with the
    weight theta split over one to three inputs in exactly representable parts; every psp strategy, both
    dtypes and the network with and without fused blocks must give the same first spike, at the tie."""
    lost = []
    n = 0
    for theta in (1.0, 2.5, 10.0, 100.0, 7.0):
        for tau_sr, ts in ((1.0, 1.0), (2.0, 1.0), (4.0, 1.0), (8.0, 1.0), (2.0, 0.5), (3.0, 0.25)):
            for parts in ([1.0], [0.5, 0.5], [0.25, 0.25, 0.5]):
                weights = [theta * p for p in parts]
                t0 = 2
                want = t0 + int(round(tau_sr / ts))
                for dtype in (np.float32, np.float64):
                    for strategy in ("plain", "recursive"):
                        n += 1
                        if _tie_spikes(theta, tau_sr, ts, t0, dtype, weights, strategy)[:1] != [want]:
                            lost.append((theta, tau_sr, ts, parts, dtype.__name__, strategy))
                    if parts == [1.0] or len(parts) == 3:
                        for fuse in (True, False):
                            n += 1
                            if _tie_spikes(theta, tau_sr, ts, t0, dtype, weights, None, fuse=fuse)[:1] != [want]:
                                lost.append((theta, tau_sr, ts, parts, dtype.__name__, f"network fuse={fuse}"))
    assert n > 300 and lost == []


def test_firing_threshold_is_theta_up_to_the_documented_tolerance():
    from pysrm.ops.spike import TIE_RTOL, firing_threshold
    for dtype in (np.float32, np.float64):
        f = firing_threshold(10.0, dtype)
        assert f.dtype == dtype and 10.0 * (1 - 2 * TIE_RTOL[np.dtype(dtype)]) < f < 10.0
    # a potential clearly below theta does not spike
    nu = refractory_kernel(NeuronParams(theta=10.0), SimParams(1.0, 10.0))
    u = np.full((1, 10), 10.0 * (1 - 1e-4))
    assert not spike(u, nu, 10.0, 1.0)[0].any()


# --------------------------------------------------------------------------- fused functions: work or raise

def test_fused_functions_work_where_their_fused_pass_does_not_apply():
    """The fused functions of pysrm.functional never return None: on a dense input or with a following
    dense layer too wide for the row-wise product they run the separate ops (same numbers); mismatched
    dtypes raise TypeError."""
    from pysrm.functional import (delay_backward_from_dense, dense, dense_backward, srm_backward,
                                  srm_dense_backward_through_delay, srm_dense_backward_weights, srm_forward,
                                  srm_kernel, delay_backward)
    from pysrm import SpikeEvents
    rng = np.random.default_rng(8)
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 30.0)
    eps, nu = srm_kernel(neuron, sim), refractory_kernel(neuron, sim)
    x = (rng.random((3, 10, 1, 1, 30)) < 0.2).astype(np.float64)
    w = rng.normal(0, 3, size=(6, 10))
    s, u = srm_forward(dense(w, x), eps, nu, neuron.theta, sim.ts)
    g = rng.normal(size=s.shape)
    gw_ref = dense_backward(w, x, srm_backward(g, u, neuron, eps, sim.ts), need_input_grad=False)[1]
    for inp in (x, SpikeEvents.from_dense(x)):
        gw = srm_dense_backward_weights(g, u, neuron, eps, sim.ts, w, inp)
        assert gw is not None
        np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="same dtype"):
        srm_dense_backward_weights(g.astype(np.float32), u, neuron, eps, sim.ts, w, x)
    # through a delay into a dense layer with 70 outputs (> the setting fused_dense_max_outputs): the separate ops
    w2 = rng.normal(size=(70, 6))
    d = rng.uniform(0.2, 3.0, size=(6, 1, 1))
    gy = rng.normal(size=(3, 70, 1, 1, 30))
    gw, gd = srm_dense_backward_through_delay(gy, w2, SpikeEvents.from_dense(s), d, sim.ts, u, neuron, eps, w,
                                              SpikeEvents.from_dense(x))
    gs, gd_ref = delay_backward(np.matmul(w2.T, gy.reshape(3, 70, 30)).reshape(s.shape), s, d, sim.ts)
    np.testing.assert_allclose(gd, gd_ref, rtol=1e-10, atol=1e-10)
    gw_ref2 = dense_backward(w, x, srm_backward(gs, u, neuron, eps, sim.ts), need_input_grad=False)[1]
    np.testing.assert_allclose(gw, gw_ref2, rtol=1e-10, atol=1e-10)
    assert delay_backward_from_dense(w2, gy, s, d, sim.ts) is not None
