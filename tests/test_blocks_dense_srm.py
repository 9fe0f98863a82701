"""The Dense -> SRM [-> Delay] blocks (pysrm.blocks.dense_srm) against the unfused plan, and how the
planner links them (events handed on, the deferred dense input gradient)."""
import numpy as np
import pytest

from plan_helpers import NEURON, SIM, step_names, train_step

from pysrm import SpikeEvents
from pysrm import plan as P
from pysrm import settings
from pysrm.losses import make_loss
from pysrm.network import Network


def test_links_of_the_dense_blocks():
    """A Dense -> SRM -> Delay block hands its spikes on as events to a step that takes them, with that
    step's density limit; a dense step before a delay block hands its input gradient on uncomputed."""
    net = Network.from_string("34x34x2-512-10", NEURON, SIM, delays=True)
    assert step_names(net) == ["DenseSRMDelayBlock", "DenseSRMBlock"]
    first, second = net.plan
    assert first.output == P.Link(P.EVENTS, settings.current().event_density_threshold) and first.emit_events
    assert second.output == P.Link() and not second.emit_events
    assert second.grad_output == P.DENSE_INPUT_GRAD and first.grad_output == P.ARRAY
    conv_next = Network.from_string("6x6x2-64-4c3-3", NEURON, SIM, delays=True)
    assert conv_next.plan[0].output == P.Link(P.EVENTS, settings.current().conv_event_density_threshold)


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
        results[fuse] = train_step(net, SpikeEvents.from_dense(x) if density < 0.5 else x, y, loss)
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


