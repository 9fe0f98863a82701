"""Event file formats: independent (per-event, struct-based) test writers vs the vectorised readers."""
import os
import pathlib
import struct
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pysrm.data import formats as F  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
NTIDIGITS_BS1 = SHARED / "slayer_formats" / "NTIDIGITS_1.bs1"


# ----------------------------------------------------------------------------- test writers
def write_40bit(path, a, b, p, t):
    """Naive writer of 5-byte events (bytes a, b; polarity bit; 23-bit time)."""
    with open(path, "wb") as f:
        for ai, bi, pi, ti in zip(a, b, p, t):
            assert 0 <= ti < 2 ** 23
            f.write(bytes([ai, bi, (pi << 7) | (ti >> 16), (ti >> 8) & 0xFF, ti & 0xFF]))


def write_nmnist_bin(path, x, y, p, t):
    """N-MNIST writer inserting y == 240 overflow markers (each adds 2**13 us to later events)."""
    k = 0
    with open(path, "wb") as f:
        for xi, yi, pi, ti in zip(x, y, p, t):
            while ti - k * 2 ** 13 > 2 ** 23 - 1:
                f.write(bytes([0, 240, 0, 0, 0]))
                k += 1
            tt = ti - k * 2 ** 13
            f.write(bytes([xi, yi, (pi << 7) | (tt >> 16), (tt >> 8) & 0xFF, tt & 0xFF]))
    return k


def aedat_packet(etype, size, events_bytes, number, tsoverflow=0):
    return struct.pack("<hhiiiiii", etype, 1, size, 4, tsoverflow, number, number, number) + events_bytes


def polarity_packet(x, y, p, t, valid=None, tsoverflow=0):
    body = b""
    for k, (xi, yi, pi, ti) in enumerate(zip(x, y, p, t)):
        v = 1 if valid is None else int(valid[k])
        body += struct.pack("<Ii", (xi << 17) | (yi << 2) | (pi << 1) | v, ti)
    return aedat_packet(1, 8, body, len(x), tsoverflow)


def write_aedat(path, packets, header=(b"#!AER-DAT3.1", b"#Format: RAW", b"#Source 1: DVS128", b"#!END-HEADER")):
    with open(path, "wb") as f:
        for h in header:
            f.write(h + b"\r\n")
        for pk in packets:
            f.write(pk)


def rand_events(rng, n, w=34, h=34, tmax=300_000):
    t = np.sort(rng.integers(0, tmax, n))
    return rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), t


# ----------------------------------------------------------------------------- N-MNIST / bs2 / bs1
def test_nmnist_bin_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x, y, p, t = rand_events(rng, 500)
    write_40bit(tmp_path / "a.bin", x, y, p, t)
    ev = F.read_nmnist_bin(tmp_path / "a.bin")
    assert ev.dtype == F.EVENT_DTYPE and ev.size == 500
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["y"], y)
    np.testing.assert_array_equal(ev["p"], p)
    np.testing.assert_array_equal(ev["t"], t)
    ev2 = F.read_bs2(tmp_path / "a.bin")
    assert (ev2 == ev).all()


def test_nmnist_overflow_markers(tmp_path):
    x, y, p = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [1, 0, 1, 0, 1]
    t = [10, 2 ** 23 - 5, 2 ** 23 + 100, 2 ** 23 + 3 * 2 ** 13, 2 ** 23 + 10 * 2 ** 13 + 7]
    k = write_nmnist_bin(tmp_path / "o.bin", x, y, p, t)
    assert k == 11
    stats = {}
    ev = F.read_nmnist_bin(tmp_path / "o.bin", stats)
    assert stats["overflow_markers"] == 11
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["y"], y)  # markers are not spikes
    # SLAYER's .bs2 reader has no overflow handling: markers stay as y == 240 events
    raw = F.read_bs2(tmp_path / "o.bin")
    assert raw.size == 16 and np.count_nonzero(raw["y"] == 240) == 11


def test_bs2_library_writer_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    ev = F.make_events(*rand_events(rng, 300)[:2], rand_events(rng, 300)[3], rng.integers(0, 2, 300))
    F.write_bs2(tmp_path / "w.bs2", ev)
    back = F.read_bs2(tmp_path / "w.bs2")
    assert (back == ev).all()
    # byte-identical to the independent test writer
    write_40bit(tmp_path / "ref.bs2", ev["x"], ev["y"], ev["p"], ev["t"])
    assert (tmp_path / "ref.bs2").read_bytes() == (tmp_path / "w.bs2").read_bytes()


