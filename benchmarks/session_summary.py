"""Summary of one H200 session (benchmarks/h200_session.sh): pysrm and lava-dl side by side.

    python benchmarks/session_summary.py --out summary.md --bench gpu_bench.json --lava lavadl_gpu.json \
        [--check gpu_check.md] [--tests cuda_tests_gpu.txt] [--launches launch_count.md]

Reads what the session's stages wrote (any of them may be missing or partial: the summary says so) and
writes one Markdown file: the side-by-side table (training and inference samples/s of both tools on
the same GPU in the same run, and their ratio), pysrm's full table (gpu_bench.py), the CPU/GPU
agreement lines of gpu_check.py, the last line of the GPU test run and the launch counts.
"""
from __future__ import annotations

import argparse
import json
import os


def _load(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except Exception as exc:  # a stage killed mid-write
        return {"error": f"{type(exc).__name__}: {exc}"}


def _lines(path, keep=None, last=None):
    if not path or not os.path.exists(path):
        return [f"({path}: not written)"]
    with open(path, errors="replace") as f:
        lines = [ln.rstrip("\n") for ln in f]
    if keep:
        lines = [ln for ln in lines if keep(ln)]
    return lines[-last:] if last else lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench")
    ap.add_argument("--lava")
    ap.add_argument("--check")
    ap.add_argument("--tests")
    ap.add_argument("--launches")
    args = ap.parse_args(argv)
    bench, lava = _load(args.bench), _load(args.lava)
    out = ["# H200 session summary (issue 18)", ""]
    if bench and "info" in bench:
        out += [f"pysrm backend: `{json.dumps(bench['info'])}`", ""]
    if lava and "info" in lava:
        out += [f"lava-dl: `{json.dumps(lava['info'])}`", ""]
    out += ["## Side by side (same GPU, same run, same NMNISTsmall samples)", "",
            "| network | batch | pysrm train/s | lava-dl train/s | ratio | pysrm inference/s | lava-dl inference/s | "
            "ratio | pysrm GPU MB | lava-dl GPU MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    prow = {}
    for r in (bench or {}).get("rows", []):
        if not r.get("tf32") and r.get("gemm", "auto") == "auto" and r.get("fuse", True):
            prow[(r["net"], r["batch"])] = r
    lrow = {(r["net"], r["batch"]): r for r in (lava or {}).get("rows", [])}
    for key in sorted(set(prow) | set(lrow), key=lambda k: (k[0], k[1])):
        if not key[0].startswith("nmnist"):
            continue
        p, q = prow.get(key, {}), lrow.get(key, {})

        def val(r, k):
            return r.get(k) if isinstance(r.get(k), (int, float)) else None
        pt, lt, pi, li = val(p, "train_samples_s"), val(q, "train_samples_s"), val(p, "infer_samples_s"), \
            val(q, "infer_samples_s")
        f = lambda v: f"{v:,.1f}" if v is not None else (p.get("error") or p.get("skipped") or "-")  # noqa: E731
        g = lambda v: f"{v:,.1f}" if v is not None else (q.get("error", "-")[:60])  # noqa: E731
        ratio = lambda a, b: f"**{a / b:.2f}x**" if a and b else "-"  # noqa: E731
        mb = lambda r: f"{r['gpu_mb']:,.0f}" if isinstance(r.get("gpu_mb"), (int, float)) else "-"  # noqa: E731
        out.append(f"| {key[0]} | {key[1]} | {f(pt)} | {g(lt)} | {ratio(pt, lt)} | {f(pi)} | {g(li)} | "
                   f"{ratio(pi, li)} | {mb(p)} | {mb(q)} |")
    out += ["", "pysrm: SRM neurons, spikemax loss, Adam, event batches copied from the host every step; lava-dl: CUBA "
            "neurons, SpikeRate loss, Adam, dense input tensors already on the GPU (see benchmarks/lavadl_gpu.py; its "
            "CNN's first dense layer has 4,096 inputs against pysrm's 5,184).", ""]
    if bench and "rows" in bench:
        from gpu_bench import table
        out += ["## pysrm, every row (benchmarks/gpu_bench.py)", "", table(bench["rows"]), ""]
        errs = [r for r in bench["rows"] if "traceback" in r]
        for r in errs:
            out += [f"### {r['net']} batch {r['batch']} failed", "", "```", r["traceback"], "```", ""]
    elif bench:
        out += [f"gpu_bench.json unreadable: {bench.get('error')}", ""]
    else:
        out += ["gpu_bench.json: not written", ""]
    out += ["## CPU/GPU agreement (benchmarks/gpu_check.py)", ""]
    out += _lines(args.check, keep=lambda ln: ln.startswith(("summary", "total time", "###", "| spikes", "| loss",
                                                             "pysrm CUDA")))
    out += ["", "## CUDA tests on the GPU", ""] + _lines(
        args.tests, keep=lambda ln: ln.startswith(("==", "FAILED", "ERROR")) or " passed" in ln or " failed" in ln)
    out += ["", "## Launches per step (benchmarks/cuda_launch_count.py, real shapes, batch 32)", ""]
    out += _lines(args.launches)
    with open(args.out, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
