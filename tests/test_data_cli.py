"""``pysrm data info`` on the shared samples and on small generated datasets."""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest
from click.testing import CliRunner

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import make_events, write_aedat31  # noqa: E402

SMALL = pathlib.Path(os.environ.get("PYSRM_NMNIST_SMALL", REPO.parent / "shared" / "data" / "NMNISTsmall"))
BS1 = REPO.parent / "shared" / "data" / "slayer_formats" / "NTIDIGITS_1.bs1"


def load_data_cmd():
    try:
        from pysrm_cli.data_cmd import data
        return data
    except ImportError:
        spec = importlib.util.spec_from_file_location("_pysrm_cli_data_cmd", REPO / "cli" / "data_cmd.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.data


def run(*args):
    return CliRunner().invoke(load_data_cmd(), list(args))


@pytest.mark.skipif(not (SMALL / "train1K.txt").is_file(), reason="NMNISTsmall absent")
def test_info_nmnist_small():
    r = run("info", str(SMALL))
    assert r.exit_code == 0, r.output
    assert "dataset nmnist  split train: 1000 samples, 10 classes" in r.output
    assert "split test: 100 samples" in r.output
    assert "sensor (C, H, W) = (2, 34, 34)" in r.output
    assert "0: 97, 1: 116, 2: 99" in r.output
    assert "events per sample: mean 4133.2, min 1112, max 7152 (total 4133231)" in r.output
    assert "duration (ms): mean 307.7" in r.output
    r = run("info", str(SMALL), "--split", "test", "--list-file", "test100.txt", "--max-samples", "10")
    assert r.exit_code == 0 and "100 samples" in r.output and "(first 10 samples)" in r.output


def test_info_synthetic():
    r = run("info", "synthetic", "--split", "test")
    assert r.exit_code == 0, r.output
    assert "dataset synthetic  split test: 500 samples" in r.output and "0: 50" in r.output
    assert "(2, 16, 16)" in r.output and "T = 100 bins of 1 ms" in r.output


@pytest.mark.skipif(not BS1.is_file(), reason="shared N-TIDIGITS sample absent")
def test_info_single_file():
    r = run("info", str(BS1))
    assert r.exit_code == 0, r.output
    assert "898 events" in r.output and "x in [0, 63]" in r.output and "1079.040] ms" in r.output


def test_info_gesture_and_ntidigits(tmp_path):
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 3_000_000, 400))
    write_aedat31(tmp_path / "user01_a.aedat", make_events(rng.integers(0, 128, 400), rng.integers(0, 128, 400), t,
                                                          rng.integers(0, 2, 400)))
    (tmp_path / "user01_a_labels.csv").write_text("class,startTime_usec,endTime_usec\n2,0,1000000\n4,1000000,2500000\n")
    (tmp_path / "trials_to_train.txt").write_text("user01_a.aedat\n")
    r = run("info", str(tmp_path), "--split", "train")
    assert r.exit_code == 0, r.output
    assert "dataset dvs-gesture  split train: 2 samples, 11 classes" in r.output
    assert "right_hand_wave: 1" in r.output and "duration (ms): mean 1250.0, min 1000.0, max 1500.0" in r.output
    r = run("info", str(tmp_path))  # the test split list is missing: the train split is summarised, and so said
    assert r.exit_code == 0, r.output
    assert "dataset dvs-gesture  split train: 2 samples" in r.output
    assert "no test split (only train is there)" in r.output and "trials_to_test.txt" in r.output
    r = run("info", str(tmp_path), "--split", "test")  # asked for explicitly: an error
    assert r.exit_code == 1 and "trials_to_test.txt" in r.output
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "n-tidigits.hdf5", "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}_labels", data=np.array([b"ae-o", b"ae-12"]))
            for g, v in (("addresses", [1, 2, 3]), ("timestamps", [0.1, 0.2, 0.3])):
                grp = f.create_group(f"{split}_{g}")
                grp.create_dataset("ae-o", data=np.array(v))
                grp.create_dataset("ae-12", data=np.array(v))
    r = run("info", str(tmp_path / "n-tidigits.hdf5"))
    assert r.exit_code == 0, r.output
    assert "dataset ntidigits  split train: 1 samples, 11 classes" in r.output and "(64, 1, 1)" in r.output
    assert "skipped 1 multi-digit" in r.output


def test_info_errors(tmp_path):
    r = run("info", str(tmp_path))
    assert r.exit_code == 1 and "cannot tell which dataset" in r.output
    r = run("info", str(tmp_path / "missing"))
    assert r.exit_code == 1 and "no such file or directory" in r.output
    (tmp_path / "x.bs2").write_bytes(b"\x00" * 7)
    r = run("info", str(tmp_path / "x.bs2"))
    assert r.exit_code == 1 and "not a multiple of the 5-byte" in r.output
    r = run("info", "synthetic", "--list-file", "a.txt")
    assert r.exit_code == 1 and "N-MNIST only" in r.output


SLAYER_FORMATS = REPO.parent / "shared" / "data" / "slayer_formats"


@pytest.mark.parametrize("name", ["1.bs3", "Copy.bsn", "x.evt"])
def test_info_unsupported_file_says_so_and_lists_the_supported_formats(tmp_path, name):
    """Issue 16: `data info FILE.bs3` said "cannot tell which dataset ... pass --dataset", and then
    suggested `pysrm data fetch nmnist --to FILE.bs3`."""
    path = SLAYER_FORMATS / name
    if not path.is_file():
        path = tmp_path / name
        path.write_bytes(b"\x00" * 10)
    r = run("info", str(path))
    assert r.exit_code == 1
    assert f"unsupported format '{path.suffix}'" in r.output
    for ext in (".aedat", ".bin", ".bs1", ".bs2", "n-tidigits.hdf5"):
        assert ext in r.output
    assert "cannot tell which dataset" not in r.output and "fetch" not in r.output
    r = run("info", str(path), "--dataset", "nmnist")
    assert r.exit_code == 1 and "is a file, but nmnist data_dir must be a folder" in r.output
    assert "fetch" not in r.output


def test_info_folder_with_only_a_test_split(tmp_path):
    """Issue 16: `data info DIR` on a folder with only Test/ failed with "no train split"."""
    rng = np.random.default_rng(0)
    for c in (3, 5):
        d = tmp_path / "Test" / str(c)
        d.mkdir(parents=True)
        x, y = rng.integers(0, 34, 20), rng.integers(0, 34, 20)
        t = np.sort(rng.integers(0, 300_000, 20))
        with open(d / "00001.bin", "wb") as f:
            for xi, yi, ti in zip(x, y, t):
                f.write(bytes([int(xi), int(yi), int(ti) >> 16, (int(ti) >> 8) & 0xFF, int(ti) & 0xFF]))
    r = run("info", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "dataset nmnist  split test: 2 samples, 10 classes" in r.output
    assert "3: 1" in r.output and "5: 1" in r.output and "events per sample: mean 20.0" in r.output
    assert "no train split (only test is there)" in r.output


def test_info_counts_empty_samples(tmp_path):
    (tmp_path / "1.bs2").write_bytes(bytes([1, 2, 0, 0, 10]))
    (tmp_path / "2.bs2").write_bytes(b"")
    (tmp_path / "train1.txt").write_text("#id class\n1 3\n2 4\n")
    r = run("info", str(tmp_path), "--split", "train")
    assert r.exit_code == 0, r.output
    assert "empty samples (no event inside the sensor): 1, e.g. " in r.output and "2.bs2" in r.output