def test_bs1_round_trip(tmp_path):
    ids = np.array([0, 1, 255, 256, 1000, 65535])
    t = np.array([0, 5, 6, 1000, 2 ** 23 - 1, 77])
    p = np.array([1, 0, 1, 1, 0, 0])
    with open(tmp_path / "n.bs1", "wb") as f:
        for i, pi, ti in zip(ids, p, t):
            f.write(struct.pack(">H", i) + bytes([(pi << 7) | (ti >> 16), (ti >> 8) & 0xFF, ti & 0xFF]))
    ev = F.read_bs1(tmp_path / "n.bs1")
    np.testing.assert_array_equal(ev["x"], ids)
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["p"], p)
    assert (ev["y"] == 0).all()
    F.write_bs1(tmp_path / "w.bs1", ev)
    assert (tmp_path / "w.bs1").read_bytes() == (tmp_path / "n.bs1").read_bytes()


@pytest.mark.skipif(not NTIDIGITS_BS1.is_file(), reason="shared N-TIDIGITS sample absent")
def test_real_ntidigits_bs1(tmp_path):
    ev = F.read_bs1(NTIDIGITS_BS1)
    assert ev.size == 898
    assert ev["x"].min() == 0 and ev["x"].max() == 63
    assert (ev["p"] == 1).all()
    assert ev["t"][0] == 0 and ev["t"].max() == 1079040
    np.testing.assert_array_equal(ev["x"][:6], [63, 63, 63, 63, 6, 9])
    np.testing.assert_array_equal(ev["t"][:6], [0, 1024, 2304, 3328, 378880, 379904])
    F.write_bs1(tmp_path / "copy.bs1", ev)
    assert (tmp_path / "copy.bs1").read_bytes() == NTIDIGITS_BS1.read_bytes()


@pytest.mark.parametrize("reader", [F.read_nmnist_bin, F.read_bs1, F.read_bs2])
def test_truncated_40bit_file(tmp_path, reader):
    write_40bit(tmp_path / "t.bs2", [1, 2], [3, 4], [0, 1], [5, 6])
    with open(tmp_path / "t.bs2", "ab") as f:
        f.write(b"\x01\x02\x03")
    with pytest.raises(ValueError, match=r"t\.bs2.*13 bytes is not a multiple of the 5-byte"):
        reader(tmp_path / "t.bs2")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bs2"):
        F.read_bs2(tmp_path / "nope.bs2")


def test_writer_rejects_unencodable(tmp_path):
    ev = F.make_events([300], [1], [5], [0])
    with pytest.raises(ValueError, match="< 256"):
        F.write_bs2(tmp_path / "x.bs2", ev)
    ev = F.make_events([3], [1], [2 ** 23], [0])
    with pytest.raises(ValueError, match="23 bits"):
        F.write_bs2(tmp_path / "x.bs2", ev)


# ----------------------------------------------------------------------------- AEDAT 3.1
def test_aedat_round_trip_and_skipping(tmp_path):
    rng = np.random.default_rng(3)
    x, y, p, t = rand_events(rng, 50, 128, 128, 10_000_000)
    special = aedat_packet(0, 8, bytes(8 * 3), 3)  # special events: skipped
    imu = aedat_packet(5, 16, bytes(range(16)) * 2, 2)  # another type with another size: skipped
    write_aedat(tmp_path / "r.aedat", [special, polarity_packet(x[:20], y[:20], p[:20], t[:20]), imu,
                                       polarity_packet(x[20:], y[20:], p[20:], t[20:])])
    ev = F.read_aedat31(tmp_path / "r.aedat")
    for name, ref in zip("xypt", (x, y, p, t)):
        np.testing.assert_array_equal(ev[name], ref)
    # library writer -> reader
    F.write_aedat31(tmp_path / "w.aedat", ev, packet_size=16)
    assert (F.read_aedat31(tmp_path / "w.aedat") == ev).all()


def test_aedat_ts_overflow_and_invalid(tmp_path):
    pk = polarity_packet([1, 2, 3], [4, 5, 6], [1, 0, 1], [10, 20, 30], valid=[1, 0, 1], tsoverflow=2)
    write_aedat(tmp_path / "v.aedat", [pk])
    stats = {}
    with pytest.warns(UserWarning, match=r"v\.aedat: dropped 1 event"):
        ev = F.read_aedat31(tmp_path / "v.aedat", stats)
    assert stats["invalid_events"] == 1
    np.testing.assert_array_equal(ev["x"], [1, 3])
    np.testing.assert_array_equal(ev["t"], [10 + (2 << 31), 30 + (2 << 31)])


