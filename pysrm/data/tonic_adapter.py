"""tonic datasets in pysrm: :func:`from_tonic` and ``pysrm train --dataset tonic:<ClassName>``.

`tonic <https://tonic.readthedocs.io>`_ (``pip install ".[tonic]"`` in a clone of pysrm) reads the usual event datasets
(N-MNIST, DVS Gesture, SHD, POKER-DVS, N-Caltech101, ...): a dataset object whose item ``i`` is
``(events, target)``, ``events`` a structured array with fields ``x, y, t, p`` (2-D sensors) or
``x, t, p`` (1-D sensors such as SHD's 700 cochlea channels), and whose ``sensor_size`` is
``(W, H, P)`` -- tonic's order, width first.  tonic's event datasets give ``t`` in **microseconds**
(its transforms' time windows are in us; DVS Gesture's millisecond files and SHD's seconds are
converted to us by tonic), pysrm's unit too, so ``time_unit='us'`` is the default.

:func:`from_tonic` wraps such an object (or anything indexable with ``len`` that yields
``(events, target)`` and has a ``sensor_size``) into a pysrm dataset: the events of each sample are read
once through the object and cached (memory, or ``cache_dir`` as for pysrm's own readers), binned the
pysrm way (SLAYER's rounding ``round(t / 1000 / Ts)``, one spike per bin, events past ``t_sample``
cropped and counted in ``ds.stats``), and batched by the same :class:`~pysrm.data.DataLoader`.

Mapping: 2-D events go to ``(C, H, W) = (P, H, W)`` with channel = polarity (tonic's ``p`` as bool,
``0/1`` or ``-1/1``); 1-D events (no ``y`` field) put the address ``x`` on the channel axis,
``(C, 1, 1) = (W, 1, 1)`` (layout ``'address'``; the polarity is not used, and a 1-D ``sensor_size`` with
``P > 1`` is an error).  Labels come from the object's ``targets`` when it has one (checked against
every item read), otherwise from reading every item once at construction (then cached).

Errors name the sample and what is wrong: items that are not ``(events, target)``, events that are
not structured arrays (a tonic ``transform`` such as ``ToFrame`` already turned them into frames),
unknown event fields, a missing or malformed ``sensor_size``, events outside it (``out_of_range``,
default ``'error'``), non-integer targets.  Empty samples are recorded, not raised, as for pysrm's
readers: ``ds.empty_samples()`` lists them, ``ds.sample(i)`` raises naming the sample, ``pysrm train``
stops or skips them (``empty_samples``).  A tonic ``transform``/``target_transform``/``transforms`` is
refused unless ``allow_transform=True``: pysrm reads each sample once, so a random transform would be
drawn once, not per epoch (pysrm has its own augmentation, ``jitter``).

``pysrm train --dataset tonic:<ClassName> --data-dir DIR`` builds ``tonic.datasets.<ClassName>(save_to=DIR,
train=...)`` (or ``split=...``) and never lets it download: before construction pysrm checks that
tonic's folder ``DIR/<ClassName>`` exists, and the class is built as a subclass whose download methods
raise a ``FileNotFoundError`` naming the files tonic looked for (``filename``, ``folder_name`` under
``location_on_system``), with tonic's download helpers disabled while it is built.  Tried with tonic
1.7: NMNIST, DVSGesture, POKERDVS, SHD (and NCALTECH101 through :func:`from_tonic` with an explicit
``sensor_size``, as its recordings differ in size).
"""
from __future__ import annotations

import contextlib
import inspect
import numbers
import os

import numpy as np

from ..params import SimParams
from .base import EventDataset, check_sim, check_split, file_signature
from .binning import LAYOUTS
from .formats import as_events

#: microseconds per unit of the events' ``t`` for the named ``time_unit`` values
TIME_UNITS = {"us": 1.0, "ns": 1e-3, "ms": 1e3, "s": 1e6}
#: event fields pysrm reads
KNOWN_FIELDS = ("x", "y", "t", "p")
#: dataset names ``tonic:<ClassName>`` (load_dataset, pysrm train --dataset)
from ..config import TONIC_PREFIX  # noqa: E402


