"""The conv blocks (pysrm.blocks.conv): every block and both schedules against the unfused plan, the
delay gradient against finite differences, kept against recomputed potentials, and the schedule rule
(batch size, density, the BLAS output size and the memory budget)."""
import numpy as np
import pytest

from plan_helpers import NEURON, SIM, step_names, train_step

from pysrm import SpikeEvents
from pysrm.blocks import conv as C
from pysrm.layers import Conv
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm import settings
from pysrm.plan import EVENTS, Link


def test_conv_block_schedule_rule_and_links():
    """Small batches run layer by layer (the setting fused_conv_min_batch), sparse inputs fused; a block hands
    its spikes on as events to a conv or dense step (with its density limit), as an array at the end."""
    net = Network.from_string("10x10x2-4c3-6c3-16-3", NEURON, SIM, delays=True)
    assert step_names(net) == ["ConvSRMDelayBlock", "ConvSRMDelayBlock", "DenseSRMDelayBlock", "DenseSRMBlock"]
    assert net.plan[0].output == Link(EVENTS, settings.current().conv_event_density_threshold)
    assert net.plan[1].events_max_density == settings.current().conv_event_density_threshold
    assert net.plan[1].output == Link(EVENTS, net.plan[2].events_max_density)
    rng = np.random.default_rng(0)
    n = settings.current().fused_conv_min_batch
    sparse = SpikeEvents.from_dense((rng.random((n, 2, 10, 10, 20)) < 0.02).astype(np.float32))
    assert net.plan[0].schedule(sparse) == C.FUSED
    small = SpikeEvents.from_dense((rng.random((n - 1, 2, 10, 10, 20)) < 0.02).astype(np.float32))
    assert net.plan[0].schedule(small) == C.LAYERS
    last = Network.from_string("10x10x2-4c3-3c3", NEURON, SIM)
    assert step_names(last) == ["ConvSRMBlock", "ConvSRMBlock"] and last.plan[-1].output == Link()
    out = last.forward(sparse)
    assert isinstance(out, np.ndarray) and out.shape == (n, 3, 10, 10, 20)


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
    """The fused conv blocks (pysrm.blocks.conv) against the unfused plan on the same dense input (so both
    pick the same conv strategies): outputs and every layer's spikes bitwise; gradients to float rounding
    (bitwise where no delay and no BLAS weight gradient is involved)."""
    _compare_fused_with_unfused(spec, delays, density, dtype)


def _compare_fused_with_unfused(spec, delays, density, dtype, memory_budget=None):
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
        results[fuse] = train_step(net, x, y, loss), net
    (out_f, spikes_f, grads_f), net_f = results[True]
    (out_u, spikes_u, grads_u), _ = results[False]
    if density < 0.1 or "s2" not in spec:
        assert any(isinstance(s, C.ConvBlock) for s in net_f.plan)
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
    from pysrm.blocks.conv import NeuronStage, conv_block_backward, conv_block_forward
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
    sample's forward at large ones (the setting store_potentials_bytes): bitwise the same gradients."""
    from pysrm.blocks.conv import NeuronStage, conv_block_backward, conv_block_forward
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
def test_conv_blocks_with_blas_convs_equal_the_unfused_plan(spec):
    """Dense-ish inputs in a large batch take the fused block with BLAS convs (the setting
    blas_block_min_bytes, set to 0 here so that a small test batch takes it): spikes bitwise, gradients to
    float rounding."""
    with settings.override(blas_block_min_bytes=0):
        for dtype in (np.float32, np.float64):
            net = _compare_fused_with_unfused(spec, True, 0.3, dtype, memory_budget=0)
            first = net.plan[0]
            assert isinstance(first, C.ConvBlock) and first.last_schedule == C.FUSED  # ran fused, with BLAS convs


def test_memory_budget_decides_whether_blas_conv_blocks_run_fused():
    """A conv block whose conv takes BLAS products runs its layers one by one when the whole network's
    unfused conv layers fit in the memory budget (unfused_values_per_output x N x T x conv outputs x
    itemsize), else fused; the rule is the same on every call (shapes, batch and budget only), and both
    executions give the same spikes and gradients to float rounding."""
    with settings.override(blas_block_min_bytes=0):
        spec = "12x12x2-4c3-2a-8c3-2a-16-3"
        net = Network.from_string(spec, NEURON, SIM)
        conv_outputs = 4 * 12 * 12 + 8 * 6 * 6
        blocks = [s for s in net.plan if isinstance(s, C.ConvBlock)]
        assert len(blocks) == 2 and all(b.context.output_values(Conv) == conv_outputs for b in blocks)
        need = settings.current().unfused_values_per_output * 5 * 40 * conv_outputs * 4   # batch 5, T 40, float32
        assert blocks[0].unfused_bytes(5, 40) == need
        rng = np.random.default_rng(2)
        x = (rng.random((5,) + net.input_shape + (40,)) < 0.3).astype(np.float32)
        for budget, fused in ((need, False), (need - 1, True), (0, True), (10 * need, False)):
            net.configure(memory_budget=budget)
            for _ in range(2):
                net.forward(x, train=True)
                assert (net.plan[0].last_schedule == C.FUSED) == fused, budget
                assert net.plan[0].schedule(SpikeEvents.from_dense(x)) == net.plan[0].last_schedule
        _compare_fused_with_unfused(spec, True, 0.3, np.float32, memory_budget=need - 1)
        with pytest.raises(ValueError, match="memory_budget"):
            net.configure(memory_budget=-1)


