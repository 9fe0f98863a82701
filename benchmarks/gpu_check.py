"""CPU-vs-GPU check and training-speed benchmark (needs an NVIDIA GPU).

For each network (the Spikemax paper's N-MNIST CNN, its DVS Gesture network and
the N-MNIST dense network), with the neuron/loss settings of
``examples/configs/*.toml`` and random input events of a realistic density:

1. **Check**: one training step (forward, loss, backward, optimiser update) of
   the same batch on the CPU and on the GPU from the same initial weights;
   prints the fraction of spike bins that differ per layer, the relative
   difference of the loss, and the relative error of every parameter gradient
   (``max |g_gpu - g_cpu| / max |g_cpu|``).  In float32 a few threshold ties may
   flip single spikes; ``--dtype float64`` shows the agreement without them.
2. **Speed**: training steps per second on the GPU (copy of the event batch to
   the device + forward + loss + backward + update) at batch sizes 8, 32 and
   128, after one warm-up step, printed as a table (also the time of the very
   first GPU step, which includes Numba's compilation unless the on-disk cache
   is warm).

The check runs with cuBLAS in float32 FMA (TF32 off, pysrm's default) and, with ``--tf32 both``, once
more with TF32 tensor cores allowed (``pysrm.cuda.math_settings(tf32=True)``), so that the effect of
TF32 on the agreement is measured; ``--no-speed`` skips the speed part (``benchmarks/gpu_bench.py``
measures throughput on real data).

Usage::

    python benchmarks/gpu_check.py                     # everything, < 5 minutes on an H200
    python benchmarks/gpu_check.py --tf32 both --no-speed --out $OUT/gpu_check.md
    python benchmarks/gpu_check.py --quick             # batch 8 only, fewer steps
    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check_h200.md

Targets on an H200 (from the issue; lava-dl 0.6): dense 2312-512-10 about
4,600-5,100 samples/s, the paper's CNN about 310-330 samples/s; pysrm's goal is
at least twice that.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pysrm import NeuronParams, SimParams, SpikeEvents  # noqa: E402
from pysrm.backend import CudaUnavailableError, resolve_device  # noqa: E402
from pysrm.bench import train_step  # noqa: E402
from pysrm.losses import make_loss  # noqa: E402
from pysrm.network import Network  # noqa: E402
from pysrm.optim import make_optimizer  # noqa: E402

NETWORKS = {
    # name: (spec, neuron kwargs, ts, t_sample, loss kwargs, input density)
    "nmnist-cnn": ("34x34x2-16c5-2a-32c3-2a-64c3-512-10", dict(theta=10.0, tau_sr=1.0, tau_ref=1.0), 1.0, 300.0,
                   dict(name="spikemax", window=30.0), 0.006),
    "dvs-gesture": ("128x128x2-4a-16c5-2a-32c3-2a-512-11", dict(theta=10.0, tau_sr=5.0, tau_ref=5.0), 1.0, 300.0,
                    dict(name="spikemax", window=35.0), 0.01),
    "nmnist-dense": ("34x34x2-512-10", dict(theta=10.0, tau_sr=1.0, tau_ref=1.0), 1.0, 300.0,
                     dict(name="spikemax", window=30.0), 0.006),
}
#: a tiny network to try the script itself under the CUDA simulator (not run by default)
EXTRA = {"tiny": ("6x6x2-3c3-2a-4", dict(theta=2.0, tau_sr=2.0, tau_ref=2.0), 1.0, 8.0,
                  dict(name="spikemax", window=3.0), 0.2)}
TARGETS = {"nmnist-cnn": "lava-dl ~310-330/s, goal >= 640/s", "nmnist-dense": "lava-dl ~4,600-5,100/s, goal >= 9,200/s",
           "dvs-gesture": ""}


def random_events(rng, n, shape, t_bins, density, ts, dtype):
    """A batch of random spike events (each bin active with probability ``density``)."""
    c, h, w = shape
    total = c * h * w * t_bins
    samples = []
    for _ in range(n):
        k = rng.binomial(total, density)
        flat = np.unique(rng.integers(0, total, k))
        samples.append(SpikeEvents((1, c, h, w, t_bins), [0, flat.size], flat // t_bins, flat % t_bins,
                                   np.full(flat.size, 1.0 / ts, dtype=dtype)))
    return SpikeEvents.concatenate(samples)


def build(name, dtype, seed=0):
    spec, nkw, ts, t_sample, lkw, density = {**NETWORKS, **EXTRA}[name]
    neuron = NeuronParams(**nkw)
    sim = SimParams(ts, t_sample)
    net = Network.from_string(spec, neuron, sim, delays=True, seed=seed, dtype=dtype)
    lkw = dict(lkw)
    loss = make_loss(lkw.pop("name"), ts=ts, **lkw)
    return net, loss, density


def check(name, dtype, batch, lines, tf32=False):
    from pysrm import cuda as dev
    with dev.math_settings(tf32=tf32):
        return _check(name, dtype, batch, lines, tf32)


def _check(name, dtype, batch, lines, tf32):
    from pysrm import cuda as dev
    rng = np.random.default_rng(1)
    cpu, loss, density = build(name, dtype)
    gpu, _, _ = build(name, dtype)
    gpu.to("cuda")
    x = random_events(rng, batch, cpu.input_shape, cpu.sim.n_bins, density, cpu.sim.ts, dtype)
    y = rng.integers(0, cpu.output_shape[0], batch)
    opt_c = make_optimizer("nadam", cpu.parameters(), lr=0.01)
    opt_g = make_optimizer("nadam", gpu.parameters(), lr=0.01)
    # the gradients are compared before the update: step by hand
    t0 = time.perf_counter()
    out_c = cpu.forward(x, train=True)
    v_c, g_c = loss.value_and_grad(out_c, y)
    cpu.zero_grad()
    cpu.backward(g_c)
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    out_g = gpu.forward(x, train=True)
    v_g, g_g = loss.value_and_grad(out_g, y)  # device arrays: the CUDA loss kernels
    gpu.zero_grad()
    gpu.backward(g_g)
    dev.synchronize()
    t_first = time.perf_counter() - t0
    spec = {**NETWORKS, **EXTRA}[name][0]
    lines.append(f"### {name} ({spec}, T = {cpu.sim.n_bins}, {np.dtype(dtype).name}, batch {batch}, "
                 f"TF32 {'on' if tf32 else 'off'}, GEMM {dev.gemm_backend()})")
    lines.append("")
    lines.append(f"first GPU step (includes Numba compilation unless cached): {t_first:.1f} s; "
                 f"CPU step: {t_cpu:.1f} s ({batch / t_cpu:.2f} samples/s)")
    lines.append("")
    lines.append("| quantity | CPU | GPU | difference |")
    lines.append("| --- | --- | --- | --- |")
    for (lname, s_c), (_, s_g) in zip(cpu.layer_spikes, gpu.layer_spikes):
        s_g = dev.to_host(s_g)
        diff = float(np.mean(s_c != s_g))
        lines.append(f"| spikes {lname} | {int(np.count_nonzero(s_c))} | {int(np.count_nonzero(s_g))} | "
                     f"{diff:.2e} of bins differ |")
    lines.append(f"| loss | {v_c:.8g} | {v_g:.8g} | {abs(v_g - v_c) / max(abs(v_c), 1e-30):.2e} rel. |")
    worst = 0.0
    total_diff = sum(int(np.count_nonzero(s_c != dev.to_host(s_g)))
                     for (_, s_c), (_, s_g) in zip(cpu.layer_spikes, gpu.layer_spikes))
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        gq = dev.to_host(q.grad)
        scale = max(float(np.abs(p.grad).max()), 1e-30)
        err = float(np.abs(gq - p.grad).max()) / scale
        worst = max(worst, err)
        lines.append(f"| grad {p.name} | max {scale:.3g} | max {float(np.abs(gq).max()):.3g} | {err:.2e} rel. |")
    opt_c.step()
    opt_g.step()
    perr = max(float(np.abs(dev.to_host(q.data) - p.data).max()) / max(float(np.abs(p.data).max()), 1e-30)
               for p, q in zip(cpu.parameters(), gpu.parameters()))
    lines.append(f"| parameters after one NAdam step | | | {perr:.2e} rel. |")
    lines.append("")
    lines.append(f"summary {name} TF32 {'on' if tf32 else 'off'}: {total_diff} spike bins differ in all layers; "
                 f"worst relative gradient error {worst:.2e}")
    lines.append("")
    return worst


def speed(name, dtype, batches, steps, budget_s, rows):
    from pysrm import cuda as dev
    rng = np.random.default_rng(2)
    for b in batches:
        net, loss, density = build(name, dtype)
        net.to("cuda")
        opt = make_optimizer("nadam", net.parameters(), lr=0.01)
        data = [(random_events(rng, b, net.input_shape, net.sim.n_bins, density, net.sim.ts, dtype),
                 rng.integers(0, net.output_shape[0], b)) for _ in range(2)]
        ys = [dev.to_device(y) for _, y in data]
        train_step(net, loss, opt, dev.to_device(data[0][0]), ys[0])  # warm-up
        dev.synchronize()
        t0 = time.perf_counter()
        done = 0
        while done < steps and (done < 2 or time.perf_counter() - t0 < budget_s):
            x, _ = data[done % 2]
            train_step(net, loss, opt, dev.to_device(x), ys[done % 2])  # batch copied once per step
            done += 1
        dev.synchronize()
        dt = time.perf_counter() - t0
        rows.append((name, b, done / dt, b * done / dt, done))
        print(f"  {name} batch {b}: {done / dt:.2f} steps/s, {b * done / dt:.1f} samples/s ({done} steps)",
              flush=True)
        del net, opt, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS) + list(EXTRA))
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 32, 128])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per batch size (at most)")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timed steps per batch size (at most)")
    ap.add_argument("--check-batch", type=int, default=2, help="batch of the CPU/GPU comparison")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--quick", action="store_true", help="batch 8 only, 5 steps")
    ap.add_argument("--tf32", default="off", choices=["off", "on", "both"], help="TF32 in the check's GPU step")
    ap.add_argument("--no-speed", action="store_true", help="only the CPU/GPU check")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    args = ap.parse_args(argv)
    try:
        resolve_device("cuda")
    except CudaUnavailableError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    if args.quick:
        args.batches, args.steps = [8], 5
    from numba import cuda
    if hasattr(cuda, "get_current_device"):
        gpu = cuda.get_current_device()
        gpu_name = gpu.name.decode() if isinstance(gpu.name, bytes) else gpu.name
        gpu_name += f" (compute capability {'.'.join(map(str, gpu.compute_capability))})"
    else:
        gpu_name = "Numba CUDA simulator"
    dtype = np.dtype(args.dtype).type
    t_start = time.perf_counter()
    lines = ["# pysrm GPU check", "",
             f"GPU: {gpu_name}; host: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs; numba {__import__('numba').__version__}, numpy {np.__version__}", "",
             "## CPU vs GPU, one training step", ""]
    from pysrm import cuda as dev
    lines.insert(3, f"pysrm CUDA backend: {dev.backend_info()}")
    lines.insert(4, "")
    worst = {}
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.tf32]
    for tf32 in modes:
        for name in args.nets:
            print(f"checking {name} (TF32 {'on' if tf32 else 'off'}) ...", flush=True)
            try:
                worst[tf32] = max(worst.get(tf32, 0.0), check(name, dtype, args.check_batch, lines, tf32))
            except Exception:
                import traceback
                tb = traceback.format_exc()
                print(tb, flush=True)
                lines += [f"### {name}: FAILED (TF32 {'on' if tf32 else 'off'})", "", "```", tb, "```", ""]
    rows = []
    if not args.no_speed:
        print("timing ...", flush=True)
        for name in args.nets:
            speed(name, dtype, args.batches, args.steps, args.budget, rows)
    if rows:
        lines += ["## Training speed on the GPU", "",
                  "steps of forward + loss + backward + NAdam update, the event batch copied to the GPU every step", "",
                  "| network | batch | steps/s | samples/s | timed steps | reference |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, b, sps, smp, n in rows:
            lines.append(f"| {name} | {b} | {sps:.2f} | {smp:.1f} | {n} | {TARGETS.get(name, '')} |")
    lines += ["", f"total time {time.perf_counter() - t_start:.0f} s (including compilation); "
                  + "; ".join(f"worst relative gradient error, TF32 {'on' if k else 'off'}: {v:.2e}"
                              for k, v in worst.items())]
    report = "\n".join(lines)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
