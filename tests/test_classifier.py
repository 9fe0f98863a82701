"""Tests of pysrm.classifier against brute-force NumPy references."""
import numpy as np
import pytest

from pysrm.classifier import accuracy_vs_time, latency, predict, predict_window, spike_counts_per_layer


# --------------------------------------------------------------------------- references

def ref_predict_counts(c):
    """Arg-max with ties to the lowest index, by loops; c is (N, C)."""
    out = []
    for row in c:
        best = 0
        for i in range(1, len(row)):
            if row[i] > row[best]:
                best = i
        out.append(best)
    return np.array(out)


def ref_class_counts(s, t0, t1):
    """Population counts of bins t0..t1 (inclusive), shape (N, C), in spikes * (1/Ts)."""
    N, C, T = s.shape[0], s.shape[1], s.shape[-1]
    return s.reshape(N, C, -1, T)[..., t0:t1 + 1].sum(axis=(2, 3))


def spikes(rng, shape, ts=1.0, p=0.3):
    return ((rng.random(shape) < p) / ts).astype(np.float32)


# --------------------------------------------------------------------------- predict

def test_predict_matches_reference():
    rng = np.random.default_rng(0)
    for shape in [(6, 4, 12), (5, 3, 1, 1, 9), (4, 3, 2, 2, 7)]:
        s = spikes(rng, shape)
        expected = ref_predict_counts(ref_class_counts(s, 0, shape[-1] - 1))
        pred = predict(s)
        assert pred.dtype == np.int64 and pred.shape == (shape[0],)
        np.testing.assert_array_equal(pred, expected)
        np.testing.assert_array_equal(predict(s.astype(np.float64)), expected)


def test_predict_ties_go_to_lowest_index():
    s = np.zeros((3, 4, 1, 1, 6))
    s[0, 2, ..., [0, 3]] = 1.0
    s[0, 1, ..., [1, 5]] = 1.0    # classes 1 and 2 tie with 2 spikes -> 1
    s[1, 3, ..., 0] = 1.0          # single winner -> 3
    # sample 2 silent -> all tie -> 0
    np.testing.assert_array_equal(predict(s), [1, 3, 0])


def test_predict_ties_survive_rounding():
    # Mathematically equal counts whose float sums differ in the last bit: (0.3+0.2)+0.1 < (0.1+0.2)+0.3.
    s = np.zeros((1, 2, 3))
    s[0, 0] = [0.3, 0.2, 0.1]
    s[0, 1] = [0.1, 0.2, 0.3]
    assert s[0, 0].cumsum()[-1] != s[0, 1].cumsum()[-1]
    assert predict(s)[0] == 0
    assert predict(s[:, ::-1].copy())[0] == 0
    np.testing.assert_array_equal(predict_window(s, 3)[0, -1], 0)


def test_predict_window_matches_reference():
    rng = np.random.default_rng(1)
    s = spikes(rng, (4, 3, 1, 1, 10))
    for wb in (1, 3, 10):
        pred = predict_window(s, wb)
        assert pred.shape == (4, 10)
        for t in range(10):
            expected = ref_predict_counts(ref_class_counts(s, max(0, t - wb + 1), t))
            np.testing.assert_array_equal(pred[:, t], expected)
    np.testing.assert_array_equal(predict_window(s, 10)[:, -1], predict(s))
    with pytest.raises(ValueError, match=r"window_bins must lie in 1..10"):
        predict_window(s, 11)
    with pytest.raises(TypeError, match="window_bins must be an integer"):
        predict_window(s, 2.0)


# --------------------------------------------------------------------------- accuracy vs time

def test_accuracy_vs_time_matches_brute_force():
    rng = np.random.default_rng(2)
    ts = 0.5
    s = spikes(rng, (8, 3, 1, 1, 12), ts)
    y = rng.integers(0, 3, 8)
    times, acc = accuracy_vs_time(s, y, ts)
    np.testing.assert_allclose(times, np.arange(12) * ts)
    for k in range(12):
        pred = ref_predict_counts(ref_class_counts(s, 0, k))
        assert acc[k] == pytest.approx(np.mean(pred == y))
    assert acc[-1] == pytest.approx(np.mean(predict(s) == y))


def test_accuracy_vs_time_label_errors():
    s = np.zeros((2, 3, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="found label 3"):
        accuracy_vs_time(s, np.array([0, 3]), 1.0)
    with pytest.raises(ValueError, match="ts must be > 0"):
        accuracy_vs_time(s, np.array([0, 1]), 0.0)


def test_latency():
    times = np.arange(6) * 2.0
    acc = np.array([0.0, 0.3, 0.5, 0.99, 0.98, 1.0])
    assert latency(times, acc) == 6.0
    assert latency(times, acc, fraction=1.0) == 10.0
    assert latency(times, acc, fraction=0.5) == 4.0
    assert latency(times, np.zeros(6)) == 0.0
    with pytest.raises(ValueError, match="fraction must lie in"):
        latency(times, acc, fraction=1.5)
    with pytest.raises(ValueError, match="acc has shape"):
        latency(times, acc[:3])


# --------------------------------------------------------------------------- spike counts per layer

def test_spike_counts_per_layer():
    rng = np.random.default_rng(3)
    ts = 0.5
    layers = [("conv1", spikes(rng, (4, 2, 3, 3, 8), ts)), ("fc", spikes(rng, (4, 5, 1, 1, 8), ts))]
    out = spike_counts_per_layer(layers, ts)
    assert list(out) == ["conv1", "fc"]
    for name, s in layers:
        expected = np.mean([ts * s[n].astype(np.float64).sum() for n in range(4)])
        assert out[name] == pytest.approx(expected, rel=1e-12)
        assert isinstance(out[name], float)
    assert spike_counts_per_layer(dict(layers), ts) == out
    with pytest.raises(ValueError, match="appears twice"):
        spike_counts_per_layer(layers + [layers[0]], ts)
    with pytest.raises(TypeError, match=r"layer_spikes\[0\] must be a \(layer_name, spikes\) pair"):
        spike_counts_per_layer([layers[0][1]], ts)
