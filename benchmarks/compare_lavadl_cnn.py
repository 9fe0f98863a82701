"""lava-dl's CPU training and inference throughput on pysrm's N-MNIST CNN, to set beside
``benchmarks/cnn_case.py nmnist-cnn BATCH`` in the same run.

    /work/lavadl_venv/bin/python benchmarks/compare_lavadl_cnn.py [--batch 8] [--steps 2]
                                                                  [--data-dir ../shared/data/NMNISTsmall]

Needs the separate lava-dl venv (torch + lava-dl 0.6.0 + pysrm installed editable for its data readers;
recipe in benchmarks/RESULTS.md, "lava-dl install recipe"); torch and lava-dl are never pysrm
dependencies.

Network 34x34x2-16c5-2a-32c3-2a-64c3-512-10, defined here (``lavadl_gpu.build("cnn", ...)`` gives its first
dense layer 8 x 8 x 64 inputs and fails on real shapes, see below): lava-dl 0.6.0 CUBA blocks with its
N-MNIST tutorial settings (threshold 1.25, current/voltage decay 0.25/0.03, tau_grad 0.03, scale_grad 3,
weight_norm, axonal delays on conv/dense blocks), ``Conv`` 16 5x5 pad 2, ``Pool`` 2 (sum), ``Conv`` 32 3x3
pad 1, ``Pool`` 2, ``Conv`` 64 3x3 pad 1, ``Dense`` 512, ``Dense`` 10. lava-dl's ``Pool`` pads odd sizes
with zeros (17 -> 9), as pysrm does, so the first dense layer has 9 x 9 x 64 = 5,184 inputs in both tools.
T = 300 bins of 1 ms; real NMNISTsmall training batches, pre-binned in memory to dense (N, 2, 34, 34, T) float
tensors (binning not timed). CPU only, ``torch.set_num_threads(2)``. A training step is forward + SpikeRate
loss (true 0.2, false 0.03, sum) + backward + Adam (lr 0.001); inference is the forward under
``torch.no_grad()``. Each is timed over ``--steps`` steps after two untimed warm-up steps (as
``compare_lavadl.py``'s ``measure``). Peak memory: the process's ``ru_maxrss``. Prints one JSON line (the
fields of ``cnn_case.py``'s plus tool and versions).
"""
import argparse
import json
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data", "NMNISTsmall"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()
    try:
        import torch
        import lava.lib.dl.slayer as slayer
        from importlib.metadata import version
        lava_version = version("lava-dl")
    except ImportError as e:
        print(f"lava-dl / torch not importable ({e}); see benchmarks/RESULTS.md for the install recipe")
        return 2
    from compare_lavadl import lava_steps, load_batches, measure  # (imports pysrm: its data readers)
    from lavadl_gpu import build  # lava-dl's CNN of the GPU comparison (the same network)
    from pysrm import SimParams
    torch.set_num_threads(args.threads)  # after importing pysrm (it may set MKL_NUM_THREADS=1)

    T, B = 300, args.batch
    batches = load_batches(args.data_dir, SimParams(1.0, float(T)), B, args.steps)
    data = [(torch.from_numpy(x.to_dense()).float(), torch.from_numpy(y).long()) for x, y in batches]
    del batches

    torch.manual_seed(0)
    train, infer = lava_steps(build("cnn", slayer, torch), slayer, torch)

    t_train = measure(train, data, args.steps)
    t_infer = measure(infer, data, args.steps)
    print(json.dumps({"tool": "lava-dl", "version": lava_version, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "case": "nmnist-cnn", "batch": B, "T": T,
                      "train_samples_per_s": B / t_train, "infer_samples_per_s": B / t_infer,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
