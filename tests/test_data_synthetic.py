"""The built-in synthetic glyph event dataset."""
import pathlib
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import DataLoader, load_dataset  # noqa: E402
from pysrm.data.synthetic import generate  # noqa: E402
from pysrm.params import SimParams  # noqa: E402


def count_features(ds):
    """Per-pixel event counts (both polarities summed), L2-normalised."""
    c, h, w = ds.native_shape
    f = np.zeros((len(ds), h * w))
    for i in range(len(ds)):
        ev = ds.events(i)
        f[i] = np.bincount(ev["y"].astype(np.int64) * w + ev["x"], minlength=h * w)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def nearest_centroid_accuracy(f_tr, y_tr, f_te, y_te, n_classes):
    cent = np.stack([f_tr[y_tr == k].mean(0) for k in range(n_classes)])
    pred = np.argmin(((f_te[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    return float((pred == y_te).mean())


@pytest.fixture(scope="module")
def default_splits():
    t0 = time.perf_counter()
    tr = load_dataset("synthetic", "train")
    gen = time.perf_counter() - t0
    te = load_dataset("synthetic", "test")
    return tr, te, gen


def test_defaults(default_splits):
    tr, te, gen = default_splits
    assert (len(tr), len(te)) == (2000, 500)
    assert tr.sensor_shape == (2, 16, 16) and tr.sim == SimParams(1.0, 100.0) and tr.n_classes == 10
    assert tr.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(tr.labels), [200] * 10)  # balanced: chance level 10 %
    np.testing.assert_array_equal(np.bincount(te.labels), [50] * 10)
    assert gen < 4.0, f"generating 2000 samples took {gen:.2f} s"  # ~0.5 s; generous for loaded machines
    assert tr.n_parsed == 0
    ev = tr.events(0)
    assert ev["t"].min() >= 0 and ev["t"].max() < 100_000 and np.all(np.diff(ev["t"]) >= 0)
    assert set(np.unique(ev["p"])) <= {0, 1}


def test_density_few_percent(default_splits):
    tr = default_splits[0]
    x, _ = next(iter(DataLoader(tr, batch_size=200, shuffle=False)))
    assert 0.005 < x.density < 0.05, x.density
    n_ev = np.array([tr.events(i).size for i in range(200)])
    assert 500 < n_ev.mean() < 2000


def test_nearest_centroid_well_above_chance(default_splits):
    tr, te, _ = default_splits
    f_tr, f_te = count_features(tr), count_features(te)
    acc = nearest_centroid_accuracy(f_tr, tr.labels, f_te, te.labels, 10)
    assert acc > 0.93, acc  # ~0.98
    # with the labels shuffled the same classifier is at chance level (10 %)
    perm = np.random.default_rng(0).permutation(tr.labels)
    chance = nearest_centroid_accuracy(f_tr, perm, f_te, te.labels, 10)
    assert chance < 0.2, chance


def test_deterministic_and_seeded():
    a = load_dataset("synthetic", "train", n_samples=50)
    b = load_dataset("synthetic", "train", n_samples=50)
    c = load_dataset("synthetic", "train", n_samples=50, seed=1)
    t = load_dataset("synthetic", "test", n_samples=50)
    assert all((a.events(i) == b.events(i)).all() for i in range(50))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not (a.events(0).size == c.events(0).size and (a.events(0) == c.events(0)).all())
    assert not (a.events(0).size == t.events(0).size and (a.events(0) == t.events(0)).all())


def test_options():
    ds = load_dataset("synthetic", "train", n_samples=30, size=24, n_classes=3, sim=SimParams(2.0, 60.0),
                      noise_rate=0.0)
    assert len(ds) == 30 and ds.sensor_shape == (2, 24, 24) and ds.n_classes == 3
    assert set(ds.labels) == {0, 1, 2}
    assert max(ds.events(i)["t"].max() for i in range(30)) < 60_000
    x = ds.sample(0)
    assert x.shape == (1, 2, 24, 24, 30)
    d = load_dataset("synthetic", "train", n_samples=10, duration=50.0)
    assert d.sim.t_sample == 100.0 and max(d.events(i)["t"].max() for i in range(10)) < 50_000
    assert load_dataset("synthetic", "test", n_samples=10, downsample=2).sensor_shape == (2, 8, 8)
    with pytest.raises(ValueError, match="n_classes must be <= 10"):
        generate(10, n_classes=11)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        load_dataset("synthetic", n_samples=2.5)
