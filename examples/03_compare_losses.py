r"""03 - The four losses of the Spikemax paper, trained on the same data from the same start.

With c_i the spike count of output neuron i (c_i = Ts sum_t s_i[t]), y the label, T the
sample length and eps = 0.01 a pseudo-count that keeps log() finite for silent neurons:

  spike-rate   L = sum_i (c_i/T - r_i)^2,  r_y = true_rate, r_i = false_rate otherwise
               (the classic target-rate loss: every neuron is pushed to a fixed rate)
  spikemax-g   p_i = (c_i + eps) / sum_k (c_k + eps),    L = -log p_y
               (probabilities are *ratios of counts*: only relative rates matter)
  spikemax     the same with counts c_i[t] in a sliding window of W ms ending at t,
               L = mean_t -log p_y[t]   (asks for the right answer at every moment -> low latency)
  spikemax-s   p = softmax(c),  L = -log p_y   (counts used as logits)

For each loss the script prints the test accuracy, the latency (the earliest inference time at
which the accuracy reaches 99 % of its final value, from pysrm.classifier.accuracy_vs_time /
latency) and the mean number of spikes per sample in every layer, and plots the
accuracy-vs-inference-time curves (matplotlib optional).

Run:   python examples/03_compare_losses.py [--out compare_losses.png] [--epochs 4]
"""
import argparse
import os
import time

import pysrm  # noqa: F401  (first: thread defaults)

import numpy as np

from pysrm import NeuronParams, SimParams
from pysrm.classifier import accuracy_vs_time, latency, predict, spike_counts_per_layer
from pysrm.data import DataLoader, load_dataset
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import Adam

SIM = SimParams(ts=1.0, t_sample=60.0)
NEURON = NeuronParams(theta=10.0, tau_sr=2.0, tau_ref=2.0)
NET = "16x16x2-64-10"
LOSSES = {                                   # name -> options of make_loss
    "spike-rate": dict(true_rate=0.2, false_rate=0.03),
    "spikemax": dict(window=20.0),
    "spikemax-g": {},
    "spikemax-s": {},
}


def train_one(name, options, train, test_x, test_y, epochs, seed):
    """Train a fresh network (same initial weights for every loss) and evaluate it on the test batch."""
    net = Network.from_string(NET, NEURON, SIM, seed=seed)   # same seed -> same initial weights
    loss = make_loss(name, ts=SIM.ts, **options)
    opt = Adam(net.parameters(), lr=0.03)
    loader = DataLoader(train, batch_size=32, shuffle=True, seed=seed)  # same batches for every loss
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            out = net.forward(x, train=True)
            _, grad = loss.value_and_grad(out, y)
            net.zero_grad()
            net.backward(grad)
            opt.step()
    seconds = time.perf_counter() - t0
    out = net.forward(test_x)                                # the whole test set in one batch
    acc = float((predict(out) == test_y).mean())
    times, curve = accuracy_vs_time(out, test_y, SIM.ts)     # accuracy using the spikes up to each t
    counts = spike_counts_per_layer(net.layer_spikes, SIM.ts)  # mean spikes per sample and layer
    return dict(acc=acc, latency=latency(times, curve, 0.99), times=times, curve=curve, counts=counts,
                seconds=seconds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.environ.get("PYSRM_EXAMPLE_DIR", "."), "compare_losses.png"),
                    help="figure file (default: compare_losses.png in $PYSRM_EXAMPLE_DIR or the current folder)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train = load_dataset("synthetic", "train", sim=SIM, n_samples=args.n_train, seed=0)
    test = load_dataset("synthetic", "test", sim=SIM, n_samples=args.n_test, seed=0)
    test_x, test_y = next(iter(DataLoader(test, batch_size=len(test), shuffle=False)))
    print(f"network {NET}, {len(train)} training / {len(test)} test samples, {args.epochs} epochs, seed {args.seed}\n")

    results = {}
    for name, options in LOSSES.items():
        results[name] = r = train_one(name, options, train, test_x, test_y, args.epochs, args.seed)
        spikes = ", ".join(f"{k} {v:.1f}" for k, v in r["counts"].items())
        print(f"{name:<11} test accuracy {100 * r['acc']:5.1f} %   latency (99 %) {r['latency']:4.0f} ms   "
              f"spikes/sample: {spikes}   ({r['seconds']:.1f} s)")

    try:
        import matplotlib
        matplotlib.use("Agg")                                # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: no figure")
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, r in results.items():
        ax.plot(r["times"], 100 * r["curve"], label=f"{name} ({100 * r['acc']:.0f} %, {r['latency']:.0f} ms)")
    ax.axhline(10, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("inference time t (ms): prediction from the spikes up to t")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(title="loss (final acc., latency)", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"\nfigure written to {args.out}")


if __name__ == "__main__":
    main()
