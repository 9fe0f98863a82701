r"""Owned scratch memory and derived-weight copies: :class:`Workspace`.

Some CPU kernels need large work arrays (the partial sums of the event-driven weight gradient are
``parts x inputs x outputs``, tens of MB for the N-MNIST dense network) or a derived copy of a weight
(the transposed weight the event paths read row by row).  Allocated afresh on every call they are new
pages each time, and their first touch inside a parallel kernel made the first steps of a run up to
5x slower (measured 48 ms instead of 5-10 ms per call at N-MNIST shapes), so they are kept and reused.

They are kept by a :class:`Workspace`, never by a module: a :class:`~pysrm.network.Network` owns one
(``net.workspace``) and hands it to the ops it runs; an op called through :mod:`pysrm.functional`
without ``workspace=`` allocates what it needs for that call alone.  Two networks (or two direct
callers) therefore never share memory, whichever threads they run in.  A workspace itself is not
meant to be used by two threads at once (neither is a network: its layers keep the caches of their
last forward pass).

Contents of a work array are undefined between calls (every kernel that takes one writes before it
reads); a caller must not hold on to one across calls.

Inside :meth:`Workspace.frozen` (entered by :meth:`pysrm.network.Network.inference`, with the
parameters made read-only) the transposed copy of a read-only weight is made once and reused for the
whole block, keyed by the array's identity (address, shape, strides, dtype) and holding a reference
to the array, so its memory cannot be reused for another array while the copy is kept; the copies are
dropped on exit.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np


class Workspace:
    """Reusable work arrays and (inside :meth:`frozen`) derived-weight copies of one owner."""

    def __init__(self):
        self._arrays: dict = {}
        self._frozen: dict | None = None

    def array(self, tag: str, shape, dtype) -> np.ndarray:
        """A work array of this ``shape`` and ``dtype`` for the use ``tag``, allocated on the first
        request and returned again for the same (tag, shape, dtype); contents undefined."""
        key = (tag, tuple(int(s) for s in shape), np.dtype(dtype).str)
        a = self._arrays.get(key)
        if a is None:
            a = self._arrays[key] = np.empty(key[1], dtype=dtype)
        return a

    @property
    def is_frozen(self) -> bool:
        return self._frozen is not None

    def frozen_copy(self, tag: str, w: np.ndarray, make):
        """Inside :meth:`frozen`, for a read-only ``w``: ``make(w)`` computed once per block and reused;
        otherwise None (the caller makes its copy into a work array)."""
        if self._frozen is None or w.flags.writeable:
            return None
        key = (tag, w.ctypes.data, w.shape, w.strides, w.dtype.str)
        hit = self._frozen.get(key)
        if hit is None:  # the entry holds w itself, so its memory cannot be reused for another array
            hit = self._frozen[key] = (w, make(w))
        return hit[1]

    @contextmanager
    def frozen(self):
        """A block in which derived copies of read-only weights are made once (see the module docstring)."""
        old = self._frozen
        self._frozen = {}
        try:
            yield self
        finally:
            self._frozen = old

    def clear(self):
        """Drop every work array (they are made again on demand)."""
        self._arrays.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held in work arrays."""
        return sum(a.nbytes for a in self._arrays.values())

    def __repr__(self):
        return f"Workspace({len(self._arrays)} arrays, {self.nbytes / 2**20:.1f} MiB)"
