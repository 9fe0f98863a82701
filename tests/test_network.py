import numpy as np
import pytest

import reference as ref
from pysrm import NeuronParams, SimParams, SpikeEvents
from pysrm.layers import Delay, Dropout
from pysrm.network import Network, parse_net
from pysrm.optim import SGD, Adam, NAdam, make_optimizer


def test_parse_paper_networks():
    assert parse_net("34x34x2-16c5-2a-32c3-2a-64c3-512-10")[0] == (2, 34, 34)
    shape, layers = parse_net("128x128x2-4a-16c5-2a-32c3-2a-512-11")
    assert shape == (2, 128, 128) and layers[0] == ("pool", {"kernel": 4})
    assert parse_net("64-256-256-11") == ((64, 1, 1), [("dense", {"out_features": 256}),
                                                        ("dense", {"out_features": 256}),
                                                        ("dense", {"out_features": 11})])
    assert parse_net("8x8x1-4c3s2p0-2")[1][0] == ("conv", dict(out_channels=4, kernel=3, stride=2, padding=0))


@pytest.mark.parametrize("spec,match", [
    ("34x34-10", "malformed input shape"), ("34x34x2-16q5-10", "unknown layer token '16q5'"),
    ("34x34x2--10", "malformed"), ("10", "malformed"), ("8x8x2-10-2a", "ends with a pooling"),
    ("8x8x2-0-10", ">= 1 neurons"),
])
def test_parse_errors_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_net(spec)


def test_network_shapes_and_layer_spikes():
    sim = SimParams(1.0, 20.0)
    net = Network.from_string("34x34x2-16c5-2a-32c3-2a-64c3-512-10", NeuronParams(), sim, delays=True)
    assert net.output_shape == (10, 1, 1)
    names = [n for n, _ in net.layer_spikes]
    assert names[-1] == "output" and len(names) == 7
    assert sum(isinstance(l, Delay) for l in net.layers) == 4  # conv1..3 and dense1, not the output
    net128 = Network.from_string("128x128x2-4a-16c5-2a-32c3-2a-512-11", sim=sim)
    assert net128.layers[2].in_shape == (2, 32, 32)
    with pytest.raises(ValueError, match="expected \\(N, 2, 34, 34, T\\)"):
        net.forward(np.zeros((1, 2, 32, 32, 20), np.float32))
    small = Network.from_string("8x8x2-4c3-2a-3", NeuronParams(), sim)
    assert small.forward(np.zeros((1, 2, 8, 8, 45), np.float32)).shape == (1, 3, 1, 1, 45)  # longer than t_sample


def _two_layer(dtype=np.float64, seed=0):
    neuron = NeuronParams(theta=4.0, tau_sr=2.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 40.0)
    net = Network.from_string("6-8-3", neuron, sim, seed=seed, dtype=dtype, dense_weight_scale=30.0)
    rng = np.random.default_rng(seed + 1)
    x = (rng.random((3, 6, 1, 1, 40)) < 0.15).astype(dtype)
    return net, x, neuron, sim


def test_two_layer_weight_gradients_match_plain_loop_reference():
    net, x, neuron, sim = _two_layer()
    out = net.forward(SpikeEvents.from_dense(x), train=True)
    assert out.sum() > 0 and net.layer_spikes[0][1].sum() > 0
    R = np.random.default_rng(7).normal(size=out.shape)
    net.zero_grad()
    net.backward(R)
    w1, w2 = (p.data for p in net.parameters())
    eps = net.layers[1].srm
    nu = net.layers[1].ref
    rho = lambda u: ref.rho(u, neuron.theta, neuron.tau_rho, neuron.scale_rho)
    # plain-loop forward
    u1 = ref.psp(ref.dense(w1, x), eps, sim.ts)
    s1, u1p = ref.spike(u1, nu, neuron.theta, sim.ts)
    u2 = ref.psp(ref.dense(w2, s1), eps, sim.ts)
    s2, u2p = ref.spike(u2, nu, neuron.theta, sim.ts)
    np.testing.assert_array_equal(out, s2)
    # plain-loop backward
    ga2 = ref.psp_backward(R * rho(u2p), eps, sim.ts)
    gw2 = ref.dense_weight_grad(ga2, s1)
    gs1 = np.einsum("oi,not->nit", w2, ga2.reshape(3, 3, 40)).reshape(s1.shape)
    ga1 = ref.psp_backward(gs1 * rho(u1p), eps, sim.ts)
    gw1 = ref.dense_weight_grad(ga1, x)
    g1, g2 = (p.grad for p in net.parameters())
    assert np.abs(g1 - gw1).max() <= 1e-4 * np.abs(gw1).max()
    assert np.abs(g2 - gw2).max() <= 1e-4 * np.abs(gw2).max()


