"""Speed benchmarks (``pysrm bench`` / ``python -m benchmarks.run``): samples/s, compile time, peak memory.

Every case runs in a fresh subprocess, so that its Numba compile time (first
step minus a steady step) and its peak resident memory (``ru_maxrss``) are its
own.  Steady-state throughput is the mean over several steps after three warm-up
steps (the first compiles; the next ones were at times several times slower than the rest while
the memory allocator grew: the N-MNIST CNN at batch 8 faults in new pages for three steps, 1.2 s
each against 0.8 s after).  A *training* step is forward + loss (spikemax) + backward + Adam update;
*inference* is the forward pass alone.

Cases:

``nmnist-dense``
    34x34x2-512-10, T = 300, real NMNISTsmall batches (the lava-dl comparison case)
``nmnist-cnn``
    the paper's 34x34x2-16c5-2a-32c3-2a-64c3-512-10, T = 300, real NMNISTsmall batches
``ntidigits``
    64-256-256-11, T = 1500, the real N-TIDIGITS sample in ../shared (898 events),
    shifted randomly in time per batch entry
``dvs-gesture``
    128x128x2-4a-16c5-2a-32c3-2a-512-11, T = 300 (``--T 1450``: the full recordings), the ten
    real DVS128 Gesture samples (1,450 ms each, SLAYER ``.bs2``), a random 300 ms window of a
    random sample per batch entry; without them, Poisson events at an assumed 150 events/ms (said
    in the result's ``data`` field)
``t-scaling``
    34x34x2-512-10 with Poisson inputs at N-MNIST's event rate (4,100 events per
    300 ms), T = 100 ... 1500, batch 8: the cost per sample must grow linearly in T
``memory``
    one training epoch of the dense network over all 1,000 NMNISTsmall training samples
    (data loader included): peak resident memory

Data.  ``nmnist-dense``, ``nmnist-cnn`` and ``memory`` read SLAYER's NMNISTsmall folder (``<id>.bs2``
files with ``train1K.txt``/``test100.txt``), ``ntidigits`` one SLAYER ``.bs1`` N-TIDIGITS sample.  Their
locations are, in this order: the options ``--nmnist-small DIR`` / ``--ntidigits-sample FILE``, the
environment variables ``PYSRM_NMNIST_SMALL`` / ``PYSRM_NTIDIGITS_SAMPLE``, and -- only when pysrm runs
from a source checkout (an editable install) -- ``../shared/data/NMNISTsmall`` and
``../shared/data/slayer_formats/NTIDIGITS_1.bs1`` next to the checkout; otherwise
``$PYSRM_DATA_DIR/NMNISTsmall`` (default ``~/.pysrm/data/NMNISTsmall``) and
``$PYSRM_DATA_DIR/NTIDIGITS_1.bs1``.  A case whose data is missing is skipped with a message naming
the option and the variable; the other cases run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: environment variables naming the benchmark data (see the module docstring)
NMNIST_ENV = "PYSRM_NMNIST_SMALL"
NTIDIGITS_ENV = "PYSRM_NTIDIGITS_SAMPLE"
DVS_ENV = "PYSRM_DVS_GESTURE_BS2"
#: the folder above the pysrm package: the repository when pysrm runs from a source checkout
SOURCE_ROOT = Path(__file__).resolve().parents[1]
#: the real data each case needs
CASE_DATA = {"nmnist-dense": "nmnist", "nmnist-cnn": "nmnist", "memory": "nmnist", "ntidigits": "ntidigits"}


#: untimed training steps before the timed ones (the first also compiles)
WARMUP_STEPS = 3


def _in_checkout() -> bool:
    return (SOURCE_ROOT / "setup.cfg").is_file() and (SOURCE_ROOT / "pysrm").is_dir()


def _default(name: str, *checkout_parts) -> Path:
    if _in_checkout():
        return SOURCE_ROOT.parent.joinpath("shared", "data", *checkout_parts)
    from .data import default_data_dir
    return Path(default_data_dir(name))


def _nmnist_dir(environ=None) -> Path:
    """NMNISTsmall: ``$PYSRM_NMNIST_SMALL``, else the default of the module docstring."""
    env = (os.environ if environ is None else environ).get(NMNIST_ENV)
    return Path(env) if env else _default("NMNISTsmall", "NMNISTsmall")


def _ntidigits_sample(environ=None) -> Path:
    """The N-TIDIGITS .bs1 sample: ``$PYSRM_NTIDIGITS_SAMPLE``, else the default of the module docstring."""
    env = (os.environ if environ is None else environ).get(NTIDIGITS_ENV)
    return Path(env) if env else _default("NTIDIGITS_1.bs1", "slayer_formats", "NTIDIGITS_1.bs1")


def _dvs_dir(environ=None) -> Path:
    """The folder of real DVS Gesture ``.bs2`` samples: ``$PYSRM_DVS_GESTURE_BS2``, else
    ``../shared/data/realdata/dvs_gesture/slayer_bs2`` next to a source checkout."""
    env = (os.environ if environ is None else environ).get(DVS_ENV)
    return Path(env) if env else _default("dvs_gesture_bs2", "realdata", "dvs_gesture", "slayer_bs2")


def _dvs_batches(batch, n_batches, sim, rng, environ=None):
    """Batches of the real DVS Gesture samples: per entry a random sample and a random window of
    ``sim.t_sample`` ms inside it (the whole sample when it is not longer); None when the files are
    missing.  Labels are random (the samples come without labels; speed does not depend on them)."""
    from .data.binning import bin_events
    from .data.formats import read_bs2
    from .events import SpikeEvents
    folder = _dvs_dir(environ)
    files = sorted(folder.glob("*.bs2")) if folder.is_dir() else []
    if not files:
        return None
    recordings = [read_bs2(f) for f in files]
    out = []
    for _ in range(n_batches):
        samples = []
        for _ in range(batch):
            ev = recordings[int(rng.integers(len(recordings)))]
            span = int(ev["t"].max()) - int(sim.t_sample * 1000)
            t0 = int(rng.integers(0, span)) if span > 0 else 0
            samples.append(bin_events(ev, (2, 128, 128), sim, t_start=t0))
        out.append((SpikeEvents.concatenate(samples), rng.integers(0, 11, batch)))
    return out


def missing_data(case: str, environ=None) -> str | None:
    """Why ``case`` cannot run here (its data is missing), or None (``environ``: where the data
    locations are read, default ``os.environ``)."""
    need = CASE_DATA.get(case)
    if need == "nmnist" and not (_nmnist_dir(environ) / "train1K.txt").is_file():
        return (f"NMNISTsmall not found at {_nmnist_dir(environ)} (expected <id>.bs2 files with train1K.txt); "
                f"pass --nmnist-small DIR or set {NMNIST_ENV}")
    if need == "ntidigits" and not _ntidigits_sample(environ).is_file():
        return (f"N-TIDIGITS sample not found at {_ntidigits_sample(environ)}; pass --ntidigits-sample FILE.bs1 or set "
                f"{NTIDIGITS_ENV}")
    return None


def _peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _poisson_events(rng, batch, shape, T, events_per_sample):
    from .events import SpikeEvents
    n_in = int(np.prod(shape))
    counts = rng.poisson(events_per_sample, size=batch)
    samples = []
    for c in counts:
        flat = np.unique(rng.integers(0, n_in * T, size=c))
        samples.append(SpikeEvents((1,) + tuple(shape) + (T,), [0, flat.size], flat // T, flat % T,
                                   np.ones(flat.size, np.float32)))
    return SpikeEvents.concatenate(samples)


def _nmnist_batches(batch, n_batches, sim, environ=None):
    """``n_batches`` real NMNISTsmall training batches, over as many (reshuffled) epochs as needed."""
    from .data import DataLoader, load_dataset
    ds = load_dataset("nmnist", split="train", data_dir=_nmnist_dir(environ), sim=sim)
    out = []
    epoch = 0
    while len(out) < n_batches:
        for x, y in DataLoader(ds, batch_size=batch, shuffle=True, seed=epoch, drop_last=True):
            out.append((x, y))
            if len(out) == n_batches:
                break
        epoch += 1
    return out


def _ntidigits_batches(batch, n_batches, sim, rng, environ=None):
    from .data.formats import read_bs1
    from .events import SpikeEvents
    ev = read_bs1(_ntidigits_sample(environ))
    T = sim.n_bins
    out = []
    for _ in range(n_batches):
        samples = []
        for _ in range(batch):
            t = np.round(ev["t"] / 1000.0 / sim.ts).astype(np.int64) + rng.integers(0, 200)
            keep = t < T
            lin = np.unique(ev["x"][keep].astype(np.int64) * T + t[keep])
            samples.append(SpikeEvents((1, 64, 1, 1, T), [0, lin.size], lin // T, lin % T,
                                       np.full(lin.size, 1.0 / sim.ts, np.float32)))
        out.append((SpikeEvents.concatenate(samples), rng.integers(0, 11, batch)))
    return out


def train_step(net, loss, opt, x, y):
    """One training step as the benchmarks time it: forward, loss (CPU or CUDA by the array type),
    backward, optimiser update.  Returns ``(output spikes, loss value)``."""
    out = net.forward(x, train=True)
    value, grad = loss.value_and_grad(out, y)
    net.zero_grad()
    net.backward(grad)
    opt.step()
    return out, value


def run_case(case: str, batch: int, steps: int, T: int | None = None, environ=None) -> dict:
    """Run one case in this process; returns its measurements (``environ``: where the data locations
    are read, default ``os.environ``)."""
    from ._malloc import tune_malloc
    tune_malloc()  # as the pysrm command does (pysrm/_malloc.py)
    from .losses import make_loss
    from .network import Network
    from .optim import Adam
    from .params import NeuronParams, SimParams
    rng = np.random.default_rng(0)
    spec = {"nmnist-dense": "34x34x2-512-10", "nmnist-cnn": "34x34x2-16c5-2a-32c3-2a-64c3-512-10",
            "ntidigits": "64-256-256-11", "dvs-gesture": "128x128x2-4a-16c5-2a-32c3-2a-512-11",
            "t-scaling": "34x34x2-512-10", "memory": "34x34x2-512-10"}[case]
    taus = {"ntidigits": 5.0, "dvs-gesture": 5.0}.get(case, 1.0)
    T = T or {"ntidigits": 1500}.get(case, 300)
    sim = SimParams(1.0, float(T))
    neuron = NeuronParams(theta=10.0, tau_sr=taus, tau_ref=taus)
    net = Network.from_string(spec, neuron, sim, delays=True, seed=0, dense_weight_scale=100.0)
    loss = make_loss("spikemax", ts=1.0, window=float(min(30, T)))
    opt = Adam(net.parameters(), lr=0.001)
    n_classes = net.output_shape[0]
    if case == "memory":
        from .data import DataLoader, load_dataset
        ds = load_dataset("nmnist", split="train", data_dir=_nmnist_dir(environ), sim=sim)
        t0 = time.perf_counter()
        n = 0
        for x, y in DataLoader(ds, batch_size=batch, shuffle=True, seed=0):
            train_step(net, loss, opt, x, y)
            n += len(y)
        return {"case": case, "net": spec, "T": T, "batch": batch, "samples": n,
                "epoch_s": time.perf_counter() - t0, "peak_mb": _peak_mb()}
    n_batches = steps + WARMUP_STEPS
    if case in ("nmnist-dense", "nmnist-cnn"):
        batches = _nmnist_batches(batch, n_batches, sim, environ)
    elif case == "ntidigits":
        batches = _ntidigits_batches(batch, n_batches, sim, rng, environ)
    else:
        batches = _dvs_batches(batch, n_batches, sim, rng, environ) if case == "dvs-gesture" else None
        data = "real DVS128 Gesture samples" if batches is not None else "Poisson events"
        if batches is None:
            shape = net.input_shape
            rate = {"dvs-gesture": 150.0 * T, "t-scaling": 4100.0 / 300.0 * T}[case]
            batches = [(_poisson_events(rng, batch, shape, T, rate), rng.integers(0, n_classes, batch))
                       for _ in range(n_batches)]

    t0 = time.perf_counter()
    train_step(net, loss, opt, *batches[0])
    first = time.perf_counter() - t0
    for x, y in batches[1:WARMUP_STEPS]:  # untimed: the allocator's growth (see the module docstring)
        train_step(net, loss, opt, x, y)
    timed = batches[WARMUP_STEPS:]
    assert len(timed) == steps, (len(timed), steps)
    t0 = time.perf_counter()
    for x, y in timed:
        train_step(net, loss, opt, x, y)
    train_s = (time.perf_counter() - t0) / steps
    with net.inference():  # fixed weights: evaluation's setting (transposed weights made once)
        net.forward(batches[0][0])  # warm-up of the inference path (train=False compiles other variants)
        t0 = time.perf_counter()
        for x, _ in timed:
            net.forward(x)
        infer_s = (time.perf_counter() - t0) / steps
    events = float(np.mean([b[0].n_events / b[0].shape[0] for b in batches]))
    from .classifier import spike_counts_per_layer
    spikes = spike_counts_per_layer(net.recorded_spikes, net.sim.ts)  # spikes per sample (no dense copies)
    sizes = {l.name: int(np.prod(net._shape_after(k + 1))) for k, l in enumerate(net.layers)}
    density = {name: c / (sizes[name] * T) for name, c in spikes.items()}
    return {"case": case, "net": spec, "T": T, "batch": batch, "steps": steps,
            "train_samples_per_s": batch / train_s, "infer_samples_per_s": batch / infer_s,
            "compile_s": max(0.0, first - train_s), "peak_mb": _peak_mb(),
            "input_events_per_sample": events, "input_density": events / (int(np.prod(net.input_shape)) * T),
            "layer_spikes_per_sample": spikes, "layer_spike_density": density,
            "data": locals().get("data", "real NMNISTsmall" if case.startswith("nmnist") else "real N-TIDIGITS")}


def _subprocess(case, batch, steps, T=None, environ=None) -> dict:
    cmd = [sys.executable, "-m", "pysrm.bench", "--case", case, "--batch", str(batch), "--steps", str(steps)]
    if T:
        cmd += ["--T", str(T)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=environ)
    if p.returncode != 0:
        return {"case": case, "batch": batch, "T": T, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def machine() -> str:
    import numba
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Numba {numba.__version__} ({numba.get_num_threads()} threads), "
            f"NumPy {np.__version__}, Python {platform.python_version()}")


def plan(quick: bool):
    # steps after the warm-up steps: enough for ~1 s of timed work per case (fewer made single cases
    # swing by 2x between runs on the 2-core VM)
    dense_steps = 3 if quick else 30
    cases = [("nmnist-dense", b, dense_steps, None) for b in ((8, 32) if quick else (1, 8, 32))]
    cases += [("ntidigits", b, 2 if quick else 10, None) for b in ((8,) if quick else (1, 8, 32))]
    cases += [("t-scaling", 8, 2 if quick else 20, T) for T in ((100, 300) if quick else (100, 300, 600, 1000, 1500))]
    cases += [("nmnist-cnn", b, 1 if quick else 3, None) for b in ((1,) if quick else (1, 8))]
    cases += [("dvs-gesture", 1, 1, None)]
    cases += [("memory", 32, 0, None)]
    return cases


def markdown(results: list) -> str:
    lines = ["| case | network | T | batch | train samples/s | inference samples/s | compile s | peak MB | "
             "input events/sample |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['case']} | | {r.get('T') or ''} | {r['batch']} | skipped: data not found | | | | |")
        elif "error" in r:
            lines.append(f"| {r['case']} | | {r.get('T') or ''} | {r['batch']} | error: {r['error']} | | | | |")
        elif r["case"] == "memory":
            lines.append(f"| memory (1 epoch, {r['samples']} samples) | {r['net']} | {r['T']} | {r['batch']} | "
                         f"{r['samples'] / r['epoch_s']:.0f} (incl. data loading) | | | {r['peak_mb']:.0f} | |")
        else:
            lines.append(f"| {r['case']} | {r['net']} | {r['T']} | {r['batch']} | {r['train_samples_per_s']:.1f} | "
                         f"{r['infer_samples_per_s']:.1f} | {r['compile_s']:.1f} | {r['peak_mb']:.0f} | "
                         f"{r['input_events_per_sample']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pysrm bench", description=__doc__.split("\n")[0])
    ap.add_argument("--case", help="run one case in this process and print JSON (internal)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="fewer cases and steps (about a minute)")
    ap.add_argument("--out", help="also write the results (Markdown + JSON) to this file prefix")
    ap.add_argument("--nmnist-small", help=f"NMNISTsmall folder (default ${NMNIST_ENV}, see the docstring)")
    ap.add_argument("--ntidigits-sample", help=f"N-TIDIGITS .bs1 sample (default ${NTIDIGITS_ENV})")
    ap.add_argument("--only", help="comma-separated cases to run (default: all of the plan)")
    args = ap.parse_args(argv)
    # the cases run in subprocesses: they find the data through their environment (this process's is
    # left as it is)
    environ = dict(os.environ)
    if args.nmnist_small:
        environ[NMNIST_ENV] = os.path.abspath(args.nmnist_small)
    if args.ntidigits_sample:
        environ[NTIDIGITS_ENV] = os.path.abspath(args.ntidigits_sample)
    if args.case:
        print(json.dumps(run_case(args.case, args.batch, args.steps, args.T, environ)))
        return 0
    cases = plan(args.quick)
    if args.only:
        wanted = [c.strip() for c in args.only.split(",") if c.strip()]
        known = sorted({c[0] for c in plan(False)})
        bad = [c for c in wanted if c not in known]
        if bad:
            print(f"pysrm bench: unknown case(s) {', '.join(bad)}; cases: {', '.join(known)}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c[0] in wanted]
    results = []
    print(f"machine: {machine()}", flush=True)
    skipped = {}
    for case, batch, steps, T in cases:
        why = missing_data(case, environ)
        if why:
            if case not in skipped:
                print(f"skipped {case}: {why}", flush=True)
            skipped[case] = why
            results.append({"case": case, "batch": batch, "T": T, "skipped": why})
            continue
        r = _subprocess(case, batch, steps, T, environ)
        results.append(r)
        print(markdown([r]).splitlines()[-1], flush=True)
    md = markdown(results)
    print("\n" + md)
    if skipped:
        print(f"{len(skipped)} case(s) skipped for missing data: {', '.join(skipped)}")
    if args.out:
        Path(args.out + ".md").write_text(f"machine: {machine()}\n\n" + md)
        Path(args.out + ".json").write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