def import_tonic():
    """Import the optional dependency tonic.

    Returns
    -------
    module
        ``tonic``.

    Raises
    ------
    ImportError
        tonic is not installed (the message says how to install it).
    """
    try:
        import tonic
    except ImportError as e:
        raise ImportError("tonic datasets need the optional dependency tonic, which is not installed; install it "
                          "with `pip install tonic` (or `pip install '.[tonic]'` in a clone of pysrm)") from e
    return tonic


def _time_factor(time_unit) -> float:
    if isinstance(time_unit, str):
        if time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)} or microseconds per unit (a number > 0), "
                             f"got {time_unit!r}")
        return TIME_UNITS[time_unit]
    if isinstance(time_unit, numbers.Real) and not isinstance(time_unit, bool) and np.isfinite(time_unit) \
            and time_unit > 0:
        return float(time_unit)
    raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)} or microseconds per unit (a number > 0), "
                     f"got {time_unit!r}")


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _class_name(dataset) -> str:
    return type(dataset).__name__


class TonicDataset(EventDataset):
    """A tonic dataset (or any ``(events, target)`` sequence with a ``sensor_size``) as a pysrm dataset.

    Made by :func:`from_tonic` (see the module docstring).  ``ds.tonic`` is the wrapped object.  Samples
    are binned into ``(1, P, H, W, T)`` spike tensors (``(1, W, 1, 1, T)`` for a 1-D sensor: layout
    ``'address'``), before ``downsample``; ``T = t_sample / ts``.

    Parameters
    ----------
    dataset : object
        A tonic dataset, or any object with ``len``, items ``(events, target)`` and a ``sensor_size``.
    sim : SimParams
        ``ts``, ``t_sample`` (ms).
    sensor_size, time_unit, fields, ignore_fields, class_names, downsample, jitter, out_of_range, cache_dir, dtype, split, allow_transform
        As for :func:`from_tonic` (keyword only).

    Raises
    ------
    TypeError
        ``dataset`` has no ``len`` or item access, an item is not ``(events, target)``, events are not a
        structured array, a target is not a class, or as for :class:`~pysrm.data.base.EventDataset`.
    ValueError
        A transform is set without ``allow_transform``, a bad ``fields`` map, ``time_unit`` or
        ``sensor_size``, no sample, unknown or missing event fields, an unknown class name or a negative
        class, non-finite times, a ``cache_dir`` for samples that do not come from identifiable files (or
        with a transform), or as for :class:`~pysrm.data.base.EventDataset` (names the sample and the fix).
    """

    name = "tonic"

    def __init__(self, dataset, sim: SimParams, *, sensor_size=None, time_unit="us", fields=None,
                 ignore_fields=(), class_names=None, downsample=1, jitter=0, out_of_range="error", cache_dir=None,
                 dtype=np.float32, split="train", allow_transform=False):
        check_split(split)
        self.tonic = dataset
        cls = _class_name(dataset)
        self.name = f"tonic:{cls}"
        for attr in ("__len__", "__getitem__"):
            if not hasattr(dataset, attr):
                raise TypeError(f"from_tonic needs a tonic dataset or an indexable object with len() whose items are "
                                f"(events, target); got {cls} without {attr}")
        if not allow_transform:
            used = [a for a in ("transform", "target_transform", "transforms") if getattr(dataset, a, None) is not None]
            if used:
                raise ValueError(f"{cls} has {', '.join(used)} set: pysrm reads each sample's events once and caches "
                                 f"them, so a random transform would be drawn once, not every epoch, and frames made "
                                 f"by a transform are not events. Build the tonic dataset without it (pysrm bins the raw "
                                 f"events itself and augments with jitter=...), or pass allow_transform=True for a "
                                 f"deterministic transform that returns events (memory cache only)")
        self.time_factor = _time_factor(time_unit)
        self.time_unit = time_unit
        self.fields = dict(fields or {})
        bad = sorted(set(self.fields) - set(KNOWN_FIELDS))
        if bad:
            raise ValueError(f"fields maps pysrm's event fields {list(KNOWN_FIELDS)} to the dataset's names; "
                             f"got unknown key(s) {bad}")
        self.ignore_fields = tuple(ignore_fields)
        size = getattr(dataset, "sensor_size", None) if sensor_size is None else sensor_size
        if size is None:
            raise ValueError(f"{cls} has no sensor_size (tonic sets none when recordings differ in size, e.g. "
                             f"NCALTECH101); pass sensor_size=(W, H, P) in tonic's order, e.g. (240, 180, 2)")
        try:
            size = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"{cls}: sensor_size must be (W, H, P) integers in tonic's order, got {size!r}") from None
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"{cls}: sensor_size must be (W, H, P) in tonic's order with positive sizes, got {size}")
        self.tonic_sensor_size = size
        n = len(dataset)
        if n == 0:
            raise ValueError(f"{cls} holds no sample (len 0); expected at least one")
        self._n = n
        self._pending = {}  # events read while finding the labels, cached below
        self._have_y = None  # whether the events are 2-D (set by the first sample read)
        self._name_index = None  # class name -> index, for datasets whose targets are names (NCALTECH101)
        targets = getattr(dataset, "targets", None)
        read_all = targets is None or len(targets) != n
        if read_all:
            raw_targets = []
            for i in range(n):
                self._pending[i], target = self._item(i)
                raw_targets.append(target)
        else:
            raw_targets = list(targets)
        if raw_targets and all(isinstance(t, (str, bytes)) for t in raw_targets):
            found = sorted({_text(t) for t in raw_targets})
            listed = [_text(c) for c in getattr(dataset, "classes", None) or []]
            order = listed if set(found) <= set(listed) else found  # the dataset's class order, else sorted
            self._name_index = {c: k for k, c in enumerate(order)}
            if class_names is None:
                class_names = order
        labels = [self._label(i, t) for i, t in enumerate(raw_targets)]
        if not read_all:
            self._pending[0], _ = self._item(0, check_label=labels[0])
        self.layout = "polarity" if self._have_y else "address"
        w, h, p = size
        if self.layout == "address":
            if (h, p) != (1, 1):
                raise ValueError(f"{cls}: the events have no y field (a 1-D sensor) but sensor_size {size} (W, H, P) "
                                 f"is not (channels, 1, 1); pysrm puts a 1-D address on the channel axis and does not use "
                                 f"the polarity, so it expects sensor_size (C, 1, 1)")
            native = (w, 1, 1)
        else:
            native = (p, h, w)
        assert self.layout in LAYOUTS
        if class_names is None:
            names = getattr(dataset, "classes", None)
            n_cls = max(labels) + 1 if labels else 1
            if names is not None and len(names) >= n_cls:
                class_names = [_text(c) for c in names]
            else:
                class_names = [str(k) for k in range(n_cls)]
        if cache_dir is not None and (self._sources() is None or allow_transform):
            raise ValueError(f"cache_dir: pysrm cannot key a disk cache for {cls}: "
                             + ("a transform's code cannot be part of a key" if allow_transform else
                                "its samples do not come from files it can identify (a file per sample in .data, or "
                                "one .h5/.hdf5 file)") + "; leave cache_dir out (the events are cached in memory)")
        super().__init__(split=split, sim=sim, native_shape=native, class_names=class_names, labels=labels,
                         downsample=downsample, jitter=jitter, out_of_range=out_of_range, cache_dir=cache_dir,
                         dtype=dtype, layout=self.layout)
        self._unit_of = np.arange(n)

    # ----------------------------------------------------------------------------------- reading
    def _source(self, i):
        data = getattr(self.tonic, "data", None)
        where = ""
        try:
            if data is not None and len(data) == self._n and isinstance(data[i], (str, os.PathLike)):
                where = f" ({os.fspath(data[i])})"
        except Exception:  # an exotic .data: no file name in messages
            pass
        return f"{self.name} sample {i}{where}"

    def _label(self, i, target) -> int:
        t = target
        if isinstance(t, np.ndarray) and t.shape == ():
            t = t.item()
        if self._name_index is not None and isinstance(t, (str, bytes)):
            if _text(t) not in self._name_index:
                raise ValueError(f"{self._source(i)}: unknown class name {_text(t)!r}; expected one of "
                                 f"{list(self._name_index)}")
            return self._name_index[_text(t)]
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Integral, np.integer)):
            raise TypeError(f"{self._source(i)}: target {target!r} ({type(target).__name__}) is not a class: expected "
                            f"an integer index (or class names for every sample; a tonic target_transform that "
                            f"returns something else cannot be used)")
        if t < 0:
            raise ValueError(f"{self._source(i)}: negative class index {t}")
        return int(t)

    def _item(self, i, check_label=None):
        """Events (EVENT_DTYPE, t in us) and target of item ``i`` of the wrapped object."""
        item = self.tonic[i]
        if not isinstance(item, tuple) or len(item) != 2:
            length = f" of length {len(item)}" if isinstance(item, tuple) else ""
            raise TypeError(f"{self._source(i)}: item is a {type(item).__name__}{length}; expected (events, target)")
        raw, target = item
        if check_label is not None and self._label(i, target) != check_label:
            raise ValueError(f"{self._source(i)}: its target {target!r} differs from targets[{i}] = {check_label} of "
                             f"{_class_name(self.tonic)}; expected them equal (is a target_transform set?)")
        return self._events(i, raw), target

    def _events(self, i, raw) -> np.ndarray:
        src = self._source(i)
        if not isinstance(raw, np.ndarray) or raw.dtype.names is None:
            what = type(raw).__name__ + (f" of dtype {raw.dtype}, shape {raw.shape}" if isinstance(raw, np.ndarray)
                                         else "")
            raise TypeError(f"{src}: events are a {what}; expected a structured event array with fields x, y, t, p "
                            f"(2-D) or x, t, p (1-D), as tonic's datasets give without a transform (a transform such "
                            f"as ToFrame turns events into frames)")
        names = list(raw.dtype.names)
        rename = {self.fields.get(f, f): f for f in KNOWN_FIELDS}
        unknown = [f for f in names if f not in rename and f not in self.ignore_fields]
        if unknown:
            raise ValueError(f"{src}: unknown event field(s) {unknown} (fields {names}); pysrm reads x, y, t, p "
                             f"(y only for 2-D sensors). Map other names with fields={{'t': 'ts', ...}} or drop "
                             f"fields with ignore_fields=[...]")
        missing = [f for f in ("x", "t", "p") if self.fields.get(f, f) not in names]
        if missing:
            raise ValueError(f"{src}: missing event field(s) {[self.fields.get(f, f) for f in missing]} (fields "
                             f"{names}); expected x, t, p and, for 2-D sensors, y (or map names with fields=...)")
        raw = raw.reshape(-1)
        have_y = self.fields.get("y", "y") in names
        if self._have_y is None:
            self._have_y = have_y
        elif have_y != self._have_y:
            raise ValueError(f"{src}: fields {names} {'have' if have_y else 'lack'} a y field, unlike the first "
                             f"sample; expected every sample of one sensor")
        t = raw[self.fields.get("t", "t")]
        if self.time_factor != 1.0 or t.dtype.kind == "f":
            tf = t.astype(np.float64)
            if t.size and not np.isfinite(tf).all():
                raise ValueError(f"{src}: field t contains non-finite values")
            t = np.round(tf * self.time_factor)
        parts = [("x", raw[self.fields.get("x", "x")])] + ([("y", raw[self.fields.get("y", "y")])] if have_y else []) \
            + [("t", t), ("p", raw[self.fields.get("p", "p")])]
        tmp = np.empty(raw.shape[0], dtype=[(k, v.dtype) for k, v in parts])
        for k, v in parts:
            tmp[k] = v
        return as_events(tmp, name=src)

    def _parse_unit(self, unit, stats):
        ev = self._pending.pop(unit, None)
        if ev is None:
            ev, _ = self._item(unit, check_label=int(self.labels[unit]))
        yield unit, ev

    def cache_key(self) -> str:
        """Name of this dataset's folder in ``cache_dir`` (see :meth:`EventDataset.cache_key`).

        Returns
        -------
        str
            ``tonic-<ClassName>-<split>-<hash>`` (no ':' in a folder name).
        """
        return super().cache_key().replace(":", "-", 1)

    def _sources(self):
        """The files the wrapped object reads (a file per sample in ``.data``, or one HDF5 file), or None."""
        d = self.tonic
        data = getattr(d, "data", None)
        try:
            if data is not None and len(data) == self._n and self._n and \
                    all(isinstance(f, (str, os.PathLike)) and os.path.isfile(f) for f in data):
                return {"files": [file_signature(f) for f in data]}
        except TypeError:
            pass
        for attr in ("file_path", "data_filename", "filename"):
            f = getattr(d, attr, None)
            if isinstance(f, (str, os.PathLike)):
                p = os.fspath(f)
                if not os.path.isabs(p):
                    p = os.path.join(getattr(d, "location_on_system", ""), p)
                if os.path.isfile(p) and p.endswith((".h5", ".hdf5")):
                    return {"file": file_signature(p)}
        return None

    def _signature(self):
        """The wrapped class, tonic's version, the object's plain settings (train, first_saccade_only, ...),
        the time unit and field mapping, and the sources' (absolute path, size, mtime in ns)."""
        d = self.tonic
        try:
            version = import_tonic().__version__
        except ImportError:
            version = None
        settings = {k: v for k, v in sorted(vars(d).items())
                    if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
        return {"class": f"{type(d).__module__}.{type(d).__qualname__}", "tonic": version, "settings": settings,
                "time_factor": self.time_factor, "fields": self.fields, "ignore_fields": list(self.ignore_fields),
                "sensor_size": list(self.tonic_sensor_size), "sources": self._sources()}


def from_tonic(dataset, ts: float | None = None, t_sample: float | None = None, *, sim: SimParams | None = None,
               time_unit="us", sensor_size=None, fields=None, ignore_fields=(), class_names=None, downsample: int = 1,
               jitter: int = 0, out_of_range: str = "error", cache_dir=None, dtype=np.float32, split: str = "train",
               allow_transform: bool = False) -> TonicDataset:
    """A pysrm dataset over a tonic dataset object (see the module docstring).

    tonic itself is not imported here: any object of the right shape works.

    Parameters
    ----------
    dataset : object
        A tonic dataset (``tonic.datasets.NMNIST(save_to=..., train=True)``, ...) or any object with ``len``,
        items ``(events, target)`` and a ``sensor_size`` ``(W, H, P)``.
    ts, t_sample : float, optional
        Time bin ``Ts`` and sample length (ms): ``SimParams(ts, t_sample)``; or give ``sim``.
    sim : SimParams, optional
        Instead of ``ts`` and ``t_sample`` (keyword only, as every parameter after it).
    time_unit : str or float, default 'us'
        Unit of the events' ``t``: ``'us'`` (tonic's), ``'ms'``, ``'s'``, ``'ns'``, or microseconds per unit
        (> 0); times are converted to integer microseconds (rounded).
    sensor_size : tuple of int, optional
        ``(W, H, P)`` in tonic's order, overriding ``dataset.sensor_size`` (needed when it is None).
    fields : dict, optional
        Maps pysrm's field names to the dataset's, e.g. ``{'t': 'ts'}``.
    ignore_fields : sequence of str, default ()
        Fields to leave out (any other unknown field is an error).
    class_names : sequence of str, optional
        Default ``dataset.classes`` when it names every class, else ``'0'``, ``'1'``, ...
    downsample : int, default 1
        Spatial pooling factor ``k >= 1``.
    jitter : int, default 0
        Largest spatial shift (pixels) of the augmentation.
    out_of_range : {'error', 'warn'}, default 'error'
        Events outside ``sensor_size`` (which mean a wrong ``sensor_size``).
    cache_dir : str or os.PathLike, optional
        Folder of the disk caches (only for samples read from identifiable files).
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.
    split : {'train', 'test'}, default 'train'
        Names the split in messages and cache keys.
    allow_transform : bool, default False
        Accept a dataset with a tonic transform (applied once: see the module docstring).

    Returns
    -------
    TonicDataset

    Raises
    ------
    TypeError
        Neither ``ts`` and ``t_sample`` nor ``sim`` given, or both; or as for :class:`TonicDataset`.
    ValueError
        As for :class:`TonicDataset` and :class:`~pysrm.params.SimParams`.
    """
    if sim is None:
        if ts is None or t_sample is None:
            raise TypeError("from_tonic needs the simulation: ts=... and t_sample=... (ms), or sim=SimParams(...)")
        sim = SimParams(float(ts), float(t_sample))
    elif ts is not None or t_sample is not None:
        raise TypeError("pass either ts and t_sample, or sim, not both")
    sim = check_sim(sim, None)
    return TonicDataset(dataset, sim, sensor_size=sensor_size, time_unit=time_unit, fields=fields,
                        ignore_fields=ignore_fields, class_names=class_names, downsample=downsample, jitter=jitter,
                        out_of_range=out_of_range, cache_dir=cache_dir, dtype=dtype, split=split,
                        allow_transform=allow_transform)


# --------------------------------------------------------------------------------- pysrm train --dataset tonic:X
#: download helpers of tonic that must not run while pysrm builds a tonic dataset
_DOWNLOAD_HELPERS = ("download_url", "download_and_extract_archive", "download_file_from_google_drive",
                     "_urlretrieve", "urlretrieve")


class TonicFilesMissing(FileNotFoundError):
    """tonic's files for a dataset are not all there (pysrm never lets tonic download them)."""


def _expected(obj, cls_name) -> str:
    loc = getattr(obj, "location_on_system", None)
    parts = []
    fn = getattr(obj, "filename", None)
    if isinstance(fn, str) and loc:
        parts.append(os.path.join(loc, fn))
    folder = getattr(obj, "folder_name", None)
    if isinstance(folder, str) and folder and loc:
        parts.append(os.path.join(loc, folder) + os.sep + " (the extracted files)")
    data_fn = getattr(obj, "data_filename", None)
    if isinstance(data_fn, str) and loc:
        parts.append(os.path.join(loc, data_fn))
    what = "; ".join(parts) if parts else f"its files under {loc}"
    return (f"tonic's {cls_name} did not find its files and would download them now; pysrm never downloads. tonic "
            f"expects {what} (its _check_exists() decides what is complete, e.g. NMNIST wants train.zip and "
            f"at least 10000 .bin files). Download the dataset with tonic itself (tonic.datasets.{cls_name}"
            f"(save_to=...)) or put its files there")


def _no_download_class(cls):
    name = cls.__name__

    def refuse(self, *args, **kwargs):
        raise TonicFilesMissing(_expected(self, name))

    attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    for meth in ("download", "_download_all", "_copy_and_extract_local_data", "_download"):
        if hasattr(cls, meth):
            attrs[meth] = refuse
    return type(name, (cls,), attrs)  # same name: tonic's folder is save_to/<class name>


@contextlib.contextmanager
def _downloads_disabled(cls):
    """tonic's download helpers (in tonic.download_utils and the class's module) raise while this runs."""
    import sys
    mods = [m for m in (sys.modules.get("tonic.download_utils"), sys.modules.get(cls.__module__)) if m is not None]
    saved = []

    def refuse(*args, **kwargs):
        raise TonicFilesMissing(f"tonic's {cls.__name__} tried to download {args[0] if args else ''}; pysrm never "
                                f"downloads: put the dataset's files under the data folder first")
    for m in mods:
        for h in _DOWNLOAD_HELPERS:
            if hasattr(m, h):
                saved.append((m, h, getattr(m, h)))
                setattr(m, h, refuse)
    try:
        yield
    finally:
        for m, h, f in saved:
            setattr(m, h, f)


def tonic_class(name: str):
    """The tonic dataset class ``tonic.datasets.<name>``.

    Parameters
    ----------
    name : str
        A class name of ``tonic.datasets`` (e.g. ``'NMNIST'``).

    Returns
    -------
    type

    Raises
    ------
    ValueError
        tonic has no such class (the message lists tonic's dataset classes).
    ImportError
        tonic is not installed.
    """
    tonic = import_tonic()
    import tonic.datasets as tds
    cls = getattr(tds, name, None)
    if not inspect.isclass(cls):
        known = sorted(n for n in dir(tds) if inspect.isclass(getattr(tds, n)) and not n.startswith("_"))
        raise ValueError(f"tonic (version {tonic.__version__}) has no dataset class {name!r}; "
                         f"tonic.datasets has {', '.join(known)}")
    return cls


def load_tonic(name: str, split: str = "train", data_dir=None, sim: SimParams | None = None, **options) -> TonicDataset:
    """A tonic dataset class read from ``data_dir``, wrapped by :func:`from_tonic`, never downloading.

    Builds ``tonic.datasets.<name>(save_to=data_dir, train=split == 'train')`` (or ``split=split``) with
    tonic's download helpers disabled (module docstring).

    Parameters
    ----------
    name : str
        A class name of ``tonic.datasets``.
    split : {'train', 'test'}, default 'train'
    data_dir : str or os.PathLike
        The folder given to tonic as ``save_to`` (tonic keeps the files in ``data_dir/<name>/``); required.
    sim : SimParams
        ``ts``, ``t_sample`` (ms); required.
    **options
        Passed to :func:`from_tonic`.

    Returns
    -------
    TonicDataset

    Raises
    ------
    FileNotFoundError
        ``data_dir`` or ``data_dir/<name>`` does not exist, or tonic's files are missing (names the files
        tonic looked for).
    ValueError
        An unknown split or class, no ``data_dir``, a class that pysrm cannot construct with ``save_to``
        and a split alone, tonic failing to read the files, or as for :func:`from_tonic`.
    TypeError
        No ``sim``, or as for :func:`from_tonic`.
    ImportError
        tonic is not installed.
    """
    check_split(split)
    cls = tonic_class(name)
    if data_dir is None:
        raise ValueError(f"tonic:{name} needs --data-dir DIR: the folder given to tonic as save_to (tonic keeps "
                         f"{name}'s files in DIR/{name}/)")
    root = os.path.expanduser(os.fspath(data_dir))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"tonic:{name} data folder {root} does not exist; expected the folder given to tonic "
                                f"as save_to, holding {name}/")
    if sim is None:
        raise TypeError("load_tonic needs sim=SimParams(ts, t_sample)")
    loc = os.path.join(root, "smnist" if name == "SMNIST" else name)  # tonic's folder: save_to/<class name>
    if not os.path.isdir(loc):
        raise FileNotFoundError(f"tonic:{name}: no folder {loc}; tonic keeps {name}'s files in "
                                f"<save_to>/{os.path.basename(loc)}/ (pass the folder above it as --data-dir; pysrm "
                                f"never downloads)")
    params = inspect.signature(cls.__init__).parameters
    kwargs = {"save_to": root}
    if "train" in params:
        kwargs["train"] = split == "train"
    elif "split" in params:
        kwargs["split"] = split
    else:
        raise ValueError(f"tonic:{name} has no train/test split (its class takes neither train= nor split=); build it "
                         f"in Python, split it, and wrap the parts with pysrm.data.from_tonic")
    required = [p for p, v in params.items() if p not in ("self", "save_to", "train", "split")
                and v.default is inspect.Parameter.empty and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
    if required:
        raise ValueError(f"tonic:{name} needs the argument(s) {required}, which `pysrm train` cannot give; build it in "
                         f"Python and wrap it with pysrm.data.from_tonic")
    safe = _no_download_class(cls)
    with _downloads_disabled(cls):
        try:
            obj = safe(**kwargs)
        except TonicFilesMissing:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"tonic:{name}: tonic could not read {loc}: {type(e).__name__}: {e}") from e
    return from_tonic(obj, sim=sim, split=split, **options)
