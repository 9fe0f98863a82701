"""lava-dl's GPU training and inference throughput on the shapes of pysrm's N-MNIST networks (issue 18).

    PYTHONPATH=.whl/lava_dl_slim python benchmarks/lavadl_gpu.py --nmnist .devdata/NMNISTsmall \
        --nets dense cnn --batches 32 --out $OUT/lavadl_gpu

lava-dl 0.6.0 (SLAYER 2.0) on PyTorch, its CUBA neurons and blocks with its N-MNIST tutorial settings
(threshold 1.25, current/voltage decay 0.25/0.03, tau_grad 0.03, scale_grad 3, weight_norm, axonal
delays), SpikeRate loss (true 0.2, false 0.03), Adam (lr 0.001); T = 300 bins of 1 ms:

``dense``  2312-512-10 (``Dense`` blocks; delay on the hidden layer), the shape of pysrm's nmnist-dense
``cnn``    34x34x2-16c5-2a-32c3-2a-64c3-512-10 (``Conv`` 5x5 pad 2, ``Pool`` 2, ``Conv`` 3x3 pad 1,
           ``Pool`` 2, ``Conv`` 3x3 pad 1, ``Flatten``, ``Dense``, ``Dense``; delays on conv/dense
           blocks), the shape of pysrm's nmnist-cnn (lava-dl's ``Pool`` pads 17 / 2 to 9 as pysrm does,
           so its first dense layer has 9 x 9 x 64 = 5,184 inputs; this script said 8 x 8 x 64 until a
           CPU run with real data failed on the shape)

The input is the same real NMNISTsmall samples as ``gpu_bench.py`` draws (same list order, same
batch draws), binned to dense ``(N, C, H, W, T)`` float32 tensors **already on the GPU** (lava-dl's
input copy is not timed: its dense input is 40x pysrm's event lists; this favours lava-dl).  A training
step is forward + loss + backward + Adam step; inference the forward under ``torch.no_grad()``; both
timed with ``torch.cuda.synchronize()`` after two (training) / one (inference) untimed warm-up steps.
The first step includes lava-dl's JIT compilation of its CUDA extensions (nvcc, through
``torch.utils.cpp_extension``) unless they are in the torch extensions cache.  GPU memory:
``torch.cuda.max_memory_allocated`` per row.  TF32: PyTorch's defaults (cuDNN convolutions may use
TF32, matmuls not); printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(kind, slayer, torch):
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "tau_grad": 0.03,
              "scale_grad": 3, "requires_grad": True}
    B = slayer.block.cuba
    if kind == "dense":
        blocks = [B.Dense(params, 34 * 34 * 2, 512, weight_norm=True, delay=True),
                  B.Dense(params, 512, 10, weight_norm=True)]
    else:
        blocks = [B.Conv(params, 2, 16, 5, padding=2, weight_norm=True, delay=True),
                  B.Pool(params, 2),
                  B.Conv(params, 16, 32, 3, padding=1, weight_norm=True, delay=True),
                  B.Pool(params, 2),
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["dense", "cnn"], choices=["dense", "cnn"])
    ap.add_argument("--batches", nargs="+", type=int, default=[32])
    ap.add_argument("--nmnist", default=".devdata/NMNISTsmall")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--budget", type=float, default=3.0)
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=1e9, help="skip rows that would start after this many seconds")
    ap.add_argument("--warmup-only", action="store_true", help="one tiny step of each net (JIT-compiles lava-dl's "
                                                                "CUDA extensions into the torch extensions cache)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    import torch
    import lava.lib.dl.slayer as slayer
    dev = torch.device("cuda")
    info = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    print("lava-dl:", json.dumps(info), flush=True)
    if args.warmup_only:
        for kind in args.nets:
            t0 = time.perf_counter()
            net = build(kind, slayer, torch).to(dev)
            shape = (2, 2, 34, 34, 20) if kind == "cnn" else (2, 34 * 34 * 2, 20)
            out = net(torch.rand(shape, device=dev).lt(0.1).float())
            out.sum().backward()
            torch.cuda.synchronize()
            print(f"warm-up {kind}: {time.perf_counter() - t0:.1f} s", flush=True)
        return 0
    from pysrm import SimParams
    from gpu_bench import batches_of, nmnist_samples
    T = 300
    samples, labels = nmnist_samples(args.nmnist, args.samples, SimParams(1.0, float(T)))
    rows = []
    t_start = time.perf_counter()
    for B in args.batches:
        for kind in args.nets:
            row = {"net": f"nmnist-{kind}", "batch": B, "tool": "lava-dl 0.6.0"}
            if time.perf_counter() - t_start > args.deadline:
                row["error"] = f"skipped (past the {args.deadline:.0f} s deadline)"
                rows.append(row)
                continue
            try:
                torch.manual_seed(0)
                data = batches_of(samples, labels, B, 4, np.random.default_rng(B))
                xs = []
                for x, y in data:
                    d = torch.from_numpy(x.to_dense())
                    d = d.reshape(B, -1, T) if kind == "dense" else d
                    xs.append((d.to(dev), torch.from_numpy(y).to(dev)))
                torch.cuda.reset_peak_memory_stats()
                net = build(kind, slayer, torch).to(dev)
                opt = torch.optim.Adam(net.parameters(), lr=0.001)
                lossf = slayer.loss.SpikeRate(true_rate=0.2, false_rate=0.03, reduction="sum").to(dev)

                def train(x, y):
                    out = net(x)
                    value = lossf(out, y)
                    opt.zero_grad()
                    value.backward()
                    opt.step()

                torch.cuda.synchronize()
                t0 = time.perf_counter()
                train(*xs[0])
                torch.cuda.synchronize()
                row["first_step_s"] = time.perf_counter() - t0
                train(*xs[1])
                train(*xs[2])
                torch.cuda.synchronize()
                done, t0 = 0, time.perf_counter()
                while done < args.min_steps or time.perf_counter() - t0 < args.budget:
                    train(*xs[done % 4])
                    done += 1
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                row.update(train_steps=done, train_samples_s=B * done / dt)
                with torch.no_grad():
                    net(xs[0][0])
                    torch.cuda.synchronize()
                    done, t0 = 0, time.perf_counter()
                    while done < args.min_steps or time.perf_counter() - t0 < args.budget / 2:
                        net(xs[done % 4][0])
                        done += 1
                    torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                row.update(infer_steps=done, infer_samples_s=B * done / dt,
                           gpu_mb=torch.cuda.max_memory_allocated() / 2 ** 20)
                print(f"lava-dl {kind} batch {B}: train {row['train_samples_s']:.1f}/s, inference "
                      f"{row['infer_samples_s']:.1f}/s, first step {row['first_step_s']:.1f} s, "
                      f"{row['gpu_mb']:.0f} MB", flush=True)
                del net, opt, xs
                torch.cuda.empty_cache()
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["traceback"] = traceback.format_exc()
                print(f"lava-dl {kind} batch {B}: FAILED\n{row['traceback']}", flush=True)
            rows.append(row)
    lines = ["| tool | network | batch | train samples/s | inference samples/s | first step s | GPU MB (peak) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| lava-dl 0.6.0 | {r['net']} | {r['batch']} | {r['error']} | | | |")
        else:
            lines.append(f"| lava-dl 0.6.0 | {r['net']} | {r['batch']} | {r['train_samples_s']:.1f} | "
                         f"{r['infer_samples_s']:.1f} | {r['first_step_s']:.1f} | {r['gpu_mb']:.0f} |")
    md = "\n".join(lines)
    print(md)
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(md + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
