"""Mini-batches of binned samples with a seeded, resumable shuffle."""
from __future__ import annotations

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
    dataset : a pysrm dataset (``len``, ``labels``, ``sample(i, rng, augment)``)
    batch_size : samples per batch
    shuffle : shuffle the order every epoch
    seed : seed of all randomness
    augment : apply the dataset's augmentation (e.g. N-MNIST jitter)
    drop_last : drop the last incomplete batch
    jitter : with ``augment``, the spatial jitter in pixels, overriding the
        dataset's ``jitter`` option (None: the dataset's)
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = True, seed: int = 0, augment: bool = False,
                 drop_last: bool = False, jitter: int | None = None):
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
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order depends on ``(seed, epoch)``)."""
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample indices of an epoch in iteration order."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch):
        order = self.order(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        labels = np.asarray(self.dataset.labels, dtype=np.int64)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            kw = {} if self.jitter is None else {"jitter": self.jitter}
            x = SpikeEvents.concatenate([self.dataset.sample(int(i), rng=rng, augment=self.augment, **kw)
                                         for i in idx])
            yield x, labels[idx]
