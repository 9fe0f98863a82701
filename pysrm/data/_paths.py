"""Where datasets live by default, and the 'data not found' messages."""
from __future__ import annotations

import os

#: environment variable overriding the root of the downloaded datasets
DATA_DIR_ENV = "PYSRM_DATA_DIR"


class SplitMissing(FileNotFoundError, ValueError):
    """The dataset is there but has no such split (e.g. a folder with ``Test/`` only).

    A ``FileNotFoundError`` (the split's files are missing) and a ``ValueError``
    (for an HDF5 file that lacks the split's groups), so that callers catching
    either keep working; ``pysrm data info`` catches it to summarise the splits
    that are there.
    """


def default_data_dir(name: str | None = None) -> str:
    """``$PYSRM_DATA_DIR/<name>``, or ``~/.pysrm/data/<name>``."""
    root = os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".pysrm", "data")
    return root if name is None else os.path.join(root, name)


def not_found(name: str, path, problem: str, cls=FileNotFoundError) -> FileNotFoundError:
    """A FileNotFoundError (or ``cls``) naming the path, the problem and how to get the data."""
    from .remote import RESOURCES  # local import: fetch is optional machinery

    res = RESOURCES.get(name)
    if name == "nmnist" and "small" in os.path.basename(os.path.normpath(str(path))).lower():
        # a folder meant for SLAYER's 1,000/100-sample subset: fetching the full N-MNIST there would mislead
        how = ("NMNISTsmall is the folder example/NMNISTsmall of SLAYER-PyTorch (<id>.bs2 files with "
               "train1K.txt and test100.txt); put it there, or get the full N-MNIST with `pysrm data fetch "
               "nmnist --to DIR` and use that DIR")
    else:
        how = f"Get it with `pysrm data fetch {name} --to {path}`"
        if res is not None and res.manual:
            how += " (which explains the manual download)"
    how += (f"; give the folder with --data-dir (in Python: data_dir=...; default root ${DATA_DIR_ENV} or "
            f"~/.pysrm/data).")
    return cls(f"{name} data not found at {path}: {problem}. {how}")


def require_folder(name: str, path, what: str) -> None:
    """Raise a ValueError when ``path`` is an existing *file* where dataset ``name`` needs a folder.

    (Otherwise the 'not found' message would suggest fetching the dataset into a file.)
    """
    if os.path.isfile(path):
        raise ValueError(f"{path} is a file, but {name} data_dir must be {what}; pass the folder that holds "
                         f"the dataset (single event files are read by `pysrm data info FILE`, formats "
                         f".bs1, .bs2, .bin, .aedat)")
