"""Binning of events into spike tensors: bin-by-bin agreement with SLAYER-PyTorch's toSpikeTensor."""
import pathlib
import sys
import warnings

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import EVENT_DTYPE, bin_events, binned_shape, from_arrays, make_events  # noqa: E402
from pysrm.params import SimParams  # noqa: E402


def slayer_to_spike_tensor(ev, shape, ts):
    """Re-implementation of SLAYER's ``event.toSpikeTensor(..., binningMode='OR')`` (2-D, no random shift).

    SLAYER stores ``t`` in ms (``t_us / 1000``) and uses ``np.round(t / samplingTime)``.
    """
    c, h, w, n_t = shape
    out = np.zeros(shape, dtype=np.float32)
    x, y, p = (np.round(ev[k]).astype(int) for k in "xyp")
    t = np.round((ev["t"] / 1000) / ts).astype(int)
    valid = (x < w) & (y < h) & (p < c) & (t < n_t) & (x >= 0) & (y >= 0) & (p >= 0) & (t >= 0)
    out[p[valid], y[valid], x[valid], t[valid]] = 1 / ts
    return out


def random_events(rng, n, w, h, tmax_us):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, tmax_us, n)),
                       rng.integers(0, 2, n))


@pytest.mark.parametrize("ts,t_sample", [(1.0, 50.0), (0.5, 20.0), (2.0, 60.0), (5.0, 100.0)])
def test_matches_slayer_bin_by_bin(ts, t_sample):
    rng = np.random.default_rng(int(ts * 10))
    sim = SimParams(ts, t_sample)
    ev = random_events(rng, 3000, 9, 7, int(t_sample * 1000 * 1.2))  # some events beyond t_sample
    # exact rounding ties (x.5 bins) must follow numpy's half-to-even like SLAYER
    ties = make_events([1, 2, 3, 4], [1, 1, 1, 1], [int(500 * ts), int(1500 * ts), int(2500 * ts), 0], [1, 1, 0, 0])
    ev = np.concatenate([ev, ties])
    stats = {}
    se = bin_events(ev, (2, 7, 9), sim, stats=stats)
    assert se.shape == (1, 2, 7, 9, sim.n_bins) and se.dtype == np.float32
    ref = slayer_to_spike_tensor(ev, (2, 7, 9, sim.n_bins), ts)
    np.testing.assert_array_equal(se.to_dense()[0], ref)
    n_crop = int(np.count_nonzero(np.round(ev["t"] / 1000 / ts) >= sim.n_bins))
    assert n_crop > 0 and stats["cropped"] == n_crop


def test_or_binning_one_spike_per_bin():
    sim = SimParams(1.0, 10.0)
    ev = make_events([0, 0, 0, 1], [0, 0, 0, 0], [1000, 1200, 1400, 1000], [1, 1, 1, 1])
    se = bin_events(ev, (2, 1, 2), sim)
    d = se.to_dense()[0]
    assert se.n_events == 2
    assert d[1, 0, 0, 1] == 1.0 and d[1, 0, 1, 1] == 1.0 and d.sum() == 2.0
    # amplitude is 1/Ts
    se = bin_events(ev, (2, 1, 2), SimParams(0.5, 10.0), dtype=np.float64)
    assert se.dtype == np.float64 and np.all(se.value == 2.0)


def test_events_sorted_by_neuron_then_time():
    rng = np.random.default_rng(0)
    ev = random_events(rng, 500, 5, 5, 30_000)
    se = bin_events(ev, (2, 5, 5), SimParams(1.0, 30.0))
    key = se.neuron.astype(np.int64) * 30 + se.time
    assert np.all(np.diff(key) > 0)


def test_layout_p_y_x():
    ev = make_events([3], [1], [2000], [1])  # x=3, y=1, p=1, t=2 ms
    d = bin_events(ev, (2, 4, 5), SimParams(1.0, 5.0)).to_dense()[0]
    assert d[1, 1, 3, 2] == 1.0 and d.sum() == 1.0


def test_out_of_sensor_error_or_counted_warning():
    ev = make_events([1, 40, 2, 5], [1, 1, 50, 2], [0, 1000, 2000, 3000], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"2 of 4 event\(s\) lie outside the sensor \(2, 34, 34\)"):
        bin_events(ev, (2, 34, 34), SimParams(1.0, 10.0), name="sample.bs2")
    stats = {}
    with pytest.warns(UserWarning, match=r"sample\.bs2: 2 of 4 event\(s\).*dropped"):
        se = bin_events(ev, (2, 34, 34), SimParams(1.0, 10.0), out_of_range="warn", stats=stats, name="sample.bs2")
    assert se.n_events == 2 and stats["out_of_range"] == 2
    ev = make_events([1], [1], [0], [2])  # polarity 2 on a 2-channel sensor
    with pytest.raises(ValueError, match="outside the sensor"):
        bin_events(ev, (2, 34, 34), SimParams(1.0, 10.0))


