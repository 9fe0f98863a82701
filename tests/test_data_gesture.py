"""DVS Gesture: AEDAT 3.1 recordings + label CSVs + trial lists written by a test writer."""
import pathlib
import struct
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import DataLoader, load_dataset  # noqa: E402
from pysrm.data.dvs_gesture import CLASS_NAMES  # noqa: E402
from pysrm.params import SimParams  # noqa: E402


def write_aedat(path, x, y, p, t, packet=7):
    """Independent AEDAT 3.1 writer: header lines, a special-event packet, polarity packets."""
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017\r\n#!END-HEADER\r\n")
        f.write(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 0, 0))  # special event
        for s in range(0, len(t), packet):
            idx = range(s, min(len(t), s + packet))
            f.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, len(idx), len(idx), len(idx)))
            for k in idx:
                f.write(struct.pack("<Ii", (int(x[k]) << 17) | (int(y[k]) << 2) | (int(p[k]) << 1) | 1, int(t[k])))


def make_gesture_dir(root, rng, trials=None):
    """Three recordings: two train users, one test user; each with labelled gestures."""
    trials = trials or {"user01_fluorescent": [(1, 1_000_000, 3_000_000), (5, 3_500_000, 5_000_000)],
                        "user02_lab": [(11, 200_000, 2_200_000)],
                        "user24_led": [(3, 500_000, 2_600_000), (10, 3_000_000, 3_400_000)]}
    truth = {}
    for name, gestures in trials.items():
        t = np.sort(rng.integers(0, 6_000_000, 3000))
        x, y, p = rng.integers(0, 128, 3000), rng.integers(0, 128, 3000), rng.integers(0, 2, 3000)
        write_aedat(root / f"{name}.aedat", x, y, p, t)
        with open(root / f"{name}_labels.csv", "w") as f:
            f.write("class,startTime_usec,endTime_usec\n")
            for c, s, e in gestures:
                f.write(f"{c},{s},{e}\n")
        truth[name] = (x, y, p, t, gestures)
    train = [n for n in trials if int(n[4:6]) <= 23]  # users 1-23 train, 24-29 test
    (root / "trials_to_train.txt").write_text("".join(f"{n}.aedat\n" for n in train) + "\n")
    (root / "trials_to_test.txt").write_text("".join(f"{n}.aedat\n" for n in trials if n not in train))
    return truth


def test_gesture_samples_and_labels(tmp_path):
    truth = make_gesture_dir(tmp_path, np.random.default_rng(0))
    tr = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    assert len(tr) == 3 and tr.n_classes == 11 and tr.sensor_shape == (2, 128, 128)
    np.testing.assert_array_equal(tr.labels, [0, 4, 10])
    assert tr.class_names[10] == "other_gestures" and CLASS_NAMES[0] == "hand_clapping"
    assert tr.sim == SimParams(1.0, 300.0) and tr.random_window
    x, y, p, t, g = truth["user01_fluorescent"]
    sel = (t >= g[1][1]) & (t < g[1][2])
    ev = tr.events(1)
    np.testing.assert_array_equal(ev["t"], t[sel] - g[1][1])  # relative to the gesture start
    np.testing.assert_array_equal(ev["x"], x[sel])
    np.testing.assert_array_equal(ev["p"], p[sel])
    assert tr.n_parsed == 1  # one recording parsed for both of its gestures
    tr.events(0)
    assert tr.n_parsed == 1
    assert tr.duration_us(1) == 1_500_000
    te = load_dataset("dvs-gesture", "test", data_dir=tmp_path)
    assert len(te) == 2 and te.sim == SimParams(1.0, 1500.0) and not te.random_window
    np.testing.assert_array_equal(te.labels, [2, 9])


def test_windows(tmp_path):
    make_gesture_dir(tmp_path, np.random.default_rng(1))
    tr = load_dataset("dvs-gesture", "train", data_dir=tmp_path, sim=SimParams(1.0, 300.0))
    # random 300 ms windows inside the 2 s gesture, reproducible from the rng
    starts = [tr.window_start(0, np.random.default_rng(s)) for s in range(20)]
    assert all(0 <= s <= 2_000_000 - 300_000 for s in starts) and len(set(starts)) > 10
    assert starts[3] == tr.window_start(0, np.random.default_rng(3))
    assert tr.window_start(0) == 0  # no rng: window at the gesture start
    w0 = tr.window_start(0, np.random.default_rng(7))
    x = tr.sample(0, rng=np.random.default_rng(7))
    ev = tr.events(0)

    def keys(ev, t0, ts, n_t):  # expected (neuron, bin) pairs, SLAYER binning, OR-merged, sorted
        b = np.round((ev["t"] - t0) / 1000.0 / ts)
        keep = (b >= 0) & (b < n_t)
        neuron = (ev["p"].astype(np.int64) * 128 + ev["y"]) * 128 + ev["x"]
        return np.unique(neuron[keep] * n_t + b[keep].astype(np.int64))

    np.testing.assert_array_equal(x.neuron.astype(np.int64) * 300 + x.time, keys(ev, w0, 1.0, 300))
    # test split: the first window ms of each gesture
    te = load_dataset("dvs-gesture", "test", data_dir=tmp_path, sim=SimParams(2.0, 1500.0))
    assert te.window_start(0, np.random.default_rng(0)) == 0
    x = te.sample(0)
    assert x.shape == (1, 2, 128, 128, 750)
    np.testing.assert_array_equal(x.neuron.astype(np.int64) * 750 + x.time, keys(te.events(0), 0, 2.0, 750))
    # loader: the per-epoch windows are a function of (seed, epoch)
    l1 = DataLoader(tr, batch_size=3, shuffle=False, seed=4)
    a = next(iter(l1))[0]
    l1.set_epoch(0)
    b2 = next(iter(l1))[0]
    for f in ("offsets", "neuron", "time"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b2, f))


