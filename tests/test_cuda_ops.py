"""CUDA kernels against the CPU kernels, on tiny shapes.

Run under Numba's CUDA simulator (no GPU needed)::

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_ops.py tests/test_cuda_losses.py

The variable must be set before Numba is imported (hence a separate pytest
invocation).  Without it and without a GPU these tests are skipped.  Under the
simulator :mod:`pysrm.cuda` uses 8 threads per block, at most 3 blocks, and
tiny GEMM / transpose tiles, so every input spans several blocks, every thread
of a grid-stride loop runs more than once and partial tiles are exercised.

Tolerances: float64 1e-10 and float32 1e-5, relative to the largest reference
magnitude; spike trains identical.
"""

import numpy as np
import pytest

from pysrm.backend import is_device_array

from cuda_helpers import HAVE_DEVICE, assert_close, needs_device  # noqa: E402,F401

from pysrm import NeuronParams, SimParams, SpikeEvents  # noqa: E402
from pysrm import functional as F  # noqa: E402

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def dev():
    from pysrm import cuda
    return cuda


def spikes(rng, shape, p, dtype):
    return np.where(rng.random(shape) < p, 1.0, 0.0).astype(dtype)


# --------------------------------------------------------------------------- device helpers

@needs_device
def test_is_device_array_and_events_roundtrip(dev):
    from pysrm.events_cuda import DeviceSpikeEvents
    rng = np.random.default_rng(0)
    x = spikes(rng, (2, 2, 3, 3, 7), 0.2, np.float32)
    dx = dev.to_device(x)
    assert is_device_array(dx) and not is_device_array(x)
    np.testing.assert_array_equal(dev.to_host(dx), x)
    ev = SpikeEvents.from_dense(x)
    dev_ev = dev.to_device(ev)
    assert isinstance(dev_ev, DeviceSpikeEvents) and is_device_array(dev_ev)
    assert dev_ev.shape == ev.shape and dev_ev.n_events == ev.n_events and dev_ev.dtype == np.float32
    back = dev.to_host(dev_ev)
    for f in ("offsets", "neuron", "time", "value"):
        np.testing.assert_array_equal(getattr(back, f), getattr(ev, f))
    np.testing.assert_array_equal(dev.to_host(dev_ev.to_dense()), x)
    np.testing.assert_array_equal(dev.to_host(dev_ev.sample), np.repeat(np.arange(2), np.diff(ev.offsets)))
    assert dev.to_device(ev, np.float64).dtype == np.float64
    assert dev.to_host(None) is None and dev.to_host(x) is x


@needs_device
def test_elementwise_kernels(dev):
    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        a = rng.normal(size=(3, 5, 2)).astype(dtype)
        b = rng.normal(size=(3, 5, 2)).astype(dtype)
        da, db = dev.to_device(a), dev.to_device(b)
        dev.axpy(da, db, 0.5)
        assert_close(da, a + dtype(0.5) * b, dtype, "axpy")
        dev.accumulate(da, db)
        assert_close(da, a + dtype(0.5) * b + b, dtype, "accumulate")
        dev.scale(da, -2.0)
        assert_close(da, -2 * (a + dtype(0.5) * b + b), dtype, "scale")
        dev.copy(da, db)
        np.testing.assert_array_equal(dev.to_host(da), b)
        dev.maximum(da, 0.1)
        np.testing.assert_array_equal(dev.to_host(da), np.maximum(b, dtype(0.1)))
        dev.fill(da, 3.0)
        np.testing.assert_array_equal(dev.to_host(da), np.full_like(a, 3.0))
        np.testing.assert_array_equal(dev.to_host(dev.zeros((4, 3), dtype)), np.zeros((4, 3)))
        t = rng.normal(size=(2, 7, 5)).astype(dtype)
        np.testing.assert_array_equal(dev.to_host(dev.transpose(dev.to_device(t))), t.transpose(0, 2, 1))
        s = rng.normal(size=(4, 9)).astype(dtype)
        assert_close(dev.sum_rows(dev.to_device(s)), s.sum(axis=0), dtype, "sum_rows")
        assert abs(dev.total(dev.to_device(s)) - s.sum(dtype=np.float64)) <= 1e-5 * np.abs(s).sum()
        assert dev.to_host(dev.astype(dev.to_device(s), np.float64)).dtype == np.float64
    # empty launches are skipped, not errors
    dev.fill(dev.empty((0,), np.float32), 1.0)


