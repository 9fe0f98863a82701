"""pysrm's GPU training and inference throughput on real data (the H200 session, issue 18).

    python benchmarks/gpu_bench.py --nmnist .devdata/NMNISTsmall --dvs .devdata/dvs_gesture \
        --out $OUT/gpu_bench [--nets nmnist-dense nmnist-cnn dvs-gesture] [--batches 8 32 128] [--budget 3]

For each network and batch size, in this one process on the GPU:

* the **first training step** (Numba compiles the kernels it needs unless its on-disk cache has them;
  run with a fresh ``NUMBA_CACHE_DIR`` to time a cold start),
* **training** samples/s: forward + loss (spikemax, 30 ms windows) + backward + Adam update, the event
  batch copied from the host every step (as ``pysrm train`` does), after two untimed warm-up steps,
  over at least ``--min-steps`` steps and ``--budget`` seconds;
* **inference** samples/s: the forward pass inside ``net.inference()``, host batch copied every step;
* **GPU memory**: the bytes CuPy's memory pool holds after the runs of that row (its high-water
  mark: the pool keeps freed blocks; emptied between rows), or the device's used memory without CuPy;
* **launches** per training step and per inference step (kernels + cuBLAS calls + memsets,
  :func:`pysrm.cuda.count_launches`);
* optional extra rows: TF32 on (``--tf32-batches``), the Numba GEMM instead of cuBLAS
  (``--numba-gemm-batches``), the layer-by-layer plan (``--unfused-batches``).

Networks (settings of ``pysrm bench``: SRM theta 10, tau_sr = tau_ref = 1 ms (DVS: 5 ms), axonal
delays, dense weight scale 100, T = 300 bins of 1 ms):

``nmnist-dense``  34x34x2-512-10 on real NMNISTsmall samples
``nmnist-cnn``    34x34x2-16c5-2a-32c3-2a-64c3-512-10 on real NMNISTsmall samples
``dvs-gesture``   128x128x2-4a-16c5-2a-32c3-2a-512-11 on random 300 ms windows of the real DVS Gesture
                  recordings in ``--dvs`` (SLAYER ``.bs2`` files, 128 x 128, two polarities)

Rows past ``--deadline`` seconds are skipped (and listed as skipped).  Writes ``<out>.json`` (one
record per row) and ``<out>.md`` (a table); prints both.  Every row runs under its own ``try``: a
failure is recorded with its traceback and the next row runs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NETS = {
    "nmnist-dense": ("34x34x2-512-10", 1.0, "nmnist"),
    "nmnist-cnn": ("34x34x2-16c5-2a-32c3-2a-64c3-512-10", 1.0, "nmnist"),
    "dvs-gesture": ("128x128x2-4a-16c5-2a-32c3-2a-512-11", 5.0, "dvs"),
    "tiny": ("6x6x2-3c3-2a-4", 2.0, "random"),  # to try the script under the CUDA simulator
}


def nmnist_samples(data_dir, n, sim):
    """``n`` real NMNISTsmall training samples (SpikeEvents with N = 1) and labels, in list order."""
    from pysrm.data import load_dataset
    ds = load_dataset("nmnist", split="train", data_dir=data_dir, sim=sim)
    m = min(n, len(ds))
    return [ds.sample(i) for i in range(m)], np.array([int(ds.labels[i]) for i in range(m)])


def dvs_samples(data_dir, n, sim, rng):
    """``n`` random 300 ms windows of the DVS Gesture recordings in ``data_dir`` (``*.bs2``)."""
    from pysrm.data.binning import bin_events
    from pysrm.data.formats import read_bs2
    files = sorted(glob.glob(os.path.join(data_dir, "*.bs2")))
    if not files:
        raise FileNotFoundError(f"no .bs2 DVS Gesture samples in {data_dir}")
    recs = [read_bs2(f) for f in files]
    span = int(sim.n_bins * sim.ts * 1000)
    out, labels = [], []
    for k in range(n):
        j = k % len(recs)
        ev = recs[j]
        t_max = int(ev["t"].max()) if ev.size else 0
        t0 = int(rng.integers(0, max(1, t_max - span)))
        out.append(bin_events(ev, (2, 128, 128), sim, t_start=t0, out_of_range="warn"))
        labels.append(j % 11)
    return out, np.array(labels)


def random_samples(shape, n, sim, rng, density=0.1):
    from pysrm import SpikeEvents
    c, h, w = shape
    x = (rng.random((n, c, h, w, sim.n_bins)) < density).astype(np.float32)
    return [SpikeEvents.from_dense(x[i:i + 1]) for i in range(n)], rng.integers(0, 4, n)


def batches_of(samples, labels, batch, count, rng):
    from pysrm import SpikeEvents
    out = []
    for _ in range(count):
        idx = rng.choice(len(samples), size=batch, replace=len(samples) < batch)
        out.append((SpikeEvents.concatenate([samples[i] for i in idx]), labels[idx]))
    return out


def gpu_memory_reset():
    from pysrm import cuda as dev
    cp = dev.cupy_module()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()


def gpu_memory_mb():
    from pysrm import cuda as dev
    cp = dev.cupy_module()
    if cp is not None:
        return cp.get_default_memory_pool().total_bytes() / 2 ** 20, "CuPy pool"
    if dev.SIMULATOR:
        return float("nan"), "simulator"
    from numba import cuda
    free, total = cuda.current_context().get_memory_info()
    return (total - free) / 2 ** 20, "device used"


def run_row(name, batch, samples, labels, args, tf32=False, gemm="auto", fuse=True):
    from pysrm import NeuronParams, SimParams
    from pysrm import cuda as dev
    from pysrm.bench import train_step
    from pysrm.losses import make_loss
    from pysrm.network import Network
    from pysrm.optim import Adam
    spec, tau, _ = NETS[name]
    T = args.T
    sim = SimParams(1.0, float(T))
    rng = np.random.default_rng(batch)
    data = batches_of(samples, labels, batch, 4, rng)
    gpu_memory_reset()
    row = {"net": name, "spec": spec, "batch": batch, "T": T, "tf32": tf32, "gemm": gemm, "fuse": fuse}
    with dev.math_settings(gemm=gemm, tf32=tf32):
        net = Network.from_string(spec, NeuronParams(theta=10.0, tau_sr=tau, tau_ref=tau), sim, delays=True,
                                  seed=0, dense_weight_scale=100.0, fuse=fuse).to("cuda")
        row["plan"] = [s.describe() for s in net.plan]
        loss = make_loss("spikemax", ts=1.0, window=float(min(30, T)))
        opt = Adam(net.parameters(), lr=0.001)
        ys = [dev.to_device(y) for _, y in data]
        dev.synchronize()
        t0 = time.perf_counter()
        train_step(net, loss, opt, data[0][0], ys[0])
        dev.synchronize()
        row["first_step_s"] = time.perf_counter() - t0
        for k in (1, 2):  # warm-up
            train_step(net, loss, opt, data[k][0], ys[k])
        with dev.count_launches() as c:
            train_step(net, loss, opt, data[3][0], ys[3])
        row["launches_train"] = c.as_dict()
        dev.synchronize()
        done, t0 = 0, time.perf_counter()
        while done < args.min_steps or (time.perf_counter() - t0 < args.budget and done < args.max_steps):
            x, _ = data[done % 4]
            train_step(net, loss, opt, x, ys[done % 4])
            done += 1
        dev.synchronize()
        dt = time.perf_counter() - t0
        row.update(train_steps=done, train_s_per_step=dt / done, train_samples_s=batch * done / dt)
        with net.inference():
            net.forward(data[0][0])
            with dev.count_launches() as c:
                net.forward(data[1][0])
            row["launches_infer"] = c.as_dict()
            dev.synchronize()
            done, t0 = 0, time.perf_counter()
            while done < args.min_steps or (time.perf_counter() - t0 < args.budget / 2 and done < args.max_steps):
                net.forward(data[done % 4][0])
                done += 1
            dev.synchronize()
            dt = time.perf_counter() - t0
        row.update(infer_steps=done, infer_samples_s=batch * done / dt)
        row["gpu_mb"], row["gpu_mb_kind"] = gpu_memory_mb()
        row["spikes_per_layer"] = [float(dev.total(s)) / batch for _, s in net.layer_spikes]
    del net, opt, data
    return row


def table(rows) -> str:
    lines = ["| network | batch | variant | train samples/s | inference samples/s | first step s | GPU MB | "
             "launches / train step | launches / inference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        variant = ", ".join(v for v in (("TF32" if r.get("tf32") else ""), ("Numba GEMM" if r.get("gemm") == "numba"
                                                                                     else ""),
                                         ("unfused" if not r.get("fuse", True) else "")) if v) or "default"
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['net']} | {r['batch']} | {variant} | {r.get('error') or r.get('skipped')} | | | | | |")
            continue
        lt, li = r["launches_train"], r["launches_infer"]
        lines.append(f"| {r['net']} | {r['batch']} | {variant} | {r['train_samples_s']:.1f} | {r['infer_samples_s']:.1f} "
                     f"| {r['first_step_s']:.2f} | {r['gpu_mb']:.0f} | {lt['launches']} ({lt['kernels']} kernels, "
                     f"{lt['blas']} cuBLAS, {lt['memsets']} memsets) | {li['launches']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["nmnist-dense", "nmnist-cnn", "dvs-gesture"], choices=list(NETS))
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 32, 128])
    ap.add_argument("--tf32-batches", nargs="*", type=int, default=[32])
    ap.add_argument("--numba-gemm-batches", nargs="*", type=int, default=[])
    ap.add_argument("--unfused-batches", nargs="*", type=int, default=[])
    ap.add_argument("--nmnist", default=".devdata/NMNISTsmall")
    ap.add_argument("--dvs", default=".devdata/dvs_gesture")
    ap.add_argument("--samples", type=int, default=256, help="distinct samples per dataset (batches drawn from them)")
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed training steps per row")
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--deadline", type=float, default=1e9, help="skip rows that would start after this many seconds")
    ap.add_argument("--out", help="write <out>.json and <out>.md")
    args = ap.parse_args(argv)
    from pysrm import SimParams
    from pysrm import cuda as dev
    from pysrm.backend import resolve_device
    resolve_device("cuda")
    t_start = time.perf_counter()
    info = dev.backend_info()
    try:
        from numba import cuda
        gpu = cuda.get_current_device()
        info["gpu"] = gpu.name.decode() if isinstance(gpu.name, bytes) else str(gpu.name)
    except Exception:
        info["gpu"] = "simulator"
    info.update(host=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                numba=__import__("numba").__version__, numpy=np.__version__)
    print("backend:", json.dumps(info), flush=True)
    sim = SimParams(1.0, float(args.T))
    rng = np.random.default_rng(0)
    data = {}
    plan = []
    for name in args.nets:
        for b in args.batches:
            plan.append((name, b, False, "auto", True))
        for b in args.tf32_batches:
            plan.append((name, b, True, "auto", True))
        for b in args.numba_gemm_batches:
            plan.append((name, b, False, "numba", True))
        for b in args.unfused_batches:
            plan.append((name, b, False, "auto", False))
    rows = []
    for name, b, tf32, gemm, fuse in plan:
        if time.perf_counter() - t_start > args.deadline:
            rows.append({"net": name, "batch": b, "tf32": tf32, "gemm": gemm, "fuse": fuse,
                         "skipped": f"skipped (past the {args.deadline:.0f} s deadline)"})
            print(f"{name} batch {b}: skipped (deadline)", flush=True)
            continue
        try:
            kind = NETS[name][2]
            if kind not in data:
                t0 = time.perf_counter()
                if kind == "nmnist":
                    data[kind] = nmnist_samples(args.nmnist, args.samples, sim)
                elif kind == "dvs":
                    data[kind] = dvs_samples(args.dvs, args.samples, sim, rng)
                else:
                    data[kind] = random_samples((2, 6, 6), 16, sim, rng)
                print(f"loaded {len(data[kind][0])} {kind} samples in {time.perf_counter() - t0:.1f} s", flush=True)
            row = run_row(name, b, *data[kind], args, tf32=tf32, gemm=gemm, fuse=fuse)
            print(f"{name} batch {b} tf32={tf32} gemm={gemm} fuse={fuse}: train {row['train_samples_s']:.1f}/s, "
                  f"inference {row['infer_samples_s']:.1f}/s, first step {row['first_step_s']:.2f} s, "
                  f"{row['gpu_mb']:.0f} MB, {row['launches_train']['launches']} launches/step", flush=True)
        except Exception as exc:
            tb = traceback.format_exc()
            print(f"{name} batch {b}: FAILED\n{tb}", flush=True)
            row = {"net": name, "batch": b, "tf32": tf32, "gemm": gemm, "fuse": fuse,
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", "traceback": tb}
        rows.append(row)
    md = "\n".join([f"# pysrm GPU throughput ({info['gpu']})", "",
                    f"backend: {json.dumps(info)}", "", table(rows), "",
                    f"total {time.perf_counter() - t_start:.0f} s"])
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1, default=str)
        with open(args.out + ".md", "w") as f:
            f.write(md + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
