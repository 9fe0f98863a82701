"""Dataset statistics for ``pysrm data info``."""
from __future__ import annotations

import glob
import os

import numpy as np

from .formats import read_aedat31, read_bs1, read_bs2, read_nmnist_bin

EVENT_FILE_READERS = {".bs1": read_bs1, ".bs2": read_bs2, ".bin": read_nmnist_bin, ".aedat": read_aedat31}
#: what each single-file format is (``pysrm data info FILE``)
EVENT_FILE_FORMATS = {".aedat": "AEDAT 3.1 (DVS Gesture recordings)", ".bin": "N-MNIST 40-bit events",
                      ".bs1": "SLAYER 1-D spikes", ".bs2": "SLAYER 2-D spikes"}
#: dataset files that are not single event files
DATASET_FILES = (".hdf5", ".h5")


def supported_formats() -> str:
    """One line listing what ``pysrm data info`` reads (for error messages).

    Returns
    -------
    str
    """
    files = ", ".join(f"{ext} ({what})" for ext, what in sorted(EVENT_FILE_FORMATS.items()))
    return (f"single event files {files}; N-TIDIGITS n-tidigits.hdf5; dataset folders (N-MNIST Train/ and Test/ "
            f"or <id>.bs2 with train*.txt/test*.txt lists, DVS Gesture with trials_to_train.txt/trials_to_test.txt)")


def unsupported_file(path) -> str | None:
    """The error message for a file ``pysrm data info`` cannot read.

    Parameters
    ----------
    path : str or os.PathLike
        The file (only its extension is looked at).

    Returns
    -------
    str or None
        The message (names the file, its format and what is supported); None when the format is supported.
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in EVENT_FILE_READERS or ext in DATASET_FILES:
        return None
    what = f"format {ext!r}" if ext else "format (no file extension)"
    extra = (" SLAYER's .bs3 (3-D spikes) and .bsn (spike counts) files are not read by pysrm."
             if ext in (".bs3", ".bsn") else "")
    return f"{path}: unsupported {what}; supported: {supported_formats()}.{extra}"


def detect(path) -> str | None:
    """Guess the dataset stored at ``path`` from its files.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset folder, or an HDF5 file.

    Returns
    -------
    str or None
        ``'nmnist'``, ``'dvs-gesture'`` or ``'ntidigits'``; None when nothing matches.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return "ntidigits" if path.endswith((".hdf5", ".h5")) else None
    if not os.path.isdir(path):
        return None
    if os.path.isfile(os.path.join(path, "n-tidigits.hdf5")):
        return "ntidigits"
    for d in (path, os.path.join(path, "DvsGesture")):
        if glob.glob(os.path.join(d, "trials_to_*.txt")):
            return "dvs-gesture"
    for d in (path, os.path.join(path, "NMNIST")):
        if any(os.path.isdir(os.path.join(d, s)) for s in ("Train", "Test", "train", "test")):
            return "nmnist"
    if glob.glob(os.path.join(path, "*.bs2")) and glob.glob(os.path.join(path, "*.txt")):
        return "nmnist"
    return None


def _stats(a):
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def summarize(ds, max_samples: int | None = None) -> dict:
    """Sample counts per class, events per sample, durations and sensor size of a dataset.

    Event and duration statistics parse the samples (all, or the first
    ``max_samples``); class counts always cover the whole split.

    Parameters
    ----------
    ds : EventDataset
        The dataset.
    max_samples : int, optional
        Measure only the first ``max_samples`` samples; default all.

    Returns
    -------
    dict
        ``dataset``, ``split``, ``n_samples``, ``n_classes``, ``sensor_shape`` and ``input_shape``
        (``(C, H, W)`` before and after downsampling), ``sim`` (``ts`` and ``t_sample`` in ms, ``n_bins``),
        ``class_counts``, ``samples_measured``, ``events_per_sample`` and ``duration_ms`` (mean, min,
        max), ``total_events``, ``dropped``, ``empty_samples``, ``empty_examples``; for pysrm's datasets
        also ``outside_window_samples``, ``outside_window_examples``, ``time_report``; for N-TIDIGITS
        ``skipped_multi_digit``.  Read by :func:`format_summary`.
    """
    n = len(ds)
    m = n if max_samples is None else min(n, int(max_samples))
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    n_ev = np.array([ds.events(i, allow_empty=True).size for i in range(m)], dtype=np.int64)
    empty = np.flatnonzero(n_ev == 0)
    dur = np.array([ds.duration_us(i) for i in range(m)], dtype=np.float64) / 1000.0
    out = {
        "dataset": ds.name, "split": ds.split, "n_samples": n, "n_classes": ds.n_classes,
        "sensor_shape": tuple(ds.native_shape), "input_shape": tuple(ds.sensor_shape),
        "sim": {"ts": ds.sim.ts, "t_sample": ds.sim.t_sample, "n_bins": ds.sim.n_bins},
        "class_counts": {name: int(c) for name, c in zip(ds.class_names, counts)},
        "samples_measured": m, "events_per_sample": _stats(n_ev), "total_events": int(n_ev.sum()),
        "duration_ms": _stats(dur),
        "dropped": {k: int(ds.stats.get(k, 0)) for k in ("out_of_range", "invalid_events")},
        "empty_samples": int(empty.size),
        "empty_examples": [ds.sample_name(int(i)) for i in empty[:3]],
    }
    if hasattr(ds, "empty_samples") and hasattr(ds, "time_report"):
        # samples with events, none inside the simulated window: all zeros to the network (pysrm train refuses them)
        outside = [i for i in ds.empty_samples(range(m)) if n_ev[i] > 0]
        out["outside_window_samples"] = len(outside)
        out["outside_window_examples"] = [ds.sample_name(int(i)) for i in outside[:3]]
        out["time_report"] = ds.time_report(range(m))
    if hasattr(ds, "n_multi_digit"):
        out["skipped_multi_digit"] = int(ds.n_multi_digit)
    return out