def test_aedat_truncated_and_corrupt(tmp_path):
    pk = polarity_packet([1, 2, 3], [4, 5, 6], [1, 0, 1], [10, 20, 30])
    write_aedat(tmp_path / "t.aedat", [pk[:-5]])
    with pytest.raises(ValueError, match=r"t\.aedat: truncated AEDAT packet"):
        F.read_aedat31(tmp_path / "t.aedat")
    write_aedat(tmp_path / "h.aedat", [pk, pk[:10]])
    with pytest.raises(ValueError, match=r"h\.aedat: truncated AEDAT file.*28-byte packet header"):
        F.read_aedat31(tmp_path / "h.aedat")
    (tmp_path / "n.aedat").write_bytes(b"hello world\n")
    with pytest.raises(ValueError, match="not an AEDAT 3"):
        F.read_aedat31(tmp_path / "n.aedat")
    bad = aedat_packet(1, 12, bytes(12), 1)
    write_aedat(tmp_path / "s.aedat", [bad])
    with pytest.raises(ValueError, match="eventSize=12, expected 8"):
        F.read_aedat31(tmp_path / "s.aedat")


def test_gesture_labels(tmp_path):
    (tmp_path / "l.csv").write_text("class,startTime_usec,endTime_usec\n1,100,200\n11,300,900\n\n")
    np.testing.assert_array_equal(F.read_gesture_labels(tmp_path / "l.csv"), [[1, 100, 200], [11, 300, 900]])
    (tmp_path / "b.csv").write_text("class,startTime_usec,endTime_usec\n1,100\n")
    with pytest.raises(ValueError, match=r"b\.csv:2"):
        F.read_gesture_labels(tmp_path / "b.csv")
    (tmp_path / "r.csv").write_text("class,startTime_usec,endTime_usec\n1,300,100\n")
    with pytest.raises(ValueError, match="ends"):
        F.read_gesture_labels(tmp_path / "r.csv")
    with pytest.raises(FileNotFoundError, match="missing_labels.csv"):
        F.read_gesture_labels(tmp_path / "missing_labels.csv")


def test_sample_list(tmp_path):
    (tmp_path / "train.txt").write_text("#sample #class\n1\t5\n2\t0\n\n")
    np.testing.assert_array_equal(F.read_sample_list(tmp_path / "train.txt"), [[1, 5], [2, 0]])
    (tmp_path / "bad.txt").write_text("#sample #class\n1 5\nfoo 3\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3.*'foo 3'"):
        F.read_sample_list(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("#sample #class\n")
    with pytest.raises(ValueError, match="no sample"):
        F.read_sample_list(tmp_path / "empty.txt")


# ----------------------------------------------------------------------------- in-memory arrays
def test_as_events_tonic_layouts():
    tonic = np.zeros(4, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    tonic["x"], tonic["y"], tonic["t"], tonic["p"] = [1, 2, 3, 4], [5, 6, 7, 8], [0, 10, 20, 30], [1, 0, 1, 0]
    ev = F.as_events(tonic)
    assert ev.dtype == F.EVENT_DTYPE
    np.testing.assert_array_equal(ev["p"], [1, 0, 1, 0])
    # float times (rounded to us), -1/1 polarity, field order t, x, p without y (1-D)
    a = np.zeros(3, dtype=[("t", float), ("x", int), ("p", int)])
    a["t"], a["x"], a["p"] = [0.4, 10.6, 20.0], [1, 2, 3], [-1, 1, -1]
    ev = F.as_events(a)
    np.testing.assert_array_equal(ev["t"], [0, 11, 20])
    np.testing.assert_array_equal(ev["p"], [0, 1, 0])
    assert (ev["y"] == 0).all()


def test_as_events_errors():
    with pytest.raises(TypeError, match="structured array"):
        F.as_events(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['p'\]"):
        F.as_events(np.zeros(2, dtype=[("x", int), ("y", int), ("t", int)]))
    a = np.zeros(2, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    a["t"] = [-5, 3]
    with pytest.raises(ValueError, match="t must be >= 0"):
        F.as_events(a)
    a["t"], a["x"] = [1, 2], [-1, 3]
    with pytest.raises(ValueError, match="field x must lie in"):
        F.as_events(a)
    a["x"], a["p"] = [1, 3], [0, 2]
    # polarity 2 is representable; it is rejected later as outside a 2-channel sensor
    assert F.as_events(a)["p"][1] == 2


def test_read_is_vectorised_fast(tmp_path):
    """200k events parse in well under a second (no per-event Python loop)."""
    import time
    rng = np.random.default_rng(5)
    n = 200_000
    raw = np.zeros((n, 5), np.uint8)
    raw[:, 0], raw[:, 1] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    raw.tofile(tmp_path / "big.bin")
    t0 = time.perf_counter()
    ev = F.read_nmnist_bin(tmp_path / "big.bin")
    assert ev.size == n and time.perf_counter() - t0 < 1.0
    assert os.path.getsize(tmp_path / "big.bin") == 5 * n
