"""Common machinery of the event datasets: parse-once caching and binning.

A dataset is a list of labelled samples whose events are parsed from files
on first use and cached, so that iterating a second time does no parsing:

* **memory** (default): the parsed events of each sample are kept in RAM
  (13 bytes per event: about 53 MB per 1,000 N-MNIST samples, 3.7 GB for
  all 70,000, so use a cache directory for the full real datasets).  This
  cache belongs to one dataset object, whose files, split and options are
  fixed when it is made: its key is the sample index within that object.
* **cache directory** (``cache_dir=...``): on first use all samples are
  parsed once and written to ``<cache_dir>/<dataset>-<split>-<hash>/`` as
  ``events.npy`` (all events, concatenated) and ``offsets.npy`` (sample ``i``
  is ``events[offsets[i]:offsets[i+1]]``) plus ``meta.json``.  Later runs
  (and later epochs) memory-map these files: nothing is parsed and the OS
  page cache decides what stays in RAM.  ``.npy`` rather than ``.npz`` so
  that the files can be memory-mapped.  Building the cache holds the split's
  events in RAM once.

  **The key** (:meth:`EventDataset.cache_key`) is a SHA-1 over everything
  that determines the cached events: the dataset class and split, the sample
  count, the sensor shape and layout, the ``out_of_range`` policy (which
  events are dropped), a format version of the parsing code
  (:data:`CACHE_FORMAT`, raised whenever a reader changes what it returns), and
  the sources as ``EventDataset._signature`` describes them: for every
  file its **absolute path, size and modification time in nanoseconds**, in
  sample order, plus what selects the events inside a file (DVS Gesture: every
  gesture's recording, start and end; N-TIDIGITS: the sample keys).  A
  changed, moved or different dataset therefore gets a new folder and is
  re-parsed; a cache is never shared between two datasets.  Options applied
  when binning (``sim``, ``jitter``, ``downsample``, windows, ``dtype``) do
  not enter this key: this folder holds events; binned spikes have their own
  sub-folder and key (below).

**Binned once.**  What the training loop asks for every epoch is a sample *binned*: its spikes
``(neuron, time bin)``.  The binned spikes of every sample are cached as well, at the sensor's own
resolution and without augmentation, with the number of events merged into each spike; the jitter
augmentation (a shift of every event by ``(dx, dy)`` pixels) and ``downsample`` are applied per draw on
the cached spikes (:func:`~pysrm.data.binning.shift_binned`), which gives bitwise the spikes, and the
counters, that binning the shifted events gives.  Only windows that start at the sample's start are
cached (random windows, DVS Gesture's training set, are binned per draw).

* **memory** (no ``cache_dir``): ``ds._bins[key][i]``, 12 bytes per spike (49 MB for NMNISTsmall's
  1,000 training samples at ``Ts = 1 ms``, ``T = 300``: N-MNIST's events rarely share a bin, so about
  as much as the events themselves; use a cache directory for the full datasets);
  ``ds.bin_cache = False`` turns this cache off.  **Its key** is
  :meth:`EventDataset.bin_signature`: ``(sim.ts, sim.n_bins, native_shape, layout)`` (``sim.n_bins =
  t_sample / ts``), within the dataset object whose files, split, sample order and ``out_of_range``
  policy are fixed when it is made (as for the event cache); the sample index completes it.
* **cache directory**: ``<cache_dir>/<cache_key()>/binned-<hash>/`` (``neuron.npy``, ``time.npy``,
  ``count.npy``, ``offsets.npy``, ``stats.npy``, ``meta.json``), built for all samples at the first
  draw and memory-mapped after.  **Its key** is the events folder's (:meth:`EventDataset.cache_key`:
  file identities, split, sample count, sensor, layout, ``out_of_range``, reader version) plus a SHA-1 of
  :meth:`EventDataset.bin_signature` and the binning code's version (:data:`BIN_FORMAT`).

Options applied per draw (``jitter``/``shift``, ``downsample``, ``dtype``) are not part of either key.

Empty samples (no event inside the sensor) are recorded, not raised, while a
file is parsed, so that one bad sample never disturbs the others that share
its file; :meth:`EventDataset.events` raises a ``ValueError`` naming the
sample each time an empty one is asked for, and
:meth:`EventDataset.empty_samples` lists them all at once (``pysrm train``
calls it at start-up).  A sample whose events all lie outside the simulated
window (``0 .. t_sample`` from its start: absolute timestamps, times in another
unit) is empty too: the network would see only zeros; :meth:`EventDataset.sample`
raises for it, and :meth:`EventDataset.time_report` says when the times of a
dataset look like the wrong unit or origin (most events cropped, or most
samples in one time bin).

``ds.stats`` counts what happened: ``files_parsed``, ``events_parsed``,
``out_of_range`` (events outside the sensor, dropped with a warning),
``cropped`` (events beyond ``t_sample`` or outside the window),
``shifted_out`` (moved off the sensor by the jitter augmentation),
``events_binned`` (events handed to the binning, the denominator of the two
before), ``overflow_markers`` (N-MNIST) and ``invalid_events`` (AEDAT
validity bit).  Each file is parsed (and counted) once, even when one of its
samples is empty or a parse fails and is retried.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings

import numpy as np

from ..params import SimParams
from ..responses import SettingsWarning
from ..events import SpikeEvents
from .binning import (LAYOUTS, _spikes, bin_events, bin_kernel, binned_shape, drop_out_of_sensor, event_bins,
                      shift_binned)
from .formats import EVENT_DTYPE, as_events

SPLITS = ("train", "test")


def check_split(split):
    """Check a split name.

    Parameters
    ----------
    split : str
        ``'train'`` or ``'test'``.

    Returns
    -------
    str
        ``split``.

    Raises
    ------
    ValueError
        ``split`` is not one of ``SPLITS``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def check_sim(sim, default: SimParams) -> SimParams:
    """Check a dataset's simulation parameters, or give its default.

    Parameters
    ----------
    sim : SimParams or None
        ``ts`` and ``t_sample`` (ms); None for ``default``.
    default : SimParams
        The dataset's default.

    Returns
    -------
    SimParams

    Raises
    ------
    TypeError
        ``sim`` is neither None nor a :class:`~pysrm.params.SimParams`.
    """
    if sim is None:
        return default
    if not isinstance(sim, SimParams):
        raise TypeError(f"sim must be a pysrm.params.SimParams (e.g. SimParams(ts=1.0, t_sample=300.0)), "
                        f"got {type(sim).__name__}")
    return sim


