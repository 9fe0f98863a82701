"""The CUDA blocks of the execution plan (pysrm/blocks/cuda.py): whole training steps against the CPU
network and against the layer-by-layer CUDA plan, on tiny networks.

Run under Numba's CUDA simulator (no GPU needed)::

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_plan.py

float64: spike trains identical to the CPU's, loss and gradients within 1e-10 relative.
"""
import numpy as np
import pytest

from cuda_helpers import assert_close, needs_device

from pysrm import NeuronParams, SimParams, SpikeEvents


@pytest.fixture(scope="module")
def dev():
    from pysrm import cuda
    return cuda


def _nets(spec, fuse=True, dtype=np.float64, **kw):
    from pysrm.network import Network
    neuron = NeuronParams(theta=2.0, tau_sr=2.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 9.0)
    args = dict(seed=2, dtype=dtype, dense_weight_scale=40.0, conv_weight_scale=60.0, **kw)
    return (Network.from_string(spec, neuron, sim, **args),
            Network.from_string(spec, neuron, sim, fuse=fuse, **args).to("cuda"))


def _step(dev, net, loss, opt, x, y, on_device):
    out = net.forward(dev.to_device(x) if on_device else x, train=True)
    value, grad = loss.value_and_grad(out, y)
    net.zero_grad()
    net.backward(grad)
    opt.step()
    return value


@needs_device
@pytest.mark.parametrize("spec,kw,blocks", [
    ("4x4x2-3c3-2a-5", dict(delays=True), ["CudaSynSRMDelayPoolSRM", "CudaSynSRM"]),
    ("8x8x2-2a-3c3-2a-4", dict(delays=True, delay_per="channel"), ["CudaPoolSRM", "CudaSynSRMDelayPoolSRM", "CudaSynSRM"]),
    ("3x3x2-6-4", dict(delays=True), ["CudaSynSRMDelay", "CudaSynSRM"]),
    ("4x4x2-3c3-2a-2c3-4", dict(dropout=0.2), ["CudaSynSRMPoolSRM", "Dropout", "CudaSynSRM", "Dropout", "CudaSynSRM"]),
])
def test_fused_training_steps_match_the_cpu(dev, spec, kw, blocks):
    from pysrm.losses import make_loss
    from pysrm.optim import make_optimizer
    cpu, gpu = _nets(spec, **kw)
    kinds = [type(s).__name__ if type(s).__name__ != "LayerStep" else type(s.layer).__name__ for s in gpu.plan]
    assert kinds == blocks
    rng = np.random.default_rng(0)
    c, h, w = cpu.input_shape
    x = SpikeEvents.from_dense(np.where(rng.random((2, c, h, w, 9)) < 0.3, 1.0, 0.0))
    y = np.array([0, 2])
    loss = make_loss("spikemax-g", ts=1.0)
    oc, og = make_optimizer("adam", cpu.parameters(), lr=0.05), make_optimizer("adam", gpu.parameters(), lr=0.05)
    for step in range(2):
        v_c = _step(dev, cpu, loss, oc, x, y, False)
        v_g = _step(dev, gpu, loss, og, x if step else x.to_dense(), y, True)
        for (name, s_c), (_, s_g) in zip(cpu.layer_spikes, gpu.layer_spikes):
            np.testing.assert_array_equal(dev.to_host(s_g), s_c, err_msg=f"step {step} {name}")
        assert sum(s.sum() for _, s in cpu.layer_spikes) > 0
        assert abs(v_g - v_c) <= 1e-10 * max(1.0, abs(v_c))
        for p, q in zip(cpu.parameters(), gpu.parameters()):
            assert_close(q.grad, p.grad, np.float64, f"step {step} grad {p.name}")
            assert_close(q.data, p.data, np.float64, f"step {step} {p.name}")
    # inference (no potentials kept) gives the training forward's spikes
    np.testing.assert_array_equal(dev.to_host(gpu.forward(x)), cpu.forward(x))


@needs_device
def test_fused_plan_equals_the_unfused_plan_with_fewer_launches(dev):
    from pysrm.losses import make_loss
    from pysrm.optim import make_optimizer
    _, fused = _nets("4x4x2-3c3-2a-5", delays=True, dtype=np.float32)
    _, plain = _nets("4x4x2-3c3-2a-5", fuse=False, delays=True, dtype=np.float32)
    assert all(type(s).__name__ == "LayerStep" for s in plain.plan)
    rng = np.random.default_rng(1)
    x = SpikeEvents.from_dense(np.where(rng.random((2, 2, 4, 4, 9)) < 0.3, 1.0, 0.0).astype(np.float32))
    y = np.array([1, 3])
    loss = make_loss("spikemax", ts=1.0, window=3.0)
    counts = []
    for net in (fused, plain):
        opt = make_optimizer("nadam", net.parameters(), lr=0.01)
        with dev.count_launches() as c:
            _step(dev, net, loss, opt, x, y, True)
        counts.append(c.launches)
    for (name, a), (_, b) in zip(fused.layer_spikes, plain.layer_spikes):
        np.testing.assert_array_equal(dev.to_host(a), dev.to_host(b), err_msg=name)
    for p, q in zip(fused.parameters(), plain.parameters()):
        assert_close(p.data, dev.to_host(q.data), np.float32, p.name)
    assert counts[0] < counts[1], counts


@needs_device
def test_long_responses_fall_back_to_single_layers(dev):
    from pysrm.network import Network
    from pysrm.blocks import srm_cuda
    neuron = NeuronParams(theta=2.0, tau_sr=8.0, tau_ref=2.0)
    sim = SimParams(1.0, 40.0)
    net = Network.from_string("3-2", neuron, sim, dtype=np.float64)
    assert len(net.layers[1].srm) > srm_cuda.MAX_KERNEL
    net.to("cuda")
    assert [type(s).__name__ for s in net.plan] == ["LayerStep", "LayerStep"]
    cpu = Network.from_string("3-2", neuron, sim, dtype=np.float64)
    x = np.zeros((1, 3, 1, 1, 12))
    x[0, :, 0, 0, 1] = 1.0
    np.testing.assert_array_equal(dev.to_host(net.forward(x)), cpu.forward(x))
