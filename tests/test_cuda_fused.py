"""The fused SRM kernels (pysrm/blocks/srm_cuda.py) and the one-launch delay kernels against the CPU ops.

Run under Numba's CUDA simulator (no GPU needed), like tests/test_cuda_ops.py::

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_fused.py

Under the simulator the fused kernels use tiles of 4 rows x 4 bins and responses of at most 16
samples, so T = 11 crosses tiles and the halos of the spike response cross tile borders.
Spike trains identical; potentials and gradients within float64 1e-10 / float32 1e-5 (relative to
the largest reference magnitude).
"""
import numpy as np
import pytest

from cuda_helpers import assert_close, needs_device

from pysrm import NeuronParams, SimParams
from pysrm import functional as F

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def dev():
    from pysrm import cuda
    return cuda


def _responses(kind):
    """(neuron, sim, srm kernel, refractory kernel): alpha kernels long enough for the CPU's float64
    recursion, or short ones (the CPU's direct sums in the dtype)."""
    if kind == "long":
        neuron = NeuronParams(theta=1.5, tau_sr=2.0, tau_ref=1.5, tau_rho=0.5)
    else:
        neuron = NeuronParams(theta=1.5, tau_sr=0.6, tau_ref=0.5, tau_rho=0.5)
    sim = SimParams(1.0, 11.0)
    return neuron, sim, F.srm_kernel(neuron, sim, 0.01), F.refractory_kernel(neuron, sim, 0.01)


def _drive(rng, shape, dtype):
    return (rng.random(shape) * 2.0 * (rng.random(shape) < 0.6)).astype(dtype)


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["long", "short"])
def test_fused_forward_equals_the_separate_ops(dev, dtype, kind):
    from pysrm.blocks import srm_cuda
    neuron, sim, k, nu = _responses(kind)
    assert srm_cuda.applies(k, nu) and len(k) > srm_cuda.TILE
    rng = np.random.default_rng(3)
    shape = (2, 3, 2, 3, 11)
    a = _drive(rng, shape, dtype)
    s_ref, u_ref = F.srm_forward(a, k, nu, neuron.theta, sim.ts)
    assert 0 < s_ref.sum() < s_ref.size / sim.ts
    # rows layout
    s, u = srm_cuda.srm_forward(dev.to_device(a), shape, k, nu, neuron.theta, sim.ts)
    np.testing.assert_array_equal(dev.to_host(s), s_ref)
    assert_close(u, u_ref, dtype, "u_ref")
    # inference: no potential
    s2, u2 = srm_cuda.srm_forward(dev.to_device(a), shape, k, nu, neuron.theta, sim.ts, need_potential=False)
    assert u2 is None
    np.testing.assert_array_equal(dev.to_host(s2), s_ref)
    # channels-last input (N, H, W, T, C): the event paths' layout
    a_cl = np.ascontiguousarray(a.transpose(0, 2, 3, 4, 1))
    s3, u3 = srm_cuda.srm_forward(dev.to_device(a_cl), shape, k, nu, neuron.theta, sim.ts, "channels_last")
    np.testing.assert_array_equal(dev.to_host(s3), s_ref)
    assert_close(u3, u_ref, dtype, "u_ref channels-last")


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_hw,k", [((4, 6), 2), ((5, 3), 2), ((3, 3), 3)])
def test_fused_pool_forward(dev, dtype, in_hw, k):
    from pysrm.blocks import srm_cuda
    neuron, sim, kern, nu = _responses("long")
    rng = np.random.default_rng(4)
    x = np.where(rng.random((2, 2) + in_hw + (11,)) < 0.4, 1.0, 0.0).astype(dtype)
    weight = 1.1 * neuron.theta
    a = F.pool(x, k, weight)
    s_ref, u_ref = F.srm_forward(a, kern, nu, neuron.theta, sim.ts)
    assert s_ref.sum() > 0
    s, u = srm_cuda.srm_forward(dev.to_device(x), a.shape, kern, nu, neuron.theta, sim.ts, "pool", (k, weight))
    np.testing.assert_array_equal(dev.to_host(s), s_ref)
    assert_close(u, u_ref, dtype, "u_ref pooled")


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("through", ["none", "delay", "pool", "delay+pool"])
def test_fused_backward(dev, dtype, through):
    from pysrm.blocks import srm_cuda
    neuron, sim, kern, nu = _responses("long")
    rng = np.random.default_rng(5)
    shape = (2, 3, 4, 2, 11)
    a = _drive(rng, shape, dtype)
    s, u = F.srm_forward(a, kern, nu, neuron.theta, sim.ts)
    pool = (2, 1.1 * neuron.theta) if "pool" in through else None
    d = (rng.random((3, 4, 2)) * 3.0).astype(dtype) if "delay" in through else None
    if pool:
        g_out = rng.normal(size=(2, 3, 2, 1, 11)).astype(dtype)
        g = F.pool_backward(g_out, shape, *pool)
    else:
        g_out = rng.normal(size=shape).astype(dtype)
        g = g_out
    if d is not None:
        g, _ = F.delay_backward(g, s, d, sim.ts)
    ref = F.srm_backward(g, u, neuron, kern, sim.ts, strategy="plain")
    delay = (dev.to_device(d), sim.ts) if d is not None else None
    got = srm_cuda.srm_backward(dev.to_device(g_out), dev.to_device(u), neuron, kern, sim.ts, delay=delay, pool=pool)
    assert_close(got, ref, dtype, f"srm backward through {through}")
    got_cl = srm_cuda.srm_backward(dev.to_device(g_out), dev.to_device(u), neuron, kern, sim.ts, delay=delay,
                                   pool=pool, out_channels_last=True)
    assert_close(got_cl, ref.transpose(0, 2, 3, 4, 1), dtype, f"channels-last, through {through}")


