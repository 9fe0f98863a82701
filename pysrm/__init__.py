"""pysrm: SRM spiking neural networks with SLAYER-style backpropagation.

Array convention (everywhere): spike tensors are ``(batch, channels, height,
width, time)``, time last, float32 by default (every op also runs in float64).
A spike has amplitude ``1/Ts``; the spike count of neuron i is
``c_i = Ts * sum_t s_i[t]``.  Times are in milliseconds.

Importing pysrm changes no process-wide state: BLAS threads are limited only
while pysrm computes (:mod:`pysrm._threads`), and the CUDA backend is imported
only when a GPU array or device is used.  The one exception is where Numba
keeps pysrm's compiled kernels: outside the installed package, in the user's
cache folder (``pysrm._kernel_cache``; other Numba code is not affected).
"""
from . import _kernel_cache

_kernel_cache.install()   # before any pysrm kernel is defined

from .params import NeuronParams, SimParams
from .events import SpikeEvents

__version__ = "0.1.0"

__all__ = ["NeuronParams", "SimParams", "SpikeEvents", "__version__"]
