"""Threads around pysrm's compute: one BLAS thread inside it, and nothing changed outside it.

pysrm's Numba kernels run on every core and call the BLAS (SciPy's OpenBLAS, through Numba's
``np.dot`` and :mod:`pysrm.ops._blas_call`) from inside their parallel loops, one single-threaded
product per task.  A BLAS that is itself multi-threaded next to them makes both spin against each
other (measured on 2 cores: batch-32 training of the dense N-MNIST network 2x slower), so inside
pysrm's compute the BLAS must run on one thread.

:func:`compute_scope` does that only for as long as pysrm computes: on entry it limits every loaded
BLAS to one thread, on exit it restores what was there.  The BLAS libraries and their thread-count
setters are found by threadpoolctl (the well-kept library for this).  ``import pysrm`` changes nothing.  The BLAS thread count is a setting of the whole process,
so the scope is shared: the first thread to enter applies the limit, the last to leave restores it
(a count under a lock), and two networks computing in two threads never restore it under each other.
Results do not depend on it (each BLAS call is single-threaded inside the scope either way).

The ``pysrm`` command limits the BLAS to one thread for its whole process
(:func:`limit_blas_for_process`).

Numba's ``workqueue`` threading layer (used only where neither OpenMP nor TBB is available) must not
run parallel kernels from two threads at once; under it the scope also serialises pysrm's compute
across threads (a process lock).  The OpenMP and TBB layers need no lock.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager


class _BlasLimit:
    """The shared one-thread BLAS limit (see the module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None
        self._libs = None

    def _blas_libs(self) -> list:
        """threadpoolctl's controllers of the BLAS libraries loaded now (found once: pysrm's own BLAS,
        SciPy's OpenBLAS, is loaded with pysrm.ops; NumPy's with NumPy)."""
        if self._libs is None:
            from threadpoolctl import ThreadpoolController
            from .ops import _blas_call  # noqa: F401  (loads SciPy's BLAS, the one Numba's np.dot calls)
            self._libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        return self._libs

    @staticmethod
    def _set(lib, n):
        # threadpoolctl (3.5+) lets only one Python thread at a time set OpenBLAS's thread count and
        # ignores the others' calls; here the shared count above is the arbiter (whichever thread enters
        # first or leaves last must be able to set and restore), so the library's own setter is used
        setter = getattr(lib, "_real_set_num_threads", None) or lib.set_num_threads
        setter(n)

    def enter(self):
        with self._lock:
            if self._depth == 0:
                libs = self._blas_libs()
                self._saved = [(lib, lib.get_num_threads()) for lib in libs]
                for lib, n in self._saved:
                    if n != 1:
                        self._set(lib, 1)
            self._depth += 1

    def exit(self):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                for lib, n in self._saved:
                    if n != 1:
                        self._set(lib, n)
                self._saved = None


_BLAS_LIMIT = _BlasLimit()
_WORKQUEUE_LOCK = threading.RLock()


def _workqueue_layer() -> bool:
    """True when Numba's parallel kernels run on the workqueue layer (or it is not yet known)."""
    import numba
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel kernel has run yet (the layer is chosen at the first): be safe
        return True


@contextmanager
def compute_scope():
    """Run pysrm's compute inside this block: the BLAS on one thread (restored on exit), and, under
    Numba's workqueue layer only, one thread at a time."""
    lock = _WORKQUEUE_LOCK if _workqueue_layer() else None
    if lock is not None:
        lock.acquire()
    _BLAS_LIMIT.enter()
    try:
        yield
    finally:
        _BLAS_LIMIT.exit()
        if lock is not None:
            lock.release()


def limit_blas_for_process(n: int = 1) -> None:
    """Limit every BLAS loaded now to ``n`` threads for the rest of the process (the ``pysrm`` command
    calls this; libraries keep what the environment, e.g. ``OPENBLAS_NUM_THREADS``, says if set)."""
    import os
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")
