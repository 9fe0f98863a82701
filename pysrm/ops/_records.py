"""Named records that the fused CPU kernels take instead of long positional argument lists.

Numba compiles a :func:`collections.namedtuple` of scalars and arrays as a struct passed by value; a
kernel reads a field as ``stage.theta``.  Each distinct combination of field types is its own
compilation (e.g. float32 and float64 networks), as with positional arguments.  The records are built
by the Python wrappers of :mod:`pysrm.ops.srm` and :mod:`pysrm.ops.convblock`.
"""
from __future__ import annotations

from collections import namedtuple

#: a batch of input events (:class:`~pysrm.events.SpikeEvents`' arrays): sample n's events are
#: ``offsets[n]:offsets[n+1]`` of ``neuron`` (int32), ``time`` (int32 bins) and ``value`` (float)
EventArrays = namedtuple("EventArrays", "offsets neuron time value")

#: SRM neurons in the forward: the psp (the alpha recursion with ``alpha``, ``gain``, ``L`` of
#: :func:`pysrm.ops.psp.alpha_parameters` when ``use_alpha``, else the direct sum with the sampled spike
#: response ``k`` times Ts), the refractory response ``nu`` and the firing threshold ``theta``
#: (:func:`pysrm.ops.spike.firing_threshold`)
NeuronForward = namedtuple("NeuronForward", "alpha gain L k use_alpha nu theta")

#: SRM neurons in the backward: the surrogate ``rho`` (``theta``, ``scale`` = scale_rho, ``width`` =
#: tau_rho theta) and the correlation with the spike response (as NeuronForward's psp)
NeuronBackward = namedtuple("NeuronBackward", "theta scale width k alpha gain L use_alpha")


def events_of(x) -> EventArrays:
    """The :class:`EventArrays` of a :class:`~pysrm.events.SpikeEvents`."""
    return EventArrays(x.offsets, x.neuron, x.time, x.value)
