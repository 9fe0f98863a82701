"""tonic datasets through pysrm (issue 19): from_tonic, load_dataset('tonic:<Class>'), pysrm train --dataset tonic:X.

The tonic dataset objects are tonic's own classes built over small files written here in each dataset's
real on-disk layout (no download: tonic's download helpers fail the test if called).  tonic's
completeness check wants the full datasets (N-MNIST: >= 10,000 .bin files, DVS Gesture: >= 100 .npy);
for those two the tests tell tonic's ``_check_exists`` yes instead of writing thousands of files: what
tonic then reads is its own folder walk and reader over the files written here.  POKER-DVS (>= 20 .npy)
and SHD (one .h5) are written complete.  Skipped when tonic is not installed.
"""
import json
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

tonic = pytest.importorskip("tonic")
import tonic.datasets  # noqa: E402
import tonic.download_utils  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from click.testing import CliRunner  # noqa: E402

from pysrm.data import NMNIST, DataLoader, TonicDataset, from_tonic, load_dataset  # noqa: E402
from pysrm.data.binning import _bin_events_numpy  # noqa: E402
from pysrm.data.tonic_adapter import TonicFilesMissing  # noqa: E402
from pysrm.params import SimParams  # noqa: E402
from pysrm_cli.main import main  # noqa: E402

from test_data_nmnist import write_bin  # noqa: E402

REAL_BIN = REPO.parent / "shared" / "data" / "realdata" / "nmnist" / "sample_nmnist.bin"
SIM = SimParams(1.0, 300.0)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    def fail(*a, **k):
        raise AssertionError(f"a download was attempted: {a}")
    for name in ("download_url", "download_and_extract_archive", "_urlretrieve"):
        monkeypatch.setattr(tonic.download_utils, name, fail)


def same(a, b):
    assert a.shape == b.shape
    for f in ("offsets", "neuron", "time", "value"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert getattr(a, f).dtype == getattr(b, f).dtype


# ----------------------------------------------------------------------------- layouts tonic reads
def write_nmnist(root, rng, per_class=2, classes=(0, 3, 7), real=None):
    """tonic's NMNIST layout: <root>/NMNIST/train.zip and the extracted Train/<digit>/*.bin (the real
    sample, when given, is Train/<first class>/00000.bin)."""
    base = root / "NMNIST"
    (base / "Train").mkdir(parents=True)
    (base / "train.zip").write_bytes(b"")
    for c in classes:
        d = base / "Train" / str(c)
        d.mkdir()
        for k in range(per_class):
            if real is not None and c == classes[0] and k == 0:
                shutil.copy(real, d / "00000.bin")
                continue
            n = int(rng.integers(40, 300))
            write_bin(d / f"{k:05d}.bin", rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n),
                      np.sort(rng.integers(0, 330_000, n)))
    return base


def write_pokerdvs(root, rng, per_class=5, splits=("train", "test")):
    """tonic's POKERDVS layout: <root>/POKERDVS/pips_<split>.tar.gz and pips_<split>/<cl|he|di|sp>/*.npy
    with (t, x, y, p) rows (>= 20 files: tonic's completeness check)."""
    truth = {}
    for split in splits:
        base = root / "POKERDVS"
        (base / f"pips_{split}").mkdir(parents=True, exist_ok=True)
        (base / f"pips_{split}.tar.gz").write_bytes(b"")
        for c in ("cl", "he", "di", "sp"):
            d = base / f"pips_{split}" / c
            d.mkdir()
            for k in range(per_class):
                n = int(rng.integers(20, 120))
                ev = np.stack([np.sort(rng.integers(0, 25_000, n)), rng.integers(0, 35, n), rng.integers(0, 35, n),
                               rng.integers(0, 2, n)], axis=1)
                np.save(d / f"{c}{k}.npy", ev)
                truth[(split, c, k)] = ev
    return truth


