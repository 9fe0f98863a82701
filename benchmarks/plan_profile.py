"""Milliseconds per plan step (forward and backward of each fused block or single layer) of one steady
training step of the paper's CNNs, in this process:

    python benchmarks/plan_profile.py nmnist-cnn 32 [--memory-gb G] [--steps 2]
    python benchmarks/plan_profile.py dvs-gesture 16

Same networks, neurons, data and step as ``benchmarks/cnn_case.py`` (three untimed warm-up steps, then
the mean over ``--steps`` steps); prints one line per plan step and whether each conv block ran fused.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=("nmnist-cnn", "dvs-gesture"))
    ap.add_argument("batch", type=int)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--memory-gb", type=float, default=2.0)
    args = ap.parse_args()
    import cnn_case
    from pysrm.blocks import conv as C
    net, sim, step = cnn_case.setup(args.case, 300, args.memory_gb)
    data = cnn_case.batches(args.case, args.batch, args.steps + 3, sim, np.random.default_rng(0))
    times = {}

    def timed(name, fn):
        def call(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            times.setdefault(name, []).append(time.perf_counter() - t)
            return out
        return call

    for x, y in data[:3]:
        step(x, y)
    for st in net.plan:
        name = f"{type(st).__name__}:{st.layers[0].name}"
        st.forward, st.backward = timed(name + " forward", st.forward), timed(name + " backward", st.backward)
    t0 = time.perf_counter()
    for x, y in data[3:]:
        step(x, y)
    total = (time.perf_counter() - t0) / args.steps
    for name, v in times.items():
        print(f"{name:45s} {1000 * sum(v) / len(v):8.1f} ms")
    print(f"{'whole step (loss and update included)':45s} {1000 * total:8.1f} ms")
    for st in net.plan:
        if isinstance(st, C.ConvBlock):
            print(f"{st.conv.name}: {'fused' if st.last_schedule == C.FUSED else 'layers on their own'}")


if __name__ == "__main__":
    main()
