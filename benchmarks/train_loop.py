"""The whole training loop against the training step alone (issue 17): dense N-MNIST on NMNISTsmall.

Three measurements per run, one after the other in fresh processes, repeated ``--runs`` times:

``loop``
    ``pysrm train --config examples/configs/nmnist_dense.toml --data-dir NMNISTsmall --epochs E
    --test-every 0``: the samples/s that ``pysrm train`` prints for each epoch (from its
    metrics.jsonl; the batch loop with data loading, no evaluation).  Epoch 1 includes Numba's
    compilation and the parsing of every file, so the steady figure is the mean of epochs 2..E.
``step (same run)``
    the same network, loss, optimiser and batches (same config and seed, so the same weights at every
    step), but every epoch's batches are made before the epoch's clock starts: the training step
    alone along the very trajectory of ``loop``.  ``loop / step (same run)`` is what data loading
    costs the loop.
``bench``
    ``python -m pysrm.bench --case nmnist-dense --batch 32 --steps 20``: the issue's reference figure
    for the step alone (its network is the same 34x34x2-512-10 with SLAYER's bench neuron, tau_sr =
    1 ms, weight scale 100: a different spike activity than the config's, so the ratio to it is
    indicative only).

Run (from the repository root; ``--repo`` points at another checkout to measure its code, e.g. an
unpacked ``git archive`` of an older commit; the figures are then of that code, this script only
drives it)::

    python benchmarks/train_loop.py --runs 3 --epochs 4 [--data-dir ../shared/data/NMNISTsmall] [--repo DIR]

On a shared machine, wrap it in whatever pauses the other work while it runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CONFIG = "examples/configs/nmnist_dense.toml"

_STEP_SCRIPT = r"""
import json, sys, time
import pysrm
from pysrm._threads import limit_blas_for_process
limit_blas_for_process(1)   # as the pysrm command does
from pysrm._malloc import tune_malloc
tune_malloc()
from pysrm.config import TrainConfig
from pysrm.train import build_network, build_loss, load_data, make_loader, sim_params
from pysrm.optim import make_optimizer
cfg = TrainConfig.from_toml(sys.argv[1]).updated({"data_dir": sys.argv[2], "epochs": int(sys.argv[3])})
sim = sim_params(cfg)
net = build_network(cfg, sim)
loss = build_loss(cfg)
opt = make_optimizer(cfg.optimizer, net.parameters(), lr=cfg.lr)
train_ds, _, _ = load_data(cfg, sim)
loader = make_loader(train_ds, cfg, shuffle=True, augment=True)
rows = []
for epoch in range(cfg.epochs):
    opt.lr = cfg.lr * cfg.lr_decay ** epoch
    loader.set_epoch(epoch)
    batches = list(loader)                      # made before the clock starts
    t0 = time.perf_counter()
    n = 0
    for x, y in batches:
        out = net.forward(x, train=True)
        value, grad = loss.value_and_grad(out, y)
        net.zero_grad()
        net.backward(grad)
        opt.step()
        n += len(y)
    rows.append(n / (time.perf_counter() - t0))
print(json.dumps(rows))
"""


_AB_SCRIPT = r"""
import json, sys, tempfile, time
import pysrm
from pysrm._threads import limit_blas_for_process
limit_blas_for_process(1)
from pysrm._malloc import tune_malloc
tune_malloc()
import pysrm.train as T
from pysrm.config import TrainConfig
from pysrm.optim import make_optimizer
cfg = TrainConfig.from_toml(sys.argv[1]).updated({"data_dir": sys.argv[2], "epochs": int(sys.argv[3]),
                                                  "test_every": 0})
runs = int(sys.argv[4])
try:  # the prefetch depth: a setting (issue 24 on), a module constant before
    from pysrm import settings as S
    has_prefetch = "train_prefetch" in S.Settings.__dataclass_fields__
except ImportError:
    S = None
    has_prefetch = hasattr(T, "TRAIN_PREFETCH")
make_loader = T.make_loader
waits = []


