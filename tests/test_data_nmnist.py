"""N-MNIST: the shared real NMNISTsmall samples, the official layout, caching and bad input."""
import os
import pathlib
import shutil
import sys
import time
import warnings

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pysrm.data.nmnist as nmnist_mod  # noqa: E402
from pysrm.data import NMNIST, DataLoader, load_dataset  # noqa: E402
from pysrm.params import SimParams  # noqa: E402

SMALL = pathlib.Path(os.environ.get("PYSRM_NMNIST_SMALL", REPO.parent / "shared" / "data" / "NMNISTsmall"))
needs_small = pytest.mark.skipif(not (SMALL / "train1K.txt").is_file(), reason=f"NMNISTsmall not found at {SMALL}")


def write_bin(path, x, y, p, t):
    """Independent N-MNIST writer (per event; no overflow needed for t < 2**23)."""
    with open(path, "wb") as f:
        for xi, yi, pi, ti in zip(x, y, p, t):
            f.write(bytes([xi, yi, (pi << 7) | (ti >> 16), (ti >> 8) & 0xFF, ti & 0xFF]))


def slayer_dense(ev, shape, ts):
    c, h, w, n_t = shape
    out = np.zeros(shape, dtype=np.float32)
    t = np.round((ev["t"] / 1000) / ts).astype(int)
    v = t < n_t
    out[ev["p"][v].astype(int), ev["y"][v].astype(int), ev["x"][v].astype(int), t[v]] = 1 / ts
    return out


