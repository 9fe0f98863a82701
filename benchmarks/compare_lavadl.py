"""pysrm versus lava-dl on the N-MNIST dense network, measured side by side in one process.

    python benchmarks/compare_lavadl.py [--data-dir ../shared/data/NMNISTsmall] [--steps 5] [--batch 32]
                                        [--pysrm-python /path/to/pysrm-venv/bin/python]

Network 34x34x2-512-10 (2312-512-10), T = 300 bins of 1 ms, batch 32, real NMNISTsmall samples
pre-binned in memory for lava-dl (dense (N, 2312, T) tensors, as its tutorial does) and as event
lists for pysrm (its native input); both get the same samples.  lava-dl: CUBA neurons and blocks with
its N-MNIST tutorial settings (threshold 1.25, current/voltage decay 0.25/0.03, tau_grad 0.03,
scale_grad 3, weight_norm, delays), SpikeRate loss (0.2, 0.03), Adam.  pysrm: SRM neurons (theta 10,
tau_sr = tau_ref = 1 ms), axonal delays, spike-rate loss (0.2, 0.03), Adam.  A training step is
forward + loss + backward + update; inference is the forward pass.  Runs only where torch and
lava-dl are installed (never a pysrm dependency): see benchmarks/RESULTS.md for the install recipe.
"""
import argparse
import os
import sys
import time

import pysrm  # noqa: F401  (first: single-threaded BLAS next to Numba)


def measure(step, batches, steps):
    """Seconds per step, over ``steps`` steps after two untimed warm-up steps (compilation, and the
    memory allocators' first growth: pysrm's second step was at times 3-5x slower than the rest);
    the same for both tools."""
    step(*batches[0])
    step(*batches[1])
    timed = batches[2:steps + 2]
    assert len(timed) == steps, (len(timed), steps)
    t0 = time.perf_counter()
    for b in timed:
        step(*b)
    return (time.perf_counter() - t0) / steps


def lava_steps(lnet, slayer, torch):
    """lava-dl's training step (forward, SpikeRate loss (0.2, 0.03), backward, Adam at lr 0.001) and
    inference step (forward without gradients) for the module ``lnet``, as ``(train, infer)`` callables
    of ``(x, y)``."""
    lopt = torch.optim.Adam(lnet.parameters(), lr=0.001)
    lloss = slayer.loss.SpikeRate(true_rate=0.2, false_rate=0.03, reduction="sum")

    def train(x, y):
        value = lloss(lnet(x), y)
        lopt.zero_grad()
        value.backward()
        lopt.step()

    def infer(x, y):
        with torch.no_grad():
            lnet(x)
    return train, infer


def load_batches(data_dir, sim, B, steps):
    """steps + 2 real NMNISTsmall batches (two warm-up batches), over several epochs if needed."""
    from pysrm.data import DataLoader, load_dataset
    ds = load_dataset("nmnist", split="train", data_dir=data_dir, sim=sim)
    batches = []
    epoch = 0
    while len(batches) < steps + 2:
        for x, y in DataLoader(ds, batch_size=B, shuffle=True, seed=epoch, drop_last=True):
            batches.append((x, y))
            if len(batches) == steps + 2:
                break
        epoch += 1
    return batches


