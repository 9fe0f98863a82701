"""IBM DVS Gesture (Amir et al. 2017): DVS128 recordings of 11 hand gestures.

Layout of ``data_dir`` (the unpacked ``DvsGesture.tar.gz``; a ``DvsGesture``
sub-folder is also accepted):

* ``trials_to_train.txt`` / ``trials_to_test.txt``: one recording
  (``userNN_<lighting>.aedat``) per line; users 1-23 train, 24-29 test;
* ``<trial>.aedat``: AEDAT 3.1 recording (see :mod:`pysrm.data.formats`);
* ``<trial>_labels.csv``: ``class,startTime_usec,endTime_usec`` rows, one per
  gesture, class 1..11 (:data:`CLASS_NAMES`, index = class - 1).

Each labelled gesture is one sample; its events are those with
``start <= t < end``, with times made relative to ``start``.  Following the
paper, training samples are **randomly placed windows** of ``window`` ms
(default ``sim.t_sample``, 300 ms by default) inside the gesture, drawn from
the ``rng`` given to :meth:`~pysrm.data.base.EventDataset.sample` (the
:class:`~pysrm.data.DataLoader` passes a per-epoch seeded one; without an rng
the window starts at the gesture start), and test samples are the **first**
``window`` ms (default simulation 1.5 s).  The sensor is ``(2, 128, 128)``;
use ``downsample=4`` for 32x32 inputs.
"""
from __future__ import annotations

import os

import numpy as np

from ..params import SimParams
from ._paths import SplitMissing, default_data_dir, not_found, require_folder
from .base import EventDataset, check_sim, check_split, file_signature
from .formats import read_aedat31, read_gesture_labels

#: the class names of DVS Gesture, in label order
CLASS_NAMES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
               "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
               "arm_roll", "air_drums", "air_guitar", "other_gestures")
SENSOR = (2, 128, 128)
DEFAULT_SIM = {"train": SimParams(1.0, 300.0), "test": SimParams(1.0, 1500.0)}


def read_trials(path) -> list:
    """The ``.aedat`` names listed in a ``trials_to_<split>.txt`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The list; blank lines and lines starting with ``#`` are skipped.

    Returns
    -------
    list of str
        The recording names, in file order.

    Raises
    ------
    ValueError
        A line that is not a ``<trial>.aedat`` name (names the line), or no recording listed.
    OSError
        The file cannot be opened.
    """
    with open(path, "r", encoding="utf-8") as f:
        names = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    for k, n in enumerate(names):
        if not n.endswith(".aedat"):
            raise ValueError(f"{path}:{k + 1}: expected a recording name '<trial>.aedat', got {n!r}")
    if not names:
        raise ValueError(f"{path}: no recording listed (expected '<trial>.aedat' lines)")
    return names


