"""The execution plan (pysrm.plan): structure, every fused block against the unfused plan, and the
plain-strategy network against the fast one."""
import inspect

import numpy as np
import pytest

from pysrm import NeuronParams, SimParams, SpikeEvents
from pysrm import plan as P
from pysrm.layers import SRM, Pool
from pysrm.losses import make_loss
from pysrm.network import Network

NEURON = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
SIM = SimParams(1.0, 40.0)


def _step_names(net):
    return [type(s).__name__ for s in net.plan]


def test_plan_of_the_paper_networks():
    dense = Network.from_string("34x34x2-512-10", NEURON, SIM, delays=True)
    assert _step_names(dense) == ["DenseSRMDelayBlock", "DenseSRMBlock"]
    assert [l.name for l in dense.plan[0].layers] == ["dense1", "dense1.srm", "dense1.delay"]
    assert dense.plan[1].defer_input_grad and dense.plan[0].accepts_dense_input_grad
    assert _step_names(Network.from_string("34x34x2-512-10", NEURON, SIM)) == ["DenseSRMBlock", "DenseSRMBlock"]
    tidigits = Network.from_string("64-256-256-11", NEURON, SIM, delays=True)
    assert _step_names(tidigits) == ["DenseSRMDelayBlock", "DenseSRMDelayBlock", "DenseSRMBlock"]
    unfused = Network.from_string("34x34x2-512-10", NEURON, SIM, delays=True, fuse=False)
    assert _step_names(unfused) == ["LayerStep"] * 5 and not any(s.defer_input_grad for s in unfused.plan)
    plain = Network.from_string("34x34x2-512-10", NEURON, SIM, strategy="plain")
    assert _step_names(plain) == ["LayerStep"] * 4 and all(l.strategy == "plain" for l in plain.layers)
    assert "dense1.delay" in dense.describe_plan()
    # changing the options rebuilds the plan; unknown strategies are refused
    dense.configure(fuse=False)
    assert _step_names(dense) == ["LayerStep"] * 5
    with pytest.raises(ValueError, match="unknown strategy 'fast'"):
        dense.configure(strategy="fast")


def test_forward_and_backward_are_loops_over_the_plan():
    """No layer-type pattern matching in Network.forward/backward (the plan's matcher is the only place
    that looks at layer types and positions)."""
    for fn in (Network.forward, Network.backward):
        src = inspect.getsource(fn)
        assert "for step in" in src
        for name in ("Dense", "SRM", "Delay", "Conv", "layers["):
            assert name not in src, (fn.__name__, name)


def _step(net, x, y, loss):
    out = net.forward(x, train=True)
    _, g = loss.value_and_grad(out, y)
    net.zero_grad()
    net.backward(g)
    return out, [s for _, s in net.layer_spikes], [p.grad.copy() for p in net.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec,delays,density", [
    ("5x5x2-64-3", False, 0.05),        # DenseSRMBlock: fused forward (>= 48 outputs) and first-layer backward
    ("5x5x2-16-3", False, 0.05),        # DenseSRMBlock below 48 outputs: ops in the block, fused backward
    ("5x5x2-64-16-3", True, 0.05),      # DenseSRMDelayBlock first (through the delay) and hidden
    ("5x5x2-64-100-3", True, 0.05),     # the dense after the delay has > 64 outputs: no row-wise product
    ("5x5x2-64-16-3", True, 0.6),       # dense input above the event threshold: blocks run the dense ops
    ("6x6x2-64-4c3-3", True, 0.05),     # a conv after the delay (events handed on to conv)
    ("30-64-48-3", True, 0.1),          # 1-D input
])
def test_every_block_equals_the_unfused_plan(spec, delays, density, dtype):
    """Outputs and every layer's spikes bitwise; gradients bitwise where the order of sums is kept, else
    to float rounding (the row-wise dense input gradient inside the delay backward)."""
    rng = np.random.default_rng(3)
    shape = Network.from_string(spec, NEURON, SIM).input_shape
    x = (rng.random((5,) + shape + (40,)) < density).astype(dtype)
    y = rng.integers(0, 3, size=5)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    results = {}
    for fuse in (True, False):
        net = Network.from_string(spec, NEURON, SIM, seed=4, dtype=dtype, delays=delays, dense_weight_scale=40.0,
                                  conv_weight_scale=300.0, fuse=fuse)
        results[fuse] = _step(net, SpikeEvents.from_dense(x) if density < 0.5 else x, y, loss)
    (out_f, spikes_f, grads_f), (out_u, spikes_u, grads_u) = results[True], results[False]
    assert out_f.sum() > 0 and spikes_f[0].sum() > 0
    np.testing.assert_array_equal(out_f, out_u)
    for a, b in zip(spikes_f, spikes_u):
        np.testing.assert_array_equal(a, b)
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    for a, b in zip(grads_f, grads_u):
        if not delays:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1e-30, np.abs(b).max()))
    assert any(np.abs(g).max() > 0 for g in grads_f)