@needs_device
def test_launch_config(dev):
    """launch_settings changes the launch configuration inside its block, in this thread only."""
    import threading
    default = dev.current_launch()
    seen = []
    with dev.launch_settings(16, 2):
        assert dev.launch_config(1000) == (2, 16)
        assert dev.launch_config(5) == (1, 16)
        t = threading.Thread(target=lambda: seen.append(dev.launch_config(1000)))
        t.start()
        t.join()
        with pytest.raises(ValueError):
            with dev.launch_settings(0):
                pass
    assert seen == [(min(default.max_blocks, -(-1000 // default.threads_per_block)), default.threads_per_block)]
    assert dev.current_launch() is default
    with pytest.raises(AttributeError):
        default.threads_per_block = 3


# --------------------------------------------------------------------------- psp and spikes

@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("response", ["alpha-long", "alpha-short", "other"])
def test_psp_forward_backward(dev, dtype, response):
    # alpha-long: the CPU takes its float64 recursion both ways; alpha-short: its direct kernels;
    # other: a response that is not an alpha function (always direct)
    rng = np.random.default_rng(2)
    if response == "other":
        eps = np.array([0.0, 1.0, 0.5, 0.7, 0.1])
    else:
        eps = F.srm_kernel(NeuronParams(tau_sr=2.0), SimParams(1.0, 14.0 if response == "alpha-long" else 4.0))
    x = np.where(rng.random((2, 3, 2, 1, 12)) < 0.3, rng.normal(size=(2, 3, 2, 1, 12)), 0).astype(dtype)
    out = F.psp(dev.to_device(x), eps, 0.5)
    assert is_device_array(out) and out.dtype == dtype
    assert_close(out, F.psp(x, eps, 0.5), dtype, "psp")
    g = rng.normal(size=x.shape).astype(dtype)
    assert_close(F.psp_backward(dev.to_device(g), eps, 0.5), F.psp_backward(g, eps, 0.5), dtype, "psp_backward")


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_spike_identical_and_surrogate(dev, dtype):
    from pysrm.ops import spike_cuda
    rng = np.random.default_rng(3)
    n = NeuronParams(theta=5, tau_ref=2, tau_rho=0.5, scale_rho=2.0)
    nu = F.refractory_kernel(n, SimParams(0.5, 12))
    u = (rng.normal(size=(3, 4, 12)) * 6).astype(dtype)
    du = dev.to_device(u)
    s, up = F.spike(du, nu, n.theta, 0.5)
    s_cpu, up_cpu = F.spike(u, nu, n.theta, 0.5)
    assert s_cpu.sum() > 0
    np.testing.assert_array_equal(dev.to_host(s), s_cpu)
    assert_close(up, up_cpu, dtype, "u_post")
    np.testing.assert_array_equal(dev.to_host(du), u)  # input untouched
    g = rng.normal(size=u.shape).astype(dtype)
    assert_close(F.spike_backward(dev.to_device(g), up, n), F.spike_backward(g, up_cpu, n), dtype, "spike_backward")
    assert_close(spike_cuda.surrogate(up, n), F.surrogate(up_cpu, n), dtype, "surrogate")
    with pytest.raises(ValueError, match="must match"):
        F.spike_backward(dev.to_device(g[:2]), up, n)


# --------------------------------------------------------------------------- dense

@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_dense_and_event_paths(dev, dtype):
    rng = np.random.default_rng(4)
    x = spikes(rng, (3, 2, 3, 2, 9), 0.15, dtype)
    w = rng.normal(size=(5, 12)).astype(dtype)
    ev = SpikeEvents.from_dense(x)
    expected = F.dense(w, x, strategy="plain")
    dw = dev.to_device(w)
    assert_close(F.dense(dw, dev.to_device(x)), expected, dtype, "dense forward (tiled)")
    assert_close(F.dense(dw, dev.to_device(ev)), expected, dtype, "dense forward (events)")
    g = rng.normal(size=expected.shape).astype(dtype)
    gx_ref, gw_ref = F.dense_backward(w, x, g, strategy="plain")
    dg = dev.to_device(g)
    gx, gw = F.dense_backward(dw, dev.to_device(x), dg)
    assert_close(gx, gx_ref, dtype, "dense grad x (tiled)")
    assert_close(gw, gw_ref, dtype, "dense grad w (tiled, split-K)")
    gx_e, gw_e = F.dense_backward(dw, dev.to_device(ev), dg)
    assert_close(gx_e, gx_ref, dtype, "dense grad x (events input)")
    assert_close(gw_e, gw_ref, dtype, "dense grad w (events)")
    assert F.dense_backward(dw, dev.to_device(ev), dg, need_input_grad=False)[0] is None


@needs_device
def test_dense_empty_events_and_errors(dev):
    w = dev.to_device(np.ones((3, 4), np.float32))
    ev = SpikeEvents.from_dense(np.zeros((2, 4, 1, 1, 5), np.float32))
    out = F.dense(w, dev.to_device(ev))
    np.testing.assert_array_equal(dev.to_host(out), np.zeros((2, 3, 1, 1, 5)))
    _, gw = F.dense_backward(w, dev.to_device(ev), dev.zeros((2, 3, 1, 1, 5), np.float32), False)
    np.testing.assert_array_equal(dev.to_host(gw), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"expected w of shape \(outputs, 6\)"):
        F.dense(w, dev.zeros((1, 6, 1, 1, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        F.dense(w, dev.zeros((1, 4, 1, 1, 3), np.float64))


# --------------------------------------------------------------------------- conv

@needs_device
@pytest.mark.parametrize("stride,pad,dtype", [(1, 1, np.float32), (2, 1, np.float64), (2, 0, np.float32)])
def test_conv_dense_and_event_paths(dev, stride, pad, dtype):
    rng = np.random.default_rng(5)
    x = spikes(rng, (2, 2, 5, 4, 2), 0.25, dtype)
    w = rng.normal(size=(3, 2, 3, 3)).astype(dtype)
    ev = SpikeEvents.from_dense(x)
    expected = F.conv(w, x, stride, pad, strategy="plain")
    dw = dev.to_device(w)
    assert_close(F.conv(dw, dev.to_device(x), stride, pad), expected, dtype, "conv forward (implicit GEMM)")
    assert_close(F.conv(dw, dev.to_device(ev), stride, pad), expected, dtype, "conv forward (events)")
    g = rng.normal(size=expected.shape).astype(dtype)
    gx_ref, gw_ref = F.conv_backward(w, x, g, stride, pad, strategy="plain")
    dg = dev.to_device(g)
    gx, gw = F.conv_backward(dw, dev.to_device(x), dg, stride, pad)
    assert_close(gx, gx_ref, dtype, "conv grad x")
    assert_close(gw, gw_ref, dtype, "conv grad w (split-K)")
    gx_e, gw_e = F.conv_backward(dw, dev.to_device(ev), dg, stride, pad)
    assert_close(gw_e, gw_ref, dtype, "conv grad w (events)")
    assert_close(gx_e, gx_ref, dtype, "conv grad x (events input)")
    assert F.conv_backward(dw, dev.to_device(ev), dg, stride, pad, need_input_grad=False)[0] is None


@needs_device
def test_conv_errors(dev):
    w = dev.to_device(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="input channels"):
        F.conv(w, dev.zeros((1, 2, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        F.conv(w, dev.zeros((1, 3, 2, 2, 3), np.float32))


# --------------------------------------------------------------------------- pool, delay, dropout

@needs_device
@pytest.mark.parametrize("shape,k,dtype", [((2, 2, 5, 3, 4), 2, np.float32), ((1, 2, 4, 5, 3), 3, np.float64)])
def test_pool(dev, shape, k, dtype):
    rng = np.random.default_rng(6)
    x = spikes(rng, shape, 0.25, dtype)
    expected = F.pool(x, k, 11.0, strategy="plain")
    assert_close(F.pool(dev.to_device(x), k, 11.0), expected, dtype, "pool (dense)")
    assert_close(F.pool(dev.to_device(SpikeEvents.from_dense(x)), k, 11.0), expected, dtype, "pool (events)")
    g = rng.normal(size=expected.shape).astype(dtype)
    assert_close(F.pool_backward(dev.to_device(g), x.shape, k, 11.0), F.pool_backward(g, x.shape, k, 11.0), dtype,
                 "pool backward")


@needs_device
@pytest.mark.parametrize("dshape,dtype", [((3, 2, 2), np.float64), ((3, 1, 1), np.float32), ((), np.float64),
                                          ((2, 1), np.float32)])
@needs_device
def test_delay(dev, dshape, dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 2, 2, 8)).astype(dtype)
    d = rng.uniform(0, 3, size=dshape).astype(dtype)
    dd = dev.to_device(d)
    dx = dev.to_device(x)
    assert_close(F.delay(dx, dd, 0.5), F.delay(x, d, 0.5), dtype, "delay forward")
    g = rng.normal(size=x.shape).astype(dtype)
    gx_ref, gd_ref = F.delay_backward(g, x, d, 0.5)
    gx, gd = F.delay_backward(dev.to_device(g), dx, dd, 0.5)
    assert tuple(gd.shape) == np.shape(d)
    assert_close(gx, gx_ref, dtype, "delay grad x")
    assert_close(gd, gd_ref, dtype, "delay grad d")


@needs_device
def test_integer_delay_is_a_pure_shift(dev):
    x = np.zeros((1, 1, 1, 1, 8))
    x[..., 2] = 1.0
    y = dev.to_host(F.delay(dev.to_device(x), dev.to_device(np.array([[[3.0]]])), 1.0))
    assert np.flatnonzero(y[0, 0, 0, 0]).tolist() == [5]
    with pytest.raises(ValueError, match="does not broadcast"):
        F.delay(dev.to_device(x), dev.to_device(np.zeros((2, 2, 2))), 1.0)


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(dev, dtype):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 2, 2, 5)).astype(dtype)
    m = F.dropout_mask(x.shape, 0.5, rng, dtype)
    np.testing.assert_array_equal(dev.to_host(F.dropout(dev.to_device(x), m)), F.dropout(x, m))
    np.testing.assert_array_equal(dev.to_host(F.dropout_backward(dev.to_device(x), dev.to_device(m))),
                                  F.dropout_backward(x, m))
    with pytest.raises(ValueError, match="one entry per neuron"):
        F.dropout(dev.to_device(x), m[:1])


# --------------------------------------------------------------------------- optimiser updates

class _P:
    def __init__(self, data, lower=None):
        self.data, self.grad, self.lower, self.name = data, np.zeros_like(data), lower, "p"

    def clamp(self):
        if self.lower is not None:
            np.maximum(self.data, self.lower, out=self.data)


@needs_device
@pytest.mark.parametrize("name,kwargs", [("sgd", dict(momentum=0.9, weight_decay=0.01)), ("sgd", {}),
                                         ("adam", dict(weight_decay=0.001)), ("nadam", {})])
@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_match_cpu(dev, name, kwargs, dtype):
    from pysrm.ops import optim_cuda as O
    from pysrm.optim import make_optimizer
    rng = np.random.default_rng(9)
    data = rng.normal(size=(4, 5)).astype(dtype)
    lower = 0.0 if name != "sgd" or not kwargs else None
    p = _P(data.copy(), lower)
    opt = make_optimizer(name, [p], lr=0.05, **kwargs)
    dp = dev.to_device(data)
    state = [dev.zeros(data.shape, dtype) for _ in range(2)]
    for step in range(1, 4):
        g = rng.normal(size=data.shape).astype(dtype)
        p.grad[...] = g
        opt.step()
        dg = dev.to_device(g)
        wd = kwargs.get("weight_decay", 0.0)
        if name == "sgd":
            O.sgd_update(dp, dg, state[0] if opt.momentum else None, opt.lr, opt.momentum, wd, lower)
        elif name == "adam":
            O.adam_update(dp, dg, state[0], state[1], opt.lr, opt.b1, opt.b2, opt.eps, step, wd, lower)
        else:
            O.nadam_update(dp, dg, state[0], state[1], opt.lr, opt.b1, opt.b2, opt.eps, step, opt._mu, opt._mu_next,
                           opt.mu_product, wd, lower)
        assert_close(dp, p.data, dtype, f"{name} step {step}")
    if lower is not None:
        assert dev.to_host(dp).min() >= 0.0


@needs_device
def test_all_finite(dev):
    from pysrm.ops import optim_cuda as O
    a = dev.to_device(np.ones(20, np.float32))
    b = np.ones(20, np.float32)
    assert O.all_finite([a, dev.to_device(b)])
    b[13] = np.nan
    assert not O.all_finite([a, dev.to_device(b)])
    b[13] = np.inf
    assert not O.all_finite([dev.to_device(b)])


# --------------------------------------------------------------------------- a training step of a network

def _train_step(net, x, y, loss, opt, on_device):
    from pysrm import losses_cuda
    out = net.forward(x, train=True)
    value, grad = losses_cuda.value_and_grad(loss, out, y) if on_device else loss.value_and_grad(out, y)
    net.zero_grad()
    net.backward(grad)
    opt.step()
    return out, value


@needs_device
@pytest.mark.parametrize("spec,opt_name,kw", [("6-5-3", "adam", dict(delays=True, dropout=0.3)),
                                              ("4x3x2-3c3-2a-3", "sgd", dict(delays=True))])
@needs_device
def test_one_training_step_matches_cpu(dev, spec, opt_name, kw):
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import make_optimizer
    neuron = NeuronParams(theta=4.0, tau_sr=2.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 10.0)
    nets = [Network.from_string(spec, neuron, sim, seed=2, dtype=np.float64, dense_weight_scale=40.0,
                                conv_weight_scale=60.0, **kw) for _ in range(2)]
    cpu, gpu = nets
    assert gpu.to("cuda") is gpu and gpu.device == "cuda"
    assert all(is_device_array(p.data) and is_device_array(p.grad) for p in gpu.parameters())
    rng = np.random.default_rng(0)
    c, h, w = cpu.input_shape
    x = spikes(rng, (2, c, h, w, 10), 0.35, np.float64)
    y = np.array([0, 2])
    loss = make_loss("spikemax-g", ts=1.0)
    opts = dict(momentum=0.9, weight_decay=1e-3) if opt_name == "sgd" else {}
    opt_c = make_optimizer(opt_name, cpu.parameters(), lr=0.05, **opts)
    opt_g = make_optimizer(opt_name, gpu.parameters(), lr=0.05, **opts)
    for step in range(2):
        out_c, v_c = _train_step(cpu, SpikeEvents.from_dense(x), y, loss, opt_c, False)
        out_g, v_g = _train_step(gpu, dev.to_device(SpikeEvents.from_dense(x)) if step else x, y, loss, opt_g, True)
        assert out_c.sum() > 0
        np.testing.assert_array_equal(dev.to_host(out_g), out_c)
        for (name_c, s_c), (name_g, s_g) in zip(cpu.layer_spikes, gpu.layer_spikes):
            np.testing.assert_array_equal(dev.to_host(s_g), s_c, err_msg=name_c)
        assert abs(v_g - v_c) <= 1e-10 * max(1.0, abs(v_c))
        for p, q in zip(cpu.parameters(), gpu.parameters()):
            assert_close(q.grad, p.grad, np.float64, f"step {step} grad {p.name}")
            assert_close(q.data, p.data, np.float64, f"step {step} {p.name}")
    # optimiser state and parameters come back to the host
    st_c, st_g = opt_c.state_dict(), opt_g.state_dict()
    assert set(st_c) == set(st_g)
    for k in st_c:
        assert_close(st_g[k], st_c[k], np.float64, k)
    state = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cpu")
    assert gpu.device == "cpu" and not any(is_device_array(p.data) for p in gpu.parameters())
    np.testing.assert_array_equal(gpu.forward(x), cpu.forward(x))


@needs_device
def test_device_optimizer_refuses_nan_gradients(dev):
    from pysrm.layers import Parameter
    from pysrm.optim import Adam
    p = Parameter(np.zeros(3), "w").to("cuda")
    q = Parameter(np.zeros(2), "v").to("cuda")
    g = np.zeros(2)
    g[1] = np.inf
    q.grad = dev.to_device(g)
    with pytest.raises(FloatingPointError, match="gradient of v"):
        Adam([p, q], lr=0.1).step()



@pytest.mark.skipif(HAVE_DEVICE, reason="checks the behaviour without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error():
    from pysrm.backend import CudaUnavailableError
    from pysrm.network import Network
    net = Network.from_string("4-2", NeuronParams(), SimParams(1.0, 5.0))
    with pytest.raises(CudaUnavailableError, match="--device cpu"):
        net.to("cuda")
    assert net.to("auto").device == "cpu" and not is_device_array(net.parameters()[0].data)


@needs_device
def test_training_pipeline_on_the_device_matches_the_cpu(tmp_path):
    """`pysrm train --device cuda` end to end (run directory, checkpoints, report) equals the CPU run."""
    from pysrm.config import TrainConfig
    from pysrm.train import train
    kw = dict(n_train=8, n_test=8, batch_size=4, t_sample=8.0, window=4.0, net="16x16x2-4a-3-10", epochs=2)
    rep_gpu = train(TrainConfig(device="cuda", **kw), run_dir=tmp_path / "gpu")
    rep_cpu = train(TrainConfig(device="cpu", **kw), run_dir=tmp_path / "cpu")
    a = np.load(tmp_path / "gpu" / "checkpoints" / "last.npz")
    b = np.load(tmp_path / "cpu" / "checkpoints" / "last.npz")
    for k in b.files:
        if k != "meta":
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert rep_gpu["test"]["spike_counts_per_layer"] == pytest.approx(rep_cpu["test"]["spike_counts_per_layer"])
    assert rep_gpu["final_accuracy"] == rep_cpu["final_accuracy"]


@needs_device
def test_moved_device_names_live_beside_what_they_serve(dev):
    """DeviceSpikeEvents lives beside SpikeEvents (pysrm.events_cuda), ParameterPack and zero_grads beside
    the optimiser kernels (pysrm.ops.optim_cuda); the device package no longer hands them out."""
    from pysrm.events_cuda import DeviceSpikeEvents  # noqa: F401
    from pysrm.ops.optim_cuda import ParameterPack, zero_grads  # noqa: F401
    for name in ("DeviceSpikeEvents", "ParameterPack", "zero_grads", "no_such_name"):
        with pytest.raises(AttributeError):
            getattr(dev, name)