def test_downsample():
    ev = make_events([0, 1, 2, 3, 4], [0, 1, 0, 3, 4], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1])
    assert binned_shape((2, 5, 5), 2) == (2, 3, 3)
    se = bin_events(ev, (2, 5, 5), SimParams(1.0, 4.0), downsample=2)
    d = se.to_dense()[0]
    assert d.shape == (2, 3, 3, 4)
    # (0,0) and (1,1) merge into one spike; (2,0)->(1,0); (3,3)->(1,1); (4,4)->(2,2)
    assert d[1, 0, 0, 0] == 1 and d[1, 0, 1, 0] == 1 and d[1, 1, 1, 0] == 1 and d[1, 2, 2, 0] == 1
    assert d.sum() == 4


def test_shift_drops_and_counts():
    ev = make_events([0, 5, 9], [0, 5, 9], [0, 0, 0], [0, 0, 0])
    stats = {}
    se = bin_events(ev, (2, 10, 10), SimParams(1.0, 2.0), shift=(2, -1), stats=stats)
    d = se.to_dense()[0]
    assert d[0, 4, 7, 0] == 1 and d.sum() == 1  # (5,5)->(7,4); (0,0)->(2,-1) and (9,9)->(11,8) fall off
    assert stats["shifted_out"] == 2


def test_address_layout():
    ev = make_events([0, 63, 63, 10], 0, [0, 1000, 1100, 2000], 1)
    se = bin_events(ev, (64, 1, 1), SimParams(1.0, 5.0), layout="address")
    d = se.to_dense()[0]
    assert d.shape == (64, 1, 1, 5)
    assert d[0, 0, 0, 0] == 1 and d[63, 0, 0, 1] == 1 and d[10, 0, 0, 2] == 1 and d.sum() == 3
    assert binned_shape((64, 1, 1), 4, "address") == (16, 1, 1)
    with pytest.raises(ValueError, match="outside the sensor"):
        bin_events(make_events([64], 0, [0], 1), (64, 1, 1), SimParams(1.0, 5.0), layout="address")
    with pytest.raises(ValueError, match=r"layout 'address' needs sensor_shape \(C, 1, 1\)"):
        bin_events(ev, (64, 2, 1), SimParams(1.0, 5.0), layout="address")


def test_window_start():
    ev = make_events([1, 1, 1], [0, 0, 0], [500, 10_000, 12_600], [0, 0, 0])
    stats = {}
    d = bin_events(ev, (2, 1, 2), SimParams(1.0, 5.0), t_start=10_000, stats=stats).to_dense()[0]
    assert d[0, 0, 1, 0] == 1 and d[0, 0, 1, 3] == 1 and d.sum() == 2  # 12.6 ms - 10 ms -> bin 3
    assert stats["cropped"] == 1  # the event before the window


def test_empty_and_bad_arguments():
    empty = np.empty(0, dtype=EVENT_DTYPE)
    se = bin_events(empty, (2, 3, 3), SimParams(1.0, 5.0))
    assert se.n_events == 0 and se.shape == (1, 2, 3, 3, 5)
    with pytest.raises(TypeError, match="SimParams"):
        bin_events(empty, (2, 3, 3), {"ts": 1.0})
    with pytest.raises(ValueError, match="layout"):
        bin_events(empty, (2, 3, 3), SimParams(1.0, 5.0), layout="xy")
    with pytest.raises(ValueError, match="downsample"):
        binned_shape((2, 3, 3), 0)


def test_from_arrays_dataset():
    rng = np.random.default_rng(1)
    raw = []
    for _ in range(6):
        a = np.zeros(50, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
        a["x"], a["y"] = rng.integers(0, 8, 50), rng.integers(0, 6, 50)
        a["t"], a["p"] = np.sort(rng.integers(0, 20_000, 50)), rng.integers(0, 2, 50)
        raw.append(a)
    ds = from_arrays(raw, [0, 1, 2, 0, 1, 2], sensor_shape=(2, 6, 8), sim=SimParams(1.0, 20.0))
    assert len(ds) == 6 and ds.n_classes == 3 and ds.sensor_shape == (2, 6, 8) and ds.n_parsed == 0
    assert ds.labels.dtype == np.int64
    x = ds.sample(2)
    ref = slayer_to_spike_tensor(ds.events(2), (2, 6, 8, 20), 1.0)
    np.testing.assert_array_equal(x.to_dense()[0], ref)
    # inferred sensor shape
    assert from_arrays(raw, [0] * 6).sensor_shape[0] == 2
    with pytest.raises(ValueError, match="one label per sample"):
        from_arrays(raw, [0, 1])
    bad = raw[0].copy()
    bad["x"][0] = 9
    with pytest.raises(ValueError, match=r"events\[0\]: 1 of 50 event\(s\) lie outside"):
        from_arrays([bad], [0], sensor_shape=(2, 6, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="dropped"):
            from_arrays([bad], [0], sensor_shape=(2, 6, 8), out_of_range="warn")
    with pytest.raises(ValueError, match="empty sample"):
        from_arrays([raw[0][:0]], [0], sensor_shape=(2, 6, 8))
