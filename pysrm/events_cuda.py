"""Spike events on the GPU: :class:`DeviceSpikeEvents`, the device twin of :class:`pysrm.events.SpikeEvents`.

Imported only for device data (by :func:`pysrm.cuda.to_device` when it copies a ``SpikeEvents``, and by
the CUDA ops and blocks that run event driven); a CPU run never imports it.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .cuda.launches import launch
from .cuda.memory import _host_to_device, astype, empty, zeros
from .events import EventBatch, SpikeEvents


@cuda.jit(cache=True)
def _event_sample_kernel(offsets, sample):
    # sample[k] = n for offsets[n] <= k < offsets[n+1]; one thread per sample n
    N = offsets.shape[0] - 1
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        for k in range(offsets[n], offsets[n + 1]):
            sample[k] = n



class DeviceSpikeEvents(EventBatch):
    """A :class:`~pysrm.events.SpikeEvents` whose arrays live on the GPU.

    Same fields (``shape``, ``offsets``, ``neuron``, ``time``, ``value``; events of a
    sample sorted by ``(neuron, time)``), plus ``sample`` (the sample index of every
    event, computed on the device on first use).  The dense/conv/pool CUDA ops accept it
    and run event driven.  ``is_device_array`` is true for it.
    """

    __slots__ = ("shape", "offsets", "neuron", "time", "value", "_sample")
    #: marks a device-resident object for :func:`pysrm.backend.is_device_array`
    __pysrm_device__ = True

    def __init__(self, shape, offsets, neuron, time, value):
        self.shape = tuple(int(s) for s in shape)
        self.offsets, self.neuron, self.time, self.value = offsets, neuron, time, value
        self._sample = None

    @classmethod
    def from_host(cls, ev: SpikeEvents) -> "DeviceSpikeEvents":
        out = cls(ev.shape, _host_to_device(ev.offsets), _host_to_device(ev.neuron), _host_to_device(ev.time),
                  _host_to_device(ev.value))
        return out

    @property
    def sample(self):
        """Device array ``(n_events,)`` int32: the sample of every event."""
        if self._sample is None:
            s = empty((max(self.n_events, 0),), np.int32)
            launch(_event_sample_kernel, self.shape[0], self.offsets, s)
            self._sample = s
        return self._sample

    def astype(self, dtype) -> "DeviceSpikeEvents":
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        out = DeviceSpikeEvents(self.shape, self.offsets, self.neuron, self.time, astype(self.value, dtype))
        out._sample = self._sample
        return out

    def reshape_neurons(self, shape) -> "DeviceSpikeEvents":
        """The same events seen with another (N, C, H, W, T) shape of equal neuron count (Flatten)."""
        out = DeviceSpikeEvents(shape, self.offsets, self.neuron, self.time, self.value)
        out._sample = self._sample
        return out

    def to_host(self) -> SpikeEvents:
        return SpikeEvents(self.shape, self.offsets.copy_to_host(), self.neuron.copy_to_host(),
                           self.time.copy_to_host(), self.value.copy_to_host())

    def to_dense(self):
        """The dense ``(N, C, H, W, T)`` device array (duplicate events add up)."""
        n, c, h, w, t = self.shape
        out = zeros(self.shape, self.dtype)
        launch(_scatter_events_kernel, self.n_events, self.sample, self.neuron, self.time, self.value,
               out.reshape(n, c * h * w, t))
        return out

    def __repr__(self):
        return f"DeviceSpikeEvents(shape={self.shape}, n_events={self.n_events}, dtype={self.dtype})"


@cuda.jit(cache=True)
def _scatter_events_kernel(sample, neuron, time, value, out):
    for k in range(cuda.grid(1), neuron.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(out, (sample[k], neuron[k], time[k]), value[k])


def events_to_device(ev: SpikeEvents, dtype=None) -> DeviceSpikeEvents:
    """``ev`` copied to the GPU (converted to ``dtype`` on the host first when given)."""
    if dtype is not None and np.dtype(dtype) != ev.dtype:
        ev = ev.astype(dtype)
    return DeviceSpikeEvents.from_host(ev)


__all__ = ["DeviceSpikeEvents", "events_to_device"]
