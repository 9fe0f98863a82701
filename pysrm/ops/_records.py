"""Named records that the fused CPU kernels take instead of long positional argument lists.

Numba compiles a :func:`collections.namedtuple` of scalars and arrays as a struct passed by value; a
kernel reads a field as ``stage.theta``.  Each distinct combination of field types is its own
compilation (e.g. float32 and float64 networks), as with positional arguments.  The records are built
by the Python wrappers of :mod:`pysrm.blocks.dense_srm` and :mod:`pysrm.blocks.conv`.
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


#: the rows ``(n, c, p)`` of an ``(N, C, H, W, T)`` layer as the CUDA kernels index them: ``P = H W`` neurons per
#: channel, ``Wn = W`` their row width, ``T`` bins per row
RowGeometry = namedtuple("RowGeometry", "N C P Wn T")

#: a gradient read through a following sum pool (CUDA kernels): its kernel ``pk``, weight ``wp`` and output
#: size ``Ho x Wo``
PoolRead = namedtuple("PoolRead", "pk Ho Wo wp")

#: delays as the CUDA kernels read them (:func:`pysrm.ops.delay_cuda.delay_shift`): the flat device array
#: ``d3`` of the broadcast shape ``(Cd, Hd, Wd)``, the time step ``ts`` (ms) and whether the data is float32
#: (the shift ``d / ts`` is rounded to it, as the CPU op's shift array holds it)
DelayArgs = namedtuple("DelayArgs", "d3 Cd Hd Wd ts is32")


#: the shape of a dense or conv synapse's products on the GPU (:func:`pysrm.ops._gemm_cuda.geometry`): input
#: channels ``Ci`` of ``H x W``, output channels ``Co`` of ``Ho x Wo``, kernel ``KH x KW``, stride ``sy, sx``,
#: padding ``py, px`` and ``T`` bins (a dense layer: ``Ci = I``, ``Co = O``, the rest 1 or 0)
ProductGeometry = namedtuple("ProductGeometry", "Ci H W Co Ho Wo KH KW sy sx py px T")

#: the six products of the synapses on the GPU (the table of :mod:`pysrm.ops._gemm_cuda`, run by its Numba
#: kernel or through cuBLAS by :mod:`pysrm.ops._cublas_cuda`): dense forward, input and weight gradient,
#: conv forward, input and weight gradient; the weight gradients are reduced over the batch
DENSE_FWD, DENSE_GX, DENSE_GW, CONV_FWD, CONV_GX, CONV_GW = range(6)

#: a batch of events on the GPU, one entry per event (``pysrm.events_cuda.DeviceSpikeEvents``' arrays): its sample,
#: neuron, time bin and value
EventList = namedtuple("EventList", "sample neuron time value")


def events_of(x) -> EventArrays:
    """The :class:`EventArrays` of a :class:`~pysrm.events.SpikeEvents`."""
    return EventArrays(x.offsets, x.neuron, x.time, x.value)