def format_summary(s: dict) -> str:
    """The text ``pysrm data info`` prints for a dataset.

    Parameters
    ----------
    s : dict
        From :func:`summarize`.

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    lines = [f"dataset {s['dataset']}  split {s['split']}: {s['n_samples']} samples, {s['n_classes']} classes",
             f"  sensor (C, H, W) = {s['sensor_shape']}; network input {s['input_shape']}; "
             f"T = {s['sim']['n_bins']} bins of {s['sim']['ts']:g} ms ({s['sim']['t_sample']:g} ms)"]
    cc = s["class_counts"]
    lines.append("  samples per class: " + ", ".join(f"{k}: {v}" for k, v in cc.items()))
    e, d = s["events_per_sample"], s["duration_ms"]
    note = "" if s["samples_measured"] == s["n_samples"] else f" (first {s['samples_measured']} samples)"
    lines.append(f"  events per sample{note}: mean {e['mean']:.1f}, min {e['min']:.0f}, max {e['max']:.0f} "
                 f"(total {s['total_events']})")
    lines.append(f"  duration (ms){note}: mean {d['mean']:.1f}, min {d['min']:.1f}, max {d['max']:.1f}")
    dropped = {k: v for k, v in s["dropped"].items() if v}
    if dropped:
        lines.append("  dropped events: " + ", ".join(f"{k}: {v}" for k, v in dropped.items()))
    if s.get("empty_samples"):
        lines.append(f"  empty samples (no event inside the sensor): {s['empty_samples']}, e.g. "
                     + ", ".join(s["empty_examples"]) + " (pysrm train refuses them unless empty_samples = 'skip')")
    if s.get("outside_window_samples"):
        lines.append(f"  samples with no event inside the simulated window (t = 0 .. {s['sim']['t_sample']:g} ms): "
                     f"{s['outside_window_samples']}, e.g. " + ", ".join(s["outside_window_examples"])
                     + " (pysrm train refuses them unless empty_samples = 'skip')")
    if s.get("time_report"):
        lines.append(f"  warning: {s['time_report']}")
    if s.get("skipped_multi_digit"):
        lines.append(f"  skipped {s['skipped_multi_digit']} multi-digit utterances (single digits only)")
    return "\n".join(lines)


def file_info(path) -> dict:
    """Statistics of a single event file (``.bs1``, ``.bs2``, ``.bin``, ``.aedat``).

    Parameters
    ----------
    path : str or os.PathLike
        The file; its extension selects the reader of :mod:`pysrm.data.formats`.

    Returns
    -------
    dict
        ``file``, ``format`` (the extension), ``n_events``; with events also ``x_range``, ``y_range``
        (ints), ``t_range_ms`` (floats, ms) and ``polarity_counts``.  Read by :func:`format_file_info`.

    Raises
    ------
    ValueError
        An unsupported extension, or as the reader raises for a malformed file.
    FileNotFoundError
        The file does not exist.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EVENT_FILE_READERS:
        raise ValueError(unsupported_file(path) or f"{path}: not a single event file; expected one of "
                         f"{sorted(EVENT_FILE_READERS)}")
    ev = EVENT_FILE_READERS[ext](path)
    info = {"file": path, "format": ext, "n_events": int(ev.size)}
    if ev.size:
        info.update(x_range=(int(ev["x"].min()), int(ev["x"].max())), y_range=(int(ev["y"].min()), int(ev["y"].max())),
                    t_range_ms=(ev["t"].min() / 1000.0, ev["t"].max() / 1000.0),
                    polarity_counts={int(p): int(c) for p, c in zip(*np.unique(ev["p"], return_counts=True))})
    return info


def format_file_info(info: dict) -> str:
    """The text ``pysrm data info FILE`` prints.

    Parameters
    ----------
    info : dict
        From :func:`file_info`.

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    lines = [f"{info['file']} ({info['format']}): {info['n_events']} events"]
    if info["n_events"]:
        lines.append(f"  x in [{info['x_range'][0]}, {info['x_range'][1]}], "
                     f"y in [{info['y_range'][0]}, {info['y_range'][1]}]  "
                     f"(sensor at least {info['x_range'][1] + 1} x {info['y_range'][1] + 1})")
        lines.append(f"  t in [{info['t_range_ms'][0]:.3f}, {info['t_range_ms'][1]:.3f}] ms; polarity counts "
                     + ", ".join(f"{k}: {v}" for k, v in info["polarity_counts"].items()))
    return "\n".join(lines)
