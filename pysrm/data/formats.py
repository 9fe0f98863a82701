"""Readers and writers of the event file formats of the neuromorphic datasets.

Every reader returns events as a NumPy structured array with the fields
``x, y, t, p`` (:data:`EVENT_DTYPE`): pixel column ``x``, pixel row ``y``,
timestamp ``t`` in **microseconds** (int64) and polarity ``p`` (0 = OFF,
1 = ON).  One-dimensional sensors (the cochlea of N-TIDIGITS, SLAYER's
``.bs1``) put the neuron/channel address in ``x`` and ``y = 0``.  All parsing
is vectorised with NumPy (no per-event Python loop); errors are ``ValueError``
(or ``FileNotFoundError``) naming the file, what was found and what was
expected.

Formats
-------
N-MNIST ``.bin`` (Orchard et al. 2015) and SLAYER ``.bs2``
    40 bits (5 bytes, big-endian) per event::

        byte 0        x address (pixels, 0-based)
        byte 1        y address
        byte 2 bit 7  polarity (1 = ON, 0 = OFF)
        bits 22..0    (bytes 2-4) timestamp in microseconds

    In the N-MNIST ``.bin`` files an event with ``y == 240`` is a timestamp
    overflow marker: it is not a spike and adds ``2**13`` us to the timestamps
    of all later events (:func:`read_nmnist_bin`).  SLAYER's ``.bs2``
    (:func:`read_bs2`) has no overflow markers; the N-MNIST ``.bs2`` files of
    SLAYER's ``NMNISTsmall`` are read with :func:`read_nmnist_bin` (34x34
    sensor, so ``y == 240`` never occurs as a pixel).
SLAYER ``.bs1`` (1-D spikes)
    40 bits per event: a 16-bit neuron id (bytes 0-1, big-endian), the
    polarity bit (bit 7 of byte 2) and a 23-bit timestamp in microseconds
    (bits 22..0 of bytes 2-4).  :func:`read_bs1` returns the id as ``x``.
AEDAT 3.1 (DVS Gesture)
    ASCII header lines starting with ``#`` (the last one is
    ``#!END-HEADER``), then packets.  A packet is a 28-byte little-endian
    header ``eventType (int16), eventSource (int16), eventSize (int32),
    eventTSOffset (int32), eventTSOverflow (int32), eventCapacity (int32),
    eventNumber (int32), eventValid (int32)`` followed by
    ``eventCapacity * eventSize`` bytes of events.  Only polarity packets
    (``eventType == 1``, 8-byte events ``(uint32 data, int32 timestamp)``) are
    events: ``valid = data & 1``, ``p = (data >> 1) & 1``,
    ``y = (data >> 2) & 0x1FFF``, ``x = (data >> 17) & 0x1FFF``,
    ``t = timestamp | (eventTSOverflow << 31)``.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

#: dtype of an event array (packed, 13 bytes per event); ``t`` in microseconds.
EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])

#: N-MNIST: events with this y address are timestamp-overflow markers.
NMNIST_OVERFLOW_Y = 240
#: N-MNIST: every overflow marker adds this many microseconds to later events.
NMNIST_OVERFLOW_US = 1 << 13
_T23 = (1 << 23) - 1


def make_events(x, y, t, p) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` array from equal-length field arrays.

    Parameters
    ----------
    x : array_like of int, shape (n_events,)
        Pixel column (or address of a 1-D sensor), in ``[0, 65535]``.
    y : array_like of int, shape (n_events,) or scalar
        Pixel row, in ``[0, 65535]``; a scalar is broadcast.
    t : array_like of int, shape (n_events,) or scalar
        Timestamp (us), >= 0.
    p : array_like of int, shape (n_events,) or scalar
        Polarity in ``[0, 255]`` (0 = OFF, 1 = ON; a polarity outside the sensor's channels is caught
        when binning); a scalar is broadcast.

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).

    Raises
    ------
    ValueError
        A field lies outside its range (names the field and the range found).
    """
    x = np.asarray(x)
    n = x.shape[0] if x.ndim else 1
    out = np.empty(n, dtype=EVENT_DTYPE)
    for name, val, lo, hi in (("x", x, 0, 65535), ("y", y, 0, 65535), ("p", p, 0, 255)):
        v = np.broadcast_to(np.asarray(val), (n,))
        if n and (v.min() < lo or v.max() > hi):
            raise ValueError(f"event field {name} must lie in [{lo}, {hi}], got [{v.min()}, {v.max()}]")
        out[name] = v
    tt = np.broadcast_to(np.asarray(t), (n,))
    if n and tt.min() < 0:
        raise ValueError(f"event timestamps t must be >= 0 us, got min {tt.min()}")
    out["t"] = tt
    return out


