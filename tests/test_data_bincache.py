"""Issue 17, the loop: linear-time binning, the binned-spikes cache, the DataLoader's prefetch thread.

Everything here is compared against the code it replaces: the NumPy binning (``np.round`` and a
sort-unique, kept as ``_bin_events_numpy``) and the loader that binned every sample per draw.
"""
import os
import pathlib
import sys
import threading
import time
import warnings

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pysrm.data.base as base_mod  # noqa: E402
from pysrm.data import DataLoader, EVENT_DTYPE, bin_events, from_arrays, load_dataset, make_events  # noqa: E402
from pysrm.data.binning import _bin_events_numpy  # noqa: E402
from pysrm.events import SpikeEvents  # noqa: E402
from pysrm.params import SimParams  # noqa: E402
from pysrm.train import Subset  # noqa: E402

from test_data_gesture import make_gesture_dir  # noqa: E402
from test_data_nmnist import write_bin  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SMALL = pathlib.Path(os.environ.get("PYSRM_NMNIST_SMALL", SHARED / "NMNISTsmall"))
REAL_BIN = SHARED / "realdata" / "nmnist" / "sample_nmnist.bin"
needs_small = pytest.mark.skipif(not (SMALL / "train1K.txt").is_file(), reason=f"NMNISTsmall not found at {SMALL}")