def pysrm_times(batches, sim, steps):
    """Seconds per training step and per inference step of pysrm's side of the comparison: inference
    inside ``net.inference()`` (what evaluation uses) and as plain forward calls."""
    from pysrm import NeuronParams
    from pysrm.bench import train_step
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import Adam
    net = Network.from_string("34x34x2-512-10", NeuronParams(theta=10, tau_sr=1, tau_ref=1), sim, delays=True,
                              dense_weight_scale=100.0)
    loss = make_loss("spike-rate", ts=1.0, true_rate=0.2, false_rate=0.03)
    opt = Adam(net.parameters(), lr=0.001)

    train = measure(lambda x, y: train_step(net, loss, opt, x, y), batches, steps)
    plain = measure(lambda x, y: net.forward(x), batches, steps)
    with net.inference():  # fixed weights, as in evaluation (transposed weights made once per block)
        frozen = measure(lambda x, y: net.forward(x), batches, steps)
    return train, frozen, plain


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "data", "NMNISTsmall"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pysrm-python", help="run pysrm's half in a separate process with this Python (e.g. "
                                           "pysrm's own venv, without torch loaded next to it)")
    ap.add_argument("--pysrm-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pysrm_only:  # the child of --pysrm-python: print [train_s, infer_s (net.inference()), infer_s (plain)]
        import json
        from pysrm._malloc import tune_malloc
        tune_malloc()  # pysrm's own process, as the pysrm command sets it up
        from pysrm import SimParams
        sim = SimParams(1.0, 300.0)
        print(json.dumps(pysrm_times(load_batches(args.data_dir, sim, args.batch, args.steps), sim, args.steps)))
        return 0
    try:
        import torch
        import lava.lib.dl.slayer as slayer
    except ImportError as e:
        print(f"lava-dl / torch not importable ({e}); see benchmarks/RESULTS.md for the install recipe")
        return 2
    # importing pysrm first set MKL_NUM_THREADS=1 (for pysrm's own BLAS calls); torch would read it too,
    # so give lava-dl every core explicitly
    torch.set_num_threads(os.cpu_count())
    from pysrm import SimParams
    from pysrm.bench import machine

    T, B = 300, args.batch
    sim = SimParams(1.0, float(T))
    batches = load_batches(args.data_dir, sim, B, args.steps)

    # ---------------- pysrm (in this process, or in a separate one with --pysrm-python)
    if args.pysrm_python:
        import json
        import subprocess
        res = subprocess.run([args.pysrm_python, os.path.abspath(__file__), "--pysrm-only", "--data-dir",
                              args.data_dir, "--steps", str(args.steps), "--batch", str(B)],
                             capture_output=True, text=True, check=True)
        p_train, p_infer, p_plain = json.loads(res.stdout.strip().splitlines()[-1])
        where = f"separate process, {args.pysrm_python}"
    else:
        p_train, p_infer, p_plain = pysrm_times(batches, sim, args.steps)
        where = "same process as lava-dl"

    # ---------------- lava-dl (dense tensors pre-binned in memory)
    torch.manual_seed(0)
    dense = [(torch.from_numpy(x.to_dense().reshape(B, -1, T)), torch.from_numpy(y)) for x, y in batches]
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "tau_grad": 0.03,
              "scale_grad": 3, "requires_grad": True}

    class LavaNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([
                slayer.block.cuba.Dense(params, 34 * 34 * 2, 512, weight_norm=True, delay=True),
                slayer.block.cuba.Dense(params, 512, 10, weight_norm=True)])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    lava_train, lava_infer = lava_steps(LavaNet(), slayer, torch)
    l_train = measure(lava_train, dense, args.steps)
    l_infer = measure(lava_infer, dense, args.steps)

    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"N-MNIST dense 2312-512-10, T = {T}, batch {B}, {args.steps} steps after two untimed warm-up steps")
    print("| | train samples/s | inference samples/s |")
    print("|---|---|---|")
    print(f"| lava-dl 0.6.0 (CUBA) | {B / l_train:.1f} | {B / l_infer:.1f} |")
    print(f"| pysrm (SRM; {where}) | {B / p_train:.1f} | {B / p_infer:.1f} |")
    print(f"| ratio pysrm / lava-dl | {l_train / p_train:.1f}x | {l_infer / p_infer:.1f}x |")
    print(f"(pysrm inference as plain forward calls, outside net.inference(): {B / p_plain:.1f} samples/s, "
          f"{l_infer / p_plain:.1f}x)")
    print(f"(peak memory of this process, both tools: {peak:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
