"""The execution plan (pysrm.plan): the planner and its blocks, the value kinds it links, the caches,
and the plain-strategy network against the fast one.  Each block family's own tests:
tests/test_blocks_dense_srm.py, tests/test_blocks_conv.py, tests/test_cuda_plan.py."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

from plan_helpers import NEURON, SIM, step_names, train_step

from pysrm import SpikeEvents
from pysrm import plan as P
from pysrm.layers import SRM, Dense, Pool
from pysrm.losses import make_loss
from pysrm.network import Network


def test_plan_of_the_paper_networks():
    dense = Network.from_string("34x34x2-512-10", NEURON, SIM, delays=True)
    assert step_names(dense) == ["DenseSRMDelayBlock", "DenseSRMBlock"]
    assert [l.name for l in dense.plan[0].layers] == ["dense1", "dense1.srm", "dense1.delay"]
    assert dense.plan[1].grad_output == P.DENSE_INPUT_GRAD and P.DENSE_INPUT_GRAD in dense.plan[0].grad_takes
    assert step_names(Network.from_string("34x34x2-512-10", NEURON, SIM)) == ["DenseSRMBlock", "DenseSRMBlock"]
    tidigits = Network.from_string("64-256-256-11", NEURON, SIM, delays=True)
    assert step_names(tidigits) == ["DenseSRMDelayBlock", "DenseSRMDelayBlock", "DenseSRMBlock"]
    unfused = Network.from_string("34x34x2-512-10", NEURON, SIM, delays=True, fuse=False)
    assert step_names(unfused) == ["LayerStep"] * 5
    assert all(s.grad_output == P.ARRAY and s.output == P.Link() for s in unfused.plan)
    plain = Network.from_string("34x34x2-512-10", NEURON, SIM, strategy="plain")
    assert step_names(plain) == ["LayerStep"] * 4 and all(l.strategy == "plain" for l in plain.layers)
    assert "dense1.delay" in dense.describe_plan()
    # changing the options rebuilds the plan; unknown strategies are refused
    dense.configure(fuse=False)
    assert step_names(dense) == ["LayerStep"] * 5
    with pytest.raises(ValueError, match="unknown strategy 'fast'"):
        dense.configure(strategy="fast")


def test_forward_and_backward_are_loops_over_the_plan():
    """No layer-type pattern matching in Network.forward/backward or in the generic steps (the planner's
    matcher is the only place that looks at layer types and positions; the steps' value kinds link them)."""
    for fn in (Network.forward, Network.backward, P.LayerStep.forward, P.LayerStep.backward, P.Planner.link,
               P.Step.release):
        src = inspect.getsource(fn)
        for name in ("Dense", "SRM", "Delay", "Conv", "layers[", "following"):
            assert name not in src, (fn.__qualname__, name)
    for fn in (Network.forward, Network.backward):
        assert "for step in" in inspect.getsource(fn)


def test_the_planner_links_value_kinds():
    """A step hands events on only where it gives them and the next step takes them; a deferred dense
    input gradient only where the step gives one and the step before takes one; neither in an unfused,
    plain or CUDA plan (PlanOptions.linked_kinds)."""
    assert P.PlanOptions().linked_kinds == frozenset(P.VALUE_KINDS)
    for opts in (P.PlanOptions(fuse=False), P.PlanOptions(strategy="plain"), P.PlanOptions(device="cuda")):
        assert opts.linked_kinds == {P.ARRAY}

    class Giver(P.Step):
        gives = (P.ARRAY, P.EVENTS)
        grad_takes = (P.ARRAY, P.DENSE_INPUT_GRAD)

    class Taker(P.Step):
        takes = (P.ARRAY, P.EVENTS)
        events_max_density = 0.25
        grad_gives = (P.ARRAY, P.DENSE_INPUT_GRAD)

    ctx = P.PlanContext((), P.PlanOptions())
    steps = [Giver((), ctx), Taker((), ctx), Giver((), ctx), P.Step((), ctx)]
    P.Planner.link(steps, ctx.options)
    assert [s.output for s in steps] == [P.Link(P.EVENTS, 0.25), P.Link(), P.Link(), P.Link()]
    assert [s.grad_output for s in steps] == [P.ARRAY, P.DENSE_INPUT_GRAD, P.ARRAY, P.ARRAY]
    P.Planner.link(steps, P.PlanOptions(fuse=False))
    assert all(s.output == P.Link() and s.grad_output == P.ARRAY for s in steps)
    # a layer that cannot give a kind says so
    with pytest.raises(ValueError, match="cannot give"):
        Pool((2, 4, 4), 2, 1.0).backward_as(np.zeros((1, 2, 2, 2, 3)), P.DENSE_INPUT_GRAD)


def test_caches_live_in_one_place_and_are_released():
    """A step's and its layers' caches are their ``cache`` dicts; release empties them (no private names)."""
    rng = np.random.default_rng(1)
    x = SpikeEvents.from_dense((rng.random((4, 2, 8, 8, 20)) < 0.05).astype(np.float32))
    for fuse in (True, False):
        net = Network.from_string("8x8x2-4c3-2a-16-3", NEURON, SIM, delays=True, fuse=fuse)
        net.forward(x, train=True)
        assert any(s.cache for s in net.plan) or any(l.cache for l in net.layers)
        for step in net.plan:
            step.release()
        assert not any(s.cache for s in net.plan) and not any(l.cache for l in net.layers)
        assert all(l.last_spikes is None for l in net.layers if isinstance(l, SRM))
    src = inspect.getsource(P.Step.release) + inspect.getsource(type(net.layers[0]).release)
    assert "_x" not in src and "_u" not in src


@pytest.mark.parametrize("spec,delays", [("5x5x2-64-16-3", True), ("6x6x2-4c3-2a-64-3", True)])
def test_plain_strategy_network_equals_the_fast_one(spec, delays):
    """Network(strategy="plain") runs every op's plain definition: the same spikes, gradients to rounding."""
    rng = np.random.default_rng(5)
    shape = Network.from_string(spec, NEURON, SIM).input_shape
    x = SpikeEvents.from_dense((rng.random((3,) + shape + (40,)) < 0.06).astype(np.float64))
    y = rng.integers(0, 3, size=3)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    fast = train_step(Network.from_string(spec, NEURON, SIM, seed=1, dtype=np.float64, delays=delays,
                                     dense_weight_scale=40.0, conv_weight_scale=300.0), x, y, loss)
    plain = train_step(Network.from_string(spec, NEURON, SIM, seed=1, dtype=np.float64, delays=delays,
                                      dense_weight_scale=40.0, conv_weight_scale=300.0, strategy="plain"), x, y, loss)
    np.testing.assert_array_equal(fast[0], plain[0])
    for a, b in zip(fast[1], plain[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast[2], plain[2]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(1e-30, np.abs(b).max()))




def test_register_block_in_own_planner():
    """A new block class registered in its own Planner only: that planner's plans use it (with the same
    results as the unfused plan and the default plan), the default planner and other planners do not
    change; a planner refuses what is not a block."""
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
    spec = "8x8x2-2a-4c3-10"
    before = train_step(Network.from_string(spec, NEURON, SIM, seed=2), x, y, loss)
    unfused = train_step(Network.from_string(spec, NEURON, SIM, seed=2, fuse=False), x, y, loss)
    planner = P.default_planner()
    other = P.default_planner()
    default_blocks = other.blocks
    assert planner.register(PoolSRMBlock) is PoolSRMBlock
    assert PoolSRMBlock in planner.blocks and len(planner.blocks) == len(default_blocks) + 1
    net = Network.from_string(spec, NEURON, SIM, seed=2, planner=planner)
    assert "PoolSRMBlock" in step_names(net)
    after = train_step(net, x, y, loss)
    assert calls == ["forward", "backward"]
    for ref in (before, unfused):
        for a, b in zip([ref[0]] + ref[1] + ref[2], [after[0]] + after[1] + after[2]):
            np.testing.assert_array_equal(a, b)
    # nothing else changed: the other planner, a new default planner, a network without a planner
    assert other.blocks == default_blocks == P.default_planner().blocks and PoolSRMBlock not in default_blocks
    assert "PoolSRMBlock" not in step_names(Network.from_string(spec, NEURON, SIM, seed=2))
    assert "PoolSRMBlock" not in step_names(Network.from_string(spec, NEURON, SIM, seed=2, planner=other))
    # the network keeps its planner when its options change
    net.configure(fuse=True)
    assert "PoolSRMBlock" in step_names(net)
    # a planner of its own, empty: every layer on its own
    assert step_names(Network.from_string(spec, NEURON, SIM, planner=P.Planner())) == ["LayerStep"] * 6
    with pytest.raises(TypeError):
        planner.register(int)
    with pytest.raises(TypeError):
        planner.register(P.Step)  # no pattern


def test_default_planner_of_the_cpu_imports_no_cuda_block():
    """The device is fixed per plan: a CPU planner holds CPU blocks only and builds them without importing
    pysrm.blocks.cuda (checked in a fresh process)."""
    code = ("import sys; from pysrm import plan; p = plan.default_planner('cpu'); "
            "print(sorted(m for m in sys.modules if m.startswith('pysrm') and 'cuda' in m), "
            "[c.__module__ for c in p.blocks])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("[] "), r.stdout
    assert "pysrm.blocks.cuda" not in r.stdout and "pysrm.blocks.dense_srm" in r.stdout


def test_dense_layer_gives_its_input_gradient_deferred_only_through_the_planner():
    """The deferred dense input gradient crosses one interface: Layer.backward_as with the kind the
    planner linked; the plain backward gives an array."""
    rng = np.random.default_rng(3)
    layer = Dense((6, 1, 1), 4, rng, dtype=np.float64)
    layer.need_input_grad = True
    x = rng.random((2, 6, 1, 1, 5))
    g = rng.random((2, 4, 1, 1, 5))
    layer.forward(x, train=True)
    gx = layer.backward(g)
    deferred = layer.backward_as(g, P.DENSE_INPUT_GRAD)
    assert isinstance(gx, np.ndarray) and not isinstance(deferred, np.ndarray)
    np.testing.assert_allclose(P.materialize(deferred), gx, rtol=1e-12)