@pytest.mark.parametrize("spec,delays", [("5x5x2-64-16-3", True), ("6x6x2-4c3-2a-64-3", True)])
def test_plain_strategy_network_equals_the_fast_one(spec, delays):
    """Network(strategy="plain") runs every op's plain definition: the same spikes, gradients to rounding."""
    rng = np.random.default_rng(5)
    shape = Network.from_string(spec, NEURON, SIM).input_shape
    x = SpikeEvents.from_dense((rng.random((3,) + shape + (40,)) < 0.06).astype(np.float64))
    y = rng.integers(0, 3, size=3)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    fast = _step(Network.from_string(spec, NEURON, SIM, seed=1, dtype=np.float64, delays=delays,
                                     dense_weight_scale=40.0, conv_weight_scale=300.0), x, y, loss)
    plain = _step(Network.from_string(spec, NEURON, SIM, seed=1, dtype=np.float64, delays=delays,
                                      dense_weight_scale=40.0, conv_weight_scale=300.0, strategy="plain"), x, y, loss)
    np.testing.assert_array_equal(fast[0], plain[0])
    for a, b in zip(fast[1], plain[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast[2], plain[2]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(1e-30, np.abs(b).max()))


def test_a_new_block_needs_no_change_elsewhere():
    """Registering a block is all it takes for the matcher to use it (the conv and CUDA blocks that come
    next are added this way); the network's results do not change."""
    calls = []

    class PoolSRMBlock(P.Step):
        pattern = (Pool, SRM)

        @classmethod
        def applies(cls, layers, options):
            return options.cpu_fusion

        def forward(self, x, train=False):
            calls.append("forward")
            for layer in self.layers:
                x = layer.forward(x, train)
            return x

        def backward(self, grad):
            calls.append("backward")
            for layer in reversed(self.layers):
                grad = layer.backward(P.materialize(grad))
            return grad

    rng = np.random.default_rng(6)
    x = SpikeEvents.from_dense((rng.random((2, 2, 8, 8, 40)) < 0.1).astype(np.float32))
    y = np.array([0, 1])
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    before = _step(Network.from_string("8x8x2-2a-4c3-10", NEURON, SIM, seed=2), x, y, loss)
    P.register_block(PoolSRMBlock)
    try:
        net = Network.from_string("8x8x2-2a-4c3-10", NEURON, SIM, seed=2)
        assert "PoolSRMBlock" in _step_names(net)
        after = _step(net, x, y, loss)
    finally:
        P._BLOCKS.remove(PoolSRMBlock)
    assert calls == ["forward", "backward"]
    for a, b in zip([before[0]] + before[1] + before[2], [after[0]] + after[1] + after[2]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):
        P.register_block(int)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec,delays,density", [
    ("12x12x2-4c3-2a-8c3-2a-16-3", True, 0.04),   # Conv-SRM-Delay-Pool-SRM twice, event-driven convs
    ("12x12x2-4c3-2a-8c3-2a-16-3", False, 0.04),  # Conv-SRM-Pool-SRM
    ("10x10x2-4c3-6c3-16-3", True, 0.04),         # Conv-SRM-Delay into a conv and into a dense layer
    ("10x10x2-4c3-6c3-16-3", False, 0.3),         # Conv-SRM, BLAS convs (dense input)
    ("12x12x2-4c3-2a-8c3-2a-16-3", True, 0.3),    # BLAS convs inside the blocks
    ("11x11x2-4c3s2-16-3", True, 0.04),           # a strided conv, event driven
    ("11x11x2-4c3s2-16-3", True, 0.3),            # a strided conv on a dense input: the layers one by one
])
def test_conv_blocks_equal_the_unfused_plan(spec, delays, density, dtype):
    """The fused conv blocks (pysrm.ops.convblock) against the unfused plan on the same dense input (so both
    pick the same conv strategies): outputs and every layer's spikes bitwise; gradients to float rounding
    (bitwise where no delay and no BLAS weight gradient is involved)."""
    _compare_fused_with_unfused(spec, delays, density, dtype)


