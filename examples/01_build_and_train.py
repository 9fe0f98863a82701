"""01 - Build a spiking network from a shorthand string and train it with an explicit loop.

What happens in one training step (there is no autograd in pysrm: every layer has an
explicit forward and backward function):

1. forward:   every layer maps a spike tensor (N, C, H, W, T) -- time last, a spike has
              amplitude 1/Ts -- to the next one.  A dense layer computes the weighted sum
              a[o, t] = sum_i w[o, i] x[i, t] in every time bin; the SRM neurons behind it
              filter a with the spike response (u = eps * a, a causal convolution), emit a
              spike wherever u[t] >= theta and then add the refractory response nu to u.
2. loss:      loss.value_and_grad(out, y) returns the batch-mean loss L and dL/d(out), the
              gradient with respect to the *output spike tensor*.
3. backward:  net.backward(grad) runs the layers in reverse; each one turns dL/d(output)
              into dL/d(input) and adds dL/d(parameters) into p.grad.  Spikes are not
              differentiable: the SRM layer uses SLAYER's surrogate,
              dL/du[t] = dL/ds[t] * rho(u[t]),  rho(u) = exp(-|u - theta| / theta) / theta.
4. step:      the optimiser moves every parameter against its gradient (here Adam).

Run:   python examples/01_build_and_train.py            (a few seconds on 2 cores)
Options: --epochs, --n-train, --n-test, --seed.
"""
import argparse
import time

import pysrm  # import pysrm before NumPy: it sets single-threaded BLAS (pysrm's kernels use the cores)

import numpy as np

from pysrm import NeuronParams, SimParams
from pysrm.classifier import predict
from pysrm.data import DataLoader, load_dataset
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import Adam


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    # -- 1. simulation and neuron parameters ------------------------------------------------------
    # Ts = 1 ms bins, samples of 60 ms -> T = 60 time bins.  theta is the firing threshold,
    # tau_sr / tau_ref the time constants (ms) of the spike response eps(t) = t/tau e^(1 - t/tau)
    # and of the refractory response nu(t) = -2 theta t/tau_ref e^(1 - t/tau_ref).
    sim = SimParams(ts=1.0, t_sample=60.0)
    neuron = NeuronParams(theta=10.0, tau_sr=2.0, tau_ref=2.0)

    # -- 2. data: the built-in synthetic dataset (digit glyphs "seen" by a simulated event camera) --
    # 16x16 pixels x 2 polarities; each sample is a list of events, binned into a spike tensor.
    train = load_dataset("synthetic", "train", sim=sim, n_samples=args.n_train, seed=0)
    test = load_dataset("synthetic", "test", sim=sim, n_samples=args.n_test, seed=0)
    print(f"data: {len(train)} training / {len(test)} test samples, sensor (C, H, W) = {train.sensor_shape}, "
          f"{len(train.class_names)} classes, T = {sim.n_bins} bins of {sim.ts:g} ms")

    # -- 3. the network: "input HxWxC - 64 hidden neurons - 10 output neurons" -------------------
    # Every dense layer is followed by a layer of SRM neurons; see pysrm/network.py for the grammar
    # (conv "16c5", sum pooling "2a", ...).
    net = Network.from_string("16x16x2-64-10", neuron, sim, seed=args.seed)
    print(net.summary())

    # -- 4. loss and optimiser --------------------------------------------------------------------
    # spikemax: the class probabilities are the ratios of spike counts in a sliding window of
    # W = 20 ms, p_i[t] = c_i[t] / sum_k c_k[t]; the loss is the mean over t of -log p_label[t].
    loss = make_loss("spikemax", ts=sim.ts, window=20.0)
    opt = Adam(net.parameters(), lr=0.03)

    loader = DataLoader(train, batch_size=32, shuffle=True, seed=args.seed)
    test_loader = DataLoader(test, batch_size=100, shuffle=False)

    # -- 5. the training loop ---------------------------------------------------------------------
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        total, correct, n = 0.0, 0, 0
        for x, y in loader:                          # x: SpikeEvents (N, 2, 16, 16, 60), y: labels (N,)
            out = net.forward(x, train=True)         # output spikes (N, 10, 1, 1, 60); train=True: keep
                                                     #   what backward needs (the potentials, the inputs)
            value, grad = loss.value_and_grad(out, y)  # L (float) and dL/d(out), same shape as out
            net.zero_grad()                          # p.grad = 0 for every parameter
            net.backward(grad)                       # accumulate dL/dp into p.grad
            opt.step()                               # Adam update of every parameter
            total += value * len(y)
            correct += int((predict(out) == y).sum())  # prediction: the class whose neuron spiked most
            n += len(y)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / n:.4f}, train accuracy {100 * correct / n:.1f} %"
              f" ({time.perf_counter() - t0:.1f} s)")

    # -- 6. test accuracy: forward only (train=False), predict from the spike counts -----------------
    correct = 0
    for x, y in test_loader:
        correct += int((predict(net.forward(x)) == y).sum())
    acc = correct / len(test)
    print(f"final test accuracy: {100 * acc:.1f} % ({len(test)} samples; chance is 10 %)")
    spikes = {name: float(s.sum() * sim.ts / s.shape[0]) for name, s in net.layer_spikes}
    print("spikes per test sample (last batch): " + ", ".join(f"{k} {v:.1f}" for k, v in spikes.items()))
    return acc


if __name__ == "__main__":
    np.set_printoptions(precision=3, suppress=True)
    main()
