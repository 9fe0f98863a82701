"""DataLoader batches and the load_dataset entry point."""
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import DATASETS, DataLoader, load_dataset  # noqa: E402
from pysrm.events import SpikeEvents  # noqa: E402


@pytest.fixture(scope="module")
def small():
    return load_dataset("synthetic", "train", n_samples=70, jitter=2)


def test_batches(small):
    loader = DataLoader(small, batch_size=32, shuffle=True, seed=0)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [32, 32, 6]
    x, y = batches[0]
    assert isinstance(x, SpikeEvents) and x.shape == (32, 2, 16, 16, 100) and x.dtype == np.float32
    assert y.dtype == np.int64 and np.all(x.value == 1.0)
    seen = np.concatenate([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(small.labels.tolist())
    assert len(DataLoader(small, batch_size=32, drop_last=True)) == 2
    assert [len(y) for _, y in DataLoader(small, batch_size=32, drop_last=True)] == [32, 32]
    # batch rows are the binned samples
    l2 = DataLoader(small, batch_size=5, shuffle=False)
    x, y = next(iter(l2))
    np.testing.assert_array_equal(x.to_dense()[3], small.sample(3).to_dense()[0])
    np.testing.assert_array_equal(y, small.labels[:5])


def test_shuffle_is_function_of_seed_and_epoch(small):
    a = DataLoader(small, batch_size=10, seed=3)
    o0, o1 = a.order(0), a.order(1)
    assert not np.array_equal(o0, o1) and sorted(o0) == list(range(70))
    ys0 = np.concatenate([y for _, y in a])  # epoch 0
    ys1 = np.concatenate([y for _, y in a])  # epoch 1 (advanced automatically)
    np.testing.assert_array_equal(ys0, small.labels[o0])
    np.testing.assert_array_equal(ys1, small.labels[o1])
    b = DataLoader(small, batch_size=10, seed=3)
    b.set_epoch(1)  # resuming at epoch 1 reproduces it
    np.testing.assert_array_equal(np.concatenate([y for _, y in b]), ys1)
    c = DataLoader(small, batch_size=10, seed=4)
    assert not np.array_equal(c.order(0), o0)
    assert np.array_equal(DataLoader(small, shuffle=False).order(5), np.arange(70))


def test_augmentation_reproducible(small):
    a = DataLoader(small, batch_size=70, shuffle=False, seed=1, augment=True)
    x1, _ = next(iter(a))
    a.set_epoch(0)
    x2, _ = next(iter(a))
    np.testing.assert_array_equal(x1.to_dense(), x2.to_dense())
    x3, _ = next(iter(DataLoader(small, batch_size=70, shuffle=False, seed=1, augment=False)))
    assert not np.array_equal(x1.to_dense(), x3.to_dense())  # jitter moved samples
    assert small.stats["shifted_out"] >= 0


def test_loader_argument_errors(small):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(small, batch_size=0)
    with pytest.raises(TypeError, match="pysrm dataset"):
        DataLoader([1, 2, 3])
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        DataLoader(small).set_epoch(-1)


def test_load_dataset_errors():
    assert DATASETS == ("synthetic", "nmnist", "dvs-gesture", "ntidigits")
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; choose one of \('synthetic', 'nmnist'"):
        load_dataset("mnist")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colour'\] for dataset 'synthetic'"):
        load_dataset("synthetic", colour=3)
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("synthetic", "validation")
    with pytest.raises(TypeError, match="SimParams"):
        load_dataset("synthetic", sim=(1.0, 100.0))


def test_default_data_dir_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSRM_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nmnist data not found at .*nmnist.*pysrm data fetch nmnist --to"):
        load_dataset("nmnist")


def test_loader_jitter_override():
    ds = load_dataset("synthetic", "train", n_samples=20)
    assert ds.jitter == 0
    plain = next(iter(DataLoader(ds, batch_size=20, shuffle=False, augment=True)))[0]
    jit = next(iter(DataLoader(ds, batch_size=20, shuffle=False, augment=True, jitter=3)))[0]
    assert not (plain.n_events == jit.n_events and np.array_equal(plain.neuron, jit.neuron))
    off = DataLoader(ds, batch_size=20, shuffle=False, augment=False, jitter=3)
    x = next(iter(off))[0]
    np.testing.assert_array_equal(x.neuron, plain.neuron)  # no augmentation unless augment=True
