"""The CUDA device forms of the primitives of ``pysrm.ops._primitives`` (``numba.cuda.jit(device=True)`` of
the same plain functions; a primitive that calls another is compiled against the other's device form).
Imported only by the CUDA modules, for GPU arrays.  Tested against the CPU forms under the CUDA simulator
(``tests/test_primitives.py``)."""
from __future__ import annotations

from numba import cuda

from . import _primitives as P


def _dev(fn, **forms):
    return cuda.jit(device=True, cache=True)(P.on_target(fn, **forms) if forms else fn)


fires = _dev(P.fires)
add_response = _dev(P.add_response)
next_spike = _dev(P.next_spike, fires=fires, add_response=add_response)
spike_scan_row = _dev(P.spike_scan_row, next_spike=next_spike)
highest_bit = _dev(P.highest_bit)
refractory_from_mask = _dev(P.refractory_from_mask, highest_bit=highest_bit)
spike_step_masked = _dev(P.spike_step_masked, fires=fires, refractory_from_mask=refractory_from_mask)
causal_sum = _dev(P.causal_sum)
correlation_sum = _dev(P.correlation_sum)
delay_split = _dev(P.delay_split)
interpolate = _dev(P.interpolate)
pool_window_sum = _dev(P.pool_window_sum)
pooled_grad = _dev(P.pooled_grad)
decode_neuron = _dev(P.decode_neuron)
output_index = _dev(P.output_index)
unravel5 = _dev(P.unravel5)