def write_shd(root, rng, n=9, split="train"):
    """tonic's SHD layout: <root>/SHD/shd_<split>.h5.zip and shd_<split>.h5 (spikes/times in s, spikes/units,
    labels, extra/keys, extra/speaker)."""
    h5py = pytest.importorskip("h5py")
    base = root / "SHD"
    base.mkdir(parents=True, exist_ok=True)
    (base / f"shd_{split}.h5.zip").write_bytes(b"")
    times, units = [], []
    for _ in range(n):
        m = int(rng.integers(5, 200))
        times.append(np.sort(rng.uniform(0, 0.09, m)).astype(np.float32))
        units.append(rng.integers(0, 700, m).astype(np.uint16))
    labels = rng.integers(0, 20, n).astype(np.uint16)
    with h5py.File(base / f"shd_{split}.h5", "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t[i], u[i] = times[i], units[i]
        f["labels"] = labels
        f["extra/keys"] = np.array([f"digit-{k}".encode() for k in range(20)])
        f["extra/speaker"] = np.zeros(n, np.uint16)
    return times, units, labels


def write_gesture(root, rng, users=("user01_fluorescent", "user02_led")):
    """tonic's DVSGesture layout: <root>/DVSGesture/ibmGestureTrain.tar.gz and ibmGestureTrain/<user>/<label>.npy,
    rows (x, y, p, t in ms)."""
    base = root / "DVSGesture"
    (base / "ibmGestureTrain").mkdir(parents=True)
    (base / "ibmGestureTrain.tar.gz").write_bytes(b"")
    for u in users:
        d = base / "ibmGestureTrain" / u
        d.mkdir()
        for label in (0, 4, 10):
            n = int(rng.integers(50, 300))
            ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 400, n))], axis=1)
            np.save(d / f"{label}.npy", ev)
    return base


# ----------------------------------------------------------------------------- N-MNIST: tonic == pysrm's reader
@pytest.mark.skipif(not REAL_BIN.is_file(), reason=f"real N-MNIST sample absent at {REAL_BIN}")
def test_nmnist_through_tonic_equals_pysrms_reader_on_the_real_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.NMNIST, "_check_exists", lambda self: True)  # (>= 10,000 files otherwise)
    base = write_nmnist(tmp_path, np.random.default_rng(0), real=REAL_BIN)
    tds = tonic.datasets.NMNIST(save_to=str(tmp_path), train=True)
    ours = NMNIST(data_dir=base, split="train", sim=SIM, jitter=2)
    via = from_tonic(tds, ts=1.0, t_sample=300.0, jitter=2)
    assert isinstance(via, TonicDataset) and len(via) == len(ours) == 6
    assert via.sensor_shape == ours.sensor_shape == (2, 34, 34) and via.layout == "polarity"
    np.testing.assert_array_equal(via.labels, ours.labels)
    assert via.labels.tolist() == [0, 0, 3, 3, 7, 7] and via.n_classes == 10 and via.class_names[7] == "7 - seven"
    real = ours.events(0)
    assert real.size > 3000  # the real recording
    for i in range(len(ours)):
        np.testing.assert_array_equal(via.events(i), ours.events(i))
        same(via.sample(i), ours.sample(i))
        np.testing.assert_array_equal(via.dense(i), ours.dense(i))
    # the same loader draws give the same batches (jitter included)
    for (a, ya), (b, yb) in zip(DataLoader(via, 4, seed=5, augment=True), DataLoader(ours, 4, seed=5, augment=True)):
        same(a, b)
        np.testing.assert_array_equal(ya, yb)
    assert via.stats["cropped"] == ours.stats["cropped"] and via.stats["shifted_out"] == ours.stats["shifted_out"]


def test_nmnist_disk_cache_keyed_by_tonic_files(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.NMNIST, "_check_exists", lambda self: True)
    write_nmnist(tmp_path / "d", np.random.default_rng(1))
    tds = tonic.datasets.NMNIST(save_to=str(tmp_path / "d"), train=True)
    a = from_tonic(tds, ts=1.0, t_sample=300.0, cache_dir=tmp_path / "cache")
    first = [a.sample(i) for i in range(len(a))]
    key = a.cache_key()
    assert key.startswith("tonic-NMNIST-train-") and (tmp_path / "cache" / key / "events.npy").is_file()
    b = from_tonic(tonic.datasets.NMNIST(save_to=str(tmp_path / "d"), train=True), ts=1.0, t_sample=300.0,
                   cache_dir=tmp_path / "cache")
    assert b.cache_key() == key
    for i, s in enumerate(first):
        same(b.sample(i), s)
    # another setting of the tonic object (first_saccade_only changes the events): another key
    c = from_tonic(tonic.datasets.NMNIST(save_to=str(tmp_path / "d"), train=True, first_saccade_only=True),
                   ts=1.0, t_sample=300.0, cache_dir=tmp_path / "cache")
    assert c.cache_key() != key
    assert c.events(0).size and c.events(0)["t"].max() < 100_000


