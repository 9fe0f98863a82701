"""N-TIDIGITS18: a small n-tidigits.hdf5 written with h5py, plus the shared real .bs1 sample."""
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import from_arrays, load_dataset, read_bs1  # noqa: E402
from pysrm.data.ntidigits import CLASS_NAMES  # noqa: E402
from pysrm.params import SimParams  # noqa: E402

NTIDIGITS_BS1 = REPO.parent / "shared" / "data" / "slayer_formats" / "NTIDIGITS_1.bs1"


def write_ntidigits(path, samples, split_keys=("train", "test")):
    """samples: {split: [(label, addresses, timestamps_s), ...]} in the public file's layout."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for split in split_keys:
            rows = samples.get(split, [])
            f.create_dataset(f"{split}_labels", data=np.array([r[0].encode() for r in rows], dtype="S"))
            ga, gt = f.create_group(f"{split}_addresses"), f.create_group(f"{split}_timestamps")
            for label, addr, ts in rows:
                ga.create_dataset(label, data=np.asarray(addr, dtype=np.int8))
                gt.create_dataset(label, data=np.asarray(ts, dtype=np.float64))


def rand_utt(rng, n=200):
    return rng.integers(0, 64, n), np.sort(rng.uniform(0, 0.9, n))


def test_hdf5_single_digits(tmp_path):
    rng = np.random.default_rng(0)
    train = [("ae-o", *rand_utt(rng)), ("ae-17z", *rand_utt(rng)), ("ah-z", *rand_utt(rng)),
             ("ah-3", *rand_utt(rng)), ("bc-1", *rand_utt(rng))]
    test = [("zz-9", *rand_utt(rng))]
    write_ntidigits(tmp_path / "n-tidigits.hdf5", {"train": train, "test": test})
    ds = load_dataset("ntidigits", "train", data_dir=tmp_path)
    assert len(ds) == 4 and ds.n_multi_digit == 1
    assert ds.class_names == CLASS_NAMES and ds.n_classes == 11
    np.testing.assert_array_equal(ds.labels, [0, 10, 3, 1])  # o -> 0, z -> 10
    assert ds.sensor_shape == (64, 1, 1) and ds.layout == "address" and ds.sim == SimParams(1.0, 1500.0)
    ev = ds.events(2)
    np.testing.assert_array_equal(ev["x"], train[3][1])
    np.testing.assert_array_equal(ev["t"], np.round(train[3][2] * 1e6).astype(np.int64))
    x = ds.sample(2)
    assert x.shape == (1, 64, 1, 1, 1500)
    d = x.to_dense()[0, :, 0, 0]
    ref = np.zeros((64, 1500), np.float32)
    ref[ev["x"].astype(int), np.round(ev["t"] / 1000.0).astype(int)] = 1.0
    np.testing.assert_array_equal(d, ref)
    # the data file itself is accepted as data_dir; the test split
    te = load_dataset("ntidigits", "test", data_dir=tmp_path / "n-tidigits.hdf5")
    assert len(te) == 1 and te.labels[0] == 9
    assert ds.n_parsed == 1
    ds.close()


def test_hdf5_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    write_ntidigits(tmp_path / "a.hdf5", {"train": [("ae-q", *rand_utt(rng))]})
    with pytest.raises(ValueError, match=r"a\.hdf5: label 'ae-q' of train_labels has unknown class 'q'"):
        load_dataset("ntidigits", "train", data_dir=tmp_path / "a.hdf5")
    write_ntidigits(tmp_path / "b.hdf5", {"train": [("ae-1", *rand_utt(rng))]}, split_keys=("train",))
    with pytest.raises(ValueError, match=r"b\.hdf5: missing dataset/group 'test_labels'"):
        load_dataset("ntidigits", "test", data_dir=tmp_path / "b.hdf5")
    write_ntidigits(tmp_path / "c.hdf5", {"train": [("ae-1", [1, 70, 3], [0.1, 0.2, 0.3]), ("ae-2", [], [])]})
    ds = load_dataset("ntidigits", "train", data_dir=tmp_path / "c.hdf5")
    with pytest.warns(UserWarning, match=r"c\.hdf5 \[train sample 'ae-1'\]: 1 of 3 event\(s\) lie outside"):
        assert ds.events(0).size == 2
    with pytest.raises(ValueError, match=r"'ae-2'\]: empty sample"):
        ds.events(1)
    (tmp_path / "d.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"d\.hdf5: not a readable HDF5 file"):
        load_dataset("ntidigits", "train", data_dir=tmp_path / "d.hdf5")
    with pytest.raises(FileNotFoundError, match=r"ntidigits data not found.*n-tidigits\.hdf5.*pysrm data fetch"):
        load_dataset("ntidigits", "train", data_dir=tmp_path / "empty_dir_missing")
    ds.close()


def test_missing_h5py_message(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    write_ntidigits(tmp_path / "n-tidigits.hdf5", {"train": [("ae-1", [1], [0.1])]})
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"needs the optional dependency h5py.*pip install"):
        load_dataset("ntidigits", "train", data_dir=tmp_path)


@pytest.mark.skipif(not NTIDIGITS_BS1.is_file(), reason="shared N-TIDIGITS sample absent")
def test_real_bs1_sample_as_address_layout():
    ev = read_bs1(NTIDIGITS_BS1)
    ds = from_arrays([ev], [1], sensor_shape=(64, 1, 1), layout="address", sim=SimParams(1.0, 1100.0),
                     class_names=CLASS_NAMES)
    x = ds.sample(0)
    assert x.shape == (1, 64, 1, 1, 1100)
    d = x.to_dense()[0, :, 0, 0]
    # known values: channel 63 spikes at 0, 1.024 (-> bin 1), 2.304 (-> 2), 3.328 ms (-> 3)
    assert d[63, 0] == d[63, 1] == d[63, 2] == d[63, 3] == 1.0
    b = np.round(ev["t"] / 1000.0).astype(int)
    assert x.n_events == len(np.unique(ev["x"].astype(int) * 1100 + b))


def test_empty_utterance_found_at_start_up_and_missing_split_is_named(tmp_path):
    rng = np.random.default_rng(3)
    write_ntidigits(tmp_path / "c.hdf5", {"train": [("ae-1", *rand_utt(rng)), ("ae-2", [], []),
                                                    ("ae-3", *rand_utt(rng))]}, split_keys=("train",))
    ds = load_dataset("ntidigits", "train", data_dir=tmp_path / "c.hdf5")
    assert ds.empty_samples() == [1] and ds.stats["files_parsed"] == 3
    from pysrm.data._paths import SplitMissing
    with pytest.raises(SplitMissing, match=r"no test split in this file"):
        load_dataset("ntidigits", "test", data_dir=tmp_path / "c.hdf5")
