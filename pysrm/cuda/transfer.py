"""Copies between the host and the GPU of what pysrm computes with: arrays and spike events.

:func:`to_device` copies a NumPy array, or a :class:`~pysrm.events.SpikeEvents` (into a
:class:`pysrm.events_cuda.DeviceSpikeEvents` with the same fields as device arrays), to the GPU once;
:func:`to_host` brings either back.  Device data pass through both unchanged in the direction they
already are.  :mod:`pysrm.events_cuda` is imported only when spike events are copied to the GPU.
"""
from __future__ import annotations

import numpy as np

from ..backend import is_device_array
from ..events import EventBatch, SpikeEvents
from .memory import array_to_device


def to_device(x, dtype=None):
    """Copy ``x`` to the GPU: a NumPy array becomes a device array, a ``SpikeEvents`` a
    :class:`~pysrm.events_cuda.DeviceSpikeEvents`; device data are returned as they are.  ``dtype``
    converts (on the host, before the copy) when given."""
    if isinstance(x, SpikeEvents):
        from ..events_cuda import events_to_device
        return events_to_device(x, dtype)
    if isinstance(x, EventBatch):  # events already on the device
        return x if dtype is None else x.astype(dtype)
    return array_to_device(x, dtype)


def to_host(x):
    """Copy ``x`` back to the host (a NumPy array or a ``SpikeEvents``); host data and ``None``
    are returned unchanged."""
    if x is None or isinstance(x, (np.ndarray, SpikeEvents, float, int, np.generic)):
        return x
    if isinstance(x, EventBatch):  # device events
        return x.to_host()
    if is_device_array(x):
        return x.copy_to_host()
    raise TypeError(f"to_host: cannot copy a {type(x).__name__} to the host")


__all__ = ["to_device", "to_host"]