# ----------------------------------------------------------------------------- POKER-DVS, SHD, DVS Gesture
def test_pokerdvs_layout_and_bins(tmp_path):
    truth = write_pokerdvs(tmp_path, np.random.default_rng(2))
    tds = tonic.datasets.POKERDVS(save_to=str(tmp_path), train=True)
    ds = from_tonic(tds, ts=1.0, t_sample=20.0)
    assert len(ds) == 20 and ds.native_shape == (2, 35, 35) and ds.class_names == ("cl", "he", "di", "sp")
    for i in range(len(ds)):
        ev, target = tds[i]
        assert ds.labels[i] == target
        t, x, y, p = (ev[f] for f in ("t", "x", "y", "p"))
        dense = np.zeros((2, 35, 35, 20), np.float32)
        b = np.round(t / 1000.0).astype(int)
        k = b < 20
        dense[p[k], y[k], x[k], b[k]] = 1.0  # SLAYER's binning, written out
        np.testing.assert_array_equal(ds.dense(i), dense)
    assert ds.stats["cropped"] == sum(int((np.round(tds[i][0]["t"] / 1000.0) >= 20).sum()) for i in range(20)) > 0
    with pytest.raises(ValueError, match="pysrm cannot key a disk cache for POKERDVS"):
        from_tonic(tds, ts=1.0, t_sample=20.0, cache_dir=tmp_path / "c")  # its events live in memory, no files


def test_shd_one_dimensional(tmp_path):
    times, units, labels = write_shd(tmp_path, np.random.default_rng(3))
    tds = tonic.datasets.SHD(save_to=str(tmp_path), train=True)
    ds = from_tonic(tds, ts=1.0, t_sample=60.0, cache_dir=tmp_path / "cache")
    assert ds.layout == "address" and ds.native_shape == (700, 1, 1) and ds.sensor_shape == (700, 1, 1)
    assert ds.labels.tolist() == labels.tolist() and ds.n_classes == 20 and ds.class_names[3] == "digit-3"
    for i in range(len(ds)):
        ev, _ = tds[i]  # tonic's SHD times: seconds x 1e6, as integer microseconds
        t_us = (times[i].astype(np.float64) * 1e6).astype(np.int64)
        np.testing.assert_array_equal(ev["t"], t_us)
        b = np.round(t_us / 1000.0).astype(int)
        k = b < 60
        dense = np.zeros((700, 1, 1, 60), np.float32)
        dense[units[i][k].astype(int), 0, 0, b[k]] = 1.0
        np.testing.assert_array_equal(ds.dense(i), dense)
    assert (tmp_path / "cache" / ds.cache_key()).is_dir()
    x, y = next(iter(DataLoader(ds, 4, shuffle=False)))
    assert x.shape == (4, 700, 1, 1, 60) and y.tolist() == labels[:4].tolist()
    # downsampled channels
    ds2 = from_tonic(tds, ts=1.0, t_sample=60.0, downsample=10)
    assert ds2.sensor_shape == (70, 1, 1)
    same(ds2.sample(2), _bin_events_numpy(ds2.events(2), (700, 1, 1), ds2.sim, downsample=10, layout="address"))


