"""The cuBLAS path of the GEMM-shaped products (pysrm/ops/_cublas_cuda.py) against the Numba GEMM.

The im2col / col2im kernels are Numba kernels and run under the CUDA simulator (against NumPy); the
cuBLAS calls themselves need a real GPU with CuPy (skipped elsewhere)::

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_cublas.py     # the kernels, no GPU
    pytest tests/test_cuda_cublas.py                            # on a GPU: cuBLAS against the Numba GEMM

Tolerances: float64 1e-10 and float32 1e-5 relative to the largest reference magnitude (cuBLAS in
float32 FMA); with TF32, 5e-3 (inputs rounded to a 10-bit mantissa).
"""
import numpy as np
import pytest

from cuda_helpers import assert_close, needs_device

DTYPES = [np.float32, np.float64]
GEOMS = [  # (Ci, H, W, Co, KH, KW, stride, pad, T)
    (2, 5, 4, 3, 3, 3, 1, 1, 3),
    (3, 6, 5, 2, 3, 2, 2, 0, 2),
    (1, 4, 4, 2, 5, 5, 1, 2, 2),
]


@pytest.fixture(scope="module")
def dev():
    from pysrm import cuda
    return cuda


def _cublas_ready():
    try:
        from pysrm import cuda
        if cuda.SIMULATOR:
            return False
        from pysrm.ops import _cublas_cuda
        return _cublas_cuda.available()
    except Exception:
        return False


needs_cublas = pytest.mark.skipif(not _cublas_ready(), reason="needs a real GPU with CuPy (cuBLAS)")


def _im2col_ref(x, Ci, H, W, KH, KW, sy, sx, py, px, Ho, Wo):
    N, T = x.shape[0], x.shape[-1]
    col = np.zeros((N, Ci, KH, KW, Ho, Wo, T), x.dtype)
    for ky in range(KH):
        for kx in range(KW):
            for oy in range(Ho):
                for ox in range(Wo):
                    iy, ix = oy * sy + ky - py, ox * sx + kx - px
                    if 0 <= iy < H and 0 <= ix < W:
                        col[:, :, ky, kx, oy, ox, :] = x[:, :, iy, ix, :]
    return col.reshape(N, Ci * KH * KW, Ho * Wo * T)


@needs_device
@pytest.mark.parametrize("geom", GEOMS)
def test_im2col_and_its_adjoint(dev, geom):
    from pysrm.ops import _cublas_cuda as B
    from pysrm.ops import _gemm_cuda as G
    from pysrm.ops.conv import conv_output_size
    Ci, H, W, Co, KH, KW, s, p, T = geom
    Ho, Wo = conv_output_size(H, W, (KH, KW), (s, s), (p, p))
    g = G.geometry(Ci, H, W, Co, Ho, Wo, KH, KW, s, s, p, p, T)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, Ci, H, W, T))
    col = B.im2col(dev.to_device(x), g, 2, np.float64)
    ref = _im2col_ref(x, Ci, H, W, KH, KW, s, s, p, p, Ho, Wo)
    np.testing.assert_array_equal(dev.to_host(col), ref)
    dcol = rng.normal(size=ref.shape)
    gx = dev.to_host(B.col2im(dev.to_device(dcol), g, 2, np.float64)).reshape(x.shape)
    # adjoint: <im2col(x), dcol> == <x, col2im(dcol)>
    assert abs(np.sum(ref * dcol) - np.sum(x * gx)) <= 1e-10 * np.abs(ref * dcol).sum()


def _operands(rng, mode, geom, N, dtype):
    from pysrm.ops import _gemm_cuda as G
    from pysrm.ops.conv import conv_output_size
    Ci, H, W, Co, KH, KW, s, p, T = geom
    Ho, Wo = conv_output_size(H, W, (KH, KW), (s, s), (p, p))
    g = G.geometry(Ci, H, W, Co, Ho, Wo, KH, KW, s, s, p, p, T)
    I, O = Ci * H * W, Co
    r = lambda *shape: rng.normal(size=shape).astype(dtype)  # noqa: E731
    if mode == G.DENSE_FWD:
        return r(O, I), r(N, I, T), O, T, I, G.geometry(I, Co=O, T=T)
    if mode == G.DENSE_GX:
        return r(O, I), r(N, O, T), I, T, O, G.geometry(I, Co=O, T=T)
    if mode == G.DENSE_GW:
        return r(N, O, T), r(N, I, T), O, I, T, G.geometry(I, Co=O, T=T)
    if mode == G.CONV_FWD:
        return r(Co, Ci, KH, KW), r(N, Ci, H, W, T), Co, Ho * Wo * T, Ci * KH * KW, g
    if mode == G.CONV_GX:
        return r(Co, Ci, KH, KW), r(N, Co, Ho, Wo, T), Ci, H * W * T, Co * KH * KW, g
    return r(N, Co, Ho, Wo, T), r(N, Ci, H, W, T), Co, Ci * KH * KW, Ho * Wo * T, g