def as_events(arr, name: str = "events") -> np.ndarray:
    """Convert a structured array with fields ``x, y, t, p`` to :data:`EVENT_DTYPE`.

    This is the layout used by tonic and other neuromorphic tools.

    Parameters
    ----------
    arr : ndarray (structured)
        Fields ``x``, ``t``, ``p`` and optionally ``y`` (a missing ``y``, 1-D sensors or tonic's
        ``(t, x, p)``, means ``y = 0``).  ``x, y``: integers (or whole floats) in ``[0, 65535]``; ``t``:
        microseconds >= 0 (integer, or float rounded to the nearest microsecond); ``p``: bool,
        ``{0, 1}`` or ``{-1, 1}`` (``-1`` -> 0 = OFF), at most 255.
    name : str, default "events"
        Names the array in the messages.

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).
        ``arr`` itself when it already has this dtype.

    Raises
    ------
    TypeError
        ``arr`` is not a structured array, or a field has a non-numeric or non-integer dtype.
    ValueError
        A field is missing or out of its range, ``t`` is not finite, or ``p`` mixes 0 and -1.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise TypeError(f"{name} must be a NumPy structured array with fields x, y, t, p; "
                        f"got {type(arr).__name__}" + (f" of dtype {arr.dtype}" if isinstance(arr, np.ndarray) else ""))
    if arr.dtype == EVENT_DTYPE:
        return arr
    fields = set(arr.dtype.names)
    missing = {"x", "t", "p"} - fields
    if missing:
        raise ValueError(f"{name} lacks field(s) {sorted(missing)}; got fields {arr.dtype.names}, "
                         f"expected x, y, t, p (t in microseconds)")
    arr = arr.reshape(-1)
    n = arr.shape[0]
    out = np.empty(n, dtype=EVENT_DTYPE)
    for f in ("x", "y"):
        if f not in fields:
            out[f] = 0
            continue
        v = arr[f]
        if v.dtype.kind not in "iub":
            if v.dtype.kind == "f" and n and np.all(v == np.round(v)):
                v = v.astype(np.int64)
            else:
                raise TypeError(f"{name} field {f} must hold integers, got dtype {v.dtype}")
        if n and (v.min() < 0 or v.max() > 65535):
            raise ValueError(f"{name} field {f} must lie in [0, 65535], got [{v.min()}, {v.max()}]")
        out[f] = v
    t = arr["t"]
    if t.dtype.kind == "f":
        if n and not np.isfinite(t).all():
            raise ValueError(f"{name} field t contains non-finite values")
        t = np.round(t)
    elif t.dtype.kind not in "iu":
        raise TypeError(f"{name} field t must be numeric (microseconds), got dtype {t.dtype}")
    if n and t.min() < 0:
        raise ValueError(f"{name} field t must be >= 0 microseconds, got min {t.min()}")
    out["t"] = t
    p = arr["p"]
    if p.dtype.kind == "b":
        out["p"] = p
    else:
        if p.dtype.kind not in "iuf" or (n and not np.all(p == np.round(p))):
            raise TypeError(f"{name} field p must hold polarities 0/1 (or -1/1, bool), got dtype {p.dtype}")
        pi = p.astype(np.int64)
        if n and pi.min() < 0:
            if pi.min() < -1 or np.any(pi == 0):
                raise ValueError(f"{name} field p mixes 0 and -1 or holds values < -1; expected 0/1 or -1/1")
            pi = (pi > 0).astype(np.int64)
        if n and pi.max() > 255:
            raise ValueError(f"{name} field p must lie in [0, 255], got max {pi.max()}")
        out["p"] = pi
    return out


def _read_bytes(path, record: int, what: str) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % record:
        raise ValueError(
            f"{path}: truncated or corrupt {what} file: {raw.size} bytes is not a multiple of the "
            f"{record}-byte event size ({raw.size % record} trailing byte(s))")
    return raw.reshape(-1, record)


def _decode40(b: np.ndarray):
    """Split (n, 5) uint8 records into (byte0, byte1, polarity, 23-bit time)."""
    b2 = b[:, 2].astype(np.int64)
    t = (b2 & 0x7F) << 16 | b[:, 3].astype(np.int64) << 8 | b[:, 4].astype(np.int64)
    return b[:, 0], b[:, 1], (b2 >> 7).astype(np.uint8), t


def read_nmnist_bin(path, stats: dict | None = None) -> np.ndarray:
    """Read an N-MNIST ``.bin`` (or N-MNIST ``.bs2``) file, handling overflow markers.

    Events with ``y == 240`` are removed and add ``2**13`` us to all later timestamps.

    Parameters
    ----------
    path : str or os.PathLike
        The file (5 bytes per event).
    stats : dict, optional
        Its counter ``overflow_markers`` is increased by the number of markers.

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).
        In file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it).
    ValueError
        The file size is not a multiple of 5 bytes (truncated or corrupt; names the file).
    """
    b = _read_bytes(path, 5, "N-MNIST event")
    x, y, p, t = _decode40(b)
    ovf = y == NMNIST_OVERFLOW_Y
    n_ovf = int(np.count_nonzero(ovf))
    if n_ovf:
        t = t + np.cumsum(ovf, dtype=np.int64) * NMNIST_OVERFLOW_US
        keep = ~ovf
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    if stats is not None:
        stats["overflow_markers"] = stats.get("overflow_markers", 0) + n_ovf
    out = np.empty(x.shape[0], dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def read_bs2(path) -> np.ndarray:
    """Read a SLAYER ``.bs2`` 2-D spike file (``read2Dspikes``; no overflow markers).

    Parameters
    ----------
    path : str or os.PathLike
        The file (5 bytes per event).

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it).
    ValueError
        The file size is not a multiple of 5 bytes (names the file).
    """
    b = _read_bytes(path, 5, "SLAYER .bs2")
    x, y, p, t = _decode40(b)
    out = np.empty(x.shape[0], dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def read_bs1(path) -> np.ndarray:
    """Read a SLAYER ``.bs1`` 1-D spike file.

    Parameters
    ----------
    path : str or os.PathLike
        The file (5 bytes per event).

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).
        The 16-bit neuron id in ``x``, ``y = 0``.

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it).
    ValueError
        The file size is not a multiple of 5 bytes (names the file).
    """
    b = _read_bytes(path, 5, "SLAYER .bs1")
    hi, lo, p, t = _decode40(b)
    out = np.empty(hi.shape[0], dtype=EVENT_DTYPE)
    out["x"] = hi.astype(np.uint16) << 8 | lo
    out["y"], out["t"], out["p"] = 0, t, p
    return out


def _encode40(path, a: np.ndarray, b: np.ndarray, p: np.ndarray, t: np.ndarray, what: str) -> None:
    if t.size and (t.min() < 0 or t.max() > _T23):
        raise ValueError(f"{path}: {what} timestamps must lie in [0, {_T23}] us (23 bits), "
                         f"got [{t.min()}, {t.max()}]")
    if p.size and p.max() > 1:
        raise ValueError(f"{path}: {what} polarity must be 0 or 1, got max {p.max()}")
    out = np.empty((t.shape[0], 5), dtype=np.uint8)
    t = t.astype(np.int64)
    out[:, 0], out[:, 1] = a, b
    out[:, 2] = (t >> 16) & 0x7F | p.astype(np.int64) << 7
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    out.tofile(os.fspath(path))


def write_bs2(path, events) -> None:
    """Write events as a SLAYER ``.bs2`` file (5 bytes per event; overwrites ``path``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    events : ndarray (structured)
        Fields ``x, y, t, p`` (:func:`as_events`); ``x, y < 256``, ``t < 2**23`` us, ``p`` 0 or 1.

    Raises
    ------
    ValueError
        An address >= 256, a timestamp outside ``[0, 2**23)`` us or a polarity > 1 (names the file); or
        as for :func:`as_events`.
    TypeError
        As for :func:`as_events`.
    """
    ev = as_events(events)
    if ev.size and (ev["x"].max() > 255 or ev["y"].max() > 255):
        raise ValueError(f"{path}: .bs2 addresses must be < 256, got max x={ev['x'].max()}, y={ev['y'].max()}")
    _encode40(path, ev["x"], ev["y"], ev["p"], ev["t"], ".bs2")


def write_bs1(path, events) -> None:
    """Write 1-D events as a SLAYER ``.bs1`` file (5 bytes per event; overwrites ``path``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    events : ndarray (structured)
        Fields ``x`` (the neuron id, < 65536), ``t`` (< 2**23 us), ``p`` (0 or 1) (:func:`as_events`).

    Raises
    ------
    ValueError
        A timestamp outside ``[0, 2**23)`` us or a polarity > 1 (names the file); or as for
        :func:`as_events`.
    TypeError
        As for :func:`as_events`.
    """
    ev = as_events(events)
    xi = ev["x"].astype(np.int64)
    _encode40(path, xi >> 8, xi & 0xFF, ev["p"], ev["t"], ".bs1")


# ----------------------------------------------------------------------------- AEDAT 3.1
_AEDAT_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("tsoffset", "<i4"),
                          ("tsoverflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
AEDAT_POLARITY_EVENT = 1


def read_aedat31(path, stats: dict | None = None) -> np.ndarray:
    """Read the polarity events of an AEDAT 3.1 file (DVS Gesture recordings).

    Packets of other event types (special, frame, IMU ...) are skipped.
    Events whose validity bit is 0 are dropped with a warning giving their
    count (``stats['invalid_events']`` is incremented).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.aedat`` file.
    stats : dict, optional
        Its counter ``invalid_events`` is increased by the events dropped.

    Returns
    -------
    ndarray of EVENT_DTYPE, shape (n_events,)
        Fields ``x, y, t, p``; ``t`` in us (int64).
        In file order (AEDAT timestamps are monotonic); ``t = timestamp | (eventTSOverflow << 31)``.

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it).
    ValueError
        Not an AEDAT 3.x file, an unterminated header line, a truncated file or packet, a corrupt packet
        header, or a polarity packet whose events are not 8 bytes (each names the file and the offset).

    Warns
    -----
    UserWarning
        Events whose validity bit is 0 were dropped (gives their count).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"AEDAT file not found: {path}")
    with open(path, "rb") as f:
        buf = f.read()
    # --- ASCII header: lines starting with '#', ending with '#!END-HEADER'
    pos = 0
    if not buf.startswith(b"#!AER-DAT3"):
        raise ValueError(f"{path}: not an AEDAT 3.x file: expected the first line to start with "
                         f"'#!AER-DAT3', got {buf[:20]!r}")
    while pos < len(buf) and buf[pos:pos + 1] == b"#":
        end = buf.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{path}: AEDAT header line at byte {pos} is not terminated by a newline")
        line = buf[pos:end].rstrip(b"\r")
        pos = end + 1
        if line == b"#!END-HEADER":
            break
    data = np.frombuffer(buf, dtype=np.uint8)
    chunks = []
    n_invalid = 0
    nbytes = len(buf)
    # Python loop over *packets* (thousands per file), events decoded vectorised.
    while pos < nbytes:
        if nbytes - pos < _AEDAT_HEADER.itemsize:
            raise ValueError(f"{path}: truncated AEDAT file: {nbytes - pos} byte(s) at offset {pos}, "
                             f"expected a 28-byte packet header")
        h = np.frombuffer(buf, dtype=_AEDAT_HEADER, count=1, offset=pos)[0]
        size, cap, num = int(h["size"]), int(h["capacity"]), int(h["number"])
        if size <= 0 or cap < 0 or num < 0 or num > cap:
            raise ValueError(f"{path}: corrupt AEDAT packet header at offset {pos}: eventSize={size}, "
                             f"eventCapacity={cap}, eventNumber={num} (expected size > 0, 0 <= number <= capacity)")
        pos += _AEDAT_HEADER.itemsize
        plen = cap * size
        if pos + plen > nbytes:
            raise ValueError(f"{path}: truncated AEDAT packet at offset {pos - 28}: header announces "
                             f"{cap} events of {size} bytes ({plen} bytes), only {nbytes - pos} remain")
        if int(h["type"]) == AEDAT_POLARITY_EVENT and num:
            if size != 8:
                raise ValueError(f"{path}: polarity packet at offset {pos - 28} has eventSize={size}, expected 8")
            ev = data[pos:pos + num * 8].view("<u4").reshape(num, 2)
            d = ev[:, 0]
            ts = ev[:, 1].astype(np.int64) | (int(h["tsoverflow"]) << 31)
            valid = (d & 1).astype(bool)
            if not valid.all():
                n_invalid += int(num - np.count_nonzero(valid))
                d, ts = d[valid], ts[valid]
            out = np.empty(d.shape[0], dtype=EVENT_DTYPE)
            out["x"] = (d >> 17) & 0x1FFF
            out["y"] = (d >> 2) & 0x1FFF
            out["p"] = (d >> 1) & 1
            out["t"] = ts
            chunks.append(out)
        pos += plen
    if n_invalid:
        warnings.warn(f"{path}: dropped {n_invalid} event(s) whose AEDAT validity bit is 0", stacklevel=2)
    if stats is not None:
        stats["invalid_events"] = stats.get("invalid_events", 0) + n_invalid
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=EVENT_DTYPE)