def _compare_fused_with_unfused(spec, delays, density, dtype, memory_budget=P.MEMORY_BUDGET):
    rng = np.random.default_rng(11)
    shape = Network.from_string(spec, NEURON, SIM).input_shape
    x = (rng.random((5,) + shape + (40,)) < density).astype(dtype)
    y = rng.integers(0, 3, size=5)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    results = {}
    for fuse in (True, False):
        net = Network.from_string(spec, NEURON, SIM, seed=4, dtype=dtype, delays=delays, dense_weight_scale=40.0,
                                  conv_weight_scale=300.0, fuse=fuse, memory_budget=memory_budget)
        drng = np.random.default_rng(5)  # the same fractional delays for both networks
        for p in net.parameters():
            if p.name.endswith(".delay"):
                p.data[...] = drng.uniform(0.0, 2.5, size=p.data.shape).astype(dtype)
        results[fuse] = _step(net, x, y, loss), net
    (out_f, spikes_f, grads_f), net_f = results[True]
    (out_u, spikes_u, grads_u), _ = results[False]
    if density < 0.1 or "s2" not in spec:
        assert any(isinstance(s, P.ConvBlock) for s in net_f.plan)
    assert out_f.sum() > 0 and all(s.sum() > 0 for s in spikes_f[:-1])
    np.testing.assert_array_equal(out_f, out_u)
    for a, b in zip(spikes_f, spikes_u):
        np.testing.assert_array_equal(a, b)
    rtol = 3e-5 if dtype == np.float32 else 1e-11
    for p, a, b in zip(net_f.parameters(), grads_f, grads_u):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1e-30, np.abs(b).max()), err_msg=p.name)
    return net_f