def test_dvsgesture_layout_ms_files_read_in_us(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.DVSGesture, "_check_exists", lambda self: True)  # (>= 100 files otherwise)
    write_gesture(tmp_path, np.random.default_rng(4))
    tds = tonic.datasets.DVSGesture(save_to=str(tmp_path), train=True)
    ds = from_tonic(tds, ts=1.0, t_sample=300.0, downsample=4)
    assert ds.native_shape == (2, 128, 128) and ds.sensor_shape == (2, 32, 32) and len(ds) == 6
    assert sorted(ds.labels.tolist()) == [0, 0, 4, 4, 10, 10]
    for i in range(len(ds)):
        ev, _ = tds[i]
        assert ev["t"].max() >= 1000 and np.all(ev["t"] % 1000 == 0)  # tonic: ms files -> us
        same(ds.sample(i), _bin_events_numpy(ds.events(i), (2, 128, 128), ds.sim, downsample=4))
    assert ds.stats["cropped"] > 0  # events at 300-399 ms lie past t_sample


def test_ncaltech101_needs_a_sensor_size_and_has_named_classes(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.NCALTECH101, "_check_exists", lambda self: True)  # (>= 8,709 files)
    rng = np.random.default_rng(9)
    for c in ("airplanes", "ant", "Faces_easy"):
        d = tmp_path / "NCALTECH101" / "Caltech101" / c
        d.mkdir(parents=True)
        for k in range(2):
            n = int(rng.integers(30, 90))
            write_bin(d / f"image_{k:04d}.bin", rng.integers(5, 200, n), rng.integers(3, 150, n),
                      rng.integers(0, 2, n), np.sort(rng.integers(0, 250_000, n)))
    tds = tonic.datasets.NCALTECH101(save_to=str(tmp_path))
    with pytest.raises(ValueError, match="NCALTECH101 has no sensor_size .* pass sensor_size=\\(W, H, P\\)"):
        from_tonic(tds, ts=1.0, t_sample=300.0)
    ds = from_tonic(tds, ts=1.0, t_sample=300.0, sensor_size=(240, 180, 2), downsample=4)
    assert ds.class_names == ("Faces_easy", "airplanes", "ant") and sorted(ds.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert ds.sensor_shape == (2, 45, 60)
    for i in range(len(ds)):
        assert ds.class_names[ds.labels[i]] == tds[i][1]
        same(ds.sample(i), _bin_events_numpy(ds.events(i), (2, 180, 240), ds.sim, downsample=4))
    with pytest.raises(ValueError, match="tonic:NCALTECH101 has no train/test split"):
        load_dataset("tonic:NCALTECH101", "train", data_dir=tmp_path, sim=SimParams(1.0, 300.0))


# ----------------------------------------------------------------------------- any (events, target) sequence
class Seq:
    """Not a tonic class: a list of (events, target) with a sensor_size."""

    def __init__(self, items, sensor_size=(4, 3, 2), **attrs):
        self.items = items
        self.sensor_size = sensor_size
        self.__dict__.update(attrs)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def ev2d(x, y, t, p, tdtype=np.int64):
    a = np.zeros(len(x), dtype=[("x", np.int64), ("y", np.int64), ("t", tdtype), ("p", np.int64)])
    a["x"], a["y"], a["t"], a["p"] = x, y, t, p
    return a


def test_time_units_and_field_mapping():
    ms = ev2d([0, 1, 3], [0, 2, 1], [1.0, 2.5, 7.25], [1, 0, 1], tdtype=np.float64)
    ds = from_tonic(Seq([(ms, 1)]), ts=1.0, t_sample=10.0, time_unit="ms")
    assert ds.events(0)["t"].tolist() == [1000, 2500, 7250]
    # sensor_size (W, H, P) = (4, 3, 2) -> (C, H, W) = (2, 3, 4); neuron (p * 3 + y) * 4 + x, bin round(t_ms)
    se = ds.sample(0)
    assert se.shape == (1, 2, 3, 4, 10) and se.neuron.tolist() == [9, 12, 19] and se.time.tolist() == [2, 1, 7]
    us = from_tonic(Seq([(ev2d([0, 1, 3], [0, 2, 1], [1000, 2500, 7250], [1, 0, 1]), 1)]), ts=1.0, t_sample=10.0)
    same(ds.sample(0), us.sample(0))
    s = from_tonic(Seq([(ev2d([0], [0], [0.0125], [1], tdtype=np.float64), 0)]), ts=1.0, t_sample=20.0,
                   time_unit="s")
    assert s.events(0)["t"].tolist() == [12500]
    renamed = np.zeros(2, dtype=[("ts", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool), ("c", np.int8)])
    renamed["ts"], renamed["x"], renamed["p"] = [10, 20], [1, 2], [True, False]
    r = from_tonic(Seq([(renamed, 0)]), ts=1.0, t_sample=5.0, fields={"t": "ts"}, ignore_fields=["c"])
    assert r.events(0)["t"].tolist() == [10, 20] and r.events(0)["p"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"unknown event field\(s\) \['c'\].*fields=\{'t': 'ts'"):
        from_tonic(Seq([(renamed, 0)]), ts=1.0, t_sample=5.0, fields={"t": "ts"})
    with pytest.raises(ValueError, match=r"unknown event field\(s\) \['ts', 'c'\]"):
        from_tonic(Seq([(renamed, 0)]), ts=1.0, t_sample=5.0)
    with pytest.raises(ValueError, match="time_unit must be one of"):
        from_tonic(Seq([(ms, 1)]), ts=1.0, t_sample=10.0, time_unit="minutes")


def test_errors_name_the_sample_and_the_problem():
    good = ev2d([0, 1], [0, 1], [100, 200], [0, 1])
    with pytest.raises(TypeError, match=r"sample 1: events are a ndarray of dtype float32, shape \(3, 2, 3, 4\).*"
                                         r"ToFrame"):
        from_tonic(Seq([(good, 0), (np.zeros((3, 2, 3, 4), np.float32), 1)]), ts=1.0, t_sample=5.0)
    with pytest.raises(ValueError, match=r"sample 0: .*lie outside the sensor \(2, 3, 4\)"):
        from_tonic(Seq([(ev2d([9], [0], [100], [0]), 0)]), ts=1.0, t_sample=5.0).sample(0)
    with pytest.warns(UserWarning, match="1 of 2 event"):
        ds = from_tonic(Seq([(ev2d([9, 1], [0, 0], [100, 200], [0, 0]), 0)]), ts=1.0, t_sample=5.0,
                        out_of_range="warn")
        assert ds.events(0).size == 1
    with pytest.raises(ValueError, match="has no sensor_size.*pass sensor_size=\\(W, H, P\\)"):
        from_tonic(Seq([(good, 0)], sensor_size=None), ts=1.0, t_sample=5.0)
    assert from_tonic(Seq([(good, 0)], sensor_size=None), ts=1.0, t_sample=5.0,
                      sensor_size=(2, 2, 2)).native_shape == (2, 2, 2)
    with pytest.raises(ValueError, match="sensor_size must be \\(W, H, P\\)"):
        from_tonic(Seq([(good, 0)], sensor_size=(34, 34)), ts=1.0, t_sample=5.0)
    one_d = np.zeros(2, dtype=[("t", np.int64), ("x", np.int64), ("p", np.int64)])
    with pytest.raises(ValueError, match="no y field .* not \\(channels, 1, 1\\)"):
        from_tonic(Seq([(one_d, 0)], sensor_size=(64, 1, 2)), ts=1.0, t_sample=5.0)
    with pytest.raises(TypeError, match="sample 0: target 0.5 \\(float\\) is not a class: expected an integer"):
        from_tonic(Seq([(good, 0.5)]), ts=1.0, t_sample=5.0)
    named = from_tonic(Seq([(good, "zero"), (good, "one"), (good, "zero")]), ts=1.0, t_sample=5.0)
    assert named.class_names == ("one", "zero") and named.labels.tolist() == [1, 0, 1]  # sorted names
    with pytest.raises(ValueError, match="sample 0: unknown class name 'two'; expected one of \\['one'\\]"):
        from_tonic(Seq([(good, "two")], targets=["one"]), ts=1.0, t_sample=5.0)
    with pytest.raises(TypeError, match="sample 0: item is a list; expected \\(events, target\\)"):
        from_tonic(Seq([[good, 0]]), ts=1.0, t_sample=5.0)
    with pytest.raises(ValueError, match="its target 1 differs from targets\\[0\\] = 0"):
        from_tonic(Seq([(good, 1)], targets=[0]), ts=1.0, t_sample=5.0)
    with pytest.raises(ValueError, match="transform set: .*allow_transform=True"):
        from_tonic(Seq([(good, 0)], transform=lambda e: e), ts=1.0, t_sample=5.0)
    assert len(from_tonic(Seq([(good, 0)], transform=lambda e: e), ts=1.0, t_sample=5.0, allow_transform=True)) == 1
    with pytest.raises(TypeError, match="needs the simulation"):
        from_tonic(Seq([(good, 0)]))


def test_empty_samples_are_recorded_not_raised():
    empty = ev2d([], [], [], [])
    ds = from_tonic(Seq([(ev2d([0], [0], [100], [0]), 0), (empty, 1), (ev2d([1], [1], [200], [1]), 0)]), ts=1.0,
                    t_sample=5.0)
    assert ds.empty_samples() == [1]
    with pytest.raises(ValueError, match="tonic:Seq sample 1: empty sample"):
        ds.sample(1)
    from pysrm.train import check_empty_samples
    kept = check_empty_samples(ds, "training", "skip")
    assert len(kept) == 2 and kept.labels.tolist() == [0, 0]
    with pytest.raises(ValueError, match="1 of 3 training sample\\(s\\) have no event"):
        check_empty_samples(ds, "training", "error")


# ----------------------------------------------------------------------------- load_dataset / pysrm train
def test_load_dataset_tonic_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*POKERDVS; tonic keeps POKERDVS's files in "
                                                "<save_to>/POKERDVS/"):
        load_dataset("tonic:POKERDVS", "train", data_dir=tmp_path, sim=SimParams(1.0, 20.0))
    write_pokerdvs(tmp_path, np.random.default_rng(0), splits=("train",))
    (tmp_path / "POKERDVS" / "pips_train.tar.gz").unlink()  # tonic's check fails: it would fetch the archive
    with pytest.raises(TonicFilesMissing, match="would download them now; pysrm never downloads. tonic expects "
                                                ".*POKERDVS/pips_train.tar.gz"):
        load_dataset("tonic:POKERDVS", "train", data_dir=tmp_path, sim=SimParams(1.0, 20.0))
    with pytest.raises(ValueError, match="tonic .* has no dataset class 'NotThere'; tonic.datasets has .*NMNIST"):
        load_dataset("tonic:NotThere", "train", data_dir=tmp_path, sim=SimParams(1.0, 20.0))
    with pytest.raises(TypeError, match="unknown option\\(s\\) \\['list_file'\\]"):
        load_dataset("tonic:POKERDVS", "train", data_dir=tmp_path, sim=SimParams(1.0, 20.0), list_file="x")