@needs_cublas
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMS)
@pytest.mark.parametrize("mode", range(6))
def test_cublas_products_equal_the_numba_gemm(dev, mode, geom, dtype):
    from pysrm.ops import _gemm_cuda as G
    rng = np.random.default_rng(mode)
    N = 3
    A, B, M, Ncol, K, g = _operands(rng, mode, geom, N, dtype)
    dA, dB = dev.to_device(A), dev.to_device(B)
    ref = G.gemm(mode, dA, dB, M, Ncol, K, N, g, dtype, backend="numba")
    got = G.gemm(mode, dA, dB, M, Ncol, K, N, g, dtype, backend="cublas")
    assert_close(got, dev.to_host(ref), dtype, f"mode {mode}")
    if np.dtype(dtype) == np.float32:
        with dev.math_settings(tf32=True):
            tf = G.gemm(mode, dA, dB, M, Ncol, K, N, g, dtype, backend="cublas")
        r = dev.to_host(ref).astype(np.float64)
        assert np.abs(dev.to_host(tf) - r).max() <= 5e-3 * np.abs(r).max()
    if mode in (G.DENSE_GW, G.CONV_GW):  # accumulated into a gradient
        acc = dev.to_device(np.ones((M, Ncol), dtype))
        G.gemm(mode, dA, dB, M, Ncol, K, N, g, dtype, backend="cublas", accumulate_into=acc)
        assert_close(acc, dev.to_host(ref) + 1, dtype, f"mode {mode} accumulated")


@needs_cublas
@pytest.mark.parametrize("dtype", DTYPES)
def test_cublas_transposes_and_one_sample_per_call(dev, dtype, monkeypatch):
    from pysrm.ops import _cublas_cuda as B
    from pysrm.ops import _gemm_cuda as G
    rng = np.random.default_rng(9)
    x = rng.normal(size=(7, 5)).astype(dtype)
    out = dev.to_device(np.ones((5, 7), dtype))
    B.transpose_into(dev.to_device(x), out, 7, 5, accumulate=True)
    assert_close(out, x.T + 1, dtype, "geam transpose + accumulate")
    A, Bm, M, Ncol, K, g = _operands(rng, G.DENSE_GW, GEOMS[0], 4, dtype)
    ref = G.gemm(G.DENSE_GW, dev.to_device(A), dev.to_device(Bm), M, Ncol, K, 4, g, dtype, backend="numba")
    from pysrm import settings
    with settings.override(cublas_partial_limit=0):  # the per-sample accumulating GEMMs
        got = G.gemm(G.DENSE_GW, dev.to_device(A), dev.to_device(Bm), M, Ncol, K, 4, g, dtype, backend="cublas")
    assert_close(got, dev.to_host(ref), dtype, "per-sample accumulation")


@needs_cublas
def test_training_step_cublas_equals_numba_gemm(dev):
    from pysrm import NeuronParams, SimParams, SpikeEvents
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import make_optimizer
    neuron = NeuronParams(theta=2.0, tau_sr=2.0, tau_ref=2.0)
    sim = SimParams(1.0, 20.0)
    rng = np.random.default_rng(2)
    x = SpikeEvents.from_dense(np.where(rng.random((4, 2, 12, 12, 20)) < 0.1, 1.0, 0.0))
    y = np.array([0, 1, 2, 3])
    grads = {}
    for backend in ("numba", "cublas"):
        net = Network.from_string("12x12x2-4c3-2a-6c3-2a-16-5", neuron, sim, delays=True, dtype=np.float64,
                                  conv_weight_scale=60.0).to("cuda")
        loss = make_loss("spikemax", ts=1.0, window=5.0)
        opt = make_optimizer("adam", net.parameters(), lr=0.01)
        with dev.math_settings(gemm=backend):
            out = net.forward(dev.to_device(x), train=True)
            _, g = loss.value_and_grad(out, y)
            net.zero_grad()
            net.backward(g)
            opt.step()
        grads[backend] = ([dev.to_host(s) for _, s in net.layer_spikes], [dev.to_host(p.grad) for p in net.parameters()])
    for a, b in zip(grads["numba"][0], grads["cublas"][0]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(grads["numba"][1], grads["cublas"][1]):
        assert_close(b, a, np.float64, "gradient")
