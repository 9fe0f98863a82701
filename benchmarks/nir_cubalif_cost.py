"""What the ``--neuron cubalif`` NIR export costs in accuracy, on a trained run (docs/nir.md).

    python benchmarks/nir_cubalif_cost.py RUN_DIR [--n-test N]

For the run's final network (a dense network without delays: the test simulator has no Delay node) on
the first N test samples, the accuracy of:

1. pysrm itself (the network as trained);
2. the default export (the exact SRM composite) run by the independent NIR simulator of
   ``tests/test_nir.py`` (NIR's ODEs integrated exactly at Ts; responses never cut);
3. the ``cubalif`` export run by the same simulator (a CubaLIF backend: reset instead of the
   refractory response);
4. the ``cubalif`` export imported back into pysrm (``from_nir``: the reset approximated by a
   refractory response, with a warning).

Also the number of output bins where 2. and 3. differ from 1.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main(argv=None):
    from test_nir import NIRSim  # the independent simulator (shares no code with pysrm)

    import pysrm.nir as pnir
    from pysrm.classifier import predict
    from pysrm.train import load_data, load_run, test_sim_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--batch", type=int, default=25)
    args = ap.parse_args(argv)
    cfg, _ = load_run(args.run_dir, checkpoint="last")
    sim = test_sim_params(cfg)
    _, net = load_run(args.run_dir, sim=sim, checkpoint="last")
    _, _, test = load_data(cfg, test_sim=sim)
    n = min(args.n_test, len(test))
    labels = np.asarray(test.labels[:n])
    graphs = {"srm": pnir.to_nir(net), "cubalif": pnir.to_nir(net, neuron="cubalif")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pnir.NIRApproximationWarning)
        back = pnir.from_nir(graphs["cubalif"], t_sample=sim.t_sample)
    preds = {k: [] for k in ("pysrm", "sim srm", "sim cubalif", "pysrm re-import cubalif")}
    diff = {"sim srm": 0, "sim cubalif": 0}
    n_spikes = 0
    t0 = time.perf_counter()
    for start in range(0, n, args.batch):
        idx = list(range(start, min(n, start + args.batch)))
        x = test.sample_batch(idx).to_dense()
        out = net.forward(x)
        preds["pysrm"].append(predict(out))
        preds["pysrm re-import cubalif"].append(predict(back.forward(x)))
        mine = out[:, :, 0, 0, :] * sim.ts > 0.5
        n_spikes += int(mine.sum())
        counts = x.astype(np.float64) * sim.ts
        for k in ("srm", "cubalif"):
            s = NIRSim(graphs[k], sim.ts * 1e-3).run(counts)
            preds[f"sim {k}"].append(predict((s / sim.ts)[:, :, None, None, :]))
            diff[f"sim {k}"] += int(((s > 0.5) != mine).sum())
    print(f"run {args.run_dir}: network {net.spec}, {n} test samples, T = {sim.n_bins} bins of {sim.ts:g} ms, "
          f"{time.perf_counter() - t0:.0f} s")
    for k, v in preds.items():
        acc = float((np.concatenate(v) == labels).mean())
        extra = f", output bins differing from pysrm: {diff[k]} (pysrm: {n_spikes} output spikes)" if k in diff else ""
        print(f"  {k:<24} accuracy {100 * acc:6.2f} %{extra}")


if __name__ == "__main__":
    main()