def test_pysrm_train_on_tonic_pokerdvs(tmp_path):
    write_pokerdvs(tmp_path / "data", np.random.default_rng(6))
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--dataset", "tonic:POKERDVS", "--data-dir", str(tmp_path / "data"),
                                  "--net", "35x35x2-16-4", "--t-sample", "25", "--window", "10", "--epochs", "2",
                                  "--batch-size", "8", "--jitter", "1", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["dataset"] == "tonic:POKERDVS" and rep["n_train_samples"] == 20 and rep["test"]["n_samples"] == 20
    assert "dataset = \"tonic:POKERDVS\"" in (out / "config.toml").read_text()
    # a missing folder: a clear error and no run directory
    r = CliRunner().invoke(main, ["train", "--dataset", "tonic:POKERDVS", "--data-dir", str(tmp_path / "none"),
                                  "--out", str(tmp_path / "run2")])
    assert r.exit_code != 0 and "does not exist" in r.output and not (tmp_path / "run2").exists()
    r = CliRunner().invoke(main, ["train", "--dataset", "tonic:", "--out", str(tmp_path / "run3")])
    assert r.exit_code != 0 and "expected tonic:<ClassName>" in r.output


def test_pysrm_train_on_tonic_shd_one_dimensional(tmp_path):
    write_shd(tmp_path, np.random.default_rng(7), n=10, split="train")
    write_shd(tmp_path, np.random.default_rng(8), n=6, split="test")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--dataset", "tonic:SHD", "--data-dir", str(tmp_path), "--net", "700-8-20",
                                  "--t-sample", "50", "--window", "10", "--epochs", "1", "--batch-size", "4",
                                  "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["test"]["n_samples"] == 6