class Timed:
    # the loader as the loop sees it, timing every wait for the next batch
    def __init__(self, inner):
        self.inner = inner
    def __len__(self):
        return len(self.inner)
    def set_epoch(self, e):
        self.inner.set_epoch(e)
    def __iter__(self):
        it = iter(self.inner)
        waited = 0.0
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    b = next(it)
                except StopIteration:
                    break
                waited += time.perf_counter() - t0
                yield b
        finally:
            if hasattr(it, "close"):
                it.close()
            waits.append(waited)


def timed_loader(*a, **k):
    return Timed(make_loader(*a, **k))


T.make_loader = timed_loader


def step_alone():
    sim = T.sim_params(cfg)
    net, loss = T.build_network(cfg, sim), T.build_loss(cfg)
    opt = make_optimizer(cfg.optimizer, net.parameters(), lr=cfg.lr)
    train_ds, _, _ = T.load_data(cfg, sim)
    loader = make_loader(train_ds, cfg, shuffle=True, augment=True)
    rows = []
    for epoch in range(cfg.epochs):
        opt.lr = cfg.lr * cfg.lr_decay ** epoch
        loader.set_epoch(epoch)
        batches = list(loader)
        t0 = time.perf_counter()
        n = 0
        for x, y in batches:
            out = net.forward(x, train=True)
            value, grad = loss.value_and_grad(out, y)
            net.zero_grad()
            net.backward(grad)
            opt.step()
            n += len(y)
        rows.append(n / (time.perf_counter() - t0))
    return rows


def loop(prefetch):
    import contextlib
    ctx = contextlib.nullcontext()
    if has_prefetch and S is not None:
        ctx = S.override(train_prefetch=prefetch)
    elif has_prefetch:
        T.TRAIN_PREFETCH = prefetch
    del waits[:]
    with tempfile.TemporaryDirectory() as d, ctx:
        T.train(cfg, run_dir=d + "/run")
        rows = [json.loads(l) for l in open(d + "/run/metrics.jsonl") if l.strip()]
    return [r["samples_per_s"] for r in rows], [w / r["seconds"] for w, r in zip(waits, rows)]


step_alone()  # compiles everything once: every measurement below is warm
out = []
modes = ["step", "loop0"] + (["loop2"] if has_prefetch else [])
for r in range(runs):
    res = {}
    for m in modes:
        res[m] = step_alone() if m == "step" else loop(int(m[4:]))
    out.append(res)
    print(json.dumps(res), flush=True)
