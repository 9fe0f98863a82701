"""N-MNIST (Orchard et al. 2015): 34x34 ATIS recordings of MNIST digits, 10 classes.

Two on-disk layouts are understood (``data_dir``):

official (``Train.zip``/``Test.zip`` unpacked)
    ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``; the class is the
    folder name (``0`` .. ``9``), samples are ordered by class then file name.
SLAYER list layout (e.g. SLAYER's ``NMNISTsmall``)
    ``<id>.bs2`` files plus list files ``train*.txt``/``test*.txt`` of
    ``<id> <class>`` lines after a ``#`` header.  ``list_file`` selects one
    (e.g. ``'train1K.txt'``); by default the only ``<split>*.txt`` file, or
    -- if there are several -- the one listing the most samples (with a
    warning naming it).

Both store the 40-bit N-MNIST events (see :mod:`pysrm.data.formats`); the
sensor is ``(C, H, W) = (2, 34, 34)`` with channel = polarity.  The default
simulation is SLAYER's N-MNIST setting ``SimParams(ts=1, t_sample=350)``
(recordings last ~306 ms).  ``jitter`` (default 8 pixels, as SLAYER users
do) is applied only when a sample is drawn with ``augment=True``.
"""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np

from ..params import SimParams
from ._paths import SplitMissing, default_data_dir, not_found, require_folder
from .base import EventDataset, check_sim, check_split, file_signature
from .formats import read_nmnist_bin, read_sample_list

#: the class names of N-MNIST, in label order
CLASS_NAMES = tuple(str(d) for d in range(10))
SENSOR = (2, 34, 34)
DEFAULT_SIM = SimParams(1.0, 350.0)


def _find_split_dir(root, split):
    for cand in (split.capitalize(), split, split.upper()):
        d = os.path.join(root, cand)
        if os.path.isdir(d):
            return d
    return None


def _choose_list(root, split):
    cands = sorted(glob.glob(os.path.join(root, f"{split}*.txt")))
    if not cands:
        return None
    if len(cands) == 1:
        return cands[0]
    sizes = []
    for c in cands:
        with open(c, "r", encoding="utf-8") as f:
            sizes.append(sum(1 for ln in f if ln.strip() and not ln.lstrip().startswith("#")))
    best = cands[int(np.argmax(sizes))]
    warnings.warn(f"{root}: several {split} lists {[os.path.basename(c) for c in cands]}; using "
                  f"{os.path.basename(best)} ({max(sizes)} samples); pass list_file=... to choose", stacklevel=4)
    return best