def check_int(name, value, lo=0):
    """Check an integer option (``downsample``, ``jitter`` ...).

    Parameters
    ----------
    name : str
        The option's name, for the message.
    value : int
        The value; a Python or NumPy integer, not a bool.
    lo : int, default 0
        The smallest accepted value.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        ``value`` is not an integer (or is a bool).
    ValueError
        ``value < lo``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


#: version of what the readers return; part of the cache-directory key (raise it when a reader changes)
CACHE_FORMAT = 2
#: version of the binned-spikes cache (raise it when binning or that cache's layout changes)
BIN_FORMAT = 1


def new_stats() -> dict:
    """The counters of a dataset's ``stats``, all zero (see the module docstring).

    Returns
    -------
    dict of str to int
        ``files_parsed``, ``events_parsed``, ``out_of_range``, ``cropped``, ``shifted_out``,
        ``events_binned``, ``overflow_markers``, ``invalid_events``.
    """
    return {"files_parsed": 0, "events_parsed": 0, "out_of_range": 0, "cropped": 0, "shifted_out": 0,
            "events_binned": 0, "overflow_markers": 0, "invalid_events": 0}


def file_signature(path) -> tuple:
    """A file's part of a cache key.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    tuple of (str, int, int)
        ``(absolute path, size in bytes, modification time in ns)``.

    Raises
    ------
    OSError
        The file cannot be stat'ed (``FileNotFoundError`` when it does not exist).
    """
    st = os.stat(path)
    return (os.path.abspath(os.fspath(path)), int(st.st_size), int(st.st_mtime_ns))


class EventDataset:
    """Base class of the event datasets (see module docstring).

    Attributes used by the training pipeline: ``len(ds)``, ``ds.labels``
    (int64), ``ds.n_classes``, ``ds.class_names``, ``ds.sensor_shape`` (the
    ``(C, H, W)`` of the binned tensors, after downsampling), ``ds.sim``,
    :meth:`events` and :meth:`sample`.

    Subclasses set ``name``, ``split``, ``native_shape`` (sensor before
    downsampling), ``layout``, ``class_names``, ``labels`` and
    ``_unit_of`` (the parse unit -- usually the file -- of each sample), and
    implement ``_parse_unit`` and ``_source``.

    Parameters
    ----------
    split : str
        ``'train'`` or ``'test'`` (keyword only, as every parameter).
    sim : SimParams
        ``ts`` (ms, the bin width ``Ts``) and ``t_sample`` (ms): ``T = t_sample / ts`` bins per sample.
    native_shape : tuple of int
        The sensor's ``(C, H, W)`` before downsampling.
    class_names : sequence of str
        One name per class.
    labels : array_like of int, shape (n_samples,)
        The class of each sample, in ``[0, len(class_names))``; stored as int64.
    downsample : int, default 1
        Spatial pooling factor ``k >= 1`` (OR-merged; see :func:`~pysrm.data.binning.bin_events`).
    jitter : int, default 0
        Largest spatial shift (pixels, >= 0) of the augmentation (:meth:`sample` with ``augment=True``);
        0 for the 1-D ``'address'`` layout.
    out_of_range : {'warn', 'error'}, default 'warn'
        Events outside the sensor: dropped with a warning, or an error.
    cache_dir : str or os.PathLike, optional
        Folder of the parse-once and binned caches (module docstring); None keeps them in memory.
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.
    layout : {'polarity', 'address'}, optional
        How an event is placed in ``(C, H, W)`` (:mod:`pysrm.data.binning`); default the class's.

    Raises
    ------
    ValueError
        An unknown ``layout`` or ``out_of_range``, ``jitter`` with the ``'address'`` layout, labels that
        are not 1-D or not in ``[0, len(class_names))``, ``downsample < 1`` or ``jitter < 0``.
    TypeError
        ``dtype`` is not float32/float64, or ``downsample``/``jitter`` is not an integer.
    """

    name = "events"
    layout = "polarity"

    def __init__(self, *, split: str, sim: SimParams, native_shape, class_names, labels, downsample: int = 1,
                 jitter: int = 0, out_of_range: str = "warn", cache_dir=None, dtype=np.float32,
                 layout: str | None = None):
        self.split = split
        self.sim = sim
        if layout is not None:
            self.layout = layout
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        self.native_shape = tuple(int(s) for s in native_shape)
        self.downsample = check_int("downsample", downsample, 1)
        self.sensor_shape = binned_shape(self.native_shape, self.downsample, self.layout)
        self.jitter = check_int("jitter", jitter, 0)
        if self.jitter and self.layout == "address":
            raise ValueError(f"jitter (spatial shift augmentation) is meaningless for the 1-D sensor of "
                             f"{self.name}; got jitter={jitter}, expected 0")
        if out_of_range not in ("error", "warn"):
            raise ValueError(f"out_of_range must be 'error' or 'warn', got {out_of_range!r}")
        self.out_of_range = out_of_range
        if np.dtype(dtype).type not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.dtype = np.dtype(dtype)
        self.class_names = tuple(class_names)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got "
                             f"[{self.labels.min()}, {self.labels.max()}]")
        self.stats = new_stats()
        self._cache: list = [None] * len(self.labels)
        self._packed = None  # (events, offsets) from a cache directory
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.bin_cache = True  # cache the binned spikes (see the module docstring)
        self._bins = {}        # bin_signature() -> [entry or None per sample] (memory)
        self._bins_disk = {}   # bin_signature() -> (neuron, time, count, offsets, stats) memory-mapped
        self._lock = threading.RLock()  # parsing and cache filling (a DataLoader may draw in a thread)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes, ``len(class_names)`` (int)."""
        return len(self.class_names)

    @property
    def n_parsed(self) -> int:
        """Number of files (parse units) parsed so far."""
        return self.stats["files_parsed"]

    def __repr__(self):
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, n_classes={self.n_classes}, "
                f"sensor_shape={self.sensor_shape}, sim={self.sim})")

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"sample index must be an integer, got {i!r} ({type(i).__name__})")
        n = len(self)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"sample index {i} out of range for {self.name} {self.split} set of {n} samples")
        return j

    # ------------------------------------------------------------------ parsing and caching
    def _parse_unit(self, unit: int, stats: dict):
        """Parse one file; return an iterable of ``(sample index, events)``.

        Counters go to ``stats`` (a fresh dict, merged into ``ds.stats`` only when the whole file
        parsed), so that a failed parse leaves the dataset's statistics unchanged.
        """
        raise NotImplementedError

    def _source(self, i: int) -> str:
        """Human-readable origin of sample ``i`` (file name ...) for messages."""
        return f"{self.name} sample {i}"

    def sample_name(self, i) -> str:
        """Where sample ``i`` comes from (file name, recording and gesture, HDF5 key), for messages.

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.

        Returns
        -------
        str

        Raises
        ------
        TypeError
            ``i`` is not an integer.
        IndexError
            ``i`` is out of range (the message names the dataset and split).
        """
        return self._source(self._index(i))

    def _samples_of_unit(self, unit: int) -> np.ndarray:
        return np.flatnonzero(self._unit_of == unit)

    def _signature(self):
        """JSON-able description of the sources, for the cache directory key (see the module docstring)."""
        return None

    def _clean(self, i, ev, stats=None):
        """``ev`` without the events outside the sensor (per ``out_of_range``); may be empty."""
        return drop_out_of_sensor(ev, self.native_shape, self.layout, self.out_of_range, self._source(i),
                                  self.stats if stats is None else stats)

    def _empty_error(self, i) -> ValueError:
        return ValueError(f"{self._source(i)}: empty sample (no event inside the sensor); expected at least one "
                          f"event (pysrm train checks every sample at start-up; empty_samples = 'skip' leaves "
                          f"them out)")

    def _load_unit(self, unit: int):
        """Parse file ``unit`` and cache all its samples (empty ones too), or change nothing if it fails."""
        stats = new_stats()
        parsed = {}
        for i, ev in self._parse_unit(unit, stats):
            stats["events_parsed"] += int(ev.size)
            parsed[int(i)] = self._clean(int(i), ev, stats)
        for i in self._samples_of_unit(unit):  # a sample the parser did not yield has no events
            parsed.setdefault(int(i), np.empty(0, EVENT_DTYPE))
        stats["files_parsed"] += 1
        for i, ev in parsed.items():
            self._cache[i] = ev
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0) + v

    def _raw_events(self, i: int) -> np.ndarray:
        """Events of sample ``i`` (an already checked index), possibly none."""
        if self._packed is None and self.cache_dir is not None:
            with self._lock:
                if self._packed is None:
                    self._open_disk_cache()
        if self._packed is not None:
            ev, off = self._packed
            return ev[off[i]:off[i + 1]]
        ev = self._cache[i]
        if ev is None:
            with self._lock:
                if self._cache[i] is None:
                    self._load_unit(int(self._unit_of[i]))
                ev = self._cache[i]
        return ev

    def events(self, i, allow_empty: bool = False) -> np.ndarray:
        """Events of sample ``i``, parsed once and cached.

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.
        allow_empty : bool, default False
            Return an empty array for a sample with no event inside the sensor instead of raising.

        Returns
        -------
        ndarray of EVENT_DTYPE, shape (n_events,)
            Fields ``x, y, p, t`` (:data:`~pysrm.data.formats.EVENT_DTYPE`), ``t`` in us from the sample's
            start, only events inside the sensor.  The cache's own array (or a memory map): do not write.

        Raises
        ------
        ValueError
            The sample has no event inside the sensor and not ``allow_empty`` (names the sample).
        TypeError
            ``i`` is not an integer.
        IndexError
            ``i`` is out of range (the message names the dataset and split).
        """
        i = self._index(i)
        ev = self._raw_events(i)
        if ev.size == 0 and not allow_empty:
            raise self._empty_error(i)
        return ev

    def empty_samples(self, indices=None) -> list:
        """Indices (among ``indices``, default all) of the samples the network would see as all zeros.

        A sample is empty when it has no event inside the sensor, or when none of its events falls
        inside the simulated window, ``T = t_sample / ts`` bins from the sample's start (events with
        absolute timestamps, or times in another unit than microseconds: see :meth:`time_report`).
        Samples drawn as random windows (DVS Gesture's training set) count as empty only without
        events.  Parses every sample asked about that is not parsed yet (they stay cached, so the
        first epoch does not parse them again).

        Parameters
        ----------
        indices : sequence of int, optional
            The samples to look at; default all.

        Returns
        -------
        list of int
            The empty ones, in the order of ``indices``.

        Raises
        ------
        IndexError
            An index is out of range.
        """
        idx = range(len(self)) if indices is None else [self._index(int(i)) for i in indices]
        return [i for i in idx if self._window_counts(i)[1] == 0]

    def _window_counts(self, i: int) -> tuple:
        """``(events, events inside the simulated window, first bin, last bin, first t in us, last t in us)``
        of sample ``i`` (an already checked index); bins -1 and times 0 when it has no event."""
        ev = self._raw_events(i)
        if ev.size == 0:
            return 0, 0, -1, -1, 0, 0
        t = ev["t"]
        t0, t1 = int(t.min()), int(t.max())
        if self._random_windows():  # windows are drawn inside the sample: every event can be seen
            return int(ev.size), int(ev.size), 0, 0, t0, t1
        b = event_bins(t, self.sim.ts, self.window_start(i))
        inside = b[(b >= 0) & (b < self.sim.n_bins)]
        if inside.size == 0:
            return int(ev.size), 0, -1, -1, t0, t1
        return int(ev.size), int(inside.size), int(inside.min()), int(inside.max()), t0, t1

    def _window_empty_error(self, i) -> ValueError:
        n, _, _, _, t0, t1 = self._window_counts(i)
        return ValueError(f"{self._source(i)}: none of its {n} event(s) falls inside the simulated window (t = 0 .. "
                          f"{self.sim.t_sample:g} ms = {self.sim.n_bins} bins of Ts = {self.sim.ts:g} ms); its events "
                          f"lie at t = {t0 / 1000:g} .. {t1 / 1000:g} ms (times are read as microseconds). Subtract "
                          f"each sample's first timestamp, or give the times' unit, or a longer t_sample; pysrm train "
                          f"checks every sample at start-up (empty_samples = 'skip' leaves them out)")

    #: :meth:`time_report` reports a dataset in which more than this fraction of the events lies outside the
    #: simulated window (a wrong unit or origin crops about all of them; DVS Gesture's 1.5 s test windows of
    #: 6 s gestures crop about 75 % on purpose) ...
    TIME_REPORT_CROPPED = 0.9
    #: ... or in which more than this fraction of the samples has all its events in one time bin
    TIME_REPORT_ONE_BIN = 0.5

    def time_report(self, indices=None, split: str | None = None) -> str | None:
        """A message when the event times do not fit the simulation, else ``None``.

        Two faults of a time unit or origin are found (over the samples ``indices``, default all):
        most events cropped (outside ``0 .. t_sample``: absolute timestamps, or times in a smaller unit
        than microseconds), and most samples collapsed into one time bin although ``T >= 10`` (times in
        a larger unit than microseconds, e.g. ms read as us).  The message counts what is lost and
        suggests the unit or an offset.  Parses every sample asked about that is not parsed yet.

        Parameters
        ----------
        indices : sequence of int, optional
            The samples to look at; default all.
        split : str, optional
            The name of the split for the message (default ``self.split``).

        Returns
        -------
        str or None
            The message (what is lost, the median start and span of the samples in ms, the fix), or None
            when the times fit.

        Raises
        ------
        IndexError
            An index is out of range.
        """
        idx = range(len(self)) if indices is None else [self._index(int(i)) for i in indices]
        rows = np.array([self._window_counts(i) for i in idx], dtype=np.int64).reshape(-1, 6)
        rows = rows[rows[:, 0] > 0]
        if rows.size == 0:
            return None
        unit = getattr(self, "time_unit", "us")
        unit = f"time_unit={unit!r}" if unit != "us" else "microseconds"
        split = self.split if split is None else split
        total, inside = int(rows[:, 0].sum()), int(rows[:, 1].sum())
        first_ms = float(np.median(rows[:, 4])) / 1000.0
        span_ms = float(np.median(rows[:, 5] - rows[:, 4])) / 1000.0
        where = (f"the {split} samples' events start at a median t = {first_ms:.6g} ms and span a median "
                 f"{span_ms:.4g} ms (times read as {unit})")
        if total - inside > self.TIME_REPORT_CROPPED * total:
            if first_ms >= self.sim.t_sample:
                fix = "they look like absolute timestamps: subtract each sample's first timestamp"
            elif span_ms > 10 * self.sim.t_sample:
                fix = ("if the times are not microseconds, give their unit (e.g. from_tonic(..., time_unit='ns')) "
                       "or convert them to us; else a longer t_sample")
            else:
                fix = "a longer t_sample keeps them"
            return (f"{total - inside} of {total} events ({100 * (total - inside) / total:.0f} %) lie outside the "
                    f"simulated window (t = 0 .. {self.sim.t_sample:g} ms) and are cropped: {where}; {fix}")
        several = rows[rows[:, 1] >= 2]
        if self.sim.n_bins >= 10 and several.shape[0]:
            one_bin = int(np.count_nonzero(several[:, 2] == several[:, 3]))
            if one_bin > self.TIME_REPORT_ONE_BIN * several.shape[0]:
                return (f"{one_bin} of {several.shape[0]} {split} samples have all their events in a single time bin "
                        f"of Ts = {self.sim.ts:g} ms (of T = {self.sim.n_bins} bins), so their timing is lost: "
                        f"{where}; if the times are in ms or s, give their unit (e.g. from_tonic(..., "
                        f"time_unit='ms')) or convert them to microseconds")
        return None

    def preload(self):
        """Parse every sample now (they are cached; with ``cache_dir``, the cache folder is built or opened).

        Returns
        -------
        EventDataset
            ``self``.
        """
        with self._lock:
            if self.cache_dir is not None:
                if self._packed is None:
                    self._open_disk_cache()
                return self
            for i in range(len(self)):
                if self._cache[i] is None:
                    self._load_unit(int(self._unit_of[i]))
        return self

    def cache_key(self) -> str:
        """Name of this dataset's folder in ``cache_dir`` (see the module docstring for the key).

        Returns
        -------
        str
            ``<name>-<split>-<hash>``, the hash 16 hex digits of a SHA-1.
        """
        sig = {"class": type(self).__name__, "split": self.split, "native_shape": self.native_shape,
               "layout": self.layout, "out_of_range": self.out_of_range, "n": len(self),
               "sources": self._signature(), "format": CACHE_FORMAT}
        h = hashlib.sha1(json.dumps(sig, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"{self.name}-{self.split}-{h}"

    _cache_key = cache_key  # former private name

    def _open_disk_cache(self):
        d = os.path.join(self.cache_dir, self.cache_key())
        fe, fo = os.path.join(d, "events.npy"), os.path.join(d, "offsets.npy")
        if os.path.isfile(fe) and os.path.isfile(fo):
            try:
                ev = np.load(fe, mmap_mode="r")
                off = np.load(fo)
                if ev.dtype == EVENT_DTYPE and off.shape == (len(self) + 1,) and off[-1] == ev.shape[0]:
                    self._packed = (ev, off)
                    return
            except (OSError, ValueError):
                pass
            warnings.warn(f"cache directory {d} is unreadable or inconsistent; re-parsing the dataset", stacklevel=3)
        for i in range(len(self)):
            if self._cache[i] is None:
                self._load_unit(int(self._unit_of[i]))
        counts = np.array([c.size for c in self._cache], dtype=np.int64)
        off = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        allev = np.concatenate(self._cache) if len(self) else np.empty(0, EVENT_DTYPE)
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".tmp{os.getpid()}")
        np.save(tmp + "e.npy", allev)
        np.save(tmp + "o.npy", off)
        os.replace(tmp + "e.npy", fe)
        os.replace(tmp + "o.npy", fo)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"dataset": self.name, "split": self.split, "n_samples": len(self),
                       "n_events": int(off[-1]), "format": CACHE_FORMAT, "sources": self._signature()}, f,
                      default=str)
        self._packed = (np.load(fe, mmap_mode="r"), off)
        self._cache = [None] * len(self)  # free the memory copy

    # ------------------------------------------------------------------ binning
    def window_start(self, i: int, rng=None) -> int:
        """Time of sample ``i`` that becomes t = 0 when binning (0 unless the dataset draws windows).

        Parameters
        ----------
        i : int
            Sample index (already checked).
        rng : numpy.random.Generator, optional
            Draws a random window where the dataset has them; without it windows start at 0.

        Returns
        -------
        int
            The time in us.
        """
        return 0

    def duration_us(self, i: int) -> int:
        """Duration of sample ``i``: the time of its last event, unless the dataset defines it.

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.

        Returns
        -------
        int
            The duration in us; 0 for an empty sample.

        Raises
        ------
        TypeError
            ``i`` is not an integer.
        IndexError
            ``i`` is out of range (the message names the dataset and split).
        """
        ev = self.events(i, allow_empty=True)
        return int(ev["t"].max()) if ev.size else 0

    def _random_windows(self) -> bool:
        """True when samples are drawn as random windows (then binned per draw, not cached)."""
        return False

    def bin_signature(self) -> tuple:
        """What determines the cached binned spikes of a sample besides the dataset's own sources.

        Returns
        -------
        tuple
            ``(sim.ts, sim.n_bins, native_shape, layout)``: float (ms), int (bins), ``(C, H, W)``, str.
        """
        return (float(self.sim.ts), int(self.sim.n_bins), tuple(self.native_shape), str(self.layout))

    def bin_cache_dir(self) -> str | None:
        """The binned-spikes folder in ``cache_dir``.

        Returns
        -------
        str or None
            ``<cache_dir>/<cache_key()>/binned-<hash>``; None without a ``cache_dir``.
        """
        if self.cache_dir is None:
            return None
        sig = {"bins": list(self.bin_signature()), "format": BIN_FORMAT}
        h = hashlib.sha1(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, self.cache_key(), f"binned-{h}")

    def _bin_native(self, i, ev):
        """Entry of sample ``i``: its events binned at the sensor's resolution, no shift, window at 0:
        ``(neuron, time, count, n_events, cropped)``."""
        ev = drop_out_of_sensor(ev, self.native_shape, self.layout, "error", self._source(i))  # never out of range
        neuron, time, count, cropped, _ = bin_kernel(ev, self.native_shape, self.sim.ts, self.sim.n_bins,
                                                     layout=self.layout)
        return (neuron.copy(), time.copy(), count.copy(), int(ev.size), int(cropped))

    def _cached_bins(self, i):
        """The cached entry of sample ``i`` (see :meth:`_bin_native`), made now if missing; None when the
        binned cache is off.  Raises the empty-sample error for a sample with no event."""
        if not self.bin_cache:
            return None
        sig = self.bin_signature()
        if self.cache_dir is not None:
            disk = self._bins_disk.get(sig)
            if disk is None:
                with self._lock:
                    disk = self._bins_disk.get(sig) or self._open_bin_cache(sig)
            neuron, time, count, off, st = disk
            a, b = off[i], off[i + 1]
            entry = (neuron[a:b], time[a:b], count[a:b], int(st[i, 0]), int(st[i, 1]))
        else:
            table = self._bins.get(sig)
            if table is None:
                table = self._bins.setdefault(sig, [None] * len(self))
            entry = table[i]
            if entry is None:
                ev = self._raw_events(i)
                entry = self._bin_native(i, ev) if ev.size else (None, None, None, 0, 0)
                table[i] = entry
        if entry[3] == 0:
            raise self._empty_error(i)
        if entry[0].size == 0:  # events, but none inside the simulated window: all zeros to the network
            raise self._window_empty_error(i)
        return entry

    def _open_bin_cache(self, sig):
        d = self.bin_cache_dir()
        names = ("neuron", "time", "count", "offsets", "stats")
        files = {k: os.path.join(d, f"{k}.npy") for k in names}
        n = len(self)
        if all(os.path.isfile(f) for f in files.values()):
            try:
                arr = {k: np.load(f, mmap_mode=None if k in ("offsets", "stats") else "r") for k, f in files.items()}
                off = arr["offsets"]
                m = int(off[-1]) if off.shape == (n + 1,) else -1
                if (all(arr[k].dtype == np.int32 and arr[k].shape == (m,) for k in ("neuron", "time", "count"))
                        and arr["stats"].shape == (n, 2) and off[0] == 0 and (np.diff(off) >= 0).all()):
                    out = (arr["neuron"], arr["time"], arr["count"], off, arr["stats"])
                    self._bins_disk[sig] = out
                    return out
            except (OSError, ValueError):
                pass
            warnings.warn(f"binned cache {d} is unreadable or inconsistent; binning the dataset again", stacklevel=4)
        parts = []
        for i in range(n):
            ev = self._raw_events(i)
            parts.append(self._bin_native(i, ev) if ev.size else
                         (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int32), 0, 0))
        off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([p[0].size for p in parts], out=off[1:])
        data = {"neuron": np.concatenate([p[0] for p in parts]) if n else np.empty(0, np.int32),
                "time": np.concatenate([p[1] for p in parts]) if n else np.empty(0, np.int32),
                "count": np.concatenate([p[2] for p in parts]) if n else np.empty(0, np.int32),
                "stats": np.array([(p[3], p[4]) for p in parts], dtype=np.int64).reshape(n, 2), "offsets": off}
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".tmp{os.getpid()}-{threading.get_ident()}")
        for k in ("neuron", "time", "count", "stats", "offsets"):  # offsets last: it marks a complete cache
            np.save(f"{tmp}{k}.npy", data[k])
            os.replace(f"{tmp}{k}.npy", files[k])
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"dataset": self.name, "split": self.split, "n_samples": n, "n_spikes": int(off[-1]),
                       "ts": sig[0], "n_bins": sig[1], "native_shape": list(sig[2]), "layout": sig[3],
                       "format": BIN_FORMAT}, f)
        out = (np.load(files["neuron"], mmap_mode="r"), np.load(files["time"], mmap_mode="r"),
               np.load(files["count"], mmap_mode="r"), off, data["stats"])
        self._bins_disk[sig] = out
        return out

    def sample(self, i, rng=None, augment: bool = False, jitter: int | None = None) -> SpikeEvents:
        """Sample ``i`` binned into a spike tensor.

        An event ``(x, y, p, t)`` becomes a spike ``1/Ts`` at ``[p, y, x, round((t - t0) / 1000 / Ts)]``
        (:func:`~pysrm.data.binning.bin_events`; ``t0`` = :meth:`window_start`).

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.
        rng : numpy.random.Generator, optional
            Drives the random parts: random windows (DVS Gesture training set) and the jitter.  Without
            it windows start at the sample start, and augmentation uses a fresh unseeded generator.
        augment : bool, default False
            Shift every event by ``(dx, dy)`` pixels, each uniform in ``[-jitter, jitter]``; events
            shifted off the sensor are dropped (counted in ``stats['shifted_out']``).
        jitter : int, optional
            Largest shift (pixels, >= 0); default ``ds.jitter``.

        Returns
        -------
        SpikeEvents
            Shape ``(1, C, H, W, T)`` (``C, H, W`` = ``sensor_shape``, ``T = sim.n_bins``), values
            ``1/Ts`` of dtype ``ds.dtype``.

        Raises
        ------
        ValueError
            The sample has no event inside the sensor, or none inside the simulated window (names the
            sample and the fix); ``jitter`` with the ``'address'`` layout; ``jitter < 0``.
        TypeError
            ``i`` or ``jitter`` is not an integer.
        IndexError
            ``i`` is out of range.

        Notes
        -----
        Binned once: windows at the sample's start come from the binned cache (module docstring), the
        shift and downsampling applied on it; the result is bitwise that of
        :func:`~pysrm.data.binning.bin_events` on the events.
        """
        neuron, time, shared = self._sample_parts(i, rng, augment, jitter)
        if shared:  # the cache's own arrays: never handed out
            neuron, time = np.array(neuron), np.array(time)
        return _spikes((1,) + tuple(self.sensor_shape) + (self.sim.n_bins,), neuron, time, self.sim.ts, self.dtype)

    def sample_batch(self, indices, rng=None, augment: bool = False, jitter: int | None = None) -> SpikeEvents:
        """Samples ``indices`` binned into one batch.

        Bitwise ``SpikeEvents.concatenate([ds.sample(i, rng, augment, jitter) for i in indices])``, with
        the same draws from ``rng`` in the same order, made without the per-sample objects (the
        DataLoader's path).

        Parameters
        ----------
        indices : sequence of int
            The samples, in batch order; at least one.
        rng, augment, jitter
            As for :meth:`sample`.

        Returns
        -------
        SpikeEvents
            Shape ``(len(indices), C, H, W, T)``, values ``1/Ts`` of dtype ``ds.dtype``.

        Raises
        ------
        ValueError
            ``indices`` is empty, or as for :meth:`sample`.
        TypeError, IndexError
            As for :meth:`sample`.
        """
        parts = [self._sample_parts(i, rng, augment, jitter) for i in indices]
        if not parts:
            raise ValueError("sample_batch needs at least one index")
        off = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([p[0].shape[0] for p in parts], out=off[1:])  # (concatenate copies)
        neuron = np.concatenate([p[0] for p in parts])
        time = np.concatenate([p[1] for p in parts])
        return SpikeEvents._trusted((len(parts),) + tuple(self.sensor_shape) + (self.sim.n_bins,), off, neuron, time,
                                    np.full(neuron.shape[0], 1.0 / self.sim.ts, dtype=self.dtype))

    def _sample_parts(self, i, rng, augment, jitter):
        """``(neuron, time, shared)``: the spikes (int32, canonical order) of sample ``i`` as :meth:`sample`
        bins them; ``shared`` when they are the binned cache's own arrays, which the caller must not
        hand out or write to."""
        i = self._index(i)
        cached = self.bin_cache and not self._random_windows()
        entry = self._cached_bins(i) if cached else None  # raises for an empty sample, as events() does
        ev = None if entry is not None else self.events(i)
        jitter = self.jitter if jitter is None else check_int("jitter", jitter, 0)
        if jitter and self.layout == "address":
            raise ValueError(f"jitter (spatial shift augmentation) is meaningless for the 1-D sensor of "
                             f"{self.name}; got jitter={jitter}, expected 0")
        shift = (0, 0)
        if augment and jitter:
            if rng is None:
                rng = np.random.default_rng()
            shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        t_start = self.window_start(i, rng)
        if entry is None or t_start != 0:
            if ev is None:
                ev = self.events(i)
            sp = bin_events(ev, self.native_shape, self.sim, t_start=t_start, shift=shift,
                            downsample=self.downsample, layout=self.layout, dtype=self.dtype,
                            out_of_range="error", stats=self.stats, name=self._source(i))
            if sp.neuron.size == 0 and t_start == 0 and shift == (0, 0):  # events, none inside the window
                raise self._window_empty_error(i)
            return sp.neuron, sp.time, False
        neuron, time, count, n_events, cropped = entry
        st = self.stats
        st["events_binned"] = st.get("events_binned", 0) + n_events
        st["cropped"] = st.get("cropped", 0) + cropped
        if shift == (0, 0) and self.downsample == 1:
            return neuron, time, True
        neuron, time, gone = shift_binned(neuron, time, count, self.native_shape, shift=shift,
                                          downsample=self.downsample, layout=self.layout)
        if shift != (0, 0):
            st["shifted_out"] = st.get("shifted_out", 0) + int(gone)
        return neuron, time, False

    def dense(self, i, rng=None, augment: bool = False) -> np.ndarray:
        """Dense tensor of sample ``i`` (for inspection).

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.
        rng, augment
            As for :meth:`sample`.

        Returns
        -------
        ndarray, shape (C, H, W, T)
            Spikes ``1/Ts`` (dtype ``ds.dtype``), zeros elsewhere.

        Raises
        ------
        ValueError, TypeError, IndexError
            As for :meth:`sample`.
        """
        return self.sample(i, rng, augment).to_dense()[0]


