r"""Fused blocks: schedules of several layers' ops as fewer passes over memory, one module per family.

A block is a :class:`pysrm.plan.Step` that covers a ``pattern`` of consecutive layers and runs their
ops fused; ``pysrm.ops`` holds the ops alone.  Each family's module opens with what it fuses (the
equations and the ops' primitives it schedules), its policy (when it applies; fused or layer by layer,
with the measured rule) and its tests, then its engines and its block classes:

=================================  ======================================================================
module                             blocks
=================================  ======================================================================
:mod:`pysrm.blocks.dense_srm`      Dense -> SRM [-> Delay] on the CPU, the event-driven first layers
                                   (``DenseSRMBlock``, ``DenseSRMDelayBlock``)
:mod:`pysrm.blocks.conv`           Conv -> SRM [-> Delay] [-> Pool -> SRM] on the CPU, per sample in
                                   cache-sized tiles (the ``ConvBlock`` family)
:mod:`pysrm.blocks.cuda`           Syn -> SRM [-> Delay] [-> Pool -> SRM], Pool -> SRM, SRM on the GPU
                                   (imported only for a CUDA plan)
=================================  ======================================================================

A :class:`pysrm.plan.Planner` registers the blocks it may use; :func:`cpu_blocks` and :func:`cuda_blocks`
are the standard ones (:func:`pysrm.plan.default_planner`).
"""
from __future__ import annotations


def cpu_blocks() -> tuple:
    """The standard CPU block classes, in the order a planner registers them (Dense -> SRM family, then
    the conv family; a planner tries longer patterns first)."""
    from . import conv, dense_srm
    return dense_srm.BLOCKS + conv.BLOCKS


def cuda_blocks() -> tuple:
    """The standard CUDA block classes (imports :mod:`pysrm.blocks.cuda` and the CUDA ops)."""
    from . import cuda
    return cuda.BLOCKS


__all__ = ["cpu_blocks", "cuda_blocks"]
