"""One CNN benchmark case in this process, with only APIs that every pysrm version has (so that
``benchmarks/cnn_ab.py`` can run it from an old checkout too): training and inference samples/s and the
process's peak resident memory, on real data.

    python benchmarks/cnn_case.py nmnist-cnn BATCH [--steps 3]
    python benchmarks/cnn_case.py dvs-gesture BATCH [--T 300] [--conv-unfused] [--memory-gb G]

``nmnist-cnn``: 34x34x2-16c5-2a-32c3-2a-64c3-512-10, T = 300, (1, 1) ms neurons, real NMNISTsmall training
batches.  ``dvs-gesture``: 128x128x2-4a-16c5-2a-32c3-2a-512-11, (5, 5) ms neurons, the ten real DVS128
Gesture samples (SLAYER ``.bs2``), a random T ms window of a random sample per batch entry.  A training
step is forward + spikemax loss + backward + Adam update, three untimed warm-up steps first; inference is
the forward pass with fixed weights.  Data: ``PYSRM_NMNIST_SMALL`` / ``PYSRM_DVS_GESTURE_BS2`` or
``../shared/data`` next to the repository.  Prints one JSON line.
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def batches(case, batch, n, sim, rng):
    from pysrm import SpikeEvents
    if case == "nmnist-cnn":
        from pysrm.data import DataLoader, load_dataset
        ds = load_dataset("nmnist", split="train", sim=sim,
                          data_dir=os.environ.get("PYSRM_NMNIST_SMALL", SHARED / "NMNISTsmall"))
        out = []
        epoch = 0
        while len(out) < n:
            for x, y in DataLoader(ds, batch_size=batch, shuffle=True, seed=epoch, drop_last=True):
                out.append((x, y))
                if len(out) == n:
                    break
            epoch += 1
        return out
    from pysrm.data.binning import bin_events
    from pysrm.data.formats import read_bs2
    folder = Path(os.environ.get("PYSRM_DVS_GESTURE_BS2", SHARED / "realdata" / "dvs_gesture" / "slayer_bs2"))
    recordings = [read_bs2(f) for f in sorted(folder.glob("*.bs2"))]
    if not recordings:
        sys.exit(f"no .bs2 files in {folder}")
    out = []
    for _ in range(n):
        samples = []
        for _ in range(batch):
            ev = recordings[int(rng.integers(len(recordings)))]
            span = int(ev["t"].max()) - int(sim.t_sample * 1000)
            samples.append(bin_events(ev, (2, 128, 128), sim, t_start=int(rng.integers(0, span)) if span > 0 else 0))
        out.append((SpikeEvents.concatenate(samples), rng.integers(0, 11, batch)))
    return out


def setup(case, T=300, memory_gb=None):
    """The process set up as the ``pysrm`` command does it, the case's network, and its training step:
    returns ``(net, sim, step)`` with ``step(x, y)`` = forward + spikemax loss + backward + Adam update."""
    from pysrm._malloc import tune_malloc
    tune_malloc()  # as the pysrm command does
    try:
        from pysrm._threads import limit_blas_for_process
        limit_blas_for_process(1)  # as the pysrm command does (older versions did it at import)
    except ImportError:
        pass
    from pysrm import NeuronParams, SimParams
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import Adam
    spec, tau = {"nmnist-cnn": ("34x34x2-16c5-2a-32c3-2a-64c3-512-10", 1.0),
                 "dvs-gesture": ("128x128x2-4a-16c5-2a-32c3-2a-512-11", 5.0)}[case]
    sim = SimParams(1.0, float(T))
    extra = {} if memory_gb is None else {"memory_budget": int(memory_gb * 2 ** 30)}
    net = Network.from_string(spec, NeuronParams(theta=10.0, tau_sr=tau, tau_ref=tau), sim, delays=True, seed=0,
                              **extra)
    loss = make_loss("spikemax", ts=1.0, window=30.0)
    opt = Adam(net.parameters(), lr=0.001)

    def step(x, y):
        out = net.forward(x, train=True)
        _, g = loss.value_and_grad(out, y)
        opt.zero_grad()
        net.backward(g)
        opt.step()
    return net, sim, step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=("nmnist-cnn", "dvs-gesture"))
    ap.add_argument("batch", type=int)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--conv-unfused", action="store_true",
                    help="run every conv layer on its own (no fused conv blocks; the dense blocks stay)")
    ap.add_argument("--memory-gb", type=float, help="the network's memory budget (GiB; versions that have it)")
    args = ap.parse_args()
    if args.conv_unfused:
        try:  # the settings record (issue 24 on)
            from pysrm import settings
            settings_ctx = settings.override(fused_conv_min_batch=10 ** 9)
        except ImportError:  # older versions: the module constant
            import contextlib
            import pysrm.plan
            pysrm.plan.FUSED_CONV_MIN_BATCH = 10 ** 9
            settings_ctx = contextlib.nullcontext()
        settings_ctx.__enter__()  # for the rest of this process
    net, sim, step = setup(args.case, args.T, args.memory_gb)
    data = batches(args.case, args.batch, args.steps + 3, sim, np.random.default_rng(0))
    for x, y in data[:3]:
        step(x, y)
    t0 = time.perf_counter()
    for x, y in data[3:]:
        step(x, y)
    train = args.batch * args.steps / (time.perf_counter() - t0)
    with net.inference():
        net.forward(data[0][0])
        t0 = time.perf_counter()
        for x, _ in data[3:]:
            net.forward(x)
        infer = args.batch * args.steps / (time.perf_counter() - t0)
    print(json.dumps({"case": args.case, "batch": args.batch, "T": args.T, "train_samples_per_s": train,
                      "infer_samples_per_s": infer,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "input_events_per_sample": float(np.mean([b[0].n_events / b[0].shape[0] for b in data]))}))


if __name__ == "__main__":
    main()
