r"""The stateless half of pysrm: every op's forward and backward as plain functions.

These functions take and return NumPy arrays (or Numba CUDA device arrays,
which dispatch to the CUDA kernels); the layers in :mod:`pysrm.layers` and the
blocks in :mod:`pysrm.blocks` call them.  Each op's module (:mod:`pysrm.ops.psp`,
:mod:`pysrm.ops.spike`, ...) opens with its definition and its gradient, then its
plain loop and its fast strategies (``strategy=``: ``"plain"`` is the definition,
``"auto"`` the default choice), with its CUDA twin in ``pysrm/ops/<op>_cuda.py``
and its tests in ``tests/test_op_<op>.py``.  The functions are stateless: work
arrays are allocated per call unless a ``workspace=``
(:class:`pysrm.workspace.Workspace`) is given, so they are safe to call from
several threads at once.  The fused functions (last rows) work on any input: where
their fused pass does not apply (GPU arrays, dense inputs) they run the separate
ops.

=====================  ================================================  ===============================
forward                backward (adjoint)                                gradient promise
=====================  ================================================  ===============================
``psp``                ``psp_backward`` (correlation)                    exact (finite differences)
``spike``              ``spike_backward`` (surrogate ``rho``)            surrogate (tested vs formula)
``dense``              ``dense_backward`` (transpose)                    exact
``conv``               ``conv_backward`` (transposed conv)               exact
``pool``               ``pool_backward`` (upsampling)                    exact
``delay``              ``delay_backward`` (shift by ``-d``)              exact (non-integer delays)
``delay_events``       ``delay_backward_from_dense`` (the same,
                       after a dense layer's input gradient)
``dropout``            ``dropout_backward`` (same mask)                  exact for a fixed mask
``srm_forward``        ``srm_backward`` (both of the above fused)        surrogate
``dense_srm_forward``  ``srm_dense_backward_weights`` (first layer) or   as those
                       ``srm_backward`` then ``dense_backward``;         (``srm_forward(dense(w, x))``
                       ``srm_dense_backward_through_delay``              and its backward fused for
                                                                         event inputs)
=====================  ================================================  ===============================
"""
from .ops.conv import conv, conv_backward, conv_output_size
from .ops.delay import delay, delay_backward, delay_backward_from_dense, delay_events
from .ops.dense import dense, dense_backward
from .ops.dropout import dropout, dropout_backward, dropout_mask
from .ops.pool import pool, pool_backward, pool_output_size
from .ops.psp import psp, psp_backward
from .ops.spike import spike, spike_backward, surrogate
from .ops.srm import srm_backward, srm_forward
from .responses import refractory_kernel, srm_kernel

#: the fused first-layer engines, which live with their block in :mod:`pysrm.blocks.dense_srm` (a module
#: that imports the layers, which import this one): loaded on first access
_BLOCK_ENGINES = ("dense_srm_forward", "srm_dense_backward_weights", "srm_dense_backward_through_delay")


def __getattr__(name):
    if name in _BLOCK_ENGINES:
        from .blocks import dense_srm
        return getattr(dense_srm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "srm_kernel", "refractory_kernel", "psp", "psp_backward", "spike", "spike_backward", "surrogate", "srm_forward", "srm_backward",
    "dense_srm_forward", "srm_dense_backward_weights", "srm_dense_backward_through_delay",
    "dense", "dense_backward", "conv", "conv_backward", "conv_output_size", "pool", "pool_backward",
    "pool_output_size", "delay", "delay_backward", "delay_backward_from_dense", "delay_events", "dropout", "dropout_backward", "dropout_mask",
]