def test_conv_block_delay_gradient_agrees_with_finite_differences():
    """Through a fused Conv -> SRM -> Delay block the output is linear in the delays for fixed spikes, so
    the block's delay gradient is checked by central differences of sum(g * output) (float64)."""
    from pysrm.ops.convblock import NeuronStage, conv_block_backward, conv_block_forward
    from pysrm import functional as F
    from pysrm.gradcheck import numeric_gradient
    rng = np.random.default_rng(3)
    x = SpikeEvents.from_dense((rng.random((3, 2, 7, 6, 30)) < 0.05).astype(np.float64))
    w = rng.normal(size=(3, 2, 3, 3)) * 4
    d = np.round(rng.uniform(0.1, 2.5, size=(3, 7, 6)) * 10) / 10 + 0.05   # away from integer delays
    st = NeuronStage(NEURON, F.srm_kernel(NEURON, SIM), F.refractory_kernel(NEURON, SIM), 1.0, np.float64)

    def out():
        s1, _ = conv_block_forward(w, x, 1, 1, st, (d, 1.0))
        return F.delay(s1.to_dense(), d, 1.0)
    g = rng.normal(size=out().shape)
    _, _, gd = conv_block_backward(w, x, 1, 1, st, g, (d, 1.0), need_input_grad=False)
    fd = numeric_gradient(lambda: float(np.sum(out() * g)), d, h=1e-6)
    assert np.abs(gd).max() > 0
    np.testing.assert_allclose(gd, fd, rtol=1e-7, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("pool,density", [(True, 0.05), (False, 0.05), (True, 0.3)])
def test_conv_block_backward_recomputes_exactly_what_it_would_have_kept(pool, density):
    """The fused conv block keeps its potentials for the backward at small batches and recomputes each
    sample's forward at large ones (pysrm.ops.convblock.STORE_POTENTIALS_BYTES): bitwise the same gradients."""
    from pysrm.ops.convblock import NeuronStage, conv_block_backward, conv_block_forward
    from pysrm import functional as F
    rng = np.random.default_rng(8)
    x = SpikeEvents.from_dense((rng.random((4, 2, 9, 8, 40)) < density).astype(np.float32))
    w = (rng.normal(size=(3, 2, 3, 3)) * 4).astype(np.float32)
    d = rng.uniform(0.0, 3.0, size=(3, 9, 8)).astype(np.float32)
    st = NeuronStage(NEURON, F.srm_kernel(NEURON, SIM), F.refractory_kernel(NEURON, SIM), 1.0, np.float32)
    pl = (2, 4.4) if pool else None
    s1, s2, saved = conv_block_forward(w, x, 1, 1, st, (d, 1.0), pl, st if pool else None, keep_potentials=True)
    assert saved is not None
    g = rng.normal(size=(s2 if pool else s1).shape).astype(np.float32)
    kept = conv_block_backward(w, x, 1, 1, st, g, (d, 1.0), pl, st if pool else None, saved=saved)
    again = conv_block_backward(w, x, 1, 1, st, g, (d, 1.0), pl, st if pool else None)
    for a, b in zip(kept, again):
        np.testing.assert_array_equal(a, b)
    assert np.abs(kept[1]).max() > 0


@pytest.mark.parametrize("spec", ["12x12x2-4c3-2a-8c3-2a-16-3", "10x10x2-4c3-6c3-16-3"])
def test_conv_blocks_with_blas_convs_equal_the_unfused_plan(spec, monkeypatch):
    """Dense-ish inputs in a large batch take the fused block with BLAS convs (BLAS_BLOCK_MIN_BYTES, set to 0
    here so that a small test batch takes it): spikes bitwise, gradients to float rounding."""
    monkeypatch.setattr(P, "BLAS_BLOCK_MIN_BYTES", 0)
    for dtype in (np.float32, np.float64):
        net = _compare_fused_with_unfused(spec, True, 0.3, dtype, memory_budget=0)
        first = net.plan[0]
        assert isinstance(first, P.ConvBlock) and first._layer_steps is None  # ran fused, with BLAS convs


def test_memory_budget_decides_whether_blas_conv_blocks_run_fused(monkeypatch):
    """A conv block whose conv takes BLAS products runs its layers one by one when the whole network's
    unfused conv layers fit in the memory budget (UNFUSED_VALUES_PER_OUTPUT x N x T x conv outputs x
    itemsize), else fused; the rule is the same on every call (shapes, batch and budget only), and both
    executions give the same spikes and gradients to float rounding."""
    monkeypatch.setattr(P, "BLAS_BLOCK_MIN_BYTES", 0)
    spec = "12x12x2-4c3-2a-8c3-2a-16-3"
    net = Network.from_string(spec, NEURON, SIM)
    conv_outputs = 4 * 12 * 12 + 8 * 6 * 6
    blocks = [s for s in net.plan if isinstance(s, P.ConvBlock)]
    assert len(blocks) == 2 and all(b.network_conv_outputs == conv_outputs for b in blocks)
    need = P.UNFUSED_VALUES_PER_OUTPUT * 5 * 40 * conv_outputs * 4   # batch 5, T 40, float32
    assert blocks[0].unfused_bytes(5, 40) == need
    rng = np.random.default_rng(2)
    x = (rng.random((5,) + net.input_shape + (40,)) < 0.3).astype(np.float32)
    for budget, fused in ((need, False), (need - 1, True), (0, True), (10 * need, False)):
        net.configure(memory_budget=budget)
        for _ in range(2):
            net.forward(x, train=True)
            assert (net.plan[0]._layer_steps is None) == fused, budget
    _compare_fused_with_unfused(spec, True, 0.3, np.float32, memory_budget=need - 1)
    with pytest.raises(ValueError, match="memory_budget"):
        net.configure(memory_budget=-1)
