"""N-TIDIGITS18 (Anumula et al. 2018): TIDIGITS spoken digits played to a 64-channel silicon cochlea.

The public file ``n-tidigits.hdf5`` holds, for ``split`` in ``train``/``test``:

* ``<split>_labels``: byte strings ``<speaker ...>-<digits>`` (the part after
  the last ``-`` is the spoken digit sequence, e.g. ``b'ae-o'``, ``b'ae-17z'``);
* ``<split>_addresses/<label>``: channel address (0..63) of each event;
* ``<split>_timestamps/<label>``: event times in **seconds** (converted here
  to integer microseconds, ``round(t * 1e6)``).

As in the paper only the **single-digit** utterances are used (11 classes,
``o`` (oh), ``1`` .. ``9``, ``z`` (zero), :data:`CLASS_NAMES`; index ``o`` = 0
and ``z`` = 10 as in tonic); the multi-digit ones are skipped and counted in
``ds.n_multi_digit``.  The cochlea is 1-D: the channel address goes to the
channel axis, ``sensor_shape = (64, 1, 1)``, so a dense first layer sees 64
inputs (layout ``'address'``; the ON/OFF polarity is not stored in the
file).  Reading needs the optional dependency ``h5py``
(``pip install ".[hdf5]"`` in a clone of pysrm).  ``data_dir`` is the folder holding
``n-tidigits.hdf5`` or the file itself.
"""
from __future__ import annotations

import os

import numpy as np

from ..params import SimParams
from ._paths import SplitMissing, default_data_dir, not_found
from .base import EventDataset, check_sim, check_split, file_signature
from .formats import make_events

#: the class names of N-TIDIGITS18, in label order
CLASS_NAMES = ("o", "1", "2", "3", "4", "5", "6", "7", "8", "9", "z")
FILE_NAME = "n-tidigits.hdf5"
SENSOR = (64, 1, 1)
DEFAULT_SIM = SimParams(1.0, 1500.0)


def import_h5py():
    """Import the optional dependency h5py.

    Returns
    -------
    module
        ``h5py``.

    Raises
    ------
    ImportError
        h5py is not installed (the message says how to install it).
    """
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading N-TIDIGITS (n-tidigits.hdf5) needs the optional dependency h5py, which is "
                          "not installed; install it with `pip install h5py` (or `pip install '.[hdf5]'` in a clone of pysrm)") from e
    return h5py