@needs_device
def test_fused_limits_and_errors(dev):
    from pysrm.blocks import srm_cuda
    neuron, sim, kern, nu = _responses("long")
    long_k = np.concatenate([kern, np.full(srm_cuda.MAX_KERNEL, 1e-3)])
    assert not srm_cuda.applies(long_k, nu) and not srm_cuda.applies(kern, np.ones(65))
    x = dev.to_device(np.zeros((1, 1, 1, 1, 5), np.float32))
    with pytest.raises(ValueError, match="at most"):
        srm_cuda.srm_forward(x, (1, 1, 1, 1, 5), long_k, nu, neuron.theta, sim.ts)
    with pytest.raises(ValueError, match="does not pool"):
        srm_cuda.srm_forward(x, (1, 1, 2, 2, 5), kern, nu, neuron.theta, sim.ts, "pool", (2, 1.0))
    u = dev.to_device(np.zeros((1, 2, 2, 2, 5), np.float32))
    with pytest.raises(ValueError, match="pool output"):
        srm_cuda.srm_backward(u, u, neuron, kern, sim.ts, pool=(2, 1.0))
    with pytest.raises(ValueError, match="broadcast"):
        srm_cuda.srm_backward(u, u, neuron, kern, sim.ts, delay=(dev.to_device(np.zeros((3, 1, 1), np.float32)), 1.0))


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dshape", [(3, 2, 2), (3, 1, 1), (1, 1, 1)])
def test_delay_gradient_one_launch(dev, dtype, dshape):
    from pysrm.ops import delay_cuda
    rng = np.random.default_rng(6)
    x = np.where(rng.random((2, 3, 2, 2, 9)) < 0.3, 1.0, 0.0).astype(dtype)
    d = (rng.random(dshape) * 4.0).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)
    gx_ref, gd_ref = F.delay_backward(g, x, d, 1.0)
    with dev.count_launches() as c:
        gx, gd = F.delay_backward(dev.to_device(g), dev.to_device(x), dev.to_device(d), 1.0)
    assert c.n_kernels == 2
    assert_close(gx, gx_ref, dtype, "delay input gradient")
    assert_close(gd, gd_ref, dtype, "delay gradient")
    acc = dev.to_device(np.ones(dshape, dtype))
    delay_cuda.delay_grad(dev.to_device(g), dev.to_device(x), dev.to_device(d), 1.0, accumulate_into=acc)
    assert_close(acc, gd_ref + 1, dtype, "delay gradient accumulated")
    # read through a following sum pool
    gp = rng.normal(size=(2, 3, 1, 1, 9)).astype(dtype)
    g2 = F.pool_backward(gp, x.shape, 2, 1.7)
    _, gd2_ref = F.delay_backward(g2, x, d, 1.0)
    gd2 = delay_cuda.delay_grad(dev.to_device(gp), dev.to_device(x), dev.to_device(d), 1.0, pool=(2, 1.7))
    assert_close(gd2, gd2_ref, dtype, "delay gradient through a pool")


@needs_device
def test_count_launches_and_parameter_pack(dev):
    from pysrm.layers import Parameter
    from pysrm.ops import optim_cuda
    from pysrm.optim import Adam
    rng = np.random.default_rng(7)
    ps = [Parameter(rng.normal(size=(3, 4)), "w").to("cuda"), Parameter(rng.random(5), "d", lower=0.0).to("cuda")]
    ref = [Parameter(p.data.copy_to_host(), p.name, p.lower) for p in ps]
    pack = optim_cuda.ParameterPack.pack(ps)
    assert pack is not None and optim_cuda.ParameterPack.of(ps) is pack and pack.size == 17
    opt, opt_ref = Adam(ps, lr=0.5), Adam(ref, lr=0.5)
    for step in range(2):
        grads = [rng.normal(size=p.data.shape) for p in ref]
        with dev.count_launches() as c:
            opt.zero_grad()
        assert c.launches == 1
        for p, q, g in zip(ps, ref, grads):
            p.grad.copy_to_device(g)
            q.grad[...] = g
        with dev.count_launches() as c:
            opt.step()
        if step:  # (the first step also makes the flat state)
            assert c.launches == 3, c  # zeroing the NaN flag, the NaN check, the update: for all parameters
        opt_ref.step()
        for p, q in zip(ps, ref):
            assert_close(p.data, q.data, np.float64, p.name)
    assert dev.to_host(ps[1].data).min() >= 0.0
    st, st_ref = opt.state_dict(), opt_ref.state_dict()
    for key in st_ref:
        assert_close(st[key], st_ref[key], np.float64, key)
    # a parameter replaced: the pack is no longer used, the per-parameter path takes over
    ps[0].data = dev.copy_new(ps[0].data)
    assert optim_cuda.ParameterPack.of(ps) is None
    with dev.count_launches() as c:
        opt.step()
    assert c.launches == 5  # the flag, one check and one update per parameter
    assert optim_cuda.nonfinite_flags([pack.grad]).tolist() == [0]