"""


def run_ab(repo: Path, data_dir: Path, epochs: int, runs: int) -> list:
    p = subprocess.run([sys.executable, "-c", _AB_SCRIPT, CONFIG, str(data_dir), str(epochs), str(runs)], cwd=repo,
                       env=_env(repo, data_dir), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"in-process A/B failed:\n{p.stderr[-2000:]}")
    return [json.loads(ln) for ln in p.stdout.strip().splitlines() if ln.startswith("{")]


def _env(repo: Path, data_dir: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYSRM_NMNIST_SMALL"] = str(data_dir)
    return env


def run_loop(repo: Path, data_dir: Path, epochs: int, prefetch: int | None = None) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["train", "--config", CONFIG, "--data-dir", str(data_dir), "--epochs", str(epochs),
                "--test-every", "0", "--out", str(out)]
        if prefetch is None:
            cmd = [sys.executable, "-m", "cli.main"] + args
        else:  # the same command with the training loop's prefetch depth set (the setting train_prefetch;
            # pysrm.train.TRAIN_PREFETCH before issue 24)
            cmd = [sys.executable, "-c", "import sys, contextlib, pysrm.train as t\n"
                   "try:\n    from pysrm import settings\n    ctx = settings.override(train_prefetch=int(sys.argv[1]))\n"
                   "except ImportError:\n    t.TRAIN_PREFETCH = int(sys.argv[1]); ctx = contextlib.nullcontext()\n"
                   "from cli.main import main\nsys.argv = ['pysrm'] + sys.argv[2:]\nwith ctx:\n    main()",
                   str(prefetch)] + args
        p = subprocess.run(cmd, cwd=repo, env=_env(repo, data_dir), capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"pysrm train failed:\n{p.stderr[-2000:]}")
        rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        return [r["samples_per_s"] for r in rows]


def run_step(repo: Path, data_dir: Path, epochs: int) -> list:
    p = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, CONFIG, str(data_dir), str(epochs)], cwd=repo,
                       env=_env(repo, data_dir), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"step measurement failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_bench(repo: Path, data_dir: Path) -> float:
    cmd = [sys.executable, "-m", "pysrm.bench", "--case", "nmnist-dense", "--batch", "32", "--steps", "20"]
    p = subprocess.run(cmd, cwd=repo, env=_env(repo, data_dir), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"pysrm.bench failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])["train_samples_per_s"]


def _mean(v):
    return sum(v) / len(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per training run (>= 2)")
    ap.add_argument("--data-dir", default=str(HERE.parent / "shared" / "data" / "NMNISTsmall"))
    ap.add_argument("--repo", default=str(HERE), help="checkout whose code is measured (default this one)")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                    help="also run ROUNDS of the in-process interleaved comparison (step / loop / loop with prefetch)")
    ap.add_argument("--prefetch", type=int, default=None,
                    help="set the training loop's prefetch depth (default: the code's own, the setting train_prefetch)")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (epoch 1 includes compilation and parsing)")
    repo, data_dir = Path(args.repo).resolve(), Path(args.data_dir).resolve()
    if not (data_dir / "train1K.txt").is_file():
        ap.error(f"{data_dir} is not SLAYER's NMNISTsmall folder (no train1K.txt); pass --data-dir")
    raw = []
    print(f"code: {repo}   data: {data_dir}   epochs per run: {args.epochs}"
          + ("" if args.prefetch is None else f"   prefetch: {args.prefetch}"), flush=True)
    print("| run | loop samples/s (epochs 2..E) | step, same run | bench step | loop / step (same run) | "
          "loop / bench |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)
    for k in range(args.runs):
        t0 = time.time()
        loop = run_loop(repo, data_dir, args.epochs, args.prefetch)
        step = run_step(repo, data_dir, args.epochs)
        bench = run_bench(repo, data_dir)
        lm, sm = _mean(loop[1:]), _mean(step[1:])
        raw.append({"loop": loop, "step": step, "bench": bench, "seconds": time.time() - t0})
        print(f"| {k + 1} | {lm:.0f} ({', '.join(f'{v:.0f}' for v in loop[1:])}) | {sm:.0f} | {bench:.0f} | "
              f"**{100 * lm / sm:.0f} %** | {100 * lm / bench:.0f} % |", flush=True)
    lr = [_mean(r["loop"][1:]) / _mean(r["step"][1:]) for r in raw]
    br = [_mean(r["loop"][1:]) / r["bench"] for r in raw]
    if raw:
        print(f"\nloop / step (same run): {100 * min(lr):.0f}-{100 * max(lr):.0f} %;  "
              f"loop / bench: {100 * min(br):.0f}-{100 * max(br):.0f} %  over {len(raw)} runs")
    ab = []
    if args.ab:
        print(f"\nIn one process, warm, interleaved ({args.ab} rounds of {args.epochs} epochs each, epochs 2..E): "
              f"the step alone, the loop (pysrm.train.train) without and with prefetch; 'wait' is the share of the "
              f"epoch the loop spent waiting for its next batch.", flush=True)
        print("| round | step alone samples/s | loop, prefetch 0 (wait) | loop, prefetch 2 (wait) | "
              "loop 0 / step | loop 2 / step |", flush=True)
        print("|---|---|---|---|---|---|", flush=True)
        ab = run_ab(repo, data_dir, args.epochs, args.ab)
        for k, r in enumerate(ab):
            st = _mean(r["step"][1:])
            cells = []
            for m in ("loop0", "loop2"):
                if m in r:
                    v, w = r[m]
                    cells.append((_mean(v[1:]), _mean(w[1:])))  # epoch 1 parses and bins every file
            c = [f"{v:.0f} ({100 * w:.1f} %)" for v, w in cells] + ["-"] * (2 - len(cells))
            q = [f"**{100 * v / st:.0f} %**" for v, _ in cells] + ["-"] * (2 - len(cells))
            print(f"| {k + 1} | {st:.0f} | {c[0]} | {c[1]} | {q[0]} | {q[1]} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cli": raw, "in_process": ab}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
