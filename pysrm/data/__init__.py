"""Event datasets: file readers, binning into spike tensors, loaders.

Quick start::

    from pysrm.data import load_dataset, DataLoader
    from pysrm.params import SimParams

    train = load_dataset("synthetic", "train")                  # built in, no files
    train = load_dataset("nmnist", "train", data_dir="NMNISTsmall", sim=SimParams(1.0, 350.0))
    for x, y in DataLoader(train, batch_size=32, seed=0):       # x: SpikeEvents (N, C, H, W, T)
        ...

Conventions: spike tensors ``(N, C, H, W, T)``, time last, float32, spike
amplitude ``1/Ts``; event times in microseconds, simulation times in ms.
A 2-D event ``(x, y, p, t)`` goes to ``[p, y, x, round(t / 1000 / Ts)]``
(SLAYER's layout and binning; several events in one bin make one spike).
1-D sensors (N-TIDIGITS, 64 channels) put the address on the channel axis,
``(C, H, W) = (64, 1, 1)``.  See :mod:`pysrm.data.formats` (file formats),
:mod:`pysrm.data.binning` (binning), :mod:`pysrm.data.base` (caching).

Datasets (``DATASETS``): ``'synthetic'`` (glyph events generated in pysrm),
``'nmnist'``, ``'dvs-gesture'``, ``'ntidigits'``, and ``'tonic:<ClassName>'`` (a tonic dataset class,
read by tonic from ``data_dir``; :mod:`pysrm.data.tonic_adapter`); a tonic dataset object goes through
:func:`from_tonic`, events already in memory (structured arrays with fields ``x, y, t, p``) through
:func:`from_arrays`.
"""
from .base import EventArrayDataset, EventDataset, from_arrays
from .binning import bin_events, binned_shape
from .dvs_gesture import DVSGesture
from .remote import DownloadError, ManualDownloadRequired, download, fetch
from .formats import (EVENT_DTYPE, as_events, make_events, read_aedat31, read_bs1, read_bs2, read_gesture_labels,
                      read_nmnist_bin, read_sample_list, write_aedat31, write_bs1, write_bs2)
from .loader import DataLoader
from .nmnist import NMNIST
from .ntidigits import NTIDIGITS
from ._paths import default_data_dir
from .registry import DATASETS, dataset_options, load_dataset
from .summary import detect, file_info, summarize
from .synthetic import SyntheticDataset
from .tonic_adapter import TonicDataset, from_tonic, load_tonic

__all__ = [
    "DATASETS", "load_dataset", "DataLoader", "dataset_options", "default_data_dir",
    "EventDataset", "EventArrayDataset", "from_arrays", "TonicDataset", "from_tonic", "load_tonic",
    "SyntheticDataset", "NMNIST", "DVSGesture", "NTIDIGITS",
    "bin_events", "binned_shape", "EVENT_DTYPE", "as_events", "make_events",
    "read_nmnist_bin", "read_bs1", "read_bs2", "write_bs1", "write_bs2", "read_aedat31", "write_aedat31",
    "read_gesture_labels", "read_sample_list",
    "fetch", "download", "DownloadError", "ManualDownloadRequired", "summarize", "file_info", "detect",
]
