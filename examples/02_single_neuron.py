r"""02 - One SRM neuron, simulated step by step with the functional API (pysrm.functional).

The Spike Response Model (SRM) as SLAYER discretises it, on a grid of Ts-ms bins:

  input       x_i[t]   spike trains of the presynaptic neurons (a spike has amplitude 1/Ts)
  synapses    a[t]   = sum_i w_i x_i[t]                              (F.dense)
  potential   u[t]   = Ts sum_k eps[k] a[t - k]                      (F.psp: causal convolution)
              with the spike response eps(t) = t/tau_sr exp(1 - t/tau_sr)      (F.srm_kernel)
  spikes      scan t forward: if u[t] >= theta, emit s[t] = 1/Ts and add the refractory
              response nu(t) = -scale_ref theta t/tau_ref exp(1 - t/tau_ref) to u from t on
              (F.refractory_kernel, F.spike), so  u_post[t] = u[t] + sum_{t_s <= t} nu[t - t_s].

eps peaks at 1 at t = tau_sr, so one input spike of weight w raises u by at most w; nu dips
to -scale_ref * theta at t = tau_ref after each output spike, which delays the next one.

Run:   python examples/02_single_neuron.py [--out single_neuron.png]
Prints the kernels, the output spike times and a table of the potentials; draws a figure if
matplotlib is installed (never opens a window).
"""
import argparse
import os

import pysrm  # noqa: F401  (first: thread defaults)

import numpy as np

import pysrm.functional as F
from pysrm import NeuronParams, SimParams


def simulate():
    sim = SimParams(ts=1.0, t_sample=80.0)                   # 80 bins of 1 ms
    neuron = NeuronParams(theta=10.0, tau_sr=4.0, tau_ref=4.0)
    T = sim.n_bins

    # -- input: three presynaptic neurons, spike times in ms ------------------------------------
    times = {0: [5, 6, 30, 32, 34, 36, 38], 1: [7, 31, 33, 35, 37, 60], 2: [8, 61, 62, 63]}
    w = np.array([[5.0, 4.0, 6.0]])                          # weights (1 output, 3 inputs)
    x = np.zeros((1, 3, 1, 1, T))                            # (N, C, H, W, T): time last
    for i, ts_ in times.items():
        x[0, i, 0, 0, ts_] = 1.0 / sim.ts                    # a spike has amplitude 1/Ts

    # -- the two responses, sampled at t = 0, Ts, 2Ts, ... ----------------------------------------
    eps = F.srm_kernel(neuron, sim)                          # spike response, peak 1 at tau_sr
    nu = F.refractory_kernel(neuron, sim)                    # refractory response, dip -2 theta at tau_ref

    # -- forward, op by op ----------------------------------------------------------------------
    a = F.dense(w, x)                                        # (1, 1, 1, 1, T): weighted input
    u = F.psp(a, eps, sim.ts)                                # membrane potential without refractoriness
    s, u_post = F.spike(u, nu, neuron.theta, sim.ts)         # spikes and potential after the dips

    # -- the same by hand, to see the formulas ----------------------------------------------------
    a1 = a[0, 0, 0, 0]
    u_hand = sim.ts * np.convolve(a1, eps)[:T]               # u[t] = Ts sum_k eps[k] a[t-k]
    spike_bins = np.flatnonzero(s[0, 0, 0, 0])
    u_post_hand = u_hand.copy()
    for tb in spike_bins:                                    # u_post[t] = u[t] + sum_s nu[t - t_s]
        n = min(len(nu), T - tb)
        u_post_hand[tb:tb + n] += nu[:n]
    assert np.allclose(u[0, 0, 0, 0], u_hand) and np.allclose(u_post[0, 0, 0, 0], u_post_hand)
    # every output spike is a threshold crossing of the potential *including* the earlier dips:
    assert all(u_post_hand[tb] - nu[0] >= neuron.theta for tb in spike_bins)
    return sim, neuron, times, w, eps, nu, a1, u[0, 0, 0, 0], u_post[0, 0, 0, 0], s[0, 0, 0, 0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.environ.get("PYSRM_EXAMPLE_DIR", "."), "single_neuron.png"),
                    help="figure file (default: single_neuron.png in $PYSRM_EXAMPLE_DIR or the current folder)")
    args = ap.parse_args()
    np.set_printoptions(precision=2, suppress=True, linewidth=110)
    sim, neuron, times, w, eps, nu, a, u, u_post, s = simulate()
    spike_times = np.flatnonzero(s) * sim.ts

    print(f"neuron: theta {neuron.theta:g}, tau_sr {neuron.tau_sr:g} ms, tau_ref {neuron.tau_ref:g} ms, "
          f"Ts {sim.ts:g} ms")
    print(f"spike response eps ({len(eps)} samples, peak {eps.max():.2f} at {eps.argmax() * sim.ts:g} ms): "
          f"{eps[:12]} ...")
    print(f"refractory nu   ({len(nu)} samples, dip {nu.min():.2f} at {nu.argmin() * sim.ts:g} ms): {nu[:12]} ...")
    for i, ts_ in times.items():
        print(f"input {i}: weight {w[0, i]:g}, spikes at {ts_} ms")
    print(f"output spikes at {spike_times.tolist()} ms ({len(spike_times)} spikes)")
    print(f"max potential without refractoriness {u.max():.2f}, with {u_post.max():.2f}; "
          f"deepest dip {u_post.min():.2f}")
    print("\n  t (ms)   a[t]   u[t] (no ref.)   u_post[t]   spike")
    for t in range(0, len(u)):
        if a[t] or s[t] or (t > 0 and s[t - 1]) or t % 10 == 0:
            print(f"  {t * sim.ts:6.0f} {a[t]:6.1f} {u[t]:14.2f} {u_post[t]:11.2f}   {'*' if s[t] else ''}")

    try:
        import matplotlib
        matplotlib.use("Agg")                                # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: no figure (the numbers above are the whole story)")
        return
    t = np.arange(len(u)) * sim.ts
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    for i, ts_ in times.items():
        ax0.vlines(ts_, i - 0.4, i + 0.4, color=f"C{i}")
    ax0.set_yticks(list(times), [f"in {i} (w={w[0, i]:g})" for i in times])
    ax0.set_title("input spikes")
    ax1.plot(t, u, "--", color="0.6", label="u: before refractory responses")
    ax1.plot(t, u_post, color="C0", label="u_post: after refractory responses")
    ax1.axhline(neuron.theta, color="C3", lw=1, label=f"threshold theta = {neuron.theta:g}")
    ax1.plot(spike_times, np.full(len(spike_times), neuron.theta), "v", color="C3", ms=9, label="output spikes")
    ax1.fill_between(t, u_post, u, color="C0", alpha=0.12, label="refractory responses: u_post - u")
    bins = np.flatnonzero(s)
    for k0, k1 in zip(bins, list(bins[1:]) + [len(u)]):      # mark the dip that follows each output spike
        k = k0 + int(np.argmin(u_post[k0:k1]))
        ax1.annotate("", (t[k], u_post[k]), xytext=(t[k], u_post[k] - 3.5),
                     arrowprops=dict(arrowstyle="->", color="0.35"))
    ax1.text(t[k] + 1, u_post[k] - 4.5, "refractory dips", color="0.3", fontsize=8)
    ax1.set_ylim(u_post.min() - 6, u.max() + 3)
    ax1.set_xlabel("time (ms)")
    ax1.set_ylabel("membrane potential")
    ax1.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"\nfigure written to {args.out}")


if __name__ == "__main__":
    main()
