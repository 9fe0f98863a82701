"""``load_dataset``: one entry point for the built-in and the real datasets."""
from __future__ import annotations

import inspect

from .dvs_gesture import DVSGesture
from .nmnist import NMNIST
from .ntidigits import NTIDIGITS
from .synthetic import SyntheticDataset
from .tonic_adapter import TONIC_PREFIX, from_tonic, load_tonic

#: the dataset names of :func:`load_dataset` (besides ``"tonic:<ClassName>"``)
DATASETS = ("synthetic", "nmnist", "dvs-gesture", "ntidigits")

_CLASSES = {"synthetic": SyntheticDataset, "nmnist": NMNIST, "dvs-gesture": DVSGesture, "ntidigits": NTIDIGITS}


def dataset_options(name: str) -> tuple:
    """Keyword options accepted by ``load_dataset(name, ...)`` besides ``split``, ``data_dir`` and ``sim``.

    Parameters
    ----------
    name : str
        A dataset name of :func:`load_dataset`.

    Returns
    -------
    tuple of str
        The option names, in the order of the dataset's constructor (of :func:`~pysrm.data.from_tonic`
        for ``'tonic:<ClassName>'``).

    Raises
    ------
    ValueError, TypeError
        An unknown or non-string ``name``.
    """
    if isinstance(name, str) and name.startswith(TONIC_PREFIX):
        params = inspect.signature(from_tonic).parameters
        return tuple(p for p in params if p not in ("dataset", "ts", "t_sample", "sim", "split"))
    cls = _dataset_class(name)
    params = inspect.signature(cls.__init__).parameters
    return tuple(p for p in params if p not in ("self", "split", "data_dir", "sim"))


def _dataset_class(name):
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, one of {DATASETS}; got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    key = {"dvsgesture": "dvs-gesture", "dvs128-gesture": "dvs-gesture", "n-mnist": "nmnist",
           "n-tidigits": "ntidigits", "ntidigits18": "ntidigits"}.get(key, key)
    if key not in _CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS} or 'tonic:<ClassName>'")
    return _CLASSES[key]


def load_dataset(name: str, split: str = "train", data_dir=None, sim=None, **options):
    """Load a dataset split.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (``'dvsgesture'``, ``'n-mnist'`` ... are accepted too) or
        ``'tonic:<ClassName>'``:

        * ``'synthetic'``: built-in glyph events, no files
          (options ``n_samples``, ``size``, ``seed``, ``duration``, ``n_classes``,
          ``noise_rate``, ``jitter``, ``downsample``);
        * ``'nmnist'``: N-MNIST (options ``list_file``, ``jitter`` (default 8,
          used with ``augment=True``), ``downsample``, ``cache_dir``, ``out_of_range``);
        * ``'dvs-gesture'``: DVS Gesture (options ``window``, ``random_window``,
          ``jitter``, ``downsample``, ``cache_dir``, ``out_of_range``);
        * ``'ntidigits'``: N-TIDIGITS18 single digits (options ``downsample``,
          ``cache_dir``, ``out_of_range``; needs h5py);
        * ``'tonic:<ClassName>'``: ``tonic.datasets.<ClassName>`` read by tonic from
          ``data_dir`` (its ``save_to``), never downloaded (options of :func:`~pysrm.data.from_tonic`;
          needs tonic).
    split : {'train', 'test'}, default 'train'
    data_dir : str or os.PathLike, optional
        Where the files are; default ``$PYSRM_DATA_DIR/<name>`` or ``~/.pysrm/data/<name>`` (where
        ``pysrm data fetch <name>`` puts them).
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default per dataset (synthetic 1/100 ms, N-MNIST 1/350 ms, DVS Gesture
        1/300 ms train and 1/1500 ms test, N-TIDIGITS 1/1500 ms); required for tonic datasets.
    **options
        The dataset's options (above; :func:`dataset_options` lists them).

    Returns
    -------
    EventDataset
        :class:`~pysrm.data.synthetic.SyntheticDataset`, :class:`~pysrm.data.nmnist.NMNIST`,
        :class:`~pysrm.data.dvs_gesture.DVSGesture`, :class:`~pysrm.data.ntidigits.NTIDIGITS` or
        :class:`~pysrm.data.tonic_adapter.TonicDataset`.

    Raises
    ------
    ValueError
        An unknown name (listing the choices), or as the dataset raises.
    TypeError
        An unknown option (listing the accepted ones), a non-string name, a tonic dataset without ``sim``.
    FileNotFoundError
        The data is missing (names the path and how to get the data).
    """
    tonic = isinstance(name, str) and name.startswith(TONIC_PREFIX)
    cls = None if tonic else _dataset_class(name)
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for dataset {name!r}; accepted: {list(allowed)}")
    if tonic:
        if sim is None:
            raise TypeError(f"dataset {name!r} needs sim=SimParams(ts, t_sample) (tonic datasets have no default)")
        return load_tonic(name[len(TONIC_PREFIX):], split=split, data_dir=data_dir, sim=sim, **options)
    return cls(split=split, data_dir=data_dir, sim=sim, **options)
