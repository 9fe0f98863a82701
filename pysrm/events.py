"""Sparse spike tensors: a batch of spike trains stored as events.

A :class:`SpikeEvents` holds the same information as a dense spike tensor of
shape ``(N, C, H, W, T)`` but only its non-zero entries, in a compressed
per-sample layout (CSR over the batch)::

    offsets[n] : offsets[n+1]   the events of sample n
    neuron[k]                   flat input index c*H*W + y*W + x (int32)
    time[k]                     time bin (int32)
    value[k]                    amplitude (1/Ts for a spike)

Order (the contract every op relies on): within a sample the events are sorted by
(neuron, time), strictly -- at most one event per (neuron, time) bin.  The constructor establishes
it: events given in another order are sorted (stably) and events of the same bin are merged into one
whose value is their sum, so ``to_dense()`` is unchanged (:meth:`SpikeEvents.is_canonical` tells
whether input arrays already are in this order).  Batches made by pysrm's own kernels, which produce
this order, skip the check (``SpikeEvents._trusted``).  The first layer of a network
(dense, conv or pool) accepts a ``SpikeEvents`` directly and only touches the
events (event-driven), which is what makes training on N-MNIST-like inputs
(about 0.6 % of the bins active) cheap.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._checks import float_array


@njit(parallel=True, cache=True)
def _count_nonzero_cpu(x, counts):
    N, M, T = x.shape
    for n in prange(N):
        c = 0
        for j in range(M):
            for t in range(T):
                if x[n, j, t] != 0:
                    c += 1
        counts[n] = c


@njit(parallel=True, cache=True)
def _fill_events_cpu(x, offsets, neuron, time, value):
    N, M, T = x.shape
    for n in prange(N):
        k = offsets[n]
        for j in range(M):
            for t in range(T):
                v = x[n, j, t]
                if v != 0:
                    neuron[k] = j
                    time[k] = t
                    value[k] = v
                    k += 1


@njit(parallel=True, cache=True)
def _scatter_events_cpu(offsets, neuron, time, value, out):
    # out[n, neuron[k], time[k]] += value[k] for the events k of sample n, in stored order, in parallel
    # over the samples
    for n in prange(offsets.shape[0] - 1):
        o = out[n]
        for k in range(offsets[n], offsets[n + 1]):
            o[neuron[k], time[k]] += value[k]


@njit(parallel=True, cache=True)
def _sort_spike_lists_cpu(nb, tb, offsets, n_in, neuron, time):
    # per sample: the listed (neuron, time) pairs sorted by neuron (counting sort, stable), then by
    # time within each neuron (no division: the pairs come as two lists)
    N = offsets.shape[0] - 1
    for n in prange(N):
        a = offsets[n]
        c = offsets[n + 1] - a
        start = np.zeros(n_in + 1, dtype=np.int64)
        for q in range(c):
            start[nb[n, q] + 1] += 1
        for j in range(n_in):
            start[j + 1] += start[j]
        for q in range(c):
            j = nb[n, q]
            k = a + start[j]
            start[j] += 1
            neuron[k] = j
            time[k] = tb[n, q]
        # within a neuron the times keep the order listed (time-major from the spike scan: already
        # ascending); an insertion sort puts any other order right at O(run) cost when sorted
        for k in range(a + 1, a + c):
            t = time[k]
            q = k
            while q > a and neuron[q - 1] == neuron[k] and time[q - 1] > t:
                time[q] = time[q - 1]
                q -= 1
            time[q] = t


@njit(cache=True)
def _canonical_cpu(offsets, neuron, time):
    # True when every sample's events are strictly ascending in (neuron, time)
    for n in range(offsets.shape[0] - 1):
        for k in range(offsets[n] + 1, offsets[n + 1]):
            if neuron[k] < neuron[k - 1] or (neuron[k] == neuron[k - 1] and time[k] <= time[k - 1]):
                return False
    return True


@njit(cache=True)
def _merge_runs_cpu(values, first, out):
    # out[j] = values[first[j]] + values[first[j] + 1] + ... up to the next run, added left to right
    n = values.shape[0]
    for j in range(first.shape[0]):
        end = first[j + 1] if j + 1 < first.shape[0] else n
        acc = values[first[j]]
        for q in range(first[j] + 1, end):
            acc += values[q]
        out[j] = acc


def _canonicalise(shape, offsets, neuron, time, value):
    """Sort every sample's events by (neuron, time) (stable) and merge the events of one bin (their values
    added in their given order); returns the new (offsets, neuron, time, value)."""
    N, T = shape[0], shape[4]
    n_in = shape[1] * shape[2] * shape[3]
    sample = np.repeat(np.arange(N, dtype=np.int64), np.diff(offsets))
    key = (sample * n_in + neuron.astype(np.int64)) * T + time.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
    merged = np.empty(first.size, dtype=value.dtype)
    _merge_runs_cpu(value[order], first, merged)
    ukey = key[first]
    counts = np.bincount(ukey // (n_in * T), minlength=N) if ukey.size else np.zeros(N, np.int64)
    new_offsets = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    rem = ukey % (n_in * T)
    return new_offsets, (rem // T).astype(np.int32), (rem % T).astype(np.int32), merged


class EventBatch:
    """What host and device event batches share: ``shape`` and the ``value`` array give dtype,
    number of events and density (subclasses: SpikeEvents, pysrm.events_cuda.DeviceSpikeEvents)."""

    __slots__ = ()

    @property
    def dtype(self):
        """The dtype of the values, float32 or float64 (a ``numpy.dtype``)."""
        return self.value.dtype

    @property
    def n_events(self) -> int:
        """Number of events in the batch (int)."""
        return int(self.neuron.shape[0])

    @property
    def density(self) -> float:
        """Fraction of non-zero bins."""
        return self.n_events / max(1, int(np.prod(self.shape)))


class SpikeEvents(EventBatch):
    """A batch of sparse spike tensors (see the module docstring for the layout and order).

    Parameters
    ----------
    shape : tuple of int
        The dense shape ``(N, C, H, W, T)`` (batch, channels, height, width, time bins).
    offsets : array_like of int, shape (N + 1,)
        ``offsets[n]:offsets[n+1]`` are the events of sample ``n``; ``offsets[0] = 0``, non-decreasing,
        ``offsets[N] = n_events``.  Stored as int64.
    neuron : array_like of int, shape (n_events,)
        Flat input index ``c*H*W + y*W + x`` of each event, in ``[0, C*H*W)``.  Stored as int32.
    time : array_like of int, shape (n_events,)
        Time bin of each event, in ``[0, T)`` (bins).  Stored as int32.
    value : ndarray, shape (n_events,), float32 or float64
        Amplitude of each event (``1/Ts`` for a spike, ``Ts`` in ms); its dtype is the batch's.

    Raises
    ------
    ValueError
        ``shape`` is not 5-D; ``offsets`` has not length ``N + 1``, does not start at 0, decreases, or
        does not end at the length of ``neuron``; ``neuron``, ``time`` and ``value`` differ in length;
        a neuron index or time bin lies outside ``shape``.
    TypeError
        ``value`` is not float32 or float64.

    Notes
    -----
    Events given in another order than sorted by (neuron, time) are sorted (stably), and events of the
    same (neuron, time) bin are merged into one whose value is their sum: ``to_dense()`` is unchanged.
    """

    __slots__ = ("shape", "offsets", "neuron", "time", "value")

    def __init__(self, shape, offsets, neuron, time, value):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 5:
            raise ValueError(f"SpikeEvents shape must be (N, C, H, W, T), got {shape}")
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        neuron = np.ascontiguousarray(neuron, dtype=np.int32)
        time = np.ascontiguousarray(time, dtype=np.int32)
        value = np.ascontiguousarray(value)
        if value.dtype.type not in (np.float32, np.float64):
            raise TypeError(f"SpikeEvents value must be float32 or float64, got {value.dtype}")
        if offsets.shape != (shape[0] + 1,):
            raise ValueError(f"offsets must have length N+1={shape[0] + 1}, got {offsets.shape}")
        n_ev = neuron.shape[0]
        if time.shape != (n_ev,) or value.shape != (n_ev,) or offsets[-1] != n_ev or offsets[0] != 0:
            raise ValueError("neuron, time and value must be 1-D arrays of equal length offsets[-1]")
        n_in = shape[1] * shape[2] * shape[3]
        if n_ev and (neuron.min() < 0 or neuron.max() >= n_in):
            raise ValueError(f"neuron indices must lie in [0, {n_in}), got [{neuron.min()}, {neuron.max()}]")
        if n_ev and (time.min() < 0 or time.max() >= shape[4]):
            raise ValueError(f"time bins must lie in [0, {shape[4]}), got [{time.min()}, {time.max()}]")
        if (np.diff(offsets) < 0).any():
            raise ValueError("offsets must be non-decreasing (offsets[n]:offsets[n+1] are the events of sample n)")
        if n_ev and not _canonical_cpu(offsets, neuron, time):
            offsets, neuron, time, value = _canonicalise(shape, offsets, neuron, time, value)
        self.shape, self.offsets, self.neuron, self.time, self.value = shape, offsets, neuron, time, value

    def is_canonical(self) -> bool:
        """Whether every sample's events are strictly ascending in (neuron, time).

        Always true for a ``SpikeEvents`` made by the constructor or by pysrm's kernels.

        Returns
        -------
        bool
        """
        return bool(_canonical_cpu(self.offsets, self.neuron, self.time))

    @classmethod
    def _trusted(cls, shape, offsets, neuron, time, value) -> "SpikeEvents":
        """Construct without the checks of ``__init__``, for arrays the library's own kernels just made
        with the right dtypes, lengths, ranges and order (sorted by (neuron, time), unique; the
        checks' passes over the events cost ~0.1 ms per batch each)."""
        ev = cls.__new__(cls)
        ev.shape, ev.offsets, ev.neuron, ev.time, ev.value = tuple(shape), offsets, neuron, time, value
        return ev

    @classmethod
    def from_dense(cls, x: np.ndarray, max_density: float | None = None) -> "SpikeEvents | None":
        """Events of the non-zero entries of a dense spike tensor.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W, T), float32 or float64
            The dense tensor (time bins last).
        max_density : float, optional
            When given, the events are only built when at most this fraction of the entries is
            non-zero; otherwise None is returned (after one counting pass).

        Returns
        -------
        SpikeEvents or None
            Shape ``x.shape``, the values and dtype of ``x``'s non-zero entries, in canonical order;
            None when ``max_density`` is exceeded.

        Raises
        ------
        TypeError
            ``x`` is not a float32/float64 ndarray.
        ValueError
            ``x`` is not 5-D, or holds non-finite values.
        """
        float_array("x", x, ndim=5)
        n, c, h, w, t = x.shape
        x2 = np.ascontiguousarray(x).reshape(n, c * h * w, t)
        counts = np.empty(n, dtype=np.int64)
        _count_nonzero_cpu(x2, counts)
        if max_density is not None and counts.sum() > max_density * x2.size:
            return None
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        neuron = np.empty(offsets[-1], dtype=np.int32)
        time = np.empty(offsets[-1], dtype=np.int32)
        value = np.empty(offsets[-1], dtype=x.dtype)
        _fill_events_cpu(x2, offsets, neuron, time, value)
        return cls._trusted(x.shape, offsets, neuron, time, value)

    @classmethod
    def from_spike_lists(cls, shape, neuron_list: np.ndarray, time_list: np.ndarray, count: np.ndarray,
                         amplitude) -> "SpikeEvents":
        """Events of spikes listed per sample as (neuron, time) pairs, sorted here by (neuron, time).

        No argument is checked (the lists come from pysrm's spike kernels).

        Parameters
        ----------
        shape : tuple of int
            The dense shape ``(N, C, H, W, T)``.
        neuron_list : ndarray, shape (N, L), int32
            ``neuron_list[n, :count[n]]``: flat neuron indices ``c*H*W + y*W + x`` of sample ``n``'s spikes.
        time_list : ndarray, shape (N, L), int32
            ``time_list[n, :count[n]]``: their time bins; each (neuron, time) pair at most once, in any order.
        count : ndarray, shape (N,), int
            Number of spikes of each sample.
        amplitude : float32 or float64 scalar
            The value of every event (``1/Ts``); its dtype is the batch's.

        Returns
        -------
        SpikeEvents
            Shape ``shape``, ``count.sum()`` events in canonical order.
        """
        shape = tuple(int(s) for s in shape)
        n = shape[0]
        n_in = shape[1] * shape[2] * shape[3]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(count, out=offsets[1:])
        neuron = np.empty(offsets[-1], dtype=np.int32)
        time = np.empty(offsets[-1], dtype=np.int32)
        _sort_spike_lists_cpu(neuron_list, time_list, offsets, n_in, neuron, time)
        value = np.full(offsets[-1], amplitude, dtype=np.asarray(amplitude).dtype)
        return cls._trusted(shape, offsets, neuron, time, value)

    @classmethod
    def concatenate(cls, samples: list) -> "SpikeEvents":
        """Stack single-sample ``SpikeEvents`` into a batch.

        Parameters
        ----------
        samples : list of SpikeEvents
            Each of shape ``(1, C, H, W, T)`` (the same ``C, H, W, T``); the values are concatenated
            with NumPy's type promotion.

        Returns
        -------
        SpikeEvents
            Shape ``(len(samples), C, H, W, T)``.

        Raises
        ------
        ValueError
            ``samples`` is empty, or the samples differ in ``(C, H, W, T)``.
        """
        if not samples:
            raise ValueError("concatenate needs at least one sample")
        shape0 = samples[0].shape[1:]
        for s in samples:
            if s.shape[1:] != shape0:
                raise ValueError(f"all samples must have shape {shape0}, got {s.shape[1:]}")
        counts = np.array([s.n_events for s in samples], dtype=np.int64)
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls((sum(s.shape[0] for s in samples),) + shape0, offsets,
                   np.concatenate([s.neuron for s in samples]), np.concatenate([s.time for s in samples]),
                   np.concatenate([s.value for s in samples]))

    def to_dense(self) -> np.ndarray:
        """The dense spike tensor.

        Returns
        -------
        ndarray, shape (N, C, H, W, T)
            The values at their (neuron, time) bins, zeros elsewhere; the dtype of ``value``.
        """
        n, c, h, w, t = self.shape
        out = np.zeros((n, c * h * w, t), dtype=self.dtype)
        _scatter_events_cpu(self.offsets, self.neuron, self.time, self.value, out)
        return out.reshape(self.shape)

    def astype(self, dtype) -> "SpikeEvents":
        """The same events with their values cast to ``dtype``.

        Parameters
        ----------
        dtype : numpy dtype
            float32 or float64.

        Returns
        -------
        SpikeEvents
            A new batch (the index arrays are shared, the values copied).

        Raises
        ------
        TypeError
            ``dtype`` is not float32 or float64.
        """
        return SpikeEvents(self.shape, self.offsets, self.neuron, self.time, self.value.astype(dtype))

    def __repr__(self):
        return f"SpikeEvents(shape={self.shape}, n_events={self.n_events}, dtype={self.dtype})"
