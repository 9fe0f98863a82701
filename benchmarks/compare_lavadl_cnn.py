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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def measure(step, batches, steps):
    """Seconds per step over ``steps`` steps, after two untimed warm-up steps (compare_lavadl.py's)."""
    step(*batches[0])
    step(*batches[1])
    timed = batches[2:steps + 2]
    assert len(timed) == steps, (len(timed), steps)
    t0 = time.perf_counter()
    for b in timed:
        step(*b)
    return (time.perf_counter() - t0) / steps


def build_cnn(slayer, torch):
    """34x34x2-16c5-2a-32c3-2a-64c3-512-10 in lava-dl CUBA blocks, settings of compare_lavadl.py."""
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "tau_grad": 0.03,
              "scale_grad": 3, "requires_grad": True}
    B = slayer.block.cuba
    blocks = [B.Conv(params, 2, 16, 5, padding=2, weight_norm=True, delay=True),
              B.Pool(params, 2),  # 34 -> 17
              B.Conv(params, 16, 32, 3, padding=1, weight_norm=True, delay=True),
              B.Pool(params, 2),  # 17 -> 9 (lava-dl pads odd sizes)
              B.Conv(params, 32, 64, 3, padding=1, weight_norm=True, delay=True),
              B.Flatten(),
              B.Dense(params, 9 * 9 * 64, 512, weight_norm=True, delay=True),
              B.Dense(params, 512, 10, weight_norm=True)]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(blocks)

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    return Net()


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
    from compare_lavadl import load_batches  # pysrm's data readers only (imports pysrm)
    from pysrm import SimParams
    torch.set_num_threads(args.threads)  # after importing pysrm (it may set MKL_NUM_THREADS=1)

    T, B = 300, args.batch
    batches = load_batches(args.data_dir, SimParams(1.0, float(T)), B, args.steps)
    data = [(torch.from_numpy(x.to_dense()).float(), torch.from_numpy(y).long()) for x, y in batches]
    del batches

    torch.manual_seed(0)
    net = build_cnn(slayer, torch)
    opt = torch.optim.Adam(net.parameters(), lr=0.001)
    lossf = slayer.loss.SpikeRate(true_rate=0.2, false_rate=0.03, reduction="sum")

    def train(x, y):
        out = net(x)
        value = lossf(out, y)
        opt.zero_grad()
        value.backward()
        opt.step()

    def infer(x, y):
        with torch.no_grad():
            net(x)

    t_train = measure(train, data, args.steps)
    t_infer = measure(infer, data, args.steps)
    print(json.dumps({"tool": "lava-dl", "version": lava_version, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "case": "nmnist-cnn", "batch": B, "T": T,
                      "train_samples_per_s": B / t_train, "infer_samples_per_s": B / t_infer,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
