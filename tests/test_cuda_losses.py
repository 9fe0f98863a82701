"""CUDA losses (pysrm.losses_cuda) against the CPU losses, on tiny shapes.

Run with ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_losses.py`` (skipped
without the simulator or a GPU).  Values and gradients must match the CPU
loss: float64 1e-10 and float32 1e-5 relative to the largest magnitude.
"""
import os

import numpy as np
import pytest

from pysrm.backend import cuda_available

pytestmark = pytest.mark.skipif(not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda_available()),
                                reason="needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")

from pysrm.losses import make_loss, window_counts  # noqa: E402
from cuda_helpers import assert_close, tol  # noqa: E402


@pytest.fixture(scope="module")
def dev():
    from pysrm import cuda
    return cuda


@pytest.fixture(scope="module")
def LC():
    from pysrm import losses_cuda
    return losses_cuda


def _spikes(rng, shape, ts, dtype, p=0.3):
    return (np.where(rng.random(shape) < p, 1.0 / ts, 0.0)).astype(dtype)


CASES = [
    ("spike-rate", {"true_rate": 0.5, "false_rate": 0.1}),
    ("spikemax", {"window": 3.0}),
    ("spikemax-g", {}),
    ("spikemax-s", {}),
    ("num-spikes", {"t_start": 2.0, "t_stop": 7.0, "true_count": 3.0, "false_count": 1.0}),
    ("spike-time", {}),
]


@pytest.mark.parametrize("name,opts", CASES)
@pytest.mark.parametrize("grad", ["exact", "paper"])
@pytest.mark.parametrize("dtype,shape", [(np.float32, (3, 4, 1, 1, 10)), (np.float64, (2, 3, 2, 1, 10))])
def test_loss_value_and_grad_match_cpu(dev, LC, name, opts, grad, dtype, shape):
    rng = np.random.default_rng([len(name), len(opts), len(grad), shape[0]])
    ts = 1.0
    loss = make_loss(name, ts=ts, grad=grad, **opts)
    s = _spikes(rng, shape, ts, dtype)
    s[0, 1] = 0.0  # a silent class
    target = _spikes(rng, shape, ts, dtype) if name == "spike-time" else rng.integers(0, shape[1], shape[0])
    v_cpu, g_cpu = loss.value_and_grad(s, target)
    ds = dev.to_device(s)
    tgt = dev.to_device(target) if name == "spike-time" else target
    v, g = loss.value_and_grad(ds, tgt)  # the public API dispatches device arrays to losses_cuda
    assert isinstance(v, float)
    assert abs(v - v_cpu) <= tol(dtype) * max(1.0, abs(v_cpu)), (v, v_cpu)
    assert g.dtype == dtype and tuple(g.shape) == s.shape
    assert_close(g, g_cpu, dtype, f"{name} ({grad}) gradient")
    assert abs(loss.value(ds, tgt) - loss.value(s, target)) <= tol(dtype) * max(1.0, abs(v_cpu))


def test_device_labels_async_value_and_window_counts(dev, LC):
    rng = np.random.default_rng(3)
    s = _spikes(rng, (2, 3, 1, 1, 9), 0.5, np.float32)
    y = np.array([2, 0])
    loss = make_loss("spikemax", ts=0.5, window=2.0)
    v_cpu, g_cpu = loss.value_and_grad(s, y)
    pending, g = LC.value_and_grad(loss, dev.to_device(s), dev.to_device(y), sync=False)
    assert isinstance(pending, LC.PendingLoss)
    assert abs(float(pending) - v_cpu) <= 1e-10 * max(1.0, abs(v_cpu))
    assert_close(g, g_cpu, np.float32, "spikemax gradient (device labels)")
    assert_close(LC.window_counts(dev.to_device(s), 3, 0.5), window_counts(s, 3, 0.5), np.float64, "window counts")
    assert_close(LC.class_counts(dev.to_device(s), 0.5), s.sum(axis=(2, 3, 4)) * 0.5, np.float64, "class counts")


def test_errors_match_cpu(dev, LC):
    s = np.zeros((2, 3, 1, 1, 6))
    s[0, 0, 0, 0, 1] = -5.0
    loss = make_loss("spikemax-g", ts=1.0)
    with pytest.raises(ValueError, match="count \\+ eps <= 0"):
        loss.value_and_grad(s, np.array([0, 1]))
    with pytest.raises(ValueError, match="count \\+ eps <= 0"):
        LC.value_and_grad(loss, dev.to_device(s), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must lie in"):
        LC.value_and_grad(loss, dev.to_device(np.abs(s)), np.array([0, 3]))
    with pytest.raises(ValueError, match="longer than the simulation"):
        LC.value_and_grad(make_loss("spikemax", ts=1.0, window=8.0), dev.to_device(np.abs(s)), np.array([0, 1]))
    with pytest.raises(TypeError, match="device array"):
        LC.value_and_grad(loss, s, np.array([0, 1]))
