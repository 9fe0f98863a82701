"""Where datasets live by default, and the 'data not found' message."""
from __future__ import annotations

import os

#: environment variable overriding the root of the downloaded datasets
DATA_DIR_ENV = "PYSRM_DATA_DIR"


def default_data_dir(name: str | None = None) -> str:
    """``$PYSRM_DATA_DIR/<name>``, or ``~/.pysrm/data/<name>``."""
    root = os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".pysrm", "data")
    return root if name is None else os.path.join(root, name)


def not_found(name: str, path, problem: str) -> FileNotFoundError:
    """A FileNotFoundError naming the path, the problem and how to get the data."""
    from .remote import RESOURCES  # local import: fetch is optional machinery

    res = RESOURCES.get(name)
    how = f"Get it with `pysrm data fetch {name} --to {path}`"
    if res is not None and res.manual:
        how += " (which explains the manual download)"
    how += f", or pass data_dir=... (default root ${DATA_DIR_ENV} or ~/.pysrm/data)."
    return FileNotFoundError(f"{name} data not found at {path}: {problem}. {how}")