@pytest.mark.parametrize("pattern", ["equal", "runs", "per column"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delay_shift_time_major_equals_the_delay_adjoint(pattern, dtype):
    from pysrm.ops.delay import _shift_back_time_major
    """The delay adjoint shift of the conv blocks and the fused first layer (run by run where columns share
    their integer shift, else column by column) is bitwise out[t] = (1-f) g[t+m] + f g[t+m+1], rows past T read as 0 (pysrm.ops.delay)."""
    rng = np.random.default_rng(3)
    T, tw = 37, 90
    m = {"equal": np.full(tw, 2), "runs": np.repeat(rng.integers(0, 5, tw // 6), 6),
         "per column": rng.integers(0, 40, tw)}[pattern].astype(np.int64)
    f = rng.random(tw).astype(dtype)
    g1 = (dtype(1.0) - f).astype(dtype)
    gy = rng.standard_normal((T, tw)).astype(dtype)
    out = np.full((T, tw), np.nan, dtype=dtype)
    _shift_back_time_major(gy, m, f, g1, out)
    padded = np.concatenate([gy, np.zeros((T + 42, tw), dtype)])
    cols = np.arange(tw)
    expect = np.stack([g1 * padded[t + m, cols] + f * padded[t + m + 1, cols] for t in range(T)])
    np.testing.assert_array_equal(out, expect)


def test_conv_layers_claim_the_kept_potentials_in_order():
    """The conv blocks of a network keep their potentials while their claims (n t (conv + pooled outputs)
    itemsize bytes, in layer order, a layer that does not fit is skipped) fit in the setting
    store_potentials_bytes together; a training step keeps what the rule says."""
    net = Network.from_string("12x12x2-4c3-2a-6c3-10", NEURON, SIM, delays=True)
    ctx = net.plan[0].context
    conv1, conv2 = [l for l in net.layers if isinstance(l, Conv)]
    n, t = 5, 20
    c1 = n * t * (4 * 12 * 12 + 4 * 6 * 6) * 4   # conv1 and the pooled layer after it
    c2 = n * t * (6 * 6 * 6) * 4
    for budget, keeps in [(c1 + c2, (True, True)), (c1 + c2 - 1, (True, False)), (c1 - 1, (False, True)),
                          (c2 - 1, (False, False))]:
        with settings.override(store_potentials_bytes=budget):
            assert (ctx.keeps_potentials(conv1, n, t, 4), ctx.keeps_potentials(conv2, n, t, 4)) == keeps, budget
    rng = np.random.default_rng(2)
    x = SpikeEvents.from_dense((rng.random((n, 2, 12, 12, t)) < 0.03).astype(np.float32))
    first = net.plan[0]
    for budget, kept in [(c1 - 1, False), (c1, True)]:
        with settings.override(store_potentials_bytes=budget):
            net.forward(x, train=True)
            assert first.last_schedule == C.FUSED and (first.cache.get("saved") is not None) == kept


@pytest.mark.parametrize("pool", [True, False])
def test_blas_forward_with_event_weight_gradient(pool):
    """A block whose conv runs as BLAS products (input above conv_event_density_threshold) takes its weight
    gradient event driven up to conv_wgrad_event_density_threshold: the same gradients as the BLAS weight
    gradient to float rounding, the input and delay gradients bitwise."""
    from pysrm.blocks.conv import NeuronStage, conv_block_backward, conv_block_forward
    from pysrm import functional as F
    rng = np.random.default_rng(9)
    x = SpikeEvents.from_dense((rng.random((4, 3, 9, 8, 40)) < 0.15).astype(np.float64))
    w = rng.normal(size=(3, 3, 3, 3)) * 3
    d = rng.uniform(0.0, 3.0, size=(3, 9, 8))
    st = NeuronStage(NEURON, F.srm_kernel(NEURON, SIM), F.refractory_kernel(NEURON, SIM), 1.0, np.float64)
    pl = (2, 4.4) if pool else None
    st2 = st if pool else None
    assert C.uses_blas(x, 1)
    s1, s2 = conv_block_forward(w, x, 1, 1, st, (d, 1.0), pl, st2)
    g = rng.normal(size=(s2 if pool else s1).shape)
    out = {}
    for thr in (0.0, 1.0):
        with settings.override(conv_wgrad_event_density_threshold=thr):
            out[thr] = conv_block_backward(w, x, 1, 1, st, g, (d, 1.0), pl, st2)
    (gx_b, gw_b, gd_b), (gx_e, gw_e, gd_e) = out[0.0], out[1.0]
    np.testing.assert_array_equal(gx_b, gx_e)
    np.testing.assert_array_equal(gd_b, gd_e)
    assert np.abs(gw_b).max() > 0
    np.testing.assert_allclose(gw_e, gw_b, rtol=1e-11, atol=1e-11 * np.abs(gw_b).max())