def test_downsample_to_32(tmp_path):
    make_gesture_dir(tmp_path, np.random.default_rng(2))
    tr = load_dataset("dvs-gesture", "train", data_dir=tmp_path, downsample=4)
    assert tr.sensor_shape == (2, 32, 32) and tr.native_shape == (2, 128, 128)
    assert tr.sample(0).shape == (1, 2, 32, 32, 300)


def test_dvsgesture_subfolder_and_missing_files(tmp_path):
    sub = tmp_path / "DvsGesture"
    sub.mkdir()
    make_gesture_dir(sub, np.random.default_rng(3))
    assert len(load_dataset("dvs-gesture", "train", data_dir=tmp_path)) == 3
    (sub / "user02_lab_labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"user02_lab_labels\.csv"):
        load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    (sub / "trials_to_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing split file .*trials_to_test\.txt.*pysrm data fetch"):
        load_dataset("dvs-gesture", "test", data_dir=sub)
    (sub / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser09_gone.aedat\n")
    with pytest.raises(FileNotFoundError, match=r"lists user09_gone\.aedat"):
        load_dataset("dvs-gesture", "train", data_dir=sub)
    with pytest.raises(FileNotFoundError, match="dvs-gesture data not found"):
        load_dataset("dvs-gesture", "train", data_dir=tmp_path / "nope")


def test_unknown_class_and_corrupt_recording(tmp_path):
    rng = np.random.default_rng(4)
    make_gesture_dir(tmp_path, rng, {"user01_a": [(12, 0, 1_000_000)]})
    with pytest.raises(ValueError, match=r"user01_a_labels\.csv: unknown class 12.*expected classes 1..11"):
        load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    make_gesture_dir(tmp_path, rng, {"user01_a": [(1, 0, 1_000_000)], "user24_b": [(2, 0, 1_000_000)]})
    raw = (tmp_path / "user01_a.aedat").read_bytes()
    (tmp_path / "user01_a.aedat").write_bytes(raw[:-3])
    ds = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"user01_a\.aedat: truncated AEDAT packet"):
        ds.sample(0)


def test_empty_gesture_and_out_of_range(tmp_path):
    rng = np.random.default_rng(5)
    make_gesture_dir(tmp_path, rng, {"user01_a": [(1, 7_000_000, 8_000_000)], "user24_b": [(2, 0, 1_000_000)]})
    ds = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"user01_a\.aedat \(gesture 0 at 7000000\.\.8000000 us\): empty sample"):
        ds.events(0)
    write_aedat(tmp_path / "user01_a.aedat", [5, 130, 6], [5, 5, 200], [1, 1, 0], [7_000_100, 7_000_200, 7_000_300])
    ds = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"2 of 3 event\(s\) lie outside the sensor \(2, 128, 128\)"):
        assert ds.events(0).size == 1
    assert ds.stats["out_of_range"] == 2


def test_empty_middle_gesture_leaves_the_reader_consistent(tmp_path):
    """Issue 16: a recording with three labelled windows, the middle one without events.  Reading
    gesture 0 raised the error meant for gesture 1 on the first call and worked on the second,
    gesture 2 always raised, and the parse statistics grew on every call."""
    t = np.array([100_000, 200_000, 300_000, 2_100_000, 2_200_000])
    write_aedat(tmp_path / "user01_a.aedat", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [0, 1, 0, 1, 0], t)
    (tmp_path / "user01_a_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n1,0,1000000\n2,1000000,2000000\n3,2000000,3000000\n")
    (tmp_path / "trials_to_train.txt").write_text("user01_a.aedat\n")
    ds = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    for _ in range(3):
        assert ds.events(0)["x"].tolist() == [1, 2, 3]
        with pytest.raises(ValueError, match=r"user01_a\.aedat \(gesture 1 at 1000000\.\.2000000 us\): empty sample"):
            ds.events(1)
        assert ds.events(2)["x"].tolist() == [4, 5]
        assert ds.stats["files_parsed"] == 1 and ds.stats["events_parsed"] == 5
    assert ds.empty_samples() == [1]
    fresh = load_dataset("dvs-gesture", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"gesture 1 at"):
        fresh.events(1)  # asking for the empty one first: the others still read
    assert fresh.events(2).size == 2 and fresh.events(0).size == 3 and fresh.stats["files_parsed"] == 1
