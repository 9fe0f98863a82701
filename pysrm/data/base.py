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
  the sources as :meth:`EventDataset._signature` describes them: for every
  file its **absolute path, size and modification time in nanoseconds**, in
  sample order, plus what selects the events inside a file (DVS Gesture: every
  gesture's recording, start and end; N-TIDIGITS: the sample keys).  A
  changed, moved or different dataset therefore gets a new folder and is
  re-parsed; a cache is never shared between two datasets.  Options applied
  when binning (``sim``, ``jitter``, ``downsample``, windows, ``dtype``) do
  not enter the key: the cache holds events, and binning happens after it.

Empty samples (no event inside the sensor) are recorded, not raised, while a
file is parsed, so that one bad sample never disturbs the others that share
its file; :meth:`EventDataset.events` raises a ``ValueError`` naming the
sample each time an empty one is asked for, and
:meth:`EventDataset.empty_samples` lists them all at once (``pysrm train``
calls it at start-up).

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
import warnings

import numpy as np

from ..params import SimParams
from ..events import SpikeEvents
from .binning import LAYOUTS, bin_events, binned_shape, drop_out_of_sensor
from .formats import EVENT_DTYPE, as_events

SPLITS = ("train", "test")


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def check_sim(sim, default: SimParams) -> SimParams:
    if sim is None:
        return default
    if not isinstance(sim, SimParams):
        raise TypeError(f"sim must be a pysrm.params.SimParams (e.g. SimParams(ts=1.0, t_sample=300.0)), "
                        f"got {type(sim).__name__}")
    return sim


def check_int(name, value, lo=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


#: version of what the readers return; part of the cache-directory key (raise it when a reader changes)
CACHE_FORMAT = 2


def new_stats() -> dict:
    return {"files_parsed": 0, "events_parsed": 0, "out_of_range": 0, "cropped": 0, "shifted_out": 0,
            "events_binned": 0, "overflow_markers": 0, "invalid_events": 0}


def file_signature(path) -> tuple:
    """``(absolute path, size in bytes, modification time in ns)`` of a file: its part of a cache key."""
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
    implement :meth:`_parse_unit` and :meth:`_source`.
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

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
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
        """Where sample ``i`` comes from (file name, recording and gesture, HDF5 key), for messages."""
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
            self._open_disk_cache()
        if self._packed is not None:
            ev, off = self._packed
            return ev[off[i]:off[i + 1]]
        if self._cache[i] is None:
            self._load_unit(int(self._unit_of[i]))
        return self._cache[i]

    def events(self, i, allow_empty: bool = False) -> np.ndarray:
        """Events of sample ``i`` (:data:`~pysrm.data.formats.EVENT_DTYPE`, ``t`` in us); parsed once, cached.

        Raises ``ValueError`` naming the sample when it has no event inside the sensor, unless
        ``allow_empty`` (then an empty array is returned).
        """
        i = self._index(i)
        ev = self._raw_events(i)
        if ev.size == 0 and not allow_empty:
            raise self._empty_error(i)
        return ev

    def empty_samples(self, indices=None) -> list:
        """Indices (among ``indices``, default all) of the samples with no event inside the sensor.

        Parses every sample asked about that is not parsed yet (they stay cached, so the first
        epoch does not parse them again).
        """
        idx = range(len(self)) if indices is None else [self._index(int(i)) for i in indices]
        return [i for i in idx if self._raw_events(i).size == 0]

    def preload(self):
        """Parse every sample now (they are cached); returns ``self``."""
        if self.cache_dir is not None:
            self._open_disk_cache()
            return self
        for i in range(len(self)):
            if self._cache[i] is None:
                self._load_unit(int(self._unit_of[i]))
        return self

    def cache_key(self) -> str:
        """Name of this dataset's folder in ``cache_dir``: ``<name>-<split>-<hash>`` (see the module docstring)."""
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
        """Time (us) of sample ``i`` that becomes t = 0 when binning (0 unless windowed)."""
        return 0

    def duration_us(self, i: int) -> int:
        """Duration of sample ``i`` in us (time of its last event, unless the dataset defines it; 0 if empty)."""
        ev = self.events(i, allow_empty=True)
        return int(ev["t"].max()) if ev.size else 0

    def sample(self, i, rng=None, augment: bool = False, jitter: int | None = None) -> SpikeEvents:
        """Sample ``i`` binned into a ``SpikeEvents`` of shape ``(1, C, H, W, T)``.

        ``rng`` (a ``numpy.random.Generator``) drives the random parts:
        random windows (DVS Gesture training set) and, with ``augment=True``,
        the spatial jitter of up to ``jitter`` pixels (default ``ds.jitter``)
        in x and y, each uniform in ``[-jitter, jitter]``; events shifted off
        the sensor are dropped (counted in ``stats['shifted_out']``).
        Without ``rng`` windows start at the sample start, and augmentation
        uses a fresh unseeded generator.
        """
        i = self._index(i)
        ev = self.events(i)
        jitter = self.jitter if jitter is None else check_int("jitter", jitter, 0)
        if jitter and self.layout == "address":
            raise ValueError(f"jitter (spatial shift augmentation) is meaningless for the 1-D sensor of "
                             f"{self.name}; got jitter={jitter}, expected 0")
        shift = (0, 0)
        if augment and jitter:
            if rng is None:
                rng = np.random.default_rng()
            shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        return bin_events(ev, self.native_shape, self.sim, t_start=self.window_start(i, rng), shift=shift,
                          downsample=self.downsample, layout=self.layout, dtype=self.dtype,
                          out_of_range="error", stats=self.stats, name=self._source(i))

    def dense(self, i, rng=None, augment: bool = False) -> np.ndarray:
        """Dense ``(C, H, W, T)`` tensor of sample ``i`` (convenience for inspection)."""
        return self.sample(i, rng, augment).to_dense()[0]


class EventArrayDataset(EventDataset):
    """A dataset of events already in memory (tonic and other tools' layout).

    Parameters
    ----------
    events : sequence of structured arrays with fields ``x, y, t, p``
        (``t`` in microseconds; see :func:`~pysrm.data.formats.as_events`)
    labels : integer class of each sample
    sensor_shape : ``(C, H, W)``; default ``(2, max y + 1, max x + 1)`` for
        layout ``'polarity'`` and ``(max x + 1, 1, 1)`` for ``'address'``
    sim : :class:`~pysrm.params.SimParams` (default ``SimParams(1, 300)``)
    class_names : default ``'0'``, ``'1'``, ... up to the largest label
    layout, downsample, jitter, out_of_range, dtype : as for the file datasets
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

    def _source(self, i):
        return f"events[{i}]"


def from_arrays(events, labels, **options) -> EventArrayDataset:
    """Dataset from in-memory structured event arrays (see :class:`EventArrayDataset`)."""
    return EventArrayDataset(events, labels, **options)