def test_float32_network_agrees_with_float64():
    net64, x, _, _ = _two_layer(np.float64)
    net32, _, _, _ = _two_layer(np.float32)
    o64 = net64.forward(x)
    o32 = net32.forward(x.astype(np.float32))
    assert (o64 != o32).mean() < 0.01  # spike trains equal up to rare threshold ties


def test_determinism_for_a_fixed_seed():
    a, x, _, _ = _two_layer(seed=3)
    b, _, _, _ = _two_layer(seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    c, _, _, _ = _two_layer(seed=4)
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)


def test_state_dict_roundtrip_and_mismatch():
    net, x, _, _ = _two_layer()
    state = net.state_dict()
    other, _, _, _ = _two_layer(seed=9)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.forward(x), net.forward(x))
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({})


def test_dropout_and_delay_layers_in_network():
    sim = SimParams(1.0, 30.0)
    net = Network.from_string("5-6-6-2", NeuronParams(theta=2), sim, delays=True, dropout=0.5, seed=1,
                              dtype=np.float64, dense_weight_scale=30)
    assert sum(isinstance(l, Dropout) for l in net.layers) == 2
    x = (np.random.default_rng(0).random((2, 5, 1, 1, 30)) < 0.3).astype(np.float64)
    out = net.forward(x, train=True)
    net.backward(np.ones_like(out))
    delays = [l for l in net.layers if isinstance(l, Delay)]
    assert all(np.isfinite(l.delay.grad).all() for l in delays)
    opt = SGD(net.parameters(), lr=100.0)
    for l in delays:
        l.delay.grad[...] = 1.0  # push every delay below zero ...
    opt.step()
    assert all((l.delay.data >= 0).all() for l in delays)  # ... and the clamp keeps them >= 0


@pytest.mark.parametrize("name", ["sgd", "adam", "nadam"])
def test_optimizers_minimise_a_quadratic_and_roundtrip_state(name):
    from pysrm.layers import Parameter
    p = Parameter(np.array([3.0, -2.0]), "p")
    opt = make_optimizer(name, [p], lr=0.1)
    for _ in range(300):
        p.grad[...] = 2 * p.data
        opt.step()
    assert np.abs(p.data).max() < 0.05
    state = opt.state_dict()
    q = Parameter(p.data.copy(), "p")
    opt2 = make_optimizer(name, [q], lr=0.1)
    opt2.load_state_dict(state)
    for o, par in ((opt, p), (opt2, q)):
        par.grad[...] = 1.0
        o.step()
    np.testing.assert_allclose(p.data, q.data)
    with pytest.raises(ValueError, match="valid choices: sgd, adam, nadam"):
        make_optimizer("rmsprop", [p], lr=0.1)


def test_optimizer_refuses_nan_gradients():
    from pysrm.layers import Parameter
    p = Parameter(np.zeros(2), "w")
    p.grad[0] = np.nan
    with pytest.raises(FloatingPointError, match="w"):
        Adam([p], lr=0.1).step()


def test_nadam_first_step_matches_pytorch_formula():
    from pysrm.layers import Parameter
    p = Parameter(np.array([1.0]), "p")
    opt = NAdam([p], lr=0.1)
    p.grad[...] = 0.5
    opt.step()
    mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004)
    mu2 = 0.9 * (1 - 0.5 * 0.96 ** 0.008)
    m, v = 0.1 * 0.5, 0.001 * 0.25
    upd = mu2 * m / (1 - mu1 * mu2) + (1 - mu1) * 0.5 / (1 - mu1)
    assert p.data[0] == pytest.approx(1.0 - 0.1 * upd / (np.sqrt(v / 0.001) + 1e-8))


def test_non_finite_network_input_and_gradient_are_rejected():
    net, x, _, _ = _two_layer()
    bad = x.copy()
    bad[0, 0, 0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="network input contains non-finite"):
        net.forward(bad)
    out = net.forward(x, train=True)
    g = np.ones_like(out)
    g[0, 0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="gradient of the network output contains non-finite"):
        net.backward(g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", [("sgd", dict(momentum=0.9, weight_decay=0.01)), ("sgd", {}),
                                         ("adam", dict(weight_decay=0.001)), ("adam", {}), ("nadam", {}),
                                         ("nadam", dict(weight_decay=0.01))])