def same(a: SpikeEvents, b: SpikeEvents):
    assert a.shape == b.shape
    for f in ("offsets", "neuron", "time", "value"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        np.testing.assert_array_equal(x, y, err_msg=f)


def reference_batches(ds, batch_size, seed, epoch, augment, jitter, shuffle=True):
    """The loader before issue 17: per draw, the events binned with the NumPy binning; same streams."""
    n = len(ds)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    rng = np.random.default_rng([seed, epoch, 1])
    stats = {}
    out = []
    for k in range(-(-n // batch_size)):
        idx = order[k * batch_size:(k + 1) * batch_size]
        samples = []
        for i in idx:
            ev = ds.events(int(i))
            shift = (0, 0)
            if augment and jitter:
                shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
            t0 = ds.window_start(int(i), rng)
            samples.append(_bin_events_numpy(ev, ds.native_shape, ds.sim, t_start=t0, shift=shift,
                                             downsample=ds.downsample, layout=ds.layout, dtype=ds.dtype,
                                             out_of_range="error", stats=stats))
        out.append((SpikeEvents.concatenate(samples), np.asarray(ds.labels)[idx]))
    return out, stats


def loader_vs_reference(ds, batch_size=7, seed=3, epochs=(0, 1, 2), jitter=None, prefetch=0):
    aug = True
    jit = ds.jitter if jitter is None else jitter
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, seed=seed, augment=aug, jitter=jitter,
                        prefetch=prefetch)
    keys = ("events_binned", "cropped", "shifted_out")
    for epoch in epochs:
        before = {k: ds.stats[k] for k in keys}
        loader.set_epoch(epoch)
        got = list(loader)
        ref, ref_stats = reference_batches(ds, batch_size, seed, epoch, aug, jit)
        assert len(got) == len(ref)
        for (x, y), (rx, ry) in zip(got, ref):
            same(x, rx)
            np.testing.assert_array_equal(y, ry)
        for k in keys:  # the counters move exactly as binning every draw moved them
            assert ds.stats[k] - before[k] == ref_stats.get(k, 0), k


def random_sample(rng, shape, t_sample_us, n, layout="polarity"):
    c, h, w = shape
    t = rng.integers(-200, int(t_sample_us * 1.3), n).clip(0)
    if layout == "address":
        ev = make_events(rng.integers(0, c, n), 0, t, 0)
    else:
        ev = make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, c, n))
    ev = np.concatenate([ev, ev[: n // 4]])  # duplicates: several events in one bin
    if rng.random() < 0.5:
        ev = ev[np.argsort(ev["t"], kind="stable")]  # recordings come in time order; others do not
    return ev


# --------------------------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("layout", ["polarity", "address"])
def test_linear_binning_equals_numpy_binning_on_random_events(layout):
    rng = np.random.default_rng(17)
    for trial in range(120):
        ts = float(rng.choice([1.0, 0.5, 2.0, 0.25]))
        sim = SimParams(ts, float(rng.choice([10.0, 30.0])))
        shape = (int(rng.integers(1, 70)), 1, 1) if layout == "address" else \
            (int(rng.integers(1, 3)), int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        ev = random_sample(rng, shape, sim.t_sample * 1000, int(rng.integers(0, 1500)), layout)
        # edge bins: exact ties (x.5 bins round half to even), the last bin, the first bin past T, t < t_start
        edges = np.array([0.5, 1.5, 2.5, sim.n_bins - 1, sim.n_bins - 0.5, sim.n_bins - 0.51, sim.n_bins])
        te = np.round(edges * 1000 * ts).astype(np.int64)
        ev = np.concatenate([ev, make_events(np.zeros(te.size, int), 0, te, 0)])
        k = int(rng.choice([1, 2, 3]))
        t_start = int(rng.choice([0, 700, 1500]))
        shift = (0, 0) if trial % 3 == 0 else \
            (int(rng.integers(-4, 5)), 0 if layout == "address" else int(rng.integers(-4, 5)))
        s1, s2 = {}, {}
        a = bin_events(ev, shape, sim, t_start=t_start, shift=shift, downsample=k, layout=layout, stats=s1)
        b = _bin_events_numpy(ev, shape, sim, t_start=t_start, shift=shift, downsample=k, layout=layout, stats=s2)
        same(a, b)
        assert s1 == s2
        assert a.is_canonical()


def test_linear_binning_counts_cropping_and_merges_duplicates():
    sim = SimParams(1.0, 5.0)
    # bins: 499 us -> 0, 500 -> 0 (tie, even), 1500 -> 2 (tie, even), 2500 -> 2, 4499 -> 4, 4500 -> 4 (tie), 5500 -> 6
    ev = make_events([0, 0, 0, 0, 1, 1, 1], 0, [499, 500, 1500, 2500, 4499, 4500, 5500], 1)
    st = {}
    se = bin_events(ev, (2, 1, 2), sim, stats=st)
    assert se.neuron.tolist() == [2, 2, 3] and se.time.tolist() == [0, 2, 4]
    assert st == {"events_binned": 7, "cropped": 1}
    st = {}
    # t_start 600 us: 499 and 500 us lie less than half a bin before t = 0 and round to bin -0.0 = 0 (kept)
    se = bin_events(ev, (2, 1, 2), sim, t_start=600, stats=st)
    assert se.neuron.tolist() == [2, 2, 2, 3] and se.time.tolist() == [0, 1, 2, 4] and st["cropped"] == 1
    st = {}
    se = bin_events(ev, (2, 1, 2), sim, t_start=1600, stats=st)  # now 499 and 500 us lie in bin -1: cropped
    assert se.neuron.tolist() == [2, 2, 3, 3] and se.time.tolist() == [0, 1, 3, 4] and st["cropped"] == 2


@needs_small
def test_linear_binning_equals_numpy_binning_on_real_nmnist():
    ds = load_dataset("nmnist", "train", data_dir=SMALL, list_file="train1K.txt", sim=SimParams(1.0, 300.0))
    evs = [ds.events(i) for i in range(0, 1000, 25)]
    if REAL_BIN.is_file():
        from pysrm.data import read_nmnist_bin
        evs.append(read_nmnist_bin(REAL_BIN))
    for ev in evs:
        for sim in (SimParams(1.0, 300.0), SimParams(0.5, 100.0), SimParams(2.0, 350.0)):
            for shift, k in (((0, 0), 1), ((2, -3), 1), ((-1, 1), 2)):
                s1, s2 = {}, {}
                same(bin_events(ev, (2, 34, 34), sim, shift=shift, downsample=k, stats=s1),
                     _bin_events_numpy(ev, (2, 34, 34), sim, shift=shift, downsample=k, stats=s2))
                assert s1 == s2


def test_non_integer_times_use_the_numpy_binning():
    dt = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("p", "u1")])
    ev = np.zeros(3, dt)
    ev["x"], ev["t"] = [0, 1, 1], [400.0, 1500.0, 2500.0]
    same(bin_events(ev, (2, 1, 2), SimParams(1.0, 5.0)), _bin_events_numpy(ev, (2, 1, 2), SimParams(1.0, 5.0)))


# --------------------------------------------------------------------------------------- the binned cache
@pytest.mark.parametrize("downsample", [1, 2])
def test_cached_loader_equals_binning_every_draw_synthetic(downsample):
    ds = load_dataset("synthetic", "train", n_samples=40, jitter=3, downsample=downsample, size=16)
    loader_vs_reference(ds)
    assert ds._bins and all(e is not None for e in next(iter(ds._bins.values())))  # every sample binned once


@pytest.mark.parametrize("layout,downsample", [("polarity", 1), ("polarity", 3), ("address", 1), ("address", 3)])
def test_cached_loader_equals_binning_every_draw_random_arrays(layout, downsample):
    rng = np.random.default_rng(5)
    shape = (40, 1, 1) if layout == "address" else (2, 11, 13)
    sim = SimParams(0.5, 20.0)
    evs = [random_sample(rng, shape, 20_000, int(rng.integers(1, 400)), layout) for _ in range(30)]
    ds = from_arrays(evs, rng.integers(0, 3, 30), sensor_shape=shape, sim=sim, layout=layout,
                     downsample=downsample, jitter=0 if layout == "address" else 4)
    loader_vs_reference(ds)
    loader_vs_reference(ds, prefetch=2, epochs=(3,))


@needs_small
def test_cached_loader_equals_binning_every_draw_real_nmnist():
    ds = Subset(load_dataset("nmnist", "train", data_dir=SMALL, list_file="train1K.txt", jitter=2,
                             sim=SimParams(1.0, 300.0)), np.arange(0, 1000, 16))
    loader_vs_reference(ds, batch_size=8)


def test_cache_key_follows_the_simulation():
    ds = load_dataset("synthetic", "train", n_samples=6, size=16)
    a = [ds.sample(i) for i in range(6)]
    ds.sim = SimParams(2.0, 50.0)  # another ts and t_sample: binned anew, never served from the old cache
    b = [ds.sample(i) for i in range(6)]
    assert len(ds._bins) == 2
    for i in range(6):
        same(b[i], _bin_events_numpy(ds.events(i), ds.native_shape, ds.sim))
        assert b[i].shape[-1] == 25 and a[i].shape[-1] == 100
    assert ds.bin_signature() == (2.0, 25, (2, 16, 16), "polarity")


def test_sample_hands_out_copies_not_the_cache():
    ds = load_dataset("synthetic", "train", n_samples=3, size=16)
    s = ds.sample(1)
    s.neuron[:] = 0
    s.time[:] = 0
    same(ds.sample(1), _bin_events_numpy(ds.events(1), ds.native_shape, ds.sim))


def test_a_subclass_that_overrides_sample_gets_it_called_by_the_loader():
    from pysrm.data import SyntheticDataset

    class Flipped(SyntheticDataset):
        def sample(self, i, rng=None, augment=False, jitter=None):
            s = super().sample(i, rng, augment, jitter)
            return SpikeEvents(s.shape, s.offsets, s.neuron, s.shape[-1] - 1 - s.time, s.value)
    ds = Flipped(n_samples=6, size=16)
    x, _ = next(iter(DataLoader(ds, 6, shuffle=False)))
    same(x, SpikeEvents.concatenate([ds.sample(i) for i in range(6)]))


def test_cache_off_gives_the_same_batches():
    on = load_dataset("synthetic", "train", n_samples=20, jitter=2, size=16)
    off = load_dataset("synthetic", "train", n_samples=20, jitter=2, size=16)
    off.bin_cache = False
    for (a, ya), (b, yb) in zip(DataLoader(on, 6, seed=1, augment=True), DataLoader(off, 6, seed=1, augment=True)):
        same(a, b)
        np.testing.assert_array_equal(ya, yb)
    assert not off._bins and on._bins and on.stats == off.stats


@pytest.mark.parametrize("cache_dir", [False, True])
def test_empty_sample_error_is_the_same_with_the_cache(tmp_path, cache_dir):
    _nmnist_tree(tmp_path / "data", np.random.default_rng(1), n=2)
    empty = tmp_path / "data" / "Train" / "1" / "00000.bin"
    write_bin(empty, [], [], [], [])
    kw = {"cache_dir": tmp_path / "cache"} if cache_dir else {}
    messages = []
    for cached in (False, True, True):  # binning per draw; the cache filled; the cache read
        ds = load_dataset("nmnist", "train", data_dir=tmp_path / "data", **kw)
        ds.bin_cache = cached
        with pytest.raises(ValueError) as e:
            ds.sample(2)
        messages.append(str(e.value))
        same(ds.sample(3), _bin_events_numpy(ds.events(3), (2, 34, 34), ds.sim))
    assert messages[0] == messages[1] == messages[2] and f"{empty}: empty sample" in messages[0]


def test_random_windows_are_binned_per_draw(tmp_path):
    make_gesture_dir(tmp_path, np.random.default_rng(0))
    train = load_dataset("dvs-gesture", "train", data_dir=tmp_path, sim=SimParams(1.0, 300.0), jitter=5,
                         downsample=4)
    loader_vs_reference(train, batch_size=2)
    assert not train._bins  # random windows: nothing cached
    test = load_dataset("dvs-gesture", "test", data_dir=tmp_path, sim=SimParams(1.0, 300.0), jitter=3)
    loader_vs_reference(test, batch_size=2)
    assert test._bins  # windows at the start: cached


def _nmnist_tree(root, rng, n=6):
    for c in (0, 1):
        d = root / "Train" / str(c)
        d.mkdir(parents=True)
        for k in range(n):
            m = int(rng.integers(30, 200))
            write_bin(d / f"{k:05d}.bin", rng.integers(0, 34, m), rng.integers(0, 34, m), rng.integers(0, 2, m),
                      np.sort(rng.integers(0, 320_000, m)))


def test_disk_bin_cache_built_once_memory_mapped_and_keyed(tmp_path, monkeypatch):
    _nmnist_tree(tmp_path / "data", np.random.default_rng(2))
    cache = tmp_path / "cache"
    sim = SimParams(1.0, 300.0)
    ds = load_dataset("nmnist", "train", data_dir=tmp_path / "data", cache_dir=cache, sim=sim, jitter=2)
    loader_vs_reference(ds, batch_size=5)
    d = pathlib.Path(ds.bin_cache_dir())
    assert d.parent.name == ds.cache_key() and d.name.startswith("binned-")
    assert sorted(p.name for p in d.iterdir()) == ["count.npy", "meta.json", "neuron.npy", "offsets.npy",
                                                    "stats.npy", "time.npy"]
    assert not ds._bins  # with a cache directory the binned spikes live there, not in memory

    # a new dataset object reads the folder: no binning at all, the same batches
    ds2 = load_dataset("nmnist", "train", data_dir=tmp_path / "data", cache_dir=cache, sim=sim, jitter=2)

    def no_binning(*a, **k):
        raise AssertionError("binned again although the cache directory holds the spikes")
    monkeypatch.setattr(base_mod, "bin_kernel", no_binning)
    loader_vs_reference(ds2, batch_size=5)
    assert isinstance(ds2._bins_disk[ds2.bin_signature()][0], np.memmap)
    monkeypatch.undo()

    # another t_sample: another folder; a different data set: another events folder
    ds3 = load_dataset("nmnist", "train", data_dir=tmp_path / "data", cache_dir=cache, sim=SimParams(1.0, 100.0))
    assert ds3.bin_cache_dir() != ds.bin_cache_dir()
    same(ds3.sample(0), _bin_events_numpy(ds3.events(0), (2, 34, 34), ds3.sim))
    assert len(list((cache / ds.cache_key()).glob("binned-*"))) == 2

    # a damaged folder is rebuilt with a warning, never used
    np.save(d / "offsets.npy", np.array([0, 3]))
    ds4 = load_dataset("nmnist", "train", data_dir=tmp_path / "data", cache_dir=cache, sim=sim, jitter=2)
    with pytest.warns(UserWarning, match="inconsistent; binning the dataset again"):
        ds4.sample(0)
    loader_vs_reference(ds4, batch_size=5, epochs=(1,))


# --------------------------------------------------------------------------------------- prefetch
def test_prefetch_gives_the_same_batches_in_the_same_order():
    ds = load_dataset("synthetic", "train", n_samples=50, jitter=2, size=16)
    plain = list(DataLoader(ds, 8, seed=4, augment=True))
    for depth in (1, 3):
        got = list(DataLoader(ds, 8, seed=4, augment=True, prefetch=depth))
        assert len(got) == len(plain)
        for (a, ya), (b, yb) in zip(got, plain):
            same(a, b)
            np.testing.assert_array_equal(ya, yb)
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        DataLoader(ds, 8, prefetch=-1)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "pysrm-DataLoader-prefetch"]


def test_prefetch_thread_stops_on_break_and_on_errors():
    ds = load_dataset("synthetic", "train", n_samples=60, size=16)
    it = iter(DataLoader(ds, 4, prefetch=2))
    next(it)
    assert len(_prefetch_threads()) == 1
    it.close()  # what the training loop does on Ctrl-C or an error
    assert not _prefetch_threads()

    class Broken:
        labels = np.zeros(10, np.int64)

        def __len__(self):
            return 10

        def sample(self, i, rng=None, augment=False):
            if i == 6:
                raise OSError("disk gone at sample 6")
            return ds.sample(i)
    it = iter(DataLoader(Broken(), 2, shuffle=False, prefetch=2))
    assert [len(y) for _, y in (next(it), next(it), next(it))] == [2, 2, 2]
    with pytest.raises(OSError, match="disk gone at sample 6"):  # raised where the batch would have come
        next(it)
    time.sleep(0.01)
    assert not _prefetch_threads()


def test_training_with_and_without_prefetch_is_bitwise_equal(tmp_path, monkeypatch):
    import pysrm.train as train_mod
    from pysrm.config import TrainConfig
    cfg = TrainConfig(n_train=48, n_test=16, epochs=2, batch_size=16, jitter=2, net="16x16x2-24-10", t_sample=40.0,
                      window=10.0, seed=1)
    reports = {}
    from pysrm import settings
    for depth in (0, 2):
        with settings.override(train_prefetch=depth):
            reports[depth] = train_mod.train(cfg, run_dir=tmp_path / f"p{depth}")
    a = np.load(tmp_path / "p0" / "checkpoints" / "last.npz")
    b = np.load(tmp_path / "p2" / "checkpoints" / "last.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert reports[0]["final_accuracy"] == reports[2]["final_accuracy"]
    assert not _prefetch_threads()


def test_interrupted_training_stops_the_prefetch_thread_and_resumes_bitwise(tmp_path):
    from pysrm.config import TrainConfig
    from pysrm.train import TrainingInterrupted, train
    cfg = TrainConfig(n_train=48, n_test=16, epochs=2, batch_size=16, jitter=2, net="16x16x2-24-10", t_sample=40.0,
                      window=10.0, seed=2)
    train(cfg, run_dir=tmp_path / "full")
    with pytest.raises(TrainingInterrupted):
        train(cfg, run_dir=tmp_path / "cut", stop_after_batches=4)  # mid-epoch 2, like Ctrl-C
    assert not _prefetch_threads()
    train(cfg, run_dir=tmp_path / "cut", resume=True)
    a = np.load(tmp_path / "full" / "checkpoints" / "last.npz")
    b = np.load(tmp_path / "cut" / "checkpoints" / "last.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
