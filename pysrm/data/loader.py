"""Mini-batches of binned samples with a seeded, resumable shuffle, optionally made ahead in a thread."""
from __future__ import annotations

import queue
import threading

import numpy as np

from ..events import SpikeEvents
from .base import check_int


class DataLoader:
    """Iterate a dataset in mini-batches ``(x, y)``.

    ``x`` is a :class:`~pysrm.events.SpikeEvents` of shape
    ``(N, C, H, W, T)`` (float32 by default, spikes of amplitude ``1/Ts``),
    ``y`` the int64 labels ``(N,)``.

    Randomness is a function of ``(seed, epoch)`` only: the shuffle order
    uses ``numpy.random.default_rng([seed, epoch])`` and the per-sample
    randomness (random windows, jitter augmentation) a second stream
    ``default_rng([seed, epoch, 1])``.  Each ``iter(loader)`` uses the current
    epoch and then advances it; :meth:`set_epoch` sets the epoch of the next
    iteration, so a run resumed at epoch ``e`` (``loader.set_epoch(e)``)
    sees exactly the batches it would have seen.  The dataset parses each file
    once and caches the events, so from the second epoch on no file is parsed.

    Parameters
    ----------
    dataset : EventDataset
        A pysrm dataset (``len``, ``labels``, ``sample(i, rng, augment)``; a class that also defines
        ``sample_batch(indices, rng, augment)``, as pysrm's do, makes each batch in one call).
    batch_size : int, default 32
        Samples per batch, >= 1.
    shuffle : bool, default True
        Shuffle the order every epoch.
    seed : int, default 0
        Seed of all randomness, >= 0.
    augment : bool, default False
        Apply the dataset's augmentation (e.g. N-MNIST jitter).
    drop_last : bool, default False
        Drop the last incomplete batch.
    jitter : int, optional
        With ``augment``, the spatial jitter in pixels (>= 0), overriding the dataset's ``jitter`` option
        (None: the dataset's).
    prefetch : int, default 0
        Make up to this many batches ahead in a background thread (0: none, every batch is
        made when asked for).  The batches, their order and every random draw are the same either way
        (one thread makes them all, in order, from the same ``(seed, epoch)`` streams); only when the
        work happens changes, so loading overlaps the consumer's compute where that compute lets the
        thread run (it must leave the GIL, as NumPy and the BLAS do).  An error in the thread is
        raised in the consumer at the batch it would have come with; stopping early (``break``, an
        exception, Ctrl-C in the consumer) or closing the iterator stops and joins the thread.
        The dataset's counters (``ds.stats``) then advance up to ``prefetch`` batches early.

    Yields
    ------
    x : SpikeEvents
        Shape ``(N, C, H, W, T)``, ``N = batch_size`` (the last batch may be smaller), values ``1/Ts`` of
        the dataset's dtype (float32 by default).
    y : ndarray, shape (N,), int64
        The labels.

    Raises
    ------
    TypeError
        ``dataset`` lacks ``labels``, ``sample`` or ``len``, or an integer option is not an integer.
    ValueError
        An integer option below its minimum.
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = True, seed: int = 0, augment: bool = False,
                 drop_last: bool = False, jitter: int | None = None, prefetch: int = 0):
        for attr in ("labels", "sample", "__len__"):
            if not hasattr(dataset, attr):
                raise TypeError(f"dataset must be a pysrm dataset (with labels, sample(), len()), "
                                f"got {type(dataset).__name__} without {attr!r}")
        self.dataset = dataset
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.jitter = None if jitter is None else check_int("jitter", jitter, 0)
        self.prefetch = check_int("prefetch", prefetch, 0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order depends on ``(seed, epoch)``).

        Parameters
        ----------
        epoch : int
            >= 0.

        Raises
        ------
        TypeError, ValueError
            ``epoch`` is not an integer >= 0.
        """
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample indices of an epoch in iteration order.

        Parameters
        ----------
        epoch : int, optional
            Default the epoch of the next iteration.

        Returns
        -------
        ndarray, shape (len(dataset),), int64
            A permutation drawn from ``numpy.random.default_rng([seed, epoch])``; ``0 .. n-1`` without
            ``shuffle``.
        """
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if self.prefetch:
            return _prefetched(self._batches(epoch), self.prefetch)
        return self._batches(epoch)

    def _batches(self, epoch):
        order = self.order(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        labels = np.asarray(self.dataset.labels, dtype=np.int64)
        kw = {} if self.jitter is None else {"jitter": self.jitter}
        # a dataset class with sample_batch (pysrm's) makes the batch in one go, bitwise the concatenation;
        # only where the class that defines sample also defines sample_batch (a subclass that overrides
        # sample alone gets its own sample called)
        cls = type(self.dataset)
        batch_of = getattr(cls, "sample_batch", None)
        if batch_of is not None and _owner(cls, "sample_batch") is not _owner(cls, "sample"):
            batch_of = None
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            if batch_of is not None:
                x = self.dataset.sample_batch([int(i) for i in idx], rng=rng, augment=self.augment, **kw)
            else:
                x = SpikeEvents.concatenate([self.dataset.sample(int(i), rng=rng, augment=self.augment, **kw)
                                             for i in idx])
            yield x, labels[idx]


def _owner(cls, name):
    """The class in ``cls``'s MRO whose own namespace defines ``name``."""
    return next((k for k in cls.__mro__ if name in k.__dict__), None)


_DONE = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


def _prefetched(batches, depth: int):
    """Yield the items of the generator ``batches``, made up to ``depth`` ahead by one daemon thread.

    The thread puts items, a :class:`_Failure` (an exception it met) or ``_DONE`` into a bounded
    queue; it checks ``stop`` between items and while waiting for room, so closing this generator
    (exhausted, ``break``, an exception or KeyboardInterrupt in the consumer) stops it within one
    batch, and the thread is joined before this generator returns.
    """
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in batches:
                if stop.is_set() or not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failure(e))
        finally:
            batches.close()

    thread = threading.Thread(target=work, name="pysrm-DataLoader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # make room so that a blocked put() sees the stop flag at once
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