def test_fused_optimizer_kernels_match_numpy_formulas(name, kwargs, dtype):
    """The fused CPU kernels (pysrm/ops/optim.py) do the NumPy expressions' operations in the same order and
    dtype: equal to the reference (tests/reference.py) up to at most one rounding per step."""
    from pysrm.layers import Parameter
    from reference import optimizer_step
    rng = np.random.default_rng(3)
    data = rng.normal(size=(37, 1001)).astype(dtype)  # several parallel chunks, a ragged last one
    lower = 0.0 if name != "sgd" else None
    p = Parameter(data.copy(), "w", lower=lower)
    ref = data.copy()
    state = [np.zeros_like(data), np.zeros_like(data)]
    opt = make_optimizer(name, [p], lr=0.05, **kwargs)
    for k in range(1, 5):
        g = rng.normal(size=data.shape).astype(dtype)
        p.grad[...] = g
        opt.step()
        extra = {}
        if name == "nadam":
            extra = dict(mu=opt._mu, mu_next=opt._mu_next, mu_product=opt.mu_product)
        optimizer_step(name, ref, g, state, 0.05, k, weight_decay=kwargs.get("weight_decay", 0.0), lower=lower,
                       momentum=kwargs.get("momentum", 0.0), **extra)
        np.testing.assert_allclose(p.data, ref, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps,
                                   err_msg=f"{name} step {k}")
    if lower is not None:
        assert p.data.min() >= 0.0


def test_optimizer_checks_every_gradient_before_updating_any():
    from pysrm.layers import Parameter
    p, q = Parameter(np.zeros(3, np.float32), "a"), Parameter(np.zeros(3, np.float32), "b")
    p.grad[...] = 1.0
    q.grad[1] = np.inf
    with pytest.raises(FloatingPointError, match="gradient of b"):
        Adam([p, q], lr=0.1).step()
    assert not p.data.any()  # the finite parameter was not updated either


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_first_layer_gives_the_same_training_step_as_separate_layers(dtype):
    """Network.forward/backward run fused blocks on the CPU (Network(fuse=True)): outputs and hidden
    spikes are bitwise those of the layers run one by one; the gradients equal theirs to float rounding
    (the Delay -> Dense backward sums the dense input gradient in another order than BLAS)."""
    from pysrm.losses import make_loss
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 50.0)
    rng = np.random.default_rng(2)
    x = SpikeEvents.from_dense((rng.random((4, 2, 5, 5, 50)) < 0.05).astype(dtype))
    y = np.array([0, 1, 2, 1])
    results = []
    for fuse in (True, False):
        net = Network.from_string("5x5x2-16-16-3", neuron, sim, seed=4, dtype=dtype, delays=True,
                                  dense_weight_scale=40.0, fuse=fuse)
        out = net.forward(x, train=True)
        _, g = make_loss("spikemax", ts=1.0, window=10.0).value_and_grad(out, y)
        net.zero_grad()
        net.backward(g)
        results.append([out] + [s for _, s in net.layer_spikes] + [p.grad.copy() for p in net.parameters()])
    fused, separate = results
    assert fused[1].sum() > 0 and fused[0].sum() > 0
    n_out = 1 + len(net.layer_spikes)
    for a, b in zip(fused[:n_out], separate[:n_out]):
        np.testing.assert_array_equal(a, b)
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    for a, b in zip(fused[n_out:], separate[n_out:]):
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_inference_block_reuses_transposed_weights_and_keeps_parameters_fixed():
    """Network.inference(): the same outputs bitwise as plain forward calls; the transposed weights of the
    event paths are made once per block (a second forward transposes nothing); parameters are read-only
    inside and writeable again after, and a weight changed between blocks is seen by the next block."""
    from pysrm.ops import dense as dense_ops
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 40.0)
    rng = np.random.default_rng(5)
    x = SpikeEvents.from_dense((rng.random((3, 2, 5, 5, 40)) < 0.05).astype(np.float32))
    net = Network.from_string("5x5x2-64-16-3", neuron, sim, seed=1, delays=True, dense_weight_scale=40.0)
    plain = net.forward(x)
    calls = []
    real = dense_ops._transpose_cpu
    try:
        dense_ops._transpose_cpu = lambda src, dst: (calls.append(src.shape), real(src, dst))
        with net.inference():
            first = net.forward(x)
            n_first = len(calls)
            second = net.forward(x)
            with pytest.raises(ValueError, match="read-only"):
                net.parameters()[0].data[0, 0] = 1.0
    finally:
        dense_ops._transpose_cpu = real
    assert n_first >= 2 and len(calls) == n_first  # the fused first layer and a dense layer, once each
    assert plain.sum() > 0
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(second, plain)
    w = net.parameters()[0]
    assert w.data.flags.writeable and not net.workspace.is_frozen
    w.data *= 2.0
    with net.inference():
        changed = net.forward(x)
    np.testing.assert_array_equal(changed, net.forward(x))
    assert not np.array_equal(changed, plain)
