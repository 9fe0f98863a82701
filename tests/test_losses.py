"""Tests of pysrm.losses: values against slow NumPy references, exact gradients
against central finite differences, paper gradients against the printed
formulas, silent outputs and error messages."""
import math
import zlib

import numpy as np
import pytest

from pysrm import NeuronParams, SimParams
from pysrm.losses import (DEFAULT_EPS, LOSSES, NumSpikes, SpikeMax, SpikeMaxG, SpikeMaxS, SpikeRate,
                          SpikeTime, gradcheck_cases, make_loss, window_counts)
from pysrm.responses import srm_kernel


# ----------------------------------------------------------------------------------------------
# Slow, obviously-correct references (explicit loops, float64)
# ----------------------------------------------------------------------------------------------

def ref_class_trains(s):
    """(N, C, T): sum of the neurons of each class."""
    N, C, T = s.shape[0], s.shape[1], s.shape[-1]
    out = np.zeros((N, C, T))
    flat = s.reshape(N, C, -1, T)
    for n in range(N):
        for i in range(C):
            for j in range(flat.shape[2]):
                for t in range(T):
                    out[n, i, t] += flat[n, i, j, t]
    return out


def ref_window_counts(x, wb, ts):
    """c[..., t] = ts * sum of x over bins max(0, t-wb+1)..t."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    T = x.shape[-1]
    for t in range(T):
        for tp in range(max(0, t - wb + 1), t + 1):
            out[..., t] += ts * x[..., tp]
    return out


def ref_spike_rate(s, y, ts, true_rate, false_rate):
    N, C, T = s.shape[0], s.shape[1], s.shape[-1]
    dur = T * ts
    flat = s.reshape(N, C, -1, T).astype(np.float64)
    total = 0.0
    for n in range(N):
        for i in range(C):
            tgt = true_rate if i == y[n] else false_rate
            for j in range(flat.shape[2]):
                r = ts * sum(flat[n, i, j, t] for t in range(T)) / dur
                total += (r - tgt) ** 2
    return total / N


def ref_spikemax(s, y, ts, wb, eps):
    """Sliding-window spikemax: mean over t of -log p_y[t]."""
    x = ref_class_trains(s)
    N, C, T = x.shape
    total = 0.0
    for n in range(N):
        ln = 0.0
        for t in range(T):
            c = [ts * sum(x[n, i, tp] for tp in range(max(0, t - wb + 1), t + 1)) + eps for i in range(C)]
            ln += -math.log(c[y[n]] / sum(c))
        total += ln / T
    return total / N


def ref_spikemax_g(s, y, ts, eps):
    x = ref_class_trains(s)
    N, C, T = x.shape
    total = 0.0
    for n in range(N):
        c = [ts * x[n, i].sum() + eps for i in range(C)]
        total += -math.log(c[y[n]] / sum(c))
    return total / N


def ref_spikemax_s(s, y, ts):
    x = ref_class_trains(s)
    N, C, T = x.shape
    total = 0.0
    for n in range(N):
        c = [ts * x[n, i].sum() for i in range(C)]
        z = sum(math.exp(ci) for ci in c)
        total += -math.log(math.exp(c[y[n]]) / z)
    return total / N


def ref_psp_matrix(kernel, ts, T):
    """P with psp(x)[t] = sum_t' P[t, t'] x[t'] (causal, lag 0 included)."""
    P = np.zeros((T, T))
    for t in range(T):
        for tp in range(t + 1):
            if t - tp < len(kernel):
                P[t, tp] = ts * kernel[t - tp]
    return P


def ref_spike_time(s, d, ts, kernel):
    N, T = s.shape[0], s.shape[-1]
    P = ref_psp_matrix(kernel, ts, T)
    e = (np.asarray(s, np.float64) - np.asarray(d, np.float64)).reshape(-1, T) @ P.T
    return 0.5 * ts * np.sum(e ** 2) / N


def ref_num_spikes_error(s, y, ts, kernel, a, b, true_count, false_count):
    """SLAYER's error signal e (N, C, M, T)."""
    N, C, T = s.shape[0], s.shape[1], s.shape[-1]
    flat = s.reshape(N, C, -1, T).astype(np.float64)
    P = ref_psp_matrix(kernel, ts, T)
    e = np.zeros_like(flat)
    for n in range(N):
        for i in range(C):
            for j in range(flat.shape[2]):
                x = flat[n, i, j].copy()
                x[a:b] = 0.0
                e[n, i, j] = P @ x
                count = ts * flat[n, i, j, a:b].sum()
                tgt = true_count if i == y[n] else false_count
                e[n, i, j, a:b] += (count - tgt) / (b - a)
    return e, P


def ref_num_spikes(s, y, ts, kernel, a, b, true_count, false_count):
    e, _ = ref_num_spikes_error(s, y, ts, kernel, a, b, true_count, false_count)
    return 0.5 * ts * np.sum(e ** 2) / s.shape[0]


def numgrad(f, x, h=1e-6):
    """Central finite differences of f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    xf, gf = x.reshape(-1), g.reshape(-1)
    for j in range(xf.size):
        v = xf[j]
        xf[j] = v + h
        fp = f(x)
        xf[j] = v - h
        fm = f(x)
        xf[j] = v
        gf[j] = (fp - fm) / (2 * h)
    return g


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def mixed_spikes(rng, shape, ts, dense=False):
    """Zeros, spikes of 1/ts and real values; dense=True has no zero entry."""
    u = rng.random(shape)
    real = rng.uniform(0.05, 2.0, shape) / ts
    if dense:
        return np.where(u < 0.5, 1.0 / ts, real)
    return np.where(u < 0.4, 0.0, np.where(u < 0.7, 1.0 / ts, real))


def binary_spikes(rng, shape, ts, p=0.3):
    return (rng.random(shape) < p) / ts


NEURON = NeuronParams(theta=10.0, tau_sr=2.0)


def build(name, ts, **opts):
    if name in ("num-spikes", "spike-time"):
        opts.setdefault("neuron", NEURON)
        opts.setdefault("sim", SimParams(ts=ts, t_sample=100.0 * ts))
    return make_loss(name, ts=ts, **opts)


# ----------------------------------------------------------------------------------------------
# Values against the references
# ----------------------------------------------------------------------------------------------

SHAPES = [(2, 3, 7), (3, 4, 1, 1, 10), (2, 2, 2, 3, 6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ts", [1.0, 0.5])
def test_values_match_references(shape, ts):
    rng = np.random.default_rng(1)
    s = mixed_spikes(rng, shape, ts)
    y = rng.integers(0, shape[1], shape[0])
    T = shape[-1]
    k = srm_kernel(NEURON, SimParams(ts=ts, t_sample=100.0 * ts))
    d = binary_spikes(rng, shape, ts)
    a, b = 1, T - 2
    checks = [
        (build("spike-rate", ts, true_rate=0.4, false_rate=0.05), y, ref_spike_rate(s, y, ts, 0.4, 0.05)),
        (build("spikemax", ts, window=3 * ts), y, ref_spikemax(s, y, ts, 3, DEFAULT_EPS)),
        (build("spikemax", ts, window=T * ts, eps=0.3), y, ref_spikemax(s, y, ts, T, 0.3)),
        (build("spikemax", ts, window=ts), y, ref_spikemax(s, y, ts, 1, DEFAULT_EPS)),
        (build("spikemax-g", ts), y, ref_spikemax_g(s, y, ts, DEFAULT_EPS)),
        (build("spikemax-g", ts, eps=1.0), y, ref_spikemax_g(s, y, ts, 1.0)),
        (build("spikemax-s", ts), y, ref_spikemax_s(s, y, ts)),
        (build("num-spikes", ts, t_start=a * ts, t_stop=b * ts, true_count=4.0, false_count=1.0), y,
         ref_num_spikes(s, y, ts, k, a, b, 4.0, 1.0)),
        (build("spike-time", ts), d, ref_spike_time(s, d, ts, k)),
    ]
    for loss, target, expected in checks:
        v64, g64 = loss.value_and_grad(s, target)
        assert isinstance(v64, float)
        assert v64 == pytest.approx(expected, rel=1e-12, abs=1e-12), loss
        assert loss.value(s, target) == pytest.approx(v64, rel=1e-12)
        assert g64.shape == s.shape and g64.dtype == np.float64
        s32 = s.astype(np.float32)
        t32 = target.astype(np.float32) if loss.name == "spike-time" else target
        v32, g32 = loss.value_and_grad(s32, t32)
        assert g32.dtype == np.float32 and g32.shape == s.shape
        assert v32 == pytest.approx(expected, rel=1e-5, abs=1e-6), loss
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * np.abs(g64).max())


def test_num_spikes_default_region_is_whole_simulation():
    rng = np.random.default_rng(2)
    s = binary_spikes(rng, (2, 3, 12), 1.0)
    y = np.array([0, 2])
    k = srm_kernel(NEURON, SimParams(ts=1.0, t_sample=100.0))
    loss = build("num-spikes", 1.0, true_count=5.0, false_count=1.0)
    assert loss.value(s, y) == pytest.approx(ref_num_spikes(s, y, 1.0, k, 0, 12, 5.0, 1.0), rel=1e-12)


def test_window_counts_reference_and_cumulative():
    rng = np.random.default_rng(3)
    x = mixed_spikes(rng, (2, 3, 11), 0.5)
    for wb in (1, 2, 4, 11, 20):
        np.testing.assert_allclose(window_counts(x, wb, 0.5), ref_window_counts(x, wb, 0.5), rtol=1e-12,
                                   atol=1e-12)
    np.testing.assert_allclose(window_counts(x, 11, 0.5), 0.5 * np.cumsum(x, axis=-1), rtol=1e-12)
    with pytest.raises(ValueError, match="window_bins"):
        window_counts(x, 0)


# ----------------------------------------------------------------------------------------------
# Exact gradients against finite differences (float64)
# ----------------------------------------------------------------------------------------------

FD_CASES = [
    ("spike-rate", {"true_rate": 0.5, "false_rate": 0.1}),
    ("spikemax", {"window": 1}),
    ("spikemax", {"window": 2}),
    ("spikemax", {"window": 3, "eps": 0.5}),
    ("spikemax", {"window": "T"}),
    ("spikemax-g", {}),
    ("spikemax-g", {"eps": 1.0}),
    ("spikemax-s", {}),
    ("num-spikes", {"t_start": 1, "t_stop": 4, "true_count": 3.0, "false_count": 1.0}),
    ("num-spikes", {"true_count": 2.0, "false_count": 0.0}),
    ("spike-time", {}),
]


@pytest.mark.parametrize("name,opts", FD_CASES, ids=[f"{n}-{o}" for n, o in FD_CASES])
@pytest.mark.parametrize("shape,ts,dense", [((2, 3, 6), 1.0, False), ((2, 2, 1, 2, 5), 0.5, True),
                                            ((1, 3, 1, 1, 7), 2.0, False)])
def test_exact_gradient_finite_differences(name, opts, shape, ts, dense):
    rng = np.random.default_rng(zlib.crc32(repr((name, opts, shape)).encode()))
    T = shape[-1]
    opts = dict(opts)
    for key in ("window", "t_start", "t_stop"):  # given in bins here
        if key in opts:
            opts[key] = (T if opts[key] == "T" else opts[key]) * ts
    loss = build(name, ts, grad="exact", **opts)
    s = mixed_spikes(rng, shape, ts, dense=dense)
    target = binary_spikes(rng, shape, ts) if name == "spike-time" else rng.integers(0, shape[1], shape[0])
    _, g = loss.value_and_grad(s, target)
    num = numgrad(lambda x: loss.value(x, target), s, h=1e-6 / ts)
    assert rel_err(g, num) < 1e-6


def test_gradcheck_cases():
    cases = gradcheck_cases()
    names = {n.split(" ")[0] for n, _ in cases}
    assert names == set(LOSSES)
    for name, fn in cases:
        err = fn()
        assert err < 1e-6, (name, err)


def test_exact_gradient_of_silent_label_finite_differences():
    # The label neuron is silent and everything else fires: the regime of an untrained network.
    s = np.zeros((2, 3, 6))
    s[:, 1, ::2] = 1.0
    s[:, 2, 1] = 1.0
    y = np.array([0, 0])
    for loss in (SpikeMaxG(1.0), SpikeMax(1.0, window=2.0), SpikeMaxS(1.0)):
        _, g = loss.value_and_grad(s, y)
        assert rel_err(g, numgrad(lambda x: loss.value(x, y), s, h=1e-7)) < 1e-6


# ----------------------------------------------------------------------------------------------
# Paper mode: the printed formulas
# ----------------------------------------------------------------------------------------------

def hand_spikes():
    """Two classes, T=4: class 0 spikes at t=0 and t=2, class 1 at t=1 (ts=1)."""
    s = np.zeros((1, 2, 4))
    s[0, 0, [0, 2]] = 1.0
    s[0, 1, 1] = 1.0
    return s


def test_paper_spikemax_g_hand_worked():
    # eps=1: c~ = [3, 2], p = [0.6, 0.4]; label 1; T = 4 ms.
    s = hand_spikes()
    loss = SpikeMaxG(1.0, eps=1.0, grad="paper")
    v, g = loss.value_and_grad(s, np.array([1]))
    assert v == pytest.approx(-math.log(0.4), rel=1e-14)
    # (p_i - y_i) / (c~_i / T) = [0.6 / 0.75, -0.6 / 0.5]
    np.testing.assert_allclose(g[0, 0], [0.8] * 4, rtol=1e-14)
    np.testing.assert_allclose(g[0, 1], [-1.2] * 4, rtol=1e-14)
    # exact = paper * Ts / T
    _, ge = SpikeMaxG(1.0, eps=1.0).value_and_grad(s, np.array([1]))
    np.testing.assert_allclose(ge, g / 4, rtol=1e-14)


def test_paper_spikemax_s_hand_worked():
    s = hand_spikes() * 2.0  # ts = 0.5: counts c = [2, 1]
    e = math.e
    p = np.array([e / (e + 1), 1 / (e + 1)])
    v, g = SpikeMaxS(0.5, grad="paper").value_and_grad(s, np.array([0]))
    assert v == pytest.approx(-math.log(p[0]), rel=1e-14)
    np.testing.assert_allclose(g[0, 0], [p[0] - 1] * 4, rtol=1e-14)
    np.testing.assert_allclose(g[0, 1], [p[1]] * 4, rtol=1e-14)
    _, ge = SpikeMaxS(0.5).value_and_grad(s, np.array([0]))
    np.testing.assert_allclose(ge, 0.5 * g, rtol=1e-14)  # exact = Ts * paper


def test_paper_spikemax_window_hand_worked():
    # W = 2 bins, eps = 1: window counts class 0 = [1, 1, 1, 1], class 1 = [0, 1, 1, 0]
    # c~_0 = [2, 2, 2, 2], c~_1 = [1, 2, 2, 1]; label 0 -> p_0 = [2/3, 1/2, 1/2, 2/3]
    s = hand_spikes()
    v, g = SpikeMax(1.0, window=2.0, eps=1.0, grad="paper").value_and_grad(s, np.array([0]))
    assert v == pytest.approx((2 * math.log(1.5) + 2 * math.log(2.0)) / 4, rel=1e-14)
    # (p_i[t] - y_i) / (c~_i[t] / W), W = 2 ms
    np.testing.assert_allclose(g[0, 0], [-1 / 3, -1 / 2, -1 / 2, -1 / 3], rtol=1e-14)
    np.testing.assert_allclose(g[0, 1], [2 / 3, 1 / 2, 1 / 2, 2 / 3], rtol=1e-14)
    # exact: Ts/T * sum over the windows containing u of (p - y)/c~ (local terms q = paper / W)
    q = g[0] / 2.0
    expected = np.stack([[q[i, 0] + q[i, 1], q[i, 1] + q[i, 2], q[i, 2] + q[i, 3], q[i, 3]] for i in range(2)]) / 4
    _, ge = SpikeMax(1.0, window=2.0, eps=1.0).value_and_grad(s, np.array([0]))
    np.testing.assert_allclose(ge[0], expected, rtol=1e-14)


def ref_paper_window(s, y, ts, wb, eps):
    """Printed eq. 11 on random input, by loops."""
    x = ref_class_trains(s)
    N, C, T = x.shape
    c = ref_window_counts(x, wb, ts) + eps
    g = np.zeros_like(x)
    for n in range(N):
        for t in range(T):
            tot = c[n, :, t].sum()
            for i in range(C):
                g[n, i, t] = (c[n, i, t] / tot - (i == y[n])) / (c[n, i, t] / (wb * ts)) / N
    return g


def test_paper_modes_match_printed_formulas_random():
    rng = np.random.default_rng(4)
    ts = 0.5
    s = mixed_spikes(rng, (3, 4, 1, 1, 9), ts)
    y = rng.integers(0, 4, 3)
    N, T = 3, 9
    g = SpikeMax(ts, window=3 * ts, grad="paper").value_and_grad(s, y)[1]
    np.testing.assert_allclose(g.reshape(3, 4, 9), ref_paper_window(s, y, ts, 3, DEFAULT_EPS), rtol=1e-12)
    # eq. 12
    c = ts * s.reshape(3, 4, 9).sum(-1) + DEFAULT_EPS
    p = c / c.sum(1, keepdims=True)
    onehot = np.eye(4)[y]
    g = SpikeMaxG(ts, grad="paper").value_and_grad(s, y)[1]
    np.testing.assert_allclose(g.reshape(3, 4, 9), np.repeat(((p - onehot) / (c / (T * ts)) / N)[..., None], 9, -1),
                               rtol=1e-12)
    # eq. 14
    c = ts * s.reshape(3, 4, 9).sum(-1)
    p = np.exp(c) / np.exp(c).sum(1, keepdims=True)
    g = SpikeMaxS(ts, grad="paper").value_and_grad(s, y)[1]
    np.testing.assert_allclose(g.reshape(3, 4, 9), np.repeat(((p - onehot) / N)[..., None], 9, -1), rtol=1e-12)
    # spike-rate and spike-time: paper == exact
    for name in ("spike-rate", "spike-time"):
        tgt = binary_spikes(rng, s.shape, ts) if name == "spike-time" else y
        ge = build(name, ts).value_and_grad(s, tgt)[1]
        gp = build(name, ts, grad="paper").value_and_grad(s, tgt)[1]
        np.testing.assert_array_equal(ge, gp)


def test_paper_num_spikes_is_slayer_gradient():
    # SLAYER: count error and masked desired train detached -> grad = psp^T (Ts * e) / N everywhere.
    rng = np.random.default_rng(5)
    ts = 1.0
    s = binary_spikes(rng, (2, 3, 1, 1, 10), ts, p=0.4)
    y = np.array([2, 0])
    k = srm_kernel(NEURON, SimParams(ts=ts, t_sample=100.0))
    loss = build("num-spikes", ts, t_start=2.0, t_stop=8.0, true_count=4.0, false_count=1.0, grad="paper")
    e, P = ref_num_spikes_error(s, y, ts, k, 2, 8, 4.0, 1.0)
    expected = (ts * e / 2) @ P  # P^T applied along time
    np.testing.assert_allclose(loss.value_and_grad(s, y)[1], expected.reshape(s.shape), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# Silent outputs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,opts", [("spike-rate", {}), ("spikemax", {"window": 3.0}), ("spikemax-g", {}),
                                       ("spikemax-s", {}), ("num-spikes", {}), ("spike-time", {})])
@pytest.mark.parametrize("grad", ["exact", "paper"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silent_outputs_are_finite_and_label_is_pushed_to_fire(name, opts, grad, dtype):
    s = np.zeros((2, 3, 1, 1, 8), dtype=dtype)
    y = np.array([1, 2])
    loss = build(name, 1.0, grad=grad, **opts)
    target = np.zeros_like(s) if name == "spike-time" else y
    v, g = loss.value_and_grad(s, target)
    assert math.isfinite(v)
    assert np.isfinite(g).all() and g.dtype == dtype
    if name == "spike-time":
        assert v == 0.0 and not g.any()
        return
    for n in range(2):
        if name == "num-spikes" and grad == "paper":
            # SLAYER's form goes through the PSP adjoint, whose lag-0 response is 0: the last bin gets 0.
            assert (g[n, y[n]] <= 0).all() and (g[n, y[n], ..., :-1] < 0).all()
        else:
            assert (g[n, y[n]] < 0).all(), "descent must increase the silent label neuron"


def test_silent_label_while_others_fire():
    s = np.zeros((1, 3, 10))
    s[0, 1, :] = 1.0
    s[0, 2, ::3] = 1.0
    for loss in (SpikeMaxG(1.0), SpikeMax(1.0, window=4.0), SpikeMaxS(1.0), SpikeRate(1.0)):
        for grad in ("exact", "paper"):
            loss.grad_mode = grad
            v, g = loss.value_and_grad(s, np.array([0]))
            assert math.isfinite(v) and np.isfinite(g).all()
            assert (g[0, 0] < 0).all()
    # spikemax-g value: -log(eps / (10 + 4 + 3 eps))
    assert SpikeMaxG(1.0).value(s, np.array([0])) == pytest.approx(-math.log(0.01 / 14.03), rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Errors and API
# ----------------------------------------------------------------------------------------------

def test_make_loss_names_and_classes():
    expected = {"spike-rate": SpikeRate, "spikemax": SpikeMax, "spikemax-g": SpikeMaxG, "spikemax-s": SpikeMaxS,
                "num-spikes": NumSpikes, "spike-time": SpikeTime}
    assert set(LOSSES) == set(expected)
    for name, cls in expected.items():
        opts = {"window": 2.0} if name == "spikemax" else {}
        loss = make_loss(name, ts=1.0, **opts)
        assert type(loss) is cls and loss.name == name and loss.grad_mode == "exact"
        assert cls.__doc__ and ".. math::" in cls.__doc__
        assert name in repr(loss) or cls.__name__ in repr(loss)
    assert type(make_loss("SpikeMax_G")) is SpikeMaxG


def test_make_loss_errors():
    with pytest.raises(ValueError, match="unknown loss 'softmax'.*spike-rate.*spikemax-g.*spike-time"):
        make_loss("softmax")
    with pytest.raises(TypeError, match="unknown option 'windw'.*window"):
        make_loss("spikemax", window=2.0, windw=3.0)
    with pytest.raises(TypeError, match="unknown option 'eps'"):
        make_loss("spikemax-s", eps=0.1)
    with pytest.raises(ValueError, match="grad must be one of 'exact', 'paper'; got 'autograd'"):
        make_loss("spikemax-g", grad="autograd")
    with pytest.raises(ValueError, match="window .* is required"):
        make_loss("spikemax")
    with pytest.raises(ValueError, match=r"window=2.5 ms is not a whole number of bins of ts=1.0 ms"):
        make_loss("spikemax", window=2.5)
    with pytest.raises(ValueError, match="eps must be > 0"):
        make_loss("spikemax-g", eps=0.0)
    with pytest.raises(ValueError, match="ts must be > 0"):
        make_loss("spikemax-g", ts=-1.0)
    with pytest.raises(ValueError, match="t_stop=2.0 ms must be greater than t_start=3.0 ms"):
        make_loss("num-spikes", t_start=3.0, t_stop=2.0)
    with pytest.raises(ValueError, match="sim.ts=0.5 ms differs from the loss ts=1.0 ms"):
        make_loss("spike-time", sim=SimParams(ts=0.5, t_sample=10.0))
    with pytest.raises(TypeError, match="neuron must be a pysrm.NeuronParams"):
        make_loss("spike-time", neuron={"theta": 10})


def test_call_errors():
    s = np.zeros((2, 3, 6))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2 \(classes=3\), found label 3"):
        SpikeMaxG().value_and_grad(s, np.array([0, 3]))
    with pytest.raises(ValueError, match="found label -1"):
        SpikeRate().value(s, np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        SpikeMaxS().value(s, np.array([0]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        SpikeMaxS().value(s, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"window=7.0 ms \(7 bins\) is longer than the simulation \(6 bins"):
        SpikeMax(window=7.0).value(s, np.array([0, 1]))
    SpikeMax(window=6.0).value(s, np.array([0, 1]))  # window == simulation is fine
    with pytest.raises(ValueError, match="t_stop=8.0 ms .* beyond the simulation"):
        NumSpikes(t_stop=8.0).value(s, np.array([0, 1]))
    with pytest.raises(ValueError, match="empty target region"):
        NumSpikes(t_start=6.0).value(s, np.array([0, 1]))
    with pytest.raises(ValueError, match="desired has shape"):
        SpikeTime().value_and_grad(s, np.zeros((2, 3, 5)))
    with pytest.raises(TypeError, match="spikes must have dtype float32 or float64"):
        SpikeMaxG().value(s.astype(np.int32), np.array([0, 1]))
    with pytest.raises(TypeError, match="spikes must be a numpy.ndarray"):
        SpikeMaxG().value(s.tolist(), np.array([0, 1]))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        SpikeMaxG().value(np.zeros((2, 6)), np.array([0, 1]))
    bad = s.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        SpikeMaxG().value(bad, np.array([0, 1]))
    neg = s.copy()
    neg[0, 1, 0] = -1.0
    with pytest.raises(ValueError, match="count \\+ eps <= 0"):
        SpikeMaxG().value(neg, np.array([0, 1]))
    with pytest.raises(ValueError, match="count \\+ eps <= 0"):
        SpikeMax(window=2.0).value(neg, np.array([0, 1]))


def test_batch_mean():
    rng = np.random.default_rng(6)
    s = binary_spikes(rng, (4, 3, 8), 1.0)
    y = np.array([0, 1, 2, 1])
    for loss in (SpikeRate(), SpikeMax(window=3.0), SpikeMaxG(), SpikeMaxS(), build("num-spikes", 1.0)):
        v, g = loss.value_and_grad(s, y)
        parts = [loss.value_and_grad(s[n:n + 1], y[n:n + 1]) for n in range(4)]
        assert v == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-12)
        np.testing.assert_allclose(g, np.concatenate([p[1] for p in parts]) / 4, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# The per-sample functions (the definitions the CPU and CUDA kernels compile) run as plain Python
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grad", ["exact", "paper"])
def test_per_sample_functions_are_the_cpu_losses(grad):
    """Each count loss, computed by calling its plain-Python per-sample function sample by sample, equals
    the compiled CPU loss (the CUDA kernels compile the same functions: tests/test_cuda_losses.py)."""
    from pysrm import losses as L
    rng = np.random.default_rng(7)
    N, C, T, ts = 3, 4, 12, 0.5
    s = np.where(rng.random((N, C, 1, 1, T)) < 0.3, 1.0 / ts, 0.0)
    s[0, 1] = 0.0
    y = np.array([1, 3, 0])
    c = s.reshape(N, C, T).sum(axis=-1) * ts

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)

    # spike-rate (per neuron: M = 1)
    loss = SpikeRate(ts, true_rate=0.5, false_rate=0.1, grad=grad)
    dc = np.empty((N, C, 1))
    vals = [L.spike_rate_sample(c[n][:, None], y[n], 0.5, 0.1, T * ts, dc[n]) for n in range(N)]
    v, g = loss.value_and_grad(s, y)
    close(v, np.mean(vals))
    close(g, np.broadcast_to((dc * ts / N)[:, :, :, None, None], s.shape))
    # spikemax-g and spikemax-s
    for loss, fn, scale in ((SpikeMaxG(ts, grad=grad), lambda cn, yn, d: L.spikemax_g_sample(cn, yn, DEFAULT_EPS, d)[0],
                             ts if grad == "exact" else T * ts),
                            (SpikeMaxS(ts, grad=grad), L.spikemax_s_sample, ts if grad == "exact" else 1.0)):
        dc = np.empty((N, C))
        vals = [fn(c[n], y[n], dc[n]) for n in range(N)]
        v, g = loss.value_and_grad(s, y)
        close(v, np.mean(vals))
        close(g, np.broadcast_to((dc * scale / N)[:, :, None, None, None], s.shape))
    # sliding-window spikemax: window counts, the bins' terms, then each class's gradient row
    loss = SpikeMax(ts, window=2.0, grad=grad)
    wb = loss.window_bins
    cw = np.empty((N, C, T))
    for n in range(N):
        for k in range(C):
            L.window_count_row(s[n, k, :, 0, :], wb, ts, cw[n, k])
    close(cw, window_counts(s, wb, ts).reshape(N, C, T))
    gw = np.empty((N, C, T))
    vals = []
    for n in range(N):
        vals.append(np.mean([L.spikemax_bin(cw[n], y[n], t, DEFAULT_EPS, gw[n])[0] for t in range(T)]))
        for k in range(C):
            L.spikemax_grad_row(gw[n, k], wb, ts, grad == "paper", wb * ts)
    v, g = loss.value_and_grad(s, y)
    close(v, np.mean(vals))
    close(g, (gw / N)[:, :, None, None, :])
