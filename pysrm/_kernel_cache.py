"""Where Numba keeps pysrm's compiled kernels on disk (the kernel cache).

pysrm compiles its kernels with ``cache=True``.  Numba's default would write the cache files
(``*.nbi`` index, ``*.nbc`` machine code) into ``__pycache__`` folders *inside the installed
package*, e.g. ``site-packages/pysrm/ops/__pycache__``.  pip does not own those files, so
``pip uninstall`` leaves them behind in a ``site-packages/pysrm`` folder without
``__init__.py``; the next Python then imports that folder as an empty namespace package ahead
of an editable install (``ImportError: cannot import name '__version__' from 'pysrm'
(unknown location)``).  pysrm therefore keeps its kernels out of the package, in

1. ``$PYSRM_CACHE_DIR`` when that environment variable is set;
2. else ``$NUMBA_CACHE_DIR`` when set (Numba's own setting, honoured as Numba does);
3. else the user's cache folder: ``$XDG_CACHE_HOME/pysrm/numba`` (``~/.cache/pysrm/numba`` on
   Linux, ``~/Library/Caches/pysrm/numba`` on macOS, ``%LOCALAPPDATA%\\pysrm\\numba`` on Windows).

Inside it, a folder named after a digest of *all* of pysrm's source files (the package's ``*.py``
files, hashed once per process) holds, for each source folder, a subfolder named after the folder
and a hash of its full path, so a normal and an editable install (or two virtual environments)
never share entries.  Numba itself checks a cache entry only against its own source file, but
pysrm's kernels inline functions of other files (per-element math, records, primitives): after an
upgrade or an edit of any of pysrm's files the digest changes and every kernel compiles again, so a
stale kernel is never loaded.  Of the digest folders of one cache root the three most recently used
are kept; older ones are deleted when a new one is made (after a day unused).  The folder is safe to delete at any time, e.g. ``rm -rf ~/.cache/pysrm``
(the next run recompiles: about 40 s on two cores for the dense network).  Only functions defined in pysrm's own package folder are redirected; other
Numba code in the same process keeps Numba's defaults.

The redirection is a cache *locator* class put first in Numba's list of locators
(``numba.core.caching.CacheImpl._locator_classes``, ``_CacheImpl`` before Numba 0.61: a class
attribute that Numba documents only in its source); it is installed when :mod:`pysrm` is imported, before any pysrm kernel is
defined, and is a no-op for every function outside pysrm.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import time

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_root() -> str:
    """The folder that holds pysrm's compiled kernels (see the module docstring for the order).

    Returns
    -------
    str
        An absolute path; it may not exist yet (Numba creates it on the first compilation).
    """
    env = os.environ.get("PYSRM_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "pysrm", "numba")


def _in_package(py_file: str) -> bool:
    try:
        path = os.path.abspath(py_file)
    except (TypeError, ValueError):
        return False
    return path == PACKAGE_DIR or path.startswith(PACKAGE_DIR + os.sep)


#: digest folders kept per cache root (the most recently used), and how long one must have been unused
#: before it may be deleted
KEEP_DIGESTS = 3
PRUNE_AFTER_S = 86400.0


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """A digest of pysrm's source files (16 hex digits): names and contents of every ``*.py`` file of the
    installed package, read once per process."""
    h = hashlib.sha1()
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, PACKAGE_DIR).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _digest_dir(root: str) -> str:
    """The digest folder of this process's sources under ``root``, made (and older ones pruned) once."""
    path = os.path.join(root, source_digest())
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        _prune(root, keep=path)
    else:
        try:
            os.utime(path)  # marks it as used (pruning keeps the most recently used)
        except OSError:
            pass
    return path


def _prune(root: str, keep: str) -> None:
    """Delete digest folders of ``root`` beyond the :data:`KEEP_DIGESTS` most recently used, if unused for
    :data:`PRUNE_AFTER_S` (best effort: a folder in use elsewhere is recreated by Numba when needed)."""
    try:
        entries = [e for e in os.scandir(root) if e.is_dir() and len(e.name) == 16
                   and all(c in "0123456789abcdef" for c in e.name) and e.path != keep]
        entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        now = time.time()
        for e in entries[KEEP_DIGESTS - 1:]:
            if now - e.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(e.path, ignore_errors=True)
    except OSError:
        pass


def _subpath(py_file: str) -> str:
    folder = os.path.dirname(os.path.abspath(py_file))
    digest = hashlib.sha1(folder.encode()).hexdigest()
    return f"{os.path.basename(folder)}_{digest}"


def _make_locator(caching):
    """A locator class for one Numba caching module (``numba.core.caching`` or numba-cuda's)."""
    base = caching.UserProvidedCacheLocator

    class PysrmCacheLocator(base):
        """Numba cache locator: pysrm's kernels go to :func:`cache_root`, others fall through."""

        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(_digest_dir(cache_root()), _subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _in_package(py_file):
                return None
            # skip UserProvidedCacheLocator.from_function (it requires NUMBA_CACHE_DIR)
            return super(base, cls).from_function(py_func, py_file)

    return PysrmCacheLocator


def install(caching=None) -> bool:
    """Put pysrm's locator first in a Numba caching module's locator list (idempotent).

    Parameters
    ----------
    caching : module, optional
        ``numba.core.caching`` (default) or the caching module of numba-cuda.

    Returns
    -------
    bool
        True when the locator is in place, False when this Numba has no such list (then Numba's
        defaults apply and the cache may be written next to the sources).
    """
    if caching is None:
        from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list) or not hasattr(caching, "UserProvidedCacheLocator"):
        return False
    if any(getattr(c, "__name__", "") == "PysrmCacheLocator" for c in classes):
        return True
    classes.insert(0, _make_locator(caching))
    return True


def install_cuda() -> bool:
    """Install the locator into numba-cuda's caching module too, where it has its own."""
    import importlib
    done = False
    for name in ("numba.cuda.core.caching", "numba_cuda.numba.cuda.core.caching"):
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- absent in this numba / numba-cuda version
            continue
        done = install(mod) or done
    return done