class DVSGesture(EventDataset):
    """DVS Gesture dataset (see the module docstring for the layout and the windows).

    Samples are binned into ``(1, 2, 128, 128, T)`` spike tensors (``(C, H, W)`` = (polarity, y, x), before
    ``downsample``), ``T = t_sample / ts``; labels 0..10 (:data:`CLASS_NAMES`).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder; default ``$PYSRM_DATA_DIR/dvs-gesture`` or ``~/.pysrm/data/dvs-gesture``.  A
        ``DvsGesture`` sub-folder is also accepted.
    split : {'train', 'test'}, default 'train'
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default ``SimParams(1, 300)`` for train, ``SimParams(1, 1500)`` for test.
    window : float, optional
        Length of a sample's window (ms), > 0; default ``sim.t_sample``.
    random_window : bool, optional
        Draw each window at a random place in the gesture (from the ``rng`` given to
        :meth:`~pysrm.data.base.EventDataset.sample`); default True for train, False for test.
    jitter : int, default 0
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
        ``data_dir`` does not exist, has no ``trials_to_<split>.txt`` (a ``SplitMissing``, also a
        ValueError), or a listed recording or its label file is missing (the message says how to get
        the data).
    ValueError
        ``data_dir`` is a file, an unknown split, a malformed trials or label file, an unknown class,
        ``window <= 0``, or as for :class:`~pysrm.data.base.EventDataset`.
    TypeError
        As for :class:`~pysrm.data.base.EventDataset`.
    """

    name = "dvs-gesture"

    def __init__(self, data_dir=None, split="train", sim=None, window=None, random_window=None, jitter=0,
                 downsample=1, out_of_range="warn", cache_dir=None, dtype=np.float32):
        check_split(split)
        root = os.fspath(data_dir) if data_dir is not None else default_data_dir("dvs-gesture")
        require_folder("dvs-gesture", root, "a folder (DvsGesture with trials_to_train.txt, trials_to_test.txt, "
                                            "<trial>.aedat and <trial>_labels.csv)")
        if not os.path.isdir(root):
            raise not_found("dvs-gesture", root, "no such directory")
        lst = f"trials_to_{split}.txt"
        if not os.path.isfile(os.path.join(root, lst)) and os.path.isfile(os.path.join(root, "DvsGesture", lst)):
            root = os.path.join(root, "DvsGesture")
        lp = os.path.join(root, lst)
        if not os.path.isfile(lp):
            raise not_found("dvs-gesture", root, f"missing split file {lp}", cls=SplitMissing)
        self.root = root
        self.trial_files = []
        rows = []  # (trial, start_us, end_us, class0)
        for name in read_trials(lp):
            af = os.path.join(root, name)
            if not os.path.isfile(af):
                raise FileNotFoundError(f"{lp} lists {name}, but {af} does not exist")
            lab_file = af[: -len(".aedat")] + "_labels.csv"
            lab = read_gesture_labels(lab_file)
            bad = np.flatnonzero((lab[:, 0] < 1) | (lab[:, 0] > len(CLASS_NAMES)))
            if bad.size:
                raise ValueError(f"{lab_file}: unknown class {lab[bad[0], 0]} in gesture row {bad[0] + 1}; "
                                 f"expected classes 1..{len(CLASS_NAMES)}")
            trial = len(self.trial_files)
            self.trial_files.append(af)
            for c, s, e in lab:
                rows.append((trial, s, e, c - 1))
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        self.gestures = rows[:, :3]  # (trial, start_us, end_us)
        sim = check_sim(sim, DEFAULT_SIM[split])
        self.window = float(sim.t_sample if window is None else window)
        if not self.window > 0:
            raise ValueError(f"window must be > 0 ms, got {window!r}")
        self.random_window = (split == "train") if random_window is None else bool(random_window)
        super().__init__(split=split, sim=sim, native_shape=SENSOR, class_names=CLASS_NAMES, labels=rows[:, 3],
                         downsample=downsample, jitter=jitter, out_of_range=out_of_range, cache_dir=cache_dir,
                         dtype=dtype)
        self._unit_of = rows[:, 0]

    def _source(self, i):
        trial, s, e = self.gestures[i]
        return f"{self.trial_files[trial]} (gesture {i - int(np.searchsorted(self._unit_of, trial))} " \
               f"at {s}..{e} us)"

    def _parse_unit(self, unit, stats):
        ev = read_aedat31(self.trial_files[unit], stats)
        t = ev["t"]
        ordered = t.size < 2 or bool(np.all(t[1:] >= t[:-1]))
        for i in self._samples_of_unit(unit):
            _, s, e = self.gestures[i]
            if ordered:
                a, b = np.searchsorted(t, [s, e])
                g = ev[a:b].copy()
            else:
                g = ev[(t >= s) & (t < e)]
            g["t"] -= s
            yield int(i), g

    def duration_us(self, i):
        """Duration of sample ``i``: its gesture's ``end - start``.

        Parameters
        ----------
        i : int
            Sample index; negative counts from the end.

        Returns
        -------
        int
            The duration in us.

        Raises
        ------
        TypeError, IndexError
            ``i`` is not an integer, or out of range.
        """
        _, s, e = self.gestures[self._index(i)]
        return int(e - s)

    def _random_windows(self):
        return self.random_window

    def window_start(self, i, rng=None):
        """Time of sample ``i`` that becomes t = 0 when binning.

        Parameters
        ----------
        i : int
            Sample index (already checked).
        rng : numpy.random.Generator, optional
            With ``random_window``, draws the start uniformly in ``[0, duration - window]`` us; without it
            (or without ``random_window``) the window starts at the gesture's start.

        Returns
        -------
        int
            The start in us from the gesture's start.
        """
        if not self.random_window or rng is None:
            return 0
        slack = self.duration_us(i) - int(round(self.window * 1000))
        return int(rng.integers(0, slack + 1)) if slack > 0 else 0

    def _signature(self):
        """Every recording's and label file's (absolute path, size, mtime in ns), and every gesture's
        (recording, start us, end us) in sample order: what selects each sample's events."""
        files = [file_signature(g) for f in self.trial_files for g in (f, f[: -len(".aedat")] + "_labels.csv")]
        return {"files": files, "gestures": self.gestures.tolist()}