class EventArrayDataset(EventDataset):
    """A dataset of events already in memory (tonic and other tools' layout).

    Parameters
    ----------
    events : sequence of ndarray
        One structured array per sample with integer fields ``x, y, t, p``, shape ``(n_events,)``; ``t``
        in microseconds from the sample's start (see :func:`~pysrm.data.formats.as_events`).
    labels : array_like of int, shape (n_samples,)
        The class of each sample.
    sensor_shape : tuple of int, optional
        ``(C, H, W)``; default ``(2, max y + 1, max x + 1)`` for layout ``'polarity'`` and
        ``(max x + 1, 1, 1)`` for ``'address'``.
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default ``SimParams(1, 300)``.
    class_names : sequence of str, optional
        Default ``'0'``, ``'1'``, ... up to the largest label.
    layout : {'polarity', 'address'}, default 'polarity'
    downsample : int, default 1
    jitter : int, default 0
    out_of_range : {'error', 'warn'}, default 'error'
    dtype : numpy dtype, default float32
        As for :class:`EventDataset`.
    split : str, default 'train'
        The split's name (for messages and the cache key).

    Raises
    ------
    TypeError
        ``events`` is one structured array instead of a sequence of them, a sample is not a structured
        event array, the labels are not integers, or as for :class:`EventDataset`.
    ValueError
        The labels are not one per sample, a sample has no event inside the sensor, samples have no
        event inside the simulated window (names them and, when the times look like the wrong unit or
        origin, the fix), or as for :class:`EventDataset`.

    Warns
    -----
    SettingsWarning
        The event times look like the wrong unit or origin (:meth:`EventDataset.time_report`).
    """

    name = "arrays"

    def __init__(self, events, labels, sensor_shape=None, sim=None, class_names=None, layout="polarity",
                 downsample=1, jitter=0, out_of_range="error", dtype=np.float32, split="train"):
        if isinstance(events, np.ndarray) and events.dtype.names is not None:
            raise TypeError("events must be a sequence of per-sample structured arrays, got one structured array; "
                            "wrap a single sample as [events]")
        evs = [as_events(e, name=f"events[{k}]") for k, e in enumerate(events)]
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != len(evs):
            raise ValueError(f"labels must be a 1-D array with one label per sample ({len(evs)}), "
                             f"got shape {labels.shape}")
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if sensor_shape is None:
            mx = max((int(e["x"].max()) for e in evs if e.size), default=0)
            my = max((int(e["y"].max()) for e in evs if e.size), default=0)
            sensor_shape = (mx + 1, 1, 1) if layout == "address" else (2, my + 1, mx + 1)
        if class_names is None:
            class_names = [str(k) for k in range(int(labels.max()) + 1 if labels.size else 1)]
        super().__init__(split=split, sim=check_sim(sim, SimParams(1.0, 300.0)), native_shape=sensor_shape,
                         class_names=class_names, labels=labels, downsample=downsample, jitter=jitter,
                         out_of_range=out_of_range, dtype=dtype, layout=layout)
        self._unit_of = np.arange(len(evs))
        for i, ev in enumerate(evs):
            self._cache[i] = self._clean(i, ev)
        empty = [i for i, ev in enumerate(self._cache) if ev.size == 0]
        if empty:
            raise ValueError(f"events[{empty[0]}]: empty sample (no event inside the sensor); expected at least one "
                             f"event in every sample ({len(empty)} empty: indices {empty[:10]})")
        report = self.time_report()
        outside = self.empty_samples()
        if outside:
            raise ValueError(f"{len(outside)} of {len(self)} sample(s) have no event inside the simulated window "
                             f"(indices {outside[:10]}), so the network would see only zeros"
                             + (f"; {report}" if report else f": {self._window_empty_error(outside[0])}"))
        if report:
            warnings.warn(report, SettingsWarning, stacklevel=3)

    def _source(self, i):
        return f"events[{i}]"


def from_arrays(events, labels, **options) -> EventArrayDataset:
    """Dataset from in-memory structured event arrays (see :class:`EventArrayDataset`).

    Parameters
    ----------
    events : sequence of structured arrays, one per sample, with integer fields ``x, y, t, p``
        ``t`` in **microseconds from the start of the sample**: each sample is binned from ``t = 0`` to
        ``t_sample`` ms (``sim``) in bins of ``Ts`` ms, so a recording's absolute timestamps must be made
        relative first (``t - t.min()``).
    labels : sequence of int
        The class of each sample.
    **options
        ``sensor_shape``, ``sim``, ``class_names``, ``layout``, ``downsample``, ``jitter``,
        ``out_of_range``, ``dtype``: as :class:`EventArrayDataset`.

    Returns
    -------
    EventArrayDataset

    Raises
    ------
    TypeError, ValueError
        Malformed events or labels, or samples whose events all fall outside the simulated window (for
        example absolute timestamps: the message names them and the fix).
    """
    return EventArrayDataset(events, labels, **options)