# ----------------------------------------------------------------------------- real NMNISTsmall
@needs_small
def test_small_counts_labels_and_known_values():
    tr = load_dataset("nmnist", "train", data_dir=SMALL)
    te = load_dataset("nmnist", "test", data_dir=SMALL)
    assert (len(tr), len(te)) == (1000, 100)
    assert tr.n_classes == 10 and tr.sensor_shape == (2, 34, 34) and tr.sim == SimParams(1.0, 350.0)
    assert tr.labels.dtype == np.int64
    np.testing.assert_array_equal(tr.labels[:5], [5, 0, 4, 1, 9])
    np.testing.assert_array_equal(te.labels[:4], [7, 2, 1, 0])
    np.testing.assert_array_equal(np.bincount(tr.labels), [97, 116, 99, 93, 105, 92, 94, 117, 87, 100])
    ev = tr.events(0)  # 1.bs2
    assert ev.size == 4681
    np.testing.assert_array_equal(ev["x"][:5], [18, 20, 17, 9, 7])
    np.testing.assert_array_equal(ev["y"][:5], [16, 17, 9, 9, 26])
    np.testing.assert_array_equal(ev["p"][:5], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(ev["t"][:5], [893, 1060, 2443, 2680, 2835])
    assert ev["t"].max() == 305924
    assert sum(tr.events(i).size for i in range(len(tr))) == 4133231
    assert sum(te.events(i).size for i in range(len(te))) == 385596
    assert tr.stats["out_of_range"] == 0 and tr.stats["overflow_markers"] == 0


@needs_small
@pytest.mark.parametrize("ts,t_sample", [(1.0, 350.0), (2.0, 300.0)])
def test_small_bins_match_slayer(ts, t_sample):
    sim = SimParams(ts, t_sample)
    ds = load_dataset("nmnist", "train", data_dir=SMALL, sim=sim)
    for i in (0, 1, 137, 999):
        x = ds.sample(i)
        assert x.shape == (1, 2, 34, 34, sim.n_bins)
        np.testing.assert_array_equal(x.to_dense()[0], slayer_dense(ds.events(i), (2, 34, 34, sim.n_bins), ts))
    x0 = ds.sample(0)
    assert np.all(x0.value == np.float32(1 / ts))
    # a known value: sample 0's first event (x=18, y=16, ON, 0.893 ms) is a spike in bin round(0.893/ts)
    d = x0.to_dense()[0]
    assert d[1, 16, 18, int(np.round(0.893 / ts))] == np.float32(1 / ts)


@needs_small
def test_small_cold_load_fast_and_second_epoch_parses_nothing(monkeypatch):
    t0 = time.perf_counter()
    tr = load_dataset("nmnist", "train", data_dir=SMALL)
    te = load_dataset("nmnist", "test", data_dir=SMALL)
    n_spikes = 0
    for ds in (tr, te):
        for x, y in DataLoader(ds, batch_size=64, shuffle=True, seed=0):
            n_spikes += x.n_events
    cold = time.perf_counter() - t0
    assert cold < 5.0, f"cold load of 1,100 samples took {cold:.2f} s"
    assert tr.n_parsed == 1000 and te.n_parsed == 100
    assert n_spikes > 0

    def boom(*a, **k):
        raise AssertionError("file parsed again")

    monkeypatch.setattr(nmnist_mod, "read_nmnist_bin", boom)
    loader = DataLoader(tr, batch_size=64, shuffle=True, seed=0, augment=True)
    seen = sum(len(y) for _, y in loader)
    assert seen == 1000 and tr.n_parsed == 1000


@needs_small
def test_small_disk_cache(tmp_path, monkeypatch):
    a = load_dataset("nmnist", "test", data_dir=SMALL, cache_dir=tmp_path)
    ev5 = a.events(5).copy()
    assert a.n_parsed == 100
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (d / "events.npy").is_file() and (d / "offsets.npy").is_file()

    def boom(*a, **k):
        raise AssertionError("file parsed again")

    monkeypatch.setattr(nmnist_mod, "read_nmnist_bin", boom)
    b = load_dataset("nmnist", "test", data_dir=SMALL, cache_dir=tmp_path)
    assert (b.events(5) == ev5).all() and b.n_parsed == 0
    for x, y in DataLoader(b, batch_size=50):
        pass
    assert b.n_parsed == 0


@needs_small
def test_small_jitter_augmentation():
    ds = load_dataset("nmnist", "train", data_dir=SMALL, jitter=2)
    rng = np.random.default_rng(0)
    base = ds.sample(3).to_dense()[0]
    shifted = [ds.sample(3, rng=rng, augment=True).to_dense()[0] for _ in range(8)]
    assert any(not np.array_equal(s, base) for s in shifted)
    for s in shifted:  # a shift of at most 2 pixels: per-pixel totals match some shifted version of base
        tot, ref = s.sum(axis=(0, 3)), base.sum(axis=(0, 3))
        ok = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                r = np.zeros_like(ref)
                ys, xs = slice(max(dy, 0), 34 + min(dy, 0)), slice(max(dx, 0), 34 + min(dx, 0))
                r[ys, xs] = ref[max(-dy, 0):34 - max(dy, 0), max(-dx, 0):34 - max(dx, 0)]
                ok |= np.array_equal(r, tot)
        assert ok
    # no augmentation unless asked
    assert np.array_equal(ds.sample(3, rng=rng).to_dense()[0], base)


@needs_small
def test_small_list_file_option_and_auto_choice(tmp_path):
    ds = load_dataset("nmnist", "train", data_dir=SMALL, list_file="test100.txt")
    assert len(ds) == 100
    with pytest.raises(FileNotFoundError, match="train60k.txt"):
        load_dataset("nmnist", "train", data_dir=SMALL, list_file="train60k.txt")
    for f in ("1.bs2", "2.bs2", "3.bs2"):
        shutil.copy(SMALL / f, tmp_path / f)
    (tmp_path / "train2.txt").write_text("#sample #class\n1 5\n2 0\n")
    (tmp_path / "train3.txt").write_text("#sample #class\n1 5\n2 0\n3 4\n")
    with pytest.warns(UserWarning, match="using train3.txt"):
        ds = load_dataset("nmnist", "train", data_dir=tmp_path)
    assert len(ds) == 3


# ----------------------------------------------------------------------------- official layout
def make_official(root, rng, per_class=2, classes=(0, 1, 2), splits=("Train", "Test")):
    truth = {}
    for split in splits:
        for c in classes:
            d = root / split / str(c)
            d.mkdir(parents=True)
            for k in range(per_class):
                n = 20 + 5 * k + c
                x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
                t = np.sort(rng.integers(0, 300_000, n))
                write_bin(d / f"{k:05d}.bin", x, y, p, t)
                truth[(split, c, k)] = (x, y, p, t)
    return truth


def test_official_layout(tmp_path):
    truth = make_official(tmp_path, np.random.default_rng(0))
    ds = load_dataset("nmnist", "train", data_dir=tmp_path)
    assert len(ds) == 6 and ds.list_file is None
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2])
    x, y, p, t = truth[("Train", 1, 1)]
    ev = ds.events(3)
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["t"], t)
    te = load_dataset("nmnist", "test", data_dir=tmp_path, sim=SimParams(1.0, 300.0))
    assert len(te) == 6 and te.sim.n_bins == 300
    np.testing.assert_array_equal(te.sample(0).to_dense()[0], slayer_dense(te.events(0), (2, 34, 34, 300), 1.0))