class NMNIST(EventDataset):
    """N-MNIST dataset (see the module docstring for the layouts).

    Samples are binned into ``(1, 2, 34, 34, T)`` spike tensors (``(C, H, W)`` = (polarity, y, x), before
    ``downsample``), ``T = t_sample / ts``; labels 0..9.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder; default ``$PYSRM_DATA_DIR/nmnist`` or ``~/.pysrm/data/nmnist``.  A ``NMNIST``
        sub-folder is also accepted.
    split : {'train', 'test'}, default 'train'
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default ``SimParams(1, 350)`` (SLAYER's N-MNIST setting).
    list_file : str or os.PathLike, optional
        SLAYER layout: the list to read (relative to ``data_dir`` or absolute), e.g. ``'train1K.txt'``;
        default the only ``<split>*.txt`` (or the longest, with a warning).
    jitter : int, default 8
        Largest spatial shift (pixels) of the augmentation, applied only with ``augment=True``.
    downsample : int, default 1
        Spatial pooling factor ``k >= 1`` (OR-merged; :func:`~pysrm.data.binning.bin_events`).
    out_of_range : {'warn', 'error'}, default 'warn'
        Events outside the sensor: dropped with a warning, or an error.
    cache_dir : str or os.PathLike, optional
        Folder of the parse-once and binned caches (:mod:`pysrm.data.base`); None keeps them in memory.
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.

    Raises
    ------
    FileNotFoundError
        ``data_dir`` does not exist, has no such split (a ``SplitMissing``, also a ValueError), a list
        file or a listed sample file is missing, or no sample file is found (the message says how to get
        the data).
    ValueError
        ``data_dir`` is a file, an unknown split, class or class folder, or as for
        :class:`~pysrm.data.base.EventDataset`.
    TypeError
        As for :class:`~pysrm.data.base.EventDataset`.
    """

    name = "nmnist"

    def __init__(self, data_dir=None, split="train", sim=None, list_file=None, jitter=8, downsample=1,
                 out_of_range="warn", cache_dir=None, dtype=np.float32):
        check_split(split)
        root = os.fspath(data_dir) if data_dir is not None else default_data_dir("nmnist")
        require_folder("nmnist", root, "a folder (official Train/ and Test/ layout, or SLAYER's <id>.bs2 files "
                                       "with train*.txt/test*.txt lists)")
        if not os.path.isdir(root):
            raise not_found("nmnist", root, "no such directory")
        self.root = root
        files, labels = None, None
        if list_file is not None:
            lf = os.fspath(list_file)
            lf = lf if os.path.isabs(lf) else os.path.join(root, lf)
            if not os.path.isfile(lf):
                raise FileNotFoundError(f"N-MNIST list file not found: {lf} (list_file={list_file!r})")
            files, labels = self._from_list(root, lf)
        else:
            sd = _find_split_dir(root, split)
            if sd is None and _find_split_dir(os.path.join(root, "NMNIST"), split):
                root = os.path.join(root, "NMNIST")
                sd = _find_split_dir(root, split)
            if sd is not None:
                files, labels = self._from_tree(sd)
                self.list_file = None
            else:
                lf = _choose_list(root, split)
                if lf is None:
                    other = "test" if split == "train" else "train"
                    hint = ""
                    if _find_split_dir(root, other) or glob.glob(os.path.join(root, f"{other}*.txt")):
                        hint = f" (found the {other} split only)"
                    raise not_found("nmnist", root,
                                    f"no {split} split{hint}: expected the official layout "
                                    f"{split.capitalize()}/<digit>/*.bin or SLAYER's <id>.bs2 files with a "
                                    f"{split}*.txt list", cls=SplitMissing)
                files, labels = self._from_list(root, lf)
        self.files = files
        super().__init__(split=split, sim=check_sim(sim, DEFAULT_SIM), native_shape=SENSOR,
                         class_names=CLASS_NAMES, labels=labels, downsample=downsample, jitter=jitter,
                         out_of_range=out_of_range, cache_dir=cache_dir, dtype=dtype)
        self._unit_of = np.arange(len(files))

    def _from_list(self, root, lf):
        self.list_file = lf
        rows = read_sample_list(lf)
        bad = np.flatnonzero((rows[:, 1] < 0) | (rows[:, 1] > 9))
        if bad.size:
            raise ValueError(f"{lf}: unknown class {rows[bad[0], 1]} for sample {rows[bad[0], 0]} "
                             f"({bad.size} such line(s)); expected classes 0..9")
        files = [os.path.join(root, f"{i}.bs2") for i in rows[:, 0]]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(f"{lf} lists {len(missing)} sample(s) whose file is missing, e.g. "
                                    f"{missing[0]}; expected <id>.bs2 next to the list")
        return files, rows[:, 1]

    def _from_tree(self, sd):
        files, labels = [], []
        for entry in sorted(os.listdir(sd)):
            p = os.path.join(sd, entry)
            if entry.startswith(".") or not os.path.isdir(p):
                continue
            if entry not in CLASS_NAMES:
                raise ValueError(f"{sd}: unknown class folder {entry!r}; expected folders 0..9")
            fs = sorted(glob.glob(os.path.join(p, "*.bin")))
            files += fs
            labels += [int(entry)] * len(fs)
        if not files:
            raise not_found("nmnist", sd, "no <digit>/*.bin sample file")
        return files, np.asarray(labels, dtype=np.int64)

    def _source(self, i):
        return self.files[i]

    def _parse_unit(self, unit, stats):
        yield unit, read_nmnist_bin(self.files[unit], stats)

    def _signature(self):
        """Every sample file's (absolute path, size, mtime in ns), in sample order."""
        return [file_signature(f) for f in self.files]
