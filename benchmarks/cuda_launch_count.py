"""Launches per training step and per inference step of pysrm's CUDA backend (issue 18).

    NUMBA_ENABLE_CUDASIM=1 python benchmarks/cuda_launch_count.py --tiny   # no GPU: tiny nets, same layers
    python benchmarks/cuda_launch_count.py                                  # on a GPU: the real shapes

Counts (:func:`pysrm.cuda.count_launches`) the kernel launches, cuBLAS calls and memsets of one
training step (the event batch copied to the device, forward, spikemax loss, backward, Adam update,
after a warm-up step) and of one inference forward, for the fused CUDA plan (:mod:`pysrm.blocks.cuda`)
and the layer-by-layer plan (``fuse=False``).  Launch counts do not depend on the sizes of the layers
(``--tiny`` keeps every layer of the three networks, with small inputs and T, so that the CUDA
simulator can run them); only the number of samples changes nothing either, except where a
weight-gradient product is split per sample (cuBLAS, above ``PYSRM_CUBLAS_PARTIAL_LIMIT`` elements).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NETS = {  # name: (real spec, tiny spec with the same layers, tau)
    "nmnist-dense": ("34x34x2-512-10", "6x6x2-16-10", 1.0),
    "nmnist-cnn": ("34x34x2-16c5-2a-32c3-2a-64c3-512-10", "8x8x2-4c5-2a-4c3-2a-4c3-16-10", 1.0),
    "dvs-gesture": ("128x128x2-4a-16c5-2a-32c3-2a-512-11", "16x16x2-4a-4c5-2a-4c3-2a-16-11", 5.0),
}


def count(spec, tau, T, batch, fuse):
    from pysrm import NeuronParams, SimParams, SpikeEvents
    from pysrm import cuda as dev
    from pysrm.bench import train_step
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import Adam
    sim = SimParams(1.0, float(T))
    net = Network.from_string(spec, NeuronParams(theta=10.0, tau_sr=tau, tau_ref=tau), sim, delays=True, seed=0,
                              dense_weight_scale=100.0, fuse=fuse).to("cuda")
    rng = np.random.default_rng(0)
    c, h, w = net.input_shape
    x = SpikeEvents.from_dense((rng.random((batch, c, h, w, T)) < 0.02).astype(np.float32))
    y = rng.integers(0, net.output_shape[0], batch)
    loss = make_loss("spikemax", ts=1.0, window=float(min(30, T)))
    opt = Adam(net.parameters(), lr=0.001)
    train_step(net, loss, opt, x, y)
    with dev.count_launches() as tr:
        train_step(net, loss, opt, x, y)
    with net.inference():
        net.forward(x)
        with dev.count_launches() as inf:
            net.forward(x)
    return tr, inf, len(net.plan)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny inputs (for the CUDA simulator)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--verbose", action="store_true", help="launches by kernel name")
    args = ap.parse_args(argv)
    T = 12 if args.tiny else 300
    batch = args.batch or (2 if args.tiny else 32)
    print(f"| network | plan | steps in plan | launches / training step (kernels, cuBLAS, memsets) | "
          f"launches / inference |")
    print("| --- | --- | --- | --- | --- |")
    detail = []
    for name in args.nets:
        real, tiny, tau = NETS[name]
        spec = tiny if args.tiny else real
        for fuse in (True, False):
            tr, inf, n = count(spec, tau, T, batch, fuse)
            print(f"| {name} ({spec}) | {'fused' if fuse else 'layer by layer'} | {n} | {tr.launches} "
                  f"({tr.n_kernels}, {tr.n_blas}, {tr.memsets}) | {inf.launches} |", flush=True)
            detail.append((name, fuse, tr))
    if args.verbose:
        for name, fuse, tr in detail:
            print(f"\n{name} {'fused' if fuse else 'layer by layer'}: {dict(tr.kernels)} {dict(tr.blas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