def test_official_layout_overflow_marker(tmp_path):
    d = tmp_path / "Train" / "7"
    d.mkdir(parents=True)
    # x, y, p, t: an overflow marker (y == 240) in the middle adds 2**13 us to later events
    with open(d / "a.bin", "wb") as f:
        for xi, yi, pi, ti in [(1, 2, 1, 100), (0, 240, 0, 0), (3, 4, 0, 50)]:
            f.write(bytes([xi, yi, (pi << 7) | (ti >> 16), (ti >> 8) & 0xFF, ti & 0xFF]))
    ds = NMNIST(tmp_path, "train")
    ev = ds.events(0)
    np.testing.assert_array_equal(ev["t"], [100, 50 + 8192])
    np.testing.assert_array_equal(ev["y"], [2, 4])
    assert ds.stats["overflow_markers"] == 1 and ds.labels[0] == 7


# ----------------------------------------------------------------------------- bad input
def test_missing_directory_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nmnist data not found at .*nowhere.*pysrm data fetch nmnist"):
        load_dataset("nmnist", "train", data_dir=tmp_path / "nowhere")
    make_official(tmp_path, np.random.default_rng(0), splits=("Train",))
    with pytest.raises(FileNotFoundError, match=r"no test split \(found the train split only\)"):
        load_dataset("nmnist", "test", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="Test/<digit>/\\*.bin"):
        load_dataset("nmnist", "test", data_dir=tmp_path)


def test_unknown_class_folder(tmp_path):
    make_official(tmp_path, np.random.default_rng(0), splits=("Train",))
    (tmp_path / "Train" / "cat").mkdir()
    with pytest.raises(ValueError, match=r"unknown class folder 'cat'; expected folders 0..9"):
        load_dataset("nmnist", "train", data_dir=tmp_path)


def _list_dir(tmp_path, lines, files):
    for i, (x, y, p, t) in files.items():
        write_bin(tmp_path / f"{i}.bs2", x, y, p, t)
    (tmp_path / "train_x.txt").write_text("#sample #class\n" + "".join(f"{a}\t{b}\n" for a, b in lines))


def test_list_layout_bad_input(tmp_path):
    ok = ([1, 2], [3, 4], [0, 1], [10, 20])
    _list_dir(tmp_path, [(1, 3), (2, 12)], {1: ok, 2: ok})
    with pytest.raises(ValueError, match=r"train_x\.txt: unknown class 12 for sample 2"):
        load_dataset("nmnist", "train", data_dir=tmp_path)
    _list_dir(tmp_path, [(1, 3), (9, 1)], {1: ok})
    with pytest.raises(FileNotFoundError, match=r"lists 1 sample\(s\) whose file is missing, e\.g\. .*9\.bs2"):
        load_dataset("nmnist", "train", data_dir=tmp_path)


def test_list_layout_corrupt_samples(tmp_path):
    ok = ([1, 2], [3, 4], [0, 1], [10, 20])
    _list_dir(tmp_path, [(1, 3), (2, 4), (3, 5), (4, 6)],
              {1: ok, 2: ok, 3: ([], [], [], []), 4: ([1, 40, 50], [3, 4, 2], [0, 1, 1], [10, 20, 30])})
    with open(tmp_path / "2.bs2", "ab") as f:
        f.write(b"\x00\x01")
    ds = load_dataset("nmnist", "train", data_dir=tmp_path)
    assert ds.events(0).size == 2
    with pytest.raises(ValueError, match=r"2\.bs2: truncated or corrupt .* 12 bytes is not a multiple"):
        ds.events(1)
    with pytest.raises(ValueError, match=r"3\.bs2: empty sample"):
        ds.events(2)
    with pytest.warns(UserWarning, match=r"4\.bs2: 2 of 3 event\(s\) lie outside the sensor \(2, 34, 34\)"):
        assert ds.events(3).size == 1
    assert ds.stats["out_of_range"] == 2
    strict = load_dataset("nmnist", "train", data_dir=tmp_path, out_of_range="error")
    with pytest.raises(ValueError, match=r"4\.bs2: 2 of 3 event\(s\) lie outside"):
        strict.events(3)