def write_aedat31(path, events, packet_size: int = 4096) -> None:
    """Write polarity events as an AEDAT 3.1 file (mainly for tests and conversions; overwrites ``path``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    events : ndarray (structured)
        Fields ``x, y, t, p`` (:func:`as_events`); ``x, y < 8192``, ``t`` in us.
    packet_size : int, default 4096
        Events per polarity packet.

    Raises
    ------
    ValueError
        A packet's timestamps span a 2**31 us overflow (use a smaller ``packet_size``); or as for
        :func:`as_events`.
    TypeError
        As for :func:`as_events`.
    """
    ev = as_events(events)
    t = ev["t"].astype(np.int64)
    with open(os.fspath(path), "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        for s in range(0, len(ev), packet_size):
            e, tt = ev[s:s + packet_size], t[s:s + packet_size]
            ovf = int(tt[0] >> 31)
            if (tt >> 31 != ovf).any():
                raise ValueError(f"{path}: a packet spans a timestamp overflow; use a smaller packet_size")
            hdr = np.zeros(1, dtype=_AEDAT_HEADER)
            hdr["type"], hdr["source"], hdr["size"], hdr["tsoffset"] = AEDAT_POLARITY_EVENT, 1, 8, 4
            hdr["tsoverflow"], hdr["capacity"], hdr["number"], hdr["valid"] = ovf, len(e), len(e), len(e)
            body = np.empty((len(e), 2), dtype="<u4")
            body[:, 0] = (e["x"].astype(np.uint32) << 17 | e["y"].astype(np.uint32) << 2
                          | e["p"].astype(np.uint32) << 1 | 1)
            body[:, 1] = (tt & 0x7FFFFFFF).astype(np.uint32)
            f.write(hdr.tobytes())
            f.write(body.tobytes())


def read_gesture_labels(path) -> np.ndarray:
    """Read a DVS Gesture ``<trial>_labels.csv`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its header line ``class,startTime_usec,endTime_usec`` is required.

    Returns
    -------
    ndarray, shape (n_gestures, 3), int64
        ``(class, start, end)`` per gesture: the class 1-based as in the file (1..11), start and end in us.

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it and the ``.aedat`` it belongs to).
    ValueError
        An empty file, a missing header, a line that is not three integers (names the line), no gesture,
        or a gesture that ends before it starts.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DVS Gesture label file not found: {path} (every <trial>.aedat needs a "
                                f"<trial>_labels.csv next to it)")
    with open(path, "r", encoding="utf-8") as f:
        lines = [ln.strip() for ln in f.read().splitlines()]
    lines = [(i + 1, ln) for i, ln in enumerate(lines) if ln]
    if not lines or not lines[0][1].lower().startswith("class"):
        raise ValueError(f"{path}: expected the header 'class,startTime_usec,endTime_usec', "
                         f"got {lines[0][1]!r}" if lines else f"{path}: empty label file")
    rows = []
    for lineno, ln in lines[1:]:
        parts = ln.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            rows.append([int(float(v)) for v in parts])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'class,startTime_usec,endTime_usec' with integers, "
                             f"got {ln!r}") from None
    if not rows:
        raise ValueError(f"{path}: no labelled gesture (only the header line)")
    arr = np.asarray(rows, dtype=np.int64)
    bad = np.flatnonzero(arr[:, 2] <= arr[:, 1])
    if bad.size:
        raise ValueError(f"{path}: gesture {bad[0] + 1} ends ({arr[bad[0], 2]} us) before it starts "
                         f"({arr[bad[0], 1]} us)")
    return arr


def read_sample_list(path) -> np.ndarray:
    """Read a SLAYER sample list (``train1K.txt`` ...): ``id class`` lines after a ``#`` header.

    Parameters
    ----------
    path : str or os.PathLike
        The list; blank lines and lines starting with ``#`` are skipped.

    Returns
    -------
    ndarray, shape (n_samples, 2), int64
        ``(id, class)`` per sample.

    Raises
    ------
    FileNotFoundError
        The file does not exist (names it).
    ValueError
        A line that is not two integers (names the line), or no sample.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sample list file not found: {path}")
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, ln in enumerate(f, 1):
            s = ln.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                rows.append((int(parts[0]), int(parts[1])))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected a line '<sample id> <class>' with two "
                                 f"integers, got {s!r}") from None
    if not rows:
        raise ValueError(f"{path}: the sample list holds no sample (expected '<id> <class>' lines)")
    return np.asarray(rows, dtype=np.int64)