class NTIDIGITS(EventDataset):
    """N-TIDIGITS18 single-digit dataset (see the module docstring for the file).

    Samples are binned into ``(1, 64, 1, 1, T)`` spike tensors (layout ``'address'``: the cochlea channel
    on the channel axis, before ``downsample``), ``T = t_sample / ts``; labels 0..10 (:data:`CLASS_NAMES`).
    The HDF5 file stays open while samples are parsed (:meth:`close`).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder holding ``n-tidigits.hdf5``, or the file; default ``$PYSRM_DATA_DIR/ntidigits`` or
        ``~/.pysrm/data/ntidigits``.
    split : {'train', 'test'}, default 'train'
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default ``SimParams(1, 1500)``.
    downsample : int, default 1
        Channel pooling factor ``k >= 1`` (channel ``x // k``, OR-merged).
    out_of_range : {'warn', 'error'}, default 'warn'
        Events outside the 64 channels: dropped with a warning, or an error.
    cache_dir : str or os.PathLike, optional
        Folder of the parse-once and binned caches (:mod:`pysrm.data.base`); None keeps them in memory.
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message says how to get it); or the file has no such split (a
        ``SplitMissing``, also a ValueError).
    ImportError
        h5py is not installed.
    ValueError
        Not a readable HDF5 file, a missing group, an unknown label, no single-digit sample, or as for
        :class:`~pysrm.data.base.EventDataset`.  Parsing a sample raises ValueError (naming it) for
        mismatched address and time arrays, non-finite times or negative addresses.
    TypeError
        As for :class:`~pysrm.data.base.EventDataset`.
    """

    name = "ntidigits"
    layout = "address"

    def __init__(self, data_dir=None, split="train", sim=None, downsample=1, out_of_range="warn",
                 cache_dir=None, dtype=np.float32):
        check_split(split)
        path = os.fspath(data_dir) if data_dir is not None else default_data_dir("ntidigits")
        if os.path.isdir(path):
            path = os.path.join(path, FILE_NAME)
        if not os.path.isfile(path):
            folder = path if not path.endswith((".hdf5", ".h5")) else os.path.dirname(path)
            expected = path if folder != path else os.path.join(path, FILE_NAME)
            raise not_found("ntidigits", folder, f"no file {expected}")
        self.path = path
        h5py = import_h5py()
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ValueError(f"{path}: not a readable HDF5 file ({e}); "
                             f"expected the N-TIDIGITS n-tidigits.hdf5") from None
        with f:
            keys = (f"{split}_labels", f"{split}_addresses", f"{split}_timestamps")
            if not any(key in f for key in keys):
                raise SplitMissing(f"{path}: missing dataset/group {keys[0]!r}; found {sorted(f.keys())}, expected "
                                   f"{', '.join(keys)} (no {split} split in this file)")
            for key in keys:
                if key not in f:
                    raise ValueError(f"{path}: missing dataset/group {key!r}; found {sorted(f.keys())}, "
                                     f"expected {split}_labels, {split}_addresses, {split}_timestamps")
            raw = f[f"{split}_labels"][()]
        keys, labels = [], []
        self.n_multi_digit = 0
        for r in np.atleast_1d(raw):
            key = r.decode() if isinstance(r, bytes) else str(r)
            digits = key.split("-")[-1]
            if len(digits) != 1:
                if not digits or any(d not in CLASS_NAMES for d in digits):
                    raise ValueError(f"{path}: label {key!r} of {split}_labels has unknown digits {digits!r}; "
                                     f"expected a sequence of {''.join(CLASS_NAMES)}")
                self.n_multi_digit += 1
                continue
            if digits not in CLASS_NAMES:
                raise ValueError(f"{path}: label {key!r} of {split}_labels has unknown class {digits!r}; "
                                 f"expected one of {CLASS_NAMES}")
            keys.append(key)
            labels.append(CLASS_NAMES.index(digits))
        if not keys:
            raise ValueError(f"{path}: no single-digit sample in {split}_labels ({self.n_multi_digit} multi-digit)")
        self.keys = keys
        self._h5 = None
        super().__init__(split=split, sim=check_sim(sim, DEFAULT_SIM), native_shape=SENSOR,
                         class_names=CLASS_NAMES, labels=labels, downsample=downsample, jitter=0,
                         out_of_range=out_of_range, cache_dir=cache_dir, dtype=dtype)
        self._unit_of = np.arange(len(keys))

    def _source(self, i):
        return f"{self.path} [{self.split} sample {self.keys[i]!r}]"

    def _parse_unit(self, unit, stats):
        if self._h5 is None:
            self._h5 = import_h5py().File(self.path, "r")
        key = self.keys[unit]
        try:
            addr = np.asarray(self._h5[f"{self.split}_addresses"][key][()]).reshape(-1)
            ts = np.asarray(self._h5[f"{self.split}_timestamps"][key][()], dtype=np.float64).reshape(-1)
        except KeyError:
            raise ValueError(f"{self._source(unit)}: missing {self.split}_addresses/{key} or "
                             f"{self.split}_timestamps/{key}") from None
        if addr.shape != ts.shape:
            raise ValueError(f"{self._source(unit)}: {addr.size} addresses but {ts.size} timestamps; expected equal")
        if ts.size and not np.isfinite(ts).all():
            raise ValueError(f"{self._source(unit)}: non-finite timestamps")
        if addr.size and addr.min() < 0:
            raise ValueError(f"{self._source(unit)}: negative channel address {addr.min()}; expected 0..63")
        try:
            ev = make_events(addr, 0, np.round(ts * 1e6).astype(np.int64), 1)
        except ValueError as e:
            raise ValueError(f"{self._source(unit)}: {e}") from None
        yield unit, ev

    def close(self):
        """Close the HDF5 file (it is reopened when another sample is parsed)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _signature(self):
        """The file's (absolute path, size, mtime in ns) and the split's single-digit sample keys in order."""
        return {"file": file_signature(self.path), "keys": list(self.keys)}