def test_index_errors(tmp_path):
    make_official(tmp_path, np.random.default_rng(0), splits=("Train",))
    ds = load_dataset("nmnist", "train", data_dir=tmp_path)
    assert (ds.events(-1) == ds.events(5)).all()
    with pytest.raises(IndexError, match="out of range"):
        ds.events(6)
    with pytest.raises(TypeError, match="integer"):
        ds.events(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.preload()
    assert ds.n_parsed == 6


# ----------------------------------------------------------------------------- cache keys (issue 16)
def test_disk_cache_is_keyed_by_path_and_never_serves_another_datasets_events(tmp_path):
    """Two list-layout folders whose files have the same names, sizes and modification times but
    other events: each gets its own cache folder (the key once held only base names, sizes and
    whole-second mtimes, so the second dataset was served the first one's events)."""
    cache = tmp_path / "cache"
    a, b = tmp_path / "a", tmp_path / "b"
    for root, xs in ((a, [1, 2, 3]), (b, [7, 8, 9])):
        root.mkdir()
        _list_dir(root, [(1, 3)], {1: (xs, [4, 5, 6], [0, 1, 0], [10, 20, 30])})
        os.utime(root / "1.bs2", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    da = load_dataset("nmnist", "train", data_dir=a, cache_dir=cache)
    db = load_dataset("nmnist", "train", data_dir=b, cache_dir=cache)
    assert da.cache_key() != db.cache_key()
    assert da.events(0)["x"].tolist() == [1, 2, 3]
    assert db.events(0)["x"].tolist() == [7, 8, 9]
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_disk_cache_sees_a_file_rewritten_within_the_same_second(tmp_path):
    """Same size, same whole-second mtime, other content: the nanosecond mtime is in the key."""
    cache = tmp_path / "cache"
    _list_dir(tmp_path, [(1, 3)], {1: ([1, 2], [4, 5], [0, 1], [10, 20])})
    t = 1_700_000_000_000_000_000
    os.utime(tmp_path / "1.bs2", ns=(t, t))
    assert load_dataset("nmnist", "train", data_dir=tmp_path, cache_dir=cache).events(0)["x"].tolist() == [1, 2]
    write_bin(tmp_path / "1.bs2", [5, 6], [4, 5], [0, 1], [10, 20])
    os.utime(tmp_path / "1.bs2", ns=(t + 500_000_000, t + 500_000_000))
    again = load_dataset("nmnist", "train", data_dir=tmp_path, cache_dir=cache)
    assert again.events(0)["x"].tolist() == [5, 6]
    assert "absolute path, size and modification time in nanoseconds" in " ".join(
        __import__("pysrm.data.base", fromlist=["x"]).__doc__.split())


def test_empty_sample_is_found_at_start_up_and_does_not_disturb_the_others(tmp_path):
    ok = ([1, 2], [3, 4], [0, 1], [10, 20])
    _list_dir(tmp_path, [(1, 3), (2, 4), (3, 5)], {1: ok, 2: ([], [], [], []), 3: ok})
    ds = load_dataset("nmnist", "train", data_dir=tmp_path)
    assert ds.empty_samples() == [1]
    assert ds.stats["files_parsed"] == 3
    for _ in range(2):  # the same error every time, the neighbours readable, nothing parsed twice
        with pytest.raises(ValueError, match=r"2\.bs2: empty sample"):
            ds.events(1)
        assert ds.events(0).size == 2 and ds.events(2).size == 2
    assert ds.stats["files_parsed"] == 3 and ds.stats["events_parsed"] == 4
    assert ds.events(1, allow_empty=True).size == 0
    # the disk cache keeps the empty sample empty (and raises for it) instead of serving nothing
    cached = load_dataset("nmnist", "train", data_dir=tmp_path, cache_dir=tmp_path / "c")
    assert cached.empty_samples() == [1]
    with pytest.raises(ValueError, match=r"2\.bs2: empty sample"):
        cached.events(1)


def test_data_dir_that_is_a_file_is_a_clear_error_without_a_fetch_hint(tmp_path):
    f = tmp_path / "1.bs3"
    f.write_bytes(b"\x00" * 10)
    for name in ("nmnist", "dvs-gesture"):
        with pytest.raises(ValueError, match=r"1\.bs3 is a file, but .* data_dir must be a folder") as e:
            load_dataset(name, "train", data_dir=f)
        assert "fetch" not in str(e.value)
